//! Token issuance over HTTP on loopback (tokens/s) against the release
//! `ick-idp` on Postgres, the refresh grant for people (refreshes/s, each
//! rotating its token in a transaction), and token checking in process (µs
//! per check, JWKS cached). Run with `cargo bench -p ick-idp`; prints its
//! figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_api::auth::{AuthConfig, TokenVerifier};
use ick_api::oauth::TokenResponse;
use ick_tests::TestIdp;
use ick_tests::browser::Browser;
use sha2::{Digest, Sha256};

const ISSUE_FOR: Duration = Duration::from_secs(5);
/// Connections (and, for refreshes, logins) at once; `ICK_BENCH_CONNECTIONS`.
fn connections() -> usize {
    std::env::var("ICK_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(8)
}
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
    for _ in 0..connections() {
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
        "issue: {count} tokens in {elapsed:.2} s over {} connections = {:.0} tokens/s (target >= 2000)",
        connections(),
        count as f64 / elapsed
    );

    refreshes(&idp).await;

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

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const PASSWORD: &str = "bench password";

/// Logs `user` in through the browser flow; answers the first tokens.
async fn log_in(idp: &TestIdp, client_id: &str, http: &reqwest::Client) -> TokenResponse {
    // 64 characters (RFC 7636 asks for 43 to 128).
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let url = format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={REDIRECT}\
         &scope=builds:read&state=s&code_challenge={challenge}&code_challenge_method=S256",
        idp.url()
    );
    let answer = Browser::new().log_in(&url, "bench", PASSWORD).await;
    let code = answer.redirect_param("code").expect("a code");
    let answer = http
        .post(idp.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("IDP answers")
        .text()
        .await
        .expect("an answer");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("no tokens ({e}): {answer}"))
}

/// Refresh grants per second: each connection its own login (family),
/// each refresh using the token the last one answered.
async fn refreshes(idp: &TestIdp) {
    idp.create_user("bench", PASSWORD).await;
    let web = idp.create_login_client("bench-web", &["builds:read"], &[REDIRECT], true);
    let http = reqwest::Client::new();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..connections() {
        firsts.push(log_in(idp, &web.id, &http).await);
    }
    let deadline = Instant::now() + ISSUE_FOR;
    let started = Instant::now();
    for first in firsts {
        let (http, url, client_id, done) =
            (http.clone(), idp.token_url(), web.id.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut token = first.refresh_token.expect("a refresh token");
            while Instant::now() < deadline {
                let next: TokenResponse = http
                    .post(&url)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", client_id.as_str()),
                        ("refresh_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .expect("IDP answers")
                    .json()
                    .await
                    .expect("refreshed");
                token = next.refresh_token.expect("rotated");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = done.load(Ordering::Relaxed);
    println!(
        "refresh: {count} refresh grants in {elapsed:.2} s over {} logins = {:.0} refreshes/s (target >= 2000)",
        connections(),
        count as f64 / elapsed
    );
}
