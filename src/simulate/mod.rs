//! Time-travel simulation (SPEC section 9): a scenario runs through the same [`Engine`]
//! as the daemon, on a [`VirtualClock`], a scripted card and an in-memory `SQLite`
//! database, and prints one JSON object per fact. Deterministic: the same scenario gives
//! the same bytes.

pub mod output;
pub mod scenario;

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::clock::VirtualClock;
use crate::config::{self, Settings};
use crate::domain::period::Period;
use crate::engine::usage::{Outcome, UsageReport};
use crate::engine::{self, Actor, Command, Engine, Fact, ScriptedGateway, Signup};
use crate::report::html;
use crate::storage;
pub use scenario::Scenario;
use scenario::{Action, Expect};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Scenario(#[from] scenario::Error),
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

impl From<storage::Error> for Error {
    fn from(e: storage::Error) -> Self {
        Error::Engine(e.into())
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub expectations: usize,
    pub failed: usize,
}

enum Item<'a> {
    Signup(&'a scenario::Org),
    Step(&'a scenario::Step),
    Expect(&'a Expect),
}

/// What a run keeps for a picture (`acctd simulate --html`): the facts and expectations
/// of the scenario's first [`html::MAX_LANES`] orgs.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// The orgs drawn, in the scenario's order, with their facts and expectations.
    pub lanes: Vec<(String, Vec<Fact>, Vec<html::Expectation>)>,
    /// Orgs of the scenario left out.
    pub omitted: u64,
}

impl Recording {
    fn lane(&mut self, org: &str) -> Option<&mut (String, Vec<Fact>, Vec<html::Expectation>)> {
        self.lanes.iter_mut().find(|(id, _, _)| id == org)
    }
}

/// The output of a run: its JSON Lines, and the recording if one is asked for.
struct Out<'a, W: Write> {
    w: &'a mut W,
    record: Option<&'a mut Recording>,
}

impl<W: Write> Write for Out<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.w.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// Runs a scenario, writing JSON Lines to `out`.
///
/// # Errors
/// Invalid `[config]` overrides, or a storage failure.
pub async fn run(
    scenario: &Scenario,
    base: &Settings,
    out: &mut impl Write,
) -> Result<Summary, Error> {
    run_recorded(scenario, base, out, None).await
}

/// [`run`], also keeping in `record` the facts and expectations of the scenario's first
/// orgs (for `--html`).
///
/// # Errors
/// Invalid `[config]` overrides, or a storage failure.
pub async fn run_recorded(
    scenario: &Scenario,
    base: &Settings,
    out: &mut impl Write,
    mut record: Option<&mut Recording>,
) -> Result<Summary, Error> {
    if let Some(record) = record.as_deref_mut() {
        record.lanes = scenario
            .orgs
            .iter()
            .take(html::MAX_LANES)
            .map(|o| (o.id.clone(), Vec::new(), Vec::new()))
            .collect();
        record.omitted = scenario.orgs.len().saturating_sub(html::MAX_LANES) as u64;
    }
    let out = &mut Out { w: out, record };
    let settings = match &scenario.config {
        Some(overrides) => {
            base.with_overrides(&scenario.file, &scenario.text, overrides.clone())?
        }
        None => base.clone(),
    };
    validate_orgs(scenario, &settings)?;
    // The operator's bounds, not the scenario's own `[config]`.
    check_bounds(scenario, &base.simulation)?;
    let db = storage::connect("sqlite::memory:", 1).await?;
    storage::migrate(&db).await?;
    let clock = Arc::new(VirtualClock::new(scenario.start));
    let gateway = Arc::new(ScriptedGateway::default());
    let engine = Engine::new(db, settings.rules(), gateway.clone(), clock.clone());

    // Signups, steps, then expectations at the same instant, each in file order.
    let mut timeline: Vec<(DateTime<Utc>, u8, usize, Item<'_>)> = Vec::new();
    timeline.extend(
        scenario
            .orgs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.signup_at, 0, i, Item::Signup(o))),
    );
    timeline.extend(
        scenario
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.at, 1, i, Item::Step(s))),
    );
    timeline.extend(
        scenario
            .expects
            .iter()
            .enumerate()
            .map(|(i, e)| (e.at, 2, i, Item::Expect(e))),
    );
    timeline.sort_by_key(|(at, kind, index, _)| (*at, *kind, *index));

    let mut summary = Summary {
        expectations: 0,
        failed: 0,
    };
    // Deadlines are caught up once per instant: a step touches only its own org, which
    // the engine catches up itself. Usage steps at one instant go in as one batch.
    let mut ticked = None;
    let mut next = 0;
    while next < timeline.len() {
        let (at, _, _, item) = &timeline[next];
        next += 1;
        if ticked != Some(*at) {
            // What the instants before this one wrote is out before time moves on.
            out.flush()?;
            advance(&engine, &clock, ticked.unwrap_or(scenario.start), *at, out).await?;
            ticked = Some(*at);
        }
        match item {
            Item::Signup(org) => {
                // The orgs signing up at one instant go in as one transaction.
                let mut orgs = vec![*org];
                while let Some((same, _, _, Item::Signup(more))) = timeline.get(next) {
                    if same != at {
                        break;
                    }
                    orgs.push(*more);
                    next += 1;
                }
                let signups = orgs
                    .iter()
                    .map(|org| Signup {
                        id: org.id.clone(),
                        plan: org.plan.clone(),
                        tier: org.tier,
                        admins: org.admins.clone(),
                        billing_email: org.billing_email.clone(),
                        payment_method: org.payment_method,
                        addons: org.addons.clone(),
                        active: org.active,
                    })
                    .collect();
                match engine.signup_many(signups, &Actor::system()).await {
                    Ok(report) => emit(out, report.facts)?,
                    Err((_, e @ engine::Error::Storage(_))) => return Err(e.into()),
                    // A bad org declaration is bad input, not a refused step.
                    Err((i, e)) => {
                        return Err(scenario::Error {
                            file: scenario.file.clone(),
                            line: orgs[i].line,
                            key: "org".to_owned(),
                            message: e.to_string(),
                        }
                        .into())
                    }
                }
            }
            Item::Step(step) if matches!(step.action, Action::Usage { .. }) => {
                let mut steps = vec![*step];
                while let Some((same, _, _, Item::Step(more))) = timeline.get(next) {
                    if same != at || !matches!(more.action, Action::Usage { .. }) {
                        break;
                    }
                    steps.push(*more);
                    next += 1;
                }
                usage_run(&engine, &steps, out).await?;
            }
            Item::Step(step) => step_run(&engine, &gateway, step, out).await?,
            Item::Expect(expect) => {
                summary.expectations += 1;
                if !check(&engine, expect, out).await? {
                    summary.failed += 1;
                }
            }
        }
    }
    let last = scenario.until - Duration::seconds(1);
    out.flush()?;
    advance(&engine, &clock, ticked.unwrap_or(scenario.start), last, out).await?;
    output::summary(out, summary.expectations, summary.failed)?;
    out.flush()?;
    Ok(summary)
}

