//! `/chat/Message` and `/chat/search`: history, unread counts maintained on write, create, edit,
//! delete by dialog type and role, system messages, reactions, search, and the domain events.

use parley::chat::ChatEvent;
use serde_json::{json, Value};

use crate::common::TestServer;

fn id(v: &Value) -> String {
    v["_id"].as_str().unwrap().to_string()
}

async fn send(s: &TestServer, token: &str, dialog: &str, text: &str) -> Value {
    let r = s
        .http
        .post_json(
            "/chat/Message.json",
            Some(token),
            json!({"chat_dialog_id": dialog, "message": text}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

async fn history(s: &TestServer, token: &str, dialog: &str, extra: &str) -> Vec<Value> {
    let r = s
        .http
        .get(
            &format!("/chat/Message.json?chat_dialog_id={dialog}&{extra}"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"].as_array().unwrap().clone()
}

async fn unread(s: &TestServer, token: &str, dialogs: &[&str]) -> Value {
    let r = s
        .http
        .get(
            &format!(
                "/chat/Message/unread.json?chat_dialog_ids={}",
                dialogs.join("%2C%20")
            ),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// A group dialog of three users: (users, dialog id).
async fn group(s: &TestServer, prefix: &str) -> (Vec<(String, i64)>, String) {
    let u = s.users(prefix, 3).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1, u[2].1]}),
        )
        .await;
    (u, id(&d))
}

#[tokio::test]
async fn created_message_has_every_field_and_updates_the_dialog() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "cm").await;
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d, "message": "where are you?", "markable": 1, "country": "USA", "sender_id": 1,
                   "attachments": {"7": {"type": "image", "id": "24504"}, "3": {"type": "image", "id": "3004", "bogus": 1}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let m = r.json();
    assert_eq!(m["chat_dialog_id"], d.as_str());
    assert_eq!(
        m["sender_id"], u[0].1,
        "custom params cannot spoof the sender"
    );
    assert_eq!(m["recipient_id"], 0);
    assert_eq!(m["country"], "USA");
    assert_eq!(m["markable"], 1);
    assert_eq!(
        m["attachments"],
        json!([{"type": "image", "id": "3004"}, {"type": "image", "id": "24504"}])
    );
    assert_eq!(m["read_ids"], json!([u[0].1]));
    assert_eq!(m["delivered_ids"], json!([u[0].1]));
    assert!(m["date_sent"].as_i64().unwrap() > 0);
    let dialog = &s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()["items"][0];
    assert_eq!(dialog["last_message"], "where are you?");
    assert_eq!(dialog["last_message_id"], m["_id"]);
    assert_eq!(dialog["last_message_user_id"], u[0].1);
    assert_eq!(dialog["last_message_date_sent"], m["date_sent"]);
    assert_eq!(dialog["unread_messages_count"], 1);
    assert!(
        dialog["last_message_status"].is_null(),
        "not the caller's message"
    );
    let mine = &s.http.get("/chat/Dialog", Some(&u[0].0)).await.json()["items"][0];
    assert_eq!(mine["unread_messages_count"], 0);
    assert_eq!(mine["last_message_status"], "sent");
}

#[tokio::test]
async fn last_message_status_follows_delivered_and_read() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "st").await;
    let m = send(&s, &u[0].0, &d, "hi").await;
    s.http
        .put_json(
            &format!("/chat/Message/{}", id(&m)),
            Some(&u[1].0),
            json!({"delivered": 1}),
        )
        .await;
    assert_eq!(
        s.http.get("/chat/Dialog", Some(&u[0].0)).await.json()["items"][0]["last_message_status"],
        "delivered"
    );
    s.http
        .put_json(
            &format!("/chat/Message/{}", id(&m)),
            Some(&u[1].0),
            json!({"read": 1, "chat_dialog_id": d}),
        )
        .await;
    assert_eq!(
        s.http.get("/chat/Dialog", Some(&u[0].0)).await.json()["items"][0]["last_message_status"],
        "read"
    );
}

