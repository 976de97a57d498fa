//! Sessions: `POST /session` (unsigned as the SDKs send it, or signed as the docs describe),
//! token authentication with sliding expiry, login/logout on a session, and the XMPP password check.

use std::net::{IpAddr, Ipv4Addr};

use time::{Duration, OffsetDateTime};

use super::revocation::token_digest;
use super::scram::{Binding, ClientFirst, Exchange, ScramError, ScramHash, Verifier};
use super::secrets::{self, new_token, token_hash};
use super::{Caller, ChatAuth, Identity, IdentityError, Revocation};
use crate::db;
use crate::model::account::UserFields;
use crate::model::{AppId, Application, Session, User, UserId};
use crate::ops::telemetry::{DB_QUERY_DURATION, LOGINS};

/// A login or an email, with the password.
#[derive(Clone, Debug)]
pub enum Credentials {
    Login { login: String, password: String },
    Email { email: String, password: String },
}

/// `POST /session`, typed. `signed_pairs` are all request parameters flattened (`user[login]`),
/// exactly as the client signed them.
#[derive(Clone, Debug, Default)]
pub struct SessionRequest {
    pub application_id: Option<AppId>,
    pub auth_key: Option<String>,
    pub timestamp: Option<i64>,
    /// A number, as the SDKs send it (anything else is refused at the edge).
    pub nonce: Option<i64>,
    pub signature: Option<String>,
    pub credentials: Option<Credentials>,
    /// `provider` (social / Firebase sign-in) or `user[guest]`: not offered by this server.
    pub unsupported: Option<(String, String)>,
    pub signed_pairs: Vec<(String, String)>,
    /// The caller's address, for the password throttle (`None`: counted as 0.0.0.0).
    pub peer: Option<IpAddr>,
}

/// Counts a REST password login by its outcome (`via`: `rest_session` or `rest_login`).
fn count_login<T>(via: &'static str, r: &Result<T, IdentityError>) {
    let outcome = match r {
        Ok(_) => "success",
        Err(IdentityError::Unauthorized | IdentityError::Invalid { .. }) => "failure",
        Err(IdentityError::Throttled { .. }) => "throttled",
        Err(_) => "error",
    };
    metrics::counter!(LOGINS, "via" => via, "method" => "password", "outcome" => outcome)
        .increment(1);
}

/// A SCRAM login between its first and last step (holds no password).
pub struct ScramLogin {
    app: AppId,
    user: UserId,
    exchange: Exchange,
}

/// Why a SCRAM step failed.
#[derive(Debug)]
pub enum ScramFailure {
    /// The exchange itself: malformed, wrong proof, channel binding.
    Refused(ScramError),
    /// Throttled, busy, or the database failed.
    Identity(IdentityError),
}

impl Identity {
    /// `POST /session`: checks the application and signature, authenticates (or creates) the user.
    pub async fn create_session(
        &self,
        req: SessionRequest,
    ) -> Result<(Session, Option<User>, String), IdentityError> {
        let app_id = req
            .application_id
            .ok_or_else(|| IdentityError::invalid("application_id", "is required"))?;
        let auth_key = req
            .auth_key
            .as_deref()
            .ok_or_else(|| IdentityError::invalid("auth_key", "is required"))?;
        let app = db::apps::get(self.pool(), app_id)
            .await?
            .filter(|a| a.auth_key == auth_key)
            .ok_or_else(|| IdentityError::invalid("auth_key", "does not match any application"))?;
        self.check_signature(&app, &req).await?;
        if let Some((field, message)) = req.unsupported {
            return Err(IdentityError::invalid(field, message));
        }
        let peer = req.peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let user = match req.credentials {
            Some(c) => {
                let user = self.user_for_session(&app, c, peer).await;
                count_login("rest_session", &user);
                Some(user?)
            }
            None => None,
        };
        let ts = req.timestamp.unwrap_or_else(|| self.clock().unix_seconds());
        let (session, token) = self
            .open_session(&app, user.as_ref().map(|u| u.id), req.nonce, ts)
            .await?;
        Ok((session, user, token))
    }

