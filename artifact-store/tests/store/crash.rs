//! A killed process and a full disk leave nothing half written behind.

use std::time::Duration;

use ick_api::blobs::{BlobInfo, Digest};
use ick_tests::idp::Storage;
use ick_tests::store::{Backend, TestStore, pattern};
use ick_tests::{TestIdp, eventually};
use reqwest::{Method, StatusCode, header};
use tokio::io::AsyncWriteExt;

use crate::common::{Env, on_both_backends, problem};

async fn killed_mid_upload_leaves_no_blob_and_restarts_clean(backend: Backend) {
    let mut env = Env::start(backend).await;
    let bytes = pattern(50, 8 << 20);
    let digest = Digest::of(&bytes);
    let mut stream = tokio::net::TcpStream::connect(env.addr())
        .await
        .expect("connect");
    let head = format!(
        "PUT /blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        env.token,
        bytes.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&bytes[..5 << 20])
        .await
        .expect("half the body");
    eventually(
        Duration::from_secs(30),
        "the store to write part of the blob",
        || {
            let written: u64 = env
                .store
                .tmp_files()
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum();
            std::future::ready((written >= 1 << 20).then_some(()))
        },
    )
    .await;
    env.store.kill();
    drop(stream);
    assert_eq!(
        env.store.tmp_files().len(),
        1,
        "the killed process left its partial file"
    );
    assert!(env.store.stored_blobs().is_empty(), "but no blob");

    env.store.restart();
    assert!(
        env.store.tmp_files().is_empty(),
        "the restart removed the leftover"
    );
    assert_eq!(env.blob_status(&digest).await, StatusCode::NOT_FOUND);
    let get = env.get(&format!("/blobs/{digest}")).await;
    problem(get, StatusCode::NOT_FOUND).await;
    // And the store works as before.
    let info = env.store_blob(bytes.clone()).await;
    assert_eq!(
        info,
        BlobInfo {
            digest,
            size: 8 << 20
        }
    );
    env.assert_holds(&[&digest]);
}

on_both_backends!(killed_mid_upload_leaves_no_blob_and_restarts_clean);

/// The store in its own 8 MiB filesystem (tmpfs in a private mount
/// namespace: needs root, as on the CI machines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_leaves_nothing_behind() {
    let idp = TestIdp::start_with(Storage::Sqlite, |_| {});
    let store = TestStore::start_in_small_fs(&idp, 8 << 20);
    let token = idp.admin_token().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", store.url());
    let big = pattern(51, 12 << 20);

    let response = http
        .post(url("/blobs"))
        .bearer_auth(&token)
        .body(big.clone())
        .send()
        .await
        .expect("POST /blobs");
    let p = problem(response, StatusCode::INSUFFICIENT_STORAGE).await;
    assert_eq!(p.title, "Out of space");
    assert!(store.tmp_files().is_empty(), "{:?}", store.tmp_files());
    assert!(store.stored_blobs().is_empty());

    // An upload session's chunk that does not fit is undone.
    let opened = http
        .post(url("/uploads"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("POST");
    let session = opened.headers()[header::LOCATION]
        .to_str()
        .expect("location")
        .to_string();
    let chunk = http
        .request(Method::PATCH, url(&session))
        .bearer_auth(&token)
        .header(header::CONTENT_RANGE, format!("0-{}", big.len() - 1))
        .body(big.clone())
        .send()
        .await
        .expect("PATCH");
    problem(chunk, StatusCode::INSUFFICIENT_STORAGE).await;
    let held = http
        .head(url(&session))
        .bearer_auth(&token)
        .send()
        .await
        .expect("HEAD");
    assert_eq!(held.headers()["upload-offset"], "0");

    // The space was given back: a blob that fits goes in.
    let small = pattern(52, 1 << 20);
    let response = http
        .post(url("/blobs"))
        .bearer_auth(&token)
        .body(small.clone())
        .send()
        .await
        .expect("POST /blobs");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(store.stored_blobs(), [Digest::of(&small).hex()]);
    assert!(store.tmp_files().is_empty());
}

/// A second process on the same directory would remove the first one's
/// uploads in progress at its start: it must refuse to start instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_directory_refuses_to_start() {
    let mut env = Env::start(Backend::Local).await;
    let output = std::process::Command::new(ick_tests::bin_path("ick-artifact-store"))
        .arg("--config")
        .arg(&env.store.config)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another ick-artifact-store"),
        "{stderr}"
    );
    // The first one is unharmed.
    assert!(env.store.process.is_running());
    let info = env.store_blob(pattern(53, 10)).await;
    env.assert_holds(&[&info.digest]);
}
