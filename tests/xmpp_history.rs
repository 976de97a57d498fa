//! XMPP `save_to_history`: stored through the chat service (as REST would), stamped before
//! delivery, acknowledged only once durable, group-committed under concurrency.

use parley::chat::messages::NewMessage;
use parley::chat::Actor;
use parley::model::UserId;
use serde_json::Value;

use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

fn stored_chat(to: &str, id: &str, body: &str) -> String {
    format!(
        "<message to='{to}@localhost' type='chat' id='{id}' xmlns='jabber:client'><body>{body}</body>\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history><custom_key>v</custom_key></extraParams>\
         <markable xmlns='urn:xmpp:chat-markers:0'/></message>"
    )
}

fn extra(m: &parley::xmpp::stream::Element, name: &str) -> Option<String> {
    m.child("extraParams", "jabber:client")?
        .child(name, "jabber:client")
        .map(|e| e.text())
}

async fn history(srv: &TestServer, token: &str, dialog: &str) -> Vec<Value> {
    let r = srv
        .http
        .get(
            &format!("/chat/Message?chat_dialog_id={dialog}&mark_as_read=0"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn save_to_history_message_is_stored_stamped_and_shown_by_rest() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_hist").await;
    let (bob, bob_token) = srv.chat_user("bob_hist").await;
    let mut a = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    a.send_raw(&stored_chat(&bob, "6b0809bbf5504c5e53000001", "kept"))
        .await;
    let m = b.expect_named("message").await;
    let dialog = extra(&m, "dialog_id").expect("dialog_id stamped");
    assert_eq!(dialog.len(), 24);
    assert!(extra(&m, "date_sent").unwrap().parse::<i64>().is_ok());
    assert_eq!(
        extra(&m, "message_id").as_deref(),
        Some("6b0809bbf5504c5e53000001")
    );
    assert_eq!(extra(&m, "custom_key").as_deref(), Some("v"));
    let items = history(&srv, &bob_token, &dialog).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["_id"], "6b0809bbf5504c5e53000001");
    assert_eq!(items[0]["message"], "kept");
    assert_eq!(items[0]["custom_key"], "v");
    assert_eq!(items[0]["markable"], 1);
    let unread = srv
        .http
        .get("/chat/Message/unread", Some(&bob_token))
        .await
        .json();
    assert_eq!(unread["total"], 1);
    let list = srv.http.get("/chat/Dialog", Some(&bob_token)).await.json();
    assert_eq!(list["items"][0]["last_message"], "kept");
    assert_eq!(list["items"][0]["type"], 3);
}

#[tokio::test]
async fn messages_without_save_to_history_are_relayed_not_stored() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_nohist").await;
    let (bob, bob_token) = srv.chat_user("bob_nohist").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='x1'><body>ephemeral</body></message>"
    ))
    .await;
    let m = b.expect_named("message").await;
    assert!(extra(&m, "dialog_id").is_none());
    let list = srv.http.get("/chat/Dialog", Some(&bob_token)).await.json();
    assert_eq!(list["total_entries"], 0);
}

#[tokio::test]
async fn a_non_hex_stanza_id_is_kept_and_the_stored_id_is_stamped() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_uuid").await;
    let (bob, bob_token) = srv.chat_user("bob_uuid").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    a.send_raw(&stored_chat(&bob, "not-an-object-id", "uuid"))
        .await;
    let m = b.expect_named("message").await;
    assert_eq!(m.attr("id"), Some("not-an-object-id"));
    let stored_id = extra(&m, "message_id").unwrap();
    let items = history(&srv, &bob_token, &extra(&m, "dialog_id").unwrap()).await;
    assert_eq!(items[0]["_id"], stored_id.as_str());
}

#[tokio::test]
async fn the_stream_management_ack_comes_after_the_message_is_durable() {
    let srv = TestServer::start().await;
    let (alice, alice_token) = srv.chat_user("alice_ack").await;
    let (bob, _) = srv.chat_user("bob_ack").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await;
    a.expect_named("enabled").await;
    a.send_raw(&stored_chat(&bob, "6b0809bbf5504c5e53000002", "durable"))
        .await;
    a.send_raw("<r xmlns='urn:xmpp:sm:3'/>").await;
    let ack = a.expect_named("a").await;
    assert_eq!(ack.attr("h"), Some("1"));
    // By the time the ack arrives the message is committed: REST sees it at once.
    let list = srv
        .http
        .get("/chat/Dialog", Some(&alice_token))
        .await
        .json();
    assert_eq!(
        list["items"][0]["last_message_id"],
        "6b0809bbf5504c5e53000002"
    );
}

#[tokio::test]
async fn a_stored_message_to_an_offline_user_waits_and_is_in_history() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_off").await;
    let (bob, bob_token) = srv.chat_user("bob_off").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await;
    a.expect_named("enabled").await;
    a.send_raw(&stored_chat(&bob, "6b0809bbf5504c5e53000003", "while away"))
        .await;
    a.send_raw("<r xmlns='urn:xmpp:sm:3'/>").await;
    a.expect_named("a").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    b.send_raw("<presence/>").await;
    let m = b.expect_named("message").await;
    assert!(m.child("delay", "urn:xmpp:delay").is_some());
    let dialog = extra(&m, "dialog_id").unwrap();
    assert_eq!(history(&srv, &bob_token, &dialog).await.len(), 1);
}

