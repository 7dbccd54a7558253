//! Orgs: load, claim due, insert, update with optimistic versioning, list, count.

use chrono::{DateTime, Utc};
use entity::org;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::sqlx;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, Iterable,
    PaginatorTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Select,
    StreamTrait,
};

use super::{Error, Result};
use crate::domain::period::Period;
use crate::domain::{Lifecycle, LockReason, LockReasons, Org, Status};

pub(super) fn to_domain(m: org::Model) -> Result<Org> {
    let corrupt = |field: &'static str, value: &str| Error::Corrupt {
        org: m.id.clone(),
        field,
        value: value.to_owned(),
    };
    let status: Status = m.state.parse().map_err(|_| corrupt("state", &m.state))?;
    let reasons = LockReasons::from_csv(&m.lock_reasons)
        .map_err(|_| corrupt("lock_reasons", &m.lock_reasons))?;
    let admins: Vec<String> =
        serde_json::from_str(&m.admins).map_err(|_| corrupt("admins", &m.admins))?;
    let addons: Vec<String> =
        serde_json::from_str(&m.addons).map_err(|_| corrupt("addons", &m.addons))?;
    let tier = u32::try_from(m.tier).map_err(|_| corrupt("tier", &m.tier.to_string()))?;
    let usage = match &m.usage_period {
        Some(label) => Some((
            Period::parse(label).ok_or_else(|| corrupt("usage_period", label))?,
            u64::try_from(m.usage_mau)
                .map_err(|_| corrupt("usage_mau", &m.usage_mau.to_string()))?,
        )),
        None => None,
    };
    let overage_lock_mau = m
        .overage_lock_mau
        .map(|v| u64::try_from(v).map_err(|_| corrupt("overage_lock_mau", &v.to_string())))
        .transpose()?;
    let scheduled_tier = m
        .scheduled_tier
        .map(|v| u32::try_from(v).map_err(|_| corrupt("scheduled_tier", &v.to_string())))
        .transpose()?;
    let scheduled_removals: Vec<String> = serde_json::from_str(&m.scheduled_removals)
        .map_err(|_| corrupt("scheduled_removals", &m.scheduled_removals))?;
    Ok(Org {
        lifecycle: Lifecycle {
            status,
            reasons,
            payment_method: m.payment_method,
            subscriber: m.subscriber,
            trial_ends_at: m.trial_ends_at,
            grace_ends_at: m.grace_ends_at,
            cancel_at: m.cancel_at,
            next_cycle_at: m.next_cycle_at,
            reminder_at: m.reminder_at,
            reminded_through: m.reminded_through,
        },
        id: m.id,
        plan: m.plan,
        tier,
        addons,
        currency: m.currency,
        admins,
        billing_email: m.billing_email,
        signup_at: m.signup_at,
        canceled_at: m.canceled_at,
        usage,
        overage_lock_mau,
        scheduled_tier,
        scheduled_removals,
        clock: m.clock_id,
        version: m.version,
    })
}

/// Decodes an org row by position. Every org query here selects the entity's columns in
/// declaration order (`Entity::find()` does), so a column's index is its `org::Column`
/// ordinal; by name, sea-orm searches the row's column names for each column, and org
/// rows are read on every sweep batch, command and usage chunk.
fn model_at(row: &QueryResult) -> std::result::Result<org::Model, DbErr> {
    let decoded = if let Some(row) = row.try_as_sqlite_row() {
        model_of(row)
    } else if let Some(row) = row.try_as_pg_row() {
        model_of(row)
    } else {
        unreachable!("acctd connects to SQLite or PostgreSQL only")
    };
    decoded.map_err(|e| DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into())))
}

