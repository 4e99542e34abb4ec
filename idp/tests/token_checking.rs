//! The token checker of `ick-api` against the real `ick-idp`: what it
//! accepts, what it refuses, and how it follows key rotation.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_api::auth::{AuthConfig, TokenVerifier, VerifyError};
use ick_api::oauth::{AccessClaims, JwkSet};
use ick_api::{Scope, http};
use ick_tests::{TestIdp, eventually};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nix::sys::signal::Signal;

fn verifier(idp: &TestIdp) -> TokenVerifier {
    TokenVerifier::new(AuthConfig::new(idp.url()), http::client())
}

fn key_files(idp: &TestIdp) -> Vec<PathBuf> {
    let mut keys: Vec<PathBuf> = std::fs::read_dir(idp.dir.path().join("data/keys"))
        .expect("keys dir")
        .map(|e| e.expect("entry").path())
        .collect();
    keys.sort();
    keys
}

async fn jwks(idp: &TestIdp) -> JwkSet {
    reqwest::get(format!("{}/.well-known/jwks.json", idp.url()))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(idp: &TestIdp) -> AccessClaims {
    AccessClaims {
        iss: idp.url().to_string(),
        sub: "forger".into(),
        aud: "ick".into(),
        exp: now() + 300,
        iat: now(),
        nbf: Some(now()),
        jti: "j".into(),
        client_id: "forger".into(),
        client_name: None,
        scope: "builds:read".into(),
        ick_worker: None,
        ick_user: None,
    }
}

/// Signs `claims` with the IDP's own key file (the test owns its data dir).
fn sign_with_idp_key(idp: &TestIdp, claims: &AccessClaims) -> String {
    let pem = std::fs::read(&key_files(idp)[0]).expect("key file");
    let key = EncodingKey::from_ed_pem(&pem).expect("ed25519 pem");
    let kid = first_kid_blocking(idp);
    sign(claims, &key, Algorithm::EdDSA, &kid)
}

fn first_kid_blocking(idp: &TestIdp) -> String {
    let url = format!("{}/.well-known/jwks.json", idp.url());
    let body = std::thread::spawn(move || {
        tokio::runtime::Runtime::new().expect("rt").block_on(async {
            reqwest::get(url)
                .await
                .expect("jwks")
                .text()
                .await
                .expect("text")
        })
    })
    .join()
    .expect("thread");
    let set: JwkSet = serde_json::from_str(&body).expect("jwks json");
    set.keys[0].kid.clone().expect("kid")
}

fn sign(claims: &AccessClaims, key: &EncodingKey, alg: Algorithm, kid: &str) -> String {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).expect("signs")
}

