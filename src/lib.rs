//! Lazarus: an rladmin-style admin and recovery shell for clusters of Redis OSS / Valkey
//! databases.
//!
//! # Layout
//! - [`ccs`]: the cluster configuration store: the serde model of a cluster (nodes,
//!   databases, shards, the id allocator) and its atomic, locked storage with per-node
//!   backups.
//! - [`recovery`]: disaster recovery: planning from the old files under recovery paths,
//!   copying them, and bringing databases back; rebuilding the configuration itself
//!   (`cluster recover`).

pub mod ccs;
pub mod recovery;
