//! `acctd usage …`: usage reports from the command line and batch files.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Subcommand;

use super::admin::Failure;
use crate::domain::period::Period;
use crate::engine::usage::{Outcome, UsageReport};
use crate::engine::{Actor, Engine};

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Report absolute totals for one project of an org in a period.
    Report {
        /// The org's id.
        org: String,
        /// The project the totals are for (an org's usage is the sum over its projects).
        #[arg(long)]
        project: String,
        /// The period, `YYYY-MM`; default: the current period.
        #[arg(long)]
        period: Option<String>,
        /// Monthly active users in the period so far (an absolute total).
        #[arg(long)]
        mau: u64,
        /// Data points in the period so far (an absolute total).
        #[arg(long, default_value_t = 0)]
        data_points: u64,
        /// Allow totals lower than reported before.
        #[arg(long)]
        correction: bool,
        /// Preview: print the facts this would produce (alerts, an overage lock, emails)
        /// or the refusal, and store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Import reports from a file: JSON Lines (`.jsonl`, one object per line with `org`,
    /// `project`, `period`, `mau`, `data_points`, `correction`) or CSV (`.csv`, header
    /// `org,project,period,mau,data_points[,correction]`).
    Import {
        /// The file: `.jsonl` or `.csv`.
        file: PathBuf,
        /// Lines per batch.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonReport {
    org: String,
    project: String,
    period: String,
    mau: u64,
    #[serde(default)]
    data_points: u64,
    #[serde(default)]
    correction: bool,
}

/// Runs a usage command. Any refused item makes the exit code 2, after the summary.
///
/// # Errors
/// [`Failure::Input`] when items were refused or the file is unreadable.
pub async fn run(
    engine: &Engine,
    command: UsageCommand,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    let actor = Actor::new("cli", "usage report");
    match command {
        UsageCommand::Report {
            org,
            project,
            period,
            mau,
            data_points,
            correction,
            dry_run,
        } => {
            let engine = if dry_run {
                eprintln!("dry run: nothing is written");
                engine.preview()
            } else {
                engine.clone()
            };
            let report = UsageReport {
                org,
                project,
                period: period.unwrap_or_else(|| Period::containing(engine.now()).label()),
                mau,
                data_points,
                correction,
            };
            let ingested = engine.report_usage(&[report], &actor).await?;
            for fact in &ingested.report.facts {
                crate::simulate::output::fact(out, fact).map_err(io)?;
            }
            match ingested.outcomes.first() {
                Some(Outcome::Refused(why)) => Err(Failure::Input(why.clone())),
                _ => writeln!(out, "accepted").map_err(io),
            }
        }
        UsageCommand::Import { file, batch } => {
            import(engine, &file, batch.max(1), &actor, out).await
        }
    }
}

async fn import(
    engine: &Engine,
    file: &std::path::Path,
    batch: usize,
    actor: &Actor,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    let name = file.display().to_string();
    let handle = std::fs::File::open(file)
        .map_err(|e| Failure::Input(format!("{name}: cannot read: {e}")))?;
    let size = handle.metadata().map_or(0, |m| m.len());
    let csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let progress = std::io::stderr().is_terminal() && size > 1 << 20;
    // Lines as bytes: one that is not UTF-8 is refused like any other bad line.
    let mut lines = std::io::BufReader::new(handle).split(b'\n').enumerate();
    let mut header: Option<Vec<String>> = None;
    let mut tally = Tally::default();
    let mut read = 0u64;
    loop {
        let mut items = Vec::with_capacity(batch);
        let mut item_lines = Vec::with_capacity(batch);
        for (index, line) in lines.by_ref() {
            let mut line = line.map_err(io)?;
            read += line.len() as u64 + 1;
            let number = index + 1;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let Ok(line) = String::from_utf8(line) else {
                tally.refuse(&name, number, "not valid UTF-8");
                continue;
            };
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = if csv {
                if header.is_none() {
                    header = Some(line.split(',').map(|h| h.trim().to_owned()).collect());
                    continue;
                }
                parse_csv(header.as_deref().unwrap_or_default(), &line)
            } else {
                serde_json::from_str::<JsonReport>(&line)
                    .map(|r| UsageReport {
                        org: r.org,
                        project: r.project,
                        period: r.period,
                        mau: r.mau,
                        data_points: r.data_points,
                        correction: r.correction,
                    })
                    .map_err(|e| format!("not a usage report: {e}"))
            };
            match parsed {
                Ok(item) => {
                    items.push(item);
                    item_lines.push(number);
                }
                Err(why) => tally.refuse(&name, number, &why),
            }
            if items.len() == batch {
                break;
            }
        }
        if items.is_empty() {
            break;
        }
        let ingested = engine.report_usage(&items, actor).await?;
        for (outcome, line) in ingested.outcomes.into_iter().zip(item_lines) {
            match outcome {
                Outcome::Accepted => tally.accepted += 1,
                Outcome::Refused(why) => tally.refuse(&name, line, &why),
            }
        }
        if progress {
            #[allow(clippy::cast_precision_loss)]
            let percent = read as f64 * 100.0 / size as f64;
            eprint!(
                "\rimported {} lines ({percent:.0}%)",
                tally.accepted + tally.refused
            );
        }
    }
    if progress {
        eprintln!();
    }
    let Tally {
        accepted,
        refused,
        reasons,
        examples,
    } = tally;
    writeln!(out, "{name}: {accepted} accepted, {refused} refused").map_err(io)?;
    for (kind, count) in &reasons {
        writeln!(out, "  {count} refused: {kind}").map_err(io)?;
    }
    let mut examples = examples;
    examples.sort();
    for (_, example) in &examples {
        writeln!(out, "  {example}").map_err(io)?;
    }
    if refused > 0 {
        return Err(Failure::Input(format!(
            "{refused} of {} reports were refused",
            accepted + refused
        )));
    }
    Ok(())
}

/// Counts of an import, with the refusals grouped by kind and the first few in full.
#[derive(Default)]
struct Tally {
    accepted: usize,
    refused: usize,
    reasons: BTreeMap<String, usize>,
    examples: Vec<(usize, String)>,
}

impl Tally {
    fn refuse(&mut self, file: &str, line: usize, why: &str) {
        self.refused += 1;
        let kind = why
            .split(['`', ':', '('])
            .next()
            .unwrap_or(why)
            .trim()
            .to_owned();
        *self.reasons.entry(kind).or_default() += 1;
        if self.examples.len() < 20 {
            self.examples.push((line, format!("{file}:{line}: {why}")));
        }
    }
}

fn parse_csv(header: &[String], line: &str) -> Result<UsageReport, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != header.len() {
        return Err(format!(
            "expected {} fields ({}), found {}",
            header.len(),
            header.join(","),
            fields.len()
        ));
    }
    let get = |key: &str| header.iter().position(|h| h == key).map(|i| fields[i]);
    let need = |key: &str| get(key).ok_or_else(|| format!("the header has no `{key}` column"));
    let number = |key: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("{key} `{value}` is not a whole number"))
    };
    Ok(UsageReport {
        org: need("org")?.to_owned(),
        project: need("project")?.to_owned(),
        period: need("period")?.to_owned(),
        mau: number("mau", need("mau")?)?,
        data_points: get("data_points").map_or(Ok(0), |v| number("data_points", v))?,
        correction: match get("correction") {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => return Err(format!("correction `{other}` is not true or false")),
        },
    })
}
