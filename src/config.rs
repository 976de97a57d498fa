//! Typed configuration: every option with its default and a doc line. Loaded from an optional
//! TOML file, then overridden by `PARLEY_*` environment variables. Holds no runtime state.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The documented default configuration, shipped as `config/parley.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/parley.toml");

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded database, generated certificates and dev credentials.
    pub data_dir: PathBuf,
    /// The chat (XMPP) domain used in every JID: `{user_id}-{app_id}@{domain}`.
    pub domain: String,
    /// Log filter in `tracing` syntax, e.g. `info` or `parley=debug,info`.
    pub log: String,
    /// `human` or `json`.
    pub log_format: String,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub admin: AdminConfig,
    pub xmpp: XmppConfig,
    pub ws: WsConfig,
    pub sessions: SessionConfig,
    pub passwords: PasswordConfig,
    pub chat: ChatConfig,
    pub calls: CallsConfig,
    pub storage: StorageConfig,
    pub push: PushConfig,
    pub cluster: ClusterConfig,
    /// Applications created or updated at start-up.
    pub applications: Vec<ApplicationConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL URL; empty means: start the embedded server under `<data_dir>/postgres`.
    pub url: String,
    /// Maximum pooled connections.
    pub pool_size: usize,
    /// Directory holding `initdb`/`pg_ctl`; empty means: search /usr/lib/postgresql/*/bin, then PATH.
    pub pg_bin_dir: String,
    /// System account that runs the embedded server when Parley runs as root.
    pub embedded_user: String,
    /// Turn off fsync in the embedded server. Only for throw-away test databases.
    pub embedded_unsafe_fast: bool,
    /// At start-up, how long to keep trying to reach the database (embedded: to start it while
    /// an old server's processes are still exiting after a crash; external: to connect while it
    /// boots) before giving up.
    pub start_timeout_secs: u64,
    /// Longest wait between two attempts to restart an embedded PostgreSQL that died (the wait
    /// doubles from 250 ms up to this).
    pub restart_backoff_max_secs: u64,
}

/// Voice and video calls: the ICE servers handed to clients, with short-lived TURN credentials.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// STUN and TURN server URLs given to clients (`stun:host:3478`, `turn:host:3478?transport=udp`,
    /// `turns:host:5349?transport=tcp`).
    pub ice_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn `static-auth-secret` with `use-auth-secret`).
    /// Empty: no TURN credentials are issued and only the `stun:` URLs are handed out.
    pub turn_secret: String,
    /// Lifetime of a TURN credential, in seconds.
    pub turn_ttl_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            ice_urls: Vec::new(),
            turn_secret: String::new(),
            turn_ttl_secs: 86_400,
        }
    }
}

