//! A real NATS server (the Debian package `nats-server`) on a free port, and Parley nodes
//! joined by it on one shared database.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::spawn::{free_port, Parley};
use super::xmpp::{Addrs, Client};
use super::{conn_string, fresh_database, Http};

/// A `nats-server` child process.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
}

impl Nats {
    /// Starts `nats-server` on a free loopback port and waits until it accepts connections.
    /// Panics (never skips) when the binary is missing.
    pub async fn start() -> Nats {
        let mut n = Nats {
            child: None,
            port: free_port(),
        };
        n.restart().await;
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port (after [`Nats::kill`]).
    pub async fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nats-server ({e}): install it (apt-get install -y nats-server, \
                     as .ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id, while it runs (benchmarks pin it to a CPU).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// SIGKILL: an outage.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

/// One Parley node of a test cluster.
pub struct Node {
    pub p: Parley,
    pub addrs: Addrs,
    /// The admin listener (`/readyz` reports the cluster there).
    pub admin: Http,
    pub name: String,
}

/// Environment that makes a node of the cluster on `nats` named `name` (fast heartbeats, so a
/// dead node is noticed within a second or two).
fn cluster_env(nats: &Nats, name: &str) -> Vec<(String, String)> {
    [
        ("PARLEY_CLUSTER_NATS_URL", nats.url()),
        ("PARLEY_CLUSTER_NODE_NAME", name.to_owned()),
        ("PARLEY_CLUSTER_HEARTBEAT_MS", "200".to_owned()),
        ("PARLEY_CLUSTER_NODE_TIMEOUT_MS", "1000".to_owned()),
        ("PARLEY_LOG_FORMAT", "json".to_owned()),
        ("PARLEY_LOG", "info".to_owned()),
        ("PARLEY_CHAT_MESSAGES_PER_SEC_PER_USER", "0".to_owned()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b))
    .collect()
}

impl Node {
    pub async fn start(nats: &Nats, db: &str, name: &str) -> Node {
        let env = cluster_env(nats, name);
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let tag = format!("cluster-{name}-{}", free_port());
        let mut p = Parley::start_on(&tag, db, &env).await;
        let line = p
            .log_line("admin listener", |v| {
                v["fields"]["message"] == "admin listener (metrics, probes)"
            })
            .await;
        let admin = line["fields"]["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("the admin address");
        let addrs = p.xmpp_addrs().await;
        Node {
            p,
            addrs,
            admin: Http::new(admin),
            name: name.to_owned(),
        }
    }

    /// SIGKILL: the node dies without a word to the others.
    pub fn kill9(&self) {
        self.p.signal(libc::SIGKILL);
    }
}

/// A fresh database for a cluster's nodes to share.
pub async fn shared_database() -> String {
    conn_string(&fresh_database().await)
}

impl Node {
    /// A session of the chat user `login` (password [`super::PASSWORD`]) opened over this
    /// node's REST API: (token, user id). Any node would do: the database is shared.
    pub async fn token(&self, login: &str) -> (String, i64) {
        let text = std::fs::read_to_string(self.p.data.join("dev-application.json"))
            .expect("the development application");
        let dev: serde_json::Value = serde_json::from_str(&text).expect("its JSON");
        let body = serde_json::json!({"application_id": dev["application_id"],
            "auth_key": dev["auth_key"], "user": {"login": login, "password": super::PASSWORD}});
        let r = self.p.http.post_json("/session", None, body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let s = &r.json()["session"];
        let token = s["token"].as_str().expect("a token").to_owned();
        (token, s["user_id"].as_i64().expect("a user id"))
    }

    /// The other nodes this node's `/readyz` lists as peers.
    pub async fn peers(&self) -> Vec<String> {
        let r = self.admin.get("/readyz", None).await;
        r.json()["peers"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A series' value in this node's `/metrics` (`name{labels}` exactly as rendered); 0 while
    /// it was never recorded.
    pub async fn metric(&self, series: &str) -> f64 {
        let r = self.admin.get("/metrics", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }
}

/// Waits until every node lists every other as a peer.
pub async fn wait_mesh(nodes: &[&Node]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in nodes {
        for other in nodes.iter().filter(|o| o.name != n.name) {
            while !n.peers().await.contains(&other.name) {
                assert!(
                    Instant::now() < deadline,
                    "{} never saw {}",
                    n.name,
                    other.name
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Two nodes on one database and one NATS, and two users made on the first: XMPP local parts
/// of `alice` and `bob`.
pub struct Two {
    pub nats: Nats,
    pub a: Node,
    pub b: Node,
    pub alice: String,
    pub bob: String,
}

impl Two {
    /// Started, and each node sees the other.
    pub async fn start() -> Two {
        let nats = Nats::start().await;
        let db = shared_database().await;
        let a = Node::start(&nats, &db, "node-a").await;
        let b = Node::start(&nats, &db, "node-b").await;
        let alice = a.p.chat_user("alice").await;
        let bob = a.p.chat_user("bob").await;
        let two = Two {
            nats,
            a,
            b,
            alice,
            bob,
        };
        two.wait_peers().await;
        two
    }

    /// Until each node lists the other as a peer.
    pub async fn wait_peers(&self) {
        wait_mesh(&[&self.a, &self.b]).await;
    }
}

/// Waits until a headline sent by `probe` (on the other node) to `c`'s full JID arrives: the
/// other node's directory then holds `c`'s session (a headline that finds no one is dropped).
pub async fn seen_across(c: &mut Client, probe: &mut Client) {
    let full = c.jid.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        probe
            .send_raw(&format!(
                "<message to='{full}' type='headline' id='probe'><body>probe</body></message>"
            ))
            .await;
        let got = tokio::time::timeout(Duration::from_millis(300), async {
            c.expect("probe", |e| {
                e.name == "message" && e.attr("id") == Some("probe")
            })
            .await
        })
        .await;
        if got.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{full} never reachable across nodes"
        );
    }
}
