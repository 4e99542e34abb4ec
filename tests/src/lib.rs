//! The harness for Ick's integration and end-to-end tests: real binaries,
//! started on loopback port 0, each with a fresh Postgres database (or
//! SQLite file) and a temporary directory, killed when the test ends.

pub mod browser;
pub mod chrome;
pub mod controller;
pub mod db;
pub mod faults;
pub mod idp;
pub mod oidc;
pub mod process;
pub mod smtp;
pub mod store;
pub mod web;
pub mod worker;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use db::TestDb;
pub use idp::{Credentials, TestIdp};
pub use process::ServiceProcess;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Path of an Ick binary in the target directory of the running test.
/// Integration tests of other crates cannot make cargo build it, so
/// `deploy/test.sh` runs `cargo build --workspace --bins` first.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (deploy/test.sh does)",
        path.display()
    );
    path
}

/// Polls `check` until it yields `Some`, or panics after `timeout` naming
/// `what`. Tests wait with this, never with a bare sleep.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
