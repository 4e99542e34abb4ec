//! The blob client: one artifact store, one token source, streaming both ways.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http::{StatusCode, header};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::problem::Problem;
use crate::secret::Secret;
use crate::token_source::{TokenError, TokenSource};

use super::digest::{Digest, Hasher};
use super::range::{ByteRange, parse_content_range};
use super::refname::{RefName, RefPrefix};
use super::retry::{Backoff, RetryPolicy};
use super::wire::{BlobInfo, RefInfo, RefList, SetRef};

/// Size of the pieces read from a reader or file and sent.
pub(super) const READ_CHUNK: usize = 256 * 1024;

/// What can go wrong talking to the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store could not be reached, or the connection broke.
    #[error("cannot reach the artifact store at {url}: {source}")]
    Transport {
        /// What was asked.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// The store answered with an error.
    #[error("the artifact store refused: {0}")]
    Refused(Problem),
    /// The bytes do not hash to the expected digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the blob is named (or the store said).
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A local file or stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The store answered something this client does not understand.
    #[error("unexpected answer from the artifact store: {0}")]
    Protocol(String),
    /// No byte arrived for this long.
    #[error("the transfer stalled: nothing arrived for {0:?}")]
    Stalled(Duration),
    /// Transient failures went on for the whole outage limit
    /// ([`BlobClient::outage_timeout`]).
    #[error("artifact store at {url} unreachable for {}: {cause}", humantime_serde::re::humantime::format_duration(*.outage))]
    Unreachable {
        /// The store's base URL.
        url: String,
        /// The limit that passed.
        outage: Duration,
        /// The last failure, in short.
        cause: String,
        /// The last failure.
        #[source]
        last: Box<BlobError>,
    },
}

