//! acctd's schema history. Migrations are frozen: this crate never imports `entity`, and a
//! released migration is never edited, only followed by a new one.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_lifecycle_tables;
mod m20261122_000002_create_usage_tables;
mod m20261122_000003_add_scheduled_plan_changes;
mod m20261122_000004_create_test_clocks;
mod m20261122_000005_add_reminders;
mod m20261122_000006_create_job_runs;
mod m20261122_000007_add_due_index;
mod m20261201_000008_drop_redundant_org_indexes;
mod m20261205_000009_add_console_indexes;
mod m20261206_000010_add_usage_totals;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_lifecycle_tables::Migration),
            Box::new(m20261122_000002_create_usage_tables::Migration),
            Box::new(m20261122_000003_add_scheduled_plan_changes::Migration),
            Box::new(m20261122_000004_create_test_clocks::Migration),
            Box::new(m20261122_000005_add_reminders::Migration),
            Box::new(m20261122_000006_create_job_runs::Migration),
            Box::new(m20261122_000007_add_due_index::Migration),
            Box::new(m20261201_000008_drop_redundant_org_indexes::Migration),
            Box::new(m20261205_000009_add_console_indexes::Migration),
            Box::new(m20261206_000010_add_usage_totals::Migration),
        ]
    }
}
