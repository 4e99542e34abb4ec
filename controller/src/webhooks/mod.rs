//! Web hooks from git servers: prove, then read, then trigger. The raw body
//! is read (up to `webhooks.max_body`); the repository it names is found
//! (one bounded pass over those fields alone) and its proof checked only
//! against the trigger secrets of the projects whose triggers name that
//! repository, so that an unsigned request costs a few HMACs, not one per
//! project. Nothing else of the body is read before the proof holds; a
//! push that one of the signing project's triggers matches starts a build
//! with `git_url`, `git_ref` and `git_commit`, at most once per delivery
//! id. Peers that keep sending wrong signatures get 429 for a while.

pub mod forges;
pub mod signature;
pub mod triggers;

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use futures::StreamExt;
use ick_api::Secret;
use ick_api::controller::{
    AuditAction, DefinitionKind, ProjectSpec, TriggerRequest, TriggerSecret, WebhookAnswer,
    WebhookOutcome,
};
use ick_api::server::FailureLimiter;
use serde_json::Value;

use crate::access::Actor;
use crate::audit;
use crate::builds::{self, Delivery, Triggered};
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::definitions as defs;
use crate::store::webhooks as wdb;
use crate::store::{from_json, now_ms, retrying, time};
use forges::{Event, Forge, Push};

/// Reads the whole body, refusing more than `max` bytes.
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(max as u64) as usize);
    let mut over = declared.is_some_and(|n| n > max as u64);
    while !over && let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ControllerError::BadRequest(format!("the body could not be read: {e}")))?;
        over = bytes.len() + chunk.len() > max;
        if !over {
            bytes.extend_from_slice(&chunk);
        }
    }
    if !over {
        return Ok(bytes);
    }
    // Read (and drop) what follows, up to as much again, so that the
    // client reads the refusal rather than a reset connection.
    let mut dropped = 0;
    while dropped < max {
        match tokio::time::timeout(DRAIN_TIME, stream.next()).await {
            Ok(Some(Ok(chunk))) => dropped += chunk.len(),
            _ => break,
        }
    }
    Err(ControllerError::TooLarge(format!(
        "the body is larger than the controller's webhooks.max_body ({max} bytes)"
    )))
}

/// How long an oversized body's rest is read before the refusal.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

fn answer(
    status: StatusCode,
    outcome: WebhookOutcome,
    project: &str,
    message: String,
) -> (StatusCode, WebhookAnswer) {
    (
        status,
        WebhookAnswer {
            outcome,
            message,
            project: project.to_string(),
            build: None,
        },
    )
}

/// Bodies that name no repository (pings) are tried against every
/// project's secret only up to this size.
const UNNAMED_MAX: usize = 8 * 1024;

/// The secrets a body may be signed with: `only`'s, or those of the
/// projects whose triggers name a repository of `urls` (every project's
/// for a small body that names none).
fn candidates(
    secrets: Vec<(String, Secret, String)>,
    only: Option<&str>,
    urls: &[String],
    body_len: usize,
) -> Vec<(String, Secret)> {
    let wanted: Vec<String> = urls
        .iter()
        .filter_map(|u| triggers::normalize_repository(u))
        .collect();
    secrets
        .into_iter()
        .filter(|(project, _, spec)| match only {
            Some(only) => project == only,
            None if urls.is_empty() => body_len <= UNNAMED_MAX,
            None => from_json::<ProjectSpec>(spec).is_ok_and(|spec| {
                spec.triggers.iter().any(|t| {
                    triggers::normalize_repository(&t.repository)
                        .is_some_and(|r| wanted.contains(&r))
                })
            }),
        })
        .map(|(project, secret, _)| (project, secret))
        .collect()
}

