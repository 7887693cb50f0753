//! The persistence file reader: validates Redis / Valkey RDB and AOF files byte by byte,
//! streaming, in bounded memory, and says whether each can be trusted.
//!
//! # Layout
//! - [`check_path`] / [`check_paths`]: the entry points; a path is an RDB, a single-file
//!   AOF (told apart by content) or an `appendonlydir/`. They never panic and never write.
//! - `report`: [`FileReport`] and its parts, serialisable for `--json`.
//! - `source`: the byte source (a 1 MiB buffer), offsets, running CRC-64; files from
//!   8 MiB up are filled by `prefetch`, a read-ahead thread on a second core handing over
//!   1 MiB chunks from a ring of 3 (which also runs the CRC); smaller ones by `read`.
//! - `rdb`, `rdb_value`, `stream`: the RDB format, values and streams.
//! - `lzf`, `listpack`, `ziplist`, `intset`, `zipmap`: encodings inside values.
//! - `aof`, `resp`, `manifest`, `aof_keys`, `aof_replay`: AOF files, their records, and
//!   key and TTL counting by replay.
//! - `commands`: the commands (and arities) Redis 7.0 and Valkey 8.1 know, for AOF records.
//! - `cache`: reports remembered for the process by file identity (no second read).
//! - `fp_set`: 64-bit key fingerprints in a flat table (exact counts in bounded memory);
//!   `words`: its big tables' memory (2 MiB pages for those probed at random).
//! - `slot`: hash slots ([`key_slot`]) and the slot-range check.
//! - `fix`: a truncated AOF's good prefix, copied elsewhere.
//! - `value`, `value_decode`, `entries`, `dump`: values decoded into one canonical
//!   [`Value`] (or a [`ValueSink`]), from a whole RDB ([`read_rdb`]) or a DUMP payload
//!   ([`decode_dump`]), and encoded back as a payload `RESTORE` takes ([`encode_dump`]).
//! - `digest`: the order-independent content digest per slot ([`digest_of_rdb`]).
//! - `aof_content`: an AOF's base and commands replayed into canonical values for the
//!   same digest ([`digest_of_aof`]; the one part that holds a data set in memory).
//!
//! Memory stays bounded whatever the file: the 1 MiB buffer (with read-ahead, the ring's
//! chunks, each with 1 MiB of headroom for a record straddling two), blobs up to 32 MiB
//! (bigger ones are only skipped, with a warning), and for AOF key counting up to 58.7
//! million key fingerprints (512 MiB at most; 8-21 bytes a key: see `fp_set`).

mod aof;
mod aof_content;
mod aof_damaged;
mod aof_keys;
mod aof_replay;
mod cache;
mod check;
mod commands;
mod digest;
mod dump;
mod entries;
mod error;
mod fix;
mod fp_set;
mod intset;
mod listpack;
mod lua_load;
mod lzf;
pub(crate) mod manifest;
mod mapped;
mod open;
mod prefetch;
mod rdb;
mod rdb_parts;
#[cfg(test)]
mod rdb_tests;
mod rdb_value;
mod report;
mod resp;
mod slot;
mod source;
mod stream;
mod value;
mod value_decode;
mod words;
mod ziplist;
mod zipmap;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub use aof_content::{
    aof_parts, aof_parts_listed, digest_of_aof, read_aof_file, read_aof_stream, AofContentError,
    OnCommand,
};
pub(crate) use cache::note_own_link;
pub use check::MANIFEST_CAP;
pub use digest::{
    digest_of_rdb, digest_of_rdb_stream, ContentDigest, DigestBuilder, DigestOptions, ExpiringKey,
    KeyState, SettledDigest, SlotSum, ValueHasher,
};
pub use dump::{decode_dump, dump_header, encode_dump, DecodeError, EncodeError};
pub use entries::{
    rdb_entries, read_rdb, read_rdb_stream, EntryVisitor, RdbEntry, RdbHeader, RdbReadError,
};
pub use fix::{fix_truncated, way_to_load, FixError, FixOutcome};
pub(crate) use prefetch::{cores_free, on_one_core, one_core_on_this_thread};
pub(crate) use rdb::{
    created_in_head as rdb_created_in_head, head_of as rdb_head_of, RdbHead,
    HEAD_BYTES as RDB_HEAD_BYTES,
};
pub use report::{CheckOptions, Fault, FileKind, FileReport, Verdict};
pub use slot::{key_slot, SlotRange, SLOT_COUNT};
pub use source::crc64;
pub(crate) use source::{reading_stop, reading_stops_when};
pub use value::{
    module_name, Consumer, ConsumerGroup, HashField, Kind, PendingEntry, Stream, StreamEntry,
    StreamId, Value, ValueBuilder, ValueSink,
};

