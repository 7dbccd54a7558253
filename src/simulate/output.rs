//! The JSON Lines format of SPEC section 9, shared by `acctd simulate` and `acctd tick`.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::engine::Fact;

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn line(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Writes one fact.
///
/// # Errors
/// The writer failed.
pub fn fact(out: &mut impl Write, fact: &Fact) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, fact)?;
    out.write_all(b"\n")
}

/// Writes a refused step.
///
/// # Errors
/// The writer failed.
pub fn rejected(
    out: &mut impl Write,
    at: DateTime<Utc>,
    org: &str,
    action: &str,
    error: &str,
) -> std::io::Result<()> {
    line(
        out,
        &json!({"at": time(at), "org": org, "type": "rejected", "action": action, "error": error}),
    )
}

/// Writes an expectation's result.
///
/// # Errors
/// The writer failed.
pub fn expect(
    out: &mut impl Write,
    at: DateTime<Utc>,
    org: &str,
    ok: bool,
    expected: Map<String, Value>,
    actual: Map<String, Value>,
) -> std::io::Result<()> {
    let mut v = json!({"at": time(at), "org": org, "type": "expect", "ok": ok});
    if !ok {
        v["expected"] = expected.into();
        v["actual"] = actual.into();
    }
    line(out, &v)
}

/// Writes the closing summary.
///
/// # Errors
/// The writer failed.
pub fn summary(out: &mut impl Write, expectations: usize, failed: usize) -> std::io::Result<()> {
    line(
        out,
        &json!({"type": "summary", "expectations": expectations, "failed": failed}),
    )
}
