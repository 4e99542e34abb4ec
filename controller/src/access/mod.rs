//! Who may do what: the one place the controller decides it.
//!
//! A caller is what its verified token says ([`Caller`]): the scopes it
//! was granted, the person it acts for (`ick_user`) or else its client's
//! name, and, for a worker's client, the worker it names. A handler names
//! the act it does (`Authorized<access::Trigger>`): the table of acts
//! below says which scope each needs — the most a token may do, whatever
//! its roles — and, for an act on a project, which role there
//! ([`ProjectAct`]). The roles come from the bindings (members of
//! projects, global roles, the config's `admins`), cached in memory
//! ([`cache`]); the decision from them is pure ([`decide`]). A worker's
//! token speaks for that worker alone ([`Worker`]).
//!
//! The order is: the scope (403 naming it, before the handler runs), then
//! the role: 404 when the caller may not even read the project (so that
//! it cannot learn a private project exists), 403 when it may read it but
//! not do this, 401 without a token on a project that is not public.

pub(crate) mod cache;
pub mod decide;

use ick_api::Scope;
use ick_api::auth::{Caller, RequiredScope};
use ick_api::controller::ProjectRole;
use ick_api::oauth::WorkerIdentity;
use ick_api::work::ClaimRequest;

pub use decide::{Bindings, Decision, Identity, PipelineRefusal};
pub use ick_api::audit::Actor;

use crate::core::Core;
use crate::error::{ControllerError, Result};

/// An act on one project: the role it needs there.
pub trait ProjectAct: RequiredScope {
    /// The least role on the project that may do it.
    const ROLE: ProjectRole;
    /// What it is, for refusals: "… may not {WHAT} project P".
    const WHAT: &'static str;
}

