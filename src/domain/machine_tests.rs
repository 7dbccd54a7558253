//! Every row of SPEC section 3's transition table, the refusal of illegal commands, and
//! the deadline adjustments of section 10.
//!
//! Each case goes through [`check`] (or [`check_refused`] for a command the rules refuse):
//! start from a [`Lifecycle`], apply events at RFC 3339 instants with the default timers
//! (trial 30 days, grace 10 days, lock to cancel 14 days), then compare the whole resulting
//! lifecycle, and the transition and effects of the last event. Expected instants are
//! written out, never computed, so every test states its deadlines.
//!
//! The running example: an org signs up on 2026-03-05 09:30, so its trial ends on
//! 2026-04-04 09:30 and, once converted, it is billed on the 1st of each month from
//! 2026-05-01. As a subscriber, its May invoice fails on 2026-05-02 08:00: grace until
//! 2026-05-12 08:00, then locked for `payment_overdue` and canceled on 2026-05-26 08:00.

use crate::domain::LockReason::{Manual, Overage, PaymentOverdue, TrialExpired};
use crate::domain::Status::{Active, Canceled, GracePeriod, Locked, Trial};

use super::*;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// An instant from its RFC 3339 text.
fn t(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|err| panic!("bad instant {rfc3339}: {err}"))
        .with_timezone(&Utc)
}

/// What a sequence of events leads to.
struct Expected {
    /// The lifecycle after the last event, compared whole.
    lifecycle: Lifecycle,
    /// What the last event records in the audit trail (`None`: no table row applied).
    transition: Option<Transition>,
    /// What the last event asks the caller to carry out, in order.
    effects: Vec<Effect>,
}

impl Expected {
    /// The event was accepted without a row of the table applying: no transition, no
    /// effect.
    fn no_transition(lifecycle: Lifecycle) -> Self {
        Self {
            lifecycle,
            transition: None,
            effects: Vec::new(),
        }
    }
}

/// Applies `events` in order, each at its instant, and checks where they lead. Every event
/// must be accepted; with no events, `initial` itself is checked.
#[track_caller]
fn check(initial: Lifecycle, events: &[(Event, &str)], expected: Expected) {
    let mut lifecycle = initial;
    let mut transition = None;
    let mut effects = Vec::new();
    for &(event, at) in events {
        let decision = decide(&lifecycle, event, t(at), Timers::default())
            .unwrap_or_else(|refusal| panic!("{event:?} at {at} was refused: {refusal}"));
        lifecycle = decision.lifecycle;
        transition = decision.transition;
        effects = decision.effects;
    }
    let Expected {
        lifecycle: expected_lifecycle,
        transition: expected_transition,
        effects: expected_effects,
    } = expected;
    assert_eq!(lifecycle, expected_lifecycle, "lifecycle");
    assert_eq!(transition, expected_transition, "transition");
    assert_eq!(effects, expected_effects, "effects");
}

/// Checks that `event` is refused with exactly `message`, which names the current state
/// and the legal moves; a refusal changes nothing, since [`decide`] returns no lifecycle.
#[track_caller]
fn check_refused(initial: &Lifecycle, event: Event, at: &str, message: &str) {
    match decide(initial, event, t(at), Timers::default()) {
        Ok(decision) => panic!("{event:?} at {at} was accepted: {decision:?}"),
        Err(refusal) => {
            assert_eq!(refusal.status, initial.status, "refusal status");
            assert_eq!(refusal.reasons, initial.reasons, "refusal reasons");
            assert_eq!(refusal.to_string(), message);
        }
    }
}

/// The transition an accepted event records.
fn recorded(from: Status, to: Status, cause: &'static str) -> Transition {
    Transition { from, to, cause }
}

fn notify(template: Template) -> Effect {
    Effect::Notify(template)
}

// Events with a payload, so that each event fits on one line.

fn trial_ended(charge: Charge) -> Event {
    Event::TrialEnded { charge }
}

fn end_trial(charge: Charge) -> Event {
    Event::EndTrial { charge }
}

fn card_added(charge: Charge) -> Event {
    Event::AddPaymentMethod { charge }
}

/// Any invoice but the one that converts a trial was paid.
fn invoice_paid() -> Event {
    Event::PaymentSucceeded { conversion: false }
}

/// The invoice that converts a trial was paid.
fn conversion_paid() -> Event {
    Event::PaymentSucceeded { conversion: true }
}

fn upgrade(lifts_overage: bool) -> Event {
    Event::Upgrade { lifts_overage }
}

fn unlock(reason: LockReason) -> Event {
    Event::Unlock { reason }
}

fn reasons(list: &[LockReason]) -> LockReasons {
    list.iter()
        .fold(LockReasons::default(), |set, reason| set.with(*reason))
}

// ---------------------------------------------------------------------------------------
// Fixtures (the running example of the module documentation)
// ---------------------------------------------------------------------------------------

/// Signed up on 2026-03-05 09:30: in trial until 2026-04-04 09:30.
fn in_trial(card: bool) -> Lifecycle {
    Lifecycle::trial(t("2026-04-04T09:30:00Z"), card)
}

/// A subscriber in good standing with a card on file, next billed on 2026-06-01.
fn active() -> Lifecycle {
    Lifecycle {
        status: Active,
        reasons: LockReasons::default(),
        payment_method: true,
        subscriber: true,
        trial_ends_at: None,
        grace_ends_at: None,
        cancel_at: None,
        next_cycle_at: Some(t("2026-06-01T00:00:00Z")),
        reminder_at: None,
        reminded_through: None,
    }
}

/// [`active`] after its May invoice failed on 2026-05-02 08:00: grace until 2026-05-12 08:00.
fn grace_period() -> Lifecycle {
    Lifecycle {
        status: GracePeriod,
        grace_ends_at: Some(t("2026-05-12T08:00:00Z")),
        ..active()
    }
}

/// `base`, locked for `list`, with its deadlines as they are.
fn locked(base: &Lifecycle, list: &[LockReason]) -> Lifecycle {
    Lifecycle {
        status: Locked,
        reasons: reasons(list),
        ..*base
    }
}

/// [`grace_period`] once the grace ran out on 2026-05-12 08:00: auto-cancel two weeks later.
fn overdue() -> Lifecycle {
    Lifecycle {
        grace_ends_at: None,
        cancel_at: Some(t("2026-05-26T08:00:00Z")),
        ..locked(&active(), &[PaymentOverdue])
    }
}

/// [`in_trial`] without a card once the trial ended on 2026-04-04 09:30: never converted,
/// auto-cancel two weeks later.
fn trial_expired() -> Lifecycle {
    Lifecycle {
        trial_ends_at: None,
        cancel_at: Some(t("2026-04-18T09:30:00Z")),
        ..locked(&in_trial(false), &[TrialExpired])
    }
}

