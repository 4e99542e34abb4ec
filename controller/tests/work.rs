//! The work protocol: atomic claims, pinning to the workspace's worker,
//! long polls, leases and fencing, idempotent output and done, workers.

mod common;

use std::time::{Duration, Instant};

use common::{Env, SOON, eventually};
use ick_api::Problem;
use ick_api::controller::{BuildStatus, BuildView, LogChunk, NodeStatus};
use ick_api::work::{
    ClaimRequest, OutputChunk, PROBLEM_MISSING_CHUNKS, PROBLEM_STALE_ATTEMPT, Stream,
    WorkAssignment, WorkerInfo, WorkerState,
};
use ick_tests::controller::{SimWorker, json};
use ick_tests::idp::Storage;
use reqwest::StatusCode;

on_both_storages!(
    concurrent_claims_never_hand_one_node_to_two_workers,
    a_node_whose_pipeline_ran_goes_only_to_that_worker,
    a_waiting_claim_is_answered_as_soon_as_work_appears,
    an_expired_lease_requeues_the_pipeline_and_the_stale_attempt_is_refused,
    a_pipeline_that_keeps_losing_its_worker_fails_with_worker_lost,
    a_pipeline_stranded_on_a_gone_worker_starts_over_elsewhere,
    duplicate_chunks_and_a_second_done_are_stored_once,
    workers_are_listed_with_what_they_run,
    bad_work_requests_are_refused_and_change_nothing,
    a_worker_claims_only_as_its_client_and_reports_only_on_its_own_nodes,
    a_worker_may_not_speak_for_another_of_its_presence_or_leaving,
);

async fn assert_stale(r: reqwest::Response) {
    let p: Problem = json(r, StatusCode::CONFLICT).await;
    assert_eq!(p.kind, PROBLEM_STALE_ATTEMPT, "{p}");
}

async fn concurrent_claims_never_hand_one_node_to_two_workers(storage: Storage) {
    let env = Env::start(storage).await;
    claim_race(&env, std::slice::from_ref(&env.admin)).await;
}

/// Several controllers may share one Postgres database: claims through
/// both never get the same node either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_through_two_controllers_never_hand_one_node_to_two_workers() {
    let env = Env::start(Storage::Postgres).await;
    let second = env.controller.start_sharing(&env.idp);
    claim_race(&env, &[env.admin.clone(), second.client(&env.admin.token)]).await;
}

/// 16 workers (half with labels, which claim another way) claim 40 ready
/// nodes at once, again and again, holding what they got, through `apis`
/// in turn.
async fn claim_race(env: &Env, apis: &[ick_tests::controller::Api]) {
    let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    for name in &names {
        env.admin.pipeline(name, "actions: [{shell: 'true'}]").await;
    }
    env.admin
        .project("wide", &format!("pipelines: [{}]", names.join(", ")))
        .await;
    let build = env.admin.trigger("wide").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let mut w = SimWorker::new(apis[i % apis.len()].clone(), &format!("w{i}"));
            if i % 4 < 2 {
                w = w.labels(&["linux"]);
            }
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(a) = w.claim(0).await {
                    got.push(a);
                }
                (w, got)
            })
        })
        .collect();
    let mut all: Vec<(SimWorker, WorkAssignment)> = Vec::new();
    for t in tasks {
        let (w, got) = t.await.expect("worker task");
        all.extend(got.into_iter().map(|a| (w.clone(), a)));
    }
    let mut ids: Vec<&str> = all.iter().map(|(_, a)| a.node_id.as_str()).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "a node was handed out twice");
    assert_eq!(ids.len(), 40, "every node was handed out");
    for (w, a) in &all {
        w.finish(a, 0, 0).await;
    }
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    assert!(view.nodes.iter().all(|n| n.attempt == 1));
}

async fn a_node_whose_pipeline_ran_goes_only_to_that_worker(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    env.admin
        .pipeline("b", "actions: [{shell: three}, {shell: four}]")
        .await;
    env.admin.project("p", "pipelines: [a, b]").await;
    env.admin.trigger("p").await;
    let (w1, w2) = (env.worker("w1"), env.worker("w2"));
    let first = w1.claim_within(SOON).await;
    assert_eq!(first.index, 0);
    w1.finish(&first, 0, 0).await;
    // w2 gets the other pipeline, never the second action of w1's.
    let other = w2.claim_within(SOON).await;
    assert_ne!(other.pipeline, first.pipeline);
    assert_eq!(other.index, 0);
    assert!(w2.claim(0).await.is_none());
    let second = w1.claim_within(SOON).await;
    assert_eq!(
        (second.pipeline.as_str(), second.index),
        (first.pipeline.as_str(), 1)
    );
}

