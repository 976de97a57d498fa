//! `/chat/Dialog`: the dialog model, types and visibility, the query grammar, updates under the
//! roles table, deletes, subscriptions, notifications and occupants.

use serde_json::{json, Value};

use crate::common::TestServer;

fn id(d: &Value) -> String {
    d["_id"].as_str().unwrap().to_string()
}

fn ids_of(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(id).collect()
}

#[tokio::test]
async fn group_dialog_carries_the_room_jid_and_the_creator_as_occupant() {
    let s = TestServer::start().await;
    let u = s.users("g", 2).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    assert_eq!(
        d["xmpp_room_jid"],
        format!("{}_{}@muc.localhost", s.app.id.0, id(&d))
    );
    assert_eq!(d["occupants_ids"], json!([u[0].1, u[1].1]));
    assert_eq!(d["user_id"], u[0].1);
    assert_eq!(d["type"], 2);
    assert_eq!(d["unread_messages_count"], 0);
    assert_eq!(d["permissions"]["allow_preview"], false);
    for key in [
        "last_message",
        "last_message_id",
        "last_message_user_id",
        "last_message_date_sent",
        "last_message_status",
        "photo",
        "description",
        "extensions",
    ] {
        assert!(
            d.get(key).is_some_and(Value::is_null),
            "{key} should be null: {d}"
        );
    }
    assert_eq!(d["pinned_messages_ids"], json!([]));
    assert_eq!(d["admins_ids"], json!([]));
}

#[tokio::test]
async fn private_dialog_has_no_room_and_is_unique_per_pair() {
    let s = TestServer::start().await;
    let u = s.users("p", 2).await;
    let a = s
        .dialog(&u[0].0, json!({"type": 3, "occupants_ids": [u[1].1]}))
        .await;
    assert!(a["xmpp_room_jid"].is_null());
    let b = s
        .dialog(&u[1].0, json!({"type": 3, "occupants_ids": [u[0].1]}))
        .await;
    assert_eq!(id(&a), id(&b));
}

#[tokio::test]
async fn private_dialog_stays_unique_under_two_concurrent_creates() {
    let s = TestServer::start().await;
    let u = s.users("c", 2).await;
    let (a, b) = tokio::join!(
        s.http.post_json(
            "/chat/Dialog",
            Some(&u[0].0),
            json!({"type": 3, "occupants_ids": [u[1].1]})
        ),
        s.http.post_json(
            "/chat/Dialog",
            Some(&u[1].0),
            json!({"type": 3, "occupants_ids": [u[0].1]})
        ),
    );
    assert_eq!(id(&a.json()), id(&b.json()), "{} / {}", a.body, b.body);
    let statuses = [a.status, b.status];
    assert!(statuses.contains(&201), "{statuses:?}");
}

