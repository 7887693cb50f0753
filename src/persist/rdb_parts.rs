//! A big RDB file read in parts at once, one a core (two on a machine of two), with the
//! verdict, counts and warnings of reading it whole in one.
//!
//! An RDB is one stream of records with no index: where a record starts is known only by
//! reading every record before it. Each part after the first has a reader that starts
//! from its share of the file (the middle, for the second of two) and looks for a place
//! where records start: from each byte in turn, it reads records on for a few KiB, and
//! the first trial that reads them without a fault gives where it stopped (see
//! [`find_start`]). A wrong place costs time only: the part before stops when it reaches
//! that place, and the two are put together ([`Rdb::absorb`]) only when it reached it
//! exactly, at a record's start, in the database the later part assumed (the file's
//! first), with nothing pending. Otherwise the part before reads on alone, as it would
//! have without a part after it. A later part meets none of the opcodes of a file's head
//! (AUX, functions, modules: Redis writes them before any key), and its CRC-64 is
//! combined with those before it.
//!
//! Why: on one core the reader parses at a third to a quarter of the speed the page cache
//! gives (`cat`); a check of one big file on a machine with cores to spare was bound by
//! that one core.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::aof_keys::DATABASES;
use super::error::ParseError;
use super::rdb::{Hunt, PartRun, Rdb};
use super::source::{reading_stop, reading_stops_when, Source};

/// Files smaller than this are read in one part: a thread is not worth starting. (The
/// crate's own tests take files from a megabyte, the smallest mapped, in two parts.)
#[cfg(not(test))]
pub(crate) const MIN_LEN: u64 = 64 << 20;
#[cfg(test)]
pub(crate) const MIN_LEN: u64 = super::source::BUF_SIZE as u64;
/// Bytes of records a trial reads from a place before the place is taken.
const TRIAL_BYTES: u64 = 4096;
/// The most a trial reads (a record that starts inside its first `TRIAL_BYTES` may run
/// on to here): a trial from a wrong place that takes a garbage length for a long record
/// ends here.
const TRIAL_LIMIT: u64 = 1 << 20;
/// Parts a file is read in at most, whatever the cores: each costs a few MiB of its own
/// (its mapped window, its first block of each fingerprint run, its tables).
const MAX_PARTS: usize = 8;
/// Places tried from the middle on before the file is read in one part.
const SEARCH_BYTES: u64 = 1 << 16;
/// Bytes all trials may read together: a region where trials from most places read far
/// before a fault ends the search as soon (the first part may be waiting for it).
const SEARCH_BUDGET: u64 = 32 << 20;

/// Where a later part starts and the database it assumes, sent once its reader has
/// looked. A reader that found no place (or ended, or panicked, before it looked) drops
/// its sender unsent: "no place" to the part before.
type Meeting = std::sync::mpsc::Receiver<(u64, u32)>;

/// Where the parts after the first ended reading, in place of the first part's source's.
pub(crate) struct LaterEnd {
    /// The parts taken, the first one's included.
    pub parts: usize,
    /// Where it ended.
    pub offset: u64,
    /// Bytes after the RDB's end.
    pub remaining: u64,
    /// The first of them.
    pub next: Option<u8>,
    /// Why its data ended early, if it did.
    pub io_error: Option<String>,
}

/// What a later part's reader hands back.
struct Later {
    run: PartRun,
    end: LaterEnd,
}

/// How many parts a file of `len` bytes is read in here: one a core this thread may use,
/// each of at least half of [`MIN_LEN`], at most [`MAX_PARTS`]; 1 when a second core is not
/// free or the file is under [`MIN_LEN`].
pub(crate) fn parts(len: u64) -> usize {
    let cores = super::prefetch::cores_free();
    if len < MIN_LEN || cores < 2 {
        return 1;
    }
    let most = usize::try_from(len / (MIN_LEN / 2)).unwrap_or(usize::MAX);
    cores.min(most).min(MAX_PARTS)
}

/// Where the file's parts after the first start looking for a record's start: `parts`
/// even shares of its `len` bytes.
pub(crate) fn splits(len: u64, parts: usize) -> Vec<u64> {
    (1..parts as u64).map(|k| len / parts as u64 * k).collect()
}

