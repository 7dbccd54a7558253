#![allow(clippy::doc_markdown, clippy::cast_possible_wrap)]

//! acctd's integration tests: one binary, real SQLite files and a real PostgreSQL server
//! (a fresh database per test), real child processes for crash tests.
//!
//! PostgreSQL cases read `TEST_POSTGRES_URL` (a maintenance database such as
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without it they are skipped with a
//! printed notice, unless `REQUIRE_POSTGRES=1` (CI), which makes them fail instead.

mod helpers;

mod api;
mod billing;
mod cli;
mod crash;
mod lifecycle;
mod notify;
mod storage;
mod usage;
