//! The daemon: database, migrations, engine and scheduler, with injected shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::engine::{Engine, ExternalGateway, Rules};
use crate::{scheduler, storage};

/// A built daemon, ready to run.
pub struct App {
    engine: Engine,
    settings: Settings,
}

impl App {
    /// Connects to the database and applies migrations.
    ///
    /// # Errors
    /// The database cannot be opened or migrated.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`App::build`], on a given clock.
    ///
    /// # Errors
    /// The database cannot be opened or migrated.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let db =
            storage::connect(&settings.database.url, settings.database.max_connections).await?;
        storage::migrate(&db).await?;
        let engine = Engine::new(
            db,
            Rules::from_settings(&settings),
            Arc::new(ExternalGateway),
            clock,
        );
        Ok(Self { engine, settings })
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
        tracker.close();
        tracing::info!(
            database = %redact(&self.settings.database.url),
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
