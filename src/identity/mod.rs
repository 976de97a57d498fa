//! Applications, users and sessions: who is calling, and every rule about accounts (signatures,
//! token lifetime, sign-up validation, "only yourself"). Adapters call it; it holds no SQL and
//! no wire format, and must not import an adapter or the hub (revocations reach live streams
//! through the [`Revoker`] the server wires in).

pub mod apps;
mod error;
pub mod operator;
pub mod profile;
pub mod revocation;
pub mod scram;
pub mod secrets;
mod sessions;
pub mod throttle;
pub mod users;

use std::sync::{Arc, OnceLock};

pub use error::IdentityError;
pub use revocation::{ChatAuth, Revocation, Revoker};
pub use sessions::{Credentials, ScramFailure, ScramLogin, SessionRequest};

use crate::config::{PasswordConfig, SessionConfig};
use crate::db::DbPool;
use crate::model::{Application, Clock, Session, User};

/// The identity service: cheap to clone, shared by every adapter.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    pool: DbPool,
    clock: Clock,
    sessions: SessionConfig,
    passwords: PasswordConfig,
    /// Wrong passwords per address and per (account, address), for every adapter.
    throttle: throttle::Throttle,
    /// Closes the live streams a committed change revokes (the hub), once wired.
    revoker: OnceLock<Arc<dyn Revoker>>,
    hashing: secrets::HashGate,
}

/// Who made a request: the application, the session, and the user when it is a user session.
#[derive(Clone, Debug)]
pub struct Caller {
    pub app: Application,
    pub session: Session,
    pub user: Option<User>,
    pub token: String,
}

impl Caller {
    /// The session's user, or `Forbidden. Need user.` for an application session.
    pub fn user(&self) -> Result<&User, IdentityError> {
        self.user.as_ref().ok_or(IdentityError::NeedUser)
    }
}

impl Identity {
    pub fn new(
        pool: DbPool,
        clock: Clock,
        sessions: SessionConfig,
        passwords: PasswordConfig,
    ) -> Self {
        let throttle = throttle::Throttle::new(
            passwords.failures_per_minute,
            passwords.throttle_max_keys,
            clock.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                pool,
                clock,
                sessions,
                hashing: secrets::HashGate::new(passwords.max_pending_hashes),
                passwords,
                throttle,
                revoker: OnceLock::new(),
            }),
        }
    }

    /// Wires the live-stream side of revocation (the hub); set once at start-up.
    pub fn set_revoker(&self, revoker: Arc<dyn Revoker>) {
        let _ = self.inner.revoker.set(revoker);
    }

    /// Tells the live side what a committed change revoked.
    fn revoke(&self, r: Revocation) {
        if let Some(v) = self.inner.revoker.get() {
            v.revoke(&r);
        }
    }

    fn throttle(&self) -> &throttle::Throttle {
        &self.inner.throttle
    }

    fn pool(&self) -> &DbPool {
        &self.inner.pool
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// What is stored for a new password (argon2 hash and SCRAM verifiers), within
    /// `passwords.max_pending_hashes`.
    async fn hash_password(
        &self,
        password: String,
    ) -> Result<crate::db::users::PasswordSecrets, IdentityError> {
        secrets::password_secrets(password, &self.inner.passwords, &self.inner.hashing).await
    }

    /// Checks a password, within `passwords.max_pending_hashes`.
    async fn verify_password(&self, password: String, hash: String) -> Result<bool, IdentityError> {
        secrets::verify_password(password, hash, &self.inner.hashing).await
    }
}