#[tokio::test]
async fn first_message_to_a_recipient_creates_the_private_dialog() {
    let s = TestServer::start().await;
    let u = s.users("pv", 2).await;
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"recipient_id": u[1].1, "message": "hello"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let m = r.json();
    assert_eq!(m["recipient_id"], u[1].1);
    let list = s.http.get("/chat/Dialog", Some(&u[1].0)).await.json();
    assert_eq!(list["items"][0]["_id"], m["chat_dialog_id"]);
    assert_eq!(list["items"][0]["type"], 3);
    let again = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[1].0),
            json!({"recipient_id": u[0].1, "message": "hi back"}),
        )
        .await;
    assert_eq!(again.json()["chat_dialog_id"], m["chat_dialog_id"]);
}

#[tokio::test]
async fn private_dialog_auto_creation_racing_an_explicit_create_yields_one_dialog() {
    let s = TestServer::start().await;
    let u = s.users("race", 2).await;
    let (a, b) = tokio::join!(
        s.http.post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"recipient_id": u[1].1, "message": "x"})
        ),
        s.http.post_json(
            "/chat/Dialog",
            Some(&u[1].0),
            json!({"type": 3, "occupants_ids": [u[0].1]})
        ),
    );
    assert_eq!(
        a.json()["chat_dialog_id"],
        b.json()["_id"],
        "{} / {}",
        a.body,
        b.body
    );
}

#[tokio::test]
async fn message_needs_a_dialog_or_a_recipient_and_a_known_recipient() {
    let s = TestServer::start().await;
    let u = s.users("nd", 1).await;
    let r = s
        .http
        .post_json("/chat/Message", Some(&u[0].0), json!({"message": "x"}))
        .await;
    assert!(r.field_error("chat_dialog_id").is_some(), "{}", r.body);
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"recipient_id": 99999, "message": "x"}),
        )
        .await;
    assert!(r.field_error("recipient_id").is_some());
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": "5c094c0ce588ce6856f87422", "message": "x"}),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn only_admins_post_in_a_broadcast_dialog() {
    let s = TestServer::start().await;
    let u = s.users("bc", 2).await;
    let d = id(&s.dialog(&u[0].0, json!({"type": 1, "name": "News"})).await);
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[1].0),
            json!({"chat_dialog_id": d, "message": "me too"}),
        )
        .await;
    assert_eq!(r.status, 403);
    send(&s, &u[0].0, &d, "announcement").await;
    let items = history(&s, &u[1].0, &d, "").await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        unread(&s, &u[1].0, &[&d]).await[&d],
        0,
        "reading the history marks it read"
    );
}

#[tokio::test]
async fn non_members_cannot_read_or_post_in_a_group() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "nm").await;
    let outsider = s.user_token("nm_out").await;
    assert_eq!(
        s.http
            .get(
                &format!("/chat/Message?chat_dialog_id={d}"),
                Some(&outsider.0)
            )
            .await
            .status,
        404
    );
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&outsider.0),
            json!({"chat_dialog_id": d, "message": "x"}),
        )
        .await;
    assert_eq!(r.status, 404);
    send(&s, &u[0].0, &d, "members only").await;
}

