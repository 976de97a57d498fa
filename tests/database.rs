//! The database layer: migrations are all-or-nothing, the embedded PostgreSQL survives a
//! killed server and a stale `postmaster.pid`, and batched writes record every row.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parley::db::migrate::{run_list, MigrateError, Migration};
use parley::db::Embedded;
use serde_json::{json, Value};

use crate::common::{connect, empty_database, fresh_database, test_data_dir, Http};

static OK_THEN_BROKEN: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_ok",
        sql: "CREATE TABLE first_table (x INT);",
    },
    Migration {
        version: 2,
        name: "0002_broken",
        sql: "CREATE TABLE second_table (x INT); SELECT no_such_function();",
    },
];

#[tokio::test]
async fn failed_migration_leaves_the_database_as_it_was() {
    let cfg = empty_database().await;
    let mut c = connect(&cfg).await;
    let err = run_list(&mut c, OK_THEN_BROKEN).await.unwrap_err();
    assert!(
        matches!(
            err,
            MigrateError::Failed {
                name: "0002_broken",
                ..
            }
        ),
        "{err}"
    );
    let exists = |t: &'static str| {
        let c = &c;
        async move {
            c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(exists("first_table").await);
    assert!(!exists("second_table").await);
    let versions: Vec<i32> = c
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1]);
}

#[tokio::test]
async fn migrations_are_applied_once() {
    let cfg = empty_database().await;
    let mut c = connect(&cfg).await;
    assert_eq!(
        parley::db::migrate::run(&mut c).await.unwrap().len(),
        parley::db::migrate::MIGRATIONS.len()
    );
    assert!(parley::db::migrate::run(&mut c).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dead_nodes_users_last_activity_is_recorded_for_each_user_in_batches() {
    use parley::model::{AppId, UserId, UserKey};
    use time::OffsetDateTime;
    let pool = parley::db::pool(fresh_database().await, 2);
    let key = |user: i64| UserKey {
        app: AppId(1),
        user: UserId(user),
    };
    let before = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    // One user already has a last activity; the others none.
    parley::db::xmpp::last_seen_set(&pool, AppId(1), UserId(1), before)
        .await
        .unwrap();
    // More than one statement's worth, in no order, one listed twice.
    let mut users: Vec<UserKey> = (1..=2500).rev().map(key).collect();
    users.push(key(7));
    parley::db::xmpp::last_seen_set_many(&pool, &users, at)
        .await
        .unwrap();
    let c = pool.get().await.unwrap();
    let row = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE seen_at = $1) FROM xmpp_last_activity",
            &[&at],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (2500, 2500));
    parley::db::xmpp::last_seen_set_many(&pool, &[], at)
        .await
        .unwrap();
}

#[test]
fn missing_server_binaries_name_the_package_to_install() {
    let cfg = parley::config::DatabaseConfig {
        pg_bin_dir: "/nonexistent/bin".into(),
        ..Default::default()
    };
    let err = Embedded::new(&test_data_dir().join("unused"), &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("apt-get install postgresql"), "{err}");
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A spawned server that is killed if the test ends early (a panic must not leave it running).
pub(crate) struct Spawned(pub(crate) Child);

impl std::ops::Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Already reaped children refuse the kill; nothing else is touched.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `parley` binary set up to serve REST on `port` from data directory `data`, every other
/// listener on a free port; callers may override any variable before spawning it.
pub(crate) fn parley_command(data: &Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parley"));
    cmd.arg("serve")
        .env("PARLEY_DATA_DIR", data)
        .env("PARLEY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        // Any free port: the defaults may be taken by a Parley running on this machine.
        .env("PARLEY_XMPP_ADDR", "127.0.0.1:0")
        .env("PARLEY_XMPP_TLS_ADDR", "127.0.0.1:0")
        .env("PARLEY_WS_ADDR", "127.0.0.1:0")
        .env("PARLEY_ADMIN_ADDR", "127.0.0.1:0")
        .env("PARLEY_DATABASE_URL", "")
        .env("PARLEY_DATABASE_EMBEDDED_UNSAFE_FAST", "true")
        .env("PARLEY_PASSWORDS_ARGON2_MEMORY_KIB", "256")
        .env("PARLEY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn spawn_parley(data: &Path, port: u16) -> Spawned {
    parley_command(data, port)
        .spawn()
        .map(Spawned)
        .expect("spawn parley")
}

pub(crate) async fn wait_ready(http: &Http, child: &mut Spawned) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("parley exited early: {status}");
        }
        if tokio::net::TcpStream::connect(http.addr).await.is_ok()
            && http.get("/readyz", None).await.status == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "parley did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn kill9(pid: i32) {
    // SAFETY: sending a signal to a pid we own.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

pub(crate) fn postmaster_pid(data: &Path) -> Option<i32> {
    std::fs::read_to_string(data.join("postgres/data/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

pub(crate) async fn wait_gone(pid: i32) {
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        let _ = std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z "));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops whatever a failed run leaves behind: the server child and its embedded PostgreSQL.
pub(crate) struct Cleanup {
    pub(crate) data: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(emb) = Embedded::new(&self.data, &parley::config::DatabaseConfig::default()) {
            let _ = emb.stop();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[tokio::test]
async fn embedded_database_recovers_after_a_killed_server_and_a_stale_pid() {
    let data: PathBuf = test_data_dir().join(format!("restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let _cleanup = Cleanup { data: data.clone() };
    let port = free_port();
    let http = Http::new(format!("127.0.0.1:{port}").parse().unwrap());

    // First start: initialises the cluster and writes the development application.
    let mut first = spawn_parley(&data, port);
    wait_ready(&http, &mut first).await;
    let dev: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("dev-application.json")).unwrap())
            .unwrap();
    let r = http
        .post_json(
            "/session",
            None,
            json!({"application_id": dev["application_id"], "auth_key": dev["auth_key"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.json()["session"]["token"].as_str().unwrap().to_string();

    // Killed server: PostgreSQL is left running, and the next start adopts it.
    kill9(first.id() as i32);
    let _ = first.wait();
    let mut second = spawn_parley(&data, port);
    wait_ready(&http, &mut second).await;
    assert_eq!(http.get("/session", Some(&token)).await.status, 200);

    // Killed server and killed database, with the pid file pointing at an unrelated process.
    let pg = postmaster_pid(&data).expect("postmaster.pid");
    kill9(second.id() as i32);
    let _ = second.wait();
    kill9(pg);
    wait_gone(pg).await;
    let pid_file = data.join("postgres/data/postmaster.pid");
    let stale = std::fs::read_to_string(&pid_file).unwrap();
    let rest: Vec<&str> = stale.lines().skip(1).collect();
    std::fs::write(&pid_file, format!("1\n{}\n", rest.join("\n"))).unwrap();
    let mut third = spawn_parley(&data, port);
    wait_ready(&http, &mut third).await;
    assert_eq!(
        http.get("/session", Some(&token)).await.status,
        200,
        "data survived the crash"
    );

    // A clean stop also stops the embedded database.
    let pg = postmaster_pid(&data).expect("postmaster.pid");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(third.id() as i32, libc::SIGTERM) };
    let status = third.wait().unwrap();
    assert!(status.success(), "{status}");
    wait_gone(pg).await;
    assert!(
        !Path::new(&format!("/proc/{pg}")).exists(),
        "PostgreSQL still running after shutdown"
    );
    let _ = std::fs::remove_dir_all(&data);
}
