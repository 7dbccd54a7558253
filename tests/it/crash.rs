//! Crash safety with real processes: a daemon killed with SIGKILL mid-sweep loses and
//! duplicates nothing once restarted (SPEC section 11).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acctd::domain::period::Period;
use acctd::domain::{Lifecycle, LockReasons, Org, Status};
use acctd::storage;
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::helpers::{both, output_within, Backend, Spawned, TestDb};

const ORGS: usize = 20_000;

/// How long a command a test runs to its end (`acctd tick`) may take before it is killed
/// and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_mins(5);

/// A daemon on `db` sweeping in batches of 50, logging warnings to the test's stderr.
fn spawn_daemon(db: &TestDb) -> Spawned {
    Spawned::spawn(daemon(db).stderr(Stdio::inherit()))
}

/// The command of [`spawn_daemon`], to spawn.
fn daemon(db: &TestDb) -> Command {
    // A file of its own for each daemon: rewriting a file (truncated, then written)
    // while a daemon spawned before reads it at its start gave it an empty one.
    static DAEMONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = DAEMONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let config = db.dir.path().join(format!("crash-{n}.toml"));
    std::fs::write(
        &config,
        "[daemon]\nbatch_size = 50\nmax_batch_size = 50\nsweep_every_seconds = 3600\n[log]\nlevel = \"warn\"\n[api]\nlisten = \"127.0.0.1:0\"\n[email]\ntransport = \"none\"\n",
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_acctd"));
    command
        .args([
            "--config",
            config.to_str().unwrap(),
            "--db",
            &db.url,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // The log level is the config's (or the test's `ACCTD__LOG__LEVEL`), not the
        // environment's `RUST_LOG`.
        .env_remove("RUST_LOG");
    command
}

/// A daemon of [`daemon`] that logs its sweep batches (`acctd::engine` at debug, without
/// colour codes) to a file of the test's directory, read back by [`claimed_logged`].
fn spawn_logging_daemon(db: &TestDb, name: &str) -> Spawned {
    let log = std::fs::File::create(db.dir.path().join(name)).unwrap();
    Spawned::spawn(
        daemon(db)
            .env("ACCTD__LOG__LEVEL", "warn,acctd::engine=debug")
            .env("NO_COLOR", "1")
            .stderr(log),
    )
}

/// The orgs claimed by the sweep batches of the daemon that logged to file `name`
/// ([`spawn_logging_daemon`]).
fn claimed_logged(db: &TestDb, name: &str) -> u64 {
    let log = std::fs::read_to_string(db.dir.path().join(name)).unwrap();
    log.lines()
        .filter(|l| l.contains("sweep batch"))
        .filter_map(|l| {
            l.split("claimed=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    scalars(db, sql, &[]).await[0]
}

/// `first` and each of `more` (each a `SELECT` of one integer), read by one statement.
async fn scalars(db: &DatabaseConnection, first: &str, more: &[&str]) -> Vec<i64> {
    let columns: Vec<String> = std::iter::once(first)
        .chain(more.iter().copied())
        .map(|sql| format!("({sql})"))
        .collect();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT {}", columns.join(", ")),
        ))
        .await
        .expect("query")
        .expect("a row");
    (0..columns.len())
        .map(|i| row.try_get_by_index::<i64>(i).expect("an integer"))
        .collect()
}

/// Waits for a condition that another process brings about (not for time to pass).
async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Seeds `ORGS` subscribers: in grace with the deadline passed within the last hour, or
/// active with this month's cycle due.
async fn seed(db: &DatabaseConnection, grace: bool) -> chrono::DateTime<Utc> {
    let now = acctd::clock::truncate(Utc::now());
    seed_at(db, grace, "org", ORGS, now).await;
    now
}

async fn seed_n(db: &DatabaseConnection, grace: bool, prefix: &str, count: usize) {
    seed_at(db, grace, prefix, count, acctd::clock::truncate(Utc::now())).await;
}

async fn seed_at(
    db: &DatabaseConnection,
    grace: bool,
    prefix: &str,
    count: usize,
    now: chrono::DateTime<Utc>,
) {
    let orgs: Vec<Org> = (0..count)
        .map(|i| {
            let mut lifecycle = Lifecycle::trial(now, true);
            lifecycle.trial_ends_at = None;
            lifecycle.subscriber = true;
            lifecycle.reasons = LockReasons::default();
            if grace {
                lifecycle.status = Status::GracePeriod;
                lifecycle.grace_ends_at =
                    Some(now - chrono::Duration::seconds(3_600 - (i % 3_000) as i64));
            } else {
                lifecycle.status = Status::Active;
                lifecycle.next_cycle_at = Some(Period::containing(now).start());
            }
            Org {
                id: format!("{prefix}{i:06}"),
                plan: "basic".into(),
                tier: 5_000,
                addons: Vec::new(),
                currency: "USD".into(),
                admins: vec![format!("admin@org{i}.test")],
                billing_email: format!("billing@org{i}.test"),
                signup_at: now - chrono::Duration::days(60),
                canceled_at: None,
                lifecycle,
                usage: None,
                overage_lock_mau: None,
                scheduled_tier: None,
                scheduled_removals: Vec::new(),
                clock: None,
                version: 0,
            }
        })
        .collect();
    storage::org::insert_many(db, &orgs, now)
        .await
        .expect("seed");
}

/// A daemon SIGKILLed in the middle of a sweep, then restarted: every due org is locked
/// exactly once, with one audit row and one notification each.
async fn daemon_killed_mid_sweep_loses_and_duplicates_nothing(backend: Backend) {
    let Some(test_db) = TestDb::new(backend).await else {
        return;
    };
    let db = test_db.connect().await;
    let now = seed(&db, true).await;
    let locked = "SELECT COUNT(*) FROM transitions WHERE cause = 'grace_expired'";
    kill_mid_sweep_then_finish(
        &test_db,
        &db,
        locked,
        &[
            "SELECT COUNT(*) FROM outbox WHERE template = 'account_locked'",
            "SELECT COUNT(*) FROM orgs WHERE state = 'locked'",
        ],
    )
    .await;
    assert!(
        dump(&db).await == uninterrupted(backend, true, now).await,
        "differs from an uninterrupted run"
    );

    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(DISTINCT org_id) FROM transitions WHERE cause = 'grace_expired'"
        )
        .await,
        ORGS as i64
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM transitions").await,
        ORGS as i64
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM orgs WHERE state = 'locked' AND lock_reasons = 'payment_overdue'"
        )
        .await,
        ORGS as i64
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM outbox WHERE template = 'account_locked'"
        )
        .await,
        ORGS as i64
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(DISTINCT org_id) FROM outbox").await,
        ORGS as i64
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM orgs WHERE version <> 1").await,
        0
    );
}
both!(daemon_killed_mid_sweep_loses_and_duplicates_nothing);

