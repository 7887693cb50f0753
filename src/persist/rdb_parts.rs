//! A big RDB file (or an AOF's RDB preamble) read in parts at once by a few threads (two
//! on a machine of two), with the verdict, counts and warnings of reading it whole in one.
//!
//! An RDB is one stream of records with no index: where a record starts is known only by
//! reading every record before it. Each part after the first starts from its place in the
//! file and looks for where records start: from each byte in turn, it reads records on for
//! a few KiB, and the first trial that reads them without a fault gives where it stopped
//! (see [`find_start`]). A wrong place costs time only: the part before stops when it
//! reaches that place, and the two are put together ([`Rdb::absorb`]) only when it reached
//! it exactly, at a record's start, in the database the later part assumed (the file's
//! first), with nothing pending. Otherwise the part before reads on past it, as it would
//! have without it. A later part meets none of the opcodes of a file's head (AUX,
//! functions, modules: Redis writes them before any key), and its CRC-64 is combined with
//! those before it.
//!
//! The parts outnumber the threads, and the later ones are smaller ([`splits`]): a thread
//! takes the next part nobody has taken as soon as it is done with its last, so threads
//! that run at different speeds still end close together. They do: the two cores of a
//! VM slow each other down unevenly (measured here: the same half of a file in 0.20 s on
//! one and 0.29-0.33 s on the other, which one changing from run to run), and a core may
//! also be busy with other work. The first thread reads the first part into the file's
//! own run and then takes parts like the others; once all are read it puts them after it
//! in order.
//!
//! Why: on one core the reader parses at a third to a quarter of the speed the page cache
//! gives (`cat`); a check of one big file on a machine with cores to spare was bound by
//! that one core.
//!
//! A file's content digest is read in parts too ([`read_rdb_parts`]), from the starts
//! [`find_start`] finds at the same places; its parts are simpler to put together (the
//! keys' hashes sum in any order), and any that do not add up to reading the file whole
//! have it read whole instead.
//!
//! [`read_rdb_parts`]: super::entries::read_rdb_parts

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crc_fast::Digest;

use super::aof_keys::DATABASES;
use super::error::ParseError;
use super::rdb::{Hunt, PartRun, Rdb};
use super::rdb_value::may_start_record;
use super::source::{crc64_then, reading_stop, reading_stops_when, Source};

/// Files smaller than this are read in one part: a thread is not worth starting. (The
/// crate's own tests take files from a megabyte, the smallest mapped, in parts.)
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
/// Threads a file is read by at most, whatever the cores.
const MAX_THREADS: usize = 4;
/// Parts a file is read in at most: each costs a MiB or two of its own (the first block
/// of each fingerprint run, its last blocks part-filled), which the file's run keeps.
const MAX_PARTS: usize = 8;
/// Places tried from the middle on before the file is read in one part.
const SEARCH_BYTES: u64 = 1 << 16;
/// Bytes all trials may read together: a region where trials from most places read far
/// before a fault ends the search as soon (the first part may be waiting for it).
const SEARCH_BUDGET: u64 = 256 << 20;

/// Where the parts after the first ended reading, in place of the first part's source's.
pub(crate) struct LaterEnd {
    /// Where it ended.
    pub offset: u64,
    /// Bytes after the RDB's end.
    pub remaining: u64,
    /// The first of them.
    pub next: Option<u8>,
    /// Why its data ended early, if it did.
    pub io_error: Option<String>,
}

impl LaterEnd {
    /// Where `src` ended reading.
    fn of(src: &mut Source<File>) -> LaterEnd {
        LaterEnd {
            offset: src.offset(),
            remaining: src.remaining(),
            next: src.peek(1).ok().map(|b| b[0]),
            io_error: src.io_error().map(str::to_string),
        }
    }
}

/// Where reading a part (or reading on) came to.
enum Reached {
    /// Exactly where part `.0` starts (see [`read_to_part`]): that part may follow.
    Part(usize),
    /// The records' end: the file's, a fault, an I/O error.
    End,
}

/// How a part read on its own ended.
enum PartEnd {
    /// At part `.0`'s start (offset `.1`), with its CRC-64 from its own start to there.
    Part(usize, u64, Option<Box<Digest>>),
    /// At the records' end.
    End(LaterEnd),
}

