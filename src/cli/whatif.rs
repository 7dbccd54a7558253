//! `acctd whatif --rules CHANGED.toml`: the fleet forecast under the current rules and
//! under changed ones, side by side, from a database opened read-only.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Duration;
use clap::Args;

use super::admin::Failure;
use crate::clock::SystemClock;
use crate::config::{Layer, Settings};
use crate::domain::fact::Fact;
use crate::engine::forecast::MAX_DAYS;
use crate::engine::whatif::{self, Counts, Difference, Fate, Options, Outcome};
use crate::engine::{Engine, Payments};
use crate::report::html;

#[derive(Debug, Clone, Args)]
pub struct WhatifArgs {
    /// The changed rules: a TOML file with config.toml's keys (e.g. `[lifecycle]
    /// grace_days = 14`), layered over the current settings.
    #[arg(long, value_name = "CHANGED.toml")]
    pub rules: PathBuf,
    /// Horizon in days from now (at most 3660).
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Which orgs: `state=STATE`, `plan=PLAN`, `ids=A,B,C`, combined with `;` (e.g.
    /// `state=grace_period;plan=basic`). Default: every org.
    #[arg(long, value_name = "FILTER")]
    pub orgs: Option<String>,
    /// What charges do: as-last (the card behaves as it last did), succeed, fail, or
    /// pending (the provider never answers).
    #[arg(long, default_value = "as-last", value_parser = clap::builder::PossibleValuesParser::new(Payments::ALL))]
    pub payments: String,
    /// `table` (readable) or `jsonl` (one object per week and rule set, then one per
    /// differing org, then a summary).
    #[arg(long, default_value = "table", value_parser = ["table", "jsonl"])]
    pub format: String,
    /// How many differing orgs to list (all are counted).
    #[arg(long, default_value_t = whatif::DEFAULT_LISTED, value_name = "N")]
    pub list: usize,
    /// Also write an HTML page: weekly charts under both rule sets and swimlanes of the
    /// differing orgs (the first 100, each under both rule sets).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// The changed settings and the keys the file sets (`lifecycle.grace_days = 14`).
///
/// # Errors
/// [`Failure::Input`] naming the file, line and key.
pub fn changed_settings(
    current: &Settings,
    file: &std::path::Path,
) -> Result<(Settings, Vec<String>), Failure> {
    let layer = Layer::read(file).map_err(|e| Failure::Input(e.to_string()))?;
    let mut keys = Vec::new();
    flatten("", &layer.table, &mut keys);
    let settings = current
        .with_overrides(file, &layer.text, layer.table)
        .map_err(|e| Failure::Input(e.to_string()))?;
    Ok((settings, keys))
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&name, inner, out),
            other => out.push(format!("{name} = {other}")),
        }
    }
}

