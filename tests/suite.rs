//! Black-box suite: everything here talks to a real server over real sockets, backed by a real
//! PostgreSQL. One binary, so one embedded PostgreSQL serves the whole run.

mod common;

mod cli;
mod database;
mod hostile_injection;
mod hostile_limits;
mod hostile_parsers;
mod hostile_secrets;
mod hostile_state;
mod rest_calls;
mod rest_dialogs;
mod rest_messages;
mod rest_service;
mod rest_session;
mod rest_users;
mod xmpp_aioxmpp;
mod xmpp_core;
mod xmpp_history;
mod xmpp_limits;
mod xmpp_mam;
mod xmpp_muc;
mod xmpp_privacy;
mod xmpp_realtime;
mod xmpp_register;
mod xmpp_rfc;
mod xmpp_scram;
mod xmpp_thirdparty;
mod xmpp_vcard;

mod cluster;
mod cluster_bench;
mod files_bench;
mod hostile_auth;
mod hostile_revocation;
mod hostile_tenants;
mod mam_bench;
mod ops_admin;
mod ops_cli;
mod ops_logs;
mod ops_metrics;
mod ops_recovery;
mod ops_tls_reload;
mod push_alerts;
mod push_api;
mod push_bench;
mod push_ops;
mod push_webhooks;
mod readme_xep_table;
mod rest_blobs;
mod rest_openapi;
mod xmpp_carbons;
mod xmpp_muc_standard;
mod xmpp_pep;
mod xmpp_upload;
