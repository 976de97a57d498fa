//! The storage API (`/blobs`) as the SDKs use it, over real sockets: create, the upload form
//! posted as the SDK posts it, complete, download as owner / occupant / stranger / anonymous,
//! public and private, limits, expiring URLs, cleanup; on the local disk store (served by
//! Parley over HTTP) and on an S3-compatible server (moto in server mode, started here).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::http::Resp;
use crate::common::{self, test_config, Http, TestServer};

/// `scheme://host:port/path?query` → (address, path with query).
pub(crate) fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("an http URL: {url}"));
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let host = host.replace("localhost", "127.0.0.1");
    (host.parse().expect("host:port"), format!("/{path}"))
}

/// What the SDK's `createAndUpload` does with `blob_object_access.params`: POST the query's
/// fields (decoded) and then `file` as `multipart/form-data` to the URL without its query.
pub(crate) async fn post_form(params: &str, file: &[u8], content_type: &str) -> Resp {
    let (addr, path) = split_url(params);
    let (path, query) = path.split_once('?').unwrap_or((&path, ""));
    let boundary = "----parleytestboundary7MA4YWxk";
    let mut body = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    Http::new(addr)
        .request("POST", path, &[], Some((&ct, &body)))
        .await
}

/// GET of an absolute URL (a redirect's target).
pub(crate) async fn fetch(url: &str) -> Resp {
    let (addr, path) = split_url(url);
    Http::new(addr).get(&path, None).await
}

async fn create(s: &TestServer, token: &str, name: &str, ct: &str, public: bool) -> Value {
    let r = s
        .http
        .post_json(
            "/blobs.json",
            Some(token),
            json!({"blob": {"name": name, "content_type": ct, "public": public}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["blob"].clone()
}

/// Create, upload and complete, as `Cube.storage.createAndUpload` does.
async fn upload(s: &TestServer, token: &str, bytes: &[u8], public: bool) -> Value {
    let blob = create(s, token, "photo.png", "image/png", public).await;
    let params = blob["blob_object_access"]["params"].as_str().unwrap();
    let r = post_form(params, bytes, "image/png").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .http
        .put_json(
            &format!("/blobs/{}/complete.json", blob["id"]),
            Some(token),
            json!({"size": bytes.len()}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    blob
}

fn uid(b: &Value) -> String {
    b["uid"].as_str().unwrap().to_owned()
}

/// `GET /blobs/{uid}/download` → the bytes behind its redirect (or the refusal).
async fn download(s: &TestServer, uid: &str, token: Option<&str>) -> Result<Resp, Resp> {
    let r = s.http.get(&format!("/blobs/{uid}/download"), token).await;
    if r.status != 301 {
        return Err(r);
    }
    assert_eq!(r.header("cache-control"), Some("no-store"));
    Ok(fetch(r.header("location").expect("Location")).await)
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n not really a picture \r\n--";

#[tokio::test]
async fn an_uploaded_blob_is_completed_with_its_stored_size_and_downloads_for_its_owner() {
    let s = TestServer::start().await;
    let (t, me) = s.user_token("blob_owner").await;
    let blob = upload(&s, &t, PNG, false).await;
    assert_eq!(blob["blob_status"], "new");
    assert_eq!(blob["blob_object_access"]["object_access_type"], "Write");
    let info = s
        .http
        .get(&format!("/blobs/{}.json", blob["id"]), Some(&t))
        .await
        .json();
    assert_eq!(info["blob"]["size"], PNG.len());
    assert_eq!(info["blob"]["blob_status"], "complete");
    assert_eq!(info["blob"]["user_id"], me);
    assert!(info["blob"]["set_completed_at"].is_string());
    let got = download(&s, &uid(&blob), Some(&t)).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body.as_bytes(), String::from_utf8_lossy(PNG).as_bytes());
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn a_public_blob_downloads_without_a_token() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_pub").await;
    let blob = upload(&s, &t, b"public bytes", true).await;
    let got = download(&s, &uid(&blob), None).await.unwrap();
    assert_eq!(got.body, "public bytes");
    // The SDK's `publicUrl`: `/blobs/{uid}` redirects the same way.
    let r = s.http.get(&format!("/blobs/{}", uid(&blob)), None).await;
    assert_eq!(r.status, 301);
}

#[tokio::test]
async fn a_private_blob_is_refused_to_anonymous_callers_and_unknown_to_strangers() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_priv").await;
    let (stranger, _) = s.user_token("blob_stranger").await;
    let blob = upload(&s, &t, b"secret", false).await;
    let anon = download(&s, &uid(&blob), None).await.unwrap_err();
    assert_eq!(anon.status, 403, "{}", anon.body);
    let other = download(&s, &uid(&blob), Some(&stranger))
        .await
        .unwrap_err();
    assert_eq!(other.status, 404, "{}", other.body);
    let info = s
        .http
        .get(&format!("/blobs/{}", blob["id"]), Some(&stranger))
        .await;
    assert_eq!(info.status, 404);
    // The SDK's `privateUrl` carries the token in the query.
    let r = s
        .http
        .get(&format!("/blobs/{}?token={t}", uid(&blob)), None)
        .await;
    assert_eq!(r.status, 301, "{}", r.body);
}

#[tokio::test]
async fn occupants_of_a_dialog_whose_message_carries_the_blob_may_download_it_until_the_message_is_deleted(
) {
    let s = TestServer::start().await;
    let u = s.users("blob_share", 3).await;
    let blob = upload(&s, &u[0].0, b"shared", false).await;
    let d = s
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "g", "occupants_ids": [u[1].1]}),
        )
        .await;
    let m = s
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d["_id"], "message": "look",
                   "attachments": [{"type": "image", "uid": uid(&blob)}]}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let got = download(&s, &uid(&blob), Some(&u[1].0)).await.unwrap();
    assert_eq!(got.body, "shared");
    // Not an occupant: nothing shared with them.
    let out = download(&s, &uid(&blob), Some(&u[2].0)).await.unwrap_err();
    assert_eq!(out.status, 404);
    let del = s
        .http
        .delete(
            &format!(
                "/chat/Message/{}?force=1",
                m.json()["_id"].as_str().unwrap()
            ),
            Some(&u[0].0),
        )
        .await;
    assert_eq!(del.status, 200, "{}", del.body);
    let gone = download(&s, &uid(&blob), Some(&u[1].0)).await.unwrap_err();
    assert_eq!(gone.status, 404);
    // The owner still has it.
    assert!(download(&s, &uid(&blob), Some(&u[0].0)).await.is_ok());
}

