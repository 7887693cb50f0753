//! From a path to a [`FileReport`]: tells RDB, single-file AOF and AOF directory apart,
//! runs the passes, and turns the first fault into a verdict.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::aof::{self, db_counts, FirstPass, Part, SecondPass, Touched};
use super::aof_replay::DbCounts;
use super::error::{FaultKind, ParseError};
use super::fp_set::{FpSet, MAX_KEYS};
use super::manifest::{self, PartType};
use super::rdb::{find_repeated_key, is_rdb_head, KeyVisitor, Rdb, RdbOutcome};
use super::rdb_parts;
use super::report::{CheckOptions, FileKind, FileReport, Verdict};
use super::slot::SlotCheck;
use super::source::Source;

/// Manifests bigger than this are refused rather than read.
pub const MANIFEST_CAP: u64 = 16 << 20;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn mtime(path: &Path) -> Option<i64> {
    let t = fs::metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// `at` as the report's time, from `from`, when it is newer than the one it has.
fn newer_time(report: &mut FileReport, at: Option<i64>, from: impl FnOnce() -> String) {
    if at.is_some() && at > report.created {
        report.created = at;
        report.created_from = Some(from());
    }
}

/// `mtime of `name``: a file's modification time, named.
fn mtime_of(path: &Path) -> String {
    let name = path.file_name().unwrap_or(path.as_os_str());
    format!("mtime of `{}`", name.to_string_lossy())
}

fn verdict_of(kind: FaultKind) -> Verdict {
    match kind {
        FaultKind::Truncated => Verdict::Truncated,
        FaultKind::Corrupt => Verdict::Corrupt,
        FaultKind::Unsupported => Verdict::UnsupportedVersion,
    }
}

fn unreadable(report: &mut FileReport, path: &Path, err: &std::io::Error) {
    let why = match err.kind() {
        ErrorKind::NotFound => "an existing file".to_string(),
        ErrorKind::PermissionDenied => "a file this user may read (permission denied)".into(),
        _ => format!("a readable file ({err})"),
    };
    report.fail(Verdict::Unreadable, path.to_path_buf(), 0, why);
}

pub(crate) fn check(path: &Path, opts: &CheckOptions) -> FileReport {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            let mut r = FileReport::new(path.to_path_buf(), FileKind::Rdb);
            unreadable(&mut r, path, &e);
            return r;
        }
    };
    if meta.is_dir() {
        return check_dir(path, opts);
    }
    if path.extension().is_some_and(|e| e == "manifest") {
        if let Some(dir) = path.parent() {
            return check_dir(dir, opts);
        }
    }
    let mut head = [0u8; 6];
    let n = super::open::open_regular(path).and_then(|mut f| read_head(&mut f, &mut head));
    let n = match n {
        Ok(n) => n,
        Err(e) => {
            let mut r = FileReport::new(path.to_path_buf(), FileKind::Rdb);
            unreadable(&mut r, path, &e);
            return r;
        }
    };
    let head = &head[..n];
    let named_aof = path.extension().is_some_and(|e| e == "aof");
    let is_rdb = is_rdb_head(head);
    if matches!(head.first(), Some(b'*' | b'#')) || (named_aof && (is_rdb || head.is_empty())) {
        return check_single_aof(path, opts);
    }
    let report = check_rdb(path, opts);
    if report.kind == FileKind::AofSingle {
        return check_single_aof(path, opts);
    }
    report
}

