//! Messages: create (a private dialog on first message), history with mark-as-read, unread
//! counts, read/delivered, edits, deletes for self or everyone, system messages, reactions, search.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::params::{self, Bounds, Keys};
use super::rules::{self, Action, Role, Visibility};
use super::{Actor, Chat, ChatError, ChatEvent};
use crate::db::dialogs as dialog_repo;
use crate::db::messages::{self as repo, NewMessage as Row};
use crate::db::push as push_repo;
use crate::model::dialog::FilterValue;
use crate::model::filter::{FilterOp, RawFilter, SortDir};
use crate::model::message::{Message, MessageField, MessageFilter, MessageQuery, MessageView};
use crate::model::time::parse_date;
use crate::model::{AppId, Dialog, DialogType, ObjectId, User, UserId};

/// `POST /chat/Message` (and, later, an XMPP message with `save_to_history`), typed.
#[derive(Clone, Debug, Default)]
pub struct NewMessage {
    pub dialog_id: Option<String>,
    pub recipient_id: Option<i64>,
    /// A client-chosen 24-hex id (XMPP stanza id); generated when absent.
    pub id: Option<String>,
    pub body: Option<String>,
    pub attachments: Vec<Value>,
    pub custom: Map<String, Value>,
    pub markable: bool,
    pub send_to_chat: bool,
    pub date_sent: Option<i64>,
}

/// A message stored in a transaction, with what routing it needs.
#[derive(Clone, Debug)]
pub struct Stored {
    pub view: MessageView,
    pub dialog: Dialog,
    /// Members other than the sender (occupants, subscribers, broadcast readers with an inbox).
    pub recipients: Vec<i64>,
    /// It had been stored before (a resend): nothing was written.
    pub duplicate: bool,
}

/// Which applications have push credentials, as last read from the database: an application
/// with none gets no chat alert rows, so its messages skip the recipients' device look-up.
/// Credentials are set by `parley app set-push`, another process, so an answer is trusted for
/// `push.credentials_cache_secs` only (on the chat clock) and then read again.
pub(super) struct PushApps {
    ttl: time::Duration,
    known: std::sync::Mutex<HashMap<i64, (bool, time::OffsetDateTime)>>,
}

/// Applications remembered at once; past it the memory is cleared (applications are few and made
/// by operators, so this only bounds the map).
const MAX_PUSH_APPS: usize = 4096;

impl PushApps {
    pub(super) fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl: time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX),
            known: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, app: i64, now: time::OffsetDateTime) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(&app)
            .filter(|(_, read)| now < read.saturating_add(self.ttl))
            .map(|(has, _)| *has)
    }

    fn remember(&self, app: i64, has: bool, now: time::OffsetDateTime) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_PUSH_APPS && !known.contains_key(&app) {
            known.clear();
        }
        known.insert(app, (has, now));
    }

    /// Whether `app` has credentials for any push provider (read in `tx` when not known).
    async fn has_credentials(
        &self,
        tx: &crate::db::Tx<'_>,
        app: i64,
        now: time::OffsetDateTime,
    ) -> Result<bool, ChatError> {
        if let Some(has) = self.cached(app, now) {
            return Ok(has);
        }
        let has = push_repo::has_push_credentials(tx, app).await?;
        self.remember(app, has, now);
        Ok(has)
    }
}

/// The dialogs a batch of new messages goes to, fetched (and locked) with two statements for the
/// whole batch instead of one per message.
#[derive(Default)]
struct Prefetched {
    /// By (dialog, sender): the dialog and the sender's inbox entry.
    by_id: HashMap<(ObjectId, i64), (Dialog, Option<dialog_repo::Member>)>,
    /// Private dialogs by pair key.
    by_key: HashMap<String, Dialog>,
    /// Every dialog the batch names was asked for: a miss means it does not exist (yet).
    complete: bool,
}

impl Prefetched {
    async fn load(
        tx: &crate::db::Tx<'_>,
        jobs: &[(&Actor, &NewMessage)],
    ) -> Result<Self, ChatError> {
        let mut asks = Vec::new();
        let mut keys = Vec::new();
        for (actor, new) in jobs {
            match (&new.dialog_id, new.recipient_id) {
                (Some(id), _) => {
                    if let Ok(oid) = id.parse::<ObjectId>() {
                        asks.push((actor.app.id, oid, actor.user));
                    }
                }
                (None, Some(other)) => keys.push(private_key(actor, other)),
                (None, None) => {}
            }
        }
        let asks: Vec<_> = asks.iter().map(|(a, id, u)| (*a, id, *u)).collect();
        let (by_id, by_key) = futures_util::future::join(
            async {
                match asks.is_empty() {
                    true => Ok(Vec::new()),
                    false => dialog_repo::get_many_with_member(tx, &asks).await,
                }
            },
            async {
                match keys.is_empty() {
                    true => Ok(Vec::new()),
                    false => dialog_repo::by_private_keys(tx, &keys).await,
                }
            },
        )
        .await;
        Ok(Self {
            by_id: by_id?
                .into_iter()
                .map(|(d, user, m)| ((d.id.clone(), user), (d, m)))
                .collect(),
            by_key: by_key?.into_iter().collect(),
            complete: true,
        })
    }
}

/// The unique key of the private dialog between the actor and `other`.
pub(super) fn private_key(actor: &Actor, other: i64) -> String {
    let (a, b) = (actor.user.0.min(other), actor.user.0.max(other));
    format!("{}:{a}:{b}", actor.app.id)
}

/// One message checked and ready to be written.
struct Fresh {
    id: ObjectId,
    /// The id came from the client, so it may be a resend of a message already stored.
    client_id: bool,
    dialog: Dialog,
    recipient_id: i64,
    attachments: Value,
    custom: Value,
}

