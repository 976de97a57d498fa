//! The `users` table: insert, look-ups, patches and the typed `GET /users/v2` query.

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Cached, DbError, DbPool};
use crate::model::account::Ban;
use crate::model::account::{UserField, UserFields, UserFilterValue, UserQuery};
use crate::model::filter::FilterOp;
use crate::model::{AppId, SessionId, User, UserId};

const COLUMNS: &str = "id, application_id, login, email, full_name, phone, website, custom_data, \
     external_user_id, external_id, facebook_id, twitter_id, tags, avatar, blob_id, timezone, is_guest, \
     created_at, updated_at, last_request_at";

fn from_row(r: &Row) -> User {
    user_at(r, 0)
}

/// The user whose columns start at `o` (other repositories join users in).
pub(super) fn user_at(r: &Row, o: usize) -> User {
    User {
        id: UserId(r.get(o)),
        application_id: AppId(r.get(o + 1)),
        login: r.get(o + 2),
        email: r.get(o + 3),
        full_name: r.get(o + 4),
        phone: r.get(o + 5),
        website: r.get(o + 6),
        custom_data: r.get(o + 7),
        external_user_id: r.get(o + 8),
        external_id: r.get(o + 9),
        facebook_id: r.get(o + 10),
        twitter_id: r.get(o + 11),
        tags: r.get(o + 12),
        avatar: r.get(o + 13),
        blob_id: r.get(o + 14),
        timezone: r.get(o + 15),
        is_guest: r.get(o + 16),
        created_at: r.get(o + 17),
        updated_at: r.get(o + 18),
        last_request_at: r.get(o + 19),
    }
}

/// The user columns with a table alias, for joins (`u.id, u.application_id, …`).
pub(super) fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Maps a unique-index violation to the user field it protects.
pub fn conflicting_field(err: &DbError) -> Option<&'static str> {
    Some(match err.constraint()? {
        "users_app_login" => "login",
        "users_app_email" => "email",
        "users_app_external_id" => "external_id",
        "users_app_external_user_id" => "external_user_id",
        _ => return None,
    })
}

use super::filter::{like_escape, refs, Param};

/// The SQL column and the boxed value for each given field, in one place for insert and update.
fn field_values(f: &UserFields) -> Vec<(&'static str, Param)> {
    let mut out: Vec<(&'static str, Param)> = Vec::new();
    macro_rules! put {
        ($($field:ident => $col:literal),*) => {$(
            if let Some(v) = &f.$field { out.push(($col, Box::new(v.clone()))); }
        )*};
    }
    put!(login => "login", email => "email", full_name => "full_name", phone => "phone",
         website => "website", custom_data => "custom_data", external_user_id => "external_user_id",
         external_id => "external_id", facebook_id => "facebook_id", twitter_id => "twitter_id",
         tags => "tags", avatar => "avatar", blob_id => "blob_id", timezone => "timezone");
    out
}

/// What is stored for a password: the argon2 hash (the REST check) and the SCRAM verifiers
/// (`identity::scram`, the XMPP SCRAM logins), always written together.
#[derive(Clone, Debug)]
pub struct PasswordSecrets {
    pub hash: String,
    pub scram_sha1: String,
    pub scram_sha256: String,
}

/// A password change as [`update`] stores it: the new secrets, and in the same transaction
/// every other session of the user ended (all but `keep`, the one that asked) and running
/// servers told (`notice`, see [`super::notify`]), so the password never changes without the
/// old sessions going and the streams resting on them closing.
pub struct PasswordChange<'a> {
    pub secrets: &'a PasswordSecrets,
    pub keep: SessionId,
    pub notice: &'a str,
}

