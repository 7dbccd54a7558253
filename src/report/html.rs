//! Pictures of time: one self-contained HTML page (inline CSS and SVG, no script, nothing
//! fetched) with a swimlane per org (its states as bands over time, and markers for
//! alerts, invoices, payments, plan changes, emails and expectations, failed ones red)
//! and, for `acctd whatif`, bar charts of weekly counts. Hover details are SVG `<title>`s
//! and CSS `:hover`. Shared by `acctd simulate`, `acctd forecast` and `acctd whatif`.

// Pixel positions: counts and seconds far below 2^52 lose nothing as `f64`.
#![allow(clippy::cast_precision_loss)]

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, Utc};

use crate::domain::fact::Fact;
use crate::domain::Status;

/// The most swimlanes a page draws; the page says how many orgs it leaves out.
pub const MAX_LANES: usize = 200;

/// Width of the time axis, in pixels.
const WIDTH: f64 = 960.0;
/// Height of one lane.
const LANE_HEIGHT: u32 = 48;

/// An expectation checked at an instant (a scenario's `[[expect]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub at: DateTime<Utc>,
    pub org: String,
    pub ok: bool,
    /// What was expected and what was found, in words.
    pub text: String,
}

/// One swimlane: an org's facts over the page's time range.
#[derive(Clone, Debug)]
pub struct Lane<'a> {
    pub org: &'a str,
    /// A second line under the org's id (e.g. which rule set).
    pub label: &'a str,
    /// The org's state at the page's start, if it exists then; `None`: the lane starts at
    /// the org's first transition (its signup).
    pub start: Option<Status>,
    pub facts: &'a [Fact],
    pub expectations: &'a [Expectation],
}

/// A bar chart of counts per label (weeks), one bar per series.
#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub labels: Vec<String>,
    /// (name, one value per label).
    pub series: Vec<(String, Vec<f64>)>,
}

/// A page.
#[derive(Clone, Debug)]
pub struct Page<'a> {
    pub title: String,
    /// Lines under the title: assumptions, rules, counts.
    pub notes: Vec<String>,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub charts: Vec<Chart>,
    /// At most [`MAX_LANES`] are drawn.
    pub lanes: Vec<Lane<'a>>,
    /// Orgs there would be lanes for beyond those given (said on the page).
    pub omitted: u64,
}

const STATES: [(Status, &str); 5] = [
    (Status::Trial, "#9ecae1"),
    (Status::Active, "#74c476"),
    (Status::GracePeriod, "#fdae6b"),
    (Status::Locked, "#e6550d"),
    (Status::Canceled, "#bdbdbd"),
];

const SERIES: [&str; 4] = ["#3182bd", "#e6550d", "#31a354", "#756bb1"];

fn colour(status: Status) -> &'static str {
    STATES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or("#ccc", |(_, c)| c)
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// The page as one HTML document.
pub fn render(page: &Page<'_>) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let span = (page.until - page.from).num_seconds().max(1) as f64;
    let x = |at: DateTime<Utc>| -> f64 {
        let s = (at - page.from).num_seconds() as f64;
        (s / span * WIDTH).clamp(0.0, WIDTH)
    };
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n",
        title = escape(&page.title)
    );
    let _ = writeln!(
        html,
        "<p class=\"range\">{} to {} (UTC)</p>",
        time(page.from),
        time(page.until)
    );
    for note in &page.notes {
        let _ = writeln!(html, "<p class=\"note\">{}</p>", escape(note));
    }
    if !page.charts.is_empty() {
        html.push_str("<div class=\"charts\">\n");
        for chart in &page.charts {
            render_chart(&mut html, chart);
        }
        html.push_str("</div>\n");
    }
    legend(&mut html);
    let drawn = page.lanes.len().min(MAX_LANES);
    let omitted = page.omitted + (page.lanes.len() - drawn) as u64;
    if omitted > 0 {
        let _ = writeln!(
            html,
            "<p class=\"note\">Showing the first {drawn} swimlanes; {omitted} more orgs are not drawn.</p>"
        );
    }
    html.push_str("<div class=\"lanes\">\n");
    axis(&mut html, page, &x);
    for lane in page.lanes.iter().take(MAX_LANES) {
        render_lane(&mut html, page, lane, &x);
    }
    html.push_str("</div>\n</body></html>\n");
    html
}

