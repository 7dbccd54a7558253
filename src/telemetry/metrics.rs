//! The daemon's metrics: counters, gauges and histograms of the `metrics` crate, kept by
//! one `metrics-exporter-prometheus` recorder per [`Metrics`] (one per `App`, not a
//! process-wide global, so two daemons in one process, as in the tests, count apart) and
//! rendered as Prometheus text by `GET /metrics`.
//!
//! [`Metrics::default`] records nothing: the simulator and the CLI pay nothing for it.
//! Every label takes its values from a bounded set: matched routes (else `other`), HTTP's
//! standard methods (else `other`), status codes, transition causes, command names and
//! channels.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Bucket bounds (seconds) of the duration and lag histograms: 1 ms to 1 h.
const SECONDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
    3600.0,
];

/// Bucket bounds of the delivery attempts histogram.
const ATTEMPTS: [f64; 7] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0];

const META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

/// Where a daemon records its metrics; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Prometheus>>);

struct Prometheus {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Metrics(prometheus)"
        } else {
            "Metrics(off)"
        })
    }
}

impl Metrics {
    /// A fresh Prometheus recorder with every metric described.
    pub fn prometheus() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("acctd_outbox_delivery_attempts".to_owned()),
                    &ATTEMPTS,
                )
            })
            .expect("bucket bounds are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        for (name, kind, unit, help) in DESCRIPTIONS {
            let (name, help) = (KeyName::from(*name), SharedString::from(*help));
            match kind {
                Kind::Counter => recorder.describe_counter(name, *unit, help),
                Kind::Gauge => recorder.describe_gauge(name, *unit, help),
                Kind::Histogram => recorder.describe_histogram(name, *unit, help),
            }
        }
        Self(Some(Arc::new(Prometheus { recorder, handle })))
    }

    /// The Prometheus text of everything recorded; `None` when nothing is recorded.
    pub fn render(&self) -> Option<String> {
        self.0.as_ref().map(|p| p.handle.render())
    }

    /// Drains the histograms' samples into their buckets (between scrapes).
    pub fn upkeep(&self) {
        if let Some(p) = &self.0 {
            p.handle.run_upkeep();
        }
    }

    fn key(name: &'static str, labels: &[(&'static str, SharedString)]) -> Key {
        Key::from_parts(
            name,
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, v.clone()))
                .collect::<Vec<_>>(),
        )
    }

    fn count(&self, name: &'static str, labels: &[(&'static str, SharedString)], n: u64) {
        if let Some(p) = &self.0 {
            p.recorder
                .register_counter(&Self::key(name, labels), &META)
                .increment(n);
        }
    }

    fn observe(&self, name: &'static str, labels: &[(&'static str, SharedString)], value: f64) {
        if let Some(p) = &self.0 {
            p.recorder
                .register_histogram(&Self::key(name, labels), &META)
                .record(value);
        }
    }

    /// Sets a gauge (the API reads them from the database when `/metrics` is asked).
    pub fn set(&self, name: &'static str, label: Option<(&'static str, &'static str)>, value: f64) {
        if let Some(p) = &self.0 {
            let labels: Vec<_> = label
                .into_iter()
                .map(|(k, v)| (k, SharedString::from(v)))
                .collect();
            p.recorder
                .register_gauge(&Self::key(name, &labels), &META)
                .set(value);
        }
    }

    /// One answered HTTP request; `route` is the matched route (`None`: no route matched).
    pub fn http_request(
        &self,
        method: &'static str,
        route: Option<&str>,
        status: u16,
        took: Duration,
    ) {
        if self.0.is_none() {
            return;
        }
        let labels = [
            ("method", SharedString::from(method)),
            (
                "route",
                SharedString::from(route.unwrap_or("other").to_owned()),
            ),
            ("status", SharedString::from(status.to_string())),
        ];
        self.count("acctd_http_requests_total", &labels, 1);
        self.observe(
            "acctd_http_request_duration_seconds",
            &labels,
            took.as_secs_f64(),
        );
    }

    /// One committed sweep batch: its orgs, its duration, and how long its oldest
    /// deadline had passed.
    pub fn sweep_batch(&self, orgs: u64, took: Duration, lag: Option<Duration>) {
        self.count("acctd_sweep_orgs_total", &[], orgs);
        self.observe(
            "acctd_sweep_batch_duration_seconds",
            &[],
            took.as_secs_f64(),
        );
        if let Some(lag) = lag {
            self.observe("acctd_sweep_lag_seconds", &[], lag.as_secs_f64());
        }
    }

    /// One sweep (all its batches) finished.
    pub fn sweep(&self) {
        self.count("acctd_sweeps_total", &[], 1);
    }

    /// A message delivered on `channel` after `attempts` attempts, `latency` after its
    /// instant.
    pub fn delivered(&self, channel: &str, latency: Duration, attempts: u32) {
        let labels = [("channel", channel_label(channel))];
        self.observe(
            "acctd_outbox_delivery_latency_seconds",
            &labels,
            latency.as_secs_f64(),
        );
        self.observe(
            "acctd_outbox_delivery_attempts",
            &labels,
            f64::from(attempts),
        );
    }

    /// A failed delivery attempt; `dead`: it was the last.
    pub fn delivery_failed(&self, channel: &str, dead: bool) {
        let dead = SharedString::from(if dead { "true" } else { "false" });
        self.count(
            "acctd_outbox_failures_total",
            &[("channel", channel_label(channel)), ("dead", dead)],
            1,
        );
    }

    /// A committed transition.
    pub fn transition(&self, cause: &str) {
        if self.0.is_some() {
            self.count(
                "acctd_transitions_total",
                &[("cause", SharedString::from(cause.to_owned()))],
                1,
            );
        }
    }

    /// A command refused by the lifecycle rules.
    pub fn refused(&self, command: &'static str) {
        self.count(
            "acctd_refusals_total",
            &[("command", SharedString::from(command))],
            1,
        );
    }
}

