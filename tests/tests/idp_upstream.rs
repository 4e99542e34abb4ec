//! Logging in to one Ick IDP through another: two real `ick-idp`
//! binaries, the upstream one with a user `alice` and a confidential
//! client whose redirect URI is the downstream's callback, the downstream
//! one configured with it. The downstream's browser login is driven by an
//! independent OpenID Connect client (the `openidconnect` crate), through
//! "Sign in with Corp" and the upstream's own login form. Then the
//! attacks, each on its own.
//!
//! The upstream is reached through a small pass-through proxy in the test
//! (the upstream's issuer is the proxy's URL), so that one test can swap
//! the ID token in a token response for a real one the upstream issued
//! elsewhere (another nonce, another client): the downstream must refuse
//! both.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_tests::browser::{Answer, Browser, link};
use ick_tests::idp::Storage;
use ick_tests::oidc::http;
use ick_tests::{Credentials, TestIdp};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, RedirectUrl,
    TokenResponse as _,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const OTHER_REDIRECT: &str = "http://127.0.0.1:9/other";
const PASSWORD: &str = "correct horse battery";
const SIGN_IN: &str = "Sign in with Corp";

/// Passes every request on to the upstream; swaps the `id_token` of the
/// next token response for `swap`'s, if set.
#[derive(Clone)]
struct Proxy {
    target: Arc<Mutex<String>>,
    swap: Arc<Mutex<Option<String>>>,
    http: reqwest::Client,
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let target = format!("{}{path}", proxy.target.lock().expect("lock"));
    let mut headers = parts.headers.clone();
    headers.remove(reqwest::header::HOST);
    let response = proxy
        .http
        .request(parts.method, target)
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("the upstream answers");
    let status = response.status();
    let headers = response.headers().clone();
    let mut bytes = response.bytes().await.expect("body").to_vec();
    if parts.uri.path() == "/token"
        && let Some(swap) = proxy.swap.lock().expect("lock").take()
    {
        let mut tokens: Value = serde_json::from_slice(&bytes).expect("JSON");
        tokens["id_token"] = swap.into();
        bytes = serde_json::to_vec(&tokens).expect("JSON");
    }
    let mut answer = Response::builder().status(status);
    for (name, value) in &headers {
        if name != reqwest::header::CONTENT_LENGTH && name != reqwest::header::TRANSFER_ENCODING {
            answer = answer.header(name, value);
        }
    }
    answer.body(Body::from(bytes)).expect("a response")
}

/// Both IDPs, the proxy, and the clients.
struct Setup {
    upstream: TestIdp,
    /// The upstream's issuer: the proxy.
    upstream_url: String,
    swap: Arc<Mutex<Option<String>>>,
    /// The downstream's client at the upstream.
    at_upstream: Credentials,
    /// Another client at the upstream.
    other: Credentials,
    downstream: TestIdp,
    /// A public client people log in to the downstream through.
    web: Credentials,
    _secrets: tempfile::TempDir,
}

