//! Commands against one org (SPEC sections 3, 5 and 10) and payment outcomes reported by
//! the gateway.

use chrono::{DateTime, Utc};

use super::deadline::Conversion;
use super::{invalid, Planner, Rejection, Result, Step, Then};
use crate::domain::record::{Actor, InvoiceKind, InvoiceStatus};
use crate::domain::{command_to_reach, decide, Charge, Event, LockReason, Org, Status};

/// Requests against one org (SPEC sections 3 and 10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    EndTrial,
    AddPaymentMethod,
    /// The card works again: overdue invoices are charged at once.
    RetryOverdue,
    Lock,
    Unlock {
        reason: LockReason,
    },
    ExtendTrial {
        days: u32,
    },
    ExtendGrace {
        days: u32,
    },
    PostponeCancel {
        days: u32,
    },
    MarkPaid,
    Cancel {
        confirm: String,
    },
    /// A generic move to a named state, accepted only along a legal edge.
    Transition {
        to: Status,
    },
    /// Upgrades, downgrades and add-ons.
    Plan(super::PlanChange),
}

impl Planner<'_> {
    /// Plans a command at `at` (the org caught up to `at` first, see
    /// [`Planner::advance`]). May stop at a charge.
    ///
    /// # Errors
    /// A refusal naming the current state and the legal moves, or bad input; nothing of
    /// the command may be written then.
    pub fn command(
        &mut self,
        org: &mut Org,
        command: &Command,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Step> {
        let event = match command {
            Command::EndTrial => {
                let provisional = if org.lifecycle.payment_method {
                    Charge::Pending
                } else {
                    Charge::NoCard
                };
                // Refused before anything is charged.
                decide(
                    &org.lifecycle,
                    Event::EndTrial {
                        charge: provisional,
                    },
                    at,
                    self.rules.timers,
                )?;
                let then = Then::EndTrial {
                    actor: actor.clone(),
                };
                match self.conversion_charge(org, at, then)? {
                    Conversion::Charge(request) => return Ok(Step::Charge(request)),
                    Conversion::Decided(charge) => Event::EndTrial { charge },
                }
            }
            Command::AddPaymentMethod => {
                let event = Event::AddPaymentMethod {
                    charge: Charge::Pending,
                };
                decide(&org.lifecycle, event, at, self.rules.timers)?;
                let converts = org.lifecycle.status == Status::Locked
                    && org.lifecycle.reasons.contains(LockReason::TrialExpired);
                org.lifecycle.payment_method = true;
                if converts {
                    let then = Then::AddPaymentMethod {
                        actor: actor.clone(),
                    };
                    match self.conversion_charge(org, at, then)? {
                        Conversion::Charge(request) => return Ok(Step::Charge(request)),
                        Conversion::Decided(charge) => Event::AddPaymentMethod { charge },
                    }
                } else {
                    event
                }
            }
            Command::RetryOverdue => return Ok(self.retry_overdue(org, actor, at)),
            Command::Lock => Event::Lock,
            Command::Unlock { reason } => Event::Unlock { reason: *reason },
            Command::ExtendTrial { days } => Event::ExtendTrial {
                days: Self::positive(*days)?,
            },
            Command::ExtendGrace { days } => Event::ExtendGrace {
                days: Self::positive(*days)?,
            },
            Command::PostponeCancel { days } => Event::PostponeCancel {
                days: Self::positive(*days)?,
            },
            Command::MarkPaid => {
                decide(&org.lifecycle, Event::MarkPaid, at, self.rules.timers)?;
                for invoice in self.snapshot.overdue(&org.id) {
                    self.record_payment(org, invoice.id, true, "manual", at);
                }
                Event::MarkPaid
            }
            Command::Cancel { confirm } => {
                if confirm != "DELETE" {
                    return Err(invalid(
                        "confirm",
                        "cancellation must be confirmed with exactly `DELETE`",
                    ));
                }
                Event::Cancel
            }
            Command::Plan(change) => return self.change_plan(org, change, actor, at),
            Command::Transition { to } => {
                if *to == Status::Canceled {
                    return Err(invalid(
                        "to",
                        "use `cancel` with the confirmation `DELETE` to cancel",
                    ));
                }
                let event = command_to_reach(&org.lifecycle, *to, at, self.rules.timers)?;
                let command = match event {
                    Event::Lock => Command::Lock,
                    Event::EndTrial { .. } => Command::EndTrial,
                    Event::MarkPaid => Command::MarkPaid,
                    Event::Unlock { reason } => Command::Unlock { reason },
                    other => {
                        return Err(invalid("to", format!("unsupported edge {}", other.cause())))
                    }
                };
                return self.command(org, &command, actor, at);
            }
        };
        self.apply(org, event, actor, at)?;
        Ok(Step::Done)
    }

    /// Asks for the newest overdue invoice to be charged again; a success settles all.
    fn retry_overdue(&mut self, org: &Org, actor: &Actor, at: DateTime<Utc>) -> Step {
        if org.lifecycle.status == Status::Canceled {
            return Step::Done;
        }
        let Some(invoice) = self.snapshot.overdue(&org.id).pop() else {
            return Step::Done;
        };
        Step::Charge(super::ChargeRequest {
            org: org.id.clone(),
            invoice: invoice.id,
            amount: invoice.total,
            at,
            then: Then::Retry {
                actor: actor.clone(),
            },
        })
    }

    /// Refuses an outcome for an invoice that is unknown or settled: paid already, or
    /// voided (checked before the org is caught up). A failed invoice is not settled: a
    /// `succeeded` after a `failed` is a retry that went through.
    ///
    /// # Errors
    /// [`Rejection::UnknownInvoice`], or [`Rejection::Settled`].
    pub fn payable(&self, invoice_id: i64) -> Result<&crate::domain::record::Invoice> {
        let invoice = self
            .snapshot
            .invoices
            .get(&invoice_id)
            .ok_or(Rejection::UnknownInvoice(invoice_id))?;
        let state = match invoice.status {
            InvoiceStatus::Paid => "paid already",
            InvoiceStatus::Void => "void",
            _ => return Ok(invoice),
        };
        Err(Rejection::Settled {
            invoice: invoice_id,
            state,
        })
    }

    /// Plans a payment outcome the gateway reported for an invoice (the org caught up to
    /// `at` first, and [`Planner::payable`] checked before that). The invoice must be in
    /// the snapshot.
    ///
    /// # Errors
    /// An unknown, paid or voided invoice; nothing is planned then.
    pub fn payment(
        &mut self,
        org: &mut Org,
        invoice_id: i64,
        succeeded: bool,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let invoice = self
            .snapshot
            .invoices
            .get(&invoice_id)
            .ok_or(Rejection::UnknownInvoice(invoice_id))?;
        match (invoice.kind, invoice.status) {
            (_, InvoiceStatus::Void) => Err(Rejection::Settled {
                invoice: invoice_id,
                state: "void",
            }),
            (InvoiceKind::Proration, _) => {
                let key = invoice.key.clone();
                self.plan_payment(org, invoice_id, &key, succeeded, actor, at)
            }
            _ => {
                let charge = if succeeded {
                    Charge::Succeeded
                } else {
                    Charge::Failed
                };
                self.settle_charge(org, invoice_id, charge, "gateway", at)?;
                self.apply_charge(org, invoice_id, charge, actor, at)
            }
        }
    }
}
