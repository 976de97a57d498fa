//! XEP-0308 Last Message Correction: a `replace` of a stored message updates its body and
//! `edited_at` (the sender only, by the chat rules) before it is relayed. Must not relay an
//! edit the rules refuse.

use crate::chat::messages::MessageUpdate;
use crate::chat::{Actor, ChatError};
use crate::model::ObjectId;
use crate::xmpp::dispatch::{BoxFuture, Extension, Flow, Hook, On, Phase, Routed, Spec};
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0308 Last Message Correction",
    status: "complete",
    notes: "stored edit (sender only), relayed",
    ejabberd: "yes (relayed)",
    prosody: "yes (relayed)",
}];

pub const EXTENSION: Extension = Extension {
    handlers: &[],
    hooks: &[Hook {
        on: On::Message,
        phase: Phase::Apply,
        run: apply_hook,
    }],
    specs: SPECS,
};

/// Apply hook: a 1:1 `chat` correction is stored first; a refused one is answered with an
/// error and not relayed.
fn apply_hook(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let res = match m.chat_change_actor("replace", ns::CORRECTION).await {
            None => return Flow::Next,
            Some(Ok(actor)) => apply(&m.services, &actor, &m.stanza).await,
            Some(Err(e)) => Err(e),
        };
        res.map_or_else(Flow::Refuse, |()| Flow::Next)
    })
}

/// Stores the correction; `Err` means it was refused and must not be relayed. Corrections of
/// messages that were never stored are relayed as they are.
pub async fn apply(services: &Services, actor: &Actor, el: &Element) -> Result<(), StanzaError> {
    let Some(replace) = el.child("replace", ns::CORRECTION) else {
        return Ok(());
    };
    let Some(id) = replace.attr("id").filter(|i| ObjectId::is_valid(i)) else {
        return Ok(());
    };
    let body = el
        .child("body", ns::CLIENT)
        .map(Element::text)
        .unwrap_or_default();
    let update = MessageUpdate {
        dialog_id: None,
        read: false,
        delivered: false,
        body: Some(body),
    };
    match services
        .chat
        .update_messages(actor, vec![id.to_owned()], update)
        .await
    {
        Ok(()) | Err(ChatError::NotFound(_)) => Ok(()),
        Err(e) => Err(StanzaError::from(&e)),
    }
}
