//! One row per organization: its lifecycle state and every pending deadline.

use sea_orm::entity::prelude::*;

/// Also `Deserialize`: a JSON array of the columns in declaration order is a row (what
/// acctd selects on SQLite).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Deserialize)]
#[sea_orm(table_name = "orgs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// `trial`, `active`, `grace_period`, `locked` or `canceled`.
    pub state: String,
    /// Sorted, comma-separated lock reasons; empty unless locked.
    pub lock_reasons: String,
    pub plan: String,
    pub tier: i64,
    /// JSON array of add-on ids.
    pub addons: String,
    pub currency: String,
    /// JSON array of account admin emails.
    pub admins: String,
    pub billing_email: String,
    pub payment_method: bool,
    pub subscriber: bool,
    pub signup_at: DateTimeUtc,
    pub trial_ends_at: Option<DateTimeUtc>,
    pub grace_ends_at: Option<DateTimeUtc>,
    pub cancel_at: Option<DateTimeUtc>,
    pub next_cycle_at: Option<DateTimeUtc>,
    /// The earliest of the pending deadlines above: what the sweep's index scans.
    pub next_due_at: Option<DateTimeUtc>,
    pub canceled_at: Option<DateTimeUtc>,
    /// Optimistic concurrency: every update bumps it and filters on the value it read.
    pub version: i64,
    pub updated_at: DateTimeUtc,
    /// The period of `usage_mau` (`YYYY-MM`).
    pub usage_period: Option<String>,
    /// Usage MAU (max of actual and processed) of `usage_period`.
    pub usage_mau: i64,
    /// The usage MAU that caused a pending overage lock.
    pub overage_lock_mau: Option<i64>,
    /// A downgrade scheduled for the next monthly cycle.
    pub scheduled_tier: Option<i64>,
    /// JSON array of add-ons to remove at the next monthly cycle.
    pub scheduled_removals: String,
    /// The test clock this org lives on; `None` for the real clock.
    pub clock_id: Option<String>,
    /// The next reminder to send.
    pub reminder_at: Option<DateTimeUtc>,
    /// Reminders up to this instant were sent.
    pub reminded_through: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
