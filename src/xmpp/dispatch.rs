//! The dispatch table: every extension the server runs, listed once in [`table()`], each with
//! its iq/nonza handlers (by stanza kind and payload namespace) and its message/presence hooks
//! (by phase). The session asks it what to do with every stanza; adding an XEP is one file in
//! `ext/` plus one line in `table()`. Disco reads the advertised features from here, so it can
//! only advertise what is registered.
//!
//! **Messages and presence go through hooks, in phases** (Prosody's `pre-message/*` and
//! `message/*` events are the model). Routing (`session/routing.rs`) stamps `from`, applies the
//! sender's message rate, resolves `to` (another application's user is "no such user") and
//! then runs, for one stanza, each phase's hooks in the order their extensions appear in
//! `table()`:
//!
//! 1. [`Phase::Screen`]: may refuse before anything changes (privacy). A refusal stops here:
//!    nothing is stored, nothing relayed.
//! 2. [`Phase::Apply`]: what the stanza changes in the store: chat markers, corrections,
//!    deletions, `save_to_history` (stored durably and stamped). Each awaits its commit, so
//!    the stream handles its next stanza, and counts its stream-management ack, only once the
//!    change is durable. A refusal answers an error and the stanza is not relayed.
//! 3. [`Phase::Deliver`]: the stanza goes to its destination (1:1 routing, rooms, presence);
//!    a hook records how many connections took it in [`Routed::delivered`], or returns
//!    [`Flow::Done`] when it took the stanza over entirely (a room message).
//! 4. [`Phase::Undelivered`]: only when no connection took it: offline storage.
//! 5. [`Phase::Delivered`]: after delivery (live or kept for later): carbons, leaving rooms on
//!    unavailable, the presence a subscription approval sends.
//!
//! A hook returns [`Flow::Next`] to go on; anything else ends the stanza's handling. Hooks
//! see every stanza of their kind and check themselves what they apply to (the destination in
//! [`Routed::to`], the type, the payload): a hook that does nothing costs a branch. Iqs are
//! not hooked: they go to exactly one handler, by payload namespace.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::ext;
use super::stanza::{Jid, MessageType, PresenceType, StanzaError, UnknownType, UserKey};
use super::stream::Element;
use super::Services;
use crate::hub::ConnId;

/// What a handler is registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    IqGet,
    IqSet,
    /// A top-level element that is not a stanza (XEP-0352 `<active/>`, …).
    Nonza,
}

/// Where an iq was addressed, as far as handlers care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The server (`to` = the domain).
    Server,
    /// The sender's own account: an iq with no `to`, or to the sender's bare JID, which the
    /// server answers on the account's behalf (RFC 6120 §10.3.3). Every server handler takes it.
    Account,
    /// Another user's bare JID, answered by the server on the user's behalf.
    User(UserKey),
}

/// One request to a handler.
pub struct Request<'a> {
    pub services: &'a Arc<Services>,
    /// The requesting user and connection.
    pub user: UserKey,
    pub conn: ConnId,
    pub jid: &'a Jid,
    pub target: Target,
    /// The whole stanza (iq or nonza) and, for an iq, its payload child.
    pub stanza: &'a Element,
    pub payload: &'a Element,
    /// Stanzas for the requesting connection, written in this order before the answer (the
    /// results of an archive query precede its `<fin/>`).
    pub before: &'a mut Vec<Element>,
}

/// The payload of the result (`None`: an empty result / nothing to send back).
pub type Reply = Result<Option<Element>, StanzaError>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type Handler = for<'a> fn(Request<'a>) -> BoxFuture<'a, Reply>;

/// A handler's registration.
pub struct Registration {
    pub kind: Kind,
    pub ns: &'static str,
    pub handler: Option<Handler>,
    /// Disco features this registration implements.
    pub features: &'static [&'static str],
    /// Also answers when addressed to another user's bare JID.
    pub for_users: bool,
}

/// One extension as the table lists it: its iq/nonza handlers, its message/presence hooks and
/// the protocols it implements (the README's protocol table is rendered from these, see
/// `xmpp::xep_table`).
pub struct Extension {
    pub handlers: &'static [Registration],
    pub hooks: &'static [Hook],
    pub specs: &'static [Spec],
}

impl Extension {
    /// An extension of iq/nonza handlers only, not documented yet (a test fails on one in the
    /// table: give it its [`Spec`]s with [`Extension::documented`]).
    pub const fn handlers(handlers: &'static [Registration]) -> Self {
        Extension {
            handlers,
            hooks: &[],
            specs: &[],
        }
    }

