//! `icktool up`: the whole suite in one process on SQLite and a local
//! folder, its demo, its state kept across starts, and Ctrl-C.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{icktool, s, wait_for};
use ick_api::controller::{BuildList, BuildStatus, StoredProject};
use ick_tests::web::WebBrowser;
use ick_tests::{bin_path, repo_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running `icktool up`, its output going to files.
struct Up {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Up {
    fn start(cwd: &Path, args: &[&str]) -> Up {
        let n = std::fs::read_dir(cwd).map(|d| d.count()).unwrap_or(0);
        let out = cwd.join(format!("up-{n}.out"));
        let err = cwd.join(format!("up-{n}.err"));
        let child = Command::new(bin_path("icktool"))
            .arg("up")
            .args(args)
            .current_dir(cwd)
            .env_remove("ICKTOOL_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("icktool up starts");
        Up { child, out, err }
    }

    fn output(&self) -> String {
        format!(
            "{}\n--- stderr\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Waits until stdout says `text`.
    fn wait_for(&mut self, text: &str, timeout: Duration) {
        wait_for(timeout, text, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "icktool up ended ({status}) before saying {text:?}:\n{}",
                    self.output()
                );
            }
            std::fs::read_to_string(&self.out)
                .ok()
                .filter(|o| o.contains(text))
                .map(|_| ())
        });
    }

    /// Ctrl-C, and waits for a clean exit.
    fn interrupt(mut self) -> String {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let status = wait_for(Duration::from_secs(30), "icktool up to stop", || {
            self.child.try_wait().ok().flatten()
        });
        let output = self.output();
        assert!(
            status.success(),
            "icktool up did not stop cleanly: {status}\n{output}"
        );
        assert!(output.contains("Stopped."), "{output}");
        output
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_of(dir: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(dir.join("icktool.yaml")).expect("config"))
        .expect("yaml")
}

#[test]
fn up_demo_ends_with_the_hello_build_succeeded() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut up = Up::start(cwd.path(), &["--port", "0", "--demo"]);
    up.wait_for("Ick keeps running until Ctrl-C.", Duration::from_secs(120));
    let output = up.interrupt();
    assert!(
        output.contains("first start: an admin client was created"),
        "{output}"
    );
    assert!(
        output.contains("[hello-build] hello, world, from build 1"),
        "{output}"
    );
    assert!(
        output.contains("[hello-check] hello-check: the archive came through"),
        "{output}"
    );
    assert!(
        output.contains("Demo: build hello #1 succeeded"),
        "{output}"
    );
    assert!(output.contains("icktool build show hello/1"), "{output}");
    // The default state folder, private, with a private config.
    use std::os::unix::fs::PermissionsExt;
    let dir = cwd.path().join(".ick");
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("icktool.yaml")), 0o600);
    assert!(dir.join("controller.db").exists() && dir.join("artifacts").is_dir());
    let config = config_of(&dir);
    assert!(
        !output.contains(config["client_secret"].as_str().unwrap_or("none")),
        "the secret is not printed"
    );
}

