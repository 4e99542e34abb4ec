//! The pages: each reads what it shows from the controller with the
//! person's token (or none, for a public project) and renders it. A
//! session renewed on the way is answered with every page, errors too, so
//! that its rotated refresh token is never lost.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use chrono::{DateTime, Utc};
use ick_api::controller::{
    BuildList, BuildSummary, BuildView, LogChunk, ProjectAccess, StoredProject,
};
use serde::Deserialize;

use crate::controller::segment;
use crate::error::{Result, WebError};
use crate::login::CsrfForm;
use crate::session::Session;
use crate::{AppState, ansi};

/// Log chunks shown on a build page; the rest is a link away.
const LOG_PAGE: u32 = 2_000;
/// Builds per page of a project.
const BUILDS_PAGE: u32 = 25;

/// What the header of every page shows of the person.
pub(crate) struct Nav {
    pub user: Option<String>,
    pub csrf: String,
}

impl Nav {
    pub(crate) fn of(session: Option<&Session>) -> Nav {
        Nav {
            user: session.map(|s| s.user.clone()),
            csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
        }
    }
}

/// A page (or form) for the person of `jar`'s session: answered with the
/// session's cookie, renewed on the way if it had to be. An access token
/// refused before its time (the IDP's keys or address changed) is renewed
/// once, and the page asked again.
pub(crate) async fn with_session<F, Fut>(
    state: &AppState,
    jar: PrivateCookieJar,
    page: F,
) -> Response
where
    F: Fn(Option<Session>) -> Fut,
    Fut: Future<Output = Result<Response>>,
{
    let (jar, session) = state.session(jar).await;
    let answer = page(session.clone()).await;
    match (answer, session) {
        (Err(WebError::Unauthenticated), Some(session)) => {
            let (jar, renewed) = state.renew(jar, session).await;
            match renewed {
                Some(session) => (jar, page(Some(session)).await).into_response(),
                None => (jar, Err::<Response, _>(WebError::Unauthenticated)).into_response(),
            }
        }
        (answer, _) => (jar, answer).into_response(),
    }
}

pub(crate) fn render(page: impl Template) -> Result<Response> {
    page.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| WebError::Internal(format!("a template failed: {e}")))
}

pub(crate) fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration, the way people read one: `850 ms`, `42 s`, `3 min 05 s`.
fn took(from: Option<&DateTime<Utc>>, to: Option<&DateTime<Utc>>) -> String {
    let (Some(from), Some(to)) = (from, to) else {
        return String::new();
    };
    let ms = (*to - *from).num_milliseconds().max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{} s", ms / 1000),
        _ => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
    }
}

/// One build, as the lists show it.
struct BuildRow {
    id: String,
    number: i64,
    status: String,
    triggered_by: String,
    created: String,
    took: String,
    /// What it builds, if it says: the git ref.
    git_ref: String,
}

impl BuildRow {
    fn of(b: &BuildSummary) -> BuildRow {
        let end = b.ended_at.or_else(|| b.started_at.map(|_| Utc::now()));
        BuildRow {
            id: b.id.clone(),
            number: b.number,
            status: b.status.to_string(),
            triggered_by: b.triggered_by.clone(),
            created: when(&b.created_at),
            took: took(b.started_at.as_ref(), end.as_ref()),
            git_ref: b
                .parameters
                .get("git_ref")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
        }
    }
}

// ---- projects ----

