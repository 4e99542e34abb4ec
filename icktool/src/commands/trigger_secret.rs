//! `icktool trigger-secret PROJECT [--rotate]`: the secret that signs the
//! project's web hooks (scope `projects:write`), made on first use.

use ick_api::controller::TriggerSecret;
use reqwest::Method;

use crate::Exit;
use crate::connection::{Ick, Service, segment};
use crate::output::Out;

#[derive(clap::Args)]
pub struct TriggerSecretArgs {
    /// The project.
    project: String,
    /// Make a new secret; the old one stops working at once.
    #[arg(long)]
    rotate: bool,
}

pub async fn run(ick: &Ick, args: TriggerSecretArgs, out: &Out) -> anyhow::Result<Exit> {
    let base = format!("/projects/{}/trigger-secret", segment(&args.project));
    let secret: TriggerSecret = if args.rotate {
        ick.call(
            Service::Controller,
            Method::POST,
            &format!("{base}/rotate"),
            None::<&()>,
        )
        .await?
    } else {
        ick.get(Service::Controller, &base).await?
    };
    out.print(&secret, || text(&secret, args.rotate))?;
    Ok(Exit::Ok)
}

fn text(s: &TriggerSecret, rotated: bool) -> String {
    format!(
        "project:        {}\ntrigger_secret: {}\n{}\
         Give it to the git server as the web hook's secret (GitHub, Gitea: \"Secret\"; GitLab: \
         \"Secret token\"),\nor to deploy/git-hooks/post-receive.\n",
        s.project,
        s.secret.expose(),
        if rotated {
            "(a new secret: hooks signed with the old one are refused from now on)\n"
        } else {
            ""
        }
    )
}
