//! XEP-0045 rooms over dialogs: every room is a dialog and every room rule is a dialog rule.
//! A standard room (`name@muc.{domain}`) is a group dialog created by joining an unknown name
//! (an instant room, owned by its creator); entering, the subject, the owner's configuration,
//! affiliations (owner = the dialog's owner, admin = its admins, member = its occupants,
//! outcast = banned) and kicks. Who may do what is asked of `rules.rs` only; the XMPP adapter
//! parses and renders, and the live room state stays in the hub.

use super::dialogs::DialogUpdate;
use super::rules::{self, Action, Role, Visibility};
use super::{Actor, Chat, ChatError, ChatEvent};
use crate::db::dialogs as dialog_repo;
use crate::db::rooms as repo;
use crate::model::room::RoomSettings;
use crate::model::{Dialog, DialogType, ObjectId, UserId};

/// The most characters of a subject (as of a dialog's name and description).
pub const MAX_SUBJECT: usize = 1000;

/// A room as the one entering it finds it.
#[derive(Clone, Debug)]
pub struct RoomEntry {
    pub dialog: Dialog,
    /// Everyone who receives the room's messages, the one entering included.
    pub members: Vec<i64>,
    pub settings: RoomSettings,
    /// The room was created by this entry (XEP-0045 status 201).
    pub created: bool,
}

/// The owner's configuration form, typed: `None` = not submitted, left as it is.
#[derive(Clone, Debug, Default)]
pub struct RoomConfig {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub members_only: Option<bool>,
    pub persistent: Option<bool>,
    pub change_subject: Option<bool>,
}

/// XEP-0045 affiliations, mapped onto the dialog's roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affiliation {
    /// The dialog's owner (one per dialog).
    Owner,
    /// One of the dialog's admins.
    Admin,
    /// An occupant of the dialog.
    Member,
    /// Not in the dialog.
    None,
    /// Not in the dialog and banned from entering the room.
    Outcast,
}

impl Affiliation {
    /// The affiliation a role shows as.
    pub fn of(role: Role, outcast: bool) -> Self {
        match role {
            Role::SuperAdmin => Self::Owner,
            Role::Admin => Self::Admin,
            Role::Regular => Self::Member,
            Role::Outsider if outcast => Self::Outcast,
            Role::Outsider => Self::None,
        }
    }
}

fn not_found(id: &str) -> ChatError {
    ChatError::NotFound(format!("Dialog {id} not found"))
}

fn check_len(field: &str, s: &str, max: usize) -> Result<(), ChatError> {
    if s.chars().count() > max {
        return Err(ChatError::invalid(
            field,
            format!("is too long (maximum is {max} characters)"),
        ));
    }
    super::params::check_text(field, s)
}

impl Chat {
    /// The dialog behind the standard room `name` of the actor's application, if there is one.
    pub async fn room_named(&self, actor: &Actor, name: &str) -> Result<Option<String>, ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let id = repo::dialog_named(&tx, actor.app.id, &name.to_lowercase()).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Loads a room (a dialog that is a room), the actor's role in it and its settings;
    /// dialogs the actor may not see at all, and private dialogs, are "not found".
    async fn load_room(
        &self,
        tx: &crate::db::Tx<'_>,
        actor: &Actor,
        id: &str,
        lock: bool,
    ) -> Result<(Dialog, Role, RoomSettings), ChatError> {
        let (d, role, _) = self.load(tx, actor, id, lock).await?;
        if !d.kind.is_room() {
            return Err(not_found(id));
        }
        let settings = repo::settings(tx, &d.id, lock).await?;
        Ok((d, role, settings))
    }

