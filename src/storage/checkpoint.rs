//! Checkpoints a `SQLite` file's write-ahead log off the writers' path.
//!
//! `SQLite` copies the WAL back into the database file (a checkpoint) on the connection
//! whose commit takes the log past `wal_autocheckpoint` pages: inside that caller's
//! commit, with an `fsync` of the database file. A sweep batch writes more than the
//! default 1,000 pages, so every batch would pay a checkpoint before the next could
//! start. Here a
//! connection of its own (and so a thread of its own) runs a `PASSIVE` checkpoint each
//! time a pooled connection is released, which never blocks a writer or a reader; the
//! pool's connections checkpoint themselves only past [`BACKSTOP_PAGES`], for when this
//! one falls behind, cannot open the file or stops.
//!
//! **Architecture Invariant:** the checkpointer lives exactly as long as its pool: the
//! pool's release hook holds the only sender, so dropping the pool ends the task and
//! closes its connection.

use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sea_orm::sqlx::{self, Connection};
use tokio::sync::mpsc;

/// The WAL size, in pages, past which a committing connection checkpoints itself
/// (`PRAGMA wal_autocheckpoint`); 10,000 pages of 4 KiB are about 40 MB.
pub const BACKSTOP_PAGES: u32 = 10_000;

/// The least time between two checkpoints: a stream of small commits (usage reports)
/// does not turn into a stream of `fsync`s.
const MIN_INTERVAL: Duration = Duration::from_millis(20);

/// Starts the checkpointer of the `SQLite` file at `url`. Each send asks for a
/// checkpoint (asks made while one runs coalesce into the next); when every sender is
/// dropped the task closes its connection and ends.
pub fn spawn(url: &str) -> mpsc::Sender<()> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut conn: Option<SqliteConnection> = None;
        while rx.recv().await.is_some() {
            if conn.is_none() {
                match open(&url).await {
                    Ok(c) => conn = Some(c),
                    Err(error) => {
                        tracing::warn!(%error, "WAL checkpointer cannot open the database; commits checkpoint themselves past the backstop");
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut *c)
                .await
            {
                Ok((busy, log, checkpointed)) => {
                    tracing::trace!(busy, log, checkpointed, "WAL checkpoint");
                }
                Err(error) => {
                    tracing::warn!(%error, "WAL checkpoint failed; reopening");
                    conn = None;
                }
            }
            tokio::time::sleep(MIN_INTERVAL).await;
        }
        if let Some(c) = conn {
            c.close().await.ok();
        }
    });
    tx
}

async fn open(url: &str) -> Result<SqliteConnection, sqlx::Error> {
    // A PASSIVE checkpoint never waits on locks; opening reads the schema, which may.
    let options = SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(5));
    SqliteConnection::connect_with(&options).await
}
