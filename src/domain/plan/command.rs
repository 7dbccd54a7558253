//! Commands against one org (SPEC sections 3, 5 and 10) and payment outcomes reported by
//! the gateway.

use chrono::{DateTime, Utc};

use super::deadline::{Conversion, EXTENSION_DAYS};
use super::{invalid, PlanChange, Planner, Rejection, Result, Step, Then};
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
    Plan(PlanChange),
}

/// One kind of [`Command`]: a row of [`KINDS`], the table that the CLI, the API, scenarios
/// and the console read its name, fields and audience from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// Its name on every surface (the CLI spells it in kebab-case).
    pub name: &'static str,
    /// The fields it takes besides the reason, named as in JSON, forms and scenarios.
    pub fields: &'static [&'static str],
    /// What it does, in a few words (the console's label).
    pub summary: &'static str,
    flags: u8,
}

const ADMIN: u8 = 1;
const MANUAL: u8 = 2;
const CUSTOMER: u8 = 4;
const PLAN: u8 = 8;

const fn kind(
    name: &'static str,
    fields: &'static [&'static str],
    flags: u8,
    summary: &'static str,
) -> Kind {
    Kind {
        name,
        fields,
        summary,
        flags,
    }
}

/// Every field a command may take: [`Kind::command`] refuses one its kind does not take.
pub const FIELDS: [&str; 6] = ["days", "lock_reason", "to", "confirm", "tier", "addon"];

/// Every kind of command, one row each: name, fields, audience, summary. `ADMIN`: only an
/// admin may run it; `MANUAL`: a manual operation of SPEC section 10; `CUSTOMER`: the org
/// may ask for it itself; `PLAN`: it changes the plan rather than the lifecycle.
#[rustfmt::skip]
pub const KINDS: [Kind; 17] = [
    kind("lock",                 &[],             ADMIN | MANUAL,            "Lock"),
    kind("unlock",               &["lock_reason"],ADMIN | MANUAL,            "Unlock"),
    kind("extend_trial",         &["days"],       ADMIN | MANUAL,            "Extend the trial"),
    kind("extend_grace",         &["days"],       ADMIN | MANUAL,            "Extend the grace period"),
    kind("postpone_cancel",      &["days"],       ADMIN | MANUAL,            "Postpone the cancellation"),
    kind("end_trial",            &[],             ADMIN | MANUAL | CUSTOMER, "End the trial now"),
    kind("mark_paid",            &[],             ADMIN | MANUAL,            "Mark the overdue invoices paid"),
    kind("transition",           &["to"],         ADMIN | MANUAL,            "Move to a state"),
    kind("cancel",               &["confirm"],    ADMIN | CUSTOMER,          "Cancel the org"),
    kind("add_payment_method",   &[],             CUSTOMER,                  "Record that a card was added"),
    kind("retry_overdue",        &[],             0,                         "Retry the overdue invoices"),
    kind("upgrade",              &["tier"],       PLAN | CUSTOMER,           "Upgrade the tier"),
    kind("downgrade",            &["tier"],       PLAN | CUSTOMER,           "Downgrade the tier"),
    kind("cancel_downgrade",     &[],             PLAN | CUSTOMER,           "Cancel the scheduled downgrade"),
    kind("add_addon",            &["addon"],      PLAN | CUSTOMER,           "Add an add-on"),
    kind("remove_addon",         &["addon"],      PLAN | CUSTOMER,           "Remove an add-on"),
    kind("cancel_addon_removal", &["addon"],      PLAN | CUSTOMER,           "Keep an add-on scheduled for removal"),
];

/// A command that cannot be built from its name and fields.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("unknown operation `{name}`, expected one of: {expected}")]
    Unknown { name: String, expected: String },
    #[error("`{command}` needs `{field}`")]
    Missing {
        command: &'static str,
        field: &'static str,
    },
    #[error("`{field}` does not apply to `{command}`")]
    Extra {
        command: &'static str,
        field: &'static str,
    },
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl FieldError {
    /// The field at fault; `None` for an unknown name.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            FieldError::Unknown { .. } => None,
            FieldError::Missing { field, .. }
            | FieldError::Extra { field, .. }
            | FieldError::Invalid { field, .. } => Some(field),
        }
    }
}

/// A field's value, typed as JSON carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    Number(u32),
    Text(String),
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Number(n) => write!(f, "{n}"),
            FieldValue::Text(t) => f.write_str(t),
        }
    }
}

impl Kind {
    /// Only an admin may run it (otherwise an operator may too).
    pub fn admin(&self) -> bool {
        self.flags & ADMIN != 0
    }

    /// One of the manual operations of SPEC section 10: `POST /v1/orgs/{id}/admin/{op}`,
    /// a scenario's `admin` step.
    pub fn manual(&self) -> bool {
        self.flags & MANUAL != 0
    }

    /// The customer may ask for it: a scenario action of its own.
    pub fn customer(&self) -> bool {
        self.flags & CUSTOMER != 0
    }

