//! Benchmark support, outside the library: fast bulk seeding of orgs, the set-based SQL
//! baseline for a sweep (`raw_sweep`), and small measurement helpers. Used by
//! `benches/acctd.rs` (also as `--seed URL` and `--raw-sweep URL` by hand) and by the
//! what-if test on the benchmark's mix (`tests/it/whatif.rs`).
//!
//! Seeding goes through [`storage::org::insert_many`] (so rows are encoded exactly as the
//! engine encodes them), in large chunks, one transaction per chunk.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use acctd::domain::period::{next_first_after, Period};
use acctd::domain::{Lifecycle, LockReason, LockReasons, Org, Status, Timers};
use acctd::storage;

/// Orgs generated and inserted per transaction while seeding.
pub const SEED_CHUNK: usize = 20_000;

/// What [`seed`] inserts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Every org is a subscriber in `grace_period` whose grace deadline passed within the
    /// last hour, with its next monthly cycle on the next 1st: one tick locks every org and
    /// does nothing else.
    GraceExpired,
    /// A realistic mix of states, plans, tiers and deadlines (about 3 % due now).
    Mixed,
    /// Active subscribers on every tier, nothing due before the next 1st (usage ingestion).
    Active,
}

impl Scenario {
    pub const NAMES: &'static str = "grace-expired, mixed, active";

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::GraceExpired => "grace-expired",
            Scenario::Mixed => "mixed",
            Scenario::Active => "active",
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grace-expired" => Ok(Scenario::GraceExpired),
            "mixed" => Ok(Scenario::Mixed),
            "active" => Ok(Scenario::Active),
            other => Err(format!(
                "unknown scenario `{other}`, expected one of: {}",
                Scenario::NAMES
            )),
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The self-serve tiers of the default price book.
const TIERS: [u32; 10] = [
    5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 75_000, 100_000,
];

/// A small deterministic generator (splitmix64), so that seeds are reproducible.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn secs(n: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX))
}

fn base_org(i: usize, now: DateTime<Utc>, lifecycle: Lifecycle) -> Org {
    Org {
        id: format!("org{i:07}"),
        plan: "basic".to_owned(),
        tier: 5_000,
        addons: Vec::new(),
        currency: "USD".to_owned(),
        admins: vec![format!("admin@org{i}.test")],
        billing_email: format!("billing@org{i}.test"),
        signup_at: now - chrono::Duration::days(60),
        canceled_at: None,
        lifecycle,
        usage: None,
        overage_lock_mau: None,
        scheduled_tier: None,
        scheduled_removals: Vec::new(),
        clock: None,
        version: 0,
    }
}

fn subscriber(status: Status) -> Lifecycle {
    Lifecycle {
        status,
        reasons: LockReasons::default(),
        payment_method: true,
        subscriber: true,
        trial_ends_at: None,
        grace_ends_at: None,
        cancel_at: None,
        next_cycle_at: None,
        reminder_at: None,
        reminded_through: None,
    }
}

/// The `i`-th org of a scenario at `now` (whole seconds).
pub fn org(scenario: Scenario, i: usize, now: DateTime<Utc>) -> Org {
    let mut rng = Mix(i as u64 ^ 0xACC7_D000);
    match scenario {
        Scenario::GraceExpired => {
            let mut l = subscriber(Status::GracePeriod);
            // Passed within the last hour (1 to 3,600 seconds ago).
            l.grace_ends_at = Some(now - secs(1 + (i as u64 % 3_600)));
            l.next_cycle_at = Some(next_first_after(now));
            base_org(i, now, l)
        }
        Scenario::Mixed => mixed_org(&mut rng, i, now),
        Scenario::Active => {
            let mut l = subscriber(Status::Active);
            l.next_cycle_at = Some(next_first_after(now));
            let mut org = base_org(i, now, l);
            org.tier = TIERS[i % TIERS.len()];
            if i.is_multiple_of(4) {
                "essentials".clone_into(&mut org.plan);
            }
            org
        }
    }
}

