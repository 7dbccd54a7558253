//! Pure lifecycle logic: types, the statig machine, entitlements, prices.
//!
//! **Architecture Invariant:** nothing here does I/O or reads a clock. Time arrives as an
//! argument (`at`, the effective instant), so every rule is a synchronous unit test.

pub mod entitlement;
pub mod fact;
pub mod machine;
pub mod period;
pub mod plan;
pub mod price;
pub mod record;
pub mod usage;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

pub use machine::{
    command_to_reach, decide, legal_moves, Charge, Decision, Effect, Event, Refusal, Template,
    Transition,
};

/// An organization's lifecycle state, as persisted and shown everywhere (`snake_case`).
///
/// This is our own enum, mapped explicitly to statig's generated state: renaming a handler
/// never changes what is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Trial,
    Active,
    GracePeriod,
    Locked,
    Canceled,
}

impl Status {
    /// Every state, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Trial,
        Status::Active,
        Status::GracePeriod,
        Status::Locked,
        Status::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trial => "trial",
            Status::Active => "active",
            Status::GracePeriod => "grace_period",
            Status::Locked => "locked",
            Status::Canceled => "canceled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`, expected one of: {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Status {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "state",
                value: s.to_owned(),
                expected: "trial, active, grace_period, locked, canceled",
            })
    }
}

/// Why an org is locked. An org in `locked` has at least one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockReason {
    Overage,
    PaymentOverdue,
    TrialExpired,
    Manual,
}

impl LockReason {
    /// Every reason, in the (alphabetical) order they are listed.
    pub const ALL: [LockReason; 4] = [
        LockReason::Manual,
        LockReason::Overage,
        LockReason::PaymentOverdue,
        LockReason::TrialExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LockReason::Overage => "overage",
            LockReason::PaymentOverdue => "payment_overdue",
            LockReason::TrialExpired => "trial_expired",
            LockReason::Manual => "manual",
        }
    }

    fn bit(self) -> u8 {
        match self {
            LockReason::Manual => 1,
            LockReason::Overage => 2,
            LockReason::PaymentOverdue => 4,
            LockReason::TrialExpired => 8,
        }
    }
}

impl fmt::Display for LockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LockReason {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LockReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "lock reason",
                value: s.to_owned(),
                expected: "manual, overage, payment_overdue, trial_expired",
            })
    }
}

/// A set of lock reasons; iterates and prints in sorted order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LockReasons(u8);

impl LockReasons {
    pub fn one(reason: LockReason) -> Self {
        Self(reason.bit())
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, reason: LockReason) -> bool {
        self.0 & reason.bit() != 0
    }

    #[must_use]
    pub fn with(self, reason: LockReason) -> Self {
        Self(self.0 | reason.bit())
    }

    #[must_use]
    pub fn without(self, reason: LockReason) -> Self {
        Self(self.0 & !reason.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = LockReason> {
        LockReason::ALL
            .into_iter()
            .filter(move |r| self.contains(*r))
    }

    /// Comma-separated and sorted, as stored: `"overage,payment_overdue"`.
    pub fn to_csv(self) -> String {
        self.iter()
            .map(LockReason::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses the stored form.
    ///
    /// # Errors
    /// A name that is not a lock reason.
    pub fn from_csv(s: &str) -> Result<Self, UnknownName> {
        s.split(',')
            .filter(|part| !part.is_empty())
            .try_fold(Self::default(), |set, part| Ok(set.with(part.parse()?)))
    }
}

impl fmt::Display for LockReasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_csv())
    }
}

/// The lifecycle-relevant part of an org: what the machine reads and changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub status: Status,
    pub reasons: LockReasons,
    pub payment_method: bool,
    /// From trial conversion until canceled (SPEC section 3).
    pub subscriber: bool,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub cancel_at: Option<DateTime<Utc>>,
    pub next_cycle_at: Option<DateTime<Utc>>,
    /// The next reminder (a few days before a deadline); set by the engine.
    pub reminder_at: Option<DateTime<Utc>>,
    /// Reminders up to this instant were sent.
    pub reminded_through: Option<DateTime<Utc>>,
}

