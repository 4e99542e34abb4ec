//! Definition files, as `icktool apply` reads them and `POST /definitions`
//! receives them.
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
//! Each definition keeps its text as the user wrote it, comments and all:
//! a whole document, or a list entry moved left by its indentation.

use std::collections::BTreeMap;
use std::fmt;

use ick_api::controller::{DefinitionKind, PipelineSpec, ProjectSpec};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use crate::DefinitionError;
use crate::entry::{Collection, Entry};

/// One definition found in a file.
#[derive(Debug, Clone)]
pub struct Definition {
    pub kind: DefinitionKind,
    pub name: String,
    /// Its text: as written when `exact`, else the entry written anew
    /// (named by `name:`).
    pub text: String,
    /// Whether `text` is the user's own.
    pub exact: bool,
    /// The file it is in, for messages.
    pub file: String,
    /// The line of the file where `text` starts, from 1.
    pub line: usize,
    /// How many columns `text` was moved left (a list entry's indentation).
    pub indent: usize,
    pub spec: Spec,
}

/// The parsed definition.
#[derive(Debug, Clone)]
pub enum Spec {
    Project(ProjectSpec),
    Pipeline(PipelineSpec),
}

impl Definition {
    /// `FILE:LINE`, where it starts.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// An error about this definition's text, placed in its file.
    pub fn locate(&self, e: DefinitionError) -> FileError {
        let (line, column) = match (self.exact, e.line) {
            (true, Some(line)) => (
                self.line + line.saturating_sub(1),
                e.column.map(|c| c + self.indent),
            ),
            _ => (self.line, None),
        };
        FileError {
            file: self.file.clone(),
            line: Some(line),
            column,
            message: format!("{} {:?}: {}", kind_name(self.kind), self.name, e.message),
        }
    }
}

/// A mistake in a file, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    pub file: String,
    /// From 1.
    pub line: Option<usize>,
    /// From 1.
    pub column: Option<usize>,
    pub message: String,
}

impl FileError {
    /// `FILE`, `FILE:LINE` or `FILE:LINE:COLUMN`.
    pub fn origin(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file),
            (Some(l), None) => format!("{}:{l}", self.file),
            _ => self.file.clone(),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin(), self.message)
    }
}

/// `project` or `pipeline`.
pub fn kind_name(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Project => "project",
        DefinitionKind::Pipeline => "pipeline",
    }
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
                file: file.to_string(),
                line: Some(at.line()),
                column: Some(at.column()),
                message,
            }
        }
        None => at_file(file, message),
    }
}

fn at_file(file: &str, message: impl Into<String>) -> FileError {
    FileError {
        file: file.to_string(),
        line: None,
        column: None,
        message: message.into(),
    }
}

/// The line where `name` is given as `key: name` (or `name: name`), for
/// messages about a definition whose text had to be written anew.
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

/// Parses the text of one file (`file` names it in messages). Every
/// document is read, so that all their mistakes are reported at once; a
/// YAML syntax error ends the file, since what follows it cannot be told
/// apart.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Definition>, Vec<FileError>> {
    let (found, errors) = read_file(file, text);
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// What [`parse_file`] finds, and every mistake: the definitions that
/// parsed may have mistakes of their own to report beside those.
pub fn read_file(file: &str, text: &str) -> (Vec<Definition>, Vec<FileError>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut values = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        match Value::deserialize(document) {
            Ok(value) => values.push(value),
            Err(e) => {
                errors.push(located(file, &e));
                break;
            }
        }
    }
    // Each document that is not empty, where the text puts it; when the
    // two do not agree, texts are written anew, which is always safe.
    let mut spans = document_spans(text);
    if spans.len() != values.iter().filter(|v| !v.is_null()).count() {
        spans.clear();
    }
    let mut spans = spans.into_iter();
    for (index, value) in values.into_iter().enumerate() {
        let map = match value {
            Value::Null => continue,
            Value::Mapping(map) => map,
            _ => {
                spans.next();
                errors.push(at_file(
                    file,
                    "a definition file holds maps: `pipelines:` and `projects:` lists, or one \
                     definition named by a `pipeline:` or `project:` key",
                ));
                continue;
            }
        };
        let source = Source {
            file,
            text,
            span: spans.next(),
        };
        let shape = match shape(&map) {
            Ok(shape) => shape,
            Err(m) => {
                errors.push(at_file(file, m));
                continue;
            }
        };
        // Parse the same document again, typed, so that serde_yaml says
        // where a mistake is.
        let Some(typed) = serde_yaml::Deserializer::from_str(text).nth(index) else {
            errors.push(at_file(file, "the file changed while it was read"));
            continue;
        };
        let result = match shape {
            Shape::Single(DefinitionKind::Pipeline) => Entry::<PipelineSpec>::deserialize(typed)
                .map_err(|e| located(file, &e))
                .and_then(|Entry(spec)| source.single(Value::Mapping(map), Spec::Pipeline(spec)))
                .map(|d| vec![d]),
            Shape::Single(DefinitionKind::Project) => Entry::<ProjectSpec>::deserialize(typed)
                .map_err(|e| located(file, &e))
                .and_then(|Entry(spec)| source.single(Value::Mapping(map), Spec::Project(spec)))
                .map(|d| vec![d]),
            Shape::Collection => Collection::deserialize(typed)
                .map_err(|e| located(file, &e))
                .and_then(|collection| source.collection(&map, collection)),
        };
        match result {
            Ok(list) => found.extend(list),
            Err(e) => errors.push(e),
        }
    }
    (found, errors)
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