fn read_head(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Fills the report's version, time and key fields from an RDB's outcome.
fn take_rdb(report: &mut FileReport, out: &RdbOutcome) {
    report.rdb_version = Some(out.version);
    report.server_version.clone_from(&out.server_version);
    report.engine = if out.valkey || out.valkey_aux {
        Some("valkey")
    } else if out.server_version.is_some() {
        Some("redis")
    } else {
        None
    };
    if out.created.is_some() {
        report.created = out.created;
        report.created_from = Some("ctime".into());
    }
    report.expires = out.expires;
    report.expired = out.expired;
    report.expires_per_db = per_db(out.expires_per_db.iter().map(|(&db, e)| (db, e.0)));
    report.expired_per_db = per_db(out.expires_per_db.iter().map(|(&db, e)| (db, e.1)));
    report.warnings.extend(out.warnings.iter().cloned());
    report
        .damaged_values
        .extend(out.damaged_named.iter().cloned());
}

fn per_db(counts: impl Iterator<Item = (u32, u64)>) -> BTreeMap<u32, u64> {
    counts.filter(|&(_, n)| n > 0).collect()
}

/// Keys and TTL counts of an AOF into the report.
fn set_aof_counts(report: &mut FileReport, counts: &BTreeMap<u32, DbCounts>) {
    set_counts(report, counts.iter().map(|(&db, c)| (db, c.keys)).collect());
    report.expires_per_db = per_db(counts.iter().map(|(&db, c)| (db, c.expires)));
    report.expired_per_db = per_db(counts.iter().map(|(&db, c)| (db, c.expired)));
    report.expires = report.expires_per_db.values().sum();
    report.expired = report.expired_per_db.values().sum();
}

fn set_counts(report: &mut FileReport, counts: BTreeMap<u32, u64>) {
    report.keys_per_db = counts.into_iter().filter(|&(_, n)| n > 0).collect();
    report.keys = report.keys_per_db.values().sum();
}

fn take_slots(report: &mut FileReport, slots: Option<SlotCheck>) {
    if let Some(s) = slots {
        if s.full {
            report.warnings.push(format!(
                "more than {MAX_KEYS} distinct keys outside the slots (the most the reader \
                 tracks, in 512 MiB): a key named again past them may count twice"
            ));
        }
        report.keys_outside_slots = s.outside;
        report.outside_examples = s.examples;
    }
}

fn check_rdb(path: &Path, opts: &CheckOptions) -> FileReport {
    let mut report = FileReport::new(path.to_path_buf(), FileKind::Rdb);
    newer_time(&mut report, mtime(path), || mtime_of(path));
    let file = match super::open::open_regular_len(path) {
        Ok(f) => f,
        Err(e) => {
            unreadable(&mut report, path, &e);
            return report;
        }
    };
    report.bytes = file.1;
    let (file, len) = file;
    // A big file with cores to spare (and no keys to visit, which come one at a time) is
    // read in parts at once (`rdb_parts`), each mapped.
    let threads = match opts.slots {
        None => rdb_parts::threads(len),
        Some(_) => 1,
    };
    let later_file = (threads > 1).then(|| file.try_clone().ok()).flatten();
    let mut src = match later_file {
        Some(_) => Source::mapped(file, len).unwrap_or_else(|f| Source::open_file(f, len)),
        None => Source::open_file(file, len),
    };
    let mut slots = opts.slots.map(SlotCheck::new);
    let visitor = slots.as_mut().map(|s| s as &mut dyn KeyVisitor);
    let now = now_ms();
    let mut rdb = Rdb::new(&mut src, visitor, now);
    let (mut result, later) = match later_file {
        Some(f) if rdb.src.is_mapped() => {
            let splits = rdb_parts::splits(len, threads);
            rdb_parts::run(&mut rdb, &f, len, &splits, threads, now)
        }
        _ => (rdb.run(), None),
    };
    if result.is_ok() {
        let candidates = rdb.repeated_keys();
        if !candidates.is_empty() {
            if let Some(e) = find_repeated_key(path, &candidates, now) {
                result = Err(e);
            }
        }
    }
    let out = std::mem::take(&mut rdb.out);
    take_rdb(&mut report, &out);
    set_counts(&mut report, out.keys_per_db);
    take_slots(&mut report, slots);
    // A read that failed, or a mapped file that shrank while it was read (its bytes from
    // there read as zeros): whatever the parse made of them, the file was not read whole.
    let later_io = later
        .as_ref()
        .and_then(|l| Some((l.io_error.clone()?, l.offset)));
    let first_io = src.io_error().map(|e| (e.to_string(), src.offset()));
    if let Some((io, at)) = first_io.or(later_io) {
        let expected = format!("readable data (read error: {io})");
        report.fail(Verdict::Corrupt, path.to_path_buf(), at, expected);
        return report;
    }
    match result {
        Err(e) => {
            let e = e.into_inner();
            report.fail(verdict_of(e.kind), path.to_path_buf(), e.offset, e.expected)
        }
        Ok(()) => {
            let (rest, next) = match later {
                Some(l) => (l.remaining, l.next),
                None => (src.remaining(), src.peek(1).ok().map(|b| b[0])),
            };
            if rest > 0 {
                if next.is_some_and(|b| matches!(b, b'*' | b'#')) {
                    report.kind = FileKind::AofSingle;
                } else {
                    report.warnings.push(format!(
                        "{rest} byte(s) after the end of the RDB, ignored by Redis"
                    ));
                }
            }
        }
    }
    report
}

/// Checks an RDB arriving as a byte stream (a replication transfer): the same passes as
/// for a file, `name` standing for the file in the report. `len` is the stream's length
/// when it is known up front; without it the stream's end is where `reader` returns 0.
pub(crate) fn check_rdb_reader<R: Read>(
    name: &Path,
    reader: R,
    len: Option<u64>,
    opts: &CheckOptions,
) -> FileReport {
    let mut report = FileReport::new(name.to_path_buf(), FileKind::Rdb);
    let mut src = Source::new(reader, 0, len.unwrap_or(u64::MAX));
    let mut slots = opts.slots.map(SlotCheck::new);
    let visitor = slots.as_mut().map(|s| s as &mut dyn KeyVisitor);
    let mut rdb = Rdb::new(&mut src, visitor, now_ms());
    let result = rdb.run();
    let out = std::mem::take(&mut rdb.out);
    take_rdb(&mut report, &out);
    set_counts(&mut report, out.keys_per_db);
    take_slots(&mut report, slots);
    match result {
        Err(e) => {
            let e = e.into_inner();
            let expected = match src.io_error() {
                Some(io) => format!("{} (reading the stream failed: {io})", e.expected),
                None => e.expected,
            };
            report.fail(verdict_of(e.kind), name.to_path_buf(), e.offset, expected)
        }
        Ok(()) => {
            if !src.at_end() {
                report.warnings.push(format!(
                    "bytes after the end of the RDB at offset {}, ignored by Redis",
                    src.offset()
                ));
            }
        }
    }
    report.bytes = src.offset();
    report
}

fn check_single_aof(path: &Path, opts: &CheckOptions) -> FileReport {
    let mut report = FileReport::new(path.to_path_buf(), FileKind::AofSingle);
    let parts = [Part {
        path: path.to_path_buf(),
        base: false,
    }];
    if !check_parts(&parts, opts, &mut report, true) {
        // Read as a base, it named a key twice in runs apart (no rewrite does): its
        // counts are the replay's of every command.
        report = FileReport::new(path.to_path_buf(), FileKind::AofSingle);
        check_parts(&parts, opts, &mut report, false);
    }
    report
}

/// Finds the manifest of an `appendonlydir/`: the one `*.manifest` file in it.
pub(super) fn find_manifest(dir: &Path) -> Result<PathBuf, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("a readable directory ({e})"))?;
    let found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "manifest") && p.is_file())
        .collect();
    choose_manifest(found)
}

