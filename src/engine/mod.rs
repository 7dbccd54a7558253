//! The one code path. The daemon's scheduler, the CLI, the simulator and the tests all call
//! these methods: load due orgs (or the org a command names), run the machine at each
//! event's effective instant, and persist the new state with its audit rows, invoices and
//! outbox messages in one transaction.
//!
//! **Architecture Invariant:** the engine never reads the system clock; "now" comes from
//! the injected [`Clock`]. A deadline takes effect at its own instant even when processed
//! late, and the deadlines it chains are computed from that instant.

pub mod fact;
pub mod gateway;
pub mod plan;
pub mod test_clock;
pub mod usage;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::entitlement::Matrix;
use crate::domain::period::{next_first_after, Period};
use crate::domain::price::{PriceBook, PriceError};
use crate::domain::{
    self, command_to_reach, decide, Charge, Deadline, Effect, Event, Lifecycle, LockReason, Org,
    Refusal, Status, Timers,
};
use crate::storage::audit::{OutboxMessage, TransitionRecord};
use crate::storage::billing::{self, Invoice, InvoiceKind, InvoiceStatus, NewInvoice};
use crate::storage::{self, org as orgs};
pub use fact::{Fact, Report};
pub use gateway::{ExternalGateway, PaymentGateway, ScriptedGateway};

/// Why an engine call did nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown org `{0}`")]
    UnknownOrg(String),
    #[error("unknown invoice {0}")]
    UnknownInvoice(i64),
    #[error("org `{0}` exists already")]
    Exists(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Price(#[from] PriceError),
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::Storage(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The rules the engine applies, taken from [`Settings`].
#[derive(Clone, Debug)]
pub struct Rules {
    pub timers: Timers,
    pub prices: PriceBook,
    pub entitlements: Matrix,
    pub currency: String,
    /// Sweep batches: the first and smallest, the largest, and the time one should take
    /// (see [`BatchSizer`]).
    pub batch_size: u64,
    pub max_batch_size: u64,
    pub batch_target: std::time::Duration,
    pub alert_thresholds: Vec<u32>,
    pub lock_above_percent: u32,
    pub reminder_days: u32,
    /// Names of the webhook endpoints every lifecycle event is published to.
    pub webhooks: Vec<String>,
}

impl Rules {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            timers: settings.timers(),
            prices: settings.price_book(),
            entitlements: settings.entitlements(),
            currency: settings.billing.currency.clone(),
            batch_size: u64::from(settings.daemon.batch_size),
            max_batch_size: u64::from(settings.daemon.max_batch_size),
            batch_target: std::time::Duration::from_millis(settings.daemon.batch_target_ms),
            alert_thresholds: settings.usage.alert_thresholds.clone(),
            lock_above_percent: settings.usage.lock_above_percent,
            reminder_days: settings.notify.reminder_days,
            webhooks: settings
                .webhooks
                .endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect(),
        }
    }
}

/// Who asked, and why: stored in the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub reason: Option<String>,
}

impl Actor {
    /// The engine itself (deadlines, the monthly cycle).
    pub fn system() -> Self {
        Self {
            name: "system".to_owned(),
            reason: None,
        }
    }

    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reason: Some(reason.into()),
        }
    }
}

/// A new org.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signup {
    pub id: String,
    pub plan: String,
    pub tier: u32,
    pub admins: Vec<String>,
    /// Defaults to the first admin.
    pub billing_email: Option<String>,
    pub payment_method: bool,
    pub addons: Vec<String>,
    /// Import an existing subscriber whose current period is paid, instead of a trial.
    pub active: bool,
}

/// Requests against one org (SPEC sections 3 and 10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    EndTrial,
    AddPaymentMethod,
    /// The card works again: overdue invoices are charged at once.
    RetryOverdue,
    Lock,
    Unlock {
        reason: LockReason,
    },
    ExtendTrial {
        days: u32,
    },
    ExtendGrace {
        days: u32,
    },
    PostponeCancel {
        days: u32,
    },
    MarkPaid,
    Cancel {
        confirm: String,
    },
    /// A generic move to a named state, accepted only along a legal edge.
    Transition {
        to: Status,
    },
    /// Upgrades, downgrades and add-ons.
    Plan(plan::PlanChange),
}

/// The engine: a database, the rules, a payment gateway and a clock.
#[derive(Clone)]
pub struct Engine {
    db: DatabaseConnection,
    rules: Arc<Rules>,
    gateway: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
    /// The test clock whose orgs this engine drives; `None`: the real clock's orgs.
    scope: Option<String>,
    /// The size of the next sweep batch, shared by the engine's clones.
    sizer: Arc<BatchSizer>,
    /// Coalesced point reads of orgs ([`Engine::with_batched_reads`]); `None`: direct.
    reads: Option<Arc<storage::reads::OrgReads>>,
}

/// Sizes sweep batches to a time budget (`daemon.batch_target_ms`): a full batch that
/// took under half the target doubles the next one, up to `max_batch_size`; one that took
/// longer than the target halves it, down to `batch_size`. Large batches amortize a
/// transaction's fixed costs (on SQLite the commit writes every page the batch dirtied),
/// while the budget bounds how long a batch holds SQLite's write lock (or PostgreSQL's
/// row locks) and the maximum its memory.
#[derive(Debug)]
pub struct BatchSizer {
    min: u64,
    max: u64,
    target: std::time::Duration,
    next: std::sync::atomic::AtomicU64,
}

impl BatchSizer {
    pub fn new(min: u64, max: u64, target: std::time::Duration) -> Self {
        let min = min.max(1);
        Self {
            min,
            max: max.max(min),
            target,
            next: std::sync::atomic::AtomicU64::new(min),
        }
    }

