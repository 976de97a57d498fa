//! One file (or folder) per extension, each registered by one line in `dispatch::table()`.

pub mod blocking;
pub mod carbons;
pub mod core;
pub mod correction;
pub mod csi;
pub mod disco;
pub mod history;
pub mod http_upload;
pub mod last_activity;
pub mod mam;
pub mod markers;
pub mod message_delete;
pub mod muc;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod privacy;
pub mod private;
pub mod register;
pub mod roster;
pub mod stanza_id;
pub mod status_streaming;
pub mod time;
pub mod vcard;
pub mod version;
