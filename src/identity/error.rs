//! The identity layer's one error type; `rest/error.rs` maps it to HTTP once.

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("Token is required")]
    TokenRequired,
    #[error("Required session does not exist")]
    SessionNotFound,
    #[error("Unexpected signature")]
    UnexpectedSignature,
    #[error("Unauthorized")]
    Unauthorized,
    #[error("Forbidden. Need user.")]
    NeedUser,
    #[error("{0}")]
    Forbidden(String),
    /// An operator banned the account (`parley user ban`): no session, no XMPP stream.
    #[error("This account is banned")]
    Banned,
    #[error("{0}")]
    NotFound(String),
    /// A request field is missing or wrong; `field` is named in the answer.
    #[error("{field} {message}")]
    Invalid { field: String, message: String },
    /// Too many wrong passwords from this address (or for this account from it).
    #[error("Too many failed login attempts; try again in {retry_after_secs} seconds")]
    Throttled { retry_after_secs: u64 },
    /// The server is at a configured bound of work in flight (password hashing); retry soon.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<super::throttle::Throttled> for IdentityError {
    fn from(t: super::throttle::Throttled) -> Self {
        Self::Throttled {
            retry_after_secs: t.retry_after_secs,
        }
    }
}

impl IdentityError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
