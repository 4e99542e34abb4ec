//! Delivery analytics (`GET /analytics`): how often builds pass, how long
//! they take and wait, where the time goes, which actions are flaky, how
//! long a failure lasts and how long a commit takes to a passing build.
//! The numbers come from `store::analytics`; here the request is read and
//! the answer put together.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveTime};
use ick_api::actions::Action;
use ick_api::controller::{
    Analytics, AnalyticsQuery, COMMIT_TIME_PARAMETER, Day, FlakyAction, LeadTime, Outcomes,
    Percentiles, Recovery, SlowAction, SlowPipeline,
};

use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::analytics::{self as db, DAY_MS, Projects, Span, Spread};
use crate::store::{from_json, now_ms, time};

/// The default span: the last 30 days.
const DEFAULT_DAYS: i64 = 30;
/// How many of the slowest pipelines and actions, and of flaky actions.
const TOP: usize = 10;

/// A time of the query: RFC 3339, or a date (its start; with `end`, the
/// start of the next day, so that `until=DATE` includes that day).
fn parse_time(name: &str, text: &str, end: bool) -> Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = date.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
        return Ok(if end { start + DAY_MS } else { start });
    }
    Err(ControllerError::BadRequest(format!(
        "{name}={text:?} is neither an RFC 3339 time (2026-12-01T09:00:00Z) nor a date \
         (2026-12-01)"
    )))
}

/// The span a query asks for: `[since, until)`, by default the 30 days
/// before now.
pub fn span_of(query: &AnalyticsQuery, now: i64) -> Result<(i64, i64)> {
    let until = match query.until.as_deref() {
        Some(t) if !t.is_empty() => parse_time("until", t, true)?,
        _ => now,
    };
    let since = match query.since.as_deref() {
        Some(t) if !t.is_empty() => parse_time("since", t, false)?,
        _ => until - DEFAULT_DAYS * DAY_MS,
    };
    // An until date's end is the next day's start: since=D&until=D-1
    // meet, and an empty span asks for nothing.
    if since >= until {
        return Err(ControllerError::BadRequest(format!(
            "since ({}) is not before until ({}): the span would be empty",
            time(since).to_rfc3339(),
            time(until).to_rfc3339()
        )));
    }
    Ok((since, until))
}

/// The analytics of `projects` (the route decided the caller may read
/// them) over the query's span.
pub async fn analytics(
    core: &Core,
    query: &AnalyticsQuery,
    projects: Projects,
) -> Result<Analytics> {
    let (since, until) = span_of(query, now_ms())?;
    if let Some(p) = query.pipeline.as_deref() {
        crate::definitions::check_name("pipeline", p)?;
    }
    let span = Span {
        projects,
        since,
        until,
        pipeline: query.pipeline.clone().filter(|p| !p.is_empty()),
    };
    let pool = core.store.pool();
    let dialect = core.store.dialect();
    let (stats, actions, flaky, failures, commits) = futures::try_join!(
        db::build_stats(dialect, pool, &span),
        db::action_times(pool, &span),
        db::flaky(pool, &span, TOP as i64),
        db::failure_runs(pool, &span),
        db::succeeded_with(pool, &span, COMMIT_TIME_PARAMETER),
    )?;

    let mut builds = Outcomes::default();
    let days: Vec<Day> = stats
        .days
        .iter()
        .map(|d| {
            builds.total += d.builds.total;
            builds.succeeded += d.builds.succeeded;
            builds.failed += d.builds.failed;
            builds.cancelled += d.builds.cancelled;
            builds.unfinished += d.builds.unfinished;
            Day {
                date: time(d.day * DAY_MS).date_naive(),
                builds: d.builds,
                duration_mean_ms: d.duration_mean,
            }
        })
        .collect();
    let decided = builds.succeeded + builds.failed;
    let success_rate = (decided > 0).then(|| builds.succeeded as f64 / decided as f64);
    let trend = slope(
        stats
            .days
            .iter()
            .filter_map(|d| d.duration_mean.map(|m| (d.day as f64, m))),
    );

    // What each action named does, looked up at once (each on its own
    // connection), once per action.
    let slowest = slowest(&actions);
    let mut named: Vec<(&str, i64)> = slowest
        .iter()
        .map(|a| (a.pipeline.as_str(), a.idx))
        .chain(flaky.iter().map(|f| (f.pipeline.as_str(), f.idx)))
        .collect();
    named.sort();
    named.dedup();
    let descriptions: HashMap<(&str, i64), Option<String>> = named
        .iter()
        .copied()
        .zip(
            futures::future::try_join_all(
                named
                    .iter()
                    .map(|&(pipeline, idx)| describe(pool, &span, pipeline, idx)),
            )
            .await?,
        )
        .collect();
    let description =
        |pipeline: &str, idx: i64| descriptions.get(&(pipeline, idx)).cloned().flatten();
    let slowest_actions = slowest
        .iter()
        .map(|a| SlowAction {
            pipeline: a.pipeline.clone(),
            action: a.idx as u32 + 1,
            description: description(&a.pipeline, a.idx),
            runs: a.runs,
            mean_ms: a.total_ms as f64 / a.runs as f64,
            max_ms: a.max_ms as f64,
        })
        .collect();
    let flaky_actions = flaky
        .iter()
        .map(|f| FlakyAction {
            pipeline: f.pipeline.clone(),
            action: f.idx as u32 + 1,
            description: description(&f.pipeline, f.idx),
            inputs: f.inputs,
            passed: f.passed,
            failed: f.failed,
        })
        .collect();

    let (lead_time, lead_time_unknown) = lead_time(&commits);
    Ok(Analytics {
        project: match &span.projects {
            Projects::One(name) => Some(name.clone()),
            Projects::Readable(_) => None,
        },
        pipeline: span.pipeline.clone(),
        since: time(since),
        until: time(until),
        builds,
        success_rate,
        days,
        duration: percentiles(stats.duration),
        duration_trend_ms_per_day: trend,
        queue_time: percentiles(stats.queue),
        slowest_pipelines: slowest_pipelines(&actions),
        slowest_actions,
        flaky_actions,
        recovery: recovery(&failures),
        lead_time,
        lead_time_unknown,
    })
}

