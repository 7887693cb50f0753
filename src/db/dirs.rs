//! Where databases keep their data on a node: `<persistent path>/redis/db-<id>/shard-<id>`.

use std::path::{Path, PathBuf};

use crate::ccs::{Cluster, Database, Id};

/// Entries of `dir` named `<prefix><id>`, with their ids; none if `dir` cannot be read.
pub(super) fn numbered_entries(dir: &Path, prefix: &str) -> Vec<(Id, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect()
}

/// `<persistent path>/redis/db-<id>` on every node the database uses, each once.
pub(super) fn db_dirs(cluster: &Cluster, db: &Database) -> Vec<PathBuf> {
    let mut dirs: Vec<_> = db
        .shards
        .iter()
        .filter_map(|s| cluster.nodes.get(&s.node))
        .map(|n| {
            n.persistent_path
                .join("redis")
                .join(format!("db-{}", db.id))
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}
