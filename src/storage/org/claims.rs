//! Reading orgs to act on them: one or many by id (locked on PostgreSQL until the
//! transaction ends) and the claims of due orgs a sweep or a catch-up pass works through.

use chrono::{DateTime, Utc};
use entity::org;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Select, StreamTrait,
};

use super::codec::{fetch, fetch_streaming};
use crate::domain::Org;
use crate::storage::Result;

/// An id with a NUL character: no org has one (signup refuses it), and `PostgreSQL`
/// refuses it as a parameter ("invalid byte sequence"), so it is not sent at all.
pub(in crate::storage) fn cannot_exist(id: &str) -> bool {
    id.contains('\0')
}

/// Loads one org; on `PostgreSQL` the row stays locked until the transaction ends.
///
/// # Errors
/// A database error or a corrupt row.
pub async fn load(conn: &impl ConnectionTrait, id: &str) -> Result<Option<Org>> {
    if cannot_exist(id) {
        return Ok(None);
    }
    let mut query = org::Entity::find_by_id(id.to_owned());
    if conn.get_database_backend() == DbBackend::Postgres {
        query = query.lock(LockType::Update);
    }
    Ok(fetch(conn, query).await?.pop())
}

/// Reads one org without locking it (read-only paths: views, entitlements).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<Org>> {
    if cannot_exist(id) {
        return Ok(None);
    }
    Ok(fetch(conn, org::Entity::find_by_id(id.to_owned()))
        .await?
        .pop())
}

/// Loads the orgs with these ids (those that exist), ordered by id; on `PostgreSQL` the
/// rows stay locked until the transaction ends (taken in id order, so two batches never
/// deadlock on each other).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn load_many(
    conn: &(impl ConnectionTrait + StreamTrait),
    ids: &[&str],
) -> Result<Vec<Org>> {
    let ids: Vec<&str> = ids.iter().copied().filter(|id| !cannot_exist(id)).collect();
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1_000) {
        let mut query = org::Entity::find()
            .filter(org::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(org::Column::Id);
        if ConnectionTrait::get_database_backend(conn) == DbBackend::Postgres {
            query = query.lock(LockType::Update);
        }
        fetch_streaming(conn, query, false, |org, _| found.push(org)).await?;
    }
    Ok(found)
}

/// Claims up to `limit` orgs whose next deadline is at or before `until`, earliest first.
/// On `PostgreSQL` rows are locked with `FOR UPDATE SKIP LOCKED`, so concurrent sweeps take
/// disjoint batches; `SQLite` has one writer at a time (see [`crate::storage::begin_write`]).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn claim_due(
    conn: &(impl ConnectionTrait + StreamTrait),
    until: DateTime<Utc>,
    limit: u64,
    clock: Option<&str>,
) -> Result<Vec<Org>> {
    let backend = ConnectionTrait::get_database_backend(conn);
    let mut found = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(100_000));
    let query = claim_due_query(backend, until, limit, clock);
    fetch_streaming(conn, query, false, |org, _| found.push(org)).await?;
    Ok(found)
}

/// The SQL definition of `idx_orgs_due`, as migration 7 creates it.
const DUE_INDEX: &str =
    r#"CREATE INDEX IF NOT EXISTS "idx_orgs_due" ON "orgs" ("clock_id", "next_due_at", "id")"#;

/// `acctd tick --catch-up` on `SQLite`: drops `idx_orgs_due` for a pass over the table in
/// rowid order ([`claim_due_by_rowid`]), so that the pass writes each table page about
/// once instead of the index's entries scattered over a large backlog.
///
/// # Errors
/// A database error.
pub async fn drop_due_index(conn: &impl ConnectionTrait) -> Result<()> {
    conn.execute_unprepared(r#"DROP INDEX IF EXISTS "idx_orgs_due""#)
        .await?;
    Ok(())
}

/// Builds `idx_orgs_due` again if it is missing (the end of a catch-up pass, or a pass
/// that was cut short). Returns whether it was missing.
///
/// # Errors
/// A database error.
pub async fn ensure_due_index(conn: &impl ConnectionTrait) -> Result<bool> {
    if conn.get_database_backend() != DbBackend::Sqlite {
        return Ok(false);
    }
    let missing = conn
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'idx_orgs_due'",
        ))
        .await?
        .is_none();
    if missing {
        conn.execute_unprepared(DUE_INDEX).await?;
    }
    Ok(missing)
}

/// Claims up to `limit` real-clock orgs due at `until` after rowid `after`, in rowid order
/// (`SQLite` only; see [`drop_due_index`]), with each org's rowid.
///
/// # Errors
/// A database error or a corrupt row.
pub async fn claim_due_by_rowid(
    conn: &(impl ConnectionTrait + StreamTrait),
    until: DateTime<Utc>,
    after: i64,
    limit: u64,
) -> Result<Vec<(i64, Org)>> {
    use sea_orm::sea_query::Expr;
    let query = due(until, None)
        .filter(Expr::cust_with_values("rowid > ?", [after]))
        .order_by(Expr::cust("rowid"), sea_orm::Order::Asc)
        .limit(limit);
    let mut found = Vec::new();
    fetch_streaming(conn, query, true, |org, rowid| {
        found.push((rowid.unwrap_or_default(), org));
    })
    .await?;
    Ok(found)
}

/// Orgs on `clock` whose next deadline is at or before `until`.
fn due(until: DateTime<Utc>, clock: Option<&str>) -> Select<org::Entity> {
    org::Entity::find()
        .filter(org::Column::NextDueAt.lte(until))
        .filter(match clock {
            Some(id) => org::Column::ClockId.eq(id),
            None => org::Column::ClockId.is_null(),
        })
}

/// The statement of [`claim_due`] on `backend`, for the query-plan test.
pub fn claim_due_statement(
    backend: DbBackend,
    until: DateTime<Utc>,
    limit: u64,
    clock: Option<&str>,
) -> sea_orm::Statement {
    claim_due_query(backend, until, limit, clock).build(backend)
}

/// The query of [`claim_due`]. It orders by `clock_id` first, although every row it reads
/// has the same one: `idx_orgs_due` is (`clock_id`, `next_due_at`, `id`), and `PostgreSQL`
/// only reads an index in order past a column it knows to be constant by `=`, not by
/// `IS NULL` (the real clock's orgs). Without it, `PostgreSQL` read every due org and
/// sorted them for each batch (see the query-plan test in `tests/it/storage.rs`).
fn claim_due_query(
    backend: DbBackend,
    until: DateTime<Utc>,
    limit: u64,
    clock: Option<&str>,
) -> sea_orm::Select<org::Entity> {
    let query = due(until, clock)
        .order_by_asc(org::Column::ClockId)
        .order_by_asc(org::Column::NextDueAt)
        .order_by_asc(org::Column::Id)
        .limit(limit);
    if backend == DbBackend::Postgres {
        query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
    } else {
        query
    }
}
