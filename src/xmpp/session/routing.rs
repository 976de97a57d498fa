//! Addressing and delivery: where a message, presence or iq from this connection goes (the
//! server, a user of the sender's application, the MUC service or a room), the sender's
//! message rate, and the dispatch table's hook phases every message and presence runs through
//! (see `dispatch`); an iq goes to its one handler, or is routed to a full JID. 1:1 message
//! delivery itself is the Deliver hook registered here. Another application's user is "no such
//! user" (`service-unavailable`), decided once, in [`Session::resolve`].
//!
//! Must not interpret payloads (each XEP's file does) nor grow per-XEP branches: a new
//! message or presence behaviour is a hook in its extension's file.

use crate::xmpp::dispatch::{
    load_actor, BoxFuture, Extension, Flow, Hook, Kind, On, Phase, Request, Routed, Spec, Target,
    To,
};
use crate::xmpp::ext::{muc, privacy};
use crate::xmpp::ns;
use crate::xmpp::stanza::{iq_result, Condition, IqType, Jid, MessageType, StanzaError, UserKey};
use crate::xmpp::stream::{Element, Transport};

use super::{End, Session};

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0085 Chat States",
    status: "complete",
    notes: "relayed, never stored",
    ejabberd: "yes (relayed)",
    prosody: "yes (relayed)",
}];

pub const EXTENSION: Extension = Extension {
    handlers: &[],
    hooks: &[Hook {
        on: On::Message,
        phase: Phase::Deliver,
        run: deliver_message,
    }],
    specs: SPECS,
};

/// A 1:1 message goes to the addressed resource if it is connected, else to every connection
/// of the user (headlines and errors to a full JID only to that resource).
fn deliver_message(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let To::User(target, resource) = &m.to else {
            return Flow::Next;
        };
        // An unknown type is delivered like `normal` (RFC 6121 §5.2.2), as it always was.
        let resource_only = matches!(
            m.message_type(),
            Ok(MessageType::Headline | MessageType::Error)
        );
        let hub = &m.services.hub;
        m.to_resource = resource
            .as_deref()
            .and_then(|r| hub.deliver_to_resource_conn(*target, r, m.stanza.clone()));
        m.delivered = match resource {
            Some(_) if m.to_resource.is_some() => 1,
            // Not here: the resource may be bound on another node.
            Some(r) if hub.deliver_to_resource_elsewhere(*target, r, &m.stanza) => {
                m.to_resource_elsewhere = true;
                1
            }
            Some(_) if resource_only => 0,
            _ => hub.deliver_to_user(*target, &m.stanza),
        };
        Flow::Next
    })
}

pub(super) enum Dest {
    Server,
    User(UserKey, Option<String>),
    /// The MUC service itself (`muc.{domain}`).
    MucService,
    /// A room of the sender's application, or an occupant of it.
    Room(muc::RoomAddr),
}

impl Session {
    /// Whether `dest` is this session's own account (bare JID).
    fn is_own(&self, dest: &Dest) -> bool {
        matches!(dest, Dest::User(u, None) if *u == self.user)
    }

    /// Where a stanza's `to` points.
    pub(super) fn resolve(&self, to: Option<&str>) -> Result<Dest, StanzaError> {
        let Some(to) = to else {
            return Ok(Dest::Server);
        };
        let jid = Jid::parse(to).ok_or_else(StanzaError::bad_request)?;
        if jid.domain == muc::service(self.domain()) {
            return match &jid.local {
                None => Ok(Dest::MucService),
                Some(local) => muc::parse_room(local, self.user.app, jid.resource).map(Dest::Room),
            };
        }
        if !jid.domain.eq_ignore_ascii_case(self.domain()) {
            return Err(StanzaError::remote_server_not_found());
        }
        if jid.local.is_none() {
            return Ok(Dest::Server);
        }
        let user = jid
            .user(self.domain())
            .ok_or_else(StanzaError::service_unavailable)?;
        if !self.user.same_app(&user) {
            // Another application's user: as if there were no such user.
            return Err(StanzaError::service_unavailable());
        }
        Ok(Dest::User(user, jid.resource))
    }

