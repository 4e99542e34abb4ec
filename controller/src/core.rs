//! What the controller's domain code shares, whichever front calls it:
//! the HTTP routes wrap it (`routes::AppState`), and the tasks that run
//! beside them (the reaper, the mail sender) hold it. Cheap to clone.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::access::cache::AccessCache;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Counters;
use crate::store::{self, Store};
use crate::work::claims::BuildInfos;
use crate::work::workers::WorkerRegistry;

#[derive(Clone)]
pub(crate) struct Core {
    pub store: Store,
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    /// Who may do what, read from the database and kept.
    pub access: Arc<AccessCache>,
    pub workers: Arc<WorkerRegistry>,
    pub build_infos: Arc<BuildInfos>,
    /// What `/metrics` counts as it happens.
    pub counters: Counters,
    /// Cancelled when the controller stops: long polls and log streams end.
    pub cancel: CancellationToken,
    /// Wakes the mail sender when a build's end wrote a notification.
    pub mail_wake: Arc<Notify>,
    /// When this controller started (ms since the epoch): leases that
    /// lapsed while it was down get time for their workers to come back.
    pub started_ms: i64,
}

impl Core {
    /// The core of a controller that starts now.
    pub fn new(store: Store, config: Config, hub: Arc<Hub>, cancel: CancellationToken) -> Core {
        let access = Arc::new(AccessCache::new(
            store.clone(),
            hub.clone(),
            config.admins.clone(),
        ));
        Core {
            store,
            config: Arc::new(config),
            hub,
            access,
            workers: Arc::new(WorkerRegistry::default()),
            build_infos: Arc::new(BuildInfos::default()),
            counters: Counters::default(),
            cancel,
            mail_wake: Arc::new(Notify::new()),
            started_ms: store::now_ms(),
        }
    }
}
