//! Rough edges a new user met: a URL that points at the wrong service, an
//! unknown project listed as if it had no builds, words said twice, ids
//! where names belong, text where JSON was asked for, a `notify:` that
//! waits silently, and a README whose worker settings fail as non-root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Ick, build, definitions, process_running, s, wait_for};
use ick_api::controller::{BuildStatus, NodeStatus};
use ick_api::work::WorkerInfo;
use ick_tests::{bin_path, repo_root};

#[test]
fn status_says_when_a_url_points_at_another_service() {
    let ick = Ick::start(0);
    let wrong = ick.write_config("wrong.yaml", |c| c["controller"] = ick.idp.url().into());
    let run = common::icktool(&wrong, &["status"], &[]);
    assert_eq!(run.code(), 2, "{run}");
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("controller"))
        .unwrap_or_default();
    assert!(
        line.contains("wrong service")
            && line.contains("this is ick-idp, not the controller")
            && !line.contains(" ok "),
        "{run}"
    );
    let json: serde_json::Value =
        common::icktool(&wrong, &["status", "--output", "json"], &[]).json();
    assert_eq!(json["services"][0]["wrong_service"], true, "{json}");
    assert_eq!(json["services"][0]["ready"], false, "{json}");
    // The right URLs still read as ok.
    ick.icktool(&["status"]).ok();
}

#[test]
fn build_list_of_an_unknown_project_exits_2() {
    let ick = Ick::start(0);
    ick.icktool(&["apply", "-f", s(&repo_root().join("examples/hello"))])
        .ok();
    ick.icktool(&["build", "list", "--project", "nosuch"])
        .fails(2, "no project \"nosuch\"");
    // A project that exists but has no builds is not an error.
    let none = ick.icktool(&["build", "list", "--project", "hello"]).ok();
    assert!(none.stdout.contains("no builds"), "{none}");
    ick.icktool(&["build", "show", "nosuch"])
        .fails(2, "no build \"nosuch\"");
}

#[test]
fn triggered_by_names_the_client_not_its_id() {
    let ick = Ick::start(0);
    ick.icktool(&["apply", "-f", s(&repo_root().join("examples/hello"))])
        .ok();
    ick.icktool(&["trigger", "hello"]).ok();
    let bot = ick.dir.path().join("bot.yaml");
    ick.icktool(&[
        "client",
        "create",
        "ci-bot",
        "--scope",
        "builds:trigger",
        "--scope",
        "builds:read",
        "--write-config",
        s(&bot),
    ])
    .ok();
    // Without a role on the project, the scope alone does not trigger.
    common::icktool(&bot, &["trigger", "hello"], &[]).fails(2, "needs the role developer");
    ick.icktool(&["member", "add", "hello", "client:ci-bot", "developer"])
        .ok();
    common::icktool(&bot, &["trigger", "hello"], &[]).ok();

    let first = ick.icktool(&["build", "show", "hello/1"]).ok();
    assert!(first.stdout.contains(" by test-admin\n"), "{first}");
    assert!(!first.stdout.contains(&ick.idp.admin.id), "{first}");
    assert_eq!(build(&ick, "hello/2").build.triggered_by, "ci-bot");
    let list = ick.icktool(&["build", "list"]).ok();
    assert!(
        list.stdout.contains("ci-bot") && list.stdout.contains("test-admin"),
        "{list}"
    );
}

