//! `icktool analytics PROJECT [--since DATE] [--until DATE] [--pipeline P]
//! [--json]`: how a project's delivery went, as `GET /analytics` says.

use ick_api::controller::{Analytics, AnalyticsQuery, Percentiles};

use crate::Exit;
use crate::connection::{Ick, Service};
use crate::output::{Format, Out, table};

#[derive(clap::Args)]
pub struct AnalyticsArgs {
    /// The project.
    project: String,
    /// From this time on: RFC 3339 or a date (YYYY-MM-DD) [default: 30
    /// days before --until].
    #[arg(long)]
    since: Option<String>,
    /// Up to this time: RFC 3339, or a date (YYYY-MM-DD, that day
    /// included) [default: now].
    #[arg(long)]
    until: Option<String>,
    /// Only builds that ran this pipeline, and only its actions.
    #[arg(long, short = 'p')]
    pipeline: Option<String>,
    /// Print the API's JSON (as --output json).
    #[arg(long)]
    json: bool,
}

pub async fn run(ick: &Ick, args: AnalyticsArgs, out: &Out) -> anyhow::Result<Exit> {
    let query = AnalyticsQuery {
        project: Some(args.project),
        pipeline: args.pipeline,
        since: args.since,
        until: args.until,
    };
    let analytics: Analytics = ick
        .get_query(Service::Controller, "/analytics", &query)
        .await?;
    let out = if args.json {
        Out::new(Format::Json)
    } else {
        *out
    };
    out.print(&analytics, || summary(&analytics))?;
    Ok(Exit::Ok)
}

/// `1.2s`, `340ms`, `4m05s`.
fn ms(value: f64) -> String {
    if value < 1000.0 {
        format!("{value:.0}ms")
    } else if value < 60_000.0 {
        format!("{:.1}s", value / 1000.0)
    } else {
        crate::output::duration((value / 1000.0).round() as i64)
    }
}

fn spread(p: Option<&Percentiles>) -> String {
    match p {
        Some(p) => format!(
            "p50 {}, p90 {} ({} builds)",
            ms(p.p50_ms),
            ms(p.p90_ms),
            p.count
        ),
        None => "-".to_string(),
    }
}

/// What people read.
fn summary(a: &Analytics) -> String {
    let mut text = String::new();
    let mut line = |s: String| {
        text.push_str(&s);
        text.push('\n');
    };
    let what = match (&a.project, &a.pipeline) {
        (Some(p), Some(pl)) => format!("{p} (pipeline {pl})"),
        (Some(p), None) => p.clone(),
        (None, _) => "every project".to_string(),
    };
    line(format!(
        "{what}: builds triggered {} to {}",
        a.since.format("%Y-%m-%d %H:%M"),
        a.until.format("%Y-%m-%d %H:%M")
    ));
    let b = &a.builds;
    line(format!(
        "builds:        {} ({} succeeded, {} failed, {} cancelled, {} unfinished)",
        b.total, b.succeeded, b.failed, b.cancelled, b.unfinished
    ));
    line(format!(
        "success rate:  {}",
        a.success_rate
            .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
    ));
    line(format!("duration:      {}", spread(a.duration.as_ref())));
    if let Some(t) = a.duration_trend_ms_per_day {
        line(format!(
            "trend:         {}{} a day",
            if t < 0.0 { "-" } else { "+" },
            ms(t.abs())
        ));
    }
    line(format!("queue time:    {}", spread(a.queue_time.as_ref())));
    line(format!(
        "recovery:      {}",
        match &a.recovery {
            Some(r) => format!(
                "p50 {}, mean {} ({} recovered, {} still failing)",
                r.p50_ms.map_or("-".to_string(), ms),
                r.mean_ms.map_or("-".to_string(), ms),
                r.recoveries,
                r.unrecovered
            ),
            None => "no failures".to_string(),
        }
    ));
    line(format!(
        "lead time:     {}",
        match &a.lead_time {
            Some(l) => format!(
                "p50 {}, mean {} ({} builds)",
                ms(l.p50_ms),
                ms(l.mean_ms),
                l.builds
            ),
            None => format!("unknown: {}", a.lead_time_unknown.as_deref().unwrap_or("-")),
        }
    ));
    if !a.slowest_pipelines.is_empty() {
        line(String::new());
        line("slowest pipelines".to_string());
        let rows = a
            .slowest_pipelines
            .iter()
            .map(|p| vec![p.pipeline.clone(), ms(p.mean_ms), p.runs.to_string()])
            .collect();
        text.push_str(&table(&["pipeline", "mean", "runs"], rows));
    }
    if !a.slowest_actions.is_empty() {
        text.push_str("\nslowest actions\n");
        let rows = a
            .slowest_actions
            .iter()
            .map(|x| {
                vec![
                    format!("{}/{}", x.pipeline, x.action),
                    x.description.clone().unwrap_or_default(),
                    ms(x.mean_ms),
                    ms(x.max_ms),
                    x.runs.to_string(),
                ]
            })
            .collect();
        text.push_str(&table(&["action", "does", "mean", "max", "runs"], rows));
    }
    text.push_str("\nflaky actions\n");
    if a.flaky_actions.is_empty() {
        text.push_str("none: no action both passed and failed with the same inputs\n");
    } else {
        let rows = a
            .flaky_actions
            .iter()
            .map(|f| {
                vec![
                    format!("{}/{}", f.pipeline, f.action),
                    f.description.clone().unwrap_or_default(),
                    f.passed.to_string(),
                    f.failed.to_string(),
                    f.inputs.to_string(),
                ]
            })
            .collect();
        text.push_str(&table(
            &["action", "does", "passed", "failed", "inputs"],
            rows,
        ));
    }
    if !a.days.is_empty() {
        text.push_str("\nper day\n");
        let rows = a
            .days
            .iter()
            .map(|d| {
                vec![
                    d.date.to_string(),
                    d.builds.succeeded.to_string(),
                    d.builds.failed.to_string(),
                    d.builds.cancelled.to_string(),
                    d.builds.unfinished.to_string(),
                    d.duration_mean_ms.map_or("-".to_string(), ms),
                ]
            })
            .collect();
        text.push_str(&table(
            &[
                "day",
                "succeeded",
                "failed",
                "cancelled",
                "unfinished",
                "mean",
            ],
            rows,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::ms;

    #[test]
    fn times_read_at_a_glance() {
        assert_eq!(ms(340.4), "340ms");
        assert_eq!(ms(1250.0), "1.2s");
        assert_eq!(ms(245_000.0), "4m05s");
    }
}
