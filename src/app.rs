//! The daemon: database, migrations, engine, scheduler and admin API, with injected
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, Unusable};
use crate::engine::{Engine, ExternalGateway};
use crate::notify::webhook::Webhooks;
use crate::notify::{Dispatcher, Mailer};
use crate::telemetry::metrics::Metrics;
use crate::{api, scheduler, storage};

/// A built daemon, ready to run.
pub struct App {
    engine: Engine,
    dispatcher: Dispatcher,
    /// Held while the daemon runs (SQLite only).
    _lock: Option<crate::lock::DaemonLock>,
    settings: Settings,
    /// The admin API's socket, bound at build time so that `addr()` is known (port 0).
    listener: TcpListener,
    addr: SocketAddr,
    tokens: api::Tokens,
}

impl App {
    /// Connects to the database, applies migrations, loads the API tokens (`api.tokens`
    /// and the environment variable `ACCTD_API_TOKENS`) and binds `api.listen`.
    ///
    /// # Errors
    /// The database cannot be opened or migrated, a token is malformed, or the address
    /// cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`App::build`], on a given clock.
    ///
    /// # Errors
    /// As [`App::build`].
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        // One daemon per SQLite file; PostgreSQL replicas share work through row locks.
        let lock = crate::lock::acquire(&settings.database.url)?;
        let db = connect(&settings.database).await?;
        storage::migrate(&db).await?;
        let mailer =
            Mailer::from_settings(&settings.email).map_err(|e| Unusable(format!("email: {e}")))?;
        let metrics = Metrics::prometheus();
        let mut dispatcher = Dispatcher::new(db.clone(), mailer, &settings, clock.clone())
            .with_metrics(metrics.clone());
        if !settings.webhooks.endpoints.is_empty() {
            let timeout = Duration::from_secs(settings.email.smtp.timeout_seconds.max(1));
            dispatcher = dispatcher.with_webhooks(
                Webhooks::from_settings(&settings.webhooks, timeout)
                    .map_err(|e| Unusable(format!("webhooks: {e}")))?,
            );
        }
        // No more lanes than connections: a lane without one would only wait for it.
        let pool = storage::pool_size(&settings.database.url, settings.database.max_connections);
        let read_lanes = usize::try_from(settings.database.read_lanes.min(pool)).unwrap_or(1);
        let engine = Engine::new(db, settings.rules(), Arc::new(ExternalGateway), clock)
            .with_batched_reads(read_lanes)
            .with_metrics(metrics);
        let tokens = api::Tokens::load(
            &settings.api.tokens,
            std::env::var(api::auth::ENV_VAR).ok().as_deref(),
        )
        .map_err(|e| Unusable(e.to_string()))?;
        let listener = TcpListener::bind(settings.api.listen)
            .await
            .with_context(|| format!("cannot listen on {} (api.listen)", settings.api.listen))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            engine,
            dispatcher,
            _lock: lock,
            settings,
            listener,
            addr,
            tokens,
        })
    }

    /// Where the admin API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs until `shutdown` is cancelled; the batch in flight is finished first.
    ///
    /// # Errors
    /// The scheduler could not start.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let bell = Arc::new(Notify::new());
        let every = Duration::from_secs(self.settings.daemon.sweep_every_seconds);
        let mut jobs = scheduler::start(every, bell.clone()).await?;
        let tracker = TaskTracker::new();
        tracker.spawn(scheduler::run(self.engine.clone(), bell, shutdown.clone()));
        // Histograms hold their samples until drained: drain them between scrapes.
        let (metrics, upkeep) = (self.engine.metrics().clone(), shutdown.clone());
        tracker.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => metrics.upkeep(),
                    () = upkeep.cancelled() => break,
                }
            }
        });
        let outbox_bell = Arc::new(Notify::new());
        let poll = Duration::from_secs(self.settings.notify.poll_seconds);
        scheduler::add_repeated(&jobs, poll, outbox_bell.clone()).await?;
        tracker.spawn(self.dispatcher.run(outbox_bell, shutdown.clone()));
        let purge_bell = Arc::new(Notify::new());
        scheduler::add_cron(&jobs, scheduler::RETENTION, purge_bell.clone()).await?;
        let retention = self
            .settings
            .plans
            .iter()
            .map(|(plan, p)| (plan.clone(), p.retention_days))
            .collect();
        tracker.spawn(scheduler::run_retention(
            self.engine.clone(),
            retention,
            purge_bell,
            shutdown.clone(),
        ));
        if self.tokens.is_empty() {
            tracing::warn!("no API tokens configured: every authenticated request gets 401");
        }
        let router = api::router(api::ApiState::new(
            self.engine.clone(),
            self.settings.api.clone(),
            self.tokens,
        ));
        let server_shutdown = shutdown.clone();
        let listener = self.listener;
        tracker.spawn(async move {
            if let Err(e) = api::serve(listener, router, server_shutdown).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        tracker.close();
        tracing::info!(
            database = %redact(&self.settings.database.url),
            api = %self.addr,
            test_clocks = self.settings.api.test_clocks,
            sweep_every_seconds = self.settings.daemon.sweep_every_seconds,
            "acctd serving"
        );
        shutdown.cancelled().await;
        tracing::info!("shutting down: finishing the batch in flight");
        tracker.wait().await;
        jobs.shutdown().await?;
        Ok(())
    }
}

/// Opens the configured database with [`storage::connect`]. A database that cannot be
/// opened or reached is bad configuration ([`Unusable`], exit 2), said in one line that
/// names it.
///
/// # Errors
/// [`Unusable`] when the database cannot be opened.
pub async fn connect(
    database: &crate::config::Database,
) -> anyhow::Result<sea_orm::DatabaseConnection> {
    storage::connect(&database.url, database.max_connections)
        .await
        .map_err(|e| {
            let message = match e {
                // Already says which database and why (storage::connect's own messages).
                storage::Error::Db(sea_orm::DbErr::Custom(message)) => message,
                other => format!(
                    "cannot open the database `{}`: {other}",
                    redact(&database.url)
                ),
            };
            Unusable(message).into()
        })
}

/// A database URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
