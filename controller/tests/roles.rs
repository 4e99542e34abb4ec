//! Roles through the real controller and IDP: the whole role × act matrix
//! on a private project, and the attacks, each with what must not change.
//! The callers are IDP clients made through the IDP's admin API, bound as
//! `client:NAME`; users and groups (`user:NAME`, `group:NAME`, from the
//! token's `ick_user`) are resolved by the same decision, unit-tested in
//! `controller/src/access/decide.rs`.

mod common;

use common::Env;
use ick_api::Problem;
use ick_api::controller::{
    ApplyRequest, BuildList, BuildSummary, DefinitionFile, Membership, Revision, StoredPipeline,
    StoredProject,
};
use ick_tests::controller::{Api, json};
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Every scope of the controller but `work:run`: what the roles are
/// tested with, so that only the role decides.
const ALL: &str = "projects:read projects:write builds:read builds:trigger builds:cancel";

const PIPELINE: &str = "actions: [{shell: 'true'}]";

/// The roles of the matrix, in the order of its columns.
const ROLES: [&str; 7] = [
    "none",
    "viewer",
    "developer",
    "maintainer",
    "owner",
    "creator",
    "admin",
];

/// What a caller does in the matrix.
#[derive(Debug, Clone, Copy)]
enum Act {
    ReadProject,
    ReadLog,
    Trigger,
    Cancel,
    Retry,
    ApplyProject,
    CreateProject,
    ApplySharedPipeline,
    RotateTriggerSecret,
    AddMember,
    ReadAudit,
    DeleteProject,
}

/// The expected status of each act, per role (in the order of `ROLES`).
fn matrix() -> Vec<(Act, [u16; 7])> {
    use Act::*;
    vec![
        //                        none viewer dev  maint owner creat admin
        (ReadProject, [404, 200, 200, 200, 200, 404, 200]),
        (ReadLog, [404, 200, 200, 200, 200, 404, 200]),
        (Trigger, [404, 403, 201, 201, 201, 404, 201]),
        (Cancel, [404, 403, 200, 200, 200, 404, 200]),
        (Retry, [404, 403, 200, 200, 200, 404, 200]),
        // Not told that a private project it cannot see exists: refused
        // as creating it would be (a creator is told the name is taken).
        (ApplyProject, [403, 403, 403, 200, 200, 403, 200]),
        (CreateProject, [403, 403, 403, 403, 403, 201, 201]),
        (ApplySharedPipeline, [403, 403, 403, 200, 200, 403, 200]),
        (RotateTriggerSecret, [404, 403, 403, 200, 200, 404, 200]),
        (AddMember, [404, 403, 403, 403, 201, 404, 201]),
        (ReadAudit, [404, 403, 403, 403, 200, 404, 200]),
        (DeleteProject, [404, 403, 403, 403, 204, 404, 204]),
    ]
}

/// The private project `p` (and `d-ROLE` for each role, to delete) with
/// each role's client bound; the pipeline `build` only `p` runs.
struct Matrix {
    env: Env,
    callers: Vec<Api>,
}

async fn setup(storage: Storage) -> Matrix {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin.pipeline("tidy", PIPELINE).await;
    // No project runs it, so every caller with a token may read it.
    env.admin.pipeline("free", PIPELINE).await;
    env.admin
        .project("p", "pipelines: [build]\nvisibility: private")
        .await;
    let mut callers = Vec::new();
    for role in ROLES {
        let name = format!("as-{role}");
        env.admin
            .project(
                &format!("d-{role}"),
                "pipelines: [tidy]\nvisibility: private",
            )
            .await;
        let (api, _) = env.idp_client(&name, ALL).await;
        let member = format!("client:{name}");
        match role {
            "none" => {}
            "creator" | "admin" => env.grant(&member, role).await,
            _ => {
                env.member("p", &member, role).await;
                env.member(&format!("d-{role}"), &member, role).await;
            }
        }
        callers.push(api);
    }
    Matrix { env, callers }
}

