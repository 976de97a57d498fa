//! Local fakes of the push providers and of an application's webhook receiver, checking what
//! the real services check: FCM's OAuth2 token endpoint verifies the service account's RS256 JWT
//! and `messages:send` the bearer token it issued; APNs (HTTP/2 over TLS) verifies the ES256
//! provider token and the required headers; the Web Push service verifies the VAPID JWT and the
//! fake browser decrypts the `aes128gcm` payload with its subscription keys. A device whose
//! token starts with `dead` is unregistered; `set_down(true)` makes a fake answer 503.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::{aead, agreement, hkdf};
use serde_json::{json, Value};

/// The test service account's RSA key (generated for these tests only) and its public half.
pub const FCM_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQC7j2b0J3aREiWd\ni4V03RzM9vzdbyqRQKmgSm13O9UGGpTD/Q24fjyxzeakLKskAc1pkfNathTnL8e0\nu1JOGYJCfjOZfAVQ/8R0QlxMbW0toRlxRIqajSB04/7+m2ar5nHZ8QMZS2F3xfIG\n6wyO7yH4aGbpxvGlP0w65Wyvs5m8l2ncNZ+yBl1NN7++NVaSyWhYM78vh5XugytQ\nKJtluXYf8qNaFyzVzLdPKao3IYinrmL6evC0Ki6+8eUIiMPK4mTZ3/qqdk4kR5j8\n1oc5m3AIGzBUv28zrM45jCrRAxYm+muPkqrnlvjnxIuZOrEbeG/t3IDt+sbiIANy\nC4sTc243AgMBAAECggEAEW2RdHhs761O/3pPwVHWc5kzr+O81y25//dKf/zNnjk+\nv44LsKv85HdXH27jIX+6tZI77vQ3sa+35SxOyTZc6zl3fqM5NJM/jvSnnOvCFwOp\ngzk0492J5DKspr3hPByNUbdabAbxce6xFEF9COm22gfhdYbokfagFQztHM/Ee53c\nAWTtqjGsSS0YBDSuzudP8BBnKFCXWNAYRxClLaCFTwAXaWA1lNN5aiyXR//vFl94\nLO68OIjifzjfAtdRZMgZgTKmNlWT/HPfRuby14otzO+c7yW5uD7fMAKpmryQScoc\nwMgypwgq+vWCxUddeNYAB4ujOCCWmM/LzYnuP1m1YQKBgQDr4QFt+mn2d3FRQlVH\ndzpHmWCiV1UyZM0obpKR59RvH0ZcDK7mEvh/TQANkWB+s6JKMaSvzhbXFIRC3c/q\nz0nandbGyVUi3XTK2PT+NcdG4pCrZKd/8Fho56/M4lL0aDhKA+K5+6O0r2HCo7fC\n3tA2sJQBYr5ejhNNTcy+tdmdcQKBgQDLjzzr9NGWkavB0clQzZY2B3BQJKzf/ylq\nvMcV8A494gYucCILx5dLg9nRXepUug2H9ZHO+i3zkVgHqOTA/Ro+mEow2nRLJ42F\n9KX6PvZA6+rDxHGi3cvH3N/JyURJx2bCPCcS4Qq1m0gaGh8HnqSSaHFQO4Zy5CQP\nG9ziwqKSJwKBgQCX09TfvXfHNUqzS0cpIQ1aWNdip2Qnc8q6Y7HkSJzsiez4AxHw\n9fUNu7p1AUZjR60GpL2ki7sX5hTcFXpnYdXf6gj9G0q5jmJGzy+jEWqbreoA6GEI\ncOP3Ymo+Ls/Gke7pdWbS366X9uuuJUN7I4BSM4aQ/cYbhsfV0mYfu12/gQKBgQDI\npWUAlC3vQ6FQiA/u5ObWVNjBNpVsqd/SRUfb+Oag2uUK6x60C8W2+r0+YVs0rrvd\nsxJJOVMIDdD+o9zv2cv/vS8MHpiY5+DZFIByPZOQBLtAwqbcSdGvLKkuBoSYUMOa\nW56MPmTHA8u7ZtoFMbu4UNi4pCPvpa9hcS52GjIS6wKBgQCpsphmqoYUG4MSQESl\nNhGvf9ogJ8R0PQTEngQ1Xcxk2R3m1mP9VRAcoY/67PfS/RQiw5DU2DV4sKJDNlju\n6ru2TL1zxboY8Gls09LSpd87W3nNnfnNBt4D6FHZYsU8t+zndxFWQ3Q4dngueiNj\nqFIbIUlVF5UMTb9lYTgh/b9gNQ==\n-----END PRIVATE KEY-----";
pub const FCM_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu49m9Cd2kRIlnYuFdN0c\nzPb83W8qkUCpoEptdzvVBhqUw/0NuH48sc3mpCyrJAHNaZHzWrYU5y/HtLtSThmC\nQn4zmXwFUP/EdEJcTG1tLaEZcUSKmo0gdOP+/ptmq+Zx2fEDGUthd8XyBusMju8h\n+Ghm6cbxpT9MOuVsr7OZvJdp3DWfsgZdTTe/vjVWksloWDO/L4eV7oMrUCibZbl2\nH/KjWhcs1cy3TymqNyGIp65i+nrwtCouvvHlCIjDyuJk2d/6qnZOJEeY/NaHOZtw\nCBswVL9vM6zOOYwq0QMWJvprj5Kq55b458SLmTqxG3hv7dyA7frG4iADcguLE3Nu\nNwIDAQAB\n-----END PUBLIC KEY-----";
pub const FCM_CLIENT_EMAIL: &str = "parley-test@parley-test.iam.gserviceaccount.com";
pub const FCM_PROJECT: &str = "parley-test";

