//! The delivery side of the outbox: claim due messages with a lease, acknowledge them,
//! back off, dead-letter; and the operator's list, retry and discard.

use chrono::{DateTime, Utc};
use entity::outbox;
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::Result;

/// A message to deliver, or one listed for an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub org_id: String,
    pub channel: String,
    pub template: String,
    pub recipients: Vec<String>,
    pub payload: serde_json::Value,
    pub dedupe_key: String,
    pub at: DateTime<Utc>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

fn to_message(m: outbox::Model) -> Message {
    Message {
        recipients: serde_json::from_str(&m.recipients).unwrap_or_default(),
        payload: serde_json::from_str(&m.payload).unwrap_or(serde_json::Value::Null),
        id: m.id,
        org_id: m.org_id,
        channel: m.channel,
        template: m.template,
        dedupe_key: m.dedupe_key,
        at: m.at,
        status: m.status,
        attempts: m.attempts,
        next_attempt_at: m.next_attempt_at,
        last_error: m.last_error,
        sent_at: m.sent_at,
    }
}

/// Claims up to `limit` pending messages due at `now`: each gets one more attempt and is
/// hidden until `lease_until`, so a dispatcher that dies mid-send has it sent again then.
/// Call inside a transaction; on PostgreSQL concurrent dispatchers take disjoint rows.
///
/// # Errors
/// A database error.
pub async fn claim(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u64,
    channels: &[&str],
) -> Result<Vec<Message>> {
    let mut query = outbox::Entity::find()
        .filter(outbox::Column::Status.eq("pending"))
        .filter(outbox::Column::Channel.is_in(channels.iter().copied()))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .order_by_asc(outbox::Column::NextAttemptAt)
        .order_by_asc(outbox::Column::Id)
        .limit(limit);
    if conn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let rows = query.all(conn).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    if !ids.is_empty() {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::NextAttemptAt, Expr::value(lease_until))
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .filter(outbox::Column::Id.is_in(ids))
            .exec(conn)
            .await?;
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut m = to_message(r);
            m.attempts += 1;
            m
        })
        .collect())
}

/// Renews the lease of a claimed message right before it is sent, if the caller still
/// holds it: `attempts` is the count the caller's claim gave it (a fencing token). Once a
/// lease ran out another dispatcher may have claimed the message again, which moved the
/// count on: then this returns `false` and the caller must not send it.
///
/// # Errors
/// A database error.
pub async fn renew(
    conn: &impl ConnectionTrait,
    id: i64,
    attempts: i32,
    lease_until: DateTime<Utc>,
) -> Result<bool> {
    let result = outbox::Entity::update_many()
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(lease_until))
        .filter(outbox::Column::Id.eq(id))
        .filter(outbox::Column::Status.eq("pending"))
        .filter(outbox::Column::Attempts.eq(attempts))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Acknowledges a delivered message, if the caller still holds it (see [`renew`]).
/// Returns whether it did.
///
/// # Errors
/// A database error.
pub async fn mark_sent(
    conn: &impl ConnectionTrait,
    id: i64,
    attempts: i32,
    at: DateTime<Utc>,
) -> Result<bool> {
    let result = outbox::Entity::update_many()
        .col_expr(outbox::Column::Status, Expr::value("sent"))
        .col_expr(outbox::Column::SentAt, Expr::value(Some(at)))
        .col_expr(outbox::Column::LastError, Expr::value(None::<String>))
        .filter(outbox::Column::Id.eq(id))
        .filter(outbox::Column::Status.eq("pending"))
        .filter(outbox::Column::Attempts.eq(attempts))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records a failed attempt, if the caller still holds the message (see [`renew`]):
/// retried at `retry_at`, or dead-lettered. Returns whether it did.
///
/// # Errors
/// A database error.
pub async fn mark_failed(
    conn: &impl ConnectionTrait,
    id: i64,
    attempts: i32,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<bool> {
    let mut update = outbox::Entity::update_many().col_expr(
        outbox::Column::LastError,
        Expr::value(Some(error.to_owned())),
    );
    update = match retry_at {
        Some(at) => update.col_expr(outbox::Column::NextAttemptAt, Expr::value(at)),
        None => update.col_expr(outbox::Column::Status, Expr::value("dead")),
    };
    let result = update
        .filter(outbox::Column::Id.eq(id))
        .filter(outbox::Column::Status.eq("pending"))
        .filter(outbox::Column::Attempts.eq(attempts))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Marks a message with a final status that is not a delivery (`skipped`).
///
/// # Errors
/// A database error.
pub async fn mark_status(conn: &impl ConnectionTrait, id: i64, status: &str) -> Result<()> {
    outbox::Entity::update_many()
        .col_expr(outbox::Column::Status, Expr::value(status))
        .filter(outbox::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Lists messages, newest first, optionally by status.
///
/// # Errors
/// A database error.
pub async fn list(
    conn: &impl ConnectionTrait,
    status: Option<&str>,
    limit: u64,
) -> Result<Vec<Message>> {
    let mut query = outbox::Entity::find()
        .order_by_desc(outbox::Column::Id)
        .limit(limit);
    if let Some(status) = status {
        query = query.filter(outbox::Column::Status.eq(status));
    }
    Ok(query.all(conn).await?.into_iter().map(to_message).collect())
}

/// Puts a dead (or pending) message back in line now, with its attempts reset.
/// Returns whether a message was changed.
///
/// # Errors
/// A database error.
pub async fn retry(conn: &impl ConnectionTrait, id: i64, now: DateTime<Utc>) -> Result<bool> {
    let result = outbox::Entity::update_many()
        .col_expr(outbox::Column::Status, Expr::value("pending"))
        .col_expr(outbox::Column::Attempts, Expr::value(0))
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(now))
        .filter(outbox::Column::Id.eq(id))
        .filter(outbox::Column::Status.is_in(["dead", "pending"]))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Gives up on a message that is not sent yet. Returns whether a message was changed.
///
/// # Errors
/// A database error.
pub async fn discard(conn: &impl ConnectionTrait, id: i64) -> Result<bool> {
    let result = outbox::Entity::update_many()
        .col_expr(outbox::Column::Status, Expr::value("discarded"))
        .filter(outbox::Column::Id.eq(id))
        .filter(outbox::Column::Status.is_in(["dead", "pending"]))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// An org's messages, newest first (`idx_outbox_org`).
///
/// # Errors
/// A database error.
pub async fn of_org(conn: &impl ConnectionTrait, org_id: &str, limit: u64) -> Result<Vec<Message>> {
    Ok(outbox::Entity::find()
        .filter(outbox::Column::OrgId.eq(org_id))
        .order_by_desc(outbox::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(to_message)
        .collect())
}

/// Pending messages that failed at least once, the next attempt first
/// (`idx_outbox_status_next`).
///
/// # Errors
/// A database error.
pub async fn retrying(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<Message>> {
    Ok(outbox::Entity::find()
        .filter(outbox::Column::Status.eq("pending"))
        .filter(outbox::Column::Attempts.gt(0))
        .order_by_asc(outbox::Column::Status)
        .order_by_asc(outbox::Column::NextAttemptAt)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(to_message)
        .collect())
}