#[tokio::test]
async fn history_is_ascending_by_date_sent_filters_and_pages() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "hi").await;
    for (i, t) in [300, 100, 200].iter().enumerate() {
        let r = s
            .http
            .post_json(
                "/chat/Message",
                Some(&u[0].0),
                json!({"chat_dialog_id": d, "message": format!("m{i}"), "date_sent": t}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    send(&s, &u[1].0, &d, "from one").await;
    let bodies = |items: Vec<Value>| {
        items
            .iter()
            .map(|m| m["message"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let t = &u[2].0;
    assert_eq!(
        bodies(history(&s, t, &d, "mark_as_read=0&date_sent[lte]=300").await),
        vec!["m1", "m2", "m0"]
    );
    assert_eq!(
        bodies(
            history(
                &s,
                t,
                &d,
                "mark_as_read=0&date_sent[lte]=300&sort_desc=date_sent"
            )
            .await
        ),
        vec!["m0", "m2", "m1"]
    );
    assert_eq!(
        bodies(
            history(
                &s,
                t,
                &d,
                "mark_as_read=0&date_sent[gt]=100&date_sent[lt]=300"
            )
            .await
        ),
        vec!["m2"]
    );
    assert_eq!(
        bodies(history(&s, t, &d, &format!("mark_as_read=0&sender_id={}", u[1].1)).await),
        vec!["from one"]
    );
    assert_eq!(
        bodies(
            history(
                &s,
                t,
                &d,
                &format!("mark_as_read=0&sender_id[ne]={}", u[0].1)
            )
            .await
        ),
        vec!["from one"]
    );
    assert_eq!(
        bodies(history(&s, t, &d, "mark_as_read=0&message[ctn]=from").await),
        vec!["from one"]
    );
    assert_eq!(
        bodies(history(&s, t, &d, "mark_as_read=0&limit=2&skip=1").await),
        vec!["m2", "m0"]
    );
    let r = s
        .http
        .get(
            &format!("/chat/Message?chat_dialog_id={d}&colour=red"),
            Some(t),
        )
        .await;
    assert!(r.field_error("colour").is_some());
    let r = s.http.get("/chat/Message", Some(t)).await;
    assert!(r.field_error("chat_dialog_id").is_some());
}

#[tokio::test]
async fn history_filters_by_attachment_type() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "at").await;
    s.http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d, "attachments": [{"type": "image", "id": "1"}]}),
        )
        .await;
    s.http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d, "attachments": [{"type": "audio", "id": "2"}]}),
        )
        .await;
    let items = history(&s, &u[1].0, &d, "mark_as_read=0&attachments.type=image").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["attachments"][0]["id"], "1");
    assert_eq!(
        history(
            &s,
            &u[1].0,
            &d,
            "mark_as_read=0&attachments.type[nin]=image"
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn reading_five_of_twenty_leaves_fifteen_unread() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "pr").await;
    for i in 0..20 {
        send(&s, &u[0].0, &d, &format!("m{i}")).await;
    }
    assert_eq!(
        unread(&s, &u[1].0, &[&d]).await,
        json!({"total": 20, d.clone(): 20})
    );
    let page = history(&s, &u[1].0, &d, "limit=5").await;
    assert_eq!(page.len(), 5);
    assert!(page.iter().all(|m| m["read"] == 1));
    assert_eq!(unread(&s, &u[1].0, &[&d]).await[&d], 15);
    // Reading the same page again changes nothing.
    history(&s, &u[1].0, &d, "limit=5").await;
    assert_eq!(unread(&s, &u[1].0, &[&d]).await[&d], 15);
    assert_eq!(
        s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()["items"][0]["unread_messages_count"],
        15
    );
    assert_eq!(
        unread(&s, &u[2].0, &[&d]).await[&d],
        20,
        "another user's count is untouched"
    );
}

#[tokio::test]
async fn mark_as_read_zero_leaves_messages_unread() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "mr").await;
    send(&s, &u[0].0, &d, "a").await;
    let items = history(&s, &u[1].0, &d, "mark_as_read=0").await;
    assert_eq!(items[0]["read"], 0);
    assert_eq!(unread(&s, &u[1].0, &[&d]).await[&d], 1);
}

#[tokio::test]
async fn unread_counts_follow_deletes() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "ud").await;
    let a = send(&s, &u[0].0, &d, "a").await;
    let b = send(&s, &u[0].0, &d, "b").await;
    send(&s, &u[0].0, &d, "c").await;
    let r = s
        .http
        .delete(&format!("/chat/Message/{}?force=1", id(&a)), Some(&u[0].0))
        .await;
    assert_eq!(r.json()["SuccessfullyDeleted"]["ids"], json!([id(&a)]));
    assert_eq!(
        unread(&s, &u[1].0, &[&d]).await[&d],
        2,
        "a forced delete removes it from everyone's count"
    );
    s.http
        .delete(&format!("/chat/Message/{}", id(&b)), Some(&u[1].0))
        .await;
    assert_eq!(
        unread(&s, &u[1].0, &[&d]).await[&d],
        1,
        "deleting for oneself removes it from one's own count"
    );
    assert_eq!(unread(&s, &u[2].0, &[&d]).await[&d], 2);
    let bodies: Vec<_> = history(&s, &u[1].0, &d, "mark_as_read=0")
        .await
        .iter()
        .map(|m| m["message"].clone())
        .collect();
    assert_eq!(bodies, vec![json!("c")]);
}

