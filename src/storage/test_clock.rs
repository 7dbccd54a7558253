//! Test clocks and the removal of their orgs.

use chrono::{DateTime, Utc};
use entity::{
    invoice, invoice_line, org, outbox, payment, test_clock, transition, usage_alert, usage_report,
    usage_total,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};

use super::Result;

/// A test clock's id and its current instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestClock {
    pub id: String,
    pub now: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

fn to_domain(m: test_clock::Model) -> TestClock {
    TestClock {
        id: m.id,
        now: m.now,
        created_at: m.created_at,
    }
}

/// Creates a clock frozen at `now`.
///
/// # Errors
/// A database error, including a duplicate id.
pub async fn create(
    conn: &impl ConnectionTrait,
    id: &str,
    now: DateTime<Utc>,
    created_at: DateTime<Utc>,
) -> Result<TestClock> {
    let row = test_clock::ActiveModel {
        id: Set(id.to_owned()),
        now: Set(now),
        created_at: Set(created_at),
    };
    test_clock::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(TestClock {
        id: id.to_owned(),
        now,
        created_at,
    })
}

/// One clock.
///
/// # Errors
/// A database error.
pub async fn find(conn: &impl ConnectionTrait, id: &str) -> Result<Option<TestClock>> {
    Ok(test_clock::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .map(to_domain))
}

/// Every clock.
///
/// # Errors
/// A database error.
pub async fn list(conn: &impl ConnectionTrait) -> Result<Vec<TestClock>> {
    Ok(test_clock::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(to_domain)
        .collect())
}

/// Moves a clock to `now`.
///
/// # Errors
/// A database error.
pub async fn set_now(conn: &impl ConnectionTrait, id: &str, now: DateTime<Utc>) -> Result<()> {
    test_clock::Entity::update_many()
        .col_expr(test_clock::Column::Now, Some(now).into())
        .filter(test_clock::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Deletes a clock and everything of its orgs. Returns how many orgs went.
///
/// # Errors
/// A database error.
pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<u64> {
    let org_ids: Vec<String> = org::Entity::find()
        .select_only()
        .column(org::Column::Id)
        .filter(org::Column::ClockId.eq(id))
        .into_tuple()
        .all(conn)
        .await?;
    for chunk in org_ids.chunks(500) {
        let ids = chunk.to_vec();
        let invoice_ids: Vec<i64> = invoice::Entity::find()
            .select_only()
            .column(invoice::Column::Id)
            .filter(invoice::Column::OrgId.is_in(ids.clone()))
            .into_tuple()
            .all(conn)
            .await?;
        for invoices in invoice_ids.chunks(500) {
            invoice_line::Entity::delete_many()
                .filter(invoice_line::Column::InvoiceId.is_in(invoices.to_vec()))
                .exec(conn)
                .await?;
        }
        payment::Entity::delete_many()
            .filter(payment::Column::OrgId.is_in(ids.clone()))
            .exec(conn)
            .await?;
        invoice::Entity::delete_many()
            .filter(invoice::Column::OrgId.is_in(ids.clone()))
            .exec(conn)
            .await?;
        transition::Entity::delete_many()
            .filter(transition::Column::OrgId.is_in(ids.clone()))
            .exec(conn)
            .await?;
        outbox::Entity::delete_many()
            .filter(outbox::Column::OrgId.is_in(ids.clone()))
            .exec(conn)
            .await?;
        usage_report::Entity::delete_many()
            .filter(usage_report::Column::OrgId.is_in(ids.clone()))
            .exec(conn)
            .await?;
        usage_total::Entity::delete_many()
            .filter(usage_total::Column::OrgId.is_in(ids.clone()))
            .exec(conn)
            .await?;
        usage_alert::Entity::delete_many()
            .filter(usage_alert::Column::OrgId.is_in(ids.clone()))
            .exec(conn)
            .await?;
        org::Entity::delete_many()
            .filter(org::Column::Id.is_in(ids))
            .exec(conn)
            .await?;
    }
    test_clock::Entity::delete_by_id(id.to_owned())
        .exec(conn)
        .await?;
    Ok(org_ids.len() as u64)
}
