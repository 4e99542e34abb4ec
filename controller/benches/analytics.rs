//! `GET /analytics` of a project with 100,000 builds: one real
//! `ick-controller` on Postgres (or SQLite with `ICK_BENCH_STORAGE=sqlite`),
//! asked over HTTP on loopback. Target: under 200 ms on Postgres.
//!
//!     cargo build --release -p ick-controller -p ick-idp --bins
//!     cargo bench -p ick-controller --bench analytics
//!
//! The history is written straight into the controller's database once it
//! has made its schema, in a few statements (so that setup takes seconds):
//! project `big` has 100,000 builds over the last 29 days, a build every
//! 25 s, each of four actions in three pipelines (`build` of two, `test`,
//! `deploy`); every tenth build fails in `test` (its `deploy` skipped),
//! one in 97 is cancelled, and builds come in pairs of one commit, so that
//! a failure beside a success of the same commit is flaky. Project
//! `other` has 20,000 builds more, which the project's analytics must not
//! pay for. Then 20 requests after one to warm up; their p50 and p90.

use std::time::{Duration, Instant};

use ick_api::controller::Analytics;
use ick_tests::controller::{Api, TestController};
use ick_tests::idp::{Storage, TestIdp};
use sqlx::{AnyConnection, Connection};

const BUILDS: i64 = 100_000;
const OTHER_BUILDS: i64 = 20_000;
const REQUESTS: usize = 20;
const EVERY_MS: i64 = 25_000;