/// Runs `rdb` (over a mapped source of `file`, `len` bytes, from its start) to the end of
/// the file, each part after the first read on a thread of its own from the first
/// record's start found at or after its place in `splits`. The verdict, counts and
/// warnings are those [`Rdb::run`] gives; the second value is `Some` when the second part
/// was taken, and says where reading ended (the first part's source then stopped where
/// the second began) and how many parts were taken in all.
pub(crate) fn run(
    rdb: &mut Rdb<'_, File>,
    file: &File,
    len: u64,
    splits: &[u64],
    now_ms: i64,
) -> (Result<(), ParseError>, Option<LaterEnd>) {
    let read = read_on(rdb, file, len, splits, now_ms, |rdb| rdb.run());
    #[cfg(test)]
    tests::TAKEN.with(|t| t.set(t.get() + usize::from(read.1.is_some())));
    read
}

/// `rdb`'s part of the file, from `start(rdb)` to the next part's start (the first of
/// `splits` on), put together with what the parts after it read, or to the file's end
/// alone.
fn read_on(
    rdb: &mut Rdb<'_, File>,
    file: &File,
    len: u64,
    splits: &[u64],
    now_ms: i64,
    start: impl FnOnce(&mut Rdb<'_, File>) -> Result<(), ParseError>,
) -> (Result<(), ParseError>, Option<LaterEnd>) {
    let Some((&split, rest)) = splits.split_first() else {
        return (start(rdb), None);
    };
    let (tell, meeting): (_, Meeting) = std::sync::mpsc::sync_channel(1);
    // Received once: this part may stop more than once (short of it, then at it).
    let mut point = None;
    let abandon = Arc::new(AtomicBool::new(false));
    // Whoever this thread reads for may stop waiting (see `reading_stops_when`).
    let caller = reading_stop();
    std::thread::scope(|s| {
        let later = {
            let abandon = abandon.clone();
            std::thread::Builder::new()
                .name("persist-part".into())
                .spawn_scoped(s, move || {
                    reading_stops_when(Some(abandon), || {
                        later_part(file, len, (split, rest), tell, now_ms)
                    })
                })
        };
        let Ok(later) = later else {
            return (start(rdb), None);
        };
        rdb.stop = split;
        let mut result = start(rdb);
        let mut taken = None;
        let mut later = Some(later);
        while let Some(expire) = rdb.stopped.take() {
            let at = rdb.src.offset();
            match *point.get_or_insert_with(|| meeting.recv().ok()) {
                Some((p, _)) if p > at => {
                    rdb.stop = p;
                    result = rdb.records(rdb.current_db(), expire);
                    continue;
                }
                Some((p, db)) if p == at && expire.is_none() && rdb.current_db() == db => {
                    let part = later.take().and_then(|h| {
                        // Waited for, it still stops when this thread's caller stops
                        // waiting.
                        while !h.is_finished() {
                            if caller.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                                abandon.store(true, Ordering::Relaxed);
                            }
                            std::thread::park_timeout(std::time::Duration::from_millis(1));
                        }
                        h.join().ok().flatten()
                    });
                    if let Some(part) = part {
                        if let Some(r) = rdb.absorb(part.run) {
                            result = r;
                            taken = Some(part.end);
                            break;
                        }
                    }
                }
                _ => {}
            }
            // Read on alone.
            abandon.store(true, Ordering::Relaxed);
            rdb.stop = u64::MAX;
            result = rdb.records(rdb.current_db(), expire);
        }
        // Not taken: its reader stops at its next megabyte.
        abandon.store(true, Ordering::Relaxed);
        (result, taken)
    })
}

