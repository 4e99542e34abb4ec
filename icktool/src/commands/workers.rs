//! `icktool workers`.

use ick_api::work::WorkerInfo;

use crate::Exit;
use crate::connection::{Ick, Service};
use crate::output::{Out, ago};

pub async fn run(ick: &Ick, out: &Out) -> anyhow::Result<Exit> {
    let workers: Vec<WorkerInfo> = ick.get(Service::Controller, "/workers").await?;
    let rows = workers
        .iter()
        .map(|w| {
            let seen = chrono::DateTime::parse_from_rfc3339(&w.last_seen)
                .map(|t| ago(t.with_timezone(&chrono::Utc)))
                .unwrap_or_else(|_| w.last_seen.clone());
            vec![
                w.name.clone(),
                format!("{}/{}", w.running.len(), w.slots),
                w.labels.join(", "),
                w.kinds.join(", "),
                seen,
            ]
        })
        .collect();
    out.list(
        &workers,
        &["name", "busy", "labels", "kinds", "last seen"],
        rows,
        "no workers have connected",
    )?;
    Ok(Exit::Ok)
}