    /// It changes the plan (tier, add-ons) rather than the lifecycle.
    pub fn plan(&self) -> bool {
        self.flags & PLAN != 0
    }

    /// The kind named `name` among those `among` accepts.
    ///
    /// # Errors
    /// [`FieldError::Unknown`] listing the names `among` accepts.
    pub fn named(name: &str, among: impl Fn(&Kind) -> bool) -> Result<&'static Kind, FieldError> {
        let kinds = KINDS.iter().filter(|k| among(k));
        kinds
            .clone()
            .find(|k| k.name == name)
            .ok_or_else(|| FieldError::Unknown {
                name: name.to_owned(),
                expected: kinds.map(|k| k.name).collect::<Vec<_>>().join(", "),
            })
    }

    /// The command of this kind with the fields `field` gives by name (`None`: not given).
    ///
    /// # Errors
    /// A field this kind does not take, one it needs and lacks, or a malformed one.
    pub fn command(&self, field: impl Fn(&str) -> Option<String>) -> Result<Command, FieldError> {
        let command = self.name;
        if let Some(extra) = FIELDS
            .into_iter()
            .find(|f| !self.fields.contains(f) && field(f).is_some())
        {
            return Err(FieldError::Extra {
                command,
                field: extra,
            });
        }
        let text = |name: &'static str| {
            field(name).ok_or(FieldError::Missing {
                command,
                field: name,
            })
        };
        let bad = |field: &'static str, message: String| FieldError::Invalid { field, message };
        // Numbers may be written with `_` or `,` between digit groups (forms).
        let number = |name: &'static str, what: &str| {
            let value = text(name)?;
            value
                .trim()
                .replace(['_', ','], "")
                .parse::<u32>()
                .map_err(|_| bad(name, format!("`{value}` is not {what}")))
        };
        let days = || {
            let days = number("days", "a whole number of days")?;
            if EXTENSION_DAYS.contains(&days) {
                Ok(days)
            } else {
                let (min, max) = (EXTENSION_DAYS.start(), EXTENSION_DAYS.end());
                Err(bad("days", format!("{days} is out of range {min}..={max}")))
            }
        };
        let tier = || number("tier", "a tier in MAU, such as 20000");
        let addon = || text("addon");
        Ok(match command {
            "lock" => Command::Lock,
            "unlock" => Command::Unlock {
                reason: field("lock_reason")
                    .map_or(Ok(LockReason::Manual), |r| r.parse())
                    .map_err(|e| bad("lock_reason", e.to_string()))?,
            },
            "extend_trial" => Command::ExtendTrial { days: days()? },
            "extend_grace" => Command::ExtendGrace { days: days()? },
            "postpone_cancel" => Command::PostponeCancel { days: days()? },
            "end_trial" => Command::EndTrial,
            "mark_paid" => Command::MarkPaid,
            "transition" => Command::Transition {
                to: text("to")?
                    .parse()
                    .map_err(|e: crate::domain::UnknownName| bad("to", e.to_string()))?,
            },
            "cancel" => Command::Cancel {
                confirm: text("confirm")?,
            },
            "add_payment_method" => Command::AddPaymentMethod,
            "retry_overdue" => Command::RetryOverdue,
            "upgrade" => Command::Plan(PlanChange::Upgrade { tier: tier()? }),
            "downgrade" => Command::Plan(PlanChange::Downgrade { tier: tier()? }),
            "cancel_downgrade" => Command::Plan(PlanChange::CancelDowngrade),
            "add_addon" => Command::Plan(PlanChange::AddAddon { addon: addon()? }),
            "remove_addon" => Command::Plan(PlanChange::RemoveAddon { addon: addon()? }),
            "cancel_addon_removal" => {
                Command::Plan(PlanChange::CancelAddonRemoval { addon: addon()? })
            }
            // Proven unreachable: `self` is a row of KINDS, and the table's tests build
            // every row.
            other => unreachable!("no command for the kind `{other}`"),
        })
    }
}

impl Command {
    /// The command named `name` (a row of [`KINDS`]) with the fields `field` gives.
    ///
    /// # Errors
    /// An unknown name (listing the legal ones), or a field error of [`Kind::command`].
    pub fn from_fields(
        name: &str,
        field: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, FieldError> {
        Kind::named(name, |_| true)?.command(field)
    }

    /// Its name in [`KINDS`].
    pub fn name(&self) -> &'static str {
        match self {
            Command::EndTrial => "end_trial",
            Command::AddPaymentMethod => "add_payment_method",
            Command::RetryOverdue => "retry_overdue",
            Command::Lock => "lock",
            Command::Unlock { .. } => "unlock",
            Command::ExtendTrial { .. } => "extend_trial",
            Command::ExtendGrace { .. } => "extend_grace",
            Command::PostponeCancel { .. } => "postpone_cancel",
            Command::MarkPaid => "mark_paid",
            Command::Cancel { .. } => "cancel",
            Command::Transition { .. } => "transition",
            Command::Plan(change) => change.name(),
        }
    }

