//! Storage invariants on both backends: optimistic versioning, the outbox dedupe key,
//! coalesced reads, dropped connections and the migrations.

use acctd::domain::{LockReason, Status};
use acctd::engine::{Actor, Command};
use acctd::storage::audit::{self, OutboxMessage};
use acctd::storage::{self, org};
use sea_orm::ConnectionTrait;

use crate::helpers::{both, t, Backend, Harness};

/// SPEC 11: a write based on a stale read is refused, and the newer write is not lost.
async fn a_stale_concurrent_write_is_refused_not_lost(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", false, false).await;
    let db = h.engine.db();
    let mut first = h.org("acme").await;
    let mut second = first.clone();

    first.lifecycle.payment_method = true;
    org::update(db, &mut first, t("2026-03-02T00:00:00Z"))
        .await
        .unwrap();

    second.tier = 50_000;
    let err = org::update(db, &mut second, t("2026-03-02T00:00:01Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, storage::Error::Stale { version: 0, .. }),
        "{err}"
    );

    let stored = h.org("acme").await;
    assert!(stored.lifecycle.payment_method, "the first write is kept");
    assert_eq!(stored.tier, 20_000, "the stale write changed nothing");
    assert_eq!(stored.version, 1);
}
both!(a_stale_concurrent_write_is_refused_not_lost);

/// SPEC 6: a replayed cause never makes a second message.
async fn the_outbox_skips_a_replayed_dedupe_key(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    let db = h.engine.db();
    let message = OutboxMessage {
        org_id: "acme".into(),
        channel: "email",
        template: "payment_failed".into(),
        recipients: vec!["billing@acme.test".into()],
        payload: serde_json::json!({}),
        dedupe_key: "acme:payment_failed:2026-04-01T00:00:00Z".into(),
        at: t("2026-04-01T00:00:00Z"),
    };
    assert_eq!(
        audit::enqueue(db, std::slice::from_ref(&message))
            .await
            .unwrap(),
        1
    );
    assert_eq!(audit::enqueue(db, &[message]).await.unwrap(), 0);
    assert_eq!(audit::outbox_backlog(db).await.unwrap(), 1);
}
both!(the_outbox_skips_a_replayed_dedupe_key);

/// Coalesced reads (`acctd serve`'s API) answer each read as a direct read would: the
/// org, `None` for an unknown id, the corrupt-row error for that row alone; and they are
/// coalesced (fewer statements than reads).
async fn coalesced_reads_answer_each_read_as_a_direct_one(backend: Backend) {
    // Ids no org can have, which a read may still ask for (from a URL): JSON and SQL
    // must carry them as they are, without failing the batch.
    const QUOTED: &str = r#"o'brien "&" co"#;
    const UNICODE: &str = "zürich-ünïcode-組織";
    const NUL: &str = "nul\0id";
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    for i in 0..40 {
        h.signup(&format!("org-{i:02}"), i % 2 == 0, i % 3 == 0)
            .await;
    }
    let db = h.engine.db().clone();
    db.execute_unprepared("UPDATE orgs SET state = 'bogus' WHERE id = 'org-13'")
        .await
        .unwrap();
    let reads = std::sync::Arc::new(storage::reads::OrgReads::start(&db, 2));
    let ids: Vec<String> = (0..400)
        .map(|i| match i % 10 {
            9 => format!("nobody-{i}"),
            8 => [QUOTED, UNICODE, NUL][i % 3].to_owned(),
            _ => format!("org-{:02}", i % 41),
        })
        .collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (reads, id) = (reads.clone(), id.clone());
            tokio::spawn(async move { reads.get(&id).await })
        })
        .collect();
    for (id, task) in ids.iter().zip(tasks) {
        let coalesced = task.await.unwrap();
        let direct = org::get(&db, id).await;
        match (&coalesced, &direct) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{id}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{id}"),
            _ => panic!("{id}: coalesced {coalesced:?}, direct {direct:?}"),
        }
        match id.as_str() {
            "org-13" => assert!(
                matches!(coalesced, Err(storage::Error::Corrupt { .. })),
                "{coalesced:?}"
            ),
            "org-40" | QUOTED | UNICODE | NUL => assert_eq!(coalesced.unwrap(), None),
            _ if id.starts_with("nobody") => assert_eq!(coalesced.unwrap(), None),
            _ => assert_eq!(coalesced.unwrap().unwrap().id, *id),
        }
    }
    let (answered, failed) = reads.batches();
    assert_eq!(
        failed, 0,
        "no batch may fail (each read would hide it by reading alone)"
    );
    assert!(
        (1..ids.len() as u64).contains(&answered),
        "{} reads took {answered} statements",
        ids.len()
    );
}
both!(coalesced_reads_answer_each_read_as_a_direct_one);

