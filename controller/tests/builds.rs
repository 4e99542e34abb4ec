//! Builds: the graph runs in order, failures skip only what depends on
//! them, cancel, retry, per-project concurrency, and why queued nodes wait.

mod common;

use std::collections::BTreeMap;

use common::{Env, SOON};
use ick_api::Problem;
use ick_api::controller::{
    BuildList, BuildStatus, BuildSummary, BuildView, NodeStatus, NodeView, TriggerRequest,
};
use ick_tests::controller::{SimWorker, json};
use ick_tests::idp::Storage;
use reqwest::StatusCode;
use serde_json::Value;

on_both_storages!(
    a_build_of_one_action_runs_and_succeeds,
    a_diamond_graph_runs_in_order_with_the_middle_two_at_once,
    a_failure_skips_its_dependents_and_independent_pipelines_run_on,
    cancelling_a_queued_build_ends_it_at_once,
    cancelling_a_running_build_tells_its_worker_and_ends_when_it_stops,
    retry_reruns_only_the_failed_part,
    later_builds_of_a_project_queue_behind_the_running_one,
    a_queued_node_names_why_it_waits,
    builds_are_listed_newest_first_with_filters_and_pages,
    parameters_merge_defaults_and_overrides_and_declared_ones_must_have_values,
    a_trigger_may_give_only_declared_parameters_never_reserved_ones,
    the_build_graph_does_not_change_when_the_definitions_do,
);

fn node<'a>(view: &'a BuildView, pipeline: &str, index: u32) -> &'a NodeView {
    view.nodes
        .iter()
        .find(|n| n.pipeline == pipeline && n.index == index)
        .unwrap_or_else(|| panic!("no node {pipeline}/{index}"))
}

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
    assert_eq!((a.build.project.as_str(), a.build.number), ("p", 1));
    assert_eq!(
        (a.action.kind.as_str(), a.index, a.pipeline_len),
        ("shell", 0, 1)
    );
    assert_eq!(
        env.admin.build(&build.id).await.build.status,
        BuildStatus::Running
    );
    worker.output(&a, 0, &["hello\n"]).await;
    worker.finish(&a, 0, 1).await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    assert_eq!(view.nodes[0].status, NodeStatus::Succeeded);
    assert_eq!(view.nodes[0].worker.as_deref(), Some("w1"));
    assert_eq!(view.nodes[0].exit_code, Some(0));
    assert!(view.build.ended_at.is_some());
}

async fn diamond(env: &Env) {
    env.admin
        .pipeline("top", "actions: [{shell: configure}]")
        .await;
    env.admin
        .pipeline("left", "needs: [top]\nactions: [{shell: left}]")
        .await;
    env.admin
        .pipeline("right", "needs: [top]\nactions: [{shell: right}]")
        .await;
    env.admin
        .pipeline("bottom", "needs: [left, right]\nactions: [{shell: bottom}]")
        .await;
    env.admin
        .project("diamond", "pipelines: [bottom, left, right, top]")
        .await;
}

async fn a_diamond_graph_runs_in_order_with_the_middle_two_at_once(storage: Storage) {
    let env = Env::start(storage).await;
    diamond(&env).await;
    let build = env.admin.trigger("diamond").await;
    let (w1, w2) = (env.worker("w1"), env.worker("w2"));

    let top = w1.claim_within(SOON).await;
    assert_eq!(top.pipeline, "top");
    assert!(
        w2.claim(0).await.is_none(),
        "nothing else is ready while top runs"
    );
    w1.finish(&top, 0, 0).await;

    let first = w1.claim_within(SOON).await;
    let second = w2.claim_within(SOON).await;
    let mut middle = [first.pipeline.as_str(), second.pipeline.as_str()];
    middle.sort();
    assert_eq!(middle, ["left", "right"]);
    let view = env.admin.build(&build.id).await;
    assert_eq!(node(&view, "left", 0).status, NodeStatus::Running);
    assert_eq!(node(&view, "right", 0).status, NodeStatus::Running);
    let waits = node(&view, "bottom", 0)
        .waiting_for
        .clone()
        .unwrap_or_default();
    assert!(
        waits.contains("left action 1") && waits.contains("right action 1"),
        "{waits}"
    );

    let w3 = env.worker("w3");
    w1.finish(&first, 0, 0).await;
    assert!(
        w3.claim(0).await.is_none(),
        "bottom still needs {}",
        second.pipeline
    );
    w2.finish(&second, 0, 0).await;
    let bottom = w3.claim_within(SOON).await;
    assert_eq!(bottom.pipeline, "bottom");
    w3.finish(&bottom, 0, 0).await;

    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    let ended = |p: &str| node(&view, p, 0).ended_at.expect("ended");
    let started = |p: &str| node(&view, p, 0).started_at.expect("started");
    assert!(ended("top") <= started("left") && ended("top") <= started("right"));
    assert!(ended("left") <= started("bottom") && ended("right") <= started("bottom"));
    // The stored graph's edges.
    let top_id = node(&view, "top", 0).id.clone();
    assert_eq!(node(&view, "left", 0).needs, vec![top_id]);
    assert_eq!(node(&view, "bottom", 0).needs.len(), 2);
}

