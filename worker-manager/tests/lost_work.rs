//! Work is lost only when its worker is: a controller that was down longer
//! than the lease lets its workers come back; a dead worker is found
//! within seconds, a frozen one is not taken for dead; a lost attempt is
//! recorded where people look.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Env, SOON, eventually};
use ick_api::controller::{BuildStatus, NodeStatus};
use ick_api::work::WorkerState;
use sqlx::Connection;

/// Lines in `path` (a file actions append to, outside their workspace).
fn runs(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_down_longer_than_the_lease_restarts_no_healthy_work() {
    let mut env = Env::start_with(|c| {
        c["work"]["lease"] = "6s".into();
        c["work"]["worker_timeout"] = "10s".into();
    })
    .await;
    let _worker = env.worker().slots(2).start();
    let marks = tempfile::tempdir().expect("tempdir");
    let (long, short) = (marks.path().join("long"), marks.path().join("short"));
    env.admin
        .pipeline(
            "long",
            &format!(
                "actions: [{{shell: 'echo run >> {}; sleep 16'}}]",
                long.display()
            ),
        )
        .await;
    env.admin
        .pipeline(
            "short",
            &format!(
                "actions: [{{shell: 'echo run >> {}; sleep 3'}}]",
                short.display()
            ),
        )
        .await;
    env.admin
        .project("outage", "pipelines: [long, short]")
        .await;
    let build = env.admin.trigger("outage").await;
    eventually(SOON, "both actions running", || async {
        (runs(&long) == 1 && runs(&short) == 1).then_some(())
    })
    .await;

    // Down for twice the lease: "short" ends meanwhile, "long" runs on.
    env.controller.process.kill();
    tokio::time::sleep(Duration::from_secs(12)).await;
    env.controller.start_again();

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
    for node in &view.nodes {
        assert_eq!(node.status, NodeStatus::Succeeded);
        assert_eq!(node.attempt, 1, "{} ran again: {node:#?}", node.pipeline);
    }
    assert_eq!(runs(&long), 1, "the running action was started over");
    assert_eq!(
        runs(&short),
        1,
        "the action that ended in the outage ran again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_found_by_its_dropped_connection_before_its_lease_ends() {
    // The defaults, but for a lease far longer than the test's wait: only
    // the dropped presence connection can find the dead worker in time.
    let env = Env::start_with(|c| c["work"]["lease"] = "60s".into()).await;
    let mut first = env.worker().start();
    let marks = tempfile::tempdir().expect("tempdir");
    let mark = marks.path().join("first");
    env.project(
        "found",
        &format!(
            "  - shell: 'if [ -e {mark} ]; then echo again; else touch {mark}; exec sleep 600; fi'\n",
            mark = mark.display()
        ),
    )
    .await;
    let build = env.admin.trigger("found").await;
    eventually(SOON, "the first attempt running", || async {
        mark.exists().then_some(())
    })
    .await;
    let _second = env.worker().start();
    let killed = std::time::Instant::now();
    first.kill();
    let view = env
        .admin
        .wait_build(&build.id, Duration::from_secs(40))
        .await;
    let recovered = killed.elapsed();
    eprintln!("a killed worker's action ran again after {recovered:?}");
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
    let node = &view.nodes[0];
    assert_eq!(node.attempt, 2);
    assert_eq!(node.lost_attempts.len(), 1, "{node:#?}");
    assert!(
        node.lost_attempts[0]
            .reason
            .contains("dropped its connection and did not come back"),
        "{node:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_for_eight_seconds_keeps_its_work() {
    // The controller's defaults (but for how often it looks).
    let env = Env::start().await;
    let worker = env.worker().start();
    env.project("frozen", "  - shell: 'echo before; sleep 12; echo after'\n")
        .await;
    let build = env.admin.trigger("frozen").await;
    env.wait_log(&build.id, "before").await;
    worker.process.signal(nix::sys::signal::Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(8)).await;
    worker.process.signal(nix::sys::signal::Signal::SIGCONT);
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
    let node = &view.nodes[0];
    assert_eq!(node.attempt, 1, "a frozen worker lost its work: {node:#?}");
    assert!(node.lost_attempts.is_empty(), "{node:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_says_it_is_draining_then_gone_and_is_not_counted_busy() {
    let env = Env::start().await;
    let mut worker = env
        .worker()
        .edit(|c| c["drain_timeout"] = "60s".into())
        .start();
    let marks = tempfile::tempdir().expect("tempdir");
    let release = marks.path().join("release");
    env.project(
        "draining",
        &format!(
            "  - shell: 'echo started; while [ ! -e {release} ]; do sleep 0.1; done'\n",
            release = release.display()
        ),
    )
    .await;
    env.project("waiting", "  - shell: 'true'\n").await;
    let build = env.admin.trigger("draining").await;
    env.wait_log(&build.id, "started").await;
    worker.process.signal(nix::sys::signal::Signal::SIGTERM);
    let name = worker.name.clone();
    let state = |workers: Vec<ick_api::work::WorkerInfo>| {
        workers
            .into_iter()
            .find(|w| w.name == name)
            .map(|w| w.state)
    };
    eventually(SOON, "the worker listed as draining", || async {
        (state(env.workers().await) == Some(WorkerState::Draining)).then_some(())
    })
    .await;
    // A build queued meanwhile says why it waits: no worker takes work,
    // not "all busy".
    let waiting = env.admin.trigger("waiting").await;
    let why = env.admin.build(&waiting.id).await.nodes[0]
        .waiting_for
        .clone();
    assert_eq!(
        why,
        Some(format!("no worker takes work: {name} is draining")),
        "{why:?}"
    );

    std::fs::write(&release, "").expect("release");
    let status = worker.terminate(SOON).expect("the worker exits");
    assert!(status.success(), "{status}");
    eventually(SOON, "the worker listed as gone", || async {
        (state(env.workers().await) == Some(WorkerState::Gone)).then_some(())
    })
    .await;
    let view = env.admin.build(&build.id).await;
    assert_eq!(
        view.build.status,
        BuildStatus::Succeeded,
        "{:#?}",
        view.nodes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_gone_long_ago_are_listed_only_when_all_are_asked_for() {
    let env = Env::start().await;
    let mut worker = env.worker().start();
    eventually(SOON, "the worker listed", || async {
        env.workers()
            .await
            .iter()
            .any(|w| w.name == worker.name && w.state == WorkerState::Online)
            .then_some(())
    })
    .await;
    worker.terminate(SOON).expect("the worker exits");
    // Two hours ago, as far as the controller knows.
    let mut db = sqlx::PgConnection::connect(env.controller.database_url())
        .await
        .expect("the controller's database");
    sqlx::query("UPDATE workers SET last_seen = last_seen - 7200000, left_at = left_at - 7200000")
        .execute(&mut db)
        .await
        .expect("age the worker");
    assert!(
        !env.workers().await.iter().any(|w| w.name == worker.name),
        "a worker gone for two hours is listed"
    );
    let all: Vec<ick_api::work::WorkerInfo> = env.admin.get("/workers?all=true").await;
    let listed = all
        .iter()
        .find(|w| w.name == worker.name)
        .expect("listed with all");
    assert_eq!(listed.state, WorkerState::Gone);
}
