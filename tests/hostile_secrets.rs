//! Secrets on disk: the generated development TLS key and `dev-application.json` (which holds
//! an auth secret) are readable by their owner only, from creation on, and a copy left with a
//! wider mode is restricted when the server starts.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use parley::db;
use parley::identity::apps::{self, DEV_APP_FILE};
use parley::model::Clock;

use crate::common::{fresh_database, test_config, test_data_dir, TestServer};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// An empty data directory of this test's own.
fn data_dir(name: &str) -> PathBuf {
    let dir = test_data_dir().join(format!("secrets-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn dev_key(dir: &Path) -> PathBuf {
    dir.join("tls").join("localhost.dev-key.pem")
}

/// The server answers a new request (so nothing here broke it).
async fn still_serves(srv: &TestServer) {
    let r = srv.http.get("/healthz", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn the_generated_tls_key_is_created_0600() {
    let dir = data_dir("tls-new");
    let mut config = test_config();
    config.data_dir = dir.clone();
    let srv = TestServer::start_with(config).await;
    assert_eq!(mode(&dev_key(&dir)), 0o600);
    still_serves(&srv).await;
    srv.stop().await;
    fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_readable_tls_key_left_from_before_is_restricted_on_start() {
    let dir = data_dir("tls-old");
    let mut config = test_config();
    config.data_dir = dir.clone();
    TestServer::start_with(config.clone()).await.stop().await;
    fs::set_permissions(dev_key(&dir), Permissions::from_mode(0o644)).unwrap();
    let srv = TestServer::start_with(config).await;
    assert_eq!(mode(&dev_key(&dir)), 0o600);
    still_serves(&srv).await;
    srv.stop().await;
    fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_development_application_file_is_created_0600() {
    let dir = data_dir("devapp-new");
    let pool = db::pool(fresh_database().await, 2);
    let created = apps::ensure_dev_app(&pool, &Clock::new(), &dir)
        .await
        .unwrap();
    assert!(created.is_some(), "a first start creates the application");
    let file = dir.join(DEV_APP_FILE);
    assert_eq!(mode(&file), 0o600);
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert!(saved["auth_secret"].is_string());
    fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_readable_development_application_file_is_restricted_on_start() {
    let dir = data_dir("devapp-old");
    let pool = db::pool(fresh_database().await, 2);
    let clock = Clock::new();
    apps::ensure_dev_app(&pool, &clock, &dir).await.unwrap();
    let file = dir.join(DEV_APP_FILE);
    fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
    // A later start (the application exists now) fixes the mode without rewriting the file.
    let before = fs::read(&file).unwrap();
    assert!(apps::ensure_dev_app(&pool, &clock, &dir)
        .await
        .unwrap()
        .is_none());
    assert_eq!(mode(&file), 0o600);
    assert_eq!(fs::read(&file).unwrap(), before);
    fs::remove_dir_all(dir).unwrap();
}