struct ProjectRow {
    name: String,
    last: Option<BuildRow>,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    nav: Nav,
    filter: String,
    projects: Vec<ProjectRow>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProjectsQuery {
    #[serde(default)]
    q: String,
}

/// `GET /`: the projects the person may read, with their last builds.
pub(crate) async fn projects(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<ProjectsQuery>,
) -> Response {
    let (state, query) = (&state, &query);
    with_session(state, jar, |session| async move {
        projects_page(state, session.as_ref(), query).await
    })
    .await
}

async fn projects_page(
    state: &AppState,
    session: Option<&Session>,
    query: &ProjectsQuery,
) -> Result<Response> {
    let token = session.map(|s| s.access_token.as_str());
    if token.is_none() {
        return Err(WebError::Unauthenticated);
    }
    let filter = query.q.trim().to_string();
    let projects: Vec<StoredProject> = state.controller.get(token, "/projects", &()).await?;
    let shown: Vec<StoredProject> = projects
        .into_iter()
        .filter(|p| p.name.contains(&filter))
        .collect();
    let lasts = futures::future::join_all(shown.iter().map(|p| {
        let query = [("project", p.name.as_str()), ("limit", "1")];
        async move {
            state
                .controller
                .get::<BuildList, _>(token, "/builds", &query)
                .await
        }
    }))
    .await;
    let mut rows = Vec::with_capacity(shown.len());
    for (project, last) in shown.iter().zip(lasts) {
        rows.push(ProjectRow {
            name: project.name.clone(),
            last: last?.builds.first().map(BuildRow::of),
        });
    }
    render(ProjectsPage {
        nav: Nav::of(session),
        filter,
        projects: rows,
    })
}

// ---- a project ----

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    nav: Nav,
    may: ProjectAccess,
    name: String,
    revision: i64,
    updated_by: String,
    pipelines: Vec<String>,
    status: String,
    builds: Vec<BuildRow>,
    /// The link to the next page, if there is one.
    older: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProjectQuery {
    status: Option<String>,
    before: Option<String>,
}

/// `GET /projects/{name}`: its builds, newest first, paged.
pub(crate) async fn project(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Response {
    let (state, name, query) = (&state, &name, &query);
    with_session(state, jar, |session| async move {
        project_page(state, session.as_ref(), name, query).await
    })
    .await
}

async fn project_page(
    state: &AppState,
    session: Option<&Session>,
    name: &str,
    query: &ProjectQuery,
) -> Result<Response> {
    let token = session.map(|s| s.access_token.as_str());
    let stored: StoredProject = state
        .controller
        .get(token, &format!("/projects/{}", segment(name)), &())
        .await
        .map_err(|e| login_if_anonymous(e, token))?;
    let status = query.status.clone().unwrap_or_default();
    let mut params: BTreeMap<&str, String> = BTreeMap::new();
    params.insert("project", name.to_string());
    params.insert("limit", BUILDS_PAGE.to_string());
    if !status.is_empty() {
        params.insert("status", status.clone());
    }
    if let Some(before) = &query.before {
        params.insert("before", before.clone());
    }
    let list: BuildList = state.controller.get(token, "/builds", &params).await?;
    let older = list.next.map(|next| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("before", &next);
        if !status.is_empty() {
            q.append_pair("status", &status);
        }
        format!("/projects/{}?{}", segment(name), q.finish())
    });
    let may = access(state, token, name).await?;
    render(ProjectPage {
        nav: Nav::of(session),
        may,
        name: stored.name,
        revision: stored.revision,
        updated_by: stored.updated_by,
        pipelines: stored.spec.pipelines,
        status,
        builds: list.builds.iter().map(BuildRow::of).collect(),
        older,
    })
}

/// What the person may do to `project`: the buttons shown.
async fn access(state: &AppState, token: Option<&str>, project: &str) -> Result<ProjectAccess> {
    if token.is_none() {
        // Reading, if anything, without a login.
        return Ok(ProjectAccess::default());
    }
    state
        .controller
        .get(
            token,
            &format!("/projects/{}/access", segment(project)),
            &(),
        )
        .await
}

/// Without a token, a page the controller will not show anonymously
/// (404, so as not to tell which private projects exist) may well be
/// there after a login.
fn login_if_anonymous(e: WebError, token: Option<&str>) -> WebError {
    match e {
        WebError::NotFound(_) if token.is_none() => WebError::Unauthenticated,
        e => e,
    }
}

/// Checks a form's CSRF token against the session's; the session's token.
fn checked<'a>(session: Option<&'a Session>, form: &CsrfForm) -> Result<&'a str> {
    let session = session.ok_or(WebError::Unauthenticated)?;
    if !session.csrf_matches(&form.csrf) {
        return Err(WebError::Forbidden(
            "the form is stale or not from this dashboard: reload the page and try again".into(),
        ));
    }
    Ok(&session.access_token)
}

