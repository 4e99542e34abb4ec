//! The IDP's audit log against the real `ick-idp`, on Postgres and SQLite:
//! every change to clients, users, groups and passwords is in it with who,
//! from where, what and to what; refused changes are not; only `idp:admin`
//! reads it; and the database refuses to change it.

use ick_api::audit::{AuditAction, AuditList};
use ick_tests::TestIdp;
use ick_tests::idp::{ADMIN_CLIENT, Storage};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn audit(idp: &TestIdp, query: &str) -> AuditList {
    let (status, list) = idp
        .admin_call(Method::GET, &format!("/audit{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    serde_json::from_value(list).expect("an audit list")
}

async fn call(idp: &TestIdp, method: Method, path: &str, body: Option<serde_json::Value>) {
    let (status, answer) = idp.admin_call(method.clone(), path, body).await;
    assert!(status.is_success(), "{method} {path}: {status} {answer}");
}

async fn every_change_is_recorded_with_who_where_and_what(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    // The harness made the admin client with the IDP's own command line.
    let first = audit(&idp, "").await;
    assert_eq!(first.entries.len(), 1, "{first:?}");
    assert_eq!(first.entries[0].action, AuditAction::ClientCreate);
    assert_eq!(first.entries[0].actor, "local:ick-idp");
    assert_eq!(first.entries[0].target, ADMIN_CLIENT);

    call(
        &idp,
        Method::POST,
        "/users",
        Some(json!({"name": "alice", "email": "alice@example.org",
                    "password": "correct horse battery"})),
    )
    .await;
    call(
        &idp,
        Method::PATCH,
        "/users/alice",
        Some(json!({"enabled": false})),
    )
    .await;
    call(
        &idp,
        Method::PUT,
        "/users/alice/password",
        Some(json!({"password": "swordfish swordfish"})),
    )
    .await;
    call(&idp, Method::POST, "/groups", Some(json!({"name": "devs"}))).await;
    call(&idp, Method::PUT, "/groups/devs/members/alice", None).await;
    // Already a member: nothing changes, nothing is recorded.
    call(&idp, Method::PUT, "/groups/devs/members/alice", None).await;
    call(&idp, Method::DELETE, "/groups/devs/members/alice", None).await;
    call(&idp, Method::DELETE, "/groups/devs", None).await;
    call(&idp, Method::DELETE, "/users/alice", None).await;
    call(
        &idp,
        Method::POST,
        "/clients",
        Some(json!({"name": "ci", "scopes": "builds:trigger"})),
    )
    .await;
    call(
        &idp,
        Method::PATCH,
        "/clients/ci",
        Some(json!({"scopes": "builds:trigger builds:read"})),
    )
    .await;
    call(&idp, Method::POST, "/clients/ci/rotate-secret", None).await;
    call(&idp, Method::DELETE, "/clients/ci", None).await;

    let log = audit(&idp, "").await;
    let got: Vec<(AuditAction, &str)> = log
        .entries
        .iter()
        .rev()
        .skip(1)
        .map(|e| (e.action, e.target.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (AuditAction::UserCreate, "alice"),
            (AuditAction::UserUpdate, "alice"),
            (AuditAction::UserPassword, "alice"),
            (AuditAction::GroupCreate, "devs"),
            (AuditAction::GroupAdd, "devs"),
            (AuditAction::GroupRemove, "devs"),
            (AuditAction::GroupDelete, "devs"),
            (AuditAction::UserDelete, "alice"),
            (AuditAction::ClientCreate, "ci"),
            (AuditAction::ClientUpdate, "ci"),
            (AuditAction::ClientRotateSecret, "ci"),
            (AuditAction::ClientDelete, "ci"),
        ]
    );
    for e in &log.entries[..12] {
        assert_eq!(e.actor, format!("client:{ADMIN_CLIENT}"), "{e:?}");
        assert_eq!(e.address, "127.0.0.1", "{e:?}");
        assert_eq!(e.project, None);
    }
    let by_action = |a: AuditAction| {
        log.entries
            .iter()
            .find(|e| e.action == a)
            .expect("recorded")
    };
    assert_eq!(
        by_action(AuditAction::UserUpdate).detail,
        json!({"enabled": false})
    );
    assert_eq!(
        by_action(AuditAction::GroupAdd).detail,
        json!({"user": "alice"})
    );
    assert_eq!(
        by_action(AuditAction::ClientUpdate).detail,
        json!({"scopes": "builds:read builds:trigger"})
    );
    let text = serde_json::to_string(&log).expect("json");
    for secret in ["correct horse", "swordfish", "argon2", "client_secret"] {
        assert!(!text.contains(secret), "the log holds {secret}: {text}");
    }

    // Filters and pages: by actor, by time, a page at a time.
    let mine = audit(&idp, &format!("?actor=client:{ADMIN_CLIENT}")).await;
    assert_eq!(mine.entries.len(), 12);
    let by_name = audit(&idp, &format!("?actor={ADMIN_CLIENT}")).await;
    assert_eq!(by_name.entries, mine.entries);
    assert!(audit(&idp, "?actor=user:nobody").await.entries.is_empty());
    assert!(
        audit(&idp, "?since=2999-01-01T00:00:00Z")
            .await
            .entries
            .is_empty()
    );
    let page = audit(&idp, "?limit=5").await;
    assert_eq!(page.entries, log.entries[..5]);
    let next = page.next.expect("more");
    let rest = audit(&idp, &format!("?limit=500&before={next}")).await;
    assert_eq!(rest.entries, log.entries[5..]);
    assert_eq!(rest.next, None);
}

async fn refused_changes_and_bad_queries_record_nothing(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    call(&idp, Method::POST, "/users", Some(json!({"name": "bob"}))).await;
    let before = audit(&idp, "").await;
    for (method, path, body) in [
        (Method::POST, "/users", Some(json!({"name": "bob"}))),
        (Method::POST, "/users", Some(json!({"name": "Not A Name"}))),
        (
            Method::PUT,
            "/users/bob/password",
            Some(json!({"password": "short"})),
        ),
        (
            Method::PATCH,
            "/users/nobody",
            Some(json!({"enabled": false})),
        ),
        (Method::PUT, "/groups/nogroup/members/bob", None),
        (Method::DELETE, "/clients/nosuch", None),
        (Method::POST, "/clients/nosuch/rotate-secret", None),
    ] {
        let (status, answer) = idp.admin_call(method.clone(), path, body).await;
        assert!(
            status.is_client_error(),
            "{method} {path}: {status} {answer}"
        );
    }
    assert_eq!(audit(&idp, "").await, before, "refusals change nothing");

    for (query, says) in [
        ("?project=p", "no projects"),
        ("?since=yesterday", "RFC 3339"),
        ("?before=x", "cursor"),
    ] {
        let (status, answer) = idp
            .admin_call(Method::GET, &format!("/audit{query}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(
            answer["detail"].as_str().is_some_and(|d| d.contains(says)),
            "{query}: {answer}"
        );
    }

    // Only idp:admin reads it.
    let reader = idp.create_client("reader", &["projects:read builds:read"]);
    let token = idp.token(&reader, None).await;
    let http = reqwest::Client::new();
    let url = format!("{}/audit", idp.url());
    let anonymous = http.get(&url).send().await.expect("answers");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let other = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("answers");
    assert_eq!(other.status(), StatusCode::FORBIDDEN);

    // The database itself refuses to change or remove an entry.
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&idp.database_url())
        .await
        .expect("connect");
    for sql in [
        "UPDATE audit SET actor = 'user:nobody'",
        "DELETE FROM audit",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let after = audit(&idp, "").await;
    assert_eq!(
        after.entries.len(),
        before.entries.len() + 1,
        "+ client reader"
    );
    assert_eq!(after.entries[1..], before.entries[..]);
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
    every_change_is_recorded_with_who_where_and_what,
    refused_changes_and_bad_queries_record_nothing,
);