#[tokio::test]
async fn occupant_ids_as_the_sdk_sends_them_are_accepted() {
    let s = TestServer::start().await;
    let u = s.users("sdk", 3).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": format!("{}, {}", u[1].1, u[2].1)}),
        )
        .await;
    assert_eq!(d["occupants_ids"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn name_is_required_for_broadcast_group_and_public_dialogs() {
    let s = TestServer::start().await;
    let u = s.users("n", 2).await;
    for t in [1, 2, 4] {
        let r = s
            .http
            .post_json(
                "/chat/Dialog",
                Some(&u[0].0),
                json!({"type": t, "occupants_ids": [u[1].1]}),
            )
            .await;
        assert_eq!(r.status, 422, "type {t}");
        assert!(r.field_error("name").is_some());
    }
}

#[tokio::test]
async fn private_dialog_needs_exactly_one_other_user() {
    let s = TestServer::start().await;
    let u = s.users("x", 3).await;
    let r = s
        .http
        .post_json(
            "/chat/Dialog",
            Some(&u[0].0),
            json!({"type": 3, "occupants_ids": [u[1].1, u[2].1]}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("occupants_ids").is_some());
    let r = s
        .http
        .post_json("/chat/Dialog", Some(&u[0].0), json!({"type": 3}))
        .await;
    assert!(r.field_error("occupants_ids").is_some());
}

#[tokio::test]
async fn unknown_user_ids_are_named() {
    let s = TestServer::start().await;
    let u = s.users("k", 1).await;
    let r = s
        .http
        .post_json(
            "/chat/Dialog",
            Some(&u[0].0),
            json!({"type": 2, "name": "G", "occupants_ids": [987654, 987655]}),
        )
        .await;
    assert_eq!(r.status, 422);
    let msg = r.field_error("occupants_ids").unwrap();
    assert!(msg.contains("987654") && msg.contains("987655"), "{msg}");
}

#[tokio::test]
async fn a_dialog_has_at_most_five_admins() {
    let s = TestServer::start().await;
    let u = s.users("adm", 7).await;
    let others: Vec<i64> = u[1..].iter().map(|x| x.1).collect();
    let r = s
        .http
        .post_json(
            "/chat/Dialog",
            Some(&u[0].0),
            json!({"type": 2, "name": "G", "occupants_ids": others, "admins_ids": others}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("admins_ids").is_some());
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": others, "admins_ids": &others[..5]}),
        )
        .await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}/admins", id(&d)),
            Some(&u[0].0),
            json!({"push_all": {"admins_ids": [others[5]]}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
}

#[tokio::test]
async fn broadcast_dialog_is_visible_to_every_user_of_the_application() {
    let s = TestServer::start().await;
    let u = s.users("b", 2).await;
    let d = s.dialog(&u[0].0, json!({"type": 1, "name": "News"})).await;
    let list = s.http.get("/chat/Dialog", Some(&u[1].0)).await.json();
    assert_eq!(ids_of(&list), vec![id(&d)]);
    let late = s.user_token("late").await;
    assert_eq!(
        ids_of(&s.http.get("/chat/Dialog", Some(&late.0)).await.json()),
        vec![id(&d)]
    );
}

/// The list adds a user's broadcast inbox entries only when its own statement reports one
/// missing; a user who listed before the broadcast existed must still see it, with the
/// messages sent so far unread, in the page, in the total and in `count=1`.
#[tokio::test]
async fn broadcast_dialog_created_after_a_users_last_list_appears_in_their_next_one() {
    let s = TestServer::start().await;
    let u = s.users("bl", 2).await;
    let g = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    let before = s.http.get("/chat/Dialog", Some(&u[1].0)).await.json();
    assert_eq!(ids_of(&before), vec![id(&g)]);
    let b = s.dialog(&u[0].0, json!({"type": 1, "name": "News"})).await;
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": id(&b), "message": "hello all", "send_to_chat": 1}),
        )
        .await;
    assert!(r.status < 300, "{}", r.body);
    // A count comes first here, a filtered list that leaves broadcasts out for the late user
    // below: whichever read comes first must add the entry.
    let count = s
        .http
        .get("/chat/Dialog?count=1", Some(&u[1].0))
        .await
        .json();
    assert_eq!(count, json!({"items_count": 2}));
    let after = s.http.get("/chat/Dialog", Some(&u[1].0)).await.json();
    assert_eq!(after["total_entries"], 2);
    let mut listed = ids_of(&after);
    listed.sort();
    let mut expected = vec![id(&g), id(&b)];
    expected.sort();
    assert_eq!(listed, expected);
    let news = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| id(d) == id(&b))
        .unwrap();
    assert_eq!(news["unread_messages_count"], 1, "{news}");
    let late = s.user_token("bl_late").await;
    let only_groups = s
        .http
        .get("/chat/Dialog?type=2", Some(&late.0))
        .await
        .json();
    assert_eq!(only_groups["total_entries"], 0);
    let broadcasts = s
        .http
        .get("/chat/Dialog?type=1", Some(&late.0))
        .await
        .json();
    assert_eq!(ids_of(&broadcasts), vec![id(&b)]);
    assert_eq!(broadcasts["items"][0]["unread_messages_count"], 1);
}

/// A page past the end has no row to carry the total: it is read separately.
#[tokio::test]
async fn a_page_past_the_end_is_empty_and_still_reports_the_total() {
    let s = TestServer::start().await;
    let u = s.users("pe", 2).await;
    for i in 0..3 {
        s.dialog(
            &u[0].0,
            json!({"type": 2, "name": format!("d{i}"), "occupants_ids": [u[1].1]}),
        )
        .await;
    }
    let page = s
        .http
        .get("/chat/Dialog?limit=2&skip=5", Some(&u[0].0))
        .await
        .json();
    assert_eq!(
        page,
        json!({"items": [], "limit": 2, "skip": 5, "total_entries": 3})
    );
    let nobody = s.user_token("pe_new").await;
    let empty = s.http.get("/chat/Dialog", Some(&nobody.0)).await.json();
    assert_eq!(
        empty,
        json!({"items": [], "limit": 100, "skip": 0, "total_entries": 0})
    );
}

/// The caller's own last message carries its status; someone else's carries none.
#[tokio::test]
async fn last_message_status_is_shown_only_on_the_callers_own_last_message() {
    let s = TestServer::start().await;
    let u = s.users("ls", 2).await;
    let g = id(&s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await);
    let r = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": g, "message": "mine", "send_to_chat": 1}),
        )
        .await;
    assert!(r.status < 300, "{}", r.body);
    let mine = s.http.get("/chat/Dialog", Some(&u[0].0)).await.json();
    assert_eq!(mine["items"][0]["last_message_status"], "sent");
    assert_eq!(mine["items"][0]["last_message"], "mine");
    let theirs = s.http.get("/chat/Dialog", Some(&u[1].0)).await.json();
    assert!(theirs["items"][0]["last_message_status"].is_null());
    assert_eq!(theirs["items"][0]["unread_messages_count"], 1);
}

#[tokio::test]
async fn group_dialog_is_invisible_to_non_occupants() {
    let s = TestServer::start().await;
    let u = s.users("v", 3).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    assert!(ids_of(&s.http.get("/chat/Dialog", Some(&u[2].0)).await.json()).is_empty());
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[2].0),
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        ids_of(&s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()),
        vec![id(&d)]
    );
}

