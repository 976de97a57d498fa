//! The metrics recorder: one Prometheus recorder per process (tests start many servers in one
//! process, so it is installed once and shared), and the description of every metric Parley
//! records, in one table, so `/metrics` carries a HELP line for each.
//!
//! Code records with the `metrics` crate's macros (`metrics::counter!(NAME, labels…)`), naming
//! metrics with the constants below; nothing else here should know what a message or a stanza is.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (first call) and returns its handle for rendering.
/// `None` when another recorder was installed first (embedding programs may bring their own).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    handle().map(|h| h.render()).unwrap_or_default()
}

/// Deaths of the embedded PostgreSQL, each followed by a restart by its supervisor.
pub const DB_EMBEDDED_RESTARTS: &str = "parley_db_embedded_restarts_total";

/// Metric names and their help text, registered with the recorder once.
fn describe() {
    metrics::describe_counter!(
        DB_EMBEDDED_RESTARTS,
        "Times the embedded PostgreSQL died and its supervisor restarted it"
    );
}
