//! The library entry that `icktool up` uses: a worker-manager in this
//! process, configured in code, without HTTP, stopped by draining.

mod common;

use std::time::Duration;

use common::{Env, SOON, assert_succeeded};
use ick_api::Secret;
use ick_api::work::Stream;
use ick_worker_manager::Config;
use ick_worker_manager::config::{IdpConfig, OutputConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_manager_runs_in_process_and_stops_when_asked() {
    let env = Env::start().await;
    let creds = env
        .idp
        .create_client("in-process", &["work:run", "blobs:read", "blobs:write"]);
    let root = tempfile::tempdir().expect("tempdir");
    let config = Config {
        name: "in-process".into(),
        controller: env.controller.url().into(),
        artifact_store: env.store.url().into(),
        artifact_store_outage: Duration::from_secs(300),
        idp: IdpConfig {
            token_url: env.idp.token_url(),
            client_id: creds.id.clone(),
            client_secret: Some(Secret::new(creds.secret.clone())),
            client_secret_file: None,
        },
        labels: vec![],
        slots: 2,
        workspace_root: root.path().join("workspaces"),
        systree_root: None,
        plugin_dir: None,
        sandbox_user: "nobody".into(),
        sandbox_group: "nogroup".into(),
        http: None,
        metrics: None,
        claim_wait: Duration::from_secs(30),
        heartbeat_interval: Duration::from_secs(2),
        kill_grace: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(30),
        output: OutputConfig::default(),
    };
    let worker = ick_worker_manager::start(config, None)
        .await
        .expect("starts");
    assert_eq!(worker.local_addr(), None);
    env.project("inside", "  - shell: echo from the same process\n")
        .await;
    let view = env.run("inside", SOON).await;
    assert_succeeded(&view);
    assert_eq!(
        env.text(&view.build.id, Stream::Stdout).await,
        "from the same process\n"
    );
    // Stopping ends the long poll at once: no action runs.
    tokio::time::timeout(Duration::from_secs(10), worker.stop())
        .await
        .expect("stops promptly");
}
