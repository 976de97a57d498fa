//! Typed values shared by every layer: ids, time, filter operators.
//! Holds no I/O and no business rules.

pub mod filter;
pub mod ids;
pub mod time;

pub use ids::{AppId, SessionId, UserId, UserKey};
pub use time::Clock;
pub mod account;

pub use account::{Application, Session, User};
pub mod dialog;
pub mod message;
pub mod object_id;
/// XML names and characters now live in `crate::xml::names`; this path stays for callers.
pub use crate::xml::names as xml;

pub use dialog::{Dialog, DialogType};
pub use object_id::ObjectId;
