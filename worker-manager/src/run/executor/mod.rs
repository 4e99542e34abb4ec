//! Executors: where an action's processes run, behind one seam.
//!
//! An action kind says what to run (`bash -e -c SCRIPT`, `python3 …`);
//! its `where:` picks the executor that runs it:
//!
//! | `where:` | executor | what runs |
//! | --- | --- | --- |
//! | `host` | [`Host`] | a plain process in the workspace |
//! | `chroot`, `container` | [`Bubblewrap`] | the process inside bubblewrap |
//!
//! An executor [prepares](Executor::prepare) the process (checks what it
//! needs, wraps the command) and [runs](Executor::run) it: its output
//! streamed to the log, stopped on cancel or timeout, and what it started
//! stopped with it ([`process::run`] does this for every executor that
//! runs a local process). At the action's end, [`clean_up`] stops what is
//! left of it. Another executor (OCI images, Kubernetes pods) is a file
//! here, a variant of [`ForAction`] and the `where:` that picks it.

mod bubblewrap;
mod host;
pub mod leftovers;
pub mod process;
pub mod supervisor;

use std::ffi::OsString;
use std::future::Future;
use std::time::Duration;

use ick_api::actions::Where;

pub use bubblewrap::Bubblewrap;
pub use host::Host;
use leftovers::{Guards, Since, end_leftovers};
pub use process::{Limits, Proc, ProcEnd};

use super::RunCtx;
use crate::error::ActionError;

/// Where and how an action's processes run.
pub trait Executor {
    /// Checks what running `program args` here needs, and makes the
    /// process that does it.
    fn prepare(
        &self,
        rc: &RunCtx,
        program: &str,
        args: Vec<OsString>,
    ) -> impl Future<Output = Result<Proc, ActionError>> + Send;

    /// Runs a prepared process to its end, or until it must stop.
    fn run(
        &self,
        rc: &RunCtx,
        proc: Proc,
    ) -> impl Future<Output = Result<ProcEnd, ActionError>> + Send;
}

/// The executor an action's `where:` names.
pub enum ForAction {
    Host(Host),
    Bubblewrap(Bubblewrap),
}

/// The executor of this action.
pub fn for_action(rc: &RunCtx) -> ForAction {
    match rc.a.action.where_ {
        Where::Host => ForAction::Host(Host),
        Where::Chroot => ForAction::Bubblewrap(Bubblewrap::Chroot),
        Where::Container => ForAction::Bubblewrap(Bubblewrap::Container),
    }
}

impl Executor for ForAction {
    async fn prepare(
        &self,
        rc: &RunCtx,
        program: &str,
        args: Vec<OsString>,
    ) -> Result<Proc, ActionError> {
        match self {
            ForAction::Host(e) => e.prepare(rc, program, args).await,
            ForAction::Bubblewrap(e) => e.prepare(rc, program, args).await,
        }
    }

    async fn run(&self, rc: &RunCtx, proc: Proc) -> Result<ProcEnd, ActionError> {
        match self {
            ForAction::Host(e) => e.run(rc, proc).await,
            ForAction::Bubblewrap(e) => e.run(rc, proc).await,
        }
    }
}

/// At an action's end: stops what it left running (daemons that left
/// its process groups and its output pipes), SIGTERM first, then lets
/// its supervised processes go: the supervisor kills anything still left
/// of their trees.
pub async fn clean_up(since: Since, marker: String, grace: Duration, guards: &Guards) {
    end_leftovers(None, Some(since), marker, grace).await;
    guards.release().await;
}