/// A coalesced read started after a write committed sees it, whether the engine wrote it
/// or another connection did (another process), while other reads keep batches in flight.
async fn a_coalesced_read_sees_every_write_committed_before_it(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.signup("other", true, true).await;
    let engine = h.engine.clone().with_batched_reads(2);
    let other_process = h.db.connect().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = (0..4)
        .map(|_| {
            let (engine, stop) = (engine.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    engine.org("acme").await.unwrap().unwrap();
                    engine.org("other").await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for round in 0..10_u32 {
        engine
            .command("acme", &Command::Lock, &Actor::system())
            .await
            .unwrap();
        let org = engine.org("acme").await.unwrap().unwrap();
        assert_eq!(org.lifecycle.status, Status::Locked, "round {round}");
        engine
            .command(
                "acme",
                &Command::Unlock {
                    reason: LockReason::Manual,
                },
                &Actor::system(),
            )
            .await
            .unwrap();
        let org = engine.org("acme").await.unwrap().unwrap();
        assert_eq!(org.lifecycle.status, Status::Active, "round {round}");
        let tier = 30_000 + round;
        other_process
            .execute_unprepared(&format!("UPDATE orgs SET tier = {tier} WHERE id = 'acme'"))
            .await
            .unwrap();
        assert_eq!(engine.org("acme").await.unwrap().unwrap().tier, tier);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in noise {
        task.await.unwrap();
    }
}
both!(a_coalesced_read_sees_every_write_committed_before_it);

/// PostgreSQL connections the server dropped are replaced by the pool. Connections in
/// steady use are not pinged before each checkout (`storage::connect`; only those idle for
/// a second, which this test does not wait for), so a statement that meets a dead one
/// fails with a database error; it never hangs, and the pool discards the connection
/// (sqlx tests each one as it is released) and opens a new one for what comes next: at
/// most one failure per pooled connection, then reads succeed without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(acctd_postgres_tests),
    ignore = "TEST_POSTGRES_URL was not set when the tests were built"
)]
async fn postgres_connections_the_server_dropped_are_replaced() {
    use crate::helpers::TestDb;
    const POOL: u32 = 4;
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let pool = storage::connect(&db.url, POOL).await.unwrap();
    storage::migrate(&pool).await.unwrap();
    let read = |pool: sea_orm::DatabaseConnection| async move { org::get(&pool, "acme").await };
    // Open every connection of the pool: hold POOL transactions at once.
    let mut open = Vec::new();
    for _ in 0..POOL {
        open.push(sea_orm::TransactionTrait::begin(&pool).await.unwrap());
    }
    drop(open);
    assert!(read(pool.clone()).await.unwrap().is_none());

    let admin = db.connect().await;
    let killed = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert!(killed >= i64::from(POOL), "terminated {killed} connections");

    let mut failed = 0;
    let mut ok_in_a_row = 0;
    for _ in 0..(POOL * 3) {
        match read(pool.clone()).await {
            Ok(found) => {
                assert!(found.is_none());
                ok_in_a_row += 1;
            }
            Err(e) => {
                assert!(matches!(e, storage::Error::Db(_)), "{e}");
                failed += 1;
                ok_in_a_row = 0;
            }
        }
    }
    assert!(
        failed <= POOL,
        "{failed} reads failed after the connections were dropped"
    );
    assert!(
        ok_in_a_row >= POOL * 2,
        "reads did not recover: {ok_in_a_row} in a row at the end"
    );
}

/// The org indexes on disk: `idx_orgs_due` serves every deadline and clock query, the two
/// it made redundant are gone (migration 8), the console's list filters end in `id`
/// (migration 9), and every migration rolls back and applies again.
async fn migrations_roll_back_and_apply_again(backend: Backend) {
    use acctd::storage::{Migrator, MigratorTrait};
    let Some(db) = crate::helpers::TestDb::new(backend).await else {
        return;
    };
    // One connection. SQLite checks a connection's cached schema against the file only
    // when a statement reads or writes the database, not while DDL or EXPLAIN is being
    // prepared; and sea-orm-migration runs SQLite migrations statement by statement, outside
    // a transaction, on whichever pooled connection is free. A pooled connection idle since
    // another one changed the schema then refused `CREATE INDEX idx_orgs_state` ("already
    // exists") or `ADD COLUMN` ("duplicate column name") on reapplying, or planned the
    // claim below with indexes migration 8 had dropped: now and then, as the pool chose.
    let conn = storage::connect(&db.url, 1).await.expect("connect");
    storage::migrate(&conn).await.expect("migrate");
    let indexes = |conn: sea_orm::DatabaseConnection| async move {
        let sql = match backend {
            Backend::Sqlite => {
                "SELECT name AS n FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orgs' \
                 AND name LIKE 'idx_%' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT indexname::text AS n FROM pg_indexes WHERE tablename = 'orgs' \
                 AND indexname LIKE 'idx_%' ORDER BY indexname"
            }
        };
        conn.query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            sql,
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "n").unwrap())
        .collect::<Vec<_>>()
    };
    let now = [
        "idx_orgs_billing_email",
        "idx_orgs_due",
        "idx_orgs_plan_id",
        "idx_orgs_state_id",
    ];
    assert_eq!(indexes(conn.clone()).await, now);
    // The sweep's claim reads one batch of `idx_orgs_due` entries in order, for the real
    // clock and for a test clock, without sorting the due orgs (seq scans off, as on a
    // large table, since PostgreSQL scans a table this small).
    for clock in [None, Some("qa")] {
        let mut claim = org::claim_due_statement(
            conn.get_database_backend(),
            t("2027-01-01T00:00:00Z"),
            500,
            clock,
        );
        let txn = sea_orm::TransactionTrait::begin(&conn).await.unwrap();
        claim.sql = match backend {
            Backend::Sqlite => format!("EXPLAIN QUERY PLAN {}", claim.sql),
            Backend::Postgres => {
                txn.execute_unprepared("SET LOCAL enable_seqscan = off")
                    .await
                    .unwrap();
                format!("EXPLAIN {}", claim.sql)
            }
        };
        let plan = txn
            .query_all_raw(claim)
            .await
            .unwrap()
            .iter()
            .map(|row| {
                row.try_get_by_index::<String>(row.column_names().len() - 1)
                    .unwrap()
            })
            .collect::<Vec<_>>()
            .join("; ");
        txn.rollback().await.unwrap();
        assert!(
            plan.contains("idx_orgs_due")
                && !plan.contains("TEMP B-TREE")
                && !plan.contains("Sort"),
            "clock {clock:?}: {plan}"
        );
    }
    // Migration 10 (usage totals) touches no org index.
    Migrator::down(&conn, Some(1)).await.unwrap();
    assert_eq!(indexes(conn.clone()).await, now);
    Migrator::down(&conn, Some(1)).await.unwrap();
    assert_eq!(
        indexes(conn.clone()).await,
        ["idx_orgs_due", "idx_orgs_state"]
    );
    Migrator::down(&conn, Some(1)).await.unwrap();
    assert_eq!(
        indexes(conn.clone()).await,
        [
            "idx_orgs_clock_id",
            "idx_orgs_due",
            "idx_orgs_next_due_at",
            "idx_orgs_state"
        ]
    );
    Migrator::down(&conn, None).await.unwrap();
    assert!(indexes(conn.clone()).await.is_empty());
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(indexes(conn.clone()).await, now);
}
both!(migrations_roll_back_and_apply_again);

