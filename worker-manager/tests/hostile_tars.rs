//! `populate` unpacks tars that builds made: an archive that tries to
//! write outside its target, through a link, or to make devices is
//! refused by entry, and nothing outside the target changes.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{Env, SOON, assert_succeeded};
use ick_api::controller::{BuildStatus, NodeStatus};
use ick_api::work::{Outcome, Stream};
use tar::{EntryType, Header};

/// One entry of a hand-made tar; paths and link names are written into
/// the header as they are, bypassing the checks of `Header::set_path`.
#[derive(Clone)]
enum Entry<'a> {
    File(&'a str, u32, &'a [u8]),
    Dir(&'a str, u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Device(EntryType, &'a str, u32, u32),
    Fifo(&'a str),
}

fn raw_header(kind: EntryType, path: &str, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(1_700_000_000);
    header.set_uid(0);
    header.set_gid(0);
    let name = &mut header.as_old_mut().name;
    assert!(path.len() < name.len(), "{path} fits the old header");
    name[..path.len()].copy_from_slice(path.as_bytes());
    header
}

fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let (mut header, data): (Header, &[u8]) = match entry {
            Entry::File(path, mode, data) => (
                raw_header(EntryType::Regular, path, *mode, data.len() as u64),
                data,
            ),
            Entry::Dir(path, mode) => (raw_header(EntryType::Directory, path, *mode, 0), b""),
            Entry::Symlink(path, target) | Entry::Hardlink(path, target) => {
                let kind = match entry {
                    Entry::Symlink(..) => EntryType::Symlink,
                    _ => EntryType::Link,
                };
                let mut header = raw_header(kind, path, 0o777, 0);
                let link = &mut header.as_old_mut().linkname;
                assert!(target.len() < link.len(), "{target} fits the old header");
                link[..target.len()].copy_from_slice(target.as_bytes());
                (header, b"")
            }
            Entry::Device(kind, path, major, minor) => {
                let mut header = raw_header(*kind, path, 0o666, 0);
                header.set_device_major(*major).expect("major");
                header.set_device_minor(*minor).expect("minor");
                (header, b"")
            }
            Entry::Fifo(path) => (raw_header(EntryType::Fifo, path, 0o666, 0), b""),
        };
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    builder.into_inner().expect("tar")
}

/// A directory outside every workspace, with one file in it, that no
/// populate may change.
struct Sentinel {
    dir: tempfile::TempDir,
}

