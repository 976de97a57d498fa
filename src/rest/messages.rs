//! `/chat/Message` and `/chat/search`: history, unread, create, update, delete, system messages,
//! reactions and search. Each handler parses, calls one `chat::` function, renders.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::dialogs::{dialog_json, path_ids};
use super::extract::{raw_filters, sort};
use super::json::MessageJson;
use super::users::user_json;
use super::{ApiError, Ctx, Params, Reply};
use crate::chat::messages::{message_query, MessageUpdate, NewMessage};
use crate::model::message::{MessageView, REST_NOT_CUSTOM};

/// A message as the API shows it to `me`, as a `Value` for answers that embed it.
pub fn message_json(v: &MessageView, me: i64) -> Value {
    serde_json::to_value(MessageJson { view: v, me }).unwrap_or(Value::Null)
}

/// The `GET /chat/Message` page, in key order like every other answer.
#[derive(Serialize)]
struct MessagePage<'a> {
    items: Vec<MessageJson<'a>>,
    limit: i64,
    skip: i64,
}

const NOT_FILTERS: [&str; 8] = [
    "limit",
    "skip",
    "sort_asc",
    "sort_desc",
    "mark_as_read",
    "chat_dialog_id",
    "preview",
    "count",
];

/// `GET /chat/Message?chat_dialog_id=…`: one page of history (ascending by `date_sent` unless
/// sorted otherwise); marks what it returns as read unless `mark_as_read=0`.
pub async fn list(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    let p = &ctx.params;
    let q = message_query(
        raw_filters(p, &NOT_FILTERS, &["attachments"])?,
        sort(p)?,
        p.i64(&["limit"])?,
        p.i64(&["skip"])?,
    )?;
    let mark = !p.has(&["mark_as_read"]) || p.flag(&["mark_as_read"])?;
    let (skip, limit) = (q.skip, q.limit);
    let items = ctx
        .state
        .chat
        .list_messages(&a, p.str(&["chat_dialog_id"])?, q, mark)
        .await?;
    Ok(Reply::ok_from(&MessagePage {
        items: items
            .iter()
            .map(|v| MessageJson {
                view: v,
                me: a.user.0,
            })
            .collect(),
        limit,
        skip,
    }))
}

/// `GET /chat/Message/unread[?chat_dialog_ids=a,b]`: `{"total": n, "<dialog id>": n, …}`.
pub async fn unread(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    let ids = ctx.params.list(&["chat_dialog_ids"])?;
    let asked = ids.is_some();
    let (total, per) = ctx.state.chat.unread(&a, ids).await?;
    let mut out = Map::new();
    out.insert("total".into(), total.into());
    if asked {
        for (id, n) in per {
            out.insert(id, n.into());
        }
    }
    Ok(Reply::ok(Value::Object(out)))
}

fn attachments(p: &Params) -> Result<Vec<Value>, ApiError> {
    Ok(match p.get(&["attachments"]) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        // The seed's indexed form: {"0": {...}, "1": {...}}, in index order.
        Some(Value::Object(m)) => {
            let mut items: Vec<(i64, &Value)> = m
                .iter()
                .map(|(k, v)| (k.parse().unwrap_or(i64::MAX), v))
                .collect();
            items.sort_by_key(|(k, _)| *k);
            items.into_iter().map(|(_, v)| v.clone()).collect()
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "attachments",
                "must be a list of attachment objects",
            ))
        }
    })
}

