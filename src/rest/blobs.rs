//! `/blobs`: the storage API as the hosted service answers it (shapes from
//! `docs/protocol/connectycube-api.md` §7, the misspelt `dowload_url` included). Each handler
//! parses, calls one `files::` function, renders; the bytes go to the store's URLs.

use hyper::StatusCode;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{ApiError, Ctx, Reply};
use crate::chat::Actor;
use crate::files::WithUrl;
use crate::model::blob::Blob;
use crate::model::time::iso;

/// `GET /blobs` page size when none is asked (the hosted default).
const DEFAULT_PER_PAGE: i64 = 10;

fn blob_json(b: &Blob) -> Value {
    json!({
        "id": b.id,
        "uid": b.uid,
        "name": b.name,
        "content_type": b.content_type,
        "size": b.size,
        "public": b.public,
        "app_id": b.app.0,
        "account_id": b.app.0,
        "user_id": b.owner.0,
        "blob_status": if b.completed() { "complete" } else { "new" },
        "set_completed_at": b.completed_at.map(iso),
        "created_at": iso(b.created_at),
        "updated_at": iso(b.updated_at),
    })
}

fn access_json(b: &Blob, kind: &str, expires: OffsetDateTime) -> Value {
    json!({
        "id": b.id,
        "blob_id": b.id,
        "expires": iso(expires),
        "object_access_type": kind,
    })
}

/// `POST /blobs` `{"blob": {"content_type", "name", "public"}}`: 201 with the blob and its
/// upload form in `blob_object_access.params` (the target URL with the form fields in its
/// query, as the SDKs parse it).
pub async fn create(ctx: Ctx) -> Result<Reply, ApiError> {
    let actor = ctx.actor().await?;
    let p = &ctx.params;
    let name = p
        .str(&["blob", "name"])?
        .ok_or_else(|| ApiError::invalid("name", "is required"))?;
    let content_type = p
        .str(&["blob", "content_type"])?
        .unwrap_or_else(|| "application/octet-stream".into());
    let public = p.has(&["blob", "public"]) && p.flag(&["blob", "public"])?;
    let WithUrl { blob, url, expires } = ctx
        .state
        .files
        .create(&actor, &name, &content_type, public)
        .await?;
    let mut out = blob_json(&blob);
    let mut access = access_json(&blob, "Write", expires);
    access["params"] = Value::String(url);
    out["blob_object_access"] = access;
    Ok(Reply::created(json!({ "blob": out })))
}

/// `PUT /blobs/{id}/complete` (`{"blob": {"size": n}}` or `{"size": n}`): the upload is done.
/// The size recorded is the stored object's.
pub async fn complete(ctx: Ctx) -> Result<Reply, ApiError> {
    let actor = ctx.actor().await?;
    ctx.state.files.complete(&actor, ctx.arg(0)).await?;
    Ok(Reply::empty())
}

/// `GET /blobs/{id}`: the record. `GET /blobs/{uid}` (not a number): the file itself, as
/// `/blobs/{uid}/download` (the SDK's `privateUrl`/`publicUrl`).
pub async fn get(ctx: Ctx) -> Result<Reply, ApiError> {
    let arg = ctx.arg(0);
    if arg.parse::<i64>().is_err() {
        return download(ctx).await;
    }
    let actor = ctx.actor().await?;
    let blob = ctx.state.files.get(&actor, arg).await?;
    Ok(Reply::ok(json!({ "blob": blob_json(&blob) })))
}

/// `GET /blobs?page=&per_page=`: the caller's blobs, newest first, items wrapped.
pub async fn list(ctx: Ctx) -> Result<Reply, ApiError> {
    let actor = ctx.actor().await?;
    let p = &ctx.params;
    let page = p.i64(&["page"])?.unwrap_or(1);
    let per_page = p.i64(&["per_page"])?.unwrap_or(DEFAULT_PER_PAGE);
    let (items, total) = ctx.state.files.list(&actor, page, per_page).await?;
    Ok(Reply::ok(json!({
        "current_page": page,
        "per_page": per_page,
        "total_entries": total,
        "items": items.iter().map(|b| json!({ "blob": blob_json(b) })).collect::<Vec<_>>(),
    })))
}

