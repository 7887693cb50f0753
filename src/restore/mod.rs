//! Restoring a database to a backup run: the checks before anything changes (`verify`),
//! then the replacement (`start`): fence clients, stage the run's files beside the old
//! data, swap them in, load, check key counts against the manifest, re-form replicas and
//! the Redis Cluster, unfence, and only then remove the old data. Any failure before the
//! unfence puts the old data back and serving ([`roll_back`]).
//!
//! Same shard count only: a run of N shards restores into a database of N shards with
//! the same slot ranges (restoring into another shard count needs RESTORE payloads built
//! from the run's values).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backup::{Manifest, PlainRead, Repository, ShardEntry, StoredFile};
use crate::ccs::{Cluster, Database, Id, Persistence, RestoreStep, Role};
use crate::db::{start_shard, BringUp, KeyBounds, LoadCheckError, Timeouts};
use crate::host::{Host, LocalHost};
use crate::persist::{check_path, check_rdb_stream, max_rdb_version_for, CheckOptions, Verdict};
use crate::server::shard_dir;
use crate::server::{
    connect, info, shard_pid_on, stop_shard_on, ConfOptions, Servers, ShardAddr, StartOptions,
};

/// Where a shard's old data waits while the restore runs, inside its directory.
pub const OLD_DIR: &str = ".lazarus-restore-old";
/// A run's file staged beside the shard's data before the swap.
pub const STAGED: &str = ".lazarus-restore.rdb";
/// The fence password while a shard is fenced (mode 0600, beside its redis.conf which
/// holds the real one), so a restore cut short can unfence a shard it did not restart.
pub const FENCE_FILE: &str = ".lazarus-fence";
const TIMEOUT: Duration = Duration::from_secs(10);
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// One check of `verify`, as printed.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
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

    fn add(&mut self, check: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            check: check.into(),
            ok,
            detail: detail.into(),
        });
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
    /// The run may be another cluster's.
    pub from_other_cluster: bool,
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
}

/// How far the clocks of this machine and a repository may be apart: run ids, `latest`
/// and retention all go by time.
pub const CLOCK_SKEW_MS: i64 = 5_000;

/// The clients connected to a shard (address, and name when set), this connection and
/// replication links left out.
async fn client_list(a: &ShardAddr) -> Result<Vec<String>, String> {
    let mut con = connect(a, TIMEOUT).await.map_err(|e| e.to_string())?;
    let text: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let field = |k: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            };
            if field("id")?.parse::<i64>().ok()? == me {
                return None;
            }
            let addr = field("addr")?;
            Some(match field("name").filter(|n| !n.is_empty()) {
                Some(n) => format!("{addr} ({n})"),
                None => addr.to_string(),
            })
        })
        .collect())
}

