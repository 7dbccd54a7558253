#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::naive_bytecount
)]
//! acctd benchmarks (issue 8); see BENCHMARKS.md.
//!
//! `cargo bench --bench acctd -- [--orgs N] [--runs R] [--only sweep|simulate|ingest|memory|http|foresight|whatif|console]`
//!
//! Runs on SQLite (a file in a temp dir) and, when `TEST_POSTGRES_URL` names a maintenance
//! database, on a fresh PostgreSQL database `b_<pid>` that is dropped afterwards.
//!
//! By hand, against a database of your own (migrated first):
//! `… -- --seed URL [--orgs N] [--scenario grace-expired|mixed|active] [--now TIME]` inserts
//! orgs and runs ANALYZE; `… -- --raw-sweep URL [--now TIME]` locks every expired grace
//! period with set-based SQL, the baseline of a sweep.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acctd::clock::{self, VirtualClock};
use acctd::config::Settings;
use acctd::engine::usage::UsageReport;
use acctd::engine::{Actor, Engine, ScriptedGateway};
use acctd::storage;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use support::{self as bench, fmt_secs, median, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_acctd");

/// The in-process parts (sweep, ingestion) run on the allocator of the `acctd` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    orgs: usize,
    runs: usize,
    only: Option<String>,
    /// `--seed URL`: seeds that database with `orgs` orgs of `scenario` and exits.
    seed: Option<String>,
    scenario: Scenario,
    /// `--raw-sweep URL`: runs the set-based SQL sweep on that database and exits.
    raw_sweep: Option<String>,
    /// The instant `--seed` builds around and `--raw-sweep` sweeps at (default: now).
    now: Option<DateTime<Utc>>,
    /// Writes the simulation's scenario to this file and exits.
    scenario_out: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        orgs: 100_000,
        runs: 3,
        only: None,
        seed: None,
        scenario: Scenario::GraceExpired,
        raw_sweep: None,
        now: None,
        scenario_out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--orgs" => args.orgs = it.next().and_then(|v| v.parse().ok()).expect("--orgs N"),
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs R"),
            "--only" => args.only = it.next(),
            "--scenario-out" => args.scenario_out = it.next().map(PathBuf::from),
            "--seed" => args.seed = Some(it.next().expect("--seed URL")),
            "--scenario" => {
                args.scenario = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("--scenario {}", Scenario::NAMES));
            }
            "--raw-sweep" => args.raw_sweep = Some(it.next().expect("--raw-sweep URL")),
            "--now" => {
                let now = it.next().and_then(|v| v.parse().ok());
                args.now = Some(now.expect("--now RFC3339"));
            }
            // cargo bench passes --bench; ignore that and any filter.
            _ => {}
        }
    }
    if let Some(only) = &args.only {
        assert!(
            [
                "sweep",
                "simulate",
                "ingest",
                "memory",
                "http",
                "foresight",
                "whatif",
                "console"
            ]
            .contains(&only.as_str()),
            "--only sweep|simulate|ingest|memory|http|foresight|whatif|console"
        );
    }
    args
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A place for fresh databases of one backend.
struct Place {
    backend: Backend,
    dir: PathBuf,
    /// PostgreSQL: (maintenance URL, database name, database URL).
    postgres: Option<(String, String, String)>,
    serial: usize,
}

impl Place {
    fn name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    async fn new(backend: Backend, dir: &Path) -> Option<Self> {
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let admin = std::env::var("TEST_POSTGRES_URL").ok()?;
                let name = format!("b_{}", std::process::id());
                let conn = Database::connect(&admin).await.expect("TEST_POSTGRES_URL");
                exec(&conn, &format!("DROP DATABASE IF EXISTS \"{name}\"")).await;
                exec(&conn, &format!("CREATE DATABASE \"{name}\"")).await;
                conn.close().await.ok();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                let url = format!("{base}/{name}");
                Some((admin, name, url))
            }
        };
        Some(Self {
            backend,
            dir: dir.to_owned(),
            postgres,
            serial: 0,
        })
    }

    /// A fresh, migrated, empty database: a new SQLite file, or the PostgreSQL database
    /// with every table truncated.
    async fn fresh(&mut self) -> (DatabaseConnection, String) {
        self.serial += 1;
        let url = match &self.postgres {
            None => {
                for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with("bench") {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
                format!(
                    "sqlite://{}?mode=rwc",
                    self.dir.join(format!("bench{}.db", self.serial)).display()
                )
            }
            Some((_, _, url)) => url.clone(),
        };
        let db = storage::connect(&url, 4).await.expect("connect");
        storage::migrate(&db).await.expect("migrate");
        if self.backend == Backend::Postgres {
            let rows = db
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' \
                     AND tablename <> 'seaql_migrations'",
                ))
                .await
                .expect("tables");
            let tables: Vec<String> = rows
                .iter()
                .map(|r| format!("\"{}\"", r.try_get_by_index::<String>(0).unwrap()))
                .collect();
            exec(
                &db,
                &format!("TRUNCATE {} RESTART IDENTITY", tables.join(", ")),
            )
            .await;
        }
        (db, url)
    }

    async fn analyze(&self, db: &DatabaseConnection) {
        bench::analyze(db).await.expect("ANALYZE");
    }

    /// SQLite: how long copying what is left of the WAL into the database file takes
    /// (`wal_checkpoint(TRUNCATE)`, waiting for a checkpoint under way). The engine's
    /// batches leave most of theirs to the background checkpointer, the raw SQL's one
    /// large commit does its own: adding this to each compares the two with every page
    /// in the database file. Zero on PostgreSQL (the server checkpoints on its own).
    async fn checkpoint(&self, db: &DatabaseConnection) -> Duration {
        if self.backend != Backend::Sqlite {
            return Duration::ZERO;
        }
        let started = Instant::now();
        exec(db, "PRAGMA wal_checkpoint(TRUNCATE)").await;
        started.elapsed()
    }

    async fn drop_all(self) {
        if let Some((admin, name, _)) = self.postgres {
            let conn = Database::connect(&admin).await.expect("TEST_POSTGRES_URL");
            exec(
                &conn,
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            )
            .await;
            conn.close().await.ok();
        }
    }
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .expect(sql)
    .expect("a row")
    .try_get_by_index::<i64>(0)
    .expect("an integer")
}

