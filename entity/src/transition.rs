//! The append-only audit trail: one row per applied transition.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transitions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: String,
    /// `None` at signup.
    pub from_state: Option<String>,
    pub to_state: String,
    pub cause: String,
    /// Lock reasons after the transition, sorted and comma-separated.
    pub lock_reasons: String,
    pub actor: String,
    pub reason: Option<String>,
    /// The effective instant: when the cause happened (a deadline's own instant).
    pub at: DateTimeUtc,
    /// When the row was written.
    pub recorded_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
