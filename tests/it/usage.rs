//! Usage metering on both backends (SPEC section 4): refusals store nothing, alerts are
//! once per org, threshold and period (a database unique key), the overage lock.

use acctd::domain::period::Period;
use acctd::domain::{LockReason, Status};
use acctd::engine::usage::{Outcome, UsageReport};
use acctd::engine::{Actor, Command, Engine, Fact};
use acctd::storage;
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{both, t, Backend, Harness};

fn report(org: &str, project: &str, period: &str, mau: u64, data_points: u64) -> UsageReport {
    UsageReport {
        org: org.into(),
        project: project.into(),
        period: period.into(),
        mau,
        data_points,
        correction: false,
    }
}

fn alerts(facts: &[Fact]) -> Vec<u32> {
    facts
        .iter()
        .filter_map(|f| match f {
            Fact::Alert { threshold, .. } => Some(*threshold),
            _ => None,
        })
        .collect()
}

fn emails(facts: &[Fact], template: &str) -> usize {
    facts
        .iter()
        .filter(|f| matches!(f, Fact::Email { template: t, .. } if t == template))
        .count()
}

async fn count(engine: &Engine, sql: &str) -> i64 {
    let db = engine.db();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// SPEC 4: one report crossing several thresholds records one alert per threshold and
/// one email naming the highest; the same report again (a retry) records nothing more.
async fn a_retried_report_records_one_alert_per_threshold(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await; // basic, tier 20,000
    let batch = [report("acme", "web", "2026-03", 26_000, 0)];
    let first = h
        .engine
        .report_usage(&batch, &Actor::system())
        .await
        .unwrap();
    assert_eq!(first.outcomes, [Outcome::Accepted]);
    assert_eq!(alerts(&first.report.facts), [80, 100, 125]);
    assert_eq!(emails(&first.report.facts, "overage_alert"), 1);
    let again = h
        .engine
        .report_usage(&batch, &Actor::system())
        .await
        .unwrap();
    assert_eq!(again.outcomes, [Outcome::Accepted]);
    assert!(again.report.facts.is_empty(), "{:?}", again.report.facts);
    assert_eq!(
        count(&h.engine, "SELECT COUNT(*) FROM usage_alerts").await,
        3
    );
    assert_eq!(
        count(
            &h.engine,
            "SELECT COUNT(*) FROM outbox WHERE template = 'overage_alert'"
        )
        .await,
        1
    );
    // A new period alerts again.
    h.set("2026-04-02T00:00:00Z");
    let april = h
        .engine
        .report_usage(
            &[report("acme", "web", "2026-04", 16_000, 0)],
            &Actor::system(),
        )
        .await
        .unwrap();
    assert_eq!(alerts(&april.report.facts), [80]);
}
both!(a_retried_report_records_one_alert_per_threshold);

/// SPEC 11: a crash between two reports loses nothing of the first: each report commits
/// with its alerts and emails; a new process continues from there.
async fn a_crash_between_two_reports_loses_no_alert(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.engine
        .report_usage(
            &[report("acme", "web", "2026-03", 17_000, 0)],
            &Actor::system(),
        )
        .await
        .unwrap();
    // "Crash": abandon this engine and its pool; a new one connects to the same database.
    let url = h.db.url.clone();
    let fresh = storage::connect(&url, 2).await.unwrap();
    let engine = Engine::new(
        fresh,
        acctd::config::Settings::default().rules(),
        h.card.clone(),
        h.clock.clone(),
    );
    drop(h.engine);
    let second = engine
        .report_usage(
            &[report("acme", "ios", "2026-03", 24_000, 0)],
            &Actor::system(),
        )
        .await
        .unwrap();
    // 41,000 of 20,000: 205 %; 80 was recorded before the crash.
    assert_eq!(alerts(&second.report.facts), [100, 125, 150, 200]);
    let recorded = storage::usage::alerted(engine.db(), "acme", Period::parse("2026-03").unwrap())
        .await
        .unwrap();
    assert_eq!(recorded, [80, 100, 125, 150, 200]);
    assert_eq!(
        count(
            &engine,
            "SELECT COUNT(*) FROM outbox WHERE template = 'overage_alert'"
        )
        .await,
        2
    );
}
both!(a_crash_between_two_reports_loses_no_alert);

/// SPEC 4: each refusal says why and stores nothing of itself; the valid items of the
/// same batch are kept.
async fn refused_items_store_nothing_and_do_not_stop_the_batch(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.signup("gone", true, true).await;
    h.engine
        .command(
            "gone",
            &Command::Cancel {
                confirm: "DELETE".into(),
            },
            &Actor::new("ops", "test"),
        )
        .await
        .unwrap();
    h.engine
        .report_usage(
            &[report("acme", "web", "2026-03", 1_000, 50)],
            &Actor::system(),
        )
        .await
        .unwrap();
    let batch = [
        report("acme", "web", "2026-03", 900, 50), // lower, not a correction
        report("nobody", "web", "2026-03", 1, 0),  // unknown org
        report("gone", "web", "2026-03", 1, 0),    // canceled
        report("acme", "web", "2026-3", 1, 0),     // malformed period
        report("acme", "web", "2026-04", 1, 0),    // future period
        report("acme", "ios", "2026-03", 2_000, 0), // fine
        report("acme", "", "2026-03", 2_000, 0),   // no project
    ];
    let out = h
        .engine
        .report_usage(&batch, &Actor::system())
        .await
        .unwrap();
    let why: Vec<String> = out
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted => "accepted".to_owned(),
            Outcome::Refused(why) => why.clone(),
        })
        .collect();
    assert!(
        why[0].contains("lower than reported before") && why[0].contains("mau 900 < 1000"),
        "{}",
        why[0]
    );
    assert!(why[1].contains("unknown org `nobody`"), "{}", why[1]);
    assert!(why[2].contains("canceled"), "{}", why[2]);
    assert!(why[3].contains("malformed period `2026-3`"), "{}", why[3]);
    assert!(why[4].contains("in the future"), "{}", why[4]);
    assert_eq!(why[5], "accepted");
    assert!(why[6].contains("project"), "{}", why[6]);
    assert_eq!(out.accepted(), 1);
    let march = Period::parse("2026-03").unwrap();
    let total = storage::usage::total(h.engine.db(), "acme", march)
        .await
        .unwrap();
    assert_eq!(
        (total.mau, total.data_points),
        (3_000, 50),
        "only the valid item was stored"
    );

    // A correction may lower a total.
    let mut correction = report("acme", "web", "2026-03", 900, 50);
    correction.correction = true;
    let out = h
        .engine
        .report_usage(&[correction], &Actor::system())
        .await
        .unwrap();
    assert_eq!(out.outcomes, [Outcome::Accepted]);

    // Once the monthly cycle has billed March, March is closed.
    h.tick("2026-04-01T00:00:00Z").await;
    let out = h
        .engine
        .report_usage(
            &[report("acme", "web", "2026-03", 5_000, 50)],
            &Actor::system(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&out.outcomes[0], Outcome::Refused(why) if why.contains("already invoiced")),
        "{:?}",
        out.outcomes
    );
}
both!(refused_items_store_nothing_and_do_not_stop_the_batch);

