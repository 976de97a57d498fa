//! The push API as the SDKs call it (ConnectyCube §5): subscriptions with the hosted answer
//! shapes, one user with many devices, and `POST /events` with each recipient selector.

use serde_json::{json, Value};

use crate::common::TestServer;

fn gcm(udid: &str, token: &str) -> Value {
    json!({"notification_channel": "gcm",
           "push_token": {"environment": "production", "client_identification_sequence": token},
           "device": {"platform": "android", "udid": udid}})
}

#[tokio::test]
async fn subscriptions_are_created_listed_and_deleted_in_the_hosted_shapes() {
    let s = TestServer::start().await;
    let (bob, _) = s.user_token("bob_subs").await;
    let r = s
        .http
        .post_json("/subscriptions.json", Some(&bob), gcm("phone-1", "t1"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let sub = &created[0]["subscription"];
    assert_eq!(sub["notification_channel"]["name"], "gcm");
    assert_eq!(
        sub["device"],
        json!({"udid": "phone-1", "platform": {"name": "android"}})
    );
    let r = s
        .http
        .post_json("/subscriptions.json", Some(&bob), gcm("phone-2", "t2"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let list = s.http.get("/subscriptions.json", Some(&bob)).await.json();
    assert_eq!(list.as_array().unwrap().len(), 2, "one user, many devices");
    let id = sub["id"].as_i64().unwrap();
    let r = s
        .http
        .delete(&format!("/subscriptions/{id}.json"), Some(&bob))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = s.http.get("/subscriptions.json", Some(&bob)).await.json();
    assert_eq!(list[0]["subscription"]["device"]["udid"], "phone-2");
    s.stop().await;
}

#[tokio::test]
async fn subscribing_the_same_device_again_replaces_its_token() {
    let s = TestServer::start().await;
    let (bob, _) = s.user_token("bob_resub").await;
    let a = s
        .http
        .post_json("/subscriptions.json", Some(&bob), gcm("phone", "old"))
        .await
        .json();
    let b = s
        .http
        .post_json("/subscriptions.json", Some(&bob), gcm("phone", "new"))
        .await
        .json();
    assert_eq!(a[0]["subscription"]["id"], b[0]["subscription"]["id"]);
    let list = s.http.get("/subscriptions.json", Some(&bob)).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_subscription_is_refused_with_the_field_that_is_wrong() {
    let s = TestServer::start().await;
    let (bob, _) = s.user_token("bob_badsub").await;
    let mut body = gcm("phone", "t");
    body["notification_channel"] = json!("pigeon");
    let r = s
        .http
        .post_json("/subscriptions.json", Some(&bob), body)
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.field_error("notification_channel").is_some(),
        "{}",
        r.body
    );
    let web = json!({"notification_channel": "web", "push_token": {"environment": "production", "web_endpoint": "javascript:x"},
                     "device": {"platform": "web", "udid": "b"}});
    let r = s
        .http
        .post_json("/subscriptions.json", Some(&bob), web)
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.field_error("push_token[web_endpoint]").is_some(),
        "{}",
        r.body
    );
    s.stop().await;
}

#[tokio::test]
async fn nobody_deletes_another_users_subscription() {
    let s = TestServer::start().await;
    let (bob, _) = s.user_token("bob_own").await;
    let (eve, _) = s.user_token("eve_own").await;
    let r = s
        .http
        .post_json("/subscriptions.json", Some(&bob), gcm("phone", "t"))
        .await
        .json();
    let id = r[0]["subscription"]["id"].as_i64().unwrap();
    let r = s
        .http
        .delete(&format!("/subscriptions/{id}.json"), Some(&eve))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        s.http
            .get("/subscriptions.json", Some(&bob))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.stop().await;
}

/// Outbox rows of `kind` per user id.
async fn queued_for(s: &TestServer) -> Vec<i64> {
    let c = s.pool.get().await.unwrap();
    c.query(
        "SELECT user_id FROM push_outbox WHERE kind = 'event' ORDER BY user_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn an_event_reaches_the_devices_of_the_users_its_selector_picks() {
    let mut c = crate::common::test_config();
    // Nothing is delivered here: the outbox shows who the event reached.
    c.push.workers_enabled = false;
    let s = TestServer::start_with(c).await;
    let (alice, alice_id) = s.user_token("alice_ev").await;
    let (bob, bob_id) = s.user_token("bob_ev").await;
    s.http
        .post_json("/subscriptions.json", Some(&alice), gcm("a", "ta"))
        .await;
    s.http
        .post_json("/subscriptions.json", Some(&bob), gcm("b1", "tb1"))
        .await;
    s.http
        .post_json("/subscriptions.json", Some(&bob), gcm("b2", "tb2"))
        .await;
    let message = base64_json(json!({"message": "Sale!", "ios_badge": 2}));
    let r = s
        .http
        .post_json(
            "/events.json",
            Some(&alice),
            json!({"event": {"notification_type": "push", "environment": "production",
                             "user": {"ids": format!("{bob_id}")}, "message": message}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let e = &r.json()[0]["event"];
    assert_eq!(e["kind"], "API");
    assert_eq!(e["environment"], "production");
    assert_eq!(e["application_id"], s.app.id.0);
    assert_eq!(
        queued_for(&s).await,
        [bob_id, bob_id],
        "one push per device of the user"
    );

    let r = s
        .http
        .put_json(
            &format!("/users/{alice_id}.json"),
            Some(&alice),
            json!({"user": {"tag_list": "vip,beta"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .http
        .post_json(
            "/events.json",
            Some(&bob),
            json!({"event": {"environment": "production", "user": {"tags": {"any": "vip"}}, "message": "hi vips"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(queued_for(&s).await, [alice_id, bob_id, bob_id]);

    let id = r.json()[0]["event"]["id"].as_i64().unwrap();
    let got = s.http.get(&format!("/events/{id}.json"), Some(&bob)).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["event"]["message"], "hi vips");
    let del = s
        .http
        .delete(&format!("/events/{id}.json"), Some(&bob))
        .await;
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(
        queued_for(&s).await,
        [bob_id, bob_id],
        "deleting an event drops its pushes not yet sent"
    );
    assert_eq!(
        s.http
            .get(&format!("/events/{id}.json"), Some(&bob))
            .await
            .status,
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn an_event_needs_exactly_one_recipient_selector() {
    let s = TestServer::start().await;
    let (alice, _) = s.user_token("alice_sel").await;
    for event in [
        json!({"environment": "production", "message": "x"}),
        json!({"environment": "production", "message": "x", "user": {"ids": "1", "tags": {"any": "a"}}}),
    ] {
        let r = s
            .http
            .post_json("/events.json", Some(&alice), json!({"event": event}))
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.field_error("event[user]").is_some(), "{}", r.body);
    }
    s.stop().await;
}

fn base64_json(v: Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}
