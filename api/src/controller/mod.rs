//! The controller's REST API: what `icktool`, the web hooks and the tests
//! send to and get from `ick-controller`. The work protocol for
//! worker-managers is in [`crate::work`].
//!
//! Each call needs a scope (the most its token may do) and a role on the
//! project it is about (see [`members`]): the scope is checked first (403
//! naming the scope), then the role (403, or 404 for a private project the
//! caller may not see). Reading a project needs no role unless it is
//! private ([`Visibility`]); a public one is read without a token too.
//!
//! | method and path | scope | role |
//! | --- | --- | --- |
//! | `GET /projects`, `GET /projects/{name}`, `GET /projects/{name}/revisions` | `projects:read` | reader (anyone for `public`: `GET /projects/{name}`) |
//! | `PUT /projects/{name}` (YAML body) | `projects:write` | `maintainer`; a new one `creator` |
//! | `DELETE /projects/{name}` | `projects:write` | `owner` |
//! | `GET /pipelines…` | `projects:read` | reader of a project that runs it (anyone with a token if none does) |
//! | `PUT /pipelines/{name}`, `DELETE /pipelines/{name}` | `projects:write` | `maintainer` of every project that runs it; `creator` or a `maintainer` of some project if none does |
//! | `POST /definitions` ([`ApplyRequest`], [`ApplyAnswer`]): files of both, all or nothing | `projects:write` | each definition as above |
//! | `POST /projects/{name}/builds` ([`TriggerRequest`]) | `builds:trigger` | `developer` |
//! | `GET /builds` ([`BuildQuery`]), `GET /builds/{id}`, `GET /projects/{name}/builds/{number}` | `builds:read` | reader (anyone for `public`) |
//! | `GET /builds/{id}/log`, `GET /builds/{id}/log/stream` (SSE, [`LogEvent`]) | `builds:read` | reader (anyone for `public`) |
//! | `POST /builds/{id}/cancel` | `builds:cancel` | `developer` |
//! | `POST /builds/{id}/retry` | `builds:trigger` | `developer` |
//! | `GET /workers` ([`crate::work::WorkerInfo`]) | `builds:read` | — |
//! | `GET /analytics` ([`AnalyticsQuery`], [`Analytics`]) | `builds:read` | reader of `project=` (anyone for `public`); without it, of each project counted |
//! | `GET /projects/{name}/trigger-secret`, `POST /projects/{name}/trigger-secret/rotate` ([`TriggerSecret`]) | `projects:write` | `maintainer` |
//! | `GET /projects/{name}/members`; `PUT`, `DELETE …/members/{member}` ([`members`]) | `projects:read`; `projects:write` | reader; `owner` |
//! | `GET /roles`; `PUT /roles`, `DELETE /roles/{member}/{role}` ([`members`]) | `projects:read`; `projects:write` | `admin` |
//! | `GET /audit` ([`AuditQuery`], [`AuditList`]) | `projects:read` | `admin`, or `owner` of `project=` |
//! | `GET /notifications` ([`NotificationQuery`], [`NotificationList`]) | `builds:read` | reader of each build's project |
//! | `POST /webhooks/{github,gitea,gitlab,generic}` ([`WebhookAnswer`]) | none: the project's trigger secret signs the body (see [`webhooks`]) | — |
//!
//! An `admin` has every role on every project; lists show only what the
//! caller may read.

mod analytics;
mod builds;
mod definitions;
mod logs;
pub mod members;
mod notifications;
pub mod webhooks;

pub use crate::audit::{AuditAction, AuditEntry, AuditList, AuditQuery};
pub use analytics::{
    Analytics, AnalyticsQuery, COMMIT_TIME_PARAMETER, Day, FlakyAction, LeadTime, Outcomes,
    Percentiles, Recovery, SlowAction, SlowPipeline,
};
pub use builds::{
    BuildList, BuildQuery, BuildStatus, BuildSummary, BuildView, LostAttempt, NodeStatus, NodeView,
    TriggerRequest,
};
pub use definitions::{
    Applied, ApplyAnswer, ApplyRequest, Change, DefinitionFile, DefinitionKind, DefinitionProblem,
    Notify, NotifyOn, PipelineSpec, ProjectSpec, Revision, Stored, StoredPipeline, StoredProject,
    Visibility, is_valid_name,
};
pub use logs::{
    LogChunk, LogCursor, LogEvent, LogQuery, MAX_LOG_PAGE, NEXT_PAGE_HEADER, NodeEvent,
};
pub use members::{
    GlobalRole, Member, MemberRequest, Membership, ProjectAccess, ProjectRole, RoleBinding,
    RoleRequest,
};
pub use notifications::{Notification, NotificationList, NotificationQuery, NotificationStatus};
pub use webhooks::{GenericPush, TriggerSecret, TriggerSpec, WebhookAnswer, WebhookOutcome};
