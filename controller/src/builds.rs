//! Builds: trigger (expand the project into its graph, once), cancel,
//! retry, the end of a build, and why a queued node waits.

use std::collections::{BTreeMap, HashMap};

use ick_api::controller::{
    AuditAction, BuildList, BuildQuery, BuildStatus, BuildSummary, BuildView, DefinitionKind,
    LostAttempt, NodeStatus, PipelineSpec, ProjectSpec, TriggerRequest,
};
use ick_api::work::WorkerState;
use sqlx::AnyConnection;

use crate::access::{Actor, Readable};
use crate::audit;
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::graph::{build_graph, build_parameters, fill_refs};
use crate::paging::Page;
use crate::store::builds::{self as db, BuildRow, NodeRow};
use crate::store::definitions as defs;
use crate::store::work::workers::{self as wdb, WorkerRow};
use crate::store::{Store, from_json, now_ms, retrying};

/// What a change made happen, for the hub once it is committed.
#[derive(Debug, Default)]
pub struct Effects {
    /// Nodes became claimable.
    pub work: bool,
    /// Builds whose state changed.
    pub builds: Vec<String>,
    /// A notification was written to the outbox.
    pub mail: bool,
    /// Builds triggered, by project.
    pub triggered: Vec<String>,
    /// Builds ended.
    pub ended: Vec<Ended>,
}

/// A build that ended, as `/metrics` counts it.
#[derive(Debug)]
pub struct Ended {
    pub project: String,
    pub status: BuildStatus,
    pub started_at: Option<i64>,
    pub ended_at: i64,
}

impl Effects {
    /// Adds `other`'s effects to these.
    pub fn merge(&mut self, other: Effects) {
        self.work |= other.work;
        self.mail |= other.mail;
        self.builds.extend(other.builds);
        self.triggered.extend(other.triggered);
        self.ended.extend(other.ended);
    }

    /// Wakes whoever waits for these changes.
    pub fn publish(self, core: &Core) {
        if self.work {
            core.hub.work_available();
        }
        if self.mail {
            core.mail_wake.notify_one();
        }
        for id in self.builds {
            core.hub.build_changed(&id);
        }
        for project in self.triggered {
            core.counters.triggered(&project);
        }
        for ended in self.ended {
            let status = ended.status.to_string();
            core.counters
                .ended(&ended.project, &status, ended.started_at, ended.ended_at);
        }
    }
}

/// `POST /projects/{name}/builds`.
pub async fn trigger(
    core: &Core,
    project: &str,
    request: TriggerRequest,
    actor: &Actor,
) -> Result<BuildSummary> {
    match trigger_once(core, project, request, actor, None).await? {
        Triggered::New(build) => Ok(build),
        Triggered::Duplicate(_) => Err(ControllerError::Internal(
            "a trigger without a delivery was a duplicate".into(),
        )),
    }
}

/// A web hook's delivery id, recorded with the build it triggers so that
/// a redelivery triggers nothing.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The endpoint (`github`, …).
    pub source: &'a str,
    /// The forge's id of the delivery.
    pub id: &'a str,
}

/// What a trigger with a delivery did.
#[derive(Debug)]
pub enum Triggered {
    /// A new build.
    New(BuildSummary),
    /// The delivery was seen before: the build it triggered then.
    Duplicate(Option<BuildSummary>),
}

