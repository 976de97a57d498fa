//! Test fixtures: one embedded PostgreSQL per test run (or `PARLEY_TEST_DATABASE_URL`), a fresh
//! database per test cloned from a migrated template, the server on 127.0.0.1:0, and a small
//! HTTP client over real sockets.

#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod muc;
pub mod push;
pub mod python;
pub mod spawn;
pub mod xmpp;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use parley::config::{Config, PasswordConfig};
use parley::db::{self, migrate, Embedded};
use parley::identity::apps::{self, NewApp};
use parley::model::{Application, Clock};
use parley::server::Server;
use serde_json::{json, Value};
use tokio_postgres::NoTls;

pub use http::Http;

/// How tests reach PostgreSQL: the admin connection settings and a way to name a database.
struct Cluster {
    admin: tokio_postgres::Config,
    /// Set when this process started the embedded server and must stop it at exit.
    embedded: Option<Embedded>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

pub fn test_data_dir() -> PathBuf {
    std::env::var_os("PARLEY_TEST_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("test-data")
        })
}

extern "C" fn stop_cluster_at_exit() {
    if let Some(Ok(Cluster {
        embedded: Some(emb),
        ..
    })) = CLUSTER.get()
    {
        let _ = emb.stop();
    }
}

fn cluster() -> &'static Cluster {
    let c = CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("PARLEY_TEST_DATABASE_URL") {
            let admin = url
                .parse()
                .map_err(|e| format!("PARLEY_TEST_DATABASE_URL: {e}"))?;
            return Ok(Cluster {
                admin,
                embedded: None,
            });
        }
        let cfg = parley::config::DatabaseConfig {
            embedded_unsafe_fast: true,
            ..Default::default()
        };
        let emb = Embedded::new(&test_data_dir(), &cfg).map_err(|e| e.to_string())?;
        let started = emb.start().map_err(|e| e.to_string())?;
        let admin = emb.connect_config("postgres");
        if started {
            // SAFETY: registering a plain extern "C" function.
            unsafe { libc::atexit(stop_cluster_at_exit) };
        }
        Ok(Cluster {
            admin,
            embedded: started.then_some(emb),
        })
    });
    match c {
        Ok(c) => c,
        Err(e) => panic!("test database unavailable: {e}"),
    }
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, conn) = cluster()
        .admin
        .connect(NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(conn);
    client
}

/// A migrated template database, named after the migrations so a schema change makes a new one.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for m in migrate::MIGRATIONS {
                for b in m.sql.bytes() {
                    h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
                }
            }
            let name = format!("parley_tpl_{h:016x}");
            let admin = admin_client().await;
            admin
                .execute("SELECT pg_advisory_lock(4242)", &[])
                .await
                .expect("lock");
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .expect("query")
                .is_some();
            if !exists {
                let building = format!("{name}_building");
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
                    .await
                    .expect("drop");
                admin
                    .batch_execute(&format!("CREATE DATABASE {building}"))
                    .await
                    .expect("create template");
                let mut cfg = cluster().admin.clone();
                cfg.dbname(&building);
                let (mut c, conn) = cfg.connect(NoTls).await.expect("connect template");
                let task = tokio::spawn(conn);
                migrate::run(&mut c).await.expect("migrate template");
                drop(c);
                let _ = task.await;
                admin
                    .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .await
                    .expect("rename");
            }
            drop_dead_test_databases(&admin).await;
            admin
                .execute("SELECT pg_advisory_unlock(4242)", &[])
                .await
                .expect("unlock");
            name
        })
        .await
}

/// Databases of earlier test processes that have exited.
async fn drop_dead_test_databases(admin: &tokio_postgres::Client) {
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'",
            &[],
        )
        .await
        .unwrap_or_default();
    for r in rows {
        let name: String = r.get(0);
        let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| {
            p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists()
        }) {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A fresh, migrated database for one test; returns its connection settings.
pub async fn fresh_database() -> tokio_postgres::Config {
    let tpl = template().await;
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    admin_client()
        .await
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {tpl}"))
        .await
        .expect("create test database");
    let mut cfg = cluster().admin.clone();
    cfg.dbname(&name);
    cfg
}

/// Settings that keep tests fast: cheap password hashing, ports chosen by the OS.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.admin.addr = "127.0.0.1:0".parse().unwrap();
    c.xmpp.addr = "127.0.0.1:0".parse().unwrap();
    c.xmpp.tls_addr = "127.0.0.1:0".parse().unwrap();
    c.ws.addr = "127.0.0.1:0".parse().unwrap();
    // Generated development certificates land here (shared by every test server).
    c.data_dir = test_data_dir().join("server");
    c.passwords = PasswordConfig {
        argon2_memory_kib: 256,
        argon2_iterations: 1,
        min_length: 8,
        ..PasswordConfig::default()
    };
    c.http.drain_timeout_secs = 2;
    // Tests send bursts no client would (200 messages in one write, loops of requests with one
    // token): the rate limits stay on, well above them. `tests/hostile_limits.rs` sets its own.
    c.http.requests_per_sec_per_token = 1_000;
    c.http.request_burst_per_token = 2_000;
    c.chat.messages_per_sec_per_user = 1_000;
    c.chat.message_burst_per_user = 1_000;
    c
}

pub const PASSWORD: &str = "s3cret-pass";

