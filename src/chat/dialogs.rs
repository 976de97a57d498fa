//! Dialogs: create (private ones unique per pair), list (the inbox), update (occupants, admins,
//! pins, info), delete for self or everyone, clear history, subscribe, notifications, occupants.

use serde_json::{Map, Value};

use super::params::{self, Bounds, Keys};
use super::query::{asks_public_only, dialog_query};
use super::rules::{self, Action, Role, Visibility};
use super::{Actor, Chat, ChatError, ChatEvent};
use crate::db::dialogs::{self as repo, Member};
use crate::db::push as push_repo;
use crate::model::dialog::{DialogQuery, DialogView};
use crate::model::filter::{RawFilter, SortDir};
use crate::model::{Application, Dialog, DialogType, ObjectId, User, UserId};

/// `POST /chat/Dialog`, typed.
#[derive(Clone, Debug, Default)]
pub struct NewDialog {
    pub kind: Option<DialogType>,
    pub name: Option<String>,
    pub photo: Option<String>,
    pub description: Option<String>,
    pub occupants: Vec<i64>,
    pub admins: Vec<i64>,
    pub extensions: Option<Value>,
    pub data: Option<Value>,
    pub allow_preview: bool,
}

/// `PUT /chat/Dialog/{id}`, typed: `None` = not given, `Some(None)` = cleared.
#[derive(Clone, Debug, Default)]
pub struct DialogUpdate {
    pub name: Option<String>,
    pub photo: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub push_occupants: Vec<i64>,
    pub pull_occupants: Vec<i64>,
    pub push_pinned: Vec<String>,
    pub pull_pinned: Vec<String>,
    pub push_admins: Vec<i64>,
    pub pull_admins: Vec<i64>,
    pub extensions: Option<Option<Value>>,
    pub data: Option<Option<Value>>,
    pub allow_preview: Option<bool>,
}

impl DialogUpdate {
    fn changes_info(&self) -> bool {
        self.name.is_some()
            || self.photo.is_some()
            || self.description.is_some()
            || self.extensions.is_some()
            || self.data.is_some()
            || self.allow_preview.is_some()
    }
}

/// Outcome of a multi-id delete, as the API reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteReport {
    pub deleted: Vec<String>,
    pub not_found: Vec<String>,
    pub wrong_permissions: Vec<String>,
}

