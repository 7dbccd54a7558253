//! `acctd bench …`: benchmark helpers against the configured database (issue 8).

use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::bench::{self, Scenario};
use crate::{clock, storage};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Bulk-insert orgs for a benchmark (ids org0000000, …; the database must not hold them),
    /// then ANALYZE.
    Seed {
        /// How many orgs.
        #[arg(long, default_value_t = 100_000)]
        orgs: usize,
        /// grace-expired (every org due: one tick locks them all) or mixed.
        #[arg(long, default_value = "grace-expired")]
        scenario: Scenario,
        /// The instant the scenario is built around (default: now).
        #[arg(long, value_name = "TIME")]
        now: Option<DateTime<Utc>>,
    },
    /// Lock every expired grace period with set-based SQL: the baseline for a sweep.
    RawSweep {
        /// RFC 3339 instant (default: now).
        #[arg(long, value_name = "TIME")]
        until: Option<DateTime<Utc>>,
    },
}

/// Runs a bench command against `db_url` (migrating it first).
///
/// # Errors
/// The database cannot be reached, or a statement failed.
pub async fn run(db_url: &str, command: BenchCommand) -> anyhow::Result<()> {
    let db = storage::connect(db_url, 2).await?;
    storage::migrate(&db).await?;
    match command {
        BenchCommand::Seed {
            orgs,
            scenario,
            now,
        } => {
            let now = clock::truncate(now.unwrap_or_else(Utc::now));
            let (result, took) = bench::time_async(bench::seed(&db, orgs, scenario, now)).await;
            result?;
            let (result, analyzed) = bench::time_async(bench::analyze(&db)).await;
            result?;
            println!(
                "seeded {orgs} orgs ({scenario}) in {}, ANALYZE in {}",
                bench::fmt_secs(took),
                bench::fmt_secs(analyzed)
            );
        }
        BenchCommand::RawSweep { until } => {
            let until = clock::truncate(until.unwrap_or_else(Utc::now));
            let (result, took) = bench::time_async(bench::raw_sweep(&db, until)).await;
            let done = result?;
            println!(
                "raw sweep: {} orgs locked, {} transitions, {} outbox rows in {}",
                done.orgs,
                done.transitions,
                done.outbox,
                bench::fmt_secs(took)
            );
        }
    }
    db.close().await?;
    Ok(())
}
