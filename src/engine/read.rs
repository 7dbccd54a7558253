//! Reads: the org as the API and the CLI show it (entitlements, legal moves), lists,
//! the audit trail, invoices and counts. Nothing here writes.

use chrono::{DateTime, Utc};

use super::{Engine, Error, Result};
use crate::domain::period::Period;
use crate::domain::record::{Invoice, TransitionRecord};
use crate::domain::{self, Org, Status};
use crate::storage::{self, org as orgs};

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

    /// The org with its derived entitlements (no legal moves: see [`Engine::view`]).
    ///
    /// # Errors
    /// [`Error::UnknownOrg`]; a storage error.
    pub async fn access(&self, id: &str) -> Result<Access> {
        let org = self
            .org(id)
            .await?
            .ok_or_else(|| Error::UnknownOrg(id.to_owned()))?;
        Ok(self.access_of(org))
    }

    /// `org`'s entitlements at the clock's instant.
    pub fn access_of(&self, org: Org) -> Access {
        let l = &org.lifecycle;
        let now = Period::containing(self.clock.now());
        Access {
            entitlements: self.rules.entitlements.of(l.status, l.reasons),
            upgrade_prompt: l.status != Status::Canceled
                && org
                    .usage
                    .is_some_and(|(p, mau)| p == now && domain::usage::above(mau, org.tier, 100)),
            org,
        }
    }

    /// The org with its derived entitlements and legal moves.
    ///
    /// # Errors
    /// [`Error::UnknownOrg`]; a storage error.
    pub async fn view(&self, id: &str) -> Result<View> {
        let access = self.access(id).await?;
        Ok(self.view_of(access))
    }

    /// The view of an org held in memory (a preview's org as it would be afterwards).
    pub fn view_of(&self, access: Access) -> View {
        View {
            legal_moves: domain::legal_moves(
                &access.org.lifecycle,
                self.clock.now(),
                self.rules.timers,
            ),
            org: access.org,
            entitlements: access.entitlements,
            upgrade_prompt: access.upgrade_prompt,
        }
    }
}

/// Counts for `/v1/stats`, `/metrics` and `acctd admin stats`.
#[derive(Clone, Debug)]
pub struct Stats {
    pub counts: orgs::Counts,
    pub transitions: u64,
    pub transitions_by_cause: Vec<(String, i64)>,
    pub outbox_backlog: u64,
    /// The oldest passed, unprocessed deadline on the real clock.
    pub oldest_due: Option<DateTime<Utc>>,
}

impl Engine {
    /// A page of orgs (keyset pagination by id).
    ///
    /// # Errors
    /// A storage error.
    pub async fn orgs(&self, filter: &orgs::Filter) -> Result<Vec<Org>> {
        Ok(orgs::list(&self.db, filter).await?)
    }

    /// The newest `limit` audit rows of an org, oldest first.
    ///
    /// # Errors
    /// A storage error.
    pub async fn transitions(&self, org: &str, limit: u64) -> Result<Vec<TransitionRecord>> {
        Ok(storage::audit::recent_transitions(&self.db, org, limit).await?)
    }

    /// An org's invoices, oldest first.
    ///
    /// # Errors
    /// A storage error.
    pub async fn invoices(&self, org: &str) -> Result<Vec<Invoice>> {
        Ok(storage::billing::list(&self.db, org).await?)
    }

    /// One invoice.
    ///
    /// # Errors
    /// [`Error::UnknownInvoice`]; a storage error.
    pub async fn invoice(&self, id: i64) -> Result<Invoice> {
        storage::billing::find(&self.db, id)
            .await?
            .ok_or(Error::UnknownInvoice(id))
    }

    /// Whether any test clock exists.
    ///
    /// # Errors
    /// A storage error.
    pub async fn any_test_clock(&self) -> Result<bool> {
        Ok(!storage::test_clock::list(&self.db).await?.is_empty())
    }

    /// Counts of orgs, transitions and the outbox.
    ///
    /// # Errors
    /// A storage error.
    pub async fn stats(&self) -> Result<Stats> {
        let db = &self.db;
        Ok(Stats {
            counts: orgs::counts(db, self.now()).await?,
            transitions: storage::audit::count_transitions(db).await?,
            transitions_by_cause: storage::audit::transitions_by_cause(db).await?,
            outbox_backlog: storage::audit::outbox_backlog(db).await?,
            oldest_due: orgs::oldest_due(db).await?,
        })
    }
}