/// The service-account JSON file a Firebase console hands out, for the test key.
pub fn service_account(token_url: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": FCM_PROJECT,
        "private_key_id": "test-key-1",
        "private_key": FCM_PRIVATE_KEY,
        "client_email": FCM_CLIENT_EMAIL,
        "token_uri": token_url,
    })
}

/// One request a fake accepted (it passed the provider's checks).
#[derive(Clone, Debug)]
pub struct Delivery {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// What a fake's handler sees and decides.
type Handler = dyn Fn(&Fake, &str, &HeaderMap, &[u8]) -> (u16, Value) + Send + Sync;

/// A fake HTTP service: its address, what it accepted, and switches.
pub struct Fake {
    pub addr: SocketAddr,
    pub deliveries: Mutex<Vec<Delivery>>,
    /// Requests refused by the fake's checks (a test asserts there are none).
    pub refusals: Mutex<Vec<String>>,
    pub down: AtomicBool,
    pub requests: AtomicUsize,
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// Access tokens the FCM token endpoint issued.
    issued: Mutex<HashSet<String>>,
    handler: Box<Handler>,
}

impl Fake {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries were accepted (at most 10 s) and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        for _ in 0..200 {
            if self.deliveries.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let d = self.deliveries();
        assert!(
            d.len() >= n,
            "expected {n} deliveries, got {}: {d:?}; refused: {:?}",
            d.len(),
            self.refusals()
        );
        d
    }

    fn refuse(&self, why: String) -> (u16, Value) {
        self.refusals.lock().unwrap().push(why.clone());
        (401, json!({ "error": why }))
    }

    fn accept(&self, path: &str, headers: &HeaderMap, body: Value) {
        self.deliveries.lock().unwrap().push(Delivery {
            path: path.to_owned(),
            headers: headers.clone(),
            body,
        });
    }