fn mixed_org(rng: &mut Mix, i: usize, now: DateTime<Utc>) -> Org {
    let day = 86_400;
    let roll = rng.below(100);
    let mut org = base_org(i, now, subscriber(Status::Active));
    if rng.below(4) == 0 {
        "essentials".clone_into(&mut org.plan);
    }
    org.tier = TIERS[usize::try_from(rng.below(TIERS.len() as u64)).unwrap_or(0)];
    org.signup_at = now - secs(rng.below(700 * day) + 31 * day);
    let next_cycle = next_first_after(now);
    let l = &mut org.lifecycle;
    match roll {
        // 20 %: trial, ending within 30 days (1 in 20 of those already due).
        0..=19 => {
            org.signup_at = now - secs(rng.below(30 * day));
            l.status = Status::Trial;
            l.subscriber = false;
            l.payment_method = rng.below(2) == 0;
            l.trial_ends_at = Some(if rng.below(20) == 0 {
                now - secs(1 + rng.below(3_600))
            } else {
                now + secs(1 + rng.below(30 * day))
            });
        }
        // 60 %: active subscribers, billed on the next 1st.
        20..=79 => {
            l.next_cycle_at = Some(next_cycle);
        }
        // 6 %: grace period (a third of those expired within the last hour).
        80..=85 => {
            l.status = Status::GracePeriod;
            l.grace_ends_at = Some(if rng.below(3) == 0 {
                now - secs(1 + rng.below(3_600))
            } else {
                now + secs(1 + rng.below(10 * day))
            });
            l.next_cycle_at = Some(next_cycle);
        }
        // 8 %: locked for various reasons, auto-cancel pending for payment locks.
        86..=93 => {
            l.status = Status::Locked;
            let reason = match rng.below(4) {
                0 => LockReason::Overage,
                1 => LockReason::Manual,
                2 => LockReason::TrialExpired,
                _ => LockReason::PaymentOverdue,
            };
            l.reasons = LockReasons::one(reason);
            match reason {
                LockReason::PaymentOverdue => {
                    l.cancel_at = Some(now + secs(1 + rng.below(14 * day)));
                    l.next_cycle_at = Some(next_cycle);
                }
                LockReason::TrialExpired => {
                    l.subscriber = false;
                    l.payment_method = false;
                }
                LockReason::Overage => {
                    org.overage_lock_mau = Some(u64::from(org.tier) * 4);
                    org.usage = Some((Period::containing(now), u64::from(org.tier) * 4));
                    l.next_cycle_at = Some(next_cycle);
                }
                LockReason::Manual => l.next_cycle_at = Some(next_cycle),
            }
        }
        // 6 %: canceled.
        _ => {
            l.status = Status::Canceled;
            l.subscriber = false;
            l.payment_method = rng.below(2) == 0;
            org.canceled_at = Some(now - secs(rng.below(300 * day)));
        }
    }
    if org.lifecycle.status == Status::Active && rng.below(20) == 0 {
        org.scheduled_tier = Some(TIERS[0]);
    }
    org.lifecycle.schedule_reminder(now, 3);
    org
}

/// Inserts `orgs` orgs of `scenario` (ids `org0000000` …), chunked, one transaction per
/// [`SEED_CHUNK`] orgs. `now` should be whole seconds ([`acctd::clock::truncate`]).
///
/// # Errors
/// A database error (for instance ids that exist already).
pub async fn seed(
    db: &DatabaseConnection,
    orgs: usize,
    scenario: Scenario,
    now: DateTime<Utc>,
) -> Result<(), storage::Error> {
    let mut start = 0;
    while start < orgs {
        let end = (start + SEED_CHUNK).min(orgs);
        let chunk: Vec<Org> = (start..end).map(|i| org(scenario, i, now)).collect();
        let txn = storage::begin_write(db).await?;
        storage::org::insert_many(&txn, &chunk, now).await?;
        txn.commit().await?;
        start = end;
    }
    Ok(())
}

/// What [`raw_sweep`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawSweep {
    pub orgs: u64,
    pub transitions: u64,
    pub outbox: u64,
}

