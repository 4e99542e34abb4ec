//! A person at a browser, as far as the IDP's login can tell: it follows
//! no redirect by itself (tests look at each), keeps the IDP's cookie, and
//! fills in the login form the way a person would.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// One browser: its cookies for the IDP (just the login cookie).
pub struct Browser {
    http: reqwest::Client,
    cookie: Option<String>,
}

/// The login form as served.
#[derive(Debug, Clone)]
pub struct LoginPage {
    pub status: StatusCode,
    pub html: String,
    /// Where the form posts to (absolute).
    pub action: String,
    /// The hidden `csrf` field.
    pub csrf: Option<String>,
}

/// What came back after a step: a page, or a redirect.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
    pub retry_after: Option<String>,
}

impl Answer {
    /// The query pairs of the redirect's target.
    pub fn redirect_params(&self) -> Vec<(String, String)> {
        let location = self
            .location
            .as_deref()
            .unwrap_or_else(|| panic!("no redirect: {} {}", self.status, self.body));
        let url = url::Url::parse(location).expect("an absolute redirect");
        url.query_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One parameter of the redirect's target.
    pub fn redirect_param(&self, name: &str) -> Option<String> {
        self.redirect_params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The value of `name="NAME" value="…"` in `html`, unescaped.
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookie: None,
        }
    }

    /// Forgets its cookie (another browser, for the same person).
    pub fn clear_cookies(&mut self) {
        self.cookie = None;
    }

    fn keep_cookie(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            if let Some(pair) = value.to_str().ok().and_then(|v| v.split(';').next()) {
                self.cookie = Some(pair.trim().to_string());
            }
        }
    }

    /// Opens `url` (the authorization request) and reads the login form.
    pub async fn open(&mut self, url: &str) -> Answer {
        let mut request = self.http.get(url);
        if let Some(c) = &self.cookie {
            request = request.header(COOKIE, c);
        }
        let response = request.send().await.expect("the IDP answers");
        self.keep_cookie(&response);
        answer(response).await
    }

    /// Opens `url` and expects the login form.
    pub async fn login_page(&mut self, url: &str) -> LoginPage {
        let answer = self.open(url).await;
        let base = url::Url::parse(url).expect("absolute URL");
        let action = hidden_action(&answer.body)
            .map(|a| base.join(&a).expect("action resolves").to_string())
            .unwrap_or_else(|| base.join("authorize").expect("joins").to_string());
        LoginPage {
            status: answer.status,
            csrf: hidden_field(&answer.body, "csrf"),
            html: answer.body,
            action,
        }
    }

    /// The form of an answer (a page that a step answered with), its
    /// action resolved against `base`.
    pub fn form_of(answer: &Answer, base: &str) -> LoginPage {
        let base = url::Url::parse(base).expect("absolute URL");
        let action = hidden_action(&answer.body)
            .map(|a| base.join(&a).expect("action resolves").to_string())
            .unwrap_or_else(|| base.to_string());
        LoginPage {
            status: answer.status,
            csrf: hidden_field(&answer.body, "csrf"),
            html: answer.body.clone(),
            action,
        }
    }

    /// Logs a device in at `verification_uri`: types `user_code`, logs in
    /// as `username` with `password`, then approves (or denies); answers
    /// the last page.
    pub async fn approve_device(
        &mut self,
        verification_uri: &str,
        user_code: &str,
        username: &str,
        password: &str,
        approve: bool,
    ) -> Answer {
        let page = self.login_page(verification_uri).await;
        assert_eq!(page.status, StatusCode::OK, "code form: {}", page.html);
        let login = self.submit(&page, &[("user_code", user_code)]).await;
        assert_eq!(login.status, StatusCode::OK, "login form: {}", login.body);
        let login = Self::form_of(&login, verification_uri);
        let csrf = login.csrf.clone().expect("the login form has a csrf field");
        let consent = self
            .submit(
                &login,
                &[
                    ("csrf", csrf.as_str()),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(consent.status, StatusCode::OK, "consent: {}", consent.body);
        let consent = Self::form_of(&consent, verification_uri);
        let csrf = consent
            .csrf
            .clone()
            .expect("the consent form has a csrf field");
        let decision = if approve { "approve" } else { "deny" };
        self.submit(&consent, &[("csrf", csrf.as_str()), ("decision", decision)])
            .await
    }

    /// Posts the login form with `fields` (and the browser's cookie).
    pub async fn submit(&mut self, page: &LoginPage, fields: &[(&str, &str)]) -> Answer {
        let mut request = self.http.post(&page.action).form(fields);
        if let Some(c) = &self.cookie {
            request = request.header(COOKIE, c);
        }
        let response = request.send().await.expect("the IDP answers");
        self.keep_cookie(&response);
        answer(response).await
    }

    /// Opens `url`, logs in as `username` with `password`, and answers the
    /// redirect back to the client.
    pub async fn log_in(&mut self, url: &str, username: &str, password: &str) -> Answer {
        let page = self.login_page(url).await;
        assert_eq!(page.status, StatusCode::OK, "login page: {}", page.html);
        let csrf = page.csrf.clone().expect("the form has a csrf field");
        self.submit(
            &page,
            &[
                ("csrf", csrf.as_str()),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }
}

/// The target of the link whose text is `text` in `html`, resolved
/// against `base` (the page's URL), unescaped.
pub fn link(html: &str, text: &str, base: &str) -> Option<String> {
    let end = html.find(&format!(">{text}</a>"))?;
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    let close = html[start..end].find('"')? + start;
    let href = html[start..close].replace("&amp;", "&");
    url::Url::parse(base)
        .ok()?
        .join(&href)
        .ok()
        .map(|u| u.to_string())
}

fn hidden_action(html: &str) -> Option<String> {
    let marker = "action=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await.unwrap_or_default();
    Answer {
        status,
        location,
        body,
        retry_after,
    }
}
