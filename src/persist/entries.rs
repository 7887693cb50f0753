//! A whole RDB file, key by key: database, key, expiry and the value decoded into a
//! [`ValueSink`]. The opcode loop mirrors the validator's; every value is decoded, none
//! skipped, and the CRC-64 trailer is still checked.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crc_fast::Digest;

use super::dump::DecodeError;
use super::error::ParseError;
use super::fp_set::prefetch;
use super::rdb::{Rdb, RECORDS_AHEAD};
use super::rdb_parts;
use super::source::{crc64_then, reading_stop, reading_stops_when, Source};
use super::value::{Value, ValueBuilder, ValueSink};
use super::value_decode::{decode, Input, Scratch};

/// Told about every key of a file; it is also the sink its value is decoded into.
pub trait EntryVisitor: ValueSink {
    /// A key starts; its value follows through the [`ValueSink`] calls.
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>);
    /// The key's value is complete; `present` is false for an empty collection, which
    /// Redis drops when loading.
    fn end_key(&mut self, present: bool);
}

/// What an RDB said about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RdbHeader {
    pub version: u32,
    pub valkey: bool,
}

/// Reads every key of the RDB at `path` into `visitor`. Stops at the first fault, whose
/// offset is the file's.
pub fn read_rdb<V: EntryVisitor>(path: &Path, visitor: &mut V) -> Result<RdbHeader, RdbReadError> {
    let (file, len) = open_file(path)?;
    read_rdb_file(file, len, visitor)
}

/// The regular file at `path`, opened, and its length.
pub(super) fn open_file(path: &Path) -> Result<(File, u64), RdbReadError> {
    super::open::open_regular_len(path).map_err(|e| RdbReadError::Io(e.to_string()))
}

/// [`read_rdb`] of a file opened, `len` bytes long.
pub(super) fn read_rdb_file<V: EntryVisitor>(
    file: File,
    len: u64,
    visitor: &mut V,
) -> Result<RdbHeader, RdbReadError> {
    let mut src = Source::open_file(file, len);
    let mut rdb = Rdb::new(&mut src, None, 0);
    let walked = walk(&mut rdb, visitor);
    let header = RdbHeader {
        version: rdb.out.version,
        valkey: rdb.out.valkey,
    };
    // A read that failed (or was stopped) is that, not a file cut short; a mapped file
    // that shrank while it was read may even have parsed (zeros from there on).
    if let Some(io) = src.io_error() {
        return Err(RdbReadError::Io(io.to_string()));
    }
    walked.map_err(|e| RdbReadError::Format(e.into()))?;
    Ok(header)
}

/// Reads every key of an RDB arriving as a stream (a backup run's file, decompressed and
/// decrypted as it is read) into `visitor`; `len` when the stream's length is known.
pub fn read_rdb_stream<R: std::io::Read, V: EntryVisitor>(
    reader: R,
    len: Option<u64>,
    visitor: &mut V,
) -> Result<RdbHeader, RdbReadError> {
    let mut src = Source::new(reader, 0, len.unwrap_or(u64::MAX));
    let mut rdb = Rdb::new(&mut src, None, 0);
    let walked = walk(&mut rdb, visitor);
    let header = RdbHeader {
        version: rdb.out.version,
        valkey: rdb.out.valkey,
    };
    if let (Err(_), Some(io)) = (&walked, src.io_error()) {
        return Err(RdbReadError::Io(io.to_string()));
    }
    walked.map_err(|e| RdbReadError::Format(e.into()))?;
    Ok(header)
}

/// Why a file could not be read key by key.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RdbReadError {
    #[error("cannot read it: {0}")]
    Io(String),
    #[error("{0}")]
    Format(DecodeError),
}

/// One key of an RDB with its value built.
#[derive(Clone, Debug, PartialEq)]
pub struct RdbEntry {
    pub db: u32,
    pub key: Vec<u8>,
    pub value: Value,
    pub expire_ms: Option<i64>,
}

/// Every key of an RDB with its value, in file order (whole values in memory: for small
/// files, tests and replays of a few keys; digests are taken key by key as they are read:
/// [`digest_of_rdb`](super::digest_of_rdb)).
pub fn rdb_entries(path: &Path) -> Result<Vec<RdbEntry>, RdbReadError> {
    let mut out = Vec::new();
    read_rdb(path, &mut WholeEntries::new(|e| out.push(e)))?;
    Ok(out)
}

/// An [`EntryVisitor`] that builds each key's whole value and hands `f` the entry (an
/// empty collection, which Redis drops when loading, is not handed over).
pub(crate) struct WholeEntries<F: FnMut(RdbEntry)> {
    b: ValueBuilder,
    head: Option<(u32, Vec<u8>, Option<i64>)>,
    f: F,
}

impl<F: FnMut(RdbEntry)> WholeEntries<F> {
    pub fn new(f: F) -> Self {
        WholeEntries {
            b: ValueBuilder::default(),
            head: None,
            f,
        }
    }
}

