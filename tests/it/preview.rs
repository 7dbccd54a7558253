//! Previews (`Engine::preview`, `--dry-run`, `?dry_run=true`): for each call that changes
//! an org, the preview reports exactly the facts (or the refusal) of the call that follows
//! it, and leaves every row of every table, and PostgreSQL's invoice id sequence, as they
//! were.

use std::future::Future;
use std::sync::Arc;

use acctd::domain::{LockReason, Status};
use acctd::engine::usage::UsageReport;
use acctd::engine::{
    Actor, Command, Engine, ExternalGateway, PlanChange, Report, ScriptedGateway, Signup,
};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::helpers::{both, Backend, Harness};

fn ops() -> Actor {
    Actor::new("ops@example.test", "support ticket")
}

/// Every row of every table (and PostgreSQL's sequences), as text, in a stable order.
async fn dump(engine: &Engine) -> Vec<String> {
    let db = engine.db();
    let backend = db.get_database_backend();
    let list = match backend {
        DbBackend::Sqlite => "SELECT name AS t FROM sqlite_master WHERE type = 'table' ORDER BY 1",
        _ => "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    };
    let tables: Vec<String> = db
        .query_all_raw(Statement::from_string(backend, list))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "t").unwrap())
        .collect();
    assert!(tables.iter().any(|t| t == "orgs"), "tables: {tables:?}");
    let mut rows = Vec::new();
    for table in tables {
        let sql = match backend {
            DbBackend::Sqlite => {
                let columns: Vec<String> = db
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("SELECT name FROM pragma_table_info('{table}')"),
                    ))
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| format!("\"{}\"", r.try_get::<String>("", "name").unwrap()))
                    .collect();
                format!(
                    "SELECT json_array({}) AS r FROM \"{table}\" ORDER BY 1",
                    columns.join(", ")
                )
            }
            _ => format!("SELECT row_to_json(x)::text AS r FROM \"{table}\" x ORDER BY 1"),
        };
        for row in db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
        {
            rows.push(format!(
                "{table}: {}",
                row.try_get::<String>("", "r").unwrap()
            ));
        }
    }
    if backend == DbBackend::Postgres {
        for row in db
            .query_all_raw(Statement::from_string(
                backend,
                // The invoice ids are facts; other sequences skip values after any
                // rolled-back transaction, as PostgreSQL's sequences do.
                "SELECT sequencename || ' ' || COALESCE(last_value, 0) AS r \
                 FROM pg_sequences WHERE sequencename = 'invoices_id_seq'",
            ))
            .await
            .unwrap()
        {
            rows.push(row.try_get::<String>("", "r").unwrap());
        }
    }
    rows
}

/// Previews `call`, checks that nothing was written, then makes the call and checks that
/// it reported what the preview did. Returns the call's report.
async fn preview_then_call<F, Fut>(h: &Harness, what: &str, call: F) -> Option<Report>
where
    F: Fn(Engine) -> Fut,
    Fut: Future<Output = acctd::engine::Result<Report>>,
{
    let before = dump(&h.engine).await;
    let preview = call(h.engine.preview()).await;
    let after = dump(&h.engine).await;
    assert_eq!(after, before, "{what}: the preview wrote");
    let real = call(h.engine.clone()).await;
    match (preview, real) {
        (Ok(preview), Ok(real)) => {
            assert_eq!(preview.facts, real.facts, "{what}: facts differ");
            assert_eq!(preview.org, real.org, "{what}: the org afterwards differs");
            assert_ne!(
                dump(&h.engine).await,
                before,
                "{what}: the call wrote nothing"
            );
            Some(real)
        }
        (Err(preview), Err(real)) => {
            assert_eq!(preview.to_string(), real.to_string(), "{what}");
            let after = dump(&h.engine).await;
            // A refused call may have reserved an invoice id (PostgreSQL's `nextval`);
            // it writes no row.
            let changed: Vec<_> = after
                .iter()
                .filter(|r| !before.contains(r) && !r.starts_with("invoices_id_seq"))
                .collect();
            assert!(changed.is_empty(), "{what}: a refusal wrote {changed:#?}");
            None
        }
        (preview, real) => panic!("{what}: preview {preview:?}, call {real:?}"),
    }
}

fn signup(id: &str, payment_method: bool, active: bool) -> Signup {
    Signup {
        id: id.to_owned(),
        plan: "basic".to_owned(),
        tier: 20_000,
        admins: vec![format!("admin@{id}.test")],
        billing_email: None,
        payment_method,
        addons: Vec::new(),
        active,
    }
}

async fn command(h: &Harness, org: &str, what: &str, command: Command) -> Option<Report> {
    preview_then_call(h, what, |engine| {
        let command = command.clone();
        async move { engine.command(org, &command, &ops()).await }
    })
    .await
}

