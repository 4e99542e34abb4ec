//! Projects and pipelines as users write them (YAML) and as the controller
//! returns them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::actions::Action;
use crate::controller::TriggerSpec;

/// Whether `name` is a valid project or pipeline name:
/// `[a-z0-9][a-z0-9._-]*`, at most 100 characters.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() <= 100
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// A pipeline: a named list of actions run in order on one worker, in one
/// workspace.
///
/// ```yaml
/// name: test
/// parameters: [git_url, git_ref]
/// needs: [build]
/// actions:
///   - git: {}
///   - shell: make check
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Optional in a `PUT` body (the path names it); when given it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The build parameters its actions use; a build must give each a value.
    #[serde(default)]
    pub parameters: Vec<String>,
    /// Pipelines of the same project that must succeed before this one starts.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The steps, in order.
    pub actions: Vec<Action>,
}

/// A project: the pipelines a build runs and the parameters it starts with.
///
/// ```yaml
/// name: hello
/// parameters: {git_url: "https://example.org/hello.git", git_ref: main}
/// pipelines: [build, test]
/// runs_on: [linux]
/// concurrency: 1
/// visibility: internal
/// notify: {to: [dev@example.org], on: [failure, fixed]}
/// triggers:
///   - {repository: "https://example.org/hello.git", branches: [main]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    /// Optional in a `PUT` body (the path names it); when given it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Default values of build parameters; a trigger may override them.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// The pipelines a build runs; their `needs:` order them.
    pub pipelines: Vec<String>,
    /// Who hears how builds end.
    #[serde(default, skip_serializing_if = "Notify::is_empty")]
    pub notify: Notify,
    /// Labels a worker must all have to run this project's actions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs_on: Vec<String>,
    /// How many builds of the project may run at once (default: the
    /// controller's `builds.default_concurrency`, normally 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Pushes that start a build through a web hook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerSpec>,
    /// Who may read the project, its builds and logs (default `internal`;
    /// left out when it is, so that older definitions stay as stored).
    #[serde(default, skip_serializing_if = "Visibility::is_default")]
    pub visibility: Visibility,
}

/// Who may read a project besides its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Only its members (and admins); to anyone else it does not exist.
    Private,
    /// Every caller with a valid token.
    #[default]
    Internal,
    /// Also callers without a token: the project, its builds and logs
    /// (never its trigger secret or members).
    Public,
}

impl Visibility {
    /// Every visibility.
    pub const ALL: [Visibility; 3] = [
        Visibility::Private,
        Visibility::Internal,
        Visibility::Public,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Internal => "internal",
            Visibility::Public => "public",
        }
    }

    /// Whether it is `internal`, the default.
    pub fn is_default(&self) -> bool {
        *self == Visibility::Internal
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Visibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Visibility::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown visibility {s:?}: use private, internal or public"))
    }
}

/// When to send mail about a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// The build failed or was cancelled.
    Failure,
    /// The build succeeded.
    Success,
    /// The build succeeded and the one before it failed (or this is a
    /// retry of a build that did not succeed).
    Fixed,
}

/// A project's notification settings: `notify: [a@example.org]` (on
/// failure and fixed) or `notify: {to: [...], on: [failure, success, fixed]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Notify {
    /// Recipients' email addresses.
    pub to: Vec<String>,
    /// When to mail; empty means failure and fixed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<NotifyOn>,
}

impl Notify {
    /// Whether there is nobody to notify.
    pub fn is_empty(&self) -> bool {
        self.to.is_empty() && self.on.is_empty()
    }

    /// When to mail, with the default applied.
    pub fn events(&self) -> Vec<NotifyOn> {
        if self.on.is_empty() {
            vec![NotifyOn::Failure, NotifyOn::Fixed]
        } else {
            self.on.clone()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyMap {
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    on: Vec<NotifyOn>,
}

impl<'de> Deserialize<'de> for Notify {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NotifyVisitor;
        impl<'de> Visitor<'de> for NotifyVisitor {
            type Value = Notify;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of email addresses, or a map with `to` and `on`")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Notify, A::Error> {
                let to = Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Notify { to, on: vec![] })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Notify, A::Error> {
                let m = NotifyMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Notify { to: m.to, on: m.on })
            }
        }
        deserializer.deserialize_any(NotifyVisitor)
    }
}

/// Which kind of definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefinitionKind {
    /// A project.
    Project,
    /// A pipeline.
    Pipeline,
}

