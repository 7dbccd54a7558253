//! The `acctd` binary as a user runs it: simulate (examples, determinism, exit codes),
//! admin and tick against a SQLite file (SPEC sections 8 and 9).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::helpers::output_within;

fn acctd(args: &[&str], cwd: &Path) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_acctd"))
            .args(args)
            .current_dir(cwd)
            .env_remove("RUST_LOG"),
        Duration::from_mins(2),
    )
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
        ("[config.lifecycle]\ngrace_dayz = 3\n", ":9: key `lifecycle.grace_dayz`"),
        ("[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"upgrade\"\n", "key `step.tier`: action `upgrade` needs `tier`"),
        ("[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"admin\"\nop = \"lock\"\ndays = 3\n", ":13: key `step.days`: op `lock` takes no `days`"),
        ("[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"admin\"\nop = \"nuke\"\n", ":12: key `step.op`: unknown op `nuke`, expected one of: lock, unlock"),
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

/// The commands of README.md's walkthrough: the lines starting with `cargo run -- ` in each
/// ```` ```sh ```` block that follows a `<!-- walkthrough -->` line, in order, split into
/// arguments (after `cargo run -- `). A line may use plain words, single or double quotes
/// and a trailing `# comment`; anything else a shell would interpret (`$`, `|`, `&`, `;`,
/// `<`, `>`, backquotes) fails the test, since running it here could not mean the same.
fn readme_walkthrough(readme: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "<!-- walkthrough -->" {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```sh",
            "a <!-- walkthrough --> marker must be followed by a ```sh block"
        );
        for line in lines.by_ref() {
            let line = line.trim();
            if line.starts_with("```") {
                break;
            }
            if let Some(rest) = line.strip_prefix("cargo run -- ") {
                commands.push(shell_words(rest));
            }
        }
    }
    commands
}

/// `line` split as a POSIX shell would split these simple commands.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                words.extend(word.take());
            }
            '#' if word.is_none() => break,
            '"' | '\'' => {
                let text = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('$' | '`' | '\\') if c == '"' => {
                            panic!("README walkthrough: unsupported expansion in {line}")
                        }
                        Some(other) => text.push(other),
                        None => panic!("README walkthrough: unclosed quote in {line}"),
                    }
                }
            }
            '$' | '|' | '&' | ';' | '<' | '>' | '`' | '\\' | '(' | ')' | '*' | '?' => {
                panic!("README walkthrough: `{c}` is not supported in {line}")
            }
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    words.extend(word);
    words
}

