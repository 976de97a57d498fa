//! AWS Signature Version 4 for S3, the two forms Parley needs: query-string pre-signed URLs
//! (GET, HEAD, DELETE, PUT) and browser POST policies (the upload form the ConnectyCube SDKs
//! post). Pure functions of their inputs (the time included), so they are checked against the
//! vectors AWS publishes.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

/// What a pre-signed URL points at: `scheme://host` and the canonical (encoded) path.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub path: &'a str,
}

/// Credentials and scope of one bucket.
#[derive(Clone, Debug)]
pub struct Signer {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn amz_date(t: OffsetDateTime) -> (String, String) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let date = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
    let stamp = format!("{date}T{:02}{:02}{:02}Z", t.hour(), t.minute(), t.second());
    (date, stamp)
}

/// RFC 3986 percent-encoding as SigV4 wants it: everything but `A-Za-z0-9-_.~` (and `/` when
/// `keep_slash`) is encoded, spaces as `%20`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Signer {
    fn scope(&self, date: &str) -> String {
        format!("{date}/{}/s3/aws4_request", self.region)
    }

    fn signing_key(&self, date: &str) -> Vec<u8> {
        let k = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let k = hmac(&k, self.region.as_bytes());
        let k = hmac(&k, b"s3");
        hmac(&k, b"aws4_request")
    }

    /// A pre-signed URL: `method` on `target`, valid `expires_secs` from `now`, with `extra`
    /// query parameters signed too.
    pub fn presign(
        &self,
        method: &str,
        target: Target<'_>,
        extra: &[(&str, &str)],
        now: OffsetDateTime,
        expires_secs: u64,
    ) -> String {
        self.presign_headers(method, target, extra, &[], now, expires_secs)
    }

    /// [`Signer::presign`] with request headers signed too (`(lower-case name, value)`, sorted
    /// by name, each before `host`): the store refuses a request whose headers differ, so a
    /// signed `content-length` makes an upload of exactly that size.
    pub fn presign_headers(
        &self,
        method: &str,
        target: Target<'_>,
        extra: &[(&str, &str)],
        headers: &[(&str, &str)],
        now: OffsetDateTime,
        expires_secs: u64,
    ) -> String {
        let Target { scheme, host, path } = target;
        let mut signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        signed.push("host");
        let signed = signed.join(";");
        let canonical_headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .chain(std::iter::once(format!("host:{host}\n")))
            .collect();
        let (date, stamp) = amz_date(now);
        let credential = format!("{}/{}", self.access_key, self.scope(&date));
        let expires = expires_secs.clamp(1, 604_800).to_string();
        let mut q: Vec<(String, String)> = vec![
            ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
            ("X-Amz-Credential".into(), credential),
            ("X-Amz-Date".into(), stamp.clone()),
            ("X-Amz-Expires".into(), expires),
            ("X-Amz-SignedHeaders".into(), signed.clone()),
        ];
        q.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut enc: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        enc.sort();
        let query = enc
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let canonical =
            format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\nUNSIGNED-PAYLOAD");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{}\n{}",
            self.scope(&date),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let signature = hex::encode(hmac(&self.signing_key(&date), to_sign.as_bytes()));
        format!("{scheme}://{host}{path}?{query}&X-Amz-Signature={signature}")
    }

    /// The fields of a browser POST upload to `bucket`: `key` with exactly `content_type`, at
    /// most `max_bytes`, answered `201`, valid `expires_secs` from `now`. In form order.
    pub fn post_form(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        max_bytes: u64,
        now: OffsetDateTime,
        expires_secs: u64,
    ) -> Vec<(&'static str, String)> {
        let (date, stamp) = amz_date(now);
        let credential = format!("{}/{}", self.access_key, self.scope(&date));
        let expiration = (now + time::Duration::seconds(expires_secs.min(604_800) as i64))
            .to_offset(time::UtcOffset::UTC);
        let expiration = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
            expiration.year(),
            u8::from(expiration.month()),
            expiration.day(),
            expiration.hour(),
            expiration.minute(),
            expiration.second()
        );
        let policy = serde_json::json!({
            "expiration": expiration,
            "conditions": [
                {"bucket": bucket},
                {"key": key},
                {"Content-Type": content_type},
                {"success_action_status": "201"},
                ["content-length-range", 0, max_bytes],
                {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                {"x-amz-credential": credential},
                {"x-amz-date": stamp},
            ]
        });
        let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let signature = hex::encode(hmac(&self.signing_key(&date), policy.as_bytes()));
        vec![
            ("key", key.to_owned()),
            ("Content-Type", content_type.to_owned()),
            ("success_action_status", "201".to_owned()),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256".to_owned()),
            ("x-amz-credential", credential),
            ("x-amz-date", stamp),
            ("policy", policy),
            ("x-amz-signature", signature),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Signer {
        Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn a_presigned_get_matches_the_aws_documentation_example() {
        // "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", example.
        let at = time::macros::datetime!(2013-05-24 00:00:00 UTC);
        let url = example().presign(
            "GET",
            Target {
                scheme: "https",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
            },
            &[],
            at,
            86_400,
        );
        assert!(
            url.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
        assert!(url.contains(
            "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        ));
    }

    #[test]
    fn a_post_policy_limits_key_type_and_size() {
        let at = time::macros::datetime!(2013-08-06 00:00:00 UTC);
        let form = example().post_form("b", "k1", "image/png", 1000, at, 3600);
        let policy = form.iter().find(|(k, _)| *k == "policy").unwrap();
        let json = base64::engine::general_purpose::STANDARD
            .decode(&policy.1)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["expiration"], "2013-08-06T01:00:00.000Z");
        let text = v["conditions"].to_string();
        assert!(
            text.contains(r#"["content-length-range",0,1000]"#),
            "{text}"
        );
        assert!(text.contains(r#"{"key":"k1"}"#), "{text}");
        assert!(text.contains(r#"{"Content-Type":"image/png"}"#), "{text}");
    }

    #[test]
    fn a_signed_header_is_named_in_the_url_and_changes_the_signature() {
        let at = time::macros::datetime!(2013-05-24 00:00:00 UTC);
        let t = Target {
            scheme: "https",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
        };
        let plain = example().presign_headers("PUT", t, &[], &[], at, 60);
        let sized = example().presign_headers("PUT", t, &[], &[("content-length", "5")], at, 60);
        let other = example().presign_headers("PUT", t, &[], &[("content-length", "6")], at, 60);
        assert!(
            sized.contains("X-Amz-SignedHeaders=content-length%3Bhost"),
            "{sized}"
        );
        assert!(plain.contains("X-Amz-SignedHeaders=host"), "{plain}");
        let sig = |u: &str| u.rsplit_once("X-Amz-Signature=").unwrap().1.to_owned();
        assert_ne!(sig(&sized), sig(&other));
        assert_ne!(sig(&sized), sig(&plain));
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("a b/c+d~", false), "a%20b%2Fc%2Bd~");
        assert_eq!(uri_encode("a b/c", true), "a%20b/c");
    }
}