impl DeleteReport {
    /// Files one id's outcome: refusals and unknown ids are reported, other errors abort.
    pub(crate) fn record(
        &mut self,
        id: &str,
        outcome: Result<(), ChatError>,
    ) -> Result<(), ChatError> {
        match outcome {
            Ok(()) => self.deleted.push(id.to_owned()),
            Err(ChatError::NotFound(_)) => self.not_found.push(id.to_owned()),
            Err(ChatError::Forbidden(_)) => self.wrong_permissions.push(id.to_owned()),
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

const MAX_TEXT: usize = 1000;

fn check_text(field: &str, v: &Option<String>) -> Result<(), ChatError> {
    if v.as_ref().is_some_and(|s| s.chars().count() > MAX_TEXT) {
        return Err(ChatError::invalid(
            field,
            format!("is too long (maximum is {MAX_TEXT} characters)"),
        ));
    }
    match v {
        Some(s) => params::check_text(field, s),
        None => Ok(()),
    }
}

/// Keeps only the application's allowed fields, values cast to strings; `null` resets.
fn clean_extensions(app: &Application, ext: Option<Value>) -> Result<Option<Value>, ChatError> {
    let Some(v) = ext else { return Ok(None) };
    let Value::Object(m) = v else {
        return match v {
            Value::Null => Ok(None),
            _ => Err(ChatError::invalid("extensions", "must be an object")),
        };
    };
    let mut out = Map::new();
    for (k, v) in m {
        if !app.dialog_extensions.contains(&k) {
            continue;
        }
        let s = match v {
            Value::String(s) => s,
            Value::Null => continue,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => other.to_string(),
        };
        params::check_text(&format!("extensions[{k}]"), &s)?;
        out.insert(k, Value::String(s));
    }
    Ok(if out.is_empty() {
        None
    } else {
        Some(Value::Object(out))
    })
}

/// Custom data needs a `class_name`; on update, fields merge into what is stored. Its fields
/// are names (XML names, as every user key that may reach a stanza), within `bounds` once
/// merged.
fn clean_data(data: Value, previous: Option<&Value>, bounds: Bounds) -> Result<Value, ChatError> {
    let Value::Object(mut m) = data else {
        return Err(ChatError::invalid("data", "must be an object"));
    };
    if let Some(Value::Object(prev)) = previous {
        for (k, v) in prev {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    match m.get("class_name") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => return Err(ChatError::invalid("data[class_name]", "is required")),
    }
    params::check(Some("data"), &m, Keys::TopNames, bounds, &[])?;
    Ok(Value::Object(m))
}

fn dedup(mut v: Vec<i64>) -> Vec<i64> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(*x));
    v
}

impl Chat {
    /// Refuses a request listing more ids in `field` than a dialog can hold, before any work
    /// is done on them (each id costs a look-up).
    fn check_id_list(&self, field: &str, len: usize) -> Result<(), ChatError> {
        let max = self.inner.config.max_occupants_per_dialog;
        if len > max {
            return Err(ChatError::invalid(
                field,
                format!("lists too many ids (at most {max} in one request)"),
            ));
        }
        Ok(())
    }

    /// **The dialog-size rule**: a dialog that lists its occupants (group, private) holds at
    /// most `chat.max_occupants_per_dialog` of them; a public dialog at most
    /// `chat.max_public_subscribers` subscribers. Broadcast dialogs reach every user of the
    /// application and list nobody.
    pub(super) fn check_dialog_size(
        &self,
        kind: DialogType,
        count: usize,
    ) -> Result<(), ChatError> {
        let cfg = &self.inner.config;
        if kind.lists_occupants() && count > cfg.max_occupants_per_dialog {
            return Err(ChatError::invalid(
                "occupants_ids",
                format!(
                    "too many occupants (a dialog holds at most {})",
                    cfg.max_occupants_per_dialog
                ),
            ));
        }
        if kind == DialogType::Public
            && i64::try_from(count).unwrap_or(i64::MAX) > cfg.max_public_subscribers
        {
            return Err(ChatError::invalid(
                "occupants_ids",
                format!(
                    "too many subscribers (a public dialog holds at most {})",
                    cfg.max_public_subscribers
                ),
            ));
        }
        Ok(())
    }

    /// The bounds of a dialog's custom `data`.
    fn data_bounds(&self) -> Bounds {
        let c = &self.inner.config;
        Bounds {
            what: "the dialog data",
            keys: c.max_dialog_data_keys,
            bytes: c.max_dialog_data_bytes,
            depth: c.max_custom_params_depth,
        }
    }

    /// Refuses ids that are not users of the application, naming them. Runs in the caller's
    /// transaction: taking a second pooled connection while holding one can starve the pool.
    async fn check_users_exist(
        &self,
        tx: &crate::db::Tx<'_>,
        app: &Application,
        field: &str,
        ids: &[i64],
    ) -> Result<(), ChatError> {
        if ids.is_empty() {
            return Ok(());
        }
        let missing = crate::db::users::missing_ids(tx, app.id, ids).await?;
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ChatError::invalid(
                field,
                format!("users {list} do not exist"),
            ));
        }
        Ok(())
    }

