//! Clients in Postgres or SQLite: one set of queries that both accept.
//! (sqlx's `Any` driver knows only integers, floats, text and bytes, so
//! flags are BIGINT 0/1 and times BIGINT milliseconds.)

use std::str::FromStr;
use std::time::Duration;

use ick_api::oauth::WorkerIdentity;
use ick_api::{Scope, ScopeSet};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::error::IdpError;
use audit::Note;

pub mod audit;
mod device;
mod grants;
mod people;
mod upstream;

pub use device::{DeviceCode, DeviceLogin, Polled};
pub use grants::{CodeRecord, FamilyRecord, LoginAttempt, Redeemed, Refreshed};
pub use people::{GroupRecord, UserRecord};
pub use upstream::UpstreamLogin;

/// Now, in milliseconds since the epoch (how every time is stored).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A client as stored.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    pub secret_sha256: String,
    pub scopes: ScopeSet,
    pub audience: String,
    pub enabled: bool,
    /// Milliseconds since the epoch, UTC.
    pub created_at: i64,
    pub updated_at: i64,
    /// The worker it is, as an admin set it (see [`ClientRecord::worker_identity`]).
    pub worker: Option<WorkerIdentity>,
    /// Where a login through it may send people back (exact match).
    pub redirect_uris: Vec<String>,
    /// No secret: it may only log people in, with PKCE.
    pub public: bool,
    /// It may log people in by the device grant (RFC 8628).
    pub device: bool,
}

impl ClientRecord {
    /// The worker a client with `work:run` is: as set, else its own name
    /// and no labels. `None` for other clients.
    pub fn worker_identity(&self) -> Option<WorkerIdentity> {
        self.scopes.contains(Scope::WorkRun).then(|| {
            self.worker.clone().unwrap_or_else(|| WorkerIdentity {
                name: self.name.clone(),
                labels: Vec::new(),
            })
        })
    }
}

/// The IDP's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite has one writer and no `FOR UPDATE`.
    sqlite: bool,
}

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

macro_rules! columns {
    () => {
        "id, name, secret_sha256, scopes, audience, enabled, created_at, updated_at, worker, \
         redirect_uris, public, device"
    };
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str, acquire_timeout: Duration) -> anyhow::Result<Store> {
        install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
        let migrator = if sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            &SQLITE
        } else {
            &POSTGRES
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate the database: {e}"))?;
        Ok(Store { pool, sqlite })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), IdpError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn insert(&self, client: &ClientRecord, note: &Note<'_>) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        let result = sqlx::query(concat!(
            "INSERT INTO clients (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&client.id)
        .bind(&client.name)
        .bind(&client.secret_sha256)
        .bind(client.scopes.to_string())
        .bind(&client.audience)
        .bind(i64::from(client.enabled))
        .bind(client.created_at)
        .bind(client.updated_at)
        .bind(worker_json(client)?)
        .bind(uris_json(&client.redirect_uris)?)
        .bind(i64::from(client.public))
        .bind(i64::from(client.device))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(IdpError::NameTaken(client.name.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<ClientRecord>, IdpError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM clients WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// A client by id, or else by name.
    pub async fn find(&self, id_or_name: &str) -> Result<Option<ClientRecord>, IdpError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM clients WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1"
        ))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| decode(&r)).transpose()
    }

    pub async fn list(&self) -> Result<Vec<ClientRecord>, IdpError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM clients ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Changes a client's scopes, state or worker with `change`, applied
    /// to the client as it is in the same transaction (the row locked), so
    /// that a concurrent change, e.g. a secret rotation, is neither lost
    /// nor undone. `None` if there is no such client.
    pub async fn change(
        &self,
        id: &str,
        change: impl FnOnce(&mut ClientRecord) -> Result<(), IdpError>,
        note: &Note<'_>,
    ) -> Result<Option<ClientRecord>, IdpError> {
        let mut tx = begin_write(self).await?;
        let lock = if self.sqlite { "" } else { " FOR UPDATE" };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM clients WHERE id = $1{lock}",
            columns!()
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut client = decode(&row)?;
        change(&mut client)?;
        sqlx::query(
            "UPDATE clients SET scopes = $1, enabled = $2, updated_at = $3, worker = $4, \
             redirect_uris = $5 WHERE id = $6",
        )
        .bind(client.scopes.to_string())
        .bind(i64::from(client.enabled))
        .bind(client.updated_at)
        .bind(worker_json(&client)?)
        .bind(uris_json(&client.redirect_uris)?)
        .bind(&client.id)
        .execute(&mut *tx)
        .await?;
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(Some(client))
    }

    /// Replaces a client's secret (its hash), and nothing else; `false` if
    /// there is no such client.
    pub async fn set_secret(
        &self,
        id: &str,
        secret_sha256: &str,
        updated_at: i64,
        note: &Note<'_>,
    ) -> Result<bool, IdpError> {
        let mut tx = begin_write(self).await?;
        let result =
            sqlx::query("UPDATE clients SET secret_sha256 = $1, updated_at = $2 WHERE id = $3")
                .bind(secret_sha256)
                .bind(updated_at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a client and the refresh tokens people got through it.
    pub async fn delete(&self, id: &str, note: &Note<'_>) -> Result<bool, IdpError> {
        let mut tx = begin_write(self).await?;
        sqlx::query(
            "DELETE FROM refresh_tokens WHERE family_id IN \
             (SELECT id FROM refresh_families WHERE client_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM refresh_families WHERE client_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query("DELETE FROM clients WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(true)
    }
}

fn decode(row: &sqlx::any::AnyRow) -> Result<ClientRecord, IdpError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ClientRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_sha256: row.try_get("secret_sha256")?,
        scopes: ScopeSet::from_str(&scopes)
            .map_err(|e| IdpError::Internal(format!("stored scopes: {e}")))?,
        audience: row.try_get("audience")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        worker: row
            .try_get::<Option<String>, _>("worker")?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| IdpError::Internal(format!("stored worker: {e}")))?,
        redirect_uris: serde_json::from_str(&row.try_get::<String, _>("redirect_uris")?)
            .map_err(|e| IdpError::Internal(format!("stored redirect_uris: {e}")))?,
        public: row.try_get::<i64, _>("public")? != 0,
        device: row.try_get::<i64, _>("device")? != 0,
    })
}

fn uris_json(uris: &[String]) -> Result<String, IdpError> {
    serde_json::to_string(uris).map_err(|e| IdpError::Internal(format!("redirect_uris: {e}")))
}

/// A transaction that holds the write lock from its start on SQLite (one
/// writer; a read-then-write transaction could otherwise fail to upgrade).
async fn begin_write(store: &Store) -> Result<sqlx::Transaction<'static, sqlx::Any>, IdpError> {
    Ok(if store.sqlite {
        store.pool.begin_with("BEGIN IMMEDIATE").await?
    } else {
        store.pool.begin().await?
    })
}

fn worker_json(client: &ClientRecord) -> Result<Option<String>, IdpError> {
    client
        .worker
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| IdpError::Internal(format!("worker: {e}")))
}
