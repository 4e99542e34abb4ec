//! The claim loop, one per slot: long-poll the controller for an action,
//! run it, report it, and again, until the worker-manager stops.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ick_api::TokenError;
use ick_api::actions::BUILTIN_KINDS;
use ick_api::blobs::RetryPolicy;
use ick_api::work::ClaimRequest;

use crate::Shared;
use crate::error::CallError;
use crate::run::{self, plugin_kinds};

/// Waits between failed claims: from 250 ms up to 30 s.
fn claim_backoff() -> RetryPolicy {
    RetryPolicy {
        attempts: u32::MAX,
        first_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(30),
    }
}

/// The kinds this worker runs: the built-ins and its plugins (looked for
/// at every claim, so a plugin added to the directory is soon offered).
async fn kinds(shared: &Shared) -> Vec<String> {
    let mut kinds: Vec<String> = BUILTIN_KINDS.iter().map(|k| k.to_string()).collect();
    if let Some(dir) = shared.config.plugin_dir.clone() {
        let plugins = tokio::task::spawn_blocking(move || plugin_kinds(&dir))
            .await
            .unwrap_or_default();
        kinds.extend(plugins);
    }
    kinds
}

/// Claims and runs actions until `shared.shutdown` is cancelled.
pub async fn slot(shared: Arc<Shared>, slot: u32) {
    let backoff = claim_backoff();
    let mut failures = 0u32;
    // The first claim does not wait: its answer tells at once that the
    // controller takes this worker (and makes it ready).
    let mut wait = 0;
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let busy = shared.busy.load(Ordering::SeqCst);
        let request = ClaimRequest {
            worker: shared.config.name.clone(),
            labels: shared.config.labels.clone(),
            free_slots: shared.config.slots.saturating_sub(busy).max(1),
            slots: shared.config.slots,
            kinds: kinds(&shared).await,
            wait,
        };
        let claimed = tokio::select! {
            claimed = shared.controller.claim(&request) => claimed,
            _ = shared.shutdown.cancelled() => return,
        };
        match claimed {
            Ok(Some(assignment)) => {
                failures = 0;
                wait = shared.config.claim_wait.as_secs();
                shared.ready.store(true, Ordering::SeqCst);
                shared.busy.fetch_add(1, Ordering::SeqCst);
                run::run_assignment(&shared, assignment).await;
                shared.busy.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(None) => {
                failures = 0;
                wait = shared.config.claim_wait.as_secs();
                shared.ready.store(true, Ordering::SeqCst);
            }
            Err(e) => {
                shared.ready.store(false, Ordering::SeqCst);
                failures += 1;
                let delay = backoff.delay(failures);
                // One slot speaks for all: they fail alike.
                if slot == 0 {
                    explain(&shared, &e, delay);
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shared.shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Says why no work can be had, in terms of what to fix.
fn explain(shared: &Shared, e: &CallError, delay: Duration) {
    let config = &shared.config;
    match e {
        CallError::Token(TokenError::Refused { error, .. })
            if error == "temporarily_unavailable" =>
        {
            tracing::warn!(
                error = %e,
                ?delay,
                "the identity provider is holding token requests back after failed authentications; trying again"
            )
        }
        CallError::Token(TokenError::Refused { .. }) => tracing::error!(
            error = %e,
            client_id = %config.idp.client_id,
            token_url = %config.idp.token_url,
            ?delay,
            "the identity provider refused the worker's credentials, so it gets no work: check idp.client_id and the client secret"
        ),
        CallError::Token(TokenError::Unreachable { .. }) => tracing::warn!(
            error = %e,
            ?delay,
            "cannot get a token; trying again"
        ),
        CallError::Refused(problem) if problem.status == 401 || problem.status == 403 => {
            tracing::error!(
                error = %e,
                client_id = %config.idp.client_id,
                ?delay,
                "the controller refused the worker's token or claim: the client needs the scope work:run, the controller must trust this IDP, and the worker's name and labels must be those its IDP client holds (icktool client show CLIENT)"
            )
        }
        CallError::Refused(problem) if problem.status == 400 => tracing::error!(
            error = %e,
            ?delay,
            "the controller refused the claim: check the worker's name and labels"
        ),
        _ => {
            tracing::warn!(error = %e, ?delay, "cannot claim work from the controller; trying again")
        }
    }
}
