//! Refs: mutable names for blobs.

use ick_api::blobs::{Digest, RefInfo, RefList};
use ick_tests::store::{Backend, pattern};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Env, on_both_backends, problem, raw_request};

async fn set_ref(env: &Env, name: &str, digest: &Digest) -> reqwest::Response {
    env.request(Method::PUT, &format!("/refs/{name}"))
        .json(&json!({"digest": digest}))
        .send()
        .await
        .expect("PUT ref")
}

async fn list(env: &Env, prefix: &str) -> Vec<String> {
    let response = env
        .request(Method::GET, "/refs")
        .query(&[("prefix", prefix)])
        .send()
        .await
        .expect("GET refs");
    assert_eq!(response.status(), StatusCode::OK);
    let list: RefList = response.json().await.expect("ref list");
    list.refs.into_iter().map(|r| r.name.to_string()).collect()
}

async fn refs_point_at_blobs_and_list_by_prefix(backend: Backend) {
    let env = Env::start(backend).await;
    let one = env.store_blob(pattern(30, 100)).await.digest;
    let two = env.store_blob(pattern(31, 100)).await.digest;
    // `a` and `a/b` can both exist: a ref is not a directory.
    for name in [
        "a",
        "a/b",
        "a/b/c",
        "a.b",
        "projects/rome/workspace",
        "projects/paris/workspace",
    ] {
        let response = set_ref(&env, name, &one).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
        let info: RefInfo = response.json().await.expect("ref info");
        assert_eq!((info.name.as_str(), info.digest), (name, one));
    }
    let got = env.get("/refs/a/b").await;
    assert_eq!(got.status(), StatusCode::OK);
    let info: RefInfo = got.json().await.expect("ref info");
    assert_eq!(info.digest, one);

    // Moving a ref answers 200 and the new target.
    let moved = set_ref(&env, "a/b", &two).await;
    assert_eq!(moved.status(), StatusCode::OK);
    let info: RefInfo = env.get("/refs/a/b").await.json().await.expect("ref info");
    assert_eq!(info.digest, two);

    assert_eq!(
        list(&env, "").await,
        [
            "a",
            "a.b",
            "a/b",
            "a/b/c",
            "projects/paris/workspace",
            "projects/rome/workspace"
        ]
    );
    assert_eq!(list(&env, "a").await, ["a", "a.b", "a/b", "a/b/c"]);
    assert_eq!(list(&env, "a/").await, ["a/b", "a/b/c"]);
    assert_eq!(list(&env, "a/b/").await, ["a/b/c"]);
    assert_eq!(
        list(&env, "proj").await,
        ["projects/paris/workspace", "projects/rome/workspace"]
    );
    assert_eq!(list(&env, "projects/r").await, ["projects/rome/workspace"]);
    assert!(list(&env, "zzz").await.is_empty());
    let all: RefList = env.get("/refs").await.json().await.expect("ref list");
    assert_eq!(all.refs.len(), 6, "no prefix lists every ref");

    let deleted = env
        .request(Method::DELETE, "/refs/a/b")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    problem(env.get("/refs/a/b").await, StatusCode::NOT_FOUND).await;
    let again = env
        .request(Method::DELETE, "/refs/a/b")
        .send()
        .await
        .expect("DELETE");
    problem(again, StatusCode::NOT_FOUND).await;
    assert_eq!(
        list(&env, "a").await,
        ["a", "a.b", "a/b/c"],
        "the others stay"
    );
    // Deleting a ref leaves its blob.
    assert_eq!(env.blob_status(&two).await, StatusCode::OK);
}

async fn a_ref_to_a_missing_blob_is_refused(backend: Backend) {
    let env = Env::start(backend).await;
    let missing = Digest::of(b"never uploaded");
    let p = problem(set_ref(&env, "cache", &missing).await, StatusCode::CONFLICT).await;
    assert!(p.detail.unwrap_or_default().contains(&missing.to_string()));
    problem(env.get("/refs/cache").await, StatusCode::NOT_FOUND).await;
    assert!(list(&env, "").await.is_empty());
}

async fn bad_ref_names_are_refused_and_nothing_is_created(backend: Backend) {
    let env = Env::start(backend).await;
    let digest = env.store_blob(pattern(32, 10)).await.digest;
    let body = format!("{{\"digest\":\"{digest}\"}}");
    // Sent raw: an HTTP client would normalize `..` away before sending.
    for path in [
        "/refs/..",
        "/refs/a/../b",
        "/refs/a/./b",
        "/refs/%2E%2E/x",
        "/refs/a//b",
        "/refs/a/",
        "/refs//a",
        "/refs/a%01b",
        "/refs/a%0Ab",
        "/refs/a%20b",
        "/refs/caf%C3%A9",
        "/refs/a%5Cb",
    ] {
        for (method, body) in [("PUT", body.as_str()), ("GET", ""), ("DELETE", "")] {
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                env.token,
                body.len()
            );
            let (status, answer) = raw_request(env.addr(), &head, body.as_bytes()).await;
            assert_eq!(status, 400, "{method} {path}: {answer}");
            assert!(
                answer.contains("not a valid ref name"),
                "{method} {path}: {answer}"
            );
        }
    }
    let long = ["x"; 300].join("/");
    problem(set_ref(&env, &long, &digest).await, StatusCode::BAD_REQUEST).await;
    for prefix in ["/a", "a//b", "a\u{1}", "../"] {
        let response = env
            .request(Method::GET, "/refs")
            .query(&[("prefix", prefix)])
            .send()
            .await
            .expect("GET refs");
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    assert!(list(&env, "").await.is_empty(), "no ref was created");
    assert!(
        !env.store.data_dir().join("x").exists() && !env.store.dir.path().join("b").exists(),
        "nothing escaped the refs directory"
    );
}

async fn bad_ref_bodies_are_refused(backend: Backend) {
    let env = Env::start(backend).await;
    let put = |body: String| {
        env.request(Method::PUT, "/refs/r")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "{}".to_string(),
        "{\"digest\": \"sha256:abc\"}".to_string(),
        "{\"digest\": 5}".to_string(),
        "not json".to_string(),
        format!("{{\"digest\": \"{}\", \"extra\": 1}}", Digest::of(b"")),
    ] {
        problem(
            put(body.clone()).await.expect("PUT"),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    // Bodies past http.body_limit (64 KiB in the example config).
    let huge = format!(
        "{{\"digest\": \"{}\", \"pad\": \"{}\"}}",
        Digest::of(b""),
        "x".repeat(100_000)
    );
    problem(put(huge).await.expect("PUT"), StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(list(&env, "").await.is_empty());
}

on_both_backends!(
    refs_point_at_blobs_and_list_by_prefix,
    a_ref_to_a_missing_blob_is_refused,
    bad_ref_names_are_refused_and_nothing_is_created,
    bad_ref_bodies_are_refused,
);
