//! Builds: the graph runs in order, failures skip only what depends on
//! them, cancel, retry, per-project concurrency, and why queued nodes wait.

mod common;

use common::{Env, SOON};
use ick_api::controller::{BuildStatus, NodeStatus};
use ick_tests::idp::Storage;

on_both_storages!(a_build_of_one_action_runs_and_succeeds);

async fn a_build_of_one_action_runs_and_succeeds(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin
        .pipeline("hello", "actions: [{shell: echo hello}]")
        .await;
    env.admin.project("p", "pipelines: [hello]").await;
    let build = env.admin.trigger("p").await;
    assert_eq!(build.number, 1);
    assert_eq!(build.status, BuildStatus::Queued);
    let worker = env.worker("w1");
    let a = worker.claim_within(SOON).await;
    assert_eq!(a.build.id, build.id);
    assert_eq!(a.action.kind, "shell");
    worker.output(&a, 0, &["hello\n"]).await;
    worker.finish(&a, 0, 1).await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    assert_eq!(view.nodes[0].status, NodeStatus::Succeeded);
    assert_eq!(view.nodes[0].worker.as_deref(), Some("w1"));
}
