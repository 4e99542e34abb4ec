//! A real `ick-artifact-store` for tests, on a local directory or on a real
//! S3-compatible server (`moto_server`), and a TCP proxy that cuts
//! connections for resume tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ick_api::Secret;
use ick_api::blobs::{BlobClient, Digest};
use serde_yaml::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::idp::TestIdp;
use crate::process::ServiceProcess;
use crate::{bin_path, repo_root};

/// The environment variable naming an S3-compatible endpoint for tests;
/// `deploy/test.sh` starts `moto_server` and sets it. Without it, each
/// test that needs S3 starts its own `moto_server`.
pub const S3_ENDPOINT_VAR: &str = "ICK_TEST_S3_ENDPOINT";

/// Where the store keeps blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local directory.
    Local,
    /// A bucket on a real S3-compatible server.
    S3,
}

/// A running artifact store.
pub struct TestStore {
    pub process: ServiceProcess,
    pub dir: TempDir,
    pub config: PathBuf,
    pub backend: Backend,
    /// The local root (local backend) or the staging directory (S3).
    pub data: PathBuf,
    /// The bucket, on S3.
    pub bucket: Option<TestBucket>,
    /// `unshare` wrapping for a store in a size-limited filesystem.
    small_fs: Option<u64>,
}

impl TestStore {
    /// A store on `backend` that trusts `idp`, with the example config.
    pub fn start(idp: &TestIdp, backend: Backend) -> TestStore {
        Self::start_with(idp, backend, |_| {})
    }

    /// The same, with `edit` applied to the config.
    pub fn start_with(idp: &TestIdp, backend: Backend, edit: impl FnOnce(&mut Value)) -> TestStore {
        Self::launch(idp, backend, None, edit)
    }

    /// A local store whose data directory is a fresh tmpfs of `bytes`,
    /// mounted in a private mount namespace (`unshare -m`, needs root),
    /// so that the disk really fills up.
    pub fn start_in_small_fs(idp: &TestIdp, bytes: u64) -> TestStore {
        Self::launch(idp, Backend::Local, Some(bytes), |_| {})
    }

    fn launch(
        idp: &TestIdp,
        backend: Backend,
        small_fs: Option<u64>,
        edit: impl FnOnce(&mut Value),
    ) -> TestStore {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = std::fs::read_to_string(repo_root().join("deploy/config/artifact-store.yaml"))
            .expect("deploy/config/artifact-store.yaml");
        let mut config: Value = serde_yaml::from_str(&text).expect("example config parses");
        config["http"]["listen"] = "127.0.0.1:0".into();
        config["auth"]["issuer"] = idp.url().into();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let path_value: Value = data.to_string_lossy().as_ref().into();
        let bucket = match backend {
            Backend::Local => {
                config["storage"] = serde_yaml::from_str("{local: {path: x}}").expect("yaml");
                config["storage"]["local"]["path"] = path_value;
                None
            }
            Backend::S3 => {
                let bucket = TestBucket::create();
                let mut s3: Value = serde_yaml::from_str(
                    "{allow_http: true, access_key_id: test, secret_access_key: test, part_size: 5 MiB}",
                )
                .expect("yaml");
                s3["bucket"] = bucket.name.as_str().into();
                s3["endpoint"] = bucket.endpoint.as_str().into();
                s3["prefix"] = "ick".into();
                s3["staging_dir"] = path_value;
                config["storage"] = Value::Mapping(Default::default());
                config["storage"]["s3"] = s3;
                Some(bucket)
            }
        };
        edit(&mut config);
        let path = dir.path().join("artifact-store.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write");
        let process = spawn(&path, &data, small_fs, dir.path());
        TestStore {
            process,
            dir,
            config: path,
            backend,
            data,
            bucket,
            small_fs,
        }
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.process.url
    }

    /// A blob client with a fixed token.
    pub fn client(&self, token: &str) -> BlobClient {
        BlobClient::with_token(ick_api::http::client(), self.url(), Secret::new(token))
    }

    /// The data directory as this test process sees it (inside the private
    /// mount namespace for a small-filesystem store).
    pub fn data_dir(&self) -> PathBuf {
        match self.small_fs {
            Some(_) => PathBuf::from(format!("/proc/{}/root", self.process.pid()))
                .join(self.data.strip_prefix("/").unwrap_or(&self.data)),
            None => self.data.clone(),
        }
    }

    /// Files in the staging area's `tmp/` (single-request uploads).
    pub fn tmp_files(&self) -> Vec<PathBuf> {
        list_files(&self.data_dir().join("tmp"))
    }

