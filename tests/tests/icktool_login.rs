//! `icktool login` through the device authorization grant, end to end:
//! the real icktool as a child process, its stderr read line by line for
//! the code, which the test types into the IDP's /device page over HTTP
//! (as a person's browser would), logs in and approves. Then the person's
//! commands, their renewal, logout, and the attacks: a denial, an expired
//! code, a revoked login.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{COMMAND_TIMEOUT, Ick, Run, Running, s, wait_for};
use ick_api::oauth::ClientWithSecret;
use ick_tests::browser::Browser;
use ick_tests::idp::Storage;
use ick_tests::{TestIdp, bin_path, repo_root};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

const PASSWORD: &str = "alice's password";

/// A person's machine: their own config folder (XDG_CONFIG_HOME), no
/// config file, no machine client.
struct Person {
    home: TempDir,
}

impl Person {
    fn new() -> Person {
        Person {
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin_path("icktool"));
        command
            .args(args)
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"))
            .env("HOME", self.home.path())
            .env_remove("ICKTOOL_CONFIG")
            .env_remove("ICKTOOL_CLIENT_ID")
            .env_remove("ICKTOOL_CLIENT_SECRET")
            .env_remove("ICKTOOL_CONTROLLER")
            .env_remove("ICKTOOL_IDP")
            .env_remove("ICKTOOL_ARTIFACT_STORE")
            .env_remove("RUST_BACKTRACE")
            .current_dir(repo_root());
        command
    }

    fn icktool(&self, args: &[&str]) -> Run {
        Running::start(self.command(args)).wait(COMMAND_TIMEOUT)
    }

    fn tokens_path(&self) -> PathBuf {
        self.home.path().join("xdg/icktool/tokens.json")
    }

    fn tokens(&self) -> Value {
        let text = std::fs::read_to_string(self.tokens_path()).expect("tokens.json");
        serde_json::from_str(&text).expect("tokens.json is JSON")
    }

    /// Starts `icktool login` and reads the URL and code from its stderr.
    fn start_login(&self, idp: &str, controller: Option<&str>, client_id: &str) -> Login {
        let mut args = vec!["login", "--idp", idp, "--client-id", client_id];
        if let Some(c) = controller {
            args.extend(["--controller", c]);
        }
        let running = Running::start(self.command(&args));
        let line = wait_for(Duration::from_secs(60), "icktool login's code", || {
            running
                .stderr_so_far()
                .lines()
                .find(|l| l.starts_with("Open "))
                .map(str::to_string)
        });
        let rest = line.strip_prefix("Open ").expect("Open …");
        let (uri, code) = rest
            .split_once(" and enter the code ")
            .unwrap_or_else(|| panic!("not `Open URL and enter the code CODE`: {line}"));
        Login {
            running,
            uri: uri.to_string(),
            code: code.trim().to_string(),
        }
    }
}

struct Login {
    running: Running,
    uri: String,
    code: String,
}