#[tokio::test]
async fn public_dialog_is_listed_for_subscribers_and_findable_by_type() {
    let s = TestServer::start().await;
    let u = s.users("pub", 2).await;
    let d = s.dialog(&u[0].0, json!({"type": 4, "name": "Open"})).await;
    assert_eq!(d["occupants_count"], 1);
    assert!(ids_of(&s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()).is_empty());
    let found = s
        .http
        .get("/chat/Dialog?type=4", Some(&u[1].0))
        .await
        .json();
    assert_eq!(ids_of(&found), vec![id(&d)]);
    assert!(found["items"][0]["unread_messages_count"].is_null());
    let r = s
        .http
        .request(
            "POST",
            &format!("/chat/Dialog/{}/subscribe.json", id(&d)),
            &[("CB-Token", &u[1].0)],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["occupants_count"], 2);
    assert_eq!(
        ids_of(&s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()),
        vec![id(&d)]
    );
    let r = s
        .http
        .delete(&format!("/chat/dialog/{}/subscribe", id(&d)), Some(&u[1].0))
        .await;
    assert_eq!(r.status, 200);
    assert!(ids_of(&s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()).is_empty());
}

#[tokio::test]
async fn only_public_dialogs_can_be_subscribed_to() {
    let s = TestServer::start().await;
    let u = s.users("sub", 2).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    let r = s
        .http
        .request(
            "POST",
            &format!("/chat/Dialog/{}/subscribe", id(&d)),
            &[("CB-Token", &u[1].0)],
            None,
        )
        .await;
    assert_eq!(r.status, 403);
}

