//! The queries of `GET /analytics`. Each reads one span of builds or of
//! nodes (nodes carry their build's project and trigger time), from the
//! indexes of migration 0006 alone where it can. Percentiles are
//! computed by Postgres (`percentile_cont`); SQLite has none, so its
//! builds' times are streamed (four integers a build) and computed the
//! same way here.
//!
//! The SQL is put together from constant fragments (which projects,
//! whether a pipeline is asked for); every value is bound.

use futures::TryStreamExt;
use ick_api::controller::Outcomes;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Dialect, project_list};
use crate::access::Readable;
use crate::error::Result;

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Which builds: of whose projects, which span, which pipeline.
#[derive(Debug, Clone)]
pub struct Span {
    pub projects: Projects,
    /// Triggered at or after (ms).
    pub since: i64,
    /// Triggered before (ms).
    pub until: i64,
    pub pipeline: Option<String>,
}

/// Whose builds.
#[derive(Debug, Clone)]
pub enum Projects {
    /// One project's.
    One(String),
    /// Of these (every project with `Readable::All`).
    Readable(Readable),
}

impl Span {
    /// `$1`: the projects.
    fn scope_sql(&self, t: &str) -> String {
        match &self.projects {
            Projects::One(_) => format!("{t}.project = $1"),
            Projects::Readable(Readable::All) => "$1 = ''".to_string(),
            Projects::Readable(Readable::Only(_)) => {
                format!("instr($1, ',' || {t}.project || ',') > 0")
            }
        }
    }

    fn scope_param(&self) -> String {
        match &self.projects {
            Projects::One(name) => name.clone(),
            Projects::Readable(Readable::All) => String::new(),
            Projects::Readable(Readable::Only(names)) => {
                project_list(names.iter().map(String::as_str))
            }
        }
    }

    fn pipeline_param(&self) -> String {
        self.pipeline.clone().unwrap_or_default()
    }

    /// The builds of the span, as `b` (binds `$1` to `$4`).
    fn builds_where(&self) -> String {
        let pipeline = if self.pipeline.is_some() {
            "EXISTS (SELECT 1 FROM nodes p WHERE p.build_id = b.id AND p.pipeline = $4)"
        } else {
            "$4 = ''"
        };
        format!(
            "{} AND b.created_at >= $2 AND b.created_at < $3 AND {pipeline}",
            self.scope_sql("b")
        )
    }

    /// The nodes of the span's builds, as `n` (binds `$1` to `$4`).
    fn nodes_where(&self) -> String {
        let pipeline = if self.pipeline.is_some() {
            "n.pipeline = $4"
        } else {
            "$4 = ''"
        };
        format!(
            "{} AND n.build_created_at >= $2 AND n.build_created_at < $3 AND {pipeline}",
            self.scope_sql("n")
        )
    }

    fn query<'q>(&self, sql: String) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.scope_param())
            .bind(self.since)
            .bind(self.until)
            .bind(self.pipeline_param())
    }
}

/// The builds of one day (days since the epoch, UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    pub day: i64,
    pub builds: Outcomes,
    pub duration_mean: Option<f64>,
}

/// Values' count, median and 90th percentile.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
}

/// What the builds of a span say: their days, durations and queue times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildStats {
    pub days: Vec<DayRow>,
    pub duration: Spread,
    pub queue: Spread,
}

fn count(row: &AnyRow, column: &str) -> Result<u64> {
    Ok(row.try_get::<i64, _>(column)?.max(0) as u64)
}

const OUTCOME_SUMS: &str = "COUNT(*) AS total, \
     CAST(SUM(CASE WHEN b.status = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT) AS succeeded, \
     CAST(SUM(CASE WHEN b.status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed, \
     CAST(SUM(CASE WHEN b.status = 'cancelled' THEN 1 ELSE 0 END) AS BIGINT) AS cancelled";

/// A build's duration, where it has one: succeeded or failed, started.
const DURATION: &str = "CASE WHEN b.status IN ('succeeded', 'failed') \
     THEN b.ended_at - b.started_at END";

