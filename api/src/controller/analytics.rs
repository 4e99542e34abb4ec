//! `GET /analytics`: how delivery went over a span of time, computed from
//! the build history. Times are milliseconds; days are UTC.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// `GET /analytics?project=&pipeline=&since=&until=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsQuery {
    /// Only this project's builds; without it, every project the caller
    /// may read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only builds that ran this pipeline, and only its actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Builds triggered at or after this: RFC 3339, or a date
    /// (`YYYY-MM-DD`, its start). Default: 30 days before `until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Builds triggered before this: RFC 3339, or a date (`YYYY-MM-DD`,
    /// its end). Default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// The analytics of the builds triggered in `[since, until)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analytics {
    /// The project asked for; none for every readable project.
    pub project: Option<String>,
    /// The pipeline asked for.
    pub pipeline: Option<String>,
    /// The start of the span (included).
    pub since: DateTime<Utc>,
    /// The end of the span (excluded).
    pub until: DateTime<Utc>,
    /// The builds of the span, by outcome.
    pub builds: Outcomes,
    /// Succeeded builds of those that succeeded or failed (0 to 1);
    /// cancelled ones say nothing of the code. None without any.
    pub success_rate: Option<f64>,
    /// Each day (UTC) with builds, oldest first.
    pub days: Vec<Day>,
    /// How long succeeded and failed builds ran: first action handed out
    /// to the end.
    pub duration: Option<Percentiles>,
    /// How the days' mean duration moved: the least-squares slope of
    /// `days[].duration_mean_ms`, in ms per day (positive: slower). None
    /// with fewer than two such days.
    pub duration_trend_ms_per_day: Option<f64>,
    /// How long builds waited: trigger to their first action handed out.
    pub queue_time: Option<Percentiles>,
    /// Pipelines by the mean time their actions ran per build, slowest
    /// first (at most 10).
    pub slowest_pipelines: Vec<SlowPipeline>,
    /// Actions by their mean run time, slowest first (at most 10).
    pub slowest_actions: Vec<SlowAction>,
    /// Actions that both succeeded and failed with the same inputs: the
    /// same project, pipeline, position, action definition and build
    /// parameters (the commit among them). Most failures first.
    pub flaky_actions: Vec<FlakyAction>,
    /// From the first failed build of a run of failures to the next
    /// succeeded build of the same project.
    pub recovery: Option<Recovery>,
    /// From a commit's time to a succeeded build of it; none when no
    /// build of the span says when its commit was made (`lead_time_unknown`
    /// says why).
    pub lead_time: Option<LeadTime>,
    /// Why `lead_time` is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_time_unknown: Option<String>,
}

/// Builds by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    /// All of them.
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Queued or running still.
    pub unfinished: u64,
}

/// One day's builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// The day (UTC) they were triggered.
    pub date: NaiveDate,
    /// Its builds by outcome.
    #[serde(flatten)]
    pub builds: Outcomes,
    /// The mean duration of its succeeded and failed builds.
    pub duration_mean_ms: Option<f64>,
}

/// The median and the 90th percentile (interpolated, as Postgres's
/// `percentile_cont`), of `count` values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
}

/// A pipeline and how long its actions ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowPipeline {
    pub pipeline: String,
    /// Builds in which its first action ran.
    pub runs: u64,
    /// Its actions' run time per build, summed.
    pub mean_ms: f64,
}

/// An action and how long it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowAction {
    pub pipeline: String,
    /// Its place in the pipeline, from 1 (as `PIPELINE/N` in icktool).
    pub action: u32,
    /// What it does (its latest definition in the span).
    pub description: Option<String>,
    /// Times it ran to an end (succeeded or failed).
    pub runs: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

/// An action that passed and failed with the same inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlakyAction {
    pub pipeline: String,
    /// Its place in the pipeline, from 1.
    pub action: u32,
    pub description: Option<String>,
    /// Sets of inputs with which it did both.
    pub inputs: u64,
    /// Times it succeeded with those inputs.
    pub passed: u64,
    /// Times it failed with those inputs.
    pub failed: u64,
}

/// Time to recovery.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// Runs of failures that a success ended.
    pub recoveries: u64,
    /// Runs of failures not (yet) ended by a success in the span.
    pub unrecovered: u64,
    pub p50_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

/// Lead time: commit to a succeeded build.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeadTime {
    /// Succeeded builds whose commit time is known.
    pub builds: u64,
    pub p50_ms: f64,
    pub mean_ms: f64,
}

/// The build parameter that says when the commit built was made (RFC
/// 3339); web hooks record the commit (`git_commit`) but not its time.
pub const COMMIT_TIME_PARAMETER: &str = "git_commit_time";
