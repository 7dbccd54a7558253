//! The price book and invoice arithmetic (SPEC sections 2 and 5). Money is exact decimal,
//! rounded half-up to cents per line.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

use super::period::Period;

/// Prices of one plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanPrice {
    pub price_per_100_mau: Decimal,
    pub data_points_per_mau: u64,
    /// Explicit base prices that override `tier / 100 × price_per_100_mau`.
    pub tier_prices: BTreeMap<u32, Decimal>,
}

/// One add-on of the catalog; a price of zero makes it free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddonPrice {
    pub name: String,
    pub price_per_100_mau: Decimal,
}

/// Everything needed to price an invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceBook {
    pub plans: BTreeMap<String, PlanPrice>,
    pub addons: BTreeMap<String, AddonPrice>,
    pub tiers: Vec<u32>,
    pub max_self_serve_tier: u32,
    pub overage_multiplier: Decimal,
}

/// A refused plan, tier or add-on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("unknown plan `{0}`, expected one of: {1}")]
    UnknownPlan(String, String),
    #[error("tier {tier} is above the self-serve maximum of {max} MAU: contact sales for the Enterprise plan")]
    Enterprise { tier: u32, max: u32 },
    #[error("tier {0} is not offered, expected one of: {1}")]
    UnknownTier(u32, String),
    #[error("unknown add-on `{0}`, expected one of: {1}")]
    UnknownAddon(String, String),
}

/// The kind of an invoice line, as shown in output (`kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Base,
    Addon,
    MauOverage,
    AddonOverage,
    Proration,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Base => "base",
            LineKind::Addon => "addon",
            LineKind::MauOverage => "mau_overage",
            LineKind::AddonOverage => "addon_overage",
            LineKind::Proration => "proration",
        }
    }
}

/// One invoice line: its amount is already rounded to cents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    pub amount: Decimal,
}

/// Rounds half-up (away from zero) to cents.
pub fn round_cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// `(period end − at) / (period end − period start)`, to the second.
pub fn proration_factor(at: DateTime<Utc>, period: Period) -> Decimal {
    let total = (period.end() - period.start()).num_seconds();
    let rest = (period.end() - at).num_seconds().clamp(0, total);
    Decimal::from(rest) / Decimal::from(total)
}

/// Number of started 100-MAU blocks above the tier: `ceil((mbu − tier) / 100)`.
pub fn overage_blocks(mbu: u64, tier: u32) -> u64 {
    mbu.saturating_sub(u64::from(tier)).div_ceil(100)
}

/// Sums lines (already rounded) into a total.
pub fn total(lines: &[Line]) -> Decimal {
    lines.iter().map(|line| line.amount).sum()
}

impl PriceBook {
    /// The plan's prices.
    ///
    /// # Errors
    /// [`PriceError::UnknownPlan`].
    pub fn plan(&self, plan: &str) -> Result<&PlanPrice, PriceError> {
        self.plans.get(plan).ok_or_else(|| {
            PriceError::UnknownPlan(plan.to_owned(), join(self.plans.keys().cloned()))
        })
    }

    /// An add-on of the catalog.
    ///
    /// # Errors
    /// [`PriceError::UnknownAddon`].
    pub fn addon(&self, addon: &str) -> Result<&AddonPrice, PriceError> {
        self.addons.get(addon).ok_or_else(|| {
            PriceError::UnknownAddon(addon.to_owned(), join(self.addons.keys().cloned()))
        })
    }

    /// Checks that the tier is offered for self-serve.
    ///
    /// # Errors
    /// [`PriceError::Enterprise`] above the maximum, [`PriceError::UnknownTier`] off the list.
    pub fn check_tier(&self, tier: u32) -> Result<(), PriceError> {
        if tier > self.max_self_serve_tier {
            return Err(PriceError::Enterprise {
                tier,
                max: self.max_self_serve_tier,
            });
        }
        if !self.tiers.contains(&tier) {
            return Err(PriceError::UnknownTier(
                tier,
                join(self.tiers.iter().map(ToString::to_string)),
            ));
        }
        Ok(())
    }

    /// The monthly base price of a plan at a tier.
    ///
    /// # Errors
    /// An unknown plan.
    pub fn base_price(&self, plan: &str, tier: u32) -> Result<Decimal, PriceError> {
        let prices = self.plan(plan)?;
        Ok(match prices.tier_prices.get(&tier) {
            Some(price) => *price,
            None => Decimal::from(tier) / Decimal::ONE_HUNDRED * prices.price_per_100_mau,
        })
    }

