use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TestClocks::Table)
                    .col(string(TestClocks::Id).primary_key())
                    .col(timestamp_with_time_zone(TestClocks::Now))
                    .col(timestamp_with_time_zone(TestClocks::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // Orgs attached to a test clock live on its time only; the real sweep skips them.
        manager
            .alter_table(
                Table::alter()
                    .table(Orgs::Table)
                    .add_column(ColumnDef::new(Orgs::ClockId).string().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_orgs_clock_id")
                    .table(Orgs::Table)
                    .col(Orgs::ClockId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_orgs_clock_id")
                    .table(Orgs::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orgs::Table)
                    .drop_column(Orgs::ClockId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(TestClocks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum TestClocks {
    Table,
    Id,
    Now,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Orgs {
    Table,
    ClockId,
}
