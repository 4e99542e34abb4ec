//! A controller killed mid-build loses nothing it acknowledged.

mod common;

use common::{Env, SOON};
use ick_api::controller::{BuildStatus, LogChunk, NodeStatus, StoredProject};
use ick_tests::idp::Storage;

on_both_storages!(a_controller_killed_mid_build_loses_nothing_it_acknowledged);

async fn a_controller_killed_mid_build_loses_nothing_it_acknowledged(storage: Storage) {
    let mut env = Env::start(storage).await;
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    env.admin.pipeline("b", "actions: [{shell: three}]").await;
    env.admin.project("p", "pipelines: [a, b]").await;
    let first = env.admin.trigger("p").await;
    let second = env.admin.trigger("p").await;
    let (w1, w2) = (env.worker("w1"), env.worker("w2"));
    let x = w1.claim_within(SOON).await;
    let y = w2.claim_within(SOON).await;
    // w1 runs pipeline a, w2 pipeline b.
    let (w1, one, w2, three) = if x.pipeline == "a" {
        (w1, x, w2, y)
    } else {
        (w2, y, w1, x)
    };
    assert_eq!((one.pipeline.as_str(), three.pipeline.as_str()), ("a", "b"));
    w1.output(&one, 0, &["1a\n", "1b\n"]).await;
    w1.finish(&one, 0, 2).await;
    w2.finish(&three, 0, 0).await;
    let two = w1.claim_within(SOON).await;
    w1.output(&two, 0, &["2a\n"]).await;

    env.controller.restart();

    let view = env.admin.build(&first.id).await;
    assert_eq!(view.build.status, BuildStatus::Running);
    let states: Vec<(String, u32, NodeStatus, i64)> = view
        .nodes
        .iter()
        .map(|n| (n.pipeline.clone(), n.index, n.status, n.attempt))
        .collect();
    assert_eq!(
        states,
        vec![
            ("a".into(), 0, NodeStatus::Succeeded, 1),
            ("a".into(), 1, NodeStatus::Running, 1),
            ("b".into(), 0, NodeStatus::Succeeded, 1),
        ]
    );
    let log: Vec<LogChunk> = env.admin.get(&format!("/builds/{}/log", first.id)).await;
    let texts: Vec<&str> = log.iter().map(|c| c.data.as_str()).collect();
    assert_eq!(texts, vec!["1a\n", "1b\n", "2a\n"]);
    let queued = env.admin.build(&second.id).await;
    assert_eq!(queued.build.status, BuildStatus::Queued);
    assert!(
        queued
            .waiting_for
            .unwrap_or_default()
            .contains("concurrency limit")
    );
    let project: StoredProject = env.admin.get("/projects/p").await;
    assert_eq!(project.revision, 1);

    // The worker carries on where it was.
    assert!(!w1.heartbeat(&two).await.cancel);
    w1.output(&two, 1, &["2b\n"]).await;
    w1.finish(&two, 0, 2).await;
    let view = env.admin.wait_build(&first.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    // And the queued build runs.
    let next = w2.claim_within(SOON).await;
    assert_eq!(next.build.id, second.id);
}

on_both_storages!(the_reaper_completes_what_a_controller_stopped_between_two_transactions_left);

/// A claim marks its build running, and the last done ends its build, each
/// in a second transaction after the first committed. Were the controller
/// stopped in between, the reaper finishes the job: simulated here by
/// putting the database in that state.
async fn the_reaper_completes_what_a_controller_stopped_between_two_transactions_left(
    storage: Storage,
) {
    use sqlx::{Connection, Executor};
    let env = Env::start(storage).await;
    env.admin.pipeline("a", "actions: [{shell: one}]").await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let w = env.worker("w1");
    let a = w.claim_within(SOON).await;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(env.controller.database_url())
        .await
        .expect("database");
    let set = |status: &str| {
        sqlx::AssertSqlSafe(format!(
            "UPDATE builds SET status = '{status}', ended_at = NULL WHERE id = '{}'",
            build.id
        ))
    };
    db.execute(set("queued")).await.expect("update");
    common::eventually(SOON, "the build to be marked running", || async {
        let b = env.admin.build(&build.id).await;
        (b.build.status == BuildStatus::Running).then_some(())
    })
    .await;
    w.finish(&a, 0, 0).await;
    env.admin.wait_build(&build.id, SOON).await;
    db.execute(set("running")).await.expect("update");
    let view = common::eventually(SOON, "the build to be ended again", || async {
        let b = env.admin.build(&build.id).await;
        b.build.status.is_finished().then_some(b)
    })
    .await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    assert!(view.build.ended_at.is_some());
}
