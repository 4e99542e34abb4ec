//! The `/users` and `/groups` admin API against the real `ick-idp`, on
//! Postgres and SQLite: what it does, and bad input that changes nothing.

use ick_tests::TestIdp;
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn assert_problem(got: &(StatusCode, Value), status: StatusCode, says: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["status"], status.as_u16(), "{}", got.1);
    assert!(
        got.1["detail"].as_str().is_some_and(|d| d.contains(says)),
        "{:?} does not say {says:?}",
        got.1
    );
}

async fn users(idp: &TestIdp) -> Value {
    let (status, list) = idp.admin_call(Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::OK);
    list
}

async fn users_and_groups_are_created_listed_changed_and_deleted(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let (status, alice) = idp
        .admin_call(
            Method::POST,
            "/users",
            Some(json!({"name": "alice", "display_name": "Alice Liddell",
                        "email": "alice@example.org", "password": "correct horse"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{alice}");
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["display_name"], "Alice Liddell");
    assert_eq!(alice["enabled"], true);
    assert_eq!(alice["has_password"], true);
    let text = alice.to_string();
    assert!(
        !text.contains("correct horse") && !text.contains("argon2"),
        "{text}"
    );
    let (status, bob) = idp
        .admin_call(Method::POST, "/users", Some(json!({"name": "bob"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(bob["display_name"], "bob");
    assert_eq!(bob["has_password"], false);

    let (status, group) = idp
        .admin_call(Method::POST, "/groups", Some(json!({"name": "devs"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    for user in ["bob", "alice", "alice"] {
        let (status, group) = idp
            .admin_call(Method::PUT, &format!("/groups/devs/members/{user}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{group}");
    }
    let (_, group) = idp.admin_call(Method::GET, "/groups/devs", None).await;
    assert_eq!(group["members"], json!(["alice", "bob"]));
    let (_, shown) = idp.admin_call(Method::GET, "/users/alice", None).await;
    assert_eq!(shown["groups"], json!(["devs"]));
    assert_eq!(shown["id"], alice["id"]);
    let list = users(&idp).await;
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    let (status, changed) = idp
        .admin_call(
            Method::PATCH,
            "/users/bob",
            Some(json!({"display_name": "Bob B.", "email": "bob@example.org", "enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["display_name"], "Bob B.");
    assert_eq!(changed["email"], "bob@example.org");
    assert_eq!(changed["enabled"], false);
    let (status, _) = idp
        .admin_call(
            Method::PUT,
            "/users/bob/password",
            Some(json!({"password": "another horse"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, bob) = idp.admin_call(Method::GET, "/users/bob", None).await;
    assert_eq!(bob["has_password"], true);

    let (status, group) = idp
        .admin_call(Method::DELETE, "/groups/devs/members/bob", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(group["members"], json!(["alice"]));
    let (status, _) = idp.admin_call(Method::DELETE, "/users/alice", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, group) = idp.admin_call(Method::GET, "/groups/devs", None).await;
    assert_eq!(
        group["members"],
        json!([]),
        "a deleted user leaves their groups"
    );
    let (status, _) = idp.admin_call(Method::DELETE, "/groups/devs", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, groups) = idp.admin_call(Method::GET, "/groups", None).await;
    assert_eq!(groups, json!([]));
    let gone = idp.admin_call(Method::GET, "/users/alice", None).await;
    assert_problem(&gone, StatusCode::NOT_FOUND, "no user \"alice\"");
}

async fn bad_input_is_refused_and_changes_nothing(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    idp.create_user("alice", "correct horse").await;
    let before = users(&idp).await;
    for (body, says) in [
        (json!({"name": "Alice"}), "user name \"Alice\""),
        (json!({"name": "-x"}), "must be 1-64"),
        (json!({"name": "a b"}), "must be 1-64"),
        (json!({"name": "alice"}), "already exists"),
        (json!({"name": "x", "password": "short"}), "at least 8"),
        (
            json!({"name": "x", "email": "not-an-address"}),
            "not an email",
        ),
        (json!({"name": "x", "display_name": "  "}), "display name"),
    ] {
        let status = if says == "already exists" {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        let got = idp
            .admin_call(Method::POST, "/users", Some(body.clone()))
            .await;
        assert_problem(&got, status, says);
    }
    let got = idp
        .admin_call(
            Method::POST,
            "/users",
            Some(json!({"name": "x", "root": true})),
        )
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "unknown fields are refused");
    let got = idp
        .admin_call(
            Method::PATCH,
            "/users/nobody",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "no user \"nobody\"");
    let got = idp
        .admin_call(Method::PATCH, "/users/alice", Some(json!({"email": "@"})))
        .await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "not an email");
    let got = idp
        .admin_call(
            Method::PUT,
            "/users/alice/password",
            Some(json!({"password": "1234567"})),
        )
        .await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "at least 8");
    let got = idp
        .admin_call(
            Method::PUT,
            "/users/nobody/password",
            Some(json!({"password": "12345678"})),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "no user");
    assert_eq!(users(&idp).await, before, "nothing changed");

    let (status, _) = idp
        .admin_call(Method::POST, "/groups", Some(json!({"name": "devs"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let got = idp
        .admin_call(Method::POST, "/groups", Some(json!({"name": "devs"})))
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "already exists");
    let got = idp
        .admin_call(Method::POST, "/groups", Some(json!({"name": "Devs!"})))
        .await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "group name");
    let got = idp
        .admin_call(Method::PUT, "/groups/devs/members/nobody", None)
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "no user \"nobody\"");
    let got = idp
        .admin_call(Method::PUT, "/groups/nogroup/members/alice", None)
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "no group \"nogroup\"");
    let got = idp
        .admin_call(Method::DELETE, "/groups/devs/members/alice", None)
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "not in group");
    let (_, groups) = idp.admin_call(Method::GET, "/groups", None).await;
    assert_eq!(groups[0]["members"], json!([]));
    assert_eq!(groups.as_array().map(Vec::len), Some(1));
    assert_eq!(users(&idp).await, before, "nothing changed");
}

async fn the_people_api_needs_idp_admin(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let reader = idp.create_client("reader", &["projects:read builds:read"]);
    let token = idp.token(&reader, None).await;
    let http = reqwest::Client::new();
    for (method, path, body) in [
        (Method::GET, "/users", None),
        (
            Method::POST,
            "/users",
            Some(json!({"name": "eve", "password": "12345678"})),
        ),
        (Method::GET, "/groups", None),
        (Method::POST, "/groups", Some(json!({"name": "evil"}))),
        (
            Method::PUT,
            "/users/eve/password",
            Some(json!({"password": "12345678"})),
        ),
    ] {
        for bearer in [None, Some(token.as_str())] {
            let mut request = http.request(method.clone(), format!("{}{path}", idp.url()));
            if let Some(t) = bearer {
                request = request.bearer_auth(t);
            }
            if let Some(b) = &body {
                request = request.json(b);
            }
            let response = request.send().await.expect("answers");
            let expected = if bearer.is_some() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(response.status(), expected, "{method} {path}");
        }
    }
    assert_eq!(users(&idp).await, json!([]), "nothing was made");
    let (_, groups) = idp.admin_call(Method::GET, "/groups", None).await;
    assert_eq!(groups, json!([]));
}

#[tokio::test]
async fn a_password_is_never_logged() {
    let idp = TestIdp::start();
    idp.create_user("alice", "hunter2hunter2").await;
    idp.admin_call(
        Method::PUT,
        "/users/alice/password",
        Some(json!({"password": "swordfish-swordfish"})),
    )
    .await;
    let log = idp.process.log_text();
    assert!(log.contains("user created"), "{log}");
    for secret in ["hunter2", "swordfish", "$argon2id$"] {
        assert!(!log.contains(secret), "the log holds {secret}: {log}");
    }
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
    users_and_groups_are_created_listed_changed_and_deleted,
    bad_input_is_refused_and_changes_nothing,
    the_people_api_needs_idp_admin,
);