/// Triggers a build, at most once per delivery when one is given; the
/// audit log has it (in the same transaction).
pub async fn trigger_once(
    core: &Core,
    project: &str,
    request: TriggerRequest,
    actor: &Actor,
    delivery: Option<Delivery<'_>>,
) -> Result<Triggered> {
    crate::definitions::check_name("project", project)?;
    let default_concurrency = core.config.builds.default_concurrency;
    let created = retrying(|| {
        trigger_tx(
            &core.store,
            project,
            &request,
            actor,
            default_concurrency,
            delivery,
        )
    })
    .await?;
    let Some((build, effects)) = created else {
        let Some(d) = delivery else {
            return Ok(Triggered::Duplicate(None));
        };
        let mut conn = core.store.conn().await?;
        let earlier =
            match crate::store::webhooks::delivery_build(&mut conn, d.source, d.id, project).await?
            {
                Some(id) => db::get_build(&mut conn, &id).await?.map(|b| b.summary()),
                None => None,
            };
        tracing::info!(
            project,
            source = d.source,
            delivery = d.id,
            "delivery seen before; nothing triggered"
        );
        return Ok(Triggered::Duplicate(earlier));
    };
    tracing::info!(build_id = %build.id, project, number = build.number, by = %actor.id(), "build triggered");
    effects.publish(core);
    Ok(Triggered::New(build.summary()))
}

/// `None` when the delivery was recorded before (nothing is written).
async fn trigger_tx(
    store: &Store,
    project_name: &str,
    request: &TriggerRequest,
    actor: &Actor,
    default_concurrency: u32,
    delivery: Option<Delivery<'_>>,
) -> Result<Option<(BuildRow, Effects)>> {
    let build_id = uuid::Uuid::new_v4().to_string();
    let mut tx = store.write().await?;
    let row = defs::get(&mut tx, DefinitionKind::Project, project_name)
        .await?
        .ok_or_else(|| ControllerError::NotFound(format!("no project {project_name:?}")))?;
    if let Some(d) = delivery
        && !crate::store::webhooks::record_delivery(
            &mut tx,
            d.source,
            d.id,
            project_name,
            &build_id,
            now_ms(),
        )
        .await?
    {
        return Ok(None);
    }
    let project: ProjectSpec = from_json(&row.spec)?;
    let mut pipelines: BTreeMap<String, PipelineSpec> = BTreeMap::new();
    for p in &project.pipelines {
        if let Some(row) = defs::get_pipeline_shared(store, &mut tx, p).await? {
            pipelines.insert(p.clone(), from_json(&row.spec)?);
        }
    }
    let parameters = build_parameters(&project, &pipelines, &request.parameters)
        .map_err(ControllerError::BadRequest)?;
    let mut graph = build_graph(&project, &pipelines).map_err(ControllerError::Conflict)?;
    let number = db::next_build_number(&mut tx, project_name).await?;
    fill_refs(&mut graph, project_name, number).map_err(ControllerError::Conflict)?;
    let concurrency = i64::from(project.concurrency.unwrap_or(default_concurrency));
    let (running, waiting) = db::admission_counts(&mut tx, project_name).await?;
    let admitted = waiting == 0 && running < concurrency;
    let now = now_ms();
    let build = BuildRow {
        seq: 0,
        id: build_id,
        project: project_name.to_string(),
        number,
        status: BuildStatus::Queued,
        run: 1,
        admitted,
        concurrency,
        cancel_requested: false,
        parameters,
        triggered_by: actor.shown(),
        created_at: now,
        started_at: None,
        ended_at: None,
    };
    db::insert_build(&mut tx, &build).await?;
    let ids: Vec<String> = graph
        .iter()
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let nodes: Vec<NodeRow> = graph
        .iter()
        .enumerate()
        .map(|(i, g)| NodeRow {
            id: ids[i].clone(),
            build_id: build.id.clone(),
            position: i as i64,
            pipeline: g.pipeline.clone(),
            index: i64::from(g.index),
            pipeline_len: i64::from(g.pipeline_len),
            kind: g.action.kind.clone(),
            action: g.action.clone(),
            labels: project.runs_on.clone(),
            deps: g.deps.iter().map(|d| ids[*d].clone()).collect(),
            waiting: g.deps.len() as i64,
            held: !admitted,
            status: NodeStatus::Queued,
            affinity: None,
            worker: None,
            attempt: 0,
            lost: 0,
            lease_until: None,
            cancel_requested: false,
            chunks: 0,
            ready_at: g.deps.is_empty().then_some(now),
            started_at: None,
            ended_at: None,
            outcome: None,
            exit_code: None,
            message: None,
            outputs: BTreeMap::new(),
            lost_attempts: Vec::new(),
        })
        .collect();
    db::insert_graph(&mut tx, &build, &nodes).await?;
    audit::record(
        &mut tx,
        actor,
        AuditAction::BuildTrigger,
        Some(project_name),
        &build.id,
        serde_json::json!({
            "number": build.number,
            "parameters": request.parameters,
            "delivery": delivery.map(|d| d.id),
        }),
    )
    .await?;
    tx.commit().await?;
    let effects = Effects {
        work: admitted,
        builds: vec![build.id.clone()],
        triggered: vec![build.project.clone()],
        ..Effects::default()
    };
    Ok(Some((build, effects)))
}

