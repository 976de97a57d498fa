//! `/chat/Dialog`: list, create, update, delete, clear history, subscribe, admins,
//! notifications, occupants. Each handler parses, calls one `chat::` function, renders.

use serde::Serialize;
use serde_json::{json, Value};

use super::extract::{raw_filters, sort};
use super::json::Iso;
use super::users::user_json;
use super::{ApiError, Ctx, Params, Reply};
use crate::chat::dialogs::{DeleteReport, DialogUpdate, NewDialog};
use crate::model::dialog::DialogView;
use crate::model::{Dialog, DialogType, ObjectId, UserId};

/// A dialog as the API shows it to the caller, serialized straight from the view. Fields are
/// declared in alphabetical order: that is the order a `serde_json::Value` map (a `BTreeMap`)
/// writes, so answers stay byte-for-byte what they were when this was built as a `Value`.
#[derive(Serialize)]
pub struct DialogJson<'a> {
    #[serde(rename = "_id")]
    id: &'a ObjectId,
    admins_ids: &'a [i64],
    created_at: Iso,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    description: &'a Option<String>,
    extensions: &'a Option<Value>,
    last_message: &'a Option<String>,
    last_message_date_sent: Option<i64>,
    last_message_id: &'a Option<String>,
    last_message_status: Option<&'static str>,
    last_message_user_id: Option<i64>,
    name: &'a Option<String>,
    /// Only public dialogs count their subscribers.
    #[serde(skip_serializing_if = "Option::is_none")]
    occupants_count: Option<i32>,
    occupants_ids: &'a [i64],
    permissions: Permissions,
    photo: &'a Option<String>,
    pinned_messages_ids: &'a [String],
    #[serde(rename = "type")]
    kind: i16,
    unread_messages_count: Option<i32>,
    updated_at: Iso,
    user_id: UserId,
    xmpp_room_jid: Option<RoomJid<'a>>,
}

#[derive(Serialize)]
struct Permissions {
    allow_preview: bool,
}

/// `{application_id}_{dialog_id}@muc.{domain}`, written into the output without an
/// intermediate `String`.
struct RoomJid<'a> {
    dialog: &'a Dialog,
    domain: &'a str,
}

impl Serialize for RoomJid<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.dialog;
        s.collect_str(&format_args!(
            "{}_{}@muc.{}",
            d.application_id, d.id, self.domain
        ))
    }
}

impl<'a> DialogJson<'a> {
    pub fn new(v: &'a DialogView, domain: &'a str) -> Self {
        let d = &v.dialog;
        DialogJson {
            id: &d.id,
            admins_ids: &d.admins,
            created_at: Iso(d.created_at),
            data: d.data.as_ref(),
            description: &d.description,
            extensions: &d.extensions,
            last_message: &d.last_message,
            last_message_date_sent: d.last_message_date_sent,
            last_message_id: &d.last_message_id,
            last_message_status: v.last_message_status.map(|s| s.as_str()),
            last_message_user_id: d.last_message_user_id,
            name: &d.name,
            occupants_count: (d.kind == DialogType::Public).then_some(d.occupants_count),
            occupants_ids: if d.kind.lists_occupants() {
                &d.occupants
            } else {
                &[]
            },
            permissions: Permissions {
                allow_preview: d.allow_preview,
            },
            photo: &d.photo,
            pinned_messages_ids: &d.pinned,
            kind: d.kind.code(),
            unread_messages_count: v.unread,
            updated_at: Iso(d.updated_at),
            user_id: d.owner,
            xmpp_room_jid: d.kind.is_room().then_some(RoomJid { dialog: d, domain }),
        }
    }
}

/// A dialog as a `Value`, for answers that embed it in a larger `json!` document.
pub fn dialog_json(v: &DialogView, domain: &str) -> Value {
    serde_json::to_value(DialogJson::new(v, domain)).unwrap_or(Value::Null)
}

/// The `GET /chat/Dialog` page, in `Value`-map key order like every other answer.
#[derive(Serialize)]
struct DialogPage<'a> {
    items: Vec<DialogJson<'a>>,
    limit: i64,
    skip: i64,
    total_entries: i64,
}