/// The operator's listener: metrics and probes, off the public ports.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Admin listener address (`/metrics`, `/healthz`, `/readyz`); keep it on loopback or a
    /// private network: it answers without authentication.
    pub addr: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// REST listener address.
    pub addr: SocketAddr,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout_secs: u64,
    /// Seconds a client has to send a whole request head (request line and headers), counted
    /// from the connection's start or from its first byte after an idle keep-alive wait;
    /// beyond it the connection is closed.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body; beyond it: 408 and the connection
    /// is closed.
    pub body_timeout_secs: u64,
    /// Seconds a keep-alive connection may sit idle between requests before it is closed.
    pub keepalive_idle_secs: u64,
    /// Most open REST connections in total; beyond it a new connection gets 503 and is closed.
    /// 0 = unlimited.
    pub max_connections: usize,
    /// Most open REST connections from one IP address (IPv6: one /64); beyond it a new one gets
    /// 503 and is closed. 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Requests per second one IP address (IPv6: one /64) may make (token bucket); beyond it
    /// 429 with `Retry-After`. 0 = unlimited.
    pub requests_per_sec_per_ip: u32,
    /// Requests one IP address may make at once above its rate.
    pub request_burst_per_ip: u32,
    /// Requests per second with one `CB-Token` (token bucket); beyond it 429 with
    /// `Retry-After`. 0 = unlimited.
    pub requests_per_sec_per_token: u32,
    /// Requests one token may make at once above its rate.
    pub request_burst_per_token: u32,
    /// Most addresses and most tokens the request limiters track each (memory bound); the ones
    /// idle longest are forgotten first. Also bounds the XMPP in-band registration limiter.
    pub rate_limit_max_keys: usize,
    /// Most parameters in one request: query and form pairs plus JSON leaf values, counted
    /// together; beyond it 422.
    pub max_params: usize,
    /// Deepest bracketed form or query key: `a[b][c]` has depth 3; deeper is 422 naming the key.
    pub max_param_depth: usize,
    /// Deepest nesting of arrays and objects in a JSON body, the body's own object included;
    /// deeper is 422 naming the field. Checked before the body is parsed.
    pub max_json_depth: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct XmppConfig {
    /// Client-to-server TCP listener (STARTTLS).
    pub addr: SocketAddr,
    /// Direct-TLS listener (XEP-0368).
    pub tls_addr: SocketAddr,
    /// When SASL PLAIN is allowed without TLS: `never`, `loopback` (clients on 127.0.0.0/8 or
    /// ::1) or `always`. Elsewhere STARTTLS is required before authentication.
    pub plain_auth: PlainAuth,
    /// Which SCRAM mechanisms SASL offers besides PLAIN (wherever PLAIN is allowed; the
    /// `-PLUS` variants on TLS 1.3 only): `off`, `sha256` (SCRAM-SHA-256 and -PLUS) or `all`
    /// (SCRAM-SHA-1 and -PLUS too). Not `all` by default: the official JavaScript SDK (and
    /// other XMPP libraries the ConnectyCube SDKs build on) takes SCRAM-SHA-1 whenever offered,
    /// and SCRAM cannot check the session token such an SDK logs in with.
    pub scram: ScramOffer,
    /// PEM certificate chain for TLS; empty with `key_file` empty: a self-signed development
    /// certificate for `domain` is generated under `<data_dir>/tls` on first start.
    pub cert_file: String,
    /// PEM private key matching `cert_file`.
    pub key_file: String,
    /// Largest accepted stanza (or WebSocket frame) in bytes; larger closes the stream with
    /// `<policy-violation/>`.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Bytes per second one connection may send (token bucket, burst of one stanza); reading
    /// pauses beyond it. 0 = unlimited.
    pub max_bytes_per_sec: u64,
    /// Seconds a client has from connecting to a bound resource.
    pub negotiation_timeout_secs: u64,
    /// Seconds of silence from a client before the server pings it (XEP-0199).
    pub idle_ping_secs: u64,
    /// Seconds to wait for the answer to a server ping before closing the connection.
    pub ping_timeout_secs: u64,
    /// Seconds a write to a client may take before the connection is dropped.
    pub write_timeout_secs: u64,
    /// Most simultaneous bound connections of one user.
    pub max_connections_per_user: usize,
    /// Most messages kept for one offline user; beyond it new ones are bounced.
    pub offline_max_per_user: i64,
    /// Most messages kept for one offline user from one sender (bare JID), so one stranger
    /// cannot fill someone's offline store; beyond it that sender's messages are bounced.
    pub offline_max_per_sender: i64,
    /// Most items in one user's roster; a roster set or an outbound subscription that would
    /// add one more is refused with `<not-allowed/>`. Also the most subscription requests
    /// waiting for one offline user (one per sender); more are dropped silently.
    pub roster_max_items: i64,
    /// Largest roster item (contact JID, name and groups, in bytes); larger is refused with
    /// `<not-acceptable/>`.
    pub roster_item_max_bytes: usize,
    /// Most status-streaming subscriptions one connection may hold; more are refused with
    /// `<not-allowed/>`. They end with the connection.
    pub status_subscriptions_max: usize,
    /// Most directed presences (RFC 6121 §4.6) one connection remembers, to send unavailable
    /// to at logout; a directed presence to one more JID is refused with `<not-allowed/>`.
    pub directed_presences_max: usize,
    /// Most rooms (XEP-0045) one connection may have joined; one more join is refused with
    /// `<not-allowed/>`.
    pub rooms_joined_max: usize,
    /// Most bytes of the presence payload (status, show, caps, …) a room keeps for one
    /// occupant connection and shows to the others; a larger join or presence update is refused
    /// with `<not-acceptable/>`.
    pub room_presence_max_bytes: usize,
    /// Joining an unknown `name@muc.{domain}` creates a standard room (XEP-0045 instant room,
    /// backed by a new group dialog the joiner owns); off: such a join is `<item-not-found/>`.
    pub room_creation: bool,
    /// Whether a standard room created by joining starts persistent
    /// (`muc#roomconfig_persistentroom`); false: it is a temporary room, deleted with its
    /// dialog when its last occupant leaves unless its owner configures it persistent first
    /// (the default of Prosody's `muc_room_default_persistent` and of ejabberd).
    pub room_default_persistent: bool,
    /// Store, and so archive for MAM (XEP-0313), the 1:1 `chat` and `normal` messages with a
    /// body that carry no ConnectyCube `<extraParams>` — those of ordinary XMPP clients — as if
    /// they asked for `save_to_history=1`. Off: the ConnectyCube rule alone (only what the
    /// sender asks to keep is stored; an SDK message without `extension` never is). Turn it on
    /// when users run ordinary XMPP clients, which expect the archive to hold their chats.
    pub archive_plain_messages: bool,
    /// Where clients read the service's outage status when they cannot reach it (XEP-0455):
    /// `http://` or `https://` URLs of a JSON status document kept somewhere else than this
    /// server, advertised in the server's disco#info. Empty: nothing is advertised.
    pub outage_status_urls: Vec<String>,
    /// Most privacy lists (XEP-0016) one user may keep.
    pub privacy_max_lists: usize,
    /// Most items in one privacy list (the official SDK writes two per blocked user).
    pub privacy_max_items: usize,
    /// Most JIDs on one user's block list (XEP-0191).
    pub blocklist_max: usize,
    /// Most messages in one page of a message archive query (XEP-0313); a larger `<max>`, or
    /// none, gets this many.
    pub mam_max_page: usize,
    /// An archive query's RSM `<count>` and first `index` are given only while its result set
    /// holds at most this many messages, judged first from the archive indexes alone (an
    /// index-only read of this many + 1 entries; messages cleared or deleted for the reader
    /// still count there) and then counted exactly: XEP-0059 lets a server leave them out.
    /// 0 = never counted.
    pub mam_count_max: usize,
    /// Most elements one user keeps in private XML storage (XEP-0049); each is bounded by
    /// `max_stanza_bytes`.
    pub private_max_items: usize,
    /// Seconds a dropped stream-management session stays resumable (XEP-0198).
    pub sm_resume_secs: u64,
    /// Bytes of un-acknowledged stanzas a live stream-management connection may hold; past it
    /// the stream is closed with `<policy-violation/>` and its un-acked messages go to offline
    /// storage.
    pub sm_unacked_bytes: usize,
    /// Bytes of stanzas a parked (dropped, resumable) stream-management session may hold; past
    /// it the session ends at once and its messages go to offline storage.
    pub sm_parked_queue_bytes: usize,
    /// Stanzas queued towards one connection before new ones are dropped (slow reader).
    pub outbound_queue: usize,
    /// Most open XMPP connections in total (TCP, TLS and WebSocket together); beyond it a new
    /// one is closed with the `<resource-constraint/>` stream error. 0 = unlimited.
    pub max_connections: usize,
    /// Most open XMPP connections from one IP address (IPv6: one /64), all listeners together;
    /// beyond it a new one is closed with `<policy-violation/>`. 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Largest PEP item payload (XEP-0163), in bytes as Parley writes it back; a larger publish
    /// is refused with `<not-acceptable/><payload-too-big/>`.
    pub pep_max_payload_bytes: usize,
    /// Most items one PEP node keeps (what `pubsub#max_items` = `max` means); a larger
    /// `max_items` is lowered to it, and older items are dropped past a node's own bound.
    pub pep_max_items_per_node: i32,
    /// Most PEP nodes one user may own; publishing to one more node is refused with
    /// `<not-allowed/>`.
    pub pep_max_nodes_per_user: i64,
    /// Most payload bytes one user may keep over all their PEP nodes; a publish past it is
    /// refused with `<resource-constraint/>`.
    pub pep_max_bytes_per_user: i64,
    /// Longest PEP node name or item id, in bytes; longer is refused with `<bad-request/>`.
    pub pep_max_id_bytes: usize,
    /// Most entity-capabilities hashes (XEP-0115 `ver`) whose verified feature lists are kept
    /// in memory, shared by every connection; past it the oldest is forgotten.
    pub caps_cache_max: usize,
    /// Seconds a client has to answer the server's disco#info query about its capabilities
    /// hash; an unanswered query is forgotten (asked again at the next presence with it).
    pub caps_query_timeout_secs: u64,
    /// Most bytes of `+notify` node names kept for one capabilities hash (the rest of that
    /// client's interests are ignored), so the cache's memory stays about
    /// `caps_cache_max` × this at worst.
    pub caps_max_notify_bytes: usize,
    /// XEP-0077 in-band registration: a client may create an account before logging in (with a
    /// login and a password, by the rules of REST sign-up). Off: not advertised, and the
    /// registration iq is answered `service-unavailable`.
    pub register_enabled: bool,
    /// The application in-band registrations create users in (required when enabled).
    pub register_application_id: i64,
    /// In-band registration attempts per IP address (IPv6: one /64) per hour, all of them at
    /// once at most (token bucket); beyond it `policy-violation` (type `wait`). 0 = unlimited.
    pub registrations_per_hour_per_ip: u32,
}

