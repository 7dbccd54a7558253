//! The planner's rules of SPEC sections 4 and 5 (usage, alerts, the overage lock, billing)
//! and the deadlines of section 3 that bill or remind, with no database.
//!
//! Each case starts from an [`Org`] and a [`Snapshot`] written out literally, gives the
//! planner one input at an RFC 3339 instant (deadlines due up to an instant, a command, a
//! payment outcome or a usage report), answers each [`Step::Charge`] with a scripted
//! outcome as the engine's `drive` does with its gateway, and compares:
//!
//! - the plan, rendered one line per entry by [`render`]: its facts in the order they
//!   happened (with the charges asked for, where they were asked), then the final status
//!   of each new invoice, the status changes of stored invoices, purges and usage totals;
//! - the org afterwards, whole.
//!
//! Expected instants and amounts are written out, never computed. The default rules apply
//! (`Settings::default()`: trial 30 days, grace 10, lock to cancel 14, reminders 3 days
//! ahead, Basic at 1.00 and Essentials at 1.25 per 100 MAU, overage × 1.2) with one paid
//! add-on in the catalog, `journeys` at 0.10 per 100 MAU (SPEC section 5's seed example).
//!
//! The running example: `acme`, Basic, 20,000 MAU with Journeys ($200 + $20 a month),
//! signed up on 2026-03-05 09:30 (trial until 2026-04-04 09:30). As a subscriber it is
//! billed on the 1st; its May 2026 invoice is the one most cases look at. May has 31 days
//! (2,678,400 s), April 30 (2,592,000 s).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::*;
use crate::config::{Addon, Settings};
use crate::domain::LockReason::{Overage, PaymentOverdue, TrialExpired};
use crate::domain::Status::{Active, Canceled, GracePeriod, Locked, Trial};
use crate::domain::{Lifecycle, LockReasons};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// An instant from its RFC 3339 text.
fn t(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|err| panic!("bad instant {rfc3339}: {err}"))
        .with_timezone(&Utc)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn period(label: &str) -> Period {
    Period::parse(label).unwrap()
}

fn reasons(list: &[LockReason]) -> LockReasons {
    list.iter()
        .fold(LockReasons::default(), |set, reason| set.with(*reason))
}

/// The default rules with the seed example's add-on, `journeys` at 0.10 per 100 MAU.
fn rules() -> Rules {
    settings().rules()
}

/// [`rules`] with the Essentials 20,000 tier priced at $200, as in the seed example.
fn seed_essentials_rules() -> Rules {
    let mut settings = settings();
    settings
        .plans
        .get_mut("essentials")
        .unwrap()
        .tier_prices
        .insert("20000".to_owned(), dec("200.00"));
    settings.rules()
}

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.addons.insert(
        "journeys".to_owned(),
        Addon {
            name: "Journeys".to_owned(),
            price_per_100_mau: dec("0.10"),
        },
    );
    settings
}

/// An empty snapshot whose new invoices get ids 7, 8 and 9.
fn snapshot() -> Snapshot {
    Snapshot {
        invoice_ids: VecDeque::from([7, 8, 9]),
        ..Snapshot::default()
    }
}

/// [`snapshot`] with acme's project `web` at `mau` in `label`'s period.
fn snapshot_with_usage(label: &str, mau: u64, data_points: u64) -> Snapshot {
    Snapshot {
        projects: BTreeMap::from([(
            ("acme".to_owned(), period(label)),
            BTreeMap::from([("web".to_owned(), Usage { mau, data_points })]),
        )]),
        usage: BTreeMap::from([(
            ("acme".to_owned(), period(label)),
            Usage { mau, data_points },
        )]),
        ..snapshot()
    }
}

/// A stored invoice of acme for the period `label`, one base line.
fn stored_invoice(
    id: i64,
    key: &str,
    label: &str,
    kind: InvoiceKind,
    total: &str,
    status: InvoiceStatus,
) -> Invoice {
    Invoice {
        id,
        org_id: "acme".to_owned(),
        key: key.to_owned(),
        period: label.to_owned(),
        kind,
        currency: "USD".to_owned(),
        lines: vec![crate::domain::price::Line {
            kind: crate::domain::price::LineKind::Base,
            description: "basic plan, 20000 MAU".to_owned(),
            amount: dec(total),
        }],
        total: dec(total),
        status,
        issued_at: period(label).start(),
        paid_at: None,
    }
}

/// One line per entry of the plan: facts (with the charges asked for, where they were
/// asked), then new invoices' final statuses, stored invoices' status changes, purges and
/// usage totals.
fn render(plan: &Plan, charges: &[(usize, String)]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut charges = charges.iter().peekable();
    for (i, fact) in plan.facts.iter().enumerate() {
        while let Some((_, charge)) = charges.next_if(|(at, _)| *at == i) {
            lines.push(charge.clone());
        }
        lines.push(render_fact(fact));
    }
    lines.extend(charges.map(|(_, charge)| charge.clone()));
    for invoice in &plan.invoices {
        lines.push(format!(
            "invoice #{} is {}",
            invoice.id,
            invoice.status.as_str()
        ));
    }
    for change in &plan.statuses {
        lines.push(format!(
            "invoice #{} becomes {} at {}",
            change.invoice,
            change.status.as_str(),
            rfc3339(change.at)
        ));
    }
    for org in &plan.purges {
        lines.push(format!("purge {org}"));
    }
    for total in plan.totals.values() {
        lines.push(format!(
            "totals {} {} {}: {} MAU, {} data points",
            total.org_id,
            total.period.label(),
            total.project,
            total.usage.mau,
            total.usage.data_points
        ));
    }
    lines
}

fn render_fact(fact: &Fact) -> String {
    let at = rfc3339(fact.at());
    match fact {
        Fact::Transition {
            from,
            to,
            cause,
            reasons,
            ..
        } => format!(
            "{at} transition {} -> {to} [{reasons}] ({cause})",
            from.map_or("new", Status::as_str)
        ),
        Fact::Invoice {
            id,
            period,
            lines,
            total,
            ..
        } => format!(
            "{at} invoice #{id} {period}: {} = {total:.2}",
            lines
                .iter()
                .map(|l| format!("{} {:.2}", l.kind.as_str(), l.amount))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        Fact::Payment {
            invoice, succeeded, ..
        } => format!(
            "{at} payment #{invoice} {}",
            if *succeeded { "succeeded" } else { "failed" }
        ),
        Fact::Email { template, to, .. } => format!("{at} email {template} to {}", to.join(",")),
        Fact::Plan {
            tier,
            addons,
            change,
            ..
        } => format!("{at} plan {change}: {tier} MAU [{}]", addons.join(",")),
        Fact::Alert {
            threshold,
            usage_percent,
            ..
        } => format!("{at} alert {threshold} at {usage_percent} %"),
    }
}

/// Carries a step through its charges as the engine's `drive` does, each answered with the
/// next of `outcomes` (all must be used). Records where each charge was asked.
#[track_caller]
fn drive(
    planner: &mut Planner<'_>,
    org: &mut Org,
    step: Result<Step>,
    outcomes: &mut std::slice::Iter<'_, Charge>,
    charges: &mut Vec<(usize, String)>,
) -> Result<()> {
    let mut step = step?;
    while let Step::Charge(request) = step {
        let outcome = *outcomes
            .next()
            .unwrap_or_else(|| panic!("unscripted charge {request:?}"));
        charges.push((
            planner.plan.facts.len(),
            format!(
                "{} charge #{} {:.2}: {outcome:?}",
                rfc3339(request.at),
                request.invoice,
                request.amount
            ),
        ));
        step = planner.charged(org, request, outcome)?;
    }
    Ok(())
}

/// One input of a case.
enum Input<'a> {
    /// Deadlines due up to the instant.
    Advance,
    Command(Command),
    /// A payment outcome for a stored invoice, the org caught up first.
    Payment {
        invoice: i64,
        succeeded: bool,
    },
    Usage(&'a UsageReport),
}

/// Plans `inputs` in order on one planner, each at its instant, the charges answered with
/// `outcomes`; returns the rendered plan. Every input must be accepted.
#[track_caller]
fn run(
    rules: &Rules,
    snapshot: Snapshot,
    org: &mut Org,
    inputs: &[(Input<'_>, &str)],
    outcomes: &[Charge],
) -> Vec<String> {
    let (plan, charges) = plan_inputs(rules, snapshot, org, inputs, outcomes)
        .unwrap_or_else(|e| panic!("refused: {e}"));
    render(&plan, &charges)
}

#[track_caller]
fn plan_inputs(
    rules: &Rules,
    snapshot: Snapshot,
    org: &mut Org,
    inputs: &[(Input<'_>, &str)],
    outcomes: &[Charge],
) -> Result<(Plan, Vec<(usize, String)>)> {
    let mut planner = Planner::new(rules, snapshot, t("2026-07-01T00:00:00Z"));
    let mut outcomes = outcomes.iter();
    let mut charges = Vec::new();
    let user = Actor::new("ops@vendor.test", "asked by the customer");
    for (input, at) in inputs {
        let at = t(at);
        match input {
            Input::Advance => {
                let step = planner.advance(org, at);
                drive(&mut planner, org, step, &mut outcomes, &mut charges)?;
            }
            Input::Command(command) => {
                let step = planner.command(org, command, &user, at);
                drive(&mut planner, org, step, &mut outcomes, &mut charges)?;
            }
            Input::Payment { invoice, succeeded } => {
                planner.payable(*invoice)?;
                let step = planner.advance(org, at);
                drive(&mut planner, org, step, &mut outcomes, &mut charges)?;
                planner.payment(org, *invoice, *succeeded, &Actor::system(), at)?;
            }
            Input::Usage(report) => {
                let mut orgs = BTreeMap::from([(org.id.clone(), org.clone())]);
                let outcome = planner.usage(&mut orgs, report, &user, at)?;
                assert_eq!(outcome, Outcome::Accepted, "{report:?}");
                *org = orgs.remove(&org.id).unwrap();
            }
        }
    }
    assert!(outcomes.next().is_none(), "a scripted outcome was not used");
    Ok((planner.finish(), charges))
}

/// A usage report for acme's project `web`.
fn report(label: &str, mau: u64, data_points: u64) -> UsageReport {
    UsageReport {
        org: "acme".to_owned(),
        project: "web".to_owned(),
        period: label.to_owned(),
        mau,
        data_points,
        correction: false,
    }
}

fn plan_change(change: PlanChange) -> Input<'static> {
    Input::Command(Command::Plan(change))
}

// ---------------------------------------------------------------------------------------
// Fixtures (the running example of the module documentation)
// ---------------------------------------------------------------------------------------

/// acme in trial since 2026-03-05 09:30: the trial ends 2026-04-04 09:30, reminded three
/// days before.
fn in_trial(card: bool) -> Org {
    Org {
        id: "acme".to_owned(),
        plan: "basic".to_owned(),
        tier: 20_000,
        addons: vec!["journeys".to_owned()],
        currency: "USD".to_owned(),
        admins: vec!["admin@acme.test".to_owned()],
        billing_email: "billing@acme.test".to_owned(),
        signup_at: t("2026-03-05T09:30:00Z"),
        canceled_at: None,
        lifecycle: Lifecycle {
            reminder_at: Some(t("2026-04-01T09:30:00Z")),
            ..Lifecycle::trial(t("2026-04-04T09:30:00Z"), card)
        },
        usage: None,
        overage_lock_mau: None,
        scheduled_tier: None,
        scheduled_removals: Vec::new(),
        clock: None,
        version: 3,
    }
}

/// acme converted (trial reminder sent on 2026-04-01 09:30), a subscriber in good standing
/// with a card, next billed on 2026-05-01.
fn subscriber() -> Org {
    Org {
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
            reminded_through: Some(t("2026-04-01T09:30:00Z")),
        },
        ..in_trial(true)
    }
}

/// [`subscriber`] billed on 2026-05-01 (next on 2026-06-01): the state most plan changes
/// and usage reports in May start from.
fn billed_for_may() -> Org {
    Org {
        lifecycle: Lifecycle {
            next_cycle_at: Some(t("2026-06-01T00:00:00Z")),
            ..subscriber().lifecycle
        },
        ..subscriber()
    }
}

/// [`billed_for_may`] after its May invoice (#3, $220) failed on 2026-05-01: grace until
/// 2026-05-11, reminded on 2026-05-08.
fn in_grace() -> Org {
    Org {
        lifecycle: Lifecycle {
            status: GracePeriod,
            grace_ends_at: Some(t("2026-05-11T00:00:00Z")),
            reminder_at: Some(t("2026-05-08T00:00:00Z")),
            ..billed_for_may().lifecycle
        },
        ..billed_for_may()
    }
}

/// A snapshot holding acme's failed May invoice #3 (and its key).
fn snapshot_with_failed_may_invoice() -> Snapshot {
    let mut snapshot = snapshot();
    snapshot
        .keys
        .insert(("acme".to_owned(), "cycle:2026-05".to_owned()));
    snapshot.invoices.insert(
        3,
        stored_invoice(
            3,
            "cycle:2026-05",
            "2026-05",
            InvoiceKind::Cycle,
            "220.00",
            InvoiceStatus::Failed,
        ),
    );
    snapshot
}

/// [`billed_for_may`] locked for overage in May: `usage_at_lock` is the highest usage MAU
/// reported above 300 % since the lock began, `usage_now` the latest May usage.
fn overage_locked(usage_now: u64, usage_at_lock: u64) -> Org {
    Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[Overage]),
            ..billed_for_may().lifecycle
        },
        usage: Some((period("2026-05"), usage_now)),
        overage_lock_mau: Some(usage_at_lock),
        ..billed_for_may()
    }
}

