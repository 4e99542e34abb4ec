//! People and roles: who may do what to a project.
//!
//! | method and path | who |
//! | --- | --- |
//! | `GET /projects/{name}/members` ([`Membership`]) | whoever may read the project (with a token) |
//! | `PUT /projects/{name}/members` ([`MemberRequest`]) | the project's `owner`, or an `admin` |
//! | `DELETE /projects/{name}/members/{member}` | the same |
//! | `GET /roles` ([`RoleBinding`]) | an `admin` |
//! | `PUT /roles` ([`RoleRequest`]), `DELETE /roles/{member}/{role}` | an `admin` |
//!
//! Reading needs the scope `projects:read`, changing `projects:write`: a
//! token's scopes stay the most its holder may do, whatever its roles.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who a role is given to: `user:NAME` (a person), `group:NAME` (every
/// person in an IDP group) or `client:NAME` (a machine: the IDP client's
/// name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Member {
    /// A person, by user name.
    User(String),
    /// Every person in a group.
    Group(String),
    /// An OAuth2 client, by its name in the IDP.
    Client(String),
}

/// `[a-z0-9][a-z0-9._-]*`, at most 100 characters: user and group names.
fn is_person_name(name: &str) -> bool {
    crate::controller::is_valid_name(name)
}

/// 1-64 letters, digits, `-`, `_` or `.`: the IDP's rule for client names.
fn is_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Member {
    /// `user`, `group` or `client`.
    pub fn kind(&self) -> &'static str {
        match self {
            Member::User(_) => "user",
            Member::Group(_) => "group",
            Member::Client(_) => "client",
        }
    }

    /// The name after the colon.
    pub fn name(&self) -> &str {
        match self {
            Member::User(n) | Member::Group(n) | Member::Client(n) => n,
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

impl FromStr for Member {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "a member is user:NAME, group:NAME or client:NAME";
        let Some((kind, name)) = s.split_once(':') else {
            return Err(format!("{s:?} is not a member: {usage}"));
        };
        match kind {
            "user" | "group" if !is_person_name(name) => Err(format!(
                "{s:?}: a {kind} name is lower-case letters, digits, '.', '_' and '-', \
                 starting with a letter or digit"
            )),
            "client" if !is_client_name(name) => Err(format!(
                "{s:?}: a client name is 1-64 letters, digits, '-', '_' or '.'"
            )),
            "user" => Ok(Member::User(name.to_string())),
            "group" => Ok(Member::Group(name.to_string())),
            "client" => Ok(Member::Client(name.to_string())),
            _ => Err(format!("{s:?} is not a member: {usage}")),
        }
    }
}

impl Serialize for Member {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A role on one project; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    /// Read the project, its definitions, builds and logs.
    Viewer,
    /// Also trigger, cancel and retry builds.
    Developer,
    /// Also change its definitions, triggers and trigger secret.
    Maintainer,
    /// Also manage its members, and delete it.
    Owner,
}

impl ProjectRole {
    /// Every project role, from the least.
    pub const ALL: [ProjectRole; 4] = [
        ProjectRole::Viewer,
        ProjectRole::Developer,
        ProjectRole::Maintainer,
        ProjectRole::Owner,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Viewer => "viewer",
            ProjectRole::Developer => "developer",
            ProjectRole::Maintainer => "maintainer",
            ProjectRole::Owner => "owner",
        }
    }
}

impl fmt::Display for ProjectRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProjectRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(role) = ProjectRole::ALL.into_iter().find(|r| r.as_str() == s) {
            return Ok(role);
        }
        if s.parse::<GlobalRole>().is_ok() {
            return Err(format!(
                "{s} is a global role, not a project's: grant it with PUT /roles \
                 (icktool role grant MEMBER {s})"
            ));
        }
        Err(format!(
            "unknown role {s:?}: a project's roles are viewer, developer, maintainer and owner"
        ))
    }
}

/// A role everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GlobalRole {
    /// Everything, on every project.
    Admin,
    /// Create projects (and become their owner).
    Creator,
}