/// `POST /chat/Message`: stores a message in a dialog (`chat_dialog_id`) or in the private
/// dialog with `recipient_id` (created on first message); custom parameters are kept.
/// `send_to_chat=1` also delivers it in real time (published as an event after commit).
pub async fn create(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    ctx.state.chat.admit_message(a.app.id, a.user)?;
    let p = &ctx.params;
    let custom: Map<String, Value> = p
        .root()
        .iter()
        .filter(|(k, _)| !REST_NOT_CUSTOM.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let new = NewMessage {
        dialog_id: p.str(&["chat_dialog_id"])?,
        recipient_id: p.i64(&["recipient_id"])?,
        id: None,
        body: p.str(&["message"])?,
        attachments: attachments(p)?,
        custom,
        markable: p.flag(&["markable"])?,
        send_to_chat: p.flag(&["send_to_chat"])?,
        date_sent: p.i64(&["date_sent"])?,
    };
    let view = ctx.state.chat.create_message(&a, new).await?;
    Ok(Reply::created(message_json(&view, a.user.0)))
}

async fn update_ids(ctx: Ctx, ids: Vec<String>) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    let p = &ctx.params;
    let u = MessageUpdate {
        dialog_id: p.str(&["chat_dialog_id"])?,
        read: p.flag(&["read"])?,
        delivered: p.flag(&["delivered"])?,
        body: p.str(&["message"])?,
    };
    ctx.state.chat.update_messages(&a, ids, u).await?;
    Ok(Reply::empty())
}

/// `PUT /chat/Message/{id}[,{id}…]`: `read=1`, `delivered=1` (idempotent) or a new `message`
/// body (the sender only).
pub async fn update(ctx: Ctx) -> Result<Reply, ApiError> {
    let ids = path_ids(ctx.arg(0));
    update_ids(ctx, ids).await
}

/// `PUT /chat/Message` with `chat_dialog_id`: marks every message of the dialog.
pub async fn update_all(ctx: Ctx) -> Result<Reply, ApiError> {
    update_ids(ctx, Vec::new()).await
}

/// `DELETE /chat/Message/{id}[,{id}…]`: for the caller, or for everyone with `force=1`.
pub async fn delete(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    let force = ctx.params.flag(&["force"])?;
    let r = ctx
        .state
        .chat
        .delete_messages(&a, &path_ids(ctx.arg(0)), force, None)
        .await?;
    Ok(Reply::ok(json!({
        "SuccessfullyDeleted": { "ids": r.deleted },
        "NotFound": { "ids": r.not_found },
        "WrongPermissions": { "ids": r.wrong_permissions },
    })))
}

/// `POST /chat/Message/system`: `recipientId` plus any parameters, delivered to the recipient
/// in real time, never stored.
pub async fn system(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    ctx.state.chat.admit_message(a.app.id, a.user)?;
    let recipient = ctx.params.i64(&["recipientId"])?;
    let params: Map<String, Value> = ctx
        .params
        .root()
        .iter()
        .filter(|(k, _)| *k != "recipientId")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let id = ctx
        .state
        .chat
        .system_message(&a, recipient, params.clone())
        .await?;
    Ok(Reply::ok(
        json!({ "messageId": id, "recipientId": recipient, "extensionParams": params }),
    ))
}

/// `PUT /chat/Message/{id}/reactions` with `add` and/or `remove`.
pub async fn react(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    let (add, remove) = (ctx.params.str(&["add"])?, ctx.params.str(&["remove"])?);
    ctx.state.chat.react(&a, ctx.arg(0), add, remove).await?;
    Ok(Reply::empty())
}

/// `GET /chat/Message/{id}/reactions`: `{"👍": [user ids], …}`.
pub async fn reactions(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    let list = ctx.state.chat.reactions(&a, ctx.arg(0)).await?;
    let map: Map<String, Value> = list.into_iter().map(|(r, ids)| (r, json!(ids))).collect();
    Ok(Reply::ok(Value::Object(map)))
}

/// `GET /chat/search?search_text=…`: `{"results": {"dialogs", "messages", "users"}}`.
pub async fn search(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    let p = &ctx.params;
    let r = ctx
        .state
        .chat
        .search(
            &a,
            p.str(&["search_text"])?,
            p.list(&["chat_dialog_ids"])?,
            p.str(&["start_date"])?,
            p.str(&["end_date"])?,
            p.i64(&["limit"])?,
        )
        .await?;
    let domain = &ctx.state.config.domain;
    Ok(Reply::ok(json!({ "results": {
        "dialogs": r.dialogs.iter().map(|d| dialog_json(d, domain)).collect::<Vec<_>>(),
        "messages": r.messages.iter().map(|m| message_json(m, a.user.0)).collect::<Vec<_>>(),
        "users": r.users.iter().map(user_json).collect::<Vec<_>>(),
    }})))
}