/// Which SCRAM mechanisms are offered.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScramOffer {
    Off,
    Sha256,
    All,
}

/// When plain-text SASL is allowed without TLS.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlainAuth {
    Never,
    Loopback,
    Always,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// XMPP-over-WebSocket listener (RFC 7395).
    pub addr: SocketAddr,
    /// Serve `wss://` (TLS with the XMPP certificate) instead of `ws://`.
    pub tls: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session token expires after this many seconds without use; every request extends it.
    pub ttl_secs: i64,
    /// A signed `POST /session` must carry a timestamp within this many seconds of now.
    pub signature_window_secs: i64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Minimum password length accepted at sign-up and password change.
    pub min_length: usize,
    /// Wrong passwords allowed per minute from one address (IPv6: one /64), and per account from
    /// one address, over XMPP SASL, `POST /session` and `POST /login` alike; beyond it password
    /// checks are refused (REST 429 with `Retry-After`, SASL `not-authorized`) until the
    /// minute is over. A live session token is never refused by it.
    pub failures_per_minute: u32,
    /// Most addresses and (account, address) pairs the password throttle tracks at once; past
    /// it the oldest entry is forgotten.
    pub throttle_max_keys: usize,
    /// Password hashes and checks waiting or running at once; beyond it `POST /session`,
    /// `POST /login` and sign-ups get 503 with `Retry-After`, and XMPP password logins
    /// `<temporary-auth-failure/>`.
    pub max_pending_hashes: usize,
    /// PBKDF2 iterations of the SCRAM credentials (SCRAM-SHA-1 and SCRAM-SHA-256) derived
    /// whenever a password is set; at least 4096 (RFC 7677). A change applies to passwords set
    /// afterwards.
    pub scram_iterations: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Longest message body, in characters.
    pub max_message_chars: usize,
    /// Most attachments on one message.
    pub max_attachments: usize,
    /// Longest reaction string, in characters.
    pub max_reaction_chars: usize,
    /// `GET /chat/search`: shortest `search_text` (the hosted API wants more than 4 characters).
    pub search_min_chars: usize,
    /// `GET /chat/search`: widest `start_date`..`end_date` window, in days (about 3 months).
    pub search_window_days: i64,
    /// Most XMPP `save_to_history` messages committed in one transaction (group commit).
    pub history_batch_max: usize,
    /// Most occupants of a group dialog; also the most ids one request may list in
    /// `occupants_ids`, `admins_ids` or `pinned_messages_ids`, and the most pinned messages of
    /// one dialog (422 naming the field beyond any of them).
    pub max_occupants_per_dialog: usize,
    /// Most subscribers of a public dialog (422 on `POST /chat/Dialog/{id}/subscribe` beyond).
    pub max_public_subscribers: i64,
    /// Most custom parameters on one message (or system message), nested keys included.
    pub max_custom_params: usize,
    /// Most bytes of a message's (or system message's) custom parameters: keys and values as
    /// text, each value counting at least one byte.
    pub max_custom_params_bytes: usize,
    /// Deepest nesting of custom parameters and of dialog `data` (a top-level key is level 1;
    /// an object or array value adds a level).
    pub max_custom_params_depth: usize,
    /// Most bytes of one attachment (its keys and values as text).
    pub max_attachment_bytes: usize,
    /// Most bytes of a dialog's custom `data` (keys and values as text, after merging an update).
    pub max_dialog_data_bytes: usize,
    /// Most keys in a dialog's custom `data`, nested keys included.
    pub max_dialog_data_keys: usize,
    /// Messages per second one user may send, REST and XMPP together (token bucket); beyond it
    /// REST answers 429 with `Retry-After` and XMPP a `<policy-violation/>` error of type
    /// `wait`. 0 = unlimited.
    pub messages_per_sec_per_user: u32,
    /// Messages one user may send at once above that rate.
    pub message_burst_per_user: u32,
    /// Most users the message limiter tracks (memory bound); the ones idle longest go first.
    pub message_rate_max_users: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_message_chars: 10_000,
            max_attachments: 20,
            max_reaction_chars: 32,
            search_min_chars: 5,
            search_window_days: 92,
            history_batch_max: 256,
            max_occupants_per_dialog: 1000,
            max_public_subscribers: 100_000,
            max_custom_params: 64,
            max_custom_params_bytes: 16 * 1024,
            max_custom_params_depth: 4,
            max_attachment_bytes: 4 * 1024,
            max_dialog_data_bytes: 16 * 1024,
            max_dialog_data_keys: 64,
            messages_per_sec_per_user: 50,
            message_burst_per_user: 100,
            message_rate_max_users: 100_000,
        }
    }
}

