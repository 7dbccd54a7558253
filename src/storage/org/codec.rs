//! The org row and the domain's [`Org`]: decoding rows by position as they arrive, and
//! the active model an insert or update writes.

use chrono::{DateTime, Utc};
use entity::org;
use sea_orm::sea_query::Expr;
use sea_orm::sqlx;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ColumnType, ConnectionTrait, DbBackend, DbErr, IdenStatic,
    Iterable, QueryResult, QuerySelect, QueryTrait, Select, StreamTrait,
};

use crate::domain::period::Period;
use crate::domain::{Lifecycle, LockReasons, Org, Status};
use crate::storage::{Error, Result};

pub(in crate::storage) fn to_domain(m: org::Model) -> Result<Org> {
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

/// The select list of whole org rows: on `SQLite` one JSON array of the entity's columns
/// in declaration order (`json_array(…)`, booleans as `true`/`false`), which is a
/// `org::Model` to serde; elsewhere the columns themselves. sqlx's `SQLite` driver copies
/// every column of every row into a value of its own on its worker thread (an allocation
/// each, freed on the caller's), and an org row has 28 columns: one text value a row costs
/// far less (ARCHITECTURE.md, "Performance tricks").
pub(super) fn selecting(query: Select<org::Entity>, backend: DbBackend) -> Select<org::Entity> {
    static PACKED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let columns: Vec<String> = org::Column::iter()
            .map(|c| match c.def().get_column_type() {
                ColumnType::Boolean => format!(
                    "json(CASE WHEN \"orgs\".\"{}\" THEN 'true' ELSE 'false' END)",
                    c.as_str()
                ),
                _ => format!("\"orgs\".\"{}\"", c.as_str()),
            })
            .collect();
        format!("json_array({})", columns.join(", "))
    });
    match backend {
        DbBackend::Sqlite => query.select_only().expr(Expr::cust(PACKED.as_str())),
        _ => query,
    }
}

/// Decodes a row of a [`selecting`] select.
pub(super) fn decode(row: &QueryResult) -> Result<Org> {
    let model = match row.try_as_sqlite_row() {
        Some(row) => {
            let text: &str = sqlx::Row::try_get(row, 0).map_err(driver_error)?;
            serde_json::from_str(text).map_err(|e| {
                Error::Db(DbErr::Type(format!(
                    "an org row that does not decode ({e}): {text}"
                )))
            })?
        }
        None => model_at(row)?,
    };
    to_domain(model)
}

fn driver_error(e: sqlx::Error) -> Error {
    Error::Db(DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into())))
}

/// Decodes an org row by position (`PostgreSQL`). Every org query here selects the
/// entity's columns in declaration order (`Entity::find()` does), so a column's index is
/// its `org::Column` ordinal; by name, sea-orm searches the row's column names for each
/// column.
fn model_at(row: &QueryResult) -> Result<org::Model> {
    let row = row
        .try_as_pg_row()
        .expect("acctd connects to SQLite or PostgreSQL only");
    model_of(row).map_err(driver_error)
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

/// Runs a select of whole org rows ([`selecting`]) and decodes each as it arrives, while
/// the database produces the next: the bulk reads (`claim_due`, `load_many`, catch-up
/// claims). On `SQLite` the connection's worker thread steps the statement and hands rows
/// over a bounded channel; collecting them all before decoding left that thread idle while
/// this one decoded, and this one idle while that one stepped. With `rowid` (`SQLite`'s
/// catch-up claims) each org comes with its rowid.
pub(super) async fn fetch_streaming<C>(
    conn: &C,
    query: Select<org::Entity>,
    rowid: bool,
    mut each: impl FnMut(Org, Option<i64>),
) -> Result<()>
where
    C: ConnectionTrait + StreamTrait,
{
    use futures_core::Stream;
    let backend = ConnectionTrait::get_database_backend(conn);
    let mut query = selecting(query, backend);
    if rowid {
        query = query.column_as(Expr::cust("rowid"), "row_id");
    }
    let stream = conn.stream_raw(query.build(backend)).await?;
    let mut stream = std::pin::pin!(stream);
    while let Some(row) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let row = row?;
        let id = if rowid {
            Some(row.try_get::<i64>("", "row_id")?)
        } else {
            None
        };
        each(decode(&row)?, id);
    }
    Ok(())
}

/// Runs a select of whole org rows ([`selecting`]) and decodes them.
pub(super) async fn fetch(
    conn: &impl ConnectionTrait,
    query: Select<org::Entity>,
) -> Result<Vec<Org>> {
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all_raw(selecting(query, backend).build(backend))
        .await?;
    // Each row is dropped as soon as it is decoded: a batch's rows and its orgs are not
    // all held at once.
    rows.iter().map(decode).collect()
}

pub(super) fn to_active(o: &Org, now: DateTime<Utc>) -> org::ActiveModel {
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

pub(super) fn json(items: &[String]) -> String {
    // Proven invariant: a list of strings always serializes.
    serde_json::to_string(items).expect("strings serialize")
}
