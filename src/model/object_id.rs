//! 24-hex-character ids for dialogs and messages (4-byte seconds, 5 random bytes, 3-byte counter,
//! like the ids in the hosted API), so they sort by creation time.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use rand_core::{OsRng, RngCore};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(String);

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl ObjectId {
    /// A new id stamped with `unix_seconds`.
    pub fn generate(unix_seconds: i64) -> Self {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&(unix_seconds as u32).to_be_bytes());
        OsRng.fill_bytes(&mut bytes[4..9]);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes[9..].copy_from_slice(&n.to_be_bytes()[1..]);
        ObjectId(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for exactly 24 hex digits (the only ids Parley stores).
    pub fn is_valid(s: &str) -> bool {
        s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl FromStr for ObjectId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim();
        if Self::is_valid(s) {
            Ok(ObjectId(s.to_ascii_lowercase()))
        } else {
            Err(())
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_24_hex_unique_and_time_ordered() {
        let a = ObjectId::generate(1_544_097_888);
        let b = ObjectId::generate(1_544_097_888);
        let c = ObjectId::generate(1_544_097_889);
        assert!(ObjectId::is_valid(a.as_str()));
        assert_ne!(a, b);
        assert!(a.as_str()[..8] < c.as_str()[..8]);
        assert_eq!(&a.as_str()[..8], "5c091060");
    }

    #[test]
    fn only_24_hex_digits_parse() {
        assert!("5c094c0ce588ce6856f87422".parse::<ObjectId>().is_ok());
        assert!("5C094C0CE588CE6856F87422".parse::<ObjectId>().is_ok());
        assert!("5c094c0ce588ce6856f8742".parse::<ObjectId>().is_err());
        assert!("zz094c0ce588ce6856f87422".parse::<ObjectId>().is_err());
    }
}
