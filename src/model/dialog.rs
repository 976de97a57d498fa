//! Dialogs as plain data: the four types, the stored dialog, and the per-caller view
//! (unread count, last message status). Rules live in `chat/rules.rs`, SQL in `db/dialogs.rs`.

use serde_json::Value;
use time::OffsetDateTime;

use super::{AppId, ObjectId, UserId};

/// Dialog types as the REST spec numbers them (the SDK's enum swaps 1 and 4; the spec wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DialogType {
    Broadcast = 1,
    Group = 2,
    Private = 3,
    Public = 4,
}

impl DialogType {
    pub fn from_i64(n: i64) -> Option<Self> {
        Some(match n {
            1 => Self::Broadcast,
            2 => Self::Group,
            3 => Self::Private,
            4 => Self::Public,
            _ => return None,
        })
    }

    pub fn code(self) -> i16 {
        self as i16
    }

    /// Types that are XMPP rooms (`xmpp_room_jid`); private dialogs are 1:1 chats.
    pub fn is_room(self) -> bool {
        self != Self::Private
    }

    /// Types whose members are listed in `occupants_ids` (public ones count subscribers instead).
    pub fn lists_occupants(self) -> bool {
        matches!(self, Self::Group | Self::Private)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dialog {
    pub id: ObjectId,
    pub application_id: AppId,
    pub kind: DialogType,
    pub owner: UserId,
    pub name: Option<String>,
    pub photo: Option<String>,
    pub description: Option<String>,
    pub occupants: Vec<i64>,
    pub admins: Vec<i64>,
    pub pinned: Vec<String>,
    pub occupants_count: i32,
    pub extensions: Option<Value>,
    pub data: Option<Value>,
    pub allow_preview: bool,
    pub last_message_id: Option<String>,
    pub last_message: Option<String>,
    pub last_message_user_id: Option<i64>,
    pub last_message_date_sent: Option<i64>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// `{application_id}_{dialog_id}@muc.{domain}` for rooms; `None` for private dialogs.
pub fn room_jid(d: &Dialog, domain: &str) -> Option<String> {
    d.kind
        .is_room()
        .then(|| format!("{}_{}@muc.{domain}", d.application_id, d.id))
}

impl Dialog {
    pub fn is_owner(&self, u: UserId) -> bool {
        self.owner == u
    }

    pub fn is_admin(&self, u: UserId) -> bool {
        self.admins.contains(&u.0)
    }

    pub fn has_occupant(&self, u: UserId) -> bool {
        self.occupants.contains(&u.0)
    }
}

/// Status of the caller's own last message: `sent`, `delivered` or `read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

/// A dialog as one user sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct DialogView {
    pub dialog: Dialog,
    /// `None` where the caller has no inbox entry (e.g. previewing a public dialog).
    pub unread: Option<i32>,
    pub last_message_status: Option<MessageStatus>,
}

/// Fields `GET /chat/Dialog` filters and sorts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogField {
    Id,
    Type,
    Name,
    LastMessageDateSent,
    CreatedAt,
    UpdatedAt,
    OccupantsIds,
    Extension(String),
}

/// A typed filter value.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterValue {
    Ints(Vec<i64>),
    Texts(Vec<String>),
    Dates(Vec<OffsetDateTime>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct DialogFilter {
    pub field: DialogField,
    pub op: super::filter::FilterOp,
    pub value: FilterValue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DialogQuery {
    pub filters: Vec<DialogFilter>,
    pub sort: (DialogField, super::filter::SortDir),
    pub limit: i64,
    pub skip: i64,
}
