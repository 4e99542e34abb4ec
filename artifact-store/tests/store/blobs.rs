//! Whole blobs: `POST /blobs`, `PUT`, `GET` (with ranges), `HEAD`, `DELETE`.

use std::time::Instant;

use futures::StreamExt;
use ick_api::blobs::{BlobInfo, Digest};
use ick_tests::store::{Backend, PatternReader, pattern};
use reqwest::{Method, StatusCode, header};

use crate::common::{Env, on_both_backends, problem};

async fn small_blob_round_trips(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(1, 100_000);
    let digest = Digest::of(&bytes);
    let response = env.post_blob(bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()[header::LOCATION],
        format!("/blobs/{digest}").as_str()
    );
    let info: BlobInfo = response.json().await.expect("info");
    assert_eq!(
        info,
        BlobInfo {
            digest,
            size: 100_000
        }
    );

    let got = env.get(&format!("/blobs/{digest}")).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()[header::CONTENT_LENGTH], "100000");
    assert_eq!(got.headers()[header::ETAG], digest.etag().as_str());
    assert_eq!(got.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());

    let head = env
        .request(Method::HEAD, &format!("/blobs/{digest}"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::CONTENT_LENGTH], "100000");
    assert_eq!(head.headers()[header::ETAG], digest.etag().as_str());
    env.assert_holds(&[&digest]);
}

async fn empty_blob_round_trips(backend: Backend) {
    let env = Env::start(backend).await;
    let info = env.store_blob(Vec::new()).await;
    assert_eq!(info.digest, Digest::of(b""));
    assert_eq!(info.size, 0);
    let got = env.get(&format!("/blobs/{}", info.digest)).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()[header::CONTENT_LENGTH], "0");
    assert!(got.bytes().await.expect("body").is_empty());
    // No byte of an empty blob can be asked for.
    let range = env
        .request(Method::GET, &format!("/blobs/{}", info.digest))
        .header(header::RANGE, "bytes=0-")
        .send()
        .await
        .expect("GET");
    assert_eq!(range.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    env.assert_holds(&[&info.digest]);
}

async fn uploading_existing_bytes_stores_nothing_new(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(2, 50_000);
    let first = env.post_blob(bytes.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: BlobInfo = first.json().await.expect("info");
    let modified_before = (backend == Backend::Local).then(|| {
        std::fs::metadata(env.store.blob_file(&first.digest))
            .and_then(|m| m.modified())
            .expect("blob file")
    });

    let again = env.post_blob(bytes.clone()).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "an existing blob answers 200"
    );
    let again: BlobInfo = again.json().await.expect("info");
    assert_eq!(again, first);
    let put = env
        .request(Method::PUT, &format!("/blobs/{}", first.digest))
        .body(bytes)
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), StatusCode::OK);
    if let Some(before) = modified_before {
        let after = std::fs::metadata(env.store.blob_file(&first.digest))
            .and_then(|m| m.modified())
            .expect("blob file");
        assert_eq!(before, after, "the blob file was not replaced");
    }
    env.assert_holds(&[&first.digest]);
}

async fn put_with_the_right_digest_stores_the_blob(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(3, 12_345);
    let digest = Digest::of(&bytes);
    let response = env
        .request(Method::PUT, &format!("/blobs/{digest}"))
        .body(bytes.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::CREATED);
    let info: BlobInfo = response.json().await.expect("info");
    assert_eq!(
        info,
        BlobInfo {
            digest,
            size: 12_345
        }
    );
    let got = env.get(&format!("/blobs/{digest}")).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
}

async fn wrong_declared_digest_is_refused_and_stores_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(4, 200_000);
    let actual = Digest::of(&bytes);
    let declared = Digest::of(b"something else");
    let response = env
        .request(Method::PUT, &format!("/blobs/{declared}"))
        .body(bytes)
        .send()
        .await
        .expect("PUT");
    let p = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(p.title, "Digest mismatch");
    assert_eq!(p.extensions["declared"], declared.to_string());
    assert_eq!(p.extensions["actual"], actual.to_string());
    assert!(p.detail.unwrap_or_default().contains("nothing was stored"));
    assert_eq!(env.blob_status(&declared).await, StatusCode::NOT_FOUND);
    assert_eq!(env.blob_status(&actual).await, StatusCode::NOT_FOUND);
    env.assert_holds(&[]);
}

