//! The planner: every decision acctd makes, with no I/O and no clock.
//!
//! ```text
//! snapshot = storage reads, up front        (engine)
//! plan     = Planner::new(rules, snapshot)  (here: synchronous, pure)
//!            .advance / .command / .payment / .usage, each at its instant
//! write(plan) in one transaction            (engine + storage)
//! ```
//!
//! A [`Planner`] holds the [`Snapshot`] it was given and the [`Plan`] it builds. Each
//! input (deadlines due up to an instant, a command, a payment outcome, a usage report)
//! changes the orgs it is handed and the snapshot in memory, and appends to the plan what
//! must be written: transitions, invoices with their lines, status changes, payments,
//! usage totals, alerts, outbox messages and facts. A later input sees what an earlier
//! one planned, exactly as if it had been written.
//!
//! **Charges are effects.** Where a rule charges an invoice, the planner stops and
//! returns [`Step::Charge`]; the caller asks its payment gateway and hands the outcome
//! back with [`Planner::charged`], which plans what the outcome causes and goes on. A
//! gateway that decides at once (simulation, tests) answers `Succeeded` or `Failed`; one
//! that answers later answers `Pending`, and the invoice stays open until
//! [`Planner::payment`] is given its outcome.
//!
//! **Architecture Invariant:** nothing here awaits, reads a clock or touches a database:
//! if a decision needs data, the snapshot is missing it.

mod change;
mod command;
mod deadline;
mod usage;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

pub use change::PlanChange;
pub use command::{Command, FieldError, FieldValue, Kind, FIELDS, KINDS};
pub use deadline::EXTENSION_DAYS;
pub use usage::{Outcome, UsageReport};

use super::entitlement::Matrix;
use super::fact::Fact;
use super::period::Period;
use super::price::{PriceBook, PriceError};
use super::record::{
    Actor, Invoice, InvoiceKind, InvoiceStatus, NewPayment, OutboxMessage, TransitionRecord,
};
use super::usage::Usage;
use super::{Charge, LockReason, Org, Refusal, Status, Timers};

/// The rules the planner applies (from the settings).
#[derive(Clone, Debug)]
pub struct Rules {
    pub timers: Timers,
    pub prices: PriceBook,
    pub entitlements: Matrix,
    pub currency: String,
    /// Sweep batches: the first and smallest, the largest, and the time one should take
    /// (the engine's `BatchSizer`).
    pub batch_size: u64,
    pub max_batch_size: u64,
    pub batch_target: std::time::Duration,
    pub alert_thresholds: Vec<u32>,
    pub lock_above_percent: u32,
    pub reminder_days: u32,
    /// The most account admins an org may have (`notify.max_admins_per_org`).
    pub max_admins: usize,
    /// Names of the webhook endpoints every lifecycle event is published to.
    pub webhooks: Vec<String>,
}

/// Why an input was refused; nothing of it is planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Price(#[from] PriceError),
    #[error("unknown invoice {0}")]
    UnknownInvoice(i64),
    /// A payment outcome for an invoice that is settled (paid, or voided): refused, as a
    /// conflict with the outcome that settled it.
    #[error("invoice {invoice} is {state}; no further payment outcome applies")]
    Settled { invoice: i64, state: &'static str },
    /// The snapshot lacks what the decision needs (a caller's bug, not bad input).
    #[error("the snapshot lacks {0}")]
    Incomplete(String),
}

pub type Result<T, E = Rejection> = std::result::Result<T, E>;

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::Invalid {
        field,
        message: message.into(),
    }
}

/// What decisions read, loaded up front for the orgs of one transaction (the orgs
/// themselves are handed to each call). Complete for the window the engine reads it for:
/// the invoice keys issued since the earliest instant the plan covers (and the keys that
/// close the periods of a usage batch), the org's failed invoices and any invoice named
/// by a payment outcome, the project totals of the periods the plan bills or reports, and
/// the alerts recorded for those periods.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// (org, invoice key) of every invoice that exists in the window.
    pub keys: HashSet<(String, String)>,
    /// Invoices by id: the failed ones of the orgs, and any other the caller needs.
    pub invoices: BTreeMap<i64, Invoice>,
    /// The stored totals of the projects a usage batch names, by (org, period), then
    /// project (not the orgs' other projects).
    pub projects: BTreeMap<(String, Period), BTreeMap<String, Usage>>,
    /// Each org's usage per period, summed over all its projects.
    pub usage: BTreeMap<(String, Period), Usage>,
    /// (org, period, threshold) of the alerts recorded.
    pub alerted: HashSet<(String, Period, u32)>,
    /// Invoice ids the plan may hand out, in order.
    pub invoice_ids: std::collections::VecDeque<i64>,
}

