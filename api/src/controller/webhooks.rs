//! Web hooks: how git servers start builds (`POST /webhooks/{forge}`), the
//! triggers a project declares, and the per-project secret that proves a
//! hook genuine.
//!
//! | path | proof (on the raw body, checked before it is parsed) | delivery id |
//! | --- | --- | --- |
//! | `/webhooks/github` | `X-Hub-Signature-256: sha256=HEX` (HMAC-SHA256) | `X-GitHub-Delivery` |
//! | `/webhooks/gitea` (Gitea, Forgejo, Gogs) | `X-Gitea-Signature: HEX` (or `X-Forgejo-Signature`, `X-Gogs-Signature`) | `X-Gitea-Delivery` (…) |
//! | `/webhooks/gitlab` | `X-Gitlab-Token: SECRET` | `X-Gitlab-Event-UUID` |
//! | `/webhooks/generic` | `X-Ick-Signature-256: sha256=HEX` | `X-Ick-Delivery` (optional) |
//!
//! The secret is the project's [`TriggerSecret`]; every project's is tried,
//! or only NAME's with `?project=NAME`. A bad or missing proof is
//! 401; a body over the controller's `webhooks.max_body` is 413; JSON that
//! does not parse is 400; none of them triggers anything. Otherwise the
//! answer is a [`WebhookAnswer`]: 201 triggered, 200 for a ping or a
//! delivery already seen, 202 when nothing is to be built (and why).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::controller::BuildSummary;
use crate::secret::Secret;

/// The header of the generic endpoint's signature: `sha256=` and the hex
/// HMAC-SHA256 of the raw body, keyed with the project's trigger secret.
pub const GENERIC_SIGNATURE_HEADER: &str = "X-Ick-Signature-256";
/// The generic endpoint's optional delivery id: a redelivery of the same id
/// triggers nothing.
pub const GENERIC_DELIVERY_HEADER: &str = "X-Ick-Delivery";
/// The generic endpoint's optional event: `push` (the default) or `ping`.
pub const GENERIC_EVENT_HEADER: &str = "X-Ick-Event";

/// One entry of a project's `triggers:`: pushes to this repository start a
/// build when their branch or tag matches.
///
/// ```yaml
/// triggers:
///   - repository: https://github.com/example/hello.git
///     branches: [main, "release/*"]    # default: every branch, unless tags are given
///     tags: ["v*"]                     # default: no tag
/// ```
///
/// Repository URLs match after normalising: the scheme, user, port, a
/// trailing `.git` or `/` and the case of the host do not matter
/// (`git@github.com:example/hello.git` is `https://GitHub.com/example/hello`).
/// Patterns are globs on the name after `refs/heads/` or `refs/tags/`: `*`
/// stops at `/`, `**` does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The repository's URL (any of its clone or web URLs).
    pub repository: String,
    /// Branch patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// Tag patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `GET /projects/{name}/trigger-secret` (made on first use) and
/// `POST /projects/{name}/trigger-secret/rotate` (a new one; the old one
/// stops working): scope `projects:write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerSecret {
    /// The project.
    pub project: String,
    /// The secret to give the forge (64 hex digits).
    pub secret: Secret,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// The body of `POST /webhooks/generic`, e.g. from
/// `deploy/git-hooks/post-receive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenericPush {
    /// The repository's URL, as the project's trigger names it.
    pub repository: String,
    /// The full ref: `refs/heads/main`, `refs/tags/v1.0`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit the ref now points at; 40 zeros when it was deleted.
    pub commit: String,
}

/// What a web hook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookOutcome {
    /// A build was triggered (201).
    Triggered,
    /// This delivery id was seen before; nothing new was triggered (200).
    Duplicate,
    /// A ping: the hook is set up right (200).
    Pong,
    /// Nothing to build: another event, a deleted ref, or no trigger of
    /// the project matches (202); `message` says which.
    Ignored,
}

/// The answer to `POST /webhooks/{forge}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookAnswer {
    /// What happened.
    pub outcome: WebhookOutcome,
    /// Why, for a person reading the forge's delivery log.
    pub message: String,
    /// The project whose secret signed the request.
    pub project: String,
    /// The build triggered (or, for a duplicate, the one triggered first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSummary>,
}
