//! Roles and privileges: the seed's table made literal. Every "may user U do X in dialog D"
//! and "may user U see dialog D" is answered here, once; REST and XMPP only call [`check`] and
//! [`visible`] (through the chat service). Holds no I/O and imports nothing from the adapters.

use std::fmt;

use crate::model::{Dialog, DialogType, UserId};

/// A user's role in one dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Not a member: not an occupant (group, private) and not subscribed (public).
    Outsider,
    Regular,
    Admin,
    /// The dialog's owner (creator).
    SuperAdmin,
}

/// Everything a user can try to do in a dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// See the dialog and read its messages.
    Read,
    SendMessage,
    /// Edit the body of one's own message.
    EditOwnMessage,
    /// Hide any message from one's own history.
    DeleteMessageForSelf,
    DeleteOwnMessageForEveryone,
    DeleteAnyMessageForEveryone,
    DeleteDialogForSelf,
    AddOccupants,
    RemoveOccupants,
    /// Change name, photo, description, extensions, custom data, permissions.
    ChangeInfo,
    PinMessages,
    ManageAdmins,
    DeleteDialogForEveryone,
    /// XEP-0045 room configuration (the owner's form): members-only, persistence, who may
    /// change the subject, alongside the name and description.
    ConfigureRoom,
    /// Change a room's subject when the room lets only moderators do so
    /// ([`check_subject`]).
    ChangeSubject,
    /// Take someone out of a room without changing their membership (XEP-0045 kick); see
    /// [`check_kick`] for whom.
    Kick,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::SendMessage => "send messages",
            Self::EditOwnMessage => "edit messages",
            Self::DeleteMessageForSelf => "delete messages",
            Self::DeleteOwnMessageForEveryone => "delete messages for everyone",
            Self::DeleteAnyMessageForEveryone => "delete other users' messages for everyone",
            Self::DeleteDialogForSelf => "delete the dialog",
            Self::AddOccupants => "add occupants",
            Self::RemoveOccupants => "remove occupants",
            Self::ChangeInfo => "change the name, photo or description",
            Self::PinMessages => "pin messages",
            Self::ManageAdmins => "add or remove admins",
            Self::DeleteDialogForEveryone => "delete the dialog for everyone",
            Self::ConfigureRoom => "configure the room",
            Self::ChangeSubject => "change the subject",
            Self::Kick => "kick occupants",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Outsider => "a user outside the dialog",
            Role::Regular => "a regular user",
            Role::Admin => "an admin",
            Role::SuperAdmin => "the owner",
        })
    }
}

pub fn type_name(t: DialogType) -> &'static str {
    match t {
        DialogType::Broadcast => "broadcast",
        DialogType::Group => "group",
        DialogType::Private => "private",
        DialogType::Public => "public",
    }
}

/// Why an action was refused; the text names the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied(pub String);

/// The role of `user` in `dialog`; `subscribed` says whether they subscribed to a public one.
pub fn role_of(dialog: &Dialog, user: UserId, subscribed: bool) -> Role {
    let member = match dialog.kind {
        DialogType::Broadcast => true,
        DialogType::Group | DialogType::Private => dialog.has_occupant(user),
        DialogType::Public => subscribed,
    };
    if dialog.kind == DialogType::Private {
        // Private dialogs have two regular users and no admins.
        return if member {
            Role::Regular
        } else {
            Role::Outsider
        };
    }
    if dialog.is_owner(user) {
        Role::SuperAdmin
    } else if dialog.is_admin(user) {
        Role::Admin
    } else if member {
        Role::Regular
    } else {
        Role::Outsider
    }
}

/// How much of a dialog a user sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Visibility {
    /// Nothing, not even that it exists: every request naming it is "not found".
    Hidden,
    /// The dialog itself (its record, its occupants, whether one may post), not its messages:
    /// a public dialog to a user who has not subscribed.
    Dialog,
    /// The dialog and its history (REST `GET /chat/Message`, joining its XMPP room).
    History,
}

