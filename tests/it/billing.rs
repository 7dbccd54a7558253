//! Billing on both backends (SPEC section 5): plan changes paid before they take effect,
//! with outcomes that arrive later in production.

use std::sync::Arc;

use acctd::engine::PlanChange;
use acctd::engine::{Actor, Command, Error, ExternalGateway, ScriptedGateway};
use acctd::storage::billing::{self, InvoiceKind, InvoiceStatus};

use crate::helpers::{both, Backend, Harness};

fn ops() -> Actor {
    Actor::new("ops@vendor.test", "customer request")
}

/// An upgrade waits for its prorated charge: a failure voids the invoice and changes
/// nothing; a success applies the tier and cancels a scheduled downgrade.
async fn an_upgrade_takes_effect_only_when_its_charge_is_paid(backend: Backend) {
    let card = Arc::new(ScriptedGateway::default());
    let Some(h) = Harness::with_gateway(
        backend,
        "2026-04-01T00:00:00Z",
        Arc::new(ExternalGateway),
        card,
    )
    .await
    else {
        return;
    };
    h.signup("acme", true, true).await; // tier 20,000
    h.set("2026-04-05T00:00:00Z");
    h.engine
        .command(
            "acme",
            &Command::Plan(PlanChange::Downgrade { tier: 10_000 }),
            &ops(),
        )
        .await
        .unwrap();
    assert_eq!(h.org("acme").await.scheduled_tier, Some(10_000));

    h.set("2026-04-16T00:00:00Z");
    h.engine
        .command(
            "acme",
            &Command::Plan(PlanChange::Upgrade { tier: 25_000 }),
            &ops(),
        )
        .await
        .unwrap();
    let org = h.org("acme").await;
    assert_eq!(org.tier, 20_000, "not before it is paid");
    let invoices = billing::list(h.engine.db(), "acme").await.unwrap();
    let upgrade = invoices.last().unwrap();
    assert_eq!(upgrade.kind, InvoiceKind::Proration);
    assert_eq!(
        upgrade.total.to_string(),
        "25.00",
        "half of April at $50 a month more"
    );

    h.engine
        .payment_outcome(upgrade.id, false, &Actor::system())
        .await
        .unwrap();
    let org = h.org("acme").await;
    assert_eq!((org.tier, org.scheduled_tier), (20_000, Some(10_000)));
    assert_eq!(
        org.lifecycle.status,
        acctd::domain::Status::Active,
        "a failed change charge changes no state"
    );
    let voided = billing::find(h.engine.db(), upgrade.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(voided.status, InvoiceStatus::Void);

    h.set("2026-04-16T01:00:00Z");
    h.engine
        .command(
            "acme",
            &Command::Plan(PlanChange::Upgrade { tier: 25_000 }),
            &ops(),
        )
        .await
        .unwrap();
    let second = billing::list(h.engine.db(), "acme")
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    h.engine
        .payment_outcome(second, true, &Actor::system())
        .await
        .unwrap();
    let org = h.org("acme").await;
    assert_eq!((org.tier, org.scheduled_tier), (25_000, None));

    h.tick("2026-05-01T00:00:00Z").await;
    let may = billing::list(h.engine.db(), "acme")
        .await
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (may.period.as_str(), may.total.to_string().as_str()),
        ("2026-05", "250.00")
    );
}
both!(an_upgrade_takes_effect_only_when_its_charge_is_paid);

/// Plan changes name what is wrong: the same tier, a tier off the list, above the
/// self-serve maximum, an unknown add-on.
async fn invalid_plan_changes_are_refused_with_the_reason(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    let refuse = async |change: PlanChange| {
        h.engine
            .command("acme", &Command::Plan(change), &ops())
            .await
            .unwrap_err()
            .to_string()
    };
    assert!(refuse(PlanChange::Upgrade { tier: 20_000 })
        .await
        .contains("not above the current tier"));
    assert!(refuse(PlanChange::Upgrade { tier: 150_000 })
        .await
        .contains("Enterprise"));
    assert!(refuse(PlanChange::Downgrade { tier: 7_000 })
        .await
        .contains("not offered"));
    assert!(refuse(PlanChange::AddAddon {
        addon: "warp".into()
    })
    .await
    .contains("unknown add-on `warp`"));
    assert!(refuse(PlanChange::CancelDowngrade)
        .await
        .contains("no downgrade is scheduled"));
    assert!(matches!(
        h.engine
            .command(
                "acme",
                &Command::Plan(PlanChange::Upgrade { tier: 20_000 }),
                &ops()
            )
            .await,
        Err(Error::Invalid { field: "tier", .. })
    ));
    assert!(billing::list(h.engine.db(), "acme")
        .await
        .unwrap()
        .is_empty());
}
both!(invalid_plan_changes_are_refused_with_the_reason);

