//! Lazarus: an rladmin-style admin and recovery shell for clusters of Redis OSS / Valkey
//! databases.
//!
//! # Layout
//! - [`ccs`]: the cluster configuration store: the serde model of a cluster (nodes,
//!   databases, shards, the id allocator) and its atomic, locked storage with per-node
//!   backups.

pub mod ccs;
