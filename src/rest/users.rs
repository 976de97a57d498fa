//! `/users`: sign-up, look-ups, `GET /users/v2`, and self-only update and delete.

use serde_json::{json, Value};

use super::extract::{raw_filters, sort, value_list};
use super::{ApiError, Ctx, Params, Reply};
use crate::identity::users::users_query;
use crate::model::account::{UserField, UserFields, UserFilter, UserFilterValue};
use crate::model::filter::FilterOp;
use crate::model::time::iso;
use crate::model::{User, UserId};

/// A user as every endpoint shows it.
pub fn user_json(u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "full_name": u.full_name,
        "email": u.email,
        "login": u.login,
        "phone": u.phone,
        "website": u.website,
        "created_at": iso(u.created_at),
        "updated_at": iso(u.updated_at),
        "last_request_at": u.last_request_at.map(iso),
        "external_user_id": u.external_user_id,
        "external_id": u.external_id,
        "facebook_id": u.facebook_id,
        "twitter_id": u.twitter_id,
        "custom_data": u.custom_data,
        "blob_id": u.blob_id,
        "avatar": u.avatar,
        "user_tags": if u.tags.is_empty() { Value::Null } else { Value::from(u.tags.join(",")) },
        "timezone": u.timezone,
    });
    if let (true, Value::Object(m)) = (u.is_guest, &mut v) {
        m.insert("is_guest".into(), Value::Bool(true));
    }
    v
}

fn wrapped(u: &User) -> Value {
    json!({ "user": user_json(u) })
}

/// The writable fields under `user[...]`.
fn user_fields(p: &Params) -> Result<UserFields, ApiError> {
    let s = |k: &str| p.nullable_str(&["user", k]);
    let i = |k: &str| p.nullable_i64(&["user", k]);
    let tags = match p
        .get(&["user", "tag_list"])
        .or_else(|| p.get(&["user", "user_tags"]))
    {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(v) => Some(
            value_list(v).ok_or_else(|| ApiError::invalid("tag_list", "must be a list of tags"))?,
        ),
    };
    let timezone = match i("timezone")? {
        Some(Some(tz)) => {
            Some(Some(i32::try_from(tz).map_err(|_| {
                ApiError::invalid("timezone", "is out of range")
            })?))
        }
        Some(None) => Some(None),
        None => None,
    };
    Ok(UserFields {
        login: s("login")?,
        email: s("email")?,
        full_name: s("full_name")?,
        phone: s("phone")?,
        website: s("website")?,
        custom_data: s("custom_data")?,
        external_user_id: i("external_user_id")?,
        external_id: s("external_id")?,
        facebook_id: s("facebook_id")?,
        twitter_id: s("twitter_id")?,
        tags,
        avatar: s("avatar")?,
        blob_id: i("blob_id")?,
        timezone,
    })
}

fn user_id(ctx: &Ctx) -> Result<UserId, ApiError> {
    ctx.arg(0)
        .parse()
        .map_err(|_| ApiError::not_found("User not found"))
}

/// `POST /users`: sign-up, with a session token (`CB-Token`) or the application key (`CB-AuthKey`).
pub async fn signup(ctx: Ctx) -> Result<Reply, ApiError> {
    let id = &ctx.state.identity;
    let app = match (ctx.header("cb-token"), ctx.header("cb-authkey")) {
        (Some(_), _) => ctx.caller().await?.app,
        (None, Some(key)) => id.app_by_auth_key(key).await?,
        (None, None) => return Err(crate::identity::IdentityError::TokenRequired.into()),
    };
    let fields = user_fields(&ctx.params)?;
    let password = ctx.params.str(&["user", "password"])?;
    let user = id.signup(app.id, fields, password).await?;
    Ok(Reply::created(wrapped(&user)))
}

/// `GET /users/{id}`.
pub async fn get(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let user = ctx.state.identity.user(c.app.id, user_id(&ctx)?).await?;
    Ok(Reply::ok(wrapped(&user)))
}

/// `PUT /users/{id}`: yourself only; `user[password]` needs `user[old_password]`.
pub async fn update(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let fields = user_fields(&ctx.params)?;
    let password = ctx
        .params
        .str(&["user", "password"])?
        .filter(|s| !s.is_empty());
    let old = ctx.params.str(&["user", "old_password"])?;
    let user = ctx
        .state
        .identity
        .update_user(&c, user_id(&ctx)?, fields, password, old, ctx.peer.ip())
        .await?;
    Ok(Reply::ok(wrapped(&user)))
}

