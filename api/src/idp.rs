//! The IDP's people: users and groups, as its admin API (scope
//! `idp:admin`) takes and answers them, and [`IdpAdmin`], a typed client
//! of that API.
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `POST /users` | [`CreateUser`] | 201 [`UserInfo`] |
//! | `GET /users` | | [`UserInfo`]s |
//! | `GET /users/{name}` | | [`UserInfo`] |
//! | `PATCH /users/{name}` | [`UpdateUser`] | [`UserInfo`] |
//! | `DELETE /users/{name}` | | 204 |
//! | `PUT /users/{name}/password` | [`SetPassword`] | 204 |
//! | `POST /groups` | [`CreateGroup`] | 201 [`GroupInfo`] |
//! | `GET /groups` | | [`GroupInfo`]s |
//! | `GET /groups/{name}`, `DELETE /groups/{name}` | | [`GroupInfo`], 204 |
//! | `PUT /groups/{name}/members/{user}`, `DELETE …` | | [`GroupInfo`] |
//!
//! Disabling a user, deleting them or changing their password revokes
//! their refresh tokens: they must log in again.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::problem::Problem;
use crate::secret::Secret;
use crate::token_source::{TokenError, TokenSource};

/// The longest username or group name.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` can be a username or a group name:
/// `[a-z0-9][a-z0-9._-]*`, at most [`MAX_NAME_LEN`] characters.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.len() <= MAX_NAME_LEN
}

/// A user as the admin API shows them (never their password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user's stable id: the `sub` of their tokens.
    pub id: String,
    /// The unique name they log in with.
    pub name: String,
    /// How people see them.
    pub display_name: String,
    /// Their email address (empty if none).
    pub email: String,
    /// A disabled user cannot log in, and their refresh tokens stop working.
    pub enabled: bool,
    /// Whether a password is set (a user without one cannot log in).
    pub has_password: bool,
    /// The groups they are in, by name.
    pub groups: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Body of `POST /users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// `[a-z0-9][a-z0-9._-]*`.
    pub name: String,
    /// Default: the name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Default: none.
    #[serde(default)]
    pub email: Option<String>,
    /// Default: none yet (set it with `PUT /users/{name}/password`).
    #[serde(default)]
    pub password: Option<Secret>,
}

/// Body of `PATCH /users/{name}`: what is given changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// A new email address (empty for none).
    #[serde(default)]
    pub email: Option<String>,
    /// Enable or disable; disabling revokes their refresh tokens.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Body of `PUT /users/{name}/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// At least 8 characters, at most 1024 bytes.
    pub password: Secret,
}

/// A group as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Its unique name.
    pub name: String,
    /// Its members' usernames, sorted.
    pub members: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// Body of `POST /groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// `[a-z0-9][a-z0-9._-]*`.
    pub name: String,
}

/// Why a call of the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum IdpAdminError {
    /// The IDP could not be reached, or the answer broke off.
    #[error("cannot reach the IDP at {url}: {source}")]
    Transport {
        /// What was asked.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The IDP refused; its problem says why.
    #[error("{0}")]
    Refused(Problem),
    /// The IDP answered something this client does not understand.
    #[error("unexpected answer from the IDP at {url}: {why}")]
    Protocol {
        /// What was asked.
        url: String,
        /// What was wrong with the answer.
        why: String,
    },
}

/// A client of the IDP's admin API for users and groups: one base URL, one
/// token source (a token with `idp:admin`), renewed once on a 401.
#[derive(Clone)]
pub struct IdpAdmin {
    http: reqwest::Client,
    base: String,
    tokens: Arc<TokenSource>,
}

use crate::http::segment;

