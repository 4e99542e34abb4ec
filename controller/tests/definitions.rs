//! Projects and pipelines: validation with clear errors and nothing stored
//! on error, idempotent apply, revisions, deletion.

mod common;

use common::{Env, SOON};
use ick_api::Problem;
use ick_api::controller::{Applied, Change, Revision, StoredPipeline, StoredProject};
use ick_tests::controller::{Api, json};
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};

on_both_storages!(
    invalid_definitions_are_refused_with_a_clear_error_and_nothing_stored,
    applying_the_same_definition_twice_is_one_revision,
    deleting_keeps_a_revision_and_a_pipeline_in_use_cannot_go,
    a_plugin_kind_is_accepted_once_a_connected_worker_advertises_it,
    a_deeply_nested_body_is_refused_at_once_and_stalls_nothing,
    reserved_parameter_names_are_refused_at_apply_with_line_and_column,
);

/// Applies `yaml` at `path` and expects a 400 whose detail contains `says`.
async fn refused(api: &Api, path: &str, yaml: &str, says: &str) -> Problem {
    let r = api.put_yaml(path, yaml).await;
    let problem: Problem = json(r, StatusCode::BAD_REQUEST).await;
    let detail = problem.detail.clone().unwrap_or_default();
    assert!(
        detail.contains(says),
        "{path}: expected {says:?} in {detail:?}"
    );
    problem
}

/// Everything stored, to compare before and after refused changes.
async fn everything(api: &Api) -> (Vec<StoredProject>, Vec<StoredPipeline>) {
    (api.get("/projects").await, api.get("/pipelines").await)
}

