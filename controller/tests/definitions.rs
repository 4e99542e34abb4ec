//! Projects and pipelines: validation with clear errors and nothing stored
//! on error, idempotent apply, revisions, deletion.

mod common;

use common::{Env, SOON};
use ick_api::Problem;
use ick_api::controller::{
    Applied, ApplyAnswer, ApplyRequest, Change, DefinitionFile, DefinitionProblem, Revision,
    StoredPipeline, StoredProject,
};
use ick_tests::controller::{Api, json};
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};

on_both_storages!(
    invalid_definitions_are_refused_with_a_clear_error_and_nothing_stored,
    applying_the_same_definition_twice_is_one_revision,
    deleting_keeps_a_revision_and_a_pipeline_in_use_cannot_go,
    a_plugin_kind_no_worker_has_is_accepted_with_a_warning_and_the_build_waits_for_it,
    a_needs_cycle_among_stored_pipelines_is_refused_and_a_needed_pipeline_cannot_go,
    refs_are_checked_at_apply_and_filled_with_the_build_s_values,
    a_batch_with_two_bad_documents_reports_both_in_place_and_changes_nothing,
    a_batch_applies_all_at_once_keeping_comments_and_a_dry_run_changes_nothing,
    a_project_that_notifies_warns_when_no_mail_is_configured,
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
    // A needs: cycle, named, even before a project runs it.
    api.pipeline("c", "needs: [d]\nactions: [{shell: c}]").await;
    api.pipeline("d", "actions: [{shell: d}]").await;
    let before_cycle = everything(api).await;
    refused(
        api,
        "/pipelines/d",
        "needs: [c]\nactions: [{shell: d}]",
        "needs: cycle d → c → d",
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
        "actions: [{shell: a}, {Rocket: {to: moon}}]",
        "unknown action kind \"Rocket\"",
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
    // Named by the client's name, not its id.
    assert_eq!(stored.updated_by, ick_tests::idp::ADMIN_CLIENT);
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
            .all(|r| r.author == ick_tests::idp::ADMIN_CLIENT && !r.deleted)
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

async fn a_plugin_kind_no_worker_has_is_accepted_with_a_warning_and_the_build_waits_for_it(
    storage: Storage,
) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    let pipeline = "actions: [{docker-push: {image: ick}}]";
    let applied: Applied = json(
        api.put_yaml("/pipelines/push", pipeline).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(applied.warnings.len(), 1, "{applied:?}");
    assert!(
        applied.warnings[0].contains("no connected worker has a plugin for kind \"docker-push\""),
        "{:?}",
        applied.warnings
    );
    api.project("ship", "pipelines: [push]").await;
    let build = api.trigger("ship").await;
    // A worker without the plugin gets nothing, and the build says why.
    let plain = env.worker("plain");
    assert!(plain.claim(0).await.is_none());
    let view = api.build(&build.id).await;
    let waiting = view.nodes[0].waiting_for.clone().unwrap_or_default();
    assert!(
        waiting.contains("no connected worker runs actions of kind docker-push"),
        "{waiting}"
    );
    // Once a worker has it, apply no longer warns, and it runs.
    let worker = env.worker("w1").plugins(&["docker-push"]);
    assert!(worker.claim(0).await.is_none_or(|a| a.build.id == build.id));
    let again: Applied = json(
        api.put_yaml("/pipelines/push", "actions: [{docker-push: {image: ick2}}]")
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(again.warnings.is_empty(), "{again:?}");
}

async fn a_needs_cycle_among_stored_pipelines_is_refused_and_a_needed_pipeline_cannot_go(
    storage: Storage,
) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    // No project runs them: the cycle is still refused.
    api.pipeline("a", "needs: [b]\nactions: [{shell: a}]").await;
    api.pipeline("c", "needs: [a]\nactions: [{shell: c}]").await;
    let before = everything(api).await;
    refused(
        api,
        "/pipelines/b",
        "needs: [c]\nactions: [{shell: b}]",
        "needs: cycle b → c → a → b",
    )
    .await;
    assert_eq!(everything(api).await, before, "nothing changed");
    api.pipeline("b", "actions: [{shell: b}]").await;
    // A pipeline another needs cannot go; the one nothing needs can.
    let r = api
        .request(Method::DELETE, "/pipelines/a")
        .send()
        .await
        .expect("DELETE");
    let problem: Problem = json(r, StatusCode::CONFLICT).await;
    let detail = problem.detail.unwrap_or_default();
    assert!(
        detail.contains("pipeline \"a\" is needed by pipeline c"),
        "{detail}"
    );
    let _: StoredPipeline = api.get("/pipelines/a").await;
    let r = api
        .request(Method::DELETE, "/pipelines/c")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

async fn refs_are_checked_at_apply_and_filled_with_the_build_s_values(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    let before = everything(api).await;
    let p = refused(
        api,
        "/pipelines/pack",
        "actions:\n  - archive: {ref: \"nu/build-$BUILD_NUMBER\"}\n",
        "action 1: ",
    )
    .await;
    let detail = p.detail.unwrap_or_default();
    assert!(detail.contains("{number}"), "{detail}");
    refused(
        api,
        "/pipelines/pack",
        "actions: [{populate: {ref: \"a/{branch}\"}}]",
        "{branch} is not a build value",
    )
    .await;
    assert_eq!(everything(api).await, before, "nothing changed");
    api.pipeline(
        "pack",
        "actions: [{archive: {ref: \"{project}/{pipeline}/build-{number}\"}}]",
    )
    .await;
    api.project("nu", "pipelines: [pack]").await;
    let worker = env.worker("w1");
    for number in 1..=2 {
        let build = api.trigger("nu").await;
        assert_eq!(build.number, number);
        let a = worker.claim_within(SOON).await;
        assert_eq!(a.action.spec["ref"], format!("nu/pack/build-{number}"));
        worker.finish(&a, 0, 0).await;
    }
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

fn files(files: &[(&str, &str)], dry_run: bool) -> ApplyRequest {
    ApplyRequest {
        files: files
            .iter()
            .map(|(name, text)| DefinitionFile {
                name: name.to_string(),
                text: text.to_string(),
            })
            .collect(),
        dry_run,
    }
}

async fn a_batch_with_two_bad_documents_reports_both_in_place_and_changes_nothing(
    storage: Storage,
) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("build", "actions: [{shell: make}]").await;
    let before = everything(api).await;
    let request = files(
        &[
            (
                "a.yaml",
                "pipeline: fine\nactions: [{shell: 'true'}]\n---\npipeline: typo\nactoins: []\n",
            ),
            (
                "b.ick",
                "pipelines:\n  - pipeline: pack\n    actions:\n      - shell: make\n      - archive: {ref: 'x/$N'}\nprojects:\n  - project: p\n    pipelines: [fine, pack]\n",
            ),
        ],
        false,
    );
    let r = api.post("/definitions", Some(&request)).await;
    let problem: Problem = json(r, StatusCode::BAD_REQUEST).await;
    let errors: Vec<DefinitionProblem> =
        serde_json::from_value(problem.extensions["errors"].clone()).expect("errors");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        (errors[0].file.as_str(), errors[0].line, errors[0].column),
        ("a.yaml", Some(5), Some(1))
    );
    assert!(errors[0].message.contains("actoins"), "{errors:?}");
    assert_eq!(
        (errors[1].file.as_str(), errors[1].line),
        ("b.ick", Some(2))
    );
    assert!(
        errors[1].message.contains("pipeline \"pack\": action 2: "),
        "{errors:?}"
    );
    // A set that parses but does not hold together: each project named.
    let request = files(
        &[(
            "c.yaml",
            "pipeline: x\nneeds: [y]\nactions: [{shell: x}]\n---\npipeline: y\nneeds: [x]\nactions: [{shell: y}]\n---\nproject: q\npipelines: [nosuch]\n",
        )],
        false,
    );
    let r = api.post("/definitions", Some(&request)).await;
    let problem: Problem = json(r, StatusCode::BAD_REQUEST).await;
    let errors: Vec<DefinitionProblem> =
        serde_json::from_value(problem.extensions["errors"].clone()).expect("errors");
    let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(1), Some(5), Some(9)], "{errors:?}");
    assert!(
        errors[0].message.contains("needs: cycle x → y → x"),
        "{errors:?}"
    );
    assert!(errors[2].message.contains("\"nosuch\""), "{errors:?}");
    assert_eq!(everything(api).await, before, "nothing changed");
}