/// Moves the clock from `from` to `to`, firing the deadlines due on the way a month at a
/// time (at each 1st in between, then at `to`) and writing each month's facts as soon as
/// they are decided, so a long run streams its output instead of holding it to the end.
async fn advance<W: Write>(
    engine: &Engine,
    clock: &VirtualClock,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    out: &mut Out<'_, W>,
) -> Result<(), Error> {
    let mut first = Period::containing(from).next().start();
    while first < to {
        clock.set(first);
        emit(out, engine.tick(first).await?.facts)?;
        out.flush()?;
        first = Period::containing(first).next().start();
    }
    clock.set(to);
    emit(out, engine.tick(to).await?.facts)?;
    Ok(())
}

/// Refuses a scenario beyond `[simulation]`'s bounds before anything runs.
fn check_bounds(scenario: &Scenario, bounds: &config::Simulation) -> Result<(), scenario::Error> {
    let max_orgs = usize::try_from(bounds.max_orgs).unwrap_or(usize::MAX);
    if let Some(org) = scenario.orgs.get(max_orgs) {
        return Err(scenario::Error {
            file: scenario.file.clone(),
            line: org.line,
            key: "org".to_owned(),
            message: format!(
                "{} orgs; at most {max_orgs} (simulation.max_orgs)",
                scenario.orgs.len()
            ),
        });
    }
    let limit = scenario
        .start
        .checked_add_months(chrono::Months::new(bounds.max_years.saturating_mul(12)));
    if limit.is_none_or(|limit| scenario.until > limit) {
        return Err(scenario::Error {
            file: scenario.file.clone(),
            line: config::line_of_key(&scenario.text, "until").unwrap_or(1),
            key: "until".to_owned(),
            message: format!(
                "more than {} years after start (simulation.max_years)",
                bounds.max_years
            ),
        });
    }
    Ok(())
}

