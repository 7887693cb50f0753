//! The cluster configuration store (CCS): what the cluster should be.

pub mod backups;
#[cfg(test)]
pub mod fixtures;
pub mod model;
pub mod rules;
pub mod store;
pub mod validate;
mod wire;

pub use backups::*;
pub use model::*;
pub use store::{default_local_cluster, Store, StoreError, StoreLock, NO_CLUSTER_HINT};
pub use validate::{validate, Invalid, MAX_ID};
