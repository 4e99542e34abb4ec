//! Proofs that a web hook comes from whoever holds a project's trigger
//! secret, checked on the raw body in constant time before anything in it
//! is read.

use hmac::{Hmac, Mac};
use ick_api::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// What a request offers as proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// An HMAC-SHA256 of the raw body, keyed with the secret (GitHub,
    /// Gitea, generic).
    Hmac(Vec<u8>),
    /// The secret itself (GitLab's `X-Gitlab-Token`).
    Token(Vec<u8>),
}

impl Proof {
    /// `sha256=HEX` (or bare `HEX` when `prefix` is false).
    pub fn hmac_header(value: &str, prefix: bool) -> Result<Proof, String> {
        let hex_part = if prefix {
            value
                .trim()
                .strip_prefix("sha256=")
                .ok_or("the signature does not start with sha256=")?
        } else {
            value.trim()
        };
        let bytes = hex::decode(hex_part).map_err(|_| "the signature is not hexadecimal")?;
        if bytes.len() != 32 {
            return Err("the signature is not an HMAC-SHA256".to_string());
        }
        Ok(Proof::Hmac(bytes))
    }
}

/// The HMAC-SHA256 of `body` keyed with `secret`, as hex.
#[cfg(test)]
pub fn sign(secret: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, body))
}

fn mac(secret: &str, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The project whose secret made `proof` of `body`, if any. Each secret is
/// compared in constant time; tokens are compared through their SHA-256 so
/// that not even their lengths show.
pub fn signer<'a>(proof: &Proof, body: &[u8], secrets: &'a [(String, Secret)]) -> Option<&'a str> {
    let mut found = None;
    for (project, secret) in secrets {
        let matches = match proof {
            Proof::Hmac(given) => mac(secret.expose(), body).ct_eq(given),
            Proof::Token(given) => {
                let given = Sha256::digest(given);
                let wanted = Sha256::digest(secret.expose().as_bytes());
                given[..].ct_eq(&wanted[..])
            }
        };
        if bool::from(matches) && found.is_none() {
            found = Some(project.as_str());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Vec<(String, Secret)> {
        vec![
            ("a".to_string(), Secret::new("first-secret")),
            ("b".to_string(), Secret::new("second-secret")),
        ]
    }

    #[test]
    fn the_project_whose_secret_signed_is_found() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        // The example from GitHub's documentation.
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let header = format!("sha256={}", sign("second-secret", body));
        let proof = Proof::hmac_header(&header, true).expect("parses");
        assert_eq!(signer(&proof, body, &secrets()), Some("b"));
        let other_body = br#"{"ref":"refs/heads/evil"}"#;
        assert_eq!(signer(&proof, other_body, &secrets()), None);
        let wrong = format!("sha256={}", sign("third-secret", body));
        let proof = Proof::hmac_header(&wrong, true).expect("parses");
        assert_eq!(signer(&proof, body, &secrets()), None);
    }

    #[test]
    fn malformed_signatures_are_refused() {
        assert!(Proof::hmac_header("abc", true).is_err());
        assert!(Proof::hmac_header("sha256=zz", true).is_err());
        assert!(Proof::hmac_header("sha256=abcd", true).is_err());
        let bare = sign("x", b"y");
        assert!(Proof::hmac_header(&bare, false).is_ok());
        assert!(Proof::hmac_header(&format!("sha1={bare}"), true).is_err());
    }

    #[test]
    fn tokens_match_their_secret_only() {
        let proof = Proof::Token(b"first-secret".to_vec());
        assert_eq!(signer(&proof, b"", &secrets()), Some("a"));
        let proof = Proof::Token(b"first-secre".to_vec());
        assert_eq!(signer(&proof, b"", &secrets()), None);
    }
}
