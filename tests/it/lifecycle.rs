//! The engine on a real database: deadlines at exact instants, recovery by payment, trial
//! end, catch-up after downtime, the monthly cycle's idempotence (SPEC sections 3, 5, 11).

use std::sync::Arc;

use acctd::domain::{LockReason, Status};
use acctd::engine::{Actor, Command, Error, ExternalGateway, ScriptedGateway};
use acctd::storage::billing::{self, InvoiceStatus};

use crate::helpers::{both, moves, mv, t, Backend, Harness};

/// SPEC 3: active --payment failed--> grace_period (+10 d) --> locked{payment_overdue}
/// (+14 d) --> canceled, each at its own instant.
async fn grace_lock_and_auto_cancel_happen_at_exact_instants(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.card.decline("acme");
    h.tick("2026-04-01T00:00:00Z").await;
    let org = h.org("acme").await;
    assert_eq!(org.lifecycle.status, Status::GracePeriod);
    assert_eq!(org.lifecycle.grace_ends_at, Some(t("2026-04-11T00:00:00Z")));
    h.tick("2026-04-10T23:59:59Z").await;
    assert_eq!(h.status("acme").await, Status::GracePeriod);
    h.tick("2026-04-11T00:00:00Z").await;
    let org = h.org("acme").await;
    assert_eq!(org.lifecycle.status, Status::Locked);
    assert_eq!(
        org.lifecycle.reasons.iter().collect::<Vec<_>>(),
        [LockReason::PaymentOverdue]
    );
    assert_eq!(org.lifecycle.cancel_at, Some(t("2026-04-25T00:00:00Z")));
    h.tick("2026-04-25T00:00:00Z").await;
    let org = h.org("acme").await;
    assert_eq!(org.lifecycle.status, Status::Canceled);
    assert_eq!(org.canceled_at, Some(t("2026-04-25T00:00:00Z")));
    assert_eq!(
        moves(&h.transitions("acme").await),
        [
            mv("2026-03-01T00:00:00Z", "-", "active", "signup"),
            mv(
                "2026-04-01T00:00:00Z",
                "active",
                "grace_period",
                "payment_failed"
            ),
            mv(
                "2026-04-11T00:00:00Z",
                "grace_period",
                "locked",
                "grace_expired"
            ),
            mv("2026-04-25T00:00:00Z", "locked", "canceled", "auto_cancel"),
        ]
    );
}
both!(grace_lock_and_auto_cancel_happen_at_exact_instants);

/// SPEC 3 and 5: in production the gateway reports outcomes later; a failure puts the org
/// in grace, a success in grace returns it to active with its deadlines cleared and every
/// overdue invoice settled.
async fn payment_in_grace_recovers_the_org(backend: Backend) {
    let card = Arc::new(ScriptedGateway::default());
    let Some(h) = Harness::with_gateway(
        backend,
        "2026-03-01T00:00:00Z",
        Arc::new(ExternalGateway),
        card,
    )
    .await
    else {
        return;
    };
    h.signup("acme", true, true).await;
    h.tick("2026-04-01T00:00:00Z").await;
    let invoices = billing::list(h.engine.db(), "acme").await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0].status, InvoiceStatus::Open);
    assert_eq!(h.status("acme").await, Status::Active);

    h.set("2026-04-02T09:00:00Z");
    h.engine
        .payment_outcome(invoices[0].id, false, &Actor::system())
        .await
        .unwrap();
    let org = h.org("acme").await;
    assert_eq!(org.lifecycle.status, Status::GracePeriod);
    assert_eq!(org.lifecycle.grace_ends_at, Some(t("2026-04-12T09:00:00Z")));

    h.set("2026-04-05T10:00:00Z");
    h.engine
        .payment_outcome(invoices[0].id, true, &Actor::system())
        .await
        .unwrap();
    let org = h.org("acme").await;
    assert_eq!(org.lifecycle.status, Status::Active);
    assert_eq!(org.lifecycle.grace_ends_at, None);
    assert_eq!(
        billing::list(h.engine.db(), "acme").await.unwrap()[0].status,
        InvoiceStatus::Paid
    );

    // A second report for a paid invoice is refused and changes nothing.
    let again = h
        .engine
        .payment_outcome(invoices[0].id, true, &Actor::system())
        .await;
    assert!(matches!(again, Err(Error::Settled(_))), "{again:?}");
    assert!(matches!(
        h.engine
            .payment_outcome(9_999, true, &Actor::system())
            .await,
        Err(Error::UnknownInvoice(9_999))
    ));
}
both!(payment_in_grace_recovers_the_org);