fn channel_label(channel: &str) -> SharedString {
    SharedString::from(match channel {
        "email" => "email",
        "webhook" => "webhook",
        _ => "other",
    })
}

enum Kind {
    Counter,
    Gauge,
    Histogram,
}

const DESCRIPTIONS: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        "acctd_http_requests_total",
        Kind::Counter,
        None,
        "Requests answered, by method, matched route and status.",
    ),
    (
        "acctd_http_request_duration_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time to answer a request, by method, matched route and status.",
    ),
    (
        "acctd_sweeps_total",
        Kind::Counter,
        None,
        "Sweeps run by this process.",
    ),
    (
        "acctd_sweep_orgs_total",
        Kind::Counter,
        None,
        "Orgs processed by sweeps.",
    ),
    (
        "acctd_sweep_batch_duration_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time to claim, plan and commit one sweep batch.",
    ),
    (
        "acctd_sweep_lag_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "How long the oldest deadline of a sweep batch had passed when the batch claimed it.",
    ),
    (
        "acctd_outbox_delivery_latency_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "From a message's instant to its delivery, by channel.",
    ),
    (
        "acctd_outbox_delivery_attempts",
        Kind::Histogram,
        None,
        "Attempts a delivered message took, by channel.",
    ),
    (
        "acctd_outbox_failures_total",
        Kind::Counter,
        None,
        "Failed delivery attempts, by channel and whether the message is now dead.",
    ),
    (
        "acctd_transitions_total",
        Kind::Counter,
        None,
        "Lifecycle transitions committed by this process, by cause.",
    ),
    (
        "acctd_refusals_total",
        Kind::Counter,
        None,
        "Commands refused by the lifecycle rules, by command.",
    ),
    ("acctd_orgs", Kind::Gauge, None, "Orgs by lifecycle state."),
    (
        "acctd_locked_orgs",
        Kind::Gauge,
        None,
        "Locked orgs by lock reason (an org may have several).",
    ),
    (
        "acctd_outbox_backlog",
        Kind::Gauge,
        None,
        "Notifications written but not yet delivered.",
    ),
    (
        "acctd_due_orgs",
        Kind::Gauge,
        None,
        "Orgs on the real clock with a passed, unprocessed deadline.",
    ),
    (
        "acctd_due_lag_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "How long the oldest passed, unprocessed deadline has waited (0 when none).",
    ),
];

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Metrics;

    #[test]
    fn sweeps_deliveries_and_transitions_are_histograms_and_counters() {
        let m = Metrics::prometheus();
        m.sweep_batch(3, Duration::from_millis(20), Some(Duration::from_secs(90)));
        m.sweep_batch(0, Duration::from_millis(2), None);
        m.sweep();
        m.delivered("email", Duration::from_secs(2), 1);
        m.delivered("webhook", Duration::from_secs(30), 3);
        m.delivery_failed("webhook", false);
        m.transition("grace_expired");
        m.transition("grace_expired");
        m.refused("lock");
        let text = m.render().unwrap();
        for expected in [
            "acctd_sweep_orgs_total 3",
            "acctd_sweeps_total 1",
            "# TYPE acctd_sweep_batch_duration_seconds histogram",
            "acctd_sweep_batch_duration_seconds_count 2",
            // 90 s of lag: above the 60 s bound, within the 300 s one.
            "acctd_sweep_lag_seconds_bucket{le=\"60\"} 0",
            "acctd_sweep_lag_seconds_bucket{le=\"300\"} 1",
            "acctd_outbox_delivery_attempts_bucket{channel=\"webhook\",le=\"2\"} 0",
            "acctd_outbox_delivery_attempts_bucket{channel=\"webhook\",le=\"3\"} 1",
            "acctd_outbox_delivery_latency_seconds_count{channel=\"email\"} 1",
            "acctd_outbox_failures_total{channel=\"webhook\",dead=\"false\"} 1",
            "acctd_transitions_total{cause=\"grace_expired\"} 2",
            "acctd_refusals_total{command=\"lock\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "no `{expected}` in\n{text}"
            );
        }
        assert!(text.contains("# HELP acctd_transitions_total "), "{text}");
    }

    #[test]
    fn two_recorders_count_apart_and_the_default_records_nothing() {
        let (a, b) = (Metrics::prometheus(), Metrics::prometheus());
        a.refused("lock");
        assert!(a
            .render()
            .unwrap()
            .contains("acctd_refusals_total{command=\"lock\"} 1"));
        assert!(!b.render().unwrap().contains("acctd_refusals_total{"));
        let off = Metrics::default();
        off.refused("lock");
        assert_eq!(off.render(), None);
    }
}
