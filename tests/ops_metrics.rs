//! Metrics on the admin port (`GET /metrics`), read as Prometheus text after real traffic.
//!
//! The recorder is process-wide and tests run in parallel, so counters are compared between two
//! scrapes as "moved by at least" what this test did, never as totals. Gauges that other tests'
//! connections would move are checked exactly in a `parley` process of their own.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parley::ops::telemetry::{self, Kind, METRICS};
use serde_json::{json, Value};

use crate::common::xmpp::{Client, Via, STREAM_HEADER, WS_OPEN};
use crate::common::{fresh_database, test_config, test_data_dir, Http, TestServer, PASSWORD};

/// One sample line of the exposition: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses `name{a="x",b="y"} 1.5` lines (comments skipped; label values unescaped).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Vec::new()),
            Some((name, rest)) => (name.to_owned(), labels(rest.trim_end_matches('}'))),
        };
        out.push((name, labels, value));
    }
    out
}

fn labels(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some((key, rest)) = s.split_once("=\"") {
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| if c == 'n' { '\n' } else { c })),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_owned(), value));
        s = &rest[end..];
    }
    out
}

/// The sum over every series of `name` carrying all of `want` among its labels.
fn value(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

async fn scrape(admin: &Http) -> String {
    let r = admin.get("/metrics", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Asserts `name{want}` grew by at least `by` from `before` to `after`.
fn assert_moved(before: &str, after: &str, name: &str, want: &[(&str, &str)], by: f64) {
    let (a, b) = (value(before, name, want), value(after, name, want));
    assert!(
        b - a >= by,
        "{name}{want:?} moved {a} → {b}, expected at least +{by}"
    );
}

/// Re-scrapes until `ok` holds for the text (events are counted just after they are answered).
async fn scrape_until(admin: &Http, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(admin).await;
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}; last scrape:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn xmpp_logins_are_counted_by_method_and_outcome() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    let (alice, token) = srv.chat_user("m_login").await;
    let before = scrape(&admin).await;
    Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    Client::login(srv.xmpp, Via::Ws, &alice, &token).await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&alice, "wrong-password").await, "not-authorized");
    let after = scrape(&admin).await;
    let sasl = |method, outcome| {
        [
            ("via", "xmpp_sasl"),
            ("method", method),
            ("outcome", outcome),
        ]
    };
    assert_moved(
        &before,
        &after,
        telemetry::LOGINS,
        &sasl("password", "success"),
        1.0,
    );
    assert_moved(
        &before,
        &after,
        telemetry::LOGINS,
        &sasl("token", "success"),
        1.0,
    );
    assert_moved(
        &before,
        &after,
        telemetry::LOGINS,
        &sasl("password", "failure"),
        1.0,
    );
}