    /// How many orgs the next batch claims at most.
    pub fn next(&self) -> u64 {
        self.next.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Learns from a batch that could claim `limit` orgs, claimed `claimed` and took
    /// `took`.
    pub fn record(&self, limit: u64, claimed: u64, took: std::time::Duration) {
        let next = if took > self.target {
            (limit / 2).max(self.min)
        } else if claimed >= limit && took * 2 < self.target {
            limit.saturating_mul(2).min(self.max)
        } else {
            limit
        };
        self.next.store(next, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What one sweep batch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swept {
    /// Orgs claimed (and caught up).
    pub claimed: u64,
    /// The batch was full: more may be due.
    pub more: bool,
}

/// The writes of one transaction, buffered so that audit and outbox rows go in bulk.
struct Work<'a> {
    txn: &'a DatabaseTransaction,
    recorded_at: DateTime<Utc>,
    transitions: Vec<TransitionRecord>,
    outbox: Vec<OutboxMessage>,
    /// Payment rows, written in bulk by `flush` (nothing in a transaction reads them).
    payments: Vec<billing::NewPayment>,
    /// Invoices issued in this transaction, with their lines and latest status: written
    /// in bulk by `flush_invoices`, which every read of invoices from the database goes
    /// through first (`stored_invoices`).
    invoices: Vec<Invoice>,
    /// Invoice ids reserved and not yet handed out; how many the next reservation asks
    /// for; the last id handed out.
    invoice_ids: std::collections::VecDeque<i64>,
    invoice_hint: usize,
    last_invoice_id: Option<i64>,
    facts: Vec<Fact>,
    /// Facts before this index were published to the webhooks already.
    published: usize,
    /// What a sweep batch read up front for its monthly cycles (see [`Prefetched`]).
    prefetched: Prefetched,
}

/// Answers a sweep batch read in bulk for the monthly cycles its orgs are due for, so
/// that each cycle does not query them one by one. A question outside what was read
/// goes to the database. Sound because the batch holds its orgs (SQLite's write lock, or
/// PostgreSQL row locks that every writer of an org's invoices and usage takes first).
#[derive(Default)]
struct Prefetched {
    /// (org, invoice key) pairs that were looked up or issued since...
    keys: std::collections::HashSet<(String, String)>,
    /// ...and those of them that exist, including invoices issued since.
    invoices: std::collections::HashSet<(String, String)>,
    /// Usage totals by (org, period label) for the periods the cycles bill.
    usage: std::collections::HashMap<(String, String), domain::usage::Usage>,
}

impl<'a> Work<'a> {
    fn new(txn: &'a DatabaseTransaction, recorded_at: DateTime<Utc>) -> Self {
        Self {
            txn,
            recorded_at,
            transitions: Vec::new(),
            outbox: Vec::new(),
            payments: Vec::new(),
            invoices: Vec::new(),
            invoice_ids: std::collections::VecDeque::new(),
            invoice_hint: 1,
            last_invoice_id: None,
            facts: Vec::new(),
            published: 0,
            prefetched: Prefetched::default(),
        }
    }

    /// The facts, once everything is written (the transaction can be committed then).
    fn into_facts(self) -> Vec<Fact> {
        self.facts
    }

    /// Writes the buffered invoices, payments, audit and outbox rows (with one webhook
    /// message per new lifecycle event and endpoint).
    async fn flush(&mut self, webhooks: &[String]) -> Result<()> {
        if !webhooks.is_empty() {
            for fact in &self.facts[self.published..] {
                for (event, key, payload) in webhook_events(fact) {
                    for endpoint in webhooks {
                        self.outbox.push(OutboxMessage {
                            org_id: fact.org().to_owned(),
                            channel: "webhook",
                            template: event.to_owned(),
                            recipients: vec![endpoint.clone()],
                            payload: payload.clone(),
                            dedupe_key: format!("webhook:{endpoint}:{key}"),
                            at: fact.at(),
                        });
                    }
                }
            }
        }
        self.published = self.facts.len();
        let txn = self.txn;
        billing::insert_many(txn, &self.invoices).await?;
        self.invoices.clear();
        billing::record_payments(txn, &self.payments).await?;
        self.payments.clear();
        storage::audit::insert_transitions(txn, &self.transitions).await?;
        storage::audit::enqueue_in(txn, &self.outbox, Some(self.recorded_at)).await?;
        self.transitions.clear();
        self.outbox.clear();
        Ok(())
    }

    fn email(
        &mut self,
        org: &Org,
        template: &str,
        at: DateTime<Utc>,
        key: String,
        payload: serde_json::Value,
    ) {
        let to = if matches!(template, "invoice" | "payment_failed") {
            vec![org.billing_email.clone()]
        } else {
            org.admins.clone()
        };
        self.facts.push(Fact::Email {
            at,
            org: org.id.clone(),
            template: template.to_owned(),
            to: to.clone(),
        });
        self.outbox.push(OutboxMessage {
            org_id: org.id.clone(),
            channel: "email",
            template: template.to_owned(),
            recipients: to,
            payload,
            dedupe_key: key,
            at,
        });
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn lifecycle_payload(org: &Org, at: DateTime<Utc>) -> serde_json::Value {
    let l = &org.lifecycle;
    serde_json::json!({
        "org": org.id,
        "at": rfc3339(at),
        "state": l.status.as_str(),
        "lock_reasons": l.reasons.iter().map(LockReason::as_str).collect::<Vec<_>>(),
        "trial_ends_at": l.trial_ends_at.map(rfc3339),
        "grace_ends_at": l.grace_ends_at.map(rfc3339),
        "cancel_at": l.cancel_at.map(rfc3339),
        "plan": org.plan,
        "tier": org.tier,
    })
}

impl Engine {
    pub fn new(
        db: DatabaseConnection,
        rules: Rules,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            sizer: Arc::new(BatchSizer::new(
                rules.batch_size,
                rules.max_batch_size,
                rules.batch_target,
            )),
            db,
            rules: Arc::new(rules),
            gateway,
            clock,
            scope: None,
            reads: None,
        }
    }

    /// The same engine, its point reads of orgs ([`Engine::org`] and the views and
    /// entitlements built on it) coalesced by `lanes` lanes while others are in flight
    /// (see [`storage::reads`]). For `acctd serve`'s API; must be called inside a tokio
    /// runtime.
    #[must_use]
    pub fn with_batched_reads(self, lanes: usize) -> Self {
        Self {
            reads: Some(Arc::new(storage::reads::OrgReads::start(&self.db, lanes))),
            ..self
        }
    }

    /// The same engine for the orgs of a test clock, on that clock's time. Orgs on a test
    /// clock never see the real clock, and other orgs never see a test clock.
    #[must_use]
    pub fn on_test_clock(&self, id: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            scope: Some(id.into()),
            ..self.clone()
        }
    }

    /// The test clock this engine drives, if any.
    pub fn test_clock(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Refuses to act on an org that lives on another clock.
    fn check_scope(&self, org: &Org) -> Result<()> {
        if org.clock == self.scope {
            return Ok(());
        }
        Err(invalid(
            "org",
            match &org.clock {
                Some(clock) => format!("org `{}` lives on test clock `{clock}`", org.id),
                None => format!("org `{}` lives on the real clock", org.id),
            },
        ))
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Processes every deadline due at or before `until`, in batches of
    /// `rules.batch_size` orgs, one transaction per batch.
    ///
    /// # Errors
    /// A storage error; the batch in flight is rolled back and nothing of it is lost.
    pub async fn tick(&self, until: DateTime<Utc>) -> Result<Report> {
        let mut report = Report::default();
        self.sweep(until, |_, batch| {
            report.facts.extend(batch.facts);
            std::ops::ControlFlow::Continue(())
        })
        .await?;
        Ok(report)
    }

    /// The sweep loop of `serve`, `tick`, the simulator and test clocks: batches of
    /// [`Engine::sweep_batch`] until nothing is due at `until`, each handed to `each` as
    /// it commits (so memory does not grow with the backlog). `each` may break between
    /// batches (shutdown). Returns how many orgs were claimed.
    ///
    /// # Errors
    /// A storage error from the batch that failed (it was rolled back; the batches before
    /// it stay committed).
    pub async fn sweep(
        &self,
        until: DateTime<Utc>,
        mut each: impl FnMut(Swept, Report) -> std::ops::ControlFlow<()>,
    ) -> Result<u64> {
        let mut claimed = 0;
        loop {
            let mut batch = Report::default();
            let swept = self.sweep_batch(until, &mut batch).await?;
            claimed += swept.claimed;
            if each(swept, batch).is_break() || !swept.more {
                return Ok(claimed);
            }
        }
    }

    /// One batch of a sweep: claims up to a batch (of the size [`BatchSizer`] gives) of
    /// the orgs due at `until`, earliest deadline first, and catches each up.
    ///
    /// # Errors
    /// A storage error; the batch is rolled back.
    pub async fn sweep_batch(&self, until: DateTime<Utc>, report: &mut Report) -> Result<Swept> {
        let limit = self.sizer.next();
        // Where a batch's time goes, for `log.level = "acctd=debug"`.
        let t0 = std::time::Instant::now();
        let txn = self.db.begin().await?;
        storage::lock_writes(&txn).await?;
        let mut due = orgs::claim_due(&txn, until, limit, self.scope.as_deref()).await?;
        let t1 = t0.elapsed();
        let claimed = due.len() as u64;
        let mut work = Work::new(&txn, self.clock.now());
        let read: Vec<orgs::Written> = due.iter().map(orgs::Written::of).collect();
        work.prefetch_cycles(&due, until).await?;
        for org in &mut due {
            self.advance(&mut work, org, until).await?;
        }
        let t2 = t0.elapsed();
        orgs::update_many(&txn, &mut due, &read, work.recorded_at).await?;
        let t3 = t0.elapsed();
        work.flush(&self.rules.webhooks).await?;
        let t4 = t0.elapsed();
        let facts = work.into_facts();
        txn.commit().await?;
        let t5 = t0.elapsed();
        self.sizer.record(limit, claimed, t5);
        tracing::debug!(
            claimed,
            limit,
            claim_ms = t1.as_secs_f64() * 1e3,
            advance_ms = t2.saturating_sub(t1).as_secs_f64() * 1e3,
            update_ms = t3.saturating_sub(t2).as_secs_f64() * 1e3,
            flush_ms = t4.saturating_sub(t3).as_secs_f64() * 1e3,
            commit_ms = t5.saturating_sub(t4).as_secs_f64() * 1e3,
            "sweep batch"
        );
        report.facts.extend(facts);
        Ok(Swept {
            claimed,
            more: claimed >= limit,
        })
    }

    /// Signs an org up at the clock's instant: a trial, or an imported subscriber.
    ///
    /// # Errors
    /// [`Error::Invalid`], [`Error::Price`] or [`Error::Exists`] for bad input.
    pub async fn signup(&self, signup: Signup, actor: &Actor) -> Result<Report> {
        self.signup_many(vec![signup], actor)
            .await
            .map_err(|(_, e)| e)
    }

    /// Signs many orgs up at the clock's instant in one transaction (imports, a
    /// simulation's orgs): all or none.
    ///
    /// # Errors
    /// The index of the first bad signup with its error ([`Error::Invalid`],
    /// [`Error::Price`], [`Error::Exists`], also for an id given twice); nothing is
    /// stored then. A storage error comes with index 0.
    pub async fn signup_many(
        &self,
        signups: Vec<Signup>,
        actor: &Actor,
    ) -> std::result::Result<Report, (usize, Error)> {
        let at = self.clock.now();
        let mut new = Vec::with_capacity(signups.len());
        let mut seen = std::collections::HashSet::new();
        for (i, signup) in signups.into_iter().enumerate() {
            let org = self.prepare_signup(signup, at).map_err(|e| (i, e))?;
            if !seen.insert(org.id.clone()) {
                return Err((i, Error::Exists(org.id)));
            }
            new.push(org);
        }
        let storage_error = |e: Error| (0, e);
        let txn = self.db.begin().await.map_err(|e| storage_error(e.into()))?;
        storage::lock_writes(&txn)
            .await
            .map_err(|e| storage_error(e.into()))?;
        let ids: Vec<&str> = new.iter().map(|o| o.id.as_str()).collect();
        let existing = orgs::load_many(&txn, &ids)
            .await
            .map_err(|e| storage_error(e.into()))?;
        if let Some(first) = existing.first() {
            let i = new.iter().position(|o| o.id == first.id).unwrap_or(0);
            return Err((i, Error::Exists(first.id.clone())));
        }
        orgs::insert_many(&txn, &new, at)
            .await
            .map_err(|e| storage_error(e.into()))?;
        let mut work = Work::new(&txn, at);
        for org in &new {
            work.record(org, None, "signup", actor, at);
        }
        work.flush(&self.rules.webhooks)
            .await
            .map_err(storage_error)?;
        let facts = work.into_facts();
        txn.commit().await.map_err(|e| storage_error(e.into()))?;
        Ok(Report { facts })
    }

    /// Checks a signup and builds its org at `at`.
    fn prepare_signup(&self, signup: Signup, at: DateTime<Utc>) -> Result<Org> {
        validate_id(&signup.id)?;
        if signup.admins.is_empty() {
            return Err(invalid("admins", "at least one account admin is required"));
        }
        if let Some(bad) = signup.admins.iter().find(|a| !looks_like_email(a)) {
            return Err(invalid(
                "admins",
                format!("`{bad}` is not an email address"),
            ));
        }
        if let Some(bad) = signup
            .billing_email
            .as_ref()
            .filter(|e| !looks_like_email(e))
        {
            return Err(invalid(
                "billing_email",
                format!("`{bad}` is not an email address"),
            ));
        }
        self.rules.prices.plan(&signup.plan)?;
        self.rules.prices.check_tier(signup.tier)?;
        for addon in &signup.addons {
            self.rules.prices.addon(addon)?;
        }
        let mut lifecycle = Lifecycle::trial(at + self.rules.timers.trial, signup.payment_method);
        if signup.active {
            lifecycle.status = Status::Active;
            lifecycle.trial_ends_at = None;
            lifecycle.subscriber = true;
            lifecycle.next_cycle_at = Some(next_first_after(at));
        }
        lifecycle.schedule_reminder(at, self.rules.reminder_days);
        let org = Org {
            billing_email: signup
                .billing_email
                .clone()
                .unwrap_or_else(|| signup.admins[0].clone()),
            id: signup.id,
            plan: signup.plan,
            tier: signup.tier,
            addons: signup.addons,
            currency: self.rules.currency.clone(),
            admins: signup.admins,
            signup_at: at,
            canceled_at: None,
            lifecycle,
            usage: None,
            overage_lock_mau: None,
            scheduled_tier: None,
            scheduled_removals: Vec::new(),
            clock: self.scope.clone(),
            version: 0,
        };
        Ok(org)
    }

    /// Applies a command to one org at the clock's instant, after catching the org up on
    /// its due deadlines. Retries when a concurrent writer changed the org meanwhile.
    ///
    /// # Errors
    /// [`Error::Refused`] with the legal moves, [`Error::UnknownOrg`], [`Error::Invalid`];
    /// nothing changes then.
    pub async fn command(&self, org_id: &str, command: &Command, actor: &Actor) -> Result<Report> {
        let mut attempt = 0;
        loop {
            match self.try_command(org_id, command, actor).await {
                Err(Error::Storage(storage::Error::Stale { .. })) if attempt < 5 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_command(&self, org_id: &str, command: &Command, actor: &Actor) -> Result<Report> {
        let at = self.clock.now();
        let txn = self.db.begin().await?;
        storage::lock_writes(&txn).await?;
        let mut org = orgs::load(&txn, org_id)
            .await?
            .ok_or_else(|| Error::UnknownOrg(org_id.to_owned()))?;
        self.check_scope(&org)?;
        let mut work = Work::new(&txn, at);
        self.advance(&mut work, &mut org, at).await?;
        self.execute(&mut work, &mut org, command, actor, at)
            .await?;
        orgs::update(&txn, &mut org, at).await?;
        work.flush(&self.rules.webhooks).await?;
        let facts = work.into_facts();
        txn.commit().await?;
        Ok(Report { facts })
    }

    /// Records a payment outcome reported by the gateway for an invoice.
    ///
    /// # Errors
    /// [`Error::UnknownInvoice`]; a storage error.
    pub async fn payment_outcome(
        &self,
        invoice_id: i64,
        succeeded: bool,
        actor: &Actor,
    ) -> Result<Report> {
        let at = self.clock.now();
        let txn = self.db.begin().await?;
        storage::lock_writes(&txn).await?;
        let invoice = billing::find(&txn, invoice_id)
            .await?
            .ok_or(Error::UnknownInvoice(invoice_id))?;
        let mut org = orgs::load(&txn, &invoice.org_id)
            .await?
            .ok_or_else(|| Error::UnknownOrg(invoice.org_id.clone()))?;
        self.check_scope(&org)?;
        if invoice.status == InvoiceStatus::Paid {
            return Err(invalid(
                "invoice",
                format!("invoice {invoice_id} is paid already"),
            ));
        }
        let mut work = Work::new(&txn, at);
        self.advance(&mut work, &mut org, at).await?;
        if invoice.kind == InvoiceKind::Proration {
            if invoice.status == InvoiceStatus::Void {
                return Err(invalid(
                    "invoice",
                    format!("invoice {invoice_id} was voided"),
                ));
            }
            self.plan_payment(&mut work, &mut org, &invoice, succeeded, actor, at)
                .await?;
        } else {
            let charge = if succeeded {
                Charge::Succeeded
            } else {
                Charge::Failed
            };
            self.settle_charge(&mut work, &org, &invoice, charge, "gateway", at)
                .await?;
            self.apply_charge(&mut work, &mut org, &invoice, charge, actor, at)
                .await?;
        }
        orgs::update(&txn, &mut org, at).await?;
        work.flush(&self.rules.webhooks).await?;
        let facts = work.into_facts();
        txn.commit().await?;
        Ok(Report { facts })
    }

    /// Fires the org's deadlines due at or before `until`, each at its own instant.
    async fn advance(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let system = Actor::system();
        while let Some((at, deadline)) = org.lifecycle.next_deadline() {
            if at > until {
                break;
            }
            match deadline {
                Deadline::TrialEnd => {
                    let charge = self.conversion_charge(work, org, at).await?;
                    self.apply(work, org, Event::TrialEnded { charge }, &system, at)
                        .await?;
                }
                Deadline::GraceEnd => {
                    self.apply(work, org, Event::GraceExpired, &system, at)
                        .await?;
                }
                Deadline::Cancel => {
                    self.apply(work, org, Event::CancelDue, &system, at).await?;
                }
                Deadline::MonthlyCycle => self.monthly_cycle(work, org, at).await?,
                Deadline::Reminder => self.remind(work, org, at),
            }
            if org.lifecycle.next_deadline() == Some((at, deadline)) {
                // Every handler consumes the deadline it was given; if a rule ever did
                // not, dropping it here keeps the sweep from spinning on one org.
                tracing::error!(org = %org.id, ?deadline, "deadline not consumed; dropped");
                drop_deadline(&mut org.lifecycle, deadline);
            }
        }
        Ok(())
    }

    /// Sends the reminders due at `at` (a few days before a deadline), once each.
    fn remind(&self, work: &mut Work<'_>, org: &mut Org, at: DateTime<Utc>) {
        let days = self.rules.reminder_days;
        let sent = org.lifecycle.reminded_through;
        for (when, template, deadline) in org.lifecycle.reminders(days) {
            if when == at && sent.is_none_or(|s| when > s) {
                let mut payload = lifecycle_payload(org, at);
                payload["payment_method"] = org.lifecycle.payment_method.into();
                let key = format!("{}:{template}:{}", org.id, rfc3339(deadline));
                work.email(org, template, at, key, payload);
            }
        }
        org.lifecycle.reminded_through = Some(at);
        org.lifecycle.schedule_reminder(at, days);
    }

    /// Runs the machine and carries out its effects. Facts never fail here; a refused
    /// command returns the refusal and the caller rolls back.
    async fn apply(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        event: Event,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let decision = decide(&org.lifecycle, event, at, self.rules.timers)?;
        let from = org.lifecycle.status;
        org.lifecycle = decision.lifecycle;
        org.lifecycle
            .schedule_reminder(at, self.rules.reminder_days);
        if !org.lifecycle.reasons.contains(LockReason::Overage) {
            org.overage_lock_mau = None;
        }
        if let Some(transition) = &decision.transition {
            tracing::info!(
                org = %org.id, from = %from, to = %transition.to, cause = transition.cause,
                at = %rfc3339(at), "transition"
            );
            work.record(org, Some(from), transition.cause, actor, at);
        }
        for effect in decision.effects {
            match effect {
                Effect::Notify(template) => {
                    let key = format!(
                        "{}:{}:{}:{}",
                        org.id,
                        template.as_str(),
                        event.cause(),
                        rfc3339(at)
                    );
                    work.email(org, template.as_str(), at, key, lifecycle_payload(org, at));
                }
                Effect::SettleOverdue => {
                    billing::settle_overdue(work.stored_invoices().await?, &org.id, at).await?;
                }
                Effect::Purge => {
                    org.canceled_at = Some(at);
                    storage::usage::purge_org(work.txn, &org.id).await?;
                    // Other systems purge theirs on the `org.canceled` webhook event.
                }
            }
        }
        Ok(())
    }

    async fn execute(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        command: &Command,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let simple = |event| Some(event);
        let event = match command {
            Command::EndTrial => {
                let provisional = if org.lifecycle.payment_method {
                    Charge::Pending
                } else {
                    Charge::NoCard
                };
                decide(
                    &org.lifecycle,
                    Event::EndTrial {
                        charge: provisional,
                    },
                    at,
                    self.rules.timers,
                )?;
                let charge = self.conversion_charge(work, org, at).await?;
                simple(Event::EndTrial { charge })
            }
            Command::AddPaymentMethod => {
                let event = Event::AddPaymentMethod {
                    charge: Charge::Pending,
                };
                decide(&org.lifecycle, event, at, self.rules.timers)?;
                let converts = org.lifecycle.status == Status::Locked
                    && org.lifecycle.reasons.contains(LockReason::TrialExpired);
                org.lifecycle.payment_method = true;
                let charge = if converts {
                    self.conversion_charge(work, org, at).await?
                } else {
                    Charge::Pending
                };
                simple(Event::AddPaymentMethod { charge })
            }
            Command::RetryOverdue => {
                self.retry_overdue(work, org, actor, at).await?;
                None
            }
            Command::Lock => simple(Event::Lock),
            Command::Unlock { reason } => simple(Event::Unlock { reason: *reason }),
            Command::ExtendTrial { days } => simple(Event::ExtendTrial {
                days: positive(*days)?,
            }),
            Command::ExtendGrace { days } => simple(Event::ExtendGrace {
                days: positive(*days)?,
            }),
            Command::PostponeCancel { days } => simple(Event::PostponeCancel {
                days: positive(*days)?,
            }),
            Command::MarkPaid => {
                decide(&org.lifecycle, Event::MarkPaid, at, self.rules.timers)?;
                for invoice in billing::overdue(work.stored_invoices().await?, &org.id).await? {
                    work.payment(org, invoice.id, true, "manual", at);
                }
                simple(Event::MarkPaid)
            }
            Command::Cancel { confirm } => {
                if confirm != "DELETE" {
                    return Err(invalid(
                        "confirm",
                        "cancellation must be confirmed with exactly `DELETE`",
                    ));
                }
                simple(Event::Cancel)
            }
            Command::Plan(change) => {
                self.change_plan(work, org, change, actor, at).await?;
                None
            }
            Command::Transition { to } => {
                if *to == Status::Canceled {
                    return Err(invalid(
                        "to",
                        "use `cancel` with the confirmation `DELETE` to cancel",
                    ));
                }
                let event = command_to_reach(&org.lifecycle, *to, at, self.rules.timers)?;
                let command = match event {
                    Event::Lock => Command::Lock,
                    Event::EndTrial { .. } => Command::EndTrial,
                    Event::MarkPaid => Command::MarkPaid,
                    Event::Unlock { reason } => Command::Unlock { reason },
                    other => {
                        return Err(invalid("to", format!("unsupported edge {}", other.cause())))
                    }
                };
                return Box::pin(self.execute(work, org, &command, actor, at)).await;
            }
        };
        if let Some(event) = event {
            self.apply(work, org, event, actor, at).await?;
        }
        Ok(())
    }

    /// Issues the rest-of-month invoice that converts a trial and charges it.
    async fn conversion_charge(
        &self,
        work: &mut Work<'_>,
        org: &Org,
        at: DateTime<Utc>,
    ) -> Result<Charge> {
        if !org.lifecycle.payment_method {
            return Ok(Charge::NoCard);
        }
        let lines = self
            .rules
            .prices
            .rest_of_period_lines(&org.plan, org.tier, &org.addons, at)?;
        let new = NewInvoice {
            org_id: &org.id,
            key: format!("conversion:{}", rfc3339(at)),
            period: Period::containing(at).label(),
            kind: InvoiceKind::Conversion,
            currency: &org.currency,
            lines,
            issued_at: at,
        };
        let Some(invoice) = self.issue(work, org, new).await? else {
            return Ok(Charge::Pending);
        };
        let charge = self.gateway.charge(org, invoice.id, invoice.total);
        self.settle_charge(work, org, &invoice, charge, "gateway", at)
            .await?;
        Ok(charge)
    }

    /// SPEC section 5's monthly cycle for one org at the 1st `at`: issue the period's
    /// invoice once (its key is unique per org and period) and charge it.
    async fn monthly_cycle(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let period = Period::containing(at);
        org.lifecycle.next_cycle_at = Some(period.end());
        if !org.lifecycle.subscriber || org.lifecycle.status == Status::Canceled {
            org.lifecycle.next_cycle_at = None;
            return Ok(());
        }
        let key = format!("cycle:{}", period.label());
        if work.invoice_exists(&org.id, &key).await? {
            return Ok(());
        }
        let lines = self.cycle_lines(work, org, at).await?;
        let new = NewInvoice {
            org_id: &org.id,
            key,
            period: period.label(),
            kind: InvoiceKind::Cycle,
            currency: &org.currency,
            lines,
            issued_at: at,
        };
        if let Some(invoice) = self.issue(work, org, new).await? {
            let charge = self.gateway.charge(org, invoice.id, invoice.total);
            self.settle_charge(work, org, &invoice, charge, "gateway", at)
                .await?;
            self.apply_charge(work, org, &invoice, charge, &Actor::system(), at)
                .await?;
        }
        Ok(())
    }

    async fn issue(
        &self,
        work: &mut Work<'_>,
        org: &Org,
        new: NewInvoice<'_>,
    ) -> Result<Option<Invoice>> {
        let at = new.issued_at;
        if work.invoice_exists(new.org_id, &new.key).await? {
            return Ok(None);
        }
        let invoice = new.into_invoice(work.invoice_id().await?);
        work.invoices.push(invoice.clone());
        // Known to exist from now on, without a query (it may not be written yet).
        let pair = (invoice.org_id.clone(), invoice.key.clone());
        work.prefetched.keys.insert(pair.clone());
        work.prefetched.invoices.insert(pair);
        work.facts.push(Fact::Invoice {
            at,
            org: org.id.clone(),
            id: invoice.id,
            period: invoice.period.clone(),
            lines: invoice.lines.clone(),
            total: invoice.total,
        });
        let payload = serde_json::json!({
            "org": org.id,
            "invoice": invoice.id,
            "period": invoice.period,
            "currency": invoice.currency,
            "total": invoice.total.to_string(),
            "lines": invoice.lines.iter().map(|l| serde_json::json!({
                "kind": l.kind.as_str(), "description": l.description, "amount": l.amount.to_string()
            })).collect::<Vec<_>>(),
        });
        work.email(
            org,
            "invoice",
            at,
            format!("{}:invoice:{}", org.id, invoice.key),
            payload,
        );
        Ok(Some(invoice))
    }

    /// Stores a charge's outcome on the invoice and as a payment row.
    async fn settle_charge(
        &self,
        work: &mut Work<'_>,
        org: &Org,
        invoice: &Invoice,
        charge: Charge,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let succeeded = match charge {
            Charge::Succeeded => true,
            Charge::Failed => false,
            Charge::Pending | Charge::NoCard => return Ok(()),
        };
        let status = if succeeded {
            InvoiceStatus::Paid
        } else {
            InvoiceStatus::Failed
        };
        work.set_invoice_status(invoice.id, status, at).await?;
        work.payment(org, invoice.id, succeeded, source, at);
        Ok(())
    }

    /// Feeds a known charge outcome to the machine as a payment fact.
    async fn apply_charge(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        invoice: &Invoice,
        charge: Charge,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let event = match charge {
            Charge::Succeeded => Event::PaymentSucceeded {
                conversion: invoice.kind == InvoiceKind::Conversion,
            },
            Charge::Failed => Event::PaymentFailed,
            Charge::Pending | Charge::NoCard => return Ok(()),
        };
        self.apply(work, org, event, actor, at).await
    }

    /// Charges the newest overdue invoice again; a success settles all of them.
    async fn retry_overdue(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        if org.lifecycle.status == Status::Canceled {
            return Ok(());
        }
        let Some(invoice) = billing::overdue(work.stored_invoices().await?, &org.id)
            .await?
            .pop()
        else {
            return Ok(());
        };
        let charge = self.gateway.charge(org, invoice.id, invoice.total);
        self.settle_charge(work, org, &invoice, charge, "gateway", at)
            .await?;
        if charge == Charge::Succeeded {
            self.apply_charge(work, org, &invoice, charge, actor, at)
                .await?;
        }
        Ok(())
    }

    /// Loads an org with its entitlements (read-only).
    ///
    /// # Errors
    /// A storage error.
    pub async fn org(&self, id: &str) -> Result<Option<Org>> {
        // A plain read: on PostgreSQL, `load`'s row lock would make every view a write.
        Ok(match &self.reads {
            Some(reads) => reads.get(id).await?,
            None => orgs::get(&self.db, id).await?,
        })
    }
}

impl Work<'_> {
    /// Reads, for the orgs of a batch whose monthly cycle is due, whether that cycle's
    /// invoice exists and the usage totals of the period it bills: two queries in all.
    async fn prefetch_cycles(&mut self, orgs: &[Org], until: DateTime<Utc>) -> Result<()> {
        let mut ids: Vec<&str> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut periods: Vec<Period> = Vec::new();
        for org in orgs {
            let Some(at) = org.lifecycle.next_cycle_at.filter(|at| *at <= until) else {
                continue;
            };
            let period = Period::containing(at);
            ids.push(&org.id);
            keys.push(format!("cycle:{}", period.label()));
            periods.push(period.previous());
        }
        if ids.is_empty() {
            return Ok(());
        }
        // Each due cycle issues one invoice: reserve their ids in one go.
        self.invoice_hint = ids.len();
        keys.sort_unstable();
        keys.dedup();
        periods.sort_unstable();
        periods.dedup();
        for (org, key) in billing::existing_keys(self.txn, &ids, &keys).await? {
            self.prefetched.invoices.insert((org, key));
        }
        for org in orgs {
            if let Some(at) = org.lifecycle.next_cycle_at.filter(|at| *at <= until) {
                let period = Period::containing(at);
                self.prefetched
                    .keys
                    .insert((org.id.clone(), format!("cycle:{}", period.label())));
                self.prefetched.usage.insert(
                    (org.id.clone(), period.previous().label()),
                    domain::usage::Usage::default(),
                );
            }
        }
        let labels: Vec<String> = periods.iter().copied().map(Period::label).collect();
        for ((org, period), projects) in
            storage::usage::projects_of(self.txn, &ids, &labels).await?
        {
            if let Some(total) = self.prefetched.usage.get_mut(&(org, period)) {
                for usage in projects.values() {
                    total.mau += usage.mau;
                    total.data_points += usage.data_points;
                }
            }
        }
        Ok(())
    }

    /// Whether the org has an invoice with this key (from the prefetch when it covers it).
    async fn invoice_exists(&mut self, org: &str, key: &str) -> Result<bool> {
        let pair = (org.to_owned(), key.to_owned());
        if self.prefetched.keys.contains(&pair) {
            return Ok(self.prefetched.invoices.contains(&pair));
        }
        Ok(billing::exists(self.txn, org, key).await?)
    }

    /// A new invoice's id, from a block reserved for the transaction.
    async fn invoice_id(&mut self) -> Result<i64> {
        if self.invoice_ids.is_empty() {
            let ids =
                billing::reserve_ids(self.txn, self.invoice_hint, self.last_invoice_id).await?;
            self.invoice_ids.extend(ids);
        }
        let id = self
            .invoice_ids
            .pop_front()
            .ok_or_else(|| sea_orm::DbErr::Custom("no invoice id reserved".to_owned()))?;
        self.last_invoice_id = Some(id);
        Ok(id)
    }

    /// Writes the invoices issued so far in this transaction.
    async fn flush_invoices(&mut self) -> Result<()> {
        if !self.invoices.is_empty() {
            billing::insert_many(self.txn, &self.invoices).await?;
            self.invoices.clear();
        }
        Ok(())
    }

    /// The transaction, for a read or write of stored invoices: the invoices issued in it
    /// so far are written first, so that it sees them.
    pub(crate) async fn stored_invoices(&mut self) -> Result<&DatabaseTransaction> {
        self.flush_invoices().await?;
        Ok(self.txn)
    }

    /// Sets an invoice's status, in the buffer if it was issued in this transaction.
    async fn set_invoice_status(
        &mut self,
        id: i64,
        status: InvoiceStatus,
        at: DateTime<Utc>,
    ) -> Result<()> {
        // Usually the invoice just issued: search from the newest.
        if let Some(invoice) = self.invoices.iter_mut().rev().find(|i| i.id == id) {
            invoice.status = status;
            invoice.paid_at = (status == InvoiceStatus::Paid).then_some(at);
            return Ok(());
        }
        Ok(billing::set_status(self.txn, id, status, at).await?)
    }

    /// The org's usage in a period (from the prefetch when it covers it).
    async fn usage_total(&mut self, org: &str, period: Period) -> Result<domain::usage::Usage> {
        if let Some(total) = self.prefetched.usage.get(&(org.to_owned(), period.label())) {
            return Ok(*total);
        }
        Ok(storage::usage::total(self.txn, org, period).await?)
    }

    /// Stores a payment outcome (with the batch, see `flush`) and reports it.
    fn payment(
        &mut self,
        org: &Org,
        invoice: i64,
        succeeded: bool,
        source: &str,
        at: DateTime<Utc>,
    ) {
        self.payments.push(billing::NewPayment {
            invoice_id: invoice,
            org_id: org.id.clone(),
            succeeded,
            source: source.to_owned(),
            at,
            recorded_at: self.recorded_at,
        });
        self.facts.push(Fact::Payment {
            at,
            org: org.id.clone(),
            invoice,
            succeeded,
        });
    }

    fn record(
        &mut self,
        org: &Org,
        from: Option<Status>,
        cause: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) {
        let l = &org.lifecycle;
        self.transitions.push(TransitionRecord {
            org_id: org.id.clone(),
            from,
            to: l.status,
            cause: cause.to_owned(),
            reasons: l.reasons,
            actor: actor.name.clone(),
            reason: actor.reason.clone(),
            at,
            recorded_at: self.recorded_at,
        });
        self.facts.push(Fact::Transition {
            at,
            org: org.id.clone(),
            from,
            to: l.status,
            cause: cause.to_owned(),
            reasons: l.reasons,
            actor: actor.name.clone(),
        });
    }
}

/// The webhook events of a fact: `(event type, dedupe key, body)`. Emails are not
/// lifecycle events; a transition to canceled is also `org.canceled`.
fn webhook_events(fact: &Fact) -> Vec<(&'static str, String, serde_json::Value)> {
    let at = fact.at().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let org = fact.org();
    let with_event = |event: &str| {
        let mut body = fact.to_json();
        body["event"] = event.into();
        body
    };
    match fact {
        Fact::Email { .. } => Vec::new(),
        Fact::Transition {
            cause, to, reasons, ..
        } => {
            let key = format!("{org}:transition:{cause}:{at}:{to}:{reasons}");
            let mut events = vec![("org.transition", key, with_event("org.transition"))];
            if *to == Status::Canceled {
                events.push((
                    "org.canceled",
                    format!("{org}:canceled"),
                    with_event("org.canceled"),
                ));
            }
            events
        }
        Fact::Invoice { id, .. } => vec![(
            "invoice.issued",
            format!("{org}:invoice:{id}"),
            with_event("invoice.issued"),
        )],
        Fact::Payment {
            invoice, succeeded, ..
        } => {
            let key = format!("{org}:payment:{invoice}:{succeeded}:{at}");
            vec![("payment", key, with_event("payment"))]
        }
        Fact::Plan { change, tier, .. } => {
            let key = format!("{org}:plan:{change}:{tier}:{at}");
            vec![("org.plan", key, with_event("org.plan"))]
        }
        Fact::Alert { threshold, .. } => {
            let key = format!("{org}:alert:{threshold}:{at}");
            vec![("org.alert", key, with_event("org.alert"))]
        }
    }
}

fn drop_deadline(lifecycle: &mut Lifecycle, deadline: Deadline) {
    match deadline {
        Deadline::TrialEnd => lifecycle.trial_ends_at = None,
        Deadline::GraceEnd => lifecycle.grace_ends_at = None,
        Deadline::Cancel => lifecycle.cancel_at = None,
        Deadline::MonthlyCycle => lifecycle.next_cycle_at = None,
        Deadline::Reminder => lifecycle.reminder_at = None,
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

fn positive(days: u32) -> Result<u32> {
    if (1..=3650).contains(&days) {
        Ok(days)
    } else {
        Err(invalid("days", format!("{days} is out of range 1..=3650")))
    }
}

fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "id",
            format!("`{id}` must be 1 to 64 letters, digits, `-`, `_` or `.`"),
        ))
    }
}

fn looks_like_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty() && host.contains('.') && !s.contains(char::is_whitespace)
    })
}

/// What `acctd admin show` and the API report about an org.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub org: Org,
    pub entitlements: domain::entitlement::Entitlements,
    /// Usage above 100 % of the tier in the current period.
    pub upgrade_prompt: bool,
    pub legal_moves: Vec<String>,
}

/// What an org may use now: `GET …/entitlements`, one primary-key read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub org: Org,
    pub entitlements: domain::entitlement::Entitlements,
    /// Usage above 100 % of the tier in the current period.
    pub upgrade_prompt: bool,
}