async fn a_failure_skips_its_dependents_and_independent_pipelines_run_on(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("compile", "actions: [{shell: make}, {shell: make install}]")
        .await;
    api.pipeline("test", "needs: [compile]\nactions: [{shell: make check}]")
        .await;
    api.pipeline("docs", "actions: [{shell: make docs}, {shell: make pdf}]")
        .await;
    api.project("p", "pipelines: [compile, test, docs]").await;
    let build = api.trigger("p").await;
    let w = env.worker("w1");
    let mut seen = Vec::new();
    while let Some(a) = w.claim(0).await {
        seen.push(format!("{}/{}", a.pipeline, a.index));
        let code = if a.pipeline == "compile" { 2 } else { 0 };
        w.finish(&a, code, 0).await;
    }
    assert!(seen.contains(&"compile/0".to_string()), "{seen:?}");
    assert!(
        seen.contains(&"docs/0".to_string()) && seen.contains(&"docs/1".to_string()),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    let view = api.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Failed);
    let failed = node(&view, "compile", 0);
    assert_eq!(
        (failed.status, failed.exit_code),
        (NodeStatus::Failed, Some(2))
    );
    assert_eq!(failed.message.as_deref(), Some("exited with code 2"));
    for (p, i) in [("compile", 1), ("test", 0)] {
        let n = node(&view, p, i);
        assert_eq!(n.status, NodeStatus::Skipped, "{p}/{i}");
        assert!(
            n.message
                .as_deref()
                .unwrap_or_default()
                .contains("compile action 1 failed")
        );
    }
    assert_eq!(node(&view, "docs", 1).status, NodeStatus::Succeeded);
}

async fn cancelling_a_queued_build_ends_it_at_once(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin
        .pipeline("a", "actions: [{shell: a}, {shell: b}]")
        .await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let r = env
        .admin
        .post::<()>(&format!("/builds/{}/cancel", build.id), None)
        .await;
    let summary: BuildSummary = json(r, StatusCode::OK).await;
    assert_eq!(summary.status, BuildStatus::Cancelled);
    assert!(summary.cancel_requested);
    let view = env.admin.build(&build.id).await;
    assert!(view.nodes.iter().all(|n| n.status == NodeStatus::Cancelled));
    assert!(env.worker("w1").claim(0).await.is_none());
    // A second cancel: the build has ended.
    let r = env
        .admin
        .post::<()>(&format!("/builds/{}/cancel", build.id), None)
        .await;
    let _: Problem = json(r, StatusCode::CONFLICT).await;
    let r = env.admin.post::<()>("/builds/nope/cancel", None).await;
    let _: Problem = json(r, StatusCode::NOT_FOUND).await;
}

async fn cancelling_a_running_build_tells_its_worker_and_ends_when_it_stops(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin
        .pipeline("a", "actions: [{shell: sleep 600}, {shell: b}]")
        .await;
    env.admin
        .pipeline("other", "needs: [a]\nactions: [{shell: c}]")
        .await;
    env.admin.project("p", "pipelines: [a, other]").await;
    let build = env.admin.trigger("p").await;
    let w = env.worker("w1");
    let a = w.claim_within(SOON).await;
    assert_eq!(a.pipeline, "a");
    assert!(!w.heartbeat(&a).await.cancel);

    let r = env
        .admin
        .post::<()>(&format!("/builds/{}/cancel", build.id), None)
        .await;
    let summary: BuildSummary = json(r, StatusCode::OK).await;
    assert_eq!(
        summary.status,
        BuildStatus::Running,
        "it runs until its worker stops"
    );
    let view = env.admin.build(&build.id).await;
    assert_eq!(node(&view, "a", 1).status, NodeStatus::Cancelled);
    assert_eq!(node(&view, "other", 0).status, NodeStatus::Cancelled);
    assert_eq!(node(&view, "a", 0).status, NodeStatus::Running);
    assert!(w.heartbeat(&a).await.cancel, "the heartbeat says stop");
    assert!(env.worker("w2").claim(0).await.is_none());

    let mut done = SimWorker::exited(&a, 143, 0);
    done.outcome = ick_api::work::Outcome::Cancelled;
    let r = w.done_raw(&a.node_id, &done).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Cancelled);
    assert_eq!(node(&view, "a", 0).status, NodeStatus::Cancelled);
}

