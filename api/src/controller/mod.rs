//! The controller's REST API: what `icktool`, the web hooks and the tests
//! send to and get from `ick-controller`. The work protocol for
//! worker-managers is in [`crate::work`].
//!
//! | method and path | scope |
//! | --- | --- |
//! | `GET /projects`, `GET /projects/{name}`, `GET /projects/{name}/revisions` | `projects:read` |
//! | `PUT /projects/{name}` (YAML body), `DELETE /projects/{name}` | `projects:write` |
//! | the same under `/pipelines` | the same |
//! | `POST /definitions` ([`ApplyRequest`], [`ApplyAnswer`]): files of both, all or nothing | `projects:write` |
//! | `POST /projects/{name}/builds` ([`TriggerRequest`]) | `builds:trigger` |
//! | `GET /builds` ([`BuildQuery`]), `GET /builds/{id}`, `GET /projects/{name}/builds/{number}` | `builds:read` |
//! | `GET /builds/{id}/log`, `GET /builds/{id}/log/stream` (SSE, [`LogEvent`]) | `builds:read` |
//! | `POST /builds/{id}/cancel` | `builds:cancel` |
//! | `POST /builds/{id}/retry` | `builds:trigger` |
//! | `GET /workers` ([`crate::work::WorkerInfo`]) | `builds:read` |
//! | `GET /projects/{name}/trigger-secret`, `POST /projects/{name}/trigger-secret/rotate` ([`TriggerSecret`]) | `projects:write` |
//! | `GET /notifications` ([`NotificationQuery`], [`NotificationList`]) | `builds:read` |
//! | `POST /webhooks/{github,gitea,gitlab,generic}` ([`WebhookAnswer`]) | none: the project's trigger secret signs the body (see [`webhooks`]) |

mod builds;
mod definitions;
mod logs;
mod notifications;
pub mod webhooks;

pub use builds::{
    BuildList, BuildQuery, BuildStatus, BuildSummary, BuildView, LostAttempt, NodeStatus, NodeView,
    TriggerRequest,
};
pub use definitions::{
    Applied, ApplyAnswer, ApplyRequest, Change, DefinitionFile, DefinitionKind, DefinitionProblem,
    Notify, NotifyOn, PipelineSpec, ProjectSpec, Revision, Stored, StoredPipeline, StoredProject,
    is_valid_name,
};
pub use logs::{
    LogChunk, LogCursor, LogEvent, LogQuery, MAX_LOG_PAGE, NEXT_PAGE_HEADER, NodeEvent,
};
pub use notifications::{Notification, NotificationList, NotificationQuery, NotificationStatus};
pub use webhooks::{GenericPush, TriggerSecret, TriggerSpec, WebhookAnswer, WebhookOutcome};
