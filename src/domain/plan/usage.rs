//! Usage reports (SPEC section 4): absolute totals per (org, project, period), overage
//! alerts once per threshold and period, and the overage lock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{NewAlert, Planner, ProjectTotals};
use crate::domain::fact::Fact;
use crate::domain::period::Period;
use crate::domain::record::Actor;
use crate::domain::usage::{self, Usage};
use crate::domain::{Event, LockReason, Org, Status};

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

/// The longest project name accepted, in characters.
pub const MAX_PROJECT_CHARS: usize = 200;

/// What became of one report of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused(String),
}

impl Planner<'_> {
    /// Plans one usage report at `at` against `orgs` (the batch's orgs, caught up to
    /// `at`): a refused report plans nothing.
    ///
    /// # Errors
    /// A price or snapshot error (a refusal is an [`Outcome`], not an error).
    pub fn usage(
        &mut self,
        orgs: &mut BTreeMap<String, Org>,
        item: &UsageReport,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> super::Result<Outcome> {
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
        if item.project.chars().count() > MAX_PROJECT_CHARS {
            return refuse(format!(
                "project name of {} characters; at most {MAX_PROJECT_CHARS}",
                item.project.chars().count()
            ));
        }
        if period < Period::FIRST {
            return refuse(format!(
                "period {} is before {}",
                period.label(),
                Period::FIRST.label()
            ));
        }
        // No stored text may hold a NUL (PostgreSQL refuses it): this item only is refused.
        if item.org.contains('\0') {
            return refuse("org must not contain a NUL character".to_owned());
        }
        if item.project.contains('\0') {
            return refuse("project must not contain a NUL character".to_owned());
        }
        for (name, value) in [("mau", item.mau), ("data_points", item.data_points)] {
            if value > usage::LIMIT {
                return refuse(format!(
                    "{name} {value} is above the limit of {}",
                    usage::LIMIT
                ));
            }
        }
        let Some(org) = orgs.get_mut(&item.org) else {
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
        if self.snapshot.closed(&org.id, period) {
            return refuse(format!("period {} is already invoiced", period.label()));
        }
        let new = Usage {
            mau: item.mau,
            data_points: item.data_points,
        };
        let key = (org.id.clone(), period);
        let projects = self.snapshot.projects.entry(key.clone()).or_default();
        let old = projects.get(&item.project).copied();
        if let Some(old) = old {
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
        // The org's total with this report in place of the project's earlier one.
        let stored = self.snapshot.usage.get(&key).copied().unwrap_or_default();
        let others = old.map_or(stored, |old| Usage {
            mau: stored.mau.saturating_sub(old.mau),
            data_points: stored.data_points.saturating_sub(old.data_points),
        });
        let Some(total) = others.checked_add(new) else {
            return refuse(format!(
                "the org's total mau or data_points in {} would be above the limit of {}",
                period.label(),
                usage::LIMIT
            ));
        };
        projects.insert(item.project.clone(), new);
        self.snapshot.usage.insert(key.clone(), total);
        self.plan.usage.insert(key, total);
        self.plan.totals.insert(
            (org.id.clone(), period, item.project.clone()),
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
        self.alert(org, period, usage_mau, at);
        if usage::above(usage_mau, org.tier, self.rules.lock_above_percent) {
            if !org.lifecycle.reasons.contains(LockReason::Overage)
                || org.lifecycle.status != Status::Locked
            {
                org.overage_lock_mau = Some(usage_mau);
            } else {
                org.overage_lock_mau = Some(org.overage_lock_mau.unwrap_or(0).max(usage_mau));
            }
            self.apply(org, Event::UsageExceeded, actor, at)?;
        }
        Ok(Outcome::Accepted)
    }

    /// Records the thresholds this usage reaches for the first time in the period, and
    /// sends one email naming the highest.
    fn alert(&mut self, org: &Org, period: Period, usage_mau: u64, at: DateTime<Utc>) {
        let rules = self.rules;
        let mut new: Vec<u32> = Vec::new();
        let mut percent = None;
        for threshold in rules.alert_thresholds.iter().copied() {
            if !usage::reached(usage_mau, org.tier, threshold) {
                continue;
            }
            if !self
                .snapshot
                .alerted
                .insert((org.id.clone(), period, threshold))
            {
                continue;
            }
            let percent = percent
                .get_or_insert_with(|| format!("{:.2}", usage::percent(usage_mau, org.tier)));
            self.plan.alerts.push(NewAlert {
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
            self.plan.facts.push(Fact::Alert {
                at,
                org: org.id.clone(),
                threshold: *threshold,
                usage_percent: percent.clone(),
            });
        }
        let hint = rules
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
        self.email(org, "overage_alert", at, key, payload);
    }
}
