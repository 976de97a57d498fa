//! PostgreSQL: the pool, the embedded server and its supervisor, migrations, one repository per
//! table family and the readiness check (`Health`). SQL lives only here; no business rule does,
//! and it imports only `model` and `config` (no domain service, no adapter).

pub mod apps;
pub mod archive;
pub mod blobs;
pub mod cached;
pub mod dialogs;
pub mod embedded;
mod filter;
pub mod health;
pub mod messages;
pub mod migrate;
pub mod notify;
pub mod pep;
pub mod privacy;
pub mod profile;
pub mod push;
pub mod rooms;
pub mod sessions;
pub mod stats;
pub mod supervisor;
pub mod users;
pub mod xmpp;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::config::Config;
pub use embedded::Embedded;
pub use health::Health;
pub use supervisor::Supervisor;

pub type DbPool = Pool;
/// A transaction on a pooled connection (with its statement cache).
pub type Tx<'a> = deadpool_postgres::Transaction<'a>;
pub use cached::Cached;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

impl DbError {
    /// The violated constraint's name, for mapping unique violations to field errors.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            DbError::Pg(e) => e.as_db_error().and_then(|d| d.constraint()),
            DbError::Pool(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error("invalid database.url: {0}")]
    Url(tokio_postgres::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(tokio_postgres::Error),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error("internal: {0}")]
    Internal(String),
}

/// Name of Parley's database inside the embedded cluster.
pub const EMBEDDED_DB: &str = "parley";

/// Who stops the embedded server: the server process owns it (it holds the data-dir lock, so a
/// running postmaster can only be an orphan of a killed Parley); a CLI command stops it only if
/// it started it, so it never pulls the database from under a running server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    Server,
    Command,
}

/// The database a running Parley uses, with the embedded server it must stop (if any).
pub struct Database {
    pub pool: DbPool,
    pub pg_config: tokio_postgres::Config,
    pub embedded: Option<Arc<Embedded>>,
    supervisor: Option<Supervisor>,
}

impl Database {
    /// Connects to `database.url`, or starts the embedded server; then applies migrations.
    /// A database that does not answer yet (an external one booting, an embedded one whose
    /// crashed predecessor is still exiting) is retried for `database.start_timeout_secs`.
    pub async fn open(config: &Config, ownership: Ownership) -> Result<Self, OpenError> {
        let deadline = Instant::now() + Duration::from_secs(config.database.start_timeout_secs);
        let (pg_config, embedded) = if config.embedded_database() {
            let data_dir = config.data_dir.clone();
            let db_cfg = config.database.clone();
            let (emb, started) = tokio::task::spawn_blocking(move || {
                let emb = Embedded::new(&data_dir, &db_cfg)?;
                let started = emb.start()?;
                Ok::<_, embedded::EmbeddedError>((emb, started))
            })
            .await
            .map_err(|e| OpenError::Internal(e.to_string()))??;
            let admin = emb.connect_config("postgres");
            retrying(deadline, || create_database_if_missing(&admin, EMBEDDED_DB)).await?;
            let stop_later = started || ownership == Ownership::Server;
            (
                emb.connect_config(EMBEDDED_DB),
                Some(Arc::new(emb)).filter(|_| stop_later),
            )
        } else {
            (config.database.url.parse().map_err(OpenError::Url)?, None)
        };
        let db = Database {
            pool: pool(pg_config.clone(), config.database.pool_size),
            pg_config,
            embedded,
            supervisor: None,
        };
        retrying(deadline, || db.migrate()).await?;
        Ok(db)
    }

    /// Watches the embedded server this process owns and restarts it if it dies (see
    /// [`supervisor`]); nothing to do with an external database. `on_death` runs at each death.
    pub fn supervise(&mut self, config: &Config, on_death: fn()) {
        if let (Some(emb), None) = (&self.embedded, &self.supervisor) {
            self.supervisor = Some(Supervisor::spawn(
                emb.clone(),
                self.pool.clone(),
                Duration::from_secs(config.database.restart_backoff_max_secs),
                on_death,
            ));
        }
    }

    pub async fn migrate(&self) -> Result<Vec<&'static str>, OpenError> {
        let (mut client, conn) = self
            .pg_config
            .connect(NoTls)
            .await
            .map_err(OpenError::Connect)?;
        let task = tokio::spawn(conn);
        let applied = migrate::run(&mut client).await?;
        drop(client);
        let _ = task.await;
        Ok(applied)
    }

    /// Closes the pool and stops the embedded server if this process owns one.
    pub async fn shutdown(self) {
        // First, so the supervisor does not start again the server being stopped.
        if let Some(s) = self.supervisor {
            s.stop().await;
        }
        self.pool.close();
        if let Some(emb) = self.embedded {
            match tokio::task::spawn_blocking(move || emb.stop()).await {
                Ok(Ok(())) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "stopping the embedded PostgreSQL"),
                Err(e) => tracing::error!(error = %e, "stopping the embedded PostgreSQL"),
            }
        }
    }
}

pub fn pool(pg_config: tokio_postgres::Config, size: usize) -> DbPool {
    let mgr = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // A request waits at most this long for a connection, then fails (503) instead of hanging;
    // opening one to a server that does not answer (restarting, unreachable) is bounded too.
    // Fast recycling still drops a connection whose server closed it (`is_closed`), so after a
    // PostgreSQL restart the dead connections are discarded, never handed out again.
    // `build` only fails when timeouts lack a runtime, and the runtime is set here.
    Pool::builder(mgr)
        .max_size(size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .expect("pool with tokio runtime")
}

/// Runs `attempt` until it stops failing to connect or `deadline` passes (then its last error).
async fn retrying<T, F, Fut>(deadline: Instant, mut attempt: F) -> Result<T, OpenError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OpenError>>,
{
    let mut told = false;
    loop {
        match attempt().await {
            Err(OpenError::Connect(e)) if Instant::now() < deadline => {
                if !told {
                    tracing::warn!(error = %e, "PostgreSQL does not answer yet; retrying (database.start_timeout_secs)");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// `CREATE DATABASE name` unless it exists (tolerating a concurrent creator).
pub async fn create_database_if_missing(
    admin: &tokio_postgres::Config,
    name: &str,
) -> Result<(), OpenError> {
    let (client, conn) = admin.connect(NoTls).await.map_err(OpenError::Connect)?;
    let task = tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(OpenError::Connect)?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = client.batch_execute(&sql).await {
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(OpenError::Connect(e));
            }
        }
    }
    drop(client);
    let _ = task.await;
    Ok(())
}
