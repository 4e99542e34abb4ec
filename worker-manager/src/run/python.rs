//! `python:` — a script run by `python3`, where the action says. The
//! script sees the parameters as the dict `params`, and its tracebacks
//! name it `<action>` with its own line numbers.

use serde_json::Value;

use super::executor::{self, Executor};
use super::{Ending, RunCtx};
use crate::error::ActionError;

/// Runs the script (its first argument) with `params` defined.
const RUNNER: &str = r#"import json, os, sys
source = sys.argv.pop(1)
scope = {"__name__": "__main__", "params": json.loads(os.environ.get("ICK_PARAMS", "{}"))}
exec(compile(source, "<action>", "exec"), scope)
"#;

pub async fn run(rc: &RunCtx) -> Result<Ending, ActionError> {
    let Value::String(script) = &rc.a.action.spec else {
        return Err(ActionError::new(format!(
            "python must be a script (a string), not {}",
            rc.a.action.spec
        )));
    };
    let executor = executor::for_action(rc);
    let mut proc = executor
        .prepare(
            rc,
            "python3",
            vec!["-c".into(), RUNNER.into(), script.into()],
        )
        .await?;
    // Output shows up in the log as it is written.
    proc.env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    Ok(rc.ending(executor.run(rc, proc).await?))
}
