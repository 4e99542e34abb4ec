//! Clients: creating them, their secrets, and checking a presented secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_api::audit::{Actor, AuditAction};
use ick_api::oauth::{ClientInfo, ClientWithSecret};
use ick_api::{Scope, ScopeSet, Secret};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::IdpError;
use crate::store::audit::Note;
use crate::store::{ClientRecord, Store, now_ms};

/// 32 random bytes, base64url: what the IDP hands out as a client secret.
pub fn new_secret() -> Result<Secret, IdpError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| IdpError::Internal("no randomness".to_string()))?;
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(bytes)))
}

/// Hex SHA-256: secrets are random and long, so a fast hash is enough.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `presented` is the secret behind `stored_hash`, in constant time.
pub fn secret_matches(presented: &str, stored_hash: &str) -> bool {
    hash_secret(presented)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A name for a client: what people type, so kept simple.
fn check_name(name: &str) -> Result<(), IdpError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(IdpError::BadRequest(format!(
            "client name {name:?} must be 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

impl From<&ClientRecord> for ClientInfo {
    fn from(c: &ClientRecord) -> Self {
        ClientInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            scopes: c.scopes.clone(),
            audience: c.audience.clone(),
            enabled: c.enabled,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            worker: c.worker_identity(),
            redirect_uris: c.redirect_uris.clone(),
            public: c.public,
            device: c.device,
        }
    }
}

/// A redirect URI a client may register: absolute, no fragment (RFC 6749
/// §3.1.2), `https`, or `http` only to a loopback address (RFC 8252 §7.3,
/// RFC 9700 §2.1): a code sent in the clear elsewhere can be read on the way.
fn check_redirect_uri(uri: &str) -> Result<(), IdpError> {
    let bad = |why: &str| IdpError::BadRequest(format!("redirect URI {uri:?} {why}"));
    let parsed = url::Url::parse(uri).map_err(|_| bad("is not an absolute URL"))?;
    if parsed.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(bad("must be https, or http to a loopback address")),
    }
}

fn check_redirect_uris(uris: &[String]) -> Result<(), IdpError> {
    uris.iter().try_for_each(|u| check_redirect_uri(u))
}

/// How people may log in through a client.
#[derive(Debug, Clone, Default)]
pub struct LoginSettings {
    /// Where codes may be sent.
    pub redirect_uris: Vec<String>,
    /// No secret: login only, with PKCE (or the device grant).
    pub public: bool,
    /// The device grant (RFC 8628) is allowed.
    pub device: bool,
}

/// What an admin says of a worker client: its name and labels, either or
/// both (or neither: the defaults).
#[derive(Debug, Clone, Default)]
pub struct WorkerAttributes {
    pub name: Option<String>,
    pub labels: Option<Vec<String>>,
}

/// The worker identity `record` gets from `given`, over what it had.
fn set_worker(record: &mut ClientRecord, given: WorkerAttributes) -> Result<(), IdpError> {
    if given.name.is_none() && given.labels.is_none() {
        return Ok(());
    }
    if !record.scopes.contains(Scope::WorkRun) {
        return Err(IdpError::BadRequest(format!(
            "a worker name and labels are for clients with {}",
            Scope::WorkRun
        )));
    }
    let mut worker = record.worker_identity().unwrap_or_default();
    if let Some(name) = given.name {
        worker.name = name;
    }
    if let Some(labels) = given.labels {
        worker.labels = labels;
    }
    worker.check().map_err(IdpError::BadRequest)?;
    record.worker = Some(worker);
    Ok(())
}

/// Creates a client and returns it with its secret, the only time the
/// secret is seen.
pub async fn create(
    store: &Store,
    actor: &Actor,
    name: &str,
    scopes: ScopeSet,
    audience: &str,
    worker: WorkerAttributes,
    login: LoginSettings,
) -> Result<ClientWithSecret, IdpError> {
    check_name(name)?;
    if audience.is_empty() {
        return Err(IdpError::BadRequest("audience must not be empty".into()));
    }
    check_redirect_uris(&login.redirect_uris)?;
    if login.public && login.redirect_uris.is_empty() && !login.device {
        return Err(IdpError::BadRequest(
            "a public client is for logging people in: give it a redirect URI, \
             or allow it the device grant"
                .into(),
        ));
    }
    if login.public && scopes.contains(Scope::WorkRun) {
        return Err(IdpError::BadRequest(format!(
            "a public client cannot have {}: workers authenticate with a secret",
            Scope::WorkRun
        )));
    }
    // A public client gets no secret: its hash is empty, which no
    // presented secret's hash equals.
    let secret = (!login.public).then(new_secret).transpose()?;
    let now = now_ms();
    let mut record = ClientRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        secret_sha256: secret
            .as_ref()
            .map(|s| hash_secret(s.expose()))
            .unwrap_or_default(),
        scopes,
        audience: audience.to_string(),
        enabled: true,
        created_at: now,
        updated_at: now,
        worker: None,
        redirect_uris: login.redirect_uris,
        public: login.public,
        device: login.device,
    };
    set_worker(&mut record, worker)?;
    let info = ClientInfo::from(&record);
    let note = Note::new(actor, AuditAction::ClientCreate, name).with(described(&info));
    store.insert(&record, &note).await?;
    Ok(ClientWithSecret {
        client: info,
        client_secret: secret.map(|s| s.expose().to_string()),
    })
}

async fn existing(store: &Store, id_or_name: &str) -> Result<ClientRecord, IdpError> {
    store
        .find(id_or_name)
        .await?
        .ok_or_else(|| IdpError::ClientNotFound(id_or_name.to_string()))
}

/// Changes scopes, enables or disables a client, or changes the worker
/// it is.
pub async fn update(
    store: &Store,
    actor: &Actor,
    id_or_name: &str,
    scopes: Option<ScopeSet>,
    enabled: Option<bool>,
    worker: WorkerAttributes,
    redirect_uris: Option<Vec<String>>,
) -> Result<ClientInfo, IdpError> {
    if let Some(uris) = &redirect_uris {
        check_redirect_uris(uris)?;
    }
    let client = existing(store, id_or_name).await?;
    let mut detail = serde_json::Map::new();
    for (field, value) in [
        ("scopes", scopes.as_ref().map(|s| json!(s.to_string()))),
        ("enabled", enabled.map(Value::from)),
        ("worker_name", worker.name.clone().map(Value::from)),
        ("worker_labels", worker.labels.clone().map(Value::from)),
        ("redirect_uris", redirect_uris.clone().map(Value::from)),
    ] {
        if let Some(value) = value {
            detail.insert(field.to_string(), value);
        }
    }
    let note =
        Note::new(actor, AuditAction::ClientUpdate, &client.name).with(Value::Object(detail));
    let changed = store
        .change(
            &client.id,
            |record| {
                if let Some(scopes) = scopes {
                    record.scopes = scopes;
                }
                if let Some(enabled) = enabled {
                    record.enabled = enabled;
                }
                set_worker(record, worker)?;
                if let Some(uris) = redirect_uris {
                    if record.public && uris.is_empty() && !record.device {
                        return Err(IdpError::BadRequest(
                            "a public client needs a redirect URI".into(),
                        ));
                    }
                    record.redirect_uris = uris;
                }
                record.updated_at = now_ms();
                Ok(())
            },
            &note,
        )
        .await?;
    match changed {
        Some(record) => Ok(ClientInfo::from(&record)),
        None => Err(IdpError::ClientNotFound(id_or_name.to_string())),
    }
}

/// Gives a client a new secret; the old one stops working at once.
pub async fn rotate(
    store: &Store,
    actor: &Actor,
    id_or_name: &str,
) -> Result<ClientWithSecret, IdpError> {
    let mut record = existing(store, id_or_name).await?;
    if record.public {
        return Err(IdpError::BadRequest(format!(
            "client {} is public: it has no secret to rotate",
            record.name
        )));
    }
    let secret = new_secret()?;
    record.secret_sha256 = hash_secret(secret.expose());
    record.updated_at = now_ms();
    if !store
        .set_secret(
            &record.id,
            &record.secret_sha256,
            record.updated_at,
            &Note::new(actor, AuditAction::ClientRotateSecret, &record.name),
        )
        .await?
    {
        return Err(IdpError::ClientNotFound(id_or_name.to_string()));
    }
    Ok(ClientWithSecret {
        client: ClientInfo::from(&record),
        client_secret: Some(secret.expose().to_string()),
    })
}

/// Shows one client.
pub async fn show(store: &Store, id_or_name: &str) -> Result<ClientInfo, IdpError> {
    Ok(ClientInfo::from(&existing(store, id_or_name).await?))
}

/// Deletes a client.
pub async fn delete(store: &Store, actor: &Actor, id_or_name: &str) -> Result<(), IdpError> {
    let record = existing(store, id_or_name).await?;
    let note = Note::new(actor, AuditAction::ClientDelete, &record.name);
    if store.delete(&record.id, &note).await? {
        Ok(())
    } else {
        Err(IdpError::ClientNotFound(id_or_name.to_string()))
    }
}

/// A client as its audit entry describes it (there is no secret in it).
fn described(info: &ClientInfo) -> Value {
    serde_json::to_value(info).unwrap_or_default()
}

/// Parses scope names given one by one or space-separated.
pub fn parse_scopes<S: AsRef<str>>(names: &[S]) -> Result<ScopeSet, IdpError> {
    let mut set = Vec::<Scope>::new();
    for name in names {
        let parsed: ScopeSet = name
            .as_ref()
            .parse()
            .map_err(|e| IdpError::BadRequest(format!("{e}")))?;
        set.extend(parsed.iter());
    }
    Ok(set.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_only_its_own_hash() {
        let secret = new_secret().expect("random");
        assert_eq!(secret.expose().len(), 43);
        let hash = hash_secret(secret.expose());
        assert!(secret_matches(secret.expose(), &hash));
        assert!(!secret_matches("guess", &hash));
        assert_ne!(new_secret().expect("random"), secret);
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragments() {
        for good in [
            "https://ci.example.org/callback",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert!(check_redirect_uri(good).is_ok(), "{good}");
        }
        for bad in [
            "http://ci.example.org/cb",
            "https://ci.example.org/cb#x",
            "/cb",
            "javascript:alert(1)",
            "ftp://127.0.0.1/",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ci-admin_1.x").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