impl IdpAdmin {
    /// A client of the IDP at `base` (its issuer URL).
    pub fn new(http: reqwest::Client, base: impl Into<String>, tokens: Arc<TokenSource>) -> Self {
        IdpAdmin {
            http,
            base: base.into(),
            tokens,
        }
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, IdpAdminError> {
        let url = crate::http::join(&self.base, path);
        let mut renewed = false;
        loop {
            let token = self.tokens.token().await?;
            let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|source| IdpAdminError::Transport {
                    url: url.clone(),
                    source,
                })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                self.tokens.invalidate().await;
                renewed = true;
                continue;
            }
            if status.is_success() {
                return Ok(response);
            }
            let text = response.text().await.unwrap_or_default();
            let problem = Problem::of_refusal(status, &text);
            return Err(IdpAdminError::Refused(problem));
        }
    }

    async fn json<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, IdpAdminError> {
        let response = self.send(method, path, body).await?;
        let url = response.url().to_string();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| IdpAdminError::Transport {
                url: url.clone(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| IdpAdminError::Protocol {
            url,
            why: e.to_string(),
        })
    }

    /// Creates a user.
    pub async fn create_user(&self, user: &CreateUser) -> Result<UserInfo, IdpAdminError> {
        self.json(Method::POST, "/users", Some(user)).await
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserInfo>, IdpAdminError> {
        self.json(Method::GET, "/users", None::<&()>).await
    }

    /// One user.
    pub async fn user(&self, name: &str) -> Result<UserInfo, IdpAdminError> {
        self.json(
            Method::GET,
            &format!("/users/{}", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// Changes a user's display name, email or enabled flag.
    pub async fn update_user(
        &self,
        name: &str,
        change: &UpdateUser,
    ) -> Result<UserInfo, IdpAdminError> {
        self.json(
            Method::PATCH,
            &format!("/users/{}", segment(name)),
            Some(change),
        )
        .await
    }

    /// Deletes a user (and revokes their refresh tokens).
    pub async fn delete_user(&self, name: &str) -> Result<(), IdpAdminError> {
        self.send(
            Method::DELETE,
            &format!("/users/{}", segment(name)),
            None::<&()>,
        )
        .await?;
        Ok(())
    }

    /// Sets a user's password (and revokes their refresh tokens).
    pub async fn set_password(&self, name: &str, password: Secret) -> Result<(), IdpAdminError> {
        self.send(
            Method::PUT,
            &format!("/users/{}/password", segment(name)),
            Some(&SetPassword { password }),
        )
        .await?;
        Ok(())
    }

    /// Creates a group.
    pub async fn create_group(&self, name: &str) -> Result<GroupInfo, IdpAdminError> {
        let body = CreateGroup {
            name: name.to_string(),
        };
        self.json(Method::POST, "/groups", Some(&body)).await
    }

    /// Every group, by name.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, IdpAdminError> {
        self.json(Method::GET, "/groups", None::<&()>).await
    }

    /// One group.
    pub async fn group(&self, name: &str) -> Result<GroupInfo, IdpAdminError> {
        self.json(
            Method::GET,
            &format!("/groups/{}", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// Deletes a group (its members stay users).
    pub async fn delete_group(&self, name: &str) -> Result<(), IdpAdminError> {
        self.send(
            Method::DELETE,
            &format!("/groups/{}", segment(name)),
            None::<&()>,
        )
        .await?;
        Ok(())
    }

    /// Adds `user` to `group` (already a member: no change).
    pub async fn add_member(&self, group: &str, user: &str) -> Result<GroupInfo, IdpAdminError> {
        let path = format!("/groups/{}/members/{}", segment(group), segment(user));
        self.json(Method::PUT, &path, None::<&()>).await
    }

    /// Removes `user` from `group`.
    pub async fn remove_member(&self, group: &str, user: &str) -> Result<GroupInfo, IdpAdminError> {
        let path = format!("/groups/{}/members/{}", segment(group), segment(user));
        self.json(Method::DELETE, &path, None::<&()>).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_and_start_with_a_letter_or_digit() {
        for good in ["alice", "a", "0day", "bob.smith", "ci_bot-2"] {
            assert!(is_valid_name(good), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            "Alice",
            ".x",
            "-x",
            "_x",
            "a b",
            "a/b",
            "é",
            long.as_str(),
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_password_is_not_in_debug_output() {
        let body = SetPassword {
            password: Secret::new("hunter2hunter2"),
        };
        assert!(!format!("{body:?}").contains("hunter2"));
    }
}
