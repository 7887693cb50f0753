//! Disaster recovery: bringing a cluster's configuration and its databases' data back from
//! what survives on the old nodes' disks.

pub mod apply;
pub mod copy;
pub mod plan;
mod reader;
pub mod rebuild;
