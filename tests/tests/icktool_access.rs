//! Who icktool is: its config (file, environment, default place), its
//! token, `icktool status`, and the IDP's clients.

mod common;

use common::{Ick, icktool, icktool_bare, s, set_mode};
use ick_api::controller::StoredPipeline;
use ick_api::oauth::{ClientInfo, ClientWithSecret};
use ick_tests::repo_root;

fn pipeline_count(ick: &Ick) -> usize {
    ick.icktool(&["pipeline", "list", "--output", "json"])
        .ok()
        .json::<Vec<StoredPipeline>>()
        .len()
}

#[test]
fn a_missing_config_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.yaml");
    icktool_bare(
        &["--config", s(&missing), "project", "list"],
        &[],
        dir.path(),
    )
    .fails(2, &format!("no icktool config at {}", s(&missing)))
    .fails(2, "ICKTOOL_CONFIG");
    // Without --config: ICKTOOL_CONFIG, then ~/.config/icktool/config.yaml.
    icktool_bare(
        &["project", "list"],
        &[("ICKTOOL_CONFIG", s(&missing))],
        dir.path(),
    )
    .fails(2, s(&missing));
    let home = dir.path().join("home");
    icktool_bare(&["status"], &[("HOME", s(&home))], dir.path())
        .fails(2, &format!("{}/.config/icktool/config.yaml", s(&home)));
    // A mistake in the file is located.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "idp: http://127.0.0.1:9\ncontroler: x\n").expect("write");
    icktool(&bad, &["project", "list"], &[])
        .fails(2, &format!("{}:2:1", s(&bad)))
        .fails(2, "unknown field `controler`");
}

#[test]
fn the_config_is_found_in_the_environment_and_the_default_place() {
    let ick = Ick::start(0);
    let file = ick.file("p.yaml", "pipeline: p\nactions: [{shell: 'true'}]\n");
    let dir = tempfile::tempdir().expect("tempdir");
    icktool_bare(
        &["apply", "-f", s(&file)],
        &[("ICKTOOL_CONFIG", s(&ick.config))],
        dir.path(),
    )
    .ok();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/icktool")).expect("mkdir");
    std::fs::copy(&ick.config, home.join(".config/icktool/config.yaml")).expect("copy");
    let run = icktool_bare(&["pipeline", "list"], &[("HOME", s(&home))], dir.path()).ok();
    assert!(run.stdout.contains("p "), "{run}");
}

#[test]
fn a_wrong_secret_is_refused_and_changes_nothing() {
    let ick = Ick::start(0);
    let hello = repo_root().join("examples/hello");
    let wrong = ick.write_config("wrong.yaml", |c| {
        c["client_secret"] = "not-the-secret".into()
    });
    icktool(&wrong, &["apply", "-f", s(&hello)], &[])
        .fails(
            2,
            &format!("cannot get a token as client {}", ick.idp.admin.id),
        )
        .fails(2, "invalid_client");
    // The environment wins over the file, for better and for worse.
    ick.icktool_env(
        &["apply", "-f", s(&hello)],
        &[("ICKTOOL_CLIENT_SECRET", "still-wrong")],
    )
    .fails(2, "invalid_client");
    assert_eq!(pipeline_count(&ick), 0, "nothing may be applied");
    icktool(
        &wrong,
        &["apply", "-f", s(&hello)],
        &[("ICKTOOL_CLIENT_SECRET", ick.idp.admin.secret.as_str())],
    )
    .ok();
    assert_eq!(pipeline_count(&ick), 2);
}

