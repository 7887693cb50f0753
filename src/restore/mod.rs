//! Restoring a database to a backup run: the checks before anything changes (`verify`),
//! then the replacement (`start`): fence clients, stage the run's files beside the old
//! data, swap them in, load, check key counts against the manifest, re-form replicas and
//! the Redis Cluster, unfence, and only then remove the old data. Any failure before the
//! unfence puts the old data back and serving ([`roll_back`]).
//!
//! Same shard count only: a run of N shards restores into a database of N shards with
//! the same slot ranges (restoring into another shard count needs RESTORE payloads built
//! from the run's values).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backup::{Manifest, PlainRead, Repository, ShardEntry, StoredFile};
use crate::ccs::{Cluster, Database, Id, Persistence, RestoreStep, Role};
use crate::db::start_shard;
use crate::error::ErrorKind;
use crate::host::{Host, LocalHost};
use crate::persist::max_rdb_version_for;
use crate::server::shard_dir;
use crate::server::{
    connect, info, shard_pid_on, stop_shard_on, ConfOptions, Servers, ShardAddr, StartOptions,
};

/// Where a shard's old data waits while the restore runs, inside its directory.
pub const OLD_DIR: &str = shard_dir::RESTORE_OLD_DIR;
/// A run's file staged beside the shard's data before the swap.
pub const STAGED: &str = ".lazarus-restore.rdb";
/// The fence password while a shard is fenced, so a restore cut short can unfence a
/// shard it did not restart.
pub const FENCE_FILE: &str = shard_dir::FENCE_FILE;
const TIMEOUT: Duration = Duration::from_secs(10);
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

mod by_key;
mod group;
mod pick;
mod replace;
mod task;
mod task_error;
mod verify;

/// Owned by `backup` (below this layer), whose runs refuse a database being restored too.
pub use crate::backup::claimed_task_of;
pub use pick::{own_run, run_in_repository};
pub use task::{running_tasks, CreateFlags, Created, RestoredDb, Safety, Shown, Started, Tasks};
pub use task_error::RestoreTaskError;

pub use verify::verify;

/// One check of `verify`, as printed.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    /// What kind of error a failed check makes of the verify (a target holding keys
    /// without `force` is a conflict, a damaged file damaged, a missing one not found).
    #[serde(skip)]
    pub kind: Option<ErrorKind>,
}

/// What `verify` found.
#[derive(Serialize, Clone, Debug, Default)]
pub struct VerifyReport {
    pub checks: Vec<Check>,
    /// Keys the database holds now (what `force` replaces).
    pub keys_now: u64,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// A check: passed with its detail, or failed with its kind and why.
    fn add(&mut self, check: &str, verdict: Result<String, (ErrorKind, String)>) {
        let (ok, kind, detail) = match verdict {
            Ok(detail) => (true, None, detail),
            Err((kind, why)) => (false, Some(kind), why),
        };
        self.checks.push(Check {
            check: check.into(),
            ok,
            detail,
            kind,
        });
    }

    /// Check `check` again: its verdict replaces the earlier one (added when none).
    fn set(&mut self, check: &str, verdict: Result<String, (ErrorKind, String)>) {
        let at = self.checks.iter().position(|c| c.check == check);
        self.add(check, verdict);
        if let Some(at) = at {
            let new = self.checks.pop().expect("just added");
            self.checks[at] = new;
        }
    }

    /// The kind of the first failed check: the kind of the verify's failure.
    pub fn failure_kind(&self) -> Option<ErrorKind> {
        self.checks.iter().find(|c| !c.ok).and_then(|c| c.kind)
    }

    /// The first failed check, for the task's reason.
    pub fn reason(&self) -> Option<String> {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }
}