/// Three dialogs for one user: group "alpha" (ext friend_id=1), group "beta" (friend_id=2), private.
async fn three_dialogs(s: &TestServer) -> (Vec<(String, i64)>, Vec<String>) {
    let mut app = s.app.clone();
    app.dialog_extensions = vec!["friend_id".into(), "status".into()];
    parley::db::apps::upsert(&s.pool, &app, s.clock.now())
        .await
        .unwrap();
    let u = s.users("f", 3).await;
    let a = s.dialog(&u[0].0, json!({"type": 2, "name": "alpha team", "occupants_ids": [u[1].1], "extensions": {"friend_id": 1}})).await;
    s.clock.advance(std::time::Duration::from_secs(10));
    let b = s.dialog(&u[0].0, json!({"type": 2, "name": "beta team", "occupants_ids": [u[2].1], "extensions": {"friend_id": 2}})).await;
    s.clock.advance(std::time::Duration::from_secs(10));
    let c = s
        .dialog(&u[0].0, json!({"type": 3, "occupants_ids": [u[1].1]}))
        .await;
    (u, vec![id(&a), id(&b), id(&c)])
}

async fn query(s: &TestServer, token: &str, q: &str) -> Vec<String> {
    let r = s
        .http
        .get(&format!("/chat/Dialog.json?{q}"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    let mut v = ids_of(&r.json());
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn filters_by_type_with_eq_in_nin_and_ne() {
    let s = TestServer::start().await;
    let (u, d) = three_dialogs(&s).await;
    let t = &u[0].0;
    assert_eq!(query(&s, t, "type=3").await, vec![d[2].clone()]);
    assert_eq!(query(&s, t, "type=1").await, Vec::<String>::new());
    assert_eq!(query(&s, t, "type[in]=2%2C3").await, sorted(d.clone()));
    assert_eq!(query(&s, t, "type[in]=1").await, Vec::<String>::new());
    assert_eq!(query(&s, t, "type[nin]=2").await, vec![d[2].clone()]);
    assert_eq!(query(&s, t, "type[nin]=2,3").await, Vec::<String>::new());
    assert_eq!(query(&s, t, "type[ne]=3").await, sorted(d[..2].to_vec()));
    assert_eq!(query(&s, t, "type[ne]=4").await.len(), 3);
}

#[tokio::test]
async fn filters_by_name_contains_and_id() {
    let s = TestServer::start().await;
    let (u, d) = three_dialogs(&s).await;
    let t = &u[0].0;
    assert_eq!(query(&s, t, "name[ctn]=ALPHA").await, vec![d[0].clone()]);
    assert_eq!(query(&s, t, "name[ctn]=gamma").await, Vec::<String>::new());
    assert_eq!(query(&s, t, "name=beta%20team").await, vec![d[1].clone()]);
    assert_eq!(query(&s, t, "name=beta").await, Vec::<String>::new());
    assert_eq!(
        query(&s, t, &format!("_id={}", d[1])).await,
        vec![d[1].clone()]
    );
    assert_eq!(
        query(&s, t, &format!("_id[in]={},{}", d[0], d[2])).await,
        sorted(vec![d[0].clone(), d[2].clone()])
    );
    assert_eq!(
        query(&s, t, &format!("_id[nin]={}", d[0])).await,
        sorted(d[1..].to_vec())
    );
}

#[tokio::test]
async fn filters_by_dates_with_lt_lte_gt_gte() {
    let s = TestServer::start().await;
    let (u, d) = three_dialogs(&s).await;
    let t = &u[0].0;
    let all = s.http.get("/chat/Dialog", Some(t)).await.json();
    let created_b = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["_id"] == d[1].as_str())
        .unwrap()["created_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        query(&s, t, &format!("created_at[gt]={created_b}")).await,
        vec![d[2].clone()]
    );
    assert_eq!(
        query(&s, t, &format!("created_at[gte]={created_b}")).await,
        sorted(d[1..].to_vec())
    );
    assert_eq!(
        query(&s, t, &format!("created_at[lt]={created_b}")).await,
        vec![d[0].clone()]
    );
    assert_eq!(
        query(&s, t, &format!("created_at[lte]={created_b}")).await,
        sorted(d[..2].to_vec())
    );
    assert_eq!(
        query(&s, t, "updated_at[lt]=1000").await,
        Vec::<String>::new()
    );
    assert_eq!(
        query(&s, t, "last_message_date_sent[gt]=0").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn filters_by_extensions_and_occupants() {
    let s = TestServer::start().await;
    let (u, d) = three_dialogs(&s).await;
    let t = &u[0].0;
    assert_eq!(
        query(&s, t, "extensions%5Bfriend_id%5D=2").await,
        vec![d[1].clone()]
    );
    assert_eq!(
        query(
            &s,
            t,
            "extensions[friend_id][in][]=1&extensions[friend_id][in][]=2"
        )
        .await,
        sorted(d[..2].to_vec())
    );
    assert_eq!(
        query(&s, t, "extensions[friend_id]=3").await,
        Vec::<String>::new()
    );
    assert_eq!(
        query(&s, t, &format!("occupants_ids[all]={},{}", u[0].1, u[2].1)).await,
        vec![d[1].clone()]
    );
    assert_eq!(
        query(&s, t, &format!("occupants_ids[in]={}", u[1].1)).await,
        sorted(vec![d[0].clone(), d[2].clone()])
    );
}

#[tokio::test]
async fn unknown_filter_field_or_operator_is_refused_by_name() {
    let s = TestServer::start().await;
    let (u, _) = three_dialogs(&s).await;
    let r = s.http.get("/chat/Dialog?colour=red", Some(&u[0].0)).await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("colour").is_some());
    let r = s.http.get("/chat/Dialog?type[like]=2", Some(&u[0].0)).await;
    assert!(r.field_error("type").unwrap().contains("like"));
    let r = s
        .http
        .get("/chat/Dialog?extensions[mood]=x", Some(&u[0].0))
        .await;
    assert!(r.field_error("extensions[mood]").is_some(), "{}", r.body);
    let r = s
        .http
        .get("/chat/Dialog?sort_desc=colour", Some(&u[0].0))
        .await;
    assert!(r.field_error("sort").is_some());
}

#[tokio::test]
async fn pagination_is_consistent_and_count_answers_only_the_count() {
    let s = TestServer::start().await;
    let u = s.users("pg", 2).await;
    for i in 0..5 {
        s.dialog(
            &u[0].0,
            json!({"type": 2, "name": format!("d{i}"), "occupants_ids": [u[1].1]}),
        )
        .await;
    }
    let mut seen = Vec::new();
    for skip in [0, 2, 4] {
        let page = s
            .http
            .get(&format!("/chat/Dialog?limit=2&skip={skip}"), Some(&u[0].0))
            .await
            .json();
        assert_eq!(page["total_entries"], 5);
        assert_eq!(page["skip"], skip);
        assert_eq!(page["limit"], 2);
        seen.extend(ids_of(&page));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{seen:?}");
    let count = s
        .http
        .get("/chat/Dialog?count=1", Some(&u[0].0))
        .await
        .json();
    assert_eq!(count, json!({"items_count": 5}));
    let asc = s
        .http
        .get("/chat/Dialog?sort_asc=created_at", Some(&u[0].0))
        .await
        .json();
    let desc = s
        .http
        .get("/chat/Dialog?sort_desc=created_at", Some(&u[0].0))
        .await
        .json();
    let mut rev = ids_of(&desc);
    rev.reverse();
    assert_eq!(ids_of(&asc), rev);
}

#[tokio::test]
async fn extensions_keep_allowed_fields_as_strings_and_null_resets() {
    let s = TestServer::start().await;
    let (u, d) = three_dialogs(&s).await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", d[0]),
            Some(&u[0].0),
            json!({"extensions": {"friend_id": 1078, "unknown_field": "x", "status": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["extensions"],
        json!({"friend_id": "1078", "status": "true"})
    );
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", d[0]),
            Some(&u[0].0),
            json!({"extensions": null}),
        )
        .await;
    assert!(r.json()["extensions"].is_null());
}

#[tokio::test]
async fn custom_data_needs_a_class_name_and_merges_on_update() {
    let s = TestServer::start().await;
    let u = s.users("cd", 2).await;
    let r = s
        .http
        .post_json(
            "/chat/Dialog",
            Some(&u[0].0),
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1], "data": {"n": 1}}),
        )
        .await;
    assert!(r.field_error("data[class_name]").is_some());
    let d = s.dialog(&u[0].0, json!({"type": 2, "name": "G", "occupants_ids": [u[1].1], "data": {"class_name": "P", "dialog_number": 101, "optional_name": "x"}})).await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[0].0),
            json!({"data": {"class_name": "P", "dialog_number": 78}}),
        )
        .await;
    assert_eq!(
        r.json()["data"],
        json!({"class_name": "P", "dialog_number": 78, "optional_name": "x"})
    );
}

