//! XEP-0313 Message Archive Management (`urn:xmpp:mam:2`, with `#extended`) over the chat
//! history REST serves: the account's archive (an iq without `to`, or to one's own bare JID)
//! is the user's private dialogs, a room's archive (an iq to the room JID, handed over by
//! `ext::muc`) is its dialog's history. This file only adapts stanzas: the chat service
//! (`chat::archive`) decides who reads what and pages the store.
//!
//! - Query form fields `FORM_TYPE`, `with` (own archive: the private dialog with that user,
//!   resource ignored; a JID that names no user of the application matches nothing; on a room
//!   archive refused with `feature-not-implemented`), `start`/`end` (XEP-0082, on `date_sent`,
//!   inclusive, whole seconds), `before-id`/`after-id`/`ids` (`#extended`). Any other field:
//!   `bad-request`.
//! - RSM (XEP-0059): `max` (at most `xmpp.mam_max_page`, which is also the default), `after`,
//!   `before` (empty: the last page); `index` is `feature-not-implemented`. A cursor that is not
//!   in the archive: `item-not-found`. `<fin complete>` says whether the page reached the end of
//!   the result set in its direction; `<count>` comes while the set holds at most
//!   `xmpp.mam_count_max` messages, and so does `<first index>` on a page read forward. A page
//!   read backward (`before`) carries no index (XEP-0059 makes it optional): slixmpp's RSM
//!   iterator, which Poezio and slixmpp's own MAM helpers page with, takes `index + items =
//!   count` for the end of the set even when paging backward, so on the newest page it would
//!   stop after one page.
//! - Each result is `<message from=ARCHIVE><result queryid id=MESSAGE_ID><forwarded><delay
//!   stamp=date_sent/><message>` with the stored message encoded as live delivery encodes it
//!   (`stanza::message_from_view`: body, `extraParams`, attachments), 1:1 as `chat` between the
//!   two bare JIDs, room messages as `groupchat` from `room/{sender}`. The result id is the
//!   message `_id`, the `<stanza-id/>` live delivery carries (`ext::stanza_id`).
//! - Preferences: Parley archives every stored message (storing is the sender's
//!   `save_to_history`, shared with REST), so `<prefs>` is answered `default='always'` with
//!   empty lists, and a `set` changes nothing and is answered with those same prefs.
//! - Metadata (`<metadata/>`): the first and last message of the account's or room's archive.

use crate::chat::archive::{ArchivePage, ArchiveQuery, Paging, Whose};
use crate::chat::Actor;
use crate::model::message::MessageView;
use crate::model::time::{iso, parse_date};
use crate::model::{UserId, UserKey};
use crate::xmpp::dispatch::{
    load_actor, BoxFuture, Extension, Kind, Registration, Reply, Request, Spec, Target,
};
use crate::xmpp::ext::muc;
use crate::xmpp::ns;
use crate::xmpp::stanza::{
    message_from_view, random_hex, Condition, ErrorType, Jid, MessageType, StanzaError,
};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// What one's own account advertises (`ext::disco`); rooms advertise the same (`ext::muc`).
pub const ACCOUNT_FEATURES: &[&str] = &[ns::MAM, ns::MAM_EXTENDED];

/// The account's archive. Not a server feature (the server JID keeps no archive), so the
/// registrations advertise nothing themselves.
pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0313 Message Archive Management (`urn:xmpp:mam:2`, `#extended`)",
        status: "complete",
        notes: "one store with REST: the account's archive = its private dialogs as `GET /chat/Message` shows them (nothing deleted for self or before a clear; edits show the edited body; deletions for everyone gone), a room's = its dialog's history for whoever may read it; filters `with` (own archive only), `start`/`end` (on `date_sent`), `after-id`/`before-id`/`ids`; RSM `max`/`after`/`before`, no paging by `index`; ordered (`date_sent`, dialog, seq) like REST; prefs answered `always` (everything stored is archived); metadata; no `flip-page`",
        ejabberd: "mod_mam",
        prosody: "mod_mam, mod_muc_mam",
    },
    Spec {
        name: "XEP-0059 Result Set Management",
        status: "partial",
        notes: "in MAM: `max`, `after`, `before` (empty = last page), `first`/`last`; `count` while the set holds ≤ `xmpp.mam_count_max`, and `first index` on pages read forward",
        ejabberd: "yes",
        prosody: "yes",
    },
];

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::IqSet,
        ns: ns::MAM,
        handler: Some(account_set),
        features: &[],
        for_users: false,
    },
    Registration {
        kind: Kind::IqGet,
        ns: ns::MAM,
        handler: Some(account_get),
        features: &[],
        for_users: false,
    },
];