/// Migration 10 fills each org's usage total per period from the project reports already
/// stored, and a report afterwards reads and keeps that total.
async fn usage_totals_are_filled_from_the_stored_reports(backend: Backend) {
    use acctd::domain::period::Period;
    use acctd::storage::{Migrator, MigratorTrait};
    let Some(db) = crate::helpers::TestDb::new(backend).await else {
        return;
    };
    let conn = storage::connect(&db.url, 1).await.expect("connect");
    Migrator::up(&conn, Some(9)).await.unwrap();
    for (org, period, project, mau, data_points) in [
        ("acme", "2026-02", "web", 100, 1_000),
        ("acme", "2026-02", "app", 23, 7),
        ("acme", "2026-03", "web", 5, 0),
        ("beta", "2026-02", "web", 40, 2),
    ] {
        conn.execute_unprepared(&format!(
            "INSERT INTO usage_reports (org_id, period, project, mau, data_points, reported_at) \
             VALUES ('{org}', '{period}', '{project}', {mau}, {data_points}, '2026-03-01T00:00:00Z')"
        ))
        .await
        .unwrap();
    }
    Migrator::up(&conn, None).await.unwrap();
    let total = |org: &'static str, label: &'static str| {
        let conn = conn.clone();
        async move {
            let u = storage::usage::total(&conn, org, Period::parse(label).unwrap())
                .await
                .unwrap();
            (u.mau, u.data_points)
        }
    };
    assert_eq!(total("acme", "2026-02").await, (123, 1_007));
    assert_eq!(total("acme", "2026-03").await, (5, 0));
    assert_eq!(total("beta", "2026-02").await, (40, 2));
    assert_eq!(total("beta", "2026-03").await, (0, 0));
}
both!(usage_totals_are_filled_from_the_stored_reports);

