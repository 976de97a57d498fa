//! The `parley` command line: `config defaults`, `config check`, `app create`, `migrate`.

use std::process::{Command, Output};

use crate::common::{conn_string, connect, empty_database, fresh_database};

fn parley(args: &[&str], db: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(args)
        .env("PARLEY_DATABASE_URL", db)
        .env("PARLEY_LOG", "warn")
        .output()
        .expect("run parley")
}

#[test]
fn config_defaults_prints_the_documented_file() {
    let out = parley(&["config", "defaults"], "");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        parley::config::DEFAULT_TOML
    );
}

#[tokio::test]
async fn app_create_prints_credentials_as_json() {
    let db = conn_string(&fresh_database().await);
    let out = parley(
        &[
            "app",
            "create",
            "--name",
            "demo",
            "--id",
            "4242",
            "--auth-key",
            "key-1",
            "--auth-secret",
            "secret-1",
        ],
        &db,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["application_id"], 4242);
    assert_eq!(v["auth_key"], "key-1");
    assert_eq!(v["auth_secret"], "secret-1");
    let generated = parley(&["app", "create", "--name", "other"], &db);
    let g: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
    assert_eq!(g["auth_key"].as_str().unwrap().len(), 32);
    assert!(g["application_id"].as_i64().unwrap() > 4242);
    let again = parley(&["app", "create", "--name", "dup", "--id", "4242"], &db);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("id has already been taken"));
}

#[tokio::test]
async fn migrate_applies_the_schema() {
    let cfg = empty_database().await;
    let out = parley(&["migrate"], &conn_string(&cfg));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = connect(&cfg).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, parley::db::migrate::MIGRATIONS.len());
}

#[test]
fn bad_config_value_stops_with_the_variable_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["migrate"])
        .env("PARLEY_HTTP_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PARLEY_HTTP_ADDR"));
}

#[test]
fn config_check_accepts_the_shipped_defaults() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/parley.toml");
    let out = parley(&["config", "check", file], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn config_check_names_the_option_a_file_gets_wrong() {
    let dir = crate::common::test_data_dir().join("config-check");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[xmpp]\ncert_file = \"/nonexistent/cert.pem\"\n").unwrap();
    let out = parley(&["config", "check", file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("xmpp.cert_file"), "{err}");
}

#[test]
fn config_check_refuses_an_unknown_option() {
    let dir = crate::common::test_data_dir().join("config-check");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("unknown.toml");
    std::fs::write(&file, "[xmpp]\nmax_stanzas = 3\n").unwrap();
    let out = parley(&["config", "check", file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_stanzas"));
}