/// A message sent with `silent=1` (custom parameter, REST or XMPP extraParams) produces no chat
/// alert (ConnectyCube §4.5).
pub fn is_silent(custom: &serde_json::Map<String, serde_json::Value>) -> bool {
    match custom.get("silent") {
        Some(serde_json::Value::String(s)) => matches!(s.trim(), "1" | "true"),
        Some(serde_json::Value::Number(n)) => n.as_i64() == Some(1),
        Some(serde_json::Value::Bool(b)) => *b,
        _ => false,
    }
}

/// **Who may see this dialog**, written once. Members see everything. A user outside the
/// dialog sees its history only when `allow_preview` is on; without it, a public dialog is
/// still findable (it can be subscribed to) but its messages are the subscribers' (the spec:
/// "for public chat user's IDs should belong to occupants_count"), and any other dialog is
/// hidden. REST reads, REST and XMPP sends, and room joins all ask this.
pub fn visible(role: Role, dialog: &Dialog) -> Visibility {
    if role != Role::Outsider || dialog.allow_preview {
        Visibility::History
    } else if dialog.kind == DialogType::Public {
        Visibility::Dialog
    } else {
        Visibility::Hidden
    }
}

/// The least role that may do `action` in a dialog of type `kind`; `None`: nobody may.
pub fn least_role(kind: DialogType, action: Action) -> Option<Role> {
    use Action as A;
    use DialogType as T;
    use Role::*;
    match (action, kind) {
        (A::Read | A::DeleteDialogForSelf, _) => Some(Regular),
        // Broadcast: regular users only receive; admins post and moderate.
        (
            A::SendMessage
            | A::EditOwnMessage
            | A::DeleteMessageForSelf
            | A::DeleteOwnMessageForEveryone,
            T::Broadcast,
        ) => Some(Admin),
        (
            A::SendMessage
            | A::EditOwnMessage
            | A::DeleteMessageForSelf
            | A::DeleteOwnMessageForEveryone,
            _,
        ) => Some(Regular),
        (A::DeleteAnyMessageForEveryone | A::PinMessages, T::Private) => None,
        (A::DeleteAnyMessageForEveryone | A::PinMessages, _) => Some(Admin),
        (A::AddOccupants, T::Group) => Some(Regular),
        (A::RemoveOccupants, T::Group) => Some(Admin),
        (A::AddOccupants | A::RemoveOccupants, _) => None,
        (A::ChangeInfo, T::Group) => Some(Regular),
        (A::ChangeInfo, T::Private) => None,
        (A::ChangeInfo, _) => Some(Admin),
        (A::ManageAdmins | A::DeleteDialogForEveryone, T::Private) => None,
        (A::ManageAdmins | A::DeleteDialogForEveryone, _) => Some(SuperAdmin),
        // Rooms: private dialogs are 1:1 chats, not rooms.
        (A::ConfigureRoom | A::ChangeSubject | A::Kick, T::Private) => None,
        (A::ConfigureRoom, _) => Some(SuperAdmin),
        // Moderators (owner and admins) change the subject and kick.
        (A::ChangeSubject | A::Kick, _) => Some(Admin),
    }
}

/// May a user with `role` do `action` in a dialog of type `kind`?
pub fn check(role: Role, kind: DialogType, action: Action) -> Result<(), Denied> {
    match least_role(kind, action) {
        Some(least) if role >= least => Ok(()),
        Some(_) => Err(Denied(format!(
            "Forbidden: {role} may not {} in a {} dialog",
            action.describe(),
            type_name(kind)
        ))),
        None => Err(Denied(format!(
            "Forbidden: nobody may {} in a {} dialog",
            action.describe(),
            type_name(kind)
        ))),
    }
}

/// **Who may change a room's subject**: moderators always; anyone who may post as well when
/// the room's configuration lets participants change it (`muc#roomconfig_changesubject`).
pub fn check_subject(role: Role, kind: DialogType, participants_may: bool) -> Result<(), Denied> {
    if participants_may && check(role, kind, Action::SendMessage).is_ok() {
        return Ok(());
    }
    check(role, kind, Action::ChangeSubject)
}

