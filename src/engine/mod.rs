//! The one code path. The daemon's scheduler, the CLI, the simulator and the tests all call
//! these methods: load due orgs (or the org a command names), run the machine at each
//! event's effective instant, and persist the new state with its audit rows, invoices and
//! outbox messages in one transaction.
//!
//! **Architecture Invariant:** the engine never reads the system clock; "now" comes from
//! the injected [`Clock`]. A deadline takes effect at its own instant even when processed
//! late, and the deadlines it chains are computed from that instant.

pub mod forecast;
pub mod gateway;
mod ops;
mod read;
pub mod test_clock;
pub mod usage;
pub mod whatif;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction};

use crate::clock::Clock;
pub use crate::domain::fact::{Fact, Report};
use crate::domain::period::{next_first_after, Period};
pub use crate::domain::plan::{Command, PlanChange, Rules};
use crate::domain::plan::{Plan, Planner, Rejection, Step};
use crate::domain::price::PriceError;
pub use crate::domain::record::Actor;
use crate::domain::{self, Lifecycle, Org, Refusal, Status};
use crate::storage::snapshot::{self, Window};
use crate::storage::{self, billing, org as orgs};
use crate::telemetry::metrics::Metrics;
pub use forecast::{Forecast, Payments};
pub use gateway::{ExternalGateway, PaymentGateway, ScriptedGateway};
pub use read::{Access, Readiness, Stats, View};

/// Why an engine call did nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown org `{0}`")]
    UnknownOrg(String),
    #[error("unknown invoice {0}")]
    UnknownInvoice(i64),
    #[error("org `{0}` exists already")]
    Exists(String),
    /// A payment outcome for an invoice that is paid or voided already.
    #[error("{0}")]
    Settled(String),
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