/// Ends a build whose nodes have all ended, in the transaction that ended
/// the last one, and admits the project's next queued builds.
///
/// This is the one place a build ends, so the mail about it is written to
/// the outbox here, in the same transaction: it is sent if and only if the
/// build's end is committed.
pub async fn finish_build(
    store: &Store,
    conn: &mut AnyConnection,
    build: &BuildRow,
    now: i64,
    effects: &mut Effects,
) -> Result<BuildStatus> {
    let status = if build.cancel_requested {
        BuildStatus::Cancelled
    } else if db::unsuccessful_nodes(conn, &build.id).await? == 0 {
        BuildStatus::Succeeded
    } else {
        BuildStatus::Failed
    };
    db::end_build(conn, &build.id, status, now).await?;
    tracing::info!(build_id = %build.id, project = %build.project, number = build.number, %status, "build ended");
    effects.builds.push(build.id.clone());
    effects.ended.push(Ended {
        project: build.project.clone(),
        status,
        started_at: build.started_at,
        ended_at: now,
    });
    if crate::notify::enqueue(conn, build, status, now).await? {
        effects.mail = true;
    }
    if build.admitted {
        admit_next(store, conn, &build.project, now, effects).await?;
    }
    Ok(status)
}

/// Admits queued builds of a project while it has room.
async fn admit_next(
    store: &Store,
    conn: &mut AnyConnection,
    project: &str,
    now: i64,
    effects: &mut Effects,
) -> Result<()> {
    db::lock_project_counter(store, conn, project).await?;
    let (mut running, _) = db::admission_counts(conn, project).await?;
    for waiting in db::waiting_for_admission(conn, project).await? {
        if running >= waiting.concurrency {
            break;
        }
        db::admit(conn, &waiting.id, now).await?;
        running += 1;
        effects.work = true;
        effects.builds.push(waiting.id);
    }
    Ok(())
}

/// Ends the build if none of its nodes is left to run.
pub async fn finish_if_done(
    store: &Store,
    conn: &mut AnyConnection,
    build: &BuildRow,
    now: i64,
    effects: &mut Effects,
) -> Result<Option<BuildStatus>> {
    if !db::has_open_nodes(conn, &build.id).await? {
        Ok(Some(finish_build(store, conn, build, now, effects).await?))
    } else {
        Ok(None)
    }
}

/// Ends a build if none of its nodes is queued or running, in a
/// transaction of its own that holds the build's lock.
pub async fn end_if_idle(
    store: &Store,
    build_id: &str,
    effects: &mut Effects,
) -> Result<Option<BuildStatus>> {
    let (ended, local) = retrying(|| async {
        let mut tx = store.write().await?;
        let Some(build) = db::lock_build(store, &mut tx, build_id).await? else {
            return Ok((None, Effects::default()));
        };
        if build.status.is_finished() {
            return Ok((None, Effects::default()));
        }
        let mut local = Effects::default();
        let ended = finish_if_done(store, &mut tx, &build, now_ms(), &mut local).await?;
        tx.commit().await?;
        Ok((ended, local))
    })
    .await?;
    effects.merge(local);
    Ok(ended)
}