/// The engine with default settings; `ACCTD__DAEMON__BATCH_SIZE` and
/// `ACCTD__DAEMON__MAX_BATCH_SIZE` override the batch sizes, as they do for the daemon.
fn engine(db: DatabaseConnection, now: DateTime<Utc>) -> Engine {
    let mut settings = Settings::default();
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(size) = var("ACCTD__DAEMON__BATCH_SIZE") {
        settings.daemon.batch_size = size;
    }
    if let Some(size) = var("ACCTD__DAEMON__MAX_BATCH_SIZE") {
        settings.daemon.max_batch_size = size;
    }
    Engine::new(
        db,
        settings.rules(),
        Arc::new(ScriptedGateway::default()),
        Arc::new(VirtualClock::new(now)),
    )
}

fn now() -> DateTime<Utc> {
    clock::truncate(Utc::now())
}

/// Counts after a sweep of `n` grace-expired orgs: every org locked once, one audit row
/// and one notification each.
async fn check_swept(db: &DatabaseConnection, n: usize) {
    let n = i64::try_from(n).unwrap();
    let locked = scalar(
        db,
        "SELECT COUNT(*) FROM orgs WHERE state = 'locked' AND lock_reasons = 'payment_overdue' \
         AND grace_ends_at IS NULL AND cancel_at IS NOT NULL AND version = 1",
    )
    .await;
    let audit = scalar(
        db,
        "SELECT COUNT(*) FROM transitions WHERE cause = 'grace_expired'",
    )
    .await;
    let outbox = scalar(
        db,
        "SELECT COUNT(*) FROM outbox WHERE template = 'account_locked'",
    )
    .await;
    let other = scalar(
        db,
        "SELECT COUNT(*) FROM outbox WHERE template <> 'account_locked'",
    )
    .await
        + scalar(db, "SELECT COUNT(*) FROM invoices").await;
    assert_eq!(
        (locked, audit, outbox, other),
        (n, n, n, 0),
        "sweep result (locked, audit, outbox, other rows)"
    );
}

const COMPARE: &[&str] = &[
    "SELECT id, state, lock_reasons, grace_ends_at, cancel_at, next_cycle_at, next_due_at, \
     reminder_at, reminded_through, overage_lock_mau, version FROM orgs ORDER BY id",
    "SELECT org_id, from_state, to_state, cause, lock_reasons, actor, reason, at FROM transitions \
     ORDER BY org_id",
    "SELECT org_id, channel, template, recipients, payload, dedupe_key, at, status, attempts, \
     next_attempt_at FROM outbox ORDER BY org_id",
];

async fn dump(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .expect(sql);
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for i in 0.. {
                let value = if let Ok(v) = r.try_get_by_index::<Option<String>>(i) {
                    format!("{v:?}")
                } else if let Ok(v) = r.try_get_by_index::<Option<i64>>(i) {
                    format!("{v:?}")
                } else if let Ok(v) = r.try_get_by_index::<Option<DateTime<Utc>>>(i) {
                    format!("{v:?}")
                } else {
                    break;
                };
                let _ = write!(line, "{value}|");
            }
            line
        })
        .collect()
}

/// The raw SQL must do exactly what the engine does: same rows on a small seed (payloads
/// compared as JSON values).
async fn check_equivalent(place: &mut Place) {
    let at = now();
    let n = 300;
    let (db, _) = place.fresh().await;
    bench::seed(&db, n, Scenario::GraceExpired, at)
        .await
        .unwrap();
    engine(db.clone(), at).tick(at).await.unwrap();
    let mut by_engine = Vec::new();
    for sql in COMPARE {
        by_engine.push(dump(&db, sql).await);
    }
    db.close().await.ok();
    let (db, _) = place.fresh().await;
    bench::seed(&db, n, Scenario::GraceExpired, at)
        .await
        .unwrap();
    bench::raw_sweep(&db, at).await.unwrap();
    for (sql, engine_rows) in COMPARE.iter().zip(by_engine) {
        let raw_rows = dump(&db, sql).await;
        assert_eq!(engine_rows.len(), raw_rows.len(), "{sql}");
        for (e, r) in engine_rows.iter().zip(&raw_rows) {
            if sql.contains("payload") {
                // Compare JSON values, not their spelling.
                let fields = |s: &str| -> Vec<String> {
                    s.split('|')
                        .map(|f| {
                            f.strip_prefix("Some(\"")
                                .and_then(|f| f.strip_suffix("\")"))
                                .map(|inner| inner.replace("\\\"", "\""))
                                .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
                                .map_or_else(|| f.to_owned(), |v| v.to_string())
                        })
                        .collect()
                };
                assert_eq!(fields(e), fields(r), "engine vs raw: {sql}");
            } else {
                assert_eq!(e, r, "engine vs raw: {sql}");
            }
        }
    }
    db.close().await.ok();
    println!(
        "  raw_sweep checked against Engine::tick on {n} orgs: identical orgs, audit and outbox rows"
    );
}