/// `POST /webhooks/{forge}[?project=NAME]` from `peer`: with `project`,
/// only that project's secret is tried. `failures` counts the wrong
/// signatures of each peer (the HTTP front keeps it).
pub async fn receive(
    core: &Core,
    failures: &FailureLimiter,
    forge: Forge,
    only: Option<&str>,
    peer: IpAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, WebhookAnswer)> {
    let limits = &core.config.webhooks;
    let peer_key = peer.to_string();
    if let Some(wait) = failures.blocked_for(&peer_key, limits.max_failed_signatures) {
        let seconds = wait.as_secs().max(1);
        return Err(ControllerError::TooManyRequests {
            message: format!(
                "too many web hooks with a wrong signature from {peer}; retry in {seconds} s"
            ),
            retry_after: seconds,
        });
    }
    let body = read_body(headers, body, limits.max_body).await?;
    let proof = forge
        .proof(headers)
        .map_err(ControllerError::Unauthorized)?;
    let secrets = {
        let mut conn = core.store.conn().await?;
        wdb::secrets_and_projects(&mut conn).await?
    };
    // Finding the repository and the HMACs are CPU work: off the runtime.
    let only_owned = only.map(str::to_string);
    let (signer, tried, body) = tokio::task::spawn_blocking(move || {
        let urls = forge.repository_urls(&body);
        let secrets = candidates(secrets, only_owned.as_deref(), &urls, body.len());
        let signer = signature::signer(&proof, &body, &secrets).map(str::to_string);
        (signer, secrets.len(), body)
    })
    .await
    .map_err(ControllerError::internal)?;
    let project = signer.ok_or_else(|| {
        failures.record_failure(&peer_key);
        tracing::warn!(
            forge = forge.name(),
            %peer,
            tried,
            "web hook with a signature no trigger secret made"
        );
        ControllerError::Unauthorized(match only {
            Some(p) => format!(
                "the signature was not made with project {p:?}'s trigger secret (see `icktool \
                 trigger-secret {p}`)"
            ),
            None if tried == 0 => "no project's triggers name the repository of this payload \
                                   (or it names none): add it to a project's `triggers:`, or \
                                   append ?project=NAME to the hook's URL"
                .into(),
            None => "the signature was not made with the trigger secret of any project whose \
                     triggers name this repository (see `icktool trigger-secret PROJECT`)"
                .into(),
        })
    })?;
    let delivery = forge.delivery(headers);
    let event = forge.event(headers).map_err(ControllerError::BadRequest)?;
    tracing::info!(
        forge = forge.name(),
        project,
        delivery = delivery.as_deref().unwrap_or(""),
        ?event,
        "web hook"
    );
    let push = match event {
        Event::Ping => {
            return Ok(answer(
                StatusCode::OK,
                WebhookOutcome::Pong,
                &project,
                format!("pong: the hook is signed with project {project}'s trigger secret"),
            ));
        }
        Event::Other(name) => {
            return Ok(answer(
                StatusCode::ACCEPTED,
                WebhookOutcome::Ignored,
                &project,
                format!("event {name:?} is not a push: nothing to build"),
            ));
        }
        Event::Push => forge
            .parse_push(&body)
            .map_err(ControllerError::BadRequest)?,
    };
    if push.deleted {
        return Ok(answer(
            StatusCode::ACCEPTED,
            WebhookOutcome::Ignored,
            &project,
            format!("{} was deleted: nothing to build", push.git_ref),
        ));
    }
    let spec = {
        let mut conn = core.store.conn().await?;
        defs::get(&mut conn, DefinitionKind::Project, &project).await?
    };
    let Some(spec) = spec else {
        return Ok(answer(
            StatusCode::ACCEPTED,
            WebhookOutcome::Ignored,
            &project,
            format!("project {project} no longer exists"),
        ));
    };
    let spec: ProjectSpec = from_json(&spec.spec)?;
    let url = match matching(&spec, &push) {
        Ok(url) => url,
        Err(why) => {
            return Ok(answer(
                StatusCode::ACCEPTED,
                WebhookOutcome::Ignored,
                &project,
                why,
            ));
        }
    };
    let request = TriggerRequest {
        parameters: BTreeMap::from([
            ("git_url".to_string(), Value::from(url)),
            ("git_ref".to_string(), Value::from(push.git_ref.clone())),
            ("git_commit".to_string(), Value::from(push.commit.clone())),
        ]),
    };
    let actor = Actor::webhook(forge.name(), peer);
    let delivery = delivery.as_deref().map(|id| Delivery {
        source: forge.name(),
        id,
    });
    Ok(
        match builds::trigger_once(core, &project, request, &actor, delivery).await? {
            Triggered::New(build) => (
                StatusCode::CREATED,
                WebhookAnswer {
                    outcome: WebhookOutcome::Triggered,
                    message: format!(
                        "build {} #{} triggered for {} at {}",
                        build.project, build.number, push.git_ref, push.commit
                    ),
                    project,
                    build: Some(build),
                },
            ),
            Triggered::Duplicate(build) => (
                StatusCode::OK,
                WebhookAnswer {
                    outcome: WebhookOutcome::Duplicate,
                    message: match &build {
                        Some(b) => format!(
                            "this delivery was received before and triggered {} #{}: nothing new",
                            b.project, b.number
                        ),
                        None => "this delivery was received before: nothing new".to_string(),
                    },
                    project,
                    build,
                },
            ),
        },
    )
}