/// `POST /builds/{id}/cancel`: queued nodes end at once, running ones are
/// told through their heartbeat; the build ends when they stop.
pub async fn cancel(core: &Core, id: &str, actor: &Actor) -> Result<BuildSummary> {
    let (build, effects) = retrying(|| async {
        let store = &core.store;
        let mut tx = store.write().await?;
        let build = db::lock_build(store, &mut tx, id)
            .await?
            .ok_or_else(|| ControllerError::NotFound(format!("no build {id:?}")))?;
        if build.status.is_finished() {
            return Err(ControllerError::Conflict(format!(
                "build {} #{} already ended ({})",
                build.project, build.number, build.status
            )));
        }
        let now = now_ms();
        let mut effects = Effects {
            builds: vec![build.id.clone()],
            ..Effects::default()
        };
        db::request_cancel(&mut tx, &build.id).await?;
        db::cancel_queued_nodes(&mut tx, &build.id, now).await?;
        let cancelled = BuildRow {
            cancel_requested: true,
            ..build
        };
        finish_if_done(store, &mut tx, &cancelled, now, &mut effects).await?;
        let after = db::get_build(&mut tx, id).await?.unwrap_or(cancelled);
        audit::record(
            &mut tx,
            actor,
            AuditAction::BuildCancel,
            Some(&after.project),
            &after.id,
            serde_json::json!({"number": after.number, "run": after.run}),
        )
        .await?;
        tx.commit().await?;
        Ok((after, effects))
    })
    .await?;
    tracing::info!(build_id = %build.id, status = %build.status, by = %actor.id(), "build cancelled");
    effects.publish(core);
    Ok(build.summary())
}

