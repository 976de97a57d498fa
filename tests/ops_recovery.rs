//! The database heals itself: each test runs the real `parley` binary on its own data directory,
//! kills its PostgreSQL (or both) with SIGKILL under load, and checks that Parley serves again
//! without being restarted, that `/readyz` told the truth meanwhile, and that nothing
//! acknowledged to a client (an HTTP 2xx, a stream-management ack) was lost.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley::db::Embedded;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::common::xmpp::{Addrs, Client, Via};
use crate::common::{test_data_dir, Http};
use crate::database::{
    free_port, kill9, parley_command, postmaster_pid, wait_gone, wait_ready, Cleanup, Spawned,
};

const PASSWORD: &str = "recovery-pass-1";
/// How long Parley may take to serve again after its PostgreSQL died.
const RECOVERS_WITHIN: Duration = Duration::from_secs(30);

/// A spawned server with its own data directory and ports.
struct Node {
    // Dropped in this order: the server first, then its PostgreSQL and directory.
    child: Spawned,
    _cleanup: Cleanup,
    data: PathBuf,
    http: Http,
    admin: Http,
    xmpp: SocketAddr,
    database_url: Option<String>,
}

impl Node {
    async fn start(name: &str, database_url: Option<String>) -> Node {
        let data = test_data_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let cleanup = Cleanup { data: data.clone() };
        let http = Http::new(format!("127.0.0.1:{}", free_port()).parse().unwrap());
        let admin = Http::new(format!("127.0.0.1:{}", free_port()).parse().unwrap());
        let xmpp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut node = Node {
            child: spawn(&data, &http, &admin, xmpp, database_url.as_deref()),
            _cleanup: cleanup,
            data,
            http,
            admin,
            xmpp,
            database_url,
        };
        wait_ready(&node.http, &mut node.child).await;
        node
    }

    /// Starts the server again on the same data directory and ports; it must serve at once.
    async fn restart(&mut self) {
        self.child = spawn(
            &self.data,
            &self.http,
            &self.admin,
            self.xmpp,
            self.database_url.as_deref(),
        );
        wait_ready(&self.http, &mut self.child).await;
    }

