//! `POST /token` against the real `ick-idp` binary, on Postgres and SQLite.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_tests::idp::Storage;
use ick_tests::{Credentials, TestIdp};
use reqwest::StatusCode;
use serde_json::Value;

/// Posts a form to /token, optionally with Basic auth and from a chosen
/// loopback source address; returns status, headers and the JSON body.
async fn post_token(
    idp: &TestIdp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    from: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut client = reqwest::Client::builder();
    if let Some(ip) = from {
        client = client.local_address(ip.parse::<IpAddr>().expect("ip"));
    }
    let mut request = client
        .build()
        .expect("client")
        .post(idp.token_url())
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("IDP answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn claims_of(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || -> Value {
        let part = parts.next().expect("three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    };
    let header = decode();
    (header, decode())
}

fn assert_oauth_error(
    got: &(StatusCode, reqwest::header::HeaderMap, Value),
    status: StatusCode,
    error: &str,
) {
    assert_eq!(got.0, status, "{:?}", got.2);
    assert_eq!(got.2["error"], error, "{:?}", got.2);
    assert!(got.2["error_description"].is_string());
    assert_eq!(got.1["cache-control"], "no-store");
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(got.1["www-authenticate"], "Basic realm=\"ick\"");
    }
}

async fn token_by_basic_auth_is_an_rfc_9068_jwt(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let c = idp.create_client("runner", &["work:run", "blobs:read"]);
    let (status, headers, body) = post_token(
        &idp,
        Some((&c.id, &c.secret)),
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "work:run blobs:read");
    let (header, claims) = claims_of(body["access_token"].as_str().expect("token"));
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", idp.url()))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(claims["iss"], idp.url());
    assert_eq!(claims["sub"], c.id.as_str());
    assert_eq!(claims["client_id"], c.id.as_str());
    assert_eq!(claims["aud"], "ick");
    assert_eq!(claims["scope"], "work:run blobs:read");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        900
    );
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

async fn token_by_form_fields(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let c = idp.create_client("runner", &["builds:read"]);
    let (status, _, body) = post_token(
        &idp,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &c.id),
            ("client_secret", &c.secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "builds:read");
}

async fn wrong_secret_unknown_client_and_disabled_client_are_invalid_client(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let c = idp.create_client("runner", &["builds:read"]);
    let grant = [("grant_type", "client_credentials")];
    let wrong = post_token(&idp, Some((&c.id, "not-the-secret")), &grant, None).await;
    assert_oauth_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_client");
    let unknown = post_token(&idp, Some(("no-such-client", &c.secret)), &grant, None).await;
    assert_oauth_error(&unknown, StatusCode::UNAUTHORIZED, "invalid_client");
    let none = post_token(&idp, None, &grant, None).await;
    assert_oauth_error(&none, StatusCode::UNAUTHORIZED, "invalid_client");

    let admin = idp.admin_token().await;
    let http = reqwest::Client::new();
    let disabled = http
        .patch(format!("{}/clients/{}", idp.url(), c.id))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"enabled": false}))
        .send()
        .await
        .expect("patch");
    assert_eq!(disabled.status(), StatusCode::OK);
    let refused = post_token(&idp, Some((&c.id, &c.secret)), &grant, None).await;
    assert_oauth_error(&refused, StatusCode::UNAUTHORIZED, "invalid_client");

    let enabled = http
        .patch(format!("{}/clients/{}", idp.url(), c.id))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"enabled": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(enabled.status(), StatusCode::OK);
    let (status, _, _) = post_token(&idp, Some((&c.id, &c.secret)), &grant, None).await;
    assert_eq!(status, StatusCode::OK);

    let deleted = http
        .delete(format!("{}/clients/{}", idp.url(), c.id))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = post_token(&idp, Some((&c.id, &c.secret)), &grant, None).await;
    assert_oauth_error(&gone, StatusCode::UNAUTHORIZED, "invalid_client");
}

async fn a_subset_of_scopes_is_granted_and_more_is_invalid_scope(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let c = idp.create_client("runner", &["builds:read", "builds:trigger"]);
    let auth = Some((c.id.as_str(), c.secret.as_str()));
    let (status, _, body) = post_token(
        &idp,
        auth,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "builds:read"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], "builds:read");
    let (_, claims) = claims_of(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["scope"], "builds:read");

    let more = post_token(
        &idp,
        auth,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "builds:read idp:admin"),
        ],
        None,
    )
    .await;
    assert_oauth_error(&more, StatusCode::BAD_REQUEST, "invalid_scope");
    let unknown = post_token(
        &idp,
        auth,
        &[("grant_type", "client_credentials"), ("scope", "root")],
        None,
    )
    .await;
    assert_oauth_error(&unknown, StatusCode::BAD_REQUEST, "invalid_scope");
}

async fn wrong_grant_type_and_malformed_requests_are_refused(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let c = idp.create_client("runner", &["builds:read"]);
    let auth = Some((c.id.as_str(), c.secret.as_str()));
    let password = post_token(&idp, auth, &[("grant_type", "password")], None).await;
    assert_oauth_error(&password, StatusCode::BAD_REQUEST, "unsupported_grant_type");
    let missing = post_token(&idp, auth, &[("scope", "builds:read")], None).await;
    assert_oauth_error(&missing, StatusCode::BAD_REQUEST, "invalid_request");
    let twice = post_token(
        &idp,
        auth,
        &[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ],
        None,
    )
    .await;
    assert_oauth_error(&twice, StatusCode::BAD_REQUEST, "invalid_request");
    let both_methods = post_token(
        &idp,
        auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", &c.secret),
        ],
        None,
    )
    .await;
    assert_oauth_error(&both_methods, StatusCode::BAD_REQUEST, "invalid_request");

    let json = reqwest::Client::new()
        .post(idp.token_url())
        .basic_auth(&c.id, Some(&c.secret))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(json.status(), StatusCode::BAD_REQUEST);
    let body: Value = json.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");

    let garbage_basic = reqwest::Client::new()
        .post(idp.token_url())
        .header("authorization", "Basic !!!not-base64")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answers");
    assert_eq!(garbage_basic.status(), StatusCode::UNAUTHORIZED);
}

