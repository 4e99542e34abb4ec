//! `icktool whoami`: who the services see: a person (from the IDP's
//! `/userinfo`) or a machine client (from its token's claims).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_api::oauth::{AccessClaims, USERINFO_PATH, UserInfoResponse};
use serde::Serialize;

use crate::Exit;
use crate::config::Identity;
use crate::connection::{Ick, Service};
use crate::output::Out;

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Whoami {
    Person {
        username: String,
        display_name: String,
        email: String,
        groups: Vec<String>,
        client_id: String,
    },
    Client {
        client_id: String,
        client_name: Option<String>,
        scopes: Vec<String>,
    },
}

/// The claims of our own token, read for display only: the services
/// check it, not us.
fn claims(token: &str) -> anyhow::Result<AccessClaims> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("the token is not a JWT"))?;
    let bytes = URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

pub async fn run(ick: &Ick, out: &Out) -> anyhow::Result<Exit> {
    let who = match &ick.settings.identity {
        Identity::Person { login, .. } => {
            let info: UserInfoResponse = ick.get(Service::Idp, USERINFO_PATH).await?;
            Whoami::Person {
                username: info.person.preferred_username,
                display_name: info.person.name,
                email: info.person.email,
                groups: info.person.groups,
                client_id: login.client_id.clone(),
            }
        }
        Identity::Client { id, .. } => {
            let claims = claims(&ick.token().await?)?;
            Whoami::Client {
                client_id: id.clone(),
                client_name: claims.client_name,
                scopes: claims.scope.split(' ').map(str::to_string).collect(),
            }
        }
    };
    out.print(&who, || match &who {
        Whoami::Person {
            username,
            display_name,
            groups,
            ..
        } => format!(
            "user:    {username}\nname:    {display_name}\ngroups:  {}\n",
            if groups.is_empty() {
                "-".to_string()
            } else {
                groups.join(", ")
            }
        ),
        Whoami::Client {
            client_id,
            client_name,
            scopes,
        } => format!(
            "client:  {} ({client_id})\nscopes:  {}\n",
            client_name.as_deref().unwrap_or("-"),
            scopes.join(" ")
        ),
    })?;
    Ok(Exit::Ok)
}
