//! A real `ick-worker-manager` for tests, configured from the example
//! config (`deploy/config/worker-manager.yaml`), with its own IDP client,
//! workspace root and plugin directory; restartable; its log readable.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use serde_yaml::Value;
use tempfile::TempDir;

use crate::idp::{Credentials, TestIdp};
use crate::process::ServiceProcess;
use crate::{bin_path, repo_root};

/// A running worker-manager.
pub struct TestWorker {
    pub process: ServiceProcess,
    pub dir: TempDir,
    pub config: PathBuf,
    /// Its name, unique per test run.
    pub name: String,
    /// Its IDP client.
    pub credentials: Credentials,
    /// Where its workspaces are.
    pub workspace_root: PathBuf,
    /// Where its plugins are looked for.
    pub plugin_dir: PathBuf,
}

/// A change to the config.
type Edit<'a> = Box<dyn FnOnce(&mut Value) + 'a>;

/// Builds a [`TestWorker`]: `TestWorker::builder(&idp, controller.url())`.
pub struct TestWorkerBuilder<'a> {
    idp: &'a TestIdp,
    controller: String,
    store: Option<String>,
    name: Option<String>,
    secret: Option<String>,
    plugins: Vec<(String, String)>,
    edits: Vec<Edit<'a>>,
}

impl<'a> TestWorkerBuilder<'a> {
    /// The artifact store it uses (default: none that answers).
    pub fn store(mut self, url: &str) -> Self {
        self.store = Some(url.to_string());
        self
    }

    /// Its name (default: `worker-` and a random suffix).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Uses this secret instead of its client's real one.
    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.to_string());
        self
    }

    /// Its number of slots.
    pub fn slots(self, slots: u32) -> Self {
        self.edit(move |c| c["slots"] = slots.into())
    }

    /// Adds the plugin `ick-action-KIND` with this script (made executable).
    pub fn plugin(mut self, kind: &str, script: &str) -> Self {
        self.plugins.push((kind.to_string(), script.to_string()));
        self
    }

    /// Applies `edit` to the config (after the harness's own settings).
    pub fn edit(mut self, edit: impl FnOnce(&mut Value) + 'a) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// Writes the config and starts the binary.
    pub fn start(self) -> TestWorker {
        let dir = tempfile::tempdir().expect("tempdir");
        // A worker running as root starts sandboxes as its sandbox user,
        // who must reach the workspaces below (but not list this folder).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod the worker's directory");
        let name = self.name.unwrap_or_else(|| {
            format!(
                "worker-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        });
        let secret_file = dir.path().join("secret");
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
        for (kind, script) in &self.plugins {
            let path = plugin_dir.join(format!("ick-action-{kind}"));
            std::fs::write(&path, script).expect("write plugin");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod plugin");
        }
        let workspace_root = dir.path().join("workspaces");

        let text = std::fs::read_to_string(repo_root().join("deploy/config/worker-manager.yaml"))
            .expect("deploy/config/worker-manager.yaml");
        let mut config: Value = serde_yaml::from_str(&text).expect("example config parses");
        config["name"] = name.as_str().into();
        config["controller"] = self.controller.as_str().into();
        config["artifact_store"] = self.store.as_deref().unwrap_or("http://127.0.0.1:9").into();
        config["idp"]["token_url"] = self.idp.token_url().into();
        config["idp"]["client_secret_file"] = path_value(&secret_file);
        config["workspace_root"] = path_value(&workspace_root);
        config["systree_root"] = path_value(&dir.path().join("systrees"));
        config["plugin_dir"] = path_value(&plugin_dir);
        config["http"]["listen"] = "127.0.0.1:0".into();
        config["metrics"]["listen"] = "127.0.0.1:0".into();
        config["labels"] = Value::Sequence(vec![]);
        config["slots"] = 1.into();
        for edit in self.edits {
            edit(&mut config);
        }
        // Its IDP client is the worker of its config's name and labels.
        let labels: Vec<&str> = config["labels"]
            .as_sequence()
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let worker_name = config["name"].as_str().unwrap_or(&name);
        let credentials = self.idp.create_worker_client(
            &name,
            worker_name,
            &labels,
            &["work:run", "blobs:read", "blobs:write"],
        );
        config["idp"]["client_id"] = credentials.id.as_str().into();
        let secret = self.secret.as_deref().unwrap_or(&credentials.secret);
        std::fs::write(&secret_file, format!("{secret}\n")).expect("write secret");
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod secret");
        let path = dir.path().join("worker-manager.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write config");
        let process = spawn(&path, dir.path());
        TestWorker {
            process,
            config: path,
            dir,
            name,
            credentials,
            workspace_root,
            plugin_dir,
        }
    }
}

fn path_value(path: &Path) -> Value {
    path.to_string_lossy().as_ref().into()
}

fn spawn(config: &Path, dir: &Path) -> ServiceProcess {
    ServiceProcess::start(
        &bin_path("ick-worker-manager"),
        ["--config".as_ref(), config.as_os_str()],
        &[],
        dir.join("worker-manager.log"),
    )
}

impl TestWorker {
    /// A worker of `controller` (base URL) with the example config's
    /// settings, one slot, and no artifact store.
    pub fn builder<'a>(idp: &'a TestIdp, controller: &str) -> TestWorkerBuilder<'a> {
        TestWorkerBuilder {
            idp,
            controller: controller.to_string(),
            store: None,
            name: None,
            secret: None,
            plugins: Vec::new(),
            edits: Vec::new(),
        }
    }

    /// A worker of `controller` using the artifact store `store`.
    pub fn start(idp: &TestIdp, controller: &str, store: &str) -> TestWorker {
        Self::builder(idp, controller).store(store).start()
    }

    /// Where it serves `/metrics` (it printed `metrics on URL`).
    pub fn metrics_url(&self) -> String {
        let log = std::fs::read_to_string(&self.process.log).expect("the worker's log");
        log.lines()
            .rev()
            .find_map(|l| l.strip_prefix("metrics on "))
            .unwrap_or_else(|| panic!("the worker printed no metrics address:\n{log}"))
            .trim()
            .to_string()
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends SIGTERM (drain) and waits up to `timeout` for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.terminate(timeout)
    }

    /// Kills it and starts it again with the same config and directories.
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = spawn(&self.config, self.dir.path());
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log_text()
    }

    /// The workspace directories that exist now (`PROJECT/NUMBER/PIPELINE`).
    pub fn workspaces(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for project in entries(&self.workspace_root) {
            if project
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            for number in entries(&project) {
                found.extend(entries(&number));
            }
        }
        found.sort();
        found
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(list) => list.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}
