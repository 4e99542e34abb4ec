//! The workspace is the build's: what an action left in it (a planted
//! `.git`, a symbolic link out) must not make the host-side steps that
//! follow (git, archive) run anything or read anything outside it.

mod common;

use common::{Env, SOON, assert_succeeded, git, text};
use ick_api::blobs::Digest;
use ick_api::controller::LogChunk;
use ick_api::work::Stream;

/// The stdout of one node.
fn node_text(log: &[LogChunk], node: &str) -> String {
    let own: Vec<LogChunk> = log.iter().filter(|c| c.node == node).cloned().collect();
    text(&own, Stream::Stdout)
}

/// A repository with `version` and `notes` committed on `main`.
fn repo(version: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tempdir");
    git(repo.path(), &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(repo.path().join("version"), version).expect("write");
    std::fs::write(repo.path().join("notes"), "notes\n").expect("write");
    git(repo.path(), &["add", "version", "notes"]);
    git(repo.path(), &["commit", "--quiet", "-m", "one"]);
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_git_directory_runs_nothing_on_the_next_git_step() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    let real = repo("real\n");
    let evil = repo("evil\n");
    // Whatever the planted settings run leaves a file here.
    let sentinel = tempfile::tempdir().expect("tempdir");
    let real_url = real.path().display().to_string();
    let evil_url = evil.path().display().to_string();
    let pipeline = format!(
        r#"actions:
  - git: {{dir: src}}
  - shell: |
      printf '#!/bin/sh\ntouch "%s/$1"\ncat\n' "{sentinel}" > "$ICK_WORKSPACE/evil.sh"
      chmod +x "$ICK_WORKSPACE/evil.sh"
      evil="$ICK_WORKSPACE/evil.sh"
      cd src
      for hook in post-checkout pre-auto-gc reference-transaction post-index-change; do
        printf '#!/bin/sh\n"%s" hook-%s\n' "$evil" "$hook" > .git/hooks/$hook
        chmod +x .git/hooks/$hook
      done
      git config core.fsmonitor "$evil fsmonitor"
      git config core.pager "$evil pager"
      git config core.sshCommand "$evil ssh"
      git config filter.evil.smudge "$evil smudge"
      git config filter.evil.clean "$evil clean"
      git config filter.evil.required true
      git config url.{evil_url}.insteadOf {real_url}
      printf '[filter "inc"]\n\tsmudge = "%s" include\n' "$evil" > "$ICK_WORKSPACE/evil.inc"
      git config include.path "$ICK_WORKSPACE/evil.inc"
      printf 'version filter=evil\nnotes filter=inc\n' > .git/info/attributes
      # Changed files, so that the next checkout writes them again.
      echo tampered > version
      echo tampered > notes
  - git: {{dir: src}}
  - shell: |
      cat src/version src/notes
      git -C src config --list --local --includes | sed 's/=.*//' | sort
"#,
        sentinel = sentinel.path().display()
    );
    env.admin.pipeline("planted", &pipeline).await;
    env.admin
        .project(
            "planted",
            &format!(
                "parameters: {{git_url: \"{real_url}\", git_ref: main}}\npipelines: [planted]"
            ),
        )
        .await;
    let view = env.run("planted", SOON).await;
    let ran: Vec<String> = std::fs::read_dir(sentinel.path())
        .expect("read sentinel")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(ran.is_empty(), "the planted settings ran: {ran:?}");
    assert_succeeded(&view);
    let log = env.log(&view.build.id).await;
    let after = node_text(&log, &view.nodes[3].id);
    assert!(
        after.starts_with("real\nnotes\n"),
        "the real repository is checked out: {after}"
    );
    let keys: Vec<&str> = after.lines().skip(2).collect();
    for key in keys.iter().filter(|k| k.contains('.')) {
        assert!(
            key.starts_with("core.") || key.starts_with("extensions."),
            "{key} is gone from .git/config: {after}"
        );
        assert!(
            !["core.fsmonitor", "core.pager", "core.sshcommand"].contains(key),
            "{key}: {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_directory_that_points_elsewhere_is_made_anew() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    let real = repo("real\n");
    let other = repo("other\n");
    let other_git = other.path().join(".git");
    let real_url = real.path().display().to_string();
    // Three ways out: a .git file naming another repository, a .git that is
    // a link to one, objects borrowed from one.
    let pipeline = format!(
        r#"actions:
  - shell: |
      echo "gitdir: {other}" > a.git
      mkdir a && mv a.git a/.git
      mkdir b && ln -s {other} b/.git
  - git: {{dir: a}}
  - git: {{dir: b}}
  - git: {{dir: c}}
  - shell: |
      echo "{other}/objects" > c/.git/objects/info/alternates
      ln -s /etc c/.git/planted-link
  - git: {{dir: c}}
  - shell: |
      for d in a b c; do
        echo "$d: $(cat $d/version) $(stat -c %F $d/.git)"
      done
      [ -e c/.git/objects/info/alternates ] && echo "alternates kept" || echo "alternates gone"
      [ -e c/.git/planted-link ] && echo "link kept" || echo "link gone"
"#,
        other = other_git.display()
    );
    env.admin.pipeline("elsewhere", &pipeline).await;
    env.admin
        .project(
            "elsewhere",
            &format!(
                "parameters: {{git_url: \"{real_url}\", git_ref: main}}\npipelines: [elsewhere]"
            ),
        )
        .await;
    let other_head = git(other.path(), &["rev-parse", "HEAD"]);
    let other_objects = git(other.path(), &["count-objects"]);
    let view = env.run("elsewhere", SOON).await;
    assert_succeeded(&view);
    let log = env.log(&view.build.id).await;
    assert_eq!(
        node_text(&log, &view.nodes[6].id),
        "a: real directory\nb: real directory\nc: real directory\nalternates gone\nlink gone\n"
    );
    // The other repository was not written to.
    assert_eq!(git(other.path(), &["rev-parse", "HEAD"]), other_head);
    assert_eq!(git(other.path(), &["status", "--porcelain"]), "");
    assert_eq!(git(other.path(), &["count-objects"]), other_objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_keeps_symlinks_out_of_the_workspace_as_links() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("secret");
    std::fs::write(&secret, "the content outside\n").expect("write");
    env.project(
        "links",
        &format!(
            r#"  - shell: |
      mkdir tree
      echo inside > tree/file
      ln -s {secret} tree/to-secret
      ln -s {outside} tree/to-dir
      ln -s /etc/passwd tree/to-passwd
      ln -s ../../../../.. tree/up
  - archive: {{path: tree}}
"#,
            secret = secret.display(),
            outside = outside.path().display(),
        ),
    )
    .await;
    let view = env.run("links", SOON).await;
    assert_succeeded(&view);
    let digest: Digest = view.nodes[1].outputs["digest"].parse().expect("digest");
    let mut bytes = Vec::new();
    env.blobs()
        .await
        .download(&digest, &mut bytes)
        .await
        .expect("download");
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut seen = Vec::new();
    for entry in archive.entries().expect("entries") {
        let entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        if path.is_empty() || path == "." || path == "./" {
            continue;
        }
        let kind = entry.header().entry_type();
        let link = entry
            .link_name()
            .expect("link")
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        seen.push(format!("{path} {kind:?} {link}").trim().to_string());
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "file Regular".to_string(),
            format!("to-dir Symlink {}", outside.path().display()),
            "to-passwd Symlink /etc/passwd".to_string(),
            format!("to-secret Symlink {}", secret.display()),
            "up Symlink ../../../../..".to_string(),
        ]
    );
    let raw = String::from_utf8_lossy(&bytes);
    assert!(
        !raw.contains("the content outside"),
        "no content from outside"
    );
    assert!(!raw.contains("root:x:0:0"), "nor /etc/passwd's");
    // A path through a link out of the workspace is refused.
    env.project(
        "through",
        "  - shell: ln -s /etc etc-link\n  - archive: {path: etc-link}\n",
    )
    .await;
    let view = env.run("through", SOON).await;
    let message = view.nodes[1].message.clone().unwrap_or_default();
    assert!(message.contains("outside the workspace"), "{message}");
}
