//! Usage reports through the engine (SPEC section 4): absolute totals per (org, project,
//! period), overage alerts once per threshold and period, and the overage lock.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;

use super::{Actor, Engine, Fact, Report, Result, Work};
use crate::domain::period::Period;
use crate::domain::usage::{self, Usage};
use crate::domain::{Event, LockReason, Org, Status};
use crate::storage::usage::{NewAlert, ProjectTotals};
use crate::storage::{self, org as orgs};

/// One report: absolute totals for (org, project, period).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageReport {
    pub org: String,
    pub project: String,
    /// `YYYY-MM`.
    pub period: String,
    pub mau: u64,
    pub data_points: u64,
    /// Allows a total lower than the one reported before.
    pub correction: bool,
}

/// What became of one report of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused(String),
}

/// The per-item outcomes of a batch and what the accepted items caused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    pub outcomes: Vec<Outcome>,
    /// Where each item's facts start in `report.facts` (facts before the first item's
    /// start are deadlines the batch caught up on first).
    pub starts: Vec<usize>,
    pub report: Report,
}

impl Ingested {
    pub fn accepted(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| **o == Outcome::Accepted)
            .count()
    }
}

/// Items per transaction.
const CHUNK: usize = 2_000;

/// What one chunk of reports reads before applying its items, one query each, and the
/// writes it collects to make in bulk at its end.
#[derive(Default)]
struct Batch {
    /// The chunk's orgs that exist, caught up on their deadlines.
    orgs: BTreeMap<String, Org>,
    /// The same orgs as read (so that only what changed is written).
    read: BTreeMap<String, orgs::Written>,
    /// (org, period) pairs already invoiced.
    closed: HashSet<(String, String)>,
    /// Stored and accepted project totals by (org, period), then project.
    projects: BTreeMap<(String, String), BTreeMap<String, Usage>>,
    /// (org, period, threshold) alerts recorded before or during the chunk.
    alerted: HashSet<(String, String, u32)>,
    /// Project totals to write, the last accepted report of each project winning.
    dirty: BTreeMap<(String, String, String), ProjectTotals>,
    alerts: Vec<NewAlert>,
}

impl Engine {
    /// Applies a batch of usage reports at the clock's instant. A refused item stores
    /// nothing of itself and does not stop the others; each chunk of items commits
    /// atomically with the alerts, notifications and lock transitions it causes.
    ///
    /// Items apply in order, exactly as if one at a time; a chunk reads its orgs, closed
    /// periods, stored totals and alerts with one query each (orgs locked on PostgreSQL),
    /// and writes its totals, alerts, orgs, audit rows and outbox rows in bulk.
    ///
    /// # Errors
    /// A storage error (the chunk in flight is rolled back; earlier chunks stay).
    pub async fn report_usage(&self, reports: &[UsageReport], actor: &Actor) -> Result<Ingested> {
        self.ingest_all(reports, std::slice::from_ref(actor)).await
    }

    /// [`Engine::report_usage`] with one actor per report (`actors[i]` reported
    /// `reports[i]`), e.g. a simulation's steps of one instant.
    ///
    /// # Errors
    /// As [`Engine::report_usage`]; [`Error::Invalid`] when the lengths differ.
    pub async fn report_usage_by(
        &self,
        reports: &[UsageReport],
        actors: &[Actor],
    ) -> Result<Ingested> {
        if actors.len() != reports.len() {
            return Err(super::invalid(
                "actors",
                format!("{} actors for {} reports", actors.len(), reports.len()),
            ));
        }
        self.ingest_all(reports, actors).await
    }

    /// `actors` has one actor for all reports, or one per report.
    async fn ingest_all(&self, reports: &[UsageReport], actors: &[Actor]) -> Result<Ingested> {
        let at = self.clock.now();
        let mut ingested = Ingested::default();
        ingested.outcomes.reserve(reports.len());
        ingested.starts.reserve(reports.len());
        for (c, chunk) in reports.chunks(CHUNK).enumerate() {
            let txn = self.db.begin().await?;
            storage::lock_writes(&txn).await?;
            let mut work = Work::new(&txn, at);
            let mut batch = self.read_batch(&mut work, chunk, at).await?;
            for (i, item) in chunk.iter().enumerate() {
                let actor = if actors.len() == 1 {
                    &actors[0]
                } else {
                    &actors[c * CHUNK + i]
                };
                ingested
                    .starts
                    .push(ingested.report.facts.len() + work.facts.len());
                let outcome = self.ingest(&mut work, &mut batch, item, actor, at).await?;
                ingested.outcomes.push(outcome);
            }
            let totals: Vec<ProjectTotals> = batch.dirty.into_values().collect();
            storage::usage::upsert_many(&txn, &totals, at).await?;
            storage::usage::insert_alerts(&txn, &batch.alerts).await?;
            let mut loaded: Vec<Org> = batch.orgs.into_values().collect();
            let read: Vec<orgs::Written> = batch.read.into_values().collect();
            orgs::update_many(&txn, &mut loaded, &read, at).await?;
            work.flush(&self.rules.webhooks).await?;
            ingested.report.facts.extend(work.into_facts());
            txn.commit().await?;
        }
        Ok(ingested)
    }