/// Where a document is in its file: bytes from, to, and its first line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start: usize,
    end: usize,
    line: usize,
}

/// The documents of a file, split at its `---` and `...` lines (which
/// YAML allows only at the start of a line, even inside a block scalar).
/// The last, empty document after a final `---` or `...` is not one.
fn document_spans(text: &str) -> Vec<Span> {
    let marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    };
    let has_content = |line: &str| {
        let t = line.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    let mut spans = Vec::new();
    let (mut start, mut start_line, mut content) = (0, 1, false);
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let (is_start, is_end) = (marker(line, "---"), marker(line, "..."));
        if is_start || is_end {
            if content {
                spans.push(Span {
                    start,
                    end: offset,
                    line: start_line,
                });
            }
            if is_start {
                // What follows `--- ` on its line belongs to the document.
                start = offset + 3;
                start_line = i + 1;
                content = has_content(&line[3..]);
            } else {
                start = offset + line.len();
                start_line = i + 2;
                content = false;
            }
        } else if has_content(line) {
            content = true;
        }
        offset += line.len();
    }
    if content {
        spans.push(Span {
            start,
            end: text.len(),
            line: start_line,
        });
    }
    spans
}

/// Where the documents of a file come from, to take each definition's
/// text from it.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
    span: Option<Span>,
}

impl Source<'_> {
    fn single(&self, raw: Value, spec: Spec) -> Result<Definition, FileError> {
        let mut d = anew(self.file, self.text, raw, spec)?;
        if let Some(span) = self.span {
            let original = &self.text[span.start..span.end];
            let (skipped, original) = skip_blank_lines(original.trim_start_matches([' ', '\t']));
            let original = format!("{}\n", original.trim_end());
            if same_spec(&d.spec, &original) {
                d.text = original;
                d.exact = true;
                d.line = span.line + skipped;
                d.indent = 0;
            }
        }
        Ok(d)
    }

    fn collection(
        &self,
        map: &Mapping,
        collection: Collection,
    ) -> Result<Vec<Definition>, FileError> {
        let list = |key: &str| match map.get(key) {
            Some(Value::Sequence(items)) => items.clone(),
            _ => Vec::new(),
        };
        let items = self.span.and_then(|span| {
            let doc = &self.text[span.start..span.end];
            list_items(doc).map(|items| (span, doc, items))
        });
        let mut found = Vec::new();
        let entries = collection
            .pipelines
            .into_iter()
            .map(|Entry(s)| Spec::Pipeline(s))
            .zip(list("pipelines"))
            .enumerate()
            .map(|(i, (s, raw))| ("pipelines", i, s, raw))
            .chain(
                collection
                    .projects
                    .into_iter()
                    .map(|Entry(s)| Spec::Project(s))
                    .zip(list("projects"))
                    .enumerate()
                    .map(|(i, (s, raw))| ("projects", i, s, raw)),
            );
        for (key, i, spec, raw) in entries {
            let mut d = anew(self.file, self.text, raw, spec)?;
            if let Some((span, doc, items)) = &items
                && let Some(item) = items.get(key).and_then(|list| list.get(i))
                && let Some(text) = dedent(&doc[item.start..item.end], item.column)
                && same_spec(&d.spec, &text)
            {
                d.text = text;
                d.exact = true;
                d.line = span.line + item.line - 1;
                d.indent = item.column;
            }
            found.push(d);
        }
        Ok(found)
    }
}

/// Leading blank lines dropped, and how many.
fn skip_blank_lines(text: &str) -> (usize, &str) {
    let mut skipped = 0;
    let mut rest = text;
    while let Some(i) = rest.find('\n') {
        if rest[..i].trim().is_empty() {
            rest = &rest[i + 1..];
            skipped += 1;
        } else {
            break;
        }
    }
    (skipped, rest)
}

