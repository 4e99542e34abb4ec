//! `ick-web`: Ick's web dashboard. A client of the public HTTP APIs like
//! `icktool`, acting with the logged-in person's token: projects, their
//! builds, a build's graph and log, and its buttons. Server-rendered HTML;
//! every asset is served from here.

mod ansi;
mod badge;
pub mod config;
mod controller;
mod error;
mod login;
mod overview;
mod pages;
mod routes;
mod session;

use std::sync::Arc;

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use futures::FutureExt;
use ick_api::Secret;
use ick_api::server::{Running, finish_router, health_routes, serve};
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    controller: controller::Controller,
    http: reqwest::Client,
    /// The IDP's base URL.
    idp: Arc<str>,
    client_id: Arc<str>,
    client_secret: Option<Secret>,
    scopes: Arc<str>,
    /// `PUBLIC_URL/login/callback`.
    redirect_uri: Arc<str>,
    key: Key,
    cookies: session::Cookies,
    renewals: Arc<session::Renewals>,
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.key.clone()
    }
}

/// Starts the dashboard on `listener`, serving until stopped.
pub async fn start(config: Config, listener: std::net::TcpListener) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let tls = config.http.tls.is_some();
    let public_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("{}://{addr}", if tls { "https" } else { "http" }),
    };
    let http = ick_api::http::client();
    let state = AppState {
        controller: controller::Controller::new(http.clone(), &config.controller),
        http,
        idp: config.idp.trim_end_matches('/').into(),
        client_id: config.client_id.as_str().into(),
        client_secret: config.client_secret()?,
        scopes: config.scopes.as_str().into(),
        redirect_uri: format!("{public_url}/login/callback").into(),
        key: session::load_or_create_key(&config.session_key_file)?,
        cookies: session::Cookies {
            secure: public_url.starts_with("https://"),
        },
        renewals: Arc::default(),
    };
    let controller_url = config.controller.clone();
    let ready_http = state.http.clone();
    let router = routes::router(state).merge(health_routes(
        "ick-web",
        Arc::new(move || {
            let (http, url) = (ready_http.clone(), controller_url.clone());
            async move {
                let url = format!("{}/healthz", url.trim_end_matches('/'));
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("the controller answers {}", r.status())),
                    Err(e) => Err(format!("the controller is unreachable: {e}")),
                }
            }
            .boxed()
        }),
    ));
    let router = finish_router(router, config.http.body_limit);
    serve(
        listener,
        router,
        config.http.tls.as_ref(),
        CancellationToken::new(),
    )
    .await
}
