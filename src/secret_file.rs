//! Files holding secrets (the development TLS key, the development application's auth secret):
//! created readable by the owner only (mode 0600) from the first byte — never written first and
//! restricted after — and restricted again when found with a wider mode on start.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of a secret file: read and write for the owner, nothing for anyone else.
pub const MODE: u32 = 0o600;

/// Writes `contents` to `path`, created with mode 0600. An existing file is restricted to
/// 0600 before it is truncated and rewritten.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(MODE)
        .open(path)?;
    // `mode` applies only when the file is created: a file already there keeps its own.
    f.set_permissions(Permissions::from_mode(MODE))?;
    f.set_len(0)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Restricts an existing secret file to 0600 when group or others may access it (a file left
/// by an older version); says so in the log. A missing file is not an error.
pub fn restrict(path: &Path) -> io::Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        fs::set_permissions(path, Permissions::from_mode(MODE))?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{mode:o}"),
            "a secret file could be read by others: restricted it to 0600"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("parley-secret-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_new_secret_file_is_created_0600() {
        let dir = scratch("new");
        let p = dir.join("key.pem");
        write(&p, b"secret").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rewriting_a_world_readable_file_restricts_it_first() {
        let dir = scratch("rewrite");
        let p = dir.join("key.pem");
        fs::write(&p, b"old, much longer contents").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        write(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"new");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn restrict_fixes_a_wide_mode_and_ignores_a_missing_file() {
        let dir = scratch("restrict");
        let p = dir.join("dev-application.json");
        restrict(&p).unwrap();
        fs::write(&p, b"{}").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o664)).unwrap();
        restrict(&p).unwrap();
        assert_eq!(mode(&p), 0o600);
        fs::remove_dir_all(dir).unwrap();
    }
}