#[tokio::test]
async fn clear_history_hides_earlier_messages_and_zeroes_unread() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "ch").await;
    send(&s, &u[0].0, &d, "old").await;
    assert_eq!(
        s.http
            .delete(
                &format!("/chat/Dialog/clearHistory/{d}.json"),
                Some(&u[1].0)
            )
            .await
            .status,
        200
    );
    assert_eq!(unread(&s, &u[1].0, &[&d]).await[&d], 0);
    assert!(history(&s, &u[1].0, &d, "").await.is_empty());
    send(&s, &u[0].0, &d, "new").await;
    let items = history(&s, &u[1].0, &d, "mark_as_read=0").await;
    assert_eq!(
        items
            .iter()
            .map(|m| m["message"].clone())
            .collect::<Vec<_>>(),
        vec![json!("new")]
    );
    assert_eq!(unread(&s, &u[1].0, &[&d]).await[&d], 1);
    assert_eq!(
        history(&s, &u[2].0, &d, "mark_as_read=0").await.len(),
        2,
        "others keep their history"
    );
}

#[tokio::test]
async fn unread_is_counted_for_every_dialog_type() {
    let s = TestServer::start().await;
    let u = s.users("ut", 2).await;
    let b = id(&s.dialog(&u[0].0, json!({"type": 1, "name": "B"})).await);
    let g = id(&s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await);
    let p = id(&s
        .dialog(&u[0].0, json!({"type": 3, "occupants_ids": [u[1].1]}))
        .await);
    let q = id(&s.dialog(&u[0].0, json!({"type": 4, "name": "Q"})).await);
    s.http
        .request(
            "POST",
            &format!("/chat/Dialog/{q}/subscribe"),
            &[("CB-Token", &u[1].0)],
            None,
        )
        .await;
    for d in [&b, &g, &p, &q] {
        send(&s, &u[0].0, d, "x").await;
        send(&s, &u[0].0, d, "y").await;
    }
    let counts = unread(&s, &u[1].0, &[&b, &g, &p, &q]).await;
    assert_eq!(
        counts,
        json!({"total": 8, b.clone(): 2, g.clone(): 2, p.clone(): 2, q.clone(): 2})
    );
    s.http
        .put_json(
            "/chat/Message",
            Some(&u[1].0),
            json!({"read": 1, "chat_dialog_id": g}),
        )
        .await;
    assert_eq!(unread(&s, &u[1].0, &[]).await["total"], 6);
}

#[tokio::test]
async fn read_and_delivered_are_idempotent() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "id").await;
    let m = send(&s, &u[0].0, &d, "x").await;
    for _ in 0..2 {
        let r = s
            .http
            .put_json(
                &format!("/chat/Message/{}.json", id(&m)),
                Some(&u[1].0),
                json!({"read": "1", "chat_dialog_id": d}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let item = &history(&s, &u[0].0, &d, "").await[0];
    assert_eq!(item["read_ids"], json!([u[0].1, u[1].1]));
    assert_eq!(item["delivered_ids"], json!([u[0].1, u[1].1]));
    assert_eq!(unread(&s, &u[1].0, &[&d]).await[&d], 0);
}

#[tokio::test]
async fn only_the_sender_edits_a_message() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "ed").await;
    let m = send(&s, &u[0].0, &d, "typo").await;
    let path = format!("/chat/Message/{}", id(&m));
    assert_eq!(
        s.http
            .put_json(&path, Some(&u[1].0), json!({"message": "hacked"}))
            .await
            .status,
        403
    );
    assert_eq!(
        s.http
            .put_json(&path, Some(&u[0].0), json!({"message": "fixed"}))
            .await
            .status,
        200
    );
    let item = &history(&s, &u[1].0, &d, "").await[0];
    assert_eq!(item["message"], "fixed");
    assert!(item["edited_at"].as_i64().is_some());
    assert_eq!(
        s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()["items"][0]["last_message"],
        "fixed"
    );
}

async fn try_delete(s: &TestServer, token: &str, m: &str, force: bool) -> Value {
    let q = if force { "?force=1" } else { "" };
    s.http
        .delete(&format!("/chat/Message/{m}{q}"), Some(token))
        .await
        .json()
}

