//! Claims: a worker asks for work and is handed the first ready node it
//! may run (atomically, whichever controller it asks), waiting for one up
//! to the `wait` it gives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ick_api::actions::Action;
use ick_api::work::{BuildRef, ClaimRequest, MAX_WAIT_SECONDS, WorkAssignment};

use super::workers::register;
use crate::access::Worker;
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::work::claims::{self as cdb, Candidate};
use crate::store::{Store, from_json, now_ms, retrying};

/// How often a waiting claim looks again even if nothing woke it.
const REPOLL: Duration = Duration::from_secs(5);

fn check_claim(req: &ClaimRequest) -> Result<()> {
    ick_api::work::check_worker(&req.worker, &req.labels).map_err(ControllerError::BadRequest)?;
    if req.free_slots > req.slots {
        return Err(ControllerError::BadRequest(format!(
            "free_slots ({}) is more than slots ({})",
            req.free_slots, req.slots
        )));
    }
    Ok(())
}

/// `POST /work/claim`: the first ready node this worker may run, waiting
/// up to `wait` seconds for one; `None` when the wait ends.
pub async fn claim(
    core: &Core,
    worker: &Worker,
    req: ClaimRequest,
) -> Result<Option<WorkAssignment>> {
    check_claim(&req)?;
    worker.check_claim(&req)?;
    register(core, &req).await?;
    if req.free_slots == 0 {
        return Ok(None);
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(req.wait.min(MAX_WAIT_SECONDS));
    let mut wake = core.hub.work_receiver();
    loop {
        wake.borrow_and_update();
        if let Some(assignment) = try_claim(core, &req).await? {
            return Ok(Some(assignment));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return Ok(None) },
            _ = tokio::time::sleep_until(deadline.min(now + REPOLL)) => {}
            _ = core.cancel.cancelled() => return Ok(None),
        }
        // A worker waiting here is connected.
        register(core, &req).await?;
    }
}

fn labels_fit(c: &Candidate, req: &ClaimRequest) -> bool {
    c.labels.iter().all(|l| req.labels.contains(l))
}

/// The node to hand out to a worker with labels: one pinned to it first
/// (its pipeline's workspace is there); else the oldest ready node that
/// needs labels it has; else the oldest ready node that needs no labels.
/// Kinds the worker does not run are never considered. (Workers without
/// labels take the same path in one statement: [`cdb::claim_next`].)
async fn pick(
    store: &Store,
    conn: &mut sqlx::AnyConnection,
    req: &ClaimRequest,
) -> Result<Option<String>> {
    let kinds = cdb::kinds_list(&req.kinds);
    if let Some(c) = cdb::pinned_candidate(store, conn, &req.worker, &kinds).await?
        && labels_fit(&c, req)
    {
        return Ok(Some(c.id));
    }
    if !req.labels.is_empty() {
        const PAGE: i64 = 64;
        let mut after = (i64::MIN, String::new());
        loop {
            let page =
                cdb::labelled_candidates(conn, &kinds, store, (after.0, &after.1), PAGE).await?;
            for c in page.iter().filter(|c| labels_fit(c, req)) {
                if cdb::lock_if_ready(store, conn, &c.id).await? {
                    return Ok(Some(c.id.clone()));
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = (last.ready_at, last.id.clone()),
                _ => break,
            }
        }
    }
    Ok(cdb::unlabelled_candidate(store, conn, &kinds)
        .await?
        .map(|c| c.id))
}

async fn try_claim(core: &Core, req: &ClaimRequest) -> Result<Option<WorkAssignment>> {
    let lease = core.config.work.lease;
    let claimed = retrying(|| async {
        let store = &core.store;
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        if req.labels.is_empty() {
            // One statement, committing by itself.
            let mut w = store.write_one().await?;
            let kinds = cdb::kinds_list(&req.kinds);
            let claimed = cdb::claim_next(store, &mut w, &req.worker, &kinds, now, until).await?;
            w.done().await?;
            return Ok(claimed.map(|(id, started)| (id, started, now)));
        }
        let mut tx = store.write().await?;
        let Some(id) = pick(store, &mut tx, req).await? else {
            return Ok(None);
        };
        let started = cdb::start_node(&mut tx, &id, &req.worker, now, until)
            .await?
            .ok_or_else(|| ControllerError::Internal(format!("node {id} was not queued")))?;
        tx.commit().await?;
        Ok(Some((id, started, now)))
    })
    .await?;
    let Some((id, started, now)) = claimed else {
        return Ok(None);
    };
    // After the commit, holding no lock: the build's first hand-out makes
    // it running. (Skipped once this controller saw it so; should another
    // controller retry it meanwhile, or this one stop in between, the
    // reaper's sweep marks it.)
    let info = core.build_infos.get(&core.store, &started.build_id).await?;
    if core.build_infos.first_hand_out(&started.build_id) {
        let mut w = core.store.write_one().await?;
        let triggered = cdb::mark_build_running(&mut w, &started.build_id, now).await?;
        w.done().await?;
        if let Some(triggered) = triggered {
            core.counters.started(&info.project, triggered, now);
        }
    }
    if let Some(ready) = started.ready_at {
        core.counters.claimed(ready, now);
    }
    let action: Action = from_json(&started.action)?;
    let assignment = WorkAssignment {
        node_id: id,
        attempt: started.attempt,
        lease_seconds: lease.as_secs(),
        build: BuildRef {
            id: started.build_id,
            number: info.number,
            project: info.project.clone(),
        },
        pipeline: started.pipeline,
        index: started.index as u32,
        pipeline_len: started.pipeline_len as u32,
        action,
        parameters: info.parameters.clone(),
    };
    tracing::info!(build_id = %assignment.build.id, node = %assignment.node_id, attempt = assignment.attempt, worker = %req.worker, "action handed out");
    // Followers on other controllers see it on their next look.
    core.hub.build_changed_here(&assignment.build.id);
    Ok(Some(assignment))
}

/// What assignments carry of their build, which never changes: read once.
#[derive(Default)]
pub struct BuildInfos {
    known: Mutex<HashMap<String, Arc<cdb::BuildInfo>>>,
    /// Builds this controller has marked running.
    running: Mutex<std::collections::HashSet<String>>,
}

impl BuildInfos {
    /// Whether this is the first hand-out of the build this controller
    /// makes (since it started, or since it retried the build).
    fn first_hand_out(&self, build_id: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.len() >= 10_000 {
            running.clear();
        }
        running.insert(build_id.to_string())
    }

    /// The build starts a new run.
    pub fn restarted(&self, build_id: &str) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(build_id);
    }

    async fn get(&self, store: &Store, build_id: &str) -> Result<Arc<cdb::BuildInfo>> {
        if let Some(info) = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(build_id)
        {
            return Ok(info.clone());
        }
        let mut conn = store.conn().await?;
        let info = Arc::new(
            cdb::build_info(&mut conn, build_id)
                .await?
                .ok_or_else(|| ControllerError::Internal(format!("no build {build_id}")))?,
        );
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= 1000 {
            known.clear();
        }
        known.insert(build_id.to_string(), info.clone());
        Ok(info)
    }
}