/// Checks every `[[org]]` against the price book before anything runs, so that a bad
/// declaration exits 2 without partial output.
fn validate_orgs(scenario: &Scenario, settings: &Settings) -> Result<(), scenario::Error> {
    let prices = settings.price_book();
    for org in &scenario.orgs {
        let fail = |key: &str, message: String| scenario::Error {
            file: scenario.file.clone(),
            line: org.line,
            key: format!("org.{key}"),
            message: format!("org `{}`: {message}", org.id),
        };
        prices
            .plan(&org.plan)
            .map_err(|e| fail("plan", e.to_string()))?;
        prices
            .check_tier(org.tier)
            .map_err(|e| fail("tier", e.to_string()))?;
        for addon in &org.addons {
            prices
                .addon(addon)
                .map_err(|e| fail("addons", e.to_string()))?;
        }
    }
    Ok(())
}

/// Usage steps of one instant as one batch; each step's refusal or facts are written in
/// step order, as if they had run one by one.
async fn usage_run<W: Write>(
    engine: &Engine,
    steps: &[&scenario::Step],
    out: &mut Out<'_, W>,
) -> Result<(), Error> {
    let reports: Vec<UsageReport> = steps
        .iter()
        .filter_map(|step| match &step.action {
            Action::Usage {
                project,
                mau,
                data_points,
                correction,
            } => Some(UsageReport {
                org: step.org.clone(),
                project: project.clone(),
                period: Period::containing(step.at).label(),
                mau: *mau,
                data_points: *data_points,
                correction: *correction,
            }),
            _ => None,
        })
        .collect();
    // Each step acts as its org, as a single step would.
    let actors: Vec<Actor> = steps
        .iter()
        .map(|step| Actor::new(step.org.clone(), step.name.clone()))
        .collect();
    let ingested = engine.report_usage_by(&reports, &actors).await?;
    let mut facts = ingested.report.facts;
    let mut bounds = ingested.starts.clone();
    bounds.push(facts.len());
    let rest = facts.split_off(bounds[0]);
    emit(out, facts)?;
    let mut rest = rest.into_iter();
    for (i, step) in steps.iter().enumerate() {
        if let Some(Outcome::Refused(why)) = ingested.outcomes.get(i) {
            output::rejected(out, step.at, &step.org, &step.name, why)?;
        }
        let mine: Vec<Fact> = rest.by_ref().take(bounds[i + 1] - bounds[i]).collect();
        emit(out, mine)?;
    }
    Ok(())
}

async fn step_run<W: Write>(
    engine: &Engine,
    gateway: &ScriptedGateway,
    step: &scenario::Step,
    out: &mut Out<'_, W>,
) -> Result<(), Error> {
    let (command, actor) = match &step.action {
        Action::Usage { .. } => return usage_run(engine, &[step], out).await,
        Action::CardDeclined => {
            gateway.decline(&step.org);
            return Ok(());
        }
        Action::CardUpdated => {
            gateway.approve(&step.org);
            let actor = Actor::new(step.org.clone(), step.name.clone());
            (Command::AddPaymentMethod, actor)
        }
        Action::Customer { command, reason } => (
            command.clone(),
            Actor::new(step.org.clone(), reason.clone()),
        ),
        Action::Admin {
            command,
            actor,
            reason,
        } => (command.clone(), Actor::new(actor.clone(), reason.clone())),
    };
    let mut result = engine.command(&step.org, &command, &actor).await;
    if matches!(step.action, Action::CardUpdated) {
        // A new working card: retry what is overdue at once.
        result = match result {
            Ok(mut report) => engine
                .command(&step.org, &Command::RetryOverdue, &actor)
                .await
                .map(|more| {
                    report.extend(more);
                    report
                }),
            Err(e) => Err(e),
        };
    }
    match result {
        Ok(report) => emit(out, report.facts)?,
        Err(e @ engine::Error::Storage(_)) => return Err(e.into()),
        Err(e) => output::rejected(out, step.at, &step.org, &step.name, &e.to_string())?,
    }
    Ok(())
}

