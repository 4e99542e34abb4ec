//! `icktool user …` and `icktool group …`: people in the IDP (scope
//! `idp:admin`). Passwords come from a prompt, a file or stdin.

use ick_api::idp::{CreateUser, GroupInfo, UpdateUser, UserInfo};

use super::password::PasswordSource;
use crate::Exit;
use crate::connection::Ick;
use crate::output::Out;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a user; their password is asked for (or read with
    /// --password-file / --password-stdin).
    Create {
        /// `[a-z0-9][a-z0-9._-]*`: what they log in with.
        name: String,
        /// How people see them (default: the name).
        #[arg(long)]
        display_name: Option<String>,
        /// Their email address.
        #[arg(long)]
        email: Option<String>,
        /// Set no password now (they cannot log in until `user passwd`).
        #[arg(long, conflicts_with_all = ["password_file", "password_stdin"])]
        no_password: bool,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List users.
    #[command(alias = "ls")]
    List,
    /// Show one user.
    Show { name: String },
    /// Change a user's display name or email.
    Update {
        name: String,
        #[arg(long)]
        display_name: Option<String>,
        /// `''` for none.
        #[arg(long)]
        email: Option<String>,
    },
    /// Stop a user from logging in; their refresh tokens stop working.
    Disable { name: String },
    /// Let a disabled user log in again.
    Enable { name: String },
    /// Delete a user (and revoke their refresh tokens).
    #[command(alias = "rm")]
    Delete { name: String },
    /// Set a user's password; they must log in again everywhere.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
}

#[derive(clap::Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Create { name: String },
    /// List groups and their members.
    #[command(alias = "ls")]
    List,
    /// Show one group.
    Show { name: String },
    /// Delete a group (its members stay users).
    #[command(alias = "rm")]
    Delete { name: String },
    /// Add a user to a group.
    Add { group: String, user: String },
    /// Remove a user from a group.
    Remove { group: String, user: String },
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn user_text(u: &UserInfo) -> String {
    format!(
        "name:          {}\nid:            {}\ndisplay name:  {}\nemail:         {}\n\
         enabled:       {}\npassword set:  {}\ngroups:        {}\ncreated:       {}\n",
        u.name,
        u.id,
        u.display_name,
        if u.email.is_empty() { "-" } else { &u.email },
        yes_no(u.enabled),
        yes_no(u.has_password),
        if u.groups.is_empty() {
            "-".to_string()
        } else {
            u.groups.join(", ")
        },
        u.created_at,
    )
}

fn group_text(g: &GroupInfo) -> String {
    format!(
        "group:    {}\nmembers:  {}\n",
        g.name,
        if g.members.is_empty() {
            "-".to_string()
        } else {
            g.members.join(", ")
        }
    )
}

pub async fn run_user(ick: &Ick, command: UserCommand, out: &Out) -> anyhow::Result<Exit> {
    let idp = ick.idp_admin();
    let e = |e| ick.idp_error(e);
    match command {
        UserCommand::Create {
            name,
            display_name,
            email,
            no_password,
            password,
        } => {
            let password = if no_password {
                None
            } else {
                Some(password.read(&format!("Password for {name}: "), true)?)
            };
            let body = CreateUser {
                name,
                display_name,
                email,
                password,
            };
            let user = idp.create_user(&body).await.map_err(e)?;
            out.print(&user, || user_text(&user))?;
        }
        UserCommand::List => {
            let users = idp.users().await.map_err(e)?;
            let rows = users
                .iter()
                .map(|u| {
                    vec![
                        u.name.clone(),
                        u.display_name.clone(),
                        u.email.clone(),
                        yes_no(u.enabled),
                        u.groups.join(","),
                    ]
                })
                .collect();
            out.list(
                &users,
                &["name", "display name", "email", "enabled", "groups"],
                rows,
                "no users",
            )?;
        }
        UserCommand::Show { name } => {
            let user = idp.user(&name).await.map_err(e)?;
            out.print(&user, || user_text(&user))?;
        }
        UserCommand::Update {
            name,
            display_name,
            email,
        } => {
            let change = UpdateUser {
                display_name,
                email,
                enabled: None,
            };
            let user = idp.update_user(&name, &change).await.map_err(e)?;
            out.print(&user, || user_text(&user))?;
        }
        UserCommand::Disable { name } => set_enabled(ick, out, &name, false).await?,
        UserCommand::Enable { name } => set_enabled(ick, out, &name, true).await?,
        UserCommand::Delete { name } => {
            idp.delete_user(&name).await.map_err(e)?;
            out.print(&serde_json::json!({"user": name, "deleted": true}), || {
                format!("user {name} deleted\n")
            })?;
        }
        UserCommand::Passwd { name, password } => {
            let password = password.read(&format!("New password for {name}: "), true)?;
            idp.set_password(&name, password).await.map_err(e)?;
            out.print(
                &serde_json::json!({"user": name, "password_changed": true}),
                || format!("password of {name} changed; their refresh tokens are revoked\n"),
            )?;
        }
    }
    Ok(Exit::Ok)
}

async fn set_enabled(ick: &Ick, out: &Out, name: &str, enabled: bool) -> anyhow::Result<()> {
    let change = UpdateUser {
        enabled: Some(enabled),
        ..UpdateUser::default()
    };
    let user = ick
        .idp_admin()
        .update_user(name, &change)
        .await
        .map_err(|e| ick.idp_error(e))?;
    out.print(&user, || {
        format!(
            "user {} {}\n",
            user.name,
            if enabled {
                "enabled"
            } else {
                "disabled; their refresh tokens are revoked"
            }
        )
    })
}

pub async fn run_group(ick: &Ick, command: GroupCommand, out: &Out) -> anyhow::Result<Exit> {
    let idp = ick.idp_admin();
    let e = |e| ick.idp_error(e);
    match command {
        GroupCommand::Create { name } => {
            let group = idp.create_group(&name).await.map_err(e)?;
            out.print(&group, || group_text(&group))?;
        }
        GroupCommand::List => {
            let groups = idp.groups().await.map_err(e)?;
            let rows = groups
                .iter()
                .map(|g| vec![g.name.clone(), g.members.join(",")])
                .collect();
            out.list(&groups, &["name", "members"], rows, "no groups")?;
        }
        GroupCommand::Show { name } => {
            let group = idp.group(&name).await.map_err(e)?;
            out.print(&group, || group_text(&group))?;
        }
        GroupCommand::Delete { name } => {
            idp.delete_group(&name).await.map_err(e)?;
            out.print(&serde_json::json!({"group": name, "deleted": true}), || {
                format!("group {name} deleted\n")
            })?;
        }
        GroupCommand::Add { group, user } => {
            let info = idp.add_member(&group, &user).await.map_err(e)?;
            out.print(&info, || group_text(&info))?;
        }
        GroupCommand::Remove { group, user } => {
            let info = idp.remove_member(&group, &user).await.map_err(e)?;
            out.print(&info, || group_text(&info))?;
        }
    }
    Ok(Exit::Ok)
}