/// A running server with its own database and one application.
pub struct TestServer {
    pub http: Http,
    /// The XMPP listeners (TCP, direct TLS, WebSocket).
    pub xmpp: xmpp::Addrs,
    pub app: Application,
    pub clock: Clock,
    pub pool: db::DbPool,
    pub pg: tokio_postgres::Config,
    server: Option<Server>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let pg = fresh_database().await;
        let pool = db::pool(pg.clone(), 8);
        let clock = Clock::new();
        let app = apps::create(
            &pool,
            &clock,
            NewApp {
                name: "test".into(),
                ..Default::default()
            },
        )
        .await
        .expect("create app");
        let mut server = Server::start(Arc::new(config), pool.clone(), clock.clone())
            .await
            .expect("start server");
        // As `parley serve` does: operator commands reach the live streams through the database.
        server.listen_for_revocations(pg.clone());
        TestServer {
            http: Http::new(server.http_addr),
            xmpp: xmpp::Addrs {
                tcp: server.xmpp_addr,
                tls: server.xmpp_tls_addr,
                ws: server.ws_addr,
            },
            app,
            clock,
            pool,
            pg,
            server: Some(server),
        }
    }

    /// The running server's chat service (to watch its domain events).
    pub fn chat(&self) -> &parley::chat::Chat {
        &self.server.as_ref().expect("server running").chat
    }

    /// The admin listener (metrics and probes).
    pub fn admin(&self) -> Http {
        Http::new(self.server.as_ref().expect("server running").admin_addr)
    }

    /// The admin listener's address (for `PARLEY_ADMIN_ADDR` of a command run against it).
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("server running").admin_addr
    }

    /// The running server's storage API service (to run its cleanup of unfinished uploads).
    pub fn files(&self) -> &parley::files::Files {
        &self.server.as_ref().expect("server running").files
    }

    /// The running server's session registry (to watch its live state).
    pub fn hub(&self) -> &parley::hub::Hub {
        &self.server.as_ref().expect("server running").hub
    }

    /// `n` users with user sessions: (token, id), logins `{prefix}_u0..`.
    pub async fn users(&self, prefix: &str, n: usize) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for i in 0..n {
            out.push(self.user_token(&format!("{prefix}_u{i}")).await);
        }
        out
    }

    /// Creates a dialog as `token`; asserts success and returns the dialog JSON.
    pub async fn dialog(&self, token: &str, body: Value) -> Value {
        let r = self
            .http
            .post_json("/chat/Dialog.json", Some(token), body)
            .await;
        assert!(
            r.status == 201 || r.status == 200,
            "{} {}",
            r.status,
            r.body
        );
        r.json()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// The XMPP local part (`{user_id}-{app_id}`) of a user id.
    pub fn local(&self, user_id: i64) -> String {
        format!("{user_id}-{}", self.app.id)
    }

    /// Signs `login` up and returns its XMPP local part and its session token.
    pub async fn chat_user(&self, login: &str) -> (String, String) {
        let (token, id) = self.user_token(login).await;
        (self.local(id), token)
    }

    /// Another application on the same server (tenant tests).
    pub async fn other_app(&self, name: &str) -> Application {
        apps::create(
            &self.pool,
            &self.clock,
            NewApp {
                name: name.into(),
                ..Default::default()
            },
        )
        .await
        .expect("create app")
    }

    /// A user session in `app` for `login` (created by the session request) → (token, id).
    pub async fn user_token_in(&self, app: &Application, login: &str) -> (String, i64) {
        let r = self
            .http
            .post_json(
                "/session",
                None,
                json!({"application_id": app.id.0, "auth_key": app.auth_key,
                       "user": {"login": login, "password": PASSWORD}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let s = &r.json()["session"];
        (
            s["token"].as_str().unwrap().to_string(),
            s["user_id"].as_i64().unwrap(),
        )
    }

    /// The server still serves: a fresh session and an authenticated request succeed.
    pub async fn assert_serving(&self) {
        let h = self.http.get("/healthz", None).await;
        assert_eq!(h.status, 200, "{}", h.body);
        let token = self.app_token().await;
        let r = self.http.get("/session", Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// `POST /session` as the official SDK sends it.
    pub async fn app_token(&self) -> String {
        let r = self
            .http
            .post_json(
                "/session.json",
                None,
                json!({"application_id": self.app.id.0, "auth_key": self.app.auth_key}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["session"]["token"].as_str().unwrap().to_string()
    }

    /// Signs a user up (with an application token) and returns the user object.
    pub async fn signup(&self, login: &str) -> Value {
        let token = self.app_token().await;
        let r = self
            .http
            .post_json(
                "/users.json",
                Some(&token),
                json!({"user": {"login": login, "password": PASSWORD, "full_name": login}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["user"].clone()
    }

    /// A user session for `login` (signing it up first) → (token, user id).
    pub async fn user_token(&self, login: &str) -> (String, i64) {
        let user = self.signup(login).await;
        let r = self
            .http
            .post_json("/session", None, json!({"application_id": self.app.id.0, "auth_key": self.app.auth_key, "user": {"login": login, "password": PASSWORD}}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        (
            r.json()["session"]["token"].as_str().unwrap().to_string(),
            user["id"].as_i64().unwrap(),
        )
    }
}

/// An empty database (no migrations), for migration tests.
pub async fn empty_database() -> tokio_postgres::Config {
    cluster();
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    admin_client()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create empty database");
    let mut cfg = cluster().admin.clone();
    cfg.dbname(&name);
    cfg
}

/// `key=value` connection string for `PARLEY_DATABASE_URL`.
pub fn conn_string(cfg: &tokio_postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        None => "localhost".into(),
    };
    let mut s = format!(
        "host={host} port={} user={} dbname={}",
        cfg.get_ports().first().copied().unwrap_or(5432),
        cfg.get_user().unwrap_or("postgres"),
        cfg.get_dbname().unwrap_or("postgres")
    );
    if let Some(p) = cfg.get_password() {
        s.push_str(&format!(" password={}", String::from_utf8_lossy(p)));
    }
    s
}

pub async fn connect(cfg: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (c, conn) = cfg.connect(NoTls).await.expect("connect");
    tokio::spawn(conn);
    c
}
