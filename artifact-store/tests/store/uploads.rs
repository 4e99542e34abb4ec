//! Resumable upload sessions: `/uploads`.

use std::time::Duration;

use ick_api::blobs::{BlobInfo, Digest, UPLOAD_OFFSET, UploadStatus};
use ick_tests::eventually;
use ick_tests::store::{Backend, pattern};
use reqwest::{Method, Response, StatusCode, header};

use crate::common::{Env, on_both_backends, problem, send_part_then_cut};

fn offset(response: &Response) -> u64 {
    response
        .headers()
        .get(UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Upload-Offset in {:?}", response.headers()))
}

/// Opens a session; answers its path.
async fn open(env: &Env) -> String {
    let response = env
        .request(Method::POST, "/uploads")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(offset(&response), 0);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .expect("location")
        .to_string();
    let status: UploadStatus = response.json().await.expect("status");
    assert_eq!(location, format!("/uploads/{}", status.id));
    assert_eq!(status.offset, 0);
    location
}

async fn patch(env: &Env, session: &str, start: u64, bytes: &[u8]) -> Response {
    env.request(Method::PATCH, session)
        .header(
            header::CONTENT_RANGE,
            format!("{start}-{}", start + bytes.len() as u64 - 1),
        )
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PATCH")
}

async fn held(env: &Env, session: &str) -> Response {
    env.request(Method::HEAD, session)
        .send()
        .await
        .expect("HEAD")
}

async fn complete(env: &Env, session: &str, digest: &str) -> Response {
    env.request(Method::PUT, session)
        .query(&[("digest", digest)])
        .send()
        .await
        .expect("PUT")
}

async fn chunked_upload_round_trips(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(20, 7 << 20);
    let digest = Digest::of(&bytes);
    let session = open(&env).await;
    let mut start = 0;
    for chunk in bytes.chunks(3 << 20) {
        let response = patch(&env, &session, start, chunk).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        start += chunk.len() as u64;
        assert_eq!(offset(&response), start);
        assert_eq!(
            response.headers()[header::RANGE],
            format!("0-{}", start - 1).as_str(),
            "OCI's Range header"
        );
        let head = held(&env, &session).await;
        assert_eq!(head.status(), StatusCode::NO_CONTENT);
        assert_eq!(offset(&head), start);
    }
    let done = complete(&env, &session, &digest.to_string()).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_eq!(
        done.headers()[header::LOCATION],
        format!("/blobs/{digest}").as_str()
    );
    let info: BlobInfo = done.json().await.expect("info");
    assert_eq!(
        info,
        BlobInfo {
            digest,
            size: 7 << 20
        }
    );
    let got = env.get(&format!("/blobs/{digest}")).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    problem(held(&env, &session).await, StatusCode::NOT_FOUND).await;
    assert!(
        env.store.upload_files().is_empty(),
        "{:?}",
        env.store.upload_files()
    );
    env.assert_holds(&[&digest]);
}

async fn empty_session_makes_the_empty_blob(backend: Backend) {
    let env = Env::start(backend).await;
    let session = open(&env).await;
    let digest = Digest::of(b"");
    let done = complete(&env, &session, &digest.to_string()).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    let info: BlobInfo = done.json().await.expect("info");
    assert_eq!(info.size, 0);
    env.assert_holds(&[&digest]);
}

async fn chunk_at_the_wrong_offset_is_416_and_changes_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(21, 1000);
    let session = open(&env).await;
    assert_eq!(
        patch(&env, &session, 0, &bytes[..400]).await.status(),
        StatusCode::ACCEPTED
    );
    for wrong in [0, 300, 401, 5000] {
        let response = patch(&env, &session, wrong, &bytes[400..]).await;
        assert_eq!(offset(&response), 400, "the answer tells the offset");
        let p = problem(response, StatusCode::RANGE_NOT_SATISFIABLE).await;
        assert_eq!(p.extensions["offset"], 400);
        assert_eq!(
            offset(&held(&env, &session).await),
            400,
            "after a chunk at {wrong}"
        );
    }
    // A range that disagrees with the body's length changes nothing either.
    let lying = env
        .request(Method::PATCH, &session)
        .header(header::CONTENT_RANGE, "400-499")
        .body(bytes[400..].to_vec())
        .send()
        .await
        .expect("PATCH");
    problem(lying, StatusCode::BAD_REQUEST).await;
    let garbled = env
        .request(Method::PATCH, &session)
        .header(header::CONTENT_RANGE, "four hundred")
        .body(bytes[400..].to_vec())
        .send()
        .await
        .expect("PATCH");
    problem(garbled, StatusCode::BAD_REQUEST).await;
    assert_eq!(offset(&held(&env, &session).await), 400);
    // A chunk without a range goes at the end (OCI's streamed upload).
    let streamed = env
        .request(Method::PATCH, &session)
        .body(bytes[400..].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(offset(&streamed), 1000);
    let done = complete(&env, &session, &Digest::of(&bytes).to_string()).await;
    assert_eq!(done.status(), StatusCode::CREATED);
}

async fn completing_with_a_wrong_digest_is_400_and_keeps_the_session(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(22, 5000);
    let digest = Digest::of(&bytes);
    let session = open(&env).await;
    assert_eq!(
        patch(&env, &session, 0, &bytes).await.status(),
        StatusCode::ACCEPTED
    );
    let wrong = Digest::of(b"not these bytes");
    let p = problem(
        complete(&env, &session, &wrong.to_string()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p.title, "Digest mismatch");
    let p = problem(
        complete(&env, &session, "sha256:nope").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p.title, "Invalid digest");
    let missing = env
        .request(Method::PUT, &session)
        .send()
        .await
        .expect("PUT");
    let p = problem(missing, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.unwrap_or_default().contains("digest"));
    env.assert_holds(&[]);
    assert_eq!(
        offset(&held(&env, &session).await),
        5000,
        "the session is intact"
    );
    let done = complete(&env, &session, &digest.to_string()).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    env.assert_holds(&[&digest]);
}

async fn upload_cut_halfway_resumes_from_the_bytes_that_arrived(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(23, 4 << 20);
    let session = open(&env).await;
    let id = session.trim_start_matches("/uploads/").to_string();
    let half = bytes.len() / 2;
    let data = env
        .store
        .data_dir()
        .join("uploads")
        .join(format!("{id}.data"));
    let head = format!(
        "PATCH {session} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Range: 0-{}\r\n",
        env.addr(),
        env.token,
        bytes.len() - 1
    );
    // The request declares every byte but the connection dies (reset)
    // after half of them, once the store has written some.
    send_part_then_cut(env.addr(), &head, bytes.len(), &bytes[..half], || {
        std::fs::metadata(&data).is_ok_and(|m| m.len() >= 1 << 20)
    })
    .await;
    let written_before_cut = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
    // Resume as a client would: ask the offset, send the rest from there
    // (a 416 means the cut request was still adding bytes: ask again).
    let at = eventually(
        Duration::from_secs(30),
        "the rest to be accepted",
        || async {
            let at = offset(&held(&env, &session).await);
            let rest = patch(
                &env,
                &session,
                at,
                &bytes[usize::try_from(at).expect("fits")..],
            )
            .await;
            match rest.status() {
                StatusCode::ACCEPTED => Some(at),
                StatusCode::RANGE_NOT_SATISFIABLE => None,
                other => panic!("resuming at {at}: {other}"),
            }
        },
    )
    .await;
    assert!(
        at >= written_before_cut && at <= half as u64,
        "resumed at {at}: the {written_before_cut} bytes written before the cut are kept"
    );
    let digest = Digest::of(&bytes);
    let done = complete(&env, &session, &digest.to_string()).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    let got = env.get(&format!("/blobs/{digest}")).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
}

async fn aborted_upload_removes_its_bytes(backend: Backend) {
    let env = Env::start(backend).await;
    let session = open(&env).await;
    assert_eq!(
        patch(&env, &session, 0, &pattern(24, 1000)).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        env.store.upload_files().len(),
        2,
        "the session's data and meta files"
    );
    let aborted = env
        .request(Method::DELETE, &session)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(aborted.status(), StatusCode::NO_CONTENT);
    problem(held(&env, &session).await, StatusCode::NOT_FOUND).await;
    problem(patch(&env, &session, 0, b"x").await, StatusCode::NOT_FOUND).await;
    let again = env
        .request(Method::DELETE, &session)
        .send()
        .await
        .expect("DELETE");
    problem(again, StatusCode::NOT_FOUND).await;
    assert!(env.store.upload_files().is_empty());
    env.assert_holds(&[]);
}

async fn abandoned_sessions_expire_with_their_bytes(backend: Backend) {
    let env = Env::start_with(backend, |c| c["uploads"]["expire_after"] = "3s".into()).await;
    let session = open(&env).await;
    assert_eq!(
        patch(&env, &session, 0, &pattern(25, 1000)).await.status(),
        StatusCode::ACCEPTED
    );
    assert!(!env.store.upload_files().is_empty());
    eventually(Duration::from_secs(20), "the session to expire", || async {
        (held(&env, &session).await.status() == StatusCode::NOT_FOUND
            && env.store.upload_files().is_empty())
        .then_some(())
    })
    .await;
    env.assert_holds(&[]);
}

async fn unknown_or_malformed_session_ids_are_404(backend: Backend) {
    let env = Env::start(backend).await;
    for id in [
        "00000000000000000000000000000000",
        "not-a-uuid",
        "..%2F..%2Fsha256",
    ] {
        let path = format!("/uploads/{id}");
        problem(held(&env, &path).await, StatusCode::NOT_FOUND).await;
        problem(patch(&env, &path, 0, b"abc").await, StatusCode::NOT_FOUND).await;
        problem(
            complete(&env, &path, &Digest::of(b"abc").to_string()).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    env.assert_holds(&[]);
}

async fn another_client_cannot_touch_a_session(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(26, 1000);
    let session = open(&env).await;
    assert_eq!(
        patch(&env, &session, 0, &bytes[..500]).await.status(),
        StatusCode::ACCEPTED
    );
    let other = env
        .idp
        .create_client("other-writer", &["blobs:write blobs:read"]);
    let token = env.idp.token(&other, None).await;
    let as_other = |method: Method| {
        env.http
            .request(method, env.url(&session))
            .bearer_auth(&token)
    };
    problem(
        as_other(Method::HEAD).send().await.expect("HEAD"),
        StatusCode::NOT_FOUND,
    )
    .await;
    let append = as_other(Method::PATCH)
        .header(header::CONTENT_RANGE, "500-999")
        .body(bytes[500..].to_vec())
        .send()
        .await
        .expect("PATCH");
    problem(append, StatusCode::NOT_FOUND).await;
    problem(
        as_other(Method::DELETE).send().await.expect("DELETE"),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(offset(&held(&env, &session).await), 500, "untouched");
}

async fn oversized_chunk_is_413_and_changes_nothing(backend: Backend) {
    let env = Env::start_with(backend, |c| c["max_blob_size"] = 10_000.into()).await;
    let bytes = pattern(27, 12_000);
    let session = open(&env).await;
    assert_eq!(
        patch(&env, &session, 0, &bytes[..6000]).await.status(),
        StatusCode::ACCEPTED
    );
    problem(
        patch(&env, &session, 6000, &bytes[6000..]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(offset(&held(&env, &session).await), 6000);
    // Without a declared length, the store stops at the limit and undoes it.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes[6000..].chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let streamed = env
        .request(Method::PATCH, &session)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("PATCH");
    problem(streamed, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(offset(&held(&env, &session).await), 6000);
    env.assert_holds(&[]);
}

async fn a_session_survives_a_restart_of_the_store(backend: Backend) {
    let mut env = Env::start(backend).await;
    let bytes = pattern(28, 3 << 20);
    let session = open(&env).await;
    assert_eq!(
        patch(&env, &session, 0, &bytes[..1 << 20]).await.status(),
        StatusCode::ACCEPTED
    );
    env.store.kill();
    env.store.restart();
    assert_eq!(offset(&held(&env, &session).await), 1 << 20);
    assert_eq!(
        patch(&env, &session, 1 << 20, &bytes[1 << 20..])
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    // The hash state died with the process: the store hashes the file.
    let digest = Digest::of(&bytes);
    let done = complete(&env, &session, &digest.to_string()).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    env.assert_holds(&[&digest]);
}

on_both_backends!(
    chunked_upload_round_trips,
    empty_session_makes_the_empty_blob,
    chunk_at_the_wrong_offset_is_416_and_changes_nothing,
    completing_with_a_wrong_digest_is_400_and_keeps_the_session,
    upload_cut_halfway_resumes_from_the_bytes_that_arrived,
    aborted_upload_removes_its_bytes,
    abandoned_sessions_expire_with_their_bytes,
    unknown_or_malformed_session_ids_are_404,
    another_client_cannot_touch_a_session,
    oversized_chunk_is_413_and_changes_nothing,
    a_session_survives_a_restart_of_the_store,
);
