//! The decision itself, pure: given who calls ([`Identity`]) and every
//! binding ([`Bindings`]), what may it do to a project or a pipeline. No
//! I/O, so it is tested alone and costs a few hash lookups per request.
//!
//! A caller's roles on a project are the best of its bindings there: for a
//! person (a token with `ick_user`), `user:NAME` and `group:G` for each of
//! its groups; for a machine, `client:NAME` (the IDP client's name). A
//! person's token never counts as its client: otherwise everyone who logs
//! in through one client would share that client's roles. A global `admin`
//! has every role on every project; `creator` may create projects.
//!
//! Reading needs no role unless the project is private: `internal` ones
//! are read by every caller with a token, `public` ones without a token
//! too. To a caller that may not read a project, the project does not
//! exist ([`Decision::Hidden`], answered 404).

use std::collections::HashMap;

use ick_api::auth::Caller;
use ick_api::controller::{GlobalRole, Member, ProjectRole, Visibility};

/// Who a caller is, for roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// No token (only public projects may be read).
    Anonymous,
    /// A person: its user name and groups.
    Person { name: &'a str, groups: &'a [String] },
    /// A machine: its IDP client's name (none from an IDP that does not
    /// name clients: then it has no bindings).
    Client { name: Option<&'a str> },
}

impl<'a> Identity<'a> {
    /// Who `caller` is; anonymous without one.
    pub fn of(caller: Option<&'a Caller>) -> Identity<'a> {
        match caller {
            None => Identity::Anonymous,
            Some(Caller {
                user: Some(user), ..
            }) => Identity::Person {
                name: &user.name,
                groups: &user.groups,
            },
            Some(caller) => Identity::Client {
                name: caller.client_name.as_deref(),
            },
        }
    }

    /// How messages name it: `user:alice`, `client:ci`.
    pub fn describe(&self) -> String {
        match self {
            Identity::Anonymous => "a caller without a token".to_string(),
            Identity::Person { name, .. } => format!("user:{name}"),
            Identity::Client { name: Some(name) } => format!("client:{name}"),
            Identity::Client { name: None } => "a client its IDP does not name".to_string(),
        }
    }
}

/// Members that hold something, by kind, for lookups without allocating.
#[derive(Debug, Clone)]
struct Holders<T> {
    users: HashMap<String, T>,
    groups: HashMap<String, T>,
    clients: HashMap<String, T>,
}

impl<T> Default for Holders<T> {
    fn default() -> Self {
        Holders {
            users: HashMap::new(),
            groups: HashMap::new(),
            clients: HashMap::new(),
        }
    }
}

impl<T: Copy + Ord> Holders<T> {
    fn insert(&mut self, member: Member, value: T) {
        let (map, name) = match member {
            Member::User(n) => (&mut self.users, n),
            Member::Group(n) => (&mut self.groups, n),
            Member::Client(n) => (&mut self.clients, n),
        };
        let slot = map.entry(name).or_insert(value);
        if value > *slot {
            *slot = value;
        }
    }

    /// The best that `who` holds.
    fn best(&self, who: &Identity<'_>) -> Option<T> {
        match who {
            Identity::Anonymous | Identity::Client { name: None } => None,
            Identity::Client { name: Some(name) } => self.clients.get(*name).copied(),
            Identity::Person { name, groups } => {
                let mut best = self.users.get(*name).copied();
                for group in groups.iter() {
                    if let Some(&role) = self.groups.get(group.as_str()) {
                        best = best.max(Some(role));
                    }
                }
                best
            }
        }
    }
}

/// One project's visibility and members.
#[derive(Debug, Clone)]
pub struct ProjectBindings {
    pub visibility: Visibility,
    members: Holders<ProjectRole>,
}

/// Every binding: the global roles (the config's admins among them) and
/// each project's visibility and members.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    admins: Holders<()>,
    creators: Holders<()>,
    projects: HashMap<String, ProjectBindings>,
}

/// What a caller may do to a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// It may not even read the project (or there is none): answer as if
    /// there were none (404).
    Hidden,
    /// Without a token, only public projects are read (401).
    NeedsToken,
    /// It may read the project but not do this: 403. Its role there, if any.
    Refused { has: Option<ProjectRole> },
}

/// Why a pipeline may not be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineRefusal {
    /// No project runs it, and the caller is neither `creator` nor a
    /// `maintainer` of any project.
    Unused,
    /// Projects run it on which the caller is not `maintainer`: those it
    /// may read, by name, and how many others.
    NotMaintainer { named: Vec<String>, hidden: usize },
}