/// What the action at `idx` of `pipeline` does, by its latest definition
/// in the span.
async fn describe(
    pool: &sqlx::AnyPool,
    span: &Span,
    pipeline: &str,
    idx: i64,
) -> Result<Option<String>> {
    Ok(
        match db::action_definition(pool, span, pipeline, idx).await? {
            Some(json) => Some(from_json::<Action>(&json)?.describe()),
            None => None,
        },
    )
}

fn percentiles(s: Spread) -> Option<Percentiles> {
    Some(Percentiles {
        count: s.count,
        p50_ms: s.p50?,
        p90_ms: s.p90?,
    })
}

/// The least-squares slope of `points`; none with fewer than two xs.
fn slope(points: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let points: Vec<(f64, f64)> = points.collect();
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

/// The actions of the longest mean run time, slowest first.
fn slowest(actions: &[db::ActionTimes]) -> Vec<&db::ActionTimes> {
    let mean = |a: &db::ActionTimes| a.total_ms as f64 / a.runs.max(1) as f64;
    let mut sorted: Vec<&db::ActionTimes> = actions.iter().filter(|a| a.runs > 0).collect();
    sorted.sort_by(|a, b| {
        mean(b)
            .total_cmp(&mean(a))
            .then_with(|| (&a.pipeline, a.idx).cmp(&(&b.pipeline, b.idx)))
    });
    sorted.truncate(TOP);
    sorted
}

/// Pipelines by their actions' run time per build (the builds in which
/// their first action ran), slowest first.
fn slowest_pipelines(actions: &[db::ActionTimes]) -> Vec<SlowPipeline> {
    let mut by_pipeline: std::collections::BTreeMap<&str, (u64, i64)> = Default::default();
    for a in actions {
        let entry = by_pipeline.entry(&a.pipeline).or_default();
        if a.idx == 0 {
            entry.0 = a.runs;
        }
        entry.1 += a.total_ms;
    }
    let mut pipelines: Vec<SlowPipeline> = by_pipeline
        .into_iter()
        .filter(|(_, (runs, _))| *runs > 0)
        .map(|(name, (runs, total))| SlowPipeline {
            pipeline: name.to_string(),
            runs,
            mean_ms: total as f64 / runs as f64,
        })
        .collect();
    pipelines.sort_by(|a, b| {
        b.mean_ms
            .total_cmp(&a.mean_ms)
            .then_with(|| a.pipeline.cmp(&b.pipeline))
    });
    pipelines.truncate(TOP);
    pipelines
}

/// Time to recovery of the runs of failures; none without any.
fn recovery(runs: &[db::FailureRun]) -> Option<Recovery> {
    if runs.is_empty() {
        return None;
    }
    let mut times: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.fixed_at.map(|fixed| (fixed - r.failed_at).max(0) as f64))
        .collect();
    let mean = (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64);
    Some(Recovery {
        recoveries: times.len() as u64,
        unrecovered: (runs.len() - times.len()) as u64,
        p50_ms: db::percentile(&mut times, 0.5),
        mean_ms: mean,
    })
}

