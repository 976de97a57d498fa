//! `/users`: sign-up validation, self-only update and delete, look-ups and `GET /users/v2`.

use serde_json::json;

use crate::common::{TestServer, PASSWORD};

#[tokio::test]
async fn signup_with_an_app_token() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let r = s
        .http
        .post_json("/users.json", Some(&token), json!({"user": {"login": "hank", "password": PASSWORD, "full_name": "Hank", "tag_list": ["a", "b"], "custom_data": "{\"x\":1}"}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let u = &r.json()["user"];
    assert_eq!(u["login"], "hank");
    assert_eq!(u["full_name"], "Hank");
    assert_eq!(u["user_tags"], "a,b");
    assert_eq!(u["custom_data"], "{\"x\":1}");
    assert!(u.get("password").is_none());
}

#[tokio::test]
async fn signup_with_the_auth_key_header() {
    let s = TestServer::start().await;
    let body = json!({"user": {"login": "ivy", "password": PASSWORD}}).to_string();
    let r = s
        .http
        .request(
            "POST",
            "/users.json",
            &[("CB-AuthKey", &s.app.auth_key)],
            Some(("application/json", body.as_bytes())),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn signup_without_token_or_key_is_refused() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post_json(
            "/users",
            None,
            json!({"user": {"login": "jack", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"errors": ["Token is required"]}));
}

#[tokio::test]
async fn login_shorter_than_three_characters_is_refused_naming_login() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let r = s
        .http
        .post_json(
            "/users",
            Some(&token),
            json!({"user": {"login": "ab", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("login").unwrap().contains("too short"));
}

#[tokio::test]
async fn login_longer_than_seventy_characters_is_refused() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let long = "x".repeat(71);
    let r = s
        .http
        .post_json(
            "/users",
            Some(&token),
            json!({"user": {"login": long, "password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("login").unwrap().contains("too long"));
    let ok = s
        .http
        .post_json(
            "/users",
            Some(&token),
            json!({"user": {"login": "y".repeat(70), "password": PASSWORD}}),
        )
        .await;
    assert_eq!(ok.status, 201);
}

#[tokio::test]
async fn duplicate_login_is_refused_naming_login() {
    let s = TestServer::start().await;
    s.signup("kate").await;
    let token = s.app_token().await;
    let r = s
        .http
        .post_json(
            "/users",
            Some(&token),
            json!({"user": {"login": "KATE", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.field_error("login").unwrap(), "has already been taken");
}

#[tokio::test]
async fn duplicate_email_is_refused_naming_email() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let body = json!({"user": {"email": "l@example.com", "password": PASSWORD}});
    assert_eq!(
        s.http
            .post_json("/users", Some(&token), body.clone())
            .await
            .status,
        201
    );
    let r = s.http.post_json("/users", Some(&token), body).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.field_error("email").unwrap(), "has already been taken");
}

#[tokio::test]
async fn short_password_and_bad_email_are_refused_by_name() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let r = s
        .http
        .post_json(
            "/users",
            Some(&token),
            json!({"user": {"login": "mike", "password": "short"}}),
        )
        .await;
    assert!(r.field_error("password").is_some(), "{}", r.body);
    let r = s
        .http
        .post_json(
            "/users",
            Some(&token),
            json!({"user": {"email": "not-an-email", "password": PASSWORD}}),
        )
        .await;
    assert!(r.field_error("email").is_some(), "{}", r.body);
    let r = s
        .http
        .post_json(
            "/users",
            Some(&token),
            json!({"user": {"password": PASSWORD}}),
        )
        .await;
    assert!(r.field_error("login").is_some(), "{}", r.body);
}

#[tokio::test]
async fn user_is_read_by_id_and_unknown_ids_are_not_found() {
    let s = TestServer::start().await;
    let u = s.signup("nina").await;
    let token = s.app_token().await;
    let r = s
        .http
        .get(&format!("/users/{}.json", u["id"]), Some(&token))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["user"]["login"], "nina");
    assert_eq!(s.http.get("/users/999999", Some(&token)).await.status, 404);
    assert_eq!(s.http.get("/users/abc", Some(&token)).await.status, 404);
}

#[tokio::test]
async fn users_update_themselves() {
    let s = TestServer::start().await;
    let (token, id) = s.user_token("olga").await;
    let r = s
        .http
        .put_json(
            &format!("/users/{id}.json"),
            Some(&token),
            json!({"user": {"full_name": "Olga K", "phone": "1234567890", "website": null}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["full_name"], "Olga K");
    assert_eq!(r.json()["user"]["phone"], "1234567890");
}

#[tokio::test]
async fn updating_another_user_is_forbidden() {
    let s = TestServer::start().await;
    let (token, _) = s.user_token("pete").await;
    let other = s.signup("quinn").await;
    let r = s
        .http
        .put_json(
            &format!("/users/{}", other["id"]),
            Some(&token),
            json!({"user": {"full_name": "hacked"}}),
        )
        .await;
    assert_eq!(r.status, 403);
    let still = s
        .http
        .get(&format!("/users/{}", other["id"]), Some(&token))
        .await;
    assert_eq!(still.json()["user"]["full_name"], "quinn");
}

#[tokio::test]
async fn password_change_needs_the_old_password() {
    let s = TestServer::start().await;
    let (token, id) = s.user_token("rita").await;
    let path = format!("/users/{id}");
    let r = s
        .http
        .put_json(
            &path,
            Some(&token),
            json!({"user": {"password": "new-password-1"}}),
        )
        .await;
    assert!(r.field_error("old_password").is_some(), "{}", r.body);
    let r = s
        .http
        .put_json(
            &path,
            Some(&token),
            json!({"user": {"password": "new-password-1", "old_password": "wrong-one"}}),
        )
        .await;
    assert!(r.field_error("old_password").unwrap().contains("incorrect"));
    let r = s
        .http
        .put_json(
            &path,
            Some(&token),
            json!({"user": {"password": "new-password-1", "old_password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let login = |p: &str| json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key, "user": {"login": "rita", "password": p}});
    assert_eq!(
        s.http
            .post_json("/session", None, login(PASSWORD))
            .await
            .status,
        401
    );
    assert_eq!(
        s.http
            .post_json("/session", None, login("new-password-1"))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn deleting_another_user_is_forbidden() {
    let s = TestServer::start().await;
    let (token, _) = s.user_token("sam").await;
    let other = s.signup("tina").await;
    assert_eq!(
        s.http
            .delete(&format!("/users/{}", other["id"]), Some(&token))
            .await
            .status,
        403
    );
    assert_eq!(
        s.http
            .get(&format!("/users/{}", other["id"]), Some(&token))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn deleting_yourself_ends_your_sessions() {
    let s = TestServer::start().await;
    let (token, id) = s.user_token("uma").await;
    let r = s
        .http
        .delete(&format!("/users/{id}.json"), Some(&token))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(s.http.get("/session", Some(&token)).await.status, 401);
}

#[tokio::test]
async fn deprecated_lookups_find_users() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let body = json!({"user": {"login": "victor", "email": "v@example.com", "password": PASSWORD, "full_name": "Victor Hugo",
        "tag_list": "writer,poet", "external_user_id": 555, "facebook_id": "fb1"}});
    assert_eq!(
        s.http.post_json("/users", Some(&token), body).await.status,
        201
    );
    s.signup("walter").await;
    let one = |path: String| {
        let s = &s;
        let token = token.clone();
        async move { s.http.get(&path, Some(&token)).await }
    };
    assert_eq!(
        one("/users/by_login.json?login=victor".into()).await.json()["user"]["login"],
        "victor"
    );
    assert_eq!(
        one("/users/by_email?email=v%40example.com".into())
            .await
            .json()["user"]["login"],
        "victor"
    );
    assert_eq!(
        one("/users/by_facebook_id?facebook_id=fb1".into())
            .await
            .json()["user"]["login"],
        "victor"
    );
    assert_eq!(
        one("/users/external/555.json".into()).await.json()["user"]["login"],
        "victor"
    );
    assert_eq!(one("/users/by_login?login=nobody".into()).await.status, 404);
    let page = one("/users/by_full_name?full_name=hugo".into())
        .await
        .json();
    assert_eq!(page["total_entries"], 1);
    assert_eq!(page["items"][0]["user"]["login"], "victor");
    let page = one("/users/by_tags.json?tags=poet,painter".into())
        .await
        .json();
    assert_eq!(page["total_entries"], 1);
    assert_eq!(page["current_page"], 1);
}

async fn three_users(s: &TestServer) -> (String, Vec<i64>) {
    let mut ids = Vec::new();
    for login in ["xavier", "xander", "yolanda"] {
        ids.push(s.signup(login).await["id"].as_i64().unwrap());
    }
    (s.app_token().await, ids)
}

#[tokio::test]
async fn users_v2_filters_by_id_in_both_list_forms() {
    let s = TestServer::start().await;
    let (token, ids) = three_users(&s).await;
    let r = s
        .http
        .get(
            &format!("/users/v2.json?id[in][]={}&id[in][]={}", ids[0], ids[2]),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["total_entries"], 2);
    let r = s
        .http
        .get(
            &format!("/users/v2?id%5Bin%5D={}%2C{}", ids[0], ids[1]),
            Some(&token),
        )
        .await;
    assert_eq!(r.json()["total_entries"], 2);
    let logins: Vec<_> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["login"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logins, vec!["xavier", "xander"]);
}

#[tokio::test]
async fn users_v2_eq_start_with_and_nin() {
    let s = TestServer::start().await;
    let (token, ids) = three_users(&s).await;
    let r = s.http.get("/users/v2?login=yolanda", Some(&token)).await;
    assert_eq!(r.json()["items"][0]["id"], ids[2]);
    let r = s
        .http
        .get("/users/v2?login[start_with]=xand", Some(&token))
        .await;
    assert_eq!(r.json()["total_entries"], 1);
    assert_eq!(r.json()["limit"], 5);
    let r = s
        .http
        .get(
            &format!("/users/v2?login[start_with]=xavi&id[nin]={}", ids[0]),
            Some(&token),
        )
        .await;
    assert_eq!(r.json()["total_entries"], 0);
}

#[tokio::test]
async fn users_v2_pages_sorts_and_counts() {
    let s = TestServer::start().await;
    let (token, ids) = three_users(&s).await;
    let list = ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let r = s
        .http
        .get(
            &format!("/users/v2?id[in]={list}&limit=2&offset=1&sort_desc=id"),
            Some(&token),
        )
        .await;
    let j = r.json();
    assert_eq!(j["total_entries"], 3);
    assert_eq!(j["skip"], 1);
    assert_eq!(j["items"].as_array().unwrap().len(), 2);
    assert_eq!(j["items"][0]["id"], ids[1]);
    assert_eq!(j["items"][1]["id"], ids[0]);
}

#[tokio::test]
async fn users_v2_date_filter_narrows_a_primary_filter() {
    let s = TestServer::start().await;
    let (token, _) = three_users(&s).await;
    let future = s.clock.unix_seconds() + 3600;
    let r = s
        .http
        .get(
            &format!("/users/v2?login[in]=xavier,xander&created_at[gt]={future}"),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["total_entries"], 0);
    let r = s
        .http
        .get(
            &format!("/users/v2?login[in]=xavier,xander&created_at[lt]={future}"),
            Some(&token),
        )
        .await;
    assert_eq!(r.json()["total_entries"], 2);
}

#[tokio::test]
async fn users_v2_refuses_queries_without_a_primary_filter_or_with_unknown_fields() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let r = s.http.get("/users/v2?created_at[gt]=1", Some(&token)).await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("base").is_some());
    let r = s.http.get("/users/v2?shoe_size=42", Some(&token)).await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("shoe_size").is_some());
    let r = s.http.get("/users/v2?id[gt]=1", Some(&token)).await;
    assert_eq!(r.status, 422);
    let r = s
        .http
        .get("/users/v2?login=a&limit=500", Some(&token))
        .await;
    assert!(r.field_error("limit").is_some());
}
