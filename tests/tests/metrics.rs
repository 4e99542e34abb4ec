//! `/metrics` of the controller, the IDP and the artifact store, through
//! the real binaries: only `metrics:read` reads it, the Prometheus
//! project's own parser reads what it answers, and the request counts move
//! as requests are made.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Ick;
use reqwest::StatusCode;
use serde_json::Value;

/// Parses OpenMetrics text with `prometheus_client` (Python), answering
/// each family as {name, type, samples: [[name, labels, value]]}.
fn parse(text: &str) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type,
                "samples": [[s.name, s.labels, s.value] for s in f.samples]})
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts (deploy/test.sh installs prometheus-client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "the parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

async fn scrape(base: &str, token: &str) -> Vec<Value> {
    let answer = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), StatusCode::OK);
    let kind = answer.headers()["content-type"].to_str().expect("ascii");
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    parse(&answer.text().await.expect("text"))
}

/// The value of the `ick_http_requests` sample for `route`, GET, `status`.
fn requests(families: &[Value], route: &str, status: &str) -> f64 {
    let family = families
        .iter()
        .find(|f| f["name"] == "ick_http_requests")
        .unwrap_or_else(|| panic!("no ick_http_requests: {families:?}"));
    assert_eq!(family["type"], "counter");
    family["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| {
            s[0] == "ick_http_requests_total"
                && s[1]["route"] == route
                && s[1]["method"] == "GET"
                && s[1]["status"] == status
        })
        .map_or(0.0, |s| s[2].as_f64().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_counts_its_requests_for_metrics_read_only() {
    let ick = Ick::start(0);
    let admin = ick.idp.admin_token().await;
    let reader = ick
        .idp
        .create_client("reader", &["projects:read builds:read"]);
    let reader = ick.idp.token(&reader, None).await;
    let http = reqwest::Client::new();
    for base in [ick.controller.url(), ick.idp.url(), ick.store.url()] {
        // Only metrics:read reads them.
        let none = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("answers");
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{base}");
        let other = http
            .get(format!("{base}/metrics"))
            .bearer_auth(&reader)
            .send()
            .await
            .expect("answers");
        assert_eq!(other.status(), StatusCode::FORBIDDEN, "{base}");

        let before = scrape(base, &admin).await;
        let ready = requests(&before, "/readyz", "200");
        for _ in 0..3 {
            let ok = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .expect("answers");
            assert_eq!(ok.status(), StatusCode::OK);
        }
        let nowhere = http
            .get(format!("{base}/no/such/{}", uuid::Uuid::new_v4()))
            .send()
            .await
            .expect("answers");
        assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
        let after = scrape(base, &admin).await;
        assert_eq!(requests(&after, "/readyz", "200"), ready + 3.0, "{base}");
        // A path nobody serves has no series of its own.
        assert!(
            requests(&after, "unmatched", "404") >= 1.0,
            "{base}: {after:?}"
        );
        let text = serde_json::to_string(&after).expect("json");
        assert!(!text.contains("/no/such/"), "{base}: {text}");
        let latency = after
            .iter()
            .find(|f| f["name"] == "ick_http_request_duration_seconds")
            .expect("latency");
        assert_eq!(latency["type"], "histogram");
        let count = latency["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .find(|s| {
                s[0] == "ick_http_request_duration_seconds_count" && s[1]["route"] == "/readyz"
            })
            .map(|s| s[2].as_f64().expect("a number"))
            .expect("a count for /readyz");
        assert!(count >= 3.0, "{base}: {count}");
    }
    // The controller's routes are counted by pattern, not by path.
    ick.icktool(&["project", "list"]).ok();
    let families = scrape(ick.controller.url(), &admin).await;
    assert!(
        requests(&families, "/projects", "200") >= 1.0,
        "{families:?}"
    );
}

/// The gauge `name`'s value for the sample whose labels hold `labels`
/// (0 when there is none: a family with no series is not written).
fn gauge(families: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(families, name, "gauge", name, labels)
}

