//! Definition files, as `icktool apply` finds and reads them; the
//! controller parses them (with `ick-definitions`) and checks them all.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
pub use ick_definitions::files::kind_name;

/// A definition file's name (for messages) and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// The files `-f PATH` names: the file itself, `-` for stdin, or the
/// `*.yaml`, `*.yml` and `*.ick` files of a folder (not its sub-folders),
/// sorted.
pub fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path == Path::new("-") {
        return Ok(vec![path.to_path_buf()]);
    }
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
    {
        let p = entry?.path();
        let definition_file = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "ick"));
        if definition_file && p.is_file() {
            found.push(p);
        }
    }
    found.sort();
    if found.is_empty() {
        bail!("{} holds no *.yaml, *.yml or *.ick file", path.display());
    }
    Ok(found)
}

/// Reads every file `paths` name.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<SourceFile>> {
    let mut all = Vec::new();
    for path in paths {
        for file in files(path)? {
            let source = if file == Path::new("-") {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .context("cannot read stdin")?;
                SourceFile {
                    name: "<stdin>".to_string(),
                    text,
                }
            } else {
                SourceFile {
                    text: std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                    name: file.display().to_string(),
                }
            };
            all.push(source);
        }
    }
    Ok(all)
}
