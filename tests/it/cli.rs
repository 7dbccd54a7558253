//! The `acctd` binary as a user runs it: simulate (examples, determinism, exit codes),
//! admin and tick against a SQLite file (SPEC sections 8 and 9).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn acctd(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acctd"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .expect("run acctd")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every example scenario runs green, and twice gives the same bytes.
#[test]
fn example_scenarios_pass_and_are_deterministic() {
    let mut count = 0;
    for entry in std::fs::read_dir(repo().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        count += 1;
        let file = path.to_str().unwrap();
        let first = acctd(&["simulate", file], &repo());
        assert_eq!(first.status.code(), Some(0), "{file}: {}", stderr(&first));
        let last = String::from_utf8_lossy(&first.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        assert!(
            last.starts_with(r#"{"type":"summary""#) && last.ends_with(r#""failed":0}"#),
            "{file}: {last}"
        );
        let second = acctd(&["simulate", file], &repo());
        assert_eq!(first.stdout, second.stdout, "{file} is not deterministic");
    }
    assert!(
        count >= 8,
        "expected one example per lifecycle path, found {count}"
    );
}

fn scenario(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("s.toml");
    let head = "start = \"2026-03-01T00:00:00Z\"\nuntil = \"2026-05-01T00:00:00Z\"\n[[org]]\nid = \"a\"\nplan = \"basic\"\ntier = 5000\nadmins = [\"a@a.test\"]\n";
    std::fs::write(&path, format!("{head}{body}")).unwrap();
    path
}

/// SPEC 8: bad input exits 2 naming the file, the line and the key; nothing runs.
#[test]
fn bad_scenarios_exit_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("colour = \"red\"\n", ":8: key `colour`"),
        ("[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"b\"\naction = \"end_trial\"\n", ":10: key `step.org`: unknown org `b`"),
        ("[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"fly\"\n", ":11: key `step.action`: unknown action `fly`"),
        ("[[step]]\nat = \"March 5th\"\norg = \"a\"\naction = \"end_trial\"\n", ":9: key `step.at`"),
        (
            "[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"end_trial\"\n[[step]]\nat = \"2026-03-04T00:00:00Z\"\norg = \"a\"\naction = \"end_trial\"\n",
            ":13: key `step.at`: steps must be in time order",
        ),
        ("[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"end_trial\"\ntier = 5\n", ":12: key `step.tier`"),
        ("[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"admin\"\nop = \"lock\"\n", "needs `actor`"),
        ("[config.lifecycle]\ngrace_dayz = 3\n", ":9: key `grace_dayz`"),
        ("[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"upgrade\"\n", "key `step.tier`: action `upgrade` needs `tier`"),
    ];
    for (body, expected) in cases {
        let path = scenario(dir.path(), body);
        let out = acctd(&["simulate", path.to_str().unwrap()], dir.path());
        assert_eq!(out.status.code(), Some(2), "{body}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("s.toml") && err.contains(expected),
            "{body}\nwanted {expected}\ngot {err}"
        );
        assert!(out.stdout.is_empty(), "bad input prints no output");
    }
}

/// SPEC 9: a failed expectation is reported with expected and actual, and exits 1.
#[test]
fn a_failed_expectation_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        "[[expect]]\nat = \"2026-04-10T00:00:00Z\"\norg = \"a\"\nstate = \"active\"\n",
    );
    let out = acctd(&["simulate", path.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#""type":"expect","ok":false,"expected":{"state":"active"},"actual":{"state":"locked"}"#),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("{\"type\":\"summary\",\"expectations\":1,\"failed\":1}\n"),
        "{stdout}"
    );
}

