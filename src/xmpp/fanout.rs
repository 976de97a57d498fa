//! REST → XMPP: turns committed chat events into the stanzas the hosted service sends (messages
//! with `send_to_chat`, forced deletes, edits, reactions, read/delivered markers, system
//! messages). It decides nothing: recipients come with the event, delivery goes through the hub.
//! Events caused by an XMPP stream are skipped: that stream relays its own stanza.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::ext::{muc, offline, stanza_id};
use super::ns;
use super::stanza::extra_params::{self, ExtraParams};
use super::stanza::{random_hex, CcMessage, MessageType, UserKey};
use super::stream::Element;
use super::Services;
use crate::chat::{ChatEvent, Subscription};
use crate::model::{AppId, DialogType, ObjectId, UserId};
use crate::ops::telemetry::{FANOUT_LAG, QUEUE_DROPS};
use crate::privacy::{self, Decision, Kind as Stanza};

/// Delivers chat events until shutdown.
pub async fn run(
    services: Arc<Services>,
    mut events: Subscription,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            e = events.recv_timed() => match e {
                Ok((e, published)) => {
                    if deliver(&services, e).await {
                        metrics::histogram!(FANOUT_LAG).record(published.elapsed());
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!(QUEUE_DROPS, "queue" => "fanout_events").increment(n);
                    tracing::warn!(n, "real-time fan-out fell behind; events were dropped");
                }
                Err(RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

fn user_jid(app: AppId, user: i64, domain: &str) -> String {
    format!("{user}-{app}@{domain}")
}

fn key(app: AppId, user: i64) -> UserKey {
    UserKey {
        app,
        user: UserId(user),
    }
}

/// `type` and `from` of a stanza about `dialog` by `by`: 1:1 from the user, groups from the room.
fn origin(
    kind: DialogType,
    app: AppId,
    dialog: &ObjectId,
    by: i64,
    domain: &str,
) -> (MessageType, String) {
    if kind == DialogType::Private {
        (MessageType::Chat, user_jid(app, by, domain))
    } else {
        (
            MessageType::Groupchat,
            format!("{app}_{dialog}@muc.{domain}/{by}"),
        )
    }
}

fn extra(dialog: &ObjectId) -> Element {
    ExtraParams::dialog(dialog).to_element()
}

/// The 1:1 recipients a message from `sender` may reach: privacy lists and blocks are
/// honoured for REST-originated messages exactly as for XMPP ones (rooms check in `muc`).
async fn permitted(services: &Services, app: AppId, sender: i64, to: Vec<i64>) -> Vec<i64> {
    let mut out = Vec::with_capacity(to.len());
    for u in to {
        if privacy::decision(services, key(app, sender), key(app, u), Stanza::Message).await
            == Decision::Allow
        {
            out.push(u);
        }
    }
    out
}

/// Sends `stanza` to each user (`to` set per user); 1:1 chat to an offline user is kept offline.
async fn send_each(services: &Services, app: AppId, users: &[i64], stanza: &Element) {
    let domain = services.domain();
    for &u in users {
        let mut s = stanza.clone();
        s.set_attr("to", user_jid(app, u, domain));
        let delivered = services.hub.deliver_to_user(key(app, u), &s);
        let chat = MessageType::of(&s) == Ok(MessageType::Chat);
        if delivered == 0 && chat && offline::worth_keeping(&s) {
            offline::store(services, key(app, u), &s).await;
        }
    }
}

/// Delivers one event; false when it is not the fan-out's to deliver.
async fn deliver(services: &Services, e: ChatEvent) -> bool {
    let domain = services.domain().to_owned();
    // The `moduleIdentifier` of a one-user headline (system message or call signal).
    let module = match &e {
        ChatEvent::CallSignal { .. } => crate::chat::calls::MODULE,
        _ => "SystemNotifications",
    };
    match e {
        ChatEvent::MessageSent {
            app,
            dialog,
            kind,
            recipients,
            message,
        } => {
            let sender = message["sender_id"].as_i64().unwrap_or_default();
            let (typ, from) = origin(kind, app, &dialog, sender, &domain);
            let mut stanza = CcMessage::from_event(&message, &dialog)
                .addressed(typ, from, None)
                .to_element();
            // XEP-0359: the id each recipient's archive (ext::mam) knows the message by.
            let id = message["_id"].as_str().unwrap_or_default();
            if kind == DialogType::Private {
                let to = permitted(services, app, sender, recipients).await;
                for u in to {
                    let mut s = stanza.clone();
                    stanza_id::stamp(&mut s, id, &user_jid(app, u, &domain));
                    send_each(services, app, &[u], &s).await;
                }
            } else {
                stanza_id::stamp(
                    &mut stanza,
                    id,
                    &muc::room_jid(services, app, dialog.as_str()),
                );
                // Rooms deliver as a groupchat from the client does: every online member (every
                // online user for broadcast), joined previewers, the sender reflected, privacy
                // honoured per recipient.
                let mut members = if kind == DialogType::Broadcast {
                    services.hub.online_users(app)
                } else {
                    recipients
                };
                members.push(sender);
                muc::fan_out(services, app, dialog.as_str(), &members, sender, &stanza).await;
            }
        }
        ChatEvent::MessagesDeleted {
            app,
            dialog,
            kind,
            from_stream: false,
            messages,
            by,
            recipients,
        } => {
            let (typ, from) = origin(kind, app, &dialog, by, &domain);
            for m in messages {
                let stanza = Element::new("message", ns::CLIENT)
                    .with_attr("type", typ.as_str())
                    .with_attr("id", random_hex(12))
                    .with_attr("from", from.clone())
                    .with_child(
                        Element::new("remove", ns::MESSAGE_DELETE).with_attr("id", m.to_string()),
                    )
                    .with_child(extra(&dialog));
                send_each(services, app, &recipients, &stanza).await;
            }
        }
        ChatEvent::MessageEdited {
            app,
            dialog,
            kind,
            from_stream: false,
            message,
            sender,
            body,
            recipients,
        } => {
            let (typ, from) = origin(kind, app, &dialog, sender, &domain);
            let stanza = Element::new("message", ns::CLIENT)
                .with_attr("type", typ.as_str())
                .with_attr("id", random_hex(12))
                .with_attr("from", from)
                .with_child(Element::new("body", ns::CLIENT).with_text(body))
                .with_child(
                    Element::new("replace", ns::CORRECTION)
                        .with_attr("id", message.to_string())
                        .with_attr("last", "true"),
                )
                .with_child(extra(&dialog));
            send_each(services, app, &recipients, &stanza).await;
        }
        ChatEvent::MessagesMarked {
            app,
            dialog,
            messages,
            by,
            read,
            from_stream: false,
        } => {
            // Markers are always 1:1 chat stanzas to the message's sender.
            let marker = if read { "displayed" } else { "received" };
            for (m, sender) in messages {
                let stanza = Element::new("message", ns::CLIENT)
                    .with_attr("type", MessageType::Chat.as_str())
                    .with_attr("id", random_hex(12))
                    .with_attr("from", user_jid(app, by, &domain))
                    .with_child(
                        Element::new(marker, ns::CHAT_MARKERS).with_attr("id", m.to_string()),
                    )
                    .with_child(extra(&dialog));
                send_each(services, app, &[sender], &stanza).await;
            }
        }
        ChatEvent::ReactionChanged {
            app,
            dialog,
            kind,
            message,
            by,
            add,
            remove,
            recipients,
        } => {
            let (typ, from) = origin(kind, app, &dialog, by, &domain);
            let mut reactions = Element::new("reactions", ns::CLIENT)
                .with_attr("user_id", by.to_string())
                .with_attr("message_id", message.to_string());
            if let Some(a) = add {
                reactions.push(
                    Element::new("reaction", ns::CLIENT)
                        .with_attr("add", "true")
                        .with_attr("type", a),
                );
            }
            if let Some(r) = remove {
                reactions.push(
                    Element::new("reaction", ns::CLIENT)
                        .with_attr("remove", "true")
                        .with_attr("type", r),
                );
            }
            let stanza = Element::new("message", ns::CLIENT)
                .with_attr("type", typ.as_str())
                .with_attr("id", random_hex(12))
                .with_attr("from", from)
                .with_child(extra(&dialog))
                .with_child(reactions);
            send_each(services, app, &recipients, &stanza).await;
        }
        ChatEvent::SystemMessage {
            app,
            id,
            from,
            to,
            params,
        }
        | ChatEvent::CallSignal {
            app,
            id,
            from,
            to,
            params,
        } => {
            let mut x = Element::new("extraParams", ns::CLIENT)
                .with_child(Element::new("moduleIdentifier", ns::CLIENT).with_text(module));
            for (k, v) in &params {
                x.push(extra_params::param(k, v));
            }
            let stanza = Element::new("message", ns::CLIENT)
                .with_attr("type", MessageType::Headline.as_str())
                .with_attr("id", id.to_string())
                .with_attr("from", user_jid(app, from, &domain))
                .with_child(x);
            // Signals are real-time only: never kept for later.
            let mut s = stanza;
            s.set_attr("to", user_jid(app, to, &domain));
            services.hub.deliver_to_user(key(app, to), &s);
        }
        // Occupancy changes belong to the rooms; stream-caused events were relayed already.
        _ => return false,
    }
    true
}
