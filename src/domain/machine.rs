//! The lifecycle state machine (statig), used as a pure decision function: the current
//! [`Lifecycle`], an [`Event`] and its effective instant in; the new lifecycle, the
//! transition to record and a list of [`Effect`]s out. Nothing here does I/O.
//!
//! The handlers below are SPEC section 3's transition table, read top-down. Each table row
//! calls [`Context::record`]; a row that changes the state returns `Transition`. A fact
//! that no row covers is ignored (it is still stored by the caller); a command that no row
//! covers is refused with the legal moves.
//!
//! We never keep a `statig::StateMachine` alive: the state lives in a database row, and
//! statig's only way to set the state of an existing machine (`state_mut`) is `unsafe`,
//! which this workspace forbids. Instead [`decide`] rebuilds statig's `State` from the row
//! and dispatches through `StateExt::handle`, which runs the leaf handler and its
//! superstate exactly as the machine would. No entry or exit actions exist, so nothing is
//! skipped.

// statig passes events by reference; `Event` happens to be small enough to copy.
#![allow(clippy::trivially_copy_pass_by_ref)]

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use statig::prelude::*;

use super::{Lifecycle, LockReason, LockReasons, Status, Timers};

/// The outcome of the charge that accompanies a conversion (trial end, card added after a
/// `trial_expired` lock). The caller charges before deciding, since a failed charge picks
/// another row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// No card on file: nothing was charged.
    NoCard,
    Succeeded,
    Failed,
    /// A production gateway reports the outcome later, as a payment event.
    Pending,
}

/// What happens to an org. Facts (past tense) are always accepted; commands (imperative)
/// are refused where the table has no row for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `trial_ends_at` reached.
    TrialEnded {
        charge: Charge,
    },
    /// `grace_ends_at` reached.
    GraceExpired,
    /// `cancel_at` reached.
    CancelDue,
    /// An invoice payment failed.
    PaymentFailed,
    /// An invoice was paid; `conversion` when it was the invoice that converts a trial.
    PaymentSucceeded {
        conversion: bool,
    },
    /// Usage went strictly above the lock threshold (300 % by default).
    UsageExceeded,
    /// End the trial now (admin or customer).
    EndTrial {
        charge: Charge,
    },
    /// A payment method was added (or replaced).
    AddPaymentMethod {
        charge: Charge,
    },
    /// Admin lock.
    Lock,
    /// Admin unlock of one reason.
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
    /// An operator settles the overdue invoices out of band.
    MarkPaid,
    /// A plan upgrade; `lifts_overage` when 3 × new tier covers the usage that locked.
    Upgrade {
        lifts_overage: bool,
    },
    /// Cancel, confirmed with `DELETE`.
    Cancel,
}

impl Event {
    /// Facts are recorded whatever the state; commands may be refused.
    pub fn is_fact(self) -> bool {
        matches!(
            self,
            Event::TrialEnded { .. }
                | Event::GraceExpired
                | Event::CancelDue
                | Event::PaymentFailed
                | Event::PaymentSucceeded { .. }
                | Event::UsageExceeded
        )
    }

    /// The `cause` stored in the audit trail.
    pub fn cause(self) -> &'static str {
        match self {
            Event::TrialEnded { .. } => "trial_ended",
            Event::GraceExpired => "grace_expired",
            Event::CancelDue => "auto_cancel",
            Event::PaymentFailed => "payment_failed",
            Event::PaymentSucceeded { .. } => "payment_succeeded",
            Event::UsageExceeded => "overage",
            Event::EndTrial { .. } => "end_trial",
            Event::AddPaymentMethod { .. } => "payment_method_added",
            Event::Lock => "admin_lock",
            Event::Unlock { .. } => "admin_unlock",
            Event::ExtendTrial { .. } => "extend_trial",
            Event::ExtendGrace { .. } => "extend_grace",
            Event::PostponeCancel { .. } => "postpone_cancel",
            Event::MarkPaid => "mark_paid",
            Event::Upgrade { .. } => "upgrade",
            Event::Cancel => "cancel",
        }
    }

    /// The command's name as a user types it (`end_trial`, `unlock`, ...).
    pub fn command_name(self) -> &'static str {
        match self {
            Event::EndTrial { .. } => "end_trial",
            Event::AddPaymentMethod { .. } => "add_payment_method",
            Event::Lock => "lock",
            Event::Unlock { .. } => "unlock",
            Event::ExtendTrial { .. } => "extend_trial",
            Event::ExtendGrace { .. } => "extend_grace",
            Event::PostponeCancel { .. } => "postpone_cancel",
            Event::MarkPaid => "mark_paid",
            Event::Upgrade { .. } => "upgrade",
            Event::Cancel => "cancel",
            fact => fact.cause(),
        }
    }
}

