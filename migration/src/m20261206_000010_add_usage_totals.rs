use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each org's usage per period, summed over its projects and kept in step with
/// `usage_reports` by every write of it. A usage report then reads its org's total and
/// the one project it replaces, not every project of the org, so importing is linear in
/// the number of projects. Filled from the reports already stored.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageTotals::Table)
                    .col(string(UsageTotals::OrgId))
                    .col(string(UsageTotals::Period))
                    .col(big_integer(UsageTotals::Mau))
                    .col(big_integer(UsageTotals::DataPoints))
                    .primary_key(
                        Index::create()
                            .col(UsageTotals::OrgId)
                            .col(UsageTotals::Period),
                    )
                    .to_owned(),
            )
            .await?;
        let fill = Query::insert()
            .into_table(UsageTotals::Table)
            .columns([
                UsageTotals::OrgId,
                UsageTotals::Period,
                UsageTotals::Mau,
                UsageTotals::DataPoints,
            ])
            .select_from(
                Query::select()
                    .column(UsageReports::OrgId)
                    .column(UsageReports::Period)
                    .expr(Expr::col(UsageReports::Mau).sum())
                    .expr(Expr::col(UsageReports::DataPoints).sum())
                    .from(UsageReports::Table)
                    .group_by_col(UsageReports::OrgId)
                    .group_by_col(UsageReports::Period)
                    .to_owned(),
            )
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .to_owned();
        manager.exec_stmt(fill).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsageTotals::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum UsageTotals {
    Table,
    OrgId,
    Period,
    Mau,
    DataPoints,
}

#[derive(DeriveIden)]
enum UsageReports {
    Table,
    OrgId,
    Period,
    Mau,
    DataPoints,
}
