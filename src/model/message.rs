//! Messages as plain data, and the fields `GET /chat/Message` filters on. Rules live in
//! `chat/`, SQL in `db/messages.rs`, the wire shape in `rest/messages.rs`.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::ObjectId;

/// `<extraParams>` children the server writes (or reads as protocol): never a custom parameter.
/// The chat rules refuse a custom parameter with one of these names; the XMPP codec never reads
/// one as a custom parameter. One list for every layer, so it lives here with the message type.
pub const RESERVED: [&str; 5] = [
    "save_to_history",
    "dialog_id",
    "date_sent",
    "message_id",
    "attachment",
];

/// Names in a REST `POST /chat/Message` request that are never custom parameters, dropped
/// quietly: the message resource's own fields (request fields, and answer fields a custom
/// parameter would otherwise shadow), plus `save_to_history` and `dialog_id`, which SDK-shaped
/// requests carry and the server writes itself. It differs from [`RESERVED`] on purpose: the
/// other reserved names (`message_id`, `attachment`) are *refused* by the chat rules, so the
/// client learns its parameter was not kept; `date_sent` is a request field of both.
pub const REST_NOT_CUSTOM: [&str; 19] = [
    "_id",
    "chat_dialog_id",
    "recipient_id",
    "message",
    "attachments",
    "markable",
    "send_to_chat",
    "date_sent",
    "created_at",
    "updated_at",
    "sender_id",
    "read_ids",
    "delivered_ids",
    "views_count",
    "read",
    "reactions",
    "edited_at",
    "save_to_history",
    "dialog_id",
];

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