/// The console's org list reads one range of one index for each filter, in id order:
/// no sort, whatever the table's size (seq and bitmap scans off on PostgreSQL, as on a
/// large table).
async fn org_list_filters_read_an_index_in_order(backend: Backend) {
    use acctd::domain::{LockReason, Status};
    use acctd::storage::org::Filter;
    let Some(db) = crate::helpers::TestDb::new(backend).await else {
        return;
    };
    let conn = storage::connect(&db.url, 1).await.expect("connect");
    storage::migrate(&conn).await.expect("migrate");
    let page = |f: Filter| Filter {
        after: Some("m".to_owned()),
        limit: 50,
        ..f
    };
    for (name, filter, index) in [
        ("all", page(Filter::default()), ""),
        (
            "state",
            page(Filter {
                status: Some(Status::Active),
                ..Filter::default()
            }),
            "idx_orgs_state_id",
        ),
        (
            "reason",
            page(Filter {
                reason: Some(LockReason::Manual),
                ..Filter::default()
            }),
            "idx_orgs_state_id",
        ),
        (
            "plan",
            page(Filter {
                plan: Some("basic".into()),
                ..Filter::default()
            }),
            "idx_orgs_plan_id",
        ),
        (
            "email",
            page(Filter {
                billing_email: Some("a@b.test".into()),
                ..Filter::default()
            }),
            "idx_orgs_billing_email",
        ),
        (
            "prefix",
            page(Filter {
                id_prefix: Some("acme".into()),
                ..Filter::default()
            }),
            "",
        ),
    ] {
        let mut statement = org::list_statement(conn.get_database_backend(), &filter);
        let txn = sea_orm::TransactionTrait::begin(&conn).await.unwrap();
        statement.sql = match backend {
            Backend::Sqlite => format!("EXPLAIN QUERY PLAN {}", statement.sql),
            Backend::Postgres => {
                txn.execute_unprepared(
                    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off",
                )
                .await
                .unwrap();
                format!("EXPLAIN {}", statement.sql)
            }
        };
        let plan = txn
            .query_all_raw(statement)
            .await
            .unwrap()
            .iter()
            .map(|row| {
                row.try_get_by_index::<String>(row.column_names().len() - 1)
                    .unwrap()
            })
            .collect::<Vec<_>>()
            .join("; ");
        txn.rollback().await.unwrap();
        assert!(
            plan.contains(index) && !plan.contains("TEMP B-TREE") && !plan.contains("Sort"),
            "{name}: {plan}"
        );
    }
}
both!(org_list_filters_read_an_index_in_order);

