//! Web hooks: each forge's payload and signature, as the forges document
//! them, against the real controller; refusals that trigger nothing;
//! redeliveries; branch filters; and a real `git push` through
//! `deploy/git-hooks/post-receive`.

mod common;

use std::process::Command;

use common::Env;
use hmac::{Hmac, Mac};
use ick_api::controller::{BuildList, BuildSummary, TriggerSecret};
use ick_tests::idp::Storage;
use ick_tests::{bin_path, repo_root};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;

const PIPELINE: &str = "parameters: [git_url, git_ref, git_commit]\nactions: [{shell: 'true'}]";
const GITHUB_REPO: &str = "https://github.com/octo-org/hello";
const GITEA_REPO: &str = "git@gitea.example.org:team/widget.git";
const GITLAB_REPO: &str = "https://gitlab.example.com/mike/diaspora.git";
const COMMIT: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A documented payload with its ref, commit (and kind) filled in.
fn payload(file: &str, git_ref: &str, after: &str) -> Vec<u8> {
    let text = match file {
        "github_push" => include_str!("payloads/github_push.json"),
        "github_ping" => include_str!("payloads/github_ping.json"),
        "gitea_push" => include_str!("payloads/gitea_push.json"),
        "gitlab_push" => include_str!("payloads/gitlab_push.json"),
        other => panic!("no payload {other}"),
    };
    let deleted = after.chars().all(|c| c == '0');
    let kind = if git_ref.starts_with("refs/tags/") {
        "tag_push"
    } else {
        "push"
    };
    text.replace("@REF@", git_ref)
        .replace("@AFTER@", after)
        .replace("@DELETED@", if deleted { "true" } else { "false" })
        .replace("@KIND@", kind)
        .into_bytes()
}

/// POSTs a web hook (no token) and returns the status and JSON answer.
async fn hook(
    env: &Env,
    forge: &str,
    headers: &[(&str, String)],
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut request = env
        .admin
        .http
        .post(format!("{}/webhooks/{forge}", env.controller.url()))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.expect("POST web hook");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A GitHub delivery of `body` signed with `secret`.
fn github(event: &str, delivery: &str, secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
        ("X-GitHub-Hook-ID", "109948940".to_string()),
        ("User-Agent", "GitHub-Hookshot/044aadd".to_string()),
        (
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_hex(secret, body)),
        ),
    ]
}

async fn secret(env: &Env, project: &str) -> String {
    let s: TriggerSecret = env
        .admin
        .get(&format!("/projects/{project}/trigger-secret"))
        .await;
    s.secret.expose().to_string()
}

async fn builds(env: &Env, project: &str) -> Vec<BuildSummary> {
    let list: BuildList = env.admin.get(&format!("/builds?project={project}")).await;
    list.builds
}

async fn setup(storage: Storage, edit: impl FnOnce(&mut serde_yaml::Value)) -> Env {
    let env = Env::start_with(storage, edit).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin
        .project(
            "hello",
            &format!("pipelines: [build]\ntriggers: [{{repository: '{GITHUB_REPO}'}}]"),
        )
        .await;
    env.admin
        .project(
            "widget",
            &format!("pipelines: [build]\ntriggers: [{{repository: '{GITEA_REPO}'}}]"),
        )
        .await;
    env.admin
        .project(
            "diaspora",
            &format!("pipelines: [build]\ntriggers: [{{repository: '{GITLAB_REPO}'}}]"),
        )
        .await;
    env
}

