//! SCRAM (RFC 5802; SHA-256 per RFC 7677), server side: the math and the messages. A
//! [`Verifier`] is derived from a password when it is set and stored in PostgreSQL's own format;
//! an [`Exchange`] checks a client's proof against it, channel binding included (`tls-exporter`,
//! RFC 9266). Pure: no I/O and no throttling (the identity service's, `sessions.rs`), no wire
//! framing (the XMPP adapter base64-wraps the messages, `xmpp/session/sasl.rs`).
//!
//! Every message is hostile: bounded in size, parsed without indexing, and a secret is compared
//! in constant time. An unknown account, or one with no verifier yet, gets a salt that looks
//! real (derived from a per-process key and the name) and fails only at the proof, so the
//! exchange does not tell who exists.

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest SCRAM message accepted from a client, in bytes (a name, a nonce and a proof need a
/// few hundred; the stanza limit alone would allow 64 KiB).
pub const MAX_MESSAGE_BYTES: usize = 2048;
/// Bytes of a new random salt.
const SALT_BYTES: usize = 16;
/// Bytes of randomness in the server's half of the nonce.
const SERVER_NONCE_BYTES: usize = 18;
/// The RFC 9266 channel-binding type, the only one offered (`tls-unique` does not exist in
/// TLS 1.3, and `tls-server-end-point` would need the certificate's hash algorithm).
pub const TLS_EXPORTER: &str = "tls-exporter";

/// The hash a SCRAM mechanism is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// Strongest first: the order mechanisms are offered in.
    pub const ALL: [ScramHash; 2] = [ScramHash::Sha256, ScramHash::Sha1];

    /// The SASL mechanism name without `-PLUS`.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The SASL mechanism name of the channel-binding variant.
    pub fn mechanism_plus(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1-PLUS",
            ScramHash::Sha256 => "SCRAM-SHA-256-PLUS",
        }
    }

    /// The hash and whether it is the channel-binding (`-PLUS`) variant, for a mechanism name.
    pub fn from_mechanism(name: &str) -> Option<(ScramHash, bool)> {
        let (base, plus) = match name.strip_suffix("-PLUS") {
            Some(b) => (b, true),
            None => (name, false),
        };
        ScramHash::ALL
            .into_iter()
            .find(|h| h.mechanism() == base)
            .map(|h| (h, plus))
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    fn hmac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with HMAC, one block (RFC 5802 §2.2).
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit + Clone>(
            password: &[u8],
            salt: &[u8],
            iterations: u32,
        ) -> Vec<u8> {
            let keyed = <M as hmac::digest::KeyInit>::new_from_slice(password)
                .expect("HMAC takes any key length");
            let mut m = keyed.clone();
            m.update(salt);
            m.update(&1u32.to_be_bytes());
            let mut u = m.finalize().into_bytes().to_vec();
            let mut out = u.clone();
            for _ in 1..iterations {
                let mut m = keyed.clone();
                m.update(&u);
                u = m.finalize().into_bytes().to_vec();
                out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
            }
            out
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<Sha1>>(password, salt, iterations),
            ScramHash::Sha256 => run::<Hmac<Sha256>>(password, salt, iterations),
        }
    }
}

/// A password as SCRAM hashes it: SASLprep (RFC 4013), as clients apply it; a password that
/// SASLprep refuses (prohibited characters) is taken as it is, as PostgreSQL does — such a
/// user can still log in with PLAIN.
pub fn prepare(password: &str) -> Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(Cow::Borrowed(password))
}