impl From<Rejection> for Error {
    fn from(e: Rejection) -> Self {
        match e {
            Rejection::Invalid { field, message } => Error::Invalid { field, message },
            Rejection::Refused(refusal) => Error::Refused(refusal),
            Rejection::Price(e) => Error::Price(e),
            Rejection::UnknownInvoice(id) => Error::UnknownInvoice(id),
            settled @ Rejection::Settled { .. } => Error::Settled(settled.to_string()),
            Rejection::Incomplete(what) => Error::Storage(storage::Error::Db(
                sea_orm::DbErr::Custom(format!("the planner's snapshot lacks {what}")),
            )),
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::Storage(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// Plans and writes as usual, then rolls back ([`Engine::preview`]).
    preview: bool,
    /// Where committed transitions are counted ([`Engine::with_metrics`]).
    metrics: Metrics,
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
    /// In a catch-up pass, the rowid of the last org claimed.
    pub last_rowid: Option<i64>,
    /// How long the batch took, claim to commit.
    pub took: std::time::Duration,
    /// How long the oldest deadline claimed had passed at `until`.
    pub lag: Option<std::time::Duration>,
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
            preview: false,
            metrics: Metrics::default(),
        }
    }

    /// The same engine, counting what it commits (and its sweeps) in `metrics`.
    #[must_use]
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Where this engine counts what it commits.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The same engine in preview mode (`--dry-run`, `?dry_run=true`): each call reads,
    /// plans and writes exactly as it would, reports the same facts (or the same refusal),
    /// and then rolls its transaction back. Nothing stays: no row, no version, no outbox
    /// message; invoice ids are read ahead instead of reserved, so a preview followed by
    /// the call (with no other writer between) reports the same ids.
    #[must_use]
    pub fn preview(&self) -> Self {
        Self {
            preview: true,
            ..self.clone()
        }
    }

    /// Whether this engine previews ([`Engine::preview`]).
    pub fn is_preview(&self) -> bool {
        self.preview
    }

    /// Commits a call's transaction, or rolls it back in preview mode.
    async fn settle(&self, txn: DatabaseTransaction) -> std::result::Result<(), sea_orm::DbErr> {
        if self.preview {
            txn.rollback().await
        } else {
            txn.commit().await
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
        Ok(domain::plan::check_clock(org, self.scope.as_deref())?)
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
    /// the orgs due at `until`, earliest deadline first, reads their snapshot, plans
    /// each org's deadlines and writes the plan.
    ///
    /// # Errors
    /// A storage error; the batch is rolled back.
    pub async fn sweep_batch(&self, until: DateTime<Utc>, report: &mut Report) -> Result<Swept> {
        self.batch(until, report, None).await
    }

    /// `acctd tick --catch-up`: sweeps a large backlog at `until` in table order. On
    /// `SQLite` it drops `idx_orgs_due`, claims the real clock's due orgs by ranges of rowids
    /// (each table page is then written about once, where earliest-deadline-first batches
    /// write pages all over a large backlog), builds the index again, and sweeps whatever
    /// is left as [`Engine::sweep`] does. An operator's repair tool, never run by `serve`:
    /// a pass cut short leaves the index dropped (a daemon then claims by table scans)
    /// until the next catch-up builds it again. On `PostgreSQL` and test clocks it is
    /// [`Engine::sweep`].
    ///
    /// # Errors
    /// A storage error from the batch that failed (the batches before it stay committed).
    pub async fn catch_up(
        &self,
        until: DateTime<Utc>,
        mut each: impl FnMut(Swept, Report) -> std::ops::ControlFlow<()>,
    ) -> Result<u64> {
        if self.db.get_database_backend() != sea_orm::DbBackend::Sqlite || self.scope.is_some() {
            return self.sweep(until, each).await;
        }
        orgs::drop_due_index(&self.db).await?;
        let mut claimed = 0;
        let mut after = Some(0);
        while let Some(from) = after {
            let mut batch = Report::default();
            let swept = match self.batch(until, &mut batch, Some(from)).await {
                Ok(swept) => swept,
                Err(e) => {
                    orgs::ensure_due_index(&self.db).await?;
                    return Err(e);
                }
            };
            claimed += swept.claimed;
            after = swept.last_rowid.filter(|_| swept.more);
            if each(swept, batch).is_break() {
                orgs::ensure_due_index(&self.db).await?;
                return Ok(claimed);
            }
        }
        orgs::ensure_due_index(&self.db).await?;
        Ok(claimed + self.sweep(until, each).await?)
    }

    /// One batch of a sweep ([`Engine::sweep_batch`]) or, with `after`, of a catch-up pass
    /// ([`Engine::catch_up`]: the due orgs after that rowid, in rowid order).
    async fn batch(
        &self,
        until: DateTime<Utc>,
        report: &mut Report,
        after: Option<i64>,
    ) -> Result<Swept> {
        let limit = self.sizer.next();
        // Where a batch's time goes, for `log.level = "acctd=debug"`.
        let t0 = std::time::Instant::now();
        let txn = storage::begin_write(&self.db).await?;
        let (mut due, last_rowid) = match after {
            None => (
                orgs::claim_due(&txn, until, limit, self.scope.as_deref()).await?,
                None,
            ),
            Some(after) => {
                let found = orgs::claim_due_by_rowid(&txn, until, after, limit).await?;
                let last = found.last().map(|(rowid, _)| *rowid);
                (found.into_iter().map(|(_, org)| org).collect(), last)
            }
        };
        let claimed = due.len() as u64;
        let lag = due
            .iter()
            .filter_map(|org| org.lifecycle.next_due_at())
            .min()
            .and_then(|oldest| (until - oldest).to_std().ok());
        let read: Vec<orgs::Written> = due.iter().map(orgs::Written::of).collect();
        let mut planner = self
            .planner(&txn, &due, until, 0, None, Reported::default())
            .await?;
        let t1 = t0.elapsed();
        for org in &mut due {
            let step = planner.advance(org, until);
            self.drive(&mut planner, org, step)?;
        }
        let plan = planner.finish();
        let t2 = t0.elapsed();
        orgs::update_many(&txn, &mut due, &read, self.clock.now()).await?;
        storage::write(&txn, &plan, self.clock.now()).await?;
        let t3 = t0.elapsed();
        self.settle(txn).await?;
        let t4 = t0.elapsed();
        self.sizer.record(limit, claimed, t4);
        tracing::debug!(
            claimed,
            limit,
            catch_up = after.is_some(),
            read_ms = t1.as_secs_f64() * 1e3,
            plan_ms = t2.saturating_sub(t1).as_secs_f64() * 1e3,
            write_ms = t3.saturating_sub(t2).as_secs_f64() * 1e3,
            commit_ms = t4.saturating_sub(t3).as_secs_f64() * 1e3,
            "sweep batch"
        );
        report.extend(self.committed(plan, None));
        Ok(Swept {
            claimed,
            more: claimed >= limit,
            last_rowid,
            took: t4,
            lag,
        })
    }

    /// A planner over the snapshot of `orgs` for a transaction that decides up to
    /// `until`: their deadlines, `ids` invoices more than those may issue, what a usage
    /// batch `reported`, and `invoice` (a payment outcome's).
    async fn planner(
        &self,
        txn: &DatabaseTransaction,
        orgs: &[Org],
        until: DateTime<Utc>,
        ids: usize,
        invoice: Option<i64>,
        reported: Reported<'_>,
    ) -> Result<Planner<'_>> {
        let snapshot = self
            .snapshot(txn, orgs, until, ids, invoice, reported)
            .await?;
        Ok(Planner::new(&self.rules, snapshot, self.clock.now()).on_clock(self.scope.clone()))
    }

    /// The snapshot a [`Engine::planner`] plans over (see there).
    async fn snapshot(
        &self,
        txn: &DatabaseTransaction,
        orgs: &[Org],
        until: DateTime<Utc>,
        ids: usize,
        invoice: Option<i64>,
        reported: Reported<'_>,
    ) -> Result<domain::plan::Snapshot> {
        // Periods given by the caller are a usage batch's: its alerts are read too.
        let alerts = !reported.periods.is_empty();
        let mut periods = reported.periods;
        let mut from = until;
        let mut ids = ids;
        for org in orgs {
            if let Some(at) = org.lifecycle.next_due_at() {
                from = from.min(at);
            }
            let (billed, issued) = snapshot::billed_by(org, until);
            periods.extend(billed);
            ids += issued;
        }
        let ids_of: Vec<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
        let window = Window {
            orgs: &ids_of,
            from,
            periods,
            projects: reported.projects,
            alerts,
            invoice,
            ids,
            peek: self.preview,
        };
        Ok(snapshot::read(txn, &window).await?)
    }

    /// Carries a planning step through its charges: the gateway decides each, and the
    /// planner plans the outcome and goes on.
    fn drive(
        &self,
        planner: &mut Planner<'_>,
        org: &mut Org,
        step: domain::plan::Result<Step>,
    ) -> Result<()> {
        let mut step = step?;
        while let Step::Charge(request) = step {
            let charge = self.gateway.charge(org, request.invoice, request.amount);
            step = planner.charged(org, request, charge)?;
        }
        Ok(())
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
        check_reason(actor).map_err(|e| (0, e))?;
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
        let txn = storage::begin_write(&self.db)
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
            .map_err(|e| match &e {
                // A concurrent signup of one of these ids committed first (PostgreSQL; SQLite
                // serializes writers, so the read above saw it).
                storage::Error::Db(db)
                    if matches!(
                        db.sql_err(),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ) =>
                {
                    let id = if new.len() == 1 {
                        new[0].id.clone()
                    } else {
                        new.iter()
                            .map(|o| o.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    (0, Error::Exists(id))
                }
                _ => storage_error(e.into()),
            })?;
        let mut planner = Planner::new(&self.rules, domain::plan::Snapshot::default(), at);
        for org in &new {
            planner.signed_up(org, actor, at);
        }
        let plan = planner.finish();
        storage::write(&txn, &plan, at)
            .await
            .map_err(|e| storage_error(e.into()))?;
        self.settle(txn)
            .await
            .map_err(|e| storage_error(e.into()))?;
        let org = if new.len() == 1 { new.pop() } else { None };
        Ok(self.committed(plan, org))
    }

    /// Checks a signup and builds its org at `at`.
    fn prepare_signup(&self, signup: Signup, at: DateTime<Utc>) -> Result<Org> {
        validate_id(&signup.id)?;
        if signup.admins.is_empty() {
            return Err(invalid("admins", "at least one account admin is required"));
        }
        if signup.admins.len() > self.rules.max_admins {
            return Err(invalid(
                "admins",
                format!(
                    "{} account admins; at most {} (notify.max_admins_per_org)",
                    signup.admins.len(),
                    self.rules.max_admins
                ),
            ));
        }
        for admin in &signup.admins {
            one_email_address("admins", admin)?;
        }
        if let Some(billing_email) = &signup.billing_email {
            one_email_address("billing_email", billing_email)?;
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
        check_reason(actor)?;
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
        let txn = storage::begin_write(&self.db).await?;
        let mut org = orgs::load(&txn, org_id)
            .await?
            .ok_or_else(|| Error::UnknownOrg(org_id.to_owned()))?;
        self.check_scope(&org)?;
        let issues = usize::from(matches!(
            command,
            Command::EndTrial
                | Command::AddPaymentMethod
                | Command::Transition { .. }
                | Command::Plan(PlanChange::Upgrade { .. } | PlanChange::AddAddon { .. })
        ));
        let mut planner = self
            .planner(
                &txn,
                std::slice::from_ref(&org),
                at,
                issues,
                None,
                Reported::default(),
            )
            .await?;
        let step = planner.advance(&mut org, at);
        self.drive(&mut planner, &mut org, step)?;
        let step = planner.command(&mut org, command, actor, at);
        self.drive(&mut planner, &mut org, step)?;
        let plan = planner.finish();
        orgs::update(&txn, &mut org, at).await?;
        storage::write(&txn, &plan, at).await?;
        self.settle(txn).await?;
        Ok(self.committed(plan, Some(org)))
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
        check_reason(actor)?;
        let at = self.clock.now();
        let txn = storage::begin_write(&self.db).await?;
        // This read only finds the org. The invoice is checked in the snapshot, read once
        // the org is locked: concurrent outcomes for one invoice wait for each other there
        // (on PostgreSQL; SQLite has one writer), and each sees what the one before did.
        let invoice = billing::find(&txn, invoice_id)
            .await?
            .ok_or(Error::UnknownInvoice(invoice_id))?;
        let mut org = orgs::load(&txn, &invoice.org_id)
            .await?
            .ok_or_else(|| Error::UnknownOrg(invoice.org_id.clone()))?;
        self.check_scope(&org)?;
        let mut planner = self
            .planner(
                &txn,
                std::slice::from_ref(&org),
                at,
                0,
                Some(invoice_id),
                Reported::default(),
            )
            .await?;
        planner.payable(invoice_id)?;
        let step = planner.advance(&mut org, at);
        self.drive(&mut planner, &mut org, step)?;
        planner.payment(&mut org, invoice_id, succeeded, actor, at)?;
        let plan = planner.finish();
        orgs::update(&txn, &mut org, at).await?;
        storage::write(&txn, &plan, at).await?;
        self.settle(txn).await?;
        Ok(self.committed(plan, Some(org)))
    }

    /// What a settled plan reports to the caller: its facts and the org a call acted on
    /// (as it is afterwards). Committed transitions are logged.
    fn committed(&self, plan: Plan, org: Option<Org>) -> Report {
        if self.preview {
            return Report {
                facts: plan.facts,
                org,
            };
        }
        for t in &plan.transitions {
            self.metrics.transition(&t.cause);
        }
        let mut report = committed(plan);
        report.org = org;
        report
    }
}

/// What a committed plan reports to the caller; its transitions are logged.
fn committed(plan: Plan) -> Report {
    for t in &plan.transitions {
        tracing::info!(
            org = %t.org_id, from = ?t.from.map(Status::as_str), to = %t.to, cause = t.cause,
            at = %domain::plan::rfc3339(t.at), "transition"
        );
    }
    Report {
        facts: plan.facts,
        org: None,
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(invalid(
            "id",
            format!("`{id}` must be 1 to 64 letters, digits, `-`, `_` or `.`"),
        ));
    }
    // `.` and `..` are path segments: `/v1/orgs/..` would never reach the org.
    if id == "." || id == ".." {
        return Err(invalid("id", format!("`{id}` is not a usable id")));
    }
    Ok(())
}

/// The longest email address accepted (RFC 5321's limit on a forward path).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Refuses anything but one bare address (`user@host`) of at most [`MAX_EMAIL_BYTES`], as
/// lettre parses it (`notify::address::recipient`): a list (`a@b.co,evil@x.co`), a
/// display name or angle brackets (`Eve <evil@x.co>`) and surrounding spaces are refused
/// rather than cleaned up, since the address is stored and later put into a message's
/// recipients as it is.
fn one_email_address(field: &'static str, text: &str) -> Result<()> {
    use crate::notify::address::{recipient, AddressError};
    let reason = if text.len() > MAX_EMAIL_BYTES {
        format!(": longer than {MAX_EMAIL_BYTES} bytes")
    } else {
        match recipient(text) {
            Ok(()) => return Ok(()),
            Err(AddressError::Invalid) => String::new(),
            Err(e) => format!(": {e}"),
        }
    };
    Err(invalid(
        field,
        format!("`{text}` is not one email address{reason}"),
    ))
}

/// The longest reason accepted for the audit trail, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;

/// Refuses a reason longer than [`MAX_REASON_CHARS`].
fn check_reason(actor: &Actor) -> Result<()> {
    match &actor.reason {
        Some(reason) if reason.chars().count() > MAX_REASON_CHARS => Err(invalid(
            "reason",
            format!(
                "{} characters; at most {MAX_REASON_CHARS}",
                reason.chars().count()
            ),
        )),
        _ => Ok(()),
    }
}

/// What a usage batch reads beyond its orgs' deadlines: the periods it reports (with
/// their alerts) and the projects it names. Empty for every other transaction.
#[derive(Debug, Default)]
struct Reported<'a> {
    periods: Vec<Period>,
    projects: Vec<(&'a str, Period, &'a str)>,
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