fn param<'a>(b: &'a BuildSummary, name: &str) -> &'a str {
    b.parameters
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no parameter {name} in {:?}", b.parameters))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_forge_s_signed_push_triggers_the_right_project_and_commit() {
    let env = setup(Storage::Postgres, |_| {}).await;
    let (hello, widget, diaspora) = (
        secret(&env, "hello").await,
        secret(&env, "widget").await,
        secret(&env, "diaspora").await,
    );
    assert_ne!(hello, widget);

    // GitHub: a ping first, as GitHub sends when the hook is made.
    let ping = payload("github_ping", "", "");
    let (status, answer) = hook(&env, "github", &github("ping", "d-0", &hello, &ping), ping).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "pong");
    assert_eq!(answer["project"], "hello");
    assert!(builds(&env, "hello").await.is_empty());

    let body = payload("github_push", "refs/heads/main", COMMIT);
    let (status, answer) = hook(&env, "github", &github("push", "d-1", &hello, &body), body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["outcome"], "triggered");
    let b: BuildSummary = serde_json::from_value(answer["build"].clone()).expect("a build");
    assert_eq!(b.project, "hello");
    assert_eq!(
        param(&b, "git_url"),
        "https://github.com/octo-org/hello.git"
    );
    assert_eq!(param(&b, "git_ref"), "refs/heads/main");
    assert_eq!(param(&b, "git_commit"), COMMIT);
    assert_eq!(b.triggered_by, "webhook:github");

    // Gitea, then Forgejo (its own header names) for the same project.
    let commit2 = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    let body = payload("gitea_push", "refs/heads/main", commit2);
    let headers = vec![
        ("X-Gitea-Event", "push".to_string()),
        ("X-Gitea-Event-Type", "push".to_string()),
        (
            "X-Gitea-Delivery",
            "f6266f16-1bf3-46a5-9ea4-602e06ead473".to_string(),
        ),
        ("X-Gitea-Signature", hmac_hex(&widget, &body)),
        ("X-Gogs-Event", "push".to_string()),
    ];
    let (status, answer) = hook(&env, "gitea", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, again) = hook(&env, "gitea", &headers, body).await;
    assert_eq!(status, StatusCode::OK, "a redelivery: {again}");
    assert_eq!(again["outcome"], "duplicate");
    let b: BuildSummary = serde_json::from_value(answer["build"].clone()).expect("a build");
    assert_eq!(b.project, "widget");
    // The trigger names the SSH URL; the push carries it: that one is built.
    assert_eq!(
        param(&b, "git_url"),
        "ssh://git@gitea.example.org:2222/team/widget.git"
    );
    assert_eq!(param(&b, "git_commit"), commit2);
    let commit3 = "b1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    let body = payload("gitea_push", "refs/heads/dev", commit3);
    let headers = vec![
        ("X-Forgejo-Event", "push".to_string()),
        (
            "X-Forgejo-Delivery",
            "0bd1ab32-1bf3-46a5-9ea4-602e06ead473".to_string(),
        ),
        ("X-Forgejo-Signature", hmac_hex(&widget, &body)),
    ];
    let (status, answer) = hook(&env, "gitea", &headers, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["build"]["parameters"]["git_commit"], commit3);

    // GitLab: the secret token itself.
    let commit4 = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7";
    let body = payload("gitlab_push", "refs/heads/master", commit4);
    let headers = vec![
        ("X-Gitlab-Event", "Push Hook".to_string()),
        ("X-Gitlab-Token", diaspora.clone()),
        (
            "X-Gitlab-Instance",
            "https://gitlab.example.com".to_string(),
        ),
        (
            "X-Gitlab-Webhook-UUID",
            "16ef2d25-3a5d-4b45-a2f3-bd0b2b4b1a9e".to_string(),
        ),
        (
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e".to_string(),
        ),
    ];
    let (status, answer) = hook(&env, "gitlab", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, again) = hook(&env, "gitlab", &headers, body).await;
    assert_eq!(status, StatusCode::OK, "a redelivery: {again}");
    assert_eq!(again["build"]["id"], answer["build"]["id"]);
    let b: BuildSummary = serde_json::from_value(answer["build"].clone()).expect("a build");
    assert_eq!(b.project, "diaspora");
    assert_eq!(
        param(&b, "git_url"),
        "https://gitlab.example.com/mike/diaspora.git"
    );
    assert_eq!(param(&b, "git_ref"), "refs/heads/master");
    assert_eq!(param(&b, "git_commit"), commit4);

    // Generic, as deploy/git-hooks/post-receive sends it.
    let body = serde_json::to_vec(&serde_json::json!({
        "repository": "https://github.com/octo-org/hello.git",
        "ref": "refs/heads/main",
        "commit": "c1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    }))
    .expect("json");
    let headers = vec![(
        "X-Ick-Signature-256",
        format!("sha256={}", hmac_hex(&hello, &body)),
    )];
    let (status, answer) = hook(&env, "generic", &headers, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["project"], "hello");
    let ping = b"{}".to_vec();
    let headers = vec![
        ("X-Ick-Event", "ping".to_string()),
        (
            "X-Ick-Signature-256",
            format!("sha256={}", hmac_hex(&hello, &ping)),
        ),
    ];
    let (status, answer) = hook(&env, "generic", &headers, ping).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "pong");

    let counts = (
        builds(&env, "hello").await.len(),
        builds(&env, "widget").await.len(),
        builds(&env, "diaspora").await.len(),
    );
    assert_eq!(counts, (2, 2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_proof_is_401_and_triggers_nothing() {
    let env = setup(Storage::Postgres, |_| {}).await;
    let hello = secret(&env, "hello").await;
    let diaspora = secret(&env, "diaspora").await;
    let body = payload("github_push", "refs/heads/main", COMMIT);
    let tampered = payload("github_push", "refs/heads/main", &"e".repeat(40));
    let random = "9".repeat(64);

    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, &str, Headers, Vec<u8>)> = vec![
        ("no signature", "github", vec![("X-GitHub-Event", "push".into())], body.clone()),
        (
            "another body's signature",
            "github",
            github("push", "x-1", &hello, &body),
            tampered.clone(),
        ),
        ("a wrong secret", "github", github("push", "x-2", &random, &body), body.clone()),
        (
            "not hex",
            "github",
            vec![
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", "sha256=not-hex".into()),
            ],
            body.clone(),
        ),
        (
            "another project's secret, with ?project=",
            "github?project=widget",
            github("push", "x-6", &hello, &body),
            body.clone(),
        ),
        (
            "a GitHub signature on the Gitea endpoint",
            "gitea",
            github("push", "x-3", &hello, &body),
            body.clone(),
        ),
        (
            "a wrong GitLab token",
            "gitlab",
            vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", format!("{diaspora}x")),
            ],
            payload("gitlab_push", "refs/heads/master", COMMIT),
        ),
        (
            "no GitLab token",
            "gitlab",
            vec![("X-Gitlab-Event", "Push Hook".into())],
            payload("gitlab_push", "refs/heads/master", COMMIT),
        ),
        (
            "an unsigned generic push",
            "generic",
            vec![],
            br#"{"repository":"https://github.com/octo-org/hello","ref":"refs/heads/main","commit":"abc"}"#
                .to_vec(),
        ),
    ];
    for (what, forge, headers, body) in cases {
        let (status, answer) = hook(&env, forge, &headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert_eq!(answer["status"], 401, "{what}: a problem: {answer}");
    }

    // A rotated secret: the old one is refused, the new one works.
    let rotated: TriggerSecret = ick_tests::controller::json(
        env.admin
            .post::<()>("/projects/hello/trigger-secret/rotate", None)
            .await,
        StatusCode::OK,
    )
    .await;
    let new = rotated.secret.expose().to_string();
    assert_ne!(new, hello);
    assert_eq!(
        secret(&env, "hello").await,
        new,
        "showing keeps the new one"
    );
    let (status, _) = hook(
        &env,
        "github",
        &github("push", "x-4", &hello, &body),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for project in ["hello", "widget", "diaspora"] {
        assert!(
            builds(&env, project).await.is_empty(),
            "{project} was built"
        );
    }
    // ?project= narrows the secrets tried to that project's.
    let (status, answer) = hook(
        &env,
        "github?project=hello",
        &github("push", "x-5", &new, &body),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    // No secret ever reaches the log.
    let log = std::fs::read_to_string(&env.controller.process.log).expect("controller log");
    for s in [&hello, &new, &diaspora] {
        assert!(!log.contains(s.as_str()), "a trigger secret is in the log");
    }
}

on_both_storages!(a_redelivery_triggers_nothing_even_after_a_restart);

async fn a_redelivery_triggers_nothing_even_after_a_restart(storage: Storage) {
    let mut env = setup(storage, |_| {}).await;
    let hello = secret(&env, "hello").await;
    let body = payload("github_push", "refs/heads/main", COMMIT);
    let headers = github(
        "push",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        &hello,
        &body,
    );
    let (status, first) = hook(&env, "github", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = hook(&env, "github", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "duplicate");
    assert_eq!(again["build"]["id"], first["build"]["id"]);

    env.controller.restart();
    let (status, again) = hook(&env, "github", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "duplicate");
    assert_eq!(builds(&env, "hello").await.len(), 1);

    // Another delivery of the same push is another delivery.
    let headers = github(
        "push",
        "72d3162e-cc78-11e3-81ab-000000000002",
        &hello,
        &body,
    );
    let (status, _) = hook(&env, "github", &headers, body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(builds(&env, "hello").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_bodies_trigger_nothing() {
    let env = setup(Storage::Postgres, |c| {
        c["webhooks"]["max_body"] = 4096.into();
    })
    .await;
    let hello = secret(&env, "hello").await;
    let mut big = payload("github_push", "refs/heads/main", COMMIT);
    big.truncate(big.len() - 2);
    big.extend_from_slice(format!(",\"padding\":\"{}\"}}", "x".repeat(4096)).as_bytes());
    assert!(big.len() > 4096);
    let headers = github("push", "big-1", &hello, &big);
    let (status, answer) = hook(&env, "github", &headers, big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("4096"),
        "{answer}"
    );
    // The same without a length: streamed in chunks.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, _) = hook(
        &env,
        "github",
        &github("push", "big-2", &hello, &big),
        stream,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    for (what, body) in [
        ("not JSON", b"{\"ref\": \"refs/heads/main\", ".to_vec()),
        ("no ref", br#"{"after":"abc","repository":{"clone_url":"https://github.com/octo-org/hello.git"}}"#.to_vec()),
        ("a list", b"[1, 2]".to_vec()),
    ] {
        let headers = github("push", what, &hello, &body);
        let (status, answer) = hook(&env, "github", &headers, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
    }
    let body = br#"{"repository":"https://github.com/octo-org/hello"}"#.to_vec();
    let headers = vec![(
        "X-Ick-Signature-256",
        format!("sha256={}", hmac_hex(&hello, &body)),
    )];
    let (status, _) = hook(&env, "generic", &headers, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(builds(&env, "hello").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_and_tag_patterns_choose_which_pushes_build() {
    let env = setup(Storage::Postgres, |_| {}).await;
    env.admin
        .project(
            "hello",
            "pipelines: [build]\ntriggers:\n  - repository: 'git@GitHub.com:octo-org/hello.git'\n    \
             branches: [main, 'release/*']\n    tags: ['v*']",
        )
        .await;
    let hello = secret(&env, "hello").await;
    let zero = "0".repeat(40);
    let cases = [
        ("refs/heads/main", COMMIT, StatusCode::CREATED),
        ("refs/heads/release/2.0", COMMIT, StatusCode::CREATED),
        ("refs/tags/v2.0", COMMIT, StatusCode::CREATED),
        ("refs/heads/feature", COMMIT, StatusCode::ACCEPTED),
        ("refs/heads/release/2.0/fix", COMMIT, StatusCode::ACCEPTED),
        ("refs/tags/nightly", COMMIT, StatusCode::ACCEPTED),
        ("refs/heads/main", zero.as_str(), StatusCode::ACCEPTED),
    ];
    for (i, (git_ref, after, want)) in cases.into_iter().enumerate() {
        let body = payload("github_push", git_ref, after);
        let headers = github("push", &format!("b-{i}"), &hello, &body);
        let (status, answer) = hook(&env, "github", &headers, body).await;
        assert_eq!(status, want, "{git_ref} at {after}: {answer}");
        if want == StatusCode::ACCEPTED {
            assert_eq!(answer["outcome"], "ignored", "{answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            let why = if after == zero { "deleted" } else { "patterns" };
            assert!(message.contains(why), "{git_ref}: {message}");
        }
    }
    let built: Vec<String> = builds(&env, "hello")
        .await
        .iter()
        .map(|b| param(b, "git_ref").to_string())
        .collect();
    assert_eq!(
        built,
        vec![
            "refs/tags/v2.0",
            "refs/heads/release/2.0",
            "refs/heads/main"
        ]
    );

    // Signed right, but another repository (named with ?project=: without
    // it, widget's secret is not even tried), or not a push: nothing.
    let widget = secret(&env, "widget").await;
    let body = payload("github_push", "refs/heads/main", COMMIT);
    let (status, answer) = hook(
        &env,
        "github?project=widget",
        &github("push", "o-1", &widget, &body),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not in project widget's triggers"),
        "{answer}"
    );
    let (status, answer) = hook(
        &env,
        "github",
        &github("issues", "o-2", &hello, &body),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(builds(&env, "widget").await.is_empty());
    assert_eq!(builds(&env, "hello").await.len(), 3);
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Ick Test",
            "-c",
            "user.email=test@example.org",
        ])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_receive_hook_triggers_a_build_from_a_git_push() {
    let env = Env::start(Storage::Postgres).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = dir.path().join("hello.git");
    std::fs::create_dir(&bare).expect("mkdir");
    git(&bare, &["init", "--bare", "-q"]);
    let hook_path = bare.join("hooks/post-receive");
    std::fs::copy(
        repo_root().join("deploy/git-hooks/post-receive"),
        &hook_path,
    )
    .expect("install the hook");
    env.admin.pipeline("build", PIPELINE).await;
    env.admin
        .project(
            "hello",
            &format!(
                "pipelines: [build]\ntriggers: [{{repository: '{}', branches: [main]}}]",
                bare.display()
            ),
        )
        .await;

    // The secret, as a person would get it: with icktool.
    let config = dir.path().join("icktool.yaml");
    std::fs::write(
        &config,
        format!(
            "controller: {}\nidp: {}\nclient_id: {}\nclient_secret: {}\n",
            env.controller.url(),
            env.idp.url(),
            env.idp.admin.id,
            env.idp.admin.secret
        ),
    )
    .expect("icktool config");
    let out = Command::new(bin_path("icktool"))
        .args(["trigger-secret", "hello", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .expect("icktool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: TriggerSecret = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown.project, "hello");
    std::fs::write(bare.join("ick-secret"), shown.secret.expose()).expect("secret file");
    git(&bare, &["config", "ick.url", env.controller.url()]);
    git(&bare, &["config", "ick.secretFile", "ick-secret"]);

    let work = dir.path().join("work");
    git(
        dir.path(),
        &["clone", "-q", bare.to_str().expect("utf-8"), "work"],
    );
    std::fs::write(work.join("README"), "hello\n").expect("write");
    git(&work, &["add", "README"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["checkout", "-q", "-b", "topic"]);
    let pushed = git(&work, &["push", "origin", "main", "topic"]);
    let head = git(&work, &["rev-parse", "main"]).trim().to_string();
    assert!(pushed.contains("ick: build hello #1 triggered"), "{pushed}");
    assert!(pushed.contains("refs/heads/topic matches none"), "{pushed}");

    let built = builds(&env, "hello").await;
    assert_eq!(built.len(), 1, "main built, topic not: {built:?}");
    assert_eq!(param(&built[0], "git_commit"), head);
    assert_eq!(param(&built[0], "git_ref"), "refs/heads/main");
    assert_eq!(
        param(&built[0], "git_url"),
        format!("file://{}", bare.display())
    );

    // Deleting a branch builds nothing.
    let pushed = git(&work, &["push", "origin", "--delete", "topic"]);
    // (The hook prints the controller's answer, so it has been given.)
    assert!(pushed.contains("refs/heads/topic was deleted"), "{pushed}");
    assert_eq!(builds(&env, "hello").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_secrets_need_projects_write() {
    let env = setup(Storage::Sqlite, |_| {}).await;
    let reader = env.client_with("reader", "projects:read builds:read").await;
    for (method, path) in [
        (reqwest::Method::GET, "/projects/hello/trigger-secret"),
        (
            reqwest::Method::POST,
            "/projects/hello/trigger-secret/rotate",
        ),
    ] {
        let r = reader
            .request(method.clone(), path)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let r = env
            .admin
            .http
            .request(method.clone(), format!("{}{path}", env.controller.url()))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let r = env
        .admin
        .request(reqwest::Method::GET, "/projects/nope/trigger-secret")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let first = secret(&env, "hello").await;
    assert_eq!(first.len(), 64);
    assert_eq!(secret(&env, "hello").await, first, "made once, then shown");
    env.admin
        .project("hello", "pipelines: [build]\nconcurrency: 2")
        .await;
    assert_eq!(
        secret(&env, "hello").await,
        first,
        "kept when the project changes"
    );
    // A project deleted and made again has a new secret.
    let r = env
        .admin
        .request(reqwest::Method::DELETE, "/projects/hello")
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success());
    env.admin.project("hello", "pipelines: [build]").await;
    assert_ne!(secret(&env, "hello").await, first);
}

/// The `tried` count of the controller's last refused web hook.
fn last_tried(env: &Env) -> Option<u64> {
    let log = env.controller.process.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("web hook with a signature no trigger secret made"))?;
    let at = line.find("tried")? + "tried".len();
    let digits: String = line[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_hook_is_checked_only_against_its_repository_s_projects_and_floods_get_429() {
    let env = setup(Storage::Sqlite, |c| {
        c["webhooks"]["max_failed_signatures"] = 4.into();
    })
    .await;
    for i in 0..12 {
        let name = format!("other{i}");
        env.admin
            .project(
                &name,
                &format!(
                    "pipelines: [build]\ntriggers: [{{repository: 'https://github.com/octo-org/r{i}'}}]"
                ),
            )
            .await;
        secret(&env, &name).await;
    }
    let hello = secret(&env, "hello").await;
    secret(&env, "widget").await;

    // A large body that names hello's repository, signed with no secret of
    // ours: only hello's secret is tried, not the 14 others.
    let mut push: Value =
        serde_json::from_slice(&payload("github_push", "refs/heads/main", COMMIT)).expect("json");
    push["padding"] = Value::from("x".repeat(2 << 20));
    let big = serde_json::to_vec(&push).expect("json");
    let (status, answer) = hook(
        &env,
        "github",
        &github("push", "f-1", &"9".repeat(64), &big),
        big.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(last_tried(&env), Some(1), "only hello's secret was tried");

    // One that names a repository no trigger names costs no HMAC at all.
    push["repository"] = serde_json::json!({"clone_url": "https://github.com/nobody/nothing.git"});
    let stranger = serde_json::to_vec(&push).expect("json");
    let (status, answer) = hook(
        &env,
        "github",
        &github("push", "f-2", &hello, &stranger),
        stranger,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("no project's triggers name the repository"),
        "{answer}"
    );
    assert_eq!(last_tried(&env), Some(0));
    // A large body that names none, nor a project, is not tried either
    // (small ones are: pings).
    push.as_object_mut().expect("object").remove("repository");
    let unnamed = serde_json::to_vec(&push).expect("json");
    let (status, _) = hook(
        &env,
        "github",
        &github("push", "f-3", &hello, &unnamed),
        unnamed,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_tried(&env), Some(0));

    // The right signature still triggers.
    let (status, answer) = hook(
        &env,
        "github",
        &github("push", "f-4", &hello, &big),
        big.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    // The fourth wrong signature from this address blocks it: 429 with
    // Retry-After, before the body is even checked, even when signed.
    let (status, _) = hook(
        &env,
        "github",
        &github("push", "f-5", &"9".repeat(64), &big),
        big.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = env
        .admin
        .http
        .post(format!("{}/webhooks/github", env.controller.url()))
        .header("content-type", "application/json")
        .headers(
            github("push", "f-6", &hello, &big)
                .into_iter()
                .map(|(k, v)| (k.parse().expect("name"), v.parse().expect("value")))
                .collect(),
        )
        .body(big)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        builds(&env, "hello").await.len(),
        1,
        "only the signed push built"
    );
}
