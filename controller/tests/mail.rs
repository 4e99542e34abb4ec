//! Mail about how builds ended, through a real SMTP server on loopback
//! that the tests stop and start: what a mail says, to whom and when; that
//! nothing is lost when the server is down or the controller is killed;
//! that nothing is sent twice, also by two controllers on one database.

mod common;

use std::io::Read;
use std::process::Command;

use common::{Env, SOON, eventually};
use ick_api::controller::{
    BuildStatus, BuildSummary, Notification, NotificationList, NotificationStatus,
};
use ick_tests::controller::SimWorker;
use ick_tests::idp::Storage;
use ick_tests::smtp::{Mail, SmtpTls, TestSmtp};
use ick_tests::{bin_path, repo_root};
use reqwest::StatusCode;
use serde_yaml::Value;

const PUBLIC_URL: &str = "https://ick.example.org";
const COMMIT: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// The `mail:` section of `deploy/config/controller.yaml`, which is
/// commented out there: its keys are the ones the README documents.
fn example_mail_section() -> Value {
    let text = std::fs::read_to_string(repo_root().join("deploy/config/controller.yaml"))
        .expect("example config");
    let section: String = text
        .lines()
        .skip_while(|l| *l != "# mail:")
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let parsed: Value = serde_yaml::from_str(&section).expect("the mail section parses");
    parsed["mail"].clone()
}

/// The example's mail section, pointed at `smtp` (plain SMTP, no login)
/// with short waits.
fn mail_config(smtp: &TestSmtp) -> Value {
    let mut mail = example_mail_section();
    let map = mail.as_mapping_mut().expect("a map");
    map.remove("username");
    map.remove("password_file");
    map.remove("ca_file");
    mail["host"] = "127.0.0.1".into();
    mail["port"] = smtp.port().into();
    mail["tls"] = "none".into();
    mail["from"] = "Ick <ick@example.org>".into();
    // Short: its lease (four times it) is what a send cut by a killed
    // controller waits for before another sender tries again.
    mail["timeout"] = "2s".into();
    mail["retry"] = "100ms".into();
    mail["retry_max"] = "500ms".into();
    mail["poll_interval"] = "100ms".into();
    mail
}

async fn start(storage: Storage, smtp: &TestSmtp, edit: impl FnOnce(&mut Value)) -> Env {
    let mail = mail_config(smtp);
    Env::start_with(storage, move |c| {
        c["public_url"] = PUBLIC_URL.into();
        c["mail"] = mail;
        edit(c);
    })
    .await
}

/// A project `p` of two actions, mailing `to` (`on` as given, if any).
async fn project(env: &Env, to: &[&str], on: Option<&str>) {
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    let on = on.map(|o| format!(", on: [{o}]")).unwrap_or_default();
    env.admin
        .project(
            "p",
            &format!(
                "pipelines: [a]\nconcurrency: 8\nparameters: {{git_url: 'https://ci:tok3n@example.org/p.git', \
                 git_ref: main, git_commit: '{COMMIT}'}}\nnotify: {{to: [{}]{on}}}",
                to.join(", ")
            ),
        )
        .await;
}

/// Runs a build of `p` to its end: the second action prints `lines`
/// lines and exits with `code`.
async fn run_build(env: &Env, worker: &SimWorker, lines: usize, code: i32) -> BuildSummary {
    let build = env.admin.trigger("p").await;
    let one = worker.claim_within(SOON).await;
    assert_eq!(one.build.id, build.id);
    assert_eq!(
        one.parameters["git_url"], "https://ci:tok3n@example.org/p.git",
        "the worker gets them as they are"
    );
    worker.output(&one, 0, &["building\n"]).await;
    worker.finish(&one, 0, 1).await;
    let two = worker.claim_within(SOON).await;
    let text: Vec<String> = (1..=lines).map(|i| format!("line {i}\n")).collect();
    let chunks: Vec<&str> = text.iter().map(String::as_str).collect();
    for (i, batch) in chunks.chunks(10).enumerate() {
        worker.output(&two, (i * 10) as i64, batch).await;
    }
    worker.finish(&two, code, lines as i64).await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    view.build
}

async fn notifications(env: &Env, status: &str) -> Vec<Notification> {
    let list: NotificationList = env
        .admin
        .get(&format!("/notifications?status={status}"))
        .await;
    list.notifications
}

fn subjects(smtp: &TestSmtp) -> Vec<String> {
    smtp.received().iter().map(|m| m.parse().subject).collect()
}