/// Whether `text` parses to `spec`: the check that a text taken from the
/// file is the definition, before it is kept as such.
fn same_spec(spec: &Spec, text: &str) -> bool {
    fn parsed<T: DeserializeOwned + crate::entry::KindKey>(text: &str) -> Option<T> {
        serde_yaml::from_str::<Entry<T>>(text)
            .ok()
            .map(|Entry(t)| t)
    }
    match spec {
        Spec::Pipeline(p) => parsed::<PipelineSpec>(text).is_some_and(|t| &t == p),
        Spec::Project(p) => parsed::<ProjectSpec>(text).is_some_and(|t| &t == p),
    }
}

/// A list entry of a collection: bytes of the document from its first key
/// to the next entry, and that key's line (from 1) and column (from 0).
#[derive(Debug, Clone, Copy)]
struct Item {
    start: usize,
    end: usize,
    line: usize,
    column: usize,
}

/// The entries of the `pipelines:` and `projects:` lists of a collection
/// document, where they stand in it.
fn list_items(doc: &str) -> Option<BTreeMap<String, Vec<Item>>> {
    use yaml_rust2::parser::{Event, Parser};
    let bytes: Vec<usize> = doc
        .char_indices()
        .map(|(b, _)| b)
        .chain([doc.len()])
        .collect();
    let byte = |chars: usize| bytes.get(chars).copied();
    let mut parser = Parser::new_from_str(doc);
    let mut found: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    let (mut depth, mut key_next) = (0usize, true);
    let mut key = String::new();
    let mut list: Option<String> = None;
    loop {
        let (event, at) = parser.next_token().ok()?;
        match event {
            Event::Scalar(value, ..) if depth == 1 => {
                if key_next {
                    key = value;
                }
                key_next = !key_next;
            }
            Event::SequenceStart(..) if depth == 1 && !key_next => {
                if key == "pipelines" || key == "projects" {
                    list = Some(key.clone());
                    found.insert(key.clone(), Vec::new());
                }
                depth += 1;
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if depth == 2
                    && let Some(name) = &list
                {
                    let items = found.entry(name.clone()).or_default();
                    // The marker of a block map is past its first key: the
                    // entry starts after the dash of its line.
                    let line_start =
                        byte(at.index()).map(|b| doc[..b].rfind('\n').map_or(0, |i| i + 1))?;
                    let line = &doc[line_start..];
                    let after_dash = line.trim_start_matches(' ').strip_prefix('-')?;
                    let column = line.len() - after_dash.trim_start_matches(' ').len();
                    let start = line_start + column;
                    if let Some(last) = items.last_mut() {
                        last.end = start;
                    }
                    items.push(Item {
                        start,
                        end: doc.len(),
                        line: at.line(),
                        column,
                    });
                }
                depth += 1;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    if let Some(name) = list.take()
                        && let Some(last) = found.get_mut(&name).and_then(|l| l.last_mut())
                    {
                        last.end = last.end.min(byte(at.index())?.max(last.start));
                    }
                    key_next = true;
                }
            }
            Event::Alias(..) if depth == 1 => key_next = !key_next,
            Event::StreamEnd => return Some(found),
            _ => {}
        }
    }
}

/// A list entry's text moved left by `column`: its first line starts at
/// its first key; the lines after it must be indented at least as far
/// (comments and blank lines aside, which belong to what follows when
/// they are less indented). `None` when the entry is not laid out so.
fn dedent(text: &str, column: usize) -> Option<String> {
    let mut lines = text.split_inclusive('\n');
    let mut out = String::from(lines.next()?);
    let mut pending = String::new();
    for line in lines {
        let t = line.trim();
        let indented = line.len() >= column && line[..column].bytes().all(|b| b == b' ');
        if t.is_empty() {
            pending.push('\n');
        } else if indented {
            out.push_str(&pending);
            pending.clear();
            out.push_str(&line[column..]);
        } else if t.starts_with('#') || t == "-" {
            // Less indented: the next entry's comment, or its dash.
            break;
        } else {
            return None;
        }
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Some(out)
}

/// Builds a definition from its parsed spec and its raw map, its text
/// written anew (named by `name:`).
fn anew(file: &str, text: &str, raw: Value, spec: Spec) -> Result<Definition, FileError> {
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
    let line = find_line(text, key, &name).unwrap_or(1);
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
        exact: false,
        file: file.to_string(),
        line,
        indent: 0,
        spec,
    })
}