pub async fn insert(
    pool: &DbPool,
    app: AppId,
    fields: &UserFields,
    secrets: &PasswordSecrets,
    now: OffsetDateTime,
) -> Result<User, DbError> {
    let mut cols = vec![
        "application_id",
        "password_hash",
        "scram_sha1",
        "scram_sha256",
        "created_at",
        "updated_at",
    ];
    let mut params: Vec<Param> = vec![
        Box::new(app.0),
        Box::new(secrets.hash.clone()),
        Box::new(secrets.scram_sha1.clone()),
        Box::new(secrets.scram_sha256.clone()),
        Box::new(now),
        Box::new(now),
    ];
    for (col, p) in field_values(fields) {
        cols.push(col);
        params.push(p);
    }
    let placeholders: Vec<String> = (1..=params.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO users ({}) VALUES ({}) RETURNING {COLUMNS}",
        cols.join(", "),
        placeholders.join(", ")
    );
    let c = pool.get().await?;
    // The columns depend on the fields given: not cached.
    let row = c.dq1(&sql, &refs(&params)).await?;
    Ok(from_row(&row))
}

/// Applies the given fields (and a new password's secrets, if any); `None` when the user is gone.
pub async fn update(
    pool: &DbPool,
    app: AppId,
    id: UserId,
    fields: &UserFields,
    password: Option<&PasswordChange<'_>>,
    now: OffsetDateTime,
) -> Result<Option<User>, DbError> {
    let mut sets = vec!["updated_at = $3".to_string()];
    let mut params: Vec<Param> = vec![Box::new(app.0), Box::new(id.0), Box::new(now)];
    let mut assign = |col: &str, p: Param, params: &mut Vec<Param>| {
        params.push(p);
        sets.push(format!("{col} = ${}", params.len()));
    };
    for (col, p) in field_values(fields) {
        assign(col, p, &mut params);
    }
    if let Some(PasswordChange { secrets: p, .. }) = password {
        assign("password_hash", Box::new(p.hash.clone()), &mut params);
        assign("scram_sha1", Box::new(p.scram_sha1.clone()), &mut params);
        assign(
            "scram_sha256",
            Box::new(p.scram_sha256.clone()),
            &mut params,
        );
    }
    let sql = format!(
        "UPDATE users SET {} WHERE application_id = $1 AND id = $2 RETURNING {COLUMNS}",
        sets.join(", ")
    );
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    // The columns depend on the fields given: not cached.
    let user = tx.dq01(&sql, &refs(&params)).await?.as_ref().map(from_row);
    if let (Some(change), Some(_)) = (password, &user) {
        tx.x(
            "DELETE FROM sessions WHERE user_id = $1 AND id <> $2",
            &[&id.0, &change.keep.0],
        )
        .await?;
        super::notify::send(&tx, change.notice).await?;
    }
    tx.commit().await?;
    Ok(user)
}

/// Deletes a user and everything that is theirs alone, in one transaction: sessions, inbox
/// rows (`dialog_members`), offline stanzas, their roster and their entries in other users'
/// rosters (matched by the JID local part `local`, `{id}-{app}`), privacy lists (items
/// cascade), block list, last activity, files (their stored objects queued for removal).
/// Their messages and reactions, and their id in dialogs' occupants, stay: they are the other
/// participants' record. Running servers are told with `notice` (see [`super::notify`]) when
/// it commits. False when there was no such user.
pub async fn delete(
    pool: &DbPool,
    app: AppId,
    id: UserId,
    local: &str,
    notice: &str,
) -> Result<bool, DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let gone = tx
        .x(
            "DELETE FROM users WHERE application_id = $1 AND id = $2",
            &[&app.0, &id.0],
        )
        .await?
        > 0;
    if !gone {
        return Ok(false);
    }
    let (a, u) = (&app.0, &id.0);
    tx.x("DELETE FROM sessions WHERE user_id = $1", &[u])
        .await?;
    tx.x(
        "DELETE FROM dialog_members m USING dialogs d
         WHERE m.user_id = $2 AND d.id = m.dialog_id AND d.application_id = $1",
        &[a, u],
    )
    .await?;
    for sql in [
        "DELETE FROM xmpp_offline WHERE application_id = $1 AND user_id = $2",
        "DELETE FROM xmpp_roster WHERE application_id = $1 AND user_id = $2",
        "DELETE FROM xmpp_privacy_lists WHERE application_id = $1 AND user_id = $2",
        "DELETE FROM xmpp_blocklist WHERE application_id = $1 AND user_id = $2",
        "DELETE FROM xmpp_last_activity WHERE application_id = $1 AND user_id = $2",
        // Their PEP nodes (the items go with them).
        "DELETE FROM pep_nodes WHERE application_id = $1 AND user_id = $2",
        // Their files: the records now, the stored objects queued for the files service's
        // sweep (a store that is down delays their removal, never loses it).
        "WITH gone AS (DELETE FROM blobs WHERE application_id = $1 AND user_id = $2 RETURNING uid)
         INSERT INTO blob_deletions (uid, queued_at) SELECT uid, now() FROM gone
         ON CONFLICT (uid) DO NOTHING",
    ] {
        tx.x(sql, &[a, u]).await?;
    }
    tx.x(
        "DELETE FROM xmpp_roster WHERE application_id = $1 AND split_part(contact, '@', 1) = $2",
        &[a, &local],
    )
    .await?;
    super::notify::send(&tx, notice).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn get(pool: &DbPool, app: AppId, id: UserId) -> Result<Option<User>, DbError> {
    let c = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM users WHERE application_id = $1 AND id = $2");
    Ok(c.q01(&sql, &[&app.0, &id.0]).await?.as_ref().map(from_row))
}