/// **Who may kick whom** out of a room: a moderator ([`Action::Kick`]) may kick anyone of a
/// lower role, never a peer or a superior (an admin cannot kick another admin or the owner).
pub fn check_kick(role: Role, target: Role, kind: DialogType) -> Result<(), Denied> {
    check(role, kind, Action::Kick)?;
    if target >= role {
        return Err(Denied(format!(
            "Forbidden: {role} may not kick {target} out of the room"
        )));
    }
    Ok(())
}

/// **Who may ban whom** from a room (affiliation outcast): a ban takes the user out of the
/// dialog ([`Action::RemoveOccupants`]) and out of the live room, so it is at least a kick
/// ([`check_kick`]); the owner is never banned.
pub fn check_ban(role: Role, target: Role, kind: DialogType) -> Result<(), Denied> {
    if target == Role::SuperAdmin {
        return Err(Denied(
            "Forbidden: the owner cannot be banned from the room".into(),
        ));
    }
    check(role, kind, Action::RemoveOccupants)?;
    check_kick(role, target, kind)
}

/// **Who may enter a room**: whoever may read its history ([`visible`]), unless banned from
/// it (affiliation outcast). An outsider entering an open standard room becomes a member.
pub fn check_enter(visibility: Visibility, outcast: bool) -> Result<(), Denied> {
    if outcast {
        return Err(Denied("Forbidden: you are banned from this room".into()));
    }
    if visibility < Visibility::History {
        return Err(Denied("Forbidden: the room is members-only".into()));
    }
    Ok(())
}

/// Most admins a dialog may have.
pub const MAX_ADMINS: usize = 5;

#[cfg(test)]
mod tests {
    //! One test per cell of the roles table: (role, dialog type, action).
    use super::*;
    use Action::*;
    use DialogType::*;
    use Role::*;

