//! Who may do what: the one place the controller decides it.
//!
//! A caller is what its verified token says ([`Caller`]): the scopes it
//! was granted and, for a worker's client, the worker it names. A handler
//! names the act it does (`Authorized<access::Trigger>`); the table of
//! acts below says which scope each needs, so that no route names a scope.
//! A worker's token speaks for that worker alone ([`Worker`]).
//!
//! Per-project roles (issue 12: viewer, developer, maintainer and owner of
//! a project; admin and creator everywhere) are to be decided here too:
//! what a caller may do to a project, from its identity (a user, its
//! groups, or a client) and the project's bindings, beside the scope
//! ceiling, which stays the most a token may do. Until then an act's scope
//! is the whole decision, alike for every project.

use ick_api::Scope;
use ick_api::auth::{Caller, RequiredScope};
use ick_api::oauth::WorkerIdentity;
use ick_api::work::ClaimRequest;

use crate::error::{ControllerError, Result};

/// Declares acts: marker types for `Authorized<…>`, each with the scope
/// its caller needs.
macro_rules! acts {
    ($($(#[$doc:meta])* $act:ident => $scope:ident,)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $act;
        impl RequiredScope for $act {
            const SCOPE: Scope = Scope::$scope;
        }
    )*};
}

acts! {
    /// Read projects and pipelines, and their revisions.
    ReadProjects => ProjectsRead,
    /// Apply or delete projects and pipelines.
    ChangeDefinitions => ProjectsWrite,
    /// See or rotate a project's trigger secret: it starts builds, so it
    /// takes as much as changing the project.
    ManageTriggerSecret => ProjectsWrite,
    /// Read builds, their logs, and the mail about them.
    ReadBuilds => BuildsRead,
    /// List the workers.
    ListWorkers => BuildsRead,
    /// Start a build.
    Trigger => BuildsTrigger,
    /// Run a build again.
    Retry => BuildsTrigger,
    /// Cancel a build.
    Cancel => BuildsCancel,
    /// Claim actions and report on them, as a worker.
    RunWork => WorkRun,
}

/// Who calls the work API: the worker its token names (an admin set its
/// name and labels on its IDP client), never what the worker says of
/// itself. A token with `idp:admin` may act as any worker: its holder can
/// make any worker's client anyway.
pub enum Worker {
    /// The worker of the token.
    Named(WorkerIdentity),
    /// An admin, acting as the worker its requests name.
    Admin,
}

impl Worker {
    /// The worker `caller` is; 403 if its token names none.
    pub fn of(caller: &Caller) -> Result<Worker> {
        if caller.scopes.contains(Scope::IdpAdmin) {
            return Ok(Worker::Admin);
        }
        match &caller.worker {
            Some(identity) => Ok(Worker::Named(identity.clone())),
            None => Err(ControllerError::Forbidden(format!(
                "client {} has {} but its token names no worker: its IDP is older than the \
                 controller, or the token was asked without that scope",
                caller.client_id,
                Scope::WorkRun
            ))),
        }
    }

    /// Refuses a claim for a name or a label the worker does not hold.
    pub fn check_claim(&self, req: &ClaimRequest) -> Result<()> {
        let Worker::Named(me) = self else {
            return Ok(());
        };
        if req.worker != me.name {
            return Err(ControllerError::Forbidden(format!(
                "this token is worker {:?}'s: it may not claim work as {:?}",
                me.name, req.worker
            )));
        }
        if let Some(label) = req.labels.iter().find(|l| !me.labels.contains(l)) {
            return Err(ControllerError::Forbidden(format!(
                "worker {:?} may not claim work with label {label:?}: its IDP client holds {} \
                 (an admin sets them: icktool client update {} --labels …)",
                me.name,
                if me.labels.is_empty() {
                    "none".to_string()
                } else {
                    me.labels.join(",")
                },
                me.name
            )));
        }
        Ok(())
    }

    /// Refuses a call in the name of another worker.
    pub fn check_name(&self, name: &str) -> Result<()> {
        match self {
            Worker::Named(me) if me.name != name => Err(ControllerError::Forbidden(format!(
                "this token is worker {:?}'s: it may not speak for {name:?}",
                me.name
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a call about a node that another worker holds.
    pub fn check_holder(&self, node_id: &str, holder: Option<&str>) -> Result<()> {
        match self {
            Worker::Named(me) if holder != Some(me.name.as_str()) => {
                Err(ControllerError::Forbidden(format!(
                    "node {node_id} is not held by worker {:?}: only the worker that claimed it \
                     may report on it",
                    me.name
                )))
            }
            _ => Ok(()),
        }
    }

    /// The name a node must be held by for this caller's call to apply.
    pub fn name(&self) -> Option<&str> {
        match self {
            Worker::Named(me) => Some(&me.name),
            Worker::Admin => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use ick_api::ScopeSet;

    use super::*;

    fn caller(scopes: &[Scope], worker: Option<(&str, &[&str])>) -> Caller {
        Caller {
            subject: "client-1".into(),
            client_id: "client-1".into(),
            client_name: None,
            scopes: scopes.iter().copied().collect::<ScopeSet>(),
            expires_at: 0,
            worker: worker.map(|(name, labels)| WorkerIdentity {
                name: name.into(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
            }),
            user: None,
        }
    }

    fn claim(worker: &str, labels: &[&str]) -> ClaimRequest {
        ClaimRequest {
            worker: worker.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            free_slots: 1,
            slots: 1,
            kinds: vec!["shell".into()],
            wait: 0,
        }
    }

    #[test]
    fn a_token_that_names_no_worker_is_refused() {
        let refused = Worker::of(&caller(&[Scope::WorkRun], None));
        assert!(matches!(refused, Err(ControllerError::Forbidden(_))));
    }

    #[test]
    fn a_worker_speaks_only_for_itself_and_its_labels() {
        let me = Worker::of(&caller(&[Scope::WorkRun], Some(("w1", &["trusted"]))))
            .expect("its token names w1");
        assert!(me.check_claim(&claim("w1", &["trusted"])).is_ok());
        assert!(me.check_claim(&claim("w2", &[])).is_err());
        assert!(me.check_claim(&claim("w1", &["arch=arm64"])).is_err());
        assert!(me.check_name("w1").is_ok());
        assert!(me.check_name("w2").is_err());
        assert!(me.check_holder("n", Some("w1")).is_ok());
        assert!(me.check_holder("n", Some("w2")).is_err());
        assert!(me.check_holder("n", None).is_err());
        assert_eq!(me.name(), Some("w1"));
    }

    #[test]
    fn an_admin_acts_as_any_worker() {
        let admin =
            Worker::of(&caller(&[Scope::WorkRun, Scope::IdpAdmin], None)).expect("an admin");
        assert!(admin.check_claim(&claim("w2", &["arch=arm64"])).is_ok());
        assert!(admin.check_name("w2").is_ok());
        assert!(admin.check_holder("n", Some("w2")).is_ok());
        assert_eq!(admin.name(), None);
    }
}