async fn a_batch_applies_all_at_once_keeping_comments_and_a_dry_run_changes_nothing(
    storage: Storage,
) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    let text = "# the project\nproject: hello # named here\npipelines: [build]\n---\n# how it builds\npipeline: build\nactions:\n  - shell: make # all of it\n";
    let answer: ApplyAnswer = json(
        api.post("/definitions", Some(&files(&[("hello.yaml", text)], false)))
            .await,
        StatusCode::OK,
    )
    .await;
    let what: Vec<(&str, Change)> = answer
        .applied
        .iter()
        .map(|a| (a.name.as_str(), a.change))
        .collect();
    assert_eq!(
        what,
        [("build", Change::Created), ("hello", Change::Created)]
    );
    let project: StoredProject = api.get("/projects/hello").await;
    assert_eq!(
        project.text,
        "# the project\nproject: hello # named here\npipelines: [build]\n"
    );
    let r = api
        .request(Method::GET, "/pipelines/build")
        .header("accept", "application/yaml")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        r.text().await.expect("text"),
        "# how it builds\npipeline: build\nactions:\n  - shell: make # all of it\n"
    );
    // The stored text applies again, through PUT too, as no change.
    let again: Applied = json(
        api.put_yaml("/projects/hello", &project.text).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again.change, Change::Unchanged);

    let before = everything(api).await;
    let changed = text.replace("make # all of it", "make check");
    let answer: ApplyAnswer = json(
        api.post(
            "/definitions",
            Some(&files(&[("hello.yaml", &changed)], true)),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(answer.dry_run);
    let build = &answer.applied[0];
    assert_eq!((build.change, build.revision), (Change::Updated, 2));
    assert!(
        build
            .previous_text
            .as_deref()
            .is_some_and(|t| t.contains("make # all of it"))
    );
    assert!(
        build
            .text
            .as_deref()
            .is_some_and(|t| t.contains("make check"))
    );
    assert_eq!(answer.applied[1].change, Change::Unchanged);
    assert_eq!(everything(api).await, before, "a dry run changes nothing");
    let revisions: Vec<Revision> = api.get("/pipelines/build/revisions").await;
    assert_eq!(revisions.len(), 1);
}

async fn a_project_that_notifies_warns_when_no_mail_is_configured(storage: Storage) {
    let env = Env::start(storage).await;
    let api = &env.admin;
    api.pipeline("build", "actions: [{shell: make}]").await;
    let applied: Applied = json(
        api.put_yaml(
            "/projects/hello",
            "pipelines: [build]\nnotify: [dev@example.org]",
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(applied.warnings.len(), 1, "{applied:?}");
    assert!(
        applied.warnings[0].contains("no `mail:` configured"),
        "{:?}",
        applied.warnings
    );
    let quiet: Applied = json(
        api.put_yaml("/projects/quiet", "pipelines: [build]").await,
        StatusCode::CREATED,
    )
    .await;
    assert!(quiet.warnings.is_empty());
}
