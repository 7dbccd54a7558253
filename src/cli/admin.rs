//! `acctd admin …`: manual operations (SPEC section 10) and inspection.

use std::io::Write;

use clap::{Args, Subcommand};

use crate::domain::{LockReason, Status};
use crate::engine::PlanChange;
use crate::engine::{self, Actor, Command, Engine, Report, Signup};
use crate::storage::{self, org::Filter};

/// Every manual operation names an actor and a reason, stored in the audit trail.
#[derive(Debug, Clone, Args)]
pub struct Who {
    /// Who does this (an operator's name or email).
    #[arg(long)]
    pub actor: String,
    /// Why: stored in the audit trail.
    #[arg(long)]
    pub reason: String,
}

impl Who {
    fn actor(&self) -> Actor {
        Actor::new(self.actor.clone(), self.reason.clone())
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Sign an org up (a 30-day trial, or --active for an existing subscriber).
    Signup {
        org: String,
        #[arg(long, default_value = "basic")]
        plan: String,
        #[arg(long, default_value_t = 5_000)]
        tier: u32,
        /// Account admin email (repeat for several).
        #[arg(long = "admin", required = true)]
        admins: Vec<String>,
        #[arg(long)]
        billing_email: Option<String>,
        /// A card is on file.
        #[arg(long)]
        payment_method: bool,
        #[arg(long = "addon")]
        addons: Vec<String>,
        /// Import as an active subscriber whose current period is paid.
        #[arg(long)]
        active: bool,
        #[command(flatten)]
        who: Who,
    },
    /// Show an org: state, reasons, deadlines, entitlements, legal moves, recent transitions.
    Show {
        org: String,
        #[arg(long)]
        json: bool,
    },
    /// List orgs, optionally by state and lock reason.
    Orgs {
        #[arg(long)]
        state: Option<Status>,
        #[arg(long)]
        reason: Option<LockReason>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Notification delivery: list, retry or discard outbox messages.
    #[command(subcommand)]
    Outbox(super::outbox::OutboxCommand),
    /// Counts by state and reason, the due backlog and the outbox backlog.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// List an org's invoices with their lines.
    Invoices { org: String },
    /// Lock an org (reason `manual`).
    Lock {
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Drop one lock reason (default `manual`).
    Unlock {
        org: String,
        #[arg(long, default_value = "manual")]
        lock_reason: LockReason,
        #[command(flatten)]
        who: Who,
    },
    /// Move the trial deadline N days later.
    ExtendTrial {
        org: String,
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        who: Who,
    },
    /// End the trial now.
    EndTrial {
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Move the grace deadline N days later.
    ExtendGrace {
        org: String,
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        who: Who,
    },
    /// Move the auto-cancel deadline N days later.
    PostponeCancel {
        org: String,
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        who: Who,
    },
    /// Settle every overdue invoice out of band.
    MarkPaid {
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Cancel an org; requires --confirm DELETE.
    Cancel {
        org: String,
        #[arg(long)]
        confirm: String,
        #[command(flatten)]
        who: Who,
    },
    /// Move an org to a named state, accepted only along a legal edge.
    Transition {
        org: String,
        #[arg(long)]
        to: Status,
        #[command(flatten)]
        who: Who,
    },
    /// Record that a card was added.
    AddPaymentMethod {
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Upgrade to a higher tier now (prorated charge; takes effect only if paid).
    Upgrade {
        org: String,
        #[arg(long)]
        tier: u32,
        #[command(flatten)]
        who: Who,
    },
    /// Downgrade to a lower tier (immediate in trial, otherwise at the next 1st).
    Downgrade {
        org: String,
        #[arg(long)]
        tier: u32,
        #[command(flatten)]
        who: Who,
    },
    /// Cancel a scheduled downgrade.
    CancelDowngrade {
        org: String,
        #[command(flatten)]
        who: Who,
    },
    /// Include an add-on now (a paid one is charged prorated and added only if paid).
    AddAddon {
        org: String,
        #[arg(long)]
        addon: String,
        #[command(flatten)]
        who: Who,
    },
    /// Remove an add-on (immediate in trial, otherwise at the next 1st).
    RemoveAddon {
        org: String,
        #[arg(long)]
        addon: String,
        #[command(flatten)]
        who: Who,
    },
    /// Cancel a scheduled add-on removal.
    CancelAddonRemoval {
        org: String,
        #[arg(long)]
        addon: String,
        #[command(flatten)]
        who: Who,
    },
    /// Record the payment provider's outcome for an invoice.
    Payment {
        invoice: i64,
        #[arg(long, value_parser = ["succeeded", "failed"])]
        outcome: String,
        #[command(flatten)]
        who: Who,
    },
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
    let (org, command, actor) = match command {
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
            let report = engine.signup(signup, &who.actor()).await?;
            return print_report(out, &report).map_err(io);
        }
        AdminCommand::Show { org, json } => return show(engine, &org, json, out).await,
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
            };
            for o in storage::org::list(engine.db(), &filter).await? {
                let l = &o.lifecycle;
                writeln!(
                    out,
                    "{:<24} {:<13} {:<28} next due {}",
                    o.id,
                    l.status.as_str(),
                    if l.reasons.is_empty() {
                        "-".to_owned()
                    } else {
                        l.reasons.to_csv()
                    },
                    l.next_due_at().map_or_else(|| "-".to_owned(), time)
                )
                .map_err(io)?;
            }
            return Ok(());
        }
        AdminCommand::Stats { json } => return stats(engine, json, out).await,
        AdminCommand::Outbox(command) => return super::outbox::run(engine, command, out).await,
        AdminCommand::Invoices { org } => {
            if engine.org(&org).await?.is_none() {
                return Err(engine::Error::UnknownOrg(org).into());
            }
            for inv in storage::billing::list(engine.db(), &org).await? {
                writeln!(
                    out,
                    "invoice {} {} {} {} {} {} issued {}",
                    inv.id,
                    inv.period,
                    inv.kind.as_str(),
                    inv.status.as_str(),
                    inv.currency,
                    inv.total,
                    time(inv.issued_at)
                )
                .map_err(io)?;
                for line in &inv.lines {
                    writeln!(
                        out,
                        "  {:<14} {:>12}  {}",
                        line.kind.as_str(),
                        line.amount,
                        line.description
                    )
                    .map_err(io)?;
                }
            }
            return Ok(());
        }
        AdminCommand::Payment {
            invoice,
            outcome,
            who,
        } => {
            let report = engine
                .payment_outcome(invoice, outcome == "succeeded", &who.actor())
                .await?;
            return print_report(out, &report).map_err(io);
        }
        AdminCommand::Lock { org, who } => (org, Command::Lock, who),
        AdminCommand::Unlock {
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
        AdminCommand::ExtendTrial { org, days, who } => (org, Command::ExtendTrial { days }, who),
        AdminCommand::EndTrial { org, who } => (org, Command::EndTrial, who),
        AdminCommand::ExtendGrace { org, days, who } => (org, Command::ExtendGrace { days }, who),
        AdminCommand::PostponeCancel { org, days, who } => {
            (org, Command::PostponeCancel { days }, who)
        }
        AdminCommand::MarkPaid { org, who } => (org, Command::MarkPaid, who),
        AdminCommand::Cancel { org, confirm, who } => (org, Command::Cancel { confirm }, who),
        AdminCommand::Transition { org, to, who } => (org, Command::Transition { to }, who),
        AdminCommand::AddPaymentMethod { org, who } => (org, Command::AddPaymentMethod, who),
        AdminCommand::Upgrade { org, tier, who } => {
            (org, Command::Plan(PlanChange::Upgrade { tier }), who)
        }
        AdminCommand::Downgrade { org, tier, who } => {
            (org, Command::Plan(PlanChange::Downgrade { tier }), who)
        }
        AdminCommand::CancelDowngrade { org, who } => {
            (org, Command::Plan(PlanChange::CancelDowngrade), who)
        }
        AdminCommand::AddAddon { org, addon, who } => {
            (org, Command::Plan(PlanChange::AddAddon { addon }), who)
        }
        AdminCommand::RemoveAddon { org, addon, who } => {
            (org, Command::Plan(PlanChange::RemoveAddon { addon }), who)
        }
        AdminCommand::CancelAddonRemoval { org, addon, who } => (
            org,
            Command::Plan(PlanChange::CancelAddonRemoval { addon }),
            who,
        ),
    };
    let report = engine.command(&org, &command, &actor.actor()).await?;
    print_report(out, &report).map_err(io)
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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

async fn show(engine: &Engine, id: &str, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    let view = engine.view(id).await?;
    let recent = storage::audit::recent_transitions(engine.db(), id, 10).await?;
    let o = &view.org;
    let l = &o.lifecycle;
    let e = view.entitlements;
    let deadlines = [
        ("trial_ends_at", l.trial_ends_at),
        ("grace_ends_at", l.grace_ends_at),
        ("cancel_at", l.cancel_at),
        ("next_cycle_at", l.next_cycle_at),
    ];
    if json {
        let value = serde_json::json!({
            "id": o.id,
            "state": l.status.as_str(),
            "lock_reasons": l.reasons.iter().map(LockReason::as_str).collect::<Vec<_>>(),
            "plan": o.plan,
            "tier": o.tier,
            "addons": o.addons,
            "currency": o.currency,
            "admins": o.admins,
            "billing_email": o.billing_email,
            "payment_method": l.payment_method,
            "subscriber": l.subscriber,
            "deadlines": deadlines.iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), serde_json::Value::from(time(v))))).collect::<serde_json::Map<_, _>>(),
            "entitlements": {
                "dashboard": e.dashboard, "exports": e.exports,
                "ingestion": e.ingestion, "campaigns": e.campaigns, "upgrade_prompt": view.upgrade_prompt,
            },
            "legal_moves": view.legal_moves,
            "version": o.version,
            "transitions": recent.iter().map(|t| serde_json::json!({
                "at": time(t.at), "from": t.from.map(Status::as_str), "to": t.to.as_str(),
                "cause": t.cause, "lock_reasons": t.reasons.iter().map(LockReason::as_str).collect::<Vec<_>>(),
                "actor": t.actor, "reason": t.reason,
            })).collect::<Vec<_>>(),
        });
        return writeln!(out, "{value:#}").map_err(io);
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut text = format!(
        "org {}\n  state          {}{}\n  plan           {} {} MAU{}\n  card on file   {}\n  subscriber     {}\n",
        o.id,
        l.status,
        if l.reasons.is_empty() { String::new() } else { format!(" ({})", l.reasons) },
        o.plan,
        o.tier,
        if o.addons.is_empty() { String::new() } else { format!(", add-ons {}", o.addons.join(", ")) },
        yes(l.payment_method),
        yes(l.subscriber),
    );
    for (name, at) in deadlines {
        if let Some(at) = at {
            text.push_str(&format!("  {name:<14} {}\n", time(at)));
        }
    }
    text.push_str(&format!(
        "  entitlements   dashboard={} exports={} ingestion={} campaigns={} upgrade_prompt={}\n",
        yes(e.dashboard),
        yes(e.exports),
        yes(e.ingestion),
        yes(e.campaigns),
        yes(view.upgrade_prompt)
    ));
    if let Some((period, mau)) = o.usage {
        text.push_str(&format!(
            "  usage          {} MAU in {} ({}% of tier)\n",
            mau,
            period.label(),
            crate::domain::usage::percent(mau, o.tier)
        ));
    }
    text.push_str(&format!(
        "  legal moves    {}\n",
        if view.legal_moves.is_empty() {
            "none".to_owned()
        } else {
            view.legal_moves.join(", ")
        }
    ));
    text.push_str("  recent transitions:\n");
    for t in &recent {
        text.push_str(&format!(
            "    {} {} -> {}{} ({}, by {}{})\n",
            time(t.at),
            t.from.map_or("(new)", Status::as_str),
            t.to,
            if t.reasons.is_empty() {
                String::new()
            } else {
                format!(" [{}]", t.reasons)
            },
            t.cause,
            t.actor,
            t.reason
                .as_ref()
                .map_or_else(String::new, |r| format!(": {r}")),
        ));
    }
    out.write_all(text.as_bytes()).map_err(io)
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
