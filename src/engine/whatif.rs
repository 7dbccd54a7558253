//! What-if over the fleet (`acctd whatif`): every selected org is forecast to a horizon
//! under the current rules and under changed rules, side by side, and the outcomes are
//! compared: weekly counts under each rule set, and the orgs whose fate differs.
//!
//! Orgs are read in chunks by id (keyset paging), each chunk with one planner snapshot
//! read in a transaction that is rolled back. The snapshot is cloned for the second rule
//! set: the planner reads nothing else, so both rule sets plan from the same stored state
//! with no copy of the database. Nothing is kept per org beyond its chunk except the
//! capped list of differing orgs.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use sea_orm::TransactionTrait;

use super::{Engine, PaymentGateway, Payments, Result};
use crate::domain::fact::Fact;
use crate::domain::plan::{Planner, Rules, Step};
use crate::domain::{LockReasons, Org, Status};
use crate::storage::org::{self as orgs, Selection};

/// Orgs read per chunk when the caller does not say.
pub const DEFAULT_CHUNK: u64 = 1_000;
/// Differing orgs listed (all are counted) when the caller does not say.
pub const DEFAULT_LISTED: usize = 1_000;

/// Parses `--orgs`: `state=grace_period`, `plan=basic`, `ids=a,b,c`, combined with `;`
/// (every part narrows the selection).
///
/// # Errors
/// A message naming the bad key or value.
pub fn parse_selection(text: &str) -> std::result::Result<Selection, String> {
    let mut selection = Selection::default();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!(
                "`{part}` is not KEY=VALUE (keys: state, plan, ids)"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(format!("key `{key}`: empty value"));
        }
        let twice = || format!("key `{key}` given twice");
        match key {
            "state" => {
                let status: Status = value.parse().map_err(|_| {
                    format!(
                        "key `state`: unknown state `{value}` (trial, active, grace_period, locked, canceled)"
                    )
                })?;
                if selection.status.replace(status).is_some() {
                    return Err(twice());
                }
            }
            "plan" => {
                if selection.plan.replace(value.to_owned()).is_some() {
                    return Err(twice());
                }
            }
            "ids" => {
                let ids: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect();
                if selection.ids.replace(ids).is_some() {
                    return Err(twice());
                }
            }
            other => return Err(format!("unknown key `{other}` (keys: state, plan, ids)")),
        }
    }
    Ok(selection)
}

/// What a what-if run covers.
#[derive(Clone, Debug)]
pub struct Options {
    pub until: DateTime<Utc>,
    pub selection: Selection,
    pub payments: Payments,
    /// Orgs per chunk.
    pub chunk: u64,
    /// Differing orgs listed; every one is counted.
    pub listed: usize,
    /// Of the listed differing orgs, how many keep their facts under both rule sets
    /// (for pictures); 0 keeps none.
    pub lanes: usize,
}

impl Options {
    pub fn new(until: DateTime<Utc>) -> Self {
        Self {
            until,
            selection: Selection::default(),
            payments: Payments::AsLast,
            chunk: DEFAULT_CHUNK,
            listed: DEFAULT_LISTED,
            lanes: 0,
        }
    }
}

/// Weekly counts under one rule set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub entered_grace: u64,
    pub locked: u64,
    pub canceled: u64,
    pub invoices: u64,
    /// The invoices' totals, exact.
    pub billed: Decimal,
    pub emails: u64,
}

impl Counts {
    fn add(&mut self, fact: &Fact) {
        match fact {
            Fact::Transition { from, to, .. } => match to {
                Status::GracePeriod => self.entered_grace += 1,
                Status::Locked if *from != Some(Status::Locked) => self.locked += 1,
                Status::Canceled => self.canceled += 1,
                _ => {}
            },
            Fact::Invoice { total, .. } => {
                self.invoices += 1;
                self.billed += *total;
            }
            Fact::Email { .. } => self.emails += 1,
            _ => {}
        }
    }
}

/// The ISO week of an instant, e.g. `2027-W03`.
pub fn iso_week(at: DateTime<Utc>) -> String {
    let week = at.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

/// An org's state at the horizon: its status and lock reasons.
pub type Fate = (Status, LockReasons);

/// An org whose fate differs between the rule sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub org: String,
    /// The first fact that differs under the current rules (`None`: there are fewer).
    pub current: Option<Fact>,
    /// The same place under the changed rules.
    pub changed: Option<Fact>,
    pub fate_current: Fate,
    pub fate_changed: Fate,
    /// Every fact under each rule set, for the first [`Options::lanes`] differing orgs.
    pub facts: Option<(Vec<Fact>, Vec<Fact>)>,
}