/// Notifications a transition causes (SPEC section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Template {
    TrialEnded,
    PaymentFailed,
    AccountLocked,
    OverageLocked,
    AccountUnlocked,
    Canceled,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Template::TrialEnded => "trial_ended",
            Template::PaymentFailed => "payment_failed",
            Template::AccountLocked => "account_locked",
            Template::OverageLocked => "overage_locked",
            Template::AccountUnlocked => "account_unlocked",
            Template::Canceled => "canceled",
        }
    }
}

/// Work the caller carries out in the same database transaction as the transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Notify(Template),
    /// Mark every overdue invoice paid.
    SettleOverdue,
    /// Purge projects and usage; emit `org.canceled`.
    Purge,
}

/// A recorded transition: a row of the table that applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
    pub cause: &'static str,
}

/// What [`decide`] returns for an accepted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub lifecycle: Lifecycle,
    /// `None` for a fact no row covers, or a command that changes no lifecycle field
    /// worth an audit row (adding a card during trial).
    pub transition: Option<Transition>,
    pub effects: Vec<Effect>,
}

/// A command the rules refuse: names the current state and the legal moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub command: &'static str,
    pub status: Status,
    pub reasons: LockReasons,
    pub why: String,
    pub legal: Vec<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {}: {}; org is {}",
            self.command, self.why, self.status
        )?;
        if !self.reasons.is_empty() {
            write!(f, " ({})", self.reasons)?;
        }
        if self.legal.is_empty() {
            f.write_str("; no moves are legal")
        } else {
            write!(f, "; legal moves: {}", self.legal.join(", "))
        }
    }
}

impl std::error::Error for Refusal {}

/// The statig context: the working copy the handlers change, and what they emit.
pub struct Context {
    at: DateTime<Utc>,
    timers: Timers,
    org: Lifecycle,
    effects: Vec<Effect>,
    recorded: bool,
    refusal: Option<String>,
}

impl Context {
    /// This event applied a row of the table: write an audit record.
    fn record(&mut self) {
        self.recorded = true;
    }

    fn refuse(&mut self, why: impl Into<String>) -> Outcome<State> {
        self.refusal = Some(why.into());
        Handled
    }

    fn notify(&mut self, template: Template) {
        self.effects.push(Effect::Notify(template));
    }

    fn days(days: u32) -> Duration {
        Duration::days(i64::from(days))
    }

    /// Sets `cancel_at` from now if it is not set yet.
    fn start_cancel_clock(&mut self) {
        if self.org.cancel_at.is_none() {
            self.org.cancel_at = Some(self.at + self.timers.lock_to_cancel);
        }
    }

    /// Trial conversion: the org becomes a subscriber, billed from the next 1st.
    fn convert(&mut self) {
        self.org.trial_ends_at = None;
        self.org.subscriber = true;
        self.org.next_cycle_at = Some(super::period::next_first_after(self.at));
    }

    /// Where an org goes when its last lock reason is dropped.
    fn unlocked_state(&mut self) -> State {
        self.org.cancel_at = None;
        self.notify(Template::AccountUnlocked);
        if self.org.in_trial() {
            State::trial()
        } else if self.org.grace_ends_at.is_some_and(|at| at > self.at) {
            State::grace_period()
        } else {
            State::active()
        }
    }