/// The manifest among the `*.manifest` files of an AOF directory: the one, or
/// `appendonly.aof.manifest` among several.
pub(super) fn choose_manifest(mut found: Vec<PathBuf>) -> Result<PathBuf, String> {
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err("a `*.manifest` file in the AOF directory".into()),
        _ => found
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n == "appendonly.aof.manifest")
            })
            .cloned()
            .ok_or_else(|| "exactly one `*.manifest` file in the AOF directory".into()),
    }
}

fn check_dir(dir: &Path, opts: &CheckOptions) -> FileReport {
    let mut report = FileReport::new(dir.to_path_buf(), FileKind::AofMultiPart);
    let manifest_path = match find_manifest(dir) {
        Ok(p) => p,
        Err(why) => {
            report.fail(Verdict::Corrupt, dir.to_path_buf(), 0, why);
            return report;
        }
    };
    let text = match super::open::open_regular(&manifest_path).and_then(|f| {
        let mut v = Vec::new();
        f.take(MANIFEST_CAP + 1).read_to_end(&mut v).map(|_| v)
    }) {
        Ok(t) if t.len() as u64 > MANIFEST_CAP => {
            report.fail(
                Verdict::Corrupt,
                manifest_path,
                MANIFEST_CAP,
                "a manifest of at most 16 MiB".into(),
            );
            return report;
        }
        Ok(t) => t,
        Err(e) => {
            unreadable(&mut report, &manifest_path, &e);
            return report;
        }
    };
    let m = match manifest::parse(&text) {
        Ok(m) => m,
        Err(e) => {
            let e = e.into_inner();
            report.fail(Verdict::Corrupt, manifest_path, e.offset, e.expected);
            return report;
        }
    };
    let mut parts = Vec::new();
    for entry in m.base.iter().chain(&m.incrs) {
        let path = dir.join(&entry.name);
        if !path.is_file() {
            let kind = if entry.kind == PartType::Base {
                "base"
            } else {
                "incr"
            };
            // One that is there but is not a regular file (a FIFO would block the read
            // forever) is named as what it is.
            let what = match std::fs::metadata(&path) {
                Ok(meta) => format!(
                    "to be a regular file, not {}",
                    crate::host::local::describe_type(&meta.file_type())
                ),
                Err(_) => "to exist".to_string(),
            };
            report.fail(
                Verdict::Corrupt,
                manifest_path,
                entry.offset,
                format!(
                    "the {kind} file `{}` named on line {} {what}",
                    entry.name, entry.line
                ),
            );
            return report;
        }
        parts.push(Part {
            path,
            base: entry.kind == PartType::Base,
        });
    }
    check_parts(&parts, opts, &mut report, false);
    report
}