/// What a restore is asked to do.
#[derive(Clone, Debug)]
pub struct RestoreSpec {
    /// The restore task, written beside the data it sets aside.
    pub task: String,
    pub repo: Repository,
    pub run: String,
    pub force: bool,
    pub allow_newer_server: bool,
    /// Files the target's server cannot load are replayed key by key (`RESTORE`).
    pub replay: bool,
    /// The age identity file for encrypted runs.
    pub identity: Option<PathBuf>,
    /// Only key counts after the load, no content proof (`verify counts`).
    pub counts_only: bool,
    /// The files' sha256 and reader pass are left to the staging, which hashes and reads
    /// each file once as it copies it (`start` into the same shard layout).
    pub defer_file_checks: bool,
    /// The files were read through (sha256 and the reader's pass) by a verify of this
    /// same command moments before (a group's, before any of its databases started): not
    /// read again.
    pub files_read: bool,
    /// The run may be another cluster's.
    pub from_other_cluster: bool,
    /// The run may be another database's (a clone into `db`).
    pub from_other_db: bool,
    /// The database restored, by name (it may not exist yet).
    pub db: String,
    /// Where the run's files are staged (decoded) before they replace the data (default:
    /// beside the data, in each shard directory): `target_path`.
    pub target_path: Option<PathBuf>,
}

/// What a finished restore brought back.
#[derive(Clone, Debug)]
pub struct Restored {
    pub keys: u64,
    /// The content proof, unless the restore was asked for counts only.
    pub content: Option<crate::verify::Comparison>,
    /// Per master, the written time (unix nanoseconds) of the data it took: its staged
    /// `dump.rdb`'s modification time (the run's file's own when it was staged by a hard
    /// link), or the moment the keys were written when a run
    /// was routed into another shard count. The CCS records it ([`record_loaded`]), so a
    /// later recovery refuses files from before the restore as stale.
    pub loaded_ns: Vec<(Id, i64)>,
}

/// Records in `cluster` what a restore of db `db` loaded into each master (see
/// [`Restored::loaded_ns`]).
pub fn record_loaded(cluster: &mut Cluster, db: Id, loaded_ns: &[(Id, i64)]) {
    let Some(db) = cluster.databases.get_mut(&db) else {
        return;
    };
    for shard in &mut db.shards {
        if let Some((_, ns)) = loaded_ns.iter().find(|(id, _)| *id == shard.id) {
            shard.loaded_ns = Some(*ns);
        }
    }
}

/// How far the clocks of this machine and a repository may be apart: run ids, `latest`
/// and retention all go by time.
pub const CLOCK_SKEW_MS: i64 = 5_000;

/// Whether `start` replays the run key by key: asked to, and its files are newer than
/// the target's server loads.
async fn needs_replay(
    cluster: &Cluster,
    db: &Database,
    m: &Manifest,
    spec: &RestoreSpec,
    server: &Servers,
) -> bool {
    if !spec.replay {
        return false;
    }
    let newest = m.shards.iter().map(|s| s.rdb_version).max().unwrap_or(0);
    let target = verify::target_version(cluster, Some(db), server).await;
    max_rdb_version_for(&target).is_none_or(|max| newest > max)
}

