//! ConnectyCube message deletion (`<remove xmlns='urn:xmpp:message-delete:0' id=…/>`): deletes a
//! stored message for everyone when the chat rules allow the sender to, then it is relayed.
//! Must not relay a deletion the rules refuse.

use crate::chat::Actor;
use crate::model::ObjectId;
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

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
