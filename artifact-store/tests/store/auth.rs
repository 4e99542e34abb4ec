//! Every endpoint but health needs a valid token with the right scope, and
//! a refused request changes nothing. Token checking does not depend on the
//! backend, so these run on the local one.

use ick_api::Scope;
use ick_api::blobs::Digest;
use ick_api::oauth::{AccessClaims, JwkSet};
use ick_tests::store::{Backend, pattern};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode, header};
use serde_json::json;

use crate::common::{Env, problem};

/// What the store holds before the refused requests: a blob, a ref, and a
/// session with some bytes.
struct Fixture {
    env: Env,
    blob: Digest,
    session: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let env = Env::start(Backend::Local).await;
        let blob = env.store_blob(pattern(40, 1000)).await.digest;
        let set = env
            .request(Method::PUT, "/refs/kept")
            .json(&json!({"digest": blob}))
            .send()
            .await
            .expect("PUT ref");
        assert_eq!(set.status(), StatusCode::CREATED);
        let opened = env
            .request(Method::POST, "/uploads")
            .send()
            .await
            .expect("POST");
        let session = opened.headers()[header::LOCATION]
            .to_str()
            .expect("location")
            .to_string();
        let patched = env
            .request(Method::PATCH, &session)
            .header(header::CONTENT_RANGE, "0-9")
            .body(vec![1u8; 10])
            .send()
            .await
            .expect("PATCH");
        assert_eq!(patched.status(), StatusCode::ACCEPTED);
        Fixture { env, blob, session }
    }

    /// Every endpoint, with the scope it needs and a request that would
    /// change something if it were allowed.
    fn endpoints(&self) -> Vec<(Method, String, Scope, Vec<u8>)> {
        let blob = format!("/blobs/{}", self.blob);
        let other = pattern(41, 500);
        let other_digest = Digest::of(&other);
        let ref_body = json!({"digest": self.blob}).to_string().into_bytes();
        vec![
            (
                Method::POST,
                "/blobs".into(),
                Scope::BlobsWrite,
                other.clone(),
            ),
            (
                Method::PUT,
                format!("/blobs/{other_digest}"),
                Scope::BlobsWrite,
                other,
            ),
            (Method::GET, blob.clone(), Scope::BlobsRead, vec![]),
            (Method::HEAD, blob.clone(), Scope::BlobsRead, vec![]),
            (Method::DELETE, blob, Scope::BlobsDelete, vec![]),
            (Method::POST, "/uploads".into(), Scope::BlobsWrite, vec![]),
            (
                Method::PATCH,
                self.session.clone(),
                Scope::BlobsWrite,
                vec![2u8; 5],
            ),
            (
                Method::HEAD,
                self.session.clone(),
                Scope::BlobsWrite,
                vec![],
            ),
            (
                Method::PUT,
                format!("{}?digest={}", self.session, Digest::of(&[1u8; 10])),
                Scope::BlobsWrite,
                vec![],
            ),
            (
                Method::DELETE,
                self.session.clone(),
                Scope::BlobsWrite,
                vec![],
            ),
            (
                Method::GET,
                "/refs?prefix=".into(),
                Scope::BlobsRead,
                vec![],
            ),
            (Method::GET, "/refs/kept".into(), Scope::BlobsRead, vec![]),
            (Method::PUT, "/refs/new".into(), Scope::BlobsWrite, ref_body),
            (
                Method::DELETE,
                "/refs/kept".into(),
                Scope::BlobsDelete,
                vec![],
            ),
        ]
    }

    /// Sends every endpoint that needs `only` (every endpoint if `None`)
    /// with `token` (none if `None`) and asserts the answer is `want`.
    async fn send_all(&self, token: Option<&str>, only: Option<Scope>, want: StatusCode) {
        for (method, path, scope, body) in self.endpoints() {
            if only.is_some_and(|only| only != scope) {
                continue;
            }
            let mut request = self
                .env
                .http
                .request(method.clone(), self.env.url(&path))
                .body(body);
            if method == Method::PUT && path.starts_with("/refs") {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), want, "{method} {path}");
            if want == StatusCode::UNAUTHORIZED {
                let challenge = response.headers()[header::WWW_AUTHENTICATE]
                    .to_str()
                    .expect("text");
                assert!(challenge.starts_with("Bearer"), "{challenge}");
            }
            let p = problem(response, want).await;
            if want == StatusCode::FORBIDDEN && method != Method::HEAD {
                assert_eq!(p.extensions["scope"], scope.as_str(), "{method} {path}");
            }
        }
    }

    /// Nothing the refused requests asked for happened.
    async fn assert_unchanged(&self) {
        let env = &self.env;
        env.assert_holds(&[&self.blob]);
        let kept = env.get("/refs/kept").await;
        assert_eq!(kept.status(), StatusCode::OK);
        assert_eq!(env.get("/refs/new").await.status(), StatusCode::NOT_FOUND);
        let held = env
            .request(Method::HEAD, &self.session)
            .send()
            .await
            .expect("HEAD");
        assert_eq!(held.headers()["upload-offset"], "10");
        // The one session, and no other.
        assert_eq!(env.store.upload_files().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_token_are_401_and_change_nothing() {
    let f = Fixture::new().await;
    f.send_all(None, None, StatusCode::UNAUTHORIZED).await;
    f.send_all(Some("not-a-jwt"), None, StatusCode::UNAUTHORIZED)
        .await;
    f.assert_unchanged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_the_scope_are_403_and_change_nothing() {
    let f = Fixture::new().await;
    // For each scope, a client with every other blob scope.
    for missing in [Scope::BlobsRead, Scope::BlobsWrite, Scope::BlobsDelete] {
        let others: Vec<&str> = [Scope::BlobsRead, Scope::BlobsWrite, Scope::BlobsDelete]
            .into_iter()
            .filter(|s| *s != missing)
            .map(Scope::as_str)
            .collect();
        let client = f.env.idp.create_client(
            &format!("without-{}", missing.as_str().replace(':', "-")),
            &[&others.join(" ")],
        );
        let token = f.env.idp.token(&client, None).await;
        f.send_all(Some(&token), Some(missing), StatusCode::FORBIDDEN)
            .await;
    }
    f.assert_unchanged().await;
}

fn key_file(env: &Env) -> std::path::PathBuf {
    let mut keys: Vec<_> = std::fs::read_dir(env.idp.dir.path().join("data/keys"))
        .expect("keys dir")
        .map(|e| e.expect("entry").path())
        .collect();
    keys.sort();
    keys.into_iter().next().expect("a key")
}

/// A token signed with the IDP's own key, with the given lifetime bounds.
async fn forge(env: &Env, issuer: &str, exp: i64, scope: &str) -> String {
    let set: JwkSet = reqwest::get(format!("{}/.well-known/jwks.json", env.idp.url()))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let kid = set.keys[0].kid.clone().expect("kid");
    let key = EncodingKey::from_ed_pem(&std::fs::read(key_file(env)).expect("key")).expect("pem");
    let now = chrono::Utc::now().timestamp();
    let claims = AccessClaims {
        iss: issuer.to_string(),
        sub: "forger".into(),
        aud: "ick".into(),
        exp,
        iat: now - 1000,
        nbf: Some(now - 1000),
        jti: "j".into(),
        client_id: "forger".into(),
        client_name: None,
        scope: scope.into(),
        ick_worker: None,
        ick_user: None,
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, &claims, &key).expect("signs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_foreign_tokens_are_401_and_change_nothing() {
    let f = Fixture::new().await;
    let all = "blobs:read blobs:write blobs:delete";
    let now = chrono::Utc::now().timestamp();
    let issuer = f.env.idp.url().to_string();
    // The control: the same forgery, valid, is accepted.
    let valid = forge(&f.env, &issuer, now + 300, all).await;
    let response = f
        .env
        .http
        .get(f.env.url("/refs/kept"))
        .bearer_auth(&valid)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);

    let expired = forge(&f.env, &issuer, now - 120, all).await;
    let response = f
        .env
        .http
        .get(f.env.url("/refs/kept"))
        .bearer_auth(&expired)
        .send()
        .await
        .expect("GET");
    let p = problem(response, StatusCode::UNAUTHORIZED).await;
    assert!(p.detail.unwrap_or_default().contains("expired"));
    f.send_all(Some(&expired), None, StatusCode::UNAUTHORIZED)
        .await;

    let foreign = forge(&f.env, "http://elsewhere.example", now + 300, all).await;
    f.send_all(Some(&foreign), None, StatusCode::UNAUTHORIZED)
        .await;
    f.assert_unchanged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token() {
    let env = Env::start(Backend::Local).await;
    let health = env
        .http
        .get(env.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let body: serde_json::Value = health.json().await.expect("json");
    assert_eq!(body["service"], "ick-artifact-store");
    let ready = env
        .http
        .get(env.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
}
