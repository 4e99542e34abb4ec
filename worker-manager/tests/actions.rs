//! The action kinds: shell and python with the build's environment, git,
//! archive and populate, containers, plugins.

mod common;

use std::process::Command;

use common::{Env, SOON, assert_succeeded, eventually, git, only_node, text};
use ick_api::blobs::RefName;
use ick_api::controller::{BuildStatus, LogChunk, TriggerRequest};
use ick_api::work::Stream;
use ick_tests::controller::json;
use reqwest::StatusCode;

/// The stdout of one node.
fn node_text(log: &[LogChunk], node: &str) -> String {
    let own: Vec<LogChunk> = log.iter().filter(|c| c.node == node).cloned().collect();
    text(&own, Stream::Stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_see_the_build_parameters_and_variables() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    env.admin
        .pipeline(
            "show",
            r#"actions:
  - shell: |
      echo "foo=$foo n=$n list=$list"
      echo "number=$BUILD_NUMBER/$ICK_BUILD_NUMBER project=$ICK_PROJECT pipeline=$ICK_PIPELINE id=$ICK_BUILD_ID"
      [ "$ICK_WORKSPACE" = "$PWD" ] && echo "workspace is the cwd"
      params | python3 -c 'import json, sys; print("params says", json.load(sys.stdin)["foo"])'
      echo "extra=$EXTRA"
    env: {EXTRA: "from the action"}
  - python: |
      import os
      print("python says", params["n"] + 1, os.environ["ICK_PIPELINE"])
"#,
        )
        .await;
    env.admin
        .project(
            "env",
            "parameters: {foo: bar, n: 3, list: [1, two]}\npipelines: [show]",
        )
        .await;
    let view = env.run("env", SOON).await;
    assert_succeeded(&view);
    let stdout = env.text(&view.build.id, Stream::Stdout).await;
    let expected = format!(
        "foo=bar n=3 list=[1,\"two\"]\n\
         number=1/1 project=env pipeline=show id={}\n\
         workspace is the cwd\n\
         params says bar\n\
         extra=from the action\n\
         python says 4 show\n",
        view.build.id
    );
    assert_eq!(stdout, expected);
}

/// `find` of a tree: every entry's type, mode and link target, every
/// file's mtime (whole seconds) and content hash.
const LIST_TREE: &str = r#"find . -printf '%p %y %m %l\n' | LC_ALL=C sort
      find . -type f -printf '%p %T@\n' | sed 's/\.[0-9]*$//' | LC_ALL=C sort
      find . -type f -exec sha256sum {} + | LC_ALL=C sort"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_then_populate_round_trips_symlinks_modes_and_empty_dirs() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    env.admin
        .pipeline(
            "make",
            &format!(
                r#"actions:
  - shell: |
      mkdir -p tree/sub/deeper tree/empty tree/private
      printf 'hello\n' > tree/sub/file.txt
      printf '#!/bin/sh\necho hi\n' > tree/run.sh
      chmod 0755 tree/run.sh
      printf 'secret' > tree/private/key
      chmod 0600 tree/private/key
      chmod 0750 tree/private
      chmod 0700 tree/empty
      ln -s sub/file.txt tree/link
      ln -s /nowhere/at/all tree/dangling
      cd tree
      {LIST_TREE}
  - archive: {{path: tree, ref: roundtrip/tree}}
"#
            ),
        )
        .await;
    env.admin
        .pipeline(
            "use",
            &format!(
                r#"needs: [make]
actions:
  - populate: {{ref: roundtrip/tree, path: restored}}
  - shell: |
      cd restored
      {LIST_TREE}
"#
            ),
        )
        .await;
    env.admin
        .project("roundtrip", "pipelines: [make, use]")
        .await;
    let view = env.run("roundtrip", SOON).await;
    assert_succeeded(&view);
    let log = env.log(&view.build.id).await;
    let made = node_text(&log, &view.pipeline("make")[0].id);
    let restored = node_text(&log, &view.pipeline("use")[1].id);
    for line in [
        "./link l 777 sub/file.txt",
        "./dangling l 777 /nowhere/at/all",
        "./empty d 700 ",
        "./private d 750 ",
        "./private/key f 600 ",
        "./run.sh f 755 ",
        "./sub/deeper d 755 ",
    ] {
        assert!(made.lines().any(|l| l == line), "{line:?} in {made}");
    }
    assert_eq!(restored, made, "the tree came back as it was");
    // The archive's digest is reported, and the ref points at it.
    let digest = view.pipeline("make")[1]
        .outputs
        .get("digest")
        .cloned()
        .expect("a digest");
    let name: RefName = "roundtrip/tree".parse().expect("ref name");
    let blobs = env.blobs().await;
    let target = blobs
        .get_ref(&name)
        .await
        .expect("get ref")
        .expect("the ref exists");
    assert_eq!(target.to_string(), digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_builds_start_fresh_then_reuse_the_cached_workspace() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    env.project(
        "cache",
        r#"  - populate: {ref: cache/workspace, optional: true}
  - populate: {ref: cache/deps, optional: true, path: deps}
  - shell: |
      rmdir deps
      echo "found: $(ls -A | tr '\n' ' ')"
      echo "build $BUILD_NUMBER" >> history
  - archive: {ref: cache/workspace}
"#,
    )
    .await;
    let first = env.run("cache", SOON).await;
    assert_succeeded(&first);
    let log = env.log(&first.build.id).await;
    assert_eq!(
        node_text(&log, &first.nodes[2].id),
        "found: \n",
        "a missing optional ref leaves the workspace empty, and its path made, empty"
    );
    assert!(text(&log, Stream::Stderr).contains("does not exist; nothing to populate"));
    let second = env.run("cache", SOON).await;
    assert_succeeded(&second);
    let log = env.log(&second.build.id).await;
    assert_eq!(node_text(&log, &second.nodes[2].id), "found: history \n");
    let third = env.run("cache", SOON).await;
    assert_succeeded(&third);
    let digest = third.nodes[3]
        .outputs
        .get("digest")
        .cloned()
        .expect("digest");
    // The cache now holds both earlier builds' lines: unpack it to look.
    env.project(
        "look",
        &format!("  - populate: {{digest: \"{digest}\"}}\n  - shell: cat history\n"),
    )
    .await;
    let look = env.run("look", SOON).await;
    assert_succeeded(&look);
    assert_eq!(
        env.text(&look.build.id, Stream::Stdout).await,
        "build 1\nbuild 2\nbuild 3\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_action_cannot_write_outside_the_workspace() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    // A system tree with only bash in it, built from the host's.
    env.admin
        .pipeline(
            "systree",
            r#"actions:
  - shell: |
      mkdir -p root/usr/bin
      cp /bin/bash root/usr/bin/bash
      ln -s usr/bin root/bin
      for lib in $(ldd /bin/bash | grep -o '/[^ ]*'); do cp --parents -L "$lib" root/; done
  - archive: {path: root, ref: test/systree}
"#,
        )
        .await;
    env.admin
        .pipeline(
            "boxed",
            r#"needs: [systree]
actions:
  - populate: {ref: test/systree, into: systree}
  - where: container
    shell: |
      echo "inside at $PWD, ICK_WORKSPACE=$ICK_WORKSPACE"
      echo made in the container > /workspace/made-inside
      for f in /etc/evil /usr/bin/evil /evil /workspace/../evil2; do
        if (echo x > "$f") 2>/dev/null; then echo "WROTE $f"; else echo "refused $f"; fi
      done
      while read -r line; do echo "net: ${line%%:*}"; done < /proc/net/dev
  - shell: cat made-inside
  - populate: {ref: test/systree}
  - where: chroot
    shell: |
      echo "chroot root has: $(cd / && echo *)"
      echo made in the chroot > /made-in-chroot
  - shell: cat made-in-chroot
"#,
        )
        .await;
    env.admin
        .project("container", "pipelines: [systree, boxed]")
        .await;
    let view = env.run("container", SOON).await;
    assert_succeeded(&view);
    let log = env.log(&view.build.id).await;
    let boxed = view.pipeline("boxed");
    let inside = node_text(&log, &boxed[1].id);
    assert!(
        inside.contains("inside at /workspace, ICK_WORKSPACE=/workspace"),
        "{inside}"
    );
    for path in ["/etc/evil", "/usr/bin/evil", "/evil", "/workspace/../evil2"] {
        assert!(
            inside.contains(&format!("refused {path}\n")),
            "{path}: {inside}"
        );
    }
    assert!(!inside.contains("WROTE"), "{inside}");
    let interfaces: Vec<&str> = inside
        .lines()
        .filter_map(|l| l.strip_prefix("net: "))
        .skip(2) // the two header lines
        .collect();
    assert_eq!(interfaces, vec!["lo"], "no network but loopback");
    assert_eq!(node_text(&log, &boxed[2].id), "made in the container\n");
    let chroot = node_text(&log, &boxed[4].id);
    assert!(
        chroot.contains("made-inside"),
        "the workspace is the root: {chroot}"
    );
    assert_eq!(node_text(&log, &boxed[5].id), "made in the chroot\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_action_runs_with_the_action_on_stdin() {
    let env = Env::start().await;
    let worker = env
        .worker()
        .plugin(
            "greet",
            "#!/bin/sh\necho \"plugin got: $(cat)\"\n[ \"$PWD\" = \"$ICK_WORKSPACE\" ] && echo \"in the workspace\"\necho \"to stderr\" >&2\n",
        )
        .plugin("grumble", "#!/bin/sh\necho no >&2\nexit 4\n")
        .start();
    // The controller accepts a plugin kind once a worker offers it.
    eventually(SOON, "the worker to offer its plugins", || async {
        env.workers()
            .await
            .into_iter()
            .find(|w| w.name == worker.name)
            .filter(|w| {
                w.kinds.contains(&"greet".to_string()) && w.kinds.contains(&"shell".to_string())
            })
    })
    .await;
    env.project("plugin", "  - greet: {who: world}\n    name: say hello\n")
        .await;
    let view = env.run("plugin", SOON).await;
    assert_succeeded(&view);
    let log = env.log(&view.build.id).await;
    assert_eq!(
        text(&log, Stream::Stdout),
        "plugin got: {\"greet\":{\"who\":\"world\"},\"name\":\"say hello\"}\nin the workspace\n"
    );
    assert_eq!(text(&log, Stream::Stderr), "to stderr\n");
    env.project("grumble", "  - grumble: {}\n").await;
    let view = env.run("grumble", SOON).await;
    assert_eq!(view.build.status, BuildStatus::Failed);
    assert_eq!(only_node(&view).exit_code, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_checks_out_the_exact_commit_and_reports_it() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    let repo = tempfile::tempdir().expect("tempdir");
    git(repo.path(), &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(repo.path().join("version"), "one\n").expect("write");
    git(repo.path(), &["add", "version"]);
    git(repo.path(), &["commit", "--quiet", "-m", "one"]);
    let first = git(repo.path(), &["rev-parse", "HEAD"]);
    std::fs::write(repo.path().join("version"), "two\n").expect("write");
    git(repo.path(), &["commit", "--quiet", "-am", "two"]);
    let second = git(repo.path(), &["rev-parse", "HEAD"]);
    env.admin
        .pipeline(
            "checkout",
            "actions:\n  - git: {dir: src}\n  - shell: cat src/version\n",
        )
        .await;
    env.admin
        .project(
            "repo",
            &format!(
                "parameters: {{git_url: \"{}\", git_ref: main}}\npipelines: [checkout]",
                repo.path().display()
            ),
        )
        .await;
    let view = env.run("repo", SOON).await;
    assert_succeeded(&view);
    assert_eq!(view.nodes[0].outputs.get("commit"), Some(&second));
    assert_eq!(env.text(&view.build.id, Stream::Stdout).await, "two\n");
    // A trigger may pin the exact commit.
    let request = TriggerRequest {
        parameters: [(
            "git_commit".to_string(),
            serde_json::Value::String(first.clone()),
        )]
        .into_iter()
        .collect(),
    };
    let build: ick_api::controller::BuildSummary = json(
        env.admin.trigger_raw("repo", &request).await,
        StatusCode::CREATED,
    )
    .await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_succeeded(&view);
    assert_eq!(view.nodes[0].outputs.get("commit"), Some(&first));
    assert_eq!(env.text(&view.build.id, Stream::Stdout).await, "one\n");
}

/// A dumb-HTTP git server (Python's, on loopback) that answers only
/// requests with `Authorization: Basic base64(user:password)`; returns it
/// with its port.
fn git_http_server(
    root: &std::path::Path,
    user: &str,
    password: &str,
) -> (std::process::Child, u16) {
    use base64::Engine;
    use std::io::BufRead;
    let wanted = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let script = format!(
        r#"
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != "Basic {wanted}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        super().do_GET()
s = http.server.HTTPServer(("127.0.0.1", 0), lambda *a: H(*a, directory=sys.argv[1]))
print(s.server_address[1], flush=True)
s.serve_forever()
"#
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .arg(root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the port");
    (child, line.trim().parse().expect("a port"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_a_git_url_reach_the_server_and_no_log_argument_or_file() {
    const TOKEN: &str = "tok3n-s3cret";
    let env = Env::start().await;
    let _worker = env.worker().start();
    let repo = tempfile::tempdir().expect("tempdir");
    git(repo.path(), &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(repo.path().join("version"), "served\n").expect("write");
    git(repo.path(), &["add", "version"]);
    git(repo.path(), &["commit", "--quiet", "-m", "one"]);
    let served = tempfile::tempdir().expect("tempdir");
    let bare = served.path().join("repo.git");
    git(
        repo.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            ".",
            bare.to_str().expect("utf-8"),
        ],
    );
    git(&bare, &["update-server-info"]);
    let (mut server, port) = git_http_server(served.path(), "ci", TOKEN);

    env.admin
        .pipeline(
            "checkout",
            "parameters: [git_url, git_ref]\nactions:\n  - git: {}\n  \
             - shell: 'cat version; cat .git/FETCH_HEAD .git/config'\n",
        )
        .await;
    let url = format!("http://ci:{TOKEN}@127.0.0.1:{port}/repo.git");
    env.admin
        .project(
            "private",
            &format!("parameters: {{git_url: '{url}', git_ref: main}}\npipelines: [checkout]"),
        )
        .await;
    let view = env.run("private", SOON).await;
    let log: String = env
        .log(&view.build.id)
        .await
        .iter()
        .map(|c| c.data.as_str())
        .collect();
    let _ = server.kill();
    assert_succeeded(&view);
    assert!(log.contains("served\n"), "the server let git in:\n{log}");
    assert!(
        log.contains(&format!(
            "ick: fetching main of http://127.0.0.1:{port}/repo.git"
        )),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
    assert_eq!(
        view.build.parameters["git_url"],
        format!("http://***@127.0.0.1:{port}/repo.git")
    );
}