#[test]
fn the_secret_may_come_from_a_file_beside_the_config() {
    let ick = Ick::start(0);
    let secret = ick.file("secret", &format!("{}\n", ick.idp.admin.secret));
    set_mode(&secret, 0o600);
    let config = ick.write_config("by-file.yaml", |c| {
        c.as_mapping_mut().expect("map").remove("client_secret");
        c["client_secret_file"] = "secret".into();
    });
    let quiet = icktool(&config, &["pipeline", "list"], &[]).ok();
    assert!(!quiet.stderr.contains("warning"), "{quiet}");
    // A secret file others may read is used, with a warning.
    set_mode(&secret, 0o644);
    let warned = icktool(&config, &["pipeline", "list"], &[]).ok();
    assert!(
        warned.stderr.contains("others may read it: chmod 600") && warned.stderr.contains("secret"),
        "{warned}"
    );
    // Both a secret and a file: which one is meant is unclear.
    let both = ick.write_config("both.yaml", |c| {
        c["client_secret_file"] = "secret".into();
    });
    icktool(&both, &["pipeline", "list"], &[]).fails(2, "keep one");
    let none = ick.write_config("none.yaml", |c| {
        c.as_mapping_mut().expect("map").remove("client_secret");
    });
    icktool(&none, &["pipeline", "list"], &[])
        .fails(2, "no `client_secret`")
        .fails(2, "ICKTOOL_CLIENT_SECRET");
}

#[test]
fn status_shows_who_i_am_and_each_service() {
    let ick = Ick::start(0);
    let run = ick.icktool(&["status"]).ok();
    assert!(run.stdout.contains(&ick.idp.admin.id), "{run}");
    assert!(run.stdout.contains("builds:trigger"), "{run}");
    assert!(run.stdout.contains("valid for 15m00s"), "{run}");
    for (service, version) in [
        ("controller", "ick-controller"),
        ("IDP", "ick-idp"),
        ("artifact store", "ick-artifact-store"),
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(service))
            .unwrap_or_else(|| panic!("no {service} line:\n{run}"));
        assert!(
            line.contains(" ok ") && line.contains(version) && line.contains(ick_api::VERSION),
            "{line}"
        );
    }
    let json: serde_json::Value = ick.icktool(&["status", "--output", "json"]).ok().json();
    assert_eq!(json["client_id"], ick.idp.admin.id.as_str());
    assert_eq!(json["services"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["token"]["status"], "granted");
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&ick.icktool(&["status", "--output", "yaml"]).ok().stdout)
            .expect("yaml");
    assert_eq!(
        yaml["token"]["status"].as_str(),
        Some("granted"),
        "{yaml:?}"
    );

    // A service that does not answer: said, and exit 2.
    let dead = ick.write_config("dead.yaml", |c| {
        c["artifact_store"] = "http://127.0.0.1:9".into()
    });
    let run = icktool(&dead, &["status"], &[]);
    assert_eq!(run.code(), 2, "{run}");
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("artifact store"))
        .unwrap_or_default();
    assert!(line.contains("unreachable"), "{run}");
}

