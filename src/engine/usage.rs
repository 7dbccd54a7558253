//! Usage reports through the engine (SPEC section 4): absolute totals per (org, project,
//! period), overage alerts once per threshold and period, and the overage lock.

use std::collections::BTreeMap;

use super::{Actor, Engine, Report, Result};
use crate::domain::period::Period;
pub use crate::domain::plan::{Outcome, UsageReport};
use crate::storage::{self, org as orgs};

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
        // A preview is one transaction, so that later items see what earlier ones did.
        let size = if self.preview {
            reports.len().max(1)
        } else {
            CHUNK
        };
        for (c, chunk) in reports.chunks(size).enumerate() {
            let txn = storage::begin_write(&self.db).await?;
            // The chunk's orgs (locked on PostgreSQL, in id order), as read.
            let mut ids: Vec<&str> = chunk.iter().map(|r| r.org.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut loaded: BTreeMap<String, crate::domain::Org> = orgs::load_many(&txn, &ids)
                .await?
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect();
            let read: Vec<orgs::Written> = loaded.values().map(orgs::Written::of).collect();
            let periods: Vec<Period> = chunk
                .iter()
                .filter_map(|r| Period::parse(&r.period))
                .collect();
            let in_scope: Vec<crate::domain::Org> = loaded
                .values()
                .filter(|o| o.clock == self.scope)
                .cloned()
                .collect();
            let reported = super::Reported {
                periods,
                projects: chunk
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r.org.as_str(),
                            Period::parse(&r.period)?,
                            r.project.as_str(),
                        ))
                    })
                    .collect(),
            };
            let mut planner = self.planner(&txn, &in_scope, at, 0, None, reported).await?;
            // Each org caught up first: catching up may close a period.
            for org in loaded.values_mut().filter(|o| o.clock == self.scope) {
                let step = planner.advance(org, at);
                self.drive(&mut planner, org, step)?;
            }
            for (i, item) in chunk.iter().enumerate() {
                let actor = if actors.len() == 1 {
                    &actors[0]
                } else {
                    &actors[c * size + i]
                };
                ingested
                    .starts
                    .push(ingested.report.facts.len() + planner.plan.facts.len());
                let outcome = planner.usage(&mut loaded, item, actor, at)?;
                ingested.outcomes.push(outcome);
            }
            let plan = planner.finish();
            // Only the orgs that changed are written: a refused item (or a report that
            // changes no column of its org) bumps neither `version` nor `updated_at`.
            let (mut changed, read): (Vec<crate::domain::Org>, Vec<orgs::Written>) = loaded
                .into_values()
                .zip(read)
                .filter(|(o, w)| w.changed(o))
                .unzip();
            orgs::update_many(&txn, &mut changed, &read, at).await?;
            storage::write(&txn, &plan, at).await?;
            self.settle(txn).await?;
            ingested.report.extend(self.committed(plan, None));
        }
        Ok(ingested)
    }
}

impl Engine {
    /// SPEC section 3's lift rule for an upgrade of `org` to `new_tier` now.
    pub fn upgrade_lifts_overage(&self, org: &crate::domain::Org, new_tier: u32) -> bool {
        let now = Period::containing(self.clock.now());
        let usage_now = org
            .usage
            .filter(|(p, _)| *p == now)
            .map_or(0, |(_, mau)| mau);
        crate::domain::usage::upgrade_lifts_overage(
            new_tier,
            usage_now,
            org.overage_lock_mau.unwrap_or(0),
            self.rules.lock_above_percent,
        )
    }

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