/// A later part's reader: looks for a record's start from `from`, tells the part before, and
/// reads from there to the next part's start (the first of `rest`) or the file's end.
fn later_part(
    file: &File,
    len: u64,
    (from, rest): (u64, &[u64]),
    tell: std::sync::mpsc::SyncSender<(u64, u32)>,
    now_ms: i64,
) -> Option<Later> {
    let mut src = Source::mapped(file.try_clone().ok()?, len).ok()?;
    let (version, valkey, db) = head(&mut src, now_ms)?;
    let start = find_start(&mut src, from, len, (version, valkey, db), now_ms);
    let start = start?;
    tell.send((start, db)).ok()?;
    src.reposition(start);
    src.start_crc();
    let mut rdb = Rdb::new(&mut src, None, now_ms);
    rdb.start_part(version, valkey, u64::MAX);
    let (result, taken) = read_on(&mut rdb, file, len, rest, now_ms, |r| r.records(db, None));
    let run = rdb.finish_part(result);
    let end = match taken {
        Some(end) => LaterEnd {
            parts: end.parts + 1,
            ..end
        },
        None => LaterEnd {
            parts: 2,
            offset: src.offset(),
            remaining: src.remaining(),
            next: src.peek(1).ok().map(|b| b[0]),
            io_error: src.io_error().map(str::to_string),
        },
    };
    Some(Later { run, end })
}

/// The file's version, engine, and the database its first keys are in (the first
/// SELECTDB's, or 0 when a key comes first), from its head; `None` when the head holds
/// anything else before them (the file is then read in one part).
fn head(src: &mut Source<File>, now_ms: i64) -> Option<(u32, bool, u32)> {
    let mut rdb = Rdb::new(src, None, now_ms);
    rdb.header().ok()?;
    let at = |rdb: &Rdb<'_, File>| (rdb.out.version, rdb.out.valkey);
    loop {
        match rdb.src.u8().ok()? {
            0xfa => {
                rdb.skip_string().ok()?;
                rdb.skip_string().ok()?;
            }
            0xf5 => {
                rdb.skip_string().ok()?;
            }
            0xfe => {
                let db = rdb.len().ok().filter(|&n| n < u64::from(DATABASES))?;
                let (v, k) = at(&rdb);
                return Some((v, k, db as u32));
            }
            0xf8 | 0xf9 | 0xfc | 0xfd | 0x00..=0x20 => {
                let (v, k) = at(&rdb);
                return Some((v, k, 0));
            }
            _ => return None,
        }
    }
}

