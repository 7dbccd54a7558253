//! The daemon's wall-clock wake-ups. tokio-cron-scheduler only rings the bell; the
//! deadlines live in the database and the engine decides what is due, so a missed or
//! doubled wake-up changes nothing.
//!
//! **Architecture Invariant:** no job per org and no domain logic in a job: one repeated
//! sweep wake-up and one monthly wake-up (00:00 UTC on the 1st), both of which only
//! notify [`run`]'s loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Engine};

/// Cron expression (with seconds) of the monthly cycle's wake-up, in UTC.
pub const MONTHLY: &str = "0 0 0 1 * *";

/// Starts the wake-up jobs; they notify `bell`.
///
/// # Errors
/// The scheduler could not start.
pub async fn start(every: Duration, bell: Arc<Notify>) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let sweep_bell = bell.clone();
    scheduler
        .add(Job::new_repeated_async(every, move |_, _| {
            let bell = sweep_bell.clone();
            Box::pin(async move { bell.notify_one() })
        })?)
        .await?;
    scheduler
        .add(Job::new_async(MONTHLY, move |_, _| {
            let bell = bell.clone();
            Box::pin(async move {
                tracing::info!("monthly cycle wake-up");
                bell.notify_one();
            })
        })?)
        .await?;
    scheduler.start().await?;
    Ok(scheduler)
}

/// Adds a repeated wake-up (the outbox dispatcher's) to a running scheduler.
///
/// # Errors
/// The job could not be added.
pub async fn add_repeated(
    scheduler: &JobScheduler,
    every: Duration,
    bell: Arc<Notify>,
) -> Result<(), JobSchedulerError> {
    scheduler
        .add(Job::new_repeated_async(every, move |_, _| {
            let bell = bell.clone();
            Box::pin(async move { bell.notify_one() })
        })?)
        .await
        .map(|_| ())
}

/// Adds a cron wake-up (UTC, with seconds), e.g. the daily retention purge.
///
/// # Errors
/// A bad expression, or the job could not be added.
pub async fn add_cron(
    scheduler: &JobScheduler,
    cron: &str,
    bell: Arc<Notify>,
) -> Result<(), JobSchedulerError> {
    scheduler
        .add(Job::new_async(cron, move |_, _| {
            let bell = bell.clone();
            Box::pin(async move { bell.notify_one() })
        })?)
        .await
        .map(|_| ())
}

/// Cron expression of the daily retention purge (03:00 UTC).
pub const RETENTION: &str = "0 0 3 * * *";

/// Purges usage past each plan's retention on every bell until cancelled.
pub async fn run_retention(
    engine: Engine,
    retention: Vec<(String, u32)>,
    bell: Arc<Notify>,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            () = bell.notified() => {}
            () = token.cancelled() => break,
        }
        if let Err(e) = engine.purge_retention(&retention).await {
            tracing::error!(error = %e, "retention purge failed; retrying tomorrow");
        }
    }
}

/// The engine loop: catch up at once, then sweep on every bell until `token` is
/// cancelled. A batch in flight is finished before returning; the next one is not begun.
pub async fn run(engine: Engine, bell: Arc<Notify>, token: CancellationToken) {
    loop {
        if let Err(e) = sweep(&engine, &token).await {
            tracing::error!(error = %e, error.cause_chain = ?e, "sweep failed; retrying on the next wake-up");
        }
        tokio::select! {
            () = bell.notified() => {}
            () = token.cancelled() => break,
        }
    }
    tracing::info!("engine loop stopped");
}

/// Sweeps everything due now, one batch at a time, stopping between batches on shutdown.
/// Keeps no facts beyond the batch in flight, so memory does not grow with the number of
/// due orgs; returns how many orgs and transitions it processed.
///
/// # Errors
/// A storage error from the batch that failed (it was rolled back).
pub async fn sweep(engine: &Engine, token: &CancellationToken) -> engine::Result<(u64, usize)> {
    let until = engine.now();
    let started = std::time::Instant::now();
    let mut transitions = 0;
    let orgs = engine
        .sweep(until, |swept, batch| {
            transitions += batch.transitions();
            engine
                .metrics()
                .sweep_batch(swept.claimed, swept.took, swept.lag);
            if token.is_cancelled() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .await?;
    engine.metrics().sweep();
    if orgs > 0 {
        tracing::info!(
            orgs,
            transitions,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "sweep"
        );
    }
    Ok((orgs, transitions))
}