#[tokio::test]
async fn regular_user_can_add_occupants_to_a_group_dialog() {
    let s = TestServer::start().await;
    let u = s.users("add", 3).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[1].0),
            json!({"push_all": {"occupants_ids": [u[2].1]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["occupants_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        ids_of(&s.http.get("/chat/Dialog", Some(&u[2].0)).await.json()),
        vec![id(&d)]
    );
}

#[tokio::test]
async fn regular_user_cannot_remove_occupants_and_nothing_changes() {
    let s = TestServer::start().await;
    let u = s.users("rm", 3).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1, u[2].1]}),
        )
        .await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[1].0),
            json!({"name": "renamed", "pull_all": {"occupants_ids": [u[2].1]}}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.json()["errors"]["base"][0]
        .as_str()
        .unwrap()
        .contains("remove occupants"));
    let list = s.http.get("/chat/Dialog", Some(&u[0].0)).await.json();
    assert_eq!(list["items"][0]["name"], "G");
    assert_eq!(
        list["items"][0]["occupants_ids"].as_array().unwrap().len(),
        3
    );
}

#[tokio::test]
async fn admin_can_remove_occupants_from_a_group_dialog() {
    let s = TestServer::start().await;
    let u = s.users("ad", 3).await;
    let d = s.dialog(&u[0].0, json!({"type": 2, "name": "G", "occupants_ids": [u[1].1, u[2].1], "admins_ids": [u[1].1]})).await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[1].0),
            json!({"pull_all": {"occupants_ids": [u[2].1]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(ids_of(&s.http.get("/chat/Dialog", Some(&u[2].0)).await.json()).is_empty());
}

#[tokio::test]
async fn regular_user_cannot_pin_in_group_dialog() {
    let s = TestServer::start().await;
    let u = s.users("pin", 2).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[1].0),
            json!({"push_all": {"pinned_messages_ids": ["5c0e7a13e588ce6b6f3ebf80"]}}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[0].0),
            json!({"push_all": {"pinned_messages_ids": ["5c0e7a13e588ce6b6f3ebf80"]}}),
        )
        .await;
    assert_eq!(
        r.status, 422,
        "the owner may pin, but only messages of the dialog: {}",
        r.body
    );
}