/// The users of `app` among `ids`, in id order (inside a transaction or on a pooled client).
pub async fn by_ids(
    c: &impl Cached,
    app: AppId,
    ids: &[i64],
) -> Result<Vec<User>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE application_id = $1 AND id = ANY($2) ORDER BY id"
    );
    Ok(c.q(&sql, &[&app.0, &ids])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// Ids among `ids` that are not users of `app`.
pub async fn missing_ids(
    c: &impl Cached,
    app: AppId,
    ids: &[i64],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let rows = c
        .q(
            "SELECT x FROM unnest($2::BIGINT[]) AS x
             WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.application_id = $1 AND u.id = x)",
            &[&app.0, &ids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The user and password hash for a login or email (compared without case).
pub async fn credentials(
    pool: &DbPool,
    app: AppId,
    by_email: bool,
    value: &str,
) -> Result<Option<(User, String)>, DbError> {
    let col = if by_email { "email" } else { "login" };
    let sql = format!(
        "SELECT {COLUMNS}, password_hash FROM users WHERE application_id = $1 AND lower({col}) = lower($2)"
    );
    let c = pool.get().await?;
    Ok(c.q01(&sql, &[&app.0, &value])
        .await?
        .map(|r| (from_row(&r), r.get(20))))
}

/// The password hash of a user, for the XMPP password check and password changes.
pub async fn password_hash(
    pool: &DbPool,
    app: AppId,
    id: UserId,
) -> Result<Option<String>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            "SELECT password_hash FROM users WHERE application_id = $1 AND id = $2",
            &[&app.0, &id.0],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// A user's stored SCRAM verifier for one mechanism (`sha256` or SHA-1); `None` when there is no
/// such user or no verifier (a password set before SCRAM credentials existed).
pub async fn scram(
    pool: &DbPool,
    app: AppId,
    id: UserId,
    sha256: bool,
) -> Result<Option<String>, DbError> {
    let sql = if sha256 {
        "SELECT scram_sha256 FROM users WHERE application_id = $1 AND id = $2"
    } else {
        "SELECT scram_sha1 FROM users WHERE application_id = $1 AND id = $2"
    };
    let c = pool.get().await?;
    Ok(c.q01(sql, &[&app.0, &id.0])
        .await?
        .and_then(|r| r.get::<_, Option<String>>(0)))
}

/// Whether a user lacks a SCRAM verifier (their password was set before SCRAM existed).
pub async fn scram_missing(pool: &DbPool, app: AppId, id: UserId) -> Result<bool, DbError> {
    let c = pool.get().await?;
    Ok(c.q01(
        "SELECT 1 FROM users WHERE application_id = $1 AND id = $2 \
         AND (scram_sha1 IS NULL OR scram_sha256 IS NULL)",
        &[&app.0, &id.0],
    )
    .await?
    .is_some())
}

/// Stores SCRAM verifiers derived from a password just checked against `checked_hash`, only if
/// that is still the password (a change in between wins) and they are still missing.
pub async fn set_missing_scram(
    pool: &DbPool,
    app: AppId,
    id: UserId,
    checked_hash: &str,
    scram_sha1: &str,
    scram_sha256: &str,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    Ok(c.x(
        "UPDATE users SET scram_sha1 = $4, scram_sha256 = $5 \
         WHERE application_id = $1 AND id = $2 AND password_hash = $3 \
         AND (scram_sha1 IS NULL OR scram_sha256 IS NULL)",
        &[&app.0, &id.0, &checked_hash, &scram_sha1, &scram_sha256],
    )
    .await?
        > 0)
}

pub async fn touch(pool: &DbPool, id: UserId, now: OffsetDateTime) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.x(
        "UPDATE users SET last_request_at = $2 WHERE id = $1",
        &[&id.0, &now],
    )
    .await?;
    Ok(())
}

fn column(f: UserField) -> &'static str {
    match f {
        UserField::Id => "id",
        UserField::ExternalUserId => "external_user_id",
        UserField::Login => "login",
        UserField::Email => "email",
        UserField::FullName => "full_name",
        UserField::Phone => "phone",
        UserField::ExternalId => "external_id",
        UserField::FacebookId => "facebook_id",
        UserField::TwitterId => "twitter_id",
        UserField::Tags => "tags",
        UserField::LastRequestAt => "last_request_at",
        UserField::CreatedAt => "created_at",
        UserField::UpdatedAt => "updated_at",
    }
}

/// Fields compared without case (their unique indexes are on `lower(...)`).
fn folds_case(f: UserField) -> bool {
    matches!(f, UserField::Login | UserField::Email | UserField::FullName)
}

fn like_prefix(s: &str) -> String {
    format!("{}%", like_escape(&s.to_lowercase()))
}

/// Runs a typed users query; returns the page and the total number of matches.
pub async fn search(pool: &DbPool, app: AppId, q: &UserQuery) -> Result<(Vec<User>, i64), DbError> {
    let mut conds = vec!["application_id = $1".to_string()];
    let mut params: Vec<Param> = vec![Box::new(app.0)];
    for f in &q.filters {
        let col = column(f.field);
        let lhs = if folds_case(f.field) {
            format!("lower({col})")
        } else {
            col.to_string()
        };
        let n = params.len() + 1;
        let cond = match (&f.value, f.op) {
            (UserFilterValue::Date(d), op) => {
                params.push(Box::new(*d));
                let cmp = match op {
                    FilterOp::Gt => ">",
                    FilterOp::Gte => ">=",
                    FilterOp::Lt => "<",
                    _ => "<=",
                };
                format!("{col} {cmp} ${n}")
            }
            (UserFilterValue::Ints(v), op) => {
                params.push(Box::new(v.clone()));
                match op {
                    FilterOp::Nin => format!("{col} <> ALL(${n})"),
                    _ => format!("{col} = ANY(${n})"),
                }
            }
            (UserFilterValue::Texts(v), _) if f.field == UserField::Tags => {
                params.push(Box::new(v.clone()));
                match f.op {
                    FilterOp::Nin => format!("NOT (tags && ${n})"),
                    _ => format!("tags && ${n}"),
                }
            }
            (UserFilterValue::Texts(v), FilterOp::Ctn) => {
                let needle = like_prefix(v.first().map(String::as_str).unwrap_or(""));
                params.push(Box::new(format!("%{needle}")));
                format!("lower({col}) LIKE ${n}")
            }
            (UserFilterValue::Texts(v), FilterOp::StartWith) => {
                params.push(Box::new(like_prefix(
                    v.first().map(String::as_str).unwrap_or(""),
                )));
                format!("lower({col}) LIKE ${n}")
            }
            (UserFilterValue::Texts(v), op) => {
                let v: Vec<String> = if folds_case(f.field) {
                    v.iter().map(|s| s.to_lowercase()).collect()
                } else {
                    v.clone()
                };
                params.push(Box::new(v));
                match op {
                    FilterOp::Nin => format!("({col} IS NULL OR {lhs} <> ALL(${n}))"),
                    _ => format!("{lhs} = ANY(${n})"),
                }
            }
        };
        conds.push(cond);
    }
    let filter = conds.join(" AND ");
    let order = match q.sort {
        Some((f, dir)) => format!("{} {} NULLS LAST, id {}", column(f), dir.sql(), dir.sql()),
        None => "id ASC".to_string(),
    };
    let c = pool.get().await?;
    // Shaped by the caller's filters: not cached.
    let total: i64 = c
        .dq1(
            &format!("SELECT count(*) FROM users WHERE {filter}"),
            &refs(&params),
        )
        .await?
        .get(0);
    let n = params.len();
    params.push(Box::new(q.limit));
    params.push(Box::new(q.offset));
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE {filter} ORDER BY {order} LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let rows = c.dq(&sql, &refs(&params)).await?;
    Ok((rows.iter().map(from_row).collect(), total))
}

fn ban_at(r: &Row, o: usize) -> Option<Ban> {
    r.get::<_, Option<OffsetDateTime>>(o).map(|at| Ban {
        at,
        reason: r.get(o + 1),
    })
}

/// A user's ban, if any: what the ban rule asks before a session opens.
pub async fn ban_of(pool: &DbPool, app: AppId, id: UserId) -> Result<Option<Ban>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            "SELECT banned_at, ban_reason FROM users WHERE application_id = $1 AND id = $2",
            &[&app.0, &id.0],
        )
        .await?;
    Ok(row.and_then(|r| ban_at(&r, 0)))
}

