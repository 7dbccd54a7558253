//! Usage reports through the engine (SPEC section 4): absolute totals per (org, project,
//! period), overage alerts once per threshold and period, and the overage lock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;

use super::{Actor, Engine, Fact, Report, Result, Work};
use crate::domain::period::Period;
use crate::domain::usage::{self, Usage};
use crate::domain::{Event, LockReason, Org, Status};
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
const CHUNK: usize = 1_000;

impl Engine {
    /// Applies a batch of usage reports at the clock's instant. A refused item stores
    /// nothing of itself and does not stop the others; each chunk of items commits
    /// atomically with the alerts, notifications and lock transitions it causes.
    ///
    /// # Errors
    /// A storage error (the chunk in flight is rolled back; earlier chunks stay).
    pub async fn report_usage(&self, reports: &[UsageReport], actor: &Actor) -> Result<Ingested> {
        let at = self.clock.now();
        let mut ingested = Ingested::default();
        for chunk in reports.chunks(CHUNK) {
            let txn = self.db.begin().await?;
            storage::lock_writes(&txn).await?;
            let mut work = Work::new(&txn, at);
            let mut loaded: BTreeMap<String, Option<Org>> = BTreeMap::new();
            for item in chunk {
                let outcome = self.ingest(&mut work, &mut loaded, item, actor, at).await?;
                ingested.outcomes.push(outcome);
            }
            for org in loaded.values_mut().flatten() {
                orgs::update(&txn, org, at).await?;
            }
            work.flush(&self.rules.webhooks).await?;
            ingested.report.facts.append(&mut work.facts);
            txn.commit().await?;
        }
        Ok(ingested)
    }

    async fn ingest(
        &self,
        work: &mut Work<'_>,
        loaded: &mut BTreeMap<String, Option<Org>>,
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
        if !loaded.contains_key(&item.org) {
            let mut org = orgs::load(work.txn, &item.org).await?;
            if let Some(org) = org.as_mut() {
                self.advance(work, org, at).await?;
            }
            loaded.insert(item.org.clone(), org);
        }
        let Some(org) = loaded.get_mut(&item.org).and_then(Option::as_mut) else {
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
        if storage::usage::period_closed(work.txn, &org.id, period).await? {
            return refuse(format!("period {} is already invoiced", period.label()));
        }
        let new = Usage {
            mau: item.mau,
            data_points: item.data_points,
        };
        if let Some(old) = storage::usage::project(work.txn, &org.id, period, &item.project).await?
        {
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
        storage::usage::upsert(work.txn, &org.id, period, &item.project, new, at).await?;
        let total = storage::usage::total(work.txn, &org.id, period).await?;
        let allowance = self.rules.prices.plan(&org.plan)?.data_points_per_mau;
        let usage_mau = total.usage_mau(allowance);
        if org.usage.is_none_or(|(p, _)| p <= period) {
            org.usage = Some((period, usage_mau));
        }
        self.alert(work, org, period, usage_mau, at).await?;
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
    async fn alert(
        &self,
        work: &mut Work<'_>,
        org: &Org,
        period: Period,
        usage_mau: u64,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let reached: Vec<u32> = self
            .rules
            .alert_thresholds
            .iter()
            .copied()
            .filter(|t| usage::reached(usage_mau, org.tier, *t))
            .collect();
        if reached.is_empty() {
            return Ok(());
        }
        let percent = format!("{:.2}", usage::percent(usage_mau, org.tier));
        let new = storage::usage::record_alerts(
            work.txn, &org.id, period, &reached, usage_mau, &percent, at,
        )
        .await?;
        let Some(highest) = new.last().copied() else {
            return Ok(());
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
        Ok(())
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