async fn bench_sweep(place: &mut Place, orgs: usize, runs: usize) {
    println!(
        "\n## Sweep, {}: {orgs} due orgs (grace-expired), {runs} runs (Engine::catch_up)",
        place.name()
    );
    check_equivalent(place).await;
    let mut seeds = Vec::new();
    let mut ticks = Vec::new();
    let mut raws = Vec::new();
    let (mut durable_ticks, mut durable_raws) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let at = now();
        let (db, _) = place.fresh().await;
        let (r, took) = bench::time_async(bench::seed(&db, orgs, Scenario::GraceExpired, at)).await;
        r.expect("seed");
        seeds.push(took);
        place.analyze(&db).await;
        let engine = engine(db.clone(), at);
        // A backlog this large is swept on SQLite by the operator's catch-up pass
        // (`acctd tick --catch-up`); the daemon's sweep is the same on PostgreSQL.
        let (report, took) = bench::time_async(async {
            let mut report = acctd::engine::Report::default();
            engine
                .catch_up(at, |_, batch| {
                    report.extend(batch);
                    std::ops::ControlFlow::Continue(())
                })
                .await
                .map(|_| report)
        })
        .await;
        let report = report.expect("tick");
        let checkpoint = place.checkpoint(&db).await;
        assert_eq!(report.transitions(), orgs);
        check_swept(&db, orgs).await;
        ticks.push(took);
        durable_ticks.push(took + checkpoint);
        db.close().await.ok();

        let (db, _) = place.fresh().await;
        bench::seed(&db, orgs, Scenario::GraceExpired, at)
            .await
            .expect("seed");
        place.analyze(&db).await;
        let (r, took) = bench::time_async(bench::raw_sweep(&db, at)).await;
        let r = r.expect("raw sweep");
        let checkpoint = place.checkpoint(&db).await;
        assert_eq!(r.orgs, orgs as u64);
        check_swept(&db, orgs).await;
        raws.push(took);
        durable_raws.push(took + checkpoint);
        db.close().await.ok();
        println!(
            "  run {}: seed {}, Engine::tick {} ({} with the checkpoint), raw_sweep {} ({})",
            run + 1,
            fmt_secs(seeds[run]),
            fmt_secs(ticks[run]),
            fmt_secs(durable_ticks[run]),
            fmt_secs(raws[run]),
            fmt_secs(durable_raws[run]),
        );
    }
    let (t, r) = (median(&ticks), median(&raws));
    println!(
        "  median: seed {} ({:.0} orgs/s), Engine::tick {} ({:.0} orgs/s), raw_sweep {} ({:.0} orgs/s), ratio tick/raw {:.2}x",
        fmt_secs(median(&seeds)),
        orgs as f64 / median(&seeds).as_secs_f64(),
        fmt_secs(t),
        orgs as f64 / t.as_secs_f64(),
        fmt_secs(r),
        orgs as f64 / r.as_secs_f64(),
        t.as_secs_f64() / r.as_secs_f64()
    );
    if place.backend == Backend::Sqlite {
        let (t, r) = (median(&durable_ticks), median(&durable_raws));
        println!(
            "  median with the final checkpoint: Engine::tick {}, raw_sweep {}, ratio {:.2}x",
            fmt_secs(t),
            fmt_secs(r),
            t.as_secs_f64() / r.as_secs_f64()
        );
    }
}

/// Sends `reports` through `Engine::report_usage` in batches of 10,000, checking that
/// every one is accepted; returns the time taken and the facts they caused.
async fn ingest(engine: &Engine, reports: &[UsageReport]) -> (Duration, usize) {
    let actor = Actor::new("bench", "usage");
    let started = Instant::now();
    let (mut accepted, mut facts) = (0, 0);
    for batch in reports.chunks(10_000) {
        let ingested = engine.report_usage(batch, &actor).await.expect("ingest");
        accepted += ingested.accepted();
        facts += ingested.report.facts.len();
    }
    let took = started.elapsed();
    assert_eq!(accepted, reports.len(), "every report accepted");
    (took, facts)
}

/// The `p` quantile (0..1) of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Usage ingestion: `orgs` active orgs, 10 projects each, one report per project, in
/// batches of 10,000 reports through `Engine::report_usage` (alerts evaluated; totals land
/// between 40 % and 130 % of the tier, so many orgs cross the 80 % and 100 % thresholds).
async fn bench_ingest(place: &mut Place, orgs: usize, runs: usize) {
    const PROJECTS: usize = 10;
    let reports_n = orgs * PROJECTS;
    println!(
        "\n## Usage ingestion, {}: {reports_n} reports ({orgs} orgs x {PROJECTS} projects), batches of 10,000, {runs} runs",
        place.name()
    );
    let mut samples = Vec::new();
    let mut alerts = 0;
    for run in 0..runs {
        let at = now();
        let (db, _) = place.fresh().await;
        bench::seed(&db, orgs, Scenario::Active, at)
            .await
            .expect("seed");
        place.analyze(&db).await;
        let period = acctd::domain::period::Period::containing(at).label();
        let tiers = [
            5_000u64, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 75_000, 100_000,
        ];
        let reports: Vec<UsageReport> = (0..orgs)
            .flat_map(|i| {
                let tier = tiers[i % tiers.len()];
                let percent = 40 + (i * 7919 % 91) as u64; // 40 %..130 % in total
                let period = period.clone();
                (0..PROJECTS).map(move |p| UsageReport {
                    org: format!("org{i:07}"),
                    project: format!("p{p}"),
                    period: period.clone(),
                    mau: tier * percent / 100 / PROJECTS as u64,
                    data_points: 1_000,
                    correction: false,
                })
            })
            .collect();
        let (took, facts) = ingest(&engine(db.clone(), at), &reports).await;
        alerts = facts;
        samples.push(took);
        db.close().await.ok();
        println!(
            "  run {}: {} ({:.0} reports/s)",
            run + 1,
            fmt_secs(took),
            reports_n as f64 / took.as_secs_f64()
        );
    }
    let m = median(&samples);
    println!(
        "  median: {} = {:.0} reports/s ({alerts} alert facts per run)",
        fmt_secs(m),
        reports_n as f64 / m.as_secs_f64()
    );
}