/// Files (the storage API, `/blobs`): where the bytes live and what may be uploaded.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `disk`: files under `<data_dir>/blobs`, served by Parley itself with signed, expiring
    /// URLs. `s3`: any S3-compatible service (AWS S3, MinIO, Ceph, R2), with pre-signed URLs so
    /// the bytes go straight between client and store.
    pub backend: String,
    /// The URL clients reach Parley's REST port at (`https://api.example.com`), used in the
    /// upload form and download URLs of the `disk` store; empty: `http://<http.addr>`.
    pub public_url: String,
    /// Largest blob in bytes (per application: `max_blob_bytes` in `[[applications]]`).
    pub max_blob_bytes: u64,
    /// Content types that may be uploaded, exact (`image/png`) or by family (`image/*`); empty:
    /// any (per application: `blob_content_types` in `[[applications]]`).
    pub allowed_content_types: Vec<String>,
    /// Seconds an upload form (or an XMPP upload slot) stays valid.
    pub upload_url_ttl_secs: u64,
    /// Seconds a download URL stays valid (`/blobs/{uid}/download`,
    /// `/blobs/{uid}/object?download_url=1`).
    pub download_url_ttl_secs: u64,
    /// Uploads not completed (`PUT /blobs/{id}/complete`) within this many seconds are removed
    /// with their bytes.
    pub unfinished_ttl_secs: u64,
    /// Uploads one user may have in progress at once (REST blobs not completed, XEP-0363 slots
    /// not uploaded); 0: no limit.
    pub max_unfinished_per_user: u64,
    /// Key of the `disk` store's URL signatures (HMAC-SHA256); empty: a random key kept in
    /// `<data_dir>/blobs/signing.key` (mode 0600). Nodes sharing a disk must share the key.
    pub signing_key: String,
    /// S3 endpoint, e.g. `https://s3.eu-central-1.amazonaws.com` or `http://minio:9000`.
    pub s3_endpoint: String,
    /// S3 region (`us-east-1` for MinIO and most others).
    pub s3_region: String,
    pub s3_bucket: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    /// Address the bucket in the path (`<endpoint>/<bucket>/<key>`: MinIO, Ceph, R2) instead
    /// of the host name (`<bucket>.<endpoint host>`: AWS buckets made since 2020).
    pub s3_path_style: bool,
    /// PEM file of the certificate authorities trusted for an `https` S3 endpoint.
    pub s3_ca_file: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: "disk".into(),
            public_url: String::new(),
            max_blob_bytes: 100 << 20,
            allowed_content_types: Vec::new(),
            upload_url_ttl_secs: 3600,
            download_url_ttl_secs: 3600,
            unfinished_ttl_secs: 86_400,
            max_unfinished_per_user: 100,
            signing_key: String::new(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_bucket: String::new(),
            s3_access_key: String::new(),
            s3_secret_key: String::new(),
            s3_path_style: true,
            s3_ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

/// Push notifications (FCM, APNs, Web Push) and webhooks: the outbox workers and the providers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Run the outbox workers in this process (pushes and webhooks are still enqueued when
    /// off, for another node to deliver).
    pub workers_enabled: bool,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Outbox rows claimed per poll.
    pub batch: i64,
    /// How often an idle worker looks for due rows, in milliseconds.
    pub poll_interval_ms: u64,
    /// A claimed row comes back to the queue after this many seconds if its worker died.
    pub lease_secs: u64,
    /// Failed attempts before a delivery goes to the dead-letter table.
    pub max_attempts: i32,
    /// Wait before the first retry, in seconds; it doubles with each failure.
    pub retry_base_secs: u64,
    /// Longest wait between two retries, in seconds.
    pub retry_max_secs: u64,
    /// One provider or webhook request may take this many seconds (connect, TLS, answer).
    pub request_timeout_secs: u64,
    /// FCM HTTP v1 send URL; `{project_id}` is replaced by the service account's project.
    pub fcm_url: String,
    /// Google's OAuth2 token endpoint (service-account JWT → access token).
    pub fcm_token_url: String,
    /// APNs base URL for every subscription; empty = Apple's production or development host by
    /// the subscription's environment.
    pub apns_url: String,
    /// PEM bundle of the certificate authorities trusted for provider and webhook HTTPS.
    pub ca_file: PathBuf,
    /// Most push subscriptions (devices × channels) one user may have; beyond it 422.
    pub max_subscriptions_per_user: i64,
    /// Most users one `POST /events` may reach; beyond it 422.
    pub max_event_recipients: i64,
    /// Most bytes of an event's `message` (and of a chat alert's text, which is cut there).
    pub max_message_bytes: usize,
    /// How long a server trusts what it last read about whether an application has push
    /// credentials (FCM, APNs or VAPID), in seconds. An application with none gets no chat
    /// alerts enqueued (no device look-up in the message's transaction), so after `parley app
    /// set-push` alerts start within this time; 0 reads it on every message.
    pub credentials_cache_secs: u64,
    /// How often the outbox and dead-letter depth gauges are sampled (one `count(*)` each), in
    /// seconds; at least 1.
    pub depth_sample_secs: u64,
    /// Idle HTTP/1.1 keep-alive connections kept per provider or webhook origin, for the next
    /// delivery (HTTP/2 origins share one connection anyway); 0 = a connection per request.
    pub max_idle_per_host: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            workers_enabled: true,
            concurrency: 32,
            batch: 100,
            poll_interval_ms: 500,
            lease_secs: 60,
            max_attempts: 8,
            retry_base_secs: 2,
            retry_max_secs: 600,
            request_timeout_secs: 10,
            fcm_url: "https://fcm.googleapis.com/v1/projects/{project_id}/messages:send".into(),
            fcm_token_url: "https://oauth2.googleapis.com/token".into(),
            apns_url: String::new(),
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            max_subscriptions_per_user: 20,
            max_event_recipients: 10_000,
            max_message_bytes: 4096,
            credentials_cache_secs: 10,
            depth_sample_secs: 15,
            max_idle_per_host: 8,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApplicationConfig {
    pub id: i64,
    pub name: String,
    pub auth_key: String,
    pub auth_secret: String,
    /// Refuse `POST /session` without a valid signature.
    #[serde(default)]
    pub require_signature: bool,
    /// Create a missing user when a session is requested with login/email + password.
    #[serde(default = "yes")]
    pub session_creates_users: bool,
    /// Dialog `extensions` fields the application allows (at most 3); others are dropped.
    #[serde(default)]
    pub dialog_extensions: Vec<String>,
    /// This application's largest blob in bytes, instead of `storage.max_blob_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blob_bytes: Option<u64>,
    /// This application's allowed blob content types, instead of
    /// `storage.allowed_content_types`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_content_types: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// Several nodes on one database, joined by a NATS bus (`hub::cluster`). With no `nats_url`
/// the server is a single node exactly as before: no bus, nothing of this is used.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server(s), comma-separated (`nats://10.0.0.5:4222,nats://10.0.0.6:4222`); empty: a
    /// single node.
    pub nats_url: String,
    /// This node's name on the bus, unique in the cluster (letters, digits, `-`, `_`; at most
    /// 64); empty: the host name (dots become `-`).
    pub node_name: String,
    /// The cluster's name: subjects are `parley.<name>.node.<node>` and `parley.<name>.all`, so
    /// several clusters may share one NATS.
    pub name: String,
    /// How often each node tells the others it is alive, in milliseconds.
    pub heartbeat_ms: u64,
    /// A node not heard from for this long is dead: its users are offline (their contacts get
    /// unavailable presence, messages to them are stored offline).
    pub node_timeout_ms: u64,
    /// Largest message on the bus, in bytes; larger ones are not sent, and not accepted.
    pub max_message_bytes: usize,
    /// Messages waiting to be handed to NATS; beyond it a message is dropped (counted).
    pub send_queue: usize,
    /// Messages from the bus waiting to be handled; beyond it one is dropped (counted).
    pub receive_queue: usize,
    /// Most sessions of other nodes this node keeps in its directory.
    pub max_remote_sessions: usize,
    /// Most other nodes this node keeps track of.
    pub max_nodes: usize,
    /// Most occupants joined through other nodes this node keeps in its rooms (one entry per
    /// room, user and node); beyond it another node's occupant is not recorded (counted).
    pub max_remote_occupants: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: String::new(),
            node_name: String::new(),
            name: "default".into(),
            heartbeat_ms: 1000,
            node_timeout_ms: 3000,
            max_message_bytes: 256 * 1024,
            send_queue: 16_384,
            receive_queue: 16_384,
            max_remote_sessions: 1_000_000,
            max_nodes: 64,
            max_remote_occupants: 1_000_000,
        }
    }
}

