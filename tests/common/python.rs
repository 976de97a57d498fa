//! The third-party Python XMPP clients the suite drives (slixmpp, aioxmpp): whether one is
//! installed, and a command running a script with it. Under `CI=true` a missing package fails
//! the test (`.ci/run` installs it); elsewhere the test is skipped with a note.

use std::ffi::OsStr;
use std::process::Stdio;

/// How `.ci/run` installs slixmpp.
pub const SLIXMPP: &str = "pip install slixmpp";
/// How `.ci/run` installs aioxmpp (it imports pytz without declaring it).
pub const AIOXMPP: &str = "pip install aioxmpp pytz";

/// Whether python3 imports `module`; false (and a note) when it does not, outside CI.
pub fn has(module: &str, install: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{module} is required under CI ({install})"
        );
        eprintln!("skipping: python3 with {module} is not installed ({install})");
    }
    ok
}

/// `python3 -c SCRIPT ARGS…` with its output captured, killed if the test drops it.
pub fn script<I, S>(code: &str, args: I) -> tokio::process::Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = tokio::process::Command::new("python3");
    c.arg("-c")
        .arg(code)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs `python3 -c SCRIPT ARGS…` to its end (at most `secs` seconds) and returns its standard
/// output; fails the test, showing both outputs, when it exits unsuccessfully.
pub async fn run_ok<I, S>(code: &str, args: I, secs: u64) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(secs),
        script(code, args).output(),
    )
    .await
    .expect("the script finished in time")
    .expect("python3 ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
