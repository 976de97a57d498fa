//! XEP-0333 Chat Markers as ConnectyCube uses them: `received` / `displayed` (always 1:1 `chat`
//! stanzas carrying `dialog_id`, for group messages too) mark the stored message delivered /
//! read for the marker's sender, then the marker is relayed. Must not decide who may read.

use crate::chat::messages::MessageUpdate;
use crate::chat::Actor;
use crate::model::ObjectId;
use crate::xmpp::dispatch::{BoxFuture, Extension, Flow, Hook, On, Phase, Routed, Spec};
use crate::xmpp::ns;
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0333 Chat Markers",
    status: "complete",
    notes:
        "update read/delivered ids and unread counts, then relayed; REST reads produce markers too",
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

/// Apply hook: a 1:1 `chat` marker is recorded before it is relayed.
fn apply_hook(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let marks = m.stanza.child("received", ns::CHAT_MARKERS).is_some()
            || m.stanza.child("displayed", ns::CHAT_MARKERS).is_some();
        if m.chat_to_user().is_none() || !marks {
            return Flow::Next;
        }
        match m.actor().await {
            Ok(actor) => {
                apply(&m.services, &actor, &m.stanza).await;
                Flow::Next
            }
            Err(e) => Flow::Refuse(e),
        }
    })
}

/// Records a marker in history (unread counts, `read_ids`/`delivered_ids`, last-message
/// status). Markers for messages that were never stored are simply relayed.
pub async fn apply(services: &Services, actor: &Actor, el: &Element) {
    let (read, marker) = match (
        el.child("displayed", ns::CHAT_MARKERS),
        el.child("received", ns::CHAT_MARKERS),
    ) {
        (Some(m), _) => (true, m),
        (None, Some(m)) => (false, m),
        (None, None) => return,
    };
    let Some(id) = marker.attr("id").filter(|i| ObjectId::is_valid(i)) else {
        return;
    };
    let dialog = el
        .child("extraParams", ns::CLIENT)
        .and_then(|x| x.child("dialog_id", ns::CLIENT))
        .map(|d| d.text().trim().to_owned())
        .filter(|d| ObjectId::is_valid(d));
    let update = MessageUpdate {
        dialog_id: dialog,
        read,
        delivered: !read,
        body: None,
    };
    if let Err(e) = services
        .chat
        .update_messages(actor, vec![id.to_owned()], update)
        .await
    {
        tracing::debug!(error = %e, "marker not recorded (message not stored or not visible)");
    }
}
