//! XEP-0045 room settings as plain data: what a room keeps beyond its dialog (the standard
//! room's name, the subject, persistence, who may change the subject, the outcasts). The
//! dialog's own fields (name, description, `allow_preview` = open) and roles are not repeated.

/// One room's settings; [`RoomSettings::default`] is a dialog room nothing was ever set on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    /// The local part of a standard room's JID (`name@muc.{domain}`), lower case; `None` for a
    /// dialog room (`{app}_{dialog}@muc.{domain}`).
    pub name: Option<String>,
    pub subject: String,
    /// The nick that set the subject.
    pub subject_by: Option<String>,
    /// A temporary room (`false`) is deleted when its last occupant leaves.
    pub persistent: bool,
    /// Participants, not only moderators, may change the subject.
    pub change_subject: bool,
    /// Users banned from the room (affiliation `outcast`).
    pub outcasts: Vec<i64>,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            name: None,
            subject: String::new(),
            subject_by: None,
            persistent: true,
            change_subject: true,
            outcasts: Vec::new(),
        }
    }
}
