//! Usage arithmetic (SPEC sections 1 and 4). Decisions use exact integer comparisons;
//! percentages are only formatted for people.

use rust_decimal::{Decimal, RoundingStrategy};

/// The largest MAU or data-point total accepted for one project, and for one org's sum
/// over its projects, in a period (10^15): far above any real org, and low enough that
/// every sum, percentage and price computed from it stays exact in `u64`, in `i64` cents
/// and in `Decimal`. A report above it is refused, naming the limit.
pub const LIMIT: u64 = 1_000_000_000_000_000;

/// An org's usage in one period, summed over its projects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub mau: u64,
    pub data_points: u64,
}

impl Usage {
    /// The sum of two usages, or `None` when either total would pass [`LIMIT`].
    pub fn checked_add(self, other: Usage) -> Option<Usage> {
        let mau = self.mau.checked_add(other.mau).filter(|v| *v <= LIMIT)?;
        let data_points = self
            .data_points
            .checked_add(other.data_points)
            .filter(|v| *v <= LIMIT)?;
        Some(Usage { mau, data_points })
    }

    /// `ceil(data_points / allowance_per_mau)`.
    pub fn processed_mau(self, allowance_per_mau: u64) -> u64 {
        self.data_points.div_ceil(allowance_per_mau.max(1))
    }

    /// `max(actual MAU, processed MAU)`.
    pub fn usage_mau(self, allowance_per_mau: u64) -> u64 {
        self.mau.max(self.processed_mau(allowance_per_mau))
    }

    /// Monthly billable users: `max(tier, actual MAU, processed MAU)`.
    pub fn mbu(self, tier: u32, allowance_per_mau: u64) -> u64 {
        self.usage_mau(allowance_per_mau).max(u64::from(tier))
    }
}

/// Usage as a percent of the tier, to two places (for messages and output).
pub fn percent(usage_mau: u64, tier: u32) -> Decimal {
    (Decimal::from(usage_mau) * Decimal::ONE_HUNDRED / Decimal::from(tier.max(1)))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Whether usage has reached `threshold` percent of the tier (exact).
pub fn reached(usage_mau: u64, tier: u32, threshold: u32) -> bool {
    u128::from(usage_mau) * 100 >= u128::from(threshold) * u128::from(tier)
}

/// Whether usage is strictly above `threshold` percent of the tier (exact).
pub fn above(usage_mau: u64, tier: u32, threshold: u32) -> bool {
    u128::from(usage_mau) * 100 > u128::from(threshold) * u128::from(tier)
}

/// SPEC section 3's lift rule: an upgrade lifts an overage lock when the new tier times
/// the lock threshold covers both the usage now and the usage that caused the lock
/// (`3 × new tier ≥ max(...)` at the default 300 %).
pub fn upgrade_lifts_overage(
    new_tier: u32,
    usage_now: u64,
    usage_at_lock: u64,
    lock_above_percent: u32,
) -> bool {
    u128::from(new_tier) * u128::from(lock_above_percent)
        >= u128::from(usage_now.max(usage_at_lock)) * 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_300_percent_does_not_lock_and_300_01_does() {
        // Tier 10,000: 30,000 MAU is exactly 300 %; 30,001 is 300.01 %.
        assert!(!above(30_000, 10_000, 300));
        assert!(above(30_001, 10_000, 300));
        assert_eq!(percent(30_001, 10_000).to_string(), "300.01");
        assert!(reached(30_000, 10_000, 300));
        assert!(!reached(29_999, 10_000, 300));
    }

    #[test]
    fn data_points_drive_processed_mau_per_plan() {
        let u = Usage {
            mau: 1_000,
            data_points: 10_000_001,
        };
        // Basic allows 2,000 data points per MAU, Essentials 10,000.
        assert_eq!(u.processed_mau(2_000), 5_001);
        assert_eq!(u.usage_mau(2_000), 5_001);
        assert_eq!(u.processed_mau(10_000), 1_001);
        assert_eq!(u.usage_mau(10_000), 1_001);
        let light = Usage {
            mau: 1_000,
            data_points: 100,
        };
        assert_eq!(light.usage_mau(2_000), 1_000);
    }

    #[test]
    fn sums_past_the_limit_are_refused_not_wrapped() {
        let near = Usage {
            mau: LIMIT - 1,
            data_points: 0,
        };
        let one = Usage {
            mau: 1,
            data_points: 0,
        };
        assert_eq!(near.checked_add(one).map(|u| u.mau), Some(LIMIT));
        assert_eq!(near.checked_add(one).and_then(|u| u.checked_add(one)), None);
        let huge = Usage {
            mau: u64::MAX,
            data_points: u64::MAX,
        };
        assert_eq!(huge.checked_add(huge), None);
    }

    #[test]
    fn mbu_is_never_below_the_tier() {
        let u = Usage {
            mau: 22_000,
            data_points: 0,
        };
        assert_eq!(u.mbu(20_000, 2_000), 22_000);
        assert_eq!(Usage::default().mbu(20_000, 2_000), 20_000);
    }

    #[test]
    fn lift_rule_needs_three_times_the_new_tier() {
        // Locked at 31,000 on a 10,000 tier: 15,000 covers 45,000, lifts.
        assert!(upgrade_lifts_overage(15_000, 20_000, 31_000, 300));
        // Usage has grown to 46,000 since: 15,000 no longer covers it.
        assert!(!upgrade_lifts_overage(15_000, 46_000, 31_000, 300));
        assert!(upgrade_lifts_overage(20_000, 60_000, 31_000, 300));
    }
}