#[tokio::test]
async fn rest_password_logins_are_counted_by_entry_point_and_outcome() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    let before = scrape(&admin).await;
    srv.chat_user("m_rest_login").await; // POST /session with credentials: signed up, logged in
    let r = srv
        .http
        .post_json(
            "/session",
            None,
            json!({"application_id": srv.app.id.0, "auth_key": srv.app.auth_key,
                   "user": {"login": "m_rest_login", "password": "wrong-password"}}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let app_token = srv.app_token().await;
    let r = srv
        .http
        .post_json(
            "/login",
            Some(&app_token),
            json!({"login": "m_rest_login", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = scrape(&admin).await;
    let rest = |via, outcome| [("via", via), ("method", "password"), ("outcome", outcome)];
    assert_moved(
        &before,
        &after,
        telemetry::LOGINS,
        &rest("rest_session", "success"),
        1.0,
    );
    assert_moved(
        &before,
        &after,
        telemetry::LOGINS,
        &rest("rest_session", "failure"),
        1.0,
    );
    assert_moved(
        &before,
        &after,
        telemetry::LOGINS,
        &rest("rest_login", "success"),
        1.0,
    );
}

#[tokio::test]
async fn stanzas_are_counted_in_and_out_by_kind() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    let (alice, _) = srv.chat_user("m_st_a").await;
    let (bob, _) = srv.chat_user("m_st_b").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let before = scrape(&admin).await;
    a.available().await; // presence in, its echo out
    a.iq(
        "p1",
        "<iq type='get' id='p1' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='m1' xmlns='jabber:client'><body>hi</body></message>"
    ))
    .await;
    b.expect_named("message").await;
    let after = scrape(&admin).await;
    for kind in ["message", "presence", "iq"] {
        let k = [("kind", kind)];
        assert_moved(&before, &after, telemetry::XMPP_STANZAS_RECEIVED, &k, 1.0);
        assert_moved(&before, &after, telemetry::XMPP_STANZAS_SENT, &k, 1.0);
    }
}

#[tokio::test]
async fn stored_messages_and_group_commit_batches_are_recorded() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    let (alice, _) = srv.chat_user("m_hist_a").await;
    let (bob, _) = srv.chat_user("m_hist_b").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let before = scrape(&admin).await;
    for i in 0..3 {
        a.send_raw(&format!(
            "<message to='{bob}@localhost' type='chat' id='h{i}' xmlns='jabber:client'><body>kept</body>\
             <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>"
        ))
        .await;
        // Stored before it is relayed: its arrival means it is durable.
        b.expect_named("message").await;
    }
    let after = scrape(&admin).await;
    assert_moved(&before, &after, telemetry::MESSAGES_STORED, &[], 3.0);
    let count = |n: &str| format!("{n}_count");
    assert_moved(
        &before,
        &after,
        &count(telemetry::HISTORY_BATCH_SIZE),
        &[],
        1.0,
    );
    assert_moved(
        &before,
        &after,
        &count(telemetry::MESSAGE_STORE_DURATION),
        &[],
        3.0,
    );
    let batch = [("query", "history_batch")];
    assert_moved(
        &before,
        &after,
        &count(telemetry::DB_QUERY_DURATION),
        &batch,
        1.0,
    );
    // Real histograms: cumulative buckets up to +Inf, which equals the count.
    let bucket = format!("{}_bucket", telemetry::HISTORY_BATCH_SIZE);
    assert!(value(&after, &bucket, &[("le", "1")]) >= 1.0, "{after}");
    assert_eq!(
        value(&after, &bucket, &[("le", "+Inf")]),
        value(&after, &count(telemetry::HISTORY_BATCH_SIZE), &[])
    );
    let seconds = format!("{}_bucket", telemetry::DB_QUERY_DURATION);
    assert!(
        value(
            &after,
            &seconds,
            &[("query", "history_batch"), ("le", "10")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn rest_messages_delivered_over_xmpp_record_the_fan_out_lag() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    let (alice_token, _) = srv.user_token("m_fan_a").await;
    let (_, bob_id) = srv.user_token("m_fan_b").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &srv.local(bob_id), PASSWORD).await;
    let d = srv
        .dialog(&alice_token, json!({"type": 3, "occupants_ids": [bob_id]}))
        .await;
    let before = scrape(&admin).await;
    let r = srv
        .http
        .post_json(
            "/chat/Message",
            Some(&alice_token),
            json!({"chat_dialog_id": d["_id"], "message": "live", "send_to_chat": 1}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    b.expect_named("message").await;
    let lag = format!("{}_count", telemetry::FANOUT_LAG);
    let base = value(&before, &lag, &[]);
    scrape_until(&admin, "fan-out lag recorded", |t| {
        value(t, &lag, &[]) >= base + 1.0
    })
    .await;
}

#[tokio::test]
async fn connections_over_a_cap_are_counted_as_refused_with_the_reason() {
    let mut config = test_config();
    config.xmpp.max_connections_per_ip = 1;
    let srv = TestServer::start_with(config).await;
    let admin = srv.admin();
    let before = scrape(&admin).await;
    let mut first = Client::connect(srv.xmpp, Via::Tcp).await;
    first.open().await; // accepted: holds the address's one slot
    let mut second = Client::connect(srv.xmpp, Via::Tcp).await;
    second.send_raw(STREAM_HEADER).await;
    assert_eq!(second.stream_error().await, "policy-violation");
    let after = scrape(&admin).await;
    let starttls = [("transport", "tcp")];
    assert_moved(
        &before,
        &after,
        telemetry::XMPP_CONNECTIONS_ACCEPTED,
        &starttls,
        1.0,
    );
    let refused = [("transport", "tcp"), ("reason", "max_connections_per_ip")];
    assert_moved(
        &before,
        &after,
        telemetry::XMPP_CONNECTIONS_REFUSED,
        &refused,
        1.0,
    );
}

#[tokio::test]
async fn pool_and_hub_gauges_are_read_at_each_scrape() {
    let srv = TestServer::start().await;
    let text = scrape(&srv.admin()).await;
    assert!(value(&text, telemetry::DB_POOL_MAX, &[]) >= 1.0, "{text}");
    for gauge in [
        telemetry::DB_POOL_CONNECTIONS,
        telemetry::DB_POOL_AVAILABLE,
        telemetry::DB_POOL_WAITING,
        telemetry::HUB_SESSIONS,
        telemetry::HUB_USERS_ONLINE,
        telemetry::HUB_ROOMS,
    ] {
        assert!(
            samples(&text).iter().any(|(n, _, _)| n == gauge),
            "{gauge} missing:\n{text}"
        );
    }
}

#[tokio::test]
async fn every_metric_served_is_described_with_help_text() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("m_help").await;
    Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let text = scrape(&srv.admin()).await;
    let helped: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_once(' ').map(|(n, _)| n))
        .collect();
    for (name, _, _) in samples(&text) {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| helped.contains(b))
            .unwrap_or(&name);
        if base.starts_with("parley_") {
            assert!(helped.contains(base), "{name} has no HELP line");
            assert!(
                METRICS.iter().any(|m| m.name == base),
                "{base} is not in telemetry::METRICS"
            );
        }
    }
}

// ---- The dashboard -----------------------------------------------------------------------------

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana-dashboard.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every `expr` of every panel (rows nest panels).
fn exprs(panels: &Value, out: &mut Vec<String>) {
    for p in panels.as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.to_owned());
            }
        }
        exprs(&p["panels"], out);
    }
}