    /// An extension of iq/nonza handlers only, with the protocol rows it implements.
    pub const fn documented(handlers: &'static [Registration], specs: &'static [Spec]) -> Self {
        Extension {
            handlers,
            hooks: &[],
            specs,
        }
    }
}

/// One row of the README's protocol table: a protocol (or a part of one) an extension
/// implements, how far, and what ejabberd and Prosody 0.12 ship for it (from their
/// documentation; `?` where that was not verified).
pub struct Spec {
    /// The first cell: the RFC or XEP number (or `ConnectyCube`), then its title.
    pub name: &'static str,
    /// `complete`, `partial`, … as far as Parley goes.
    pub status: &'static str,
    pub notes: &'static str,
    pub ejabberd: &'static str,
    pub prosody: &'static str,
}

// ---------------------------------------------------------------------------------------------
// Message and presence hooks.

/// Which stanzas a hook sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum On {
    Message,
    Presence,
}

/// The phases of a message or presence, in the order they run (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Screen,
    Apply,
    Deliver,
    Undelivered,
    Delivered,
}

/// What a hook tells the pipeline.
#[derive(Debug)]
pub enum Flow {
    /// Go on: the next hook, then the next phase.
    Next,
    /// The stanza is fully handled: no later hook or phase runs.
    Done,
    /// Refused, not relayed: the sender gets this error (unless the stanza is itself an error).
    Refuse(StanzaError),
    /// Refused: the sender gets this stanza back (a privacy bounce), or nothing at all.
    Drop(Option<Element>),
}

/// A hook: runs on one stanza in flight. Generic over the context so the pipeline can be
/// tested without a server; the server's hooks take [`Routed`].
pub type HookFn<C> = for<'a> fn(&'a mut C) -> BoxFuture<'a, Flow>;

/// A hook's registration.
pub struct Hook<C: 'static = Routed> {
    pub on: On,
    pub phase: Phase,
    pub run: HookFn<C>,
}

/// What the pipeline needs to know about its context between phases.
pub trait InFlight: Send {
    /// Connections the stanza reached in [`Phase::Deliver`].
    fn delivered(&self) -> usize;
}

/// The hooks of every extension, by stanza kind and phase, each list in table order.
pub struct Hooks<C: 'static> {
    by: HashMap<(On, Phase), Vec<HookFn<C>>>,
}

impl<C: InFlight> Hooks<C> {
    pub fn new<'x>(groups: impl IntoIterator<Item = &'x [Hook<C>]>) -> Self {
        let mut by: HashMap<(On, Phase), Vec<HookFn<C>>> = HashMap::new();
        for group in groups {
            for h in group {
                by.entry((h.on, h.phase)).or_default().push(h.run);
            }
        }
        Hooks { by }
    }

    fn of(&self, on: On, phase: Phase) -> &[HookFn<C>] {
        self.by.get(&(on, phase)).map_or(&[], Vec::as_slice)
    }

    /// Runs the phases on one stanza: Screen, Apply, Deliver, then Undelivered (when no
    /// connection took it) and Delivered. Returns the first flow that was not [`Flow::Next`],
    /// or `Next` when every hook let the stanza through.
    pub async fn run(&self, on: On, ctx: &mut C) -> Flow {
        for phase in [Phase::Screen, Phase::Apply, Phase::Deliver] {
            for hook in self.of(on, phase) {
                match hook(ctx).await {
                    Flow::Next => {}
                    other => return other,
                }
            }
        }
        let after: &[Phase] = if ctx.delivered() == 0 {
            &[Phase::Undelivered, Phase::Delivered]
        } else {
            &[Phase::Delivered]
        };
        for phase in after {
            for hook in self.of(on, *phase) {
                match hook(ctx).await {
                    Flow::Next => {}
                    other => return other,
                }
            }
        }
        Flow::Next
    }
}

/// Where a message or presence is going, as routing resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum To {
    /// A presence without `to`: the sender's broadcast (available or unavailable).
    Broadcast,
    /// A user of the sender's application, and the addressed resource if any.
    User(UserKey, Option<String>),
    /// A room of the sender's application, or an occupant of it.
    Room(ext::muc::RoomAddr),
}