impl ClusterConfig {
    /// Whether this server is one node of several (a NATS URL is set).
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    /// This node's name: `node_name`, or the host name with dots as `-`.
    pub fn node(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let name: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        if name.is_empty() {
            "node".into()
        } else {
            name
        }
    }
}

/// A name that may be one NATS subject token: letters, digits, `-`, `_`, 1 to 64 of them.
pub fn is_subject_token(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("static socket address")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            domain: "localhost".into(),
            log: "info".into(),
            log_format: "human".into(),
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            admin: AdminConfig::default(),
            xmpp: XmppConfig::default(),
            ws: WsConfig::default(),
            sessions: SessionConfig::default(),
            passwords: PasswordConfig::default(),
            chat: ChatConfig::default(),
            calls: CallsConfig::default(),
            storage: StorageConfig::default(),
            push: PushConfig::default(),
            cluster: ClusterConfig::default(),
            applications: Vec::new(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 16,
            pg_bin_dir: String::new(),
            embedded_user: "postgres".into(),
            embedded_unsafe_fast: false,
            start_timeout_secs: 30,
            restart_backoff_max_secs: 10,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: addr("127.0.0.1:8080"),
            max_body_bytes: 1 << 20,
            drain_timeout_secs: 10,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            keepalive_idle_secs: 60,
            max_connections: 50_000,
            max_connections_per_ip: 1_000,
            requests_per_sec_per_ip: 1_000,
            request_burst_per_ip: 2_000,
            requests_per_sec_per_token: 100,
            request_burst_per_token: 200,
            rate_limit_max_keys: 100_000,
            max_params: 10_000,
            max_param_depth: 8,
            max_json_depth: 32,
        }
    }
}

