//! Privacy, as both adapters enforce it: XEP-0016 privacy lists and the XEP-0191 block list of
//! each user, evaluated for one stanza between two users of one application. The one place the
//! decision is made: XMPP routing (`xmpp::ext::privacy::screen`), room fan-out
//! ([`blocks_group_message`]) and REST → XMPP fan-out (`xmpp::fanout`) all ask here.
//!
//! - `rules`  the rules and their evaluation (pure)
//! - `cache`  the per-user cache ([`PrivacyCache`]), active lists, block-list readers
//!
//! A user's effective list is the list most recently made active by one of the user's live
//! connections, else the default list. An item without child elements (the SDK's
//! `mutualBlock`) that denies a JID also refuses the owner's own messages to that JID. On a
//! storage error nothing is refused (logged).
//!
//! Must not: build or parse stanzas (the XEP-0016 / XEP-0191 protocols stay in `xmpp::ext`),
//! apply one user's lists to another user's traffic, or touch users of another application.
//! From the XMPP adapter it uses only the address types (`Jid`, `UserKey`).

pub mod cache;
pub mod rules;

pub use cache::PrivacyCache;
pub use rules::{evaluate, Rules, Subject, Traffic};

use crate::db::privacy::Kinds;
use crate::db::DbPool;
use crate::hub::Hub;
use crate::model::jid::Jid;
use crate::model::UserKey;

/// What the decisions read: the cache, storage (on a cache miss), the live connections (for
/// active lists) and the chat domain (to spell JIDs). Implemented by each adapter's services.
pub trait Env {
    fn privacy_cache(&self) -> &PrivacyCache;
    fn pool(&self) -> &DbPool;
    fn hub(&self) -> &Hub;
    fn chat_domain(&self) -> &str;
}

/// The kind of stanza one user sends another, as privacy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Message,
    /// A presence: `presence-in` for the recipient, `presence-out` for the sender.
    Presence,
    Iq,
}

/// What privacy says about one stanza between two users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The recipient's list or block list refuses the sender.
    Refused,
    /// The sender's own block list or mutual block covers the recipient.
    Blocked,
}

/// Whether `sender` may send a `kind` stanza to `recipient` (both of one application).
pub async fn decision<E: Env + ?Sized>(
    env: &E,
    sender: UserKey,
    recipient: UserKey,
    kind: Kind,
) -> Decision {
    if sender == recipient {
        return Decision::Allow;
    }
    let cache = env.privacy_cache();
    let domain = env.chat_domain();
    let inbound = match kind {
        Kind::Message => Traffic::Inbound(Kinds::MESSAGE),
        Kind::Presence => Traffic::Inbound(Kinds::PRESENCE_IN),
        Kind::Iq => Traffic::Inbound(Kinds::IQ),
    };
    let theirs = cache.rules_or_none(env.pool(), recipient).await;
    let active = active_if_any(env, recipient, &theirs);
    if theirs.denies(
        active.as_deref(),
        &Subject::of_user(sender, domain),
        inbound,
    ) {
        return Decision::Refused;
    }
    let outbound = match kind {
        Kind::Message | Kind::Iq => Traffic::StanzaOut,
        Kind::Presence => Traffic::PresenceOut,
    };
    let mine = cache.rules_or_none(env.pool(), sender).await;
    let active = active_if_any(env, sender, &mine);
    if mine.denies(
        active.as_deref(),
        &Subject::of_user(recipient, domain),
        outbound,
    ) {
        return Decision::Blocked;
    }
    Decision::Allow
}

/// The active list only matters when the user has lists at all (saves a hub lookup).
fn active_if_any<E: Env + ?Sized>(env: &E, user: UserKey, rules: &Rules) -> Option<String> {
    if rules.lists.is_empty() {
        None
    } else {
        env.privacy_cache().active_list(env.hub(), user)
    }
}