fn ids(p: &Params, path: &[&str]) -> Result<Vec<i64>, ApiError> {
    let field = super::extract::field_name(path);
    p.list(path)?
        .unwrap_or_default()
        .iter()
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| ApiError::invalid(&field, &format!("`{s}` is not a user id")))
        })
        .collect()
}

const NOT_FILTERS: [&str; 5] = ["limit", "skip", "count", "sort_asc", "sort_desc"];

/// `GET /chat/Dialog`: the caller's dialogs with unread counts; `count=1` answers only the count.
pub async fn list(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    let p = &ctx.params;
    let count_only = p.flag(&["count"])?;
    let (items, total, q) = ctx
        .state
        .chat
        .list_dialogs(
            &c,
            raw_filters(p, &NOT_FILTERS, &["extensions"])?,
            sort(p)?,
            p.i64(&["limit"])?,
            p.i64(&["skip"])?,
            count_only,
        )
        .await?;
    if count_only {
        return Ok(Reply::ok(json!({ "items_count": total })));
    }
    let domain = &ctx.state.config.domain;
    Ok(Reply::ok_from(&DialogPage {
        items: items.iter().map(|v| DialogJson::new(v, domain)).collect(),
        limit: q.limit,
        skip: q.skip,
        total_entries: total,
    }))
}

fn object(p: &Params, key: &str) -> Result<Option<Value>, ApiError> {
    match p.get(&[key]) {
        None => Ok(None),
        Some(v @ (Value::Object(_) | Value::Null)) => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::invalid(key, "must be an object")),
    }
}

/// `POST /chat/Dialog`: creates a dialog (the creator joins it); a private dialog with the same
/// user is returned again instead of duplicated.
pub async fn create(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    let p = &ctx.params;
    let kind = match p.i64(&["type"])? {
        Some(t) => Some(
            DialogType::from_i64(t)
                .ok_or_else(|| ApiError::invalid("type", "must be 1, 2, 3 or 4"))?,
        ),
        None => None,
    };
    let new = NewDialog {
        kind,
        name: p.str(&["name"])?,
        photo: p.str(&["photo"])?,
        description: p.str(&["description"])?,
        occupants: ids(p, &["occupants_ids"])?,
        admins: ids(p, &["admins_ids"])?,
        extensions: object(p, "extensions")?,
        data: object(p, "data")?,
        allow_preview: p.flag(&["permissions", "allow_preview"])?,
    };
    let (view, created) = ctx.state.chat.create_dialog(&c, new).await?;
    let body = dialog_json(&view, &ctx.state.config.domain);
    Ok(if created {
        Reply::created(body)
    } else {
        Reply::ok(body)
    })
}

fn strings(p: &Params, path: &[&str]) -> Result<Vec<String>, ApiError> {
    Ok(p.list(path)?.unwrap_or_default())
}

fn update_from(p: &Params) -> Result<DialogUpdate, ApiError> {
    Ok(DialogUpdate {
        name: p.str(&["name"])?,
        photo: p.nullable_str(&["photo"])?,
        description: p.nullable_str(&["description"])?,
        push_occupants: ids(p, &["push_all", "occupants_ids"])?,
        pull_occupants: ids(p, &["pull_all", "occupants_ids"])?,
        push_pinned: strings(p, &["push_all", "pinned_messages_ids"])?,
        pull_pinned: strings(p, &["pull_all", "pinned_messages_ids"])?,
        push_admins: ids(p, &["push_all", "admins_ids"])?,
        pull_admins: ids(p, &["pull_all", "admins_ids"])?,
        extensions: match p.get(&["extensions"]) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(v) => Some(Some(v.clone())),
        },
        data: match p.get(&["data"]) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(v) => Some(Some(v.clone())),
        },
        allow_preview: if p.has(&["permissions", "allow_preview"]) {
            Some(p.flag(&["permissions", "allow_preview"])?)
        } else {
            None
        },
    })
}

/// `PUT /chat/Dialog/{id}`: info, `push_all`/`pull_all` of occupants, pins and admins; every
/// change is checked against the caller's role before anything is written.
pub async fn update(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    let view = ctx
        .state
        .chat
        .update_dialog(&c, ctx.arg(0), update_from(&ctx.params)?)
        .await?;
    Ok(Reply::ok(dialog_json(&view, &ctx.state.config.domain)))
}