impl BlobError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            BlobError::Refused(problem) => Some(problem.status_code()),
            _ => None,
        }
    }

    /// Whether trying again may help: broken connections, stalls, and the
    /// store's temporary troubles (408, 429, 500, 502, 503, 504).
    pub fn is_transient(&self) -> bool {
        match self {
            BlobError::Transport { .. } | BlobError::Stalled(_) => true,
            BlobError::Token(TokenError::Unreachable { .. }) => true,
            BlobError::Refused(problem) => {
                matches!(problem.status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            _ => false,
        }
    }

    pub(super) fn unreachable(url: &str, outage: Duration, last: BlobError) -> BlobError {
        // A broken connection says why at the bottom of its chain
        // ("Connection refused"); the top only repeats the URL.
        let cause = match &last {
            BlobError::Transport { source, .. } => {
                let mut root: &dyn std::error::Error = source;
                while let Some(next) = root.source() {
                    root = next;
                }
                root.to_string()
            }
            other => other.to_string(),
        };
        BlobError::Unreachable {
            url: url.to_string(),
            outage,
            cause,
            last: Box::new(last),
        }
    }

    pub(super) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> BlobError {
        let context = context.into();
        move |source| BlobError::Io { context, source }
    }
}

#[derive(Clone)]
enum Auth {
    Source(Arc<TokenSource>),
    Fixed(Secret),
}

/// A client of one artifact store. Cheap to clone.
///
/// Uploads stream from any `AsyncRead` without knowing the size or digest;
/// downloads stream to any `AsyncWrite`, resume with `Range` after a cut
/// and check the digest at the end. Files go through upload sessions that
/// resume where they stopped ([`BlobClient::upload_file`],
/// [`BlobClient::download_file`]). Transient failures are retried with
/// [`RetryPolicy`], or for as long as [`BlobClient::outage_timeout`] says.
#[derive(Clone)]
pub struct BlobClient {
    pub(super) http: reqwest::Client,
    base: Arc<str>,
    auth: Auth,
    retry: RetryPolicy,
    outage: Option<Duration>,
    pub(super) chunk_size: u64,
    pub(super) idle_timeout: Duration,
}

impl std::fmt::Debug for BlobClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl BlobClient {
    /// A client of the store at `base_url`, with tokens from `tokens`.
    pub fn new(http: reqwest::Client, base_url: &str, tokens: Arc<TokenSource>) -> Self {
        Self::build(http, base_url, Auth::Source(tokens))
    }

    /// A client that sends one fixed bearer token (tools, tests).
    pub fn with_token(http: reqwest::Client, base_url: &str, token: Secret) -> Self {
        Self::build(http, base_url, Auth::Fixed(token))
    }

    fn build(http: reqwest::Client, base_url: &str, auth: Auth) -> Self {
        BlobClient {
            http,
            base: base_url.trim_end_matches('/').into(),
            auth,
            retry: RetryPolicy::default(),
            outage: None,
            chunk_size: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// Replaces the retry policy.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Retries transient failures (a store restarting, a broken network)
    /// until they have gone on for `outage` in a row, however many tries
    /// that takes, instead of giving up after `retry.attempts`; the waits
    /// between tries are still the retry policy's. Progress (a chunk
    /// acknowledged, bytes downloaded) starts the clock again. Then the
    /// error is [`BlobError::Unreachable`].
    pub fn outage_timeout(mut self, outage: Duration) -> Self {
        self.outage = Some(outage);
        self
    }

    /// Sets the size of the chunks [`BlobClient::upload_file`] sends in one
    /// request (default 64 MiB): a cut loses at most one chunk.
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// Sets how long a download may go without a byte before it is treated
    /// as cut (default 60 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The store's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(super) fn url(&self, path: &str) -> String {
        crate::http::join(&self.base, path)
    }

    pub(super) async fn token(&self) -> Result<String, BlobError> {
        match &self.auth {
            Auth::Source(source) => Ok(source.token().await?),
            Auth::Fixed(token) => Ok(token.expose().to_string()),
        }
    }

    /// Sends the request `make` builds with a bearer token; on a 401 with a
    /// token source, gets a fresh token and sends once more. Errors unless
    /// the status is a success or one of `accept`.
    pub(super) async fn send(
        &self,
        accept: &[StatusCode],
        make: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BlobError> {
        let mut renewed = false;
        loop {
            let token = self.token().await?;
            let request = make(&token).bearer_auth(&token);
            let response = self.execute(request).await?;
            if response.status() == StatusCode::UNAUTHORIZED
                && !renewed
                && let Auth::Source(source) = &self.auth
            {
                source.invalidate().await;
                renewed = true;
                continue;
            }
            return check(response, accept).await;
        }
    }

    pub(super) async fn execute(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BlobError> {
        let request = request
            .build()
            .map_err(|e| BlobError::Protocol(e.to_string()))?;
        let url = request.url().to_string();
        self.http
            .execute(request)
            .await
            .map_err(|source| BlobError::Transport { url, source })
    }

    /// The retries of one operation, by this client's policy.
    pub(super) fn backoff(&self) -> Backoff {
        Backoff::new(self.retry, self.outage, &self.base)
    }

    /// Runs `op` until it succeeds, fails for good, or its transient
    /// failures spend the retries.
    pub(super) async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, BlobError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BlobError>>,
    {
        let mut backoff = self.backoff();
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() => backoff.wait(e, what).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// The size of a blob, or `None` if the store does not have it.
    pub async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        let url = self.url(&format!("/blobs/{digest}"));
        self.retrying("HEAD blob", || async {
            let response = self
                .send(&[StatusCode::NOT_FOUND], |_| self.http.head(&url))
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            content_length(&response).map(Some)
        })
        .await
    }

    /// Uploads everything `reader` yields as one blob, without knowing its
    /// size or digest first, and checks that the store named it by the
    /// digest of what was sent. A reader cannot be rewound, so this is not
    /// retried; use [`BlobClient::upload_file`] for that.
    pub async fn upload<R>(&self, reader: R) -> Result<BlobInfo, BlobError>
    where
        R: AsyncRead + Send + 'static,
    {
        let sent = Arc::new(Mutex::new((Hasher::new(), 0u64)));
        let body = hashing(
            ReaderStream::with_capacity(reader, READ_CHUNK),
            sent.clone(),
        );
        let body = reqwest::Body::wrap_stream(body);
        let url = self.url("/blobs");
        let token = self.token().await?;
        let request = self.http.post(&url).bearer_auth(token).body(body);
        let response = check(self.execute(request).await?, &[]).await?;
        let info: BlobInfo = json(response).await?;
        let (hasher, size) = std::mem::take(&mut *lock(&sent));
        let actual = hasher.finish();
        if info.digest != actual {
            return Err(BlobError::DigestMismatch {
                expected: actual,
                actual: info.digest,
            });
        }
        if info.size != size {
            return Err(BlobError::Protocol(format!(
                "sent {size} bytes but the store stored {}",
                info.size
            )));
        }
        Ok(info)
    }

    /// Uploads bytes already in memory under their digest (retried).
    pub async fn upload_bytes(&self, bytes: Bytes) -> Result<BlobInfo, BlobError> {
        let digest = Digest::of(&bytes);
        let url = self.url(&format!("/blobs/{digest}"));
        self.retrying("PUT blob", || async {
            let response = self
                .send(&[], |_| self.http.put(&url).body(bytes.clone()))
                .await?;
            json(response).await
        })
        .await
    }

    /// Streams a blob into `writer` and checks its digest at the end; a cut
    /// download resumes with `Range` where it stopped. On a mismatch the
    /// writer has already had the bytes: write to a temporary place.
    /// Returns the size.
    pub async fn download<W>(&self, digest: &Digest, writer: &mut W) -> Result<u64, BlobError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        self.download_from(digest, writer, 0, Hasher::new()).await
    }

    /// Downloads into `writer`, which already holds `start` bytes whose
    /// hash state is `hasher`.
    pub(super) async fn download_from<W>(
        &self,
        digest: &Digest,
        writer: &mut W,
        start: u64,
        hasher: Hasher,
    ) -> Result<u64, BlobError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let url = self.url(&format!("/blobs/{digest}"));
        let mut offset = start;
        let mut hasher = hasher;
        let mut size: Option<u64> = None;
        let mut backoff = self.backoff();
        loop {
            if size == Some(offset) {
                break;
            }
            let before = offset;
            let attempt = self
                .fetch_once(&url, writer, &mut offset, &mut hasher, &mut size)
                .await;
            if offset > before {
                backoff.progressed();
            }
            match attempt {
                Ok(()) if size == Some(offset) => break,
                Ok(()) => {
                    let e = BlobError::Protocol("the download ended early".into());
                    backoff.wait(e, "download").await?;
                }
                Err(e) if e.is_transient() => backoff.wait(e, "download").await?,
                Err(e) => return Err(e),
            }
        }
        writer
            .flush()
            .await
            .map_err(BlobError::io("cannot write the download"))?;
        let actual = hasher.finish();
        if actual != *digest {
            return Err(BlobError::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        Ok(offset)
    }

    async fn fetch_once<W>(
        &self,
        url: &str,
        writer: &mut W,
        offset: &mut u64,
        hasher: &mut Hasher,
        size: &mut Option<u64>,
    ) -> Result<(), BlobError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let from = *offset;
        let response = self
            .send(&[StatusCode::RANGE_NOT_SATISFIABLE], |_| {
                let request = self.http.get(url);
                if from > 0 {
                    request.header(header::RANGE, ByteRange::From(from).header())
                } else {
                    request
                }
            })
            .await?;
        match response.status() {
            StatusCode::OK if from == 0 => *size = Some(content_length(&response)?),
            StatusCode::PARTIAL_CONTENT => {
                let value = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let (range, total) = parse_content_range(value).ok_or_else(|| {
                    BlobError::Protocol(format!("bad Content-Range {value:?} on a 206"))
                })?;
                if range.start != from {
                    return Err(BlobError::Protocol(format!(
                        "asked for bytes from {from}, got {value}"
                    )));
                }
                *size = Some(total);
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // We already hold every byte (or more than the blob has).
                let total = self
                    .stat_once(url)
                    .await?
                    .ok_or_else(|| BlobError::Protocol("the blob disappeared".into()))?;
                if total != from {
                    return Err(BlobError::Protocol(format!(
                        "holding {from} bytes of a blob of {total}"
                    )));
                }
                *size = Some(total);
                return Ok(());
            }
            other => {
                return Err(BlobError::Protocol(format!(
                    "answer {other} to a download from byte {from}"
                )));
            }
        }
        let mut stream = response.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.idle_timeout, stream.next())
                .await
                .map_err(|_| BlobError::Stalled(self.idle_timeout))?;
            let Some(chunk) = next else { return Ok(()) };
            let chunk = chunk.map_err(|source| BlobError::Transport {
                url: url.to_string(),
                source,
            })?;
            if size.is_some_and(|s| *offset + chunk.len() as u64 > s) {
                return Err(BlobError::Protocol(
                    "the store sent more than the blob's size".into(),
                ));
            }
            writer
                .write_all(&chunk)
                .await
                .map_err(BlobError::io("cannot write the download"))?;
            hasher.update(&chunk);
            *offset += chunk.len() as u64;
        }
    }

    async fn stat_once(&self, url: &str) -> Result<Option<u64>, BlobError> {
        let response = self
            .send(&[StatusCode::NOT_FOUND], |_| self.http.head(url))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        content_length(&response).map(Some)
    }

    /// Deletes a blob; `false` if there was none.
    pub async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let url = self.url(&format!("/blobs/{digest}"));
        self.found(&url, || self.http.delete(&url)).await
    }

    /// The blob a ref points at, or `None` if there is no such ref.
    pub async fn get_ref(&self, name: &RefName) -> Result<Option<Digest>, BlobError> {
        let url = self.url(&format!("/refs/{name}"));
        self.retrying("GET ref", || async {
            let response = self
                .send(&[StatusCode::NOT_FOUND], |_| self.http.get(&url))
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            Ok(Some(json::<RefInfo>(response).await?.digest))
        })
        .await
    }

    /// Points a ref at a blob, which must exist.
    pub async fn set_ref(&self, name: &RefName, digest: &Digest) -> Result<RefInfo, BlobError> {
        let url = self.url(&format!("/refs/{name}"));
        let body = SetRef { digest: *digest };
        self.retrying("PUT ref", || async {
            let response = self.send(&[], |_| self.http.put(&url).json(&body)).await?;
            json(response).await
        })
        .await
    }

    /// Deletes a ref; `false` if there was none.
    pub async fn delete_ref(&self, name: &RefName) -> Result<bool, BlobError> {
        let url = self.url(&format!("/refs/{name}"));
        self.found(&url, || self.http.delete(&url)).await
    }

    /// The refs whose names start with `prefix`, sorted by name.
    pub async fn list_refs(&self, prefix: &RefPrefix) -> Result<Vec<RefInfo>, BlobError> {
        let url = self.url("/refs");
        self.retrying("GET refs", || async {
            let response = self
                .send(&[], |_| {
                    self.http.get(&url).query(&[("prefix", prefix.as_str())])
                })
                .await?;
            Ok(json::<RefList>(response).await?.refs)
        })
        .await
    }

    async fn found(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<bool, BlobError> {
        self.retrying(what, || async {
            let response = self.send(&[StatusCode::NOT_FOUND], |_| make()).await?;
            Ok(response.status() != StatusCode::NOT_FOUND)
        })
        .await
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Passes a byte stream through, adding every piece to `state`'s hasher
/// and byte count.
pub(super) fn hashing<S>(
    stream: S,
    state: Arc<Mutex<(Hasher, u64)>>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    stream.map_ok(move |chunk| {
        let mut state = lock(&state);
        state.0.update(&chunk);
        state.1 += chunk.len() as u64;
        chunk
    })
}

/// The response if its status is a success or one of `accept`; otherwise
/// the problem it carries.
pub(super) async fn check(
    response: reqwest::Response,
    accept: &[StatusCode],
) -> Result<reqwest::Response, BlobError> {
    let status = response.status();
    if status.is_success() || accept.contains(&status) {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let problem = serde_json::from_str::<Problem>(&text).unwrap_or_else(|_| {
        let mut detail: String = text.chars().take(300).collect();
        if detail.trim().is_empty() {
            detail = status.canonical_reason().unwrap_or("error").to_string();
        }
        Problem::new(status, detail)
    });
    Err(BlobError::Refused(problem))
}

pub(super) async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, BlobError> {
    let url = response.url().to_string();
    let bytes = response
        .bytes()
        .await
        .map_err(|source| BlobError::Transport { url, source })?;
    serde_json::from_slice(&bytes).map_err(|e| BlobError::Protocol(format!("bad JSON: {e}")))
}

pub(super) fn content_length(response: &reqwest::Response) -> Result<u64, BlobError> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BlobError::Protocol("no Content-Length".into()))
}

/// A value serialized as a query string, for `PUT /uploads/{id}?digest=`.
#[derive(Serialize)]
pub(super) struct DigestQuery {
    pub digest: Digest,
}