/// The metric names a PromQL expression reads (`parley_…` identifiers), histogram series
/// suffixes taken off.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("parley_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| {
                METRICS
                    .iter()
                    .any(|m| m.name == *b && m.kind == Kind::Histogram)
            })
            .unwrap_or(name);
        out.push(base.to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_queries_only_described_metrics_and_every_one_of_them() {
    let d = dashboard();
    let mut all = Vec::new();
    exprs(&d["panels"], &mut all);
    assert!(!all.is_empty(), "no queries in the dashboard");
    let queried: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    let described: BTreeSet<String> = METRICS.iter().map(|m| m.name.to_owned()).collect();
    let unknown: Vec<_> = queried.difference(&described).collect();
    assert!(unknown.is_empty(), "queried but not described: {unknown:?}");
    let missing: Vec<_> = described.difference(&queried).collect();
    assert!(missing.is_empty(), "described but on no panel: {missing:?}");
}

#[test]
fn the_dashboard_takes_its_prometheus_datasource_from_a_variable() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "no Prometheus datasource variable"
    );
    let mut stack = vec![&d["panels"]];
    while let Some(panels) = stack.pop() {
        for p in panels.as_array().into_iter().flatten() {
            if p["type"] != "row" {
                assert_eq!(
                    p["datasource"]["uid"], "${datasource}",
                    "panel {} must use the variable",
                    p["title"]
                );
            }
            stack.push(&p["panels"]);
        }
    }
}

// ---- Connection gauges, in a process of their own ----------------------------------------------

/// A spawned server, killed when the test ends (a panic must not leave it running).
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A libpq key/value connection string for a test database (`database.url` accepts it).
fn conninfo(pg: &tokio_postgres::Config) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    for h in pg.get_hosts() {
        match h {
            tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={}", quote(h))),
            tokio_postgres::config::Host::Unix(p) => {
                parts.push(format!("host={}", quote(&p.to_string_lossy())))
            }
        }
    }
    if let Some(port) = pg.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(u) = pg.get_user() {
        parts.push(format!("user={}", quote(u)));
    }
    if let Some(p) = pg.get_password() {
        parts.push(format!("password={}", quote(&String::from_utf8_lossy(p))));
    }
    if let Some(d) = pg.get_dbname() {
        parts.push(format!("dbname={}", quote(d)));
    }
    parts.join(" ")
}

#[tokio::test]
async fn connection_gauges_follow_open_connections_by_transport() {
    let pg = fresh_database().await;
    let data = test_data_dir().join(format!("metrics-gauges-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (xmpp_port, ws_port, admin_port) = (free_port(), free_port(), free_port());
    let _server = Spawned(
        Command::new(env!("CARGO_BIN_EXE_parley"))
            .arg("serve")
            .env("PARLEY_DATA_DIR", &data)
            .env("PARLEY_DATABASE_URL", conninfo(&pg))
            .env("PARLEY_HTTP_ADDR", "127.0.0.1:0")
            .env("PARLEY_XMPP_ADDR", format!("127.0.0.1:{xmpp_port}"))
            .env("PARLEY_XMPP_TLS_ADDR", "127.0.0.1:0")
            .env("PARLEY_WS_ADDR", format!("127.0.0.1:{ws_port}"))
            .env("PARLEY_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("PARLEY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn parley"),
    );
    let admin = Http::new(([127, 0, 0, 1], admin_port).into());
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(admin.addr).await.is_err() {
        assert!(Instant::now() < deadline, "parley did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addrs = crate::common::xmpp::Addrs {
        tcp: ([127, 0, 0, 1], xmpp_port).into(),
        tls: ([127, 0, 0, 1], 1).into(), // unused
        ws: ([127, 0, 0, 1], ws_port).into(),
    };
    let open = |transport: &'static str, n: f64| {
        let t = [("transport", transport)];
        move |text: &str| value(text, telemetry::XMPP_CONNECTIONS, &t) == n
    };
    let mut tcp = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(addrs, Via::Tcp).await;
        c.open().await; // answered: the connection is being served
        tcp.push(c);
    }
    let mut ws = Client::connect(addrs, Via::Ws).await;
    ws.send_raw(WS_OPEN).await;
    ws.next().await.expect("open");
    scrape_until(&admin, "three TCP connections", open("tcp", 3.0)).await;
    scrape_until(&admin, "one WebSocket connection", open("ws", 1.0)).await;
    for mut c in tcp.drain(..2) {
        c.close().await;
    }
    scrape_until(&admin, "back to one TCP connection", open("tcp", 1.0)).await;
    drop(tcp);
    ws.drop_socket();
    scrape_until(&admin, "no TCP connection", open("tcp", 0.0)).await;
    scrape_until(&admin, "no WebSocket connection", open("ws", 0.0)).await;
    let _ = std::fs::remove_dir_all(&data);
}