/// The changes of a tick on a `grace-expired` database done by set-based SQL, in one
/// transaction: the audit rows and the `account_locked` outbox rows by `INSERT … SELECT`,
/// then one `UPDATE` of the orgs (locked for `payment_overdue`, grace deadline cleared,
/// auto-cancel 14 days after the grace deadline, `cancel_warning` reminder 3 days before
/// it, `next_due_at` recomputed, version + 1). Only orgs in `grace_period` whose grace
/// deadline is at or before `now` are touched (on the real clock).
///
/// # Errors
/// A database error.
pub async fn raw_sweep(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<RawSweep, storage::Error> {
    let backend = db.get_database_backend();
    let timers = Timers::default();
    let cancel_days = timers.lock_to_cancel.num_days();
    let reminder_days = i64::from(acctd::config::Notify::default().reminder_days);
    let warn_days = cancel_days - reminder_days;
    // Expressions per backend: the grace deadline as RFC 3339 with `Z`, the auto-cancel
    // and reminder instants, the earliest of two nullable instants, a JSON object.
    let (p1, p2, grace_z, cancel, reminder, json_open, json_close, cancel_z, trial_z) =
        match backend {
            DbBackend::Postgres => (
                "$1",
                "$2",
                "to_char(grace_ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                    .to_owned(),
                format!("COALESCE(cancel_at, grace_ends_at + INTERVAL '{cancel_days} days')"),
                format!("(COALESCE(cancel_at, grace_ends_at + INTERVAL '{cancel_days} days') - INTERVAL '{reminder_days} days')"),
                "json_build_object(",
                ")::text",
                format!("to_char(COALESCE(cancel_at, grace_ends_at + INTERVAL '{cancel_days} days') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"),
                "to_char(trial_ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                    .to_owned(),
            ),
            _ => (
                "?",
                "?",
                "strftime('%Y-%m-%dT%H:%M:%SZ', grace_ends_at)".to_owned(),
                format!("COALESCE(cancel_at, strftime('%Y-%m-%dT%H:%M:%S+00:00', grace_ends_at, '+{cancel_days} days'))"),
                format!("COALESCE(strftime('%Y-%m-%dT%H:%M:%S+00:00', cancel_at, '-{reminder_days} days'), strftime('%Y-%m-%dT%H:%M:%S+00:00', grace_ends_at, '+{warn_days} days'))"),
                "json_object(",
                ")",
                format!("strftime('%Y-%m-%dT%H:%M:%SZ', COALESCE(cancel_at, strftime('%Y-%m-%dT%H:%M:%S+00:00', grace_ends_at, '+{cancel_days} days')))"),
                "strftime('%Y-%m-%dT%H:%M:%SZ', trial_ends_at)".to_owned(),
            ),
        };
    let lock_array = if backend == DbBackend::Postgres {
        "json_build_array('payment_overdue')"
    } else {
        "json_array('payment_overdue')"
    };
    let due = format!(
        "state = 'grace_period' AND grace_ends_at IS NOT NULL AND grace_ends_at <= {p1} AND clock_id IS NULL"
    );
    let transitions = format!(
        "INSERT INTO transitions (org_id, from_state, to_state, cause, lock_reasons, actor, reason, at, recorded_at) \
         SELECT id, 'grace_period', 'locked', 'grace_expired', 'payment_overdue', 'system', NULL, grace_ends_at, {p2} \
         FROM orgs WHERE {due}"
    );
    let outbox = format!(
        "INSERT INTO outbox (org_id, channel, template, recipients, payload, dedupe_key, at, status, attempts, next_attempt_at, last_error, sent_at) \
         SELECT id, 'email', 'account_locked', admins, \
           {json_open}'org', id, 'at', {grace_z}, 'state', 'locked', 'lock_reasons', {lock_array}, \
             'trial_ends_at', {trial_z}, 'grace_ends_at', NULL, 'cancel_at', {cancel_z}, 'plan', plan, 'tier', tier{json_close}, \
           id || ':account_locked:grace_expired:' || {grace_z} || ':v' || version || '.1', grace_ends_at, 'pending', 0, {p2}, NULL, NULL \
         FROM orgs WHERE {due} \
         ON CONFLICT (dedupe_key) DO NOTHING"
    );
    // The reminder is always at or after the grace deadline here (cancel - 3 days), so
    // next_due_at is the earliest of the reminder, the auto-cancel (later) and the cycle.
    let next_due = if backend == DbBackend::Postgres {
        format!("LEAST({reminder}, next_cycle_at, trial_ends_at)")
    } else {
        format!(
            "MIN({reminder}, COALESCE(next_cycle_at, {reminder}), COALESCE(trial_ends_at, {reminder}))"
        )
    };
    let update = format!(
        "UPDATE orgs SET state = 'locked', lock_reasons = 'payment_overdue', \
           cancel_at = {cancel}, reminder_at = {reminder}, next_due_at = {next_due}, \
           grace_ends_at = NULL, overage_lock_mau = NULL, version = version + 1, updated_at = {p2} \
         WHERE {due}"
    );
    let txn = storage::begin_write(db).await?;
    let values = |n: usize| -> Vec<sea_orm::Value> { vec![now.into(); n] };
    let t = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            transitions,
            values(2),
        ))
        .await?;
    let o = txn
        .execute_raw(Statement::from_sql_and_values(backend, outbox, values(2)))
        .await?;
    let u = txn
        .execute_raw(Statement::from_sql_and_values(backend, update, values(2)))
        .await?;
    txn.commit().await?;
    Ok(RawSweep {
        orgs: u.rows_affected(),
        transitions: t.rows_affected(),
        outbox: o.rows_affected(),
    })
}

/// Refreshes the planner's statistics after a bulk load (`ANALYZE`). Without them
/// `PostgreSQL` plans the due-org claim for a near-empty table: a sort of every due row
/// per batch.
///
/// # Errors
/// A database error.
pub async fn analyze(db: &DatabaseConnection) -> Result<(), storage::Error> {
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "ANALYZE".to_owned(),
    ))
    .await?;
    Ok(())
}

/// Awaits a future and returns its output with the wall time it took.
pub async fn time_async<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let value = f.await;
    (value, started.elapsed())
}

/// The median of some durations (the mean of the middle two for an even count); zero for
/// none.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// A duration in seconds with millisecond precision, for reports.
pub fn fmt_secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}