/// Whether the run's files can be loaded as they are: the same number of masters with the
/// same slot ranges (or one shard into one).
pub fn same_layout(db: &Database, m: &Manifest) -> bool {
    let masters: Vec<_> = db.masters().collect();
    if masters.len() != m.shards.len() {
        return false;
    }
    if db.config.shards == 1 && m.db.shards == 1 {
        return true;
    }
    db.config.shards > 1
        && m.db.shards > 1
        && m.shards
            .iter()
            .all(|s| masters.iter().any(|d| d.slots == s.slots))
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Writes the plain RDB of a stored file to `dest` in one pass over it, checking the
/// stored and the plain sizes and sha256 against the manifest; synced when `sync`.
/// Blocking.
fn decode_to(
    path: &StoredFile,
    e: &ShardEntry,
    identity: Option<&Path>,
    dest: &Path,
    sync: bool,
) -> Result<u64, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut plain = PlainRead::open(path, e, identity)?;
    let _ = std::fs::remove_file(dest);
    // The database's data in plain (an encrypted run's too), maybe in a `target_path`
    // others can read: owner only, as the run's files are.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|err| format!("`{}`: {err}", dest.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    std::io::copy(&mut plain, &mut out)
        .map_err(|err| format!("cannot decode `{}` into `{}`: {err}", path, dest.display()))?;
    let f = out
        .into_inner()
        .map_err(|err| format!("`{}`: {}", dest.display(), err.error()))?;
    if sync {
        f.sync_all()
            .map_err(|err| format!("`{}`: {err}", dest.display()))?;
    }
    plain.finish()
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    // Only a regular file: a FIFO planted in a run directory would block here for ever.
    let mut f = crate::persist::open_regular(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A password no client knows, set while data is replaced.
pub fn fence_password() -> String {
    (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect()
}

fn dir_of(cluster: &Cluster, db: &Database, shard: Id) -> Result<PathBuf, String> {
    let s = db
        .shards
        .iter()
        .find(|s| s.id == shard)
        .ok_or_else(|| format!("redis:{shard} is not in db:{}", db.id))?;
    let node = cluster
        .nodes
        .get(&s.node)
        .ok_or_else(|| format!("node:{} is not in the cluster", s.node))?;
    Ok(node.shard_dir(db.id, shard))
}

/// A shard's directory and the host it lies on: every file and process operation of a
/// restore goes through the host, so a shard on another machine restores as one here.
#[derive(Clone, Debug)]
struct Place {
    host: Arc<dyn Host>,
    dir: PathBuf,
}

impl Place {
    fn of(cluster: &Cluster, db: &Database, server: &Servers, shard: Id) -> Result<Place, String> {
        let dir = dir_of(cluster, db, shard)?;
        let node = db
            .shards
            .iter()
            .find(|s| s.id == shard)
            .map_or(0, |s| s.node);
        Ok(Place {
            host: server.host(node),
            dir,
        })
    }

    fn fence_file(&self) -> FenceFile {
        FenceFile {
            host: self.host.clone(),
            path: self.dir.join(FENCE_FILE),
        }
    }

    /// The names in `dir` (of this host); none when it is missing.
    async fn names(&self, dir: &Path) -> Result<Vec<String>, String> {
        match self.host.list(dir).await {
            Ok(entries) => Ok(entries.into_iter().map(|e| e.name).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("`{}`: {e}", dir.display())),
        }
    }

    /// Removes a file or tree here; what is already gone is no error, and a failure
    /// leaves only clutter (the caller's cleanup).
    async fn remove(&self, path: &Path) {
        let _ = self.host.remove(path).await;
    }

    /// Removes the data a restore that finished set aside here, and its staged file. The
    /// data is first renamed out of [`OLD_DIR`] (where it would count as the shard's own,
    /// to be put back), so a shell dying while a large tree is removed leaves only
    /// clutter, which the next call removes.
    async fn discard_old(&self) -> Result<(), String> {
        let old = self.dir.join(OLD_DIR);
        let replaced = self.dir.join(shard_dir::RESTORE_REPLACED_DIR);
        let gone = |e: std::io::Error, p: &Path| format!("cannot remove `{}`: {e}", p.display());
        if self.host.metadata(&old).await.is_ok() {
            self.host
                .remove(&replaced)
                .await
                .map_err(|e| gone(e, &replaced))?;
            self.host
                .rename(&old, &replaced)
                .await
                .map_err(|e| gone(e, &old))?;
        }
        self.host
            .remove(&replaced)
            .await
            .map_err(|e| gone(e, &replaced))?;
        self.remove(&self.dir.join(STAGED)).await;
        Ok(())
    }

    /// Why this shard directory cannot take a restore of `bytes`: inside a recovery path
    /// on its machine, not writable, or without room for the files beside the old data.
    async fn unfit(&self, cluster: &Cluster, server: &Servers, bytes: u64) -> Option<String> {
        // Only this machine's paths can be resolved here; another host's are compared as
        // the CCS holds them.
        let local = self.host.is_local();
        let canon = |p: &Path| match local {
            true => std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()),
            false => p.to_path_buf(),
        };
        let dir = canon(&self.dir);
        let name = self.host.name();
        let inside = cluster
            .nodes
            .values()
            .filter(|n| server.host(n.id).name() == name)
            .find_map(|n| {
                let rp = canon(n.recovery_path.as_ref()?);
                dir.starts_with(&rp).then_some((n.id, rp))
            });
        if let Some((node_id, rp)) = inside {
            return Some(format!(
                "`{}` lies inside node:{node_id}'s recovery path `{}`: restoring there could overwrite the files recovery reads",
                self.dir.display(),
                rp.display()
            ));
        }
        let probe = self
            .dir
            .join(format!(".lazarus-probe.{}", std::process::id()));
        let written = match self.host.write_private(&probe, b"probe").await {
            Ok(()) => self.host.remove(&probe).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            return Some(format!("`{}`: {e}", self.dir.display()));
        }
        match self.free_bytes().await {
            Some(free) if free < bytes.saturating_mul(2) => Some(format!(
                "`{}`{} has {free} bytes free, the restore needs about {}",
                self.dir.display(),
                if local {
                    String::new()
                } else {
                    format!(" on {name}")
                },
                bytes * 2
            )),
            _ => None,
        }
    }

    /// Bytes free for this directory's file system (`df` there, on another host).
    async fn free_bytes(&self) -> Option<u64> {
        if self.host.is_local() {
            return free_bytes(&self.dir);
        }
        let args = ["-Pk".into(), "--".into(), self.dir.display().to_string()];
        let out = self.host.run(Path::new("df"), &args).await.ok()?;
        let line = out.stdout.lines().nth(1).filter(|_| out.success)?;
        let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
        Some(kib * 1024)
    }
}

/// A shard's fence file, on the shard's host: the fence password, then the ACL users the
/// fence turned off, one a line.
#[derive(Clone, Debug)]
pub struct FenceFile {
    host: Arc<dyn Host>,
    path: PathBuf,
}

impl FenceFile {
    /// The fence file of the shard directory `dir` on `host`.
    pub fn in_dir(host: Arc<dyn Host>, dir: &Path) -> FenceFile {
        FenceFile {
            host,
            path: dir.join(FENCE_FILE),
        }
    }

    /// The fence file of a shard directory on this machine.
    pub fn local(dir: &Path) -> FenceFile {
        FenceFile::in_dir(Arc::new(LocalHost), dir)
    }

    async fn text(&self) -> Option<String> {
        let bytes = self.host.read(&self.path).await.ok()?;
        String::from_utf8(bytes).ok()
    }

    /// The fence password (the first line).
    pub async fn password(&self) -> Option<String> {
        self.text().await?.lines().next().map(str::to_string)
    }

    /// The ACL users a fence turned off (the lines after the password).
    async fn users(&self) -> Vec<String> {
        self.text()
            .await
            .map(|t| t.lines().skip(1).map(str::to_string).collect())
            .unwrap_or_default()
    }

    async fn write(&self, text: &str) -> Result<(), String> {
        self.host
            .write_private(&self.path, text.as_bytes())
            .await
            .map_err(|e| format!("`{}`: {e}", self.path.display()))
    }

    /// Removes the file; a missing one is no error.
    pub async fn remove(&self) {
        let _ = self.host.remove(&self.path).await;
    }
}

/// Where a master's file of the run is staged: in `target_path` when the task names one,
/// else beside its data.
fn staged_path(target_path: Option<&Path>, db: Id, shard: Id, dir: &Path) -> PathBuf {
    match target_path {
        Some(tp) => tp.join(format!(".lazarus-restore-db{db}-shard{shard}.rdb")),
        None => dir.join(STAGED),
    }
}

/// Moves a staged file into its shard directory as its `dump.rdb`: a rename on the shard's
/// host (another host's file is staged beside its data).
async fn move_into(place: &Place, staged: &Path) -> Result<(), String> {
    if place.host.is_local() {
        return move_into_local(staged, &place.dir);
    }
    let dump = place.dir.join(shard_dir::RDB_FILE);
    place.host.rename(staged, &dump).await.map_err(|e| {
        format!(
            "`{}` into `{}` on {}: {e}",
            staged.display(),
            place.dir.display(),
            place.host.name()
        )
    })
}

/// [`move_into`] on this machine: a rename, or on another filesystem (a `target_path`
/// apart from the data) a copy under the staging name, synced, then renamed into place.
fn move_into_local(staged: &Path, dir: &Path) -> Result<(), String> {
    let dump = dir.join(shard_dir::RDB_FILE);
    match std::fs::rename(staged, &dump) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = dir.join(STAGED);
            let copy = || -> std::io::Result<()> {
                std::fs::copy(staged, &tmp)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &dump)
            };
            copy().map_err(|e| format!("`{}` into `{}`: {e}", staged.display(), dir.display()))?;
            let _ = std::fs::remove_file(staged);
            Ok(())
        }
        Err(e) => Err(format!(
            "`{}` into `{}`: {e}",
            staged.display(),
            dir.display()
        )),
    }
}

