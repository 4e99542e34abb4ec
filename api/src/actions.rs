//! Actions: the steps of a pipeline, as users write them in YAML and as
//! the controller hands them to a worker in JSON.
//!
//! An action is a map with exactly one *kind key* whose value is the
//! kind's spec, plus common fields:
//!
//! ```yaml
//! - shell: make check            # kind shell, spec "make check"
//!   where: container             # host (default) | chroot | container
//!   timeout: 10m                 # seconds or a duration
//!   env: {CI: "1"}
//!   network: false               # inside chroot/container (default false)
//! - git: {url: "https://…", ref: main, dir: src}
//! - archive: {path: build, ref: "hello/output"}
//! - populate: {ref: "debian/bookworm", into: systree, optional: true}
//! - docker-push: {image: ick}    # any other kind: a worker plugin
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The kinds every worker-manager runs itself; others are plugins.
pub const BUILTIN_KINDS: [&str; 5] = ["shell", "python", "git", "archive", "populate"];

/// Where an action runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Where {
    /// A plain process on the build host.
    #[default]
    Host,
    /// Inside bubblewrap with the workspace as the root.
    Chroot,
    /// Inside bubblewrap with a system tree as the root and the workspace
    /// at `/workspace`.
    Container,
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// `shell`, `python`, `git`, `archive`, `populate`, or a plugin's name.
    pub kind: String,
    /// The value under the kind key.
    pub spec: Value,
    /// Where it runs.
    pub where_: Where,
    /// Stop it after this long.
    pub timeout: Option<Duration>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Network inside chroot/container (default off; host always has it).
    pub network: Option<bool>,
    /// A label for logs and UIs.
    pub name: Option<String>,
}

const COMMON: [&str; 5] = ["where", "timeout", "env", "network", "name"];

impl Action {
    /// A `shell` action running `script` on the host.
    pub fn shell(script: &str) -> Action {
        Action {
            kind: "shell".into(),
            spec: Value::String(script.into()),
            where_: Where::Host,
            timeout: None,
            env: BTreeMap::new(),
            network: None,
            name: None,
        }
    }

    /// A short description for logs: the name, or the kind and the start
    /// of its spec.
    pub fn describe(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let spec = match &self.spec {
            Value::String(s) => s.lines().next().unwrap_or_default().to_string(),
            other => other.to_string(),
        };
        let mut text = format!("{}: {spec}", self.kind);
        if text.len() > 80 {
            let mut cut = 77;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }

    /// Whether `kind` is built into every worker.
    pub fn is_builtin(&self) -> bool {
        BUILTIN_KINDS.contains(&self.kind.as_str())
    }

    /// The spec parsed as a kind's typed spec.
    pub fn spec_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.spec.clone()).map_err(|e| format!("{} action: {e}", self.kind))
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(&self.kind, &self.spec)?;
        if self.where_ != Where::Host {
            map.serialize_entry("where", &self.where_)?;
        }
        if let Some(t) = self.timeout {
            map.serialize_entry("timeout", &t.as_secs())?;
        }
        if !self.env.is_empty() {
            map.serialize_entry("env", &self.env)?;
        }
        if let Some(n) = self.network {
            map.serialize_entry("network", &n)?;
        }
        if let Some(n) = &self.name {
            map.serialize_entry("name", n)?;
        }
        map.end()
    }
}

/// A timeout as seconds (`600`) or a duration (`10m`).
fn parse_timeout(value: Value) -> Result<Duration, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("timeout must be a positive number of seconds, not {n}")),
        Value::String(s) => humantime_serde::re::humantime::parse_duration(&s)
            .map_err(|e| format!("timeout {s:?} is not a duration: {e}")),
        other => Err(format!(
            "timeout must be seconds or a duration like 10m, not {other}"
        )),
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ActionVisitor;
        impl<'de> Visitor<'de> for ActionVisitor {
            type Value = Action;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action: a map with one kind key such as `shell: make`")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Action, A::Error> {
                let mut kind: Option<(String, Value)> = None;
                let mut action = Action::shell("");
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "where" => action.where_ = map.next_value()?,
                        "timeout" => {
                            action.timeout =
                                Some(parse_timeout(map.next_value()?).map_err(de::Error::custom)?)
                        }
                        "env" => action.env = map.next_value()?,
                        "network" => action.network = Some(map.next_value()?),
                        "name" => action.name = Some(map.next_value()?),
                        _ => {
                            let value: Value = map.next_value()?;
                            if let Some((first, _)) = &kind {
                                return Err(de::Error::custom(format!(
                                    "an action has one kind, but this one has {first:?} and {key:?} \
                                     (common fields are {})",
                                    COMMON.join(", ")
                                )));
                            }
                            kind = Some((key, value));
                        }
                    }
                }
                let (kind, spec) = kind.ok_or_else(|| {
                    de::Error::custom(
                        "the action has no kind: add a key such as shell, python, git, archive or populate",
                    )
                })?;
                action.kind = kind;
                action.spec = spec;
                Ok(action)
            }
        }
        deserializer.deserialize_map(ActionVisitor)
    }
}

