//! Wiring: opens the database, syncs applications, builds the services (identity, chat, hub,
//! readiness) and hands each adapter only the ones it needs, binds the listeners, runs until
//! SIGINT or SIGTERM, then stops accepting, drains and stops the embedded database. No request
//! logic.

use std::error::Error;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chat::{Chat, Events};
use crate::config::Config;
use crate::db::{Database, DbPool, Health, Ownership};
use crate::hub::Hub;
use crate::identity::{self, Identity};
use crate::model::Clock;
use crate::ops;
use crate::rest;
use crate::xmpp::{self, ListenerKind};

/// A running server: its bound addresses and the means to stop it.
pub struct Server {
    pub http_addr: SocketAddr,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin_addr: SocketAddr,
    /// The chat service, whose events the real-time layer (and tests) subscribe to.
    pub chat: Chat,
    /// XMPP client-to-server (STARTTLS).
    pub xmpp_addr: SocketAddr,
    /// XMPP direct TLS.
    pub xmpp_tls_addr: SocketAddr,
    /// XMPP over WebSocket.
    pub ws_addr: SocketAddr,
    /// The live session registry (REST → XMPP fan-out goes through `Hub::deliver_to_user`).
    pub hub: Arc<Hub>,
    /// The storage API's service (its cleanup of unfinished uploads is also run by a loop).
    pub files: crate::files::Files,
    /// The XMPP listeners' certificate, read again by `reload_tls`.
    tls: Arc<xmpp::stream::tls::ReloadableTls>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Sets this server's pool and hub gauges at each scrape; unregistered when dropped.
    _gauges: ops::telemetry::SamplerGuard,
}

