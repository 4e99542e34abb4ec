//! Output: order per stream, size, and nothing lost while the controller
//! is away.

mod common;

use std::time::Duration;

use common::{Env, SOON, assert_succeeded, eventually, text};
use ick_api::work::Stream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_stdout_and_stderr_keep_their_order_per_stream() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    env.project(
        "mixed",
        r#"  - shell: |
      for i in $(seq 1 300); do echo "out $i"; echo "err $i" >&2; done
"#,
    )
    .await;
    let view = env.run("mixed", SOON).await;
    assert_succeeded(&view);
    let log = env.log(&view.build.id).await;
    let expected =
        |label: &str| -> String { (1..=300).map(|i| format!("{label} {i}\n")).collect() };
    assert_eq!(text(&log, Stream::Stdout), expected("out"));
    assert_eq!(text(&log, Stream::Stderr), expected("err"));
    let seqs: Vec<i64> = log.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (0..log.len() as i64).collect::<Vec<_>>(),
        "chunks are numbered in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_megabytes_of_output_arrive_whole() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    // Multi-byte characters, so that chunks must be cut between them.
    let line = "ünïcödé output line ✓ 0123456789\n";
    let lines = 20_000_000usize.div_ceil(line.len());
    env.project(
        "big",
        &format!("  - shell: yes '{}' | head -n {lines}\n", line.trim_end()),
    )
    .await;
    let view = env.run("big", Duration::from_secs(120)).await;
    assert_succeeded(&view);
    let log = env.log(&view.build.id).await;
    let stdout = text(&log, Stream::Stdout);
    assert!(stdout.len() >= 20_000_000);
    assert_eq!(stdout.len(), line.len() * lines, "every byte arrived");
    assert!(stdout == line.repeat(lines), "the output arrived unchanged");
    assert!(
        log.iter().all(|c| c.data.len() <= 64 * 1024),
        "chunks are at most 64 KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_restarted_while_an_action_runs_loses_no_output() {
    let mut env = Env::start().await;
    // Little memory for undelivered output, so that it spills to disk.
    let worker = env
        .worker()
        .edit(|c| c["output"]["memory_limit"] = "64 KiB".into())
        .start();
    let signals = tempfile::tempdir().expect("tempdir");
    let go = signals.path().join("go");
    let written = signals.path().join("written");
    env.project(
        "restart",
        &format!(
            r#"  - shell: |
      echo before
      while [ ! -e {go} ]; do sleep 0.05; done
      for i in $(seq 1 20000); do echo "line $i, written while the controller is away"; done
      touch {written}
      echo after
"#,
            go = go.display(),
            written = written.display()
        ),
    )
    .await;
    let build = env.admin.trigger("restart").await;
    env.wait_log(&build.id, "before").await;
    env.controller.process.kill();
    std::fs::write(&go, "").expect("signal the action");
    eventually(SOON, "the action to write everything", || async {
        written.exists().then_some(())
    })
    .await;
    tokio::task::block_in_place(|| env.controller.restart());
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_succeeded(&view);
    let mut expected = String::from("before\n");
    for i in 1..=20000 {
        expected.push_str(&format!("line {i}, written while the controller is away\n"));
    }
    expected.push_str("after\n");
    let stdout = env.text(&build.id, Stream::Stdout).await;
    assert!(
        stdout == expected,
        "all output arrived once, in order ({} of {} bytes)",
        stdout.len(),
        expected.len()
    );
    assert!(
        worker.log().contains("sending output failed"),
        "the worker saw the controller go away"
    );
}