impl Bindings {
    /// Bindings from what is stored and the config's `admins`.
    pub fn new(
        config_admins: &[Member],
        global: impl IntoIterator<Item = (Member, GlobalRole)>,
        projects: impl IntoIterator<Item = (String, Visibility)>,
        members: impl IntoIterator<Item = (String, Member, ProjectRole)>,
    ) -> Bindings {
        let mut bindings = Bindings::default();
        for member in config_admins {
            bindings.admins.insert(member.clone(), ());
        }
        for (member, role) in global {
            match role {
                GlobalRole::Admin => bindings.admins.insert(member, ()),
                GlobalRole::Creator => bindings.creators.insert(member, ()),
            }
        }
        for (name, visibility) in projects {
            bindings.projects.insert(
                name,
                ProjectBindings {
                    visibility,
                    members: Holders::default(),
                },
            );
        }
        for (project, member, role) in members {
            if let Some(p) = bindings.projects.get_mut(&project) {
                p.members.insert(member, role);
            }
        }
        bindings
    }

    /// Whether `who` is a global `admin`.
    pub fn is_admin(&self, who: &Identity<'_>) -> bool {
        self.admins.best(who).is_some()
    }

    /// Whether `who` may create projects: `creator` or `admin`.
    pub fn may_create_projects(&self, who: &Identity<'_>) -> bool {
        self.is_admin(who) || self.creators.best(who).is_some()
    }

    /// Whether there is a project of that name.
    pub fn exists(&self, project: &str) -> bool {
        self.projects.contains_key(project)
    }

    /// The visibility of a project, if there is one.
    pub fn visibility(&self, project: &str) -> Option<Visibility> {
        self.projects.get(project).map(|p| p.visibility)
    }

    /// The role of `who` on `project` by its bindings (`owner` for an
    /// admin); none if it has no binding there.
    pub fn role(&self, who: &Identity<'_>, project: &str) -> Option<ProjectRole> {
        if self.is_admin(who) {
            return Some(ProjectRole::Owner);
        }
        self.projects.get(project)?.members.best(who)
    }

    /// May `who` do to `project` what needs `need`?
    pub fn decide(&self, who: &Identity<'_>, project: &str, need: ProjectRole) -> Decision {
        if self.is_admin(who) {
            return Decision::Allowed;
        }
        let anonymous = matches!(who, Identity::Anonymous);
        let Some(p) = self.projects.get(project) else {
            return if anonymous {
                Decision::NeedsToken
            } else {
                Decision::Hidden
            };
        };
        let role = p.members.best(who);
        let readable = role.is_some()
            || match p.visibility {
                Visibility::Public => true,
                Visibility::Internal => !anonymous,
                Visibility::Private => false,
            };
        if role.is_some_and(|r| r >= need) || (need == ProjectRole::Viewer && readable) {
            Decision::Allowed
        } else if anonymous {
            Decision::NeedsToken
        } else if !readable {
            Decision::Hidden
        } else {
            Decision::Refused { has: role }
        }
    }

    /// May `who` read `project`?
    pub fn may_read(&self, who: &Identity<'_>, project: &str) -> bool {
        self.decide(who, project, ProjectRole::Viewer) == Decision::Allowed
    }

    /// The projects `who` may read; `None` for all there are and ever
    /// were (an admin: builds of deleted projects too).
    pub fn readable(&self, who: &Identity<'_>) -> Option<Vec<&str>> {
        if self.is_admin(who) {
            return None;
        }
        Some(
            self.projects
                .keys()
                .filter(|p| self.may_read(who, p))
                .map(String::as_str)
                .collect(),
        )
    }

    /// May `who` read a pipeline that `users` run? One that no project runs
    /// is read by every caller with a token; one that only private
    /// projects run, only by who may read one of them.
    pub fn may_read_pipeline(&self, who: &Identity<'_>, users: &[String]) -> bool {
        if matches!(who, Identity::Anonymous) {
            return false;
        }
        users.is_empty() || users.iter().any(|p| self.may_read(who, p))
    }

