//! Coalesced point reads of orgs: the entitlement and view reads of `acctd serve`.
//!
//! Each read of one org by id is a statement on a pooled connection; on `SQLite` that is
//! a hand-off to the connection's worker thread and back, and under concurrent load the
//! two cores spent more time switching between those threads than reading (BENCHMARKS.md).
//! [`OrgReads`] queues the reads instead: a few lanes each take every read waiting when
//! they are free and answer them with one statement (`WHERE id IN` the ids as one JSON
//! parameter). A read is never answered from older data than a direct one would be: its
//! statement starts after the read was asked, so a write committed before the read sees
//! the write. Idle, a read waits for nothing; if a batch fails, each of its reads is made
//! again on its own, so errors are the reads' own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use entity::org;
use sea_orm::{DatabaseConnection, DbBackend, EntityTrait, Statement};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::Result;
use crate::domain::Org;

/// The most reads one statement answers.
const MAX_BATCH: usize = 128;

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
    statements: Arc<AtomicU64>,
}

impl OrgReads {
    /// Starts `lanes` lanes (at least one) reading through `db`; must be called inside a
    /// tokio runtime.
    pub fn start(db: &DatabaseConnection, lanes: usize) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        let statements = Arc::new(AtomicU64::new(0));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(
                db.clone(),
                Arc::clone(&waiting),
                Arc::clone(&statements),
            ));
        }
        Self { queue, statements }
    }

    /// How many batched statements the lanes have run so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Reads one org, like [`super::org::get`].
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn get(&self, db: &DatabaseConnection, id: &str) -> Result<Option<Org>> {
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
        super::org::get(db, id).await
    }
}

/// Takes every waiting read (up to [`MAX_BATCH`]) and answers them with one statement,
/// until every sender is gone.
async fn lane(
    db: DatabaseConnection,
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<Read>>>,
    statements: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut waiting = waiting.lock().await;
            if waiting.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        statements.fetch_add(1, Ordering::Relaxed);
        match read_many(&db, &batch).await {
            Ok(found) => {
                for read in batch.drain(..) {
                    read.reply
                        .send(Answer::Found(found.get(&read.id).cloned().map(Box::new)))
                        .ok();
                }
            }
            Err(e) => {
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
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            r#"SELECT * FROM "orgs" WHERE "id" IN (SELECT json_array_elements_text($1::json))"#
        }
        _ => r#"SELECT * FROM "orgs" WHERE "id" IN (SELECT "value" FROM json_each(?))"#,
    };
    let models = org::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(backend, sql, [ids.into()]))
        .all(db)
        .await?;
    Ok(models.into_iter().map(|m| (m.id.clone(), m)).collect())
}
