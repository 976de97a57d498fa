//! XEP-0045 Multi-User Chat, as ConnectyCube and its SDK use it: every group dialog (types 1, 2,
//! 4) is a room `{app}_{dialog}@muc.{domain}`, the nick is the user id. A `groupchat` message
//! goes to every online member of the dialog, joined or not, and back to the sender; join and
//! leave presence, join history from storage, disco on the service and rooms, and removals
//! made over REST. Reached by destination host (`muc.{domain}`), not by namespace: the session
//! hands every stanza addressed there to this file.
//!
//! It must not decide who may send, read, edit or delete (the chat service does, through
//! `room_for_send`, `room_for_read`, `store_message`, `update_messages`, `delete_messages`),
//! must not touch SQL, and must not store chat states. Decisions the README records: join history
//! defaults to [`DEFAULT_HISTORY`] messages; a user removed over REST gets an unavailable
//! presence with status 321 (affiliation change), a deleted dialog a `<destroy/>`; both carry
//! the SDK's `<xmlns><code>…</code></xmlns>` shim next to the standard status.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::chat::messages::{message_query, MessageUpdate};
use crate::chat::rules::{self, Action, Role};
use crate::chat::{Actor, ChatError, ChatEvent};
use crate::hub::rooms::{Membership, Occupant, RoomKey};
use crate::hub::ConnId;
use crate::model::filter::{RawFilter, SortDir};
use crate::model::message::MessageView;
use crate::model::{AppId, Dialog, DialogType, ObjectId, UserId};
use crate::xmpp::dispatch::Reply;
use crate::xmpp::ext::history;
use crate::xmpp::ns;
use crate::xmpp::stanza::{StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

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

fn room_jid(s: &Services, app: AppId, dialog: &str) -> String {
    format!("{}_{dialog}@{}", app.0, service(s.domain()))
}

fn key(actor: &Actor, room: &RoomAddr) -> RoomKey {
    (actor.app.id, room.dialog.clone())
}

fn user_key(app: AppId, uid: i64) -> UserKey {
    UserKey {
        app,
        user: UserId(uid),
    }
}

fn chat_err(e: ChatError) -> StanzaError {
    StanzaError::from(&e)
}

fn no_room() -> StanzaError {
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
    match el.attr("type") {
        Some("error") => return Ok(()),
        Some("groupchat") => {}
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

/// Affiliation and role of `uid` as XEP-0045 shows them, from the chat roles.
fn item(d: &Dialog, members: &[i64], uid: i64) -> Element {
    let role = rules::role_of(d, UserId(uid), members.contains(&uid));
    let affiliation = match role {
        Role::SuperAdmin => "owner",
        Role::Admin => "admin",
        Role::Regular => "member",
        Role::Outsider => "none",
    };
    let muc_role = match role {
        Role::SuperAdmin | Role::Admin => "moderator",
        r if rules::check(r, d.kind, Action::SendMessage).is_ok() => "participant",
        _ => "visitor",
    };
    Element::new("item", ns::MUC_USER)
        .with_attr("affiliation", affiliation)
        .with_attr("role", muc_role)
}

/// `<status code/>` plus the SDK 6.1.2 shim `<xmlns><code/></xmlns>` it reads instead.
fn status_with_shim(x: &mut Element, code: &str) {
    x.push(Element::new("status", ns::MUC_USER).with_attr("code", code));
    x.push(
        Element::new("xmlns", ns::MUC_USER)
            .with_child(Element::new("code", ns::MUC_USER).with_text(code)),
    );
}

fn occupant_presence(room_jid: &str, uid: i64, template: &Element, item: Element) -> Element {
    let mut p = Element::new("presence", ns::CLIENT).with_attr("from", format!("{room_jid}/{uid}"));
    if let Some(show) = template.attr("type") {
        p.set_attr("type", show);
    }
    for c in template.elements() {
        if c.ns != ns::MUC && c.ns != ns::MUC_USER {
            p.push(c.clone());
        }
    }
    p.push(Element::new("x", ns::MUC_USER).with_child(item));
    p
}

/// Sends `presence` (from the room) to every joined connection of the occupants listed.
fn to_occupants(s: &Services, app: AppId, occupants: &[Occupant], presence: &Element) {
    for o in occupants {
        let bare = user_key(app, o.user).bare_jid(s.domain()).to_string();
        for (conn, resource) in &o.conns {
            let mut p = presence.clone();
            p.set_attr("to", format!("{bare}/{resource}"));
            s.hub.deliver_to_conn(user_key(app, o.user), *conn, p);
        }
    }
}

fn unavailable(presence: &Element) -> Element {
    let mut p = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
    if let Some(f) = presence.attr("from") {
        p.set_attr("from", f);
    }
    let item = presence
        .child("x", ns::MUC_USER)
        .and_then(|x| x.child("item", ns::MUC_USER))
        .cloned()
        .map(|mut i| {
            i.set_attr("role", "none");
            i
        });
    let mut x = Element::new("x", ns::MUC_USER);
    if let Some(i) = item {
        x.push(i);
    }
    p.push(x);
    p
}

/// Adds status codes. A self-presence gets 110 first and the SDK shim after each code (the
/// SDK reads the first shim); others get plain codes, since a shim there hides the occupant
/// change from the SDK's join/leave listeners.
fn with_status(mut p: Element, codes: &[&str], self_presence: bool) -> Element {
    for n in p.children.iter_mut() {
        if let crate::xmpp::stream::Node::Element(x) = n {
            if x.is("x", ns::MUC_USER) {
                if self_presence {
                    status_with_shim(x, "110");
                }
                for c in codes {
                    if self_presence {
                        status_with_shim(x, c);
                    } else {
                        x.push(Element::new("status", ns::MUC_USER).with_attr("code", *c));
                    }
                }
            }
        }
    }
    p
}

/// A `presence` addressed to a room: join (available) or leave (unavailable). Returns what the
/// sender's own connection gets, in order; an error is the join error to send back.
pub async fn on_presence(
    s: &Services,
    actor: &Actor,
    conn: ConnId,
    full: &str,
    el: Element,
    room: RoomAddr,
) -> Result<Vec<Element>, StanzaError> {
    let uid = actor.user.0;
    let app = actor.app.id;
    let k = key(actor, &room);
    let rjid = room_jid(s, app, &room.dialog);
    let id = el.attr("id").map(str::to_owned);
    let resource = full.split_once('/').map(|(_, r)| r).unwrap_or_default();
    let self_addr = |mut p: Element| {
        p.set_attr("to", full);
        if let Some(i) = &id {
            p.set_attr("id", i.clone());
        }
        p
    };
    match el.attr("type") {
        None => {}
        Some("unavailable") => {
            let mut mine = unavailable(&Element::new("presence", ns::CLIENT))
                .with_attr("from", format!("{rjid}/{uid}"));
            if let Some(Some(gone)) = s.hub.rooms.leave(&k, uid, conn) {
                let p = unavailable(&gone.presence);
                to_occupants(s, app, &s.hub.rooms.occupants(&k), &p);
                mine = unavailable(&gone.presence);
            }
            return Ok(vec![self_addr(with_status(mine, &[], true))]);
        }
        Some("error") => return Ok(Vec::new()),
        // Subscriptions and probes mean nothing to a room.
        Some(_) => return Ok(Vec::new()),
    }
    let nick = room.nick.as_deref().ok_or_else(|| {
        StanzaError::bad_request().with_text("a join names the nick: room/{user_id}")
    })?;
    if nick != uid.to_string() {
        return Err(StanzaError::conflict().with_text("the nick in a room is the user id"));
    }
    let (dialog, members) = s
        .chat
        .room_for_read(actor, &room.dialog)
        .await
        .map_err(chat_err)?;
    if !dialog.kind.is_room() {
        return Err(no_room());
    }
    let max = s.config.xmpp.rooms_joined_max;
    if !s.hub.rooms.may_join(&k, conn, max) {
        return Err(StanzaError::not_allowed().with_text(format!(
            "too many rooms joined (at most {max} per connection)"
        )));
    }
    // The room keeps this presence for as long as the connection stays and copies it to every
    // occupant: its payload is bounded.
    let max_bytes = s.config.xmpp.room_presence_max_bytes;
    let payload: usize = el
        .elements()
        .filter(|c| c.ns != ns::MUC && c.ns != ns::MUC_USER)
        .map(|c| c.to_standalone_xml().len())
        .sum();
    if payload > max_bytes {
        return Err(StanzaError::not_acceptable().with_text(format!(
            "the presence is too large to keep in a room (at most {max_bytes} bytes)"
        )));
    }
    let me = occupant_presence(&rjid, uid, &el, item(&dialog, &members, uid));
    let joined = s.hub.rooms.join(&k, uid, conn, resource, me.clone());
    if joined.again {
        // A presence update from an occupant: shown to the others, confirmed to itself.
        to_occupants(s, app, &joined.others, &me);
        return Ok(vec![self_addr(with_status(me, &[], true))]);
    }
    let mut out = Vec::new();
    for o in &joined.others {
        let mut p = o.presence.clone();
        p.set_attr("to", full);
        out.push(p);
    }
    if joined.first {
        to_occupants(s, app, &joined.others, &me);
    }
    out.push(self_addr(with_status(me, &["100"], true)));
    let (limit, since) = history_request(s, el.child("x", ns::MUC));
    if limit > 0 {
        for v in join_history(s, actor, &room.dialog, limit, since).await? {
            out.push(history_message(&rjid, full, &v));
        }
    }
    Ok(out)
}

/// `(maxstanzas, since unix seconds)` of a join's `<history/>`.
fn history_request(s: &Services, x: Option<&Element>) -> (i64, Option<i64>) {
    let h = x.and_then(|x| x.child("history", ns::MUC));
    let Some(h) = h else {
        return (DEFAULT_HISTORY, None);
    };
    let limit = h
        .attr("maxstanzas")
        .and_then(|n| n.trim().parse::<i64>().ok())
        .unwrap_or(DEFAULT_HISTORY)
        .clamp(0, MAX_HISTORY);
    let since = h
        .attr("since")
        .and_then(crate::model::time::parse_date)
        .map(|t| t.unix_timestamp())
        .or_else(|| {
            h.attr("seconds")
                .and_then(|n| n.trim().parse::<i64>().ok())
                .map(|secs| s.clock.unix_seconds() - secs.max(0))
        });
    (limit, since)
}

async fn join_history(
    s: &Services,
    actor: &Actor,
    dialog: &str,
    limit: i64,
    since: Option<i64>,
) -> Result<Vec<MessageView>, StanzaError> {
    let filters = since
        .map(|t| {
            vec![RawFilter {
                field: "date_sent".into(),
                op: Some("gte".into()),
                values: vec![t.to_string()],
            }]
        })
        .unwrap_or_default();
    let q = message_query(
        filters,
        Some(("date_sent".into(), SortDir::Desc)),
        Some(limit),
        None,
    )
    .map_err(chat_err)?;
    let mut items = s
        .chat
        .list_messages(actor, Some(dialog.to_owned()), q, false)
        .await
        .map_err(chat_err)?;
    items.reverse();
    Ok(items)
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A stored message as a room replays it on join, with its XEP-0203 delay.
fn history_message(rjid: &str, to: &str, v: &MessageView) -> Element {
    let m = &v.message;
    let mut el = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("id", m.id.to_string())
        .with_attr("from", format!("{rjid}/{}", m.sender_id))
        .with_attr("to", to);
    if let Some(b) = &m.body {
        el.push(Element::new("body", ns::CLIENT).with_text(b.clone()));
    }
    let mut x = Element::new("extraParams", ns::CLIENT);
    x.push(Element::new("save_to_history", ns::CLIENT).with_text("1"));
    x.push(Element::new("dialog_id", ns::CLIENT).with_text(m.dialog_id.to_string()));
    x.push(Element::new("message_id", ns::CLIENT).with_text(m.id.to_string()));
    x.push(Element::new("date_sent", ns::CLIENT).with_text(m.date_sent.to_string()));
    for (k, val) in &m.custom {
        x.push(Element::new(k, ns::CLIENT).with_text(text_of(val)));
    }
    if let serde_json::Value::Array(list) = &m.attachments {
        for a in list {
            if let serde_json::Value::Object(o) = a {
                let mut att = Element::new("attachment", ns::CLIENT);
                for (k, val) in o {
                    att.set_attr(k, text_of(val));
                }
                x.push(att);
            }
        }
    }
    el.push(x);
    if m.markable {
        el.push(Element::new("markable", ns::CHAT_MARKERS));
    }
    let stamp = time::OffsetDateTime::from_unix_timestamp(m.date_sent)
        .map(crate::model::time::iso)
        .unwrap_or_else(|_| crate::model::time::iso(m.created_at));
    el.push(
        Element::new("delay", ns::DELAY)
            .with_attr("from", rjid)
            .with_attr("stamp", stamp),
    );
    el
}

/// An iq `get` to the MUC service (`room: None`) or to a room: disco#info and disco#items;
/// anything else is not served.
pub async fn on_iq(
    s: &Services,
    actor: &Actor,
    get: bool,
    payload: &Element,
    room: Option<RoomAddr>,
) -> Reply {
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
        "muc_persistent",
        "muc_nonanonymous",
        access,
    ] {
        q.push(feature(f));
    }
    Ok(Some(q))
}

/// The connection's stream ended or went unavailable: it leaves every room it had joined.
pub fn leave_all(s: &Services, user: UserKey, conn: ConnId) {
    for (k, gone) in s.hub.rooms.leave_conn(user.user.0, conn) {
        let p = unavailable(&gone.presence);
        to_occupants(s, k.0, &s.hub.rooms.occupants(&k), &p);
    }
}

/// A user is no longer in the dialog: out of the room, told so on every connection (status
/// 321, or `<destroy/>` when the dialog is gone), and the remaining occupants see them leave.
fn remove_user(s: &Services, k: &RoomKey, uid: i64, destroyed: bool) {
    let rjid = room_jid(s, k.0, &k.1);
    let gone = s.hub.rooms.remove_user(k, uid);
    let base = gone
        .as_ref()
        .map(|o| unavailable(&o.presence))
        .unwrap_or_else(|| {
            unavailable(&Element::new("presence", ns::CLIENT))
                .with_attr("from", format!("{rjid}/{uid}"))
        });
    let mut mine = with_status(base.clone(), if destroyed { &[] } else { &["321"] }, true);
    if destroyed {
        for n in mine.children.iter_mut() {
            if let crate::xmpp::stream::Node::Element(x) = n {
                if x.is("x", ns::MUC_USER) {
                    x.push(Element::new("destroy", ns::MUC_USER).with_child(
                        Element::new("reason", ns::MUC_USER).with_text("the dialog was deleted"),
                    ));
                }
            }
        }
    }
    let user = user_key(k.0, uid);
    s.hub
        .deliver_addressed(user, &user.bare_jid(s.domain()).to_string(), &mine);
    if gone.is_some() && !destroyed {
        let others = with_status(base, &["321"], false);
        to_occupants(s, k.0, &s.hub.rooms.occupants(k), &others);
    }
}

/// Applies one chat event to the rooms.
pub fn on_event(s: &Services, e: &ChatEvent) {
    match e {
        ChatEvent::OccupantsChanged {
            app,
            dialog,
            removed,
            ..
        } => {
            let k = (*app, dialog.to_string());
            s.hub.rooms.invalidate(&k);
            for uid in removed {
                remove_user(s, &k, *uid, false);
            }
        }
        ChatEvent::DialogDeleted { app, dialog, .. } => {
            // Only joined occupants hear of it: the event does not say whether the dialog was
            // a room at all (a private dialog is not), and members who never joined simply
            // stop receiving.
            let k = (*app, dialog.to_string());
            s.hub.rooms.invalidate(&k);
            for o in s.hub.rooms.occupants(&k) {
                remove_user(s, &k, o.user, true);
            }
        }
        _ => {}
    }
}

/// Follows the chat events for the life of the server (subscribe before serving, so nothing
/// committed after start is missed).
pub async fn watch_events(
    s: Arc<Services>,
    mut events: broadcast::Receiver<ChatEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => on_event(&s, &e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "room events lagged: membership cache cleared");
                    s.hub.rooms.invalidate_all();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
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

    #[test]
    fn self_presence_carries_status_110_and_the_sdk_shim() {
        let p = occupant_presence(
            "1_x@muc.localhost",
            7,
            &Element::new("presence", ns::CLIENT),
            Element::new("item", ns::MUC_USER),
        );
        let p = with_status(p, &[], true);
        let x = p.child("x", ns::MUC_USER).unwrap();
        assert_eq!(
            x.child("status", ns::MUC_USER).unwrap().attr("code"),
            Some("110")
        );
        let shim = x.child("xmlns", ns::MUC_USER).unwrap();
        assert_eq!(shim.child("code", ns::MUC_USER).unwrap().text(), "110");
    }
}
