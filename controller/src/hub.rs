//! Wake-ups. A claim waiting for work and a log stream following a build
//! wait on the hub; whatever makes work ready or changes a build tells it,
//! after its transaction committed. On Postgres the hub also tells the
//! other controllers sharing the database (`NOTIFY`, coalesced off the hot
//! path) and hears them (`LISTEN`). Waiters also look again now and then,
//! so a missed wake-up only delays.
//!
//! A change of who may do what (members, roles, projects) bumps the access
//! epoch, here and on the other controllers; the access cache reads the
//! bindings again when the epoch moved.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgListener};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

const WORK_CHANNEL: &str = "ick_work";
const BUILD_CHANNEL: &str = "ick_build";
const ACCESS_CHANNEL: &str = "ick_access";
/// How long the notifier gathers events before it notifies.
const COALESCE: Duration = Duration::from_millis(5);
/// How long a starting controller waits to listen before it serves.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// A build id that means "every build": sent after a lost connection.
pub const ALL_BUILDS: &str = "*";

enum Signal {
    Work,
    Build(Arc<str>),
    Access,
}

/// Where waiters wait.
pub struct Hub {
    instance: String,
    work: watch::Sender<u64>,
    builds: broadcast::Sender<Arc<str>>,
    access: AtomicU64,
    remote: Option<mpsc::UnboundedSender<Signal>>,
}

impl Hub {
    /// A hub for one process; with `remote`, also for other controllers
    /// (the receiver goes to [`notifier`]).
    fn new(remote: bool) -> (Arc<Hub>, Option<mpsc::UnboundedReceiver<Signal>>) {
        let (tx, rx) = if remote {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let hub = Hub {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            work: watch::channel(0).0,
            builds: broadcast::channel(4096).0,
            access: AtomicU64::new(0),
            remote: tx,
        };
        (Arc::new(hub), rx)
    }

    /// Work may be ready: wake waiting claims.
    pub fn work_available(&self) {
        self.work.send_modify(|v| *v = v.wrapping_add(1));
        if let Some(remote) = &self.remote {
            let _ = remote.send(Signal::Work);
        }
    }

    /// A build changed (a node's state, new output): wake its followers.
    pub fn build_changed(&self, id: &str) {
        let id: Arc<str> = id.into();
        let _ = self.builds.send(id.clone());
        if let Some(remote) = &self.remote {
            let _ = remote.send(Signal::Build(id));
        }
    }

    /// A build changed in a way only followers on this controller need to
    /// hear at once (those elsewhere look again within a second).
    pub fn build_changed_here(&self, id: &str) {
        let _ = self.builds.send(id.into());
    }

    /// Who may do what changed (committed): bindings are read again, here
    /// and on the other controllers.
    pub fn access_changed(&self) {
        self.access.fetch_add(1, Ordering::SeqCst);
        if let Some(remote) = &self.remote {
            let _ = remote.send(Signal::Access);
        }
    }

    /// Moves on every change of who may do what, here or elsewhere.
    pub fn access_epoch(&self) -> u64 {
        self.access.load(Ordering::SeqCst)
    }

    /// For a claim's wait.
    pub fn work_receiver(&self) -> watch::Receiver<u64> {
        self.work.subscribe()
    }

    /// For a log follower's wait.
    pub fn build_receiver(&self) -> broadcast::Receiver<Arc<str>> {
        self.builds.subscribe()
    }
}

/// Starts the hub; on Postgres with the tasks that notify and listen,
/// which stop when `cancel` is. Returns once it listens (or has tried for
/// a while), so that a controller that says it is up hears the others.
pub async fn start(
    postgres_url: Option<&str>,
    cancel: &CancellationToken,
) -> (Arc<Hub>, Vec<tokio::task::JoinHandle<()>>) {
    let (hub, rx) = Hub::new(postgres_url.is_some());
    let mut tasks = Vec::new();
    if let (Some(url), Some(rx)) = (postgres_url, rx) {
        tasks.push(tokio::spawn(notifier(
            url.to_string(),
            hub.instance.clone(),
            rx,
            cancel.clone(),
        )));
        let (listening, heard) = tokio::sync::oneshot::channel();
        tasks.push(tokio::spawn(listener(
            url.to_string(),
            hub.clone(),
            cancel.clone(),
            listening,
        )));
        if tokio::time::timeout(LISTEN_WAIT, heard).await.is_err() {
            tracing::warn!("not yet listening for other controllers; going on, still trying");
        }
    }
    (hub, tasks)
}

/// Sends what happened here to the other controllers, many events per
/// `NOTIFY`, on its own connection so that no transaction waits for it.
async fn notifier(
    url: String,
    instance: String,
    mut rx: mpsc::UnboundedReceiver<Signal>,
    cancel: CancellationToken,
) {
    let mut conn: Option<PgConnection> = None;
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            signal = rx.recv() => match signal {
                Some(signal) => signal,
                None => return,
            },
        };
        let mut work = false;
        let mut access = false;
        let mut builds = BTreeSet::new();
        let mut take = |signal: Signal| match signal {
            Signal::Work => work = true,
            Signal::Access => access = true,
            Signal::Build(id) => {
                builds.insert(id);
            }
        };
        take(first);
        // Gather what happens in the next few milliseconds into one NOTIFY:
        // under load that bounds the notifications the database sends.
        tokio::time::sleep(COALESCE).await;
        while let Ok(signal) = rx.try_recv() {
            take(signal);
        }
        let mut messages = Vec::new();
        if work {
            messages.push((WORK_CHANNEL, instance.clone()));
        }
        if access {
            messages.push((ACCESS_CHANNEL, instance.clone()));
        }
        let mut payload = format!("{instance}:");
        for id in builds {
            if payload.len() + id.len() > 7000 {
                messages.push((
                    BUILD_CHANNEL,
                    std::mem::replace(&mut payload, format!("{instance}:")),
                ));
            }
            if !payload.ends_with(':') {
                payload.push(',');
            }
            payload.push_str(&id);
        }
        if !payload.ends_with(':') {
            messages.push((BUILD_CHANNEL, payload));
        }
        for (channel, payload) in messages {
            if conn.is_none() {
                match PgConnection::connect(&url).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot connect to notify other controllers");
                        break;
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(&payload)
                    .execute(&mut *c)
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "cannot notify other controllers");
                    conn = None;
                }
            }
        }
    }
}