/// A place at or after `from` where records start: from each byte in turn (within
/// [`SEARCH_BYTES`]), records are read for [`TRIAL_BYTES`]; the first trial that reads them
/// without a fault gives the place where it stopped, a record's start with no expiry read
/// for it. Even a trial from a wrong place that reads on without a fault (the last bytes of
/// a value read as a record with an empty key, say) nearly always falls in step with the
/// records after a few of them: where it stopped is right where it started was not.
fn find_start(
    src: &mut Source<File>,
    from: u64,
    len: u64,
    (version, valkey, db): (u32, bool, u32),
    now_ms: i64,
) -> Option<u64> {
    let mut rdb = Rdb::new(src, None, now_ms);
    // Keys are not kept: no database has this number.
    rdb.hunt = Some(Hunt::new(u32::MAX, 0));
    let mut budget = SEARCH_BUDGET;
    let mut trial = |p: u64| {
        if budget == 0 {
            return None;
        }
        rdb.src.set_limit(len);
        rdb.src.reposition(p);
        rdb.src.set_limit(p.saturating_add(TRIAL_LIMIT));
        rdb.start_part(version, valkey, p + TRIAL_BYTES);
        let mut expire = None;
        let found = loop {
            if rdb.records(db, expire).is_err() {
                break None;
            }
            match rdb.stopped.take() {
                Some(None) => break Some(rdb.src.offset()),
                // An expiry read for the record here: stop after that record.
                Some(Some(e)) => {
                    expire = Some(e);
                    rdb.stop = rdb.src.offset() + 1;
                }
                // The file's end.
                None => break None,
            }
        };
        budget = budget.saturating_sub(rdb.src.offset().saturating_sub(p));
        found
    };
    let found = (from..len.min(from + SEARCH_BYTES)).find_map(&mut trial);
    rdb.src.set_limit(len);
    found
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::persist::listpack::tests::build as listpack;
    use crate::persist::listpack::LpEntry::Str;
    use crate::persist::rdb::RdbOutcome;
    use crate::persist::source::crc64;

    thread_local! {
        /// Second parts taken on this thread.
        pub(super) static TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }

        fn upto(&mut self, n: u64) -> Vec<u8> {
            let n = self.below(n);
            self.bytes(n)
        }
    }

    /// A string: 6- or 14-bit length, then its bytes.
    fn string(v: &[u8]) -> Vec<u8> {
        let mut out = match v.len() {
            n if n < 64 => vec![n as u8],
            n => vec![0x40 | (n >> 8) as u8, n as u8],
        };
        out.extend_from_slice(v);
        out
    }

    /// `unit` repeated to `total` bytes, LZF-compressed: the unit as a literal, then
    /// back-references of its length.
    fn lzf(unit: &[u8], total: usize) -> Vec<u8> {
        let mut c = vec![(unit.len() - 1) as u8];
        c.extend_from_slice(unit);
        let dist = unit.len() - 1;
        let mut left = total - unit.len();
        while left >= 3 {
            let len = left.min(264);
            if len >= 9 {
                c.extend([(7 << 5) | (dist >> 8) as u8, (len - 9) as u8]);
            } else {
                c.push((((len - 2) << 5) | (dist >> 8)) as u8);
            }
            c.push(dist as u8);
            left -= len;
        }
        let mut out = vec![0xc3];
        out.extend(len_of(c.len()));
        out.extend(len_of(total - left));
        out.extend(c);
        out
    }

    fn len_of(n: usize) -> Vec<u8> {
        string(&vec![0; n])[..if n < 64 { 1 } else { 2 }].to_vec()
    }

    /// An RDB 10 with a function library in its head, then `n` records of every common
    /// kind (strings plain, integer and LZF with random bytes that look like records,
    /// expiries, LRU and LFU hints, hash-table sets and hashes, listpack hashes), in
    /// database 0, then, with `second_db`, as many more in database 3.
    fn file(n: usize, second_db: bool, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed);
        let mut b = b"REDIS0010".to_vec();
        b.extend(
            [0xfa]
                .iter()
                .chain(&string(b"redis-ver"))
                .chain(&string(b"7.0.15")),
        );
        let library = b"#!lua name=x\nredis.register_function('f', function() end)";
        b.extend([0xf5].iter().chain(&string(library)));
        for db in [0u8, 3].into_iter().take(1 + usize::from(second_db)) {
            b.extend([0xfe, db, 0xfb, 0x40, 0x00, 0x00]);
            for i in 0..n {
                let key = format!("key:{db}:{i}");
                match rng.below(8) {
                    // An LRU or an LFU hint before a string.
                    6 if i % 3 == 0 => {
                        b.extend(if i % 2 == 0 {
                            [0xf8, 0x05]
                        } else {
                            [0xf9, 0x07]
                        });
                        b.push(0);
                        b.extend(string(key.as_bytes()));
                        b.extend(string(&rng.upto(40)));
                    }
                    0 => {
                        b.push(0xfc);
                        b.extend(4_000_000_000_000i64.to_le_bytes());
                        b.push(0);
                        b.extend(string(key.as_bytes()));
                        b.extend(string(&rng.upto(100)));
                    }
                    1 => {
                        b.push(0);
                        b.extend(string(key.as_bytes()));
                        b.extend([0xc1, rng.next() as u8, 0x12]);
                    }
                    2 => {
                        b.push(0);
                        b.extend(string(key.as_bytes()));
                        let n = 1 + rng.below(20);
                        let unit = rng.bytes(n);
                        b.extend(lzf(&unit, 40 + rng.below(600)));
                    }
                    3 => {
                        b.push(2);
                        b.extend(string(key.as_bytes()));
                        let members = 1 + rng.below(12);
                        b.push(members as u8);
                        for m in 0..members {
                            b.extend(string(format!("m{m}-{}", rng.below(9)).as_bytes()));
                        }
                    }
                    4 => {
                        b.push(4);
                        b.extend(string(key.as_bytes()));
                        b.push(3);
                        for f in 0..3 {
                            b.extend(string(format!("f{f}").as_bytes()));
                            b.extend(string(&rng.upto(30)));
                        }
                    }
                    5 => {
                        b.push(16);
                        b.extend(string(key.as_bytes()));
                        let v = rng.bytes(8);
                        b.extend(string(&listpack(&[
                            Str(b"a"),
                            Str(&v),
                            Str(b"b"),
                            Str(b"c"),
                        ])));
                    }
                    _ => {
                        b.push(0);
                        b.extend(string(key.as_bytes()));
                        b.extend(string(&rng.upto(300)));
                    }
                }
            }
        }
        b.push(0xff);
        let crc = crc64(&b);
        b.extend(crc.to_le_bytes());
        b
    }

    /// What a read gives that a reader of the report sees.
    fn seen(r: &Result<(), ParseError>, out: &RdbOutcome, repeats: &[(u32, u64)]) -> String {
        let mut damaged: Vec<_> = out.damaged.iter().collect();
        damaged.sort();
        format!(
            "{:?}\n{:?} {} {} {:?} {}\n{:?}\n{:?} {damaged:?}\n{repeats:?}",
            r.as_ref().map_err(|e| (e.offset, &e.expected)),
            out.keys_per_db,
            out.expires,
            out.expired,
            out.expires_per_db,
            out.empty_skipped,
            out.warnings,
            out.damaged_named,
        )
    }

    fn whole(bytes: &[u8]) -> String {
        let mut src = Source::new(bytes, 0, bytes.len() as u64);
        let mut rdb = Rdb::new(&mut src, None, 1_000);
        let r = rdb.run();
        let repeats = if r.is_ok() {
            rdb.repeated_keys()
        } else {
            Vec::new()
        };
        seen(&r, &rdb.out, &repeats)
    }

    /// Read in parts from `splits` on: what it gives, and how many parts were taken.
    fn in_parts(f: &File, len: u64, splits: &[u64]) -> (String, usize) {
        let mut src = Source::mapped(f.try_clone().unwrap(), len).ok().unwrap();
        let mut rdb = Rdb::new(&mut src, None, 1_000);
        let (r, later) = run(&mut rdb, f, len, splits, 1_000);
        let repeats = if r.is_ok() {
            rdb.repeated_keys()
        } else {
            Vec::new()
        };
        (seen(&r, &rdb.out, &repeats), later.map_or(1, |l| l.parts))
    }

    fn temp(bytes: &[u8]) -> (tempfile::NamedTempFile, File, u64) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f, bytes.len() as u64)
    }

    /// Reads `bytes` whole and in parts from each of `splits`: the same; how many parts
    /// were taken.
    fn same_in_parts(bytes: &[u8], splits: impl Iterator<Item = u64>, what: &str) -> usize {
        let want = whole(bytes);
        let (_t, f, len) = temp(bytes);
        let mut taken = 0;
        for split in splits {
            let (got, parts) = in_parts(&f, len, &[split]);
            assert_eq!(got, want, "{what}, split from {split}");
            taken += usize::from(parts == 2);
        }
        taken
    }

    #[test]
    fn a_file_read_in_more_parts_reads_as_it_does_whole() {
        let mut rng = Rng(29);
        for (i, bytes) in [file(24_000, false, 31), file(9_000, true, 37)]
            .iter()
            .enumerate()
        {
            let want = whole(bytes);
            let (_t, f, len) = temp(bytes);
            let mut all_taken = 0;
            for round in 0..12 {
                // Three or four parts at even shares, or anywhere (two close together,
                // a share inside the head).
                let n = 3 + round % 2;
                let mut splits = match round % 3 {
                    0 => splits(len, n),
                    _ => (1..n).map(|_| rng.below(len) as u64).collect(),
                };
                splits.sort_unstable();
                let (got, parts) = in_parts(&f, len, &splits);
                assert_eq!(got, want, "file {i}, splits {splits:?}");
                all_taken += usize::from(parts == n);
            }
            // The file of one database: its parts all taken nearly always.
            assert!(
                i == 1 || all_taken >= 9,
                "all parts taken {all_taken} times of 12"
            );
        }
    }

    #[test]
    fn a_file_read_in_two_parts_reads_as_it_does_whole() {
        let bytes = file(20_000, false, 7);
        assert!(bytes.len() > 1 << 20, "mapped: {}", bytes.len());
        let len = bytes.len() as u64;
        // Splits everywhere, some right at the head and the trailer.
        let splits = (1..40)
            .map(|i| len * i / 40)
            .chain([10, 40, len - 20, len - 9]);
        let taken = same_in_parts(&bytes, splits, "ok file");
        assert!(taken >= 35, "the second part taken {taken} times of 43");
    }

    #[test]
    fn a_second_part_in_a_database_after_the_first_leaves_the_first_reading_on() {
        let bytes = file(9_000, true, 11);
        let len = bytes.len() as u64;
        let taken = same_in_parts(&bytes, (1..20).map(|i| len * i / 20), "two databases");
        // Parts starting in database 3 assumed database 0: read on alone.
        assert!((5..=12).contains(&taken), "taken {taken} times of 19");
    }

    #[test]
    fn faults_on_either_side_of_the_split_are_those_of_reading_whole() {
        let good = file(24_000, false, 13);
        let len = good.len();
        let mut rng = Rng(99);
        for i in 0..24 {
            let mut bytes = good.clone();
            // Bytes changed anywhere past the head: most break a record, some only the
            // checksum (inside a value), some the checksum itself.
            let at = 100 + rng.below(len as u64 - 100);
            bytes[at] ^= 1 << rng.below(8);
            let (len, at) = (len as u64, at as u64);
            let splits = [len / 3, len / 2, at - 50, (at + 50).min(len - 1)];
            let (_t, f, _) = temp(&bytes);
            let mut four = [len / 4, at - 50, (at + 50).min(len - 1)];
            four.sort_unstable();
            let (got, _) = in_parts(&f, len, &four);
            assert_eq!(got, whole(&bytes), "fault {i} at {at}, in four parts");
            same_in_parts(&bytes, splits.into_iter(), &format!("fault {i} at {at}"));
        }
        // A truncated file, and one cut inside its second half.
        for cut in [len - 4, len * 3 / 4] {
            same_in_parts(&good[..cut], [len as u64 / 2].into_iter(), "cut");
        }
    }

    #[test]
    fn a_file_checked_in_two_parts_is_reported_as_checked_whole() {
        use crate::persist::check::check;
        use crate::persist::report::CheckOptions;
        let ok = file(20_000, false, 23);
        let mut broken = ok.clone();
        broken[ok.len() * 2 / 3] ^= 0x40;
        let variants = [
            ok.clone(),
            // An old single-file AOF: an RDB preamble, then commands.
            [&ok[..], b"*1\r\n$4\r\nPING\r\n"].concat(),
            [&ok[..], b"trailing"].concat(),
            broken,
            ok[..ok.len() - 3].to_vec(),
        ];
        for (i, bytes) in variants.iter().enumerate() {
            let (t, _, _) = temp(bytes);
            let opts = CheckOptions::default();
            let report = |whole: bool| {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        if whole {
                            crate::persist::prefetch::one_core_on_this_thread();
                        }
                        let r = serde_json::to_string(&check(t.path(), &opts)).unwrap();
                        (r, TAKEN.with(|t| t.get()))
                    })
                    .join()
                    .unwrap()
                })
            };
            let (whole, (parts, taken)) = (report(true), report(false));
            assert_eq!(parts, whole.0, "variant {i}");
            assert_eq!((whole.1, taken), (0, 1), "variant {i}: taken once in parts");
        }
    }

    #[test]
    fn a_key_in_both_parts_is_a_repeat_found_as_reading_whole_finds_it() {
        let mut bytes = file(20_000, false, 17);
        bytes.truncate(bytes.len() - 9);
        // `key:0:5` again near the end, and a set with a member twice.
        bytes.extend(
            [0].iter()
                .chain(&string(b"key:0:5"))
                .chain(&string(b"again")),
        );
        bytes.push(0xff);
        let crc = crc64(&bytes);
        bytes.extend(crc.to_le_bytes());
        let want = whole(&bytes);
        assert!(want.ends_with(']') && !want.ends_with("[]"), "{want}");
        let len = bytes.len() as u64;
        let taken = same_in_parts(&bytes, (1..8).map(|i| len * i / 8), "repeat");
        assert!(taken >= 6, "taken {taken}");
    }
}
