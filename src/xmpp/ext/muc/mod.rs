//! XEP-0045 Multi-User Chat, as ConnectyCube and its SDK use it: every group dialog (types 1, 2,
//! 4) is a room `{app}_{dialog}@muc.{domain}`, the SDK's nick is the user id (the reserved nick
//! discovery of §7.12 says so). Alongside, standard rooms `name@muc.{domain}`: joining an unknown
//! name creates an instant room backed by a new group dialog (`chat::rooms`), nicks are free and
//! unique in the room, and only joined occupants receive its messages. A `groupchat` message
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
//! - `join.rs`         join and leave presence, nick changes, occupants' presence, the subject
//! - `join_history.rs` the stored messages replayed after a join
//! - `occupants.rs`    removals and deletions made over REST (chat events)
//! - `private.rs`      private messages through the room (`type='chat'` to `room/nick`)
//! - `subject.rs`      the room subject (a `groupchat` message with `<subject/>`)
//! - `owner.rs`        the owner's configuration form and room destruction (`muc#owner`)
//! - `admin.rs`        affiliation and role changes, kicks (`muc#admin`)
//! - `self_ping.rs`    XEP-0410 MUC self-ping
//! - `moderate.rs`     XEP-0425 message moderation
//! - `invite.rs`       mediated invitations (`<x muc#user><invite/>` to the room)

mod admin;
mod invite;
mod join;
mod join_history;
mod moderate;
mod occupants;
mod owner;
mod private;
mod self_ping;
mod subject;

use std::sync::Arc;

use crate::chat::messages::MessageUpdate;
use crate::chat::{Actor, ChatError};
use crate::hub::rooms::{Membership, RoomKey};
use crate::model::{AppId, DialogType, ObjectId, UserId};
use crate::xmpp::dispatch::{BoxFuture, Extension, Flow, Hook, On, Phase, Reply, Routed, Spec, To};
use crate::xmpp::ext::history;
use crate::xmpp::ns;
use crate::xmpp::stanza::{MessageType, PresenceType, StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub use admin::kicked_elsewhere;
pub use join::{leave_all, lost_remote, on_presence, show_remote};
pub use occupants::{on_event, removed_elsewhere, watch_events};
pub(crate) use private::deliver_joined_here;

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0045 Multi-User Chat",
        status: "complete",
        notes: "dialog rooms `{app}_{dialog}@muc.{domain}` (nick = user id for the SDK, advertised by reserved-nick discovery §7.12) and standard rooms `name@muc.{domain}` created by joining (instant room, status 201, a group dialog REST sees); any nick, unique in the room (a number is that user's reserved nick); nick change (303); subject (moderators, or participants when `muc#roomconfig_changesubject`); owner form (`roomname`, `roomdesc`, `membersonly`, `persistentroom`, `changesubject`) and destroy; `muc#admin` affiliations owner/admin/member/none/outcast and roles moderator/participant/none (kick, 307) mapped onto the dialog's owner/admins/occupants by `chat::rules`; occupants see each other's full JID (non-anonymous); kicks and bans carry the moderator's reason; an occupant's presence error removes it (333); private messages through the room; mediated invitations (§7.8.2: passed on, membership unchanged); no visitors, voice requests or passwords",
        ejabberd: "mod_muc",
        prosody: "mod_muc",
    },
    Spec {
        name: "XEP-0410 MUC Self-Ping",
        status: "complete",
        notes: "a ping to one's own occupant JID: result while this connection is joined, `not-acceptable` when not",
        ejabberd: "mod_muc",
        prosody: "mod_muc",
    },
    Spec {
        name: "XEP-0425 Message Moderation",
        status: "complete",
        notes: "`:1` and `:0` (in `<apply-to/>`); the chat roles' forced delete (moderators); occupants get both retraction shapes plus the ConnectyCube `<remove/>`",
        ejabberd: "no (added in 23.04)",
        prosody: "community module (mod_muc_moderation)",
    },
];

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
    specs: SPECS,
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

/// A room address: the dialog id and, for an occupant JID, the nick. A standard room's address
/// carries its `name` and an empty `dialog` until [`resolve`] finds the dialog behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomAddr {
    pub dialog: String,
    pub nick: Option<String>,
    /// The local part of a standard room's JID, lower case.
    pub name: Option<String>,
}

/// The MUC service host of a chat domain.
pub fn service(domain: &str) -> String {
    format!("muc.{domain}")
}

/// Parses the local part of a room JID: `{app}_{dialog}` is a dialog room (another
/// application's does not exist), anything else a standard room's name.
pub fn parse_room(local: &str, app: AppId, nick: Option<String>) -> Result<RoomAddr, StanzaError> {
    if let Some((a, d)) = local.split_once('_') {
        if let (Ok(a), true) = (a.parse::<i64>(), ObjectId::is_valid(d)) {
            if a != app.0 {
                return Err(StanzaError::item_not_found().with_text("no such room"));
            }
            return Ok(RoomAddr {
                dialog: d.to_ascii_lowercase(),
                nick,
                name: None,
            });
        }
    }
    Ok(RoomAddr {
        dialog: String::new(),
        nick,
        name: Some(local.to_lowercase()),
    })
}

