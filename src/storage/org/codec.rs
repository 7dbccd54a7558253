//! The org row and the domain's [`Org`]: decoding rows by position as they arrive, and
//! the active model an insert or update writes.

use chrono::{DateTime, Utc};
use entity::org;
use sea_orm::sqlx;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DbErr, QueryResult, QueryTrait, Select, StreamTrait,
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

/// Decodes an org row by position. Every org query here selects the entity's columns in
/// declaration order (`Entity::find()` does), so a column's index is its `org::Column`
/// ordinal; by name, sea-orm searches the row's column names for each column, and org
/// rows are read on every sweep batch, command and usage chunk.
pub(super) fn model_at(row: &QueryResult) -> std::result::Result<org::Model, DbErr> {
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
pub(super) async fn fetch_streaming<C>(
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
pub(super) fn push_org(found: &mut Vec<Org>, row: &QueryResult) -> Result<()> {
    found.push(to_domain(model_at(row)?)?);
    Ok(())
}

/// Runs a select of whole org rows and decodes them by position (see [`model_at`]).
pub(super) async fn fetch(
    conn: &impl ConnectionTrait,
    query: Select<org::Entity>,
) -> Result<Vec<Org>> {
    let rows = conn
        .query_all_raw(query.build(conn.get_database_backend()))
        .await?;
    // Each row is dropped as soon as it is decoded: a batch's rows and its orgs are not
    // all held at once.
    rows.into_iter()
        .map(|row| to_domain(model_at(&row)?))
        .collect()
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
