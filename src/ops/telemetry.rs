//! The metrics recorder: one Prometheus recorder per process (tests start many servers in one
//! process, so it is installed once and shared), and the description of every metric Parley
//! records, in one table ([`METRICS`]), so `/metrics` carries a HELP line for each and the
//! dashboard in `deploy/` can be checked against it.
//!
//! Code records with the `metrics` crate's macros (`metrics::counter!(NAME, labels…)`), naming
//! metrics with the constants below; nothing else here should know what a message or a stanza is.
//! Label values are always static strings from a short fixed list: a user id, JID or path with
//! ids in a label would grow the recorder without bound. Write labels as literals at the call
//! site (`"kind" => "message"`): the macro then builds the key once, statically, and recording
//! allocates nothing. Imports nothing of the crate (the lower layers import these names).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// ---- XMPP connections and stanzas -------------------------------------------------------------

/// Gauge `{transport}`: XMPP connections open now (`tcp` — STARTTLS port —, `tls`, `ws`, `wss`).
pub const XMPP_CONNECTIONS: &str = "parley_xmpp_connections";
/// Counter `{transport}`: XMPP connections accepted under the connection caps.
pub const XMPP_CONNECTIONS_ACCEPTED: &str = "parley_xmpp_connections_accepted_total";
/// Counter `{transport, reason}`: XMPP connections refused by a cap (`max_connections`,
/// `max_connections_per_ip`).
pub const XMPP_CONNECTIONS_REFUSED: &str = "parley_xmpp_connections_refused_total";
/// Counter `{kind}`: stanzas read from bound XMPP streams (`message`, `presence`, `iq`).
pub const XMPP_STANZAS_RECEIVED: &str = "parley_xmpp_stanzas_received_total";
/// Counter `{kind}`: stanzas written to bound XMPP streams.
pub const XMPP_STANZAS_SENT: &str = "parley_xmpp_stanzas_sent_total";

// ---- Logins ------------------------------------------------------------------------------------

/// Counter `{via, method, outcome}`: login attempts. `via`: `rest_session` (`POST /session` with
/// credentials), `rest_login` (`POST /login`), `xmpp_sasl`; `method`: `password`, `token`, `scram` (SASL SCRAM, any hash);
/// `outcome`: `success`, `failure`, `throttled`, `error`.
pub const LOGINS: &str = "parley_logins_total";

// ---- History and the database -----------------------------------------------------------------

/// Counter: messages made durable by the history writer (REST and XMPP).
pub const MESSAGES_STORED: &str = "parley_messages_stored_total";
/// Histogram: messages per group-commit transaction of the history writer.
pub const HISTORY_BATCH_SIZE: &str = "parley_history_batch_size";
/// Histogram: a message's wait from being handed to the history writer until durable (queue wait
/// and group commit): the latency a REST create or an XMPP `save_to_history` ack carries.
pub const MESSAGE_STORE_DURATION: &str = "parley_message_store_duration_seconds";
/// Histogram `{query}`: time of a hot-path database operation (`history_batch`: one group
/// commit, connection wait included; `session_lookup`: resolving a `CB-Token`).
pub const DB_QUERY_DURATION: &str = "parley_db_query_duration_seconds";
/// Counter: deaths of the embedded PostgreSQL, each followed by a restart by its supervisor.
pub const DB_EMBEDDED_RESTARTS: &str = "parley_db_embedded_restarts_total";
/// Gauge: the pool's most connections (`database` pool size option).
pub const DB_POOL_MAX: &str = "parley_db_pool_max_connections";
/// Gauge: connections the pool holds now (busy and idle).
pub const DB_POOL_CONNECTIONS: &str = "parley_db_pool_connections";
/// Gauge: idle connections in the pool.
pub const DB_POOL_AVAILABLE: &str = "parley_db_pool_available_connections";
/// Gauge: callers waiting for a pooled connection.
pub const DB_POOL_WAITING: &str = "parley_db_pool_waiting";

// ---- Live state and fan-out --------------------------------------------------------------------

/// Gauge: bound XMPP sessions (resources) in the hub.
pub const HUB_SESSIONS: &str = "parley_hub_sessions";
/// Gauge: users with at least one bound XMPP session.
pub const HUB_USERS_ONLINE: &str = "parley_hub_users_online";
/// Gauge: group rooms with at least one joined occupant.
pub const HUB_ROOMS: &str = "parley_hub_rooms";
/// Counter `{queue}`: deliveries dropped because a queue was full or its reader fell behind:
/// `outbound` (a connection's stanza queue, `xmpp.outbound_queue`), `fanout_events` and
/// `room_events` (chat events a fan-out loop missed).
pub const QUEUE_DROPS: &str = "parley_queue_drops_total";
/// Histogram: from a committed chat event's publication until the fan-out has queued its
/// stanzas to every connected recipient.
pub const FANOUT_LAG: &str = "parley_fanout_lag_seconds";
/// Counter `{kind}`: room traffic this node sent on the cluster bus: `stanza` (a room message
/// for the recipients on one other node: one per node with recipients, per room message),
/// `occupant` (a change of an occupant joined here), `occupancy` (snapshot chunks).
pub const CLUSTER_ROOM_MESSAGES: &str = "parley_cluster_room_messages_total";