/// Starts the daemon, SIGKILLs it once `progress` shows work under way but unfinished,
/// restarts it, waits until `progress` reaches `ORGS`, and stops it with SIGTERM.
/// How many times a sweep is SIGKILLed, each time at a later point of its progress.
const KILLS: i64 = 20;

/// Starts the daemon and SIGKILLs it `KILLS` times at increasing points of `progress`
/// (a count that reaches `ORGS`), restarting it each time; then lets a last daemon
/// finish and stops it with SIGTERM. At each kill every count of `alongside` equals
/// `progress`'s, and it is a multiple of the batch size: batches
/// commit whole.
async fn kill_mid_sweep_then_finish(
    test_db: &TestDb,
    db: &DatabaseConnection,
    progress: &str,
    alongside: &[&str],
) {
    let step = ORGS as i64 / (KILLS + 5);
    let mut done = 0;
    for kill in 1..=KILLS {
        let mut daemon = spawn_daemon(test_db);
        let target = done + step;
        wait_until(
            "the sweep has moved on",
            Duration::from_mins(2),
            async || scalar(db, progress).await >= target,
        )
        .await;
        daemon.kill().expect("SIGKILL");
        daemon.wait().unwrap();
        // All counts in one statement, so from one snapshot: a PostgreSQL server finishes
        // a COMMIT the killed daemon sent just before it died, possibly between two reads.
        let counts = scalars(db, progress, alongside).await;
        let at_kill = counts[0];
        assert!(
            at_kill > done && at_kill < ORGS as i64,
            "kill {kill} must land mid-sweep ({at_kill} of {ORGS} done, {done} before)"
        );
        // Batches commit whole: no org was half-written.
        assert_eq!(at_kill % 50, 0, "a batch was partly committed: {at_kill}");
        for (sql, count) in alongside.iter().zip(&counts[1..]) {
            assert_eq!(*count, at_kill, "a batch was partly committed: {sql}");
        }
        done = at_kill;
    }

    let mut daemon = spawn_daemon(test_db);
    wait_until(
        "the restarted daemon has caught up",
        Duration::from_mins(5),
        async || scalar(db, progress).await == ORGS as i64,
    )
    .await;
    let pid = daemon.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    let status = daemon.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

/// The database's content without processing times and row ids, sorted: what an
/// interrupted run must end with, equal to an uninterrupted one.
async fn dump(db: &DatabaseConnection) -> Vec<String> {
    let queries = [
        "SELECT id, state, lock_reasons, CAST(grace_ends_at AS TEXT), CAST(cancel_at AS TEXT), CAST(next_cycle_at AS TEXT), CAST(reminder_at AS TEXT), CAST(version AS TEXT) FROM orgs",
        "SELECT org_id, COALESCE(from_state, '-'), to_state, cause, lock_reasons, CAST(at AS TEXT), actor, '', '' FROM transitions",
        "SELECT org_id, key, period, kind, CAST(total_cents AS TEXT), status, CAST(issued_at AS TEXT), '', '' FROM invoices",
        "SELECT org_id, channel, template, dedupe_key, recipients, CAST(at AS TEXT), '', '', '' FROM outbox",
    ];
    let mut rows = Vec::new();
    for sql in queries {
        let result = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap();
        for row in result {
            let mut fields = Vec::new();
            for i in 0..8 {
                fields.push(
                    row.try_get_by_index::<Option<String>>(i)
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                );
            }
            rows.push(fields.join("|"));
        }
    }
    rows.sort();
    rows
}

/// Seeds a second database like the first, at the same instant, and runs one
/// uninterrupted `acctd tick` over it.
async fn uninterrupted(backend: Backend, grace: bool, now: chrono::DateTime<Utc>) -> Vec<String> {
    let reference = TestDb::new(backend)
        .await
        .expect("the same backend is available");
    let db = reference.connect().await;
    seed_at(&db, grace, "org", ORGS, now).await;
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_acctd"))
            .args(["--db", &reference.url, "tick"])
            .env("ACCTD__EMAIL__TRANSPORT", "none"),
        CHILD_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dump(&db).await
}

/// SPEC 5: a monthly cycle SIGKILLed halfway and resumed bills every subscriber exactly
/// once for the period, with one invoice email each.
async fn monthly_cycle_killed_halfway_bills_each_org_once(backend: Backend) {
    let Some(test_db) = TestDb::new(backend).await else {
        return;
    };
    let db = test_db.connect().await;
    let now = seed(&db, false).await;
    let billed = "SELECT COUNT(*) FROM invoices WHERE kind = 'cycle'";
    kill_mid_sweep_then_finish(&test_db, &db, billed, &[]).await;
    assert!(
        dump(&db).await == uninterrupted(backend, false, now).await,
        "differs from an uninterrupted run"
    );

    let period = Period::containing(Utc::now()).label();
    assert_eq!(
        scalar(
            &db,
            &format!("SELECT COUNT(DISTINCT org_id) FROM invoices WHERE key = 'cycle:{period}'")
        )
        .await,
        ORGS as i64
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM invoices").await,
        ORGS as i64
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM invoice_lines").await,
        ORGS as i64
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM outbox WHERE template = 'invoice'"
        )
        .await,
        ORGS as i64
    );
    // Running the cycle again for the same period changes nothing.
    let again = output_within(
        Command::new(env!("CARGO_BIN_EXE_acctd")).args(["--db", &test_db.url, "tick"]),
        CHILD_TIMEOUT,
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 transitions, 0 facts"),
        "{again:?}"
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM invoices").await,
        ORGS as i64
    );
}
both!(monthly_cycle_killed_halfway_bills_each_org_once);

