//! Ending actions: exit codes, timeouts, cancellation, lost workers and
//! draining — and no process left behind.

mod common;

use std::time::{Duration, Instant};

use common::{Env, SOON, eventually, numbers_after, only_node, sleep_alive};
use ick_api::controller::{BuildStatus, NodeStatus};
use ick_api::work::Outcome;
use nix::sys::signal::Signal;

/// Prints the pids of sleeps in all the places a process can hide: in the
/// background, in a subshell, in a new session (out of the process group),
/// in a new session without the output pipes (a daemon).
const SLEEPERS: &str = r#"      sleep 600 &
      echo "pid: $!"
      ( sleep 600 & echo "pid: $!"; wait ) &
      setsid sleep 600 &
      echo "pid: $!"
      setsid sleep 600 < /dev/null > /dev/null 2>&1 &
      echo "pid: $!"
      sh -c 'echo "pid: $$"; exec sleep 600'
"#;

async fn wait_pids(env: &Env, build_id: &str, count: usize) -> Vec<u32> {
    eventually(SOON, "the action to print its pids", || async {
        let log = env.text(build_id, ick_api::work::Stream::Stdout).await;
        let pids = numbers_after(&log, "pid: ");
        (pids.len() == count).then_some(pids)
    })
    .await
}

/// Every way a process can leave its action: in the background, in a new
/// session, by a double fork (its parent gone), and ignoring SIGTERM.
const DETACHED: &str = r#"      sleep 120 &
      setsid sleep 120 &
      ( ( sleep 120 & ) & )
      bash -c 'trap "" TERM; while true; do sleep 1; done' &
      echo ready
      wait
"#;

/// The live processes whose environment holds `entry` (`NAME=VALUE`).
fn marked(entry: &str) -> Vec<u32> {
    let entry = entry.as_bytes();
    let mut found = Vec::new();
    for dir in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = dir.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        if matches!(state, None | Some("Z")) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|e| e == entry) {
            found.push(pid);
        }
    }
    found
}