/// `POST /projects/{name}/trigger`: a build, then its page.
pub(crate) async fn trigger(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (state, name, form) = (&state, &name, &form);
    with_session(state, jar, |session| async move {
        let token = checked(session.as_ref(), form)?;
        let build: BuildSummary = state
            .controller
            .post_json(token, &format!("/projects/{}/builds", segment(name)))
            .await?;
        Ok(Redirect::to(&format!("/builds/{}", segment(&build.id))).into_response())
    })
    .await
}

// ---- a build ----

struct PipelineRows {
    name: String,
    nodes: Vec<NodeRow>,
}

struct NodeRow {
    id: String,
    index: u32,
    description: String,
    status: String,
    worker: String,
    exit_code: String,
    started: String,
    took: String,
    /// Why it waits, or why it ended so.
    note: String,
}

struct LogLine {
    number: usize,
    /// Its text in spans of one look: (CSS classes, text).
    spans: Vec<(String, String)>,
    stderr: bool,
}

impl LogLine {
    fn push(&mut self, text: &str, style: &mut ansi::Style) {
        let (spans, end) = ansi::spans(text, *style);
        *style = end;
        self.spans
            .extend(spans.into_iter().map(|(s, t)| (s.classes(), t)));
    }
}

struct LogSection {
    title: String,
    /// Its node and attempt, and the last chunk shown: where live output
    /// goes on.
    node: String,
    attempt: i64,
    last_seq: i64,
    /// Its last line has no end yet.
    partial: bool,
    lines: Vec<LogLine>,
    /// The colour its output is in at the end.
    style: ansi::Style,
}

#[derive(Template)]
#[template(path = "build.html")]
struct BuildPage {
    nav: Nav,
    may: ProjectAccess,
    build: BuildRow,
    project: String,
    finished: bool,
    failed: bool,
    waiting_for: String,
    pipelines: Vec<PipelineRows>,
    log: Vec<LogSection>,
    /// More log than this page shows.
    more_log: bool,
}

/// `GET /builds/{id}`: the build's actions and the first part of its log.
pub(crate) async fn build(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
) -> Response {
    let (state, id) = (&state, &id);
    with_session(state, jar, |session| async move {
        build_page(state, session.as_ref(), id).await
    })
    .await
}

async fn build_page(state: &AppState, session: Option<&Session>, id: &str) -> Result<Response> {
    let token = session.map(|s| s.access_token.as_str());
    let view: BuildView = state
        .controller
        .get(token, &format!("/builds/{}", segment(id)), &())
        .await
        .map_err(|e| login_if_anonymous(e, token))?;
    let (chunks, next) = state.controller.log_page(token, id, None, LOG_PAGE).await?;
    let mut pipelines: Vec<PipelineRows> = Vec::new();
    for node in &view.nodes {
        let row = NodeRow {
            id: node.id.clone(),
            index: node.index + 1,
            description: node.description.clone(),
            status: node.status.to_string(),
            worker: node.worker.clone().unwrap_or_default(),
            exit_code: node.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            started: node.started_at.as_ref().map(when).unwrap_or_default(),
            took: took(node.started_at.as_ref(), node.ended_at.as_ref()),
            note: node
                .waiting_for
                .clone()
                .or_else(|| node.message.clone())
                .unwrap_or_default(),
        };
        match pipelines.last_mut() {
            Some(p) if p.name == node.pipeline => p.nodes.push(row),
            _ => pipelines.push(PipelineRows {
                name: node.pipeline.clone(),
                nodes: vec![row],
            }),
        }
    }
    let status = view.build.status;
    let may = access(state, token, &view.build.project).await?;
    render(BuildPage {
        nav: Nav::of(session),
        may,
        project: view.build.project.clone(),
        finished: status.is_finished(),
        failed: status.is_finished() && status != ick_api::controller::BuildStatus::Succeeded,
        waiting_for: view.waiting_for.clone().unwrap_or_default(),
        build: BuildRow::of(&view.build),
        pipelines,
        log: log_sections(&view, &chunks),
        more_log: next.is_some(),
    })
}

