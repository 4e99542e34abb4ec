//! An artifact store that goes away mid-transfer: `archive` and `populate`
//! wait it out and resume where it stopped (an upload session, a `Range`
//! read), and fail clearly only after `artifact_store_outage`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Env, SOON, assert_succeeded, eventually};
use ick_api::blobs::{Digest, Hasher, RefName};
use ick_api::controller::BuildStatus;
use ick_api::work::Stream;
use ick_tests::store::CuttingProxy;

/// Size of the big file in the workspace: large enough that the store can
/// be killed while its bytes are on the way.
const BIG: u64 = 200 << 20;

/// How long the store stays dead while a build archives.
const OUTAGE: Duration = Duration::from_secs(3);

/// ...and while one populates: longer than the few tries in a row a
/// download used to have (about 8 s of waits).
const LONG_OUTAGE: Duration = Duration::from_secs(10);

/// The size of a file, 0 if it is not there.
fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The data file of the store's one open upload session, if any.
fn session_data(env: &Env) -> Option<PathBuf> {
    env.store
        .upload_files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "data"))
}

/// The SHA-256 of a file, as the store names blobs.
fn digest_of(path: &Path) -> Digest {
    use std::io::Read;
    let mut file = std::fs::File::open(path).expect("open");
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            return hasher.finish();
        }
        hasher.update(&buf[..n]);
    }
}