    /// Drops the payment-related reasons' auto-cancel when neither is left.
    fn drop_reason(&mut self, reasons: &mut LockReasons, reason: LockReason) {
        *reasons = reasons.without(reason);
        if !reasons.contains(LockReason::PaymentOverdue)
            && !reasons.contains(LockReason::TrialExpired)
        {
            self.org.cancel_at = None;
        }
    }

    fn lock(&mut self, reason: LockReason) -> Outcome<State> {
        self.record();
        self.notify(lock_template(reason));
        Transition(State::locked(LockReasons::one(reason)))
    }

    fn cancel(&mut self) -> Outcome<State> {
        self.record();
        self.org.trial_ends_at = None;
        self.org.grace_ends_at = None;
        self.org.cancel_at = None;
        self.org.next_cycle_at = None;
        // SPEC 3: a subscriber until it is canceled.
        self.org.subscriber = false;
        self.effects.push(Effect::Purge);
        self.notify(Template::Canceled);
        Transition(State::canceled())
    }
}

fn lock_template(reason: LockReason) -> Template {
    if reason == LockReason::Overage {
        Template::OverageLocked
    } else {
        Template::AccountLocked
    }
}

/// statig's shared storage: empty, everything lives in the [`Context`].
#[derive(Default)]
pub struct Machine;

#[state_machine(
    initial = "State::trial()",
    state(derive(Debug, Clone, PartialEq, Eq)),
    superstate(derive(Debug))
)]
impl Machine {
    /// - [`Event::TrialEnded`], [`Event::EndTrial`] => [`active`](Self::active) with a card,
    ///   [`grace_period`](Self::grace_period) if its charge failed,
    ///   [`locked`](Self::locked)`{trial_expired}` without
    /// - [`Event::UsageExceeded`] => [`locked`](Self::locked)`{overage}`
    #[state(superstate = "open")]
    fn trial(context: &mut Context, event: &Event) -> Outcome<State> {
        match *event {
            Event::TrialEnded { charge } | Event::EndTrial { charge } => {
                context.record();
                context.notify(Template::TrialEnded);
                if context.org.payment_method {
                    context.convert();
                    if charge == Charge::Failed {
                        context.org.grace_ends_at = Some(context.at + context.timers.grace);
                        context.notify(Template::PaymentFailed);
                        Transition(State::grace_period())
                    } else {
                        Transition(State::active())
                    }
                } else {
                    context.org.trial_ends_at = None;
                    context.start_cancel_clock();
                    context.lock(LockReason::TrialExpired)
                }
            }
            Event::UsageExceeded => context.lock(LockReason::Overage),
            _ => Super,
        }
    }

    /// - [`Event::PaymentFailed`] => [`grace_period`](Self::grace_period), grace deadline set
    /// - [`Event::UsageExceeded`] => [`locked`](Self::locked)`{overage}`
    #[state(superstate = "open")]
    fn active(context: &mut Context, event: &Event) -> Outcome<State> {
        match *event {
            Event::PaymentFailed => {
                context.record();
                context.org.grace_ends_at = Some(context.at + context.timers.grace);
                context.notify(Template::PaymentFailed);
                Transition(State::grace_period())
            }
            Event::UsageExceeded => context.lock(LockReason::Overage),
            _ => Super,
        }
    }

    /// - [`Event::PaymentFailed`] => itself, grace deadline unchanged
    /// - [`Event::PaymentSucceeded`], [`Event::MarkPaid`] => [`active`](Self::active)
    /// - [`Event::GraceExpired`] => [`locked`](Self::locked)`{payment_overdue}`, cancel set
    /// - [`Event::UsageExceeded`] => [`locked`](Self::locked)`{overage}`, grace kept
    /// - [`Event::Upgrade`] => refused: settle the payment first
    #[state(superstate = "open")]
    fn grace_period(context: &mut Context, event: &Event) -> Outcome<State> {
        match *event {
            Event::PaymentFailed => {
                context.record();
                context.notify(Template::PaymentFailed);
                Handled
            }
            Event::PaymentSucceeded { .. } | Event::MarkPaid => {
                context.record();
                context.org.grace_ends_at = None;
                context.effects.push(Effect::SettleOverdue);
                Transition(State::active())
            }
            Event::GraceExpired => {
                context.org.grace_ends_at = None;
                context.start_cancel_clock();
                context.lock(LockReason::PaymentOverdue)
            }
            Event::UsageExceeded => context.lock(LockReason::Overage),
            Event::Upgrade { .. } => {
                context.refuse("a payment is overdue: settle the payment first")
            }
            _ => Super,
        }
    }

