//! A real `ick-controller` for tests, on Postgres or SQLite, configured
//! from the example config, restartable on the same address; a small HTTP
//! client for its API; and simulated workers that speak the work protocol
//! over real HTTP (they are the test's own clients, like a worker-manager).

use std::path::PathBuf;
use std::time::Duration;

use ick_api::controller::{BuildSummary, BuildView, TriggerRequest};
use ick_api::work::{
    ClaimRequest, Done, Heartbeat, HeartbeatReply, Outcome, OutputBatch, OutputChunk, Stream,
    WorkAssignment,
};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use tempfile::TempDir;

use crate::db::TestDb;
use crate::idp::{Storage, TestIdp};
use crate::process::ServiceProcess;
use crate::{bin_path, eventually, repo_root};

/// A running controller.
pub struct TestController {
    pub process: ServiceProcess,
    pub dir: TempDir,
    pub config: PathBuf,
    pub storage: Storage,
    database_url: String,
    _db: Option<TestDb>,
}

impl TestController {
    /// A controller on `storage` checking tokens of `idp`, with the example
    /// config's settings.
    pub fn start(idp: &TestIdp, storage: Storage) -> TestController {
        Self::start_with(idp, storage, |_| {})
    }

    /// The same, with `edit` applied to the example config (e.g.
    /// `c["work"]["lease"] = "2s".into()`).
    pub fn start_with(
        idp: &TestIdp,
        storage: Storage,
        edit: impl FnOnce(&mut Value),
    ) -> TestController {
        let dir = tempfile::tempdir().expect("tempdir");
        let (database_url, db) = match storage {
            Storage::Postgres => {
                let db = TestDb::create();
                (db.url.clone(), Some(db))
            }
            Storage::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("controller.db").display()
                ),
                None,
            ),
        };
        Self::launch(idp, storage, dir, database_url, db, edit)
    }

    /// Another controller on this one's Postgres database (as behind a load
    /// balancer), with the same settings.
    pub fn start_sharing(&self, idp: &TestIdp) -> TestController {
        assert_eq!(self.storage, Storage::Postgres, "only Postgres is shared");
        let text = std::fs::read_to_string(&self.config).expect("config");
        let settings: Value = serde_yaml::from_str(&text).expect("config parses");
        let dir = tempfile::tempdir().expect("tempdir");
        Self::launch(
            idp,
            self.storage,
            dir,
            self.database_url.clone(),
            None,
            move |c| {
                for key in ["work", "builds", "public_url", "webhooks", "mail"] {
                    if let Some(value) = settings.get(key) {
                        c[key] = value.clone();
                    }
                }
            },
        )
    }

    fn launch(
        idp: &TestIdp,
        storage: Storage,
        dir: TempDir,
        database_url: String,
        db: Option<TestDb>,
        edit: impl FnOnce(&mut Value),
    ) -> TestController {
        let text = std::fs::read_to_string(repo_root().join("deploy/config/controller.yaml"))
            .expect("deploy/config/controller.yaml");
        let mut config: Value = serde_yaml::from_str(&text).expect("example config parses");
        config["http"]["listen"] = "127.0.0.1:0".into();
        config["auth"]["issuer"] = idp.url().into();
        config["database_url"] = database_url.as_str().into();
        config["max_connections"] = 5.into();
        // The IDP's admin client is the controller's admin too; tests of
        // roles give their narrower clients the roles they need.
        config["admins"] = vec![Value::from(format!("client:{}", crate::idp::ADMIN_CLIENT))].into();
        edit(&mut config);
        let path = dir.path().join("controller.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write config");
        let process = start_process(&path, dir.path().join("controller.log"));
        TestController {
            process,
            config: path,
            dir,
            storage,
            database_url,
            _db: db,
        }
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.process.url
    }

    /// Its database.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// Kills it (SIGKILL, as a crash) and starts it again on the same
    /// address and database.
    pub fn restart(&mut self) {
        self.process.kill();
        self.start_again();
    }

    /// Starts it again on the same address and database after a `kill`.
    pub fn start_again(&mut self) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let mut config: Value = serde_yaml::from_str(&text).expect("config parses");
        config["http"]["listen"] = self.process.addr.to_string().into();
        std::fs::write(&self.config, serde_yaml::to_string(&config).expect("yaml")).expect("write");
        self.process.release_port();
        self.process = start_process(&self.config, self.dir.path().join("controller.log"));
    }

    /// A client with `token`.
    pub fn client(&self, token: &str) -> Api {
        Api::new(self.url(), token)
    }
}

