//! The HTTP an independent OpenID Connect client (the `openidconnect`
//! crate) uses in tests: reqwest, following no redirect (as the crate's
//! documentation asks).

/// Sends one of openidconnect's requests.
pub async fn http(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut answer = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    let body = response.bytes().await?;
    Ok(answer.body(body.to_vec()).expect("a response"))
}