/// Stages a run's file on another host: decoded here and streamed there, its stored and
/// plain sizes and sha256 checked against the manifest as it passes. The file takes its
/// name (synced) only when every check passed; a failed one leaves nothing.
async fn stage_remote(
    place: &Place,
    staged: &Path,
    file: &StoredFile,
    e: &ShardEntry,
    identity: Option<PathBuf>,
) -> Result<u64, String> {
    let mut sink = place
        .host
        .create_stream(staged)
        .await
        .map_err(|err| format!("`{}`: {err}", staged.display()))?;
    let (f, e) = (file.clone(), e.clone());
    let shown = staged.display().to_string();
    tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let mut plain = PlainRead::open(&f, &e, identity.as_deref())?;
        std::io::copy(&mut plain, &mut sink)
            .map_err(|err| format!("cannot decode `{f}` into `{shown}`: {err}"))?;
        let bytes = plain.finish()?;
        sink.finish().map_err(|err| format!("`{shown}`: {err}"))?;
        Ok(bytes)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The data files of a shard directory (what is moved aside and back).
const DATA: [&str; 3] = [shard_dir::RDB_FILE, shard_dir::AOF_DIR, shard_dir::AOF_FILE];

/// One restore under way: the database as configured (`db`) and as it runs while fenced
/// (`fenced`: the fence password in place of its own), the run, and where it goes. Each
/// way of restoring is a method ([`Restoring::replace`] into the same shard layout,
/// [`Restoring::by_key`] otherwise), one step a method.
struct Restoring<'a> {
    cluster: &'a Cluster,
    db: &'a Database,
    fenced: Database,
    fence: String,
    m: &'a Manifest,
    spec: &'a RestoreSpec,
    server: &'a Servers,
    /// Hears each step's name (for `show` from another shell).
    step: &'a (dyn Fn(RestoreStep) + Send + Sync),
}