/// [`model_at`] on the driver's own row: sea-orm's decoding of a NULL into an `Option`
/// formats an error message and drops it, a dozen times an org row.
fn model_of<'r, R>(row: &'r R) -> std::result::Result<org::Model, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use org::Column as C;
    let at = |c: C| c as usize;
    Ok(org::Model {
        id: row.try_get(at(C::Id))?,
        state: row.try_get(at(C::State))?,
        lock_reasons: row.try_get(at(C::LockReasons))?,
        plan: row.try_get(at(C::Plan))?,
        tier: row.try_get(at(C::Tier))?,
        addons: row.try_get(at(C::Addons))?,
        currency: row.try_get(at(C::Currency))?,
        admins: row.try_get(at(C::Admins))?,
        billing_email: row.try_get(at(C::BillingEmail))?,
        payment_method: row.try_get(at(C::PaymentMethod))?,
        subscriber: row.try_get(at(C::Subscriber))?,
        signup_at: row.try_get(at(C::SignupAt))?,
        trial_ends_at: row.try_get(at(C::TrialEndsAt))?,
        grace_ends_at: row.try_get(at(C::GraceEndsAt))?,
        cancel_at: row.try_get(at(C::CancelAt))?,
        next_cycle_at: row.try_get(at(C::NextCycleAt))?,
        next_due_at: row.try_get(at(C::NextDueAt))?,
        canceled_at: row.try_get(at(C::CanceledAt))?,
        version: row.try_get(at(C::Version))?,
        updated_at: row.try_get(at(C::UpdatedAt))?,
        usage_period: row.try_get(at(C::UsagePeriod))?,
        usage_mau: row.try_get(at(C::UsageMau))?,
        overage_lock_mau: row.try_get(at(C::OverageLockMau))?,
        scheduled_tier: row.try_get(at(C::ScheduledTier))?,
        scheduled_removals: row.try_get(at(C::ScheduledRemovals))?,
        clock_id: row.try_get(at(C::ClockId))?,
        reminder_at: row.try_get(at(C::ReminderAt))?,
        reminded_through: row.try_get(at(C::RemindedThrough))?,
    })
}

/// Runs a select of whole org rows and decodes each by position (see [`model_at`]) as it
/// arrives, while the database produces the next: the bulk reads (`claim_due`,
/// `load_many`). On `SQLite` the connection's worker thread steps the statement and hands
/// rows over a bounded channel; collecting them all before decoding left that thread idle
/// while this one decoded, and this one idle while that one stepped. Appends to `found`,
/// so that `load_many`'s chunks fill one vector without copying.
async fn fetch_streaming<C>(
    conn: &C,
    query: Select<org::Entity>,
    mut each: impl FnMut(&QueryResult) -> Result<()>,
) -> Result<()>
where
    C: ConnectionTrait + StreamTrait,
{
    use futures_core::Stream;
    let stream = conn
        .stream_raw(query.build(ConnectionTrait::get_database_backend(conn)))
        .await?;
    let mut stream = std::pin::pin!(stream);
    while let Some(row) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        each(&row?)?;
    }
    Ok(())
}

/// Decodes an org row (by position) onto `found`: what [`fetch_streaming`] does with
/// each row of a bulk read.
fn push_org(found: &mut Vec<Org>, row: &QueryResult) -> Result<()> {
    found.push(to_domain(model_at(row)?)?);
    Ok(())
}

/// Runs a select of whole org rows and decodes them by position (see [`model_at`]).
async fn fetch(conn: &impl ConnectionTrait, query: Select<org::Entity>) -> Result<Vec<Org>> {
    let rows = conn
        .query_all_raw(query.build(conn.get_database_backend()))
        .await?;
    // Each row is dropped as soon as it is decoded: a batch's rows and its orgs are not
    // all held at once.
    rows.into_iter()
        .map(|row| to_domain(model_at(&row)?))
        .collect()
}

