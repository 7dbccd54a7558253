//! `acctd admin …`: manual operations (SPEC section 10) and inspection.

use std::io::Write;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};

use crate::api::dto::{InvoiceDto, OrgDto, OrgSummary, TransitionDto};
use crate::domain::{LockReason, Status};
use crate::engine::PlanChange;
use crate::engine::{self, Actor, Command, Engine, Report, Signup};
use crate::storage::{self, org::Filter};

/// Every manual operation names an actor and a reason, stored in the audit trail.
#[derive(Debug, Clone, Args)]
pub struct Who {
    /// Who does this (an operator's name or email), stored in the audit trail.
    #[arg(long)]
    pub actor: String,
    /// Why, stored in the audit trail.
    #[arg(long)]
    pub reason: String,
    /// Preview: print the facts this would produce (or the refusal) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl Who {
    fn actor(&self) -> Actor {
        Actor::new(self.actor.clone(), self.reason.clone())
    }

    /// The engine, or its preview with `--dry-run` (said on stderr).
    fn engine(&self, engine: &Engine) -> Engine {
        if self.dry_run {
            eprintln!("dry run: nothing is written");
            engine.preview()
        } else {
            engine.clone()
        }
    }
}

/// `--to`, `--state`: one of the lifecycle states, listed in `--help`.
fn status() -> impl TypedValueParser<Value = Status> {
    PossibleValuesParser::new(Status::ALL.map(Status::as_str)).try_map(|s| s.parse::<Status>())
}

