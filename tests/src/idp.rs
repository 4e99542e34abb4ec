//! A real `ick-idp` for tests, with an admin client holding every scope.

use std::path::PathBuf;
use std::process::{Command, Output};

use ick_api::{Secret, TokenSource};
use serde_yaml::Value;
use tempfile::TempDir;

use crate::db::TestDb;
use crate::process::ServiceProcess;
use crate::{bin_path, repo_root};

/// The name of the admin client every test IDP has (every scope; the
/// test controllers' `admins:`).
pub const ADMIN_CLIENT: &str = "test-admin";

/// A client id and its secret.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: String,
    pub secret: String,
}

/// Where the IDP keeps its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A fresh Postgres database.
    Postgres,
    /// A SQLite file in the IDP's data directory.
    Sqlite,
}

/// A running IDP: its process, data directory and admin client.
pub struct TestIdp {
    pub process: ServiceProcess,
    pub dir: TempDir,
    pub config: PathBuf,
    /// A client with every scope.
    pub admin: Credentials,
    _db: Option<TestDb>,
}

impl TestIdp {
    /// An IDP on Postgres with the example config's settings.
    pub fn start() -> TestIdp {
        Self::start_with(Storage::Postgres, |_| {})
    }

    /// An IDP on `storage`, with `edit` applied to the example config.
    pub fn start_with(storage: Storage, edit: impl FnOnce(&mut Value)) -> TestIdp {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = std::fs::read_to_string(repo_root().join("deploy/config/idp.yaml"))
            .expect("deploy/config/idp.yaml");
        let mut config: Value = serde_yaml::from_str(&text).expect("example config parses");
        config["http"]["listen"] = "127.0.0.1:0".into();
        config["data_dir"] = dir.path().join("data").to_string_lossy().as_ref().into();
        let db = match storage {
            Storage::Postgres => {
                let db = TestDb::create();
                config["database_url"] = db.url.as_str().into();
                Some(db)
            }
            Storage::Sqlite => None,
        };
        edit(&mut config);
        let path = dir.path().join("idp.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write");
        let all = ick_api::ScopeSet::all().to_string();
        let admin = create_client(&path, ADMIN_CLIENT, &[all.as_str()], &[]);
        let process = ServiceProcess::start(
            &bin_path("ick-idp"),
            ["--config".as_ref(), path.as_os_str()],
            &[],
            dir.path().join("idp.log"),
        );
        TestIdp {
            process,
            config: path,
            dir,
            admin,
            _db: db,
        }
    }

    /// The base URL, which is also the issuer.
    pub fn url(&self) -> &str {
        &self.process.url
    }

