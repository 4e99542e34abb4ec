//! The environment every action sees.
//!
//! | variable | value |
//! | --- | --- |
//! | `ICK_BUILD_ID` | the build's id |
//! | `ICK_BUILD_NUMBER`, `BUILD_NUMBER` | its number within the project |
//! | `ICK_PROJECT` | the project |
//! | `ICK_PIPELINE` | the pipeline |
//! | `ICK_WORKSPACE` | the workspace, as the action sees it |
//! | `ICK_PARAMS` | all parameters, as a JSON object |
//! | each parameter | its value: strings as they are, others as JSON (never a [reserved] name) |
//! | `PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LC_*`, `TZ`, `TMPDIR` | the worker-manager's |
//! | the action's `env:` | as given (it wins) |
//!
//! Shell actions also have a `params` function that prints the parameters
//! as JSON, as in the original Ick (`params | jq -r .foo`).
//!
//! [reserved]: ick_api::params::RESERVED_NAMES

use std::collections::BTreeMap;

use ick_api::params::{is_reserved_parameter, is_valid_parameter};
use ick_api::work::WorkAssignment;
use serde_json::Value;

/// Variables passed through from the worker-manager's own environment.
const PASSED: [&str; 7] = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"];

/// The default `PATH` when the worker-manager has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of an action whose workspace it sees at `workspace`;
/// also the names of parameters that cannot be variables. The controller
/// refuses reserved names; they are skipped here too, whatever it sent.
pub fn environment(a: &WorkAssignment, workspace: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in std::env::vars() {
        if PASSED.contains(&key.as_str()) || key.starts_with("LC_") {
            env.insert(key, value);
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    let mut skipped = Vec::new();
    for (name, value) in &a.parameters {
        if !is_valid_parameter(name) || is_reserved_parameter(name) {
            skipped.push(name.clone());
            continue;
        }
        env.insert(name.clone(), param_text(value));
    }
    let params = serde_json::to_string(&a.parameters).unwrap_or_else(|_| "{}".into());
    env.insert("ICK_PARAMS".into(), params);
    env.insert("ICK_BUILD_ID".into(), a.build.id.clone());
    env.insert("ICK_BUILD_NUMBER".into(), a.build.number.to_string());
    env.insert("BUILD_NUMBER".into(), a.build.number.to_string());
    env.insert("ICK_PROJECT".into(), a.build.project.clone());
    env.insert("ICK_PIPELINE".into(), a.pipeline.clone());
    env.insert("ICK_WORKSPACE".into(), workspace.into());
    // Bash imports exported functions from variables named so; this one
    // reaches scripts the action runs, too.
    env.insert(
        "BASH_FUNC_params%%".into(),
        "() {  printf '%s\\n' \"$ICK_PARAMS\"\n}".into(),
    );
    for (key, value) in &a.action.env {
        env.insert(key.clone(), value.clone());
    }
    (env.into_iter().collect(), skipped)
}

/// A parameter as a variable: strings as they are, the rest as JSON.
fn param_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ick_api::actions::Action;
    use ick_api::work::BuildRef;

    #[test]
    fn parameters_and_build_facts_are_variables() {
        let a = WorkAssignment {
            node_id: "n".into(),
            attempt: 1,
            lease_seconds: 30,
            build: BuildRef {
                id: "b1".into(),
                number: 7,
                project: "rome".into(),
            },
            pipeline: "construct".into(),
            index: 0,
            pipeline_len: 1,
            action: Action::shell("true"),
            parameters: [
                ("foo".to_string(), Value::String("bar".into())),
                ("n".to_string(), serde_json::json!(3)),
                ("list".to_string(), serde_json::json!(["a", 1])),
                ("not a name".to_string(), Value::Bool(true)),
                ("LD_PRELOAD".to_string(), Value::from("/tmp/evil.so")),
                ("PATH".to_string(), Value::from("/tmp/evil")),
            ]
            .into_iter()
            .collect(),
        };
        let (env, skipped) = environment(&a, "/w");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("foo"), Some("bar"));
        assert_eq!(get("n"), Some("3"));
        assert_eq!(get("list"), Some("[\"a\",1]"));
        assert_eq!(get("BUILD_NUMBER"), Some("7"));
        assert_eq!(get("ICK_PROJECT"), Some("rome"));
        assert_eq!(get("ICK_WORKSPACE"), Some("/w"));
        let params: Value = serde_json::from_str(get("ICK_PARAMS").expect("set")).expect("json");
        assert_eq!(params["foo"], "bar");
        assert_eq!(
            params["LD_PRELOAD"], "/tmp/evil.so",
            "ICK_PARAMS has them all"
        );
        assert_eq!(skipped, ["LD_PRELOAD", "PATH", "not a name"]);
        assert!(get("not a name").is_none());
        assert!(get("LD_PRELOAD").is_none());
        assert_ne!(get("PATH"), Some("/tmp/evil"));
    }
}