#[test]
fn shell_words_split_like_a_shell() {
    assert_eq!(
        shell_words(r#"admin lock acme --reason "a b" --actor 'c d'   # comment"#),
        ["admin", "lock", "acme", "--reason", "a b", "--actor", "c d"]
    );
    assert_eq!(shell_words("tick --until x#y"), ["tick", "--until", "x#y"]);
}

/// The README's walkthrough runs as written: every command, in order, on a fresh SQLite
/// database with the repository's `config.toml`, exits 0. The commands are read from
/// README.md itself ([`readme_walkthrough`]), so the README cannot drift from the binary.
#[test]
fn readme_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands = readme_walkthrough(&readme);
    // Guards against markers lost in an edit: the walkthrough covers these.
    let joined: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
    for needle in [
        "simulate ",
        "admin signup acme",
        "admin transition acme",
        "admin add-addon acme --addon journeys",
        "admin payment ",
        "tick --until ",
        "admin outbox retry ",
        "forecast acme",
        "whatif --rules ",
        "simulate scenarios/grace-lock-cancel.toml --html ",
    ] {
        assert!(
            joined.iter().any(|c| c.starts_with(needle)),
            "README walkthrough lacks `{needle}`: {joined:#?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("acctd.db").display()
    );
    let config = repo().join("config.toml");
    for command in &commands {
        let mut args = vec!["--config", config.to_str().unwrap(), "--db", db.as_str()];
        args.extend(command.iter().map(String::as_str));
        // From the repository, as a reader runs them (scenario paths are relative to it).
        let out = acctd(&args, &repo());
        assert_eq!(
            out.status.code(),
            Some(0),
            "README: cargo run -- {}\nstdout: {}\nstderr: {}",
            command.join(" "),
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
}

/// Bad configuration exits 2 with one line on stderr (no log line, no "Caused by", no
/// backtrace): a SQLite file that cannot be opened, a PostgreSQL server that is not
/// listening (at once, naming it and the cause), malformed API tokens, an unreadable
/// scenario (no line number for a file that was not read).
#[test]
fn bad_configuration_exits_2_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_acctd"));
        command
            .args(args)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env("RUST_BACKTRACE", "1");
        for (key, value) in env {
            command.env(key, value);
        }
        output_within(&mut command, Duration::from_mins(1))
    };
    let one_line = |out: &Output, needle: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("acctd: ") && err.contains(needle),
            "{needle}: {err}"
        );
    };
    let out = run(&["--db", "sqlite://new.db", "admin", "orgs"], &[]);
    one_line(&out, "add `?mode=rwc` to the URL");
    let started = std::time::Instant::now();
    let out = run(
        &["--db", "postgres://postgres@127.0.0.1:1/x", "admin", "orgs"],
        &[],
    );
    one_line(&out, "127.0.0.1:1");
    assert!(
        stderr(&out).to_lowercase().contains("refused"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let db = "sqlite://a.db?mode=rwc";
    for tokens in ["x:boss:0123456789abcdef", "garbage"] {
        let out = run(
            &["--db", db, "serve", "--listen", "127.0.0.1:0"],
            &[("ACCTD_API_TOKENS", tokens)],
        );
        one_line(&out, "ACCTD_API_TOKENS");
    }
    // A missing PostgreSQL database: the server's message, without the line of its source
    // code that sqlx appends ("at line 948").
    if let Ok(admin) = std::env::var("TEST_POSTGRES_URL") {
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/acctd_no_such_database");
        let out = run(&["--db", &url, "admin", "orgs"], &[]);
        one_line(&out, "\"acctd_no_such_database\" does not exist");
        assert!(!stderr(&out).contains(" at line "), "{}", stderr(&out));
    }
    let out = run(&["simulate", "scenarios/nosuch.toml"], &[]);
    one_line(
        &out,
        "cannot read scenarios/nosuch.toml: No such file or directory",
    );
    assert!(!stderr(&out).contains(":1:"), "{}", stderr(&out));
}

/// `tick --until` later than now is refused on the real clock without --force (exit 2,
/// naming --force); with it, or at a past instant, it runs and says what it did; with
/// --json, stdout stays JSON Lines and the summary goes to stderr.
#[test]
fn tick_refuses_a_future_until_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let run = |args: &[&str]| {
        let mut all = vec!["--db", db.as_str()];
        all.extend_from_slice(args);
        acctd(&all, dir.path())
    };
    let out = run(&["tick", "--until", "2999-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = run(&["tick", "--until", "2999-01-01T00:00:00Z", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&["tick", "--until", "2020-01-01T00:00:00Z", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("0 orgs (nothing was due)"),
        "{}",
        stderr(&out)
    );
}

/// Empty results say so (on stderr; stdout stays empty), tables have headers, and
/// `--help` describes every argument, lists valid values and keeps the global options
/// under their own heading.
#[test]
fn empty_results_say_so_and_help_describes_every_argument() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let run = |args: &[&str]| {
        let mut all = vec!["--db", db.as_str()];
        all.extend_from_slice(args);
        acctd(&all, dir.path())
    };
    for (args, said) in [
        (&["admin", "orgs"][..], "no orgs match"),
        (&["admin", "outbox", "list"][..], "the outbox is empty"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            out.stdout.is_empty() && stderr(&out).contains(said),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = run(&[
        "admin",
        "signup",
        "acme",
        "--admin",
        "a@acme.test",
        "--actor",
        "ops",
        "--reason",
        "x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["admin", "invoices", "acme"]);
    assert!(stderr(&out).contains("no invoices yet"), "{}", stderr(&out));
    let out = run(&["admin", "orgs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("ORG ") && text.lines().nth(1).unwrap().starts_with("acme "),
        "{text}"
    );
    let out = run(&["admin", "lock", "acme", "--actor", "ops", "--reason", "x"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Logs to a pipe carry no colour codes (the lock logged its transition).
    assert!(
        stderr(&out).contains("transition") && !stderr(&out).contains('\u{1b}'),
        "{}",
        stderr(&out)
    );
    let out = run(&["admin", "outbox", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim_start().starts_with("ID ") && text.contains(" account_locked "),
        "{text}"
    );
    assert!(!text.contains("next=") && text.contains(" next "), "{text}");
    // An add-on while the catalog is empty says how to configure one.
    let out = run(&[
        "admin",
        "add-addon",
        "acme",
        "--addon",
        "journeys",
        "--actor",
        "ops",
        "--reason",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the add-on catalog is empty"),
        "{}",
        stderr(&out)
    );

    let help = |args: &[&str]| String::from_utf8(acctd(args, dir.path()).stdout).unwrap();
    let signup = help(&["admin", "signup", "--help"]);
    for needle in [
        "<ORG>",
        "--plan",
        "--tier",
        "--billing-email",
        "--addon",
        "Global options:",
    ] {
        let line = signup
            .lines()
            .find(|l| l.trim_start().starts_with(needle) || l.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle} missing: {signup}"));
        assert!(
            needle.ends_with(':') || line.trim().len() > needle.len() + 10,
            "{needle} undescribed: {line}"
        );
    }
    let global = signup.split("Global options:").nth(1).unwrap();
    assert!(
        global.contains("--db") && global.contains("--config"),
        "{signup}"
    );
    let own = signup.split("Global options:").next().unwrap();
    assert!(!own.contains("--db <URL>"), "{signup}");
    let transition = help(&["admin", "transition", "--help"]);
    assert!(
        transition.contains("grace_period") && transition.contains("canceled"),
        "{transition}"
    );
    let orgs = help(&["admin", "orgs", "--help"]);
    assert!(
        orgs.contains("payment_overdue") && orgs.contains("trial_expired"),
        "{orgs}"
    );
}

/// Issue 29 item 14: `acctd check-config | head -1` (stdout closed before anything is
/// written) exits quietly instead of panicking on the broken pipe.
#[test]
fn check_config_exits_quietly_on_a_closed_pipe() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = crate::helpers::Spawned::spawn(
        Command::new(env!("CARGO_BIN_EXE_acctd"))
            .arg("check-config")
            .current_dir(repo())
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped()),
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// Issue 29 item 13 (SPEC 8): a day count the rules refuse in an admin step is a bad
/// scenario (exit 2 naming `step.days` and its line), not a `rejected` step; a wrong value
/// in `[config]` names its key and line, not the value.
#[test]
fn bad_days_and_config_values_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "[[step]]\nat = \"2026-03-05T00:00:00Z\"\norg = \"a\"\naction = \"admin\"\nop = \"extend_trial\"\nactor = \"ops\"\nreason = \"x\"\n";
    for days in ["0", "4000000000"] {
        let path = scenario(dir.path(), &format!("{admin}days = {days}\n"));
        let out = acctd(&["simulate", path.to_str().unwrap()], dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "days = {days}: {err}");
        assert!(
            err.contains("s.toml:15: key `step.days`") && err.contains("1..=3650"),
            "days = {days}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    let path = scenario(dir.path(), "[config.lifecycle]\ngrace_days = -3\n");
    let out = acctd(&["simulate", path.to_str().unwrap()], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("s.toml:9: key `lifecycle.grace_days`"),
        "{err}"
    );
}

/// Issue 29 item 13 (README: 2 for bad configuration): a malformed entry in
/// `ACCTD_API_TOKENS` stops `acctd serve` with exit 2, naming the variable and the entry.
#[test]
fn a_bad_token_in_the_environment_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_acctd"))
            .args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env("ACCTD_API_TOKENS", "ops:admin"),
        Duration::from_mins(2),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ACCTD_API_TOKENS: entry 1"), "{err}");
}

/// Issue 29 item 8: a CSV line that is not UTF-8 (or carries a NUL) is refused with its
/// line number like any other bad line; the good lines are stored and the exit is 2.
#[test]
fn a_bad_line_in_a_usage_import_refuses_only_that_line() {
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
    let mut csv = b"org,project,period,mau\n".to_vec();
    csv.extend_from_slice(b"acme,web,2026-01,10\n");
    csv.extend_from_slice(b"acme,w\xffb,2026-01,10\n");
    csv.extend_from_slice(b"acme,a\x00b,2026-01,10\n");
    csv.extend_from_slice(b"acme,ios,2026-01,20\n");
    let file = dir.path().join("u.csv");
    std::fs::write(&file, csv).unwrap();
    let out = run(&["usage", "import", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}{}", stderr(&out));
    assert!(text.contains("2 accepted, 2 refused"), "{text}");
    assert!(text.contains("u.csv:3: not valid UTF-8"), "{text}");
    assert!(
        text.contains("u.csv:4: project must not contain a NUL"),
        "{text}"
    );
}

/// Issue 29 item 11: a scenario beyond `[simulation]`'s bounds (orgs, years) is refused
/// with exit 2 naming the key and its line before anything runs; a scenario's own
/// `[config]` cannot raise them.
#[test]
fn a_scenario_beyond_the_simulation_bounds_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.toml");
    std::fs::write(
        &path,
        "start = \"2026-03-01T00:00:00Z\"\nuntil = \"9999-01-01T00:00:00Z\"\n\
         [config.simulation]\nmax_years = 10000\n\
         [[org]]\nid = \"a\"\nplan = \"basic\"\ntier = 5000\nadmins = [\"a@a.test\"]\n",
    )
    .unwrap();
    let out = acctd(&["simulate", path.to_str().unwrap()], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("long.toml:2: key `until`") && err.contains("simulation.max_years"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    std::fs::write(
        dir.path().join("bounds.toml"),
        "[simulation]\nmax_orgs = 1\n",
    )
    .unwrap();
    let path = scenario(
        dir.path(),
        "[[org]]\nid = \"b\"\nplan = \"basic\"\ntier = 5000\nadmins = [\"b@b.test\"]\n",
    );
    let out = acctd(
        &[
            "--config",
            "bounds.toml",
            "simulate",
            path.to_str().unwrap(),
        ],
        dir.path(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("s.toml:9: key `org`") && err.contains("simulation.max_orgs"),
        "{err}"
    );
}

/// A writer that keeps what each flush pushed out, one piece per flush.
#[derive(Default)]
struct Flushes {
    pending: Vec<u8>,
    flushed: Vec<String>,
}

impl std::io::Write for Flushes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let piece = std::mem::take(&mut self.pending);
            self.flushed.push(String::from_utf8(piece).unwrap());
        }
        Ok(())
    }
}

/// SPEC 9, streaming: a run pushes out each simulated month's facts as soon as they are
/// decided, in time order, instead of holding the whole run's output to the end.
#[tokio::test]
async fn simulate_flushes_each_month_as_it_is_decided() {
    let text = "start = \"2026-03-01T00:00:00Z\"\nuntil = \"2029-03-01T00:00:00Z\"\n\
                [[org]]\nid = \"a\"\nplan = \"basic\"\ntier = 5000\nadmins = [\"a@a.test\"]\n\
                payment_method = true\nstate = \"active\"\n";
    let scenario = acctd::simulate::scenario::parse(Path::new("s.toml"), text.to_owned()).unwrap();
    let mut out = Flushes::default();
    let summary = acctd::simulate::run(&scenario, &acctd::config::Settings::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(summary.failed, 0);
    assert!(out.pending.is_empty(), "everything is flushed by the end");
    // 35 monthly cycles (2026-04-01 to 2029-02-01), each in its own piece.
    let times: Vec<Vec<String>> = out
        .flushed
        .iter()
        .map(|piece| {
            piece
                .lines()
                .filter_map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["at"].as_str().map(str::to_owned)
                })
                .collect()
        })
        .collect();
    assert!(
        times.len() >= 35,
        "{} pieces: {:?}",
        times.len(),
        out.flushed
    );
    assert!(
        times[0].iter().all(|at| at.as_str() < "2026-04-02"),
        "the first piece holds only the first month: {:?}",
        times[0]
    );
    for pair in times.windows(2) {
        let (Some(last), Some(next)) = (pair[0].iter().max(), pair[1].iter().min()) else {
            continue;
        };
        assert!(last <= next, "pieces out of order: {last} before {next}");
    }
    let invoices = out
        .flushed
        .iter()
        .filter(|p| p.contains("\"type\":\"invoice\""))
        .count();
    assert!(
        invoices >= 35,
        "one piece per monthly invoice, got {invoices}"
    );
}

/// A long run prints each month's facts while it runs, holding no more than a month in
/// memory: the first cycle's facts of 2,000 orgs over a century come out while the
/// process is still running and small (it is killed then, long before the century ends;
/// a run that kept its facts to the end would print them only after deciding them all).
#[test]
fn a_long_simulation_prints_while_it_runs() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut text =
        String::from("start = \"2026-01-01T00:00:00Z\"\nuntil = \"2125-12-01T00:00:00Z\"\n");
    for i in 0..2_000 {
        text.push_str(&format!(
            "[[org]]\nid = \"o{i}\"\nplan = \"basic\"\ntier = 5000\nadmins = [\"a@a.test\"]\n\
             payment_method = true\nstate = \"active\"\n"
        ));
    }
    let path = dir.path().join("century.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = crate::helpers::Spawned::spawn(
        Command::new(env!("CARGO_BIN_EXE_acctd"))
            .args(["simulate", path.to_str().unwrap()])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null()),
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The first fact of the first monthly cycle; the pipe is left unread after it.
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("{\"at\":\"2026-02-01T") {
                let _ = tx.send(line);
                break;
            }
        }
        std::thread::park();
    });
    let first = rx
        .recv_timeout(Duration::from_mins(2))
        .expect("the first cycle's facts within 2 minutes");
    assert!(first.contains("\"org\":\"o"), "{first}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first cycle came out only when the run was over"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(
        peak_kb < 256 * 1024,
        "{peak_kb} kB resident at the first cycle: the run holds more than a month of facts"
    );
}