impl Default for XmppConfig {
    fn default() -> Self {
        Self {
            addr: addr("127.0.0.1:5222"),
            tls_addr: addr("127.0.0.1:5223"),
            plain_auth: PlainAuth::Loopback,
            scram: ScramOffer::Sha256,
            cert_file: String::new(),
            key_file: String::new(),
            max_stanza_bytes: 64 * 1024,
            max_depth: 32,
            max_attributes: 64,
            max_bytes_per_sec: 256 * 1024,
            negotiation_timeout_secs: 30,
            idle_ping_secs: 300,
            ping_timeout_secs: 60,
            write_timeout_secs: 30,
            max_connections_per_user: 10,
            offline_max_per_user: 1000,
            offline_max_per_sender: 100,
            roster_max_items: 1000,
            roster_item_max_bytes: 2048,
            status_subscriptions_max: 1000,
            directed_presences_max: 1000,
            rooms_joined_max: 1000,
            room_presence_max_bytes: 4096,
            room_creation: true,
            room_default_persistent: true,
            archive_plain_messages: false,
            outage_status_urls: Vec::new(),
            privacy_max_lists: 50,
            privacy_max_items: 1000,
            blocklist_max: 10_000,
            mam_max_page: 100,
            mam_count_max: 1000,
            private_max_items: 64,
            sm_resume_secs: 300,
            sm_unacked_bytes: 4 << 20,
            sm_parked_queue_bytes: 1 << 20,
            outbound_queue: 1024,
            max_connections: 50_000,
            max_connections_per_ip: 1_000,
            pep_max_payload_bytes: 60 * 1024,
            pep_max_items_per_node: 256,
            pep_max_nodes_per_user: 64,
            pep_max_bytes_per_user: 4 << 20,
            pep_max_id_bytes: 256,
            caps_cache_max: 4096,
            caps_query_timeout_secs: 30,
            caps_max_notify_bytes: 8192,
            register_enabled: false,
            register_application_id: 0,
            registrations_per_hour_per_ip: 10,
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            addr: addr("127.0.0.1:5291"),
            tls: false,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 7200,
            signature_window_secs: 3600,
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            min_length: 8,
            failures_per_minute: 10,
            throttle_max_keys: 100_000,
            max_pending_hashes: 64,
            scram_iterations: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
}

impl Config {
    /// What is wrong with this configuration beyond its syntax, one line each (empty: nothing).
    /// `parley config check` prints these; files it names are checked by the command itself.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.domain.trim().is_empty() {
            out.push("domain: must not be empty (it is in every JID)".to_string());
        }
        if !matches!(self.log_format.as_str(), "human" | "json") {
            out.push(format!(
                "log_format: {:?} is neither \"human\" nor \"json\"",
                self.log_format
            ));
        }
        if !self.database.url.is_empty() {
            if let Err(e) = self.database.url.parse::<tokio_postgres::Config>() {
                out.push(format!("database.url: not a PostgreSQL URL: {e}"));
            }
        }
        out.extend(outage_url_problems(&self.xmpp.outage_status_urls));
        if self.database.pool_size == 0 {
            out.push("database.pool_size: must be at least 1".to_string());
        }
        if self.xmpp.cert_file.is_empty() != self.xmpp.key_file.is_empty() {
            out.push(
                "xmpp.cert_file / xmpp.key_file: give both (a real certificate) or neither \
                 (a generated development certificate)"
                    .to_string(),
            );
        }
        let listeners = [
            ("http.addr", self.http.addr),
            ("xmpp.addr", self.xmpp.addr),
            ("xmpp.tls_addr", self.xmpp.tls_addr),
            ("ws.addr", self.ws.addr),
        ];
        for (i, (a, addr_a)) in listeners.iter().enumerate() {
            for (b, addr_b) in listeners.iter().skip(i + 1) {
                if addr_a == addr_b && addr_a.port() != 0 {
                    out.push(format!("{a} and {b}: both are {addr_a}"));
                }
            }
        }
        if self.xmpp.plain_auth == PlainAuth::Always && !self.xmpp.addr.ip().is_loopback() {
            out.push(format!(
                "xmpp.plain_auth: \"always\" sends passwords in clear text on {}; use \"never\" \
                 or \"loopback\"",
                self.xmpp.addr
            ));
        }
        if self.xmpp.register_enabled && self.xmpp.register_application_id <= 0 {
            out.push(
                "xmpp.register_application_id: in-band registration is enabled; name the \
                 application it creates users in"
                    .to_string(),
            );
        }
        if self.passwords.scram_iterations < 4096 {
            out.push(
                "passwords.scram_iterations: fewer than 4096 is below RFC 7677's minimum"
                    .to_string(),
            );
        }
        match self.storage.backend.as_str() {
            "disk" => {}
            "s3" => {
                for (name, v) in [
                    ("storage.s3_endpoint", &self.storage.s3_endpoint),
                    ("storage.s3_bucket", &self.storage.s3_bucket),
                    ("storage.s3_access_key", &self.storage.s3_access_key),
                    ("storage.s3_secret_key", &self.storage.s3_secret_key),
                ] {
                    if v.trim().is_empty() {
                        out.push(format!("{name}: required with storage.backend = \"s3\""));
                    }
                }
                let e = &self.storage.s3_endpoint;
                if !(e.is_empty() || e.starts_with("http://") || e.starts_with("https://")) {
                    out.push(format!("storage.s3_endpoint: {e:?} is not an http(s) URL"));
                }
            }
            other => out.push(format!(
                "storage.backend: {other:?} is neither \"disk\" nor \"s3\""
            )),
        }
        let c = &self.cluster;
        if !c.node_name.is_empty() && !is_subject_token(&c.node_name) {
            out.push(format!(
                "cluster.node_name: {:?} must be 1-64 letters, digits, '-' or '_'",
                c.node_name
            ));
        }
        if !is_subject_token(&c.name) {
            out.push(format!(
                "cluster.name: {:?} must be 1-64 letters, digits, '-' or '_'",
                c.name
            ));
        }
        if c.heartbeat_ms == 0 || c.node_timeout_ms < 2 * c.heartbeat_ms {
            out.push(
                "cluster.node_timeout_ms: must be at least twice cluster.heartbeat_ms (> 0), or \
                 one late heartbeat declares a live node dead"
                    .to_string(),
            );
        }
        if c.max_message_bytes < self.xmpp.max_stanza_bytes + 1024 {
            out.push(
                "cluster.max_message_bytes: must exceed xmpp.max_stanza_bytes by 1 KiB, or a \
                 stanza a client may send cannot cross to another node"
                    .to_string(),
            );
        }
        if c.send_queue == 0 || c.receive_queue == 0 || c.max_nodes == 0 {
            out.push(
                "cluster.send_queue / receive_queue / max_nodes: must be at least 1".to_string(),
            );
        }
        if self.passwords.min_length < 8 {
            out.push("passwords.min_length: fewer than 8 characters is not safe".to_string());
        }
        out
    }

