//! Which Ick user a verified upstream identity is. The trust boundary:
//! only the (upstream, `sub`) link logs in; a claimed name that is a
//! local user's is refused, never taken over.

use ick_api::audit::{Actor, AuditAction};

use super::{Identity, Upstream};
use crate::error::IdpError;
use crate::people::{Name, check_display_name, check_email};
use crate::store::audit::Note;
use crate::store::{Store, UserRecord};

/// What a verified identity is to us.
#[derive(Debug)]
pub enum Resolved {
    /// This user (found by the link, or just made for it).
    User(UserRecord),
    /// Refused; the text is for the person.
    Refused(String),
}

/// The Ick user `identity` of `upstream` is: the one linked to its `sub`,
/// else a new user named from its claim (lowercased) with no password.
/// A local user of that name is never taken over; a disabled user is
/// refused.
pub async fn resolve_user(
    store: &Store,
    upstream: &Upstream,
    identity: &Identity,
    now: i64,
    address: std::net::IpAddr,
) -> Result<Resolved, IdpError> {
    if let Some(user) = store
        .upstream_user(&upstream.slug, &identity.subject)
        .await?
    {
        return Ok(if user.enabled {
            Resolved::User(user)
        } else {
            Resolved::Refused("Your Ick account is disabled.".into())
        });
    }
    let wanted = identity.username.to_lowercase();
    let Ok(name) = Name::parse("user", &wanted) else {
        return Ok(Resolved::Refused(format!(
            "Your {} name {:?} (its {} claim) is not a usable Ick username: it needs 1-64 \
             characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit. Ask an \
             administrator for an account.",
            upstream.name, identity.username, upstream.claim
        )));
    };
    let taken = || {
        Resolved::Refused(format!(
            "An Ick account named {:?} already exists and is not linked to your {} account, so \
             you cannot log in to it this way. Log in with its password, or ask an administrator.",
            name.as_str(),
            upstream.name
        ))
    };
    if store.user_by_name(name.as_str()).await?.is_some() {
        return Ok(taken());
    }
    let display_name = identity
        .display_name
        .as_deref()
        .and_then(|d| check_display_name(d).ok())
        .unwrap_or_else(|| name.as_str().to_string());
    let email = identity
        .email
        .as_deref()
        .and_then(|e| check_email(e).ok())
        .unwrap_or_default();
    let user = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.as_str().to_string(),
        display_name,
        email,
        password_hash: None,
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    let actor = Actor::upstream(&upstream.slug, address);
    let note = Note::new(&actor, AuditAction::UserCreate, &user.name).with(serde_json::json!({
        "display_name": user.display_name,
        "email": user.email,
        "upstream": upstream.slug,
    }));
    match store
        .insert_upstream_user(&user, &upstream.slug, &identity.subject, &note)
        .await
    {
        Ok(()) => {
            tracing::info!(user = %user.name, upstream = %upstream.slug, "user created from an upstream login");
            Ok(Resolved::User(user))
        }
        // Someone took the name (or linked this sub) since we looked.
        Err(IdpError::Conflict(_)) => Ok(taken()),
        Err(e) => Err(e),
    }
}
