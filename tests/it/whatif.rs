//! What-if over the fleet: both rule sets side by side from the same stored state, and
//! the source database is never written (opened read-only; checked byte for byte on
//! SQLite and table by table on PostgreSQL).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use acctd::config::Settings;
use acctd::domain::Status;
use acctd::engine::whatif::{iso_week, Options};
use acctd::engine::{Fact, Payments};
use acctd::storage;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::helpers::{both, output_within, t, Backend, Harness, TestDb};

fn with_grace(grace_days: u32) -> Settings {
    let mut settings = Settings::default();
    settings.lifecycle.grace_days = grace_days;
    settings
}

/// Two subscribers whose cards fail on the 1st: under grace_days = 10 they lock on the
/// 11th, under 20 on the 21st; a trial without a card expires alike under both.
async fn a_longer_grace_moves_the_locks_and_nothing_else(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-20T00:00:00Z").await else {
        return;
    };
    h.signup("a", true, true).await;
    h.signup("b", true, true).await;
    h.signup("c", false, false).await;
    let mut options = Options::new(t("2026-05-31T00:00:00Z"));
    options.payments = Payments::Fail;
    options.chunk = 2;
    options.lanes = 1;
    let outcome = h
        .engine
        .whatif(&with_grace(20).rules(), &options)
        .await
        .unwrap();
    assert_eq!(outcome.orgs, 3);
    assert_eq!(outcome.differing, 2, "{:#?}", outcome.differences);
    let ids: Vec<&str> = outcome.differences.iter().map(|d| d.org.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let lock = |facts: &[Fact]| {
        facts.iter().find_map(|f| match f {
            Fact::Transition {
                to: Status::Locked,
                at,
                ..
            } => Some(*at),
            _ => None,
        })
    };
    let (current, changed) = outcome.differences[0].facts.clone().expect("kept");
    assert_eq!(lock(&current), Some(t("2026-05-11T00:00:00Z")));
    assert_eq!(lock(&changed), Some(t("2026-05-21T00:00:00Z")));
    assert!(outcome.differences[1].facts.is_none(), "only one lane kept");
    // Both rule sets see both orgs enter grace in the week of the 1st, and lock in
    // different weeks.
    let week = |at: &str| {
        outcome
            .weeks
            .get(&iso_week(t(at)))
            .cloned()
            .unwrap_or_default()
    };
    let first = week("2026-05-01T00:00:00Z");
    assert_eq!((first[0].entered_grace, first[1].entered_grace), (2, 2));
    let w11 = week("2026-05-11T00:00:00Z");
    let w21 = week("2026-05-21T00:00:00Z");
    assert_eq!(
        (w11[0].locked, w11[1].locked),
        (2, 0),
        "{:#?}",
        outcome.weeks
    );
    // The trial without a card locks on May 20 (trial_expired) under both.
    assert_eq!(
        (w21[0].locked, w21[1].locked),
        (1, 3),
        "{:#?}",
        outcome.weeks
    );
    let totals = outcome.totals();
    assert_eq!(totals[0].invoices, totals[1].invoices);
    assert_eq!(totals[0].billed, totals[1].billed);
    // The same rules make no difference, and an id filter narrows the fleet.
    let same = h
        .engine
        .whatif(&Settings::default().rules(), &options)
        .await
        .unwrap();
    assert_eq!(same.differing, 0);
    options.selection = acctd::engine::whatif::parse_selection("ids=b,c").unwrap();
    let narrowed = h
        .engine
        .whatif(&with_grace(20).rules(), &options)
        .await
        .unwrap();
    assert_eq!((narrowed.orgs, narrowed.differing), (2, 1));
}
both!(a_longer_grace_moves_the_locks_and_nothing_else);

