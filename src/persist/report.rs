//! What checking a persistence file finds: the report handed to `recover list`,
//! `check file` and `--json`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::slot::SlotRange;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// When set, every key whose hash slot falls outside is counted (with examples).
    pub slots: Option<SlotRange>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Rdb,
    /// A Redis 7 `appendonlydir/`: manifest, base and incr files.
    AofMultiPart,
    /// A single `appendonly.aof` (Redis before 7), possibly with an RDB preamble.
    AofSingle,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    /// Ends mid-record; for an AOF, `valid_len` says how much can be kept.
    Truncated,
    Corrupt,
    /// Written in a format version this reader (and so likely the server) does not know.
    UnsupportedVersion,
    /// Missing, not permitted, or not a file this reader knows how to read.
    Unreadable,
    /// Valid, but holds keys whose hash slot is outside the range it was checked
    /// against (`check file ... slots a-b`).
    KeysOutsideSlots,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Truncated => "truncated",
            Verdict::Corrupt => "corrupt",
            Verdict::UnsupportedVersion => "unsupported version",
            Verdict::Unreadable => "unreadable",
            Verdict::KeysOutsideSlots => "keys outside slots",
        })
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Rdb => "rdb",
            FileKind::AofMultiPart => "aof (multi-part)",
            FileKind::AofSingle => "aof",
        })
    }
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The file the fault is in (for an AOF directory: the manifest or one part).
    pub file: PathBuf,
    pub offset: u64,
    /// What the reader expected to find at `offset`.
    pub expected: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub kind: FileKind,
    pub verdict: Verdict,
    pub fault: Option<Fault>,
    /// Of the RDB, or of the AOF's RDB preamble.
    pub rdb_version: Option<u32>,
    /// AUX `redis-ver` / `valkey-ver`.
    pub server_version: Option<String>,
    /// The engine that wrote the RDB (or the AOF's RDB base): `valkey` for a `VALKEY`
    /// magic or a `valkey-ver` field, `redis` for a `redis-ver` field alone; unknown for
    /// a file with neither (RDB before version 7, a RESP-only AOF).
    pub engine: Option<&'static str>,
    /// Unix seconds: AUX `ctime` of an RDB, else the newest file's modification time
    /// (for an AOF: when its data was last written, the newest of its base's `ctime` and
    /// its parts' modification times). [`FileReport::created_from`] names which.
    pub created: Option<i64>,
    /// What `created` is the time of: `ctime` (the RDB's own field, when it was saved)
    /// or `mtime of <file>` (a file's modification time: an RDB without `ctime`, or the
    /// AOF part written last).
    #[serde(default)]
    pub created_from: Option<String>,
    /// Keys per logical database. For an RDB: every key it holds (including those already
    /// expired, and excluding empty collections Redis drops on load). For an AOF: what
    /// replaying it leaves (see `keys_exact`).
    pub keys_per_db: BTreeMap<u32, u64>,
    pub keys: u64,
    /// Whether `keys` (and the expiry counts) are exact. Always for an RDB; for an AOF,
    /// false when a command could delete keys as a side effect, or more keys were touched
    /// than the fingerprint set holds (58.7 million: see `warnings`).
    pub keys_exact: bool,
    /// Why `keys` is not exact, when it is not.
    pub keys_estimate_why: Option<String>,
    /// Keys with an expiry, and those whose expiry had passed when the check ran (a
    /// master loading an RDB drops them; one loading an AOF loads them and its expiry
    /// cycle removes them soon after). For an AOF, followed through every command that
    /// sets, keeps or clears a TTL; relative TTLs count from the load, so never as passed.
    pub expires: u64,
    pub expired: u64,
    /// The same per logical database (databases with none left out).
    pub expires_per_db: BTreeMap<u32, u64>,
    pub expired_per_db: BTreeMap<u32, u64>,
    pub keys_outside_slots: u64,
    pub outside_examples: Vec<String>,
    /// Bytes read: the file, or all the files an AOF directory's manifest names.
    pub bytes: u64,
    /// For a truncated AOF: the length of its last file that holds complete records only.
    pub valid_len: Option<u64>,
    /// Things worth knowing that do not make the file bad (bounded).
    pub warnings: Vec<String>,
    /// Keys whose values are damaged where a load does not look (the file loads, the key
    /// is there, and a read that walks to the damage stops the server): "`key` in
    /// database N at offset M" (the first 16; `warnings` says more of each).
    pub damaged_values: Vec<String>,
    /// Checked earlier in this run (this shell or script) and unchanged since: same
    /// device, inode, size, mtime and ctime (ns) of every file; not read again.
    pub from_cache: bool,
}

impl FileReport {
    /// Who wrote the file: `valkey 8.1.1`, `redis 7.0.15`, or `valkey` (magic, no
    /// version field); `None` when the file does not say.
    pub fn writer(&self) -> Option<String> {
        match (self.engine, &self.server_version) {
            (Some(e), Some(v)) => Some(format!("{e} {v}")),
            (Some(e), None) => Some(e.to_string()),
            (None, _) => None,
        }
    }

    pub(crate) fn new(path: PathBuf, kind: FileKind) -> Self {
        FileReport {
            path,
            kind,
            verdict: Verdict::Ok,
            fault: None,
            rdb_version: None,
            server_version: None,
            engine: None,
            created: None,
            created_from: None,
            keys_per_db: BTreeMap::new(),
            keys: 0,
            keys_exact: true,
            keys_estimate_why: None,
            expires: 0,
            expired: 0,
            expires_per_db: BTreeMap::new(),
            expired_per_db: BTreeMap::new(),
            keys_outside_slots: 0,
            outside_examples: Vec::new(),
            bytes: 0,
            valid_len: None,
            warnings: Vec::new(),
            damaged_values: Vec::new(),
            from_cache: false,
        }
    }

    pub(crate) fn fail(&mut self, verdict: Verdict, file: PathBuf, offset: u64, expected: String) {
        self.verdict = verdict;
        self.fault = Some(Fault {
            file,
            offset,
            expected,
        });
    }
}
