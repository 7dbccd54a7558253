//! Writing orgs: inserts, and updates guarded by the version each org was read at, one
//! org at a time or many in one statement per chunk.

use chrono::{DateTime, Utc};
use entity::org;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IdenStatic, QueryFilter,
};

use super::codec::{json, to_active};
use crate::domain::period::Period;
use crate::domain::{Lifecycle, Org};
use crate::storage::{Error, Result};

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
            .any(|col| !matches!(col.name, org::Column::UpdatedAt) && !(col.same)(o, self))
    }
}

/// A column [`update_many`] writes: its name, as the entity's column (so that the org
/// table's columns are spelled only in `entity::org`), its value, and whether an org still
/// has the value it was read with.
struct Column {
    name: org::Column,
    value: fn(&Org, DateTime<Utc>) -> sea_orm::Value,
    same: fn(&Org, &Written) -> bool,
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const COLUMNS: [Column; 20] = [
    Column {
        name: org::Column::State,
        value: |o, _| o.lifecycle.status.as_str().into(),
        same: |o, w| o.lifecycle.status == w.lifecycle.status,
    },
    Column {
        name: org::Column::LockReasons,
        value: |o, _| o.lifecycle.reasons.to_csv().into(),
        same: |o, w| o.lifecycle.reasons == w.lifecycle.reasons,
    },
    Column {
        name: org::Column::Tier,
        value: |o, _| i64::from(o.tier).into(),
        same: |o, w| o.tier == w.tier,
    },
    Column {
        name: org::Column::Addons,
        value: |o, _| json(&o.addons).into(),
        same: |o, w| o.addons == w.addons,
    },
    Column {
        name: org::Column::PaymentMethod,
        value: |o, _| o.lifecycle.payment_method.into(),
        same: |o, w| o.lifecycle.payment_method == w.lifecycle.payment_method,
    },
    Column {
        name: org::Column::Subscriber,
        value: |o, _| o.lifecycle.subscriber.into(),
        same: |o, w| o.lifecycle.subscriber == w.lifecycle.subscriber,
    },
    Column {
        name: org::Column::TrialEndsAt,
        value: |o, _| o.lifecycle.trial_ends_at.into(),
        same: |o, w| o.lifecycle.trial_ends_at == w.lifecycle.trial_ends_at,
    },
    Column {
        name: org::Column::GraceEndsAt,
        value: |o, _| o.lifecycle.grace_ends_at.into(),
        same: |o, w| o.lifecycle.grace_ends_at == w.lifecycle.grace_ends_at,
    },
    Column {
        name: org::Column::CancelAt,
        value: |o, _| o.lifecycle.cancel_at.into(),
        same: |o, w| o.lifecycle.cancel_at == w.lifecycle.cancel_at,
    },
    Column {
        name: org::Column::NextCycleAt,
        value: |o, _| o.lifecycle.next_cycle_at.into(),
        same: |o, w| o.lifecycle.next_cycle_at == w.lifecycle.next_cycle_at,
    },
    Column {
        name: org::Column::NextDueAt,
        value: |o, _| o.lifecycle.next_due_at().into(),
        same: |o, w| o.lifecycle.next_due_at() == w.lifecycle.next_due_at(),
    },
    Column {
        name: org::Column::CanceledAt,
        value: |o, _| o.canceled_at.into(),
        same: |o, w| o.canceled_at == w.canceled_at,
    },
    Column {
        name: org::Column::UpdatedAt,
        value: |_, now| now.into(),
        same: |_, _| false,
    },
    Column {
        name: org::Column::UsagePeriod,
        value: |o, _| o.usage.map(|(p, _)| p.label()).into(),
        same: |o, w| o.usage.map(|(p, _)| p) == w.usage.map(|(p, _)| p),
    },
    Column {
        name: org::Column::UsageMau,
        value: |o, _| o.usage.map_or(0, |(_, mau)| big(mau)).into(),
        same: |o, w| o.usage.map(|(_, m)| m) == w.usage.map(|(_, m)| m),
    },
    Column {
        name: org::Column::OverageLockMau,
        value: |o, _| o.overage_lock_mau.map(big).into(),
        same: |o, w| o.overage_lock_mau == w.overage_lock_mau,
    },
    Column {
        name: org::Column::ScheduledTier,
        value: |o, _| o.scheduled_tier.map(i64::from).into(),
        same: |o, w| o.scheduled_tier == w.scheduled_tier,
    },
    Column {
        name: org::Column::ScheduledRemovals,
        value: |o, _| json(&o.scheduled_removals).into(),
        same: |o, w| o.scheduled_removals == w.scheduled_removals,
    },
    Column {
        name: org::Column::ReminderAt,
        value: |o, _| o.lifecycle.reminder_at.into(),
        same: |o, w| o.lifecycle.reminder_at == w.lifecycle.reminder_at,
    },
    Column {
        name: org::Column::RemindedThrough,
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
                crate::storage::bulk::placeholder(&mut rows, backend, r * width + i + 1);
            }
            rows.push(')');
        }
        let set: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, col)| format!("\"{}\" = v.column{}", col.name.as_str(), i + 3))
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
        crate::storage::execute_expecting(
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