    pub(super) async fn on_message(
        &mut self,
        t: &mut Transport,
        mut el: Element,
    ) -> Result<(), End> {
        el.set_attr("from", self.full.clone());
        // Over the sender's message rate: refused with policy-violation (wait), not relayed.
        if let Err(e) = self
            .services
            .chat
            .admit_message(self.user.app, self.user.user)
        {
            return self.reply_error(t, &el, StanzaError::from(&e)).await;
        }
        if el.attr("to").is_none() {
            // RFC 6120 §10.3.1: a message without `to` is for the sender's own bare JID.
            el.set_attr("to", self.bare.clone());
        }
        let to = match self.resolve(el.attr("to")) {
            Ok(Dest::User(u, r)) => To::User(u, r),
            Ok(Dest::Room(room)) => To::Room(room),
            Ok(Dest::Server | Dest::MucService) => return Ok(()),
            Err(e) => return self.reply_error(t, &el, e).await,
        };
        if matches!(to, To::User(..)) && MessageType::of(&el) == Ok(MessageType::Groupchat) {
            let e = StanzaError::bad_request().with_text("groupchat messages go to a room");
            return self.reply_error(t, &el, e).await;
        }
        self.run_hooks(t, On::Message, to, el).await
    }

    pub(super) async fn on_presence(
        &mut self,
        t: &mut Transport,
        mut el: Element,
    ) -> Result<(), End> {
        el.set_attr("from", self.full.clone());
        let to = if el.attr("to").is_none() {
            To::Broadcast
        } else {
            match self.resolve(el.attr("to")) {
                Ok(Dest::User(u, r)) => To::User(u, r),
                Ok(Dest::Room(room)) => To::Room(room),
                Ok(Dest::Server | Dest::MucService) => return Ok(()),
                Err(e) => return self.reply_error(t, &el, e).await,
            }
        };
        self.run_hooks(t, On::Presence, to, el).await
    }

    /// Runs the hook phases on one message or presence, lending them the connection's
    /// presence state and loaded application; then writes what they queued for this
    /// connection, then the refusal or bounce, if any.
    async fn run_hooks(
        &mut self,
        t: &mut Transport,
        on: On,
        to: To,
        stanza: Element,
    ) -> Result<(), End> {
        let services = self.services.clone();
        let mut m = Routed {
            services: services.clone(),
            user: self.user,
            conn: self.conn,
            full: self.full.clone(),
            bare: self.bare.clone(),
            to,
            stanza,
            delivered: 0,
            to_resource: None,
            to_resource_elsewhere: false,
            out: Vec::new(),
            presence: std::mem::take(&mut self.presence),
            app: self.app.take(),
        };
        let flow = services.dispatch.hooks.run(on, &mut m).await;
        self.presence = m.presence;
        self.app = m.app;
        for el in m.out {
            self.send(t, el).await?;
        }
        match flow {
            Flow::Next | Flow::Done | Flow::Drop(None) => Ok(()),
            // The server failed to take the message (its store failed): never acked.
            Flow::Refuse(e)
                if on == On::Message
                    && e.condition == Condition::InternalServerError
                    && self.sm.is_some() =>
            {
                Err(self.unhandled(t).await)
            }
            Flow::Refuse(e) => self.reply_error(t, &m.stanza, e).await,
            Flow::Drop(Some(bounce)) => self.send(t, bounce).await,
        }
    }