/// A room's archive, as `ext::muc` names it.
pub struct Room<'a> {
    pub dialog: &'a str,
    pub jid: &'a str,
}

/// One archive request, whichever archive.
struct Ask<'a> {
    services: &'a Services,
    actor: Actor,
    whose: Whose,
    /// The archive's JID: results come `from` it.
    archive: String,
    /// The requesting connection (results go `to` it).
    requester: &'a str,
    before: &'a mut Vec<Element>,
}

fn account_set(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let (ask, payload) = account(req).await?;
        set(ask, payload).await
    })
}

fn account_get(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let (ask, payload) = account(req).await?;
        get(ask, payload).await
    })
}

/// The account's own archive; the server JID keeps none (another user's is refused by
/// routing, `for_users: false`).
async fn account(req: Request<'_>) -> Result<(Ask<'_>, &Element), StanzaError> {
    if req.target != Target::Account {
        return Err(StanzaError::service_unavailable());
    }
    let services: &Services = req.services;
    let actor = load_actor(services, req.user, &mut None).await?;
    let ask = Ask {
        services,
        actor,
        whose: Whose::Own,
        archive: req.jid.bare().to_string(),
        requester: req.stanza.attr("from").unwrap_or_default(),
        before: req.before,
    };
    Ok((ask, req.payload))
}

/// An iq to a room's bare JID in this namespace (from `ext::muc`, which found the room).
pub async fn on_room_iq(s: &Services, actor: &Actor, iq: muc::Iq<'_>, room: Room<'_>) -> Reply {
    let ask = Ask {
        services: s,
        actor: actor.clone(),
        whose: Whose::Room(room.dialog.to_owned()),
        archive: room.jid.to_owned(),
        requester: iq.from,
        before: iq.before,
    };
    let payload = iq.payload;
    match (iq.get, payload.name.as_str()) {
        // Archiving preferences are an account's.
        (_, "prefs") => Err(StanzaError::service_unavailable()),
        (true, _) => get(ask, payload).await,
        (false, _) => set(ask, payload).await,
    }
}

async fn set(ask: Ask<'_>, payload: &Element) -> Reply {
    match payload.name.as_str() {
        "query" => query(ask, payload).await,
        "prefs" => Ok(Some(prefs())),
        _ => Err(StanzaError::bad_request()),
    }
}

async fn get(ask: Ask<'_>, payload: &Element) -> Reply {
    match payload.name.as_str() {
        "query" => Ok(Some(form(&ask.whose))),
        "prefs" => Ok(Some(prefs())),
        "metadata" => metadata(ask).await,
        _ => Err(StanzaError::bad_request()),
    }
}

/// Everything stored is archived; nothing is configurable.
fn prefs() -> Element {
    Element::new("prefs", ns::MAM)
        .with_attr("default", "always")
        .with_child(Element::new("always", ns::MAM))
        .with_child(Element::new("never", ns::MAM))
}

/// The query form (XEP-0313 §4.1.5): the fields this archive filters on.
fn form(whose: &Whose) -> Element {
    let field = |var: &str, kind: &str| {
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_attr("type", kind)
    };
    let mut x = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(
            field("FORM_TYPE", "hidden")
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(ns::MAM)),
        );
    if *whose == Whose::Own {
        x.push(field("with", "jid-single"));
    }
    for (var, kind) in [
        ("start", "text-single"),
        ("end", "text-single"),
        ("after-id", "text-single"),
        ("before-id", "text-single"),
        ("ids", "text-multi"),
    ] {
        x.push(field(var, kind));
    }
    Element::new("query", ns::MAM).with_child(x)
}

