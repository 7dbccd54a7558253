//! The `acctd` binary: parse the command line, load settings, start telemetry, dispatch.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use acctd::app::App;
use acctd::cli::{Cli, Command};
use acctd::clock::SystemClock;
use acctd::config::Settings;
use acctd::engine::{Engine, ExternalGateway};
use acctd::{cli, executor, simulate, storage, telemetry};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// glibc's malloc spends much of a large simulation searching and consolidating its
/// fragmented heap; mimalloc does not (ARCHITECTURE.md names the target).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bad input: config, scenario, arguments, a refused move (SPEC section 8).
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("acctd: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    if let Some(url) = &cli.db {
        settings.database.url.clone_from(url);
    }
    if let Err((key, message)) = settings.validate() {
        eprintln!("acctd: --db: {key}: {message}");
        return ExitCode::from(BAD_INPUT);
    }
    // The simulator's stdout is its output; keep the log quiet unless asked.
    let level = if matches!(cli.command, Command::Simulate { .. }) {
        "warn"
    } else {
        settings.log.level.as_str()
    };
    telemetry::init(
        level,
        settings.log.format,
        std::io::stderr,
        telemetry::colour_for_stderr(),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acctd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(cli.command, Command::Simulate { .. }) {
        // One long chain of short waits on the SQLite worker: spin through them instead
        // of parking (src/executor.rs), inside the runtime for sqlx's timers and tasks.
        let _guard = runtime.enter();
        return executor::block_on_spinning(dispatch(cli.command, settings), executor::SPIN);
    }
    runtime.block_on(dispatch(cli.command, settings))
}

async fn dispatch(command: Command, settings: Settings) -> ExitCode {
    match command {
        Command::Serve { listen } => {
            let mut settings = settings;
            if let Some(listen) = listen {
                settings.api.listen = listen;
            }
            report(serve(settings).await)
        }
        Command::Migrate => report(migrate(&settings).await),
        Command::CheckConfig => match toml::to_string_pretty(&settings) {
            Ok(text) => print_quietly(&format!("# settings are valid\n{text}")),
            Err(e) => {
                eprintln!("acctd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Simulate { scenario, html } => {
            simulate_file(&scenario, html.as_deref(), &settings).await
        }
        Command::Tick {
            until,
            json,
            force,
            catch_up,
        } => report(tick(&settings, until, json, force, catch_up).await),
        Command::Admin { remote, command } => {
            if let Some(url) = remote.url.clone() {
                let mut out = std::io::stdout().lock();
                return failure(cli::remote::run(&url, remote, command, &mut out).await);
            }
            let engine = match engine(&settings).await {
                Ok(engine) => engine,
                Err(e) => return report(Err(e)),
            };
            let mut out = std::io::stdout().lock();
            failure(cli::admin::run(&engine, command, &mut out).await)
        }
        Command::Forecast(args) => {
            let engine = match engine(&settings).await {
                Ok(engine) => engine,
                Err(e) => return report(Err(e)),
            };
            let mut out = std::io::stdout().lock();
            failure(cli::forecast::run(&engine, args, &mut out).await)
        }
        Command::Whatif(args) => {
            let mut out = std::io::stdout().lock();
            failure(cli::whatif::run(&settings, args, &mut out).await)
        }
        Command::Usage(usage) => {
            let engine = match engine(&settings).await {
                Ok(engine) => engine,
                Err(e) => return report(Err(e)),
            };
            let mut out = std::io::stdout().lock();
            failure(cli::usage::run(&engine, usage, &mut out).await)
        }
    }
}

/// Writes `text` to stdout. A reader that went away (`acctd check-config | head -1`) is
/// not an error: the output was simply not wanted, so the exit is quiet and successful
/// (`println!` would panic on the broken pipe instead).
fn print_quietly(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("acctd: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn failure(result: Result<(), cli::admin::Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::admin::Failure::Input(message)) => {
            eprintln!("acctd: {message}");
            ExitCode::from(BAD_INPUT)
        }
        Err(cli::admin::Failure::Other(e)) => report(Err(e)),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the message with each cause that adds something, no backtrace
            // (anyhow's Debug would print one whenever RUST_BACKTRACE is set).
            eprintln!("acctd: {}", message(&e));
            if is_bad_input(&e) {
                ExitCode::from(BAD_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Bad configuration or input (exit 2), told apart by type, not by message.
fn is_bad_input(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<acctd::config::Unusable>()
            || cause.is::<acctd::config::Error>()
            || cause.is::<acctd::api::auth::TokenError>()
            || cause.is::<BadInput>()
    })
}

/// Bad input found by a command handler of this file (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

/// `e` and its causes on one line, leaving out a cause whose text is already there (error
/// types that print their source as part of their own message).
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn engine(settings: &Settings) -> anyhow::Result<Engine> {
    let db = acctd::app::connect(&settings.database).await?;
    storage::migrate(&db).await?;
    Ok(Engine::new(
        db,
        settings.rules(),
        Arc::new(ExternalGateway),
        Arc::new(SystemClock),
    ))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // The signal handlers first: a SIGTERM while the daemon starts (takes its lock,
    // connects, migrates) then shuts it down cleanly instead of killing it.
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let app = App::build(settings).await?;
    app.run(shutdown).await
}

/// Cancels `token` on SIGTERM or SIGINT (Ctrl-C), with the handlers installed before
/// this returns.
fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                token.cancel();
            });
            return;
        }
    }
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = acctd::app::connect(&settings.database).await?;
    storage::migrate(&db).await?;
    println!(
        "migrations applied to {}",
        acctd::app::redact(&settings.database.url)
    );
    Ok(())
}