impl<F: FnMut(RdbEntry)> ValueSink for WholeEntries<F> {
    fn begin(&mut self, kind: super::value::Kind, n: u64) {
        self.b.begin(kind, n)
    }
    fn string(&mut self, s: &[u8]) {
        self.b.string(s)
    }
    fn item(&mut self, s: &[u8]) {
        self.b.item(s)
    }
    fn scored(&mut self, m: &[u8], s: f64) {
        self.b.scored(m, s)
    }
    fn field(&mut self, f: &[u8], v: &[u8], e: Option<i64>) {
        self.b.field(f, v, e)
    }
    fn stream(&mut self, s: &super::value::Stream) {
        self.b.stream(s)
    }
}

impl<F: FnMut(RdbEntry)> EntryVisitor for WholeEntries<F> {
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
        self.head = Some((db, key.to_vec(), expire_ms));
    }
    fn end_key(&mut self, present: bool) {
        let value = self.b.take();
        if let (true, Some((db, key, expire_ms)), Some(value)) = (present, self.head.take(), value)
        {
            (self.f)(RdbEntry {
                db,
                key,
                value,
                expire_ms,
            });
        }
    }
}

pub(super) fn walk<R: std::io::Read, V: EntryVisitor>(
    rdb: &mut Rdb<'_, R>,
    v: &mut V,
) -> Result<(), ParseError> {
    rdb.src.start_crc();
    rdb.header()?;
    walk_records(rdb, v, 0, u64::MAX).map(|_| ())
}

/// Where [`walk_records`] stopped short of the RDB's end.
struct Stopped {
    /// The start of the first record at or past its stop, not read.
    at: u64,
    db: u32,
    /// An expiry read for that record.
    expire: Option<i64>,
}

/// Reads records from the source's place, in database `db`, into `v`: to the RDB's end
/// (`None`, its trailer read) or the first record that starts at or past `stop`.
fn walk_records<R: std::io::Read, V: EntryVisitor>(
    rdb: &mut Rdb<'_, R>,
    v: &mut V,
    mut db: u32,
    stop: u64,
) -> Result<Option<Stopped>, ParseError> {
    let valkey = rdb.out.valkey;
    let mut sc = Scratch::default();
    let mut key = Vec::new();
    let mut expire: Option<i64> = None;
    loop {
        let record = rdb.src.offset();
        if record >= stop {
            return Ok(Some(Stopped {
                at: record,
                db,
                expire,
            }));
        }
        // The file's bytes asked for some records ahead, as the validator does: a string's
        // hash otherwise waited for each line of it from memory.
        let b = rdb.src.buffered();
        for line in 0..3 {
            prefetch(b, RECORDS_AHEAD + 64 * line);
        }
        let t = rdb.src.u8()?;
        match t {
            0xff => return rdb.trailer().map(|()| None),
            0xfe => {
                let n = rdb.len()?;
                db = u32::try_from(n).map_err(|_| {
                    ParseError::corrupt(record + 1, format!("a database number, not {n}"))
                })?;
            }
            0xfd => expire = Some(i64::from(i32::from_le_bytes(rdb.src.array()?)) * 1000),
            0xfc => expire = Some(i64::from_le_bytes(rdb.src.array()?)),
            0xfb => {
                rdb.len()?;
                rdb.len()?;
            }
            0xfa => rdb.aux()?,
            0xf9 => {
                rdb.src.u8()?;
            }
            0xf8 => {
                rdb.len()?;
            }
            0xf7 => rdb.module_aux()?,
            0xf6 => rdb.function_pre_ga(record)?,
            0xf5 => {
                rdb.skip_string()?;
            }
            0xf4 => rdb.slot_info(record)?,
            _ => {
                // The key as it lies in the file when it can (no copy the visitor makes
                // anyway).
                rdb.with_string(&mut key, |k| v.start_key(db, k, expire.take()))?;
                let present = decode(rdb, t, valkey, v, &mut sc)
                    .map_err(|e| e.within(format_args!("in the record at offset {record}")))?;
                v.end_key(present);
            }
        }
    }
}

/// [`read_rdb_file`] of a big file in parts at once, as the validator reads it
/// ([`rdb_parts`](super::rdb_parts): the same places looked for record starts the same
/// way), each part into a visitor of its own from `make`: for visitors whose sums combine
/// in any order, as a digest's do. The visitors in file order; `None` when the file is
/// not read so (under [`MIN_LEN`](super::rdb_parts::MIN_LEN), one core free, a head the
/// parts cannot assume, no start found) or when the parts do not add up to reading it
/// whole: one met a fault, did not end exactly where the next began (at a record's start,
/// in the database the next assumed, no expiry read for it), or the CRC-64 over them all
/// is not the file's. The caller then reads it whole, for the verdict and the offsets of
/// reading it whole; a part's visitor may have been told keys of a part taken wrong.
pub(super) fn read_rdb_parts<V: EntryVisitor + Send>(
    file: &File,
    len: u64,
    make: impl Fn() -> V + Sync,
) -> Option<Vec<V>> {
    let threads = rdb_parts::threads(len);
    if threads < 2 {
        return None;
    }
    read_in_parts(file, len, &rdb_parts::splits(len, threads), threads, make)
}

