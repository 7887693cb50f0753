//! [`ShardDir`]: the one owner of a shard directory's layout and of the files and process
//! in it. `<persistent path>/redis/db-<db>/shard-<shard>/` holds `redis.conf`,
//! `redis.pid`, `redis.log`, the data (`dump.rdb`, `appendonlydir`), the identity file
//! `lazarus-shard.json` (the last resort of `cluster recover`) and, while recovery fills
//! it, the `lazarus-recovering` marker. Beside the database directories,
//! `redis/db-<db>.deleted.json` is a deleted database's tombstone. Nothing else spells these names; the walkers
//! [`db_dirs_in`] and [`shard_dirs_in`] are how everyone else finds them on a disk.
//!
//! A `ShardDir` knows nothing of the CCS: `db` (and recovery) build it from the CCS, and
//! the identity document is whatever serialisable type the caller gives.

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::host::{local, Host, NodeId, NodePath};

/// Under a persistent (or recovery) path: the directory of all shard data.
pub const REDIS_DIR: &str = "redis";
/// `db-<id>`: a database's directory under [`REDIS_DIR`].
pub const DB_PREFIX: &str = "db-";
/// `shard-<id>`: a shard's directory under its database's.
pub const SHARD_PREFIX: &str = "shard-";
pub const CONF_FILE: &str = "redis.conf";
pub const PID_FILE: &str = "redis.pid";
pub const LOG_FILE: &str = "redis.log";
pub const RDB_FILE: &str = "dump.rdb";
pub const AOF_DIR: &str = "appendonlydir";
/// The single-file AOF of servers before Redis 7.
pub const AOF_FILE: &str = "appendonly.aof";
pub const NODES_CONF: &str = "nodes.conf";
/// The shard's identity document: who it belongs to, written atomically beside its data.
pub const IDENTITY_FILE: &str = "lazarus-shard.json";
/// Left in a shard directory while recovery fills it: its presence says the data files
/// there are recovery's own, so a later run may replace them.
pub const MARKER_FILE: &str = "lazarus-recovering";

/// Where a restore sets a shard's data aside while it replaces it (put back by its
/// roll-back, removed once it succeeded): until then the only copy of that data.
pub const RESTORE_OLD_DIR: &str = ".lazarus-restore-old";
/// Where a restore that finished moves the data it had set aside, to remove it there: the
/// restored data has served clients since, so that data is no longer the shard's and
/// nothing puts it back (a shell dying while it is removed leaves only clutter).
pub const RESTORE_REPLACED_DIR: &str = ".lazarus-restore-replaced";
/// In [`RESTORE_OLD_DIR`]: the name of the restore task that set the data aside.
pub const RESTORE_TASK_FILE: &str = "lazarus-restore-task";
/// The fence password while a restore fences the shard (mode 0600, beside its
/// redis.conf which holds the real one).
pub const FENCE_FILE: &str = ".lazarus-fence";

/// The files a server loads keys from at its start: with `appendonly no` only the RDB;
/// with `appendonly yes` the multi-part AOF's directory or an old single-file AOF, else
/// the RDB (Redis 7 and Valkey load it and write the AOF's base from it). `nodes.conf`
/// is no data: a directory that kept it and lost these starts its server empty.
pub fn key_files(aof: bool) -> &'static [&'static str] {
    if aof {
        &[AOF_DIR, AOF_FILE, RDB_FILE]
    } else {
        &[RDB_FILE]
    }
}

/// Files a shard directory holds data in (with recovery's temporary copies of them);
/// anything else there is configuration or logs.
pub const DATA_FILES: &[&str] = &[
    RDB_FILE,
    AOF_DIR,
    AOF_FILE,
    NODES_CONF,
    ".dump.rdb.lazarus-tmp",
    ".appendonlydir.lazarus-tmp",
    ".appendonly.aof.lazarus-tmp",
];

/// `<root>/redis/db-<db>`.
pub fn db_dir_under(root: &Path, db: u64) -> PathBuf {
    root.join(REDIS_DIR).join(format!("{DB_PREFIX}{db}"))
}

/// What follows `db-<id>` in the name of a deleted database's tombstone,
/// `<root>/redis/db-<id>.deleted.json` (the document is the caller's).
pub const TOMBSTONE_SUFFIX: &str = ".deleted.json";