#[test]
fn a_node_message_does_not_repeat_its_status() {
    let ick = Ick::start(1);
    let file = definitions(
        &ick,
        "f.yaml",
        "pipelines:\n\
         \x20 - pipeline: fails\n    actions: [{shell: 'exit 3'}]\n\
         \x20 - pipeline: after\n    needs: [fails]\n    actions: [{shell: 'echo never'}]\n\
         projects:\n  - project: f\n    pipelines: [fails, after]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let run = ick.icktool(&["trigger", "f", "--follow"]);
    assert_eq!(run.code(), 1, "{run}\n{}", ick.logs());
    assert!(
        run.stderr
            .contains("<-- after/1 skipped: fails action 1 failed\n"),
        "{run}"
    );
    assert!(!run.stderr.contains("skipped: skipped"), "{run}");
    let shown = ick.icktool(&["build", "show", "f/1"]).ok();
    assert!(!shown.stdout.contains("skipped: skipped"), "{shown}");
    assert!(shown.stdout.contains("fails action 1 failed"), "{shown}");

    let marker = format!("601.{}", std::process::id());
    let slow = definitions(
        &ick,
        "slow.yaml",
        &format!(
            "pipeline: slow\nactions: [{{shell: 'sleep {marker}'}}]\n---\n\
             project: slow\npipelines: [slow]\n"
        ),
    );
    ick.icktool(&["apply", "-f", s(&slow)]).ok();
    let follower = ick.spawn(&["trigger", "slow", "--follow"]);
    wait_for(Duration::from_secs(60), "the action to run", || {
        let view = common::try_build(&ick, "slow")?;
        (view.nodes[0].status == NodeStatus::Running && process_running(&marker)).then_some(())
    });
    ick.icktool(&["build", "cancel", "slow"]).ok();
    let run = follower.wait(Duration::from_secs(60));
    assert_eq!(run.code(), 1, "{run}\n{}", ick.logs());
    assert!(
        run.stderr.contains("<-- slow/1 cancelled") && !run.stderr.contains("cancelled: cancelled"),
        "{run}"
    );
}

#[test]
fn trigger_follow_with_output_json_prints_json_lines() {
    let ick = Ick::start(1);
    ick.icktool(&["apply", "-f", s(&repo_root().join("examples/hello"))])
        .ok();
    let run = ick.icktool(&["trigger", "hello", "--follow", "--output", "json"]);
    assert_eq!(run.code(), 0, "{run}\n{}", ick.logs());
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{run}"))
        })
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(names.len(), events.len(), "{run}");
    assert_eq!(names.first(), Some(&"triggered"), "{run}");
    assert_eq!(names.last(), Some(&"end"), "{run}");
    assert_eq!(events[events.len() - 1]["data"]["status"], "succeeded");
    assert_eq!(events[0]["data"]["number"], 1);
    let output: String = events
        .iter()
        .filter(|e| e["event"] == "chunk")
        .filter_map(|e| e["data"]["data"].as_str())
        .collect();
    assert!(output.contains("hello, world, from build 1"), "{run}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "node" && e["data"]["status"] == "succeeded"),
        "{run}"
    );
    // Nothing for people is mixed in.
    assert!(
        !run.stderr.contains("-->") && !run.stderr.contains("following its log"),
        "{run}"
    );
}

#[test]
fn build_show_warns_when_the_project_notifies_and_no_mail_is_configured() {
    let notifying = "pipeline: p\nactions: [{shell: 'true'}]\n---\n\
                     project: n\npipelines: [p]\nnotify: [dev@example.org]\n---\n\
                     project: quiet\npipelines: [p]\n";
    let ick = Ick::start(0);
    let file = definitions(&ick, "n.yaml", notifying);
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    ick.icktool(&["trigger", "n"]).ok();
    ick.icktool(&["trigger", "quiet"]).ok();
    let shown = ick.icktool(&["build", "show", "n"]).ok();
    assert!(
        shown.stderr.contains(
            "warning: project n notifies dev@example.org, but the controller has no `mail:` configured"
        ),
        "{shown}"
    );
    assert!(
        !shown.stdout.contains("warning"),
        "stdout stays the build: {shown}"
    );
    assert!(!build(&ick, "n").mail_configured);
    let quiet = ick.icktool(&["build", "show", "quiet"]).ok();
    assert!(!quiet.stderr.contains("warning"), "{quiet}");

    // A controller with mail: no warning.
    let mailing = Ick::start_with(0, |c| {
        c["public_url"] = "http://ick.example.org".into();
        c["mail"] = serde_yaml::from_str(
            "{host: 127.0.0.1, port: 9, tls: none, from: 'Ick <ick@example.org>'}",
        )
        .expect("yaml");
    });
    let file = definitions(&mailing, "n.yaml", notifying);
    mailing.icktool(&["apply", "-f", s(&file)]).ok();
    mailing.icktool(&["trigger", "n"]).ok();
    let shown = mailing.icktool(&["build", "show", "n"]).ok();
    assert!(!shown.stderr.contains("warning"), "{shown}");
    assert!(build(&mailing, "n").mail_configured);
}

