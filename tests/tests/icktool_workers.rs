//! Several worker-managers under icktool: a diamond graph shared by two
//! workers, and a build that survives a worker killed in the middle of an
//! action.

mod common;

use std::time::Duration;

use common::{Ick, build, definitions, s, wait_for};
use ick_api::controller::{BuildStatus, NodeStatus};

#[test]
fn two_workers_share_a_diamond_graph() {
    let ick = Ick::start(2);
    let barrier = tempfile::tempdir().expect("tempdir");
    // left and right each wait for the other to have started: on one
    // worker alone (one slot each) they would wait in vain and fail.
    let meet = |me: &str, other: &str| {
        format!(
            "{{shell: 'touch \"$barrier/{me}\"; for i in $(seq 600); do if [ -e \"$barrier/{other}\" ]; \
             then echo {me} met {other}; exit 0; fi; sleep 0.1; done; echo {other} never came; exit 1'}}"
        )
    };
    let file = definitions(
        &ick,
        "diamond.yaml",
        &format!(
            "pipelines:\n\
             \x20 - pipeline: top\n    actions: [{{shell: 'echo top'}}]\n\
             \x20 - pipeline: left\n    needs: [top]\n    parameters: [barrier]\n    actions: [{left}]\n\
             \x20 - pipeline: right\n    needs: [top]\n    parameters: [barrier]\n    actions: [{right}]\n\
             \x20 - pipeline: bottom\n    needs: [left, right]\n    actions: [{{shell: 'echo bottom'}}]\n\
             projects:\n  - project: diamond\n    pipelines: [top, left, right, bottom]\n",
            left = meet("left", "right"),
            right = meet("right", "left"),
        ),
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let run = ick.icktool(&[
        "trigger",
        "diamond",
        "--param",
        &format!("barrier={}", s(barrier.path())),
        "--follow",
    ]);
    assert_eq!(run.code(), 0, "{run}\n{}", ick.logs());
    assert!(
        run.stdout.contains("[left] left met right")
            && run.stdout.contains("[right] right met left"),
        "{run}"
    );
    let view = build(&ick, "diamond/1");
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    let node = |p: &str| view.pipeline(p)[0].clone();
    let (top, left, right, bottom) = (node("top"), node("left"), node("right"), node("bottom"));
    assert_ne!(left.worker, right.worker, "left and right ran side by side");
    let names: Vec<Option<String>> = ick.workers.iter().map(|w| Some(w.name.clone())).collect();
    assert!(names.contains(&left.worker) && names.contains(&right.worker));
    let ended = |n: &ick_api::controller::NodeView| n.ended_at.expect("ended");
    let started = |n: &ick_api::controller::NodeView| n.started_at.expect("started");
    assert!(ended(&top) <= started(&left) && ended(&top) <= started(&right));
    assert!(ended(&left) <= started(&bottom) && ended(&right) <= started(&bottom));
}

#[test]
fn a_build_survives_a_worker_killed_in_the_middle_of_an_action() {
    let mut ick = Ick::start_with(2, |c| {
        c["work"]["lease"] = "3s".into();
        c["work"]["reap_interval"] = "200ms".into();
    });
    let dir = tempfile::tempdir().expect("tempdir");
    // The first attempt blocks (until the test releases its orphan at the
    // end, or the mark's directory is gone, should the test fail); the
    // attempt after the requeue finds the mark and succeeds.
    let file = definitions(
        &ick,
        "survive.yaml",
        "pipeline: survive\nparameters: [mark]\nactions:\n  - shell: |\n      \
         if [ -e \"$mark/first\" ]; then echo second attempt; exit 0; fi\n      \
         echo first attempt; touch \"$mark/first\"\n      \
         for i in $(seq 1200); do [ -e \"$mark/release\" ] && exit 7; [ -d \"$mark\" ] || exit 7; sleep 0.1; done\n      \
         exit 9\n\
         ---\nproject: survive\npipelines: [survive]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let follower = ick.spawn(&[
        "trigger",
        "survive",
        "--param",
        &format!("mark={}", s(dir.path())),
        "--follow",
    ]);
    let victim = wait_for(Duration::from_secs(60), "the first attempt to run", || {
        let view = common::try_build(&ick, "survive")?;
        let n = &view.nodes[0];
        // Killed once its first output has reached the controller.
        let said = n.status == NodeStatus::Running
            && dir.path().join("first").exists()
            && ick
                .icktool(&["log", "survive"])
                .stdout
                .contains("first attempt");
        said.then(|| n.worker.clone()).flatten()
    });
    let index = ick
        .workers
        .iter()
        .position(|w| w.name == victim)
        .expect("one of ours");
    ick.workers[index].kill();
    let survivor = ick.workers[1 - index].name.clone();

    let run = follower.wait(Duration::from_secs(90));
    std::fs::write(dir.path().join("release"), "").expect("release the orphan");
    assert_eq!(run.code(), 0, "{run}\n{}", ick.logs());
    assert!(
        run.stdout.contains("first attempt") && run.stdout.contains("second attempt"),
        "{run}"
    );
    assert!(run.stderr.contains("[attempt 2]"), "{run}");
    let view = build(&ick, "survive/1");
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    assert_eq!(view.nodes[0].attempt, 2);
    assert_eq!(view.nodes[0].worker.as_deref(), Some(survivor.as_str()));

    // The lost attempt is on record, where people look.
    let lost = &view.nodes[0].lost_attempts;
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        (lost[0].attempt, lost[0].worker.as_str()),
        (1, victim.as_str())
    );
    assert_eq!(lost[0].again_on.as_deref(), Some(survivor.as_str()));
    let shown = ick.icktool(&["build", "show", "survive/1"]).ok();
    let line = format!("survive/1: attempt 1 lost: worker {victim} ");
    assert!(shown.stdout.contains(&line), "{shown}");
    assert!(
        shown
            .stdout
            .contains(&format!("; started again on {survivor}")),
        "{shown}"
    );
    // The log keeps the attempts apart, on stdout too.
    let log = ick.icktool(&["log", "survive/1"]).ok();
    let first = log
        .stdout
        .find("==> survive/1 (attempt 1)\nfirst attempt\n");
    let lost_line = log.stdout.find("==> attempt 1 lost: worker ");
    let second = log
        .stdout
        .find("==> survive/1 (attempt 2)\nsecond attempt\n");
    assert!(
        first.is_some() && first < lost_line && lost_line < second,
        "{log}"
    );
}