    /// The monthly price of an add-on at a tier (it follows the tier).
    ///
    /// # Errors
    /// An unknown add-on.
    pub fn addon_price(&self, addon: &str, tier: u32) -> Result<Decimal, PriceError> {
        let price = self.addon(addon)?;
        Ok(Decimal::from(tier) / Decimal::ONE_HUNDRED * price.price_per_100_mau)
    }

    /// The lines of a full month: base and each paid add-on.
    ///
    /// # Errors
    /// An unknown plan or add-on.
    pub fn monthly_lines(
        &self,
        plan: &str,
        tier: u32,
        addons: &[String],
    ) -> Result<Vec<Line>, PriceError> {
        let mut lines = vec![Line {
            kind: LineKind::Base,
            description: format!("{plan} plan, {tier} MAU"),
            amount: round_cents(self.base_price(plan, tier)?),
        }];
        for addon in addons {
            let price = self.addon_price(addon, tier)?;
            if !price.is_zero() {
                lines.push(Line {
                    kind: LineKind::Addon,
                    description: format!("{} add-on", self.addon(addon)?.name),
                    amount: round_cents(price),
                });
            }
        }
        Ok(lines)
    }

    /// The lines for the rest of the period from `at`: each monthly line times the
    /// proration factor, rounded per line.
    ///
    /// # Errors
    /// An unknown plan or add-on.
    pub fn rest_of_period_lines(
        &self,
        plan: &str,
        tier: u32,
        addons: &[String],
        at: DateTime<Utc>,
    ) -> Result<Vec<Line>, PriceError> {
        let period = Period::containing(at);
        let factor = proration_factor(at, period);
        let mut lines = Vec::new();
        for addon in std::iter::once(None).chain(addons.iter().map(Some)) {
            let (kind, description, monthly) = match addon {
                None => (
                    LineKind::Base,
                    format!("{plan} plan, {tier} MAU, {} prorated", period.label()),
                    self.base_price(plan, tier)?,
                ),
                Some(addon) => (
                    LineKind::Addon,
                    format!(
                        "{} add-on, {} prorated",
                        self.addon(addon)?.name,
                        period.label()
                    ),
                    self.addon_price(addon, tier)?,
                ),
            };
            if kind == LineKind::Base || !monthly.is_zero() {
                lines.push(Line {
                    kind,
                    description,
                    amount: round_cents(monthly * factor),
                });
            }
        }
        Ok(lines)
    }

    /// MAU overage for a closed period: blocks × plan price per 100 MAU × multiplier.
    ///
    /// # Errors
    /// An unknown plan.
    pub fn mau_overage(&self, plan: &str, tier: u32, mbu: u64) -> Result<Decimal, PriceError> {
        let blocks = Decimal::from(overage_blocks(mbu, tier));
        Ok(round_cents(
            blocks * self.plan(plan)?.price_per_100_mau * self.overage_multiplier,
        ))
    }

