//! XEP-0045 Multi-User Chat, as ConnectyCube and its SDK use it: every group dialog (types 1, 2,
//! 4) is a room `{app}_{dialog}@muc.{domain}`, the nick is the user id. A `groupchat` message
//! goes to every online member of the dialog, joined or not, and back to the sender; join and
//! leave presence, join history from storage, disco on the service and rooms, and removals
//! made over REST. Reached by destination host (`muc.{domain}`), not by namespace: routing
//! resolves the address, and this file's Deliver hooks take every message and presence sent
//! there (iqs are answered through routing).
//!
//! It must not decide who may send, read, edit or delete (the chat service does, through
//! `room_for_send`, `room_for_read`, `store_message`, `update_messages`, `delete_messages`),
//! must not touch SQL, and must not store chat states. Decisions the README records: join history
//! defaults to [`DEFAULT_HISTORY`] messages; a user removed over REST gets an unavailable
//! presence with status 321 (affiliation change), a deleted dialog a `<destroy/>`; both carry
//! the SDK's `<xmlns><code>…</code></xmlns>` shim next to the standard status.
//!
//! - `mod.rs`          room addresses, membership, `groupchat` messages, disco on rooms
//! - `join.rs`         join and leave presence, occupants' presence
//! - `join_history.rs` the stored messages replayed after a join
//! - `occupants.rs`    removals and deletions made over REST (chat events)

mod join;
mod join_history;
mod occupants;

use std::sync::Arc;

use crate::chat::messages::MessageUpdate;
use crate::chat::{Actor, ChatError};
use crate::hub::rooms::{Membership, RoomKey};
use crate::model::{AppId, DialogType, ObjectId, UserId};
use crate::xmpp::dispatch::{BoxFuture, Extension, Flow, Hook, On, Phase, Reply, Routed, To};
use crate::xmpp::ext::history;
use crate::xmpp::ns;
use crate::xmpp::stanza::{MessageType, PresenceType, StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub use join::{leave_all, on_presence};
pub use occupants::{on_event, watch_events};

pub const EXTENSION: Extension = Extension {
    handlers: &[],
    hooks: &[
        Hook {
            on: On::Message,
            phase: Phase::Deliver,
            run: deliver_message,
        },
        Hook {
            on: On::Presence,
            phase: Phase::Deliver,
            run: deliver_presence,
        },
        Hook {
            on: On::Presence,
            phase: Phase::Delivered,
            run: leave_on_unavailable,
        },
    ],
};

/// Deliver hook: a message to a room is this file's entirely (checks, storage, fan-out).
fn deliver_message(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let To::Room(room) = m.to.clone() else {
            return Flow::Next;
        };
        let res = match m.actor().await {
            Ok(actor) => on_message(&m.services, &actor, m.stanza.clone(), room).await,
            Err(e) => Err(e),
        };
        res.map_or_else(Flow::Refuse, |()| Flow::Done)
    })
}

/// Deliver hook: a presence to a room joins or leaves it; what comes back goes to this
/// connection, in order.
fn deliver_presence(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let To::Room(room) = m.to.clone() else {
            return Flow::Next;
        };
        let res = match m.actor().await {
            Ok(actor) => {
                let s = &m.services;
                on_presence(s, &actor, m.conn, &m.full, m.stanza.clone(), room).await
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(out) => {
                m.out.extend(out);
                Flow::Done
            }
            Err(e) => Flow::Refuse(e),
        }
    })
}

/// Delivered hook: an unavailable broadcast presence takes the connection out of its rooms.
fn leave_on_unavailable(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        if m.to == To::Broadcast && m.presence_type() == Ok(PresenceType::Unavailable) {
            leave_all(&m.services, m.user, m.conn);
        }
        Flow::Next
    })
}

/// Join history when the join does not say (`<history maxstanzas>` absent).
pub const DEFAULT_HISTORY: i64 = 20;
/// The most history messages one join returns.
pub const MAX_HISTORY: i64 = 100;

/// A room address: the dialog id and, for an occupant JID, the nick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomAddr {
    pub dialog: String,
    pub nick: Option<String>,
}

/// The MUC service host of a chat domain.
pub fn service(domain: &str) -> String {
    format!("muc.{domain}")
}

/// Parses the local part `{app}_{dialog}` of a room JID; rooms of other applications and
/// malformed names do not exist.
pub fn parse_room(local: &str, app: AppId, nick: Option<String>) -> Result<RoomAddr, StanzaError> {
    let nf = || StanzaError::item_not_found().with_text("no such room");
    let (a, d) = local.split_once('_').ok_or_else(nf)?;
    if a.parse::<i64>().ok() != Some(app.0) || !ObjectId::is_valid(d) {
        return Err(nf());
    }
    Ok(RoomAddr {
        dialog: d.to_ascii_lowercase(),
        nick,
    })
}