impl Engine {
    /// The org with its derived entitlements (no legal moves: see [`Engine::view`]).
    ///
    /// # Errors
    /// [`Error::UnknownOrg`]; a storage error.
    pub async fn access(&self, id: &str) -> Result<Access> {
        let org = self
            .org(id)
            .await?
            .ok_or_else(|| Error::UnknownOrg(id.to_owned()))?;
        let l = &org.lifecycle;
        let now = Period::containing(self.clock.now());
        Ok(Access {
            entitlements: self.rules.entitlements.of(l.status, l.reasons),
            upgrade_prompt: l.status != Status::Canceled
                && org
                    .usage
                    .is_some_and(|(p, mau)| p == now && domain::usage::above(mau, org.tier, 100)),
            org,
        })
    }

    /// The org with its derived entitlements and legal moves.
    ///
    /// # Errors
    /// [`Error::UnknownOrg`]; a storage error.
    pub async fn view(&self, id: &str) -> Result<View> {
        let access = self.access(id).await?;
        Ok(View {
            legal_moves: domain::legal_moves(
                &access.org.lifecycle,
                self.clock.now(),
                self.rules.timers,
            ),
            org: access.org,
            entitlements: access.entitlements,
            upgrade_prompt: access.upgrade_prompt,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::BatchSizer;

    #[test]
    fn batches_grow_while_fast_and_shrink_when_slow_within_their_bounds() {
        let sizer = BatchSizer::new(500, 3_000, Duration::from_millis(250));
        assert_eq!(sizer.next(), 500);
        // Full and fast: doubles, up to the maximum.
        for want in [1_000, 2_000, 3_000, 3_000] {
            sizer.record(sizer.next(), sizer.next(), Duration::from_millis(50));
            assert_eq!(sizer.next(), want);
        }
        // Between half the target and the target: stays.
        sizer.record(3_000, 3_000, Duration::from_millis(200));
        assert_eq!(sizer.next(), 3_000);
        // Not full (nothing more was due): stays, however fast.
        sizer.record(3_000, 10, Duration::from_millis(1));
        assert_eq!(sizer.next(), 3_000);
        // Slow: halves, down to the minimum.
        for want in [1_500, 750, 500, 500] {
            sizer.record(sizer.next(), sizer.next(), Duration::from_millis(400));
            assert_eq!(sizer.next(), want);
        }
    }
}