    /// `POST /chat/Dialog`. Returns the dialog and whether it was created now (a private dialog
    /// between the same two users is returned again instead of duplicated).
    pub async fn create_dialog(
        &self,
        actor: &Actor,
        new: NewDialog,
    ) -> Result<(DialogView, bool), ChatError> {
        let me = actor.user;
        let app = &actor.app;
        let kind = new
            .kind
            .ok_or_else(|| ChatError::invalid("type", "is required (1, 2, 3 or 4)"))?;
        let name = new
            .name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        if kind != DialogType::Private && name.is_none() {
            return Err(ChatError::invalid(
                "name",
                "is required for broadcast, group and public dialogs",
            ));
        }
        for (f, v) in [
            ("name", &name),
            ("photo", &new.photo),
            ("description", &new.description),
        ] {
            check_text(f, v)?;
        }
        self.check_id_list("occupants_ids", new.occupants.len())?;
        self.check_id_list("admins_ids", new.admins.len())?;
        let mut occupants = dedup(new.occupants);
        let admins = dedup(new.admins);
        match kind {
            DialogType::Private => {
                occupants.retain(|o| *o != me.0);
                if occupants.len() != 1 {
                    return Err(ChatError::invalid(
                        "occupants_ids",
                        "a private dialog needs exactly one other user",
                    ));
                }
                if !admins.is_empty() {
                    return Err(ChatError::invalid(
                        "admins_ids",
                        "private dialogs have no admins",
                    ));
                }
            }
            DialogType::Group if occupants.is_empty() => {
                return Err(ChatError::invalid(
                    "occupants_ids",
                    "is required for group dialogs",
                ));
            }
            DialogType::Broadcast | DialogType::Public => occupants.clear(),
            DialogType::Group => {}
        }
        if admins.len() > rules::MAX_ADMINS {
            return Err(ChatError::invalid(
                "admins_ids",
                format!("at most {} admins", rules::MAX_ADMINS),
            ));
        }
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        self.check_users_exist(&tx, app, "occupants_ids", &occupants)
            .await?;
        self.check_users_exist(&tx, app, "admins_ids", &admins)
            .await?;
        if kind.lists_occupants() {
            occupants.insert(0, me.0);
            occupants = dedup(occupants);
        }
        if kind == DialogType::Group {
            occupants = dedup(
                occupants
                    .into_iter()
                    .chain(admins.iter().copied())
                    .collect(),
            );
        }
        self.check_dialog_size(kind, occupants.len())?;
        let extensions = clean_extensions(app, new.extensions)?;
        let data = new
            .data
            .filter(|d| !d.is_null())
            .map(|d| clean_data(d, None, self.data_bounds()))
            .transpose()?;
        let now = self.clock().now();
        let dialog = Dialog {
            id: ObjectId::generate(now.unix_timestamp()),
            application_id: app.id,
            kind,
            owner: me,
            name: if kind == DialogType::Private {
                None
            } else {
                name
            },
            photo: if kind == DialogType::Private {
                None
            } else {
                new.photo
            },
            description: new.description,
            occupants: occupants.clone(),
            admins,
            pinned: Vec::new(),
            occupants_count: if kind == DialogType::Public { 1 } else { 0 },
            extensions,
            data,
            allow_preview: new.allow_preview && kind != DialogType::Private,
            last_message_id: None,
            last_message: None,
            last_message_user_id: None,
            last_message_date_sent: None,
            created_at: now,
            updated_at: now,
        };
        let private_key = (kind == DialogType::Private).then(|| {
            let (a, b) = (me.0.min(occupants[1]), me.0.max(occupants[1]));
            format!("{}:{a}:{b}", app.id)
        });
        let (stored, created) = match repo::insert(&tx, &dialog, private_key.as_deref()).await? {
            Some(d) => (d, true),
            None => {
                let key = private_key.as_deref().unwrap_or_default();
                (
                    repo::by_private_key(&tx, key, false)
                        .await?
                        .ok_or_else(|| ChatError::NotFound("Dialog not found".into()))?,
                    false,
                )
            }
        };
        let members = if kind.lists_occupants() {
            stored.occupants.clone()
        } else {
            vec![me.0]
        };
        if created {
            repo::add_members(&tx, &stored, &members).await?;
        } else {
            // Asking again for an existing private dialog shows it again to the asker.
            repo::add_members(&tx, &stored, &[me.0]).await?;
        }
        let view = repo::view(&tx, app.id, me, &stored.id)
            .await?
            .ok_or_else(|| ChatError::NotFound("Dialog not found".into()))?;
        if created {
            // Enqueued in the dialog's own transaction: the webhook call and the dialog commit
            // together.
            let data = vec![(app.id.0, to_event_json(&view.dialog))];
            let now = self.clock().now();
            push_repo::enqueue_webhooks(&tx, "dialog.created", &data, now).await?;
        }
        tx.commit().await?;
        if created {
            self.events().publish(ChatEvent::OccupantsChanged {
                app: app.id,
                dialog: stored.id,
                added: members,
                removed: vec![],
            });
        }
        Ok((view, created))
    }