fn to_active(o: &Org, now: DateTime<Utc>) -> org::ActiveModel {
    let l = &o.lifecycle;
    org::ActiveModel {
        id: Set(o.id.clone()),
        state: Set(l.status.as_str().to_owned()),
        lock_reasons: Set(l.reasons.to_csv()),
        plan: Set(o.plan.clone()),
        tier: Set(i64::from(o.tier)),
        addons: Set(json(&o.addons)),
        currency: Set(o.currency.clone()),
        admins: Set(json(&o.admins)),
        billing_email: Set(o.billing_email.clone()),
        payment_method: Set(l.payment_method),
        subscriber: Set(l.subscriber),
        signup_at: Set(o.signup_at),
        trial_ends_at: Set(l.trial_ends_at),
        grace_ends_at: Set(l.grace_ends_at),
        cancel_at: Set(l.cancel_at),
        next_cycle_at: Set(l.next_cycle_at),
        next_due_at: Set(l.next_due_at()),
        canceled_at: Set(o.canceled_at),
        version: Set(o.version),
        updated_at: Set(now),
        usage_period: Set(o.usage.map(|(p, _)| p.label())),
        usage_mau: Set(o
            .usage
            .map_or(0, |(_, mau)| i64::try_from(mau).unwrap_or(i64::MAX))),
        overage_lock_mau: Set(o
            .overage_lock_mau
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX))),
        scheduled_tier: Set(o.scheduled_tier.map(i64::from)),
        scheduled_removals: Set(json(&o.scheduled_removals)),
        clock_id: Set(o.clock.clone()),
        reminder_at: Set(l.reminder_at),
        reminded_through: Set(l.reminded_through),
    }
}

fn json(items: &[String]) -> String {
    // Proven invariant: a list of strings always serializes.
    serde_json::to_string(items).expect("strings serialize")
}