/// `<root>/redis/db-<db>.deleted.json`: the tombstone of a deleted database, beside where
/// its directory was.
pub fn tombstone_under(root: &Path, db: u64) -> PathBuf {
    root.join(REDIS_DIR)
        .join(format!("{DB_PREFIX}{db}{TOMBSTONE_SUFFIX}"))
}

/// The database id a tombstone's file name (under [`REDIS_DIR`]) carries, if it is one.
pub fn tombstone_id(name: &str) -> Option<u64> {
    id_in_name(name.strip_suffix(TOMBSTONE_SUFFIX)?, DB_PREFIX)
}

/// `<root>/redis/db-<db>/shard-<shard>`.
pub fn shard_path_under(root: &Path, db: u64, shard: u64) -> PathBuf {
    db_dir_under(root, db).join(format!("{SHARD_PREFIX}{shard}"))
}

/// Every database directory under a persistent (or recovery) path,
/// `<root>/redis/db-<id>`, in id order; an unreadable directory yields nothing (callers
/// that must report it check it themselves). Read on this machine.
pub fn db_dirs_in(root: &Path) -> Vec<(u64, PathBuf)> {
    id_dirs(&root.join(REDIS_DIR), DB_PREFIX)
}

/// Every shard directory of a database directory, `<db dir>/shard-<id>`, in id order.
pub fn shard_dirs_in(db_dir: &Path) -> Vec<(u64, PathBuf)> {
    id_dirs(db_dir, SHARD_PREFIX)
}

/// The directory of shard `shard` of database `db` a live server runs from, judged by
/// what it says of itself (INFO server `config_file`: Lazarus starts every shard with the
/// `redis.conf` of its own `redis/db-<db>/shard-<shard>`): `(dir, root)`, root being the
/// persistent path it lies under. Else why the server is not that shard, a phrase that
/// follows the server's address (`answers, but from no configuration file: ...`): another
/// program holds the shard's port.
pub fn served_from(info: &super::Info, db: u64, shard: u64) -> Result<(PathBuf, PathBuf), String> {
    let Some(conf) = info.get("config_file").filter(|c| !c.is_empty()) else {
        return Err(
            "answers, but from no configuration file: not a shard Lazarus started".to_string(),
        );
    };
    let Some(dir) = Path::new(conf).parent() else {
        return Err(format!("runs with `{conf}`"));
    };
    let expected = format!("{REDIS_DIR}/{DB_PREFIX}{db}/{SHARD_PREFIX}{shard}");
    match dir
        .ends_with(&expected)
        .then(|| dir.ancestors().nth(3))
        .flatten()
    {
        Some(root) => Ok((dir.to_path_buf(), root.to_path_buf())),
        None => Err(format!(
            "runs in `{}`, not in a directory of redis:{shard}",
            dir.display()
        )),
    }
}