fn outcome(r: &Value) -> &'static str {
    for (k, name) in [
        ("SuccessfullyDeleted", "deleted"),
        ("NotFound", "not found"),
        ("WrongPermissions", "forbidden"),
    ] {
        if !r[k]["ids"].as_array().unwrap().is_empty() {
            return name;
        }
    }
    "none"
}

#[tokio::test]
async fn group_deletes_follow_the_roles() {
    let s = TestServer::start().await;
    let u = s.users("gd", 3).await;
    let d = id(&s.dialog(&u[0].0, json!({"type": 2, "name": "G", "occupants_ids": [u[1].1, u[2].1], "admins_ids": [u[2].1]})).await);
    let owners = send(&s, &u[0].0, &d, "owner's").await;
    assert_eq!(
        outcome(&try_delete(&s, &u[1].0, &id(&owners), true).await),
        "forbidden",
        "a regular user cannot delete others' messages for everyone"
    );
    assert_eq!(
        outcome(&try_delete(&s, &u[1].0, &id(&owners), false).await),
        "deleted",
        "but can for themselves"
    );
    assert_eq!(
        history(&s, &u[0].0, &d, "mark_as_read=0").await.len(),
        1,
        "others still see it"
    );
    let own = send(&s, &u[1].0, &d, "mine").await;
    assert_eq!(
        outcome(&try_delete(&s, &u[1].0, &id(&own), true).await),
        "deleted",
        "own message for everyone"
    );
    let other = send(&s, &u[0].0, &d, "moderate me").await;
    assert_eq!(
        outcome(&try_delete(&s, &u[2].0, &id(&other), true).await),
        "deleted",
        "an admin deletes anyone's"
    );
    assert_eq!(
        outcome(&try_delete(&s, &u[2].0, &id(&other), true).await),
        "not found"
    );
}

#[tokio::test]
async fn private_deletes_only_own_messages_for_both_sides() {
    let s = TestServer::start().await;
    let u = s.users("pd", 2).await;
    let d = id(&s
        .dialog(&u[0].0, json!({"type": 3, "occupants_ids": [u[1].1]}))
        .await);
    let theirs = send(&s, &u[0].0, &d, "a").await;
    assert_eq!(
        outcome(&try_delete(&s, &u[1].0, &id(&theirs), true).await),
        "forbidden"
    );
    assert_eq!(
        outcome(&try_delete(&s, &u[0].0, &id(&theirs), true).await),
        "deleted"
    );
    assert!(history(&s, &u[1].0, &d, "").await.is_empty());
}

#[tokio::test]
async fn broadcast_readers_cannot_delete_messages() {
    let s = TestServer::start().await;
    let u = s.users("bd", 2).await;
    let d = id(&s.dialog(&u[0].0, json!({"type": 1, "name": "B"})).await);
    let m = send(&s, &u[0].0, &d, "news").await;
    assert_eq!(
        outcome(&try_delete(&s, &u[1].0, &id(&m), false).await),
        "forbidden"
    );
    assert_eq!(
        outcome(&try_delete(&s, &u[0].0, &id(&m), true).await),
        "deleted"
    );
}

#[tokio::test]
async fn deleting_several_messages_reports_each_outcome() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "dm").await;
    let mine = send(&s, &u[1].0, &d, "mine").await;
    let theirs = send(&s, &u[0].0, &d, "theirs").await;
    let missing = "5c094682e588ce59fff87424";
    let r = s
        .http
        .delete(
            &format!(
                "/chat/Message/{},{},{missing}?force=1",
                id(&mine),
                id(&theirs)
            ),
            Some(&u[1].0),
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"SuccessfullyDeleted": {"ids": [id(&mine)]}, "NotFound": {"ids": [missing]}, "WrongPermissions": {"ids": [id(&theirs)]}})
    );
}

#[tokio::test]
async fn deleting_the_last_message_moves_the_dialogs_last_message_back() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "lm").await;
    send(&s, &u[0].0, &d, "first").await;
    let second = send(&s, &u[0].0, &d, "second").await;
    try_delete(&s, &u[0].0, &id(&second), true).await;
    assert_eq!(
        s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()["items"][0]["last_message"],
        "first"
    );
}