async fn invalid_definitions_are_refused_with_a_clear_error_and_nothing_stored(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("build", "actions: [{shell: make}]").await;
    api.pipeline("a", "needs: [b]\nactions: [{shell: a}]").await;
    api.pipeline("b", "actions: [{shell: b}]").await;
    api.project("good", "pipelines: [build, b, a]").await;
    let before = everything(api).await;

    // YAML syntax: line and column.
    let p = refused(
        api,
        "/pipelines/x",
        "actions:\n  - shell: make\n  - shell: [oops\n",
        "not valid",
    )
    .await;
    assert_eq!(p.extensions["line"], 4);
    assert!(p.extensions["column"].as_u64().is_some());
    // Unknown field, with its line.
    let p = refused(
        api,
        "/projects/x",
        "pipelines: [build]\ncolour: blue\n",
        "unknown field `colour`",
    )
    .await;
    assert_eq!(p.extensions["line"], 2);
    // Wrong type.
    refused(api, "/projects/x", "pipelines: build\n", "invalid type").await;
    refused(
        api,
        "/pipelines/x",
        "actions: [{shell: [1, 2]}]",
        "must be a script",
    )
    .await;
    // Unknown pipeline names.
    refused(
        api,
        "/projects/x",
        "pipelines: [build, nope]",
        "unknown pipeline \"nope\"",
    )
    .await;
    // A needs: cycle, named.
    api.pipeline("c", "needs: [d]\nactions: [{shell: c}]").await;
    api.pipeline("d", "needs: [c]\nactions: [{shell: d}]").await;
    let before_cycle = everything(api).await;
    refused(
        api,
        "/projects/x",
        "pipelines: [c, d]",
        "needs: cycle c → d → c",
    )
    .await;
    // A pipeline change that would make a cycle in a project that uses it.
    refused(
        api,
        "/pipelines/b",
        "needs: [a]\nactions: [{shell: b}]",
        "cycle",
    )
    .await;
    // A need outside the project.
    refused(api, "/projects/x", "pipelines: [a]", "needs \"b\"").await;
    // An unknown action kind.
    refused(
        api,
        "/pipelines/x",
        "actions: [{shell: a}, {rocket: {to: moon}}]",
        "unknown action kind \"rocket\"",
    )
    .await;
    // Names.
    refused(
        api,
        "/pipelines/Bad_Name",
        "actions: [{shell: a}]",
        "is not valid",
    )
    .await;
    refused(api, "/projects/x", "name: y\npipelines: [build]", "\"y\"").await;
    refused(
        api,
        "/projects/x",
        "pipelines: [build]\nnotify: [nobody]",
        "not an email address",
    )
    .await;
    refused(api, "/projects/x", "", "empty").await;

    assert_eq!(everything(api).await, before_cycle, "nothing changed");
    let (projects, pipelines) = before_cycle;
    assert_eq!(projects, before.0);
    assert_eq!(pipelines.len(), before.1.len() + 2);
    for missing in ["/projects/x", "/pipelines/x", "/projects/x/revisions"] {
        let r = api.request(Method::GET, missing).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    let b: StoredPipeline = api.get("/pipelines/b").await;
    assert_eq!(b.revision, 1);
    assert!(b.spec.needs.is_empty());
}

async fn applying_the_same_definition_twice_is_one_revision(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    let text = "# the build\nactions:\n  - shell: make\n";
    let r = api.put_yaml("/pipelines/build", text).await;
    let applied: Applied = json(r, StatusCode::CREATED).await;
    assert_eq!((applied.revision, applied.change), (1, Change::Created));
    // The same text, and the same definition written otherwise: no change.
    for again in [text, "{actions: [{shell: make}], name: build}"] {
        let applied: Applied = json(
            api.put_yaml("/pipelines/build", again).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!((applied.revision, applied.change), (1, Change::Unchanged));
    }
    let changed = "actions:\n  - shell: make check\n";
    let applied: Applied = json(
        api.put_yaml("/pipelines/build", changed).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!((applied.revision, applied.change), (2, Change::Updated));

    let stored: StoredPipeline = api.get("/pipelines/build").await;
    assert_eq!(stored.revision, 2);
    assert_eq!(stored.text, changed);
    assert_eq!(stored.spec.actions[0].describe(), "shell: make check");
    assert_eq!(stored.updated_by, env.idp.admin.id);
    let revisions: Vec<Revision> = api.get("/pipelines/build/revisions").await;
    assert_eq!(revisions.len(), 2);
    assert_eq!(
        (revisions[0].revision, revisions[0].text.as_str()),
        (2, changed)
    );
    assert_eq!(
        (revisions[1].revision, revisions[1].text.as_str()),
        (1, text)
    );
    assert!(
        revisions
            .iter()
            .all(|r| r.author == env.idp.admin.id && !r.deleted)
    );

    // As YAML, the text as applied.
    let r = api
        .request(Method::GET, "/pipelines/build")
        .header("accept", "application/yaml")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.text().await.expect("text"), changed);

    // A project too, and the list.
    api.project("hello", "parameters: {git_ref: main}\npipelines: [build]")
        .await;
    api.project("hello", "pipelines: [build]\nparameters: {git_ref: main}")
        .await;
    let projects: Vec<StoredProject> = api.get("/projects").await;
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0].revision, 1);
    assert_eq!(projects[0].spec.name.as_deref(), Some("hello"));
}