    async fn start(tls: Option<rustls::ServerConfig>, handler: Box<Handler>) -> Arc<Fake> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Arc::new(Fake {
            addr: listener.local_addr().unwrap(),
            deliveries: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            issued: Mutex::new(HashSet::new()),
            handler,
        });
        let tls = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                f.connections.fetch_add(1, Ordering::SeqCst);
                let (f, tls) = (f.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let f = f.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            f.requests.fetch_add(1, Ordering::SeqCst);
                            let (status, answer) = if f.down.load(Ordering::SeqCst) {
                                (503, json!({ "error": "down for maintenance" }))
                            } else {
                                (f.handler)(&f, parts.uri.path(), &parts.headers, &body)
                            };
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        }
                        None => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), svc)
                                .await;
                        }
                    }
                });
            }
        });
        fake
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Fake FCM: `POST /token` (OAuth2 JWT bearer grant) and `POST /v1/projects/{p}/messages:send`.
pub async fn fcm() -> Arc<Fake> {
    Fake::start(
        None,
        Box::new(|f, path, h, body| {
            if path == "/token" {
                let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
                let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
                if get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
                    return f.refuse("token: wrong grant_type".into());
                }
                let mut v = Validation::new(Algorithm::RS256);
                v.set_audience(&[format!("{}/token", f.url("http"))]);
                v.set_issuer(&[FCM_CLIENT_EMAIL]);
                let key = DecodingKey::from_rsa_pem(FCM_PUBLIC_KEY.as_bytes()).unwrap();
                match jsonwebtoken::decode::<Value>(&get("assertion"), &key, &v) {
                    Ok(t) if t.claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging" => {
                        let token = format!("ya29.test-{}", f.issued.lock().unwrap().len());
                        f.issued.lock().unwrap().insert(token.clone());
                        (200, json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" }))
                    }
                    Ok(_) => f.refuse("token: wrong scope".into()),
                    Err(e) => f.refuse(format!("token: JWT refused: {e}")),
                }
            } else if path == format!("/v1/projects/{FCM_PROJECT}/messages:send") {
                let bearer = header(h, "authorization").strip_prefix("Bearer ").unwrap_or("");
                if !f.issued.lock().unwrap().contains(bearer) {
                    return f.refuse("send: unknown bearer token".into());
                }
                let Ok(msg) = serde_json::from_slice::<Value>(body) else {
                    return (400, json!({ "error": { "status": "INVALID_ARGUMENT" } }));
                };
                let token = msg["message"]["token"].as_str().unwrap_or("");
                if token.starts_with("dead") {
                    return (404, json!({ "error": { "code": 404, "status": "NOT_FOUND",
                        "details": [{ "errorCode": "UNREGISTERED" }] } }));
                }
                f.accept(path, h, msg.clone());
                (200, json!({ "name": format!("projects/{FCM_PROJECT}/messages/1") }))
            } else {
                (404, json!({}))
            }
        }),
    )
    .await
}

/// An APNs key pair: the `.p8` PEM Parley signs with, and the public key the fake checks.
pub struct ApnsKey {
    pub pem: String,
    pub public_pem: String,
}

pub fn apns_key() -> ApnsKey {
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    ApnsKey {
        pem: k.serialize_pem(),
        public_pem: k.public_key_pem(),
    }
}

pub const APNS_TEAM: &str = "TEAM123456";
pub const APNS_KEY_ID: &str = "KEY1234567";
pub const APNS_TOPIC: &str = "com.example.parley";

/// A certificate for 127.0.0.1 and the PEM file trusting it (for `push.ca_file`).
pub fn tls_for_localhost(dir: &std::path::Path) -> (rustls::ServerConfig, std::path::PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let ca = dir.join("fake-ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    (cfg, ca)
}

/// Fake APNs over HTTP/2 and TLS: `POST /3/device/{token}`.
pub async fn apns(key: &ApnsKey, tls: rustls::ServerConfig) -> Arc<Fake> {
    let public = key.public_pem.clone();
    Fake::start(
        Some(tls),
        Box::new(move |f, path, h, body| {
            let Some(device) = path.strip_prefix("/3/device/") else {
                return (404, json!({ "reason": "BadPath" }));
            };
            let Some(jwt) = header(h, "authorization").strip_prefix("bearer ") else {
                return f.refuse("APNs: no bearer provider token".into());
            };
            let mut v = Validation::new(Algorithm::ES256);
            v.set_issuer(&[APNS_TEAM]);
            v.set_required_spec_claims(&["iss"]);
            let key = DecodingKey::from_ec_pem(public.as_bytes()).unwrap();
            match jsonwebtoken::decode::<Value>(jwt, &key, &v) {
                Ok(t)
                    if t.header.kid.as_deref() == Some(APNS_KEY_ID) && t.claims["iat"].is_i64() => {
                }
                Ok(_) => return f.refuse("APNs: kid or iat missing".into()),
                Err(e) => return f.refuse(format!("APNs: InvalidProviderToken {e}")),
            }
            let push_type = header(h, "apns-push-type");
            let topic = header(h, "apns-topic");
            let want_topic = if push_type == "voip" {
                format!("{APNS_TOPIC}.voip")
            } else {
                APNS_TOPIC.into()
            };
            if !["alert", "background", "voip"].contains(&push_type) || topic != want_topic {
                return (400, json!({ "reason": "TopicDisallowed" }));
            }
            if device.starts_with("dead") || !device.bytes().all(|b| b.is_ascii_hexdigit()) {
                return (410, json!({ "reason": "Unregistered", "timestamp": 0 }));
            }
            let Ok(payload) = serde_json::from_slice::<Value>(body) else {
                return (400, json!({ "reason": "PayloadEmpty" }));
            };
            f.accept(path, h, payload);
            (200, json!({}))
        }),
    )
    .await
}

/// A browser's push subscription: its ECDH key (used once, to decrypt one push) and auth secret.
pub struct Browser {
    key: Mutex<Option<agreement::EphemeralPrivateKey>>,
    pub p256dh: String,
    pub auth: String,
    public: Vec<u8>,
    auth_raw: Vec<u8>,
}

pub fn browser() -> Arc<Browser> {
    let rng = ring::rand::SystemRandom::new();
    let key = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
    let public = key.compute_public_key().unwrap().as_ref().to_vec();
    let auth_raw: Vec<u8> = (0..16u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    Arc::new(Browser {
        key: Mutex::new(Some(key)),
        p256dh: B64.encode(&public),
        auth: B64.encode(&auth_raw),
        public,
        auth_raw,
    })
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Browser {
    /// Decrypts an `aes128gcm` body (RFC 8291) as a browser does.
    pub fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let salt = body.get(..16).ok_or("short")?;
        let idlen = *body.get(20).ok_or("short")? as usize;
        let as_public = body.get(21..21 + idlen).ok_or("short")?;
        let record = body.get(21 + idlen..).ok_or("short")?;
        let key = self.key.lock().unwrap().take().ok_or("key already used")?;
        let ecdh = agreement::agree_ephemeral(
            key,
            &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, as_public),
            |s| s.to_vec(),
        )
        .map_err(|_| "ECDH")?;
        let expand = |prk: &hkdf::Prk, info: &[u8], n: usize| {
            let mut out = vec![0u8; n];
            prk.expand(&[info], Len(n)).unwrap().fill(&mut out).unwrap();
            out
        };
        let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, &self.auth_raw).extract(&ecdh);
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(&self.public);
        info.extend_from_slice(as_public);
        let ikm = expand(&prk_key, &info, 32);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&ikm);
        let cek = expand(&prk, b"Content-Encoding: aes128gcm\0", 16);
        let nonce = expand(&prk, b"Content-Encoding: nonce\0", 12);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).unwrap());
        let mut buf = record.to_vec();
        let plain = key
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                aead::Aad::empty(),
                &mut buf,
            )
            .map_err(|_| "AES-GCM: does not decrypt")?;
        match plain.iter().rposition(|b| *b != 0) {
            Some(i) if plain[i] == 2 => Ok(plain[..i].to_vec()),
            _ => Err("no last-record delimiter".into()),
        }
    }
}

