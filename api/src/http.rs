//! The HTTP client every Ick process builds once and clones.

use std::time::Duration;

/// Builds the process's `reqwest::Client`: rustls, a user agent naming Ick,
/// a connect timeout, and no total timeout (blob and log streams are long).
pub fn client() -> reqwest::Client {
    builder().build().unwrap_or_else(|_| reqwest::Client::new())
}

/// The builder behind [`client`], for a process that needs to add to it.
pub fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("ick/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
}

/// Joins a base URL and an absolute path, whatever slashes either has.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Escapes a name for a URL path segment (names are already restricted,
/// but refs and user input may hold anything).
pub fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
