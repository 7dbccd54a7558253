//! Listing and counting orgs: keyset pages by filter or selection, counts by state and
//! lock reason, and the oldest passed deadline.

use chrono::{DateTime, Utc};
use entity::org;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select,
};

use super::codec::fetch;
use crate::domain::{LockReason, Org, Status};
use crate::storage::Result;

/// Filters for [`list`]. Each is served by an index that ends in `id`, so a page is a
/// range of one index: `idx_orgs_state_id` (a lock reason implies `locked`),
/// `idx_orgs_plan_id`, `idx_orgs_due` (a clock), `idx_orgs_billing_email`, the key.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub reason: Option<LockReason>,
    pub plan: Option<String>,
    pub clock: Option<ClockFilter>,
    /// Orgs whose id starts with this.
    pub id_prefix: Option<String>,
    /// Orgs whose billing email (by default the first admin) is exactly this.
    pub billing_email: Option<String>,
    pub after: Option<String>,
    pub limit: u64,
}

/// Which clock's orgs [`list`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClockFilter {
    /// The real clock's.
    Real,
    /// A test clock's.
    Test(String),
}

/// Lists orgs by id, with optional filters (keyset paging).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn list(conn: &impl ConnectionTrait, filter: &Filter) -> Result<Vec<Org>> {
    fetch(conn, list_query(filter)).await
}

/// The statement of [`list`] (its plan is tested).
pub fn list_statement(backend: DbBackend, filter: &Filter) -> sea_orm::Statement {
    list_query(filter).build(backend)
}

fn list_query(filter: &Filter) -> Select<org::Entity> {
    let mut query = org::Entity::find().order_by_asc(org::Column::Id);
    // Only a locked org has lock reasons: the state's index narrows a reason's scan.
    let status = filter.status.or(filter.reason.map(|_| Status::Locked));
    if let Some(status) = status {
        query = query.filter(org::Column::State.eq(status.as_str()));
    }
    if let Some(reason) = filter.reason {
        query = query.filter(org::Column::LockReasons.contains(reason.as_str()));
    }
    if let Some(plan) = &filter.plan {
        query = query.filter(org::Column::Plan.eq(plan.as_str()));
    }
    match &filter.clock {
        Some(ClockFilter::Real) => query = query.filter(org::Column::ClockId.is_null()),
        Some(ClockFilter::Test(id)) => query = query.filter(org::Column::ClockId.eq(id.as_str())),
        None => {}
    }
    if let Some(prefix) = &filter.id_prefix {
        // A range of the key, which both backends read by index (`LIKE` alone is not,
        // here); U+10FFFF sorts after every other character in SQLite's byte order.
        // `LIKE` keeps the answer exact under any collation.
        query = query
            .filter(org::Column::Id.gte(prefix.as_str()))
            .filter(org::Column::Id.lt(format!("{prefix}\u{10FFFF}")))
            .filter(org::Column::Id.starts_with(prefix.as_str()));
    }
    if let Some(email) = &filter.billing_email {
        query = query.filter(org::Column::BillingEmail.eq(email.as_str()));
    }
    if let Some(after) = &filter.after {
        query = query.filter(org::Column::Id.gt(after.clone()));
    }
    query.limit(filter.limit)
}

/// Which orgs [`page`] reads: each given field narrows the selection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub status: Option<Status>,
    pub plan: Option<String>,
    pub ids: Option<Vec<String>>,
}

/// Up to `limit` orgs of the real clock (test-clock orgs are left out) matching
/// `selection`, by id after `after` (keyset paging: each page is one indexed range read).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn page(
    conn: &impl ConnectionTrait,
    selection: &Selection,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Org>> {
    let mut query = org::Entity::find()
        .filter(org::Column::ClockId.is_null())
        .order_by_asc(org::Column::Id);
    if let Some(status) = selection.status {
        query = query.filter(org::Column::State.eq(status.as_str()));
    }
    if let Some(plan) = &selection.plan {
        query = query.filter(org::Column::Plan.eq(plan.clone()));
    }
    if let Some(ids) = &selection.ids {
        query = query.filter(org::Column::Id.is_in(ids.iter().cloned()));
    }
    if let Some(after) = after {
        query = query.filter(org::Column::Id.gt(after.to_owned()));
    }
    fetch(conn, query.limit(limit)).await
}

/// Counts of orgs by state and by lock reason, and the due backlog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub orgs: u64,
    pub by_state: Vec<(Status, u64)>,
    pub by_reason: Vec<(LockReason, u64)>,
    pub due: u64,
}

/// The oldest passed deadline of the real clock's orgs: the first entry of
/// `idx_orgs_due` for the real clock (`MIN` would make `PostgreSQL` scan the table: it does
/// not take `IS NULL` as `=`).
///
/// # Errors
/// A database error.
pub async fn oldest_due(conn: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>> {
    let first: Option<Option<DateTime<Utc>>> = org::Entity::find()
        .select_only()
        .column(org::Column::NextDueAt)
        .filter(org::Column::ClockId.is_null())
        .filter(org::Column::NextDueAt.is_not_null())
        .order_by_asc(org::Column::ClockId)
        .order_by_asc(org::Column::NextDueAt)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(first.flatten())
}

/// Counts orgs; `due` counts those whose next deadline is at or before `now`.
///
/// # Errors
/// A database error.
pub async fn counts(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Counts> {
    let mut counts = Counts {
        orgs: org::Entity::find().count(conn).await?,
        ..Counts::default()
    };
    for status in Status::ALL {
        let n = org::Entity::find()
            .filter(org::Column::State.eq(status.as_str()))
            .count(conn)
            .await?;
        counts.by_state.push((status, n));
    }
    for reason in LockReason::ALL {
        // Only locked orgs have reasons: the state's index bounds the scan.
        let n = org::Entity::find()
            .filter(org::Column::State.eq(Status::Locked.as_str()))
            .filter(org::Column::LockReasons.contains(reason.as_str()))
            .count(conn)
            .await?;
        counts.by_reason.push((reason, n));
    }
    counts.due = org::Entity::find()
        .filter(org::Column::NextDueAt.lte(now))
        .filter(org::Column::ClockId.is_null())
        .count(conn)
        .await?;
    Ok(counts)
}