/// A definition as stored: `GET /projects/{name}` and `GET /pipelines/{name}`
/// (with `Accept: application/yaml` the answer is `text` alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored<T> {
    /// Its name.
    pub name: String,
    /// Its revision, from 1; every change that is not a no-op adds one.
    pub revision: i64,
    /// When it was first created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Who last changed it: the person's user name, or the client's name.
    pub updated_by: String,
    /// The parsed definition, with `name` set.
    pub spec: T,
    /// The text as applied.
    pub text: String,
}

/// A stored project.
pub type StoredProject = Stored<ProjectSpec>;
/// A stored pipeline.
pub type StoredPipeline = Stored<PipelineSpec>;

/// What a `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// It did not exist (answer 201).
    Created,
    /// It changed: a new revision.
    Updated,
    /// The same definition was applied again: no new revision.
    Unchanged,
}

/// The answer to `PUT /projects/{name}` or `PUT /pipelines/{name}`, and
/// one definition of the answer to `POST /definitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Project or pipeline.
    pub kind: DefinitionKind,
    /// Its name.
    pub name: String,
    /// Its revision now (on a dry run: the one it would have).
    pub revision: i64,
    /// What changed (or would).
    pub change: Change,
    /// What it will do that its author may not expect (e.g. wait for a
    /// worker with a plugin no connected worker has).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// On a dry run: the stored text, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_text: Option<String>,
    /// On a dry run: the text that would be stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A definition file, as `POST /definitions` takes it: parsed as `icktool
/// apply` reads files (see the README), each definition keeping its text
/// as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionFile {
    /// Its name, for messages.
    pub name: String,
    /// Its YAML.
    pub text: String,
}

/// The body of `POST /definitions`: every definition of the files is
/// applied in one transaction, or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The files.
    pub files: Vec<DefinitionFile>,
    /// Check and say what would change, changing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer to `POST /definitions`: pipelines first, then projects, in
/// the order of the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyAnswer {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Each definition.
    pub applied: Vec<Applied>,
}

/// One mistake in the files of `POST /definitions`; a refusal (400)
/// lists all of them in its `errors` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionProblem {
    /// The file.
    pub file: String,
    /// The line, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The column, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl DefinitionProblem {
    /// `FILE`, `FILE:LINE` or `FILE:LINE:COLUMN`.
    pub fn origin(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file),
            (Some(l), None) => format!("{}:{l}", self.file),
            _ => self.file.clone(),
        }
    }
}

/// One entry of `GET /projects/{name}/revisions` (or `/pipelines/...`),
/// newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The revision number.
    pub revision: i64,
    /// Who made it: the person's user name, or the client's name.
    pub author: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Whether this change deleted the definition.
    pub deleted: bool,
    /// The text applied (empty for a deletion).
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "0", "hello", "ick-1.2_x"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "A", "a b", "a/b", "é", &"a".repeat(101)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn visibility_defaults_to_internal_and_is_left_out_then() {
        let old: ProjectSpec = serde_yaml::from_str("pipelines: [a]").expect("old");
        assert_eq!(old.visibility, Visibility::Internal);
        let json = serde_json::to_string(&old).expect("json");
        assert!(!json.contains("visibility"), "{json}");
        let private: ProjectSpec =
            serde_yaml::from_str("pipelines: [a]\nvisibility: private").expect("private");
        assert_eq!(private.visibility, Visibility::Private);
        assert!(
            serde_json::to_string(&private)
                .expect("json")
                .contains("private")
        );
        assert!(serde_yaml::from_str::<ProjectSpec>("pipelines: [a]\nvisibility: secret").is_err());
    }

    #[test]
    fn notify_is_a_list_or_a_map() {
        let list: Notify = serde_yaml::from_str("[a@example.org]").expect("list");
        assert_eq!(list.to, vec!["a@example.org"]);
        assert_eq!(list.events(), vec![NotifyOn::Failure, NotifyOn::Fixed]);
        let map: Notify = serde_yaml::from_str("{to: [b@x.org], on: [success]}").expect("map");
        assert_eq!(map.events(), vec![NotifyOn::Success]);
        assert!(serde_yaml::from_str::<Notify>("{to: [], when: [x]}").is_err());
        assert!(serde_yaml::from_str::<Notify>("{on: [sometimes]}").is_err());
    }
}