/// Declares acts: marker types for `Authorized<…>`, each with the scope
/// its caller needs and, for acts on a project, the role there.
macro_rules! acts {
    ($($(#[$doc:meta])* $act:ident => $scope:ident $(, $role:ident, $what:literal)?;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $act;
        impl RequiredScope for $act {
            const SCOPE: Scope = Scope::$scope;
        }
        $(impl ProjectAct for $act {
            const ROLE: ProjectRole = ProjectRole::$role;
            const WHAT: &'static str = $what;
        })?
    )*};
}

acts! {
    /// Read projects and pipelines, and their revisions.
    ReadProjects => ProjectsRead, Viewer, "read";
    /// Apply a project, or a pipeline (whose own rule is
    /// [`Bindings::may_change_pipeline`]); a new project needs `creator`.
    ChangeDefinitions => ProjectsWrite, Maintainer, "change";
    /// Delete a project.
    DeleteProject => ProjectsWrite, Owner, "delete";
    /// See or rotate a project's trigger secret: it starts builds, so it
    /// takes as much as changing the project.
    ManageTriggerSecret => ProjectsWrite, Maintainer, "see or rotate the trigger secret of";
    /// Read builds, their logs, and the mail about them.
    ReadBuilds => BuildsRead, Viewer, "read the builds of";
    /// List the workers (they serve every project).
    ListWorkers => BuildsRead;
    /// Start a build.
    Trigger => BuildsTrigger, Developer, "trigger builds of";
    /// Run a build again.
    Retry => BuildsTrigger, Developer, "retry builds of";
    /// Cancel a build.
    Cancel => BuildsCancel, Developer, "cancel builds of";
    /// List a project's members.
    ReadMembers => ProjectsRead, Viewer, "read the members of";
    /// Add, change and remove a project's members.
    ManageMembers => ProjectsWrite, Owner, "manage the members of";
    /// List the global roles (an admin's).
    ReadRoles => ProjectsRead;
    /// Grant and revoke global roles (an admin's).
    ManageRoles => ProjectsWrite;
    /// Read the audit log (an admin's, or a project's owner's for it).
    ReadAudit => ProjectsRead;
    /// Claim actions and report on them, as a worker.
    RunWork => WorkRun;
}

/// The current bindings (cached).
pub(crate) async fn bindings(core: &Core) -> Result<std::sync::Arc<Bindings>> {
    core.access.bindings().await
}

/// Refuses `who` doing `A` to `project`; a project it may not see is
/// answered as `hidden` says (404).
pub fn judge<A: ProjectAct>(
    bindings: &Bindings,
    who: &Identity<'_>,
    project: &str,
    hidden: impl FnOnce() -> String,
) -> Result<()> {
    match bindings.decide(who, project, A::ROLE) {
        Decision::Allowed => Ok(()),
        Decision::Hidden => Err(ControllerError::NotFound(hidden())),
        Decision::NeedsToken => Err(ControllerError::NoToken),
        Decision::Refused { has } => Err(ControllerError::Forbidden(format!(
            "{} may not {} project {project:?}: that needs the role {} there ({})",
            who.describe(),
            A::WHAT,
            A::ROLE,
            match has {
                Some(role) => format!("it has {role}"),
                None => "it has none".to_string(),
            }
        ))),
    }
}

/// Refuses `caller` doing `A` to `project` (404 as "no project"; 400 for
/// a name that cannot be one).
pub(crate) async fn check<A: ProjectAct>(
    core: &Core,
    caller: Option<&Caller>,
    project: &str,
) -> Result<()> {
    crate::definitions::check_name("project", project)?;
    let bindings = bindings(core).await?;
    judge::<A>(&bindings, &Identity::of(caller), project, || {
        format!("no project {project:?}")
    })
}

/// Refuses `caller` doing `A` to a build of `project` (404 as `hidden`).
pub(crate) async fn check_build<A: ProjectAct>(
    core: &Core,
    caller: Option<&Caller>,
    project: &str,
    hidden: impl FnOnce() -> String,
) -> Result<()> {
    let bindings = bindings(core).await?;
    judge::<A>(&bindings, &Identity::of(caller), project, hidden)
}

/// Whether `caller` may do `A` to `project`: its token's scope, and its
/// role there.
fn may<A: ProjectAct>(bindings: &Bindings, caller: Option<&Caller>, project: &str) -> bool {
    caller.is_none_or(|c| c.scopes.contains(A::SCOPE))
        && bindings.decide(&Identity::of(caller), project, A::ROLE) == Decision::Allowed
}

/// What `caller` may do to `project` (404 if it may not read it).
pub(crate) async fn project_access(
    core: &Core,
    caller: Option<&Caller>,
    project: &str,
) -> Result<ick_api::controller::ProjectAccess> {
    check::<ReadProjects>(core, caller, project).await?;
    let b = bindings(core).await?;
    Ok(ick_api::controller::ProjectAccess {
        read: may::<ReadBuilds>(&b, caller, project),
        trigger: may::<Trigger>(&b, caller, project),
        retry: may::<Retry>(&b, caller, project),
        cancel: may::<Cancel>(&b, caller, project),
        change: may::<ChangeDefinitions>(&b, caller, project),
        manage_members: may::<ManageMembers>(&b, caller, project),
        delete: may::<DeleteProject>(&b, caller, project),
    })
}

/// Refuses a caller that is not a global `admin`.
pub(crate) async fn check_admin(core: &Core, caller: &Caller, what: &str) -> Result<()> {
    let bindings = bindings(core).await?;
    let who = Identity::of(Some(caller));
    if bindings.is_admin(&who) {
        Ok(())
    } else {
        Err(ControllerError::Forbidden(format!(
            "{} may not {what}: that needs the global role admin",
            who.describe()
        )))
    }
}

/// Which projects a listing may show `caller`.
#[derive(Debug, Clone)]
pub enum Readable {
    /// Every one there is and ever was (an admin).
    All,
    /// Only these.
    Only(Vec<String>),
}

/// The projects `caller` may read.
pub(crate) async fn readable(core: &Core, caller: Option<&Caller>) -> Result<Readable> {
    let bindings = bindings(core).await?;
    Ok(match bindings.readable(&Identity::of(caller)) {
        None => Readable::All,
        Some(list) => Readable::Only(list.into_iter().map(str::to_string).collect()),
    })
}

/// The sentence of a refused pipeline change.
pub fn pipeline_refusal(who: &Identity<'_>, pipeline: &str, why: PipelineRefusal) -> String {
    match why {
        PipelineRefusal::Unused => format!(
            "{} may not create or change pipeline {pipeline:?}: no project runs it, and that \
             needs the global role creator, or maintainer of a project",
            who.describe()
        ),
        PipelineRefusal::NotMaintainer { named, hidden } => {
            let mut lacking: Vec<String> = named.iter().map(|p| format!("{p:?}")).collect();
            if hidden > 0 {
                lacking.push(format!(
                    "{hidden} project{} it cannot see",
                    if hidden == 1 { "" } else { "s" }
                ));
            }
            format!(
                "{} may not change pipeline {pipeline:?}: projects share it, so that needs the \
                 role maintainer on every project that runs it, and it is not on {}",
                who.describe(),
                lacking.join(", ")
            )
        }
    }
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
