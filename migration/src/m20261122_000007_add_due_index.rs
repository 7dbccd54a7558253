use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The sweep's claim (`clock_id` = the engine's clock, `next_due_at <= until`,
        // ordered by `next_due_at, id`, limited to a batch) reads exactly one batch of
        // index entries with this index; with `idx_orgs_next_due_at` alone SQLite sorted
        // ties by id over every due row (25 ms a batch at 100,000 due orgs, 5 ms with it).
        manager
            .create_index(
                Index::create()
                    .name("idx_orgs_due")
                    .table(Orgs::Table)
                    .col(Orgs::ClockId)
                    .col(Orgs::NextDueAt)
                    .col(Orgs::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_orgs_due")
                    .table(Orgs::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Orgs {
    Table,
    ClockId,
    NextDueAt,
    Id,
}
