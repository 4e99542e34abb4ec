//! The reaper: finds leases that lapsed and nodes whose worker is lost,
//! and puts their pipelines back in the queue, or fails them after
//! `work.max_attempts` losses.

use ick_api::controller::{LostAttempt, NodeStatus};
use ick_api::work::WorkerState;

use crate::builds::{Effects, finish_if_done};
use crate::core::Core;
use crate::error::Result;
use crate::store::builds::{self as bdb, NodeRow};
use crate::store::work::leases::{self as ldb, Ending};
use crate::store::work::workers::{self as wdb, WorkerRow};
use crate::store::{now_ms, retrying, time};

/// Finds expired leases and nodes stranded on a gone worker, until
/// stopped. Several controllers may run it; each change is a transaction
/// that checks again under lock.
pub async fn reaper(core: Core) {
    let mut tick = tokio::time::interval(core.config.work.reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = core.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = reap(&core).await {
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
pub(super) struct Judging {
    pub(super) now: i64,
    /// Workers not heard from since are gone.
    pub(super) seen_cutoff: i64,
    /// Workers lost (dropped, left) before this did not come back in time.
    pub(super) lost_before: i64,
}

impl Judging {
    pub(super) fn new(core: &Core) -> Judging {
        let now = now_ms();
        Judging {
            now,
            seen_cutoff: now - core.config.work.worker_timeout.as_millis() as i64,
            lost_before: now - core.config.work.reconnect_grace.as_millis() as i64,
        }
    }
}

async fn reap(core: &Core) -> Result<()> {
    let at = Judging::new(core);
    let now = at.now;
    // For `worker_timeout` after its start, a controller leaves alone the
    // leases granted before it started: one that lapsed while it was down
    // says nothing of its worker, which could not renew it; the worker
    // gets that long to come back and renew it (or report the end).
    let settling = now < core.started_ms + core.config.work.worker_timeout.as_millis() as i64;
    // While settling, only leases granted or renewed since the start
    // (which end a lease after it) may have lapsed by their worker's
    // fault, only workers lost since the start count as lost, and none
    // as gone for not being seen, since none could reach us before.
    let (lease_from, lost_from) = if settling {
        (
            core.started_ms + core.config.work.lease.as_millis() as i64,
            core.started_ms,
        )
    } else {
        (i64::MIN, i64::MIN)
    };
    let mut orphans = Vec::new();
    {
        let mut conn = core.store.conn().await?;
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
        requeue(core, &o.build_id, &o.id, loss).await?;
    }
    // Builds whose first hand-out was not recorded (a controller stopped
    // in between), and builds left unfinished by a controller that stopped
    // between an action's end and the build's.
    {
        let mut w = core.store.write_one().await?;
        bdb::mark_started_builds_running(&mut w, now).await?;
        w.done().await?;
    }
    let idle = {
        let mut conn = core.store.conn().await?;
        bdb::idle_unfinished_builds(&mut conn).await?
    };
    for build_id in idle {
        let mut effects = Effects::default();
        crate::builds::end_if_idle(&core.store, &build_id, &mut effects).await?;
        effects.publish(core);
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
    core: &Core,
    conn: &mut sqlx::AnyConnection,
    node: &NodeRow,
    loss: Loss,
) -> Result<Option<(String, i64)>> {
    let at = Judging::new(core);
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
            let heard = until - core.config.work.lease.as_millis() as i64;
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
async fn requeue(core: &Core, build_id: &str, node_id: &str, loss: Loss) -> Result<()> {
    let max_attempts = i64::from(core.config.work.max_attempts);
    let effects = retrying(|| async {
        let store = &core.store;
        let mut tx = store.write().await?;
        let Some(node) = bdb::lock_node(store, &mut tx, node_id).await? else {
            return Ok(Effects::default());
        };
        let Some(build) = bdb::lock_build(store, &mut tx, build_id).await? else {
            return Ok(Effects::default());
        };
        let now = now_ms();
        let Some((what, heard)) = judge(core, &mut tx, &node, loss).await? else {
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
    effects.publish(core);
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
