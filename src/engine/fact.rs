//! What the engine did, as it reports it to its callers (the simulator's JSON Lines,
//! `acctd tick`'s summary, tests).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::price::Line;
use crate::domain::{LockReasons, Status};

/// One thing that happened, at its effective instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    Transition {
        at: DateTime<Utc>,
        org: String,
        from: Option<Status>,
        to: Status,
        cause: String,
        reasons: LockReasons,
        actor: String,
    },
    Invoice {
        at: DateTime<Utc>,
        org: String,
        id: i64,
        period: String,
        lines: Vec<Line>,
        total: Decimal,
    },
    Payment {
        at: DateTime<Utc>,
        org: String,
        invoice: i64,
        succeeded: bool,
    },
    Email {
        at: DateTime<Utc>,
        org: String,
        template: String,
        to: Vec<String>,
    },
    /// A plan change: the tier and add-ons after it, and what changed.
    Plan {
        at: DateTime<Utc>,
        org: String,
        tier: u32,
        addons: Vec<String>,
        change: String,
    },
    Alert {
        at: DateTime<Utc>,
        org: String,
        threshold: u32,
        /// Two decimal places, e.g. `"300.01"`.
        usage_percent: String,
    },
}

impl Fact {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Fact::Transition { at, .. }
            | Fact::Invoice { at, .. }
            | Fact::Payment { at, .. }
            | Fact::Email { at, .. }
            | Fact::Alert { at, .. }
            | Fact::Plan { at, .. } => *at,
        }
    }

    pub fn org(&self) -> &str {
        match self {
            Fact::Transition { org, .. }
            | Fact::Invoice { org, .. }
            | Fact::Payment { org, .. }
            | Fact::Email { org, .. }
            | Fact::Alert { org, .. }
            | Fact::Plan { org, .. } => org,
        }
    }
}

/// Everything one engine call did, in the order it happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub facts: Vec<Fact>,
}

impl Report {
    pub fn transitions(&self) -> usize {
        self.facts
            .iter()
            .filter(|f| matches!(f, Fact::Transition { .. }))
            .count()
    }

    pub fn extend(&mut self, other: Report) {
        self.facts.extend(other.facts);
    }
}