    /// Verifies a signature when one is sent; requires one when the application says so.
    async fn check_signature(
        &self,
        app: &Application,
        req: &SessionRequest,
    ) -> Result<(), IdentityError> {
        let Some(signature) = req.signature.as_deref() else {
            return if app.require_signature {
                Err(IdentityError::invalid(
                    "signature",
                    "is required by this application",
                ))
            } else {
                Ok(())
            };
        };
        let ts = req
            .timestamp
            .ok_or_else(|| IdentityError::invalid("timestamp", "is required with a signature"))?;
        let nonce = req
            .nonce
            .ok_or_else(|| IdentityError::invalid("nonce", "is required with a signature"))?;
        let window = self.inner.sessions.signature_window_secs;
        if (self.clock().unix_seconds() - ts).abs() > window {
            return Err(IdentityError::invalid(
                "timestamp",
                format!(
                    "is outside the accepted window of {window} seconds around the server time"
                ),
            ));
        }
        if !secrets::signature_matches(&app.auth_secret, &req.signed_pairs, signature) {
            return Err(IdentityError::UnexpectedSignature);
        }
        if !db::sessions::record_nonce(self.pool(), app.id, ts, nonce).await? {
            return Err(IdentityError::invalid(
                "nonce",
                "has already been used with this timestamp",
            ));
        }
        Ok(())
    }

    /// The user named by the credentials; creates it when missing and the application allows.
    async fn user_for_session(
        &self,
        app: &Application,
        creds: Credentials,
        peer: IpAddr,
    ) -> Result<User, IdentityError> {
        if let Some(user) = self.check_credentials(app.id, &creds, peer).await? {
            return Ok(user);
        }
        if !app.session_creates_users {
            // Guessing logins counts against the address like guessing passwords.
            self.throttle().failed(peer, None);
            return Err(IdentityError::Unauthorized);
        }
        let mut fields = UserFields::default();
        let password = match creds {
            Credentials::Login { login, password } => {
                fields.login = Some(Some(login));
                password
            }
            Credentials::Email { email, password } => {
                fields.email = Some(Some(email));
                password
            }
        };
        self.signup(app.id, fields, Some(password)).await
    }

    /// The user when the password is right, `None` when no such user, `Unauthorized` otherwise;
    /// `Throttled` (before any check) past the wrong-password limit of `peer`.
    async fn check_credentials(
        &self,
        app: AppId,
        creds: &Credentials,
        peer: IpAddr,
    ) -> Result<Option<User>, IdentityError> {
        let (by_email, name, password) = match creds {
            Credentials::Login { login, password } => (false, login, password),
            Credentials::Email { email, password } => (true, email, password),
        };
        if password.is_empty() {
            return Err(IdentityError::invalid("password", "cannot be blank"));
        }
        self.throttle().check(peer, None)?;
        let Some((user, hash)) = db::users::credentials(self.pool(), app, by_email, name).await?
        else {
            return Ok(None);
        };
        if !self
            .password_matches(app, user.id, password, hash, peer)
            .await?
            || user.is_guest
        {
            return Err(IdentityError::Unauthorized);
        }
        self.refuse_banned(app, user.id).await?;
        Ok(Some(user))
    }

    /// **The one password check**: throttled per address and per (account, address); a wrong
    /// password counts against both.
    pub(super) async fn password_matches(
        &self,
        app: AppId,
        user: UserId,
        password: &str,
        hash: String,
        peer: IpAddr,
    ) -> Result<bool, IdentityError> {
        self.throttle().check(peer, Some((app, user)))?;
        let ok = self
            .verify_password(password.to_owned(), hash.clone())
            .await?;
        if !ok {
            self.throttle().failed(peer, Some((app, user)));
        } else {
            self.complete_scram(app, user, password, &hash).await;
        }
        Ok(ok)
    }

