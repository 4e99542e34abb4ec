//! Reports on a claimed node by the worker that holds it: heartbeats
//! (which renew its lease), output, and the action's end. Each names its
//! attempt, a fencing token: a report on another attempt is refused.

use ick_api::controller::NodeStatus;
use ick_api::work::{Done, Heartbeat, HeartbeatReply, Outcome, OutputBatch};

use super::workers::touch;
use crate::access::Worker;
use crate::builds::Effects;
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::builds as bdb;
use crate::store::work::leases::{self as ldb, Ending};
use crate::store::work::output as odb;
use crate::store::{Dialect, now_ms, retrying};

/// Why a work call about `attempt` of the node was not applied: no such
/// node, another attempt (409), or another worker's (403).
async fn refuse(core: &Core, worker: &Worker, node_id: &str, attempt: i64) -> ControllerError {
    let found = async {
        let mut conn = core.store.conn().await?;
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
    core: &Core,
    worker: &Worker,
    node_id: &str,
    hb: Heartbeat,
) -> Result<HeartbeatReply> {
    let lease = core.config.work.lease;
    let renewed = {
        let mut tx = core.store.write().await?;
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
                touch(core, worker).await?;
            }
            Ok(HeartbeatReply {
                cancel: r.cancel,
                lease_seconds: lease.as_secs(),
            })
        }
        None => Err(refuse(core, worker, node_id, hb.attempt).await),
    }
}

/// `POST /work/{id}/output`.
pub async fn output(core: &Core, worker: &Worker, node_id: &str, batch: OutputBatch) -> Result<()> {
    if let Some(bad) = batch.chunks.iter().find(|c| c.seq < 0) {
        return Err(ControllerError::BadRequest(format!(
            "chunk seq {} is negative",
            bad.seq
        )));
    }
    let lease = core.config.work.lease;
    let (build_id, added, fresh) = retrying(|| async {
        let store = &core.store;
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
                return Ok((node.build_id, 0, 0));
            }
            return Err(stale(node_id, batch.attempt, node.attempt, &node.status));
        }
        let now = now_ms();
        let fresh: usize = batch
            .chunks
            .iter()
            .filter(|c| c.seq >= node.chunks)
            .map(|c| c.data.len())
            .sum();
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
        Ok((node.build_id, added, fresh))
    })
    .await?;
    if added > 0 {
        core.counters.output(fresh);
        core.hub.build_changed(&build_id);
    }
    Ok(())
}

/// `POST /work/{id}/done`.
pub async fn done(core: &Core, worker: &Worker, node_id: &str, done: Done) -> Result<()> {
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
        let store = &core.store;
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
        let store = &core.store;
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
        crate::builds::end_if_idle(&core.store, &build_id, &mut effects).await?;
    }
    effects.publish(core);
    Ok(())
}
