//! ConnectyCube message deletion (`<remove xmlns='urn:xmpp:message-delete:0' id=…/>`): deletes a
//! stored message for everyone when the chat rules allow the sender to, then it is relayed.
//! Must not relay a deletion the rules refuse.

use crate::chat::Actor;
use crate::model::ObjectId;
use crate::xmpp::dispatch::{BoxFuture, Extension, Flow, Hook, On, Phase, Routed, Spec};
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "ConnectyCube `remove` (message-delete:0), `<reactions>`, `SystemNotifications`, `WebRTCVideoChat`",
        status: "complete",
        notes: "delete by the seed's rules; reactions and system messages from REST; call signalling relayed live, never stored",
        ejabberd: "no",
        prosody: "no",
    },
];

pub const EXTENSION: Extension = Extension {
    handlers: &[],
    hooks: &[Hook {
        on: On::Message,
        phase: Phase::Apply,
        run: apply_hook,
    }],
    specs: SPECS,
};

/// Apply hook: a 1:1 `chat` deletion happens first; a refused one is answered with an error
/// and not relayed.
fn apply_hook(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let res = match m.chat_change_actor("remove", ns::MESSAGE_DELETE).await {
            None => return Flow::Next,
            Some(Ok(actor)) => apply(&m.services, &actor, &m.stanza).await,
            Some(Err(e)) => Err(e),
        };
        res.map_or_else(Flow::Refuse, |()| Flow::Next)
    })
}

/// Deletes for everyone; `Err` means refused (not relayed). Unknown messages are relayed.
pub async fn apply(services: &Services, actor: &Actor, el: &Element) -> Result<(), StanzaError> {
    let Some(remove) = el.child("remove", ns::MESSAGE_DELETE) else {
        return Ok(());
    };
    let Some(id) = remove.attr("id").filter(|i| ObjectId::is_valid(i)) else {
        return Ok(());
    };
    let report = services
        .chat
        .delete_messages(actor, &[id.to_owned()], true, None)
        .await
        .map_err(|e| StanzaError::from(&e))?;
    if !report.wrong_permissions.is_empty() {
        return Err(StanzaError::forbidden()
            .with_text("Forbidden: you may not delete this message for everyone"));
    }
    Ok(())
}