/// A part read on its own, to be put after the part before it.
struct Later {
    run: PartRun,
    end: PartEnd,
}

/// How many threads read a file of `len` bytes here: one a core this thread may use,
/// at most [`MAX_THREADS`] and one for each half of [`MIN_LEN`]; 1 when a second core is
/// not free or the file is under [`MIN_LEN`].
pub(crate) fn threads(len: u64) -> usize {
    let cores = super::prefetch::cores_free();
    if len < MIN_LEN || cores < 2 {
        return 1;
    }
    let most = usize::try_from(len / (MIN_LEN / 2)).unwrap_or(usize::MAX);
    cores.min(most).min(MAX_THREADS)
}

/// Where the file's parts after the first start looking for a record's start, for
/// `threads` threads: a part a thread of the same size, then up to twice as many more (at
/// most [`MAX_PARTS`] in all), each smaller than the one before by the same step (for two
/// threads: a quarter, a quarter, then 20%, 15%, 10% and 5%). The threads start on the
/// big ones; whichever is done first takes the next, so the last to end is at most a
/// small part behind the others however unevenly they run (two threads of which one
/// takes 1.5× the other's time end 0-5% after the ideal, against 25% for two halves).
pub(crate) fn splits(len: u64, threads: usize) -> Vec<u64> {
    if threads < 2 {
        return Vec::new();
    }
    let tail = MAX_PARTS.saturating_sub(threads).min(2 * threads) as u64;
    let weights = std::iter::repeat_n(tail + 1, threads).chain((1..=tail).rev());
    let weights: Vec<u64> = weights.collect();
    let total: u64 = weights.iter().sum();
    let mut upto = 0;
    weights[..weights.len() - 1]
        .iter()
        .map(|w| {
            upto += w;
            (u128::from(len) * u128::from(upto) / u128::from(total)) as u64
        })
        .collect()
}

/// Runs `rdb` (over a mapped source of `file`, `len` bytes, from its start) to the end of
/// the file, in parts from the places in `splits` (each starting at the first record's
/// start found at or after its place), read by this thread and `threads - 1` more. The
/// verdict, counts and warnings are those [`Rdb::run`] gives, and `rdb`'s visitor is told
/// what it would be told: by the later parts through its filter
/// ([`KeyVisitor::fingerprints`](super::rdb::KeyVisitor::fingerprints)),
/// in order once they are put after the first (a visitor told each key's bytes has the
/// file read in one part). The second value is `Some` when a later part was taken, and
/// says where reading ended (the first part's source then stopped where the parts after
/// it began). An AOF's RDB preamble is read so too, the commands after it from there on.
pub(crate) fn run(
    rdb: &mut Rdb<'_, File>,
    file: &File,
    len: u64,
    splits: &[u64],
    threads: usize,
    now_ms: i64,
) -> (Result<(), ParseError>, Option<LaterEnd>) {
    let (result, end, _parts) = read_in_parts(rdb, file, len, splits, threads, now_ms);
    #[cfg(test)]
    {
        tests::TAKEN.with(|t| t.set(t.get() + usize::from(end.is_some())));
        tests::PARTS.with(|t| t.set(_parts));
    }
    (result, end)
}

/// What the threads reading a file's parts share.
struct Pool<'f> {
    file: &'f File,
    len: u64,
    now_ms: i64,
    /// Where each part after the first looks for its start (part `i` from `splits[i]`).
    splits: &'f [u64],
    /// The file's version, engine and the database its first keys are in ([`head`]).
    head: OnceLock<Option<(u32, bool, u32)>>,
    /// Each part's start, once looked for (by whichever thread needs it first).
    starts: Vec<OnceLock<Option<u64>>>,
    /// The next part no thread has taken.
    next: AtomicUsize,
    /// Each part's run, once read.
    read: Vec<Mutex<Option<Later>>>,
    /// Set when the parts not yet read are not needed (or nobody waits for them).
    abandon: Arc<AtomicBool>,
    /// The filter of the first part's visitor, through which the others keep keys for it
    /// ([`Rdb::record_visits`]).
    filter: Option<Vec<u64>>,
    /// An AOF's RDB preamble ([`Rdb::preamble`]).
    preamble: bool,
}

