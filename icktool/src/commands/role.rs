//! `icktool role grant|revoke|list`: the global roles, `admin` (everything
//! everywhere) and `creator` (may create projects); an admin's to change.

use ick_api::controller::{GlobalRole, Member, RoleBinding, RoleRequest};
use reqwest::Method;

use crate::Exit;
use crate::connection::{Ick, Service, segment};
use crate::output::{Out, or_dash, time};

#[derive(clap::Subcommand)]
pub enum RoleCommand {
    /// Give a member a global role.
    Grant {
        /// user:NAME, group:NAME or client:NAME.
        member: Member,
        /// admin or creator.
        role: GlobalRole,
    },
    /// Take a global role away (the controller's config's admins stay).
    Revoke {
        /// user:NAME, group:NAME or client:NAME.
        member: Member,
        /// admin or creator.
        role: GlobalRole,
    },
    /// Who has which global role.
    #[command(alias = "ls")]
    List,
}

pub async fn run(ick: &Ick, command: RoleCommand, out: &Out) -> anyhow::Result<Exit> {
    match command {
        RoleCommand::Grant { member, role } => {
            let request = RoleRequest { member, role };
            let done: RoleRequest = ick
                .call(Service::Controller, Method::PUT, "/roles", Some(&request))
                .await?;
            out.print(&done, || format!("{} is {}\n", done.member, done.role))?;
        }
        RoleCommand::Revoke { member, role } => {
            ick.delete(
                Service::Controller,
                &format!("/roles/{}/{role}", segment(&member.to_string())),
            )
            .await?;
            out.print(
                &serde_json::json!({"revoked": {"member": member, "role": role}}),
                || format!("{member} is no longer {role}\n"),
            )?;
        }
        RoleCommand::List => {
            let list: Vec<RoleBinding> = ick.get(Service::Controller, "/roles").await?;
            let rows = list
                .iter()
                .map(|b| {
                    vec![
                        b.member.to_string(),
                        b.role.to_string(),
                        if b.from_config {
                            "the controller's config".to_string()
                        } else {
                            or_dash(b.granted_by.as_deref())
                        },
                        or_dash(b.granted_at.map(time)),
                    ]
                })
                .collect();
            out.list(
                &list,
                &["member", "role", "granted by", "at"],
                rows,
                "no global roles",
            )?;
        }
    }
    Ok(Exit::Ok)
}