/// The `major.minor` of a version string.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let v = v.rsplit(' ').next()?;
    let mut it = v.split('.').map(|n| n.trim().parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// The checks before anything changes. `db` is the target database when it exists;
/// `server` the `redis-server` that will load the files.
pub async fn verify(
    cluster: &Cluster,
    db: Option<&Database>,
    spec: &RestoreSpec,
    server: &Servers,
) -> (VerifyReport, Option<Manifest>) {
    let mut v = VerifyReport::default();
    let run_dir = spec.repo.run_shown(&spec.run);
    let m = match spec.repo.manifest(&spec.run) {
        Ok(m) => {
            v.add(
                "manifest",
                true,
                format!("`{run_dir}` is complete and matches its checksum"),
            );
            m
        }
        Err(e) => {
            v.add("manifest", false, e.to_string());
            return (v, None);
        }
    };
    if m.cluster_id != cluster.cluster_id {
        let both = format!(
            "written by cluster `{}` (id {}), restored into cluster `{}` (id {})",
            m.cluster_name, m.cluster_id, cluster.name, cluster.cluster_id
        );
        if spec.from_other_cluster {
            v.add("cluster", true, format!("{both}: `from_other_cluster`"));
        } else {
            v.add(
                "cluster",
                false,
                format!("{both}: add `from_other_cluster` to restore another cluster's run"),
            );
        }
    }
    if !spec.repo.is_local() {
        let repo = spec.repo.clone();
        let skew = tokio::task::spawn_blocking(move || repo.clock_skew())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        match skew {
            Ok(ms) if ms.abs() <= CLOCK_SKEW_MS => v.add(
                "clock",
                true,
                format!(
                    "`{}` is reachable; its clock and this machine's agree within {} s",
                    spec.repo,
                    CLOCK_SKEW_MS / 1000
                ),
            ),
            Ok(ms) => v.add(
                "clock",
                false,
                format!(
                    "the clock of `{}` is {:+.1} s from this machine's (more than {} s): fix NTP first, `latest` and retention go by time",
                    spec.repo,
                    ms as f64 / 1000.0,
                    CLOCK_SKEW_MS / 1000
                ),
            ),
            Err(e) => v.add("repository", false, e),
        }
    }

    // `target_path` is a directory of this machine: it stages the files of shards on this
    // machine only; shards on other hosts stage beside their data, through their host.
    if let (Some(db), Some(tp)) = (db, &spec.target_path) {
        let remote: Vec<String> = db
            .masters()
            .filter(|s| server.hosts().is_remote(s.node))
            .map(|s| {
                format!(
                    "redis:{} on node:{} ({})",
                    s.id,
                    s.node,
                    server.host(s.node).name()
                )
            })
            .collect();
        if !remote.is_empty() {
            v.add(
                "target path",
                false,
                format!(
                    "`{}` is a directory of this machine, and {} run on other hosts: leave `target_path` out to stage each file beside its shard's data",
                    tp.display(),
                    remote.join(", ")
                ),
            );
        }
    }

    // Every file: present, its sha256, the reader.
    let defer = spec.defer_file_checks && db.is_some_and(|d| same_layout(d, &m));
    for s in &m.shards {
        let stored = spec.repo.file(&spec.run, &s.file);
        let what = format!("file {}", s.file);
        if defer {
            v.add(
                &what,
                true,
                "its sha256 and the reader's pass run once, as it is staged",
            );
            continue;
        }
        let opts = CheckOptions {
            slots: s.slots.filter(|_| m.db.shards > 1),
        };
        let local = stored.local_path().filter(|_| s.is_plain());
        let Some(path) = local else {
            let (e, p, identity) = (s.clone(), stored.clone(), spec.identity.clone());
            let res = tokio::task::spawn_blocking(move || {
                read_stored(&p, &e, identity.as_deref(), &opts)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            match res {
                Ok(keys) => v.add(
                    &what,
                    true,
                    format!(
                        "stored and plain sha256 match; decoded{} and read through: {keys} keys",
                        if s.encrypted { " (decrypted)" } else { "" }
                    ),
                ),
                Err(e) => v.add(&what, false, e),
            }
            continue;
        };
        // The sha256 and the reader's pass over the file at once, on two threads.
        let (p1, p2) = (path.clone(), path.clone());
        let sum = tokio::task::spawn_blocking(move || sha256_file(&p1));
        let read = tokio::task::spawn_blocking(move || check_path(&p2, &opts));
        let (sum, report) = (sum.await, read.await.ok());
        let sum = match sum {
            Ok(Ok(sum)) => sum,
            Ok(Err(e)) => {
                v.add(&what, false, format!("`{}`: {e}", path.display()));
                continue;
            }
            Err(e) => {
                v.add(&what, false, e.to_string());
                continue;
            }
        };
        if sum != s.sha256 {
            v.add(
                &what,
                false,
                format!(
                    "`{}` has sha256 {sum}, the manifest says {}: the file was changed or damaged",
                    path.display(),
                    s.sha256
                ),
            );
            continue;
        }
        match report {
            Some(r) if r.verdict == Verdict::Ok && r.keys == s.keys => v.add(
                &what,
                true,
                format!(
                    "sha256 matches; the reader read it through: {} keys",
                    r.keys
                ),
            ),
            Some(r) if r.verdict == Verdict::Ok => v.add(
                &what,
                false,
                format!(
                    "the reader counts {} keys, the manifest says {}",
                    r.keys, s.keys
                ),
            ),
            Some(r) => {
                let at = r
                    .fault
                    .map(|f| format!(" at offset {}: expected {}", f.offset, f.expected))
                    .unwrap_or_default();
                v.add(
                    &what,
                    false,
                    format!("`{}` is {}{at}", path.display(), r.verdict),
                );
            }
            None => v.add(&what, false, "the reader did not finish"),
        }
    }

    // The server that will load them.
    let target_version = target_version(cluster, db, server).await;
    let can_load = max_rdb_version_for(&target_version);
    let newest = m.shards.iter().map(|s| s.rdb_version).max().unwrap_or(0);
    let replays = can_load.is_some_and(|max| newest > max) && spec.replay;
    match can_load {
        Some(max) if newest <= max => v.add(
            "rdb version",
            true,
            format!("server {target_version} loads RDB version {max} and older; the run has {newest}"),
        ),
        Some(max) if spec.replay => v.add(
            "rdb version",
            true,
            format!("the run's files are RDB version {newest}, server {target_version} loads up to {max}: `replay` writes every key as RESTORE in encodings it loads (module values and hash-field TTLs are refused)"),
        ),
        Some(max) => v.add(
            "rdb version",
            false,
            format!("the run's files are RDB version {newest}, server {target_version} loads up to {max}: create the task with `replay` to write its keys as commands instead"),
        ),
        None => v.add("rdb version", false, format!("cannot tell what server `{target_version}` loads")),
    }
    let backup_version = m
        .shards
        .first()
        .map(|s| format!("{} {}", s.engine, s.server_version))
        .unwrap_or_default();
    match (major_minor(&backup_version), major_minor(&target_version)) {
        _ if replays => v.add(
            "engine version",
            true,
            format!("backup {backup_version}, server {target_version}: replayed key by key"),
        ),
        (Some(b), Some(t)) if b == t => v.add(
            "engine version",
            true,
            format!("backup {backup_version}, server {target_version}"),
        ),
        (Some(b), Some(t)) if t > b && spec.allow_newer_server => v.add(
            "engine version",
            true,
            format!("backup {backup_version}, server {target_version} (newer, allowed)"),
        ),
        _ => v.add(
            "engine version",
            false,
            format!(
                "backup {backup_version}, server {target_version}: major.minor differ (`allow_newer_server` takes a newer server)"
            ),
        ),
    }

    if let Some(tp) = &spec.target_path {
        match check_target_path(cluster, spec, tp, m.bytes()) {
            Ok(detail) => v.add("target path", true, detail),
            Err(why) => v.add("target path", false, why),
        }
    }
    let Some(db) = db else {
        v.add(
            "target",
            true,
            format!(
                "the database does not exist: it will be created from the manifest ({} shard(s), replication {}, persistence {})",
                m.db.shards,
                if m.db.replication { "enabled" } else { "disabled" },
                m.db.persistence
            ),
        );
        return (v, Some(m));
    };
    let masters: Vec<_> = db.masters().collect();
    let mut clients = Vec::new();
    for s in &db.shards {
        if let Some(a) = crate::db::shard_addr(cluster, db, s.id) {
            if let Ok(list) = client_list(&a).await {
                clients.extend(list.into_iter().map(|c| format!("{c} on redis:{}", s.id)));
            }
        }
    }
    if clients.is_empty() {
        v.add("clients", true, "no client is connected to the database");
    } else {
        let shown: Vec<&str> = clients.iter().take(10).map(String::as_str).collect();
        v.add(
            "clients",
            true,
            format!(
                "the restore will disconnect {} client(s): {}{}",
                clients.len(),
                shown.join(", "),
                if clients.len() > 10 { ", ..." } else { "" }
            ),
        );
    }
    let same = same_layout(db, &m);
    let other_dbs: Vec<u32> = m
        .shards
        .iter()
        .flat_map(|s| s.keys_per_db.keys().copied())
        .filter(|&n| n != 0)
        .collect();
    if replays && spec.force {
        v.add("shards", false, "`replay` writes keys one by one, which needs an empty database: it cannot be combined with `force`".to_string());
    } else if same && !replays {
        v.add(
            "shards",
            true,
            format!(
                "{} shard(s) with the same slot ranges: the files are loaded as they are",
                masters.len()
            ),
        );
    } else if db.config.shards > 1 && !other_dbs.is_empty() {
        v.add(
            "shards",
            false,
            format!(
                "the run has keys in logical db {}; db:{} is a Redis Cluster (db 0 only)",
                other_dbs[0], db.id
            ),
        );
    } else if spec.force {
        v.add("shards", false, format!("the run has {} shard(s), db:{} has {}: keys are restored one by one, which needs an empty database (`force` is for the same shard layout)", m.shards.len(), db.id, masters.len()));
    } else {
        v.add("shards", true, format!("the run has {} shard(s), db:{} has {}: every key is routed by its slot and written with RESTORE ... ABSTTL", m.shards.len(), db.id, masters.len()));
    }
    let mut keys_now = 0;
    let mut down = Vec::new();
    for s in &masters {
        match crate::db::shard_addr(cluster, db, s.id) {
            Some(a) => match info(&a, "keyspace", TIMEOUT).await {
                Ok(i) => keys_now += i.keys(),
                Err(e) => down.push(format!("redis:{}: {e}", s.id)),
            },
            None => down.push(format!("redis:{} has no node", s.id)),
        }
    }
    v.keys_now = keys_now;
    if !down.is_empty() {
        v.add(
            "target",
            false,
            format!("shards do not answer: {}", down.join("; ")),
        );
    } else if keys_now == 0 {
        v.add(
            "target",
            true,
            format!("db:{} `{}` holds no keys", db.id, db.config.name),
        );
    } else if spec.force {
        v.add(
            "target",
            true,
            format!("db:{} holds {keys_now} keys: `force` replaces them", db.id),
        );
    } else {
        v.add(
            "target",
            false,
            format!(
                "db:{} `{}` holds {keys_now} keys: `force` would replace them",
                db.id, db.config.name
            ),
        );
    }
    let bytes = m.bytes();
    match db.config.memory {
        Some(limit) if bytes > limit => v.add(
            "memory",
            false,
            format!("the run's files hold {bytes} bytes, more than the memory limit of {limit}"),
        ),
        Some(limit) => v.add(
            "memory",
            true,
            format!("{bytes} bytes of files within the limit of {limit} (in memory it takes more)"),
        ),
        None => v.add("memory", true, "no memory limit"),
    }
    let mut problems = Vec::new();
    for s in &db.shards {
        let Ok(place) = Place::of(cluster, db, server, s.id) else {
            continue;
        };
        if let Some(problem) = place.unfit(cluster, server, bytes).await {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        v.add(
            "target path",
            true,
            "every shard directory is writable with room for the files",
        );
    } else {
        v.add("target path", false, problems.join("; "));
    }
    (v, Some(m))
}

/// The server that will load a run into `db` (`None`: a database to create), as verify
/// names it: Redis bare (`7.0.15`), Valkey named (`valkey 8.1.8`). The running one's
/// when it answers, else the oldest binary among its nodes (every node's when new).
async fn target_version(cluster: &Cluster, db: Option<&Database>, server: &Servers) -> String {
    if let Some(v) = match db {
        Some(d) => running_version(cluster, d).await,
        None => None,
    } {
        return v;
    }
    let nodes: Vec<Id> = match db {
        Some(d) => d.shards.iter().map(|s| s.node).collect(),
        None => cluster.nodes.keys().copied().collect(),
    };
    server
        .oldest_of(nodes)
        .map(|s| match s.engine {
            "valkey" => s.label(),
            _ => s.version.clone(),
        })
        .unwrap_or_default()
}

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
    let target = target_version(cluster, Some(db), server).await;
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

async fn running_version(cluster: &Cluster, db: &Database) -> Option<String> {
    let m = db.masters().next()?;
    let a = crate::db::shard_addr(cluster, db, m.id)?;
    let i = info(&a, "server", TIMEOUT).await.ok()?;
    // Redis as its bare version, as `redis-server --version` gives it; Valkey named.
    i.engine_version().map(|(engine, v)| match engine {
        "valkey" => format!("valkey {v}"),
        _ => v.to_string(),
    })
}

/// `target_path`: a writable directory with room for the run's files, not the backup's
/// own path (nor inside it, nor holding it), and outside every node's recovery path
/// (nor holding one): staging there must never touch a backup or the files recovery reads.
fn check_target_path(
    cluster: &Cluster,
    spec: &RestoreSpec,
    tp: &Path,
    bytes: u64,
) -> Result<String, String> {
    let canon = std::fs::canonicalize(tp).map_err(|e| format!("`{}`: {e}", tp.display()))?;
    if !canon.is_dir() {
        return Err(format!("`{}` is not a directory", tp.display()));
    }
    let overlap = |other: &Path| {
        let o = std::fs::canonicalize(other).unwrap_or_else(|_| other.to_path_buf());
        canon.starts_with(&o) || o.starts_with(&canon)
    };
    if let crate::backup::Repository::Local { root: repo } = &spec.repo {
        let run = repo.join(&spec.run);
        if overlap(repo) || overlap(&run) {
            return Err(format!(
                "`{}` and the backup's path `{}` overlap: give a directory apart from the backups",
                tp.display(),
                repo.display()
            ));
        }
    }
    for n in cluster.nodes.values() {
        if let Some(rp) = n.recovery_path.as_deref().filter(|rp| overlap(rp)) {
            return Err(format!(
                "`{}` and node:{}'s recovery path `{}` overlap: staging there could overwrite the files recovery reads",
                tp.display(),
                n.id,
                rp.display()
            ));
        }
    }
    writable(&canon).map_err(|e| format!("`{}`: {e}", tp.display()))?;
    if let Some(free) = free_bytes(&canon) {
        if free < bytes {
            return Err(format!(
                "`{}` has {free} bytes free, the run's files need {bytes}",
                tp.display()
            ));
        }
    }
    Ok(format!(
        "the run's files are staged in `{}` (writable, room for {bytes} bytes), apart from the backups and every recovery path",
        tp.display()
    ))
}

fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".lazarus-probe.{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
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

/// Reads a stored (compressed, encrypted) file through: the stored sha256 and size, the
/// plain RDB's sha256 and size, and the reader's pass over it. The number of keys.
fn read_stored(
    file: &StoredFile,
    e: &ShardEntry,
    identity: Option<&Path>,
    opts: &CheckOptions,
) -> Result<u64, String> {
    let mut plain = PlainRead::open(file, e, identity)?;
    let shown = plain.shown().to_string();
    let report = check_rdb_stream(Path::new(&shown), &mut plain, Some(e.bytes), opts);
    // The rest (the age tag, zstd's end) is read for the digests.
    std::io::copy(&mut plain, &mut std::io::sink())
        .map_err(|err| format!("`{shown}` cannot be decoded: {err}"))?;
    plain.check_stored()?;
    if report.verdict != Verdict::Ok {
        let at = report
            .fault
            .map(|f| format!(" at offset {}: expected {}", f.offset, f.expected))
            .unwrap_or_default();
        return Err(format!(
            "`{shown}` decodes to an RDB that is {}{at}",
            report.verdict
        ));
    }
    plain.finish()?;
    if report.keys != e.keys {
        return Err(format!(
            "the reader counts {} keys, the manifest says {}",
            report.keys, e.keys
        ));
    }
    Ok(report.keys)
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
    let mut plain = PlainRead::open(path, e, identity)?;
    let _ = std::fs::remove_file(dest);
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dest).map_err(|err| format!("`{}`: {err}", dest.display()))?,
    );
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
    if !same_layout(db, m) || needs_replay(cluster, db, m, spec, server).await {
        return by_key(cluster, db, &fence, m, spec, server, step).await;
    }
    let res = replace(cluster, db, &fenced, &fence, m, spec, server, step).await;
    // What `target_path` staged and was not moved into place.
    for s in db.masters() {
        if let (Some(tp), Ok(dir)) = (&spec.target_path, dir_of(cluster, db, s.id)) {
            let _ = std::fs::remove_file(staged_path(Some(tp), db.id, s.id, &dir));
        }
    }
    match res {
        Ok(restored) => {
            step(RestoreStep::RemovingOld);
            for s in &db.shards {
                if let Ok(place) = Place::of(cluster, db, server, s.id) {
                    place.remove(&place.dir.join(OLD_DIR)).await;
                    place.remove(&place.dir.join(STAGED)).await;
                }
            }
            Ok(restored)
        }
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

#[allow(clippy::too_many_arguments)]
async fn replace(
    cluster: &Cluster,
    db: &Database,
    fenced: &Database,
    fence: &str,
    m: &Manifest,
    spec: &RestoreSpec,
    server: &Servers,
    step: &(dyn Fn(RestoreStep) + Send + Sync),
) -> Result<Restored, String> {
    // Which master gets which file: same slots (or the one shard).
    let mut files: BTreeMap<Id, (StoredFile, &crate::backup::ShardEntry)> = BTreeMap::new();
    for d in db.masters() {
        let e = m
            .shards
            .iter()
            .find(|s| s.slots == d.slots || (db.config.shards == 1 && m.shards.len() == 1))
            .ok_or_else(|| format!("no file of the run for redis:{}'s slots", d.id))?;
        files.insert(d.id, (spec.repo.file(&spec.run, &e.file), e));
    }

    step(RestoreStep::Staging);
    // Files staged by hard link, unread: their sha256 is checked while the server loads.
    let mut unread: BTreeMap<Id, (PathBuf, String)> = BTreeMap::new();
    for (&id, (file, e)) in &files {
        let place = Place::of(cluster, db, server, id)?;
        let dir = place.dir.clone();
        if !place.host.is_local() {
            if let Some(tp) = &spec.target_path {
                return Err(format!("`{}` is a directory of this machine and redis:{id} runs on {}: leave `target_path` out", tp.display(), place.host.name()));
            }
            stage_remote(&place, &dir.join(STAGED), file, e, spec.identity.clone())
                .await
                .map_err(|e| {
                    format!(
                        "cannot stage `{file}` in `{}` on {}: {e}",
                        dir.display(),
                        place.host.name()
                    )
                })?;
            continue;
        }
        let staged = staged_path(spec.target_path.as_deref(), db.id, id, &dir);
        let s = staged.clone();
        let persistence = db.config.persistence;
        let (entry, identity) = ((*e).clone(), spec.identity.clone());
        let (f, local) = (file.clone(), file.local_path());
        // One pass per file: read, hashed (stored and plain sha256 against the manifest)
        // and written; the reader's pass is the content digest taken while the servers
        // load, and the server's own CRC-64 check. Only a snapshot database keeps the
        // file as its durable copy: it is synced; an AOF database writes (and syncs) its
        // own AOF from what it loaded; a database without persistence gets a hard link
        // when it can (the server only reads the file, which is removed once loaded, and
        // never writes it in place), hashed through the link in the reader's pass while
        // the server loads it: one pass over the file, on the core the load leaves free.
        // A file that differs from the manifest then fails the load step, and the old
        // data is put back as for any failure after the stop.
        let deferred = tokio::task::spawn_blocking(move || -> Result<Option<PathBuf>, String> {
            if let (Persistence::Disabled, true, Some(local)) =
                (persistence, entry.is_plain(), &local)
            {
                let _ = std::fs::remove_file(&s);
                if std::fs::hard_link(local, &s).is_ok() {
                    return Ok(Some(local.clone()));
                }
            }
            decode_to(
                &f,
                &entry,
                identity.as_deref(),
                &s,
                persistence == Persistence::Snapshot,
            )
            .map(|_| None)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot stage `{file}` in `{}`: {e}", dir.display()))?;
        if let Some(local) = deferred {
            unread.insert(id, (local, e.sha256.clone()));
        }
    }

    step(RestoreStep::Fencing);
    for s in &db.shards {
        let a = crate::db::shard_addr(cluster, db, s.id)
            .ok_or_else(|| format!("redis:{} has no node", s.id))?;
        let file = Place::of(cluster, db, server, s.id)?.fence_file();
        fence_shard(&a, fence, &file)
            .await
            .map_err(|e| format!("redis:{}: {e}", s.id))?;
    }

    step(RestoreStep::Stopping);
    for s in &db.shards {
        let place = Place::of(cluster, db, server, s.id)?;
        if db.config.persistence == Persistence::Disabled && s.role == Role::Master {
            // Its only copy is in memory: keep it on disk until the restore succeeds.
            let mut a = crate::db::shard_addr(cluster, db, s.id)
                .ok_or_else(|| format!("redis:{} has no node", s.id))?;
            a.password = Some(fence.to_string());
            save(&a)
                .await
                .map_err(|e| format!("redis:{}: SAVE: {e}", s.id))?;
        }
        stop_shard_on(&*place.host, &place.dir)
            .await
            .map_err(|e| format!("redis:{}: {e}", s.id))?;
    }

    step(RestoreStep::Swapping);
    for s in &db.shards {
        let place = Place::of(cluster, db, server, s.id)?;
        let (dir, old) = (&place.dir, place.dir.join(OLD_DIR));
        let at = |e: std::io::Error, p: &Path| format!("`{}`: {e}", p.display());
        place
            .host
            .create_private_dir(&old)
            .await
            .map_err(|e| at(e, &old))?;
        // One listing of each directory answers what is to be moved aside.
        let (here, kept) = (place.names(dir).await?, place.names(&old).await?);
        for name in DATA {
            if here.iter().any(|n| n == name) && !kept.iter().any(|n| n == name) {
                let from = dir.join(name);
                place
                    .host
                    .rename(&from, &old.join(name))
                    .await
                    .map_err(|e| at(e, &from))?;
            }
        }
        if s.role == Role::Master {
            let staged = match place.host.is_local() {
                true => staged_path(spec.target_path.as_deref(), db.id, s.id, dir),
                false => dir.join(STAGED),
            };
            move_into(&place, &staged).await?;
        }
    }
    // The files' content digest is taken while the servers load them (the reader's pass
    // over each file, once): a file on this machine where it was loaded from, one on
    // another host from the run's own file, which staging proved to be the same bytes;
    // a file staged unread is hashed in the same pass.
    let mut sources = Vec::new();
    for s in db.masters() {
        let place = Place::of(cluster, db, server, s.id)?;
        sources.push(match place.host.is_local() {
            true => crate::verify::DataSource::Path(place.dir.join(shard_dir::RDB_FILE)),
            false => {
                let (file, e) = &files[&s.id];
                crate::verify::DataSource::Stored {
                    file: file.clone(),
                    entry: Box::new((*e).clone()),
                    identity: spec.identity.clone(),
                }
            }
        });
    }
    let checks: Vec<(crate::verify::DataSource, Option<(PathBuf, String)>)> = db
        .masters()
        .zip(&sources)
        .map(|(s, f)| (f.clone(), unread.get(&s.id).cloned()))
        .collect();
    let file_check = tokio::task::spawn_blocking({
        let digest = !spec.counts_only;
        move || check_loaded(&checks, digest)
    });

    step(RestoreStep::Loading(None));
    let load = StartOptions {
        conf: ConfOptions {
            appendonly: Some(false),
            standalone: true,
        },
        timeout: LOAD_TIMEOUT,
        creating: false,
    };
    // Every master loads at once (step 1 of the bring-up pipeline); the step says how
    // far they are.
    let loading = BringUp::new(cluster, fenced);
    let masters = loading.ids(Role::Master);
    let starting = loading.start(server, &masters, &load);
    tokio::pin!(starting);
    let addrs: Vec<ShardAddr> = fenced
        .masters()
        .filter_map(|s| crate::db::shard_addr(cluster, fenced, s.id))
        .collect();
    let total = m.bytes();
    let started = loop {
        tokio::select! {
            started = &mut starting => break started,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let mut loaded = 0;
        for a in &addrs {
            if let Ok(i) = info(a, "persistence", Duration::from_millis(200)).await {
                loaded += match i.get("loading") {
                    Some("1") => i.get_u64("loading_loaded_bytes").unwrap_or(0),
                    _ => total / addrs.len().max(1) as u64,
                };
            }
        }
        step(RestoreStep::Loading(Some((
            loaded.min(total) >> 20,
            total >> 20,
        ))));
    };
    let mut loaded = Ok(());
    for (_, result) in started {
        if let Err(e) = result {
            loaded = loaded.and(Err(e.to_string()));
        }
    }
    if let Err(e) = loaded {
        // A file that differs from its manifest is named as such, before what the server
        // made of it.
        return Err(match file_check.await.map_err(|e| e.to_string()) {
            Ok(Err(changed)) | Err(changed) => changed,
            Ok(Ok(_)) => e,
        });
    }

    step(RestoreStep::CheckingCounts);
    let mut keys = 0;
    for s in fenced.masters() {
        let (_, e) = &files[&s.id];
        let bounds = KeyBounds {
            per_db: e
                .keys_per_db
                .iter()
                .map(|(&n, &expected)| (n, (expected.saturating_sub(e.expires), expected)))
                .collect(),
            others_empty: false,
        };
        keys += loading
            .check_loaded(s.id, &bounds)
            .await
            .map_err(|err| match err {
                LoadCheckError::Count {
                    logical,
                    loaded,
                    high,
                    ..
                } => format!(
                    "redis:{} loaded {loaded} keys in db {logical}, the run has {high} ({} with a TTL)",
                    s.id, e.expires
                ),
                LoadCheckError::Server(e) => e.to_string(),
            })?;
    }
    // The rest of the bring-up pipeline: persistence, replicas (one at a time: a failure
    // leaves the fewest servers for the roll-back), the slot map or replication, the sync
    // source.
    let up = BringUp::new(cluster, fenced).with_timeouts(Timeouts {
        persist: LOAD_TIMEOUT,
        ..Timeouts::all(crate::db::SETUP_TIMEOUT)
    });
    up.switch_persistence(&[])
        .await
        .map_err(|e| e.to_string())?;

    step(RestoreStep::Reforming);
    let normal = StartOptions {
        conf: ConfOptions::default(),
        timeout: LOAD_TIMEOUT,
        creating: false,
    };
    for id in up.ids(Role::Replica) {
        if let Some((_, Err(e))) = up.start(server, &[id], &normal).await.pop() {
            return Err(e.to_string());
        }
    }
    up.wire().await.map_err(|e| e.to_string())?;

    // Once the cluster is formed (a cluster shard answers no DUMP before), still fenced.
    let checked = file_check.await.map_err(|e| e.to_string())??;
    let content = match checked {
        Some(digest) => {
            step(RestoreStep::Proving);
            Some(prove(&sources, Some(digest), &addrs).await?)
        }
        None => None,
    };

    step(RestoreStep::Unfencing);
    for s in &fenced.shards {
        let a = crate::db::shard_addr(cluster, fenced, s.id)
            .ok_or_else(|| format!("redis:{} has no node", s.id))?;
        let file = Place::of(cluster, db, server, s.id)?.fence_file();
        unfence_shard(&a, db.config.password.as_deref(), Some(&file))
            .await
            .map_err(|e| format!("redis:{}: {e}", s.id))?;
        file.remove().await;
    }
    if db.config.persistence == Persistence::Disabled {
        // A database without persistence starts empty after a restart, as before.
        for s in db.masters() {
            let place = Place::of(cluster, db, server, s.id)?;
            place.remove(&place.dir.join(shard_dir::RDB_FILE)).await;
        }
    }
    Ok(Restored { keys, content })
}

/// The files a restore loads, read while the servers load them, their shards' files on
/// parallel threads: each file's digest (when `digest`), and for a file staged by hard
/// link, unread (`Some((backup file, manifest sha256))`), its sha256 in the same pass.
/// Blocking.
fn check_loaded(
    files: &[(crate::verify::DataSource, Option<(PathBuf, String)>)],
    digest: bool,
) -> Result<Option<crate::persist::ContentDigest>, String> {
    let opts = crate::persist::DigestOptions::default();
    let one = |(source, unread): &(crate::verify::DataSource, Option<(PathBuf, String)>)| {
        let path = match (source, unread) {
            (crate::verify::DataSource::Path(p), Some(_)) => p,
            _ => {
                return match digest {
                    true => crate::verify::digest_of_sources(std::slice::from_ref(source), &opts)
                        .map(Some)
                        .map_err(|e| e.to_string()),
                    false => Ok(None),
                }
            }
        };
        let (sum, d) = crate::verify::sha256_and_digest(path, digest.then_some(&opts))
            .map_err(|e| e.to_string())?;
        if let Some((from, expected)) = unread.as_ref().filter(|(_, x)| *x != sum) {
            return Err(format!(
                "`{}` has sha256 {sum}, the manifest says {expected}: the file was changed or damaged",
                from.display()
            ));
        }
        d.transpose().map_err(|e| e.to_string())
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, files.len().max(1));
    let results: Vec<Result<Option<crate::persist::ContentDigest>, String>> =
        std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(files.len().div_ceil(workers).max(1))
                .map(|c| s.spawn(move || c.iter().map(one).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![Err("a file check panicked".into())])
                })
                .collect()
        });
    let mut total: Option<crate::persist::ContentDigest> = None;
    for r in results {
        if let Some(d) = r? {
            match total.as_mut() {
                Some(t) => t.merge(d),
                None => total = Some(d),
            }
        }
    }
    Ok(match (digest, total) {
        (true, None) => Some(crate::persist::ContentDigest::new(crate::verify::now_ms())),
        (_, t) => t,
    })
}

/// The content proof of a restore: the files' digest (taken already, or now) against the
/// fenced masters'. A difference is an error naming the first keys that differ.
async fn prove(
    files: &[crate::verify::DataSource],
    file_digest: Option<crate::persist::ContentDigest>,
    masters: &[ShardAddr],
) -> Result<crate::verify::Comparison, String> {
    // The shards are fenced: no client reads them while their DUMPs skip LZF.
    let opts = crate::persist::DigestOptions {
        uncompressed_dumps: true,
        server_snapshot: true,
        ..Default::default()
    };
    let c = match file_digest {
        Some(d) => {
            crate::verify::verify_sources_against(files, d, masters, &opts, LOAD_TIMEOUT).await
        }
        None => crate::verify::verify_sources(files, masters, &opts, LOAD_TIMEOUT).await,
    }
    .map_err(|e| format!("the content proof could not run: {e}"))?;
    if c.equal {
        Ok(c)
    } else {
        Err(c.verdict())
    }
}

/// Restores a run into another shard layout key by key; the database was verified empty,
/// so a failure empties it again.
async fn by_key(
    cluster: &Cluster,
    db: &Database,
    fence: &str,
    m: &Manifest,
    spec: &RestoreSpec,
    server: &Servers,
    step: &(dyn Fn(RestoreStep) + Send + Sync),
) -> Result<Restored, String> {
    // Encoded files are decoded beside the first master's data first, before any fence:
    // the keys are read here and written over the network, so when that master is on
    // another host they are decoded into a private directory of this machine instead.
    step(RestoreStep::Decoding);
    let mut files: Vec<PathBuf> = Vec::new();
    let first = db
        .masters()
        .next()
        .map(|s| Place::of(cluster, db, server, s.id))
        .transpose()?;
    let mut own_scratch = None;
    let scratch = match (&spec.target_path, first) {
        (Some(tp), _) => Some(tp.clone()),
        (None, Some(p)) if p.host.is_local() => Some(p.dir),
        (None, Some(_)) => {
            let d = std::env::temp_dir().join(format!(
                "lazarus-restore-{}-db{}",
                std::process::id(),
                db.id
            ));
            crate::host::local::create_private_dir(&d)
                .map_err(|e| format!("`{}`: {e}", d.display()))?;
            own_scratch = Some(d.clone());
            Some(d)
        }
        (None, None) => None,
    };
    for (i, s) in m.shards.iter().enumerate() {
        let stored = spec.repo.file(&spec.run, &s.file);
        match (&scratch, stored.local_path().filter(|_| s.is_plain())) {
            (_, Some(path)) => files.push(path),
            (Some(dir), None) => {
                let dest = dir.join(format!(".lazarus-restore-db{}-{i}.rdb", db.id));
                let (e, d, identity) = (s.clone(), dest.clone(), spec.identity.clone());
                tokio::task::spawn_blocking(move || {
                    decode_to(&stored, &e, identity.as_deref(), &d, false)
                })
                .await
                .map_err(|e| e.to_string())??;
                files.push(dest);
            }
            (None, None) => {
                return Err(
                    "the database has no master shard to decode the run's files beside".into(),
                )
            }
        }
    }
    let decoded: Vec<PathBuf> = files
        .iter()
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".lazarus-restore-"))
        })
        .cloned()
        .collect();
    step(RestoreStep::Fencing);
    let mut fenced_shards = Vec::new();
    let mut res = Ok(0);
    for s in &db.shards {
        let a = crate::db::shard_addr(cluster, db, s.id)
            .ok_or_else(|| format!("redis:{} has no node", s.id))?;
        let file = Place::of(cluster, db, server, s.id)?.fence_file();
        if let Err(e) = fence_shard(&a, fence, &file).await {
            res = Err(format!("redis:{}: {e}", s.id));
            break;
        }
        fenced_shards.push((s.id, a, file));
    }
    if res.is_ok() {
        step(RestoreStep::RestoringKeys(None));
        let targets = crate::replay::targets(cluster, db, fence)?;
        let cluster_mode = db.config.shards > 1;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = done.clone();
        let files = files.clone();
        let mut writing = tokio::task::spawn_blocking(move || {
            crate::replay::write_all(&files, &targets, cluster_mode, &|n| {
                counter.store(n, std::sync::atomic::Ordering::Relaxed)
            })
        });
        let total = m.keys();
        res = loop {
            tokio::select! {
                r = &mut writing => break r.map_err(|e| e.to_string()).and_then(|r| r),
                () = tokio::time::sleep(Duration::from_millis(500)) => step(RestoreStep::RestoringKeys(Some((
                    done.load(std::sync::atomic::Ordering::Relaxed),
                    total,
                )))),
            }
        };
    }
    if res.is_ok() {
        step(RestoreStep::CheckingCounts);
        let mut keys = 0;
        for t in crate::replay::targets(cluster, db, fence)? {
            match info(&t.addr, "keyspace", TIMEOUT).await {
                Ok(i) => keys += i.keys(),
                Err(e) => {
                    res = Err(e.to_string());
                    break;
                }
            }
        }
        let (expected, expires) = (m.keys(), m.shards.iter().map(|s| s.expires).sum::<u64>());
        if res.is_ok() && (keys > expected || keys < expected.saturating_sub(expires)) {
            res = Err(format!(
                "the database holds {keys} keys after the restore, the run has {expected} ({expires} with a TTL)"
            ));
        } else if res.is_ok() {
            res = Ok(keys);
        }
    }
    let mut content = None;
    if res.is_ok() && !spec.counts_only {
        step(RestoreStep::Proving);
        let masters: Vec<ShardAddr> = crate::replay::targets(cluster, db, fence)?
            .into_iter()
            .map(|t| t.addr)
            .collect();
        let sources: Vec<crate::verify::DataSource> = files
            .iter()
            .cloned()
            .map(crate::verify::DataSource::Path)
            .collect();
        match prove(&sources, None, &masters).await {
            Ok(c) => content = Some(c),
            Err(e) => res = Err(e),
        }
    }
    for f in &decoded {
        let _ = std::fs::remove_file(f);
    }
    if let Some(d) = own_scratch {
        let _ = std::fs::remove_dir_all(d);
    }
    if res.is_err() {
        step(RestoreStep::Emptying);
        for t in crate::replay::targets(cluster, db, fence)? {
            if let Ok(mut con) = connect(&t.addr, TIMEOUT).await {
                let _: Result<(), _> = redis::cmd("FLUSHALL").query_async(&mut con).await;
            }
        }
    }
    step(RestoreStep::Unfencing);
    for (id, a, file) in fenced_shards {
        let mut f = a.clone();
        f.password = Some(fence.to_string());
        unfence_shard(&f, db.config.password.as_deref(), Some(&file))
            .await
            .map_err(|e| format!("redis:{id}: {e}"))?;
        file.remove().await;
    }
    res.map(|keys| Restored { keys, content })
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
            if !touched && !restart && running {
                if let Some(fence) = fence_file.password().await {
                    let mut fenced = a.clone();
                    fenced.password = Some(fence);
                    if unfence_shard(&fenced, db.config.password.as_deref(), Some(&fence_file))
                        .await
                        .is_ok()
                    {
                        fence_file.remove().await;
                        continue;
                    }
                }
                if info(&a, "server", Duration::from_secs(2)).await.is_ok() {
                    continue;
                }
            }
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
