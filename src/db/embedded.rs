//! The embedded PostgreSQL server: initialise, start (recovering from a crash), adopt and stop a
//! private cluster under `<data_dir>/postgres`, reachable only through a Unix socket there.
//! Knows nothing of Parley's schema.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::config::DatabaseConfig;

/// Superuser created by `initdb`; Parley connects as it over the private socket.
pub const SUPERUSER: &str = "parley";
const PORT: u16 = 5432;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in {searched}. Install them with \
         `apt-get install postgresql` (Debian/Ubuntu), set database.pg_bin_dir, or set \
         database.url (PARLEY_DATABASE_URL) to use a running server"
    )]
    NoBinaries { searched: String },
    #[error(
        "PostgreSQL refuses to run as root and the system account `{0}` does not exist: install the \
         `postgresql` package (it creates `postgres`) or set database.embedded_user"
    )]
    NoAccount(String),
    #[error(
        "the embedded PostgreSQL runs as `{account}`, which cannot enter {dir}: choose a data_dir \
         it can reach (PARLEY_DATA_DIR, e.g. /var/lib/parley) or allow it in (chmod o+x {dir})"
    )]
    Unreachable { account: String, dir: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "processes of an earlier PostgreSQL (pids {pids:?}) still run in {pgdata} after {waited} s; \
         stop them (kill them if they hang), then start Parley again"
    )]
    Leftovers {
        pids: Vec<i32>,
        pgdata: PathBuf,
        waited: u64,
    },
    #[error("{what} failed ({status}):\n{detail}")]
    Command {
        what: String,
        status: String,
        detail: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// The unprivileged account that runs PostgreSQL when Parley runs as root.
#[derive(Clone, Debug)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
pub struct Embedded {
    root: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    bin: PathBuf,
    owner: Option<Account>,
    fast: bool,
    /// How long [`Embedded::start`] keeps trying (`database.start_timeout_secs`).
    start_timeout: Duration,
}

impl Embedded {
    /// Locates binaries and the account to run as; touches nothing yet.
    pub fn new(data_dir: &Path, cfg: &DatabaseConfig) -> Result<Self, EmbeddedError> {
        let bin = find_binaries(&cfg.pg_bin_dir)?;
        // SAFETY: geteuid has no preconditions.
        let owner = if unsafe { libc::geteuid() } == 0 {
            Some(lookup_account(&cfg.embedded_user)?)
        } else {
            None
        };
        fs::create_dir_all(data_dir).map_err(io(format!("create {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io(format!("resolve {}", data_dir.display())))?;
        let root = data_dir.join("postgres");
        Ok(Self {
            pgdata: root.join("data"),
            socket_dir: root.join("run"),
            root,
            bin,
            owner,
            fast: cfg.embedded_unsafe_fast,
            start_timeout: Duration::from_secs(cfg.start_timeout_secs),
        })
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Connection settings for database `dbname` over the private socket.
    pub fn connect_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&self.socket_dir)
            .port(PORT)
            .user(SUPERUSER)
            .dbname(dbname);
        c.application_name("parley");
        c
    }

    /// Makes sure the cluster exists and runs: initialises it on first use, adopts a server
    /// already running (left by a killed Parley, or serving a running one), and clears a stale
    /// `postmaster.pid` after a crash. True when this call started the server.
    ///
    /// After a crash (a power cut, a killed postmaster) the old server's processes may still be
    /// exiting and holding its shared memory: this waits for them, and retries a failed start,
    /// for up to `database.start_timeout_secs`, then names what is in the way.
    pub fn start(&self) -> Result<bool, EmbeddedError> {
        self.prepare_dirs()?;
        if !self.pgdata.join("PG_VERSION").exists() {
            self.initdb()?;
        }
        self.write_settings()?;
        let deadline = Instant::now() + self.start_timeout;
        let mut attempt = 0;
        let mut told_waiting = false;
        loop {
            if self.running_postmaster().is_some() {
                tracing::info!(pgdata = %self.pgdata.display(), "the embedded PostgreSQL is already running; using it");
                return Ok(false);
            }
            // The postmaster is gone but some of its children are not: starting now would put a
            // second server on the same files, and removing the lock file would disarm
            // PostgreSQL's own check against that. Wait for them.
            let leftovers = self.leftover_processes();
            if !leftovers.is_empty() {
                if Instant::now() >= deadline {
                    return Err(EmbeddedError::Leftovers {
                        pids: leftovers,
                        pgdata: self.pgdata.clone(),
                        waited: self.start_timeout.as_secs(),
                    });
                }
                if !told_waiting {
                    tracing::warn!(pids = ?leftovers, "processes of a crashed embedded PostgreSQL are still exiting; waiting for them");
                    told_waiting = true;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            attempt += 1;
            self.clear_stale_lock_files();
            match self.pg_ctl_start() {
                Ok(()) => return Ok(true),
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(attempt, error = %e, "embedded PostgreSQL did not start; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn pg_ctl_start(&self) -> Result<(), EmbeddedError> {
        let log = self.root.join("log").join("postgresql.log");
        let out = self
            .pg_command("pg_ctl")
            .arg("start")
            .arg("-w")
            .args(["-t", "60"])
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&log)
            .output()
            .map_err(io("run pg_ctl start"))?;
        if !out.status.success() {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            return Err(command_error("pg_ctl start", &out, &tail));
        }
        Ok(())
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, committed data is safe).
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        if self.running_postmaster().is_none() {
            return Ok(());
        }
        let out = self
            .pg_command("pg_ctl")
            .arg("stop")
            .args(["-m", "fast", "-w", "-t", "60"])
            .arg("-D")
            .arg(&self.pgdata)
            .output()
            .map_err(io("run pg_ctl stop"))?;
        if !out.status.success() {
            return Err(command_error("pg_ctl stop", &out, ""));
        }
        Ok(())
    }

    /// The pid of a live postmaster serving this data directory, if any.
    pub fn running_postmaster(&self) -> Option<i32> {
        let text = fs::read_to_string(self.pgdata.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let dir = text.lines().nth(1)?.trim();
        if Path::new(dir) != self.pgdata || !is_postgres_process(pid) {
            return None;
        }
        Some(pid)
    }

    /// Server processes (postmaster or children) still working in this data directory while no
    /// live postmaster owns it: a crashed server's backends on their way out. PostgreSQL's
    /// processes run with the data directory as their working directory.
    fn leftover_processes(&self) -> Vec<i32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| is_postgres_process(pid))
            .filter(|pid| {
                fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == self.pgdata)
            })
            .collect()
    }

    fn prepare_dirs(&self) -> Result<(), EmbeddedError> {
        for dir in [&self.root, &self.socket_dir, &self.root.join("log")] {
            fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
            self.give_to_owner(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io(format!("chmod {}", dir.display())))?;
        }
        if let Some(owner) = &self.owner {
            for dir in self.root.ancestors().skip(1) {
                let Ok(meta) = fs::metadata(dir) else {
                    continue;
                };
                let enterable = meta.mode() & 0o001 != 0
                    || (meta.uid() == owner.uid && meta.mode() & 0o100 != 0)
                    || (meta.gid() == owner.gid && meta.mode() & 0o010 != 0);
                if !enterable {
                    return Err(EmbeddedError::Unreachable {
                        account: owner.name.clone(),
                        dir: dir.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    fn initdb(&self) -> Result<(), EmbeddedError> {
        tracing::info!(pgdata = %self.pgdata.display(), "initialising the embedded PostgreSQL cluster");
        let out = self
            .pg_command("initdb")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .output()
            .map_err(io("run initdb"))?;
        if !out.status.success() {
            return Err(command_error("initdb", &out, ""));
        }
        let conf = self.pgdata.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(io("read postgresql.conf"))?;
        text.push_str(
            "\n# Parley's settings, rewritten at every start.\ninclude_if_exists = 'parley.conf'\n",
        );
        fs::write(&conf, text).map_err(io("write postgresql.conf"))
    }

    fn write_settings(&self) -> Result<(), EmbeddedError> {
        let quote = |p: &Path| p.display().to_string().replace('\'', "''");
        let mut s = format!(
            "listen_addresses = ''\nport = {PORT}\nunix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\nmax_connections = 300\n",
            quote(&self.socket_dir)
        );
        if self.fast {
            s.push_str("fsync = off\nfull_page_writes = off\n");
        }
        let path = self.pgdata.join("parley.conf");
        fs::write(&path, s).map_err(io("write parley.conf"))?;
        self.give_to_owner(&path)
    }

    /// Removes lock files whose owner process is gone, so PostgreSQL starts after a crash even
    /// when the recorded pid now belongs to an unrelated process.
    fn clear_stale_lock_files(&self) {
        let pid_file = self.pgdata.join("postmaster.pid");
        if pid_file.exists() {
            tracing::warn!("removing a stale postmaster.pid left by a crash");
            let _ = fs::remove_file(pid_file);
        }
        let _ = fs::remove_file(self.socket_dir.join(format!(".s.PGSQL.{PORT}.lock")));
        let _ = fs::remove_file(self.socket_dir.join(format!(".s.PGSQL.{PORT}")));
    }

    fn give_to_owner(&self, path: &Path) -> Result<(), EmbeddedError> {
        if let Some(o) = &self.owner {
            std::os::unix::fs::chown(path, Some(o.uid), Some(o.gid)).map_err(io(format!(
                "chown {} to {}",
                path.display(),
                o.name
            )))?;
        }
        Ok(())
    }

    fn pg_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(&self.root)
            .env_remove("PGDATA")
            .env("LC_ALL", "C");
        if let Some(o) = &self.owner {
            cmd.uid(o.uid).gid(o.gid);
        }
        cmd
    }
}

fn command_error(what: &str, out: &Output, extra: &str) -> EmbeddedError {
    let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        detail = format!("{}\n{detail}", stdout.trim());
    }
    if !extra.is_empty() {
        detail = format!("{detail}\n--- server log ---\n{extra}");
    }
    EmbeddedError::Command {
        what: what.into(),
        status: out.status.to_string(),
        detail,
    }
}

fn is_postgres_process(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // /proc/<pid>/comm is "postgres" for the postmaster and its children (any owner).
    let named = match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => matches!(comm.trim(), "postgres" | "postmaster"),
        Err(_) => false,
    };
    // A killed process stays listed (a zombie) until its parent reaps it, and a daemonised
    // postmaster's parent may be slow to (or, as PID 1 of some containers, never): it is dead.
    named && !is_dead(pid)
}

/// The process has exited and only its entry remains (state Z or X in `/proc/<pid>/stat`).
fn is_dead(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command name, which is in parentheses and may contain any byte.
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .and_then(|rest| rest.split_whitespace().next());
    matches!(state, Some("Z" | "X" | "x"))
}

fn find_binaries(configured: &str) -> Result<PathBuf, EmbeddedError> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if !configured.trim().is_empty() {
        let d = PathBuf::from(configured.trim());
        return if has(&d) {
            Ok(d)
        } else {
            Err(EmbeddedError::NoBinaries {
                searched: d.display().to_string(),
            })
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| has(d)) {
            return Ok(d);
        }
    }
    Err(EmbeddedError::NoBinaries {
        searched: "/usr/lib/postgresql/*/bin and PATH".into(),
    })
}

fn lookup_account(name: &str) -> Result<Account, EmbeddedError> {
    let c = CString::new(name).map_err(|_| EmbeddedError::NoAccount(name.into()))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy out at once and
    // this runs before any other thread of ours calls getpw*.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(EmbeddedError::NoAccount(name.into()));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    if uid == 0 {
        return Err(EmbeddedError::NoAccount(name.into()));
    }
    Ok(Account {
        name: name.into(),
        uid,
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a killed postmaster that its parent has not reaped yet (a zombie, still listed
    /// in /proc with its name) was taken for a running server and "adopted", so the start after
    /// a crash failed to connect.
    #[test]
    fn a_killed_but_unreaped_postmaster_is_not_running() {
        let dir = std::env::temp_dir().join(format!("parley-zombie-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // A process whose name is "postgres", like a postmaster.
        let exe = dir.join("postgres");
        fs::copy("/bin/sleep", &exe).unwrap();
        let mut child = Command::new(&exe).arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(is_postgres_process(pid), "a live postgres is running");
        // SAFETY: signalling our own child; it stays a zombie until `wait` below.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_dead(pid) {
            assert!(Instant::now() < deadline, "the child did not die");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "still listed");
        assert!(
            !is_postgres_process(pid),
            "a zombie is not a running server"
        );
        let _ = child.wait();
        let _ = fs::remove_dir_all(&dir);
    }
}