/// Refuses a definition given twice in `definitions`.
pub fn check_duplicates(definitions: &[Definition]) -> Vec<FileError> {
    let mut seen: BTreeMap<(&'static str, &str), String> = BTreeMap::new();
    let mut errors = Vec::new();
    for d in definitions {
        let key = (kind_name(d.kind), d.name.as_str());
        if let Some(first) = seen.get(&key) {
            errors.push(FileError {
                file: d.file.clone(),
                line: Some(d.line),
                column: None,
                message: format!("{} {:?} is defined twice (first at {first})", key.0, d.name),
            });
        } else {
            seen.insert(key, d.origin());
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_pipeline, parse_project};

    const ORIGINAL: &str = "\
projects:
  - project: rome
    # the eternal city
    parameters:
      foo: bar
    pipelines:
      - construct
pipelines:
  # day one
  - pipeline: construct
    actions:
      - where: host   # on the host
        shell: day 1

  - {pipeline: flow, actions: [{shell: x}]}
";

    fn one_error(r: Result<Vec<Definition>, Vec<FileError>>) -> FileError {
        let mut errors = r.expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    #[test]
    fn the_original_ick_format_is_read_and_each_entry_keeps_its_text() {
        let defs = parse_file("rome.ick", ORIGINAL).expect("parses");
        assert_eq!(defs.len(), 3);
        let pipeline = &defs[0];
        assert_eq!(pipeline.kind, DefinitionKind::Pipeline);
        assert_eq!(pipeline.name, "construct");
        assert_eq!(pipeline.origin(), "rome.ick:10");
        assert!(pipeline.exact);
        assert_eq!(
            pipeline.text,
            "pipeline: construct\nactions:\n  - where: host   # on the host\n    shell: day 1\n"
        );
        assert_eq!(defs[1].text, "{pipeline: flow, actions: [{shell: x}]}\n");
        let project = &defs[2];
        assert_eq!(project.name, "rome");
        assert!(
            project.text.contains("# the eternal city"),
            "{}",
            project.text
        );
        let Spec::Project(spec) = &project.spec else {
            panic!("a project")
        };
        assert_eq!(spec.pipelines, vec!["construct"]);
        // The text parses as the controller parses it.
        parse_project(&project.text, "rome").expect("valid");
        parse_pipeline(&pipeline.text, "construct").expect("valid");
        // A mistake in it is placed in the file.
        let e = crate::DefinitionError::at("x", 3, 5);
        let at = pipeline.locate(e);
        assert_eq!((at.line, at.column), (Some(12), Some(9)));
    }

    #[test]
    fn single_definitions_and_several_documents() {
        let text =
            "pipeline: a\nactions: [{shell: 'true'}]\n---\nname: b\nactions: [{python: 'pass'}]\n";
        let err = one_error(parse_file("x.yaml", text));
        assert!(err.message.contains("nothing to apply"), "{err}");
        let text = "# a\npipeline: a\nactions: [{shell: 'true'}]\n---\n\nproject: p # p\npipelines: [a]\n...\n";
        let defs = parse_file("x.yaml", text).expect("parses");
        assert_eq!(defs.len(), 2);
        assert_eq!(
            defs[0].text,
            "# a\npipeline: a\nactions: [{shell: 'true'}]\n"
        );
        assert_eq!(defs[1].kind, DefinitionKind::Project);
        assert_eq!(defs[1].origin(), "x.yaml:6");
        assert_eq!(defs[1].text, "project: p # p\npipelines: [a]\n");
    }

    #[test]
    fn mistakes_are_located_in_the_file_and_all_documents_are_read() {
        // A syntax error.
        let err = one_error(parse_file(
            "bad.yaml",
            "pipelines:\n  - pipeline: a\n    actions: [\n",
        ));
        assert!(err.origin().starts_with("bad.yaml:"), "{err}");
        // A typo in a field, in the second document, and a bad value in
        // the third: both are reported.
        let text = "pipeline: a\nactions: [{shell: 'true'}]\n---\npipeline: b\nactoins: []\n---\npipelines:\n  - pipeline: c\n    actions:\n      - shell: x\n        where: moon\n";
        let errors = parse_file("t.yaml", text).expect_err("typo");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].message.contains("actoins"), "{}", errors[0]);
        assert_eq!(errors[0].origin(), "t.yaml:5:1");
        assert!(
            !errors[0].message.contains("line 5"),
            "the position is said once: {}",
            errors[0]
        );
        assert!(
            errors[1].origin().starts_with("t.yaml:11:"),
            "{}",
            errors[1]
        );
        assert!(errors[1].message.contains("moon"), "{}", errors[1]);
    }

    #[test]
    fn a_definition_given_twice_is_refused() {
        let mut defs = parse_file("a.yaml", "pipeline: a\nactions: [{shell: x}]\n").expect("a");
        defs.extend(parse_file("b.yaml", "\n\npipeline: a\nactions: [{shell: y}]\n").expect("b"));
        let errors = check_duplicates(&defs);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "b.yaml:3: pipeline \"a\" is defined twice (first at a.yaml:1)"
        );
    }
}
