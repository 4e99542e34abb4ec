//! Definition files, as `icktool apply` reads them.
//!
//! A file holds one or more YAML documents. Each document is either a
//! collection, as in the original Ick's `.ick` files:
//!
//! ```yaml
//! pipelines:
//!   - pipeline: construct            # or name: construct
//!     actions: [{where: host, shell: "day 1"}]
//! projects:
//!   - project: rome                  # or name: rome
//!     parameters: {foo: bar}
//!     pipelines: [construct]
//! ```
//!
//! or one definition named by its kind key (`pipeline: construct` with its
//! fields beside it, or `project: rome`).
//!
//! Everything is parsed (with file, line and column on a mistake) and
//! checked with the controller's own rules before anything is sent, so
//! that a bad file changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ick_api::controller::{DefinitionKind, PipelineSpec, ProjectSpec};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_yaml::{Mapping, Value};

/// One definition found in a file.
#[derive(Debug, Clone)]
pub struct Definition {
    pub kind: DefinitionKind,
    pub name: String,
    /// The YAML sent to the controller: the entry as written (its keys in
    /// their order), named by `name:`.
    pub text: String,
    /// Where it was found, for messages: `FILE:LINE` (or `FILE`).
    pub origin: String,
    pub spec: Spec,
}

/// The parsed definition.
#[derive(Debug, Clone)]
pub enum Spec {
    Project(ProjectSpec),
    Pipeline(PipelineSpec),
}

/// A mistake in a file, located as precisely as the parser allows.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct FileError {
    pub origin: String,
    pub message: String,
}

pub fn kind_name(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Project => "project",
        DefinitionKind::Pipeline => "pipeline",
    }
}

/// Which key names an entry of each kind (beside `name:`).
trait KindKey {
    const KEY: &'static str;
}

impl KindKey for PipelineSpec {
    const KEY: &'static str = "pipeline";
}

impl KindKey for ProjectSpec {
    const KEY: &'static str = "project";
}

/// A spec whose kind key (`pipeline:`/`project:`) is read as `name:`, so
/// that the spec's own strict parser (unknown fields refused) does the rest
/// and serde_yaml locates its mistakes in the file.
struct Entry<T>(T);

impl<'de, T: Deserialize<'de> + KindKey> Deserialize<'de> for Entry<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + KindKey> Visitor<'de> for EntryVisitor<T> {
            type Value = Entry<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} definition (a map)", T::KEY)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry<T>, A::Error> {
                let renamed = Renamed {
                    inner: map,
                    key: T::KEY,
                };
                T::deserialize(de::value::MapAccessDeserializer::new(renamed)).map(Entry)
            }
        }
        deserializer.deserialize_map(EntryVisitor(PhantomData))
    }
}