/// Every row of every table, as text, and the invoice id sequence (PostgreSQL).
async fn dump(db: &DatabaseConnection) -> Vec<String> {
    let backend = db.get_database_backend();
    let tables_sql = match backend {
        DbBackend::Postgres => {
            "SELECT table_name AS name FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1",
    };
    let tables: Vec<String> = db
        .query_all_raw(Statement::from_string(backend, tables_sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect();
    let mut out = Vec::new();
    for table in tables {
        let sql = format!("SELECT CAST(t AS TEXT) AS row FROM \"{table}\" t ORDER BY 1");
        for row in db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
        {
            out.push(format!(
                "{table}: {}",
                row.try_get::<String>("", "row").unwrap()
            ));
        }
    }
    let seq = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT CAST(pg_sequence_last_value(pg_get_serial_sequence('invoices', 'id')::regclass) AS TEXT) AS v",
        ))
        .await
        .unwrap()
        .and_then(|r| r.try_get::<Option<String>>("", "v").ok().flatten());
    out.push(format!("invoice sequence: {seq:?}"));
    out
}

fn checksum(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for suffix in ["", "-wal"] {
        let file = format!("{}{suffix}", path.display());
        if let Ok(bytes) = std::fs::read(&file) {
            hash.update(file.as_bytes());
            hash.update(&bytes);
        }
    }
    hash.finalize().to_vec()
}

/// Seeds 3,000 orgs of the benchmark's mix (`benches/support`'s seeding) and runs
/// `acctd whatif` on them: the output shows weeks and differing orgs, and the database
/// is exactly as it was. The read-only connection refuses a write.
async fn whatif_never_writes_the_source_database(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let conn = db.connect().await;
    let now = acctd::clock::truncate(chrono::Utc::now());
    crate::seed::seed(&conn, 3_000, crate::seed::Scenario::Mixed, now)
        .await
        .unwrap();
    let file = db.dir.path().join("acctd.db");
    if backend == Backend::Sqlite {
        // Everything in the main file and this test's pool (and its checkpointer) gone,
        // so that nothing but `acctd whatif` could touch the files meanwhile.
        conn.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .unwrap();
        conn.clone().close().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let before = match backend {
        Backend::Sqlite => checksum(&file),
        Backend::Postgres => dump(&conn).await.join("\n").into_bytes(),
    };
    let rules = db.dir.path().join("changed.toml");
    std::fs::write(
        &rules,
        "[lifecycle]\ngrace_days = 14\ncancel_after_lock_days = 30\n",
    )
    .unwrap();
    let html = db.dir.path().join("whatif.html");
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_acctd"))
            .current_dir(db.dir.path())
            .args(["whatif", "--db", &db.url, "--rules"])
            .arg(&rules)
            .args(["--days", "90", "--payments", "fail", "--html"])
            .arg(&html),
        Duration::from_mins(2),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("what-if of 3000 orgs"), "{stdout}");
    assert!(
        stdout.contains(
            "changed rules: lifecycle.cancel_after_lock_days = 30; lifecycle.grace_days = 14"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("orgs' fate differs"), "{stdout}");
    assert!(
        stdout.contains("\n  current: ") && stdout.contains("\n  changed: "),
        "{stdout}"
    );
    assert!(std::fs::metadata(&html).unwrap().len() > 1_000);
    let after = match backend {
        Backend::Sqlite => checksum(&file),
        Backend::Postgres => dump(&conn).await.join("\n").into_bytes(),
    };
    assert!(before == after, "whatif changed the source database");
    // The connection it uses cannot write.
    let ro = storage::connect_read_only(&db.url, 1).await.unwrap();
    let write = ro
        .execute_unprepared("UPDATE orgs SET version = version + 1")
        .await;
    assert!(write.is_err(), "a read-only connection wrote");
    ro.close().await.ok();
}
both!(whatif_never_writes_the_source_database);

#[test]
fn bad_rules_and_filters_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("acctd.db").display()
    );
    let run = |args: &[&str]| {
        output_within(
            Command::new(env!("CARGO_BIN_EXE_acctd"))
                .current_dir(dir.path())
                .args(["--db", &url])
                .args(args),
            Duration::from_mins(1),
        )
    };
    assert!(run(&["migrate"]).status.success());
    let rules = dir.path().join("changed.toml");
    std::fs::write(&rules, "[lifecycle]\n\ngrace_dayz = 14\n").unwrap();
    let out = run(&["whatif", "--rules", rules.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("changed.toml") && err.contains(":3") && err.contains("grace_dayz"),
        "{err}"
    );
    std::fs::write(&rules, "[lifecycle]\ngrace_days = 14\n").unwrap();
    let out = run(&[
        "whatif",
        "--rules",
        rules.to_str().unwrap(),
        "--orgs",
        "state=active;tier=5",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--orgs") && err.contains("`tier`"), "{err}");
    let out = run(&[
        "whatif",
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(out.status.success());
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["type"], "summary");
    assert_eq!(v["orgs"], 0);
}
