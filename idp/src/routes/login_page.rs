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
    pub client_name: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// Providers offered as "Sign in with NAME", each link carrying `csrf`.
    pub upstreams: &'a [crate::upstream::Upstream],
}

/// The login form (fields `username`, `password`, hidden `csrf`), POSTed
/// back to `authorize` beside the page.
pub(super) fn login_form(status: StatusCode, form: &LoginForm<'_>) -> Response {
    let error = form
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Log in to Ick</h1>\
         <p>to continue to <strong>{client}</strong></p>{error}\
         <form method=\"post\" action=\"authorize\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" \
         autocomplete=\"username\" autocapitalize=\"none\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" \
         autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>{upstreams}",
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