    /// Every change of reasons is a recorded `locked` → `locked` transition; when the last
    /// reason goes the org returns to trial, `grace_period` or active.
    #[state(superstate = "open")]
    fn locked(reasons: &mut LockReasons, context: &mut Context, event: &Event) -> Outcome<State> {
        let before = *reasons;
        match *event {
            Event::TrialEnded { charge } | Event::EndTrial { charge } => {
                if !context.org.in_trial() {
                    return if event.is_fact() {
                        Handled
                    } else {
                        context.refuse("the trial has already ended")
                    };
                }
                context.record();
                context.notify(Template::TrialEnded);
                if context.org.payment_method {
                    context.convert();
                    if charge == Charge::Failed && context.org.grace_ends_at.is_none() {
                        context.org.grace_ends_at = Some(context.at + context.timers.grace);
                        context.notify(Template::PaymentFailed);
                    }
                } else {
                    context.org.trial_ends_at = None;
                    *reasons = reasons.with(LockReason::TrialExpired);
                    context.start_cancel_clock();
                    context.notify(Template::AccountLocked);
                }
            }
            Event::PaymentFailed => {
                context.record();
                if !reasons.contains(LockReason::PaymentOverdue)
                    && context.org.grace_ends_at.is_none()
                {
                    context.org.grace_ends_at = Some(context.at + context.timers.grace);
                    context.notify(Template::PaymentFailed);
                }
            }
            Event::GraceExpired => {
                context.record();
                context.org.grace_ends_at = None;
                *reasons = reasons.with(LockReason::PaymentOverdue);
                context.start_cancel_clock();
                context.notify(Template::AccountLocked);
            }
            Event::PaymentSucceeded { conversion } => {
                let overdue = reasons.contains(LockReason::PaymentOverdue)
                    || context.org.grace_ends_at.is_some();
                let converts = conversion && reasons.contains(LockReason::TrialExpired);
                if !overdue && !converts {
                    return Handled;
                }
                context.record();
                context.org.grace_ends_at = None;
                context.effects.push(Effect::SettleOverdue);
                context.drop_reason(reasons, LockReason::PaymentOverdue);
                if converts {
                    context.org.subscriber = true;
                    context.org.next_cycle_at = Some(super::period::next_first_after(context.at));
                    context.drop_reason(reasons, LockReason::TrialExpired);
                }
            }
            Event::MarkPaid => {
                if !reasons.contains(LockReason::PaymentOverdue)
                    && context.org.grace_ends_at.is_none()
                {
                    return context.refuse("no payment is overdue");
                }
                context.record();
                context.org.grace_ends_at = None;
                context.effects.push(Effect::SettleOverdue);
                context.drop_reason(reasons, LockReason::PaymentOverdue);
            }
            Event::AddPaymentMethod { charge } if reasons.contains(LockReason::TrialExpired) => {
                context.record();
                context.org.payment_method = true;
                if charge == Charge::Succeeded {
                    context.org.subscriber = true;
                    context.org.next_cycle_at = Some(super::period::next_first_after(context.at));
                    context.drop_reason(reasons, LockReason::TrialExpired);
                }
            }
            Event::UsageExceeded => {
                if reasons.contains(LockReason::Overage) {
                    return Handled;
                }
                context.record();
                *reasons = reasons.with(LockReason::Overage);
                context.notify(Template::OverageLocked);
            }
            Event::Upgrade { lifts_overage } => {
                if reasons.contains(LockReason::PaymentOverdue)
                    || reasons.contains(LockReason::TrialExpired)
                {
                    return context.refuse("a payment is overdue: settle the payment first");
                }
                if !(lifts_overage && reasons.contains(LockReason::Overage)) {
                    return Handled;
                }
                context.record();
                context.drop_reason(reasons, LockReason::Overage);
            }
            Event::Unlock { reason } => {
                if !reasons.contains(reason) {
                    return context.refuse(format!("the org is not locked for {reason}"));
                }
                context.record();
                context.drop_reason(reasons, reason);
            }
            Event::Lock => {
                if reasons.contains(LockReason::Manual) {
                    return context.refuse("the org is already locked manually");
                }
                context.record();
                *reasons = reasons.with(LockReason::Manual);
                context.notify(Template::AccountLocked);
            }
            Event::CancelDue => return context.cancel(),
            _ => return Super,
        }
        if reasons.is_empty() && !before.is_empty() {
            Transition(context.unlocked_state())
        } else {
            Handled
        }
    }

