//! Disaster recovery: bringing a cluster's configuration and its databases' data back from
//! what survives on the old nodes' disks.

pub mod copy;
pub mod plan;
pub mod rebuild;
