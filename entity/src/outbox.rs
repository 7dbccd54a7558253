//! The transactional outbox: notifications written with the transition that causes them.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: String,
    /// `email` for now; webhooks share the table later.
    pub channel: String,
    pub template: String,
    /// JSON array of recipient addresses.
    pub recipients: String,
    /// JSON object with the facts the message states.
    pub payload: String,
    /// Unique: a replayed cause never makes a second message.
    pub dedupe_key: String,
    /// The effective instant of the cause.
    pub at: DateTimeUtc,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