impl Snapshot {
    /// The org's usage in a period: the sum of its projects.
    pub fn usage_total(&self, org: &str, period: Period) -> Usage {
        self.usage
            .get(&(org.to_owned(), period))
            .copied()
            .unwrap_or_default()
    }

    /// The org's failed invoices, oldest first.
    fn overdue(&self, org: &str) -> Vec<Invoice> {
        self.invoices
            .values()
            .filter(|i| i.org_id == org && i.status == InvoiceStatus::Failed)
            .cloned()
            .collect()
    }

    /// Whether the period's invoice was issued (the monthly cycle that closes it ran).
    pub fn closed(&self, org: &str, period: Period) -> bool {
        self.keys
            .contains(&(org.to_owned(), cycle_key(period.next())))
    }
}

/// Refuses an org that lives on another clock than `clock` (a test clock's id, or `None`
/// for the real clock).
///
/// # Errors
/// The org's clock is not `clock`.
pub fn check_clock(org: &Org, clock: Option<&str>) -> Result<()> {
    if org.clock.as_deref() == clock {
        return Ok(());
    }
    Err(invalid(
        "org",
        match &org.clock {
            Some(clock) => format!("org `{}` lives on test clock `{clock}`", org.id),
            None => format!("org `{}` lives on the real clock", org.id),
        },
    ))
}

/// The key of the monthly cycle's invoice for `period`, unique per org.
pub fn cycle_key(period: Period) -> String {
    format!("cycle:{}", period.label())
}

/// A stored invoice's new status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    pub invoice: i64,
    pub status: InvoiceStatus,
    pub at: DateTime<Utc>,
}

/// A usage report's new project total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectTotals {
    pub org_id: String,
    pub period: Period,
    pub project: String,
    pub usage: Usage,
}

/// An alert threshold reached for the first time in a period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAlert {
    pub org_id: String,
    pub period: Period,
    pub threshold: u32,
    pub usage_mau: u64,
    pub usage_percent: String,
    pub at: DateTime<Utc>,
}

/// Everything a transaction writes besides its orgs, in the order it happened. The orgs
/// are the callers' (each call changes the org it is handed).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub transitions: Vec<TransitionRecord>,
    /// New invoices with their lines and final status.
    pub invoices: Vec<Invoice>,
    /// Status changes of stored invoices.
    pub statuses: Vec<StatusChange>,
    pub payments: Vec<NewPayment>,
    /// Orgs whose usage is purged (canceled).
    pub purges: Vec<String>,
    /// Project totals to write, the last of each (org, period, project) winning.
    pub totals: BTreeMap<(String, Period, String), ProjectTotals>,
    /// The orgs' new usage per period (the sum of all their projects) where it changed.
    pub usage: BTreeMap<(String, Period), Usage>,
    pub alerts: Vec<NewAlert>,
    pub outbox: Vec<OutboxMessage>,
    pub facts: Vec<Fact>,
}

impl Plan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
            && self.statuses.is_empty()
            && self.purges.is_empty()
            && self.totals.is_empty()
            && self.usage.is_empty()
            && self.alerts.is_empty()
    }
}

/// A charge the planner asks for: the caller's gateway decides it and hands the outcome
/// to [`Planner::charged`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    pub org: String,
    pub invoice: i64,
    pub amount: Decimal,
    pub at: DateTime<Utc>,
    then: Then,
}

/// What an outcome goes on with.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Then {
    /// The trial-end conversion, then the org's later deadlines up to `until`.
    TrialEnded {
        until: DateTime<Utc>,
    },
    /// The monthly cycle's invoice, then the org's later deadlines up to `until`.
    Cycle {
        until: DateTime<Utc>,
    },
    /// A conversion by command.
    EndTrial {
        actor: Actor,
    },
    AddPaymentMethod {
        actor: Actor,
    },
    /// The newest overdue invoice, charged again.
    Retry {
        actor: Actor,
    },
    /// A prorated plan change, applied once paid.
    Change {
        paid: change::Paid,
        actor: Actor,
    },
}

/// Where planning stands after an input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a charge must be decided and handed back with `charged`"]
pub enum Step {
    Done,
    Charge(ChargeRequest),
}

/// Plans inputs over a snapshot; see the module docs.
pub struct Planner<'r> {
    rules: &'r Rules,
    pub snapshot: Snapshot,
    pub plan: Plan,
    recorded_at: DateTime<Utc>,
    /// The test clock whose orgs are planned for (`None`: the real clock's).
    scope: Option<String>,
    /// Per org, its version as read and how many transitions this plan has recorded:
    /// together they name a transition uniquely (see [`Planner::transition_key`]).
    recorded: BTreeMap<String, (i64, u32)>,
}