/// Usage ingestion of many distinct projects per org: `projects` reports over 10 active
/// orgs (each report a new project), and a quarter of that on a fresh database, so the
/// two rates show whether ingestion is linear in the projects an org has.
async fn bench_projects(place: &mut Place, projects: usize, runs: usize) {
    const ORGS: usize = 10;
    println!(
        "\n## Usage ingestion of distinct projects, {}: {ORGS} orgs, {} and {projects} projects, batches of 10,000, {runs} runs",
        place.name(),
        projects / 4
    );
    let mut rates = Vec::new();
    for n in [projects / 4, projects] {
        let mut samples = Vec::new();
        for _ in 0..runs {
            let at = now();
            let (db, _) = place.fresh().await;
            bench::seed(&db, ORGS, Scenario::Active, at)
                .await
                .expect("seed");
            place.analyze(&db).await;
            let period = acctd::domain::period::Period::containing(at).label();
            let reports: Vec<UsageReport> = (0..n)
                .map(|i| UsageReport {
                    org: format!("org{:07}", i % ORGS),
                    project: format!("p{i:07}"),
                    period: period.clone(),
                    mau: 1,
                    data_points: 10,
                    correction: false,
                })
                .collect();
            let (took, _) = ingest(&engine(db.clone(), at), &reports).await;
            samples.push(took);
            db.close().await.ok();
        }
        let m = median(&samples);
        let rate = n as f64 / m.as_secs_f64();
        println!(
            "  {n} projects: {} = {rate:.0} reports/s (runs: {})",
            fmt_secs(m),
            samples
                .iter()
                .map(|s| fmt_secs(*s))
                .collect::<Vec<_>>()
                .join(", ")
        );
        rates.push(rate);
    }
    println!(
        "  rate at {projects} against {}: {:.2}x (1.00x is linear)",
        projects / 4,
        rates[1] / rates[0]
    );
}

