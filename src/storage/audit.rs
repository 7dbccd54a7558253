//! The append-only transitions audit and the notification outbox.

use chrono::{DateTime, Utc};
use entity::{outbox, transition};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::bulk::Insert;
use super::Result;
pub use crate::domain::record::{OutboxMessage, TransitionRecord};
use crate::domain::{LockReasons, Status};

/// Appends audit rows.
///
/// # Errors
/// A database error.
pub async fn insert_transitions<C: ConnectionTrait>(
    conn: &C,
    rows: &[TransitionRecord],
) -> Result<()> {
    use transition::Column as T;
    const COLUMNS: [T; 9] = [
        T::OrgId,
        T::FromState,
        T::ToState,
        T::Cause,
        T::LockReasons,
        T::Actor,
        T::Reason,
        T::At,
        T::RecordedAt,
    ];
    let backend = conn.get_database_backend();
    for chunk in rows.chunks(1_000) {
        let mut insert = Insert::new::<transition::Entity>(backend, &COLUMNS, chunk.len());
        for r in chunk {
            insert.row([
                r.org_id.clone().into(),
                r.from.map(Status::as_str).into(),
                r.to.as_str().into(),
                r.cause.clone().into(),
                r.reasons.to_csv().into(),
                r.actor.clone().into(),
                r.reason.clone().into(),
                r.at.into(),
                r.recorded_at.into(),
            ]);
        }
        super::execute(conn, insert.build("")).await?;
    }
    Ok(())
}

/// Writes outbox rows; a row whose dedupe key exists already is skipped, so a replayed
/// cause never makes a second message. Returns how many rows were new.
///
/// # Errors
/// A database error.
pub async fn enqueue(conn: &impl ConnectionTrait, messages: &[OutboxMessage]) -> Result<u64> {
    enqueue_in(conn, messages, None).await
}

/// [`enqueue`], returning how many rows were new. A message is first tried at its instant, or at
/// `enqueued_at` if that is later: a sweep's messages about past deadlines are then due
/// in the order they were written, and the outbox's (`status`, `next_attempt_at`) index
/// takes a batch's rows at its end, not scattered over the deadlines of a backlog.
///
/// # Errors
/// A database error.
pub async fn enqueue_in<C: ConnectionTrait>(
    conn: &C,
    messages: &[OutboxMessage],
    enqueued_at: Option<DateTime<Utc>>,
) -> Result<u64> {
    use outbox::Column as O;
    const COLUMNS: [O; 12] = [
        O::OrgId,
        O::Channel,
        O::Template,
        O::Recipients,
        O::Payload,
        O::DedupeKey,
        O::At,
        O::Status,
        O::Attempts,
        O::NextAttemptAt,
        O::LastError,
        O::SentAt,
    ];
    let backend = conn.get_database_backend();
    let mut new = 0;
    // 12 columns a row: 1,000 rows stay under both backends' parameter limits.
    for chunk in messages.chunks(1_000) {
        let mut insert = Insert::new::<outbox::Entity>(backend, &COLUMNS, chunk.len());
        for m in chunk {
            insert.row([
                m.org_id.clone().into(),
                m.channel.into(),
                m.template.clone().into(),
                serde_json::to_string(&m.recipients)
                    .unwrap_or_default()
                    .into(),
                // The same text as `Display`, written straight into one `Vec` instead of
                // through a formatter.
                serde_json::to_string(&m.payload).unwrap_or_default().into(),
                m.dedupe_key.clone().into(),
                m.at.into(),
                "pending".into(),
                0_i32.into(),
                enqueued_at.map_or(m.at, |e| e.max(m.at)).into(),
                None::<String>.into(),
                None::<DateTime<Utc>>.into(),
            ]);
        }
        new += super::execute(
            conn,
            insert.build(" ON CONFLICT (\"dedupe_key\") DO NOTHING"),
        )
        .await?;
    }
    Ok(new)
}

/// The most recent transitions of an org, newest last.
///
/// # Errors
/// A database error or a corrupt row.
pub async fn recent_transitions(
    conn: &impl ConnectionTrait,
    org_id: &str,
    limit: u64,
) -> Result<Vec<TransitionRecord>> {
    let mut rows = transition::Entity::find()
        .filter(transition::Column::OrgId.eq(org_id))
        .order_by_desc(transition::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    rows.reverse();
    rows.into_iter().map(to_record).collect()
}

fn to_record(m: transition::Model) -> Result<TransitionRecord> {
    let corrupt = |field: &'static str, value: String| super::Error::Corrupt {
        org: m.org_id.clone(),
        field,
        value,
    };
    Ok(TransitionRecord {
        from: m
            .from_state
            .as_deref()
            .map(|s| s.parse().map_err(|_| corrupt("from_state", s.to_owned())))
            .transpose()?,
        to: m
            .to_state
            .parse()
            .map_err(|_| corrupt("to_state", m.to_state.clone()))?,
        reasons: LockReasons::from_csv(&m.lock_reasons)
            .map_err(|_| corrupt("lock_reasons", m.lock_reasons.clone()))?,
        org_id: m.org_id,
        cause: m.cause,
        actor: m.actor,
        reason: m.reason,
        at: m.at,
        recorded_at: m.recorded_at,
    })
}

/// Number of audit rows.
///
/// # Errors
/// A database error.
pub async fn count_transitions(conn: &impl ConnectionTrait) -> Result<u64> {
    Ok(transition::Entity::find().count(conn).await?)
}

/// How many transitions the audit trail holds for each cause, by cause.
///
/// # Errors
/// A database error.
pub async fn transitions_by_cause(conn: &impl ConnectionTrait) -> Result<Vec<(String, i64)>> {
    Ok(transition::Entity::find()
        .select_only()
        .column(transition::Column::Cause)
        .column_as(transition::Column::Id.count(), "n")
        .group_by(transition::Column::Cause)
        .order_by_asc(transition::Column::Cause)
        .into_tuple()
        .all(conn)
        .await?)
}

/// Number of outbox rows not yet delivered.
///
/// # Errors
/// A database error.
pub async fn outbox_backlog(conn: &impl ConnectionTrait) -> Result<u64> {
    Ok(outbox::Entity::find()
        .filter(outbox::Column::Status.eq("pending"))
        .count(conn)
        .await?)
}
