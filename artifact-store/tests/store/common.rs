//! What every test does: start an IDP and a store, talk HTTP to it.

use std::net::SocketAddr;

use ick_api::Problem;
use ick_api::blobs::{BlobInfo, Digest};
use ick_tests::TestIdp;
use ick_tests::idp::Storage;
use ick_tests::store::{Backend, TestStore};
use reqwest::{Response, StatusCode};
use serde_yaml::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs each named `async fn NAME(backend: Backend)` as a test on both
/// backends: `local::NAME` and `s3::NAME`.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(ick_tests::store::Backend::Local).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(ick_tests::store::Backend::S3).await
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// An IDP, a store that trusts it, and a token with every scope.
pub struct Env {
    pub idp: TestIdp,
    pub store: TestStore,
    pub token: String,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn start(backend: Backend) -> Env {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, edit: impl FnOnce(&mut Value)) -> Env {
        let idp = TestIdp::start_with(Storage::Sqlite, |_| {});
        let store = TestStore::start_with(&idp, backend, edit);
        let token = idp.admin_token().await;
        Env {
            idp,
            store,
            token,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.store.url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.store.process.addr
    }

    /// A request with the all-scopes token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn post_blob(&self, bytes: Vec<u8>) -> Response {
        self.request(reqwest::Method::POST, "/blobs")
            .body(bytes)
            .send()
            .await
            .expect("POST /blobs")
    }

    /// Uploads `bytes` and asserts it worked.
    pub async fn store_blob(&self, bytes: Vec<u8>) -> BlobInfo {
        let response = self.post_blob(bytes).await;
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("blob info")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET")
    }

    /// The status of `HEAD /blobs/{digest}`.
    pub async fn blob_status(&self, digest: &Digest) -> StatusCode {
        self.request(reqwest::Method::HEAD, &format!("/blobs/{digest}"))
            .send()
            .await
            .expect("HEAD")
            .status()
    }

    /// Asserts that the store holds exactly these blobs and no half-written
    /// staging file.
    pub fn assert_holds(&self, digests: &[&Digest]) {
        let mut expected: Vec<String> = digests.iter().map(|d| d.hex()).collect();
        expected.sort();
        expected.dedup();
        assert_eq!(self.store.stored_blobs(), expected, "stored blobs");
        assert_eq!(
            self.store.tmp_files(),
            Vec::<std::path::PathBuf>::new(),
            "staging files"
        );
    }
}

/// The problem an error answer carries; asserts its status and media type.
pub async fn problem(response: Response, status: StatusCode) -> Problem {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let text = response.text().await.expect("body");
    if text.is_empty() {
        // A HEAD answer has headers only.
        return Problem::new(status, "");
    }
    let problem: Problem = serde_json::from_str(&text).expect("problem+json");
    assert_eq!(problem.status, status.as_u16());
    problem
}

/// Sends raw bytes as one HTTP/1.1 request (for what clients would
/// normalize, like `..` in a path) and answers the status and body.
pub async fn raw_request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// Starts a request whose body is `declared` bytes long but sends only
/// `sent` of them, waits until the store has them, then kills the
/// connection (a reset, as a dead network gives).
pub async fn send_part_then_cut(
    addr: SocketAddr,
    head_without_length: &str,
    declared: usize,
    body: &[u8],
    arrived: impl Fn() -> bool,
) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("{head_without_length}Content-Length: {declared}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    stream.flush().await.expect("flush");
    ick_tests::eventually(
        std::time::Duration::from_secs(30),
        "the partial body to arrive",
        || std::future::ready(arrived().then_some(())),
    )
    .await;
    stream.set_zero_linger().expect("linger");
    drop(stream);
}
