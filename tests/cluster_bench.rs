//! Several nodes' figures for BENCHMARKS.md ("Several nodes") — not a test of correctness, and
//! ignored by `cargo test`. Run it alone, optimised:
//!
//! `cargo test --release --test suite cluster_bench -- --ignored --nocapture`
//!
//! In ONE run, one after the other on one shared database: a single node (no NATS, as a server
//! runs without `cluster.nats_url`), then 2 and 3 nodes joined by a real `nats-server`. The same
//! generator (this test process, one tokio thread) drives each, spreading its users over the
//! nodes round robin, and measures:
//!
//! - **pairs**: P pairs exchange 1:1 messages, closed loop (W messages circulating each way per
//!   pair); the two users of a pair sit on different nodes whenever there are several, so every
//!   message crosses NATS. Delivered msgs/s and p50/p99 end-to-end latency.
//! - **room**: one group dialog of 100 occupants spread over the nodes, S senders each with W
//!   messages in flight (released by the sender's own copy). Deliveries/s (every copy every
//!   occupant receives) and p99.
//! - **idle**: C authenticated connections spread over the nodes: login rate and each node's
//!   RSS growth per connection.
//!
//! With two CPUs or more, the nodes and `nats-server` are pinned to CPU 0 and the generator to
//! CPU 1 (PostgreSQL is not pinned: 1:1 and room deliveries do not touch it), so on a two-core
//! machine the cluster shares one core: the figures show what crossing the bus costs, not what
//! adding machines gains. Each phase also reports the CPU the nodes (together) and the
//! generator used, so a saturated generator shows. Bounded: loopback only, every wait has a
//! deadline, the file-descriptor limit is 20,000 per process (the generator holds one per
//! connection; the idle count is capped below it).
//!
//! Knobs (environment, for a quick debug smoke): PARLEY_CLUSTER_BENCH_NODES ("1,2,3"),
//! _SECS (10), _PAIRS (50), _WINDOW (16), _ROOM (100 occupants), _SENDERS (5),
//! _ROOM_WINDOW (4), _IDLE (12000 connections per configuration).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::common::cluster::{shared_database, Nats};
use crate::common::spawn::{free_port, Parley};
use crate::common::xmpp::{Addrs, Client, Via};
use crate::common::{Http, PASSWORD};

/// The generator keeps this many descriptors for itself (database, HTTP, logs, nodes' pipes).
const FD_RESERVE: usize = 1000;
const FD_LIMIT: u64 = 20_000;
const LOGIN_CONCURRENCY: usize = 32;
const DRAIN: Duration = Duration::from_secs(10);
/// Quiet time after which a drain is over.
const QUIET: Duration = Duration::from_secs(1);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(format!("PARLEY_CLUSTER_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    /// CPUs this process may use, before it pins itself.
    cpus: usize,
    secs: u64,
    pairs: usize,
    window: usize,
    room: usize,
    senders: usize,
    room_window: usize,
    idle: usize,
}

/// Every thread of process `pid` onto `cpu` (threads it starts later inherit it).
fn pin(pid: u32, cpu: usize) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: a zeroed cpu_set_t is a valid empty set; the call reads it only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (tick(11) + tick(12)) / hz.max(1.0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = FD_LIMIT.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn fd_limit() -> usize {
    // SAFETY: as above.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur as usize
        } else {
            1024
        }
    }
}

/// One node of a configuration.
struct BenchNode {
    p: Parley,
    addrs: Addrs,
    admin: Http,
}

/// The application and users every configuration shares (one database).
struct World {
    db: String,
    app: Value,
    /// XMPP local parts, and REST ids.
    users: Vec<(String, u64)>,
    room: Option<String>,
}

