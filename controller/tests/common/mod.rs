//! What the controller's tests share: an IDP and a controller (on the
//! storage under test), an admin client, and simulated workers.

#![allow(dead_code)]

use std::time::Duration;

use ick_tests::Credentials;
use ick_tests::controller::{Api, SimWorker, TestController};
use ick_tests::idp::{Storage, TestIdp};

#[allow(unused_imports)]
pub use ick_tests::eventually;

/// Long enough for anything that should happen at once on a loaded machine.
pub const SOON: Duration = Duration::from_secs(20);

/// A controller and its IDP.
pub struct Env {
    pub idp: TestIdp,
    pub controller: TestController,
    /// A client whose token has every scope.
    pub admin: Api,
}

impl Env {
    /// A controller on `storage`, looking for lost workers often.
    pub async fn start(storage: Storage) -> Env {
        Self::start_with(storage, |_| {}).await
    }

    /// The same with `edit` applied to its config.
    pub async fn start_with(storage: Storage, edit: impl FnOnce(&mut serde_yaml::Value)) -> Env {
        // The IDP's storage is not what these tests are about.
        let idp = TestIdp::start_with(Storage::Sqlite, |_| {});
        let controller = TestController::start_with(&idp, storage, |c| {
            c["work"]["reap_interval"] = "100ms".into();
            edit(c);
        });
        let admin = controller.client(&idp.admin_token().await);
        Env {
            idp,
            controller,
            admin,
        }
    }

    /// A simulated worker with one slot and the built-in kinds.
    pub fn worker(&self, name: &str) -> SimWorker {
        SimWorker::new(self.admin.clone(), name)
    }

    /// A worker with an IDP client of its own whose tokens name it, with
    /// `labels` (the admin's token may act as any worker; this one may not).
    pub async fn named_worker(&self, name: &str, labels: &[&str]) -> SimWorker {
        let creds = self
            .idp
            .create_worker_client(name, name, labels, &["work:run"]);
        let api = self.controller.client(&self.idp.token(&creds, None).await);
        SimWorker::new(api, name).labels(labels)
    }

    /// A client whose token has only `scopes` (space-separated; may be
    /// empty for a token without any of the controller's scopes).
    pub async fn client_with(&self, name: &str, scopes: &str) -> Api {
        let scopes = if scopes.is_empty() {
            "idp:admin"
        } else {
            scopes
        };
        let creds = self.idp.create_client(name, &[scopes]);
        self.controller.client(&self.idp.token(&creds, None).await)
    }
}

impl Env {
    /// A client made through the IDP's admin API (`POST /clients`, as an
    /// admin makes one), whose tokens have `scopes`; its API and its
    /// credentials.
    pub async fn idp_client(&self, name: &str, scopes: &str) -> (Api, Credentials) {
        let body = ick_api::oauth::CreateClient {
            name: name.to_string(),
            scopes: scopes.parse().expect("scopes"),
            audience: None,
            worker_name: None,
            labels: None,
            redirect_uris: vec![],
            public: false,
            device: false,
        };
        let admin = self.idp.admin_token().await;
        let response = self
            .admin
            .http
            .post(format!("{}/clients", self.idp.url()))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .expect("POST /clients");
        let made: ick_api::oauth::ClientWithSecret =
            ick_tests::controller::json(response, reqwest::StatusCode::CREATED).await;
        let creds = Credentials {
            id: made.client.id,
            secret: made
                .client_secret
                .expect("a confidential client has a secret"),
        };
        let api = self.controller.client(&self.idp.token(&creds, None).await);
        (api, creds)
    }

    /// Gives `member` `role` on `project`, as the admin; panics unless done.
    pub async fn member(&self, project: &str, member: &str, role: &str) {
        let r = self
            .admin
            .request(
                reqwest::Method::PUT,
                &format!("/projects/{project}/members"),
            )
            .json(&serde_json::json!({"member": member, "role": role}))
            .send()
            .await
            .expect("PUT members");
        let status = r.status();
        assert!(
            status.is_success(),
            "member {member} {role} of {project}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Grants a global role, as the admin; panics unless done.
    pub async fn grant(&self, member: &str, role: &str) {
        let r = self
            .admin
            .request(reqwest::Method::PUT, "/roles")
            .json(&serde_json::json!({"member": member, "role": role}))
            .send()
            .await
            .expect("PUT roles");
        let status = r.status();
        assert!(
            status.is_success(),
            "role {role} for {member}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }
}

/// Runs an async test body on both storages: `mod NAME { postgres, sqlite }`.
#[macro_export]
macro_rules! on_both_storages {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(ick_tests::idp::Storage::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(ick_tests::idp::Storage::Sqlite).await
            }
        }
    )*};
}
