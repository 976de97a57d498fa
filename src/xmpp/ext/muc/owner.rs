//! The owner's side of XEP-0045 (`muc#owner`, §10): the configuration form, read and submitted
//! (an empty submit accepts an instant room as it is, a cancel changes nothing), and room
//! destruction. Each field maps onto the dialog or the room's settings through the chat service
//! (`room_config`, `configure_room`, `delete_dialogs`), which asks the roles table who may.
//!
//! | field | stored as |
//! |---|---|
//! | `muc#roomconfig_roomname` | the dialog's `name` |
//! | `muc#roomconfig_roomdesc` | the dialog's `description` |
//! | `muc#roomconfig_membersonly` | the dialog's `allow_preview`, turned round |
//! | `muc#roomconfig_persistentroom` | the room's `persistent` |
//! | `muc#roomconfig_changesubject` | the room's `change_subject` |

use super::{chat_err, fan_out, Iq, RoomAddr};
use crate::chat::rooms::RoomConfig;
use crate::chat::Actor;
use crate::model::room::RoomSettings;
use crate::model::Dialog;
use crate::xmpp::dispatch::Reply;
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, StanzaError};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

const ROOMNAME: &str = "muc#roomconfig_roomname";
const ROOMDESC: &str = "muc#roomconfig_roomdesc";
const MEMBERSONLY: &str = "muc#roomconfig_membersonly";
const PERSISTENT: &str = "muc#roomconfig_persistentroom";
const CHANGESUBJECT: &str = "muc#roomconfig_changesubject";

fn field(var: &str, kind: &str, label: &str, value: &str) -> Element {
    Element::new("field", ns::DATA_FORMS)
        .with_attr("var", var)
        .with_attr("type", kind)
        .with_attr("label", label)
        .with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// The configuration form as the room stands.
fn form(d: &Dialog, settings: &RoomSettings) -> Element {
    Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(Element::new("title", ns::DATA_FORMS).with_text("Room configuration"))
        .with_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", "FORM_TYPE")
                .with_attr("type", "hidden")
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(ns::MUC_ROOMCONFIG)),
        )
        .with_child(field(
            ROOMNAME,
            "text-single",
            "Name",
            d.name.as_deref().unwrap_or_default(),
        ))
        .with_child(field(
            ROOMDESC,
            "text-single",
            "Description",
            d.description.as_deref().unwrap_or_default(),
        ))
        .with_child(field(
            MEMBERSONLY,
            "boolean",
            "Only members may enter",
            flag(!d.allow_preview),
        ))
        .with_child(field(
            PERSISTENT,
            "boolean",
            "Keep the room when the last occupant leaves",
            flag(settings.persistent),
        ))
        .with_child(field(
            CHANGESUBJECT,
            "boolean",
            "Participants may change the subject",
            flag(settings.change_subject),
        ))
}

fn boolean(var: &str, v: &str) -> Result<bool, StanzaError> {
    match v.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(StanzaError::bad_request().with_text(format!("{var} is a boolean"))),
    }
}

/// The submitted form, typed; fields this room does not have are ignored.
fn submitted(x: &Element) -> Result<RoomConfig, StanzaError> {
    let mut c = RoomConfig::default();
    for f in x.elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let value = f
            .elements()
            .find(|v| v.is("value", ns::DATA_FORMS))
            .map(Element::text)
            .unwrap_or_default();
        match f.attr("var").unwrap_or_default() {
            ROOMNAME => c.name = Some(value),
            ROOMDESC => c.description = Some(Some(value)),
            MEMBERSONLY => c.members_only = Some(boolean(MEMBERSONLY, &value)?),
            PERSISTENT => c.persistent = Some(boolean(PERSISTENT, &value)?),
            CHANGESUBJECT => c.change_subject = Some(boolean(CHANGESUBJECT, &value)?),
            _ => {}
        }
    }
    Ok(c)
}

pub(super) async fn on_iq(s: &Services, actor: &Actor, iq: Iq<'_>, room: &RoomAddr) -> Reply {
    let p = iq.payload;
    if iq.get {
        let (d, settings) = s
            .chat
            .room_config(actor, &room.dialog)
            .await
            .map_err(chat_err)?;
        return Ok(Some(
            Element::new("query", ns::MUC_OWNER).with_child(form(&d, &settings)),
        ));
    }
    if p.child("destroy", ns::MUC_OWNER).is_some() {
        // Destroying the room deletes its dialog for everyone; occupants get <destroy/>.
        let report = s
            .chat
            .delete_dialogs(actor, std::slice::from_ref(&room.dialog), true)
            .await
            .map_err(chat_err)?;
        if !report.wrong_permissions.is_empty() {
            return Err(
                StanzaError::forbidden().with_text("Forbidden: only the owner destroys a room")
            );
        }
        if !report.not_found.is_empty() {
            return Err(super::no_room());
        }
        return Ok(None);
    }
    let x = p
        .child("x", ns::DATA_FORMS)
        .ok_or_else(|| StanzaError::bad_request().with_text("a configuration form is expected"))?;
    match x.attr("type") {
        Some("cancel") => return Ok(None),
        Some("submit") => {}
        _ => return Err(StanzaError::bad_request().with_text("submit or cancel the form")),
    }
    s.chat
        .configure_room(actor, &room.dialog, submitted(x)?)
        .await
        .map_err(chat_err)?;
    // §10.2.1: occupants hear that the configuration changed (status 104).
    let notice = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("from", super::addr_jid(s, actor.app.id, room))
        .with_attr("id", random_hex(8))
        .with_child(
            Element::new("x", ns::MUC_USER)
                .with_child(Element::new("status", ns::MUC_USER).with_attr("code", "104")),
        );
    fan_out(s, actor.app.id, &room.dialog, &[], actor.user.0, &notice).await;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submitted_form_sets_only_what_it_names() {
        let x = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "submit")
            .with_child(field(MEMBERSONLY, "boolean", "", "true"))
            .with_child(field("muc#roomconfig_unknown", "boolean", "", "1"));
        let c = submitted(&x).unwrap();
        assert_eq!(c.members_only, Some(true));
        assert_eq!(c.name, None);
        assert_eq!(c.persistent, None);
    }

    #[test]
    fn a_boolean_field_that_is_not_one_is_a_bad_request() {
        let x =
            Element::new("x", ns::DATA_FORMS).with_child(field(PERSISTENT, "boolean", "", "yes"));
        assert!(submitted(&x).is_err());
    }
}