/// The push's URL that a trigger of the project matches, or why none does.
fn matching(spec: &ProjectSpec, push: &Push) -> std::result::Result<String, String> {
    let name = spec.name.as_deref().unwrap_or("?");
    if spec.triggers.is_empty() {
        return Err(format!(
            "project {name} declares no triggers: add `triggers: [{{repository: URL}}]` to build on pushes"
        ));
    }
    let mut same_repository = false;
    for trigger in &spec.triggers {
        if let Some(url) = triggers::matching_url(trigger, &push.urls, push.clone_urls) {
            same_repository = true;
            if triggers::ref_matches(trigger, &push.git_ref) {
                return Ok(url);
            }
        }
    }
    Err(if same_repository {
        format!(
            "{} matches none of project {name}'s branch and tag patterns: nothing to build",
            push.git_ref
        )
    } else {
        format!(
            "repository {} is not in project {name}'s triggers: nothing to build",
            push.urls.first().map(String::as_str).unwrap_or("?")
        )
    })
}

/// 32 random bytes as hex: easy to paste into a forge's form.
fn new_secret() -> Result<Secret> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ControllerError::Internal("no randomness".into()))?;
    Ok(Secret::new(hex::encode(bytes)))
}

/// `GET /projects/{name}/trigger-secret` (`rotate` false) and
/// `POST /projects/{name}/trigger-secret/rotate` (`rotate` true). Making
/// or replacing it is in the audit log (never the secret).
pub async fn trigger_secret(
    core: &Core,
    project: &str,
    rotate: bool,
    actor: &Actor,
) -> Result<TriggerSecret> {
    crate::definitions::check_name("project", project)?;
    let fresh = new_secret()?;
    let row = retrying(|| async {
        let mut tx = core.store.write().await?;
        if defs::get(&mut tx, DefinitionKind::Project, project)
            .await?
            .is_none()
        {
            return Err(ControllerError::NotFound(format!("no project {project:?}")));
        }
        wdb::put_secret(&mut tx, project, &fresh, rotate, now_ms()).await?;
        let row = wdb::get_secret(&mut tx, project)
            .await?
            .ok_or_else(|| ControllerError::Internal("the trigger secret vanished".into()))?;
        let action = if rotate {
            Some(AuditAction::TriggerSecretRotate)
        } else {
            (row.secret.expose() == fresh.expose()).then_some(AuditAction::TriggerSecretCreate)
        };
        if let Some(action) = action {
            audit::record(
                &mut tx,
                actor,
                action,
                Some(project),
                project,
                serde_json::json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(row)
    })
    .await?;
    Ok(TriggerSecret {
        project: row.project,
        secret: row.secret,
        created_at: time(row.created_at),
    })
}