async fn tick(
    settings: &Settings,
    until: Option<chrono::DateTime<chrono::Utc>>,
    json: bool,
    force: bool,
    catch_up: bool,
) -> anyhow::Result<()> {
    let engine = engine(settings).await?;
    let now = engine.now();
    let until = until.map_or(now, acctd::clock::truncate);
    if until > now && !force {
        return Err(BadInput(format!(
            "--until {} is later than now ({}): this would fire the real deadlines up to then \
             early (trials ended, payments overdue, orgs locked and canceled); pass --force to \
             do it anyway",
            rfc3339(until),
            rfc3339(now),
        ))
        .into());
    }
    // One batch's facts at a time: memory stays flat however many orgs are due.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut transitions, mut facts, mut written) = (0, 0, Ok(()));
    // Each due org is claimed by exactly one batch of a tick.
    let each = |_, batch: acctd::engine::Report| {
        if json {
            written = batch
                .facts
                .iter()
                .try_for_each(|fact| simulate::output::fact(&mut out, fact));
        }
        transitions += batch.transitions();
        facts += batch.facts.len();
        if written.is_err() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    };
    let orgs = if catch_up {
        engine.catch_up(until, each).await?
    } else {
        engine.sweep(until, each).await?
    };
    written?;
    let summary = format!(
        "tick until {}: {transitions} transitions, {facts} facts, {orgs} orgs{}",
        rfc3339(until),
        if orgs == 0 { " (nothing was due)" } else { "" },
    );
    if json {
        // stdout stays JSON Lines; the summary goes beside it.
        out.flush()?;
        eprintln!("{summary}");
    } else {
        writeln!(out, "{summary}")?;
    }
    out.flush()?;
    Ok(())
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn simulate_file(
    path: &std::path::Path,
    html: Option<&std::path::Path>,
    settings: &Settings,
) -> ExitCode {
    // Read here rather than in `scenario::load`, whose error would carry a line number
    // for a file that could not be read at all.
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("acctd: cannot read {}: {}", path.display(), io_message(&e));
            return ExitCode::from(BAD_INPUT);
        }
    };
    let scenario = match simulate::scenario::parse(path, text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("acctd: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut recording = html.map(|_| simulate::Recording::default());
    let result = simulate::run_recorded(&scenario, settings, &mut out, recording.as_mut()).await;
    let _ = out.flush();
    if let (Some(file), Some(recording), Ok(summary)) = (html, &recording, &result) {
        if let Err(e) = std::fs::write(file, simulate::page(&scenario, recording, summary)) {
            eprintln!("acctd: cannot write {}: {}", file.display(), io_message(&e));
            return ExitCode::FAILURE;
        }
    }
    match result {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e @ (simulate::Error::Scenario(_) | simulate::Error::Config(_))) => {
            eprintln!("acctd: {e}");
            ExitCode::from(BAD_INPUT)
        }
        Err(e) => {
            eprintln!("acctd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An I/O error as people read it: "No such file or directory", without "(os error 2)".
fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}