async fn retry_reruns_only_the_failed_part(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("fine", "actions: [{shell: ok}]").await;
    api.pipeline("flaky", "actions: [{shell: prepare}, {shell: flaky-test}]")
        .await;
    api.pipeline("after", "needs: [flaky]\nactions: [{shell: deploy}]")
        .await;
    api.project("p", "pipelines: [fine, flaky, after]").await;
    let build = api.trigger("p").await;
    let w = env.worker("w1");
    while let Some(a) = w.claim(0).await {
        let code = if a.pipeline == "flaky" && a.index == 1 {
            1
        } else {
            0
        };
        w.finish(&a, code, 0).await;
    }
    let first = api.wait_build(&build.id, SOON).await;
    assert_eq!(first.build.status, BuildStatus::Failed);
    assert_eq!(node(&first, "after", 0).status, NodeStatus::Skipped);

    let r = api
        .post::<()>(&format!("/builds/{}/retry", build.id), None)
        .await;
    let retried: BuildSummary = json(r, StatusCode::OK).await;
    assert_eq!(
        (retried.id.as_str(), retried.number, retried.run),
        (build.id.as_str(), 1, 2)
    );
    assert_eq!(retried.status, BuildStatus::Queued);
    let view = api.build(&build.id).await;
    assert_eq!(
        node(&view, "fine", 0),
        node(&first, "fine", 0),
        "the succeeded pipeline keeps its result"
    );
    assert!(
        view.pipeline("flaky")
            .iter()
            .all(|n| n.status == NodeStatus::Queued)
    );
    // A retry of a build that has not ended is refused.
    let r = api
        .post::<()>(&format!("/builds/{}/retry", build.id), None)
        .await;
    let _: Problem = json(r, StatusCode::CONFLICT).await;

    let mut rerun = Vec::new();
    while let Some(a) = w.claim(0).await {
        rerun.push((a.pipeline.clone(), a.index, a.attempt));
        w.finish(&a, 0, 0).await;
    }
    assert_eq!(
        rerun,
        vec![
            ("flaky".to_string(), 0, 2),
            ("flaky".to_string(), 1, 2),
            ("after".to_string(), 0, 1)
        ],
        "from the failed pipeline's first action, and what it skipped"
    );
    let view = api.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    assert_eq!(node(&view, "fine", 0).attempt, 1);
    // Nothing left to retry.
    let r = api
        .post::<()>(&format!("/builds/{}/retry", build.id), None)
        .await;
    let p: Problem = json(r, StatusCode::CONFLICT).await;
    assert!(p.detail.unwrap_or_default().contains("nothing to re-run"));
}

async fn later_builds_of_a_project_queue_behind_the_running_one(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("a", "actions: [{shell: a}]").await;
    api.project("one", "pipelines: [a]").await;
    api.project("two", "pipelines: [a]\nconcurrency: 2").await;
    let first = api.trigger("one").await;
    let second = api.trigger("one").await;
    let view = api.build(&second.id).await;
    assert_eq!(view.build.status, BuildStatus::Queued);
    let why = view.waiting_for.clone().unwrap_or_default();
    assert!(
        why.contains("concurrency limit") && why.contains("#1"),
        "{why}"
    );

    let (w1, w2) = (env.worker("w1"), env.worker("w2"));
    let a = w1.claim_within(SOON).await;
    assert_eq!(a.build.id, first.id);
    assert!(w2.claim(0).await.is_none(), "#2 waits for #1");
    w1.finish(&a, 1, 0).await;
    let b = w2.claim_within(SOON).await;
    assert_eq!(
        b.build.id, second.id,
        "#2 starts when #1 ends, whatever its result"
    );
    w2.finish(&b, 0, 0).await;

    let x = api.trigger("two").await;
    let y = api.trigger("two").await;
    let mut got = [
        w1.claim_within(SOON).await.build.id,
        w2.claim_within(SOON).await.build.id,
    ];
    got.sort();
    let mut want = [x.id, y.id];
    want.sort();
    assert_eq!(got, want, "concurrency 2: both at once");
}

