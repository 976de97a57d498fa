//! The `pep_nodes` and `pep_items` tables: each user's XEP-0163 nodes (XEP-0060 subset) and
//! their items. The rules (who may read, what publish-options mean, the bounds' values) are
//! `crate::pubsub`'s; this file only stores, counts and trims within the bounds it is given.

use time::OffsetDateTime;

use super::{Cached, DbError, DbPool};
use crate::model::UserKey;

/// Who may read a node's items and get its notifications (XEP-0060 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessModel {
    /// Contacts with a presence subscription to the owner (`from` or `both`), and the owner.
    Presence,
    /// Anyone (of the owner's application).
    Open,
    /// Only the owner (Parley keeps no whitelist beyond the owner).
    Whitelist,
}

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Presence => "presence",
            AccessModel::Open => "open",
            AccessModel::Whitelist => "whitelist",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "presence" => Some(AccessModel::Presence),
            "open" => Some(AccessModel::Open),
            "whitelist" => Some(AccessModel::Whitelist),
            _ => None,
        }
    }
}

/// A node's configuration: the options Parley implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub access_model: AccessModel,
    /// Items kept; older ones are dropped at publish.
    pub max_items: i32,
    /// False: items are notified, never stored.
    pub persist_items: bool,
}

/// One stored item: its id and payload (XML as Parley's writer wrote it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub payload: String,
}

/// The bounds a publish checks, in the same transaction as the write.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Nodes one user may own.
    pub nodes_per_user: i64,
    /// Payload bytes one user may store over all their nodes.
    pub bytes_per_user: i64,
}

/// Why a publish stored nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The node did not exist and the user owns `nodes_per_user` nodes already.
    TooManyNodes,
    /// The item would take the user past `bytes_per_user`.
    TooManyBytes,
}

fn config_row(r: &tokio_postgres::Row) -> NodeConfig {
    let model: String = r.get(0);
    NodeConfig {
        // The column's CHECK admits only the three names.
        access_model: AccessModel::parse(&model).unwrap_or(AccessModel::Whitelist),
        max_items: r.get(1),
        persist_items: r.get(2),
    }
}

pub async fn node(
    pool: &DbPool,
    owner: UserKey,
    node: &str,
) -> Result<Option<NodeConfig>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            "SELECT access_model, max_items, persist_items FROM pep_nodes
             WHERE application_id = $1 AND user_id = $2 AND node = $3",
            &[&owner.app.0, &owner.user.0, &node],
        )
        .await?;
    Ok(row.as_ref().map(config_row))
}

/// Every node of `owner`, by name.
pub async fn nodes(pool: &DbPool, owner: UserKey) -> Result<Vec<(String, NodeConfig)>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            "SELECT access_model, max_items, persist_items, node FROM pep_nodes
             WHERE application_id = $1 AND user_id = $2 ORDER BY node",
            &[&owner.app.0, &owner.user.0],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(3), config_row(r))).collect())
}

/// Creates `node` with `create` when it does not exist (within `bounds.nodes_per_user`), then,
/// if the node persists items, stores the item (a known id is replaced and becomes the newest)
/// and drops what is beyond the node's `max_items`. Returns the node's configuration as it was
/// used (the existing one wins over `create` if another publish created it meanwhile).
pub async fn publish(
    pool: &DbPool,
    owner: UserKey,
    node: &str,
    create: &NodeConfig,
    bounds: Bounds,
    item: &Item,
    now: OffsetDateTime,
) -> Result<Result<NodeConfig, Refusal>, DbError> {
    let (app, user) = (&owner.app.0, &owner.user.0);
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let existing = tx
        .q01(
            "SELECT access_model, max_items, persist_items FROM pep_nodes
             WHERE application_id = $1 AND user_id = $2 AND node = $3 FOR UPDATE",
            &[app, user, &node],
        )
        .await?;
    let config = match existing {
        Some(r) => config_row(&r),
        None => {
            let created = tx
                .x(
                    "INSERT INTO pep_nodes (application_id, user_id, node, access_model, max_items,
                                            persist_items)
                     SELECT $1, $2, $3, $4, $5, $6
                     WHERE (SELECT count(*) FROM pep_nodes
                            WHERE application_id = $1 AND user_id = $2) < $7
                     ON CONFLICT DO NOTHING",
                    &[
                        app,
                        user,
                        &node,
                        &create.access_model.as_str(),
                        &create.max_items,
                        &create.persist_items,
                        &bounds.nodes_per_user,
                    ],
                )
                .await?;
            if created == 0 {
                // Either the user is at the bound, or a concurrent publish created the node.
                let row = tx
                    .q01(
                        "SELECT access_model, max_items, persist_items FROM pep_nodes
                         WHERE application_id = $1 AND user_id = $2 AND node = $3 FOR UPDATE",
                        &[app, user, &node],
                    )
                    .await?;
                match row {
                    Some(r) => config_row(&r),
                    None => return Ok(Err(Refusal::TooManyNodes)),
                }
            } else {
                *create
            }
        }
    };
    if config.persist_items {
        let size = i64::try_from(item.payload.len()).unwrap_or(i64::MAX);
        let stored = tx
            .x(
                "INSERT INTO pep_items (application_id, user_id, node, item_id, payload,
                                        published_at)
                 SELECT $1, $2, $3, $4, $5, $6
                 WHERE (SELECT coalesce(sum(octet_length(payload)), 0) FROM pep_items
                        WHERE application_id = $1 AND user_id = $2
                          AND NOT (node = $3 AND item_id = $4)) + $7 <= $8
                 ON CONFLICT (application_id, user_id, node, item_id) DO UPDATE
                 SET payload = EXCLUDED.payload, published_at = EXCLUDED.published_at,
                     seq = DEFAULT",
                &[
                    app,
                    user,
                    &node,
                    &item.id,
                    &item.payload,
                    &now,
                    &size,
                    &bounds.bytes_per_user,
                ],
            )
            .await?;
        if stored == 0 {
            // Rolled back: a node created for this item is not kept either.
            return Ok(Err(Refusal::TooManyBytes));
        }
        tx.x(
            "DELETE FROM pep_items
             WHERE application_id = $1 AND user_id = $2 AND node = $3
               AND seq < (SELECT min(seq) FROM (
                     SELECT seq FROM pep_items
                     WHERE application_id = $1 AND user_id = $2 AND node = $3
                     ORDER BY seq DESC LIMIT $4) AS kept)",
            &[app, user, &node, &i64::from(config.max_items)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(config))
}

