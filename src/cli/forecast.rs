//! `acctd forecast ORG`: what happens to an org up to a horizon if nothing else does.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::Args;

use super::admin::Failure;
use crate::domain::fact::Fact;
use crate::engine::forecast::horizon;
use crate::engine::{Engine, Forecast, Payments};

#[derive(Debug, Clone, Args)]
pub struct ForecastArgs {
    /// The org's id.
    pub org: String,
    /// Horizon in days from now (default 60, at most 3660).
    #[arg(long, conflicts_with = "until")]
    pub days: Option<u32>,
    /// Horizon as an RFC 3339 instant, e.g. 2027-03-01T00:00:00Z.
    #[arg(long, value_name = "TIME")]
    pub until: Option<DateTime<Utc>>,
    /// What charges do: as-last (the card behaves as it last did: fails while the org is
    /// in grace or locked for an overdue payment, else succeeds), succeed, fail, or
    /// pending (the provider never answers).
    #[arg(long, default_value = "as-last", value_parser = clap::builder::PossibleValuesParser::new(Payments::ALL))]
    pub payments: String,
    /// `table` (readable) or `jsonl` (one fact per line, as `acctd simulate` prints).
    #[arg(long, default_value = "table", value_parser = ["table", "jsonl"])]
    pub format: String,
    /// Also write an HTML page: the org's swimlane (states over time and every fact).
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

/// Runs `acctd forecast` against the configured database.
///
/// # Errors
/// [`Failure::Input`] for an unknown org or a bad horizon.
pub async fn run(engine: &Engine, args: ForecastArgs, out: &mut impl Write) -> Result<(), Failure> {
    let engine = engine.for_org(&args.org).await?;
    let until =
        horizon(engine.now(), args.days, args.until).map_err(|e| Failure::Input(e.to_string()))?;
    let payments: Payments = args.payments.parse().map_err(Failure::Input)?;
    let forecast = engine.forecast(&args.org, until, payments).await?;
    let io = |e: std::io::Error| Failure::Other(e.into());
    if let Some(path) = &args.html {
        std::fs::write(path, page(&forecast))
            .map_err(|e| Failure::Input(format!("cannot write {}: {e}", path.display())))?;
    }
    if args.format == "jsonl" {
        for fact in &forecast.facts {
            crate::simulate::output::fact(out, fact).map_err(io)?;
        }
        return Ok(());
    }
    out.write_all(table(&forecast).as_bytes()).map_err(io)
}

/// The forecast as a readable table, with its assumptions.
pub fn table(forecast: &Forecast) -> String {
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    let org = &forecast.org;
    let mut text = format!(
        "forecast of {} from {} to {} (UTC)\nassumes: no new usage, no admin or customer action, payments {}\n\n",
        org.id,
        time(forecast.from),
        time(forecast.until),
        match forecast.payments {
            Payments::Succeed => "succeed",
            Payments::Fail => "fail",
            Payments::Pending => "stay pending (no outcome reported)",
            Payments::AsLast => "as last",
        }
    );
    if forecast.facts.is_empty() {
        text.push_str("nothing happens\n");
    }
    for fact in &forecast.facts {
        text.push_str(&format!("{}  {}\n", time(fact.at()), describe(fact)));
    }
    let l = &org.lifecycle;
    let reasons: Vec<&str> = l
        .reasons
        .iter()
        .map(crate::domain::LockReason::as_str)
        .collect();
    text.push_str(&format!(
        "\nthen: {}{}, tier {}\n",
        l.status.as_str(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        org.tier
    ));
    text
}

/// The forecast as an HTML page: one swimlane.
pub fn page(forecast: &Forecast) -> String {
    let org = &forecast.org;
    // The state now: the first transition's origin, else the state it stays in.
    let start = forecast
        .facts
        .iter()
        .find_map(|f| match f {
            Fact::Transition { from, .. } => Some(*from),
            _ => None,
        })
        .unwrap_or(Some(org.lifecycle.status));
    crate::report::html::render(&crate::report::html::Page {
        title: format!("acctd forecast: {}", org.id),
        notes: vec![format!(
            "Assumes no new usage, no admin or customer action, payments {}.",
            forecast.payments.as_str()
        )],
        from: forecast.from,
        until: forecast.until,
        charts: Vec::new(),
        lanes: vec![crate::report::html::Lane {
            org: &org.id,
            label: "",
            start,
            facts: &forecast.facts,
            expectations: &[],
        }],
        omitted: 0,
    })
}

/// One fact in words.
pub fn describe(fact: &Fact) -> String {
    match fact {
        Fact::Transition {
            from,
            to,
            cause,
            reasons,
            ..
        } => {
            let reasons: Vec<&str> = reasons
                .iter()
                .map(crate::domain::LockReason::as_str)
                .collect();
            format!(
                "{} → {}{} ({cause})",
                from.map_or("new", |s| s.as_str()),
                to.as_str(),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", reasons.join(", "))
                }
            )
        }
        Fact::Invoice {
            id,
            period,
            lines,
            total,
            ..
        } => {
            let lines: Vec<String> = lines
                .iter()
                .map(|l| format!("{} {}", l.kind.as_str(), l.amount))
                .collect();
            format!("invoice #{id} for {period}: {total} ({})", lines.join(", "))
        }
        Fact::Payment {
            invoice, succeeded, ..
        } => format!(
            "payment of invoice #{invoice} {}",
            if *succeeded { "succeeds" } else { "fails" }
        ),
        Fact::Email { template, to, .. } => format!("email {template} to {}", to.join(", ")),
        Fact::Plan {
            tier,
            addons,
            change,
            ..
        } => format!(
            "plan {change}: tier {tier}, add-ons [{}]",
            addons.join(", ")
        ),
        Fact::Alert {
            threshold,
            usage_percent,
            ..
        } => format!("usage alert {threshold} % (at {usage_percent} %)"),
    }
}