// ---------------------------------------------------------------------------------------
// The monthly cycle's invoice: the seed examples (SPEC section 5)
// ---------------------------------------------------------------------------------------

/// One row of a seed table: acme with or without Journeys, its April usage, and the May
/// invoice the cycle of 2026-05-01 issues and charges (paid).
#[track_caller]
fn check_may_invoice(rules: &Rules, plan: &str, addons: &[&str], april_mau: u64, invoice: &str) {
    let mut org = Org {
        plan: plan.to_owned(),
        addons: addons.iter().map(|a| (*a).to_owned()).collect(),
        ..subscriber()
    };
    let before = org.clone();
    let plan = run(
        rules,
        snapshot_with_usage("2026-04", april_mau, 0),
        &mut org,
        &[(Input::Advance, "2026-05-01T00:00:00Z")],
        &[Charge::Succeeded],
    );
    let total = invoice.rsplit(' ').next().unwrap();
    assert_eq!(
        plan,
        [
            format!("2026-05-01T00:00:00Z invoice #7 2026-05: {invoice}"),
            "2026-05-01T00:00:00Z email invoice to billing@acme.test".to_owned(),
            format!("2026-05-01T00:00:00Z charge #7 {total}: Succeeded"),
            "2026-05-01T00:00:00Z payment #7 succeeded".to_owned(),
            "invoice #7 is paid".to_owned(),
        ]
    );
    // Paid while active: no transition; the next cycle is the next 1st.
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                next_cycle_at: Some(t("2026-06-01T00:00:00Z")),
                ..before.lifecycle
            },
            ..before
        }
    );
}

/// SPEC 5, seed example, Basic (tier 20,000, Journeys $20, 22,000 MBU): $200 / $220 / $224
/// / $246.40, the overage of April on the invoice of May.
#[test]
fn seed_example_basic_invoices_reproduce_to_the_cent() {
    let rules = rules();
    check_may_invoice(&rules, "basic", &[], 19_000, "base 200.00 = 200.00");
    check_may_invoice(
        &rules,
        "basic",
        &["journeys"],
        19_000,
        "base 200.00 + addon 20.00 = 220.00",
    );
    check_may_invoice(
        &rules,
        "basic",
        &[],
        22_000,
        "base 200.00 + mau_overage 24.00 = 224.00",
    );
    check_may_invoice(
        &rules,
        "basic",
        &["journeys"],
        22_000,
        "base 200.00 + addon 20.00 + mau_overage 24.00 + addon_overage 2.40 = 246.40",
    );
}

/// SPEC 5 and 12, seed example, Essentials with the 20,000 tier priced at $200: $200 /
/// $220 / $230 / $252.40 (overage at 1.25 per 100 MAU × 1.2).
#[test]
fn seed_example_essentials_with_the_tier_priced_at_200_invoices_reproduce_to_the_cent() {
    let rules = seed_essentials_rules();
    check_may_invoice(&rules, "essentials", &[], 19_000, "base 200.00 = 200.00");
    check_may_invoice(
        &rules,
        "essentials",
        &["journeys"],
        19_000,
        "base 200.00 + addon 20.00 = 220.00",
    );
    check_may_invoice(
        &rules,
        "essentials",
        &[],
        22_000,
        "base 200.00 + mau_overage 30.00 = 230.00",
    );
    check_may_invoice(
        &rules,
        "essentials",
        &["journeys"],
        22_000,
        "base 200.00 + addon 20.00 + mau_overage 30.00 + addon_overage 2.40 = 252.40",
    );
}

/// SPEC 1 and 5: MBU = max(tier, MAU, processed MAU); 40,000,001 data points on Basic
/// (2,000 per MAU) are 20,001 processed MAU, one started block of 100 over the tier.
#[test]
fn data_points_above_the_allowance_bill_as_started_blocks_of_overage() {
    check_may_invoice(
        &rules(),
        "basic",
        &["journeys"],
        1_000,
        "base 200.00 + addon 20.00 = 220.00",
    );
    let mut org = subscriber();
    let plan = run(
        &rules(),
        snapshot_with_usage("2026-04", 1_000, 40_000_001),
        &mut org,
        &[(Input::Advance, "2026-05-01T00:00:00Z")],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan[0],
        "2026-05-01T00:00:00Z invoice #7 2026-05: base 200.00 + addon 20.00 + mau_overage 1.20 + addon_overage 0.12 = 221.32"
    );
}

// ---------------------------------------------------------------------------------------
// The end of the trial: a charge as an effect, prorated to the second (SPEC 3 and 5)
// ---------------------------------------------------------------------------------------

/// SPEC 3 and 5: at trial end with a card the planner stops at a charge for the rest of
/// April, prorated to the second: 2,298,600 s of 2,592,000 (0.88680...) of $200 and $20.
#[test]
fn trial_end_with_a_card_stops_at_a_charge_for_the_rest_of_the_month_to_the_second() {
    let rules = rules();
    let mut org = in_trial(true);
    let mut planner = Planner::new(&rules, snapshot(), t("2026-07-01T00:00:00Z"));
    let step = planner
        .advance(&mut org, t("2026-04-04T09:30:00Z"))
        .unwrap();
    assert_eq!(
        step,
        Step::Charge(ChargeRequest {
            org: "acme".to_owned(),
            invoice: 7,
            amount: dec("195.10"),
            at: t("2026-04-04T09:30:00Z"),
            then: Then::TrialEnded {
                until: t("2026-04-04T09:30:00Z")
            },
        })
    );
    // Nothing is decided before the outcome: still in trial, the invoice open.
    assert_eq!(org.lifecycle.status, Trial);
    assert_eq!(
        render(&planner.finish(), &[]),
        [
            "2026-04-01T09:30:00Z email trial_ending to admin@acme.test",
            "2026-04-04T09:30:00Z invoice #7 2026-04: base 177.36 + addon 17.74 = 195.10",
            "2026-04-04T09:30:00Z email invoice to billing@acme.test",
            "invoice #7 is open",
        ]
    );
}

/// SPEC 3, `trial | trial_ends_at reached | payment method on file | active`: the charge
/// succeeds, the invoice is paid, the org a subscriber billed from 2026-05-01.
#[test]
fn trial_end_with_a_paid_charge_converts_to_active_with_a_paid_invoice() {
    let mut org = in_trial(true);
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-04-04T09:30:00Z")],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-04-01T09:30:00Z email trial_ending to admin@acme.test",
            "2026-04-04T09:30:00Z invoice #7 2026-04: base 177.36 + addon 17.74 = 195.10",
            "2026-04-04T09:30:00Z email invoice to billing@acme.test",
            "2026-04-04T09:30:00Z charge #7 195.10: Succeeded",
            "2026-04-04T09:30:00Z payment #7 succeeded",
            "2026-04-04T09:30:00Z transition trial -> active [] (trial_ended)",
            "2026-04-04T09:30:00Z email trial_ended to admin@acme.test",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(org, subscriber());
}

/// SPEC 3, `... | grace_period if the charge fails`: the invoice failed, grace until
/// 2026-04-14 09:30 (reminded on 04-11), still a subscriber.
#[test]
fn trial_end_with_a_failed_charge_converts_to_grace_period_with_a_failed_invoice() {
    let mut org = in_trial(true);
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-04-04T09:30:00Z")],
        &[Charge::Failed],
    );
    assert_eq!(
        plan,
        [
            "2026-04-01T09:30:00Z email trial_ending to admin@acme.test",
            "2026-04-04T09:30:00Z invoice #7 2026-04: base 177.36 + addon 17.74 = 195.10",
            "2026-04-04T09:30:00Z email invoice to billing@acme.test",
            "2026-04-04T09:30:00Z charge #7 195.10: Failed",
            "2026-04-04T09:30:00Z payment #7 failed",
            "2026-04-04T09:30:00Z transition trial -> grace_period [] (trial_ended)",
            "2026-04-04T09:30:00Z email trial_ended to admin@acme.test",
            "2026-04-04T09:30:00Z email payment_failed to billing@acme.test",
            "invoice #7 is failed",
        ]
    );
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                status: GracePeriod,
                grace_ends_at: Some(t("2026-04-14T09:30:00Z")),
                reminder_at: Some(t("2026-04-11T09:30:00Z")),
                ..subscriber().lifecycle
            },
            ..subscriber()
        }
    );
}

/// SPEC 3 and 5: a gateway that answers later leaves the invoice open; the org converts
/// ("whatever the first charge's outcome").
#[test]
fn trial_end_with_a_pending_charge_converts_and_leaves_the_invoice_open() {
    let mut org = in_trial(true);
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-04-04T09:30:00Z")],
        &[Charge::Pending],
    );
    assert_eq!(
        plan,
        [
            "2026-04-01T09:30:00Z email trial_ending to admin@acme.test",
            "2026-04-04T09:30:00Z invoice #7 2026-04: base 177.36 + addon 17.74 = 195.10",
            "2026-04-04T09:30:00Z email invoice to billing@acme.test",
            "2026-04-04T09:30:00Z charge #7 195.10: Pending",
            "2026-04-04T09:30:00Z transition trial -> active [] (trial_ended)",
            "2026-04-04T09:30:00Z email trial_ended to admin@acme.test",
            "invoice #7 is open",
        ]
    );
    assert_eq!(org, subscriber());
}

/// SPEC 3 and 12, `trial | trial_ends_at reached | no payment method | locked{trial_expired}`:
/// no invoice and no charge; auto-cancel two weeks later, warned three days before, then
/// purged.
#[test]
fn trial_end_without_a_card_locks_with_trial_expired_without_any_charge_and_cancels_two_weeks_later(
) {
    let mut org = in_trial(false);
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-04-04T09:30:00Z")],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-04-01T09:30:00Z email trial_ending to admin@acme.test",
            "2026-04-04T09:30:00Z transition trial -> locked [trial_expired] (trial_ended)",
            "2026-04-04T09:30:00Z email trial_ended to admin@acme.test",
            "2026-04-04T09:30:00Z email account_locked to admin@acme.test",
        ]
    );
    let expired = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[TrialExpired]),
            trial_ends_at: None,
            cancel_at: Some(t("2026-04-18T09:30:00Z")),
            reminder_at: Some(t("2026-04-15T09:30:00Z")),
            reminded_through: Some(t("2026-04-01T09:30:00Z")),
            ..in_trial(false).lifecycle
        },
        ..in_trial(false)
    };
    assert_eq!(org, expired);

    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-04-18T09:30:00Z")],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-04-15T09:30:00Z email cancel_warning to admin@acme.test",
            "2026-04-18T09:30:00Z transition locked -> canceled [] (auto_cancel)",
            "2026-04-18T09:30:00Z email canceled to admin@acme.test",
            "purge acme",
        ]
    );
    assert_eq!(
        org,
        Org {
            canceled_at: Some(t("2026-04-18T09:30:00Z")),
            lifecycle: Lifecycle {
                status: Canceled,
                reasons: LockReasons::default(),
                cancel_at: None,
                reminder_at: None,
                reminded_through: Some(t("2026-04-15T09:30:00Z")),
                ..expired.lifecycle
            },
            ..expired
        }
    );
}

