//! Upstream logins: the links from a provider's `sub` to an Ick user, and
//! the logins sent to a provider and not yet back.

use sqlx::Row;

use super::people::{USER_COLUMNS, decode_user, insert_user_on, is_duplicate};
use super::{Store, UserRecord, begin_write};
use crate::error::IdpError;

/// A login sent to a provider, waiting for its callback.
#[derive(Debug, Clone)]
pub struct UpstreamLogin {
    pub state_sha256: String,
    pub upstream: String,
    /// The login form (`login_attempts` row) it continues.
    pub csrf_sha256: String,
    pub cookie_sha256: String,
    pub nonce_sha256: String,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

impl Store {
    /// Stores a login sent upstream (and forgets expired ones).
    pub async fn insert_upstream_login(&self, l: &UpstreamLogin, now: i64) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        sqlx::query("DELETE FROM upstream_logins WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO upstream_logins (state_sha256, upstream, csrf_sha256, cookie_sha256, \
             nonce_sha256, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&l.state_sha256)
        .bind(&l.upstream)
        .bind(&l.csrf_sha256)
        .bind(&l.cookie_sha256)
        .bind(&l.nonce_sha256)
        .bind(l.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Uses up the login whose state hashes to `state_sha256`: it is
    /// deleted whatever the caller then decides, so a callback works once.
    /// `None` if there is none, or it expired.
    pub async fn take_upstream_login(
        &self,
        state_sha256: &str,
        now: i64,
    ) -> Result<Option<UpstreamLogin>, IdpError> {
        let row = sqlx::query(
            "DELETE FROM upstream_logins WHERE state_sha256 = $1 RETURNING state_sha256, \
             upstream, csrf_sha256, cookie_sha256, nonce_sha256, expires_at",
        )
        .bind(state_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let login = UpstreamLogin {
            state_sha256: row.try_get("state_sha256")?,
            upstream: row.try_get("upstream")?,
            csrf_sha256: row.try_get("csrf_sha256")?,
            cookie_sha256: row.try_get("cookie_sha256")?,
            nonce_sha256: row.try_get("nonce_sha256")?,
            expires_at: row.try_get("expires_at")?,
        };
        Ok((login.expires_at >= now).then_some(login))
    }

    /// The user linked to `subject` at `upstream`, if any.
    pub async fn upstream_user(
        &self,
        upstream: &str,
        subject: &str,
    ) -> Result<Option<UserRecord>, IdpError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = \
             (SELECT user_id FROM upstream_identities WHERE upstream = $1 AND subject = $2)"
        )))
        .bind(upstream)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_user).transpose()
    }

    /// Adds `user` linked to `subject` at `upstream`, in one transaction;
    /// [`IdpError::Conflict`] if the name or the link is taken.
    pub async fn insert_upstream_user(
        &self,
        user: &UserRecord,
        upstream: &str,
        subject: &str,
        note: &super::audit::Note<'_>,
    ) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        insert_user_on(&mut tx, user).await?;
        sqlx::query(
            "INSERT INTO upstream_identities (upstream, subject, user_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(upstream)
        .bind(subject)
        .bind(&user.id)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_duplicate(&e) {
                IdpError::Conflict(format!("{upstream} {subject:?} is linked already"))
            } else {
                e.into()
            }
        })?;
        super::audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(())
    }
}