/// The suite with a 10 s access-token lifetime (so every command renews,
/// being within 30 s of expiry) and a 1 s polling interval; user `alice`
/// in group `devs`, a viewer of project `hello`; the public `icktool`
/// client with the device grant, made with icktool.
async fn suite() -> (Ick, String) {
    let ick = Ick::start_with_idp(
        0,
        |c| {
            c["token_lifetime"] = "10s".into();
            c["device"]["interval"] = "1s".into();
        },
        |_| {},
    );
    ick.idp.create_user("alice", PASSWORD).await;
    let (status, _) = ick
        .idp
        .admin_call(Method::POST, "/groups", Some(json!({"name": "devs"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = ick
        .idp
        .admin_call(Method::PUT, "/groups/devs/members/alice", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let client: ClientWithSecret = ick
        .icktool(&[
            "client",
            "create",
            "icktool",
            "--public",
            "--device",
            "--scope",
            "projects:read projects:write builds:read builds:trigger",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert!(client.client.public && client.client.device);
    assert!(client.client_secret.is_none());
    let hello = repo_root().join("examples/hello");
    ick.icktool(&["apply", "-f", s(&hello)]).ok();
    ick.icktool(&["member", "add", "hello", "user:alice", "viewer"])
        .ok();
    (ick, client.client.id)
}

async fn refresh_at(idp: &TestIdp, client_id: &str, refresh: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(idp.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", client_id),
        ])
        .send()
        .await
        .expect("the IDP answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn field(tokens: &Value, name: &str) -> String {
    tokens[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in tokens.json: {tokens}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_with_icktool_and_acts_as_themselves() {
    use std::os::unix::fs::PermissionsExt;
    let (ick, client_id) = suite().await;
    let person = Person::new();
    let login = person.start_login(ick.idp.url(), Some(ick.controller.url()), &client_id);
    assert_eq!(login.uri, format!("{}/device", ick.idp.url()));
    let stderr = login.running.stderr_so_far();
    assert!(
        stderr.contains(&format!("{}?user_code={}", login.uri, login.code)),
        "the complete URI is shown too: {stderr}"
    );
    let answer = Browser::new()
        .approve_device(&login.uri, &login.code, "alice", PASSWORD, true)
        .await;
    assert!(answer.body.contains("Device approved"), "{}", answer.body);
    login.running.wait(COMMAND_TIMEOUT).ok();

    let mode = std::fs::metadata(person.tokens_path())
        .expect("tokens.json exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let tokens = person.tokens();
    assert_eq!(field(&tokens, "idp"), ick.idp.url());
    assert_eq!(field(&tokens, "client_id"), client_id);
    assert_eq!(field(&tokens, "controller"), ick.controller.url());

    // Who the IDP sees.
    let who: Value = person.icktool(&["whoami", "--output", "json"]).ok().json();
    assert_eq!(who["kind"], "person", "{who}");
    assert_eq!(who["username"], "alice", "{who}");
    assert_eq!(who["display_name"], "alice (test)", "{who}");
    assert_eq!(who["groups"], json!(["devs"]), "{who}");
    let table = person.icktool(&["whoami"]).ok();
    assert!(table.stdout.contains("user:    alice"), "{table}");

    // The controller sees alice, with her roles: a viewer reads hello,
    // and may not change its members. The 10 s token is renewed by every
    // command (it is within 30 s of expiry), the refresh token rotated.
    let before = person.tokens();
    let shown: Value = person
        .icktool(&["project", "show", "hello", "--output", "json"])
        .ok()
        .json();
    assert!(shown.to_string().contains("hello"), "{shown}");
    let after = person.tokens();
    assert_ne!(
        field(&before, "refresh_token"),
        field(&after, "refresh_token")
    );
    assert_ne!(
        field(&before, "access_token"),
        field(&after, "access_token")
    );
    let refused = person.icktool(&["member", "add", "hello", "user:bob", "viewer"]);
    assert_eq!(
        refused.code(),
        2,
        "a viewer may not add members:\n{refused}"
    );

    // An access token refused (401) is renewed once and the call retried.
    let mut broken = person.tokens();
    broken["access_token"] = "not-a-token".into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    broken["expires_at"] = (now + 3600).into();
    std::fs::write(person.tokens_path(), broken.to_string()).expect("write");
    person
        .icktool(&["project", "show", "hello", "--output", "json"])
        .ok();
    let renewed = person.tokens();
    assert_ne!(field(&renewed, "access_token"), "not-a-token");
    assert_ne!(
        field(&renewed, "refresh_token"),
        field(&broken, "refresh_token")
    );

    // A config with a client id and secret wins over the login.
    let machine: Value = person
        .icktool(&["--config", s(&ick.config), "whoami", "--output", "json"])
        .ok()
        .json();
    assert_eq!(machine["kind"], "client", "{machine}");
    assert_eq!(machine["client_name"], "test-admin", "{machine}");

    // Logout revokes the login at the IDP and forgets it.
    let last = field(&person.tokens(), "refresh_token");
    person.icktool(&["logout"]).ok();
    assert!(!person.tokens_path().exists());
    let (status, body) = refresh_at(&ick.idp, &client_id, &last).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    person.icktool(&["whoami"]).fails(2, "no icktool config");
    person.icktool(&["logout"]).ok().fails(0, "Not logged in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_login_fails_and_a_revoked_one_says_to_log_in_again() {
    let (ick, client_id) = suite().await;
    let person = Person::new();
    let login = person.start_login(ick.idp.url(), Some(ick.controller.url()), &client_id);
    let answer = Browser::new()
        .approve_device(&login.uri, &login.code, "alice", PASSWORD, false)
        .await;
    assert!(answer.body.contains("Device denied"), "{}", answer.body);
    login.running.wait(COMMAND_TIMEOUT).fails(2, "denied");
    assert!(!person.tokens_path().exists());

    let login = person.start_login(ick.idp.url(), Some(ick.controller.url()), &client_id);
    let answer = Browser::new()
        .approve_device(&login.uri, &login.code, "alice", PASSWORD, true)
        .await;
    assert!(answer.body.contains("Device approved"), "{}", answer.body);
    login.running.wait(COMMAND_TIMEOUT).ok();
    person.icktool(&["whoami"]).ok();
    // Disabling alice revokes her logins: the next renewal is refused.
    let (status, _) = ick
        .idp
        .admin_call(
            Method::PATCH,
            "/users/alice",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    person.icktool(&["project", "show", "hello"]).fails(
        2,
        "your login has expired or was revoked: run icktool login",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_device_code_fails_icktool_login_and_opens_nothing() {
    let idp = TestIdp::start_with(Storage::Postgres, |c| {
        c["device"]["code_lifetime"] = "2s".into();
        c["device"]["interval"] = "1s".into();
    });
    idp.create_user("alice", PASSWORD).await;
    let client_id = idp.create_device_client("icktool", &["projects:read"]).id;
    let person = Person::new();
    let login = person.start_login(idp.url(), None, &client_id);
    login.running.wait(COMMAND_TIMEOUT).fails(2, "expired");
    assert!(!person.tokens_path().exists());
    let mut browser = Browser::new();
    let page = browser.login_page(&login.uri).await;
    let late = browser.submit(&page, &[("user_code", &login.code)]).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST, "{}", late.body);
    assert!(late.body.contains("not right"), "{}", late.body);
}