/// What a chat alert says of a message: its text, or "attachment" for one without text.
fn alert_text(new: &NewMessage) -> &str {
    match new.body.as_deref().map(str::trim) {
        Some(b) if !b.is_empty() => b,
        _ if !new.attachments.is_empty() => "attachment",
        _ => "",
    }
}

/// `PUT /chat/Message/{ids}`, typed.
#[derive(Clone, Debug, Default)]
pub struct MessageUpdate {
    pub dialog_id: Option<String>,
    pub read: bool,
    pub delivered: bool,
    pub body: Option<String>,
}

/// `GET /chat/search` results.
#[derive(Clone, Debug, Default)]
pub struct SearchResults {
    pub dialogs: Vec<crate::model::dialog::DialogView>,
    pub messages: Vec<MessageView>,
    pub users: Vec<User>,
}

/// Attachment attributes kept (others are dropped).
const ATTACHMENT_KEYS: [&str; 11] = [
    "type",
    "id",
    "url",
    "uid",
    "name",
    "size",
    "content-type",
    "width",
    "height",
    "duration",
    "data",
];

/// The system-message child the server writes itself.
const RESERVED_SYSTEM_PARAMS: [&str; 1] = ["moduleIdentifier"];

fn not_found(id: &str) -> ChatError {
    ChatError::NotFound(format!("Message {id} not found"))
}

impl Chat {
    /// The bounds of a message's (or system message's) custom parameters.
    /// `user` exists in `app`; otherwise 422 naming `field` (a signal to nobody is refused, not
    /// dropped, and a user of another application is nobody here).
    pub(super) async fn require_user(
        &self,
        app: AppId,
        user: i64,
        field: &str,
    ) -> Result<(), ChatError> {
        if self
            .inner
            .identity
            .unknown_users(app, &[user])
            .await?
            .is_empty()
        {
            Ok(())
        } else {
            Err(ChatError::invalid(
                field,
                format!("user {user} does not exist"),
            ))
        }
    }

    pub(super) fn custom_bounds(&self) -> Bounds {
        let c = &self.inner.config;
        Bounds {
            what: "the custom parameters",
            keys: c.max_custom_params,
            bytes: c.max_custom_params_bytes,
            depth: c.max_custom_params_depth,
        }
    }

    /// Attachments: objects whose keys are attribute names (checked before unknown keys are
    /// dropped, so a bad name is refused, not hidden), each within `max_attachment_bytes`.
    fn clean_attachments(&self, list: Vec<Value>) -> Result<Value, ChatError> {
        let max = self.inner.config.max_attachments;
        if list.len() > max {
            return Err(ChatError::invalid(
                "attachments",
                format!("at most {max} attachments"),
            ));
        }
        let bounds = Bounds {
            what: "the attachment",
            keys: usize::MAX,
            bytes: self.inner.config.max_attachment_bytes,
            depth: self.inner.config.max_custom_params_depth,
        };
        let mut out = Vec::new();
        for (i, a) in list.into_iter().enumerate() {
            let Value::Object(m) = a else {
                return Err(ChatError::invalid(
                    "attachments",
                    "each attachment must be an object",
                ));
            };
            let name = format!("attachments[{i}]");
            params::check(Some(&name), &m, Keys::TopNames, bounds, &[])?;
            let kept: Map<String, Value> = m
                .into_iter()
                .filter(|(k, v)| ATTACHMENT_KEYS.contains(&k.as_str()) && !v.is_null())
                .collect();
            out.push(Value::Object(kept));
        }
        Ok(Value::Array(out))
    }

    /// The dialog a new message goes to: by id, or the private dialog with `recipient_id`
    /// (created on first message; safe against a concurrent explicit create).
    async fn target_dialog(
        &self,
        tx: &crate::db::Tx<'_>,
        actor: &Actor,
        new: &NewMessage,
        known: &Prefetched,
    ) -> Result<(Dialog, Role), ChatError> {
        if let Some(id) = &new.dialog_id {
            let nf = || ChatError::NotFound(format!("Dialog {id} not found"));
            let oid: ObjectId = id.parse().map_err(|_| nf())?;
            let found = match known.by_id.get(&(oid.clone(), actor.user.0)) {
                Some(hit) => Some(hit.clone()),
                None if known.complete => None,
                None => dialog_repo::get_with_member(tx, actor.app.id, &oid, actor.user).await?,
            };
            let (d, member) = found.ok_or_else(nf)?;
            if d.kind == DialogType::Broadcast && member.is_none() {
                let (role, _) = self.role(tx, actor, &d).await?;
                return Ok((d, role));
            }
            let role = rules::role_of(&d, actor.user, member.is_some());
            return Ok((d, role));
        }
        let other = new
            .recipient_id
            .ok_or_else(|| ChatError::invalid("chat_dialog_id", "or recipient_id is required"))?;
        if other == actor.user.0 {
            return Err(ChatError::invalid("recipient_id", "cannot be yourself"));
        }
        let key = private_key(actor, other);
        // Every message after the first finds its dialog among those fetched for the batch.
        let found = match known.by_key.get(&key) {
            Some(d) => Some(d.clone()),
            None if known.complete => None,
            None => dialog_repo::by_private_key(tx, &key, true).await?,
        };
        if let Some(d) = found {
            return Ok((d, Role::Regular));
        }
        if !crate::db::users::missing_ids(tx, actor.app.id, &[other])
            .await?
            .is_empty()
        {
            return Err(ChatError::invalid(
                "recipient_id",
                format!("user {other} does not exist"),
            ));
        }
        let now = self.clock().now();
        let fresh = Dialog {
            id: ObjectId::generate(now.unix_timestamp()),
            application_id: actor.app.id,
            kind: DialogType::Private,
            owner: actor.user,
            name: None,
            photo: None,
            description: None,
            occupants: vec![actor.user.0, other],
            admins: vec![],
            pinned: vec![],
            occupants_count: 0,
            extensions: None,
            data: None,
            allow_preview: false,
            last_message_id: None,
            last_message: None,
            last_message_user_id: None,
            last_message_date_sent: None,
            created_at: now,
            updated_at: now,
        };
        let d = match dialog_repo::insert(tx, &fresh, Some(&key)).await? {
            Some(d) => {
                dialog_repo::add_members(tx, &d, &d.occupants).await?;
                d
            }
            None => dialog_repo::by_private_key(tx, &key, false)
                .await?
                .ok_or_else(|| ChatError::NotFound("Dialog not found".into()))?,
        };
        let d = dialog_repo::get(tx, actor.app.id, &d.id, true)
            .await?
            .ok_or_else(|| ChatError::NotFound("Dialog not found".into()))?;
        Ok((d, Role::Regular))
    }