/// SPEC 3, `locked{trial_expired} | payment method added | drop trial_expired if the charge
/// succeeds`: the rest of April from 04-10 00:00 (21 of 30 days) is charged, and the org
/// is a subscriber billed from 2026-05-01.
#[test]
fn a_card_added_after_trial_expired_is_charged_for_the_rest_of_the_month_and_unlocks() {
    let mut org = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[TrialExpired]),
            trial_ends_at: None,
            cancel_at: Some(t("2026-04-18T09:30:00Z")),
            reminder_at: Some(t("2026-04-15T09:30:00Z")),
            reminded_through: Some(t("2026-04-01T09:30:00Z")),
            ..in_trial(false).lifecycle
        },
        ..in_trial(false)
    };
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(
            Input::Command(Command::AddPaymentMethod),
            "2026-04-10T00:00:00Z",
        )],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-04-10T00:00:00Z invoice #7 2026-04: base 140.00 + addon 14.00 = 154.00",
            "2026-04-10T00:00:00Z email invoice to billing@acme.test",
            "2026-04-10T00:00:00Z charge #7 154.00: Succeeded",
            "2026-04-10T00:00:00Z payment #7 succeeded",
            "2026-04-10T00:00:00Z transition locked -> active [] (payment_method_added)",
            "2026-04-10T00:00:00Z email account_unlocked to admin@acme.test",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(org, subscriber());
}

// ---------------------------------------------------------------------------------------
// The monthly cycle: its order, its outcomes, once per period (SPEC 5)
// ---------------------------------------------------------------------------------------

/// SPEC 5, the cycle's order: April's overage is closed at the tier and add-ons in force at
/// its end (20,000 with Journeys: $24 + $2.40), then the scheduled downgrade to 10,000 and
/// the removal of Journeys apply, then May's invoice is issued at 10,000 without Journeys
/// ($100) and charged; its failure starts grace until 2026-05-11.
#[test]
fn monthly_cycle_closes_the_period_then_applies_scheduled_changes_then_invoices_and_charges() {
    let mut org = Org {
        scheduled_tier: Some(10_000),
        scheduled_removals: vec!["journeys".to_owned()],
        ..subscriber()
    };
    let plan = run(
        &rules(),
        snapshot_with_usage("2026-04", 22_000, 0),
        &mut org,
        &[(Input::Advance, "2026-05-01T00:00:00Z")],
        &[Charge::Failed],
    );
    assert_eq!(
        plan,
        [
            "2026-05-01T00:00:00Z plan downgrade_applied: 10000 MAU [journeys]",
            "2026-05-01T00:00:00Z email downgrade_applied to admin@acme.test",
            "2026-05-01T00:00:00Z plan addon_removed: 10000 MAU []",
            "2026-05-01T00:00:00Z email addon_changed to admin@acme.test",
            "2026-05-01T00:00:00Z invoice #7 2026-05: base 100.00 + mau_overage 24.00 + addon_overage 2.40 = 126.40",
            "2026-05-01T00:00:00Z email invoice to billing@acme.test",
            "2026-05-01T00:00:00Z charge #7 126.40: Failed",
            "2026-05-01T00:00:00Z payment #7 failed",
            "2026-05-01T00:00:00Z transition active -> grace_period [] (payment_failed)",
            "2026-05-01T00:00:00Z email payment_failed to billing@acme.test",
            "invoice #7 is failed",
        ]
    );
    assert_eq!(
        org,
        Org {
            tier: 10_000,
            addons: Vec::new(),
            scheduled_tier: None,
            scheduled_removals: Vec::new(),
            lifecycle: Lifecycle {
                status: GracePeriod,
                grace_ends_at: Some(t("2026-05-11T00:00:00Z")),
                next_cycle_at: Some(t("2026-06-01T00:00:00Z")),
                reminder_at: Some(t("2026-05-08T00:00:00Z")),
                ..subscriber().lifecycle
            },
            ..subscriber()
        }
    );
}

/// SPEC 5, "running the cycle twice for the same period changes nothing": the org as it
/// was read before the first run, planned again on the same snapshot, finds May's invoice
/// key and issues, charges and applies nothing (the scheduled downgrade stays scheduled
/// for the first run to apply).
#[test]
fn running_the_monthly_cycle_twice_for_one_period_changes_nothing() {
    let rules = rules();
    let read = Org {
        scheduled_tier: Some(10_000),
        ..subscriber()
    };
    let mut planner = Planner::new(
        &rules,
        snapshot_with_usage("2026-04", 22_000, 0),
        t("2026-07-01T00:00:00Z"),
    );
    let mut first = read.clone();
    let step = planner
        .advance(&mut first, t("2026-05-01T00:00:00Z"))
        .unwrap();
    let Step::Charge(request) = step else {
        panic!("no charge: {step:?}")
    };
    assert_eq!(
        planner.charged(&mut first, request, Charge::Succeeded),
        Ok(Step::Done)
    );
    let facts = planner.plan.facts.len();
    let mut replayed = read.clone();
    assert_eq!(
        planner.advance(&mut replayed, t("2026-05-01T00:00:00Z")),
        Ok(Step::Done)
    );
    assert_eq!(planner.plan.facts.len(), facts, "the replay planned facts");
    assert_eq!(planner.plan.invoices.len(), 1);

    // The same on a fresh snapshot that holds the key (the first run was written).
    let mut written = snapshot_with_usage("2026-04", 22_000, 0);
    written
        .keys
        .insert(("acme".to_owned(), "cycle:2026-05".to_owned()));
    let mut org = read.clone();
    let plan = run(
        &rules,
        written,
        &mut org,
        &[(Input::Advance, "2026-05-01T00:00:00Z")],
        &[],
    );
    assert_eq!(plan, Vec::<String>::new());
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                next_cycle_at: Some(t("2026-06-01T00:00:00Z")),
                ..read.lifecycle.clone()
            },
            ..read
        }
    );
}

/// SPEC 5, "Charges go through a payment-gateway interface": a cycle charge whose outcome
/// arrives later leaves May's invoice open and the org active.
#[test]
fn a_pending_cycle_charge_leaves_the_invoice_open_and_the_org_active() {
    let mut org = subscriber();
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-05-01T00:00:00Z")],
        &[Charge::Pending],
    );
    assert_eq!(
        plan,
        [
            "2026-05-01T00:00:00Z invoice #7 2026-05: base 200.00 + addon 20.00 = 220.00",
            "2026-05-01T00:00:00Z email invoice to billing@acme.test",
            "2026-05-01T00:00:00Z charge #7 220.00: Pending",
            "invoice #7 is open",
        ]
    );
    assert_eq!(org, billed_for_may());
}

/// SPEC 5, Payments: "A charge for an org with no payment method on file fails at once
/// (in production too: there is nothing to wait for), with the reason `no_payment_method`":
/// the cycle asks the gateway nothing, records the failed payment with that source, and
/// the org enters grace like any failed payment (SPEC 3, `active | invoice payment
/// failed | grace_period`).
#[test]
fn a_subscriber_without_a_card_fails_at_once_with_no_payment_method_and_enters_grace() {
    let mut org = Org {
        lifecycle: Lifecycle {
            payment_method: false,
            ..subscriber().lifecycle
        },
        ..subscriber()
    };
    let rules = rules();
    let (plan, charges) = plan_inputs(
        &rules,
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-05-01T00:00:00Z")],
        &[],
    )
    .unwrap_or_else(|e| panic!("refused: {e}"));
    assert!(charges.is_empty(), "no charge is asked: {charges:?}");
    assert_eq!(
        render(&plan, &charges),
        [
            "2026-05-01T00:00:00Z invoice #7 2026-05: base 200.00 + addon 20.00 = 220.00",
            "2026-05-01T00:00:00Z email invoice to billing@acme.test",
            "2026-05-01T00:00:00Z payment #7 failed",
            "2026-05-01T00:00:00Z transition active -> grace_period [] (payment_failed)",
            "2026-05-01T00:00:00Z email payment_failed to billing@acme.test",
            "invoice #7 is failed",
        ]
    );
    assert_eq!(plan.payments.len(), 1);
    assert_eq!(plan.payments[0].source, "no_payment_method");
    assert!(!plan.payments[0].succeeded);
    assert_eq!(org.lifecycle.status, GracePeriod);
    assert_eq!(org.lifecycle.grace_ends_at, Some(t("2026-05-11T00:00:00Z")));
}

/// SPEC 5, "whatever its state": a subscriber locked for overage is billed like any other
/// (April's 60,001 MAU are 401 started blocks over 20,000: $481.20 and $48.12), and a
/// failed charge sets `grace_ends_at` without leaving `locked` (SPEC 3, `locked without
/// payment_overdue | invoice payment failed`).
#[test]
fn a_locked_subscriber_is_billed_on_the_first_and_a_failed_charge_sets_grace_ends_at() {
    let mut org = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[Overage]),
            ..subscriber().lifecycle
        },
        overage_lock_mau: Some(60_001),
        ..subscriber()
    };
    let plan = run(
        &rules(),
        snapshot_with_usage("2026-04", 60_001, 0),
        &mut org,
        &[(Input::Advance, "2026-05-01T00:00:00Z")],
        &[Charge::Failed],
    );
    assert_eq!(
        plan,
        [
            "2026-05-01T00:00:00Z invoice #7 2026-05: base 200.00 + addon 20.00 + mau_overage 481.20 + addon_overage 48.12 = 749.32",
            "2026-05-01T00:00:00Z email invoice to billing@acme.test",
            "2026-05-01T00:00:00Z charge #7 749.32: Failed",
            "2026-05-01T00:00:00Z payment #7 failed",
            "2026-05-01T00:00:00Z transition locked -> locked [overage] (payment_failed)",
            "2026-05-01T00:00:00Z email payment_failed to billing@acme.test",
            "invoice #7 is failed",
        ]
    );
    assert_eq!(
        org.lifecycle,
        Lifecycle {
            status: Locked,
            reasons: reasons(&[Overage]),
            grace_ends_at: Some(t("2026-05-11T00:00:00Z")),
            next_cycle_at: Some(t("2026-06-01T00:00:00Z")),
            reminder_at: Some(t("2026-05-08T00:00:00Z")),
            ..subscriber().lifecycle
        }
    );
}

/// SPEC 3 and 5: an org in trial is no subscriber: it has no cycle, and its trial usage is
/// never billed. A trial ending exactly on 2026-05-01 pays all of May (factor 1) and no
/// overage for April, in which it was in trial at the end.
#[test]
fn a_trial_ending_on_the_first_bills_the_whole_month_and_no_overage_for_the_trial_period() {
    let mut org = Org {
        lifecycle: Lifecycle {
            trial_ends_at: Some(t("2026-05-01T00:00:00Z")),
            reminder_at: Some(t("2026-04-28T00:00:00Z")),
            ..in_trial(true).lifecycle
        },
        ..in_trial(true)
    };
    let plan = run(
        &rules(),
        snapshot_with_usage("2026-04", 22_000, 0),
        &mut org,
        &[(Input::Advance, "2026-06-01T00:00:00Z")],
        &[Charge::Succeeded, Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-04-28T00:00:00Z email trial_ending to admin@acme.test",
            "2026-05-01T00:00:00Z invoice #7 2026-05: base 200.00 + addon 20.00 = 220.00",
            "2026-05-01T00:00:00Z email invoice to billing@acme.test",
            "2026-05-01T00:00:00Z charge #7 220.00: Succeeded",
            "2026-05-01T00:00:00Z payment #7 succeeded",
            "2026-05-01T00:00:00Z transition trial -> active [] (trial_ended)",
            "2026-05-01T00:00:00Z email trial_ended to admin@acme.test",
            "2026-06-01T00:00:00Z invoice #8 2026-06: base 200.00 + addon 20.00 = 220.00",
            "2026-06-01T00:00:00Z email invoice to billing@acme.test",
            "2026-06-01T00:00:00Z charge #8 220.00: Succeeded",
            "2026-06-01T00:00:00Z payment #8 succeeded",
            "invoice #7 is paid",
            "invoice #8 is paid",
        ]
    );
    assert_eq!(
        org.lifecycle,
        Lifecycle {
            next_cycle_at: Some(t("2026-07-01T00:00:00Z")),
            reminded_through: Some(t("2026-04-28T00:00:00Z")),
            ..subscriber().lifecycle
        }
    );
}