async fn a_waiting_claim_is_answered_as_soon_as_work_appears(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("a", "actions: [{shell: one}]").await;
    env.admin.project("p", "pipelines: [a]").await;
    let w = env.worker("w1");
    let waiting = tokio::spawn(async move {
        let asked = Instant::now();
        let got = w.claim(25).await;
        (got, asked.elapsed())
    });
    // Trigger once the claim is waiting (the worker is then registered).
    eventually(SOON, "the worker to be waiting", || async {
        let workers: Vec<WorkerInfo> = env.admin.get("/workers").await;
        (!workers.is_empty()).then_some(())
    })
    .await;
    let build = env.admin.trigger("p").await;
    let (got, waited) = waiting.await.expect("claim task");
    assert_eq!(got.expect("work").build.id, build.id);
    assert!(
        waited < Duration::from_secs(4),
        "answered after {waited:?}, not at once"
    );
}

/// Two controllers on one Postgres: a claim waiting on one is woken by a
/// trigger on the other (LISTEN/NOTIFY), well before its periodic look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waiting_on_one_controller_is_woken_by_a_trigger_on_another() {
    let env = Env::start(Storage::Postgres).await;
    let second = env.controller.start_sharing(&env.idp);
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    env.admin.project("p", "pipelines: [a]").await;
    let w = SimWorker::new(second.client(&env.admin.token), "w1");
    let waiter = w.clone();
    let waiting = tokio::spawn(async move {
        let asked = Instant::now();
        let got = waiter.claim(25).await;
        (got, asked.elapsed())
    });
    eventually(SOON, "the worker to be waiting", || async {
        let workers: Vec<WorkerInfo> = env.admin.get("/workers").await;
        (!workers.is_empty()).then_some(())
    })
    .await;
    let build = env.admin.trigger("p").await;
    let (got, waited) = waiting.await.expect("claim task");
    let a = got.expect("work");
    assert_eq!(a.build.id, build.id);
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    // Done through the second controller, seen by the first.
    w.finish(&a, 0, 0).await;
    let view = env.admin.build(&build.id).await;
    assert_eq!(view.nodes[0].status, NodeStatus::Succeeded);
    drop(second);
}

async fn an_expired_lease_requeues_the_pipeline_and_the_stale_attempt_is_refused(storage: Storage) {
    let env = Env::start_with(storage, |c| c["work"]["lease"] = "5s".into()).await;
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let (lost, other) = (env.worker("lost"), env.worker("other"));
    let one = lost.claim_within(SOON).await;
    lost.output(&one, 0, &["one\n"]).await;
    lost.finish(&one, 0, 1).await;
    let two = lost.claim_within(SOON).await;
    assert_eq!((two.index, two.attempt), (1, 1));
    lost.output(&two, 0, &["two, before the worker was lost\n"])
        .await;
    // The worker goes silent; its lease runs out; the pipeline starts over.
    let again = other.claim_within(SOON).await;
    assert_eq!(
        (again.pipeline.as_str(), again.index),
        ("a", 0),
        "back to the first action"
    );
    assert_eq!(again.attempt, 2);
    let view = env.admin.build(&build.id).await;
    assert!(view.nodes.iter().all(|n| n.status != NodeStatus::Failed));
    assert_eq!(view.nodes[1].status, NodeStatus::Queued);

    // The lost worker comes back: every call of its attempt is refused.
    assert_stale(lost.heartbeat_raw(&two.node_id, two.attempt).await).await;
    let late = vec![OutputChunk {
        seq: 1,
        stream: Stream::Stdout,
        data: "late\n".into(),
    }];
    assert_stale(lost.output_raw(&two.node_id, two.attempt, late).await).await;
    assert_stale(
        lost.done_raw(&two.node_id, &SimWorker::exited(&two, 0, 1))
            .await,
    )
    .await;
    assert_stale(
        lost.done_raw(&one.node_id, &SimWorker::exited(&one, 0, 1))
            .await,
    )
    .await;
    let view = env.admin.build(&build.id).await;
    assert_eq!(view.nodes[1].status, NodeStatus::Queued, "changed nothing");

    other.finish(&again, 0, 0).await;
    let last = other.claim_within(SOON).await;
    assert_eq!((last.index, last.attempt), (1, 2));
    other.finish(&last, 0, 0).await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    // What the lost worker sent and the controller acknowledged is kept.
    let log: Vec<LogChunk> = env.admin.get(&format!("/builds/{}/log", build.id)).await;
    let texts: Vec<(&str, i64)> = log.iter().map(|c| (c.data.as_str(), c.attempt)).collect();
    assert_eq!(
        texts,
        vec![("one\n", 1), ("two, before the worker was lost\n", 1)]
    );
}

