//! What a command runs against: the store, the session's flags, and a progress reporter.

use std::path::PathBuf;
use std::sync::Arc;

use crate::ccs::{Cluster, Store, StoreLock};

use super::CommandError;
use crate::progress::{NoProgress, Progress};

/// Everything `apply` may use. The library never prints: long work reports through
/// `progress`, results come back as a [`super::Reply`].
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    /// Output is JSON: commands may skip work that only feeds human text.
    pub json: bool,
    /// `--redis-server`: overrides the CCS's `redis_server` and PATH.
    pub redis_server: Option<PathBuf>,
    pub progress: Arc<dyn Progress>,
    /// Tripped on Ctrl-C; `create db` checks it and rolls back.
    pub cancel: crate::db::Cancel,
    /// The connections `status` keeps open to the shards for the session's next one.
    pub connections: crate::server::KeptConnections,
}

impl Context {
    pub fn new(store: Store) -> Context {
        Context {
            store,
            json: false,
            redis_server: None,
            progress: Arc::new(NoProgress),
            cancel: Default::default(),
            connections: Default::default(),
        }
    }

    /// The stored cluster, or an error telling how to make one (for read-only commands).
    pub fn cluster(&self) -> Result<Cluster, CommandError> {
        self.store.load()?.ok_or_else(CommandError::no_cluster)
    }

    /// Locks the store and loads the cluster, which must exist.
    pub fn lock_cluster(&self) -> Result<(StoreLock, Cluster), CommandError> {
        let lock = self.store.lock()?;
        let cluster = lock.load()?.ok_or_else(CommandError::no_cluster)?;
        Ok((lock, cluster))
    }

    /// Locks the store and loads the cluster, making the default local one (not yet
    /// saved) when the home has none. The `Option` is the line to show the operator when
    /// it was made; push it into the reply.
    pub fn lock_or_default_cluster(
        &self,
    ) -> Result<(StoreLock, Cluster, Option<String>), CommandError> {
        let lock = self.store.lock()?;
        let (cluster, note) = lock.cluster_or_default()?;
        Ok((lock, cluster, note))
    }
}
