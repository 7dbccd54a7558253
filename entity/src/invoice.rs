//! Invoices; amounts are integer cents (exact, rounded half-up per line).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: String,
    /// Unique per org: `cycle:YYYY-MM` makes the monthly cycle idempotent.
    pub key: String,
    /// `YYYY-MM`: the period the invoice opens, or the one a proration falls in.
    pub period: String,
    /// `cycle`, `conversion` or `proration`.
    pub kind: String,
    pub currency: String,
    pub total_cents: i64,
    /// `open`, `paid` or `failed`.
    pub status: String,
    pub issued_at: DateTimeUtc,
    pub paid_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
