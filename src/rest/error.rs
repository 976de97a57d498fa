//! The one REST error shape (`{"errors": …}` as the hosted API answers) and the one mapping from
//! domain errors to statuses.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::chat::ChatError;
use crate::identity::IdentityError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    /// Seconds for a `Retry-After` header (429 and 503 answers to limits).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// `{"errors": {"<field>": ["<message>"]}}`
    pub fn field(status: StatusCode, field: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({ "errors": { field: [message] } }),
            retry_after: None,
        }
    }

    /// 422 naming the field.
    pub fn invalid(field: &str, message: &str) -> Self {
        Self::field(StatusCode::UNPROCESSABLE_ENTITY, field, message)
    }

    /// `{"errors": {"base": ["<message>"]}}`
    pub fn base(status: StatusCode, message: &str) -> Self {
        Self::field(status, "base", message)
    }

    /// `{"errors": ["<message>"]}`: the bare form the hosted API uses for token and signature errors.
    pub fn bare(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: json!({ "errors": [message] }),
            retry_after: None,
        }
    }

    pub fn not_found(message: &str) -> Self {
        Self::base(StatusCode::NOT_FOUND, message)
    }

    /// 429 with `Retry-After`: a rate limit, named in `{"errors": {"base": [...]}}`.
    pub fn too_many(message: &str, retry_after_secs: u64) -> Self {
        Self::base(StatusCode::TOO_MANY_REQUESTS, message).retry_after(retry_after_secs)
    }

    /// 503 with `Retry-After`: the server is at a bound of work or connections.
    pub fn busy(message: &str, retry_after_secs: u64) -> Self {
        Self::base(StatusCode::SERVICE_UNAVAILABLE, message).retry_after(retry_after_secs)
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn internal() -> Self {
        Self::base(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Forbidden(m) => Self::base(StatusCode::FORBIDDEN, &m),
            ChatError::NotFound(m) => Self::not_found(&m),
            ChatError::Invalid { field, message } => Self::invalid(&field, &message),
            ChatError::Identity(e) => e.into(),
            ChatError::Db(e) => IdentityError::Db(e).into(),
            ChatError::Unavailable(m) => Self::busy(&m, 1),
            ChatError::RateLimited {
                message,
                retry_after_secs,
            } => Self::too_many(&message, retry_after_secs),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        use IdentityError as E;
        match e {
            E::TokenRequired => Self::bare(StatusCode::UNAUTHORIZED, "Token is required"),
            E::SessionNotFound => {
                Self::base(StatusCode::UNAUTHORIZED, "Required session does not exist")
            }
            E::UnexpectedSignature => {
                Self::bare(StatusCode::UNPROCESSABLE_ENTITY, "Unexpected signature")
            }
            E::Unauthorized => Self::base(StatusCode::UNAUTHORIZED, "Unauthorized"),
            E::NeedUser => Self::base(StatusCode::FORBIDDEN, "Forbidden. Need user."),
            E::Forbidden(m) => Self::base(StatusCode::FORBIDDEN, &m),
            E::Banned => Self::base(StatusCode::FORBIDDEN, "This account is banned"),
            E::NotFound(m) => Self::not_found(&m),
            E::Invalid { field, message } => Self::invalid(&field, &message),
            E::Throttled { retry_after_secs } => Self {
                retry_after: Some(retry_after_secs),
                ..Self::base(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "Too many failed login attempts; try again in {retry_after_secs} seconds"
                    ),
                )
            },
            E::Busy(m) => Self::busy(&m, 1),
            E::Db(e) => {
                tracing::error!(error = %e, "database error");
                // Nothing was stored; the database may be restarting (its supervisor does so
                // within seconds): the client retries.
                Self::busy("The database is unavailable, try again", 1)
            }
            E::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Self::internal()
            }
        }
    }
}

impl From<crate::files::FilesError> for ApiError {
    fn from(e: crate::files::FilesError) -> Self {
        use crate::files::FilesError as E;
        match e {
            E::NotFound(m) => Self::not_found(&m),
            E::Forbidden(m) => Self::base(StatusCode::FORBIDDEN, &m),
            E::Invalid { field, message } => Self::invalid(&field, &message),
            E::TooLarge { max } => Self::invalid("size", &format!("must be at most {max} bytes")),
            // Not a rate: the caller frees a place by completing or deleting an upload.
            E::Quota(m) => Self::too_many(&m, 60),
            E::Chat(e) => e.into(),
            E::Db(e) => IdentityError::Db(e).into(),
            E::Store(e) => {
                tracing::error!(error = %e, "blob store");
                Self::busy("The file store is unavailable, try again", 1)
            }
        }
    }
}