struct Renamed<A> {
    inner: A,
    key: &'static str,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Renamed<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(RenameKey {
            seed,
            key: self.key,
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// Reads a key, renamed, from within serde_yaml's own visit of it, so that
/// an error about the key (`unknown field`) carries the key's position.
struct RenameKey<K> {
    seed: K,
    key: &'static str,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for RenameKey<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for RenameKey<K> {
    type Value = K::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<K::Value, E> {
        let key = if key == self.key { "name" } else { key };
        self.seed
            .deserialize(de::value::StringDeserializer::<E>::new(key.to_string()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Collection {
    #[serde(default)]
    pipelines: Vec<Entry<PipelineSpec>>,
    #[serde(default)]
    projects: Vec<Entry<ProjectSpec>>,
}

/// What a document is, from its top-level keys.
enum Shape {
    Collection,
    Single(DefinitionKind),
}

fn located(file: &str, e: &serde_yaml::Error) -> FileError {
    let message = e.to_string();
    match e.location() {
        Some(at) => {
            // serde_yaml ends its text with the position; it is in front.
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            let message = match message.find(&suffix) {
                Some(i) => format!("{}{}", &message[..i], &message[i + suffix.len()..]),
                None => message,
            };
            FileError {
                origin: format!("{file}:{}:{}", at.line(), at.column()),
                message,
            }
        }
        None => FileError {
            origin: file.to_string(),
            message,
        },
    }
}

fn at_file(file: &str, message: impl Into<String>) -> FileError {
    FileError {
        origin: file.to_string(),
        message: message.into(),
    }
}

/// The line where `name` is given as `key: name` (or `name: name`), for
/// messages about a definition that parsed but is not valid.
fn find_line(text: &str, key: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches("- ").trim();
            [key, "name"].iter().any(|k| {
                line.strip_prefix(k)
                    .and_then(|rest| rest.trim_start().strip_prefix(':'))
                    .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\''))
                    == Some(name)
            })
        })
        .map(|i| i + 1)
}

/// Parses the text of one file (`file` names it in messages).
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Definition>, FileError> {
    let mut found = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| located(file, &e))?;
        let map = match value {
            Value::Null => continue,
            Value::Mapping(map) => map,
            _ => {
                return Err(at_file(
                    file,
                    "a definition file holds maps: `pipelines:` and `projects:` lists, or one \
                     definition named by a `pipeline:` or `project:` key",
                ));
            }
        };
        let shape = shape(&map).map_err(|m| at_file(file, m))?;
        // Parse the same document again, typed, so that serde_yaml says
        // where a mistake is.
        let typed = serde_yaml::Deserializer::from_str(text)
            .nth(index)
            .ok_or_else(|| at_file(file, "the file changed while it was read"))?;
        match shape {
            Shape::Single(DefinitionKind::Pipeline) => {
                let Entry(spec) =
                    Entry::<PipelineSpec>::deserialize(typed).map_err(|e| located(file, &e))?;
                found.push(definition(
                    file,
                    text,
                    Value::Mapping(map),
                    Spec::Pipeline(spec),
                )?);
            }
            Shape::Single(DefinitionKind::Project) => {
                let Entry(spec) =
                    Entry::<ProjectSpec>::deserialize(typed).map_err(|e| located(file, &e))?;
                found.push(definition(
                    file,
                    text,
                    Value::Mapping(map),
                    Spec::Project(spec),
                )?);
            }
            Shape::Collection => {
                let collection = Collection::deserialize(typed).map_err(|e| located(file, &e))?;
                let list = |key: &str| match map.get(key) {
                    Some(Value::Sequence(items)) => items.clone(),
                    _ => Vec::new(),
                };
                for (Entry(spec), raw) in collection.pipelines.into_iter().zip(list("pipelines")) {
                    found.push(definition(file, text, raw, Spec::Pipeline(spec))?);
                }
                for (Entry(spec), raw) in collection.projects.into_iter().zip(list("projects")) {
                    found.push(definition(file, text, raw, Spec::Project(spec))?);
                }
            }
        }
    }
    Ok(found)
}

fn shape(map: &Mapping) -> Result<Shape, String> {
    let has = |key: &str| map.contains_key(key);
    match (has("pipeline"), has("project")) {
        (true, true) => {
            Err("a definition names itself by `pipeline:` or `project:`, not both".to_string())
        }
        (true, false) => Ok(Shape::Single(DefinitionKind::Pipeline)),
        (false, true) => Ok(Shape::Single(DefinitionKind::Project)),
        (false, false) if has("projects") || has("pipelines") => Ok(Shape::Collection),
        (false, false) => Err(
            "nothing to apply: give `pipelines:` and `projects:` lists, or one definition \
             named by a `pipeline:` or `project:` key"
                .to_string(),
        ),
    }
}

/// Builds a definition from its parsed spec and its raw map.
fn definition(file: &str, text: &str, raw: Value, spec: Spec) -> Result<Definition, FileError> {
    let (kind, name) = match &spec {
        Spec::Pipeline(p) => (DefinitionKind::Pipeline, p.name.clone()),
        Spec::Project(p) => (DefinitionKind::Project, p.name.clone()),
    };
    let key = kind_name(kind);
    let Some(name) = name else {
        return Err(at_file(
            file,
            format!("a {key} without a name: give it `{key}: NAME`"),
        ));
    };
    let origin = match find_line(text, key, &name) {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    };
    let Value::Mapping(raw) = raw else {
        return Err(at_file(file, format!("{key} {name:?} is not a map")));
    };
    let mut sent = Mapping::new();
    for (k, v) in raw {
        if k.as_str() == Some(key) {
            sent.insert(Value::String("name".into()), v);
        } else {
            sent.insert(k, v);
        }
    }
    let text =
        serde_yaml::to_string(&Value::Mapping(sent)).map_err(|e| at_file(file, e.to_string()))?;
    Ok(Definition {
        kind,
        name,
        text,
        origin,
        spec,
    })
}