async fn every_manual_operation_and_plan_change_previews_exactly(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-01T00:00:00Z").await else {
        return;
    };
    // Signups: a trial and an imported subscriber.
    let trial = preview_then_call(&h, "signup", |e| async move {
        e.signup(signup("trial", true, false), &ops()).await
    })
    .await
    .unwrap();
    assert!(trial.transitions() > 0);
    preview_then_call(&h, "signup --active", |e| async move {
        e.signup(signup("sub", true, true), &ops()).await
    })
    .await
    .unwrap();
    preview_then_call(&h, "signup of a taken id", |e| async move {
        e.signup(signup("sub", true, true), &ops()).await
    })
    .await;

    h.set("2026-04-05T00:00:00Z");
    command(&h, "trial", "lock", Command::Lock).await.unwrap();
    command(
        &h,
        "trial",
        "illegal transition",
        Command::Transition { to: Status::Active },
    )
    .await;
    command(
        &h,
        "trial",
        "transition back",
        Command::Transition { to: Status::Trial },
    )
    .await
    .unwrap();
    command(
        &h,
        "trial",
        "extend trial",
        Command::ExtendTrial { days: 5 },
    )
    .await
    .unwrap();
    // Ending the trial converts it: an invoice and its charge.
    let ended = command(&h, "trial", "end trial", Command::EndTrial)
        .await
        .unwrap();
    assert!(ended
        .facts
        .iter()
        .any(|f| serde_json::to_string(f).unwrap().contains("\"invoice\"")));

    // Plan changes: an upgrade (prorated invoice, paid at once), a downgrade scheduled
    // and cancelled, an add-on in and out.
    command(
        &h,
        "sub",
        "upgrade",
        Command::Plan(PlanChange::Upgrade { tier: 30_000 }),
    )
    .await
    .unwrap();
    command(
        &h,
        "sub",
        "downgrade",
        Command::Plan(PlanChange::Downgrade { tier: 10_000 }),
    )
    .await
    .unwrap();
    command(
        &h,
        "sub",
        "cancel downgrade",
        Command::Plan(PlanChange::CancelDowngrade),
    )
    .await
    .unwrap();
    command(
        &h,
        "sub",
        "add add-on",
        Command::Plan(PlanChange::AddAddon {
            addon: "journeys".into(),
        }),
    )
    .await;
    command(
        &h,
        "sub",
        "remove add-on",
        Command::Plan(PlanChange::RemoveAddon {
            addon: "journeys".into(),
        }),
    )
    .await;

    // A declined card on the 1st: grace, then the grace operations; the preview of a
    // command that first catches the org up on the cycle reports the cycle too.
    h.card.decline("sub");
    h.set("2026-05-01T00:00:00Z");
    let caught_up = command(
        &h,
        "sub",
        "extend grace after the cycle",
        Command::ExtendGrace { days: 3 },
    )
    .await
    .unwrap();
    assert!(
        caught_up.transitions() > 0,
        "the catch-up's transition is reported"
    );
    command(
        &h,
        "sub",
        "plan change refused in grace",
        Command::Plan(PlanChange::Upgrade { tier: 50_000 }),
    )
    .await;
    command(&h, "sub", "mark paid", Command::MarkPaid)
        .await
        .unwrap();
    command(&h, "sub", "lock", Command::Lock).await.unwrap();
    command(
        &h,
        "sub",
        "postpone cancel",
        Command::PostponeCancel { days: 2 },
    )
    .await;
    command(
        &h,
        "sub",
        "unlock",
        Command::Unlock {
            reason: LockReason::Manual,
        },
    )
    .await
    .unwrap();
    command(
        &h,
        "sub",
        "cancel",
        Command::Cancel {
            confirm: "DELETE".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(h.status("sub").await, Status::Canceled);
}
both!(every_manual_operation_and_plan_change_previews_exactly);

async fn payment_outcomes_and_card_updates_preview_exactly(backend: Backend) {
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
    h.signup("acme", true, true).await;
    h.tick("2026-05-01T00:00:00Z").await;
    let invoices = h.engine.invoices("acme").await.unwrap();
    let id = invoices.last().unwrap().id;
    // A failure enters grace; a later success is a valid retry and recovers.
    preview_then_call(&h, "payment failed", |e| async move {
        e.payment_outcome(id, false, &ops()).await
    })
    .await
    .unwrap();
    assert_eq!(h.status("acme").await, Status::GracePeriod);
    preview_then_call(&h, "payment succeeded", |e| async move {
        e.payment_outcome(id, true, &ops()).await
    })
    .await
    .unwrap();
    assert_eq!(h.status("acme").await, Status::Active);
    preview_then_call(&h, "unknown invoice", |e| async move {
        e.payment_outcome(id + 1000, true, &ops()).await
    })
    .await;
}
both!(payment_outcomes_and_card_updates_preview_exactly);

async fn usage_reports_preview_their_alerts_and_the_overage_lock(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.set("2026-04-10T00:00:00Z");
    let report = |project: &str, mau: u64| UsageReport {
        org: "acme".into(),
        project: project.into(),
        period: "2026-04".into(),
        mau,
        data_points: 1_000,
        correction: false,
    };
    // Several items in one call: the second sees the first; 130,000 MAU on a 20,000 tier
    // is 650 %: every alert and the overage lock.
    let reports = vec![
        report("web", 17_000),
        report("ios", 113_000),
        report("web", 0),
    ];
    let done = preview_then_call(&h, "usage batch", |e| {
        let reports = reports.clone();
        async move {
            let ingested = e.report_usage(&reports, &ops()).await?;
            Ok(ingested.report)
        }
    })
    .await
    .unwrap();
    assert!(done.transitions() > 0, "the overage lock");
    assert_eq!(h.status("acme").await, Status::Locked);
}
both!(usage_reports_preview_their_alerts_and_the_overage_lock);
