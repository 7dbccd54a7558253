//! Test clocks inside a running engine, as Stripe has them but per group of orgs: a clock
//! is frozen at an instant, orgs attached at signup live on its time, and advancing it
//! runs those orgs (and only those) through the same engine up to the new instant.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{invalid, Engine, Error, Report, Result};
use crate::clock::{truncate, VirtualClock};
use crate::storage::test_clock::{self, TestClock};

impl Engine {
    /// Creates a test clock frozen at `at`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad or taken id.
    pub async fn create_test_clock(&self, id: &str, at: DateTime<Utc>) -> Result<TestClock> {
        super::validate_id(id)?;
        if test_clock::find(&self.db, id).await?.is_some() {
            return Err(invalid("id", format!("test clock `{id}` exists already")));
        }
        Ok(test_clock::create(&self.db, id, truncate(at), self.clock.now()).await?)
    }

    /// The test clock named `id`, if any.
    ///
    /// # Errors
    /// A storage error.
    pub async fn test_clock_named(&self, id: &str) -> Result<Option<TestClock>> {
        Ok(test_clock::find(&self.db, id).await?)
    }

    /// One test clock.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no such clock.
    pub async fn find_test_clock(&self, id: &str) -> Result<TestClock> {
        test_clock::find(&self.db, id)
            .await?
            .ok_or_else(|| invalid("test_clock", format!("unknown test clock `{id}`")))
    }

    /// The engine for a test clock's orgs, on that clock's current instant.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no such clock.
    pub async fn for_test_clock(&self, id: &str) -> Result<Engine> {
        let clock = self.find_test_clock(id).await?;
        Ok(self.on_test_clock(id, Arc::new(VirtualClock::new(clock.now))))
    }

    /// The engine that owns an org: the real one, or its test clock's.
    ///
    /// # Errors
    /// [`Error::UnknownOrg`].
    pub async fn for_org(&self, org_id: &str) -> Result<Engine> {
        let org = self
            .org(org_id)
            .await?
            .ok_or_else(|| Error::UnknownOrg(org_id.to_owned()))?;
        match org.clock {
            Some(id) => self.for_test_clock(&id).await,
            None => Ok(self.clone()),
        }
    }

    /// Moves a test clock forward to `to` and processes its orgs' deadlines up to it;
    /// returns when done.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown clock or a move backwards.
    pub async fn advance_test_clock(&self, id: &str, to: DateTime<Utc>) -> Result<Report> {
        let clock = self.find_test_clock(id).await?;
        let to = truncate(to);
        if to < clock.now {
            return Err(invalid(
                "to",
                format!(
                    "test clocks only move forward: `{id}` is at {}",
                    clock.now.to_rfc3339()
                ),
            ));
        }
        let engine = self.on_test_clock(id, Arc::new(VirtualClock::new(to)));
        let report = engine.tick(to).await?;
        test_clock::set_now(&self.db, id, to).await?;
        Ok(report)
    }

    /// Deletes a test clock and its orgs with all their rows.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown clock.
    pub async fn delete_test_clock(&self, id: &str) -> Result<u64> {
        self.find_test_clock(id).await?;
        Ok(test_clock::delete(&self.db, id).await?)
    }
}