/// The JID of the room of `dialog`: `{app}_{dialog}@muc.{domain}`.
pub fn room_jid(s: &Services, app: AppId, dialog: &str) -> String {
    format!("{}_{dialog}@{}", app.0, service(s.domain()))
}

pub(super) fn key(actor: &Actor, room: &RoomAddr) -> RoomKey {
    (actor.app.id, room.dialog.clone())
}

pub(super) fn user_key(app: AppId, uid: i64) -> UserKey {
    UserKey {
        app,
        user: UserId(uid),
    }
}

pub(super) fn chat_err(e: ChatError) -> StanzaError {
    StanzaError::from(&e)
}

pub(super) fn no_room() -> StanzaError {
    StanzaError::item_not_found().with_text("no such room")
}

/// The members of the room as far as `actor` may send to it: from the cache, or loaded (one
/// database round trip) and cached.
async fn membership(
    s: &Services,
    actor: &Actor,
    room: &RoomAddr,
) -> Result<Membership, StanzaError> {
    let rooms = &s.hub.rooms;
    let k = key(actor, room);
    if let Some(m) = rooms.cached_sender(&k, actor.user.0) {
        return Ok(m);
    }
    let epoch = rooms.epoch();
    let (dialog, mut members) = s
        .chat
        .room_for_send(actor, &room.dialog)
        .await
        .map_err(chat_err)?;
    if !dialog.kind.is_room() {
        return Err(no_room());
    }
    if !members.contains(&actor.user.0) {
        members.push(actor.user.0);
    }
    Ok(rooms.remember(k, epoch, dialog, members, actor.user.0))
}

/// **The one place a room stanza reaches one user**: not when the recipient's privacy rules
/// (or the sender's block) exclude the sender's group messages.
async fn deliver_one(s: &Services, sender: i64, to: UserKey, stanza: &Element) -> usize {
    if crate::privacy::blocks_group_message(s, to, user_key(to.app, sender)).await {
        return 0;
    }
    let bare = to.bare_jid(s.domain()).to_string();
    s.hub.deliver_addressed(to, &bare, stanza)
}

/// Sends a room stanza (`from` already `room/{sender}`) to every member and every joined
/// occupant, each copy addressed to its connection. REST → XMPP group pushes can use it too.
pub async fn fan_out(
    s: &Services,
    app: AppId,
    dialog: &str,
    members: &[i64],
    sender: i64,
    stanza: &Element,
) {
    for uid in members {
        deliver_one(s, sender, user_key(app, *uid), stanza).await;
    }
    for uid in s.hub.rooms.joined_users(&(app, dialog.to_owned())) {
        if !members.contains(&uid) {
            deliver_one(s, sender, user_key(app, uid), stanza).await;
        }
    }
}

fn has_content(el: &Element) -> bool {
    el.child("body", ns::CLIENT).is_some()
        || el
            .child("extraParams", ns::CLIENT)
            .is_some_and(|x| x.child("attachment", ns::CLIENT).is_some())
}

/// A `message` addressed to a room (or an occupant of it).
pub async fn on_message(
    s: &Services,
    actor: &Actor,
    mut el: Element,
    room: RoomAddr,
) -> Result<(), StanzaError> {
    match MessageType::of(&el) {
        Ok(MessageType::Error) => return Ok(()),
        Ok(MessageType::Groupchat) => {}
        // Any other type, an unknown one included, is refused.
        _ => {
            return Err(StanzaError::bad_request().with_text(
                "messages to a room are type groupchat; private messages are not served",
            ))
        }
    }
    if room.nick.is_some() {
        return Err(StanzaError::bad_request().with_text("groupchat goes to the room's bare JID"));
    }
    let m = membership(s, actor, &room).await?;
    let mut members = m.members.clone();
    let uid = actor.user.0;
    let child_id = |name: &str, namespace: &str| {
        el.child(name, namespace)
            .and_then(|c| c.attr("id"))
            .map(str::to_owned)
    };
    let remove = child_id("remove", ns::MESSAGE_DELETE);
    let replace = child_id("replace", ns::CORRECTION);
    if let Some(id) = remove {
        let report = s
            .chat
            .delete_messages(actor, std::slice::from_ref(&id), true, Some(&room.dialog))
            .await
            .map_err(chat_err)?;
        if !report.wrong_permissions.is_empty() {
            return Err(StanzaError::forbidden().with_text(format!(
                "Forbidden: you may not delete message {id} for everyone"
            )));
        }
    } else if let Some(id) = replace {
        if let Some(body) = el.child("body", ns::CLIENT).map(Element::text) {
            let u = MessageUpdate {
                dialog_id: Some(room.dialog.clone()),
                body: Some(body),
                ..Default::default()
            };
            match s.chat.update_messages(actor, vec![id], u).await {
                // An edit of a message that was never stored is relayed as is.
                Ok(()) | Err(ChatError::NotFound(_)) => {}
                Err(e) => return Err(chat_err(e)),
            }
        }
    } else if history::wanted(&el) && has_content(&el) {
        let new = history::new_message(&el, Some(room.dialog.clone()), None);
        let stored = s.chat.store_message(actor, new).await.map_err(chat_err)?;
        history::stamp(&mut el, &stored);
        // XEP-0359: the id the room's archive (ext::mam) knows it by.
        let by = room_jid(s, actor.app.id, &room.dialog);
        super::stanza_id::stamp(&mut el, stored.view.message.id.as_str(), &by);
        let mut fresh = stored.recipients.clone();
        fresh.push(uid);
        members = Arc::new(fresh);
    }
    if m.dialog.kind == DialogType::Broadcast {
        // Every user of the application is in a broadcast dialog, inbox entry or not.
        let mut all = s.hub.online_users(actor.app.id);
        if !all.contains(&uid) {
            all.push(uid);
        }
        members = Arc::new(all);
    }
    el.set_attr(
        "from",
        format!("{}/{uid}", room_jid(s, actor.app.id, &room.dialog)),
    );
    fan_out(s, actor.app.id, &room.dialog, &members, uid, &el).await;
    Ok(())
}

