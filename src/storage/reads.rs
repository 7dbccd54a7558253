//! Coalesced point reads of orgs: the entitlement and view reads of `acctd serve`.
//!
//! Each read of one org by id is a statement on a pooled connection; on `SQLite` that is
//! a hand-off to the connection's worker thread and back, and under concurrent load the
//! two cores spend more time switching between those threads than reading.
//! [`OrgReads`] queues the reads instead: a few lanes each take every read waiting when
//! they are free and answer them with one statement (`WHERE id IN` the ids as one JSON
//! parameter). A read is never answered from older data than a direct one would be: its
//! statement starts after the read was asked, so a write committed before the read sees
//! the write. Idle, a read waits for nothing; if a batch fails or takes over
//! [`BATCH_TIMEOUT`], each of its reads is made again on its own, so errors are the reads'
//! own and one stalled statement does not hold up the reads behind it for longer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use entity::org;
use sea_orm::sea_query::Expr;
use sea_orm::{DatabaseConnection, DbBackend, EntityTrait, QueryFilter};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::Result;
use crate::domain::Org;

/// The most reads one statement answers.
const MAX_BATCH: usize = 128;

/// How long a batch may take before its reads are made on their own: one stalled
/// statement must not hold up every read behind it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(2);

struct Read {
    id: String,
    reply: oneshot::Sender<Answer>,
}

enum Answer {
    /// The row, or `None`: no org has the id.
    Found(Option<Box<org::Model>>),
    /// The batch failed: read on your own.
    ReadAlone,
}

/// Point reads of orgs by id, coalesced while others are in flight (see the module doc).
/// Cheap to share; the lanes stop when the last handle is dropped.
#[derive(Debug)]
pub struct OrgReads {
    queue: mpsc::UnboundedSender<Read>,
    counts: Arc<Counts>,
    /// For the reads made on their own.
    db: DatabaseConnection,
}

#[derive(Debug, Default)]
struct Counts {
    answered: AtomicU64,
    failed: AtomicU64,
}

impl OrgReads {
    /// Starts `lanes` lanes (at least one) reading through `db`; must be called inside a
    /// tokio runtime.
    pub fn start(db: &DatabaseConnection, lanes: usize) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        let counts = Arc::new(Counts::default());
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(db.clone(), Arc::clone(&waiting), Arc::clone(&counts)));
        }
        Self {
            queue,
            counts,
            db: db.clone(),
        }
    }

    /// How many batches have been answered so far, and how many failed (or timed out)
    /// and were read one by one.
    pub fn batches(&self) -> (u64, u64) {
        (
            self.counts.answered.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
        )
    }

    /// Reads one org, like [`super::org::get`].
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn get(&self, id: &str) -> Result<Option<Org>> {
        // No org has such an id, and it would fail the whole batch on PostgreSQL.
        if super::org::cannot_exist(id) {
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        let read = Read {
            id: id.to_owned(),
            reply,
        };
        if self.queue.send(read).is_ok() {
            if let Ok(Answer::Found(found)) = answer.await {
                return found.map(|m| super::org::to_domain(*m)).transpose();
            }
        }
        // The batch failed (or the lanes are gone): read on its own, for its own error.
        super::org::get(&self.db, id).await
    }
}

/// Takes every waiting read (up to [`MAX_BATCH`]) and answers them with one statement,
/// until every sender is gone.
async fn lane(
    db: DatabaseConnection,
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<Read>>>,
    counts: Arc<Counts>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut waiting = waiting.lock().await;
            if waiting.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        let outcome = tokio::time::timeout(BATCH_TIMEOUT, read_many(&db, &batch)).await;
        match outcome.unwrap_or_else(|_| Err(sea_orm::DbErr::Custom("timed out".to_owned()))) {
            Ok(found) => {
                counts.answered.fetch_add(1, Ordering::Relaxed);
                for read in batch.drain(..) {
                    read.reply
                        .send(Answer::Found(found.get(&read.id).cloned().map(Box::new)))
                        .ok();
                }
            }
            Err(e) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, reads = batch.len(), "batched org read failed; reading one by one");
                for read in batch.drain(..) {
                    read.reply.send(Answer::ReadAlone).ok();
                }
            }
        }
    }
}

/// The orgs among the ids of `batch`, by id, in one statement.
async fn read_many(
    db: &DatabaseConnection,
    batch: &[Read],
) -> std::result::Result<HashMap<String, org::Model>, sea_orm::DbErr> {
    let ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
    let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned());
    // The entity's columns by name, not `*`: a pooled SQLite connection opened while
    // migrations ran keeps the old schema until its next statement checks it, and a `*`
    // prepared against that schema (two columns short) is re-prepared by SQLite on its
    // first step with every column, which sqlx's cached column list does not expect (its
    // worker panicked: "index out of bounds: the len is 26 but the index is 26"). A named
    // column makes SQLite check the schema while preparing instead.
    // (PostgreSQL's placeholder is `$1`, as `?` is one of its JSON operators.)
    let ids_of = match db.get_database_backend() {
        DbBackend::Postgres => r#""orgs"."id" IN (SELECT json_array_elements_text($1::json))"#,
        _ => r#""orgs"."id" IN (SELECT "value" FROM json_each(?))"#,
    };
    let models = org::Entity::find()
        .filter(Expr::cust_with_values(ids_of, [ids]))
        .all(db)
        .await?;
    Ok(models.into_iter().map(|m| (m.id.clone(), m)).collect())
}
