//! `archive:` — stream a tar of the workspace (or `path` in it) to the
//! artifact store, without a temporary copy, and report its digest as
//! `outputs.digest`; with `ref:`, point that ref at it. Symbolic links are
//! kept as links; modes, times and empty directories are kept.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use ick_api::actions::ArchiveSpec;
use ick_api::blobs::{BlobError, BlobInfo, RefName};
use ick_api::work::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::SyncIoBridge;

use super::{Ending, RunCtx};
use crate::error::ActionError;
use crate::workspace::{blocking, inside};

/// Bytes in flight between the tar writer and the upload.
const PIPE: usize = 256 * 1024;

pub async fn run(rc: &RunCtx) -> Result<Ending, ActionError> {
    let spec: ArchiveSpec = if rc.a.action.spec.is_null() {
        ArchiveSpec::default()
    } else {
        rc.a.action.spec_as().map_err(ActionError)?
    };
    // Everything that can be refused is checked before a byte is sent.
    let ref_name = spec
        .ref_
        .as_deref()
        .map(|r| r.parse::<RefName>())
        .transpose()
        .map_err(|e| ActionError::new(format!("archive ref: {e}")))?;
    let ws = rc.dirs.workspace.clone();
    let rel = spec.path.clone();
    let source = blocking(move || {
        let source = match &rel {
            Some(rel) => inside(&ws, rel, "archive path")?,
            None => ws,
        };
        match std::fs::symlink_metadata(&source) {
            Ok(_) => Ok(source),
            Err(_) => Err(ActionError::new(format!(
                "archive path {:?} does not exist in the workspace",
                rel.unwrap_or_default()
            ))),
        }
    })
    .await?;
    // The upload rides out cuts and store restarts itself (the session
    // resumes), so the tar is made once.
    let info = match rc.guard(upload(rc, &source)).await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => return Err(ActionError::new(format!("archive failed: {e}"))),
        Err(interrupted) => return Ok(interrupted),
    };
    let what = spec.path.as_deref().unwrap_or("the workspace");
    rc.out
        .line(
            Stream::Stderr,
            &format!(
                "ick: archived {what} ({} bytes) as {}",
                info.size, info.digest
            ),
        )
        .await;
    if let Some(name) = ref_name {
        match rc.guard(rc.blobs.set_ref(&name, &info.digest)).await {
            Ok(Ok(_)) => {
                rc.out
                    .line(Stream::Stderr, &format!("ick: ref {name} now points at it"))
                    .await
            }
            Ok(Err(e)) => return Err(ActionError::new(format!("cannot set ref {name}: {e}"))),
            Err(interrupted) => return Ok(interrupted),
        }
    }
    Ok(Ending {
        outputs: BTreeMap::from([
            ("digest".to_string(), info.digest.to_string()),
            ("size".to_string(), info.size.to_string()),
        ]),
        ..Ending::exited(0)
    })
}

/// Streams a tar of `source` to the store while it is made, through an
/// upload session: the blob exists only once the whole tar is in.
async fn upload(rc: &RunCtx, source: &Path) -> Result<BlobInfo, BlobError> {
    let (writer, reader) = tokio::io::duplex(PIPE);
    let complete = Arc::new(AtomicBool::new(false));
    let reader = Complete {
        inner: reader,
        complete: complete.clone(),
    };
    let bridge = SyncIoBridge::new(writer);
    let path = source.to_path_buf();
    let tar = tokio::task::spawn_blocking(move || write_tar(bridge, &path, &complete));
    let uploaded = rc.blobs.upload_stream(reader).await;
    let written = tar.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match (uploaded, written) {
        (Ok(info), Ok(())) => Ok(info),
        // The upload stopped first; the tar only saw the pipe close.
        (Err(e), Err(w)) if w.kind() == std::io::ErrorKind::BrokenPipe => Err(e),
        (_, Err(w)) => Err(BlobError::Io {
            context: format!("cannot archive {}", source.display()),
            source: w,
        }),
        (Err(e), Ok(())) => Err(e),
    }
}

fn write_tar(
    bridge: SyncIoBridge<tokio::io::DuplexStream>,
    source: &Path,
    complete: &AtomicBool,
) -> std::io::Result<()> {
    let buffered = std::io::BufWriter::with_capacity(PIPE, bridge);
    let mut tar = tar::Builder::new(buffered);
    tar.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(source)?;
    if meta.is_dir() {
        tar.append_dir_all("", source)?;
    } else {
        let name = source.file_name().map(PathBuf::from).unwrap_or_default();
        tar.append_path_with_name(source, name)?;
    }
    let mut buffered = tar.into_inner()?;
    buffered.flush()?;
    let mut bridge = buffered.into_inner().map_err(|e| e.into_error())?;
    complete.store(true, Ordering::SeqCst);
    bridge.shutdown()
}

/// The upload's side of the pipe: an end of stream before the tar is
/// complete is an error, so that the store never keeps half an archive.
struct Complete {
    inner: tokio::io::DuplexStream,
    complete: Arc<AtomicBool>,
}

impl AsyncRead for Complete {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() == before
            && !self.complete.load(Ordering::SeqCst)
        {
            return Poll::Ready(Err(std::io::Error::other("the archive could not be made")));
        }
        polled
    }
}
