//! The web dashboard over HTTP, through the real binaries: a person logs
//! in through the IDP and comes back to the page they asked for; pages
//! show what their roles allow; forms need their CSRF token; what people
//! wrote is shown as text, never as markup.

mod common;

use common::Ick;
use ick_api::controller::{BuildList, BuildSummary};
use ick_tests::web::{TestWeb, WebBrowser};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

/// The suite with one worker, users alice (developer of `hello`), bob
/// (its viewer) and carol (no role), a private project `hello` whose one
/// action prints markup, a public project `open`, and a dashboard.
async fn setup() -> (Ick, TestWeb) {
    let mut ick = Ick::start(0);
    ick.add_worker();
    for user in ["alice", "bob", "carol"] {
        ick.idp.create_user(user, PASSWORD).await;
    }
    let file = ick.file(
        "p.yaml",
        "pipelines:\n  - pipeline: say\n    actions:\n      - shell: \"echo '<script>alert(1)</script>'; printf '\\\\033[1;31mred\\\\033[0m plain\\\\n'; echo done\"\n\
         \x20 - pipeline: fail\n    actions:\n      - shell: \"test \\\"$outcome\\\" = pass\"\n\
         \x20 - pipeline: gated\n    actions:\n      - shell: \"echo A$((40+2)); while [ ! -e \\\"$gate\\\" ]; do sleep 0.1; done; printf 'B\\\\033[32m%s\\\\033[0m\\\\n' $((40+3)); while [ ! -e \\\"$gate.2\\\" ]; do sleep 0.1; done\"\n\
         projects:\n  - project: hello\n    visibility: private\n    pipelines: [say]\n\
         \x20 - project: open\n    visibility: public\n    pipelines: [say]\n\
         \x20 - project: broken\n    visibility: public\n    parameters: {outcome: fail}\n    pipelines: [fail]\n\
         \x20 - project: slow\n    visibility: public\n    parameters: {gate: /nonexistent}\n    pipelines: [gated]\n",
    );
    ick.icktool(&["apply", "-f", common::s(&file)]).ok();
    ick.icktool(&["member", "add", "hello", "user:alice", "developer"])
        .ok();
    ick.icktool(&["member", "add", "hello", "user:bob", "viewer"])
        .ok();
    for project in ["slow", "broken"] {
        ick.icktool(&["member", "add", project, "user:alice", "developer"])
            .ok();
    }
    let web = TestWeb::start(&ick.idp, ick.controller.url());
    (ick, web)
}