/// Walks an AOF's parts in order (pass one), then replays for key counts if needed.
/// `lone`: the one part is a file on its own, read as a base while it looks like one
/// (see `aof::Lone`); `false` when it did not turn out to be one after all (a key named
/// twice in runs apart), and needs reading again without.
fn check_parts(parts: &[Part], opts: &CheckOptions, report: &mut FileReport, lone: bool) -> bool {
    check_parts_with(parts, opts, report, lone, true)
}

/// A base of at least this many bytes has its incremental files walked first (see
/// `FirstPass::prepared`): a base that holds no key (an RDB preamble of none is some
/// hundred bytes) is replayed over in the one pass as before.
#[cfg(not(test))]
const PREPARED_FROM: u64 = 4096;
/// Any base, in tests.
#[cfg(test)]
const PREPARED_FROM: u64 = 1;

/// When `part` (a lone file) starts with an RDB preamble of at least [`PREPARED_FROM`]
/// bytes and the commands after it are found ([`aof::preamble_end_guess`]): where they
/// were taken to start, and the keys they touch (for [`FirstPass::prepared`], as a
/// multi-part AOF's incremental files give them). The file is opened once for all three.
fn commands_after_preamble(part: &Part, now: i64) -> Option<(u64, FpSet)> {
    use std::os::unix::fs::FileExt;
    let file = super::open::open_regular(&part.path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut head = [0u8; 6];
    let n = file.read_at(&mut head, 0).ok()?;
    if !is_rdb_head(&head[..n]) || len < PREPARED_FROM {
        return None;
    }
    let at = aof::preamble_end_guess(&file, len)?;
    let mut touched = Touched::new(now);
    let w = aof::walk_from(part, file, len, at, &mut touched).ok()?;
    // Not even one command from there: not where they start.
    if w.valid_len == at {
        return None;
    }
    Some((at, touched.keys()?))
}

/// [`check_parts`]; `prepare`: the incremental files may be walked first, so that the
/// base is read once (tests compare the two ways).
fn check_parts_with(
    parts: &[Part],
    opts: &CheckOptions,
    report: &mut FileReport,
    lone: bool,
    prepare: bool,
) -> bool {
    let now = now_ms();
    let mut slots = opts.slots.map(SlotCheck::named_again);
    let mut first = FirstPass::new(slots.as_mut(), now);
    if lone {
        first = first.lone();
    }
    let base_size = parts
        .first()
        .filter(|p| p.base)
        .map_or(0, |p| std::fs::metadata(&p.path).map_or(0, |m| m.len()));
    let mut guessed = None;
    let touched = if !prepare || opts.slots.is_some() {
        None
    } else if base_size >= PREPARED_FROM {
        let mut touched = Touched::new(now);
        for part in &parts[1..] {
            // A fault ends the walk here as it ends the first pass there.
            if aof::walk(part, &mut touched, now).map_or(true, |w| w.fault.is_some()) {
                break;
            }
        }
        touched.keys()
    } else if lone && parts.len() == 1 {
        // An old single file with an RDB preamble (Redis 4-6's `appendonly.aof` after a
        // rewrite): its commands are walked first too, from where the preamble is guessed
        // to end, and the guess is checked against where it does (`false` otherwise: read
        // again).
        commands_after_preamble(&parts[0], now).map(|(at, keys)| {
            guessed = Some(at);
            keys
        })
    } else {
        None
    };
    if let Some(keys) = touched {
        first = first.prepared(keys);
    }
    let mut walked = 0;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        // When the data was last written: an incremental part holding commands (an empty
        // one's mtime is only when it was opened); the base counts by its `ctime`, below.
        let holds_writes = !part.base && std::fs::metadata(&part.path).is_ok_and(|m| m.len() > 0);
        if holds_writes || (part.base && parts.len() == 1) {
            newer_time(report, mtime(&part.path), || mtime_of(&part.path));
        }
        let w = match aof::walk(part, &mut first, now) {
            Ok(w) => w,
            Err(e) => {
                unreadable(report, &part.path, &e);
                break;
            }
        };
        report.bytes += w.len;
        walked = i + 1;
        if guessed.is_some() && w.rdb_end != guessed {
            return false;
        }
        report.warnings.extend(w.warning);
        if let Some(f) = w.fault {
            fail_part(report, part, last, f, w.valid_len);
            break;
        }
    }
    first.lone_done();
    let base = first.base.take();
    let mut counts = match &base {
        Some(out) => {
            // The base's ctime is older than the incr files' writes: keep the newest.
            // The base's ctime is older than the incr files' writes: the newest write
            // counts (the base's own mtime when it has no ctime).
            let newest_write = (report.created, report.created_from.take());
            take_rdb(report, out);
            if out.created.is_none() {
                let base = parts.first().filter(|p| p.base);
                if let Some(base) = base {
                    newer_time(report, mtime(&base.path), || mtime_of(&base.path));
                }
            }
            if newest_write.0.is_some() && newest_write.0 >= report.created {
                (report.created, report.created_from) = newest_write;
            }
            db_counts(out)
        }
        None => first.take_resp_base(),
    };
    // Nothing written since a base with no ctime (a RESP base): the newest file's mtime.
    if report.created.is_none() {
        for part in parts {
            newer_time(report, mtime(&part.path), || mtime_of(&part.path));
        }
    }
    if first.lone_base > 0 && first.base_repeated {
        return false;
    }
    let mut exact = first.exact;
    let mut why = first.inexact_why.take();
    let live = first.take_live();
    let (replay_needed, full) = (first.replay_needed, first.full);
    let touched = std::mem::take(&mut first.touched);
    let lone_base = first.lone_base;
    drop(first);
    if full {
        let w = format!(
            "more than {MAX_KEYS} distinct keys touched by incremental commands (the most the \
             reader tracks, in 512 MiB): key and TTL counts are estimates"
        );
        why = Some(w.clone());
        report.warnings.push(w);
    } else if let Some(replay) = live {
        // Replayed in the one pass: the files held no key before the first command.
        if !replay.exact && why.is_none() {
            why = Some("the AOF selects a database a default server does not have (16)".into());
        }
        exact &= replay.exact;
        counts = replay.counts();
    } else if matches!(report.verdict, Verdict::Ok | Verdict::Truncated) && replay_needed {
        let mut second = SecondPass::new(touched, counts.clone(), now).lone(lone_base);
        for part in &parts[..walked] {
            if aof::walk(part, &mut second, now).is_err() {
                exact = false;
            }
        }
        if !second.replay().exact && why.is_none() {
            why = Some("the AOF selects a database a default server does not have (16)".into());
        }
        exact &= second.replay().exact;
        counts = second.replay().counts();
    }
    if !matches!(report.verdict, Verdict::Ok | Verdict::Truncated) {
        exact = false;
        why = Some(format!("the file is {}", report.verdict));
    }
    report.keys_exact = exact;
    if !exact {
        report.keys_estimate_why = why.or_else(|| Some("the AOF could not be replayed".into()));
    }
    set_aof_counts(report, &counts);
    take_slots(report, slots);
    true
}