impl Pool<'_> {
    fn head(&self) -> Option<(u32, bool, u32)> {
        *self.head.get_or_init(|| {
            let mut src = Source::mapped(self.file.try_clone().ok()?, self.len).ok()?;
            head(&mut src, self.now_ms)
        })
    }

    /// The database every part assumes it starts in.
    fn db(&self) -> Option<u32> {
        self.head().map(|h| h.2)
    }

    /// Where part `i` starts; `None` when none was found (or there is no part `i`).
    fn start(&self, i: usize) -> Option<u64> {
        *self.starts.get(i)?.get_or_init(|| {
            let head = self.head()?;
            let mut src = Source::mapped(self.file.try_clone().ok()?, self.len).ok()?;
            let from = self.splits[i];
            find_start(&mut src, from, self.len, head, self.preamble, self.now_ms)
        })
    }

    /// Where a read that is to end at part `i` first stops: that part's place (its start,
    /// at or past it, is looked for only once a read gets there).
    fn place(&self, i: usize) -> u64 {
        self.splits.get(i).copied().unwrap_or(u64::MAX)
    }

    /// Reads parts nobody has taken, one after another, until none is left.
    fn work(&self) {
        let Some((version, valkey, db)) = self.head() else {
            return;
        };
        let Some(mut src) = self
            .file
            .try_clone()
            .ok()
            .and_then(|f| Source::mapped(f, self.len).ok())
        else {
            return;
        };
        while !self.abandon.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.splits.len() {
                return;
            }
            let Some(start) = self.start(i) else {
                continue;
            };
            src.reposition(start);
            src.start_crc();
            let mut rdb = Rdb::new(&mut src, None, self.now_ms);
            rdb.preamble = self.preamble;
            if let Some(f) = &self.filter {
                rdb.record_visits(f.clone());
            }
            rdb.start_part(version, valkey, self.place(i + 1));
            let mut result = rdb.records(db, None);
            let reached = read_to_part(&mut rdb, self, i + 1, &mut result);
            let run = rdb.finish_part(result);
            let end = match reached {
                Reached::Part(j) => PartEnd::Part(j, src.offset(), src.crc_digest().map(Box::new)),
                Reached::End => PartEnd::End(LaterEnd::of(&mut src)),
            };
            if let Ok(mut slot) = self.read[i].lock() {
                *slot = Some(Later { run, end });
            }
        }
    }

    /// Part `i`'s run, once read; `None` when it was not (no start found, a thread that
    /// failed).
    fn take(&self, i: usize) -> Option<Later> {
        self.read.get(i)?.lock().ok()?.take()
    }
}

/// Reads on from where `rdb` stopped (`rdb.stopped`) until it stops exactly at the start of
/// a part from `i` on — in the database the parts assume, with no expiry read for the
/// record there — or its records end; `result` is the record loop's last.
fn read_to_part(
    rdb: &mut Rdb<'_, File>,
    pool: &Pool<'_>,
    mut i: usize,
    result: &mut Result<(), ParseError>,
) -> Reached {
    while let Some(expire) = rdb.stopped.take() {
        let at = rdb.src.offset();
        // The first part from `i` on that starts here or later.
        let mut start = None;
        while i < pool.splits.len() {
            match pool.start(i) {
                Some(s) if s >= at => {
                    start = Some(s);
                    break;
                }
                _ => i += 1,
            }
        }
        rdb.stop = match start {
            Some(s) if s > at => s,
            Some(_) if expire.is_none() && pool.db() == Some(rdb.current_db()) => {
                return Reached::Part(i);
            }
            // Here, but out of step with it: read past it, to the next part's place.
            Some(_) => {
                i += 1;
                pool.place(i)
            }
            None => u64::MAX,
        };
        *result = rdb.records(rdb.current_db(), expire);
    }
    Reached::End
}