async fn a_queued_node_names_why_it_waits(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    api.project("gpu", "pipelines: [a]\nruns_on: [gpu]").await;
    let build = api.trigger("gpu").await;
    let why = |view: &BuildView, i: u32| node(view, "a", i).waiting_for.clone().unwrap_or_default();

    let view = api.build(&build.id).await;
    assert_eq!(why(&view, 0), "no worker is connected");
    assert_eq!(view.waiting_for.as_deref(), Some("no worker is connected"));
    assert!(
        why(&view, 1).contains("waiting for the action it needs: a action 1 (queued)"),
        "{}",
        why(&view, 1)
    );

    let plain = env.worker("plain");
    assert!(plain.claim(0).await.is_none());
    assert_eq!(
        why(&api.build(&build.id).await, 0),
        "no connected worker has the labels gpu"
    );

    let mut gitonly = env.worker("gitonly").labels(&["gpu"]);
    gitonly.kinds = vec!["git".into()];
    assert!(gitonly.claim(0).await.is_none());
    assert_eq!(
        why(&api.build(&build.id).await, 0),
        "no connected worker with the labels gpu runs actions of kind shell"
    );

    // A worker that could, busy.
    let able = env.worker("able").labels(&["gpu"]);
    let mut able_busy = able.claim_request(0);
    // It says it has no free slot.
    able_busy.free_slots = 0;
    let r = env.admin.post("/work/claim", Some(&able_busy)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let view = api.build(&build.id).await;
    assert!(
        why(&view, 0).starts_with("waiting for a free slot: 1 connected worker can run it"),
        "{}",
        why(&view, 0)
    );

    // It runs the first action; the second waits for it (its workspace).
    let first = able.claim_within(SOON).await;
    assert_eq!(first.build.id, build.id, "the oldest ready node first");
    able.finish(&first, 0, 0).await;
    let view = api.build(&build.id).await;
    assert!(
        why(&view, 1).contains("worker able, which holds the pipeline's workspace"),
        "{}",
        why(&view, 1)
    );
}

async fn builds_are_listed_newest_first_with_filters_and_pages(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("a", "actions: [{shell: a}]").await;
    api.project("x", "pipelines: [a]\nconcurrency: 5").await;
    api.project("y", "pipelines: [a]").await;
    for _ in 0..3 {
        api.trigger("x").await;
    }
    let y = api.trigger("y").await;
    let all: BuildList = api.get("/builds").await;
    assert_eq!(all.builds.len(), 4);
    assert_eq!(all.builds[0].id, y.id, "newest first");
    assert!(all.next.is_none());

    let page: BuildList = api.get("/builds?project=x&limit=2").await;
    assert_eq!(
        page.builds.iter().map(|b| b.number).collect::<Vec<_>>(),
        vec![3, 2]
    );
    let next = page.next.expect("a next page");
    let page2: BuildList = api
        .get(&format!("/builds?project=x&limit=2&before={next}"))
        .await;
    assert_eq!(
        page2.builds.iter().map(|b| b.number).collect::<Vec<_>>(),
        vec![1]
    );
    assert!(page2.next.is_none());

    let w = env.worker("w1");
    let a = w.claim_within(SOON).await;
    w.finish(&a, 0, 0).await;
    let done: BuildList = api.get("/builds?status=succeeded").await;
    assert_eq!(done.builds.len(), 1);
    let open: BuildList = api.get("/builds?status=queued,running").await;
    assert_eq!(open.builds.len(), 3);

    let r = api
        .request(reqwest::Method::GET, "/builds?status=sideways")
        .send()
        .await
        .expect("GET");
    let p: Problem = json(r, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.unwrap_or_default().contains("sideways"));
    let view: BuildView = api.get("/projects/x/builds/2").await;
    assert_eq!((view.build.project.as_str(), view.build.number), ("x", 2));
}

async fn parameters_merge_defaults_and_overrides_and_declared_ones_must_have_values(
    storage: Storage,
) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline(
        "checkout",
        "parameters: [git_url, git_ref]\nactions: [{git: {}}]",
    )
    .await;
    api.project(
        "p",
        "parameters: {git_url: 'https://example.org/p.git'}\npipelines: [checkout]",
    )
    .await;

    let r = api.trigger_raw("p", &TriggerRequest::default()).await;
    let problem: Problem = json(r, StatusCode::BAD_REQUEST).await;
    assert!(
        problem
            .detail
            .unwrap_or_default()
            .contains("git_ref (pipeline checkout)")
    );
    let r = api.trigger_raw("nope", &TriggerRequest::default()).await;
    let _: Problem = json(r, StatusCode::NOT_FOUND).await;
    let bad = api
        .request(reqwest::Method::POST, "/projects/p/builds")
        .header("content-type", "application/json")
        .body("{\"parameters\": 3}")
        .send()
        .await
        .expect("POST");
    let _: Problem = json(bad, StatusCode::BAD_REQUEST).await;
    let none: BuildList = api.get("/builds").await;
    assert!(none.builds.is_empty(), "refused triggers start nothing");

    let request = TriggerRequest {
        parameters: BTreeMap::from([
            ("git_ref".to_string(), Value::from("main")),
            ("git_commit".to_string(), Value::from("abc123")),
        ]),
    };
    let build: BuildSummary = json(api.trigger_raw("p", &request).await, StatusCode::CREATED).await;
    assert_eq!(build.number, 1, "refused triggers used no number");
    assert_eq!(build.parameters["git_url"], "https://example.org/p.git");
    // The client's name, as its token gave it, not its id.
    assert_eq!(build.triggered_by, "test-admin");
    let a = env.worker("w1").claim_within(SOON).await;
    assert_eq!(a.parameters["git_ref"], "main");
    assert_eq!(a.parameters["git_commit"], "abc123");
    assert_eq!(a.parameters["git_url"], "https://example.org/p.git");
}

