//! What an org may use, derived from its state and lock reasons (SPEC section 3).

use super::{LockReason, LockReasons, Status};

/// The four switches other systems read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entitlements {
    pub dashboard: bool,
    pub exports: bool,
    pub ingestion: bool,
    pub campaigns: bool,
}

impl Entitlements {
    pub const ALL: Self = Self {
        dashboard: true,
        exports: true,
        ingestion: true,
        campaigns: true,
    };
    pub const NONE: Self = Self {
        dashboard: false,
        exports: false,
        ingestion: false,
        campaigns: false,
    };

    /// The most restrictive of two: a switch is on only if both have it on.
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        Self {
            dashboard: self.dashboard && other.dashboard,
            exports: self.exports && other.exports,
            ingestion: self.ingestion && other.ingestion,
            campaigns: self.campaigns && other.campaigns,
        }
    }
}

/// The matrix: what each lock reason leaves on. Open states (trial, active, `grace_period`)
/// have everything; canceled has nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matrix {
    pub overage: Entitlements,
    pub payment_overdue: Entitlements,
    pub trial_expired: Entitlements,
    pub manual: Entitlements,
}

impl Default for Matrix {
    fn default() -> Self {
        let locked = Entitlements {
            dashboard: false,
            exports: false,
            ingestion: true,
            campaigns: true,
        };
        let unpaid = Entitlements {
            campaigns: false,
            ..locked
        };
        Self {
            overage: locked,
            payment_overdue: unpaid,
            trial_expired: unpaid,
            manual: locked,
        }
    }
}

impl Matrix {
    fn row(&self, reason: LockReason) -> Entitlements {
        match reason {
            LockReason::Overage => self.overage,
            LockReason::PaymentOverdue => self.payment_overdue,
            LockReason::TrialExpired => self.trial_expired,
            LockReason::Manual => self.manual,
        }
    }

    /// Entitlements of an org; with several reasons the most restrictive wins.
    pub fn of(&self, status: Status, reasons: LockReasons) -> Entitlements {
        match status {
            Status::Trial | Status::Active | Status::GracePeriod => Entitlements::ALL,
            Status::Canceled => Entitlements::NONE,
            Status::Locked => reasons
                .iter()
                .fold(Entitlements::ALL, |acc, reason| acc.and(self.row(reason))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_keeps_everything() {
        // SPEC section 12: the newer document wins, grace is not restricted.
        let m = Matrix::default();
        assert_eq!(
            m.of(Status::GracePeriod, LockReasons::default()),
            Entitlements::ALL
        );
    }

    #[test]
    fn most_restrictive_reason_wins() {
        let m = Matrix::default();
        let overage = LockReasons::one(LockReason::Overage);
        assert!(m.of(Status::Locked, overage).campaigns);
        let both = overage.with(LockReason::PaymentOverdue);
        let e = m.of(Status::Locked, both);
        assert_eq!(
            e,
            Entitlements {
                dashboard: false,
                exports: false,
                ingestion: true,
                campaigns: false
            }
        );
        assert_eq!(
            m.of(Status::Canceled, LockReasons::default()),
            Entitlements::NONE
        );
    }
}