/// The value of sample `sample` of family `name` (of type `kind`) whose
/// labels hold `labels`; 0 when there is none.
fn sample(
    families: &[Value],
    name: &str,
    kind: &str,
    sample: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let Some(family) = families.iter().find(|f| f["name"] == name) else {
        return 0.0;
    };
    assert_eq!(family["type"], kind, "{name}");
    family["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| s[0] == sample && labels.iter().all(|(k, v)| s[1][*k] == *v))
        .map_or(0.0, |s| s[2].as_f64().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_counts_builds_actions_and_workers_as_they_change() {
    let mut ick = Ick::start(0);
    let admin = ick.idp.admin_token().await;
    let file = ick.file(
        "p.yaml",
        "pipelines:\n  - pipeline: p\n    actions: [{shell: 'echo hello'}, {shell: 'echo hello'}]\n\
         projects:\n  - project: hello\n    pipelines: [p]\n",
    );
    ick.icktool(&["apply", "-f", common::s(&file)]).ok();
    let before = scrape(ick.controller.url(), &admin).await;
    assert_eq!(gauge(&before, "ick_builds", &[("project", "hello")]), 0.0);
    assert_eq!(gauge(&before, "ick_nodes_ready", &[]), 0.0);
    // No worker: the builds wait; the first one's first action is ready,
    // the second build is held by the project's concurrency (1).
    for _ in 0..2 {
        ick.icktool(&["trigger", "hello"]).ok();
    }
    let queued = scrape(ick.controller.url(), &admin).await;
    let waiting: f64 = ["queued", "running"]
        .iter()
        .map(|status| {
            gauge(
                &queued,
                "ick_builds",
                &[("project", "hello"), ("status", status)],
            )
        })
        .sum();
    assert_eq!(waiting, 2.0, "{queued:?}");
    assert_eq!(gauge(&queued, "ick_nodes_ready", &[]), 1.0);
    assert_eq!(gauge(&queued, "ick_nodes_running", &[]), 0.0);
    // What each queued action waits for: the first build's first action a
    // worker; both builds' second actions their first; the second build's
    // first action the project's concurrency.
    for (reason, n) in [("worker", 1.0), ("needs", 2.0), ("admission", 1.0)] {
        assert_eq!(
            gauge(&queued, "ick_nodes_queued", &[("reason", reason)]),
            n,
            "{reason}: {queued:?}"
        );
    }
    let hello = [("project", "hello")];
    let counter = |families: &[Value], name: &str, labels: &[(&str, &str)]| {
        sample(families, name, "counter", &format!("{name}_total"), labels)
    };
    assert_eq!(counter(&queued, "ick_builds_triggered", &hello), 2.0);
    // A worker runs them all.
    ick.add_worker();
    ick.icktool(&["trigger", "hello", "--follow"]).ok();
    let ran = scrape(ick.controller.url(), &admin).await;
    assert!(
        gauge(
            &ran,
            "ick_builds",
            &[("project", "hello"), ("status", "succeeded")]
        ) >= 1.0,
        "{ran:?}"
    );
    assert_eq!(gauge(&ran, "ick_workers", &[("state", "online")]), 1.0);
    assert_eq!(
        gauge(&ran, "ick_nodes_queued", &[("reason", "worker")]),
        0.0
    );
    assert_eq!(counter(&ran, "ick_builds_triggered", &hello), 3.0);
    assert_eq!(
        counter(
            &ran,
            "ick_builds_ended",
            &[("project", "hello"), ("status", "succeeded")]
        ),
        3.0,
        "{ran:?}"
    );
    let histogram_count = |name: &str, labels: &[(&str, &str)]| {
        sample(&ran, name, "histogram", &format!("{name}_count"), labels)
    };
    assert_eq!(histogram_count("ick_build_duration_seconds", &hello), 3.0);
    assert_eq!(histogram_count("ick_build_queue_wait_seconds", &hello), 3.0);
    assert_eq!(histogram_count("ick_claim_wait_seconds", &[]), 6.0);
    // Six actions said "hello\n" at least.
    let output = counter(&ran, "ick_output_bytes", &[]);
    assert!(output >= 36.0, "{output}");

    // The worker ran all six, and says so without a token.
    let worker = parse(
        &reqwest::get(ick.workers[0].metrics_url())
            .await
            .expect("the worker answers")
            .text()
            .await
            .expect("text"),
    );
    let shell_succeeded = [("kind", "shell"), ("outcome", "succeeded")];
    assert_eq!(
        counter(&worker, "ick_actions_ended", &shell_succeeded),
        6.0,
        "{worker:?}"
    );
    assert_eq!(
        sample(
            &worker,
            "ick_action_duration_seconds",
            "histogram",
            "ick_action_duration_seconds_count",
            &[("kind", "shell")]
        ),
        6.0
    );
    assert_eq!(gauge(&worker, "ick_actions_running", &[]), 0.0);
    // Everything was delivered: nothing is left buffered.
    assert_eq!(gauge(&worker, "ick_output_buffered_bytes", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idp_and_the_store_count_what_they_do() {
    let ick = Ick::start(0);
    let admin = ick.idp.admin_token().await;
    let counter = |families: &[Value], name: &str, labels: &[(&str, &str)]| {
        sample(families, name, "counter", &format!("{name}_total"), labels)
    };

    // The IDP: tokens by grant, failures by what was guessed.
    let before = scrape(ick.idp.url(), &admin).await;
    let granted = [("grant", "client_credentials")];
    let client = [("kind", "client")];
    let reader = ick.idp.create_client("reader", &["blobs:read blobs:write"]);
    let token = ick.idp.token(&reader, None).await;
    let refused = reqwest::Client::new()
        .post(ick.idp.token_url())
        .basic_auth(&reader.id, Some("not the secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let after = scrape(ick.idp.url(), &admin).await;
    assert_eq!(
        counter(&after, "ick_tokens_issued", &granted),
        counter(&before, "ick_tokens_issued", &granted) + 1.0,
        "{after:?}"
    );
    assert_eq!(
        counter(&after, "ick_auth_failures", &client),
        counter(&before, "ick_auth_failures", &client) + 1.0,
        "{after:?}"
    );

    // The store: what goes in and out, and what it holds.
    let store = ick.store.url();
    let before = scrape(store, &admin).await;
    assert_eq!(gauge(&before, "ick_blobs", &[]), 0.0);
    let blobs = ick.store.client(&token);
    let body = bytes::Bytes::from(vec![7u8; 10_000]);
    let info = blobs.upload_bytes(body.clone()).await.expect("upload");
    // The same bytes again: received, but nothing new stored.
    blobs.upload_bytes(body).await.expect("upload again");
    let mut read = Vec::new();
    blobs
        .download(&info.digest, &mut read)
        .await
        .expect("download");
    let session = reqwest::Client::new()
        .post(format!("{store}/uploads"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answers");
    assert!(session.status().is_success(), "{}", session.status());
    let after = scrape(store, &admin).await;
    assert_eq!(gauge(&after, "ick_blobs", &[]), 1.0, "{after:?}");
    assert_eq!(gauge(&after, "ick_blob_storage_bytes", &[]), 10_000.0);
    assert_eq!(gauge(&after, "ick_upload_sessions", &[]), 1.0);
    assert_eq!(counter(&after, "ick_blob_bytes_in", &[]), 20_000.0);
    assert_eq!(counter(&after, "ick_blob_bytes_out", &[]), 10_000.0);
    // A delete takes it off.
    let deleter = ick.idp.create_client("deleter", &["blobs:delete"]);
    let deleter = ick.idp.token(&deleter, None).await;
    assert!(
        ick.store
            .client(&deleter)
            .delete(&info.digest)
            .await
            .expect("delete")
    );
    let gone = scrape(store, &admin).await;
    assert_eq!(gauge(&gone, "ick_blobs", &[]), 0.0, "{gone:?}");
    assert_eq!(gauge(&gone, "ick_blob_storage_bytes", &[]), 0.0);
}

/// A Prometheus (Debian's, as `deploy/test.sh` installs it), killed when
/// dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_with_the_sample_config() {
    let ick = Ick::start(1);
    let client = ick.idp.create_client("prometheus", &["metrics:read"]);
    let secret_file = ick.file("prometheus-secret", &client.secret);

    // The sample config, pointed at this suite, scraping every second.
    let sample =
        std::fs::read_to_string(ick_tests::repo_root().join("deploy/prometheus/prometheus.yml"))
            .expect("deploy/prometheus/prometheus.yml");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&sample).expect("yaml");
    config["global"]["scrape_interval"] = "1s".into();
    let worker = ick.workers[0].metrics_url();
    let worker = worker
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let host = |url: &str| url.trim_start_matches("http://").to_string();
    let targets = [
        ("ick-controller", host(ick.controller.url())),
        ("ick-idp", host(ick.idp.url())),
        ("ick-artifact-store", host(ick.store.url())),
        ("ick-worker-manager", worker),
    ];
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    assert_eq!(jobs.len(), targets.len(), "a job per service");
    for job in jobs.iter_mut() {
        let name = job["job_name"].as_str().expect("job_name").to_string();
        let (_, target) = targets
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("an unexpected job {name}"));
        job["static_configs"][0]["targets"][0] = target.as_str().into();
        if job.get("oauth2").is_some() {
            job["oauth2"]["client_id"] = client.id.as_str().into();
            job["oauth2"]["client_secret_file"] = common::s(&secret_file).into();
            job["oauth2"]["token_url"] = ick.idp.token_url().into();
        }
    }
    let config_file = ick.file(
        "prometheus.yml",
        &serde_yaml::to_string(&config).expect("yaml"),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = std::fs::File::create(ick.dir.path().join("prometheus.log")).expect("log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", common::s(&config_file)))
        .arg(format!(
            "--storage.tsdb.path={}",
            common::s(&ick.dir.path().join("tsdb"))
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus starts (deploy/test.sh installs Debian's prometheus)");
    let prometheus = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };

    // Every target up, scraped with the token Prometheus got itself.
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let health = loop {
        let answer = http
            .get(format!("{}/api/v1/targets", prometheus.url))
            .send()
            .await;
        if let Ok(answer) = answer
            && let Ok(body) = answer.json::<Value>().await
        {
            let health: Vec<(String, String, String)> = body["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    (
                        t["labels"]["job"].as_str().unwrap_or("").to_string(),
                        t["health"].as_str().unwrap_or("").to_string(),
                        t["lastError"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            if health.len() == targets.len() && health.iter().all(|(_, h, _)| h == "up") {
                break health;
            }
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(ick.dir.path().join("prometheus.log"))
                    .unwrap_or_default();
                panic!("not every target is up: {health:?}\n{log}");
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(health.len(), 4, "{health:?}");
    // And what they serve is there to query.
    let answer: Value = http
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", "ick_workers{state=\"online\"}")])
        .send()
        .await
        .expect("a query")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["status"], "success", "{answer}");
    let value = &answer["data"]["result"][0]["value"][1];
    assert_eq!(value, "1", "{answer}");
}
