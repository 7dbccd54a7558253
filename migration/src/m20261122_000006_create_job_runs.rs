use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Singleton jobs (the daily retention purge) run once per period whichever replica
        // claims the (job, period) row first.
        manager
            .create_table(
                Table::create()
                    .table(JobRuns::Table)
                    .col(string(JobRuns::Job))
                    .col(string(JobRuns::Period))
                    .col(timestamp_with_time_zone(JobRuns::StartedAt))
                    .primary_key(Index::create().col(JobRuns::Job).col(JobRuns::Period))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobRuns::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum JobRuns {
    Table,
    Job,
    Period,
    StartedAt,
}
