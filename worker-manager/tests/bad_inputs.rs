//! What cannot run ends its node with a clear message and changes nothing
//! else; a worker that cannot get a token gets no work and says why.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{Env, SOON, assert_succeeded, eventually};
use ick_api::blobs::RefPrefix;
use ick_api::controller::{BuildStatus, NodeStatus};
use ick_api::work::Outcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_end_the_node_with_a_clear_message_and_change_nothing() {
    let env = Env::start().await;
    let worker = env
        .worker()
        .slots(2)
        .plugin("broken", "#!/nonexistent/interpreter\n")
        .start();
    eventually(SOON, "the worker to offer its plugin", || async {
        env.workers()
            .await
            .into_iter()
            .find(|w| w.name == worker.name && w.kinds.contains(&"broken".to_string()))
    })
    .await;
    let blobs = env.blobs().await;
    let not_tar = blobs
        .upload_bytes(Bytes::from_static(b"this is not a tar archive"))
        .await
        .expect("upload");
    let zeros = format!("sha256:{}", "0".repeat(64));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "archive-escape",
            "archive: {path: ../..}".into(),
            "must be a relative path inside the workspace",
        ),
        (
            "archive-missing-path",
            "archive: {path: nothing-here}".into(),
            "does not exist in the workspace",
        ),
        (
            "populate-missing-ref",
            "populate: {ref: no/such/ref}".into(),
            "ref no/such/ref does not exist in the artifact store",
        ),
        (
            "populate-missing-blob",
            format!("populate: {{digest: \"{zeros}\"}}"),
            "does not exist in the artifact store",
        ),
        (
            "populate-bad-digest",
            "populate: {digest: \"md5:abc\"}".into(),
            "unsupported digest algorithm",
        ),
        (
            "populate-not-tar",
            format!("populate: {{digest: \"{}\"}}", not_tar.digest),
            "(is it a tar archive?)",
        ),
        (
            "container-without-systree",
            "{shell: 'true', where: container}".into(),
            "needs a system tree",
        ),
        ("git-without-url", "git: {}".into(), "git needs a url"),
        (
            "git-outside",
            "git: {url: /tmp/x, dir: /etc}".into(),
            "must be a relative path inside the workspace",
        ),
        ("plugin-broken", "broken: {}".into(), "cannot run"),
    ];
    let mut names = Vec::new();
    for (name, action, _) in &cases {
        let action = if action.starts_with('{') {
            action.clone()
        } else {
            format!("{{{action}}}")
        };
        env.admin
            .pipeline(
                name,
                &format!("actions: [{action}, {{shell: 'echo never'}}]"),
            )
            .await;
        names.push(*name);
    }
    env.admin
        .project("bad", &format!("pipelines: [{}]", names.join(", ")))
        .await;
    let view = env.run("bad", SOON).await;
    assert_eq!(view.build.status, BuildStatus::Failed);
    for (name, _, expected) in &cases {
        let nodes = view.pipeline(name);
        let node = nodes[0];
        assert_eq!(node.status, NodeStatus::Failed, "{name}: {node:#?}");
        assert_eq!(node.outcome, Some(Outcome::Error), "{name}: {node:#?}");
        let message = node.message.clone().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{name}: {message:?} should say {expected:?}"
        );
        assert_eq!(nodes[1].status, NodeStatus::Skipped, "{name}");
    }
    // The message is in the log too.
    let log: String = env
        .log(&view.build.id)
        .await
        .iter()
        .map(|c| c.data.as_str())
        .collect();
    assert!(log.contains("ick: ref no/such/ref does not exist"), "{log}");
    assert!(!log.contains("never"));
    // Nothing changed: no ref, no blob but the one this test uploaded, no
    // workspace left, and the worker runs the next build.
    let refs = blobs
        .list_refs(&"".parse::<RefPrefix>().expect("empty prefix"))
        .await
        .expect("refs");
    assert!(refs.is_empty(), "{refs:?}");
    assert_eq!(env.store.stored_blobs(), vec![not_tar.digest.hex()]);
    eventually(SOON, "the workspaces to go", || async {
        worker.workspaces().is_empty().then_some(())
    })
    .await;
    env.project("fine", "  - shell: echo fine\n").await;
    let view = env.run("fine", SOON).await;
    assert_succeeded(&view);
    assert_eq!(view.nodes[0].outputs, BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_wrong_secret_gets_no_work_and_says_why() {
    let env = Env::start().await;
    let worker = env.worker().secret("not-the-secret-at-all").start();
    env.project("waits", "  - shell: 'true'\n").await;
    let build = env.admin.trigger("waits").await;
    let log = eventually(SOON, "the worker to say why it gets no work", || async {
        let log = worker.log();
        log.contains("refused the worker's credentials")
            .then_some(log)
    })
    .await;
    assert!(log.contains("invalid_client"), "{log}");
    assert!(
        log.contains(&worker.credentials.id),
        "the log names the client: {log}"
    );
    assert!(
        !log.contains("not-the-secret-at-all"),
        "the secret is not logged"
    );
    let view = env.admin.build(&build.id).await;
    assert_eq!(view.build.status, BuildStatus::Queued);
    assert!(
        env.workers().await.iter().all(|w| w.name != worker.name),
        "it never reached the controller"
    );
    assert_eq!(readyz(&worker.process.url).await, 503, "it is not ready");
}

async fn readyz(base: &str) -> u16 {
    reqwest::get(format!("{base}/readyz"))
        .await
        .expect("GET /readyz")
        .status()
        .as_u16()
}

/// Ready as soon as the controller takes it, not after a first long poll
/// (claim_wait is 30 s in the example config).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_ready_as_soon_as_the_controller_takes_it() {
    let env = Env::start().await;
    let started = std::time::Instant::now();
    let worker = env.worker().start();
    eventually(SOON, "the worker to be ready", || async {
        (readyz(&worker.process.url).await == 200).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "ready after {:?}",
        started.elapsed()
    );
}

/// A secret inline in a config file others may read (this one is 0644) is
/// warned about by setting, never by value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_secret_in_a_readable_config_is_warned_about() {
    let env = Env::start().await;
    let worker = env
        .worker()
        .edit(|c| {
            c["idp"]["client_secret"] = "inline-secret-value".into();
            c["idp"]
                .as_mapping_mut()
                .expect("idp")
                .remove("client_secret_file");
        })
        .start();
    let log = worker.log();
    assert!(
        log.contains("the config holds secrets and others may read it")
            && log.contains("idp.client_secret"),
        "{log}"
    );
    assert!(
        !log.contains("inline-secret-value"),
        "the secret is not logged"
    );
}