/// Builds `project`, whose action has `KILL_TEST: mark` in its `env:`
/// and prints `ready` once all is started; kills the worker with SIGKILL,
/// and checks that within 2 s no process of the action is left (found by
/// that variable in their environment).
async fn kill_the_worker_under(env: &Env, project: &str, mark: &str, at_least: usize) {
    let mut worker = env.worker().start();
    let build = env.admin.trigger(project).await;
    env.wait_log(&build.id, "ready").await;
    let entry = format!("KILL_TEST={mark}");
    let running = eventually(SOON, "the action's processes to start", || async {
        let found = marked(&entry);
        (found.len() >= at_least).then_some(found)
    })
    .await;
    let killed = Instant::now();
    worker.kill();
    eventually(
        Duration::from_secs(2),
        "no process of the killed worker's action to be left",
        || async { marked(&entry).is_empty().then_some(()) },
    )
    .await;
    println!(
        "{project}: {} processes, the last gone {:?} after kill -9 of the worker-manager",
        running.len(),
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_manager_leaves_nothing_of_its_host_actions_running() {
    let env = Env::start().await;
    let mark = uuid::Uuid::new_v4().to_string();
    let actions = format!("  - env: {{KILL_TEST: {mark}}}\n    shell: |\n{DETACHED}");
    env.project("detached", &actions).await;
    // bash, its three sleeps and the looping bash with its sleep.
    kill_the_worker_under(&env, "detached", &mark, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_manager_leaves_nothing_of_its_sandboxed_actions_running() {
    let env = Env::start().await;
    let mark = uuid::Uuid::new_v4().to_string();
    // A system tree with what the action runs, and their libraries.
    env.admin
        .pipeline(
            "systree",
            &common::systree_pipeline(&["bash", "sleep", "setsid"], "test/detached-systree"),
        )
        .await;
    env.admin
        .pipeline(
            "detached",
            &format!(
                "needs: [systree]\nactions:\n  - populate: {{ref: test/detached-systree, into: systree}}\n  - where: container\n    env: {{KILL_TEST: {mark}}}\n    shell: |\n{DETACHED}"
            ),
        )
        .await;
    env.admin
        .project("detached-sandbox", "pipelines: [systree, detached]")
        .await;
    kill_the_worker_under(&env, "detached-sandbox", &mark, 6).await;
}

async fn assert_all_gone(pids: &[u32]) {
    eventually(
        Duration::from_secs(5),
        "every process of the action to end",
        || async { pids.iter().all(|p| !sleep_alive(*p)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_zero_exit_fails_the_node_and_skips_the_rest() {
    let env = Env::start().await;
    let worker = env.worker().start();
    env.project(
        "fails",
        "  - shell: echo started; exit 3\n  - shell: echo never\n",
    )
    .await;
    let view = env.run("fails", SOON).await;
    assert_eq!(view.build.status, BuildStatus::Failed);
    let (first, second) = (&view.nodes[0], &view.nodes[1]);
    assert_eq!(first.status, NodeStatus::Failed);
    assert_eq!(first.outcome, Some(Outcome::Exited));
    assert_eq!(first.exit_code, Some(3));
    assert_eq!(second.status, NodeStatus::Skipped);
    let log = env
        .text(&view.build.id, ick_api::work::Stream::Stdout)
        .await;
    assert_eq!(log, "started\n");
    // The pipeline will not go on here: its workspace is gone.
    eventually(SOON, "the workspace to be removed", || async {
        worker.workspaces().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ends_a_sleep_and_its_children() {
    let env = Env::start().await;
    let _worker = env.worker().edit(|c| c["kill_grace"] = "1s".into()).start();
    // The action ignores SIGTERM (and so do its children): SIGKILL it is.
    env.project(
        "slow",
        &format!("  - timeout: 3s\n    shell: |\n      trap '' TERM\n{SLEEPERS}"),
    )
    .await;
    let started = Instant::now();
    let build = env.admin.trigger("slow").await;
    let pids = wait_pids(&env, &build.id, 5).await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    let node = only_node(&view);
    assert_eq!(view.build.status, BuildStatus::Failed);
    assert_eq!(node.outcome, Some(Outcome::TimedOut));
    assert_eq!(node.message.as_deref(), Some("timed out after 3s"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_all_gone(&pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_build_ends_it_within_five_seconds_leaving_no_process() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    env.project("cancel-me", &format!("  - shell: |\n{SLEEPERS}"))
        .await;
    let build = env.admin.trigger("cancel-me").await;
    let pids = wait_pids(&env, &build.id, 5).await;
    assert!(pids.iter().all(|p| sleep_alive(*p)), "the sleeps run");
    let asked = Instant::now();
    let r = env
        .admin
        .post::<()>(&format!("/builds/{}/cancel", build.id), None)
        .await;
    assert!(r.status().is_success(), "cancel: {}", r.status());
    let view = env.admin.wait_build(&build.id, SOON).await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the build ended {took:?} after the cancel"
    );
    assert_eq!(view.build.status, BuildStatus::Cancelled);
    let node = only_node(&view);
    assert_eq!(node.status, NodeStatus::Cancelled);
    assert_eq!(node.outcome, Some(Outcome::Cancelled));
    assert_all_gone(&pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_left_behind_by_a_finished_action_is_stopped() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    env.project(
        "leaves",
        r#"  - shell: |
      setsid sleep 600 < /dev/null > /dev/null 2>&1 &
      echo "pid: $!"
      echo done
"#,
    )
    .await;
    let view = env.run("leaves", SOON).await;
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
    let pids = wait_pids(&env, &view.build.id, 1).await;
    assert_all_gone(&pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_action_is_replaced_and_the_build_finishes() {
    let env = Env::start_with(|c| c["work"]["lease"] = "3s".into()).await;
    let mut first = env.worker().start();
    // The first attempt leaves a long sleep behind when its worker dies.
    let flags = tempfile::tempdir().expect("tempdir");
    let flag = flags.path().join("first-attempt");
    env.project(
        "survive",
        &format!(
            r#"  - shell: |
      echo started
      if [ ! -e {flag} ]; then
        touch {flag}
        sh -c 'echo "pid: $$"; exec sleep 600'
      fi
      echo finished
"#,
            flag = flag.display()
        ),
    )
    .await;
    let build = env.admin.trigger("survive").await;
    let pids = wait_pids(&env, &build.id, 1).await;
    let second = env.worker().start();
    first.kill();
    let view = env
        .admin
        .wait_build(&build.id, Duration::from_secs(60))
        .await;
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
    let node = only_node(&view);
    assert_eq!(node.attempt, 2, "the action ran again");
    assert_eq!(node.worker.as_deref(), Some(second.name.as_str()));
    let log = env.log(&build.id).await;
    let finished: Vec<_> = log
        .iter()
        .filter(|c| c.data.contains("finished"))
        .map(|c| c.attempt)
        .collect();
    assert_eq!(finished, vec![2], "the second attempt finished it");
    // Nothing of the killed worker's action outlived it.
    assert!(
        !sleep_alive(pids[0]),
        "the killed worker's action outlived it"
    );
    first.restart();
    assert!(
        !first
            .log()
            .contains("stopped processes left by an earlier run"),
        "nothing was left to stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_actions_then_cancels_what_is_left() {
    let env = Env::start().await;
    let mut worker = env
        .worker()
        .slots(2)
        .edit(|c| {
            c["drain_timeout"] = "4s".into();
            c["kill_grace"] = "1s".into();
        })
        .start();
    env.admin
        .pipeline(
            "quick",
            "actions: [{shell: 'echo quick-start; sleep 2; echo quick-done'}]",
        )
        .await;
    env.admin
        .pipeline(
            "slow",
            "actions: [{shell: 'echo \"pid: $$\"; exec sleep 600'}]",
        )
        .await;
    env.admin.project("drain", "pipelines: [quick, slow]").await;
    env.project("later", "  - shell: 'true'\n").await;
    let build = env.admin.trigger("drain").await;
    env.wait_log(&build.id, "quick-start").await;
    let pids = wait_pids(&env, &build.id, 1).await;
    worker.process.signal(Signal::SIGTERM);
    let later = env.admin.trigger("later").await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    let quick = &view.pipeline("quick")[0];
    let slow = &view.pipeline("slow")[0];
    assert_eq!(
        quick.status,
        NodeStatus::Succeeded,
        "a running action may finish"
    );
    assert_eq!(slow.status, NodeStatus::Cancelled);
    assert!(
        slow.message
            .as_deref()
            .unwrap_or_default()
            .contains("drain timeout"),
        "{:?}",
        slow.message
    );
    let status = worker.terminate(SOON).expect("the worker exits");
    assert!(status.success(), "{status}");
    assert_all_gone(&pids).await;
    let later = env.admin.build(&later.id).await;
    assert_eq!(
        later.build.status,
        BuildStatus::Queued,
        "a draining worker claims nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_between_two_actions_goes_on_with_the_pipeline() {
    let env = Env::start().await;
    let mut worker = env.worker().start();
    env.project(
        "two-steps",
        "  - shell: 'echo step-one; sleep 1; echo kept > kept.txt'\n  - shell: 'cat kept.txt; echo step-two'\n",
    )
    .await;
    let build = env.admin.trigger("two-steps").await;
    env.wait_log(&build.id, "step-one").await;
    // Drain: the first action finishes, then the worker stops.
    let status = worker.terminate(SOON).expect("the worker exits");
    assert!(status.success(), "{status}");
    worker.restart();
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
    let log = env.log(&build.id).await;
    assert!(log.iter().any(|c| c.data.contains("kept")), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_in_a_pipelines_second_action_reruns_the_pipeline_from_its_start() {
    let env = Env::start_with(|c| c["work"]["lease"] = "3s".into()).await;
    let flags = tempfile::tempdir().expect("tempdir");
    let gate = flags.path().join("gate");
    let mut worker = env.worker().start();
    env.project(
        "two-steps",
        &format!(
            "  - shell: 'echo step-one; echo kept > kept.txt'\n  - shell: 'while [ ! -e {gate} ]; do sleep 0.05; done; cat kept.txt; echo step-two'\n",
            gate = gate.display()
        ),
    )
    .await;
    let build = env.admin.trigger("two-steps").await;
    env.wait_log(&build.id, "step-one").await;
    // The first action has ended; the worker dies while the second runs
    // (claimed: a kill before the claim would only be a restart between
    // actions), so the pipeline starts over (its workspace may be
    // half-changed).
    eventually(SOON, "the second action to run", || async {
        let view = env.admin.build(&build.id).await;
        (view.nodes[1].status == NodeStatus::Running).then_some(())
    })
    .await;
    worker.kill();
    std::fs::write(&gate, "").expect("gate");
    worker.restart();
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
    assert_eq!(
        view.nodes[0].attempt, 2,
        "the pipeline ran again from its first action"
    );
    let log = env.log(&build.id).await;
    assert!(log.iter().any(|c| c.data.contains("kept")), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_of_the_same_name_refuses_to_start_and_harms_nothing() {
    let env = Env::start().await;
    let worker = env.worker().start();
    env.project(
        "sleepy",
        "  - shell: 'echo started; sleep 2; echo finished'\n",
    )
    .await;
    let build = env.admin.trigger("sleepy").await;
    env.wait_log(&build.id, "started").await;
    // The same config again (its health port is 0, so that is no clash):
    // at its start it would stop the first one's action as an orphan.
    let mut second = std::process::Command::new(ick_tests::bin_path("ick-worker-manager"))
        .arg("--config")
        .arg(&worker.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + SOON;
    let exited = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("piped"), &mut stderr)
        .expect("stderr");
    assert!(exited.is_some_and(|s| !s.success()), "{exited:?}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "a worker-manager named \"{}\" already runs on this host",
            worker.name
        )),
        "{stderr}"
    );
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
    let log = env.text(&build.id, ick_api::work::Stream::Stdout).await;
    assert!(log.contains("finished"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actions_supervisor_has_none_of_its_environment_and_outlasts_sigterm() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    // Its parent is the supervisor: the worker's binary, with an empty
    // environment (an action's `env:` could say LD_PRELOAD).
    env.project(
        "parent",
        r#"  - env: {LD_PRELOAD: "", SEEN: "yes"}
    shell: |
      echo "parent: $(tr '\0' '\n' < /proc/$PPID/cmdline | sed -n 2p)"
      echo "parent env: $(tr -cd '\0' < /proc/$PPID/environ | wc -c)"
      echo "own: $SEEN"
      # SIGTERM meant for the worker does not end it before the action.
      kill -TERM $PPID
      sleep 0.2
      kill -0 $PPID && echo "supervisor: still there"
"#,
    )
    .await;
    let view = env.run("parent", SOON).await;
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
    let log = env
        .text(&view.build.id, ick_api::work::Stream::Stdout)
        .await;
    assert_eq!(
        log,
        "parent: --ick-supervise\nparent env: 0\nown: yes\nsupervisor: still there\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_one_action_leaves_a_running_neighbours_processes_alone() {
    // One supervisor serves both slots: what it kills at the end of an
    // action must be that action's. The long one leaves a daemon that no
    // one can tell is its own (no marker, its own session, its parent
    // gone): it stays while the long action runs.
    let env = Env::start().await;
    let _worker = env.worker().slots(2).start();
    env.project(
        "long",
        r#"  - shell: |
      ( setsid env -i sleep 600 < /dev/null > /dev/null 2>&1 & echo "pid: $!" )
      sleep 600 &
      echo "pid: $!"
      wait
"#,
    )
    .await;
    env.project(
        "short",
        r#"  - shell: |
      setsid sleep 600 < /dev/null > /dev/null 2>&1 &
      echo "pid: $!"
"#,
    )
    .await;
    let long = env.admin.trigger("long").await;
    let long_pids = wait_pids(&env, &long.id, 2).await;
    let short = env.run("short", SOON).await;
    assert_eq!(short.build.status, BuildStatus::Succeeded, "{short:#?}");
    assert_all_gone(&wait_pids(&env, &short.build.id, 1).await).await;
    // Well after the short action's end: the long one's are untouched.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for pid in &long_pids {
        assert!(sleep_alive(*pid), "{pid} of the running action was killed");
    }
    let r = env
        .admin
        .post::<()>(&format!("/builds/{}/cancel", long.id), None)
        .await;
    assert!(r.status().is_success(), "cancel: {}", r.status());
    let view = env.admin.wait_build(&long.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Cancelled);
    // The daemon without a marker too, once nothing else runs.
    assert_all_gone(&long_pids).await;
}