#[tokio::test]
async fn a_new_message_brings_a_deleted_private_dialog_back() {
    let s = TestServer::start().await;
    let u = s.users("bb", 2).await;
    let d = id(&s
        .dialog(&u[0].0, json!({"type": 3, "occupants_ids": [u[1].1]}))
        .await);
    send(&s, &u[0].0, &d, "old").await;
    s.http
        .delete(&format!("/chat/Dialog/{d}"), Some(&u[1].0))
        .await;
    assert!(
        s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    send(&s, &u[0].0, &d, "new").await;
    let list = s.http.get("/chat/Dialog", Some(&u[1].0)).await.json();
    assert_eq!(list["items"][0]["_id"], d.as_str());
    assert_eq!(list["items"][0]["unread_messages_count"], 1);
    let items = history(&s, &u[1].0, &d, "").await;
    assert_eq!(items.len(), 1, "history before the delete stays hidden");
}

#[tokio::test]
async fn admin_pins_a_message_of_the_dialog() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "pn").await;
    let m = send(&s, &u[1].0, &d, "pin me").await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{d}"),
            Some(&u[0].0),
            json!({"push_all": {"pinned_messages_ids": [id(&m)]}}),
        )
        .await;
    assert_eq!(r.json()["pinned_messages_ids"], json!([id(&m)]));
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{d}"),
            Some(&u[0].0),
            json!({"pull_all": {"pinned_messages_ids": [id(&m)]}}),
        )
        .await;
    assert_eq!(r.json()["pinned_messages_ids"], json!([]));
}

#[tokio::test]
async fn system_message_answers_its_shape_and_is_not_stored() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "sy").await;
    let mut events = s.chat().events().subscribe();
    let r = s
        .http
        .post_json(
            "/chat/Message/system.json",
            Some(&u[0].0),
            json!({"recipientId": u[1].1, "friendId": "90675", "userExt": {"name": "Smith"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["recipientId"], u[1].1);
    assert_eq!(
        j["extensionParams"],
        json!({"friendId": "90675", "userExt": {"name": "Smith"}})
    );
    assert_eq!(j["messageId"].as_str().unwrap().len(), 24);
    assert!(matches!(events.try_recv(), Ok(ChatEvent::SystemMessage { to, .. }) if to == u[1].1));
    assert!(history(&s, &u[1].0, &d, "").await.is_empty());
    let r = s
        .http
        .post_json("/chat/Message/system", Some(&u[0].0), json!({"x": 1}))
        .await;
    assert!(r.field_error("recipientId").is_some());
}

#[tokio::test]
async fn a_user_holds_one_reaction_per_message() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "re").await;
    let m = send(&s, &u[0].0, &d, "react").await;
    let path = format!("/chat/Message/{}/reactions.json", id(&m));
    assert_eq!(
        s.http
            .put_json(&path, Some(&u[1].0), json!({"add": "👍"}))
            .await
            .status,
        200
    );
    assert_eq!(
        s.http
            .put_json(&path, Some(&u[2].0), json!({"add": "👍"}))
            .await
            .status,
        200
    );
    assert_eq!(
        s.http
            .put_json(&path, Some(&u[1].0), json!({"add": "🔥", "remove": "👍"}))
            .await
            .status,
        200
    );
    assert_eq!(
        s.http.get(&path, Some(&u[0].0)).await.json(),
        json!({"👍": [u[2].1], "🔥": [u[1].1]})
    );
    s.http
        .put_json(&path, Some(&u[1].0), json!({"add": "😐"}))
        .await;
    let item = &history(&s, &u[1].0, &d, "").await[0];
    assert_eq!(
        item["reactions"],
        json!({"own": ["😐"], "total": {"👍": 1, "😐": 1}})
    );
    s.http
        .put_json(&path, Some(&u[1].0), json!({"remove": "😐"}))
        .await;
    assert_eq!(
        s.http.get(&path, Some(&u[0].0)).await.json(),
        json!({"👍": [u[2].1]})
    );
}