/// Replaces `db`'s data with the run's. `step` hears each step's name (for `show` from
/// another shell). On failure before the unfence the old data is put back and serving.
pub async fn start(
    cluster: &Cluster,
    db: &Database,
    m: &Manifest,
    spec: &RestoreSpec,
    server: &Servers,
    step: &(dyn Fn(RestoreStep) + Send + Sync),
) -> Result<Restored, String> {
    let fence = fence_password();
    let mut fenced = db.clone();
    fenced.config.password = Some(fence.clone());
    // The step reached, for a failure's way out: from `Unfencing` on it is finished
    // forward, never rolled back (see `RestoreStep::served`).
    let reached = std::sync::Mutex::new(RestoreStep::Starting);
    let step = &|s: RestoreStep| {
        if let Ok(mut r) = reached.lock() {
            *r = s;
        }
        step(s)
    };
    let restoring = Restoring {
        cluster,
        db,
        fenced,
        fence,
        m,
        spec,
        server,
        step,
    };
    // Keys go to the configured masters, and those load the run's files: a replica
    // serving a master's slots gives them back first, while nothing has changed.
    crate::db::BringUp::new(cluster, db)
        .restore_roles()
        .await
        .map_err(|e| {
            format!("the masters could not take back the slots their replicas serve: {e}")
        })?;
    if !same_layout(db, m) || needs_replay(cluster, db, m, spec, server).await {
        return restoring.by_key().await;
    }
    let res = restoring.replace().await;
    // What `target_path` staged and was not moved into place.
    for s in db.masters() {
        if let (Some(tp), Ok(dir)) = (&spec.target_path, dir_of(cluster, db, s.id)) {
            let _ = std::fs::remove_file(staged_path(Some(tp), db.id, s.id, &dir));
        }
    }
    match res {
        Ok(restored) => {
            // Recorded before anything goes: a start cut short from here on is finished,
            // never undone (see `RestoreStep::served`).
            step(RestoreStep::RemovingOld);
            for s in &db.shards {
                if let Ok(place) = Place::of(cluster, db, server, s.id) {
                    let _ = place.discard_old().await;
                }
            }
            Ok(restored)
        }
        Err(e) if reached.lock().is_ok_and(|r| r.served()) => Err(format!(
            "{e}; the old data is not put back: shards unfenced already serve the restored \
             data and may have taken writes (`restore task retry` unfences the rest and \
             finishes, keeping them)"
        )),
        Err(e) => {
            step(RestoreStep::PuttingBack);
            match roll_back(cluster, db, server, false).await {
                Ok(()) => Err(format!("{e}; the old data is back in place and serving")),
                Err(r) => Err(format!(
                    "{e}; putting the old data back failed too: {r} (it is kept in `{OLD_DIR}` of each shard directory)"
                )),
            }
        }
    }
}