/// SPEC 11: two daemons on one PostgreSQL share the due orgs (`FOR UPDATE SKIP LOCKED`):
/// every org transitions exactly once, audit rows equal transitions, no outbox
/// duplicates, and both daemons claimed orgs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(acctd_postgres_tests),
    ignore = "TEST_POSTGRES_URL was not set when the tests were built"
)]
async fn two_daemons_on_one_postgres_process_each_org_once() {
    let Some(test_db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = test_db.connect().await;
    seed(&db, true).await;
    let locked = "SELECT COUNT(*) FROM transitions WHERE cause = 'grace_expired'";
    let mut first = spawn_logging_daemon(&test_db, "first.log");
    let mut second = spawn_logging_daemon(&test_db, "second.log");
    wait_until(
        "both daemons have swept everything",
        Duration::from_mins(5),
        async || scalar(&db, locked).await == ORGS as i64,
    )
    .await;
    for daemon in [&mut first, &mut second] {
        Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status()
            .unwrap();
        assert!(daemon.wait().unwrap().success());
    }
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM transitions").await,
        ORGS as i64
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(DISTINCT org_id) FROM transitions").await,
        ORGS as i64
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM outbox WHERE template = 'account_locked'"
        )
        .await,
        ORGS as i64
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM orgs WHERE version <> 1").await,
        0
    );
    // Both daemons claimed orgs, and together every org once.
    let logged = [
        claimed_logged(&test_db, "first.log"),
        claimed_logged(&test_db, "second.log"),
    ];
    assert!(logged.iter().all(|&claimed| claimed > 0), "{logged:?}");
    assert_eq!(logged.iter().sum::<u64>(), ORGS as u64, "{logged:?}");
}