fn fail_part(report: &mut FileReport, part: &Part, last: bool, f: ParseError, valid_len: u64) {
    let path = part.path.clone();
    let f = f.into_inner();
    match f.kind {
        FaultKind::Truncated if last => {
            report.fail(Verdict::Truncated, path, f.offset, f.expected);
            report.valid_len = Some(valid_len);
        }
        FaultKind::Truncated => report.fail(
            Verdict::Corrupt,
            path,
            f.offset,
            format!("{} (a file that later files build on)", f.expected),
        ),
        kind => report.fail(verdict_of(kind), path, f.offset, f.expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::aof::lone_paths;

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn resp(out: &mut Vec<u8>, args: &[String]) {
        out.extend(crate::persist::resp::tests::encode(args));
    }

    /// A file that starts as a rewrite writes (each key's data, then maybe its
    /// `PEXPIREAT`, in a few databases) for `base` keys, then goes on with whatever
    /// clients write, `tail` commands of it (keys named again, deleted, expired, renamed,
    /// moved, set with TTLs), a few of them sometimes slipped into the base part.
    fn file(rng: &mut Rng, base: u64, tail: u64, slips: u64) -> Vec<u8> {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let now = now_ms();
        let mut out = Vec::new();
        let mut key = 0u64;
        for i in 0..base {
            match rng.below(40) {
                0 => resp(&mut out, &s(&["SELECT", &rng.below(3).to_string()])),
                // Commands that make no key: on a key never written, a stream group.
                1 => resp(&mut out, &s(&["GETEX", &format!("none{i}")])),
                2 => resp(&mut out, &s(&["LSET", &format!("none{i}"), "0", "x"])),
                3 => resp(
                    &mut out,
                    &s(&["XGROUP", "DESTROY", &format!("none{i}"), "g"]),
                ),
                4 => resp(&mut out, &s(&["PING"])),
                _ => {}
            }
            if slips > 0 && rng.below(base.max(1) / slips + 1) == 0 && i > 0 {
                // A key named again, apart from its run.
                let old = format!("k{}", rng.below(key.max(1)));
                match rng.below(3) {
                    0 => resp(&mut out, &s(&["SET", &old, "again"])),
                    1 => resp(&mut out, &s(&["RPUSH", &old, "x"])),
                    _ => {
                        let at = (now + 86_400_000).to_string();
                        resp(&mut out, &s(&["PEXPIREAT", &old, &at]))
                    }
                }
                continue;
            }
            let k = format!("k{key}");
            key += 1;
            for _ in 0..1 + rng.below(3) {
                match rng.below(5) {
                    0 => resp(&mut out, &s(&["SET", &k, "v"])),
                    1 => resp(&mut out, &s(&["RPUSH", &k, "a", "b"])),
                    2 => resp(&mut out, &s(&["SADD", &k, "m"])),
                    3 => resp(&mut out, &s(&["HSET", &k, "f", "v"])),
                    _ => resp(&mut out, &s(&["ZADD", &k, "1", "m"])),
                }
            }
            match rng.below(4) {
                0 => resp(
                    &mut out,
                    &s(&["PEXPIREAT", &k, &(now + 86_400_000).to_string()]),
                ),
                1 => resp(
                    &mut out,
                    &s(&["PEXPIREAT", &k, &(now - 86_400_000).to_string()]),
                ),
                _ => {}
            }
        }
        out.extend(writes(rng, key, tail));
        out
    }

    /// `tail` commands of what clients write, on keys `k0` to `k{keys + 4}`.
    fn writes(rng: &mut Rng, keys: u64, tail: u64) -> Vec<u8> {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let now = now_ms();
        let key = keys;
        let mut out = Vec::new();
        for _ in 0..tail {
            let k = format!("k{}", rng.below(key + 5));
            let c = match rng.below(12) {
                0 => s(&["DEL", &k]),
                1 => s(&["EXPIRE", &k, "1000"]),
                2 => s(&["SET", &k, "v", "EX", "1000"]),
                3 => s(&["SET", &k, "v"]),
                4 => s(&["RENAME", &k, &format!("r{}", rng.below(10))]),
                5 => s(&["MOVE", &k, &rng.below(3).to_string()]),
                6 => s(&["SELECT", &rng.below(3).to_string()]),
                7 => s(&["PERSIST", &k]),
                8 => s(&["INCR", &format!("c{}", rng.below(5))]),
                9 => s(&["PEXPIREAT", &k, &(now - 1000).to_string()]),
                10 => s(&["UNLINK", &k, &format!("k{}", rng.below(key + 5))]),
                _ => s(&["RPUSH", &k, "x"]),
            };
            resp(&mut out, &c);
        }
        out
    }

    fn counts(r: &FileReport) -> String {
        format!(
            "{:?} keys {:?} expires {:?} expired {:?} exact {} ({:?})",
            r.verdict,
            r.keys_per_db,
            r.expires_per_db,
            r.expired_per_db,
            r.keys_exact,
            r.keys_estimate_why
        )
    }

    /// A lone AOF read as a base while it looks like a rewrite's, then as incremental
    /// commands (or replayed from its start, or read again, when it turns out not to be
    /// one), counts what replaying every command counts: files with short and long
    /// rewrite-like beginnings, with and without commands after, with keys named again
    /// before and after the probe's end.
    #[test]
    fn a_lone_aof_read_as_a_base_counts_what_replaying_it_counts() {
        let mut rng = Rng(0x01e5_50af);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appendonly.aof");
        let opts = CheckOptions::default();
        let (mut replayed, mut then_incr, mut again) = (0, 0, 0);
        for round in 0..300 {
            let base = [0, 3, 10, 40, 200][round % 5];
            let tail = [0, 1, 30][round / 5 % 3];
            let slips = [0, 0, 1, 3][round / 15 % 4];
            std::fs::write(&path, file(&mut rng, base, tail, slips)).unwrap();
            let parts = [Part {
                path: path.clone(),
                base: false,
            }];
            let mut whole = FileReport::new(path.clone(), FileKind::AofSingle);
            assert!(check_parts(&parts, &opts, &mut whole, false));
            let before = (
                lone_paths::REPLAYED.with(|c| c.get()),
                lone_paths::BASE_THEN_INCR.with(|c| c.get()),
            );
            let mut lone = FileReport::new(path.clone(), FileKind::AofSingle);
            if check_parts(&parts, &opts, &mut lone, true) {
                replayed += lone_paths::REPLAYED.with(|c| c.get()) - before.0;
                then_incr += lone_paths::BASE_THEN_INCR.with(|c| c.get()) - before.1;
            } else {
                again += 1;
                lone = check_single_aof(&path, &opts);
            }
            assert_eq!(counts(&lone), counts(&whole), "round {round}");
            let single = check_single_aof(&path, &opts);
            assert_eq!(counts(&single), counts(&whole), "round {round}");
        }
        // Each way was taken, and often.
        assert!(
            replayed > 20 && then_incr > 20 && again > 5,
            "{replayed} {then_incr} {again}"
        );
    }

    /// A multi-part AOF whose base holds more keys outside the slots checked than the
    /// check used to remember (2^16): a base key an incremental command names again is
    /// still one key outside, however many came before it. A new key counts once.
    #[test]
    fn a_base_key_named_again_counts_once_outside_the_slots_past_65536() {
        let dir = tempfile::tempdir().unwrap();
        let range = crate::persist::SlotRange { start: 0, end: 0 };
        let keys: Vec<String> = (0..70_000).map(|i| format!("k{i}")).collect();
        let outside = |k: &String| !range.contains(super::super::slot::key_slot(k.as_bytes()));
        let base_outside = keys.iter().filter(|k| outside(k)).count() as u64;
        let mut base = Vec::new();
        resp(&mut base, &["SELECT".into(), "0".into()]);
        for k in &keys {
            resp(&mut base, &["SET".into(), k.clone(), "v".into()]);
        }
        std::fs::write(dir.path().join("b.aof"), base).unwrap();
        // The last base keys (past the first 2^16 counted outside), and one new key.
        let mut incr = Vec::new();
        resp(&mut incr, &["SELECT".into(), "0".into()]);
        let named: Vec<&String> = keys.iter().rev().filter(|k| outside(k)).take(3).collect();
        for k in &named {
            resp(&mut incr, &["SET".into(), (*k).clone(), "again".into()]);
        }
        resp(&mut incr, &["SET".into(), "fresh".into(), "v".into()]);
        std::fs::write(dir.path().join("i.aof"), incr).unwrap();
        let parts = [
            Part {
                path: dir.path().join("b.aof"),
                base: true,
            },
            Part {
                path: dir.path().join("i.aof"),
                base: false,
            },
        ];
        let opts = CheckOptions { slots: Some(range) };
        let mut report = FileReport::new(dir.path().into(), FileKind::AofMultiPart);
        assert!(check_parts_with(&parts, &opts, &mut report, false, true));
        assert_eq!(report.verdict, Verdict::Ok, "{:?}", report.fault);
        assert_eq!(report.keys, 70_001);
        let fresh = u64::from(outside(&"fresh".to_string()));
        assert_eq!(report.keys_outside_slots, base_outside + fresh);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    /// A multi-part AOF (a RESP base as a rewrite writes it, incremental files of what
    /// clients write) counts the same whether its incremental files are walked first and
    /// the base read once, or the base read again in a second pass.
    #[test]
    fn walking_the_incremental_files_first_counts_what_a_second_pass_counts() {
        let mut rng = Rng(0x0a0f_2f1e);
        let dir = tempfile::tempdir().unwrap();
        let opts = CheckOptions::default();
        for round in 0..200 {
            let base = [1, 10, 60, 300][round % 4];
            let (incrs, tail) = ([1, 2][round / 4 % 2], [0, 5, 40][round / 8 % 3]);
            let mut bytes = file(&mut rng, base, 0, 0);
            if round % 16 == 0 {
                // A key named again apart from its run: a base no rewrite writes.
                bytes.extend(file(&mut rng, 3, 0, 0));
            }
            std::fs::write(dir.path().join("b.aof"), bytes).unwrap();
            let mut parts = vec![Part {
                path: dir.path().join("b.aof"),
                base: true,
            }];
            for i in 0..incrs {
                let path = dir.path().join(format!("i{i}.aof"));
                // Each incremental file starts as a server writes one: with its SELECT.
                let mut bytes = Vec::new();
                resp(&mut bytes, &["SELECT".into(), rng.below(3).to_string()]);
                bytes.extend(writes(&mut rng, base, tail));
                std::fs::write(&path, bytes).unwrap();
                parts.push(Part { path, base: false });
            }
            let mut second = FileReport::new(dir.path().into(), FileKind::AofMultiPart);
            check_parts_with(&parts, &opts, &mut second, false, false);
            let mut first = FileReport::new(dir.path().into(), FileKind::AofMultiPart);
            check_parts_with(&parts, &opts, &mut first, false, true);
            assert_eq!(counts(&first), counts(&second), "round {round}");
        }
    }
}
