//! One daemon per SQLite file: `acctd serve` holds an exclusive lock on `FILE.lock` for its
//! lifetime (released by the OS if the process dies), and a second daemon on the same file
//! refuses to start instead of sharing the single-writer database. PostgreSQL replicas
//! share work through row locks and need no such lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

/// The lock a daemon holds; dropping it releases the lock.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    pub path: PathBuf,
}

/// Why the daemon may not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("another acctd daemon is already serving {database} (it holds {lock}); stop it first, or use PostgreSQL to run several replicas")]
    Held { database: String, lock: String },
    #[error("cannot open the daemon lock {lock}: {source}")]
    Io {
        lock: String,
        source: std::io::Error,
    },
}

/// The database file of a SQLite URL, as sqlx reads it (`storage::SqliteUrl`), or `None`
/// for PostgreSQL, in-memory databases and URLs sqlx refuses (which then fail to open).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    if !crate::storage::is_sqlite(url) {
        return None;
    }
    crate::storage::SqliteUrl::parse(url).ok()?.file
}

/// Takes the daemon lock for a SQLite database; `Ok(None)` for other databases.
///
/// # Errors
/// [`Error::Held`] when another process holds it.
pub fn acquire(url: &str) -> Result<Option<DaemonLock>, Error> {
    let Some(db) = sqlite_file(url) else {
        return Ok(None);
    };
    let mut lock = db.clone().into_os_string();
    lock.push(".lock");
    let path = PathBuf::from(lock);
    let shown = path.display().to_string();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            lock: shown.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(DaemonLock { _file: file, path })),
        Err(TryLockError::WouldBlock) => Err(Error::Held {
            database: db.display().to_string(),
            lock: shown,
        }),
        Err(TryLockError::Error(source)) => Err(Error::Io {
            lock: shown,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
        let first = acquire(&url).unwrap().expect("a lock for a file");
        let second = acquire(&url).unwrap_err();
        assert!(
            second
                .to_string()
                .contains("another acctd daemon is already serving"),
            "{second}"
        );
        drop(first);
        assert!(acquire(&url).unwrap().is_some(), "released on drop");
        assert!(acquire("sqlite::memory:").unwrap().is_none());
        assert!(acquire("postgres://u@h/db").unwrap().is_none());
    }

    #[test]
    fn the_lock_is_next_to_the_file_sqlite_opens_in_every_url_form() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("my data.db");
        let encoded = dir.path().join("my%20data.db");
        for url in [
            format!("sqlite://{}?mode=rwc", db.display()),
            format!("sqlite:{}?mode=rwc&cache=shared", db.display()),
            format!("sqlite://{}?mode=rwc", encoded.display()),
        ] {
            let lock = acquire(&url).unwrap().expect("a lock for a file");
            assert_eq!(lock.path, dir.path().join("my data.db.lock"), "{url}");
        }
        assert!(acquire("sqlite://a.db?mode=memory").unwrap().is_none());
        assert!(acquire("sqlite://:memory:").unwrap().is_none());
    }
}
