//! `icktool user …` and `icktool group …` against the real services: people
//! made, changed and removed, a password set by each of its sources and
//! then used to log in through the browser flow; bad input that changes
//! nothing.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Ick, Run, s, set_mode};
use ick_api::idp::{GroupInfo, UserInfo};
use ick_tests::bin_path;
use ick_tests::browser::Browser;
use reqwest::{Method, StatusCode};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Runs icktool with `input` on its stdin.
fn with_stdin(ick: &Ick, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(bin_path("icktool"))
        .arg("--config")
        .arg(&ick.config)
        .args(args)
        .env_remove("ICKTOOL_CONFIG")
        .env_remove("ICKTOOL_CLIENT_SECRET")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("icktool starts");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("icktool ends");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn users(ick: &Ick) -> Vec<UserInfo> {
    ick.icktool(&["user", "list", "--output", "json"])
        .ok()
        .json()
}

/// A PKCE S256 authorization request for `client_id` and `scope`.
fn authorize_url(ick: &Ick, client_id: &str, scope: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let verifier = "v".repeat(50);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={REDIRECT}\
         &scope={scope}&state=xyz&code_challenge={challenge}&code_challenge_method=S256",
        ick.idp.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_are_made_grouped_changed_and_removed_with_icktool() {
    let ick = Ick::start(0);
    let password_file = ick.file("alice-password", "first password\n");
    set_mode(&password_file, 0o600);
    let created: UserInfo = ick
        .icktool(&[
            "user",
            "create",
            "alice",
            "--display-name",
            "Alice Liddell",
            "--email",
            "alice@example.org",
            "--password-file",
            s(&password_file),
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(created.display_name, "Alice Liddell");
    assert!(created.has_password);
    with_stdin(
        &ick,
        &["user", "create", "bob", "--password-stdin"],
        "bobs password\n",
    )
    .ok();
    ick.icktool(&["user", "create", "carol", "--no-password"])
        .ok();

    let table = ick.icktool(&["user", "list"]).ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].contains("NAME") && lines[0].contains("EMAIL"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("alice") && lines[1].contains("alice@example.org"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");

    ick.icktool(&["group", "create", "devs"]).ok();
    ick.icktool(&["group", "add", "devs", "alice"]).ok();
    let group: GroupInfo = ick
        .icktool(&["group", "add", "devs", "bob", "--output", "json"])
        .ok()
        .json();
    assert_eq!(group.members, ["alice", "bob"]);
    let listed = ick.icktool(&["group", "list"]).ok();
    assert!(
        listed.stdout.contains("devs") && listed.stdout.contains("alice,bob"),
        "{listed}"
    );
    ick.icktool(&["group", "remove", "devs", "bob"]).ok();
    let alice: UserInfo = ick
        .icktool(&["user", "show", "alice", "--output", "json"])
        .ok()
        .json();
    assert_eq!(alice.groups, ["devs"]);
    let bob: UserInfo = ick
        .icktool(&["user", "show", "bob", "--output", "json"])
        .ok()
        .json();
    assert!(bob.groups.is_empty());
    let shown = ick.icktool(&["user", "show", "alice"]).ok();
    assert!(
        shown.stdout.contains("display name:  Alice Liddell"),
        "{shown}"
    );
    assert!(!shown.stdout.contains("first password"));

    // The password works in the browser; disabled, it does not.
    let web = ick
        .icktool(&[
            "client",
            "create",
            "web",
            "--scope",
            "builds:read",
            "--public",
            "--redirect-uri",
            REDIRECT,
        ])
        .ok();
    assert!(
        web.stdout.contains("public client: it has no secret"),
        "{web}"
    );
    let web_id = web
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_id:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no client_id:\n{web}"));
    let url = authorize_url(&ick, &web_id, "openid");
    let answer = Browser::new().log_in(&url, "alice", "first password").await;
    assert!(answer.redirect_param("code").is_some(), "{answer:?}");
    ick.icktool(&["user", "disable", "alice"]).ok();
    let alice: UserInfo = ick
        .icktool(&["user", "show", "alice", "--output", "json"])
        .ok()
        .json();
    assert!(!alice.enabled);
    let answer = Browser::new().log_in(&url, "alice", "first password").await;
    assert_eq!(answer.status, reqwest::StatusCode::UNAUTHORIZED);
    ick.icktool(&["user", "enable", "alice"]).ok();

    // A new password from stdin: the old one stops working.
    with_stdin(
        &ick,
        &["user", "passwd", "alice", "--password-stdin"],
        "second password\n",
    )
    .ok();
    let answer = Browser::new().log_in(&url, "alice", "first password").await;
    assert_eq!(answer.status, reqwest::StatusCode::UNAUTHORIZED);
    let answer = Browser::new()
        .log_in(&url, "alice", "second password")
        .await;
    assert!(answer.redirect_param("code").is_some(), "{answer:?}");

    ick.icktool(&["user", "delete", "bob"]).ok();
    let names: Vec<String> = users(&ick).into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "carol"]);
    ick.icktool(&["group", "delete", "devs"]).ok();
    let groups: Vec<GroupInfo> = ick
        .icktool(&["group", "list", "--output", "json"])
        .ok()
        .json();
    assert!(groups.is_empty());
}

#[test]
fn bad_people_input_through_icktool_changes_nothing() {
    let ick = Ick::start(0);
    with_stdin(
        &ick,
        &["user", "create", "alice", "--password-stdin"],
        "a fine password\n",
    )
    .ok();
    ick.icktool(&["group", "create", "devs"]).ok();
    let before = users(&ick);

    with_stdin(
        &ick,
        &["user", "create", "Alice", "--password-stdin"],
        "a fine password\n",
    )
    .fails(2, "user name \"Alice\"");
    with_stdin(
        &ick,
        &["user", "create", "alice", "--password-stdin"],
        "a fine password\n",
    )
    .fails(2, "already exists");
    with_stdin(
        &ick,
        &["user", "create", "dave", "--password-stdin"],
        "short\n",
    )
    .fails(2, "at least 8");
    // A password is never an argument: there is no such option.
    ick.icktool(&["user", "create", "eve", "--password", "a fine password"])
        .fails(2, "unexpected argument '--password'");
    ick.icktool(&["user", "passwd", "alice", "--password", "a fine password"])
        .fails(2, "unexpected argument '--password'");
    // Without a terminal and without a source, it cannot ask.
    ick.icktool(&["user", "create", "eve"])
        .fails(2, "use --password-file or --password-stdin");
    // A password file others can read is refused before anything is sent.
    let loose = ick.file("loose-password", "a fine password\n");
    set_mode(&loose, 0o644);
    ick.icktool(&["user", "create", "eve", "--password-file", s(&loose)])
        .fails(2, "chmod 600");
    ick.icktool(&["user", "passwd", "nobody", "--password-file", s(&loose)])
        .fails(2, "chmod 600");
    set_mode(&loose, 0o600);
    ick.icktool(&["user", "passwd", "nobody", "--password-file", s(&loose)])
        .fails(2, "no user \"nobody\"");
    ick.icktool(&["user", "disable", "nobody"])
        .fails(2, "no user \"nobody\"");
    ick.icktool(&["group", "add", "devs", "nobody"])
        .fails(2, "no user \"nobody\"");
    ick.icktool(&["group", "add", "nogroup", "alice"])
        .fails(2, "no group \"nogroup\"");
    ick.icktool(&["group", "remove", "devs", "alice"])
        .fails(2, "not in group");
    ick.icktool(&["group", "create", "devs"])
        .fails(2, "already exists");

    assert_eq!(users(&ick), before, "nothing changed");
    let groups: Vec<GroupInfo> = ick
        .icktool(&["group", "list", "--output", "json"])
        .ok()
        .json();
    assert_eq!(groups.len(), 1);
    assert!(groups[0].members.is_empty());
}

/// Logs `user` in through the browser flow of public client `client_id`
/// and answers the access token the code is exchanged for.
async fn person_token(ick: &Ick, client_id: &str, user: &str, password: &str) -> String {
    let scope = "openid%20projects:read%20projects:write%20builds:read%20builds:trigger";
    person_tokens(ick, client_id, None, scope, user, password).await["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// The token response for `user` logged in through `client_id` (with its
/// `secret` for a confidential one), asking for `scope` (URL-encoded).
async fn person_tokens(
    ick: &Ick,
    client_id: &str,
    secret: Option<&str>,
    scope: &str,
    user: &str,
    password: &str,
) -> serde_json::Value {
    let answer = Browser::new()
        .log_in(&authorize_url(ick, client_id, scope), user, password)
        .await;
    let code = answer
        .redirect_param("code")
        .unwrap_or_else(|| panic!("{user} logs in: {answer:?}"));
    let verifier = "v".repeat(50);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
        ("code_verifier", verifier.as_str()),
    ];
    if let Some(secret) = secret {
        form.push(("client_secret", secret));
    }
    let tokens: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token", ick.idp.url()))
        .form(&form)
        .send()
        .await
        .expect("token endpoint answers")
        .json()
        .await
        .expect("tokens");
    assert!(tokens["access_token"].is_string(), "{tokens}");
    tokens
}

/// A person is never a worker: logged in through a client that has
/// `work:run` and asking for it, their token does not get it, and the
/// controller's worker protocol refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_token_cannot_speak_the_worker_protocol() {
    let ick = Ick::start(0);
    with_stdin(
        &ick,
        &["user", "create", "mallory", "--password-stdin"],
        "mallorys password",
    )
    .ok();
    let made = ick
        .icktool(&[
            "client",
            "create",
            "farm",
            "--scope",
            "work:run builds:read",
            "--redirect-uri",
            REDIRECT,
        ])
        .ok();
    let field = |name: &str| {
        made.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name}\n{made}"))
    };
    let (id, secret) = (field("client_id:"), field("client_secret:"));
    for scope in ["openid%20work:run%20builds:read", ""] {
        let tokens = person_tokens(
            &ick,
            &id,
            Some(&secret),
            scope,
            "mallory",
            "mallorys password",
        )
        .await;
        let granted = tokens["scope"].as_str().unwrap_or_default();
        assert!(!granted.contains("work:run"), "{scope:?}: {tokens}");
        let token = tokens["access_token"].as_str().expect("token");
        let claim = ick
            .controller
            .client(token)
            .request(Method::POST, "/work/claim")
            .json(&serde_json::json!({
                "worker": "farm", "free_slots": 1, "slots": 1, "kinds": ["shell"]
            }))
            .send()
            .await
            .expect("answers");
        assert_eq!(claim.status(), StatusCode::FORBIDDEN, "{scope:?}");
    }
}

/// A person's token carries who they are and their groups; the controller
/// gives them the roles of `user:NAME` and of each `group:NAME`, never
/// those of the client they logged in through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_gets_the_roles_of_their_name_and_groups_not_of_their_client() {
    let ick = Ick::start(0);
    let file = ick.file(
        "p.yaml",
        "pipelines:\n  - pipeline: p\n    actions: [{shell: 'true'}]\n\
         projects:\n  - project: secret\n    pipelines: [p]\n    visibility: private\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    for (name, password) in [("alice", "alice password"), ("bob", "bobs password")] {
        with_stdin(
            &ick,
            &["user", "create", name, "--password-stdin"],
            password,
        )
        .ok();
    }
    ick.icktool(&["group", "create", "devs"]).ok();
    ick.icktool(&["group", "add", "devs", "alice"]).ok();
    let web = ick
        .icktool(&[
            "client",
            "create",
            "web",
            "--scope",
            "projects:read projects:write builds:read builds:trigger",
            "--public",
            "--redirect-uri",
            REDIRECT,
        ])
        .ok();
    let web_id = web
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_id:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no client_id:\n{web}"));
    ick.icktool(&["member", "add", "secret", "group:devs", "developer"])
        .ok();
    // The client people log in through is the project's owner: that must
    // give its people nothing.
    ick.icktool(&["member", "add", "secret", "client:web", "owner"])
        .ok();

    let alice = ick
        .controller
        .client(&person_token(&ick, &web_id, "alice", "alice password").await);
    let bob = ick
        .controller
        .client(&person_token(&ick, &web_id, "bob", "bobs password").await);

    // Alice, a developer through devs: reads and triggers, may not edit.
    let read = alice
        .request(Method::GET, "/projects/secret")
        .send()
        .await
        .expect("answers");
    assert_eq!(read.status(), StatusCode::OK);
    let build = alice.trigger("secret").await;
    let shown = alice.build(&build.id).await;
    assert_eq!(shown.build.triggered_by, "alice");
    let edit = alice
        .put_yaml("/projects/secret", "pipelines: [p]\nvisibility: public\n")
        .await;
    assert_eq!(edit.status(), StatusCode::FORBIDDEN);
    let members = alice
        .request(Method::PUT, "/projects/secret/members")
        .json(&serde_json::json!({"member": "user:alice", "role": "owner"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(members.status(), StatusCode::FORBIDDEN, "a developer");

    // Bob, in no group and no member: the project is not there for him,
    // though his client owns it.
    for (method, path) in [
        (Method::GET, "/projects/secret"),
        (Method::POST, "/projects/secret/builds"),
    ] {
        let answer = bob
            .request(method.clone(), path)
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("answers");
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }

    // Given a role by name, he has it.
    ick.icktool(&["member", "add", "secret", "user:bob", "viewer"])
        .ok();
    let read = bob
        .request(Method::GET, "/projects/secret")
        .send()
        .await
        .expect("answers");
    assert_eq!(read.status(), StatusCode::OK);
    let trigger = bob
        .request(Method::POST, "/projects/secret/builds")
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("answers");
    assert_eq!(trigger.status(), StatusCode::FORBIDDEN, "a viewer");

    // The audit log names the person.
    let log = ick
        .icktool(&["audit", "--project", "secret", "--output", "json"])
        .ok()
        .json::<ick_api::audit::AuditList>();
    let triggered = log
        .entries
        .iter()
        .find(|e| e.action.as_str() == "build.trigger")
        .expect("the trigger");
    assert_eq!(triggered.actor, "user:alice");
}