#[tokio::test]
async fn regular_user_can_change_group_info_but_not_public_info() {
    let s = TestServer::start().await;
    let u = s.users("info", 2).await;
    let g = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}.json", id(&g)),
            Some(&u[1].0),
            json!({"name": "New", "photo": "p.jpg", "description": "d"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.json()["name"].as_str(), r.json()["photo"].as_str()),
        (Some("New"), Some("p.jpg"))
    );
    let p = s.dialog(&u[0].0, json!({"type": 4, "name": "P"})).await;
    s.http
        .request(
            "POST",
            &format!("/chat/Dialog/{}/subscribe", id(&p)),
            &[("CB-Token", &u[1].0)],
            None,
        )
        .await;
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{}", id(&p)),
            Some(&u[1].0),
            json!({"name": "Mine"}),
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn only_the_owner_manages_admins() {
    let s = TestServer::start().await;
    let u = s.users("own", 3).await;
    let d = s.dialog(&u[0].0, json!({"type": 2, "name": "G", "occupants_ids": [u[1].1, u[2].1], "admins_ids": [u[1].1]})).await;
    let path = format!("/chat/Dialog/{}/admins.json", id(&d));
    let r = s
        .http
        .put_json(
            &path,
            Some(&u[1].0),
            json!({"push_all": {"admins_ids": [u[2].1]}}),
        )
        .await;
    assert_eq!(r.status, 403, "an admin may not add admins");
    let r = s
        .http
        .put_json(
            &path,
            Some(&u[0].0),
            json!({"push_all": {"admins_ids": [u[2].1]}}),
        )
        .await;
    assert_eq!(r.json()["admins_ids"], json!([u[1].1, u[2].1]));
    let r = s
        .http
        .put_json(
            &path,
            Some(&u[0].0),
            json!({"pull_all": {"admins_ids": [u[1].1]}}),
        )
        .await;
    assert_eq!(r.json()["admins_ids"], json!([u[2].1]));
}

