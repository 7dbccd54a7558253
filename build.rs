//! Marks whether the PostgreSQL cases of the integration tests (`tests/it`) can run: with
//! `TEST_POSTGRES_URL` set (or `REQUIRE_POSTGRES`, under which a missing URL must fail,
//! not skip) the cfg `acctd_postgres_tests` is on; without, those cases are compiled
//! `#[ignore]`d and `cargo test` reports them as ignored, with the reason, instead of a
//! passing test that did not run. Nothing outside the tests reads the cfg.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(acctd_postgres_tests)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=REQUIRE_POSTGRES");
    if std::env::var_os("TEST_POSTGRES_URL").is_some()
        || std::env::var_os("REQUIRE_POSTGRES").is_some()
    {
        println!("cargo::rustc-cfg=acctd_postgres_tests");
    }
}