/// Peak resident memory of `acctd --db URL tick` over `orgs` due orgs.
async fn bench_memory(place: &mut Place, orgs: usize) {
    println!(
        "\n## Memory, {}: `acctd tick` over {orgs} due orgs (grace-expired)",
        place.name()
    );
    let at = now();
    let (db, url) = place.fresh().await;
    bench::seed(&db, orgs, Scenario::GraceExpired, at)
        .await
        .expect("seed");
    place.analyze(&db).await;
    let (peak, took, out) = peak_rss(
        &[
            "--db",
            &url,
            "tick",
            "--until",
            &at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ],
        &place.dir,
    );
    check_swept(&db, orgs).await;
    db.close().await.ok();
    println!(
        "  acctd tick: peak RSS (VmHWM) {:.1} MB, wall {} ; {}",
        peak as f64 / 1024.0,
        fmt_secs(took),
        out.trim()
    );

    // The daemon over the same situation: `acctd serve` catches up on start, sweeping
    // every org, while its API and outbox dispatcher run.
    let (db, url) = place.fresh().await;
    bench::seed(&db, orgs, Scenario::GraceExpired, at)
        .await
        .expect("seed");
    place.analyze(&db).await;
    let started = Instant::now();
    let (mut child, _) = serve(&place.dir, &url);
    let mut peak = 0;
    loop {
        peak = peak.max(vm_hwm(child.id()));
        let left = scalar(&db, "SELECT COUNT(*) FROM orgs WHERE state <> 'locked'").await;
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_hours(1),
            "acctd serve did not sweep {orgs} orgs within an hour ({left} left)"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let took = started.elapsed();
    // A few more seconds of the running daemon (dispatcher draining the outbox).
    tokio::time::sleep(Duration::from_secs(5)).await;
    peak = peak.max(vm_hwm(child.id()));
    child.kill().ok();
    child.wait().ok();
    check_swept(&db, orgs).await;
    db.close().await.ok();
    println!(
        "  acctd serve: peak RSS (VmHWM) {:.1} MB; swept all {orgs} orgs {} after start",
        peak as f64 / 1024.0,
        fmt_secs(took)
    );
}

/// `acctd whatif` (release binary) over `orgs` mixed orgs for 90 days, both rule sets
/// (the changed ones: longer grace, later cancel, a higher overage multiplier), payments
/// failing so that every active org goes through grace: wall time and peak RSS per run.
async fn bench_whatif(place: &mut Place, orgs: usize, runs: usize) {
    println!(
        "\n## What-if, {}: `acctd whatif --days 90 --payments fail` over {orgs} mixed orgs, {runs} runs",
        place.name()
    );
    let at = now();
    let (db, url) = place.fresh().await;
    bench::seed(&db, orgs, Scenario::Mixed, at)
        .await
        .expect("seed");
    place.analyze(&db).await;
    db.close().await.ok();
    let rules = place.dir.join("changed.toml");
    std::fs::write(
        &rules,
        "[lifecycle]\ngrace_days = 14\ncancel_after_lock_days = 30\n\n[billing]\noverage_multiplier = \"1.5\"\n",
    )
    .unwrap();
    let rules = rules.display().to_string();
    let mut samples = Vec::new();
    let mut peaks = Vec::new();
    for _ in 0..runs {
        let (peak, took, out) = peak_rss(
            &[
                "--db",
                &url,
                "whatif",
                "console",
                "--rules",
                &rules,
                "--days",
                "90",
                "--payments",
                "fail",
                "--list",
                "20",
            ],
            &place.dir,
        );
        let summary = out
            .lines()
            .find(|l| l.contains("fate differs"))
            .unwrap_or("")
            .to_owned();
        println!(
            "  {} , peak RSS (VmHWM) {:.1} MB ; {summary}",
            fmt_secs(took),
            peak as f64 / 1024.0
        );
        samples.push(took);
        peaks.push(peak);
    }
    println!(
        "  median: {}, peak RSS max {:.1} MB",
        fmt_secs(median(&samples)),
        peaks.iter().copied().max().unwrap_or(0) as f64 / 1024.0
    );
}

/// Connections of the HTTP load and how long each run lasts.
const HTTP_CONNECTIONS: usize = 32;
const HTTP_SECONDS: u64 = 10;

/// Entitlement reads over HTTP: `acctd serve` (release binary, a child process) over
/// `orgs` mixed orgs; the load comes from this process on loopback, `HTTP_CONNECTIONS`
/// keep-alive connections each sending `GET /v1/orgs/{id}/entitlements` for random ids
/// back to back for `HTTP_SECONDS`. Reports requests/s, p50 and p99 latency, and the
/// daemon's peak resident memory (VmHWM), which includes its start-up catch-up sweep.
async fn bench_http(place: &mut Place, orgs: usize, runs: usize) {
    println!(
        "\n## Entitlement reads over HTTP, {}: `acctd serve` over {orgs} mixed orgs, {HTTP_CONNECTIONS} connections x {HTTP_SECONDS} s, {runs} runs",
        place.name()
    );
    let (mut child, listen, started) = serve_seeded(place, orgs).await;
    let pid = child.id();
    println!("  ready after {}", fmt_secs(started.elapsed()));
    let mut rates = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 0..runs {
        let cpu_before = cpu_seconds(pid);
        let (count, mut latencies, took) = http_load(&listen, orgs).await;
        let server_cores = (cpu_seconds(pid) - cpu_before) / took.as_secs_f64();
        latencies.sort_unstable();
        let pct = |p: f64| percentile(&latencies, p);
        let rate = count as f64 / took.as_secs_f64();
        println!(
            "  run {}: {count} requests in {} = {rate:.0} req/s, p50 {:.2} ms, p99 {:.2} ms (acctd serve used {server_cores:.2} of the 2 cores)",
            run + 1,
            fmt_secs(took),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
        );
        rates.push(rate);
        p50s.push(pct(0.50));
        p99s.push(pct(0.99));
    }
    let peak = vm_hwm(pid);
    child.kill().ok();
    child.wait().ok();
    rates.sort_by(f64::total_cmp);
    println!(
        "  median: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; acctd serve peak RSS (VmHWM) {:.1} MB",
        rates[rates.len() / 2],
        median(&p50s).as_secs_f64() * 1e3,
        median(&p99s).as_secs_f64() * 1e3,
        peak as f64 / 1024.0
    );
}

/// Forecasts and previews over HTTP: `GET /v1/orgs/{id}/forecast?days=60` of random orgs
/// (one connection, back to back), and each manual lock and unlock made twice, first
/// with `?dry_run=true`, the latencies of previews against those of the calls.
async fn bench_foresight(place: &mut Place, orgs: usize, runs: usize) {
    println!(
        "\n## Forecasts and previews over HTTP, {}: `acctd serve` over {orgs} mixed orgs, {runs} runs",
        place.name()
    );
    let (mut child, listen, _) = serve_seeded(place, orgs).await;
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut ratios = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize % orgs
    };
    for run in 0..runs {
        let mut forecasts = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(HTTP_SECONDS);
        while Instant::now() < deadline {
            let path = format!("/v1/orgs/org{:07}/forecast?days=60", next());
            let asked = Instant::now();
            let (status, body) = get(&listen, &path).await.expect("forecast");
            forecasts.push(asked.elapsed());
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        }
        forecasts.sort_unstable();
        let pct = percentile;
        let (mut previews, mut calls) = (Vec::new(), Vec::new());
        let mut tried = 0;
        while previews.len() < 400 && tried < 4_000 {
            tried += 1;
            let org = format!("org{:07}", next());
            for op in ["lock", "unlock"] {
                let path = format!("/v1/orgs/{org}/admin/{op}");
                let asked = Instant::now();
                let preview = post(&listen, &format!("{path}?dry_run=true")).await;
                let preview_took = asked.elapsed();
                let asked = Instant::now();
                let call = post(&listen, &path).await;
                let call_took = asked.elapsed();
                assert_eq!(preview, call, "{path}: the preview and the call differ");
                if call == 200 {
                    previews.push(preview_took);
                    calls.push(call_took);
                }
            }
        }
        let ratio = median(&previews).as_secs_f64() / median(&calls).as_secs_f64();
        println!(
            "  run {}: forecast p50 {:.2} ms, p99 {:.2} ms ({} requests); preview {:.2} ms vs call {:.2} ms (medians of {} each) = {ratio:.2}x",
            run + 1,
            pct(&forecasts, 0.50).as_secs_f64() * 1e3,
            pct(&forecasts, 0.99).as_secs_f64() * 1e3,
            forecasts.len(),
            median(&previews).as_secs_f64() * 1e3,
            median(&calls).as_secs_f64() * 1e3,
            previews.len(),
        );
        p50s.push(pct(&forecasts, 0.50));
        p99s.push(pct(&forecasts, 0.99));
        ratios.push(ratio);
    }
    child.kill().ok();
    child.wait().ok();
    ratios.sort_by(f64::total_cmp);
    println!(
        "  median: forecast p50 {:.2} ms, p99 {:.2} ms; preview / call {:.2}x",
        median(&p50s).as_secs_f64() * 1e3,
        median(&p99s).as_secs_f64() * 1e3,
        ratios[ratios.len() / 2],
    );
}

/// One HTTP/1.1 POST of a manual operation's body with the admin token; the status.
async fn post(addr: &str, path: &str) -> u16 {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let body = r#"{"reason": "bench"}"#;
    let request = hyper::Request::post(path)
        .header("host", addr)
        .header("authorization", "Bearer admin-token-0123456789")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .unwrap();
    let response = send.send_request(request).await.expect("request");
    let status = response.status().as_u16();
    response.into_body().collect().await.expect("body");
    status
}

