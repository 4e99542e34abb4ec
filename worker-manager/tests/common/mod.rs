//! What the worker-manager's tests share: a real IDP, controller (on
//! Postgres), artifact store and worker-managers on loopback, and helpers
//! to run builds and read their logs.

#![allow(dead_code)]

use std::time::Duration;

use ick_api::controller::{BuildStatus, BuildView, LogChunk, NodeStatus, NodeView};
use ick_api::work::{Stream, WorkerInfo};
use ick_tests::controller::{Api, TestController};
use ick_tests::idp::{Storage, TestIdp};
use ick_tests::store::{Backend, TestStore};
use ick_tests::worker::{TestWorker, TestWorkerBuilder};

pub use ick_tests::eventually;

/// Long enough for anything that should happen at once on a loaded machine.
pub const SOON: Duration = Duration::from_secs(30);

/// An IDP, a controller on Postgres, an artifact store, and an admin client.
pub struct Env {
    pub idp: TestIdp,
    pub controller: TestController,
    pub store: TestStore,
    pub admin: Api,
}

impl Env {
    /// The services, with the controller's config edited by `edit`.
    pub async fn start_with(edit: impl FnOnce(&mut serde_yaml::Value)) -> Env {
        // The IDP's storage is not what these tests are about.
        let idp = TestIdp::start_with(Storage::Sqlite, |_| {});
        let controller = TestController::start_with(&idp, Storage::Postgres, |c| {
            c["work"]["reap_interval"] = "100ms".into();
            edit(c);
        });
        let store = TestStore::start(&idp, Backend::Local);
        let admin = controller.client(&idp.admin_token().await);
        Env {
            idp,
            controller,
            store,
            admin,
        }
    }

    /// The services with the example configs.
    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    /// A worker of these services, to be configured further.
    pub fn worker(&self) -> TestWorkerBuilder<'_> {
        TestWorker::builder(&self.idp, self.controller.url()).store(self.store.url())
    }

    /// A blob client with every scope.
    pub async fn blobs(&self) -> ick_api::blobs::BlobClient {
        self.store.client(&self.idp.admin_token().await)
    }

    /// Applies one pipeline `name` with `actions` (YAML list) and a project
    /// of the same name running it; returns the project's name.
    pub async fn project(&self, name: &str, actions: &str) -> String {
        self.admin
            .pipeline(name, &format!("actions:\n{actions}"))
            .await;
        self.admin
            .project(name, &format!("pipelines: [{name}]"))
            .await;
        name.to_string()
    }

    /// Triggers `project` and waits for the build to end.
    pub async fn run(&self, project: &str, timeout: Duration) -> BuildView {
        let build = self.admin.trigger(project).await;
        self.admin.wait_build(&build.id, timeout).await
    }

    /// The build's log, in order.
    pub async fn log(&self, build_id: &str) -> Vec<LogChunk> {
        self.admin.get(&format!("/builds/{build_id}/log")).await
    }

    /// The text of one stream of the build's log.
    pub async fn text(&self, build_id: &str, stream: Stream) -> String {
        text(&self.log(build_id).await, stream)
    }

    /// Waits until the build's log contains `needle`; returns the log.
    pub async fn wait_log(&self, build_id: &str, needle: &str) -> String {
        eventually(SOON, &format!("{needle:?} in the log"), || async {
            let all: String = self
                .log(build_id)
                .await
                .iter()
                .map(|c| c.data.as_str())
                .collect();
            all.contains(needle).then_some(all)
        })
        .await
    }

    /// The workers the controller knows.
    pub async fn workers(&self) -> Vec<WorkerInfo> {
        self.admin.get("/workers").await
    }
}

/// A pipeline's text: it makes a system tree holding the host's
/// `programs` and their libraries (in `/usr/bin`, with `/bin` a link to
/// it), and archives it under `reference`.
pub fn systree_pipeline(programs: &[&str], reference: &str) -> String {
    format!(
        r#"actions:
  - shell: |
      mkdir -p root/usr/bin root/etc
      ln -s usr/bin root/bin
      for p in {programs}; do
        cp "$(command -v $p)" root/usr/bin/
        for lib in $(ldd "$(command -v $p)" | grep -o '/[^ ]*'); do cp --parents -L "$lib" root/; done
      done
  - archive: {{path: root, ref: {reference}}}
"#,
        programs = programs.join(" ")
    )
}

/// The text of one stream.
pub fn text(chunks: &[LogChunk], stream: Stream) -> String {
    chunks
        .iter()
        .filter(|c| c.stream == stream)
        .map(|c| c.data.as_str())
        .collect()
}

/// The one node of a single-action build.
pub fn only_node(view: &BuildView) -> &NodeView {
    assert_eq!(view.nodes.len(), 1, "one node: {view:#?}");
    &view.nodes[0]
}

/// Asserts the build succeeded, showing it otherwise.
pub fn assert_succeeded(view: &BuildView) {
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "the build failed: {:#?}",
        view.nodes
    );
    assert!(view.nodes.iter().all(|n| n.status == NodeStatus::Succeeded));
}

/// The numbers that follow `label` on lines of `text` (`pid: 123`).
pub fn numbers_after(text: &str, label: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix(label))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Whether `pid` is a live (not zombie) process running `sleep`.
pub fn sleep_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !stat.is_empty() && state != "Z" && cmdline.starts_with(b"sleep")
}

/// Runs git in `dir`, returning its output.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.org",
            "-C",
        ])
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