fn legend(html: &mut String) {
    html.push_str("<div class=\"legend\">");
    for (status, colour) in STATES {
        let _ = write!(
            html,
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            status.as_str()
        );
    }
    for (class, name) in [
        ("m-invoice", "invoice"),
        ("m-paid", "payment"),
        ("m-failed", "failed payment or expectation"),
        ("m-alert", "usage alert"),
        ("m-plan", "plan change"),
        ("m-email", "email"),
        ("m-ok", "expectation met"),
    ] {
        let _ = write!(
            html,
            "<span><svg width=\"12\" height=\"12\"><circle class=\"{class}\" cx=\"6\" cy=\"6\" r=\"5\"/></svg>{name}</span>"
        );
    }
    html.push_str("</div>\n");
}

/// The time axis: a tick at each month's start, and at each week's start when the range
/// is short enough for them to be told apart.
fn axis(html: &mut String, page: &Page<'_>, x: &impl Fn(DateTime<Utc>) -> f64) {
    let _ = write!(
        html,
        "<div class=\"row axis\"><div class=\"name\"></div><svg width=\"{WIDTH}\" height=\"22\">"
    );
    let days = (page.until - page.from).num_days();
    let mut day = page.from.date_naive();
    let last = page.until.date_naive();
    let weekly = days <= 120;
    while day <= last {
        let at = day.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
        if let Some(at) = at.filter(|at| *at >= page.from) {
            let month = day.day() == 1;
            let week = weekly && day.weekday() == chrono::Weekday::Mon;
            if month || week {
                let px = x(at);
                let _ = write!(
                    html,
                    "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"14\" y2=\"22\" class=\"tick{}\"/>",
                    if month { " month" } else { "" }
                );
                if month || days <= 70 {
                    let _ = write!(
                        html,
                        "<text x=\"{:.1}\" y=\"11\">{}</text>",
                        px + 2.0,
                        day.format(if month { "%b %-d" } else { "%-d" })
                    );
                }
            }
        }
        day += Duration::days(1);
    }
    html.push_str("</svg></div>\n");
}