impl Server {
    /// Binds every listener and starts serving on an open, migrated database.
    pub async fn start(config: Arc<Config>, pool: DbPool, clock: Clock) -> std::io::Result<Server> {
        let identity = Identity::new(
            pool.clone(),
            clock.clone(),
            config.sessions.clone(),
            config.passwords.clone(),
        );
        // Revocations (logout, password change, deletion) close live streams through the hub.
        let hub = Arc::new(Hub::new());
        identity.set_revoker(hub.clone());
        // One node of several: joined before anything serves, so no session goes unannounced.
        let cluster = join_cluster(&config, &hub).await?;
        let chat = Chat::new(
            pool.clone(),
            clock.clone(),
            identity.clone(),
            Events::new(),
            config.chat.clone(),
            Duration::from_secs(config.push.credentials_cache_secs),
        );
        let listener = rest::bind(config.http.addr).await?;
        let http_addr = listener.local_addr()?;
        let admin_listener = ops::admin::bind(config.admin.addr).await?;
        let admin_addr = admin_listener.local_addr()?;
        // Installed before anything records, so no early sample is lost.
        ops::telemetry::handle();
        let gauges = sample_gauges(pool.clone(), hub.clone());
        let xmpp_listeners = xmpp::bind(&config).await?;
        let xmpp_addr = xmpp_listeners.xmpp.local_addr()?;
        let xmpp_tls_addr = xmpp_listeners.xmpp_tls.local_addr()?;
        let ws_addr = xmpp_listeners.ws.local_addr()?;
        let tls = Arc::new(xmpp::load_tls(&config).map_err(std::io::Error::other)?);
        let store =
            crate::storage::Store::open(&config, http_addr).map_err(std::io::Error::other)?;
        let files = crate::files::Files::new(
            pool.clone(),
            clock.clone(),
            chat.clone(),
            store,
            config.storage.clone(),
            config.applications.clone(),
            crate::storage::public_base(&config, http_addr),
        );
        let services = Arc::new(xmpp::Services {
            config: config.clone(),
            identity: identity.clone(),
            pool: pool.clone(),
            clock: clock.clone(),
            hub: hub.clone(),
            chat: chat.clone(),
            dispatch: xmpp::dispatch::table(),
            tls: tls.acceptor(),
            privacy: xmpp::ext::privacy::PrivacyCache::new(),
            conns: crate::limits::ConnLimiter::new(
                config.xmpp.max_connections,
                config.xmpp.max_connections_per_ip,
            ),
            refusals: Arc::new(tokio::sync::Semaphore::new(xmpp::REFUSALS_IN_FLIGHT)),
            registrations: crate::limits::KeyedLimiter::per_hour(
                config.xmpp.registrations_per_hour_per_ip,
                config.http.rate_limit_max_keys,
            ),
            server_iqs: xmpp::server_iq::ServerIqs::new(config.xmpp.caps_cache_max),
            caps: xmpp::ext::pep::caps::Cache::new(config.xmpp.caps_cache_max),
            files: files.clone(),
        });
        let ws_kind = ListenerKind::WebSocket { tls: config.ws.tls };
        let rest_limits = rest::RestLimits::new(&config.http);
        let admin = Arc::new(ops::admin::AdminState {
            cluster: cluster.as_ref().map(|(c, _)| c.clone()),
            health: Health::new(pool.clone()),
            live: ops::stats::Live {
                hub: hub.clone(),
                rest_conns: rest_limits.conns.clone(),
                xmpp_conns: services.conns.clone(),
                started: std::time::Instant::now(),
            },
        });
        let push = crate::push::Push::new(pool.clone(), clock.clone(), config.push.clone());
        let push_workers = Arc::new(crate::push::Workers::new(
            pool.clone(),
            clock.clone(),
            config.push.clone(),
            hub.clone(),
            &config.domain,
        ));
        let run_push_workers = config.push.workers_enabled;
        let depth_every = Duration::from_secs(config.push.depth_sample_secs);
        let depth_pool = pool.clone();
        let state = Arc::new(rest::State {
            limits: rest_limits,
            push,
            config,
            health: Health::new(pool),
            identity: identity.clone(),
            chat: chat.clone(),
            files: files.clone(),
            routes: rest::router::table(),
        });
        let (tx, rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(rest::serve(listener, state, rx.clone())),
            tokio::spawn(ops::admin::serve(admin_listener, admin, rx.clone())),
            tokio::spawn(xmpp::serve(
                xmpp_listeners.xmpp,
                ListenerKind::Starttls,
                services.clone(),
                rx.clone(),
            )),
            tokio::spawn(xmpp::serve(
                xmpp_listeners.xmpp_tls,
                ListenerKind::DirectTls,
                services.clone(),
                rx.clone(),
            )),
            supervise("REST → XMPP fan-out", rx.clone(), {
                let (services, chat, rx) = (services.clone(), chat.clone(), rx.clone());
                move || xmpp::fanout::run(services.clone(), chat.events().subscribe(), rx.clone())
            }),
            tokio::spawn(xmpp::serve(
                xmpp_listeners.ws,
                ws_kind,
                services.clone(),
                rx.clone(),
            )),
            supervise("room membership events", rx.clone(), {
                let (services, chat, rx) = (services.clone(), chat.clone(), rx.clone());
                move || {
                    xmpp::ext::muc::watch_events(
                        services.clone(),
                        chat.events().subscribe(),
                        rx.clone(),
                    )
                }
            }),
            supervise("unfinished uploads cleanup", rx.clone(), {
                let (files, rx) = (files.clone(), rx.clone());
                move || files.clone().cleanup_loop(rx.clone())
            }),
            tokio::spawn(purge_loop(identity, rx.clone())),
        ];
        let mut tasks = tasks;
        tasks.push(supervise("push outbox depth", rx.clone(), {
            let rx = rx.clone();
            move || crate::push::sample_depth(depth_pool.clone(), depth_every, rx.clone())
        }));
        if let Some((cluster, inbox)) = cluster {
            cluster.set_local(xmpp::cluster::Node::new(&services));
            tasks.push(tokio::spawn(cluster.run(hub.clone(), inbox, rx.clone())));
            tasks.push(supervise("cluster notices", rx.clone(), {
                let (services, chat, rx) = (services.clone(), chat.clone(), rx.clone());
                move || {
                    xmpp::cluster::forward_events(
                        services.clone(),
                        chat.events().subscribe(),
                        rx.clone(),
                    )
                }
            }));
        }
        if run_push_workers {
            tasks.push(supervise("push outbox", rx.clone(), {
                let (workers, rx) = (push_workers, rx);
                move || workers.clone().run(rx.clone())
            }));
        }
        Ok(Server {
            http_addr,
            admin_addr,
            chat,
            xmpp_addr,
            xmpp_tls_addr,
            ws_addr,
            hub,
            files,
            tls,
            shutdown: tx,
            tasks,
            _gauges: gauges,
        })
    }

    /// Reads the XMPP certificate files again: new connections get the new certificate, open
    /// ones carry on. False (and logged) when the files do not load; the old one stays.
    pub fn reload_tls(&self) -> bool {
        xmpp::reload_tls(&self.tls)
    }