/// `PUT /chat/Dialog/{id}/admins`: `push_all`/`pull_all` of `admins_ids` (owner only).
pub async fn admins(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    let p = &ctx.params;
    let u = DialogUpdate {
        push_admins: ids(p, &["push_all", "admins_ids"])?,
        pull_admins: ids(p, &["pull_all", "admins_ids"])?,
        ..Default::default()
    };
    let view = ctx.state.chat.update_dialog(&c, ctx.arg(0), u).await?;
    Ok(Reply::ok(dialog_json(&view, &ctx.state.config.domain)))
}

fn report_json(r: &DeleteReport) -> Value {
    json!({
        "SuccessfullyDeleted": { "ids": r.deleted },
        "NotFound": { "ids": r.not_found },
        "WrongPermissions": { "ids": r.wrong_permissions },
    })
}

/// Ids from a path segment `a,b,c` (spaces tolerated).
pub fn path_ids(seg: &str) -> Vec<String> {
    seg.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `DELETE /chat/Dialog/{id}[,{id}…]`: for the caller, or for everyone with `force=1` (owner).
/// One id answers 200/403/404; several answer the three id lists.
pub async fn delete(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    let ids = path_ids(ctx.arg(0));
    let force = ctx.params.flag(&["force"])?;
    let report = ctx.state.chat.delete_dialogs(&c, &ids, force).await?;
    if ids.len() == 1 {
        if !report.not_found.is_empty() {
            let id = ids.first().map(String::as_str).unwrap_or_default();
            return Err(ApiError::not_found(&format!("Dialog {id} not found")));
        }
        if !report.wrong_permissions.is_empty() {
            let why = if force {
                "only the owner may delete the dialog for everyone"
            } else {
                "you may not delete this dialog"
            };
            return Err(ApiError::base(
                hyper::StatusCode::FORBIDDEN,
                &format!("Forbidden: {why}"),
            ));
        }
        return Ok(Reply::empty());
    }
    Ok(Reply::ok(report_json(&report)))
}

/// `DELETE /chat/Dialog/clearHistory/{id}`: hides every message so far, for the caller only.
pub async fn clear_history(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    ctx.state.chat.clear_history(&c, ctx.arg(0)).await?;
    Ok(Reply::empty())
}

/// `POST /chat/Dialog/{id}/subscribe`: joins a public dialog.
pub async fn subscribe(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    let view = ctx.state.chat.subscribe(&c, ctx.arg(0)).await?;
    Ok(Reply::ok(dialog_json(&view, &ctx.state.config.domain)))
}

/// `DELETE /chat/Dialog/{id}/subscribe`: leaves a public dialog.
pub async fn unsubscribe(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    ctx.state.chat.unsubscribe(&c, ctx.arg(0)).await?;
    Ok(Reply::empty())
}

fn notifications_json(on: bool) -> Value {
    json!({ "notifications": { "enabled": i32::from(on) } })
}

/// `GET /chat/Dialog/{id}/notifications`.
pub async fn get_notifications(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    let on = ctx.state.chat.notifications(&c, ctx.arg(0), None).await?;
    Ok(Reply::ok(notifications_json(on)))
}

/// `PUT /chat/Dialog/{id}/notifications` with `enabled` 0 or 1.
pub async fn set_notifications(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    if !ctx.params.has(&["enabled"]) {
        return Err(ApiError::invalid("enabled", "is required (0 or 1)"));
    }
    let on = ctx.params.flag(&["enabled"])?;
    let on = ctx
        .state
        .chat
        .notifications(&c, ctx.arg(0), Some(on))
        .await?;
    Ok(Reply::ok(notifications_json(on)))
}

/// `GET /chat/Dialog/{id}/occupants`: members as user objects (`limit`, `skip`).
pub async fn occupants(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.actor().await?;
    let p = &ctx.params;
    let users = ctx
        .state
        .chat
        .occupants(&c, ctx.arg(0), p.i64(&["limit"])?, p.i64(&["skip"])?)
        .await?;
    Ok(Reply::ok(
        json!({ "items": users.iter().map(user_json).collect::<Vec<_>>() }),
    ))
}