/// SPEC 5, "Overage is charged only when the org was not in trial at the end of that
/// period": converted on 2026-04-04, acme was a subscriber at the end of April, so April's
/// usage (including its trial days) is billed on 2026-05-01; March, in trial at its end,
/// is closed by no cycle.
#[test]
fn the_first_cycle_after_conversion_bills_the_overage_of_the_conversion_month() {
    let mut org = in_trial(true);
    let mut snapshot = snapshot_with_usage("2026-04", 22_000, 0);
    let march = Usage {
        mau: 30_000,
        data_points: 0,
    };
    snapshot.projects.insert(
        ("acme".to_owned(), period("2026-03")),
        BTreeMap::from([("web".to_owned(), march)]),
    );
    snapshot
        .usage
        .insert(("acme".to_owned(), period("2026-03")), march);
    let plan = run(
        &rules(),
        snapshot,
        &mut org,
        &[(Input::Advance, "2026-05-01T00:00:00Z")],
        &[Charge::Succeeded, Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-04-01T09:30:00Z email trial_ending to admin@acme.test",
            "2026-04-04T09:30:00Z invoice #7 2026-04: base 177.36 + addon 17.74 = 195.10",
            "2026-04-04T09:30:00Z email invoice to billing@acme.test",
            "2026-04-04T09:30:00Z charge #7 195.10: Succeeded",
            "2026-04-04T09:30:00Z payment #7 succeeded",
            "2026-04-04T09:30:00Z transition trial -> active [] (trial_ended)",
            "2026-04-04T09:30:00Z email trial_ended to admin@acme.test",
            "2026-05-01T00:00:00Z invoice #8 2026-05: base 200.00 + addon 20.00 + mau_overage 24.00 + addon_overage 2.40 = 246.40",
            "2026-05-01T00:00:00Z email invoice to billing@acme.test",
            "2026-05-01T00:00:00Z charge #8 246.40: Succeeded",
            "2026-05-01T00:00:00Z payment #8 succeeded",
            "invoice #7 is paid",
            "invoice #8 is paid",
        ]
    );
    assert_eq!(org, billed_for_may());
}

// ---------------------------------------------------------------------------------------
// Plan changes (SPEC 5)
// ---------------------------------------------------------------------------------------

/// SPEC 5, "Upgrade ... takes effect immediately and only if its prorated charge
/// (difference of base plus paid add-ons) is paid": from 2026-05-20 15:45:30, 980,070 s of
/// May's 2,678,400 remain (0.36591...): $50 more base is $18.30, $5 more Journeys $1.83.
#[test]
fn an_upgrade_charges_the_prorated_difference_to_the_second_and_applies_once_paid() {
    let mut org = billed_for_may();
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(
            plan_change(PlanChange::Upgrade { tier: 25_000 }),
            "2026-05-20T15:45:30Z",
        )],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T15:45:30Z invoice #7 2026-05: proration 18.30 + proration 1.83 = 20.13",
            "2026-05-20T15:45:30Z email invoice to billing@acme.test",
            "2026-05-20T15:45:30Z charge #7 20.13: Succeeded",
            "2026-05-20T15:45:30Z payment #7 succeeded",
            "2026-05-20T15:45:30Z plan upgrade: 25000 MAU [journeys]",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(
        org,
        Org {
            tier: 25_000,
            ..billed_for_may()
        }
    );
}

/// SPEC 5, "a failed charge leaves the plan as it was and changes no state": the invoice
/// is void (nothing is owed) and no transition is recorded.
#[test]
fn a_declined_upgrade_charge_voids_its_invoice_and_changes_nothing() {
    let mut org = billed_for_may();
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(
            plan_change(PlanChange::Upgrade { tier: 25_000 }),
            "2026-05-20T15:45:30Z",
        )],
        &[Charge::Failed],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T15:45:30Z invoice #7 2026-05: proration 18.30 + proration 1.83 = 20.13",
            "2026-05-20T15:45:30Z email invoice to billing@acme.test",
            "2026-05-20T15:45:30Z charge #7 20.13: Failed",
            "2026-05-20T15:45:30Z payment #7 failed",
            "2026-05-20T15:45:30Z plan upgrade_declined: 20000 MAU [journeys]",
            "invoice #7 is void",
        ]
    );
    assert_eq!(org, billed_for_may());
}

/// SPEC 5, "Add-on inclusion: immediate; a paid one is charged a prorated amount at once":
/// Journeys' $20 for 980,070 s of May's 2,678,400 is $7.32.
#[test]
fn a_paid_addon_is_charged_prorated_to_the_second_and_included_once_paid() {
    let without = Org {
        addons: Vec::new(),
        ..billed_for_may()
    };
    let mut org = without.clone();
    let add = PlanChange::AddAddon {
        addon: "journeys".to_owned(),
    };
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(plan_change(add.clone()), "2026-05-20T15:45:30Z")],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T15:45:30Z invoice #7 2026-05: proration 7.32 = 7.32",
            "2026-05-20T15:45:30Z email invoice to billing@acme.test",
            "2026-05-20T15:45:30Z charge #7 7.32: Succeeded",
            "2026-05-20T15:45:30Z payment #7 succeeded",
            "2026-05-20T15:45:30Z plan addon_added: 20000 MAU [journeys]",
            "2026-05-20T15:45:30Z email addon_changed to admin@acme.test",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(org, billed_for_may());

    // "... and is not added if that charge fails".
    let mut org = without.clone();
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(plan_change(add), "2026-05-20T15:45:30Z")],
        &[Charge::Failed],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T15:45:30Z invoice #7 2026-05: proration 7.32 = 7.32",
            "2026-05-20T15:45:30Z email invoice to billing@acme.test",
            "2026-05-20T15:45:30Z charge #7 7.32: Failed",
            "2026-05-20T15:45:30Z payment #7 failed",
            "2026-05-20T15:45:30Z plan addon_declined: 20000 MAU []",
            "invoice #7 is void",
        ]
    );
    assert_eq!(org, without);
}

/// SPEC 5, "In trial: immediate, no charge" for upgrades, downgrades, add-on inclusion and
/// removal alike.
#[test]
fn plan_changes_in_trial_are_immediate_and_free() {
    let mut org = Org {
        addons: Vec::new(),
        ..in_trial(true)
    };
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[
            (
                plan_change(PlanChange::Upgrade { tier: 25_000 }),
                "2026-03-10T00:00:00Z",
            ),
            (
                plan_change(PlanChange::AddAddon {
                    addon: "journeys".to_owned(),
                }),
                "2026-03-11T00:00:00Z",
            ),
            (
                plan_change(PlanChange::Downgrade { tier: 10_000 }),
                "2026-03-12T00:00:00Z",
            ),
            (
                plan_change(PlanChange::RemoveAddon {
                    addon: "journeys".to_owned(),
                }),
                "2026-03-13T00:00:00Z",
            ),
        ],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-03-10T00:00:00Z plan upgrade: 25000 MAU []",
            "2026-03-11T00:00:00Z plan addon_added: 25000 MAU [journeys]",
            "2026-03-11T00:00:00Z email addon_changed to admin@acme.test",
            "2026-03-12T00:00:00Z plan downgrade: 10000 MAU [journeys]",
            "2026-03-13T00:00:00Z plan addon_removed: 10000 MAU []",
            "2026-03-13T00:00:00Z email addon_changed to admin@acme.test",
        ]
    );
    assert_eq!(
        org,
        Org {
            tier: 10_000,
            addons: Vec::new(),
            ..in_trial(true)
        }
    );
}

/// SPEC 5, "Downgrade: ... otherwise scheduled for the next 1st, ... replaced by a newer
/// downgrade request": 10,000 then 15,000 requested in May; June is billed at 15,000
/// ($150 + $15).
#[test]
fn a_downgrade_is_scheduled_for_the_next_first_and_replaced_by_a_newer_one() {
    let mut org = billed_for_may();
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[
            (
                plan_change(PlanChange::Downgrade { tier: 10_000 }),
                "2026-05-10T00:00:00Z",
            ),
            (
                plan_change(PlanChange::Downgrade { tier: 15_000 }),
                "2026-05-12T00:00:00Z",
            ),
        ],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-10T00:00:00Z plan downgrade_scheduled: 20000 MAU [journeys]",
            "2026-05-10T00:00:00Z email downgrade_scheduled to admin@acme.test",
            "2026-05-12T00:00:00Z plan downgrade_rescheduled: 20000 MAU [journeys]",
            "2026-05-12T00:00:00Z email downgrade_scheduled to admin@acme.test",
        ]
    );
    assert_eq!(
        org,
        Org {
            scheduled_tier: Some(15_000),
            ..billed_for_may()
        }
    );

    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-06-01T00:00:00Z")],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-06-01T00:00:00Z plan downgrade_applied: 15000 MAU [journeys]",
            "2026-06-01T00:00:00Z email downgrade_applied to admin@acme.test",
            "2026-06-01T00:00:00Z invoice #7 2026-06: base 150.00 + addon 15.00 = 165.00",
            "2026-06-01T00:00:00Z email invoice to billing@acme.test",
            "2026-06-01T00:00:00Z charge #7 165.00: Succeeded",
            "2026-06-01T00:00:00Z payment #7 succeeded",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(org.tier, 15_000);
    assert_eq!(org.scheduled_tier, None);
}

/// SPEC 5, "cancellable until then": a canceled downgrade leaves June billed at 20,000.
#[test]
fn a_scheduled_downgrade_can_be_canceled_until_the_first() {
    let mut org = Org {
        scheduled_tier: Some(10_000),
        ..billed_for_may()
    };
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[
            (
                plan_change(PlanChange::CancelDowngrade),
                "2026-05-31T23:59:59Z",
            ),
            (Input::Advance, "2026-06-01T00:00:00Z"),
        ],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-05-31T23:59:59Z plan downgrade_canceled: 20000 MAU [journeys]",
            "2026-06-01T00:00:00Z invoice #7 2026-06: base 200.00 + addon 20.00 = 220.00",
            "2026-06-01T00:00:00Z email invoice to billing@acme.test",
            "2026-06-01T00:00:00Z charge #7 220.00: Succeeded",
            "2026-06-01T00:00:00Z payment #7 succeeded",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(org.tier, 20_000);
    assert_eq!(org.scheduled_tier, None);
}

/// SPEC 5, an upgrade "Cancels a scheduled downgrade": June is billed at 25,000.
#[test]
fn a_paid_upgrade_cancels_a_scheduled_downgrade() {
    let mut org = Org {
        scheduled_tier: Some(10_000),
        ..billed_for_may()
    };
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[
            (
                plan_change(PlanChange::Upgrade { tier: 25_000 }),
                "2026-05-20T15:45:30Z",
            ),
            (Input::Advance, "2026-06-01T00:00:00Z"),
        ],
        &[Charge::Succeeded, Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T15:45:30Z invoice #7 2026-05: proration 18.30 + proration 1.83 = 20.13",
            "2026-05-20T15:45:30Z email invoice to billing@acme.test",
            "2026-05-20T15:45:30Z charge #7 20.13: Succeeded",
            "2026-05-20T15:45:30Z payment #7 succeeded",
            "2026-05-20T15:45:30Z plan upgrade: 25000 MAU [journeys]",
            "2026-06-01T00:00:00Z invoice #8 2026-06: base 250.00 + addon 25.00 = 275.00",
            "2026-06-01T00:00:00Z email invoice to billing@acme.test",
            "2026-06-01T00:00:00Z charge #8 275.00: Succeeded",
            "2026-06-01T00:00:00Z payment #8 succeeded",
            "invoice #7 is paid",
            "invoice #8 is paid",
        ]
    );
    assert_eq!(org.tier, 25_000);
    assert_eq!(org.scheduled_tier, None);
}

/// SPEC 5, "Removal: in trial immediate; otherwise at the next 1st, cancellable until
/// then": Journeys stays billed in June after its removal was canceled, and goes in July.
#[test]
fn an_addon_removal_is_scheduled_for_the_next_first_and_cancellable_until_then() {
    let journeys = || "journeys".to_owned();
    let mut org = billed_for_may();
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[
            (
                plan_change(PlanChange::RemoveAddon { addon: journeys() }),
                "2026-05-10T00:00:00Z",
            ),
            (
                plan_change(PlanChange::CancelAddonRemoval { addon: journeys() }),
                "2026-05-12T00:00:00Z",
            ),
            (Input::Advance, "2026-06-01T00:00:00Z"),
            (
                plan_change(PlanChange::RemoveAddon { addon: journeys() }),
                "2026-06-10T00:00:00Z",
            ),
        ],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-05-10T00:00:00Z plan addon_removal_scheduled: 20000 MAU [journeys]",
            "2026-05-10T00:00:00Z email addon_changed to admin@acme.test",
            "2026-05-12T00:00:00Z plan addon_removal_canceled: 20000 MAU [journeys]",
            "2026-06-01T00:00:00Z invoice #7 2026-06: base 200.00 + addon 20.00 = 220.00",
            "2026-06-01T00:00:00Z email invoice to billing@acme.test",
            "2026-06-01T00:00:00Z charge #7 220.00: Succeeded",
            "2026-06-01T00:00:00Z payment #7 succeeded",
            "2026-06-10T00:00:00Z plan addon_removal_scheduled: 20000 MAU [journeys]",
            "2026-06-10T00:00:00Z email addon_changed to admin@acme.test",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(org.addons, [journeys()]);
    assert_eq!(org.scheduled_removals, [journeys()]);

    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-07-01T00:00:00Z")],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-07-01T00:00:00Z plan addon_removed: 20000 MAU []",
            "2026-07-01T00:00:00Z email addon_changed to admin@acme.test",
            "2026-07-01T00:00:00Z invoice #7 2026-07: base 200.00 = 200.00",
            "2026-07-01T00:00:00Z email invoice to billing@acme.test",
            "2026-07-01T00:00:00Z charge #7 200.00: Succeeded",
            "2026-07-01T00:00:00Z payment #7 succeeded",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(org.addons, Vec::<String>::new());
    assert_eq!(org.scheduled_removals, Vec::<String>::new());
}