    /// `GET /chat/Dialog`: the caller's dialogs (all broadcast dialogs, their group and private
    /// dialogs, subscribed public ones; every public one when filtering on `type=4`).
    pub async fn list_dialogs(
        &self,
        actor: &Actor,
        raw: Vec<RawFilter>,
        sort: Option<(String, SortDir)>,
        limit: Option<i64>,
        skip: Option<i64>,
        count_only: bool,
    ) -> Result<(Vec<DialogView>, i64, DialogQuery), ChatError> {
        let me = actor.user;
        let q = dialog_query(&actor.app, raw, sort, limit, skip)?;
        // A read needs no transaction: the page and its total come from one statement, so
        // they share a snapshot, and BEGIN/COMMIT would only add two round trips.
        let client = self.pool().get().await?;
        let public = asks_public_only(&q);
        let mut page = repo::list_page(&client, actor.app.id, me, &q, public, count_only).await?;
        if page.missing_broadcast {
            // Rare: a broadcast dialog was created since this user last listed. Add the
            // entries, then read again so the page and the total include them.
            repo::ensure_broadcast_members(&client, actor.app.id, me).await?;
            page = repo::list_page(&client, actor.app.id, me, &q, public, count_only).await?;
        }
        let (items, total) = (page.items, page.total);
        Ok((items, total, q))
    }

    /// Loads a dialog with the caller's role and inbox entry. Dialogs the caller may not even
    /// see are "not found", so their existence does not leak.
    pub(super) async fn load(
        &self,
        tx: &crate::db::Tx<'_>,
        actor: &Actor,
        id: &str,
        lock: bool,
    ) -> Result<(Dialog, Role, Option<Member>), ChatError> {
        let me = actor.user;
        let not_found = || ChatError::NotFound(format!("Dialog {id} not found"));
        let id: ObjectId = id.parse().map_err(|_| not_found())?;
        let dialog = repo::get(tx, actor.app.id, &id, lock)
            .await?
            .ok_or_else(not_found)?;
        if dialog.kind == DialogType::Broadcast {
            repo::ensure_broadcast_members(tx, actor.app.id, me).await?;
        }
        let member = repo::member(tx, &id, me).await?;
        let role = rules::role_of(&dialog, me, member.is_some());
        if rules::visible(role, &dialog) == Visibility::Hidden {
            return Err(not_found());
        }
        Ok((dialog, role, member))
    }