/// What `with` names: a user of the requester's application, or nobody here.
enum With {
    User(UserId),
    Nobody,
}

/// The query as the chat service takes it, with what only the adapter needs.
struct Parsed {
    q: ArchiveQuery,
    with: Option<With>,
}

fn not_implemented() -> StanzaError {
    StanzaError::new(ErrorType::Cancel, Condition::FeatureNotImplemented)
}

fn bad(text: impl Into<String>) -> StanzaError {
    StanzaError::bad_request().with_text(text)
}

/// Reads the query's data form and RSM set; every value is bounded or refused.
fn parse(ask: &Ask<'_>, payload: &Element) -> Result<Parsed, StanzaError> {
    let cfg = &ask.services.config.xmpp;
    let max_page = i64::try_from(cfg.mam_max_page).unwrap_or(i64::MAX).max(1);
    let mut q = ArchiveQuery {
        count_max: i64::try_from(cfg.mam_count_max).unwrap_or(i64::MAX),
        page: Paging {
            max: max_page,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut with = None;
    if let Some(x) = payload.child("x", ns::DATA_FORMS) {
        if x.attr("type").is_some_and(|t| t != "submit") {
            return Err(bad("the query form must be of type 'submit'"));
        }
        for f in x.elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
            let var = f.attr("var").unwrap_or_default();
            let values: Vec<String> = f
                .elements()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(|v| v.text().trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            let Some(first) = values.first().cloned() else {
                // A field without a value filters nothing.
                continue;
            };
            let date = |v: &str| {
                parse_date(v)
                    .map(|t| t.unix_timestamp())
                    .ok_or_else(|| bad(format!("'{var}' must be an XEP-0082 date and time")))
            };
            match var {
                "FORM_TYPE" if first == ns::MAM => {}
                "FORM_TYPE" => return Err(bad("FORM_TYPE must be urn:xmpp:mam:2")),
                "with" => {
                    if ask.whose != Whose::Own {
                        return Err(not_implemented()
                            .with_text("a room's archive is not filtered by 'with'"));
                    }
                    let jid = Jid::parse(&first).ok_or_else(|| bad("'with' must be a JID"))?;
                    // The tenant rule: another application's user is nobody here.
                    let me = UserKey {
                        app: ask.actor.app.id,
                        user: ask.actor.user,
                    };
                    let user = jid.bare().peer_of(ask.services.domain(), &me);
                    with = Some(user.map_or(With::Nobody, |u| With::User(u.user)));
                }
                "start" => q.start = Some(date(&first)?),
                "end" => q.end = Some(date(&first)?),
                "after-id" => q.after_id = Some(first),
                "before-id" => q.before_id = Some(first),
                "ids" => {
                    if values.len() as i64 > max_page {
                        return Err(bad(format!("'ids' names at most {max_page} messages")));
                    }
                    q.ids = Some(values);
                }
                other => return Err(bad(format!("field '{other}' is not supported"))),
            }
        }
    }
    if let Some(set) = payload.child("set", ns::RSM) {
        for c in set.elements().filter(|c| c.ns == ns::RSM) {
            let text = c.text().trim().to_owned();
            match c.name.as_str() {
                "max" => {
                    let n: i64 = text
                        .parse()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| bad("<max/> must be a whole number"))?;
                    q.page.max = n.min(max_page);
                }
                "after" if text.is_empty() => return Err(bad("<after/> names a message")),
                "after" => q.page.after = Some(text),
                "before" if text.is_empty() => q.page.before = Some(None),
                "before" => q.page.before = Some(Some(text)),
                "index" => {
                    return Err(not_implemented()
                        .with_text("paging by index is not supported; use after/before"))
                }
                _ => {}
            }
        }
    }
    Ok(Parsed { q, with })
}

/// Runs a query: the results go before the answer, the answer is the `<fin/>`.
async fn query(ask: Ask<'_>, payload: &Element) -> Reply {
    let Parsed { mut q, with } = parse(&ask, payload)?;
    let page = match with {
        Some(With::Nobody) => ArchivePage {
            complete: true,
            count: (q.count_max > 0).then_some(0),
            ..Default::default()
        },
        other => {
            q.with = match other {
                Some(With::User(u)) => Some(u),
                _ => None,
            };
            ask.services
                .chat
                .archive(&ask.actor, &ask.whose, &q)
                .await
                .map_err(|e| StanzaError::from(&e))?
        }
    };
    let queryid = payload.attr("queryid");
    for v in &page.items {
        ask.before.push(result(&ask, queryid, v));
    }
    Ok(Some(fin(&page, q.page.before.is_some())))
}

/// One archived message as a query result (XEP-0313 §4.2).
fn result(ask: &Ask<'_>, queryid: Option<&str>, v: &MessageView) -> Element {
    let m = &v.message;
    let domain = ask.services.domain();
    let app = ask.actor.app.id;
    let inner = match ask.whose {
        Whose::Own => message_from_view(
            v,
            MessageType::Chat,
            format!("{}-{app}@{domain}", m.sender_id),
            &format!("{}-{app}@{domain}", m.recipient_id),
        ),
        Whose::Room(_) => message_from_view(
            v,
            MessageType::Groupchat,
            format!("{}/{}", ask.archive, m.sender_id),
            ask.requester,
        ),
    };
    let stamp = time::OffsetDateTime::from_unix_timestamp(m.date_sent)
        .map(iso)
        .unwrap_or_else(|_| iso(m.created_at));
    let mut r = Element::new("result", ns::MAM).with_attr("id", m.id.as_str());
    if let Some(q) = queryid {
        r.set_attr("queryid", q);
    }
    r.push(
        Element::new("forwarded", ns::FORWARD)
            .with_child(Element::new("delay", ns::DELAY).with_attr("stamp", stamp))
            .with_child(inner),
    );
    Element::new("message", ns::CLIENT)
        .with_attr("id", random_hex(12))
        .with_attr("from", ask.archive.clone())
        .with_attr("to", ask.requester)
        .with_child(r)
}

/// `<fin complete><set><first index/><last/><count/></set></fin>`; no index on a page read
/// `backward` (the module header says why).
fn fin(page: &ArchivePage, backward: bool) -> Element {
    let mut set = Element::new("set", ns::RSM);
    if let (Some(first), Some(last)) = (page.items.first(), page.items.last()) {
        let mut f = Element::new("first", ns::RSM).with_text(first.message.id.as_str());
        if let Some(i) = page.first_index.filter(|_| !backward) {
            f.set_attr("index", i.to_string());
        }
        set.push(f);
        set.push(Element::new("last", ns::RSM).with_text(last.message.id.as_str()));
    }
    if let Some(n) = page.count {
        set.push(Element::new("count", ns::RSM).with_text(n.to_string()));
    }
    Element::new("fin", ns::MAM)
        .with_attr("complete", if page.complete { "true" } else { "false" })
        .with_child(set)
}

/// XEP-0313 §6: the archive's first and last message (`<metadata/>` empty when there is none).
async fn metadata(ask: Ask<'_>) -> Reply {
    let chat = &ask.services.chat;
    let end = |before: Option<Option<String>>| ArchiveQuery {
        page: Paging {
            max: 1,
            after: None,
            before,
        },
        ..Default::default()
    };
    let err = |e: crate::chat::ChatError| StanzaError::from(&e);
    let first = chat
        .archive(&ask.actor, &ask.whose, &end(None))
        .await
        .map_err(err)?;
    let last = chat
        .archive(&ask.actor, &ask.whose, &end(Some(None)))
        .await
        .map_err(err)?;
    let mut md = Element::new("metadata", ns::MAM);
    for (name, page) in [("start", first), ("end", last)] {
        if let Some(v) = page.items.first() {
            let stamp = time::OffsetDateTime::from_unix_timestamp(v.message.date_sent)
                .map(iso)
                .unwrap_or_default();
            md.push(
                Element::new(name, ns::MAM)
                    .with_attr("id", v.message.id.as_str())
                    .with_attr("timestamp", stamp),
            );
        }
    }
    Ok(Some(md))
}
