//! SASL SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, 7677) and their `-PLUS` variants with
//! `tls-exporter` channel binding (RFC 9266): which mechanisms each transport and `xmpp.scram`
//! setting offer (SHA-1 only with `all`: the official SDK would take it), logins
//! with the right and the wrong password, channel binding, token logins staying on PLAIN, the
//! shared password throttle, credentials for accounts older than SCRAM, and slixmpp's own SCRAM
//! against ours. The client side here is written from the RFCs, apart from the server's.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use parley::xmpp::stream::Element;
use serde_json::json;
use sha2::Digest;

use crate::common::python;
use crate::common::xmpp::{Client, Via};
use crate::common::{connect, test_config, TestServer, PASSWORD};
use parley::config::ScramOffer;

/// A server offering every SCRAM mechanism (`xmpp.scram = "all"`).
async fn start_all() -> TestServer {
    let mut cfg = test_config();
    cfg.xmpp.scram = ScramOffer::All;
    TestServer::start_with(cfg).await
}

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// The channel-binding flag a test client sends.
enum Cb {
    /// `n`: no binding.
    No,
    /// `y`: the client could bind but saw no `-PLUS`.
    ClientOnly,
    /// `p=tls-exporter` with this data.
    Exporter(Vec<u8>),
}

fn hmac(sha256: bool, key: &[u8], msg: &[u8]) -> Vec<u8> {
    if sha256 {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }
}

fn h(sha256: bool, data: &[u8]) -> Vec<u8> {
    if sha256 {
        sha2::Sha256::digest(data).to_vec()
    } else {
        sha1::Sha1::digest(data).to_vec()
    }
}