    pub(super) async fn on_iq(&mut self, t: &mut Transport, mut el: Element) -> Result<(), End> {
        el.set_attr("from", self.full.clone());
        // RFC 6120 §10.3.3: no `to` means the account itself, and §8.1.2.1 has the answer come
        // from the account's bare JID (clients such as aioxmpp drop one "from" the domain).
        if el.attr("to").is_none() {
            el.set_attr("to", self.jid.bare().to_string());
        }
        let kind = match IqType::of(&el) {
            Ok(IqType::Get) => Kind::IqGet,
            Ok(IqType::Set) => Kind::IqSet,
            Ok(IqType::Result | IqType::Error) => {
                if let (Some((pid, _)), Some(id)) = (&self.ping, el.attr("id")) {
                    if pid == id {
                        self.ping = None;
                        return Ok(());
                    }
                }
                match self.resolve(el.attr("to")) {
                    Ok(Dest::User(u, Some(r))) => {
                        self.services.hub.deliver_to_resource(u, &r, el);
                    }
                    // To the server or the account: perhaps the answer to a question the server
                    // asked this connection (`xmpp::server_iq`); anything else is dropped.
                    Ok(d) if matches!(d, Dest::Server) || self.is_own(&d) => {
                        let _ = self.services.server_iqs.answer(self.conn, el);
                    }
                    _ => {}
                }
                return Ok(());
            }
            // RFC 6120 §8.2.3: an iq without one of the four types is a bad request.
            Err(unknown) => return self.reply_error(t, &el, unknown.into()).await,
        };
        let payload = match (el.attr("id"), el.elements().next()) {
            (Some(_), Some(p)) if el.elements().count() == 1 => p.clone(),
            _ => return self.reply_error(t, &el, StanzaError::bad_request()).await,
        };
        // One's own account is never screened by one's own privacy lists (iqs to oneself).
        let dest = self.resolve(el.attr("to")).ok().filter(|d| !self.is_own(d));
        if let Some(Dest::User(peer, _)) = dest {
            if let Err(bounce) = privacy::screen(
                &self.services,
                self.user,
                peer,
                crate::privacy::Kind::Iq,
                &el,
            )
            .await
            {
                return match bounce {
                    Some(b) => self.send(t, b).await,
                    None => Ok(()),
                };
            }
        }
        let target = match self.resolve(el.attr("to")) {
            Ok(Dest::Room(room)) => return self.room_iq(t, el, kind, payload, Some(room)).await,
            Ok(Dest::MucService) => return self.room_iq(t, el, kind, payload, None).await,
            Ok(Dest::Server) => Target::Server,
            Ok(Dest::User(u, None)) if u == self.user => Target::Account,
            Ok(Dest::User(u, None)) => Target::User(u),
            Ok(Dest::User(u, Some(r))) => {
                // An iq to another connection's full JID is routed as is.
                if self.services.hub.deliver_to_resource(u, &r, el.clone()) {
                    return Ok(());
                }
                return self
                    .reply_error(t, &el, StanzaError::service_unavailable())
                    .await;
            }
            Err(e) => return self.reply_error(t, &el, e).await,
        };
        if payload.is("bind", ns::BIND) {
            return self.reply_error(t, &el, StanzaError::not_allowed()).await;
        }
        let reg = self.services.dispatch.get(kind, &payload.ns);
        let handler = reg
            .filter(|r| !matches!(target, Target::User(_)) || r.for_users)
            .and_then(|r| r.handler);
        let Some(handler) = handler else {
            return self
                .reply_error(t, &el, StanzaError::service_unavailable())
                .await;
        };
        let mut before = Vec::new();
        let reply = handler(Request {
            services: &self.services,
            user: self.user,
            conn: self.conn,
            jid: &self.jid,
            target,
            stanza: &el,
            payload: &payload,
            before: &mut before,
        })
        .await;
        let out = match reply {
            Ok(p) => iq_result(&el, self.domain(), p),
            Err(e) => e.reply_to(&el, self.domain()),
        };
        self.send_answer(t, before, Some(out)).await
    }

    /// An iq to the MUC service or a room: exactly one answer.
    async fn room_iq(
        &mut self,
        t: &mut Transport,
        el: Element,
        kind: Kind,
        payload: Element,
        room: Option<muc::RoomAddr>,
    ) -> Result<(), End> {
        let get = kind == Kind::IqGet;
        let mut before = Vec::new();
        let reply = match load_actor(&self.services, self.user, &mut self.app).await {
            Ok(actor) => {
                let iq = muc::Iq {
                    get,
                    payload: &payload,
                    from: &self.full,
                    conn: self.conn,
                    before: &mut before,
                };
                muc::on_iq(&self.services, &actor, iq, room).await
            }
            Err(e) => Err(e),
        };
        let out = match reply {
            Ok(p) => iq_result(&el, self.domain(), p),
            Err(e) => e.reply_to(&el, self.domain()),
        };
        self.send_answer(t, before, Some(out)).await
    }
}