/// One message or presence in flight, as the hooks see it.
pub struct Routed {
    pub services: Arc<Services>,
    /// The sender and its connection.
    pub user: UserKey,
    pub conn: ConnId,
    pub full: String,
    pub bare: String,
    pub to: To,
    /// The stanza, `from` already the sender's full JID; hooks may stamp it.
    pub stanza: Element,
    /// Connections the stanza reached (set in [`Phase::Deliver`]).
    pub delivered: usize,
    /// The one connection a message to a full JID went to, when that resource took it alone
    /// (set in [`Phase::Deliver`]); `None` when it went to every connection, or to none. The
    /// user's other connections may get a copy (XEP-0280 `received` carbons).
    pub to_resource: Option<ConnId>,
    /// A message to a full JID went to that resource alone, on another node (set in
    /// [`Phase::Deliver`]): the user's other connections may get a `received` carbon there too.
    pub to_resource_elsewhere: bool,
    /// Stanzas for the sender's own connection, written in this order after the hooks ran.
    pub out: Vec<Element>,
    /// The connection's RFC 6121 presence state (lent by the session for the stanza).
    pub presence: ext::presence::State,
    /// The sender's application, loaded when a hook first needs the chat actor (lent by the
    /// session, so it is loaded once per stream).
    pub app: Option<crate::model::Application>,
}

impl InFlight for Routed {
    fn delivered(&self) -> usize {
        self.delivered
    }
}

impl Routed {
    pub fn domain(&self) -> &str {
        self.services.domain()
    }

    /// A message's `type` (absent is `normal`). `Err` for a value outside RFC 6121: each hook
    /// says what it does with one (none guesses `normal` for it).
    pub fn message_type(&self) -> Result<MessageType, UnknownType> {
        MessageType::of(&self.stanza)
    }

    /// A presence's `type` (absent is available). `Err` for a value outside RFC 6121: each
    /// hook says what it does with one.
    pub fn presence_type(&self) -> Result<PresenceType, UnknownType> {
        PresenceType::of(&self.stanza)
    }

    /// The recipient of a 1:1 `chat` message (what the Apply hooks act on): `None` for rooms
    /// and other types, an unknown one included.
    pub fn chat_to_user(&self) -> Option<UserKey> {
        match &self.to {
            To::User(u, _) if self.message_type() == Ok(MessageType::Chat) => Some(*u),
            _ => None,
        }
    }

    /// The sender as the chat domain sees them.
    pub async fn actor(&mut self) -> Result<crate::chat::Actor, StanzaError> {
        load_actor(&self.services, self.user, &mut self.app).await
    }

    /// For an Apply hook that changes history from a 1:1 `chat` message carrying the payload
    /// `<name xmlns=ns>`: `None` when the stanza is not such a message (the hook passes it on),
    /// else the sender as the chat domain sees them.
    pub async fn chat_change_actor(
        &mut self,
        name: &str,
        ns: &str,
    ) -> Option<Result<crate::chat::Actor, StanzaError>> {
        if self.chat_to_user().is_none() || self.stanza.child(name, ns).is_none() {
            return None;
        }
        Some(self.actor().await)
    }
}

/// The user as the chat domain sees them; the application is loaded into `app` once.
pub async fn load_actor(
    services: &Services,
    user: UserKey,
    app: &mut Option<crate::model::Application>,
) -> Result<crate::chat::Actor, StanzaError> {
    if app.is_none() {
        *app = crate::db::apps::get(&services.pool, user.app)
            .await
            .ok()
            .flatten();
    }
    let app = app.clone().ok_or_else(StanzaError::internal_server_error)?;
    Ok(crate::chat::Actor {
        from_stream: true,
        app,
        user: user.user,
    })
}

// ---------------------------------------------------------------------------------------------
// The table.

pub struct Dispatch {
    handlers: HashMap<(Kind, &'static str), &'static Registration>,
    features: Vec<&'static str>,
    pub hooks: Hooks<Routed>,
    /// Every extension's protocol rows, in table order (one shared row listed once).
    specs: Vec<&'static Spec>,
    /// How many extensions declare no protocol row (the README test wants none).
    undocumented: usize,
}

impl Dispatch {
    pub fn new(extensions: &[Extension]) -> Self {
        let mut handlers = HashMap::new();
        let mut features = Vec::new();
        for ext in extensions {
            for r in ext.handlers.iter() {
                handlers.insert((r.kind, r.ns), r);
                for f in r.features {
                    if !features.contains(f) {
                        features.push(*f);
                    }
                }
            }
        }
        features.sort_unstable();
        let hooks = Hooks::new(extensions.iter().map(|e| e.hooks));
        let mut specs: Vec<&'static Spec> = Vec::new();
        for spec in extensions.iter().flat_map(|e| e.specs) {
            if !specs.iter().any(|s| std::ptr::eq(*s, spec)) {
                specs.push(spec);
            }
        }
        Dispatch {
            handlers,
            features,
            hooks,
            specs,
            undocumented: extensions.iter().filter(|e| e.specs.is_empty()).count(),
        }
    }

