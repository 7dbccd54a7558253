//! Text output shared by the local admin commands and their `--url` twins: both build the
//! admin API's JSON (`api::dto`) and print it here, so a command prints the same whether
//! it reads the database or the API.

use std::fmt::Write as _;

use serde_json::Value;

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key].as_str().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn yes(v: &Value) -> &'static str {
    if v.as_bool().unwrap_or_default() {
        "yes"
    } else {
        "no"
    }
}

/// `admin show`: an org (`OrgDto`) with its recent `transitions` (`TransitionDto`s).
#[must_use]
pub fn show(o: &Value) -> String {
    let mut text = String::new();
    let reasons = strings(&o["lock_reasons"]);
    let addons = strings(&o["addons"]);
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "org {}\n  state          {}{}\n  plan           {} {} MAU{}\n  card on file   {}\n  subscriber     {}\n",
        str_of(o, "id"),
        str_of(o, "state"),
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
        str_of(o, "plan"),
        o["tier"],
        if addons.is_empty() { String::new() } else { format!(", add-ons {}", addons.join(", ")) },
        yes(&o["payment_method"]),
        yes(&o["subscriber"]),
    );
    for name in [
        "trial_ends_at",
        "grace_ends_at",
        "cancel_at",
        "next_cycle_at",
    ] {
        if let Some(at) = o["deadlines"][name].as_str() {
            let _ = writeln!(text, "  {name:<14} {at}");
        }
    }
    let e = &o["entitlements"];
    let _ = writeln!(
        text,
        "  entitlements   dashboard={} exports={} ingestion={} campaigns={} upgrade_prompt={}",
        yes(&e["dashboard"]),
        yes(&e["exports"]),
        yes(&e["ingestion"]),
        yes(&e["campaigns"]),
        yes(&e["upgrade_prompt"]),
    );
    if let Some(usage) = o["usage"].as_object() {
        let _ = writeln!(
            text,
            "  usage          {} MAU in {} ({}% of tier)",
            usage["usage_mau"],
            usage["period"].as_str().unwrap_or_default(),
            usage["percent"].as_str().unwrap_or_default(),
        );
    }
    let moves = strings(&o["legal_moves"]);
    let _ = writeln!(
        text,
        "  legal moves    {}",
        if moves.is_empty() {
            "none".to_owned()
        } else {
            moves.join(", ")
        }
    );
    text.push_str("  recent transitions:\n");
    for t in o["transitions"].as_array().into_iter().flatten() {
        let reasons = strings(&t["lock_reasons"]);
        let _ = writeln!(
            text,
            "    {} {} -> {}{} ({}, by {}{})",
            str_of(t, "at"),
            t["from"].as_str().unwrap_or("(new)"),
            str_of(t, "to"),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" [{}]", reasons.join(","))
            },
            str_of(t, "cause"),
            str_of(t, "actor"),
            t["reason"]
                .as_str()
                .map_or_else(String::new, |r| format!(": {r}")),
        );
    }
    text
}

/// `admin orgs`: a table of `OrgSummary`s under a header; `None` when there are none.
#[must_use]
pub fn orgs(orgs: &[Value]) -> Option<String> {
    if orgs.is_empty() {
        return None;
    }
    let mut text = format!(
        "{:<24} {:<13} {:<28} {}\n",
        "ORG", "STATE", "LOCK REASONS", "NEXT DUE"
    );
    for o in orgs {
        let reasons = strings(&o["lock_reasons"]);
        let _ = writeln!(
            text,
            "{:<24} {:<13} {:<28} {}",
            str_of(o, "id"),
            str_of(o, "state"),
            if reasons.is_empty() {
                "-".to_owned()
            } else {
                reasons.join(",")
            },
            o["next_due_at"].as_str().unwrap_or("-"),
        );
    }
    Some(text)
}

/// `admin invoices`: each `InvoiceDto` on a line, its lines indented below it; `None`
/// when there are none.
#[must_use]
pub fn invoices(invoices: &[Value]) -> Option<String> {
    if invoices.is_empty() {
        return None;
    }
    let mut text = format!(
        "{:>8} {:<7} {:<10} {:<7} {:<8} {:>12}  {}\n",
        "INVOICE", "PERIOD", "KIND", "STATUS", "CURRENCY", "TOTAL", "ISSUED"
    );
    for inv in invoices {
        let _ = writeln!(
            text,
            "{:>8} {:<7} {:<10} {:<7} {:<8} {:>12}  {}",
            inv["id"].to_string(),
            str_of(inv, "period"),
            str_of(inv, "kind"),
            str_of(inv, "status"),
            str_of(inv, "currency"),
            str_of(inv, "total"),
            str_of(inv, "issued_at"),
        );
        for line in inv["lines"].as_array().into_iter().flatten() {
            let _ = writeln!(
                text,
                "{:>8} {:<14} {:>12}  {}",
                "",
                str_of(line, "kind"),
                str_of(line, "amount"),
                str_of(line, "description"),
            );
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn tables_have_headers_and_empty_lists_are_none() {
        assert_eq!(super::orgs(&[]), None);
        assert_eq!(super::invoices(&[]), None);
        let text = super::orgs(&[json!({"id": "acme", "state": "locked",
            "lock_reasons": ["manual"], "next_due_at": null})])
        .expect("one org");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ORG ") && lines[0].contains("NEXT DUE"));
        assert!(lines[1].starts_with("acme ") && lines[1].contains(" manual "));
        assert!(lines[1].ends_with('-'));
    }
}