/// [`run`]: this thread reads the first part into `rdb`, then parts nobody has taken, the
/// others only parts; once all are read, those that follow one another from the first on
/// are put after it in order, and what none of them reached is read on from here. The
/// third value: the parts taken, the first included.
fn read_in_parts(
    rdb: &mut Rdb<'_, File>,
    file: &File,
    len: u64,
    splits: &[u64],
    threads: usize,
    now_ms: i64,
) -> (Result<(), ParseError>, Option<LaterEnd>, usize) {
    // A visitor told each key's bytes is this run's alone.
    let filter = match rdb.parts_filter() {
        Some(f) if !splits.is_empty() && threads >= 2 => f.map(<[u64]>::to_vec),
        _ => return (rdb.run(), None, 1),
    };
    let pool = Pool {
        file,
        len,
        now_ms,
        splits,
        head: OnceLock::new(),
        starts: splits.iter().map(|_| OnceLock::new()).collect(),
        next: AtomicUsize::new(0),
        read: splits.iter().map(|_| Mutex::new(None)).collect(),
        abandon: Arc::new(AtomicBool::new(false)),
        filter,
        preamble: rdb.preamble,
    };
    // Whoever this thread reads for may stop waiting (see `reading_stops_when`).
    let caller = reading_stop();
    let this = std::thread::current();
    let (mut result, mut reached) = std::thread::scope(|s| {
        let others: Vec<_> = (1..threads)
            .filter_map(|_| {
                let (pool, this) = (&pool, this.clone());
                std::thread::Builder::new()
                    .name("persist-part".into())
                    .spawn_scoped(s, move || {
                        reading_stops_when(Some(pool.abandon.clone()), || pool.work());
                        this.unpark();
                    })
                    .ok()
            })
            .collect();
        if others.is_empty() {
            pool.abandon.store(true, Ordering::Relaxed);
            return (rdb.run(), Reached::End);
        }
        rdb.stop = pool.place(0);
        let mut result = rdb.run();
        let reached = read_to_part(rdb, &pool, 0, &mut result);
        match reached {
            // Read to the end alone: the parts are not needed.
            Reached::End => pool.abandon.store(true, Ordering::Relaxed),
            Reached::Part(_) => pool.work(),
        }
        for t in others {
            // Waited for, they still stop when this thread's caller stops waiting.
            while !t.is_finished() {
                if caller.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                    pool.abandon.store(true, Ordering::Relaxed);
                }
                std::thread::park_timeout(std::time::Duration::from_millis(1));
            }
            // A thread that panicked left its part unread: read on past it here.
            let _ = t.join();
        }
        (result, reached)
    });
    let mut parts = 1;
    while let Reached::Part(i) = reached {
        let put = pool.take(i).and_then(|later| {
            let r = rdb.absorb(later.run)?;
            Some((r, later.end))
        });
        match put {
            Some((r, PartEnd::Part(j, at, digest))) => {
                result = r;
                parts += 1;
                let mut crc = rdb.src.crc_digest();
                if let (Some(c), Some(d)) = (crc.as_mut(), digest) {
                    *c = crc64_then(c, &d);
                }
                rdb.src.resume_at(at, crc);
                reached = Reached::Part(j);
            }
            Some((r, PartEnd::End(end))) => return (r, Some(end), parts + 1),
            // Not put after this run: read on past it.
            None => {
                rdb.stop = pool.place(i + 1);
                result = rdb.records(rdb.current_db(), None);
                reached = read_to_part(rdb, &pool, i + 1, &mut result);
            }
        }
    }
    let end = (parts > 1).then(|| LaterEnd::of(rdb.src));
    (result, end, parts)
}