#[tokio::test]
async fn leaving_a_group_removes_you_from_occupants() {
    let s = TestServer::start().await;
    let u = s.users("lv", 2).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    assert_eq!(
        s.http
            .delete(&format!("/chat/Dialog/{}", id(&d)), Some(&u[1].0))
            .await
            .status,
        200
    );
    assert!(ids_of(&s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()).is_empty());
    assert_eq!(
        s.http.get("/chat/Dialog", Some(&u[0].0)).await.json()["items"][0]["occupants_ids"],
        json!([u[0].1])
    );
}

#[tokio::test]
async fn deleting_a_private_dialog_hides_it_for_the_caller_only() {
    let s = TestServer::start().await;
    let u = s.users("hd", 2).await;
    let d = s
        .dialog(&u[0].0, json!({"type": 3, "occupants_ids": [u[1].1]}))
        .await;
    assert_eq!(
        s.http
            .delete(&format!("/chat/Dialog/{}.json", id(&d)), Some(&u[0].0))
            .await
            .status,
        200
    );
    assert!(ids_of(&s.http.get("/chat/Dialog", Some(&u[0].0)).await.json()).is_empty());
    assert_eq!(
        ids_of(&s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()),
        vec![id(&d)]
    );
}

#[tokio::test]
async fn only_the_owner_deletes_a_dialog_for_everyone() {
    let s = TestServer::start().await;
    let u = s.users("fd", 2).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    let path = format!("/chat/Dialog/{}", id(&d));
    let r = s
        .http
        .request(
            "DELETE",
            &path,
            &[("CB-Token", &u[1].0)],
            Some(("application/x-www-form-urlencoded", b"force=1")),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .http
        .request(
            "DELETE",
            &path,
            &[("CB-Token", &u[0].0)],
            Some(("application/x-www-form-urlencoded", b"force=1")),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(ids_of(&s.http.get("/chat/Dialog", Some(&u[1].0)).await.json()).is_empty());
}

#[tokio::test]
async fn deleting_several_dialogs_reports_each_outcome() {
    let s = TestServer::start().await;
    let u = s.users("md", 2).await;
    let mine = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "mine", "occupants_ids": [u[1].1]}),
        )
        .await;
    let theirs = s
        .dialog(
            &u[1].0,
            json!({"type": 2, "name": "theirs", "occupants_ids": [u[0].1]}),
        )
        .await;
    let missing = "5c094c0ce588ce6856f87422";
    let path = format!(
        "/chat/Dialog/{},{},{}?force=1",
        id(&mine),
        id(&theirs),
        missing
    );
    let r = s.http.delete(&path, Some(&u[0].0)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({
            "SuccessfullyDeleted": {"ids": [id(&mine)]},
            "NotFound": {"ids": [missing]},
            "WrongPermissions": {"ids": [id(&theirs)]},
        })
    );
}

