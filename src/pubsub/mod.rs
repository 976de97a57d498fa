//! Personal eventing storage rules (XEP-0163 on a XEP-0060 subset), in one place for whatever
//! adapter asks: what publish-options mean and when they disagree with a node (§7.1.5), the
//! bounds (payload bytes, items per node, nodes and bytes per user, id lengths), who may read
//! a node (access models `presence`, `open`, `whitelist`) and who may hear of a publish.
//!
//! A neutral module like `privacy`: PEP data is neither chat (dialogs, history) nor identity
//! (accounts, sessions); it is the user's own key-value store shared with their contacts. It
//! reads the roster (presence subscriptions are the `presence` access model) through `db`.
//! Payloads are opaque text here: the adapter hands in XML its own writer produced and parses
//! it back, so nothing a client wrote is ever stored or replayed as markup.

use time::OffsetDateTime;

use crate::config::Config;
use crate::db::{self, DbPool};
use crate::model::jid::Jid;
use crate::model::UserKey;

pub use crate::db::pep::{AccessModel, Item, NodeConfig};

/// The bounds, from `xmpp.pep_*`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_items_per_node: i32,
    pub max_nodes_per_user: i64,
    pub max_bytes_per_user: i64,
    pub max_id_bytes: usize,
}

impl Limits {
    pub fn of(config: &Config) -> Self {
        let x = &config.xmpp;
        Limits {
            max_payload_bytes: x.pep_max_payload_bytes,
            max_items_per_node: x.pep_max_items_per_node.max(1),
            max_nodes_per_user: x.pep_max_nodes_per_user,
            max_bytes_per_user: x.pep_max_bytes_per_user,
            max_id_bytes: x.pep_max_id_bytes,
        }
    }
}

/// Why a request failed (the adapter maps each to its protocol's error).
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    NoSuchNode,
    NoSuchItem,
    /// Only the owner may do this (publish, retract, delete, configure).
    NotOwner,
    /// The node's access model does not let the requester read it.
    Forbidden(AccessModel),
    /// A publish-option disagrees with the existing node (XEP-0060 §7.1.5): the field.
    Precondition(&'static str),
    /// A publish-option's value is not one Parley understands: the field.
    BadOption(&'static str),
    /// A node name or item id that is empty or longer than `max_id_bytes` (the bound).
    BadId(usize),
    PayloadTooBig(usize),
    TooManyNodes(i64),
    TooManyBytes(i64),
    Db,
}

fn db_err(e: db::DbError) -> Error {
    tracing::warn!(error = %e, "PEP storage");
    Error::Db
}

/// `pubsub#max_items` as asked: a number or `max` (the server's bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxItems {
    Max,
    N(i64),
}

/// Publish-options (XEP-0060 §7.1.5): each absent field takes the default for a new node and
/// is not compared with an existing one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub access_model: Option<AccessModel>,
    pub max_items: Option<MaxItems>,
    pub persist_items: Option<bool>,
}

pub const ACCESS_MODEL: &str = "pubsub#access_model";
pub const MAX_ITEMS: &str = "pubsub#max_items";
pub const PERSIST_ITEMS: &str = "pubsub#persist_items";

impl Options {
    /// Reads one form field; an unknown field is ignored (a node has no such option to disagree
    /// with), a known one with a value Parley cannot honour is [`Error::BadOption`].
    pub fn set(&mut self, var: &str, value: &str) -> Result<(), Error> {
        match var {
            ACCESS_MODEL => {
                self.access_model =
                    Some(AccessModel::parse(value).ok_or(Error::BadOption(ACCESS_MODEL))?);
            }
            MAX_ITEMS => {
                self.max_items = Some(if value == "max" {
                    MaxItems::Max
                } else {
                    match value.parse::<i64>() {
                        Ok(n) if n > 0 => MaxItems::N(n),
                        _ => return Err(Error::BadOption(MAX_ITEMS)),
                    }
                });
            }
            PERSIST_ITEMS => {
                self.persist_items = Some(match value {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(Error::BadOption(PERSIST_ITEMS)),
                });
            }
            _ => {}
        }
        Ok(())
    }
}

fn max_items(m: MaxItems, limits: &Limits) -> i32 {
    match m {
        MaxItems::Max => limits.max_items_per_node,
        MaxItems::N(n) => i32::try_from(n)
            .unwrap_or(i32::MAX)
            .min(limits.max_items_per_node),
    }
}

