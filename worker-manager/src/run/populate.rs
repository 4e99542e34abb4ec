//! `populate:` — fetch a blob (by `digest`, or the one `ref` points at)
//! and unpack it, as it streams in, into the workspace (or `path` in it)
//! or into the pipeline's system tree. With `optional: true` a missing
//! ref is not an error and leaves the target as it is (made, empty, if it
//! was not there): the way incremental builds start fresh. What an archive
//! may hold is checked entry by entry (see `untar`).

use std::path::PathBuf;

use ick_api::actions::{PopulateInto, PopulateSpec, check_builtin_spec};
use ick_api::blobs::{BlobError, Digest, RefName};
use ick_api::work::Stream;
use tokio::io::AsyncWriteExt;
use tokio_util::io::SyncIoBridge;

use super::untar::{self, UntarError};
use super::{Ending, RunCtx};
use crate::error::ActionError;
use crate::workspace::{blocking, inside};

/// Bytes in flight between the download and the unpacking.
const PIPE: usize = 256 * 1024;

pub async fn run(rc: &RunCtx) -> Result<Ending, ActionError> {
    check_builtin_spec(&rc.a.action).map_err(ActionError)?;
    let spec: PopulateSpec = rc.a.action.spec_as().map_err(ActionError)?;
    let systree = spec.into == PopulateInto::Systree;
    if systree && spec.path.is_some() {
        return Err(ActionError::new(
            "populate: path is for into: workspace; a system tree is filled whole",
        ));
    }
    let target = if systree {
        rc.dirs.systree.clone()
    } else {
        let ws = rc.dirs.workspace.clone();
        match spec.path.clone() {
            None => ws,
            Some(rel) => blocking(move || inside(&ws, &rel, "populate path")).await?,
        }
    };
    let digest = match (&spec.digest, &spec.ref_) {
        (Some(d), _) => d
            .parse::<Digest>()
            .map_err(|e| ActionError::new(format!("populate digest: {e}")))?,
        (None, Some(r)) => {
            let name: RefName = r
                .parse()
                .map_err(|e| ActionError::new(format!("populate ref: {e}")))?;
            let found = match rc.guard(rc.blobs.get_ref(&name)).await {
                Ok(found) => {
                    found.map_err(|e| ActionError::new(format!("cannot read ref {name}: {e}")))?
                }
                Err(interrupted) => return Ok(interrupted),
            };
            match found {
                Some(digest) => digest,
                None if spec.optional => {
                    let dir = target.clone();
                    blocking(move || {
                        std::fs::create_dir_all(&dir).map_err(|e| {
                            ActionError::new(format!("cannot make {}: {e}", dir.display()))
                        })
                    })
                    .await?;
                    rc.out
                        .line(
                            Stream::Stderr,
                            &format!(
                                "ick: ref {name} does not exist; nothing to populate (optional)"
                            ),
                        )
                        .await;
                    return Ok(Ending::exited(0));
                }
                None => {
                    return Err(ActionError::new(format!(
                        "ref {name} does not exist in the artifact store"
                    )));
                }
            }
        }
        (None, None) => return Err(ActionError::new("populate needs a digest or a ref")),
    };
    match rc.guard(rc.blobs.stat(&digest)).await {
        Ok(Ok(Some(_))) => {}
        Ok(Ok(None)) => {
            return Err(ActionError::new(format!(
                "blob {digest} does not exist in the artifact store"
            )));
        }
        Ok(Err(e)) => {
            return Err(ActionError::new(format!(
                "cannot look up blob {digest}: {e}"
            )));
        }
        Err(interrupted) => return Ok(interrupted),
    }
    let unpacked = match rc.guard(unpack(rc, &digest, target.clone(), systree)).await {
        Ok(result) => result,
        Err(interrupted) => return Ok(interrupted),
    };
    let size = unpacked?;
    let into = if systree {
        "the system tree".to_string()
    } else {
        spec.path
            .map(|p| format!("the workspace's {p}"))
            .unwrap_or_else(|| "the workspace".into())
    };
    rc.out
        .line(
            Stream::Stderr,
            &format!("ick: unpacked {digest} ({size} bytes) into {into}"),
        )
        .await;
    Ok(Ending::exited(0))
}

/// Downloads the blob and unpacks it as it comes; the digest is checked at
/// the end (a mismatch leaves what was unpacked, and fails the action).
async fn unpack(
    rc: &RunCtx,
    digest: &Digest,
    target: PathBuf,
    systree: bool,
) -> Result<u64, ActionError> {
    let (mut writer, reader) = tokio::io::duplex(PIPE);
    let bridge = SyncIoBridge::new(reader);
    let dir = target.clone();
    let untar = tokio::task::spawn_blocking(move || -> Result<Vec<String>, UntarError> {
        let mut reader = std::io::BufReader::with_capacity(PIPE, bridge);
        let skipped = untar::unpack(&mut reader, &dir, systree)?;
        // Read the padding after the end of the archive, so the download
        // (and its digest check) completes.
        std::io::copy(&mut reader, &mut std::io::sink())?;
        Ok(skipped)
    });
    let downloaded = async {
        let size = rc.blobs.download(digest, &mut writer).await?;
        writer.shutdown().await.map_err(|e| BlobError::Io {
            context: "cannot unpack".into(),
            source: e,
        })?;
        drop(writer);
        Ok::<u64, BlobError>(size)
    }
    .await;
    let unpacked = untar
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e).into()));
    match (downloaded, unpacked) {
        (Ok(size), Ok(skipped)) => {
            for line in skipped {
                rc.out.line(Stream::Stderr, &format!("ick: {line}")).await;
            }
            Ok(size)
        }
        (Err(BlobError::DigestMismatch { expected, actual }), _) => Err(ActionError::new(format!(
            "blob {expected} arrived with the wrong content (digest {actual})"
        ))),
        // The pipe broke because the unpacking stopped: that is the cause.
        (Err(BlobError::Io { .. }) | Ok(_), Err(UntarError::Refused(why))) => {
            Err(ActionError::new(format!(
                "refused to unpack blob {digest}: {why}; nothing was written outside {}",
                target.display()
            )))
        }
        (Err(BlobError::Io { .. }) | Ok(_), Err(UntarError::Io(e))) => {
            Err(ActionError::new(format!(
                "cannot unpack blob {digest} into {}: {e} (is it a tar archive?)",
                target.display()
            )))
        }
        (Err(e), _) => Err(ActionError::new(format!(
            "cannot download blob {digest}: {e}"
        ))),
    }
}
