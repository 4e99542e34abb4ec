//! `icktool member add|list|remove`: who has which role on a project
//! (`add` and `remove`: the project's owner, or an admin).

use ick_api::controller::{Member, MemberRequest, Membership, ProjectRole};
use reqwest::Method;

use crate::Exit;
use crate::connection::{Ick, Service, segment};
use crate::output::{Out, time};

#[derive(clap::Subcommand)]
pub enum MemberCommand {
    /// Give a member a role on a project (replacing the one it had).
    Add {
        /// The project.
        project: String,
        /// user:NAME, group:NAME or client:NAME (an IDP client's name).
        member: Member,
        /// viewer, developer, maintainer or owner.
        role: ProjectRole,
    },
    /// A project's members and their roles.
    #[command(alias = "ls")]
    List {
        /// The project.
        project: String,
    },
    /// Take a member's role on a project away.
    #[command(alias = "rm")]
    Remove {
        /// The project.
        project: String,
        /// user:NAME, group:NAME or client:NAME.
        member: Member,
    },
}

pub async fn run(ick: &Ick, command: MemberCommand, out: &Out) -> anyhow::Result<Exit> {
    match command {
        MemberCommand::Add {
            project,
            member,
            role,
        } => {
            let request = MemberRequest { member, role };
            let done: Membership = ick
                .call(
                    Service::Controller,
                    Method::PUT,
                    &format!("/projects/{}/members", segment(&project)),
                    Some(&request),
                )
                .await?;
            out.print(&done, || {
                format!("{} is {} of project {project}\n", done.member, done.role)
            })?;
        }
        MemberCommand::List { project } => {
            let list: Vec<Membership> = ick
                .get(
                    Service::Controller,
                    &format!("/projects/{}/members", segment(&project)),
                )
                .await?;
            let rows = list
                .iter()
                .map(|m| {
                    vec![
                        m.member.to_string(),
                        m.role.to_string(),
                        m.granted_by.clone(),
                        time(m.granted_at),
                    ]
                })
                .collect();
            out.list(
                &list,
                &["member", "role", "granted by", "at"],
                rows,
                &format!("project {project} has no members (admins may do everything)"),
            )?;
        }
        MemberCommand::Remove { project, member } => {
            ick.delete(
                Service::Controller,
                &format!(
                    "/projects/{}/members/{}",
                    segment(&project),
                    segment(&member.to_string())
                ),
            )
            .await?;
            out.print(&serde_json::json!({"removed": member}), || {
                format!("{member} is no longer a member of project {project}\n")
            })?;
        }
    }
    Ok(Exit::Ok)
}