/// SPEC 3: locked{payment_overdue} + payment succeeded drops the reason, settles the
/// invoice and clears the auto-cancel.
async fn payment_in_lock_lifts_payment_overdue(backend: Backend) {
    let card = Arc::new(ScriptedGateway::default());
    let Some(h) = Harness::with_gateway(
        backend,
        "2026-03-01T00:00:00Z",
        Arc::new(ExternalGateway),
        card,
    )
    .await
    else {
        return;
    };
    h.signup("acme", true, true).await;
    h.tick("2026-04-01T00:00:00Z").await;
    let invoice = billing::list(h.engine.db(), "acme").await.unwrap()[0].id;
    h.engine
        .payment_outcome(invoice, false, &Actor::system())
        .await
        .unwrap();
    h.tick("2026-04-12T00:00:00Z").await;
    let org = h.org("acme").await;
    assert_eq!(org.lifecycle.status, Status::Locked);
    assert_eq!(org.lifecycle.cancel_at, Some(t("2026-04-25T00:00:00Z")));

    h.set("2026-04-20T00:00:00Z");
    h.engine
        .payment_outcome(invoice, true, &Actor::system())
        .await
        .unwrap();
    let org = h.org("acme").await;
    assert_eq!(org.lifecycle.status, Status::Active);
    assert!(org.lifecycle.reasons.is_empty());
    assert_eq!(org.lifecycle.cancel_at, None);
    h.tick("2026-04-30T00:00:00Z").await;
    assert_eq!(
        h.status("acme").await,
        Status::Active,
        "the auto-cancel was called off"
    );
}
both!(payment_in_lock_lifts_payment_overdue);

/// SPEC 3: trial end with a card converts (rest of the month invoiced and paid, a
/// subscriber billed from the next 1st); without a card it locks for trial_expired and
/// auto-cancels 14 days later.
async fn trial_end_with_and_without_a_card(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-10T00:00:00Z").await else {
        return;
    };
    h.signup("card", true, false).await;
    h.signup("nocard", false, false).await;
    h.tick("2026-04-08T23:59:59Z").await;
    assert_eq!(h.status("card").await, Status::Trial);
    assert_eq!(h.status("nocard").await, Status::Trial);

    h.tick("2026-04-09T00:00:00Z").await;
    let card = h.org("card").await;
    assert_eq!(card.lifecycle.status, Status::Active);
    assert!(card.lifecycle.subscriber);
    assert_eq!(card.lifecycle.trial_ends_at, None);
    assert_eq!(
        card.lifecycle.next_cycle_at,
        Some(t("2026-05-01T00:00:00Z"))
    );
    let invoices = billing::list(h.engine.db(), "card").await.unwrap();
    assert_eq!(invoices.len(), 1);
    // 22 of April's 30 days at $200 a month.
    assert_eq!(invoices[0].total.to_string(), "146.67");
    assert_eq!(invoices[0].status, InvoiceStatus::Paid);

    let nocard = h.org("nocard").await;
    assert_eq!(nocard.lifecycle.status, Status::Locked);
    assert_eq!(
        nocard.lifecycle.reasons.iter().collect::<Vec<_>>(),
        [LockReason::TrialExpired]
    );
    assert_eq!(nocard.lifecycle.cancel_at, Some(t("2026-04-23T00:00:00Z")));
    assert!(!nocard.lifecycle.subscriber);
    assert!(billing::list(h.engine.db(), "nocard")
        .await
        .unwrap()
        .is_empty());

    h.tick("2026-04-23T00:00:00Z").await;
    assert_eq!(h.status("nocard").await, Status::Canceled);
    h.tick("2026-05-01T00:00:00Z").await;
    assert_eq!(billing::list(h.engine.db(), "card").await.unwrap().len(), 2);
    assert!(billing::list(h.engine.db(), "nocard")
        .await
        .unwrap()
        .is_empty());
}
both!(trial_end_with_and_without_a_card);

