//! Content digests: the names of blobs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The algorithm prefix of every digest Ick uses.
pub const SHA256_PREFIX: &str = "sha256:";

/// The name of a blob: the SHA-256 of its bytes, written `sha256:<64 hex>`
/// with lowercase hex, so that one blob has exactly one name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("{0:?} is not a digest: expected sha256:<64 lowercase hex digits>")]
    Malformed(String),
    /// Another algorithm than SHA-256.
    #[error("unsupported digest algorithm {0:?}: only sha256 is supported")]
    UnsupportedAlgorithm(String),
    /// The hex part is wrong.
    #[error("{0:?} is not a valid sha256 digest: the hex part must be 64 lowercase hex digits")]
    BadHex(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// A digest from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(DIGITS[usize::from(byte >> 4)] as char);
            out.push(DIGITS[usize::from(byte & 0xf)] as char);
        }
        out
    }

    /// The HTTP entity tag of the blob: the digest, quoted.
    pub fn etag(&self) -> String {
        format!("\"{self}\"")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256_PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_string()));
        };
        if algorithm != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm(algorithm.to_string()));
        }
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return Err(DigestError::BadHex(s.to_string()));
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(high), Some(low)) => bytes[i] = high << 4 | low,
                _ => return Err(DigestError::BadHex(s.to_string())),
            }
        }
        Ok(Digest(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Computes a [`Digest`] over bytes given piece by piece. Cloning it keeps
/// a snapshot of the state, so a resumed transfer can go back to a known
/// offset.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_nothing_is_the_well_known_one_and_round_trips() {
        let d = Digest::of(b"");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>(), Ok(d));
        assert_eq!(d.etag(), format!("\"{EMPTY}\""));
        let json = serde_json::to_string(&d).expect("serializes");
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).expect("parses"), d);
    }

    #[test]
    fn hasher_in_pieces_equals_digest_of_the_whole() {
        let mut h = Hasher::new();
        h.update(b"hello ");
        let snapshot = h.clone();
        h.update(b"world");
        assert_eq!(h.finish(), Digest::of(b"hello world"));
        assert_eq!(snapshot.finish(), Digest::of(b"hello "));
    }

    #[test]
    fn malformed_digests_are_refused_with_the_reason() {
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        let cases = [
            ("", "not a digest"),
            ("e3b0c442", "not a digest"),
            ("sha512:abcd", "unsupported digest algorithm"),
            ("SHA256:abcd", "unsupported digest algorithm"),
            ("sha256:", "64 lowercase hex"),
            ("sha256:e3b0", "64 lowercase hex"),
            (&upper, "64 lowercase hex"),
            (&format!("{EMPTY}0"), "64 lowercase hex"),
            (&EMPTY.replace('e', "g"), "64 lowercase hex"),
            (&EMPTY.replace("e3", "é"), "64 lowercase hex"),
        ];
        for (input, why) in cases {
            let err = input
                .parse::<Digest>()
                .err()
                .unwrap_or_else(|| panic!("{input:?} accepted"));
            assert!(err.to_string().contains(why), "{input:?}: {err}");
        }
    }
}