fn hi(sha256: bool, password: &[u8], salt: &[u8], i: u32) -> Vec<u8> {
    let mut u = hmac(sha256, password, &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u.clone();
    for _ in 1..i {
        u = hmac(sha256, password, &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

fn failure_condition(e: &Element) -> String {
    e.elements()
        .next()
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// A SCRAM login with `mechanism` as `local`: "success" once the server's signature checks
/// out, otherwise the failure condition.
async fn scram(c: &mut Client, mechanism: &str, local: &str, password: &str, cb: Cb) -> String {
    let sha256 = mechanism.starts_with("SCRAM-SHA-256");
    let gs2 = match &cb {
        Cb::No => "n,,",
        Cb::ClientOnly => "y,,",
        Cb::Exporter(_) => "p=tls-exporter,,",
    };
    let cnonce = "c1i3nt-n0nce-Q2xpZW50";
    let first_bare = format!("n={local},r={cnonce}");
    c.send_raw(&format!(
        "<auth xmlns='{SASL}' mechanism='{mechanism}'>{}</auth>",
        B64.encode(format!("{gs2}{first_bare}"))
    ))
    .await;
    let r = c.next().await.expect("SASL answer");
    if r.name == "failure" {
        return failure_condition(&r);
    }
    assert_eq!(r.name, "challenge", "{r:?}");
    let server_first = String::from_utf8(B64.decode(r.text()).unwrap()).unwrap();
    let attr = |k: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {server_first}"))
            .to_owned()
    };
    let (nonce, salt, iterations) = (attr("r="), attr("s="), attr("i="));
    assert!(nonce.starts_with(cnonce) && nonce.len() > cnonce.len());
    let mut cbind = gs2.as_bytes().to_vec();
    if let Cb::Exporter(data) = &cb {
        cbind.extend_from_slice(data);
    }
    let without_proof = format!("c={},r={nonce}", B64.encode(&cbind));
    let salted = hi(
        sha256,
        password.as_bytes(),
        &B64.decode(salt).unwrap(),
        iterations.parse().unwrap(),
    );
    let client_key = hmac(sha256, &salted, b"Client Key");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hmac(sha256, &h(sha256, &client_key), auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    c.send_raw(&format!(
        "<response xmlns='{SASL}'>{}</response>",
        B64.encode(format!("{without_proof},p={}", B64.encode(proof)))
    ))
    .await;
    let r = c.next().await.expect("SASL outcome");
    match r.name.as_str() {
        "success" => {
            let server_key = hmac(sha256, &salted, b"Server Key");
            let expected = format!(
                "v={}",
                B64.encode(hmac(sha256, &server_key, auth_message.as_bytes()))
            );
            let got = String::from_utf8(B64.decode(r.text()).unwrap()).unwrap();
            assert_eq!(got, expected, "the server proves it holds the credentials");
            "success".into()
        }
        "failure" => failure_condition(&r),
        other => panic!("unexpected SASL answer {other}: {r:?}"),
    }
}

/// A direct-TLS connection up to its stream features.
async fn tls_client(srv: &TestServer) -> Client {
    let mut c = Client::connect(srv.xmpp, Via::DirectTls).await;
    c.open().await;
    c
}

fn mechanisms(features: &Element) -> Vec<String> {
    features
        .child("mechanisms", SASL)
        .map(|m| m.elements().map(|e| e.text()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn scram_sha_256_logs_in_with_the_right_password_and_binds() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_scram256").await;
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::No).await,
        "success"
    );
    c.open().await;
    let jid = c.bind(None).await;
    assert!(jid.starts_with(&format!("{alice}@localhost/")), "{jid}");
    srv.stop().await;
}

#[tokio::test]
async fn scram_sha_1_logs_in_with_the_right_password() {
    let srv = start_all().await;
    let (alice, _) = srv.chat_user("alice_scram1").await;
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-1", &alice, PASSWORD, Cb::No).await,
        "success"
    );
    srv.stop().await;
}

#[tokio::test]
async fn scram_with_a_wrong_password_is_not_authorized() {
    let srv = start_all().await;
    let (alice, _) = srv.chat_user("alice_scram_wrong").await;
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
        let mut c = tls_client(&srv).await;
        assert_eq!(
            scram(&mut c, mech, &alice, "not-the-password", Cb::No).await,
            "not-authorized",
            "{mech}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn scram_of_an_unknown_account_answers_like_a_real_one_then_fails() {
    let srv = TestServer::start().await;
    let mut c = tls_client(&srv).await;
    let nobody = srv.local(999_999);
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &nobody, PASSWORD, Cb::No).await,
        "not-authorized"
    );
    srv.stop().await;
}

#[tokio::test]
async fn scram_plus_binds_the_login_to_the_tls_connection() {
    let srv = start_all().await;
    let (alice, _) = srv.chat_user("alice_scram_plus").await;
    for mech in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        let mut c = tls_client(&srv).await;
        let exporter = c.tls_exporter().expect("TLS 1.3").to_vec();
        assert_eq!(
            scram(&mut c, mech, &alice, PASSWORD, Cb::Exporter(exporter)).await,
            "success",
            "{mech}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn scram_plus_with_another_connections_binding_is_not_authorized() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_scram_mitm").await;
    let other = tls_client(&srv).await;
    let theirs = other.tls_exporter().expect("TLS 1.3").to_vec();
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(
            &mut c,
            "SCRAM-SHA-256-PLUS",
            &alice,
            PASSWORD,
            Cb::Exporter(theirs)
        )
        .await,
        "not-authorized"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_client_that_could_bind_but_saw_no_plus_is_refused_as_a_downgrade() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_scram_y").await;
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::ClientOnly).await,
        "not-authorized",
        "-PLUS was offered on this connection, so 'y' means someone removed it"
    );
    srv.stop().await;
}

#[tokio::test]
async fn mechanisms_offered_depend_on_the_transport() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_mechs").await;
    // Plain TCP from loopback (xmpp.plain_auth = loopback): SCRAM and PLAIN, no binding.
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    let f = c.open().await;
    assert_eq!(mechanisms(&f), ["SCRAM-SHA-256", "PLAIN"]);
    assert!(f
        .child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        .is_none());
    let exporter = vec![0u8; 32];
    assert_eq!(
        scram(
            &mut c,
            "SCRAM-SHA-256-PLUS",
            &alice,
            PASSWORD,
            Cb::Exporter(exporter)
        )
        .await,
        "invalid-mechanism",
        "no -PLUS without TLS"
    );
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::No).await,
        "success"
    );
    // WebSocket without TLS: the same.
    let mut w = Client::connect(srv.xmpp, Via::Ws).await;
    assert_eq!(mechanisms(&w.open().await), ["SCRAM-SHA-256", "PLAIN"]);
    // TLS 1.3: the -PLUS variant first, and its binding type (XEP-0440).
    let f = Client::connect(srv.xmpp, Via::DirectTls).await.open().await;
    assert_eq!(
        mechanisms(&f),
        ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"]
    );
    let cb = f
        .child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        .expect("XEP-0440 feature");
    let types: Vec<_> = cb.elements().filter_map(|e| e.attr("type")).collect();
    assert_eq!(types, ["tls-exporter"]);
    srv.stop().await;
}

#[tokio::test]
async fn scram_sha_1_is_offered_only_when_configured_as_the_official_sdk_would_take_it() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_no_sha1").await;
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-1", &alice, PASSWORD, Cb::No).await,
        "invalid-mechanism"
    );
    srv.stop().await;
    let srv = start_all().await;
    let f = Client::connect(srv.xmpp, Via::DirectTls).await.open().await;
    assert_eq!(
        mechanisms(&f),
        [
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN"
        ]
    );
    srv.stop().await;
    let mut cfg = test_config();
    cfg.xmpp.scram = ScramOffer::Off;
    let srv = TestServer::start_with(cfg).await;
    let f = Client::connect(srv.xmpp, Via::DirectTls).await.open().await;
    assert_eq!(mechanisms(&f), ["PLAIN"]);
    assert!(f
        .child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        .is_none());
    srv.stop().await;
}

#[tokio::test]
async fn a_session_token_logs_in_with_plain_not_scram() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_scram_token").await;
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, &token, Cb::No).await,
        "not-authorized",
        "a token is not a password: SCRAM cannot check it"
    );
    assert_eq!(c.auth(&alice, &token).await, "success");
    srv.stop().await;
}