async fn a_pipeline_that_keeps_losing_its_worker_fails_with_worker_lost(storage: Storage) {
    let env = Env::start_with(storage, |c| {
        c["work"]["lease"] = "1s".into();
        c["work"]["max_attempts"] = 2.into();
    })
    .await;
    env.admin.pipeline("a", "actions: [{shell: one}]").await;
    env.admin
        .pipeline("b", "needs: [a]\nactions: [{shell: two}]")
        .await;
    env.admin.project("p", "pipelines: [a, b]").await;
    let build = env.admin.trigger("p").await;
    let first = env.worker("w1").claim_within(SOON).await;
    let second = env.worker("w2").claim_within(SOON).await;
    assert_eq!(
        (second.node_id.as_str(), second.attempt),
        (first.node_id.as_str(), 2)
    );
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Failed);
    let message = view.nodes[0].message.clone().unwrap_or_default();
    assert_eq!(view.nodes[0].status, NodeStatus::Failed);
    assert!(message.starts_with("worker lost: worker w2"), "{message}");
    assert!(message.contains("tried 2 times"), "{message}");
    assert_eq!(view.nodes[1].status, NodeStatus::Skipped);
}

async fn a_pipeline_stranded_on_a_gone_worker_starts_over_elsewhere(storage: Storage) {
    let env = Env::start_with(storage, |c| c["work"]["worker_timeout"] = "3s".into()).await;
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let gone = env.worker("gone");
    let one = gone.claim_within(SOON).await;
    gone.finish(&one, 0, 0).await;
    // Its next action waits for it; it never comes back.
    let view: BuildView = env.admin.build(&build.id).await;
    assert!(
        view.nodes[1]
            .waiting_for
            .clone()
            .unwrap_or_default()
            .contains("worker gone")
    );
    // Running, but nothing runs: the build as a whole says why.
    assert_eq!(view.build.status, BuildStatus::Running);
    assert_eq!(view.waiting_for, view.nodes[1].waiting_for);
    let other = env.worker("other");
    let again = other.claim_within(SOON).await;
    assert_eq!(
        (again.index, again.attempt),
        (0, 2),
        "the pipeline starts over"
    );
}

async fn duplicate_chunks_and_a_second_done_are_stored_once(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("a", "actions: [{shell: one}]").await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let w = env.worker("w1");
    let a = w.claim_within(SOON).await;
    w.output(&a, 0, &["zero\n", "one\n"]).await;
    w.output(&a, 0, &["zero\n", "one\n", "two\n"]).await;
    // done for four chunks while three are held: resend first.
    let r = w.done_raw(&a.node_id, &SimWorker::exited(&a, 0, 4)).await;
    let p: Problem = json(r, StatusCode::CONFLICT).await;
    assert_eq!(p.kind, PROBLEM_MISSING_CHUNKS);
    assert_eq!(p.extensions["held"], 3);
    assert_eq!(
        env.admin.build(&build.id).await.nodes[0].status,
        NodeStatus::Running
    );
    let err = vec![OutputChunk {
        seq: 3,
        stream: Stream::Stderr,
        data: "three\n".into(),
    }];
    assert_eq!(
        w.output_raw(&a.node_id, a.attempt, err).await.status(),
        StatusCode::NO_CONTENT
    );
    w.finish(&a, 0, 4).await;
    w.finish(&a, 0, 4).await;
    // A resend after done is harmless; a new chunk is not accepted.
    w.output(&a, 2, &["two\n"]).await;
    let new = vec![OutputChunk {
        seq: 9,
        stream: Stream::Stdout,
        data: "nine\n".into(),
    }];
    assert_stale(w.output_raw(&a.node_id, a.attempt, new).await).await;

    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    let log: Vec<LogChunk> = env.admin.get(&format!("/builds/{}/log", build.id)).await;
    let got: Vec<(i64, Stream, &str)> = log
        .iter()
        .map(|c| (c.seq, c.stream, c.data.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, Stream::Stdout, "zero\n"),
            (1, Stream::Stdout, "one\n"),
            (2, Stream::Stdout, "two\n"),
            (3, Stream::Stderr, "three\n"),
        ]
    );
}