#[test]
fn clients_are_created_listed_disabled_enabled_and_rotated() {
    let ick = Ick::start(0);
    let ci_config = ick.dir.path().join("ci.yaml");
    let created = ick
        .icktool(&[
            "client",
            "create",
            "ci",
            "--scope",
            "projects:read builds:read",
            "--scope",
            "builds:trigger",
            "--write-config",
            s(&ci_config),
        ])
        .ok();
    let secret = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no secret printed:\n{created}"))
        .to_string();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&ci_config)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let status = icktool(&ci_config, &["status"], &[]).ok();
    assert!(
        status
            .stdout
            .contains("projects:read builds:read builds:trigger"),
        "{status}"
    );
    // The new client has only its scopes.
    let file = ick.file("p.yaml", "pipeline: p\nactions: [{shell: 'true'}]\n");
    icktool(&ci_config, &["apply", "-f", s(&file)], &[]).fails(2, "projects:write");
    // A client that may write definitions (and not read builds) applies.
    let author = ick.dir.path().join("author.yaml");
    ick.icktool(&[
        "client",
        "create",
        "author",
        "--scope",
        "projects:read projects:write",
        "--write-config",
        s(&author),
    ])
    .ok();
    // With the scope, but no role, it may not; as a creator, it may.
    icktool(&author, &["apply", "-f", s(&file)], &[]).fails(2, "global role creator");
    ick.icktool(&["role", "grant", "client:author", "creator"])
        .ok();
    icktool(&author, &["apply", "-f", s(&file)], &[]).ok();
    // An existing config is never overwritten, and no client is made.
    let before = std::fs::read_to_string(&author).expect("author config");
    ick.icktool(&[
        "client",
        "create",
        "author-2",
        "--scope",
        "projects:read",
        "--write-config",
        s(&author),
    ])
    .fails(2, "not overwriting it");
    assert_eq!(std::fs::read_to_string(&author).expect("kept"), before);
    ick.icktool(&["client", "show", "author-2"])
        .fails(2, "author-2");

    // Listings never show a secret.
    let list = ick.icktool(&["client", "list"]).ok();
    assert!(
        list.stdout.contains("ci ") && !list.stdout.contains(&secret),
        "{list}"
    );
    let listed: Vec<ClientInfo> = ick
        .icktool(&["client", "list", "--output", "json"])
        .ok()
        .json();
    assert!(listed.iter().any(|c| c.name == "ci" && c.enabled));
    let shown = ick.icktool(&["client", "show", "ci"]).ok();
    assert!(!shown.stdout.contains(&secret), "{shown}");

    ick.icktool(&["client", "disable", "ci"]).ok();
    icktool(&ci_config, &["build", "list"], &[]).fails(2, "disabled");
    ick.icktool(&["client", "enable", "ci"]).ok();
    icktool(&ci_config, &["build", "list"], &[]).ok();

    let rotated: ClientWithSecret = ick
        .icktool(&["client", "rotate", "ci", "--output", "json"])
        .ok()
        .json();
    let rotated_secret = rotated.client_secret.expect("a new secret");
    assert_ne!(rotated_secret, secret);
    icktool(&ci_config, &["build", "list"], &[]).fails(2, "invalid_client");
    icktool(
        &ci_config,
        &["build", "list"],
        &[("ICKTOOL_CLIENT_SECRET", rotated_secret.as_str())],
    )
    .ok();

    ick.icktool(&["client", "delete", "ci"]).ok();
    ick.icktool(&["client", "show", "ci"]).fails(2, "Not Found");
    ick.icktool(&["client", "create", "bad", "--scope", "builds:everything"])
        .fails(2, "unknown scope \"builds:everything\"");
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let run = icktool_bare(&["completions", shell], &[], dir.path()).ok();
        assert!(
            run.stdout.contains("icktool") && run.stdout.contains("trigger"),
            "{shell}: {run}"
        );
    }
    icktool_bare(&["completions", "tcsh"], &[], dir.path()).fails(2, "invalid value");
}

