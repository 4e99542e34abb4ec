//! `icktool workers`.

use ick_api::work::{WorkerInfo, WorkersQuery};

use crate::Exit;
use crate::connection::{Ick, Service};
use crate::output::{Out, ago};

#[derive(clap::Args)]
pub struct WorkersArgs {
    /// Also the workers gone for more than an hour.
    #[arg(long)]
    all: bool,
}

pub async fn run(ick: &Ick, args: WorkersArgs, out: &Out) -> anyhow::Result<Exit> {
    let query = WorkersQuery { all: args.all };
    let workers: Vec<WorkerInfo> = ick
        .get_query(Service::Controller, "/workers", &query)
        .await?;
    let rows = workers
        .iter()
        .map(|w| {
            let seen = chrono::DateTime::parse_from_rfc3339(&w.last_seen)
                .map(|t| ago(t.with_timezone(&chrono::Utc)))
                .unwrap_or_else(|_| w.last_seen.clone());
            vec![
                w.name.clone(),
                w.state.as_str().to_string(),
                format!("{}/{}", w.running.len(), w.slots),
                w.labels.join(", "),
                w.kinds.join(", "),
                seen,
            ]
        })
        .collect();
    out.list(
        &workers,
        &["name", "state", "busy", "labels", "kinds", "last seen"],
        rows,
        "no workers have connected",
    )?;
    Ok(Exit::Ok)
}