/// Lead time from the succeeded builds whose parameters give their
/// commit's time; else none, and why.
fn lead_time(builds: &[(String, i64)]) -> (Option<LeadTime>, Option<String>) {
    let mut times: Vec<f64> = builds
        .iter()
        .filter_map(|(parameters, ended)| {
            let parameters: serde_json::Value = serde_json::from_str(parameters).ok()?;
            let at = parameters.get(COMMIT_TIME_PARAMETER)?.as_str()?;
            let at = DateTime::parse_from_rfc3339(at).ok()?.timestamp_millis();
            (*ended >= at).then(|| (*ended - at) as f64)
        })
        .collect();
    if times.is_empty() {
        return (
            None,
            Some(format!(
                "no succeeded build of the span says when its commit was made: web hooks record \
                 the commit (git_commit) but not its time; a trigger that sets the parameter \
                 {COMMIT_TIME_PARAMETER} (RFC 3339) gives it"
            )),
        );
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let p50 = db::percentile(&mut times, 0.5).unwrap_or(mean);
    (
        Some(LeadTime {
            builds: times.len() as u64,
            p50_ms: p50,
            mean_ms: mean,
        }),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_849_600_000; // 2025-12-04T12:00:00Z

    fn query(since: Option<&str>, until: Option<&str>) -> AnalyticsQuery {
        AnalyticsQuery {
            since: since.map(str::to_string),
            until: until.map(str::to_string),
            ..AnalyticsQuery::default()
        }
    }

    #[test]
    fn the_span_is_the_last_30_days_by_default() {
        assert_eq!(
            span_of(&query(None, None), NOW).ok(),
            Some((NOW - 30 * DAY_MS, NOW))
        );
    }

    #[test]
    fn dates_cover_whole_days_and_times_are_rfc_3339() {
        let (since, until) =
            span_of(&query(Some("2025-12-01"), Some("2025-12-01")), NOW).expect("a span");
        assert_eq!(time(since).to_rfc3339(), "2025-12-01T00:00:00+00:00");
        assert_eq!(until - since, DAY_MS);
        let (since, _) =
            span_of(&query(Some("2025-12-01T09:30:00+01:00"), None), NOW).expect("a span");
        assert_eq!(time(since).to_rfc3339(), "2025-12-01T08:30:00+00:00");
    }

    #[test]
    fn bad_times_and_a_backward_span_are_refused() {
        for (since, until) in [
            (Some("yesterday"), None),
            (None, Some("2025-13-01")),
            (Some("2025-12-02"), Some("2025-12-01")),
        ] {
            assert!(
                matches!(
                    span_of(&query(since, until), NOW),
                    Err(ControllerError::BadRequest(_))
                ),
                "{since:?} {until:?}"
            );
        }
    }

    #[test]
    fn a_trend_is_the_slope_of_the_daily_means() {
        assert_eq!(
            slope([(1.0, 10.0), (2.0, 30.0), (3.0, 50.0)].into_iter()),
            Some(20.0)
        );
        assert_eq!(slope([(1.0, 10.0)].into_iter()), None);
    }

    #[test]
    fn recovery_pairs_each_run_of_failures_with_its_fix() {
        let runs = [
            db::FailureRun {
                failed_at: 100,
                fixed_at: Some(400),
            },
            db::FailureRun {
                failed_at: 1000,
                fixed_at: Some(1100),
            },
            db::FailureRun {
                failed_at: 2000,
                fixed_at: None,
            },
        ];
        let r = recovery(&runs).expect("some");
        assert_eq!((r.recoveries, r.unrecovered), (2, 1));
        assert_eq!(r.p50_ms, Some(200.0));
        assert_eq!(r.mean_ms, Some(200.0));
    }

    #[test]
    fn lead_time_needs_a_commit_time() {
        let (none, why) = lead_time(&[(r#"{"git_commit":"abc"}"#.into(), NOW)]);
        assert!(none.is_none() && why.is_some_and(|w| w.contains("git_commit_time")));
        let (some, _) = lead_time(&[(r#"{"git_commit_time":"2025-12-04T11:00:00Z"}"#.into(), NOW)]);
        assert_eq!(some.map(|l| l.p50_ms), Some(3_600_000.0));
    }
}
