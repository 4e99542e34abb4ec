//! The device authorization grant (RFC 8628) against the real `ick-idp`:
//! the whole flow driven by an independent client (the `openidconnect`
//! crate's device flow, which polls as the RFC says) while a browser types
//! the code, logs in and approves; then every error answer, each attack on
//! its own, and a device code used twice.

use std::time::Duration;

use ick_tests::browser::{Answer, Browser};
use ick_tests::idp::Storage;
use ick_tests::oidc::http;
use ick_tests::{Credentials, TestIdp};
use openidconnect::core::{CoreClient, CoreDeviceAuthorizationResponse, CoreProviderMetadata};
use openidconnect::{
    ClientId, DeviceAuthorizationUrl, IssuerUrl, Nonce, OAuth2TokenResponse, Scope,
    TokenResponse as _,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The IDP (polling interval 1 s), user `alice` in group `devs`, and a
/// public client with the device grant.
async fn setup(storage: Storage) -> (TestIdp, Credentials) {
    let idp = TestIdp::start_with(storage, |c| {
        c["device"]["interval"] = "1s".into();
    });
    idp.create_user("alice", PASSWORD).await;
    let (status, _) = idp
        .admin_call(Method::POST, "/groups", Some(json!({"name": "devs"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = idp
        .admin_call(Method::PUT, "/groups/devs/members/alice", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let device = idp.create_device_client("icktool", &["projects:read builds:read"]);
    (idp, device)
}

async fn post(url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .form(form)
        .send()
        .await
        .expect("the IDP answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /device_authorization` for `client_id`.
async fn start(idp: &TestIdp, client_id: &str) -> (StatusCode, Value) {
    post(
        &format!("{}/device_authorization", idp.url()),
        &[("client_id", client_id)],
    )
    .await
}

/// One poll of the token endpoint with `device_code`.
async fn poll(idp: &TestIdp, client_id: &str, device_code: &str) -> (StatusCode, Value) {
    post(
        &idp.token_url(),
        &[
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", client_id),
        ],
    )
    .await
}

fn error_of(answer: &(StatusCode, Value)) -> &str {
    answer.1["error"].as_str().unwrap_or("")
}

fn assert_approved(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.contains("Device approved"), "{}", answer.body);
}

// ---- the whole flow, by a client library we did not write ----

async fn an_independent_client_logs_in_by_the_device_grant(storage: Storage) {
    let (idp, device) = setup(storage).await;
    let discovery: Value = reqwest::get(format!("{}/.well-known/openid-configuration", idp.url()))
        .await
        .expect("discovery")
        .json()
        .await
        .expect("JSON");
    let grants = discovery["grant_types_supported"]
        .as_array()
        .expect("grants");
    for grant in [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        DEVICE_GRANT,
    ] {
        assert!(grants.iter().any(|g| g == grant), "{grant}: {discovery}");
    }
    let endpoint = discovery["device_authorization_endpoint"]
        .as_str()
        .expect("device_authorization_endpoint")
        .to_string();
    assert_eq!(endpoint, format!("{}/device_authorization", idp.url()));

    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(idp.url().to_string()).expect("issuer URL"),
        &http,
    )
    .await
    .expect("discovery satisfies openidconnect");
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new(device.id.clone()), None)
            .set_device_authorization_url(DeviceAuthorizationUrl::new(endpoint).expect("URL"));
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("projects:read".into()))
        .request_async(&http)
        .await
        .expect("the device authorization response parses");
    let user_code = details.user_code().secret().clone();
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert_eq!(&user_code[4..5], "-", "{user_code}");
    let verification_uri = details.verification_uri().to_string();
    assert_eq!(verification_uri, format!("{}/device", idp.url()));
    assert!(
        details
            .verification_uri_complete()
            .is_some_and(|u| u.secret().ends_with(&format!("?user_code={user_code}"))),
        "verification_uri_complete"
    );

    // The library polls while the person approves in a browser.
    let polling = {
        let client = client.clone();
        let details = details.clone();
        tokio::spawn(async move {
            client
                .exchange_device_access_token(&details)
                .expect("a token endpoint")
                .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(60)))
                .await
        })
    };
    // Typed as a person might: lower case, no dash.
    let typed = user_code.replace('-', "").to_lowercase();
    let answer = Browser::new()
        .approve_device(&verification_uri, &typed, "alice", PASSWORD, true)
        .await;
    assert_approved(&answer);
    let tokens = polling
        .await
        .expect("the poller ends")
        .expect("the library gets tokens");
    assert!(tokens.refresh_token().is_some());
    let id_token = tokens.id_token().expect("an id_token for scope openid");
    let verified = id_token
        .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .expect("the ID token verifies: EdDSA signature, iss, aud, exp");
    assert_eq!(
        verified.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    let scopes: Vec<String> = tokens
        .scopes()
        .map(|s| s.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    assert!(scopes.contains(&"projects:read".to_string()), "{scopes:?}");

    // The refresh token works, once.
    let refresh = tokens.refresh_token().expect("refresh").secret().clone();
    let refreshed = post(
        &idp.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", device.id.as_str()),
        ],
    )
    .await;
    assert_eq!(refreshed.0, StatusCode::OK, "{}", refreshed.1);
    let next = refreshed.1["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();

    // The device code is single use: a second use is refused and revokes
    // the login it made.
    let again = poll(&idp, &device.id, details.device_code().secret()).await;
    assert_eq!(again.0, StatusCode::BAD_REQUEST, "{}", again.1);
    assert_eq!(error_of(&again), "invalid_grant", "{}", again.1);
    let after = post(
        &idp.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", next.as_str()),
            ("client_id", device.id.as_str()),
        ],
    )
    .await;
    assert_eq!(error_of(&after), "invalid_grant", "{}", after.1);
    assert!(
        after.1["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("revoked")),
        "{}",
        after.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_client_logs_in_by_the_device_grant_on_postgres() {
    an_independent_client_logs_in_by_the_device_grant(Storage::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_client_logs_in_by_the_device_grant_on_sqlite() {
    an_independent_client_logs_in_by_the_device_grant(Storage::Sqlite).await;
}

// ---- each error answer, each attack ----

async fn each_error_is_answered_as_rfc_8628_says(storage: Storage) {
    let (idp, device) = setup(storage).await;
    let started = start(&idp, &device.id).await;
    assert_eq!(started.0, StatusCode::OK, "{}", started.1);
    assert_eq!(started.1["interval"], 1);
    assert_eq!(started.1["expires_in"], 600);
    let code = started.1["device_code"]
        .as_str()
        .expect("device_code")
        .to_string();
    let user_code = started.1["user_code"]
        .as_str()
        .expect("user_code")
        .to_string();
    let uri = started.1["verification_uri"]
        .as_str()
        .expect("uri")
        .to_string();

    // Nobody has approved yet; polling faster than the interval slows the
    // device down, 5 s more each time: a poll 1.5 s later, after the
    // old interval, is still too soon.
    let pending = poll(&idp, &device.id, &code).await;
    assert_eq!(error_of(&pending), "authorization_pending", "{}", pending.1);
    let fast = poll(&idp, &device.id, &code).await;
    assert_eq!(fast.0, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&fast), "slow_down", "{}", fast.1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = poll(&idp, &device.id, &code).await;
    assert_eq!(
        error_of(&still),
        "slow_down",
        "the interval grew: {}",
        still.1
    );

    // A device code another client holds, or none at all.
    let (status, other) = start(&idp, &idp.admin.id).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a confidential client without its secret: {other}"
    );
    let web = idp.create_login_client("web", &["projects:read"], &["http://127.0.0.1:9/cb"], true);
    let refused = start(&idp, &web.id).await;
    assert_eq!(error_of(&refused), "unauthorized_client", "{}", refused.1);
    let stolen = poll(&idp, &web.id, &code).await;
    assert_eq!(error_of(&stolen), "unauthorized_client", "{}", stolen.1);
    let unknown = poll(&idp, &device.id, "no-such-code").await;
    assert_eq!(error_of(&unknown), "invalid_grant", "{}", unknown.1);

    // A wrong user code changes nothing: the right one still works after.
    let mut browser = Browser::new();
    let page = browser.login_page(&uri).await;
    let wrong = browser.submit(&page, &[("user_code", "BBBB-BBBB")]).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert!(wrong.body.contains("not right"), "{}", wrong.body);
    assert!(
        !wrong.body.contains("name=\"password\""),
        "no login form: {}",
        wrong.body
    );

    // The login form needs its browser's cookie, and the right password.
    let login = browser.submit(&page, &[("user_code", &user_code)]).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let form = Browser::form_of(&login, &uri);
    let csrf = form.csrf.clone().expect("csrf");
    let mut stranger = Browser::new();
    let foreign = stranger
        .submit(
            &form,
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST, "{}", foreign.body);
    let bad = browser
        .submit(
            &form,
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", "wrong one"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{}", bad.body);
    assert!(!bad.body.contains("Approve"), "{}", bad.body);

    // Denied: the device is told so.
    let denied = browser
        .approve_device(&uri, &user_code, "alice", PASSWORD, false)
        .await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.body);
    assert!(denied.body.contains("Device denied"), "{}", denied.body);
    let started = start(&idp, &device.id).await;
    let fresh = started.1["device_code"]
        .as_str()
        .expect("device_code")
        .to_string();
    let fresh_user = started.1["user_code"]
        .as_str()
        .expect("user_code")
        .to_string();
    // A denied code's user code no longer opens a login.
    let mut later = Browser::new();
    let page = later.login_page(&uri).await;
    let gone = later.submit(&page, &[("user_code", &user_code)]).await;
    assert_eq!(gone.status, StatusCode::BAD_REQUEST, "{}", gone.body);

    // The fresh code, denied, answers access_denied at its first poll.
    let denied = Browser::new()
        .approve_device(&uri, &fresh_user, "alice", PASSWORD, false)
        .await;
    assert!(denied.body.contains("Device denied"), "{}", denied.body);
    let told = poll(&idp, &device.id, &fresh).await;
    assert_eq!(error_of(&told), "access_denied", "{}", told.1);

    // Guessing user codes is limited per address.
    let mut guesser = Browser::new();
    let page = guesser.login_page(&uri).await;
    let mut last = None;
    for _ in 0..11 {
        last = Some(guesser.submit(&page, &[("user_code", "CCCC-CCCC")]).await);
    }
    let last = last.expect("guessed");
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS, "{}", last.body);
    assert!(last.retry_after.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_is_answered_as_rfc_8628_says_on_postgres() {
    each_error_is_answered_as_rfc_8628_says(Storage::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_is_answered_as_rfc_8628_says_on_sqlite() {
    each_error_is_answered_as_rfc_8628_says(Storage::Sqlite).await;
}
