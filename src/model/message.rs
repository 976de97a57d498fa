//! Messages as plain data, and the fields `GET /chat/Message` filters on. Rules live in
//! `chat/`, SQL in `db/messages.rs`, the wire shape in `rest/messages.rs`.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::ObjectId;

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: ObjectId,
    pub dialog_id: ObjectId,
    pub seq: i64,
    pub sender_id: i64,
    pub recipient_id: i64,
    pub body: Option<String>,
    /// Array of attachment objects.
    pub attachments: Value,
    /// The sender's custom parameters, shown as top-level fields.
    pub custom: Map<String, Value>,
    pub markable: bool,
    pub date_sent: i64,
    pub read_ids: Vec<i64>,
    pub delivered_ids: Vec<i64>,
    pub views_count: i32,
    pub edited_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A message as one user sees it: with their own reactions and everyone's totals.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageView {
    pub message: Message,
    pub own_reactions: Vec<String>,
    pub reaction_totals: Map<String, Value>,
}

/// Fields `GET /chat/Message` filters and sorts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageField {
    Id,
    Body,
    DateSent,
    SenderId,
    RecipientId,
    AttachmentsType,
    UpdatedAt,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MessageFilter {
    pub field: MessageField,
    pub op: super::filter::FilterOp,
    pub value: super::dialog::FilterValue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MessageQuery {
    pub filters: Vec<MessageFilter>,
    pub sort: super::filter::SortDir,
    pub limit: i64,
    pub skip: i64,
}