    async fn role(
        &self,
        tx: &crate::db::Tx<'_>,
        actor: &Actor,
        d: &Dialog,
    ) -> Result<(Role, Option<dialog_repo::Member>), ChatError> {
        if d.kind == DialogType::Broadcast {
            dialog_repo::ensure_broadcast_members(tx, actor.app.id, actor.user).await?;
        }
        let member = dialog_repo::member(tx, &d.id, actor.user).await?;
        Ok((rules::role_of(d, actor.user, member.is_some()), member))
    }

    /// `POST /chat/Message`: stores a message; the dialog's last message and every other
    /// member's unread count change in the same transaction. `send_to_chat` publishes it.
    /// Goes through the group-commit writer, so concurrent creates share one commit.
    pub async fn create_message(
        &self,
        actor: &Actor,
        new: NewMessage,
    ) -> Result<MessageView, ChatError> {
        Ok(self.store_message(actor, new).await?.view)
    }

    /// What a committed message needs published: `send_to_chat` delivers it in real time.
    pub(crate) fn after_store(&self, actor: &Actor, new: &NewMessage, stored: &Stored) {
        if new.send_to_chat && !stored.duplicate {
            self.events().publish(ChatEvent::MessageSent {
                app: actor.app.id,
                dialog: stored.dialog.id.clone(),
                kind: stored.dialog.kind,
                recipients: stored.recipients.clone(),
                message: to_event_json(&stored.view.message),
            });
        }
    }

    /// Stores messages inside `tx`. Each is checked (size, attachments, the sender's role, a
    /// resend of a message already stored — same id, sender and dialog — is returned marked
    /// `duplicate` without storing twice); the accepted ones are then written with one
    /// set-based statement. The checks of all messages run pipelined on the connection.
    /// The outer error is a database failure (the transaction must be rolled back); the inner
    /// ones are refusals of single messages, which leave the others untouched.
    pub(crate) async fn store_many(
        &self,
        tx: &crate::db::Tx<'_>,
        jobs: &[(&Actor, &NewMessage)],
    ) -> Result<Vec<Result<Stored, ChatError>>, ChatError> {
        let known = Prefetched::load(tx, jobs).await?;
        let plans = futures_util::future::join_all(
            jobs.iter()
                .map(|(actor, new)| self.plan(tx, actor, new, &known)),
        )
        .await;
        if let Some(e) = plans
            .iter()
            .find_map(|p| p.as_ref().err().filter(|e| e.is_store_failure()))
        {
            return Err(ChatError::Unavailable(e.to_string()));
        }
        let now = self.clock().now();
        let rows: Vec<Row> = plans
            .iter()
            .zip(jobs)
            .filter_map(|(p, (actor, new))| match p {
                Ok(f) => Some(Row {
                    id: &f.id,
                    app: actor.app.id.0,
                    dialog: &f.dialog.id,
                    sender: actor.user,
                    recipient_id: f.recipient_id,
                    body: new.body.as_deref(),
                    attachments: &f.attachments,
                    custom: &f.custom,
                    markable: new.markable,
                    date_sent: new.date_sent.unwrap_or_else(|| now.unix_timestamp()),
                }),
                _ => None,
            })
            .collect();
        let mut inserted = repo::insert_many(tx, &rows, now).await?.into_iter();
        drop(rows);
        let mut out = Vec::with_capacity(jobs.len());
        for (plan, (actor, _)) in plans.into_iter().zip(jobs) {
            out.push(match plan {
                Err(e) => Err(e),
                Ok(f) => {
                    let Some(message) = inserted.next().flatten() else {
                        out.push(self.not_inserted(tx, actor, f).await?);
                        continue;
                    };
                    // A new message has no reactions yet: its view is the inserted row.
                    let view = MessageView {
                        message,
                        own_reactions: Vec::new(),
                        reaction_totals: Map::new(),
                    };
                    let recipients = self.recipients(tx, &f.dialog, actor.user).await?;
                    Ok(Stored {
                        view,
                        dialog: f.dialog,
                        recipients,
                        duplicate: false,
                    })
                }
            });
        }
        self.enqueue_alerts(tx, jobs, &out, now).await?;
        Ok(out)
    }