impl Sentinel {
    fn new() -> Sentinel {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        std::fs::write(dir.path().join("keep"), "untouched\n").expect("write");
        std::fs::set_permissions(
            dir.path().join("keep"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        Sentinel { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn assert_untouched(&self) {
        let names: Vec<String> = std::fs::read_dir(self.path())
            .expect("read sentinel")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["keep".to_string()], "nothing new beside it");
        let meta = std::fs::metadata(self.path()).expect("stat");
        assert_eq!(meta.mode() & 0o7777, 0o700, "its mode is as it was");
        let keep = self.path().join("keep");
        assert_eq!(std::fs::read_to_string(&keep).expect("read"), "untouched\n");
        let meta = std::fs::metadata(&keep).expect("stat");
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.nlink(), 1, "nothing links to it");
    }
}

/// Every path under `dir` whose name starts with `prefix`.
fn found(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            hits.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            hits.extend(found(&path, prefix));
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tar_entries_are_refused_by_name_and_nothing_outside_changes() {
    let env = Env::start().await;
    let worker = env.worker().start();
    let sentinel = Sentinel::new();
    let outside = sentinel.path().to_string_lossy().into_owned();
    let keep = format!("{outside}/keep");
    let absolute = format!("{outside}/escaped-absolute");
    let through = "link/escaped-through-link".to_string();
    // Each case: a pipeline name, the tar, the entry the message names,
    // and what it says of it.
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "dotdot",
            tar(&[
                Entry::File("fine", 0o644, b"fine\n"),
                Entry::File("../escaped-dotdot", 0o644, b"out\n"),
            ]),
            "../escaped-dotdot",
            "'..'",
        ),
        (
            "dotdot-deep",
            tar(&[Entry::File("sub/../../../../escaped-deep", 0o644, b"out\n")]),
            "sub/../../../../escaped-deep",
            "'..'",
        ),
        (
            "absolute",
            tar(&[Entry::File(&absolute, 0o644, b"out\n")]),
            &absolute,
            "absolute",
        ),
        (
            "through-symlink",
            tar(&[
                Entry::Symlink("link", &outside),
                Entry::File(&through, 0o644, b"out\n"),
            ]),
            &through,
            "symbolic link",
        ),
        (
            "dir-over-symlink",
            tar(&[Entry::Symlink("d", &outside), Entry::Dir("d", 0o777)]),
            "d",
            "symbolic link",
        ),
        (
            "hardlink-absolute",
            tar(&[Entry::Hardlink("escaped-hardlink", &keep)]),
            "escaped-hardlink",
            "hard link",
        ),
        (
            "hardlink-dotdot",
            tar(&[Entry::Hardlink(
                "escaped-hardlink",
                "../../../../../../../../../../../etc/passwd",
            )]),
            "escaped-hardlink",
            "hard link",
        ),
        (
            "hardlink-through-symlink",
            tar(&[
                Entry::Symlink("out", &outside),
                Entry::Hardlink("escaped-hardlink", "out/keep"),
            ]),
            "escaped-hardlink",
            "symbolic link",
        ),
        (
            "char-device",
            tar(&[Entry::Device(EntryType::Char, "escaped-null", 1, 3)]),
            "escaped-null",
            "device",
        ),
        (
            "block-device",
            tar(&[Entry::Device(EntryType::Block, "escaped-disk", 8, 0)]),
            "escaped-disk",
            "device",
        ),
        (
            "fifo",
            tar(&[Entry::Fifo("escaped-fifo")]),
            "escaped-fifo",
            "FIFO",
        ),
    ];
    let blobs = env.blobs().await;
    let mut names = Vec::new();
    for (name, bytes, _, _) in &cases {
        let info = blobs
            .upload_bytes(Bytes::from(bytes.clone()))
            .await
            .expect("upload");
        env.admin
            .pipeline(
                name,
                &format!(
                    "actions: [{{populate: {{digest: \"{}\"}}}}, {{shell: 'echo never'}}]",
                    info.digest
                ),
            )
            .await;
        names.push(*name);
    }
    env.admin
        .project("hostile", &format!("pipelines: [{}]", names.join(", ")))
        .await;
    let view = env.run("hostile", SOON).await;
    assert_eq!(view.build.status, BuildStatus::Failed);
    // Every case is checked before any assertion, so that a failure shows
    // them all.
    let mut wrong = Vec::new();
    for (name, _, entry, says) in &cases {
        let nodes = view.pipeline(name);
        let message = nodes[0].message.clone().unwrap_or_default();
        let refused = nodes[0].status == NodeStatus::Failed
            && nodes[0].outcome == Some(Outcome::Error)
            && nodes[1].status == NodeStatus::Skipped;
        if !refused || !message.contains(&format!("entry {entry:?}")) || !message.contains(says) {
            wrong.push(format!(
                "{name}: {:?}, {message:?} should name entry {entry:?} and say {says:?}",
                nodes[0].status
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let log = env.text(&view.build.id, Stream::Stdout).await;
    assert!(!log.contains("never"), "{log}");
    sentinel.assert_untouched();
    common::eventually(SOON, "the workspaces to go", || async {
        worker.workspaces().is_empty().then_some(())
    })
    .await;
    // Nothing escaped above the workspaces, nor anywhere in the worker's
    // directories.
    let escaped = found(worker.dir.path(), "escaped");
    assert!(escaped.is_empty(), "{escaped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpacking_drops_setuid_bits_and_makes_no_devices_in_a_system_tree() {
    let env = Env::start().await;
    let _worker = env.worker().start();
    let files = [
        Entry::Dir("bin", 0o755),
        Entry::File("bin/suid", 0o4755, b"#!/bin/sh\n"),
        Entry::File("bin/sgid", 0o2711, b"#!/bin/sh\n"),
        Entry::Dir("shared", 0o3775),
    ];
    let devices = [
        Entry::Dir("dev", 0o755),
        Entry::Device(EntryType::Char, "dev/null", 1, 3),
        Entry::Device(EntryType::Block, "dev/disk", 8, 0),
        Entry::Fifo("dev/fifo"),
    ];
    let blobs = env.blobs().await;
    let workspace = blobs
        .upload_bytes(Bytes::from(tar(&files)))
        .await
        .expect("upload");
    let systree = blobs
        .upload_bytes(Bytes::from(tar(&[files, devices].concat())))
        .await
        .expect("upload");
    let modes = r#"for f in bin/suid bin/sgid shared; do echo "$f $(stat -c %a "$f")"; done"#;
    // A host action finds the pipeline's system tree beside the workspaces.
    env.project(
        "modes",
        &format!(
            r#"  - populate: {{digest: "{workspace}", path: ws}}
  - populate: {{digest: "{systree}", into: systree}}
  - shell: |
      cd ws && {modes}
      cd "$ICK_WORKSPACE/../../../../systrees/$ICK_PROJECT/$BUILD_NUMBER/$ICK_PIPELINE"
      {modes}
      for f in dev/null dev/disk dev/fifo; do
        if [ -e "$f" ] || [ -L "$f" ]; then echo "$f made: $(stat -c %F "$f")"; else echo "$f skipped"; fi
      done
"#,
            workspace = workspace.digest,
            systree = systree.digest,
        ),
    )
    .await;
    let view = env.run("modes", SOON).await;
    assert_succeeded(&view);
    assert_eq!(
        env.text(&view.build.id, Stream::Stdout).await,
        "bin/suid 755\nbin/sgid 711\nshared 1775\n\
         bin/suid 755\nbin/sgid 711\nshared 1775\n\
         dev/null skipped\ndev/disk skipped\ndev/fifo skipped\n"
    );
    let stderr = env.text(&view.build.id, Stream::Stderr).await;
    assert!(
        stderr.contains("skipped device node \"dev/disk\""),
        "the log says what was skipped: {stderr}"
    );
}
