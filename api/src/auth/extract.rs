use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;
use crate::scope::{Scope, ScopeSet};

use super::verifier::{TokenVerifier, VerifyError};

/// Who is calling, as their verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`.
    pub subject: String,
    /// The token's `client_id`.
    pub client_id: String,
    /// The token's `client_name`, if the IDP named the client.
    pub client_name: Option<String>,
    /// The granted scopes.
    pub scopes: ScopeSet,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// The worker the token names (`ick_worker`), for clients with `work:run`.
    pub worker: Option<crate::oauth::WorkerIdentity>,
    /// The person the token acts for (`ick_user`), if a person logged in.
    pub user: Option<crate::oauth::UserIdentity>,
}

impl Caller {
    /// Who the caller is, for people: its client's name as the token
    /// gives it, else the client's id.
    pub fn display_name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.subject)
    }
}

/// A marker type naming the scope an endpoint needs.
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Marker types for [`Authorized`], one per scope.
pub mod scopes {
    use super::RequiredScope;
    use crate::scope::Scope;

    macro_rules! markers {
        ($($name:ident),*) => {$(
            #[doc = concat!("Requires `Scope::", stringify!($name), "`.")]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl RequiredScope for $name {
                const SCOPE: Scope = Scope::$name;
            }
        )*};
    }

    markers!(
        ProjectsRead,
        ProjectsWrite,
        BuildsRead,
        BuildsTrigger,
        BuildsCancel,
        WorkRun,
        BlobsRead,
        BlobsWrite,
        BlobsDelete,
        IdpAdmin,
        MetricsRead
    );
}

/// An extractor that admits a request only with a valid bearer token that
/// carries the scope `S`; otherwise it answers 401 or 403 as problem+json.
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    /// The caller.
    pub caller: Caller,
    _scope: PhantomData<S>,
}

/// Why a request was refused before its handler ran.
#[derive(Debug)]
pub enum AuthRejection {
    /// No token, or one that failed checking: 401.
    Unauthenticated(String),
    /// A valid token without the scope: 403.
    MissingScope(Scope),
    /// The keys cannot be fetched, so no token can be checked: 503.
    Unavailable(String),
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let (problem, challenge) = match self {
            AuthRejection::Unauthenticated(why) => (
                Problem::new(StatusCode::UNAUTHORIZED, why.clone())
                    .with_title("Missing or invalid access token"),
                format!(
                    "Bearer realm=\"ick\", error=\"invalid_token\", error_description=\"{}\"",
                    why.replace('"', "'")
                ),
            ),
            AuthRejection::MissingScope(scope) => (
                Problem::new(
                    StatusCode::FORBIDDEN,
                    format!("this needs a token with the scope {scope}"),
                )
                .with_title("Insufficient scope")
                .with("scope", scope.as_str()),
                format!("Bearer realm=\"ick\", error=\"insufficient_scope\", scope=\"{scope}\""),
            ),
            AuthRejection::Unavailable(why) => {
                return Problem::new(StatusCode::SERVICE_UNAVAILABLE, why)
                    .with_title("Tokens cannot be checked now")
                    .into_response();
            }
        };
        let mut response = problem.into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The bearer token of a request, if it has one.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl<St, S> FromRequestParts<St> for Authorized<S>
where
    St: Send + Sync,
    S: RequiredScope,
    TokenVerifier: FromRef<St>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| {
            AuthRejection::Unauthenticated("the request has no bearer token".to_string())
        })?;
        let verifier = TokenVerifier::from_ref(state);
        let caller = verifier.verify(token).await.map_err(|e| match e {
            VerifyError::Invalid(why) => AuthRejection::Unauthenticated(why),
            VerifyError::KeysUnavailable(why) => AuthRejection::Unavailable(why),
        })?;
        if !caller.scopes.contains(S::SCOPE) {
            return Err(AuthRejection::MissingScope(S::SCOPE));
        }
        Ok(Authorized {
            caller,
            _scope: PhantomData,
        })
    }
}
