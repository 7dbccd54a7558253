//! Repositories over sea-orm. The only module that imports `entity`; it returns domain
//! types. Every function takes `&impl ConnectionTrait`, so callers pass a transaction.
//!
//! **Architecture Invariant:** code here is backend-agnostic; the two places that differ
//! (taking `SQLite`'s write lock, `FOR UPDATE SKIP LOCKED` on `PostgreSQL`) branch on
//! `get_database_backend()`.

pub mod audit;
pub mod billing;
mod bulk;
mod checkpoint;
pub mod org;
pub mod outbox;
pub mod reads;
pub mod snapshot;
pub mod test_clock;
pub mod usage;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    Statement,
};

pub use migration::{Migrator, MigratorTrait};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// Another writer changed the org since it was read: the write was refused.
    #[error("org `{org}` was changed concurrently (expected version {version})")]
    Stale { org: String, version: i64 },
    #[error("org `{org}`: stored {field} `{value}` is not valid")]
    Corrupt {
        org: String,
        field: &'static str,
        value: String,
    },
    /// A number does not fit its column: nothing is written rather than a clamped value.
    #[error("{field} {value} does not fit its column")]
    OutOfRange { field: &'static str, value: String },
}

/// `v` as the `i64` of a column named `field`.
///
/// # Errors
/// [`Error::OutOfRange`] when it does not fit.
pub(crate) fn fit(field: &'static str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::OutOfRange {
        field,
        value: v.to_string(),
    })
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `url` names a `SQLite` database (sea-orm picks the backend by this scheme).
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// A `sqlite:` URL as sqlx reads it. It is parsed by the parser that opens the pool
/// (`SqliteConnectOptions::from_str`), so that `sqlite:FILE`, `sqlite://FILE`,
/// `sqlite::memory:`, a percent-encoded file name and the query (`?mode=rwc`,
/// `?mode=memory`, `?mode=ro`, `&cache=…`) mean the same here as to the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteUrl {
    /// The database file, percent-decoded; `None` in memory, and for an empty name
    /// (`SQLite`'s private temporary database).
    pub file: Option<PathBuf>,
    /// In memory (`:memory:` or `?mode=memory`): it vanishes with its last connection.
    pub memory: bool,
    /// The file is created if it does not exist (`?mode=rwc`).
    pub create: bool,
}

impl SqliteUrl {
    /// Parses a `sqlite:` URL.
    ///
    /// # Errors
    /// sqlx's refusal: an unknown query parameter or `mode`, or a file name that is not
    /// UTF-8 once decoded.
    pub fn parse(url: &str) -> Result<Self, sea_orm::sqlx::Error> {
        use sea_orm::sqlx::sqlite::SqliteConnectOptions;
        use sea_orm::sqlx::ConnectOptions as _;
        let options = SqliteConnectOptions::from_str(url)?;
        // sqlx keeps its open mode private but writes it into the URL it rebuilds
        // (`mode=memory|rwc|ro|rw`). That URL is built from the file name too, which it
        // does not escape enough to parse back (`:memory:` becomes `file:sqlx-in-…`,
        // read as a port), so it is rebuilt with a plain name in its place.
        let mode = options
            .clone()
            .filename("db")
            .to_url_lossy()
            .query_pairs()
            .find(|(key, _)| key == "mode")
            .map(|(_, mode)| mode.into_owned())
            .unwrap_or_default();
        let memory = mode == "memory";
        let file = options.get_filename();
        Ok(Self {
            file: (!memory && !file.as_os_str().is_empty()).then(|| file.to_path_buf()),
            memory,
            create: mode == "rwc",
        })
    }
}

/// The number of connections [`connect`] opens for `url` when asked for `max_connections`:
/// one for an in-memory `SQLite` database (it vanishes with its last connection), at
/// least one for a `SQLite` file, at least two on `PostgreSQL`.
pub fn pool_size(url: &str, max_connections: u32) -> u32 {
    if !is_sqlite(url) {
        max_connections.max(2)
    } else if SqliteUrl::parse(url).is_ok_and(|u| u.memory) {
        1
    } else {
        max_connections.max(1)
    }
}