/// What the server keeps for one mechanism: never the password, nor anything that logs in
/// by itself (the client proof needs ClientKey, which StoredKey only hashes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    pub hash: ScramHash,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Verifier {
    /// A verifier for `password` with a new random salt. CPU work: run it off the async threads.
    pub fn derive(hash: ScramHash, password: &str, iterations: u32) -> Self {
        let mut salt = vec![0u8; SALT_BYTES];
        OsRng.fill_bytes(&mut salt);
        Self::with_salt(hash, password, salt, iterations)
    }

    pub fn with_salt(hash: ScramHash, password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let salted = hash.hi(prepare(password).as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Verifier {
            hash,
            iterations,
            stored_key: hash.h(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            salt,
        }
    }

    /// PostgreSQL's format: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn encode(&self) -> String {
        format!(
            "{}${}:{}${}:{}",
            self.hash.mechanism(),
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }

    /// Reads [`Verifier::encode`]'s format for `hash`; `None` for anything else (database text
    /// is not trusted either).
    pub fn decode(hash: ScramHash, s: &str) -> Option<Self> {
        let (mech, rest) = s.split_once('$')?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let v = Verifier {
            hash,
            iterations: iterations.parse().ok().filter(|i| *i > 0)?,
            salt: B64.decode(salt).ok().filter(|s| !s.is_empty())?,
            stored_key: B64.decode(stored).ok()?,
            server_key: B64.decode(server).ok()?,
        };
        (mech == hash.mechanism()
            && v.stored_key.len() == hash.output_len()
            && v.server_key.len() == hash.output_len())
        .then_some(v)
    }
}

/// Why an exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// Not a SCRAM message of the expected step (or too long).
    #[error("malformed SCRAM message")]
    Malformed,
    /// A mandatory extension (`m=`) the server does not know (RFC 5802 §5.1).
    #[error("unsupported SCRAM extension")]
    Extension,
    /// Channel binding of a type the server cannot check here (anything but `tls-exporter`
    /// on TLS 1.3).
    #[error("channel binding type not supported")]
    ChannelBindingUnsupported,
    /// The client's channel-binding data is not this connection's.
    #[error("channel bindings do not match")]
    ChannelBindingMismatch,
    /// The client says it supports channel binding and thinks the server does not (`y`) while
    /// the server offered it: someone removed the `-PLUS` mechanisms on the way.
    #[error("channel binding downgrade")]
    Downgrade,
    /// Wrong password, unknown account, or no verifier for it.
    #[error("not authorized")]
    NotAuthorized,
}

/// The client's `gs2-cbind-flag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cbind {
    /// `n`: the client does not bind.
    No,
    /// `y`: the client could bind but thinks the server cannot.
    ClientOnly,
    /// `p=<type>`: the client binds with this type.
    Uses(String),
}

/// A parsed client-first message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    pub cbind: Cbind,
    /// `a=`, unescaped.
    pub authzid: Option<String>,
    /// `n=`, unescaped (not SASLprep'd: names here are `{user}-{app}`).
    pub username: String,
    nonce: String,
    gs2_header: String,
    bare: String,
}

fn message(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(ScramError::Malformed);
    }
    std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)
}

/// RFC 5802 `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn unescape_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(rest.get(..i).ok_or(ScramError::Malformed)?);
        let after = rest.get(i + 1..).ok_or(ScramError::Malformed)?;
        if let Some(r) = after.strip_prefix("2C") {
            out.push(',');
            rest = r;
        } else if let Some(r) = after.strip_prefix("3D") {
            out.push('=');
            rest = r;
        } else {
            return Err(ScramError::Malformed);
        }
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed);
    }
    Ok(out)
}

/// A nonce: printable ASCII but `,` (RFC 5802 §7), not empty.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Parses a client-first message (`gs2-header` then `client-first-message-bare`).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = message(msg)?;
    let (flag, rest) = text.split_once(',').ok_or(ScramError::Malformed)?;
    let (authz, bare) = rest.split_once(',').ok_or(ScramError::Malformed)?;
    let cbind = match flag {
        "n" => Cbind::No,
        "y" => Cbind::ClientOnly,
        f => match f.strip_prefix("p=") {
            Some(t)
                if !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
            {
                Cbind::Uses(t.to_owned())
            }
            _ => return Err(ScramError::Malformed),
        },
    };
    let authzid = match authz {
        "" => None,
        a => Some(unescape_name(
            a.strip_prefix("a=").ok_or(ScramError::Malformed)?,
        )?),
    };
    let mut attrs = bare.split(',');
    let first = attrs.next().ok_or(ScramError::Malformed)?;
    if first.starts_with("m=") {
        return Err(ScramError::Extension);
    }
    let username = unescape_name(first.strip_prefix("n=").ok_or(ScramError::Malformed)?)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| valid_nonce(n))
        .ok_or(ScramError::Malformed)?;
    // Optional extensions follow; none is defined, and unknown optional ones are ignored.
    let gs2_header = text
        .get(..text.len().saturating_sub(bare.len()))
        .ok_or(ScramError::Malformed)?;
    Ok(ClientFirst {
        cbind,
        authzid,
        username,
        nonce: nonce.to_owned(),
        gs2_header: gs2_header.to_owned(),
        bare: bare.to_owned(),
    })
}