async fn setup(storage: Storage) -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream_url = format!("http://{}", listener.local_addr().expect("addr"));
    let proxy = Proxy {
        target: Arc::new(Mutex::new(String::new())),
        swap: Arc::new(Mutex::new(None)),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
    };
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let issuer = upstream_url.clone();
    let upstream = TestIdp::start_with(Storage::Postgres, |c| c["issuer"] = issuer.into());
    *proxy.target.lock().expect("lock") = upstream.url().to_string();
    upstream.create_user("alice", PASSWORD).await;
    upstream.create_user("bob", PASSWORD).await;
    let at_upstream =
        upstream.create_login_client("ick-downstream", &["projects:read"], &[REDIRECT], false);
    let other = upstream.create_login_client("other", &["projects:read"], &[OTHER_REDIRECT], false);
    assert!(!at_upstream.secret.is_empty());

    let secrets = tempfile::tempdir().expect("tempdir");
    let secret_file = secrets.path().join("corp-secret");
    std::fs::write(&secret_file, format!("{}\n", at_upstream.secret)).expect("write");
    set_mode(&secret_file, 0o600);
    let secret_path = secret_file.to_string_lossy().into_owned();
    let (issuer, client_id) = (upstream_url.clone(), at_upstream.id.clone());
    let downstream = TestIdp::start_with(storage, |c| {
        c["upstream"] = serde_yaml::from_str(&format!(
            "[{{name: Corp, issuer: '{issuer}', client_id: '{client_id}', \
             client_secret_file: '{secret_path}'}}, \
             {{name: Mail, issuer: '{issuer}', client_id: '{client_id}', \
             client_secret_file: '{secret_path}', claim: email}}, \
             {{name: Named, issuer: '{issuer}', client_id: '{client_id}', \
             client_secret_file: '{secret_path}', claim: name}}]"
        ))
        .expect("yaml");
    });
    let callbacks: Vec<String> = ["corp", "mail", "named"]
        .iter()
        .map(|slug| format!("{}/upstream/{slug}/callback", downstream.url()))
        .collect();
    let (status, body) = upstream
        .admin_call(
            Method::PATCH,
            &format!("/clients/{}", at_upstream.id),
            Some(json!({ "redirect_uris": callbacks })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let web = downstream.create_login_client("web", &["projects:read"], &[REDIRECT], true);
    Setup {
        upstream,
        upstream_url,
        swap: proxy.swap,
        at_upstream,
        other,
        downstream,
        web,
        _secrets: secrets,
    }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The downstream as an independent OIDC client sees it.
struct Oidc {
    client: CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
}

/// One login started by the OIDC client.
struct Started {
    url: String,
    state: CsrfToken,
    nonce: Nonce,
    verifier: openidconnect::PkceCodeVerifier,
}

impl Oidc {
    async fn new(s: &Setup) -> Oidc {
        let metadata = CoreProviderMetadata::discover_async(
            IssuerUrl::new(s.downstream.url().to_string()).expect("issuer"),
            &http,
        )
        .await
        .expect("the downstream's discovery");
        Oidc {
            client: CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(s.web.id.clone()),
                None,
            )
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).expect("redirect")),
        }
    }

    fn start(&self) -> Started {
        let (pkce, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(pkce)
            .url();
        Started {
            url: url.to_string(),
            state,
            nonce,
            verifier,
        }
    }

    /// Exchanges the code the final redirect carries and verifies the ID
    /// token: its claims.
    async fn finish(&self, started: Started, back: &Answer) -> Value {
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        assert!(
            back.location
                .as_deref()
                .is_some_and(|l| l.starts_with(REDIRECT)),
            "{back:?}"
        );
        assert_eq!(
            back.redirect_param("state").as_deref(),
            Some(started.state.secret().as_str()),
            "the client's own state comes back"
        );
        let code = back.redirect_param("code").expect("a code");
        let tokens = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .expect("a token endpoint")
            .set_pkce_verifier(started.verifier)
            .request_async(&http)
            .await
            .expect("the code is exchanged");
        let id_token = tokens.id_token().expect("an ID token");
        id_token
            .claims(&self.client.id_token_verifier(), &started.nonce)
            .expect("the downstream's ID token verifies");
        let payload = id_token.to_string();
        let payload = payload.split('.').nth(1).expect("a JWT");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("JSON")
    }
}