impl Lifecycle {
    /// A new org in trial.
    pub fn trial(trial_ends_at: DateTime<Utc>, payment_method: bool) -> Self {
        Self {
            status: Status::Trial,
            reasons: LockReasons::default(),
            payment_method,
            subscriber: false,
            trial_ends_at: Some(trial_ends_at),
            grace_ends_at: None,
            cancel_at: None,
            next_cycle_at: None,
            reminder_at: None,
            reminded_through: None,
        }
    }

    /// The next deadline that will fire, with its kind; ties in [`Deadline`] order.
    pub fn next_deadline(&self) -> Option<(DateTime<Utc>, Deadline)> {
        [
            (self.trial_ends_at, Deadline::TrialEnd),
            (self.grace_ends_at, Deadline::GraceEnd),
            (self.cancel_at, Deadline::Cancel),
            (self.next_cycle_at, Deadline::MonthlyCycle),
            (self.reminder_at, Deadline::Reminder),
        ]
        .into_iter()
        .filter_map(|(at, kind)| at.map(|at| (at, kind)))
        .min()
    }

    /// The earliest pending deadline: the indexed `next_due_at` column.
    pub fn next_due_at(&self) -> Option<DateTime<Utc>> {
        self.next_deadline().map(|(at, _)| at)
    }

    /// The reminders due before each pending deadline, `days` ahead: `(reminder instant,
    /// template, deadline)`.
    pub fn reminders(&self, days: u32) -> Vec<(DateTime<Utc>, &'static str, DateTime<Utc>)> {
        let ahead = chrono::Duration::days(i64::from(days));
        [
            (self.trial_ends_at, "trial_ending"),
            (self.grace_ends_at, "grace_ending"),
            (self.cancel_at, "cancel_warning"),
        ]
        .into_iter()
        .filter_map(|(deadline, template)| deadline.map(|d| (d - ahead, template, d)))
        .collect()
    }

    /// Points `reminder_at` at the earliest reminder at or after `from` that was not sent.
    pub fn schedule_reminder(&mut self, from: DateTime<Utc>, days: u32) {
        let sent = self.reminded_through;
        self.reminder_at = self
            .reminders(days)
            .into_iter()
            .map(|(at, _, _)| at)
            .filter(|at| *at >= from && sent.is_none_or(|s| *at > s))
            .min();
    }

    /// In trial while the trial deadline is pending, locked or not (SPEC section 3).
    pub fn in_trial(&self) -> bool {
        self.trial_ends_at.is_some()
    }
}

/// The persisted timers, in the order they fire when due at the same instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Deadline {
    TrialEnd,
    GraceEnd,
    Cancel,
    MonthlyCycle,
    Reminder,
}

/// The durations of SPEC section 3's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub trial: chrono::Duration,
    pub grace: chrono::Duration,
    pub lock_to_cancel: chrono::Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            trial: chrono::Duration::days(30),
            grace: chrono::Duration::days(10),
            lock_to_cancel: chrono::Duration::days(14),
        }
    }
}

/// A customer organization as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub plan: String,
    pub tier: u32,
    pub addons: Vec<String>,
    /// Fixed at signup.
    pub currency: String,
    /// Account admins: alerts and lock notices go to all of them.
    pub admins: Vec<String>,
    /// Invoices go here.
    pub billing_email: String,
    pub signup_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub lifecycle: Lifecycle,
    /// The latest period with usage, and its usage MAU.
    pub usage: Option<(period::Period, u64)>,
    /// The usage MAU that caused a pending overage lock.
    pub overage_lock_mau: Option<u64>,
    /// A downgrade that takes effect at the next monthly cycle.
    pub scheduled_tier: Option<u32>,
    /// Add-ons removed at the next monthly cycle.
    pub scheduled_removals: Vec<String>,
    /// The test clock the org lives on; `None` for the real clock.
    pub clock: Option<String>,
    /// Optimistic concurrency: the version this copy was read at.
    pub version: i64,
}
