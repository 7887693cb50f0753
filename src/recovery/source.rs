//! Candidate sources of a shard's data: what the reader says of one, and the one chosen.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::reason::{io_reason, Reason};
use crate::ccs::{Id, SlotRange};
use crate::host::unix_nanos;

/// What the file reader said of one candidate source (a file or an `appendonlydir/`),
/// reduced to what planning needs. Kept apart from the reader's own report so planning
/// can be tested with hand-made verdicts.
#[derive(Clone, Debug, Default)]
pub struct SourceCheck {
    pub verdict: CheckVerdict,
    /// Where parsing stopped: file, byte offset, what was expected there.
    pub fault: Option<(PathBuf, u64, String)>,
    pub rdb_version: Option<u32>,
    /// Unix seconds the data was written (RDB `ctime`), when the file says.
    pub created: Option<i64>,
    pub keys_per_db: BTreeMap<u32, u64>,
    pub keys: u64,
    /// False when the reader could not follow an AOF's key set exactly.
    pub keys_exact: bool,
    /// Why `keys` is only an estimate, when it is.
    pub keys_estimate_why: Option<String>,
    /// Keys carrying a TTL: they may expire between validation and load.
    pub expires: u64,
    /// Of those, already passed when checked: an RDB's are dropped on load.
    pub expired: u64,
    /// The same per logical database.
    pub expires_per_db: BTreeMap<u32, u64>,
    pub expired_per_db: BTreeMap<u32, u64>,
    pub keys_outside_slots: u64,
    pub outside_examples: Vec<String>,
    pub bytes: u64,
    /// Keys whose values are damaged where a load does not look (see
    /// `FileReport::damaged_values`): the file loads, the keys are broken.
    pub damaged_values: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckVerdict {
    #[default]
    Ok,
    Truncated,
    Corrupt,
    UnsupportedVersion,
}

/// Checks one candidate source; `slots` is the shard's slot range for a cluster database.
pub type Checker<'a> = dyn Fn(&Path, Option<SlotRange>) -> SourceCheck + Sync + 'a;

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `appendonlydir/` (manifest, base and incr files).
    AofDir,
    /// A single-file `appendonly.aof` (before Redis 7).
    AofFile,
    Rdb,
}

impl SourceKind {
    /// Whether the server must start with `appendonly yes` to load this source.
    pub fn is_aof(self) -> bool {
        matches!(self, SourceKind::AofDir | SourceKind::AofFile)
    }

    /// The name the source takes inside a shard directory.
    pub fn file_name(self) -> &'static str {
        match self {
            SourceKind::AofDir => crate::server::shard_dir::AOF_DIR,
            SourceKind::AofFile => crate::server::shard_dir::AOF_FILE,
            SourceKind::Rdb => crate::server::shard_dir::RDB_FILE,
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_aof() { "AOF" } else { "snapshot" })
    }
}

/// The chosen source of one master shard's data.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// The file or `appendonlydir/` under the recovery path.
    pub path: PathBuf,
    /// Whose directory it is in: the master's own, or one of its replicas'.
    pub from_shard: Id,
    pub keys: u64,
    pub keys_exact: bool,
    pub keys_per_db: BTreeMap<u32, u64>,
    /// Why `keys` is only an estimate, when it is.
    pub keys_estimate_why: Option<String>,
    pub expires: u64,
    pub expired: u64,
    pub expires_per_db: BTreeMap<u32, u64>,
    pub expired_per_db: BTreeMap<u32, u64>,
    pub bytes: u64,
    /// Keys it holds damaged where the load does not look: they load, broken, and the
    /// recovery line says to UNLINK them before a client reads one.
    pub damaged_values: Vec<String>,
    /// Unix seconds of the newest data in it; what "freshest" compares.
    pub written: i64,
    /// Unix nanoseconds of its modification time (its newest file's, for an
    /// `appendonlydir/`) when it was validated: what the CCS records once it is loaded,
    /// and what the stale check compares (two writes within a second apart).
    #[serde(skip)]
    pub modified_ns: i64,
    /// The very file the last recovery or restore loaded into this master (its
    /// modification time is the one the CCS recorded then).
    pub loaded_before: bool,
    /// An RDB newer than the target server loads: its keys are decoded and written as
    /// commands (`replay`) into a master started empty, instead of the file being loaded.
    pub replay: bool,
}

impl Source {
    pub fn age_secs(&self, now: i64) -> i64 {
        (now - self.written).max(0)
    }
}

/// Opens every file of a candidate for reading (so a permission problem is named as such,
/// not as corruption) and returns the newest modification time, in unix nanoseconds. A
/// candidate that is not a regular file (a FIFO would hold the open forever) is refused
/// as such; in a directory, only its regular files are opened (validation judges the
/// ones its manifest names).
pub(crate) fn readable_mtime(path: &Path) -> Result<i64, Reason> {
    let meta = fs::metadata(path).map_err(|e| io_reason(path, e, false))?;
    let mut newest = mtime(&meta);
    if meta.is_dir() {
        // The files' times, not the directory's: listing changes are not data.
        newest = 0;
        let entries = fs::read_dir(path).map_err(|e| io_reason(path, e, false))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_reason(path, e, false))?;
            let file = entry.path();
            if fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                fs::File::open(&file).map_err(|e| io_reason(&file, e, false))?;
            }
            let meta = entry.metadata().map_err(|e| io_reason(&file, e, false))?;
            newest = newest.max(mtime(&meta));
        }
        if newest == 0 {
            newest = mtime(&fs::metadata(path).map_err(|e| io_reason(path, e, false))?);
        }
    } else {
        crate::persist::open_regular(path).map_err(|e| io_reason(path, e, false))?;
    }
    Ok(newest)
}

fn mtime(meta: &fs::Metadata) -> i64 {
    meta.modified().map_or(0, unix_nanos)
}

/// Nanoseconds to whole seconds.
pub fn nanos_to_secs(ns: i64) -> i64 {
    ns.div_euclid(NANOS_PER_SEC)
}

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO where a file should be is refused at once, by what it is (opening it would
    /// wait for a writer forever); one inside an AOF directory is not opened.
    #[test]
    fn a_fifo_candidate_is_refused_without_waiting() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("dump.rdb");
        let aof = t.path().join("appendonlydir");
        fs::create_dir(&aof).unwrap();
        fs::write(aof.join("appendonly.aof.manifest"), b"").unwrap();
        for p in [fifo.clone(), aof.join("appendonly.aof.1.base.rdb")] {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: a valid C string path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send((readable_mtime(&fifo), readable_mtime(&aof)));
        });
        let (file, dir) = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("answered without waiting for a writer");
        let reason = file.unwrap_err().to_string();
        assert!(reason.contains("not a regular file: a FIFO"), "{reason}");
        assert!(dir.is_ok(), "{dir:?}");
    }
}
