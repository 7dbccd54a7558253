//! The command line (clap derive). Handlers live in `main.rs`'s dispatch and in
//! [`crate::cli::admin`].

pub mod admin;
pub mod forecast;
pub mod outbox;
pub mod remote;
pub mod render;
pub mod usage;
pub mod whatif;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

/// The help heading of the options every subcommand takes, listed apart from its own.
pub const GLOBAL: &str = "Global options";

/// acctd: the account lifecycle daemon.
#[derive(Debug, Parser)]
#[command(name = "acctd", version, about)]
pub struct Cli {
    /// Settings file; a missing ./config.toml means built-in defaults.
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Database URL, overriding `database.url` (<sqlite://FILE?mode=rwc> or postgres://…).
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    pub db: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: catch up on due deadlines, then sweep on a schedule; serve the
    /// admin HTTP API.
    Serve {
        /// Address of the admin API, overriding `api.listen` (e.g. 127.0.0.1:0).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Run a time-travel scenario and print JSON Lines (exit 1 if an expectation fails).
    Simulate {
        /// The scenario file (TOML; the format is docs/scenarios.md).
        scenario: PathBuf,
        /// Also write an HTML page of the run: a swimlane per org (the first 200).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Process everything due up to TIME (default: now) once, then exit.
    Tick {
        /// Process deadlines due up to this RFC 3339 instant, e.g. 2026-04-01T00:00:00Z
        /// (default: now). A time later than now is refused without --force.
        #[arg(long, value_name = "TIME")]
        until: Option<DateTime<Utc>>,
        /// Allow an --until later than now: fires real deadlines before they are due.
        #[arg(long)]
        force: bool,
        /// Print every fact as JSON Lines on stdout (the summary goes to stderr).
        #[arg(long)]
        json: bool,
        /// For a large backlog on SQLite (after long downtime): sweep the table in storage
        /// order with the due index dropped for the pass and built again at its end. Stop
        /// `acctd serve` first; rerun it if it is interrupted.
        #[arg(long)]
        catch_up: bool,
    },
    /// Validate the settings and print them.
    CheckConfig,
    /// Manual operations and inspection, against the configured database or, with
    /// --url, through the admin API.
    Admin {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// What happens to an org up to a horizon (default 60 days) if nothing else does:
    /// transitions, reminders, invoices and charges, cancellation. Writes nothing.
    Forecast(forecast::ForecastArgs),
    /// The fleet up to a horizon (default 90 days) under the current rules and under
    /// changed ones, side by side: weekly counts and the orgs whose fate differs. Opens
    /// the database read-only.
    Whatif(whatif::WhatifArgs),
    /// Report usage: one report, or a batch file (JSON Lines or CSV).
    #[command(subcommand)]
    Usage(usage::UsageCommand),
}
