//! The device authorization grant's codes (RFC 8628), by their hashes:
//! handed out, typed in by a person, approved or denied, polled for.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::grants::{FamilyRecord, Tx, insert_family, revoke_family};
use super::{Store, begin_write};
use crate::error::IdpError;

/// A device code as stored (what a person's browser may see of it).
#[derive(Debug, Clone)]
pub struct DeviceCode {
    pub device_code_sha256: String,
    pub user_code_sha256: String,
    pub client_id: String,
    pub scope: String,
    pub interval_ms: i64,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    /// The browser that typed the user code.
    pub cookie_sha256: Option<String>,
    /// Whose password was checked, waiting for their approval.
    pub login_user_id: Option<String>,
}

/// An approved device login, redeemed.
#[derive(Debug, Clone)]
pub struct DeviceLogin {
    pub user_id: String,
    pub scope: String,
    /// Seconds since the epoch: when the password was checked.
    pub auth_time: i64,
}

/// What a poll of the token endpoint finds (RFC 8628 §3.5).
#[derive(Debug)]
pub enum Polled {
    /// Approved: the code is used up and family `family_id` started.
    Approved(DeviceLogin),
    /// Nobody has approved or denied it yet.
    Pending,
    /// Polled sooner than its interval: the interval grows by 5 s.
    SlowDown,
    Denied,
    Expired,
    /// No such code.
    Unknown,
    /// Issued to another client; nothing changes.
    OtherClient,
    /// Redeemed before: the family issued for it is revoked now.
    Reused,
}

/// How long an expired or used device code is kept to recognise its reuse.
const KEEP_MS: i64 = 24 * 3600 * 1000;

/// RFC 8628 §3.5: each slow_down adds 5 seconds.
const SLOW_DOWN_MS: i64 = 5000;

/// The rows a person may still act on: not decided, not expired.
const UNDECIDED: &str = "user_id IS NULL AND denied_at IS NULL AND used_at IS NULL";

fn decode(row: &AnyRow) -> Result<DeviceCode, IdpError> {
    Ok(DeviceCode {
        device_code_sha256: row.try_get("device_code_sha256")?,
        user_code_sha256: row.try_get("user_code_sha256")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        interval_ms: row.try_get("interval_ms")?,
        expires_at: row.try_get("expires_at")?,
        cookie_sha256: row.try_get("cookie_sha256")?,
        login_user_id: row.try_get("login_user_id")?,
    })
}

const COLUMNS: &str = "device_code_sha256, user_code_sha256, client_id, scope, interval_ms, \
                       expires_at, cookie_sha256, login_user_id";