/// The admin CLI against a fresh SQLite file: signup, a refused move (exit 2 with legal
/// moves), a manual lock, stats as JSON, and a bad config file (exit 2, located).
#[test]
fn admin_commands_work_on_a_fresh_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let run = |args: &[&str]| {
        let mut all = vec!["--db", db.as_str()];
        all.extend_from_slice(args);
        acctd(&all, dir.path())
    };
    let out = run(&[
        "admin",
        "signup",
        "acme",
        "--admin",
        "a@acme.test",
        "--actor",
        "ops",
        "--reason",
        "demo",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&[
        "admin",
        "extend-grace",
        "acme",
        "--days",
        "3",
        "--actor",
        "ops",
        "--reason",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("org is trial; legal moves: end_trial"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "admin", "lock", "acme", "--actor", "ops", "--reason", "abuse",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["admin", "show", "acme"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("locked (manual)") && text.contains("admin_lock, by ops: abuse"),
        "{text}"
    );
    let out = run(&["admin", "stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "orgs",
        "by_state",
        "by_reason",
        "transitions",
        "due_backlog",
        "outbox_backlog",
    ] {
        assert!(stats.get(key).is_some(), "stats lacks {key}: {stats}");
    }
    assert_eq!(stats["by_state"]["locked"], 1);
    assert_eq!(stats["transitions"], 2);
    let out = run(&["tick"]);
    assert!(out.status.success(), "{}", stderr(&out));

    std::fs::write(dir.path().join("bad.toml"), "[daemon]\nbatch_size = 0\n").unwrap();
    let out = acctd(&["--config", "bad.toml", "check-config"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad.toml:2: key `daemon.batch_size`"),
        "{}",
        stderr(&out)
    );
}

fn simulate_stdout(name: &str) -> String {
    let path = repo().join("scenarios").join(name);
    let out = acctd(&["simulate", path.to_str().unwrap()], &repo());
    assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// SPEC 5: the seed examples reproduce to the cent through the whole engine.
#[test]
fn seed_invoices_reproduce_to_the_cent() {
    let basic = simulate_stdout("seed-invoice-basic.toml");
    assert!(
        basic.contains(r#""lines":[{"kind":"base","amount":"200.00"},{"kind":"addon","amount":"20.00"},{"kind":"mau_overage","amount":"24.00"},{"kind":"addon_overage","amount":"2.40"}],"total":"246.40""#),
        "{basic}"
    );
    let essentials = simulate_stdout("seed-invoice-essentials.toml");
    assert!(
        essentials.contains(r#"{"kind":"mau_overage","amount":"30.00"}"#),
        "{essentials}"
    );
    assert!(essentials.contains(r#""total":"252.40""#), "{essentials}");
}

/// SPEC 5: proration to the second, downgrades on the 1st, add-ons, the overage lock
/// lifted by a sufficient upgrade only.
#[test]
fn plan_change_scenarios_bill_what_they_should() {
    let up = simulate_stdout("upgrade-cancels-downgrade.toml");
    assert!(
        up.contains(r#""lines":[{"kind":"proration","amount":"25.00"}]"#),
        "{up}"
    );
    assert!(
        up.contains(r#""period":"2026-05","lines":[{"kind":"base","amount":"250.00"}]"#),
        "{up}"
    );
    let down = simulate_stdout("downgrade-applied-on-the-1st.toml");
    assert!(
        down.contains(r#""tier":10000,"addons":[],"change":"downgrade_applied""#),
        "{down}"
    );
    assert!(
        down.contains(r#""period":"2026-04","lines":[{"kind":"base","amount":"100.00"}]"#),
        "{down}"
    );
    let addons = simulate_stdout("addon-included-and-removed.toml");
    assert!(
        addons.contains(r#""lines":[{"kind":"proration","amount":"10.00"}]"#),
        "{addons}"
    );
    assert!(
        addons.contains(r#""addons":["sso"],"change":"addon_removed""#),
        "{addons}"
    );
    assert!(addons.contains(r#""change":"addon_declined""#), "{addons}");
    let lift = simulate_stdout("overage-lock-lifted-by-upgrade.toml");
    assert_eq!(lift.matches(r#""cause":"upgrade""#).count(), 1, "{lift}");
    let grace = simulate_stdout("plan-change-refused-in-grace.toml");
    assert!(
        grace.contains(r#""action":"upgrade","error":"cannot upgrade: a payment is overdue"#),
        "{grace}"
    );
}

/// SPEC 6: each lifecycle path sends the right email at the right instant, reminders
/// three days before each deadline included.
#[test]
fn scenarios_show_the_right_email_at_the_right_instant() {
    let emails = |name: &str| -> Vec<String> {
        simulate_stdout(name)
            .lines()
            .filter(|l| l.contains(r#""type":"email""#))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!(
                    "{} {} {}",
                    v["at"].as_str().unwrap(),
                    v["template"].as_str().unwrap(),
                    v["to"]
                )
            })
            .collect()
    };
    assert_eq!(
        emails("grace-lock-cancel.toml"),
        [
            r#"2026-04-01T00:00:00Z invoice ["billing@acme.test"]"#,
            r#"2026-04-01T00:00:00Z payment_failed ["billing@acme.test"]"#,
            r#"2026-04-08T00:00:00Z grace_ending ["admin@acme.test"]"#,
            r#"2026-04-11T00:00:00Z account_locked ["admin@acme.test"]"#,
            r#"2026-04-22T00:00:00Z cancel_warning ["admin@acme.test"]"#,
            r#"2026-04-25T00:00:00Z canceled ["admin@acme.test"]"#,
        ]
    );
    assert_eq!(
        emails("trial-without-card-expires.toml"),
        [
            r#"2026-03-28T00:00:00Z trial_ending ["owner@gamma.test"]"#,
            r#"2026-03-31T00:00:00Z trial_ended ["owner@gamma.test"]"#,
            r#"2026-03-31T00:00:00Z account_locked ["owner@gamma.test"]"#,
            r#"2026-04-11T00:00:00Z cancel_warning ["owner@gamma.test"]"#,
            r#"2026-04-14T00:00:00Z canceled ["owner@gamma.test"]"#,
        ]
    );
    let alerts = emails("usage-thresholds.toml");
    assert_eq!(
        alerts
            .iter()
            .filter(|e| e.contains("overage_alert"))
            .count(),
        4,
        "{alerts:?}"
    );
    let overage = emails("overage-lock.toml");
    assert!(
        overage
            .iter()
            .any(|e| e.starts_with("2026-03-04T00:00:00Z overage_locked")),
        "{overage:?}"
    );
    assert!(
        overage
            .iter()
            .any(|e| e.starts_with("2026-03-06T00:00:00Z account_unlocked")),
        "{overage:?}"
    );
    let plans = emails("downgrade-applied-on-the-1st.toml");
    assert!(
        plans
            .iter()
            .any(|e| e.starts_with("2026-03-10T00:00:00Z downgrade_scheduled")),
        "{plans:?}"
    );
    assert!(
        plans
            .iter()
            .any(|e| e.starts_with("2026-04-01T00:00:00Z downgrade_applied")),
        "{plans:?}"
    );
}