/// Days, durations and queue times of the span's builds.
pub async fn build_stats(
    dialect: Dialect,
    pool: &sqlx::AnyPool,
    span: &Span,
) -> Result<BuildStats> {
    match dialect {
        Dialect::Postgres => postgres_build_stats(pool, span).await,
        Dialect::Sqlite => streamed_build_stats(pool, span).await,
    }
}

fn outcomes(row: &AnyRow) -> Result<Outcomes> {
    let total = count(row, "total")?;
    let succeeded = count(row, "succeeded")?;
    let failed = count(row, "failed")?;
    let cancelled = count(row, "cancelled")?;
    Ok(Outcomes {
        total,
        succeeded,
        failed,
        cancelled,
        unfinished: total.saturating_sub(succeeded + failed + cancelled),
    })
}

/// Postgres: the days (counted and averaged by hash, no sort), and the
/// span's percentiles, with the memory to sort 100,000 builds' times
/// without spilling.
async fn postgres_build_stats(pool: &sqlx::AnyPool, span: &Span) -> Result<BuildStats> {
    let days = format!(
        "SELECT b.created_at / {DAY_MS} AS day, {OUTCOME_SUMS}, \
           CAST(AVG({DURATION}) AS DOUBLE PRECISION) AS mean \
         FROM builds b WHERE {} GROUP BY b.created_at / {DAY_MS}",
        span.builds_where()
    );
    let whole = format!(
        "SELECT COUNT({DURATION}) AS dn, \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY {DURATION}) AS d50, \
           percentile_cont(0.9) WITHIN GROUP (ORDER BY {DURATION}) AS d90, \
           COUNT(b.started_at) AS qn, \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY b.started_at - b.created_at) AS q50, \
           percentile_cont(0.9) WITHIN GROUP (ORDER BY b.started_at - b.created_at) AS q90 \
         FROM builds b WHERE {}",
        span.builds_where()
    );
    let days = async {
        let rows = span.query(days).fetch_all(pool).await?;
        let mut days = rows
            .iter()
            .map(|row| {
                Ok(DayRow {
                    day: row.try_get("day")?,
                    builds: outcomes(row)?,
                    duration_mean: row.try_get("mean")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        days.sort_by_key(|d| d.day);
        Ok::<_, crate::error::ControllerError>(days)
    };
    let whole = async {
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await?;
        let row = span.query(whole).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok::<_, crate::error::ControllerError>((
            Spread {
                count: count(&row, "dn")?,
                p50: row.try_get("d50")?,
                p90: row.try_get("d90")?,
            },
            Spread {
                count: count(&row, "qn")?,
                p50: row.try_get("q50")?,
                p90: row.try_get("q90")?,
            },
        ))
    };
    let (days, (duration, queue)) = futures::try_join!(days, whole)?;
    Ok(BuildStats {
        days,
        duration,
        queue,
    })
}

/// SQLite: the same from the builds' times, streamed.
async fn streamed_build_stats(pool: &sqlx::AnyPool, span: &Span) -> Result<BuildStats> {
    let sql = format!(
        "SELECT b.created_at, b.status, b.started_at, b.ended_at FROM builds b WHERE {} \
         ORDER BY b.created_at",
        span.builds_where()
    );
    let mut days: Vec<(DayRow, Vec<f64>)> = Vec::new();
    let mut durations = Vec::new();
    let mut queues = Vec::new();
    let mut rows = span.query(sql).fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let created: i64 = row.try_get("created_at")?;
        let status: &str = row.try_get("status")?;
        let started: Option<i64> = row.try_get("started_at")?;
        let ended: Option<i64> = row.try_get("ended_at")?;
        let day = created.div_euclid(DAY_MS);
        if days.last().is_none_or(|(d, _)| d.day != day) {
            days.push((
                DayRow {
                    day,
                    builds: Outcomes::default(),
                    duration_mean: None,
                },
                Vec::new(),
            ));
        }
        let Some((today, today_durations)) = days.last_mut() else {
            continue;
        };
        let b = &mut today.builds;
        b.total += 1;
        match status {
            "succeeded" => b.succeeded += 1,
            "failed" => b.failed += 1,
            "cancelled" => b.cancelled += 1,
            _ => b.unfinished += 1,
        }
        if let (Some(s), Some(e), "succeeded" | "failed") = (started, ended, status) {
            today_durations.push((e - s) as f64);
            durations.push((e - s) as f64);
        }
        if let Some(s) = started {
            queues.push((s - created) as f64);
        }
    }
    Ok(BuildStats {
        days: days
            .into_iter()
            .map(|(mut day, d)| {
                day.duration_mean = (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64);
                day
            })
            .collect(),
        duration: spread(&mut durations),
        queue: spread(&mut queues),
    })
}

/// The count, median and 90th percentile of `values`.
pub fn spread(values: &mut [f64]) -> Spread {
    Spread {
        count: values.len() as u64,
        p50: percentile(values, 0.5),
        p90: percentile(values, 0.9),
    }
}

/// The `p` percentile of `values`, interpolated between the two nearest
/// as Postgres's `percentile_cont` does; none of no values.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = p.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    Some(values[lo] + (values[hi] - values[lo]) * (at - lo as f64))
}

/// How long the actions at one place of a pipeline ran.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionTimes {
    pub pipeline: String,
    /// From 0.
    pub idx: i64,
    pub runs: u64,
    pub total_ms: i64,
    pub max_ms: i64,
}

/// The run times of the span's actions that succeeded or failed, by
/// pipeline and place.
pub async fn action_times(pool: &sqlx::AnyPool, span: &Span) -> Result<Vec<ActionTimes>> {
    let sql = format!(
        "SELECT n.pipeline, n.idx, COUNT(*) AS runs, \
           CAST(SUM(n.ended_at - n.started_at) AS BIGINT) AS total_ms, \
           CAST(MAX(n.ended_at - n.started_at) AS BIGINT) AS max_ms \
         FROM nodes n WHERE {} AND n.status IN ('succeeded', 'failed') \
           AND n.started_at IS NOT NULL AND n.ended_at IS NOT NULL \
         GROUP BY n.pipeline, n.idx",
        span.nodes_where()
    );
    let rows = span.query(sql).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(ActionTimes {
                pipeline: row.try_get("pipeline")?,
                idx: row.try_get("idx")?,
                runs: count(row, "runs")?,
                total_ms: row.try_get("total_ms")?,
                max_ms: row.try_get("max_ms")?,
            })
        })
        .collect()
}