/// Opens the downstream's login page and follows "Sign in with NAME":
/// the upstream's authorization request.
async fn to_upstream(browser: &mut Browser, url: &str, sign_in: &str) -> String {
    let page = browser.open(url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let start = link(&page.body, sign_in, url)
        .unwrap_or_else(|| panic!("no {sign_in:?} link: {}", page.body));
    let sent = browser.open(&start).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    sent.location.expect("a redirect upstream")
}

/// Logs in at the upstream's form: the callback URL it sends back to.
async fn at_upstream(browser: &mut Browser, upstream_request: &str, user: &str) -> String {
    let back = browser.log_in(upstream_request, user, PASSWORD).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    back.location.expect("a redirect to the callback")
}

/// A whole login through Corp as `user`: the final answer.
async fn through_upstream(browser: &mut Browser, started: &Started, user: &str) -> Answer {
    let upstream_request = to_upstream(browser, &started.url, SIGN_IN).await;
    let callback = at_upstream(browser, &upstream_request, user).await;
    browser.open(&callback).await
}

async fn users(idp: &TestIdp) -> Vec<Value> {
    let (status, body) = idp.admin_call(Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a list").clone()
}

#[track_caller]
fn assert_refused(answer: &Answer, status: StatusCode, text: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(answer.location.is_none(), "no redirect: {answer:?}");
    assert!(
        answer.body.contains(text),
        "{text:?} not in {}",
        answer.body
    );
}

/// A real ID token the upstream issued to `client` for alice, with `nonce`.
async fn foreign_id_token(s: &Setup, client: &Credentials, redirect: &str, nonce: &str) -> String {
    use sha2::{Digest, Sha256};
    let verifier = "w".repeat(50);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client.id.as_str()),
            ("redirect_uri", redirect),
            ("scope", "openid"),
            ("state", "st"),
            ("nonce", nonce),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let answer = Browser::new()
        .log_in(
            &format!("{}/authorize?{query}", s.upstream_url),
            "alice",
            PASSWORD,
        )
        .await;
    let code = answer.redirect_param("code").expect("a code");
    let response = reqwest::Client::new()
        .post(s.upstream.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier.as_str()),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_str()),
        ])
        .send()
        .await
        .expect("the upstream answers");
    let tokens: Value = response.json().await.expect("JSON");
    tokens["id_token"]
        .as_str()
        .expect("an id_token")
        .to_string()
}