async fn check<W: Write>(
    engine: &Engine,
    expect: &Expect,
    out: &mut Out<'_, W>,
) -> Result<bool, Error> {
    let view = engine.view(&expect.org).await?;
    let l = &view.org.lifecycle;
    let mut expected = serde_json::Map::new();
    let mut actual = serde_json::Map::new();
    let mut ok = true;
    if let Some(state) = expect.state {
        ok &= state == l.status;
        expected.insert("state".into(), state.as_str().into());
        actual.insert("state".into(), l.status.as_str().into());
    }
    if let Some(reasons) = &expect.lock_reasons {
        // Compared as sets, whatever order the scenario lists them in.
        let want = reasons
            .iter()
            .fold(crate::domain::LockReasons::default(), |set, r| set.with(*r));
        ok &= want == l.reasons;
        let have: Vec<_> = l.reasons.iter().collect();
        expected.insert(
            "lock_reasons".into(),
            want.iter()
                .map(crate::domain::LockReason::as_str)
                .collect::<Vec<_>>()
                .into(),
        );
        actual.insert(
            "lock_reasons".into(),
            have.iter().map(|r| r.as_str()).collect::<Vec<_>>().into(),
        );
    }
    if !expect.entitlements.is_empty() {
        let e = view.entitlements;
        let have = |key: &str| match key {
            "dashboard" => e.dashboard,
            "exports" => e.exports,
            "ingestion" => e.ingestion,
            "campaigns" => e.campaigns,
            _ => view.upgrade_prompt,
        };
        let mut want = serde_json::Map::new();
        let mut got = serde_json::Map::new();
        for (key, value) in &expect.entitlements {
            ok &= *value == have(key);
            want.insert(key.clone(), (*value).into());
            got.insert(key.clone(), have(key).into());
        }
        expected.insert("entitlements".into(), want.into());
        actual.insert("entitlements".into(), got.into());
    }
    if let Some(lane) = out.record.as_deref_mut().and_then(|r| r.lane(&expect.org)) {
        lane.2.push(html::Expectation {
            at: expect.at,
            org: expect.org.clone(),
            ok,
            text: format!(
                "expected {}, found {}",
                serde_json::Value::Object(expected.clone()),
                serde_json::Value::Object(actual.clone())
            ),
        });
    }
    output::expect(out, expect.at, &expect.org, ok, expected, actual)?;
    Ok(ok)
}

/// Writes facts in effective-time order; ties keep the order they happened in.
fn emit<W: Write>(out: &mut Out<'_, W>, mut facts: Vec<Fact>) -> std::io::Result<()> {
    facts.sort_by_key(Fact::at);
    for fact in &facts {
        output::fact(out.w, fact)?;
    }
    if let Some(record) = out.record.as_deref_mut() {
        for fact in facts {
            if let Some(lane) = record.lane(fact.org()) {
                lane.1.push(fact);
            }
        }
    }
    Ok(())
}

/// The HTML picture of a run (`acctd simulate --html`): a swimlane per org of the
/// recording, its expectations marked (failed ones red).
pub fn page(scenario: &Scenario, record: &Recording, summary: &Summary) -> String {
    let lanes = record
        .lanes
        .iter()
        .map(|(org, facts, expectations)| html::Lane {
            org,
            label: "",
            start: None,
            facts,
            expectations,
        })
        .collect();
    html::render(&html::Page {
        title: format!("acctd simulate: {}", scenario.file.display()),
        notes: vec![format!(
            "{} orgs; {} expectations, {} failed.",
            scenario.orgs.len(),
            summary.expectations,
            summary.failed
        )],
        from: scenario.start,
        until: scenario.until,
        charts: Vec::new(),
        lanes,
        omitted: record.omitted,
    })
}