pub(crate) use dump::decode_dump_into;
pub use open::open_regular;
pub(crate) use slot::SlotCheck;
pub(crate) use value_decode::Scratch;

/// Checks one RDB file, single-file AOF or AOF directory. Never panics, never writes.
/// A path checked before in this process whose files are unchanged (same device, inode,
/// size, mtime and ctime) is not read again: its report comes back with `from_cache`.
pub fn check_path(path: &Path, opts: &CheckOptions) -> FileReport {
    if let Some(r) = cache::lookup(path, opts) {
        return r;
    }
    let ids = cache::before(path);
    let r = check::check(path, opts);
    cache::store(path, opts, ids, &r);
    r
}

/// Checks an RDB arriving as a stream (a replication transfer) while it arrives; `len`
/// when the stream's length is known up front. Never panics; reads `reader` to the RDB's
/// end (and one byte further, to see whether anything follows).
pub fn check_rdb_stream<R: std::io::Read>(
    name: &Path,
    reader: R,
    len: Option<u64>,
    opts: &CheckOptions,
) -> FileReport {
    check::check_rdb_reader(name, reader, len, opts)
}

/// Checks several paths at once on all cores; reports come back in the order given.
pub fn check_paths(paths: &[PathBuf], opts: &CheckOptions) -> Vec<FileReport> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(paths.len());
    if workers <= 1 {
        return paths.iter().map(|p| check_path(p, opts)).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<FileReport>>> = Mutex::new(vec![None; paths.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                // Every core already reads a file: no read-ahead thread, no second part of
                // an RDB, on top.
                prefetch::one_core_on_this_thread();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let report = check_path(path, opts);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(report);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .zip(paths)
        .map(|(r, p)| r.unwrap_or_else(|| check_path(p, opts)))
        .collect()
}

/// The newest RDB version a server of this version can load: `"7.0.15"` → 10, 7.2 → 11,
/// 7.4 and 8.x → 12; Valkey (say so: `"valkey 8.0.1"`, or the `--version` line) 7.2-8.x
/// → 11, 9.0-9.1 → 80, 9.2 → 81. `None` when no version number is found.
pub fn max_rdb_version_for(server_version: &str) -> Option<u32> {
    let lower = server_version.to_ascii_lowercase();
    let valkey = lower.contains("valkey");
    // The first `digits.digits` in the text ("Redis server v=7.0.15 sha=..." works too).
    let at = lower
        .char_indices()
        .find(|&(i, c)| c.is_ascii_digit() && lower[i..].contains('.'))
        .map(|(i, _)| i)?;
    let mut nums = lower[at..]
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse::<u32>().ok());
    let major = nums.next()??;
    let minor = nums.next().flatten().unwrap_or(0);
    let v = (major, minor);
    Some(if valkey {
        match v {
            (..=7, _) => 11,
            (8, _) => 11,
            (9, 0..=1) => 80,
            _ => 81,
        }
    } else {
        match v {
            (0..=1, _) | (2, 0..=3) => 4,
            (2, 4..=5) => 5,
            (2, _) | (3, 0..=1) => 6,
            (3, _) => 7,
            (4, _) => 8,
            (5, _) | (6, _) => 9,
            (7, 0..=1) => 10,
            (7, 2..=3) => 11,
            _ => 12,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_server_versions_to_rdb_versions() {
        assert_eq!(max_rdb_version_for("7.0.15"), Some(10));
        assert_eq!(
            max_rdb_version_for("Redis server v=7.0.15 sha=00000000:0"),
            Some(10)
        );
        assert_eq!(max_rdb_version_for("7.2.4"), Some(11));
        assert_eq!(max_rdb_version_for("7.4.1"), Some(12));
        assert_eq!(max_rdb_version_for("6.2.14"), Some(9));
        assert_eq!(max_rdb_version_for("valkey 8.0.1"), Some(11));
        assert_eq!(max_rdb_version_for("Valkey server v=9.0.0"), Some(80));
        assert_eq!(max_rdb_version_for("nothing"), None);
    }
}