#[tokio::test]
async fn notifications_are_on_by_default_and_can_be_turned_off() {
    let s = TestServer::start().await;
    let u = s.users("nt", 2).await;
    let d = s
        .dialog(&u[0].0, json!({"type": 3, "occupants_ids": [u[1].1]}))
        .await;
    let path = format!("/chat/Dialog/{}/notifications.json", id(&d));
    assert_eq!(
        s.http.get(&path, Some(&u[1].0)).await.json(),
        json!({"notifications": {"enabled": 1}})
    );
    let r = s
        .http
        .put_json(&path, Some(&u[1].0), json!({"enabled": "0"}))
        .await;
    assert_eq!(r.json(), json!({"notifications": {"enabled": 0}}));
    assert_eq!(
        s.http.get(&path, Some(&u[1].0)).await.json()["notifications"]["enabled"],
        0
    );
    assert_eq!(
        s.http.get(&path, Some(&u[0].0)).await.json()["notifications"]["enabled"],
        1
    );
    assert!(s
        .http
        .put_json(&path, Some(&u[1].0), json!({}))
        .await
        .field_error("enabled")
        .is_some());
}

#[tokio::test]
async fn occupants_endpoint_pages_user_objects() {
    let s = TestServer::start().await;
    let u = s.users("oc", 3).await;
    let d = s.dialog(&u[0].0, json!({"type": 4, "name": "P"})).await;
    for x in &u[1..] {
        s.http
            .request(
                "POST",
                &format!("/chat/Dialog/{}/subscribe", id(&d)),
                &[("CB-Token", &x.0)],
                None,
            )
            .await;
    }
    let r = s
        .http
        .get(
            &format!("/chat/Dialog/{}/occupants.json?limit=2&skip=1", id(&d)),
            Some(&u[0].0),
        )
        .await
        .json();
    let got: Vec<i64> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![u[1].1, u[2].1]);
    assert_eq!(r["items"][0]["login"], "oc_u1");
}

#[tokio::test]
async fn dialog_paths_ignore_case() {
    let s = TestServer::start().await;
    let u = s.users("lc", 1).await;
    assert_eq!(
        s.http.get("/chat/dialog.json", Some(&u[0].0)).await.status,
        200
    );
}

#[tokio::test]
async fn an_application_session_cannot_use_dialogs() {
    let s = TestServer::start().await;
    let t = s.app_token().await;
    let r = s.http.get("/chat/Dialog", Some(&t)).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn occupant_changes_publish_an_event_after_commit() {
    let s = TestServer::start().await;
    let u = s.users("ev", 3).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    let mut events = s.chat().events().subscribe();
    s.http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[0].0),
            json!({"push_all": {"occupants_ids": [u[2].1]}}),
        )
        .await;
    match events.try_recv() {
        Ok(parley::chat::ChatEvent::OccupantsChanged { added, removed, .. }) => {
            assert_eq!(added, vec![u[2].1]);
            assert!(removed.is_empty());
        }
        other => panic!("expected OccupantsChanged, got {other:?}"),
    }
    // A refused change publishes nothing.
    s.http
        .put_json(
            &format!("/chat/Dialog/{}", id(&d)),
            Some(&u[2].0),
            json!({"pull_all": {"occupants_ids": [u[1].1]}}),
        )
        .await;
    assert!(events.try_recv().is_err());
}