#[tokio::test]
async fn reactions_are_bounded_and_need_a_known_message() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "rb").await;
    let m = send(&s, &u[0].0, &d, "x").await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Message/{}/reactions", id(&m)),
            Some(&u[1].0),
            json!({"add": "x".repeat(33)}),
        )
        .await;
    assert!(r.field_error("add").is_some());
    let r = s
        .http
        .put_json(
            "/chat/Message/5c094687e588ce59fff87425/reactions",
            Some(&u[1].0),
            json!({"add": "👍"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let outsider = s.user_token("rb_out").await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Message/{}/reactions", id(&m)),
            Some(&outsider.0),
            json!({"add": "👍"}),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn search_finds_text_only_in_the_callers_dialogs() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "se").await;
    send(&s, &u[0].0, &d, "Ipsa lorem tempore").await;
    send(&s, &u[0].0, &d, "nothing here").await;
    let other = s.users("se_x", 2).await;
    let private = id(&s
        .dialog(
            &other[0].0,
            json!({"type": 3, "occupants_ids": [other[1].1]}),
        )
        .await);
    send(&s, &other[0].0, &private, "secret lorem").await;
    let r = s
        .http
        .get("/chat/search.json?search_text=lorem&limit=3", Some(&u[1].0))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = &r.json()["results"];
    assert_eq!(res["messages"].as_array().unwrap().len(), 1);
    assert_eq!(res["messages"][0]["message"], "Ipsa lorem tempore");
    assert_eq!(res["users"][0]["id"], u[0].1);
    assert!(res["dialogs"].as_array().unwrap().is_empty());
    let r = s
        .http
        .get("/chat/search?search_text=Lorem", Some(&u[1].0))
        .await;
    assert!(
        r.json()["results"]["messages"]
            .as_array()
            .unwrap()
            .is_empty(),
        "search is case-sensitive"
    );
}

#[tokio::test]
async fn search_limits_are_enforced() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "sl").await;
    let t = &u[0].0;
    assert!(s
        .http
        .get("/chat/search?search_text=lor", Some(t))
        .await
        .field_error("search_text")
        .is_some());
    let eleven = vec![d.clone(); 11].join(",");
    assert!(s
        .http
        .get(
            &format!("/chat/search?search_text=lorem&chat_dialog_ids={eleven}"),
            Some(t)
        )
        .await
        .field_error("chat_dialog_ids")
        .is_some());
    let wide = "/chat/search?search_text=lorem&start_date=2024-06-01T00:00:00.000Z&end_date=2024-01-01T00:00:00.000Z";
    assert!(s
        .http
        .get(wide, Some(t))
        .await
        .field_error("end_date")
        .is_some());
    assert!(s
        .http
        .get(
            "/chat/search?search_text=lorem&start_date=2024-06-01T00:00:00Z",
            Some(t)
        )
        .await
        .field_error("end_date")
        .is_some());
    send(&s, t, &d, "lorem in window").await;
    let now = s.clock.unix_seconds();
    let ok = format!(
        "/chat/search?search_text=lorem&start_date={}&end_date={}&chat_dialog_ids={d}",
        now + 60,
        now - 86400
    );
    let r = s.http.get(&ok, Some(t)).await;
    assert_eq!(
        r.json()["results"]["messages"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );
    assert!(s
        .http
        .get("/chat/search?search_text=lorem&limit=101", Some(t))
        .await
        .field_error("limit")
        .is_some());
}