/// Finishes a start cut short after the restored data may have served clients (see
/// [`RestoreStep::served`]): every shard it left fenced (its fence file still there) is
/// unfenced in place, or started with the data in its directory (the restored data)
/// when it no longer runs; then what it left of the old data is removed from every
/// shard directory of `db`. The data in place, with every write the shards unfenced
/// took, is kept.
pub async fn finish_removal(
    cluster: &Cluster,
    db: &Database,
    server: &Servers,
) -> Result<(), String> {
    let mut lifted = false;
    for role in [Role::Master, Role::Replica] {
        for s in db.shards.iter().filter(|s| s.role == role) {
            let place = Place::of(cluster, db, server, s.id)?;
            let fence_file = place.fence_file();
            if fence_file.password().await.is_none() {
                continue;
            }
            lifted = true;
            let a = crate::db::shard_addr(cluster, db, s.id)
                .ok_or_else(|| format!("redis:{} has no node", s.id))?;
            if lift_fence(&a, db.config.password.as_deref(), &fence_file).await {
                continue;
            }
            restart_unfenced(cluster, db, server, s, &place, &fence_file)
                .await
                .map_err(|e| format!("redis:{}: {e}", s.id))?;
        }
    }
    if lifted {
        crate::db::wire(cluster, db)
            .await
            .map_err(|e| e.to_string())?;
        if db.config.persistence == Persistence::Disabled {
            // As the unfence does: the file loaded is not the database's data.
            for s in db.masters() {
                let place = Place::of(cluster, db, server, s.id)?;
                place.remove(&place.dir.join(shard_dir::RDB_FILE)).await;
            }
        }
    }
    for s in &db.shards {
        Place::of(cluster, db, server, s.id)?
            .discard_old()
            .await
            .map_err(|e| format!("redis:{}: {e}", s.id))?;
    }
    Ok(())
}

/// The content proof of a restore: the files' digest (taken already, or now) against the
/// fenced masters' (each with its shard id). A difference is an error naming the first
/// keys that differ; a master that fails the proof is named as `verify db` names it,
/// `redis:N (host:port)` ([`crate::verify::VerifyError::naming`]).
async fn prove(
    files: &[crate::verify::DataSource],
    file_digest: Option<crate::persist::ContentDigest>,
    masters: &[(Id, ShardAddr)],
) -> Result<crate::verify::Comparison, String> {
    // The shards are fenced: no client reads them while their DUMPs skip LZF.
    let opts = crate::persist::DigestOptions::unserved();
    let addrs: Vec<ShardAddr> = masters.iter().map(|(_, a)| a.clone()).collect();
    let c = match file_digest {
        Some(d) => {
            crate::verify::verify_sources_against(files, d, &addrs, &opts, LOAD_TIMEOUT).await
        }
        None => crate::verify::verify_sources(files, &addrs, &opts, LOAD_TIMEOUT).await,
    }
    .map_err(|e| format!("the content proof could not run: {}", e.naming(masters)))?;
    if c.equal {
        Ok(c)
    } else {
        Err(c.verdict())
    }
}

/// The users of `ACL LIST` other than `default`: (name, enabled).
async fn acl_users(
    con: &mut redis::aio::MultiplexedConnection,
) -> Result<Vec<(String, bool)>, String> {
    let lines: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query_async(con)
        .await
        .map_err(|e| e.to_string())?;
    Ok(lines
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("user")).then_some(())?;
            let name = w.next()?.to_string();
            let on = l.split_whitespace().any(|x| x == "on");
            (name != "default").then_some((name, on))
        })
        .collect())
}