/// Finds the dialog behind a standard room's address (live rooms first, then the store);
/// `None` when no room has that name. A dialog room's address is returned as it is.
pub async fn lookup(
    s: &Services,
    actor: &Actor,
    mut room: RoomAddr,
) -> Result<Option<RoomAddr>, StanzaError> {
    let Some(name) = &room.name else {
        return Ok(Some(room));
    };
    if room.dialog.is_empty() {
        let found = match s.hub.rooms.dialog_named(actor.app.id, name) {
            Some(d) => Some(d),
            None => s.chat.room_named(actor, name).await.map_err(chat_err)?,
        };
        match found {
            Some(d) => room.dialog = d,
            None => return Ok(None),
        }
    }
    Ok(Some(room))
}

/// [`lookup`], with an unknown standard room "not found".
pub async fn resolve(s: &Services, actor: &Actor, room: RoomAddr) -> Result<RoomAddr, StanzaError> {
    lookup(s, actor, room).await?.ok_or_else(no_room)
}

/// The JID of the room of `dialog`: `name@muc.{domain}` for a live standard room, else
/// `{app}_{dialog}@muc.{domain}`.
pub fn room_jid(s: &Services, app: AppId, dialog: &str) -> String {
    match s.hub.rooms.name_of(&(app, dialog.to_owned())) {
        Some(name) => format!("{name}@{}", service(s.domain())),
        None => format!("{}_{dialog}@{}", app.0, service(s.domain())),
    }
}

/// The JID of a resolved room address, as its requester named it.
pub fn addr_jid(s: &Services, app: AppId, room: &RoomAddr) -> String {
    match &room.name {
        Some(name) => format!("{name}@{}", service(s.domain())),
        None => room_jid(s, app, &room.dialog),
    }
}