/// `icktool member`, `role` and `audit` against the real suite: a
/// developer added by icktool triggers; bad members and roles are refused
/// before anything is sent; the audit log names who did it.
#[test]
fn members_roles_and_the_audit_log_from_icktool() {
    let ick = Ick::start(0);
    let file = ick.file(
        "p.yaml",
        "pipelines:\n  - pipeline: p\n    actions: [{shell: 'true'}]\n\
         projects:\n  - project: secret\n    pipelines: [p]\n    visibility: private\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let dev = ick.dir.path().join("dev.yaml");
    ick.icktool(&[
        "client",
        "create",
        "dev",
        "--scope",
        "projects:read builds:read builds:trigger",
        "--write-config",
        s(&dev),
    ])
    .ok();
    // Private: to dev, it is not there.
    icktool(&dev, &["trigger", "secret"], &[]).fails(2, "no project \"secret\"");
    icktool(&dev, &["project", "list"], &[]).ok();
    ick.icktool(&["member", "add", "secret", "client:dev", "developer"])
        .ok();
    icktool(&dev, &["trigger", "secret"], &[]).ok();
    let list = ick.icktool(&["member", "list", "secret"]).ok();
    assert!(
        list.stdout.contains("client:dev") && list.stdout.contains("developer"),
        "{list}"
    );
    // Refused before anything is sent.
    ick.icktool(&["member", "add", "secret", "dev", "developer"])
        .fails(2, "user:NAME, group:NAME or client:NAME");
    ick.icktool(&["member", "add", "secret", "user:x", "boss"])
        .fails(2, "viewer, developer, maintainer and owner");
    ick.icktool(&["role", "grant", "user:x", "viewer"])
        .fails(2, "project's role");
    ick.icktool(&["member", "add", "nowhere", "user:x", "viewer"])
        .fails(2, "no project \"nowhere\"");
    // Global roles.
    ick.icktool(&["role", "grant", "group:release", "creator"])
        .ok();
    let roles = ick.icktool(&["role", "list"]).ok();
    assert!(
        roles.stdout.contains("group:release") && roles.stdout.contains("config"),
        "{roles}"
    );
    ick.icktool(&["role", "revoke", "group:release", "creator"])
        .ok();
    ick.icktool(&["role", "revoke", "client:test-admin", "admin"])
        .fails(2, "config");
    icktool(&dev, &["role", "list"], &[]).fails(2, "global role admin");
    ick.icktool(&["member", "remove", "secret", "client:dev"])
        .ok();
    icktool(&dev, &["trigger", "secret"], &[]).fails(2, "no project");
    // The audit log, filtered; dev may not read it.
    let log = ick
        .icktool(&["audit", "--project", "secret", "--output", "json"])
        .ok()
        .json::<ick_api::controller::AuditList>();
    let actions: Vec<(String, &str)> = log
        .entries
        .iter()
        .map(|e| (e.actor.clone(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("client:test-admin".to_string(), "member.remove"),
            ("client:dev".to_string(), "build.trigger"),
            ("client:test-admin".to_string(), "member.set"),
            ("client:test-admin".to_string(), "project.create"),
        ]
    );
    let by_dev = ick
        .icktool(&["audit", "--actor", "dev", "--since", "1h"])
        .ok();
    assert!(by_dev.stdout.contains("build.trigger"), "{by_dev}");
    assert!(!by_dev.stdout.contains("member.set"), "{by_dev}");
    ick.icktool(&["audit", "--since", "soon"])
        .fails(2, "RFC 3339");
    icktool(&dev, &["audit"], &[]).fails(2, "global role admin");

    // Without --project, the IDP's log comes too, in one list by time: the
    // client dev made there, and the member changes made here.
    let all = ick
        .icktool(&["audit", "--output", "json"])
        .ok()
        .json::<ick_api::audit::AuditList>();
    let made = all
        .entries
        .iter()
        .position(|e| e.action.as_str() == "client.create" && e.target == "dev")
        .unwrap_or_else(|| panic!("the IDP's client.create of dev: {all:?}"));
    assert_eq!(all.entries[made].actor, "client:test-admin");
    let added = all
        .entries
        .iter()
        .position(|e| e.action.as_str() == "member.set")
        .expect("member.set");
    assert!(made > added, "newest first: {all:?}");
    assert!(
        all.entries.windows(2).all(|w| w[0].at >= w[1].at),
        "{all:?}"
    );
    // A controller admin who may not read the IDP's log gets the
    // controller's alone.
    let auditor = ick.dir.path().join("auditor.yaml");
    ick.icktool(&[
        "client",
        "create",
        "auditor",
        "--scope",
        "projects:read",
        "--write-config",
        s(&auditor),
    ])
    .ok();
    ick.icktool(&["role", "grant", "client:auditor", "admin"])
        .ok();
    let theirs = icktool(&auditor, &["audit", "--output", "json"], &[])
        .ok()
        .json::<ick_api::audit::AuditList>();
    assert!(
        theirs
            .entries
            .iter()
            .any(|e| e.action.as_str() == "role.grant"),
        "{theirs:?}"
    );
    assert!(
        theirs
            .entries
            .iter()
            .all(|e| !e.action.as_str().starts_with("client.")),
        "{theirs:?}"
    );
}