/// An iq to the MUC service or a room, as routing hands it over.
pub struct Iq<'a> {
    /// `type='get'` (else `set`).
    pub get: bool,
    pub payload: &'a Element,
    /// The requesting connection's full JID.
    pub from: &'a str,
    /// Stanzas for the requesting connection, written before the answer.
    pub before: &'a mut Vec<Element>,
}

/// An iq to the MUC service (`room: None`) or to a room: disco#info and disco#items, and a
/// room's message archive (`ext::mam`); anything else is not served.
pub async fn on_iq(s: &Services, actor: &Actor, iq: Iq<'_>, room: Option<RoomAddr>) -> Reply {
    let (get, payload) = (iq.get, iq.payload);
    if payload.ns == ns::MAM {
        return match room {
            Some(room) if room.nick.is_none() => {
                let rjid = room_jid(s, actor.app.id, &room.dialog);
                let archive = crate::xmpp::ext::mam::Room {
                    dialog: &room.dialog,
                    jid: &rjid,
                };
                crate::xmpp::ext::mam::on_room_iq(s, actor, iq, archive).await
            }
            // The service and occupants keep no archive.
            _ => Err(StanzaError::service_unavailable()),
        };
    }
    let disco_info = payload.is("query", ns::DISCO_INFO);
    let disco_items = payload.is("query", ns::DISCO_ITEMS);
    if !get || !(disco_info || disco_items) {
        return Err(StanzaError::service_unavailable());
    }
    let feature = |v: &str| Element::new("feature", ns::DISCO_INFO).with_attr("var", v);
    let Some(room) = room else {
        if disco_items {
            // Rooms are the caller's dialogs: listed by REST, not here.
            return Ok(Some(Element::new("query", ns::DISCO_ITEMS)));
        }
        let mut q = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr("name", "Group dialogs"),
        );
        for f in [ns::MUC, ns::DISCO_INFO, ns::DISCO_ITEMS] {
            q.push(feature(f));
        }
        return Ok(Some(q));
    };
    let (dialog, _) = s
        .chat
        .room_for_read(actor, &room.dialog)
        .await
        .map_err(chat_err)?;
    if !dialog.kind.is_room() {
        return Err(no_room());
    }
    let rjid = room_jid(s, actor.app.id, &room.dialog);
    if disco_items {
        let mut q = Element::new("query", ns::DISCO_ITEMS);
        for uid in s.hub.rooms.joined_users(&key(actor, &room)) {
            q.push(
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", format!("{rjid}/{uid}"))
                    .with_attr("name", uid.to_string()),
            );
        }
        return Ok(Some(q));
    }
    let mut q = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "conference")
            .with_attr("type", "text")
            .with_attr("name", dialog.name.clone().unwrap_or_default()),
    );
    let access = if dialog.kind == DialogType::Group {
        "muc_membersonly"
    } else {
        "muc_open"
    };
    for f in [
        ns::MUC,
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::MAM,
        ns::MAM_EXTENDED,
        "muc_persistent",
        "muc_nonanonymous",
        access,
    ] {
        q.push(feature(f));
    }
    Ok(Some(q))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_carry_the_application_and_a_dialog_id() {
        let r = parse_room("42_5c094c0ce588ce6856f87422", AppId(42), Some("7".into())).unwrap();
        assert_eq!(r.dialog, "5c094c0ce588ce6856f87422");
        assert_eq!(r.nick.as_deref(), Some("7"));
        assert!(parse_room("43_5c094c0ce588ce6856f87422", AppId(42), None).is_err());
        assert!(parse_room("42_nope", AppId(42), None).is_err());
        assert!(parse_room("42", AppId(42), None).is_err());
    }
}