/// Once `bytes` (counted by a proxy) says a good part of the transfer of
/// the build `build_id` is done, kills the store, keeps it dead for
/// `outage` and starts it again on the same port and data. Answers the
/// bytes counted at the kill, what `kept` said of the store just after the
/// restart, and how long after the restart the transfer went on; fails at
/// once, with the node's message, if the build ends instead.
async fn kill_mid_transfer(
    env: &mut Env,
    build_id: &str,
    outage: Duration,
    bytes: impl Fn() -> u64,
    kept: impl Fn(&Env) -> u64,
) -> (u64, u64, Duration) {
    eventually(SOON, "the transfer to be under way", || async {
        (bytes() > BIG / 4).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| {
        env.store.kill();
        std::thread::sleep(outage);
        env.store.restart();
    });
    let restarted = Instant::now();
    let kept = kept(env);
    let at_kill = bytes();
    assert!(at_kill < BIG, "killed mid-transfer ({at_kill} bytes in)");
    eventually(SOON, "the transfer to go on after the restart", || async {
        if bytes() > at_kill + (1 << 20) {
            return Some(());
        }
        let view = env.admin.build(build_id).await;
        assert!(
            !view.build.status.is_finished(),
            "the transfer did not go on: the build ended {:?}: {:?}",
            view.build.status,
            view.nodes
                .iter()
                .filter_map(|n| n.message.as_deref())
                .collect::<Vec<_>>()
        );
        None
    })
    .await;
    (at_kill, kept, restarted.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_rides_out_a_store_restart_and_resumes_its_upload() {
    let mut env = Env::start().await;
    // Between the worker and the store, counting the bytes that go up.
    let proxy = CuttingProxy::start(env.store.process.addr).await;
    let _worker = env.worker().store(&proxy.url).start();
    let project = env
        .project(
            "outage-archive",
            &format!(
                "  - shell: head -c {BIG} /dev/urandom > big\n  - archive: {{ref: outage/workspace}}\n"
            ),
        )
        .await;
    let build = env.admin.trigger(&project).await;

    // What had been handed to the store when it died, and what it kept.
    let (forwarded, held, resumed_after) = kill_mid_transfer(
        &mut env,
        &build.id,
        OUTAGE,
        || proxy.bytes_up(),
        |env| session_data(env).map_or(0, |p| size_of(&p)),
    )
    .await;

    let view = env.admin.wait_build(&build.id, SOON * 4).await;
    assert_succeeded(&view);
    let archive = &view.pipeline("outage-archive")[1];
    let digest: Digest = archive.outputs["digest"].parse().expect("a digest");
    let size: u64 = archive.outputs["size"].parse().expect("a size");
    // The blob is whole: its bytes hash to its name, and the tar holds
    // all of the big file.
    let file = env.store.blob_file(&digest);
    assert_eq!(digest_of(&file), digest);
    assert_eq!(size_of(&file), size);
    let listing = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&file)
        .output()
        .expect("tar runs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(&format!(" {BIG} ")) && listing.contains("big"),
        "{listing}"
    );
    // Nothing partial: one blob, the ref on it, no session, no temporary.
    assert_eq!(env.store.stored_blobs(), vec![digest.hex().to_string()]);
    let name: RefName = "outage/workspace".parse().expect("ref name");
    let blobs = env.blobs().await;
    assert_eq!(blobs.get_ref(&name).await.expect("ref"), Some(digest));
    assert!(env.store.upload_files().is_empty(), "the session is done");
    assert!(env.store.tmp_files().is_empty());

    // Resumed, not restarted: beyond the blob, only what was in flight at
    // the kill went up again (and the requests' headers).
    let resent = proxy.bytes_up().saturating_sub(size);
    eprintln!(
        "archive: the upload went on {:.2} s after the store restarted; \
         {resent} bytes sent beyond the {size} of the blob; at the kill \
         {forwarded} bytes had been handed to the store, which held {held}",
        resumed_after.as_secs_f64()
    );
    assert!(resent < 9 << 20, "{resent} bytes sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_rides_out_a_store_restart_and_resumes_its_download() {
    let mut env = Env::start().await;
    // A tar of a big random file, in the store.
    let dir = tempfile::tempdir().expect("tempdir");
    let made = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {BIG} /dev/urandom > big && sha256sum big && tar -cf blob.tar big && rm big"
        ))
        .current_dir(dir.path())
        .output()
        .expect("sh runs");
    assert!(made.status.success(), "{made:?}");
    let expected = String::from_utf8_lossy(&made.stdout).trim().to_string();
    let tar = dir.path().join("blob.tar");
    let blob = env
        .blobs()
        .await
        .upload_file(&tar)
        .await
        .expect("upload the tar");
    std::fs::remove_file(&tar).expect("remove the tar");

    let proxy = CuttingProxy::start(env.store.process.addr).await;
    let _worker = env.worker().store(&proxy.url).start();
    let project = env
        .project(
            "outage-populate",
            &format!(
                "  - populate: {{digest: \"{}\"}}\n  - shell: sha256sum big\n",
                blob.digest
            ),
        )
        .await;
    let build = env.admin.trigger(&project).await;

    let (_, _, resumed_after) = kill_mid_transfer(
        &mut env,
        &build.id,
        LONG_OUTAGE,
        || proxy.bytes_down(),
        |_| 0,
    )
    .await;

    let view = env.admin.wait_build(&build.id, SOON * 4).await;
    assert_succeeded(&view);
    let stdout = env.text(&view.build.id, Stream::Stdout).await;
    assert_eq!(stdout.trim(), expected, "the workspace is whole");
    let fetched_again = proxy.bytes_down().saturating_sub(blob.size);
    eprintln!(
        "populate: the download went on {:.2} s after the store restarted; \
         {fetched_again} bytes came beyond the {} of the blob",
        resumed_after.as_secs_f64(),
        blob.size
    );
    // A Range read from what had arrived, not the blob again.
    assert!(
        fetched_again < 1 << 20,
        "{fetched_again} bytes fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_away_longer_than_the_outage_limit_fails_the_build_clearly() {
    let mut env = Env::start().await;
    let worker = env
        .worker()
        .edit(|c| c["artifact_store_outage"] = "2s".into())
        .start();
    // The shell waits for the test, which kills the store before the
    // archive starts.
    let project = env
        .project(
            "outage-too-long",
            "  - shell: |\n      echo data > file\n      touch ready\n      while [ ! -e go ]; do sleep 0.05; done\n  - archive: {ref: outage/never}\n",
        )
        .await;
    let build = env.admin.trigger(&project).await;
    let workspace = eventually(SOON, "the shell to be ready", || async {
        worker
            .workspaces()
            .into_iter()
            .find(|w| w.join("ready").exists())
    })
    .await;
    let url = env.store.url().to_string();
    tokio::task::block_in_place(|| env.store.kill());
    std::fs::write(workspace.join("go"), "").expect("go");

    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Failed);
    let archive = view.pipeline("outage-too-long")[1];
    let message = archive.message.clone().unwrap_or_default();
    eprintln!("the node's message: {message}");
    assert!(
        message.starts_with(&format!(
            "archive failed: artifact store at {url} unreachable for 2s: "
        )),
        "{message}"
    );
    // Back again, the store has no blob and no ref of it.
    tokio::task::block_in_place(|| env.store.restart());
    assert!(env.store.stored_blobs().is_empty());
    let name: RefName = "outage/never".parse().expect("ref name");
    assert_eq!(env.blobs().await.get_ref(&name).await.expect("ref"), None);
}
