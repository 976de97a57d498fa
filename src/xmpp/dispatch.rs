//! The dispatch table: (stanza kind, payload namespace) → extension handler. The session asks
//! it what to do with an iq or a top-level nonza; adding an XEP is one file in `ext/` plus one
//! line in `table()`. Disco reads the advertised features from here, so it can only advertise
//! what is registered.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::ext;
use super::stanza::{Jid, StanzaError, UserKey};
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
    /// The server, or the sender's own bare JID.
    Server,
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

pub struct Dispatch {
    handlers: HashMap<(Kind, &'static str), &'static Registration>,
    features: Vec<&'static str>,
}

impl Dispatch {
    pub fn new(groups: &[&'static [Registration]]) -> Self {
        let mut handlers = HashMap::new();
        let mut features = Vec::new();
        for group in groups {
            for r in group.iter() {
                handlers.insert((r.kind, r.ns), r);
                for f in r.features {
                    if !features.contains(f) {
                        features.push(*f);
                    }
                }
            }
        }
        features.sort_unstable();
        Dispatch { handlers, features }
    }

    pub fn get(&self, kind: Kind, ns: &str) -> Option<&'static Registration> {
        self.handlers.get(&(kind, ns)).copied()
    }

    /// Every feature the registered handlers implement, sorted.
    pub fn features(&self) -> &[&'static str] {
        &self.features
    }
}

/// The server's extensions, one line per XEP. XEP-0045 rooms (`ext::muc`) are not here: they
/// are reached by address (`muc.{domain}`, resolved by the session), not by payload namespace.
pub fn table() -> Dispatch {
    Dispatch::new(&[
        ext::core::HANDLERS,
        ext::ping::HANDLERS,
        ext::disco::HANDLERS,
        ext::carbons::HANDLERS,
        ext::csi::HANDLERS,
        ext::last_activity::HANDLERS,
        ext::status_streaming::HANDLERS,
        ext::roster::HANDLERS,
        ext::offline::HANDLERS,
        ext::privacy::HANDLERS,
        ext::blocking::HANDLERS,
    ])
}