/// The files `-f PATH` names: the file itself, `-` for stdin, or the
/// `*.yaml`, `*.yml` and `*.ick` files of a folder (not its sub-folders),
/// sorted.
pub fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path == Path::new("-") {
        return Ok(vec![path.to_path_buf()]);
    }
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
    {
        let p = entry?.path();
        let definition_file = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "ick"));
        if definition_file && p.is_file() {
            found.push(p);
        }
    }
    found.sort();
    if found.is_empty() {
        bail!("{} holds no *.yaml, *.yml or *.ick file", path.display());
    }
    Ok(found)
}

/// Reads and parses everything `paths` name; refuses a definition given
/// twice.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Definition>> {
    let mut all: Vec<Definition> = Vec::new();
    let mut seen: BTreeMap<(&'static str, String), String> = BTreeMap::new();
    for path in paths {
        for file in files(path)? {
            let (display, text) = if file == Path::new("-") {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .context("cannot read stdin")?;
                ("<stdin>".to_string(), text)
            } else {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                (file.display().to_string(), text)
            };
            for definition in parse_file(&display, &text)? {
                let key = (kind_name(definition.kind), definition.name.clone());
                if let Some(first) = seen.get(&key) {
                    bail!(
                        "{}: {} {:?} is defined twice (first at {first})",
                        definition.origin,
                        key.0,
                        definition.name
                    );
                }
                seen.insert(key, definition.origin.clone());
                all.push(definition);
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "\
projects:
  - project: rome
    parameters:
      foo: bar
    pipelines:
      - construct
pipelines:
  - pipeline: construct
    actions:
      - where: host
        shell: day 1
";

    #[test]
    fn the_original_ick_format_is_read() {
        let defs = parse_file("rome.ick", ORIGINAL).expect("parses");
        assert_eq!(defs.len(), 2);
        let pipeline = &defs[0];
        assert_eq!(pipeline.kind, DefinitionKind::Pipeline);
        assert_eq!(pipeline.name, "construct");
        assert_eq!(pipeline.origin, "rome.ick:8");
        assert!(
            pipeline.text.starts_with("name: construct\n"),
            "{}",
            pipeline.text
        );
        let project = &defs[1];
        assert_eq!(project.name, "rome");
        let Spec::Project(spec) = &project.spec else {
            panic!("a project")
        };
        assert_eq!(spec.pipelines, vec!["construct"]);
        // What is sent parses as the controller parses it.
        ick_controller::definitions::parse_project(&project.text, "rome").expect("valid");
        ick_controller::definitions::parse_pipeline(&pipeline.text, "construct", |_| false)
            .expect("valid");
    }

    #[test]
    fn single_definitions_and_several_documents() {
        let text =
            "pipeline: a\nactions: [{shell: 'true'}]\n---\nname: b\nactions: [{python: 'pass'}]\n";
        let err = parse_file("x.yaml", text).expect_err("the second has no kind");
        assert!(err.message.contains("nothing to apply"), "{err}");
        let text = "pipeline: a\nactions: [{shell: 'true'}]\n---\nproject: p\npipelines: [a]\n";
        let defs = parse_file("x.yaml", text).expect("parses");
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[1].kind, DefinitionKind::Project);
        assert_eq!(defs[1].origin, "x.yaml:4");
    }

    #[test]
    fn mistakes_are_located_in_the_file() {
        // A syntax error.
        let err = parse_file("bad.yaml", "pipelines:\n  - pipeline: a\n    actions: [\n")
            .expect_err("bad");
        assert!(err.origin.starts_with("bad.yaml:"), "{err}");
        // A typo in a field, in the second document.
        let text = "pipeline: a\nactions: [{shell: 'true'}]\n---\npipeline: b\nactoins: []\n";
        let err = parse_file("t.yaml", text).expect_err("typo");
        assert!(err.message.contains("actoins"), "{err}");
        assert_eq!(err.origin, "t.yaml:5:1", "{err}");
        assert!(
            !err.message.contains("line 5"),
            "the position is said once: {err}"
        );
        // A bad value deep inside.
        let text =
            "pipelines:\n  - pipeline: a\n    actions:\n      - shell: x\n        where: moon\n";
        let err = parse_file("w.yaml", text).expect_err("where");
        assert!(err.origin.starts_with("w.yaml:5:"), "{err}");
        assert!(err.message.contains("moon"), "{err}");
    }
}