async fn a_trigger_may_give_only_declared_parameters_never_reserved_ones(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline(
        "say",
        "parameters: [greeting]\nactions: [{shell: 'echo $greeting'}]",
    )
    .await;
    api.project(
        "p",
        "parameters: {greeting: hi, level: 1}\npipelines: [say]",
    )
    .await;
    let attacks = [
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("BASH_ENV", "/tmp/evil.sh"),
        ("PATH", "/tmp/evil"),
        ("GIT_SSH_COMMAND", "touch /tmp/pwned"),
        ("GIT_CONFIG_COUNT", "1"),
        ("PYTHONSTARTUP", "/tmp/evil.py"),
        ("BASH_FUNC_echo%%", "() { touch /tmp/pwned; }"),
        ("nosuch", "1"),
    ];
    for (name, value) in attacks {
        let request = TriggerRequest {
            parameters: BTreeMap::from([(name.to_string(), Value::from(value))]),
        };
        let problem: Problem = json(
            api.trigger_raw("p", &request).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        let detail = problem.detail.unwrap_or_default();
        if name == "nosuch" {
            assert!(
                detail.contains("no parameter \"nosuch\"")
                    && detail.contains("greeting")
                    && detail.contains("level"),
                "names the known ones: {detail}"
            );
        } else {
            assert!(
                detail.contains("reserved") || detail.contains("not valid"),
                "{name}: {detail}"
            );
        }
    }
    let none: BuildList = api.get("/builds").await;
    assert!(none.builds.is_empty(), "refused triggers start nothing");

    let request = TriggerRequest {
        parameters: BTreeMap::from([
            ("greeting".to_string(), Value::from("bonjour")),
            ("level".to_string(), Value::from(2)),
        ]),
    };
    let build: BuildSummary = json(api.trigger_raw("p", &request).await, StatusCode::CREATED).await;
    assert_eq!(build.number, 1);
    let a = env.worker("w1").claim_within(SOON).await;
    assert_eq!(a.parameters["greeting"], "bonjour");
    assert_eq!(a.parameters["level"], 2);
}

async fn the_build_graph_does_not_change_when_the_definitions_do(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("a", "actions: [{shell: old}]").await;
    api.project("p", "pipelines: [a]").await;
    let build = api.trigger("p").await;
    api.pipeline("a", "actions: [{shell: new}, {shell: newer}]")
        .await;
    let view = api.build(&build.id).await;
    assert_eq!(view.nodes.len(), 1);
    assert_eq!(view.nodes[0].description, "shell: old");
    let a = env.worker("w1").claim_within(SOON).await;
    assert_eq!(a.action.spec, Value::from("old"));
    assert_eq!(api.trigger("p").await.number, 2);
}