    /// Chat alerts for the messages just stored, in the same transaction (so a message and its
    /// pushes commit together): every recipient of each new, non-`silent` message of an
    /// application with push credentials. The outbox statement keeps those with notifications
    /// on for the dialog and a subscribed device; whether each is online and active is decided
    /// when the push is delivered. The webhook's `message.created` calls are enqueued here too,
    /// for the same reason (with or without push credentials).
    async fn enqueue_alerts(
        &self,
        tx: &crate::db::Tx<'_>,
        jobs: &[(&Actor, &NewMessage)],
        stored: &[Result<Stored, ChatError>],
        now: time::OffsetDateTime,
    ) -> Result<(), ChatError> {
        // A batch nearly always comes from one application; ask once per distinct one.
        let mut pushing: Vec<(i64, bool)> = Vec::new();
        for (actor, _) in jobs {
            let app = actor.app.id.0;
            if !pushing.iter().any(|(a, _)| *a == app) {
                let has = self.inner.push_apps.has_credentials(tx, app, now).await?;
                pushing.push((app, has));
            }
        }
        let rows: Vec<push_repo::AlertRow<'_>> = stored
            .iter()
            .zip(jobs)
            .filter_map(|(s, (actor, new))| {
                let s = s.as_ref().ok().filter(|s| !s.duplicate)?;
                if s.recipients.is_empty() || rules::is_silent(&new.custom) {
                    return None;
                }
                if !pushing.contains(&(actor.app.id.0, true)) {
                    return None;
                }
                let m = &s.view.message;
                Some(push_repo::AlertRow {
                    app: actor.app.id.0,
                    message_id: m.id.as_str(),
                    dialog_id: s.dialog.id.as_str(),
                    dialog_name: s.dialog.name.as_deref(),
                    sender: actor.user.0,
                    text: alert_text(new),
                    recipients: &s.recipients,
                })
            })
            .collect();
        push_repo::enqueue_alerts(tx, &rows, now).await?;
        let created: Vec<(i64, serde_json::Value)> = stored
            .iter()
            .zip(jobs)
            .filter_map(|(s, (actor, _))| {
                let s = s.as_ref().ok().filter(|s| !s.duplicate)?;
                Some((actor.app.id.0, to_event_json(&s.view.message)))
            })
            .collect();
        push_repo::enqueue_webhooks(tx, "message.created", &created, now).await?;
        Ok(())
    }

    /// A message the batch statement skipped because its id is taken: a resend of the same
    /// message (same id, sender and dialog) is returned as stored, marked `duplicate`; another
    /// message's id is refused. The outer error means the store failed.
    async fn not_inserted(
        &self,
        tx: &crate::db::Tx<'_>,
        actor: &Actor,
        f: Fresh,
    ) -> Result<Result<Stored, ChatError>, ChatError> {
        let same = match repo::get(tx, &f.id).await? {
            Some(m) => f.client_id && m.sender_id == actor.user.0 && m.dialog_id == f.dialog.id,
            None => {
                return Err(ChatError::Unavailable(format!(
                    "message {} was not stored",
                    f.id
                )))
            }
        };
        if !same {
            return Ok(Err(ChatError::invalid(
                "_id",
                "is already used by another message",
            )));
        }
        let view = repo::view(tx, &f.id, actor.user)
            .await?
            .ok_or_else(|| not_found(f.id.as_str()))?;
        let recipients = self.recipients(tx, &f.dialog, actor.user).await?;
        Ok(Ok(Stored {
            view,
            dialog: f.dialog,
            recipients,
            duplicate: true,
        }))
    }

    /// Everything about one new message decided before anything is written.
    async fn plan(
        &self,
        tx: &crate::db::Tx<'_>,
        actor: &Actor,
        new: &NewMessage,
        known: &Prefetched,
    ) -> Result<Fresh, ChatError> {
        let cfg = &self.inner.config;
        if new
            .body
            .as_ref()
            .is_some_and(|b| b.chars().count() > cfg.max_message_chars)
        {
            return Err(ChatError::invalid(
                "message",
                format!(
                    "is too long (maximum is {} characters)",
                    cfg.max_message_chars
                ),
            ));
        }
        if let Some(b) = &new.body {
            params::check_text("message", b)?;
        }
        params::check(
            None,
            &new.custom,
            Keys::AllNames,
            self.custom_bounds(),
            &crate::model::message::RESERVED,
        )?;
        let id = match &new.id {
            Some(s) => s
                .parse::<ObjectId>()
                .map_err(|_| ChatError::invalid("_id", "must be 24 hex characters"))?,
            None => ObjectId::generate(self.clock().unix_seconds()),
        };
        let attachments = self.clean_attachments(new.attachments.clone())?;
        let custom = Value::Object(new.custom.clone());
        let (dialog, role) = self.target_dialog(tx, actor, new, known).await?;
        if rules::visible(role, &dialog) == Visibility::Hidden {
            return Err(ChatError::NotFound(format!(
                "Dialog {} not found",
                dialog.id
            )));
        }
        rules::check(role, dialog.kind, Action::SendMessage)?;
        let recipient_id = match dialog.kind {
            DialogType::Private => dialog
                .occupants
                .iter()
                .copied()
                .find(|o| *o != actor.user.0)
                .unwrap_or(0),
            _ => 0,
        };
        Ok(Fresh {
            client_id: new.id.is_some(),
            id,
            dialog,
            recipient_id,
            attachments,
            custom,
        })
    }

    /// Everyone in the dialog but `except`: occupants, or inbox members of public and broadcast
    /// dialogs (the real-time layer adds whoever is online in the room).
    pub(super) async fn recipients(
        &self,
        tx: &crate::db::Tx<'_>,
        d: &Dialog,
        except: UserId,
    ) -> Result<Vec<i64>, ChatError> {
        let mut all = if d.kind.lists_occupants() {
            d.occupants.clone()
        } else {
            dialog_repo::member_ids(tx, &d.id, i64::MAX, 0).await?
        };
        all.retain(|u| *u != except.0);
        Ok(all)
    }

