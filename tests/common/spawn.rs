//! The `parley` binary as an operator runs it: a child process on a fresh test database (so it
//! starts in about a second), with its log (stderr) read line by line and its signals real.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::xmpp::Addrs;
use super::{conn_string, fresh_database, test_data_dir, Http, PASSWORD};

pub struct Parley {
    child: Child,
    pub http: Http,
    pub data: PathBuf,
    /// stderr, one line at a time (read by a task, so the pipe never fills).
    log: mpsc::UnboundedReceiver<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Parley {
    /// Starts `parley serve` on its own database and data directory with `env` added, and waits
    /// until `/readyz` answers.
    pub async fn start(name: &str, env: &[(&str, &str)]) -> Parley {
        let db = conn_string(&fresh_database().await);
        Self::start_on(name, &db, env).await
    }

    /// [`Parley::start`] on the database at `db` (several nodes of a cluster share one).
    pub async fn start_on(name: &str, db: &str, env: &[(&str, &str)]) -> Parley {
        let data = test_data_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_parley"));
        cmd.arg("serve")
            .env("PARLEY_DATA_DIR", &data)
            .env("PARLEY_DATABASE_URL", db)
            .env("PARLEY_HTTP_ADDR", http.to_string())
            // Any free port: the defaults may be taken by a Parley running on this machine.
            .env("PARLEY_XMPP_ADDR", "127.0.0.1:0")
            .env("PARLEY_XMPP_TLS_ADDR", "127.0.0.1:0")
            .env("PARLEY_WS_ADDR", "127.0.0.1:0")
            .env("PARLEY_ADMIN_ADDR", "127.0.0.1:0")
            .env("PARLEY_PASSWORDS_ARGON2_MEMORY_KIB", "256")
            .env("PARLEY_PASSWORDS_ARGON2_ITERATIONS", "1")
            .env("PARLEY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn parley");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Parley {
            child,
            http: Http::new(http),
            data,
            log,
        };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut log = Vec::new();
                while let Ok(l) = self.log.try_recv() {
                    log.push(l);
                }
                panic!("parley exited early: {status}\n{}", log.join("\n"));
            }
            if tokio::net::TcpStream::connect(self.http.addr).await.is_ok()
                && self.http.get("/readyz", None).await.status == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "parley did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id (benchmarks pin it to a CPU and read its memory).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, signal) };
    }

    /// The next log line (JSON logs: parsed) for which `pred` holds; panics after 10 s.
    pub async fn log_line(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = tokio::time::timeout_at(deadline, self.log.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line: {what}"))
                .unwrap_or_else(|| panic!("log ended before: {what}"));
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            if pred(&v) {
                return v;
            }
        }
    }

    /// The XMPP listeners' addresses, from the start-up log line (needs JSON logs at `info`).
    pub async fn xmpp_addrs(&mut self) -> Addrs {
        let line = self
            .log_line("XMPP listening", |v| {
                v["fields"]["message"] == "XMPP listening"
            })
            .await;
        let addr = |k: &str| {
            line["fields"][k]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {k} address in {line}"))
        };
        Addrs {
            tcp: addr("xmpp"),
            tls: addr("xmpp_tls"),
            ws: addr("ws"),
        }
    }

    /// Signs `login` up (password `PASSWORD`) in the development application the server
    /// created; returns its XMPP local part.
    pub async fn chat_user(&self, login: &str) -> String {
        let dev: Value = serde_json::from_str(
            &std::fs::read_to_string(self.data.join("dev-application.json"))
                .expect("the development application file"),
        )
        .expect("JSON");
        let app = &dev["application_id"];
        let r = self
            .http
            .post_json(
                "/session",
                None,
                json!({"application_id": app, "auth_key": dev["auth_key"]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let token = r.json()["session"]["token"].as_str().unwrap().to_owned();
        let r = self
            .http
            .post_json(
                "/users",
                Some(&token),
                json!({"user": {"login": login, "password": PASSWORD}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        format!("{}-{app}", r.json()["user"]["id"])
    }
}

impl Drop for Parley {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