#[tokio::test]
async fn wrong_scram_proofs_count_towards_the_password_throttle() {
    let mut cfg = test_config();
    cfg.passwords.failures_per_minute = 2;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.chat_user("alice_scram_throttle").await;
    let mut c = tls_client(&srv).await;
    for _ in 0..2 {
        assert_eq!(
            scram(&mut c, "SCRAM-SHA-256", &alice, "wrong-password", Cb::No).await,
            "not-authorized"
        );
    }
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::No).await,
        "not-authorized",
        "throttled: the right password is not even checked"
    );
    assert_eq!(
        c.auth(&alice, PASSWORD).await,
        "not-authorized",
        "PLAIN too"
    );
    srv.clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::No).await,
        "success"
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_account_older_than_scram_gets_credentials_at_its_next_password_login() {
    let srv = start_all().await;
    let (alice, _) = srv.chat_user("alice_scram_legacy").await;
    let id: i64 = alice.split('-').next().unwrap().parse().unwrap();
    let db = connect(&srv.pg).await;
    db.execute(
        "UPDATE users SET scram_sha1 = NULL, scram_sha256 = NULL WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::No).await,
        "not-authorized",
        "no credentials yet"
    );
    assert_eq!(
        c.auth(&alice, PASSWORD).await,
        "success",
        "PLAIN still works"
    );
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::No).await,
        "success"
    );
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-1", &alice, PASSWORD, Cb::No).await,
        "success"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_password_change_replaces_the_scram_credentials() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_scram_change").await;
    let id: i64 = alice.split('-').next().unwrap().parse().unwrap();
    let r = srv
        .http
        .put_json(
            &format!("/users/{id}.json"),
            Some(&token),
            json!({"user": {"password": "brand-new-pass", "old_password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut c = tls_client(&srv).await;
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::No).await,
        "not-authorized"
    );
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, "brand-new-pass", Cb::No).await,
        "success"
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_stored_credentials_are_not_the_password() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_scram_stored").await;
    let id: i64 = alice.split('-').next().unwrap().parse().unwrap();
    let row = connect(&srv.pg)
        .await
        .query_one(
            "SELECT scram_sha1, scram_sha256 FROM users WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (sha1, sha256): (String, String) = (row.get(0), row.get(1));
    assert!(sha1.starts_with("SCRAM-SHA-1$4096:"), "{sha1}");
    assert!(sha256.starts_with("SCRAM-SHA-256$4096:"), "{sha256}");
    for v in [&sha1, &sha256] {
        assert!(!v.contains(PASSWORD) && !v.contains(&B64.encode(PASSWORD)));
    }
    srv.stop().await;
}

// --- slixmpp: a third-party SCRAM implementation --------------------------------------------

const SLIXMPP_LOGIN: &str = r#"
import asyncio, ssl, sys
import slixmpp

jid, password, host, port = sys.argv[1:5]

class Bot(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.mech = None
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda e: self.disconnect())

    async def start(self, event):
        self.mech = self["feature_mechanisms"].mech.name
        self.disconnect()

bot = Bot()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
bot.ssl_context = ctx
bot.connect((host, int(port)), use_ssl=True, disable_starttls=True)
loop = asyncio.get_event_loop()
loop.run_until_complete(asyncio.wait_for(bot.disconnected, 20))
print(bot.mech or "FAILED")
"#;

/// Logs in with slixmpp over direct TLS; the mechanism it authenticated with, or "FAILED".
async fn slixmpp_login(srv: &TestServer, local: &str, password: &str) -> String {
    let stdout = python::run_ok(
        SLIXMPP_LOGIN,
        [
            format!("{local}@localhost"),
            password.to_string(),
            srv.xmpp.tls.ip().to_string(),
            srv.xmpp.tls.port().to_string(),
        ],
        40,
    )
    .await;
    stdout.trim().lines().last().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn slixmpp_logs_in_with_scram_sha_256() {
    if !python::has("slixmpp", python::SLIXMPP) {
        return;
    }
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_slix_scram").await;
    let mech = slixmpp_login(&srv, &alice, PASSWORD).await;
    // slixmpp takes the strongest offered: the -PLUS name, without binding data (Python's ssl
    // has no tls-exporter), which the server accepts as plain SCRAM; its own check of the
    // server's signature passed, or it would not have started the session.
    assert!(mech.starts_with("SCRAM-SHA-256"), "{mech}");
    assert_eq!(
        slixmpp_login(&srv, &alice, "not-the-password").await,
        "FAILED"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_banned_account_with_the_right_scram_proof_is_account_disabled() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_scram_ban").await;
    let id: i64 = alice.split('-').next().unwrap().parse().unwrap();
    let identity = parley::identity::Identity::new(
        srv.pool.clone(),
        srv.clock.clone(),
        Default::default(),
        Default::default(),
    );
    identity
        .ban_user(parley::model::UserId(id), None)
        .await
        .expect("ban");
    let mut c = tls_client(&srv).await;
    // RFC 6120 §6.5.1, the same answer PLAIN gives.
    assert_eq!(
        scram(&mut c, "SCRAM-SHA-256", &alice, PASSWORD, Cb::No).await,
        "account-disabled"
    );
    srv.stop().await;
}