/// Inserts a new org at version 0.
///
/// # Errors
/// A database error, including a duplicate id.
pub async fn insert(conn: &impl ConnectionTrait, o: &Org, now: DateTime<Utc>) -> Result<()> {
    org::Entity::insert(to_active(o, now))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Inserts many orgs at once (seeding, imports), in chunks that fit both backends'
/// parameter limits.
///
/// # Errors
/// A database error.
pub async fn insert_many(
    conn: &impl ConnectionTrait,
    orgs: &[Org],
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in orgs.chunks(1_000) {
        org::Entity::insert_many(chunk.iter().map(|o| to_active(o, now)))
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// An id with a NUL character: no org has one (signup refuses it), and `PostgreSQL`
/// refuses it as a parameter ("invalid byte sequence"), so it is not sent at all.
pub(super) fn cannot_exist(id: &str) -> bool {
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

/// Claims up to `limit` orgs whose next deadline is at or before `until`, earliest first.
/// On `PostgreSQL` rows are locked with `FOR UPDATE SKIP LOCKED`, so concurrent sweeps take
/// disjoint batches; `SQLite` has one writer at a time (see [`super::lock_writes`]).
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
    fetch_streaming(conn, claim_due_query(backend, until, limit, clock), |row| {
        push_org(&mut found, row)
    })
    .await?;
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
        .column_as(Expr::cust("rowid"), "row_id")
        .filter(Expr::cust_with_values("rowid > ?", [after]))
        .order_by(Expr::cust("rowid"), sea_orm::Order::Asc)
        .limit(limit);
    let mut found = Vec::new();
    fetch_streaming(conn, query, |row| {
        let rowid: i64 = row.try_get_by_index(org::Column::iter().count())?;
        found.push((rowid, to_domain(model_at(row)?)?));
        Ok(())
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

/// Writes an org back if nobody changed it since it was read (its `version`), and bumps
/// the version in `o`.
///
/// # Errors
/// [`Error::Stale`] when another writer got there first; nothing is written then.
pub async fn update(conn: &impl ConnectionTrait, o: &mut Org, now: DateTime<Utc>) -> Result<()> {
    let read = o.version;
    let mut row = to_active(o, now);
    row.version = Set(read + 1);
    let result = org::Entity::update_many()
        .set(row)
        .filter(org::Column::Id.eq(o.id.clone()))
        .filter(org::Column::Version.eq(read))
        .exec(conn)
        .await?;
    if result.rows_affected != 1 {
        return Err(Error::Stale {
            org: o.id.clone(),
            version: read,
        });
    }
    o.version = read + 1;
    Ok(())
}

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

/// What [`update_many`] may write of an org, as it was read: given it, only the columns
/// some org of a statement's chunk changed are written (a lock sets 5 of the 20).
#[derive(Clone, Debug)]
pub struct Written {
    tier: u32,
    addons: Vec<String>,
    lifecycle: Lifecycle,
    canceled_at: Option<DateTime<Utc>>,
    usage: Option<(Period, u64)>,
    overage_lock_mau: Option<u64>,
    scheduled_tier: Option<u32>,
    scheduled_removals: Vec<String>,
}

impl Written {
    /// The written columns of `o` now (call it before changing `o`).
    pub fn of(o: &Org) -> Self {
        Self {
            tier: o.tier,
            addons: o.addons.clone(),
            lifecycle: o.lifecycle.clone(),
            canceled_at: o.canceled_at,
            usage: o.usage,
            overage_lock_mau: o.overage_lock_mau,
            scheduled_tier: o.scheduled_tier,
            scheduled_removals: o.scheduled_removals.clone(),
        }
    }

    /// Whether `o` differs from what was read in any column [`update_many`] writes
    /// (`updated_at` aside): an org that did not change needs no write.
    pub fn changed(&self, o: &Org) -> bool {
        COLUMNS
            .iter()
            .any(|col| col.name != "updated_at" && !(col.same)(o, self))
    }
}

/// A column [`update_many`] writes: its value, and whether an org still has the value it
/// was read with.
struct Column {
    name: &'static str,
    value: fn(&Org, DateTime<Utc>) -> sea_orm::Value,
    same: fn(&Org, &Written) -> bool,
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const COLUMNS: [Column; 20] = [
    Column {
        name: "state",
        value: |o, _| o.lifecycle.status.as_str().into(),
        same: |o, w| o.lifecycle.status == w.lifecycle.status,
    },
    Column {
        name: "lock_reasons",
        value: |o, _| o.lifecycle.reasons.to_csv().into(),
        same: |o, w| o.lifecycle.reasons == w.lifecycle.reasons,
    },
    Column {
        name: "tier",
        value: |o, _| i64::from(o.tier).into(),
        same: |o, w| o.tier == w.tier,
    },
    Column {
        name: "addons",
        value: |o, _| json(&o.addons).into(),
        same: |o, w| o.addons == w.addons,
    },
    Column {
        name: "payment_method",
        value: |o, _| o.lifecycle.payment_method.into(),
        same: |o, w| o.lifecycle.payment_method == w.lifecycle.payment_method,
    },
    Column {
        name: "subscriber",
        value: |o, _| o.lifecycle.subscriber.into(),
        same: |o, w| o.lifecycle.subscriber == w.lifecycle.subscriber,
    },
    Column {
        name: "trial_ends_at",
        value: |o, _| o.lifecycle.trial_ends_at.into(),
        same: |o, w| o.lifecycle.trial_ends_at == w.lifecycle.trial_ends_at,
    },
    Column {
        name: "grace_ends_at",
        value: |o, _| o.lifecycle.grace_ends_at.into(),
        same: |o, w| o.lifecycle.grace_ends_at == w.lifecycle.grace_ends_at,
    },
    Column {
        name: "cancel_at",
        value: |o, _| o.lifecycle.cancel_at.into(),
        same: |o, w| o.lifecycle.cancel_at == w.lifecycle.cancel_at,
    },
    Column {
        name: "next_cycle_at",
        value: |o, _| o.lifecycle.next_cycle_at.into(),
        same: |o, w| o.lifecycle.next_cycle_at == w.lifecycle.next_cycle_at,
    },
    Column {
        name: "next_due_at",
        value: |o, _| o.lifecycle.next_due_at().into(),
        same: |o, w| o.lifecycle.next_due_at() == w.lifecycle.next_due_at(),
    },
    Column {
        name: "canceled_at",
        value: |o, _| o.canceled_at.into(),
        same: |o, w| o.canceled_at == w.canceled_at,
    },
    Column {
        name: "updated_at",
        value: |_, now| now.into(),
        same: |_, _| false,
    },
    Column {
        name: "usage_period",
        value: |o, _| o.usage.map(|(p, _)| p.label()).into(),
        same: |o, w| o.usage.map(|(p, _)| p) == w.usage.map(|(p, _)| p),
    },
    Column {
        name: "usage_mau",
        value: |o, _| o.usage.map_or(0, |(_, mau)| big(mau)).into(),
        same: |o, w| o.usage.map(|(_, m)| m) == w.usage.map(|(_, m)| m),
    },
    Column {
        name: "overage_lock_mau",
        value: |o, _| o.overage_lock_mau.map(big).into(),
        same: |o, w| o.overage_lock_mau == w.overage_lock_mau,
    },
    Column {
        name: "scheduled_tier",
        value: |o, _| o.scheduled_tier.map(i64::from).into(),
        same: |o, w| o.scheduled_tier == w.scheduled_tier,
    },
    Column {
        name: "scheduled_removals",
        value: |o, _| json(&o.scheduled_removals).into(),
        same: |o, w| o.scheduled_removals == w.scheduled_removals,
    },
    Column {
        name: "reminder_at",
        value: |o, _| o.lifecycle.reminder_at.into(),
        same: |o, w| o.lifecycle.reminder_at == w.lifecycle.reminder_at,
    },
    Column {
        name: "reminded_through",
        value: |o, _| o.lifecycle.reminded_through.into(),
        same: |o, w| o.lifecycle.reminded_through == w.lifecycle.reminded_through,
    },
];

/// Writes back many orgs in one statement per chunk (`UPDATE … FROM (VALUES …)`, which
/// SQLite ≥ 3.33 and PostgreSQL both accept), each only if its version is the one it was
/// read at; bumps the versions in `orgs`. Given `read`
/// (each org's [`Written`] as read, in the order of `orgs`), a chunk's statement sets
/// only the columns that differ from it in some org of the chunk, and `updated_at`.
///
/// # Errors
/// [`Error::Stale`] when any org was changed concurrently; the caller rolls back.
pub async fn update_many<C: ConnectionTrait>(
    conn: &C,
    orgs: &mut [Org],
    read: &[Written],
    now: DateTime<Utc>,
) -> Result<()> {
    use sea_orm::{Statement, Value};
    const CHUNK: usize = 500;
    assert_eq!(read.len(), orgs.len(), "one Written per org, in order");
    let backend = conn.get_database_backend();
    for (c, chunk) in orgs.chunks_mut(CHUNK).enumerate() {
        let read = &read[c * CHUNK..c * CHUNK + chunk.len()];
        let columns: Vec<&Column> = COLUMNS
            .iter()
            .filter(|col| chunk.iter().zip(read).any(|(o, w)| !(col.same)(o, w)))
            .collect();
        let width = columns.len() + 2;
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * width);
        let mut rows = String::with_capacity(chunk.len() * width * 6);
        for (r, o) in chunk.iter().enumerate() {
            values.push(o.id.clone().into());
            values.push(o.version.into());
            values.extend(columns.iter().map(|col| (col.value)(o, now)));
            if r > 0 {
                rows.push_str(", ");
            }
            rows.push('(');
            for i in 0..width {
                if i > 0 {
                    rows.push_str(", ");
                }
                super::bulk::placeholder(&mut rows, backend, r * width + i + 1);
            }
            rows.push(')');
        }
        let set: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, col)| format!("\"{}\" = v.column{}", col.name, i + 3))
            .collect();
        let sql = format!(
            "UPDATE orgs SET {}, \"version\" = orgs.\"version\" + 1 FROM (VALUES {rows}) AS v \
             WHERE orgs.\"id\" = v.column1 AND orgs.\"version\" = v.column2",
            set.join(", "),
        );
        let stale = Error::Stale {
            org: chunk.first().map(|o| o.id.clone()).unwrap_or_default(),
            version: chunk.first().map_or(0, |o| o.version),
        };
        super::execute_expecting(
            conn,
            Statement::from_sql_and_values(backend, sql, values),
            chunk.len() as u64,
            stale,
        )
        .await?;
        for o in chunk.iter_mut() {
            o.version += 1;
        }
    }
    Ok(())
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
        fetch_streaming(conn, query, |row| push_org(&mut found, row)).await?;
    }
    Ok(found)
}