#[test]
fn a_second_up_finds_everything_as_it_was() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let dir = cwd.path().join("state");
    let mut up = Up::start(
        cwd.path(),
        &["--dir", "state", "--port", "0", "--workers", "2"],
    );
    up.wait_for("Stop with Ctrl-C.", Duration::from_secs(60));
    let config = dir.join("icktool.yaml");
    let first = config_of(&dir);
    // One `up` per state folder at a time.
    common::icktool_bare(&["up", "--dir", "state", "--port", "0"], &[], cwd.path())
        .fails(2, "is in use by another `icktool up`");
    icktool(
        &config,
        &["apply", "-f", s(&repo_root().join("examples/hello"))],
        &[],
    )
    .ok();
    let run = icktool(&config, &["trigger", "hello", "--follow"], &[]);
    assert_eq!(run.code(), 0, "{run}\n{}", up.output());
    let workers = icktool(&config, &["workers"], &[]).ok();
    assert!(
        workers.stdout.contains("local-1-") && workers.stdout.contains("local-2-"),
        "{workers}"
    );
    // People log in (`icktool login`) through the public client up makes.
    let login: ick_api::oauth::ClientInfo = icktool(
        &config,
        &["client", "show", "icktool", "--output", "json"],
        &[],
    )
    .ok()
    .json();
    assert!(login.public && login.device, "{login:?}");
    assert!(
        !login.scopes.contains(ick_api::Scope::IdpAdmin),
        "{login:?}"
    );
    assert!(!login.scopes.contains(ick_api::Scope::WorkRun), "{login:?}");
    assert_eq!(first["login_client_id"].as_str(), Some(login.id.as_str()));
    // The dashboard up prints: a person logs in there and sees the build.
    let dashboard = dashboard_of(&up.output());
    let mut password = Command::new(bin_path("icktool"))
        .args(["user", "create", "dana", "--password-stdin"])
        .env("ICKTOOL_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("icktool runs");
    use std::io::Write as _;
    password
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"a password for dana\n")
        .expect("write");
    assert!(password.wait().expect("icktool ends").success());
    icktool(
        &config,
        &["member", "add", "hello", "user:dana", "viewer"],
        &[],
    )
    .ok();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut browser = WebBrowser::at(&dashboard);
    let page = runtime.block_on(browser.log_in("/", "dana", "a password for dana"));
    assert_eq!(page.status, reqwest::StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("href=\"/projects/hello\""),
        "{}",
        page.body
    );
    up.interrupt();

    let mut again = Up::start(cwd.path(), &["--dir", "state", "--port", "0"]);
    again.wait_for("Stop with Ctrl-C.", Duration::from_secs(60));
    let second = config_of(&dir);
    assert_eq!(
        second["client_id"], first["client_id"],
        "the same admin client"
    );
    assert_eq!(second["client_secret"], first["client_secret"]);
    assert_eq!(
        second["login_client_id"], first["login_client_id"],
        "the same login client"
    );
    let builds: BuildList = icktool(&config, &["build", "list", "--output", "json"], &[])
        .ok()
        .json();
    assert_eq!(builds.builds.len(), 1);
    assert_eq!(builds.builds[0].status, BuildStatus::Succeeded);
    let projects: Vec<StoredProject> =
        icktool(&config, &["project", "list", "--output", "json"], &[])
            .ok()
            .json();
    assert_eq!(projects[0].name, "hello");
    // The session outlived the restart: its cookie is sealed with a key
    // kept in the state folder.
    browser.moved_to(&dashboard_of(&again.output()));
    let page = runtime.block_on(browser.get("/"));
    assert_eq!(page.status, reqwest::StatusCode::OK, "{page:?}");
    let archived = icktool(&config, &["ref", "get", "hello/output"], &[]).ok();
    assert!(archived.stdout.starts_with("sha256:"), "{archived}");
    let output = again.interrupt();
    assert!(!output.contains("first start"), "{output}");
}

/// The dashboard's URL, as `up` printed it.
fn dashboard_of(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("dashboard"))
        .map(|url| url.trim().to_string())
        .unwrap_or_else(|| panic!("up printed no dashboard:\n{output}"))
}

#[test]
fn up_refuses_a_port_in_use_and_changes_nothing() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let run = common::icktool_bare(&["up", "--dir", "state", "--port", &port], &[], cwd.path());
    run.fails(2, &format!("port {port} is in use"));
    assert!(!cwd.path().join("state").exists(), "no state was made");
}