/// `acctd serve` over a fresh database of `orgs` mixed orgs, once it answers `/readyz`
/// (start-up, migrations, catch-up sweep); the child, its API address and its start.
async fn serve_seeded(place: &mut Place, orgs: usize) -> (std::process::Child, String, Instant) {
    let at = now();
    let (db, url) = place.fresh().await;
    bench::seed(&db, orgs, Scenario::Mixed, at)
        .await
        .expect("seed");
    place.analyze(&db).await;
    db.close().await.ok();
    let (child, listen) = serve(&place.dir, &url);
    let started = Instant::now();
    while get(&listen, "/readyz")
        .await
        .is_none_or(|(status, _)| status != 200)
    {
        assert!(
            started.elapsed() < Duration::from_mins(10),
            "acctd serve did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, listen, started)
}

/// `acctd serve` (release binary) on `url`, its API on a free loopback port (returned),
/// log level warn, emails discarded, a viewer token for the load.
fn serve(dir: &Path, url: &str) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["--db", url, "serve", "--listen", &listen])
        .current_dir(dir)
        .env("ACCTD__LOG__LEVEL", "warn")
        .env("ACCTD__EMAIL__TRANSPORT", "none")
        .env(
            "ACCTD_API_TOKENS",
            "bench:viewer:bench-token-0123456789,ops:admin:admin-token-0123456789",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn acctd serve");
    (child, listen)
}

/// One HTTP/1.1 GET with the bench token; `(status, body)`, or `None` if nobody answers.
async fn get(addr: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    let response = send.send_request(request(addr, path)).await.ok()?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .ok()?
        .to_bytes()
        .to_vec();
    Some((status, body))
}

fn request(addr: &str, path: &str) -> hyper::Request<http_body_util::Empty<hyper::body::Bytes>> {
    hyper::Request::get(path)
        .header("host", addr)
        .header("authorization", "Bearer bench-token-0123456789")
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// `HTTP_CONNECTIONS` keep-alive connections sending requests back to back for
/// `HTTP_SECONDS`; returns (requests answered 200, their latencies, elapsed).
async fn http_load(addr: &str, orgs: usize) -> (usize, Vec<Duration>, Duration) {
    use http_body_util::BodyExt;
    let deadline = Instant::now() + Duration::from_secs(HTTP_SECONDS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..HTTP_CONNECTIONS {
        let addr = addr.to_owned();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).ok();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            let mut rng = (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            while Instant::now() < deadline {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let path = format!("/v1/orgs/org{:07}/entitlements", rng as usize % orgs);
                let asked = Instant::now();
                let response = send
                    .send_request(request(&addr, &path))
                    .await
                    .expect("request");
                let status = response.status();
                let body = response.into_body().collect().await.expect("body");
                assert_eq!(status, 200, "{path}: {:?}", body.to_bytes());
                latencies.push(asked.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    (all.len(), all, started.elapsed())
}

/// Clients of the console load (issue 27's figure).
const CONSOLE_CLIENTS: usize = 50;

/// One request to the console on its own connection: (status, headers, body).
async fn console_call(
    addr: &str,
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
) -> (u16, hyper::HeaderMap, String) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            form.to_owned(),
        )))
        .unwrap();
    let response = send.send_request(request).await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The value a `Set-Cookie` of `headers` gives `name`.
fn set_cookie(headers: &hyper::HeaderMap, name: &str) -> String {
    headers
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            let (pair, _) = v.to_str().ok()?.split_once(';')?;
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

/// Signs the bench's viewer in to the console; returns the session's `Cookie` header.
async fn console_sign_in(addr: &str) -> String {
    let (status, headers, _) = console_call(addr, "GET", "/console/sign-in", "", "").await;
    assert_eq!(status, 200, "the sign-in form");
    let pre = set_cookie(&headers, "acctd_sign_in");
    let (status, headers, body) = console_call(
        addr,
        "POST",
        "/console/sign-in",
        &format!("acctd_sign_in={pre}"),
        &format!("csrf={pre}&token=bench-token-0123456789"),
    )
    .await;
    assert_eq!(status, 303, "sign in: {body}");
    format!("acctd_session={}", set_cookie(&headers, "acctd_session"))
}

/// The `i`-th request of a console client: org list pages (unfiltered, by state, by
/// plan, a search by id prefix, a page after an id) and org pages, in turn.
fn console_path(i: u64, orgs: usize) -> (bool, String) {
    let org = i as usize * 7_919 % orgs;
    match i % 6 {
        0 => (true, "/console/orgs".to_owned()),
        1 => (true, "/console/orgs?state=locked".to_owned()),
        2 => (
            true,
            format!("/console/orgs?plan=essentials&after=org{org:07}"),
        ),
        3 => (true, format!("/console/orgs?q=org{:05}", org / 100)),
        4 => (true, format!("/console/orgs?after=org{org:07}")),
        _ => (false, format!("/console/orgs/org{org:07}")),
    }
}

/// `CONSOLE_CLIENTS` keep-alive clients of one session asking back to back for
/// `HTTP_SECONDS`; returns, for org lists and org pages, (server time from the
/// `Server-Timing` header, time seen by the client) of each request, and the elapsed time.
async fn console_load(
    addr: &str,
    cookie: &str,
    orgs: usize,
) -> (
    Vec<(Duration, Duration)>,
    Vec<(Duration, Duration)>,
    Duration,
) {
    use http_body_util::BodyExt;
    let deadline = Instant::now() + Duration::from_secs(HTTP_SECONDS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONSOLE_CLIENTS {
        let (addr, cookie) = (addr.to_owned(), cookie.to_owned());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).ok();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let (mut lists, mut pages) = (Vec::new(), Vec::new());
            let mut i = c as u64 * 1_000_003;
            while Instant::now() < deadline {
                i += 1;
                let (list, path) = console_path(i, orgs);
                let request = hyper::Request::get(&path)
                    .header("host", &addr)
                    .header("cookie", &cookie)
                    .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                    .unwrap();
                let asked = Instant::now();
                let response = send.send_request(request).await.expect("request");
                let status = response.status();
                let server = response
                    .headers()
                    .get("server-timing")
                    .and_then(|v| {
                        v.to_str()
                            .ok()?
                            .strip_prefix("app;dur=")?
                            .parse::<f64>()
                            .ok()
                    })
                    .expect("a Server-Timing header");
                let body = response.into_body().collect().await.expect("body");
                assert_eq!(status, 200, "{path}: {:?}", body.to_bytes());
                let sample = (Duration::from_secs_f64(server / 1e3), asked.elapsed());
                if list {
                    lists.push(sample);
                } else {
                    pages.push(sample);
                }
            }
            (lists, pages)
        }));
    }
    let (mut lists, mut pages) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, p) = task.await.unwrap();
        lists.extend(l);
        pages.extend(p);
    }
    (lists, pages, started.elapsed())
}