/// The file's version, engine, and the database its first keys are in (the first
/// SELECTDB's, or 0 when a key comes first), from its head; `None` when the head holds
/// anything else before them (the file is then read in one part).
pub(super) fn head(src: &mut Source<File>, now_ms: i64) -> Option<(u32, bool, u32)> {
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
/// [`SEARCH_BYTES`]), records are read for [`TRIAL_BYTES`], then [`CHECK_RECORDS`] more one
/// by one; the first trial that reads them without a fault gives the place where the
/// first stretch stopped, a record's start with no expiry read for it. Even a trial from a
/// wrong place that reads on without a fault (the last bytes of a value read as a record
/// with an empty key, say) nearly always falls in step with the records after a few of
/// them: where it stopped is right where it started was not. But one from inside a big
/// value may read a length there that takes it past [`TRIAL_BYTES`] in one record (a
/// member `member-123` after its length byte 10 reads as a record of type 10 whose key is
/// 11,621 bytes long): it stops anywhere, and only the records read after the stop tell.
/// In a file of big hashes and sorted sets, 4 places in 39 were taken wrong so before
/// [`CHECK_RECORDS`] (the part before them then read on through the parts after).
pub(super) fn find_start(
    src: &mut Source<File>,
    from: u64,
    len: u64,
    (version, valkey, db): (u32, bool, u32),
    preamble: bool,
    now_ms: i64,
) -> Option<u64> {
    let mut rdb = Rdb::new(src, None, now_ms);
    rdb.hunt = Some(Hunt::trial());
    rdb.preamble = preamble;
    let mut budget = SEARCH_BUDGET;
    let mut trial = |p: u64| {
        if budget == 0 {
            return None;
        }
        rdb.src.set_limit(len);
        rdb.src.reposition(p);
        rdb.src.set_limit(p.saturating_add(TRIAL_LIMIT));
        // No record starts with a byte that is neither a value type nor an opcode: most
        // places are refused here, without the fault (and its message) a trial makes.
        if !rdb.src.peek(1).is_ok_and(|b| may_start_record(b[0])) {
            return None;
        }
        rdb.start_part(version, valkey, p + TRIAL_BYTES);
        let mut expire = None;
        let found = loop {
            if rdb.records(db, expire).is_err() {
                break None;
            }
            match rdb.stopped.take() {
                Some(None) => break Some(rdb.src.offset()).filter(|_| reads_on(&mut rdb)),
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

/// Records a trial reads one by one past where it stopped before the place is taken.
const CHECK_RECORDS: usize = 16;

/// Whether `rdb`, stopped at a record's start, reads [`CHECK_RECORDS`] records on (or up to
/// the file's end) without a fault. It leaves the source where they end.
fn reads_on(rdb: &mut Rdb<'_, File>) -> bool {
    let at = rdb.src.offset();
    rdb.src.set_limit(at.saturating_add(TRIAL_LIMIT));
    let mut expire = None;
    for _ in 0..CHECK_RECORDS {
        rdb.stop = rdb.src.offset() + 1;
        if rdb.records(rdb.current_db(), expire).is_err() {
            return false;
        }
        match rdb.stopped.take() {
            Some(e) => expire = e,
            // The file's end, read whole.
            None => return true,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::persist::listpack::tests::build as listpack;
    use crate::persist::listpack::LpEntry::Str;
    use crate::persist::rdb::RdbOutcome;
    use crate::persist::resp::tests::encode;
    use crate::persist::source::crc64;

    thread_local! {
        /// Reads on this thread that took a later part.
        pub(super) static TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// The parts the last read on this thread took, the first included.
        pub(super) static PARTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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

    /// Read in parts from `splits` on by `threads` threads: what it gives, and how many
    /// parts were taken.
    fn in_parts(f: &File, len: u64, splits: &[u64], threads: usize) -> (String, usize) {
        let mut src = Source::mapped(f.try_clone().unwrap(), len).ok().unwrap();
        let mut rdb = Rdb::new(&mut src, None, 1_000);
        let (r, later) = run(&mut rdb, f, len, splits, threads, 1_000);
        let repeats = if r.is_ok() {
            rdb.repeated_keys()
        } else {
            Vec::new()
        };
        let parts = PARTS.with(|p| p.get());
        assert_eq!(
            later.is_some(),
            parts > 1,
            "an end given when parts were taken"
        );
        (seen(&r, &rdb.out, &repeats), parts)
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
            let (got, parts) = in_parts(&f, len, &[split], 2);
            assert_eq!(got, want, "{what}, split from {split}");
            taken += usize::from(parts == 2);
        }
        taken
    }

    /// Round `round`'s threads and places in a file of `len` bytes: two or three threads;
    /// the places `splits` gives them (six or eight parts), or two to four places anywhere
    /// (some close together, some inside the head), in order.
    fn round_places(round: usize, len: u64, rng: &mut Rng) -> (usize, Vec<u64>) {
        let threads = 2 + round % 2;
        let mut places = match round % 3 {
            0 => splits(len, threads),
            _ => (0..threads + round % 2)
                .map(|_| rng.below(len) as u64)
                .collect(),
        };
        places.sort_unstable();
        (threads, places)
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
                let (threads, splits) = round_places(round, len, &mut rng);
                let (got, parts) = in_parts(&f, len, &splits, threads);
                assert_eq!(got, want, "file {i}, splits {splits:?}");
                all_taken += usize::from(parts == splits.len() + 1);
            }
            // The file of one database: its parts all taken nearly always.
            assert!(
                i == 1 || all_taken >= 9,
                "all parts taken {all_taken} times of 12"
            );
        }
    }

    /// A digest of a file read in parts (from the validator's places, or from places
    /// anywhere: in the head, inside values, in the second database) is the digest of it
    /// read whole, or is not taken; a file with any byte changed is never taken in parts
    /// (reading it whole then says what is wrong).
    #[test]
    fn a_digest_read_in_parts_is_the_digest_read_whole_or_none() {
        use crate::persist::digest::{merged, DigestBuilder, DigestOptions};
        use crate::persist::entries::{read_in_parts, read_rdb_file};
        let opts = DigestOptions::default();
        let digest = |f: &File, len: u64, places: &[u64], threads: usize| {
            let parts = read_in_parts(f, len, places, threads, || DigestBuilder::new(0, &opts))?;
            Some(merged(parts)?.settle(0))
        };
        let mut rng = Rng(47);
        for (i, bytes) in [file(24_000, false, 41), file(9_000, true, 43)]
            .iter()
            .enumerate()
        {
            let (_t, f, len) = temp(bytes);
            let mut whole = DigestBuilder::new(0, &opts);
            read_rdb_file(f.try_clone().unwrap(), len, &mut whole).unwrap();
            let want = whole.digest.settle(0);
            assert!(want.keys > 9_000, "{}", want.keys);
            let mut taken = 0;
            for round in 0..12 {
                let (threads, places) = round_places(round, len, &mut rng);
                if let Some(got) = digest(&f, len, &places, threads) {
                    assert_eq!(got, want, "file {i}, places {places:?}");
                    taken += 1;
                }
            }
            // The file of one database: read in parts nearly always.
            assert!(i == 1 || taken >= 9, "taken {taken} times of 12");
            for _ in 0..20 {
                let mut bad = bytes.clone();
                let at = rng.below(len);
                bad[at] ^= 1 << rng.below(8);
                let (_t, f, len) = temp(&bad);
                let got = digest(&f, len, &splits(len, 2), 2);
                assert!(got.is_none(), "byte {at} of {len} changed, read in parts");
            }
        }
    }

    #[test]
    fn each_thread_starts_on_a_big_part_and_the_rest_come_smaller() {
        let shares = |threads: usize| {
            let mut at = 0;
            let mut out: Vec<u64> = splits(1000, threads)
                .into_iter()
                .map(|s| std::mem::replace(&mut at, s))
                .collect();
            out.push(at);
            out.windows(2)
                .map(|w| w[1] - w[0])
                .chain([1000 - at])
                .collect::<Vec<_>>()
        };
        assert!(splits(1000, 1).is_empty());
        assert_eq!(shares(2), [250, 250, 200, 150, 100, 50]);
        // At most MAX_PARTS, the threads' first parts at least half the file, the others
        // smaller and smaller.
        for threads in 2..=MAX_THREADS {
            let s = shares(threads);
            assert_eq!(s.len(), MAX_PARTS.min(3 * threads), "{threads} threads");
            assert_eq!(s.iter().sum::<u64>(), 1000);
            assert!(s.windows(2).all(|w| w[0] + 1 >= w[1]), "{s:?}");
            assert!(s[..threads].iter().sum::<u64>() >= 500, "{s:?}");
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
            let (got, _) = in_parts(&f, len, &four, 3);
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
            // The old AOF is read as an RDB, then again as an AOF: its preamble in parts
            // both times.
            let reads = if i == 1 { 2 } else { 1 };
            assert_eq!((whole.1, taken), (0, reads), "variant {i}: taken in parts");
        }
    }

    /// A command in RESP (its arguments' literals of any length taken as slices).
    fn resp(args: &[&[u8]]) -> Vec<u8> {
        encode(args)
    }

    /// `file(n, second_db, seed)` with its last expiry made negative (which an AOF's
    /// preamble may not hold), or as it is.
    fn base(n: usize, second_db: bool, seed: u64, negative: bool) -> Vec<u8> {
        let mut b = file(n, second_db, seed);
        if negative {
            let mut expiry = vec![0xfc];
            expiry.extend(4_000_000_000_000i64.to_le_bytes());
            let at = b.windows(9).rposition(|w| w == &expiry[..]).unwrap();
            b[at + 1..at + 9].copy_from_slice(&(-5i64).to_le_bytes());
            let body = b.len() - 8;
            let crc = crc64(&b[..body]);
            b[body..].copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    #[test]
    fn an_aof_whose_rdb_base_is_read_in_parts_counts_what_reading_it_whole_counts() {
        use crate::persist::check::check;
        use crate::persist::report::{CheckOptions, Verdict};
        for (seed, second_db, negative, trap) in [
            (41, false, false, false),
            (43, true, false, true),
            (47, false, true, false),
        ] {
            let n = 24_000;
            let base = base(n, second_db, seed, negative);
            // Writes to keys all over the base (whose later parts' readers keep them for
            // the replay) and to new ones: each needs to know whether the base holds the
            // key, and with what TTL.
            let mut rng = Rng(seed * 7);
            let mut incr = Vec::new();
            let dbs: &[u32] = if second_db { &[0, 3] } else { &[0] };
            for _ in 0..400 {
                let db = dbs[rng.below(dbs.len() as u64)];
                incr.extend(resp(&[b"SELECT", db.to_string().as_bytes()]));
                let key = format!("key:{db}:{}", rng.below(n as u64 + 200));
                let key = key.as_bytes();
                incr.extend(match rng.below(6) {
                    0 => resp(&[b"DEL", key]),
                    1 => resp(&[b"SETNX", key, b"v"]),
                    2 => resp(&[b"PEXPIREAT", key, b"5000000000000"]),
                    3 => resp(&[b"PERSIST", key]),
                    4 => resp(&[b"SET", key, b"v"]),
                    _ => resp(&[b"PEXPIREAT", key, b"1"]),
                });
            }
            if trap {
                // A value that looks like an RDB's end and a command after it: an old
                // single file's commands are first taken to start there, wrongly.
                let value = b"\xff12345678*2\r\n$3\r\nDEL\r\n$7\r\nkey:0:1\r\n";
                incr.extend(resp(&[b"SET", b"key:0:2", value]));
            }
            let dir = tempfile::tempdir().unwrap();
            let put = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes);
            put("appendonly.aof.1.base.rdb", &base).unwrap();
            put("appendonly.aof.1.incr.aof", &incr).unwrap();
            put(
                "appendonly.aof.manifest",
                b"file appendonly.aof.1.base.rdb seq 1 type b\n\
                  file appendonly.aof.1.incr.aof seq 1 type i\n",
            )
            .unwrap();
            let legacy = dir.path().join("legacy.aof");
            std::fs::write(&legacy, [&base[..], &incr[..]].concat()).unwrap();
            // The old single file's commands are walked first, from where its preamble is
            // guessed to end (as a multi-part AOF's incremental files are), then its
            // preamble is read once. A wrong guess reads it again as before: a first pass,
            // then a second for the keys the commands touch (none after a fault).
            let legacy_reads = match (negative, trap) {
                (true, _) => 2,
                (false, true) => 3,
                (false, false) => 1,
            };
            let mut counts = Vec::new();
            for (path, reads) in [(dir.path().to_path_buf(), 1), (legacy, legacy_reads)] {
                let report = |whole: bool| {
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            if whole {
                                crate::persist::prefetch::one_core_on_this_thread();
                            }
                            let r = check(&path, &CheckOptions::default());
                            (r, TAKEN.with(|t| t.get()))
                        })
                        .join()
                        .unwrap()
                    })
                };
                let ((whole, none), (parts, taken)) = (report(true), report(false));
                let what = format!("seed {seed}, {}", path.display());
                assert_eq!(
                    serde_json::to_string(&parts).unwrap(),
                    serde_json::to_string(&whole).unwrap(),
                    "{what}"
                );
                match negative {
                    true => assert_eq!(whole.verdict, Verdict::Corrupt, "{what}"),
                    false => assert!(whole.keys_exact && whole.keys > 0, "{what}: {whole:?}"),
                }
                assert_eq!((none, taken), (0, reads), "{what}: taken in parts");
                counts.push((
                    whole.verdict,
                    whole.keys_exact,
                    whole.keys_per_db,
                    whole.expires_per_db,
                ));
            }
            // The same keys and TTLs in one file as in the directory.
            assert_eq!(counts[0], counts[1], "seed {seed}");
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
