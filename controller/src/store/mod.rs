//! The controller's database: Postgres in production, SQLite on one host.
//! One set of queries serves both through sqlx's `Any` driver; the few that
//! must differ (row locks) come in two spellings, chosen by [`Dialect`].
//! Times are BIGINT milliseconds (UTC), flags BIGINT 0/1, JSON as TEXT.
//!
//! Every multi-statement change runs in a [`WriteTx`]. On Postgres, rows
//! are locked in one order — build, then its nodes, then the project's
//! counter — so that controllers sharing the database do not deadlock
//! (and a transaction the database still aborts is run again, see
//! [`retrying`]). On SQLite, writers are serialised by a lock in the process
//! and `BEGIN IMMEDIATE`, so a read-then-write transaction is atomic.

pub mod analytics;
pub mod audit;
pub mod builds;
pub mod definitions;
pub mod logs;
pub mod metrics;
pub mod notifications;
pub mod roles;
pub mod webhooks;
pub mod work;

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{ControllerError, Result};

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// The controller's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    url: Arc<str>,
    /// SQLite: one writer at a time.
    write_lock: Arc<Mutex<()>>,
}

/// A write transaction; commit it or it rolls back when dropped.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Makes the changes durable.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// A connection for one write statement: on Postgres it commits by itself;
/// on SQLite it holds the writer lock in a transaction. Call [`OneWrite::done`].
pub enum OneWrite {
    Autocommit(sqlx::pool::PoolConnection<Any>),
    Locked(WriteTx),
}

impl OneWrite {
    /// Ends it (commits on SQLite).
    pub async fn done(self) -> Result<()> {
        match self {
            OneWrite::Autocommit(_) => Ok(()),
            OneWrite::Locked(tx) => tx.commit().await,
        }
    }
}

impl Deref for OneWrite {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            OneWrite::Autocommit(c) => c,
            OneWrite::Locked(tx) => tx,
        }
    }
}

impl DerefMut for OneWrite {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            OneWrite::Autocommit(c) => c,
            OneWrite::Locked(tx) => tx,
        }
    }
}

impl Store {
    /// Connects, sets SQLite up for a service (WAL, foreign keys, a busy
    /// timeout) and brings the schema up to date.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Store> {
        install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        let options = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => max_connections,
            })
            .acquire_timeout(acquire_timeout);
        let options = if dialect == Dialect::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
        let migrator = match dialect {
            Dialect::Sqlite => {
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await?;
                &SQLITE
            }
            Dialect::Postgres => &POSTGRES,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate the database: {e}"))?;
        Ok(Store {
            pool,
            dialect,
            url: url.into(),
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL it was opened with (for the Postgres listener).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool, for reads outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for several reads.
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// Begins a write transaction.
    pub async fn write(&self) -> Result<WriteTx> {
        match self.dialect {
            Dialect::Postgres => Ok(WriteTx {
                tx: self.pool.begin().await?,
                _guard: None,
            }),
            Dialect::Sqlite => {
                let guard = self.write_lock.clone().lock_owned().await;
                Ok(WriteTx {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    _guard: Some(guard),
                })
            }
        }
    }

    /// For one write statement (cheaper than a transaction on Postgres).
    pub async fn write_one(&self) -> Result<OneWrite> {
        match self.dialect {
            Dialect::Postgres => Ok(OneWrite::Autocommit(self.pool.acquire().await?)),
            Dialect::Sqlite => Ok(OneWrite::Locked(self.write().await?)),
        }
    }

    /// Picks the spelling of a query for this database: Postgres locks rows
    /// (`FOR UPDATE`, `SKIP LOCKED`); SQLite has one writer and no such clause.
    pub fn sql(&self, postgres: &'static str, sqlite: &'static str) -> &'static str {
        match self.dialect {
            Dialect::Postgres => postgres,
            Dialect::Sqlite => sqlite,
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Runs `attempt` again (a few times) when Postgres aborted it for a
/// deadlock or a serialization failure; it must be a whole transaction.
pub async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() && tries < 5 => {
                tries += 1;
                tracing::info!(error = %e, tries, "transaction aborted by the database; running it again");
            }
            other => return other,
        }
    }
}

/// Seconds a caller is told to wait when the database is away.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Whether `e` says the database could not be reached (stopped, out of
/// connections past the acquire timeout, the connection broke) rather
/// than that a query was wrong.
pub fn unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Milliseconds since the epoch as a time.
pub fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Parses JSON stored by the controller itself.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ControllerError::Internal(format!("stored JSON: {e}")))
}

/// Serialises a value to store as JSON.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(ControllerError::internal)
}

/// States as one bound parameter, `,a,b,` (`,,` for all), matched in SQL
/// with `$N = ',,' OR $N LIKE '%,' || status || ',%'`.
pub fn status_list<'a>(statuses: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = statuses.into_iter().collect();
    format!(",{},", names.join(","))
}

/// Projects as one bound parameter, `,a,b,`, matched in SQL with
/// `instr($N, ',' || project || ',') > 0` (`instr` is SQLite's; the
/// Postgres migrations define it). Names hold no commas.
pub fn project_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut list = String::from(",");
    for name in names {
        list.push_str(name);
        list.push(',');
    }
    list
}

/// A listing's two parameters for who may see what: 1 (and an empty
/// list) for every project, else 0 and the [`project_list`] of those it
/// may read.
pub fn readable_param(readable: &crate::access::Readable) -> (i64, String) {
    match readable {
        crate::access::Readable::All => (1, String::new()),
        crate::access::Readable::Only(names) => (0, project_list(names.iter().map(String::as_str))),
    }
}

/// `$1, $2, …` placeholders for a multi-row insert of `rows` rows of `cols`
/// columns: the only SQL the controller builds at run time, and it holds
/// no data.
pub fn values_placeholders(rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(r * cols + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(
            super::values_placeholders(2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
    }
}