    /// Terminal: facts are ignored, every command is refused.
    #[state]
    fn canceled(event: &Event) -> Outcome<State> {
        let _ = event;
        Super
    }

    /// What every state but `canceled` accepts.
    ///
    /// - [`Event::Lock`] => [`locked`](Self::locked)`{manual}`
    /// - [`Event::Cancel`] => [`canceled`](Self::canceled)
    /// - [`Event::AddPaymentMethod`] => unchanged, card on file
    /// - [`Event::Upgrade`] => unchanged (the plan changes outside the machine)
    /// - [`Event::ExtendTrial`], [`Event::ExtendGrace`], [`Event::PostponeCancel`] => a
    ///   pending deadline moves later
    #[superstate]
    fn open(context: &mut Context, event: &Event) -> Outcome<State> {
        match *event {
            Event::Lock => context.lock(LockReason::Manual),
            Event::Cancel => context.cancel(),
            Event::AddPaymentMethod { .. } => {
                context.org.payment_method = true;
                Handled
            }
            Event::Upgrade { .. } => Handled,
            Event::ExtendTrial { days } => match context.org.trial_ends_at {
                Some(at) => {
                    context.record();
                    context.org.trial_ends_at = Some(at + Context::days(days));
                    Handled
                }
                None => context.refuse("the org is not in trial"),
            },
            Event::ExtendGrace { days } => match context.org.grace_ends_at {
                Some(at) => {
                    context.record();
                    context.org.grace_ends_at = Some(at + Context::days(days));
                    Handled
                }
                None => context.refuse("no grace period is running"),
            },
            Event::PostponeCancel { days } => match context.org.cancel_at {
                Some(at) => {
                    context.record();
                    context.org.cancel_at = Some(at + Context::days(days));
                    Handled
                }
                None => context.refuse("no cancellation is scheduled"),
            },
            _ => Super,
        }
    }
}

fn to_statig(status: Status, reasons: LockReasons) -> State {
    match status {
        Status::Trial => State::trial(),
        Status::Active => State::active(),
        Status::GracePeriod => State::grace_period(),
        Status::Locked => State::locked(reasons),
        Status::Canceled => State::canceled(),
    }
}

fn from_statig(state: &State) -> (Status, LockReasons) {
    match state {
        State::Trial {} => (Status::Trial, LockReasons::default()),
        State::Active {} => (Status::Active, LockReasons::default()),
        State::GracePeriod {} => (Status::GracePeriod, LockReasons::default()),
        State::Locked { reasons } => (Status::Locked, *reasons),
        State::Canceled {} => (Status::Canceled, LockReasons::default()),
    }
}