fn start_process(config: &std::path::Path, log: PathBuf) -> ServiceProcess {
    ServiceProcess::start(
        &bin_path("ick-controller"),
        ["--config".as_ref(), config.as_os_str()],
        &[],
        log,
    )
}

/// A bearer-token HTTP client for the controller.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    /// A client of `base` with `token`.
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            http: ick_api::http::client(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    /// A request to `path` with the token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(60))
    }

    /// `GET path` as JSON; panics unless 200.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET");
        json(response, StatusCode::OK).await
    }

    /// `PUT path` with a YAML body.
    pub async fn put_yaml(&self, path: &str, yaml: &str) -> reqwest::Response {
        self.request(reqwest::Method::PUT, path)
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .expect("PUT")
    }

    /// Applies a pipeline; panics unless it is accepted.
    pub async fn pipeline(&self, name: &str, yaml: &str) {
        let r = self.put_yaml(&format!("/pipelines/{name}"), yaml).await;
        let status = r.status();
        assert!(
            status.is_success(),
            "pipeline {name}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Applies a project; panics unless it is accepted.
    pub async fn project(&self, name: &str, yaml: &str) {
        let r = self.put_yaml(&format!("/projects/{name}"), yaml).await;
        let status = r.status();
        assert!(
            status.is_success(),
            "project {name}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// `POST /projects/{name}/builds`.
    pub async fn trigger_raw(&self, project: &str, request: &TriggerRequest) -> reqwest::Response {
        self.request(
            reqwest::Method::POST,
            &format!("/projects/{project}/builds"),
        )
        .json(request)
        .send()
        .await
        .expect("POST builds")
    }

    /// Triggers a build; panics unless 201.
    pub async fn trigger(&self, project: &str) -> BuildSummary {
        json(
            self.trigger_raw(project, &TriggerRequest::default()).await,
            StatusCode::CREATED,
        )
        .await
    }

    /// `GET /builds/{id}`.
    pub async fn build(&self, id: &str) -> BuildView {
        self.get(&format!("/builds/{id}")).await
    }

    /// Waits until the build has ended.
    pub async fn wait_build(&self, id: &str, timeout: Duration) -> BuildView {
        eventually(timeout, &format!("build {id} to end"), || async {
            let b = self.build(id).await;
            b.build.status.is_finished().then_some(b)
        })
        .await
    }

    /// `POST path` with a JSON body (or none).
    pub async fn post<B: serde::Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> reqwest::Response {
        let mut r = self.request(reqwest::Method::POST, path);
        if let Some(body) = body {
            r = r.json(body);
        }
        r.send().await.expect("POST")
    }
}

/// The body of `response` as JSON, after checking its status.
pub async fn json<T: DeserializeOwned>(response: reqwest::Response, expected: StatusCode) -> T {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, expected, "unexpected answer: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not the expected JSON ({e}): {text}"))
}

/// A simulated worker: a plain HTTP client speaking the work protocol.
#[derive(Clone)]
pub struct SimWorker {
    pub api: Api,
    pub name: String,
    pub labels: Vec<String>,
    pub kinds: Vec<String>,
    pub slots: u32,
}

impl SimWorker {
    /// A worker with one slot, no labels and the built-in kinds.
    pub fn new(api: Api, name: &str) -> SimWorker {
        SimWorker {
            api,
            name: name.to_string(),
            labels: vec![],
            kinds: ick_api::actions::BUILTIN_KINDS
                .iter()
                .map(|k| k.to_string())
                .collect(),
            slots: 1,
        }
    }

    /// With these labels.
    pub fn labels(mut self, labels: &[&str]) -> SimWorker {
        self.labels = labels.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Also running these plugin kinds.
    pub fn plugins(mut self, kinds: &[&str]) -> SimWorker {
        self.kinds.extend(kinds.iter().map(|k| k.to_string()));
        self
    }

    /// The claim request it sends.
    pub fn claim_request(&self, wait: u64) -> ClaimRequest {
        ClaimRequest {
            worker: self.name.clone(),
            labels: self.labels.clone(),
            free_slots: self.slots,
            slots: self.slots,
            kinds: self.kinds.clone(),
            wait,
        }
    }

    /// `POST /work/claim`, waiting up to `wait` seconds.
    pub async fn claim(&self, wait: u64) -> Option<WorkAssignment> {
        let r = self
            .api
            .post("/work/claim", Some(&self.claim_request(wait)))
            .await;
        match r.status() {
            StatusCode::NO_CONTENT => None,
            _ => Some(json(r, StatusCode::OK).await),
        }
    }

    /// Claims until it gets something, or panics after `timeout`.
    pub async fn claim_within(&self, timeout: Duration) -> WorkAssignment {
        eventually(timeout, &format!("{} to get work", self.name), || {
            self.claim(1)
        })
        .await
    }

    /// `POST /work/{id}/heartbeat`.
    pub async fn heartbeat_raw(&self, node: &str, attempt: i64) -> reqwest::Response {
        self.api
            .post(
                &format!("/work/{node}/heartbeat"),
                Some(&Heartbeat { attempt }),
            )
            .await
    }

    /// A heartbeat that must be accepted.
    pub async fn heartbeat(&self, a: &WorkAssignment) -> HeartbeatReply {
        json(
            self.heartbeat_raw(&a.node_id, a.attempt).await,
            StatusCode::OK,
        )
        .await
    }

    /// `POST /work/{id}/output`.
    pub async fn output_raw(
        &self,
        node: &str,
        attempt: i64,
        chunks: Vec<OutputChunk>,
    ) -> reqwest::Response {
        self.api
            .post(
                &format!("/work/{node}/output"),
                Some(&OutputBatch { attempt, chunks }),
            )
            .await
    }

    /// Sends `lines` as stdout chunks numbered from `first`; must be accepted.
    pub async fn output(&self, a: &WorkAssignment, first: i64, lines: &[&str]) {
        let chunks = lines
            .iter()
            .enumerate()
            .map(|(i, l)| OutputChunk {
                seq: first + i as i64,
                stream: Stream::Stdout,
                data: l.to_string(),
            })
            .collect();
        let r = self.output_raw(&a.node_id, a.attempt, chunks).await;
        let status = r.status();
        assert!(
            status.is_success(),
            "output refused: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// `POST /work/{id}/done`.
    pub async fn done_raw(&self, node: &str, done: &Done) -> reqwest::Response {
        self.api
            .post(&format!("/work/{node}/done"), Some(done))
            .await
    }

    /// A `done` for an exit code after `chunks` chunks.
    pub fn exited(a: &WorkAssignment, code: i32, chunks: i64) -> Done {
        Done {
            attempt: a.attempt,
            outcome: Outcome::Exited,
            exit_code: Some(code),
            message: None,
            outputs: Default::default(),
            chunks,
        }
    }

    /// Reports the exit code (after `chunks` chunks); must be accepted.
    pub async fn finish(&self, a: &WorkAssignment, code: i32, chunks: i64) {
        let r = self
            .done_raw(&a.node_id, &Self::exited(a, code, chunks))
            .await;
        let status = r.status();
        assert!(
            status.is_success(),
            "done refused: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Claims the next action within `timeout` and reports exit code 0.
    pub async fn run_one(&self, timeout: Duration) -> WorkAssignment {
        let a = self.claim_within(timeout).await;
        self.finish(&a, 0, 0).await;
        a
    }
}

/// A reader of `GET /builds/{id}/log/stream` (Server-Sent Events).
pub struct LogFollower {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl LogFollower {
    /// Opens the stream of a build (or one node of it); panics unless 200.
    pub async fn open(api: &Api, build_id: &str, node: Option<&str>) -> LogFollower {
        let mut path = format!("/builds/{build_id}/log/stream");
        if let Some(node) = node {
            path.push_str(&format!("?node={node}"));
        }
        let response = api
            .http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&api.token)
            .send()
            .await
            .expect("GET log stream");
        assert_eq!(response.status(), StatusCode::OK, "log stream refused");
        LogFollower {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<ick_api::controller::LogEvent> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let mut name = "message";
                let mut data = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = data.join("\n");
                match ick_api::controller::LogEvent::parse(name, &data) {
                    Some(event) => return Some(event.expect("a well-formed event")),
                    None => continue,
                }
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                _ => return None,
            }
        }
    }

    /// The next event within `timeout`; panics if none comes.
    pub async fn expect(&mut self, timeout: Duration) -> ick_api::controller::LogEvent {
        tokio::time::timeout(timeout, self.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
    }
}