/// Fake Web Push service for one browser: `POST /push/{id}` with VAPID and an aes128gcm body.
pub async fn web_push(browser: Arc<Browser>) -> Arc<Fake> {
    Fake::start(
        None,
        Box::new(move |f, path, h, body| {
            let auth = header(h, "authorization");
            let Some(rest) = auth.strip_prefix("vapid t=") else {
                return f.refuse("web push: no VAPID authorization".into());
            };
            let Some((jwt, k)) = rest.split_once(", k=") else {
                return f.refuse("web push: no k=".into());
            };
            let Ok(public) = B64.decode(k) else {
                return f.refuse("web push: k is not base64url".into());
            };
            let mut v = Validation::new(Algorithm::ES256);
            v.set_audience(&[f.url("http")]);
            let key = DecodingKey::from_ec_der(&public);
            match jsonwebtoken::decode::<Value>(jwt, &key, &v) {
                Ok(t)
                    if t.claims["sub"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("mailto:")) => {}
                Ok(_) => return f.refuse("web push: no sub".into()),
                Err(e) => return f.refuse(format!("web push: VAPID JWT refused: {e}")),
            }
            if header(h, "content-encoding") != "aes128gcm" || header(h, "ttl").is_empty() {
                return (400, json!({ "error": "content-encoding and TTL required" }));
            }
            if path.starts_with("/push/dead") {
                return (410, json!({ "error": "gone" }));
            }
            match browser.decrypt(body) {
                Ok(plain) => {
                    let payload = serde_json::from_slice(&plain).unwrap_or(Value::Null);
                    f.accept(path, h, payload);
                    (201, json!({}))
                }
                Err(e) => f.refuse(format!("web push: {e}")),
            }
        }),
    )
    .await
}

/// A webhook receiver: checks `X-Parley-Signature` with `secret`.
pub async fn webhook_receiver(secret: &'static str) -> Arc<Fake> {
    Fake::start(
        None,
        Box::new(move |f, path, h, body| {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(body);
            let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            if header(h, "x-parley-signature") != want {
                return f.refuse("webhook: bad signature".into());
            }
            f.accept(path, h, serde_json::from_slice(body).unwrap_or(Value::Null));
            (200, json!({}))
        }),
    )
    .await
}
