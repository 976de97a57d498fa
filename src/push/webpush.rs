//! Web Push: the payload encrypted for the browser's subscription (RFC 8291, `aes128gcm`
//! content coding of RFC 8188, one record) by the `web-push-native` crate (RustCrypto: p256,
//! hkdf, aes-gcm; no OpenSSL), and VAPID (RFC 8292: an ES256 JWT for the push service's origin,
//! signed with the application's VAPID key through `jsonwebtoken`, like the APNs token). A 404
//! or 410 means the subscription is gone. VAPID keys are generated with ring (already under
//! rustls) as PKCS#8, the form `jsonwebtoken` signs with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hyper::Method;
use ring::signature::KeyPair;
use ring::{rand, signature};
use serde_json::json;
use web_push_native::p256;

use super::http::HttpClient;
use super::provider::{by_status, transport, BoxFuture, Job, Outcome, Provider};

/// The most plaintext we send: push services must accept 4096-byte bodies (RFC 8030 §7.2); the
/// `aes128gcm` header with the 65-byte key id (86), the tag (16) and the delimiter (1) leave
/// 3993 (RFC 8291 §4).
pub const MAX_PLAINTEXT: usize = 3993;

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

/// Why a subscription's keys cannot be encrypted for.
#[derive(Debug, PartialEq)]
pub enum EncryptError {
    /// The subscription's `p256dh` is not a P-256 point or its `auth` is not 16 bytes: the
    /// subscription can never be delivered to.
    BadKeys(&'static str),
    /// The payload or the encryption itself.
    Other(String),
}

/// Encrypts `plaintext` for a subscription with public key `ua_public` (65 bytes, uncompressed
/// P-256) and `auth` secret (16 bytes): the `aes128gcm` body, header included (a fresh ECDH key
/// and salt per message).
pub fn encrypt(plaintext: &[u8], ua_public: &[u8], auth: &[u8]) -> Result<Vec<u8>, EncryptError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EncryptError::Other(
            "payload too large for one record".into(),
        ));
    }
    let ua_public = p256::PublicKey::from_sec1_bytes(ua_public)
        .map_err(|_| EncryptError::BadKeys("the subscription's p256dh is not a P-256 point"))?;
    let auth: [u8; 16] = auth
        .try_into()
        .map_err(|_| EncryptError::BadKeys("the subscription's auth secret is not 16 bytes"))?;
    web_push_native::encrypt(plaintext.to_vec(), &ua_public, &auth.into())
        .map_err(|e| EncryptError::Other(e.to_string()))
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
            Err(EncryptError::BadKeys(why)) => return Outcome::DeadToken(why.into()),
            Err(EncryptError::Other(e)) => {
                return Outcome::Failed(format!("Web Push encryption: {e}"))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription() -> (Vec<u8>, [u8; 16]) {
        let rng = rand::SystemRandom::new();
        let key = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng)
            .unwrap();
        (
            key.compute_public_key().unwrap().as_ref().to_vec(),
            [7u8; 16],
        )
    }

    #[test]
    fn the_largest_payload_fits_the_4096_bytes_every_push_service_accepts() {
        let (public, auth) = subscription();
        let body = encrypt(&[b'x'; MAX_PLAINTEXT], &public, &auth).unwrap();
        assert_eq!(body.len(), 4096);
        assert!(matches!(
            encrypt(&[b'x'; MAX_PLAINTEXT + 1], &public, &auth),
            Err(EncryptError::Other(_))
        ));
    }

    #[test]
    fn a_subscription_whose_keys_cannot_be_encrypted_for_is_bad_keys() {
        let (public, auth) = subscription();
        let not_a_point = [4u8; 65];
        assert!(matches!(
            encrypt(b"hi", &not_a_point, &auth),
            Err(EncryptError::BadKeys(_))
        ));
        assert!(matches!(
            encrypt(b"hi", &public, &auth[..15]),
            Err(EncryptError::BadKeys(_))
        ));
    }
}
