//! One project or pipeline: parsing its YAML and checking it alone (its
//! place among other definitions is [`crate::graph`]'s).

use std::collections::BTreeSet;

use ick_api::actions::{BUILTIN_KINDS, check_builtin_spec};
use ick_api::controller::{PipelineSpec, ProjectSpec, is_valid_name};
use ick_api::params::check_parameter;
use serde::de::DeserializeOwned;

use crate::entry::{Entry, KindKey};
use crate::{DefinitionError, Result};

/// Checks a name from a path.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} name {name:?} is not valid: use lower-case letters, digits, '.', '_' and '-', \
             starting with a letter or digit (at most 100 characters)"
        )))
    }
}

fn invalid(message: impl Into<String>) -> DefinitionError {
    DefinitionError::new(message)
}

/// Parses YAML (or JSON) text; syntax, type and unknown-field errors carry
/// the line and column.
/// A definition may be named by its kind key (`pipeline: NAME`), as in the
/// files `icktool apply` reads, or by `name:`.
fn parse_yaml<T: DeserializeOwned + KindKey>(what: &str, text: &str) -> Result<T> {
    if text.trim().is_empty() {
        return Err(invalid(format!("the {what} definition is empty")));
    }
    check_nesting(what, text)?;
    serde_yaml::from_str::<Entry<T>>(text)
        .map(|Entry(t)| t)
        .map_err(|e| {
            let at = e.location();
            DefinitionError {
                message: format!("the {what} definition is not valid: {e}"),
                line: at.as_ref().map(|l| l.line()),
                column: at.as_ref().map(|l| l.column()),
            }
        })
}

/// How deep collections may nest in a definition; real ones need a handful.
pub const MAX_NESTING: usize = 64;

/// Refuses text whose collections nest deeper than [`MAX_NESTING`] before
/// serde_yaml reads it: libyaml takes time quadratic in the depth of flow
/// collections (80 KiB of `[` cost seconds), while this event stream stops
/// at the first collection too deep, having read only what came before it.
fn check_nesting(what: &str, text: &str) -> Result<()> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let too_deep = |line, column| DefinitionError {
            message: format!("the {what} definition nests deeper than {MAX_NESTING} levels"),
            line: Some(line),
            column: Some(column),
        };
        // The scanner has a depth limit of its own, hit while it looks ahead.
        let (event, at) = parser.next_token().map_err(|e| {
            let (line, column) = (e.marker().line(), e.marker().col() + 1);
            if e.info().contains("recursion limit") {
                too_deep(line, column)
            } else {
                DefinitionError {
                    message: format!("the {what} definition is not valid: {}", e.info()),
                    line: Some(line),
                    column: Some(column),
                }
            }
        })?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(too_deep(at.line(), at.col() + 1));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::StreamEnd => return Ok(()),
            _ => {}
        }
    }
}

/// Checks the names a definition declares as parameters; a bad one is
/// reported where it stands in `text`.
fn check_parameters<'a>(text: &str, names: impl IntoIterator<Item = &'a String>) -> Result<()> {
    for name in names {
        if let Err(message) = check_parameter(name) {
            let at = parameter_position(text, name);
            return Err(DefinitionError {
                message,
                line: at.map(|a| a.0),
                column: at.map(|a| a.1),
            });
        }
    }
    Ok(())
}

/// Where `name` stands (line, column, from 1) in the top-level
/// `parameters:` of a definition: a key of its mapping or an item of its
/// list.
fn parameter_position(text: &str, name: &str) -> Option<(usize, usize)> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let (mut depth, mut key_next, mut in_parameters) = (0usize, true, false);
    loop {
        let (event, at) = parser.next_token().ok()?;
        match event {
            Event::Scalar(value, ..) if depth == 1 => {
                if key_next {
                    in_parameters = value == "parameters";
                }
                key_next = !key_next;
            }
            Event::Scalar(value, ..) if depth == 2 && in_parameters && value == name => {
                return Some((at.line(), at.col() + 1));
            }
            Event::Alias(..) if depth == 1 => key_next = !key_next,
            Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
            Event::SequenceEnd | Event::MappingEnd => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    key_next = true;
                }
            }
            Event::StreamEnd => return None,
            _ => {}
        }
    }
}

