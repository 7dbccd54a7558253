//! Deadlines (SPEC sections 3 and 5): the trial end, the grace end, the auto-cancel, the
//! monthly cycle and the reminders, each fired at its own instant; and the machine's
//! decisions with their effects, which every input goes through.

use chrono::{DateTime, Utc};

use super::{
    cycle_key, invalid, lifecycle_payload, rfc3339, ChargeRequest, NewInvoice, Planner, Result,
    Step, Then,
};
use crate::domain::period::Period;
use crate::domain::price::{Line, LineKind};
use crate::domain::record::{Actor, InvoiceKind, InvoiceStatus};
use crate::domain::{decide, Charge, Deadline, Effect, Event, Lifecycle, LockReason, Org, Status};

impl Planner<'_> {
    /// Fires the org's deadlines due at or before `until`, each at its own instant. Stops
    /// at a charge ([`Step::Charge`]); [`Planner::charged`] goes on from there.
    ///
    /// # Errors
    /// A price or snapshot error.
    pub fn advance(&mut self, org: &mut Org, until: DateTime<Utc>) -> Result<Step> {
        let system = Actor::system();
        while let Some((at, deadline)) = org.lifecycle.next_deadline() {
            if at > until {
                break;
            }
            match deadline {
                Deadline::TrialEnd => {
                    match self.conversion_charge(org, at, Then::TrialEnded { until })? {
                        Conversion::Charge(request) => return Ok(Step::Charge(request)),
                        Conversion::Decided(charge) => {
                            self.apply(org, Event::TrialEnded { charge }, &system, at)?;
                        }
                    }
                }
                Deadline::GraceEnd => self.apply(org, Event::GraceExpired, &system, at)?,
                Deadline::Cancel => self.apply(org, Event::CancelDue, &system, at)?,
                Deadline::MonthlyCycle => {
                    if let Some(request) = self.monthly_cycle(org, at, until)? {
                        return Ok(Step::Charge(request));
                    }
                }
                Deadline::Reminder => self.remind(org, at),
            }
            if org.lifecycle.next_deadline() == Some((at, deadline)) {
                // Every handler consumes the deadline it was given; if a rule ever did
                // not, dropping it here keeps the sweep from spinning on one org.
                drop_deadline(&mut org.lifecycle, deadline);
            }
        }
        Ok(Step::Done)
    }

    /// Sends the reminders due at `at` (a few days before a deadline), once each.
    fn remind(&mut self, org: &mut Org, at: DateTime<Utc>) {
        let days = self.rules.reminder_days;
        let sent = org.lifecycle.reminded_through;
        for (when, template, deadline) in org.lifecycle.reminders(days) {
            if when == at && sent.is_none_or(|s| when > s) {
                let mut payload = lifecycle_payload(org, at);
                payload["payment_method"] = org.lifecycle.payment_method.into();
                let key = format!("{}:{template}:{}", org.id, rfc3339(deadline));
                self.email(org, template, at, key, payload);
            }
        }
        org.lifecycle.reminded_through = Some(at);
        org.lifecycle.schedule_reminder(at, days);
    }

    /// Runs the machine and plans its effects. A refused command returns the refusal;
    /// the caller drops the plan.
    pub(super) fn apply(
        &mut self,
        org: &mut Org,
        event: Event,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let decision = decide(&org.lifecycle, event, at, self.rules.timers)?;
        let from = org.lifecycle.status;
        org.lifecycle = decision.lifecycle;
        org.lifecycle
            .schedule_reminder(at, self.rules.reminder_days);
        if !org.lifecycle.reasons.contains(LockReason::Overage) {
            org.overage_lock_mau = None;
        }
        if let Some(transition) = &decision.transition {
            self.record(org, Some(from), transition.cause, actor, at);
        }
        for effect in decision.effects {
            match effect {
                Effect::Notify(template) => {
                    // Keyed on the transition, not its second: quick lock/unlock
                    // sequences email every change, and the last email agrees with the
                    // final state.
                    let key = format!(
                        "{}:{}:{}:{}:{}",
                        org.id,
                        template.as_str(),
                        event.cause(),
                        rfc3339(at),
                        self.transition_key(org)
                    );
                    self.email(org, template.as_str(), at, key, lifecycle_payload(org, at));
                }
                Effect::SettleOverdue => {
                    for invoice in self.snapshot.overdue(&org.id) {
                        self.set_status(invoice.id, InvoiceStatus::Paid, at)?;
                    }
                }
                Effect::Purge => {
                    org.canceled_at = Some(at);
                    self.snapshot.projects.retain(|(id, _), _| *id != org.id);
                    self.snapshot.usage.retain(|(id, _), _| *id != org.id);
                    self.plan.totals.retain(|(id, _, _), _| *id != org.id);
                    self.plan.usage.retain(|(id, _), _| *id != org.id);
                    self.plan.purges.push(org.id.clone());
                    // Other systems purge theirs on the `org.canceled` webhook event.
                }
            }
        }
        Ok(())
    }

    /// Issues the rest-of-month invoice that converts a trial and asks for its charge;
    /// without a card (or when the invoice exists already) the outcome is known at once.
    pub(super) fn conversion_charge(
        &mut self,
        org: &Org,
        at: DateTime<Utc>,
        then: Then,
    ) -> Result<Conversion> {
        if !org.lifecycle.payment_method {
            return Ok(Conversion::Decided(Charge::NoCard));
        }
        let lines = self
            .rules
            .prices
            .rest_of_period_lines(&org.plan, org.tier, &org.addons, at)?;
        let new = NewInvoice {
            key: format!("conversion:{}", rfc3339(at)),
            period: Period::containing(at),
            kind: InvoiceKind::Conversion,
            lines,
            at,
        };
        // An earlier conversion of the same month that was declined (or is still
        // pending) converted nothing: this one, from a later instant, replaces it, so
        // the month is not owed twice.
        let period = new.period.label();
        let replaced: Vec<i64> = self
            .snapshot
            .invoices
            .values()
            .filter(|i| {
                i.org_id == org.id
                    && i.kind == InvoiceKind::Conversion
                    && i.period == period
                    && i.key != new.key
                    && matches!(i.status, InvoiceStatus::Failed | InvoiceStatus::Open)
            })
            .map(|i| i.id)
            .collect();
        for id in replaced {
            self.set_status(id, InvoiceStatus::Void, at)?;
        }
        Ok(match self.issue(org, new)? {
            Some(invoice) => Conversion::Charge(ChargeRequest {
                org: org.id.clone(),
                invoice: invoice.id,
                amount: invoice.total,
                at,
                then,
            }),
            None => Conversion::Decided(Charge::Pending),
        })
    }

    /// SPEC section 5's monthly cycle for one org at the 1st `at`: close the previous
    /// period, apply scheduled downgrades and removals, issue the period's invoice once
    /// (its key is unique per org and period) and ask for its charge.
    fn monthly_cycle(
        &mut self,
        org: &mut Org,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<ChargeRequest>> {
        let period = Period::containing(at);
        org.lifecycle.next_cycle_at = Some(period.end());
        if !org.lifecycle.subscriber || org.lifecycle.status == Status::Canceled {
            org.lifecycle.next_cycle_at = None;
            return Ok(None);
        }
        let key = cycle_key(period);
        if self.snapshot.keys.contains(&(org.id.clone(), key.clone())) {
            return Ok(None);
        }
        let lines = self.cycle_lines(org, at)?;
        let new = NewInvoice {
            key,
            period,
            kind: InvoiceKind::Cycle,
            lines,
            at,
        };
        let Some(invoice) = self.issue(org, new)? else {
            return Ok(None);
        };
        if !org.lifecycle.payment_method {
            // SPEC 5: a charge with no payment method fails at once (there is nothing
            // to wait for), so a subscriber without a card enters grace like any other
            // failed payment.
            self.settle_charge(org, invoice.id, Charge::Failed, NO_PAYMENT_METHOD, at)?;
            self.apply_charge(org, invoice.id, Charge::Failed, &Actor::system(), at)?;
            return Ok(None);
        }
        Ok(Some(ChargeRequest {
            org: org.id.clone(),
            invoice: invoice.id,
            amount: invoice.total,
            at,
            then: Then::Cycle { until },
        }))
    }

    /// The monthly cycle's billing for the period starting at `at`: the previous period's
    /// overage (at the tier and add-ons in force at its end), then scheduled downgrades
    /// and removals, then the new period's base and add-ons.
    fn cycle_lines(&mut self, org: &mut Org, at: DateTime<Utc>) -> Result<Vec<Line>> {
        let rules = self.rules;
        let prices = &rules.prices;
        let previous = Period::containing(at).previous();
        let usage = self.snapshot.usage_total(&org.id, previous);
        let allowance = prices.plan(&org.plan)?.data_points_per_mau;
        let mbu = usage.mbu(org.tier, allowance);
        let mut overage = Vec::new();
        let mau_overage = prices.mau_overage(&org.plan, org.tier, mbu)?;
        if !mau_overage.is_zero() {
            overage.push(Line {
                kind: LineKind::MauOverage,
                description: format!(
                    "{} MBU over the {} MAU tier in {}",
                    mbu,
                    org.tier,
                    previous.label()
                ),
                amount: mau_overage,
            });
            for addon in &org.addons {
                let amount = prices.addon_overage(addon, org.tier, mbu)?;
                if !amount.is_zero() {
                    overage.push(Line {
                        kind: LineKind::AddonOverage,
                        description: format!(
                            "{} add-on overage in {}",
                            prices.addon(addon)?.name,
                            previous.label()
                        ),
                        amount,
                    });
                }
            }
        }
        if let Some(tier) = org.scheduled_tier.take() {
            org.tier = tier;
            self.plan_fact(org, "downgrade_applied", at);
            self.plan_email(org, "downgrade_applied", at);
        }
        if !org.scheduled_removals.is_empty() {
            let removals = std::mem::take(&mut org.scheduled_removals);
            org.addons.retain(|a| !removals.contains(a));
            self.plan_fact(org, "addon_removed", at);
            self.plan_email(org, "addon_changed", at);
        }
        let mut lines = prices.monthly_lines(&org.plan, org.tier, &org.addons)?;
        lines.extend(overage);
        Ok(lines)
    }

    /// Positive day counts of manual extensions.
    pub(super) fn positive(days: u32) -> Result<u32> {
        if EXTENSION_DAYS.contains(&days) {
            Ok(days)
        } else {
            Err(invalid("days", format!("{days} is out of range 1..=3650")))
        }
    }
}

/// The day counts a manual extension (`extend_trial`, `extend_grace`, `postpone_cancel`)
/// accepts: at least a day, at most ten years.
pub const EXTENSION_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

/// The source of a payment that failed because no payment method is on file.
pub const NO_PAYMENT_METHOD: &str = "no_payment_method";

/// A conversion's charge: asked of the gateway, or known at once.
pub(super) enum Conversion {
    Charge(ChargeRequest),
    Decided(Charge),
}

fn drop_deadline(lifecycle: &mut Lifecycle, deadline: Deadline) {
    match deadline {
        Deadline::TrialEnd => lifecycle.trial_ends_at = None,
        Deadline::GraceEnd => lifecycle.grace_ends_at = None,
        Deadline::Cancel => lifecycle.cancel_at = None,
        Deadline::MonthlyCycle => lifecycle.next_cycle_at = None,
        Deadline::Reminder => lifecycle.reminder_at = None,
    }
}