/// `git:` — clone or fetch `url` at `ref` into the workspace or `dir`.
/// Missing fields come from the build's `git_url` and `git_ref` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSpec {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, rename = "ref")]
    pub ref_: Option<String>,
    /// A sub-directory of the workspace.
    #[serde(default)]
    pub dir: Option<String>,
}

/// `archive:` — tar `path` of the workspace (default all of it) into a
/// blob, and optionally point the ref `ref` at it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSpec {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, rename = "ref")]
    pub ref_: Option<String>,
}

/// What `populate:` fills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PopulateInto {
    /// The pipeline's workspace (or `path` in it).
    #[default]
    Workspace,
    /// The system tree that `where: container` actions run in.
    Systree,
}

/// `populate:` — unpack the blob `digest` or the one `ref` names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulateSpec {
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default, rename = "ref")]
    pub ref_: Option<String>,
    #[serde(default)]
    pub into: PopulateInto,
    /// A sub-directory of the workspace.
    #[serde(default)]
    pub path: Option<String>,
    /// A missing ref leaves the target empty instead of failing.
    #[serde(default)]
    pub optional: bool,
}

/// Checks the spec of a built-in kind; plugins' specs are theirs to check.
pub fn check_builtin_spec(action: &Action) -> Result<(), String> {
    match action.kind.as_str() {
        "shell" | "python" => match &action.spec {
            Value::String(_) => Ok(()),
            other => Err(format!(
                "{} must be a script (a string), not {other}",
                action.kind
            )),
        },
        "git" => {
            let spec = if action.spec.is_null() {
                GitSpec::default()
            } else {
                action.spec_as::<GitSpec>()?
            };
            let _ = spec;
            Ok(())
        }
        "archive" => action.spec_as::<ArchiveSpec>().map(|_| ()),
        "populate" => {
            let spec = action.spec_as::<PopulateSpec>()?;
            match (&spec.digest, &spec.ref_) {
                (Some(_), Some(_)) => Err("populate takes a digest or a ref, not both".into()),
                (None, None) => Err("populate needs a digest or a ref".into()),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_action_parses_kind_and_common_fields() {
        let a: Action = serde_yaml::from_str(
            "shell: make check\nwhere: container\ntimeout: 10m\nenv: {CI: '1'}\n",
        )
        .expect("parses");
        assert_eq!(a.kind, "shell");
        assert_eq!(a.spec, Value::String("make check".into()));
        assert_eq!(a.where_, Where::Container);
        assert_eq!(a.timeout, Some(Duration::from_secs(600)));
        assert_eq!(a.env.get("CI").map(String::as_str), Some("1"));
        let json = serde_json::to_value(&a).expect("serializes");
        let back: Action = serde_json::from_value(json).expect("round trips");
        assert_eq!(back, a);
    }

    #[test]
    fn two_kinds_or_none_are_refused() {
        let two = serde_yaml::from_str::<Action>("shell: a\npython: b\n");
        assert!(two.expect_err("refused").to_string().contains("one kind"));
        let none = serde_yaml::from_str::<Action>("where: host\n");
        assert!(none.expect_err("refused").to_string().contains("no kind"));
        let bad_where = serde_yaml::from_str::<Action>("shell: a\nwhere: moon\n");
        assert!(bad_where.is_err());
    }

    #[test]
    fn builtin_specs_are_checked() {
        let ok: Action = serde_yaml::from_str("populate: {ref: a/b, optional: true}").expect("ok");
        assert!(check_builtin_spec(&ok).is_ok());
        let both: Action = serde_yaml::from_str("populate: {ref: a, digest: b}").expect("parses");
        assert!(check_builtin_spec(&both).is_err());
        let typo: Action = serde_yaml::from_str("git: {url: x, branch: y}").expect("parses");
        assert!(
            check_builtin_spec(&typo)
                .expect_err("refused")
                .contains("branch")
        );
        let shell_map: Action = serde_yaml::from_str("shell: {a: 1}").expect("parses");
        assert!(check_builtin_spec(&shell_map).is_err());
        let plugin: Action = serde_yaml::from_str("docker-push: {image: x}").expect("parses");
        assert!(!plugin.is_builtin());
        assert!(check_builtin_spec(&plugin).is_ok());
    }
}
