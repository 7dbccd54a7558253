use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Changes that take effect at the next monthly cycle: a downgrade's tier and the
        // add-ons to remove (a JSON array).
        for column in [
            ColumnDef::new(Orgs::ScheduledTier)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Orgs::ScheduledRemovals)
                .text()
                .not_null()
                .default("[]")
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
        for column in [Orgs::ScheduledTier, Orgs::ScheduledRemovals] {
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
    ScheduledTier,
    ScheduledRemovals,
}
