//! The worker-manager end to end: real IDP, controller (Postgres), artifact
//! store and worker-manager binaries on loopback.
//!
//! Build the binaries in release first, then run:
//!
//!     cargo build --release -p ick-worker-manager -p ick-controller -p ick-artifact-store -p ick-idp --bins
//!     cargo bench -p ick-worker-manager --bench actions
//!
//! 1. Overhead per trivial action: a pipeline of 200 `shell: 'true'`
//!    actions (they run one after another on one worker: claim, run,
//!    report, claim the next). Reports the time per action, and the same
//!    minus what starting `bash -e -c true` costs on its own here.
//! 2. Latency of a one-action build, trigger to end (median of 20).
//! 3. Output: an action that writes 200 MB of text as fast as it can;
//!    reports the rate the worker ships it to the controller (bytes over
//!    the action's run time as the controller recorded it), and how fast
//!    the same command writes into `/dev/null`.

use std::process::Command;
use std::time::{Duration, Instant};

use ick_api::controller::{BuildStatus, BuildView};
use ick_tests::controller::TestController;
use ick_tests::idp::{Storage, TestIdp};
use ick_tests::store::{Backend, TestStore};
use ick_tests::worker::TestWorker;

const CHAIN: usize = 200;
const SINGLE_RUNS: usize = 20;
const OUTPUT_BYTES: u64 = 200_000_000;

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// What starting `bash -e -c true` costs here, per run (median of 200).
fn bash_cost() -> Duration {
    let mut runs: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new("bash")
                .args(["-e", "-c", "true"])
                .status()
                .expect("bash runs");
            assert!(status.success());
            started.elapsed()
        })
        .collect();
    runs.sort();
    runs[runs.len() / 2]
}

fn ended(view: &BuildView) -> Duration {
    let start = view
        .nodes
        .iter()
        .filter_map(|n| n.started_at)
        .min()
        .expect("started");
    let end = view
        .nodes
        .iter()
        .filter_map(|n| n.ended_at)
        .max()
        .expect("ended");
    (end - start).to_std().unwrap_or_default()
}

/// CPU time (user + system) a process has used so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
    // utime and stime are the 14th and 15th fields; `after` starts at the 3rd.
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The median time the worker logged between getting an action and the
/// controller taking its end, over the last `n` actions.
fn worker_side(log: &str, n: usize) -> Duration {
    let mut times: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("action ended"))
        .filter_map(|l| l.split("elapsed_ms=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    let start = times.len().saturating_sub(n);
    let mut times = times.split_off(start);
    times.sort_by(f64::total_cmp);
    Duration::from_secs_f64(times.get(times.len() / 2).copied().unwrap_or(0.0) / 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let idp = TestIdp::start_with(Storage::Sqlite, |_| {});
    let controller = TestController::start_with(&idp, Storage::Postgres, |c| {
        // 1 MB batches of output fit.
        c["http"]["body_limit"] = 4_194_304.into();
    });
    let store = TestStore::start(&idp, Backend::Local);
    let worker = TestWorker::start(&idp, controller.url(), store.url());
    let admin = controller.client(&idp.admin_token().await);

    // 1. A chain of trivial actions.
    let actions: String = (0..CHAIN).map(|_| "  - shell: 'true'\n").collect();
    admin
        .pipeline("chain", &format!("actions:\n{actions}"))
        .await;
    admin.project("chain", "pipelines: [chain]").await;
    let bash = bash_cost();
    let mut per_action = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let build = admin.trigger("chain").await;
        let view = admin.wait_build(&build.id, Duration::from_secs(600)).await;
        let wall = started.elapsed();
        assert_eq!(view.build.status, BuildStatus::Succeeded);
        per_action.push(wall / CHAIN as u32);
    }
    per_action.sort();
    let best = per_action[0];
    println!(
        "overhead per trivial action: {} per action end to end ({} actions in a pipeline, best of 3; runs: {})",
        ms(best),
        CHAIN,
        per_action
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let inside = worker_side(&worker.log(), CHAIN * 3);
    println!(
        "  of which the worker spends {} from the claim's answer to done's (the rest: the claim round trip in the controller)",
        ms(inside)
    );
    println!(
        "  of which starting bash -e -c true: {}; the rest (claim, heartbeat-free run, output, done, workspace): {}",
        ms(bash),
        ms(best.saturating_sub(bash))
    );

    // 2. One-action builds.
    admin.pipeline("one", "actions: [{shell: 'true'}]").await;
    admin.project("one", "pipelines: [one]").await;
    let mut latencies = Vec::new();
    for _ in 0..SINGLE_RUNS {
        let started = Instant::now();
        let build = admin.trigger("one").await;
        let view = admin.wait_build(&build.id, Duration::from_secs(60)).await;
        latencies.push(started.elapsed());
        assert_eq!(view.build.status, BuildStatus::Succeeded);
    }
    latencies.sort();
    println!(
        "one-action build, trigger to end (polled every 20 ms): median {}, max {}",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1])
    );

    // 3. Output as fast as an action can write it.
    let command = format!(
        "yes 'a line of build output, as a compiler might write it: 0123456789abcdef' | head -c {OUTPUT_BYTES}"
    );
    let started = Instant::now();
    let status = Command::new("bash")
        .args(["-c", &format!("{command} > /dev/null")])
        .status()
        .expect("bash runs");
    assert!(status.success());
    let local = started.elapsed();
    admin
        .pipeline("loud", &format!("actions: [{{shell: \"{command}\"}}]"))
        .await;
    admin.project("loud", "pipelines: [loud]").await;
    let (worker_cpu, controller_cpu) = (cpu(worker.process.pid()), cpu(controller.process.pid()));
    let started = Instant::now();
    let build = admin.trigger("loud").await;
    let view = admin.wait_build(&build.id, Duration::from_secs(600)).await;
    let wall = started.elapsed();
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    let run = ended(&view);
    let worker_cpu = cpu(worker.process.pid()) - worker_cpu;
    let controller_cpu = cpu(controller.process.pid()) - controller_cpu;
    let mb = OUTPUT_BYTES as f64 / 1e6;
    println!(
        "output: {mb:.0} MB shipped at {:.1} MB/s (action start to done: {:.2} s; trigger to end: {:.2} s); the command alone writes {:.0} MB/s into /dev/null",
        mb / run.as_secs_f64(),
        run.as_secs_f64(),
        wall.as_secs_f64(),
        mb / local.as_secs_f64(),
    );
    println!(
        "  CPU for it: worker-manager {:.2} s, controller {:.2} s (Postgres not counted)",
        worker_cpu.as_secs_f64(),
        controller_cpu.as_secs_f64()
    );
}
