//! The file reader's report, reduced to what planning needs.

use std::path::Path;

use super::plan::{CheckVerdict, SourceCheck};
use crate::ccs::SlotRange;
use crate::persist::{check_path, CheckOptions, FileReport, Verdict};

/// Validates a candidate source with the real reader (a full parse of every byte).
pub fn reader_check(path: &Path, slots: Option<SlotRange>) -> SourceCheck {
    SourceCheck::from(&check_path(path, &CheckOptions { slots }))
}

impl From<&FileReport> for SourceCheck {
    fn from(r: &FileReport) -> SourceCheck {
        SourceCheck {
            verdict: match r.verdict {
                // Planning weighs keys outside a shard's slots itself
                // (`keys_outside_slots`).
                Verdict::Ok | Verdict::KeysOutsideSlots => CheckVerdict::Ok,
                Verdict::Truncated => CheckVerdict::Truncated,
                // Permissions are checked before the reader runs, so what is left here is
                // a file of no format the reader knows: corruption, with its fault.
                Verdict::Corrupt | Verdict::Unreadable => CheckVerdict::Corrupt,
                Verdict::UnsupportedVersion => CheckVerdict::UnsupportedVersion,
            },
            fault: r
                .fault
                .as_ref()
                .map(|f| (f.file.clone(), f.offset, f.expected.clone())),
            rdb_version: r.rdb_version,
            created: r.created,
            keys_per_db: r.keys_per_db.clone(),
            keys: r.keys,
            keys_exact: r.keys_exact,
            keys_estimate_why: r.keys_estimate_why.clone(),
            expires: r.expires,
            expired: r.expired,
            expires_per_db: r.expires_per_db.clone(),
            expired_per_db: r.expired_per_db.clone(),
            keys_outside_slots: r.keys_outside_slots,
            outside_examples: r.outside_examples.clone(),
            bytes: r.bytes,
            damaged_values: r.damaged_values.clone(),
        }
    }
}
