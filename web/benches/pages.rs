//! The dashboard's pages under a real load: a release `ick-web` in front
//! of a release controller on Postgres, 100 projects and 10,000 builds,
//! and a logged-in person. Prints the time to answer (measured by the
//! client over loopback, so an upper bound of the server's) of the
//! projects page, a project's page and a build page whose log has 10,000
//! lines, and the dashboard's memory while 20 browsers follow a live log.
//! Targets: p50 under 30 ms for pages; flat memory.
//!
//!     cargo build --release --workspace --bins
//!     cargo bench -p ick-web --bench pages

use std::time::{Duration, Instant};

use ick_api::controller::BuildStatus;
use ick_tests::controller::{SimWorker, TestController};
use ick_tests::idp::{Storage, TestIdp};
use ick_tests::web::{TestWeb, WebBrowser};

const PROJECTS: usize = 100;
const BUILDS_EACH: usize = 100;
const LOG_LINES: usize = 10_000;
const ROUNDS: usize = 30;
const FOLLOWERS: usize = 20;
const PASSWORD: &str = "a bench password";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn time_page(browser: &mut WebBrowser, path: &str) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let page = browser.get(path).await;
        samples.push(started.elapsed());
        assert_eq!(
            page.status,
            reqwest::StatusCode::OK,
            "{path}: {}",
            page.body
        );
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.9))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn insert_builds(database_url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(database_url)
        .await
        .expect("the controller's database");
    let now = chrono::Utc::now().timestamp_millis();
    for p in 0..PROJECTS {
        let mut sql = String::from(
            "INSERT INTO builds (id, project, number, status, run, admitted, concurrency, \
             cancel_requested, parameters, triggered_by, created_at, started_at, ended_at) VALUES ",
        );
        for n in 1..=BUILDS_EACH {
            let at = now - ((BUILDS_EACH - n) as i64 * 60_000);
            let status = if n % 7 == 0 { "failed" } else { "succeeded" };
            if n > 1 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "('{}', 'proj-{p:03}', {n}, '{status}', 1, 1, 1, 0, '{{}}', 'bench', {}, {}, {})",
                uuid::Uuid::new_v4(),
                at - 2_000,
                at - 1_500,
                at
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("insert builds");
    }
}

#[tokio::main]
async fn main() {
    let idp = TestIdp::start();
    let controller = TestController::start(&idp, Storage::Postgres);
    let api = controller.client(&idp.admin_token().await);
    api.pipeline("p", "actions: [{shell: 'true'}]").await;
    for p in 0..PROJECTS {
        api.project(&format!("proj-{p:03}"), "pipelines: [p]").await;
    }
    api.project("logs", "pipelines: [p]").await;
    insert_builds(controller.database_url()).await;

    // A finished build with a long log, and one running.
    let worker = SimWorker::new(api.clone(), "bench-worker");
    let long = api.trigger("logs").await;
    let a = worker.claim_within(Duration::from_secs(30)).await;
    let lines: Vec<String> = (0..LOG_LINES)
        .map(|i| format!("line {i}: \u{1b}[32mok\u{1b}[0m some output of the build\n"))
        .collect();
    let mut sent = 0;
    for batch in lines.chunks(1_000) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        worker.output(&a, sent, &batch).await;
        sent += batch.len() as i64;
    }
    worker.finish(&a, 0, sent).await;
    let done = api.wait_build(&long.id, Duration::from_secs(30)).await;
    assert_eq!(done.build.status, BuildStatus::Succeeded);

    idp.create_user("bench", PASSWORD).await;
    let granted = api
        .request(reqwest::Method::PUT, "/roles")
        .json(&serde_json::json!({"member": "user:bench", "role": "admin"}))
        .send()
        .await
        .expect("grant");
    assert!(granted.status().is_success(), "{}", granted.status());
    let web = TestWeb::start(&idp, controller.url());
    let mut browser = WebBrowser::new(&web);
    let page = browser.log_in("/", "bench", PASSWORD).await;
    assert_eq!(page.status, reqwest::StatusCode::OK, "{}", page.body);

    println!(
        "pages: ick-web (release) before a controller on Postgres; {PROJECTS} projects, \
         {} builds; {ROUNDS} requests each, one at a time",
        PROJECTS * BUILDS_EACH
    );
    for (what, path) in [
        ("projects page", "/".to_string()),
        ("a project's page", "/projects/proj-042".to_string()),
        (
            "a build page (10,000-line log: its first 2,000 chunks)",
            format!("/builds/{}", long.id),
        ),
    ] {
        let (p50, p90) = time_page(&mut browser, &path).await;
        println!(
            "  {what}: p50 {:.1} ms, p90 {:.1} ms (target p50 < 30 ms)",
            p50.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3
        );
    }

    // 20 browsers follow a running build's log while it writes 10,000
    // lines: the dashboard passes the stream through, holding none of it.
    let running = api.trigger("logs").await;
    let a = worker.claim_within(Duration::from_secs(30)).await;
    let cookie = browser
        .cookies()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let pid = web.process.pid();
    let before = rss_kib(pid);
    let mut followers = Vec::new();
    for _ in 0..FOLLOWERS {
        let url = format!("{}/builds/{}/events", web.url(), running.id);
        let cookie = cookie.clone();
        followers.push(tokio::spawn(async move {
            use futures::StreamExt;
            let response = reqwest::Client::new()
                .get(url)
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .expect("follow");
            assert!(response.status().is_success(), "{}", response.status());
            let mut bytes = 0usize;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("stream");
                bytes += chunk.len();
                if chunk.windows(10).any(|w| w == b"event: end") {
                    break;
                }
            }
            bytes
        }));
    }
    let mut peak = before;
    let mut sent = 0;
    for batch in lines.chunks(500) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        worker.output(&a, sent, &batch).await;
        sent += batch.len() as i64;
        peak = peak.max(rss_kib(pid));
    }
    worker.finish(&a, 0, sent).await;
    let mut streamed = 0;
    for f in followers {
        streamed += f.await.expect("follower");
        peak = peak.max(rss_kib(pid));
    }
    let after = rss_kib(pid);
    println!(
        "  {FOLLOWERS} browsers following a live log of {LOG_LINES} lines ({:.1} MiB streamed to them): \
         ick-web RSS {:.1} MiB before, {:.1} MiB at peak, {:.1} MiB after (target: flat)",
        streamed as f64 / 1048576.0,
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        after as f64 / 1024.0
    );
}