fn render_lane(
    html: &mut String,
    page: &Page<'_>,
    lane: &Lane<'_>,
    x: &impl Fn(DateTime<Utc>) -> f64,
) {
    let _ = write!(
        html,
        "<div class=\"row lane\" data-org=\"{org}\"><div class=\"name\">{org}<small>{label}</small></div>\
         <svg width=\"{WIDTH}\" height=\"{LANE_HEIGHT}\">",
        org = escape(lane.org),
        label = escape(lane.label)
    );
    // State bands: from the page's start (or the first transition) to each transition.
    let mut state = lane.start.map(|s| (page.from, s));
    let band = |html: &mut String, from: DateTime<Utc>, to: DateTime<Utc>, s: Status| {
        let (x0, x1) = (x(from), x(to));
        let _ = write!(
            html,
            "<rect class=\"band\" x=\"{x0:.1}\" y=\"8\" width=\"{:.1}\" height=\"16\" fill=\"{}\">\
             <title>{}: {} to {}</title></rect>",
            (x1 - x0).max(0.5),
            colour(s),
            s.as_str(),
            time(from),
            time(to)
        );
    };
    for fact in lane.facts {
        if let Fact::Transition { at, to, .. } = fact {
            if let Some((since, s)) = state {
                band(html, since, *at, s);
            }
            state = Some((*at, *to));
        }
    }
    if let Some((since, s)) = state {
        band(html, since, page.until, s);
    }
    for fact in lane.facts {
        let px = x(fact.at());
        let title = escape(&format!(
            "{}  {}",
            time(fact.at()),
            crate::cli::forecast::describe(fact)
        ));
        let shape = match fact {
            Fact::Transition { .. } => format!(
                "<line class=\"m-transition\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"6\" y2=\"26\"><title>{title}</title></line>"
            ),
            Fact::Invoice { .. } => format!(
                "<rect class=\"m m-invoice\" x=\"{:.1}\" y=\"28\" width=\"8\" height=\"8\"><title>{title}</title></rect>",
                px - 4.0
            ),
            Fact::Payment { succeeded, .. } => format!(
                "<circle class=\"m {}\" cx=\"{:.1}\" cy=\"32\" r=\"4\"><title>{title}</title></circle>",
                if *succeeded { "m-paid" } else { "m-failed" },
                // Beside its invoice, which is usually issued at the same instant.
                px + 8.0
            ),
            Fact::Alert { .. } => format!(
                "<path class=\"m m-alert\" d=\"M{:.1} 36 l4 -8 l4 8 z\"><title>{title}</title></path>",
                px - 4.0
            ),
            Fact::Plan { .. } => format!(
                "<rect class=\"m m-plan\" x=\"{:.1}\" y=\"28\" width=\"4\" height=\"9\"><title>{title}</title></rect>",
                px - 2.0
            ),
            Fact::Email { .. } => format!(
                "<path class=\"m m-email\" d=\"M{:.1} 42 l4 -4 l4 4 l-4 4 z\"><title>{title}</title></path>",
                px - 4.0
            ),
        };
        html.push_str(&shape);
    }
    for expect in lane.expectations {
        let px = x(expect.at);
        let _ = write!(
            html,
            "<path class=\"m {}\" d=\"M{:.1} 0 l8 0 l-4 7 z\"><title>{} expectation {}: {}</title></path>",
            if expect.ok { "m-ok" } else { "m-failed" },
            px - 4.0,
            time(expect.at),
            if expect.ok { "met" } else { "FAILED" },
            escape(&expect.text)
        );
    }
    html.push_str("</svg></div>\n");
}

fn render_chart(html: &mut String, chart: &Chart) {
    const W: f64 = 440.0;
    const H: f64 = 150.0;
    const LEFT: f64 = 60.0;
    const BOTTOM: f64 = 24.0;
    let max = chart
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0_f64, f64::max);
    let _ = write!(
        html,
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg width=\"{W}\" height=\"{H}\">",
        escape(&chart.title)
    );
    let plot_h = H - BOTTOM - 8.0;
    let y = |v: f64| 8.0 + plot_h - if max > 0.0 { v / max * plot_h } else { 0.0 };
    let _ = write!(
        html,
        "<line class=\"axisline\" x1=\"{LEFT}\" x2=\"{W}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>\
         <text x=\"{1:.1}\" y=\"12\" class=\"ylabel\">{2}</text><text x=\"{1:.1}\" y=\"{0:.1}\" class=\"ylabel\">0</text>",
        y(0.0),
        LEFT - 4.0,
        number(max)
    );
    let groups = chart.labels.len().max(1) as f64;
    let group_w = (W - LEFT) / groups;
    let bars = chart.series.len().max(1) as f64;
    let bar_w = (group_w * 0.8 / bars).max(1.0);
    for (i, label) in chart.labels.iter().enumerate() {
        let gx = LEFT + group_w * i as f64 + group_w * 0.1;
        for (j, (name, values)) in chart.series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0.0);
            let top = y(v);
            let _ = write!(
                html,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{bar_w:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                gx + bar_w * j as f64,
                (y(0.0) - top).max(0.0),
                SERIES[j % SERIES.len()],
                escape(label),
                escape(name),
                number(v)
            );
        }
        // Every label when few, else every fourth.
        if chart.labels.len() <= 8 || i % 4 == 0 {
            let _ = write!(
                html,
                "<text x=\"{gx:.1}\" y=\"{:.1}\" class=\"xlabel\">{}</text>",
                H - 8.0,
                escape(label.split_once('-').map_or(label.as_str(), |(_, w)| w))
            );
        }
    }
    html.push_str("</svg><div class=\"keys\">");
    for (j, (name, _)) in chart.series.iter().enumerate() {
        let _ = write!(
            html,
            "<span><i style=\"background:{}\"></i>{}</span>",
            SERIES[j % SERIES.len()],
            escape(name)
        );
    }
    html.push_str("</div></figure>\n");
}

