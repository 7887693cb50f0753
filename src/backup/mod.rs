//! Backups: runs of a database taken on purpose, each a cluster-consistent cut pulled over
//! the Redis protocol, checked by the reader as it streams, sealed by a manifest.
//!
//! # Layout
//! - `take`: one run (the write pause, the snapshots, the manifest).
//! - `snapshot`: one shard's snapshot over `REPLCONF rdb-only` + `SYNC` (`PSYNC ? -1` for a
//!   backup's cut: its `+FULLRESYNC` marks the save's start).
//! - `repo`: [`Repository`], where runs live, and its layout; `s3` and `remote` its
//!   `s3://` and `ssh://` kinds.
//! - `manifest`: [`Manifest`], written last, checksummed.
//! - `plain`: [`PlainRead`], a run's stored file read back as its plain RDB, checked
//!   against the manifest.
//! - here: run ids, the locks that keep runs of a task from overlapping, finding runs
//!   whose shell died, `due` and `keep`.

mod codec;
mod manifest;
mod plain;
mod remote;
mod repo;
mod s3;
pub mod service;
mod snapshot;
mod take;

use std::fs::{File, OpenOptions, TryLockError};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub use codec::{
    decoder, hashing_reader, stored_name, Codec, Compression, DigestSlot, Identities, KeyFileError,
    Recipients, StoredDigest,
};
pub use manifest::{Manifest, ManifestError, ShardEntry, MANIFEST_FILE, MANIFEST_FORMAT};
pub use plain::PlainRead;
pub use remote::{parse_url as parse_ssh_url, RunsError};
pub use repo::{is_url, PartFile, Repository, RunDir, StoredFile};
pub(crate) use snapshot::hex;
pub use snapshot::SnapshotConn;
pub use take::{take, RunSpec, FORKS_PER_NODE};

use crate::ccs::{BackupRun, BackupTask, Backups, Cluster, Id, RunStatus};

/// The write pause a run may take when its task says nothing.
pub const DEFAULT_MAX_PAUSE_MS: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Failed(String),
}

/// The runtime remote repositories' requests run on: the backup code around them is
/// synchronous (snapshots stream on their own threads), so every request is made here
/// and its caller waits, from a worker of a multi-threaded runtime through
/// `block_in_place`, from anywhere else directly.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lazarus-repo")
            .enable_all()
            .build()
            .expect("the repositories' runtime starts")
    })
}

/// Runs `f` on the repositories' runtime and waits for it, from any thread.
pub(crate) fn block<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => runtime().block_on(f),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| runtime().block_on(f))
        }
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| runtime().block_on(f))
                .join()
                .expect("the repositories' thread does not panic")
        }),
    }
}

/// A remote clock reading `theirs` (in ms, true time within `theirs..=theirs + grain`)
/// taken between this machine's `before` and `after`: how far it is outside that
/// interval, signed (0 when inside).
pub(crate) fn skew(theirs: i64, grain: i64, before: i64, after: i64) -> i64 {
    if theirs + grain < before {
        theirs + grain - before
    } else if theirs > after {
        theirs - after
    } else {
        0
    }
}