impl<'r> Planner<'r> {
    /// A planner whose records are stamped `recorded_at` (the processing instant).
    pub fn new(rules: &'r Rules, snapshot: Snapshot, recorded_at: DateTime<Utc>) -> Self {
        Self {
            rules,
            snapshot,
            plan: Plan::default(),
            recorded_at,
            scope: None,
            recorded: BTreeMap::new(),
        }
    }

    /// Names the transition just recorded for `org`: its version as read and the count of
    /// its transitions in this plan. A replay of the same cause (a crash before commit, a
    /// retried batch) plans from the same version and names it alike, so its emails are
    /// deduplicated; a later transition in the same second has another name, so its email
    /// is not mistaken for a duplicate.
    fn transition_key(&self, org: &Org) -> String {
        let n = self.recorded.get(&org.id).map_or(0, |(_, n)| *n);
        format!("v{}.{n}", org.version)
    }

    /// The same planner for the orgs of a test clock: usage for other orgs is refused.
    #[must_use]
    pub fn on_clock(self, scope: Option<String>) -> Self {
        Self { scope, ..self }
    }

    /// Refuses an org that lives on another clock than the planner's.
    ///
    /// # Errors
    /// The org's clock is not the planner's.
    pub fn check_scope(&self, org: &Org) -> Result<()> {
        check_clock(org, self.scope.as_deref())
    }

    pub fn rules(&self) -> &Rules {
        self.rules
    }

    /// Hands a charge's outcome back: plans what it causes, and goes on where the charge
    /// stopped.
    ///
    /// # Errors
    /// A refusal of the command the charge was for (nothing is planned of it then); a
    /// price or snapshot error.
    pub fn charged(
        &mut self,
        org: &mut Org,
        request: ChargeRequest,
        charge: Charge,
    ) -> Result<Step> {
        let ChargeRequest {
            invoice, at, then, ..
        } = request;
        let system = Actor::system();
        match then {
            Then::TrialEnded { until } => {
                self.settle_charge(org, invoice, charge, "gateway", at)?;
                self.apply(org, super::Event::TrialEnded { charge }, &system, at)?;
                self.advance(org, until)
            }
            Then::Cycle { until } => {
                self.settle_charge(org, invoice, charge, "gateway", at)?;
                self.apply_charge(org, invoice, charge, &system, at)?;
                self.advance(org, until)
            }
            Then::EndTrial { actor } => {
                self.settle_charge(org, invoice, charge, "gateway", at)?;
                self.apply(org, super::Event::EndTrial { charge }, &actor, at)?;
                Ok(Step::Done)
            }
            Then::AddPaymentMethod { actor } => {
                self.settle_charge(org, invoice, charge, "gateway", at)?;
                self.apply(org, super::Event::AddPaymentMethod { charge }, &actor, at)?;
                Ok(Step::Done)
            }
            Then::Retry { actor } => {
                self.settle_charge(org, invoice, charge, "gateway", at)?;
                if charge == Charge::Succeeded {
                    self.apply_charge(org, invoice, charge, &actor, at)?;
                }
                Ok(Step::Done)
            }
            Then::Change { paid, actor } => {
                match charge {
                    Charge::Succeeded => {
                        self.settle_charge(org, invoice, charge, "gateway", at)?;
                        self.apply_paid(org, paid, &actor, at)?;
                    }
                    Charge::Failed | Charge::NoCard => self.decline_change(org, invoice, at)?,
                    // The change waits for the outcome (`payment`).
                    Charge::Pending => {}
                }
                Ok(Step::Done)
            }
        }
    }

    /// The plan, with one webhook message per lifecycle event and endpoint.
    pub fn finish(mut self) -> Plan {
        if self.rules.webhooks.is_empty() {
            return self.plan;
        }
        // A transition's event is keyed on the transition, like its email: the org's
        // version as read and the transition's count in the plan (facts are in the order
        // the transitions were recorded).
        let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
        for fact in &self.plan.facts {
            let transition = if let Fact::Transition { org, .. } = fact {
                let n = seen.entry(org.as_str()).or_default();
                *n += 1;
                let version = self.recorded.get(org).map_or(0, |(v, _)| *v);
                format!("v{version}.{n}")
            } else {
                String::new()
            };
            for (event, key, payload) in webhook_events(fact, &transition) {
                for endpoint in &self.rules.webhooks {
                    self.plan.outbox.push(OutboxMessage {
                        org_id: fact.org().to_owned(),
                        channel: "webhook",
                        template: event.to_owned(),
                        recipients: vec![endpoint.clone()],
                        payload: payload.clone(),
                        dedupe_key: format!("webhook:{endpoint}:{key}"),
                        at: fact.at(),
                    });
                }
            }
        }
        self.plan
    }