async fn concurrent_uploads_of_the_same_bytes_make_one_blob(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(5, 3 << 20);
    let digest = Digest::of(&bytes);
    let uploads = (0..6).map(|_| env.post_blob(bytes.clone()));
    let answers = futures::future::join_all(uploads).await;
    let mut created = 0;
    for response in answers {
        let status = response.status();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status}"
        );
        created += usize::from(status == StatusCode::CREATED);
        let info: BlobInfo = response.json().await.expect("info");
        assert_eq!(
            info,
            BlobInfo {
                digest,
                size: 3 << 20
            }
        );
    }
    assert!(created >= 1, "one of them created the blob");
    let got = env.get(&format!("/blobs/{digest}")).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    env.assert_holds(&[&digest]);
}

async fn range_reads_answer_206_with_the_bytes_asked(backend: Backend) {
    let env = Env::start(backend).await;
    let bytes = pattern(6, 1000);
    let info = env.store_blob(bytes.clone()).await;
    let path = format!("/blobs/{}", info.digest);
    for (range, start, end) in [
        ("bytes=10-19", 10, 20),
        ("bytes=990-5000", 990, 1000),
        ("bytes=500-", 500, 1000),
        ("bytes=-7", 993, 1000),
        ("bytes=0-0", 0, 1),
    ] {
        let response = env
            .request(Method::GET, &path)
            .header(header::RANGE, range)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()[header::CONTENT_RANGE],
            format!("bytes {start}-{}/1000", end - 1).as_str(),
            "{range}"
        );
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            (end - start).to_string().as_str()
        );
        let body = response.bytes().await.expect("body");
        assert_eq!(body.as_ref(), &bytes[start..end], "{range}");
    }
    let outside = env
        .request(Method::GET, &path)
        .header(header::RANGE, "bytes=1000-")
        .send()
        .await
        .expect("GET");
    assert_eq!(outside.headers()[header::CONTENT_RANGE], "bytes */1000");
    problem(outside, StatusCode::RANGE_NOT_SATISFIABLE).await;
    let malformed = env
        .request(Method::GET, &path)
        .header(header::RANGE, "bytes=9-3")
        .send()
        .await
        .expect("GET");
    let p = problem(malformed, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.unwrap_or_default().contains("Range"));
    // Several ranges at once may be ignored: the whole blob comes back.
    let several = env
        .request(Method::GET, &path)
        .header(header::RANGE, "bytes=0-1,5-6")
        .send()
        .await
        .expect("GET");
    assert_eq!(several.status(), StatusCode::OK);
    assert_eq!(several.bytes().await.expect("body").len(), 1000);
}

async fn bad_digests_are_refused_and_store_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let good = Digest::of(b"x").hex();
    for bad in [
        "nothex".to_string(),
        format!("sha512:{good}"),
        format!("sha256:{}", good.to_uppercase()),
        format!("sha256:{}", &good[1..]),
        format!("sha256:{good}00"),
        format!("sha256:{}", good.replacen('0', "g", 1)),
        "sha256:".to_string(),
    ] {
        let path = format!("/blobs/{bad}");
        for method in [Method::GET, Method::DELETE] {
            let response = env
                .request(method.clone(), &path)
                .send()
                .await
                .expect("request");
            let p = problem(response, StatusCode::BAD_REQUEST).await;
            assert_eq!(p.title, "Invalid digest", "{method} {bad}");
        }
        let put = env
            .request(Method::PUT, &path)
            .body(b"x".to_vec())
            .send()
            .await
            .expect("PUT");
        let p = problem(put, StatusCode::BAD_REQUEST).await;
        assert!(p.detail.unwrap_or_default().contains("sha256"), "{bad}");
        let head = env.request(Method::HEAD, &path).send().await.expect("HEAD");
        assert_eq!(head.status(), StatusCode::BAD_REQUEST);
    }
    env.assert_holds(&[]);
}