    /// Every registered extension's protocol rows, in table order.
    pub fn specs(&self) -> &[&'static Spec] {
        &self.specs
    }

    /// How many registered extensions declare no protocol row.
    pub fn undocumented(&self) -> usize {
        self.undocumented
    }

    pub fn get(&self, kind: Kind, ns: &str) -> Option<&'static Registration> {
        self.handlers.get(&(kind, ns)).copied()
    }

    /// Every feature the registered handlers implement, sorted.
    pub fn features(&self) -> &[&'static str] {
        &self.features
    }
}

/// The server's extensions, one line each (`session::routing` is 1:1 message delivery). Within
/// a phase, hooks run in this order, which matters in Apply: markers, corrections and
/// deletions apply before history stores a new message (an edit is never stored as one).
/// XEP-0045 rooms (`ext::muc`) are reached by address (`muc.{domain}`, resolved by routing):
/// their iqs are answered through routing, their messages and presence come through hooks.
pub fn table() -> Dispatch {
    Dispatch::new(&[
        ext::core::EXTENSION,
        ext::ping::EXTENSION,
        ext::version::EXTENSION,
        ext::time::EXTENSION,
        ext::vcard::EXTENSION,
        ext::private::EXTENSION,
        ext::register::EXTENSION,
        ext::disco::EXTENSION,
        ext::mam::EXTENSION,
        ext::carbons::EXTENSION,
        ext::csi::EXTENSION,
        ext::last_activity::EXTENSION,
        ext::status_streaming::EXTENSION,
        ext::roster::EXTENSION,
        ext::offline::EXTENSION,
        ext::privacy::EXTENSION,
        ext::blocking::EXTENSION,
        ext::presence::EXTENSION,
        super::session::routing::EXTENSION,
        ext::stanza_id::EXTENSION,
        ext::markers::EXTENSION,
        ext::correction::EXTENSION,
        ext::message_delete::EXTENSION,
        ext::history::EXTENSION,
        ext::muc::EXTENSION,
        ext::pep::EXTENSION,
        ext::http_upload::EXTENSION,
        ext::adhoc::EXTENSION,
        ext::outage::EXTENSION,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a stanza in flight: records which hooks ran.
    #[derive(Default)]
    struct Trace {
        ran: Vec<&'static str>,
        delivered: usize,
    }

    impl InFlight for Trace {
        fn delivered(&self) -> usize {
            self.delivered
        }
    }

    fn note(t: &mut Trace, what: &'static str, flow: Flow) -> BoxFuture<'static, Flow> {
        t.ran.push(what);
        Box::pin(async move { flow })
    }

    fn screen(t: &mut Trace) -> BoxFuture<'_, Flow> {
        note(t, "screen", Flow::Next)
    }
    fn refuse(t: &mut Trace) -> BoxFuture<'_, Flow> {
        note(t, "refuse", Flow::Refuse(StanzaError::not_acceptable()))
    }
    fn apply_a(t: &mut Trace) -> BoxFuture<'_, Flow> {
        note(t, "apply a", Flow::Next)
    }
    fn apply_b(t: &mut Trace) -> BoxFuture<'_, Flow> {
        note(t, "apply b", Flow::Next)
    }
    fn deliver_nowhere(t: &mut Trace) -> BoxFuture<'_, Flow> {
        note(t, "deliver", Flow::Next)
    }
    fn deliver_once(t: &mut Trace) -> BoxFuture<'_, Flow> {
        t.delivered = 1;
        note(t, "deliver", Flow::Next)
    }
    fn take_over(t: &mut Trace) -> BoxFuture<'_, Flow> {
        note(t, "take over", Flow::Done)
    }
    fn undelivered(t: &mut Trace) -> BoxFuture<'_, Flow> {
        note(t, "undelivered", Flow::Next)
    }
    fn delivered(t: &mut Trace) -> BoxFuture<'_, Flow> {
        note(t, "delivered", Flow::Next)
    }

    const fn hook(on: On, phase: Phase, run: HookFn<Trace>) -> Hook<Trace> {
        Hook { on, phase, run }
    }

    /// Registered last phase first, to show the phase decides, not the listing.
    const LATE_FIRST: &[Hook<Trace>] = &[
        hook(On::Message, Phase::Delivered, delivered),
        hook(On::Message, Phase::Undelivered, undelivered),
        hook(On::Message, Phase::Deliver, deliver_nowhere),
        hook(On::Message, Phase::Apply, apply_a),
        hook(On::Message, Phase::Screen, screen),
    ];
    const APPLY_B: &[Hook<Trace>] = &[hook(On::Message, Phase::Apply, apply_b)];
    const REFUSING: &[Hook<Trace>] = &[hook(On::Message, Phase::Screen, refuse)];

    async fn run(groups: &[&'static [Hook<Trace>]], on: On) -> (Flow, Vec<&'static str>) {
        let hooks = Hooks::new(groups.iter().copied());
        let mut t = Trace::default();
        let flow = hooks.run(on, &mut t).await;
        (flow, t.ran)
    }

    #[tokio::test]
    async fn hooks_run_by_phase_whatever_order_they_are_registered_in() {
        let (flow, ran) = run(&[LATE_FIRST], On::Message).await;
        assert!(matches!(flow, Flow::Next));
        assert_eq!(
            ran,
            ["screen", "apply a", "deliver", "undelivered", "delivered"]
        );
    }

    #[tokio::test]
    async fn within_a_phase_hooks_run_in_table_order() {
        let (_, ran) = run(&[APPLY_B, LATE_FIRST], On::Message).await;
        assert_eq!(&ran[..3], ["screen", "apply b", "apply a"]);
        let (_, ran) = run(&[LATE_FIRST, APPLY_B], On::Message).await;
        assert_eq!(&ran[..3], ["screen", "apply a", "apply b"]);
    }

    #[tokio::test]
    async fn a_screen_that_refuses_stops_every_later_phase() {
        let (flow, ran) = run(&[REFUSING, LATE_FIRST], On::Message).await;
        assert!(matches!(flow, Flow::Refuse(_)));
        assert_eq!(ran, ["refuse"]);
    }

    #[tokio::test]
    async fn undelivered_runs_only_when_no_connection_took_the_stanza() {
        const DELIVERS: &[Hook<Trace>] = &[
            hook(On::Message, Phase::Deliver, deliver_once),
            hook(On::Message, Phase::Undelivered, undelivered),
            hook(On::Message, Phase::Delivered, delivered),
        ];
        let (_, ran) = run(&[DELIVERS], On::Message).await;
        assert_eq!(ran, ["deliver", "delivered"]);
    }

    #[tokio::test]
    async fn a_hook_that_takes_the_stanza_over_ends_it() {
        const ROOM: &[Hook<Trace>] = &[
            hook(On::Message, Phase::Deliver, take_over),
            hook(On::Message, Phase::Deliver, deliver_nowhere),
            hook(On::Message, Phase::Undelivered, undelivered),
            hook(On::Message, Phase::Delivered, delivered),
        ];
        let (flow, ran) = run(&[ROOM], On::Message).await;
        assert!(matches!(flow, Flow::Done));
        assert_eq!(ran, ["take over"]);
    }

    #[tokio::test]
    async fn hooks_see_only_their_stanza_kind() {
        const PRESENCE: &[Hook<Trace>] = &[hook(On::Presence, Phase::Screen, refuse)];
        let (flow, ran) = run(&[PRESENCE, LATE_FIRST], On::Message).await;
        assert!(matches!(flow, Flow::Next));
        assert!(!ran.contains(&"refuse"));
        let (_, ran) = run(&[PRESENCE, LATE_FIRST], On::Presence).await;
        assert_eq!(ran, ["refuse"]);
    }

    /// The server's table: every extension's handlers and hooks register, 1:1 history is
    /// applied after the edits that must not be stored as new messages.
    #[test]
    fn the_server_table_registers_message_and_presence_hooks() {
        let d = table();
        assert!(!d.hooks.of(On::Message, Phase::Screen).is_empty());
        assert_eq!(d.hooks.of(On::Message, Phase::Apply).len(), 5);
        assert!(!d.hooks.of(On::Presence, Phase::Deliver).is_empty());
        assert!(d.get(Kind::IqGet, crate::xmpp::ns::PING).is_some());
    }
}