/// Invoices issued while a command catches an org up are written with the transaction's
/// other rows, and what reads invoices later in that same transaction sees them: here
/// `mark_paid` settles the cycle invoice whose charge failed a moment before, in the
/// catch-up of the same command.
async fn a_command_sees_the_invoices_its_catch_up_issued(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await; // first cycle on 2026-05-01
    h.card.decline("acme");
    // No sweep ran on the 1st: the command itself catches the org up first.
    h.set("2026-05-03T00:00:00Z");
    let report = h
        .engine
        .command("acme", &Command::MarkPaid, &ops())
        .await
        .unwrap();
    let invoices = billing::list(h.engine.db(), "acme").await.unwrap();
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    let may = &invoices[0];
    assert_eq!(
        (may.kind, may.key.as_str()),
        (InvoiceKind::Cycle, "cycle:2026-05")
    );
    assert_eq!(may.status, InvoiceStatus::Paid, "settled by mark_paid");
    assert_eq!(
        may.lines
            .iter()
            .map(|l| l.amount.to_string())
            .collect::<Vec<_>>(),
        ["200.00"],
        "its lines were stored with it"
    );
    assert_eq!(h.status("acme").await, acctd::domain::Status::Active);
    let payments: Vec<(i64, bool)> = report
        .facts
        .iter()
        .filter_map(|f| match f {
            acctd::engine::Fact::Payment {
                invoice, succeeded, ..
            } => Some((*invoice, *succeeded)),
            _ => None,
        })
        .collect();
    assert_eq!(payments, [(may.id, false), (may.id, true)]);
}
both!(a_command_sees_the_invoices_its_catch_up_issued);

/// A usage report for a period that the report's own catch-up closes (the 1st's cycle had
/// not run yet) is refused: the closing invoice is visible to the rest of the batch.
async fn a_period_closed_by_the_same_batch_refuses_its_usage(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.set("2026-05-01T06:00:00Z");
    let out = h
        .engine
        .report_usage(
            &[acctd::engine::usage::UsageReport {
                org: "acme".into(),
                project: "web".into(),
                period: "2026-04".into(),
                mau: 1_000,
                data_points: 0,
                correction: false,
            }],
            &Actor::system(),
        )
        .await
        .unwrap();
    assert_eq!(
        out.outcomes,
        [acctd::engine::usage::Outcome::Refused(
            "period 2026-04 is already invoiced".into()
        )]
    );
    let invoices = billing::list(h.engine.db(), "acme").await.unwrap();
    assert_eq!(
        invoices.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        ["cycle:2026-05"]
    );
}
both!(a_period_closed_by_the_same_batch_refuses_its_usage);

/// Issue 29 item 5 (SPEC 5: an upgrade takes effect only if its charge is paid): a newer
/// tier change voids an upgrade still waiting for its payment, and a payment reported
/// for the void invoice later is refused and changes nothing.
async fn a_newer_plan_change_voids_a_pending_upgrade(backend: Backend) {
    let card = Arc::new(ScriptedGateway::default());
    let Some(h) = Harness::with_gateway(
        backend,
        "2026-04-01T00:00:00Z",
        Arc::new(ExternalGateway),
        card,
    )
    .await
    else {
        return;
    };
    h.signup("acme", true, true).await; // tier 20,000
    let upgrade = |tier| Command::Plan(PlanChange::Upgrade { tier });
    h.set("2026-04-10T00:00:00Z");
    h.engine
        .command("acme", &upgrade(30_000), &ops())
        .await
        .unwrap();
    let a = billing::list(h.engine.db(), "acme").await.unwrap()[0].id;
    // Days later: the first upgrade's invoice is older than anything this command reads
    // by instant.
    h.set("2026-04-12T00:00:00Z");
    h.engine
        .command("acme", &upgrade(50_000), &ops())
        .await
        .unwrap();
    let invoices = billing::list(h.engine.db(), "acme").await.unwrap();
    assert_eq!(invoices.len(), 2);
    assert_eq!(invoices[0].status, InvoiceStatus::Void, "superseded");
    let b = invoices[1].id;
    h.engine
        .payment_outcome(b, true, &Actor::system())
        .await
        .unwrap();
    assert_eq!(h.org("acme").await.tier, 50_000);
    let paid_late = h.engine.payment_outcome(a, true, &Actor::system()).await;
    let Err(e) = paid_late else {
        panic!("a payment for the void invoice {a} was taken")
    };
    assert!(e.to_string().contains("void"), "{e}");
    assert_eq!(h.org("acme").await.tier, 50_000);
    let a_now = billing::find(h.engine.db(), a).await.unwrap().unwrap();
    assert_eq!(a_now.status, InvoiceStatus::Void);

    // A downgrade request supersedes a pending upgrade too.
    h.set("2026-04-14T00:00:00Z");
    h.engine
        .command("acme", &upgrade(75_000), &ops())
        .await
        .unwrap();
    h.engine
        .command(
            "acme",
            &Command::Plan(PlanChange::Downgrade { tier: 40_000 }),
            &ops(),
        )
        .await
        .unwrap();
    let invoices = billing::list(h.engine.db(), "acme").await.unwrap();
    assert_eq!(invoices[2].status, InvoiceStatus::Void);
}
both!(a_newer_plan_change_voids_a_pending_upgrade);
