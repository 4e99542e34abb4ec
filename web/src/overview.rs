//! The pages about Ick as a whole: its workers, the mail outbox and the
//! audit log (each as much as the person may read: the controller
//! decides, and answers 403 to the rest).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum_extra::extract::cookie::PrivateCookieJar;
use ick_api::controller::{AuditList, NotificationList};
use ick_api::work::WorkerInfo;
use serde::Deserialize;

use crate::AppState;
use crate::error::{Result, WebError};
use crate::pages::{Nav, render, when, with_session};
use crate::session::Session;

/// A value's name as the API spells it (`online`, `pending`…).
fn spelled<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn token(session: Option<&Session>) -> Result<&str> {
    session
        .map(|s| s.access_token.as_str())
        .ok_or(WebError::Unauthenticated)
}

struct WorkerRow {
    name: String,
    state: String,
    labels: String,
    slots: u32,
    running: usize,
    last_seen: String,
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    nav: Nav,
    workers: Vec<WorkerRow>,
}

/// `GET /workers`: every worker, its state, labels, slots and load.
pub(crate) async fn workers(State(state): State<AppState>, jar: PrivateCookieJar) -> Response {
    let state = &state;
    with_session(state, jar, |session| async move {
        let workers: Vec<WorkerInfo> = state
            .controller
            .get(Some(token(session.as_ref())?), "/workers", &())
            .await?;
        render(WorkersPage {
            nav: Nav::of(session.as_ref()),
            workers: workers
                .iter()
                .map(|w| WorkerRow {
                    name: w.name.clone(),
                    state: spelled(&w.state),
                    labels: w.labels.join(", "),
                    slots: w.slots,
                    running: w.running.len(),
                    last_seen: w.last_seen.clone(),
                })
                .collect(),
        })
    })
    .await
}

struct MailRow {
    build_id: String,
    project: String,
    number: i64,
    build_status: String,
    recipients: String,
    status: String,
    attempts: i64,
    error: String,
    created: String,
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    nav: Nav,
    status: String,
    mails: Vec<MailRow>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OutboxQuery {
    #[serde(default)]
    status: String,
}

/// `GET /outbox[?status=failed]`: the mail about builds, sent, pending
/// or failed with its error.
pub(crate) async fn outbox(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<OutboxQuery>,
) -> Response {
    let (state, query) = (&state, &query);
    with_session(state, jar, |session| async move {
        let mut params = vec![("limit", "100")];
        if !query.status.is_empty() {
            params.push(("status", query.status.as_str()));
        }
        let list: NotificationList = state
            .controller
            .get(Some(token(session.as_ref())?), "/notifications", &params)
            .await?;
        render(OutboxPage {
            nav: Nav::of(session.as_ref()),
            status: query.status.clone(),
            mails: list
                .notifications
                .iter()
                .map(|n| MailRow {
                    build_id: n.build_id.clone(),
                    project: n.project.clone(),
                    number: n.number,
                    build_status: n.build_status.to_string(),
                    recipients: n.recipients.join(", "),
                    status: n.status.to_string(),
                    attempts: n.attempts,
                    error: n.last_error.clone().unwrap_or_default(),
                    created: when(&n.created_at),
                })
                .collect(),
        })
    })
    .await
}

struct AuditRow {
    at: String,
    actor: String,
    address: String,
    action: String,
    project: String,
    target: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    project: String,
    entries: Vec<AuditRow>,
    older: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditPageQuery {
    #[serde(default)]
    project: String,
    before: Option<String>,
}

/// `GET /audit[?project=P]`: who changed what, when and from where (an
/// admin's, or a project's owner's for it).
pub(crate) async fn audit(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<AuditPageQuery>,
) -> Response {
    let (state, query) = (&state, &query);
    with_session(state, jar, |session| async move {
        let mut params = vec![("limit", "100".to_string())];
        if !query.project.is_empty() {
            params.push(("project", query.project.clone()));
        }
        if let Some(before) = &query.before {
            params.push(("before", before.clone()));
        }
        let list: AuditList = state
            .controller
            .get(Some(token(session.as_ref())?), "/audit", &params)
            .await?;
        let older = list.next.map(|next| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("before", &next);
            if !query.project.is_empty() {
                q.append_pair("project", &query.project);
            }
            format!("/audit?{}", q.finish())
        });
        render(AuditPage {
            nav: Nav::of(session.as_ref()),
            project: query.project.clone(),
            entries: list
                .entries
                .iter()
                .map(|e| AuditRow {
                    at: when(&e.at),
                    actor: e.actor.clone(),
                    address: e.address.clone(),
                    action: e.action.to_string(),
                    project: e.project.clone().unwrap_or_default(),
                    target: e.target.clone(),
                    detail: if e.detail.is_null() {
                        String::new()
                    } else {
                        e.detail.to_string()
                    },
                })
                .collect(),
            older,
        })
    })
    .await
}
