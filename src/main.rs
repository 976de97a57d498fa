//! The `parley` command: `serve` (default), `migrate`, `app create|list`, `config defaults`,
//! and the operator's `user …`, `session kick`, `stats` (their logic is in `ops::commands`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use parley::config::Config;
use parley::db::{Database, Ownership};
use parley::identity::apps::{self, NewApp};
use parley::identity::Identity;
use parley::model::Clock;
use parley::ops;

#[derive(Parser)]
#[command(
    name = "parley",
    version,
    about = "Self-hostable chat server speaking the ConnectyCube Chat API"
)]
struct Cli {
    /// Configuration file (TOML); every option can also come from PARLEY_* variables.
    #[arg(long, global = true, env = "PARLEY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage applications.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage users: list, show, delete, ban, unban.
    User {
        /// Print JSON (for scripts) instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ops::commands::UserCommand,
    },
    /// Manage live sessions: kick a user.
    Session {
        /// Print JSON (for scripts) instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ops::commands::SessionCommand,
    },
    /// Database counts, and the live numbers of the running server (its admin listener).
    Stats {
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an application and print its credentials as JSON.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        id: Option<i64>,
        #[arg(long)]
        auth_key: Option<String>,
        #[arg(long)]
        auth_secret: Option<String>,
        /// Refuse POST /session without a valid signature.
        #[arg(long)]
        require_signature: bool,
        /// Dialog extension fields to allow, comma-separated (at most 3).
        #[arg(long, value_delimiter = ',')]
        extensions: Vec<String>,
    },
    /// Set the dialog extension fields an application allows (replaces the list; none clears it).
    SetExtensions {
        #[arg(long)]
        id: i64,
        /// Comma-separated field names, at most 3.
        #[arg(value_delimiter = ',')]
        fields: Vec<String>,
    },
    /// List applications as JSON.
    List,
    /// Set an application's push credentials (each option replaces only its own part).
    SetPush {
        #[arg(long)]
        id: i64,
        /// FCM: the Firebase service-account JSON file.
        #[arg(long)]
        fcm_service_account: Option<PathBuf>,
        /// APNs: the token-signing key (.p8 file).
        #[arg(long)]
        apns_key: Option<PathBuf>,
        /// APNs: the key's id (10 characters).
        #[arg(long)]
        apns_key_id: Option<String>,
        /// APNs: the team id.
        #[arg(long)]
        apns_team_id: Option<String>,
        /// APNs: the app's bundle id (the `apns-topic`; `.voip` is added for VoIP pushes).
        #[arg(long)]
        apns_topic: Option<String>,
        /// Web Push: generate a new VAPID key pair (prints the public key for the web app).
        #[arg(long)]
        vapid_generate: bool,
    },
    /// Set the chat-alert text: placeholders {sender_name} {text} {dialog_name} {dialog_id}
    /// {message_id} {sender_id}. No template restores the default "{sender_name}: {text}".
    SetAlertTemplate {
        #[arg(long)]
        id: i64,
        template: Option<String>,
    },
    /// Set the webhook: signed JSON POSTs of the chosen events to the app's backend.
    SetWebhook {
        #[arg(long)]
        id: i64,
        /// The URL (https, or http on a private network); empty removes the webhook.
        #[arg(long)]
        url: String,
        /// The HMAC-SHA256 key of `X-Parley-Signature`.
        #[arg(long, default_value = "")]
        secret: String,
        /// Comma-separated: message.created, message.updated, message.deleted, dialog.created,
        /// dialog.updated, dialog.deleted, user.online, user.offline.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the commented default configuration.
    Defaults,
    /// Check a configuration file (with the PARLEY_* environment applied) without starting:
    /// syntax, option names and values, certificate files. Exit 0 when it is usable.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or journals.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    keep_large_allocations_returnable();
    let cli = Cli::parse();
    if let Some(Command::Config {
        command: ConfigCommand::Defaults,
    }) = cli.command
    {
        print!("{}", parley::config::DEFAULT_TOML);
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Config {
        command: ConfigCommand::Check { file },
    }) = &cli.command
    {
        return check_config(file);
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parley: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("parley: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => parley::server::run(config).await,
            Command::Migrate => with_db(&config, |_| async { Ok(()) }).await,
            Command::App { command } => app_command(&config, command).await,
            Command::User { json, command } => {
                with_identity(&config, |id| async move {
                    ops::commands::user(&id, command).await?.print(json);
                    Ok(())
                })
                .await
            }
            Command::Session { json, command } => {
                with_identity(&config, |id| async move {
                    ops::commands::session(&id, command).await?.print(json);
                    Ok(())
                })
                .await
            }
            Command::Stats { json } => {
                let admin = config.admin.addr;
                with_db(&config, |pool| async move {
                    ops::commands::stats(&pool, &Clock::new(), admin)
                        .await?
                        .print(json);
                    Ok(())
                })
                .await
            }
            Command::Config { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

/// `parley config check FILE`: everything `serve` would refuse at start-up, without starting.
fn check_config(file: &std::path::Path) -> ExitCode {
    let config = match Config::load(Some(file)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parley: {e}");
            return ExitCode::from(2);
        }
    };
    let mut problems = config.problems();
    let (cert, key) = (&config.xmpp.cert_file, &config.xmpp.key_file);
    if !cert.is_empty() && !key.is_empty() {
        let loaded = parley::xmpp::stream::tls::acceptor(cert.as_ref(), key.as_ref());
        if let Err(e) = loaded {
            problems.push(format!("xmpp.cert_file / xmpp.key_file: {e}"));
        }
    }
    if problems.is_empty() {
        println!("{}: ok", file.display());
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("{}: {p}", file.display());
        }
        ExitCode::from(2)
    }
}

/// Opens (and migrates) the database, runs `f`, and stops an embedded server it started.
async fn with_db<F, Fut>(config: &Config, f: F) -> Result<(), BoxError>
where
    F: FnOnce(parley::db::DbPool) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    let db = Database::open(config, Ownership::Command).await?;
    let result = f(db.pool.clone()).await;
    db.shutdown().await;
    result
}

/// Like [`with_db`], with the identity service the account commands go through.
async fn with_identity<F, Fut>(config: &Config, f: F) -> Result<(), BoxError>
where
    F: FnOnce(Identity) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    let (sessions, passwords) = (config.sessions.clone(), config.passwords.clone());
    with_db(config, |pool| {
        f(Identity::new(pool, Clock::new(), sessions, passwords))
    })
    .await
}

async fn app_command(config: &Config, command: AppCommand) -> Result<(), BoxError> {
    with_db(config, |pool| async move {
        let clock = Clock::new();
        match command {
            AppCommand::SetExtensions { id, fields } => {
                apps::set_dialog_extensions(&pool, &clock, parley::model::AppId(id), fields.clone()).await?;
                println!("{}", serde_json::json!({"application_id": id, "dialog_extensions": fields}));
            }
            AppCommand::Create { name, id, auth_key, auth_secret, require_signature, extensions } => {
                let new = NewApp { name, id, auth_key, auth_secret, require_signature, dialog_extensions: extensions };
                let app = apps::create(&pool, &clock, new).await?;
                let json = serde_json::json!({
                    "application_id": app.id,
                    "name": app.name,
                    "auth_key": app.auth_key,
                    "auth_secret": app.auth_secret,
                    "require_signature": app.require_signature,
                    "dialog_extensions": app.dialog_extensions,
                });
                println!("{json:#}");
            }
            AppCommand::SetPush { id, fcm_service_account, apns_key, apns_key_id, apns_team_id, apns_topic, vapid_generate } => {
                let app = known_app(&pool, id).await?;
                let account = match fcm_service_account {
                    Some(f) => {
                        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?)
                            .map_err(|e| format!("{}: not JSON: {e}", f.display()))?;
                        parley::push::check_service_account(&v)?;
                        Some(v)
                    }
                    None => None,
                };
                let key = match apns_key {
                    Some(f) => {
                        let pem = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                        parley::push::check_apns_key(&pem)?;
                        Some(pem)
                    }
                    None => None,
                };
                let vapid = if vapid_generate { Some(parley::push::webpush::generate_vapid()?) } else { None };
                let s = parley::push::update_settings(&pool, app, |s| {
                    if account.is_some() { s.fcm_service_account = account; }
                    if key.is_some() { s.apns_key = key; }
                    if apns_key_id.is_some() { s.apns_key_id = apns_key_id; }
                    if apns_team_id.is_some() { s.apns_team_id = apns_team_id; }
                    if apns_topic.is_some() { s.apns_topic = apns_topic; }
                    if let Some((private, public)) = vapid {
                        s.vapid_private_key = Some(private);
                        s.vapid_public_key = Some(public);
                    }
                    Ok(())
                }).await?;
                println!("{:#}", serde_json::json!({
                    "application_id": id,
                    "fcm": s.fcm_service_account.as_ref().and_then(|v| v.get("project_id")).cloned(),
                    "apns": s.apns_key.is_some() && s.apns_key_id.is_some() && s.apns_team_id.is_some(),
                    "apns_key_id": s.apns_key_id, "apns_team_id": s.apns_team_id, "apns_topic": s.apns_topic,
                    "vapid_public_key": s.vapid_public_key,
                }));
            }
            AppCommand::SetAlertTemplate { id, template } => {
                let app = known_app(&pool, id).await?;
                let template = template.filter(|t| !t.trim().is_empty());
                if template.as_ref().is_some_and(|t| t.len() > 1024) {
                    return Err("the template is longer than 1024 bytes".into());
                }
                let s = parley::push::update_settings(&pool, app, |s| { s.alert_template = template; Ok(()) }).await?;
                println!("{}", serde_json::json!({"application_id": id, "alert_template": s.alert_template.as_deref().unwrap_or(parley::push::payload::DEFAULT_TEMPLATE)}));
            }
            AppCommand::SetWebhook { id, url, secret, events } => {
                let app = known_app(&pool, id).await?;
                let url = url.trim().to_owned();
                if !url.is_empty() {
                    let ok = url.parse::<hyper::Uri>().ok().is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
                    if !ok { return Err(format!("--url {url}: not an http(s) URL").into()); }
                    if secret.len() < 16 { return Err("--secret: at least 16 characters".into()); }
                }
                let events: Vec<String> = events.into_iter().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
                if let Some(bad) = events.iter().find(|e| !parley::push::webhook::EVENTS.contains(&e.as_str())) {
                    return Err(format!("--events: unknown event {bad} (one of {})", parley::push::webhook::EVENTS.join(", ")).into());
                }
                let s = parley::push::update_settings(&pool, app, |s| {
                    if url.is_empty() {
                        s.webhook_url = None; s.webhook_secret = None; s.webhook_events = Vec::new();
                    } else {
                        s.webhook_url = Some(url); s.webhook_secret = Some(secret); s.webhook_events = events;
                    }
                    Ok(())
                }).await?;
                println!("{}", serde_json::json!({"application_id": id, "webhook_url": s.webhook_url, "webhook_events": s.webhook_events}));
            }
            AppCommand::List => {
                let list: Vec<_> = parley::db::apps::list(&pool)
                    .await?
                    .into_iter()
                    .map(|a| serde_json::json!({"application_id": a.id, "name": a.name, "auth_key": a.auth_key, "require_signature": a.require_signature}))
                    .collect();
                println!("{:#}", serde_json::Value::Array(list));
            }
        }
        Ok(())
    })
    .await
}

/// The application `id`, or an error naming it.
async fn known_app(pool: &parley::db::DbPool, id: i64) -> Result<parley::model::AppId, BoxError> {
    match parley::db::apps::get(pool, parley::model::AppId(id)).await? {
        Some(a) => Ok(a.id),
        None => Err(format!("no application {id}").into()),
    }
}

/// glibc raises its mmap threshold each time a large block is freed, after which blocks that
/// size (argon2's 19 MiB working memory, one per password check) come from per-thread arenas
/// and stay resident after use: a burst of password logins left a gigabyte behind. A fixed
/// threshold keeps every block of 1 MiB or more mapped on its own and returned when freed.
fn keep_large_allocations_returnable() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
