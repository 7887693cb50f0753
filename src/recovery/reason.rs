//! Why a shard's old files cannot be used, in words an operator acts on.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ccs::{Id, SlotRange};

/// Why a shard's files cannot be used.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    NoRecoveryPath {
        node: Id,
    },
    /// The node's recovery path itself is gone: more likely a wrong path than lost data.
    RecoveryPathNotFound {
        path: PathBuf,
    },
    /// No directory for this shard under an existing recovery path.
    LocationNotFound {
        path: PathBuf,
    },
    PermissionDenied {
        path: PathBuf,
        detail: String,
    },
    FileMissing {
        dir: PathBuf,
    },
    Corrupted {
        file: PathBuf,
        offset: u64,
        expected: String,
    },
    /// An AOF that ends mid-record (a crash while appending): the reader can keep the
    /// complete records before it, in a copy.
    TruncatedAof {
        file: PathBuf,
        offset: u64,
        expected: String,
        source: PathBuf,
        /// The database's name, for the `recover db` that loads the fixed copy.
        db: String,
    },
    Incompatible {
        file: PathBuf,
        rdb_version: u32,
        max: Option<u32>,
        server: String,
        /// The reader decodes it whole, so `replay` can write it as commands (an RDB's
        /// keys; an AOF's base keys and then its commands).
        replayable: bool,
    },
    Foreign {
        path: PathBuf,
        detail: String,
    },
    KeysOutsideSlots {
        file: PathBuf,
        count: u64,
        slots: SlotRange,
        examples: Vec<String>,
    },
    /// Valid, but older than data Lazarus knows the database had (`newer`): loading it
    /// would bring an old state back and lose every write since.
    Stale {
        file: PathBuf,
        newer: String,
        older_by_ms: i64,
        /// What to do instead.
        next: String,
    },
}

impl Reason {
    /// Nothing was ever there (as opposed to something there that cannot be used): only
    /// then may a database come back empty without the operator saying so.
    pub fn is_absence(&self) -> bool {
        matches!(
            self,
            Reason::LocationNotFound { .. } | Reason::FileMissing { .. }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoRecoveryPath { node } => write!(
                f,
                "storage location not found: node:{node} has no recovery path (set it with `node {node} recovery_path set <path>`)"
            ),
            Reason::RecoveryPathNotFound { path } => {
                write!(f, "storage location not found: recovery path `{}` does not exist", path.display())
            }
            Reason::LocationNotFound { path } => {
                write!(f, "storage location not found: `{}`", path.display())
            }
            Reason::PermissionDenied { path, detail } => {
                write!(f, "permission denied: `{}`: {detail}", path.display())
            }
            Reason::FileMissing { dir } => write!(
                f,
                "file missing: no `dump.rdb`, `appendonlydir` or `appendonly.aof` in `{}`",
                dir.display()
            ),
            Reason::Corrupted { file, offset, expected } => write!(
                f,
                "corrupted: `{}` at byte {offset}: expected {expected}",
                file.display()
            ),
            Reason::TruncatedAof {
                file,
                offset,
                expected,
                source,
                db,
            } => write!(
                f,
                "corrupted: `{}` is truncated at byte {offset}: expected {expected}; to keep its complete records: {}",
                file.display(),
                keep_complete_records(source, db)
            ),
            Reason::Incompatible {
                file,
                rdb_version,
                max,
                server,
                replayable,
            } => {
                match max {
                    Some(max) => write!(
                        f,
                        "incompatible: `{}` is RDB version {rdb_version}, {server} loads up to {max}",
                        file.display()
                    ),
                    None => write!(
                        f,
                        "incompatible: `{}` is RDB version {rdb_version}, unknown to {server}",
                        file.display()
                    ),
                }?;
                match replayable {
                    true => f.write_str(
                        "; `replay` can write its keys as commands instead (`recover db <db> replay`)",
                    ),
                    false => Ok(()),
                }
            }
            Reason::Foreign { path, detail } => {
                write!(f, "foreign: `{}` {detail}", path.display())
            }
            Reason::Stale { file, newer, older_by_ms, next } => write!(
                f,
                "stale: `{}` is {} older than {newer}, data this database had later: {next}",
                file.display(),
                match older_by_ms {
                    // Written within the same second: still an older state.
                    ms if *ms < 1000 => format!("{ms} ms"),
                    ms => super::plan::format_age(ms / 1000),
                }
            ),
            Reason::KeysOutsideSlots { file, count, slots, examples } => {
                write!(f, "keys outside the shard's slots {slots}: `{}` holds {count}", file.display())?;
                if !examples.is_empty() {
                    write!(f, " (e.g. `{}`)", examples.join("`, `"))?;
                }
                Ok(())
            }
        }
    }
}

pub(crate) fn io_reason(path: &Path, e: io::Error, is_root: bool) -> Reason {
    match e.kind() {
        io::ErrorKind::NotFound if is_root => Reason::RecoveryPathNotFound {
            path: path.to_path_buf(),
        },
        io::ErrorKind::NotFound => Reason::LocationNotFound {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => Reason::PermissionDenied {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => Reason::Corrupted {
            file: path.to_path_buf(),
            offset: 0,
            expected: format!("a readable file ({e})"),
        },
    }
}

/// The whole way from a truncated AOF `source` to its complete records loaded: a copy cut
/// at its last complete record, put where recovery reads it.
pub(super) fn keep_complete_records(source: &Path, db: &str) -> String {
    format!(
        "`check file {} fix <dest>` writes a copy cut at its last complete record; {}",
        source.display(),
        crate::persist::way_to_load(source, "the copy", db)
    )
}
