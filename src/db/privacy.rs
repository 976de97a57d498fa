//! The `xmpp_privacy_lists`, `xmpp_privacy_items` and `xmpp_blocklist` tables: each user's
//! XEP-0016 privacy lists (named, ordered items, at most one default) and XEP-0191 block list.
//! Typed values in and out; which rule wins is decided in `crate::privacy`, not here.

use std::collections::BTreeMap;

use super::{DbError, DbPool};
use crate::model::{AppId, UserId};

/// What an item matches (XEP-0016 `type` and `value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// A JID, normalised (`user@domain/resource`, `user@domain`, `domain/resource` or `domain`).
    Jid(String),
    /// Contacts in this roster group.
    Group(String),
    /// Contacts with this roster subscription (`none`, `to`, `from`, `both`).
    Subscription(String),
    /// No `type`: the fall-through item, matches everyone.
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// The stanza kinds an item applies to, as a bitmask. `ALL` (no child elements) also covers
/// the owner's outbound messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kinds(pub u8);

impl Kinds {
    pub const ALL: Kinds = Kinds(0);
    pub const MESSAGE: u8 = 1;
    pub const PRESENCE_IN: u8 = 2;
    pub const PRESENCE_OUT: u8 = 4;
    pub const IQ: u8 = 8;
}

/// One privacy-list item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyItem {
    pub order: i64,
    pub matcher: Matcher,
    pub action: Action,
    pub kinds: Kinds,
}

/// Everything stored about one user's privacy, lists keyed by name with items in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub lists: BTreeMap<String, Vec<PrivacyItem>>,
    pub default: Option<String>,
    pub blocked: Vec<String>,
}

fn item_from_row(r: &tokio_postgres::Row) -> Option<PrivacyItem> {
    let value: Option<String> = r.get(3);
    let matcher = match (r.get::<_, Option<String>>(2).as_deref(), value) {
        (None, _) => Matcher::Any,
        (Some("jid"), Some(v)) => Matcher::Jid(v),
        (Some("group"), Some(v)) => Matcher::Group(v),
        (Some("subscription"), Some(v)) => Matcher::Subscription(v),
        _ => return None,
    };
    let action = match r.get::<_, String>(4).as_str() {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        _ => return None,
    };
    let kinds = u8::try_from(r.get::<_, i16>(5)).ok()?;
    Some(PrivacyItem {
        order: r.get(1),
        matcher,
        action,
        kinds: Kinds(kinds),
    })
}

/// Reads all of a user's lists, the default's name and the block list.
pub async fn load(pool: &DbPool, app: AppId, user: UserId) -> Result<Stored, DbError> {
    let c = pool.get().await?;
    let mut out = Stored::default();
    // Three statements pipelined on one connection: one round trip.
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&app.0, &user.0];
    let (lists, items, blocked) = tokio::try_join!(
        c.query(
            "SELECT name, is_default FROM xmpp_privacy_lists
             WHERE application_id = $1 AND user_id = $2",
            &key,
        ),
        c.query(
            "SELECT list_name, ord, item_type, value, action, kinds FROM xmpp_privacy_items
             WHERE application_id = $1 AND user_id = $2 ORDER BY list_name, ord",
            &key,
        ),
        c.query(
            "SELECT jid FROM xmpp_blocklist WHERE application_id = $1 AND user_id = $2
             ORDER BY jid",
            &key,
        ),
    )?;
    for r in lists {
        let name: String = r.get(0);
        if r.get::<_, bool>(1) {
            out.default = Some(name.clone());
        }
        out.lists.insert(name, Vec::new());
    }
    for r in items {
        let name: String = r.get(0);
        match (item_from_row(&r), out.lists.get_mut(&name)) {
            (Some(item), Some(items)) => items.push(item),
            _ => tracing::warn!(list = %name, "skipping an unreadable privacy item"),
        }
    }
    out.blocked = blocked.iter().map(|r| r.get(0)).collect();
    Ok(out)
}

/// Creates or replaces the list `name` with `items` (in one transaction).
pub async fn put_list(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    name: &str,
    items: &[PrivacyItem],
) -> Result<(), DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    tx.execute(
        "INSERT INTO xmpp_privacy_lists (application_id, user_id, name) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&app.0, &user.0, &name],
    )
    .await?;
    tx.execute(
        "DELETE FROM xmpp_privacy_items
         WHERE application_id = $1 AND user_id = $2 AND list_name = $3",
        &[&app.0, &user.0, &name],
    )
    .await?;
    let insert = tx
        .prepare(
            "INSERT INTO xmpp_privacy_items
               (application_id, user_id, list_name, ord, item_type, value, action, kinds)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    for i in items {
        let (t, v) = match &i.matcher {
            Matcher::Jid(v) => (Some("jid"), Some(v.as_str())),
            Matcher::Group(v) => (Some("group"), Some(v.as_str())),
            Matcher::Subscription(v) => (Some("subscription"), Some(v.as_str())),
            Matcher::Any => (None, None),
        };
        let action = match i.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        };
        let kinds = i16::from(i.kinds.0);
        tx.execute(
            &insert,
            &[&app.0, &user.0, &name, &i.order, &t, &v, &action, &kinds],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes the list `name`; returns whether it existed.
pub async fn delete_list(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    name: &str,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let n = c
        .execute(
            "DELETE FROM xmpp_privacy_lists WHERE application_id = $1 AND user_id = $2 AND name = $3",
            &[&app.0, &user.0, &name],
        )
        .await?;
    Ok(n > 0)
}

/// Makes `name` the default list (`None`: no default); returns false if `name` does not exist
/// (nothing changes then).
pub async fn set_default(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    name: Option<&str>,
) -> Result<bool, DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    tx.execute(
        "UPDATE xmpp_privacy_lists SET is_default = false
         WHERE application_id = $1 AND user_id = $2 AND is_default",
        &[&app.0, &user.0],
    )
    .await?;
    if let Some(name) = name {
        let n = tx
            .execute(
                "UPDATE xmpp_privacy_lists SET is_default = true
                 WHERE application_id = $1 AND user_id = $2 AND name = $3",
                &[&app.0, &user.0, &name],
            )
            .await?;
        if n == 0 {
            return Ok(false); // rolled back on drop
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// Adds JIDs to the block list; returns those that were not there before.
pub async fn block(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    jids: &[String],
) -> Result<Vec<String>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "INSERT INTO xmpp_blocklist (application_id, user_id, jid)
             SELECT $1, $2, j FROM unnest($3::text[]) AS j
             ON CONFLICT DO NOTHING RETURNING jid",
            &[&app.0, &user.0, &jids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Removes JIDs from the block list (`None`: all of them); returns those removed.
pub async fn unblock(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    jids: Option<&[String]>,
) -> Result<Vec<String>, DbError> {
    let c = pool.get().await?;
    let rows = match jids {
        Some(jids) => {
            c.query(
                "DELETE FROM xmpp_blocklist
                 WHERE application_id = $1 AND user_id = $2 AND jid = ANY($3) RETURNING jid",
                &[&app.0, &user.0, &jids],
            )
            .await?
        }
        None => {
            c.query(
                "DELETE FROM xmpp_blocklist WHERE application_id = $1 AND user_id = $2
                 RETURNING jid",
                &[&app.0, &user.0],
            )
            .await?
        }
    };
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
