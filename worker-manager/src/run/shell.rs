//! `shell:` — a script run by `bash -e`, where the action says.

use serde_json::Value;

use super::executor::{self, Executor};
use super::{Ending, RunCtx};
use crate::error::ActionError;

pub async fn run(rc: &RunCtx) -> Result<Ending, ActionError> {
    let Value::String(script) = &rc.a.action.spec else {
        return Err(ActionError::new(format!(
            "shell must be a script (a string), not {}",
            rc.a.action.spec
        )));
    };
    let executor = executor::for_action(rc);
    let proc = executor
        .prepare(rc, "bash", vec!["-e".into(), "-c".into(), script.into()])
        .await?;
    Ok(rc.ending(executor.run(rc, proc).await?))
}
