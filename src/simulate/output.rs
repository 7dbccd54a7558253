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

/// The JSON object of one fact.
pub fn fact_json(fact: &Fact) -> Value {
    match fact {
        Fact::Transition {
            at,
            org,
            from,
            to,
            cause,
            reasons,
            ..
        } => json!({
            "at": time(*at), "org": org, "type": "transition",
            "from": from.map(super::super::domain::Status::as_str), "to": to.as_str(), "cause": cause,
            "lock_reasons": reasons.iter().map(super::super::domain::LockReason::as_str).collect::<Vec<_>>(),
        }),
        Fact::Invoice {
            at,
            org,
            id,
            period,
            lines,
            total,
        } => json!({
            "at": time(*at), "org": org, "type": "invoice", "id": id, "period": period,
            "lines": lines.iter().map(|l| json!({"kind": l.kind.as_str(), "amount": format!("{:.2}", l.amount)})).collect::<Vec<_>>(),
            "total": format!("{total:.2}"),
        }),
        Fact::Payment {
            at,
            org,
            invoice,
            succeeded,
        } => json!({
            "at": time(*at), "org": org, "type": "payment", "invoice": invoice,
            "outcome": if *succeeded { "succeeded" } else { "failed" },
        }),
        Fact::Email {
            at,
            org,
            template,
            to,
        } => json!({
            "at": time(*at), "org": org, "type": "email", "template": template, "to": to,
        }),
        Fact::Plan {
            at,
            org,
            tier,
            addons,
            change,
        } => json!({
            "at": time(*at), "org": org, "type": "plan", "tier": tier, "addons": addons, "change": change,
        }),
        Fact::Alert {
            at,
            org,
            threshold,
            usage_percent,
        } => json!({
            "at": time(*at), "org": org, "type": "alert", "threshold": threshold, "usage_percent": usage_percent,
        }),
    }
}

/// Writes one fact.
///
/// # Errors
/// The writer failed.
pub fn fact(out: &mut impl Write, fact: &Fact) -> std::io::Result<()> {
    line(out, &fact_json(fact))
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