/// `--reason` of `orgs`, `--lock-reason`: one of the lock reasons, listed in `--help`.
fn lock_reason() -> impl TypedValueParser<Value = LockReason> {
    PossibleValuesParser::new(LockReason::ALL.map(LockReason::as_str))
        .try_map(|s| s.parse::<LockReason>())
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Sign an org up (a 30-day trial, or --active for an existing subscriber).
    Signup {
        /// The new org's id, e.g. acme.
        org: String,
        /// Plan: a `[plans.NAME]` of the config (built in: basic, essentials).
        #[arg(long, default_value = "basic")]
        plan: String,
        /// MAU tier, one of `billing.tiers` (built in: 5000, 10000, 15000, 20000, 25000,
        /// 30000, 40000, 50000, 75000, 100000).
        #[arg(long, default_value_t = 5_000)]
        tier: u32,
        /// Account admin email (repeat for several).
        #[arg(long = "admin", required = true, value_name = "EMAIL")]
        admins: Vec<String>,
        /// Where invoices go (default: the first --admin).
        #[arg(long, value_name = "EMAIL")]
        billing_email: Option<String>,
        /// A card is on file.
        #[arg(long)]
        payment_method: bool,
        /// An add-on of the `[addons]` catalog of the config (repeat for several).
        #[arg(long = "addon", value_name = "ADDON")]
        addons: Vec<String>,
        /// Import as an active subscriber whose current period is paid.
        #[arg(long)]
        active: bool,
        #[command(flatten)]
        who: Who,
    },
    /// Show an org: state, reasons, deadlines, entitlements, legal moves, recent transitions.
    Show {
        /// The org's id.
        org: String,
        /// Print JSON instead of text (the same with or without --url).
        #[arg(long)]
        json: bool,
    },
    /// List orgs, optionally by state and lock reason.
    Orgs {
        /// Only orgs in this state.
        #[arg(long, value_parser = status())]
        state: Option<Status>,
        /// Only locked orgs with this lock reason.
        #[arg(long, value_parser = lock_reason())]
        reason: Option<LockReason>,
        /// At most this many orgs.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Notification delivery: list, retry or discard outbox messages.
    #[command(subcommand)]
    Outbox(super::outbox::OutboxCommand),
    /// Counts by state and reason, the due backlog and the outbox backlog.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List an org's invoices with their lines.
    Invoices {
        /// The org's id.
        org: String,
    },
    // The subcommands that run a command against one org.
    #[command(flatten)]
    Command(OrgCommand),
    /// Record the payment provider's outcome for an invoice.
    Payment {
        /// The invoice id (`admin invoices ORG` lists them).
        invoice: i64,
        /// What the payment provider reported.
        #[arg(long, value_parser = ["succeeded", "failed"])]
        outcome: String,
        #[command(flatten)]
        who: Who,
    },
}

/// The subcommands that run a [`Command`] against one org: one per row of the command
/// table ([`crate::domain::plan::KINDS`]) but `retry_overdue`, under the row's name in
/// kebab-case.
#[derive(Clone, Debug, Subcommand)]
pub enum OrgCommand {
    /// Lock an org (reason `manual`).
    Lock {
        /// The org's id.
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Drop one lock reason (default `manual`).
    Unlock {
        /// The org's id.
        org: String,
        /// The lock reason to drop.
        #[arg(long, default_value = "manual", value_parser = lock_reason())]
        lock_reason: LockReason,
        #[command(flatten)]
        who: Who,
    },
    /// Move the trial deadline N days later.
    ExtendTrial {
        /// The org's id.
        org: String,
        /// Days to add.
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        who: Who,
    },
    /// End the trial now.
    EndTrial {
        /// The org's id.
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Move the grace deadline N days later.
    ExtendGrace {
        /// The org's id.
        org: String,
        /// Days to add.
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        who: Who,
    },
    /// Move the auto-cancel deadline N days later.
    PostponeCancel {
        /// The org's id.
        org: String,
        /// Days to add.
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        who: Who,
    },
    /// Settle every overdue invoice out of band.
    MarkPaid {
        /// The org's id.
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Cancel an org; requires --confirm DELETE.
    Cancel {
        /// The org's id.
        org: String,
        /// Must be DELETE: canceling purges the org's usage data and cannot be undone.
        #[arg(long)]
        confirm: String,
        #[command(flatten)]
        who: Who,
    },
    /// Move an org to a named state, accepted only along a legal edge (`admin show`
    /// lists the legal moves).
    Transition {
        /// The org's id.
        org: String,
        /// The state to move to.
        #[arg(long, value_parser = status())]
        to: Status,
        #[command(flatten)]
        who: Who,
    },
    /// Record that a card was added.
    AddPaymentMethod {
        /// The org's id.
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Upgrade to a higher tier now (prorated charge; takes effect only if paid).
    Upgrade {
        /// The org's id.
        org: String,
        /// The new MAU tier, one of `billing.tiers`, above the current one.
        #[arg(long)]
        tier: u32,
        #[command(flatten)]
        who: Who,
    },
    /// Downgrade to a lower tier (immediate in trial, otherwise at the next 1st).
    Downgrade {
        /// The org's id.
        org: String,
        /// The new MAU tier, one of `billing.tiers`, below the current one.
        #[arg(long)]
        tier: u32,
        #[command(flatten)]
        who: Who,
    },
    /// Cancel a scheduled downgrade.
    CancelDowngrade {
        /// The org's id.
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Include an add-on now (a paid one is charged prorated and added only if paid).
    AddAddon {
        /// The org's id.
        org: String,
        /// An add-on of the `[addons]` catalog of the config.
        #[arg(long)]
        addon: String,
        #[command(flatten)]
        who: Who,
    },
    /// Remove an add-on (immediate in trial, otherwise at the next 1st).
    RemoveAddon {
        /// The org's id.
        org: String,
        /// The add-on to remove.
        #[arg(long)]
        addon: String,
        #[command(flatten)]
        who: Who,
    },
    /// Cancel a scheduled add-on removal.
    CancelAddonRemoval {
        /// The org's id.
        org: String,
        /// The add-on to keep.
        #[arg(long)]
        addon: String,
        #[command(flatten)]
        who: Who,
    },
}

impl OrgCommand {
    /// The org, [`Command`] and actor: the one mapping from subcommands to commands, for
    /// the local and the remote CLI alike.
    pub fn into_command(self) -> (String, Command, Who) {
        use OrgCommand as O;
        use PlanChange as P;
        match self {
            O::Lock { org, who } => (org, Command::Lock, who),
            O::Unlock {
                org,
                lock_reason,
                who,
            } => (
                org,
                Command::Unlock {
                    reason: lock_reason,
                },
                who,
            ),
            O::ExtendTrial { org, days, who } => (org, Command::ExtendTrial { days }, who),
            O::EndTrial { org, who } => (org, Command::EndTrial, who),
            O::ExtendGrace { org, days, who } => (org, Command::ExtendGrace { days }, who),
            O::PostponeCancel { org, days, who } => (org, Command::PostponeCancel { days }, who),
            O::MarkPaid { org, who } => (org, Command::MarkPaid, who),
            O::Cancel { org, confirm, who } => (org, Command::Cancel { confirm }, who),
            O::Transition { org, to, who } => (org, Command::Transition { to }, who),
            O::AddPaymentMethod { org, who } => (org, Command::AddPaymentMethod, who),
            O::Upgrade { org, tier, who } => (org, Command::Plan(P::Upgrade { tier }), who),
            O::Downgrade { org, tier, who } => (org, Command::Plan(P::Downgrade { tier }), who),
            O::CancelDowngrade { org, who } => (org, Command::Plan(P::CancelDowngrade), who),
            O::AddAddon { org, addon, who } => (org, Command::Plan(P::AddAddon { addon }), who),
            O::RemoveAddon { org, addon, who } => {
                (org, Command::Plan(P::RemoveAddon { addon }), who)
            }
            O::CancelAddonRemoval { org, addon, who } => {
                (org, Command::Plan(P::CancelAddonRemoval { addon }), who)
            }
        }
    }
}

/// How an admin command ended, for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad input or a refused move: exit 2.
    #[error("{0}")]
    Input(String),
    /// Anything else: exit 1.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<engine::Error> for Failure {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::Storage(e) => Failure::Other(e.into()),
            engine::Error::Price(e) => Failure::Input(crate::config::price_error_message(&e)),
            other => Failure::Input(other.to_string()),
        }
    }
}

impl From<storage::Error> for Failure {
    fn from(e: storage::Error) -> Self {
        Failure::Other(e.into())
    }
}

/// Runs one admin command and prints its result to `out`.
///
/// # Errors
/// [`Failure::Input`] for bad input or a refused move, [`Failure::Other`] otherwise.
pub async fn run(
    engine: &Engine,
    command: AdminCommand,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    match command {
        AdminCommand::Command(command) => {
            let (org, command, who) = command.into_command();
            let report = who
                .engine(engine)
                .command(&org, &command, &who.actor())
                .await?;
            print_report(out, &report).map_err(io)
        }
        AdminCommand::Signup {
            org,
            plan,
            tier,
            admins,
            billing_email,
            payment_method,
            addons,
            active,
            who,
        } => {
            let signup = Signup {
                id: org,
                plan,
                tier,
                admins,
                billing_email,
                payment_method,
                addons,
                active,
            };
            let report = who.engine(engine).signup(signup, &who.actor()).await?;
            print_report(out, &report).map_err(io)
        }
        AdminCommand::Show { org, json } => show(engine, &org, json, out).await,
        AdminCommand::Orgs {
            state,
            reason,
            limit,
        } => {
            let filter = Filter {
                status: state,
                reason,
                after: None,
                limit,
                ..Filter::default()
            };
            let rows = storage::org::list(engine.db(), &filter)
                .await?
                .iter()
                .map(|o| json(&OrgSummary::from(o)))
                .collect::<Result<Vec<_>, _>>()?;
            print_or_say(out, super::render::orgs(&rows), "no orgs match")
        }
        AdminCommand::Stats { json } => stats(engine, json, out).await,
        AdminCommand::Outbox(command) => super::outbox::run(engine, command, out).await,
        AdminCommand::Invoices { org } => {
            if engine.org(&org).await?.is_none() {
                return Err(engine::Error::UnknownOrg(org).into());
            }
            let rows = storage::billing::list(engine.db(), &org)
                .await?
                .iter()
                .map(|i| json(&InvoiceDto::from(i)))
                .collect::<Result<Vec<_>, _>>()?;
            print_or_say(
                out,
                super::render::invoices(&rows),
                &format!("org `{org}` has no invoices yet"),
            )
        }
        AdminCommand::Payment {
            invoice,
            outcome,
            who,
        } => {
            let report = who
                .engine(engine)
                .payment_outcome(invoice, outcome == "succeeded", &who.actor())
                .await?;
            print_report(out, &report).map_err(io)
        }
    }
}

/// Prints what a command did, one JSON line per fact (the simulator's format).
fn print_report(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    if report.facts.is_empty() {
        writeln!(out, "nothing changed")?;
    }
    for fact in &report.facts {
        crate::simulate::output::fact(out, fact)?;
    }
    Ok(())
}

async fn show(
    engine: &Engine,
    id: &str,
    as_json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    let view = engine.view(id).await?;
    let recent = storage::audit::recent_transitions(engine.db(), id, 10).await?;
    // The API's JSON (GET /v1/orgs/{id} with its transitions), so that `admin show` and
    // `admin --url … show` print the same.
    let mut value = json(&OrgDto::from(&view))?;
    value["transitions"] = json(&recent.iter().map(TransitionDto::from).collect::<Vec<_>>())?;
    if as_json {
        return writeln!(out, "{value:#}").map_err(io);
    }
    out.write_all(super::render::show(&value).as_bytes())
        .map_err(io)
}

/// A DTO as JSON, for the renderers shared with `--url`.
fn json(dto: &impl serde::Serialize) -> Result<serde_json::Value, Failure> {
    serde_json::to_value(dto).map_err(|e| Failure::Other(e.into()))
}

/// Prints `text`, or, when there is nothing to print, says `empty` on stderr (stdout
/// stays empty for scripts).
///
/// # Errors
/// Writing to `out` failed.
pub fn print_or_say(
    out: &mut impl Write,
    text: Option<String>,
    empty: &str,
) -> Result<(), Failure> {
    if let Some(text) = text {
        out.write_all(text.as_bytes())
            .map_err(|e| Failure::Other(e.into()))
    } else {
        eprintln!("{empty}");
        Ok(())
    }
}

async fn stats(engine: &Engine, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    let db = engine.db();
    let counts = storage::org::counts(db, engine.now()).await?;
    let transitions = storage::audit::count_transitions(db).await?;
    let outbox = storage::audit::outbox_backlog(db).await?;
    if json {
        let value = serde_json::json!({
            "orgs": counts.orgs,
            "by_state": counts.by_state.iter().map(|(s, n)| (s.as_str().to_owned(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
            "by_reason": counts.by_reason.iter().map(|(r, n)| (r.as_str().to_owned(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
            "transitions": transitions,
            "due_backlog": counts.due,
            "outbox_backlog": outbox,
        });
        return writeln!(out, "{value}").map_err(io);
    }
    let mut text = format!("orgs            {}\n", counts.orgs);
    for (s, n) in &counts.by_state {
        text.push_str(&format!("  {:<14}{n}\n", s.as_str()));
    }
    text.push_str("locked by reason\n");
    for (r, n) in &counts.by_reason {
        text.push_str(&format!("  {:<16}{n}\n", r.as_str()));
    }
    text.push_str(&format!(
        "transitions     {transitions}\ndue backlog     {}\noutbox backlog  {outbox}\n",
        counts.due
    ));
    out.write_all(text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::AdminCommand;
    use crate::cli::{Cli, Command as Cli_};
    use crate::domain::plan::KINDS;

    /// Each row of the command table but the engine's own is a subcommand under its name
    /// in kebab-case, taking its fields as options, and runs the command of that row.
    #[test]
    fn every_subcommand_runs_the_command_of_its_name() {
        for kind in KINDS.iter().filter(|k| k.name != "retry_overdue") {
            let mut args: Vec<String> = ["acctd", "admin", &kind.name.replace('_', "-")]
                .into_iter()
                .chain(["acme", "--actor", "ops", "--reason", "asked"])
                .map(str::to_owned)
                .collect();
            for field in kind.fields {
                let value = match *field {
                    "days" => "7",
                    "to" => "locked",
                    "lock_reason" => "manual",
                    "tier" => "10000",
                    "confirm" => "DELETE",
                    _ => "journeys",
                };
                args.extend([format!("--{}", field.replace('_', "-")), value.to_owned()]);
            }
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let Cli_::Admin {
                command: AdminCommand::Command(command),
                ..
            } = cli.command
            else {
                panic!("{args:?} is not a command subcommand");
            };
            let (org, command, who) = command.into_command();
            assert_eq!((org.as_str(), who.reason.as_str()), ("acme", "asked"));
            assert_eq!(command.name(), kind.name);
            assert_eq!(command.fields().len(), kind.fields.len(), "{}", kind.name);
        }
    }
}