/// Opens a pool of [`pool_size`] connections. `SQLite` files use WAL with a busy timeout;
/// an in-memory database keeps its one connection forever.
///
/// # Errors
/// The database cannot be reached or opened.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.sqlx_logging(false);
    let sqlite = if is_sqlite(url) {
        Some(
            SqliteUrl::parse(url)
                .map_err(|e| Error::Db(DbErr::Custom(format!("bad SQLite URL `{url}`: {e}"))))?,
        )
    } else {
        None
    };
    if let Some(sqlite) = &sqlite {
        // A file's WAL is checkpointed by a connection of its own, woken as pooled
        // connections are released (storage/checkpoint.rs).
        let background_checkpoints = !sqlite.memory;
        if background_checkpoints {
            let wake = checkpoint::spawn(url);
            options.map_sqlx_sqlite_pool_opts(move |pool| {
                let wake = wake.clone();
                pool.after_release(move |_, _| {
                    // Full: a checkpoint is already asked for.
                    let _ = wake.try_send(());
                    Box::pin(async { Ok(true) })
                })
            });
        }
        options
            .max_connections(pool_size(url, max_connections))
            .min_connections(1)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .acquire_timeout(Duration::from_secs(30))
            // Nothing between us and an embedded database can drop a connection; sqlx
            // would otherwise ping every connection on its way out of the pool, on the
            // caller's path (a round trip through its worker thread per transaction or
            // statement). sqlx still tests each connection as it is released, off it.
            .test_before_acquire(false)
            .map_sqlx_sqlite_opts(move |opts| {
                let opts = opts
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
                    .pragma("temp_store", "memory");
                if background_checkpoints {
                    opts.pragma("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES.to_string())
                } else {
                    opts
                }
            });
    } else {
        // The pool retries a refused or failed connection until its acquire timeout and
        // then says only `pool timed out`: one direct attempt first fails fast, with the
        // cause.
        postgres_reachable(url).await?;
        options
            .max_connections(pool_size(url, max_connections))
            .acquire_timeout(Duration::from_secs(30));
        // Ping only connections idle for a second or more (which the server, a proxy or
        // a firewall may have dropped meanwhile), not each one on every checkout: that
        // ping was a round trip per statement on the caller's path. A hot connection
        // that died fails its statement; sqlx's test on release then discards it and the
        // pool opens anew.
        options.test_before_acquire_if_idle_for(Duration::from_secs(1));
    }
    // Two connections of a new pool may race to switch a new SQLite file to WAL, and
    // that switch does not wait on the busy timeout: retry such a refusal briefly.
    let mut attempt = 0;
    loop {
        match (Database::connect(options.clone()).await, &sqlite) {
            (Err(e), Some(_)) if attempt < 8 && e.to_string().contains("database is locked") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25 * attempt)).await;
            }
            (Err(e), Some(sqlite)) if e.to_string().contains("code: 14") => {
                return Err(Error::Db(DbErr::Custom(sqlite_open_error(url, sqlite, &e))));
            }
            (other, _) => return Ok(other?),
        }
    }
}