/// Plans `input` at `at` and checks it is refused with exactly `message`; the org is left
/// as it was (the caller drops the plan).
#[track_caller]
fn check_refused(org: &Org, snapshot: Snapshot, input: Input<'_>, at: &str, message: &str) {
    let mut changed = org.clone();
    match plan_inputs(&rules(), snapshot, &mut changed, &[(input, at)], &[]) {
        Ok((plan, charges)) => panic!("accepted: {:?}", render(&plan, &charges)),
        Err(rejection) => assert_eq!(rejection.to_string(), message),
    }
    assert_eq!(&changed, org, "a refused input changed the org");
}

/// SPEC 5, "Plan changes are refused in grace_period, in locked with payment_overdue or
/// trial_expired, and in canceled, with a message saying to settle the payment first".
#[test]
fn plan_changes_are_refused_until_the_payment_is_settled() {
    check_refused(
        &in_grace(),
        snapshot_with_failed_may_invoice(),
        plan_change(PlanChange::Upgrade { tier: 25_000 }),
        "2026-05-05T00:00:00Z",
        "cannot upgrade: a payment is overdue: settle the payment first; org is grace_period; \
         legal moves: add_payment_method, lock, extend_grace, mark_paid, cancel",
    );
    check_refused(
        &in_grace(),
        snapshot_with_failed_may_invoice(),
        plan_change(PlanChange::Downgrade { tier: 10_000 }),
        "2026-05-05T00:00:00Z",
        "cannot downgrade: a payment is overdue: settle the payment first; org is grace_period; \
         legal moves: add_payment_method, lock, extend_grace, mark_paid, cancel",
    );
    let overdue = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[PaymentOverdue]),
            grace_ends_at: None,
            cancel_at: Some(t("2026-05-25T00:00:00Z")),
            reminder_at: Some(t("2026-05-22T00:00:00Z")),
            ..in_grace().lifecycle
        },
        ..in_grace()
    };
    check_refused(
        &overdue,
        snapshot_with_failed_may_invoice(),
        plan_change(PlanChange::RemoveAddon {
            addon: "journeys".to_owned(),
        }),
        "2026-05-12T00:00:00Z",
        "cannot remove_addon: a payment is overdue: settle the payment first; org is locked \
         (payment_overdue); legal moves: add_payment_method, lock, postpone_cancel, mark_paid, \
         cancel, unlock (payment_overdue)",
    );
    let expired = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[TrialExpired]),
            trial_ends_at: None,
            cancel_at: Some(t("2026-04-18T09:30:00Z")),
            reminder_at: Some(t("2026-04-15T09:30:00Z")),
            reminded_through: Some(t("2026-04-01T09:30:00Z")),
            ..in_trial(false).lifecycle
        },
        ..in_trial(false)
    };
    check_refused(
        &expired,
        snapshot(),
        plan_change(PlanChange::Upgrade { tier: 25_000 }),
        "2026-04-10T00:00:00Z",
        "cannot upgrade: a payment is overdue: settle the payment first; org is locked \
         (trial_expired); legal moves: add_payment_method, lock, postpone_cancel, cancel, \
         unlock (trial_expired)",
    );
    let canceled = Org {
        canceled_at: Some(t("2026-04-18T09:30:00Z")),
        lifecycle: Lifecycle {
            status: Canceled,
            reasons: LockReasons::default(),
            cancel_at: None,
            reminder_at: None,
            ..expired.lifecycle
        },
        ..expired
    };
    check_refused(
        &canceled,
        snapshot(),
        plan_change(PlanChange::Upgrade { tier: 25_000 }),
        "2026-04-20T00:00:00Z",
        "cannot upgrade: not allowed in state canceled; org is canceled; no moves are legal",
    );
}

// ---------------------------------------------------------------------------------------
// Usage, alerts and the overage lock (SPEC 4)
// ---------------------------------------------------------------------------------------

/// The alerts thresholds 80 to 300 % recorded for acme in May.
fn alerted_in_may_up_to(highest: u32) -> HashSet<(String, Period, u32)> {
    [80, 100, 125, 150, 200, 250, 300]
        .into_iter()
        .filter(|threshold| *threshold <= highest)
        .map(|threshold| ("acme".to_owned(), period("2026-05"), threshold))
        .collect()
}

/// SPEC 4, "Each threshold fires at most once per org per period ... One report that
/// crosses several thresholds records one alert per threshold and sends one email naming
/// the highest": 25,000 MAU of 20,000 (125 %) fires 80, 100 and 125 with one email; 26,000
/// fires nothing new; 31,000 (155 %) fires 150 alone.
#[test]
fn alerts_fire_once_per_threshold_and_period_with_one_email_naming_the_highest() {
    let mut org = billed_for_may();
    let (plan, _) = plan_inputs(
        &rules(),
        snapshot(),
        &mut org,
        &[
            (
                Input::Usage(&report("2026-05", 25_000, 0)),
                "2026-05-10T12:00:00Z",
            ),
            (
                Input::Usage(&report("2026-05", 26_000, 0)),
                "2026-05-11T12:00:00Z",
            ),
            (
                Input::Usage(&report("2026-05", 31_000, 0)),
                "2026-05-12T12:00:00Z",
            ),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        render(&plan, &[]),
        [
            "2026-05-10T12:00:00Z alert 80 at 125.00 %",
            "2026-05-10T12:00:00Z alert 100 at 125.00 %",
            "2026-05-10T12:00:00Z alert 125 at 125.00 %",
            "2026-05-10T12:00:00Z email overage_alert to admin@acme.test",
            "2026-05-12T12:00:00Z alert 150 at 155.00 %",
            "2026-05-12T12:00:00Z email overage_alert to admin@acme.test",
            "totals acme 2026-05 web: 31000 MAU, 0 data points",
        ]
    );
    let alert = |threshold, usage_mau, usage_percent: &str, at: &str| NewAlert {
        org_id: "acme".to_owned(),
        period: period("2026-05"),
        threshold,
        usage_mau,
        usage_percent: usage_percent.to_owned(),
        at: t(at),
    };
    assert_eq!(
        plan.alerts,
        [
            alert(80, 25_000, "125.00", "2026-05-10T12:00:00Z"),
            alert(100, 25_000, "125.00", "2026-05-10T12:00:00Z"),
            alert(125, 25_000, "125.00", "2026-05-10T12:00:00Z"),
            alert(150, 31_000, "155.00", "2026-05-12T12:00:00Z"),
        ]
    );
    let emails: Vec<_> = plan
        .outbox
        .iter()
        .map(|m| {
            (
                m.dedupe_key.as_str(),
                m.payload["threshold"].clone(),
                m.payload["upgrade_hint"].clone(),
            )
        })
        .collect();
    assert_eq!(
        emails,
        [
            (
                "acme:overage_alert:2026-05:125",
                serde_json::json!(125),
                serde_json::json!("upgrade to the 25000 MAU tier")
            ),
            (
                "acme:overage_alert:2026-05:150",
                serde_json::json!(150),
                serde_json::json!("upgrade to the 40000 MAU tier")
            ),
        ]
    );
    assert_eq!(
        org,
        Org {
            usage: Some((period("2026-05"), 31_000)),
            ..billed_for_may()
        }
    );
}

/// SPEC 4 and 5 ("reset the period's alerts"): thresholds recorded in May do not fire
/// again for May, but fire again in June.
#[test]
fn alerts_fire_again_in_a_new_period() {
    let mut org = Org {
        usage: Some((period("2026-05"), 31_000)),
        ..billed_for_may()
    };
    let snapshot = Snapshot {
        alerted: alerted_in_may_up_to(150),
        ..snapshot_with_usage("2026-05", 31_000, 0)
    };
    let plan = run(
        &rules(),
        snapshot,
        &mut org,
        &[
            (
                Input::Usage(&report("2026-05", 32_000, 0)),
                "2026-05-31T23:00:00Z",
            ),
            (
                Input::Usage(&report("2026-06", 17_000, 0)),
                "2026-06-10T12:00:00Z",
            ),
        ],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-06-10T12:00:00Z alert 80 at 85.00 %",
            "2026-06-10T12:00:00Z email overage_alert to admin@acme.test",
            "totals acme 2026-05 web: 32000 MAU, 0 data points",
            "totals acme 2026-06 web: 17000 MAU, 0 data points",
        ]
    );
    assert_eq!(org.usage, Some((period("2026-06"), 17_000)));
}

/// SPEC 4, "Alerts fire in trial too"; data points count as processed MAU
/// (34,000,000 / 2,000 = 17,000 on Basic).
#[test]
fn alerts_fire_in_trial_too() {
    let mut org = in_trial(false);
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(
            Input::Usage(&report("2026-03", 9_000, 34_000_000)),
            "2026-03-20T12:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-03-20T12:00:00Z alert 80 at 85.00 %",
            "2026-03-20T12:00:00Z email overage_alert to admin@acme.test",
            "totals acme 2026-03 web: 9000 MAU, 34000000 data points",
        ]
    );
    assert_eq!(
        org,
        Org {
            usage: Some((period("2026-03"), 17_000)),
            ..in_trial(false)
        }
    );
}

/// SPEC 4, "Usage % strictly above 300 locks the org with reason overage": exactly 300 %
/// (60,000 of 20,000) fires the alerts up to 300 and does not lock; 60,001 locks.
#[test]
fn usage_strictly_above_300_percent_locks_for_overage_and_exactly_300_does_not() {
    let mut org = billed_for_may();
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[
            (
                Input::Usage(&report("2026-05", 60_000, 0)),
                "2026-05-10T12:00:00Z",
            ),
            (
                Input::Usage(&report("2026-05", 60_001, 0)),
                "2026-05-11T12:00:00Z",
            ),
        ],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-10T12:00:00Z alert 80 at 300.00 %",
            "2026-05-10T12:00:00Z alert 100 at 300.00 %",
            "2026-05-10T12:00:00Z alert 125 at 300.00 %",
            "2026-05-10T12:00:00Z alert 150 at 300.00 %",
            "2026-05-10T12:00:00Z alert 200 at 300.00 %",
            "2026-05-10T12:00:00Z alert 250 at 300.00 %",
            "2026-05-10T12:00:00Z alert 300 at 300.00 %",
            "2026-05-10T12:00:00Z email overage_alert to admin@acme.test",
            "2026-05-11T12:00:00Z transition active -> locked [overage] (overage)",
            "2026-05-11T12:00:00Z email overage_locked to admin@acme.test",
            "totals acme 2026-05 web: 60001 MAU, 0 data points",
        ]
    );
    assert_eq!(org, overage_locked(60_001, 60_001));
}

/// SPEC 3 and 4: the overage lock applies in trial too and keeps the trial deadline (the
/// trial clock runs on); a further report records the highest usage since the lock.
#[test]
fn the_overage_lock_in_trial_keeps_the_trial_deadline_and_tracks_the_highest_usage() {
    let mut org = in_trial(true);
    let snapshot = Snapshot {
        alerted: [80, 100, 125, 150, 200, 250, 300]
            .into_iter()
            .map(|threshold| ("acme".to_owned(), period("2026-03"), threshold))
            .collect(),
        ..snapshot()
    };
    let plan = run(
        &rules(),
        snapshot,
        &mut org,
        &[
            (
                Input::Usage(&report("2026-03", 70_000, 0)),
                "2026-03-20T12:00:00Z",
            ),
            (
                Input::Usage(&report("2026-03", 80_000, 0)),
                "2026-03-21T12:00:00Z",
            ),
        ],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-03-20T12:00:00Z transition trial -> locked [overage] (overage)",
            "2026-03-20T12:00:00Z email overage_locked to admin@acme.test",
            "totals acme 2026-03 web: 80000 MAU, 0 data points",
        ]
    );
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                status: Locked,
                reasons: reasons(&[Overage]),
                ..in_trial(true).lifecycle
            },
            usage: Some((period("2026-03"), 80_000)),
            overage_lock_mau: Some(80_000),
            ..in_trial(true)
        }
    );
}

