//! Web Push: the payload encrypted for the browser's subscription (RFC 8291, `aes128gcm`
//! content coding of RFC 8188: ECDH P-256 with a fresh key per message, HKDF-SHA-256 with the
//! subscription's auth secret, AES-128-GCM, one record) and VAPID (RFC 8292: an ES256 JWT for
//! the push service's origin, signed with the application's VAPID key). A 404 or 410 means the
//! subscription is gone. The primitives are ring's (already used by rustls): no OpenSSL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hyper::Method;
use ring::rand::SecureRandom;
use ring::signature::KeyPair;
use ring::{aead, agreement, hkdf, rand, signature};
use serde_json::json;

use super::http::HttpClient;
use super::provider::{by_status, transport, BoxFuture, Job, Outcome, Provider};

/// Record size written in the header; one record holds the whole (small) payload.
const RECORD_SIZE: u32 = 4096;
/// The most plaintext one record of `RECORD_SIZE` carries (tag and delimiter take 17 bytes).
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - 17;

pub struct WebPush {
    http: HttpClient,
    /// VAPID `sub`: a contact for the push service.
    subject: String,
}

/// A new VAPID key pair: (PKCS#8 private key, uncompressed public point), both base64url.
pub fn generate_vapid() -> Result<(String, String), String> {
    let rng = rand::SystemRandom::new();
    let pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "could not generate a P-256 key".to_owned())?;
    let pair = signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .map_err(|_| "could not read the generated key".to_owned())?;
    Ok((
        B64.encode(pkcs8.as_ref()),
        B64.encode(pair.public_key().as_ref()),
    ))
}

/// `len` bytes of HKDF output (ring wants the length as a type).
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[u8], out: &mut [u8]) -> Result<(), String> {
    prk.expand(&[info], Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| "HKDF".to_owned())
}

/// Encrypts `plaintext` for a subscription with public key `ua_public` (65 bytes, uncompressed
/// P-256) and `auth` secret (16 bytes): the `aes128gcm` body, header included.
pub fn encrypt(plaintext: &[u8], ua_public: &[u8], auth: &[u8]) -> Result<Vec<u8>, String> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err("payload too large for one record".into());
    }
    let rng = rand::SystemRandom::new();
    let as_private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| "ECDH key generation".to_owned())?;
    let as_public = as_private
        .compute_public_key()
        .map_err(|_| "ECDH public key".to_owned())?;
    let as_public = as_public.as_ref().to_vec();
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| "random salt".to_owned())?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let ecdh = agreement::agree_ephemeral(as_private, &peer, |secret| secret.to_vec())
        .map_err(|_| "the subscription's p256dh is not a P-256 point".to_owned())?;
    // RFC 8291 §3.4: IKM from the ECDH secret and the auth secret, bound to both public keys.
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth).extract(&ecdh);
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(&as_public);
    let mut ikm = [0u8; 32];
    expand(&prk_key, &key_info, &mut ikm)?;
    // RFC 8188 §2.2/2.3: content key and nonce from the salt.
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let mut cek = [0u8; 16];
    expand(&prk, b"Content-Encoding: aes128gcm\0", &mut cek)?;
    let mut nonce = [0u8; 12];
    expand(&prk, b"Content-Encoding: nonce\0", &mut nonce)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| "AES key".to_owned())?,
    );
    let mut record = plaintext.to_vec();
    // The last (only) record's padding delimiter.
    record.push(2);
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::empty(),
        &mut record,
    )
    .map_err(|_| "AES-GCM".to_owned())?;
    let mut body = Vec::with_capacity(21 + as_public.len() + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// `scheme://host[:port]` of a URL: the VAPID audience.
fn origin(url: &str) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    Some(format!(
        "{}://{}",
        uri.scheme_str()?,
        uri.authority()?.as_str()
    ))
}

impl WebPush {
    pub fn new(http: HttpClient, subject: String) -> Self {
        Self { http, subject }
    }

    async fn send(&self, job: &Job<'_>) -> Outcome {
        let s = job.settings;
        let (Some(private), Some(public)) = (
            s.vapid_private_key.as_deref(),
            s.vapid_public_key.as_deref(),
        ) else {
            return Outcome::Failed("no VAPID key for this application".into());
        };
        let sub = job.sub;
        let (Some(endpoint), Some(auth), Some(p256dh)) = (
            sub.web_endpoint.as_deref(),
            sub.web_auth.as_deref(),
            sub.web_p256dh.as_deref(),
        ) else {
            return Outcome::Failed("web subscription without endpoint and keys".into());
        };
        let decode = |s: &str| {
            B64.decode(s.trim_end_matches('='))
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(s))
        };
        let (Ok(auth), Ok(p256dh)) = (decode(auth), decode(p256dh)) else {
            return Outcome::DeadToken("web subscription keys are not base64".into());
        };
        let Some(aud) = origin(endpoint) else {
            return Outcome::DeadToken("web subscription endpoint is not a URL".into());
        };
        let Ok(private) = B64.decode(private) else {
            return Outcome::Failed("VAPID private key is not base64url".into());
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("JWT".into());
        let claims = json!({ "aud": aud, "exp": job.now + 12 * 3600, "sub": self.subject });
        let jwt = match jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&private),
        ) {
            Ok(j) => j,
            Err(e) => return Outcome::Failed(format!("VAPID JWT: {e}")),
        };
        let plaintext = job.note.web_json().to_string();
        let body = match encrypt(plaintext.as_bytes(), &p256dh, &auth) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(format!("Web Push encryption: {e}")),
        };
        let ttl = job
            .note
            .expiration
            .map_or(86_400, |e| (e - job.now).max(0))
            .to_string();
        let authorization = format!("vapid t={jwt}, k={public}");
        let answer = match self
            .http
            .send(
                Method::POST,
                endpoint,
                &[
                    ("authorization", &authorization),
                    ("content-encoding", "aes128gcm"),
                    ("content-type", "application/octet-stream"),
                    ("ttl", &ttl),
                    ("urgency", "high"),
                ],
                body,
            )
            .await
        {
            Ok(a) => a,
            Err(e) => return transport(&e),
        };
        match answer.status.as_u16() {
            404 | 410 => Outcome::DeadToken(format!("Web Push: {}", answer.status)),
            _ => by_status(answer.status, &answer.body),
        }
    }
}

impl Provider for WebPush {
    fn channels(&self) -> &'static [&'static str] {
        &["web"]
    }

    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send(job))
    }
}
