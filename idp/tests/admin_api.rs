//! The `/clients` admin API and the `client create` command, on Postgres
//! and SQLite.

use ick_tests::TestIdp;
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn call(
    idp: &TestIdp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", idp.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answers");
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn assert_problem(got: &(StatusCode, reqwest::header::HeaderMap, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.2);
    assert_eq!(got.1["content-type"], "application/problem+json");
    assert_eq!(got.2["status"], status.as_u16());
    assert!(
        got.2["title"].is_string() && got.2["detail"].is_string(),
        "{}",
        got.2
    );
}

async fn names(idp: &TestIdp, token: &str) -> Vec<String> {
    let (_, _, list) = call(idp, Some(token), Method::GET, "/clients", None).await;
    list.as_array()
        .expect("a list")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

async fn clients_are_created_listed_changed_rotated_and_deleted(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let admin = idp.admin_token().await;
    let t = Some(admin.as_str());
    let (status, _, created) = call(
        &idp,
        t,
        Method::POST,
        "/clients",
        Some(json!({"name": "worker-1", "scopes": ["work:run", "blobs:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_eq!(created["scopes"], json!(["work:run", "blobs:read"]));
    assert_eq!(created["audience"], "ick");
    assert_eq!(created["enabled"], true);

    assert_eq!(names(&idp, &admin).await, ["test-admin", "worker-1"]);
    let (_, _, shown) = call(&idp, t, Method::GET, &format!("/clients/{id}"), None).await;
    assert_eq!(shown["name"], "worker-1");
    assert!(
        shown.get("client_secret").is_none(),
        "a secret is shown only once"
    );
    let (_, _, by_name) = call(&idp, t, Method::GET, "/clients/worker-1", None).await;
    assert_eq!(by_name["id"], id.as_str());

    let (status, _, changed) = call(
        &idp,
        t,
        Method::PATCH,
        &format!("/clients/{id}"),
        Some(json!({"scopes": "work:run"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed["scopes"], json!(["work:run"]));
    let creds = ick_tests::Credentials {
        id: id.clone(),
        secret,
    };
    let token = idp.token_source(&creds, None).fetch().await.expect("token");
    assert_eq!(token.scope, "work:run");

    let (status, _, rotated) = call(
        &idp,
        t,
        Method::POST,
        &format!("/clients/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(rotated["client_secret"], creds.secret.as_str());

    let (status, _, _) = call(&idp, t, Method::DELETE, &format!("/clients/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(names(&idp, &admin).await, ["test-admin"]);
    let gone = call(&idp, t, Method::GET, &format!("/clients/{id}"), None).await;
    assert_problem(&gone, StatusCode::NOT_FOUND);
}

async fn the_admin_api_needs_a_token_with_idp_admin(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let weak = idp.create_client("weak", &["projects:read", "builds:read"]);
    let weak_token = idp.token(&weak, None).await;
    let admin = idp.admin_token().await;
    let create = json!({"name": "sneaky", "scopes": ["idp:admin"]});
    let cases = [
        (Method::GET, "/clients".to_string(), None),
        (Method::POST, "/clients".to_string(), Some(create.clone())),
        (Method::GET, format!("/clients/{}", idp.admin.id), None),
        (
            Method::PATCH,
            format!("/clients/{}", weak.id),
            Some(json!({"scopes": ["idp:admin"]})),
        ),
        (
            Method::POST,
            format!("/clients/{}/rotate-secret", idp.admin.id),
            None,
        ),
        (Method::DELETE, format!("/clients/{}", idp.admin.id), None),
    ];
    for (method, path, body) in cases {
        let none = call(&idp, None, method.clone(), &path, body.clone()).await;
        assert_problem(&none, StatusCode::UNAUTHORIZED);
        assert!(
            none.1["www-authenticate"]
                .to_str()
                .expect("ascii")
                .starts_with("Bearer")
        );
        let garbage = call(&idp, Some("not.a.jwt"), method.clone(), &path, body.clone()).await;
        assert_problem(&garbage, StatusCode::UNAUTHORIZED);
        let forbidden = call(&idp, Some(&weak_token), method.clone(), &path, body).await;
        assert_problem(&forbidden, StatusCode::FORBIDDEN);
        assert!(
            forbidden.1["www-authenticate"]
                .to_str()
                .expect("ascii")
                .contains("insufficient_scope"),
            "{method} {path}"
        );
    }
    // Nothing changed: the same two clients, the admin's secret still works.
    assert_eq!(names(&idp, &admin).await, ["test-admin", "weak"]);
    idp.token_source(&idp.admin, None)
        .fetch()
        .await
        .expect("admin unchanged");
    let (_, _, weak_now) = call(
        &idp,
        Some(&admin),
        Method::GET,
        &format!("/clients/{}", weak.id),
        None,
    )
    .await;
    assert_eq!(weak_now["scopes"], json!(["projects:read", "builds:read"]));
}

async fn bad_client_definitions_are_refused_and_change_nothing(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let admin = idp.admin_token().await;
    let t = Some(admin.as_str());
    let (status, _, _) = call(
        &idp,
        t,
        Method::POST,
        "/clients",
        Some(json!({"name": "ci", "scopes": ["builds:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let duplicate = call(
        &idp,
        t,
        Method::POST,
        "/clients",
        Some(json!({"name": "ci", "scopes": ["idp:admin"]})),
    )
    .await;
    assert_problem(&duplicate, StatusCode::CONFLICT);
    assert!(
        duplicate.2["detail"]
            .as_str()
            .expect("detail")
            .contains("ci")
    );

    let bad_bodies = [
        json!({"name": "x", "scopes": ["builds:read", "root:all"]}),
        json!({"name": "has space", "scopes": []}),
        json!({"name": "", "scopes": []}),
        json!({"name": "y", "scopes": 5}),
        json!({"name": "z", "scopes": [], "secret": "chosen-by-user"}),
        json!({"scopes": ["builds:read"]}),
    ];
    for body in bad_bodies {
        let refused = call(&idp, t, Method::POST, "/clients", Some(body.clone())).await;
        assert_problem(&refused, StatusCode::BAD_REQUEST);
        assert!(
            !refused.2["detail"].as_str().expect("detail").is_empty(),
            "{body}"
        );
    }
    let unknown_scope = call(
        &idp,
        t,
        Method::POST,
        "/clients",
        Some(json!({"name": "x", "scopes": ["builds:read", "root:all"]})),
    )
    .await;
    assert!(
        unknown_scope.2["detail"]
            .as_str()
            .expect("detail")
            .contains("root:all")
    );

    let not_json = reqwest::Client::new()
        .post(format!("{}/clients", idp.url()))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{name: ")
        .send()
        .await
        .expect("answers");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);

    let missing = call(
        &idp,
        t,
        Method::PATCH,
        "/clients/nope",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_problem(&missing, StatusCode::NOT_FOUND);
    assert_eq!(names(&idp, &admin).await, ["ci", "test-admin"]);
}

async fn creating_the_same_client_twice_on_the_command_line_is_a_clear_error(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let first = idp.run(&["client", "create", "first-admin", "--scope", "idp:admin"]);
    assert!(first.status.success());
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("client_id: ") && stdout.contains("client_secret: "));
    let second = idp.run(&["client", "create", "first-admin", "--scope", "idp:admin"]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("a client named \"first-admin\" already exists"),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert!(second.stdout.is_empty(), "no second secret is printed");
    let unknown = idp.run(&["client", "create", "other", "--scope", "builds:raed"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown scope \"builds:raed\""));
}

macro_rules! on_both_storages {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Storage::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Storage::Sqlite).await })*
        }
    };
}

on_both_storages!(
    clients_are_created_listed_changed_rotated_and_deleted,
    a_change_racing_a_secret_rotation_never_brings_the_old_secret_back,
    the_admin_api_needs_a_token_with_idp_admin,
    bad_client_definitions_are_refused_and_change_nothing,
    creating_the_same_client_twice_on_the_command_line_is_a_clear_error,
);

/// An update read the client before a rotation and wrote it back after:
/// the old code wrote every column, so the old secret came back to life.
async fn a_change_racing_a_secret_rotation_never_brings_the_old_secret_back(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let admin = idp.admin_token().await;
    let t = Some(admin.as_str());
    let (status, _, created) = call(
        &idp,
        t,
        Method::POST,
        "/clients",
        Some(json!({"name": "raced", "scopes": ["builds:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let first = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let mut secrets = vec![first];
    for round in 0..25 {
        let scopes = if round % 2 == 0 {
            "builds:read"
        } else {
            "builds:read builds:trigger"
        };
        let (client, rotation) = (
            format!("/clients/{id}"),
            format!("/clients/{id}/rotate-secret"),
        );
        let patch = call(
            &idp,
            t,
            Method::PATCH,
            &client,
            Some(json!({"scopes": scopes})),
        );
        let rotate = call(&idp, t, Method::POST, &rotation, None);
        let (patched, rotated) = tokio::join!(patch, rotate);
        assert_eq!(patched.0, StatusCode::OK, "{}", patched.2);
        assert_eq!(rotated.0, StatusCode::OK, "{}", rotated.2);
        secrets.push(
            rotated.2["client_secret"]
                .as_str()
                .expect("secret")
                .to_string(),
        );
    }
    // Only the last secret given out works.
    let (last, old) = secrets.split_last().expect("secrets");
    let token = |secret: &str| {
        let creds = ick_tests::Credentials {
            id: id.clone(),
            secret: secret.to_string(),
        };
        idp.token_source(&creds, None)
    };
    assert!(token(last).fetch().await.is_ok(), "the newest secret works");
    for secret in old {
        assert!(
            token(secret).fetch().await.is_err(),
            "a rotated-away secret works again"
        );
    }
}