    fn dev_app(&self) -> Value {
        let text = std::fs::read_to_string(self.data.join("dev-application.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Signs `login` up and opens a session as it → (token, user id).
    async fn user(&self, login: &str) -> (String, i64) {
        let app = self.dev_app();
        let creds = json!({"application_id": app["application_id"], "auth_key": app["auth_key"]});
        let r = self.http.post_json("/session", None, creds.clone()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let app_token = r.json()["session"]["token"].as_str().unwrap().to_owned();
        let user = json!({"user": {"login": login, "password": PASSWORD}});
        let r = self.http.post_json("/users", Some(&app_token), user).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let mut body = creds;
        body["user"] = json!({"login": login, "password": PASSWORD});
        let r = self.http.post_json("/session", None, body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let s = &r.json()["session"];
        (
            s["token"].as_str().unwrap().to_owned(),
            s["user_id"].as_i64().unwrap(),
        )
    }

    /// A private dialog of the token's user with `other` → its id.
    async fn dialog(&self, token: &str, other: i64) -> String {
        let r = self
            .http
            .post_json(
                "/chat/Dialog",
                Some(token),
                json!({"type": 3, "occupants_ids": other.to_string()}),
            )
            .await;
        assert!(
            r.status == 201 || r.status == 200,
            "{} {}",
            r.status,
            r.body
        );
        r.json()["_id"].as_str().unwrap().to_owned()
    }

    /// The ids of every message in `dialog`, read page by page.
    async fn history(&self, token: &str, dialog: &str) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        loop {
            let path = format!(
                "/chat/Message.json?chat_dialog_id={dialog}&limit=100&skip={}&mark_as_read=0",
                ids.len()
            );
            let r = self.http.get(&path, Some(token)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let items = r.json()["items"].as_array().cloned().unwrap_or_default();
            let before = ids.len();
            ids.extend(
                items
                    .iter()
                    .filter_map(|m| m["_id"].as_str().map(str::to_owned)),
            );
            if items.len() < 100 || ids.len() == before {
                return ids;
            }
        }
    }

    async fn readyz(&self) -> u16 {
        self.admin.get("/readyz", None).await.status
    }

    /// Waits until `/readyz` (admin port) answers `status`; panics after `within`.
    async fn wait_readyz(&self, status: u16, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.readyz().await == status {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "/readyz did not answer {status} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn postmaster(&self) -> i32 {
        postmaster_pid(&self.data).expect("postmaster.pid")
    }

    /// SIGTERM: a clean stop, which also stops the (restarted) embedded PostgreSQL.
    async fn stop(mut self) {
        let pg = postmaster_pid(&self.data);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        if let Some(pg) = pg.filter(|_| self.database_url.is_none()) {
            wait_gone(pg).await;
            assert!(
                !Path::new(&format!("/proc/{pg}")).exists(),
                "PostgreSQL still running after shutdown"
            );
        }
    }
}

fn spawn(
    data: &Path,
    http: &Http,
    admin: &Http,
    xmpp: SocketAddr,
    database_url: Option<&str>,
) -> Spawned {
    let mut cmd = parley_command(data, http.addr.port());
    cmd.env("PARLEY_ADMIN_ADDR", admin.addr.to_string())
        .env("PARLEY_XMPP_ADDR", xmpp.to_string())
        // The load below is one user writing as fast as it can.
        .env("PARLEY_HTTP_REQUESTS_PER_SEC_PER_TOKEN", "0")
        .env("PARLEY_HTTP_REQUESTS_PER_SEC_PER_IP", "0")
        .env("PARLEY_CHAT_MESSAGES_PER_SEC_PER_USER", "0");
    if let Some(url) = database_url {
        cmd.env("PARLEY_DATABASE_URL", url);
    }
    cmd.spawn().map(Spawned).expect("spawn parley")
}

/// An answer other than 2xx: status, `Retry-After`, body.
type Refusal = (u16, Option<String>, String);

/// Writers posting messages to one dialog over REST in a loop, each request on its own
/// connection, recording what was acknowledged (2xx) and every other answer (status,
/// `Retry-After`, body).
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicU64>,
    refused: Arc<Mutex<Vec<Refusal>>>,
    writers: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(http: &Http, token: &str, dialog: &str, writers: usize) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            acked: Arc::default(),
            count: Arc::default(),
            refused: Arc::default(),
            writers: Vec::new(),
        };
        let writers = (0..writers)
            .map(|w| {
                let (http, token, dialog) = (http.clone(), token.to_owned(), dialog.to_owned());
                let (stop, acked, count, refused) = (
                    load.stop.clone(),
                    load.acked.clone(),
                    load.count.clone(),
                    load.refused.clone(),
                );
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let body =
                            json!({"chat_dialog_id": dialog, "message": format!("w{w}-{i}")});
                        let (h, t) = (http.clone(), token.clone());
                        // A request the server never answered (it was killed) is not acked.
                        let Ok(r) = tokio::spawn(async move {
                            h.post_json("/chat/Message", Some(&t), body).await
                        })
                        .await
                        else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        if (200..300).contains(&r.status) {
                            let id = r.json()["_id"].as_str().unwrap().to_owned();
                            acked.lock().unwrap().push(id);
                            count.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let retry = r.header("Retry-After").map(str::to_owned);
                            refused.lock().unwrap().push((r.status, retry, r.body));
                        }
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                })
            })
            .collect();
        Load { writers, ..load }
    }

    fn acked_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `n` more writes than now were acknowledged; panics after `within`.
    async fn wait_for_more(&self, n: u64, within: Duration) {
        let target = self.acked_count() + n;
        let start = Instant::now();
        while self.acked_count() < target {
            assert!(
                start.elapsed() < within,
                "writes did not succeed again within {within:?} (refused: {:?})",
                self.refused.lock().unwrap().last()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the writers → (acknowledged message ids, other answers).
    async fn finish(self) -> (Vec<String>, Vec<Refusal>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            let _ = w.await;
        }
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        let refused = std::mem::take(&mut *self.refused.lock().unwrap());
        (acked, refused)
    }
}

fn assert_none_lost(acked: &[String], stored: &BTreeSet<String>) {
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost: {lost:?}",
        lost.len(),
        acked.len()
    );
}

#[tokio::test]
async fn a_killed_embedded_postgres_is_restarted_and_no_acknowledged_rest_write_is_lost() {
    let node = Node::start("recovery-rest", None).await;
    let (alice, _) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let dialog = node.dialog(&alice, bob).await;
    let load = Load::start(&node.http, &alice, &dialog, 3);
    load.wait_for_more(20, Duration::from_secs(10)).await;

    kill9(node.postmaster());
    // Not ready while the database is down, ready again without restarting Parley.
    node.wait_readyz(503, Duration::from_secs(5)).await;
    node.wait_readyz(200, RECOVERS_WITHIN).await;
    load.wait_for_more(20, Duration::from_secs(10)).await;
    let (acked, refused) = load.finish().await;

    // What failed, failed clearly: 503 with the JSON error shape and a time to retry.
    for (status, retry_after, body) in &refused {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
        let body: Value = serde_json::from_str(body).expect("a JSON error");
        assert!(body["errors"]["base"].is_array(), "{body}");
    }
    assert_none_lost(&acked, &node.history(&alice, &dialog).await);
    node.stop().await;
}

#[tokio::test]
async fn after_parley_and_its_postgres_are_killed_together_the_next_start_succeeds_first_time() {
    let mut node = Node::start("recovery-crash", None).await;
    let (alice, _) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let dialog = node.dialog(&alice, bob).await;
    let load = Load::start(&node.http, &alice, &dialog, 3);
    load.wait_for_more(20, Duration::from_secs(10)).await;

    // A power cut: both at once, with writes in flight; the old server's backends are still
    // exiting when the next start begins.
    let pg = node.postmaster();
    kill9(node.child.id() as i32);
    kill9(pg);
    let _ = node.child.wait();
    let (acked, _) = load.finish().await;
    node.restart().await;

    assert_eq!(node.readyz().await, 200);
    assert_none_lost(&acked, &node.history(&alice, &dialog).await);
    node.stop().await;
}

/// A 24-hex message id the client chooses (it becomes the stored message's id).
fn message_id(n: u32) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{secs:08x}{:08x}{n:08x}", std::process::id())
}

fn stored_message(to: &str, id: &str) -> String {
    format!(
        "<message type='chat' to='{to}' id='{id}'><body>{id}</body>\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams>\
         </message><r xmlns='urn:xmpp:sm:3'/>"
    )
}

fn ack_h(el: &parley::xmpp::stream::Element) -> Option<u32> {
    (el.name == "a" && el.ns == "urn:xmpp:sm:3")
        .then(|| el.attr("h")?.parse().ok())
        .flatten()
}

#[tokio::test]
async fn a_message_the_dead_database_did_not_take_is_not_acked_and_is_stored_when_sent_again() {
    let node = Node::start("recovery-xmpp", None).await;
    let app = node.dev_app()["application_id"].as_i64().unwrap();
    let (alice_token, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let bob_jid = format!("{bob}-{app}@localhost");
    let local = format!("{alice}-{app}");
    let addrs = Addrs {
        tcp: node.xmpp,
        tls: node.xmpp,
        ws: node.xmpp,
    };
    let mut c = Client::login(addrs, Via::Tcp, &local, PASSWORD).await;
    c.send_raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let previd = c
        .expect_named("enabled")
        .await
        .attr("id")
        .unwrap()
        .to_owned();

    // One message at a time, each acked only once stored; the database dies meanwhile.
    let mut acked = Vec::new();
    let mut killed = false;
    let started = Instant::now();
    let unacked = loop {
        if acked.len() == 5 && !killed {
            kill9(node.postmaster());
            killed = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "every message was acked"
        );
        let id = message_id(acked.len() as u32);
        c.send_raw(&stored_message(&bob_jid, &id)).await;
        let el = c.next().await.expect("an answer");
        match ack_h(&el) {
            Some(h) => {
                acked.push(id);
                assert_eq!(h as usize, acked.len(), "one ack per stored message");
            }
            None => {
                assert_eq!(el.name, "error", "{el:?}");
                let condition = el.elements().next().map(|e| e.name.clone());
                assert_eq!(condition.as_deref(), Some("internal-server-error"));
                break id;
            }
        }
    };

    // Once the database is back the client resumes: the count it gets back stops before the
    // failed message, which it sends again, and this time it is stored and acked.
    node.wait_readyz(200, RECOVERS_WITHIN).await;
    let mut c = Client::connect(addrs, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&local, PASSWORD).await, "success");
    c.open().await;
    c.send_raw(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
    ))
    .await;
    let resumed = c.expect_named("resumed").await;
    assert_eq!(resumed.attr("h"), Some(acked.len().to_string().as_str()));
    c.send_raw(&stored_message(&bob_jid, &unacked)).await;
    let h = loop {
        if let Some(h) = ack_h(&c.next().await.expect("an ack")) {
            break h;
        }
    };
    assert_eq!(h as usize, acked.len() + 1);
    acked.push(unacked);

