//! `GET /badges/{project}.svg[?branch=B]`: the state of a project's last
//! build (on a branch) as an image for READMEs and chats. Read without a
//! login (an image on another site carries no cookie): public projects
//! only, unless the person's own session can read it.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use ick_api::controller::{BuildList, BuildStatus};
use serde::Deserialize;

use crate::AppState;
use crate::error::WebError;

/// Builds looked through for the last one of a branch.
const BRANCH_LOOKS_AT: &str = "100";

#[derive(Debug, Deserialize)]
pub(crate) struct BadgeQuery {
    branch: Option<String>,
}

pub(crate) async fn badge(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(file): Path<String>,
    Query(query): Query<BadgeQuery>,
) -> Response {
    let Some(project) = file.strip_suffix(".svg") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // No renewal here: an expired session reads as no session.
    let session = state.cookies.session(&jar).filter(|s| !s.needs_renewal());
    let token = session.as_ref().map(|s| s.access_token.as_str());
    let limit = if query.branch.is_some() {
        BRANCH_LOOKS_AT
    } else {
        "1"
    };
    let list: Result<BuildList, WebError> = state
        .controller
        .get(token, "/builds", &[("project", project), ("limit", limit)])
        .await;
    let list = match list {
        Ok(list) => list,
        // Private, or none: the same answer, so nothing is learnt.
        Err(WebError::Unauthenticated | WebError::NotFound(_) | WebError::Forbidden(_)) => {
            return StatusCode::NOT_FOUND.into_response();
        }
        Err(e) => return e.into_response(),
    };
    let last = list.builds.iter().find(|b| match &query.branch {
        None => true,
        Some(branch) => b
            .parameters
            .get("git_ref")
            .and_then(|r| r.as_str())
            .is_some_and(|r| r == branch || r.strip_prefix("refs/heads/") == Some(branch)),
    });
    let (text, colour) = match last.map(|b| b.status) {
        Some(BuildStatus::Succeeded) => ("passing", "#2da44e"),
        Some(BuildStatus::Failed) => ("failing", "#cf222e"),
        Some(BuildStatus::Cancelled) => ("cancelled", "#6e7781"),
        Some(BuildStatus::Running) => ("running", "#bf8700"),
        Some(BuildStatus::Queued) => ("queued", "#bf8700"),
        None => ("no builds", "#6e7781"),
    };
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            // Forges' image proxies would keep it forever otherwise.
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
        ],
        svg(project, text, colour),
    )
        .into_response()
}

/// Escapes text for SVG (XML).
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A two-part badge, `label | text`, widths by character count (a
/// monospace estimate is close enough at this size).
fn svg(label: &str, text: &str, colour: &str) -> String {
    let width = |s: &str| 10 + 7 * s.chars().count();
    let (left, right) = (width(label), width(text));
    let total = left + right;
    let (label, text) = (xml(label), xml(text));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {text}"><title>{label}: {text}</title><rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{colour}"/><g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" text-anchor="middle"><text x="{lx}" y="14">{label}</text><text x="{rx}" y="14">{text}</text></g></svg>"##,
        lx = left / 2,
        rx = left + right / 2,
    )
}