/// A count or an amount as a label: whole numbers without decimals.
fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

const STYLE: &str = "body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}\
h1{font-size:18px;margin:0 0 4px}p{margin:2px 0}.note{color:#555}\
.legend{margin:10px 0;display:flex;flex-wrap:wrap;gap:12px}.legend span,.keys span{display:inline-flex;align-items:center;gap:4px}\
.legend i,.keys i{display:inline-block;width:14px;height:10px}\
.row{display:flex;align-items:center}.name{width:190px;flex:none;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-family:monospace}\
.name small{display:block;color:#777;font-family:system-ui,sans-serif}\
.lane{border-top:1px solid #eee}.lane:hover{background:#f3f6fb}\
.axis text{font-size:10px;fill:#555}.tick{stroke:#aaa}.tick.month{stroke:#333}\
.band{stroke:#fff;stroke-width:0.5}.band:hover{stroke:#000;stroke-width:1}\
.m{stroke:#333;stroke-width:0.5}.m:hover{stroke:#000;stroke-width:2}\
.m-transition{stroke:#000;stroke-width:1.5}\
.m-invoice{fill:#3182bd}.m-paid{fill:#31a354}.m-failed{fill:#d62728;stroke:#d62728}.m-alert{fill:#fdd835}\
.m-plan{fill:#17becf}.m-email{fill:#9467bd}.m-ok{fill:#31a354;stroke:#31a354}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:8px;margin:10px 0}\
.chart{margin:0;border:1px solid #eee;padding:4px}.chart figcaption{font-weight:600}\
.bar:hover{stroke:#000}.xlabel,.ylabel{font-size:9px;fill:#555}.ylabel{text-anchor:end}.axisline{stroke:#999}";

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_page_has_a_lane_per_org_with_bands_and_escaped_text() {
        let facts = vec![
            Fact::Transition {
                at: at("2027-01-10T00:00:00Z"),
                org: "a<b".into(),
                from: Some(Status::Active),
                to: Status::GracePeriod,
                cause: "payment_failed".into(),
                reasons: crate::domain::LockReasons::default(),
                actor: "system".into(),
            },
            Fact::Payment {
                at: at("2027-01-10T00:00:00Z"),
                org: "a<b".into(),
                invoice: 3,
                succeeded: false,
            },
        ];
        let page = Page {
            title: "t".into(),
            notes: vec!["x & y".into()],
            from: at("2027-01-01T00:00:00Z"),
            until: at("2027-02-01T00:00:00Z"),
            charts: Vec::new(),
            lanes: vec![Lane {
                org: "a<b",
                label: "",
                start: Some(Status::Active),
                facts: &facts,
                expectations: &[],
            }],
            omitted: 3,
        };
        let html = render(&page);
        assert_eq!(html.matches("class=\"row lane\"").count(), 1);
        assert_eq!(html.matches("class=\"band\"").count(), 2);
        assert!(html.contains("a&lt;b") && !html.contains("a<b"));
        assert!(html.contains("x &amp; y"));
        assert!(html.contains("class=\"m m-failed\""));
        assert!(html.contains("3 more orgs are not drawn"));
        assert!(!html.contains("<script") && !html.contains("http"));
    }
}