#[tokio::test]
async fn the_owner_deleting_a_blob_ends_its_downloads_even_by_signed_url() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_del").await;
    let (other, _) = s.user_token("blob_del2").await;
    let blob = upload(&s, &t, b"bye", true).await;
    let r = s
        .http
        .get(&format!("/blobs/{}/download", uid(&blob)), None)
        .await;
    let signed = r.header("location").unwrap().to_owned();
    let refused = s
        .http
        .delete(&format!("/blobs/{}", blob["id"]), Some(&other))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let r = s
        .http
        .delete(&format!("/blobs/{}", blob["id"]), Some(&t))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fetch(&signed).await.status, 404);
    assert_eq!(
        download(&s, &uid(&blob), None).await.unwrap_err().status,
        404
    );
}

#[tokio::test]
async fn an_upload_over_the_size_limit_is_refused_naming_the_file() {
    let mut c = test_config();
    c.storage.max_blob_bytes = 16;
    let s = TestServer::start_with(c).await;
    let (t, _) = s.user_token("blob_big").await;
    let blob = create(&s, &t, "big.bin", "image/png", false).await;
    let params = blob["blob_object_access"]["params"].as_str().unwrap();
    let r = post_form(params, &[7u8; 17], "image/png").await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.field_error("file").unwrap().contains("at most 16 bytes"));
    let r = s
        .http
        .put_json(
            &format!("/blobs/{}/complete", blob["id"]),
            Some(&t),
            json!({"size": 17}),
        )
        .await;
    assert_eq!(r.status, 422, "nothing was stored: {}", r.body);
    assert!(post_form(params, &[7u8; 16], "image/png").await.status == 201);
}

