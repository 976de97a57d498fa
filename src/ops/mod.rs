//! Operating a running server: the admin listener (metrics, probes and live numbers, off the
//! public ports), the metrics recorder, and the operator's commands (`parley user …`,
//! `parley session kick`, `parley stats`). Owns how the process is observed and driven; holds
//! no chat or account rules (the commands call `identity`) and no SQL (readiness asks
//! `db::Health`, counts ask `db::stats`).

pub mod admin;
pub mod commands;
pub mod stats;
pub mod telemetry;