/// SPEC 3, `locked{overage} | upgrade so that 3 × new tier ≥ max(usage MAU now, usage MAU
/// that caused the lock) | drop overage`: locked at 75,000, now at 60,001; 3 × 25,000 =
/// 75,000 is enough (≥), and the org returns to active once the upgrade is paid.
#[test]
fn a_paid_upgrade_lifts_the_overage_lock_when_three_times_the_new_tier_covers_the_usage() {
    let mut org = overage_locked(60_001, 75_000);
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(
            plan_change(PlanChange::Upgrade { tier: 25_000 }),
            "2026-05-20T15:45:30Z",
        )],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T15:45:30Z invoice #7 2026-05: proration 18.30 + proration 1.83 = 20.13",
            "2026-05-20T15:45:30Z email invoice to billing@acme.test",
            "2026-05-20T15:45:30Z charge #7 20.13: Succeeded",
            "2026-05-20T15:45:30Z payment #7 succeeded",
            "2026-05-20T15:45:30Z plan upgrade: 25000 MAU [journeys]",
            "2026-05-20T15:45:30Z transition locked -> active [] (upgrade)",
            "2026-05-20T15:45:30Z email account_unlocked to admin@acme.test",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(
        org,
        Org {
            tier: 25_000,
            usage: Some((period("2026-05"), 60_001)),
            ..billed_for_may()
        }
    );
}

/// SPEC 3, the lift rule's two sides: an upgrade to 25,000 (75,000) lifts nothing when the
/// usage now is 75,001, nor when the usage that caused the lock was 75,001 and the usage
/// now is lower; the upgrade itself is made, the org stays locked.
#[test]
fn an_upgrade_below_the_usage_now_or_at_the_lock_keeps_the_overage_lock() {
    for (usage_now, usage_at_lock) in [(75_001, 60_001), (30_000, 75_001)] {
        let mut org = overage_locked(usage_now, usage_at_lock);
        let plan = run(
            &rules(),
            snapshot(),
            &mut org,
            &[(
                plan_change(PlanChange::Upgrade { tier: 25_000 }),
                "2026-05-20T15:45:30Z",
            )],
            &[Charge::Succeeded],
        );
        assert_eq!(
            plan,
            [
                "2026-05-20T15:45:30Z invoice #7 2026-05: proration 18.30 + proration 1.83 = 20.13",
                "2026-05-20T15:45:30Z email invoice to billing@acme.test",
                "2026-05-20T15:45:30Z charge #7 20.13: Succeeded",
                "2026-05-20T15:45:30Z payment #7 succeeded",
                "2026-05-20T15:45:30Z plan upgrade: 25000 MAU [journeys]",
                "invoice #7 is paid",
            ],
            "usage now {usage_now}, at the lock {usage_at_lock}"
        );
        assert_eq!(
            org,
            Org {
                tier: 25_000,
                ..overage_locked(usage_now, usage_at_lock)
            }
        );
    }
}

/// Plans one usage report and checks it is refused with exactly `message`: nothing is
/// planned and the org is left as it was.
#[track_caller]
fn check_usage_refused(
    org: &Org,
    snapshot: Snapshot,
    report: &UsageReport,
    at: &str,
    message: &str,
) {
    let rules = rules();
    let mut planner = Planner::new(&rules, snapshot, t("2026-07-01T00:00:00Z"));
    let mut orgs = BTreeMap::from([(org.id.clone(), org.clone())]);
    let outcome = planner.usage(&mut orgs, report, &Actor::system(), t(at));
    assert_eq!(outcome, Ok(Outcome::Refused(message.to_owned())));
    assert_eq!(orgs[&org.id], *org, "a refused report changed the org");
    let plan = planner.finish();
    assert!(
        plan.is_empty(),
        "a refused report planned {:?}",
        render(&plan, &[])
    );
    assert!(plan.alerts.is_empty() && plan.outbox.is_empty());
}

/// SPEC 4, "a lower total is refused unless marked a correction": MAU or data points lower
/// than reported before for the project.
#[test]
fn lower_totals_are_refused_unless_marked_a_correction() {
    let org = Org {
        usage: Some((period("2026-05"), 25_000)),
        ..billed_for_may()
    };
    let earlier = || Snapshot {
        alerted: alerted_in_may_up_to(125),
        ..snapshot_with_usage("2026-05", 25_000, 1_000_000)
    };
    check_usage_refused(
        &org,
        earlier(),
        &report("2026-05", 24_000, 1_000_000),
        "2026-05-12T00:00:00Z",
        "totals are lower than reported before for project `web` in 2026-05 (mau 24000 < \
         25000); send it as a correction",
    );
    check_usage_refused(
        &org,
        earlier(),
        &report("2026-05", 26_000, 999_999),
        "2026-05-12T00:00:00Z",
        "totals are lower than reported before for project `web` in 2026-05 (data points \
         999999 < 1000000); send it as a correction",
    );
    let mut corrected = org.clone();
    let plan = run(
        &rules(),
        earlier(),
        &mut corrected,
        &[(
            Input::Usage(&UsageReport {
                correction: true,
                ..report("2026-05", 24_000, 999_999)
            }),
            "2026-05-12T00:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        ["totals acme 2026-05 web: 24000 MAU, 999999 data points"]
    );
    assert_eq!(
        corrected,
        Org {
            usage: Some((period("2026-05"), 24_000)),
            ..org
        }
    );
}

/// SPEC 4, "a report for a period that was already invoiced, for an unknown org, a canceled
/// org or a malformed period is refused"; and one for a period that has not begun.
#[test]
fn reports_for_an_invoiced_period_an_unknown_or_canceled_org_or_a_bad_period_are_refused() {
    let org = billed_for_may();
    let mut invoiced = snapshot_with_usage("2026-04", 19_000, 0);
    invoiced
        .keys
        .insert(("acme".to_owned(), "cycle:2026-05".to_owned()));
    check_usage_refused(
        &org,
        invoiced,
        &report("2026-04", 22_000, 0),
        "2026-05-02T00:00:00Z",
        "period 2026-04 is already invoiced",
    );
    check_usage_refused(
        &org,
        snapshot(),
        &UsageReport {
            org: "globex".to_owned(),
            ..report("2026-05", 1_000, 0)
        },
        "2026-05-02T00:00:00Z",
        "unknown org `globex`",
    );
    check_usage_refused(
        &org,
        snapshot(),
        &report("2026-06", 1_000, 0),
        "2026-05-31T23:59:59Z",
        "period 2026-06 is in the future",
    );
    check_usage_refused(
        &org,
        snapshot(),
        &report("2026-5", 1_000, 0),
        "2026-05-02T00:00:00Z",
        "malformed period `2026-5`, expected YYYY-MM",
    );
    let canceled = Org {
        canceled_at: Some(t("2026-05-10T00:00:00Z")),
        lifecycle: Lifecycle {
            status: Canceled,
            subscriber: false,
            next_cycle_at: None,
            ..org.lifecycle.clone()
        },
        ..org.clone()
    };
    check_usage_refused(
        &canceled,
        snapshot(),
        &report("2026-05", 1_000, 0),
        "2026-05-12T00:00:00Z",
        "org `acme` is canceled",
    );
}

// ---------------------------------------------------------------------------------------
// Payment outcomes reported later (SPEC 3 and 5)
// ---------------------------------------------------------------------------------------

/// [`snapshot_with_failed_may_invoice`] with April's invoice #2 ($220) failed as well.
fn snapshot_with_two_failed_invoices() -> Snapshot {
    let mut snapshot = snapshot_with_failed_may_invoice();
    snapshot
        .keys
        .insert(("acme".to_owned(), "cycle:2026-04".to_owned()));
    snapshot.invoices.insert(
        2,
        stored_invoice(
            2,
            "cycle:2026-04",
            "2026-04",
            InvoiceKind::Cycle,
            "220.00",
            InvoiceStatus::Failed,
        ),
    );
    snapshot
}

/// SPEC 3, `grace_period | payment succeeded | active | deadlines cleared`, and SPEC 5, "A
/// successful payment settles every overdue invoice of the org": May's invoice paid later
/// settles April's too.
#[test]
fn a_payment_for_a_failed_cycle_invoice_in_grace_settles_every_overdue_invoice() {
    let mut org = in_grace();
    let plan = run(
        &rules(),
        snapshot_with_two_failed_invoices(),
        &mut org,
        &[(
            Input::Payment {
                invoice: 3,
                succeeded: true,
            },
            "2026-05-05T10:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-05T10:00:00Z payment #3 succeeded",
            "2026-05-05T10:00:00Z transition grace_period -> active [] (payment_succeeded)",
            "invoice #3 becomes paid at 2026-05-05T10:00:00Z",
            "invoice #2 becomes paid at 2026-05-05T10:00:00Z",
        ]
    );
    assert_eq!(org, billed_for_may());
}

/// SPEC 9's `card_updated` ("overdue invoices are retried at once"): the newest overdue
/// invoice is charged again; its success settles the older one and ends grace.
#[test]
fn retrying_overdue_invoices_charges_the_newest_and_a_success_settles_all() {
    let mut org = in_grace();
    let plan = run(
        &rules(),
        snapshot_with_two_failed_invoices(),
        &mut org,
        &[(
            Input::Command(Command::RetryOverdue),
            "2026-05-05T10:00:00Z",
        )],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-05-05T10:00:00Z charge #3 220.00: Succeeded",
            "2026-05-05T10:00:00Z payment #3 succeeded",
            "2026-05-05T10:00:00Z transition grace_period -> active [] (payment_succeeded)",
            "invoice #3 becomes paid at 2026-05-05T10:00:00Z",
            "invoice #2 becomes paid at 2026-05-05T10:00:00Z",
        ]
    );
    assert_eq!(org, billed_for_may());
}

/// SPEC 3, `locked | payment succeeded | drop payment_overdue | overdue invoices settled`,
/// then `reason set becomes empty | active | cancel_at cleared`.
#[test]
fn a_payment_while_locked_for_payment_overdue_settles_and_unlocks() {
    let mut org = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[PaymentOverdue]),
            grace_ends_at: None,
            cancel_at: Some(t("2026-05-25T00:00:00Z")),
            reminder_at: Some(t("2026-05-22T00:00:00Z")),
            ..in_grace().lifecycle
        },
        ..in_grace()
    };
    let plan = run(
        &rules(),
        snapshot_with_two_failed_invoices(),
        &mut org,
        &[(
            Input::Payment {
                invoice: 2,
                succeeded: true,
            },
            "2026-05-15T10:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-15T10:00:00Z payment #2 succeeded",
            "2026-05-15T10:00:00Z transition locked -> active [] (payment_succeeded)",
            "2026-05-15T10:00:00Z email account_unlocked to admin@acme.test",
            "invoice #2 becomes paid at 2026-05-15T10:00:00Z",
            "invoice #3 becomes paid at 2026-05-15T10:00:00Z",
        ]
    );
    assert_eq!(org, billed_for_may());
}

