//! Logging in through the IDP (OAuth 2.0 authorization code with PKCE
//! S256 and `state`), keeping the session fresh with the refresh grant,
//! and logging out (the refresh token revoked at the IDP).

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use ick_api::oauth::{TokenResponse, UserInfoResponse};
use serde::Deserialize;

use crate::AppState;
use crate::error::{Result, WebError};
use crate::session::{PendingLogin, Session, challenge, random};

/// Where a login may return to: a path of this dashboard, nothing else
/// (an open redirect would send people anywhere with our name on it).
fn safe_back(back: Option<&str>) -> String {
    match back {
        Some(b) if b.starts_with('/') && !b.starts_with("//") && !b.contains('\\') => b.to_string(),
        _ => "/".to_string(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    back: Option<String>,
}

/// `GET /login?back=PATH`: off to the IDP's login.
pub(crate) async fn start(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<LoginQuery>,
) -> Response {
    let pending = PendingLogin::new(safe_back(query.back.as_deref()));
    let mut url = match url::Url::parse(&format!("{}/authorize", state.idp)) {
        Ok(url) => url,
        Err(e) => return WebError::Internal(format!("the IDP's URL: {e}")).into_response(),
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &state.client_id)
        .append_pair("redirect_uri", &state.redirect_uri)
        .append_pair("scope", &state.scopes)
        .append_pair("state", &pending.state)
        .append_pair("code_challenge", &challenge(&pending.verifier))
        .append_pair("code_challenge_method", "S256");
    let jar = state.cookies.set_pending(jar, &pending);
    (jar, Redirect::to(url.as_str())).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /login/callback`: the IDP sends the person back with a code.
pub(crate) async fn callback(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(answer): Query<Callback>,
) -> Result<Response> {
    if let Some(error) = answer.error {
        let why = answer.error_description.unwrap_or(error);
        return Err(WebError::Forbidden(format!(
            "the login did not succeed: {why}"
        )));
    }
    let pending = state.cookies.pending(&jar).ok_or_else(|| {
        WebError::BadRequest(
            "this login was not started here, or took too long: log in again".into(),
        )
    })?;
    if pending.expired() {
        return Err(WebError::BadRequest(
            "the login took too long: log in again".into(),
        ));
    }
    if answer.state.as_deref() != Some(pending.state.as_str()) {
        return Err(WebError::BadRequest(
            "the login's state does not match: log in again".into(),
        ));
    }
    let code = answer
        .code
        .ok_or_else(|| WebError::BadRequest("the IDP sent no code".into()))?;
    let tokens = state
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &state.redirect_uri),
            ("code_verifier", &pending.verifier),
        ])
        .await?;
    let who = state.userinfo(&tokens.access_token).await?;
    let session = Session::from_tokens(who.person.preferred_username, &tokens, random())
        .ok_or_else(|| WebError::Upstream("the IDP gave no refresh token".into()))?;
    tracing::info!(user = %session.user, "logged in");
    let jar = state.cookies.end_pending(jar);
    let jar = state.cookies.set_session(jar, &session);
    Ok((jar, Redirect::to(&pending.back)).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    pub csrf: String,
}

/// `POST /logout`: the session ends here and its login at the IDP.
pub(crate) async fn logout(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<CsrfForm>,
) -> Result<Response> {
    let Some(session) = state.cookies.session(&jar) else {
        return Ok(Redirect::to("/").into_response());
    };
    if !session.csrf_matches(&form.csrf) {
        return Err(WebError::Forbidden(
            "the form is stale: reload the page".into(),
        ));
    }
    let revoke = state
        .client_auth(state.http.post(format!("{}/revoke", state.idp)))
        .form(&[
            ("token", session.refresh_token.as_str()),
            ("token_type_hint", "refresh_token"),
            ("client_id", &state.client_id),
        ])
        .send()
        .await;
    if let Err(e) = revoke {
        // The cookie still goes: the token expires on its own.
        tracing::warn!(error = %e, "cannot revoke the refresh token at logout");
    }
    tracing::info!(user = %session.user, "logged out");
    Ok((state.cookies.end_session(jar), Redirect::to("/")).into_response())
}

impl AppState {
    fn client_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.client_secret {
            Some(secret) => request.basic_auth(&*self.client_id, Some(secret.expose())),
            None => request,
        }
    }

    /// A token request for the dashboard's client.
    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let mut form = form.to_vec();
        form.push(("client_id", &self.client_id));
        let request = self
            .client_auth(self.http.post(format!("{}/token", self.idp)))
            .form(&form);
        let response = request
            .send()
            .await
            .map_err(|e| WebError::Upstream(format!("the IDP is unreachable: {e}")))?;
        if response.status().is_success() {
            return response
                .json()
                .await
                .map_err(|e| WebError::Upstream(format!("the IDP answered oddly: {e}")));
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_client_error() {
            tracing::info!(%status, body = %body, "the IDP refused a token request");
            Err(WebError::Unauthenticated)
        } else {
            Err(WebError::Upstream(format!("the IDP failed: {status}")))
        }
    }

    async fn userinfo(&self, access_token: &str) -> Result<UserInfoResponse> {
        self.http
            .get(format!("{}/userinfo", self.idp))
            .bearer_auth(access_token)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| WebError::Upstream(format!("the IDP's userinfo failed: {e}")))?
            .json()
            .await
            .map_err(|e| WebError::Upstream(format!("the IDP answered oddly: {e}")))
    }

    /// The person's session, renewed if its access token is near expiry
    /// (the jar to answer with carries the renewed cookie); `None` when
    /// there is none or it cannot be renewed (the login was revoked).
    pub(crate) async fn session(
        &self,
        jar: PrivateCookieJar,
    ) -> (PrivateCookieJar, Option<Session>) {
        let Some(session) = self.cookies.session(&jar) else {
            return (jar, None);
        };
        if !session.needs_renewal() {
            return (jar, Some(session));
        }
        self.renew(jar, session).await
    }

    /// The session with tokens from its refresh token; `None` (and the
    /// cookie gone) if the IDP refuses it.
    pub(crate) async fn renew(
        &self,
        jar: PrivateCookieJar,
        session: Session,
    ) -> (PrivateCookieJar, Option<Session>) {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", session.refresh_token.as_str()),
        ];
        let renewed = self
            .renewals
            .renew(&session.refresh_token, || self.token(&form))
            .await;
        match renewed
            .ok()
            .and_then(|t| Session::from_tokens(session.user.clone(), &t, session.csrf.clone()))
        {
            Some(next) => {
                let jar = self.cookies.set_session(jar, &next);
                (jar, Some(next))
            }
            None => (self.cookies.end_session(jar), None),
        }
    }
}
