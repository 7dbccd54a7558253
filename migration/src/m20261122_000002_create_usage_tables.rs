use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_pk_auto, integer, string, timestamp_with_time_zone,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageReports::Table)
                    .col(string(UsageReports::OrgId))
                    .col(string(UsageReports::Project))
                    .col(string(UsageReports::Period))
                    .col(big_integer(UsageReports::Mau))
                    .col(big_integer(UsageReports::DataPoints))
                    .col(timestamp_with_time_zone(UsageReports::ReportedAt))
                    .primary_key(
                        Index::create()
                            .col(UsageReports::OrgId)
                            .col(UsageReports::Period)
                            .col(UsageReports::Project),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageAlerts::Table)
                    .col(big_pk_auto(UsageAlerts::Id))
                    .col(string(UsageAlerts::OrgId))
                    .col(string(UsageAlerts::Period))
                    .col(integer(UsageAlerts::Threshold))
                    .col(big_integer(UsageAlerts::UsageMau))
                    .col(string(UsageAlerts::UsagePercent))
                    .col(timestamp_with_time_zone(UsageAlerts::At))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_alerts_once")
                    .table(UsageAlerts::Table)
                    .col(UsageAlerts::OrgId)
                    .col(UsageAlerts::Period)
                    .col(UsageAlerts::Threshold)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The current period's usage on the org row: entitlements (upgrade_prompt) are
        // then one primary-key read. `overage_lock_mau` is the usage that caused an
        // overage lock, for the lift rule.
        for column in [
            ColumnDef::new(Orgs::UsagePeriod).string().null().to_owned(),
            ColumnDef::new(Orgs::UsageMau)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(Orgs::OverageLockMau)
                .big_integer()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Orgs::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Orgs::UsagePeriod, Orgs::UsageMau, Orgs::OverageLockMau] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Orgs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(UsageAlerts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(UsageReports::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum UsageReports {
    Table,
    OrgId,
    Project,
    Period,
    Mau,
    DataPoints,
    ReportedAt,
}

#[derive(DeriveIden)]
enum UsageAlerts {
    Table,
    Id,
    OrgId,
    Period,
    Threshold,
    UsageMau,
    UsagePercent,
    At,
}

#[derive(DeriveIden)]
enum Orgs {
    Table,
    UsagePeriod,
    UsageMau,
    OverageLockMau,
}
