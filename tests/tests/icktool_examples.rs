//! examples/ick: Ick builds Ick from a local clone, through icktool.

mod common;

use common::{Ick, s};
use ick_api::controller::BuildStatus;
use ick_tests::repo_root;

#[test]
fn ick_builds_ick_from_a_local_clone() {
    let ick = Ick::start(1);
    let applied = ick
        .icktool(&["apply", "-f", s(&repo_root().join("examples/ick"))])
        .ok();
    assert!(applied.stdout.contains("project ick created"), "{applied}");
    // The whole suite inside a test would take long: the clone is real,
    // and the test command proves it is this repository, whole.
    let run = ick.icktool(&[
        "trigger",
        "ick",
        "--param",
        &format!("git_url={}", s(&repo_root())),
        "--param",
        "test_command=test -f icktool/src/main.rs && test -f examples/ick/ick.yaml \
         && grep -q '\"icktool\"' Cargo.toml && echo the clone is whole",
        "--follow",
    ]);
    assert_eq!(run.code(), 0, "{run}\n{}", ick.logs());
    let head = std::process::Command::new("git")
        .args(["-C", s(&repo_root()), "log", "-1", "--format=%h"])
        .output()
        .expect("git");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert!(run.stdout.contains(&format!("testing {head}: ")), "{run}");
    assert!(run.stdout.contains("the clone is whole"), "{run}");
    let view = common::build(&ick, "ick/1");
    assert_eq!(view.build.status, BuildStatus::Succeeded);
    assert_eq!(view.nodes.len(), 2);
}
