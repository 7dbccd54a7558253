//! acctd: the account lifecycle daemon.
//!
//! Components, from the inside out:
//! - [`domain`]: the statig lifecycle machine, entitlements and prices; pure, no I/O.
//! - [`storage`]: repositories over sea-orm (`SQLite` or `PostgreSQL`); the only user of the
//!   `entity` crate.
//! - [`engine`]: the one code path that loads due orgs, runs the machine and persists the
//!   result with its audit rows and notifications, driven by a [`clock::Clock`].
//! - [`notify`]: email templates, transports and the outbox dispatcher.
//! - [`scheduler`]: the daemon's wall-clock wake-ups (tokio-cron-scheduler).
//! - [`simulate`]: time-travel scenarios on a virtual clock and an in-memory database,
//!   polled by [`executor`], which spins through the short waits on SQLite.
//! - [`api`]: the admin HTTP API (axum): routes, auth, DTOs, errors, and its client.
//! - [`console`]: the ops console, HTML pages on the API's router, engine and roles.
//! - [`report`]: the HTML pictures of facts over time (swimlanes, weekly charts).
//! - [`config`], [`telemetry`], [`cli`]: settings, logs, the command line.
//! - [`https`]: the TLS configuration of the HTTP clients (`admin --url`, webhooks).

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod domain;
pub mod engine;
pub mod executor;
pub mod https;
pub mod lock;
pub mod notify;
pub mod report;
pub mod scheduler;
pub mod simulate;
pub mod storage;
pub mod telemetry;
