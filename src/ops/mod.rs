//! Operating a running server: the admin listener (metrics and probes, off the public ports)
//! and the metrics recorder. Owns how the process is observed; holds no chat rules and no
//! SQL (readiness asks `db::Health`).

pub mod admin;
pub mod telemetry;
