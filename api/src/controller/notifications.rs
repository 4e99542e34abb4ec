//! Mail about how builds ended: the outbox as `GET /notifications` shows
//! it (scope `builds:read`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::controller::BuildStatus;

/// Where a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    /// Not sent yet: waiting for its first or next try.
    Pending,
    /// The mail server accepted it.
    Sent,
    /// It kept failing (or the server refused it for good); `last_error`
    /// says why. It is kept, not retried.
    Failed,
}

impl NotificationStatus {
    /// Every status.
    pub const ALL: [NotificationStatus; 3] = [
        NotificationStatus::Pending,
        NotificationStatus::Sent,
        NotificationStatus::Failed,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sent => "sent",
            NotificationStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for NotificationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NotificationStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotificationStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown notification status {s:?}: use pending, sent or failed")
            })
    }
}

/// One mail about one build's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Its id.
    pub id: String,
    /// The build.
    pub build_id: String,
    /// The build's project.
    pub project: String,
    /// The build's number.
    pub number: i64,
    /// The build's run that ended.
    pub run: i64,
    /// How the build ended.
    pub build_status: BuildStatus,
    /// Who it goes to.
    pub recipients: Vec<String>,
    /// Where it is.
    pub status: NotificationStatus,
    /// Tries so far.
    pub attempts: i64,
    /// Why the last try failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the build ended (and the notification was written).
    pub created_at: DateTime<Utc>,
    /// For a pending one: when it is tried next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the mail server accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

/// `GET /notifications?status=&project=&limit=&before=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationQuery {
    /// Only these states, comma-separated (e.g. `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only this project's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// At most this many (default 50, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// A page of notifications, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationList {
    /// The notifications.
    pub notifications: Vec<Notification>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