/// An action that both passed and failed with the same inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Flaky {
    pub pipeline: String,
    pub idx: i64,
    pub inputs: u64,
    pub passed: u64,
    pub failed: u64,
}

/// The span's actions that succeeded and failed with the same inputs
/// digest, most failures first (at most `limit`): the failed nodes (the
/// few, from their own index), each looked up among the succeeded ones.
pub async fn flaky(pool: &sqlx::AnyPool, span: &Span, limit: i64) -> Result<Vec<Flaky>> {
    let sql = format!(
        "WITH f AS (SELECT n.project, n.pipeline, n.idx, n.inputs, COUNT(*) AS failed \
                    FROM nodes n WHERE {} AND n.status = 'failed' AND n.inputs IS NOT NULL \
                    GROUP BY n.project, n.pipeline, n.idx, n.inputs), \
         g AS (SELECT f.pipeline, f.idx, f.inputs, f.failed, COUNT(*) AS passed FROM f \
               JOIN nodes s ON s.project = f.project AND s.inputs = f.inputs \
                 AND s.pipeline = f.pipeline AND s.idx = f.idx AND s.status = 'succeeded' \
                 AND s.build_created_at >= $2 AND s.build_created_at < $3 \
               GROUP BY f.project, f.pipeline, f.idx, f.inputs, f.failed) \
         SELECT g.pipeline, g.idx, COUNT(*) AS inputs, CAST(SUM(g.passed) AS BIGINT) AS passed, \
           CAST(SUM(g.failed) AS BIGINT) AS failed \
         FROM g GROUP BY g.pipeline, g.idx ORDER BY 5 DESC, 1, 2 LIMIT {limit}",
        span.nodes_where()
    );
    let rows = span.query(sql).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(Flaky {
                pipeline: row.try_get("pipeline")?,
                idx: row.try_get("idx")?,
                inputs: count(row, "inputs")?,
                passed: count(row, "passed")?,
                failed: count(row, "failed")?,
            })
        })
        .collect()
}