/// Runs `acctd whatif`: opens `settings.database.url` read-only and never writes it.
///
/// # Errors
/// [`Failure::Input`] for bad rules, filter or horizon; [`Failure::Other`] otherwise.
pub async fn run(
    settings: &Settings,
    args: WhatifArgs,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let (changed, keys) = changed_settings(settings, &args.rules)?;
    if args.days > MAX_DAYS {
        return Err(Failure::Input(format!(
            "--days: {} is above the limit of {MAX_DAYS}",
            args.days
        )));
    }
    let selection = match &args.orgs {
        Some(text) => {
            whatif::parse_selection(text).map_err(|e| Failure::Input(format!("--orgs: {e}")))?
        }
        None => crate::storage::org::Selection::default(),
    };
    let payments: Payments = args.payments.parse().map_err(Failure::Input)?;
    let db = crate::storage::connect_read_only(&settings.database.url, 2)
        .await
        .map_err(|e| Failure::Input(e.to_string()))?;
    let engine = Engine::new(
        db,
        settings.rules(),
        Arc::new(Payments::Pending),
        Arc::new(SystemClock),
    );
    let now = engine.now();
    let mut options = Options::new(now + Duration::days(i64::from(args.days)));
    options.selection = selection;
    options.payments = payments;
    options.listed = args.list;
    if args.html.is_some() {
        // Two lanes per org: the current rules' and the changed rules'.
        options.lanes = (html::MAX_LANES / 2).min(args.list);
    }
    let outcome = engine.whatif(&changed.rules(), &options).await?;
    engine.db().clone().close().await.ok();
    let io = |e: std::io::Error| Failure::Other(e.into());
    if args.format == "jsonl" {
        jsonl(&outcome, out).map_err(io)?;
    } else {
        out.write_all(table(&outcome, &keys, payments).as_bytes())
            .map_err(io)?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, page(&outcome, &keys, payments))
            .map_err(|e| Failure::Input(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

const RULES: [&str; 2] = ["current", "changed"];

fn fate(f: Fate) -> String {
    let reasons: Vec<&str> = f.1.iter().map(crate::domain::LockReason::as_str).collect();
    if reasons.is_empty() {
        f.0.as_str().to_owned()
    } else {
        format!("{} ({})", f.0.as_str(), reasons.join(", "))
    }
}

fn first(fact: Option<&Fact>) -> String {
    fact.map_or_else(
        || "(nothing more)".to_owned(),
        |f| {
            format!(
                "{}  {}",
                f.at().format("%Y-%m-%d %H:%M"),
                super::forecast::describe(f)
            )
        },
    )
}

/// The outcome as a readable report.
pub fn table(outcome: &Outcome, keys: &[String], payments: Payments) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    let _ = writeln!(
        text,
        "what-if of {} orgs from {} to {} (UTC)",
        outcome.orgs,
        time(outcome.from),
        time(outcome.until)
    );
    let _ = writeln!(text, "changed rules: {}", keys.join("; "));
    let _ = writeln!(
        text,
        "assumes: no new usage, no admin or customer action, payments {}\n",
        payments.as_str()
    );
    let _ = writeln!(
        text,
        "{:<9} {:<8} {:>7} {:>7} {:>8} {:>8} {:>14} {:>7}",
        "week", "rules", "grace", "locked", "canceled", "invoices", "billed", "emails"
    );
    let mut row = |week: &str, rules: &str, c: &Counts| {
        let _ = writeln!(
            text,
            "{week:<9} {rules:<8} {:>7} {:>7} {:>8} {:>8} {:>14} {:>7}",
            c.entered_grace,
            c.locked,
            c.canceled,
            c.invoices,
            format!("{:.2}", c.billed),
            c.emails
        );
    };
    for (week, counts) in &outcome.weeks {
        for (rules, c) in RULES.iter().zip(counts) {
            row(week, rules, c);
        }
    }
    let totals = outcome.totals();
    for (rules, c) in RULES.iter().zip(&totals) {
        row("total", rules, c);
    }
    let _ = writeln!(
        text,
        "\n{} orgs' fate differs{}",
        outcome.differing,
        if outcome.differing > outcome.differences.len() as u64 {
            format!(" (the first {} by id listed)", outcome.differences.len())
        } else {
            String::new()
        }
    );
    for d in &outcome.differences {
        let _ = writeln!(
            text,
            "{}: {} -> {}\n  current: {}\n  changed: {}",
            d.org,
            fate(d.fate_current),
            fate(d.fate_changed),
            first(d.current.as_ref()),
            first(d.changed.as_ref())
        );
    }
    text
}

/// The outcome as JSON Lines: a `week` object per week and rule set, a `difference` per
/// listed org, then a `summary`.
///
/// # Errors
/// Writing fails.
pub fn jsonl(outcome: &Outcome, out: &mut impl Write) -> std::io::Result<()> {
    use serde_json::json;
    let line = |out: &mut dyn Write, v: serde_json::Value| writeln!(out, "{v}");
    let counts = |c: &Counts| {
        json!({
            "entered_grace": c.entered_grace,
            "locked": c.locked,
            "canceled": c.canceled,
            "invoices": c.invoices,
            "billed": format!("{:.2}", c.billed),
            "emails": c.emails,
        })
    };
    for (week, pair) in &outcome.weeks {
        for (rules, c) in RULES.iter().zip(pair) {
            let mut v = json!({"type": "week", "week": week, "rules": rules});
            if let (Some(map), serde_json::Value::Object(more)) = (v.as_object_mut(), counts(c)) {
                map.extend(more);
            }
            line(out, v)?;
        }
    }
    for d in &outcome.differences {
        line(out, difference(d))?;
    }
    let totals = outcome.totals();
    line(
        out,
        json!({
            "type": "summary",
            "from": crate::domain::plan::rfc3339(outcome.from),
            "until": crate::domain::plan::rfc3339(outcome.until),
            "orgs": outcome.orgs,
            "differing": outcome.differing,
            "listed": outcome.differences.len(),
            "current": counts(&totals[0]),
            "changed": counts(&totals[1]),
        }),
    )
}

fn difference(d: &Difference) -> serde_json::Value {
    serde_json::json!({
        "type": "difference",
        "org": d.org,
        "final_current": fate(d.fate_current),
        "final_changed": fate(d.fate_changed),
        "first_current": d.current.as_ref().map(Fact::to_json),
        "first_changed": d.changed.as_ref().map(Fact::to_json),
    })
}

/// The HTML page: weekly charts, then a pair of swimlanes per differing org.
pub fn page(outcome: &Outcome, keys: &[String], payments: Payments) -> String {
    let labels: Vec<String> = outcome.weeks.keys().cloned().collect();
    #[allow(clippy::cast_precision_loss)]
    let chart = |title: &str, f: &dyn Fn(&Counts) -> f64| html::Chart {
        title: title.to_owned(),
        labels: labels.clone(),
        series: RULES
            .iter()
            .enumerate()
            .map(|(i, rules)| {
                (
                    format!("{rules} rules"),
                    outcome.weeks.values().map(|pair| f(&pair[i])).collect(),
                )
            })
            .collect(),
    };
    #[allow(clippy::cast_precision_loss)]
    let charts = vec![
        chart("orgs entering grace", &|c| c.entered_grace as f64),
        chart("orgs locked", &|c| c.locked as f64),
        chart("orgs canceled", &|c| c.canceled as f64),
        chart("invoices issued", &|c| c.invoices as f64),
        chart("amount billed", &|c| {
            c.billed.to_string().parse::<f64>().unwrap_or(0.0)
        }),
        chart("emails sent", &|c| c.emails as f64),
    ];
    let mut lanes = Vec::new();
    let mut drawn = 0_u64;
    for d in &outcome.differences {
        if let Some((a, b)) = &d.facts {
            drawn += 1;
            for (label, facts, fate) in [
                ("current rules", a, d.fate_current),
                ("changed rules", b, d.fate_changed),
            ] {
                lanes.push(html::Lane {
                    org: &d.org,
                    label,
                    start: start_of(facts, fate),
                    facts,
                    expectations: &[],
                });
            }
        }
    }
    let totals = outcome.totals();
    html::render(&html::Page {
        title: format!("acctd what-if: {} orgs", outcome.orgs),
        notes: vec![
            format!("Changed rules: {}", keys.join("; ")),
            format!(
                "Assumes no new usage, no admin or customer action, payments {}.",
                payments.as_str()
            ),
            format!(
                "Billed: {:.2} under the current rules, {:.2} under the changed rules. {} orgs' fate differs; each is drawn under both rule sets below.",
                totals[0].billed, totals[1].billed, outcome.differing
            ),
        ],
        from: outcome.from,
        until: outcome.until,
        charts,
        lanes,
        omitted: outcome.differing.saturating_sub(drawn),
    })
}

/// A differing org's state at the start: its first transition's origin, else its fate
/// (nothing moved it).
fn start_of(facts: &[Fact], fate: Fate) -> Option<crate::domain::Status> {
    facts
        .iter()
        .find_map(|f| match f {
            Fact::Transition { from, .. } => Some(*from),
            _ => None,
        })
        .unwrap_or(Some(fate.0))
}
