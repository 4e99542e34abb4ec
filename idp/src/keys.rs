//! Ed25519 signing keys: PKCS#8 PEM files in `DATA_DIR/keys/`, mode 0600.
//! All of them are published in the JWKS; the newest (the last by file
//! name, and generated names start with a UTC timestamp) signs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ick_api::oauth::{Jwk, JwkSet};
use jsonwebtoken::EncodingKey;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// One key: its id, public half, and the signer.
pub struct SigningKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// Where it was read from.
    pub path: PathBuf,
    public: Vec<u8>,
    encoding: EncodingKey,
}

impl SigningKey {
    fn from_pkcs8(der: &[u8], path: PathBuf) -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        let public = pair.public_key().as_ref().to_vec();
        Ok(SigningKey {
            kid: thumbprint(&public),
            path,
            public,
            encoding: EncodingKey::from_ed_der(der),
        })
    }

    /// The key as a JWK.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some(URL_SAFE_NO_PAD.encode(&self.public)),
            kid: Some(self.kid.clone()),
            use_: Some("sig".into()),
            alg: Some("EdDSA".into()),
        }
    }

    /// The key jsonwebtoken signs with.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key.
fn thumbprint(public: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The keys in use: the last signs, all are published.
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// Loads every `*.pem` in `dir`, generating a first key when there is
    /// none. Refuses key files that others can read.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<KeyRing> {
        let ring = Self::load(dir)?;
        if !ring.keys.is_empty() {
            return Ok(ring);
        }
        generate(dir)?;
        Self::load(dir)
    }

    /// Loads every `*.pem` in `dir` (none if it does not exist).
    pub fn load(dir: &Path) -> anyhow::Result<KeyRing> {
        let mut paths = Vec::new();
        match fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let path = entry?.path();
                    if path.extension().is_some_and(|e| e == "pem") {
                        paths.push(path);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(format!("cannot read {}", dir.display())),
        }
        paths.sort();
        let mut keys = Vec::new();
        for path in paths {
            let mode = fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                bail!(
                    "signing key {} is readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                );
            }
            let der = PrivatePkcs8KeyDer::from_pem_file(&path)
                .map_err(|e| anyhow::anyhow!("cannot read key {}: {e}", path.display()))?;
            keys.push(SigningKey::from_pkcs8(der.secret_pkcs8_der(), path)?);
        }
        Ok(KeyRing { keys })
    }

    /// The key that signs new tokens.
    pub fn signing(&self) -> Option<&SigningKey> {
        self.keys.last()
    }

    /// All keys, oldest first.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The published set.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(SigningKey::jwk).collect(),
        }
    }
}

/// Writes a new key into `dir` (mode 0600, directory 0700) and returns its
/// path. Once the IDP reloads (SIGHUP or restart) it signs with it.
pub fn generate(dir: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    let key = SigningKey::from_pkcs8(pkcs8.as_ref(), PathBuf::new())?;
    // The newest key signs, and "newest" is the last name: the new name
    // must sort after every existing one, even within one clock tick.
    let last = KeyRing::load(dir)?.keys().last().map(|k| k.path.clone());
    let path = loop {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ");
        let path = dir.join(format!("{stamp}-{}.pem", &key.kid[..8]));
        if last.as_ref().is_none_or(|last| path > *last) {
            break path;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    let body = STANDARD.encode(pkcs8.as_ref());
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

/// Deletes the key with id `kid` from `dir`; refuses to remove the last one.
pub fn remove(dir: &Path, kid: &str) -> anyhow::Result<PathBuf> {
    let ring = KeyRing::load(dir)?;
    let key = ring
        .keys()
        .iter()
        .find(|k| k.kid == kid)
        .with_context(|| format!("no key with id {kid} in {}", dir.display()))?;
    if ring.keys().len() == 1 {
        bail!("{kid} is the only key; generate another before removing it");
    }
    fs::remove_file(&key.path)?;
    Ok(key.path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_load_generates_a_private_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        let ring = KeyRing::load_or_create(&keys).expect("creates");
        assert_eq!(ring.keys().len(), 1);
        let key = ring.signing().expect("a signing key");
        let mode = fs::metadata(&key.path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ring.jwks().keys[0].kid.as_deref(), Some(key.kid.as_str()));
    }

    #[test]
    fn newest_key_signs_and_all_are_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Quick succession: each new key must still be the one that signs.
        for n in 1..=20 {
            let newest = generate(dir.path()).expect("generates");
            let ring = KeyRing::load(dir.path()).expect("loads");
            assert_eq!(ring.jwks().keys.len(), n);
            assert_eq!(ring.signing().map(|k| k.path.clone()), Some(newest));
        }
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = generate(dir.path()).expect("generates");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = KeyRing::load(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("readable by others"), "{err}");
    }

    #[test]
    fn the_last_key_cannot_be_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate(dir.path()).expect("generates");
        let kid = KeyRing::load(dir.path()).expect("loads").keys()[0]
            .kid
            .clone();
        assert!(remove(dir.path(), &kid).is_err());
        generate(dir.path()).expect("generates");
        remove(dir.path(), &kid).expect("removes");
        assert_eq!(KeyRing::load(dir.path()).expect("loads").keys().len(), 1);
    }
}