/// Fences a shard: no client can authenticate, as the default user (a password no one
/// knows) or as any other ACL user (turned off), and every client is closed. The fence
/// file (the password, then the users turned off) is written first, so a restore cut
/// short can undo the fence.
pub async fn fence_shard(a: &ShardAddr, fence: &str, file: &FenceFile) -> Result<(), String> {
    let mut con = connect(a, TIMEOUT).await.map_err(|e| e.to_string())?;
    let e = |e: redis::RedisError| e.to_string();
    let mut users: Vec<String> = acl_users(&mut con)
        .await?
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n)
        .collect();
    // Users a fence of an earlier, cut-short start turned off are still to be turned on.
    for u in file.users().await {
        if !users.contains(&u) {
            users.push(u);
        }
    }
    let mut text = fence.to_string();
    for u in &users {
        text.push('\n');
        text.push_str(u);
    }
    file.write(&text).await?;
    for u in &users {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(u)
            .arg("off")
            .query_async::<()>(&mut con)
            .await
            .map_err(e)?;
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(fence)
        .arg("masterauth")
        .arg(fence)
        .query_async::<()>(&mut con)
        .await
        .map_err(e)?;
    for kind in ["normal", "pubsub"] {
        let _: Result<redis::Value, _> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg(kind)
            .arg("SKIPME")
            .arg("yes")
            .query_async(&mut con)
            .await;
    }
    Ok(())
}