/// SPEC 3, `active | invoice payment failed | grace_period | grace_ends_at set`: the
/// outcome of a pending cycle charge arrives a day later; grace runs ten days from it.
#[test]
fn a_failed_outcome_for_a_pending_cycle_invoice_starts_grace_from_the_outcome() {
    let mut snapshot = snapshot();
    snapshot
        .keys
        .insert(("acme".to_owned(), "cycle:2026-05".to_owned()));
    snapshot.invoices.insert(
        7,
        stored_invoice(
            7,
            "cycle:2026-05",
            "2026-05",
            InvoiceKind::Cycle,
            "220.00",
            InvoiceStatus::Open,
        ),
    );
    let mut org = billed_for_may();
    let plan = run(
        &rules(),
        snapshot,
        &mut org,
        &[(
            Input::Payment {
                invoice: 7,
                succeeded: false,
            },
            "2026-05-02T06:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-02T06:00:00Z payment #7 failed",
            "2026-05-02T06:00:00Z transition active -> grace_period [] (payment_failed)",
            "2026-05-02T06:00:00Z email payment_failed to billing@acme.test",
            "invoice #7 becomes failed at 2026-05-02T06:00:00Z",
        ]
    );
    assert_eq!(
        org.lifecycle,
        Lifecycle {
            status: GracePeriod,
            grace_ends_at: Some(t("2026-05-12T06:00:00Z")),
            reminder_at: Some(t("2026-05-09T06:00:00Z")),
            ..billed_for_may().lifecycle
        }
    );
}

// ---------------------------------------------------------------------------------------
// Reminders (SPEC 6: trial_ending, grace_ending, cancel_warning, 3 days before)
// ---------------------------------------------------------------------------------------

/// SPEC 6: `grace_ending` three days before the grace deadline, then the lock at the
/// deadline (SPEC 3, `grace_period | grace_ends_at reached | locked{payment_overdue} |
/// cancel_at set`), then `cancel_warning` three days before the auto-cancel; each sent
/// once, however often the org is caught up.
#[test]
fn grace_ending_and_cancel_warning_reminders_are_sent_once_three_days_ahead() {
    let rules = rules();
    let mut org = in_grace();
    let mut planner = Planner::new(
        &rules,
        snapshot_with_failed_may_invoice(),
        t("2026-07-01T00:00:00Z"),
    );
    for until in [
        "2026-05-08T00:00:00Z",
        "2026-05-09T00:00:00Z",
        "2026-05-11T00:00:00Z",
        "2026-05-22T00:00:00Z",
        "2026-05-23T00:00:00Z",
    ] {
        assert_eq!(planner.advance(&mut org, t(until)), Ok(Step::Done));
    }
    let plan = planner.finish();
    assert_eq!(
        render(&plan, &[]),
        [
            "2026-05-08T00:00:00Z email grace_ending to admin@acme.test",
            "2026-05-11T00:00:00Z transition grace_period -> locked [payment_overdue] (grace_expired)",
            "2026-05-11T00:00:00Z email account_locked to admin@acme.test",
            "2026-05-22T00:00:00Z email cancel_warning to admin@acme.test",
        ]
    );
    let keys: Vec<_> = plan.outbox.iter().map(|m| m.dedupe_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "acme:grace_ending:2026-05-11T00:00:00Z",
            "acme:account_locked:grace_expired:2026-05-11T00:00:00Z:v3.1",
            "acme:cancel_warning:2026-05-25T00:00:00Z",
        ]
    );
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                status: Locked,
                reasons: reasons(&[PaymentOverdue]),
                grace_ends_at: None,
                cancel_at: Some(t("2026-05-25T00:00:00Z")),
                reminder_at: None,
                reminded_through: Some(t("2026-05-22T00:00:00Z")),
                ..in_grace().lifecycle
            },
            ..in_grace()
        }
    );
}

/// SPEC 6, `trial_ending` three days before the trial ends, sent once; a trial extended
/// after it was sent (SPEC 10) is reminded again before its new end.
#[test]
fn the_trial_ending_reminder_is_sent_once_and_again_for_an_extended_trial() {
    let mut org = in_trial(true);
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[
            (Input::Advance, "2026-04-01T09:30:00Z"),
            (Input::Advance, "2026-04-02T00:00:00Z"),
            (
                Input::Command(Command::ExtendTrial { days: 7 }),
                "2026-04-02T00:00:00Z",
            ),
            (Input::Advance, "2026-04-08T09:30:00Z"),
        ],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-04-01T09:30:00Z email trial_ending to admin@acme.test",
            "2026-04-02T00:00:00Z transition trial -> trial [] (extend_trial)",
            "2026-04-08T09:30:00Z email trial_ending to admin@acme.test",
        ]
    );
    assert_eq!(
        org.lifecycle,
        Lifecycle {
            trial_ends_at: Some(t("2026-04-11T09:30:00Z")),
            reminder_at: None,
            reminded_through: Some(t("2026-04-08T09:30:00Z")),
            ..in_trial(true).lifecycle
        }
    );
}

// ---------------------------------------------------------------------------------------
// More charges as effects (SPEC 3 and 5)
// ---------------------------------------------------------------------------------------

/// SPEC 3, `trial | end_trial (admin/customer) | as on trial_ends_at`: the command stops at
/// the conversion charge for the rest of March from 2026-03-20 00:00 (12 of 31 days:
/// $77.42 + $7.74); once paid the org is a subscriber billed from 2026-04-01, and its trial
/// reminder is no longer due.
#[test]
fn end_trial_with_a_card_charges_the_rest_of_the_month_from_the_command_instant() {
    let mut org = in_trial(true);
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Command(Command::EndTrial), "2026-03-20T00:00:00Z")],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-03-20T00:00:00Z invoice #7 2026-03: base 77.42 + addon 7.74 = 85.16",
            "2026-03-20T00:00:00Z email invoice to billing@acme.test",
            "2026-03-20T00:00:00Z charge #7 85.16: Succeeded",
            "2026-03-20T00:00:00Z payment #7 succeeded",
            "2026-03-20T00:00:00Z transition trial -> active [] (end_trial)",
            "2026-03-20T00:00:00Z email trial_ended to admin@acme.test",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                next_cycle_at: Some(t("2026-04-01T00:00:00Z")),
                reminded_through: None,
                ..subscriber().lifecycle
            },
            ..subscriber()
        }
    );
}

/// SPEC 3, `locked (lock began in trial) | trial_ends_at reached | | locked | with a card:
/// as above but the org stays locked (a failed charge sets grace_ends_at)`.
#[test]
fn trial_end_while_locked_for_overage_in_trial_converts_and_a_failed_charge_sets_grace() {
    let locked_in_trial = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[Overage]),
            ..in_trial(true).lifecycle
        },
        usage: Some((period("2026-03"), 80_000)),
        overage_lock_mau: Some(80_000),
        ..in_trial(true)
    };
    let mut org = locked_in_trial.clone();
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(Input::Advance, "2026-04-04T09:30:00Z")],
        &[Charge::Failed],
    );
    assert_eq!(
        plan,
        [
            "2026-04-01T09:30:00Z email trial_ending to admin@acme.test",
            "2026-04-04T09:30:00Z invoice #7 2026-04: base 177.36 + addon 17.74 = 195.10",
            "2026-04-04T09:30:00Z email invoice to billing@acme.test",
            "2026-04-04T09:30:00Z charge #7 195.10: Failed",
            "2026-04-04T09:30:00Z payment #7 failed",
            "2026-04-04T09:30:00Z transition locked -> locked [overage] (trial_ended)",
            "2026-04-04T09:30:00Z email trial_ended to admin@acme.test",
            "2026-04-04T09:30:00Z email payment_failed to billing@acme.test",
            "invoice #7 is failed",
        ]
    );
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                status: Locked,
                reasons: reasons(&[Overage]),
                grace_ends_at: Some(t("2026-04-14T09:30:00Z")),
                reminder_at: Some(t("2026-04-11T09:30:00Z")),
                ..subscriber().lifecycle
            },
            ..locked_in_trial
        }
    );
}

/// SPEC 3, `trial, active, grace_period | usage % > 300 | locked{overage} | grace_ends_at
/// ... kept`; SPEC 4: 130,000 MAU (650 %) crosses all eight thresholds at once, one email.
#[test]
fn usage_above_300_percent_in_grace_locks_keeping_the_grace_deadline() {
    let mut org = in_grace();
    let plan = run(
        &rules(),
        snapshot_with_failed_may_invoice(),
        &mut org,
        &[(
            Input::Usage(&report("2026-05", 130_000, 0)),
            "2026-05-05T00:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-05T00:00:00Z alert 80 at 650.00 %",
            "2026-05-05T00:00:00Z alert 100 at 650.00 %",
            "2026-05-05T00:00:00Z alert 125 at 650.00 %",
            "2026-05-05T00:00:00Z alert 150 at 650.00 %",
            "2026-05-05T00:00:00Z alert 200 at 650.00 %",
            "2026-05-05T00:00:00Z alert 250 at 650.00 %",
            "2026-05-05T00:00:00Z alert 300 at 650.00 %",
            "2026-05-05T00:00:00Z alert 600 at 650.00 %",
            "2026-05-05T00:00:00Z email overage_alert to admin@acme.test",
            "2026-05-05T00:00:00Z transition grace_period -> locked [overage] (overage)",
            "2026-05-05T00:00:00Z email overage_locked to admin@acme.test",
            "totals acme 2026-05 web: 130000 MAU, 0 data points",
        ]
    );
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                status: Locked,
                reasons: reasons(&[Overage]),
                ..in_grace().lifecycle
            },
            usage: Some((period("2026-05"), 130_000)),
            overage_lock_mau: Some(130_000),
            ..in_grace()
        }
    );
}

/// SPEC 3 (lift rule) and 5 ("In trial: immediate, no charge"): an org locked for overage
/// in trial at 80,000 of 20,000 MAU is unlocked by a free upgrade to 30,000 (90,000) and
/// returns to trial.
#[test]
fn an_upgrade_in_trial_lifts_the_overage_lock_back_to_trial_without_a_charge() {
    let mut org = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[Overage]),
            ..in_trial(true).lifecycle
        },
        usage: Some((period("2026-03"), 80_000)),
        overage_lock_mau: Some(80_000),
        ..in_trial(true)
    };
    let plan = run(
        &rules(),
        snapshot(),
        &mut org,
        &[(
            plan_change(PlanChange::Upgrade { tier: 30_000 }),
            "2026-03-21T00:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-03-21T00:00:00Z plan upgrade: 30000 MAU [journeys]",
            "2026-03-21T00:00:00Z transition locked -> trial [] (upgrade)",
            "2026-03-21T00:00:00Z email account_unlocked to admin@acme.test",
        ]
    );
    assert_eq!(
        org,
        Org {
            tier: 30_000,
            usage: Some((period("2026-03"), 80_000)),
            ..in_trial(true)
        }
    );
}

/// SPEC 3, `locked{trial_expired} | payment method added | drop trial_expired if the charge
/// succeeds`, and SPEC 5, "A successful payment settles every overdue invoice of the org".
/// A first card is declined on 2026-04-10 (the org stays locked, not a subscriber), a
/// second one pays the rest of April on 04-12. The first attempt's invoice must not stay
/// owed: the retry of overdue invoices on 04-13 (`card_updated`) must charge nothing.
#[test]
fn a_declined_card_after_trial_expired_leaves_nothing_owed_once_a_second_card_pays() {
    let rules = rules();
    let mut org = Org {
        lifecycle: Lifecycle {
            status: Locked,
            reasons: reasons(&[TrialExpired]),
            trial_ends_at: None,
            cancel_at: Some(t("2026-04-18T09:30:00Z")),
            reminder_at: Some(t("2026-04-15T09:30:00Z")),
            reminded_through: Some(t("2026-04-01T09:30:00Z")),
            ..in_trial(false).lifecycle
        },
        ..in_trial(false)
    };
    let user = Actor::new("ops@vendor.test", "asked by the customer");
    let mut planner = Planner::new(&rules, snapshot(), t("2026-07-01T00:00:00Z"));
    for (at, outcome) in [
        ("2026-04-10T00:00:00Z", Charge::Failed),
        ("2026-04-12T00:00:00Z", Charge::Succeeded),
    ] {
        let step = planner
            .command(&mut org, &Command::AddPaymentMethod, &user, t(at))
            .unwrap();
        let Step::Charge(request) = step else {
            panic!("no charge at {at}: {step:?}")
        };
        assert_eq!(planner.charged(&mut org, request, outcome), Ok(Step::Done));
    }
    assert_eq!(org.lifecycle.status, Active);
    assert_eq!(
        planner.snapshot.overdue("acme"),
        Vec::new(),
        "an invoice is owed after the conversion was paid"
    );
    let retry = planner.command(
        &mut org,
        &Command::RetryOverdue,
        &user,
        t("2026-04-13T00:00:00Z"),
    );
    assert_eq!(retry, Ok(Step::Done), "the retry charges April again");
}

/// SPEC 5, "In production the outcome arrives later": an upgrade whose charge is pending
/// is made when its payment succeeds, and a declined one voids its invoice.
#[test]
fn a_pending_upgrade_is_made_when_its_payment_arrives_and_voided_when_declined() {
    let pending = || {
        let mut snapshot = snapshot();
        let key = "upgrade:25000:2026-05-20T15:45:30Z";
        snapshot.keys.insert(("acme".to_owned(), key.to_owned()));
        snapshot.invoices.insert(
            7,
            Invoice {
                issued_at: t("2026-05-20T15:45:30Z"),
                ..stored_invoice(
                    7,
                    key,
                    "2026-05",
                    InvoiceKind::Proration,
                    "20.13",
                    InvoiceStatus::Open,
                )
            },
        );
        snapshot
    };
    let mut org = billed_for_may();
    let plan = run(
        &rules(),
        pending(),
        &mut org,
        &[(
            Input::Payment {
                invoice: 7,
                succeeded: true,
            },
            "2026-05-20T16:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T16:00:00Z payment #7 succeeded",
            "2026-05-20T16:00:00Z plan upgrade: 25000 MAU [journeys]",
            "invoice #7 becomes paid at 2026-05-20T16:00:00Z",
        ]
    );
    assert_eq!(
        org,
        Org {
            tier: 25_000,
            ..billed_for_may()
        }
    );

    let mut org = billed_for_may();
    let plan = run(
        &rules(),
        pending(),
        &mut org,
        &[(
            Input::Payment {
                invoice: 7,
                succeeded: false,
            },
            "2026-05-20T16:00:00Z",
        )],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T16:00:00Z payment #7 failed",
            "2026-05-20T16:00:00Z plan upgrade_declined: 20000 MAU [journeys]",
            "invoice #7 becomes void at 2026-05-20T16:00:00Z",
        ]
    );
    assert_eq!(org, billed_for_may());
}