fn trigger(ick: &Ick, project: &str) -> BuildSummary {
    ick.icktool(&["trigger", project, "--follow"]).ok();
    let list: BuildList = ick
        .icktool(&["build", "list", "--project", project, "--output", "json"])
        .ok()
        .json();
    list.builds.into_iter().next().expect("a build")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_and_comes_back_to_the_build_they_asked_for() {
    let (ick, web) = setup().await;
    let build = trigger(&ick, "hello");
    let path = format!("/builds/{}", build.id);

    let mut browser = WebBrowser::new(&web);
    // Logged out: sent to the login, which remembers the page.
    let first = browser.get(&path).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    let login = first.location.clone().expect("a redirect");
    assert!(login.starts_with("/login?back="), "{login}");
    let to_idp = browser.get(&login).await;
    let authorize = to_idp.location.clone().expect("to the IDP");
    assert!(authorize.starts_with(ick.idp.url()), "{authorize}");
    for param in ["code_challenge_method=S256", "state=", "code_challenge="] {
        assert!(authorize.contains(param), "{authorize}");
    }

    let page = browser.log_in(&path, "alice", PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("hello"), "{}", page.body);
    assert!(page.body.contains("succeeded"), "{}", page.body);
    assert!(page.body.contains("id=\"user\">alice<"), "{}", page.body);
    // The action's output is text: escaped, never markup.
    assert!(
        page.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert(1)"), "{}", page.body);
    // ANSI colours show as the terminal would; no escape reaches the page.
    assert!(
        page.body.contains("<span class=\"fg1 b\">red</span> plain"),
        "{}",
        page.body
    );
    assert!(!page.body.contains('\u{1b}'));
    // Lines are numbered and linked.
    assert!(page.body.contains("id=\"L1\""), "{}", page.body);
    assert!(page.body.contains("href=\"#L2\""), "{}", page.body);
    // No script or frame from elsewhere, ever.
    let policy = page.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(policy.contains("default-src 'self'"), "{policy}");

    // The session cookie: sealed, HttpOnly, SameSite=Lax; no token in it
    // that a script (or a person reading it) could use.
    let session = browser.cookies()["ick_web_session"].clone();
    assert!(!session.contains("eyJ"), "a JWT in the cookie: {session}");

    // The projects page lists what alice may read, with the last build.
    let projects = browser.get("/").await;
    assert_eq!(projects.status, StatusCode::OK);
    assert!(
        projects.body.contains("href=\"/projects/hello\""),
        "{}",
        projects.body
    );
    assert!(
        projects.body.contains(&format!("/builds/{}", build.id)),
        "{}",
        projects.body
    );
    // The raw log is the text itself.
    let raw = browser.get(&format!("{path}/log.txt")).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert!(
        raw.headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    assert!(
        raw.body.contains("<script>alert(1)</script>\n"),
        "{}",
        raw.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_httponly_lax_and_logout_ends_it() {
    let (_ick, web) = setup().await;
    let mut browser = WebBrowser::new(&web);
    let to_idp = browser.get("/login?back=/").await;
    let authorize = to_idp.location.expect("to the IDP");
    let answer = ick_tests::browser::Browser::new()
        .log_in(&authorize, "carol", PASSWORD)
        .await;
    let callback = browser
        .get(&answer.location.expect("back from the IDP"))
        .await;
    assert_eq!(callback.status, StatusCode::SEE_OTHER, "{callback:?}");
    let set: Vec<&str> = callback
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("ick_web_session="))
        .unwrap_or_else(|| panic!("no session cookie: {set:?}"));
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Lax"), "{session}");
    assert!(session.contains("Path=/"), "{session}");

    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let csrf = WebBrowser::csrf(&home);
    // A logout without the form's token is refused, and changes nothing.
    let forged = browser.post("/logout", &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/").await.status, StatusCode::OK);
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(!browser.cookies().contains_key("ick_web_session"));
    let after = browser.get("/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "logged out: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_their_csrf_token_and_roles_decide_what_a_person_may_do() {
    let (ick, web) = setup().await;
    let build = trigger(&ick, "hello");
    let count = |ick: &Ick| {
        ick.icktool(&["build", "list", "--project", "hello", "--output", "json"])
            .ok()
            .json::<BuildList>()
            .builds
            .len()
    };
    assert_eq!(count(&ick), 1);

    let mut alice = WebBrowser::new(&web);
    let page = alice.log_in("/projects/hello", "alice", PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&format!("/builds/{}", build.id)));
    assert!(page.body.contains("id=\"trigger\""), "a developer's button");
    let csrf = WebBrowser::csrf(&page);
    // Without the token, or with another session's: refused, no build.
    for forged in ["", "forged", "AAAA"] {
        let answer = alice
            .post("/projects/hello/trigger", &[("csrf", forged)])
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{forged:?}");
    }
    let answer = alice.post("/projects/hello/trigger", &[]).await;
    assert!(answer.status.is_client_error(), "{answer:?}");
    assert_eq!(count(&ick), 1, "a refused form changed nothing");
    // With it, a developer triggers, and lands on the new build.
    let answer = alice
        .post("/projects/hello/trigger", &[("csrf", &csrf)])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
    assert!(
        answer
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/builds/")),
        "{answer:?}"
    );
    assert_eq!(count(&ick), 2);

    // A viewer reads, but the controller refuses her trigger.
    let mut bob = WebBrowser::new(&web);
    let page = bob.log_in("/projects/hello", "bob", PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // No button for what she may not do...
    assert!(!page.body.contains("id=\"trigger\""), "{}", page.body);
    // ...and the form, forged, is refused by the controller all the same.
    let csrf = WebBrowser::csrf(&page);
    let refused = bob
        .post("/projects/hello/trigger", &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert_eq!(count(&ick), 2);
    // alice's form token is not bob's.
    let other = alice_csrf_on(&mut alice).await;
    let crossed = bob
        .post("/projects/hello/trigger", &[("csrf", &other)])
        .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);

    // An outsider does not learn that the private project exists.
    let mut carol = WebBrowser::new(&web);
    let page = carol.log_in("/projects/hello", "carol", PASSWORD).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let page = carol.get(&format!("/builds/{}", build.id)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let home = carol.get("/").await;
    assert!(!home.body.contains("/projects/hello"), "{}", home.body);
}

async fn alice_csrf_on(alice: &mut WebBrowser) -> String {
    WebBrowser::csrf(&alice.get("/").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_project_reads_without_login_and_a_private_one_asks_for_it() {
    let (ick, web) = setup().await;
    let open = trigger(&ick, "open");
    let hidden = trigger(&ick, "hello");
    let mut anyone = WebBrowser::new(&web);
    let page = anyone.get("/projects/open").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&format!("/builds/{}", open.id)));
    assert!(page.body.contains("id=\"login\""), "{}", page.body);
    // No buttons for someone not logged in.
    assert!(!page.body.contains("id=\"trigger\""), "{}", page.body);
    let page = anyone.get(&format!("/builds/{}", open.id)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("id=\"retry\""));
    // A private one: log in first (which tells nothing of whether it exists).
    for path in [
        "/projects/hello".to_string(),
        format!("/builds/{}", hidden.id),
    ] {
        let page = anyone.get(&path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}: {page:?}");
        assert!(
            page.location
                .as_deref()
                .is_some_and(|l| l.starts_with("/login?back=")),
            "{page:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_returns_only_to_the_dashboard_and_refuses_a_forged_state() {
    let (_ick, web) = setup().await;
    // An open redirect is refused: the login comes back to "/".
    for back in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let mut browser = WebBrowser::new(&web);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("back", back)
            .finish();
        let to_idp = browser.get(&format!("/login?{query}")).await;
        let answer = ick_tests::browser::Browser::new()
            .log_in(&to_idp.location.expect("to the IDP"), "carol", PASSWORD)
            .await;
        let callback = browser.get(&answer.location.expect("back")).await;
        assert_eq!(callback.location.as_deref(), Some("/"), "{back}");
    }
    // A callback whose state is not this browser's login: refused.
    let mut victim = WebBrowser::new(&web);
    let to_idp = victim.get("/login?back=/").await;
    let answer = ick_tests::browser::Browser::new()
        .log_in(&to_idp.location.expect("to the IDP"), "carol", PASSWORD)
        .await;
    let callback = answer.location.expect("back");
    let forged = callback.replace("state=", "state=x");
    let page = victim.get(&forged).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{page:?}");
    assert!(!victim.cookies().contains_key("ick_web_session"));
    // Nor in a browser that started no login (a code planted on it).
    let mut other = WebBrowser::new(&web);
    let page = other.get(&callback).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{page:?}");
    assert!(!other.cookies().contains_key("ick_web_session"));
}

// ---- in a real browser ----

use ick_tests::chrome::{Chrome, Locator, wait_for_live_text, wait_for_status, wait_for_text};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_a_developer_logs_in_triggers_a_build_and_reads_its_log() {
    let (_ick, web) = setup().await;
    let chrome = Chrome::start().await;
    let base = web.url().to_string();
    chrome
        .run("developer_triggers_and_reads", |browser| async move {
            // The dashboard sends her to the IDP's login form.
            browser_log_in(&browser, &format!("{base}/projects/hello"), "alice").await;
            // Back on the page she asked for.
            let trigger = browser
                .wait()
                .for_element(Locator::Id("trigger"))
                .await
                .expect("the project page, with its button");
            let url = browser.current_url().await.expect("url");
            assert_eq!(url.path(), "/projects/hello");
            trigger.click().await.expect("build now");
            // The new build's page; its log arrives as it runs.
            let text = wait_for_text(&browser, "done", Duration::from_secs(60)).await;
            assert!(
                text.contains("<script>alert(1)</script>"),
                "the markup is shown as text: {text}"
            );
            wait_for_status(&browser, "succeeded", Duration::from_secs(60), true).await;
            // No script ran: the page's title is still Ick's.
            let title = browser.title().await.expect("title");
            assert!(title.contains("hello #"), "{title}");
            // A line has a link of its own.
            browser
                .find(Locator::Css("a[href='#L1']"))
                .await
                .expect("line 1's link")
                .click()
                .await
                .expect("follow it");
            let url = browser.current_url().await.expect("url");
            assert_eq!(url.fragment(), Some("L1"));
            // Logging out ends the session.
            browser
                .find(Locator::Id("logout"))
                .await
                .expect("the logout button")
                .click()
                .await
                .expect("log out");
            // "/" after logging out is the login form again.
            browser
                .wait()
                .for_element(Locator::Css("input[name=username]"))
                .await
                .expect("logged out: the login form again");
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_says_what_a_caller_may_do_from_its_roles_and_scopes() {
    let (ick, _web) = setup().await;
    let all = [
        "projects:read",
        "builds:read",
        "builds:trigger",
        "builds:cancel",
    ];
    let developer = ick.idp.create_client("dev", &all);
    let viewer = ick.idp.create_client("look", &all);
    let narrow = ick
        .idp
        .create_client("narrow", &["projects:read", "builds:read"]);
    let outsider = ick.idp.create_client("outsider", &all);
    for (client, role) in [
        ("dev", "developer"),
        ("look", "viewer"),
        ("narrow", "developer"),
    ] {
        ick.icktool(&["member", "add", "hello", &format!("client:{client}"), role])
            .ok();
    }
    let http = reqwest::Client::new();
    let access = |token: Option<String>, project: &str| {
        let request = http.get(format!(
            "{}/projects/{project}/access",
            ick.controller.url()
        ));
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        async move {
            let answer = request.send().await.expect("answers");
            let status = answer.status();
            (status, answer.json::<serde_json::Value>().await.ok())
        }
    };
    let (status, may) = access(Some(ick.idp.token(&developer, None).await), "hello").await;
    assert_eq!(status, StatusCode::OK);
    let may = may.expect("json");
    assert_eq!(
        (
            &may["read"],
            &may["trigger"],
            &may["cancel"],
            &may["change"]
        ),
        (&true.into(), &true.into(), &true.into(), &false.into()),
        "{may}"
    );
    let reads_only = |may: Option<serde_json::Value>| {
        let may = may.expect("json");
        assert_eq!(
            (&may["read"], &may["trigger"]),
            (&true.into(), &false.into()),
            "{may}"
        );
    };
    reads_only(
        access(Some(ick.idp.token(&viewer, None).await), "hello")
            .await
            .1,
    );
    // The token's scopes are the ceiling, whatever the role.
    reads_only(
        access(Some(ick.idp.token(&narrow, None).await), "hello")
            .await
            .1,
    );
    // An outsider does not learn that the private project exists.
    let (status, _) = access(Some(ick.idp.token(&outsider, None).await), "hello").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Without a token: a public project is read, nothing more; a private
    // one needs a token.
    let (status, may) = access(None, "open").await;
    assert_eq!(status, StatusCode::OK);
    reads_only(may);
    let (status, _) = access(None, "hello").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Parses `svg` with Python's XML parser (not ours): its texts.
fn svg_texts(svg: &str) -> Vec<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\n\
             root = E.fromstring(sys.stdin.read())\n\
             assert root.tag == '{http://www.w3.org/2000/svg}svg', root.tag\n\
             print('\\n'.join(t.text or '' for t in root.iter('{http://www.w3.org/2000/svg}text')))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(svg.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(out.status.success(), "not SVG: {svg}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badge_shows_a_public_projects_last_build_and_changes_colour() {
    let (ick, web) = setup().await;
    let mut anyone = WebBrowser::new(&web);
    let badge = anyone.get("/badges/broken.svg").await;
    assert_eq!(badge.status, StatusCode::OK);
    assert_eq!(badge.headers["content-type"], "image/svg+xml");
    assert_eq!(svg_texts(&badge.body), ["broken", "no builds"]);
    // It fails...
    ick.icktool(&["trigger", "broken", "--follow"]);
    let badge = anyone.get("/badges/broken.svg").await;
    assert_eq!(svg_texts(&badge.body), ["broken", "failing"]);
    assert!(badge.body.contains("#cf222e"), "red: {}", badge.body);
    // ...then passes.
    ick.icktool(&["trigger", "broken", "--param", "outcome=pass", "--follow"])
        .ok();
    let badge = anyone.get("/badges/broken.svg").await;
    assert_eq!(svg_texts(&badge.body), ["broken", "passing"]);
    assert!(badge.body.contains("#2da44e"), "green: {}", badge.body);
    // A branch no build was of.
    let badge = anyone.get("/badges/broken.svg?branch=nowhere").await;
    assert_eq!(svg_texts(&badge.body), ["broken", "no builds"]);
    // A private project's badge and no project's look the same: 404.
    trigger(&ick, "hello");
    for path in [
        "/badges/hello.svg",
        "/badges/nosuch.svg",
        "/badges/hello.png",
    ] {
        assert_eq!(
            anyone.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_log_lines_appear_while_the_build_runs() {
    let (ick, web) = setup().await;
    let gate = ick.dir.path().join("gate");
    let param = format!("gate={}", common::s(&gate));
    let started: BuildSummary = ick
        .icktool(&["trigger", "slow", "--param", &param, "--output", "json"])
        .ok()
        .json();
    let chrome = Chrome::start().await;
    let page = format!("{}/builds/{}", web.url(), started.id);
    chrome
        .run("log_lines_appear_live", |browser| async move {
            browser.goto(&page).await.expect("open");
            // The first line, then (the page left alone) the second, once
            // the action goes on.
            wait_for_live_text(&browser, "A42", Duration::from_secs(60)).await;
            let text = browser
                .find(Locator::Id("log"))
                .await
                .expect("the log")
                .text()
                .await
                .expect("text");
            // (The build waits on the gate: nothing reloads the page yet.)
            assert!(!text.contains("B43"), "{text}");
            std::fs::write(&gate, "").expect("open the gate");
            // Each line once, and its colour, live: the action still runs
            // (on a second gate), so nothing has reloaded the page.
            let lines = wait_for_live_text(&browser, "B43", Duration::from_secs(60)).await;
            assert_eq!(lines.matches("A42").count(), 1, "{lines}");
            assert_eq!(lines.matches("B43").count(), 1, "{lines}");
            let green = browser
                .wait()
                .for_element(Locator::Css("#log .fg2"))
                .await
                .expect("a green span")
                .text()
                .await
                .unwrap_or_default();
            assert_eq!(green, "43");
            std::fs::write(gate.with_extension("2"), "").expect("open the second gate");
            // At the end the page shows the build as it ended.
            wait_for_status(&browser, "succeeded", Duration::from_secs(60), false).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_log_is_the_controllers_event_stream_passed_through() {
    let (ick, web) = setup().await;
    let open = trigger(&ick, "open");
    let hidden = trigger(&ick, "hello");
    let mut anyone = WebBrowser::new(&web);
    let events = anyone.get(&format!("/builds/{}/events", open.id)).await;
    assert_eq!(events.status, StatusCode::OK);
    assert!(
        events.headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    assert!(events.body.contains("event: chunk"), "{}", events.body);
    assert!(events.body.contains("event: end"), "{}", events.body);
    // A private build's stream: log in first, as for its page.
    let events = anyone.get(&format!("/builds/{}/events", hidden.id)).await;
    assert_eq!(events.status, StatusCode::SEE_OTHER, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_mail_and_the_audit_log_each_as_much_as_the_person_may_read() {
    let (ick, web) = setup().await;
    ick.idp.create_user("root", PASSWORD).await;
    ick.icktool(&["role", "grant", "user:root", "admin"]).ok();
    trigger(&ick, "hello");
    let worker = ick.workers[0].name.clone();

    let mut root = WebBrowser::new(&web);
    let page = root.log_in("/workers", "root", PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&worker), "{}", page.body);
    assert!(page.body.contains("online"), "{}", page.body);
    let page = root.get("/audit").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // Who made alice a developer of hello, and when.
    assert!(page.body.contains("user:alice"), "{}", page.body);
    assert!(page.body.contains("hello"), "{}", page.body);
    let page = root.get("/outbox").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let page = root.get("/outbox?status=failed").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("No mail failed"), "{}", page.body);

    // A developer is no admin: the whole audit log is not hers.
    let mut alice = WebBrowser::new(&web);
    let page = alice.log_in("/audit", "alice", PASSWORD).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    // Logged out, every one of these asks for a login first.
    let mut anyone = WebBrowser::new(&web);
    for path in ["/workers", "/outbox", "/audit"] {
        let page = anyone.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
    }
}

/// Opens `url` in the browser and, sent to the IDP's form, logs `user`
/// in there.
async fn browser_log_in(browser: &fantoccini::Client, url: &str, user: &str) {
    browser.goto(url).await.expect("open");
    browser
        .wait()
        .for_element(Locator::Css("input[name=username]"))
        .await
        .expect("the IDP's login form")
        .send_keys(user)
        .await
        .expect("type");
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("password field")
        .send_keys(PASSWORD)
        .await
        .expect("type");
    browser
        .find(Locator::Css(
            "form button[type=submit], form input[type=submit]",
        ))
        .await
        .expect("the login button")
        .click()
        .await
        .expect("log in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_a_developer_cancels_and_retries_and_others_see_no_buttons() {
    let (ick, web) = setup().await;
    // It fails (and icktool says so with its exit code).
    ick.icktool(&["trigger", "broken", "--follow"]);
    let list: BuildList = ick
        .icktool(&["build", "list", "--project", "broken", "--output", "json"])
        .ok()
        .json();
    let failed = list.builds[0].clone();
    assert_eq!(failed.status, ick_api::controller::BuildStatus::Failed);
    // One worker: the slow build (its gate never opens) holds it after.
    let gate = ick.dir.path().join("never");
    let param = format!("gate={}", common::s(&gate));
    let running: BuildSummary = ick
        .icktool(&["trigger", "slow", "--param", &param, "--output", "json"])
        .ok()
        .json();
    let chrome = Chrome::start().await;
    let base = web.url().to_string();
    let (running_id, failed_id) = (running.id.clone(), failed.id.clone());
    chrome
        .run("cancel_and_retry", |browser| async move {
            // Logged out, a public build has no buttons.
            browser
                .goto(&format!("{base}/builds/{running_id}"))
                .await
                .expect("open");
            wait_for_live_text(&browser, "A42", Duration::from_secs(60)).await;
            assert!(browser.find(Locator::Id("cancel")).await.is_err());
            // Bob, no member of it, neither.
            browser_log_in(
                &browser,
                &format!("{base}/login?back=/builds/{running_id}"),
                "bob",
            )
            .await;
            wait_for_live_text(&browser, "A42", Duration::from_secs(60)).await;
            assert!(browser.find(Locator::Id("cancel")).await.is_err());
            browser
                .find(Locator::Id("logout"))
                .await
                .expect("logout")
                .click()
                .await
                .expect("log out");
            // Alice, a developer there, cancels it.
            browser_log_in(
                &browser,
                &format!("{base}/login?back=/builds/{running_id}"),
                "alice",
            )
            .await;
            browser
                .wait()
                .for_element(Locator::Id("cancel"))
                .await
                .expect("her cancel button")
                .click()
                .await
                .expect("cancel");
            wait_for_status(&browser, "cancelled", Duration::from_secs(60), true).await;
            // A failed build: she retries what failed; it runs again.
            browser
                .goto(&format!("{base}/builds/{failed_id}"))
                .await
                .expect("open");
            browser
                .wait()
                .for_element(Locator::Id("retry"))
                .await
                .expect("her retry button")
                .click()
                .await
                .expect("retry");
            wait_for_status(&browser, "failed", Duration::from_secs(60), true).await;
        })
        .await;
    let again: ick_api::controller::BuildView = ick
        .icktool(&["build", "show", &failed.id, "--output", "json"])
        .ok()
        .json();
    assert_eq!(again.build.run, 2, "retried once");
    let cancelled: ick_api::controller::BuildView = ick
        .icktool(&["build", "show", &running.id, "--output", "json"])
        .ok()
        .json();
    assert_eq!(
        cancelled.build.status,
        ick_api::controller::BuildStatus::Cancelled
    );
}