/// SPEC 3 and 4: above 300 % (strictly) the org locks for overage, keeping a pending
/// grace deadline, which later adds payment_overdue; entitlements follow.
async fn overage_locks_above_300_percent_and_keeps_the_grace_deadline(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.card.decline("acme");
    h.tick("2026-04-01T00:00:00Z").await;
    let grace = h.org("acme").await.lifecycle.grace_ends_at;
    assert_eq!(grace, Some(t("2026-04-11T00:00:00Z")));
    h.set("2026-04-03T00:00:00Z");
    // Exactly 300 % by data points (Basic: 2,000 per MAU): 60,000 usage MAU, no lock.
    h.engine
        .report_usage(
            &[report("acme", "web", "2026-04", 10, 120_000_000)],
            &Actor::system(),
        )
        .await
        .unwrap();
    assert_eq!(h.status("acme").await, Status::GracePeriod);
    let view = h.engine.view("acme").await.unwrap();
    assert!(view.upgrade_prompt);
    // 2,000 more data points on another project (projects sum): 60,001 usage MAU,
    // 300.005 %, locked.
    h.engine
        .report_usage(
            &[report("acme", "ios", "2026-04", 1, 2_000)],
            &Actor::system(),
        )
        .await
        .unwrap();
    let org = h.org("acme").await;
    assert_eq!(org.lifecycle.status, Status::Locked);
    assert_eq!(
        org.lifecycle.reasons.iter().collect::<Vec<_>>(),
        [LockReason::Overage]
    );
    assert_eq!(org.lifecycle.grace_ends_at, grace);
    assert_eq!(org.overage_lock_mau, Some(60_001));
    let e = h.engine.view("acme").await.unwrap().entitlements;
    assert!(!e.dashboard && !e.exports && e.ingestion && e.campaigns);
    // The lift rule: 3 × 20,000 does not cover 60,001; 3 × 25,000 does.
    assert!(!h.engine.upgrade_lifts_overage(&org, 20_000));
    assert!(h.engine.upgrade_lifts_overage(&org, 25_000));

    h.tick("2026-04-11T00:00:00Z").await;
    let org = h.org("acme").await;
    assert_eq!(
        org.lifecycle.reasons.iter().collect::<Vec<_>>(),
        [LockReason::Overage, LockReason::PaymentOverdue]
    );
    assert_eq!(org.lifecycle.cancel_at, Some(t("2026-04-25T00:00:00Z")));
    let e = h.engine.view("acme").await.unwrap().entitlements;
    assert!(!e.campaigns && e.ingestion);
}
both!(overage_locks_above_300_percent_and_keeps_the_grace_deadline);