/// Of `contacts`, those that may exchange presence with `user` in the direction given:
/// `outbound` — `user`'s presence to them; else theirs to `user`. For roster presence broadcast
/// and the probes at initial presence.
pub async fn presence_allowed<E: Env + ?Sized>(
    env: &E,
    user: UserKey,
    contacts: Vec<UserKey>,
    outbound: bool,
) -> Vec<UserKey> {
    let mut out = Vec::with_capacity(contacts.len());
    for c in contacts {
        let (from, to) = if outbound { (user, c) } else { (c, user) };
        if decision(env, from, to, Kind::Presence).await == Decision::Allow {
            out.push(c);
        }
    }
    out
}

/// The JIDs a group message's sender is known by: the user JID and the occupant pseudo-JID
/// `muc.{domain}/{uid}` (which also matches an occupant JID `room@muc.{domain}/{uid}`).
fn group_sender(sender: UserKey, domain: &str) -> Subject {
    let occupant = Jid {
        local: None,
        domain: format!("muc.{domain}"),
        resource: Some(sender.user.to_string()),
    };
    Subject::of_user(sender, domain).also(&occupant)
}

/// For group-chat routing: true when `recipient` must not get a group message from `sender`.
/// That is when the recipient's block list or effective privacy list denies messages from the
/// sender's group pseudo-JID `muc.{domain}/{sender_uid}` (what the ConnectyCube SDK writes) or
/// from the sender's user JID `{uid}-{app}@{domain}`; or when the sender blocked the recipient
/// (block list, or a list item without children: the SDK's `mutualBlock`). Never true for the
/// sender's own reflection. The sender gets no error (ConnectyCube: "nothing in groups").
/// Reads the in-memory cache; the database only on a user's first use.
pub async fn blocks_group_message<E: Env + ?Sized>(
    env: &E,
    recipient: UserKey,
    sender: UserKey,
) -> bool {
    if recipient == sender {
        return false;
    }
    let domain = env.chat_domain();
    let cache = env.privacy_cache();
    let who = group_sender(sender, domain);
    let theirs = cache.rules_or_none(env.pool(), recipient).await;
    let active = active_if_any(env, recipient, &theirs);
    if theirs.denies(active.as_deref(), &who, Traffic::Inbound(Kinds::MESSAGE)) {
        return true;
    }
    let mine = cache.rules_or_none(env.pool(), sender).await;
    let active = active_if_any(env, sender, &mine);
    mine.denies(
        active.as_deref(),
        &Subject::of_user(recipient, domain),
        Traffic::StanzaOut,
    )
}

#[cfg(test)]
mod tests {
    use super::rules::tests::{item, jid, MSG};
    use super::rules::RosterView;
    use super::*;
    use crate::db::privacy::Action;

    #[test]
    fn the_sdks_list_denies_a_group_sender_by_pseudo_jid_or_user_jid() {
        use crate::model::{AppId, UserId};
        let sender = UserKey {
            app: AppId(7),
            user: UserId(2),
        };
        let other = UserKey {
            app: AppId(7),
            user: UserId(3),
        };
        let r = RosterView::new();
        let all4 = Kinds::MESSAGE | Kinds::PRESENCE_IN | Kinds::PRESENCE_OUT | Kinds::IQ;
        let sdk = [
            item(1, jid("2-7@localhost"), Action::Deny, all4),
            item(2, jid("muc.localhost/2"), Action::Deny, all4),
        ];
        let who = group_sender(sender, "localhost");
        assert_eq!(evaluate(&sdk, &who, MSG, &r), Action::Deny);
        assert_eq!(
            evaluate(&sdk[1..], &who, MSG, &r),
            Action::Deny,
            "pseudo-JID alone"
        );
        assert_eq!(
            evaluate(&sdk[..1], &who, MSG, &r),
            Action::Deny,
            "user JID alone"
        );
        let who = group_sender(other, "localhost");
        assert_eq!(evaluate(&sdk, &who, MSG, &r), Action::Allow);
    }
}
