//! `acctd admin outbox …`: inspect and repair notification delivery.

use std::io::Write;

use clap::Subcommand;

use super::admin::Failure;
use crate::engine::Engine;
use crate::storage::outbox;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List messages, newest first (status: pending, sent, dead, discarded, skipped).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Put a dead or pending message back in line now, attempts reset.
    Retry { id: i64 },
    /// Give up on a dead or pending message.
    Discard { id: i64 },
}

/// Runs an outbox command.
///
/// # Errors
/// [`Failure::Input`] for an unknown id or a message in a final state.
pub async fn run(
    engine: &Engine,
    command: OutboxCommand,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    let db = engine.db();
    match command {
        OutboxCommand::List { status, limit } => {
            for m in outbox::list(db, status.as_deref(), limit).await? {
                writeln!(
                    out,
                    "{:>8} {:<9} {:<18} {:<20} attempts={} next={} to={}{}",
                    m.id,
                    m.status,
                    m.template,
                    m.org_id,
                    m.attempts,
                    m.next_attempt_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    m.recipients.join(","),
                    m.last_error
                        .map_or_else(String::new, |e| format!(" error={e}")),
                )
                .map_err(io)?;
            }
            Ok(())
        }
        OutboxCommand::Retry { id } => {
            if outbox::retry(db, id, engine.now()).await? {
                writeln!(out, "message {id} will be sent again").map_err(io)
            } else {
                Err(Failure::Input(format!(
                    "message {id} is unknown, sent or discarded"
                )))
            }
        }
        OutboxCommand::Discard { id } => {
            if outbox::discard(db, id).await? {
                writeln!(out, "message {id} discarded").map_err(io)
            } else {
                Err(Failure::Input(format!(
                    "message {id} is unknown, sent or discarded"
                )))
            }
        }
    }
}