/// SPEC 11: after downtime the engine replays due deadlines in time order with their own
/// instants, chaining from them; each missed monthly cycle runs once, in order.
async fn catch_up_after_downtime_records_each_transition_once_at_its_instant(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    for i in 0..20 {
        h.signup(&format!("org{i:02}"), true, true).await;
    }
    h.card.decline("org00");
    h.tick("2026-04-01T00:00:00Z").await;
    assert_eq!(h.status("org00").await, Status::GracePeriod);

    // Sixty days of downtime, then one tick.
    h.tick("2026-05-31T12:00:00Z").await;
    assert_eq!(
        moves(&h.transitions("org00").await),
        [
            mv("2026-03-01T00:00:00Z", "-", "active", "signup"),
            mv(
                "2026-04-01T00:00:00Z",
                "active",
                "grace_period",
                "payment_failed"
            ),
            mv(
                "2026-04-11T00:00:00Z",
                "grace_period",
                "locked",
                "grace_expired"
            ),
            mv("2026-04-25T00:00:00Z", "locked", "canceled", "auto_cancel"),
        ]
    );
    // The other nineteen were billed for April and May exactly once each.
    for i in 1..20 {
        let invoices = billing::list(h.engine.db(), &format!("org{i:02}"))
            .await
            .unwrap();
        let periods: Vec<_> = invoices.iter().map(|i| i.period.as_str()).collect();
        assert_eq!(periods, ["2026-04", "2026-05"]);
    }
    // A canceled org is not billed after its cancellation.
    assert_eq!(
        billing::list(h.engine.db(), "org00").await.unwrap().len(),
        1
    );
    // Ticking again finds nothing more to do.
    assert!(h
        .engine
        .tick(t("2026-05-31T12:00:00Z"))
        .await
        .unwrap()
        .facts
        .is_empty());
}
both!(catch_up_after_downtime_records_each_transition_once_at_its_instant);

/// SPEC 5: running the cycle twice for one period bills nobody twice.
async fn monthly_cycle_is_idempotent_per_org_and_period(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    let first = h.tick("2026-04-01T00:00:00Z").await;
    assert_eq!(
        first
            .facts
            .iter()
            .filter(|f| matches!(f, acctd::engine::Fact::Invoice { .. }))
            .count(),
        1
    );
    // Replay the same instant, and rewind the org's cycle deadline as a crash might leave
    // it: the period's invoice key is unique, so nothing is issued again.
    let second = h.engine.tick(t("2026-04-01T00:00:00Z")).await.unwrap();
    assert!(second.facts.is_empty());
    let db = h.engine.db();
    let mut org = h.org("acme").await;
    org.lifecycle.next_cycle_at = Some(t("2026-04-01T00:00:00Z"));
    acctd::storage::org::update(db, &mut org, t("2026-04-01T00:00:00Z"))
        .await
        .unwrap();
    let third = h.engine.tick(t("2026-04-01T00:00:00Z")).await.unwrap();
    assert!(third.facts.is_empty(), "{third:?}");
    assert_eq!(billing::list(db, "acme").await.unwrap().len(), 1);
    assert_eq!(
        h.org("acme").await.lifecycle.next_cycle_at,
        Some(t("2026-05-01T00:00:00Z"))
    );
}
both!(monthly_cycle_is_idempotent_per_org_and_period);

