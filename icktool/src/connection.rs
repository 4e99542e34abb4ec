//! The services as icktool sees them: base URLs, one HTTP client, one
//! token source, and errors turned into sentences.

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use ick_api::blobs::BlobClient;
use ick_api::idp::{IdpAdmin, IdpAdminError};
use ick_api::{PersonTokens, Problem, TokenError, TokenSource};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{self, Identity, Settings};
use crate::tokens::Login;

/// Which service a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Controller,
    Idp,
    ArtifactStore,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Controller => "controller",
            Service::Idp => "IDP",
            Service::ArtifactStore => "artifact store",
        }
    }

    /// The name its `/healthz` gives (the binary's).
    pub fn binary(self) -> &'static str {
        match self {
            Service::Controller => "ick-controller",
            Service::Idp => "ick-idp",
            Service::ArtifactStore => "ick-artifact-store",
        }
    }

    /// The key of the icktool config that holds its URL.
    pub fn config_key(self) -> &'static str {
        match self {
            Service::Controller => "controller",
            Service::Idp => "idp",
            Service::ArtifactStore => "artifact_store",
        }
    }
}

/// A service refused a request: its problem, and who said it.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.problem))]
pub struct Refused {
    pub service: Service,
    pub problem: Problem,
}

/// `title: detail`, with where in the YAML when the problem says.
pub fn describe(problem: &Problem) -> String {
    let mut text = problem.to_string();
    let num = |key: &str| problem.extensions.get(key).and_then(|v| v.as_u64());
    if let Some(line) = num("line") {
        text.push_str(&format!(" (line {line}"));
        if let Some(column) = num("column") {
            text.push_str(&format!(", column {column}"));
        }
        text.push(')');
    }
    text
}

/// A connection to the services of one config.
pub struct Ick {
    pub http: reqwest::Client,
    pub settings: Settings,
    pub tokens: Arc<TokenSource>,
}

impl Ick {
    /// Loads the config and prepares (but does not yet use) the token source.
    pub fn connect(config: Option<&Path>) -> anyhow::Result<Ick> {
        Ok(Ick::from_settings(config::load(config)?))
    }

    pub fn from_settings(settings: Settings) -> Ick {
        let http = ick_api::http::client();
        let token_url = ick_api::http::join(&settings.idp, ick_api::oauth::TOKEN_PATH);
        let tokens = match &settings.identity {
            Identity::Client { id, secret } => {
                TokenSource::new(http.clone(), token_url, id.clone(), secret.clone(), None)
            }
            Identity::Person { file, login } => {
                let (file, kept) = (file.clone(), login.clone());
                // The rotated refresh token is written before it is used:
                // the old one is spent, and the next run needs the new one.
                let keep = Box::new(move |next: &PersonTokens| {
                    let login = Login {
                        tokens: next.clone(),
                        ..kept.clone()
                    };
                    crate::tokens::write(&file, &login).map_err(|e| format!("{e:#}"))
                });
                TokenSource::person(
                    http.clone(),
                    token_url,
                    login.client_id.clone(),
                    login.tokens.clone(),
                    keep,
                )
            }
        };
        Ick {
            http,
            settings,
            tokens: Arc::new(tokens),
        }
    }

    /// The base URL of `service`, or an error naming the missing key.
    pub fn base(&self, service: Service) -> anyhow::Result<&str> {
        let value = match service {
            Service::Controller => self.settings.controller.as_deref(),
            Service::Idp => Some(self.settings.idp.as_str()),
            Service::ArtifactStore => self.settings.artifact_store.as_deref(),
        };
        let key = service.config_key();
        match value {
            Some(url) => Ok(url),
            None => bail!(
                "{} names no `{key}` URL (the {}'s address)",
                self.settings.path.display(),
                service.name()
            ),
        }
    }

    /// A token, or a sentence saying why there is none.
    pub async fn token(&self) -> anyhow::Result<String> {
        self.tokens.token().await.map_err(|e| self.token_error(e))
    }