/// What the connection allows for channel binding.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// The client chose a `-PLUS` mechanism.
    pub mechanism_plus: bool,
    /// The server offered `-PLUS` mechanisms on this connection.
    pub offered: bool,
    /// This connection's `tls-exporter` data (RFC 9266), when it has one (TLS 1.3).
    pub tls_exporter: Option<&'a [u8]>,
}

/// The key behind the fake salts of accounts without a verifier; per process.
fn fake_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        k
    })
}

/// A server exchange after the server-first message: what the client's final message must
/// prove. Holds no password.
pub struct Exchange {
    hash: ScramHash,
    /// `None`: unknown account or no verifier; the proof is refused whatever it is.
    keys: Option<(Vec<u8>, Vec<u8>)>,
    /// `client-first-message-bare "," server-first-message`.
    auth_prefix: String,
    nonce: String,
    cbind_input: Vec<u8>,
}

impl Exchange {
    /// Answers a client-first message with the server-first message. `verifier` is `None` for
    /// an unknown account (or one without a verifier): the answer looks the same and
    /// [`Exchange::finish`] refuses; `iterations` is then the count shown.
    pub fn start(
        hash: ScramHash,
        first: &ClientFirst,
        verifier: Option<Verifier>,
        iterations: u32,
        binding: Binding<'_>,
    ) -> Result<(Exchange, String), ScramError> {
        let mut n = [0u8; SERVER_NONCE_BYTES];
        OsRng.fill_bytes(&mut n);
        Self::start_with_nonce(hash, first, verifier, iterations, binding, &B64.encode(n))
    }

    fn start_with_nonce(
        hash: ScramHash,
        first: &ClientFirst,
        verifier: Option<Verifier>,
        iterations: u32,
        binding: Binding<'_>,
        server_nonce: &str,
    ) -> Result<(Exchange, String), ScramError> {
        let mut cbind_input = first.gs2_header.as_bytes().to_vec();
        match &first.cbind {
            Cbind::Uses(kind) => {
                if !binding.mechanism_plus {
                    return Err(ScramError::Malformed);
                }
                match (kind.as_str(), binding.tls_exporter) {
                    (TLS_EXPORTER, Some(data)) => cbind_input.extend_from_slice(data),
                    _ => return Err(ScramError::ChannelBindingUnsupported),
                }
            }
            Cbind::ClientOnly if binding.mechanism_plus => return Err(ScramError::Malformed),
            Cbind::ClientOnly if binding.offered => return Err(ScramError::Downgrade),
            // `n` under a -PLUS mechanism is accepted as plain SCRAM (as Prosody does): the
            // flag is inside the signed AuthMessage, so nobody but the client chose it, and
            // clients without a way to read the binding (Python's ssl on TLS 1.3) send it.
            Cbind::ClientOnly | Cbind::No => {}
        }
        let verifier = verifier.filter(|v| v.hash == hash);
        let (salt, shown_iterations) = match &verifier {
            Some(v) => (v.salt.clone(), v.iterations),
            None => {
                let fake = ScramHash::Sha256.hmac(
                    fake_key(),
                    format!("{}\0{}", hash.mechanism(), first.username).as_bytes(),
                );
                (
                    fake.get(..SALT_BYTES).unwrap_or(&fake).to_vec(),
                    iterations.max(1),
                )
            }
        };
        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!("r={nonce},s={},i={shown_iterations}", B64.encode(&salt));
        Ok((
            Exchange {
                hash,
                keys: verifier.map(|v| (v.stored_key, v.server_key)),
                auth_prefix: format!("{},{server_first}", first.bare),
                nonce,
                cbind_input,
            },
            server_first,
        ))
    }

