//! Every endpoint but the health checks and the web hooks (signed with a
//! project's trigger secret instead) needs a token with its scope (a
//! public project's reads without a token are in `roles.rs`).

mod common;

use common::{Env, SOON};
use ick_api::controller::{BuildStatus, BuildView, StoredProject};
use ick_api::work::WorkerInfo;
use ick_api::{Problem, Scope};
use ick_tests::controller::{Api, json};
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};

/// The controller's scopes.
const SCOPES: [Scope; 6] = [
    Scope::ProjectsRead,
    Scope::ProjectsWrite,
    Scope::BuildsRead,
    Scope::BuildsTrigger,
    Scope::BuildsCancel,
    Scope::WorkRun,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_missing_and_wrong_scope_tokens() {
    let env = Env::start(Storage::Postgres).await;
    let api = &env.admin;
    api.pipeline("a", "actions: [{shell: one}]").await;
    api.project("p", "pipelines: [a]").await;
    let build = api.trigger("p").await;
    let view = api.build(&build.id).await;
    let node = view.nodes[0].id.clone();
    let b = &build.id;

    let yaml = "actions: [{shell: x}]";
    let claim = serde_json::json!({"worker": "w", "free_slots": 1, "slots": 1, "kinds": ["shell"]});
    let attempt = serde_json::json!({"attempt": 1});
    let output = serde_json::json!({"attempt": 1, "chunks": []});
    let done = serde_json::json!({"attempt": 1, "outcome": "exited", "exit_code": 0, "chunks": 0});
    let none = serde_json::Value::Null;
    let endpoints: Vec<(Method, String, Scope, &serde_json::Value)> = vec![
        (Method::GET, "/projects".into(), Scope::ProjectsRead, &none),
        (
            Method::GET,
            "/projects/p".into(),
            Scope::ProjectsRead,
            &none,
        ),
        (
            Method::GET,
            "/projects/p/revisions".into(),
            Scope::ProjectsRead,
            &none,
        ),
        (
            Method::PUT,
            "/projects/q".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (
            Method::DELETE,
            "/projects/p".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (Method::GET, "/pipelines".into(), Scope::ProjectsRead, &none),
        (
            Method::GET,
            "/pipelines/a".into(),
            Scope::ProjectsRead,
            &none,
        ),
        (
            Method::GET,
            "/pipelines/a/revisions".into(),
            Scope::ProjectsRead,
            &none,
        ),
        (
            Method::PUT,
            "/pipelines/x".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (
            Method::DELETE,
            "/pipelines/a".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (
            Method::POST,
            "/projects/p/builds".into(),
            Scope::BuildsTrigger,
            &none,
        ),
        (
            Method::GET,
            "/projects/p/builds/1".into(),
            Scope::BuildsRead,
            &none,
        ),
        (Method::GET, "/builds".into(), Scope::BuildsRead, &none),
        (
            Method::GET,
            format!("/builds/{b}"),
            Scope::BuildsRead,
            &none,
        ),
        (
            Method::GET,
            format!("/builds/{b}/log"),
            Scope::BuildsRead,
            &none,
        ),
        (
            Method::GET,
            format!("/builds/{b}/log/stream"),
            Scope::BuildsRead,
            &none,
        ),
        (
            Method::POST,
            format!("/builds/{b}/cancel"),
            Scope::BuildsCancel,
            &none,
        ),
        (
            Method::POST,
            format!("/builds/{b}/retry"),
            Scope::BuildsTrigger,
            &none,
        ),
        (Method::GET, "/workers".into(), Scope::BuildsRead, &none),
        (
            Method::GET,
            "/notifications".into(),
            Scope::BuildsRead,
            &none,
        ),
        (
            Method::GET,
            "/projects/p/trigger-secret".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (
            Method::POST,
            "/projects/p/trigger-secret/rotate".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (
            Method::GET,
            "/projects/p/members".into(),
            Scope::ProjectsRead,
            &none,
        ),
        (
            Method::PUT,
            "/projects/p/members".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (
            Method::DELETE,
            "/projects/p/members/user:alice".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (Method::GET, "/roles".into(), Scope::ProjectsRead, &none),
        (Method::PUT, "/roles".into(), Scope::ProjectsWrite, &none),
        (
            Method::DELETE,
            "/roles/user:alice/creator".into(),
            Scope::ProjectsWrite,
            &none,
        ),
        (Method::GET, "/audit".into(), Scope::ProjectsRead, &none),
        (Method::POST, "/work/claim".into(), Scope::WorkRun, &claim),
        (
            Method::POST,
            format!("/work/{node}/heartbeat"),
            Scope::WorkRun,
            &attempt,
        ),
        (
            Method::POST,
            format!("/work/{node}/output"),
            Scope::WorkRun,
            &output,
        ),
        (
            Method::POST,
            format!("/work/{node}/done"),
            Scope::WorkRun,
            &done,
        ),
    ];
    // One client per scope, holding every scope of the controller but it.
    let mut lacking: Vec<(Scope, Api)> = Vec::new();
    for (i, scope) in SCOPES.iter().enumerate() {
        let others: Vec<&str> = SCOPES
            .iter()
            .filter(|s| *s != scope)
            .map(|s| s.as_str())
            .collect();
        lacking.push((
            *scope,
            env.client_with(&format!("lacks-{i}"), &others.join(" "))
                .await,
        ));
    }
    let anonymous = Api::new(env.controller.url(), "");
    let forged = Api::new(env.controller.url(), "eyJhbGciOiJFZERTQSJ9.e30.c2ln");

    let send = |api: &Api, method: &Method, path: &str, body: &serde_json::Value| {
        let mut r = if api.token.is_empty() {
            api.http
                .request(method.clone(), format!("{}{path}", api.base))
        } else {
            api.request(method.clone(), path)
        };
        if method == Method::PUT {
            r = r.body(yaml);
        } else if !body.is_null() {
            r = r.json(body);
        }
        r.send()
    };
    for (method, path, scope, body) in &endpoints {
        for who in [&anonymous, &forged] {
            let r = send(who, method, path, body).await.expect("request");
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(
                r.headers().contains_key("www-authenticate"),
                "{method} {path}"
            );
            let _: Problem = json(r, StatusCode::UNAUTHORIZED).await;
        }
        let (_, wrong) = lacking
            .iter()
            .find(|(s, _)| s == scope)
            .expect("a client lacking it");
        let r = send(wrong, method, path, body).await.expect("request");
        let p: Problem = json(r, StatusCode::FORBIDDEN).await;
        assert_eq!(p.extensions["scope"], scope.as_str(), "{method} {path}");
    }

    // Nothing changed.
    let projects: Vec<StoredProject> = api.get("/projects").await;
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0].revision, 1);
    let after: BuildView = api.build(&build.id).await;
    assert_eq!(after.build.status, BuildStatus::Queued);
    assert_eq!(after.nodes[0].attempt, 0);
    let workers: Vec<WorkerInfo> = api.get("/workers").await;
    assert!(workers.is_empty());
    let builds: ick_api::controller::BuildList = api.get("/builds").await;
    assert_eq!(builds.builds.len(), 1);

    // Health needs nothing.
    for path in ["/healthz", "/readyz"] {
        let r = anonymous
            .http
            .get(format!("{}{path}", anonymous.base))
            .timeout(SOON)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}
