//! A real `ick-web` for tests: the example config
//! (`deploy/config/web.yaml`) pointed at a test IDP and controller, with a
//! confidential client of its own whose redirect URI is its callback.

use std::path::Path;

use serde_yaml::Value;
use tempfile::TempDir;

use crate::idp::{Credentials, TestIdp};
use crate::process::ServiceProcess;
use crate::{bin_path, repo_root};

pub struct TestWeb {
    pub process: ServiceProcess,
    pub client: Credentials,
    pub dir: TempDir,
}

impl TestWeb {
    /// A dashboard of `controller` (base URL) logging people in at `idp`.
    pub fn start(idp: &TestIdp, controller: &str) -> TestWeb {
        let dir = tempfile::tempdir().expect("tempdir");
        // The client's redirect URI names the port: one chosen first.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let client = idp.create_login_client(
            &format!("web-{port}"),
            &[
                "projects:read",
                "builds:read",
                "builds:trigger",
                "builds:cancel",
            ],
            &[&format!("{url}/login/callback")],
            false,
        );
        let text = std::fs::read_to_string(repo_root().join("deploy/config/web.yaml"))
            .expect("deploy/config/web.yaml");
        let mut config: Value = serde_yaml::from_str(&text).expect("example config parses");
        let secret = dir.path().join("secret");
        write_private(&secret, &client.secret);
        config["http"]["listen"] = format!("127.0.0.1:{port}").into();
        config["public_url"] = url.as_str().into();
        config["controller"] = controller.into();
        config["idp"] = idp.url().into();
        config["client_id"] = client.id.as_str().into();
        config["client_secret_file"] = path_value(&secret);
        config["session_key_file"] = path_value(&dir.path().join("session.key"));
        let path = dir.path().join("web.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("config");
        let process = ServiceProcess::start(
            &bin_path("ick-web"),
            ["--config".as_ref(), path.as_os_str()],
            &[],
            dir.path().join("web.log"),
        );
        TestWeb {
            process,
            client,
            dir,
        }
    }

    pub fn url(&self) -> &str {
        &self.process.url
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{text}\n")).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn path_value(path: &Path) -> Value {
    path.to_string_lossy().as_ref().into()
}

/// A person at a browser on the dashboard: keeps its cookies, follows no
/// redirect by itself, and logs in through the IDP's form.
pub struct WebBrowser {
    http: reqwest::Client,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

/// What came back.
#[derive(Debug)]
pub struct Page {
    pub status: reqwest::StatusCode,
    pub location: Option<String>,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl WebBrowser {
    pub fn new(web: &TestWeb) -> WebBrowser {
        WebBrowser::at(web.url())
    }

    /// A browser on the dashboard at `base` (its URL).
    pub fn at(base: &str) -> WebBrowser {
        WebBrowser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.trim_end_matches('/').to_string(),
            cookies: Default::default(),
        }
    }

    /// The same browser on the dashboard's new address (cookies go by
    /// host, not port).
    pub fn moved_to(&mut self, base: &str) {
        self.base = base.trim_end_matches('/').to_string();
    }

    /// The cookies it holds, by name.
    pub fn cookies(&self) -> &std::collections::BTreeMap<String, String> {
        &self.cookies
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookie.is_empty() {
            request
        } else {
            request.header(reqwest::header::COOKIE, cookie)
        };
        let response = request.send().await.expect("ick-web answers");
        for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let set = set.to_str().expect("ascii");
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || set.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            headers: response.headers().clone(),
            body: response.text().await.unwrap_or_default(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(self.url(path));
        self.send(request).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(self.url(path)).form(form);
        self.send(request).await
    }

    /// Opens `path` and, sent to the login, logs in as `user` there; the
    /// page it comes back to.
    pub async fn log_in(&mut self, path: &str, user: &str, password: &str) -> Page {
        let mut page = self.get(path).await;
        let mut at_idp = None;
        for _ in 0..3 {
            let Some(location) = page.location.clone() else {
                break;
            };
            if !location.starts_with('/') && !location.starts_with(&self.base) {
                at_idp = Some(location);
                break;
            }
            page = self.get(&location).await;
        }
        let authorize = at_idp.unwrap_or_else(|| panic!("not sent to the IDP: {page:?}"));
        let answer = crate::browser::Browser::new()
            .log_in(&authorize, user, password)
            .await;
        let callback = answer
            .location
            .unwrap_or_else(|| panic!("the IDP did not send back: {}", answer.body));
        let page = self.get(&callback).await;
        let back = page
            .location
            .clone()
            .unwrap_or_else(|| panic!("the callback did not redirect: {page:?}"));
        self.get(&back).await
    }

    /// The hidden CSRF field of a page's forms.
    pub fn csrf(page: &Page) -> String {
        let at = page
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no form with a CSRF token: {}", page.body));
        let rest = &page.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("closing quote")].to_string()
    }
}