    /// `GET /chat/Dialog/{id}` style read of one dialog, as the caller sees it.
    pub async fn dialog(&self, actor: &Actor, id: &str) -> Result<DialogView, ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, _, _) = self.load(&tx, actor, id, false).await?;
        let view = repo::view(&tx, actor.app.id, actor.user, &d.id)
            .await?
            .ok_or_else(|| ChatError::NotFound("Dialog not found".into()))?;
        tx.commit().await?;
        Ok(view)
    }

    /// `PUT /chat/Dialog/{id}` (and `/admins`): every change checked against the caller's role
    /// first; nothing is written unless all of them are allowed.
    pub async fn update_dialog(
        &self,
        actor: &Actor,
        id: &str,
        u: DialogUpdate,
    ) -> Result<DialogView, ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (view, event) = self.update_in(&tx, actor, id, u).await?;
        tx.commit().await?;
        if let Some(e) = event {
            self.events().publish(e);
        }
        Ok(view)
    }

    /// [`Chat::update_dialog`] inside the caller's transaction (room affiliation changes add
    /// their own writes to it); the event is the caller's to publish after the commit.
    pub(super) async fn update_in(
        &self,
        tx: &crate::db::Tx<'_>,
        actor: &Actor,
        id: &str,
        u: DialogUpdate,
    ) -> Result<(DialogView, Option<ChatEvent>), ChatError> {
        let me = actor.user;
        let app = actor.app.clone();
        for (field, len) in [
            ("occupants_ids", u.push_occupants.len()),
            ("occupants_ids", u.pull_occupants.len()),
            ("admins_ids", u.push_admins.len()),
            ("admins_ids", u.pull_admins.len()),
            ("pinned_messages_ids", u.push_pinned.len()),
            ("pinned_messages_ids", u.pull_pinned.len()),
        ] {
            self.check_id_list(field, len)?;
        }
        let (mut d, role, _) = self.load(tx, actor, id, true).await?;
        let leaving_only = u.pull_occupants == [me.0];
        if u.changes_info() {
            rules::check(role, d.kind, Action::ChangeInfo)?;
        }
        if !u.push_occupants.is_empty() {
            rules::check(role, d.kind, Action::AddOccupants)?;
        }
        if !u.pull_occupants.is_empty() {
            let action = if leaving_only {
                Action::DeleteDialogForSelf
            } else {
                Action::RemoveOccupants
            };
            rules::check(role, d.kind, action)?;
            if d.kind != DialogType::Group {
                return Err(ChatError::Forbidden(format!(
                    "Forbidden: occupants of a {} dialog cannot be removed",
                    rules::type_name(d.kind)
                )));
            }
        }
        if !u.push_pinned.is_empty() || !u.pull_pinned.is_empty() {
            rules::check(role, d.kind, Action::PinMessages)?;
        }
        if !u.push_admins.is_empty() || !u.pull_admins.is_empty() {
            rules::check(role, d.kind, Action::ManageAdmins)?;
        }

        let push_occupants = dedup(
            u.push_occupants
                .into_iter()
                .filter(|o| !d.occupants.contains(o))
                .collect(),
        );
        self.check_users_exist(tx, &app, "occupants_ids", &push_occupants)
            .await?;
        // Roles in a room follow admins: the real-time layer re-reads the room when they change.
        let admins_changed = !u.push_admins.is_empty() || !u.pull_admins.is_empty();
        let push_admins = dedup(
            u.push_admins
                .into_iter()
                .filter(|a| !d.admins.contains(a))
                .collect(),
        );
        self.check_users_exist(tx, &app, "admins_ids", &push_admins)
            .await?;
        if u.pull_occupants.contains(&d.owner.0) && !leaving_only {
            return Err(ChatError::invalid(
                "occupants_ids",
                "the owner cannot be removed from the dialog",
            ));
        }
        let pinned_ids = |v: &[String]| -> Result<Vec<String>, ChatError> {
            v.iter()
                .map(|s| {
                    s.parse::<ObjectId>().map(|o| o.to_string()).map_err(|_| {
                        ChatError::invalid(
                            "pinned_messages_ids",
                            format!("`{s}` is not a message id"),
                        )
                    })
                })
                .collect()
        };
        let push_pinned = pinned_ids(&u.push_pinned)?;
        let pull_pinned = pinned_ids(&u.pull_pinned)?;
        if !push_pinned.is_empty() {
            let found = crate::db::messages::existing_in_dialog(tx, &d.id, &push_pinned).await?;
            if let Some(missing) = push_pinned.iter().find(|p| !found.contains(p)) {
                return Err(ChatError::invalid(
                    "pinned_messages_ids",
                    format!("message {missing} is not in this dialog"),
                ));
            }
        }

        if let Some(name) = u.name {
            let name = name.trim().to_string();
            if name.is_empty() && d.kind != DialogType::Private {
                return Err(ChatError::invalid("name", "cannot be blank"));
            }
            check_text("name", &Some(name.clone()))?;
            d.name = Some(name);
        }
        if let Some(photo) = u.photo {
            check_text("photo", &photo)?;
            d.photo = photo;
        }
        if let Some(description) = u.description {
            check_text("description", &description)?;
            d.description = description;
        }
        if let Some(ext) = u.extensions {
            d.extensions = clean_extensions(&app, ext)?;
        }
        if let Some(data) = u.data {
            d.data = match data {
                None | Some(Value::Null) => None,
                Some(v) => Some(clean_data(v, d.data.as_ref(), self.data_bounds())?),
            };
        }
        if let Some(p) = u.allow_preview {
            d.allow_preview = p && d.kind != DialogType::Private;
        }
        let removed: Vec<i64> = u
            .pull_occupants
            .iter()
            .copied()
            .filter(|o| d.occupants.contains(o))
            .collect();
        d.occupants.retain(|o| !removed.contains(o));
        d.occupants.extend(push_occupants.iter().copied());
        d.admins
            .retain(|a| !u.pull_admins.contains(a) && !removed.contains(a));
        d.admins.extend(push_admins.iter().copied());
        if d.admins.len() > rules::MAX_ADMINS {
            return Err(ChatError::invalid(
                "admins_ids",
                format!("at most {} admins", rules::MAX_ADMINS),
            ));
        }
        let mut added = push_occupants;
        if d.kind == DialogType::Group {
            for a in &push_admins {
                if !d.occupants.contains(a) {
                    d.occupants.push(*a);
                    added.push(*a);
                }
            }
        }
        if !added.is_empty() && d.kind.lists_occupants() {
            self.check_dialog_size(d.kind, d.occupants.len())?;
        }
        d.pinned.retain(|p| !pull_pinned.contains(p));
        for p in push_pinned {
            if !d.pinned.contains(&p) {
                d.pinned.push(p);
            }
        }
        self.check_id_list("pinned_messages_ids", d.pinned.len())?;
        d.updated_at = self.clock().now();
        repo::save(tx, &d).await?;
        repo::add_members(tx, &d, &added).await?;
        repo::remove_members(tx, &d.id, &removed).await?;
        let view = repo::view(tx, app.id, me, &d.id)
            .await?
            .ok_or_else(|| ChatError::NotFound("Dialog not found".into()))?;
        let data = vec![(app.id.0, to_event_json(&view.dialog))];
        push_repo::enqueue_webhooks(tx, "dialog.updated", &data, d.updated_at).await?;
        let changed = !added.is_empty() || !removed.is_empty() || admins_changed;
        let event = changed.then_some(ChatEvent::OccupantsChanged {
            app: app.id,
            dialog: d.id,
            added,
            removed,
        });
        Ok((view, event))
    }

    /// `DELETE /chat/Dialog/{ids}`: without `force`, for the caller only (a group is left, a
    /// public dialog unsubscribed, a private or broadcast one hidden until a new message);
    /// with `force`, for everyone, by the owner only.
    pub async fn delete_dialogs(
        &self,
        actor: &Actor,
        ids: &[String],
        force: bool,
    ) -> Result<DeleteReport, ChatError> {
        let me = actor.user;
        let mut report = DeleteReport::default();
        for id in ids {
            report.record(id, self.delete_one(actor, me, id, force).await)?;
        }
        Ok(report)
    }

    async fn delete_one(
        &self,
        actor: &Actor,
        me: UserId,
        id: &str,
        force: bool,
    ) -> Result<(), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (mut d, role, member) = self.load(&tx, actor, id, true).await?;
        if role == Role::Outsider {
            return Err(ChatError::NotFound(format!("Dialog {id} not found")));
        }
        let event = if force {
            rules::check(role, d.kind, Action::DeleteDialogForEveryone)?;
            let mut occupants = if d.kind.lists_occupants() {
                d.occupants.clone()
            } else {
                Vec::new()
            };
            occupants.extend(repo::member_ids(&tx, &d.id, i64::MAX, 0).await?);
            repo::delete(&tx, &d.id).await?;
            let data = vec![(
                actor.app.id.0,
                serde_json::json!({"_id": d.id, "type": d.kind.code(), "deleted_by": me.0}),
            )];
            let now = self.clock().now();
            push_repo::enqueue_webhooks(&tx, "dialog.deleted", &data, now).await?;
            Some(ChatEvent::DialogDeleted {
                app: actor.app.id,
                dialog: d.id.clone(),
                occupants: dedup(occupants),
            })
        } else {
            rules::check(role, d.kind, Action::DeleteDialogForSelf)?;
            match d.kind {
                DialogType::Group => {
                    d.occupants.retain(|o| *o != me.0);
                    d.admins.retain(|a| *a != me.0);
                    d.updated_at = self.clock().now();
                    repo::save(&tx, &d).await?;
                    repo::remove_members(&tx, &d.id, &[me.0]).await?;
                    Some(ChatEvent::OccupantsChanged {
                        app: actor.app.id,
                        dialog: d.id.clone(),
                        added: vec![],
                        removed: vec![me.0],
                    })
                }
                DialogType::Public => {
                    if member.is_some() {
                        d.occupants_count = (d.occupants_count - 1).max(0);
                        repo::save(&tx, &d).await?;
                        repo::remove_members(&tx, &d.id, &[me.0]).await?;
                    }
                    Some(ChatEvent::OccupantsChanged {
                        app: actor.app.id,
                        dialog: d.id.clone(),
                        added: vec![],
                        removed: vec![me.0],
                    })
                }
                DialogType::Private | DialogType::Broadcast => {
                    repo::hide_for(&tx, &d.id, me).await?;
                    None
                }
            }
        };
        tx.commit().await?;
        if let Some(e) = event {
            self.events().publish(e);
        }
        Ok(())
    }

    /// `DELETE /chat/Dialog/clearHistory/{id}`: hides every message so far, for the caller only.
    pub async fn clear_history(&self, actor: &Actor, id: &str) -> Result<(), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, role, member) = self.load(&tx, actor, id, false).await?;
        rules::check(role, d.kind, Action::Read)?;
        if member.is_none() {
            return Err(ChatError::NotFound(format!("Dialog {id} not found")));
        }
        repo::clear_history(&tx, &d.id, actor.user).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `POST /chat/Dialog/{id}/subscribe` (public dialogs only).
    pub async fn subscribe(&self, actor: &Actor, id: &str) -> Result<DialogView, ChatError> {
        let me = actor.user;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (mut d, _, member) = self.load(&tx, actor, id, true).await?;
        if d.kind != DialogType::Public {
            return Err(ChatError::Forbidden(
                "Forbidden: only public dialogs can be subscribed to".into(),
            ));
        }
        let added = member.is_none();
        if added {
            let after = usize::try_from(d.occupants_count)
                .unwrap_or(0)
                .saturating_add(1);
            self.check_dialog_size(d.kind, after)?;
            d.occupants_count += 1;
            repo::save(&tx, &d).await?;
            repo::add_members(&tx, &d, &[me.0]).await?;
        }
        let view = repo::view(&tx, actor.app.id, me, &d.id)
            .await?
            .ok_or_else(|| ChatError::NotFound("Dialog not found".into()))?;
        tx.commit().await?;
        if added {
            self.events().publish(ChatEvent::OccupantsChanged {
                app: actor.app.id,
                dialog: d.id,
                added: vec![me.0],
                removed: vec![],
            });
        }
        Ok(view)
    }

    /// `DELETE /chat/Dialog/{id}/subscribe`.
    pub async fn unsubscribe(&self, actor: &Actor, id: &str) -> Result<(), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, _, member) = self.load(&tx, actor, id, false).await?;
        if d.kind != DialogType::Public {
            return Err(ChatError::Forbidden(
                "Forbidden: only public dialogs can be unsubscribed from".into(),
            ));
        }
        drop(tx);
        if member.is_none() {
            return Ok(());
        }
        self.delete_one(actor, actor.user, id, false).await
    }

    /// `GET|PUT /chat/Dialog/{id}/notifications`: `Some(on)` sets, `None` reads.
    pub async fn notifications(
        &self,
        actor: &Actor,
        id: &str,
        set: Option<bool>,
    ) -> Result<bool, ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, _, member) = self.load(&tx, actor, id, false).await?;
        let Some(member) = member else {
            return Err(ChatError::NotFound(format!("Dialog {id} not found")));
        };
        let on = match set {
            Some(on) => {
                repo::set_notifications(&tx, &d.id, actor.user, on).await?;
                on
            }
            None => member.notifications,
        };
        tx.commit().await?;
        Ok(on)
    }

    /// `GET /chat/Dialog/{id}/occupants`: the members as user objects, paged.
    pub async fn occupants(
        &self,
        actor: &Actor,
        id: &str,
        limit: Option<i64>,
        skip: Option<i64>,
    ) -> Result<Vec<User>, ChatError> {
        let limit = limit.unwrap_or(100);
        if !(1..=100).contains(&limit) {
            return Err(ChatError::invalid("limit", "must be between 1 and 100"));
        }
        let skip = skip.unwrap_or(0).max(0);
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        // Loaded means visible: a public dialog's subscribers are listed to anyone.
        let (d, _, _) = self.load(&tx, actor, id, false).await?;
        let ids: Vec<i64> = if d.kind.lists_occupants() {
            let mut o = d.occupants.clone();
            o.sort_unstable();
            o.into_iter()
                .skip(skip as usize)
                .take(limit as usize)
                .collect()
        } else {
            repo::member_ids(&tx, &d.id, limit, skip).await?
        };
        let users = crate::db::users::by_ids(&tx, actor.app.id, &ids).await?;
        tx.commit().await?;
        Ok(users)
    }
}

/// The dialog as the application's webhook receives it (`dialog.created`, `dialog.updated`):
/// the fields every member shares, none of one member's (unread count, status).
pub fn to_event_json(d: &Dialog) -> Value {
    serde_json::json!({
        "_id": d.id,
        "type": d.kind.code(),
        "user_id": d.owner.0,
        "name": d.name,
        "photo": d.photo,
        "description": d.description,
        "occupants_ids": d.occupants,
        "admins_ids": d.admins,
        "pinned_messages_ids": d.pinned,
        "extensions": d.extensions,
        "data": d.data,
        "created_at": d.created_at.unix_timestamp(),
        "updated_at": d.updated_at.unix_timestamp(),
    })
}
