//! The bindings, held in memory so that a decision costs a few hash
//! lookups, not a query.
//!
//! They are read again when they may have changed: after a change here
//! (members, roles, a project applied or deleted) and, on Postgres, when
//! another controller says it changed them (the hub's `NOTIFY`), or when
//! the connection that hears them was lost (what was said meanwhile is
//! not known). Each of those bumps the hub's access epoch; the cache holds
//! the epoch it was read at, and reads again when it differs. Besides, it
//! is read again at least every [`MAX_AGE`], in case a notification was
//! lost while the connection stayed up.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ick_api::controller::Member;

use super::decide::Bindings;
use crate::error::Result;
use crate::hub::Hub;
use crate::store::{self, Store};

/// The longest bindings are used without reading them again.
pub const MAX_AGE: Duration = Duration::from_secs(30);

struct Loaded {
    /// The hub's access epoch when the read began.
    epoch: u64,
    at: Instant,
    bindings: Arc<Bindings>,
}

/// The cache.
pub struct AccessCache {
    store: Store,
    hub: Arc<Hub>,
    config_admins: Vec<Member>,
    current: RwLock<Option<Loaded>>,
    /// One read at a time; the others wait for it.
    reading: tokio::sync::Mutex<()>,
}

impl AccessCache {
    /// A cache that reads `store`; `config_admins` are admins whatever
    /// the database says.
    pub fn new(store: Store, hub: Arc<Hub>, config_admins: Vec<Member>) -> AccessCache {
        AccessCache {
            store,
            hub,
            config_admins,
            current: RwLock::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The config's admins.
    pub fn config_admins(&self) -> &[Member] {
        &self.config_admins
    }

    fn fresh(&self) -> Option<Arc<Bindings>> {
        let epoch = self.hub.access_epoch();
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|l| l.epoch == epoch && l.at.elapsed() < MAX_AGE)
            .map(|l| l.bindings.clone())
    }

    /// The bindings, read again first if they may have changed.
    pub async fn bindings(&self) -> Result<Arc<Bindings>> {
        if let Some(b) = self.fresh() {
            return Ok(b);
        }
        let _reading = self.reading.lock().await;
        if let Some(b) = self.fresh() {
            return Ok(b);
        }
        // The epoch before the read: a change committed while it runs
        // bumps it, so the next call reads again.
        let epoch = self.hub.access_epoch();
        let at = Instant::now();
        let stored = {
            let mut conn = self.store.conn().await?;
            store::roles::load(&mut conn).await?
        };
        let bindings = Arc::new(Bindings::new(
            &self.config_admins,
            stored.global,
            stored.projects,
            stored.members,
        ));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Loaded {
            epoch,
            at,
            bindings: bindings.clone(),
        });
        tracing::debug!(epoch, "access bindings read");
        Ok(bindings)
    }

    /// Bindings changed here (committed): read them again, and tell the
    /// other controllers.
    pub fn changed(&self) {
        self.hub.access_changed();
    }
}