// ---- Push notifications and webhooks (the outbox workers) -------------------------------------

/// Counter `{kind, outcome}`: outbox deliveries by kind (`alert`: a chat alert, `event`: a
/// `POST /events` push, `webhook`) and outcome (`delivered`, `skipped` — the recipient was
/// active, blocked the sender, or the device is gone —, `dead_token` — the provider said the
/// device is gone; its subscription was removed —, `retried`, `dead_letter`).
pub const PUSH_DELIVERIES: &str = "parley_push_deliveries_total";
/// Histogram `{kind}`: time of one delivery attempt (the provider or webhook request).
pub const PUSH_DELIVERY_DURATION: &str = "parley_push_delivery_duration_seconds";
/// Gauge: rows in the push outbox (due, leased or backing off), sampled every
/// `push.depth_sample_secs` by each server (the table is shared: every node reports it).
pub const PUSH_OUTBOX_DEPTH: &str = "parley_push_outbox_depth";
/// Gauge: rows in the dead-letter table, sampled with [`PUSH_OUTBOX_DEPTH`].
pub const PUSH_DEAD_LETTERS: &str = "parley_push_dead_letters";

// ---- REST (recorded by the REST adapter) ------------------------------------------------------

/// Counter `{route, status}`: REST requests answered; `route` is the route table's pattern
/// (never the path with its ids).
pub const HTTP_REQUESTS: &str = "parley_http_requests_total";
/// Histogram `{route}`: REST request latency.
pub const HTTP_REQUEST_DURATION: &str = "parley_http_request_duration_seconds";

/// What kind of Prometheus metric a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One row of the metrics table.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub help: &'static str,
}

const fn m(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        unit,
        help,
    }
}

/// Every metric Parley records, with its HELP text. A name recorded but missing here has no
/// HELP line and fails the dashboard check.
pub const METRICS: &[Metric] = &[
    m(XMPP_CONNECTIONS, Kind::Gauge, Unit::Count, "XMPP connections open, by transport"),
    m(XMPP_CONNECTIONS_ACCEPTED, Kind::Counter, Unit::Count, "XMPP connections accepted, by transport"),
    m(XMPP_CONNECTIONS_REFUSED, Kind::Counter, Unit::Count, "XMPP connections refused by a connection cap, by transport and reason"),
    m(XMPP_STANZAS_RECEIVED, Kind::Counter, Unit::Count, "Stanzas read from bound XMPP streams, by kind (message, presence, iq)"),
    m(XMPP_STANZAS_SENT, Kind::Counter, Unit::Count, "Stanzas written to bound XMPP streams, by kind (message, presence, iq)"),
    m(LOGINS, Kind::Counter, Unit::Count, "Login attempts, by entry point (rest_session, rest_login, xmpp_sasl), method (password, token, scram) and outcome"),
    m(MESSAGES_STORED, Kind::Counter, Unit::Count, "Messages made durable by the history writer"),
    m(HISTORY_BATCH_SIZE, Kind::Histogram, Unit::Count, "Messages per group-commit transaction of the history writer"),
    m(MESSAGE_STORE_DURATION, Kind::Histogram, Unit::Seconds, "Time from handing a message to the history writer until it is durable"),
    m(DB_QUERY_DURATION, Kind::Histogram, Unit::Seconds, "Time of hot-path database operations, by query"),
    m(DB_POOL_MAX, Kind::Gauge, Unit::Count, "Most connections the database pool may hold"),
    m(DB_POOL_CONNECTIONS, Kind::Gauge, Unit::Count, "Connections the database pool holds (busy and idle)"),
    m(DB_POOL_AVAILABLE, Kind::Gauge, Unit::Count, "Idle connections in the database pool"),
    m(DB_POOL_WAITING, Kind::Gauge, Unit::Count, "Callers waiting for a database connection"),
    m(DB_EMBEDDED_RESTARTS, Kind::Counter, Unit::Count, "Times the embedded PostgreSQL died and its supervisor restarted it"),
    m(HUB_SESSIONS, Kind::Gauge, Unit::Count, "Bound XMPP sessions (resources) in the hub"),
    m(HUB_USERS_ONLINE, Kind::Gauge, Unit::Count, "Users with at least one bound XMPP session"),
    m(HUB_ROOMS, Kind::Gauge, Unit::Count, "Group rooms with at least one joined occupant"),
    m(QUEUE_DROPS, Kind::Counter, Unit::Count, "Deliveries dropped by a full queue or a fan-out loop that fell behind, by queue"),
    m(FANOUT_LAG, Kind::Histogram, Unit::Seconds, "Time from a chat event's publication until its stanzas are queued to the connected recipients"),
    m(PUSH_DELIVERIES, Kind::Counter, Unit::Count, "Push and webhook deliveries from the outbox, by kind (alert, event, webhook) and outcome (delivered, skipped, dead_token, retried, dead_letter)"),
    m(PUSH_DELIVERY_DURATION, Kind::Histogram, Unit::Seconds, "Time of one push or webhook delivery attempt, by kind"),
    m(PUSH_OUTBOX_DEPTH, Kind::Gauge, Unit::Count, "Push and webhook deliveries waiting in the outbox (sampled every push.depth_sample_secs)"),
    m(PUSH_DEAD_LETTERS, Kind::Gauge, Unit::Count, "Push and webhook deliveries in the dead-letter table (sampled every push.depth_sample_secs)"),
    m(HTTP_REQUESTS, Kind::Counter, Unit::Count, "REST requests answered, by route pattern and status"),
    m(HTTP_REQUEST_DURATION, Kind::Histogram, Unit::Seconds, "REST request latency, by route pattern"),
    m(CLUSTER_ROOM_MESSAGES, Kind::Counter, Unit::Count, "Room traffic sent on the cluster bus, by kind (stanza: one per other node with recipients per room message; occupant; occupancy snapshot)"),
];