    /// Its row of [`KINDS`].
    pub fn kind(&self) -> &'static Kind {
        let name = self.name();
        // Proven: every name above is a row of KINDS (checked by the table's tests).
        KINDS
            .iter()
            .find(|k| k.name == name)
            .expect("every command has a row")
    }

    /// Its fields with their values, in the order of its row; [`Command::from_fields`]
    /// builds the same command from them.
    pub fn fields(&self) -> Vec<(&'static str, FieldValue)> {
        use FieldValue::{Number, Text};
        match self {
            Command::Unlock { reason } => vec![("lock_reason", Text(reason.as_str().to_owned()))],
            Command::ExtendTrial { days }
            | Command::ExtendGrace { days }
            | Command::PostponeCancel { days } => {
                vec![("days", Number(*days))]
            }
            Command::Transition { to } => vec![("to", Text(to.as_str().to_owned()))],
            Command::Cancel { confirm } => vec![("confirm", Text(confirm.clone()))],
            Command::Plan(PlanChange::Upgrade { tier } | PlanChange::Downgrade { tier }) => {
                vec![("tier", Number(*tier))]
            }
            Command::Plan(
                PlanChange::AddAddon { addon }
                | PlanChange::RemoveAddon { addon }
                | PlanChange::CancelAddonRemoval { addon },
            ) => vec![("addon", Text(addon.clone()))],
            _ => vec![],
        }
    }

    /// A change to `tier` from `current`: an upgrade if above, a downgrade if below;
    /// `None` when it is the current tier.
    pub fn change_tier(tier: u32, current: u32) -> Option<Self> {
        match tier.cmp(&current) {
            std::cmp::Ordering::Greater => Some(Command::Plan(PlanChange::Upgrade { tier })),
            std::cmp::Ordering::Less => Some(Command::Plan(PlanChange::Downgrade { tier })),
            std::cmp::Ordering::Equal => None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One command of every kind, with its fields as text.
    fn every_command() -> Vec<Command> {
        KINDS
            .iter()
            .map(|k| {
                k.command(|f| {
                    k.fields.contains(&f).then(|| match f {
                        "days" => "7".into(),
                        "to" => "locked".into(),
                        "lock_reason" => "overage".into(),
                        "tier" => "10000".into(),
                        "confirm" => "DELETE".into(),
                        _ => "journeys".into(),
                    })
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn every_name_round_trips_through_its_fields() {
        for command in every_command() {
            let fields = command.fields();
            let back = Command::from_fields(command.name(), |f| {
                fields
                    .iter()
                    .find(|(n, _)| *n == f)
                    .map(|(_, v)| v.to_string())
            });
            assert_eq!(back, Ok(command.clone()), "{}", command.name());
            let names: Vec<_> = fields.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, command.kind().fields, "{}", command.name());
        }
        let mut names: Vec<_> = KINDS.iter().map(|k| k.name).collect();
        names.dedup();
        assert_eq!(names.len(), KINDS.len(), "names are unique");
    }

    #[test]
    fn an_unknown_name_lists_the_legal_ones() {
        let err = Kind::named("nuke", Kind::manual).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown operation `nuke`, expected one of: lock, unlock, extend_trial, \
             extend_grace, postpone_cancel, end_trial, mark_paid, transition"
        );
        assert_eq!(err.field(), None);
        let err = Command::from_fields("nuke", |_| None).unwrap_err();
        assert!(err.to_string().ends_with("cancel_addon_removal"), "{err}");
    }

    /// A command, its fields as given, the field at fault and the message.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );

    #[test]
    fn a_missing_extra_or_malformed_field_is_named() {
        let given = |pairs: &'static [(&str, &str)]| {
            move |f: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == f)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let cases: [Case; 7] = [
            ("extend_trial", &[], "days", "`extend_trial` needs `days`"),
            ("lock", &[("days", "3")], "days", "`days` does not apply to `lock`"),
            ("extend_grace", &[("days", "0")], "days", "0 is out of range 1..=3650"),
            ("postpone_cancel", &[("days", "soon")], "days", "`soon` is not a whole number of days"),
            ("transition", &[("to", "gone")], "to", "unknown state `gone`, expected one of: trial, active, grace_period, locked, canceled"),
            ("unlock", &[("lock_reason", "bogus")], "lock_reason", "unknown lock reason `bogus`, expected one of: manual, overage, payment_overdue, trial_expired"),
            ("upgrade", &[("tier", "lots")], "tier", "`lots` is not a tier in MAU, such as 20000"),
        ];
        for (name, fields, field, message) in cases {
            let err = Command::from_fields(name, given(fields)).unwrap_err();
            assert_eq!(
                (err.field(), err.to_string().as_str()),
                (Some(field), message),
                "{name}"
            );
        }
        assert_eq!(
            Command::from_fields("unlock", |_| None),
            Ok(Command::Unlock {
                reason: LockReason::Manual
            })
        );
        assert_eq!(
            Command::from_fields("downgrade", given(&[("tier", "10_000")])),
            Ok(Command::Plan(PlanChange::Downgrade { tier: 10_000 }))
        );
    }
}
