//! The IDP as a service: health, discovery, keys on disk, TLS, logs,
//! graceful stop, bad configuration.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ick_tests::{ServiceProcess, TestIdp, bin_path};
use reqwest::StatusCode;
use serde_json::Value;

async fn get(url: &str) -> (StatusCode, Value) {
    let response = reqwest::get(url).await.expect("answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let idp = TestIdp::start();
    let (status, body) = get(&format!("{}/healthz", idp.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["service"], "ick-idp");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let (status, body) = get(&format!("{}/readyz", idp.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn discovery_and_jwks_describe_the_issuer_and_its_ed25519_key() {
    let idp = TestIdp::start();
    let (status, doc) = get(&format!("{}/.well-known/openid-configuration", idp.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["issuer"], idp.url());
    assert_eq!(doc["token_endpoint"], format!("{}/token", idp.url()));
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code"
        ])
    );
    assert_eq!(
        doc["device_authorization_endpoint"],
        format!("{}/device_authorization", idp.url())
    );
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    let scopes = doc["scopes_supported"].as_array().expect("scopes");
    assert_eq!(
        scopes.len(),
        ick_api::Scope::ALL.len() + 1,
        "openid and every Ick scope"
    );
    assert!(scopes.contains(&Value::from("metrics:read")));
    assert!(scopes.contains(&Value::from("openid")));
    assert!(scopes.contains(&Value::from("work:run")));

    let (status, jwks) = get(doc["jwks_uri"].as_str().expect("jwks_uri")).await;
    assert_eq!(status, StatusCode::OK);
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(
        key["x"].as_str().expect("x").len(),
        43,
        "32 bytes, base64url"
    );
    assert!(key.get("d").is_none(), "never the private part");
}

#[tokio::test]
async fn the_first_start_writes_a_private_signing_key() {
    let idp = TestIdp::start();
    let keys = idp.dir.path().join("data/keys");
    let files: Vec<_> = std::fs::read_dir(&keys).expect("keys dir").collect();
    assert_eq!(files.len(), 1);
    let file = files
        .into_iter()
        .next()
        .expect("one")
        .expect("entry")
        .path();
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&keys).expect("meta").permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    assert!(
        std::fs::read_to_string(&file)
            .expect("pem")
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
}

#[tokio::test]
async fn a_restart_keeps_keys_and_clients() {
    let mut idp = TestIdp::start();
    let c = idp.create_client("keeper", &["builds:read"]);
    let before = idp.token(&c, None).await;
    idp.restart();
    let after = idp
        .token_source(&c, None)
        .fetch()
        .await
        .expect("same secret works");
    let kid = |t: &str| jsonwebtoken::decode_header(t).expect("header").kid;
    assert_eq!(kid(&before), kid(&after.access_token));
}

#[tokio::test]
async fn errors_are_problem_json_even_for_unknown_paths_and_methods() {
    let idp = TestIdp::start();
    let http = reqwest::Client::new();
    for (method, path, status) in [
        (
            reqwest::Method::GET,
            "/no/such/thing",
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::DELETE,
            "/token",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let response = http
            .request(method, format!("{}{path}", idp.url()))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], status.as_u16());
    }
    // Bodies over http.body_limit (64 KiB in the example config) are 413.
    let huge = "a".repeat(200 * 1024);
    let response = http
        .post(format!("{}/token", idp.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&pad={huge}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn sigterm_stops_the_idp_cleanly() {
    let mut idp = TestIdp::start();
    let status = idp
        .process
        .terminate(Duration::from_secs(10))
        .expect("exits in time");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let idp = TestIdp::start();
    let log = idp.dir.path().join("json.log");
    let second = ServiceProcess::start(
        &bin_path("ick-idp"),
        [
            "--config".as_ref(),
            idp.config.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ],
        &[],
        log.clone(),
    );
    let bad = reqwest::Client::new()
        .post(format!("{}/token", second.url))
        .basic_auth("someone", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let text = ick_tests::eventually(Duration::from_secs(5), "the failure logged", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("client authentication failed")
            .then_some(text)
    })
    .await;
    let mut objects = 0;
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        objects += 1;
    }
    assert!(objects >= 2, "{text}");
    assert!(
        !text.contains("wrong"),
        "the presented secret must not be logged"
    );
}

#[tokio::test]
async fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("key");
    let (c, k) = (cert_path.clone(), key_path.clone());
    let idp = TestIdp::start_with(ick_tests::idp::Storage::Sqlite, move |config| {
        config["http"]["tls"]["cert"] = c.to_string_lossy().as_ref().into();
        config["http"]["tls"]["key"] = k.to_string_lossy().as_ref().into();
    });
    assert!(idp.url().starts_with("https://"), "{}", idp.url());
    let port = idp.process.addr.port();
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("pem");
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client");
    let doc: Value = client
        .get(format!(
            "https://localhost:{port}/.well-known/openid-configuration"
        ))
        .send()
        .await
        .expect("https answers")
        .json()
        .await
        .expect("json");
    assert!(
        doc["issuer"]
            .as_str()
            .expect("issuer")
            .starts_with("https://")
    );
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || !plain.expect("response").status().is_success());
}

#[test]
fn a_config_with_an_unknown_key_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("idp.yaml");
    std::fs::write(
        &path,
        format!(
            "http:\n  listen: 127.0.0.1:0\ndata_dir: {}\ntoken_lifetim: 5m\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(bin_path("ick-idp"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("idp.yaml:4:"), "{stderr}");
    assert!(stderr.contains("token_lifetim"), "{stderr}");
}

#[tokio::test]
async fn with_the_database_away_token_requests_fail_fast_with_503() {
    use ick_tests::faults::{TcpProxy, postgres_addr, through};
    let mut proxy = TcpProxy::start(postgres_addr());
    let idp = TestIdp::start_with(ick_tests::idp::Storage::Postgres, |c| {
        let url = c["database_url"].as_str().expect("url").to_string();
        c["database_url"] = through(&proxy, &url).into();
        c["database_acquire_timeout"] = "2s".into();
    });
    let creds = idp.create_client("away", &["builds:read"]);
    idp.token(&creds, None).await;

    proxy.cut();
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", idp.url()))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("/readyz answers within 1 s while the database is away");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = http
        .post(idp.token_url())
        .basic_auth(&creds.id, Some(&creds.secret))
        .form(&[("grant_type", "client_credentials")])
        .timeout(Duration::from_secs(6))
        .send()
        .await
        .expect("the token endpoint answers within the acquire timeout");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or_default()),
        Some("5")
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "temporarily_unavailable");

    proxy.restore();
    ick_tests::eventually(Duration::from_secs(20), "tokens again", || async {
        let r = http
            .post(idp.token_url())
            .basic_auth(&creds.id, Some(&creds.secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
}
