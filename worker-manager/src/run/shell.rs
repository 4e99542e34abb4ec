//! `shell:` — a script run by `bash -e`, where the action says.

use serde_json::Value;

use super::{Ending, RunCtx, sandbox};
use crate::error::ActionError;

pub async fn run(rc: &RunCtx) -> Result<Ending, ActionError> {
    let Value::String(script) = &rc.a.action.spec else {
        return Err(ActionError::new(format!(
            "shell must be a script (a string), not {}",
            rc.a.action.spec
        )));
    };
    let proc = sandbox::command(rc, "bash", vec!["-e".into(), "-c".into(), script.into()]).await?;
    Ok(rc.ending(sandbox::run(rc, proc).await?))
}
