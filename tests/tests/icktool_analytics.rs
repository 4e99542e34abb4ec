//! `icktool analytics` and `GET /analytics` over real builds run by a real
//! worker-manager: passing, failing, and a flaky action (the same commit
//! and parameters passing, then failing because a file says so), on
//! Postgres and on SQLite; every count checked exactly.

mod common;

use common::{Ick, definitions, s};
use ick_api::controller::Analytics;
use ick_tests::idp::Storage;

/// `slow` takes a second; `check` fails while the file `$flag` exists;
/// `quick` does nothing. No `needs:`: each runs in every build.
const DEFINITIONS: &str = "\
pipelines:
  - pipeline: slow
    actions: [{shell: 'sleep 1', name: nap}]
  - pipeline: check
    parameters: [flag]
    actions: [{shell: 'test ! -e \"$flag\"', name: flag absent}]
  - pipeline: quick
    actions: [{shell: 'true'}]
projects:
  - project: app
    parameters: {flag: /nonexistent, git_commit_time: ''}
    pipelines: [slow, check, quick]
";

/// Triggers a build of app and follows it; 0 if it succeeded, 1 if not.
fn build(ick: &Ick, params: &[&str]) -> i32 {
    let mut args = vec!["trigger", "app", "--follow"];
    for p in params {
        args.extend(["--param", p]);
    }
    let run = ick.icktool(&args);
    assert!(matches!(run.code(), 0 | 1), "{run}\n{}", ick.logs());
    run.code()
}

fn analytics(ick: &Ick, extra: &[&str]) -> Analytics {
    let mut args = vec!["analytics", "app", "--json"];
    args.extend(extra);
    ick.icktool(&args).ok().json()
}

fn real_builds_give_exact_numbers(storage: Storage) {
    let ick = Ick::start_on(storage, 1, |_| {}, |_| {});
    let file = definitions(&ick, "app.yaml", DEFINITIONS);
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let flag = ick.dir.path().join("fail");
    let flag_param = format!("flag={}", s(&flag));
    let flag_param = flag_param.as_str();

    // 1: commit a passes. 2: the same commit and parameters fail (the
    // file is there): check/1 is flaky. 3: commit b passes (the failure
    // recovered), and says when b was made. 4: commit c fails, and stays
    // failed.
    assert_eq!(build(&ick, &["git_commit=a", flag_param]), 0);
    std::fs::write(&flag, "").expect("write the flag");
    assert_eq!(build(&ick, &["git_commit=a", flag_param]), 1);
    std::fs::remove_file(&flag).expect("remove the flag");
    assert_eq!(
        build(
            &ick,
            &[
                "git_commit=b",
                flag_param,
                "git_commit_time=2020-01-01T00:00:00Z"
            ]
        ),
        0
    );
    std::fs::write(&flag, "").expect("write the flag");
    assert_eq!(build(&ick, &["git_commit=c", flag_param]), 1);

    let a = analytics(&ick, &[]);
    assert_eq!(a.project.as_deref(), Some("app"));
    let b = a.builds;
    assert_eq!(
        (b.total, b.succeeded, b.failed, b.cancelled, b.unfinished),
        (4, 2, 2, 0, 0),
        "{a:?}"
    );
    assert_eq!(a.success_rate, Some(0.5));
    assert_eq!(a.days.iter().map(|d| d.builds.total).sum::<u64>(), 4);
    assert_eq!(a.days.iter().map(|d| d.builds.failed).sum::<u64>(), 2);
    let duration = a.duration.expect("durations");
    assert_eq!(duration.count, 4);
    // Every build naps a second, on one worker.
    assert!(
        duration.p50_ms >= 1000.0 && duration.p90_ms >= duration.p50_ms,
        "{a:?}"
    );
    let queue = a.queue_time.expect("queue times");
    assert_eq!(queue.count, 4);
    assert!(queue.p50_ms >= 0.0 && queue.p90_ms >= queue.p50_ms, "{a:?}");

    let pipelines: Vec<(&str, u64)> = a
        .slowest_pipelines
        .iter()
        .map(|p| (p.pipeline.as_str(), p.runs))
        .collect();
    assert_eq!(pipelines.len(), 3, "{a:?}");
    assert_eq!(pipelines[0], ("slow", 4), "{a:?}");
    let slowest = &a.slowest_actions[0];
    assert_eq!(
        (slowest.pipeline.as_str(), slowest.action, slowest.runs),
        ("slow", 1, 4)
    );
    assert_eq!(slowest.description.as_deref(), Some("nap"));
    assert!(slowest.mean_ms >= 1000.0 && slowest.max_ms >= slowest.mean_ms);

    assert_eq!(a.flaky_actions.len(), 1, "{a:?}");
    let flaky = &a.flaky_actions[0];
    assert_eq!(
        (
            flaky.pipeline.as_str(),
            flaky.action,
            flaky.inputs,
            flaky.passed,
            flaky.failed
        ),
        ("check", 1, 1, 1, 1)
    );
    assert_eq!(flaky.description.as_deref(), Some("flag absent"));

    let recovery = a.recovery.expect("a recovery");
    assert_eq!((recovery.recoveries, recovery.unrecovered), (1, 1));
    assert!(recovery.p50_ms.is_some_and(|p| p > 0.0) && recovery.mean_ms == recovery.p50_ms);

    let lead = a.lead_time.expect("build 3 says when its commit was made");
    assert_eq!(lead.builds, 1);
    assert!(lead.p50_ms > 24.0 * 3600.0 * 1000.0 && lead.mean_ms == lead.p50_ms);

    // One pipeline: the builds that ran it, its actions alone.
    let check = analytics(&ick, &["--pipeline", "check"]);
    assert_eq!(check.builds.total, 4);
    assert_eq!(check.slowest_actions.len(), 1);
    assert_eq!(check.slowest_actions[0].pipeline, "check");
    assert_eq!(check.slowest_pipelines.len(), 1);
    // A span before the builds has none of them.
    let before = analytics(&ick, &["--since", "2020-01-01", "--until", "2020-01-31"]);
    assert_eq!(before.builds.total, 0);
    assert!(before.lead_time.is_none() && before.lead_time_unknown.is_some());

    let shown = ick.icktool(&["analytics", "app"]).ok();
    for expected in [
        "builds:        4 (2 succeeded, 2 failed, 0 cancelled, 0 unfinished)",
        "success rate:  50.0%",
        "recovery:      p50",
        "(1 recovered, 1 still failing)",
        "slow/1",
        "check/1",
        "flag absent",
    ] {
        assert!(shown.stdout.contains(expected), "{expected:?} in\n{shown}");
    }
    ick.icktool(&["analytics", "app", "--since", "last tuesday"])
        .fails(2, "neither an RFC 3339 time");
    ick.icktool(&["analytics", "nope"])
        .fails(2, "no project \"nope\"");
}

#[test]
fn real_builds_give_exact_numbers_on_postgres() {
    real_builds_give_exact_numbers(Storage::Postgres);
}

#[test]
fn real_builds_give_exact_numbers_on_sqlite() {
    real_builds_give_exact_numbers(Storage::Sqlite);
}