/// Lifts a shard's fence: the ACL users its fence file names (those the server still
/// has) are turned on again, the default user's password put back.
pub async fn unfence_shard(
    a: &ShardAddr,
    password: Option<&str>,
    file: Option<&FenceFile>,
) -> Result<(), String> {
    let mut con = connect(a, TIMEOUT).await.map_err(|e| e.to_string())?;
    let e = |e: redis::RedisError| e.to_string();
    let off = match file {
        Some(f) => f.users().await,
        None => Vec::new(),
    };
    if !off.is_empty() {
        let present = acl_users(&mut con).await?;
        for (u, _) in present.iter().filter(|(u, _)| off.contains(u)) {
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg(u)
                .arg("on")
                .query_async::<()>(&mut con)
                .await
                .map_err(e)?;
        }
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(password.unwrap_or(""))
        .arg("masterauth")
        .arg(password.unwrap_or(""))
        .query_async::<()>(&mut con)
        .await
        .map_err(e)?;
    redis::cmd("CONFIG")
        .arg("REWRITE")
        .query_async::<()>(&mut con)
        .await
        .map_err(e)
}

/// Stops the shard `s` (at `place`) if it runs and starts it again from the data in its
/// directory, its configuration's password (not the fence's) in force; its fence file
/// then goes. The one restart of a fenced shard, for a roll back and a finish alike.
async fn restart_unfenced(
    cluster: &Cluster,
    db: &Database,
    server: &Servers,
    s: &crate::ccs::Shard,
    place: &Place,
    fence_file: &FenceFile,
) -> Result<(), String> {
    stop_shard_on(&*place.host, &place.dir)
        .await
        .map_err(|e| e.to_string())?;
    let opts = StartOptions {
        conf: ConfOptions::default(),
        timeout: LOAD_TIMEOUT,
        creating: false,
    };
    start_shard(server, cluster, db, s, &opts)
        .await
        .map_err(|e| e.to_string())?;
    fence_file.remove().await;
    Ok(())
}

/// Lifts the fence a restore cut short left on the running shard at `a`, in place: the
/// password its fence file names put back to `password` (or already back: the fence
/// was lifted and the file not yet removed). Whether the shard answers unfenced now
/// (its fence file then removed).
async fn lift_fence(a: &ShardAddr, password: Option<&str>, fence_file: &FenceFile) -> bool {
    if let Some(fence) = fence_file.password().await {
        let mut fenced = a.clone();
        fenced.password = Some(fence);
        if unfence_shard(&fenced, password, Some(fence_file))
            .await
            .is_ok()
        {
            fence_file.remove().await;
            return true;
        }
    }
    if info(a, "server", Duration::from_secs(2)).await.is_ok() {
        fence_file.remove().await;
        return true;
    }
    false
}

/// SAVE, waiting out a background save already running (a backup's SYNC, the safety
/// backup's, forks one): the server refuses SAVE until that child is done.
async fn save(a: &ShardAddr) -> Result<(), String> {
    let mut con = connect(a, TIMEOUT).await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
    loop {
        match redis::cmd("SAVE").query_async::<()>(&mut con).await {
            Ok(()) => return Ok(()),
            Err(e)
                if e.to_string().contains("already in progress")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Puts every shard's old data back (where a restore moved it aside) and starts the
/// database as it was configured. Safe to run again; does nothing to a shard whose data
/// was never moved. `restart` (a start cut short after it began stopping shards) restarts
/// every shard instead of unfencing one that answers: a server that received the
/// restore's SIGTERM still answers until it exits. A database without persistence saves
/// first, so its memory survives the restart.
pub async fn roll_back(
    cluster: &Cluster,
    db: &Database,
    server: &Servers,
    restart: bool,
) -> Result<(), String> {
    let mut touched = false;
    for s in &db.shards {
        let place = Place::of(cluster, db, server, s.id)?;
        let (dir, old) = (&place.dir, place.dir.join(OLD_DIR));
        place.remove(&dir.join(STAGED)).await;
        let kept = match place.host.metadata(&old).await {
            Ok(m) if m.kind == crate::host::FileKind::Dir => place.names(&old).await?,
            _ => continue,
        };
        touched = true;
        stop_shard_on(&*place.host, dir)
            .await
            .map_err(|e| e.to_string())?;
        for name in DATA {
            let here = dir.join(name);
            if kept.iter().any(|k| k == name) {
                place.remove(&here).await;
                place
                    .host
                    .rename(&old.join(name), &here)
                    .await
                    .map_err(|e| format!("`{}`: {e}", here.display()))?;
            } else if s.role == Role::Master && name == shard_dir::RDB_FILE {
                // The restored file must not load in place of what was there.
                place.remove(&here).await;
            }
        }
        place.remove(&old).await;
    }
    // A shard whose data stayed: unfenced in place (a restart would lose the memory of
    // a database without persistence); one not running, or restarted above, started.
    for role in [Role::Master, Role::Replica] {
        for s in db.shards.iter().filter(|s| s.role == role) {
            let place = Place::of(cluster, db, server, s.id)?;
            let fence_file = place.fence_file();
            let a = crate::db::shard_addr(cluster, db, s.id)
                .ok_or_else(|| format!("redis:{} has no node", s.id))?;
            let running = shard_pid_on(&*place.host, &place.dir).await.is_some();
            if restart && running && db.config.persistence == Persistence::Disabled {
                // Its only copy may be its memory: on disk before the restart (the
                // restart loads it; it is removed below). A server already shutting
                // down refuses, and the restore saved it before sending the SIGTERM.
                let mut saving = a.clone();
                if let Some(fence) = fence_file.password().await {
                    saving.password = Some(fence);
                }
                if save(&saving).await.is_err() {
                    let _ = save(&a).await;
                }
            }
            if !touched
                && !restart
                && running
                && lift_fence(&a, db.config.password.as_deref(), &fence_file).await
            {
                continue;
            }
            restart_unfenced(cluster, db, server, s, &place, &fence_file).await?;
        }
    }
    crate::db::wire(cluster, db)
        .await
        .map_err(|e| e.to_string())?;
    if db.config.persistence == Persistence::Disabled && (touched || restart) {
        for s in db.masters() {
            let place = Place::of(cluster, db, server, s.id)?;
            place.remove(&place.dir.join(shard_dir::RDB_FILE)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A master that fails the proof is named as `verify db` names it, by shard and
    /// address, not by its address alone.
    #[tokio::test]
    async fn a_failing_proof_names_the_shard_and_its_address() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = ShardAddr {
            host: "127.0.0.1".into(),
            port,
            password: None,
            transport: crate::server::Transport::Plain,
        };
        let digest = crate::persist::ContentDigest::new(0);
        let e = prove(&[], Some(digest), &[(7, addr)]).await.unwrap_err();
        assert!(
            e.starts_with(&format!(
                "the content proof could not run: redis:7 (127.0.0.1:{port}): "
            )),
            "{e}"
        );
    }
}
