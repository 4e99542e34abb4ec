//! `icktool blob` and `icktool ref` against a real artifact store, through
//! a proxy that cuts connections in the middle of transfers.

mod common;

use common::{Ick, icktool, s};
use ick_api::blobs::{BlobInfo, Digest, RefInfo};
use ick_tests::store::{CuttingProxy, Direction, pattern};

const SIZE: usize = 3 << 20;

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}

/// Runs a blocking icktool command off the runtime that drives the proxy.
async fn run(config: &std::path::Path, args: &[&str]) -> common::Run {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        icktool(&config, &args, &[])
    })
    .await
    .expect("icktool thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_resume_after_a_cut_and_check_the_digest() {
    let ick = Ick::start(0);
    let proxy = CuttingProxy::start(ick.store.process.addr).await;
    let config = ick.write_config("via-proxy.yaml", |c| {
        c["artifact_store"] = proxy.url.as_str().into()
    });
    let bytes = pattern(7, SIZE);
    let file = ick.file("big.bin", "");
    std::fs::write(&file, &bytes).expect("write");

    proxy.cut_once_at(Direction::Up, (SIZE / 3) as u64);
    let put = run(&config, &["blob", "put", s(&file), "--output", "json"])
        .await
        .ok();
    let info: BlobInfo = put.json();
    assert_eq!(info.digest, digest_of(&bytes));
    assert_eq!(info.size, SIZE as u64);
    assert_eq!(proxy.cuts(), 1, "the upload was cut");
    assert!(
        proxy.bytes_up() < (SIZE + SIZE / 2) as u64,
        "the upload resumed rather than starting over: {} bytes sent",
        proxy.bytes_up()
    );
    assert!(put.stderr.is_empty(), "no progress bar when piped:\n{put}");

    let out = ick.dir.path().join("back.bin");
    let before = proxy.bytes_down();
    proxy.cut_once_at(Direction::Down, before + (SIZE / 2) as u64);
    let get = run(
        &config,
        &["blob", "get", &info.digest.to_string(), "-o", s(&out)],
    )
    .await
    .ok();
    assert_eq!(proxy.cuts(), 2, "the download was cut");
    assert!(proxy.bytes_down() - before < (SIZE + SIZE / 2) as u64);
    assert_eq!(std::fs::read(&out).expect("downloaded"), bytes);
    assert!(get.stdout.contains("digest checked"), "{get}");
    assert!(!ick.dir.path().join("back.bin.partial").exists());

    // To stdout, by a ref's name.
    run(
        &config,
        &["ref", "set", "big/latest", &info.digest.to_string()],
    )
    .await
    .ok();
    let piped = run(&config, &["blob", "get", "big/latest"]).await.ok();
    assert!(piped.bytes == bytes, "stdout holds the blob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_resumes_from_its_partial_file() {
    let ick = Ick::start(0);
    let proxy = CuttingProxy::start(ick.store.process.addr).await;
    let config = ick.write_config("via-proxy.yaml", |c| {
        c["artifact_store"] = proxy.url.as_str().into()
    });
    let bytes = pattern(11, SIZE);
    let file = ick.file("src.bin", "");
    std::fs::write(&file, &bytes).expect("write");
    let info: BlobInfo = run(&ick.config, &["blob", "put", s(&file), "--output", "json"])
        .await
        .ok()
        .json();
    // What an earlier, interrupted run left: the first half.
    let out = ick.dir.path().join("out.bin");
    std::fs::write(ick.dir.path().join("out.bin.partial"), &bytes[..SIZE / 2]).expect("write");
    run(
        &config,
        &["blob", "get", &info.digest.to_string(), "-o", s(&out)],
    )
    .await
    .ok();
    assert_eq!(std::fs::read(&out).expect("downloaded"), bytes);
    let fetched = proxy.bytes_down();
    assert!(
        fetched < (SIZE / 2 + SIZE / 10) as u64,
        "only the second half was fetched, not {fetched} bytes"
    );
}

#[test]
fn a_download_that_does_not_match_its_digest_is_refused() {
    let ick = Ick::start(0);
    let bytes = pattern(13, SIZE);
    let file = ick.file("src.bin", "");
    std::fs::write(&file, &bytes).expect("write");
    let info: BlobInfo = ick
        .icktool(&["blob", "put", s(&file), "--output", "json"])
        .ok()
        .json();
    // A partial file whose bytes are not the blob's: the end result
    // cannot hash to the digest.
    let out = ick.dir.path().join("out.bin");
    let partial = ick.dir.path().join("out.bin.partial");
    let mut wrong = bytes[..SIZE / 2].to_vec();
    wrong[10] ^= 0xff;
    std::fs::write(&partial, &wrong).expect("write");
    ick.icktool(&["blob", "get", &info.digest.to_string(), "-o", s(&out)])
        .fails(2, "digest mismatch");
    assert!(!out.exists(), "a wrong download never appears at its path");
    assert!(!partial.exists(), "and its bytes are not kept for a resume");
    // Again, from nothing: right.
    ick.icktool(&["blob", "get", &info.digest.to_string(), "-o", s(&out)])
        .ok();
    assert_eq!(std::fs::read(&out).expect("downloaded"), bytes);
}

#[test]
fn refs_are_set_read_listed_and_deleted() {
    let ick = Ick::start(0);
    let file = ick.file("small.txt", "hello, blob\n");
    let put = ick
        .icktool(&["blob", "put", s(&file), "--ref", "demo/one"])
        .ok();
    let digest = digest_of(b"hello, blob\n");
    assert_eq!(put.stdout, format!("{digest}\n"), "the digest alone: {put}");
    assert!(put.stderr.contains("ref demo/one -> sha256:"), "{put}");
    ick.icktool(&["ref", "set", "demo/two", &digest.to_string()])
        .ok();
    ick.icktool(&["ref", "set", "other/x", &digest.to_string()])
        .ok();
    let got = ick.icktool(&["ref", "get", "demo/one"]).ok();
    assert_eq!(got.stdout, format!("{digest}\n"));
    let listed: Vec<RefInfo> = ick
        .icktool(&["ref", "list", "demo/", "--output", "json"])
        .ok()
        .json();
    let names: Vec<String> = listed.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(names, ["demo/one", "demo/two"]);
    let table = ick.icktool(&["ref", "list"]).ok();
    assert!(table.stdout.starts_with("NAME"), "{table}");
    assert_eq!(table.stdout.lines().count(), 4, "{table}");

    // Mistakes: a ref to a missing blob, a bad name, a missing ref.
    let missing = Digest::of(b"never uploaded");
    ick.icktool(&["ref", "set", "demo/three", &missing.to_string()])
        .fails(2, "the artifact store refused");
    ick.icktool(&["ref", "set", "../x", &digest.to_string()])
        .fails(2, "invalid value");
    ick.icktool(&["ref", "delete", "demo/one"]).ok();
    ick.icktool(&["ref", "get", "demo/one"])
        .fails(2, "no ref demo/one");
    let left: Vec<RefInfo> = ick
        .icktool(&["ref", "list", "--output", "json"])
        .ok()
        .json();
    assert_eq!(left.len(), 2, "{left:?}");
}
