//! A project's `triggers:`: which pushes start a build. Pure functions:
//! repository URLs compared after normalising, refs matched against globs.

use globset::GlobMatcher;
use ick_api::controller::TriggerSpec;
use ick_definitions::triggers::glob;
pub use ick_definitions::triggers::normalize_repository;

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
}
