#![allow(clippy::doc_markdown, clippy::cast_possible_wrap)]

//! acctd's integration tests: one binary, real SQLite files and a real PostgreSQL server
//! (a fresh database per test), real child processes for crash tests.
//!
//! PostgreSQL cases read `TEST_POSTGRES_URL` (a maintenance database such as
//! `postgres://postgres@127.0.0.1:5432/postgres`), when the tests are built (build.rs
//! turns on the cfg `acctd_postgres_tests`). Built without it they are `#[ignore]`d and
//! reported as ignored, with the reason, unless `REQUIRE_POSTGRES=1` (CI), which makes
//! them run and fail instead.

mod helpers;
/// The benchmark's seeding, shared with the what-if test on the benchmark's mix.
#[path = "../../benches/support/mod.rs"]
#[allow(dead_code)]
mod seed;

mod api;
mod billing;
mod cli;
mod console;
mod crash;
mod forecast;
mod html;
mod https;
mod lifecycle;
mod notify;
mod preview;
mod smtp_tls;
mod storage;
mod usage;
mod whatif;