impl GlobalRole {
    /// Every global role.
    pub const ALL: [GlobalRole; 2] = [GlobalRole::Admin, GlobalRole::Creator];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            GlobalRole::Admin => "admin",
            GlobalRole::Creator => "creator",
        }
    }
}

impl fmt::Display for GlobalRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GlobalRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(role) = GlobalRole::ALL.into_iter().find(|r| r.as_str() == s) {
            return Ok(role);
        }
        if ProjectRole::ALL.iter().any(|r| r.as_str() == s) {
            return Err(format!(
                "{s} is a project's role, not a global one: give it with PUT \
                 /projects/NAME/members (icktool member add PROJECT MEMBER {s})"
            ));
        }
        Err(format!(
            "unknown role {s:?}: the global roles are admin and creator"
        ))
    }
}

/// Reads a role by its `FromStr`, so that a wrong one is refused with
/// the sentence that says which roles there are.
macro_rules! deserialize_by_name {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    )*};
}

deserialize_by_name!(Member, ProjectRole, GlobalRole);

/// The body of `PUT /projects/{name}/members`: give `member` this role on
/// the project (replacing the one it had). Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// Who, e.g. `user:alice`.
    pub member: Member,
    /// The role.
    pub role: ProjectRole,
}

/// One member of a project, as `GET /projects/{name}/members` lists them
/// and `PUT` answers (201 when it was not a member before, else 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Who.
    pub member: Member,
    /// Its role on the project.
    pub role: ProjectRole,
    /// Who gave it (a person's or client's name).
    pub granted_by: String,
    /// When.
    pub granted_at: DateTime<Utc>,
}

/// The body of `PUT /roles`: give `member` a global role. Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// Who, e.g. `group:release`.
    pub member: Member,
    /// The role.
    pub role: GlobalRole,
}

/// One global role binding, as `GET /roles` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleBinding {
    /// Who.
    pub member: Member,
    /// The role.
    pub role: GlobalRole,
    /// Set by the controller's config (`admins:`): it cannot be revoked
    /// through the API.
    pub from_config: bool,
    /// Who granted it (none for the config's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
    /// When (none for the config's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_and_print_as_kind_colon_name() {
        for text in [
            "user:alice",
            "group:release-team",
            "client:ick-admin",
            "client:CI_1.x",
        ] {
            let member: Member = text.parse().expect(text);
            assert_eq!(member.to_string(), text);
        }
        assert_eq!(
            "user:alice".parse::<Member>(),
            Ok(Member::User("alice".into()))
        );
        for bad in [
            "alice",
            "user:",
            "user:Alice",
            "group:a b",
            "client:",
            "client:a/b",
            "team:x",
            ":x",
        ] {
            let err = bad.parse::<Member>().expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn roles_are_ordered_and_a_wrong_kind_of_role_says_so() {
        assert!(ProjectRole::Viewer < ProjectRole::Developer);
        assert!(ProjectRole::Maintainer < ProjectRole::Owner);
        assert_eq!("owner".parse::<ProjectRole>(), Ok(ProjectRole::Owner));
        let err = "admin".parse::<ProjectRole>().expect_err("global");
        assert!(err.contains("global role"), "{err}");
        let err = "viewer".parse::<GlobalRole>().expect_err("a project's");
        assert!(err.contains("project's role"), "{err}");
        assert!("boss".parse::<ProjectRole>().is_err());
        let body: Result<MemberRequest, _> =
            serde_json::from_str(r#"{"member": "user:alice", "role": "chief"}"#);
        let err = body.expect_err("unknown role").to_string();
        assert!(
            err.contains("viewer, developer, maintainer and owner"),
            "{err}"
        );
    }
}

/// What the caller may do to a project, as the controller decides it
/// (its token's scopes and its roles together): `GET
/// /projects/{name}/access`, so that a dashboard shows only the buttons
/// that would work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectAccess {
    pub read: bool,
    pub trigger: bool,
    pub retry: bool,
    pub cancel: bool,
    pub change: bool,
    pub manage_members: bool,
    pub delete: bool,
}
