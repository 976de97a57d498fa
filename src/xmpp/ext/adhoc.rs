//! XEP-0050 Ad-Hoc Commands on the server JID, with one command: `ping` (one stage, answers
//! a "Pong" note), the command clients use to check that the server runs commands at all
//! (ejabberd has it). Listed in disco#items of the `commands` node, described by disco#info
//! on its node (`ext::disco` asks this file). Administration is the `parley` CLI and the
//! REST API, not commands. Nothing is kept between requests: a single-stage command needs no
//! session state, so the `sessionid` is fresh per answer and a `cancel` is always accepted.
//! Commands addressed to a user's full JID are that client's business (routed, not here).

use crate::xmpp::dispatch::{
    BoxFuture, Extension, Kind, Registration, Reply, Request, Spec, Target,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, StanzaError};
use crate::xmpp::stream::Element;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0050 Ad-Hoc Commands",
    status: "partial",
    notes: "the server JID offers one command, `ping` (a \"Pong\" note); administration is the `parley` CLI and REST; commands to a client's full JID are routed to it",
    ejabberd: "mod_adhoc (ping and admin commands)",
    prosody: "mod_adhoc (admin commands, no ping)",
}];

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqSet,
    ns: ns::COMMANDS,
    handler: Some(execute),
    features: &[ns::COMMANDS],
    for_users: false,
}];

/// The server's commands: node and name.
const COMMANDS: &[(&str, &str)] = &[("ping", "Ping")];

/// disco#items on the server's `commands` node (XEP-0050 §2.2).
pub fn items(domain: &str) -> Element {
    let mut q = Element::new("query", ns::DISCO_ITEMS).with_attr("node", ns::COMMANDS);
    for (node, name) in COMMANDS {
        q.push(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", domain)
                .with_attr("node", *node)
                .with_attr("name", *name),
        );
    }
    q
}

/// disco#info on a command's node (XEP-0050 §2.3); `None` when no command has that node.
pub fn node_info(node: &str) -> Option<Element> {
    let (node, name) = COMMANDS.iter().find(|(n, _)| *n == node)?;
    Some(
        Element::new("query", ns::DISCO_INFO)
            .with_attr("node", *node)
            .with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "automation")
                    .with_attr("type", "command-node")
                    .with_attr("name", *name),
            )
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::COMMANDS))
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DATA_FORMS)),
    )
}

fn execute(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        if req.target != Target::Server {
            return Err(StanzaError::service_unavailable());
        }
        let node = req.payload.attr("node").unwrap_or_default();
        if !COMMANDS.iter().any(|(n, _)| *n == node) {
            return Err(StanzaError::item_not_found().with_text("no such command"));
        }
        let sid = req
            .payload
            .attr("sessionid")
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .map_or_else(|| random_hex(8), str::to_owned);
        let answer = Element::new("command", ns::COMMANDS)
            .with_attr("node", node)
            .with_attr("sessionid", sid);
        match req.payload.attr("action").unwrap_or("execute") {
            "cancel" => Ok(Some(answer.with_attr("status", "canceled"))),
            "execute" | "complete" => Ok(Some(
                answer.with_attr("status", "completed").with_child(
                    Element::new("note", ns::COMMANDS)
                        .with_attr("type", "info")
                        .with_text("Pong"),
                ),
            )),
            _ => Err(StanzaError::bad_request().with_text("ping has one stage: execute")),
        }
    })
}