/// The log as lines, numbered through the whole build, under a heading
/// per action and attempt. A line split across chunks is joined again.
fn log_sections(view: &BuildView, chunks: &[LogChunk]) -> Vec<LogSection> {
    let mut sections: Vec<LogSection> = Vec::new();
    let mut number = 0;
    for chunk in chunks {
        let same = sections
            .last()
            .is_some_and(|s| s.node == chunk.node && s.attempt == chunk.attempt);
        if !same {
            let description = view
                .nodes
                .iter()
                .find(|n| n.id == chunk.node)
                .map(|n| n.description.clone())
                .unwrap_or_default();
            sections.push(LogSection {
                title: format!(
                    "{} #{}: {description} (attempt {})",
                    chunk.pipeline,
                    chunk.index + 1,
                    chunk.attempt
                ),
                node: chunk.node.clone(),
                attempt: chunk.attempt,
                last_seq: chunk.seq,
                partial: false,
                lines: Vec::new(),
                style: ansi::Style::default(),
            });
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        section.last_seq = chunk.seq;
        let stderr = chunk.stream == ick_api::work::Stream::Stderr;
        for piece in chunk.data.split_inclusive('\n') {
            let text = piece.strip_suffix('\n').unwrap_or(piece);
            if !section.partial || section.lines.is_empty() {
                number += 1;
                section.lines.push(LogLine {
                    number,
                    spans: Vec::new(),
                    stderr,
                });
            }
            // A line the last chunk began goes on.
            if let Some(line) = section.lines.last_mut() {
                line.push(text, &mut section.style);
            }
            section.partial = !piece.ends_with('\n');
        }
    }
    sections
}

/// `GET /builds/{id}/log.txt`: the whole log as text, streamed through
/// without being held here.
pub(crate) async fn raw_log(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
) -> Response {
    let (state, id) = (&state, &id);
    with_session(state, jar, |session| async move {
        let token = session.as_ref().map(|s| s.access_token.as_str());
        let upstream = state
            .controller
            .raw_log(token, id)
            .await
            .map_err(|e| login_if_anonymous(e, token))?;
        Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            Body::from_stream(upstream.bytes_stream()),
        )
            .into_response())
    })
    .await
}

/// `GET /builds/{id}/events`: the controller's live log of the build
/// (Server-Sent Events: its output, its actions' states, its end),
/// streamed through as it comes, never held here; the build page's
/// script follows it.
pub(crate) async fn events(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
) -> Response {
    let (state, id) = (&state, &id);
    with_session(state, jar, |session| async move {
        let token = session.as_ref().map(|s| s.access_token.as_str());
        let upstream = state
            .controller
            .follow(token, id)
            .await
            .map_err(|e| login_if_anonymous(e, token))?;
        Ok((
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(upstream.bytes_stream()),
        )
            .into_response())
    })
    .await
}

/// `POST /builds/{id}/cancel` and `/retry`: the act, then the build's page.
async fn act(
    state: &AppState,
    jar: PrivateCookieJar,
    id: &str,
    form: &CsrfForm,
    act: &str,
) -> Response {
    with_session(state, jar, |session| async move {
        let token = checked(session.as_ref(), form)?;
        state
            .controller
            .post(token, &format!("/builds/{}/{act}", segment(id)))
            .await?;
        Ok(Redirect::to(&format!("/builds/{}", segment(id))).into_response())
    })
    .await
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act(&state, jar, &id, &form, "cancel").await
}

pub(crate) async fn retry(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act(&state, jar, &id, &form, "retry").await
}