/// SPEC 3 and 10: refused commands name the state and legal moves and change nothing;
/// manual operations are audited with actor and reason.
async fn refused_commands_change_nothing_and_manual_ones_are_audited(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", false, true).await;
    let before = h.org("acme").await;
    let err = h
        .engine
        .command(
            "acme",
            &Command::ExtendTrial { days: 3 },
            &Actor::new("ops", "try"),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("org is active"), "{msg}");
    assert!(
        msg.contains("legal moves: add_payment_method, upgrade, lock, cancel"),
        "{msg}"
    );
    assert_eq!(h.org("acme").await, before);

    let err = h
        .engine
        .command(
            "acme",
            &Command::Cancel {
                confirm: "yes".into(),
            },
            &Actor::new("ops", "try"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DELETE"), "{err}");
    assert!(matches!(
        h.engine
            .command("nope", &Command::Lock, &Actor::system())
            .await,
        Err(Error::UnknownOrg(_))
    ));

    h.engine
        .command(
            "acme",
            &Command::Lock,
            &Actor::new("alice@ops.test", "chargeback"),
        )
        .await
        .unwrap();
    h.engine
        .command(
            "acme",
            &Command::Transition { to: Status::Active },
            &Actor::new("bob@ops.test", "resolved"),
        )
        .await
        .unwrap();
    let rows = h.transitions("acme").await;
    let manual: Vec<_> = rows
        .iter()
        .skip(1)
        .map(|r| (r.cause.as_str(), r.actor.as_str(), r.reason.as_deref()))
        .collect();
    assert_eq!(
        manual,
        [
            ("admin_lock", "alice@ops.test", Some("chargeback")),
            ("admin_unlock", "bob@ops.test", Some("resolved")),
        ]
    );
    assert_eq!(h.status("acme").await, Status::Active);
}
both!(refused_commands_change_nothing_and_manual_ones_are_audited);

/// `signup_many`: all or none. A bad signup, an id given twice or an id that exists
/// already is refused with its index and stores nothing; a good batch stores every org
/// with its audit row.
async fn signups_in_bulk_are_all_or_none(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("old", true, false).await;
    let signup = |id: &str| acctd::engine::Signup {
        id: id.to_owned(),
        plan: "basic".to_owned(),
        tier: 20_000,
        admins: vec![format!("admin@{id}.test")],
        billing_email: None,
        payment_method: true,
        addons: Vec::new(),
        active: false,
    };
    let mut bad_tier = signup("b");
    bad_tier.tier = 12_345;
    for (batch, index) in [
        (vec![signup("a"), bad_tier, signup("c")], 1),
        (vec![signup("a"), signup("b"), signup("a")], 2),
        (vec![signup("a"), signup("old")], 1),
    ] {
        let (i, e) = h
            .engine
            .signup_many(batch, &Actor::system())
            .await
            .unwrap_err();
        assert_eq!(i, index, "{e}");
        assert!(
            h.engine.org("a").await.unwrap().is_none(),
            "nothing stored: {e}"
        );
    }
    let report = h
        .engine
        .signup_many(vec![signup("a"), signup("b")], &Actor::system())
        .await
        .unwrap();
    assert_eq!(report.transitions(), 2);
    for id in ["a", "b"] {
        assert_eq!(h.status(id).await, Status::Trial);
        assert_eq!(moves(&h.transitions(id).await).len(), 1);
    }
}
both!(signups_in_bulk_are_all_or_none);

/// Sweep batches grow while they are fast (`daemon.batch_target_ms`), from `batch_size`
/// to `max_batch_size`, and every due org is still caught up exactly once.
async fn growing_sweep_batches_catch_each_due_org_up_once(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    for i in 0..150 {
        h.signup(&format!("org{i:03}"), true, true).await;
    }
    let engine = sweeping_engine(&h, 2, 64);
    h.set("2026-04-01T00:00:00Z");
    let mut report = acctd::engine::Report::default();
    let mut limits = Vec::new();
    engine
        .sweep(t("2026-04-01T00:00:00Z"), |swept, batch| {
            limits.push(swept.claimed);
            report.facts.extend(batch.facts);
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
    // 2 + 4 + 8 + 16 + 32 + 64 = 126, then the last 24.
    assert_eq!(limits, [2, 4, 8, 16, 32, 64, 24]);
    let invoiced: std::collections::BTreeSet<&str> = report
        .facts
        .iter()
        .filter(|f| matches!(f, acctd::engine::Fact::Invoice { .. }))
        .map(acctd::engine::Fact::org)
        .collect();
    assert_eq!(invoiced.len(), 150);
    assert_eq!(
        report
            .facts
            .iter()
            .filter(|f| matches!(f, acctd::engine::Fact::Invoice { .. }))
            .count(),
        150
    );
    assert_nothing_due(&engine, "2026-04-01T00:00:00Z").await;
}
both!(growing_sweep_batches_catch_each_due_org_up_once);

/// A backlog swept in batches catches each due org up exactly once and leaves the orgs
/// between them untouched, with nothing left for the next tick.
async fn a_backlog_sweep_catches_each_due_org_up_once(backend: Backend) {
    backlog_swept(backend, false).await;
}
both!(a_backlog_sweep_catches_each_due_org_up_once);

/// `acctd tick --catch-up` (`Engine::catch_up`): the same backlog swept in table order (on
/// SQLite in rowid ranges with the due index dropped for the pass) catches each due org up
/// exactly once, leaves the others untouched, and ends with the due index built again.
async fn a_catch_up_pass_catches_each_due_org_up_once_and_restores_the_due_index(backend: Backend) {
    backlog_swept(backend, true).await;
}
both!(a_catch_up_pass_catches_each_due_org_up_once_and_restores_the_due_index);

/// 400 orgs, a fifth of the first half and a fiftieth of the second due, swept in batches
/// of 4 to 8 by a sweep or by a catch-up pass.
async fn backlog_swept(backend: Backend, catch_up: bool) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    // Trials that end on 03-31 (due) between subscribers billed on 04-01 (not due): one
    // in 5 orgs due in the first half of the table, one in 50 in the second.
    let n: usize = 400;
    let is_due = |i: usize| {
        if i < n / 2 {
            i.is_multiple_of(5)
        } else {
            i.is_multiple_of(50)
        }
    };
    for i in 0..n {
        h.signup(&format!("org{i:03}"), true, !is_due(i)).await;
    }
    let before: Vec<i64> = stored_versions(&h, n).await;
    let engine = sweeping_engine(&h, 4, 8);
    h.set("2026-03-31T00:00:00Z");
    let report = if catch_up {
        let mut report = acctd::engine::Report::default();
        let mut batches = 0;
        engine
            .catch_up(t("2026-03-31T00:00:00Z"), |swept, batch| {
                batches += 1;
                if backend == Backend::Sqlite && swept.more {
                    assert!(
                        swept.last_rowid.is_some(),
                        "a pass batch names its last rowid"
                    );
                }
                report.extend(batch);
                std::ops::ControlFlow::Continue(())
            })
            .await
            .unwrap();
        assert!(batches > 5, "{batches} batches");
        report
    } else {
        engine.tick(t("2026-03-31T00:00:00Z")).await.unwrap()
    };
    if backend == Backend::Sqlite {
        assert!(due_index_exists(&h).await, "idx_orgs_due is built again");
    }
    let mut moved = std::collections::BTreeMap::new();
    for fact in &report.facts {
        if let acctd::engine::Fact::Transition { org, from, to, .. } = fact {
            assert_eq!((*from, *to), (Some(Status::Trial), Status::Active), "{org}");
            *moved.entry(org.clone()).or_insert(0) += 1;
        }
    }
    let due: Vec<String> = (0..n)
        .filter(|&i| is_due(i))
        .map(|i| format!("org{i:03}"))
        .collect();
    assert_eq!(moved.keys().cloned().collect::<Vec<_>>(), due);
    assert!(moved.values().all(|n| *n == 1), "{moved:?}");
    let after = stored_versions(&h, n).await;
    for i in (0..n).filter(|&i| !is_due(i)) {
        assert_eq!(
            after[i], before[i],
            "org{i:03} was not due and must be untouched"
        );
    }
    assert_nothing_due(&engine, "2026-03-31T00:00:00Z").await;
}

/// Whether SQLite's `idx_orgs_due` exists.
async fn due_index_exists(h: &Harness) -> bool {
    use sea_orm::ConnectionTrait;
    h.engine
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'idx_orgs_due'",
        ))
        .await
        .unwrap()
        .is_some()
}

/// A tick at `at` finds nothing left to do.
async fn assert_nothing_due(engine: &acctd::engine::Engine, at: &str) {
    assert!(engine.tick(t(at)).await.unwrap().facts.is_empty());
}

/// An engine on `h`'s database and clock whose sweep batches grow from `first` to `max`
/// orgs (a time budget no batch reaches).
fn sweeping_engine(h: &Harness, first: u32, max: u32) -> acctd::engine::Engine {
    let mut settings = acctd::config::Settings::default();
    settings.daemon.batch_size = first;
    settings.daemon.max_batch_size = max;
    settings.daemon.batch_target_ms = 60_000;
    acctd::engine::Engine::new(
        h.engine.db().clone(),
        settings.rules(),
        h.card.clone(),
        h.clock.clone(),
    )
}

/// The stored versions of org000..org{n-1}.
async fn stored_versions(h: &Harness, n: usize) -> Vec<i64> {
    let mut versions = Vec::with_capacity(n);
    for i in 0..n {
        versions.push(h.org(&format!("org{i:03}")).await.version);
    }
    versions
}

/// Issue 29 (3): signups of one id racing each other: exactly one wins and every other
/// is told the org exists (`Error::Exists`, 409 over HTTP), never a storage error. On
/// PostgreSQL the losers' check runs before the winner commits, so the unique index
/// decides.
async fn racing_signups_of_one_id_leave_one_winner_and_refuse_the_rest(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let engine = h.engine.clone();
            tokio::spawn(async move {
                let signup = acctd::engine::Signup {
                    id: "race".to_owned(),
                    plan: "basic".to_owned(),
                    tier: 20_000,
                    admins: vec!["admin@race.test".to_owned()],
                    billing_email: None,
                    payment_method: true,
                    addons: Vec::new(),
                    active: false,
                };
                engine.signup(signup, &acctd::engine::Actor::system()).await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(acctd::engine::Error::Exists(id)) => assert_eq!(id, "race"),
            Err(other) => panic!("a losing signup must be refused as existing, got {other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(moves(&h.transitions("race").await).len(), 1);
}
both!(racing_signups_of_one_id_leave_one_winner_and_refuse_the_rest);

/// Issue 29 item 1 (SPEC 5 and 11): outcomes for one invoice posted concurrently are
/// applied one at a time, each checked against the invoice as the previous one left it:
/// `failed` outcomes before the first `succeeded` are applied (a success after a failure
/// is a valid retry), the `succeeded` settles the invoice, and every outcome after that is
/// refused as settled. One success is recorded, and the org ends active.
async fn concurrent_payment_outcomes_for_one_invoice_settle_it_once(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let card = Arc::new(ScriptedGateway::default());
    let Some(h) = Harness::with_gateway(
        backend,
        "2026-03-01T00:00:00Z",
        Arc::new(ExternalGateway),
        card,
    )
    .await
    else {
        return;
    };
    h.signup("acme", true, true).await;
    h.tick("2026-04-01T00:00:00Z").await;
    let invoice = billing::list(h.engine.db(), "acme").await.unwrap()[0].id;
    h.set("2026-04-02T09:00:00Z");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let engine = h.engine.clone();
        tasks.push(tokio::spawn(async move {
            let succeeded = i % 2 == 0;
            let result = engine
                .payment_outcome(invoice, succeeded, &Actor::new("gateway", "webhook"))
                .await;
            (succeeded, result)
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        let (succeeded, result) = task.await.unwrap();
        match result {
            Ok(_) => applied.push(succeeded),
            Err(e) => assert!(
                matches!(&e, Error::Settled(why) if why.contains(&format!("invoice {invoice} is paid already"))),
                "{e}"
            ),
        }
    }
    assert_eq!(applied.iter().filter(|s| **s).count(), 1, "{applied:?}");
    let db = h.engine.db();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT COUNT(*) FROM payments WHERE invoice_id = {invoice} AND outcome = 'succeeded'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 1);
    let invoices = billing::list(db, "acme").await.unwrap();
    assert_eq!(invoices[0].status, InvoiceStatus::Paid);
    assert_eq!(h.status("acme").await, Status::Active);
}
both!(concurrent_payment_outcomes_for_one_invoice_settle_it_once);