    /// Reads `path` (if given) over the defaults, then applies `PARLEY_*` environment overrides.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml_and_env(&text, std::env::vars())
    }

    pub fn from_toml_and_env(
        text: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let mut tree =
            toml::Value::try_from(&file).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let overrides = env_overrides(&tree);
        for (name, value) in env {
            if let Some(path) = overrides.iter().find(|(n, _)| *n == name).map(|(_, p)| p) {
                set_leaf(&mut tree, path, &value).map_err(|message| ConfigError::Env {
                    name: name.clone(),
                    message,
                })?;
                // Type-check each override on its own, so an error names its variable.
                tree.clone()
                    .try_into::<Config>()
                    .map_err(|e| ConfigError::Env {
                        name: name.clone(),
                        message: e.message().to_string(),
                    })?;
            }
        }
        tree.try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))
    }

    /// True when the embedded PostgreSQL server should be used.
    pub fn embedded_database(&self) -> bool {
        self.database.url.trim().is_empty()
    }
}

/// Most addresses `xmpp.outage_status_urls` may name.
pub const MAX_OUTAGE_URLS: usize = 8;
/// Longest address in `xmpp.outage_status_urls`, in bytes.
pub const MAX_OUTAGE_URL_BYTES: usize = 1024;

/// What is wrong with `xmpp.outage_status_urls` (empty: nothing): clients fetch these, so
/// each must be a plain http(s) URL.
fn outage_url_problems(urls: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if urls.len() > MAX_OUTAGE_URLS {
        out.push(format!(
            "xmpp.outage_status_urls: at most {MAX_OUTAGE_URLS} addresses, not {}",
            urls.len()
        ));
    }
    for u in urls {
        let http = u.starts_with("http://") || u.starts_with("https://");
        if !http
            || u.len() > MAX_OUTAGE_URL_BYTES
            || u.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            out.push(format!(
                "xmpp.outage_status_urls: {u:?} is not an http(s) URL of at most {MAX_OUTAGE_URL_BYTES} bytes"
            ));
        }
    }
    out
}

/// Every scalar option `a.b` can be set with `PARLEY_A_B` (`data_dir` → `PARLEY_DATA_DIR`,
/// `http.addr` → `PARLEY_HTTP_ADDR`, `ws.addr` → `PARLEY_WS_ADDR`). `log` is `PARLEY_LOG`.
pub fn env_overrides(tree: &toml::Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    collect_leaves(tree, &mut Vec::new(), &mut out);
    out.into_iter()
        .map(|path| {
            let name = format!("PARLEY_{}", path.join("_").to_ascii_uppercase());
            (name, path)
        })
        .collect()
}

fn collect_leaves(v: &toml::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                prefix.push(k.clone());
                collect_leaves(child, prefix, out);
                prefix.pop();
            }
        }
        toml::Value::Array(_) => {}
        _ => out.push(prefix.clone()),
    }
}

