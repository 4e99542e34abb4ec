//! `icktool status`: who am I, and does each service answer.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Exit;
use crate::connection::{Ick, Service, chain};
use crate::output::{Out, duration};

#[derive(Serialize)]
struct Status {
    config: String,
    client_id: String,
    token: TokenStatus,
    services: Vec<ServiceStatus>,
}

/// Tagged inside, so that the YAML is plain (no `!granted` tag that
/// other YAML readers refuse).
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum TokenStatus {
    Granted {
        scopes: Vec<String>,
        expires_in: u64,
        expires_at: String,
    },
    Refused {
        error: String,
    },
}

#[derive(Serialize)]
struct ServiceStatus {
    service: &'static str,
    url: String,
    reachable: bool,
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    latency_ms: Option<u128>,
    /// Something answers at the URL, but not this service.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    wrong_service: bool,
}

#[derive(serde::Deserialize)]
struct Health {
    service: String,
    version: String,
}

pub async fn run(config: Option<&Path>, out: &Out) -> anyhow::Result<Exit> {
    let ick = Ick::connect(config)?;
    let token = match ick.tokens.fetch().await {
        Ok(t) => TokenStatus::Granted {
            scopes: t.scope.split(' ').map(str::to_string).collect(),
            expires_in: t.expires_in,
            expires_at: (chrono::Utc::now() + chrono::Duration::seconds(t.expires_in as i64))
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
        },
        Err(e) => TokenStatus::Refused {
            error: e.to_string(),
        },
    };
    let mut services = Vec::new();
    for service in [Service::Controller, Service::Idp, Service::ArtifactStore] {
        if let Ok(url) = ick.base(service) {
            services.push(probe(&ick, service, url).await);
        }
    }
    let all_well = matches!(token, TokenStatus::Granted { .. })
        && services.iter().all(|s| s.reachable && s.ready);
    let status = Status {
        config: ick.settings.path.display().to_string(),
        client_id: ick.settings.client_id().to_string(),
        token,
        services,
    };
    out.print(&status, || human(&status))?;
    Ok(if all_well { Exit::Ok } else { Exit::Error })
}

async fn probe(ick: &Ick, service: Service, url: &str) -> ServiceStatus {
    let started = Instant::now();
    let get = |path: &str| {
        ick.http
            .get(ick_api::http::join(url, path))
            .timeout(Duration::from_secs(5))
            .send()
    };
    let mut status = ServiceStatus {
        service: service.name(),
        url: url.to_string(),
        reachable: false,
        ready: false,
        version: None,
        error: None,
        latency_ms: None,
        wrong_service: false,
    };
    match get("/healthz").await {
        Ok(response) if response.status().is_success() => {
            status.reachable = true;
            status.latency_ms = Some(started.elapsed().as_millis());
            // Any web server answers 200: only the service's own name
            // says that the URL is the right one (a controller URL that
            // points at the IDP must not read as "ok").
            match response.json::<Health>().await {
                Ok(h) if h.service == service.binary() => {
                    status.version = Some(format!("{} {}", h.service, h.version));
                }
                Ok(h) => {
                    status.error = Some(format!(
                        "this is {}, not the {}: check `{}` in the config",
                        h.service,
                        service.name(),
                        service.config_key()
                    ));
                    status.wrong_service = true;
                }
                Err(_) => {
                    status.error = Some(format!(
                        "it answers, but not as Ick's {}: check `{}` in the config",
                        service.name(),
                        service.config_key()
                    ));
                    status.wrong_service = true;
                }
            }
        }
        Ok(response) => status.error = Some(format!("/healthz answered {}", response.status())),
        Err(e) => status.error = Some(chain(&e)),
    }
    if status.reachable && !status.wrong_service {
        match get("/readyz").await {
            Ok(r) if r.status().is_success() => status.ready = true,
            Ok(r) => {
                let problem = crate::connection::refused(service, r).await;
                status.error = Some(format!("not ready: {}", problem.problem));
            }
            Err(e) => status.error = Some(chain(&e)),
        }
    }
    status
}

fn human(status: &Status) -> String {
    let mut text = format!(
        "config:  {}\nclient:  {}\n",
        status.config, status.client_id
    );
    match &status.token {
        TokenStatus::Granted {
            scopes,
            expires_in,
            expires_at,
        } => text.push_str(&format!(
            "scopes:  {}\ntoken:   valid for {} (until {expires_at})\n",
            scopes.join(" "),
            duration(*expires_in as i64)
        )),
        TokenStatus::Refused { error } => text.push_str(&format!("token:   NONE: {error}\n")),
    }
    text.push('\n');
    let rows = status
        .services
        .iter()
        .map(|s| {
            let state = match (s.reachable, s.ready) {
                _ if s.wrong_service => "wrong service".to_string(),
                (true, true) => "ok".to_string(),
                (true, false) => "not ready".to_string(),
                _ => "unreachable".to_string(),
            };
            vec![
                s.service.to_string(),
                s.url.clone(),
                state,
                s.version.clone().unwrap_or_else(|| "-".into()),
                s.latency_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                s.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    text.push_str(&crate::output::table(
        &["service", "url", "state", "version", "latency", "error"],
        rows,
    ));
    text
}