    /// An account whose password predates SCRAM credentials gets them at its first successful
    /// password login (the only moment the server holds the password). Best effort: a failure
    /// is logged and the login goes on; SCRAM for that account keeps failing until the next.
    async fn complete_scram(&self, app: AppId, user: UserId, password: &str, checked_hash: &str) {
        let result = async {
            if !db::users::scram_missing(self.pool(), app, user).await? {
                return Ok(());
            }
            let (sha1, sha256) = secrets::derive_scram(
                password.to_owned(),
                self.inner.passwords.scram_iterations,
                &self.inner.hashing,
            )
            .await?;
            db::users::set_missing_scram(self.pool(), app, user, checked_hash, &sha1, &sha256)
                .await?;
            Ok::<_, IdentityError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, user = %user, "deriving SCRAM credentials at login");
        }
    }

    /// SCRAM, first step, for the account (`app`, `user`) the client-first message names: the
    /// server-first message. Past the wrong-password limit of `peer` nothing is looked up
    /// (`Throttled`). An account without credentials gets an answer that looks the same and
    /// fails at [`Identity::scram_finish`].
    pub async fn scram_start(
        &self,
        app: AppId,
        user: UserId,
        hash: ScramHash,
        first: &ClientFirst,
        binding: Binding<'_>,
        peer: IpAddr,
    ) -> Result<(ScramLogin, String), ScramFailure> {
        self.throttle()
            .check(peer, Some((app, user)))
            .map_err(|t| ScramFailure::Identity(t.into()))?;
        let stored = db::users::scram(self.pool(), app, user, hash == ScramHash::Sha256)
            .await
            .map_err(|e| ScramFailure::Identity(e.into()))?;
        let verifier = stored.and_then(|s| Verifier::decode(hash, &s));
        let iterations = self.inner.passwords.scram_iterations;
        match Exchange::start(hash, first, verifier, iterations, binding) {
            Ok((exchange, server_first)) => Ok((
                ScramLogin {
                    app,
                    user,
                    exchange,
                },
                server_first,
            )),
            Err(e) => {
                self.throttle().failed(peer, Some((app, user)));
                Err(ScramFailure::Refused(e))
            }
        }
    }

    /// SCRAM, last step: the server-final message when the client's proof is right. Any
    /// failure counts as a wrong password of that account from `peer`; a right proof of a
    /// banned account is `Banned`, as with every other way in.
    pub async fn scram_finish(
        &self,
        login: ScramLogin,
        client_final: &[u8],
        peer: IpAddr,
    ) -> Result<String, ScramFailure> {
        let (app, user) = (login.app, login.user);
        let server_final = login.exchange.finish(client_final).map_err(|e| {
            self.throttle().failed(peer, Some((app, user)));
            ScramFailure::Refused(e)
        })?;
        self.refuse_banned(app, user)
            .await
            .map_err(ScramFailure::Identity)?;
        Ok(server_final)
    }

    /// A malformed or unknown-account login attempt from `peer` (counted like a wrong password).
    pub fn login_attempt_failed(&self, peer: IpAddr) {
        self.throttle().failed(peer, None);
    }

    async fn open_session(
        &self,
        app: &Application,
        user: Option<UserId>,
        nonce: Option<i64>,
        ts: i64,
    ) -> Result<(Session, String), IdentityError> {
        let now = self.clock().now();
        let token = new_token();
        let hash = token_hash(&token);
        let new = db::sessions::NewSession {
            app: app.id,
            user,
            token_hash: &hash,
            nonce,
            ts,
            now,
            expires_at: now + self.ttl(),
        };
        let session = db::sessions::insert(self.pool(), &new).await?;
        if let Some(u) = user {
            db::users::touch(self.pool(), u, now).await?;
        }
        Ok((session, token))
    }

    fn ttl(&self) -> Duration {
        Duration::seconds(self.inner.sessions.ttl_secs.max(1))
    }

    /// The application whose `auth_key` this is (`CB-AuthKey` sign-up).
    pub async fn app_by_auth_key(&self, auth_key: &str) -> Result<Application, IdentityError> {
        db::apps::by_auth_key(self.pool(), auth_key)
            .await?
            .ok_or(IdentityError::Unauthorized)
    }

    /// Resolves `CB-Token`; every successful use extends the session by the full lifetime.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller, IdentityError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(IdentityError::TokenRequired)?;
        let now = self.clock().now();
        let started = std::time::Instant::now();
        let live = db::sessions::live(self.pool(), &token_hash(token), now).await;
        metrics::histogram!(DB_QUERY_DURATION, "query" => "session_lookup")
            .record(started.elapsed());
        let (mut session, app, user) = live?.ok_or(IdentityError::SessionNotFound)?;
        // Refreshing at most once a minute keeps a burst of requests from writing every time.
        let ttl = self.ttl();
        let slack = Duration::seconds(60).min(ttl / 2);
        if session.expires_at - now < ttl - slack {
            session.expires_at = now + ttl;
            session.updated_at = now;
            db::sessions::extend(self.pool(), session.id, now, session.expires_at).await?;
            if let Some(u) = session.user_id {
                db::users::touch(self.pool(), u, now).await?;
            }
        }
        // A user session whose user is gone is gone too.
        if session.user_id.is_some() && user.is_none() {
            return Err(IdentityError::SessionNotFound);
        }
        Ok(Caller {
            app,
            session,
            user,
            token: token.to_owned(),
        })
    }

    /// `POST /login`: binds the caller's session to the user with these credentials.
    pub async fn login(
        &self,
        caller: &Caller,
        creds: Credentials,
        peer: IpAddr,
    ) -> Result<User, IdentityError> {
        let found = match self.check_credentials(caller.app.id, &creds, peer).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => {
                self.throttle().failed(peer, None);
                Err(IdentityError::Unauthorized)
            }
            Err(e) => Err(e),
        };
        count_login("rest_login", &found);
        let user = found?;
        let now = self.clock().now();
        db::sessions::set_user(self.pool(), caller.session.id, Some(user.id), now).await?;
        db::users::touch(self.pool(), user.id, now).await?;
        Ok(user)
    }

    /// `DELETE /login`: the session goes back to being an application session; streams that
    /// logged in with its token close, on every node (the notice goes with the change).
    pub async fn logout(&self, caller: &Caller) -> Result<(), IdentityError> {
        let user = caller.user()?;
        let revocation = Revocation::Token {
            app: caller.app.id,
            user: user.id,
            token: token_digest(&caller.token),
        };
        let notice = revocation.notice();
        db::sessions::logout(self.pool(), caller.session.id, self.clock().now(), &notice).await?;
        self.revoke(revocation);
        Ok(())
    }

    /// `DELETE /session`; streams that logged in with its token close, on every node.
    pub async fn destroy_session(&self, caller: &Caller) -> Result<(), IdentityError> {
        let revocation = caller.user.as_ref().map(|user| Revocation::Token {
            app: caller.app.id,
            user: user.id,
            token: token_digest(&caller.token),
        });
        let notice = revocation.map(|r| r.notice());
        db::sessions::delete(self.pool(), caller.session.id, notice.as_deref()).await?;
        if let Some(r) = revocation {
            self.revoke(r);
        }
        Ok(())
    }

    /// The XMPP password check: a live session token of that user **in that application**, or
    /// the user's password; `Banned` when either is right but an operator banned the user. `None`: refused (a wrong password is counted by the throttle);
    /// `Throttled`: too many wrong passwords from `peer`, the password was not checked. A live
    /// token is accepted even then: it cannot be guessed, and its owner must not be locked out
    /// by someone guessing their password.
    pub async fn check_chat_secret(
        &self,
        app: AppId,
        user: UserId,
        secret: &str,
        peer: IpAddr,
    ) -> Result<Option<ChatAuth>, IdentityError> {
        let now = self.clock().now();
        if secret.len() <= 128 {
            let digest = token_digest(secret);
            if db::sessions::live_for_user(self.pool(), &digest, app, user, now).await? {
                self.refuse_banned(app, user).await?;
                return Ok(Some(ChatAuth::Token(digest)));
            }
        }
        self.throttle().check(peer, Some((app, user)))?;
        let Some(hash) = db::users::password_hash(self.pool(), app, user).await? else {
            self.throttle().failed(peer, None);
            return Ok(None);
        };
        if !self.password_matches(app, user, secret, hash, peer).await? {
            return Ok(None);
        }
        self.refuse_banned(app, user).await?;
        Ok(Some(ChatAuth::Password))
    }

    /// Deletes expired sessions and nonces that can no longer be replayed.
    pub async fn purge_expired(&self) -> Result<(u64, u64), IdentityError> {
        let now = self.clock().now();
        let before = now.unix_timestamp() - self.inner.sessions.signature_window_secs - 60;
        Ok(db::sessions::purge(self.pool(), now, before).await?)
    }

    /// When the caller's token expires unless used again.
    pub fn expires_at(caller: &Caller) -> OffsetDateTime {
        caller.session.expires_at
    }
}
