//! Orgs: load, claim due, insert, update with optimistic versioning, list, count.

use chrono::{DateTime, Utc};
use entity::org;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
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
    query.one(conn).await?.map(to_domain).transpose()
}

/// Reads one org without locking it (read-only paths: views, entitlements).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<Org>> {
    if cannot_exist(id) {
        return Ok(None);
    }
    org::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .map(to_domain)
        .transpose()
}

/// Claims up to `limit` orgs whose next deadline is at or before `until`, earliest first.
/// On `PostgreSQL` rows are locked with `FOR UPDATE SKIP LOCKED`, so concurrent sweeps take
/// disjoint batches; `SQLite` has one writer at a time (see [`super::lock_writes`]).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn claim_due(
    conn: &impl ConnectionTrait,
    until: DateTime<Utc>,
    limit: u64,
    clock: Option<&str>,
) -> Result<Vec<Org>> {
    claim_due_query(conn.get_database_backend(), until, limit, clock)
        .all(conn)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// The statement of [`claim_due`] on `backend`, for the query-plan test.
pub fn claim_due_statement(
    backend: DbBackend,
    until: DateTime<Utc>,
    limit: u64,
    clock: Option<&str>,
) -> sea_orm::Statement {
    use sea_orm::QueryTrait;
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
    let query = org::Entity::find()
        .filter(org::Column::NextDueAt.lte(until))
        .filter(match clock {
            Some(id) => org::Column::ClockId.eq(id),
            None => org::Column::ClockId.is_null(),
        })
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

/// Filters for [`list`].
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub reason: Option<LockReason>,
    pub after: Option<String>,
    pub limit: u64,
}

/// Lists orgs by id, with optional state and lock-reason filters (keyset paging).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn list(conn: &impl ConnectionTrait, filter: &Filter) -> Result<Vec<Org>> {
    let mut query = org::Entity::find().order_by_asc(org::Column::Id);
    if let Some(status) = filter.status {
        query = query.filter(org::Column::State.eq(status.as_str()));
    }
    if let Some(reason) = filter.reason {
        query = query.filter(org::Column::LockReasons.contains(reason.as_str()));
    }
    if let Some(after) = &filter.after {
        query = query.filter(org::Column::Id.gt(after.clone()));
    }
    query
        .limit(filter.limit)
        .all(conn)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Counts of orgs by state and by lock reason, and the due backlog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub orgs: u64,
    pub by_state: Vec<(Status, u64)>,
    pub by_reason: Vec<(LockReason, u64)>,
    pub due: u64,
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
        let n = org::Entity::find()
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

/// Writes back many orgs in one statement per chunk (`UPDATE … FROM (VALUES …)`, which
/// SQLite ≥ 3.33 and PostgreSQL both accept), each only if its version is the one it was
/// read at; bumps the versions in `orgs`.
///
/// # Errors
/// [`Error::Stale`] when any org was changed concurrently; the caller rolls back.
pub async fn update_many(
    conn: &impl ConnectionTrait,
    orgs: &mut [Org],
    now: DateTime<Utc>,
) -> Result<()> {
    use sea_orm::{Statement, Value};
    const COLUMNS: [&str; 20] = [
        "state",
        "lock_reasons",
        "tier",
        "addons",
        "payment_method",
        "subscriber",
        "trial_ends_at",
        "grace_ends_at",
        "cancel_at",
        "next_cycle_at",
        "next_due_at",
        "canceled_at",
        "updated_at",
        "usage_period",
        "usage_mau",
        "overage_lock_mau",
        "scheduled_tier",
        "scheduled_removals",
        "reminder_at",
        "reminded_through",
    ];
    let backend = conn.get_database_backend();
    let width = COLUMNS.len() + 2;
    for chunk in orgs.chunks_mut(500) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * width);
        let mut rows = Vec::with_capacity(chunk.len());
        for o in chunk.iter() {
            let l = &o.lifecycle;
            let start = values.len();
            values.extend([
                Value::from(o.id.clone()),
                Value::from(o.version),
                Value::from(l.status.as_str()),
                Value::from(l.reasons.to_csv()),
                Value::from(i64::from(o.tier)),
                Value::from(json(&o.addons)),
                Value::from(l.payment_method),
                Value::from(l.subscriber),
                Value::from(l.trial_ends_at),
                Value::from(l.grace_ends_at),
                Value::from(l.cancel_at),
                Value::from(l.next_cycle_at),
                Value::from(l.next_due_at()),
                Value::from(o.canceled_at),
                Value::from(now),
                Value::from(o.usage.map(|(p, _)| p.label())),
                Value::from(
                    o.usage
                        .map_or(0, |(_, mau)| i64::try_from(mau).unwrap_or(i64::MAX)),
                ),
                Value::from(
                    o.overage_lock_mau
                        .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                ),
                Value::from(o.scheduled_tier.map(i64::from)),
                Value::from(json(&o.scheduled_removals)),
                Value::from(l.reminder_at),
                Value::from(l.reminded_through),
            ]);
            let placeholders: Vec<String> = (start..values.len())
                .map(|i| match backend {
                    DbBackend::Postgres => format!("${}", i + 1),
                    _ => "?".to_owned(),
                })
                .collect();
            rows.push(format!("({})", placeholders.join(", ")));
        }
        let set: Vec<String> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| format!("\"{c}\" = v.column{}", i + 3))
            .collect();
        let sql = format!(
            "UPDATE orgs SET {}, \"version\" = orgs.\"version\" + 1 FROM (VALUES {}) AS v \
             WHERE orgs.\"id\" = v.column1 AND orgs.\"version\" = v.column2",
            set.join(", "),
            rows.join(", ")
        );
        let result = conn
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        if result.rows_affected() != chunk.len() as u64 {
            return Err(Error::Stale {
                org: chunk.first().map(|o| o.id.clone()).unwrap_or_default(),
                version: chunk.first().map_or(0, |o| o.version),
            });
        }
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
pub async fn load_many(conn: &impl ConnectionTrait, ids: &[&str]) -> Result<Vec<Org>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1_000) {
        let mut query = org::Entity::find()
            .filter(org::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(org::Column::Id);
        if conn.get_database_backend() == DbBackend::Postgres {
            query = query.lock(LockType::Update);
        }
        for m in query.all(conn).await? {
            found.push(to_domain(m)?);
        }
    }
    Ok(found)
}
