//! The audit log through the real controller: an entry for every kind of
//! change, naming who (not an id) and from where; its filters and pages;
//! who may read it; and that it is append-only.

mod common;

use common::Env;
use hmac::{Hmac, Mac};
use ick_api::controller::{AuditAction, AuditEntry, AuditList, TriggerSecret};
use ick_tests::controller::{Api, json};
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::Sha256;

const ALL: &str = "projects:read projects:write builds:read builds:trigger builds:cancel";
const PIPELINE: &str = "actions: [{shell: 'true'}]";
const REPO: &str = "https://git.example.org/hello.git";

async fn audit(api: &Api, query: &str) -> AuditList {
    api.get(&format!("/audit{query}")).await
}

async fn ok(r: reqwest::Response) {
    let status = r.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        r.text().await.unwrap_or_default()
    );
}

/// Makes one change of every kind, as the admin client and as `dev` (a
/// client with roles), and a web hook.
async fn every_kind_of_change_is_recorded_with_who_and_where(storage: Storage) {
    let env = Env::start(storage).await;
    let admin = &env.admin;
    admin.pipeline("build", PIPELINE).await;
    admin
        .pipeline("build", "actions: [{shell: 'echo 2'}]")
        .await;
    admin
        .project(
            "hello",
            &format!("pipelines: [build]\ntriggers: [{{repository: '{REPO}'}}]"),
        )
        .await;
    admin
        .project(
            "hello",
            &format!("pipelines: [build]\ntriggers: [{{repository: '{REPO}'}}]\nconcurrency: 4"),
        )
        .await;
    let (dev, _) = env.idp_client("dev", ALL).await;
    env.member("hello", "client:dev", "maintainer").await;
    env.grant("client:dev", "creator").await;
    // Made on first sight, then rotated; seeing it again is no change.
    let first: TriggerSecret = dev.get("/projects/hello/trigger-secret").await;
    let _: TriggerSecret = dev.get("/projects/hello/trigger-secret").await;
    let secret: TriggerSecret = json(
        dev.post::<()>("/projects/hello/trigger-secret/rotate", None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_ne!(first.secret.expose(), secret.secret.expose());
    let build = dev.trigger("hello").await;
    ok(dev
        .post::<()>(&format!("/builds/{}/cancel", build.id), None)
        .await)
    .await;
    ok(dev
        .post::<()>(&format!("/builds/{}/retry", build.id), None)
        .await)
    .await;
    // A web hook, signed with the secret.
    let body = serde_json::to_vec(&json!({
        "repository": REPO,
        "ref": "refs/heads/main",
        "commit": "c1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    }))
    .expect("json");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.secret.expose().as_bytes()).expect("key");
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let r = admin
        .http
        .post(format!("{}/webhooks/generic", env.controller.url()))
        .header("content-type", "application/json")
        .header("X-Ick-Signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("POST hook");
    assert_eq!(r.status(), StatusCode::CREATED);
    // Members and roles, given and taken.
    env.member("hello", "group:qa", "viewer").await;
    ok(admin
        .request(Method::DELETE, "/projects/hello/members/group:qa")
        .send()
        .await
        .expect("DELETE"))
    .await;
    env.grant("user:carol", "admin").await;
    ok(admin
        .request(Method::DELETE, "/roles/user:carol/admin")
        .send()
        .await
        .expect("DELETE"))
    .await;
    // A creator's new project, then its deletion; a pipeline's deletion.
    dev.pipeline("scratch", PIPELINE).await;
    dev.project("mine", "pipelines: [scratch]").await;
    ok(dev
        .request(Method::DELETE, "/projects/mine")
        .send()
        .await
        .expect("DELETE"))
    .await;
    ok(dev
        .request(Method::DELETE, "/pipelines/scratch")
        .send()
        .await
        .expect("DELETE"))
    .await;

    let log = audit(admin, "?limit=500").await;
    let found: Vec<(AuditAction, &str, Option<&str>, &str)> = log
        .entries
        .iter()
        .rev()
        .map(|e| {
            (
                e.action,
                e.actor.as_str(),
                e.project.as_deref(),
                e.target.as_str(),
            )
        })
        .collect();
    use AuditAction::*;
    let a = "client:test-admin";
    let d = "client:dev";
    let b = build.id.as_str();
    assert_eq!(
        found,
        [
            (PipelineCreate, a, None, "build"),
            (PipelineUpdate, a, None, "build"),
            (ProjectCreate, a, Some("hello"), "hello"),
            (ProjectUpdate, a, Some("hello"), "hello"),
            (MemberSet, a, Some("hello"), "client:dev"),
            (RoleGrant, a, None, "client:dev"),
            (TriggerSecretCreate, d, Some("hello"), "hello"),
            (TriggerSecretRotate, d, Some("hello"), "hello"),
            (BuildTrigger, d, Some("hello"), b),
            (BuildCancel, d, Some("hello"), b),
            (BuildRetry, d, Some("hello"), b),
            (BuildTrigger, "webhook:generic", Some("hello"), found[11].3),
            (MemberSet, a, Some("hello"), "group:qa"),
            (MemberRemove, a, Some("hello"), "group:qa"),
            (RoleGrant, a, None, "user:carol"),
            (RoleRevoke, a, None, "user:carol"),
            (PipelineCreate, d, None, "scratch"),
            (ProjectCreate, d, Some("mine"), "mine"),
            (MemberSet, d, Some("mine"), "client:dev"),
            (ProjectDelete, d, Some("mine"), "mine"),
            (PipelineDelete, d, None, "scratch"),
        ]
    );
    assert_ne!(found[11].3, b, "the web hook's build is another");
    for e in &log.entries {
        assert_eq!(e.address, "127.0.0.1", "{e:?}");
        assert!(
            !e.actor.contains(&env.idp.admin.id),
            "a name, not an id: {e:?}"
        );
    }
    // The particulars: never the secret.
    let text = serde_json::to_string(&log).expect("json");
    assert!(!text.contains(secret.secret.expose()) && !text.contains(first.secret.expose()));
    let entry = |action: AuditAction| -> &AuditEntry {
        log.entries
            .iter()
            .find(|e| e.action == action)
            .expect("there")
    };
    assert_eq!(entry(ProjectUpdate).detail["revision"], 2);
    assert_eq!(entry(BuildRetry).detail["run"], 2);
    assert_eq!(entry(MemberRemove).detail["role"], "viewer");
    assert_eq!(entry(PipelineUpdate).detail["projects"], json!([]));
    assert_eq!(
        entry(ProjectDelete).detail["members"][0]["member"],
        "client:dev"
    );
}

on_both_storages!(every_kind_of_change_is_recorded_with_who_and_where);

/// Filters by project and actor (whole or by name), since, and pages.
async fn the_audit_log_filters_and_pages(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    for p in ["a", "b"] {
        env.admin.project(p, "pipelines: [build]").await;
    }
    let (dev, _) = env.idp_client("dev", ALL).await;
    env.member("b", "client:dev", "developer").await;
    for _ in 0..3 {
        dev.trigger("b").await;
    }
    let all = audit(&env.admin, "").await;
    assert_eq!(all.entries.len(), 7);
    let of_b = audit(&env.admin, "?project=b").await;
    assert_eq!(of_b.entries.len(), 5);
    assert!(
        of_b.entries
            .iter()
            .all(|e| e.project.as_deref() == Some("b"))
    );
    for actor in ["client:dev", "dev"] {
        let by = audit(&env.admin, &format!("?actor={actor}")).await;
        assert_eq!(by.entries.len(), 3, "{actor}");
        assert!(by.entries.iter().all(|e| e.actor == "client:dev"));
    }
    assert!(
        audit(&env.admin, "?actor=user:dev")
            .await
            .entries
            .is_empty()
    );
    let future = audit(&env.admin, "?since=2999-01-01T00:00:00Z").await;
    assert!(future.entries.is_empty());
    let past = audit(&env.admin, "?since=2000-01-01T00:00:00Z").await;
    assert_eq!(past.entries.len(), 7);
    let latest = all.entries[0].at.to_rfc3339();
    let since = audit(
        &env.admin,
        &format!("?since={}", latest.replace('+', "%2B")),
    )
    .await;
    assert!(!since.entries.is_empty() && since.entries.len() < 7);
    // Pages of 3: newest first, each entry once.
    let mut seen = Vec::new();
    let mut query = "?limit=3".to_string();
    loop {
        let page = audit(&env.admin, &query).await;
        assert!(page.entries.len() <= 3);
        seen.extend(page.entries.iter().map(|e| e.seq));
        match page.next {
            Some(next) => query = format!("?limit=3&before={next}"),
            None => break,
        }
    }
    let expected: Vec<i64> = all.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seen, expected);
    assert!(expected.windows(2).all(|w| w[0] > w[1]));
    for bad in ["?since=yesterday", "?before=x", "?project=Bad%20Name"] {
        let r = env
            .admin
            .request(Method::GET, &format!("/audit{bad}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

on_both_storages!(the_audit_log_filters_and_pages);

/// An admin reads all of it; an owner its project's, with project=; not
/// another project's (403, or 404 for a private one it cannot see), nor
/// the whole log.
async fn only_admins_and_a_projects_owners_read_its_audit(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin.project("mine", "pipelines: [build]").await;
    env.admin.project("theirs", "pipelines: [build]").await;
    env.admin
        .project("hidden", "pipelines: [build]\nvisibility: private")
        .await;
    let (owner, _) = env.idp_client("owner", ALL).await;
    env.member("mine", "client:owner", "owner").await;
    env.member("theirs", "client:owner", "maintainer").await;
    let own = audit(&owner, "?project=mine").await;
    assert!(!own.entries.is_empty());
    assert!(
        own.entries
            .iter()
            .all(|e| e.project.as_deref() == Some("mine"))
    );
    for (query, want) in [
        ("?project=theirs", 403),
        ("?project=hidden", 404),
        ("?project=nowhere", 404),
        ("", 403),
        ("?actor=client:test-admin", 403),
    ] {
        let r = owner
            .request(Method::GET, &format!("/audit{query}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), want, "{query}");
    }
    // Without a token, nothing.
    let r = env
        .admin
        .http
        .get(format!("{}/audit?project=mine", env.controller.url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

on_both_storages!(only_admins_and_a_projects_owners_read_its_audit);

/// No API changes an entry, the database refuses to, and refused or dry
/// changes write none.
async fn the_audit_log_is_append_only(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin.pipeline("build", PIPELINE).await;
    env.admin.project("p", "pipelines: [build]").await;
    let before = audit(&env.admin, "").await;
    for method in [Method::PUT, Method::POST, Method::DELETE, Method::PATCH] {
        let r = env
            .admin
            .request(method.clone(), "/audit")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    // Refused, dry, unchanged: no entry.
    let (viewer, _) = env.idp_client("viewer", ALL).await;
    env.member("p", "client:viewer", "viewer").await;
    let r = viewer.trigger_raw("p", &Default::default()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = viewer
        .put_yaml("/projects/p", "pipelines: [build]\nconcurrency: 2")
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    env.admin.project("p", "pipelines: [build]").await;
    let dry = ick_api::controller::ApplyRequest {
        files: vec![ick_api::controller::DefinitionFile {
            name: "f.yaml".into(),
            text: "pipeline: other\nactions: [{shell: 'true'}]\n".into(),
        }],
        dry_run: true,
    };
    ok(env.admin.post("/definitions", Some(&dry)).await).await;
    let after = audit(&env.admin, "").await;
    assert_eq!(
        after.entries.len(),
        before.entries.len() + 1,
        "only the member.set"
    );
    assert_eq!(after.entries[0].action, AuditAction::MemberSet);

    // The database itself refuses to change or remove an entry.
    sqlx::any::install_default_drivers();
    let mut conn =
        <sqlx::AnyConnection as sqlx::Connection>::connect(env.controller.database_url())
            .await
            .expect("connect");
    for sql in [
        "UPDATE audit SET actor = 'user:nobody'",
        "DELETE FROM audit",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let still = audit(&env.admin, "").await;
    assert_eq!(still, after);
}

on_both_storages!(the_audit_log_is_append_only);
