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

/// A PKCE S256 authorization request for `client_id`, and its verifier.
fn authorize_url(ick: &Ick, client_id: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let verifier = "v".repeat(50);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={REDIRECT}\
         &scope=openid&state=xyz&code_challenge={challenge}&code_challenge_method=S256",
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
    let url = authorize_url(&ick, &web_id);
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
