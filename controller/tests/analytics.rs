//! `GET /analytics`: who may read it (as the project's builds: a viewer
//! of a private project, anyone for a public one, 404 for an outsider as
//! for no project), what it counts without `project=`, and bad spans
//! refused with a clear problem. (The numbers over real builds are tested
//! end to end in `tests/tests/icktool_analytics.rs`.)

mod common;

use common::Env;
use ick_api::Problem;
use ick_api::controller::Analytics;
use ick_tests::controller::{Api, json};
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};

const ALL: &str = "projects:read projects:write builds:read builds:trigger builds:cancel";

async fn get(api: &Api, path: &str) -> (StatusCode, String) {
    let r = api.request(Method::GET, path).send().await.expect("GET");
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

fn detail(body: &str) -> String {
    serde_json::from_str::<Problem>(body)
        .ok()
        .and_then(|p| p.detail)
        .unwrap_or_default()
}

async fn anonymous(env: &Env, path: &str) -> StatusCode {
    env.admin
        .http
        .get(format!("{}{path}", env.controller.url()))
        .timeout(common::SOON)
        .send()
        .await
        .expect("GET")
        .status()
}

async fn setup(storage: Storage) -> Env {
    let env = Env::start(storage).await;
    env.admin
        .pipeline("build", "actions: [{shell: 'true'}]")
        .await;
    env.admin
        .project("hidden", "pipelines: [build]\nvisibility: private")
        .await;
    env.admin
        .project("pub", "pipelines: [build]\nvisibility: public")
        .await;
    env.admin.project("int", "pipelines: [build]").await;
    for project in ["hidden", "hidden", "pub", "int"] {
        env.admin.trigger(project).await;
    }
    env
}

/// Read as the project's builds are read.
async fn analytics_are_read_as_the_builds_are(storage: Storage) {
    let env = setup(storage).await;
    let (outsider, _) = env.idp_client("outsider", ALL).await;
    let (viewer, _) = env.idp_client("viewer", ALL).await;
    env.member("hidden", "client:viewer", "viewer").await;

    let a: Analytics = json(
        viewer
            .request(Method::GET, "/analytics?project=hidden")
            .send()
            .await
            .expect("GET"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(a.project.as_deref(), Some("hidden"));
    assert_eq!((a.builds.total, a.builds.unfinished), (2, 2));
    assert_eq!(a.success_rate, None);

    // An outsider learns nothing of a private project: 404, word for word
    // as for one that does not exist.
    let (s, hidden) = get(&outsider, "/analytics?project=hidden").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{hidden}");
    let (s, nowhere) = get(&outsider, "/analytics?project=nowhere").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{nowhere}");
    assert_eq!(
        detail(&hidden).replace("hidden", "X"),
        detail(&nowhere).replace("nowhere", "X")
    );
    // Nor does an admin find a project that never was.
    let (s, body) = get(&env.admin, "/analytics?project=nowhere").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");

    // Without a token: a public project's, and nothing else.
    assert_eq!(
        anonymous(&env, "/analytics?project=pub").await,
        StatusCode::OK
    );
    assert_eq!(
        anonymous(&env, "/analytics?project=int").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anonymous(&env, "/analytics?project=hidden").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anonymous(&env, "/analytics").await,
        StatusCode::UNAUTHORIZED
    );

    // Without project=: every project the caller may read.
    let all: Analytics = env.admin.get("/analytics").await;
    assert_eq!((all.project, all.builds.total), (None, 4));
    let theirs: Analytics = outsider.get("/analytics").await;
    assert_eq!(theirs.builds.total, 2, "pub and int, not hidden");
    let mine: Analytics = viewer.get("/analytics").await;
    assert_eq!(mine.builds.total, 4);

    // A token without builds:read is refused, whatever it may do else.
    let no_read = env.client_with("no-read", "projects:read").await;
    let (s, body) = get(&no_read, "/analytics?project=pub").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
}

on_both_storages!(analytics_are_read_as_the_builds_are);

/// Spans that are not times, or run backwards, are refused with what is
/// wrong; dates and RFC 3339 times are taken.
async fn bad_spans_are_refused_with_a_clear_problem(storage: Storage) {
    let env = setup(storage).await;
    for (query, says) in [
        (
            "project=pub&since=yesterday",
            "since=\"yesterday\" is neither an RFC 3339 time",
        ),
        (
            "project=pub&until=2026-02-30",
            "until=\"2026-02-30\" is neither",
        ),
        (
            "project=pub&since=2026-12-02&until=2026-12-01",
            "is not before until",
        ),
        (
            "project=pub&since=2026-12-02T10:00:00Z&until=2026-12-02T09:00:00Z",
            "is not before until",
        ),
        ("project=pub&pipeline=Not%20a%20name", "pipeline"),
        ("project=Bad%20Name", "project"),
    ] {
        let r = env
            .admin
            .request(Method::GET, &format!("/analytics?{query}"))
            .send()
            .await
            .expect("GET");
        let status = r.status();
        let kind = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(kind, "application/problem+json", "{query}");
        assert!(detail(&body).contains(says), "{query}: {body}");
    }
    let one_day: Analytics = env
        .admin
        .get("/analytics?project=pub&since=2026-12-01&until=2026-12-01")
        .await;
    assert_eq!(
        (one_day.since.to_rfc3339(), one_day.until.to_rfc3339()),
        (
            "2026-12-01T00:00:00+00:00".to_string(),
            "2026-12-02T00:00:00+00:00".to_string()
        )
    );
    let default: Analytics = env.admin.get("/analytics?project=pub").await;
    assert_eq!((default.until - default.since).num_days(), 30);
    assert_eq!(default.builds.total, 1);
}

on_both_storages!(bad_spans_are_refused_with_a_clear_problem);
