//! `where: host`: a plain process in the workspace, as the worker's user.

use std::ffi::OsString;

use super::process::{self, Proc, ProcEnd};
use super::{Executor, RunCtx};
use crate::error::ActionError;

/// Runs processes on the build host.
pub struct Host;

impl Executor for Host {
    async fn prepare(
        &self,
        rc: &RunCtx,
        program: &str,
        args: Vec<OsString>,
    ) -> Result<Proc, ActionError> {
        let env = rc.host_env().await;
        Ok(Proc::new(program, args, rc.dirs.workspace.clone(), env))
    }

    async fn run(&self, rc: &RunCtx, proc: Proc) -> Result<ProcEnd, ActionError> {
        process::run(proc, &rc.limits()).await
    }
}
