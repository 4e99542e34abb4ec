//! Builds driven by icktool: trigger, follow, logs, failure, cancel, bad
//! triggers; the five real binaries with one worker-manager.

mod common;

use std::time::Duration;

use common::{Ick, build, definitions, process_running, s, wait_for};
use ick_api::controller::{BuildList, BuildStatus, BuildSummary, LogChunk, NodeStatus};
use ick_api::work::WorkerInfo;
use ick_tests::repo_root;

#[test]
fn trigger_follow_streams_the_log_and_exits_0_when_the_build_succeeds() {
    let ick = Ick::start(1);
    ick.icktool(&["apply", "-f", s(&repo_root().join("examples/hello"))])
        .ok();
    let run = ick.icktool(&[
        "trigger",
        "hello",
        "--param",
        "greeting=bonjour",
        "--follow",
    ]);
    assert_eq!(run.code(), 0, "{run}\n{}", ick.logs());
    assert!(
        run.stdout
            .contains("[hello-build] bonjour, world, from build 1\n"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("[hello-check] hello-check: the archive came through\n"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("--> hello-build/1 write the greeting (on ")
            && run.stderr.contains("<-- hello-check/2 succeeded")
            && run.stderr.contains("build hello #1 succeeded"),
        "{run}"
    );

    let view = build(&ick, "hello/1");
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    assert_eq!(view.build.parameters["greeting"], "bonjour");
    let worker = &ick.workers[0].name;
    assert!(
        view.nodes
            .iter()
            .all(|n| n.status == NodeStatus::Succeeded && n.worker.as_ref() == Some(worker)),
        "{view:?}"
    );
    // The same build by its id and as the project's latest.
    assert_eq!(build(&ick, &view.build.id).build.number, 1);
    let shown = ick.icktool(&["build", "show", "hello"]).ok();
    assert!(
        shown.stdout.starts_with("build hello/1  succeeded")
            && shown.stdout.contains("hello-check/2"),
        "{shown}"
    );

    let log = ick.icktool(&["log", "hello/1"]).ok();
    assert!(
        log.stdout.contains("bonjour, world") && log.stdout.contains("archive came through"),
        "{log}"
    );
    // Which action said it goes to stderr: stdout is the output alone.
    assert!(!log.stdout.contains("==>"), "{log}");
    assert!(
        log.stderr.contains("==> hello-build/1 (attempt 1)"),
        "{log}"
    );
    let chunks: Vec<LogChunk> = ick
        .icktool(&["log", "hello/1", "--output", "json"])
        .ok()
        .json();
    let text: String = chunks.iter().map(|c| c.data.as_str()).collect();
    assert!(text.contains("bonjour, world"), "{chunks:?}");
    let one = ick
        .icktool(&["log", "hello/1", "--node", "hello-check/2"])
        .ok();
    assert!(
        one.stdout.contains("archive came through") && !one.stdout.contains("wrote out/facts.json"),
        "{one}"
    );
    ick.icktool(&["log", "hello/1", "--node", "hello-check/9"])
        .fails(2, "it has hello-build/1, hello-build/2");
    // Following an ended build replays it, each action's start and end,
    // and exits as it ended.
    let again = ick.icktool(&["log", "--follow", "hello"]).ok();
    assert!(again.stdout.contains("bonjour, world"), "{again}");
    assert!(
        again.stderr.contains("--> hello-build/1") && again.stderr.contains("<-- hello-build/1"),
        "{again}"
    );

    let list: BuildList = ick
        .icktool(&["build", "list", "--project", "hello", "--output", "json"])
        .ok()
        .json();
    assert_eq!(list.builds.len(), 1);
    let workers: Vec<WorkerInfo> = ick.icktool(&["workers", "--output", "json"]).ok().json();
    assert!(workers.iter().any(|w| &w.name == worker), "{workers:?}");
    let archived = ick.icktool(&["ref", "get", "hello/output"]).ok();
    assert!(archived.stdout.starts_with("sha256:"), "{archived}");
}

#[test]
fn a_failing_build_exits_1_and_skips_what_depends_on_it() {
    let ick = Ick::start(1);
    let file = definitions(
        &ick,
        "f.yaml",
        "pipelines:\n\
         \x20 - pipeline: fails\n    actions: [{shell: 'echo before; exit 3'}, {shell: 'echo never'}]\n\
         \x20 - pipeline: after\n    needs: [fails]\n    actions: [{shell: 'echo never either'}]\n\
         projects:\n  - project: f\n    pipelines: [fails, after]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let run = ick.icktool(&["trigger", "f", "--follow"]);
    assert_eq!(run.code(), 1, "{run}\n{}", ick.logs());
    assert!(
        run.stdout.contains("before") && !run.stdout.contains("never"),
        "{run}"
    );
    assert!(
        run.stderr.contains("<-- fails/1 failed (exit code 3)")
            && run.stderr.contains("build f #1 failed"),
        "{run}"
    );
    let view = build(&ick, "f/1");
    assert_eq!(view.build.status, BuildStatus::Failed);
    let after = view.pipeline("after");
    assert_eq!(after[0].status, NodeStatus::Skipped);
    // `log --follow` of the ended build says the same with its exit code.
    ick.icktool(&["log", "f", "--follow"])
        .fails(1, "build f #1 failed");
}

#[test]
fn cancel_stops_a_running_build_and_its_follower_exits_1() {
    let ick = Ick::start(1);
    let marker = format!("600.{}", std::process::id());
    let file = definitions(
        &ick,
        "slow.yaml",
        &format!(
            "pipeline: slow\nactions: [{{shell: 'echo started; sleep {marker}'}}]\n---\n\
             project: slow\npipelines: [slow]\n"
        ),
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let follower = ick.spawn(&["trigger", "slow", "--follow"]);
    wait_for(Duration::from_secs(60), "the action to run", || {
        let view = common::try_build(&ick, "slow")?;
        (view.nodes[0].status == NodeStatus::Running && process_running(&marker)).then_some(())
    });
    let cancelled = ick.icktool(&["build", "cancel", "slow"]).ok();
    assert!(cancelled.stdout.contains("cancel requested"), "{cancelled}");
    let run = follower.wait(Duration::from_secs(60));
    assert_eq!(run.code(), 1, "{run}\n{}", ick.logs());
    assert!(run.stdout.contains("started"), "{run}");
    assert!(run.stderr.contains("build slow #1 cancelled"), "{run}");
    assert_eq!(build(&ick, "slow/1").build.status, BuildStatus::Cancelled);
    wait_for(
        Duration::from_secs(30),
        "the action's process to end",
        || (!process_running(&marker)).then_some(()),
    );
}

#[test]
fn a_follower_says_why_a_build_waits() {
    let ick = Ick::start(1);
    let file = definitions(
        &ick,
        "gpu.yaml",
        "pipeline: gpu\nactions: [{shell: 'true'}]\n---\n\
         project: gpu\npipelines: [gpu]\nruns_on: [gpu]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let follower = ick.spawn(&["trigger", "gpu", "--follow"]);
    wait_for(Duration::from_secs(60), "the follower to say why", || {
        follower
            .stderr_so_far()
            .contains("(waiting: no connected worker has the labels gpu)")
            .then_some(())
    });
    ick.icktool(&["build", "cancel", "gpu"]).ok();
    let run = follower.wait(Duration::from_secs(60));
    assert_eq!(run.code(), 1, "{run}");
    assert_eq!(
        run.stderr.matches("(waiting:").count(),
        1,
        "said once, not at every look: {run}"
    );
}

#[test]
fn bad_triggers_are_refused_and_start_nothing() {
    let ick = Ick::start(0);
    ick.icktool(&["apply", "-f", s(&repo_root().join("examples/hello"))])
        .ok();
    ick.icktool(&["trigger", "nope"])
        .fails(2, "no project \"nope\"");
    ick.icktool(&["trigger", "hello", "--param", "9lives=1"])
        .fails(2, "\"9lives\" is not a parameter name");
    ick.icktool(&["trigger", "hello", "-p", "greeting"])
        .fails(2, "\"greeting\" is not KEY=VALUE");
    ick.icktool(&["build", "show", "hello"])
        .fails(2, "no build \"hello\"");
    let list: BuildList = ick
        .icktool(&["build", "list", "--output", "json"])
        .ok()
        .json();
    assert!(list.builds.is_empty(), "{list:?}");

    // A good trigger, without a worker: queued, and it says why it waits.
    let queued: BuildSummary = ick
        .icktool(&["trigger", "hello", "--output", "json"])
        .ok()
        .json();
    assert_eq!(queued.status, BuildStatus::Queued);
    let shown = ick.icktool(&["build", "show", &queued.id]).ok();
    assert!(shown.stdout.contains("no worker is connected"), "{shown}");
    let table = ick.icktool(&["build", "list"]).ok();
    assert!(
        table.stdout.contains("hello/1") && table.stdout.contains("queued"),
        "{table}"
    );
}

#[test]
fn a_follower_survives_a_controller_restart_and_prints_everything_once() {
    let mut ick = Ick::start(1);
    let mark = tempfile::tempdir().expect("tempdir");
    let file = definitions(
        &ick,
        "wait.yaml",
        "pipeline: wait\nparameters: [mark]\nactions:\n  - shell: |\n      \
         echo started\n      \
         while [ ! -e \"$mark/go\" ]; do sleep 0.05; done\n      \
         echo finished\n\
         ---\nproject: wait\npipelines: [wait]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    ick.icktool(&[
        "trigger",
        "wait",
        "--param",
        &format!("mark={}", s(mark.path())),
    ])
    .ok();
    wait_for(Duration::from_secs(60), "the action to start", || {
        ick.icktool(&["log", "wait"])
            .stdout
            .contains("started")
            .then_some(())
    });
    let follower = ick.spawn(&["log", "--follow", "wait"]);
    wait_for(
        Duration::from_secs(30),
        "the follower to be following",
        || {
            follower
                .stderr_so_far()
                .contains("--> wait/1")
                .then_some(())
        },
    );
    ick.controller.restart();
    std::fs::write(mark.path().join("go"), "").expect("go");
    let run = follower.wait(Duration::from_secs(90));
    assert_eq!(run.code(), 0, "{run}\n{}", ick.logs());
    assert_eq!(run.stdout, "started\nfinished\n", "each line once:\n{run}");
    assert!(run.stderr.contains("reconnecting"), "{run}");
    assert!(run.stderr.contains("build wait #1 succeeded"), "{run}");
}

#[test]
fn reserved_and_undeclared_parameters_are_refused_and_declared_ones_reach_the_action() {
    let ick = Ick::start(1);
    let sentinel = ick.file("attack/pwned", "");
    std::fs::remove_file(&sentinel).expect("no sentinel yet");
    let evil = ick.file("attack/evil.sh", &format!("touch {}\n", s(&sentinel)));
    let file = definitions(
        &ick,
        "p.yaml",
        "pipelines:\n\
         \x20 - pipeline: say\n    parameters: [greeting]\n    actions: [{shell: 'echo \"said $greeting\"; params'}]\n\
         projects:\n  - project: p\n    parameters: {greeting: hi}\n    pipelines: [say]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let bash_env = format!("BASH_ENV={}", s(&evil));
    for param in [
        bash_env.as_str(),
        "LD_PRELOAD=/nonexistent/evil.so",
        "PATH=/nonexistent",
        "GIT_CONFIG_COUNT=1",
        "PYTHONSTARTUP=/nonexistent/evil.py",
    ] {
        let name = param.split_once('=').expect("k=v").0;
        ick.icktool(&["trigger", "p", "--param", param])
            .fails(2, &format!("{name:?} is reserved"));
    }
    ick.icktool(&["trigger", "p", "--param", "greting=typo"])
        .fails(2, "project \"p\" has no parameter \"greting\": it takes git_commit, git_ref, git_url, greeting");
    let list: BuildList = ick
        .icktool(&["build", "list", "--output", "json"])
        .ok()
        .json();
    assert!(
        list.builds.is_empty(),
        "refused triggers start nothing: {list:?}"
    );

    let run = ick.icktool(&["trigger", "p", "--param", "greeting=bonjour", "--follow"]);
    assert_eq!(run.code(), 0, "{run}\n{}", ick.logs());
    assert!(
        run.stdout.contains("said bonjour") && run.stdout.contains("\"greeting\":\"bonjour\""),
        "{run}"
    );
    assert!(!sentinel.exists(), "BASH_ENV never ran");
}