/// The nick of `uid` in a room: the one they joined with, else their user id (the SDK's).
pub(super) fn nick_of(s: &Services, k: &RoomKey, uid: i64) -> String {
    s.hub
        .rooms
        .nick_of(k, uid)
        .unwrap_or_else(|| uid.to_string())
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

/// **The one place a room stanza reaches one user** (their connections on this node): not
/// when the recipient's privacy rules (or the sender's block) exclude the sender's group
/// messages. Another node's share of a fan-out arrives here too (`xmpp::cluster`).
pub(crate) async fn deliver_here(
    s: &Services,
    sender: i64,
    to: UserKey,
    stanza: &Element,
) -> usize {
    if !s.hub.has_local(to) {
        return 0;
    }
    if crate::privacy::blocks_group_message(s, to, user_key(to.app, sender)).await {
        return 0;
    }
    let bare = to.bare_jid(s.domain()).to_string();
    s.hub.local_deliver_addressed(to, &bare, stanza)
}

/// Sends a room stanza (`from` already `room/{sender}`) to every member and every joined
/// occupant (on any node), each copy addressed to its connection. REST → XMPP group pushes
/// can use it too. Recipients on other nodes cost one bus message per node, which delivers to
/// its own (`Cluster::room_stanza`).
pub async fn fan_out(
    s: &Services,
    app: AppId,
    dialog: &str,
    members: &[i64],
    sender: i64,
    stanza: &Element,
) {
    let mut to = members.to_vec();
    to.extend(s.hub.rooms.joined_users(&(app, dialog.to_owned())));
    to.sort_unstable();
    to.dedup();
    for uid in &to {
        deliver_here(s, sender, user_key(app, *uid), stanza).await;
    }
    if let Some(c) = s.hub.cluster() {
        c.room_stanza(app, dialog, sender, &to, stanza);
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
    let room = resolve(s, actor, room).await?;
    if room.nick.is_none()
        && matches!(MessageType::of(&el), Ok(MessageType::Normal))
        && !invite::invites(&el).is_empty()
    {
        return invite::on_message(s, actor, &el, &room).await;
    }
    match MessageType::of(&el) {
        Ok(MessageType::Error) => return Ok(()),
        Ok(MessageType::Groupchat) => {}
        Ok(MessageType::Chat) if room.nick.is_some() => {
            return private::on_message(s, actor, el, &room).await;
        }
        // Any other type, an unknown one included, is refused.
        _ => {
            return Err(StanzaError::bad_request()
                .with_text("messages to a room are type groupchat, or chat to an occupant"))
        }
    }
    if room.nick.is_some() {
        return Err(StanzaError::bad_request().with_text("groupchat goes to the room's bare JID"));
    }
    let uid = actor.user.0;
    let k = key(actor, &room);
    if room.name.is_some() && !s.hub.rooms.joined_users(&k).contains(&uid) {
        // A standard room hears only its occupants (XEP-0045 §7.4).
        return Err(StanzaError::not_acceptable().with_text("join the room before posting"));
    }
    if subject::is_subject_change(&el) {
        return subject::on_message(s, actor, &el, &room).await;
    }
    let m = membership(s, actor, &room).await?;
    let mut members = m.members.clone();
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
    } else if (history::wanted(&el) || room.name.is_some()) && has_content(&el) {
        // A standard room keeps every message (its clients never ask, as the SDK does with
        // `save_to_history`): join history and the room's archive read them back.
        let new = history::new_message(&el, Some(room.dialog.clone()), None);
        let stored = s.chat.store_message(actor, new).await.map_err(chat_err)?;
        history::stamp(&mut el, &stored);
        // XEP-0359: the id the room's archive (ext::mam) knows it by.
        let by = addr_jid(s, actor.app.id, &room);
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
    if room.name.is_some() {
        // A standard room's messages go to its joined occupants only (`fan_out` adds them).
        members = Arc::new(Vec::new());
    }
    el.set_attr(
        "from",
        format!(
            "{}/{}",
            addr_jid(s, actor.app.id, &room),
            nick_of(s, &k, uid)
        ),
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
    /// The requesting connection.
    pub conn: crate::hub::ConnId,
    /// Stanzas for the requesting connection, written before the answer.
    pub before: &'a mut Vec<Element>,
}

/// An iq to the MUC service (`room: None`), to a room or to an occupant: disco#info (with
/// §7.12 reserved-nick discovery) and disco#items, the room's message archive (`ext::mam`), the
/// owner's form (`owner.rs`), affiliations and roles (`admin.rs`), moderation (`moderate.rs`)
/// and self-pings (`self_ping.rs`); anything else is not served.
pub async fn on_iq(s: &Services, actor: &Actor, iq: Iq<'_>, room: Option<RoomAddr>) -> Reply {
    let room = match room {
        Some(r) => Some(resolve(s, actor, r).await?),
        None => None,
    };
    let (get, payload) = (iq.get, iq.payload);
    if payload.ns == ns::MAM {
        return match room {
            Some(room) if room.nick.is_none() => {
                let rjid = addr_jid(s, actor.app.id, &room);
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
    if let Some(room) = &room {
        if room.nick.is_some() {
            return self_ping::on_iq(s, actor, iq, room);
        }
        if payload.is("query", ns::MUC_OWNER) {
            return owner::on_iq(s, actor, iq, room).await;
        }
        if payload.is("query", ns::MUC_ADMIN) {
            return admin::on_iq(s, actor, iq, room).await;
        }
        if moderate::is_request(payload) {
            return moderate::on_iq(s, actor, iq, room).await;
        }
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
    let (dialog, _, settings) = s
        .chat
        .room_info(actor, &room.dialog)
        .await
        .map_err(chat_err)?;
    let rjid = addr_jid(s, actor.app.id, &room);
    let k = key(actor, &room);
    if disco_items {
        let mut q = Element::new("query", ns::DISCO_ITEMS);
        for o in s.hub.rooms.occupants(&k) {
            q.push(
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", format!("{rjid}/{}", o.nick))
                    .with_attr("name", o.nick.clone()),
            );
        }
        return Ok(Some(q));
    }
    if let Some(node) = payload.attr("node") {
        if node != RESERVED_NICK_NODE {
            return Err(StanzaError::item_not_found());
        }
        // XEP-0045 §7.12: a dialog room reserves each user's id as their nick (the SDK's);
        // a standard room reserves none.
        let mut q = Element::new("query", ns::DISCO_INFO).with_attr("node", node);
        if settings.name.is_none() {
            q.push(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "conference")
                    .with_attr("type", "text")
                    .with_attr("name", actor.user.0.to_string()),
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
    let access = if dialog.kind == DialogType::Group && !dialog.allow_preview {
        "muc_membersonly"
    } else {
        "muc_open"
    };
    let lifetime = if settings.persistent {
        "muc_persistent"
    } else {
        "muc_temporary"
    };
    for f in [
        ns::MUC,
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::MAM,
        ns::MAM_EXTENDED,
        ns::MUC_SELF_PING,
        ns::MODERATE_0,
        ns::MODERATE_1,
        lifetime,
        "muc_nonanonymous",
        "muc_unmoderated",
        "muc_unsecured",
        access,
    ] {
        q.push(feature(f));
    }
    Ok(Some(q))
}

/// The disco#info node of XEP-0045 §7.12 reserved-nick discovery.
pub const RESERVED_NICK_NODE: &str = "x-roomuser-item";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_carry_the_application_and_a_dialog_id() {
        let r = parse_room("42_5c094c0ce588ce6856f87422", AppId(42), Some("7".into())).unwrap();
        assert_eq!(r.dialog, "5c094c0ce588ce6856f87422");
        assert_eq!(r.nick.as_deref(), Some("7"));
        assert!(parse_room("43_5c094c0ce588ce6856f87422", AppId(42), None).is_err());
    }

    #[test]
    fn any_other_local_part_names_a_standard_room() {
        for local in ["42_nope", "42", "Lobby"] {
            let r = parse_room(local, AppId(42), None).unwrap();
            assert_eq!(r.name, Some(local.to_lowercase()));
            assert!(r.dialog.is_empty());
        }
    }
}