    /// Records a signup's transition (the org is new).
    pub fn signed_up(&mut self, org: &Org, actor: &Actor, at: DateTime<Utc>) {
        self.record(org, None, "signup", actor, at);
    }

    /// A new invoice's id.
    fn invoice_id(&mut self) -> Result<i64> {
        self.snapshot
            .invoice_ids
            .pop_front()
            .ok_or_else(|| Rejection::Incomplete("invoice ids".to_owned()))
    }

    /// Issues an invoice unless one with its key exists: records it (open), its fact and
    /// its email. `None` when the key exists (a replayed cause).
    fn issue(&mut self, org: &Org, new: NewInvoice) -> Result<Option<Invoice>> {
        let pair = (org.id.clone(), new.key.clone());
        if self.snapshot.keys.contains(&pair) {
            return Ok(None);
        }
        let invoice = Invoice {
            id: self.invoice_id()?,
            org_id: org.id.clone(),
            total: new.lines.iter().map(|l| l.amount).sum(),
            key: new.key,
            period: new.period.label(),
            kind: new.kind,
            currency: org.currency.clone(),
            lines: new.lines,
            status: InvoiceStatus::Open,
            issued_at: new.at,
            paid_at: None,
        };
        self.snapshot.keys.insert(pair);
        self.snapshot.invoices.insert(invoice.id, invoice.clone());
        self.plan.invoices.push(invoice.clone());
        let at = new.at;
        self.plan.facts.push(Fact::Invoice {
            at,
            org: org.id.clone(),
            id: invoice.id,
            period: invoice.period.clone(),
            lines: invoice.lines.clone(),
            total: invoice.total,
        });
        let payload = serde_json::json!({
            "org": org.id,
            "invoice": invoice.id,
            "period": invoice.period,
            "currency": invoice.currency,
            "total": invoice.total.to_string(),
            "lines": invoice.lines.iter().map(|l| serde_json::json!({
                "kind": l.kind.as_str(), "description": l.description, "amount": l.amount.to_string()
            })).collect::<Vec<_>>(),
        });
        self.email(
            org,
            "invoice",
            at,
            format!("{}:invoice:{}", org.id, invoice.key),
            payload,
        );
        Ok(Some(invoice))
    }

    /// Sets an invoice's status: a new one's in the plan, a stored one's as a change.
    fn set_status(&mut self, id: i64, status: InvoiceStatus, at: DateTime<Utc>) -> Result<()> {
        let paid_at = (status == InvoiceStatus::Paid).then_some(at);
        let invoice = self
            .snapshot
            .invoices
            .get_mut(&id)
            .ok_or(Rejection::UnknownInvoice(id))?;
        invoice.status = status;
        invoice.paid_at = paid_at;
        // Usually the invoice just issued: search from the newest.
        if let Some(new) = self.plan.invoices.iter_mut().rev().find(|i| i.id == id) {
            new.status = status;
            new.paid_at = paid_at;
        } else {
            self.plan.statuses.push(StatusChange {
                invoice: id,
                status,
                at,
            });
        }
        Ok(())
    }

    /// Stores a charge's outcome on the invoice and as a payment.
    fn settle_charge(
        &mut self,
        org: &Org,
        invoice: i64,
        charge: Charge,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let succeeded = match charge {
            Charge::Succeeded => true,
            Charge::Failed => false,
            Charge::Pending | Charge::NoCard => return Ok(()),
        };
        let status = if succeeded {
            InvoiceStatus::Paid
        } else {
            InvoiceStatus::Failed
        };
        self.set_status(invoice, status, at)?;
        self.record_payment(org, invoice, succeeded, source, at);
        Ok(())
    }

    /// Feeds a known charge outcome to the machine as a payment fact.
    fn apply_charge(
        &mut self,
        org: &mut Org,
        invoice: i64,
        charge: Charge,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let kind = self
            .snapshot
            .invoices
            .get(&invoice)
            .ok_or(Rejection::UnknownInvoice(invoice))?
            .kind;
        let event = match charge {
            Charge::Succeeded => super::Event::PaymentSucceeded {
                conversion: kind == InvoiceKind::Conversion,
            },
            Charge::Failed => super::Event::PaymentFailed,
            Charge::Pending | Charge::NoCard => return Ok(()),
        };
        self.apply(org, event, actor, at)
    }