/// Applies one event at its effective instant `at`.
///
/// # Errors
/// A [`Refusal`] for a command the table does not allow in the current state; nothing
/// changes then.
pub fn decide(
    lifecycle: &Lifecycle,
    event: Event,
    at: DateTime<Utc>,
    timers: Timers,
) -> Result<Decision, Refusal> {
    let mut state = to_statig(lifecycle.status, lifecycle.reasons);
    let mut context = Context {
        at,
        timers,
        org: lifecycle.clone(),
        effects: Vec::new(),
        recorded: false,
        refusal: None,
    };
    let outcome = state.handle(&mut Machine, &event, &mut context);
    let refusal = |why: String| Refusal {
        command: event.command_name(),
        status: lifecycle.status,
        reasons: lifecycle.reasons,
        why,
        legal: legal_moves(lifecycle, at, timers),
    };
    if let Some(why) = context.refusal {
        return Err(refusal(why));
    }
    let next = match outcome {
        Transition(next) => next,
        Handled => state,
        Super if event.is_fact() => state,
        Super => {
            return Err(refusal(format!(
                "not allowed in state {}",
                lifecycle.status
            )))
        }
    };
    let (status, reasons) = from_statig(&next);
    let mut org = context.org;
    org.status = status;
    org.reasons = reasons;
    let transition = context.recorded.then(|| Transition {
        from: lifecycle.status,
        to: status,
        cause: event.cause(),
    });
    Ok(Decision {
        lifecycle: org,
        transition,
        effects: context.effects,
    })
}

/// The commands the current state accepts, by name (`unlock` names its reasons).
pub fn legal_moves(lifecycle: &Lifecycle, at: DateTime<Utc>, timers: Timers) -> Vec<String> {
    let charge = if lifecycle.payment_method {
        Charge::Succeeded
    } else {
        Charge::NoCard
    };
    let candidates = [
        Event::EndTrial { charge },
        Event::AddPaymentMethod {
            charge: Charge::Succeeded,
        },
        Event::Upgrade {
            lifts_overage: false,
        },
        Event::Lock,
        Event::ExtendTrial { days: 1 },
        Event::ExtendGrace { days: 1 },
        Event::PostponeCancel { days: 1 },
        Event::MarkPaid,
        Event::Cancel,
    ];
    let accepts = |event: Event| {
        let mut state = to_statig(lifecycle.status, lifecycle.reasons);
        let mut context = Context {
            at,
            timers,
            org: lifecycle.clone(),
            effects: Vec::new(),
            recorded: false,
            refusal: None,
        };
        let outcome = state.handle(&mut Machine, &event, &mut context);
        context.refusal.is_none() && !matches!(outcome, Super)
    };
    let mut moves: Vec<String> = candidates
        .into_iter()
        .filter(|event| accepts(*event))
        .map(|event| event.command_name().to_owned())
        .collect();
    let unlockable: Vec<&str> = LockReason::ALL
        .into_iter()
        .filter(|reason| accepts(Event::Unlock { reason: *reason }))
        .map(LockReason::as_str)
        .collect();
    if !unlockable.is_empty() {
        moves.push(format!("unlock ({})", unlockable.join(", ")));
    }
    moves
}

/// The command behind a generic "transition to STATE" (SPEC section 10): accepted only
/// along a legal edge, that is when some manual command leads there from here.
///
/// # Errors
/// A [`Refusal`] naming the legal moves when no command reaches `target`.
pub fn command_to_reach(
    lifecycle: &Lifecycle,
    target: Status,
    at: DateTime<Utc>,
    timers: Timers,
) -> Result<Event, Refusal> {
    let charge = if lifecycle.payment_method {
        Charge::Succeeded
    } else {
        Charge::NoCard
    };
    let mut candidates = vec![Event::Lock, Event::EndTrial { charge }, Event::MarkPaid];
    candidates.extend(LockReason::ALL.map(|reason| Event::Unlock { reason }));
    candidates.push(Event::Cancel);
    candidates
        .into_iter()
        .find(|event| {
            decide(lifecycle, *event, at, timers).is_ok_and(|d| {
                d.lifecycle.status == target && d.lifecycle.status != lifecycle.status
            })
        })
        .ok_or_else(|| Refusal {
            command: "transition",
            status: lifecycle.status,
            reasons: lifecycle.reasons,
            why: format!("no legal edge leads to {target}"),
            legal: legal_moves(lifecycle, at, timers),
        })
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