#[tokio::test]
async fn a_content_type_the_application_does_not_allow_is_refused_naming_it() {
    let mut c = test_config();
    c.storage.allowed_content_types = vec!["image/*".into()];
    let s = TestServer::start_with(c).await;
    let (t, _) = s.user_token("blob_type").await;
    let r = s
        .http
        .post_json(
            "/blobs",
            Some(&t),
            json!({"blob": {"name": "x.html", "content_type": "text/html"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("content_type").is_some(), "{}", r.body);
    create(&s, &t, "ok.jpg", "image/jpeg", false).await;
}

#[tokio::test]
async fn signed_download_and_upload_urls_expire() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_exp").await;
    let blob = upload(&s, &t, b"soon gone", false).await;
    let r = s
        .http
        .get(&format!("/blobs/{}/download", uid(&blob)), Some(&t))
        .await;
    let signed = r.header("location").unwrap().to_owned();
    let late = create(&s, &t, "late.png", "image/png", false).await;
    assert_eq!(fetch(&signed).await.status, 200);
    s.clock.advance(Duration::from_secs(3601));
    let r = fetch(&signed).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let params = late["blob_object_access"]["params"].as_str().unwrap();
    assert_eq!(post_form(params, b"x", "image/png").await.status, 403);
}

#[tokio::test]
async fn object_with_download_url_answers_the_hosted_misspelt_field() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_obj").await;
    let blob = upload(&s, &t, b"obj", false).await;
    let r = s
        .http
        .get(
            &format!("/blobs/{}/object.json?download_url=1", uid(&blob)),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.json()["blob"]["blob_object_access"]["dowload_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(fetch(&url).await.body, "obj");
}

#[tokio::test]
async fn the_blob_list_is_the_callers_own_paged_newest_first() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_list").await;
    let (other, _) = s.user_token("blob_list2").await;
    for i in 0..3 {
        create(&s, &t, &format!("f{i}"), "text/plain", false).await;
    }
    create(&s, &other, "theirs", "text/plain", false).await;
    let r = s
        .http
        .get("/blobs.json?page=1&per_page=2", Some(&t))
        .await
        .json();
    assert_eq!(r["total_entries"], 3);
    assert_eq!(r["items"].as_array().unwrap().len(), 2);
    assert_eq!(r["items"][0]["blob"]["name"], "f2");
    let r = s
        .http
        .get("/blobs.json?page=2&per_page=2", Some(&t))
        .await
        .json();
    assert_eq!(r["items"][0]["blob"]["name"], "f0");
    let r = s.http.get("/blobs?per_page=101", Some(&t)).await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("per_page").is_some());
}

#[tokio::test]
async fn unfinished_uploads_are_removed_after_a_day() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_old").await;
    let blob = create(&s, &t, "never.png", "image/png", false).await;
    let params = blob["blob_object_access"]["params"].as_str().unwrap();
    assert_eq!(post_form(params, b"half", "image/png").await.status, 201);
    let done = upload(&s, &t, b"kept", false).await;
    assert_eq!(s.files().clean_unfinished().await.unwrap(), 0);
    s.clock.advance(Duration::from_secs(86_401));
    assert_eq!(s.files().clean_unfinished().await.unwrap(), 1);
    // A day later the session has expired too: a new one.
    let r = s
        .http
        .post_json(
            "/session",
            None,
            json!({"application_id": s.app.id.0, "auth_key": s.app.auth_key,
                   "user": {"login": "blob_old", "password": common::PASSWORD}}),
        )
        .await;
    let t = r.json()["session"]["token"].as_str().unwrap().to_owned();
    let r = s
        .http
        .get(&format!("/blobs/{}", blob["id"]), Some(&t))
        .await;
    assert_eq!(r.status, 404);
    let r = s
        .http
        .get(&format!("/blobs/{}", done["id"]), Some(&t))
        .await;
    assert_eq!(r.status, 200);
}

// ---- S3: moto in server mode -----------------------------------------------------------