    /// Checks the client-final message; the server-final message (`v=…`) when the proof is
    /// right.
    pub fn finish(self, msg: &[u8]) -> Result<String, ScramError> {
        let text = message(msg)?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .and_then(|c| B64.decode(c).ok())
            .ok_or(ScramError::Malformed)?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed)?;
        if attrs.any(|a| a.starts_with("m=")) {
            return Err(ScramError::Extension);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed)?;
        if proof.len() != self.hash.output_len() {
            return Err(ScramError::Malformed);
        }
        if !bool::from(cbind.as_slice().ct_eq(&self.cbind_input)) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if nonce != self.nonce {
            return Err(ScramError::Malformed);
        }
        let (stored_key, server_key) = self.keys.ok_or(ScramError::NotAuthorized)?;
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(self.hash.h(&client_key).ct_eq(&stored_key)) {
            return Err(ScramError::NotAuthorized);
        }
        let server_signature = self.hash.hmac(&server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_CB: Binding<'static> = Binding {
        mechanism_plus: false,
        offered: false,
        tls_exporter: None,
    };

    fn rfc_exchange(
        hash: ScramHash,
        client_first: &str,
        salt_b64: &str,
        server_nonce: &str,
    ) -> (Exchange, String) {
        let first = parse_client_first(client_first.as_bytes()).unwrap();
        let v = Verifier::with_salt(hash, "pencil", B64.decode(salt_b64).unwrap(), 4096);
        Exchange::start_with_nonce(hash, &first, Some(v), 4096, NO_CB, server_nonce).unwrap()
    }