    let dialog = node.dialog(&alice_token, bob).await;
    assert_none_lost(&acked, &node.history(&alice_token, &dialog).await);
    node.stop().await;
}

#[tokio::test]
async fn with_an_external_database_the_pool_survives_a_postgres_restart() {
    // "External": a PostgreSQL this test runs, that Parley reaches only through database.url.
    let dir = test_data_dir().join(format!("recovery-ext-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _pg_cleanup = Cleanup { data: dir.clone() };
    let cfg = parley::config::DatabaseConfig {
        embedded_unsafe_fast: true,
        ..Default::default()
    };
    let pg = Embedded::new(&dir, &cfg).unwrap();
    pg.start().unwrap();
    parley::db::create_database_if_missing(&pg.connect_config("postgres"), "parley")
        .await
        .unwrap();
    let url = crate::common::conn_string(&pg.connect_config("parley"));
    let node = Node::start("recovery-ext", Some(url)).await;
    let (alice, _) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let dialog = node.dialog(&alice, bob).await;
    let load = Load::start(&node.http, &alice, &dialog, 2);
    load.wait_for_more(20, Duration::from_secs(10)).await;

    // The operator restarts PostgreSQL: every pooled connection breaks.
    pg.stop().unwrap();
    node.wait_readyz(503, Duration::from_secs(5)).await;
    pg.start().unwrap();
    node.wait_readyz(200, RECOVERS_WITHIN).await;
    load.wait_for_more(20, Duration::from_secs(10)).await;
    let (acked, _) = load.finish().await;

    assert_none_lost(&acked, &node.history(&alice, &dialog).await);
    node.stop().await;
    pg.stop().unwrap();
}
