//! Typed values shared by every layer: ids (integer ids, [`UserKey`], [`ObjectId`]), time,
//! filter operators, accounts, dialogs and messages as plain data. Holds no I/O and no business
//! rules, and imports nothing of the crate but `xml` (re-exported as `model::xml`).

pub mod blob;
pub mod filter;
pub mod ids;
pub mod jid;
pub mod time;

pub use ids::{AppId, SessionId, UserId, UserKey};
pub use time::Clock;
pub mod account;

pub use account::{Application, Session, User};
pub mod dialog;
pub mod message;
pub mod object_id;
pub mod room;
/// XML names and characters now live in `crate::xml::names`; this path stays for callers.
pub use crate::xml::names as xml;

pub use dialog::{Dialog, DialogType};
pub use object_id::ObjectId;