/// The ops console under load (issue 27): `acctd serve` over `orgs` mixed orgs, one
/// signed-in viewer session, [`CONSOLE_CLIENTS`] clients for `HTTP_SECONDS` per run.
/// The target is on server time (the console's `Server-Timing`); the client's time,
/// which adds queueing behind the other clients on the machine's 2 cores, is shown beside.
async fn bench_console(place: &mut Place, orgs: usize, runs: usize) {
    println!(
        "\n## Console, {}: {orgs} orgs, {CONSOLE_CLIENTS} clients for {HTTP_SECONDS} s, org list and org pages, {runs} runs",
        place.name()
    );
    let (mut child, listen, _) = serve_seeded(place, orgs).await;
    // The seeded mix has deadlines already due: the daemon sweeps them first (its emails
    // stay in the outbox: no transport). The figures are the console's after that catch-up.
    let started = Instant::now();
    loop {
        let (status, body) = get(&listen, "/v1/stats").await.expect("stats");
        assert_eq!(status, 200);
        let counted: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if counted["due_backlog"] == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_mins(10),
            "no steady state: {counted}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  catch-up of the seeded due deadlines: {}",
        fmt_secs(started.elapsed())
    );
    let cookie = console_sign_in(&listen).await;
    // The first org list after a start counts the orgs by state; later ones show those
    // counts and refresh them in the background.
    let started = Instant::now();
    let (status, _, _) = console_call(&listen, "GET", "/console/orgs", &cookie, "").await;
    assert_eq!(status, 200);
    println!(
        "  first org list after the start (counts {orgs} orgs): {}",
        fmt_secs(started.elapsed())
    );
    let quantiles = |samples: &mut Vec<Duration>| {
        samples.sort_unstable();
        let q = |p: f64| percentile(samples, p);
        format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            q(0.50).as_secs_f64() * 1e3,
            q(0.99).as_secs_f64() * 1e3
        )
    };
    for run in 0..runs {
        let (lists, pages, elapsed) = console_load(&listen, &cookie, orgs).await;
        let total = lists.len() + pages.len();
        println!(
            "  run {}: {total} pages, {:.0}/s",
            run + 1,
            total as f64 / elapsed.as_secs_f64()
        );
        for (name, samples) in [("org list", lists), ("org page", pages)] {
            let (mut server, mut client): (Vec<_>, Vec<_>) = samples.into_iter().unzip();
            println!(
                "    {name}: server {}; client {}",
                quantiles(&mut server),
                quantiles(&mut client)
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A live process's CPU time so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

/// A live process's peak resident set size in kB (VmHWM).
fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the release binary (log level warn, no config file) and samples VmHWM from
/// /proc/<pid>/status until it exits; returns (peak kB, wall time, stdout).
fn peak_rss(args: &[&str], cwd: &Path) -> (u64, Duration, String) {
    let out_path = cwd.join("stdout.txt");
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("ACCTD__LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn acctd");
    let mut peak = 0u64;
    loop {
        peak = peak.max(vm_hwm(child.id()));
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "acctd {args:?}: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    (
        peak,
        took,
        std::fs::read_to_string(out_path).unwrap_or_default(),
    )
}

/// A scenario of `orgs` active subscribers over 12 months: monthly usage per org, about
/// 5 % of the orgs' cards declined (half of them updated a week later), 3 % upgrades, 3 %
/// downgrades, 2 % cancellations.
fn scenario_toml(orgs: usize) -> (String, usize) {
    const TIERS: [u32; 8] = [
        5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000,
    ];
    let mut s = String::with_capacity(orgs * 1_500);
    let mut steps = 0;
    s.push_str("start = \"2026-01-01T00:00:00Z\"\nuntil = \"2027-01-01T00:00:00Z\"\n\n");
    for i in 0..orgs {
        let plan = if i % 4 == 0 { "essentials" } else { "basic" };
        let tier = TIERS[i % TIERS.len()];
        let _ = write!(
            s,
            "[[org]]\nid = \"o{i}\"\nplan = \"{plan}\"\ntier = {tier}\nadmins = [\"a@o{i}.test\"]\npayment_method = true\nstate = \"active\"\n\n"
        );
    }
    // Steps must be in time order in the file: collect, then sort (stably) by instant.
    let mut pending: Vec<(String, String)> = Vec::new();
    let step =
        |pending: &mut Vec<(String, String)>, at: &str, i: usize, action: &str, extra: &str| {
            pending.push((
                at.to_owned(),
                format!(
                    "[[step]]\nat = \"{at}\"\norg = \"o{i}\"\naction = \"{action}\"\n{extra}\n"
                ),
            ));
        };
    for i in 0..orgs {
        let tier = TIERS[i % TIERS.len()];
        let cancel_month = (i % 50 == 7).then_some(3 + i % 9); // 2 %
        for month in 1..=12 {
            if cancel_month.is_some_and(|m| month > m) {
                break;
            }
            let percent = 30 + (i * 31 + month * 17) % 80;
            let mau = u64::from(tier) * percent as u64 / 100;
            step(
                &mut pending,
                &format!("2026-{month:02}-15T00:00:00Z"),
                i,
                "usage",
                &format!("project = \"web\"\nmau = {mau}\ndata_points = 1000\n"),
            );
            steps += 1;
            if cancel_month == Some(month) {
                step(
                    &mut pending,
                    &format!("2026-{month:02}-20T00:00:00Z"),
                    i,
                    "cancel",
                    "confirm = \"DELETE\"\n",
                );
                steps += 1;
            }
        }
        let month = 2 + i % 9;
        if i % 20 == 3 {
            step(
                &mut pending,
                &format!("2026-{month:02}-25T00:00:00Z"),
                i,
                "card_declined",
                "",
            );
            steps += 1;
            if i % 40 == 3 {
                step(
                    &mut pending,
                    &format!("2026-{:02}-08T00:00:00Z", month + 1),
                    i,
                    "card_updated",
                    "",
                );
                steps += 1;
            }
        } else if i % 100 < 3 && cancel_month.is_none() {
            let to = TIERS[(i % TIERS.len() + 1).min(TIERS.len() - 1)].max(tier + 5_000);
            step(
                &mut pending,
                &format!("2026-{month:02}-10T00:00:00Z"),
                i,
                "upgrade",
                &format!("tier = {to}\n"),
            );
            steps += 1;
        } else if (3..6).contains(&(i % 100)) && tier > 5_000 && cancel_month.is_none() {
            step(
                &mut pending,
                &format!("2026-{month:02}-10T00:00:00Z"),
                i,
                "downgrade",
                "tier = 5000\n",
            );
            steps += 1;
        }
    }
    pending.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, text) in pending {
        s.push_str(&text);
    }
    (s, steps)
}

fn bench_simulate(dir: &Path, runs: usize) {
    let orgs = 10_000;
    let (toml, steps) = scenario_toml(orgs);
    let file = dir.join("bench-scenario.toml");
    std::fs::write(&file, &toml).unwrap();
    println!(
        "\n## Simulation: {orgs} orgs x 12 months ({steps} steps, {:.1} MB TOML), `acctd simulate` (release binary), {runs} runs",
        toml.len() as f64 / 1e6
    );
    let mut samples = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let output = Command::new(BIN)
            .arg("simulate")
            .arg(&file)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("spawn acctd simulate");
        let took = started.elapsed();
        assert!(
            output.status.success(),
            "acctd simulate: {} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let lines = output.stdout.iter().filter(|b| **b == b'\n').count();
        println!(
            "  run {}: {} ({lines} output lines)",
            run + 1,
            fmt_secs(took)
        );
        samples.push(took);
    }
    println!("  median: {}", fmt_secs(median(&samples)));
}

fn main() {
    let args = args();
    if let Some(path) = &args.scenario_out {
        let (toml, steps) = scenario_toml(10_000);
        std::fs::write(path, toml).expect("write the scenario");
        println!("{steps} steps written to {}", path.display());
        return;
    }
    if args.seed.is_some() || args.raw_sweep.is_some() {
        by_hand(&args);
        return;
    }
    let wants = |what: &str| args.only.as_deref().is_none_or(|o| o == what);
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "# acctd benchmarks: --orgs {} --runs {} (binary {BIN})",
        args.orgs, args.runs
    );
    if wants("simulate") {
        bench_simulate(dir.path(), args.runs);
    }
    let runtime = runtime();
    runtime.block_on(async {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let sub = dir.path().join(match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            });
            std::fs::create_dir_all(&sub).unwrap();
            let Some(mut place) = Place::new(backend, &sub).await else {
                println!("\n(PostgreSQL skipped: TEST_POSTGRES_URL is not set)");
                continue;
            };
            if wants("sweep") {
                bench_sweep(&mut place, args.orgs, args.runs).await;
            }
            if wants("ingest") {
                bench_ingest(&mut place, (args.orgs / 10).max(1), args.runs).await;
                bench_projects(&mut place, (args.orgs * 10).max(4), args.runs).await;
            }
            if wants("memory") {
                bench_memory(&mut place, args.orgs).await;
            }
            if wants("http") {
                bench_http(&mut place, args.orgs, args.runs).await;
            }
            if wants("foresight") {
                bench_foresight(&mut place, args.orgs, args.runs).await;
            }
            if wants("whatif") {
                bench_whatif(&mut place, args.orgs, args.runs).await;
            }
            if wants("console") {
                bench_console(&mut place, args.orgs, args.runs).await;
            }
            place.drop_all().await;
        }
    });
}