    /// Files of upload sessions.
    pub fn upload_files(&self) -> Vec<PathBuf> {
        list_files(&self.data_dir().join("uploads"))
    }

    /// Where a blob's file is, on the local backend.
    pub fn blob_file(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.data_dir().join("sha256").join(&hex[..2]).join(hex)
    }

    /// The names of the stored blobs: files on the local backend, objects
    /// in the bucket on S3.
    pub fn stored_blobs(&self) -> Vec<String> {
        match &self.bucket {
            None => {
                let mut names = Vec::new();
                for fanout in list_files(&self.data_dir().join("sha256")) {
                    names.extend(
                        list_files(&fanout)
                            .iter()
                            .filter_map(|p| p.file_name())
                            .map(|n| n.to_string_lossy().into_owned()),
                    );
                }
                names.sort();
                names
            }
            Some(bucket) => bucket
                .keys("ick/sha256/")
                .into_iter()
                .filter_map(|k| k.rsplit('/').next().map(str::to_string))
                .collect(),
        }
    }

    /// Peak resident memory of the store process (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        peak_rss(self.process.pid())
    }

    /// Kills the store with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again (after [`TestStore::kill`]) on the same address,
    /// config and data.
    pub fn restart(&mut self) {
        self.process.kill();
        let text = std::fs::read_to_string(&self.config).expect("config");
        let mut config: Value = serde_yaml::from_str(&text).expect("config parses");
        config["http"]["listen"] = self.process.addr.to_string().into();
        std::fs::write(&self.config, serde_yaml::to_string(&config).expect("yaml")).expect("write");
        self.process.release_port();
        self.process = spawn(&self.config, &self.data, self.small_fs, self.dir.path());
    }
}

fn spawn(config: &Path, data: &Path, small_fs: Option<u64>, dir: &Path) -> ServiceProcess {
    let store = bin_path("ick-artifact-store");
    let log = dir.join("artifact-store.log");
    match small_fs {
        None => ServiceProcess::start(&store, ["--config".as_ref(), config.as_os_str()], &[], log),
        Some(bytes) => {
            let script = format!(
                "mount -t tmpfs -o size={bytes} ick-test {data} && exec {store} --config {config}",
                data = data.display(),
                store = store.display(),
                config = config.display(),
            );
            ServiceProcess::start(
                Path::new("unshare"),
                ["--mount", "--propagation", "private", "sh", "-c", &script],
                &[],
                log,
            )
        }
    }
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Peak resident memory (`VmHWM`) of a process, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Runs a future on a private runtime, so the harness works from sync and
/// async code alike.
fn block_on<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    })
    .join()
    .expect("harness thread")
}

/// An S3-compatible server: the one `ICK_TEST_S3_ENDPOINT` names, or a
/// `moto_server` started for this test.
pub struct S3Server {
    pub endpoint: String,
    moto: Option<Child>,
}

impl S3Server {
    /// The shared server, or a private one.
    pub fn get() -> S3Server {
        if let Ok(endpoint) = std::env::var(S3_ENDPOINT_VAR)
            && !endpoint.is_empty()
        {
            return S3Server {
                endpoint: endpoint.trim_end_matches('/').to_string(),
                moto: None,
            };
        }
        Self::start_moto()
    }