/// How long [`postgres_reachable`] waits for the server to answer.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens and closes one `PostgreSQL` connection to `url`, so that a server that is down,
/// a wrong host or a missing database is reported at once and by its cause (the server's
/// own message, without the line of its source code that sqlx appends).
async fn postgres_reachable(url: &str) -> Result<()> {
    use sea_orm::sqlx::postgres::PgConnectOptions;
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
    let fail = |cause: String| {
        let place = url.parse::<PgConnectOptions>().map_or_else(
            |_| String::from("PostgreSQL"),
            |o| {
                format!(
                    "PostgreSQL database `{}` on {}:{}",
                    o.get_database().unwrap_or(o.get_username()),
                    o.get_host(),
                    o.get_port()
                )
            },
        );
        Err(Error::Db(DbErr::Custom(format!(
            "cannot connect to {place}: {cause}"
        ))))
    };
    let options = match url.parse::<PgConnectOptions>() {
        Ok(options) => options,
        Err(e) => return fail(format!("bad URL: {e}")),
    };
    match tokio::time::timeout(POSTGRES_CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(sea_orm::sqlx::Error::Database(e))) => fail(e.message().to_owned()),
        Ok(Err(sea_orm::sqlx::Error::Io(e))) => fail(e.to_string()),
        Ok(Err(e)) => fail(e.to_string()),
        Err(_) => fail(format!(
            "no answer within {} s",
            POSTGRES_CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// What to say when `SQLite` cannot open `url`'s file (its code 14, "unable to open
/// database file", names neither the file nor the cause).
fn sqlite_open_error(url: &str, sqlite: &SqliteUrl, e: &DbErr) -> String {
    let path = sqlite
        .file
        .as_deref()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    let hint = if sqlite.create {
        "check that its directory exists and is writable"
    } else {
        "it does not exist, or its directory is not writable; to create it, add `?mode=rwc` to the URL"
    };
    format!("cannot open SQLite database file `{path}` (URL `{url}`): {hint} ({e})")
}

/// Executes one write; returns the rows it affected.
///
/// # Errors
/// A database error.
pub(crate) async fn execute(conn: &impl ConnectionTrait, stmt: Statement) -> Result<u64> {
    Ok(conn.execute_raw(stmt).await?.rows_affected())
}

/// [`execute`], where the statement must affect exactly `rows` rows, or it fails with
/// `error` (the caller rolls back).
///
/// # Errors
/// A database error, or `error`.
pub(crate) async fn execute_expecting(
    conn: &impl ConnectionTrait,
    stmt: Statement,
    rows: u64,
    error: Error,
) -> Result<()> {
    if execute(conn, stmt).await? == rows {
        Ok(())
    } else {
        Err(error)
    }
}

/// Writes a plan (everything but its orgs, which the caller writes) in the caller's
/// transaction: new invoices with their lines, status changes, payments, usage purges,
/// project totals, alerts, audit rows and outbox messages. Outbox messages are first due
/// at their instant or at `recorded_at`, whichever is later.
///
/// # Errors
/// A database error; the caller rolls back.
pub async fn write(
    conn: &impl ConnectionTrait,
    plan: &crate::domain::plan::Plan,
    recorded_at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    billing::insert_many(conn, &plan.invoices).await?;
    for change in &plan.statuses {
        billing::set_status(conn, change.invoice, change.status, change.at).await?;
    }
    billing::record_payments(conn, &plan.payments).await?;
    for org in &plan.purges {
        usage::purge_org(conn, org).await?;
    }
    if !plan.totals.is_empty() {
        let totals: Vec<_> = plan.totals.values().cloned().collect();
        usage::upsert_many(conn, &totals, recorded_at).await?;
    }
    if !plan.usage.is_empty() {
        usage::upsert_totals(conn, &plan.usage).await?;
    }
    usage::insert_alerts(conn, &plan.alerts).await?;
    audit::insert_transitions(conn, &plan.transitions).await?;
    audit::enqueue_in(conn, &plan.outbox, Some(recorded_at)).await?;
    Ok(())
}

/// Applies every pending migration.
///
/// # Errors
/// A migration failed.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// Claims a singleton job's run for a period (e.g. `("retention", "2026-11-22")`):
/// `true` for exactly one caller across all replicas.
///
/// # Errors
/// A database error.
pub async fn claim_job(
    conn: &impl ConnectionTrait,
    job: &str,
    period: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    use entity::job_run;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let row = job_run::ActiveModel {
        job: Set(job.to_owned()),
        period: Set(period.to_owned()),
        started_at: Set(at),
    };
    let result = job_run::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec_without_returning(conn)
        .await?;
    Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}

/// Begins a transaction that writes. On `SQLite` it takes the database's write lock at
/// once (`BEGIN IMMEDIATE`, waiting up to the busy timeout), so that it cannot fail later
/// when upgrading a read lock; `PostgreSQL` locks rows instead, as each write reads them.
///
/// # Errors
/// The lock could not be taken within the busy timeout, or no connection.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    Ok(db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?)
}

/// Opens `url` for reading only (`acctd whatif`): a `SQLite` file in read-only mode (no
/// journal-mode switch, no checkpointer), `PostgreSQL` sessions whose transactions
/// default to read only. Migrations are not run: the caller reads the schema as it is.
///
/// # Errors
/// The database cannot be reached or opened.
pub async fn connect_read_only(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(pool_size(url, max_connections))
        .acquire_timeout(Duration::from_secs(30));
    if is_sqlite(url) {
        options.map_sqlx_sqlite_opts(|opts| {
            opts.read_only(true)
                .create_if_missing(false)
                .busy_timeout(Duration::from_secs(30))
        });
        return Database::connect(options).await.map_err(|e| {
            if e.to_string().contains("code: 14") {
                Error::Db(DbErr::Custom(format!(
                    "cannot open SQLite database `{url}` read-only: it does not exist or cannot be read ({e})"
                )))
            } else {
                e.into()
            }
        });
    }
    postgres_reachable(url).await?;
    options.map_sqlx_postgres_opts(|opts| opts.options([("default_transaction_read_only", "on")]));
    Ok(Database::connect(options).await?)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{pool_size, SqliteUrl};

    fn parsed(url: &str) -> SqliteUrl {
        SqliteUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn file(path: &str, create: bool) -> SqliteUrl {
        SqliteUrl {
            file: Some(PathBuf::from(path)),
            memory: false,
            create,
        }
    }

    #[test]
    fn every_form_of_a_sqlite_file_url_names_the_same_file() {
        for (url, expected) in [
            ("sqlite:acctd.db", file("acctd.db", false)),
            ("sqlite://acctd.db", file("acctd.db", false)),
            ("sqlite://acctd.db?mode=rwc", file("acctd.db", true)),
            ("sqlite:acctd.db?mode=rwc", file("acctd.db", true)),
            (
                "sqlite:///var/lib/acctd/a.db?mode=rwc",
                file("/var/lib/acctd/a.db", true),
            ),
            (
                "sqlite://acctd.db?cache=shared&mode=rwc",
                file("acctd.db", true),
            ),
            (
                "sqlite://acctd.db?mode=rwc&cache=private",
                file("acctd.db", true),
            ),
            ("sqlite://acctd.db?mode=ro", file("acctd.db", false)),
            // Percent-decoded, as SQLite opens it.
            (
                "sqlite:///tmp/my%20data/a%3Fb.db?mode=rwc",
                file("/tmp/my data/a?b.db", true),
            ),
        ] {
            assert_eq!(parsed(url), expected, "{url}");
        }
    }

    #[test]
    fn memory_urls_have_no_file_and_one_connection() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://acctd.db?mode=memory",
            "sqlite::memory:?cache=shared",
        ] {
            let u = parsed(url);
            assert!(u.memory && u.file.is_none(), "{url}: {u:?}");
            assert_eq!(pool_size(url, 8), 1, "{url}");
        }
        assert_eq!(pool_size("sqlite://a.db?mode=rwc", 8), 8);
        assert_eq!(pool_size("sqlite://a.db?mode=rwc", 0), 1);
        assert_eq!(pool_size("postgres://u@h/db", 1), 2);
        // A file whose name merely mentions memory is a file.
        assert_eq!(
            parsed("sqlite://memory.db?mode=rwc").file.as_deref(),
            Some(Path::new("memory.db"))
        );
        assert_eq!(pool_size("sqlite://memory.db?mode=rwc", 8), 8);
    }

    #[test]
    fn a_query_sqlx_refuses_is_an_error() {
        for url in [
            "sqlite://a.db?mode=rwx",
            "sqlite://a.db?journal=wal",
            "sqlite://a.db?cache=big",
        ] {
            assert!(SqliteUrl::parse(url).is_err(), "{url}");
        }
    }
}