    /// **Entering a room** (an XEP-0045 join): allowed by [`rules::check_enter`]. An outsider
    /// entering an open standard room becomes an occupant of its dialog, so they may post.
    pub async fn enter_room(&self, actor: &Actor, id: &str) -> Result<RoomEntry, ChatError> {
        let me = actor.user;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (mut d, role, settings) = self.load_room(&tx, actor, id, false).await?;
        let outcast = settings.outcasts.contains(&me.0);
        rules::check_enter(rules::visible(role, &d), outcast).map_err(|e| {
            // Members-only rooms stay invisible to outsiders, as their dialogs do.
            if outcast {
                ChatError::from(e)
            } else {
                not_found(id)
            }
        })?;
        let mut event = None;
        if role == Role::Outsider && settings.name.is_some() && d.kind == DialogType::Group {
            let (locked, _, _) = self.load_room(&tx, actor, id, true).await?;
            d = locked;
            if !d.occupants.contains(&me.0) {
                d.occupants.push(me.0);
                self.check_dialog_size(d.kind, d.occupants.len())?;
                d.updated_at = self.clock().now();
                dialog_repo::save(&tx, &d).await?;
                dialog_repo::add_members(&tx, &d, &[me.0]).await?;
                event = Some(ChatEvent::OccupantsChanged {
                    app: actor.app.id,
                    dialog: d.id.clone(),
                    added: vec![me.0],
                    removed: vec![],
                });
            }
        }
        let mut members = self.recipients(&tx, &d, me).await?;
        members.push(me.0);
        tx.commit().await?;
        if let Some(e) = event {
            self.events().publish(e);
        }
        Ok(RoomEntry {
            dialog: d,
            members,
            settings,
            created: false,
        })
    }

    /// **Creating a standard room by joining it**: an instant room, a group dialog named
    /// `name` that the actor owns and is the only occupant of, open (not members-only),
    /// `persistent` or temporary (until configured otherwise). Each creation takes a token from the actor's
    /// message rate, so joins cannot mint dialogs faster than messages. `None` when another
    /// creation of the same name won the race (enter that room instead).
    pub async fn create_room(
        &self,
        actor: &Actor,
        name: &str,
        persistent: bool,
    ) -> Result<Option<RoomEntry>, ChatError> {
        let me = actor.user;
        let name = name.to_lowercase();
        check_len("name", &name, MAX_SUBJECT)?;
        self.admit_message(actor.app.id, me)?;
        let now = self.clock().now();
        let dialog = Dialog {
            id: ObjectId::generate(now.unix_timestamp()),
            application_id: actor.app.id,
            kind: DialogType::Group,
            owner: me,
            name: Some(name.clone()),
            photo: None,
            description: None,
            occupants: vec![me.0],
            admins: Vec::new(),
            pinned: Vec::new(),
            occupants_count: 0,
            extensions: None,
            data: None,
            // Open: anyone of the application may enter (and so becomes a member).
            allow_preview: true,
            last_message_id: None,
            last_message: None,
            last_message_user_id: None,
            last_message_date_sent: None,
            created_at: now,
            updated_at: now,
        };
        let settings = RoomSettings {
            name: Some(name),
            persistent,
            ..RoomSettings::default()
        };
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let stored = dialog_repo::insert(&tx, &dialog, None)
            .await?
            .ok_or_else(|| ChatError::Unavailable("the room was not created".into()))?;
        if !repo::insert_named(&tx, actor.app.id, &stored.id, &settings).await? {
            // Dropping the transaction rolls the dialog back.
            return Ok(None);
        }
        dialog_repo::add_members(&tx, &stored, &[me.0]).await?;
        tx.commit().await?;
        self.events().publish(ChatEvent::OccupantsChanged {
            app: actor.app.id,
            dialog: stored.id.clone(),
            added: vec![me.0],
            removed: vec![],
        });
        Ok(Some(RoomEntry {
            dialog: stored,
            members: vec![me.0],
            settings,
            created: true,
        }))
    }