    /// Records a payment outcome and reports it.
    fn record_payment(
        &mut self,
        org: &Org,
        invoice: i64,
        succeeded: bool,
        source: &str,
        at: DateTime<Utc>,
    ) {
        self.plan.payments.push(NewPayment {
            invoice_id: invoice,
            org_id: org.id.clone(),
            succeeded,
            source: source.to_owned(),
            at,
            recorded_at: self.recorded_at,
        });
        self.plan.facts.push(Fact::Payment {
            at,
            org: org.id.clone(),
            invoice,
            succeeded,
        });
    }

    fn record(
        &mut self,
        org: &Org,
        from: Option<Status>,
        cause: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) {
        self.recorded
            .entry(org.id.clone())
            .or_insert((org.version, 0))
            .1 += 1;
        let l = &org.lifecycle;
        self.plan.transitions.push(TransitionRecord {
            org_id: org.id.clone(),
            from,
            to: l.status,
            cause: cause.to_owned(),
            reasons: l.reasons,
            actor: actor.name.clone(),
            reason: actor.reason.clone(),
            at,
            recorded_at: self.recorded_at,
        });
        self.plan.facts.push(Fact::Transition {
            at,
            org: org.id.clone(),
            from,
            to: l.status,
            cause: cause.to_owned(),
            reasons: l.reasons,
            actor: actor.name.clone(),
        });
    }

    fn email(
        &mut self,
        org: &Org,
        template: &str,
        at: DateTime<Utc>,
        key: String,
        payload: serde_json::Value,
    ) {
        let to = if matches!(template, "invoice" | "payment_failed") {
            vec![org.billing_email.clone()]
        } else {
            org.admins.clone()
        };
        self.plan.facts.push(Fact::Email {
            at,
            org: org.id.clone(),
            template: template.to_owned(),
            to: to.clone(),
        });
        self.plan.outbox.push(OutboxMessage {
            org_id: org.id.clone(),
            channel: "email",
            template: template.to_owned(),
            recipients: to,
            payload,
            dedupe_key: key,
            at,
        });
    }
}

/// An invoice to issue.
struct NewInvoice {
    key: String,
    period: Period,
    kind: InvoiceKind,
    lines: Vec<super::price::Line>,
    at: DateTime<Utc>,
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn lifecycle_payload(org: &Org, at: DateTime<Utc>) -> serde_json::Value {
    let l = &org.lifecycle;
    serde_json::json!({
        "org": org.id,
        "at": rfc3339(at),
        "state": l.status.as_str(),
        "lock_reasons": l.reasons.iter().map(LockReason::as_str).collect::<Vec<_>>(),
        "trial_ends_at": l.trial_ends_at.map(rfc3339),
        "grace_ends_at": l.grace_ends_at.map(rfc3339),
        "cancel_at": l.cancel_at.map(rfc3339),
        "plan": org.plan,
        "tier": org.tier,
    })
}

/// The webhook events of a fact: `(event type, dedupe key, body)`. Emails are not
/// lifecycle events; a transition to canceled is also `org.canceled`. `transition` names a
/// transition fact within its plan ([`Planner::finish`]).
fn webhook_events(fact: &Fact, transition: &str) -> Vec<(&'static str, String, serde_json::Value)> {
    let at = rfc3339(fact.at());
    let org = fact.org();
    let with_event = |event: &str| {
        let mut body = fact.to_json();
        body["event"] = event.into();
        body
    };
    match fact {
        Fact::Email { .. } => Vec::new(),
        Fact::Transition {
            cause, to, reasons, ..
        } => {
            let key = format!("{org}:transition:{cause}:{at}:{to}:{reasons}:{transition}");
            let mut events = vec![("org.transition", key, with_event("org.transition"))];
            if *to == Status::Canceled {
                events.push((
                    "org.canceled",
                    format!("{org}:canceled"),
                    with_event("org.canceled"),
                ));
            }
            events
        }
        Fact::Invoice { id, .. } => vec![(
            "invoice.issued",
            format!("{org}:invoice:{id}"),
            with_event("invoice.issued"),
        )],
        Fact::Payment {
            invoice, succeeded, ..
        } => {
            let key = format!("{org}:payment:{invoice}:{succeeded}:{at}");
            vec![("payment", key, with_event("payment"))]
        }
        Fact::Plan { change, tier, .. } => {
            let key = format!("{org}:plan:{change}:{tier}:{at}");
            vec![("org.plan", key, with_event("org.plan"))]
        }
        Fact::Alert { threshold, .. } => {
            let key = format!("{org}:alert:{threshold}:{at}");
            vec![("org.alert", key, with_event("org.alert"))]
        }
    }
}
