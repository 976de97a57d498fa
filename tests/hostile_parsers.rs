//! Hostile input to the REST parsers: no request crashes or stalls the server, and bad input is
//! a 4xx naming what is wrong, never a 5xx. Every test ends by checking the server still serves
//! (a health check and a fresh session).

use serde_json::json;

use crate::common::TestServer;

async fn still_serving(s: &TestServer) {
    let r = s.http.get("/healthz", None).await;
    assert_eq!(r.status, 200, "healthz after the attack: {}", r.body);
    assert!(!s.app_token().await.is_empty());
}

#[tokio::test]
async fn a_four_hundred_thousand_bracket_form_key_is_refused_before_authentication() {
    let s = TestServer::start().await;
    let form = format!("a{}=1", "[]".repeat(200_000));
    let r = s.http.post_form("/session", None, &form).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let errors = r.json()["errors"].clone();
    let field = errors.as_object().and_then(|m| m.keys().next().cloned());
    assert!(field.is_some_and(|f| f.starts_with("a[]")), "{errors}");
    // The same key in a query string.
    let r = s
        .http
        .get(&format!("/session?a{}=1", "[]".repeat(20_000)), None)
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    still_serving(&s).await;
}

#[tokio::test]
async fn a_json_body_a_hundred_thousand_levels_deep_is_refused() {
    let s = TestServer::start().await;
    for body in [
        "[".repeat(100_000),
        format!("{{\"user\":{}", "[".repeat(100_000)),
        format!("{{\"user\":{}", "{\"a\":".repeat(50_000)),
    ] {
        let r = s
            .http
            .request(
                "POST",
                "/session",
                &[],
                Some(("application/json", body.as_bytes())),
            )
            .await;
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    }
    still_serving(&s).await;
}

#[tokio::test]
async fn json_nested_past_the_limit_is_422_naming_the_field() {
    let s = TestServer::start().await;
    let body = format!(
        "{{\"application_id\":1,\"user\":{{\"login\":{}1{}}}}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    let r = s
        .http
        .request(
            "POST",
            "/session",
            &[],
            Some(("application/json", body.as_bytes())),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let errors = r.json()["errors"].clone();
    let field = errors.as_object().and_then(|m| m.keys().next().cloned());
    assert!(
        field.is_some_and(|f| f.starts_with("user[login][]")),
        "{errors}"
    );
    still_serving(&s).await;
}

#[tokio::test]
async fn odd_paths_are_client_errors_not_crashes() {
    let s = TestServer::start().await;
    let long = format!("/{}", "a".repeat(60_000));
    let long_multibyte = format!("/{}", "%C3%A9".repeat(5_000));
    for path in [
        "/%C3%A9%C3%A9%C3%A9",
        "/%C3%A9%C3%A9%C3%A9.json",
        "/chat/Dialog/%C3%A9%C3%A9%C3%A9",
        "/%FF",
        "/%FF%FF%FF%FF%FF%FF",
        "/%",
        "/%%%",
        "//",
        "///chat//Dialog//",
        "/chat/Dialog/%00",
        "/chat/Dialog/%00/occupants",
        "/chat/Message/%00%01%02/reactions",
        "/users/%00",
        "/users/99999999999999999999999999",
        "/%2e%2e/%2e%2e/etc/passwd",
        long.as_str(),
        long_multibyte.as_str(),
    ] {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let r = s.http.request(method, path, &[], None).await;
            assert!(
                (400..500).contains(&r.status),
                "{method} {}: {} {}",
                path.get(..80).unwrap_or(path),
                r.status,
                r.body
            );
        }
    }
    still_serving(&s).await;
}

#[tokio::test]
async fn a_nul_in_a_message_body_is_422_naming_message() {
    let s = TestServer::start().await;
    let u = s.users("nulmsg", 2).await;
    let d = s
        .dialog(&u[0].0, json!({"type": 3, "occupants_ids": [u[1].1]}))
        .await;
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d["_id"], "message": "hello\u{0}world"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("message").is_some(), "{}", r.body);
    // The same in a form body, and other C0 controls.
    for bad in ["%00", "%08", "%1B", "%EF%BF%BF"] {
        let r = s
            .http
            .post_form(
                "/chat/Message",
                Some(&u[0].0),
                &format!(
                    "chat_dialog_id={}&message=a{bad}b",
                    d["_id"].as_str().unwrap()
                ),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert!(r.field_error("message").is_some(), "{}", r.body);
    }
    // Tab, newline and carriage return are fine.
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d["_id"], "message": "a\tb\nc\r"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    still_serving(&s).await;
}

#[tokio::test]
async fn a_nul_in_a_dialog_name_is_422_naming_name() {
    let s = TestServer::start().await;
    let u = s.users("nuldlg", 2).await;
    let r = s
        .http
        .post_json(
            "/chat/Dialog",
            Some(&u[0].0),
            json!({"type": 2, "name": "a\u{0}b", "occupants_ids": [u[1].1]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("name").is_some(), "{}", r.body);
    // In a filter value too (it was a 503 from the database).
    let r = s.http.get("/chat/Dialog?name=a%00b", Some(&u[0].0)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("name").is_some(), "{}", r.body);
    still_serving(&s).await;
}

#[tokio::test]
async fn a_control_character_in_a_parameter_key_is_422() {
    let s = TestServer::start().await;
    let (token, _) = s.user_token("ctlkey").await;
    let r = s
        .http
        .post_json(
            "/chat/Dialog",
            Some(&token),
            json!({"type": 1, "name": "n", "data": {"cl\u{1}ass_name": "x"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    still_serving(&s).await;
}

#[tokio::test]
async fn more_parameters_than_the_limit_are_refused() {
    let s = TestServer::start().await;
    let form: Vec<String> = (0..10_001).map(|i| format!("k{i}=1")).collect();
    let r = s.http.post_form("/session", None, &form.join("&")).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("base").is_some(), "{}", r.body);
    let items: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let body = format!("{{\"ids\":[{}]}}", items.join(","));
    let r = s
        .http
        .request(
            "POST",
            "/session",
            &[],
            Some(("application/json", body.as_bytes())),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    still_serving(&s).await;
}