    /// A room as a reader sees it (disco, the affiliation lists, the subject on join): the
    /// dialog, the actor's role and the room's settings.
    pub async fn room_info(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<(Dialog, Role, RoomSettings), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, role, settings) = self.load_room(&tx, actor, id, false).await?;
        if rules::visible(role, &d) < Visibility::History {
            return Err(not_found(id));
        }
        tx.commit().await?;
        Ok((d, role, settings))
    }

    /// The owner's configuration form as it stands: only for whoever may configure the room.
    pub async fn room_config(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<(Dialog, RoomSettings), ChatError> {
        let (d, role, settings) = self.room_info(actor, id).await?;
        rules::check(role, d.kind, Action::ConfigureRoom)?;
        Ok((d, settings))
    }

    /// **Configuring a room** (the owner's form): name and description are the dialog's,
    /// members-only is the dialog's `allow_preview` turned round; persistence and who may
    /// change the subject are the room's own settings. Allowed by [`Action::ConfigureRoom`].
    pub async fn configure_room(
        &self,
        actor: &Actor,
        id: &str,
        c: RoomConfig,
    ) -> Result<(Dialog, RoomSettings), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (mut d, role, mut settings) = self.load_room(&tx, actor, id, true).await?;
        rules::check(role, d.kind, Action::ConfigureRoom)?;
        if let Some(name) = c.name {
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err(ChatError::invalid("name", "cannot be blank"));
            }
            check_len("name", &name, MAX_SUBJECT)?;
            d.name = Some(name);
        }
        if let Some(desc) = c.description {
            if let Some(text) = &desc {
                check_len("description", text, MAX_SUBJECT)?;
            }
            d.description = desc.filter(|t| !t.is_empty());
        }
        if let Some(members_only) = c.members_only {
            d.allow_preview = !members_only;
        }
        if let Some(p) = c.persistent {
            settings.persistent = p;
        }
        if let Some(cs) = c.change_subject {
            settings.change_subject = cs;
        }
        d.updated_at = self.clock().now();
        dialog_repo::save(&tx, &d).await?;
        repo::save(&tx, actor.app.id, &d.id, &settings).await?;
        tx.commit().await?;
        // Who may enter changed: the live room drops what it cached of the dialog.
        self.events().publish(ChatEvent::OccupantsChanged {
            app: actor.app.id,
            dialog: d.id.clone(),
            added: vec![],
            removed: vec![],
        });
        Ok((d, settings))
    }

    /// **Changing a room's subject**, as [`rules::check_subject`] allows; `nick` is shown as
    /// who set it.
    pub async fn set_subject(
        &self,
        actor: &Actor,
        id: &str,
        subject: &str,
        nick: &str,
    ) -> Result<RoomSettings, ChatError> {
        check_len("subject", subject, MAX_SUBJECT)?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, role, mut settings) = self.load_room(&tx, actor, id, true).await?;
        if rules::visible(role, &d) < Visibility::History {
            return Err(not_found(id));
        }
        rules::check_subject(role, d.kind, settings.change_subject)?;
        settings.subject = subject.to_owned();
        settings.subject_by = Some(nick.to_owned());
        repo::save(&tx, actor.app.id, &d.id, &settings).await?;
        tx.commit().await?;
        Ok(settings)
    }

    /// **Changing a user's affiliation**, as a dialog update the roles table checks: admin is
    /// pushed to the dialog's admins (the owner's right), member to its occupants (pulled from
    /// the admins if one), none pulled from both, outcast as none and banned from entering
    /// (whom one may ban: [`Chat::check_ban`]). A dialog has one owner: naming anyone else owner is refused.
    pub async fn set_affiliation(
        &self,
        actor: &Actor,
        id: &str,
        user: UserId,
        a: Affiliation,
    ) -> Result<(), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, role, mut settings) = self.load_room(&tx, actor, id, true).await?;
        let u = user.0;
        let mut update = DialogUpdate::default();
        let is_admin = d.admins.contains(&u);
        let is_occupant = d.occupants.contains(&u);
        match a {
            Affiliation::Owner if d.is_owner(user) => {}
            Affiliation::Owner => {
                return Err(ChatError::Forbidden(
                    "Forbidden: a dialog has one owner; make them admin instead".into(),
                ))
            }
            Affiliation::Admin => update.push_admins = vec![u],
            Affiliation::Member if is_admin => update.pull_admins = vec![u],
            Affiliation::Member if !is_occupant => update.push_occupants = vec![u],
            Affiliation::Member => {}
            Affiliation::None | Affiliation::Outcast => {
                if is_admin {
                    update.pull_admins = vec![u];
                }
                if is_occupant {
                    update.pull_occupants = vec![u];
                }
            }
        }
        let banned = settings.outcasts.contains(&u);
        let ban = a == Affiliation::Outcast;
        if ban {
            // The same check the XMPP adapter asks before it shows a live occupant banned.
            self.ban_allowed(&tx, &d, role, &settings, user).await?;
        }
        if ban != banned {
            // Lifting a ban is removing occupants' business too.
            rules::check(role, d.kind, Action::RemoveOccupants)?;
            settings.outcasts.retain(|o| *o != u);
            if ban {
                settings.outcasts.push(u);
            }
            repo::save(&tx, actor.app.id, &d.id, &settings).await?;
        }
        let event = if update.push_admins.is_empty()
            && update.pull_admins.is_empty()
            && update.push_occupants.is_empty()
            && update.pull_occupants.is_empty()
        {
            None
        } else {
            self.update_in(&tx, actor, id, update).await?.1
        };
        tx.commit().await?;
        if let Some(e) = event {
            self.events().publish(e);
        }
        Ok(())
    }

    /// **May the actor kick `target` out of the room** ([`rules::check_kick`])? A kick changes
    /// nothing stored: the live room takes them out.
    pub async fn check_kick(
        &self,
        actor: &Actor,
        id: &str,
        target: UserId,
    ) -> Result<(), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, role, _) = self.load_room(&tx, actor, id, false).await?;
        let target_role = self.role_in(&tx, &d, target).await?;
        tx.commit().await?;
        rules::check_kick(role, target_role, d.kind)?;
        Ok(())
    }

    /// **May the actor ban `target` from the room** (affiliation outcast): everything
    /// [`Chat::set_affiliation`] checks of a ban, asked before the live room shows anyone
    /// banned, so a refused ban leaves the occupant where they are. `set_affiliation` checks
    /// it again, under the room's lock, when it stores the ban.
    pub async fn check_ban(
        &self,
        actor: &Actor,
        id: &str,
        target: UserId,
    ) -> Result<(), ChatError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (d, role, settings) = self.load_room(&tx, actor, id, false).await?;
        self.ban_allowed(&tx, &d, role, &settings, target).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`rules::check_ban`] on a loaded room, and room for one more banned user.
    async fn ban_allowed(
        &self,
        tx: &crate::db::Tx<'_>,
        d: &Dialog,
        role: Role,
        settings: &RoomSettings,
        target: UserId,
    ) -> Result<(), ChatError> {
        let target_role = self.role_in(tx, d, target).await?;
        rules::check_ban(role, target_role, d.kind)?;
        let max = self.inner.config.max_occupants_per_dialog;
        if !settings.outcasts.contains(&target.0) && settings.outcasts.len() >= max {
            return Err(ChatError::invalid(
                "outcasts",
                format!("too many banned users (at most {max})"),
            ));
        }
        Ok(())
    }

    /// `user`'s role in the room's dialog (a public dialog's members are its subscribers).
    async fn role_in(
        &self,
        tx: &crate::db::Tx<'_>,
        d: &Dialog,
        user: UserId,
    ) -> Result<Role, ChatError> {
        let subscribed =
            d.kind == DialogType::Public && dialog_repo::member(tx, &d.id, user).await?.is_some();
        Ok(rules::role_of(d, user, subscribed))
    }

    /// A temporary room whose last occupant left: its dialog is deleted (an event tells the
    /// live rooms). Does nothing to a persistent room. No actor: the room's own configuration
    /// decided it.
    pub async fn drop_if_temporary(
        &self,
        app: crate::model::AppId,
        id: &str,
    ) -> Result<bool, ChatError> {
        let Ok(oid) = id.parse::<ObjectId>() else {
            return Ok(false);
        };
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let settings = repo::settings(&tx, &oid, true).await?;
        if settings.persistent {
            return Ok(false);
        }
        let Some(d) = dialog_repo::get(&tx, app, &oid, true).await? else {
            return Ok(false);
        };
        let mut occupants = d.occupants.clone();
        occupants.extend(dialog_repo::member_ids(&tx, &d.id, i64::MAX, 0).await?);
        occupants.sort_unstable();
        occupants.dedup();
        dialog_repo::delete(&tx, &d.id).await?;
        tx.commit().await?;
        self.events().publish(ChatEvent::DialogDeleted {
            app,
            dialog: d.id,
            occupants,
        });
        Ok(true)
    }
}