    /// For a real-time group message that is not stored: may the actor send to this dialog, and
    /// who receives it? (The same rule as storing one.)
    pub async fn room_for_send(
        &self,
        actor: &Actor,
        dialog_id: &str,
    ) -> Result<(Dialog, Vec<i64>), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let probe = NewMessage {
            dialog_id: Some(dialog_id.to_string()),
            ..Default::default()
        };
        let (dialog, role) = self
            .target_dialog(&tx, actor, &probe, &Prefetched::default())
            .await?;
        if rules::visible(role, &dialog) == Visibility::Hidden {
            return Err(ChatError::NotFound(format!("Dialog {dialog_id} not found")));
        }
        rules::check(role, dialog.kind, Action::SendMessage)?;
        let recipients = self.recipients(&tx, &dialog, actor.user).await?;
        tx.commit().await?;
        Ok((dialog, recipients))
    }

    /// For joining a room: may the actor read this dialog's history, and who are its members?
    /// Exactly REST's `GET /chat/Message` rule ([`rules::visible`] up to `History`): a room
    /// shows its history on join.
    pub async fn room_for_read(
        &self,
        actor: &Actor,
        dialog_id: &str,
    ) -> Result<(Dialog, Vec<i64>), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (dialog, _, _) = self.readable(&tx, actor, dialog_id).await?;
        let mut members = self.recipients(&tx, &dialog, actor.user).await?;
        members.push(actor.user.0);
        tx.commit().await?;
        Ok((dialog, members))
    }

    /// **May the actor read a file shared as an attachment**: true when a message carrying
    /// the blob `uid` in its `attachments` is in the history of a dialog the actor may read
    /// (`readable`: the same rule as `GET /chat/Message`) and the actor has not deleted it for
    /// themselves. Deleting the message for everyone withdraws the share. The storage API asks
    /// this for private blobs that are not the caller's own.
    pub async fn sees_attachment(&self, actor: &Actor, uid: &str) -> Result<bool, ChatError> {
        /// Dialogs looked at per question: a file is rarely shared in more places than this.
        const DIALOGS_CHECKED: i64 = 16;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let dialogs =
            repo::dialogs_with_attachment(&tx, actor.app.id.0, actor.user, uid, DIALOGS_CHECKED)
                .await?;
        for id in dialogs {
            match self.readable(&tx, actor, &id).await {
                Ok(_) => return Ok(true),
                Err(ChatError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Loads a dialog whose history the actor may read, with their inbox entry. Anything less
    /// visible is "not found" (a public dialog a user has not subscribed to included).
    pub(super) async fn readable(
        &self,
        tx: &crate::db::Tx<'_>,
        actor: &Actor,
        id: &str,
    ) -> Result<(Dialog, Role, Option<dialog_repo::Member>), ChatError> {
        let nf = || ChatError::NotFound(format!("Dialog {id} not found"));
        let oid: ObjectId = id.parse().map_err(|_| nf())?;
        let d = dialog_repo::get(tx, actor.app.id, &oid, false)
            .await?
            .ok_or_else(nf)?;
        let (role, member) = self.role(tx, actor, &d).await?;
        if rules::visible(role, &d) < Visibility::History {
            return Err(nf());
        }
        Ok((d, role, member))
    }

    /// `GET /chat/Message`: one page of history; unless `mark_as_read` is off, what the caller
    /// retrieves becomes read for them (unread counts and senders' statuses follow).
    pub async fn list_messages(
        &self,
        actor: &Actor,
        dialog_id: Option<String>,
        q: MessageQuery,
        mark_as_read: bool,
    ) -> Result<Vec<MessageView>, ChatError> {
        let dialog_id =
            dialog_id.ok_or_else(|| ChatError::invalid("chat_dialog_id", "is required"))?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, _, member) = self.readable(&tx, actor, &dialog_id).await?;
        let cleared = member.as_ref().map_or(0, |m| m.cleared_seq);
        let mut items = repo::history(&tx, &d.id, actor.user, cleared, &q).await?;
        let mut marked = Vec::new();
        if mark_as_read && member.is_some() {
            let ids: Vec<String> = items
                .iter()
                .filter(|v| {
                    v.message.sender_id != actor.user.0
                        && !v.message.read_ids.contains(&actor.user.0)
                })
                .map(|v| v.message.id.to_string())
                .collect();
            if !ids.is_empty() {
                marked =
                    repo::mark_read(&tx, &d.id, actor.user, Some(&ids), self.clock().now()).await?;
                for v in items
                    .iter_mut()
                    .filter(|v| marked.iter().any(|(id, _)| *id == v.message.id))
                {
                    v.message.read_ids.push(actor.user.0);
                    if !v.message.delivered_ids.contains(&actor.user.0) {
                        v.message.delivered_ids.push(actor.user.0);
                    }
                }
            }
        }
        tx.commit().await?;
        if !marked.is_empty() {
            self.events().publish(ChatEvent::MessagesMarked {
                app: actor.app.id,
                dialog: d.id,
                messages: marked,
                by: actor.user.0,
                read: true,
                from_stream: actor.from_stream,
            });
        }
        Ok(items)
    }

    /// `GET /chat/Message/unread`: the total over the caller's dialogs and, for the dialogs asked
    /// (all when none), each one's count. Read from the inbox, never counted from history.
    pub async fn unread(
        &self,
        actor: &Actor,
        dialogs: Option<Vec<String>>,
    ) -> Result<(i64, Vec<(String, i32)>), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        dialog_repo::ensure_broadcast_members(&tx, actor.app.id, actor.user).await?;
        let counts = repo::unread(&tx, actor.user).await?;
        tx.commit().await?;
        let total = counts.iter().map(|(_, n)| i64::from(*n)).sum();
        let per = match dialogs {
            Some(ids) => ids
                .into_iter()
                .map(|id| {
                    let n = counts.iter().find(|(d, _)| *d == id).map_or(0, |(_, n)| *n);
                    (id, n)
                })
                .collect(),
            None => counts,
        };
        Ok((total, per))
    }

    /// `PUT /chat/Message/{ids}` (or every message of `chat_dialog_id` when no id is given):
    /// `read`, `delivered` (idempotent), or a new body (the sender only, one message).
    pub async fn update_messages(
        &self,
        actor: &Actor,
        ids: Vec<String>,
        u: MessageUpdate,
    ) -> Result<(), ChatError> {
        for id in &ids {
            id.parse::<ObjectId>().map_err(|_| not_found(id))?;
        }
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let dialog_id = match (&u.dialog_id, ids.first()) {
            (Some(d), _) => d.clone(),
            (None, Some(first)) => {
                let m = repo::get(&tx, &first.parse().map_err(|_| not_found(first))?)
                    .await?
                    .ok_or_else(|| not_found(first))?;
                m.dialog_id.to_string()
            }
            (None, None) => {
                return Err(ChatError::invalid(
                    "chat_dialog_id",
                    "is required when no message id is given",
                ))
            }
        };
        let (d, role, member) = self.readable(&tx, actor, &dialog_id).await?;
        if !ids.is_empty() {
            let found = repo::existing_in_dialog(&tx, &d.id, &ids).await?;
            if let Some(missing) = ids.iter().find(|i| !found.contains(i)) {
                return Err(not_found(missing));
            }
        }
        let now = self.clock().now();
        let target = (!ids.is_empty()).then_some(ids.as_slice());
        let mut events = Vec::new();
        if let Some(body) = &u.body {
            let [id] = ids.as_slice() else {
                return Err(ChatError::invalid(
                    "message",
                    "can be edited on one message at a time",
                ));
            };
            if body.chars().count() > self.inner.config.max_message_chars {
                return Err(ChatError::invalid("message", "is too long"));
            }
            params::check_text("message", body)?;
            let oid: ObjectId = id.parse().map_err(|_| not_found(id))?;
            let m = repo::get(&tx, &oid).await?.ok_or_else(|| not_found(id))?;
            if m.sender_id != actor.user.0 {
                return Err(ChatError::Forbidden(
                    "Forbidden: only the sender may edit a message".into(),
                ));
            }
            rules::check(role, d.kind, Action::EditOwnMessage)?;
            repo::edit(&tx, &oid, body, now).await?;
            // The webhook's `message.updated` commits with the edit (the outbox is transactional).
            if let Some(edited) = repo::get(&tx, &oid).await? {
                let data = vec![(actor.app.id.0, to_event_json(&edited))];
                push_repo::enqueue_webhooks(&tx, "message.updated", &data, now).await?;
            }
            let recipients = self.recipients(&tx, &d, actor.user).await?;
            events.push(ChatEvent::MessageEdited {
                app: actor.app.id,
                dialog: d.id.clone(),
                kind: d.kind,
                from_stream: actor.from_stream,
                message: oid,
                sender: actor.user.0,
                body: body.clone(),
                recipients,
            });
        }
        if (u.read || u.delivered) && member.is_none() {
            return Err(ChatError::NotFound(format!("Dialog {dialog_id} not found")));
        }
        if u.read {
            let marked = repo::mark_read(&tx, &d.id, actor.user, target, now).await?;
            if !marked.is_empty() {
                events.push(ChatEvent::MessagesMarked {
                    app: actor.app.id,
                    dialog: d.id.clone(),
                    messages: marked,
                    by: actor.user.0,
                    read: true,
                    from_stream: actor.from_stream,
                });
            }
        } else if u.delivered {
            let marked = repo::mark_delivered(&tx, &d.id, actor.user, target, now).await?;
            if !marked.is_empty() {
                events.push(ChatEvent::MessagesMarked {
                    app: actor.app.id,
                    dialog: d.id.clone(),
                    messages: marked,
                    by: actor.user.0,
                    read: false,
                    from_stream: actor.from_stream,
                });
            }
        }
        tx.commit().await?;
        for e in events {
            self.events().publish(e);
        }
        Ok(())
    }

    /// `DELETE /chat/Message/{ids}`: for the caller only, or with `force` for everyone, each
    /// message by the seed's rules for its dialog type and the caller's role.
    /// With `within`, only messages of that dialog count (a room's `remove` cannot reach
    /// another dialog's message); others are "not found".
    pub async fn delete_messages(
        &self,
        actor: &Actor,
        ids: &[String],
        force: bool,
        within: Option<&str>,
    ) -> Result<super::dialogs::DeleteReport, ChatError> {
        let mut report = super::dialogs::DeleteReport::default();
        for id in ids {
            report.record(id, self.delete_message(actor, id, force, within).await)?;
        }
        Ok(report)
    }

    async fn delete_message(
        &self,
        actor: &Actor,
        id: &str,
        force: bool,
        within: Option<&str>,
    ) -> Result<(), ChatError> {
        let oid: ObjectId = id.parse().map_err(|_| not_found(id))?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let m = repo::get(&tx, &oid).await?.ok_or_else(|| not_found(id))?;
        if within.is_some_and(|d| d != m.dialog_id.as_str()) {
            return Err(not_found(id));
        }
        let d = dialog_repo::get(&tx, actor.app.id, &m.dialog_id, true)
            .await?
            .ok_or_else(|| not_found(id))?;
        let (role, member) = self.role(&tx, actor, &d).await?;
        let visible = member.as_ref().is_some_and(|mm| m.seq > mm.cleared_seq);
        if role == Role::Outsider || !visible || repo::is_hidden_for(&tx, &m, actor.user).await? {
            return Err(not_found(id));
        }
        let own = m.sender_id == actor.user.0;
        if force {
            let action = if own {
                Action::DeleteOwnMessageForEveryone
            } else {
                Action::DeleteAnyMessageForEveryone
            };
            rules::check(role, d.kind, action)?;
            repo::delete(&tx, &m).await?;
            // `message.deleted` is for deletions for everyone only: hiding a message for oneself
            // changes nothing the application's backend keeps.
            let data = vec![(
                actor.app.id.0,
                serde_json::json!({
                    "_id": m.id,
                    "chat_dialog_id": m.dialog_id,
                    "sender_id": m.sender_id,
                    "deleted_by": actor.user.0,
                }),
            )];
            let now = self.clock().now();
            push_repo::enqueue_webhooks(&tx, "message.deleted", &data, now).await?;
            let recipients = self.recipients(&tx, &d, actor.user).await?;
            tx.commit().await?;
            self.events().publish(ChatEvent::MessagesDeleted {
                app: actor.app.id,
                dialog: d.id,
                kind: d.kind,
                from_stream: actor.from_stream,
                messages: vec![oid],
                by: actor.user.0,
                recipients,
            });
        } else {
            rules::check(role, d.kind, Action::DeleteMessageForSelf)?;
            repo::hide_for(&tx, &m, actor.user).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// `POST /chat/Message/system`: a signal to one user, delivered in real time, never stored.
    pub async fn system_message(
        &self,
        actor: &Actor,
        recipient: Option<i64>,
        params: Map<String, Value>,
    ) -> Result<ObjectId, ChatError> {
        let to = recipient.ok_or_else(|| ChatError::invalid("recipientId", "is required"))?;
        params::check(
            None,
            &params,
            Keys::AllNames,
            self.custom_bounds(),
            &RESERVED_SYSTEM_PARAMS,
        )?;
        self.require_user(actor.app.id, to, "recipientId").await?;
        let id = ObjectId::generate(self.clock().unix_seconds());
        self.events().publish(ChatEvent::SystemMessage {
            app: actor.app.id,
            id: id.clone(),
            from: actor.user.0,
            to,
            params,
        });
        Ok(id)
    }

    /// `PUT /chat/Message/{id}/reactions`: adds and/or removes the caller's reaction (one per
    /// user: adding another replaces it); the dialog's members are told.
    pub async fn react(
        &self,
        actor: &Actor,
        id: &str,
        add: Option<String>,
        remove: Option<String>,
    ) -> Result<(), ChatError> {
        let max = self.inner.config.max_reaction_chars;
        for (field, v) in [("add", &add), ("remove", &remove)] {
            if let Some(r) = v {
                let n = r.chars().count();
                if n == 0 || n > max {
                    return Err(ChatError::invalid(
                        field,
                        format!("must be 1 to {max} characters"),
                    ));
                }
                params::check_text(field, r)?;
            }
        }
        if add.is_none() && remove.is_none() {
            return Err(ChatError::invalid("add", "or remove is required"));
        }
        let oid: ObjectId = id.parse().map_err(|_| not_found(id))?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let m = repo::get(&tx, &oid).await?.ok_or_else(|| not_found(id))?;
        let (d, role, _) = self
            .readable(&tx, actor, m.dialog_id.as_str())
            .await
            .map_err(|_| not_found(id))?;
        rules::check(role, d.kind, Action::Read)?;
        repo::react(
            &tx,
            &oid,
            actor.user,
            add.as_deref(),
            remove.as_deref(),
            self.clock().now(),
        )
        .await?;
        let recipients = self.recipients(&tx, &d, actor.user).await?;
        tx.commit().await?;
        self.events().publish(ChatEvent::ReactionChanged {
            app: actor.app.id,
            dialog: d.id,
            kind: d.kind,
            message: oid,
            by: actor.user.0,
            add,
            remove,
            recipients,
        });
        Ok(())
    }

    /// `GET /chat/Message/{id}/reactions`: reaction → user ids.
    pub async fn reactions(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<Vec<(String, Vec<i64>)>, ChatError> {
        let oid: ObjectId = id.parse().map_err(|_| not_found(id))?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let m = repo::get(&tx, &oid).await?.ok_or_else(|| not_found(id))?;
        self.readable(&tx, actor, m.dialog_id.as_str())
            .await
            .map_err(|_| not_found(id))?;
        let list = repo::reactions(&tx, &oid).await?;
        tx.commit().await?;
        Ok(list)
    }

    /// `GET /chat/search`: messages (and dialog names) containing `text`, only in the caller's
    /// dialogs, within at most 10 dialogs and a window of at most `search_window_days`.
    pub async fn search(
        &self,
        actor: &Actor,
        text: Option<String>,
        dialogs: Option<Vec<String>>,
        start: Option<String>,
        end: Option<String>,
        limit: Option<i64>,
    ) -> Result<SearchResults, ChatError> {
        let cfg = &self.inner.config;
        let text = text.unwrap_or_default();
        if text.chars().count() < cfg.search_min_chars {
            return Err(ChatError::invalid(
                "search_text",
                format!("must be at least {} characters", cfg.search_min_chars),
            ));
        }
        params::check_text("search_text", &text)?;
        if let Some(d) = &dialogs {
            if d.len() > 10 {
                return Err(ChatError::invalid(
                    "chat_dialog_ids",
                    "takes at most 10 dialogs",
                ));
            }
        }
        let limit = limit.unwrap_or(100);
        if !(1..=100).contains(&limit) {
            return Err(ChatError::invalid("limit", "must be between 1 and 100"));
        }
        let date = |field: &str, v: &str| {
            parse_date(v).ok_or_else(|| {
                ChatError::invalid(field, "must be a date (ISO-8601 or unix seconds)")
            })
        };
        let window = match (start, end) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ChatError::invalid(
                    "end_date",
                    "is required with start_date",
                ))
            }
            (None, Some(_)) => {
                return Err(ChatError::invalid(
                    "start_date",
                    "is required with end_date",
                ))
            }
            (Some(s), Some(e)) => {
                let (s, e) = (date("start_date", &s)?, date("end_date", &e)?);
                let (lo, hi) = if s < e { (s, e) } else { (e, s) };
                if hi - lo > time::Duration::days(cfg.search_window_days) {
                    return Err(ChatError::invalid(
                        "end_date",
                        format!(
                            "must be within {} days of start_date",
                            cfg.search_window_days
                        ),
                    ));
                }
                Some((lo.unix_timestamp(), hi.unix_timestamp()))
            }
        };
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let messages = repo::search(
            &tx,
            actor.app.id.0,
            actor.user,
            &text,
            dialogs.as_deref(),
            window,
            limit,
        )
        .await?;
        let raw = vec![RawFilter {
            field: "name".into(),
            op: Some("ctn".into()),
            values: vec![text.clone()],
        }];
        let q = super::query::dialog_query(&actor.app, raw, None, Some(limit), None)?;
        let (mut found, _) =
            dialog_repo::list(&tx, actor.app.id, actor.user, &q, false, false).await?;
        // Names match case-sensitively, like message bodies.
        found.retain(|v| v.dialog.name.as_deref().is_some_and(|n| n.contains(&text)));
        if let Some(ids) = &dialogs {
            found.retain(|v| ids.contains(&v.dialog.id.to_string()));
        }
        let mut senders: Vec<i64> = messages.iter().map(|m| m.message.sender_id).collect();
        senders.sort_unstable();
        senders.dedup();
        let users = crate::db::users::by_ids(&tx, actor.app.id, &senders).await?;
        tx.commit().await?;
        Ok(SearchResults {
            dialogs: found,
            messages,
            users,
        })
    }
}

/// Types `GET /chat/Message` parameters.
pub fn message_query(
    raw: Vec<RawFilter>,
    sort: Option<(String, SortDir)>,
    limit: Option<i64>,
    skip: Option<i64>,
) -> Result<MessageQuery, ChatError> {
    let limit = limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(ChatError::invalid("limit", "must be between 1 and 100"));
    }
    let skip = skip.unwrap_or(0);
    if skip < 0 {
        return Err(ChatError::invalid("skip", "cannot be negative"));
    }
    let mut filters = Vec::new();
    for r in raw {
        let field = match r.field.as_str() {
            "_id" => MessageField::Id,
            "message" => MessageField::Body,
            "date_sent" => MessageField::DateSent,
            "sender_id" => MessageField::SenderId,
            "recipient_id" => MessageField::RecipientId,
            "attachments.type" => MessageField::AttachmentsType,
            "updated_at" => MessageField::UpdatedAt,
            other => {
                return Err(ChatError::invalid(
                    other,
                    "is not a field messages can be filtered by",
                ))
            }
        };
        let op = r.op().map_err(|m| ChatError::invalid(&r.field, m))?;
        let allowed = match field {
            MessageField::AttachmentsType => matches!(
                op,
                FilterOp::Eq | FilterOp::In | FilterOp::Nin | FilterOp::Ne | FilterOp::All
            ),
            MessageField::Body | MessageField::Id => {
                !matches!(op, FilterOp::All | FilterOp::StartWith)
            }
            _ => !matches!(op, FilterOp::All | FilterOp::StartWith | FilterOp::Ctn),
        };
        if !allowed {
            return Err(ChatError::invalid(
                &r.field,
                format!("does not take the operator `{op}`"),
            ));
        }
        let values = r
            .clean_values()
            .map_err(|m| ChatError::invalid(&r.field, m))?;
        if !op.takes_list() && values.len() > 1 {
            return Err(ChatError::invalid(
                &r.field,
                format!("`{op}` takes one value"),
            ));
        }
        let value = match field {
            MessageField::DateSent | MessageField::SenderId | MessageField::RecipientId => {
                FilterValue::Ints(
                    values
                        .iter()
                        .map(|v| v.parse::<i64>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| ChatError::invalid(&r.field, "must be integers"))?,
                )
            }
            MessageField::UpdatedAt => FilterValue::Dates(
                values
                    .iter()
                    .map(|v| parse_date(v))
                    .collect::<Option<_>>()
                    .ok_or_else(|| ChatError::invalid(&r.field, "must be a date"))?,
            ),
            _ => FilterValue::Texts(values),
        };
        filters.push(MessageFilter { field, op, value });
    }
    let sort = match sort {
        None => SortDir::Asc,
        Some((f, dir)) if f == "date_sent" || f == "created_at" => dir,
        Some((f, _)) => {
            return Err(ChatError::invalid(
                "sort",
                format!("cannot sort messages by `{f}`"),
            ))
        }
    };
    Ok(MessageQuery {
        filters,
        sort,
        limit,
        skip,
    })
}

/// The message as the real-time layer receives it in events (the REST shape, no per-user fields).
pub fn to_event_json(m: &Message) -> Value {
    let mut v = serde_json::json!({
        "_id": m.id,
        "chat_dialog_id": m.dialog_id,
        "sender_id": m.sender_id,
        "recipient_id": m.recipient_id,
        "message": m.body,
        "attachments": m.attachments,
        "date_sent": m.date_sent,
        "markable": m.markable,
    });
    if let Value::Object(o) = &mut v {
        for (k, val) in &m.custom {
            o.entry(k.clone()).or_insert_with(|| val.clone());
        }
    }
    v
}
