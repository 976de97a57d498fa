//! Applications, users and sessions as plain data. Their wire shapes live in `rest/`, their
//! rules in `identity/`, their SQL in `db/`.

use time::OffsetDateTime;

use super::{AppId, SessionId, UserId};

#[derive(Clone, Debug, PartialEq)]
pub struct Application {
    pub id: AppId,
    pub name: String,
    pub auth_key: String,
    pub auth_secret: String,
    pub require_signature: bool,
    pub session_creates_users: bool,
    /// Dialog `extensions` fields this application allows (others are dropped).
    pub dialog_extensions: Vec<String>,
}

/// A user as every API shows it; the password hash never leaves `db/` and `identity/`.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    pub application_id: AppId,
    pub login: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub custom_data: Option<String>,
    pub external_user_id: Option<i64>,
    pub external_id: Option<String>,
    pub facebook_id: Option<String>,
    pub twitter_id: Option<String>,
    pub tags: Vec<String>,
    pub avatar: Option<String>,
    pub blob_id: Option<i64>,
    pub timezone: Option<i32>,
    pub is_guest: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_request_at: Option<OffsetDateTime>,
}

/// An operator's ban of a user: no session opens for them while it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Ban {
    pub at: OffsetDateTime,
    /// The operator's note; shown to operators, never to the user.
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub application_id: AppId,
    pub user_id: Option<UserId>,
    pub nonce: Option<i64>,
    pub ts: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Writable user fields: `None` = not given, `Some(None)` = cleared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserFields {
    pub login: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub full_name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub website: Option<Option<String>>,
    pub custom_data: Option<Option<String>>,
    pub external_user_id: Option<Option<i64>>,
    pub external_id: Option<Option<String>>,
    pub facebook_id: Option<Option<String>>,
    pub twitter_id: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub avatar: Option<Option<String>>,
    pub blob_id: Option<Option<i64>>,
    pub timezone: Option<Option<i32>>,
}

/// User attributes that `GET /users/v2` filters and sorts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserField {
    Id,
    /// Deprecated integer external id; looked up by `GET /users/external/{id}` only.
    ExternalUserId,
    Login,
    Email,
    FullName,
    Phone,
    ExternalId,
    FacebookId,
    TwitterId,
    Tags,
    LastRequestAt,
    CreatedAt,
    UpdatedAt,
}

impl UserField {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "login" => Self::Login,
            "email" => Self::Email,
            "full_name" => Self::FullName,
            "phone" => Self::Phone,
            "external_id" => Self::ExternalId,
            "facebook_id" => Self::FacebookId,
            "twitter_id" => Self::TwitterId,
            "user_tags" => Self::Tags,
            "last_request_at" => Self::LastRequestAt,
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            _ => return None,
        })
    }

    /// Fields that may make up a query on their own ("stand-alone" in the hosted docs).
    pub fn stand_alone(self) -> bool {
        !matches!(
            self,
            Self::LastRequestAt | Self::CreatedAt | Self::UpdatedAt
        )
    }

    pub fn is_date(self) -> bool {
        !self.stand_alone()
    }
}

/// The value side of one user filter, already typed for its field.
#[derive(Clone, Debug, PartialEq)]
pub enum UserFilterValue {
    Ints(Vec<i64>),
    Texts(Vec<String>),
    Date(OffsetDateTime),
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserFilter {
    pub field: UserField,
    pub op: super::filter::FilterOp,
    pub value: UserFilterValue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserQuery {
    pub filters: Vec<UserFilter>,
    pub sort: Option<(UserField, super::filter::SortDir)>,
    pub limit: i64,
    pub offset: i64,
}