    /// Loads what a chunk's items refer to and catches its orgs up on their deadlines
    /// (which may close a period, so the rest is read after).
    async fn read_batch(
        &self,
        work: &mut Work<'_>,
        chunk: &[UsageReport],
        at: DateTime<Utc>,
    ) -> Result<Batch> {
        let mut ids: Vec<&str> = chunk.iter().map(|r| r.org.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut batch = Batch::default();
        for mut org in orgs::load_many(work.txn, &ids).await? {
            batch.read.insert(org.id.clone(), orgs::Written::of(&org));
            self.advance(work, &mut org, at).await?;
            batch.orgs.insert(org.id.clone(), org);
        }
        let ids: Vec<&str> = batch.orgs.keys().map(String::as_str).collect();
        let mut periods: Vec<Period> = chunk
            .iter()
            .filter_map(|r| Period::parse(&r.period))
            .collect();
        periods.sort_unstable();
        periods.dedup();
        if ids.is_empty() || periods.is_empty() {
            return Ok(batch);
        }
        let labels: Vec<String> = periods.iter().copied().map(Period::label).collect();
        // Catching up may have issued invoices that close a period.
        batch.closed =
            storage::usage::closed_of(work.stored_invoices().await?, &ids, &periods).await?;
        batch.projects = storage::usage::projects_of(work.txn, &ids, &labels).await?;
        batch.alerted = storage::usage::alerted_of(work.txn, &ids, &labels).await?;
        Ok(batch)
    }

    async fn ingest(
        &self,
        work: &mut Work<'_>,
        batch: &mut Batch,
        item: &UsageReport,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Outcome> {
        let refuse = |why: String| Ok(Outcome::Refused(why));
        let Some(period) = Period::parse(&item.period) else {
            return refuse(format!(
                "malformed period `{}`, expected YYYY-MM",
                item.period
            ));
        };
        if item.project.trim().is_empty() {
            return refuse("project must not be empty".to_owned());
        }
        let Some(org) = batch.orgs.get_mut(&item.org) else {
            return refuse(format!("unknown org `{}`", item.org));
        };
        if let Err(e) = self.check_scope(org) {
            return refuse(e.to_string());
        }
        if org.lifecycle.status == Status::Canceled {
            return refuse(format!("org `{}` is canceled", org.id));
        }
        if period > Period::containing(at) {
            return refuse(format!("period {} is in the future", period.label()));
        }
        let label = period.label();
        let key = (org.id.clone(), label);
        if batch.closed.contains(&key) {
            return refuse(format!("period {} is already invoiced", period.label()));
        }
        let new = Usage {
            mau: item.mau,
            data_points: item.data_points,
        };
        let projects = batch.projects.entry(key).or_default();
        if let Some(old) = projects.get(&item.project) {
            let mut lower = Vec::new();
            if new.mau < old.mau {
                lower.push(format!("mau {} < {}", new.mau, old.mau));
            }
            if new.data_points < old.data_points {
                lower.push(format!(
                    "data points {} < {}",
                    new.data_points, old.data_points
                ));
            }
            if !item.correction && !lower.is_empty() {
                return refuse(format!(
                    "totals are lower than reported before for project `{}` in {} ({}); send it as a correction",
                    item.project,
                    period.label(),
                    lower.join(", ")
                ));
            }
        }
        projects.insert(item.project.clone(), new);
        let total = projects.values().fold(Usage::default(), |acc, u| Usage {
            mau: acc.mau + u.mau,
            data_points: acc.data_points + u.data_points,
        });
        batch.dirty.insert(
            (org.id.clone(), period.label(), item.project.clone()),
            ProjectTotals {
                org_id: org.id.clone(),
                period,
                project: item.project.clone(),
                usage: new,
            },
        );
        let allowance = self.rules.prices.plan(&org.plan)?.data_points_per_mau;
        let usage_mau = total.usage_mau(allowance);
        if org.usage.is_none_or(|(p, _)| p <= period) {
            org.usage = Some((period, usage_mau));
        }
        self.alert(
            work,
            &mut batch.alerted,
            &mut batch.alerts,
            org,
            period,
            usage_mau,
            at,
        );
        if usage::above(usage_mau, org.tier, self.rules.lock_above_percent) {
            if !org.lifecycle.reasons.contains(LockReason::Overage)
                || org.lifecycle.status != Status::Locked
            {
                org.overage_lock_mau = Some(usage_mau);
            } else {
                org.overage_lock_mau = Some(org.overage_lock_mau.unwrap_or(0).max(usage_mau));
            }
            self.apply(work, org, Event::UsageExceeded, actor, at)
                .await?;
        }
        Ok(Outcome::Accepted)
    }

    /// Records the thresholds this usage reaches for the first time in the period, and
    /// sends one email naming the highest.
    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        work: &mut Work<'_>,
        alerted: &mut HashSet<(String, String, u32)>,
        alerts: &mut Vec<NewAlert>,
        org: &Org,
        period: Period,
        usage_mau: u64,
        at: DateTime<Utc>,
    ) {
        let mut new: Vec<u32> = Vec::new();
        let mut percent = None;
        for threshold in self.rules.alert_thresholds.iter().copied() {
            if !usage::reached(usage_mau, org.tier, threshold) {
                continue;
            }
            let key = (org.id.clone(), period.label(), threshold);
            if alerted.contains(&key) {
                continue;
            }
            alerted.insert(key);
            let percent = percent
                .get_or_insert_with(|| format!("{:.2}", usage::percent(usage_mau, org.tier)));
            alerts.push(NewAlert {
                org_id: org.id.clone(),
                period,
                threshold,
                usage_mau,
                usage_percent: percent.clone(),
                at,
            });
            new.push(threshold);
        }
        let (Some(highest), Some(percent)) = (new.iter().max().copied(), percent) else {
            return;
        };
        for threshold in &new {
            work.facts.push(Fact::Alert {
                at,
                org: org.id.clone(),
                threshold: *threshold,
                usage_percent: percent.clone(),
            });
        }
        let hint = self
            .rules
            .prices
            .tiers
            .iter()
            .copied()
            .find(|tier| u64::from(*tier) >= usage_mau)
            .map_or_else(
                || "contact sales about the Enterprise plan".to_owned(),
                |tier| format!("upgrade to the {tier} MAU tier"),
            );
        let payload = serde_json::json!({
            "org": org.id,
            "period": period.label(),
            "threshold": highest,
            "usage_mau": usage_mau,
            "usage_percent": percent,
            "tier": org.tier,
            "plan": org.plan,
            "upgrade_hint": hint,
        });
        let key = format!("{}:overage_alert:{}:{highest}", org.id, period.label());
        work.email(org, "overage_alert", at, key, payload);
    }

    /// SPEC section 3's lift rule for an upgrade of `org` to `new_tier`.
    pub fn upgrade_lifts_overage(&self, org: &Org, new_tier: u32) -> bool {
        let now = Period::containing(self.clock.now());
        let usage_now = org
            .usage
            .filter(|(p, _)| *p == now)
            .map_or(0, |(_, mau)| mau);
        usage::upgrade_lifts_overage(
            new_tier,
            usage_now,
            org.overage_lock_mau.unwrap_or(0),
            self.rules.lock_above_percent,
        )
    }
}

impl Engine {
    /// Deletes usage older than each plan's retention (SPEC section 7): a period is kept
    /// while any of it lies within `retention_days` of now. Runs daily in the daemon.
    ///
    /// # Errors
    /// A storage error.
    pub async fn purge_retention(&self, retention: &[(String, u32)]) -> Result<u64> {
        let now = self.clock.now();
        let day = now.format("%Y-%m-%d").to_string();
        if !storage::claim_job(&self.db, "retention", &day, now).await? {
            // Another replica ran today's purge.
            return Ok(0);
        }
        let mut purged = 0;
        for (plan, days) in retention {
            let horizon = now - chrono::Duration::days(i64::from(*days));
            // Periods that ended before the horizon: those before the horizon's period.
            let cutoff = Period::containing(horizon);
            purged += storage::usage::purge_before(&self.db, plan, cutoff).await?;
        }
        if purged > 0 {
            tracing::info!(purged, "usage retention purge");
        }
        Ok(purged)
    }
}