    fn start_moto() -> S3Server {
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the S3 tests need an S3-compatible server: set {S3_ENDPOINT_VAR}, or install \
                     moto_server (pip install 'moto[server]'); deploy/test.sh does both. ({e})"
                )
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keep reading so that moto never blocks on a full pipe.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("Running on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("moto_server did not start within 60 s"));
        S3Server {
            endpoint,
            moto: Some(child),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.moto {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh bucket for one test.
pub struct TestBucket {
    pub endpoint: String,
    pub name: String,
    _server: S3Server,
}

impl TestBucket {
    /// Creates `ick-test-<random>` on the S3 server.
    pub fn create() -> TestBucket {
        let server = S3Server::get();
        let name = format!("ick-test-{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{name}", server.endpoint);
        let status = block_on(async move {
            reqwest::Client::new()
                .put(url)
                .send()
                .await
                .map(|r| r.status())
        })
        .unwrap_or_else(|e| panic!("cannot reach the S3 server at {}: {e}", server.endpoint));
        assert!(status.is_success(), "creating bucket {name}: HTTP {status}");
        TestBucket {
            endpoint: server.endpoint.clone(),
            name,
            _server: server,
        }
    }

    /// The keys under `prefix` (ListObjectsV2; the test server needs no
    /// signature).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let url = format!("{}/{}", self.endpoint, self.name);
        let prefix = prefix.to_string();
        let body = block_on(async move {
            reqwest::Client::new()
                .get(url)
                .query(&[("list-type", "2"), ("prefix", prefix.as_str())])
                .send()
                .await
                .expect("list objects")
                .text()
                .await
                .expect("list body")
        });
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }
}

/// Which way bytes flow through a [`CuttingProxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

struct ProxyState {
    upstream: SocketAddr,
    up: AtomicU64,
    down: AtomicU64,
    armed: AtomicBool,
    cut_direction: std::sync::Mutex<Direction>,
    cut_at: AtomicU64,
    cuts: AtomicU32,
}

/// A TCP proxy on loopback that can kill a connection (both sockets
/// closed) once a given number of bytes has passed one way: a network cut
/// in the middle of a transfer.
pub struct CuttingProxy {
    /// Its base URL.
    pub url: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    /// Starts a proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState {
            upstream,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            cut_direction: std::sync::Mutex::new(Direction::Up),
            cut_at: AtomicU64::new(u64::MAX),
            cuts: AtomicU32::new(0),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(state.upstream).await {
                        connection(client, server, state).await;
                    }
                });
            }
        });
        CuttingProxy {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Kills the connection that carries the `bytes`-th byte (counted over
    /// all connections so far) going `direction`; once.
    pub fn cut_once_at(&self, direction: Direction, bytes: u64) {
        *self
            .state
            .cut_direction
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = direction;
        self.state.cut_at.store(bytes, Ordering::SeqCst);
        self.state.armed.store(true, Ordering::SeqCst);
    }

    /// Bytes forwarded client to server.
    pub fn bytes_up(&self) -> u64 {
        self.state.up.load(Ordering::SeqCst)
    }

    /// Bytes forwarded server to client.
    pub fn bytes_down(&self) -> u64 {
        self.state.down.load(Ordering::SeqCst)
    }

    /// Connections killed.
    pub fn cuts(&self) -> u32 {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(client: TcpStream, server: TcpStream, state: Arc<ProxyState>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pipe(client_read, server_write, Direction::Up, state.clone());
    let down = pipe(server_read, client_write, Direction::Down, state);
    // Whichever way is cut (or ends) first ends the connection: dropping
    // the other half closes both sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Copies one way; returns when the source ends or the cut fires.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    direction: Direction,
    state: Arc<ProxyState>,
) {
    let counter = match direction {
        Direction::Up => &state.up,
        Direction::Down => &state.down,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let before = counter.load(Ordering::SeqCst);
        let watched = state.armed.load(Ordering::SeqCst)
            && *state
                .cut_direction
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                == direction;
        let cut_at = state.cut_at.load(Ordering::SeqCst);
        if watched && before + n as u64 >= cut_at {
            let keep = usize::try_from(cut_at.saturating_sub(before))
                .unwrap_or(n)
                .min(n);
            if to.write_all(&buf[..keep]).await.is_ok() {
                counter.fetch_add(keep as u64, Ordering::SeqCst);
            }
            state.armed.store(false, Ordering::SeqCst);
            state.cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// Deterministic bytes that do not compress: `len` of them from `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An `AsyncRead` of `len` pseudo-random bytes made on the fly (a block of
/// pattern, varied per block), so that gigabytes need no memory or disk.
pub struct PatternReader {
    block: Arc<Vec<u8>>,
    pos: u64,
    len: u64,
}

impl PatternReader {
    /// `len` bytes from `seed`.
    pub fn new(seed: u64, len: u64) -> PatternReader {
        PatternReader {
            block: Arc::new(pattern(seed, 1 << 20)),
            pos: 0,
            len,
        }
    }
}

impl tokio::io::AsyncRead for PatternReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let block_len = self.block.len() as u64;
        let left = self.len - self.pos;
        if left > 0 {
            let index = self.pos / block_len;
            let at = usize::try_from(self.pos % block_len).unwrap_or(0);
            let n = (self.block.len() - at)
                .min(buf.remaining())
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let start = buf.filled().len();
            buf.put_slice(&self.block[at..at + n]);
            // Make every block different: its index over its first bytes.
            let stamp = index.to_le_bytes();
            for (i, byte) in buf.filled_mut()[start..start + n].iter_mut().enumerate() {
                let offset = at + i;
                if offset >= stamp.len() {
                    break;
                }
                *byte ^= stamp[offset];
            }
            self.pos += n as u64;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// Waits up to `timeout` for `check` to hold, for sync code.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
