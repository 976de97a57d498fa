//! Passwords (argon2id), session tokens (random, stored as SHA-256) and the legacy HMAC-SHA1
//! session signature. Pure functions; hashing runs off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use super::scram::{ScramHash, Verifier};
use super::IdentityError;
use crate::config::PasswordConfig;
use crate::db::users::PasswordSecrets;

/// Password hashes running at once: one per core. Each argon2 run holds `argon2_memory_kib`
/// (19 MiB by default); a login burst on the unbounded blocking pool ran dozens side by side,
/// no faster on two cores, and left the process holding over a gigabyte of freed memory.
fn hash_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// Bounds password work waiting or running (`passwords.max_pending_hashes`): a flood of new
/// logins is refused at once instead of queueing argon2 runs without end.
pub struct HashGate {
    pending: std::sync::atomic::AtomicUsize,
    max: usize,
}

/// One admitted job; leaving gives the place back.
struct HashTicket<'a>(&'a HashGate);

impl HashGate {
    pub fn new(max: usize) -> Self {
        Self {
            pending: std::sync::atomic::AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    fn enter(&self) -> Result<HashTicket<'_>, IdentityError> {
        use std::sync::atomic::Ordering;
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Ok(HashTicket(self))
        } else {
            Err(IdentityError::Busy(
                "too many password checks in progress, try again shortly".into(),
            ))
        }
    }
}

impl Drop for HashTicket<'_> {
    fn drop(&mut self) {
        self.0
            .pending
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Runs CPU- and memory-heavy password work on the blocking pool, one job per core, if the
/// gate admits it.
async fn run_hashing<T: Send + 'static>(
    gate: &HashGate,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, IdentityError> {
    let _ticket = gate.enter()?;
    let _slot = hash_slots()
        .acquire()
        .await
        .map_err(|e| IdentityError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| IdentityError::Internal(e.to_string()))
}

/// Everything stored for a new password, in one job on the blocking pool: the argon2id hash
/// and the SCRAM-SHA-1 and SCRAM-SHA-256 verifiers (`passwords.scram_iterations`).
pub async fn password_secrets(
    password: String,
    cfg: &PasswordConfig,
    gate: &HashGate,
) -> Result<PasswordSecrets, IdentityError> {
    let params = Params::new(cfg.argon2_memory_kib, cfg.argon2_iterations, 1, None)
        .map_err(|e| IdentityError::Internal(format!("argon2 parameters: {e}")))?;
    let iterations = cfg.scram_iterations;
    run_hashing(gate, move || {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| IdentityError::Internal(format!("argon2: {e}")))?;
        let (scram_sha1, scram_sha256) = scram_verifiers(&password, iterations);
        Ok(PasswordSecrets {
            hash,
            scram_sha1,
            scram_sha256,
        })
    })
    .await?
}

/// The SCRAM-SHA-1 and SCRAM-SHA-256 verifiers of a password, as stored (CPU work: call it on
/// the blocking pool).
fn scram_verifiers(password: &str, iterations: u32) -> (String, String) {
    let derive = |h| Verifier::derive(h, password, iterations).encode();
    (derive(ScramHash::Sha1), derive(ScramHash::Sha256))
}

/// SCRAM verifiers for a password that was just checked (for accounts whose password predates
/// them), within the gate.
pub async fn derive_scram(
    password: String,
    iterations: u32,
    gate: &HashGate,
) -> Result<(String, String), IdentityError> {
    run_hashing(gate, move || scram_verifiers(&password, iterations)).await
}

/// Checks a password against a stored hash (its own parameters are encoded in it); `Busy` when
/// the gate is full.
pub async fn verify_password(
    password: String,
    hash: String,
    gate: &HashGate,
) -> Result<bool, IdentityError> {
    run_hashing(gate, move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
}

/// A new random secret of `bytes` bytes, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new session token: 40 lowercase hex characters, like the hosted service's.
pub fn new_token() -> String {
    random_hex(20)
}

/// What the database stores for a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.trim().as_bytes()).to_vec()
}

/// The string a client signs: every parameter but `signature`, flattened (`user[login]`),
/// sorted by key, joined as `k=v` with `&`, values not URL-encoded.
pub fn signing_string(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        pairs.iter().filter(|(k, _)| k != "signature").collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lowercase hex HMAC-SHA1 of the signing string with the application's secret.
pub fn sign(secret: &str, pairs: &[(String, String)]) -> String {
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signing_string(pairs).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time signature check.
pub fn signature_matches(secret: &str, pairs: &[(String, String)], given: &str) -> bool {
    let Ok(given) = hex::decode(given.trim()) else {
        return false;
    };
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signing_string(pairs).as_bytes());
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn signing_string_sorts_keys_and_skips_the_signature() {
        let p = pairs(&[
            ("user[password]", "p"),
            ("timestamp", "1700000000"),
            ("signature", "zzz"),
            ("application_id", "8056"),
            ("user[email]", "a@b.c"),
            ("nonce", "123"),
            ("auth_key", "XXX"),
        ]);
        assert_eq!(
            signing_string(&p),
            "application_id=8056&auth_key=XXX&nonce=123&timestamp=1700000000&user[email]=a@b.c&user[password]=p"
        );
    }

    #[test]
    fn signature_is_hmac_sha1_hex_of_the_signing_string() {
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?").
        let p = pairs(&[("what do ya want for nothing?", "")]);
        let s = signing_string(&p);
        assert_eq!(s, "what do ya want for nothing?=");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        let p = pairs(&[("a", "1")]);
        assert!(signature_matches("k", &p, &sign("k", &p)));
        assert!(!signature_matches("other", &p, &sign("k", &p)));
        assert!(!signature_matches("k", &p, "not hex"));
    }

    #[test]
    fn tokens_are_40_hex_and_hash_stably() {
        let t = new_token();
        assert_eq!(t.len(), 40);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(token_hash(&t), token_hash(&t));
        assert_ne!(new_token(), t);
    }

    #[tokio::test]
    async fn password_hash_verifies_only_the_right_password() {
        let cfg = PasswordConfig {
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            min_length: 8,
            max_pending_hashes: 4,
            scram_iterations: 16,
            ..PasswordConfig::default()
        };
        let gate = HashGate::new(4);
        let h = password_secrets("correct horse".into(), &cfg, &gate)
            .await
            .unwrap()
            .hash;
        assert!(verify_password("correct horse".into(), h.clone(), &gate)
            .await
            .unwrap());
        assert!(!verify_password("wrong horse".into(), h, &gate)
            .await
            .unwrap());
        assert!(!verify_password("x".into(), "not a hash".into(), &gate)
            .await
            .unwrap());
    }
}