async fn start_node(db: &str, nats: Option<&Nats>, tag: &str, name: &str) -> BenchNode {
    let port = |_: ()| format!("127.0.0.1:{}", free_port());
    let (xmpp, tls, ws, admin) = (port(()), port(()), port(()), port(()));
    let mut env: Vec<(String, String)> = [
        ("PARLEY_XMPP_ADDR", xmpp.clone()),
        ("PARLEY_XMPP_TLS_ADDR", tls.clone()),
        ("PARLEY_WS_ADDR", ws.clone()),
        ("PARLEY_ADMIN_ADDR", admin.clone()),
        // What tools/bench.sh lifts for every server: caps off, rate limits out of reach.
        ("PARLEY_XMPP_MAX_CONNECTIONS", "0".into()),
        ("PARLEY_XMPP_MAX_CONNECTIONS_PER_IP", "0".into()),
        ("PARLEY_HTTP_MAX_CONNECTIONS", "0".into()),
        ("PARLEY_HTTP_MAX_CONNECTIONS_PER_IP", "0".into()),
        ("PARLEY_HTTP_REQUESTS_PER_SEC_PER_IP", "100000000".into()),
        ("PARLEY_HTTP_REQUEST_BURST_PER_IP", "100000000".into()),
        ("PARLEY_HTTP_REQUESTS_PER_SEC_PER_TOKEN", "100000000".into()),
        ("PARLEY_HTTP_REQUEST_BURST_PER_TOKEN", "100000000".into()),
        ("PARLEY_CHAT_MESSAGES_PER_SEC_PER_USER", "100000000".into()),
        ("PARLEY_CHAT_MESSAGE_BURST_PER_USER", "100000000".into()),
        ("PARLEY_PASSWORDS_MAX_PENDING_HASHES", "100000".into()),
        ("PARLEY_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b))
    .collect();
    if let Some(n) = nats {
        env.push(("PARLEY_CLUSTER_NATS_URL".into(), n.url()));
        env.push(("PARLEY_CLUSTER_NODE_NAME".into(), name.into()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let p = Parley::start_on(tag, db, &env).await;
    let a = |s: &str| s.parse().expect("an address");
    BenchNode {
        p,
        addrs: Addrs {
            tcp: a(&xmpp),
            tls: a(&tls),
            ws: a(&ws),
        },
        admin: Http::new(a(&admin)),
    }
}

/// Messages the nodes dropped at their cluster queues (full, refused, oversize), all nodes
/// together, from each node's `/metrics`.
async fn cluster_drops(nodes: &[BenchNode]) -> u64 {
    let mut total = 0u64;
    for n in nodes {
        let r = n.admin.get("/metrics", None).await;
        total += r
            .body
            .lines()
            .filter(|l| l.starts_with("parley_queue_drops_total{") && l.contains("\"cluster_"))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum::<f64>() as u64;
    }
    total
}

/// Until every node lists every other as a peer.
async fn wait_peers(nodes: &[BenchNode], names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, n) in nodes.iter().enumerate() {
        for (j, other) in names.iter().enumerate() {
            if i == j {
                continue;
            }
            loop {
                let r = n.admin.get("/readyz", None).await;
                let seen = r.status == 200
                    && r.json()["peers"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|x| x == other.as_str()));
                if seen {
                    break;
                }
                assert!(Instant::now() < deadline, "{} never saw {other}", names[i]);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Signs up users `have..want` (REST, 16 requests in flight).
async fn make_users(http: &Http, world: &mut World, want: usize) {
    let have = world.users.len();
    if want <= have {
        return;
    }
    let r = http
        .post_json(
            "/session",
            None,
            json!({"application_id": world.app["application_id"], "auth_key": world.app["auth_key"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.json()["session"]["token"].as_str().unwrap().to_owned();
    let app = world.app["application_id"].clone();
    let mut set = JoinSet::new();
    const WORKERS: usize = 16;
    for w in 0..WORKERS {
        let (http, token, app) = (http.clone(), token.clone(), app.clone());
        set.spawn(async move {
            let mut got = Vec::new();
            for i in (have..want).filter(|i| i % WORKERS == w) {
                let r = http
                    .post_json(
                        "/users",
                        Some(&token),
                        json!({"user": {"login": format!("cb{i}"), "password": PASSWORD}}),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.body);
                let id = r.json()["user"]["id"].as_u64().expect("a user id");
                got.push((i, (format!("{id}-{app}"), id)));
            }
            got
        });
    }
    let mut all: Vec<(usize, (String, u64))> = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.expect("sign-up worker"));
    }
    all.sort_by_key(|(i, _)| *i);
    world.users.extend(all.into_iter().map(|(_, u)| u));
}

/// The group dialog of users `0..k` (created once, by user 0).
async fn room(http: &Http, world: &mut World, k: usize) -> String {
    if let Some(r) = &world.room {
        return r.clone();
    }
    let r = http
        .post_json(
            "/session",
            None,
            json!({"application_id": world.app["application_id"], "auth_key": world.app["auth_key"],
                   "user": {"login": "cb0", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.json()["session"]["token"].as_str().unwrap().to_owned();
    let ids: Vec<String> = world.users[..k].iter().map(|u| u.1.to_string()).collect();
    let r = http
        .post_json(
            "/chat/Dialog",
            Some(&token),
            json!({"type": 2, "name": "bench room", "occupants_ids": ids.join(",")}),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.body);
    let jid = r.json()["xmpp_room_jid"]
        .as_str()
        .expect("xmpp_room_jid")
        .to_owned();
    world.room = Some(jid.clone());
    jid
}

/// Logs users `ids` in, user `i` on node `i % nodes`, `LOGIN_CONCURRENCY` at a time, each
/// available (its presence echoed). Returns the clients in the order of `ids`.
async fn login_all(nodes: &[Addrs], world: &World, ids: &[usize]) -> Vec<Client> {
    let mut out: Vec<Option<Client>> = (0..ids.len()).map(|_| None).collect();
    for chunk in (0..ids.len()).collect::<Vec<_>>().chunks(LOGIN_CONCURRENCY) {
        let mut set = JoinSet::new();
        for &slot in chunk {
            let u = ids[slot];
            let addrs = nodes[u % nodes.len()];
            let local = world.users[u].0.clone();
            set.spawn(async move {
                let mut c =
                    Client::login_as(addrs, Via::Tcp, &local, PASSWORD, Some("bench")).await;
                c.nodelay();
                c.available().await;
                c.patience = Duration::from_secs(3600);
                (slot, c)
            });
        }
        while let Some(r) = set.join_next().await {
            let (slot, c) = r.expect("login task");
            out[slot] = Some(c);
        }
    }
    out.into_iter().map(|c| c.expect("logged in")).collect()
}

/// What one connection of a measured phase saw.
#[derive(Default)]
struct Seen {
    sent: u64,
    received: u64,
    /// Bounces (`type='error'`).
    errors: u64,
    /// Received during the measured window.
    measured: u64,
    latencies_us: Vec<u32>,
}

/// What a connection does: answer its pair's peer, or send into a room (released by its own
/// copy), or only count what the room delivers.
#[derive(Clone)]
enum Role {
    Pair { peer: String },
    RoomSender { room: String, me: usize },
    RoomListener,
}

fn body(me: usize, seq: u64, t0: Instant) -> String {
    format!("lg {me} {seq} {}", t0.elapsed().as_nanos())
}

/// Drives one connection: `window` messages first, then one more per release, until `stop`;
/// then reads until the drain is quiet.
async fn drive(
    mut c: Client,
    role: Role,
    window: usize,
    t0: Instant,
    start: Instant,
    stop: Instant,
) -> Seen {
    let mut seen = Seen::default();
    let mut seq = 0u64;
    let next = |seen: &mut Seen, seq: &mut u64| {
        *seq += 1;
        seen.sent += 1;
        match &role {
            Role::Pair { peer } => format!(
                "<message to='{peer}' type='chat'><body>{}</body></message>",
                body(0, *seq, t0)
            ),
            Role::RoomSender { room, me } => format!(
                "<message to='{room}' type='groupchat'><body>{}</body></message>",
                body(*me, *seq, t0)
            ),
            Role::RoomListener => unreachable!("listeners do not send"),
        }
    };
    if !matches!(role, Role::RoomListener) {
        for _ in 0..window {
            let xml = next(&mut seen, &mut seq);
            c.send_raw(&xml).await;
        }
    }
    let drain_end = stop + DRAIN;
    loop {
        let now = Instant::now();
        let measuring = now < stop;
        let wait_until = if measuring {
            stop
        } else {
            (now + QUIET).min(drain_end)
        };
        let e = match tokio::time::timeout_at(wait_until, c.try_next()).await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            // The window ended: on to the drain.
            Err(_) if measuring => continue,
            Err(_) => break,
        };
        if e.name != "message" {
            continue;
        }
        if e.attr("type") == Some("error") {
            if seen.errors == 0 {
                eprintln!("cluster_bench: a bounce: {e:?}");
            }
            seen.errors += 1;
            continue;
        }
        let text = e
            .child("body", "jabber:client")
            .map(|b| b.text())
            .unwrap_or_default();
        let mut f = text.split(' ');
        if f.next() != Some("lg") {
            continue;
        }
        let (Some(from), Some(_), Some(ns)) = (
            f.next().and_then(|v| v.parse::<usize>().ok()),
            f.next(),
            f.next().and_then(|v| v.parse::<u128>().ok()),
        ) else {
            continue;
        };
        let now = Instant::now();
        seen.received += 1;
        if now >= start && now < stop {
            seen.measured += 1;
            let lat = t0.elapsed().as_nanos().saturating_sub(ns) / 1000;
            seen.latencies_us.push(lat.min(u32::MAX as u128) as u32);
        }
        if now < stop {
            let release = match &role {
                Role::Pair { .. } => true,
                Role::RoomSender { me, .. } => from == *me,
                Role::RoomListener => false,
            };
            if release {
                let xml = next(&mut seen, &mut seq);
                c.send_raw(&xml).await;
            }
        }
    }
    seen
}

/// A phase's totals.
struct Phase {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    sent: u64,
    received: u64,
    errors: u64,
    nodes_cpu: f64,
    gen_cpu: f64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

/// Runs `conns` with their roles for `secs` (one second of warm-up before the window).
async fn measure(conns: Vec<(Client, Role)>, window: usize, secs: u64, pids: &[u32]) -> Phase {
    let t0 = Instant::now();
    let start = t0 + Duration::from_secs(1);
    let stop = start + Duration::from_secs(secs);
    let mut set = JoinSet::new();
    for (c, role) in conns {
        set.spawn(drive(c, role, window, t0, start, stop));
    }
    tokio::time::sleep_until(start).await;
    let cpu0: f64 = pids.iter().map(|&p| cpu_secs(p)).sum();
    let gen0 = cpu_secs(std::process::id());
    tokio::time::sleep_until(stop).await;
    let cpu1: f64 = pids.iter().map(|&p| cpu_secs(p)).sum();
    let gen1 = cpu_secs(std::process::id());
    let (mut sent, mut received, mut errors, mut measured, mut lat) = (0, 0, 0, 0, Vec::new());
    while let Some(r) = set.join_next().await {
        let s = r.expect("connection task");
        sent += s.sent;
        received += s.received;
        errors += s.errors;
        measured += s.measured;
        lat.extend(s.latencies_us);
    }
    lat.sort_unstable();
    eprintln!("cluster_bench:   sent {sent}, received {received}, bounced {errors}");
    let w = secs as f64;
    Phase {
        per_sec: measured as f64 / w,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        sent,
        received,
        errors,
        nodes_cpu: (cpu1 - cpu0) / w * 100.0,
        gen_cpu: (gen1 - gen0) / w * 100.0,
    }
}

/// One configuration's figures.
struct Row {
    nodes: usize,
    pairs: Phase,
    room: Phase,
    room_expected: u64,
    /// Cluster queue drops during the pairs and the room phase.
    drops: (u64, u64),
    idle: usize,
    idle_secs: f64,
    /// Per node: connections held, RSS growth in KiB.
    idle_nodes: Vec<(usize, u64, u64)>,
    gen_fds: usize,
}

async fn run_config(n: usize, world: &mut World, k: &Knobs) -> Row {
    let nats = if n > 1 {
        Some(Nats::start().await)
    } else {
        None
    };
    let names: Vec<String> = (0..n).map(|i| format!("bench-{n}n-{i}")).collect();
    let mut nodes = Vec::new();
    for name in &names {
        let tag = format!("{name}-{}", free_port());
        nodes.push(start_node(&world.db, nats.as_ref(), &tag, name).await);
    }
    if world.app.is_null() {
        world.app = serde_json::from_str(
            &std::fs::read_to_string(nodes[0].p.data.join("dev-application.json"))
                .expect("the development application file"),
        )
        .expect("JSON");
    }
    if n > 1 {
        wait_peers(&nodes, &names).await;
    }
    let pids: Vec<u32> = nodes
        .iter()
        .map(|b| b.p.pid())
        .chain(nats.as_ref().and_then(|x| x.pid()))
        .collect();
    if k.cpus >= 2 {
        for &p in &pids {
            pin(p, 0);
        }
    }
    let addrs: Vec<Addrs> = nodes.iter().map(|b| b.addrs).collect();
    let http = nodes[0].p.http.clone();
    make_users(&http, world, k.idle.max(2 * k.pairs).max(k.room)).await;

    // (a) pairs: user 2i on node 2i % n, its peer 2i+1 on the next node.
    let ids: Vec<usize> = (0..2 * k.pairs).collect();
    let clients = login_all(&addrs, world, &ids).await;
    // Sessions are announced over the bus as they bind; give the last ones time to cross.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conns: Vec<(Client, Role)> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let peer = world.users[i ^ 1].0.clone();
            (
                c,
                Role::Pair {
                    peer: format!("{peer}@localhost"),
                },
            )
        })
        .collect();
    let d0 = cluster_drops(&nodes).await;
    let pairs = measure(conns, k.window, k.secs, &pids).await;
    let d1 = cluster_drops(&nodes).await;

    // (b) one room of k.room occupants spread over the nodes, k.senders senders.
    let jid = room(&http, world, k.room).await;
    let ids: Vec<usize> = (0..k.room).collect();
    let clients = login_all(&addrs, world, &ids).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conns: Vec<(Client, Role)> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let role = if i < k.senders {
                Role::RoomSender {
                    room: jid.clone(),
                    me: i,
                }
            } else {
                Role::RoomListener
            };
            (c, role)
        })
        .collect();
    let d2 = cluster_drops(&nodes).await;
    let room = measure(conns, k.room_window, k.secs, &pids).await;
    let d3 = cluster_drops(&nodes).await;
    let room_expected = room.sent * k.room as u64;

    // (c) idle connections spread over the nodes.
    let idle = k.idle;
    let before: Vec<u64> = nodes.iter().map(|b| rss_kib(b.p.pid())).collect();
    let t = Instant::now();
    let ids: Vec<usize> = (0..idle).collect();
    let held = login_all(&addrs, world, &ids).await;
    let idle_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gen_fds = open_fds();
    let idle_nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let count = (0..idle).filter(|u| u % n == i).count();
            (count, before[i], rss_kib(b.p.pid()))
        })
        .collect();
    drop(held);
    drop(nodes);
    drop(nats);
    // Let the killed nodes' sockets and the database's backends go before the next one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Row {
        nodes: n,
        pairs,
        room,
        room_expected,
        drops: (d1.saturating_sub(d0), d3.saturating_sub(d2)),
        idle,
        idle_secs,
        idle_nodes,
        gen_fds,
    }
}

#[tokio::test]
#[ignore = "benchmark: cargo test --release --test suite cluster_bench -- --ignored --nocapture"]
async fn cluster_bench() {
    raise_fd_limit();
    let limit = fd_limit();
    let k = Knobs {
        cpus: cpus(),
        secs: env_or("SECS", 10) as u64,
        pairs: env_or("PAIRS", 50),
        window: env_or("WINDOW", 16),
        room: env_or("ROOM", 100),
        senders: env_or("SENDERS", 5),
        room_window: env_or("ROOM_WINDOW", 4),
        idle: env_or("IDLE", 12000).min(limit.saturating_sub(FD_RESERVE)),
    };
    assert!(k.senders <= k.room && k.room >= 1 && k.pairs >= 1);
    let configs: Vec<usize> = std::env::var("PARLEY_CLUSTER_BENCH_NODES")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .filter(|&n| n >= 1)
        .collect();
    // The shared database (and, when the suite runs it, its embedded PostgreSQL) first, so
    // PostgreSQL is not pinned with the generator.
    let db = shared_database().await;
    if k.cpus >= 2 {
        pin(std::process::id(), 1);
    }
    let mut world = World {
        db,
        app: Value::Null,
        users: Vec::new(),
        room: None,
    };
    let mut rows = Vec::new();
    for &n in &configs {
        eprintln!("cluster_bench: {n} node(s)…");
        rows.push(run_config(n, &mut world, &k).await);
    }

    println!(
        "\ncluster_bench: {} s per phase, {} pairs × window {} each way, room of {} with {} \
         senders × window {}, {} idle connections; {} CPUs, nodes{} on CPU 0, generator on \
         CPU 1; fd limit {limit}",
        k.secs,
        k.pairs,
        k.window,
        k.room,
        k.senders,
        k.room_window,
        k.idle,
        k.cpus,
        if configs.iter().any(|&n| n > 1) {
            " and nats-server"
        } else {
            ""
        },
    );
    println!(
        "\n| nodes | 1:1 msgs/s | 1:1 p50 / p99 ms | 1:1 lost, bounced | room deliveries/s | room p99 ms | \
         room lost, bounced | nodes CPU % (1:1, room) | generator CPU % (1:1, room) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.2} / {:.2} | {}, {} | {:.0} | {:.2} | {}, {} | {:.0}, {:.0} | {:.0}, {:.0} |",
            r.nodes,
            r.pairs.per_sec,
            r.pairs.p50_ms,
            r.pairs.p99_ms,
            r.pairs.sent.saturating_sub(r.pairs.received),
            r.pairs.errors,
            r.room.per_sec,
            r.room.p99_ms,
            r.room_expected.saturating_sub(r.room.received),
            r.room.errors,
            r.pairs.nodes_cpu,
            r.room.nodes_cpu,
            r.pairs.gen_cpu,
            r.room.gen_cpu,
        );
    }
    // What a message costs the cluster, whatever share of the core it got: on a shared machine
    // the rates above follow the CPU the scheduler gave the nodes.
    println!(
        "\n| nodes | 1:1 msgs per node-CPU-second | room deliveries per node-CPU-second | \
         cluster queue drops (1:1, room) |"
    );
    println!("|---|---|---|---|");
    for r in &rows {
        let per_cpu = |p: &Phase| p.per_sec / (p.nodes_cpu / 100.0).max(1e-9);
        println!(
            "| {} | {:.0} | {:.0} | {}, {} |",
            r.nodes,
            per_cpu(&r.pairs),
            per_cpu(&r.room),
            r.drops.0,
            r.drops.1
        );
    }
    println!(
        "\n| nodes | idle connections | logins/s | per node: connections, RSS before → after MiB, \
         KiB per connection | generator fds |"
    );
    println!("|---|---|---|---|---|");
    for r in &rows {
        let nodes: Vec<String> = r
            .idle_nodes
            .iter()
            .map(|&(c, b, a)| {
                let kib = a.saturating_sub(b) as f64 / c.max(1) as f64;
                format!(
                    "{c}, {:.0} → {:.0}, {kib:.1}",
                    b as f64 / 1024.0,
                    a as f64 / 1024.0
                )
            })
            .collect();
        println!(
            "| {} | {} | {:.0} | {} | {} |",
            r.nodes,
            r.idle,
            r.idle as f64 / r.idle_secs.max(1e-9),
            nodes.join("; "),
            r.gen_fds
        );
    }
    for r in &rows {
        assert!(
            r.pairs.received > 0 && r.room.received > 0,
            "{} node(s): nothing was delivered",
            r.nodes
        );
    }
}
