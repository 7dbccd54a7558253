//! Each org's usage per period, the sum of its projects' latest totals.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_totals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: String,
    /// `YYYY-MM`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub period: String,
    pub mau: i64,
    pub data_points: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
