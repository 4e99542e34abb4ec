//! With Postgres away, the controller says so at once (503 with
//! `Retry-After`) instead of hanging, and serves again when it is back.

mod common;

use std::time::Duration;

use common::{Env, SOON, eventually};
use ick_tests::faults::{TcpProxy, postgres_addr, through};
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode, header};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_away_requests_fail_fast_with_503_and_recover() {
    let mut proxy = TcpProxy::start(postgres_addr());
    let env = Env::start_with(Storage::Postgres, |c| {
        let url = c["database_url"].as_str().expect("url").to_string();
        c["database_url"] = through(&proxy, &url).into();
        c["database_acquire_timeout"] = "2s".into();
    })
    .await;
    env.admin.pipeline("a", "actions: [{shell: 'true'}]").await;
    let http = reqwest::Client::new();
    let readyz = format!("{}/readyz", env.controller.url());
    assert_eq!(
        http.get(&readyz).send().await.expect("readyz").status(),
        StatusCode::OK
    );

    proxy.cut();
    let cut = std::time::Instant::now();
    // Old code hung here for the pool's 30 s; the client gives up sooner.
    let ready = http
        .get(&readyz)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("/readyz answers within 1 s while the database is away");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready_in = cut.elapsed();
    let asked = std::time::Instant::now();
    let response = env
        .admin
        .request(Method::GET, "/pipelines/a")
        .timeout(Duration::from_secs(6))
        .send()
        .await
        .expect("a request answers within the acquire timeout");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    eprintln!(
        "database away: /readyz 503 in {ready_in:?}, a request 503 in {:?} (acquire timeout 2 s)",
        asked.elapsed()
    );
    assert_eq!(
        response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or_default()),
        Some("5")
    );
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default()),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = response.json().await.expect("problem");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("database"),
        "{problem}"
    );

    proxy.restore();
    let restored = std::time::Instant::now();
    eventually(SOON, "the controller serving again", || async {
        let r = env
            .admin
            .request(Method::GET, "/pipelines/a")
            .send()
            .await
            .ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    eprintln!(
        "database back: serving again {:?} after",
        restored.elapsed()
    );
    assert_eq!(
        http.get(&readyz).send().await.expect("readyz").status(),
        StatusCode::OK
    );
}