async fn a_person_from_an_upstream_ick_becomes_an_ick_user(storage: Storage) {
    let s = setup(storage).await;
    let oidc = Oidc::new(&s).await;
    let before = users(&s.downstream).await;
    assert!(before.is_empty(), "{before:?}");

    let mut browser = Browser::new();
    let started = oidc.start();
    let back = through_upstream(&mut browser, &started, "alice").await;
    let claims = oidc.finish(started, &back).await;
    assert_eq!(claims["preferred_username"], "alice", "{claims}");
    assert_eq!(claims["email"], "alice@example.org", "{claims}");
    assert_eq!(claims["iss"], s.downstream.url(), "{claims}");
    let after = users(&s.downstream).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["name"], "alice");
    assert_eq!(after[0]["display_name"], "alice (test)");
    assert_eq!(after[0]["has_password"], false, "no password: {after:?}");
    let id = after[0]["id"].clone();
    assert_eq!(claims["sub"], id);
    // The downstream's audit log says the upstream made her.
    let (_, log) = s.downstream.admin_call(Method::GET, "/audit", None).await;
    let made = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "user.create")
        .unwrap_or_else(|| panic!("no user.create: {log}"));
    assert_eq!(made["target"], "alice", "{made}");
    assert!(
        made["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("upstream:")),
        "{made}"
    );
    assert_eq!(made["address"], "127.0.0.1", "{made}");

    // Again, in another browser: the same user, found by the upstream's sub.
    let mut browser = Browser::new();
    let started = oidc.start();
    let back = through_upstream(&mut browser, &started, "alice").await;
    let claims = oidc.finish(started, &back).await;
    assert_eq!(claims["sub"], id, "{claims}");
    assert_eq!(users(&s.downstream).await.len(), 1);

    // "Named" names users by the `name` claim; renamed upstream, the
    // person stays the user first made (found by sub), and no second one
    // appears.
    let rename = |name: &str| {
        s.upstream.admin_call(
            Method::PATCH,
            "/users/bob",
            Some(json!({ "display_name": name })),
        )
    };
    assert_eq!(rename("robert").await.0, StatusCode::OK);
    let mut named = Vec::new();
    for _ in 0..2 {
        let started = oidc.start();
        let mut browser = Browser::new();
        let upstream_request = to_upstream(&mut browser, &started.url, "Sign in with Named").await;
        let callback = at_upstream(&mut browser, &upstream_request, "bob").await;
        let back = browser.open(&callback).await;
        named.push(oidc.finish(started, &back).await);
        assert_eq!(rename("bobby").await.0, StatusCode::OK);
    }
    assert_eq!(named[0]["preferred_username"], "robert", "{named:?}");
    assert_eq!(named[1]["sub"], named[0]["sub"], "{named:?}");
    assert_eq!(named[1]["preferred_username"], "robert", "{named:?}");
    let names: Vec<Value> = users(&s.downstream)
        .await
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert_eq!(names, [json!("alice"), json!("robert")]);

    // Disabled at the downstream: refused even through the upstream.
    let (status, body) = s
        .downstream
        .admin_call(
            Method::PATCH,
            "/users/alice",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let started = oidc.start();
    let back = through_upstream(&mut Browser::new(), &started, "alice").await;
    assert_refused(&back, StatusCode::FORBIDDEN, "disabled");
    let (status, _) = s
        .downstream
        .admin_call(
            Method::PATCH,
            "/users/alice",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_from_an_upstream_ick_becomes_an_ick_user_postgres() {
    a_person_from_an_upstream_ick_becomes_an_ick_user(Storage::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_from_an_upstream_ick_becomes_an_ick_user_sqlite() {
    a_person_from_an_upstream_ick_becomes_an_ick_user(Storage::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_callbacks_that_are_forged_replayed_or_tampered_log_no_one_in() {
    let s = setup(Storage::Sqlite).await;
    let oidc = Oidc::new(&s).await;
    let downstream = s.downstream.url();

    // Missing and wrong state; then the real callback works, once.
    let mut browser = Browser::new();
    let started = oidc.start();
    let upstream_request = to_upstream(&mut browser, &started.url, SIGN_IN).await;
    let callback = at_upstream(&mut browser, &upstream_request, "alice").await;
    let mut url = url::Url::parse(&callback).expect("URL");
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .expect("a code");
    url.set_query(Some(&format!("code={code}")));
    assert_refused(
        &browser.open(url.as_str()).await,
        StatusCode::BAD_REQUEST,
        "expired",
    );
    url.set_query(Some(&format!("code={code}&state=forged")));
    assert_refused(
        &browser.open(url.as_str()).await,
        StatusCode::BAD_REQUEST,
        "expired",
    );
    let back = browser.open(&callback).await;
    let claims = oidc.finish(started, &back).await;
    assert_eq!(claims["preferred_username"], "alice");
    // Replayed: the state is used up.
    assert_refused(
        &browser.open(&callback).await,
        StatusCode::BAD_REQUEST,
        "used already",
    );

    // A callback carried to another browser (login CSRF) is refused.
    let mut victim = Browser::new();
    let started = oidc.start();
    let upstream_request = to_upstream(&mut browser, &started.url, SIGN_IN).await;
    let callback = at_upstream(&mut browser, &upstream_request, "alice").await;
    victim.open(&oidc.start().url).await;
    assert_refused(
        &victim.open(&callback).await,
        StatusCode::BAD_REQUEST,
        "not started in this browser",
    );

    // A real ID token from the upstream, but for another login (its
    // nonce) or another client (its audience), swapped into the token
    // response: refused.
    for (token, why) in [
        (
            foreign_id_token(
                &s,
                &s.at_upstream,
                &format!("{downstream}/upstream/corp/callback"),
                "another-nonce",
            )
            .await,
            "Invalid nonce",
        ),
        (
            foreign_id_token(&s, &s.other, OTHER_REDIRECT, "n").await,
            "Invalid audiences",
        ),
    ] {
        let before = users(&s.downstream).await;
        let mut browser = Browser::new();
        let started = oidc.start();
        let upstream_request = to_upstream(&mut browser, &started.url, SIGN_IN).await;
        let callback = at_upstream(&mut browser, &upstream_request, "alice").await;
        *s.swap.lock().expect("lock") = Some(token);
        let answer = browser.open(&callback).await;
        assert!(
            s.swap.lock().expect("lock").is_none(),
            "the token was swapped"
        );
        assert_refused(&answer, StatusCode::BAD_REQUEST, why);
        assert_eq!(users(&s.downstream).await, before, "nothing changed");
    }

    // Not configured: 404.
    for path in [
        "/upstream/nope/start?csrf=x",
        "/upstream/nope/callback?state=x&code=y",
    ] {
        let answer = Browser::new().open(&format!("{downstream}{path}")).await;
        assert_refused(&answer, StatusCode::NOT_FOUND, "No such sign-in provider");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_name_never_takes_over_a_local_user_nor_makes_a_bad_username() {
    let s = setup(Storage::Postgres).await;
    let oidc = Oidc::new(&s).await;
    s.downstream.create_user("bob", "bobs local password").await;
    let before = users(&s.downstream).await;

    // Upstream bob is not local bob: refused, and local bob is unchanged.
    let started = oidc.start();
    let back = through_upstream(&mut Browser::new(), &started, "bob").await;
    assert_refused(
        &back,
        StatusCode::FORBIDDEN,
        "already exists and is not linked",
    );
    assert_eq!(users(&s.downstream).await, before, "nothing changed");
    // Still refused the second time (no link was made), and local bob's
    // password still works.
    let started = oidc.start();
    let back = through_upstream(&mut Browser::new(), &started, "bob").await;
    assert_refused(
        &back,
        StatusCode::FORBIDDEN,
        "already exists and is not linked",
    );
    let started = oidc.start();
    let back = Browser::new()
        .log_in(&started.url, "bob", "bobs local password")
        .await;
    let claims = oidc.finish(started, &back).await;
    assert_eq!(claims["preferred_username"], "bob");

    // An upstream account deleted and made again under the same name is
    // another person (another sub): not the first one's Ick user.
    let started = oidc.start();
    let back = through_upstream(&mut Browser::new(), &started, "alice").await;
    let first = oidc.finish(started, &back).await;
    let (status, _) = s
        .upstream
        .admin_call(Method::DELETE, "/users/alice", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.upstream.create_user("alice", PASSWORD).await;
    let before = users(&s.downstream).await;
    let started = oidc.start();
    let back = through_upstream(&mut Browser::new(), &started, "alice").await;
    assert_refused(
        &back,
        StatusCode::FORBIDDEN,
        "already exists and is not linked",
    );
    assert_eq!(users(&s.downstream).await, before, "nothing changed");
    assert!(first["sub"].is_string());

    // "Mail" names users by their email claim, which is no username.
    let started = oidc.start();
    let mut browser = Browser::new();
    let upstream_request = to_upstream(&mut browser, &started.url, "Sign in with Mail").await;
    let callback = at_upstream(&mut browser, &upstream_request, "alice").await;
    let back = browser.open(&callback).await;
    assert_refused(&back, StatusCode::FORBIDDEN, "is not a usable Ick username");
    assert!(back.body.contains("alice@example.org"), "{}", back.body);
    assert_eq!(users(&s.downstream).await, before, "nothing changed");
}

#[test]
fn an_upstream_secret_file_others_can_read_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").expect("write");
    set_mode(&secret, 0o644);
    let config = dir.path().join("idp.yaml");
    std::fs::write(
        &config,
        format!(
            "http: {{listen: 127.0.0.1:0}}\ndata_dir: {}\nupstream:\n- {{name: Corp, issuer: \
             'https://corp.example.org', client_id: ick, client_secret_file: '{}'}}\n",
            dir.path().join("data").display(),
            secret.display()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(ick_tests::bin_path("ick-idp"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("ick-idp runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("upstream Corp") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}
