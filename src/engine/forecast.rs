//! Forecasts: what happens to an org up to a horizon if nothing else does. The planner
//! runs the org's stored state forward on its deadlines, as a sweep at the horizon would,
//! inside a transaction that is rolled back: nothing is written.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use sea_orm::TransactionTrait;

use super::{Engine, Error, PaymentGateway, Result};
use crate::domain::fact::Fact;
use crate::domain::{Charge, LockReason, Org, Status};
use crate::storage::org as orgs;

/// The horizon when neither days nor an instant is given.
pub const DEFAULT_DAYS: u32 = 60;
/// The farthest horizon, in days.
pub const MAX_DAYS: u32 = 3_660;

/// The horizon `days` (default [`DEFAULT_DAYS`]) or `until` after `now`.
///
/// # Errors
/// [`Error::Invalid`] for an instant before `now` or beyond [`MAX_DAYS`].
pub fn horizon(
    now: DateTime<Utc>,
    days: Option<u32>,
    until: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>> {
    let limit = Duration::days(i64::from(MAX_DAYS));
    if let Some(until) = until {
        if until < now {
            return Err(super::invalid(
                "until",
                format!(
                    "{} is before now ({})",
                    until.to_rfc3339(),
                    now.to_rfc3339()
                ),
            ));
        }
        if until - now > limit {
            return Err(super::invalid(
                "until",
                format!("{} is more than {MAX_DAYS} days ahead", until.to_rfc3339()),
            ));
        }
        return Ok(until);
    }
    let days = days.unwrap_or(DEFAULT_DAYS);
    if days > MAX_DAYS {
        return Err(super::invalid(
            "days",
            format!("{days} is above the limit of {MAX_DAYS}"),
        ));
    }
    Ok(now + Duration::days(i64::from(days)))
}

/// What a forecast assumes of the charges it meets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Payments {
    /// The card on file behaves as it last did: charges fail while the org is in grace or
    /// locked for an overdue payment, and succeed otherwise.
    #[default]
    AsLast,
    Succeed,
    Fail,
    /// The payment provider never answers: invoices stay open (what the daemon's own
    /// gateway does until an outcome is reported).
    Pending,
}

impl Payments {
    pub const ALL: [&'static str; 4] = ["as-last", "succeed", "fail", "pending"];

    pub fn as_str(self) -> &'static str {
        match self {
            Payments::AsLast => "as-last",
            Payments::Succeed => "succeed",
            Payments::Fail => "fail",
            Payments::Pending => "pending",
        }
    }

    /// The assumption made for `org`: [`Payments::AsLast`] resolved from its state.
    #[must_use]
    pub fn resolve(self, org: &Org) -> Payments {
        if self != Payments::AsLast {
            return self;
        }
        let l = &org.lifecycle;
        let failing = l.status == Status::GracePeriod
            || (l.status == Status::Locked && l.reasons.contains(LockReason::PaymentOverdue));
        if failing {
            Payments::Fail
        } else {
            Payments::Succeed
        }
    }
}

impl std::str::FromStr for Payments {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "as-last" | "as_last" => Ok(Payments::AsLast),
            "succeed" => Ok(Payments::Succeed),
            "fail" => Ok(Payments::Fail),
            "pending" => Ok(Payments::Pending),
            other => Err(format!(
                "unknown payments assumption `{other}`, expected one of: {}",
                Payments::ALL.join(", ")
            )),
        }
    }
}

impl PaymentGateway for Payments {
    fn charge(&self, org: &Org, _invoice_id: i64, _amount: Decimal) -> Charge {
        if !org.lifecycle.payment_method {
            return Charge::NoCard;
        }
        match self {
            Payments::Fail => Charge::Failed,
            Payments::Pending => Charge::Pending,
            Payments::AsLast | Payments::Succeed => Charge::Succeeded,
        }
    }
}

/// An org's forecast: the facts up to `until`, in the order they would happen, and the
/// org as it would be then. Invoice ids are the next free ones now; the real ones may
/// differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forecast {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The assumption made (never [`Payments::AsLast`]: resolved from the org's state).
    pub payments: Payments,
    pub facts: Vec<Fact>,
    pub org: Org,
}

impl Engine {
    /// Forecasts `org_id` from the clock's instant to `until`: its deadlines (trial end,
    /// monthly cycles with their invoices and charges, reminders, grace, lock, cancel) as
    /// they would fire with no new usage, no command and the charges decided by
    /// `payments`. Reads only.
    ///
    /// # Errors
    /// [`Error::UnknownOrg`], [`Error::Invalid`] for a horizon in the past; a storage error.
    pub async fn forecast(
        &self,
        org_id: &str,
        until: DateTime<Utc>,
        payments: Payments,
    ) -> Result<Forecast> {
        let from = self.clock.now();
        if until < from {
            return Err(super::invalid(
                "until",
                format!(
                    "the horizon {} is before now ({})",
                    until.to_rfc3339(),
                    from.to_rfc3339()
                ),
            ));
        }
        let engine = self.preview();
        let txn = self.db.begin().await?;
        let mut org = orgs::get(&txn, org_id)
            .await?
            .ok_or_else(|| Error::UnknownOrg(org_id.to_owned()))?;
        self.check_scope(&org)?;
        let payments = payments.resolve(&org);
        let mut planner = engine
            .planner(
                &txn,
                std::slice::from_ref(&org),
                until,
                0,
                None,
                super::Reported::default(),
            )
            .await?;
        txn.rollback().await?;
        let mut step = planner.advance(&mut org, until)?;
        while let crate::domain::plan::Step::Charge(request) = step {
            let charge = payments.charge(&org, request.invoice, request.amount);
            step = planner.charged(&mut org, request, charge)?;
        }
        let mut facts = planner.finish().facts;
        facts.sort_by_key(Fact::at);
        Ok(Forecast {
            from,
            until,
            payments,
            facts,
            org,
        })
    }
}