#[tokio::test]
async fn concurrent_stored_messages_are_group_committed_without_loss() {
    let srv = TestServer::start().await;
    let (bob, bob_token) = srv.chat_user("bob_many").await;
    let mut senders = Vec::new();
    for i in 0..5 {
        let (local, _) = srv.chat_user(&format!("sender_{i}")).await;
        senders.push(Client::login(srv.xmpp, Via::Tcp, &local, PASSWORD).await);
    }
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    // Writes from five streams arrive together; each stream is handled concurrently server-side.
    for n in 0..20 {
        for (i, c) in senders.iter_mut().enumerate() {
            c.send_raw(&stored_chat(
                &bob,
                &format!("{:024x}", 0x6b08_0000_0000u64 + (i * 100 + n) as u64),
                "x",
            ))
            .await;
        }
    }
    for _ in 0..100 {
        b.expect_named("message").await;
    }
    let unread = srv
        .http
        .get("/chat/Message/unread", Some(&bob_token))
        .await
        .json();
    assert_eq!(unread["total"], 100);
}

#[tokio::test]
async fn a_refused_message_does_not_sink_the_rest_of_its_batch() {
    let srv = TestServer::start().await;
    let (_, alice_id) = srv.user_token("alice_batch").await;
    let (bob_token, bob_id) = srv.user_token("bob_batch").await;
    let actor = Actor {
        from_stream: false,
        app: srv.app.clone(),
        user: UserId(alice_id),
    };
    let good = |n: u32| NewMessage {
        recipient_id: Some(bob_id),
        body: Some(format!("ok {n}")),
        ..Default::default()
    };
    let bad = NewMessage {
        recipient_id: Some(bob_id),
        body: Some("x".repeat(20_000)),
        ..Default::default()
    };
    let chat = srv.chat();
    let (a, b, c) = tokio::join!(
        chat.store_message(&actor, good(1)),
        chat.store_message(&actor, bad),
        chat.store_message(&actor, good(2))
    );
    assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
    assert!(b.is_err());
    let dialog = a.unwrap().dialog.id;
    assert_eq!(history(&srv, &bob_token, dialog.as_str()).await.len(), 2);
}

#[tokio::test]
async fn the_same_message_twice_in_one_batch_is_stored_once() {
    let srv = TestServer::start().await;
    let (_, alice_id) = srv.user_token("alice_twice").await;
    let (bob_token, bob_id) = srv.user_token("bob_twice").await;
    let actor = Actor {
        from_stream: false,
        app: srv.app.clone(),
        user: UserId(alice_id),
    };
    let msg = |body: &str| NewMessage {
        recipient_id: Some(bob_id),
        id: Some("6b0900000000000000000001".into()),
        body: Some(body.into()),
        ..Default::default()
    };
    let chat = srv.chat();
    // Both reach the writer together: the batch conflicts with itself and is retried one by one.
    let (a, b) = tokio::join!(
        chat.store_message(&actor, msg("once")),
        chat.store_message(&actor, msg("once"))
    );
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_ne!(a.duplicate, b.duplicate, "exactly one is the resend");
    assert_eq!(
        history(&srv, &bob_token, a.dialog.id.as_str()).await.len(),
        1
    );
}

#[tokio::test]
async fn a_batch_into_one_dialog_numbers_messages_in_order_and_counts_unread_per_member() {
    let srv = TestServer::start().await;
    let (alice_token, alice_id) = srv.user_token("alice_order").await;
    let (bob_token, bob_id) = srv.user_token("bob_order").await;
    let actor = |user| Actor {
        from_stream: false,
        app: srv.app.clone(),
        user: UserId(user),
    };
    let (alice, bob) = (actor(alice_id), actor(bob_id));
    let msg = |to, n: usize| NewMessage {
        recipient_id: Some(to),
        body: Some(format!("m{n}")),
        date_sent: Some(1_700_000_000 + n as i64),
        ..Default::default()
    };
    let chat = srv.chat();
    let first = chat
        .store_message(&alice, msg(bob_id, 0))
        .await
        .expect("first");
    // Six messages from both sides at once: one batch, one statement.
    let results = futures_util::future::join_all((1..7).map(|n| {
        let (who, to) = if n % 3 == 0 {
            (&bob, alice_id)
        } else {
            (&alice, bob_id)
        };
        chat.store_message(who, msg(to, n))
    }))
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let dialog = first.dialog.id.as_str();
    let page = history(&srv, &alice_token, dialog).await;
    let bodies: Vec<&str> = page.iter().filter_map(|m| m["message"].as_str()).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
    let unread = |token: &str| {
        let srv = &srv;
        let token = token.to_owned();
        async move {
            srv.http
                .get(
                    &format!("/chat/Message/unread?chat_dialog_ids={dialog}"),
                    Some(&token),
                )
                .await
                .json()["total"]
                .clone()
        }
    };
    // Bob sent m3 and m6, Alice the other five: each counts only the other's messages.
    assert_eq!(unread(&bob_token).await, 5);
    assert_eq!(unread(&alice_token).await, 2);
    let dialogs = srv.http.get("/chat/Dialog", Some(&bob_token)).await.json();
    assert_eq!(dialogs["items"][0]["last_message"], "m6");
}