    /// Why no token could be had, as a sentence: for a person whose
    /// refresh is refused, that they must log in again.
    pub fn token_error(&self, e: TokenError) -> anyhow::Error {
        match (&self.settings.identity, &e) {
            (Identity::Person { .. }, TokenError::Refused { .. }) => {
                anyhow::anyhow!("your login has expired or was revoked: run icktool login ({e})")
            }
            (Identity::Person { .. }, _) => anyhow::anyhow!("cannot renew your login: {e}"),
            (Identity::Client { id, .. }, _) => {
                anyhow::anyhow!("cannot get a token as client {id}: {e}")
            }
        }
    }

    /// Sends the request `make` builds to `service` with a token; on 401,
    /// gets a fresh token and tries once more. Errors unless the answer is
    /// a success or one of `accept`.
    pub async fn send(
        &self,
        service: Service,
        method: Method,
        path: &str,
        accept: &[StatusCode],
        make: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<Response> {
        let url = ick_api::http::join(self.base(service)?, path);
        let mut renewed = false;
        loop {
            let token = self.token().await?;
            let request = make(self.http.request(method.clone(), &url)).bearer_auth(token);
            let response = request.send().await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach the {} at {url}: {}",
                    service.name(),
                    chain(&e)
                )
            })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                self.tokens.invalidate().await;
                renewed = true;
                continue;
            }
            if status.is_success() || accept.contains(&status) {
                return Ok(response);
            }
            return Err(refused(service, response).await.into());
        }
    }

    /// `GET path` as JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
    ) -> anyhow::Result<T> {
        let response = self.send(service, Method::GET, path, &[], |r| r).await?;
        read_json(response).await
    }

    /// `GET path` with a query, as JSON.
    pub async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        service: Service,
        path: &str,
        query: &Q,
    ) -> anyhow::Result<T> {
        let response = self
            .send(service, Method::GET, path, &[], |r| r.query(query))
            .await?;
        read_json(response).await
    }

    /// `method path` with a JSON body (or none), answered with JSON.
    pub async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let response = self
            .send(service, method, path, &[], |r| match body {
                Some(body) => r.json(body),
                None => r,
            })
            .await?;
        read_json(response).await
    }

    /// `DELETE path`; the answer's body is not read.
    pub async fn delete(&self, service: Service, path: &str) -> anyhow::Result<()> {
        self.send(service, Method::DELETE, path, &[], |r| r).await?;
        Ok(())
    }

    /// The IDP's admin API for people, sharing the token source.
    pub fn idp_admin(&self) -> IdpAdmin {
        IdpAdmin::new(
            self.http.clone(),
            self.settings.idp.clone(),
            self.tokens.clone(),
        )
    }

    /// An error of the IDP's admin API as a sentence, refusals as the
    /// other services' are.
    pub fn idp_error(&self, e: IdpAdminError) -> anyhow::Error {
        match e {
            IdpAdminError::Refused(problem) => Refused {
                service: Service::Idp,
                problem,
            }
            .into(),
            IdpAdminError::Token(e) => self.token_error(e),
            IdpAdminError::Transport { url, source } => {
                anyhow::anyhow!("cannot reach the IDP at {url}: {}", chain(&source))
            }
            other => other.into(),
        }
    }

    /// A blob client of the artifact store, sharing the token source.
    pub fn blobs(&self) -> anyhow::Result<BlobClient> {
        Ok(BlobClient::new(
            self.http.clone(),
            self.base(Service::ArtifactStore)?,
            self.tokens.clone(),
        ))
    }
}

/// The error and its causes, joined: reqwest's own text is too terse.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The problem a refusal carries (or one made from its status and text).
pub async fn refused(service: Service, response: Response) -> Refused {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let problem = Problem::of_refusal(status, &text);
    Refused { service, problem }
}

/// The body of a success as JSON.
pub async fn read_json<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let url = response.url().to_string();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| anyhow::anyhow!("the answer from {url} broke off: {}", chain(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("unexpected answer from {url}: {e}"))
}

pub use ick_api::http::segment;