/// `POST /builds/{id}/retry`: a new run of an ended build that re-runs
/// only its failed, skipped and cancelled pipelines, each from its first
/// action; succeeded pipelines keep their results.
pub async fn retry(core: &Core, id: &str, actor: &Actor) -> Result<BuildSummary> {
    let (build, effects) = retrying(|| async {
        let store = &core.store;
        let mut tx = store.write().await?;
        let build = db::lock_build(store, &mut tx, id)
            .await?
            .ok_or_else(|| ControllerError::NotFound(format!("no build {id:?}")))?;
        if !build.status.is_finished() {
            return Err(ControllerError::Conflict(format!(
                "build {} #{} has not ended ({}); cancel it first",
                build.project, build.number, build.status
            )));
        }
        let nodes = db::build_nodes(&mut tx, &build.id).await?;
        let mut again: Vec<&str> = Vec::new();
        for n in &nodes {
            if matches!(
                n.status,
                NodeStatus::Failed | NodeStatus::Skipped | NodeStatus::Cancelled
            ) && !again.contains(&n.pipeline.as_str())
            {
                again.push(&n.pipeline);
            }
        }
        if again.is_empty() {
            return Err(ControllerError::Conflict(format!(
                "build {} #{} succeeded: there is nothing to re-run",
                build.project, build.number
            )));
        }
        for pipeline in &again {
            db::reset_pipeline(&mut tx, &build.id, pipeline, false).await?;
        }
        db::lock_project_counter(store, &mut tx, &build.project).await?;
        let (running, waiting) = db::admission_counts(&mut tx, &build.project).await?;
        let admitted = waiting == 0 && running < build.concurrency;
        let now = now_ms();
        db::restart_build(&mut tx, &build.id, admitted).await?;
        db::recount_waiting(&mut tx, &build.id, !admitted, now).await?;
        let after = db::get_build(&mut tx, id)
            .await?
            .ok_or_else(|| ControllerError::Internal("the retried build vanished".into()))?;
        audit::record(
            &mut tx,
            actor,
            AuditAction::BuildRetry,
            Some(&after.project),
            &after.id,
            serde_json::json!({"number": after.number, "run": after.run, "pipelines": again}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(build_id = %after.id, run = after.run, pipelines = ?again, "build retried");
        Ok((
            after,
            Effects {
                work: admitted,
                builds: vec![id.to_string()],
                ..Effects::default()
            },
        ))
    })
    .await?;
    core.build_infos.restarted(&build.id);
    effects.publish(core);
    Ok(build.summary())
}

/// `GET /builds/{id}`: the build, every node, and why queued ones wait.
pub async fn view(core: &Core, build: BuildRow) -> Result<BuildView> {
    let mut conn = core.store.conn().await?;
    let nodes = db::build_nodes(&mut conn, &build.id).await?;
    let since = now_ms() - core.config.work.worker_timeout.as_millis() as i64;
    let (workers, others): (Vec<_>, Vec<_>) = wdb::workers(&mut conn, Some(since))
        .await?
        .into_iter()
        .partition(|w| crate::work::workers::takes_work(core, w));
    // A draining, dead or departed worker will not take the node; a
    // draining one is still named, as it is still there.
    let draining: Vec<String> = others
        .into_iter()
        .filter(|w| w.state == WorkerState::Draining)
        .map(|w| w.name)
        .collect();
    let ahead = if build.status == BuildStatus::Queued && !build.admitted {
        db::admitted_numbers(&mut conn, &build.project).await?
    } else {
        vec![]
    };
    let by_id: HashMap<&str, &NodeRow> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let views: Vec<_> = nodes
        .iter()
        .map(|n| {
            let why = (n.status == NodeStatus::Queued)
                .then(|| waiting_for(&build, n, &by_id, &workers, &draining, &ahead));
            let mut view = n.view(why);
            started_again(&mut view.lost_attempts, n, &nodes);
            view
        })
        .collect();
    // A build that has not ended and runs nothing says why, as a whole.
    let idle = !build.status.is_finished() && views.iter().all(|n| n.status != NodeStatus::Running);
    let waiting_for = if idle {
        views
            .iter()
            .filter(|n| n.status == NodeStatus::Queued)
            .filter_map(|n| n.waiting_for.clone())
            .find(|w| !w.starts_with("waiting for the action"))
    } else {
        None
    };
    Ok(BuildView {
        build: build.summary(),
        waiting_for,
        nodes: views,
        mail_configured: core.config.mail.is_some(),
    })
}

/// Fills in where each lost attempt of `node` started again: the worker
/// of the next lost attempt, else the first worker to take an action of
/// its pipeline after the loss.
fn started_again(lost: &mut [LostAttempt], node: &NodeRow, nodes: &[NodeRow]) {
    let later: Vec<Option<String>> = lost
        .iter()
        .skip(1)
        .map(|l| Some(l.worker.clone()))
        .collect();
    let after_last = lost.last().and_then(|last| {
        let since = last.at.timestamp_millis();
        nodes
            .iter()
            .filter(|n| n.pipeline == node.pipeline && n.worker.is_some())
            .filter(|n| n.started_at.is_some_and(|t| t >= since))
            .min_by_key(|n| n.started_at)
            .and_then(|n| n.worker.clone())
    });
    for (l, again) in lost.iter_mut().zip(later.into_iter().chain([after_last])) {
        l.again_on = again;
    }
}

/// Why a queued node has not started.
fn waiting_for(
    build: &BuildRow,
    node: &NodeRow,
    by_id: &HashMap<&str, &NodeRow>,
    workers: &[WorkerRow],
    draining: &[String],
    ahead: &[i64],
) -> String {
    if node.held {
        let numbers: Vec<String> = ahead.iter().map(|n| format!("#{n}")).collect();
        return format!(
            "the project's concurrency limit: {} build{} of {} may run at once, and {} {} running",
            build.concurrency,
            if build.concurrency == 1 { "" } else { "s" },
            build.project,
            if numbers.is_empty() {
                "an earlier one".to_string()
            } else {
                numbers.join(", ")
            },
            if numbers.len() > 1 { "are" } else { "is" },
        );
    }
    if node.waiting > 0 {
        let deps: Vec<String> = node
            .deps
            .iter()
            .filter_map(|d| by_id.get(d.as_str()))
            .filter(|d| d.status != NodeStatus::Succeeded)
            .map(|d| format!("{} action {} ({})", d.pipeline, d.index + 1, d.status))
            .collect();
        return format!(
            "waiting for the action{} it needs: {}",
            if deps.len() == 1 { "" } else { "s" },
            deps.join(", ")
        );
    }
    if let Some(pinned) = &node.affinity {
        return if workers.iter().any(|w| &w.name == pinned) {
            format!(
                "waiting for a free slot on worker {pinned}, which holds the pipeline's workspace"
            )
        } else {
            format!(
                "waiting for worker {pinned}, which holds the pipeline's workspace and is not connected"
            )
        };
    }
    if workers.is_empty() {
        return match draining {
            [] => "no worker is connected".to_string(),
            [one] => format!("no worker takes work: {one} is draining"),
            many => format!("no worker takes work: {} are draining", many.join(", ")),
        };
    }
    let labelled: Vec<&WorkerRow> = workers
        .iter()
        .filter(|w| node.labels.iter().all(|l| w.labels.contains(l)))
        .collect();
    if labelled.is_empty() {
        return format!(
            "no connected worker has the labels {}",
            node.labels.join(", ")
        );
    }
    let able = labelled
        .iter()
        .filter(|w| w.kinds.contains(&node.kind))
        .count();
    if able == 0 {
        return if node.labels.is_empty() {
            format!("no connected worker runs actions of kind {}", node.kind)
        } else {
            format!(
                "no connected worker with the labels {} runs actions of kind {}",
                node.labels.join(", "),
                node.kind
            )
        };
    }
    format!(
        "waiting for a free slot: {able} connected worker{} can run it, all busy",
        if able == 1 { "" } else { "s" }
    )
}

/// `GET /builds`: of the projects in `readable` (the route checked a
/// `project=` it names).
pub async fn list(core: &Core, query: &BuildQuery, readable: &Readable) -> Result<BuildList> {
    let page = Page::<BuildStatus>::parse(
        query.status.as_deref(),
        query.before.as_deref(),
        query.limit,
    )?;
    if let Some(p) = &query.project {
        crate::definitions::check_name("project", p)?;
    }
    let mut conn = core.store.conn().await?;
    let rows = db::list_builds(
        &mut conn,
        query.project.as_deref(),
        readable,
        &page.statuses,
        page.before,
        page.limit + 1,
    )
    .await?;
    // A project that never was must not read as one without builds; a
    // deleted project's builds are still listed.
    if let Some(project) = &query.project
        && rows.is_empty()
        && defs::get(&mut conn, DefinitionKind::Project, project)
            .await?
            .is_none()
    {
        return Err(ControllerError::NotFound(format!("no project {project:?}")));
    }
    let (rows, next) = page.cut(rows, |b| b.seq);
    Ok(BuildList {
        next,
        builds: rows.iter().map(BuildRow::summary).collect(),
    })
}

/// A build by id, or 404.
pub async fn get(core: &Core, id: &str) -> Result<BuildRow> {
    let mut conn = core.store.conn().await?;
    db::get_build(&mut conn, id)
        .await?
        .ok_or_else(|| ControllerError::NotFound(format!("no build {id:?}")))
}

/// A build by project and number, or 404.
pub async fn get_by_number(core: &Core, project: &str, number: i64) -> Result<BuildRow> {
    let mut conn = core.store.conn().await?;
    db::get_build_by_number(&mut conn, project, number)
        .await?
        .ok_or_else(|| ControllerError::NotFound(format!("no build {project} #{number}")))
}
