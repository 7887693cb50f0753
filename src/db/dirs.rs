//! Where a database keeps its data on its nodes: `<persistent path>/redis/db-<id>`.

use crate::ccs::{Cluster, Database};
use crate::host::NodePath;

/// `<persistent path>/redis/db-<id>` on every node the database uses, each once.
pub(super) fn db_dirs(cluster: &Cluster, db: &Database) -> Vec<NodePath> {
    let mut dirs: Vec<_> = db
        .shards
        .iter()
        .filter_map(|s| cluster.nodes.get(&s.node))
        .map(|n| {
            NodePath::new(
                n.id,
                crate::server::shard_dir::db_dir_under(&n.persistent_path, db.id),
            )
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}
