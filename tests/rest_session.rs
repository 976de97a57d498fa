//! `/session` and `/login`: unsigned and signed sessions, user sessions, expiry and extension.

use std::time::Duration;

use parley::identity::secrets::sign;
use parley::model::Application;
use serde_json::{json, Value};

use crate::common::{TestServer, PASSWORD};

fn signed(
    app: &Application,
    ts: i64,
    nonce: &str,
    user: Option<(&str, &str)>,
    secret: &str,
) -> Value {
    let mut pairs = vec![
        ("application_id".to_string(), app.id.0.to_string()),
        ("auth_key".to_string(), app.auth_key.clone()),
        ("nonce".to_string(), nonce.to_string()),
        ("timestamp".to_string(), ts.to_string()),
    ];
    if let Some((login, password)) = user {
        pairs.push(("user[login]".into(), login.into()));
        pairs.push(("user[password]".into(), password.into()));
    }
    let mut body = json!({
        "application_id": app.id.0, "auth_key": app.auth_key, "nonce": nonce.parse::<i64>().unwrap(),
        "timestamp": ts, "signature": sign(secret, &pairs),
    });
    if let Some((login, password)) = user {
        body["user"] = json!({"login": login, "password": password});
    }
    body
}

#[tokio::test]
async fn unsigned_session_is_created_as_the_sdk_sends_it() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post_json(
            "/session.json",
            None,
            json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let session = &r.json()["session"];
    assert_eq!(session["application_id"], s.app.id.0);
    assert_eq!(session["user_id"], 0);
    assert_eq!(session["token"].as_str().unwrap().len(), 40);
    assert!(session["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn session_from_a_form_body_is_accepted() {
    let s = TestServer::start().await;
    let form = format!("application_id={}&auth_key={}", s.app.id.0, s.app.auth_key);
    let r = s.http.post_form("/session", None, &form).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn wrong_auth_key_is_refused_naming_it() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post_json(
            "/session",
            None,
            json!({"application_id": s.app.id.0, "auth_key": "nope"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("auth_key").is_some(), "{}", r.body);
}

#[tokio::test]
async fn signed_session_with_a_valid_signature_is_accepted() {
    let s = TestServer::start().await;
    let body = signed(
        &s.app,
        s.clock.unix_seconds(),
        "12345",
        None,
        &s.app.auth_secret,
    );
    let r = s.http.post_json("/session", None, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["session"]["nonce"], 12345);
}

#[tokio::test]
async fn signed_user_session_covers_the_user_parameters() {
    let s = TestServer::start().await;
    s.signup("signer").await;
    let body = signed(
        &s.app,
        s.clock.unix_seconds(),
        "77",
        Some(("signer", PASSWORD)),
        &s.app.auth_secret,
    );
    let r = s.http.post_json("/session", None, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["session"]["user"]["login"], "signer");
}

#[tokio::test]
async fn signature_with_the_wrong_secret_is_unexpected() {
    let s = TestServer::start().await;
    let body = signed(&s.app, s.clock.unix_seconds(), "1", None, "not-the-secret");
    let r = s.http.post_json("/session", None, body).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json(), json!({"errors": ["Unexpected signature"]}));
}

#[tokio::test]
async fn parameter_missing_from_the_signed_string_is_unexpected() {
    let s = TestServer::start().await;
    s.signup("partial").await;
    // Signed without the user parameters, sent with them: the common client mistake.
    let mut body = signed(
        &s.app,
        s.clock.unix_seconds(),
        "2",
        None,
        &s.app.auth_secret,
    );
    body["user"] = json!({"login": "partial", "password": PASSWORD});
    let r = s.http.post_json("/session", None, body).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["errors"][0], "Unexpected signature");
}

#[tokio::test]
async fn stale_timestamp_is_refused_naming_the_timestamp() {
    let s = TestServer::start().await;
    let body = signed(
        &s.app,
        s.clock.unix_seconds() - 2 * 3600,
        "3",
        None,
        &s.app.auth_secret,
    );
    let r = s.http.post_json("/session", None, body).await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("timestamp").is_some(), "{}", r.body);
}

#[tokio::test]
async fn replayed_nonce_is_refused() {
    let s = TestServer::start().await;
    let body = signed(
        &s.app,
        s.clock.unix_seconds(),
        "4",
        None,
        &s.app.auth_secret,
    );
    assert_eq!(
        s.http
            .post_json("/session", None, body.clone())
            .await
            .status,
        201
    );
    let r = s.http.post_json("/session", None, body).await;
    assert_eq!(r.status, 422);
    assert!(r
        .field_error("nonce")
        .unwrap()
        .contains("already been used"));
}

#[tokio::test]
async fn app_requiring_a_signature_refuses_an_unsigned_session() {
    let s = TestServer::start().await;
    let mut app = s.app.clone();
    app.require_signature = true;
    parley::db::apps::upsert(&s.pool, &app, s.clock.now())
        .await
        .unwrap();
    let r = s
        .http
        .post_json(
            "/session",
            None,
            json!({"application_id": app.id.0, "auth_key": app.auth_key}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("signature").is_some(), "{}", r.body);
    let body = signed(&app, s.clock.unix_seconds(), "5", None, &app.auth_secret);
    assert_eq!(s.http.post_json("/session", None, body).await.status, 201);
}

#[tokio::test]
async fn user_session_by_login() {
    let s = TestServer::start().await;
    let user = s.signup("alice").await;
    let r = s
        .http
        .post_json("/session", None, json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key, "user": {"login": "alice", "password": PASSWORD}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["session"]["user_id"], user["id"]);
    assert_eq!(r.json()["session"]["user"]["login"], "alice");
}

#[tokio::test]
async fn user_session_by_email() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let r = s
        .http
        .post_json(
            "/users",
            Some(&token),
            json!({"user": {"email": "Bob@Example.com", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .http
        .post_json("/session", None, json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key, "user": {"email": "bob@example.com", "password": PASSWORD}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["session"]["user"]["email"], "Bob@Example.com");
}

#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let s = TestServer::start().await;
    s.signup("carol").await;
    let r = s
        .http
        .post_json("/session", None, json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key, "user": {"login": "carol", "password": "wrong-password"}}))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["errors"]["base"][0], "Unauthorized");
}

#[tokio::test]
async fn missing_user_is_created_by_a_session_request() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post_json("/session", None, json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key, "user": {"login": "newbie", "password": PASSWORD}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let user_id = r.json()["session"]["user_id"].as_i64().unwrap();
    assert!(user_id > 0);
    // The created user can log in again with the same password.
    let again = s
        .http
        .post_json("/session", None, json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key, "user": {"login": "newbie", "password": PASSWORD}}))
        .await;
    assert_eq!(again.json()["session"]["user_id"], user_id);
}