    /// May `who` create, change or delete a pipeline that `users` run (all
    /// of them: those that run it now and those that will)? Pipelines are
    /// shared, so changing what a project's builds run needs `maintainer`
    /// on every project that runs it; one that no project runs needs
    /// `creator`, or `maintainer` of some project.
    pub fn may_change_pipeline(
        &self,
        who: &Identity<'_>,
        users: &[String],
    ) -> Result<(), PipelineRefusal> {
        if self.is_admin(who) {
            return Ok(());
        }
        if users.is_empty() {
            let maintains_some = || {
                self.projects
                    .values()
                    .any(|p| p.members.best(who) >= Some(ProjectRole::Maintainer))
            };
            return if self.creators.best(who).is_some() || maintains_some() {
                Ok(())
            } else {
                Err(PipelineRefusal::Unused)
            };
        }
        let mut named = Vec::new();
        let mut hidden = 0;
        for project in users {
            if self.role(who, project) >= Some(ProjectRole::Maintainer) {
                continue;
            }
            if self.may_read(who, project) {
                named.push(project.clone());
            } else {
                hidden += 1;
            }
        }
        if named.is_empty() && hidden == 0 {
            Ok(())
        } else {
            named.sort();
            named.dedup();
            Err(PipelineRefusal::NotMaintainer { named, hidden })
        }
    }

