//! Revocation: what ending a session, changing a password or deleting an account takes away
//! from live XMPP streams. Identity decides *what* is revoked (one [`Revocation`] per change,
//! issued after the change is committed); the hub, as the [`Revoker`], closes the matching
//! connections and parked stream-management sessions at once. A stream remembers how it
//! authenticated ([`ChatAuth`]) so that only the streams resting on the revoked credential go.
//!
//! Stream errors (RFC 6120 §4.9.3): a revoked token or a deleted account closes with
//! `<not-authorized/>` (the stream's authentication no longer holds; Prosody does the same for
//! a deleted account), and so does an operator's kick or ban; a password change with `<reset/>` (the credentials the stream was
//! established with were revoked during its life, §4.9.3.16).

use crate::model::{AppId, UserId};

/// How a bound stream proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatAuth {
    /// The user's password.
    Password,
    /// A live session token, by its SHA-256.
    Token([u8; 32]),
}

/// What a committed identity change takes away from live streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// A session ended (`DELETE /login`, `DELETE /session`): the streams that logged in with
    /// its token.
    Token {
        app: AppId,
        user: UserId,
        token: [u8; 32],
    },
    /// The password changed: the streams that logged in with a password or with any token but
    /// `keep` (the session that made the change; every other session of the user has ended).
    Password {
        app: AppId,
        user: UserId,
        keep: [u8; 32],
    },
    /// The account is gone: every stream and parked session of the user.
    Account { app: AppId, user: UserId },
    /// An operator ended every session of the user (`parley session kick`, a ban): every
    /// stream and parked session closes, but the account stays (its messages wait offline).
    Sessions { app: AppId, user: UserId },
}

impl Revocation {
    /// The user whose streams are concerned.
    pub fn user(&self) -> (AppId, UserId) {
        match *self {
            Revocation::Token { app, user, .. }
            | Revocation::Password { app, user, .. }
            | Revocation::Account { app, user }
            | Revocation::Sessions { app, user } => (app, user),
        }
    }

    /// The revocation as a notice for other processes (`db::notify`): `account {user}-{app}`,
    /// `sessions {user}-{app}`, `token {user}-{app} {digest}` or `password {user}-{app} {keep}`
    /// (the user named as in its JID, a token by the hex of its SHA-256, which is what the
    /// database stores of it anyway: the notice reveals nothing a reader of the database could
    /// not see). Every revocation has one, so a stream resting on the revoked credential
    /// closes on whichever node holds it.
    pub fn notice(&self) -> String {
        let (kind, app, user, digest) = match *self {
            Revocation::Account { app, user } => ("account", app, user, None),
            Revocation::Sessions { app, user } => ("sessions", app, user, None),
            Revocation::Token { app, user, token } => ("token", app, user, Some(token)),
            Revocation::Password { app, user, keep } => ("password", app, user, Some(keep)),
        };
        match digest {
            None => format!("{kind} {}-{}", user.0, app.0),
            Some(d) => format!("{kind} {}-{} {}", user.0, app.0, hex::encode(d)),
        }
    }

    /// Reads a notice written by [`Revocation::notice`]; `None` for anything else.
    pub fn from_notice(notice: &str) -> Option<Revocation> {
        let (kind, rest) = notice.split_once(' ')?;
        let (who, digest) = match rest.split_once(' ') {
            Some((who, d)) => (who, Some(d)),
            None => (rest, None),
        };
        let (user, app) = who.split_once('-')?;
        let (app, user) = (AppId(app.parse().ok()?), UserId(user.parse().ok()?));
        let digest = match digest {
            None => None,
            Some(d) => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(d, &mut out).ok()?;
                Some(out)
            }
        };
        match (kind, digest) {
            ("account", None) => Some(Revocation::Account { app, user }),
            ("sessions", None) => Some(Revocation::Sessions { app, user }),
            ("token", Some(token)) => Some(Revocation::Token { app, user, token }),
            ("password", Some(keep)) => Some(Revocation::Password { app, user, keep }),
            _ => None,
        }
    }

    /// Whether a stream of the user that authenticated with `auth` loses it.
    pub fn covers(&self, auth: ChatAuth) -> bool {
        match (self, auth) {
            (Revocation::Account { .. } | Revocation::Sessions { .. }, _) => true,
            (Revocation::Token { token, .. }, ChatAuth::Token(t)) => *token == t,
            (Revocation::Token { .. }, ChatAuth::Password) => false,
            (Revocation::Password { .. }, ChatAuth::Password) => true,
            (Revocation::Password { keep, .. }, ChatAuth::Token(t)) => *keep != t,
        }
    }

    /// The RFC 6120 stream error condition the covered streams are closed with.
    pub fn condition(&self) -> &'static str {
        match self {
            Revocation::Password { .. } => "reset",
            Revocation::Token { .. } | Revocation::Account { .. } | Revocation::Sessions { .. } => {
                "not-authorized"
            }
        }
    }
}

/// Closes the streams a revocation covers (the hub).
pub trait Revoker: Send + Sync {
    fn revoke(&self, r: &Revocation);
}

/// The SHA-256 of a token, as streams remember it.
pub fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let h = super::secrets::token_hash(token);
    for (o, b) in out.iter_mut().zip(h) {
        *o = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_revocation_covers_only_the_streams_resting_on_what_it_revokes() {
        let (app, user) = (AppId(1), UserId(7));
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let t = Revocation::Token {
            app,
            user,
            token: a,
        };
        assert!(t.covers(ChatAuth::Token(a)));
        assert!(!t.covers(ChatAuth::Token(b)));
        assert!(!t.covers(ChatAuth::Password));
        let p = Revocation::Password { app, user, keep: a };
        assert!(p.covers(ChatAuth::Password));
        assert!(p.covers(ChatAuth::Token(b)));
        assert!(!p.covers(ChatAuth::Token(a)));
        let d = Revocation::Account { app, user };
        assert!(d.covers(ChatAuth::Password) && d.covers(ChatAuth::Token(a)));
        assert_eq!(d.condition(), "not-authorized");
        assert_eq!(p.condition(), "reset");
        let k = Revocation::Sessions { app, user };
        assert!(k.covers(ChatAuth::Password) && k.covers(ChatAuth::Token(a)));
    }

    #[test]
    fn every_revocation_crosses_processes_as_a_notice_and_reads_back_as_itself() {
        let (app, user) = (AppId(3), UserId(1001));
        for r in [
            Revocation::Account { app, user },
            Revocation::Sessions { app, user },
            Revocation::Token {
                app,
                user,
                token: [0xab; 32],
            },
            Revocation::Password {
                app,
                user,
                keep: [7; 32],
            },
        ] {
            let notice = r.notice();
            assert_eq!(Revocation::from_notice(&notice), Some(r));
        }
        assert_eq!(
            Revocation::Sessions { app, user }.notice(),
            "sessions 1001-3"
        );
        let ab = "ab".repeat(32);
        for junk in [
            "",
            "sessions",
            "sessions 1001",
            "kick 1001-3",
            "sessions x-3",
            "sessions 1001-3-4",
            "account 99999999999999999999-1",
            "token 1001-3",
            "token 1001-3 abab",
            "token 1001-3 zz",
            &format!("sessions 1001-3 {ab}"),
            &format!("token 1001-3 {ab}00"),
            &format!("token 1001-3 {ab} x"),
            &format!("password 1001-3  {ab}"),
        ] {
            assert_eq!(Revocation::from_notice(junk), None, "{junk:?}");
        }
    }
}