/// SPEC 7: usage older than the plan's retention is purged; newer usage stays.
async fn retention_purges_usage_older_than_the_plan_keeps(backend: Backend) {
    let Some(h) = Harness::start(backend, "2025-01-10T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.engine
        .report_usage(
            &[report("acme", "web", "2025-01", 100, 0)],
            &Actor::system(),
        )
        .await
        .unwrap();
    h.tick("2025-03-10T00:00:00Z").await;
    h.engine
        .report_usage(
            &[report("acme", "web", "2025-03", 100, 0)],
            &Actor::system(),
        )
        .await
        .unwrap();
    h.tick("2026-03-15T00:00:00Z").await;
    let purged = h
        .engine
        .purge_retention(&[("basic".into(), 365)])
        .await
        .unwrap();
    assert_eq!(purged, 1);
    let jan = storage::usage::total(h.engine.db(), "acme", Period::parse("2025-01").unwrap())
        .await
        .unwrap();
    let mar = storage::usage::total(h.engine.db(), "acme", Period::parse("2025-03").unwrap())
        .await
        .unwrap();
    assert_eq!((jan.mau, mar.mau), (0, 100));
}
both!(retention_purges_usage_older_than_the_plan_keeps);

/// SPEC 4: the org's stored total is the sum of its projects' latest totals, through new
/// projects, replacements and corrections spread over several transactions of one batch
/// (2,000 items each), and it goes with the org's usage when the org is canceled.
async fn the_stored_total_is_the_sum_of_the_projects(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.signup("beta", true, true).await;
    let mut batch: Vec<UsageReport> = (0..3_000)
        .map(|p| report("acme", &format!("p{p}"), "2026-03", 1, 10))
        .chain((0..1_500).map(|p| report("beta", &format!("p{p}"), "2026-03", 2, 0)))
        .collect();
    // Later in the same batch, in a later transaction: a replacement and a correction.
    batch.push(report("acme", "p0", "2026-03", 5, 10));
    batch.push(UsageReport {
        correction: true,
        ..report("acme", "p1", "2026-03", 0, 0)
    });
    let ingested = h
        .engine
        .report_usage(&batch, &Actor::system())
        .await
        .unwrap();
    assert_eq!(ingested.accepted(), batch.len());
    let march = Period::parse("2026-03").unwrap();
    let acme = storage::usage::total(h.engine.db(), "acme", march)
        .await
        .unwrap();
    let beta = storage::usage::total(h.engine.db(), "beta", march)
        .await
        .unwrap();
    assert_eq!((acme.mau, acme.data_points), (3_003, 29_990));
    assert_eq!((beta.mau, beta.data_points), (3_000, 0));
    for org in ["acme", "beta"] {
        let sum = count(
            &h.engine,
            &format!("SELECT CAST(SUM(mau) AS BIGINT) FROM usage_reports WHERE org_id = '{org}'"),
        )
        .await;
        let stored = count(
            &h.engine,
            &format!("SELECT mau FROM usage_totals WHERE org_id = '{org}'"),
        )
        .await;
        assert_eq!(sum, stored, "{org}");
    }
    assert_eq!(h.org("acme").await.usage, Some((march, 3_003)));

    h.engine
        .command(
            "acme",
            &Command::Cancel {
                confirm: "DELETE".into(),
            },
            &Actor::new("acme", "leaving"),
        )
        .await
        .unwrap();
    let left = count(
        &h.engine,
        "SELECT COUNT(*) FROM usage_totals WHERE org_id = 'acme'",
    )
    .await;
    assert_eq!(
        left, 0,
        "a canceled org's totals are purged with its reports"
    );
    let beta = storage::usage::total(h.engine.db(), "beta", march)
        .await
        .unwrap();
    assert_eq!(beta.mau, 3_000, "other orgs keep theirs");
}
both!(the_stored_total_is_the_sum_of_the_projects);

/// A batch applies its items in order, exactly as one call each: a second project's report
/// crosses the next threshold (a second email), a lower total later in the same batch is
/// refused against the total accepted earlier in it, the last accepted total per project
/// is what is stored, and the org's actors are recorded per item.
async fn items_of_one_batch_apply_in_order(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await; // basic, tier 20,000
    let batch = [
        report("acme", "web", "2026-03", 17_000, 0), // 85 %: 80
        report("acme", "app", "2026-03", 4_000, 0),  // 105 %: 100
        report("acme", "web", "2026-03", 16_000, 0), // lower than 17,000: refused
        report("acme", "web", "2026-03", 18_000, 0), // 110 %: nothing new
        report("acme", "app", "2026-03", 60_000, 0), // 390 %: 125..300, lock
    ];
    let actors: Vec<Actor> = (0..batch.len())
        .map(|i| Actor::new(format!("step{i}"), "usage"))
        .collect();
    let out = h.engine.report_usage_by(&batch, &actors).await.unwrap();
    assert_eq!(out.outcomes[..2], [Outcome::Accepted, Outcome::Accepted]);
    assert!(
        matches!(&out.outcomes[2], Outcome::Refused(why) if why.contains("mau 16000 < 17000")),
        "{:?}",
        out.outcomes[2]
    );
    assert_eq!(out.outcomes[3..], [Outcome::Accepted, Outcome::Accepted]);
    // Each item's facts start where the previous item's end.
    let of = |i: usize| {
        let end = out
            .starts
            .get(i + 1)
            .copied()
            .unwrap_or(out.report.facts.len());
        &out.report.facts[out.starts[i]..end]
    };
    assert_eq!(alerts(of(0)), [80]);
    assert_eq!(alerts(of(1)), [100]);
    assert!(of(2).is_empty() && of(3).is_empty());
    assert_eq!(alerts(of(4)), [125, 150, 200, 250, 300]);
    assert_eq!(emails(&out.report.facts, "overage_alert"), 3);
    let locked = of(4).iter().find_map(|f| match f {
        Fact::Transition { to, actor, .. } => Some((*to, actor.clone())),
        _ => None,
    });
    assert_eq!(locked, Some((Status::Locked, "step4".to_owned())));
    let total = storage::usage::total(h.engine.db(), "acme", Period::parse("2026-03").unwrap())
        .await
        .unwrap();
    assert_eq!(total.mau, 78_000);
    assert_eq!(
        count(&h.engine, "SELECT COUNT(*) FROM usage_alerts").await,
        7
    );
    let org = h.engine.org("acme").await.unwrap().unwrap();
    assert_eq!(org.lifecycle.status, Status::Locked);
    assert_eq!(org.overage_lock_mau, Some(78_000));
    // A mismatched actor list is refused before anything is stored.
    let err = h
        .engine
        .report_usage_by(&batch, &actors[..1])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 actors for 5 reports"), "{err}");
}
both!(items_of_one_batch_apply_in_order);

/// The org row as stored: its version and when it was last written.
async fn stamp(h: &Harness, id: &str) -> (i64, chrono::DateTime<chrono::Utc>) {
    use sea_orm::EntityTrait;
    let row = entity::org::Entity::find_by_id(id.to_owned())
        .one(h.engine.db())
        .await
        .unwrap()
        .expect("org row");
    (row.version, row.updated_at)
}

/// SPEC 11 (refused input changes nothing; issue 29 item 9): a refused usage item writes
/// nothing, not even the org's `version` or `updated_at`, and neither does a report that
/// repeats the stored totals; an accepted change still bumps both.
async fn a_refused_usage_item_writes_nothing(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.engine
        .report_usage(
            &[report("acme", "web", "2026-03", 1_000, 50)],
            &Actor::system(),
        )
        .await
        .unwrap();
    let before = stamp(&h, "acme").await;
    h.set("2026-03-03T00:00:00Z");
    let out = h
        .engine
        .report_usage(
            &[
                report("acme", "web", "2026-03", 900, 50), // lower, not a correction
                report("acme", "web", "2026-04", 1, 0),    // future period
                report("acme", "web", "2026-03", 1_000, 50), // the same totals again
            ],
            &Actor::system(),
        )
        .await
        .unwrap();
    assert_eq!(out.accepted(), 1, "{:?}", out.outcomes);
    assert_eq!(stamp(&h, "acme").await, before, "nothing was written");

    let out = h
        .engine
        .report_usage(
            &[report("acme", "web", "2026-03", 2_000, 50)],
            &Actor::system(),
        )
        .await
        .unwrap();
    assert_eq!(out.outcomes, [Outcome::Accepted]);
    let after = stamp(&h, "acme").await;
    assert_eq!(after.0, before.0 + 1);
    assert_eq!(after.1, t("2026-03-03T00:00:00Z"));
}
both!(a_refused_usage_item_writes_nothing);

/// Issue 29 item 4: a total above the limit (10^15 MAU or data points) is refused naming
/// the limit, for one item and for an org's sum over its projects, and nothing of it is
/// stored; the invoice of what was accepted stores exactly the total it reports.
async fn absurd_usage_is_refused_naming_the_limit(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-02T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    let huge = 9_223_372_036_854_775_808; // i64::MAX + 1
    let near = 400_000_000_000_000; // 4 × 10^14: three pass the limit
    let out = h
        .engine
        .report_usage(
            &[
                report("acme", "web", "2026-03", huge, 0),
                report("acme", "web", "2026-03", 1, huge),
                report("acme", "a", "2026-03", near, 0),
                report("acme", "b", "2026-03", near, 0),
                report("acme", "c", "2026-03", near, 0),
            ],
            &Actor::system(),
        )
        .await
        .unwrap();
    let why: Vec<String> = out
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted => "accepted".to_owned(),
            Outcome::Refused(why) => why.clone(),
        })
        .collect();
    assert!(
        why[0].contains("mau 9223372036854775808 is above the limit of 1000000000000000"),
        "{}",
        why[0]
    );
    assert!(why[1].contains("data_points"), "{}", why[1]);
    assert_eq!(why[2..4], ["accepted", "accepted"]);
    assert!(why[4].contains("above the limit"), "{}", why[4]);
    let march = Period::parse("2026-03").unwrap();
    let total = storage::usage::total(h.engine.db(), "acme", march)
        .await
        .unwrap();
    assert_eq!((total.mau, total.data_points), (2 * near, 0));
    assert_eq!(h.org("acme").await.usage, Some((march, 2 * near)));

    // April's invoice bills March's overage; the stored total is the one reported.
    let report = h.tick("2026-04-01T00:00:00Z").await;
    let reported: Vec<(i64, rust_decimal::Decimal)> = report
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Invoice { id, total, .. } => Some((*id, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(reported.len(), 1, "{:?}", report.facts);
    let stored = storage::billing::find(h.engine.db(), reported[0].0)
        .await
        .unwrap()
        .expect("stored invoice");
    assert_eq!(stored.total, reported[0].1);
    assert!(
        stored.total > "1000000000000".parse().unwrap(),
        "{}",
        stored.total
    );
}
both!(absurd_usage_is_refused_naming_the_limit);
