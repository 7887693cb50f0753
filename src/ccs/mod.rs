//! The cluster configuration store (CCS): what the cluster should be.

pub mod model;

pub use model::*;