async fn log_text(env: &Env, build: &str) -> String {
    let r = env
        .admin
        .request(reqwest::Method::GET, &format!("/builds/{build}/log"))
        .header("accept", "text/plain")
        .send()
        .await
        .expect("GET log");
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_mails_its_recipients_what_failed_and_the_whole_log() {
    let smtp = TestSmtp::start();
    let env = start(Storage::Postgres, &smtp, |_| {}).await;
    project(&env, &["dev@example.org", "lead@example.org"], None).await;
    let worker = env.worker("w");
    let failed = run_build(&env, &worker, 80, 2).await;
    assert_eq!(failed.status, BuildStatus::Failed);

    let received = smtp.wait_for(1, SOON).await;
    let mail: Mail = received[0].parse();
    assert_eq!(mail.envelope_from, "ick@example.org");
    let mut to = mail.envelope_to.clone();
    to.sort();
    assert_eq!(to, vec!["dev@example.org", "lead@example.org"]);
    assert_eq!(mail.to, vec!["dev@example.org", "lead@example.org"]);
    assert_eq!(mail.from, "ick@example.org");
    assert_eq!(mail.subject, "[ick] p #1 FAILED");
    assert!(
        mail.headers
            .iter()
            .any(|h| h == "Auto-Submitted: auto-generated"),
        "{:?}",
        mail.headers
    );
    // Recorded as sent just after the server took it.
    let sent = eventually(SOON, "the notification recorded as sent", || async {
        notifications(&env, "sent").await.into_iter().next()
    })
    .await;
    let message_id = format!("Message-ID: <{}@example.org>", sent.id);
    assert!(
        mail.headers.contains(&message_id),
        "{message_id} in {:?}",
        mail.headers
    );
    assert!(!mail.text.contains("tok3n"), "credentials never in mail");
    assert_eq!(
        failed.parameters["git_url"], "https://***@example.org/p.git",
        "nor in views of the build"
    );
    let lines: Vec<&str> = mail.text.lines().collect();
    for want in [
        "Project:    p",
        "Build:      #1",
        "Status:     FAILED",
        &format!("Commit:     {COMMIT}"),
        "Ref:        main",
        "Repository: https://***@example.org/p.git",
        &format!("URL:        {PUBLIC_URL}/builds/{}", failed.id),
        "Failed action: a action 2 (shell: two): exited with code 2",
        "The last 50 lines of its output:",
    ] {
        assert!(
            lines.contains(&want),
            "{want:?} is not a line of:\n{}",
            mail.text
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Duration:   ") && l.ends_with('s'))
    );
    let quoted: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("    line "))
        .copied()
        .collect();
    let expected: Vec<String> = (31..=80).map(|i| format!("    line {i}")).collect();
    assert_eq!(quoted, expected);

    assert_eq!(mail.attachments.len(), 1);
    let (name, ctype, bytes) = &mail.attachments[0];
    assert_eq!(name, "build-1.log");
    assert_eq!(ctype, "text/plain");
    let log = log_text(&env, &failed.id).await;
    assert!(log.contains("building\n") && log.contains("line 80\n"));
    assert_eq!(
        String::from_utf8_lossy(bytes),
        log,
        "the attachment is the whole log"
    );

    let sent = eventually(SOON, "the notification marked sent", || async {
        let sent = notifications(&env, "sent").await;
        (sent.len() == 1).then_some(sent)
    })
    .await;
    assert_eq!(sent[0].build_id, failed.id);
    assert_eq!(sent[0].attempts, 1);
    assert_eq!(sent[0].build_status, BuildStatus::Failed);

    // On failure and fixed (the default): the fix is mailed, the next
    // success is not, the next failure is.
    let fixed = run_build(&env, &worker, 1, 0).await;
    assert_eq!(fixed.status, BuildStatus::Succeeded);
    smtp.wait_for(2, SOON).await;
    run_build(&env, &worker, 1, 0).await;
    run_build(&env, &worker, 1, 1).await;
    smtp.wait_for(3, SOON).await;
    assert_eq!(
        subjects(&smtp),
        vec![
            "[ick] p #1 FAILED",
            "[ick] p #2 succeeded",
            "[ick] p #4 FAILED"
        ]
    );
    let all: NotificationList = env.admin.get("/notifications?project=p").await;
    let numbers: Vec<i64> = all.notifications.iter().map(|n| n.number).collect();
    assert_eq!(numbers, vec![4, 2, 1], "build 3 wrote no notification");
    // Paged, newest first.
    let page: NotificationList = env.admin.get("/notifications?limit=2").await;
    assert_eq!(page.notifications.len(), 2);
    let next = page.next.expect("a next page");
    let rest: NotificationList = env
        .admin
        .get(&format!("/notifications?limit=2&before={next}"))
        .await;
    assert_eq!(rest.notifications.len(), 1);
    assert_eq!(rest.notifications[0].number, 1);
    assert_eq!(rest.next, None);
    let none: NotificationList = env.admin.get("/notifications?project=other").await;
    assert!(none.notifications.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_log_is_attached_gzip_compressed() {
    let smtp = TestSmtp::start();
    let env = start(Storage::Sqlite, &smtp, |_| {}).await;
    project(&env, &["dev@example.org"], Some("success")).await;
    let worker = env.worker("w");
    let build = env.admin.trigger("p").await;
    let one = worker.claim_within(SOON).await;
    let line = format!("{}\n", "x".repeat(99));
    let block = line.repeat(3000); // 300 kB
    for seq in 0..4 {
        worker.output(&one, seq, &[block.as_str()]).await;
    }
    worker.finish(&one, 0, 4).await;
    worker.run_one(SOON).await;
    let view = env.admin.wait_build(&build.id, SOON).await;
    assert_eq!(view.build.status, BuildStatus::Succeeded);

    let mail = smtp.wait_for(1, SOON).await[0].parse();
    assert_eq!(mail.subject, "[ick] p #1 succeeded");
    assert!(!mail.text.contains("Failed action"), "{}", mail.text);
    let (name, ctype, bytes) = &mail.attachments[0];
    assert_eq!(name, "build-1.log.gz");
    assert_eq!(ctype, "application/gzip");
    let mut log = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut log)
        .expect("gzip");
    assert!(log.len() > 1024 * 1024);
    assert_eq!(log, log_text(&env, &build.id).await);
}

on_both_storages!(smtp_down_when_the_build_ends_then_up_the_mail_arrives_once);

async fn smtp_down_when_the_build_ends_then_up_the_mail_arrives_once(storage: Storage) {
    let mut smtp = TestSmtp::start();
    let env = start(storage, &smtp, |_| {}).await;
    project(&env, &["dev@example.org"], None).await;
    let worker = env.worker("w");
    smtp.stop();
    let first = run_build(&env, &worker, 3, 1).await;
    let waiting = eventually(SOON, "a failed try", || async {
        notifications(&env, "pending")
            .await
            .into_iter()
            .find(|n| n.attempts >= 1 && n.last_error.is_some())
    })
    .await;
    assert_eq!(waiting.build_id, first.id);
    let error = waiting.last_error.unwrap_or_default();
    assert!(
        error.contains(&format!("127.0.0.1:{}", smtp.port())),
        "{error}"
    );
    assert!(waiting.next_attempt_at.is_some());
    assert!(smtp.received().is_empty());

    smtp.restart();
    smtp.wait_for(1, SOON).await;
    // Another mail after it: by then a second copy of the first would have come.
    run_build(&env, &worker, 3, 1).await;
    smtp.wait_for(2, SOON).await;
    assert_eq!(
        subjects(&smtp),
        vec!["[ick] p #1 FAILED", "[ick] p #2 FAILED"]
    );
    let sent = eventually(SOON, "both marked sent", || async {
        let sent = notifications(&env, "sent").await;
        (sent.len() == 2).then_some(sent)
    })
    .await;
    assert!(sent[1].attempts >= 2, "{:?}", sent[1]);
    assert_eq!(sent[1].last_error, None);
}

on_both_storages!(a_controller_killed_between_the_build_s_end_and_the_send_still_sends_once);

async fn a_controller_killed_between_the_build_s_end_and_the_send_still_sends_once(
    storage: Storage,
) {
    let mut smtp = TestSmtp::start();
    let mut env = start(storage, &smtp, |_| {}).await;
    project(&env, &["dev@example.org"], None).await;
    let worker = env.worker("w");
    // With the server down, the mail cannot have gone when the build ended.
    smtp.stop();
    let first = run_build(&env, &worker, 3, 1).await;
    env.controller.restart();
    smtp.restart();
    let mail = smtp.wait_for(1, SOON).await[0].parse();
    assert_eq!(mail.subject, "[ick] p #1 FAILED");
    assert!(mail.text.contains(&first.id), "{}", mail.text);
    run_build(&env, &worker, 3, 1).await;
    smtp.wait_for(2, SOON).await;
    assert_eq!(
        subjects(&smtp),
        vec!["[ick] p #1 FAILED", "[ick] p #2 FAILED"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_that_keeps_failing_is_kept_with_its_last_error() {
    let mut smtp = TestSmtp::start();
    let env = start(Storage::Postgres, &smtp, |c| {
        c["mail"]["max_attempts"] = 3.into();
    })
    .await;
    project(&env, &["dev@example.org"], None).await;
    let worker = env.worker("w");
    smtp.stop();
    let first = run_build(&env, &worker, 3, 1).await;
    let failed = eventually(SOON, "the notification kept as failed", || async {
        notifications(&env, "failed").await.into_iter().next()
    })
    .await;
    assert_eq!(failed.build_id, first.id);
    assert_eq!(failed.status, NotificationStatus::Failed);
    assert_eq!(failed.attempts, 3);
    assert_eq!(failed.next_attempt_at, None);
    let error = failed.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("127.0.0.1:{}", smtp.port())),
        "{error}"
    );
    assert!(notifications(&env, "pending").await.is_empty());

    // It needs builds:read.
    let trigger_only = env.client_with("trigger-only", "builds:trigger").await;
    let r = trigger_only
        .request(reqwest::Method::GET, "/notifications?status=failed")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = reqwest::get(format!("{}/notifications", env.controller.url()))
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = env
        .admin
        .request(reqwest::Method::GET, "/notifications?status=lost")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // With the server back, new mail goes out; the failed one stays kept.
    smtp.restart();
    run_build(&env, &worker, 3, 1).await;
    smtp.wait_for(1, SOON).await;
    assert_eq!(subjects(&smtp), vec!["[ick] p #2 FAILED"]);
    let still = notifications(&env, "failed").await;
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_on_one_database_send_each_mail_once() {
    let smtp = TestSmtp::start();
    let env = start(Storage::Postgres, &smtp, |c| {
        c["mail"]["poll_interval"] = "20ms".into();
    })
    .await;
    let other = env.controller.start_sharing(&env.idp);
    project(&env, &["dev@example.org"], Some("failure, success")).await;
    let token = env.idp.admin_token().await;
    let workers = [
        SimWorker::new(env.controller.client(&token), "w1"),
        SimWorker::new(other.client(&token), "w2"),
    ];
    const BUILDS: usize = 8;
    for _ in 0..BUILDS {
        env.admin.trigger("p").await;
    }
    // Each worker runs whole builds through its own controller, so both
    // controllers end builds and both senders find mail to send.
    let mut tasks = Vec::new();
    for w in workers {
        tasks.push(tokio::spawn(async move {
            let mut ran = 0;
            while let Some(a) = w.claim(1).await {
                w.finish(&a, i32::from(a.index == 1 && ran % 2 == 0), 0)
                    .await;
                ran += 1;
            }
            ran
        }));
    }
    let mut ran = 0;
    for t in tasks {
        ran += t.await.expect("worker");
    }
    assert_eq!(ran, BUILDS * 2);
    eventually(SOON, "every notification sent", || async {
        let sent = notifications(&env, "sent").await;
        (sent.len() == BUILDS).then_some(())
    })
    .await;
    let mut got = subjects(&smtp);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), BUILDS, "{got:?}");
    assert_eq!(smtp.received().len(), BUILDS, "a mail was sent twice");
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_or_tls_with_a_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("smtp-password");
    std::fs::write(&password, "s3cret pass\n").expect("password file");
    for (tls, name) in [(SmtpTls::Starttls, "starttls"), (SmtpTls::Wrapper, "tls")] {
        let smtp = TestSmtp::start_secure(tls, Some(("ick", "s3cret pass")));
        let ca = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca, smtp.certificate_pem().expect("a certificate")).expect("ca");
        let (ca, password) = (ca.clone(), password.clone());
        let env = start(Storage::Sqlite, &smtp, move |c| {
            c["mail"]["tls"] = name.into();
            c["mail"]["ca_file"] = ca.to_string_lossy().as_ref().into();
            c["mail"]["username"] = "ick".into();
            c["mail"]["password_file"] = password.to_string_lossy().as_ref().into();
        })
        .await;
        project(&env, &["dev@example.org"], None).await;
        run_build(&env, &env.worker("w"), 3, 1).await;
        let got = smtp.wait_for(1, SOON).await;
        assert!(got[0].tls, "{name}: not encrypted");
        assert_eq!(got[0].user.as_deref(), Some("ick"), "{name}: no login");
        assert_eq!(got[0].parse().subject, "[ick] p #1 FAILED");
    }

    // A wrong password is tried again, then kept with the server's refusal.
    let smtp = TestSmtp::start_secure(SmtpTls::Starttls, Some(("ick", "right")));
    let ca = dir.path().join("wrong-ca.pem");
    std::fs::write(&ca, smtp.certificate_pem().expect("a certificate")).expect("ca");
    let env = start(Storage::Sqlite, &smtp, move |c| {
        c["mail"]["tls"] = "starttls".into();
        c["mail"]["ca_file"] = ca.to_string_lossy().as_ref().into();
        c["mail"]["username"] = "ick".into();
        c["mail"]["password"] = "wrong".into();
        c["mail"]["max_attempts"] = 2.into();
    })
    .await;
    project(&env, &["dev@example.org"], None).await;
    run_build(&env, &env.worker("w"), 3, 1).await;
    let failed = eventually(SOON, "the notification kept as failed", || async {
        notifications(&env, "failed").await.into_iter().next()
    })
    .await;
    assert_eq!(failed.attempts, 2);
    let error = failed.last_error.unwrap_or_default();
    assert!(error.contains("535"), "{error}");
    assert!(
        !error.contains("wrong"),
        "the password is in the error: {error}"
    );
    assert!(smtp.received().is_empty());
}

/// Runs the controller binary with `config` and returns what it printed;
/// it must refuse to start.
fn refused(dir: &std::path::Path, config: &Value) -> String {
    let path = dir.join("controller.yaml");
    std::fs::write(&path, serde_yaml::to_string(config).expect("yaml")).expect("write");
    let out = Command::new(bin_path("ick-controller"))
        .arg("--config")
        .arg(&path)
        .env_remove("ICK_CONTROLLER_SMTP_PASSWORD")
        .env_remove("ICK_CONTROLLER_DATABASE_URL")
        .output()
        .expect("ick-controller runs");
    assert!(!out.status.success(), "it started with {config:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_half_configured_mail_section_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(repo_root().join("deploy/config/controller.yaml"))
        .expect("example config");
    let mut base: Value = serde_yaml::from_str(&text).expect("parses");
    base["http"]["listen"] = "127.0.0.1:0".into();
    base["database_url"] =
        format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display()).into();
    base["mail"] = example_mail_section();
    base["mail"]
        .as_mapping_mut()
        .expect("map")
        .remove("ca_file");
    base["mail"]["password_file"] = dir
        .path()
        .join("smtp-password")
        .to_string_lossy()
        .as_ref()
        .into();
    std::fs::write(dir.path().join("smtp-password"), "hunter2\n").expect("password");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "missing field `from`",
            Box::new(|c| {
                c["mail"].as_mapping_mut().expect("map").remove("from");
            }),
        ),
        (
            "missing field `host`",
            Box::new(|c| {
                c["mail"].as_mapping_mut().expect("map").remove("host");
            }),
        ),
        (
            "mail.username is set but no password",
            Box::new(|c| {
                c["mail"]
                    .as_mapping_mut()
                    .expect("map")
                    .remove("password_file");
            }),
        ),
        (
            "a mail password is set but no mail.username",
            Box::new(|c| {
                c["mail"].as_mapping_mut().expect("map").remove("username");
            }),
        ),
        (
            "the password would cross the network in clear",
            Box::new(|c| c["mail"]["tls"] = "none".into()),
        ),
        (
            "cannot read secret file",
            Box::new(|c| c["mail"]["password_file"] = "/nonexistent/smtp-password".into()),
        ),
        (
            "mail.from \"nobody\" is not an email address",
            Box::new(|c| c["mail"]["from"] = "nobody".into()),
        ),
        (
            "mail needs public_url",
            Box::new(|c| {
                c.as_mapping_mut().expect("map").remove("public_url");
            }),
        ),
        (
            "unknown variant `ssl`",
            Box::new(|c| c["mail"]["tls"] = "ssl".into()),
        ),
        (
            "cannot read mail.ca_file /nonexistent/ca.pem",
            Box::new(|c| c["mail"]["ca_file"] = "/nonexistent/ca.pem".into()),
        ),
        (
            "mail.ca_file is for a TLS connection",
            Box::new(|c| {
                c["mail"]["ca_file"] = "/nonexistent/ca.pem".into();
                c["mail"]["tls"] = "none".into();
                let m = c["mail"].as_mapping_mut().expect("map");
                m.remove("username");
                m.remove("password_file");
            }),
        ),
    ];
    for (want, edit) in cases {
        let mut config = base.clone();
        edit(&mut config);
        let err = refused(dir.path(), &config);
        assert!(err.contains(want), "wanted {want:?} in: {err}");
        assert!(!err.contains("hunter2"), "the password was printed: {err}");
    }
}
