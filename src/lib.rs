//! Parley: a self-hostable chat server speaking the ConnectyCube Chat API (REST + XMPP).
//!
//! Module map:
//! - `config`   — typed configuration: every option, its default, its environment variable.
//! - `model`    — typed values shared by all layers (ids, time, filter operators, accounts).
//! - `db`       — PostgreSQL: pool, embedded server, migrations, repositories (all SQL).
//! - `identity` — applications, users, sessions: who is calling and every account rule.
//! - `chat`     — dialogs, messages, roles, unread counts, search, domain events.
//! - `hub`      — live state: the session registry (user → connections), room occupancy and
//!   membership cache, and fan-out to them.
//! - `limits`   — rate limiters and connection caps (bounded bookkeeping, no I/O).
//! - `rest`     — the HTTP adapter: route table, parameter extraction, one error shape.
//! - `secret_file` — files holding secrets, created with mode 0600.
//! - `server`   — wiring: listeners, background tasks, signals, graceful shutdown.
//! - `xml`      — the owned XML element and its writer, XML names and characters (no protocol).
//! - `xmpp`     — the XMPP adapter: streams, negotiation, routing, one file per XEP.

pub mod chat;
pub mod config;
pub mod db;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod model;
pub mod rest;
pub mod secret_file;
pub mod server;
pub mod xml;
pub mod xmpp;