    /// Closes the live streams other processes revoke (`parley session kick`, `parley user
    /// ban|delete`, a logout or password change on another node): their notices arrive over PostgreSQL `LISTEN` on a
    /// dedicated connection to `pg`, opened again with backoff when it drops.
    pub fn listen_for_revocations(&mut self, pg: tokio_postgres::Config) {
        let hub = self.hub.clone();
        let listener = crate::db::notify::listen(
            pg,
            crate::db::notify::REVOKE_CHANNEL,
            self.shutdown.subscribe(),
            move |notice| match identity::Revocation::from_notice(notice) {
                Some(r) => identity::Revoker::revoke(hub.as_ref(), &r),
                None => tracing::warn!(notice, "unreadable revocation notice ignored"),
            },
        );
        self.tasks.push(tokio::spawn(listener));
    }

    /// Stops accepting, lets in-flight requests finish (bounded by config), and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// With `cluster.nats_url` set: connects this node to NATS (waiting up to 2 s for it; a NATS
/// not up yet is retried in the background and the node starts degraded) and makes the hub a
/// node of the cluster. `None` on a single node.
async fn join_cluster(
    config: &Config,
    hub: &Arc<Hub>,
) -> std::io::Result<
    Option<(
        Arc<crate::hub::cluster::Cluster>,
        tokio::sync::mpsc::Receiver<bytes::Bytes>,
    )>,
> {
    use crate::hub::{bus, cluster};
    let c = &config.cluster;
    if !c.enabled() {
        return Ok(None);
    }
    let node = c.node();
    let limits = bus::Limits {
        max_message_bytes: c.max_message_bytes,
        send_queue: c.send_queue,
        receive_queue: c.receive_queue,
    };
    let attached = bus::nats::connect(
        &c.nats_url,
        bus::nats::Subjects::new(&c.name),
        &node,
        limits,
        Duration::from_secs(2),
    )
    .await
    .map_err(std::io::Error::other)?;
    let settings = cluster::Settings {
        node: node.clone(),
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        node_timeout: Duration::from_millis(c.node_timeout_ms),
        max_message_bytes: c.max_message_bytes,
        max_remote_sessions: c.max_remote_sessions,
        max_nodes: c.max_nodes,
        max_remote_occupants: c.max_remote_occupants,
        max_room_presence_bytes: config.xmpp.room_presence_max_bytes,
        room_presence_slack: cluster::room_presence_slack(
            &config.domain,
            crate::chat::rooms::MAX_SUBJECT,
        ),
    };
    let cl = cluster::Cluster::new(settings, attached.bus);
    hub.join_cluster(cl.clone());
    tracing::info!(node, cluster = %c.name, connected = cl.is_up(), "cluster node");
    Ok(Some((cl, attached.inbox)))
}

/// The gauges read at scrape time: the database pool's counts and the hub's sizes. Each is a
/// lock and a length (the hub's session count walks its users), paid once per scrape instead of
/// on every checkout, connection or join. With several servers in one process (tests) the last
/// registered wins; a deployment runs one.
fn sample_gauges(pool: DbPool, hub: Arc<Hub>) -> ops::telemetry::SamplerGuard {
    use ops::telemetry as t;
    t::on_scrape(move || {
        let s = pool.status();
        metrics::gauge!(t::DB_POOL_MAX).set(s.max_size as f64);
        metrics::gauge!(t::DB_POOL_CONNECTIONS).set(s.size as f64);
        metrics::gauge!(t::DB_POOL_AVAILABLE).set(s.available as f64);
        metrics::gauge!(t::DB_POOL_WAITING).set(s.waiting as f64);
        let (users, sessions) = hub.counts();
        metrics::gauge!(t::HUB_USERS_ONLINE).set(users as f64);
        metrics::gauge!(t::HUB_SESSIONS).set(sessions as f64);
        metrics::gauge!(t::HUB_ROOMS).set(hub.rooms.live() as f64);
    })
}

/// Deletes expired sessions and spent nonces every ten minutes.
/// Runs a server-wide background loop and starts it again if it panics, so one bad event cannot
/// stop delivery for every connection (a panic is logged; the loop's subscription restarts from
/// the next event). Ends when the loop returns (shutdown).
fn supervise<F, Fut>(
    name: &'static str,
    shutdown: watch::Receiver<bool>,
    start: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(start()).await {
                Err(e) if e.is_panic() && !*shutdown.borrow() => {
                    tracing::error!(task = name, "background task panicked; restarting it");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => return,
            }
        }
    })
}

