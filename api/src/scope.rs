//! Scope names, the one place they are spelled.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A permission a token can carry, named `<resource>:<verb>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read projects and pipelines.
    ProjectsRead,
    /// Create, change and delete projects and pipelines.
    ProjectsWrite,
    /// Read builds, their logs and the workers.
    BuildsRead,
    /// Start builds.
    BuildsTrigger,
    /// Cancel builds.
    BuildsCancel,
    /// Claim and run actions (worker-managers).
    WorkRun,
    /// Download blobs and read refs.
    BlobsRead,
    /// Upload blobs and set refs.
    BlobsWrite,
    /// Delete blobs and refs.
    BlobsDelete,
    /// Manage the IDP's clients.
    IdpAdmin,
    /// Read a service's `/metrics`.
    MetricsRead,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 11] = [
        Scope::ProjectsRead,
        Scope::ProjectsWrite,
        Scope::BuildsRead,
        Scope::BuildsTrigger,
        Scope::BuildsCancel,
        Scope::WorkRun,
        Scope::BlobsRead,
        Scope::BlobsWrite,
        Scope::BlobsDelete,
        Scope::IdpAdmin,
        Scope::MetricsRead,
    ];

    /// The scope's wire name, e.g. `builds:read`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::ProjectsRead => "projects:read",
            Scope::ProjectsWrite => "projects:write",
            Scope::BuildsRead => "builds:read",
            Scope::BuildsTrigger => "builds:trigger",
            Scope::BuildsCancel => "builds:cancel",
            Scope::WorkRun => "work:run",
            Scope::BlobsRead => "blobs:read",
            Scope::BlobsWrite => "blobs:write",
            Scope::BlobsDelete => "blobs:delete",
            Scope::IdpAdmin => "idp:admin",
            Scope::MetricsRead => "metrics:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that Ick does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_string()))
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of scopes; on the wire (OAuth2 `scope`) a space-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// Every scope there is.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// Whether every scope of `other` is in this set.
    pub fn is_superset(&self, other: &ScopeSet) -> bool {
        self.0.is_superset(&other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// The scopes of this set that `other` lacks.
    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.difference(&other.0).copied().collect())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        ScopeSet(iter.into_iter().collect())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl FromStr for ScopeSet {
    type Err = UnknownScope;

    /// Parses the OAuth2 form: names separated by spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(' ')
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    /// Accepts a list of names or one space-separated string.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ScopeSet;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of scope names or a space-separated string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ScopeSet, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ScopeSet, A::Error> {
                let mut set = BTreeSet::new();
                while let Some(scope) = seq.next_element::<Scope>()? {
                    set.insert(scope);
                }
                Ok(ScopeSet(set))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips_through_its_name() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
    }

    #[test]
    fn scope_set_parses_the_oauth2_form_and_refuses_unknown_names() {
        let set: ScopeSet = "builds:read  projects:read".parse().expect("valid");
        assert!(set.contains(Scope::BuildsRead));
        assert!(set.contains(Scope::ProjectsRead));
        assert!(!set.contains(Scope::BuildsTrigger));
        assert_eq!(set.to_string(), "projects:read builds:read");
        assert_eq!(
            "builds:read root".parse::<ScopeSet>(),
            Err(UnknownScope("root".into()))
        );
    }

    #[test]
    fn json_names_the_unknown_scope() {
        let err =
            serde_json::from_str::<ScopeSet>(r#"["work:run", "work:ru"]"#).expect_err("refused");
        assert!(
            err.to_string().contains("unknown scope \"work:ru\""),
            "{err}"
        );
        let set: ScopeSet = serde_json::from_str(r#""work:run blobs:read""#).expect("text form");
        assert_eq!(set.iter().count(), 2);
    }

    #[test]
    fn superset_and_difference() {
        let all = ScopeSet::all();
        let some: ScopeSet = "work:run blobs:read".parse().expect("valid");
        assert!(all.is_superset(&some));
        assert!(!some.is_superset(&all));
        assert_eq!(some.difference(&all), ScopeSet::default());
        assert_eq!(all.difference(&some).iter().count(), Scope::ALL.len() - 2);
    }
}