    /// The database it keeps its state in.
    pub fn database_url(&self) -> String {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let config: Value = serde_yaml::from_str(&text).expect("config parses");
        match config["database_url"].as_str() {
            Some(url) => url.to_string(),
            None => format!(
                "sqlite://{}",
                std::path::Path::new(config["data_dir"].as_str().expect("data_dir"))
                    .join("idp.db")
                    .display()
            ),
        }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url())
    }

    /// Runs `ick-idp --config CONFIG ARGS…` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        run_idp(&self.config, args)
    }

    /// Creates a client with the CLI.
    pub fn create_client(&self, name: &str, scopes: &[&str]) -> Credentials {
        create_client(&self.config, name, scopes, &[])
    }

    /// Creates a worker's client: its tokens name the worker `worker` with
    /// `labels`.
    pub fn create_worker_client(
        &self,
        name: &str,
        worker: &str,
        labels: &[&str],
        scopes: &[&str],
    ) -> Credentials {
        let labels = labels.join(",");
        let mut extra = vec!["--worker-name", worker];
        if !labels.is_empty() {
            extra.extend(["--labels", labels.as_str()]);
        }
        create_client(&self.config, name, scopes, &extra)
    }

    /// Creates a client people log in through, with the CLI: `redirect_uris`
    /// registered, public (no secret: `secret` is empty) or not.
    pub fn create_login_client(
        &self,
        name: &str,
        scopes: &[&str],
        redirect_uris: &[&str],
        public: bool,
    ) -> Credentials {
        let mut args = vec!["client", "create", name];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        for uri in redirect_uris {
            args.extend(["--redirect-uri", uri]);
        }
        if public {
            args.push("--public");
        }
        let out = self.run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "client create failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |key: &str| printed(&stdout, key);
        Credentials {
            id: field("client_id:").unwrap_or_else(|| panic!("no client_id in {stdout}")),
            secret: field("client_secret:").unwrap_or_default(),
        }
    }

    /// Creates a public client with the device grant (what `icktool
    /// login` logs people in through), with the CLI.
    pub fn create_device_client(&self, name: &str, scopes: &[&str]) -> Credentials {
        let mut extra = vec!["--public", "--device"];
        for scope in scopes {
            extra.extend(["--scope", scope]);
        }
        let mut args = vec!["client", "create", name];
        args.extend(extra);
        let out = self.run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "client create failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = stdout
            .lines()
            .find_map(|l| l.strip_prefix("client_id:"))
            .unwrap_or_else(|| panic!("no client_id in {stdout}"))
            .trim()
            .to_string();
        Credentials {
            id,
            secret: String::new(),
        }
    }

    /// Creates user `name` with `password` through the admin API.
    pub async fn create_user(&self, name: &str, password: &str) {
        let token = self.admin_token().await;
        let response = reqwest::Client::new()
            .post(format!("{}/users", self.url()))
            .bearer_auth(token)
            .json(&serde_json::json!({
                "name": name,
                "display_name": format!("{name} (test)"),
                "email": format!("{name}@example.org"),
                "password": password,
            }))
            .send()
            .await
            .expect("IDP answers");
        assert_eq!(
            response.status(),
            reqwest::StatusCode::CREATED,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Calls the admin API as the admin client: `method path` with a JSON
    /// body (or none); answers the status and the JSON (or null).
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let token = self.admin_token().await;
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("IDP answers");
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// A token for `creds`, asking for `scope` (all the client may have if `None`).
    pub async fn token(&self, creds: &Credentials, scope: Option<&str>) -> String {
        self.token_source(creds, scope)
            .token()
            .await
            .unwrap_or_else(|e| panic!("no token for {}: {e}", creds.id))
    }

    /// A token with every scope.
    pub async fn admin_token(&self) -> String {
        self.token(&self.admin, None).await
    }

    /// A token source for `creds`.
    pub fn token_source(&self, creds: &Credentials, scope: Option<&str>) -> TokenSource {
        TokenSource::new(
            ick_api::http::client(),
            self.token_url(),
            creds.id.clone(),
            Secret::new(creds.secret.clone()),
            scope.map(str::to_string),
        )
    }

    /// Kills the IDP and starts it again on the same address and state.
    pub fn restart(&mut self) {
        self.process.kill();
        let text = std::fs::read_to_string(&self.config).expect("config");
        let mut config: Value = serde_yaml::from_str(&text).expect("config parses");
        config["http"]["listen"] = self.process.addr.to_string().into();
        std::fs::write(&self.config, serde_yaml::to_string(&config).expect("yaml")).expect("write");
        self.process.release_port();
        self.process = ServiceProcess::start(
            &bin_path("ick-idp"),
            ["--config".as_ref(), self.config.as_os_str()],
            &[],
            self.dir.path().join("idp.log"),
        );
    }
}

fn run_idp(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(bin_path("ick-idp"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("ick-idp runs")
}

fn create_client(
    config: &std::path::Path,
    name: &str,
    scopes: &[&str],
    extra: &[&str],
) -> Credentials {
    let mut args = vec!["client", "create", name];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    args.extend(extra);
    let out = run_idp(config, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client create failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| printed(&stdout, key).unwrap_or_else(|| panic!("no {key} in {stdout}"));
    Credentials {
        id: field("client_id:"),
        secret: field("client_secret:"),
    }
}

/// The value of a `key: value` line that `ick-idp client …` printed.
pub fn printed(stdout: &str, key: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
}
