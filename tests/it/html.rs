//! Pictures of time: `--html` pages open in headless Chromium and show their swimlanes.
//! Without Chromium the tests print a notice and pass, unless `CI` is set (then Chromium
//! is required: `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::output_within;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Chromium binary, or `None` (with a notice) when it is missing outside CI.
fn chromium() -> Option<PathBuf> {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return Some(PathBuf::from(candidate));
        }
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false"),
        "CI is set but chromium is not installed (apt-get install chromium)"
    );
    eprintln!("notice: chromium is not installed; skipping the headless browser check");
    None
}

/// Chromium's DOM of `page` after it rendered, and a screenshot of it in `png`.
fn render(chromium: &Path, page: &Path, png: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let run = |extra: &str| {
        let out = output_within(
            Command::new(chromium)
                .args([
                    "--headless",
                    "--disable-gpu",
                    "--no-sandbox",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--window-size=1200,800",
                    extra,
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg(&url),
            Duration::from_mins(2),
        );
        assert!(
            out.status.success(),
            "chromium {extra} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = run("--dump-dom");
    run(&format!("--screenshot={}", png.display()));
    let bytes = std::fs::read(png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        bytes.len() > 5_000,
        "a blank screenshot ({} bytes)",
        bytes.len()
    );
    dom
}

fn acctd(dir: &Path, args: &[&str]) -> std::process::Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_acctd"))
            .current_dir(dir)
            .args(args),
        Duration::from_mins(2),
    )
}

/// `simulate --html` on grace → lock → cancel: one swimlane with its three states, its
/// invoices and payments, and its expectations, rendered by Chromium.
#[test]
fn a_simulation_page_renders_its_swimlanes_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("simulate.html");
    let scenario = repo().join("scenarios/grace-lock-cancel.toml");
    let out = acctd(
        dir.path(),
        &[
            "simulate",
            scenario.to_str().unwrap(),
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to fetch, no script.
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    assert_eq!(html.matches("class=\"row lane\"").count(), 1);
    assert!(
        html.contains("<title>grace_period: 2026-04-01 00:00"),
        "grace band"
    );
    assert!(html.contains("m m-failed"), "the failed payment is red");
    assert!(html.contains("m m-ok"), "met expectations are marked");
    let Some(chromium) = chromium() else {
        return;
    };
    let dom = render(&chromium, &page, &dir.path().join("simulate.png"));
    assert_eq!(dom.matches("class=\"row lane\"").count(), 1, "{dom}");
    assert!(dom.matches("class=\"band\"").count() >= 4, "{dom}");
}

/// `whatif --html` draws weekly charts under both rule sets and two lanes per differing
/// org; `forecast --html` one lane.
#[test]
fn whatif_and_forecast_pages_render_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("acctd.db").display()
    );
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // 300 orgs of the benchmark's mix, seeded as the benchmark seeds them.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = acctd::storage::connect(&url, 1).await.unwrap();
        acctd::storage::migrate(&db).await.unwrap();
        let now = acctd::clock::truncate(chrono::Utc::now());
        crate::seed::seed(&db, 300, crate::seed::Scenario::Mixed, now)
            .await
            .unwrap();
        db.close().await.unwrap();
    });
    let rules = dir.path().join("changed.toml");
    std::fs::write(&rules, "[lifecycle]\ngrace_days = 14\n").unwrap();
    let whatif = dir.path().join("whatif.html");
    let text = ok(acctd(
        dir.path(),
        &[
            "--db",
            &url,
            "whatif",
            "--rules",
            rules.to_str().unwrap(),
            "--payments",
            "fail",
            "--html",
            whatif.to_str().unwrap(),
        ],
    ));
    let differing: usize = text
        .lines()
        .find_map(|l| l.strip_suffix(" orgs' fate differs"))
        .or_else(|| {
            text.lines()
                .find_map(|l| l.split_once(" orgs' fate differs").map(|(n, _)| n))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(differing > 0, "{text}");
    let html = std::fs::read_to_string(&whatif).unwrap();
    assert_eq!(html.matches("<figure class=\"chart\">").count(), 6);
    let lanes = 2 * differing.min(100);
    assert_eq!(html.matches("class=\"row lane\"").count(), lanes);
    let org = html
        .split("data-org=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let forecast = dir.path().join("forecast.html");
    ok(acctd(
        dir.path(),
        &[
            "--db",
            &url,
            "forecast",
            &org,
            "--html",
            forecast.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(&forecast)
            .unwrap()
            .matches("class=\"row lane\"")
            .count(),
        1
    );
    let Some(chromium) = chromium() else {
        return;
    };
    let dom = render(&chromium, &whatif, &dir.path().join("whatif.png"));
    assert_eq!(dom.matches("class=\"row lane\"").count(), lanes);
    assert_eq!(dom.matches("class=\"bar\"").count() % 2, 0);
    let dom = render(&chromium, &forecast, &dir.path().join("forecast.png"));
    assert_eq!(dom.matches("class=\"row lane\"").count(), 1);
}
