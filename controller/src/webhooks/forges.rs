//! What each forge sends: where its proof, delivery id and event are, and
//! how its push payload names the repository, the ref and the commit.

use axum::http::HeaderMap;
use ick_api::controller::GenericPush;
use ick_api::controller::webhooks::{
    GENERIC_DELIVERY_HEADER, GENERIC_EVENT_HEADER, GENERIC_SIGNATURE_HEADER,
};
use serde_json::Value;

use super::signature::Proof;

/// The sender of a web hook: one per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    /// Gitea, Forgejo and Gogs.
    Gitea,
    GitLab,
    /// `deploy/git-hooks/post-receive` and anything else that signs a
    /// [`GenericPush`].
    Generic,
}

/// What the request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push,
    Ping,
    /// Anything else, by the forge's name for it.
    Other(String),
}

/// A push, as the payload tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The repository's URLs: those git clones from first, then web pages.
    pub urls: Vec<String>,
    /// How many of `urls` git clones from.
    pub clone_urls: usize,
    /// The full ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// The commit the ref points at now.
    pub commit: String,
    /// The ref was deleted.
    pub deleted: bool,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn first_header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| header(headers, n))
}

const GITEA_SIGNATURES: [&str; 3] = [
    "X-Gitea-Signature",
    "X-Forgejo-Signature",
    "X-Gogs-Signature",
];
const GITEA_DELIVERIES: [&str; 3] = ["X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery"];
const GITEA_EVENTS: [&str; 3] = ["X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event"];

fn is_zero_commit(commit: &str) -> bool {
    !commit.is_empty() && commit.chars().all(|c| c == '0')
}

