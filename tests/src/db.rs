//! A fresh Postgres database per test, dropped afterwards.

use sqlx::{Connection, Executor, PgConnection};

/// The server tests use: `DATABASE_URL`, or the local one.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for one test.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    name: String,
    server: String,
}

/// Runs a future to completion on a private runtime, so that the harness
/// works from sync tests, async tests and `Drop`.
fn block_on<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    })
    .join()
    .expect("database thread")
}

impl TestDb {
    /// Creates `ick_test_<random>` on the test server.
    pub fn create() -> TestDb {
        let server = server_url();
        let name = format!("ick_test_{}", uuid::Uuid::new_v4().simple());
        let (s, n) = (server.clone(), name.clone());
        block_on(async move {
            let mut conn = PgConnection::connect(&s).await.unwrap_or_else(|e| {
                panic!("cannot reach Postgres at {s}: {e}; start it or set DATABASE_URL")
            });
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {n}")))
                .await
                .expect("create database");
        });
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => format!("{server}/{name}"),
        };
        TestDb { url, name, server }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (s, n) = (self.server.clone(), self.name.clone());
        block_on(async move {
            if let Ok(mut conn) = PgConnection::connect(&s).await {
                let _ = conn
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {n} WITH (FORCE)"
                    )))
                    .await;
            }
        });
    }
}
