//! What tests that drive the IDP with the `openidconnect` crate (a
//! client we did not write) share: its HTTP, over our reqwest.

/// The OIDC client's HTTP: reqwest, following no redirect (as the crate's
/// documentation asks).
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
