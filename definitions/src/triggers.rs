//! A project's `triggers:` as applied: repository URLs and the branch and
//! tag patterns. Matching pushes against them is the controller's.

use globset::{Glob, GlobBuilder};
use ick_api::controller::TriggerSpec;

/// A repository URL reduced to what names the repository: the host in
/// lower case and the path, without scheme, user, port, `.git` or a
/// trailing `/`. `https://GitHub.com/o/r.git`, `git@github.com:o/r` and
/// `ssh://git@github.com:22/o/r/` are all `github.com/o/r`; a local path
/// (or `file://` URL) is its path, e.g. `/srv/git/r`. `None` if it is
/// not a repository URL.
pub fn normalize_repository(url: &str) -> Option<String> {
    let url = url.trim();
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "file" => (String::new(), rest.to_string()),
            "http" | "https" | "ssh" | "git" | "git+ssh" | "ssh+git" => {
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                (host_of(authority)?, path.to_string())
            }
            _ => return None,
        }
    } else if url.starts_with('/') {
        (String::new(), url.to_string())
    } else {
        // scp-like: [user@]host:path
        let (authority, path) = url.split_once(':')?;
        if authority.contains('/') || path.starts_with("//") {
            return None;
        }
        (host_of(authority)?, path.to_string())
    };
    let mut path = path.trim_matches('/').to_string();
    if let Some(stripped) = path.strip_suffix(".git") {
        path = stripped.trim_end_matches('/').to_string();
    }
    if path.is_empty() || path.chars().any(char::is_whitespace) {
        return None;
    }
    Some(if host.is_empty() {
        format!("/{path}")
    } else {
        format!("{host}/{path}")
    })
}

/// The host of `[user@]host[:port]`, in lower case.
fn host_of(authority: &str) -> Option<String> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        // [IPv6]:port
        format!("[{}]", rest.split_once(']')?.0)
    } else {
        host_port.split(':').next().unwrap_or_default().to_string()
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// A branch or tag pattern: `*` stays within a `/` segment.
pub fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Checks a trigger as a project is applied: an error names what is wrong.
pub fn check_trigger(n: usize, trigger: &TriggerSpec) -> Result<(), String> {
    if normalize_repository(&trigger.repository).is_none() {
        return Err(format!(
            "trigger {n}: repository {:?} is not a repository URL (e.g. https://example.org/hello.git, \
             git@example.org:hello.git or /srv/git/hello.git)",
            trigger.repository
        ));
    }
    for (what, patterns) in [("branch", &trigger.branches), ("tag", &trigger.tags)] {
        for p in patterns.iter() {
            if p.is_empty() {
                return Err(format!("trigger {n}: an empty {what} pattern"));
            }
            glob(p).map_err(|e| format!("trigger {n}: {what} pattern {p:?} is not valid: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(repository: &str, branches: &[&str], tags: &[&str]) -> TriggerSpec {
        TriggerSpec {
            repository: repository.into(),
            branches: branches.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn urls_of_one_repository_normalise_alike() {
        for url in [
            "https://github.com/Owner/Repo.git",
            "https://GitHub.com/Owner/Repo",
            "http://github.com/Owner/Repo/",
            "git@github.com:Owner/Repo.git",
            "ssh://git@GITHUB.COM:22/Owner/Repo.git",
            "git://github.com/Owner/Repo",
            "https://user:token@github.com:443/Owner/Repo.git/",
        ] {
            assert_eq!(
                normalize_repository(url).as_deref(),
                Some("github.com/Owner/Repo"),
                "{url}"
            );
        }
        // The path's case matters: it names another repository on most servers.
        assert_ne!(
            normalize_repository("https://github.com/owner/repo"),
            normalize_repository("https://github.com/Owner/Repo")
        );
        assert_eq!(
            normalize_repository("file:///srv/git/hello.git").as_deref(),
            Some("/srv/git/hello")
        );
        assert_eq!(
            normalize_repository("/srv/git/hello.git/").as_deref(),
            Some("/srv/git/hello")
        );
        for bad in [
            "",
            "hello",
            "ftp://x/y",
            "https://",
            "https://host",
            "https://host/",
            "a b:c",
        ] {
            assert_eq!(normalize_repository(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_triggers_are_named() {
        assert!(check_trigger(1, &trigger("https://x.org/r", &["main"], &["v*"])).is_ok());
        let e = check_trigger(2, &trigger("nowhere", &[], &[])).expect_err("refused");
        assert!(e.starts_with("trigger 2: repository \"nowhere\""), "{e}");
        let e =
            check_trigger(1, &trigger("https://x.org/r", &["[main"], &[])).expect_err("refused");
        assert!(e.contains("branch pattern \"[main\""), "{e}");
        assert!(check_trigger(1, &trigger("https://x.org/r", &[], &[""])).is_err());
    }
}