fn assert_invalid(result: Result<ick_api::auth::Caller, VerifyError>, why: &str) {
    match result {
        Err(VerifyError::Invalid(reason)) => {
            assert!(reason.contains(why), "{reason:?} lacks {why:?}")
        }
        other => panic!("expected an invalid token ({why}), got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_from_the_idp_is_accepted_with_its_scopes() {
    let idp = TestIdp::start();
    let c = idp.create_client("runner", &["work:run", "blobs:read"]);
    let token = idp.token(&c, None).await;
    let caller = verifier(&idp).verify(&token).await.expect("valid");
    assert_eq!(caller.client_id, c.id);
    assert_eq!(caller.subject, c.id);
    assert!(caller.scopes.contains(Scope::WorkRun));
    assert!(caller.scopes.contains(Scope::BlobsRead));
    assert!(!caller.scopes.contains(Scope::BlobsWrite));
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_rejected() {
    let idp = TestIdp::start();
    let v = verifier(&idp);
    let mut expired = claims(&idp);
    expired.iat = now() - 1000;
    expired.nbf = Some(now() - 1000);
    expired.exp = now() - 120; // beyond the 30 s leeway
    assert_invalid(
        v.verify(&sign_with_idp_key(&idp, &expired)).await,
        "expired",
    );

    let mut early = claims(&idp);
    early.nbf = Some(now() + 300);
    assert_invalid(
        v.verify(&sign_with_idp_key(&idp, &early)).await,
        "not valid yet",
    );

    // Within the leeway both pass, so the checks above are about time.
    let mut just_expired = claims(&idp);
    just_expired.exp = now() - 5;
    assert!(
        v.verify(&sign_with_idp_key(&idp, &just_expired))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_audience_and_wrong_issuer_are_rejected() {
    let idp = TestIdp::start();
    let v = verifier(&idp);
    let mut aud = claims(&idp);
    aud.aud = "somebody-else".into();
    assert_invalid(v.verify(&sign_with_idp_key(&idp, &aud)).await, "audience");
    let mut iss = claims(&idp);
    iss.iss = "https://evil.example".into();
    assert_invalid(v.verify(&sign_with_idp_key(&idp, &iss)).await, "issuer");
    assert!(
        v.verify(&sign_with_idp_key(&idp, &claims(&idp)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_tampered_signature_is_rejected() {
    let idp = TestIdp::start();
    let token = idp.admin_token().await;
    let (rest, signature) = token.rsplit_once('.').expect("jwt");
    let mut sig = URL_SAFE_NO_PAD.decode(signature).expect("b64");
    sig[0] ^= 1;
    let forged = format!("{rest}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_invalid(verifier(&idp).verify(&forged).await, "signature");

    // A changed claim under the original signature fails too.
    let (header, payload) = rest.split_once('.').expect("jwt");
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    claims["scope"] = "idp:admin".into();
    let raised = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"))
    );
    assert_invalid(verifier(&idp).verify(&raised).await, "signature");
}

#[tokio::test]
async fn alg_none_and_hs256_keyed_with_the_public_key_are_rejected() {
    let idp = TestIdp::start();
    let v = verifier(&idp);
    let set = jwks(&idp).await;
    let jwk = &set.keys[0];
    let kid = jwk.kid.clone().expect("kid");
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&idp)).expect("json"));

    for alg in ["none", "None", "NONE"] {
        let header = serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": kid});
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("json"));
        let result = v.verify(&format!("{h}.{body}.")).await;
        assert!(
            matches!(result, Err(VerifyError::Invalid(_))),
            "alg {alg}: {result:?}"
        );
    }

    // The classic confusion: HMAC keyed with the public key's bytes or text.
    let x = jwk.x.clone().expect("x");
    let raw = URL_SAFE_NO_PAD.decode(&x).expect("b64");
    let jwk_json = serde_json::to_vec(jwk).expect("json");
    for secret in [raw.as_slice(), x.as_bytes(), jwk_json.as_slice()] {
        let token = sign(
            &claims(&idp),
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
            &kid,
        );
        assert_invalid(v.verify(&token).await, "not EdDSA");
    }
}

#[tokio::test]
async fn a_token_signed_by_another_idps_key_is_rejected() {
    let idp = TestIdp::start();
    let other = tempfile::tempdir().expect("tempdir");
    let path = ick_idp::keys::generate(other.path()).expect("key");
    let foreign = ick_idp::keys::KeyRing::load(other.path()).expect("ring");
    let foreign_key = EncodingKey::from_ed_pem(&std::fs::read(path).expect("pem")).expect("pem");
    let foreign_kid = foreign.signing().expect("key").kid.clone();
    let v = verifier(&idp);
    // Under its own key id: unknown to our IDP.
    let own_kid = sign(&claims(&idp), &foreign_key, Algorithm::EdDSA, &foreign_kid);
    assert_invalid(v.verify(&own_kid).await, "unknown key");
    // Claiming our key id: the signature does not match.
    let our_kid = jwks(&idp).await.keys[0].kid.clone().expect("kid");
    let stolen_kid = sign(&claims(&idp), &foreign_key, Algorithm::EdDSA, &our_kid);
    assert_invalid(v.verify(&stolen_kid).await, "signature");
}

#[tokio::test]
async fn a_jwt_that_is_not_an_access_token_is_rejected() {
    let idp = TestIdp::start();
    let pem = std::fs::read(&key_files(&idp)[0]).expect("key file");
    let key = EncodingKey::from_ed_pem(&pem).expect("pem");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = jwks(&idp).await.keys[0].kid.clone();
    header.typ = Some("JWT".into());
    let token = jsonwebtoken::encode(&header, &claims(&idp), &key).expect("signs");
    assert_invalid(verifier(&idp).verify(&token).await, "at+jwt");
    assert_invalid(verifier(&idp).verify("not a jwt").await, "malformed");
}

#[tokio::test]
async fn an_unknown_kid_makes_exactly_one_jwks_refresh() {
    let idp = TestIdp::start();
    let v = verifier(&idp);
    let token = idp.admin_token().await;
    v.verify(&token).await.expect("valid");
    assert_eq!(v.jwks_fetches(), 1, "first use fetches the keys once");
    v.verify(&token).await.expect("valid");
    assert_eq!(v.jwks_fetches(), 1, "known keys are cached");

    let other = tempfile::tempdir().expect("tempdir");
    let path = ick_idp::keys::generate(other.path()).expect("key");
    let key = EncodingKey::from_ed_pem(&std::fs::read(path).expect("pem")).expect("pem");
    for i in 0..5 {
        let forged = sign(
            &claims(&idp),
            &key,
            Algorithm::EdDSA,
            &format!("unknown-{i}"),
        );
        assert_invalid(v.verify(&forged).await, "unknown key");
    }
    assert_eq!(
        v.jwks_fetches(),
        2,
        "a burst of unknown kids refreshes once"
    );
}

#[tokio::test]
async fn after_rotation_old_tokens_verify_while_their_key_is_published_and_not_after() {
    let idp = TestIdp::start();
    let mut config = AuthConfig::new(idp.url());
    config.jwks_max_age = Duration::from_millis(200);
    config.jwks_min_refresh_interval = Duration::from_millis(50);
    let v = TokenVerifier::new(config, http::client());

    let old_token = idp.admin_token().await;
    v.verify(&old_token).await.expect("valid before rotation");
    let old_kid = jwks(&idp).await.keys[0].kid.clone().expect("kid");

    let out = idp.run(&["keys", "generate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    idp.process.signal(Signal::SIGHUP);
    eventually(Duration::from_secs(10), "two published keys", || async {
        (jwks(&idp).await.keys.len() == 2).then_some(())
    })
    .await;

    // The new key signs; both tokens verify.
    let fresh = idp
        .token_source(&idp.admin, None)
        .fetch()
        .await
        .expect("token");
    let header = jsonwebtoken::decode_header(&fresh.access_token).expect("header");
    assert_ne!(header.kid.as_deref(), Some(old_kid.as_str()));
    v.verify(&fresh.access_token)
        .await
        .expect("new key verifies");
    v.verify(&old_token).await.expect("old key still published");

    let out = idp.run(&["keys", "remove", &old_kid]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    idp.process.signal(Signal::SIGHUP);
    eventually(
        Duration::from_secs(10),
        "the old key to be refused",
        || async {
            matches!(v.verify(&old_token).await, Err(VerifyError::Invalid(_))).then_some(())
        },
    )
    .await;
    v.verify(&fresh.access_token)
        .await
        .expect("the new key still verifies");
}

#[tokio::test]
async fn an_independent_jwt_library_verifies_our_token_against_our_jwks() {
    use jwt_compact::alg::Ed25519;
    use jwt_compact::{AlgorithmExt, UntrustedToken};

    let idp = TestIdp::start();
    let token = idp.admin_token().await;
    let untrusted = UntrustedToken::new(&token).expect("parses");
    let public = published_key(&idp, &untrusted).await;
    let verified = Ed25519
        .validator::<serde_json::Value>(&public)
        .validate(&untrusted)
        .expect("the signature verifies");
    assert_eq!(verified.claims().custom["iss"], idp.url());
    assert_eq!(verified.claims().custom["client_id"], idp.admin.id.as_str());

    // And it refuses the same token with one signature bit flipped.
    let (rest, sig) = token.rsplit_once('.').expect("jwt");
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    bytes[10] ^= 0x80;
    let forged = format!("{rest}.{}", URL_SAFE_NO_PAD.encode(bytes));
    let untrusted = UntrustedToken::new(&forged).expect("parses");
    assert!(
        Ed25519
            .validator::<serde_json::Value>(&public)
            .validate(&untrusted)
            .is_err()
    );
}

/// The IDP's published key (read with jwt-compact, not our code) that
/// `token` names.
async fn published_key(
    idp: &TestIdp,
    token: &jwt_compact::UntrustedToken<'_>,
) -> <jwt_compact::alg::Ed25519 as jwt_compact::Algorithm>::VerifyingKey {
    let jwks: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", idp.url()))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let kid = token.header().key_id.clone().expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("our kid is published")
        .clone();
    let jwk: jwt_compact::jwk::JsonWebKey<'_> = serde_json::from_value(jwk).expect("a JWK");
    <jwt_compact::alg::Ed25519 as jwt_compact::Algorithm>::VerifyingKey::try_from(&jwk)
        .expect("Ed25519")
}

/// The claims of `token`, its signature checked by jwt-compact (not our
/// code) against the IDP's published keys.
async fn independently_verified_claims(idp: &TestIdp, token: &str) -> serde_json::Value {
    use jwt_compact::AlgorithmExt;
    let untrusted = jwt_compact::UntrustedToken::new(token).expect("parses");
    let public = published_key(idp, &untrusted).await;
    jwt_compact::alg::Ed25519
        .validator::<serde_json::Value>(&public)
        .validate(&untrusted)
        .expect("the signature verifies")
        .claims()
        .custom
        .clone()
}

#[tokio::test]
async fn a_worker_s_token_names_the_worker_its_admin_set_and_no_other_token_does() {
    let idp = TestIdp::start();
    let worker = idp.create_worker_client(
        "builder-7",
        "amd64-7",
        &["trusted", "arch=amd64"],
        &["work:run"],
    );
    let claims = independently_verified_claims(&idp, &idp.token(&worker, None).await).await;
    assert_eq!(
        claims["ick_worker"],
        serde_json::json!({"name": "amd64-7", "labels": ["trusted", "arch=amd64"]})
    );
    // The default: the client's name, no labels.
    let plain = idp.create_client("plain-worker", &["work:run blobs:read"]);
    let claims = independently_verified_claims(&idp, &idp.token(&plain, None).await).await;
    assert_eq!(
        claims["ick_worker"],
        serde_json::json!({"name": "plain-worker", "labels": []})
    );
    // A token asked without work:run, or of a client without it, names none.
    let token = idp.token(&plain, Some("blobs:read")).await;
    let claims = independently_verified_claims(&idp, &token).await;
    assert!(claims.get("ick_worker").is_none(), "{claims}");
    let reader = idp.create_client("reader", &["builds:read"]);
    let claims = independently_verified_claims(&idp, &idp.token(&reader, None).await).await;
    assert!(claims.get("ick_worker").is_none(), "{claims}");

    // An admin changes the labels; the next token carries them.
    let admin = idp.admin_token().await;
    let http = reqwest::Client::new();
    let r = http
        .patch(format!("{}/clients/{}", idp.url(), worker.id))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"labels": ["arch=amd64"]}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let claims = independently_verified_claims(&idp, &idp.token(&worker, None).await).await;
    assert_eq!(
        claims["ick_worker"]["labels"],
        serde_json::json!(["arch=amd64"])
    );
    // Bad labels, or worker attributes for a client that is no worker: 400.
    for (id, body) in [
        (&worker.id, serde_json::json!({"labels": ["has space"]})),
        (&worker.id, serde_json::json!({"worker_name": "no/slash"})),
        (&reader.id, serde_json::json!({"labels": ["trusted"]})),
    ] {
        let r = http
            .patch(format!("{}/clients/{id}", idp.url()))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST, "{body}");
    }
    let claims = independently_verified_claims(&idp, &idp.token(&worker, None).await).await;
    assert_eq!(
        claims["ick_worker"]["labels"],
        serde_json::json!(["arch=amd64"]),
        "unchanged"
    );
}