/// Where a cancellation leaves `base`: terminal, every deadline cleared, not a subscriber.
fn canceled(base: &Lifecycle) -> Lifecycle {
    Lifecycle {
        status: Canceled,
        reasons: LockReasons::default(),
        payment_method: base.payment_method,
        subscriber: false,
        trial_ends_at: None,
        grace_ends_at: None,
        cancel_at: None,
        next_cycle_at: None,
        reminder_at: None,
        reminded_through: None,
    }
}

// ---------------------------------------------------------------------------------------
// Signup and the end of the trial
// ---------------------------------------------------------------------------------------

/// SPEC 3, `(new) | signup | trial`: `trial_ends_at` = signup + 30 days, nothing else set.
#[test]
fn signup_starts_a_trial_that_ends_thirty_days_later() {
    let signup = t("2026-03-05T09:30:00Z");
    check(
        Lifecycle::trial(signup + Timers::default().trial, false),
        &[],
        Expected::no_transition(Lifecycle {
            status: Trial,
            reasons: LockReasons::default(),
            payment_method: false,
            subscriber: false,
            trial_ends_at: Some(t("2026-04-04T09:30:00Z")),
            grace_ends_at: None,
            cancel_at: None,
            next_cycle_at: None,
            reminder_at: None,
            reminded_through: None,
        }),
    );
}

/// SPEC 3, `trial | trial_ends_at reached | payment method on file | active`: a subscriber
/// from then on, billed from the next 1st.
#[test]
fn trial_end_with_a_card_and_a_paid_charge_converts_to_active_billed_from_the_next_first() {
    check(
        in_trial(true),
        &[(trial_ended(Charge::Succeeded), "2026-04-04T09:30:00Z")],
        Expected {
            lifecycle: Lifecycle {
                status: Active,
                subscriber: true,
                trial_ends_at: None,
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..in_trial(true)
            },
            transition: Some(recorded(Trial, Active, "trial_ended")),
            effects: vec![notify(Template::TrialEnded)],
        },
    );
}

/// SPEC 3, `trial | trial_ends_at reached | payment method on file | active`: a charge whose
/// outcome arrives later converts like a paid one ("whatever the first charge's outcome").
#[test]
fn trial_end_with_a_card_and_a_pending_charge_converts_to_active() {
    check(
        in_trial(true),
        &[(trial_ended(Charge::Pending), "2026-04-04T09:30:00Z")],
        Expected {
            lifecycle: Lifecycle {
                status: Active,
                subscriber: true,
                trial_ends_at: None,
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..in_trial(true)
            },
            transition: Some(recorded(Trial, Active, "trial_ended")),
            effects: vec![notify(Template::TrialEnded)],
        },
    );
}

/// SPEC 3, `trial | trial_ends_at reached | payment method on file | grace_period if the
/// charge fails`: still a subscriber; `grace_ends_at` = trial end + 10 days.
#[test]
fn trial_end_with_a_declined_charge_converts_to_grace_period_for_ten_days() {
    check(
        in_trial(true),
        &[(trial_ended(Charge::Failed), "2026-04-04T09:30:00Z")],
        Expected {
            lifecycle: Lifecycle {
                status: GracePeriod,
                subscriber: true,
                trial_ends_at: None,
                grace_ends_at: Some(t("2026-04-14T09:30:00Z")),
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..in_trial(true)
            },
            transition: Some(recorded(Trial, GracePeriod, "trial_ended")),
            effects: vec![
                notify(Template::TrialEnded),
                notify(Template::PaymentFailed),
            ],
        },
    );
}