/// [`read_rdb_parts`] from the record starts found at or after `places` (in order), on
/// `threads` threads.
pub(super) fn read_in_parts<V: EntryVisitor + Send>(
    file: &File,
    len: u64,
    places: &[u64],
    threads: usize,
    make: impl Fn() -> V + Sync,
) -> Option<Vec<V>> {
    let mapped = || Source::mapped(file.try_clone().ok()?, len).ok();
    let (version, valkey, db) = rdb_parts::head(&mut mapped()?, 0)?;
    let caller = reading_stop();
    // Every place's start, looked for by the threads at once (a few KiB of trials each),
    // then the parts between them, each thread taking the next nobody has taken.
    let next = AtomicUsize::new(0);
    let found: Vec<Mutex<Option<u64>>> = places.iter().map(|_| Mutex::new(None)).collect();
    on_threads(threads, &caller, || {
        let mut src = mapped()?;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let &place = places.get(i)?;
            let start =
                rdb_parts::find_start(&mut src, place, len, (version, valkey, db), false, 0);
            *found[i].lock().ok()? = start;
        }
    });
    let mut starts = vec![0];
    for f in found {
        match f.into_inner().ok()? {
            Some(s) if s > *starts.last()? => starts.push(s),
            _ => {}
        }
    }
    if starts.len() < 2 {
        return None;
    }
    let next = AtomicUsize::new(0);
    // A part that faults ends the reading in parts: the file is read whole next.
    let faulted = AtomicBool::new(false);
    let parts: Vec<Mutex<Option<Part<V>>>> = starts.iter().map(|_| Mutex::new(None)).collect();
    on_threads(threads, &caller, || {
        let mut src = mapped()?;
        while !faulted.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let &start = starts.get(i)?;
            let stop = starts.get(i + 1).copied().unwrap_or(u64::MAX);
            match read_part(&mut src, (version, valkey, db), start, stop, make()) {
                Some(part) => *parts[i].lock().ok()? = Some(part),
                None => faulted.store(true, Ordering::Relaxed),
            }
        }
        None
    });
    // The parts, put after one another: each ended where the next began, the last at the
    // trailer, whose CRC-64 is that of them all.
    let mut visitors = Vec::with_capacity(parts.len());
    let mut crc: Option<Digest> = None;
    for (i, part) in parts.into_iter().enumerate() {
        let part = part.into_inner().ok()??;
        crc = Some(match crc {
            None => part.crc?,
            Some(c) => crc64_then(&c, &part.crc?),
        });
        match (part.end, starts.get(i + 1)) {
            (End::At(s), Some(&next)) if s.at == next && s.db == db && s.expire.is_none() => {}
            (End::Trailer(stored), None) => {
                let computed = crc.as_ref()?.finalize();
                if stored.is_some_and(|s| s != 0 && s != computed) {
                    return None;
                }
            }
            _ => return None,
        }
        visitors.push(part.visitor);
    }
    Some(visitors)
}

/// Runs `work` on this thread and `threads - 1` more, which stop reading when this
/// thread's caller stops waiting (`caller`).
fn on_threads(
    threads: usize,
    caller: &Option<Arc<AtomicBool>>,
    work: impl Fn() -> Option<()> + Sync,
) {
    std::thread::scope(|s| {
        for _ in 1..threads {
            let work = &work;
            let _ = std::thread::Builder::new()
                .name("persist-part".into())
                .spawn_scoped(s, move || reading_stops_when(caller.clone(), work));
        }
        work();
    });
}

/// One part of a file read on its own.
struct Part<V> {
    visitor: V,
    /// Its CRC-64 (the first part's from the file's start).
    crc: Option<Digest>,
    end: End,
}

enum End {
    /// Stopped at the next part's place.
    At(Stopped),
    /// Read the file's trailer: the CRC-64 it stores (`None`: an RDB before version 5).
    Trailer(Option<u64>),
}

/// Reads the part of the file from `start` (0: the file's head) to the first record at or
/// past `stop` into `visitor`; `None` at a fault.
fn read_part<V: EntryVisitor>(
    src: &mut Source<File>,
    (version, valkey, db): (u32, bool, u32),
    start: u64,
    stop: u64,
    mut visitor: V,
) -> Option<Part<V>> {
    src.reposition(start);
    src.start_crc();
    let mut rdb = Rdb::new(src, None, 0);
    let walked = if start == 0 {
        rdb.header().ok()?;
        walk_records(&mut rdb, &mut visitor, 0, stop)
    } else {
        rdb.start_part(version, valkey, u64::MAX);
        walk_records(&mut rdb, &mut visitor, db, stop)
    };
    let (end, trailer_crc) = match walked.ok()? {
        Some(s) => (End::At(s), None),
        None => match rdb.take_part_trailer() {
            Some((crc, stored)) => (End::Trailer(Some(stored)), crc),
            None => (End::Trailer(None), None),
        },
    };
    drop(rdb);
    if src.io_error().is_some() {
        return None;
    }
    let crc = trailer_crc.or_else(|| src.crc_digest());
    Some(Part { visitor, crc, end })
}
