//! `/subscriptions` and `/events`: the push API (ConnectyCube §5). Each handler parses, calls
//! one `push::` function, renders.

use serde_json::Value;

use super::{ApiError, Ctx, Reply};
use crate::push::{event_json, subscription_json, NewEvent, NewSubscription};

/// `POST /subscriptions`: `[{"subscription": …}]` (an array, as the hosted API answers).
pub async fn subscribe(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let p = &ctx.params;
    // The JS docs' example writes `notification_channels`; both spellings are accepted.
    let channel = match p.str(&["notification_channel"])? {
        Some(c) => Some(c),
        None => p.str(&["notification_channels"])?,
    };
    let new = NewSubscription {
        channel,
        environment: p.str(&["push_token", "environment"])?,
        platform: p.str(&["device", "platform"])?,
        udid: p.str(&["device", "udid"])?,
        bundle_identifier: p.str(&["push_token", "bundle_identifier"])?,
        token: p.str(&["push_token", "client_identification_sequence"])?,
        web_endpoint: p.str(&["push_token", "web_endpoint"])?,
        web_auth: p.str(&["push_token", "web_auth"])?,
        web_p256dh: p.str(&["push_token", "web_p256dh"])?,
    };
    let s = ctx.state.push.subscribe(&c, new).await?;
    Ok(Reply::created(Value::Array(vec![subscription_json(&s)])))
}

/// `GET /subscriptions`: the caller's devices, `[{"subscription": …}, …]`.
pub async fn list(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let subs = ctx.state.push.subscriptions(&c).await?;
    Ok(Reply::ok(Value::Array(
        subs.iter().map(subscription_json).collect(),
    )))
}

/// `DELETE /subscriptions/{id}`.
pub async fn unsubscribe(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    ctx.state.push.unsubscribe(&c, ctx.arg(0)).await?;
    Ok(Reply::empty())
}

/// `POST /events` with `event[…]`: `[{"event": …}]`.
pub async fn create_event(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let p = &ctx.params;
    let e = |k: &[&str]| -> Vec<String> {
        let mut path = vec!["event"];
        path.extend_from_slice(k);
        path.into_iter().map(str::to_owned).collect()
    };
    let get = |k: &[&str]| {
        let path = e(k);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        p.str(&path)
    };
    let list = |k: &[&str]| {
        let path = e(k);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        p.list(&path)
    };
    let new = NewEvent {
        notification_type: get(&["notification_type"])?,
        push_type: get(&["push_type"])?,
        environment: get(&["environment"])?,
        event_type: get(&["event_type"])?,
        message: get(&["message"])?,
        name: get(&["name"])?,
        user_ids: list(&["user", "ids"])?,
        external_ids: list(&["external_user", "ids"])?,
        tags_any: list(&["user", "tags", "any"])?,
        tags_all: list(&["user", "tags", "all"])?,
        tags_exclude: list(&["user", "tags", "exclude"])?,
    };
    let event = ctx.state.push.create_event(&c, new).await?;
    Ok(Reply::created(Value::Array(vec![event_json(&event)])))
}

/// `GET /events/{id}`: `{"event": …}`.
pub async fn get_event(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let event = ctx.state.push.event(&c, ctx.arg(0)).await?;
    Ok(Reply::ok(event_json(&event)))
}

/// `DELETE /events/{id}`: the event and its pushes not yet sent.
pub async fn delete_event(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    ctx.state.push.delete_event(&c, ctx.arg(0)).await?;
    Ok(Reply::empty())
}
