//! The login page: plain HTML, every value escaped, no script, no frames.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `text` safe inside HTML text and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;\
padding:0 1rem;color:#222}h1{font-size:1.4rem}label{display:block;margin-top:1rem}\
input[type=text],input[type=password]{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin-top:1.2rem;padding:.5rem 1.2rem}.error{color:#a00;margin-top:1rem}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// What the form shows.
pub(super) struct LoginForm<'a> {
    /// Where it posts to.
    pub action: &'a str,
    pub client_name: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// Providers offered as "Sign in with NAME", each link carrying `csrf`.
    pub upstreams: &'a [crate::upstream::Upstream],
}

/// The login form (fields `username`, `password`, hidden `csrf`), POSTed
/// to its `action`.
pub(super) fn login_form(status: StatusCode, form: &LoginForm<'_>) -> Response {
    let error = form
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Log in to Ick</h1>\
         <p>to continue to <strong>{client}</strong></p>{error}\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" \
         autocomplete=\"username\" autocapitalize=\"none\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" \
         autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>{upstreams}",
        action = escape(form.action),
        client = escape(form.client_name),
        csrf = escape(form.csrf),
        username = escape(form.username),
        upstreams = upstream_links(form.csrf, form.upstreams),
    );
    page(status, "Log in to Ick", &body)
}

/// A "Sign in with NAME" link per provider, to `upstream/SLUG/start`
/// beside the form, with the form's CSRF token (the pending login).
fn upstream_links(csrf: &str, upstreams: &[crate::upstream::Upstream]) -> String {
    if upstreams.is_empty() {
        return String::new();
    }
    let links: String = upstreams
        .iter()
        .map(|u| {
            format!(
                "<p><a class=\"upstream\" href=\"upstream/{slug}/start?csrf={csrf}\">\
                 Sign in with {name}</a></p>",
                slug = escape(&u.slug),
                csrf = escape(csrf),
                name = escape(&u.name),
            )
        })
        .collect();
    format!("<p>or</p>{links}")
}

/// The form where a person types the code a device shows (field
/// `user_code`), POSTed to `action`.
pub(super) fn user_code_form(
    status: StatusCode,
    action: &str,
    user_code: &str,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Log in a device to Ick</h1>\
         <p>Type the code your device (e.g. <code>icktool login</code>) shows.</p>{error}\
         <form method=\"post\" action=\"{action}\">\
         <label for=\"user_code\">Code</label>\
         <input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{code}\" \
         autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" required autofocus>\
         <button type=\"submit\">Continue</button></form>",
        action = escape(action),
        code = escape(user_code),
    );
    page(status, "Log in a device to Ick", &body)
}

/// What a device asks for, and who would give it.
pub(super) struct Consent<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    pub client_name: &'a str,
    pub username: &'a str,
    pub scope: &'a str,
}

/// The explicit approve or deny step of a device login (field
/// `decision`: `approve` or `deny`, hidden `csrf`).
pub(super) fn consent_form(consent: &Consent<'_>) -> Response {
    let scope = if consent.scope.is_empty() {
        "(no scopes)"
    } else {
        consent.scope
    };
    let body = format!(
        "<h1>Approve this device?</h1>\
         <p><strong>{client}</strong> asks to act as <strong>{user}</strong> with:</p>\
         <p><code>{scope}</code></p>\
         <p>Approve only if you started this login yourself, just now.</p>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        client = escape(consent.client_name),
        user = escape(consent.username),
        scope = escape(scope),
        action = escape(consent.action),
        csrf = escape(consent.csrf),
    );
    page(StatusCode::OK, "Approve this device?", &body)
}

/// A page that says how a step ended and offers nothing to submit.
pub(super) fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!("<h1>{}</h1><p>{}</p>", escape(title), escape(message));
    page(status, title, &body)
}

/// A page that says what went wrong and offers nothing to submit.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Cannot log in</h1><p class=\"error\" role=\"alert\">{}</p>\
         <p>Go back to the application and start again.</p>",
        escape(message)
    );
    page(status, "Cannot log in", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_user_supplied_is_escaped() {
        assert_eq!(
            escape(r#"<script>"a"&'b'</script>"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
    }
}
