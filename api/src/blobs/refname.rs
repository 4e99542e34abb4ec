//! Ref names: mutable names that point at blobs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest ref name, in bytes.
pub const MAX_REF_NAME: usize = 512;
/// Longest segment of a ref name, in bytes (it becomes a file name on disk).
pub const MAX_REF_SEGMENT: usize = 200;

/// A ref name: segments of `[A-Za-z0-9._-]` joined by `/`, e.g.
/// `projects/rome/workspace`. No segment is empty, `.` or `..`, so a name
/// is also a safe relative path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

/// Why a string is not a ref name (or prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid ref name: {why}")]
pub struct RefNameError {
    /// What was given (control characters escaped by `Debug`).
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl RefName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for RefName {
    type Err = RefNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why| {
            Err(RefNameError {
                input: s.to_string(),
                why,
            })
        };
        if s.is_empty() {
            return fail("it is empty");
        }
        if s.len() > MAX_REF_NAME {
            return fail("it is longer than 512 bytes");
        }
        for segment in s.split('/') {
            if segment.is_empty() {
                return fail("segments between slashes must not be empty");
            }
            if segment == "." || segment == ".." {
                return fail("segments must not be . or ..");
            }
            if segment.len() > MAX_REF_SEGMENT {
                return fail("a segment is longer than 200 bytes");
            }
            if !segment.chars().all(allowed) {
                return fail(
                    "only letters, digits, '.', '_', '-' and '/' between segments are allowed",
                );
            }
        }
        Ok(RefName(s.to_string()))
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for RefName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RefName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What `GET /refs?prefix=` lists: the names that start with this text.
/// It may end anywhere, in the middle of a segment or after a `/`, but has
/// only the characters of ref names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefPrefix(String);

impl RefPrefix {
    /// The prefix as text (empty: every ref).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` starts with this prefix.
    pub fn matches(&self, name: &RefName) -> bool {
        name.as_str().starts_with(&self.0)
    }

    /// The complete segments of the prefix (those before its last `/`):
    /// every match lies under them.
    pub fn directory(&self) -> impl Iterator<Item = &str> {
        let dir = match self.0.rfind('/') {
            Some(at) => &self.0[..at],
            None => "",
        };
        dir.split('/').filter(|s| !s.is_empty())
    }
}

impl FromStr for RefPrefix {
    type Err = RefNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why| {
            Err(RefNameError {
                input: s.to_string(),
                why,
            })
        };
        if s.len() > MAX_REF_NAME {
            return fail("the prefix is longer than 512 bytes");
        }
        if !s.chars().all(|c| allowed(c) || c == '/') {
            return fail("a prefix has only letters, digits, '.', '_', '-' and '/'");
        }
        if s.starts_with('/') || s.contains("//") {
            return fail("segments between slashes must not be empty");
        }
        let prefix = RefPrefix(s.to_string());
        if prefix.directory().any(|seg| seg == "." || seg == "..") {
            return fail("segments must not be . or ..");
        }
        Ok(prefix)
    }
}

impl fmt::Display for RefPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_parse_and_keep_their_segments() {
        for name in [
            "a",
            "projects/rome/workspace",
            "v1.2_x-y/.hidden/a..b",
            "A/B/0",
        ] {
            let parsed: RefName = name.parse().expect(name);
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.segments().collect::<Vec<_>>().join("/"), name);
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        let long_segment = "x".repeat(201);
        let long_name = ["a"; 300].join("/");
        let cases = [
            ("", "empty"),
            ("/a", "empty"),
            ("a/", "empty"),
            ("a//b", "empty"),
            ("..", ". or .."),
            ("a/../b", ". or .."),
            ("./a", ". or .."),
            ("a b", "only letters"),
            ("a\u{1}b", "only letters"),
            ("a\nb", "only letters"),
            ("a\\b", "only letters"),
            ("caf\u{e9}", "only letters"),
            ("a%2Fb", "only letters"),
            (long_segment.as_str(), "longer than 200"),
            (long_name.as_str(), "longer than 512"),
        ];
        for (input, why) in cases {
            let err = input
                .parse::<RefName>()
                .err()
                .unwrap_or_else(|| panic!("{input:?} accepted"));
            assert!(err.to_string().contains(why), "{input:?}: {err}");
        }
    }

    #[test]
    fn json_refuses_a_bad_name() {
        assert!(serde_json::from_str::<RefName>("\"a/../b\"").is_err());
        let name: RefName = serde_json::from_str("\"a/b\"").expect("valid");
        assert_eq!(serde_json::to_string(&name).expect("json"), "\"a/b\"");
    }

    #[test]
    fn prefixes_match_by_text_and_know_their_directory() {
        let name: RefName = "projects/rome/workspace".parse().expect("valid");
        for (prefix, matches, dir) in [
            ("", true, vec![]),
            ("proj", true, vec![]),
            ("projects/", true, vec!["projects"]),
            ("projects/ro", true, vec!["projects"]),
            ("projects/rome/workspace", true, vec!["projects", "rome"]),
            ("projects/paris", false, vec!["projects"]),
        ] {
            let p: RefPrefix = prefix.parse().expect(prefix);
            assert_eq!(p.matches(&name), matches, "{prefix}");
            assert_eq!(p.directory().collect::<Vec<_>>(), dir, "{prefix}");
        }
        for bad in ["/a", "a//b", "a\u{0}", "a b", "../", "a/./b"] {
            assert!(bad.parse::<RefPrefix>().is_err(), "{bad:?}");
        }
    }
}