/// A build of `p`, queued (no worker runs it), triggered by the admin.
async fn queued(env: &Env) -> BuildSummary {
    env.admin.trigger("p").await
}

/// A build of `p` that was cancelled, so that it can be retried.
async fn cancelled(env: &Env) -> BuildSummary {
    let b = queued(env).await;
    let r = env
        .admin
        .post::<()>(&format!("/builds/{}/cancel", b.id), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    b
}

async fn perform(m: &Matrix, act: Act, role: &str, api: &Api) -> reqwest::Response {
    let env = &m.env;
    match act {
        Act::ReadProject => api.request(Method::GET, "/projects/p").send().await,
        Act::ReadLog => {
            let b = queued(env).await;
            api.request(Method::GET, &format!("/builds/{}/log", b.id))
                .send()
                .await
        }
        Act::Trigger => api.request(Method::POST, "/projects/p/builds").send().await,
        Act::Cancel => {
            let b = queued(env).await;
            api.request(Method::POST, &format!("/builds/{}/cancel", b.id))
                .send()
                .await
        }
        Act::Retry => {
            let b = cancelled(env).await;
            api.request(Method::POST, &format!("/builds/{}/retry", b.id))
                .send()
                .await
        }
        Act::ApplyProject => {
            api.request(Method::PUT, "/projects/p")
                .body(format!(
                    "pipelines: [build]\nvisibility: private\nparameters: {{by: {role}}}"
                ))
                .send()
                .await
        }
        Act::CreateProject => {
            api.request(Method::PUT, &format!("/projects/new-{role}"))
                .body("pipelines: [free]")
                .send()
                .await
        }
        Act::ApplySharedPipeline => {
            api.request(Method::PUT, "/pipelines/build")
                .body(format!("actions: [{{shell: 'echo {role}'}}]"))
                .send()
                .await
        }
        Act::RotateTriggerSecret => {
            api.request(Method::POST, "/projects/p/trigger-secret/rotate")
                .send()
                .await
        }
        Act::AddMember => {
            api.request(Method::PUT, "/projects/p/members")
                .json(&json!({"member": format!("user:added-by-{role}"), "role": "viewer"}))
                .send()
                .await
        }
        Act::ReadAudit => api.request(Method::GET, "/audit?project=p").send().await,
        Act::DeleteProject => {
            api.request(Method::DELETE, &format!("/projects/d-{role}"))
                .send()
                .await
        }
    }
    .expect("request")
}

async fn role_by_act_matrix(storage: Storage) {
    let m = setup(storage).await;
    let mut wrong = Vec::new();
    for (act, expected) in matrix() {
        for ((role, api), want) in ROLES.iter().zip(&m.callers).zip(expected) {
            let r = perform(&m, act, role, api).await;
            let got = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if got != want {
                wrong.push(format!("{act:?} as {role}: {got}, not {want}: {body}"));
            }
            // A private project's refusals to who may not see it say no
            // more than that there is none.
            if got == 404 {
                assert!(
                    body.contains("no project") || body.contains("no build"),
                    "{act:?} as {role}: {body}"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // What the allowed acts did, and the refused ones did not.
    let members: Vec<Membership> = m.env.admin.get("/projects/p/members").await;
    let added: Vec<String> = members
        .iter()
        .map(|m| m.member.to_string())
        .filter(|m| m.starts_with("user:added-by-"))
        .collect();
    assert_eq!(added, ["user:added-by-admin", "user:added-by-owner"]);
    let revisions: Vec<Revision> = m.env.admin.get("/projects/p/revisions").await;
    let authors: Vec<&str> = revisions.iter().map(|r| r.author.as_str()).collect();
    assert_eq!(
        authors,
        ["as-admin", "as-owner", "as-maintainer", "test-admin"]
    );
    let projects: Vec<StoredProject> = m.env.admin.get("/projects").await;
    let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
    for gone in ["d-owner", "d-admin"] {
        assert!(!names.contains(&gone), "{gone} was deleted: {names:?}");
    }
    for kept in [
        "d-none",
        "d-viewer",
        "d-developer",
        "d-maintainer",
        "d-creator",
    ] {
        assert!(names.contains(&kept), "{kept} stays: {names:?}");
    }
    // The creator owns what it created; the admin needs no binding.
    let owners: Vec<Membership> = m.env.admin.get("/projects/new-creator/members").await;
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].member.to_string(), "client:as-creator");
    assert_eq!(owners[0].role.as_str(), "owner");
    let none: Vec<Membership> = m.env.admin.get("/projects/new-admin/members").await;
    assert!(none.is_empty());
    assert!(!names.contains(&"new-owner") && !names.contains(&"new-none"));
}

on_both_storages!(role_by_act_matrix);

/// A client with `role` on `project` (or none), made through the IDP.
async fn caller(env: &Env, name: &str, scopes: &str, bindings: &[(&str, &str)]) -> Api {
    let (api, _) = env.idp_client(name, scopes).await;
    for (project, role) in bindings {
        env.member(project, &format!("client:{name}"), role).await;
    }
    api
}

async fn builds_of(env: &Env, project: &str) -> usize {
    let list: BuildList = env.admin.get(&format!("/builds?project={project}")).await;
    list.builds.len()
}

async fn status(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

/// A viewer who triggers, a developer who edits, a maintainer who adds
/// members: 403, and nothing changed.
async fn each_role_is_refused_the_next_ones_acts(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin.project("p", "pipelines: [build]").await;
    let viewer = caller(&env, "viewer", ALL, &[("p", "viewer")]).await;
    let developer = caller(&env, "developer", ALL, &[("p", "developer")]).await;
    let maintainer = caller(&env, "maintainer", ALL, &[("p", "maintainer")]).await;

    let (s, body) = status(viewer.trigger_raw("p", &Default::default()).await).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("needs the role developer"), "{body}");
    assert!(body.contains("it has viewer"), "{body}");
    assert_eq!(builds_of(&env, "p").await, 0);

    let (s, body) = status(
        developer
            .put_yaml("/projects/p", "pipelines: [build]\nconcurrency: 9")
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("needs the role maintainer"), "{body}");
    let (s, _) = status(
        developer
            .put_yaml("/pipelines/build", "actions: [{shell: 'rm -rf /'}]")
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = status(
        developer
            .request(Method::POST, "/projects/p/trigger-secret/rotate")
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let stored: StoredProject = env.admin.get("/projects/p").await;
    assert_eq!((stored.revision, stored.spec.concurrency), (1, None));
    let pipeline: StoredPipeline = env.admin.get("/pipelines/build").await;
    assert_eq!(pipeline.revision, 1);

    let before: Vec<Membership> = env.admin.get("/projects/p/members").await;
    for body in [
        json!({"member": "client:maintainer", "role": "owner"}),
        json!({"member": "user:friend", "role": "developer"}),
    ] {
        let r = maintainer
            .request(Method::PUT, "/projects/p/members")
            .json(&body)
            .send()
            .await
            .expect("PUT");
        let (s, text) = status(r).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("needs the role owner"), "{text}");
    }
    let r = maintainer
        .request(Method::DELETE, "/projects/p/members/client:viewer")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = maintainer
        .request(Method::DELETE, "/projects/p")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let after: Vec<Membership> = env.admin.get("/projects/p/members").await;
    assert_eq!(before, after);
    // What they may do, they do.
    let b: BuildSummary = json(
        developer.trigger_raw("p", &Default::default()).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(b.triggered_by, "developer");
    maintainer
        .project("p", "pipelines: [build]\nconcurrency: 2")
        .await;
}

on_both_storages!(each_role_is_refused_the_next_ones_acts);

/// An outsider gets 404 for a private project and what is in it, as for
/// one that does not exist, and lists leave it out.
async fn a_private_project_does_not_exist_for_outsiders(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("secret-sauce", PIPELINE).await;
    env.admin.pipeline("common", PIPELINE).await;
    env.admin
        .project("hidden", "pipelines: [secret-sauce]\nvisibility: private")
        .await;
    env.admin.project("open", "pipelines: [common]").await;
    let hidden_build = env.admin.trigger("hidden").await;
    env.admin.trigger("open").await;
    let outsider = caller(&env, "outsider", ALL, &[]).await;
    let insider = caller(&env, "insider", ALL, &[("hidden", "viewer")]).await;

    let same = |a: &str, b: &str| a.replace("hidden", "X") == b.replace("nowhere", "X");
    for (path, method) in [
        ("/projects/{}", Method::GET),
        ("/projects/{}/revisions", Method::GET),
        ("/projects/{}/members", Method::GET),
        ("/projects/{}/builds", Method::POST),
        ("/projects/{}/trigger-secret", Method::GET),
        ("/builds?project={}", Method::GET),
        ("/notifications?project={}", Method::GET),
    ] {
        let r = outsider
            .request(method.clone(), &path.replace("{}", "hidden"))
            .send()
            .await
            .expect("send");
        let (s, body) = status(r).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        let r = outsider
            .request(method.clone(), &path.replace("{}", "nowhere"))
            .send()
            .await
            .expect("send");
        let (s2, body2) = status(r).await;
        assert_eq!(s2, StatusCode::NOT_FOUND, "{method} {path}: {body2}");
        let detail = |b: &str| {
            serde_json::from_str::<Problem>(b)
                .map(|p| p.detail.unwrap_or_default())
                .unwrap_or_default()
        };
        assert!(
            same(&detail(&body), &detail(&body2)),
            "{path}: {body} / {body2}"
        );
    }
    for path in [
        format!("/builds/{}", hidden_build.id),
        format!("/builds/{}/log", hidden_build.id),
        format!("/builds/{}/log/stream", hidden_build.id),
        "/projects/hidden/builds/1".to_string(),
        "/pipelines/secret-sauce".to_string(),
        "/pipelines/secret-sauce/revisions".to_string(),
    ] {
        let r = outsider
            .request(Method::GET, &path)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let r = insider
            .request(Method::GET, &path)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    for path in [
        format!("/builds/{}/cancel", hidden_build.id),
        format!("/builds/{}/retry", hidden_build.id),
    ] {
        let r = outsider
            .request(Method::POST, &path)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Lists show what the caller may read.
    let projects: Vec<StoredProject> = outsider.get("/projects").await;
    assert_eq!(
        projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["open"]
    );
    let pipelines: Vec<StoredPipeline> = outsider.get("/pipelines").await;
    assert_eq!(
        pipelines
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["common"]
    );
    let builds: BuildList = outsider.get("/builds").await;
    assert_eq!(
        builds
            .builds
            .iter()
            .map(|b| b.project.as_str())
            .collect::<Vec<_>>(),
        ["open"]
    );
    let builds: BuildList = insider.get("/builds").await;
    assert_eq!(builds.builds.len(), 2);
    let projects: Vec<StoredProject> = insider.get("/projects").await;
    assert_eq!(projects.len(), 2);
    // A project the outsider cannot see cannot be made to run the hidden
    // pipeline by it either: to it, the pipeline is not there.
    env.grant("client:outsider", "creator").await;
    let r = outsider
        .put_yaml("/projects/mine", "pipelines: [secret-sauce]")
        .await;
    let (s, body) = status(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("unknown pipeline \\\"secret-sauce\\\""),
        "{body}"
    );
    outsider.project("mine", "pipelines: [common]").await;
}

on_both_storages!(a_private_project_does_not_exist_for_outsiders);

/// A GET without any token.
async fn anonymous(env: &Env, path: &str) -> (StatusCode, String, bool) {
    let r = env
        .admin
        .http
        .get(format!("{}{path}", env.controller.url()))
        .timeout(common::SOON)
        .send()
        .await
        .expect("GET");
    let challenge = r.headers().contains_key("www-authenticate");
    let (s, body) = status(r).await;
    (s, body, challenge)
}

/// A public project, its builds and logs are read without a token; its
/// trigger secret, members and everything else are not.
async fn a_public_project_is_read_without_a_token(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin
        .project("pub", "pipelines: [build]\nvisibility: public")
        .await;
    env.admin.project("int", "pipelines: [build]").await;
    env.admin
        .project("priv", "pipelines: [build]\nvisibility: private")
        .await;
    let b = env.admin.trigger("pub").await;
    let other = env.admin.trigger("int").await;
    for path in [
        "/projects/pub".to_string(),
        "/builds?project=pub".to_string(),
        format!("/builds/{}", b.id),
        "/projects/pub/builds/1".to_string(),
        format!("/builds/{}/log", b.id),
    ] {
        let (s, body, _) = anonymous(&env, &path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
    }
    let r = env
        .admin
        .http
        .get(format!(
            "{}/builds/{}/log/stream",
            env.controller.url(),
            b.id
        ))
        .timeout(common::SOON)
        .send()
        .await
        .expect("GET stream");
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    let list: BuildList = serde_json::from_str(&anonymous(&env, "/builds?project=pub").await.1)
        .expect("a build list");
    assert_eq!(list.builds.len(), 1);
    for path in [
        "/projects/pub/trigger-secret".to_string(),
        "/projects/pub/members".to_string(),
        "/projects/pub/revisions".to_string(),
        "/projects".to_string(),
        "/builds".to_string(),
        "/pipelines/build".to_string(),
        "/audit?project=pub".to_string(),
        "/projects/int".to_string(),
        "/projects/priv".to_string(),
        "/projects/nowhere".to_string(),
        format!("/builds/{}", other.id),
        format!("/builds/{}/log", other.id),
        "/builds?project=int".to_string(),
        "/builds?project=priv".to_string(),
    ] {
        let (s, body, challenge) = anonymous(&env, &path).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(challenge, "{path}: a 401 says how to authenticate");
    }
    for (method, path) in [
        (Method::POST, "/projects/pub/builds"),
        (Method::POST, "/projects/pub/trigger-secret/rotate"),
        (Method::PUT, "/projects/pub"),
        (Method::POST, &*format!("/builds/{}/cancel", b.id)),
    ] {
        let r = env
            .admin
            .http
            .request(method.clone(), format!("{}{path}", env.controller.url()))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(builds_of(&env, "pub").await, 1);
    // A token that is there must be valid, even for a public project.
    let forged = Api::new(env.controller.url(), "eyJhbGciOiJFZERTQSJ9.e30.c2ln");
    let r = forged
        .request(Method::GET, "/projects/pub")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

on_both_storages!(a_public_project_is_read_without_a_token);

/// Pipelines are shared: a maintainer of one of the two projects that run
/// one may not change or delete it; nothing changes.
async fn a_shared_pipeline_needs_maintainer_on_every_project_that_runs_it(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("shared", PIPELINE).await;
    env.admin.pipeline("own", PIPELINE).await;
    env.admin.project("a", "pipelines: [shared, own]").await;
    env.admin
        .project("b", "pipelines: [shared]\nvisibility: private")
        .await;
    let half = caller(&env, "half", ALL, &[("a", "maintainer")]).await;
    let both = caller(&env, "both", ALL, &[("a", "maintainer"), ("b", "owner")]).await;
    let (s, body) = status(
        half.put_yaml("/pipelines/shared", "actions: [{shell: evil}]")
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    // The project it cannot see is counted, not named.
    assert!(body.contains("1 project it cannot see"), "{body}");
    assert!(!body.contains("\\\"b\\\""), "{body}");
    let r = half
        .request(Method::DELETE, "/pipelines/shared")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let stored: StoredPipeline = env.admin.get("/pipelines/shared").await;
    assert_eq!((stored.revision, stored.text.as_str()), (1, PIPELINE));
    // Its own pipeline, which only its project runs, it changes.
    half.pipeline("own", "actions: [{shell: 'echo mine'}]")
        .await;
    // A new pipeline no project runs: a maintainer of some project may.
    half.pipeline("fresh", PIPELINE).await;
    // With maintainer on both, it may.
    both.pipeline("shared", "actions: [{shell: 'echo both'}]")
        .await;
    let stored: StoredPipeline = env.admin.get("/pipelines/shared").await;
    assert_eq!(stored.revision, 2);
    // Nobody without a role anywhere creates pipelines.
    let nobody = caller(&env, "nobody", ALL, &[]).await;
    let (s, body) = status(nobody.put_yaml("/pipelines/mine", PIPELINE).await).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("global role creator"), "{body}");
    let r = env
        .admin
        .request(Method::GET, "/pipelines/mine")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

on_both_storages!(a_shared_pipeline_needs_maintainer_on_every_project_that_runs_it);

fn files(text: &str) -> ApplyRequest {
    ApplyRequest {
        files: vec![DefinitionFile {
            name: "ick.yaml".into(),
            text: text.into(),
        }],
        dry_run: false,
    }
}

/// A batch with one definition its author may not apply applies none.
async fn a_batch_with_one_forbidden_definition_applies_nothing(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin.project("mine", "pipelines: [build]").await;
    env.admin.project("theirs", "pipelines: [build]").await;
    let m = caller(&env, "m", ALL, &[("mine", "maintainer")]).await;
    let batch = "pipelines:\n\
                 \x20 - pipeline: new-one\n    actions: [{shell: 'true'}]\n\
                 projects:\n\
                 \x20 - project: mine\n    pipelines: [build, new-one]\n\
                 \x20 - project: theirs\n    pipelines: [build]\n    concurrency: 5\n";
    let r = m.post("/definitions", Some(&files(batch))).await;
    let (s, body) = status(r).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("\\\"theirs\\\""), "{body}");
    let r = env
        .admin
        .request(Method::GET, "/pipelines/new-one")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the allowed pipeline is not applied"
    );
    for p in ["mine", "theirs"] {
        let stored: StoredProject = env.admin.get(&format!("/projects/{p}")).await;
        assert_eq!(stored.revision, 1, "{p}");
    }
    // A dry run is refused alike.
    let mut dry = files(batch);
    dry.dry_run = true;
    let r = m.post("/definitions", Some(&dry)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Without the forbidden one, all of it; an unchanged definition (here
    // `theirs`, as stored) needs only to be readable.
    let allowed = "pipelines:\n\
                   \x20 - pipeline: new-one\n    actions: [{shell: 'true'}]\n\
                   projects:\n\
                   \x20 - project: mine\n    pipelines: [build, new-one]\n\
                   \x20 - project: theirs\n    pipelines: [build]\n";
    let answer: ick_api::controller::ApplyAnswer = json(
        m.post("/definitions", Some(&files(allowed))).await,
        StatusCode::OK,
    )
    .await;
    let changes: Vec<_> = answer
        .applied
        .iter()
        .map(|a| (a.name.as_str(), a.change))
        .collect();
    use ick_api::controller::Change::*;
    assert_eq!(
        changes,
        [
            ("new-one", Created),
            ("mine", Updated),
            ("theirs", Unchanged)
        ]
    );
}

on_both_storages!(a_batch_with_one_forbidden_definition_applies_nothing);

/// The token's scopes stay the ceiling: an owner whose token lacks a scope
/// may not do what needs it; a worker's token reaches no project API.
async fn scopes_stay_the_ceiling_of_roles(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin.project("p", "pipelines: [build]").await;
    let reader = caller(
        &env,
        "reader-owner",
        "projects:read builds:read",
        &[("p", "owner")],
    )
    .await;
    let r = reader.trigger_raw("p", &Default::default()).await;
    let p: Problem = json(r, StatusCode::FORBIDDEN).await;
    assert_eq!(p.extensions["scope"], "builds:trigger");
    let r = reader
        .put_yaml("/projects/p", "pipelines: [build]\nconcurrency: 3")
        .await;
    let p: Problem = json(r, StatusCode::FORBIDDEN).await;
    assert_eq!(p.extensions["scope"], "projects:write");
    let r = reader
        .request(Method::PUT, "/projects/p/members")
        .json(&json!({"member": "user:x", "role": "viewer"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(builds_of(&env, "p").await, 0);
    let members: Vec<Membership> = env.admin.get("/projects/p/members").await;
    assert_eq!(members.len(), 1);
    // What its scopes allow, its role allows too.
    let _: Vec<Membership> = reader.get("/projects/p/members").await;

    // An admin's token without projects:write grants no role.
    let admin_reader = caller(&env, "admin-reader", "projects:read", &[]).await;
    env.grant("client:admin-reader", "admin").await;
    let r = admin_reader
        .request(Method::PUT, "/roles")
        .json(&json!({"member": "client:reader-owner", "role": "admin"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let _: Vec<ick_api::controller::RoleBinding> = admin_reader.get("/roles").await;

    let worker = env.named_worker("w1", &[]).await;
    for (method, path) in [
        (Method::GET, "/projects"),
        (Method::GET, "/projects/p"),
        (Method::POST, "/projects/p/builds"),
        (Method::GET, "/builds"),
        (Method::GET, "/projects/p/members"),
        (Method::PUT, "/projects/p"),
        (Method::GET, "/audit"),
        (Method::GET, "/roles"),
    ] {
        let r = worker
            .api
            .request(method.clone(), path)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    // A worker's client bound to a project gains nothing beyond its scope.
    env.member("p", "client:w1", "owner").await;
    let r = worker
        .api
        .request(Method::GET, "/projects/p")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(builds_of(&env, "p").await, 0);
}

on_both_storages!(scopes_stay_the_ceiling_of_roles);

/// Bad member syntax, an unknown role, an unknown project: a clear 4xx
/// and nothing changed. Setting the same role twice is one change.
async fn bad_member_changes_are_refused_and_change_nothing(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin.project("p", "pipelines: [build]").await;
    env.member("p", "user:alice", "developer").await;
    let put = |project: &str, body: serde_json::Value| {
        env.admin
            .request(Method::PUT, &format!("/projects/{project}/members"))
            .json(&body)
            .send()
    };
    for (project, body, want, says) in [
        (
            "p",
            json!({"member": "alice", "role": "viewer"}),
            400,
            "user:NAME, group:NAME or client:NAME",
        ),
        (
            "p",
            json!({"member": "user:Alice", "role": "viewer"}),
            400,
            "lower-case",
        ),
        (
            "p",
            json!({"member": "team:x", "role": "viewer"}),
            400,
            "user:NAME",
        ),
        (
            "p",
            json!({"member": "user:alice", "role": "boss"}),
            400,
            "viewer, developer, maintainer and owner",
        ),
        (
            "p",
            json!({"member": "user:alice", "role": "admin"}),
            400,
            "global role",
        ),
        ("p", json!({"member": "user:alice"}), 400, "role"),
        (
            "p",
            json!({"member": "user:alice", "role": "owner", "extra": 1}),
            400,
            "extra",
        ),
        (
            "nope",
            json!({"member": "user:bob", "role": "viewer"}),
            404,
            "no project",
        ),
        (
            "Bad Name",
            json!({"member": "user:bob", "role": "viewer"}),
            400,
            "project",
        ),
    ] {
        let (s, text) = status(put(project, body.clone()).await.expect("PUT")).await;
        assert_eq!(s.as_u16(), want, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    for (path, want) in [
        ("/projects/p/members/alice", 400),
        ("/projects/p/members/user:nobody", 404),
        ("/projects/nope/members/user:alice", 404),
        ("/roles/user:alice/boss", 400),
        ("/roles/user:alice/viewer", 400),
        ("/roles/user:alice/admin", 404),
        ("/roles/client:test-admin/admin", 409),
    ] {
        let r = env
            .admin
            .request(Method::DELETE, path)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(r.status().as_u16(), want, "{path}");
    }
    for body in [
        json!({"member": "user:x", "role": "viewer"}),
        json!({"member": "x", "role": "admin"}),
    ] {
        let r = env
            .admin
            .request(Method::PUT, "/roles")
            .json(&body)
            .send()
            .await
            .expect("PUT");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let members: Vec<Membership> = env.admin.get("/projects/p/members").await;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member.to_string(), "user:alice");
    assert_eq!(members[0].role.as_str(), "developer");
    let roles: Vec<ick_api::controller::RoleBinding> = env.admin.get("/roles").await;
    assert_eq!(roles.len(), 1, "only the config's admin: {roles:?}");
    assert!(roles[0].from_config);
    // Idempotent: the same role again changes nothing.
    let (s, _) = status(
        put("p", json!({"member": "user:bob", "role": "viewer"}))
            .await
            .expect("PUT"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = status(
        put("p", json!({"member": "user:bob", "role": "viewer"}))
            .await
            .expect("PUT"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = status(
        put("p", json!({"member": "user:bob", "role": "owner"}))
            .await
            .expect("PUT"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let audit: ick_api::controller::AuditList = env
        .admin
        .get("/audit?project=p&actor=client:test-admin")
        .await;
    let sets: Vec<&str> = audit
        .entries
        .iter()
        .filter(|e| e.action.as_str() == "member.set")
        .map(|e| e.target.as_str())
        .collect();
    assert_eq!(sets, ["user:bob", "user:bob", "user:alice"], "newest first");

    // Bob is the last owner: he is neither demoted nor removed until
    // another member is owner.
    let delete = |member: &str| {
        env.admin
            .request(Method::DELETE, &format!("/projects/p/members/{member}"))
            .send()
    };
    let (s, text) = status(
        put("p", json!({"member": "user:bob", "role": "viewer"}))
            .await
            .expect("PUT"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("last owner"), "{text}");
    let (s, text) = status(delete("user:bob").await.expect("DELETE")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{text}");
    let members: Vec<Membership> = env.admin.get("/projects/p/members").await;
    assert!(
        members
            .iter()
            .any(|m| m.member.to_string() == "user:bob" && m.role.as_str() == "owner"),
        "{members:?}"
    );
    env.member("p", "user:carol", "owner").await;
    let (s, text) = status(delete("user:bob").await.expect("DELETE")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{text}");
    let (s, _) = status(delete("user:carol").await.expect("DELETE")).await;
    assert_eq!(s, StatusCode::CONFLICT, "carol is the last one now");
}

on_both_storages!(bad_member_changes_are_refused_and_change_nothing);

/// A change of roles on one controller holds on another sharing the
/// database at once (its cache hears it), not after the cache's age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_changed_on_one_controller_holds_on_the_other_at_once() {
    let env = Env::start(Storage::Postgres).await;
    let other = env.controller.start_sharing(&env.idp);
    env.admin.pipeline("build", PIPELINE).await;
    env.admin
        .project("p", "pipelines: [build]\nvisibility: private")
        .await;
    let (_, creds) = env.idp_client("dev", ALL).await;
    let token = env.idp.token(&creds, None).await;
    let there = other.client(&token);
    // Seen (and cached) there first.
    let r = there
        .request(Method::GET, "/projects/p")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let started = std::time::Instant::now();
    env.member("p", "client:dev", "developer").await;
    common::eventually(
        common::SOON,
        "the other controller to hear of the member",
        || async {
            let r = there.trigger_raw("p", &Default::default()).await;
            (r.status() == StatusCode::CREATED).then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "heard through NOTIFY, not the cache's age: {took:?}"
    );
    let r = env
        .admin
        .request(Method::DELETE, "/projects/p/members/client:dev")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    common::eventually(
        common::SOON,
        "the other controller to hear of the removal",
        || async {
            let r = there.trigger_raw("p", &Default::default()).await;
            (r.status() == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    // On the controller that made the change, at once.
    let here = env.controller.client(&token);
    let r = here.trigger_raw("p", &Default::default()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