/// A user of any application, with their ban: operators name users by id alone (ids are
/// unique across applications).
pub async fn find_any(pool: &DbPool, id: UserId) -> Result<Option<(User, Option<Ban>)>, DbError> {
    let c = pool.get().await?;
    let sql = format!("SELECT {COLUMNS}, banned_at, ban_reason FROM users WHERE id = $1");
    Ok(c.q01(&sql, &[&id.0])
        .await?
        .map(|r| (from_row(&r), ban_at(&r, 20))))
}

/// One page of users in id order, of one application or of all, with their bans and the total.
pub async fn list_with_bans(
    pool: &DbPool,
    app: Option<AppId>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<(User, Option<Ban>)>, i64), DbError> {
    let c = pool.get().await?;
    let app = app.map(|a| a.0);
    let total: i64 = c
        .q1(
            "SELECT count(*) FROM users WHERE $1::BIGINT IS NULL OR application_id = $1",
            &[&app],
        )
        .await?
        .get(0);
    let sql = format!(
        "SELECT {COLUMNS}, banned_at, ban_reason FROM users
         WHERE $1::BIGINT IS NULL OR application_id = $1 ORDER BY id LIMIT $2 OFFSET $3"
    );
    let rows = c.q(&sql, &[&app, &limit, &offset]).await?;
    Ok((
        rows.iter().map(|r| (from_row(r), ban_at(r, 20))).collect(),
        total,
    ))
}

