//! Clients made before any token exists to ask the API with: `ick-idp
//! client issue` (which `icktool up` runs for its first admin client and
//! its workers' clients). Callers see clients, ids and secrets, never the
//! store.

use ick_api::audit::{Actor, AuditAction};
use ick_api::oauth::WorkerIdentity;
use ick_api::{ScopeSet, Secret};

use crate::Config;
use crate::clients::{self, WorkerAttributes};
use crate::store::Store;
use crate::store::audit::Note;

/// Who the audit log says made these clients.
const PROGRAM: &str = "bootstrap";

/// The IDP's clients, opened from its config (before or without serving).
pub struct Bootstrap {
    store: Store,
    audience: String,
}

impl Bootstrap {
    /// Opens the store of `config` (creating its data directory).
    pub async fn open(config: &Config) -> anyhow::Result<Bootstrap> {
        Ok(Bootstrap {
            store: config.open_store().await?,
            audience: config.default_audience.clone(),
        })
    }

    /// The id of client `name` if it exists, is enabled, and has `secret`.
    pub async fn holds(&self, name: &str, secret: &Secret) -> anyhow::Result<Option<String>> {
        Ok(self.store.find(name).await?.and_then(|record| {
            (record.enabled && clients::secret_matches(secret.expose(), &record.secret_sha256))
                .then_some(record.id)
        }))
    }

    /// Creates client `name` with `scopes` (and, for a worker, its name
    /// and labels; for a browser login, its redirect URIs), or gives the
    /// existing one those and a new secret, enabled. Answers its id and
    /// secret.
    pub async fn issue(
        &self,
        name: &str,
        scopes: ScopeSet,
        worker: Option<WorkerIdentity>,
        redirect_uris: Vec<String>,
    ) -> anyhow::Result<(String, Secret)> {
        let worker = match worker {
            Some(w) => WorkerAttributes {
                name: Some(w.name),
                labels: Some(w.labels),
            },
            None => WorkerAttributes::default(),
        };
        let actor = Actor::local(PROGRAM);
        let made = match self.store.find(name).await? {
            Some(record) => {
                clients::update(
                    &self.store,
                    &actor,
                    &record.id,
                    Some(scopes),
                    Some(true),
                    worker,
                    (!redirect_uris.is_empty()).then_some(redirect_uris),
                )
                .await?;
                clients::rotate(&self.store, &actor, &record.id).await?
            }
            None => {
                clients::create(
                    &self.store,
                    &actor,
                    name,
                    scopes,
                    &self.audience,
                    worker,
                    clients::LoginSettings {
                        redirect_uris,
                        ..clients::LoginSettings::default()
                    },
                )
                .await?
            }
        };
        let secret = made
            .client_secret
            .ok_or_else(|| anyhow::anyhow!("client {name} is public: it has no secret"))?;
        Ok((made.client.id, Secret::new(secret)))
    }

    /// Makes sure public client `name` exists, enabled, with `scopes` and
    /// the device grant (what `icktool login` logs people in through);
    /// answers its id. An existing client of that name keeps its id.
    pub async fn device_client(&self, name: &str, scopes: ScopeSet) -> anyhow::Result<String> {
        if let Some(record) = self.store.find(name).await? {
            if !(record.public && record.device) {
                anyhow::bail!(
                    "client {name} exists but is not a public client with the device grant: \
                     delete it, and `up` makes it again"
                );
            }
            clients::update(
                &self.store,
                &Actor::local(PROGRAM),
                &record.id,
                Some(scopes),
                Some(true),
                WorkerAttributes::default(),
                None,
            )
            .await?;
            return Ok(record.id);
        }
        let login = clients::LoginSettings {
            redirect_uris: Vec::new(),
            public: true,
            device: true,
        };
        let made = clients::create(
            &self.store,
            &Actor::local(PROGRAM),
            name,
            scopes,
            &self.audience,
            WorkerAttributes::default(),
            login,
        )
        .await?;
        Ok(made.client.id)
    }

    /// Removes client `name`, if there is one.
    pub async fn remove(&self, name: &str) -> anyhow::Result<()> {
        if let Some(record) = self.store.find(name).await? {
            let actor = Actor::local(PROGRAM);
            let note = Note::new(&actor, AuditAction::ClientDelete, &record.name);
            self.store.delete(&record.id, &note).await?;
        }
        Ok(())
    }
}