/// Removes one item. `None`: no such node; `Some(false)`: no such item.
pub async fn retract(
    pool: &DbPool,
    owner: UserKey,
    node: &str,
    item_id: &str,
) -> Result<Option<bool>, DbError> {
    let c = pool.get().await?;
    let r = c
        .q1(
            "WITH gone AS (
               DELETE FROM pep_items
               WHERE application_id = $1 AND user_id = $2 AND node = $3 AND item_id = $4
               RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM pep_nodes
                            WHERE application_id = $1 AND user_id = $2 AND node = $3),
                    EXISTS (SELECT 1 FROM gone)",
            &[&owner.app.0, &owner.user.0, &node, &item_id],
        )
        .await?;
    Ok(r.get::<_, bool>(0).then(|| r.get(1)))
}

/// The node's newest items, at most `max`, newest first; with `ids`, only those.
pub async fn items(
    pool: &DbPool,
    owner: UserKey,
    node: &str,
    ids: Option<&[String]>,
    max: i64,
) -> Result<Vec<Item>, DbError> {
    let c = pool.get().await?;
    let (app, user) = (&owner.app.0, &owner.user.0);
    let rows = match ids {
        None => {
            c.q(
                "SELECT item_id, payload FROM pep_items
                 WHERE application_id = $1 AND user_id = $2 AND node = $3
                 ORDER BY seq DESC LIMIT $4",
                &[app, user, &node, &max],
            )
            .await?
        }
        Some(ids) => {
            c.q(
                "SELECT item_id, payload FROM pep_items
                 WHERE application_id = $1 AND user_id = $2 AND node = $3
                   AND item_id = ANY($4)
                 ORDER BY seq DESC LIMIT $5",
                &[app, user, &node, &ids, &max],
            )
            .await?
        }
    };
    Ok(rows
        .iter()
        .map(|r| Item {
            id: r.get(0),
            payload: r.get(1),
        })
        .collect())
}

/// Replaces a node's configuration and drops the items beyond its `max_items` (all of them
/// when it no longer persists items); false when there is no such node.
pub async fn configure(
    pool: &DbPool,
    owner: UserKey,
    node: &str,
    config: &NodeConfig,
) -> Result<bool, DbError> {
    let (app, user) = (&owner.app.0, &owner.user.0);
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let n = tx
        .x(
            "UPDATE pep_nodes SET access_model = $4, max_items = $5, persist_items = $6
             WHERE application_id = $1 AND user_id = $2 AND node = $3",
            &[
                app,
                user,
                &node,
                &config.access_model.as_str(),
                &config.max_items,
                &config.persist_items,
            ],
        )
        .await?;
    if n == 0 {
        return Ok(false);
    }
    let keep = if config.persist_items {
        i64::from(config.max_items)
    } else {
        0
    };
    tx.x(
        "DELETE FROM pep_items
         WHERE application_id = $1 AND user_id = $2 AND node = $3
           AND item_id NOT IN (SELECT item_id FROM pep_items
                               WHERE application_id = $1 AND user_id = $2 AND node = $3
                               ORDER BY seq DESC LIMIT $4)",
        &[app, user, &node, &keep],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Deletes a node and its items; false when there was none.
pub async fn delete_node(pool: &DbPool, owner: UserKey, node: &str) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let n = c
        .x(
            "DELETE FROM pep_nodes WHERE application_id = $1 AND user_id = $2 AND node = $3",
            &[&owner.app.0, &owner.user.0, &node],
        )
        .await?;
    Ok(n > 0)
}

/// The newest item of each of `nodes` that each of `owners` (users of `app`) keeps, with the
/// node's access model: what a contact coming online is sent (XEP-0163 §6.2). One statement
/// for all of them.
pub async fn last_items(
    pool: &DbPool,
    app: crate::model::AppId,
    owners: &[i64],
    nodes: &[String],
) -> Result<Vec<(i64, String, AccessModel, Item)>, DbError> {
    if owners.is_empty() || nodes.is_empty() {
        return Ok(Vec::new());
    }
    let c = pool.get().await?;
    let rows = c
        .q(
            "SELECT DISTINCT ON (i.user_id, i.node)
                    i.user_id, i.node, n.access_model, i.item_id, i.payload
             FROM pep_items i
             JOIN pep_nodes n USING (application_id, user_id, node)
             WHERE i.application_id = $1 AND i.user_id = ANY($2) AND i.node = ANY($3)
             ORDER BY i.user_id, i.node, i.seq DESC",
            &[&app.0, &owners, &nodes],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let model: String = r.get(2);
            (
                r.get(0),
                r.get(1),
                AccessModel::parse(&model).unwrap_or(AccessModel::Whitelist),
                Item {
                    id: r.get(3),
                    payload: r.get(4),
                },
            )
        })
        .collect())
}