fn check_body_name(what: &str, body: &mut Option<String>, path_name: &str) -> Result<()> {
    check_name(what, path_name)?;
    match body {
        Some(name) if name != path_name => Err(invalid(format!(
            "the {what} says its name is {name:?}, but it is applied as {path_name:?}"
        ))),
        _ => {
            *body = Some(path_name.to_string());
            Ok(())
        }
    }
}

fn check_unique<'a>(what: &str, names: impl IntoIterator<Item = &'a String>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(invalid(format!("{what} {name:?} is listed twice")));
        }
    }
    Ok(())
}

/// Parses and checks a pipeline applied as `path_name`. A plugin kind is
/// accepted whether or not a worker has it now (its builds wait for one).
pub fn parse_pipeline(text: &str, path_name: &str) -> Result<PipelineSpec> {
    let mut spec: PipelineSpec = parse_yaml("pipeline", text)?;
    check_body_name("pipeline", &mut spec.name, path_name)?;
    if spec.actions.is_empty() {
        return Err(invalid(format!("pipeline {path_name:?} has no actions")));
    }
    for (i, action) in spec.actions.iter().enumerate() {
        let n = i + 1;
        if action.is_builtin() {
            check_builtin_spec(action).map_err(|e| invalid(format!("action {n}: {e}")))?;
            crate::refs::check_ref(action).map_err(|e| invalid(format!("action {n}: {e}")))?;
        } else if !is_valid_name(&action.kind) {
            return Err(invalid(format!(
                "action {n}: unknown action kind {:?}: the built-in kinds are {}, and a plugin's \
                 kind is a name of lower-case letters, digits, '.', '_' and '-'",
                action.kind,
                BUILTIN_KINDS.join(", ")
            )));
        }
    }
    check_parameters(text, &spec.parameters)?;
    check_unique("parameter", &spec.parameters)?;
    for need in &spec.needs {
        check_name("needed pipeline", need)?;
        if need == path_name {
            return Err(invalid(format!(
                "needs: cycle {path_name} → {path_name} (a pipeline cannot need itself)"
            )));
        }
    }
    check_unique("needed pipeline", &spec.needs)?;
    Ok(spec)
}

/// Parses and checks a project applied as `path_name` (its pipelines are
/// checked against the stored ones by [`check_project_graph`]).
pub fn parse_project(text: &str, path_name: &str) -> Result<ProjectSpec> {
    let mut spec: ProjectSpec = parse_yaml("project", text)?;
    check_body_name("project", &mut spec.name, path_name)?;
    if spec.pipelines.is_empty() {
        return Err(invalid(format!("project {path_name:?} has no pipelines")));
    }
    for pipeline in &spec.pipelines {
        check_name("pipeline", pipeline)?;
    }
    check_unique("pipeline", &spec.pipelines)?;
    check_parameters(text, spec.parameters.keys())?;
    for label in &spec.runs_on {
        if label.is_empty() || label.chars().any(char::is_whitespace) {
            return Err(invalid(format!(
                "runs_on label {label:?} is empty or has spaces"
            )));
        }
    }
    for to in &spec.notify.to {
        let ok = to
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty())
            && !to.chars().any(char::is_whitespace);
        if !ok {
            return Err(invalid(format!("notify: {to:?} is not an email address")));
        }
    }
    if spec.concurrency == Some(0) {
        return Err(invalid("concurrency must be at least 1"));
    }
    for (i, trigger) in spec.triggers.iter().enumerate() {
        crate::triggers::check_trigger(i + 1, trigger).map_err(invalid)?;
    }
    Ok(spec)
}