/// `update_many` given the orgs as read writes exactly what changed: every column one org
/// changed, one changed column of another in the same statement, and an unchanged org
/// (whose version still moves on); a stale org fails the whole write.
async fn bulk_updates_write_every_changed_column(backend: Backend) {
    use acctd::domain::period::Period;
    use acctd::domain::LockReasons;
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    for id in ["a", "b", "c"] {
        h.signup(id, false, false).await;
    }
    let db = h.engine.db();
    let mut orgs = vec![h.org("a").await, h.org("b").await, h.org("c").await];
    let read: Vec<org::Written> = orgs.iter().map(org::Written::of).collect();
    let at = |s: &str| Some(t(s));
    {
        let a = &mut orgs[0];
        a.tier = 50_000;
        a.addons = vec!["sso".into()];
        a.canceled_at = at("2026-03-09T00:00:00Z");
        a.usage = Some((Period::containing(t("2026-03-05T00:00:00Z")), 12_345));
        a.overage_lock_mau = Some(70_000);
        a.scheduled_tier = Some(10_000);
        a.scheduled_removals = vec!["sso".into()];
        let l = &mut a.lifecycle;
        l.status = Status::Locked;
        l.reasons = LockReasons::default().with(LockReason::PaymentOverdue);
        l.payment_method = true;
        l.subscriber = true;
        l.trial_ends_at = None;
        l.grace_ends_at = at("2026-03-11T00:00:00Z");
        l.cancel_at = at("2026-03-25T00:00:00Z");
        l.next_cycle_at = at("2026-04-01T00:00:00Z");
        l.reminder_at = at("2026-03-22T00:00:00Z");
        l.reminded_through = at("2026-03-02T00:00:00Z");
    }
    orgs[1].tier = 5_000;
    org::update_many(db, &mut orgs, &read, t("2026-03-02T00:00:00Z"))
        .await
        .unwrap();
    for o in &orgs {
        assert_eq!(o.version, 1);
        assert_eq!(&h.org(&o.id).await, o, "stored as changed");
    }

    // The same copies again, now stale for `b`: refused as a whole.
    let mut stale = orgs.clone();
    stale[1].version = 0;
    stale[1].tier = 40_000;
    let read: Vec<org::Written> = orgs.iter().map(org::Written::of).collect();
    let err = org::update_many(db, &mut stale, &read, t("2026-03-03T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(matches!(err, storage::Error::Stale { .. }), "{err}");
    assert_eq!(h.org("b").await.tier, 5_000);
}
both!(bulk_updates_write_every_changed_column);

/// A SQLite file's WAL is copied back into the database by the pool's own checkpointer,
/// not by the committing connection (whose threshold is the backstop), and the
/// checkpointer's connection goes when the pool does: SQLite deletes the WAL when the
/// last connection to the file closes. Temporary storage is in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_off_the_committing_connection() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wal.db");
    let db = storage::connect(&format!("sqlite://{}?mode=rwc", file.display()), 4)
        .await
        .unwrap();
    storage::migrate(&db).await.unwrap();
    let pragma = async |name: &str| {
        db.query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("PRAGMA {name}"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
    };
    assert_eq!(pragma("wal_autocheckpoint").await, 10_000);
    // Statement journals, sorts and IN lists in memory, not in temporary files
    // (`PRAGMA temp_store`: 2 is MEMORY).
    assert_eq!(pragma("temp_store").await, 2);

    let wait_until = async |what: &str, check: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !check() {
            assert!(
                started.elapsed() < Duration::from_mins(1),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
    wait_until("the migrations are checkpointed", &|| size() > 0).await;
    let before = size();
    // About 6 MB: past SQLite's default threshold of 1,000 pages, short of the backstop.
    let messages: Vec<OutboxMessage> = (0..3_000)
        .map(|i| OutboxMessage {
            org_id: format!("org{i}"),
            channel: "email",
            template: "invoice".into(),
            recipients: vec!["billing@org.test".into()],
            payload: serde_json::json!({ "pad": "x".repeat(2_000) }),
            dedupe_key: format!("k{i}"),
            at: t("2026-04-01T00:00:00Z"),
        })
        .collect();
    assert_eq!(audit::enqueue(&db, &messages).await.unwrap(), 3_000);
    wait_until("the WAL is copied into the database", &|| {
        size() >= before + 5_000_000
    })
    .await;

    db.close().await.unwrap();
    let wal = dir.path().join("wal.db-wal");
    wait_until("every connection is closed", &|| !wal.exists()).await;
}

/// A SQLite file that cannot be opened is named in the error, with the fix (`mode=rwc`
/// creates a missing file), and nothing is created.
#[tokio::test]
async fn an_unopenable_sqlite_file_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let url = format!("sqlite://{}", path.display());
    let e = storage::connect(&url, 1).await.unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("?mode=rwc"), "{e}");
    assert!(!path.exists());
    // With `mode=rwc` but no such directory, the advice is the directory.
    let url = format!(
        "sqlite://{}/no/such/dir/a.db?mode=rwc",
        dir.path().display()
    );
    let e = storage::connect(&url, 1).await.unwrap_err().to_string();
    assert!(e.contains("directory exists"), "{e}");
}
