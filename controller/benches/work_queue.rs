//! The work queue under load: one real `ick-controller` on Postgres (or
//! SQLite with `ICK_BENCH_STORAGE=sqlite`), simulated workers claiming over
//! HTTP on loopback and reporting `done` at once.
//!
//! Build the binaries first, then run:
//!
//!     cargo build --release -p ick-controller -p ick-idp --bins
//!     cargo bench -p ick-controller --bench work_queue
//!
//! 1. Throughput: a project of 100 independent pipelines of 10 trivial
//!    actions (1,000 actions), 16 workers. Reports actions per second and
//!    the time from a node becoming ready to its claim being answered:
//!    from the later of "the `done` that made it ready (or the trigger) was
//!    answered" and "a worker asked", to the claim's answer.
//! 2. Wake-up: 100 single-action pipelines in a chain (each needs the one
//!    before), 16 workers long-polling: every node becomes ready while
//!    workers wait, so this times the wake-up path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ick_api::controller::BuildStatus;
use ick_tests::controller::{Api, SimWorker, TestController};
use ick_tests::idp::{Storage, TestIdp};

const WORKERS: usize = 16;
const PIPELINES: usize = 100;
const ACTIONS: usize = 10;
const RUNS: usize = 3;

/// Which node a node's success makes ready: (pipeline, index).
type NextOf = Arc<dyn Fn(&str, u32) -> Option<(String, u32)> + Send + Sync>;

#[derive(Default)]
struct Samples {
    /// Ready (or asked, if later) → answered.
    dispatch: Vec<Duration>,
    /// Ready → answered, whether or not a worker was free.
    queued: Vec<Duration>,
}

/// CPU time (user + system) of processes, from /proc.
fn cpu_of(pids: &[u32]) -> Duration {
    let tick = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(100);
    let mut ticks = 0;
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces).
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(11) + field(12);
    }
    Duration::from_millis(ticks * 1000 / tick)
}

/// The Postgres backends serving the controller's database.
async fn backends(database_url: &str) -> Vec<u32> {
    use sqlx::{Connection, Row};
    let Ok(mut conn) = sqlx::postgres::PgConnection::connect(database_url).await else {
        return vec![];
    };
    let rows = sqlx::query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
    rows.iter()
        .filter_map(|r| r.try_get::<i32, _>("pid").ok())
        .map(|p| p as u32)
        .collect()
}

/// CPU used by the controller, its database backends and this process
/// (the simulated workers), sampled around a run.
struct Cpu {
    controller: Duration,
    database: Duration,
    workers: Duration,
}

async fn cpu_now(controller: u32, database_url: Option<&str>) -> Cpu {
    let db = match database_url {
        Some(url) => cpu_of(&backends(url).await),
        None => Duration::ZERO,
    };
    Cpu {
        controller: cpu_of(&[controller]),
        database: db,
        workers: cpu_of(&[std::process::id()]),
    }
}

fn cpu_per_action(before: &Cpu, after: &Cpu, actions: usize) -> String {
    let per =
        |a: Duration, b: Duration| (a.saturating_sub(b)).as_secs_f64() * 1000.0 / actions as f64;
    let c = per(after.controller, before.controller);
    let d = per(after.database, before.database);
    let w = per(after.workers, before.workers);
    if d > 0.0 {
        format!(
            "CPU per action: controller {c:.2} ms, Postgres {d:.2} ms, simulated workers {w:.2} ms"
        )
    } else {
        format!("CPU per action: controller (with SQLite) {c:.2} ms, simulated workers {w:.2} ms")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "p50 {}, p99 {}, max {}",
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 99.0)),
        ms(percentile(samples, 100.0))
    )
}

