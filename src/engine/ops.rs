//! What the ops console reads beyond [`super::read`]: an org's payments, its outbox
//! messages and its overage alerts, the failing messages across orgs, the test clocks;
//! and the outbox's retry and discard. Nothing here changes an org.

use super::{Engine, Result};
use crate::domain::period::Period;
use crate::storage;
use crate::storage::billing::NewPayment;
use crate::storage::outbox::{self, Message};
use crate::storage::test_clock::TestClock;

impl Engine {
    /// Orgs by state and lock reason, and the due backlog (without the audit and outbox
    /// counts of [`Engine::stats`], which scan their tables).
    ///
    /// # Errors
    /// A storage error.
    pub async fn counts(&self) -> Result<storage::org::Counts> {
        Ok(storage::org::counts(&self.db, self.now()).await?)
    }

    /// An org's payment outcomes, oldest first.
    ///
    /// # Errors
    /// A storage error.
    pub async fn payments(&self, org: &str) -> Result<Vec<NewPayment>> {
        Ok(storage::billing::payments_of(&self.db, org).await?)
    }

    /// An org's newest `limit` outbox messages, newest first.
    ///
    /// # Errors
    /// A storage error.
    pub async fn messages_of(&self, org: &str, limit: u64) -> Result<Vec<Message>> {
        Ok(outbox::of_org(&self.db, org, limit).await?)
    }

    /// The thresholds (percent of the tier) already alerted for an org in a period.
    ///
    /// # Errors
    /// A storage error.
    pub async fn alerted(&self, org: &str, period: Period) -> Result<Vec<u32>> {
        Ok(storage::usage::alerted(&self.db, org, period).await?)
    }

    /// The newest `limit` dead letters across orgs.
    ///
    /// # Errors
    /// A storage error.
    pub async fn dead_letters(&self, limit: u64) -> Result<Vec<Message>> {
        Ok(outbox::list(&self.db, Some("dead"), limit).await?)
    }

    /// Up to `limit` messages waiting for another attempt, the next first.
    ///
    /// # Errors
    /// A storage error.
    pub async fn retrying(&self, limit: u64) -> Result<Vec<Message>> {
        Ok(outbox::retrying(&self.db, limit).await?)
    }

    /// Puts a dead or pending message back in line now; whether one was changed.
    ///
    /// # Errors
    /// A storage error.
    pub async fn retry_message(&self, id: i64) -> Result<bool> {
        Ok(outbox::retry(&self.db, id, self.now()).await?)
    }

    /// Gives up on a message not sent yet; whether one was changed.
    ///
    /// # Errors
    /// A storage error.
    pub async fn discard_message(&self, id: i64) -> Result<bool> {
        Ok(outbox::discard(&self.db, id).await?)
    }

    /// Every test clock.
    ///
    /// # Errors
    /// A storage error.
    pub async fn test_clocks(&self) -> Result<Vec<TestClock>> {
        Ok(storage::test_clock::list(&self.db).await?)
    }
}