    /// May `who` read the audit log, of one project or of all?
    pub fn may_read_audit(&self, who: &Identity<'_>, project: Option<&str>) -> bool {
        self.is_admin(who) || project.is_some_and(|p| self.role(who, p) == Some(ProjectRole::Owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProjectRole::*;

    fn m(text: &str) -> Member {
        text.parse().expect("a member")
    }

    fn person<'a>(name: &'a str, groups: &'a [String]) -> Identity<'a> {
        Identity::Person { name, groups }
    }

    fn client(name: &str) -> Identity<'_> {
        Identity::Client { name: Some(name) }
    }

    fn bindings() -> Bindings {
        Bindings::new(
            &[m("client:ick-admin")],
            [
                (m("group:leads"), GlobalRole::Admin),
                (m("user:carol"), GlobalRole::Creator),
            ],
            [
                ("open".to_string(), Visibility::Internal),
                ("secret".to_string(), Visibility::Private),
                ("world".to_string(), Visibility::Public),
            ],
            [
                ("open".to_string(), m("user:alice"), Viewer),
                ("open".to_string(), m("group:devs"), Developer),
                ("secret".to_string(), m("group:devs"), Maintainer),
                ("secret".to_string(), m("user:alice"), Owner),
                ("secret".to_string(), m("client:ci"), Developer),
                ("world".to_string(), m("client:ci"), Maintainer),
                ("gone".to_string(), m("user:alice"), Owner),
            ],
        )
    }

    #[test]
    fn a_person_has_the_best_of_its_user_and_group_bindings() {
        let b = bindings();
        let devs = vec!["devs".to_string()];
        assert_eq!(b.role(&person("alice", &[]), "open"), Some(Viewer));
        assert_eq!(b.role(&person("alice", &devs), "open"), Some(Developer));
        assert_eq!(b.role(&person("bob", &devs), "open"), Some(Developer));
        assert_eq!(b.role(&person("bob", &devs), "secret"), Some(Maintainer));
        assert_eq!(b.role(&person("alice", &devs), "secret"), Some(Owner));
        assert_eq!(b.role(&person("bob", &[]), "open"), None);
        assert_eq!(
            b.decide(&person("alice", &[]), "open", Developer),
            Decision::Refused { has: Some(Viewer) }
        );
        assert_eq!(
            b.decide(&person("alice", &devs), "open", Developer),
            Decision::Allowed
        );
    }

    #[test]
    fn a_group_admin_is_admin_everywhere_and_a_creator_creates() {
        let b = bindings();
        let leads = vec!["other".to_string(), "leads".to_string()];
        let lead = person("dave", &leads);
        assert!(b.is_admin(&lead));
        assert_eq!(b.decide(&lead, "secret", Owner), Decision::Allowed);
        assert_eq!(b.decide(&lead, "not-yet", Owner), Decision::Allowed);
        assert!(b.may_read_audit(&lead, None));
        assert!(b.may_create_projects(&person("carol", &[])));
        assert!(!b.may_create_projects(&person("alice", &[])));
        assert!(b.may_create_projects(&client("ick-admin")));
        // A creator has no role on projects it did not create.
        assert_eq!(
            b.decide(&person("carol", &[]), "secret", Viewer),
            Decision::Hidden
        );
    }

    #[test]
    fn a_persons_token_does_not_count_as_its_client_nor_a_client_as_a_user() {
        // "ci" is a client with roles; a person named ci is someone else,
        // and a person's token never has the roles of its client.
        let b = bindings();
        assert_eq!(b.role(&client("ci"), "secret"), Some(Developer));
        assert_eq!(b.role(&person("ci", &[]), "secret"), None);
        assert_eq!(b.role(&client("alice"), "secret"), None);
        assert_eq!(b.role(&client("devs"), "open"), None);
        assert!(!b.is_admin(&person("ick-admin", &[])));
        assert!(!b.is_admin(&Identity::Client { name: None }));
        assert!(!b.is_admin(&client("leads")));
    }

    #[test]
    fn visibility_decides_who_reads_without_a_role() {
        let b = bindings();
        let outsider = client("stranger");
        assert_eq!(b.decide(&outsider, "open", Viewer), Decision::Allowed);
        assert_eq!(b.decide(&outsider, "world", Viewer), Decision::Allowed);
        assert_eq!(b.decide(&outsider, "secret", Viewer), Decision::Hidden);
        assert_eq!(b.decide(&outsider, "secret", Owner), Decision::Hidden);
        assert_eq!(b.decide(&outsider, "nothing", Viewer), Decision::Hidden);
        assert_eq!(
            b.decide(&outsider, "open", Developer),
            Decision::Refused { has: None }
        );
        let nobody = Identity::Anonymous;
        assert_eq!(b.decide(&nobody, "world", Viewer), Decision::Allowed);
        assert_eq!(b.decide(&nobody, "world", Developer), Decision::NeedsToken);
        assert_eq!(b.decide(&nobody, "open", Viewer), Decision::NeedsToken);
        assert_eq!(b.decide(&nobody, "secret", Viewer), Decision::NeedsToken);
        assert_eq!(b.decide(&nobody, "nothing", Viewer), Decision::NeedsToken);
        let mut seen = b.readable(&outsider).expect("not an admin");
        seen.sort();
        assert_eq!(seen, ["open", "world"]);
        let mut seen = b
            .readable(&person("x", &["devs".to_string()]))
            .expect("listed");
        seen.sort();
        assert_eq!(seen, ["open", "secret", "world"]);
        assert_eq!(b.readable(&client("ick-admin")), None);
    }

    #[test]
    fn bindings_of_a_project_that_is_gone_count_for_nothing() {
        let b = bindings();
        assert_eq!(b.role(&person("alice", &[]), "gone"), None);
        assert_eq!(
            b.decide(&person("alice", &[]), "gone", Viewer),
            Decision::Hidden
        );
    }

    #[test]
    fn a_shared_pipeline_changes_only_with_maintainer_on_every_project_that_runs_it() {
        let b = bindings();
        let devs = vec!["devs".to_string()];
        let both = vec!["open".to_string(), "secret".to_string()];
        // Maintainer of secret, developer of open: no.
        assert_eq!(
            b.may_change_pipeline(&person("bob", &devs), &both),
            Err(PipelineRefusal::NotMaintainer {
                named: vec!["open".into()],
                hidden: 0
            })
        );
        assert_eq!(
            b.may_change_pipeline(&person("bob", &devs), &["secret".to_string()]),
            Ok(())
        );
        // A project the caller cannot see is counted, not named.
        assert_eq!(
            b.may_change_pipeline(&client("stranger"), &both),
            Err(PipelineRefusal::NotMaintainer {
                named: vec!["open".into()],
                hidden: 1
            })
        );
        assert_eq!(b.may_change_pipeline(&client("ick-admin"), &both), Ok(()));
        // No project runs it: creator, or maintainer somewhere.
        assert_eq!(b.may_change_pipeline(&person("carol", &[]), &[]), Ok(()));
        assert_eq!(b.may_change_pipeline(&client("ci"), &[]), Ok(()));
        assert_eq!(
            b.may_change_pipeline(&person("alice", &[]), &[])
                .map(|_| ()),
            Ok(()),
            "alice owns secret"
        );
        assert_eq!(
            b.may_change_pipeline(&person("erin", &[]), &[]),
            Err(PipelineRefusal::Unused)
        );
    }

    #[test]
    fn pipelines_are_read_through_the_projects_that_run_them() {
        let b = bindings();
        let outsider = client("stranger");
        assert!(b.may_read_pipeline(&outsider, &[]));
        assert!(b.may_read_pipeline(&outsider, &["open".to_string()]));
        assert!(!b.may_read_pipeline(&outsider, &["secret".to_string()]));
        assert!(b.may_read_pipeline(&client("ci"), &["secret".to_string()]));
        assert!(!b.may_read_pipeline(&Identity::Anonymous, &[]));
    }

    #[test]
    fn only_admins_and_a_projects_owners_read_its_audit() {
        let b = bindings();
        assert!(b.may_read_audit(&person("alice", &[]), Some("secret")));
        assert!(!b.may_read_audit(&person("alice", &[]), Some("open")));
        assert!(!b.may_read_audit(&person("alice", &[]), None));
        assert!(!b.may_read_audit(&client("ci"), Some("world")));
        assert!(b.may_read_audit(&client("ick-admin"), None));
    }
}