/// `DELETE /users/{id}`: yourself only; ends your sessions. Your files' records go with the
/// account; their stored objects, queued in the same transaction, are removed right after
/// (in the background: the answer does not wait for the store; what fails is swept later).
pub async fn delete(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    ctx.state.identity.delete_user(&c, user_id(&ctx)?).await?;
    let files = ctx.state.files.clone();
    tokio::spawn(async move {
        if let Err(e) = files.sweep_deletions().await {
            tracing::warn!(error = %e, "a deleted user's files stay queued for removal");
        }
    });
    Ok(Reply::empty())
}

const PAGING: [&str; 6] = ["limit", "offset", "skip", "sort_asc", "sort_desc", "page"];

/// `GET /users/v2`: filters (`field=v`, `field[in]=a,b`, `field[in][]=a`, `field[start_with]`,
/// `field[nin]`, dates with `gt lt gte lte`), `sort_asc|sort_desc`, `offset`, `limit` (≤ 100).
pub async fn list_v2(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let p = &ctx.params;
    let skip: Vec<&str> = PAGING.iter().copied().chain(["per_page"]).collect();
    let raw = raw_filters(p, &skip, &[])?;
    let offset = p.i64(&["offset"])?.or(p.i64(&["skip"])?);
    let q = users_query(raw, sort(p)?, p.i64(&["limit"])?, offset)?;
    let (users, total) = ctx.state.identity.search_users(c.app.id, &q).await?;
    Ok(Reply::ok(json!({
        "limit": q.limit,
        "skip": q.offset,
        "total_entries": total,
        "items": users.iter().map(user_json).collect::<Vec<_>>(),
    })))
}

async fn one_by(ctx: Ctx, param: &str, field: UserField) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let value = ctx
        .params
        .str(&[param])?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid(param, "is required"))?;
    let user = ctx
        .state
        .identity
        .user_by(c.app.id, field, UserFilterValue::Texts(vec![value]))
        .await?;
    Ok(Reply::ok(wrapped(&user)))
}

/// `GET /users/by_login?login=`.
pub async fn by_login(ctx: Ctx) -> Result<Reply, ApiError> {
    one_by(ctx, "login", UserField::Login).await
}

/// `GET /users/by_email?email=`.
pub async fn by_email(ctx: Ctx) -> Result<Reply, ApiError> {
    one_by(ctx, "email", UserField::Email).await
}

/// `GET /users/by_facebook_id?facebook_id=`.
pub async fn by_facebook_id(ctx: Ctx) -> Result<Reply, ApiError> {
    one_by(ctx, "facebook_id", UserField::FacebookId).await
}

/// `GET /users/by_twitter_id?twitter_id=`.
pub async fn by_twitter_id(ctx: Ctx) -> Result<Reply, ApiError> {
    one_by(ctx, "twitter_id", UserField::TwitterId).await
}

/// `GET /users/external/{id}`: by the integer `external_user_id`, else by `external_id`.
pub async fn by_external(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let id = ctx.arg(0).to_string();
    let identity = &ctx.state.identity;
    if let Ok(n) = id.parse::<i64>() {
        if let Ok(u) = identity
            .user_by(
                c.app.id,
                UserField::ExternalUserId,
                UserFilterValue::Ints(vec![n]),
            )
            .await
        {
            return Ok(Reply::ok(wrapped(&u)));
        }
    }
    let user = identity
        .user_by(
            c.app.id,
            UserField::ExternalId,
            UserFilterValue::Texts(vec![id]),
        )
        .await?;
    Ok(Reply::ok(wrapped(&user)))
}

async fn page_by(ctx: Ctx, filter: UserFilter) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let (page, per_page) = (ctx.params.i64(&["page"])?, ctx.params.i64(&["per_page"])?);
    let (users, total, page, per_page) = ctx
        .state
        .identity
        .users_page(c.app.id, filter, page, per_page)
        .await?;
    Ok(Reply::ok(json!({
        "current_page": page,
        "per_page": per_page,
        "total_entries": total,
        "items": users.iter().map(wrapped).collect::<Vec<_>>(),
    })))
}

/// `GET /users/by_full_name?full_name=`: names containing the text, without case; paged.
pub async fn by_full_name(ctx: Ctx) -> Result<Reply, ApiError> {
    let name = ctx
        .params
        .str(&["full_name"])?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("full_name", "is required"))?;
    let filter = UserFilter {
        field: UserField::FullName,
        op: FilterOp::Ctn,
        value: UserFilterValue::Texts(vec![name]),
    };
    page_by(ctx, filter).await
}

/// `GET /users/by_tags?tags=a,b`: users with any of the tags; paged.
pub async fn by_tags(ctx: Ctx) -> Result<Reply, ApiError> {
    let tags = ctx
        .params
        .list(&["tags"])?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid("tags", "is required"))?;
    let filter = UserFilter {
        field: UserField::Tags,
        op: FilterOp::In,
        value: UserFilterValue::Texts(tags),
    };
    page_by(ctx, filter).await
}