/// The configuration a node created with `options` gets. Defaults: `presence`, one item kept
/// (the usual PEP use: the current avatar, device list, nickname), persisted.
pub fn new_node(options: &Options, limits: &Limits) -> NodeConfig {
    NodeConfig {
        access_model: options.access_model.unwrap_or(AccessModel::Presence),
        max_items: options.max_items.map_or(1, |m| max_items(m, limits)),
        persist_items: options.persist_items.unwrap_or(true),
    }
}

/// XEP-0060 §7.1.5: every option given must match the node's configuration (`max` means the
/// server's bound, which a node asked with `max` holds).
pub fn check_preconditions(
    node: &NodeConfig,
    options: &Options,
    limits: &Limits,
) -> Result<(), Error> {
    if options.access_model.is_some_and(|a| a != node.access_model) {
        return Err(Error::Precondition(ACCESS_MODEL));
    }
    if options
        .max_items
        .is_some_and(|m| max_items(m, limits) != node.max_items)
    {
        return Err(Error::Precondition(MAX_ITEMS));
    }
    if options
        .persist_items
        .is_some_and(|p| p != node.persist_items)
    {
        return Err(Error::Precondition(PERSIST_ITEMS));
    }
    Ok(())
}

/// A node name or item id within the bound.
pub fn check_id(id: &str, limits: &Limits) -> Result<(), Error> {
    if id.is_empty() || id.len() > limits.max_id_bytes {
        return Err(Error::BadId(limits.max_id_bytes));
    }
    Ok(())
}

/// The owner publishes `item` to `node` (created with `options` if new): returns the node's
/// configuration, which decides who hears of it.
pub async fn publish(
    pool: &DbPool,
    limits: &Limits,
    owner: UserKey,
    node: &str,
    options: &Options,
    item: &Item,
    now: OffsetDateTime,
) -> Result<NodeConfig, Error> {
    check_id(node, limits)?;
    check_id(&item.id, limits)?;
    if item.payload.len() > limits.max_payload_bytes {
        return Err(Error::PayloadTooBig(limits.max_payload_bytes));
    }
    if let Some(existing) = db::pep::node(pool, owner, node).await.map_err(db_err)? {
        check_preconditions(&existing, options, limits)?;
    }
    let bounds = db::pep::Bounds {
        nodes_per_user: limits.max_nodes_per_user,
        bytes_per_user: limits.max_bytes_per_user,
    };
    let create = new_node(options, limits);
    match db::pep::publish(pool, owner, node, &create, bounds, item, now)
        .await
        .map_err(db_err)?
    {
        // A concurrent publish may have created the node between the check and the write.
        Ok(config) => check_preconditions(&config, options, limits).map(|()| config),
        Err(db::pep::Refusal::TooManyNodes) => Err(Error::TooManyNodes(limits.max_nodes_per_user)),
        Err(db::pep::Refusal::TooManyBytes) => Err(Error::TooManyBytes(limits.max_bytes_per_user)),
    }
}

/// Whether `reader` may read `owner`'s node with `access` (and be notified of it): the owner
/// always; `open`: any user of the owner's application; `presence`: a contact the owner's
/// roster gives a presence subscription (`from` or `both`); `whitelist`: no one else.
pub async fn may_read(
    pool: &DbPool,
    domain: &str,
    owner: UserKey,
    reader: UserKey,
    access: AccessModel,
) -> Result<bool, Error> {
    if reader == owner {
        return Ok(true);
    }
    if !owner.same_app(&reader) {
        return Ok(false);
    }
    match access {
        AccessModel::Open => Ok(true),
        AccessModel::Whitelist => Ok(false),
        AccessModel::Presence => {
            let contact = reader.bare_jid(domain).to_string();
            let item = db::xmpp::roster_get(pool, owner.app, owner.user, &contact)
                .await
                .map_err(db_err)?;
            Ok(item.is_some_and(|i| matches!(i.subscription.as_str(), "from" | "both")))
        }
    }
}

async fn readable(
    pool: &DbPool,
    domain: &str,
    owner: UserKey,
    reader: UserKey,
    node: &str,
) -> Result<NodeConfig, Error> {
    let config = db::pep::node(pool, owner, node)
        .await
        .map_err(db_err)?
        .ok_or(Error::NoSuchNode)?;
    if !may_read(pool, domain, owner, reader, config.access_model).await? {
        return Err(Error::Forbidden(config.access_model));
    }
    Ok(config)
}

