//! JIDs (`local@domain/resource`) and the user a JID names: `{user_id}-{application_id}` on the
//! chat domain. Plain values shared by the XMPP adapter and the privacy rules; no I/O, no XML.
//! The tenant rule ([`UserKey::same_app`]) is written here once.

use std::fmt;

use super::{AppId, UserId, UserKey};

/// `local@domain/resource`, each part as written (no stringprep: local parts are numeric ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Jid {
    pub local: Option<String>,
    pub domain: String,
    pub resource: Option<String>,
}

impl Jid {
    pub fn parse(s: &str) -> Option<Jid> {
        let (rest, resource) = match s.split_once('/') {
            Some((a, r)) if !r.is_empty() => (a, Some(r.to_owned())),
            Some(_) => return None,
            None => (s, None),
        };
        let (local, domain) = match rest.split_once('@') {
            Some((l, d)) if !l.is_empty() => (Some(l.to_owned()), d),
            Some(_) => return None,
            None => (None, rest),
        };
        if domain.is_empty() || domain.contains('@') {
            return None;
        }
        Some(Jid {
            local,
            domain: domain.to_ascii_lowercase(),
            resource,
        })
    }

    pub fn bare(&self) -> Jid {
        Jid {
            resource: None,
            ..self.clone()
        }
    }

    /// The user this JID names on `domain`, if it is a `{user_id}-{app_id}` JID there.
    pub fn user(&self, domain: &str) -> Option<UserKey> {
        if !self.domain.eq_ignore_ascii_case(domain) {
            return None;
        }
        UserKey::from_local(self.local.as_deref()?)
    }

    /// The user this JID names on `domain` if `caller` may reach them (see
    /// [`UserKey::same_app`]); `None` for any other JID.
    pub fn peer_of(&self, domain: &str, caller: &UserKey) -> Option<UserKey> {
        self.user(domain).filter(|u| caller.same_app(u))
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl UserKey {
    /// Parses `{user_id}-{app_id}`.
    pub fn from_local(local: &str) -> Option<UserKey> {
        let (u, a) = local.split_once('-')?;
        if u.is_empty() || a.is_empty() || !u.bytes().chain(a.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(UserKey {
            app: AppId(a.parse().ok()?),
            user: UserId(u.parse().ok()?),
        })
    }

    /// **The tenant rule**, written once: a user reaches only users of their own application.
    /// Stanza routing (`session::resolve`, the entry point of every message, presence and iq
    /// addressed to a user), roster contacts, status streaming and last activity all ask it; a
    /// JID of another application is answered as if no such user existed.
    pub fn same_app(&self, other: &UserKey) -> bool {
        self.app == other.app
    }

    pub fn local(&self) -> String {
        format!("{}-{}", self.user, self.app)
    }

    pub fn bare_jid(&self, domain: &str) -> Jid {
        Jid {
            local: Some(self.local()),
            domain: domain.to_owned(),
            resource: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_jids_parse_into_app_and_user() {
        let j = Jid::parse("1001-42@localhost/abc").unwrap();
        assert_eq!(j.resource.as_deref(), Some("abc"));
        let k = j.user("localhost").unwrap();
        assert_eq!((k.user, k.app), (UserId(1001), AppId(42)));
        assert_eq!(k.bare_jid("localhost").to_string(), "1001-42@localhost");
        assert!(Jid::parse("x@").is_none());
        assert!(Jid::parse("1001-42@other")
            .unwrap()
            .user("localhost")
            .is_none());
        assert!(UserKey::from_local("10a-42").is_none());
    }
}
