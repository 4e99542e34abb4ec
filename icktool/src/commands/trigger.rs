//! `icktool trigger PROJECT [--param k=v …] [--follow]`.

use ick_api::controller::{BuildSummary, TriggerRequest};
use reqwest::Method;

use crate::Exit;
use crate::connection::{Ick, Service, segment};
use crate::follow::{emit, ended, follow_as};
use crate::output::Out;

#[derive(clap::Args)]
pub struct TriggerArgs {
    /// The project to build.
    project: String,
    /// A build parameter that replaces or adds to the project's (repeat).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Stream the build's log until it ends; exit 0 if it succeeded, 1 if
    /// it failed or was cancelled.
    #[arg(long, short = 'f')]
    follow: bool,
}

/// `KEY=VALUE`, with a key that can be an environment variable's name;
/// the controller decides which keys the project takes.
fn parse_param(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("{text:?} is not KEY=VALUE"));
    };
    if !ick_api::params::is_valid_parameter(key) {
        return Err(format!(
            "{key:?} is not a parameter name: use letters, digits and '_', not starting with a digit"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

pub async fn run(ick: &Ick, args: TriggerArgs, out: &Out) -> anyhow::Result<Exit> {
    let build = trigger(ick, &args.project, args.params).await?;
    if !args.follow {
        out.print(&build, || {
            format!(
                "build {project} #{n} {status}: {id}\nfollow it with: icktool log --follow {project}/{n}\n",
                project = build.project,
                n = build.number,
                status = build.status,
                id = build.id
            )
        })?;
        return Ok(Exit::Ok);
    }
    if out.human() {
        eprintln!(
            "build {} #{} triggered ({}); following its log",
            build.project, build.number, build.id
        );
    } else {
        emit(out.format, "triggered", &build);
    }
    let end = follow_as(ick, &build.id, None, out).await?;
    let (text, exit) = ended(&end);
    if out.human() {
        eprintln!("{text}");
    }
    Ok(exit)
}

/// `POST /projects/{name}/builds`.
pub async fn trigger(
    ick: &Ick,
    project: &str,
    params: Vec<(String, String)>,
) -> anyhow::Result<BuildSummary> {
    let request = TriggerRequest {
        parameters: params
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    };
    let path = format!("/projects/{}/builds", segment(project));
    ick.call(Service::Controller, Method::POST, &path, Some(&request))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_key_equals_value() {
        assert_eq!(
            parse_param("git_ref=main=x"),
            Ok(("git_ref".into(), "main=x".into()))
        );
        assert_eq!(parse_param("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=x").is_err());
        assert!(parse_param("1st=x").is_err());
        assert!(parse_param("a-b=x").is_err());
    }
}