/// `reader` asks for `owner`'s items of `node`: the newest `max` (at most the node's bound),
/// or those of `ids`; returned oldest first (publication order).
pub async fn items(
    pool: &DbPool,
    domain: &str,
    owner: UserKey,
    reader: UserKey,
    node: &str,
    ids: Option<&[String]>,
    max: Option<i64>,
) -> Result<Vec<Item>, Error> {
    let config = readable(pool, domain, owner, reader, node).await?;
    let bound = i64::from(config.max_items);
    let max = max.map_or(bound, |m| m.clamp(0, bound));
    let mut items = db::pep::items(pool, owner, node, ids, max)
        .await
        .map_err(db_err)?;
    items.reverse();
    Ok(items)
}

/// The owner retracts one item.
pub async fn retract(
    pool: &DbPool,
    owner: UserKey,
    node: &str,
    id: &str,
) -> Result<NodeConfig, Error> {
    let config = db::pep::node(pool, owner, node)
        .await
        .map_err(db_err)?
        .ok_or(Error::NoSuchNode)?;
    match db::pep::retract(pool, owner, node, id)
        .await
        .map_err(db_err)?
    {
        None => Err(Error::NoSuchNode),
        Some(false) => Err(Error::NoSuchItem),
        Some(true) => Ok(config),
    }
}

/// The owner deletes a node and its items; returns its configuration (who is told).
pub async fn delete_node(pool: &DbPool, owner: UserKey, node: &str) -> Result<NodeConfig, Error> {
    let config = db::pep::node(pool, owner, node)
        .await
        .map_err(db_err)?
        .ok_or(Error::NoSuchNode)?;
    if !db::pep::delete_node(pool, owner, node)
        .await
        .map_err(db_err)?
    {
        return Err(Error::NoSuchNode);
    }
    Ok(config)
}

/// The owner changes a node's configuration: each option given replaces the node's (XEP-0060
/// §8.2.4); a lowered `max_items` drops the older items at once.
pub async fn configure(
    pool: &DbPool,
    limits: &Limits,
    owner: UserKey,
    node: &str,
    options: &Options,
) -> Result<NodeConfig, Error> {
    let mut config = db::pep::node(pool, owner, node)
        .await
        .map_err(db_err)?
        .ok_or(Error::NoSuchNode)?;
    if let Some(a) = options.access_model {
        config.access_model = a;
    }
    if let Some(m) = options.max_items {
        config.max_items = max_items(m, limits);
    }
    if let Some(p) = options.persist_items {
        config.persist_items = p;
    }
    if !db::pep::configure(pool, owner, node, &config)
        .await
        .map_err(db_err)?
    {
        return Err(Error::NoSuchNode);
    }
    Ok(config)
}

/// A node's configuration, for its owner only.
pub async fn config(
    pool: &DbPool,
    owner: UserKey,
    requester: UserKey,
    node: &str,
) -> Result<NodeConfig, Error> {
    if owner != requester {
        return Err(Error::NotOwner);
    }
    db::pep::node(pool, owner, node)
        .await
        .map_err(db_err)?
        .ok_or(Error::NoSuchNode)
}

/// The nodes `reader` may see of `owner`'s (the owner sees all).
pub async fn nodes(
    pool: &DbPool,
    domain: &str,
    owner: UserKey,
    reader: UserKey,
) -> Result<Vec<String>, Error> {
    let all = db::pep::nodes(pool, owner).await.map_err(db_err)?;
    let mut out = Vec::with_capacity(all.len());
    for (node, config) in all {
        if may_read(pool, domain, owner, reader, config.access_model).await? {
            out.push(node);
        }
    }
    Ok(out)
}

/// Who, besides the owner, may hear of a publish to a node with `access`: the owner's contacts
/// with a presence subscription (`from`/`both`) for `presence` and `open` (an open node's other
/// readers fetch it; PEP notifies through presence), no one for `whitelist`.
pub async fn audience(
    pool: &DbPool,
    domain: &str,
    owner: UserKey,
    access: AccessModel,
) -> Result<Vec<UserKey>, Error> {
    if access == AccessModel::Whitelist {
        return Ok(Vec::new());
    }
    let roster = db::xmpp::roster_list(pool, owner.app, owner.user)
        .await
        .map_err(db_err)?;
    Ok(roster
        .iter()
        .filter(|i| matches!(i.subscription.as_str(), "from" | "both"))
        .filter_map(|i| Jid::parse(&i.contact)?.peer_of(domain, &owner))
        .collect())
}