#[tokio::test]
async fn missing_user_is_refused_when_the_app_disallows_creation() {
    let s = TestServer::start().await;
    let mut app = s.app.clone();
    app.session_creates_users = false;
    parley::db::apps::upsert(&s.pool, &app, s.clock.now())
        .await
        .unwrap();
    let r = s
        .http
        .post_json("/session", None, json!({"application_id": app.id.0, "auth_key": app.auth_key, "user": {"login": "ghost", "password": PASSWORD}}))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn token_expires_after_two_hours_without_use() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    s.clock.advance(Duration::from_secs(2 * 3600 + 1));
    let r = s.http.get("/session", Some(&token)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["errors"]["base"][0],
        "Required session does not exist"
    );
}

#[tokio::test]
async fn every_request_extends_the_token() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    for _ in 0..3 {
        s.clock.advance(Duration::from_secs(3600 + 1800));
        let r = s.http.get("/session", Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.header("CB-Token-ExpirationDate").is_some());
    }
}

#[tokio::test]
async fn missing_token_is_required_and_unknown_token_has_no_session() {
    let s = TestServer::start().await;
    let r = s.http.get("/session", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"errors": ["Token is required"]}));
    let r = s
        .http
        .get("/session", Some("0123456789abcdef0123456789abcdef01234567"))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["errors"]["base"][0],
        "Required session does not exist"
    );
}

#[tokio::test]
async fn app_token_is_refused_for_a_write() {
    let s = TestServer::start().await;
    let user = s.signup("dave").await;
    let token = s.app_token().await;
    let r = s
        .http
        .put_json(
            &format!("/users/{}.json", user["id"]),
            Some(&token),
            json!({"user": {"full_name": "x"}}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"]["base"][0], "Forbidden. Need user.");
}

#[tokio::test]
async fn get_session_shows_the_user_of_a_user_session() {
    let s = TestServer::start().await;
    let (token, id) = s.user_token("erin").await;
    let r = s.http.get("/session.json", Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["session"]["user_id"], id);
    assert_eq!(r.json()["session"]["user"]["id"], id);
    assert_eq!(r.json()["session"]["token"], token);
}

#[tokio::test]
async fn deleted_session_token_stops_working() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let r = s.http.delete("/session.json", Some(&token)).await;
    assert_eq!(r.status, 200);
    r.json();
    assert_eq!(s.http.get("/session", Some(&token)).await.status, 401);
}

#[tokio::test]
async fn login_binds_an_app_session_to_the_user_and_logout_undoes_it() {
    let s = TestServer::start().await;
    let user = s.signup("frank").await;
    let token = s.app_token().await;
    let r = s
        .http
        .post_json(
            "/login.json",
            Some(&token),
            json!({"login": "frank", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["id"], user["id"]);
    assert_eq!(
        s.http.get("/session", Some(&token)).await.json()["session"]["user_id"],
        user["id"]
    );
    assert_eq!(s.http.delete("/login.json", Some(&token)).await.status, 200);
    assert_eq!(
        s.http.get("/session", Some(&token)).await.json()["session"]["user_id"],
        0
    );
}

#[tokio::test]
async fn login_with_a_wrong_password_is_unauthorized() {
    let s = TestServer::start().await;
    s.signup("gina").await;
    let token = s.app_token().await;
    let r = s
        .http
        .post_json(
            "/login",
            Some(&token),
            json!({"login": "gina", "password": "nope-nope"}),
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn social_providers_are_refused_with_a_reason() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post_json("/session", None, json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key, "provider": "facebook", "keys": {"token": "t"}}))
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("provider").is_some());
}
