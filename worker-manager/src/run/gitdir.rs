//! A `.git` found in the workspace is the build's work: an action may have
//! planted hooks, a config that runs commands (`core.fsmonitor`,
//! `filter.*`, `core.sshCommand`, `include.path`, `url.*.insteadOf`...), or
//! links that lead git to another repository. Before host-side git uses
//! one, it is either made safe or removed, to be made anew.
//!
//! Removed: a `.git` that is not a plain directory (a `gitdir:` file, a
//! link), or that holds a symbolic link, `commondir`, object alternates,
//! or a repository extension other than the object format. Otherwise its
//! config is written anew with only the settings below (an allowlist:
//! anything else, known or not, is dropped). Hooks are not removed but
//! never run: git always runs with `core.hooksPath=/dev/null`.

use std::path::Path;

/// `core.*` settings kept, with values that are one plain word.
const KEPT_CORE: [&str; 7] = [
    "repositoryformatversion",
    "filemode",
    "bare",
    "logallrefupdates",
    "ignorecase",
    "precomposeunicode",
    "symlinks",
];

/// Files in `.git` that lead git elsewhere.
const LEADING_ELSEWHERE: [&str; 4] = [
    "commondir",
    "gitdir",
    "objects/info/alternates",
    "objects/info/http-alternates",
];

/// What was done to the `.git` of a directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// There was none.
    Missing,
    /// Its config was rewritten; it may be fetched into.
    Kept,
    /// It was removed, for this reason.
    Removed(String),
}

/// Makes `dir/.git` safe for host-side git, or removes it. Blocking.
pub fn prepare(dir: &Path) -> std::io::Result<Prepared> {
    let dot_git = dir.join(".git");
    let meta = match std::fs::symlink_metadata(&dot_git) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Prepared::Missing),
        Err(e) => return Err(e),
    };
    let why = if meta.is_dir() {
        untrusted(&dot_git)?
    } else {
        Some("it is not a directory".to_string())
    };
    let why = match why {
        Some(why) => why,
        None => match kept_config(&dot_git)? {
            Ok(config) => {
                let tmp = dot_git.join("config.ick-new");
                std::fs::write(&tmp, config)?;
                std::fs::rename(&tmp, dot_git.join("config"))?;
                // Read only with extensions.worktreeConfig, which is not
                // kept; gone all the same.
                remove_if_there(&dot_git.join("config.worktree"))?;
                return Ok(Prepared::Kept);
            }
            Err(why) => why,
        },
    };
    if meta.is_dir() {
        std::fs::remove_dir_all(&dot_git)?;
    } else {
        std::fs::remove_file(&dot_git)?;
    }
    Ok(Prepared::Removed(why))
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Why a `.git` directory cannot be kept, if it cannot.
fn untrusted(dot_git: &Path) -> std::io::Result<Option<String>> {
    for name in LEADING_ELSEWHERE {
        if std::fs::symlink_metadata(dot_git.join(name)).is_ok() {
            return Ok(Some(format!("it has {name}")));
        }
    }
    let mut stack = vec![dot_git.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                let path = entry.path();
                let shown = path.strip_prefix(dot_git).unwrap_or(&path).display();
                return Ok(Some(format!("it holds the symbolic link {shown}")));
            }
            if kind.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(None)
}

/// The config to write instead of the one in `dot_git`, or why there is
/// none that would do.
fn kept_config(dot_git: &Path) -> std::io::Result<Result<String, String>> {
    let text = match std::fs::read(dot_git.join("config")) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut core = Vec::new();
    let mut object_format = None;
    for (section, key, value) in entries(&text) {
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        match section.as_str() {
            "core" if KEPT_CORE.contains(&key.as_str()) && plain => {
                // A bare repository has no work tree to check out into.
                if key == "bare" && value != "false" {
                    continue;
                }
                core.retain(|(k, _): &(String, String)| *k != key);
                core.push((key, value));
            }
            "extensions" if key == "objectformat" && plain => object_format = Some(value),
            "extensions" => {
                return Ok(Err(format!(
                    "its config names the repository extension {key}"
                )));
            }
            _ => {}
        }
    }
    let mut config = String::from("[core]\n");
    for (key, value) in core {
        config.push_str(&format!("\t{key} = {value}\n"));
    }
    if let Some(format) = object_format {
        config.push_str(&format!("[extensions]\n\tobjectformat = {format}\n"));
    }
    Ok(Ok(config))
}

/// The `(section, key, value)` of a git config, sections and keys in
/// lower case, the subsection kept in the section (`remote "origin"`).
/// A reading that errs only drops settings: only allowlisted ones, with
/// plain values, are ever written back.
fn entries(text: &str) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let mut line = line.trim();
        if let Some(rest) = line.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                section.clear();
                continue;
            };
            let header = rest[..end].trim();
            section = match header.split_once(char::is_whitespace) {
                Some((name, sub)) => format!("{} {}", name.to_ascii_lowercase(), sub.trim()),
                None => header.to_ascii_lowercase(),
            };
            line = rest[end + 1..].trim();
            if line.is_empty() {
                continue;
            }
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key.trim(), value.trim()),
            None => (line, "true"),
        };
        let value = value
            .split(['#', ';'])
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"');
        found.push((section.clone(), key.to_ascii_lowercase(), value.to_string()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_dir(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(".git/objects/info")).expect("mkdir");
        std::fs::write(dir.path().join(".git/config"), config).expect("write");
        dir
    }

    #[test]
    fn a_config_keeps_only_the_allowlisted_settings() {
        let dir = git_dir(
            "[core]\n\trepositoryformatversion = 1\n\tfilemode = true\n\tbare = true\n\
             \tfsmonitor = /tmp/evil\n\tsshCommand = evil\n\thooksPath = /tmp\n\
             [core \"x\"]\n\tfilemode = weird value\n\
             [extensions]\n\tobjectFormat = sha256\n\
             [filter \"lfs\"]\n\tsmudge = evil\n[include]\n\tpath = /tmp/evil\n\
             [url \"/evil\"]\n\tinsteadOf = /real\n[remote \"o\"]\n\tuploadpack = evil\n",
        );
        assert_eq!(prepare(dir.path()).expect("prepare"), Prepared::Kept);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".git/config")).expect("read"),
            "[core]\n\trepositoryformatversion = 1\n\tfilemode = true\n\
             [extensions]\n\tobjectformat = sha256\n"
        );
    }

    #[test]
    fn a_git_dir_that_leads_elsewhere_is_removed() {
        let dir = git_dir("[extensions]\n\tworktreeConfig = true\n");
        assert_eq!(
            prepare(dir.path()).expect("prepare"),
            Prepared::Removed("its config names the repository extension worktreeconfig".into())
        );
        assert!(!dir.path().join(".git").exists());
        let dir = git_dir("");
        std::fs::write(dir.path().join(".git/objects/info/alternates"), "/x").expect("write");
        assert!(matches!(
            prepare(dir.path()).expect("prepare"),
            Prepared::Removed(_)
        ));
        let dir = git_dir("");
        std::os::unix::fs::symlink("/etc", dir.path().join(".git/objects/pack")).expect("link");
        assert!(matches!(
            prepare(dir.path()).expect("prepare"),
            Prepared::Removed(_)
        ));
        assert!(
            std::path::Path::new("/etc").is_dir(),
            "the link's target stays"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".git"), "gitdir: /elsewhere\n").expect("write");
        assert!(matches!(
            prepare(dir.path()).expect("prepare"),
            Prepared::Removed(_)
        ));
        assert_eq!(prepare(dir.path()).expect("prepare"), Prepared::Missing);
    }
}
