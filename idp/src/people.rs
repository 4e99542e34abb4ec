//! People: users and groups, their names and passwords. Passwords are
//! hashed with argon2id (the crate's defaults: 19 MiB, 2 passes, OWASP's
//! recommendation) off the async runtime; neither a password nor its hash
//! ever leaves this module except into the database.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use ick_api::Secret;
use ick_api::audit::{Actor, AuditAction};
use ick_api::idp::{CreateUser, GroupInfo, UpdateUser, UserInfo, is_valid_name};

use crate::error::IdpError;
use crate::store::audit::Note;
use crate::store::{GroupRecord, Store, UserRecord, now_ms};
use serde_json::{Value, json};

/// A username or group name, checked: `[a-z0-9][a-z0-9._-]*`, at most 64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Parses `text` as the name of a `what` ("user", "group").
    pub fn parse(what: &str, text: &str) -> Result<Name, IdpError> {
        if is_valid_name(text) {
            Ok(Name(text.to_string()))
        } else {
            Err(IdpError::BadRequest(format!(
                "{what} name {text:?} must be 1-64 characters of a-z, 0-9, '.', '_' or '-', \
                 starting with a letter or digit"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_BYTES: usize = 1024;

/// Refuses a password too short to be one, or so long that hashing it is a
/// way to burn our CPU.
fn check_password(password: &Secret) -> Result<(), IdpError> {
    let text = password.expose();
    if text.chars().count() < MIN_PASSWORD_CHARS {
        return Err(IdpError::BadRequest(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if text.len() > MAX_PASSWORD_BYTES {
        return Err(IdpError::BadRequest(format!(
            "a password may have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The argon2id PHC string of `password`, computed off the runtime.
pub async fn hash_password(password: Secret) -> Result<String, IdpError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| IdpError::Internal(format!("cannot hash a password: {e}")))
    })
    .await
    .map_err(|e| IdpError::Internal(format!("the hashing task failed: {e}")))?
}

/// Whether `password` is the one behind `hash` (a PHC string), checked off
/// the runtime. A malformed hash matches nothing.
pub async fn password_matches(password: Secret, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.expose().as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

pub(crate) fn check_display_name(name: &str) -> Result<String, IdpError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(IdpError::BadRequest(
            "a display name needs 1-200 characters, none of them control characters".into(),
        ));
    }
    Ok(name.to_string())
}

/// An email address, loosely: one `@` between non-empty parts, no spaces.
/// (Whether mail arrives is for the mail server to say.)
pub(crate) fn check_email(email: &str) -> Result<String, IdpError> {
    let email = email.trim();
    if email.is_empty() {
        return Ok(String::new());
    }
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if ok {
        Ok(email.to_string())
    } else {
        Err(IdpError::BadRequest(format!(
            "{email:?} is not an email address"
        )))
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn user_info(user: &UserRecord, groups: Vec<String>) -> UserInfo {
    UserInfo {
        id: user.id.clone(),
        name: user.name.clone(),
        display_name: user.display_name.clone(),
        email: user.email.clone(),
        enabled: user.enabled,
        has_password: user.password_hash.is_some(),
        groups,
        created_at: rfc3339(user.created_at),
        updated_at: rfc3339(user.updated_at),
    }
}

fn group_info(group: GroupRecord) -> GroupInfo {
    GroupInfo {
        name: group.name,
        members: group.members,
        created_at: rfc3339(group.created_at),
    }
}

fn no_user(name: &str) -> IdpError {
    IdpError::NotFound(format!("no user {name:?}"))
}

fn no_group(name: &str) -> IdpError {
    IdpError::NotFound(format!("no group {name:?}"))
}

/// Creates a user; everything is checked before anything is stored.
pub async fn create_user(
    store: &Store,
    actor: &Actor,
    body: CreateUser,
) -> Result<UserInfo, IdpError> {
    let name = Name::parse("user", &body.name)?;
    let display_name = check_display_name(body.display_name.as_deref().unwrap_or(name.as_str()))?;
    let email = check_email(body.email.as_deref().unwrap_or(""))?;
    let password_hash = match body.password {
        Some(password) => {
            check_password(&password)?;
            Some(hash_password(password).await?)
        }
        None => None,
    };
    let now = now_ms();
    let user = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.as_str().to_string(),
        display_name,
        email,
        password_hash,
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    let note = Note::new(actor, AuditAction::UserCreate, &user.name).with(json!({
        "display_name": user.display_name,
        "email": user.email,
        "password": user.password_hash.is_some(),
    }));
    store.insert_user(&user, &note).await?;
    Ok(user_info(&user, Vec::new()))
}

/// Every user, with their groups.
pub async fn list_users(store: &Store) -> Result<Vec<UserInfo>, IdpError> {
    let users = store.users().await?;
    let memberships = store.all_memberships().await?;
    Ok(users
        .iter()
        .map(|u| {
            let groups = memberships
                .iter()
                .filter(|(id, _)| *id == u.id)
                .map(|(_, group)| group.clone())
                .collect();
            user_info(u, groups)
        })
        .collect())
}

/// One user, with their groups.
pub async fn show_user(store: &Store, name: &str) -> Result<UserInfo, IdpError> {
    let user = store
        .user_by_name(name)
        .await?
        .ok_or_else(|| no_user(name))?;
    let groups = store.groups_of(&user.id).await?;
    Ok(user_info(&user, groups))
}

/// Changes a user's display name, email or enabled flag; disabling them
/// revokes their refresh tokens.
pub async fn update_user(
    store: &Store,
    actor: &Actor,
    name: &str,
    body: UpdateUser,
) -> Result<UserInfo, IdpError> {
    let display_name = body
        .display_name
        .as_deref()
        .map(check_display_name)
        .transpose()?;
    let email = body.email.as_deref().map(check_email).transpose()?;
    let mut detail = serde_json::Map::new();
    for (field, value) in [
        ("display_name", display_name.clone().map(Value::from)),
        ("email", email.clone().map(Value::from)),
        ("enabled", body.enabled.map(Value::from)),
    ] {
        if let Some(value) = value {
            detail.insert(field.to_string(), value);
        }
    }
    let note = Note::new(actor, AuditAction::UserUpdate, name).with(Value::Object(detail));
    let changed = store
        .change_user(
            name,
            |user| {
                if let Some(display_name) = display_name {
                    user.display_name = display_name;
                }
                if let Some(email) = email {
                    user.email = email;
                }
                if let Some(enabled) = body.enabled {
                    user.enabled = enabled;
                }
                user.updated_at = now_ms();
                Ok(())
            },
            |_, after| !after.enabled,
            &note,
        )
        .await?
        .ok_or_else(|| no_user(name))?;
    let groups = store.groups_of(&changed.id).await?;
    Ok(user_info(&changed, groups))
}

/// Sets a user's password; their refresh tokens are revoked in the same
/// transaction, so a stolen one dies with the old password.
pub async fn set_password(
    store: &Store,
    actor: &Actor,
    name: &str,
    password: Secret,
) -> Result<(), IdpError> {
    check_password(&password)?;
    if store.user_by_name(name).await?.is_none() {
        return Err(no_user(name));
    }
    let hash = hash_password(password).await?;
    store
        .change_user(
            name,
            |user| {
                user.password_hash = Some(hash);
                user.updated_at = now_ms();
                Ok(())
            },
            |_, _| true,
            &Note::new(actor, AuditAction::UserPassword, name),
        )
        .await?
        .ok_or_else(|| no_user(name))?;
    Ok(())
}

/// Deletes a user, their memberships and their refresh tokens.
pub async fn delete_user(store: &Store, actor: &Actor, name: &str) -> Result<(), IdpError> {
    let note = Note::new(actor, AuditAction::UserDelete, name);
    if store.delete_user(name, &note).await? {
        Ok(())
    } else {
        Err(no_user(name))
    }
}

pub async fn create_group(store: &Store, actor: &Actor, name: &str) -> Result<GroupInfo, IdpError> {
    let name = Name::parse("group", name)?;
    let now = now_ms();
    let note = Note::new(actor, AuditAction::GroupCreate, name.as_str());
    store
        .insert_group(&uuid::Uuid::new_v4().to_string(), name.as_str(), now, &note)
        .await?;
    Ok(GroupInfo {
        name: name.as_str().to_string(),
        members: Vec::new(),
        created_at: rfc3339(now),
    })
}

pub async fn list_groups(store: &Store) -> Result<Vec<GroupInfo>, IdpError> {
    Ok(store.groups().await?.into_iter().map(group_info).collect())
}

pub async fn show_group(store: &Store, name: &str) -> Result<GroupInfo, IdpError> {
    store
        .group(name)
        .await?
        .map(group_info)
        .ok_or_else(|| no_group(name))
}

pub async fn delete_group(store: &Store, actor: &Actor, name: &str) -> Result<(), IdpError> {
    let note = Note::new(actor, AuditAction::GroupDelete, name);
    if store.delete_group(name, &note).await? {
        Ok(())
    } else {
        Err(no_group(name))
    }
}

/// Adds (`member`) or removes `user` to or from `group`; answers the group.
pub async fn set_member(
    store: &Store,
    actor: &Actor,
    group: &str,
    user: &str,
    member: bool,
) -> Result<GroupInfo, IdpError> {
    let action = if member {
        AuditAction::GroupAdd
    } else {
        AuditAction::GroupRemove
    };
    let note = Note::new(actor, action, group).with(json!({ "user": user }));
    store.set_member(group, user, member, &note).await?;
    show_group(store, group).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_and_matches_only_its_password() {
        let hash = hash_password(Secret::new("correct horse"))
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(password_matches(Secret::new("correct horse"), hash.clone()).await);
        assert!(!password_matches(Secret::new("correct horse!"), hash.clone()).await);
        let again = hash_password(Secret::new("correct horse"))
            .await
            .expect("hash");
        assert_ne!(hash, again, "each hash has its own salt");
        assert!(!password_matches(Secret::new("x"), "not a hash".into()).await);
    }

    #[test]
    fn passwords_emails_and_display_names_are_checked() {
        assert!(check_password(&Secret::new("1234567")).is_err());
        assert!(check_password(&Secret::new("12345678")).is_ok());
        assert!(check_password(&Secret::new("x".repeat(1025))).is_err());
        assert_eq!(check_email(" a@b.example ").expect("ok"), "a@b.example");
        assert_eq!(check_email("").expect("none"), "");
        for bad in ["a", "@b", "a@", "a b@c", "a@b@c"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_display_name("Alice Liddell").is_ok());
        assert!(check_display_name("  ").is_err());
        assert!(check_display_name("a\nb").is_err());
    }
}