/// Hears the other controllers and wakes the waiters here.
async fn listener(
    url: String,
    hub: Arc<Hub>,
    cancel: CancellationToken,
    listening: tokio::sync::oneshot::Sender<()>,
) {
    let mut listening = Some(listening);
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other controllers; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = listener
            .listen_all([WORK_CHANNEL, BUILD_CHANNEL, ACCESS_CHANNEL])
            .await
        {
            tracing::warn!(error = %e, "cannot listen for other controllers; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        match listening.take() {
            Some(tx) => {
                let _ = tx.send(());
            }
            // Listening again after a lost connection: changes of access
            // made meanwhile were not heard.
            None => {
                hub.access.fetch_add(1, Ordering::SeqCst);
            }
        }
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = listener.try_recv() => next,
            };
            match next {
                Ok(Some(n)) => hear(&hub, n.channel(), n.payload()),
                Ok(None) => {
                    // Reconnected: what was sent meanwhile is lost, so look again.
                    hub.work.send_modify(|v| *v = v.wrapping_add(1));
                    hub.access.fetch_add(1, Ordering::SeqCst);
                    let _ = hub.builds.send(ALL_BUILDS.into());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the connection listening for other controllers");
                    break;
                }
            }
        }
    }
}

fn hear(hub: &Hub, channel: &str, payload: &str) {
    let (from, rest) = payload.split_once(':').unwrap_or((payload, ""));
    if from == hub.instance {
        return;
    }
    match channel {
        WORK_CHANNEL => hub.work.send_modify(|v| *v = v.wrapping_add(1)),
        ACCESS_CHANNEL => {
            hub.access.fetch_add(1, Ordering::SeqCst);
        }
        BUILD_CHANNEL => {
            for id in rest.split(',').filter(|s| !s.is_empty()) {
                let _ = hub.builds.send(id.into());
            }
        }
        _ => {}
    }
}
