//! Webhooks to the application's backend, one story per event: each is POSTed signed
//! (the fake receiver checks `X-Parley-Signature`, the HMAC-SHA256 of the body), with the
//! event's documented payload, and only if the application's webhook subscribed to it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::push::{self, Fake};
use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const SECRET: &str = "a-webhook-secret-456";

/// A Parley whose application's webhook points at a signature-checking receiver and
/// subscribes to `events`.
async fn hooked(events: &[&str]) -> (TestServer, Arc<Fake>) {
    let mut c = test_config();
    c.push.poll_interval_ms = 50;
    c.push.retry_base_secs = 1;
    c.push.retry_max_secs = 1;
    let s = TestServer::start_with(c).await;
    let receiver = push::webhook_receiver(SECRET).await;
    let url = format!("{}/hooks/parley", receiver.url("http"));
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    parley::push::update_settings(&s.pool, s.app.id, |st| {
        st.webhook_url = Some(url);
        st.webhook_secret = Some(SECRET.into());
        st.webhook_events = events;
        Ok(())
    })
    .await
    .unwrap();
    (s, receiver)
}

/// The body of the first accepted call for `event` (waits at most 10 s); none refused.
async fn call_for(receiver: &Fake, event: &str) -> Value {
    for _ in 0..200 {
        if let Some(d) = receiver
            .deliveries()
            .into_iter()
            .find(|d| d.body["event"] == event)
        {
            assert_eq!(d.headers["x-parley-event"], event);
            assert_eq!(d.body["event"], event);
            assert!(receiver.refusals().is_empty(), "{:?}", receiver.refusals());
            return d.body["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no {event} call; got {:?}, refused {:?}",
        receiver.deliveries(),
        receiver.refusals()
    );
}

async fn group(s: &TestServer, token: &str, member: i64) -> Value {
    let r = s
        .http
        .post_json(
            "/chat/Dialog.json",
            Some(token),
            json!({"type": 2, "name": "Hooks", "occupants_ids": [member]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

async fn message(s: &TestServer, token: &str, dialog: &Value, text: &str) -> Value {
    let r = s
        .http
        .post_json(
            "/chat/Message.json",
            Some(token),
            json!({"chat_dialog_id": dialog["_id"], "message": text}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn an_edited_message_calls_message_updated_with_the_new_text() {
    let (s, receiver) = hooked(&["message.updated"]).await;
    let (alice, _) = s.user_token("alice_wh1").await;
    let (_, bob) = s.user_token("bob_wh1").await;
    let d = group(&s, &alice, bob).await;
    let m = message(&s, &alice, &d, "draft").await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Message/{}", m["_id"].as_str().unwrap()),
            Some(&alice),
            json!({"chat_dialog_id": d["_id"], "message": "final"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = call_for(&receiver, "message.updated").await;
    assert_eq!(data["_id"], m["_id"]);
    assert_eq!(data["chat_dialog_id"], d["_id"]);
    assert_eq!(data["message"], "final");
    s.stop().await;
}

#[tokio::test]
async fn a_message_deleted_for_everyone_calls_message_deleted() {
    let (s, receiver) = hooked(&["message.deleted"]).await;
    let (alice, alice_id) = s.user_token("alice_wh2").await;
    let (_, bob) = s.user_token("bob_wh2").await;
    let d = group(&s, &alice, bob).await;
    let m = message(&s, &alice, &d, "oops").await;
    let r = s
        .http
        .delete(
            &format!("/chat/Message/{}?force=1", m["_id"].as_str().unwrap()),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = call_for(&receiver, "message.deleted").await;
    assert_eq!(data["_id"], m["_id"]);
    assert_eq!(data["chat_dialog_id"], d["_id"]);
    assert_eq!(data["deleted_by"], alice_id);
    s.stop().await;
}

#[tokio::test]
async fn a_new_dialog_calls_dialog_created() {
    let (s, receiver) = hooked(&["dialog.created"]).await;
    let (alice, alice_id) = s.user_token("alice_wh3").await;
    let (_, bob) = s.user_token("bob_wh3").await;
    let d = group(&s, &alice, bob).await;
    let data = call_for(&receiver, "dialog.created").await;
    assert_eq!(data["_id"], d["_id"]);
    assert_eq!(data["type"], 2);
    assert_eq!(data["name"], "Hooks");
    assert_eq!(data["user_id"], alice_id);
    assert!(data["occupants_ids"]
        .as_array()
        .unwrap()
        .contains(&json!(bob)));
    s.stop().await;
}

#[tokio::test]
async fn a_renamed_dialog_calls_dialog_updated() {
    let (s, receiver) = hooked(&["dialog.updated"]).await;
    let (alice, _) = s.user_token("alice_wh4").await;
    let (_, bob) = s.user_token("bob_wh4").await;
    let d = group(&s, &alice, bob).await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", d["_id"].as_str().unwrap()),
            Some(&alice),
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = call_for(&receiver, "dialog.updated").await;
    assert_eq!(data["_id"], d["_id"]);
    assert_eq!(data["name"], "Renamed");
    s.stop().await;
}

#[tokio::test]
async fn a_dialog_deleted_for_everyone_calls_dialog_deleted() {
    let (s, receiver) = hooked(&["dialog.deleted"]).await;
    let (alice, alice_id) = s.user_token("alice_wh5").await;
    let (_, bob) = s.user_token("bob_wh5").await;
    let d = group(&s, &alice, bob).await;
    let r = s
        .http
        .delete(
            &format!("/chat/Dialog/{}?force=1", d["_id"].as_str().unwrap()),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = call_for(&receiver, "dialog.deleted").await;
    assert_eq!(data["_id"], d["_id"]);
    assert_eq!(data["type"], 2);
    assert_eq!(data["deleted_by"], alice_id);
    s.stop().await;
}

#[tokio::test]
async fn a_first_xmpp_connection_calls_user_online_and_the_last_closing_user_offline() {
    let (s, receiver) = hooked(&["user.online", "user.offline"]).await;
    let (_, bob) = s.user_token("bob_wh6").await;
    let mut first = Client::login(s.xmpp, Via::Tcp, &s.local(bob), PASSWORD).await;
    let data = call_for(&receiver, "user.online").await;
    assert_eq!(data["user_id"], bob);
    // A second connection is not a second "online"; closing it is not "offline".
    let mut second = Client::login(s.xmpp, Via::Tcp, &s.local(bob), PASSWORD).await;
    second.send_raw("</stream:stream>").await;
    let _ = second.try_next().await;
    first.send_raw("</stream:stream>").await;
    let _ = first.try_next().await;
    let data = call_for(&receiver, "user.offline").await;
    assert_eq!(data["user_id"], bob);
    let events: Vec<Value> = receiver
        .deliveries()
        .iter()
        .map(|d| d.body["event"].clone())
        .collect();
    assert_eq!(events, vec![json!("user.online"), json!("user.offline")]);
    s.stop().await;
}

#[tokio::test]
async fn an_event_the_webhook_did_not_subscribe_to_is_not_sent() {
    let (s, receiver) = hooked(&["dialog.deleted"]).await;
    let (alice, _) = s.user_token("alice_wh7").await;
    let (_, bob) = s.user_token("bob_wh7").await;
    let d = group(&s, &alice, bob).await;
    message(&s, &alice, &d, "not for the hook").await;
    let r = s
        .http
        .delete(
            &format!("/chat/Dialog/{}?force=1", d["_id"].as_str().unwrap()),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    call_for(&receiver, "dialog.deleted").await;
    // Whatever else had been enqueued would be delivered by the time the outbox is empty.
    let c = s.pool.get().await.unwrap();
    for _ in 0..200 {
        let left: i64 = c
            .query_one("SELECT count(*) FROM push_outbox", &[])
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<Value> = receiver
        .deliveries()
        .iter()
        .map(|d| d.body["event"].clone())
        .collect();
    assert_eq!(events, vec![json!("dialog.deleted")]);
    s.stop().await;
}