async fn workers_are_listed_with_what_they_run(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("a", "actions: [{shell: one}]").await;
    env.admin.project("p", "pipelines: [a]").await;
    env.admin.trigger("p").await;
    let mut w = env.worker("w1").labels(&["linux", "arch=amd64"]);
    w.slots = 2;
    let a = w.claim_within(SOON).await;
    let workers: Vec<WorkerInfo> = env.admin.get("/workers").await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].name, "w1");
    assert_eq!(workers[0].labels, vec!["linux", "arch=amd64"]);
    assert_eq!(workers[0].slots, 2);
    assert_eq!(workers[0].running, vec![a.node_id.clone()]);
    assert!(chrono::DateTime::parse_from_rfc3339(&workers[0].last_seen).is_ok());
    w.finish(&a, 0, 0).await;
    let workers: Vec<WorkerInfo> = env.admin.get("/workers").await;
    assert!(workers[0].running.is_empty());
}

async fn bad_work_requests_are_refused_and_change_nothing(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("a", "actions: [{shell: one}]").await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let w = env.worker("w1");
    let mut bad_name = w.claim_request(0);
    bad_name.worker = "no spaces please".into();
    let mut bad_slots = w.claim_request(0);
    bad_slots.free_slots = 3;
    for bad in [bad_name, bad_slots] {
        let r = env
            .admin
            .post::<ClaimRequest>("/work/claim", Some(&bad))
            .await;
        let _: Problem = json(r, StatusCode::BAD_REQUEST).await;
    }
    let r = env
        .admin
        .post("/work/claim", Some(&serde_json::json!({"worker": "w1", "free_slots": 1, "slots": 1, "kinds": [], "colour": "blue"})))
        .await;
    let _: Problem = json(r, StatusCode::BAD_REQUEST).await;
    let workers: Vec<WorkerInfo> = env.admin.get("/workers").await;
    assert!(workers.is_empty(), "no worker was registered");
    assert_eq!(
        env.admin.build(&build.id).await.nodes[0].status,
        NodeStatus::Queued
    );

    let a = w.claim_within(SOON).await;
    let r = w
        .done_raw("no-such-node", &SimWorker::exited(&a, 0, 0))
        .await;
    let _: Problem = json(r, StatusCode::NOT_FOUND).await;
    let r = w.heartbeat_raw("no-such-node", 1).await;
    let _: Problem = json(r, StatusCode::NOT_FOUND).await;
    let mut no_code = SimWorker::exited(&a, 0, 0);
    no_code.exit_code = None;
    let r = w.done_raw(&a.node_id, &no_code).await;
    let _: Problem = json(r, StatusCode::BAD_REQUEST).await;
    let r = w
        .output_raw(
            &a.node_id,
            a.attempt,
            vec![OutputChunk {
                seq: -1,
                stream: Stream::Stdout,
                data: "x".into(),
            }],
        )
        .await;
    let _: Problem = json(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        env.admin.build(&build.id).await.nodes[0].status,
        NodeStatus::Running
    );
    let r = w.done_raw(&a.node_id, &SimWorker::exited(&a, 0, 0)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

async fn a_worker_claims_only_as_its_client_and_reports_only_on_its_own_nodes(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("t", "actions: [{shell: 'true'}]").await;
    env.admin
        .project("p", "pipelines: [t]\nruns_on: [trusted]")
        .await;
    let alice = env.named_worker("alice", &["trusted"]).await;
    let mallory = env.named_worker("mallory", &[]).await;

    // Claiming under another name, or with a label the client lacks: 403.
    let mut as_alice = mallory.claim_request(0);
    as_alice.worker = "alice".into();
    as_alice.labels = vec!["trusted".into()];
    let r = mallory.api.post("/work/claim", Some(&as_alice)).await;
    let p: Problem = json(r, StatusCode::FORBIDDEN).await;
    assert!(p.to_string().contains("\"mallory\"'s"), "{p}");
    let mut trusted = mallory.claim_request(0);
    trusted.labels = vec!["trusted".into()];
    let r = mallory.api.post("/work/claim", Some(&trusted)).await;
    let p: Problem = json(r, StatusCode::FORBIDDEN).await;
    assert!(p.to_string().contains("label \"trusted\""), "{p}");
    let workers: Vec<WorkerInfo> = env.admin.get("/workers").await;
    assert!(
        workers.iter().all(|w| w.name != "alice"),
        "a refused claim registers nothing: {workers:?}"
    );

    let build = env.admin.trigger("p").await;
    assert!(mallory.claim(0).await.is_none(), "no label, no work");
    let a = alice.claim_within(SOON).await;

    // Mallory cannot renew, feed or end alice's action: 403, nothing changes.
    let r = mallory.heartbeat_raw(&a.node_id, a.attempt).await;
    let _: Problem = json(r, StatusCode::FORBIDDEN).await;
    let chunk = OutputChunk {
        seq: 0,
        stream: Stream::Stdout,
        data: "forged\n".into(),
    };
    let r = mallory.output_raw(&a.node_id, a.attempt, vec![chunk]).await;
    let _: Problem = json(r, StatusCode::FORBIDDEN).await;
    let r = mallory
        .done_raw(&a.node_id, &SimWorker::exited(&a, 1, 0))
        .await;
    let _: Problem = json(r, StatusCode::FORBIDDEN).await;
    // A stale attempt is still a conflict, whoever sends it.
    assert_stale(mallory.heartbeat_raw(&a.node_id, a.attempt + 1).await).await;
    let view: BuildView = env.admin.get(&format!("/builds/{}", build.id)).await;
    assert_eq!(view.nodes[0].status, NodeStatus::Running);
    let log: Vec<LogChunk> = env.admin.get(&format!("/builds/{}/log", build.id)).await;
    assert!(log.is_empty(), "{log:?}");

    // Alice's own reports go through.
    alice.heartbeat(&a).await;
    alice.output(&a, 0, &["real\n"]).await;
    alice.finish(&a, 0, 1).await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    let log: Vec<LogChunk> = env.admin.get(&format!("/builds/{}/log", build.id)).await;
    assert_eq!(
        log.iter().map(|c| c.data.as_str()).collect::<String>(),
        "real\n"
    );
}

async fn a_worker_may_not_speak_for_another_of_its_presence_or_leaving(storage: Storage) {
    let env = Env::start(storage).await;
    let w1 = env.idp.create_worker_client("w1", "w1", &[], &["work:run"]);
    let w1 = env.controller.client(&env.idp.token(&w1, None).await);
    let other = env.worker("w2");
    assert!(other.claim(0).await.is_none());
    let calls = [
        (
            "/work/leave",
            serde_json::json!({"worker": "w2", "state": "gone"}),
        ),
        ("/work/presence", serde_json::json!({"worker": "w2"})),
    ];
    for (path, body) in &calls {
        let r = w1
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("answers");
        let p: Problem = json(r, StatusCode::FORBIDDEN).await;
        assert!(p.to_string().contains("\"w2\""), "{p}");
    }
    // Bad leaves change nothing.
    for (body, status) in [
        (
            serde_json::json!({"worker": "w2", "state": "online"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            serde_json::json!({"worker": "w2", "state": "asleep"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            serde_json::json!({"worker": "no-such", "state": "gone"}),
            StatusCode::NOT_FOUND,
        ),
        (
            serde_json::json!({"worker": "bad name!", "state": "gone"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = env
            .admin
            .request(reqwest::Method::POST, "/work/leave")
            .json(&body)
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status(), status, "{body}");
    }
    let workers: Vec<WorkerInfo> = env.admin.get("/workers").await;
    let w2 = workers.iter().find(|w| w.name == "w2").expect("w2 listed");
    assert_eq!(w2.state, WorkerState::Online, "another's call changed w2");
}
