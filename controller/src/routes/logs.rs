//! `/builds/{id}/log` and its stream.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::http::{HeaderMap, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use ick_api::controller::{LogChunk, LogCursor, LogQuery, MAX_LOG_PAGE, NEXT_PAGE_HEADER};

use super::MaybeAuthorized;
use crate::access;
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::{builds, logs};

async fn check_node(core: &Core, build_id: &str, node: Option<&str>) -> Result<()> {
    if let Some(node) = node {
        let mut conn = core.store.conn().await?;
        let found = crate::store::builds::node_build(&mut conn, node).await?;
        if found.as_deref() != Some(build_id) {
            return Err(ControllerError::NotFound(format!(
                "build {build_id} has no node {node:?}"
            )));
        }
    }
    Ok(())
}

/// The build of `id`, if `caller` may read its log (404 if not, as for none).
async fn readable_build(
    core: &Core,
    caller: Option<&ick_api::auth::Caller>,
    id: &str,
) -> Result<crate::store::builds::BuildRow> {
    let build = builds::get(core, id).await?;
    access::check_build::<access::ReadBuilds>(core, caller, &build.project, || {
        format!("no build {id:?}")
    })
    .await?;
    Ok(build)
}

/// Also without a token, for a build of a public project.
pub(super) async fn read(
    auth: MaybeAuthorized<access::ReadBuilds>,
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let build = readable_build(&core, auth.caller.as_ref(), &id).await?;
    check_node(&core, &build.id, query.node.as_deref()).await?;
    let text = super::accepts(&headers, "text/plain");
    let after = query
        .after
        .as_deref()
        .map(str::parse::<LogCursor>)
        .transpose()
        .map_err(ControllerError::BadRequest)?;
    let content_type = if text {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    let Some(limit) = query.limit else {
        if after.is_some() {
            return Err(ControllerError::BadRequest(
                "after= pages a log: give limit= too".into(),
            ));
        }
        let pages = logs::pages(core.store.clone(), build.id, query.node, None);
        return Ok((
            [(header::CONTENT_TYPE, content_type)],
            Body::from_stream(encode(pages, text)),
        )
            .into_response());
    };
    if !(1..=MAX_LOG_PAGE).contains(&limit) {
        return Err(ControllerError::BadRequest(format!(
            "limit must be from 1 to {MAX_LOG_PAGE}"
        )));
    }
    let (chunks, next) =
        logs::read_page(&core, &build.id, query.node.as_deref(), after, limit).await?;
    let body = if text {
        let mut log = logs::TextLog::default();
        let mut out = String::new();
        for c in &chunks {
            log.push(c, &mut out);
        }
        out.into_bytes()
    } else {
        serde_json::to_vec(&chunks).map_err(ControllerError::internal)?
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(next) = next {
        // The node, when given, is one of the build's (a UUID).
        let node = query
            .node
            .as_deref()
            .map(|n| format!("node={n}&"))
            .unwrap_or_default();
        let link = format!(
            "</builds/{}/log?{node}after={next}&limit={limit}>; rel=\"next\"",
            build.id
        );
        let headers = response.headers_mut();
        for (name, value) in [(NEXT_PAGE_HEADER, next.to_string()), ("link", link)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    Ok(response)
}

/// A whole log as the body: a JSON array, or text, written page by page.
fn encode(
    pages: impl futures::Stream<Item = Result<Vec<LogChunk>>> + Send + 'static,
    text: bool,
) -> impl futures::Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static {
    async_stream::stream! {
        let mut log = logs::TextLog::default();
        let mut first = true;
        if !text {
            yield Ok(Bytes::from_static(b"["));
        }
        futures::pin_mut!(pages);
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    // The status is sent: end the body short, which the
                    // reader sees as a broken transfer, not as a log.
                    tracing::warn!(error = %e, "reading a log failed");
                    yield Err(std::io::Error::other(e.to_string()));
                    return;
                }
            };
            let mut out = Vec::new();
            for c in &page {
                if text {
                    let mut s = String::new();
                    log.push(c, &mut s);
                    out.extend_from_slice(s.as_bytes());
                } else {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend(serde_json::to_vec(c).unwrap_or_default());
                }
            }
            yield Ok(Bytes::from(out));
        }
        if !text {
            yield Ok(Bytes::from_static(b"]"));
        }
    }
}

/// Also without a token, for a build of a public project.
pub(super) async fn follow(
    auth: MaybeAuthorized<access::ReadBuilds>,
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response> {
    let build = readable_build(&core, auth.caller.as_ref(), &id).await?;
    check_node(&core, &build.id, query.node.as_deref()).await?;
    let stream = logs::follow(core, build.id, query.node);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