    #[test]
    fn sha1_matches_the_rfc_5802_example() {
        let (ex, server_first) = rfc_exchange(
            ScramHash::Sha1,
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "QSXCR+Q6sek8bf92",
            "3rfcNHYJY1ZVvWVs7j",
        );
        assert_eq!(
            server_first,
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let fin = ex
            .finish(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(fin, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn sha256_matches_the_rfc_7677_example() {
        let (ex, server_first) = rfc_exchange(
            ScramHash::Sha256,
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        );
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = ex
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn a_wrong_proof_is_not_authorized() {
        let (ex, _) = rfc_exchange(
            ScramHash::Sha1,
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "QSXCR+Q6sek8bf92",
            "3rfcNHYJY1ZVvWVs7j",
        );
        assert_eq!(
            ex.finish(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=AAX8v3Bz2T0CJGbJQyF0X+HI4Ts="),
            Err(ScramError::NotAuthorized)
        );
    }

    #[test]
    fn an_account_without_a_verifier_gets_a_stable_salt_and_is_refused() {
        let first = parse_client_first(b"n,,n=9-1,r=abc").unwrap();
        let (_, a) = Exchange::start(ScramHash::Sha256, &first, None, 4096, NO_CB).unwrap();
        let (ex, b) = Exchange::start(ScramHash::Sha256, &first, None, 4096, NO_CB).unwrap();
        let salt = |s: &str| s.split(',').nth(1).unwrap().to_owned();
        assert_eq!(salt(&a), salt(&b));
        let nonce = b.split(',').next().unwrap().to_owned();
        let fin = format!("c=biws,{nonce},p={}", B64.encode([0u8; 32]));
        assert_eq!(ex.finish(fin.as_bytes()), Err(ScramError::NotAuthorized));
    }

    #[test]
    fn verifiers_round_trip_through_their_text_form() {
        let v = Verifier::derive(ScramHash::Sha256, "secret-pass", 4096);
        let text = v.encode();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert_eq!(Verifier::decode(ScramHash::Sha256, &text), Some(v));
        assert_eq!(Verifier::decode(ScramHash::Sha1, &text), None);
        assert_eq!(Verifier::decode(ScramHash::Sha256, "garbage"), None);
    }

    #[test]
    fn client_first_names_are_unescaped_and_mandatory_extensions_refused() {
        let f = parse_client_first(b"n,a=x=2Cy,n=a=3Db,r=nonce").unwrap();
        assert_eq!(f.username, "a=b");
        assert_eq!(f.authzid.as_deref(), Some("x,y"));
        assert_eq!(
            parse_client_first(b"n,,m=ext,n=u,r=x"),
            Err(ScramError::Extension)
        );
        assert_eq!(
            parse_client_first(b"n,,n=a=b,r=x"),
            Err(ScramError::Malformed)
        );
        assert_eq!(
            parse_client_first(b"q,,n=u,r=x"),
            Err(ScramError::Malformed)
        );
        assert_eq!(parse_client_first(b"n,,n=u"), Err(ScramError::Malformed));
        assert_eq!(
            parse_client_first(&vec![b'a'; MAX_MESSAGE_BYTES + 1]),
            Err(ScramError::Malformed)
        );
    }

    #[test]
    fn channel_binding_rules() {
        let v = || Some(Verifier::derive(ScramHash::Sha1, "pencil-pencil", 1));
        let start = |msg: &str, b: Binding<'_>| {
            let f = parse_client_first(msg.as_bytes()).unwrap();
            Exchange::start(ScramHash::Sha1, &f, v(), 1, b).map(|_| ())
        };
        let exporter = [7u8; 32];
        let plus = Binding {
            mechanism_plus: true,
            offered: true,
            tls_exporter: Some(&exporter),
        };
        let plain_offered = Binding {
            mechanism_plus: false,
            ..plus
        };
        assert_eq!(start("p=tls-exporter,,n=u,r=x", plus), Ok(()));
        assert_eq!(
            start("p=tls-unique,,n=u,r=x", plus),
            Err(ScramError::ChannelBindingUnsupported)
        );
        assert_eq!(
            start("p=tls-exporter,,n=u,r=x", plain_offered),
            Err(ScramError::Malformed)
        );
        assert_eq!(
            start("y,,n=u,r=x", plain_offered),
            Err(ScramError::Downgrade)
        );
        assert_eq!(start("y,,n=u,r=x", NO_CB), Ok(()));
        assert_eq!(start("n,,n=u,r=x", plus), Ok(()));
    }

    #[test]
    fn a_binding_from_another_connection_is_refused() {
        let pw = "pencil-pencil";
        let v = Verifier::derive(ScramHash::Sha256, pw, 16);
        let ours = [1u8; 32];
        let b = Binding {
            mechanism_plus: true,
            offered: true,
            tls_exporter: Some(&ours),
        };
        let f = parse_client_first(b"p=tls-exporter,,n=u,r=cn").unwrap();
        let (ex, sf) = Exchange::start(ScramHash::Sha256, &f, Some(v), 16, b).unwrap();
        let nonce = sf.split(',').next().unwrap();
        let mut theirs = b"p=tls-exporter,,".to_vec();
        theirs.extend_from_slice(&[2u8; 32]);
        let fin = format!(
            "c={},{nonce},p={}",
            B64.encode(theirs),
            B64.encode([0u8; 32])
        );
        assert_eq!(
            ex.finish(fin.as_bytes()),
            Err(ScramError::ChannelBindingMismatch)
        );
    }

    #[test]
    fn mechanism_names_map_to_hashes() {
        assert_eq!(
            ScramHash::from_mechanism("SCRAM-SHA-256-PLUS"),
            Some((ScramHash::Sha256, true))
        );
        assert_eq!(
            ScramHash::from_mechanism("SCRAM-SHA-1"),
            Some((ScramHash::Sha1, false))
        );
        assert_eq!(ScramHash::from_mechanism("SCRAM-SHA-512"), None);
        assert_eq!(ScramHash::from_mechanism("PLAIN"), None);
    }
}