/// `--seed URL` or `--raw-sweep URL`: one step of a benchmark by hand, on a database of
/// the caller's (migrated first).
fn by_hand(args: &Args) {
    let runtime = runtime();
    runtime.block_on(async {
        let url = args.seed.as_ref().or(args.raw_sweep.as_ref()).unwrap();
        let db = storage::connect(url, 2).await.expect("connect");
        storage::migrate(&db).await.expect("migrate");
        let now = clock::truncate(args.now.unwrap_or_else(Utc::now));
        if args.seed.is_some() {
            let (result, took) =
                bench::time_async(bench::seed(&db, args.orgs, args.scenario, now)).await;
            result.expect("seed");
            let (result, analyzed) = bench::time_async(bench::analyze(&db)).await;
            result.expect("ANALYZE");
            println!(
                "seeded {} orgs ({}) in {}, ANALYZE in {}",
                args.orgs,
                args.scenario,
                fmt_secs(took),
                fmt_secs(analyzed)
            );
        } else {
            let (result, took) = bench::time_async(bench::raw_sweep(&db, now)).await;
            let done = result.expect("raw sweep");
            println!(
                "raw sweep: {} orgs locked, {} transitions, {} outbox rows in {}",
                done.orgs,
                done.transitions,
                done.outbox,
                fmt_secs(took)
            );
        }
        db.close().await.ok();
    });
}

/// The harness's runtime: two workers, as the machine has two cores.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
