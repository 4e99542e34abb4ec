//! What a login leaves behind: login forms shown, authorization codes, and
//! refresh-token families. Every secret is stored as its SHA-256.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, begin_write};
use crate::error::IdpError;

/// A login form shown, waiting for its POST.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    pub csrf_sha256: String,
    pub cookie_sha256: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// An authorization code, by hash.
#[derive(Debug, Clone)]
pub struct CodeRecord {
    pub code_sha256: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    /// Seconds since the epoch: when the password was checked.
    pub auth_time: i64,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// A refresh-token family: one login's chain of refresh tokens.
#[derive(Debug, Clone)]
pub struct FamilyRecord {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub created_at: i64,
}

/// What became of a code presented at the token endpoint.
#[derive(Debug)]
pub enum Redeemed {
    /// Good: a new family is started for it.
    Issued(CodeRecord),
    /// No such code (or long expired).
    Unknown,
    /// Used before: the tokens issued from it are revoked now.
    Reused,
    /// It failed a check (the text says which), and is used up.
    Refused(String),
}

/// What became of a refresh token presented.
#[derive(Debug)]
pub enum Refreshed {
    /// Good: it is used up, and its successor stored.
    Rotated(FamilyRecord),
    /// No such token (or expired and cleaned up).
    Unknown,
    /// Its family was revoked (logout, password change, reuse, disabling).
    Revoked,
    /// It was used before: the whole family is revoked now.
    Reused,
    /// Too old.
    Expired,
    /// It failed a check (the text says which); it stays as it was.
    Refused(String),
}

pub(super) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Uses up refresh token $2 if it is unused, not expired at $1, and of a
/// live family of client $3.
const USE_TOKEN: &str = "UPDATE refresh_tokens SET used_at = $1 \
     WHERE token_sha256 = $2 AND used_at IS NULL AND expires_at >= $1 \
     AND EXISTS (SELECT 1 FROM refresh_families f WHERE f.id = refresh_tokens.family_id \
                 AND f.client_id = $3 AND f.revoked_at IS NULL)";

const FAMILY_COLUMNS: &str = "f.id, f.client_id, f.user_id, f.scope, f.created_at";

fn decode_family(row: &AnyRow) -> Result<FamilyRecord, IdpError> {
    Ok(FamilyRecord {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        scope: row.try_get("scope")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Revokes every family of user `user_id` (password change, disabling).
pub(super) async fn revoke_user_families(
    tx: &mut Tx,
    user_id: &str,
    now: i64,
) -> Result<(), IdpError> {
    sqlx::query(
        "UPDATE refresh_families SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn revoke_family(tx: &mut Tx, family_id: &str, now: i64) -> Result<(), IdpError> {
    sqlx::query("UPDATE refresh_families SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(family_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Starts a login's refresh family (a code or a device code redeemed).
pub(super) async fn insert_family(tx: &mut Tx, family: &FamilyRecord) -> Result<(), IdpError> {
    sqlx::query(
        "INSERT INTO refresh_families (id, client_id, user_id, scope, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&family.id)
    .bind(&family.client_id)
    .bind(&family.user_id)
    .bind(&family.scope)
    .bind(family.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn decode_attempt(row: &AnyRow) -> Result<LoginAttempt, IdpError> {
    Ok(LoginAttempt {
        csrf_sha256: row.try_get("csrf_sha256")?,
        cookie_sha256: row.try_get("cookie_sha256")?,
        client_id: row.try_get("client_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        scope: row.try_get("scope")?,
        state: row.try_get("state")?,
        code_challenge: row.try_get("code_challenge")?,
        nonce: row.try_get("nonce")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn decode_code(row: &AnyRow) -> Result<CodeRecord, IdpError> {
    Ok(CodeRecord {
        code_sha256: row.try_get("code_sha256")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        code_challenge: row.try_get("code_challenge")?,
        scope: row.try_get("scope")?,
        nonce: row.try_get("nonce")?,
        auth_time: row.try_get("auth_time")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// How long a used or expired code is kept to recognise its reuse.
const KEEP_CODES_MS: i64 = 24 * 3600 * 1000;

impl Store {
    /// Stores a login form's attempt (and forgets expired ones).
    pub async fn insert_login_attempt(&self, a: &LoginAttempt, now: i64) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        sqlx::query("DELETE FROM login_attempts WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO login_attempts (csrf_sha256, cookie_sha256, client_id, redirect_uri, \
             scope, state, code_challenge, nonce, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.csrf_sha256)
        .bind(&a.cookie_sha256)
        .bind(&a.client_id)
        .bind(&a.redirect_uri)
        .bind(&a.scope)
        .bind(&a.state)
        .bind(&a.code_challenge)
        .bind(&a.nonce)
        .bind(a.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unexpired attempt whose CSRF token hashes to `csrf_sha256`.
    pub async fn login_attempt(
        &self,
        csrf_sha256: &str,
        now: i64,
    ) -> Result<Option<LoginAttempt>, IdpError> {
        let row = sqlx::query(
            "SELECT csrf_sha256, cookie_sha256, client_id, redirect_uri, scope, state, \
             code_challenge, nonce, expires_at FROM login_attempts \
             WHERE csrf_sha256 = $1 AND expires_at >= $2",
        )
        .bind(csrf_sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_attempt).transpose()
    }

    /// Ends an attempt that succeeded and stores the code it made, in one
    /// transaction; `false` (and no code) if the attempt was used already.
    pub async fn finish_login(
        &self,
        csrf_sha256: &str,
        code: &CodeRecord,
    ) -> Result<bool, IdpError> {
        let mut tx = begin_write(self).await?;
        let taken = sqlx::query("DELETE FROM login_attempts WHERE csrf_sha256 = $1")
            .bind(csrf_sha256)
            .execute(&mut *tx)
            .await?;
        if taken.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(code.expires_at - KEEP_CODES_MS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO authorization_codes (code_sha256, client_id, user_id, redirect_uri, \
             code_challenge, scope, nonce, auth_time, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&code.code_sha256)
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(&code.scope)
        .bind(&code.nonce)
        .bind(code.auth_time)
        .bind(code.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Uses up code `code_sha256`: runs `check` on it, and if it passes
    /// starts family `family_id` for it, all in one transaction. A code
    /// presented a second time revokes the family of the first.
    pub async fn redeem_code(
        &self,
        code_sha256: &str,
        family_id: &str,
        now: i64,
        check: impl FnOnce(&CodeRecord) -> Result<(), String>,
    ) -> Result<Redeemed, IdpError> {
        let mut tx = begin_write(self).await?;
        let taken = sqlx::query(
            "UPDATE authorization_codes SET used_at = $1 WHERE code_sha256 = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(code_sha256)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            let row =
                sqlx::query("SELECT family_id FROM authorization_codes WHERE code_sha256 = $1")
                    .bind(code_sha256)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(row) = row else {
                return Ok(Redeemed::Unknown);
            };
            if let Some(family) = row.try_get::<Option<String>, _>("family_id")? {
                revoke_family(&mut tx, &family, now).await?;
            }
            tx.commit().await?;
            return Ok(Redeemed::Reused);
        }
        let row = sqlx::query(
            "SELECT code_sha256, client_id, user_id, redirect_uri, code_challenge, scope, nonce, \
             auth_time, expires_at FROM authorization_codes WHERE code_sha256 = $1",
        )
        .bind(code_sha256)
        .fetch_one(&mut *tx)
        .await?;
        let code = decode_code(&row)?;
        if let Err(why) = check(&code) {
            tx.commit().await?;
            return Ok(Redeemed::Refused(why));
        }
        sqlx::query("UPDATE authorization_codes SET family_id = $1 WHERE code_sha256 = $2")
            .bind(family_id)
            .bind(code_sha256)
            .execute(&mut *tx)
            .await?;
        let family = FamilyRecord {
            id: family_id.to_string(),
            client_id: code.client_id.clone(),
            user_id: code.user_id.clone(),
            scope: code.scope.clone(),
            created_at: now,
        };
        insert_family(&mut tx, &family).await?;
        tx.commit().await?;
        Ok(Redeemed::Issued(code))
    }

    /// Stores a family's first refresh token.
    pub async fn insert_refresh_token(
        &self,
        family_id: &str,
        token_sha256: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), IdpError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_sha256, family_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_sha256)
        .bind(family_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Rotates refresh token `token_sha256` of client `client_id`: if it is
    /// good, it is used up and `next_sha256` takes its place, atomically. A
    /// used token presented again revokes its family.
    pub async fn rotate_refresh_token(
        &self,
        token_sha256: &str,
        next_sha256: &str,
        client_id: &str,
        now: i64,
        next_expires_at: i64,
    ) -> Result<Refreshed, IdpError> {
        let rotated = if self.sqlite {
            self.rotate_in_transaction(token_sha256, next_sha256, client_id, now, next_expires_at)
                .await?
        } else {
            self.rotate_in_one_statement(token_sha256, next_sha256, client_id, now, next_expires_at)
                .await?
        };
        match rotated {
            Some(family) => Ok(Refreshed::Rotated(family)),
            None => self.why_not_rotated(token_sha256, client_id, now).await,
        }
    }

    /// Postgres: the refresh grant is the IDP's hottest write, so the
    /// rotation is one statement (one round trip, one commit). Two
    /// refreshes with one token at once: the second's UPDATE waits for the
    /// first's row lock, then finds the token used.
    async fn rotate_in_one_statement(
        &self,
        token_sha256: &str,
        next_sha256: &str,
        client_id: &str,
        now: i64,
        next_expires_at: i64,
    ) -> Result<Option<FamilyRecord>, IdpError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH used AS ({USE_TOKEN} RETURNING family_id), \
             gone AS (DELETE FROM refresh_tokens WHERE expires_at < $1 \
                      AND family_id IN (SELECT family_id FROM used)), \
             next AS (INSERT INTO refresh_tokens (token_sha256, family_id, created_at, expires_at) \
                      SELECT $4, family_id, $1, $5 FROM used RETURNING family_id) \
             SELECT {FAMILY_COLUMNS} FROM refresh_families f JOIN next ON next.family_id = f.id"
        )))
        .bind(now)
        .bind(token_sha256)
        .bind(client_id)
        .bind(next_sha256)
        .bind(next_expires_at)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_family).transpose()
    }

    /// SQLite (no data-modifying WITH): the same steps in a transaction.
    async fn rotate_in_transaction(
        &self,
        token_sha256: &str,
        next_sha256: &str,
        client_id: &str,
        now: i64,
        next_expires_at: i64,
    ) -> Result<Option<FamilyRecord>, IdpError> {
        let mut tx = begin_write(self).await?;
        let used = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{USE_TOKEN} RETURNING family_id"
        )))
        .bind(now)
        .bind(token_sha256)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(used) = used else {
            return Ok(None);
        };
        let family_id: String = used.try_get("family_id")?;
        sqlx::query("DELETE FROM refresh_tokens WHERE family_id = $1 AND expires_at < $2")
            .bind(&family_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_sha256, family_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(next_sha256)
        .bind(&family_id)
        .bind(now)
        .bind(next_expires_at)
        .execute(&mut *tx)
        .await?;
        let family = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FAMILY_COLUMNS} FROM refresh_families f WHERE f.id = $1"
        )))
        .bind(&family_id)
        .fetch_one(&mut *tx)
        .await?;
        let family = decode_family(&family)?;
        tx.commit().await?;
        Ok(Some(family))
    }

    /// Why token `token_sha256` was not rotated; a used one revokes its
    /// family now.
    async fn why_not_rotated(
        &self,
        token_sha256: &str,
        client_id: &str,
        now: i64,
    ) -> Result<Refreshed, IdpError> {
        let row = sqlx::query(
            "SELECT t.expires_at, t.used_at, f.id, f.client_id, f.revoked_at \
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
             WHERE t.token_sha256 = $1",
        )
        .bind(token_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Refreshed::Unknown);
        };
        if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            return Ok(Refreshed::Revoked);
        }
        if row.try_get::<String, _>("client_id")? != client_id {
            return Ok(Refreshed::Refused(
                "the refresh token was issued to another client".into(),
            ));
        }
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            self.revoke_family(&row.try_get::<String, _>("id")?, now)
                .await?;
            return Ok(Refreshed::Reused);
        }
        if row.try_get::<i64, _>("expires_at")? < now {
            return Ok(Refreshed::Expired);
        }
        // Every condition of a rotation only ever turns false for good, so
        // a token that failed one fails it still; this is not reached.
        Ok(Refreshed::Unknown)
    }

    /// Revokes family `family_id`.
    pub async fn revoke_family(&self, family_id: &str, now: i64) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        revoke_family(&mut tx, family_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes the family of refresh token `token_sha256` if client
    /// `client_id` holds it (RFC 7009: a client revokes only its own
    /// tokens); whether it did.
    pub async fn revoke_refresh_token(
        &self,
        token_sha256: &str,
        client_id: &str,
        now: i64,
    ) -> Result<bool, IdpError> {
        let mut tx = begin_write(self).await?;
        let row = sqlx::query(
            "SELECT f.id, f.client_id FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id WHERE t.token_sha256 = $1",
        )
        .bind(token_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        if row.try_get::<String, _>("client_id")? != client_id {
            return Ok(false);
        }
        let family: String = row.try_get("id")?;
        revoke_family(&mut tx, &family, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}
