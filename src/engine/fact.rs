//! What the engine did, as it reports it to its callers (the simulator's JSON Lines,
//! `acctd tick`'s summary, tests).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use chrono::SecondsFormat;
use serde_json::{json, Value};

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

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Fact {
    /// The fact as SPEC section 9's JSON object (simulation output, `acctd tick --json`,
    /// webhook bodies).
    pub fn to_json(&self) -> Value {
        let fact = self;
        match fact {
            Fact::Transition {
                at,
                org,
                from,
                to,
                cause,
                reasons,
                ..
            } => json!({
                "at": time(*at), "org": org, "type": "transition",
                "from": from.map(super::super::domain::Status::as_str), "to": to.as_str(), "cause": cause,
                "lock_reasons": reasons.iter().map(super::super::domain::LockReason::as_str).collect::<Vec<_>>(),
            }),
            Fact::Invoice {
                at,
                org,
                id,
                period,
                lines,
                total,
            } => json!({
                "at": time(*at), "org": org, "type": "invoice", "id": id, "period": period,
                "lines": lines.iter().map(|l| json!({"kind": l.kind.as_str(), "amount": format!("{:.2}", l.amount)})).collect::<Vec<_>>(),
                "total": format!("{total:.2}"),
            }),
            Fact::Payment {
                at,
                org,
                invoice,
                succeeded,
            } => json!({
                "at": time(*at), "org": org, "type": "payment", "invoice": invoice,
                "outcome": if *succeeded { "succeeded" } else { "failed" },
            }),
            Fact::Email {
                at,
                org,
                template,
                to,
            } => json!({
                "at": time(*at), "org": org, "type": "email", "template": template, "to": to,
            }),
            Fact::Plan {
                at,
                org,
                tier,
                addons,
                change,
            } => json!({
                "at": time(*at), "org": org, "type": "plan", "tier": tier, "addons": addons, "change": change,
            }),
            Fact::Alert {
                at,
                org,
                threshold,
                usage_percent,
            } => json!({
                "at": time(*at), "org": org, "type": "alert", "threshold": threshold, "usage_percent": usage_percent,
            }),
        }
    }
}
