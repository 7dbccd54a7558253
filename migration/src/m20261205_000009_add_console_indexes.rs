use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The indexes of the ops console's reads (issue 27). Its org list pages by id under a
/// filter, so a filter's index ends in `id`: without it SQLite took every org of a state
/// and sorted them for each page. `idx_orgs_state_id` replaces `idx_orgs_state` (the counts
/// by state read its prefix). An org's page reads its payments and its outbox messages,
/// which had no index by org, and the search by email reads the billing email (by default
/// the first admin). None of these columns is written by a sweep except `state`, whose
/// index it replaces, so the sweep writes no more index entries than before; each outbox
/// row and payment written adds one.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_orgs_state")
                    .table(Orgs::Table)
                    .to_owned(),
            )
            .await?;
        for (name, table, columns) in indexes() {
            let mut index = Index::create().name(name).table(table).to_owned();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in indexes() {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_orgs_state")
                    .table(Orgs::Table)
                    .col(Orgs::State)
                    .to_owned(),
            )
            .await
    }
}

fn indexes() -> Vec<(&'static str, DynIden, Vec<DynIden>)> {
    vec![
        (
            "idx_orgs_state_id",
            Orgs::Table.into_iden(),
            vec![Orgs::State.into_iden(), Orgs::Id.into_iden()],
        ),
        (
            "idx_orgs_plan_id",
            Orgs::Table.into_iden(),
            vec![Orgs::Plan.into_iden(), Orgs::Id.into_iden()],
        ),
        (
            "idx_orgs_billing_email",
            Orgs::Table.into_iden(),
            vec![Orgs::BillingEmail.into_iden(), Orgs::Id.into_iden()],
        ),
        (
            "idx_payments_org",
            Payments::Table.into_iden(),
            vec![Payments::OrgId.into_iden(), Payments::Id.into_iden()],
        ),
        (
            "idx_outbox_org",
            Outbox::Table.into_iden(),
            vec![Outbox::OrgId.into_iden(), Outbox::Id.into_iden()],
        ),
    ]
}

#[derive(Clone, Copy, DeriveIden)]
enum Orgs {
    Table,
    Id,
    State,
    Plan,
    BillingEmail,
}

#[derive(Clone, Copy, DeriveIden)]
enum Payments {
    Table,
    Id,
    OrgId,
}

#[derive(Clone, Copy, DeriveIden)]
enum Outbox {
    Table,
    Id,
    OrgId,
}