/// A run of failed builds of a project: when its first ended, and when
/// the succeeded build that ended it did (none if none has yet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRun {
    pub failed_at: i64,
    pub fixed_at: Option<i64>,
}

/// The span's runs of failures, in trigger order per project (cancelled
/// builds neither break nor end one): the first failure after a success
/// (or the span's start) begins one, the next success ends it. Only those
/// two kinds of builds are kept, so the one after a beginning is its end.
pub async fn failure_runs(pool: &sqlx::AnyPool, span: &Span) -> Result<Vec<FailureRun>> {
    let sql = format!(
        "WITH o AS (SELECT b.project, b.created_at, b.number, b.ended_at, \
                      CASE WHEN b.status = 'failed' THEN 1 ELSE 0 END AS failed \
                    FROM builds b WHERE {} AND b.status IN ('succeeded', 'failed')), \
         s AS (SELECT project, created_at, number, ended_at, failed, \
                 LAG(failed, 1, 0) OVER (PARTITION BY project ORDER BY created_at, number) \
                   AS before \
               FROM o), \
         t AS (SELECT failed, ended_at, LEAD(ended_at) OVER (PARTITION BY project \
                 ORDER BY created_at, number) AS next_at \
               FROM s WHERE failed <> before) \
         SELECT ended_at AS failed_at, next_at AS fixed_at FROM t WHERE failed = 1",
        span.builds_where()
    );
    let rows = span.query(sql).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(FailureRun {
                failed_at: row.try_get("failed_at")?,
                fixed_at: row.try_get("fixed_at")?,
            })
        })
        .collect()
}

/// The parameters and end of the span's succeeded builds whose
/// parameters name `parameter` (for lead time: few builds carry it).
pub async fn succeeded_with(
    pool: &sqlx::AnyPool,
    span: &Span,
    parameter: &str,
) -> Result<Vec<(String, i64)>> {
    let sql = format!(
        "SELECT b.parameters, b.ended_at FROM builds b WHERE {} AND b.status = 'succeeded' \
         AND b.ended_at IS NOT NULL AND b.parameters LIKE $5",
        span.builds_where()
    );
    let rows = span
        .query(sql)
        .bind(format!("%\"{parameter}\"%"))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("parameters")?, row.try_get("ended_at")?)))
        .collect()
}

/// The latest definition (JSON) in the span of the action at `idx` of
/// `pipeline`.
pub async fn action_definition(
    pool: &sqlx::AnyPool,
    span: &Span,
    pipeline: &str,
    idx: i64,
) -> Result<Option<String>> {
    let sql = format!(
        "SELECT n.action FROM nodes n WHERE {} AND n.build_created_at >= $2 \
           AND n.build_created_at < $3 AND n.pipeline = $4 AND n.idx = $5 \
         ORDER BY n.build_created_at DESC LIMIT 1",
        span.scope_sql("n")
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(span.scope_param())
        .bind(span.since)
        .bind(span.until)
        .bind(pipeline.to_string())
        .bind(idx)
        .fetch_optional(pool)
        .await?;
    row.map(|r| Ok(r.try_get("action")?)).transpose()
}

/// Whether any build of `project` was ever stored (a deleted project's
/// builds stay).
pub async fn has_builds(conn: &mut AnyConnection, project: &str) -> Result<bool> {
    let row = sqlx::query("SELECT 1 AS one FROM builds WHERE project = $1 LIMIT 1")
        .bind(project)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_interpolate_as_postgres_does() {
        let mut v = vec![40.0, 10.0, 30.0, 20.0];
        assert_eq!(percentile(&mut v, 0.5), Some(25.0));
        assert_eq!(percentile(&mut v, 0.9), Some(37.0));
        assert_eq!(percentile(&mut [7.0], 0.9), Some(7.0));
        assert_eq!(percentile(&mut [], 0.5), None);
    }
}
