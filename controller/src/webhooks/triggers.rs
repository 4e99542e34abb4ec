//! A project's `triggers:`: which pushes start a build. Pure functions:
//! repository URLs compared after normalising, refs matched against globs.

use globset::{Glob, GlobBuilder, GlobMatcher};
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

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
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

/// What a push names: a branch or a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefName<'a> {
    Branch(&'a str),
    Tag(&'a str),
}

impl<'a> RefName<'a> {
    /// `refs/heads/X` or `refs/tags/X`; `None` for other refs.
    pub fn parse(full: &'a str) -> Option<RefName<'a>> {
        if let Some(b) = full.strip_prefix("refs/heads/") {
            Some(RefName::Branch(b))
        } else {
            full.strip_prefix("refs/tags/").map(RefName::Tag)
        }
    }
}

fn any_matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        glob(p)
            .map(|g| g.compile_matcher())
            .as_ref()
            .is_ok_and(|m: &GlobMatcher| m.is_match(name))
    })
}

/// Whether a push of `git_ref` matches the trigger's branch and tag
/// patterns: with neither, every branch (and no tag).
pub fn ref_matches(trigger: &TriggerSpec, git_ref: &str) -> bool {
    match RefName::parse(git_ref) {
        Some(RefName::Branch(b)) => {
            if trigger.branches.is_empty() {
                trigger.tags.is_empty()
            } else {
                any_matches(&trigger.branches, b)
            }
        }
        Some(RefName::Tag(t)) => any_matches(&trigger.tags, t),
        None => false,
    }
}

/// How a URL reaches a repository: the same kind of URL as a trigger's
/// is the one to clone from (an SSH URL for keys, HTTPS for tokens).
fn kind(url: &str) -> &'static str {
    match url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()) {
        Some(s) if s == "http" || s == "https" => "http",
        Some(s) if s.contains("ssh") => "ssh",
        Some(s) if s == "git" => "git",
        Some(_) => "file",
        None if url.starts_with('/') => "file",
        None => "ssh",
    }
}

/// The URL to build a push of `urls` from, if the trigger names the
/// repository: of the URLs git clones from (the first `clone_urls`),
/// the trigger's own text, else the first of the same kind, else the
/// first. `None` if no URL of the push is the trigger's repository.
pub fn matching_url(trigger: &TriggerSpec, urls: &[String], clone_urls: usize) -> Option<String> {
    let wanted = normalize_repository(&trigger.repository)?;
    let same = |u: &&String| normalize_repository(u).as_deref() == Some(wanted.as_str());
    if !urls.iter().any(|u| same(&u)) {
        return None;
    }
    let clones: Vec<&String> = urls.iter().take(clone_urls).filter(same).collect();
    let candidates = if clones.is_empty() {
        urls.iter().filter(same).collect()
    } else {
        clones
    };
    let exact = candidates
        .iter()
        .find(|u| u.trim_end_matches('/') == trigger.repository.trim_end_matches('/'));
    let by_kind = candidates
        .iter()
        .find(|u| kind(u) == kind(&trigger.repository));
    exact
        .or(by_kind)
        .or(candidates.first())
        .map(|u| u.to_string())
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
    fn without_patterns_every_branch_and_no_tag_matches() {
        let t = trigger("https://x.org/r", &[], &[]);
        assert!(ref_matches(&t, "refs/heads/main"));
        assert!(ref_matches(&t, "refs/heads/feature/a"));
        assert!(!ref_matches(&t, "refs/tags/v1"));
        assert!(!ref_matches(&t, "refs/pull/1/head"));
    }

    #[test]
    fn patterns_select_branches_and_tags() {
        let t = trigger("https://x.org/r", &["main", "release/*"], &["v*"]);
        assert!(ref_matches(&t, "refs/heads/main"));
        assert!(ref_matches(&t, "refs/heads/release/1.0"));
        assert!(!ref_matches(&t, "refs/heads/release/1.0/hotfix"));
        assert!(!ref_matches(&t, "refs/heads/feature"));
        assert!(!ref_matches(&t, "refs/heads/mainline"));
        assert!(ref_matches(&t, "refs/tags/v1.2"));
        assert!(!ref_matches(&t, "refs/tags/nightly"));
        let tags_only = trigger("https://x.org/r", &[], &["**"]);
        assert!(!ref_matches(&tags_only, "refs/heads/main"));
        assert!(ref_matches(&tags_only, "refs/tags/a/b"));
    }

    #[test]
    fn the_url_to_clone_is_of_the_trigger_s_kind() {
        let urls: Vec<String> = [
            "https://github.com/o/r.git",
            "ssh://git@github.com:22/o/r.git",
            "https://github.com/o/r",
        ]
        .map(String::from)
        .to_vec();
        let m = |t: &str| matching_url(&trigger(t, &[], &[]), &urls, 2);
        assert_eq!(
            m("git@github.com:o/r.git").as_deref(),
            Some(urls[1].as_str())
        );
        assert_eq!(
            m("ssh://git@github.com:22/o/r.git").as_deref(),
            Some(urls[1].as_str())
        );
        // The web page is the same repository, but git clones from the clone URL.
        assert_eq!(
            m("https://github.com/o/r").as_deref(),
            Some(urls[0].as_str())
        );
        assert_eq!(m("git://github.com/o/r").as_deref(), Some(urls[0].as_str()));
        assert_eq!(m("https://github.com/o/other"), None);
        // Only a web URL: that one.
        let web = vec!["https://x.org/o/r".to_string()];
        assert_eq!(
            matching_url(&trigger("https://x.org/o/r.git", &[], &[]), &web, 0).as_deref(),
            Some("https://x.org/o/r")
        );
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