async fn failed_authentications_are_rate_limited_per_client_and_per_peer(storage: Storage) {
    let idp = TestIdp::start_with(storage, |config| {
        config["auth_failures"]["max_failures"] = 3.into();
        config["auth_failures"]["max_failures_per_peer"] = 5.into();
    });
    let a = idp.create_client("a", &["builds:read"]);
    let b = idp.create_client("b", &["builds:read"]);
    let grant = [("grant_type", "client_credentials")];

    // Per client: A's failures from one address block A from any address.
    for _ in 0..3 {
        let r = post_token(&idp, Some((&a.id, "wrong")), &grant, Some("127.0.0.2")).await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    }
    let blocked = post_token(&idp, Some((&a.id, &a.secret)), &grant, Some("127.0.0.3")).await;
    assert_eq!(blocked.0, StatusCode::TOO_MANY_REQUESTS, "{:?}", blocked.2);
    let retry_after: u64 = blocked.1["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after));
    assert!(blocked.2.get("access_token").is_none());
    // ...while B still gets tokens, even from the address A failed from:
    // one misconfigured client does not lock out its neighbours.
    for peer in ["127.0.0.3", "127.0.0.2"] {
        let fine = post_token(&idp, Some((&b.id, &b.secret)), &grant, Some(peer)).await;
        assert_eq!(fine.0, StatusCode::OK, "from {peer}");
    }

    // Per peer: failures for many client ids from one address block it.
    for i in 0..5 {
        let id = format!("nobody-{i}");
        let r = post_token(&idp, Some((&id, "wrong")), &grant, Some("127.0.0.4")).await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    }
    let peer_blocked = post_token(&idp, Some((&b.id, &b.secret)), &grant, Some("127.0.0.4")).await;
    assert_eq!(peer_blocked.0, StatusCode::TOO_MANY_REQUESTS);
    let elsewhere = post_token(&idp, Some((&b.id, &b.secret)), &grant, Some("127.0.0.5")).await;
    assert_eq!(elsewhere.0, StatusCode::OK);
}

async fn a_stranger_failing_with_a_client_s_id_does_not_lock_it_out(storage: Storage) {
    let idp = TestIdp::start_with(storage, |config| {
        config["auth_failures"]["max_failures"] = 3.into();
    });
    let worker = idp.create_client("worker", &["builds:read"]);
    let grant = [("grant_type", "client_credentials")];
    let first = post_token(
        &idp,
        Some((&worker.id, &worker.secret)),
        &grant,
        Some("127.0.0.1"),
    )
    .await;
    assert_eq!(first.0, StatusCode::OK);
    // The stranger fails 50 times with the worker's id: it gets limited...
    let mut limited = false;
    for _ in 0..50 {
        let r = post_token(&idp, Some((&worker.id, "guess")), &grant, Some("127.0.0.2")).await;
        limited |= r.0 == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the stranger is limited");
    let stranger = post_token(
        &idp,
        Some((&worker.id, &worker.secret)),
        &grant,
        Some("127.0.0.2"),
    )
    .await;
    assert_eq!(stranger.0, StatusCode::TOO_MANY_REQUESTS);
    assert!(stranger.1.contains_key("retry-after"));
    // ...while the worker, from the address it used before, still gets tokens.
    let worker_again = post_token(
        &idp,
        Some((&worker.id, &worker.secret)),
        &grant,
        Some("127.0.0.1"),
    )
    .await;
    assert_eq!(worker_again.0, StatusCode::OK, "{:?}", worker_again.2);
}

async fn a_rotated_secret_replaces_the_old_one(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    let c = idp.create_client("runner", &["builds:read"]);
    let admin = idp.admin_token().await;
    let rotated: Value = reqwest::Client::new()
        .post(format!("{}/clients/{}/rotate-secret", idp.url(), c.id))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("json");
    let new = Credentials {
        id: c.id.clone(),
        secret: rotated["client_secret"]
            .as_str()
            .expect("secret")
            .to_string(),
    };
    assert_ne!(new.secret, c.secret);
    let grant = [("grant_type", "client_credentials")];
    let old = post_token(&idp, Some((&c.id, &c.secret)), &grant, None).await;
    assert_oauth_error(&old, StatusCode::UNAUTHORIZED, "invalid_client");
    let (status, _, _) = post_token(&idp, Some((&new.id, &new.secret)), &grant, None).await;
    assert_eq!(status, StatusCode::OK);
}

macro_rules! on_both_storages {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Storage::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Storage::Sqlite).await })*
        }
    };
}

on_both_storages!(
    token_by_basic_auth_is_an_rfc_9068_jwt,
    token_by_form_fields,
    wrong_secret_unknown_client_and_disabled_client_are_invalid_client,
    a_subset_of_scopes_is_granted_and_more_is_invalid_scope,
    wrong_grant_type_and_malformed_requests_are_refused,
    failed_authentications_are_rate_limited_per_client_and_per_peer,
    a_stranger_failing_with_a_client_s_id_does_not_lock_it_out,
    a_rotated_secret_replaces_the_old_one,
);