impl Store {
    /// Stores a new device code (and forgets long-expired ones).
    pub async fn insert_device_code(&self, code: &DeviceCode, now: i64) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        sqlx::query("DELETE FROM device_codes WHERE expires_at < $1")
            .bind(now - KEEP_MS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO device_codes (device_code_sha256, user_code_sha256, client_id, scope, \
             interval_ms, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&code.device_code_sha256)
        .bind(&code.user_code_sha256)
        .bind(&code.client_id)
        .bind(&code.scope)
        .bind(code.interval_ms)
        .bind(code.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn undecided_by(
        &self,
        column: &str,
        sha256: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, IdpError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM device_codes WHERE {column} = $1 AND expires_at >= $2 \
             AND {UNDECIDED}"
        )))
        .bind(sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The undecided, unexpired device code whose user code hashes to
    /// `user_code_sha256`.
    pub async fn device_by_user_code(
        &self,
        user_code_sha256: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, IdpError> {
        self.undecided_by("user_code_sha256", user_code_sha256, now)
            .await
    }

    /// The undecided, unexpired device code a form's CSRF token is for.
    pub async fn device_by_csrf(
        &self,
        csrf_sha256: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, IdpError> {
        self.undecided_by("csrf_sha256", csrf_sha256, now).await
    }

    /// A browser typed the user code: binds the code to its cookie and a
    /// new login form (any earlier form for it stops working).
    pub async fn start_device_login(
        &self,
        device_code_sha256: &str,
        csrf_sha256: &str,
        cookie_sha256: &str,
        now: i64,
    ) -> Result<bool, IdpError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE device_codes SET csrf_sha256 = $1, cookie_sha256 = $2, login_user_id = NULL \
             WHERE device_code_sha256 = $3 AND expires_at >= $4 AND {UNDECIDED}"
        )))
        .bind(csrf_sha256)
        .bind(cookie_sha256)
        .bind(device_code_sha256)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The person's password was right: their approval is asked next,
    /// with a new form (`next_csrf_sha256`); the login form is used up.
    pub async fn device_password_checked(
        &self,
        csrf_sha256: &str,
        next_csrf_sha256: &str,
        user_id: &str,
        auth_time: i64,
        now: i64,
    ) -> Result<bool, IdpError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE device_codes SET csrf_sha256 = $1, login_user_id = $2, auth_time = $3 \
             WHERE csrf_sha256 = $4 AND login_user_id IS NULL AND expires_at >= $5 AND {UNDECIDED}"
        )))
        .bind(next_csrf_sha256)
        .bind(user_id)
        .bind(auth_time)
        .bind(csrf_sha256)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The person approved (or denied) the device login of the form
    /// `csrf_sha256`, after their password was checked.
    pub async fn decide_device(
        &self,
        csrf_sha256: &str,
        approve: bool,
        now: i64,
    ) -> Result<bool, IdpError> {
        let set = if approve {
            "user_id = login_user_id"
        } else {
            "denied_at = $2"
        };
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE device_codes SET {set}, csrf_sha256 = NULL WHERE csrf_sha256 = $1 \
             AND login_user_id IS NOT NULL AND expires_at >= $2 AND {UNDECIDED}"
        )))
        .bind(csrf_sha256)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A device polls with `device_code_sha256` as client `client_id`: the
    /// answer, and on approval the code used up and family `family_id`
    /// started, in one transaction.
    pub async fn poll_device_code(
        &self,
        device_code_sha256: &str,
        client_id: &str,
        family_id: &str,
        now: i64,
    ) -> Result<Polled, IdpError> {
        let mut tx = begin_write(self).await?;
        let row = sqlx::query(
            "SELECT client_id, user_id, scope, auth_time, interval_ms, polled_at, expires_at, \
             denied_at, used_at, family_id FROM device_codes WHERE device_code_sha256 = $1",
        )
        .bind(device_code_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Polled::Unknown);
        };
        if row.try_get::<String, _>("client_id")? != client_id {
            return Ok(Polled::OtherClient);
        }
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            if let Some(family) = row.try_get::<Option<String>, _>("family_id")? {
                revoke_family(&mut tx, &family, now).await?;
            }
            tx.commit().await?;
            return Ok(Polled::Reused);
        }
        if row.try_get::<i64, _>("expires_at")? < now {
            return Ok(Polled::Expired);
        }
        if row.try_get::<Option<i64>, _>("denied_at")?.is_some() {
            return Ok(Polled::Denied);
        }
        let interval: i64 = row.try_get("interval_ms")?;
        let too_soon = row
            .try_get::<Option<i64>, _>("polled_at")?
            .is_some_and(|last| now - last < interval);
        if too_soon {
            polled(&mut tx, device_code_sha256, now, interval + SLOW_DOWN_MS).await?;
            tx.commit().await?;
            return Ok(Polled::SlowDown);
        }
        let Some(user_id) = row.try_get::<Option<String>, _>("user_id")? else {
            polled(&mut tx, device_code_sha256, now, interval).await?;
            tx.commit().await?;
            return Ok(Polled::Pending);
        };
        // Two polls at once: the second finds it used.
        let taken = sqlx::query(
            "UPDATE device_codes SET used_at = $1, family_id = $2, polled_at = $1 \
             WHERE device_code_sha256 = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(family_id)
        .bind(device_code_sha256)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() != 1 {
            return Ok(Polled::Reused);
        }
        let login = DeviceLogin {
            user_id,
            scope: row.try_get("scope")?,
            auth_time: row
                .try_get::<Option<i64>, _>("auth_time")?
                .unwrap_or(now / 1000),
        };
        let family = FamilyRecord {
            id: family_id.to_string(),
            client_id: client_id.to_string(),
            user_id: login.user_id.clone(),
            scope: login.scope.clone(),
            created_at: now,
        };
        insert_family(&mut tx, &family).await?;
        tx.commit().await?;
        Ok(Polled::Approved(login))
    }
}

async fn polled(
    tx: &mut Tx,
    device_code_sha256: &str,
    now: i64,
    interval_ms: i64,
) -> Result<(), IdpError> {
    sqlx::query(
        "UPDATE device_codes SET polled_at = $1, interval_ms = $2 WHERE device_code_sha256 = $3",
    )
    .bind(now)
    .bind(interval_ms)
    .bind(device_code_sha256)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
