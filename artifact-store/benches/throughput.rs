//! Put and get of a 1 GiB blob over loopback on the local backend, beside a
//! plain `dd` of the same bytes to the same filesystem, and the store's
//! peak RSS. Runs the real binaries:
//!
//! ```text
//! cargo build --release -p ick-idp -p ick-artifact-store --bins
//! cargo bench -p ick-artifact-store --bench throughput
//! ```
//!
//! `ICK_BENCH_DIR` chooses the filesystem (default: the temp directory);
//! `ICK_BENCH_MIB` the size (default 1024).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ick_tests::TestIdp;
use ick_tests::idp::Storage;
use ick_tests::store::{Backend, TestStore, pattern};

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

fn dd(args: &[String]) -> Duration {
    let started = Instant::now();
    let status = Command::new("dd")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("dd runs");
    assert!(status.success(), "dd {args:?} failed");
    started.elapsed()
}

fn write_source(path: &Path, mib: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("source"));
    for block in 0..mib {
        let mut bytes = pattern(block + 1, 1 << 20);
        bytes[..8].copy_from_slice(&block.to_le_bytes());
        file.write_all(&bytes).expect("write source");
    }
    file.into_inner().expect("flush").sync_all().expect("sync");
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::var("ICK_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let base = std::env::var("ICK_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| std::env::temp_dir());
    let work = tempfile::tempdir_in(&base).expect("bench dir");
    let source = work.path().join("source");
    eprintln!(
        "writing {mib} MiB of test data in {}",
        work.path().display()
    );
    write_source(&source, mib);

    let idp = TestIdp::start_with(Storage::Sqlite, |_| {});
    let store = TestStore::start_with(&idp, Backend::Local, |c| {
        c["storage"]["local"]["path"] = work.path().join("store").to_string_lossy().as_ref().into();
    });
    let token = idp.admin_token().await;
    let client = store.client(&token);

    // The baseline: the same bytes to the same filesystem, made durable;
    // run before and after the store, and the faster run counts, so that
    // the ratios are not flattered by a busy disk.
    let dd_out = work.path().join("dd.out");
    let dd_write_args = [
        format!("if={}", source.display()),
        format!("of={}", dd_out.display()),
        "bs=1M".into(),
        "conv=fsync".into(),
    ];
    let dd_before = dd(&dd_write_args);
    let dd_read = dd(&[
        format!("if={}", dd_out.display()),
        "of=/dev/null".into(),
        "bs=1M".into(),
    ]);
    std::fs::remove_file(&dd_out).expect("remove dd output");

    // Put: stream the file as one request (POST /blobs): the store hashes,
    // writes, fsyncs and links it.
    let started = Instant::now();
    let file = tokio::fs::File::open(&source).await.expect("source");
    let info = client.upload(file).await.expect("upload");
    let put = started.elapsed();
    assert_eq!(info.size, size);
    client.delete(&info.digest).await.expect("delete");

    // Put through a resumable session (64 MiB chunks, each fsynced).
    let started = Instant::now();
    let session_info = client.upload_file(&source).await.expect("upload_file");
    let put_session = started.elapsed();
    assert_eq!(session_info.digest, info.digest);

    // Get: download to a file on the same filesystem, checked and fsynced.
    let target = work.path().join("downloaded");
    let started = Instant::now();
    client
        .download_file(&info.digest, &target)
        .await
        .expect("download_file");
    let get = started.elapsed();
    std::fs::remove_file(&target).expect("remove download");

    // Get to nowhere: the store's read side alone (plus client hashing).
    let started = Instant::now();
    let mut sink = tokio::io::sink();
    client
        .download(&info.digest, &mut sink)
        .await
        .expect("download");
    let get_sink = started.elapsed();

    let dd_after = dd(&dd_write_args);
    std::fs::remove_file(&dd_out).expect("remove dd output");
    let dd_write = dd_before.min(dd_after);

    let rss = store.peak_rss();
    let dd_rate = rate(size, dd_write);
    println!("artifact store throughput, {mib} MiB blob, local backend, loopback");
    println!("{:<44} {:>9} {:>8}", "", "MB/s", "vs dd");
    let row = |name: &str, took: Duration| {
        let r = rate(size, took);
        println!("{name:<44} {r:>9.0} {:>7.0}%", 100.0 * r / dd_rate);
    };
    println!(
        "{:<44} {:>9.0} (before) {:.0} (after)",
        "dd write (bs=1M conv=fsync) runs",
        rate(size, dd_before),
        rate(size, dd_after)
    );
    row("dd write (bs=1M conv=fsync), the faster", dd_write);
    row("put: POST /blobs (stream, hash, fsync)", put);
    row("put: upload_file (session, 64 MiB chunks)", put_session);
    row("get: download_file (Range-resumable, fsync)", get);
    println!(
        "{:<44} {:>9.0}",
        "dd read to /dev/null (page cache)",
        rate(size, dd_read)
    );
    println!(
        "{:<44} {:>9.0}",
        "get: download to a sink (hash only)",
        rate(size, get_sink)
    );
    println!(
        "store peak RSS (VmHWM): {:.1} MiB",
        rss as f64 / (1 << 20) as f64
    );
}
