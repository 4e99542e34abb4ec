//! `icktool blob put|get|delete` and `icktool ref set|get|list|delete`.
//!
//! Files go through the resumable transfers of `ick_api::blobs`: a cut
//! upload goes on from what the store holds, a cut download from what
//! `FILE.partial` holds (also in a later run), and the digest is checked
//! at the end. Progress bars are drawn on a terminal only; their position
//! is read from the store's upload offset, or from the partial file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ick_api::blobs::{BlobClient, BlobInfo, Digest, RefInfo, RefName, RefPrefix};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Exit;
use crate::connection::Ick;
use crate::output::Out;

#[derive(clap::Subcommand)]
pub enum BlobCommand {
    /// Upload a file (or `-` for stdin); prints its digest.
    Put {
        /// The file, or `-`.
        file: PathBuf,
        /// Also point this ref at it.
        #[arg(long = "ref", value_name = "NAME")]
        ref_name: Option<RefName>,
    },
    /// Download a blob, by digest or by a ref's name.
    Get {
        /// `sha256:…`, or a ref name.
        blob: String,
        /// Write to this file (resuming an earlier, interrupted download);
        /// without it, to stdout.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Delete a blob.
    #[command(alias = "rm")]
    Delete { digest: Digest },
}

#[derive(clap::Subcommand)]
pub enum RefCommand {
    /// Point a ref at a blob (which must exist).
    Set { name: RefName, digest: Digest },
    /// The blob a ref points at.
    Get { name: RefName },
    /// Refs whose names start with PREFIX (all without one).
    #[command(alias = "ls")]
    List { prefix: Option<RefPrefix> },
    /// Delete a ref (not its blob).
    #[command(alias = "rm")]
    Delete { name: RefName },
}

const POLL: Duration = Duration::from_millis(200);

fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

pub async fn run_blob(ick: &Ick, command: BlobCommand, out: &Out) -> anyhow::Result<Exit> {
    let blobs = ick.blobs()?;
    match command {
        BlobCommand::Put { file, ref_name } => {
            let info = if file == Path::new("-") {
                blobs.upload(tokio::io::stdin()).await?
            } else {
                put_file(&blobs, &file).await?
            };
            if let Some(name) = &ref_name {
                blobs.set_ref(name, &info.digest).await?;
            }
            // The digest alone, so that `D=$(icktool blob put FILE)` works.
            out.print(&info, || format!("{}\n", info.digest))?;
            if let Some(name) = &ref_name {
                eprintln!("ref {name} -> {}", info.digest);
            }
        }
        BlobCommand::Get { blob, file } => {
            let digest = find_blob(&blobs, &blob).await?;
            let size = match &file {
                Some(path) => get_file(&blobs, &digest, path).await?,
                None => {
                    if std::io::stdout().is_terminal() {
                        bail!("not writing a blob to a terminal: give -o FILE, or redirect stdout");
                    }
                    let mut stdout = tokio::io::stdout();
                    blobs.download(&digest, &mut stdout).await?
                }
            };
            if let Some(path) = &file {
                out.print(&BlobInfo { digest, size }, || {
                    format!(
                        "{digest}  {} ({size} bytes, digest checked)\n",
                        path.display()
                    )
                })?;
            }
        }
        BlobCommand::Delete { digest } => {
            if !blobs.delete(&digest).await? {
                bail!("the artifact store has no blob {digest}");
            }
            out.print(
                &serde_json::json!({"digest": digest, "deleted": true}),
                || format!("{digest} deleted\n"),
            )?;
        }
    }
    Ok(Exit::Ok)
}

/// A digest, or the blob a ref names.
async fn find_blob(blobs: &BlobClient, text: &str) -> anyhow::Result<Digest> {
    if let Ok(digest) = text.parse::<Digest>() {
        return Ok(digest);
    }
    let name: RefName = text.parse().map_err(|e| {
        anyhow::anyhow!("{text:?} is neither a digest (sha256:…) nor a ref name: {e}")
    })?;
    blobs
        .get_ref(&name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the artifact store has no ref {name}"))
}

async fn put_file(blobs: &BlobClient, path: &Path) -> anyhow::Result<BlobInfo> {
    let size = tokio::fs::metadata(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let progress = bar(Some(size), "upload");
    if progress.is_hidden() {
        return Ok(blobs.upload_file(path).await?);
    }
    let session = blobs.start_upload().await?;
    let watcher = {
        let (blobs, session, progress) = (blobs.clone(), session.clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(offset) = blobs.upload_offset(&session).await {
                    progress.set_position(offset);
                }
                tokio::time::sleep(POLL).await;
            }
        })
    };
    let result = blobs.resume_upload(&session, path).await;
    watcher.abort();
    match &result {
        Ok(_) => progress.finish_and_clear(),
        Err(_) => progress.abandon(),
    }
    Ok(result?)
}

async fn get_file(blobs: &BlobClient, digest: &Digest, path: &Path) -> anyhow::Result<u64> {
    let total = blobs.stat(digest).await?;
    if total.is_none() {
        bail!("the artifact store has no blob {digest}");
    }
    let progress = bar(total, "download");
    let watcher = (!progress.is_hidden()).then(|| {
        let mut partial = path.as_os_str().to_os_string();
        partial.push(".partial");
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(meta) = tokio::fs::metadata(&partial).await {
                    progress.set_position(meta.len());
                }
                tokio::time::sleep(POLL).await;
            }
        })
    });
    let result = blobs.download_file(digest, path).await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    match &result {
        Ok(_) => progress.finish_and_clear(),
        Err(_) => progress.abandon(),
    }
    Ok(result?)
}

pub async fn run_ref(ick: &Ick, command: RefCommand, out: &Out) -> anyhow::Result<Exit> {
    let blobs = ick.blobs()?;
    match command {
        RefCommand::Set { name, digest } => {
            let info = blobs.set_ref(&name, &digest).await?;
            out.print(&info, || format!("{} -> {}\n", info.name, info.digest))?;
        }
        RefCommand::Get { name } => {
            let Some(digest) = blobs.get_ref(&name).await? else {
                bail!("the artifact store has no ref {name}");
            };
            out.print(&RefInfo { name, digest }, || format!("{digest}\n"))?;
        }
        RefCommand::List { prefix } => {
            let refs = blobs.list_refs(&prefix.unwrap_or_default()).await?;
            let rows = refs
                .iter()
                .map(|r| vec![r.name.to_string(), r.digest.to_string()])
                .collect();
            out.list(&refs, &["name", "digest"], rows, "no refs")?;
        }
        RefCommand::Delete { name } => {
            if !blobs.delete_ref(&name).await? {
                bail!("the artifact store has no ref {name}");
            }
            out.print(&serde_json::json!({"ref": name, "deleted": true}), || {
                format!("ref {name} deleted\n")
            })?;
        }
    }
    Ok(Exit::Ok)
}
