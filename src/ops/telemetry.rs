//! The metrics recorder: one Prometheus recorder per process (tests start many servers in one
//! process, so it is installed once and shared), and the description of every metric Parley
//! records, in one table, so `/metrics` carries a HELP line for each.
//!
//! Code records with the `metrics` crate's macros (`metrics::counter!(NAME, labels…)`), naming
//! metrics with the constants below; nothing else here should know what a message or a stanza is.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (first call) and returns its handle for rendering.
/// `None` when another recorder was installed first (embedding programs may bring their own).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Latencies (every `*_seconds` histogram) as real Prometheus histograms, which can
            // be summed over instances, rather than the exporter's default per-process summary.
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    handle().map(|h| h.render()).unwrap_or_default()
}

/// Metric names and their help text, registered with the recorder once.
fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "REST requests answered, by method, route pattern and status"
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "REST request latency from request head to response, by method and route pattern"
    );
}

/// Bucket bounds of latency histograms, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// REST requests answered; labels `method`, `route` (the route pattern, `unmatched` for 404s),
/// `status`.
pub const HTTP_REQUESTS: &str = "parley_http_requests_total";
/// REST request latency; labels `method`, `route`.
pub const HTTP_REQUEST_DURATION: &str = "parley_http_request_duration_seconds";