/// `db-<n>` / `shard-<n>`: the id in a directory name, if it is one of ours.
pub(crate) fn id_in_name(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Sorted subdirectories of `dir` whose names carry an id with `prefix`; an unreadable
/// directory yields nothing (callers that must report it check it themselves).
fn id_dirs(dir: &Path, prefix: &str) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| {
            let id = id_in_name(e.file_name().to_str()?, prefix)?;
            Some((id, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Whether recovery started server `pid` in `dir`: the directory carries recovery's
/// marker and either the marker names the pid, or the server wrote its pidfile (naming
/// it) after the marker was made (a run killed between the start and the note).
pub async fn started_by_recovery(host: &dyn Host, dir: &Path, pid: u32) -> bool {
    let marker = dir.join(MARKER_FILE);
    let Ok(text) = host.read(&marker).await else {
        return false;
    };
    if String::from_utf8_lossy(&text).lines().any(|l| {
        l.strip_prefix("server ")
            .and_then(|p| p.trim().parse().ok())
            == Some(pid)
    }) {
        return true;
    }
    let pidfile = dir.join(PID_FILE);
    let written = |m: std::io::Result<crate::host::Metadata>| m.ok().and_then(|m| m.modified);
    super::read_pid_on(host, dir).await == Some(pid)
        && matches!(
            (written(host.metadata(&marker).await), written(host.metadata(&pidfile).await)),
            (Some(m), Some(p)) if p >= m
        )
}

/// The server a recovery cut short left running in `dir` ([`started_by_recovery`] judges
/// it, as the next recovery does before it stops it): its pid, if one runs there.
pub async fn recovery_leftover(host: &dyn Host, dir: &Path) -> Option<u32> {
    host.metadata(&dir.join(MARKER_FILE)).await.ok()?;
    let pid = super::shard_pid_on(host, dir).await?;
    started_by_recovery(host, dir, pid).await.then_some(pid)
}

/// One shard's directory on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardDir {
    at: NodePath,
}

/// What reading an identity file found: one reader, each caller decides what a missing
/// or damaged file means for it.
#[derive(Debug)]
pub enum IdentityRead<T> {
    Found(T),
    Missing,
    Unreadable(io::Error),
    /// Not an identity document: the bytes (for an offset) and the parse error.
    Corrupt(Vec<u8>, serde_json::Error),
}

impl<T: DeserializeOwned> IdentityRead<T> {
    /// An identity file's bytes, read on whichever host holds it.
    pub fn parse(bytes: Vec<u8>) -> IdentityRead<T> {
        match serde_json::from_slice::<T>(&bytes) {
            Ok(identity) => IdentityRead::Found(identity),
            Err(e) => IdentityRead::Corrupt(bytes, e),
        }
    }

    /// What reading an identity file gave, on whichever host: absent is `Missing`.
    pub fn from_read(read: io::Result<Vec<u8>>) -> IdentityRead<T> {
        match read {
            Err(e) if e.kind() == io::ErrorKind::NotFound => IdentityRead::Missing,
            Err(e) => IdentityRead::Unreadable(e),
            Ok(bytes) => IdentityRead::parse(bytes),
        }
    }
}

impl<T> IdentityRead<T> {
    pub fn found(self) -> Option<T> {
        match self {
            IdentityRead::Found(t) => Some(t),
            _ => None,
        }
    }
}

impl ShardDir {
    /// `<root>/redis/db-<db>/shard-<shard>` on `node`.
    pub fn under(node: NodeId, root: &Path, db: u64, shard: u64) -> ShardDir {
        ShardDir::at(node, shard_path_under(root, db, shard))
    }

    /// A shard directory found on disk (a walk of `redis/`, a recovery path).
    pub fn at(node: NodeId, path: impl Into<PathBuf>) -> ShardDir {
        ShardDir {
            at: NodePath::new(node, path),
        }
    }

    pub fn node_path(&self) -> &NodePath {
        &self.at
    }

    pub fn path(&self) -> &Path {
        &self.at.path
    }

    pub fn conf(&self) -> PathBuf {
        self.at.path.join(CONF_FILE)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.at.path.join(PID_FILE)
    }

    pub fn log(&self) -> PathBuf {
        self.at.path.join(LOG_FILE)
    }

    pub fn identity_file(&self) -> PathBuf {
        self.at.path.join(IDENTITY_FILE)
    }

    pub fn marker_file(&self) -> PathBuf {
        self.at.path.join(MARKER_FILE)
    }

    /// Creates the directory (and its parents), owner only: its files hold the password
    /// and the keys.
    pub fn prepare(&self) -> io::Result<()> {
        local::create_private_dir(self.path())
    }

    /// Writes the identity file atomically (unique temporary name, fsync of the file and
    /// of the directory, rename), mode 0600: the same guarantees as the CCS's own write.
    pub fn write_identity<T: Serialize>(&self, identity: &T) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(identity).map_err(io::Error::other)?;
        local::write_private(&self.identity_file(), &json)
    }

    /// Reads the identity file: the one reader of it.
    pub fn read_identity<T: DeserializeOwned>(&self) -> IdentityRead<T> {
        IdentityRead::from_read(std::fs::read(self.identity_file()))
    }

    /// The pid of the server running in this directory, proven by its working directory.
    pub fn pid(&self) -> Option<u32> {
        super::process::shard_pid(self.path())
    }

    /// Stops the server running here (SIGTERM, waiting for it to save and exit). Returns
    /// whether one was running.
    pub async fn stop(&self) -> Result<bool, super::ServerError> {
        super::process::stop_shard(self.path()).await
    }

    /// The last `lines` lines of the server's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        super::process::log_tail(self.path(), lines)
    }

    /// The data files present in the directory (see [`DATA_FILES`]).
    pub fn data_files(&self) -> Vec<PathBuf> {
        DATA_FILES
            .iter()
            .map(|f| self.at.path.join(f))
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .collect()
    }

    /// Whether recovery's marker is here (the data is recovery's own).
    pub fn has_marker(&self) -> bool {
        self.marker_file().exists()
    }

    /// Leaves recovery's marker, naming this process.
    pub fn set_marker(&self) -> io::Result<()> {
        std::fs::write(self.marker_file(), format!("pid {}\n", std::process::id()))
    }

    /// Removes recovery's marker; a missing one is no error.
    pub fn clear_marker(&self) -> io::Result<()> {
        local::remove(&self.marker_file())
    }
}

/// Whether a restore's fence file lies in shard directory `dir` on `host`: the shard's
/// password is one no client knows until that restore unfences it.
pub async fn fenced(host: &dyn Host, dir: &Path) -> bool {
    host.metadata(&dir.join(FENCE_FILE)).await.is_ok()
}

/// Data a restore set aside in a shard directory ([`RESTORE_OLD_DIR`]) and neither put
/// back nor replaced: the shard's own data, whose only copy it is. The shard must not
/// start without it (it would start empty or with the run's file), and nothing but that
/// restore's roll-back or success may remove it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAside {
    /// The shard directory.
    pub shard_dir: PathBuf,
    /// The restore task that set it aside, as it wrote itself down there (unnamed when
    /// an older Lazarus did).
    pub task: Option<String>,
}

