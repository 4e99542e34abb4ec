//! Refs in `archive:` and `populate:` actions may use the build's values:
//! `{project}`, `{number}` and `{pipeline}`, filled in when a build is
//! triggered (e.g. `nu/build-{number}`). Checked at apply, with sample
//! values, against the artifact store's rules for ref names.

use ick_api::actions::Action;
use ick_api::blobs::RefName;
use serde_json::Value;

/// The build values a ref may use.
pub const REF_VALUES: [&str; 3] = ["project", "number", "pipeline"];

/// What a build fills a ref's placeholders with.
#[derive(Debug, Clone, Copy)]
pub struct BuildValues<'a> {
    pub project: &'a str,
    pub number: i64,
    pub pipeline: &'a str,
}

/// The action kinds whose `ref:` names a ref of the artifact store.
fn takes_ref(action: &Action) -> bool {
    matches!(action.kind.as_str(), "archive" | "populate")
}

/// `template` with its placeholders filled; an error names a placeholder
/// that is not a build value, or a `$` (shell variables are not expanded).
pub fn expand(template: &str, values: &BuildValues<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '$']) {
        out.push_str(&rest[..open]);
        if rest[open..].starts_with('$') {
            return Err(format!(
                "{template:?}: a ref is not a shell word, so ${} is not expanded; use {{number}}, \
                 {{project}} or {{pipeline}}",
                rest[open + 1..]
                    .split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '{')
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches('{')
            ));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{template:?}: a '{{' without its '}}'"));
        };
        let name = &rest[open + 1..open + close];
        match name {
            "project" => out.push_str(values.project),
            "number" => out.push_str(&values.number.to_string()),
            "pipeline" => out.push_str(values.pipeline),
            other => {
                return Err(format!(
                    "{template:?}: {{{other}}} is not a build value: use {}",
                    REF_VALUES.map(|v| format!("{{{v}}}")).join(", ")
                ));
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks the ref of an `archive:` or `populate:` action as applied: its
/// placeholders are build values and, filled, it is a valid ref name.
pub fn check_ref(action: &Action) -> Result<(), String> {
    let Some(template) = ref_of(action) else {
        return Ok(());
    };
    let sample = BuildValues {
        project: "p",
        number: 1,
        pipeline: "p",
    };
    let name = expand(template, &sample)?;
    name.parse::<RefName>()
        .map(|_| ())
        .map_err(|e| format!("ref {template:?} is not valid: {}", e.why))
}

fn ref_of(action: &Action) -> Option<&str> {
    if !takes_ref(action) {
        return None;
    }
    action.spec.get("ref").and_then(Value::as_str)
}

/// Fills the ref of an action with a build's values (at trigger time; the
/// ref was checked at apply).
pub fn expand_action(action: &mut Action, values: &BuildValues<'_>) -> Result<(), String> {
    if let Some(template) = ref_of(action) {
        let name = expand(template, values)?;
        if let Some(spec) = action.spec.as_object_mut() {
            spec.insert("ref".into(), Value::String(name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(yaml: &str) -> Action {
        serde_yaml::from_str(yaml).expect("action")
    }

    #[test]
    fn build_values_fill_a_ref_and_others_are_refused() {
        let values = BuildValues {
            project: "nu",
            number: 42,
            pipeline: "build",
        };
        let mut a = action("archive: {ref: 'nu/build-{number}'}");
        check_ref(&a).expect("valid");
        expand_action(&mut a, &values).expect("filled");
        assert_eq!(a.spec["ref"], "nu/build-42");
        assert_eq!(
            expand("{project}/{pipeline}/{number}", &values).as_deref(),
            Ok("nu/build/42")
        );
        let e = check_ref(&action("archive: {ref: 'nu/build-$BUILD_NUMBER'}")).expect_err("$");
        assert!(e.contains("$BUILD_NUMBER is not expanded"), "{e}");
        let e = check_ref(&action("populate: {ref: 'a/{branch}'}")).expect_err("unknown");
        assert!(e.contains("{branch} is not a build value"), "{e}");
        let e = check_ref(&action("archive: {ref: 'a//b'}")).expect_err("empty segment");
        assert!(e.contains("must not be empty"), "{e}");
        assert!(check_ref(&action("archive: {ref: 'a/{number'}")).is_err());
        // Only store refs: a git ref is git's.
        assert!(check_ref(&action("git: {ref: 'feature/$X'}")).is_ok());
    }
}