/// `PUT /blobs/{id}` (deprecated in the hosted API) `{"blob": {"name", "content_type",
/// "new"}}` (each optional, also accepted at the top level): the owner renames the blob or
/// changes its content type; with `new=1` the upload starts again and the answer carries a new
/// upload form in `blob_object_access.params`, as `POST /blobs`.
pub async fn update(ctx: Ctx) -> Result<Reply, ApiError> {
    let actor = ctx.actor().await?;
    let p = &ctx.params;
    let either = |key: &str| -> Result<Option<String>, ApiError> {
        Ok(match p.str(&["blob", key])? {
            Some(v) => Some(v),
            None => p.str(&[key])?,
        })
    };
    let (name, content_type) = (either("name")?, either("content_type")?);
    let restart = p.flag(&["blob", "new"])? || p.flag(&["new"])?;
    let (blob, form) = ctx
        .state
        .files
        .update(
            &actor,
            ctx.arg(0),
            name.as_deref(),
            content_type.as_deref(),
            restart,
        )
        .await?;
    let mut out = blob_json(&blob);
    if let Some(WithUrl { url, expires, .. }) = form {
        let mut access = access_json(&blob, "Write", expires);
        access["params"] = Value::String(url);
        out["blob_object_access"] = access;
    }
    Ok(Reply::ok(json!({ "blob": out })))
}

/// `DELETE /blobs/{id}`: the owner deletes the record and the bytes.
pub async fn delete(ctx: Ctx) -> Result<Reply, ApiError> {
    let actor = ctx.actor().await?;
    ctx.state.files.delete(&actor, ctx.arg(0)).await?;
    Ok(Reply::empty())
}

/// The reader of a download: the session of `CB-Token` or of a `token` query parameter (the
/// SDK's `privateUrl`, for `<img src>`), else nobody (public blobs only).
async fn reader(ctx: &Ctx) -> Result<Option<Actor>, ApiError> {
    let token = match ctx.header("cb-token") {
        Some(t) => Some(t.to_owned()),
        None => ctx.params.str(&["token"])?,
    };
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let caller = ctx.state.identity.authenticate(Some(&token)).await?;
    Ok(Some(Actor::try_from(&caller)?))
}

/// `GET /blobs/{uid}/download` (and `/download/{name}`, an XEP-0363 GET URL): 301 to a
/// short-lived URL of the bytes. Public blobs need no token; private ones are the owner's and
/// those who may read a message carrying them.
pub async fn download(ctx: Ctx) -> Result<Reply, ApiError> {
    let reader = reader(&ctx).await?;
    let w = ctx
        .state
        .files
        .download(reader.as_ref(), ctx.arg(0))
        .await?;
    Ok(Reply {
        status: StatusCode::MOVED_PERMANENTLY,
        body: b"{}".to_vec(),
        location: Some(w.url),
    })
}

/// `GET /blobs/{uid}/object?download_url=1`: the blob with a download URL in
/// `blob_object_access.dowload_url` (the hosted spelling; `download_url` too, as the SDK's
/// types spell it).
pub async fn object(ctx: Ctx) -> Result<Reply, ApiError> {
    let reader = reader(&ctx).await?;
    let WithUrl { blob, url, expires } = ctx
        .state
        .files
        .download(reader.as_ref(), ctx.arg(0))
        .await?;
    let mut out = blob_json(&blob);
    let mut access = access_json(&blob, "Read", expires);
    access["dowload_url"] = Value::String(url.clone());
    access["download_url"] = Value::String(url);
    out["blob_object_access"] = access;
    Ok(Reply::ok(json!({ "blob": out })))
}