async fn purge_loop(identity: Identity, mut shutdown: watch::Receiver<bool>) {
    loop {
        match identity.purge_expired().await {
            Ok((s, n)) if s + n > 0 => tracing::debug!(sessions = s, nonces = n, "purged expired"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging expired sessions"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// `parley serve`: runs until a signal.
pub async fn run(config: Config) -> Result<(), Box<dyn Error>> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    raise_open_file_limit();
    let clock = Clock::new();
    let mut db = Database::open(&config, Ownership::Server).await?;
    // The embedded PostgreSQL is restarted if it dies while we serve.
    db.supervise(&config, || {
        metrics::counter!(ops::telemetry::DB_EMBEDDED_RESTARTS).increment(1)
    });
    let result = serve_until_signal(&config, &db, clock).await;
    db.shutdown().await;
    result
}

async fn serve_until_signal(
    config: &Arc<Config>,
    db: &Database,
    clock: Clock,
) -> Result<(), Box<dyn Error>> {
    identity::apps::sync_config(&db.pool, &clock, &config.applications).await?;
    let dev_app = identity::apps::ensure_dev_app(&db.pool, &clock, &config.data_dir).await?;
    // Registered before anything listens: SIGHUP's default action would end the process.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut server = Server::start(config.clone(), db.pool.clone(), clock).await?;
    server.listen_for_revocations(db.pg_config.clone());
    tracing::info!(addr = %server.http_addr, "REST API listening");
    tracing::info!(addr = %server.admin_addr, "admin listener (metrics, probes)");
    tracing::info!(
        xmpp = %server.xmpp_addr,
        xmpp_tls = %server.xmpp_tls_addr,
        ws = %server.ws_addr,
        "XMPP listening"
    );
    announce(config, server.http_addr, dev_app.as_ref());
    println!(
        "XMPP: {} (STARTTLS)  {} (TLS)  {}://{} (WebSocket)",
        server.xmpp_addr,
        server.xmpp_tls_addr,
        if config.ws.tls { "wss" } else { "ws" },
        server.ws_addr
    );
    let reload = async {
        // `None` only when the signal driver is gone: nothing left to reload for.
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the TLS certificate");
            server.reload_tls();
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = reload => {}
    }
    tracing::info!("shutting down: draining requests");
    server.shutdown().await;
    Ok(())
}

fn announce(config: &Config, http: SocketAddr, created: Option<&crate::model::Application>) {
    let file = config.data_dir.join(identity::apps::DEV_APP_FILE);
    if let Some(app) = created {
        println!(
            "\nCreated a development application (saved in {}):\n  application_id: {}\n  auth_key:       {}\n  auth_secret:    {}\n\n\
             Try it:\n  curl -s -X POST http://{http}/session -H 'Content-Type: application/json' \\\n    \
             -d '{{\"application_id\": {}, \"auth_key\": \"{}\"}}'\n",
            file.display(),
            app.id,
            app.auth_key,
            app.auth_secret,
            app.id,
            app.auth_key
        );
    } else if file.exists() {
        println!("Development application credentials: {}", file.display());
    }
    println!(
        "Parley is up: REST http://{http}  (chat domain: {})",
        config.domain
    );
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Every connection holds a file descriptor, and many hosts start services with a soft limit of
/// 1,024: take the whole hard limit (what the administrator allowed) and say what it is.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    tracing::info!(
        open_files = lim.rlim_cur,
        "open-file limit (bounds concurrent connections)"
    );
    if lim.rlim_cur < 65_536 {
        tracing::warn!(
            open_files = lim.rlim_cur,
            "open-file limit below 65,536: raise LimitNOFILE (systemd) or `ulimit -Hn` to serve more connections"
        );
    }
}

/// One server per data directory: a second one would fight over the embedded database.
fn lock_data_dir(dir: &Path) -> Result<File, Box<dyn Error>> {
    let path = dir.join("parley.lock");
    let file = File::create(&path)?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(format!(
            "another Parley server is running with data directory {}",
            dir.display()
        )
        .into());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_background_loop_that_panics_is_started_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (_tx, rx) = watch::channel(false);
        let task = supervise("test loop", rx, {
            let runs = runs.clone();
            move || {
                let runs = runs.clone();
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("a bad event");
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the supervisor ends when the loop returns")
            .expect("the supervisor itself does not panic");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_loop_that_panics_after_shutdown_is_not_started_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = watch::channel(false);
        tx.send(true).unwrap();
        let task = supervise("test loop", rx, {
            let runs = runs.clone();
            move || {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    panic!("while shutting down");
                }
            }
        });
        task.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
