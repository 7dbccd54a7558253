//! What happened, as the planner records it and the engine reports it to its callers
//! (the simulator's JSON Lines, `acctd tick`, webhooks, tests). A fact serializes as SPEC
//! section 9's object.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::domain::price::Line;
use crate::domain::{LockReason, LockReasons, Status};

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
    /// The org a command, payment outcome or single signup acted on, as it is afterwards
    /// (what a preview shows of it).
    pub org: Option<crate::domain::Org>,
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
        if other.org.is_some() {
            self.org = other.org;
        }
    }
}

/// RFC 3339 with whole seconds and `Z`.
struct Time(DateTime<Utc>);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

/// An amount with two decimals, e.g. `"246.40"`.
struct Money(Decimal);

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{:.2}", self.0))
    }
}

/// An invoice line as the output shows it: its kind and amount.
struct OutputLine<'a>(&'a Line);

impl Serialize for OutputLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("kind", self.0.kind.as_str())?;
        map.serialize_entry("amount", &Money(self.0.amount))?;
        map.end()
    }
}

/// Lock reasons as a sorted list of names.
struct Reasons(LockReasons);

impl Serialize for Reasons {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(LockReason::as_str))
    }
}

/// SPEC section 9's JSON object of a fact, keys in the order the section gives them,
/// written straight to the serializer (the simulator writes hundreds of thousands).
impl Serialize for Fact {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("at", &Time(self.at()))?;
        map.serialize_entry("org", self.org())?;
        match self {
            Fact::Transition {
                from,
                to,
                cause,
                reasons,
                ..
            } => {
                map.serialize_entry("type", "transition")?;
                map.serialize_entry("from", &from.map(Status::as_str))?;
                map.serialize_entry("to", to.as_str())?;
                map.serialize_entry("cause", cause)?;
                map.serialize_entry("lock_reasons", &Reasons(*reasons))?;
            }
            Fact::Invoice {
                id,
                period,
                lines,
                total,
                ..
            } => {
                map.serialize_entry("type", "invoice")?;
                map.serialize_entry("id", id)?;
                map.serialize_entry("period", period)?;
                map.serialize_entry("lines", &Lines(lines))?;
                map.serialize_entry("total", &Money(*total))?;
            }
            Fact::Payment {
                invoice, succeeded, ..
            } => {
                map.serialize_entry("type", "payment")?;
                map.serialize_entry("invoice", invoice)?;
                let outcome = if *succeeded { "succeeded" } else { "failed" };
                map.serialize_entry("outcome", outcome)?;
            }
            Fact::Email { template, to, .. } => {
                map.serialize_entry("type", "email")?;
                map.serialize_entry("template", template)?;
                map.serialize_entry("to", to)?;
            }
            Fact::Plan {
                tier,
                addons,
                change,
                ..
            } => {
                map.serialize_entry("type", "plan")?;
                map.serialize_entry("tier", tier)?;
                map.serialize_entry("addons", addons)?;
                map.serialize_entry("change", change)?;
            }
            Fact::Alert {
                threshold,
                usage_percent,
                ..
            } => {
                map.serialize_entry("type", "alert")?;
                map.serialize_entry("threshold", threshold)?;
                map.serialize_entry("usage_percent", usage_percent)?;
            }
        }
        map.end()
    }
}

struct Lines<'a>(&'a [Line]);

impl Serialize for Lines<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(OutputLine))
    }
}

impl Fact {
    /// The fact as SPEC section 9's JSON object (`acctd tick --json`, webhook bodies).
    pub fn to_json(&self) -> Value {
        // Serializing our own types into a Value cannot fail: every key is a string.
        serde_json::to_value(self).expect("a fact serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::price::LineKind;
    use crate::domain::LockReason;

    fn at() -> DateTime<Utc> {
        "2026-03-01T00:00:00Z".parse().expect("time")
    }

    fn json(fact: &Fact) -> String {
        serde_json::to_string(fact).expect("serializes")
    }

    /// SPEC section 9: the keys in the section's order, times with whole seconds and
    /// `Z`, amounts with two decimals, sorted lock reasons, `from` null at signup.
    #[test]
    fn facts_serialize_as_spec_section_9_objects() {
        let invoice = Fact::Invoice {
            at: at(),
            org: "acme".into(),
            id: 7,
            period: "2026-03".into(),
            lines: vec![
                Line {
                    kind: LineKind::Base,
                    description: "base".into(),
                    amount: Decimal::new(200, 0),
                },
                Line {
                    kind: LineKind::MauOverage,
                    description: "overage".into(),
                    amount: Decimal::new(464, 1),
                },
            ],
            total: Decimal::new(24640, 2),
        };
        assert_eq!(
            json(&invoice),
            r#"{"at":"2026-03-01T00:00:00Z","org":"acme","type":"invoice","id":7,"period":"2026-03","lines":[{"kind":"base","amount":"200.00"},{"kind":"mau_overage","amount":"46.40"}],"total":"246.40"}"#
        );
        let transition = Fact::Transition {
            at: at() + chrono::Duration::milliseconds(1_500),
            org: "acme".into(),
            from: None,
            to: Status::Locked,
            cause: "admin_lock".into(),
            reasons: LockReasons::default()
                .with(LockReason::PaymentOverdue)
                .with(LockReason::Manual),
            actor: "ops".into(),
        };
        assert_eq!(
            json(&transition),
            r#"{"at":"2026-03-01T00:00:01Z","org":"acme","type":"transition","from":null,"to":"locked","cause":"admin_lock","lock_reasons":["manual","payment_overdue"]}"#
        );
        let email = Fact::Email {
            at: at(),
            org: "acme".into(),
            template: "invoice".into(),
            to: vec!["billing@acme.test".into()],
        };
        assert_eq!(
            json(&email),
            r#"{"at":"2026-03-01T00:00:00Z","org":"acme","type":"email","template":"invoice","to":["billing@acme.test"]}"#
        );
        let payment = Fact::Payment {
            at: at(),
            org: "acme".into(),
            invoice: 7,
            succeeded: false,
        };
        assert_eq!(
            json(&payment),
            r#"{"at":"2026-03-01T00:00:00Z","org":"acme","type":"payment","invoice":7,"outcome":"failed"}"#
        );
        // The Value form (webhook bodies, `acctd tick --json`) is the same object.
        assert_eq!(invoice.to_json().to_string(), json(&invoice));
    }

    /// Times are RFC 3339 with whole seconds (truncated) and `Z`, in and out of years
    /// 0-9999.
    #[test]
    fn times_serialize_as_chrono_writes_them() {
        for text in [
            "2026-12-31T23:59:58.999Z",
            "0987-06-05T04:03:02Z",
            "9999-12-31T23:59:59Z",
            "+10000-01-01T00:00:00Z",
            "-0001-12-31T12:00:00Z",
        ] {
            let time: DateTime<Utc> = text.parse().expect("time");
            let expected = time.to_rfc3339_opts(SecondsFormat::Secs, true);
            assert_eq!(
                serde_json::to_string(&Time(time)).expect("serializes"),
                format!("\"{expected}\"")
            );
        }
    }
}
