//! The new shard directories recovery fills: never inside a recovery path, and
//! refilled from scratch when an earlier attempt was cut short. Every operation goes
//! through the [`Host`] of the shard's node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::apply::RecoverError;
use super::copy::on_host::ensure_outside as ensure_outside_on;
use crate::ccs::{Cluster, Database, Shard};
use crate::host::{Host, Hosts, Signal};
pub use crate::server::shard_dir::MARKER_FILE;
use crate::server::shard_dir::{started_by_recovery, DATA_FILES};
use crate::server::{read_pid_on, shard_pid_on};

pub(super) fn shard_dir(cluster: &Cluster, db: &Database, shard: &Shard) -> PathBuf {
    match cluster.nodes.get(&shard.node) {
        Some(node) => node.shard_dir(db.id, shard.id),
        None => PathBuf::from(format!("<node:{} missing>", shard.node)),
    }
}

/// Readies a shard directory for recovery's files: it must not lie in a recovery path
/// on its host, and any data in it must be recovery's own from an earlier, interrupted
/// run (then the server it may have left running is stopped and the data removed).
pub(super) async fn prepare_dir(
    hosts: &Hosts,
    host: &dyn Host,
    cluster: &Cluster,
    dir: &Path,
) -> Result<(), RecoverError> {
    for node in cluster.nodes.values() {
        // Only recovery paths on the same machine can hold this directory.
        if hosts.of(node.id).name() != host.name() {
            continue;
        }
        if let Some(recovery) = &node.recovery_path {
            ensure_outside_on(host, dir, recovery).await?;
        }
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecoverError::Io { path, source }
    };
    // One listing answers every question about what is there.
    let present: Vec<String> = match host.list(dir).await {
        Ok(entries) => entries.into_iter().map(|e| e.name).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(RecoverError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let has = |name: &str| present.iter().any(|p| p == name);
    let marker = dir.join(MARKER_FILE);
    if DATA_FILES.iter().any(|f| has(f)) && !has(MARKER_FILE) {
        return Err(RecoverError::ShardDirTaken(dir.to_path_buf()));
    }
    stop_own_leftover(host, dir).await?;
    host.create_private_dir(dir).await.map_err(io_err(dir))?;
    host.write_private(&marker, format!("pid {}\n", std::process::id()).as_bytes())
        .await
        .map_err(io_err(dir))?;
    for name in DATA_FILES.iter().filter(|f| has(f)) {
        let path = dir.join(name);
        host.remove(&path).await.map_err(io_err(&path))?;
    }
    Ok(())
}

/// Notes in the shard directory's marker that recovery started server `pid` there, so a
/// later run (or this one, failing) may stop it: recovery stops only what it started.
pub(super) async fn record_started(host: &dyn Host, dir: &Path, pid: u32) {
    let marker = dir.join(MARKER_FILE);
    let Ok(mut text) = host.read(&marker).await else {
        return;
    };
    text.extend_from_slice(format!("server {pid}\n").as_bytes());
    let _ = host.write_private(&marker, &text).await;
}

/// How long a server found working in a marked shard directory without its pidfile is
/// given to write it (it writes it once its ports are bound, within milliseconds).
const PIDFILE_GRACE: Duration = Duration::from_secs(3);

/// Stops, cleanly (SIGTERM, then waits), a server that recovery itself started in `dir`
/// in this run or an earlier, interrupted one. A server recovery did not start is never
/// touched: it is reported as [`RecoverError::ServerNotOurs`].
///
/// A server caught while daemonizing is two processes (the one started and the daemon it
/// forks), so this goes on until none is left working in `dir`.
pub(super) async fn stop_own_leftover(host: &dyn Host, dir: &Path) -> Result<(), RecoverError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let marker = dir.join(MARKER_FILE);
    while let Some(pid) = shard_pid_on(host, dir).await {
        // A server still daemonizing has not written its pidfile yet (a run killed just
        // after the launch): it gets a moment to, so that it can be judged by it.
        let settle = tokio::time::Instant::now() + PIDFILE_GRACE;
        while host.metadata(&marker).await.is_ok()
            && read_pid_on(host, dir).await != Some(pid)
            && host.is_alive(pid).await
            && tokio::time::Instant::now() < settle
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if shard_pid_on(host, dir).await != Some(pid) && tokio::time::Instant::now() < deadline {
            continue;
        }
        if !started_by_recovery(host, dir, pid).await {
            return Err(RecoverError::ServerNotOurs {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        let _ = host.signal(pid, Signal::Term).await;
        while host.is_alive(pid).await && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RecoverError::Internal(format!(
                "server pid {pid} that recovery started in `{}` on {} did not stop within 20 s",
                dir.display(),
                host.name()
            )));
        }
    }
    Ok(())
}

/// Removes the recovery markers of a database once it is recorded active.
pub async fn clear_markers(hosts: &Hosts, cluster: &Cluster, db: &Database) {
    for shard in &db.shards {
        let host = hosts.of(shard.node);
        let _ = host
            .remove(&shard_dir(cluster, db, shard).join(MARKER_FILE))
            .await;
    }
}
