//! The blob client of `ick-api` against the real store: streams, resumes
//! after real connection cuts (a proxy kills the TCP connection), checks
//! digests, retries.

use std::sync::Arc;
use std::time::Duration;

use ick_api::blobs::{
    BlobClient, BlobError, Digest, RefName, RefPrefix, RetryPolicy, UploadSession,
};
use ick_api::{Secret, TokenSource};
use ick_tests::store::{Backend, CuttingProxy, Direction, PatternReader, pattern};
use reqwest::{StatusCode, header};

use crate::common::{Env, on_both_backends};

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
    }
}

fn client_via(env: &Env, url: &str) -> BlobClient {
    BlobClient::with_token(ick_api::http::client(), url, Secret::new(env.token.clone()))
        .retry_policy(fast_retries())
        .chunk_size(4 << 20)
}

async fn client_uploads_from_a_reader_of_unknown_size(backend: Backend) {
    let env = Env::start(backend).await;
    // A token source, as services use: the client gets and renews tokens.
    let tokens = Arc::new(TokenSource::new(
        ick_api::http::client(),
        env.idp.token_url(),
        env.idp.admin.id.clone(),
        Secret::new(env.idp.admin.secret.clone()),
        None,
    ));
    let client = BlobClient::new(ick_api::http::client(), env.store.url(), tokens);
    let bytes = pattern(60, 3_000_001);
    let info = client
        .upload(std::io::Cursor::new(bytes.clone()))
        .await
        .expect("upload");
    assert_eq!(info.digest, Digest::of(&bytes));
    assert_eq!(
        client.stat(&info.digest).await.expect("stat"),
        Some(3_000_001)
    );
    let mut out = Vec::new();
    let size = client
        .download(&info.digest, &mut out)
        .await
        .expect("download");
    assert_eq!(size, 3_000_001);
    assert_eq!(out, bytes);

    // Refs through the client.
    let name: RefName = "cache/rome".parse().expect("name");
    client.set_ref(&name, &info.digest).await.expect("set ref");
    assert_eq!(
        client.get_ref(&name).await.expect("get ref"),
        Some(info.digest)
    );
    let listed = client
        .list_refs(&"cache/".parse::<RefPrefix>().expect("prefix"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert!(client.delete_ref(&name).await.expect("delete ref"));
    assert_eq!(client.get_ref(&name).await.expect("get ref"), None);
    assert!(client.delete(&info.digest).await.expect("delete"));
    assert_eq!(client.stat(&info.digest).await.expect("stat"), None);
    env.assert_holds(&[]);
}

async fn client_file_upload_resumes_after_the_connection_is_cut(backend: Backend) {
    let env = Env::start(backend).await;
    let proxy = CuttingProxy::start(env.addr()).await;
    let client = client_via(&env, &proxy.url);
    let bytes = pattern(61, 14 << 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("workspace.tar");
    std::fs::write(&path, &bytes).expect("write");
    // Kill the connection in the middle of the third 4 MiB chunk.
    proxy.cut_once_at(Direction::Up, 10 << 20);
    let info = client
        .upload_file(&path)
        .await
        .expect("upload despite the cut");
    assert_eq!(proxy.cuts(), 1, "the connection was cut");
    assert_eq!(info.digest, Digest::of(&bytes));
    assert_eq!(info.size, 14 << 20);
    // Resumed, not restarted: at most the cut chunk was sent twice.
    assert!(
        proxy.bytes_up() < (14 << 20) + (4 << 20) + (1 << 20),
        "{} bytes went up for a 14 MiB file",
        proxy.bytes_up()
    );
    let got = env.get(&format!("/blobs/{}", info.digest)).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    assert!(env.store.upload_files().is_empty(), "the session is done");
    env.assert_holds(&[&info.digest]);
}

async fn client_stream_upload_resumes_after_the_connection_is_cut(backend: Backend) {
    let env = Env::start(backend).await;
    let proxy = CuttingProxy::start(env.addr()).await;
    let client = client_via(&env, &proxy.url);
    let len = 14 << 20;
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut PatternReader::new(66, len), &mut bytes)
        .await
        .expect("pattern");
    // Kill the connection in the middle of the third 4 MiB chunk.
    proxy.cut_once_at(Direction::Up, 10 << 20);
    let info = client
        .upload_stream(PatternReader::new(66, len))
        .await
        .expect("upload despite the cut");
    assert_eq!(proxy.cuts(), 1, "the connection was cut");
    assert_eq!(info.digest, Digest::of(&bytes));
    assert_eq!(info.size, len);
    // Resumed from what the store holds: hardly a byte sent twice.
    assert!(
        proxy.bytes_up() < len + (1 << 20),
        "{} bytes went up for a 14 MiB stream",
        proxy.bytes_up()
    );
    let got = env.get(&format!("/blobs/{}", info.digest)).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    assert!(env.store.upload_files().is_empty(), "the session is done");
    env.assert_holds(&[&info.digest]);
}

async fn client_file_download_resumes_after_the_connection_is_cut(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(62, 12 << 20);
    let info = env.store_blob(bytes.clone()).await;
    let proxy = CuttingProxy::start(env.addr()).await;
    let client = client_via(&env, &proxy.url);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blob");
    proxy.cut_once_at(Direction::Down, 6 << 20);
    let size = client
        .download_file(&info.digest, &path)
        .await
        .expect("download despite the cut");
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(size, 12 << 20);
    assert_eq!(std::fs::read(&path).expect("file"), bytes);
    assert!(!dir.path().join("blob.partial").exists());
    assert!(
        proxy.bytes_down() < (12 << 20) + (1 << 20),
        "{} bytes came down for 12 MiB: it resumed with Range",
        proxy.bytes_down()
    );
}

async fn client_download_continues_from_a_partial_file(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(63, 5 << 20);
    let info = env.store_blob(bytes.clone()).await;
    let proxy = CuttingProxy::start(env.addr()).await;
    let client = client_via(&env, &proxy.url);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blob");
    // An earlier process got 3 MiB before it died.
    std::fs::write(dir.path().join("blob.partial"), &bytes[..3 << 20]).expect("partial");
    client
        .download_file(&info.digest, &path)
        .await
        .expect("download");
    assert_eq!(std::fs::read(&path).expect("file"), bytes);
    assert!(
        proxy.bytes_down() < (2 << 20) + 64 * 1024,
        "only the rest came: {}",
        proxy.bytes_down()
    );
}

async fn client_resumes_an_upload_session_of_an_earlier_process(backend: Backend) {
    let env = Env::start(backend).await;
    let client = client_via(&env, env.store.url());
    let bytes = pattern(64, 6 << 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big");
    std::fs::write(&path, &bytes).expect("write");
    // The earlier process opened a session and sent 2.5 MiB, then died.
    let session = client.start_upload().await.expect("session");
    let sent = (5 << 20) / 2;
    let response = env
        .http
        .patch(&session.url)
        .bearer_auth(&env.token)
        .header(header::CONTENT_RANGE, format!("0-{}", sent - 1))
        .body(bytes[..sent].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // It kept the session's URL; a new process goes on from there.
    let saved = serde_json::to_string(&session).expect("serializable");
    let session: UploadSession = serde_json::from_str(&saved).expect("deserializable");
    let info = client.resume_upload(&session, &path).await.expect("resume");
    assert_eq!(info.digest, Digest::of(&bytes));
    let got = env.get(&format!("/blobs/{}", info.digest)).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
}

/// Corrupts the stored file behind the store's back: the client must
/// notice, and must not leave the file in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_bytes_that_do_not_match_the_digest() {
    let env = Env::start(Backend::Local).await;
    let bytes = pattern(65, 100_000);
    let info = env.store_blob(bytes.clone()).await;
    let file = env.store.blob_file(&info.digest);
    let mut corrupt = bytes.clone();
    corrupt[50_000] ^= 1;
    std::fs::write(&file, &corrupt).expect("corrupt the blob");
    // However long the store may be away, wrong bytes are not tried again.
    let client = client_via(&env, env.store.url()).outage_timeout(Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blob");
    match client.download_file(&info.digest, &path).await {
        Err(BlobError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, info.digest);
            assert_eq!(actual, Digest::of(&corrupt));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!path.exists(), "no file appears");
    assert!(
        !dir.path().join("blob.partial").exists(),
        "no partial is kept"
    );
    let mut out = Vec::new();
    assert!(matches!(
        client.download(&info.digest, &mut out).await,
        Err(BlobError::DigestMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reports_refusals_without_retrying_them() {
    let env = Env::start(Backend::Local).await;
    let reader = env.idp.create_client("reader", &["blobs:read"]);
    let token = env.idp.token(&reader, None).await;
    let client =
        BlobClient::with_token(ick_api::http::client(), env.store.url(), Secret::new(token))
            .retry_policy(fast_retries());
    let err = client
        .upload(std::io::Cursor::new(b"x".to_vec()))
        .await
        .expect_err("refused");
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("blobs:write"), "{err}");
    // A store that is not there is transient, and given up after the retries.
    let gone = BlobClient::with_token(
        ick_api::http::client(),
        "http://127.0.0.1:1",
        Secret::new("t"),
    )
    .retry_policy(fast_retries());
    let err = gone.stat(&Digest::of(b"")).await.expect_err("unreachable");
    assert!(err.is_transient(), "{err}");

    // With an outage limit, a store that stays away is given up after it,
    // saying so; a refusal still fails at once, not after the limit.
    let gone = gone.outage_timeout(Duration::from_millis(500));
    let err = gone.stat(&Digest::of(b"")).await.expect_err("unreachable");
    assert!(matches!(err, BlobError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("artifact store at http://127.0.0.1:1 unreachable for 500ms: "),
        "{err}"
    );
    let patient = client.outage_timeout(Duration::from_secs(300));
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        patient.upload_stream(std::io::Cursor::new(b"x".to_vec())),
    )
    .await
    .expect("a refusal is not waited out");
    assert_eq!(
        refused.expect_err("refused").status(),
        Some(StatusCode::FORBIDDEN)
    );
}

on_both_backends!(
    client_uploads_from_a_reader_of_unknown_size,
    client_file_upload_resumes_after_the_connection_is_cut,
    client_stream_upload_resumes_after_the_connection_is_cut,
    client_file_download_resumes_after_the_connection_is_cut,
    client_download_continues_from_a_partial_file,
    client_resumes_an_upload_session_of_an_earlier_process,
);