#[tokio::test]
async fn each_real_time_action_publishes_an_event_after_commit() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "ev").await;
    let mut events = s.chat().events().subscribe();
    let quiet = send(&s, &u[0].0, &d, "history only").await;
    assert!(events.try_recv().is_err(), "no send_to_chat, no event");
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d, "message": "live", "send_to_chat": 1}),
        )
        .await;
    match events.try_recv() {
        Ok(ChatEvent::MessageSent {
            recipients,
            message,
            ..
        }) => {
            assert_eq!(recipients, vec![u[1].1, u[2].1]);
            assert_eq!(message["_id"], r.json()["_id"]);
        }
        other => panic!("expected MessageSent, got {other:?}"),
    }
    s.http
        .put_json(
            &format!("/chat/Message/{}", id(&quiet)),
            Some(&u[0].0),
            json!({"message": "edited"}),
        )
        .await;
    assert!(
        matches!(events.try_recv(), Ok(ChatEvent::MessageEdited { body, .. }) if body == "edited")
    );
    s.http
        .put_json(
            &format!("/chat/Message/{}", id(&quiet)),
            Some(&u[1].0),
            json!({"read": 1}),
        )
        .await;
    assert!(
        matches!(events.try_recv(), Ok(ChatEvent::MessagesMarked { read: true, by, .. }) if by == u[1].1)
    );
    s.http
        .put_json(
            &format!("/chat/Message/{}", id(&quiet)),
            Some(&u[2].0),
            json!({"delivered": 1}),
        )
        .await;
    assert!(matches!(
        events.try_recv(),
        Ok(ChatEvent::MessagesMarked { read: false, .. })
    ));
    s.http
        .put_json(
            &format!("/chat/Message/{}/reactions", id(&quiet)),
            Some(&u[1].0),
            json!({"add": "👍"}),
        )
        .await;
    assert!(
        matches!(events.try_recv(), Ok(ChatEvent::ReactionChanged { add: Some(a), .. }) if a == "👍")
    );
    try_delete(&s, &u[0].0, &id(&quiet), true).await;
    assert!(
        matches!(events.try_recv(), Ok(ChatEvent::MessagesDeleted { messages, .. }) if messages[0].as_str() == id(&quiet))
    );
    // Refused actions publish nothing.
    s.http
        .put_json(
            &format!("/chat/Message/{}", r.json()["_id"].as_str().unwrap()),
            Some(&u[1].0),
            json!({"message": "no"}),
        )
        .await;
    assert!(events.try_recv().is_err());
}

#[tokio::test]
async fn bad_input_is_refused_by_field_and_nothing_is_written() {
    let s = TestServer::start().await;
    let (u, d) = group(&s, "bi").await;
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d, "message": "x".repeat(10_001)}),
        )
        .await;
    assert!(r.field_error("message").is_some());
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d, "attachments": ["not an object"]}),
        )
        .await;
    assert!(r.field_error("attachments").is_some());
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d, "date_sent": "yesterday"}),
        )
        .await;
    assert!(r.field_error("date_sent").is_some());
    assert!(history(&s, &u[1].0, &d, "").await.is_empty());
    assert_eq!(unread(&s, &u[1].0, &[&d]).await[&d], 0);
}

#[tokio::test]
async fn public_deletes_follow_the_roles() {
    let s = TestServer::start().await;
    let u = s.users("pubd", 3).await;
    let d = id(&s
        .dialog(
            &u[0].0,
            json!({"type": 4, "name": "P", "admins_ids": [u[2].1]}),
        )
        .await);
    for x in &u[1..] {
        s.http
            .request(
                "POST",
                &format!("/chat/Dialog/{d}/subscribe"),
                &[("CB-Token", &x.0)],
                None,
            )
            .await;
    }
    let owners = send(&s, &u[0].0, &d, "owner's").await;
    assert_eq!(
        outcome(&try_delete(&s, &u[1].0, &id(&owners), true).await),
        "forbidden"
    );
    assert_eq!(
        outcome(&try_delete(&s, &u[1].0, &id(&owners), false).await),
        "deleted"
    );
    let own = send(&s, &u[1].0, &d, "mine").await;
    assert_eq!(
        outcome(&try_delete(&s, &u[1].0, &id(&own), true).await),
        "deleted"
    );
    let other = send(&s, &u[1].0, &d, "moderate me").await;
    assert_eq!(
        outcome(&try_delete(&s, &u[2].0, &id(&other), true).await),
        "deleted",
        "an admin deletes anyone's"
    );
}

#[tokio::test]
async fn allow_preview_lets_non_members_read_but_not_post() {
    let s = TestServer::start().await;
    let u = s.users("prev", 2).await;
    let open = id(&s
        .dialog(
            &u[0].0,
            json!({"type": 4, "name": "Channel", "permissions": {"allow_preview": true}}),
        )
        .await);
    let closed = id(&s
        .dialog(&u[0].0, json!({"type": 4, "name": "Closed"}))
        .await);
    send(&s, &u[0].0, &open, "for everyone").await;
    send(&s, &u[0].0, &closed, "subscribers only").await;
    assert_eq!(history(&s, &u[1].0, &open, "").await.len(), 1);
    assert_eq!(
        s.http
            .get(
                &format!("/chat/Message?chat_dialog_id={closed}"),
                Some(&u[1].0)
            )
            .await
            .status,
        404
    );
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[1].0),
            json!({"chat_dialog_id": open, "message": "hi"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}
