//! Test databases, a harness around the engine on a virtual clock, and small helpers.

use std::sync::Arc;

use acctd::clock::VirtualClock;
use acctd::config::Settings;
use acctd::domain::{Org, Status};
use acctd::engine::{Actor, Engine, PaymentGateway, Report, ScriptedGateway, Signup};
use acctd::storage;
use acctd::storage::audit::TransitionRecord;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body on both backends. The PostgreSQL case is `#[ignore]`d when
/// the tests were built without `TEST_POSTGRES_URL` (build.rs sets the cfg
/// `acctd_postgres_tests`), so that `cargo test` reports it as ignored, not as passed.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(acctd_postgres_tests),
                ignore = "TEST_POSTGRES_URL was not set when the tests were built"
            )]
            async fn postgres() {
                super::$name(crate::helpers::Backend::Postgres).await;
            }
        }
    };
}
pub(crate) use both;

/// A fresh database: a SQLite file in a temporary directory, or a new PostgreSQL database
/// that is dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// `None` when PostgreSQL is not configured (and not required): the test is skipped.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("acctd.db").display()
                );
                Some(Self {
                    url,
                    dir,
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
                    assert!(
                        std::env::var("REQUIRE_POSTGRES").is_err(),
                        "REQUIRE_POSTGRES is set but TEST_POSTGRES_URL is not"
                    );
                    eprintln!("notice: TEST_POSTGRES_URL is not set; skipping the PostgreSQL case");
                    return None;
                };
                let name = format!("t_{}_{}", std::process::id(), unique());
                let conn = Database::connect(&admin)
                    .await
                    .expect("connect to TEST_POSTGRES_URL");
                conn.execute_raw(Statement::from_string(
                    conn.get_database_backend(),
                    format!("CREATE DATABASE \"{name}\""),
                ))
                .await
                .expect("create test database");
                conn.close().await.ok();
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(base, _)| base);
                let url = format!("{base}/{name}");
                Some(Self {
                    url,
                    dir,
                    postgres: Some((admin, name)),
                })
            }
        }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        let db = storage::connect(&self.url, 4).await.expect("connect");
        storage::migrate(&db).await.expect("migrate");
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs outside any runtime we may block: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(conn) = Database::connect(&admin).await {
                        let _ = conn
                            .execute_raw(Statement::from_string(
                                conn.get_database_backend(),
                                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

/// The engine on a virtual clock over a fresh database.
pub struct Harness {
    pub engine: Engine,
    pub clock: Arc<VirtualClock>,
    pub card: Arc<ScriptedGateway>,
    /// Kept alive for the test: dropping it drops the database.
    pub db: TestDb,
}

impl Harness {
    /// With a scripted card (charges decided at once).
    pub async fn start(backend: Backend, at: &str) -> Option<Self> {
        let card = Arc::new(ScriptedGateway::default());
        Self::with_gateway(backend, at, card.clone(), card).await
    }

    /// With any gateway (e.g. [`acctd::engine::ExternalGateway`]: outcomes arrive later).
    pub async fn with_gateway(
        backend: Backend,
        at: &str,
        gateway: Arc<dyn PaymentGateway>,
        card: Arc<ScriptedGateway>,
    ) -> Option<Self> {
        let db = TestDb::new(backend).await?;
        let conn = db.connect().await;
        let clock = Arc::new(VirtualClock::new(t(at)));
        let mut settings = Settings::default();
        // Small fixed batches, so that a test's orgs span several.
        settings.daemon.batch_size = 7;
        settings.daemon.max_batch_size = 7;
        let engine = Engine::new(conn, settings.rules(), gateway, clock.clone());
        Some(Self {
            engine,
            clock,
            card,
            db,
        })
    }

    pub fn set(&self, at: &str) {
        self.clock.set(t(at));
    }

    /// Moves the clock to `at` and processes everything due.
    pub async fn tick(&self, at: &str) -> Report {
        self.set(at);
        self.engine.tick(t(at)).await.expect("tick")
    }

    pub async fn signup(&self, id: &str, payment_method: bool, active: bool) {
        let signup = Signup {
            id: id.to_owned(),
            plan: "basic".to_owned(),
            tier: 20_000,
            admins: vec![format!("admin@{id}.test")],
            billing_email: Some(format!("billing@{id}.test")),
            payment_method,
            addons: Vec::new(),
            active,
        };
        self.engine
            .signup(signup, &Actor::system())
            .await
            .expect("signup");
    }

    pub async fn org(&self, id: &str) -> Org {
        self.engine
            .org(id)
            .await
            .expect("load")
            .expect("org exists")
    }

    pub async fn status(&self, id: &str) -> Status {
        self.org(id).await.lifecycle.status
    }

    pub async fn transitions(&self, id: &str) -> Vec<TransitionRecord> {
        storage::audit::recent_transitions(self.engine.db(), id, 10_000)
            .await
            .expect("transitions")
    }
}

/// `(at, from, to, cause)` of each transition, for compact assertions.
pub fn moves(rows: &[TransitionRecord]) -> Vec<(String, String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                r.from
                    .map_or_else(|| "-".to_owned(), |s| s.as_str().to_owned()),
                r.to.as_str().to_owned(),
                r.cause.clone(),
            )
        })
        .collect()
}

pub fn mv(at: &str, from: &str, to: &str, cause: &str) -> (String, String, String, String) {
    (
        at.to_owned(),
        from.to_owned(),
        to.to_owned(),
        cause.to_owned(),
    )
}

/// A child process (the `acctd` binary) that dies with the test: dropping the guard kills
/// it (SIGKILL) and reaps it, whether the test passed, failed or panicked. Without it a
/// failed test left `acctd serve` running, holding the test's output pipe open. Derefs to
/// the [`std::process::Child`], so a test still signals, waits on and reads it as before;
/// killing a child the test already waited for does nothing.
pub struct Spawned(std::process::Child);

impl Spawned {
    /// Spawns `command` under the guard.
    pub fn spawn(command: &mut std::process::Command) -> Self {
        Self(command.spawn().expect("spawn acctd"))
    }
}

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `command` to its end like [`std::process::Command::output`], but under a
/// [`Spawned`] guard and a deadline: a command still running after `timeout` is killed
/// and the test fails, instead of waiting forever.
pub fn output_within(
    command: &mut std::process::Command,
    timeout: std::time::Duration,
) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Spawned::spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped")));
    let stderr = read(Box::new(child.stderr.take().expect("piped")));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for acctd") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{command:?} still running after {timeout:?}: killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
