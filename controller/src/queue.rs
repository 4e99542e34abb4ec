//! The work queue: claims (long-polled, atomic), leases and their expiry,
//! output, and the end of an action.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ick_api::actions::Action;
use ick_api::controller::{LostAttempt, NodeStatus};
use ick_api::work::{
    BuildRef, ClaimRequest, Done, Heartbeat, HeartbeatReply, Leave, MAX_WAIT_SECONDS, Outcome,
    OutputBatch, Presence, WorkAssignment, WorkerInfo, WorkerState, WorkersQuery,
};

use crate::AppState;
use crate::access::Worker;
use crate::builds::{Effects, finish_if_done};
use crate::error::{ControllerError, Result};
use crate::store::builds::{self as bdb, NodeRow};
use crate::store::work::claims::{self as cdb, Candidate};
use crate::store::work::leases::{self as ldb, Ending};
use crate::store::work::output as odb;
use crate::store::work::workers::{self as wdb, WorkerRow};
use crate::store::{Dialect, Store, from_json, now_ms, retrying, time};

/// How often a waiting claim looks again even if nothing woke it.
const REPOLL: Duration = Duration::from_secs(5);

/// Remembers when each worker was last written down, so that a busy worker
/// does not cost a database write per claim.
#[derive(Default)]
pub struct WorkerRegistry {
    written: Mutex<HashMap<String, (Instant, String)>>,
}

impl WorkerRegistry {
    fn due(&self, name: &str, fingerprint: &str, every: Duration) -> bool {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match written.get(name) {
            Some((at, fp)) => fp != fingerprint || at.elapsed() >= every,
            None => true,
        }
    }

    /// Its next claim writes it down again (it said it was leaving).
    fn forget(&self, name: &str) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.remove(name);
    }

    fn wrote(&self, name: &str, fingerprint: String) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.insert(name.to_string(), (Instant::now(), fingerprint));
    }
}

fn refresh_interval(state: &AppState) -> Duration {
    (state.config.work.worker_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(10))
}

/// Writes down what a worker says about itself (at most every so often).
async fn register(state: &AppState, req: &ClaimRequest) -> Result<()> {
    let fingerprint = format!("{:?}|{:?}|{}", req.labels, req.kinds, req.slots);
    if !state
        .workers
        .due(&req.worker, &fingerprint, refresh_interval(state))
    {
        return Ok(());
    }
    let row = WorkerRow {
        name: req.worker.clone(),
        labels: req.labels.clone(),
        kinds: req.kinds.clone(),
        slots: i64::from(req.slots),
        free_slots: i64::from(req.free_slots),
        last_seen: now_ms(),
        state: WorkerState::Online,
        disconnected_at: None,
        left_at: None,
    };
    let mut w = state.store.write_one().await?;
    wdb::upsert_worker(&mut w, &row).await?;
    w.done().await?;
    state.workers.wrote(&req.worker, fingerprint);
    Ok(())
}