/// Bans a user (a second ban replaces the reason and keeps the first date), ends every session
/// of theirs and tells running servers (`notice`, see [`super::notify`]), in one transaction:
/// no session survives a committed ban, and no server hears of a ban that rolled back. False
/// when there is no such user.
pub async fn ban(
    pool: &DbPool,
    app: AppId,
    id: UserId,
    now: OffsetDateTime,
    reason: Option<&str>,
    notice: &str,
) -> Result<bool, DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let found = tx
        .x(
            "UPDATE users SET banned_at = COALESCE(banned_at, $3), ban_reason = $4
             WHERE application_id = $1 AND id = $2",
            &[&app.0, &id.0, &now, &reason],
        )
        .await?
        > 0;
    if !found {
        return Ok(false);
    }
    tx.x("DELETE FROM sessions WHERE user_id = $1", &[&id.0])
        .await?;
    super::notify::send(&tx, notice).await?;
    tx.commit().await?;
    Ok(true)
}

/// Lifts a ban; false when there is no such user.
pub async fn unban(pool: &DbPool, app: AppId, id: UserId) -> Result<bool, DbError> {
    let c = pool.get().await?;
    Ok(c.x(
        "UPDATE users SET banned_at = NULL, ban_reason = NULL WHERE application_id = $1 AND id = $2",
        &[&app.0, &id.0],
    )
    .await?
        > 0)
}