    macro_rules! cells {
        ($($name:ident: $role:ident $kind:ident $action:ident => $allowed:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(check($role, $kind, $action).is_ok(), $allowed);
            }
        )*};
    }

    cells! {
        // Private: two regular users.
        regular_user_can_send_in_private_dialog: Regular Private SendMessage => true;
        regular_user_can_delete_a_message_for_self_in_private_dialog: Regular Private DeleteMessageForSelf => true;
        regular_user_can_delete_own_message_for_everyone_in_private_dialog: Regular Private DeleteOwnMessageForEveryone => true;
        regular_user_cannot_delete_others_messages_for_everyone_in_private_dialog: Regular Private DeleteAnyMessageForEveryone => false;
        regular_user_can_delete_private_dialog_for_self: Regular Private DeleteDialogForSelf => true;
        regular_user_cannot_add_occupants_to_private_dialog: Regular Private AddOccupants => false;
        regular_user_cannot_remove_occupants_from_private_dialog: Regular Private RemoveOccupants => false;
        regular_user_cannot_change_private_dialog_info: Regular Private ChangeInfo => false;
        regular_user_cannot_pin_in_private_dialog: Regular Private PinMessages => false;
        regular_user_cannot_manage_admins_in_private_dialog: Regular Private ManageAdmins => false;
        regular_user_cannot_delete_private_dialog_for_everyone: Regular Private DeleteDialogForEveryone => false;
        outsider_cannot_read_private_dialog: Outsider Private Read => false;

        // Group.
        regular_user_can_send_in_group_dialog: Regular Group SendMessage => true;
        regular_user_can_delete_a_message_for_self_in_group_dialog: Regular Group DeleteMessageForSelf => true;
        regular_user_can_delete_own_message_for_everyone_in_group_dialog: Regular Group DeleteOwnMessageForEveryone => true;
        regular_user_cannot_delete_others_messages_for_everyone_in_group_dialog: Regular Group DeleteAnyMessageForEveryone => false;
        regular_user_can_delete_group_dialog_for_self: Regular Group DeleteDialogForSelf => true;
        regular_user_can_add_occupants_to_group_dialog: Regular Group AddOccupants => true;
        regular_user_cannot_remove_occupants_from_group_dialog: Regular Group RemoveOccupants => false;
        regular_user_can_change_group_dialog_info: Regular Group ChangeInfo => true;
        regular_user_cannot_pin_in_group_dialog: Regular Group PinMessages => false;
        regular_user_cannot_manage_admins_in_group_dialog: Regular Group ManageAdmins => false;
        regular_user_cannot_delete_group_dialog_for_everyone: Regular Group DeleteDialogForEveryone => false;
        admin_can_delete_any_message_for_everyone_in_group_dialog: Admin Group DeleteAnyMessageForEveryone => true;
        admin_can_pin_in_group_dialog: Admin Group PinMessages => true;
        admin_can_add_occupants_to_group_dialog: Admin Group AddOccupants => true;
        admin_can_remove_occupants_from_group_dialog: Admin Group RemoveOccupants => true;
        admin_can_change_group_dialog_info: Admin Group ChangeInfo => true;
        admin_can_send_in_group_dialog: Admin Group SendMessage => true;
        admin_cannot_manage_admins_in_group_dialog: Admin Group ManageAdmins => false;
        admin_cannot_delete_group_dialog_for_everyone: Admin Group DeleteDialogForEveryone => false;
        owner_can_manage_admins_in_group_dialog: SuperAdmin Group ManageAdmins => true;
        owner_can_delete_group_dialog_for_everyone: SuperAdmin Group DeleteDialogForEveryone => true;
        owner_can_pin_in_group_dialog: SuperAdmin Group PinMessages => true;
        owner_can_remove_occupants_from_group_dialog: SuperAdmin Group RemoveOccupants => true;
        outsider_cannot_read_group_dialog: Outsider Group Read => false;
        outsider_cannot_send_in_group_dialog: Outsider Group SendMessage => false;

        // Public.
        regular_user_can_send_in_public_dialog: Regular Public SendMessage => true;
        regular_user_can_delete_a_message_for_self_in_public_dialog: Regular Public DeleteMessageForSelf => true;
        regular_user_can_delete_own_message_for_everyone_in_public_dialog: Regular Public DeleteOwnMessageForEveryone => true;
        regular_user_cannot_delete_others_messages_for_everyone_in_public_dialog: Regular Public DeleteAnyMessageForEveryone => false;
        regular_user_can_delete_public_dialog_for_self: Regular Public DeleteDialogForSelf => true;
        regular_user_cannot_add_occupants_to_public_dialog: Regular Public AddOccupants => false;
        regular_user_cannot_change_public_dialog_info: Regular Public ChangeInfo => false;
        regular_user_cannot_pin_in_public_dialog: Regular Public PinMessages => false;
        regular_user_cannot_manage_admins_in_public_dialog: Regular Public ManageAdmins => false;
        regular_user_cannot_delete_public_dialog_for_everyone: Regular Public DeleteDialogForEveryone => false;
        admin_can_change_public_dialog_info: Admin Public ChangeInfo => true;
        admin_can_delete_any_message_for_everyone_in_public_dialog: Admin Public DeleteAnyMessageForEveryone => true;
        admin_can_pin_in_public_dialog: Admin Public PinMessages => true;
        admin_cannot_manage_admins_in_public_dialog: Admin Public ManageAdmins => false;
        admin_cannot_delete_public_dialog_for_everyone: Admin Public DeleteDialogForEveryone => false;
        owner_can_manage_admins_in_public_dialog: SuperAdmin Public ManageAdmins => true;
        owner_can_delete_public_dialog_for_everyone: SuperAdmin Public DeleteDialogForEveryone => true;
        outsider_cannot_send_in_public_dialog: Outsider Public SendMessage => false;

        // Broadcast: regular users receive only.
        regular_user_can_read_broadcast_dialog: Regular Broadcast Read => true;
        regular_user_cannot_send_in_broadcast_dialog: Regular Broadcast SendMessage => false;
        regular_user_cannot_delete_messages_in_broadcast_dialog: Regular Broadcast DeleteMessageForSelf => false;
        regular_user_can_delete_broadcast_dialog_for_self: Regular Broadcast DeleteDialogForSelf => true;
        regular_user_cannot_change_broadcast_dialog_info: Regular Broadcast ChangeInfo => false;
        regular_user_cannot_pin_in_broadcast_dialog: Regular Broadcast PinMessages => false;
        regular_user_cannot_add_occupants_to_broadcast_dialog: Regular Broadcast AddOccupants => false;
        admin_can_send_in_broadcast_dialog: Admin Broadcast SendMessage => true;
        admin_can_change_broadcast_dialog_info: Admin Broadcast ChangeInfo => true;
        admin_can_delete_any_message_for_everyone_in_broadcast_dialog: Admin Broadcast DeleteAnyMessageForEveryone => true;
        admin_can_pin_in_broadcast_dialog: Admin Broadcast PinMessages => true;
        admin_cannot_manage_admins_in_broadcast_dialog: Admin Broadcast ManageAdmins => false;
        admin_cannot_delete_broadcast_dialog_for_everyone: Admin Broadcast DeleteDialogForEveryone => false;
        owner_can_manage_admins_in_broadcast_dialog: SuperAdmin Broadcast ManageAdmins => true;
        owner_can_delete_broadcast_dialog_for_everyone: SuperAdmin Broadcast DeleteDialogForEveryone => true;
        owner_can_send_in_broadcast_dialog: SuperAdmin Broadcast SendMessage => true;

        // Rooms (XEP-0045): the owner configures, moderators change the subject and kick.
        owner_can_configure_a_group_room: SuperAdmin Group ConfigureRoom => true;
        admin_cannot_configure_a_group_room: Admin Group ConfigureRoom => false;
        regular_user_cannot_configure_a_group_room: Regular Group ConfigureRoom => false;
        nobody_configures_a_private_dialog_as_a_room: SuperAdmin Private ConfigureRoom => false;
        admin_can_change_a_group_rooms_subject: Admin Group ChangeSubject => true;
        regular_user_cannot_change_a_moderated_subject: Regular Group ChangeSubject => false;
        admin_can_kick_in_a_group_room: Admin Group Kick => true;
        regular_user_cannot_kick_in_a_group_room: Regular Group Kick => false;
    }

    #[test]
    fn participants_change_the_subject_only_when_the_room_lets_them() {
        assert!(check_subject(Regular, Group, true).is_ok());
        assert!(check_subject(Regular, Group, false).is_err());
        assert!(check_subject(Admin, Group, false).is_ok());
        assert!(check_subject(Outsider, Group, true).is_err());
    }

    #[test]
    fn a_moderator_kicks_only_lower_roles() {
        assert!(check_kick(Admin, Regular, Group).is_ok());
        assert!(check_kick(Admin, Admin, Group).is_err());
        assert!(check_kick(Admin, SuperAdmin, Group).is_err());
        assert!(check_kick(SuperAdmin, Admin, Group).is_ok());
        assert!(check_kick(Regular, Outsider, Group).is_err());
    }

    #[test]
    fn a_ban_is_a_kick_and_a_removal_and_never_of_the_owner() {
        assert!(check_ban(SuperAdmin, Regular, Group).is_ok());
        assert!(check_ban(SuperAdmin, Admin, Group).is_ok());
        assert!(check_ban(Admin, Regular, Group).is_ok());
        assert!(check_ban(Admin, Outsider, Group).is_ok());
        // Not a kick: a peer or a superior.
        assert!(check_ban(Admin, Admin, Group).is_err());
        assert!(check_ban(Regular, Outsider, Group).is_err());
        // A kick, but nobody removes occupants of public or broadcast dialogs.
        assert!(check_kick(Admin, Regular, Public).is_ok());
        assert!(check_ban(Admin, Regular, Public).is_err());
        assert!(check_ban(SuperAdmin, Regular, Public).is_err());
        assert!(check_ban(SuperAdmin, Regular, Broadcast).is_err());
        // The owner, even by the owner.
        let Denied(msg) = check_ban(SuperAdmin, SuperAdmin, Group).unwrap_err();
        assert_eq!(msg, "Forbidden: the owner cannot be banned from the room");
    }

    #[test]
    fn an_outcast_never_enters_and_an_outsider_needs_sight_of_the_history() {
        assert!(check_enter(Visibility::History, false).is_ok());
        assert!(check_enter(Visibility::History, true).is_err());
        assert!(check_enter(Visibility::Dialog, false).is_err());
    }

    mod visibility {
        //! One test per (dialog type, role, preview): what of the dialog that user sees.
        use super::super::{visible, Visibility};
        use super::*;
        use crate::model::{AppId, Dialog, ObjectId, UserId};

        fn dialog(kind: DialogType, allow_preview: bool) -> Dialog {
            let now = time::OffsetDateTime::UNIX_EPOCH;
            Dialog {
                id: ObjectId::generate(0),
                application_id: AppId(1),
                kind,
                owner: UserId(1),
                name: None,
                photo: None,
                description: None,
                occupants: vec![],
                admins: vec![],
                pinned: vec![],
                occupants_count: 0,
                extensions: None,
                data: None,
                allow_preview,
                last_message_id: None,
                last_message: None,
                last_message_user_id: None,
                last_message_date_sent: None,
                created_at: now,
                updated_at: now,
            }
        }

        macro_rules! sees {
            ($($name:ident: $role:ident $kind:ident preview=$preview:literal => $sight:ident;)*) => {$(
                #[test]
                fn $name() {
                    assert_eq!(visible($role, &dialog($kind, $preview)), Visibility::$sight);
                }
            )*};
        }

        sees! {
            members_see_a_private_dialogs_history: Regular Private preview=false => History;
            outsiders_do_not_see_a_private_dialog: Outsider Private preview=false => Hidden;
            members_see_a_group_dialogs_history: Regular Group preview=false => History;
            admins_see_a_group_dialogs_history: Admin Group preview=false => History;
            owners_see_a_group_dialogs_history: SuperAdmin Group preview=false => History;
            outsiders_do_not_see_a_group_dialog: Outsider Group preview=false => Hidden;
            outsiders_see_a_previewable_group_dialogs_history: Outsider Group preview=true => History;
            subscribers_see_a_public_dialogs_history: Regular Public preview=false => History;
            admins_see_a_public_dialogs_history: Admin Public preview=false => History;
            non_subscribers_see_a_public_dialog_but_not_its_history: Outsider Public preview=false => Dialog;
            non_subscribers_see_a_previewable_public_dialogs_history: Outsider Public preview=true => History;
            everyone_sees_a_broadcast_dialogs_history: Regular Broadcast preview=false => History;
        }

        #[test]
        fn an_outsider_of_a_broadcast_dialog_does_not_exist() {
            // Everyone of the application is in a broadcast dialog: `role_of` never answers
            // `Outsider` for one, whatever the inbox says.
            let d = dialog(Broadcast, false);
            assert_eq!(role_of(&d, UserId(7), false), Regular);
        }

        #[test]
        fn visibility_is_ordered_from_nothing_to_everything() {
            assert!(Visibility::Hidden < Visibility::Dialog);
            assert!(Visibility::Dialog < Visibility::History);
        }
    }

    #[test]
    fn forbidden_message_names_the_rule() {
        let Denied(msg) = check(Regular, Group, PinMessages).unwrap_err();
        assert_eq!(
            msg,
            "Forbidden: a regular user may not pin messages in a group dialog"
        );
    }
}