/// Bucket bounds of every `*_seconds` histogram: 0.5 ms (a cached lookup) to 10 s (a stalled
/// database), so both the normal case and a degradation are visible.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds of the group-commit batch size (`chat.history_batch_max` is 256 by default).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Histogram samples wait in the recorder until drained into their buckets (at a scrape or an
/// upkeep): an upkeep this often keeps that memory bounded when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (first call) and returns its handle for rendering.
/// `None` when another recorder was installed first (embedding programs may bring their own).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = builder().ok()?.install_recorder().ok()?;
            describe();
            let upkeep = handle.clone();
            // A thread, not a task: the recorder outlives any one runtime (tests run many).
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            Some(handle)
        })
        .as_ref()
}

/// Real Prometheus histograms (buckets), not the exporter's default summaries: buckets
/// aggregate across instances and over time windows in PromQL; quantiles do not.
fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(HISTORY_BATCH_SIZE.into()), BATCH_BUCKETS)
}

type Sampler = Box<dyn Fn() + Send + Sync>;

/// Gauges read at scrape time (pool, hub): each server registers one; see [`on_scrape`].
static SAMPLERS: Mutex<Vec<(u64, Sampler)>> = Mutex::new(Vec::new());
static NEXT_SAMPLER: AtomicU64 = AtomicU64::new(0);

/// Runs `sample` before every rendering of `/metrics`, until the guard is dropped: gauges of
/// state that is cheap to read but would cost something to track on every change (the pool's
/// counts, the hub's sizes) are set exactly when they are looked at, and cost nothing otherwise.
/// `sample` must be quick and must not render.
pub fn on_scrape(sample: impl Fn() + Send + Sync + 'static) -> SamplerGuard {
    let id = NEXT_SAMPLER.fetch_add(1, Ordering::Relaxed);
    samplers().push((id, Box::new(sample)));
    SamplerGuard(id)
}

/// Unregisters its sampler when dropped (the server that registered it stopped).
pub struct SamplerGuard(u64);

impl Drop for SamplerGuard {
    fn drop(&mut self) {
        samplers().retain(|(id, _)| *id != self.0);
    }
}

fn samplers() -> std::sync::MutexGuard<'static, Vec<(u64, Sampler)>> {
    SAMPLERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Prometheus text exposition of every metric recorded so far, after the samplers ran.
pub fn render() -> String {
    let Some(h) = handle() else {
        return String::new();
    };
    for (_, sample) in samplers().iter() {
        sample();
    }
    h.render()
}

/// Metric names and their help text, registered with the recorder once.
fn describe() {
    for m in METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.unit, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.unit, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_by_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} described twice", m.name);
            assert!(m.name.starts_with("parley_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert_eq!(
                m.unit == Unit::Seconds,
                m.name.ends_with("_seconds"),
                "{}: durations are in seconds and say so",
                m.name
            );
            assert!(!m.help.is_empty());
        }
    }

    /// The layers below (`db`, `identity`, `chat`, `hub`) import this file for metric names; it
    /// must stay a leaf so that does not tie them to the rest of `ops`.
    #[test]
    fn telemetry_imports_nothing_of_the_crate() {
        let src = include_str!("telemetry.rs");
        let code: String = src
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        let needle = ["crate", "::"].concat();
        assert!(!code.contains(&needle), "telemetry.rs names a crate module");
        let sup = ["super", "::"].concat();
        let uses_super = code
            .split("mod tests")
            .next()
            .is_some_and(|c| c.contains(&sup));
        assert!(!uses_super, "telemetry.rs names a sibling module");
    }
}
