//! Workers: what each says of itself when it claims (written down at
//! most every so often), its presence connection, its leaving, and the
//! list of them with the state each is in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ick_api::work::{ClaimRequest, Leave, Presence, WorkerInfo, WorkerState, WorkersQuery};

use super::reaper::Judging;
use crate::access::Worker;
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::work::workers::{self as wdb, WorkerRow};
use crate::store::{now_ms, time};

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

fn refresh_interval(core: &Core) -> Duration {
    (core.config.work.worker_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(10))
}

/// Writes down what a worker says about itself (at most every so often).
pub(super) async fn register(core: &Core, req: &ClaimRequest) -> Result<()> {
    let fingerprint = format!("{:?}|{:?}|{}", req.labels, req.kinds, req.slots);
    if !core
        .workers
        .due(&req.worker, &fingerprint, refresh_interval(core))
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
    let mut w = core.store.write_one().await?;
    wdb::upsert_worker(&mut w, &row).await?;
    w.done().await?;
    core.workers.wrote(&req.worker, fingerprint);
    Ok(())
}

/// Notes that a worker is alive (heartbeats).
pub(super) async fn touch(core: &Core, worker: &str) -> Result<()> {
    let fingerprint = {
        let written = core
            .workers
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match written.get(worker) {
            Some((at, _)) if at.elapsed() < refresh_interval(core) => return Ok(()),
            // Unknown here (e.g. since a restart): its next claim writes it all.
            Some((_, fp)) => fp.clone(),
            None => String::new(),
        }
    };
    let mut w = core.store.write_one().await?;
    wdb::touch_worker(&mut w, worker, now_ms()).await?;
    w.done().await?;
    core.workers.wrote(worker, fingerprint);
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
pub async fn workers(core: &Core, query: &WorkersQuery) -> Result<Vec<WorkerInfo>> {
    let at = Judging::new(core);
    let since = (!query.all).then(|| at.now - LISTED_WHEN_GONE.as_millis() as i64);
    let mut conn = core.store.conn().await?;
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
pub fn takes_work(core: &Core, w: &WorkerRow) -> bool {
    worker_state(w, &Judging::new(core)) == WorkerState::Online
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
    core: &Core,
    worker: &Worker,
    req: Presence,
) -> Result<
    impl futures::Stream<Item = std::result::Result<bytes::Bytes, std::convert::Infallible>> + use<>,
> {
    ick_api::work::check_worker(&req.worker, &[]).map_err(ControllerError::BadRequest)?;
    worker.check_name(&req.worker)?;
    let session = uuid::Uuid::new_v4().to_string();
    {
        let mut w = core.store.write_one().await?;
        wdb::open_presence(&mut w, &req.worker, &session, req.draining, now_ms()).await?;
        w.done().await?;
    }
    tracing::debug!(worker = %req.worker, "presence connection opened");
    let guard = PresenceGuard {
        core: core.clone(),
        worker: req.worker,
        session,
        ended: false,
    };
    let cancel = core.cancel.clone();
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
    core: Core,
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
        if self.ended || self.core.cancel.is_cancelled() {
            return;
        }
        let (core, worker, session) = (
            self.core.clone(),
            std::mem::take(&mut self.worker),
            std::mem::take(&mut self.session),
        );
        tokio::spawn(async move {
            let dropped = async {
                let mut w = core.store.write_one().await?;
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
pub async fn leave(core: &Core, worker: &Worker, req: Leave) -> Result<()> {
    ick_api::work::check_worker(&req.worker, &[]).map_err(ControllerError::BadRequest)?;
    worker.check_name(&req.worker)?;
    if req.state == WorkerState::Online {
        return Err(ControllerError::BadRequest(
            "a worker leaves as draining or gone; it is online by claiming work".into(),
        ));
    }
    let known = {
        let mut w = core.store.write_one().await?;
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
    core.workers.forget(&req.worker);
    tracing::info!(worker = %req.worker, state = req.state.as_str(), "a worker is leaving");
    Ok(())
}
