//! Token issuance over HTTP on loopback (tokens/s) against the release
//! `ick-idp` on Postgres, and token checking in process (µs per check,
//! JWKS cached). Run with `cargo bench -p ick-idp`; prints its figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ick_api::auth::{AuthConfig, TokenVerifier};
use ick_tests::TestIdp;

const ISSUE_FOR: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 8;
const TOKENS: u32 = 1_000;

#[tokio::main]
async fn main() {
    let idp = TestIdp::start();
    let client = idp.create_client("bench", &["builds:read", "work:run"]);

    // Warm up the connection pools.
    let warm = idp.token_source(&client, None);
    for _ in 0..50 {
        warm.fetch().await.expect("token");
    }

    let issued = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + ISSUE_FOR;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let source = idp.token_source(&client, None);
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                source.fetch().await.expect("token");
                issued.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = issued.load(Ordering::Relaxed);
    println!(
        "issue: {count} tokens in {elapsed:.2} s over {CONNECTIONS} connections = {:.0} tokens/s (target >= 2000)",
        count as f64 / elapsed
    );

    // Distinct tokens: the first check of each verifies its signature, the
    // second finds it among the verified tokens.
    let verifier = TokenVerifier::new(AuthConfig::new(idp.url()), ick_api::http::client());
    let mut tokens = Vec::new();
    for _ in 0..TOKENS {
        tokens.push(warm.fetch().await.expect("token").access_token);
    }
    verifier.ready().await.expect("keys");
    for (label, rounds) in [
        ("first check (signature verified)", 1),
        ("repeat check (cached)", 20),
    ] {
        let started = Instant::now();
        for _ in 0..rounds {
            for token in &tokens {
                verifier.verify(token).await.expect("valid");
            }
        }
        let checks = rounds * TOKENS;
        let per_check = started.elapsed().as_secs_f64() * 1e6 / f64::from(checks);
        println!(
            "check: {per_check:.1} µs per token, {label}, JWKS cached, {checks} checks (target < 100)"
        );
    }
}