/// SPEC 11: on SQLite a second daemon on the same file refuses to start, naming the
/// file, instead of sharing the single-writer database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_one_sqlite_file_refuses_to_start() {
    let Some(test_db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let db = test_db.connect().await;
    let mut first = spawn_daemon(&test_db);
    let lock = test_db.dir.path().join("acctd.db.lock");
    wait_until(
        "the first daemon holds the lock",
        Duration::from_mins(1),
        async || std::fs::File::open(&lock).is_ok_and(|f| f.try_lock().is_err()),
    )
    .await;
    let second = output_within(&mut daemon(&test_db), CHILD_TIMEOUT);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another acctd daemon is already serving") && err.contains("acctd.db"),
        "{err}"
    );
    Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(first.wait().unwrap().success());
    drop(db);
}

/// SPEC 11: the database connections are cut while the daemon runs; it logs, retries on
/// its next wake-ups and resumes, losing and duplicating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(acctd_postgres_tests),
    ignore = "TEST_POSTGRES_URL was not set when the tests were built"
)]
async fn connections_cut_while_the_daemon_runs_are_survived() {
    let Some(test_db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = test_db.connect().await;
    seed_n(&db, true, "before", 300).await;
    let config = test_db.dir.path().join("cut.toml");
    std::fs::write(
        &config,
        "[daemon]\nbatch_size = 50\nmax_batch_size = 50\nsweep_every_seconds = 1\n[log]\nlevel = \"warn\"\n[api]\nlisten = \"127.0.0.1:0\"\n[email]\ntransport = \"none\"\n",
    )
    .unwrap();
    let mut daemon = Spawned::spawn(
        Command::new(env!("CARGO_BIN_EXE_acctd"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--db",
                &test_db.url,
                "serve",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let locked = "SELECT COUNT(*) FROM transitions WHERE cause = 'grace_expired'";
    wait_until("the first sweep", Duration::from_mins(1), async || {
        scalar(&db, locked).await == 300
    })
    .await;

    // Cut every connection to the test database, the daemon's and ours.
    let admin_url = std::env::var("TEST_POSTGRES_URL").unwrap();
    let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
    let name = test_db.url.rsplit('/').next().unwrap().to_owned();
    admin
        .execute_raw(Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"),
        ))
        .await
        .unwrap();
    let db = storage::connect(&test_db.url, 2).await.unwrap();
    seed_n(&db, true, "after", 300).await;
    wait_until("the daemon resumed", Duration::from_mins(2), async || {
        scalar(&db, locked).await == 600
    })
    .await;
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(daemon.wait().unwrap().success());
    assert_eq!(
        scalar(&db, "SELECT COUNT(DISTINCT org_id) FROM transitions").await,
        600
    );
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM transitions").await, 600);
}