/// An HTTP `Date` (`Fri, 04 Dec 2026 13:05:00 GMT`, RFC 9110's IMF-fixdate) in Unix ms.
pub(crate) fn http_date_ms(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let (_weekday, day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if zone != "GMT" {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut hms = time.split(':').map(|n| n.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Days from 1970-01-01 to the civil date (Howard Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + m) * 60_000 + s * 1000)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `<yyyymmdd>-<hhmmss>-<n>` (UTC), `n` from the cluster's id allocator.
pub fn new_run_id(cluster: &mut Cluster) -> String {
    let n = cluster.allocate_id();
    let (date, time) = utc(now_ms() / 1000);
    format!("{}-{}-{n}", date.replace('-', ""), time.replace(':', ""))
}

/// `("2026-12-04", "03:50:12")` of unix seconds.
pub fn utc(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// `2026-12-04 03:50:12Z` of unix milliseconds.
pub fn format_time(ms: i64) -> String {
    let (d, t) = utc(ms.div_euclid(1000));
    format!("{d} {t}Z")
}

/// An exclusive lock on a file under `<home>/locks/`, held until dropped; the OS drops it
/// when the process dies, which is how a dead run is told from a running one. It is an
/// open-file-description lock (`F_OFD_SETLK`, per open file like `flock`, and gone with
/// the process), so whether it is held can be asked (`F_OFD_GETLK`, [`RunLock::is_held`])
/// without taking it: a probe that took it for a moment would turn away a shell claiming
/// it at that instant. It is a `flock` lock as well, as it was before, so a holder of
/// that kind still keeps takers out.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// `Ok(None)` when another process holds it. The lock is the file at its path: one
    /// locked after its holder removed it ([`RunLock::remove`]) is not, and is taken
    /// again from the path.
    pub fn try_take(home: &Path, name: &str) -> Result<Option<RunLock>, String> {
        let dir = home.join("locks");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let path = lock_path(home, name);
        for _ in 0..100 {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
            // `flock` too: a shell of an earlier Lazarus (or anything else) holding it
            // that way is still kept out.
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => {
                    return Err(format!("cannot lock `{}`: {e}", path.display()))
                }
            }
            match ofd_lock(&file, libc::F_OFD_SETLK) {
                Ok(_) if is_at(&file, &path) => return Ok(Some(RunLock { file, path })),
                Ok(_) => continue,
                Err(e) if would_block(&e) => return Ok(None),
                Err(e) => return Err(format!("cannot lock `{}`: {e}", path.display())),
            }
        }
        Err(format!(
            "cannot lock `{}`: it is removed and made again as it is taken",
            path.display()
        ))
    }

    /// Whether a live process (this one included) holds lock `name`, asked without
    /// taking it. No lock file: nobody does. A lock that cannot be asked counts as held:
    /// a task is never taken for dead on a guess.
    pub fn is_held(home: &Path, name: &str) -> bool {
        let path = lock_path(home, name);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
        };
        !matches!(ofd_lock(&file, libc::F_OFD_GETLK), Ok(t) if t == libc::F_UNLCK)
    }

    /// Removes the lock's file while holding it, then lets go: no other shell holds it
    /// (this one does), and one waiting on the removed file takes it again from the path.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }

    pub fn task(home: &Path, task: &str) -> Result<Option<RunLock>, String> {
        RunLock::try_take(home, &format!("task-{task}"))
    }

    pub fn run(home: &Path, run: &str) -> Result<Option<RunLock>, String> {
        RunLock::try_take(home, &run_lock(run))
    }
}

/// The name of restore task `task`'s lock ([`RunLock`]). Restore tasks live in the layer
/// above; their lock is named here so that a backup run can ask it too
/// ([`claimed_task_of`]).
pub fn restore_task_lock(task: &str) -> String {
    format!("restore-{task}")
}

/// The restore task of database `db` (by name) that another shell has claimed now (its
/// lock held: being verified, started, retried or deleted there), leaving out the tasks
/// named in `except`. Asked, never taken (a probe that took it would turn away a shell
/// claiming it at that instant). A command that stops, restarts, removes or backs up the
/// database's shards refuses while there is one.
pub fn claimed_task_of(
    home: &Path,
    cluster: &Cluster,
    db: &str,
    except: &[&str],
) -> Option<String> {
    cluster
        .backups
        .restores
        .values()
        .filter(|t| t.db == db && !except.contains(&t.name.as_str()))
        .find(|t| RunLock::is_held(home, &restore_task_lock(&t.name)))
        .map(|t| t.name.clone())
}

/// The run of database `db` a live shell is taking now (recorded `running`, its run lock
/// held), if any: stopping the database's shards would break it off. Asked, never taken.
pub fn streaming_run_of(home: &Path, cluster: &Cluster, db: Id) -> Option<BackupRun> {
    cluster
        .backups
        .runs
        .iter()
        .filter(|r| r.db == db && r.status == RunStatus::Running)
        .find(|r| RunLock::is_held(home, &run_lock(&r.id)))
        .cloned()
}

/// The name of run `run`'s lock ([`RunLock::run`]).
fn run_lock(run: &str) -> String {
    format!("run-{run}")
}

fn lock_path(home: &Path, name: &str) -> PathBuf {
    home.join("locks").join(format!("{name}.lock"))
}

/// `F_OFD_SETLK` (take) or `F_OFD_GETLK` (ask) of an exclusive lock of the whole of
/// `file`; returns the `l_type` the kernel left (`F_UNLCK` from a query: nobody holds it).
fn ofd_lock(file: &File, cmd: libc::c_int) -> Result<i32, std::io::Error> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed `flock` is a valid value (`l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `fl` outlives the call, and the descriptor is `file`'s, open.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i32::from(fl.l_type))
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// Whether `file` is the file at `path` now (not one removed, or replaced, since it was
/// opened).
fn is_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Marks `interrupted` every `running` run whose shell is gone (its run lock is free),
/// removing what it left in its repository. Returns whether anything changed.
pub fn sweep_interrupted(cluster: &mut Cluster, home: &Path) -> bool {
    let mut changed = false;
    let cluster_id = cluster.cluster_id;
    for run in cluster.backups.runs.iter_mut() {
        if run.status != RunStatus::Running {
            continue;
        }
        let Ok(Some(_lock)) = RunLock::run(home, &run.id) else {
            continue;
        };
        if let Ok(repo) = Repository::open(&run.path) {
            let _ = repo.remove_own(&run.id, cluster_id);
        }
        run.status = RunStatus::Interrupted;
        run.reason = Some("the shell running it died; its partial files were removed".to_string());
        changed = true;
        let _ = std::fs::remove_file(home.join("locks").join(format!("run-{}.lock", run.id)));
    }
    changed
}

/// Whether a task is due at `now_ms`: it has an interval and no succeeded run started
/// within it.
pub fn is_due(task: &BackupTask, runs: &[BackupRun], now_ms: i64) -> bool {
    let Some(every) = task.every else {
        return false;
    };
    let last = runs
        .iter()
        .filter(|r| r.task.as_deref() == Some(&task.name) && r.status == RunStatus::Succeeded)
        .map(|r| r.started)
        .max();
    match last {
        None => true,
        Some(started) => now_ms - started >= (every as i64) * 1000,
    }
}

/// The runs `keep` lets go, oldest first: succeeded runs beyond the newest `keep`, and
/// failed or interrupted runs older than the oldest kept one. Never the newest succeeded,
/// nor a run a restore task not yet succeeded restores (the restore point chosen, maybe
/// the last before an accident the newer runs hold).
pub fn prune_plan(task: &BackupTask, backups: &Backups) -> Vec<String> {
    let runs = &backups.runs;
    let Some(keep) = task.keep else {
        return Vec::new();
    };
    let keep = keep.max(1) as usize;
    let mine: Vec<&BackupRun> = runs
        .iter()
        .filter(|r| r.task.as_deref() == Some(&task.name))
        .collect();
    let mut succeeded: Vec<&BackupRun> = mine
        .iter()
        .copied()
        .filter(|r| r.status == RunStatus::Succeeded)
        .collect();
    succeeded.sort_by_key(|r| std::cmp::Reverse(r.started));
    let Some(oldest_kept) = succeeded.iter().take(keep).map(|r| r.started).min() else {
        return Vec::new();
    };
    let mut out: Vec<&BackupRun> = succeeded.iter().skip(keep).copied().collect();
    out.extend(mine.iter().copied().filter(|r| {
        matches!(r.status, RunStatus::Failed | RunStatus::Interrupted) && r.started < oldest_kept
    }));
    out.retain(|r| backups.restoring(&r.id).is_none());
    out.sort_by_key(|r| r.started);
    out.into_iter().map(|r| r.id.clone()).collect()
}

/// Checks a repository path for a task or a run: it must lie outside every shard
/// directory (`<persistent_path>/redis`) and every recovery path, and be writable (it is
/// made when missing). Returns it absolute. A repository URL is checked reachable and
/// writable.
pub fn check_repository(cluster: &Cluster, path: &Path) -> Result<PathBuf, String> {
    if is_url(path) {
        // Off this machine: no shard directory can hold it. Reachable and writable now.
        Repository::open(path)?.prepare()?;
        return Ok(path.to_path_buf());
    }
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .map_err(|e| format!("cannot resolve `{}`: {e}", path.display()))?
    };
    let resolved = resolve_existing_prefix(&abs);
    for node in cluster.nodes.values() {
        let shards = resolve_existing_prefix(
            &node
                .persistent_path
                .join(crate::server::shard_dir::REDIS_DIR),
        );
        if resolved.starts_with(&shards) {
            return Err(format!(
                "`{}` is inside node:{}'s shard directories `{}`: choose a path outside them",
                path.display(),
                node.id,
                shards.display()
            ));
        }
        if let Some(rp) = &node.recovery_path {
            let rp = resolve_existing_prefix(rp);
            if resolved.starts_with(&rp) {
                return Err(format!(
                    "`{}` is inside node:{}'s recovery path `{}`: choose a path outside it",
                    path.display(),
                    node.id,
                    rp.display()
                ));
            }
        }
    }
    Repository::local(&abs).prepare()?;
    Ok(abs)
}

/// A backup repository a directory of this machine is, lies inside or holds: a local
/// repository of a backup task or run the CCS records, or, on disk, a run (a
/// `manifest.json`) or a directory of runs. `path` is canonical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryNear {
    /// `is`, `lies inside` or `holds`.
    pub how: &'static str,
    /// The repository (or run) directory.
    pub repository: PathBuf,
    /// Whose it is, as shown: `backup task `nightly`'s repository`.
    pub what: String,
}

/// The backup repository at, around or under `path` (canonical), if any.
pub fn repository_near(cluster: &Cluster, path: &Path) -> Option<RepositoryNear> {
    let recorded = cluster
        .backups
        .tasks
        .values()
        .map(|t| (&t.path, format!("backup task `{}`'s repository", t.name)))
        .chain(
            cluster
                .backups
                .runs
                .iter()
                .map(|r| (&r.path, format!("the repository of backup run `{}`", r.id))),
        );
    for (repo, what) in recorded {
        if is_url(repo) {
            continue;
        }
        let repo = resolve_existing_prefix(repo);
        let how = if path == repo {
            "is"
        } else if path.starts_with(&repo) {
            "lies inside"
        } else if repo.starts_with(path) {
            "holds"
        } else {
            continue;
        };
        return Some(RepositoryNear {
            how,
            repository: repo,
            what,
        });
    }
    // A repository no task of this cluster names (another cluster's, a copy): its runs.
    if path.join(MANIFEST_FILE).is_file() {
        let run = path.file_name().map(|n| n.to_string_lossy().to_string());
        return Some(RepositoryNear {
            how: "is",
            repository: path.to_path_buf(),
            what: format!("backup run `{}`", run.unwrap_or_default()),
        });
    }
    let run = std::fs::read_dir(path)
        .ok()?
        .flatten()
        .find(|e| e.path().join(MANIFEST_FILE).is_file())?;
    Some(RepositoryNear {
        how: "is",
        repository: path.to_path_buf(),
        what: format!(
            "a backup repository (it holds run `{}`)",
            run.file_name().to_string_lossy()
        ),
    })
}

/// `path` with its longest existing prefix canonicalised (symlinks resolved).
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_read_as_unix_ms() {
        assert_eq!(http_date_ms("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date_ms("Fri, 04 Dec 2026 13:05:07 GMT"),
            Some(1_796_389_507_000)
        );
        assert_eq!(
            http_date_ms("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599_000)
        );
        assert_eq!(http_date_ms("Fri, 04 Dec 2026 13:05:07 CET"), None);
        assert_eq!(http_date_ms("yesterday"), None);
        assert_eq!(skew(1_000, 999, 1_500, 1_600), 0);
        assert_eq!(skew(1_000, 0, 1_500, 1_600), -500);
        assert_eq!(skew(2_000, 999, 1_500, 1_600), 400);
    }

    fn run(id: &str, task: &str, started: i64, status: RunStatus) -> BackupRun {
        BackupRun {
            task: Some(task.into()),
            ..crate::ccs::fixtures::backup_run(id, started, status)
        }
    }

    fn task(keep: Option<u32>, every: Option<u64>) -> BackupTask {
        BackupTask {
            name: "t".into(),
            db: 1,
            path: "/r".into(),
            keep,
            every,
            max_pause_ms: 1000,
            created: 0,
            compress: Default::default(),
            encrypt: None,
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), ("1970-01-01".into(), "00:00:00".into()));
        assert_eq!(utc(1_796_356_212), ("2026-12-04".into(), "03:50:12".into()));
        assert_eq!(utc(951_782_400).0, "2000-02-29");
    }

    #[test]
    fn keep_never_lets_the_newest_succeeded_run_go() {
        use RunStatus::*;
        let runs = vec![
            run("a", "t", 1, Succeeded),
            run("b", "t", 2, Failed),
            run("c", "t", 3, Succeeded),
            run("d", "t", 4, Interrupted),
            run("e", "t", 5, Succeeded),
            run("x", "other", 0, Succeeded),
        ];
        let of = |runs: Vec<BackupRun>| Backups {
            runs,
            ..Backups::default()
        };
        let runs = of(runs);
        assert_eq!(prune_plan(&task(Some(2), None), &runs), ["a", "b"]);
        assert_eq!(
            prune_plan(&task(Some(1), None), &runs),
            ["a", "b", "c", "d"]
        );
        assert!(prune_plan(&task(None, None), &runs).is_empty());
        let only_failed = of(vec![run("f", "t", 1, Failed)]);
        assert!(prune_plan(&task(Some(1), None), &only_failed).is_empty());
    }

    #[test]
    fn due_after_the_interval_since_the_last_success() {
        use RunStatus::*;
        let t = task(None, Some(60));
        assert!(is_due(&t, &[], 0));
        let runs = vec![
            run("a", "t", 1_000, Succeeded),
            run("b", "t", 50_000, Failed),
        ];
        assert!(!is_due(&t, &runs, 60_000));
        assert!(is_due(&t, &runs, 61_000));
        assert!(!is_due(&task(None, None), &[], 0));
    }
}