/// The settings the README's "Run Ick as separate services" says to change
/// in `worker-manager.yaml` (the rest stays as `deploy/config/` has it).
fn readme_worker_settings() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Run Ick as separate services")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README has the section");
    let mut lines = section
        .lines()
        .skip_while(|l| !l.contains("# worker-manager.yaml:"));
    let first = lines
        .next()
        .expect("the section names worker-manager.yaml's settings");
    let mut text = first
        .split_once("worker-manager.yaml:")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default();
    // Continuation lines: comments without a file name of their own.
    for line in lines {
        let line = line.trim_start();
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        if comment.contains(".yaml:") || comment.trim().is_empty() {
            break;
        }
        text.push(',');
        text.push_str(comment);
    }
    text.split(',')
        .filter_map(|part| {
            let word = part.trim().split([':', ' ']).next()?.trim();
            // Settings are snake_case words: prose around them is not.
            (word.contains('_') && word.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .then(|| word.to_string())
        })
        .collect()
}

/// A worker-manager run as `nobody`, killed when dropped.
struct Nobody(Child);

impl Drop for Nobody {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).expect("chown to nobody");
}

#[test]
fn the_readme_worker_settings_let_a_non_root_worker_start() {
    let settings = readme_worker_settings();
    assert!(
        settings.iter().any(|s| s == "workspace_root"),
        "{settings:?}"
    );
    let ick = Ick::start(0);
    let top = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir: PathBuf = top.path().join("home");
    std::fs::create_dir(&dir).expect("mkdir");
    chown_nobody(&dir);
    let name = format!("readme-{}", std::process::id());
    let credentials = ick.idp.create_worker_client(
        &name,
        &name,
        &[],
        &["work:run", "blobs:read", "blobs:write"],
    );
    let secret = dir.join("worker-secret");
    std::fs::write(&secret, format!("{}\n", credentials.secret)).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    chown_nobody(&secret);

    let text = std::fs::read_to_string(repo_root().join("deploy/config/worker-manager.yaml"))
        .expect("example config");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    // What differs in a test: its addresses and a name of its own.
    config["name"] = name.as_str().into();
    config["controller"] = ick.controller.url().into();
    config["artifact_store"] = ick.store.url().into();
    config["idp"]["token_url"] = ick.idp.token_url().into();
    config["http"]["listen"] = "127.0.0.1:0".into();
    config["labels"] = serde_yaml::Value::Sequence(vec![]);
    // What the README says to set, set as it says.
    let path = |p: &Path| serde_yaml::Value::from(p.to_string_lossy().as_ref());
    for setting in &settings {
        match setting.as_str() {
            "workspace_root" => config["workspace_root"] = path(&dir.join("workspaces")),
            "systree_root" => config["systree_root"] = path(&dir.join("systrees")),
            "plugin_dir" => config["plugin_dir"] = path(&dir.join("plugins")),
            "client_id" => config["idp"]["client_id"] = credentials.id.as_str().into(),
            "client_secret_file" => config["idp"]["client_secret_file"] = path(&secret),
            other => panic!("the README names {other:?}, which this test does not know"),
        }
    }
    let file = dir.join("worker-manager.yaml");
    std::fs::write(&file, serde_yaml::to_string(&config).expect("yaml")).expect("config");
    chown_nobody(&file);
    let log = dir.join("worker.log");
    let out = std::fs::File::create(&log).expect("log");
    use std::os::unix::process::CommandExt;
    let child = Command::new(bin_path("ick-worker-manager"))
        .arg("--config")
        .arg(&file)
        .current_dir(&dir)
        .env("HOME", &dir)
        .env_remove("ICK_WORKER_CLIENT_SECRET")
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start the worker-manager as nobody");
    let mut worker = Nobody(child);
    wait_for(Duration::from_secs(60), "the worker to connect", || {
        if let Ok(Some(status)) = worker.0.try_wait() {
            panic!(
                "the worker-manager ({settings:?} set as the README says) exited {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let workers: Vec<WorkerInfo> = ick.icktool(&["workers", "--output", "json"]).ok().json();
        workers.iter().any(|w| w.name == name).then_some(())
    });
    // And it runs a build.
    let file = definitions(
        &ick,
        "r.yaml",
        "pipeline: r\nactions: [{shell: 'echo as $(id -un)'}]\n---\nproject: r\npipelines: [r]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let run = ick.icktool(&["trigger", "r", "--follow"]);
    assert_eq!(run.code(), 0, "{run}");
    assert!(run.stdout.contains("as nobody"), "{run}");
    assert_eq!(build(&ick, "r").build.status, BuildStatus::Succeeded);
}