#[test]
fn up_with_a_mail_config_sends_mail_and_its_warnings_have_no_colours() {
    use ick_tests::smtp::TestSmtp;
    let cwd = tempfile::tempdir().expect("tempdir");
    // The mail server is down at first: the warning about it must reach
    // the (non-terminal) stderr without ANSI colours.
    let mut smtp = TestSmtp::start();
    smtp.stop();
    let config = cwd.path().join("up.yaml");
    std::fs::write(
        &config,
        format!(
            "mail:\n  host: 127.0.0.1\n  port: {}\n  tls: none\n  from: 'Ick <ick@example.org>'\n  \
             retry: 200ms\n  poll_interval: 100ms\n",
            smtp.port()
        ),
    )
    .expect("write up.yaml");
    let mut up = Up::start(
        cwd.path(),
        &["--dir", "state", "--port", "0", "--config", "up.yaml"],
    );
    up.wait_for("Stop with Ctrl-C.", Duration::from_secs(60));
    assert!(
        up.output().contains(&format!(
            "mail            through 127.0.0.1:{}",
            smtp.port()
        )),
        "{}",
        up.output()
    );
    let icktool_config = cwd.path().join("state/icktool.yaml");
    std::fs::write(
        cwd.path().join("n.yaml"),
        "pipeline: p\nactions: [{shell: 'echo mailed'}]\n---\n\
         project: n\npipelines: [p]\nnotify: {to: [dev@example.org], on: [success]}\n",
    )
    .expect("definitions");
    icktool(
        &icktool_config,
        &["apply", "-f", s(&cwd.path().join("n.yaml"))],
        &[],
    )
    .ok();
    icktool(&icktool_config, &["trigger", "n", "--follow"], &[]).ok();
    let shown = icktool(&icktool_config, &["build", "show", "n"], &[]).ok();
    assert!(
        !shown.stderr.contains("warning"),
        "mail is configured: {shown}"
    );
    wait_for(Duration::from_secs(60), "the failed send's warning", || {
        std::fs::read_to_string(&up.err)
            .ok()
            .filter(|e| e.contains("sending a notification failed"))
    });
    let stderr = std::fs::read_to_string(&up.err).expect("stderr");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes: {stderr:?}");

    smtp.restart();
    let mail = wait_for(Duration::from_secs(60), "the mail", || {
        smtp.received().into_iter().next()
    })
    .parse();
    assert_eq!(mail.to, vec!["dev@example.org".to_string()]);
    assert!(mail.subject.contains("n #1"), "{mail:?}");
    // Its link is the controller's loopback URL, as `up` printed it.
    let controller = config_of(&cwd.path().join("state"))["controller"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        mail.text.contains(&format!("{controller}/builds/")),
        "{mail:?}"
    );
    up.interrupt();
}

#[test]
fn up_refuses_a_bad_config_and_changes_nothing() {
    let cwd = tempfile::tempdir().expect("tempdir");
    std::fs::write(cwd.path().join("nofrom.yaml"), "mail: {host: 127.0.0.1}\n").expect("write");
    std::fs::write(
        cwd.path().join("icktool.yaml"),
        "controller: http://127.0.0.1:1\n",
    )
    .expect("write");
    let args =
        |file: &str| ["up", "--dir", "state", "--port", "0", "--config", file].map(String::from);
    let run = |file: &str| {
        let args = args(file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::icktool_bare(&args, &[], cwd.path())
    };
    // The controller checks `mail:`; the error names the user's file, not
    // the one `up` made for the check.
    let refused = run("nofrom.yaml").fails(2, "missing field `from`");
    assert!(
        refused
            .stderr
            .contains("nofrom.yaml: the controller refuses its `mail:`")
            && !refused.stderr.contains("icktool-up-check"),
        "{refused}"
    );
    std::fs::write(
        cwd.path().join("badfrom.yaml"),
        "mail: {host: 127.0.0.1, from: not-an-address}\n",
    )
    .expect("write");
    run("badfrom.yaml").fails(2, "is not an email address");
    run("icktool.yaml").fails(2, "unknown field `controller`");
    run("missing.yaml").fails(2, "missing.yaml");
    assert!(!cwd.path().join("state").exists(), "no state was made");
    // ICKTOOL_CONFIG is the client's config, which `up` does not read.
    common::icktool_bare(
        &["up", "--workers", "0"],
        &[("ICKTOOL_CONFIG", "icktool.yaml")],
        cwd.path(),
    )
    .fails(2, "--workers must be at least 1");
}

/// The processes below `pid` (children, theirs, …), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = vec![pid];
    let mut found = Vec::new();
    while let Some(parent) = parents.pop() {
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if proc_stat(child).is_some_and(|(_, ppid)| ppid == parent) && !found.contains(&child) {
                found.push(child);
                parents.push(child);
            }
        }
    }
    found
}