/// Notes that a worker is alive (heartbeats).
async fn touch(state: &AppState, worker: &str) -> Result<()> {
    let fingerprint = {
        let written = state
            .workers
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match written.get(worker) {
            Some((at, _)) if at.elapsed() < refresh_interval(state) => return Ok(()),
            // Unknown here (e.g. since a restart): its next claim writes it all.
            Some((_, fp)) => fp.clone(),
            None => String::new(),
        }
    };
    let mut w = state.store.write_one().await?;
    wdb::touch_worker(&mut w, worker, now_ms()).await?;
    w.done().await?;
    state.workers.wrote(worker, fingerprint);
    Ok(())
}

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
    state: &AppState,
    worker: &Worker,
    req: ClaimRequest,
) -> Result<Option<WorkAssignment>> {
    check_claim(&req)?;
    worker.check_claim(&req)?;
    register(state, &req).await?;
    if req.free_slots == 0 {
        return Ok(None);
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(req.wait.min(MAX_WAIT_SECONDS));
    let mut wake = state.hub.work_receiver();
    loop {
        wake.borrow_and_update();
        if let Some(assignment) = try_claim(state, &req).await? {
            return Ok(Some(assignment));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return Ok(None) },
            _ = tokio::time::sleep_until(deadline.min(now + REPOLL)) => {}
            _ = state.cancel.cancelled() => return Ok(None),
        }
        // A worker waiting here is connected.
        register(state, &req).await?;
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

async fn try_claim(state: &AppState, req: &ClaimRequest) -> Result<Option<WorkAssignment>> {
    let lease = state.config.work.lease;
    let claimed = retrying(|| async {
        let store = &state.store;
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
    if state.build_infos.first_hand_out(&started.build_id) {
        let mut w = state.store.write_one().await?;
        cdb::mark_build_running(&mut w, &started.build_id, now).await?;
        w.done().await?;
    }
    let info = state
        .build_infos
        .get(&state.store, &started.build_id)
        .await?;
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
    state.hub.build_changed_here(&assignment.build.id);
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

/// Why a work call about `attempt` of the node was not applied: no such
/// node, another attempt (409), or another worker's (403).
async fn refuse(state: &AppState, worker: &Worker, node_id: &str, attempt: i64) -> ControllerError {
    let found = async {
        let mut conn = state.store.conn().await?;
        bdb::get_node(&mut conn, node_id).await
    }
    .await;
    match found {
        Ok(Some(node)) if node.attempt == attempt && node.status == NodeStatus::Running => worker
            .check_holder(node_id, node.worker.as_deref())
            .err()
            .unwrap_or_else(|| stale(node_id, attempt, node.attempt, node.status.as_str())),
        Ok(Some(node)) => stale(node_id, attempt, node.attempt, node.status.as_str()),
        Ok(None) => ControllerError::NotFound(format!("no node {node_id:?}")),
        Err(e) => e,
    }
}

fn stale(node: &str, attempt: i64, current: i64, status: &str) -> ControllerError {
    ControllerError::StaleAttempt {
        node: node.to_string(),
        attempt,
        current,
        status: status.to_string(),
    }
}

/// `POST /work/{id}/heartbeat`.
pub async fn heartbeat(
    state: &AppState,
    worker: &Worker,
    node_id: &str,
    hb: Heartbeat,
) -> Result<HeartbeatReply> {
    let lease = state.config.work.lease;
    let renewed = {
        let mut tx = state.store.write().await?;
        let renewed = ldb::renew_lease(
            &mut tx,
            node_id,
            hb.attempt,
            worker.name(),
            now_ms() + lease.as_millis() as i64,
        )
        .await?;
        tx.commit().await?;
        renewed
    };
    match renewed {
        Some(r) => {
            if let Some(worker) = &r.worker {
                touch(state, worker).await?;
            }
            Ok(HeartbeatReply {
                cancel: r.cancel,
                lease_seconds: lease.as_secs(),
            })
        }
        None => Err(refuse(state, worker, node_id, hb.attempt).await),
    }
}

/// `POST /work/{id}/output`.
pub async fn output(
    state: &AppState,
    worker: &Worker,
    node_id: &str,
    batch: OutputBatch,
) -> Result<()> {
    if let Some(bad) = batch.chunks.iter().find(|c| c.seq < 0) {
        return Err(ControllerError::BadRequest(format!(
            "chunk seq {} is negative",
            bad.seq
        )));
    }
    let lease = state.config.work.lease;
    let (build_id, added) = retrying(|| async {
        let store = &state.store;
        let mut tx = store.write().await?;
        let node = ldb::lock_node_state(store, &mut tx, node_id)
            .await?
            .ok_or_else(|| ControllerError::NotFound(format!("no node {node_id:?}")))?;
        if node.attempt != batch.attempt {
            return Err(stale(node_id, batch.attempt, node.attempt, &node.status));
        }
        worker.check_holder(node_id, node.worker.as_deref())?;
        if node.status != "running" {
            // Resent after done was accepted: fine if it is all held already.
            if batch.chunks.iter().all(|c| c.seq < node.chunks) {
                return Ok((node.build_id, 0));
            }
            return Err(stale(node_id, batch.attempt, node.attempt, &node.status));
        }
        let now = now_ms();
        let added = odb::insert_chunks(
            &mut tx,
            &node.build_id,
            node_id,
            batch.attempt,
            &batch.chunks,
            now,
        )
        .await?;
        odb::add_chunks(&mut tx, node_id, added, now + lease.as_millis() as i64).await?;
        tx.commit().await?;
        Ok((node.build_id, added))
    })
    .await?;
    if added > 0 {
        state.hub.build_changed(&build_id);
    }
    Ok(())
}

/// `POST /work/{id}/done`.
pub async fn done(state: &AppState, worker: &Worker, node_id: &str, done: Done) -> Result<()> {
    if done.outcome == Outcome::Exited && done.exit_code.is_none() {
        return Err(ControllerError::BadRequest(
            "outcome exited needs an exit_code".into(),
        ));
    }
    if done.chunks < 0 {
        return Err(ControllerError::BadRequest("chunks is negative".into()));
    }
    let status = if done.succeeded() {
        NodeStatus::Succeeded
    } else if done.outcome == Outcome::Cancelled {
        NodeStatus::Cancelled
    } else {
        NodeStatus::Failed
    };
    let message = done
        .message
        .clone()
        .or_else(|| match (done.outcome, done.exit_code) {
            (Outcome::Exited, Some(0)) => None,
            (Outcome::Exited, Some(code)) => Some(format!("exited with code {code}")),
            (Outcome::TimedOut, _) => Some("timed out".to_string()),
            (Outcome::Cancelled, _) => Some("cancelled".to_string()),
            _ => Some("could not run".to_string()),
        });
    let ending = Ending {
        status: status.as_str(),
        outcome: Some(done.outcome),
        exit_code: done.exit_code,
        message: message.as_deref(),
        outputs: &done.outputs,
    };
    // Locks the node only: the ends of a build's actions do not wait for
    // each other.
    let ended = retrying(|| async {
        let store = &state.store;
        if status == NodeStatus::Succeeded && store.dialect() == Dialect::Postgres {
            // The common case in one statement.
            let mut conn = store.conn().await?;
            let now = now_ms();
            if let Some(s) = ldb::succeed_node(&mut conn, node_id, done.attempt, worker.name(), done.chunks, &ending, now).await? {
                tracing::info!(build_id = %s.ended.build_id, node = %node_id, attempt = done.attempt, %status, "action ended");
                let effects = Effects {
                    builds: vec![s.ended.build_id.clone()],
                    work: s.ready > 0,
                    ..Effects::default()
                };
                return Ok(Some((s.ended.build_id, s.queued, effects)));
            }
        }
        let store = &state.store;
        let mut tx = store.write().await?;
        let now = now_ms();
        let Some(node) = ldb::end_running_node(&mut tx, node_id, done.attempt, worker.name(), done.chunks, &ending, now).await? else {
            // Why not: no such node, another attempt, another worker's,
            // not running, or chunks missing.
            let node = bdb::get_node(&mut tx, node_id)
                .await?
                .ok_or_else(|| ControllerError::NotFound(format!("no node {node_id:?}")))?;
            if node.attempt != done.attempt || !(node.status.is_finished() || node.status == NodeStatus::Running) {
                return Err(stale(node_id, done.attempt, node.attempt, node.status.as_str()));
            }
            worker.check_holder(node_id, node.worker.as_deref())?;
            if node.status.is_finished() {
                // The same attempt's done, again.
                return Ok(None);
            }
            return Err(ControllerError::MissingChunks {
                held: node.chunks,
                expected: done.chunks,
            });
        };
        let mut effects = Effects {
            builds: vec![node.build_id.clone()],
            ..Effects::default()
        };
        if status == NodeStatus::Succeeded {
            let ready = ldb::release_dependents(&mut tx, node_id, &node.pipeline, node.worker.as_deref(), now).await?;
            effects.work = ready > 0;
        } else {
            let why = format!("{} action {} {}", node.pipeline, node.index + 1, status);
            ldb::skip_dependents(&mut tx, node_id, &format!("skipped: {why}"), now).await?;
        }
        let queued = bdb::has_queued_nodes(&mut tx, &node.build_id).await?;
        tx.commit().await?;
        tracing::info!(build_id = %node.build_id, node = %node_id, attempt = done.attempt, %status, "action ended");
        Ok(Some((node.build_id, queued, effects)))
    })
    .await?;
    let Some(ended) = ended else {
        return Ok(());
    };
    let (build_id, queued, mut effects) = ended;
    // With nothing queued, this may have been the build's last action: end
    // it, under the build's lock, if nothing runs either. (Ends of the
    // other actions do not wait for that lock; should this controller stop
    // first, the reaper's sweep ends the build.)
    if !queued {
        crate::builds::end_if_idle(&state.store, &build_id, &mut effects).await?;
    }
    effects.publish(state);
    Ok(())
}

/// How long `GET /workers` lists a gone worker unless asked for all.
const LISTED_WHEN_GONE: Duration = Duration::from_secs(3600);

/// What a stored worker is now: gone if it said so, was not heard from
/// for `worker_timeout`, or its presence connection stayed dropped.
fn worker_state(w: &WorkerRow, at: &Judging) -> WorkerState {
    let dropped = w.disconnected_at.is_some_and(|d| d < at.lost_before);
    if w.state == WorkerState::Gone || w.last_seen < at.seen_cutoff || dropped {
        WorkerState::Gone
    } else {
        w.state
    }
}

/// `GET /workers`: those not gone for long, or `all`.
pub async fn workers(state: &AppState, query: &WorkersQuery) -> Result<Vec<WorkerInfo>> {
    let at = Judging::new(state);
    let since = (!query.all).then(|| at.now - LISTED_WHEN_GONE.as_millis() as i64);
    let mut conn = state.store.conn().await?;
    let rows = wdb::workers(&mut conn, since).await?;
    let running = wdb::running_nodes(&mut conn).await?;
    Ok(rows
        .into_iter()
        .map(|w| WorkerInfo {
            running: running
                .iter()
                .filter(|(name, _)| *name == w.name)
                .map(|(_, id)| id.clone())
                .collect(),
            state: worker_state(&w, &at),
            name: w.name,
            labels: w.labels,
            slots: w.slots as u32,
            kinds: w.kinds,
            last_seen: time(w.last_seen).to_rfc3339(),
        })
        .collect())
}

/// Whether a stored worker takes work now (for wait reasons).
pub fn takes_work(state: &AppState, w: &WorkerRow) -> bool {
    worker_state(w, &Judging::new(state)) == WorkerState::Online
}

/// A presence connection lasts this long; then the worker opens another
/// (with a fresh token, so a disabled client's worker is let go).
const PRESENCE_SESSION: Duration = Duration::from_secs(300);

/// How often a presence connection carries a newline: writing is how the
/// controller notices soon that the worker's end has closed.
const PRESENCE_TICK: Duration = Duration::from_secs(1);

/// `POST /work/presence`: a stream of newlines while the worker holds the
/// connection. When the connection drops before the controller ends it,
/// the worker is taken for dead unless it opens another within
/// `work.reconnect_grace`.
pub async fn presence(
    state: &AppState,
    worker: &Worker,
    req: Presence,
) -> Result<
    impl futures::Stream<Item = std::result::Result<bytes::Bytes, std::convert::Infallible>> + use<>,
> {
    ick_api::work::check_worker(&req.worker, &[]).map_err(ControllerError::BadRequest)?;
    worker.check_name(&req.worker)?;
    let session = uuid::Uuid::new_v4().to_string();
    {
        let mut w = state.store.write_one().await?;
        wdb::open_presence(&mut w, &req.worker, &session, req.draining, now_ms()).await?;
        w.done().await?;
    }
    tracing::debug!(worker = %req.worker, "presence connection opened");
    let guard = PresenceGuard {
        state: state.clone(),
        worker: req.worker,
        session,
        ended: false,
    };
    let cancel = state.cancel.clone();
    Ok(async_stream::stream! {
        let mut guard = guard;
        let end = tokio::time::sleep(PRESENCE_SESSION);
        tokio::pin!(end);
        let mut tick = tokio::time::interval(PRESENCE_TICK);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = &mut end => break,
                _ = tick.tick() => yield Ok(bytes::Bytes::from_static(b"\n")),
            }
        }
        // Ended by us: the worker did not go away.
        guard.end();
    })
}

/// Records a presence connection that dropped before the controller
/// ended it (the stream is dropped when writing to it fails).
struct PresenceGuard {
    state: AppState,
    worker: String,
    session: String,
    ended: bool,
}

impl PresenceGuard {
    fn end(&mut self) {
        self.ended = true;
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        if self.ended || self.state.cancel.is_cancelled() {
            return;
        }
        let (state, worker, session) = (
            self.state.clone(),
            std::mem::take(&mut self.worker),
            std::mem::take(&mut self.session),
        );
        tokio::spawn(async move {
            let dropped = async {
                let mut w = state.store.write_one().await?;
                wdb::drop_presence(&mut w, &worker, &session, now_ms()).await?;
                w.done().await
            };
            match dropped.await {
                Ok(()) => tracing::info!(%worker, "a worker's presence connection dropped"),
                Err(e) => {
                    tracing::warn!(%worker, error = %e, "cannot record a dropped presence connection")
                }
            }
        });
    }
}

/// `POST /work/leave`: the worker is draining, or gone.
pub async fn leave(state: &AppState, worker: &Worker, req: Leave) -> Result<()> {
    ick_api::work::check_worker(&req.worker, &[]).map_err(ControllerError::BadRequest)?;
    worker.check_name(&req.worker)?;
    if req.state == WorkerState::Online {
        return Err(ControllerError::BadRequest(
            "a worker leaves as draining or gone; it is online by claiming work".into(),
        ));
    }
    let known = {
        let mut w = state.store.write_one().await?;
        let known = wdb::leave(&mut w, &req.worker, req.state, now_ms()).await?;
        w.done().await?;
        known
    };
    if !known {
        return Err(ControllerError::NotFound(format!(
            "no worker {:?}",
            req.worker
        )));
    }
    state.workers.forget(&req.worker);
    tracing::info!(worker = %req.worker, state = req.state.as_str(), "a worker is leaving");
    Ok(())
}

/// Finds expired leases and nodes stranded on a gone worker, until
/// stopped. Several controllers may run it; each change is a transaction
/// that checks again under lock.
pub async fn reaper(state: AppState) {
    let mut tick = tokio::time::interval(state.config.work.reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = reap(&state).await {
            tracing::warn!(error = %e, "looking for lost workers failed");
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Loss {
    /// The running node's lease expired.
    LeaseExpired,
    /// The running node's worker dropped its presence connection (or left
    /// without reporting the end) and did not come back.
    WorkerLost,
    /// The node waits for the worker holding its workspace, which is gone.
    WorkerGone,
}

/// Times the reaper judges by, in ms since the epoch.
struct Judging {
    now: i64,
    /// Workers not heard from since are gone.
    seen_cutoff: i64,
    /// Workers lost (dropped, left) before this did not come back in time.
    lost_before: i64,
}

impl Judging {
    fn new(state: &AppState) -> Judging {
        let now = now_ms();
        Judging {
            now,
            seen_cutoff: now - state.config.work.worker_timeout.as_millis() as i64,
            lost_before: now - state.config.work.reconnect_grace.as_millis() as i64,
        }
    }
}

async fn reap(state: &AppState) -> Result<()> {
    let at = Judging::new(state);
    let now = at.now;
    // For `worker_timeout` after its start, a controller leaves alone the
    // leases granted before it started: one that lapsed while it was down
    // says nothing of its worker, which could not renew it; the worker
    // gets that long to come back and renew it (or report the end).
    let settling = now < state.started_ms + state.config.work.worker_timeout.as_millis() as i64;
    // While settling, only leases granted or renewed since the start
    // (which end a lease after it) may have lapsed by their worker's
    // fault, only workers lost since the start count as lost, and none
    // as gone for not being seen, since none could reach us before.
    let (lease_from, lost_from) = if settling {
        (
            state.started_ms + state.config.work.lease.as_millis() as i64,
            state.started_ms,
        )
    } else {
        (i64::MIN, i64::MIN)
    };
    let mut orphans = Vec::new();
    {
        let mut conn = state.store.conn().await?;
        for o in ldb::expired_leases(&mut conn, now, lease_from).await? {
            orphans.push((o, Loss::LeaseExpired));
        }
        for o in ldb::nodes_of_lost_workers(&mut conn, at.lost_before, lost_from).await? {
            orphans.push((o, Loss::WorkerLost));
        }
        if !settling {
            for o in ldb::stranded_nodes(&mut conn, at.seen_cutoff, at.lost_before).await? {
                orphans.push((o, Loss::WorkerGone));
            }
        }
    }
    for (o, loss) in orphans {
        requeue(state, &o.build_id, &o.id, loss).await?;
    }
    // Builds whose first hand-out was not recorded (a controller stopped
    // in between), and builds left unfinished by a controller that stopped
    // between an action's end and the build's.
    {
        let mut w = state.store.write_one().await?;
        bdb::mark_started_builds_running(&mut w, now).await?;
        w.done().await?;
    }
    let idle = {
        let mut conn = state.store.conn().await?;
        bdb::idle_unfinished_builds(&mut conn).await?
    };
    for build_id in idle {
        let mut effects = Effects::default();
        crate::builds::end_if_idle(&state.store, &build_id, &mut effects).await?;
        effects.publish(state);
    }
    Ok(())
}

/// "12:03:04 UTC", for messages.
fn clock(ms: i64) -> String {
    time(ms).format("%H:%M:%S UTC").to_string()
}

/// Whether `loss` still holds of `node` (under its lock), and if so what
/// happened to its worker, and when it was last heard from.
async fn judge(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    node: &NodeRow,
    loss: Loss,
) -> Result<Option<(String, i64)>> {
    let at = Judging::new(state);
    let Some(name) = node.worker.clone().or(node.affinity.clone()) else {
        return Ok(None);
    };
    // A lapsed lease says it all; the other losses are the worker's state.
    let row = match loss {
        Loss::LeaseExpired => None,
        Loss::WorkerLost | Loss::WorkerGone => wdb::worker(conn, &name).await?,
    };
    Ok(match loss {
        Loss::LeaseExpired => {
            let Some(until) = node.lease_until.filter(|l| *l < at.now) else {
                return Ok(None);
            };
            if node.status != NodeStatus::Running {
                return Ok(None);
            }
            let heard = until - state.config.work.lease.as_millis() as i64;
            Some((
                format!("worker {name} stopped answering at {}", clock(heard)),
                heard,
            ))
        }
        Loss::WorkerLost => {
            let lost = row.as_ref().and_then(|w| w.lost_at());
            let Some(lost) = lost.filter(|l| *l < at.lost_before) else {
                return Ok(None);
            };
            if node.status != NodeStatus::Running {
                return Ok(None);
            }
            let what = if row.as_ref().is_some_and(|w| w.state == WorkerState::Gone) {
                "left without reporting the action's end"
            } else {
                "dropped its connection and did not come back"
            };
            Some((format!("worker {name} {what} at {}", clock(lost)), lost))
        }
        Loss::WorkerGone => {
            if !stranded(node, row.as_ref(), &at) {
                return Ok(None);
            }
            let heard = row
                .as_ref()
                .map(|w| w.away_since().unwrap_or(w.last_seen))
                .unwrap_or(at.now);
            Some((
                format!(
                    "worker {name}, which held the pipeline's workspace, was gone at {}",
                    clock(heard)
                ),
                heard,
            ))
        }
    })
}

/// A worker was lost: its pipeline goes back to its first action, or,
/// after `max_attempts` losses, the node fails with "worker lost". The
/// node records the lost attempt.
async fn requeue(state: &AppState, build_id: &str, node_id: &str, loss: Loss) -> Result<()> {
    let max_attempts = i64::from(state.config.work.max_attempts);
    let effects = retrying(|| async {
        let store = &state.store;
        let mut tx = store.write().await?;
        let Some(node) = bdb::lock_node(store, &mut tx, node_id).await? else {
            return Ok(Effects::default());
        };
        let Some(build) = bdb::lock_build(store, &mut tx, build_id).await? else {
            return Ok(Effects::default());
        };
        let now = now_ms();
        let Some((what, heard)) = judge(state, &mut tx, &node, loss).await? else {
            return Ok(Effects::default());
        };
        let worker = node.worker.clone().or(node.affinity.clone()).unwrap_or_default();
        let losses = ldb::pipeline_losses(&mut tx, build_id, &node.pipeline).await? + 1;
        let mut lost_attempts = node.lost_attempts.clone();
        lost_attempts.push(LostAttempt {
            attempt: node.attempt,
            worker: worker.clone(),
            at: time(heard),
            reason: what.clone(),
            again_on: None,
        });
        ldb::count_loss(&mut tx, node_id, &lost_attempts).await?;
        let mut effects = Effects {
            builds: vec![build.id.clone()],
            ..Effects::default()
        };
        let no_outputs = Default::default();
        if build.cancel_requested || losses >= max_attempts {
            let (status, message) = if build.cancel_requested {
                (NodeStatus::Cancelled, format!("the build was cancelled; {what}"))
            } else {
                (NodeStatus::Failed, format!("worker lost: {what} (the pipeline was tried {losses} times)"))
            };
            ldb::end_node(
                &mut tx,
                node_id,
                &Ending {
                    status: status.as_str(),
                    outcome: None,
                    exit_code: None,
                    message: Some(&message),
                    outputs: &no_outputs,
                },
                now,
            )
            .await?;
            if status == NodeStatus::Failed {
                let why = format!("skipped: {} action {} failed (worker lost)", node.pipeline, node.index + 1);
                ldb::skip_dependents(&mut tx, node_id, &why, now).await?;
            }
            finish_if_done(store, &mut tx, &build, now, &mut effects).await?;
            tracing::warn!(build_id = %build.id, node = %node_id, %worker, %status, "worker lost");
        } else {
            bdb::reset_pipeline(&mut tx, build_id, &node.pipeline, true).await?;
            bdb::recount_waiting(&mut tx, build_id, false, now).await?;
            effects.work = true;
            tracing::warn!(build_id = %build.id, node = %node_id, %worker, pipeline = %node.pipeline, losses, reason = %what, "worker lost; pipeline requeued");
        }
        tx.commit().await?;
        Ok(effects)
    })
    .await?;
    effects.publish(state);
    Ok(())
}

/// Whether a queued node waits for a worker that is gone: not seen for
/// `worker_timeout`, or lost (it left, or its presence connection
/// dropped) for `reconnect_grace`.
fn stranded(node: &NodeRow, pinned_worker: Option<&WorkerRow>, at: &Judging) -> bool {
    if node.affinity.is_none() || node.status != NodeStatus::Queued || node.waiting > 0 || node.held
    {
        return false;
    }
    match pinned_worker {
        None => true,
        Some(w) => {
            w.last_seen < at.seen_cutoff || w.away_since().is_some_and(|l| l < at.lost_before)
        }
    }
}