/// The newest item of each node in `nodes` that each of `owners` keeps, for `reader` coming
/// online (XEP-0163 §6.2): only the nodes `reader` may read. `(owner, node, item)`.
pub async fn last_items(
    pool: &DbPool,
    domain: &str,
    reader: UserKey,
    owners: &[UserKey],
    nodes: &[String],
) -> Result<Vec<(UserKey, String, Item)>, Error> {
    let ids: Vec<i64> = owners
        .iter()
        .filter(|o| o.same_app(&reader))
        .map(|o| o.user.0)
        .collect();
    let rows = db::pep::last_items(pool, reader.app, &ids, nodes)
        .await
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for (user, node, access, item) in rows {
        let owner = UserKey {
            app: reader.app,
            user: crate::model::UserId(user),
        };
        if may_read(pool, domain, owner, reader, access).await? {
            out.push((owner, node, item));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_payload_bytes: 100,
        max_items_per_node: 10,
        max_nodes_per_user: 2,
        max_bytes_per_user: 1000,
        max_id_bytes: 8,
    };

    fn options(fields: &[(&str, &str)]) -> Result<Options, Error> {
        let mut o = Options::default();
        for (k, v) in fields {
            o.set(k, v)?;
        }
        Ok(o)
    }

    #[test]
    fn a_new_node_is_presence_one_item_persisted_unless_options_say_otherwise() {
        let plain = new_node(&Options::default(), &LIMITS);
        assert_eq!(plain.access_model, AccessModel::Presence);
        assert_eq!((plain.max_items, plain.persist_items), (1, true));
        let o = options(&[(ACCESS_MODEL, "whitelist"), (MAX_ITEMS, "max")]).unwrap();
        let n = new_node(&o, &LIMITS);
        assert_eq!((n.access_model, n.max_items), (AccessModel::Whitelist, 10));
    }

    #[test]
    fn max_items_beyond_the_bound_is_the_bound() {
        let o = options(&[(MAX_ITEMS, "5000")]).unwrap();
        assert_eq!(new_node(&o, &LIMITS).max_items, 10);
        assert_eq!(
            options(&[(MAX_ITEMS, "0")]),
            Err(Error::BadOption(MAX_ITEMS))
        );
    }

    #[test]
    fn publish_options_that_disagree_with_the_node_are_a_precondition_failure() {
        let node = new_node(&options(&[(ACCESS_MODEL, "open")]).unwrap(), &LIMITS);
        let same = options(&[(ACCESS_MODEL, "open"), (MAX_ITEMS, "1")]).unwrap();
        assert_eq!(check_preconditions(&node, &same, &LIMITS), Ok(()));
        assert_eq!(
            check_preconditions(&node, &Options::default(), &LIMITS),
            Ok(())
        );
        let other = options(&[(ACCESS_MODEL, "presence")]).unwrap();
        assert_eq!(
            check_preconditions(&node, &other, &LIMITS),
            Err(Error::Precondition(ACCESS_MODEL))
        );
        let more = options(&[(MAX_ITEMS, "max")]).unwrap();
        assert_eq!(
            check_preconditions(&node, &more, &LIMITS),
            Err(Error::Precondition(MAX_ITEMS))
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_values_refused() {
        assert_eq!(
            options(&[("pubsub#notify_retract", "1")]),
            Ok(Options::default())
        );
        assert_eq!(
            options(&[(ACCESS_MODEL, "roster")]),
            Err(Error::BadOption(ACCESS_MODEL))
        );
        assert_eq!(
            options(&[(PERSIST_ITEMS, "yes")]),
            Err(Error::BadOption(PERSIST_ITEMS))
        );
    }

    #[test]
    fn ids_are_non_empty_and_bounded() {
        assert_eq!(check_id("", &LIMITS), Err(Error::BadId(8)));
        assert_eq!(check_id("123456789", &LIMITS), Err(Error::BadId(8)));
        assert_eq!(check_id("current", &LIMITS), Ok(()));
    }
}