/// The builds of `project`, numbered 1 to `count`, the last triggered a
/// minute ago, and their nodes; SQL both databases take.
async fn insert_history(conn: &mut AnyConnection, project: &str, count: i64, now: i64) {
    let builds = format!(
        "WITH RECURSIVE g(n) AS (SELECT CAST(1 AS BIGINT) UNION ALL \
             SELECT n + 1 FROM g WHERE n < {count}), \
         t(n, created, queue, took) AS (SELECT n, {now} - 60000 - ({count} - n) * {EVERY_MS}, \
             1000 + (n * 7919) % 30000, 60000 + (n * 104729) % 240000 FROM g) \
         INSERT INTO builds (id, project, number, status, run, admitted, concurrency, \
           cancel_requested, parameters, triggered_by, created_at, started_at, ended_at) \
         SELECT '{project}-' || n, '{project}', n, \
           CASE WHEN n % 10 = 0 THEN 'failed' WHEN n % 97 = 0 THEN 'cancelled' \
             ELSE 'succeeded' END, \
           1, 1, 1, 0, '{{\"git_commit\":\"c' || (n / 2) || '\"}}', 'client:bench', \
           created, created + queue, created + queue + took FROM t"
    );
    sqlx::query(sqlx::AssertSqlSafe(builds))
        .execute(&mut *conn)
        .await
        .expect("insert builds");
    // Each action ran for its share (in percent) of the build; the inputs
    // digest (a hash of the parameters and the action) is the same for the
    // same action of one commit.
    let nodes = format!(
        "WITH t(pos, pipeline, idx, len, action, first, last) AS (VALUES \
           (0, 'build', 0, 2, '{{\"shell\":\"make\",\"name\":\"compile\"}}', 0, 40), \
           (1, 'build', 1, 2, '{{\"shell\":\"make lint\",\"name\":\"lint\"}}', 40, 55), \
           (2, 'test', 0, 1, '{{\"shell\":\"make check\",\"name\":\"unit tests\"}}', 55, 90), \
           (3, 'deploy', 0, 1, '{{\"shell\":\"make deploy\",\"name\":\"deploy\"}}', 90, 100)) \
         INSERT INTO nodes (id, build_id, position, pipeline, idx, pipeline_len, kind, action, \
           labels, deps, waiting, held, status, worker, attempt, lost, cancel_requested, chunks, \
           ready_at, started_at, ended_at, outcome, exit_code, project, build_created_at, inputs) \
         SELECT b.id || '-' || t.pos, b.id, t.pos, t.pipeline, t.idx, t.len, 'shell', t.action, \
           '[]', '[]', 0, 0, \
           CASE WHEN b.status = 'cancelled' THEN 'cancelled' \
             WHEN b.status = 'failed' AND t.pipeline = 'test' THEN 'failed' \
             WHEN b.status = 'failed' AND t.pipeline = 'deploy' THEN 'skipped' \
             ELSE 'succeeded' END, \
           'bench-worker', 1, 0, 0, 0, b.started_at, \
           b.started_at + (b.ended_at - b.started_at) * t.first / 100, \
           b.started_at + (b.ended_at - b.started_at) * t.last / 100, 'exited', 0, \
           b.project, b.created_at, \
           'inputs-of-commit-' || (b.number / 2) || '-action-' || t.pos \
         FROM builds b CROSS JOIN t WHERE b.project = '{project}'"
    );
    sqlx::query(sqlx::AssertSqlSafe(nodes))
        .execute(&mut *conn)
        .await
        .expect("insert nodes");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Times `REQUESTS` answers to `path` (after one to warm up).
async fn time(api: &Api, path: &str) -> (Vec<Duration>, Analytics) {
    let get = || async {
        let started = Instant::now();
        let r = api
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET /analytics");
        let status = r.status();
        let body = r.text().await.expect("the answer");
        assert!(status.is_success(), "{status}: {body}");
        (started.elapsed(), body)
    };
    let (_, body) = get().await;
    let analytics: Analytics = serde_json::from_str(&body).expect("analytics");
    let mut samples = Vec::new();
    for _ in 0..REQUESTS {
        samples.push(get().await.0);
    }
    samples.sort();
    (samples, analytics)
}

#[tokio::main]
async fn main() {
    let storage = match std::env::var("ICK_BENCH_STORAGE").as_deref() {
        Ok("sqlite") => Storage::Sqlite,
        _ => Storage::Postgres,
    };
    let idp = TestIdp::start_with(Storage::Sqlite, |_| {});
    let controller = TestController::start_with(&idp, storage, |_| {});
    let api = controller.client(&idp.admin_token().await);
    api.pipeline("build", "actions: [{shell: make}, {shell: make lint}]")
        .await;
    api.pipeline("test", "actions: [{shell: make check}]").await;
    api.pipeline("deploy", "needs: [test]\nactions: [{shell: make deploy}]")
        .await;
    api.project("big", "pipelines: [build, test, deploy]").await;
    api.project("other", "pipelines: [build, test, deploy]")
        .await;

    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(controller.database_url())
        .await
        .expect("the controller's database");
    let started = Instant::now();
    let now = chrono::Utc::now().timestamp_millis();
    insert_history(&mut conn, "big", BUILDS, now).await;
    insert_history(&mut conn, "other", OTHER_BUILDS, now).await;
    let analyze = match storage {
        Storage::Postgres => "VACUUM ANALYZE",
        Storage::Sqlite => "ANALYZE",
    };
    sqlx::raw_sql(analyze)
        .execute(&mut conn)
        .await
        .expect("analyze");
    println!(
        "analytics: one controller on {storage:?}; {BUILDS} builds of `big` and {OTHER_BUILDS} of \
         `other`, 4 actions each, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for (what, path) in [
        ("GET /analytics?project=big", "/analytics?project=big"),
        (
            "GET /analytics?project=big&pipeline=test",
            "/analytics?project=big&pipeline=test",
        ),
        ("GET /analytics (every project)", "/analytics"),
    ] {
        let (samples, a) = time(&api, path).await;
        println!(
            "{what}: p50 {}, p90 {}, max {} over {REQUESTS} requests ({} builds, {} flaky actions)",
            ms(percentile(&samples, 50.0)),
            ms(percentile(&samples, 90.0)),
            ms(samples[samples.len() - 1]),
            a.builds.total,
            a.flaky_actions.len()
        );
    }
    drop(controller);
}