async fn oversized_blobs_are_refused_and_nothing_is_kept(backend: Backend) {
    let env = Env::start_with(backend, |c| c["max_blob_size"] = "1 MiB".into()).await;
    let too_big = pattern(7, (1 << 20) + 1);
    // Declared up front: refused before a byte is read.
    let p = problem(
        env.post_blob(too_big.clone()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(p.extensions["limit"], 1 << 20);
    // Streamed without a length: refused once past the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        too_big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = env
        .request(Method::POST, "/blobs")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("POST");
    problem(streamed, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(
        env.blob_status(&Digest::of(&too_big)).await,
        StatusCode::NOT_FOUND
    );
    env.assert_holds(&[]);
    // Exactly the limit is fine.
    let info = env.store_blob(too_big[..1 << 20].to_vec()).await;
    assert_eq!(info.size, 1 << 20);
    env.assert_holds(&[&info.digest]);
}

async fn delete_removes_a_blob(backend: Backend) {
    let env = Env::start(backend).await;
    let keep = env.store_blob(pattern(8, 10)).await;
    let gone = env.store_blob(pattern(9, 10)).await;
    let path = format!("/blobs/{}", gone.digest);
    let deleted = env
        .request(Method::DELETE, &path)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    problem(env.get(&path).await, StatusCode::NOT_FOUND).await;
    let again = env
        .request(Method::DELETE, &path)
        .send()
        .await
        .expect("DELETE");
    problem(again, StatusCode::NOT_FOUND).await;
    env.assert_holds(&[&keep.digest]);
}

/// Round trip of a large blob made on the fly through the client, checking
/// the store's memory stays bounded.
async fn large_blob_round_trips_in_bounded_memory(backend: Backend) {
    // On S3, the test server keeps objects in memory: a few parts' worth
    // proves the multipart path; the local backend gets the full 2 GiB.
    let size: u64 = match backend {
        Backend::Local => 2 << 30,
        Backend::S3 => 24 << 20,
    };
    let env = Env::start(backend).await;
    let client = env.store.client(&env.token);
    let started = Instant::now();
    let info = client
        .upload(PatternReader::new(10, size))
        .await
        .expect("upload");
    assert_eq!(info.size, size);
    let uploaded = started.elapsed();

    // Download through a sink that only hashes: nothing kept.
    let started = Instant::now();
    let mut sink = HashingSink::default();
    let got = client
        .download(&info.digest, &mut sink)
        .await
        .expect("download");
    assert_eq!(got, size);
    assert_eq!(sink.bytes, size);
    assert_eq!(sink.finish(), info.digest);
    let downloaded = started.elapsed();

    // The bytes are as made: compare a range in the middle.
    let mid = size / 2;
    let range = env
        .request(Method::GET, &format!("/blobs/{}", info.digest))
        .header(header::RANGE, format!("bytes={mid}-{}", mid + 4095))
        .send()
        .await
        .expect("GET");
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    let mut expected = vec![0u8; 4096];
    let mut reader = PatternReader::new(10, size);
    let mut skipped = 0;
    let mut buf = vec![0u8; 1 << 20];
    while skipped < mid {
        let want = usize::try_from((mid - skipped).min(buf.len() as u64)).expect("fits");
        let n = tokio::io::AsyncReadExt::read(&mut reader, &mut buf[..want])
            .await
            .expect("pattern");
        skipped += n as u64;
    }
    tokio::io::AsyncReadExt::read_exact(&mut reader, &mut expected)
        .await
        .expect("pattern");
    assert_eq!(
        range.bytes().await.expect("body").as_ref(),
        expected.as_slice()
    );

    let rss = env.store.peak_rss();
    eprintln!(
        "{backend:?}: {size} bytes up in {uploaded:?}, down in {downloaded:?}; store peak RSS {} MiB",
        rss >> 20
    );
    assert!(
        rss > 0 && rss < 64 << 20,
        "the store's peak RSS was {} MiB",
        rss >> 20
    );
    env.assert_holds(&[&info.digest]);
}

/// An `AsyncWrite` that hashes and counts what it is given.
#[derive(Default)]
struct HashingSink {
    hasher: ick_api::blobs::Hasher,
    bytes: u64,
}

impl HashingSink {
    fn finish(self) -> Digest {
        self.hasher.finish()
    }
}

impl tokio::io::AsyncWrite for HashingSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A streamed GET of a blob arrives in many pieces, not one buffer.
async fn downloads_stream_in_pieces(backend: Backend) {
    let env = Env::start(backend).await;
    let info = env.store_blob(pattern(11, 6 << 20)).await;
    let response = env.get(&format!("/blobs/{}", info.digest)).await;
    let mut stream = response.bytes_stream();
    let (mut pieces, mut total) = (0, 0);
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("piece");
        assert!(piece.len() <= 1 << 20, "a piece of {} bytes", piece.len());
        total += piece.len();
        pieces += 1;
    }
    assert_eq!(total, 6 << 20);
    assert!(pieces > 1);
}

on_both_backends!(
    small_blob_round_trips,
    empty_blob_round_trips,
    uploading_existing_bytes_stores_nothing_new,
    put_with_the_right_digest_stores_the_blob,
    wrong_declared_digest_is_refused_and_stores_nothing,
    concurrent_uploads_of_the_same_bytes_make_one_blob,
    range_reads_answer_206_with_the_bytes_asked,
    bad_digests_are_refused_and_store_nothing,
    oversized_blobs_are_refused_and_nothing_is_kept,
    delete_removes_a_blob,
    large_blob_round_trips_in_bounded_memory,
    downloads_stream_in_pieces,
);