/// What a what-if run found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Orgs forecast.
    pub orgs: u64,
    /// Per ISO week (in order), the counts under the current and the changed rules.
    pub weeks: BTreeMap<String, [Counts; 2]>,
    /// Orgs whose fate differs (all of them counted).
    pub differing: u64,
    /// The first [`Options::listed`] of them, by id.
    pub differences: Vec<Difference>,
}

impl Outcome {
    /// The counts over the whole horizon under each rule set.
    pub fn totals(&self) -> [Counts; 2] {
        let mut totals = [Counts::default(), Counts::default()];
        for week in self.weeks.values() {
            for (total, counts) in totals.iter_mut().zip(week) {
                total.entered_grace += counts.entered_grace;
                total.locked += counts.locked;
                total.canceled += counts.canceled;
                total.invoices += counts.invoices;
                total.billed += counts.billed;
                total.emails += counts.emails;
            }
        }
        totals
    }
}

impl Engine {
    /// Forecasts every org of `options.selection` (on the real clock) from the clock's
    /// instant to `options.until` under this engine's rules and under `changed`, and
    /// compares them. Reads only, in chunks of `options.chunk` orgs: each chunk's
    /// transaction is rolled back, and nothing is written (the connection may be read
    /// only).
    ///
    /// # Errors
    /// A storage error, or an org the planner refuses (its id is named).
    pub async fn whatif(&self, changed: &Rules, options: &Options) -> Result<Outcome> {
        let engine = self.preview();
        let from = self.clock.now();
        let until = options.until.max(from);
        let mut outcome = Outcome {
            from,
            until,
            orgs: 0,
            weeks: BTreeMap::new(),
            differing: 0,
            differences: Vec::new(),
        };
        let mut after: Option<String> = None;
        loop {
            let txn = self.db.begin().await?;
            let chunk = orgs::page(
                &txn,
                &options.selection,
                after.as_deref(),
                options.chunk.max(1),
            )
            .await?;
            let Some(last) = chunk.last() else {
                txn.rollback().await?;
                break;
            };
            after = Some(last.id.clone());
            let snapshot = engine
                .snapshot(&txn, &chunk, until, 0, None, super::Reported::default())
                .await?;
            txn.rollback().await?;
            let full = chunk.len() as u64 >= options.chunk.max(1);
            let mut current = Planner::new(&self.rules, snapshot.clone(), from);
            let mut other = Planner::new(changed, snapshot, from);
            for org in chunk {
                outcome.orgs += 1;
                let payments = options.payments.resolve(&org);
                let (facts_a, fate_a) = run(&mut current, org.clone(), until, payments)?;
                let (facts_b, fate_b) = run(&mut other, org, until, payments)?;
                for fact in &facts_a {
                    week_of(&mut outcome.weeks, fact)[0].add(fact);
                }
                for fact in &facts_b {
                    week_of(&mut outcome.weeks, fact)[1].add(fact);
                }
                if let Some(difference) = compare(&facts_a, &facts_b, fate_a, fate_b) {
                    outcome.differing += 1;
                    if outcome.differences.len() < options.listed {
                        let keep = outcome.differences.len() < options.lanes;
                        outcome.differences.push(Difference {
                            facts: keep.then_some((facts_a, facts_b)),
                            ..difference
                        });
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(outcome)
    }
}

fn week_of<'w>(weeks: &'w mut BTreeMap<String, [Counts; 2]>, fact: &Fact) -> &'w mut [Counts; 2] {
    weeks.entry(iso_week(fact.at())).or_default()
}

/// Advances `org` to `until` on `planner` with charges decided by `payments`; returns its
/// facts in time order and its fate. The planner's plan is emptied afterwards (only its
/// snapshot carries over to the chunk's next org).
fn run(
    planner: &mut Planner<'_>,
    mut org: Org,
    until: DateTime<Utc>,
    payments: Payments,
) -> Result<(Vec<Fact>, Fate)> {
    let id = org.id.clone();
    let named = |e: crate::domain::plan::Rejection| super::Error::Invalid {
        field: "org",
        message: format!("`{id}`: {e}"),
    };
    let mut step = planner.advance(&mut org, until).map_err(named)?;
    while let Step::Charge(request) = step {
        let charge = payments.charge(&org, request.invoice, request.amount);
        step = planner.charged(&mut org, request, charge).map_err(named)?;
    }
    let mut facts = std::mem::take(&mut planner.plan).facts;
    facts.sort_by_key(Fact::at);
    Ok((facts, (org.lifecycle.status, org.lifecycle.reasons)))
}

/// Where two orgs' forecasts part, if they do: the first fact that differs (invoice ids
/// compared by their order of appearance, since each rule set hands out ids of its own).
fn compare(a: &[Fact], b: &[Fact], fate_a: Fate, fate_b: Fate) -> Option<Difference> {
    if a == b && fate_a == fate_b {
        return None;
    }
    let (na, nb) = (renumbered(a), renumbered(b));
    let first = na
        .iter()
        .zip(&nb)
        .position(|(x, y)| x != y)
        .or_else(|| (na.len() != nb.len()).then(|| na.len().min(nb.len())));
    if first.is_none() && fate_a == fate_b {
        return None;
    }
    let org = a
        .first()
        .or_else(|| b.first())
        .map_or_else(String::new, |f| f.org().to_owned());
    Some(Difference {
        org,
        current: first.and_then(|i| a.get(i).cloned()),
        changed: first.and_then(|i| b.get(i).cloned()),
        fate_current: fate_a,
        fate_changed: fate_b,
        facts: None,
    })
}

/// `facts` with each invoice id replaced by its rank of first appearance.
fn renumbered(facts: &[Fact]) -> Vec<Fact> {
    let mut ranks: BTreeMap<i64, i64> = BTreeMap::new();
    let mut rank = |id: i64| {
        let next = i64::try_from(ranks.len()).unwrap_or(i64::MAX);
        *ranks.entry(id).or_insert(next)
    };
    facts
        .iter()
        .map(|fact| match fact {
            Fact::Invoice {
                at,
                org,
                id,
                period,
                lines,
                total,
            } => Fact::Invoice {
                at: *at,
                org: org.clone(),
                id: rank(*id),
                period: period.clone(),
                lines: lines.clone(),
                total: *total,
            },
            Fact::Payment {
                at,
                org,
                invoice,
                succeeded,
            } => Fact::Payment {
                at: *at,
                org: org.clone(),
                invoice: rank(*invoice),
                succeeded: *succeeded,
            },
            other => other.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_combine_with_semicolons_and_errors_name_the_key() {
        let s = parse_selection("state=grace_period; plan=basic;ids=a, b,c").unwrap();
        assert_eq!(s.status, Some(Status::GracePeriod));
        assert_eq!(s.plan.as_deref(), Some("basic"));
        assert_eq!(
            s.ids,
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        assert_eq!(parse_selection("").unwrap(), Selection::default());
        let e = parse_selection("tier=5000").unwrap_err();
        assert!(e.contains("`tier`"), "{e}");
        let e = parse_selection("state=sleeping").unwrap_err();
        assert!(e.contains("`state`") && e.contains("sleeping"), "{e}");
        let e = parse_selection("plan=a;plan=b").unwrap_err();
        assert!(e.contains("`plan`"), "{e}");
        let e = parse_selection("grace_period").unwrap_err();
        assert!(e.contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn iso_weeks_are_labelled_by_their_iso_year() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(iso_week(at("2027-01-01T00:00:00Z")), "2026-W53");
        assert_eq!(iso_week(at("2027-01-04T00:00:00Z")), "2027-W01");
    }

    #[test]
    fn invoice_ids_do_not_make_a_difference_on_their_own() {
        let at: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        let invoice = |id| Fact::Invoice {
            at,
            org: "a".into(),
            id,
            period: "2027-01".into(),
            lines: Vec::new(),
            total: Decimal::ONE,
        };
        let pay = |invoice| Fact::Payment {
            at,
            org: "a".into(),
            invoice,
            succeeded: true,
        };
        let fate = (Status::Active, LockReasons::default());
        assert!(compare(&[invoice(7), pay(7)], &[invoice(9), pay(9)], fate, fate).is_none());
        let d = compare(&[invoice(7), pay(7)], &[invoice(9), pay(3)], fate, fate).unwrap();
        assert_eq!(d.current, Some(pay(7)));
        assert_eq!(d.changed, Some(pay(3)));
        let d = compare(&[invoice(7)], &[invoice(7), pay(7)], fate, fate).unwrap();
        assert_eq!((d.current, d.changed), (None, Some(pay(7))));
    }
}