/// SPEC 1 and 4: an org's usage is the sum over its projects; each report replaces its
/// project's earlier one: `web` at 17,000 (replacing 12,000) is 85 %; with 8,000 on `app`
/// the org is at 25,000 (125 %).
#[test]
fn usage_is_the_sum_of_the_latest_totals_of_each_project() {
    let mut org = billed_for_may();
    let app = UsageReport {
        project: "app".to_owned(),
        ..report("2026-05", 8_000, 0)
    };
    let plan = run(
        &rules(),
        snapshot_with_usage("2026-05", 12_000, 0),
        &mut org,
        &[
            (
                Input::Usage(&report("2026-05", 17_000, 0)),
                "2026-05-10T00:00:00Z",
            ),
            (Input::Usage(&app), "2026-05-11T00:00:00Z"),
        ],
        &[],
    );
    assert_eq!(
        plan,
        [
            "2026-05-10T00:00:00Z alert 80 at 85.00 %",
            "2026-05-10T00:00:00Z email overage_alert to admin@acme.test",
            "2026-05-11T00:00:00Z alert 100 at 125.00 %",
            "2026-05-11T00:00:00Z alert 125 at 125.00 %",
            "2026-05-11T00:00:00Z email overage_alert to admin@acme.test",
            "totals acme 2026-05 app: 8000 MAU, 0 data points",
            "totals acme 2026-05 web: 17000 MAU, 0 data points",
        ]
    );
    assert_eq!(org.usage, Some((period("2026-05"), 25_000)));
}

/// SPEC 4: a report replaces its project's stored total within the org's stored total,
/// which the snapshot holds without the org's other projects: 19,000 MAU over the other
/// projects plus `web` going from 1,000 to 2,000 is 21,000 (105 %).
#[test]
fn a_report_replaces_its_project_within_the_stored_total_of_all_projects() {
    let mut org = billed_for_may();
    let mut snapshot = snapshot_with_usage("2026-05", 1_000, 0);
    snapshot.usage.insert(
        ("acme".to_owned(), period("2026-05")),
        Usage {
            mau: 20_000,
            data_points: 0,
        },
    );
    let rules = rules();
    let mut planner = Planner::new(&rules, snapshot, t("2026-05-10T00:00:00Z"));
    let mut orgs = BTreeMap::from([("acme".to_owned(), org.clone())]);
    let outcome = planner
        .usage(
            &mut orgs,
            &report("2026-05", 2_000, 0),
            &Actor::system(),
            t("2026-05-10T00:00:00Z"),
        )
        .unwrap();
    assert_eq!(outcome, Outcome::Accepted);
    let plan = planner.finish();
    assert_eq!(
        plan.usage.get(&("acme".to_owned(), period("2026-05"))),
        Some(&Usage {
            mau: 21_000,
            data_points: 0
        })
    );
    org = orgs.remove("acme").unwrap();
    assert_eq!(org.usage, Some((period("2026-05"), 21_000)));
    assert_eq!(
        plan.alerts.iter().map(|a| a.threshold).collect::<Vec<_>>(),
        [80, 100]
    );
}

/// SPEC 2 and 5: a free add-on (0 per 100 MAU) is included at once without a charge, and
/// has no line on the invoice nor any overage.
#[test]
fn a_free_addon_is_included_at_once_without_a_charge_or_invoice_line() {
    let mut settings = settings();
    settings.addons.insert(
        "segments".to_owned(),
        Addon {
            name: "Segments".to_owned(),
            price_per_100_mau: Decimal::ZERO,
        },
    );
    let rules = settings.rules();
    let mut org = billed_for_may();
    let plan = run(
        &rules,
        snapshot_with_usage("2026-05", 22_000, 0),
        &mut org,
        &[
            (
                plan_change(PlanChange::AddAddon {
                    addon: "segments".to_owned(),
                }),
                "2026-05-20T15:45:30Z",
            ),
            (Input::Advance, "2026-06-01T00:00:00Z"),
        ],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-05-20T15:45:30Z plan addon_added: 20000 MAU [journeys,segments]",
            "2026-05-20T15:45:30Z email addon_changed to admin@acme.test",
            "2026-06-01T00:00:00Z invoice #7 2026-06: base 200.00 + addon 20.00 + mau_overage 24.00 + addon_overage 2.40 = 246.40",
            "2026-06-01T00:00:00Z email invoice to billing@acme.test",
            "2026-06-01T00:00:00Z charge #7 246.40: Succeeded",
            "2026-06-01T00:00:00Z payment #7 succeeded",
            "invoice #7 is paid",
        ]
    );
    assert_eq!(org.addons, ["journeys", "segments"]);
}

/// SPEC 4, "The lock persists past the end of the period until lifted": the cycle of
/// 2026-06-01 bills the locked org, and June's low usage does not unlock it.
#[test]
fn the_overage_lock_persists_past_the_end_of_the_period() {
    let mut org = overage_locked(60_001, 60_001);
    let plan = run(
        &rules(),
        Snapshot {
            alerted: alerted_in_may_up_to(300),
            ..snapshot_with_usage("2026-05", 60_001, 0)
        },
        &mut org,
        &[
            (Input::Advance, "2026-06-01T00:00:00Z"),
            (
                Input::Usage(&report("2026-06", 1_000, 0)),
                "2026-06-02T00:00:00Z",
            ),
        ],
        &[Charge::Succeeded],
    );
    assert_eq!(
        plan,
        [
            "2026-06-01T00:00:00Z invoice #7 2026-06: base 200.00 + addon 20.00 + mau_overage 481.20 + addon_overage 48.12 = 749.32",
            "2026-06-01T00:00:00Z email invoice to billing@acme.test",
            "2026-06-01T00:00:00Z charge #7 749.32: Succeeded",
            "2026-06-01T00:00:00Z payment #7 succeeded",
            "invoice #7 is paid",
            "totals acme 2026-06 web: 1000 MAU, 0 data points",
        ]
    );
    assert_eq!(
        org,
        Org {
            lifecycle: Lifecycle {
                next_cycle_at: Some(t("2026-07-01T00:00:00Z")),
                ..overage_locked(60_001, 60_001).lifecycle
            },
            usage: Some((period("2026-06"), 1_000)),
            ..overage_locked(60_001, 60_001)
        }
    );
}

/// SPEC 5, "a paid one is charged a prorated amount at once": once. While the charge for
/// Journeys is pending (a production gateway answers later), a second request for it a
/// second later must not ask for a second charge of the same $7.32.
#[test]
fn a_second_request_for_an_addon_whose_charge_is_pending_charges_nothing_more() {
    let rules = rules();
    let mut org = Org {
        addons: Vec::new(),
        ..billed_for_may()
    };
    let user = Actor::new("ops@vendor.test", "asked by the customer");
    let add = Command::Plan(PlanChange::AddAddon {
        addon: "journeys".to_owned(),
    });
    let mut planner = Planner::new(&rules, snapshot(), t("2026-07-01T00:00:00Z"));
    let step = planner
        .command(&mut org, &add, &user, t("2026-05-20T15:45:30Z"))
        .unwrap();
    let Step::Charge(request) = step else {
        panic!("no charge: {step:?}")
    };
    assert_eq!(request.amount, dec("7.32"));
    assert_eq!(
        planner.charged(&mut org, request, Charge::Pending),
        Ok(Step::Done)
    );
    let second = planner.command(&mut org, &add, &user, t("2026-05-20T15:45:31Z"));
    assert!(
        !matches!(second, Ok(Step::Charge(_))),
        "Journeys is charged twice: {second:?}"
    );
    // Refused, naming the pending invoice; the first charge's invoice stays payable.
    let Err(Rejection::Invalid { field, message }) = second else {
        panic!("not refused: {second:?}")
    };
    assert_eq!(field, "addon");
    assert!(message.contains("pending (invoice #7)"), "{message}");
    assert!(planner.payable(7).is_ok());
}

/// SPEC 5, "Upgrade ... takes effect immediately and only if its prorated charge ... is
/// paid": an upgrade to 25,000 whose charge is pending, overtaken by a paid upgrade to
/// 30,000, must not stay payable: its later payment would charge $20.13 for an upgrade
/// that is never made.
#[test]
fn a_pending_upgrade_overtaken_by_a_paid_higher_one_is_not_charged_for_nothing() {
    let rules = rules();
    let mut org = billed_for_may();
    let user = Actor::new("ops@vendor.test", "asked by the customer");
    let upgrade = |tier| Command::Plan(PlanChange::Upgrade { tier });
    let mut planner = Planner::new(&rules, snapshot(), t("2026-07-01T00:00:00Z"));
    let step = planner
        .command(&mut org, &upgrade(25_000), &user, t("2026-05-20T15:45:30Z"))
        .unwrap();
    let Step::Charge(first) = step else {
        panic!("no charge: {step:?}")
    };
    assert_eq!((first.invoice, first.amount), (7, dec("20.13")));
    assert_eq!(
        planner.charged(&mut org, first, Charge::Pending),
        Ok(Step::Done)
    );
    // Refusing the second upgrade while the first is pending would do as well.
    if let Ok(Step::Charge(second)) =
        planner.command(&mut org, &upgrade(30_000), &user, t("2026-05-20T15:45:31Z"))
    {
        assert_eq!(
            planner.charged(&mut org, second, Charge::Succeeded),
            Ok(Step::Done)
        );
        assert_eq!(org.tier, 30_000);
        assert!(
            planner.payable(7).is_err(),
            "the overtaken upgrade's invoice #7 is still payable"
        );
    }
}

/// Issue 29 item 15: a lock, unlock and lock again in the same second are three
/// transitions, and each one's email has its own dedupe key.
#[test]
fn emails_of_transitions_in_one_second_have_their_own_keys() {
    let rules = rules();
    let mut org = billed_for_may();
    let mut planner = Planner::new(&rules, snapshot(), t("2026-05-10T12:00:00Z"));
    let at = t("2026-05-10T12:00:00Z");
    let ops = Actor::new("ops", "flapping");
    for command in [
        Command::Lock,
        Command::Unlock {
            reason: LockReason::Manual,
        },
        Command::Lock,
    ] {
        assert_eq!(
            planner.command(&mut org, &command, &ops, at),
            Ok(Step::Done)
        );
    }
    let plan = planner.finish();
    let keys: Vec<_> = plan.outbox.iter().map(|m| m.dedupe_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "acme:account_locked:admin_lock:2026-05-10T12:00:00Z:v3.1",
            "acme:account_unlocked:admin_unlock:2026-05-10T12:00:00Z:v3.2",
            "acme:account_locked:admin_lock:2026-05-10T12:00:00Z:v3.3",
        ]
    );
}

/// Issue 29 item 15, for webhooks: the `org.transition` events of a lock, an unlock and a
/// lock again in the same second have their own dedupe keys too.
#[test]
fn webhooks_of_transitions_in_one_second_have_their_own_keys() {
    let mut rules = rules();
    rules.webhooks = vec!["hook".to_owned()];
    let mut org = billed_for_may();
    let mut planner = Planner::new(&rules, snapshot(), t("2026-05-10T12:00:00Z"));
    let at = t("2026-05-10T12:00:00Z");
    let ops = Actor::new("ops", "flapping");
    for command in [
        Command::Lock,
        Command::Unlock {
            reason: LockReason::Manual,
        },
        Command::Lock,
    ] {
        assert_eq!(
            planner.command(&mut org, &command, &ops, at),
            Ok(Step::Done)
        );
    }
    let plan = planner.finish();
    let keys: Vec<_> = plan
        .outbox
        .iter()
        .filter(|m| m.channel == "webhook")
        .map(|m| m.dedupe_key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "webhook:hook:acme:transition:admin_lock:2026-05-10T12:00:00Z:locked:manual:v3.1",
            "webhook:hook:acme:transition:admin_unlock:2026-05-10T12:00:00Z:active::v3.2",
            "webhook:hook:acme:transition:admin_lock:2026-05-10T12:00:00Z:locked:manual:v3.3",
        ]
    );
}