/// Runs one build of `project` with `WORKERS` workers; answers the time
/// from trigger to the last `done` and the latency samples.
async fn run_build(
    api: &Api,
    project: &str,
    total: usize,
    first: Vec<(String, u32)>,
    next_of: NextOf,
    wait: u64,
) -> (Duration, Samples) {
    let ready: Arc<Mutex<HashMap<(String, u32), Instant>>> = Arc::default();
    let samples: Arc<Mutex<Samples>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let last_done = Arc::new(Mutex::new(Instant::now()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let w = SimWorker::new(api.clone(), &format!("bench-{i}"));
            let (ready, samples, done, last_done, next_of) = (
                ready.clone(),
                samples.clone(),
                done.clone(),
                last_done.clone(),
                next_of.clone(),
            );
            tokio::spawn(async move {
                while done.load(Ordering::SeqCst) < total {
                    let asked = Instant::now();
                    let Some(a) = w.claim(wait).await else {
                        continue;
                    };
                    let answered = Instant::now();
                    let became_ready = ready
                        .lock()
                        .expect("lock")
                        .get(&(a.pipeline.clone(), a.index))
                        .copied();
                    let became_ready = match became_ready {
                        Some(at) => Some(at),
                        // Answered before the trigger's answer arrived.
                        None if a.index == 0 => Some(answered),
                        None => None,
                    };
                    if let Some(at) = became_ready {
                        let mut s = samples.lock().expect("lock");
                        s.dispatch
                            .push(answered.saturating_duration_since(at.max(asked)));
                        s.queued.push(answered.saturating_duration_since(at));
                    }
                    // The next node becomes ready when this done commits:
                    // after it is sent (a bound that counts the done's own
                    // handling), before it is answered.
                    if let Some(next) = next_of(&a.pipeline, a.index) {
                        ready.lock().expect("lock").insert(next, Instant::now());
                    }
                    w.finish(&a, 0, 0).await;
                    *last_done.lock().expect("lock") = Instant::now();
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Let every worker ask once (and register) before the trigger.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let build = api.trigger(project).await;
    // The first actions are ready once the trigger committed: by its answer.
    // (A claim answered before that counts as 0.)
    let triggered = Instant::now();
    {
        let mut r = ready.lock().expect("lock");
        for key in first {
            r.entry(key).or_insert(triggered);
        }
    }
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = *last_done.lock().expect("lock") - started;
    let view = api.wait_build(&build.id, Duration::from_secs(60)).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    let samples = std::mem::take(&mut *samples.lock().expect("lock"));
    (elapsed, samples)
}

#[tokio::main]
async fn main() {
    let storage = match std::env::var("ICK_BENCH_STORAGE").as_deref() {
        Ok("sqlite") => Storage::Sqlite,
        _ => Storage::Postgres,
    };
    let idp = TestIdp::start_with(Storage::Sqlite, |_| {});
    let controller = TestController::start_with(&idp, storage, |c| {
        c["max_connections"] = 20.into();
    });
    let api = controller.client(&idp.admin_token().await);
    println!(
        "work_queue: one controller on {storage:?}, {WORKERS} simulated workers over HTTP on loopback"
    );

    // 1. Throughput.
    let actions = ["{shell: 'true'}"; ACTIONS].join(", ");
    let names: Vec<String> = (0..PIPELINES).map(|p| format!("wide-{p}")).collect();
    for name in &names {
        api.pipeline(name, &format!("actions: [{actions}]")).await;
    }
    api.project("wide", &format!("pipelines: [{}]", names.join(", ")))
        .await;
    let total = PIPELINES * ACTIONS;
    println!("\n1. {total} trivial actions in {PIPELINES} independent pipelines of {ACTIONS}:");
    let mut rates = Vec::new();
    let pid = controller.process.pid();
    let db_url = (storage == Storage::Postgres).then(|| controller.database_url().to_string());
    for run in 1..=RUNS {
        let cpu_before = cpu_now(pid, db_url.as_deref()).await;
        let next = Arc::new(|p: &str, i: u32| {
            ((i as usize) + 1 < ACTIONS).then(|| (p.to_string(), i + 1))
        });
        let first = (0..PIPELINES).map(|p| (format!("wide-{p}"), 0)).collect();
        let (elapsed, mut s) = run_build(&api, "wide", total, first, next, 1).await;
        let rate = total as f64 / elapsed.as_secs_f64();
        rates.push(rate);
        let cpu_after = cpu_now(pid, db_url.as_deref()).await;
        println!(
            "   run {run}: {:.2} s, {rate:.0} actions/s; ready→claim answered: {}; queue wait (workers all busy included): {}",
            elapsed.as_secs_f64(),
            summary(&mut s.dispatch),
            summary(&mut s.queued)
        );
        println!(
            "          {}",
            cpu_per_action(&cpu_before, &cpu_after, total)
        );
    }
    rates.sort_by(f64::total_cmp);
    println!("   median: {:.0} actions/s", rates[rates.len() / 2]);

    // 2. Wake-up of waiting claims.
    let names: Vec<String> = (0..PIPELINES).map(|p| format!("chain-{p}")).collect();
    for (p, name) in names.iter().enumerate() {
        let needs = if p == 0 {
            String::new()
        } else {
            format!("needs: [chain-{}]\n", p - 1)
        };
        api.pipeline(name, &format!("{needs}actions: [{{shell: 'true'}}]"))
            .await;
    }
    api.project("chain", &format!("pipelines: [{}]", names.join(", ")))
        .await;
    println!(
        "\n2. {PIPELINES} single-action pipelines in a chain, {WORKERS} workers long-polling:"
    );
    for run in 1..=RUNS {
        let next = Arc::new(|p: &str, _: u32| {
            let n: usize = p.strip_prefix("chain-")?.parse().ok()?;
            (n + 1 < PIPELINES).then(|| (format!("chain-{}", n + 1), 0))
        });
        let first = vec![("chain-0".to_string(), 0)];
        let (elapsed, mut s) = run_build(&api, "chain", PIPELINES, first, next, 10).await;
        println!(
            "   run {run}: {:.2} s; ready→claim answered: {}",
            elapsed.as_secs_f64(),
            summary(&mut s.dispatch)
        );
    }
    if let Ok(keep) = std::env::var("ICK_BENCH_KEEP_LOG") {
        let _ = std::fs::copy(&controller.process.log, &keep);
        println!("\ncontroller log copied to {keep}");
    }
    drop(controller);
}
