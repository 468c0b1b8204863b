//! SPEC §15, operations: the files of `deploy/` checked by the tools that
//! read them (`systemd-analyze`, `promtool`), every metric they name
//! scraped from a running server, the publish-latency and certificate
//! metrics, and `GET /openapi.json` against the live server
//! (`openapi-spec-validator`, `schemathesis`).
//!
//! A tool that is not installed skips its test with one line on stderr,
//! except under `CI=true`, where it fails: `.ci/run` installs them.

mod deploy;
mod metrics;
mod openapi;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A file of the repository, by its path from the root.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Whether `program` runs here (`program --version`). Otherwise says so and
/// returns false, or panics under `CI=true`.
pub fn have(program: &str) -> bool {
    if Command::new(program).arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{program} is not installed and CI=true (.ci/run installs it)");
    }
    eprintln!("skipped: {program} is not installed (.ci/run installs it)");
    false
}

/// Runs a command to the end and returns what it said.
pub fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

/// stdout and stderr of `output`, for assertion messages.
pub fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A fresh directory under the system's temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
