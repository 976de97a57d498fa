//! The chat layer's one error type; each adapter maps it once (`rest/error.rs` to a status and
//! body, `xmpp/stanza.rs` to an RFC 6120 condition).

use crate::db::DbError;
use crate::identity::IdentityError;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A role rule refused the action (the text names the rule).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{field} {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The store could not take the write now (a failed batch, a stopped writer); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The sender is over a rate limit (`chat.messages_per_sec_per_user`); retry after the wait.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
}

impl ChatError {
    /// This failure as told to each sender of a batch it voided.
    pub fn clone_as_unavailable(&self) -> Self {
        Self::Unavailable(self.to_string())
    }

    /// The store failed (not a refusal of the request): a transaction in progress is void.
    pub fn is_store_failure(&self) -> bool {
        matches!(self, Self::Db(_) | Self::Unavailable(_))
            || matches!(self, Self::Identity(IdentityError::Db(_)))
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<tokio_postgres::Error> for ChatError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(DbError::Pg(e))
    }
}

impl From<deadpool_postgres::PoolError> for ChatError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(DbError::Pool(e))
    }
}

impl From<super::rules::Denied> for ChatError {
    fn from(d: super::rules::Denied) -> Self {
        Self::Forbidden(d.0)
    }
}
