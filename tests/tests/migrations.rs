//! The schema: each service's Postgres and SQLite migrations stay in step,
//! and all of them run from an empty database on both.

use std::collections::BTreeSet;
use std::path::Path;

use ick_tests::controller::TestController;
use ick_tests::idp::Storage;
use ick_tests::{TestIdp, repo_root};
use sqlx::{Connection, Row};

/// The migration files of one folder, by name.
fn migrations(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect()
}

/// The versions a folder's files give, checked to run 1, 2, 3, … .
fn versions(names: &BTreeSet<String>) -> Vec<i64> {
    let versions: Vec<i64> = names
        .iter()
        .map(|n| {
            n.split('_')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{n} does not start with its number"))
        })
        .collect();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(
        versions, expected,
        "migrations are numbered 0001, 0002, … without gaps"
    );
    versions
}

#[test]
fn each_services_postgres_and_sqlite_migrations_are_in_step() {
    for service in ["controller", "idp"] {
        let root = repo_root().join(service).join("migrations");
        let postgres = migrations(&root.join("postgres"));
        let sqlite = migrations(&root.join("sqlite"));
        assert!(!postgres.is_empty(), "{service} has migrations");
        assert_eq!(
            postgres, sqlite,
            "{service}: every Postgres migration has its SQLite twin of the same name"
        );
        versions(&postgres);
    }
}

/// The versions a database says it ran, all successfully.
async fn applied(url: &str) -> Vec<i64> {
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
    // Booleans differ between the two; a number reads alike from both.
    let rows = sqlx::query(
        "SELECT version, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) AS ok \
         FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read _sqlx_migrations");
    rows.iter()
        .map(|r| {
            let ok: i64 = r.try_get("ok").expect("success");
            let version: i64 = r.try_get("version").expect("version");
            assert_eq!(ok, 1, "migration {version} failed");
            version
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_migration_runs_from_empty_on_both_databases() {
    sqlx::any::install_default_drivers();
    let controller_versions = versions(&migrations(
        &repo_root().join("controller/migrations/postgres"),
    ));
    let idp_versions = versions(&migrations(&repo_root().join("idp/migrations/postgres")));
    for storage in [Storage::Postgres, Storage::Sqlite] {
        let idp = TestIdp::start_with(storage, |_| {});
        let controller = TestController::start(&idp, storage);
        assert_eq!(
            applied(controller.database_url()).await,
            controller_versions,
            "the controller on {storage:?}"
        );
        let idp_url = match storage {
            Storage::Postgres => {
                let text = std::fs::read_to_string(&idp.config).expect("idp config");
                let config: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
                config["database_url"].as_str().expect("url").to_string()
            }
            Storage::Sqlite => format!(
                "sqlite://{}",
                idp.dir.path().join("data").join("idp.db").display()
            ),
        };
        assert_eq!(
            applied(&idp_url).await,
            idp_versions,
            "the IDP on {storage:?}"
        );
    }
}