/// The canonical form of a definition: applying text that parses to the
/// same value is a no-op.
pub fn canonical<T: serde::Serialize>(spec: &T) -> Result<String> {
    serde_json::to_string(spec)
        .map_err(|e| invalid(format!("the definition cannot be stored: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> Result<PipelineSpec> {
        parse_pipeline(text, "build")
    }

    fn message(e: DefinitionError) -> (String, Option<usize>, Option<usize>) {
        (e.message, e.line, e.column)
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let deep = format!("pipeline: p\nactions: {}", "[".repeat(4 << 20));
        let (msg, line, column) = message(pipeline(&deep).expect_err("too deep"));
        assert!(msg.contains("nests deeper than 64"), "{msg}");
        assert_eq!(line, Some(2));
        assert!(column.is_some_and(|c| c > 9 + 64 && c < 1024), "{column:?}");
        let nested = format!("{}shell: a{}", "[".repeat(60), "]".repeat(60));
        let err = pipeline(&format!("actions: {nested}")).expect_err("wrong shape");
        assert!(!message(err).0.contains("nests deeper"));
    }

    #[test]
    fn yaml_syntax_errors_name_line_and_column() {
        let (msg, line, column) = message(
            pipeline("actions:\n  - shell: make\n  - shell: [unclosed\n").expect_err("refused"),
        );
        assert_eq!(line, Some(4), "{msg}");
        assert!(column.is_some(), "{msg}");
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused_with_their_position() {
        let (msg, line, _) = message(
            pipeline("actions:\n  - shell: make\nneeds: [a]\ncolour: blue\n").expect_err("refused"),
        );
        assert!(msg.contains("unknown field `colour`"), "{msg}");
        assert_eq!(line, Some(4), "{msg}");
        let (msg, line, _) = message(pipeline("actions: make\n").expect_err("refused"));
        assert!(msg.contains("invalid type"), "{msg}");
        assert_eq!(line, Some(1), "{msg}");
        let (msg, _, _) = message(
            pipeline("actions:\n  - shell: make\n    colour: blue\n").expect_err("refused"),
        );
        assert!(msg.contains("one kind"), "{msg}");
    }

    #[test]
    fn action_kinds_are_built_in_or_plugins_named_by_the_rule() {
        // Whether a worker has the plugin is the build's wait, not apply's.
        assert!(pipeline("actions: [{docker-push: {image: x}}]").is_ok());
        let (msg, _, _) =
            message(pipeline("actions: [{shell: a}, {Rocket: {}}]").expect_err("refused"));
        assert!(
            msg.contains("action 2: unknown action kind \"Rocket\""),
            "{msg}"
        );
        let (msg, _, _) = message(
            pipeline("actions: [{archive: {ref: 'nu/build-$BUILD_NUMBER'}}]").expect_err("refused"),
        );
        assert!(
            msg.contains("action 1: ") && msg.contains("{number}"),
            "{msg}"
        );
        let (msg, _, _) =
            message(pipeline("actions: [{git: {branch: main}}]").expect_err("refused"));
        assert!(msg.contains("action 1") && msg.contains("branch"), "{msg}");
    }

    #[test]
    fn names_must_follow_the_rule_and_match_the_path() {
        assert!(parse_pipeline("actions: [{shell: a}]", "Build").is_err());
        let (msg, _, _) =
            message(pipeline("name: other\nactions: [{shell: a}]").expect_err("refused"));
        assert!(msg.contains("\"other\""), "{msg}");
        let ok = pipeline("name: build\nactions: [{shell: a}]").expect("ok");
        assert_eq!(ok.name.as_deref(), Some("build"));
        let (msg, _, _) =
            message(pipeline("actions: [{shell: a}]\nneeds: [build]").expect_err("refused"));
        assert!(msg.contains("cycle build → build"), "{msg}");
        assert!(pipeline("actions: []").is_err());
        assert!(pipeline("actions: [{shell: a}]\nparameters: [git-url]").is_err());
    }

    #[test]
    fn projects_are_checked() {
        let p = parse_project(
            "parameters: {git_url: x}\npipelines: [a, b]\nnotify: [dev@example.org]\nruns_on: [linux]",
            "hello",
        )
        .expect("valid");
        assert_eq!(p.name.as_deref(), Some("hello"));
        for bad in [
            "pipelines: []",
            "pipelines: [a, a]",
            "pipelines: [A]",
            "pipelines: [a]\nnotify: [nobody]",
            "pipelines: [a]\nconcurrency: 0",
            "pipelines: [a]\nparameters: {'1x': y}",
            "pipelines: [a]\nruns_on: ['a b']",
            "pipelines: [a]\ntriggers: [{repository: nowhere}]",
            "pipelines: [a]\ntriggers: [{repository: 'https://x.org/r', branches: ['[']}]",
            "pipelines: [a]\ntriggers: [{repo: 'https://x.org/r'}]",
            "pipelines: a",
            "",
        ] {
            assert!(parse_project(bad, "hello").is_err(), "{bad}");
        }
    }
}