    /// Add-on overage for a closed period: the same blocks × the add-on's price × multiplier.
    ///
    /// # Errors
    /// An unknown add-on.
    pub fn addon_overage(&self, addon: &str, tier: u32, mbu: u64) -> Result<Decimal, PriceError> {
        let blocks = Decimal::from(overage_blocks(mbu, tier));
        Ok(round_cents(
            blocks * self.addon(addon)?.price_per_100_mau * self.overage_multiplier,
        ))
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// The seed example of SPEC section 5: tier 20,000, add-on 0.10 per 100 MAU, 22,000 MBU.
    fn seed_book(essentials_tier_price: Option<&str>) -> PriceBook {
        let mut essentials_tiers = BTreeMap::new();
        if let Some(price) = essentials_tier_price {
            essentials_tiers.insert(20_000, d(price));
        }
        PriceBook {
            plans: BTreeMap::from([
                (
                    "basic".to_owned(),
                    PlanPrice {
                        price_per_100_mau: d("1.00"),
                        data_points_per_mau: 2_000,
                        tier_prices: BTreeMap::new(),
                    },
                ),
                (
                    "essentials".to_owned(),
                    PlanPrice {
                        price_per_100_mau: d("1.25"),
                        data_points_per_mau: 10_000,
                        tier_prices: essentials_tiers,
                    },
                ),
            ]),
            addons: BTreeMap::from([(
                "journeys".to_owned(),
                AddonPrice {
                    name: "Journeys".to_owned(),
                    price_per_100_mau: d("0.10"),
                },
            )]),
            tiers: vec![5_000, 10_000, 20_000, 100_000],
            max_self_serve_tier: 100_000,
            overage_multiplier: d("1.2"),
        }
    }

    fn seed_rows(book: &PriceBook, plan: &str) -> [Decimal; 4] {
        let base = book.base_price(plan, 20_000).unwrap();
        let addon = book.addon_price("journeys", 20_000).unwrap();
        let mau_over = book.mau_overage(plan, 20_000, 22_000).unwrap();
        let addon_over = book.addon_overage("journeys", 20_000, 22_000).unwrap();
        [
            base,
            base + addon,
            base + mau_over,
            base + addon + mau_over + addon_over,
        ]
    }

    #[test]
    fn seed_example_basic_reproduces_to_the_cent() {
        let rows = seed_rows(&seed_book(None), "basic");
        assert_eq!(rows, [d("200"), d("220"), d("224"), d("246.40")]);
    }

    #[test]
    fn seed_example_essentials_with_configured_tier_price_reproduces_to_the_cent() {
        let rows = seed_rows(&seed_book(Some("200.00")), "essentials");
        assert_eq!(rows, [d("200"), d("220"), d("230"), d("252.40")]);
    }

    #[test]
    fn essentials_default_follows_the_unit_price() {
        // SPEC section 12: without the explicit tier price, 20,000 MAU at 1.25 is 250.
        assert_eq!(
            seed_book(None).base_price("essentials", 20_000).unwrap(),
            d("250")
        );
    }

    #[test]
    fn partial_blocks_round_up() {
        assert_eq!(overage_blocks(20_000, 20_000), 0);
        assert_eq!(overage_blocks(19_000, 20_000), 0);
        assert_eq!(overage_blocks(20_001, 20_000), 1);
        assert_eq!(overage_blocks(20_100, 20_000), 1);
        assert_eq!(overage_blocks(20_101, 20_000), 2);
    }

    #[test]
    fn rounding_is_half_up_to_cents() {
        assert_eq!(round_cents(d("0.005")), d("0.01"));
        assert_eq!(round_cents(d("0.004999")), d("0.00"));
        assert_eq!(round_cents(d("2.675")), d("2.68"));
    }

    #[test]
    fn proration_is_to_the_second_across_month_lengths() {
        // Half of each month, whatever its length.
        for (at, days) in [
            ("2026-02-15T00:00:00Z", 28),
            ("2028-02-15T12:00:00Z", 29),
            ("2026-04-16T00:00:00Z", 30),
            ("2026-03-16T12:00:00Z", 31),
        ] {
            let at = t(at);
            let period = Period::containing(at);
            assert_eq!((period.end() - period.start()).num_days(), days);
            assert_eq!(proration_factor(at, period), d("0.5"), "{at}");
        }
        let p = Period::containing(t("2026-03-01T00:00:00Z"));
        assert_eq!(proration_factor(p.start(), p), Decimal::ONE);
        // One second before the end of a 31-day month.
        let last = proration_factor(t("2026-03-31T23:59:59Z"), p);
        assert_eq!(last, Decimal::ONE / Decimal::from(31 * 86_400));
    }

    #[test]
    fn rest_of_period_prorates_each_paid_line() {
        let book = seed_book(None);
        let lines = book
            .rest_of_period_lines(
                "basic",
                20_000,
                &["journeys".to_owned()],
                t("2026-04-16T00:00:00Z"),
            )
            .unwrap();
        let amounts: Vec<_> = lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, [d("100.00"), d("10.00")]);
        assert_eq!(total(&lines), d("110.00"));
    }

    #[test]
    fn tiers_above_the_maximum_point_to_enterprise() {
        let book = seed_book(None);
        let err = book.check_tier(150_000).unwrap_err();
        assert!(err.to_string().contains("Enterprise"), "{err}");
        assert!(matches!(
            book.check_tier(7_000),
            Err(PriceError::UnknownTier(..))
        ));
        assert!(book.check_tier(20_000).is_ok());
    }
}
