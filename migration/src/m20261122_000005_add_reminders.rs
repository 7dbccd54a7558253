use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The next reminder to send (trial_ending, grace_ending, cancel_warning) and the
        // instant up to which reminders were sent, so none is sent twice.
        for column in [Orgs::ReminderAt, Orgs::RemindedThrough] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Orgs::Table)
                        .add_column(ColumnDef::new(column).timestamp_with_time_zone().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Orgs::ReminderAt, Orgs::RemindedThrough] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Orgs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Orgs {
    Table,
    ReminderAt,
    RemindedThrough,
}