impl SetAside {
    /// What a restore set aside in shard directory `dir` on `host`: none when no data
    /// file is there.
    pub async fn in_dir(host: &dyn Host, dir: &Path) -> Option<SetAside> {
        let old = dir.join(RESTORE_OLD_DIR);
        let names = host.list(&old).await.ok()?;
        let data = [RDB_FILE, AOF_DIR, AOF_FILE];
        if !names.iter().any(|e| data.contains(&e.name.as_str())) {
            return None;
        }
        let task = host.read(&old.join(RESTORE_TASK_FILE)).await.ok();
        let task = task
            .and_then(|b| String::from_utf8(b).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        Some(SetAside {
            shard_dir: dir.to_path_buf(),
            task,
        })
    }

    /// Where the data lies.
    pub fn old_dir(&self) -> PathBuf {
        self.shard_dir.join(RESTORE_OLD_DIR)
    }
}

impl std::fmt::Display for SetAside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let old = self.old_dir();
        match &self.task {
            Some(task) => write!(
                f,
                "restore task `{task}` set the shard's data aside in `{}` (its only copy) and did not finish: `restore task retry {task}` puts it back and restores again, `restore task delete {task}` puts it back and drops the task",
                old.display()
            ),
            None => write!(
                f,
                "a restore set the shard's data aside in `{}` (its only copy) and did not finish: with the shard stopped, move its files back into `{}` and remove `{}`",
                old.display(),
                self.shard_dir.display(),
                old.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_names() {
        assert_eq!(id_in_name("db-12", "db-"), Some(12));
        assert_eq!(id_in_name("db-", "db-"), None);
        assert_eq!(id_in_name("db-1x", "db-"), None);
        assert_eq!(id_in_name("db-+1", "db-"), None);
        assert_eq!(id_in_name("shard-3", "db-"), None);
    }

    #[test]
    fn layout_and_identity_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let dir = ShardDir::under(1, t.path(), 3, 4);
        assert_eq!(dir.path(), t.path().join("redis/db-3/shard-4"));
        dir.prepare().unwrap();
        assert!(matches!(
            dir.read_identity::<serde_json::Value>(),
            IdentityRead::Missing
        ));
        dir.write_identity(&serde_json::json!({"shard_id": 4}))
            .unwrap();
        let back: serde_json::Value = dir.read_identity().found().unwrap();
        assert_eq!(back["shard_id"], 4);
        std::fs::write(dir.identity_file(), b"{").unwrap();
        assert!(matches!(
            dir.read_identity::<serde_json::Value>(),
            IdentityRead::Corrupt(..)
        ));
        assert!(dir.data_files().is_empty());
        std::fs::write(dir.path().join(RDB_FILE), b"x").unwrap();
        assert_eq!(dir.data_files(), [dir.path().join(RDB_FILE)]);
        dir.set_marker().unwrap();
        assert!(dir.has_marker());
        dir.clear_marker().unwrap();
        dir.clear_marker().unwrap();
        assert!(!dir.has_marker());
    }
}
