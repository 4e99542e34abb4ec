//! Sandboxed actions hold none of the worker's powers: no capabilities,
//! not root, a session of their own, and no view of the worker's files;
//! host-side steps still work in the workspace after them.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Env, assert_succeeded, text};
use ick_api::controller::LogChunk;
use ick_api::work::Stream;

/// The stdout of one node.
fn node_text(log: &[LogChunk], node: &str) -> String {
    let own: Vec<LogChunk> = log.iter().filter(|c| c.node == node).cloned().collect();
    text(&own, Stream::Stdout)
}

/// What an action reports of itself, with bash builtins only (the system
/// tree holds nothing else): capabilities, ids, its session, and what of
/// the worker it can see or write.
fn probe(worker_files: &[String]) -> String {
    let files = worker_files.join(" ");
    format!(
        r#"while read -r key value; do
        case $key in CapEff:|CapPrm:|CapBnd:|Uid:|Gid:|NoNewPrivs:) echo "$key $value";; esac
      done < /proc/self/status
      read -r stat < /proc/self/stat
      set -- ${{stat##*) }}
      echo "session: $4"
      if [ -d "/proc/$4" ]; then echo "session leader: inside"; else echo "session leader: outside"; fi
      for f in {files}; do
        if [ -e "$f" ]; then echo "SEES $f"; else echo "no $f"; fi
      done
      for f in /evil /etc/evil /usr/bin/evil /proc/sys/kernel/hostname; do
        if (echo x > "$f") 2>/dev/null; then echo "WROTE $f"; else echo "refused $f"; fi
      done
      echo made inside > made-inside"#
    )
}

/// The lines a sandboxed action must print of itself.
/// `outside`: paths it must not write to.
fn assert_powerless(name: &str, out: &str, worker_files: &[String], outside: &[&str]) {
    let line = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name}: no {key:?} in {out}"))
            .to_string()
    };
    assert_eq!(line("CapEff:"), "0000000000000000", "{name}: {out}");
    assert_eq!(line("CapPrm:"), "0000000000000000", "{name}: {out}");
    assert_eq!(line("CapBnd:"), "0000000000000000", "{name}: {out}");
    assert_eq!(line("NoNewPrivs:"), "1", "{name}: {out}");
    for key in ["Uid:", "Gid:"] {
        let ids = line(key);
        assert!(
            ids.split_whitespace().all(|id| id != "0"),
            "{name}: {key} {ids} is not root: {out}"
        );
    }
    // A session whose leader is outside the PID namespace shows as 0.
    assert_ne!(line("session:"), "0", "{name}: {out}");
    assert_eq!(line("session leader:"), "inside", "{name}: {out}");
    for f in worker_files {
        assert!(out.contains(&format!("no {f}\n")), "{name}: {f}: {out}");
    }
    for f in outside {
        assert!(
            out.contains(&format!("refused {f}\n")),
            "{name}: {f}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxed_actions_have_no_capabilities_no_root_and_their_own_session() {
    let env = Env::start().await;
    let worker = env.worker().start();
    // The worker's own files, by their paths on the host.
    let worker_files: Vec<String> = [
        worker.config.clone(),
        worker.dir.path().join("secret"),
        worker.dir.path().join("worker-manager.log"),
    ]
    .iter()
    .map(|p| p.to_string_lossy().into_owned())
    .collect();
    for f in &worker_files {
        assert!(std::path::Path::new(f).exists(), "{f} exists on the host");
    }
    let probe = probe(&worker_files);
    env.admin
        .pipeline(
            "systree",
            &common::systree_pipeline(&["bash"], "test/systree"),
        )
        .await;
    env.admin
        .pipeline(
            "boxed",
            &format!(
                r#"needs: [systree]
actions:
  - populate: {{ref: test/systree, into: systree}}
  - shell: echo from the host > from-host
  - where: container
    shell: |
      {probe}
      read -r line < /workspace/from-host && echo "$line"
  - shell: |
      echo "owner: $(stat -c %u:%g made-inside from-host)"
      cat made-inside
  - populate: {{ref: test/systree}}
  - where: chroot
    shell: |
      {probe}
  - archive: {{}}
  - shell: |
      echo "owner: $(stat -c %u:%g made-inside)"
"#
            ),
        )
        .await;
    env.admin
        .project("sandbox", "pipelines: [systree, boxed]")
        .await;
    let view = env.run("sandbox", common::SOON).await;
    assert_succeeded(&view);
    let log = env.log(&view.build.id).await;
    let boxed = view.pipeline("boxed");
    let container = node_text(&log, &boxed[2].id);
    let outside = [
        "/evil",
        "/etc/evil",
        "/usr/bin/evil",
        "/proc/sys/kernel/hostname",
    ];
    assert_powerless("container", &container, &worker_files, &outside);
    assert!(container.ends_with("from the host\n"), "{container}");
    let chroot = node_text(&log, &boxed[5].id);
    // In a chroot the workspace is the root: only /proc is not its own.
    assert_powerless("chroot", &chroot, &worker_files, &outside[3..]);
    // The workspace is the worker's again for the host-side steps.
    // The worker runs as this test does; /proc/self belongs to its ids.
    let me = std::fs::metadata("/proc/self").expect("stat /proc/self");
    let worker_ids = format!("{}:{}", me.uid(), me.gid());
    assert_eq!(
        node_text(&log, &boxed[3].id),
        format!("owner: {worker_ids}\n{worker_ids}\nmade inside\n")
    );
    assert_eq!(
        node_text(&log, &boxed[7].id),
        format!("owner: {worker_ids}\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_tree_without_bash_is_refused_before_the_action_starts() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    env.admin
        .pipeline(
            "no-bash-tree",
            r#"actions:
  - shell: |
      mkdir -p root/etc root/bin
      echo box > root/etc/hostname
  - archive: {path: root, ref: test/no-bash}
"#,
        )
        .await;
    env.admin
        .pipeline(
            "no-bash",
            r#"needs: [no-bash-tree]
actions:
  - populate: {ref: test/no-bash, into: systree}
  - where: container
    shell: echo it ran
"#,
        )
        .await;
    env.admin
        .project("no-bash", "pipelines: [no-bash-tree, no-bash]")
        .await;
    let view = env.run("no-bash", common::SOON).await;
    assert_eq!(view.build.status, ick_api::controller::BuildStatus::Failed);
    let node = &view.pipeline("no-bash")[1];
    assert_eq!(
        node.outcome,
        Some(ick_api::work::Outcome::Error),
        "{node:#?}"
    );
    let message = node.message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("cannot run bash: the system tree ")
            && message.contains("has no executable bash in any of ")
            && message.ends_with("(shell actions run `bash -e`: the tree needs /bin/bash)"),
        "{message}"
    );
    let log = env.log(&view.build.id).await;
    let all: String = log.iter().map(|c| c.data.as_str()).collect();
    assert!(!all.contains("it ran"), "{all}");
    assert!(!all.contains("execvp"), "{all}");
}
