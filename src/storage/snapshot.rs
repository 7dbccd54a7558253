//! Reads a planner's [`Snapshot`]: what the decisions of one transaction need, one query
//! per kind, before anything is decided.

use chrono::{DateTime, Utc};

use super::{billing, usage, Result};
use crate::domain::period::Period;
use crate::domain::plan::{cycle_key, Snapshot};

/// What a transaction may decide about, and so what its snapshot holds.
#[derive(Clone, Debug)]
pub struct Window<'a> {
    /// The orgs (ids).
    pub orgs: &'a [&'a str],
    /// The earliest instant the plan covers: every invoice issued since is read by key
    /// (a deadline or command at an instant only issues invoices keyed at or after it).
    pub from: DateTime<Utc>,
    /// Periods whose usage totals are read, with the keys of the cycle invoices that
    /// close them.
    pub periods: Vec<Period>,
    /// The (org, period, project) keys whose stored project totals are read (a usage
    /// batch's items).
    pub projects: Vec<(&'a str, Period, &'a str)>,
    /// Whether the alerts recorded in `periods` are read too (usage reports raise them;
    /// deadlines and commands do not).
    pub alerts: bool,
    /// An invoice read whatever its status (a payment outcome's).
    pub invoice: Option<i64>,
    /// How many invoice ids to reserve (an upper bound of what the plan issues).
    pub ids: usize,
    /// Read the next invoice ids without reserving them (a preview, which rolls back:
    /// `PostgreSQL`'s `nextval` would not).
    pub peek: bool,
}

/// Reads `window`'s snapshot inside the caller's transaction (which holds the orgs:
/// `SQLite`'s write lock, or `PostgreSQL` row locks that every writer of an org's invoices
/// and usage takes first).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn read(conn: &impl sea_orm::ConnectionTrait, window: &Window<'_>) -> Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    if window.orgs.is_empty() {
        return Ok(snapshot);
    }
    let mut periods = window.periods.clone();
    periods.sort_unstable();
    periods.dedup();
    let closing: Vec<String> = periods.iter().map(|p| cycle_key(p.next())).collect();
    for invoice in billing::window_of(conn, window.orgs, window.from, &closing).await? {
        snapshot
            .keys
            .insert((invoice.org_id.clone(), invoice.key.clone()));
        snapshot.invoices.insert(invoice.id, invoice);
    }
    if let Some(id) = window.invoice {
        if let Some(invoice) = billing::find(conn, id).await? {
            snapshot.invoices.insert(invoice.id, invoice);
        }
    }
    if !periods.is_empty() {
        snapshot.usage = usage::totals_of(conn, window.orgs, &periods).await?;
        let mut keys = window.projects.clone();
        keys.sort_unstable();
        keys.dedup();
        snapshot.projects = usage::projects_of(conn, &keys).await?;
        if window.alerts {
            snapshot.alerted = usage::alerted_of(conn, window.orgs, &periods).await?;
        }
    }
    if window.ids > 0 {
        snapshot.invoice_ids = if window.peek {
            billing::next_ids(conn, window.ids).await?.into()
        } else {
            billing::reserve_ids(conn, window.ids).await?.into()
        };
    }
    Ok(snapshot)
}

/// The periods whose usage the monthly cycles of an org due by `until` bill (each
/// cycle's previous period), and an upper bound of the invoices its deadlines issue (a
/// conversion and each cycle).
pub fn billed_by(org: &crate::domain::Org, until: DateTime<Utc>) -> (Vec<Period>, usize) {
    let l = &org.lifecycle;
    let mut periods = Vec::new();
    let mut invoices = 0;
    // A conversion at the trial end starts cycles at the next 1st.
    let first = match (l.trial_ends_at.filter(|t| *t <= until), l.next_cycle_at) {
        (Some(trial_end), cycle) => {
            invoices += 1;
            Some(cycle.map_or(trial_end, |c| c.min(trial_end)))
        }
        (None, cycle) => cycle,
    };
    if let Some(mut at) = first.filter(|at| *at <= until) {
        // Each 1st from the first cycle up to `until`.
        let mut period = Period::containing(at);
        if period.start() < at {
            period = period.next();
        }
        at = period.start();
        while at <= until {
            periods.push(period.previous());
            invoices += 1;
            period = period.next();
            at = period.start();
        }
    }
    (periods, invoices)
}