/// SPEC 3, `trial | trial_ends_at reached | payment method on file | active`: a trial
/// ending at 00:00 on a 1st is billed for that whole month; the next cycle is the 1st
/// strictly after.
#[test]
fn trial_ending_exactly_on_a_first_bills_the_next_cycle_a_month_later() {
    check(
        Lifecycle::trial(t("2026-06-01T00:00:00Z"), true),
        &[(trial_ended(Charge::Succeeded), "2026-06-01T00:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                status: Active,
                subscriber: true,
                trial_ends_at: None,
                next_cycle_at: Some(t("2026-07-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..in_trial(true)
            },
            transition: Some(recorded(Trial, Active, "trial_ended")),
            effects: vec![notify(Template::TrialEnded)],
        },
    );
}

/// SPEC 3, `trial | trial_ends_at reached | no payment method | locked{trial_expired}`:
/// `cancel_at` = trial end + 14 days; not a subscriber.
#[test]
fn trial_end_without_a_card_locks_with_trial_expired_and_sets_cancel_at() {
    check(
        in_trial(false),
        &[(trial_ended(Charge::NoCard), "2026-04-04T09:30:00Z")],
        Expected {
            lifecycle: Lifecycle {
                status: Locked,
                reasons: reasons(&[TrialExpired]),
                payment_method: false,
                subscriber: false,
                trial_ends_at: None,
                grace_ends_at: None,
                cancel_at: Some(t("2026-04-18T09:30:00Z")),
                next_cycle_at: None,
                reminder_at: None,
                reminded_through: None,
            },
            transition: Some(recorded(Trial, Locked, "trial_ended")),
            effects: vec![
                notify(Template::TrialEnded),
                notify(Template::AccountLocked),
            ],
        },
    );
}

/// SPEC 3, `locked (lock began in trial) | trial_ends_at reached | | locked`, with a card:
/// converted as in trial, but the lock stays.
#[test]
fn trial_end_while_locked_in_trial_with_a_card_converts_but_stays_locked() {
    check(
        locked(&in_trial(true), &[Overage]),
        &[(trial_ended(Charge::Succeeded), "2026-04-04T09:30:00Z")],
        Expected {
            lifecycle: Lifecycle {
                subscriber: true,
                trial_ends_at: None,
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..locked(&in_trial(true), &[Overage])
            },
            transition: Some(recorded(Locked, Locked, "trial_ended")),
            effects: vec![notify(Template::TrialEnded)],
        },
    );
}

/// SPEC 3, `locked (lock began in trial) | trial_ends_at reached | | locked`: "a failed
/// charge sets `grace_ends_at`" (trial end + 10 days); the reasons do not change.
#[test]
fn trial_end_while_locked_in_trial_with_a_declined_charge_sets_grace_ends_at_and_stays_locked() {
    check(
        locked(&in_trial(true), &[Manual]),
        &[(trial_ended(Charge::Failed), "2026-04-04T09:30:00Z")],
        Expected {
            lifecycle: Lifecycle {
                subscriber: true,
                trial_ends_at: None,
                grace_ends_at: Some(t("2026-04-14T09:30:00Z")),
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..locked(&in_trial(true), &[Manual])
            },
            transition: Some(recorded(Locked, Locked, "trial_ended")),
            effects: vec![
                notify(Template::TrialEnded),
                notify(Template::PaymentFailed),
            ],
        },
    );
}

/// SPEC 3, `locked (lock began in trial) | trial_ends_at reached | | locked`, without a
/// card: `+ trial_expired`, `cancel_at` = trial end + 14 days.
#[test]
fn trial_end_while_locked_in_trial_without_a_card_adds_trial_expired_and_sets_cancel_at() {
    check(
        locked(&in_trial(false), &[Overage]),
        &[(trial_ended(Charge::NoCard), "2026-04-04T09:30:00Z")],
        Expected {
            lifecycle: Lifecycle {
                trial_ends_at: None,
                cancel_at: Some(t("2026-04-18T09:30:00Z")),
                ..locked(&in_trial(false), &[Overage, TrialExpired])
            },
            transition: Some(recorded(Locked, Locked, "trial_ended")),
            effects: vec![
                notify(Template::TrialEnded),
                notify(Template::AccountLocked),
            ],
        },
    );
}

/// SPEC 3, `trial | end_trial | | as on trial_ends_at`, with a card: converts at the
/// command's instant, billed from the next 1st.
#[test]
fn end_trial_with_a_card_converts_at_the_command_instant() {
    check(
        in_trial(true),
        &[(end_trial(Charge::Succeeded), "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                status: Active,
                subscriber: true,
                trial_ends_at: None,
                next_cycle_at: Some(t("2026-04-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..in_trial(true)
            },
            transition: Some(recorded(Trial, Active, "end_trial")),
            effects: vec![notify(Template::TrialEnded)],
        },
    );
}

/// SPEC 3, `trial | end_trial | | as on trial_ends_at`, declined charge: grace for 10 days
/// from the command's instant.
#[test]
fn end_trial_with_a_declined_charge_enters_grace_period_from_the_command_instant() {
    check(
        in_trial(true),
        &[(end_trial(Charge::Failed), "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                status: GracePeriod,
                subscriber: true,
                trial_ends_at: None,
                grace_ends_at: Some(t("2026-03-30T15:00:00Z")),
                next_cycle_at: Some(t("2026-04-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..in_trial(true)
            },
            transition: Some(recorded(Trial, GracePeriod, "end_trial")),
            effects: vec![
                notify(Template::TrialEnded),
                notify(Template::PaymentFailed),
            ],
        },
    );
}

/// SPEC 3, `trial | end_trial | | as on trial_ends_at`, without a card:
/// `locked{trial_expired}`, auto-cancel 14 days after the command.
#[test]
fn end_trial_without_a_card_locks_with_trial_expired_from_the_command_instant() {
    check(
        in_trial(false),
        &[(end_trial(Charge::NoCard), "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                trial_ends_at: None,
                cancel_at: Some(t("2026-04-03T15:00:00Z")),
                ..locked(&in_trial(false), &[TrialExpired])
            },
            transition: Some(recorded(Trial, Locked, "end_trial")),
            effects: vec![
                notify(Template::TrialEnded),
                notify(Template::AccountLocked),
            ],
        },
    );
}

/// SPEC 3, `locked (lock began in trial)` and `trial | end_trial`: a lock does not stop the
/// trial clock, so ending it early converts the org and keeps the lock.
#[test]
fn end_trial_while_locked_in_trial_converts_and_stays_locked() {
    check(
        locked(&in_trial(true), &[Manual]),
        &[(end_trial(Charge::Succeeded), "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                subscriber: true,
                trial_ends_at: None,
                next_cycle_at: Some(t("2026-04-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..locked(&in_trial(true), &[Manual])
            },
            transition: Some(recorded(Locked, Locked, "end_trial")),
            effects: vec![notify(Template::TrialEnded)],
        },
    );
}

/// SPEC 3, `trial | end_trial` has no row for a locked org whose trial is over: refused.
#[test]
fn end_trial_while_locked_after_the_trial_is_refused() {
    check_refused(
        &trial_expired(),
        end_trial(Charge::NoCard),
        "2026-04-06T12:00:00Z",
        "cannot end_trial: the trial has already ended; org is locked (trial_expired); \
         legal moves: add_payment_method, lock, postpone_cancel, cancel, unlock (trial_expired)",
    );
}

/// SPEC 3, `trial | end_trial` is the only `end_trial` row: refused in `active`, naming the
/// state and the legal moves.
#[test]
fn end_trial_in_active_is_refused_naming_the_legal_moves() {
    check_refused(
        &active(),
        end_trial(Charge::Succeeded),
        "2026-05-02T08:00:00Z",
        "cannot end_trial: not allowed in state active; org is active; \
         legal moves: add_payment_method, upgrade, lock, cancel",
    );
}

// ---------------------------------------------------------------------------------------
// Failed payments
// ---------------------------------------------------------------------------------------

/// SPEC 3, `active | invoice payment failed | | grace_period`: `grace_ends_at` = failure +
/// 10 days.
#[test]
fn payment_failure_in_active_starts_a_ten_day_grace_period() {
    check(
        active(),
        &[(Event::PaymentFailed, "2026-05-02T08:00:00Z")],
        Expected {
            lifecycle: grace_period(),
            transition: Some(recorded(Active, GracePeriod, "payment_failed")),
            effects: vec![notify(Template::PaymentFailed)],
        },
    );
}

/// SPEC 3, `grace_period | invoice payment failed | | grace_period`: `grace_ends_at`
/// unchanged.
#[test]
fn payment_failure_in_grace_period_keeps_the_grace_deadline() {
    check(
        grace_period(),
        &[(Event::PaymentFailed, "2026-05-06T10:00:00Z")],
        Expected {
            lifecycle: grace_period(),
            transition: Some(recorded(GracePeriod, GracePeriod, "payment_failed")),
            effects: vec![notify(Template::PaymentFailed)],
        },
    );
}

/// SPEC 3, `locked without payment_overdue | invoice payment failed | | locked`:
/// `grace_ends_at` set (failure + 10 days) when not set.
#[test]
fn payment_failure_while_locked_without_payment_overdue_sets_grace_ends_at() {
    check(
        locked(&active(), &[Overage]),
        &[(Event::PaymentFailed, "2026-05-02T08:00:00Z")],
        Expected {
            lifecycle: locked(&grace_period(), &[Overage]),
            transition: Some(recorded(Locked, Locked, "payment_failed")),
            effects: vec![notify(Template::PaymentFailed)],
        },
    );
}

/// SPEC 3, `locked without payment_overdue | invoice payment failed | | locked`: a grace
/// deadline already set is kept.
#[test]
fn payment_failure_while_locked_keeps_a_grace_deadline_already_set() {
    check(
        locked(&grace_period(), &[Manual]),
        &[(Event::PaymentFailed, "2026-05-06T10:00:00Z")],
        Expected {
            lifecycle: locked(&grace_period(), &[Manual]),
            transition: Some(recorded(Locked, Locked, "payment_failed")),
            effects: vec![],
        },
    );
}

/// SPEC 3, `locked{payment_overdue} | invoice payment failed | | locked | nothing more`.
#[test]
fn payment_failure_while_locked_for_payment_overdue_changes_nothing_more() {
    check(
        overdue(),
        &[(Event::PaymentFailed, "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: overdue(),
            transition: Some(recorded(Locked, Locked, "payment_failed")),
            effects: vec![],
        },
    );
}

// ---------------------------------------------------------------------------------------
// Successful payments and the end of grace
// ---------------------------------------------------------------------------------------

/// SPEC 3, `grace_period | payment succeeded | | active | deadlines cleared`; overdue
/// invoices settled (section 5).
#[test]
fn payment_success_in_grace_period_returns_to_active_and_settles_overdue_invoices() {
    check(
        grace_period(),
        &[(invoice_paid(), "2026-05-06T10:00:00Z")],
        Expected {
            lifecycle: active(),
            transition: Some(recorded(GracePeriod, Active, "payment_succeeded")),
            effects: vec![Effect::SettleOverdue],
        },
    );
}

/// SPEC 3, `grace_period | payment succeeded | | active`, through section 10's `mark_paid`
/// (settled out of band).
#[test]
fn mark_paid_in_grace_period_returns_to_active_and_settles_overdue_invoices() {
    check(
        grace_period(),
        &[(Event::MarkPaid, "2026-05-06T10:00:00Z")],
        Expected {
            lifecycle: active(),
            transition: Some(recorded(GracePeriod, Active, "mark_paid")),
            effects: vec![Effect::SettleOverdue],
        },
    );
}

/// SPEC 3, `grace_period | grace_ends_at reached | | locked{payment_overdue} | cancel_at
/// set`: `cancel_at` = grace end + 14 days.
#[test]
fn grace_expiry_locks_with_payment_overdue_and_sets_cancel_at() {
    check(
        grace_period(),
        &[(Event::GraceExpired, "2026-05-12T08:00:00Z")],
        Expected {
            lifecycle: overdue(),
            transition: Some(recorded(GracePeriod, Locked, "grace_expired")),
            effects: vec![notify(Template::AccountLocked)],
        },
    );
}

/// SPEC 3, `trial | trial_ends_at reached` then `grace_period | grace_ends_at reached`:
/// chained deadlines count from each transition's effective instant (04-04 09:30, + 10
/// days, + 14 days).
#[test]
fn declined_conversion_chains_grace_and_cancel_deadlines_from_the_effective_instants() {
    check(
        in_trial(true),
        &[
            (trial_ended(Charge::Failed), "2026-04-04T09:30:00Z"),
            (Event::GraceExpired, "2026-04-14T09:30:00Z"),
        ],
        Expected {
            lifecycle: Lifecycle {
                status: Locked,
                reasons: reasons(&[PaymentOverdue]),
                payment_method: true,
                subscriber: true,
                trial_ends_at: None,
                grace_ends_at: None,
                cancel_at: Some(t("2026-04-28T09:30:00Z")),
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
            },
            transition: Some(recorded(GracePeriod, Locked, "grace_expired")),
            effects: vec![notify(Template::AccountLocked)],
        },
    );
}

/// SPEC 3, `locked | grace_ends_at reached | | locked (+payment_overdue) | cancel_at set if
/// not set`: an overage lock during grace ends up with both reasons.
#[test]
fn grace_expiry_while_locked_for_overage_adds_payment_overdue_and_sets_cancel_at() {
    check(
        locked(&grace_period(), &[Overage]),
        &[(Event::GraceExpired, "2026-05-12T08:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                reasons: reasons(&[Overage, PaymentOverdue]),
                ..overdue()
            },
            transition: Some(recorded(Locked, Locked, "grace_expired")),
            effects: vec![notify(Template::AccountLocked)],
        },
    );
}

/// SPEC 3, `locked | grace_ends_at reached | | locked (+payment_overdue) | cancel_at set if
/// not set`: `cancel_at` stays 14 days after the first of `trial_expired` /
/// `payment_overdue`. Here a card added after the trial expired is declined.
#[test]
fn grace_expiry_while_locked_for_trial_expired_keeps_the_earlier_cancel_at() {
    check(
        trial_expired(),
        &[
            (card_added(Charge::Failed), "2026-04-06T12:00:00Z"),
            (Event::PaymentFailed, "2026-04-06T12:00:00Z"),
            (Event::GraceExpired, "2026-04-16T12:00:00Z"),
        ],
        Expected {
            lifecycle: Lifecycle {
                reasons: reasons(&[PaymentOverdue, TrialExpired]),
                payment_method: true,
                ..trial_expired()
            },
            transition: Some(recorded(Locked, Locked, "grace_expired")),
            effects: vec![notify(Template::AccountLocked)],
        },
    );
}

/// SPEC 3, `locked | payment succeeded | | drop payment_overdue` then `locked | reason set
/// becomes empty | | active | cancel_at cleared`.
#[test]
fn payment_success_while_locked_for_payment_overdue_settles_and_returns_to_active() {
    check(
        overdue(),
        &[(invoice_paid(), "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: active(),
            transition: Some(recorded(Locked, Active, "payment_succeeded")),
            effects: vec![Effect::SettleOverdue, notify(Template::AccountUnlocked)],
        },
    );
}

/// SPEC 3, `locked | payment succeeded | | drop payment_overdue`: only that reason goes;
/// `cancel_at` is cleared since neither `payment_overdue` nor `trial_expired` remains.
#[test]
fn payment_success_drops_only_payment_overdue_keeps_overage_and_clears_cancel_at() {
    check(
        locked(&overdue(), &[Overage, PaymentOverdue]),
        &[(invoice_paid(), "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: locked(&active(), &[Overage]),
            transition: Some(recorded(Locked, Locked, "payment_succeeded")),
            effects: vec![Effect::SettleOverdue],
        },
    );
}

/// SPEC 3, `locked | payment succeeded | | drop payment_overdue | ... a pending
/// grace_ends_at cleared`.
#[test]
fn payment_success_while_locked_clears_a_pending_grace_deadline() {
    check(
        locked(&grace_period(), &[Overage]),
        &[(invoice_paid(), "2026-05-06T10:00:00Z")],
        Expected {
            lifecycle: locked(&active(), &[Overage]),
            transition: Some(recorded(Locked, Locked, "payment_succeeded")),
            effects: vec![Effect::SettleOverdue],
        },
    );
}

/// SPEC 3, `locked | payment succeeded | | drop payment_overdue` (via section 10's
/// `mark_paid`): `cancel_at` stays while `trial_expired` remains.
#[test]
fn mark_paid_while_locked_drops_payment_overdue_but_keeps_cancel_at_for_trial_expired() {
    check(
        Lifecycle {
            payment_method: true,
            ..locked(&trial_expired(), &[PaymentOverdue, TrialExpired])
        },
        &[(Event::MarkPaid, "2026-04-17T10:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                payment_method: true,
                ..trial_expired()
            },
            transition: Some(recorded(Locked, Locked, "mark_paid")),
            effects: vec![Effect::SettleOverdue],
        },
    );
}

/// SPEC 3, `locked | payment succeeded`: with nothing overdue no row applies; the fact is
/// accepted and changes nothing.
#[test]
fn payment_success_while_locked_with_nothing_overdue_changes_nothing() {
    check(
        locked(&active(), &[Manual]),
        &[(invoice_paid(), "2026-05-06T10:00:00Z")],
        Expected::no_transition(locked(&active(), &[Manual])),
    );
}

/// Section 10's `mark_paid` with no payment overdue is refused.
#[test]
fn mark_paid_with_nothing_overdue_is_refused() {
    check_refused(
        &locked(&active(), &[Manual]),
        Event::MarkPaid,
        "2026-05-06T10:00:00Z",
        "cannot mark_paid: no payment is overdue; org is locked (manual); \
         legal moves: add_payment_method, upgrade, cancel, unlock (manual)",
    );
}

// ---------------------------------------------------------------------------------------
// A card added after the trial expired
// ---------------------------------------------------------------------------------------

/// SPEC 3, `locked{trial_expired} | payment method added | | drop trial_expired if the
/// charge succeeds | ... now a subscriber`, then `reason set becomes empty | | active`.
#[test]
fn adding_a_card_after_trial_expired_converts_and_returns_to_active_when_the_charge_succeeds() {
    check(
        trial_expired(),
        &[(card_added(Charge::Succeeded), "2026-04-06T12:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                status: Active,
                reasons: LockReasons::default(),
                payment_method: true,
                subscriber: true,
                trial_ends_at: None,
                grace_ends_at: None,
                cancel_at: None,
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
            },
            transition: Some(recorded(Locked, Active, "payment_method_added")),
            effects: vec![notify(Template::AccountUnlocked)],
        },
    );
}

/// SPEC 3, `locked{trial_expired} | payment method added | | drop trial_expired if the
/// charge succeeds`: a declined or not yet known charge leaves the lock and `cancel_at`.
#[test]
fn adding_a_card_after_trial_expired_keeps_the_lock_until_the_charge_succeeds() {
    for charge in [Charge::Failed, Charge::Pending] {
        check(
            trial_expired(),
            &[(card_added(charge), "2026-04-06T12:00:00Z")],
            Expected {
                lifecycle: Lifecycle {
                    payment_method: true,
                    ..trial_expired()
                },
                transition: Some(recorded(Locked, Locked, "payment_method_added")),
                effects: vec![],
            },
        );
    }
}

/// SPEC 3, `locked{trial_expired} | payment method added`: the conversion charge's success
/// arrives later as `payment succeeded` for the conversion invoice and converts then.
#[test]
fn conversion_payment_after_trial_expired_converts_and_returns_to_active() {
    check(
        trial_expired(),
        &[
            (card_added(Charge::Pending), "2026-04-06T12:00:00Z"),
            (conversion_paid(), "2026-04-06T12:05:00Z"),
        ],
        Expected {
            lifecycle: Lifecycle {
                status: Active,
                reasons: LockReasons::default(),
                payment_method: true,
                subscriber: true,
                trial_ends_at: None,
                grace_ends_at: None,
                cancel_at: None,
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
            },
            transition: Some(recorded(Locked, Active, "payment_succeeded")),
            effects: vec![Effect::SettleOverdue, notify(Template::AccountUnlocked)],
        },
    );
}

/// SPEC 3, `locked{trial_expired} | payment method added | | drop trial_expired`: other
/// reasons stay; `cancel_at` goes with the last of `trial_expired` / `payment_overdue`.
#[test]
fn adding_a_card_after_trial_expired_keeps_a_manual_lock() {
    check(
        locked(&trial_expired(), &[Manual, TrialExpired]),
        &[(card_added(Charge::Succeeded), "2026-04-06T12:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                payment_method: true,
                subscriber: true,
                cancel_at: None,
                next_cycle_at: Some(t("2026-05-01T00:00:00Z")),
                reminder_at: None,
                reminded_through: None,
                ..locked(&trial_expired(), &[Manual])
            },
            transition: Some(recorded(Locked, Locked, "payment_method_added")),
            effects: vec![],
        },
    );
}

/// SPEC 3: adding a card in trial is no row of the table; the card is kept for the trial
/// end and no transition is recorded.
#[test]
fn adding_a_card_in_trial_keeps_it_without_a_transition() {
    check(
        in_trial(false),
        &[(card_added(Charge::Pending), "2026-03-20T15:00:00Z")],
        Expected::no_transition(in_trial(true)),
    );
}

// ---------------------------------------------------------------------------------------
// Usage overage and upgrades
// ---------------------------------------------------------------------------------------

/// SPEC 3, `trial, active, grace_period | usage % > 300 | | locked{overage} |
/// grace_ends_at and trial_ends_at kept if set`.
#[test]
fn usage_over_300_percent_in_trial_active_or_grace_period_locks_for_overage_keeping_deadlines() {
    let cases = [
        (in_trial(false), "2026-03-20T15:00:00Z"),
        (active(), "2026-05-20T10:00:00Z"),
        (grace_period(), "2026-05-06T10:00:00Z"),
    ];
    for (open, at) in cases {
        check(
            open.clone(),
            &[(Event::UsageExceeded, at)],
            Expected {
                lifecycle: locked(&open, &[Overage]),
                transition: Some(recorded(open.status, Locked, "overage")),
                effects: vec![notify(Template::OverageLocked)],
            },
        );
    }
}

/// SPEC 3, `locked | usage % > 300 | no overage reason yet | locked (+overage)`: combined
/// with `payment_overdue`, whose `cancel_at` is kept.
#[test]
fn usage_over_300_percent_while_locked_for_payment_overdue_adds_overage() {
    check(
        overdue(),
        &[(Event::UsageExceeded, "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: locked(&overdue(), &[Overage, PaymentOverdue]),
            transition: Some(recorded(Locked, Locked, "overage")),
            effects: vec![notify(Template::OverageLocked)],
        },
    );
}

/// SPEC 3, `locked | usage % > 300 | no overage reason yet`: with the reason already there
/// no row applies; the fact is accepted and changes nothing.
#[test]
fn usage_over_300_percent_while_already_locked_for_overage_changes_nothing() {
    check(
        locked(&active(), &[Overage]),
        &[(Event::UsageExceeded, "2026-05-20T10:00:00Z")],
        Expected::no_transition(locked(&active(), &[Overage])),
    );
}

/// SPEC 3, `locked{overage} | upgrade so that 3 × new tier ≥ ... | | drop overage`, then
/// `reason set becomes empty | | active`.
#[test]
fn upgrade_covering_the_usage_lifts_the_overage_lock() {
    check(
        locked(&active(), &[Overage]),
        &[(upgrade(true), "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: active(),
            transition: Some(recorded(Locked, Active, "upgrade")),
            effects: vec![notify(Template::AccountUnlocked)],
        },
    );
}

/// SPEC 3, `locked{overage} | upgrade ... | | drop overage`: only that reason goes.
#[test]
fn upgrade_covering_the_usage_keeps_a_manual_lock() {
    check(
        locked(&active(), &[Manual, Overage]),
        &[(upgrade(true), "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: locked(&active(), &[Manual]),
            transition: Some(recorded(Locked, Locked, "upgrade")),
            effects: vec![],
        },
    );
}

/// SPEC 3, `locked{overage} | upgrade so that 3 × new tier ≥ ...`: a smaller upgrade is
/// accepted (the plan changes) but the lock stays and nothing is recorded.
#[test]
fn upgrade_not_covering_the_usage_keeps_the_overage_lock() {
    check(
        locked(&active(), &[Overage]),
        &[(upgrade(false), "2026-05-20T10:00:00Z")],
        Expected::no_transition(locked(&active(), &[Overage])),
    );
}

/// SPEC 5, plan changes: an upgrade in `active` changes the plan, not the lifecycle.
#[test]
fn upgrade_in_active_changes_no_lifecycle_state() {
    check(
        active(),
        &[(upgrade(false), "2026-05-20T10:00:00Z")],
        Expected::no_transition(active()),
    );
}

/// SPEC 5: "Plan changes are refused in `grace_period` ... with a message saying to settle
/// the payment first" (no row of SPEC 3 takes `upgrade` there).
#[test]
fn upgrade_is_refused_in_grace_period() {
    check_refused(
        &grace_period(),
        upgrade(false),
        "2026-05-06T10:00:00Z",
        "cannot upgrade: a payment is overdue: settle the payment first; org is grace_period; \
         legal moves: add_payment_method, lock, extend_grace, mark_paid, cancel",
    );
}

/// SPEC 5: plan changes are refused "in locked with `payment_overdue`", even one that
/// would lift an overage lock.
#[test]
fn upgrade_is_refused_while_locked_for_payment_overdue() {
    check_refused(
        &overdue(),
        upgrade(true),
        "2026-05-20T10:00:00Z",
        "cannot upgrade: a payment is overdue: settle the payment first; \
         org is locked (payment_overdue); \
         legal moves: add_payment_method, lock, postpone_cancel, mark_paid, cancel, \
         unlock (payment_overdue)",
    );
}

/// SPEC 5: plan changes are refused "in locked with ... `trial_expired`".
#[test]
fn upgrade_is_refused_while_locked_for_trial_expired() {
    check_refused(
        &trial_expired(),
        upgrade(false),
        "2026-04-06T12:00:00Z",
        "cannot upgrade: a payment is overdue: settle the payment first; \
         org is locked (trial_expired); \
         legal moves: add_payment_method, lock, postpone_cancel, cancel, unlock (trial_expired)",
    );
}

// ---------------------------------------------------------------------------------------
// Admin lock and unlock, and where an emptied reason set leads
// ---------------------------------------------------------------------------------------

/// SPEC 3, `any but canceled | admin lock | | locked (+manual)`: from an open state, every
/// pending deadline is kept.
#[test]
fn admin_lock_in_trial_active_or_grace_period_locks_manually_keeping_deadlines() {
    let cases = [
        (in_trial(false), "2026-03-20T15:00:00Z"),
        (active(), "2026-05-20T10:00:00Z"),
        (grace_period(), "2026-05-06T10:00:00Z"),
    ];
    for (open, at) in cases {
        check(
            open.clone(),
            &[(Event::Lock, at)],
            Expected {
                lifecycle: locked(&open, &[Manual]),
                transition: Some(recorded(open.status, Locked, "admin_lock")),
                effects: vec![notify(Template::AccountLocked)],
            },
        );
    }
}

/// SPEC 3, `any but canceled | admin lock | | locked (+manual)`: added to the reasons of a
/// locked org, recorded as `locked` to `locked`.
#[test]
fn admin_lock_while_locked_adds_manual() {
    check(
        overdue(),
        &[(Event::Lock, "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: locked(&overdue(), &[Manual, PaymentOverdue]),
            transition: Some(recorded(Locked, Locked, "admin_lock")),
            effects: vec![notify(Template::AccountLocked)],
        },
    );
}

/// SPEC 3, `any but canceled | admin lock`: `manual` is there already, so there is nothing
/// to add; refused.
#[test]
fn admin_lock_while_already_locked_manually_is_refused() {
    check_refused(
        &locked(&active(), &[Manual]),
        Event::Lock,
        "2026-05-20T10:00:00Z",
        "cannot lock: the org is already locked manually; org is locked (manual); \
         legal moves: add_payment_method, upgrade, cancel, unlock (manual)",
    );
}

/// SPEC 3, `locked | admin unlock | | drop manual (or named reason)`: the others stay.
#[test]
fn admin_unlock_of_manual_keeps_the_other_reasons() {
    check(
        locked(&active(), &[Manual, Overage]),
        &[(unlock(Manual), "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: locked(&active(), &[Overage]),
            transition: Some(recorded(Locked, Locked, "admin_unlock")),
            effects: vec![],
        },
    );
}

/// SPEC 3, `locked | admin unlock | | drop ... named reason`: dropping `payment_overdue`
/// clears `cancel_at` when `trial_expired` is not there either.
#[test]
fn admin_unlock_of_payment_overdue_keeps_a_manual_lock_and_clears_cancel_at() {
    check(
        locked(&overdue(), &[Manual, PaymentOverdue]),
        &[(unlock(PaymentOverdue), "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: locked(&active(), &[Manual]),
            transition: Some(recorded(Locked, Locked, "admin_unlock")),
            effects: vec![],
        },
    );
}

/// SPEC 3, `locked | admin unlock`: a reason the org is not locked for cannot be dropped.
#[test]
fn admin_unlock_of_a_reason_the_org_is_not_locked_for_is_refused() {
    check_refused(
        &locked(&active(), &[Overage]),
        unlock(Manual),
        "2026-05-20T10:00:00Z",
        "cannot unlock: the org is not locked for manual; org is locked (overage); \
         legal moves: add_payment_method, upgrade, lock, cancel, unlock (overage)",
    );
}

/// SPEC 3, `locked | admin unlock` is the only `unlock` row: refused in `active`.
#[test]
fn admin_unlock_outside_locked_is_refused() {
    check_refused(
        &active(),
        unlock(Manual),
        "2026-05-20T10:00:00Z",
        "cannot unlock: not allowed in state active; org is active; \
         legal moves: add_payment_method, upgrade, lock, cancel",
    );
}

/// SPEC 3, `locked | reason set becomes empty | | trial if still in trial`.
#[test]
fn unlocking_the_last_reason_during_the_trial_returns_to_trial() {
    check(
        locked(&in_trial(false), &[Manual]),
        &[(unlock(Manual), "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: in_trial(false),
            transition: Some(recorded(Locked, Trial, "admin_unlock")),
            effects: vec![notify(Template::AccountUnlocked)],
        },
    );
}

/// SPEC 3, `locked | reason set becomes empty | | trial if still in trial`, reached by an
/// upgrade lifting an overage lock taken in trial.
#[test]
fn upgrade_lifting_an_overage_lock_taken_in_trial_returns_to_trial() {
    check(
        locked(&in_trial(true), &[Overage]),
        &[(upgrade(true), "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: in_trial(true),
            transition: Some(recorded(Locked, Trial, "upgrade")),
            effects: vec![notify(Template::AccountUnlocked)],
        },
    );
}

/// SPEC 3, `locked | reason set becomes empty | | grace_period if a payment is overdue and
/// grace_ends_at is in the future`: the grace deadline is kept.
#[test]
fn unlocking_the_last_reason_with_the_grace_deadline_ahead_returns_to_grace_period() {
    check(
        locked(&grace_period(), &[Overage]),
        &[(unlock(Overage), "2026-05-06T10:00:00Z")],
        Expected {
            lifecycle: grace_period(),
            transition: Some(recorded(Locked, GracePeriod, "admin_unlock")),
            effects: vec![notify(Template::AccountUnlocked)],
        },
    );
}

/// SPEC 3, `locked | reason set becomes empty | | else active | cancel_at cleared`.
#[test]
fn unlocking_the_last_reason_after_the_grace_period_returns_to_active_and_clears_cancel_at() {
    check(
        overdue(),
        &[(unlock(PaymentOverdue), "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: active(),
            transition: Some(recorded(Locked, Active, "admin_unlock")),
            effects: vec![notify(Template::AccountUnlocked)],
        },
    );
}

// ---------------------------------------------------------------------------------------
// Cancellation and the terminal state
// ---------------------------------------------------------------------------------------

/// SPEC 3, `locked | cancel_at reached | | canceled (auto-cancel) | data purge`.
#[test]
fn auto_cancel_after_trial_expired_cancels_and_purges() {
    check(
        trial_expired(),
        &[(Event::CancelDue, "2026-04-18T09:30:00Z")],
        Expected {
            lifecycle: canceled(&trial_expired()),
            transition: Some(recorded(Locked, Canceled, "auto_cancel")),
            effects: vec![Effect::Purge, notify(Template::Canceled)],
        },
    );
}

/// SPEC 3, `locked | cancel_at reached | | canceled`: "a subscriber ... until it is
/// canceled", so the subscription ends too.
#[test]
fn auto_cancel_of_a_subscriber_locked_for_payment_overdue_ends_the_subscription() {
    check(
        overdue(),
        &[(Event::CancelDue, "2026-05-26T08:00:00Z")],
        Expected {
            lifecycle: canceled(&overdue()),
            transition: Some(recorded(Locked, Canceled, "auto_cancel")),
            effects: vec![Effect::Purge, notify(Template::Canceled)],
        },
    );
}

/// SPEC 3, `any but canceled | cancel with confirmation DELETE | | canceled | data purge`,
/// from `trial`.
#[test]
fn cancel_in_trial_cancels_and_purges() {
    check(
        in_trial(true),
        &[(Event::Cancel, "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: canceled(&in_trial(true)),
            transition: Some(recorded(Trial, Canceled, "cancel")),
            effects: vec![Effect::Purge, notify(Template::Canceled)],
        },
    );
}

/// SPEC 3, `any but canceled | cancel with confirmation DELETE | | canceled`, from
/// `locked`: the pending auto-cancel is cleared with every other deadline.
#[test]
fn cancel_while_locked_for_trial_expired_cancels_purges_and_clears_cancel_at() {
    check(
        trial_expired(),
        &[(Event::Cancel, "2026-04-06T12:00:00Z")],
        Expected {
            lifecycle: canceled(&trial_expired()),
            transition: Some(recorded(Locked, Canceled, "cancel")),
            effects: vec![Effect::Purge, notify(Template::Canceled)],
        },
    );
}

/// SPEC 3, `any but canceled | cancel with confirmation DELETE | | canceled`, from
/// `active`: the billing cycle stops and the org is no longer a subscriber.
#[test]
fn cancel_of_an_active_subscriber_ends_the_subscription() {
    check(
        active(),
        &[(Event::Cancel, "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: canceled(&active()),
            transition: Some(recorded(Active, Canceled, "cancel")),
            effects: vec![Effect::Purge, notify(Template::Canceled)],
        },
    );
}

/// SPEC 3, `any but canceled | cancel with confirmation DELETE | | canceled`, from
/// `grace_period`: the grace deadline is cleared and the subscription ends.
#[test]
fn cancel_in_grace_period_clears_the_grace_deadline_and_ends_the_subscription() {
    check(
        grace_period(),
        &[(Event::Cancel, "2026-05-06T10:00:00Z")],
        Expected {
            lifecycle: canceled(&grace_period()),
            transition: Some(recorded(GracePeriod, Canceled, "cancel")),
            effects: vec![Effect::Purge, notify(Template::Canceled)],
        },
    );
}

/// SPEC 3: "`canceled` is never left"; no row starts from it, so every command is refused.
#[test]
fn canceled_org_refuses_every_command() {
    let commands = [
        end_trial(Charge::NoCard),
        card_added(Charge::Succeeded),
        Event::Lock,
        unlock(Manual),
        Event::ExtendTrial { days: 7 },
        Event::ExtendGrace { days: 7 },
        Event::PostponeCancel { days: 7 },
        Event::MarkPaid,
        upgrade(true),
        Event::Cancel,
    ];
    for command in commands {
        check_refused(
            &canceled(&in_trial(false)),
            command,
            "2026-04-06T12:00:00Z",
            &format!(
                "cannot {}: not allowed in state canceled; org is canceled; no moves are legal",
                command.command_name()
            ),
        );
    }
}

/// SPEC 3: "Events that are facts ... are always recorded" by the caller, but no row
/// leaves `canceled`: every fact is accepted and changes nothing.
#[test]
fn facts_on_a_canceled_org_are_accepted_and_change_nothing() {
    let facts = [
        trial_ended(Charge::NoCard),
        Event::GraceExpired,
        Event::CancelDue,
        Event::PaymentFailed,
        conversion_paid(),
        Event::UsageExceeded,
    ];
    for fact in facts {
        check(
            canceled(&in_trial(false)),
            &[(fact, "2026-04-06T12:00:00Z")],
            Expected::no_transition(canceled(&in_trial(false))),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Deadline adjustments (SPEC 10's extend_trial, extend_grace, postpone_cancel)
// ---------------------------------------------------------------------------------------

/// SPEC 10, `extend_trial N days`: a pending `trial_ends_at` moves N days later.
#[test]
fn extend_trial_moves_trial_ends_at_later() {
    check(
        in_trial(false),
        &[(Event::ExtendTrial { days: 7 }, "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: Lifecycle::trial(t("2026-04-11T09:30:00Z"), false),
            transition: Some(recorded(Trial, Trial, "extend_trial")),
            effects: vec![],
        },
    );
}

/// SPEC 10, `extend_trial N days`: a lock does not stop the trial clock, so it can be
/// extended while locked in trial.
#[test]
fn extend_trial_while_locked_in_trial_moves_trial_ends_at_later() {
    check(
        locked(&in_trial(false), &[Overage]),
        &[(Event::ExtendTrial { days: 7 }, "2026-03-20T15:00:00Z")],
        Expected {
            lifecycle: locked(
                &Lifecycle::trial(t("2026-04-11T09:30:00Z"), false),
                &[Overage],
            ),
            transition: Some(recorded(Locked, Locked, "extend_trial")),
            effects: vec![],
        },
    );
}

/// SPEC 10, `extend_trial N days`: refused once the trial is over.
#[test]
fn extend_trial_after_the_trial_is_refused() {
    check_refused(
        &active(),
        Event::ExtendTrial { days: 7 },
        "2026-05-20T10:00:00Z",
        "cannot extend_trial: the org is not in trial; org is active; \
         legal moves: add_payment_method, upgrade, lock, cancel",
    );
}

/// SPEC 10, `extend_grace N days`: a pending `grace_ends_at` moves N days later.
#[test]
fn extend_grace_moves_grace_ends_at_later() {
    check(
        grace_period(),
        &[(Event::ExtendGrace { days: 5 }, "2026-05-06T10:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                grace_ends_at: Some(t("2026-05-17T08:00:00Z")),
                ..grace_period()
            },
            transition: Some(recorded(GracePeriod, GracePeriod, "extend_grace")),
            effects: vec![],
        },
    );
}

/// SPEC 10, `extend_grace N days`: refused once the grace has run out.
#[test]
fn extend_grace_after_the_grace_period_is_refused() {
    check_refused(
        &overdue(),
        Event::ExtendGrace { days: 5 },
        "2026-05-20T10:00:00Z",
        "cannot extend_grace: no grace period is running; org is locked (payment_overdue); \
         legal moves: add_payment_method, lock, postpone_cancel, mark_paid, cancel, \
         unlock (payment_overdue)",
    );
}

/// SPEC 10, `postpone_cancel N days`: a pending `cancel_at` moves N days later.
#[test]
fn postpone_cancel_moves_cancel_at_later() {
    check(
        overdue(),
        &[(Event::PostponeCancel { days: 7 }, "2026-05-20T10:00:00Z")],
        Expected {
            lifecycle: Lifecycle {
                cancel_at: Some(t("2026-06-02T08:00:00Z")),
                ..overdue()
            },
            transition: Some(recorded(Locked, Locked, "postpone_cancel")),
            effects: vec![],
        },
    );
}

/// SPEC 10, `postpone_cancel N days`: refused when no cancellation is scheduled.
#[test]
fn postpone_cancel_without_a_scheduled_cancellation_is_refused() {
    check_refused(
        &grace_period(),
        Event::PostponeCancel { days: 7 },
        "2026-05-06T10:00:00Z",
        "cannot postpone_cancel: no cancellation is scheduled; org is grace_period; \
         legal moves: add_payment_method, lock, extend_grace, mark_paid, cancel",
    );
}

// ---------------------------------------------------------------------------------------
// Facts no row covers, legal moves, and the generic transition
// ---------------------------------------------------------------------------------------

/// SPEC 3: facts are always accepted; where no row covers them they change nothing and
/// record no transition (stale deadlines, a payment with nothing overdue).
#[test]
fn facts_no_row_covers_are_accepted_without_a_transition() {
    let cases = [
        (active(), invoice_paid(), "2026-05-20T10:00:00Z"),
        (active(), Event::GraceExpired, "2026-05-20T10:00:00Z"),
        (active(), Event::CancelDue, "2026-05-20T10:00:00Z"),
        (
            active(),
            trial_ended(Charge::Succeeded),
            "2026-05-20T10:00:00Z",
        ),
        (in_trial(true), invoice_paid(), "2026-03-20T15:00:00Z"),
        (in_trial(true), Event::GraceExpired, "2026-03-20T15:00:00Z"),
        (
            grace_period(),
            trial_ended(Charge::Succeeded),
            "2026-05-06T10:00:00Z",
        ),
        (
            trial_expired(),
            trial_ended(Charge::NoCard),
            "2026-04-06T12:00:00Z",
        ),
    ];
    for (initial, fact, at) in cases {
        check(
            initial.clone(),
            &[(fact, at)],
            Expected::no_transition(initial),
        );
    }
}

/// SPEC 3: a refused command names "the legal moves": the commands each state accepts.
#[test]
fn legal_moves_list_the_commands_each_state_accepts() {
    let cases = [
        (
            in_trial(false),
            "end_trial, add_payment_method, upgrade, lock, extend_trial, cancel",
        ),
        (active(), "add_payment_method, upgrade, lock, cancel"),
        (
            grace_period(),
            "add_payment_method, lock, extend_grace, mark_paid, cancel",
        ),
        (
            locked(&in_trial(true), &[Overage]),
            "end_trial, add_payment_method, upgrade, lock, extend_trial, cancel, \
             unlock (overage)",
        ),
        (
            locked(&active(), &[Manual, Overage]),
            "add_payment_method, upgrade, cancel, unlock (manual, overage)",
        ),
        (
            overdue(),
            "add_payment_method, lock, postpone_cancel, mark_paid, cancel, \
             unlock (payment_overdue)",
        ),
        (
            trial_expired(),
            "add_payment_method, lock, postpone_cancel, cancel, unlock (trial_expired)",
        ),
        (canceled(&active()), ""),
    ];
    for (lifecycle, expected) in cases {
        let moves = legal_moves(&lifecycle, t("2026-05-20T10:00:00Z"), Timers::default());
        assert_eq!(moves.join(", "), expected, "legal moves of {lifecycle:?}");
    }
}

/// SPEC 10's generic transition, along `locked | admin unlock` and `reason set becomes
/// empty | | active`.
#[test]
fn command_to_reach_active_from_a_manual_lock_is_unlock_manual() {
    let command = command_to_reach(
        &locked(&active(), &[Manual]),
        Active,
        t("2026-05-20T10:00:00Z"),
        Timers::default(),
    );
    assert_eq!(command, Ok(unlock(Manual)));
}

/// SPEC 10's generic transition, along `any but canceled | admin lock | | locked`.
#[test]
fn command_to_reach_locked_from_active_is_lock() {
    let command = command_to_reach(
        &active(),
        Locked,
        t("2026-05-20T10:00:00Z"),
        Timers::default(),
    );
    assert_eq!(command, Ok(Event::Lock));
}

/// SPEC 10's generic transition, along `grace_period | payment succeeded | | active` as an
/// operator's `mark_paid`.
#[test]
fn command_to_reach_active_from_grace_period_is_mark_paid() {
    let command = command_to_reach(
        &grace_period(),
        Active,
        t("2026-05-06T10:00:00Z"),
        Timers::default(),
    );
    assert_eq!(command, Ok(Event::MarkPaid));
}

/// SPEC 10: the generic transition "is accepted only along a legal edge"; no row leads back
/// to `trial`, so the refusal names the legal moves.
#[test]
fn command_to_reach_trial_from_active_is_refused_naming_the_legal_moves() {
    let refusal = command_to_reach(
        &active(),
        Trial,
        t("2026-05-20T10:00:00Z"),
        Timers::default(),
    )
    .expect_err("no edge leads from active to trial");
    assert_eq!(
        refusal.to_string(),
        "cannot transition: no legal edge leads to trial; org is active; \
         legal moves: add_payment_method, upgrade, lock, cancel",
    );
}
