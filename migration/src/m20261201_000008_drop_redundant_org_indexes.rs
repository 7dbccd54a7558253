use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Indexes that `idx_orgs_due` (`clock_id`, `next_due_at`, `id`, migration 7) made
/// redundant: every query on `next_due_at` also filters on `clock_id`, and `clock_id`
/// alone is that index's first column. Each was still written on every change of an
/// org's deadline or clock: the sweep rewrites `next_due_at` of every org it touches, so
/// one index fewer is one B-tree delete and insert fewer per org (BENCHMARKS.md).
const DROPPED: [(&str, Orgs); 2] = [
    ("idx_orgs_next_due_at", Orgs::NextDueAt),
    ("idx_orgs_clock_id", Orgs::ClockId),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in DROPPED {
            manager
                .drop_index(Index::drop().name(name).table(Orgs::Table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column) in DROPPED {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Orgs::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, DeriveIden)]
enum Orgs {
    Table,
    NextDueAt,
    ClockId,
}