/// A process's state letter and parent, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE PPID …`; COMM may hold spaces and parentheses.
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` still runs (a zombie whose new parent does not reap it
/// runs nothing).
fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// `up`'s children, one per service binary, found by their command lines.
fn services_of(up: &Up) -> Vec<(String, u32)> {
    let children: Vec<u32> = descendants(up.child.id())
        .into_iter()
        .filter(|&pid| proc_stat(pid).is_some_and(|(_, ppid)| ppid == up.child.id()))
        .collect();
    let mut found = Vec::new();
    for bin in [
        "ick-idp",
        "ick-controller",
        "ick-artifact-store",
        "ick-worker-manager",
        "ick-web",
    ] {
        let pid = children
            .iter()
            .copied()
            .find(|&pid| cmdline(pid).contains(&format!("/{bin} ")))
            .unwrap_or_else(|| panic!("no {bin} among up's children:\n{}", up.output()));
        found.push((bin.to_string(), pid));
    }
    found
}

#[test]
fn killing_up_leaves_no_service_running() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut up = Up::start(cwd.path(), &["--dir", "state", "--port", "0"]);
    up.wait_for("Stop with Ctrl-C.", Duration::from_secs(60));
    let services = services_of(&up);
    // The worker's supervisor too, and anything else below `up`.
    let everything = descendants(up.child.id());
    assert!(everything.len() >= services.len(), "{everything:?}");
    let _ = kill(Pid::from_raw(up.child.id() as i32), Signal::SIGKILL);
    let _ = up.child.wait();
    for pid in everything {
        wait_for(
            Duration::from_secs(60),
            &format!(
                "process {pid} ({}) to end after up was killed",
                cmdline(pid)
            ),
            || (!alive(pid)).then_some(()),
        );
    }
}

#[test]
fn a_service_that_dies_stops_up_and_the_others() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut up = Up::start(cwd.path(), &["--dir", "state", "--port", "0"]);
    up.wait_for("Stop with Ctrl-C.", Duration::from_secs(60));
    let services = services_of(&up);
    let (_, controller) = services
        .iter()
        .find(|(bin, _)| bin == "ick-controller")
        .expect("the controller");
    let _ = kill(Pid::from_raw(*controller as i32), Signal::SIGKILL);
    let status = wait_for(Duration::from_secs(60), "icktool up to stop", || {
        up.child.try_wait().ok().flatten()
    });
    let output = up.output();
    assert_eq!(status.code(), Some(2), "{output}");
    let log = cwd.path().join("state/logs/controller.log");
    let log = log.canonicalize().expect("the controller's log exists");
    assert!(
        output.contains("the controller ended") && output.contains(&log.display().to_string()),
        "names the controller and its log:\n{output}"
    );
    // `up` waited for each of the others before it exited.
    for (bin, pid) in &services {
        assert!(!alive(*pid), "{bin} ({pid}) still runs:\n{output}");
    }
}

#[test]
fn up_without_a_service_binary_names_it_and_starts_nothing() {
    let cwd = tempfile::tempdir().expect("tempdir");
    // icktool and the IDP beside it, nothing on PATH: the controller is
    // missing.
    let bin = cwd.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    for name in ["icktool", "ick-idp"] {
        std::fs::copy(bin_path(name), bin.join(name)).expect("copy");
    }
    let empty = cwd.path().join("empty");
    std::fs::create_dir(&empty).expect("empty");
    let out = Command::new(bin.join("icktool"))
        .args(["up", "--dir", "state", "--port", "0"])
        .current_dir(cwd.path())
        .env("PATH", &empty)
        .env_remove("ICKTOOL_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("icktool runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot find ick-controller")
            && stderr.contains(&format!("looked in {} (beside icktool)", bin.display()))
            && stderr.contains("PATH"),
        "{stderr}"
    );
    assert!(!cwd.path().join("state").exists(), "no state was made");
    // The IDP, which was there, was not started either.
    let ran_idp = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| cmdline(pid).starts_with(&bin.join("ick-idp").display().to_string()));
    assert!(!ran_idp, "the IDP was started");
}

#[test]
fn icktool_links_none_of_the_services() {
    let manifest = std::fs::read_to_string(repo_root().join("icktool/Cargo.toml"))
        .expect("icktool/Cargo.toml");
    // Every section's keys: [dependencies], [dev-dependencies], [target…].
    let keys: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(str::trim)
        .collect();
    for service in [
        "ick-controller",
        "ick-idp",
        "ick-artifact-store",
        "ick-worker-manager",
    ] {
        assert!(!keys.contains(&service), "icktool depends on {service}");
    }
}

/// `ick-idp client issue`, as `up` runs it for its clients.
fn issue(config: &Path, name: &str, keep: Option<&str>) -> (String, Option<String>) {
    use std::io::Write;
    let mut command = Command::new(bin_path("ick-idp"));
    command
        .arg("--config")
        .arg(config)
        .args(["client", "issue", name, "--scope", "projects:read"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if keep.is_some() {
        command.arg("--keep-secret-stdin");
    }
    let mut child = command.spawn().expect("ick-idp runs");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(secret) = keep {
        writeln!(stdin, "{secret}").expect("write the secret");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("ick-idp ends");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| ick_tests::idp::printed(&stdout, key);
    (
        field("client_id:").expect("client_id"),
        field("client_secret:"),
    )
}

#[test]
fn idp_client_issue_keeps_a_secret_only_if_it_is_the_clients() {
    use ick_tests::TestIdp;
    use ick_tests::idp::{Credentials, Storage};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for storage in [Storage::Postgres, Storage::Sqlite] {
        let idp = TestIdp::start_with(storage, |_| {});
        let gets_a_token = |id: &str, secret: &str| {
            let creds = Credentials {
                id: id.to_string(),
                secret: secret.to_string(),
            };
            runtime
                .block_on(idp.token_source(&creds, None).fetch())
                .is_ok()
        };
        let (id, first) = issue(&idp.config, "bootstrap", None);
        let first = first.expect("a new client has a secret");
        assert!(gets_a_token(&id, &first), "{storage:?}");

        // A wrong secret is not kept: the client gets a new one, and the
        // old one stops working.
        let (same, second) = issue(&idp.config, "bootstrap", Some("not-the-secret"));
        let second = second.expect("a new secret");
        assert_eq!(same, id, "the same client");
        assert_ne!(second, first);
        assert!(!gets_a_token(&id, &first), "{storage:?}: the old secret");
        assert!(gets_a_token(&id, &second), "{storage:?}");

        // The right one is kept, and no secret is printed.
        let (same, none) = issue(&idp.config, "bootstrap", Some(&second));
        assert_eq!((same.as_str(), none), (id.as_str(), None));
        assert!(gets_a_token(&id, &second), "{storage:?}");

        let out = idp.run(&["client", "delete", "bootstrap"]);
        assert!(out.status.success(), "{out:?}");
        assert!(!gets_a_token(&id, &second), "{storage:?}: deleted");
    }
}
