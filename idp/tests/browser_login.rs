//! People logging in through the browser, against the real `ick-idp`: the
//! authorization-code grant with PKCE driven by an independent OpenID
//! Connect client (the `openidconnect` crate) that reads our discovery
//! document and checks the ID token's EdDSA signature with our JWKS; then
//! the attacks, each on its own; then refresh tokens and their revocation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_tests::browser::{Answer, Browser};
use ick_tests::idp::Storage;
use ick_tests::oidc::http;
use ick_tests::{Credentials, TestIdp};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const PASSWORD: &str = "correct horse battery";

async fn provider(idp: &TestIdp) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(
        IssuerUrl::new(idp.url().to_string()).expect("issuer URL"),
        &http,
    )
    .await
    .expect("the discovery document and JWKS satisfy openidconnect")
}

/// The IDP, a user `alice` in group `devs`, and a public client.
async fn setup(storage: Storage) -> (TestIdp, Credentials) {
    let idp = TestIdp::start_with(storage, |_| {});
    idp.create_user("alice", PASSWORD).await;
    let (status, _) = idp
        .admin_call(Method::POST, "/groups", Some(json!({"name": "devs"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = idp
        .admin_call(Method::PUT, "/groups/devs/members/alice", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let client = idp.create_login_client(
        "web",
        &["projects:read builds:read builds:trigger"],
        &[REDIRECT],
        true,
    );
    (idp, client)
}

/// An authorization request URL as a client builds it, with PKCE S256.
struct Request {
    url: String,
    state: String,
    verifier: String,
}

fn challenge(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn request(idp: &TestIdp, client: &Credentials, edit: &[(&str, Option<&str>)]) -> Request {
    let verifier = format!("v{}", "x".repeat(50)) + &uuid_like();
    let state = uuid_like();
    let challenge = challenge(&verifier);
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client.id.as_str()),
        ("redirect_uri", REDIRECT),
        ("scope", "openid projects:read builds:read"),
        ("state", state.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("nonce", "n-0S6_WzA2Mj"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (key, value) in edit {
        params.retain(|(k, _)| k != key);
        if let Some(v) = value {
            params.push((key.to_string(), v.to_string()));
        }
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    Request {
        url: format!("{}/authorize?{query}", idp.url()),
        state,
        verifier,
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}{n:x}")
}

async fn post_token(idp: &TestIdp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(idp.token_url())
        .form(form)
        .send()
        .await
        .expect("IDP answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Logs `user` in and exchanges the code: the token response.
async fn login_tokens(idp: &TestIdp, client: &Credentials, user: &str) -> Value {
    let req = request(idp, client, &[]);
    let answer = Browser::new().log_in(&req.url, user, PASSWORD).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let code = answer.redirect_param("code").expect("a code");
    let (status, body) = exchange(idp, client, &code, &req.verifier, REDIRECT).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn exchange(
    idp: &TestIdp,
    client: &Credentials,
    code: &str,
    verifier: &str,
    redirect: &str,
) -> (StatusCode, Value) {
    post_token(
        idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client.id),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(idp: &TestIdp, client: &Credentials, token: &str) -> (StatusCode, Value) {
    post_token(
        idp,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client.id),
            ("refresh_token", token),
        ],
    )
    .await
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn assert_invalid_grant(got: &(StatusCode, Value)) {
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert_eq!(got.1["error"], "invalid_grant", "{}", got.1);
}

fn assert_no_code(answer: &Answer) {
    let code = answer
        .location
        .as_ref()
        .map(|_| answer.redirect_param("code"));
    assert!(
        code.flatten().is_none(),
        "no code may be issued: {answer:?}"
    );
}

// ---- the whole flow, by a client library we did not write ----

async fn an_independent_oidc_client_logs_in_with_pkce_and_verifies_the_id_token(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let metadata = provider(&idp).await;
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new(web.id.clone()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_string()).expect("redirect URL"));
    let (pkce, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("projects:read".into()))
        .add_scope(Scope::new("builds:read".into()))
        .add_scope(Scope::new("idp:admin".into()))
        .set_pkce_challenge(pkce)
        .url();

    let answer = Browser::new().log_in(url.as_str(), "alice", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.location.clone().expect("a redirect");
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(
        answer.redirect_param("state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(answer.redirect_param("iss").as_deref(), Some(idp.url()));
    let code = answer.redirect_param("code").expect("a code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("a token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code is exchanged");
    let id_token = tokens.id_token().expect("an id_token for scope openid");
    let verified = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("the ID token verifies: EdDSA signature, iss, aud, exp, nonce");
    assert_eq!(
        verified.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    assert_eq!(
        verified.email().map(|e| e.as_str()),
        Some("alice@example.org")
    );
    assert_eq!(
        verified
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str()),
        Some("alice (test)")
    );
    let id_claims = claims(&id_token.to_string());
    assert_eq!(id_claims["groups"], json!(["devs"]));
    assert_eq!(id_claims["aud"], web.id.as_str());

    // The access token names the person, within what the client may ask.
    let access = claims(tokens.access_token().secret());
    let user_id = verified.subject().as_str().to_string();
    assert_eq!(access["sub"], user_id.as_str());
    assert_eq!(access["client_id"], web.id.as_str());
    assert_eq!(
        access["ick_user"],
        json!({"name": "alice", "groups": ["devs"]})
    );
    assert_eq!(access["scope"], "openid projects:read builds:read");
    let checker = ick_api::auth::TokenVerifier::new(
        ick_api::auth::AuthConfig::new(idp.url()),
        ick_api::http::client(),
    );
    let caller = checker
        .verify(tokens.access_token().secret())
        .await
        .expect("services accept it");
    assert_eq!(caller.user.map(|u| u.name).as_deref(), Some("alice"));

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("a userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo answers");
    assert_eq!(info.subject().as_str(), user_id);
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));

    let first_refresh = tokens.refresh_token().expect("a refresh token").clone();
    let refreshed = client
        .exchange_refresh_token(&first_refresh)
        .expect("a token endpoint")
        .request_async(&http)
        .await
        .expect("the refresh token works");
    let second = refreshed.refresh_token().expect("a new refresh token");
    assert_ne!(second.secret(), first_refresh.secret(), "it rotates");
    assert_eq!(
        claims(refreshed.access_token().secret())["ick_user"]["name"],
        "alice"
    );
}

async fn a_confidential_client_logs_in_with_its_secret(storage: Storage) {
    let idp = TestIdp::start_with(storage, |_| {});
    idp.create_user("bob", PASSWORD).await;
    let web = idp.create_login_client("ci-web", &["builds:read"], &[REDIRECT], false);
    assert!(!web.secret.is_empty());
    let client = CoreClient::from_provider_metadata(
        provider(&idp).await,
        ClientId::new(web.id.clone()),
        Some(ClientSecret::new(web.secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_string()).expect("redirect URL"));
    let (pkce, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("builds:read".into()))
        .set_pkce_challenge(pkce)
        .url();
    let answer = Browser::new().log_in(url.as_str(), "bob", PASSWORD).await;
    let code = answer.redirect_param("code").expect("a code");

    // Without its secret, a confidential client's code is not exchanged.
    let (status, body) = post_token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &web.id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.secret()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("a token endpoint")
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.secret().clone()))
        .request_async(&http)
        .await
        .expect("exchanged with the secret");
    let verified = tokens
        .id_token()
        .expect("an id_token")
        .claims(&client.id_token_verifier(), &nonce)
        .expect("verifies");
    assert_eq!(
        verified.preferred_username().map(|u| u.as_str()),
        Some("bob")
    );
    assert_eq!(
        claims(tokens.access_token().secret())["scope"],
        "openid builds:read"
    );
}

// ---- the login form ----

async fn wrong_password_unknown_user_and_disabled_user_get_the_same_answer(storage: Storage) {
    let (idp, web) = setup(storage).await;
    idp.create_user("carol", PASSWORD).await;
    let (status, _) = idp
        .admin_call(
            Method::PATCH,
            "/users/carol",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut answers = Vec::new();
    for (user, password) in [
        ("alice", "not her password"),
        ("mallory", PASSWORD),
        ("carol", PASSWORD),
        ("Not A Name!", PASSWORD),
    ] {
        let req = request(&idp, &web, &[]);
        let answer = Browser::new().log_in(&req.url, user, password).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{user}: {}",
            answer.body
        );
        assert_no_code(&answer);
        assert!(
            answer
                .body
                .contains("The username or password is not right"),
            "{}",
            answer.body
        );
        // The page is the same but for the name typed back into the form
        // and the form's own token.
        let generic = answer
            .body
            .replace(&ick_tests_escape(user), "USER")
            .split("name=\"csrf\" value=\"")
            .map(|part| {
                part.split_once('"')
                    .map_or(part, |(_, rest)| rest)
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("");
        answers.push(generic);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "the answers differ: {answers:#?}"
    );
    // And the right password still works.
    let req = request(&idp, &web, &[]);
    let answer = Browser::new().log_in(&req.url, "alice", PASSWORD).await;
    assert!(answer.redirect_param("code").is_some());
}

fn ick_tests_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn a_login_without_or_with_a_wrong_csrf_token_is_refused(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let req = request(&idp, &web, &[]);
    let mut browser = Browser::new();
    let page = browser.login_page(&req.url).await;
    let csrf = page.csrf.clone().expect("a csrf field");
    for fields in [
        vec![("username", "alice"), ("password", PASSWORD)],
        vec![
            ("csrf", "forged-token-forged-token-forged-token-abc"),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
        vec![("csrf", ""), ("username", "alice"), ("password", PASSWORD)],
    ] {
        let answer = browser.submit(&page, &fields).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{fields:?}: {}",
            answer.body
        );
        assert_no_code(&answer);
        assert!(
            answer
                .body
                .contains("expired or was not issued to this browser")
        );
    }
    // The right token from another browser (no cookie, or its own) fails too.
    let mut other = Browser::new();
    let answer = other
        .submit(
            &page,
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_no_code(&answer);
    other.login_page(&request(&idp, &web, &[]).url).await;
    let answer = other
        .submit(
            &page,
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    // The form still works for its own browser, once.
    let fields = [
        ("csrf", csrf.as_str()),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let answer = browser.submit(&page, &fields).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let again = browser.submit(&page, &fields).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "a form is used once");
}

async fn failed_logins_are_rate_limited(storage: Storage) {
    let idp = TestIdp::start_with(storage, |config| {
        config["auth_failures"] =
            serde_yaml::from_str("{max_failures: 3, max_failures_per_peer: 3, window: 1m}")
                .expect("yaml");
    });
    idp.create_user("alice", PASSWORD).await;
    let web = idp.create_login_client("web", &["builds:read"], &[REDIRECT], true);
    for _ in 0..3 {
        let answer = Browser::new()
            .log_in(&request(&idp, &web, &[]).url, "alice", "wrong password")
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused until the window ends.
    let answer = Browser::new()
        .log_in(&request(&idp, &web, &[]).url, "alice", PASSWORD)
        .await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_no_code(&answer);
    assert!(answer.retry_after.is_some());
    assert!(answer.body.contains("Too many failed logins"));
}

// ---- the authorization request ----

async fn the_plain_pkce_method_and_a_missing_challenge_are_refused(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let verifier = "a".repeat(43);
    for edit in [
        vec![
            ("code_challenge_method", Some("plain")),
            ("code_challenge", Some(verifier.as_str())),
        ],
        vec![("code_challenge_method", None)],
        vec![("code_challenge", None)],
    ] {
        let req = request(&idp, &web, &edit);
        let answer = Browser::new().open(&req.url).await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{edit:?}: {}",
            answer.body
        );
        assert_eq!(
            answer.redirect_param("error").as_deref(),
            Some("invalid_request"),
            "{edit:?}"
        );
        assert_eq!(
            answer.redirect_param("state").as_deref(),
            Some(req.state.as_str())
        );
        assert!(!answer.body.contains("password"), "no login form");
    }
}

async fn a_request_without_state_is_refused(storage: Storage) {
    let (idp, web) = setup(storage).await;
    for state in [None, Some("")] {
        let req = request(&idp, &web, &[("state", state)]);
        let answer = Browser::new().open(&req.url).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(
            answer.redirect_param("error").as_deref(),
            Some("invalid_request")
        );
        assert!(
            answer
                .redirect_param("error_description")
                .is_some_and(|d| d.contains("state")),
            "{answer:?}"
        );
        assert_no_code(&answer);
    }
}

async fn a_redirect_uri_differing_by_one_character_is_refused(storage: Storage) {
    let (idp, web) = setup(storage).await;
    for uri in [
        "http://127.0.0.1:9/callbacK",
        "http://127.0.0.1:9/callback/",
        "http://127.0.0.1:8/callback",
        "http://127.0.0.1:9/callback?x",
    ] {
        let req = request(&idp, &web, &[("redirect_uri", Some(uri))]);
        let answer = Browser::new().open(&req.url).await;
        // Never a redirect to an unregistered URI, not even with an error.
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}: {answer:?}");
        assert!(answer.location.is_none());
        assert!(answer.body.contains("redirect_uri is not one registered"));
    }
    // At the token endpoint, the redirect_uri must be the request's.
    let req = request(&idp, &web, &[]);
    let answer = Browser::new().log_in(&req.url, "alice", PASSWORD).await;
    let code = answer.redirect_param("code").expect("a code");
    let got = exchange(
        &idp,
        &web,
        &code,
        &req.verifier,
        "http://127.0.0.1:9/callbacK",
    )
    .await;
    assert_invalid_grant(&got);
}

// ---- the code ----

async fn a_wrong_code_verifier_is_refused(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let req = request(&idp, &web, &[]);
    let answer = Browser::new().log_in(&req.url, "alice", PASSWORD).await;
    let code = answer.redirect_param("code").expect("a code");
    let wrong = format!("{}y", &req.verifier[..req.verifier.len() - 1]);
    let got = exchange(&idp, &web, &code, &wrong, REDIRECT).await;
    assert_invalid_grant(&got);
    assert!(
        got.1["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("code_verifier")),
        "{}",
        got.1
    );
    // Without a verifier at all: refused as well.
    let got = post_token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &web.id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    // The code is used up by the failed try: a thief who guesses later
    // gets nothing either.
    let got = exchange(&idp, &web, &code, &req.verifier, REDIRECT).await;
    assert_invalid_grant(&got);
}

async fn a_code_used_twice_is_refused_and_its_refresh_token_revoked(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let req = request(&idp, &web, &[]);
    let answer = Browser::new().log_in(&req.url, "alice", PASSWORD).await;
    let code = answer.redirect_param("code").expect("a code");
    let (status, first) = exchange(&idp, &web, &code, &req.verifier, REDIRECT).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let refresh_token = first["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();

    let again = exchange(&idp, &web, &code, &req.verifier, REDIRECT).await;
    assert_invalid_grant(&again);
    assert!(
        again.1["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("used before")),
        "{}",
        again.1
    );
    let got = refresh(&idp, &web, &refresh_token).await;
    assert_invalid_grant(&got);
}

// ---- refresh tokens ----

async fn a_refresh_token_reused_after_rotation_revokes_its_family(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let tokens = login_tokens(&idp, &web, "alice").await;
    let first = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let (status, second) = refresh(&idp, &web, &first).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let second = second["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();
    let (status, third) = refresh(&idp, &web, &second).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let newest = third["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();

    // The first one comes back (a thief's copy): refused, and the whole
    // family dies, the newest included.
    let got = refresh(&idp, &web, &first).await;
    assert_invalid_grant(&got);
    assert_invalid_grant(&refresh(&idp, &web, &newest).await);
    // Another login of the same person is another family, untouched.
    let other = login_tokens(&idp, &web, "alice").await;
    let got = refresh(&idp, &web, other["refresh_token"].as_str().expect("r")).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
}

async fn one_refresh_token_sent_many_times_at_once_rotates_once(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let tokens = login_tokens(&idp, &web, "alice").await;
    let token = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let tries = (0..8).map(|_| refresh(&idp, &web, &token));
    let answers = futures::future::join_all(tries).await;
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for lost in answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
    {
        assert_invalid_grant(lost);
    }
    // The rotated token still names the person and their groups...
    let access = claims(winners[0]["access_token"].as_str().expect("access"));
    assert_eq!(
        access["ick_user"],
        json!({"name": "alice", "groups": ["devs"]}),
        "{access}"
    );
    // ...but a token used twice is a theft: its whole family is revoked,
    // the winner's successor included.
    let successor = winners[0]["refresh_token"].as_str().expect("rotated");
    assert_invalid_grant(&refresh(&idp, &web, successor).await);
}

async fn a_refresh_token_is_bound_to_its_client(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let other = idp.create_login_client("other", &["builds:read"], &[REDIRECT], true);
    let tokens = login_tokens(&idp, &web, "alice").await;
    let token = tokens["refresh_token"].as_str().expect("refresh");
    assert_invalid_grant(&refresh(&idp, &other, token).await);
    let (status, _) = refresh(&idp, &web, token).await;
    assert_eq!(status, StatusCode::OK, "still good for its own client");
}

async fn a_password_change_revokes_the_users_refresh_tokens(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let tokens = login_tokens(&idp, &web, "alice").await;
    let token = tokens["refresh_token"].as_str().expect("refresh");
    let (status, _) = idp
        .admin_call(
            Method::PUT,
            "/users/alice/password",
            Some(json!({"password": "a new password"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_invalid_grant(&refresh(&idp, &web, token).await);
    // The old password no longer logs in; the new one does.
    let answer = Browser::new()
        .log_in(&request(&idp, &web, &[]).url, "alice", PASSWORD)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = Browser::new()
        .log_in(&request(&idp, &web, &[]).url, "alice", "a new password")
        .await;
    assert!(answer.redirect_param("code").is_some());
}

async fn disabling_or_deleting_a_user_revokes_their_refresh_tokens(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let tokens = login_tokens(&idp, &web, "alice").await;
    let token = tokens["refresh_token"].as_str().expect("refresh");
    idp.admin_call(
        Method::PATCH,
        "/users/alice",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_invalid_grant(&refresh(&idp, &web, token).await);
    // Enabling again does not bring old logins back.
    idp.admin_call(
        Method::PATCH,
        "/users/alice",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_invalid_grant(&refresh(&idp, &web, token).await);

    let tokens = login_tokens(&idp, &web, "alice").await;
    let token = tokens["refresh_token"].as_str().expect("refresh");
    let (status, _) = idp.admin_call(Method::DELETE, "/users/alice", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_invalid_grant(&refresh(&idp, &web, token).await);
}

async fn logout_revokes_the_refresh_token(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let other = idp.create_login_client("other", &["builds:read"], &[REDIRECT], true);
    let tokens = login_tokens(&idp, &web, "alice").await;
    let token = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let revoke = |client: String, token: String| {
        let url = format!("{}/revoke", idp.url());
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&[("client_id", client.as_str()), ("token", token.as_str())])
                .send()
                .await
                .expect("answers")
                .status()
        }
    };
    // Another client cannot revoke it (and is not told whether it exists).
    assert_eq!(
        revoke(other.id.clone(), token.clone()).await,
        StatusCode::OK
    );
    let (status, rotated) = refresh(&idp, &web, &token).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let token = rotated["refresh_token"].as_str().expect("r").to_string();
    assert_eq!(revoke(web.id.clone(), token.clone()).await, StatusCode::OK);
    assert_invalid_grant(&refresh(&idp, &web, &token).await);
    // An unknown token: 200 all the same (RFC 7009 §2.2).
    assert_eq!(
        revoke(web.id.clone(), "nonsense".into()).await,
        StatusCode::OK
    );
}

// ---- OpenID Connect around the login ----

async fn userinfo_refuses_a_client_token_and_answers_a_person(storage: Storage) {
    let (idp, web) = setup(storage).await;
    let get = |token: String| {
        let url = format!("{}/userinfo", idp.url());
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("answers");
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let machine = idp.admin_token().await;
    let (status, _) = get(machine).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let tokens = login_tokens(&idp, &web, "alice").await;
    let (status, info) = get(tokens["access_token"].as_str().expect("at").into()).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["groups"], json!(["devs"]));
    assert!(info.get("password_hash").is_none());
}

#[tokio::test]
async fn discovery_lists_the_login_endpoints() {
    let idp = TestIdp::start();
    let doc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", idp.url()))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let url = idp.url();
    assert_eq!(doc["authorization_endpoint"], format!("{url}/authorize"));
    assert_eq!(doc["userinfo_endpoint"], format!("{url}/userinfo"));
    assert_eq!(doc["revocation_endpoint"], format!("{url}/revoke"));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(
            doc["grant_types_supported"]
                .as_array()
                .is_some_and(|g| g.contains(&json!(grant))),
            "{grant}: {doc}"
        );
    }
    assert!(
        doc["scopes_supported"]
            .as_array()
            .is_some_and(|s| s.contains(&json!("openid")))
    );
}

#[tokio::test]
async fn machines_get_no_refresh_token_and_public_clients_no_client_credentials() {
    // client_credentials tokens have no refresh token, and a public client
    // cannot use client_credentials at all.
    let idp = TestIdp::start();
    let web = idp.create_login_client("web", &["builds:read"], &[REDIRECT], true);
    let got = post_token(
        &idp,
        &[("grant_type", "client_credentials"), ("client_id", &web.id)],
    )
    .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{}", got.1);
    assert_eq!(got.1["error"], "invalid_client");
    let machine = idp.create_client("m", &["builds:read"]);
    let token = idp
        .token_source(&machine, None)
        .fetch()
        .await
        .expect("token");
    assert!(token.refresh_token.is_none() && token.id_token.is_none());
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
    an_independent_oidc_client_logs_in_with_pkce_and_verifies_the_id_token,
    a_confidential_client_logs_in_with_its_secret,
    wrong_password_unknown_user_and_disabled_user_get_the_same_answer,
    a_login_without_or_with_a_wrong_csrf_token_is_refused,
    failed_logins_are_rate_limited,
    the_plain_pkce_method_and_a_missing_challenge_are_refused,
    a_request_without_state_is_refused,
    a_redirect_uri_differing_by_one_character_is_refused,
    a_wrong_code_verifier_is_refused,
    a_code_used_twice_is_refused_and_its_refresh_token_revoked,
    a_refresh_token_reused_after_rotation_revokes_its_family,
    one_refresh_token_sent_many_times_at_once_rotates_once,
    a_refresh_token_is_bound_to_its_client,
    a_password_change_revokes_the_users_refresh_tokens,
    disabling_or_deleting_a_user_revokes_their_refresh_tokens,
    logout_revokes_the_refresh_token,
    userinfo_refuses_a_client_token_and_answers_a_person,
);