fn set_leaf(tree: &mut toml::Value, path: &[String], raw: &str) -> Result<(), String> {
    let mut node = tree;
    for key in path {
        node = node.get_mut(key.as_str()).ok_or("unknown option")?;
    }
    *node = match node {
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{raw}` is not an integer"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err(format!("`{raw}` is not a boolean")),
        }),
        toml::Value::Float(_) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{raw}` is not a number"))?,
        ),
        _ => toml::Value::String(raw.to_owned()),
    };
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_default_configuration_has_no_problems() {
        assert_eq!(Config::default().problems(), Vec::<String>::new());
    }

    #[test]
    fn outage_status_urls_must_be_few_plain_http_urls() {
        let problems = |urls: &[&str]| {
            let mut c = Config::default();
            c.xmpp.outage_status_urls = urls.iter().map(|u| u.to_string()).collect();
            c.problems()
        };
        assert!(problems(&["https://ok.example/s.json"]).is_empty());
        assert_eq!(problems(&["ftp://x.example/s"]).len(), 1);
        assert_eq!(problems(&["https://x.example/a b"]).len(), 1);
        assert_eq!(
            problems(&["https://x.example/"; MAX_OUTAGE_URLS + 1]).len(),
            1
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_a_problem() {
        let mut c = Config::default();
        c.xmpp.cert_file = "/etc/parley/cert.pem".into();
        assert!(c.problems().iter().any(|p| p.starts_with("xmpp.cert_file")));
    }

    #[test]
    fn two_listeners_on_one_address_are_a_problem() {
        let mut c = Config::default();
        c.ws.addr = c.http.addr;
        assert!(c
            .problems()
            .iter()
            .any(|p| p.contains("http.addr and ws.addr")));
    }

    #[test]
    fn a_database_url_that_does_not_parse_is_a_problem() {
        let mut c = Config::default();
        c.database.url = "postgres://host:notaport/db".into();
        assert!(c.problems().iter().any(|p| p.starts_with("database.url")));
    }

    use super::*;

    fn no_env() -> impl Iterator<Item = (String, String)> {
        std::iter::empty()
    }

    #[test]
    fn shipped_config_file_states_exactly_the_defaults() {
        let parsed = Config::from_toml_and_env(DEFAULT_TOML, no_env()).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn shipped_config_file_documents_every_option() {
        let written: toml::Value = toml::from_str(DEFAULT_TOML).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let names = |t: &toml::Value| {
            env_overrides(t)
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&written),
            names(&defaults),
            "config/parley.toml must set every option"
        );
    }

    #[test]
    fn fixed_environment_names_override_options() {
        let env = [
            ("PARLEY_DATA_DIR", "/tmp/x"),
            ("PARLEY_DATABASE_URL", "postgres://u@h/db"),
            ("PARLEY_HTTP_ADDR", "127.0.0.1:9999"),
            ("PARLEY_XMPP_ADDR", "127.0.0.1:15222"),
            ("PARLEY_XMPP_TLS_ADDR", "127.0.0.1:15223"),
            ("PARLEY_WS_ADDR", "127.0.0.1:15291"),
            ("PARLEY_DOMAIN", "chat.example"),
            ("PARLEY_LOG", "debug"),
            ("PARLEY_SESSIONS_TTL_SECS", "60"),
            ("PARLEY_XMPP_MAX_STANZA_BYTES", "1000"),
            ("PARLEY_XMPP_PLAIN_AUTH", "never"),
            ("PARLEY_WS_TLS", "true"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()));
        let c = Config::from_toml_and_env("", env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.database.url, "postgres://u@h/db");
        assert_eq!(c.http.addr.port(), 9999);
        assert_eq!(c.xmpp.addr.port(), 15222);
        assert_eq!(c.xmpp.tls_addr.port(), 15223);
        assert_eq!(c.ws.addr.port(), 15291);
        assert_eq!(c.domain, "chat.example");
        assert_eq!(c.log, "debug");
        assert_eq!(c.sessions.ttl_secs, 60);
        assert_eq!(c.xmpp.max_stanza_bytes, 1000);
        assert_eq!(c.xmpp.plain_auth, PlainAuth::Never);
        assert!(c.ws.tls);
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let env = std::iter::once(("PARLEY_HTTP_MAX_BODY_BYTES".to_string(), "lots".to_string()));
        let err = Config::from_toml_and_env("", env).unwrap_err().to_string();
        assert!(err.contains("PARLEY_HTTP_MAX_BODY_BYTES"), "{err}");
    }

    #[test]
    fn unparsable_address_names_the_variable() {
        let env = std::iter::once(("PARLEY_HTTP_ADDR".to_string(), "not-an-address".to_string()));
        let err = Config::from_toml_and_env("", env).unwrap_err().to_string();
        assert!(err.contains("PARLEY_HTTP_ADDR"), "{err}");
    }

    #[test]
    fn unknown_option_in_file_is_an_error() {
        assert!(Config::from_toml_and_env("colour = 1", no_env()).is_err());
    }

    #[test]
    fn applications_are_read_from_the_file() {
        let c = Config::from_toml_and_env(
            "[[applications]]\nid = 42\nname = \"demo\"\nauth_key = \"k\"\nauth_secret = \"s\"\n",
            no_env(),
        )
        .unwrap();
        assert_eq!(c.applications.len(), 1);
        assert!(c.applications[0].session_creates_users);
        assert!(!c.applications[0].require_signature);
    }
}