fn moto_available() -> bool {
    std::process::Command::new("moto_server")
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A moto S3 server on a free port with bucket `parley`, killed on drop.
pub(crate) struct Moto {
    child: std::process::Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn moto() -> Option<Moto> {
    if !moto_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "moto_server is required under CI (pip install 'moto[server]')"
        );
        eprintln!("skipped: moto_server not installed (pip install 'moto[server]')");
        return None;
    }
    let port = common::spawn::free_port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let m = Moto {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(m.addr).await.is_ok() {
            let r = Http::new(m.addr).request("PUT", "/parley", &[], None).await;
            assert_eq!(r.status, 200, "create bucket: {}", r.body);
            return Some(m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start");
}

pub(crate) async fn s3_server(m: &Moto) -> TestServer {
    s3_server_with(m, test_config()).await
}

/// A test server with `c` on the S3 store of `m` (files up to 1000 bytes).
pub(crate) async fn s3_server_with(m: &Moto, mut c: parley::config::Config) -> TestServer {
    c.storage.backend = "s3".into();
    c.storage.s3_endpoint = format!("http://{}", m.addr);
    c.storage.s3_bucket = "parley".into();
    c.storage.s3_access_key = "testing".into();
    c.storage.s3_secret_key = "testing".into();
    c.storage.max_blob_bytes = 1000;
    TestServer::start_with(c).await
}

#[tokio::test]
async fn on_s3_the_bytes_go_straight_between_client_and_store() {
    let Some(m) = moto().await else { return };
    let s = s3_server(&m).await;
    let (t, _) = s.user_token("s3_owner").await;
    let blob = create(&s, &t, "s3.png", "image/png", false).await;
    let params = blob["blob_object_access"]["params"].as_str().unwrap();
    assert!(
        params.starts_with(&format!("http://{}/parley/?", m.addr)),
        "{params}"
    );
    assert!(params.contains("policy=") && params.contains("x-amz-signature="));
    let r = post_form(params, PNG, "image/png").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .http
        .put_json(
            &format!("/blobs/{}/complete", blob["id"]),
            Some(&t),
            json!({"size": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let info = s
        .http
        .get(&format!("/blobs/{}", blob["id"]), Some(&t))
        .await
        .json();
    assert_eq!(
        info["blob"]["size"],
        PNG.len(),
        "the stored size, not the claimed one"
    );
    let r = s
        .http
        .get(&format!("/blobs/{}/download", uid(&blob)), Some(&t))
        .await;
    assert_eq!(r.status, 301);
    let location = r.header("location").unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let got = fetch(&location).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body.as_bytes(), String::from_utf8_lossy(PNG).as_bytes());
    // Deleting the blob deletes the object.
    let r = s
        .http
        .delete(&format!("/blobs/{}", blob["id"]), Some(&t))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Http::new(m.addr)
        .get(&format!("/parley/{}", uid(&blob)), None)
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn on_s3_an_object_over_the_limit_is_refused_at_completion_and_removed() {
    let Some(m) = moto().await else { return };
    let s = s3_server(&m).await;
    let (t, _) = s.user_token("s3_big").await;
    let blob = create(&s, &t, "big.bin", "image/png", false).await;
    let params = blob["blob_object_access"]["params"].as_str().unwrap();
    // A store that does not enforce the policy's content-length-range takes it…
    let r = post_form(params, &[1u8; 1001], "image/png").await;
    assert!(r.status == 201 || r.status == 400, "{}", r.body);
    // …and completing finds it too large.
    let r = s
        .http
        .put_json(
            &format!("/blobs/{}/complete", blob["id"]),
            Some(&t),
            json!({"size": 10}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = Http::new(m.addr)
        .get(&format!("/parley/{}", uid(&blob)), None)
        .await;
    assert_eq!(r.status, 404);
}

// ---- PUT /blobs/{id} (deprecated update) and a deleted user's files ---------------------

#[tokio::test]
async fn put_blob_renames_it_and_changes_its_content_type() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_rename").await;
    let blob = upload(&s, &t, PNG, false).await;
    let r = s
        .http
        .put_json(
            &format!("/blobs/{}.json", blob["id"]),
            Some(&t),
            json!({"blob": {"name": "renamed.jpg", "content_type": "image/jpeg"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.json()["blob"];
    assert_eq!(b["name"], "renamed.jpg");
    assert_eq!(b["content_type"], "image/jpeg");
    assert_eq!(b["blob_status"], "complete", "the bytes stay");
    assert!(b.get("blob_object_access").is_none());
    let got = download(&s, &uid(&blob), Some(&t)).await.unwrap();
    assert_eq!(got.header("content-type"), Some("image/jpeg"));
}

#[tokio::test]
async fn put_blob_with_new_starts_the_upload_again_with_a_new_form() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_reupload").await;
    let blob = upload(&s, &t, b"old bytes", false).await;
    let r = s
        .http
        .put_json(
            &format!("/blobs/{}", blob["id"]),
            Some(&t),
            json!({"blob": {"new": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json()["blob"].clone();
    assert_eq!(b["blob_status"], "new");
    assert_eq!(
        b["uid"], blob["uid"],
        "the same uid: its shares keep working"
    );
    assert_eq!(b["blob_object_access"]["object_access_type"], "Write");
    // The old bytes are gone until the new ones are uploaded and completed.
    assert_eq!(
        download(&s, &uid(&blob), Some(&t))
            .await
            .unwrap_err()
            .status,
        404
    );
    let params = b["blob_object_access"]["params"].as_str().unwrap();
    assert_eq!(
        post_form(params, b"new bytes", "image/png").await.status,
        201
    );
    let r = s
        .http
        .put_json(
            &format!("/blobs/{}/complete", blob["id"]),
            Some(&t),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = download(&s, &uid(&blob), Some(&t)).await.unwrap();
    assert_eq!(got.body, "new bytes");
}

#[tokio::test]
async fn only_the_owner_may_update_a_blob_and_within_the_same_rules() {
    let s = TestServer::start().await;
    let (owner, _) = s.user_token("blob_upd_owner").await;
    let (other, _) = s.user_token("blob_upd_other").await;
    let blob = upload(&s, &owner, PNG, true).await;
    let path = format!("/blobs/{}", blob["id"]);
    let r = s
        .http
        .put_json(&path, Some(&other), json!({"blob": {"name": "mine"}}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s
        .http
        .put_json(&path, Some(&owner), json!({"blob": {"name": ""}}))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("name").is_some());
    let r = s
        .http
        .put_json(
            &path,
            Some(&owner),
            json!({"blob": {"content_type": "a/b; x=y"}}),
        )
        .await;
    assert!(r.field_error("content_type").is_some(), "{}", r.body);
}

/// Whether the disk store still holds `uid`'s bytes.
async fn stored(s: &TestServer, uid: &str) -> bool {
    s.files()
        .store()
        .size(uid, s.files().now())
        .await
        .unwrap()
        .is_some()
}

/// Stored objects waiting in the deletion queue.
async fn queued(s: &TestServer) -> i64 {
    let c = s.pool.get().await.unwrap();
    c.query_one("SELECT count(*) FROM blob_deletions", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn deleting_a_user_over_rest_deletes_their_blobs_and_stored_files() {
    let s = TestServer::start().await;
    let (t, me) = s.user_token("blob_leaver").await;
    let (other, _) = s.user_token("blob_stayer").await;
    let mine = upload(&s, &t, b"mine", true).await;
    let pending = create(&s, &t, "half.png", "image/png", false).await;
    let params = pending["blob_object_access"]["params"].as_str().unwrap();
    assert_eq!(post_form(params, b"half", "image/png").await.status, 201);
    let theirs = upload(&s, &other, b"theirs", true).await;
    let r = s.http.delete(&format!("/users/{me}"), Some(&t)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.http
            .get(&format!("/blobs/{}/download", uid(&mine)), None)
            .await
            .status,
        404
    );
    // The bytes go right after (the request does not wait for the store).
    for _ in 0..100 {
        if !stored(&s, &uid(&mine)).await && !stored(&s, &uid(&pending)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!stored(&s, &uid(&mine)).await);
    assert!(!stored(&s, &uid(&pending)).await);
    assert_eq!(queued(&s).await, 0);
    // Another user's files are theirs.
    assert!(stored(&s, &uid(&theirs)).await);
    assert_eq!(
        download(&s, &uid(&theirs), None).await.unwrap().body,
        "theirs"
    );
}

#[tokio::test]
async fn deleting_a_user_with_the_cli_queues_their_files_for_the_sweep() {
    let s = TestServer::start().await;
    let (t, me) = s.user_token("blob_cli_leaver").await;
    let mine = upload(&s, &t, b"mine", true).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["user", "delete", &me.to_string()])
        .env("PARLEY_DATABASE_URL", common::conn_string(&s.pg))
        .env("PARLEY_ADMIN_ADDR", s.admin_addr().to_string())
        .env("PARLEY_LOG", "warn")
        .output()
        .await
        .expect("run parley");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The record went with the account, in its transaction; the object waits for the sweep.
    assert_eq!(
        s.http
            .get(&format!("/blobs/{}/download", uid(&mine)), None)
            .await
            .status,
        404
    );
    assert_eq!(queued(&s).await, 1);
    assert!(stored(&s, &uid(&mine)).await);
    s.files().clean_unfinished().await.unwrap();
    assert!(!stored(&s, &uid(&mine)).await);
    assert_eq!(queued(&s).await, 0);
}

#[tokio::test]
async fn a_stored_object_the_store_will_not_remove_stays_queued_until_it_does() {
    let s = TestServer::start().await;
    let (t, _) = s.user_token("blob_stuck").await;
    let blob = upload(&s, &t, b"stuck", true).await;
    // The store refuses the removal: the object's path is a directory that is not empty.
    let disk = s.files().store().disk().unwrap();
    let path = disk.path(&uid(&blob)).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir_all(path.join("x")).unwrap();
    let r = s
        .http
        .delete(&format!("/blobs/{}", blob["id"]), Some(&t))
        .await;
    assert_eq!(r.status, 200, "the record is gone: {}", r.body);
    assert_eq!(queued(&s).await, 1);
    assert!(s.files().sweep_deletions().await.is_err());
    assert_eq!(queued(&s).await, 1, "not lost");
    // The store works again: the next sweep removes it.
    std::fs::remove_dir_all(&path).unwrap();
    std::fs::write(&path, b"stuck").unwrap();
    assert_eq!(s.files().sweep_deletions().await.unwrap(), 1);
    assert!(!path.exists());
    assert_eq!(queued(&s).await, 0);
}
