//! The records a plan makes: invoices, payments, audit rows and outbox messages, and who
//! caused them. Storage writes them as they are; nothing here does I/O.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::price::Line;
use super::{LockReasons, Status};

/// Who asked, and why: stored in the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub reason: Option<String>,
}

impl Actor {
    /// The engine itself (deadlines, the monthly cycle).
    pub fn system() -> Self {
        Self {
            name: "system".to_owned(),
            reason: None,
        }
    }

    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reason: Some(reason.into()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceStatus {
    /// Issued; the charge's outcome is not known yet.
    Open,
    Paid,
    /// The last charge failed: overdue.
    Failed,
    /// A charge for a plan change that failed: the change was not made, nothing is owed.
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Failed => "failed",
            InvoiceStatus::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Paid, Self::Failed, Self::Void]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Why an invoice was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceKind {
    /// The monthly cycle's invoice for a period.
    Cycle,
    /// The rest of the month charged when a trial converts.
    Conversion,
    /// A prorated mid-period charge (upgrade, add-on).
    Proration,
}

impl InvoiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceKind::Cycle => "cycle",
            InvoiceKind::Conversion => "conversion",
            InvoiceKind::Proration => "proration",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Cycle, Self::Conversion, Self::Proration]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A stored invoice with its lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    pub id: i64,
    pub org_id: String,
    pub key: String,
    pub period: String,
    pub kind: InvoiceKind,
    pub currency: String,
    pub lines: Vec<Line>,
    pub total: Decimal,
    pub status: InvoiceStatus,
    pub issued_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// An invoice to issue.
/// One payment outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPayment {
    pub invoice_id: i64,
    pub org_id: String,
    pub succeeded: bool,
    pub source: String,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// One audit row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionRecord {
    pub org_id: String,
    pub from: Option<Status>,
    pub to: Status,
    pub cause: String,
    pub reasons: LockReasons,
    pub actor: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// One notification to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    pub org_id: String,
    pub channel: &'static str,
    pub template: String,
    pub recipients: Vec<String>,
    pub payload: serde_json::Value,
    pub dedupe_key: String,
    pub at: DateTime<Utc>,
}
