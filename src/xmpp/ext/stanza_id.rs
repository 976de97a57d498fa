//! XEP-0359 Unique and Stable Stanza IDs. A message stored in history carries, when delivered
//! live, `<stanza-id xmlns='urn:xmpp:sid:0' id=… by=…/>`: the id is the stored message's `_id`,
//! the one an archive query (`ext::mam`) returns for it, and `by` names the archive, the
//! recipient's bare JID for a 1:1 message, the room's JID for a room message. Whoever stores a
//! message stamps it (`ext::history`, `ext::muc`, `xmpp::fanout`); this file's hook removes
//! from every message a client sends any stanza-id claiming to come from this server (its
//! domain or its MUC service), since such an id would otherwise pass for an archive id. It
//! decides nothing about storage.

use crate::xmpp::dispatch::{BoxFuture, Extension, Flow, Hook, On, Phase, Routed, Spec};
use crate::xmpp::ns;
use crate::xmpp::stanza::Jid;
use crate::xmpp::stream::{Element, Node};

/// Registered before `history` in the table, so a spoof is gone before the real id is added.
/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0359 Unique and Stable Stanza IDs",
        status: "complete",
        notes: "every stored message delivered live carries `<stanza-id id=_id by=…>` (1:1: recipient's bare JID; rooms: room JID), the MAM result id; client stanza-ids claiming this server are stripped",
        ejabberd: "with mod_mam",
        prosody: "with mod_mam",
    },
];

pub const EXTENSION: Extension = Extension {
    handlers: &[],
    hooks: &[Hook {
        on: On::Message,
        phase: Phase::Apply,
        run: strip_spoofed,
    }],
    specs: SPECS,
};

/// Apply hook: a client's message never carries a stanza-id "by" this server.
fn strip_spoofed(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let domain = m.services.domain().to_owned();
        strip_ours(&mut m.stanza, &domain);
        Flow::Next
    })
}

/// Removes every `<stanza-id/>` whose `by` is on `domain` or its MUC service (`muc.{domain}`).
pub fn strip_ours(el: &mut Element, domain: &str) {
    let muc = crate::xmpp::ext::muc::service(domain);
    el.children.retain(|n| match n {
        Node::Element(c) if c.is("stanza-id", ns::SID) => !c
            .attr("by")
            .and_then(Jid::parse)
            .is_some_and(|j| j.domain.eq_ignore_ascii_case(domain) || j.domain == muc),
        _ => true,
    });
}

/// Stamps `el` with the archive id `id` given by the archive `by` (replacing any earlier
/// stanza-id of that archive).
pub fn stamp(el: &mut Element, id: &str, by: &str) {
    el.children.retain(|n| {
        !matches!(n, Node::Element(c) if c.is("stanza-id", ns::SID) && c.attr("by") == Some(by))
    });
    el.push(
        Element::new("stanza-id", ns::SID)
            .with_attr("id", id)
            .with_attr("by", by),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(by: &str) -> Element {
        Element::new("stanza-id", ns::SID)
            .with_attr("id", "x")
            .with_attr("by", by)
    }

    #[test]
    fn stanza_ids_claiming_this_server_are_removed_and_others_kept() {
        let mut m = Element::new("message", ns::CLIENT)
            .with_child(sid("1001-1@LOCALHOST"))
            .with_child(sid("1_5c094c0ce588ce6856f87422@muc.localhost"))
            .with_child(sid("localhost"))
            .with_child(sid("juliet@capulet.lit"))
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        strip_ours(&mut m, "localhost");
        let left: Vec<_> = m.elements().filter_map(|e| e.attr("by")).collect();
        assert_eq!(left, ["juliet@capulet.lit"]);
        assert!(m.child("body", ns::CLIENT).is_some());
    }

    #[test]
    fn a_stamp_replaces_the_same_archives_id() {
        let mut m = Element::new("message", ns::CLIENT).with_child(sid("1001-1@localhost"));
        stamp(&mut m, "5c094c0ce588ce6856f87422", "1001-1@localhost");
        let ids: Vec<_> = m.elements().filter_map(|e| e.attr("id")).collect();
        assert_eq!(ids, ["5c094c0ce588ce6856f87422"]);
    }
}