impl Forge {
    /// Its name in paths, logs and `triggered_by`.
    pub fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::GitLab => "gitlab",
            Forge::Generic => "generic",
        }
    }

    /// The proof the request carries; `Err` says what is missing or wrong.
    pub fn proof(self, headers: &HeaderMap) -> Result<Proof, String> {
        let (names, prefixed): (&[&str], bool) = match self {
            Forge::GitHub => (&["X-Hub-Signature-256"], true),
            Forge::Gitea => (&GITEA_SIGNATURES, false),
            Forge::Generic => (&[GENERIC_SIGNATURE_HEADER], true),
            Forge::GitLab => {
                return header(headers, "X-Gitlab-Token")
                    .map(|t| Proof::Token(t.as_bytes().to_vec()))
                    .ok_or_else(|| "no X-Gitlab-Token header: set the hook's secret token".into());
            }
        };
        let value = first_header(headers, names).ok_or_else(|| {
            format!(
                "no {} header: set the hook's secret to the project's trigger secret",
                names.join(" or ")
            )
        })?;
        Proof::hmac_header(value, prefixed).map_err(|e| format!("{}: {e}", names[0]))
    }

    /// The delivery id, which a redelivery repeats.
    pub fn delivery(self, headers: &HeaderMap) -> Option<String> {
        let names: &[&str] = match self {
            Forge::GitHub => &["X-GitHub-Delivery"],
            Forge::Gitea => &GITEA_DELIVERIES,
            Forge::GitLab => &["X-Gitlab-Event-UUID"],
            Forge::Generic => &[GENERIC_DELIVERY_HEADER],
        };
        first_header(headers, names).map(|d| d.chars().take(200).collect())
    }

    /// The event; `Err` if the forge's event header is missing.
    pub fn event(self, headers: &HeaderMap) -> Result<Event, String> {
        let (names, value): (&[&str], Option<&str>) = match self {
            Forge::GitHub => (&["X-GitHub-Event"], header(headers, "X-GitHub-Event")),
            Forge::Gitea => (&GITEA_EVENTS, first_header(headers, &GITEA_EVENTS)),
            Forge::GitLab => (&["X-Gitlab-Event"], header(headers, "X-Gitlab-Event")),
            Forge::Generic => (
                &[GENERIC_EVENT_HEADER],
                Some(header(headers, GENERIC_EVENT_HEADER).unwrap_or("push")),
            ),
        };
        let value = value.ok_or_else(|| format!("no {} header", names.join(" or ")))?;
        Ok(match (self, value) {
            (Forge::GitHub | Forge::Gitea | Forge::Generic, "push") => Event::Push,
            (Forge::GitHub | Forge::Generic, "ping") => Event::Ping,
            (Forge::GitLab, "Push Hook" | "Tag Push Hook" | "System Hook") => Event::Push,
            (_, other) => Event::Other(other.chars().take(100).collect()),
        })
    }

    /// Reads a push from the body; `Err` says what is wrong with it.
    /// The repository URLs a payload names, found before its signature is
    /// checked so that only the secrets of projects whose triggers name
    /// one are tried. One linear pass that keeps only these fields (serde
    /// skips the rest unbuilt, and refuses nesting past 128); empty if the
    /// body is not the forge's JSON or names no repository.
    pub fn repository_urls(self, body: &[u8]) -> Vec<String> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Urls {
            clone_url: Option<String>,
            ssh_url: Option<String>,
            git_url: Option<String>,
            html_url: Option<String>,
            git_http_url: Option<String>,
            git_ssh_url: Option<String>,
            web_url: Option<String>,
            homepage: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Named {
            repository: Option<Urls>,
            project: Option<Urls>,
        }
        #[derive(serde::Deserialize)]
        struct Generic {
            repository: String,
        }
        if self == Forge::Generic {
            return serde_json::from_slice::<Generic>(body)
                .map(|g| vec![g.repository])
                .unwrap_or_default();
        }
        let Ok(named) = serde_json::from_slice::<Named>(body) else {
            return Vec::new();
        };
        let project = if self == Forge::GitLab {
            named.project
        } else {
            None
        };
        named
            .repository
            .into_iter()
            .chain(project)
            .flat_map(|u| {
                [
                    u.clone_url,
                    u.ssh_url,
                    u.git_url,
                    u.html_url,
                    u.git_http_url,
                    u.git_ssh_url,
                    u.web_url,
                    u.homepage,
                ]
            })
            .flatten()
            .filter(|u| !u.is_empty())
            .collect()
    }

    pub fn parse_push(self, body: &[u8]) -> Result<Push, String> {
        if self == Forge::Generic {
            let push: GenericPush = serde_json::from_slice(body)
                .map_err(|e| format!("the body is not a push (repository, ref, commit): {e}"))?;
            return Ok(Push {
                deleted: is_zero_commit(&push.commit),
                urls: vec![push.repository],
                clone_urls: 1,
                git_ref: push.git_ref,
                commit: push.commit,
            });
        }
        let json: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        if !json.is_object() {
            return Err("the body is not a JSON object".to_string());
        }
        let text = |v: &Value, path: &[&str]| -> Option<String> {
            path.iter()
                .try_fold(v, |v, key| v.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let git_ref = text(&json, &["ref"]).ok_or("the push has no \"ref\"")?;
        // The URLs git clones from, then the web pages.
        let (clone_paths, web_paths): (&[&[&str]], &[&[&str]]) = match self {
            Forge::GitHub => (
                &[
                    &["repository", "clone_url"],
                    &["repository", "ssh_url"],
                    &["repository", "git_url"],
                ],
                &[&["repository", "html_url"]],
            ),
            Forge::Gitea => (
                &[&["repository", "clone_url"], &["repository", "ssh_url"]],
                &[&["repository", "html_url"]],
            ),
            Forge::GitLab => {
                let kind = text(&json, &["object_kind"]).unwrap_or_default();
                if kind != "push" && kind != "tag_push" {
                    return Err(format!(
                        "object_kind {kind:?} is not a push (push or tag_push)"
                    ));
                }
                (
                    &[
                        &["project", "git_http_url"],
                        &["project", "git_ssh_url"],
                        &["repository", "git_http_url"],
                        &["repository", "git_ssh_url"],
                    ],
                    &[&["project", "web_url"], &["repository", "homepage"]],
                )
            }
            Forge::Generic => (&[], &[]),
        };
        let mut urls: Vec<String> = Vec::new();
        let mut clone_urls = 0;
        for (i, path) in clone_paths.iter().chain(web_paths).enumerate() {
            if let Some(url) = text(&json, path)
                && !urls.contains(&url)
            {
                urls.push(url);
                if i < clone_paths.len() {
                    clone_urls += 1;
                }
            }
        }
        if urls.is_empty() {
            return Err("the push names no repository URL".to_string());
        }
        let after = text(&json, &["after"]);
        let deleted = json.get("deleted").and_then(Value::as_bool) == Some(true)
            || after.as_deref().is_some_and(is_zero_commit);
        let commit = match after {
            Some(after) => after,
            None if deleted => String::new(),
            None => return Err("the push has no \"after\" commit".to_string()),
        };
        Ok(Push {
            urls,
            clone_urls,
            git_ref,
            commit,
            deleted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_forge_names_its_event() {
        let mut h = HeaderMap::new();
        h.insert("X-GitHub-Event", "ping".parse().expect("value"));
        assert_eq!(Forge::GitHub.event(&h), Ok(Event::Ping));
        h.insert("X-Gitlab-Event", "Tag Push Hook".parse().expect("value"));
        assert_eq!(Forge::GitLab.event(&h), Ok(Event::Push));
        h.insert("X-Forgejo-Event", "pull_request".parse().expect("value"));
        assert_eq!(
            Forge::Gitea.event(&h),
            Ok(Event::Other("pull_request".into()))
        );
        assert_eq!(Forge::Generic.event(&HeaderMap::new()), Ok(Event::Push));
        assert!(Forge::GitHub.event(&HeaderMap::new()).is_err());
    }

    #[test]
    fn a_deleted_branch_is_seen() {
        let body = br#"{"ref":"refs/heads/x","after":"0000000000000000000000000000000000000000",
            "deleted":true,"repository":{"clone_url":"https://github.com/o/r.git"}}"#;
        assert!(Forge::GitHub.parse_push(body).expect("push").deleted);
        let body = br#"{"repository":"/srv/r.git","ref":"refs/heads/x","commit":"0000000000000000000000000000000000000000"}"#;
        assert!(Forge::Generic.parse_push(body).expect("push").deleted);
    }

    #[test]
    fn the_repository_is_found_without_reading_the_rest() {
        let body = br#"{"ref":"x","commits":[{"deep":[[[[1]]]]}],"repository":{"clone_url":"https://g/o/r.git","html_url":"https://g/o/r","owner":{"html_url":"https://g/o"}}}"#;
        assert_eq!(
            Forge::GitHub.repository_urls(body),
            ["https://g/o/r.git", "https://g/o/r"]
        );
        let gitlab =
            br#"{"project":{"git_http_url":"https://l/p.git"},"repository":{"homepage":null}}"#;
        assert_eq!(Forge::GitLab.repository_urls(gitlab), ["https://l/p.git"]);
        assert_eq!(Forge::GitHub.repository_urls(gitlab), Vec::<String>::new());
        assert_eq!(
            Forge::Generic.repository_urls(br#"{"repository":"/srv/r.git","ref":"x"}"#),
            ["/srv/r.git"]
        );
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Forge::GitHub.repository_urls(deep.as_bytes()).is_empty());
        for bad in [&b"{"[..], b"[]", b"{\"repository\":3}", b"\xff"] {
            assert!(Forge::GitHub.repository_urls(bad).is_empty());
        }
    }

    #[test]
    fn malformed_pushes_are_named() {
        assert!(Forge::GitHub.parse_push(b"{").is_err());
        assert!(Forge::GitHub.parse_push(b"[]").is_err());
        assert!(
            Forge::GitHub
                .parse_push(br#"{"ref":"refs/heads/x"}"#)
                .is_err()
        );
        assert!(
            Forge::GitLab
                .parse_push(br#"{"object_kind":"issue","ref":"x"}"#)
                .is_err()
        );
        assert!(Forge::Generic.parse_push(br#"{"ref":"x"}"#).is_err());
    }
}
