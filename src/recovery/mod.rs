//! Disaster recovery: bringing a cluster's configuration and its databases' data back from
//! what survives on the old nodes' disks.
//!
//! # Layout
//! - `rebuild` (and its parts): `cluster recover`, the configuration from a CCS backup or
//!   from the shards' identity files.
//! - `lives`: the names of a node's lives on one disk (`data`, `data-recovered`,
//!   `data-recovered-2`, ...), the one rule recovery names a new persistent path by.
//! - [`plan`]: per database in recovery state and per shard, the chosen source under the
//!   recovery paths (`source`) or why there is none (`reason`); only reads.
//! - [`copy`]: copies a source into a new shard directory, checked, under a temporary name.
//! - [`apply`]: one database's data recovery: validation, copy and load side by side,
//!   `shard_dirs` to (re)fill the new directories, `finish` for key counts and the rest
//!   of the bring-up pipeline ([`crate::db::bringup`]).
//! - [`from_files`]: `recover db <db> from_files`, masters that came back EMPTY filled
//!   from the files found since.
//! - [`run`]: the service behind `recover all` / `recover db`: adoption of live
//!   databases, port moves ([`ports`]), the databases recovered in parallel, each success
//!   recorded and saved at once, Ctrl-C stopping what is not back yet.

pub mod apply;
mod beside;
pub mod copy;
mod files;
mod finish;
pub mod from_files;
pub mod live;
mod lives;
pub mod plan;
pub mod ports;
mod reader;
mod reason;
pub mod rebuild;
pub mod relocate;
mod remote_check;
pub mod run;
mod shard_dirs;
mod source;