async fn deleting_keeps_a_revision_and_a_pipeline_in_use_cannot_go(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("build", "actions: [{shell: make}]").await;
    api.project("hello", "pipelines: [build]").await;
    let r = api
        .request(Method::DELETE, "/pipelines/build")
        .send()
        .await
        .expect("DELETE");
    let problem: Problem = json(r, StatusCode::CONFLICT).await;
    assert!(
        problem
            .detail
            .unwrap_or_default()
            .contains("used by project hello")
    );
    let _: StoredPipeline = api.get("/pipelines/build").await;

    let r = api
        .request(Method::DELETE, "/projects/hello")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = api
        .request(Method::GET, "/projects/hello")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let revisions: Vec<Revision> = api.get("/projects/hello/revisions").await;
    assert_eq!(revisions.len(), 2);
    assert!(revisions[0].deleted && revisions[0].revision == 2);
    let r = api
        .request(Method::DELETE, "/projects/hello")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = api
        .request(Method::DELETE, "/pipelines/build")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Created again, it goes on numbering.
    let applied: Applied = json(
        api.put_yaml("/pipelines/build", "actions: [{shell: x}]")
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(applied.revision, 3);
}

async fn a_plugin_kind_is_accepted_once_a_connected_worker_advertises_it(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    let pipeline = "actions: [{docker-push: {image: ick}}]";
    refused(
        api,
        "/pipelines/push",
        pipeline,
        "unknown action kind \"docker-push\"",
    )
    .await;
    let worker = env.worker("w1").plugins(&["docker-push"]);
    assert!(worker.claim(0).await.is_none());
    api.pipeline("push", pipeline).await;
    api.project("ship", "pipelines: [push]").await;
    let build = api.trigger("ship").await;
    // A worker without the plugin gets nothing; the one with it does.
    assert!(env.worker("plain").claim(0).await.is_none());
    let a = worker.claim_within(SOON).await;
    assert_eq!(
        (a.build.id.as_str(), a.action.kind.as_str()),
        (build.id.as_str(), "docker-push")
    );
}

/// 4 MiB of `[` took libyaml minutes, on the runtime's threads: now it is
/// refused at the 65th level while `/healthz` keeps answering at once.
async fn a_deeply_nested_body_is_refused_at_once_and_stalls_nothing(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    let before = everything(api).await;
    let body = format!("actions: {}", "[".repeat((4 << 20) - 9));
    let healthz = format!("{}/healthz", env.controller.url());
    let http = reqwest::Client::new();
    http.get(&healthz).send().await.expect("healthz");

    let started = std::time::Instant::now();
    let refusal = tokio::spawn({
        let api = api.clone();
        async move { api.put_yaml("/pipelines/deep", &body).await }
    });
    let mut slowest = std::time::Duration::ZERO;
    while !refusal.is_finished() {
        let asked = std::time::Instant::now();
        let r = http.get(&healthz).send().await.expect("healthz");
        assert_eq!(r.status(), StatusCode::OK);
        slowest = slowest.max(asked.elapsed());
    }
    let r = refusal.await.expect("request");
    let took = started.elapsed();
    let problem: Problem = json(r, StatusCode::BAD_REQUEST).await;
    let detail = problem.detail.clone().unwrap_or_default();
    assert!(detail.contains("nests deeper than 64"), "{detail}");
    assert_eq!(problem.extensions["line"], 1);
    assert!(
        took < std::time::Duration::from_millis(200),
        "refused in {took:?}"
    );
    assert!(
        slowest < std::time::Duration::from_millis(50),
        "/healthz took {slowest:?}"
    );
    assert_eq!(everything(api).await, before);
}

async fn reserved_parameter_names_are_refused_at_apply_with_line_and_column(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("build", "actions: [{shell: make}]").await;
    let before = everything(api).await;

    let p = refused(
        api,
        "/pipelines/x",
        "actions: [{shell: make}]\nparameters:\n  - version\n  - LD_PRELOAD\n",
        "\"LD_PRELOAD\" is reserved",
    )
    .await;
    assert_eq!(
        (
            p.extensions["line"].as_u64(),
            p.extensions["column"].as_u64()
        ),
        (Some(4), Some(5))
    );
    let p = refused(
        api,
        "/projects/x",
        "pipelines: [build]\nparameters: {greeting: hi, BASH_ENV: /tmp/evil.sh}\n",
        "\"BASH_ENV\" is reserved",
    )
    .await;
    assert_eq!(
        (
            p.extensions["line"].as_u64(),
            p.extensions["column"].as_u64()
        ),
        (Some(2), Some(28))
    );
    for name in [
        "PATH",
        "GIT_SSH_COMMAND",
        "PYTHONSTARTUP",
        "ICK_PARAMS",
        "TMPDIR",
    ] {
        refused(
            api,
            "/projects/x",
            &format!("pipelines: [build]\nparameters:\n  {name}: x\n"),
            &format!("{name:?} is reserved"),
        )
        .await;
    }
    assert_eq!(everything(api).await, before, "nothing stored");
}
