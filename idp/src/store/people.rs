//! Users, groups and their members.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::{self, Note};
use super::{Store, begin_write};
use crate::error::IdpError;

/// A user as stored.
#[derive(Clone)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub email: String,
    /// An argon2id PHC string; `None` until a password is set.
    pub password_hash: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hash: it is as good as the password to an offline attacker.
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A group as stored, with its members' names.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub members: Vec<String>,
}

pub(super) const USER_COLUMNS: &str =
    "id, name, display_name, email, password_hash, enabled, created_at, updated_at";

pub(super) fn decode_user(row: &AnyRow) -> Result<UserRecord, IdpError> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Whether `e` is a unique-constraint violation.
pub(super) fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Adds a user on `conn` (the pool's, or a transaction's);
/// [`IdpError::Conflict`] if the name is taken.
pub(super) async fn insert_user_on(
    conn: &mut sqlx::AnyConnection,
    user: &UserRecord,
) -> Result<(), IdpError> {
    let result = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )))
    .bind(&user.id)
    .bind(&user.name)
    .bind(&user.display_name)
    .bind(&user.email)
    .bind(&user.password_hash)
    .bind(i64::from(user.enabled))
    .bind(user.created_at)
    .bind(user.updated_at)
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate(&e) => Err(IdpError::Conflict(format!(
            "a user named {:?} already exists",
            user.name
        ))),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Adds a user; [`IdpError::Conflict`] if the name is taken.
    pub async fn insert_user(&self, user: &UserRecord, note: &Note<'_>) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        insert_user_on(&mut tx, user).await?;
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, IdpError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_user).transpose()
    }

    pub async fn users(&self) -> Result<Vec<UserRecord>, IdpError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_user).collect()
    }

    /// User `id` with the names of their groups, sorted, in one query
    /// (every token for a person needs both).
    pub async fn user_with_groups(
        &self,
        id: &str,
    ) -> Result<Option<(UserRecord, Vec<String>)>, IdpError> {
        let rows = sqlx::query(
            "SELECT u.id, u.name, u.display_name, u.email, u.password_hash, u.enabled, \
             u.created_at, u.updated_at, g.name AS group_name FROM users u \
             LEFT JOIN group_members m ON m.user_id = u.id \
             LEFT JOIN user_groups g ON g.id = m.group_id \
             WHERE u.id = $1 ORDER BY g.name",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut groups = Vec::new();
        for row in &rows {
            if let Some(name) = row.try_get::<Option<String>, _>("group_name")? {
                groups.push(name);
            }
        }
        Ok(Some((decode_user(first)?, groups)))
    }

    /// The names of the groups user `user_id` is in, sorted.
    pub async fn groups_of(&self, user_id: &str) -> Result<Vec<String>, IdpError> {
        let rows = sqlx::query(
            "SELECT g.name FROM user_groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 ORDER BY g.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("name").map_err(IdpError::from))
            .collect()
    }

    /// Every user's groups, by user id (for listings).
    pub async fn all_memberships(&self) -> Result<Vec<(String, String)>, IdpError> {
        let rows = sqlx::query(
            "SELECT m.user_id, g.name FROM user_groups g JOIN group_members m \
             ON m.group_id = g.id ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("user_id")?, r.try_get("name")?)))
            .collect()
    }

    /// Changes user `name` with `change` (applied to the row as it is, in
    /// one transaction); when `revoke` says so of the changed user, their
    /// refresh tokens are revoked in the same transaction. `None` if there
    /// is no such user.
    pub async fn change_user(
        &self,
        name: &str,
        change: impl FnOnce(&mut UserRecord) -> Result<(), IdpError>,
        revoke: impl FnOnce(&UserRecord, &UserRecord) -> bool,
        note: &Note<'_>,
    ) -> Result<Option<UserRecord>, IdpError> {
        let mut tx = begin_write(self).await?;
        let lock = if self.sqlite { "" } else { " FOR UPDATE" };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name = $1{lock}"
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let before = decode_user(&row)?;
        let mut user = before.clone();
        change(&mut user)?;
        sqlx::query(
            "UPDATE users SET display_name = $1, email = $2, password_hash = $3, enabled = $4, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(&user.display_name)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(i64::from(user.enabled))
        .bind(user.updated_at)
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
        if revoke(&before, &user) {
            super::grants::revoke_user_families(&mut tx, &user.id, user.updated_at).await?;
        }
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// Deletes user `name`, their memberships, codes and refresh tokens.
    pub async fn delete_user(&self, name: &str, note: &Note<'_>) -> Result<bool, IdpError> {
        let mut tx = begin_write(self).await?;
        let Some(row) = sqlx::query("SELECT id FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        let id: String = row.try_get("id")?;
        for statement in [
            "DELETE FROM group_members WHERE user_id = $1",
            "DELETE FROM authorization_codes WHERE user_id = $1",
            "DELETE FROM refresh_tokens WHERE family_id IN \
             (SELECT id FROM refresh_families WHERE user_id = $1)",
            "DELETE FROM refresh_families WHERE user_id = $1",
            "DELETE FROM upstream_identities WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(statement).bind(&id).execute(&mut *tx).await?;
        }
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Adds a group; [`IdpError::Conflict`] if the name is taken.
    pub async fn insert_group(
        &self,
        id: &str,
        name: &str,
        created_at: i64,
        note: &Note<'_>,
    ) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        let result =
            sqlx::query("INSERT INTO user_groups (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(name)
                .bind(created_at)
                .execute(&mut *tx)
                .await;
        match result {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {
                return Err(IdpError::Conflict(format!(
                    "a group named {name:?} already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn group(&self, name: &str) -> Result<Option<GroupRecord>, IdpError> {
        let Some(row) = sqlx::query("SELECT id, name, created_at FROM user_groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let id: String = row.try_get("id")?;
        let members = sqlx::query(
            "SELECT u.name FROM users u JOIN group_members m ON m.user_id = u.id \
             WHERE m.group_id = $1 ORDER BY u.name",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("name"))
        .collect::<Result<_, _>>()?;
        Ok(Some(GroupRecord {
            id,
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
            members,
        }))
    }

    pub async fn groups(&self) -> Result<Vec<GroupRecord>, IdpError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM user_groups ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let members = sqlx::query(
            "SELECT m.group_id, u.name FROM users u JOIN group_members m ON m.user_id = u.id \
             ORDER BY u.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let mut names = Vec::new();
                for m in &members {
                    if m.try_get::<String, _>("group_id")? == id {
                        names.push(m.try_get("name")?);
                    }
                }
                Ok(GroupRecord {
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    members: names,
                    id,
                })
            })
            .collect()
    }

    /// Deletes group `name` and its memberships.
    pub async fn delete_group(&self, name: &str, note: &Note<'_>) -> Result<bool, IdpError> {
        let mut tx = begin_write(self).await?;
        let Some(row) = sqlx::query("SELECT id FROM user_groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        let id: String = row.try_get("id")?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_groups WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Adds (`member`) or removes user `user` to or from `group`. Errors
    /// name which of the two does not exist.
    /// Nothing is recorded when nothing changes.
    pub async fn set_member(
        &self,
        group: &str,
        user: &str,
        member: bool,
        note: &Note<'_>,
    ) -> Result<(), IdpError> {
        let mut tx = begin_write(self).await?;
        let group_id: String = sqlx::query("SELECT id FROM user_groups WHERE name = $1")
            .bind(group)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| IdpError::NotFound(format!("no group {group:?}")))?
            .try_get("id")?;
        let user_id: String = sqlx::query("SELECT id FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| IdpError::NotFound(format!("no user {user:?}")))?
            .try_get("id")?;
        if member {
            let added =
                sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)")
                    .bind(&group_id)
                    .bind(&user_id)
                    .execute(&mut *tx)
                    .await;
            match added {
                // Already a member (perhaps just now, by a concurrent
                // request): nothing to change.
                Err(e) if is_duplicate(&e) => return Ok(()),
                other => {
                    other?;
                }
            }
        } else {
            let removed =
                sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
                    .bind(&group_id)
                    .bind(&user_id)
                    .execute(&mut *tx)
                    .await?;
            if removed.rows_affected() == 0 {
                return Err(IdpError::NotFound(format!(
                    "user {user:?} is not in group {group:?}"
                )));
            }
        }
        audit::append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(())
    }
}
