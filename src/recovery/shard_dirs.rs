//! The new shard directories recovery fills: never inside a recovery path, and
//! refilled from scratch when an earlier attempt was cut short.

use std::fs;
use std::path::{Path, PathBuf};

use super::apply::RecoverError;
use super::copy::ensure_outside;
use crate::ccs::{Cluster, Database, Shard};
use crate::server::ShardDir;

use crate::server::shard_dir::DATA_FILES;
pub use crate::server::shard_dir::MARKER_FILE;

pub(super) fn shard_dir(cluster: &Cluster, db: &Database, shard: &Shard) -> PathBuf {
    match cluster.nodes.get(&shard.node) {
        Some(node) => node.shard_dir(db.id, shard.id),
        None => PathBuf::from(format!("<node:{} missing>", shard.node)),
    }
}

/// Readies a shard directory for recovery's files: it must not lie in a recovery path,
/// and any data in it must be recovery's own from an earlier, interrupted run (then the
/// server it may have left running is stopped and the data removed).
pub(super) async fn prepare_dir(cluster: &Cluster, dir: &Path) -> Result<(), RecoverError> {
    for node in cluster.nodes.values() {
        if let Some(recovery) = &node.recovery_path {
            ensure_outside(dir, recovery)?;
        }
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecoverError::Io { path, source }
    };
    let has_data = DATA_FILES
        .iter()
        .any(|f| fs::symlink_metadata(dir.join(f)).is_ok());
    if has_data && !dir.join(MARKER_FILE).exists() {
        return Err(RecoverError::ShardDirTaken(dir.to_path_buf()));
    }
    kill_leftover(dir).await;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::write(
        dir.join(MARKER_FILE),
        format!("pid {}\n", std::process::id()),
    )
    .map_err(io_err(dir))?;
    for name in DATA_FILES {
        let path = dir.join(name);
        let removed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(_) => Ok(()),
        };
        removed.map_err(io_err(&path))?;
    }
    Ok(())
}

/// Kills a server an earlier, interrupted attempt left running in `dir`. Its data is
/// about to be replaced from the recovery path, so there is no point in the orderly
/// shutdown that would first save it.
///
/// A server caught while daemonizing is two processes (the one started and the daemon it
/// forks), so this goes on until none is left working in `dir`.
pub(super) async fn kill_leftover(dir: &Path) {
    // The directory's node does not matter while every node is this machine.
    ShardDir::at(0, dir).kill().await;
}

/// Removes the recovery markers of a database once it is recorded active.
pub fn clear_markers(cluster: &Cluster, db: &Database) {
    for shard in &db.shards {
        let _ = fs::remove_file(shard_dir(cluster, db, shard).join(MARKER_FILE));
    }
}
