//! The outbox dispatcher: sends due messages, acknowledges each right after it is sent,
//! retries failures with exponential backoff and jitter, dead-letters after
//! `notify.max_attempts`.
//!
//! Delivery guarantee: at least once, and at most one duplicate per message that was in
//! flight when a dispatcher died (sent, not yet acknowledged). Messages are acknowledged
//! one by one, so a crash duplicates at most the single message being sent; its
//! Message-ID is stable so a receiver can drop it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::Notify as Bell;
use tokio_util::sync::CancellationToken;

use super::template::Templates;
use super::transport::{message, Mailer};
use super::webhook::Webhooks;
use crate::clock::Clock;
use crate::config;
use crate::storage::{self, outbox};

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub sent: usize,
    pub retried: usize,
    pub dead: usize,
    pub skipped: usize,
}

/// Delivers outbox messages.
#[derive(Clone)]
pub struct Dispatcher {
    db: DatabaseConnection,
    mailer: Arc<Mailer>,
    templates: Arc<Templates>,
    settings: config::Notify,
    from: String,
    clock: Arc<dyn Clock>,
    webhooks: Option<Arc<Webhooks>>,
    metrics: crate::telemetry::metrics::Metrics,
}

impl Dispatcher {
    pub fn new(
        db: DatabaseConnection,
        mailer: Mailer,
        settings: &config::Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            mailer: Arc::new(mailer),
            templates: Arc::new(Templates::new()),
            settings: settings.notify.clone(),
            from: settings.email.from.clone(),
            clock,
            webhooks: None,
            metrics: crate::telemetry::metrics::Metrics::default(),
        }
    }

    /// The same dispatcher, recording deliveries and failures in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::telemetry::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also delivers webhook messages to these endpoints.
    #[must_use]
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = Some(Arc::new(webhooks));
        self
    }

    /// The delay before attempt `attempts + 1`: base × 2^(attempts − 1), capped, plus up to
    /// 20 % jitter derived from the message id (so retries of many messages spread out).
    pub fn backoff(&self, id: i64, attempts: i32) -> Duration {
        let base = self.settings.backoff_base_seconds;
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let delay = base
            .saturating_mul(1u64 << exponent)
            .min(self.settings.backoff_max_seconds);
        let spread = delay / 5 + 1;
        let seed = u64::try_from(id)
            .unwrap_or(0)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::try_from(attempts).unwrap_or(0);
        Duration::seconds(i64::try_from(delay + seed % spread).unwrap_or(i64::MAX))
    }

    /// One round: claim due messages and deliver them one by one.
    ///
    /// # Errors
    /// A storage error (messages claimed but not handled are retried after the lease).
    pub async fn round(&self) -> Result<Round, storage::Error> {
        let mut round = Round::default();
        if !self.mailer.delivers() && self.webhooks.is_none() {
            return Ok(round);
        }
        let now = self.clock.now();
        let lease =
            now + Duration::seconds(i64::try_from(self.settings.lease_seconds).unwrap_or(120));
        let txn = storage::begin_write(&self.db).await?;
        let mut channels = Vec::new();
        if self.mailer.delivers() {
            channels.push("email");
        }
        if self.webhooks.is_some() {
            channels.push("webhook");
        }
        let claimed = outbox::claim(
            &txn,
            now,
            lease,
            u64::from(self.settings.batch_size),
            &channels,
        )
        .await?;
        txn.commit().await?;
        for m in claimed {
            // The batch is bounded by its lease: what is left once the lease ran out is
            // left to the next claim (another dispatcher's, or this one's next round).
            if self.clock.now() >= lease {
                break;
            }
            // Each message's lease is renewed right before its send, and only if this
            // dispatcher still holds it: a message another dispatcher claimed after this
            // lease ran out is theirs to send.
            let renewed = self.clock.now()
                + Duration::seconds(i64::try_from(self.settings.lease_seconds).unwrap_or(120));
            if !outbox::renew(&self.db, m.id, m.attempts, renewed).await? {
                continue;
            }
            let outcome = match m.channel.as_str() {
                "email" => match self.templates.render(&m.template, &m.payload) {
                    Ok(rendered) => {
                        match message(&self.from, &m.recipients, &m.dedupe_key, &rendered) {
                            Ok(msg) => self.mailer.send(msg).await,
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                },
                "webhook" => {
                    let endpoint = m.recipients.first().map(String::as_str).unwrap_or_default();
                    match &self.webhooks {
                        Some(hooks) if hooks.has(endpoint) => {
                            let body = m.payload.to_string();
                            hooks
                                .post(endpoint, body.as_bytes(), now.timestamp(), &m.dedupe_key)
                                .await
                        }
                        // The endpoint was removed from the configuration.
                        _ => {
                            outbox::mark_status(&self.db, m.id, "skipped").await?;
                            round.skipped += 1;
                            continue;
                        }
                    }
                }
                _ => {
                    outbox::mark_status(&self.db, m.id, "skipped").await?;
                    round.skipped += 1;
                    continue;
                }
            };
            let now = self.clock.now();
            match outcome {
                Ok(()) => {
                    // Acknowledged only while held; else the holder acknowledges it.
                    if outbox::mark_sent(&self.db, m.id, m.attempts, now).await? {
                        round.sent += 1;
                        self.metrics.delivered(
                            &m.channel,
                            (now - m.at).to_std().unwrap_or_default(),
                            u32::try_from(m.attempts).unwrap_or(0),
                        );
                    }
                }
                Err(error) => {
                    let give_up =
                        u32::try_from(m.attempts).unwrap_or(u32::MAX) >= self.settings.max_attempts;
                    let retry_at = (!give_up).then(|| now + self.backoff(m.id, m.attempts));
                    tracing::warn!(outbox = m.id, org = %m.org_id, template = %m.template, attempts = m.attempts, %error, dead = give_up, "delivery failed");
                    outbox::mark_failed(&self.db, m.id, m.attempts, &error, retry_at).await?;
                    self.metrics.delivery_failed(&m.channel, give_up);
                    if give_up {
                        round.dead += 1;
                    } else {
                        round.retried += 1;
                    }
                }
            }
        }
        Ok(round)
    }

    /// Rounds until nothing due is left (or only failures remain).
    ///
    /// # Errors
    /// A storage error.
    pub async fn drain(&self) -> Result<Round, storage::Error> {
        let mut total = Round::default();
        loop {
            let round = self.round().await?;
            total.sent += round.sent;
            total.retried += round.retried;
            total.dead += round.dead;
            total.skipped += round.skipped;
            if round.sent + round.skipped < self.settings.batch_size as usize
                || round.retried + round.dead > 0
            {
                return Ok(total);
            }
        }
    }

    /// Delivers on every bell until `token` is cancelled.
    pub async fn run(self, bell: Arc<Bell>, token: CancellationToken) {
        loop {
            match self.drain().await {
                Ok(round) if round.sent + round.dead + round.retried > 0 => {
                    tracing::info!(
                        sent = round.sent,
                        retried = round.retried,
                        dead = round.dead,
                        "outbox"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "outbox dispatch failed; retrying on the next wake-up");
                }
            }
            tokio::select! {
                () = bell.notified() => {}
                () = token.cancelled() => break,
            }
        }
    }

    /// The clock's now, for callers scheduling around the dispatcher.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
