//! The local-disk store: files under `<data_dir>/blobs/<2 hex>/<uid>`, served by Parley itself.
//! Its upload form and download URLs are signed (HMAC-SHA256 with the store's key) and expire,
//! so the byte paths need no session token: the signature is the permission, and it names
//! exactly one blob, one operation, one content type and size bound, and a deadline.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

use super::sigv4::uri_encode;
use super::StoreError;
use crate::model::blob::is_uid;

type HmacSha256 = Hmac<Sha256>;

/// What a valid upload signature allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadGrant {
    pub uid: String,
    pub content_type: String,
    pub max_bytes: u64,
}

/// What a valid PUT signature (an XEP-0363 slot) allows: exactly `size` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutGrant {
    pub uid: String,
    pub content_type: String,
    pub size: u64,
}

pub struct DiskStore {
    root: PathBuf,
    key: Vec<u8>,
    /// `scheme://host[:port]` clients reach the REST port at.
    base: String,
}

impl DiskStore {
    /// Opens (creating) `<data_dir>/blobs`; with an empty `signing_key`, the key is read from
    /// `signing.key` there, made at random on first use.
    pub fn open(data_dir: &Path, signing_key: &str, base: String) -> Result<Self, StoreError> {
        let root = data_dir.join("blobs");
        std::fs::create_dir_all(root.join("tmp"))?;
        let key = if signing_key.is_empty() {
            load_or_make_key(&root.join("signing.key"))?
        } else {
            signing_key.as_bytes().to_vec()
        };
        Ok(Self {
            root,
            key,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn sign(&self, parts: &[&str]) -> String {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(parts.join("\n").as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    fn verify(&self, parts: &[&str], signature: &str) -> bool {
        let Ok(sig) = hex::decode(signature) else {
            return false;
        };
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(parts.join("\n").as_bytes());
        // Constant-time comparison.
        m.verify_slice(&sig).is_ok()
    }

    /// The upload form as the hosted service gives it: the target URL with every form field in
    /// its query (the SDKs post the fields, then `file`, as `multipart/form-data`).
    pub fn upload_url(
        &self,
        uid: &str,
        content_type: &str,
        max_bytes: u64,
        expires: i64,
    ) -> String {
        let (max, exp) = (max_bytes.to_string(), expires.to_string());
        let sig = self.sign(&["upload", uid, content_type, &max, &exp]);
        format!(
            "{}/storage/upload?key={uid}&Content-Type={}&max_size={max}&expires={exp}&signature={sig}&success_action_status=201",
            self.base,
            uri_encode(content_type, false)
        )
    }

    /// Checks an upload's signed fields at `now` (unix seconds).
    pub fn check_upload(
        &self,
        field: impl Fn(&str) -> Option<String>,
        now: i64,
    ) -> Result<UploadGrant, StoreError> {
        let get = |name: &'static str| field(name).ok_or(StoreError::Refused(name));
        let (uid, ct, max, exp, sig) = (
            get("key")?,
            get("Content-Type")?,
            get("max_size")?,
            get("expires")?,
            get("signature")?,
        );
        if !self.verify(&["upload", &uid, &ct, &max, &exp], &sig) || !is_uid(&uid) {
            return Err(StoreError::Refused("signature"));
        }
        let expires: i64 = exp.parse().map_err(|_| StoreError::Refused("expires"))?;
        if expires < now {
            return Err(StoreError::Expired);
        }
        Ok(UploadGrant {
            uid,
            content_type: ct,
            max_bytes: max.parse().map_err(|_| StoreError::Refused("max_size"))?,
        })
    }

    /// A download URL for `uid`, valid until `expires` (unix seconds).
    pub fn download_url(&self, uid: &str, expires: i64) -> String {
        let exp = expires.to_string();
        let sig = self.sign(&["get", uid, &exp]);
        format!("{}/storage/{uid}?expires={exp}&signature={sig}", self.base)
    }

    /// Checks a download URL's signature and deadline at `now`.
    pub fn check_download(
        &self,
        uid: &str,
        expires: &str,
        signature: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if !is_uid(uid) || !self.verify(&["get", uid, expires], signature) {
            return Err(StoreError::Refused("signature"));
        }
        match expires.parse::<i64>() {
            Ok(e) if e >= now => Ok(()),
            Ok(_) => Err(StoreError::Expired),
            Err(_) => Err(StoreError::Refused("expires")),
        }
    }

    /// An XEP-0363 PUT URL: exactly `size` bytes of `content_type` for `uid`, valid until
    /// `expires` (unix seconds). Its signature's purpose ("put") is its own: neither an upload
    /// form's nor a download URL's signature can stand in for it, nor it for them.
    pub fn put_url(&self, uid: &str, content_type: &str, size: u64, expires: i64) -> String {
        let (size, exp) = (size.to_string(), expires.to_string());
        let sig = self.sign(&["put", uid, content_type, &size, &exp]);
        format!(
            "{}/storage/{uid}?size={size}&type={}&expires={exp}&signature={sig}",
            self.base,
            uri_encode(content_type, false)
        )
    }

    /// Checks a PUT URL's signed query at `now`: what it allows.
    pub fn check_put(
        &self,
        uid: &str,
        field: impl Fn(&str) -> Option<String>,
        now: i64,
    ) -> Result<PutGrant, StoreError> {
        let get = |name: &'static str| field(name).ok_or(StoreError::Refused(name));
        let (ct, size, exp, sig) = (
            get("type")?,
            get("size")?,
            get("expires")?,
            get("signature")?,
        );
        if !is_uid(uid) || !self.verify(&["put", uid, &ct, &size, &exp], &sig) {
            return Err(StoreError::Refused("signature"));
        }
        let expires: i64 = exp.parse().map_err(|_| StoreError::Refused("expires"))?;
        if expires < now {
            return Err(StoreError::Expired);
        }
        Ok(PutGrant {
            uid: uid.to_owned(),
            content_type: ct,
            size: size.parse().map_err(|_| StoreError::Refused("size"))?,
        })
    }

    /// Where `uid`'s bytes live (the uid is checked: 32 hex digits, never a path).
    pub fn path(&self, uid: &str) -> Option<PathBuf> {
        if !is_uid(uid) {
            return None;
        }
        Some(self.root.join(uid.get(..2)?).join(uid))
    }

    /// A new temporary file for an upload in progress; `commit` moves it into place.
    pub async fn temp_file(&self) -> Result<(PathBuf, tokio::fs::File), StoreError> {
        let mut r = [0u8; 16];
        OsRng.fill_bytes(&mut r);
        let path = self.root.join("tmp").join(hex::encode(r));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok((path, file))
    }

    /// Moves a finished upload into place (atomic: a reader sees the whole file or none).
    pub async fn commit(&self, temp: &Path, uid: &str) -> Result<(), StoreError> {
        let dest = self.path(uid).ok_or(StoreError::Refused("key"))?;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::rename(temp, &dest).await?;
        Ok(())
    }

    pub async fn size(&self, uid: &str) -> Result<Option<u64>, StoreError> {
        let Some(p) = self.path(uid) else {
            return Ok(None);
        };
        match tokio::fs::metadata(&p).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, uid: &str) -> Result<(), StoreError> {
        let Some(p) = self.path(uid) else {
            return Ok(());
        };
        match tokio::fs::remove_file(&p).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads the key file, or writes a new random key there (mode 0600). Two servers starting on
/// one data directory at once may each write one; the file ends with one of them, and each
/// server keeps using the key it read back.
fn load_or_make_key(path: &Path) -> Result<Vec<u8>, StoreError> {
    match std::fs::read(path) {
        Ok(k) if k.len() >= 32 => {
            crate::secret_file::restrict(path)?;
            return Ok(k);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    crate::secret_file::write(&tmp, hex::encode(k).as_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok(std::fs::read(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempdir::Dir, DiskStore) {
        let d = tempdir::Dir::new();
        let s = DiskStore::open(d.path(), "k", "http://x".into()).unwrap();
        (d, s)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let mut r = [0u8; 8];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
                let p = std::env::temp_dir().join(format!("parley-disk-{}", hex::encode(r)));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let q = url.split_once('?').unwrap().1;
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn a_signed_upload_form_is_accepted_until_it_expires() {
        let (_d, s) = store();
        let uid = "0123456789abcdef0123456789abcdef";
        let q = query(&s.upload_url(uid, "image/png", 10, 100));
        let f = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let g = s.check_upload(f, 100).unwrap();
        assert_eq!((g.uid.as_str(), g.max_bytes), (uid, 10));
        assert!(matches!(s.check_upload(f, 101), Err(StoreError::Expired)));
    }

    #[test]
    fn a_changed_field_breaks_the_upload_signature() {
        let (_d, s) = store();
        let uid = "0123456789abcdef0123456789abcdef";
        let q = query(&s.upload_url(uid, "image/png", 10, 100));
        let f = |k: &str| {
            if k == "max_size" {
                return Some("1000000".to_string());
            }
            q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        assert!(matches!(
            s.check_upload(f, 1),
            Err(StoreError::Refused("signature"))
        ));
    }

    #[test]
    fn a_download_signature_names_one_blob() {
        let (_d, s) = store();
        let a = "0123456789abcdef0123456789abcdef";
        let b = "1123456789abcdef0123456789abcdef";
        let q = query(&s.download_url(a, 50));
        let (exp, sig) = (&q[0].1, &q[1].1);
        assert!(s.check_download(a, exp, sig, 50).is_ok());
        assert!(s.check_download(b, exp, sig, 50).is_err());
        assert!(matches!(
            s.check_download(a, exp, sig, 51),
            Err(StoreError::Expired)
        ));
    }

    #[test]
    fn a_put_signature_is_valid_only_for_puts_until_it_expires() {
        let (_d, s) = store();
        let uid = "0123456789abcdef0123456789abcdef";
        let q = query(&s.put_url(uid, "image/png", 10, 100));
        let f = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let g = s.check_put(uid, f, 100).unwrap();
        assert_eq!((g.size, g.content_type.as_str()), (10, "image/png"));
        assert!(matches!(s.check_put(uid, f, 101), Err(StoreError::Expired)));
        // The same key, another purpose: a download signature does not open a PUT, nor the
        // other way round.
        let exp = f("expires").unwrap();
        let sig = f("signature").unwrap();
        assert!(s.check_download(uid, &exp, &sig, 1).is_err());
        let d = query(&s.download_url(uid, 100));
        let forged = |k: &str| match k {
            "signature" => Some(d[1].1.clone()),
            other => f(other),
        };
        assert!(s.check_put(uid, forged, 1).is_err());
    }

    #[test]
    fn a_uid_is_never_a_path() {
        let (_d, s) = store();
        assert!(s.path("../../etc/passwd").is_none());
        assert!(s.path("0123456789ABCDEF0123456789abcdef").is_none());
    }
}
