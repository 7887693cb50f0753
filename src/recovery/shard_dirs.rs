//! The new shard directories recovery fills: never inside a recovery path, and
//! refilled from scratch when an earlier attempt was cut short.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::apply::RecoverError;
use super::copy::ensure_outside;
use crate::ccs::{Cluster, Database, Shard};
use crate::server::{is_running, shard_pid};

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
    stop_own_leftover(dir).await?;
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

/// Notes in the shard directory's marker that recovery started server `pid` there, so a
/// later run (or this one, failing) may stop it: recovery stops only what it started.
pub(super) fn record_started(dir: &Path, pid: u32) {
    use std::io::Write;
    let marker = dir.join(MARKER_FILE);
    if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&marker) {
        let _ = writeln!(f, "server {pid}");
        let _ = f.sync_all();
    }
}

/// Whether recovery started server `pid` in `dir`: the directory carries recovery's
/// marker and either the marker names the pid, or the server wrote its pidfile (naming
/// it) after the marker was made (a run killed between the start and the note).
fn started_by_recovery(dir: &Path, pid: u32) -> bool {
    let marker = dir.join(MARKER_FILE);
    let Ok(text) = fs::read_to_string(&marker) else {
        return false;
    };
    if text.lines().any(|l| {
        l.strip_prefix("server ")
            .and_then(|p| p.trim().parse().ok())
            == Some(pid)
    }) {
        return true;
    }
    let pidfile = dir.join(crate::server::PID_FILE);
    let written_after = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    crate::server::read_pid(dir) == Some(pid)
        && matches!(
            (written_after(&marker), written_after(&pidfile)),
            (Some(m), Some(p)) if p >= m
        )
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
pub(super) async fn stop_own_leftover(dir: &Path) -> Result<(), RecoverError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Some(pid) = shard_pid(dir) {
        // A server still daemonizing has not written its pidfile yet (a run killed just
        // after the launch): it gets a moment to, so that it can be judged by it.
        let settle = tokio::time::Instant::now() + PIDFILE_GRACE;
        while dir.join(MARKER_FILE).exists()
            && crate::server::read_pid(dir) != Some(pid)
            && is_running(pid)
            && tokio::time::Instant::now() < settle
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if shard_pid(dir) != Some(pid) && tokio::time::Instant::now() < deadline {
            continue;
        }
        if !started_by_recovery(dir, pid) {
            return Err(RecoverError::ServerNotOurs {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        let _ = crate::host::local::send_signal(pid, crate::host::Signal::Term);
        while is_running(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RecoverError::Internal(format!(
                "server pid {pid} that recovery started in `{}` did not stop within 20 s",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Removes the recovery markers of a database once it is recorded active.
pub fn clear_markers(cluster: &Cluster, db: &Database) {
    for shard in &db.shards {
        let _ = fs::remove_file(shard_dir(cluster, db, shard).join(MARKER_FILE));
    }
}
