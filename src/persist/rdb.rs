//! The RDB stream: magic and version, the opcode loop (AUX, SELECTDB, RESIZEDB, expiries,
//! LRU/LFU hints, module AUX, functions, slot info), keys, and the CRC-64 trailer.
//!
//! Values are checked in [`super::rdb_value`] without building any Redis object.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use crc_fast::Digest;

use super::aof_keys::DATABASES;
use super::fp_set::{fingerprint, in_filter, FpRuns, FpSet, MAX_RUN_KEYS};

use super::error::{BlobFault, ParseError};
use super::lzf;
use super::source::{crc64_then, Source};

/// Blobs (listpacks, ziplists, ...) above this are skipped with a warning rather than held
/// in memory: Redis never writes one this big with its default limits.
pub(crate) const BLOB_CAP: usize = 32 << 20;
/// Keys longer than this are not held (only their slot check is lost, with a warning).
const KEY_CAP: usize = 1 << 20;
/// AUX values longer than this are only skipped.
const AUX_CAP: usize = 4096;
/// Warnings kept per file.
const WARNINGS_CAP: usize = 16;

/// Newest RDB version written with the `REDIS` magic that this reader understands.
pub const MAX_REDIS_RDB: u32 = 12;
/// Valkey 9.0's RDB version (`VALKEY` magic).
pub const VALKEY_RDB: u32 = 80;

/// Whether a file's first bytes are an RDB's magic (`REDIS` or `VALKEY`).
pub(crate) fn is_rdb_head(head: &[u8]) -> bool {
    head.starts_with(b"REDIS") || head.starts_with(b"VALKEY")
}

/// Told about every key, when the caller needs keys (slot checks, AOF key tracking).
pub(crate) trait KeyVisitor {
    fn key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>);

    /// `Some` when [`key_fp`](Self::key_fp), told a key's fingerprint, is all this visitor
    /// needs, and only for the fingerprints this filter
    /// ([`fp_filter`](super::fp_set::fp_filter)) lets through: then string records keep
    /// the record loop's fast path, and most keys cost a bit test, not a call.
    fn fingerprints(&self) -> Option<&[u64]> {
        None
    }

    /// A key by its fingerprint ([`fingerprint`]), for a visitor of
    /// [`fingerprints`](Self::fingerprints) that its filter lets through.
    fn key_fp(&mut self, _db: u32, _fp: u64, _expire_ms: Option<i64>) {}

    /// Asks the CPU for what [`key_fp`](Self::key_fp) of this key will read, some keys
    /// before it is told (see [`Visits::defer`]).
    fn prefetch_fp(&self, _db: u32, _fp: u64) {}
}

#[derive(Debug, Default)]
pub(crate) struct RdbOutcome {
    pub version: u32,
    pub valkey: bool,
    pub server_version: Option<String>,
    /// AUX `valkey-ver` was present: Valkey wrote the file (it also writes `redis-ver`
    /// 7.2.4, for compatibility).
    pub valkey_aux: bool,
    pub created: Option<i64>,
    pub keys_per_db: BTreeMap<u32, u64>,
    pub expires: u64,
    pub expired: u64,
    /// Keys with a TTL, and those passed, per logical database.
    pub expires_per_db: BTreeMap<u32, (u64, u64)>,
    /// Empty collections Redis drops while loading; not counted as keys.
    pub empty_skipped: u64,
    /// AUX `aof-base` said this RDB is the base of a multi-part AOF.
    pub aof_base: bool,
    /// AUX `repl-id` and `repl-offset`: the replication stream the writer was in and how
    /// far along it the data is (a master restarted from the file takes the offset up
    /// again, under a new id).
    pub repl_id: Option<String>,
    pub repl_offset: Option<u64>,
    pub warnings: Vec<String>,
    /// Keys whose values are damaged where the load does not look (see
    /// `Rdb::damaged_value`), by (database, fingerprint), with where: the server loads
    /// them, and stops on a command that reads one (an AOF's after its preamble).
    pub damaged: HashMap<(u32, u64), u64>,
    /// The first of them by name: "`key` in database N at offset M".
    pub damaged_named: Vec<String>,
}

impl RdbOutcome {
    /// Notes a key whose value is damaged where the load does not look; false when it
    /// was already noted (a stream with several damaged nodes).
    pub fn damaged(&mut self, db: u32, fp: Option<u64>, key: &str, at: u64) -> bool {
        if let Some(fp) = fp {
            match self.damaged.entry((db, fp)) {
                std::collections::hash_map::Entry::Occupied(_) => return false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(at);
                }
            }
        }
        if self.damaged_named.len() < WARNINGS_CAP {
            self.damaged_named
                .push(format!("`{key}` in database {db} at offset {at}"));
        }
        true
    }

    pub fn warn(&mut self, w: String) {
        if self.warnings.len() < WARNINGS_CAP {
            self.warnings.push(w);
        }
    }
}

/// An RDB length field, or the marker of a specially encoded string.
pub(crate) enum Len {
    Plain(u64),
    Encoded(u8),
}

/// Where a blob read from the file sits, for mapping faults back to file offsets.
#[derive(Clone, Copy)]
pub(crate) struct BlobAt {
    pub start: u64,
    pub compressed: bool,
}

pub(crate) struct Rdb<'a, R> {
    pub src: &'a mut Source<R>,
    pub out: RdbOutcome,
    pub blob: Vec<u8>,
    window: Vec<u8>,
    pub(crate) key: Vec<u8>,
    /// A member of a hash-table set or sorted set, and the fingerprints of those seen in
    /// the current value (or blob: `value_decode::first_repeat`): the server refuses a
    /// repeated one.
    pub member: Vec<u8>,
    pub members: FpSet,
    /// Fingerprints of the keys of the current database, and of the others seen: the
    /// server stops at a key twice in one database. 6 bytes a key (see `fp_set`).
    keys_seen: KeyRuns,
    other_dbs: HashMap<u32, KeyRuns>,
    /// Set to hunt a repeated key a first run may have found.
    pub hunt: Option<Hunt>,
    runs_full_warned: bool,
    /// A value type newer than the file's version was met (one warning a file).
    pub newer_type_warned: bool,
    /// The database and fingerprint of the key whose value is being read (`None`: a key
    /// too long to hold), for `damaged_value`.
    pub value_db: u32,
    pub value_fp: Option<u64>,
    /// An AOF's RDB preamble: its keys load whether expired or not.
    pub preamble: bool,
    current_db: u32,
    /// Function library names: the server refuses one loaded twice.
    libraries: FpSet,
    visitor: Option<&'a mut dyn KeyVisitor>,
    /// The visitor takes fingerprints, those this filter lets through
    /// ([`KeyVisitor::fingerprints`]); with no visitor, a later part keeps them in
    /// `visits` for the file's visitor ([`record_visits`](Self::record_visits)).
    visitor_fp: Option<Vec<u64>>,
    visits: Visits,
    now_ms: i64,
    /// The record loop returns at the first record boundary at or past this offset (a
    /// file read in parts: `rdb_parts`); `u64::MAX` otherwise.
    pub stop: u64,
    /// Set when the loop returned at `stop`: the expiry read for the record there.
    pub stopped: Option<Option<i64>>,
    /// A part of the file after the first (or a trial of where one may start): see
    /// [`PartRun`].
    part: bool,
    part_unsure: bool,
    part_trailer: Option<PartTrailer>,
}

/// A later part's trailer: its CRC-64 of the bytes from the part's start, the one the file
/// stores, and where that is.
struct PartTrailer {
    digest: Option<Digest>,
    stored: u64,
    at: u64,
}

/// What a later part of a file, read on its own from a record boundary in the database the
/// file's keys start in, leaves to be put after the part before it ([`Rdb::absorb`]). Such
/// a part meets none of the opcodes of a file's head (AUX, module AUX, functions): one
/// that does is `unsure`, and the part before reads on alone.
pub(crate) struct PartRun {
    pub out: RdbOutcome,
    pub result: Result<(), ParseError>,
    unsure: bool,
    runs: BTreeMap<u32, KeyRuns>,
    db: u32,
    newer_type_warned: bool,
    runs_full_warned: bool,
    trailer: Option<PartTrailer>,
    /// The keys its visitor's filter let through, in order ([`Rdb::record_visits`]).
    visits: Visits,
}

/// The keys a later part let through the file's visitor's filter, in order: told to that
/// visitor when the part is put after the one before. A filter lets through under one
/// key in 100 that is not the visitor's (some 46,000 of a 7 M-key base), so a key costs
/// 8 bytes; its database, when it changed, and its expiry, when it has one, are kept
/// beside it.
#[derive(Default)]
struct Visits {
    fps: Vec<u64>,
    /// (index in `fps` from which, database).
    dbs: Vec<(usize, u32)>,
    /// (index in `fps`, expiry in ms).
    expiries: Vec<(usize, i64)>,
    /// Keys let through for this run's own visitor, told [`DEFER`] to twice that many keys
    /// later ([`defer`](Self::defer)): the batch being filled and the full one before it.
    filling: Vec<(u32, u64, Option<i64>)>,
    waiting: Vec<(u32, u64, Option<i64>)>,
}

/// Keys let through a visitor's filter that wait, their memory asked for, before it is
/// told them ([`Visits::defer`]).
const DEFER: usize = 16;

impl Visits {
    fn push(&mut self, db: u32, fp: u64, expire_ms: Option<i64>) {
        let i = self.fps.len();
        if self.dbs.last().is_none_or(|&(_, d)| d != db) {
            self.dbs.push((i, db));
        }
        if let Some(ms) = expire_ms {
            self.expiries.push((i, ms));
        }
        self.fps.push(fp);
    }

    /// Tells `v` each key, in order, asking for the memory of the key [`DEFER`] ahead.
    fn tell(&self, v: &mut dyn KeyVisitor) {
        let mut dbs = self.dbs.iter().peekable();
        let mut expiries = self.expiries.iter().peekable();
        let mut db = 0;
        for (i, &fp) in self.fps.iter().enumerate() {
            if let Some(&(_, d)) = dbs.next_if(|&&(at, _)| at == i) {
                db = d;
            }
            if let Some(&ahead) = self.fps.get(i + DEFER) {
                v.prefetch_fp(db, ahead);
            }
            let expire = expiries.next_if(|&&(at, _)| at == i).map(|&(_, ms)| ms);
            v.key_fp(db, fp, expire);
        }
    }

    /// A key for `v`, told once [`DEFER`] more have come (or at [`tell_deferred`]), its
    /// memory asked for now. Told at once, each key let through waited for a cache miss in
    /// the visitor's table of touched keys: 6% of the one-core check of the 1 GB RDB base
    /// with 60,000 incremental writes. The order of an RDB's keys does not matter to a
    /// visitor: each is in the file once (a key twice is refused).
    ///
    /// [`tell_deferred`]: Self::tell_deferred
    #[inline]
    fn defer(&mut self, v: &mut dyn KeyVisitor, db: u32, fp: u64, expire: Option<i64>) {
        v.prefetch_fp(db, fp);
        self.filling.push((db, fp, expire));
        if self.filling.len() >= DEFER {
            for &(db, fp, expire) in &self.waiting {
                v.key_fp(db, fp, expire);
            }
            self.waiting.clear();
            std::mem::swap(&mut self.waiting, &mut self.filling);
        }
    }

    /// Tells `v` every key [`defer`](Self::defer) holds.
    fn tell_deferred(&mut self, v: &mut dyn KeyVisitor) {
        for &(db, fp, expire) in self.waiting.iter().chain(&self.filling) {
            v.key_fp(db, fp, expire);
        }
        self.waiting.clear();
        self.filling.clear();
    }
}

/// A key by its fingerprint, when a filter of fingerprints is asked for (`filter`,
/// [`KeyVisitor::fingerprints`]) and lets it through: told to the visitor (a few keys
/// later: [`Visits::defer`]), or, in a later part with none, kept in `visits` for the
/// file's ([`Rdb::record_visits`]). (Over the reader's fields, not the reader: the record
/// loop holds its source's bytes meanwhile.)
#[inline(always)]
fn visit_fp(
    visitor: Option<&mut &mut dyn KeyVisitor>,
    filter: Option<&[u64]>,
    visits: &mut Visits,
    db: u32,
    fp: u64,
    expire: Option<i64>,
) {
    match (filter, visitor) {
        (Some(f), Some(v)) if in_filter(f, fp) => visits.defer(&mut **v, db, fp, expire),
        (Some(f), None) if in_filter(f, fp) => visits.push(db, fp, expire),
        _ => {}
    }
}

impl<'a, R: Read> Rdb<'a, R> {
    pub fn new(
        src: &'a mut Source<R>,
        visitor: Option<&'a mut dyn KeyVisitor>,
        now_ms: i64,
    ) -> Self {
        let visitor_fp = visitor
            .as_ref()
            .and_then(|v| v.fingerprints().map(<[u64]>::to_vec));
        Rdb {
            src,
            out: RdbOutcome::default(),
            blob: Vec::new(),
            window: Vec::new(),
            key: Vec::new(),
            member: Vec::new(),
            members: FpSet::default(),
            keys_seen: KeyRuns::default(),
            other_dbs: HashMap::new(),
            hunt: None,
            runs_full_warned: false,
            newer_type_warned: false,
            value_db: 0,
            value_fp: None,
            preamble: false,
            current_db: 0,
            libraries: FpSet::default(),
            visitor,
            visitor_fp,
            visits: Visits::default(),
            now_ms,
            stop: u64::MAX,
            stopped: None,
            part: false,
            part_unsure: false,
            part_trailer: None,
        }
    }

    /// Reads the whole RDB, up to and including its checksum. The outcome (counts so far,
    /// version, ...) is in `self.out` whether or not this succeeds.
    pub fn run(&mut self) -> Result<(), ParseError> {
        self.src.start_crc();
        self.header()?;
        self.records(0, None)
    }

    /// The record loop, from a record boundary in database `db` (`expire`: the expiry read
    /// for the record there), up to and including the checksum, or up to `stop`.
    pub fn records(&mut self, mut db: u32, mut expire: Option<i64>) -> Result<(), ParseError> {
        let mut db_keys = 0u64;
        let result = loop {
            // The bulk of most files: string keys with string values, already buffered, no
            // expiry, no one asking for keys. Runs of them go through one tight loop.
            if expire.is_none()
                && (self.visitor.is_none() || self.visitor_fp.is_some())
                && self.hunt.is_none()
            {
                db_keys += self.skip_string_records(db);
            }
            let record = self.src.offset();
            if record >= self.stop {
                self.stopped = Some(expire);
                break Ok(());
            }
            let t = self.src.u8()?;
            let step = match t {
                0xff => break self.trailer(),
                0xfe => {
                    self.flush_db(db, &mut db_keys);
                    let n = self.len()?;
                    if n >= u64::from(DATABASES) {
                        break Err(ParseError::unsupported(
                            record + 1,
                            format!(
                                "a database number below {DATABASES} (a server's default \
                                 `databases`, as Lazarus starts them; it refuses the file), not {n}"
                            ),
                        ));
                    }
                    let next = n as u32;
                    if next != db {
                        let seen = self.other_dbs.remove(&next).unwrap_or_default();
                        let old = std::mem::replace(&mut self.keys_seen, seen);
                        self.other_dbs.insert(db, old);
                    }
                    db = next;
                    Ok(())
                }
                0xfd => {
                    let s = i32::from_le_bytes(self.src.array()?);
                    expire = Some(i64::from(s) * 1000);
                    Ok(())
                }
                0xfc => {
                    expire = Some(i64::from_le_bytes(self.src.array()?));
                    Ok(())
                }
                // RESIZEDB: only a hint (`keys_seen` takes memory as keys come).
                0xfb => self.len().and_then(|_| self.len().map(drop)),
                0xfa | 0xf7 | 0xf6 | 0xf5 if self.part => {
                    self.part_unsure = true;
                    break Err(ParseError::corrupt(
                        record,
                        "no opcode of a file's head in a part read on its own",
                    ));
                }
                0xfa => self.aux(),
                0xf9 => self.src.u8().map(drop),
                0xf8 => self.len().map(drop),
                0xf7 => self.module_aux(),
                0xf6 => self.function_pre_ga(record),
                0xf5 => self.function_library(record + 1),
                0xf4 => self.slot_info(record),
                _ => {
                    let kept = self.key_value(t, record, db, expire);
                    expire = None;
                    match kept {
                        Ok(true) => {
                            db_keys += 1;
                            Ok(())
                        }
                        Ok(false) => Ok(()),
                        Err(e) => Err(e.within(format_args!("in the record at offset {record}"))),
                    }
                }
            };
            if let Err(e) = step {
                break Err(e);
            }
        };
        self.flush_db(db, &mut db_keys);
        self.current_db = db;
        if let Some(v) = self.visitor.as_mut() {
            self.visits.tell_deferred(&mut **v);
        }
        result
    }

    fn flush_db(&mut self, db: u32, n: &mut u64) {
        if *n > 0 {
            *self.out.keys_per_db.entry(db).or_default() += *n;
            *n = 0;
        }
    }

    pub fn header(&mut self) -> Result<(), ParseError> {
        let magic: [u8; 9] = self.src.array()?;
        let (valkey, digits) = if &magic[..5] == b"REDIS" {
            (false, &magic[5..])
        } else if &magic[..6] == b"VALKEY" {
            (true, &magic[6..])
        } else {
            return Err(ParseError::corrupt(0, "the RDB magic `REDIS` or `VALKEY`"));
        };
        // Both servers read a `REDIS` version with atoi, so digits then anything load
        // (`010x` is 10); valkey-server 8.1 also wants the first one to be `0`, where
        // redis-server 7.0 takes a sign or spaces before them: the stricter is the rule.
        let run = if valkey {
            digits.len()
        } else {
            digits.iter().take_while(|b| b.is_ascii_digit()).count()
        };
        let version = std::str::from_utf8(&digits[..run])
            .ok()
            .filter(|d| {
                !d.is_empty()
                    && d.bytes().all(|b| b.is_ascii_digit())
                    && (valkey || d.starts_with('0'))
            })
            .and_then(|d| d.parse::<u32>().ok())
            .ok_or_else(|| {
                ParseError::corrupt(
                    9 - digits.len() as u64,
                    "an RDB version number (for `REDIS`, digits from a `0`: valkey-server \
                     refuses anything else)",
                )
            })?;
        self.out.version = version;
        self.out.valkey = valkey;
        let known = if valkey {
            version == VALKEY_RDB || (1..=11).contains(&version)
        } else {
            (1..=MAX_REDIS_RDB).contains(&version)
        };
        if !known {
            return Err(ParseError::unsupported(
                9 - digits.len() as u64,
                format!(
                    "an RDB version this reader knows (1-{MAX_REDIS_RDB}, or {VALKEY_RDB} for Valkey), not {version}"
                ),
            ));
        }
        Ok(())
    }

    pub fn trailer(&mut self) -> Result<(), ParseError> {
        if self.out.version < 5 {
            return Ok(());
        }
        if self.part {
            let digest = self.src.crc_digest();
            self.src.stop_crc();
            let at = self.src.offset();
            let stored = u64::from_le_bytes(self.src.array()?);
            self.part_trailer = Some(PartTrailer { digest, stored, at });
            return Ok(());
        }
        let computed = self.src.crc();
        self.src.stop_crc();
        let at = self.src.offset();
        let stored = u64::from_le_bytes(self.src.array()?);
        self.crc_verdict(computed, stored, at)
    }

    /// The trailer's verdict: the CRC-64 `computed` of the data before it, against the
    /// one `stored` at `at` (0: saved with checksums off).
    fn crc_verdict(&mut self, computed: u64, stored: u64, at: u64) -> Result<(), ParseError> {
        if stored != 0 && stored != computed {
            return Err(ParseError::corrupt(
                at,
                format!("CRC-64 {computed:016x} of the data before it, not {stored:016x}"),
            ));
        }
        if stored == 0 {
            self.out.warn("the RDB was saved with checksums off".into());
        }
        Ok(())
    }

    pub fn aux(&mut self) -> Result<(), ParseError> {
        let mut name = Vec::new();
        self.string_into(&mut name, AUX_CAP)?;
        let mut value = Vec::new();
        let kept = self.string_into(&mut value, AUX_CAP)?;
        if !kept {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&value).into_owned();
        match name.as_slice() {
            // Valkey writes both; its own name wins.
            b"redis-ver" if self.out.server_version.is_none() => {
                self.out.server_version = Some(text)
            }
            b"valkey-ver" => {
                self.out.server_version = Some(text);
                self.out.valkey_aux = true;
            }
            b"ctime" => self.out.created = text.parse().ok(),
            b"aof-base" => self.out.aof_base = text == "1",
            b"repl-id" => self.out.repl_id = Some(text),
            b"repl-offset" => self.out.repl_offset = text.parse().ok(),
            _ => {}
        }
        Ok(())
    }

    pub fn module_aux(&mut self) -> Result<(), ParseError> {
        let id_at = self.src.offset();
        let id = self.len()?;
        let at = self.src.offset();
        let when_op = self.len()?;
        if when_op != 2 {
            return Err(ParseError::corrupt(
                at,
                format!("module AUX `when` opcode 2 (unsigned), not {when_op}"),
            ));
        }
        self.len()?;
        self.module_opcodes()?;
        Err(needs_module(id_at, id, "module data (AUX)"))
    }

    /// A module value serialised with annotations: typed items up to the EOF opcode.
    pub fn module_opcodes(&mut self) -> Result<(), ParseError> {
        loop {
            let at = self.src.offset();
            match self.len()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.len()?;
                }
                3 => self.src.skip(4)?,
                4 => self.src.skip(8)?,
                5 => {
                    self.skip_string()?;
                }
                op => {
                    return Err(ParseError::corrupt(
                        at,
                        format!("a module value opcode (0-5), not {op}"),
                    ))
                }
            }
        }
    }

    /// Slot info (opcode 244: a slot, its keys and its keys with a TTL), a hint redis 7.4
    /// and later write from RDB 12 on (and valkey 9 reads, in its `VALKEY080` files). Older
    /// servers know no opcode 244: redis-server 7.0 and valkey-server 8.1 stop at it
    /// whatever the file's version (redis-server 7.0 takes it for a value type, reads a key,
    /// then "Unknown RDB encoding type 244"), which is how a flipped expire opcode (252)
    /// reads in an RDB 10 file.
    pub fn slot_info(&mut self, record: u64) -> Result<(), ParseError> {
        let version = self.out.version;
        if version < 12 {
            return Err(ParseError::corrupt(
                record,
                format!(
                    "an opcode or value type RDB {version} has, not 244 (slot info, first in RDB \
                     12: redis-server 7.0-7.2 and valkey-server 8.1 know no opcode 244 and \
                     refuse the file; only redis-server 7.4 and later, which write RDB 12, read \
                     past it)"
                ),
            ));
        }
        (0..3).try_for_each(|_| self.len().map(drop))
    }

    /// A function library in the pre-release form of redis 7.0's release candidates
    /// (opcode 246: name, engine, an optional description, code), its opcode at `at`.
    /// valkey-server 8.1 refuses it outright ("Pre-release function format not supported");
    /// redis-server 7.0 turns it into a `#!<engine> name=<name>` library and loads it when
    /// that loads. No released server writes it: the reader takes the stricter answer.
    pub fn function_pre_ga(&mut self, at: u64) -> Result<(), ParseError> {
        let mut name = Vec::new();
        self.string_into(&mut name, AUX_CAP)?;
        self.skip_string()?; // engine
        if self.len()? != 0 {
            self.skip_string()?; // description
        }
        self.skip_string()?; // code
        Err(ParseError::corrupt(
            at,
            format!(
                "a function library as released servers write it (opcode 245), not the \
                 pre-release form of redis 7.0's release candidates (246, library `{}`): \
                 valkey-server 8.1 refuses it (\"Pre-release function format not \
                 supported\"); redis-server 7.0 loads it when its engine, name and Lua load; \
                 the reader takes the stricter answer",
                String::from_utf8_lossy(&name)
            ),
        ))
    }

    /// Reads one key and its value; `Ok(false)` for an empty collection Redis would drop.
    fn key_value(
        &mut self,
        t: u8,
        type_at: u64,
        db: u32,
        expire: Option<i64>,
    ) -> Result<bool, ParseError> {
        let mut key = std::mem::take(&mut self.key);
        let at = self.src.offset();
        // A trial of where records start skips keys: one read from inside a value may be
        // thousands of bytes long, and reading and fingerprinting those was most of the
        // search's time.
        let trial = self.hunt.as_ref().is_some_and(Hunt::skips_keys);
        let kept = match trial {
            true => self.skip_string().map(|_| false),
            false => self.string_into(&mut key, KEY_CAP),
        };
        let mut fp = None;
        match kept {
            Ok(false) if trial => {}
            Ok(true) => {
                let f = fingerprint(&key);
                fp = Some(f);
                match (self.visitor.as_mut(), &self.visitor_fp) {
                    (Some(v), None) => v.key(db, &key, expire),
                    (v, filter) => visit_fp(v, filter.as_deref(), &mut self.visits, db, f, expire),
                }
            }
            Ok(false) => self.out.warn(format!(
                "key at offset {at} too long to check its slot or whether it is repeated"
            )),
            Err(_) => {}
        }
        self.key = key;
        kept?;
        self.value_db = db;
        self.value_fp = fp;
        let present = self.value(t, type_at)?;
        // An empty collection is dropped before the server looks for a duplicate.
        if let (Some(fp), true) = (fp, present) {
            self.new_key(db, fp, at)?;
        }
        if present {
            if let Some(ms) = expire {
                // An AOF's preamble loads its keys expired or not: a negative expire time
                // then stops valkey-server 8.1 in its expiry cycle right after the load (an
                // assertion; redis-server 7.0 deletes the key). A plain RDB's load as a
                // master drops the key as expired; an empty collection is dropped anyway.
                if self.preamble && ms < 0 {
                    return Err(ParseError::corrupt(
                        at,
                        format!(
                            "a key with an expire time of 0 or more, not {ms} ms (valkey-server \
                             8.1 loads an AOF's keys expired or not, then asserts on a negative \
                             one)"
                        ),
                    ));
                }
                let passed = u64::from(ms < self.now_ms);
                self.out.expires += 1;
                self.out.expired += passed;
                let per_db = self.out.expires_per_db.entry(db).or_default();
                per_db.0 += 1;
                per_db.1 += passed;
            }
        } else {
            self.out.empty_skipped += 1;
        }
        Ok(present)
    }

    pub fn read_len(&mut self) -> Result<Len, ParseError> {
        let at = self.src.offset();
        let b = self.src.u8()?;
        Ok(match b >> 6 {
            0 => Len::Plain(u64::from(b & 0x3f)),
            1 => Len::Plain((u64::from(b & 0x3f) << 8) | u64::from(self.src.u8()?)),
            2 => match b {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(self.src.array()?))),
                0x81 => Len::Plain(u64::from_be_bytes(self.src.array()?)),
                _ => {
                    return Err(ParseError::corrupt(
                        at,
                        format!("a length encoding (0x80 or 0x81), not 0x{b:02x}"),
                    ))
                }
            },
            _ => Len::Encoded(b & 0x3f),
        })
    }

    #[inline]
    pub fn len(&mut self) -> Result<u64, ParseError> {
        // Fast path: a 6- or 14-bit length already in the buffer.
        let b = self.src.buffered();
        if let Some(&first) = b.first() {
            if first < 0x40 {
                self.src.consume(1);
                return Ok(u64::from(first));
            }
            if first < 0x80 && b.len() >= 2 {
                let n = (u64::from(first & 0x3f) << 8) | u64::from(b[1]);
                self.src.consume(2);
                return Ok(n);
            }
        }
        self.len_slow()
    }

    fn len_slow(&mut self) -> Result<u64, ParseError> {
        match self.read_len()? {
            Len::Plain(n) => Ok(n),
            // The server reads every length that is not a string's with rdbLoadLen(rdb,
            // NULL), which ignores the "encoded" mark and takes its low six bits.
            Len::Encoded(n) => Ok(u64::from(n)),
        }
    }

    /// A collection's element count: each element takes at least `min_bytes` bytes, so a
    /// count the rest of the file cannot hold is refused before looping over it.
    pub fn count(&mut self, min_bytes: u64) -> Result<u64, ParseError> {
        let n = self.len()?;
        self.src
            .check_len(n.saturating_mul(min_bytes), "collection")?;
        Ok(n)
    }

    /// Skips whole string records (type 0, key, value) while each is wholly buffered and
    /// needs no check beyond `buffered_string_end`'s and a key not seen before; returns how
    /// many. Consumes nothing of a record it does not take, so the careful path sees it
    /// from its type byte (and reports any fault in it).
    #[inline]
    fn skip_string_records(&mut self, db: u32) -> u64 {
        let b = self.src.buffered_before(self.stop);
        let mut at = 0;
        let mut n = 0;
        while b.get(at) == Some(&0) {
            // The records' first bytes are all this loop reads of them: each waited for
            // its cache line (written by the read-ahead thread on the other core, or
            // coming from memory through a mapping), a sixth of this loop. Asked for some
            // records ahead, it is there: three lines a record (most are over 128 bytes)
            // 1 KiB ahead, where one line 512 bytes ahead left two in three to the
            // hardware (8% of the mixed RDB's check on one core).
            for line in 0..3 {
                super::fp_set::prefetch(b, at + RECORDS_AHEAD + 64 * line);
            }
            let Some((key_end, fp)) = buffered_key(b, at + 1) else {
                break;
            };
            let Some(end) = buffered_string_end(b, key_end) else {
                break;
            };
            if !self.keys_seen.push_later(fp) {
                break;
            }
            let filter = self.visitor_fp.as_deref();
            visit_fp(
                self.visitor.as_mut(),
                filter,
                &mut self.visits,
                db,
                fp,
                None,
            );
            at = end;
            n += 1;
        }
        self.src.consume(at);
        n
    }

    /// Records a key of database `db` (at `at`), or, hunting, finds the repeated one.
    fn new_key(&mut self, db: u32, fp: u64, at: u64) -> Result<(), ParseError> {
        if let Some(hunt) = self.hunt.as_mut() {
            if hunt.db == db && hunt.fp == KeyRuns::kept(fp) {
                // Different keys may share the kept bits: only the same bytes repeat.
                if hunt.keys.contains(&self.key) {
                    let key = String::from_utf8_lossy(&self.key[..self.key.len().min(64)])
                        .escape_debug()
                        .to_string();
                    return Err(ParseError::corrupt(
                        at,
                        format!(
                            "a key not already in database {db}, not `{key}` again (the server \
                             stops at \"RDB has duplicated key\")"
                        ),
                    ));
                }
                hunt.keys.push(self.key.clone());
            }
            return Ok(());
        }
        if !self.keys_seen.push_later(fp) && !self.runs_full_warned {
            self.runs_full_warned = true;
            self.out.warn(format!(
                "more than {MAX_RUN_KEYS} keys in database {db}: later ones not checked for repeats"
            ));
        }
        Ok(())
    }

    /// After a whole file: the candidates for a key twice in a database, as (db, kept
    /// fingerprint), database by database: the first holding a key twice is the one the
    /// server stops at, the others (rare) different keys that share the kept bits. The
    /// caller runs the file again with `hunt` set to tell them apart ([`find_repeated_key`]).
    pub fn repeated_keys(&mut self) -> Vec<(u32, u64)> {
        let mut dbs: Vec<(u32, KeyRuns)> = self.other_dbs.drain().collect();
        dbs.push((self.current_db, std::mem::take(&mut self.keys_seen)));
        dbs.sort_by_key(|d| d.0);
        let mut out = Vec::new();
        let cores = super::prefetch::cores_free();
        for (db, mut runs) in dbs {
            let left = MAX_CANDIDATES - out.len();
            out.extend(runs.repeats_on(left, cores).into_iter().map(|fp| (db, fp)));
            if out.len() >= MAX_CANDIDATES {
                break;
            }
        }
        out
    }

    /// The database the record loop was in when it last returned.
    pub fn current_db(&self) -> u32 {
        self.current_db
    }

    /// Makes this a part after the first of a file of RDB `version` (`valkey`: its magic),
    /// read from the source's position up to `stop`, with nothing of an earlier run kept
    /// but its scratch buffers and keys.
    pub fn start_part(&mut self, version: u32, valkey: bool, stop: u64) {
        self.out = RdbOutcome {
            version,
            valkey,
            ..RdbOutcome::default()
        };
        self.part = true;
        self.part_unsure = false;
        self.part_trailer = None;
        self.stop = stop;
        self.stopped = None;
    }

    /// What a later part needs to stand in for this run's visitor: `Some(None)` when there
    /// is none, `Some(Some(filter))` when it is told fingerprints through a filter;
    /// `None` when it is told each key's bytes, which only this run can do (the file is
    /// then read in one part).
    pub fn parts_filter(&self) -> Option<Option<&[u64]>> {
        match (&self.visitor, &self.visitor_fp) {
            (Some(_), None) => None,
            (_, filter) => Some(filter.as_deref()),
        }
    }

    /// Makes this run (with no visitor: a later part) keep the keys `filter` lets through,
    /// to be told to the file's visitor when it is put after the part before.
    pub fn record_visits(&mut self, filter: Vec<u64>) {
        debug_assert!(self.visitor.is_none());
        self.visitor_fp = Some(filter);
    }

    /// A later part's trailer, once it read the file's: its CRC-64 of the bytes from the
    /// part's start, and the one the file stores (0: saved with checksums off). `None` when
    /// it read none (an RDB before version 5 has none).
    pub fn take_part_trailer(&mut self) -> Option<(Option<Digest>, u64)> {
        self.part_trailer.take().map(|t| (t.digest, t.stored))
    }

    /// This part's run, ended with `result`, for the part before it ([`absorb`](Self::absorb)).
    pub fn finish_part(&mut self, result: Result<(), ParseError>) -> PartRun {
        let mut runs: BTreeMap<u32, KeyRuns> = self.other_dbs.drain().collect();
        runs.insert(self.current_db, std::mem::take(&mut self.keys_seen));
        runs.values_mut().for_each(KeyRuns::release_unused);
        self.visits.fps.shrink_to_fit();
        PartRun {
            out: std::mem::take(&mut self.out),
            result,
            unsure: self.part_unsure,
            runs,
            db: self.current_db,
            newer_type_warned: self.newer_type_warned,
            runs_full_warned: self.runs_full_warned,
            trailer: self.part_trailer.take(),
            visits: std::mem::take(&mut self.visits),
        }
    }

    /// Puts the part read on its own from where this run stopped (`stopped`, in the
    /// database that part started in, no expiry pending) after this run, as if this run
    /// had read on: its counts, warnings and keys after these, the keys it kept for this
    /// run's visitor told to it in order, its verdict (the CRC-64 checked over both) the
    /// file's. `None`, nothing changed, when that would not be
    /// exactly what reading on gives (the part met the file's head opcodes, a database
    /// with too many keys to look for repeats in, a warning said once a file in both
    /// parts, a damaged key named in both): this run then reads on.
    pub fn absorb(&mut self, later: PartRun) -> Option<Result<(), ParseError>> {
        let held = |db: u32, this: &Self| match db == this.current_db {
            true => this.keys_seen.len(),
            false => this.other_dbs.get(&db).map_or(0, KeyRuns::len),
        };
        let inexact = later.unsure
            || self.runs_full_warned
            || later.runs_full_warned
            || (self.newer_type_warned && later.newer_type_warned);
        let exact = !inexact
            && later
                .runs
                .iter()
                .all(|(&db, r)| held(db, self) + r.len() <= MAX_RUN_KEYS)
            && later
                .out
                .damaged
                .keys()
                .all(|k| !self.out.damaged.contains_key(k));
        if !exact {
            return None;
        }
        if let Some(v) = self.visitor.as_mut() {
            later.visits.tell(&mut **v);
        }
        for (db, runs) in later.runs {
            match db == self.current_db {
                true => self.keys_seen.append(runs),
                false => self.other_dbs.entry(db).or_default().append(runs),
            }
        }
        if later.db != self.current_db {
            let seen = self.other_dbs.remove(&later.db).unwrap_or_default();
            let old = std::mem::replace(&mut self.keys_seen, seen);
            self.other_dbs.insert(self.current_db, old);
            self.current_db = later.db;
        }
        self.newer_type_warned |= later.newer_type_warned;
        let o = later.out;
        for (db, n) in o.keys_per_db {
            *self.out.keys_per_db.entry(db).or_default() += n;
        }
        for (db, (n, passed)) in o.expires_per_db {
            let e = self.out.expires_per_db.entry(db).or_default();
            e.0 += n;
            e.1 += passed;
        }
        self.out.expires += o.expires;
        self.out.expired += o.expired;
        self.out.empty_skipped += o.empty_skipped;
        o.warnings.into_iter().for_each(|w| self.out.warn(w));
        self.out.damaged.extend(o.damaged);
        let room = WARNINGS_CAP.saturating_sub(self.out.damaged_named.len());
        self.out
            .damaged_named
            .extend(o.damaged_named.into_iter().take(room));
        let result = later.result.and_then(|()| {
            let Some(t) = later.trailer else {
                return Ok(());
            };
            let mut digest = self.src.crc_digest();
            if let (Some(d), Some(rest)) = (digest.as_mut(), t.digest) {
                *d = crc64_then(d, &rest);
            }
            self.crc_verdict(digest.map_or(0, |d| d.finalize()), t.stored, t.at)
        });
        self.stopped = None;
        Some(result)
    }

    /// A member of a hash-table set or sorted set: a repeat in the same value is a fault    /// A member of a hash-table set or sorted set: a repeat in the same value is a fault
    /// (the server refuses it).
    pub fn member(&mut self, what: &str) -> Result<(), ParseError> {
        let at = self.src.offset();
        let Some((fp, _)) = self.member_fp(what)? else {
            return Ok(());
        };
        match self.members.insert(fp) {
            Some(false) => Err(ParseError::corrupt(
                at,
                format!("a {what} not already in this value (the server refuses repeats)"),
            )),
            _ => Ok(()),
        }
    }

    /// A field or member the server puts in a hash table: its fingerprint and length, or
    /// `None` (after a warning) when too long to hold. A plain string already buffered is
    /// fingerprinted where it lies: copying each member out first was half this read.
    ///
    /// Inlined, the careful path apart: a call a member cost a tenth of the reading of
    /// a set's members (saving and restoring registers, the answer through memory).
    #[inline]
    pub fn member_fp(&mut self, what: &str) -> Result<Option<(u64, u64)>, ParseError> {
        let b = self.src.buffered();
        if let Some((header, n)) = buffered_plain(b) {
            let fp = fingerprint(&b[header..header + n]);
            self.src.consume(header + n);
            return Ok(Some((fp, n as u64)));
        }
        self.member_fp_copied(what)
    }

    #[inline(never)]
    fn member_fp_copied(&mut self, what: &str) -> Result<Option<(u64, u64)>, ParseError> {
        let at = self.src.offset();
        let mut m = std::mem::take(&mut self.member);
        let kept = self.string_into(&mut m, BLOB_CAP);
        let found = (fingerprint(&m), m.len() as u64);
        self.member = m;
        if !kept? {
            self.out.warn(format!(
                "{what} at offset {at} too long to check for repeats"
            ));
            return Ok(None);
        }
        Ok(Some(found))
    }

    /// A function library (RDB 10+), its code starting at `at`: the `#!lua name=<name>`
    /// header the server reads before anything else, a name of letters, digits and `_`,
    /// not loaded twice, whose Lua code loads as the server loads it (compiled, then run in
    /// a sandbox to register its functions: see `lua_load`).
    fn function_library(&mut self, at: u64) -> Result<(), ParseError> {
        let mut code = std::mem::take(&mut self.window);
        let kept = self.string_into(&mut code, BLOB_CAP);
        let r = kept.map(|kept| {
            if kept {
                Some(library_name(&code))
            } else {
                None
            }
        });
        self.window = code;
        match r? {
            None => self
                .out
                .warn(format!("function library at offset {at} too big to check")),
            Some(Err(e)) => return Err(ParseError::corrupt(at, e)),
            Some(Ok(name)) => {
                // In the server's order: the name taken, then the code run.
                if self.libraries.insert(fingerprint(name.as_bytes())) == Some(false) {
                    return Err(ParseError::corrupt(
                        at,
                        format!(
                            "a function library not loaded before, not `{name}` again (the \
                             server refuses: \"Library already exists\")"
                        ),
                    ));
                }
                // The code after the header line (its newline kept, so line numbers are
                // the server's), loaded as the server loads it.
                let body = match self.window.iter().position(|&c| c == b'\n') {
                    Some(n) => &self.window[n..],
                    None => &[][..],
                };
                if let Err(e) = super::lua_load::load_library(body) {
                    return Err(ParseError::corrupt(
                        at,
                        format!(
                            "a function library the server can load, not `{name}` (the server \
                             refuses: \"{e}\")"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Skips a string, checking its encoding (and, for LZF, its decompressed length).
    #[inline]
    pub fn skip_string(&mut self) -> Result<u64, ParseError> {
        // Fast path: a plain string with a 6- or 14-bit length, wholly in the buffer.
        let b = self.src.buffered();
        if let Some((header, n)) = buffered_plain(b) {
            self.src.consume(header + n);
            return Ok(n as u64);
        }
        if b.first() == Some(&0xc3) {
            if let Some((used, ulen)) = lzf_buffered(b) {
                self.src.consume(used);
                return Ok(ulen);
            }
        }
        self.skip_string_slow()
    }

    #[cold]
    fn skip_string_slow(&mut self) -> Result<u64, ParseError> {
        let mut window = std::mem::take(&mut self.window);
        let r = self.string(&mut window, usize::MAX, false);
        self.window = window;
        r.map(|(len, _)| len)
    }

    /// Reads a string into `out` when at most `cap` bytes; `Ok(false)` when it was only
    /// checked because it is bigger.
    pub fn string_into(&mut self, out: &mut Vec<u8>, cap: usize) -> Result<bool, ParseError> {
        self.string(out, cap, true).map(|(_, kept)| kept)
    }

    fn string(
        &mut self,
        out: &mut Vec<u8>,
        cap: usize,
        keep: bool,
    ) -> Result<(u64, bool), ParseError> {
        let at = self.src.offset();
        match self.read_len()? {
            Len::Plain(n) => {
                out.clear();
                if keep && n <= cap as u64 {
                    self.src.copy_to(n, out)?;
                    Ok((n, true))
                } else {
                    self.src.skip(n)?;
                    Ok((n, false))
                }
            }
            Len::Encoded(e @ 0..=2) => {
                out.clear();
                let v = match e {
                    0 => i64::from(self.src.u8()? as i8),
                    1 => i64::from(i16::from_le_bytes(self.src.array()?)),
                    _ => i64::from(i32::from_le_bytes(self.src.array()?)),
                };
                if keep {
                    // Into `out` directly: `to_string` allocated for every integer member.
                    let _ = std::io::Write::write_fmt(out, format_args!("{v}"));
                }
                Ok((out.len() as u64, keep))
            }
            Len::Encoded(3) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                // LZF expands at most ~88:1 (a 3-byte back-reference of 264 bytes).
                if ulen > clen.saturating_mul(90).saturating_add(64) || ulen == 0 {
                    return Err(ParseError::corrupt(
                        at,
                        format!("an LZF length a {clen}-byte input can decode to, not {ulen}"),
                    ));
                }
                let hold = keep && ulen <= cap as u64;
                lzf::decompress(self.src, clen, ulen, out, hold)
                    .map_err(|e| e.within(format_args!("LZF string at offset {at}")))?;
                if !hold {
                    out.clear();
                }
                Ok((ulen, hold))
            }
            Len::Encoded(e) => Err(ParseError::corrupt(
                at,
                format!("a string encoding (int8, int16, int32 or LZF), not {e}"),
            )),
        }
    }

    /// Reads a blob into `self.blob`; `None` (after a warning) when it is too big to hold.
    pub fn blob(&mut self) -> Result<Option<BlobAt>, ParseError> {
        let at = self.src.offset();
        let compressed = (self.src.peek(1)?[0] >> 6) == 3;
        let mut blob = std::mem::take(&mut self.blob);
        let kept = self.string_into(&mut blob, BLOB_CAP);
        self.blob = blob;
        if !kept? {
            self.out.warn(format!(
                "blob at offset {at} too big to check its structure"
            ));
            return Ok(None);
        }
        // A plain blob starts after its length header; map faults to its first byte.
        let start = if compressed {
            at
        } else {
            self.src.offset() - self.blob.len() as u64
        };
        Ok(Some(BlobAt { start, compressed }))
    }

    pub fn blob_fault(&self, at: BlobAt, f: BlobFault) -> ParseError {
        blob_fault_at(at, &f)
    }
}

/// A fault inside a blob read at `at`, placed in the file (a compressed blob's faults
/// at the blob, naming the byte inside it).
pub(crate) fn blob_fault_at(at: BlobAt, f: &BlobFault) -> ParseError {
    if at.compressed {
        ParseError::corrupt(
            at.start,
            format!("{} at byte {} of the LZF-compressed blob", f.expected, f.at),
        )
    } else {
        ParseError::corrupt(at.start + f.at as u64, f.expected.clone())
    }
}

/// Where the string starting at `b[at]` ends, when it is wholly in `b`: plain with a 6- or
/// 14-bit length, an int8/16/32, or LZF as `lzf_buffered` takes it. `None` for anything
/// else, which the careful path then reads (and reports faults in).
#[inline(always)]
fn buffered_string_end(b: &[u8], at: usize) -> Option<usize> {
    let first = *b.get(at)?;
    let end = match first {
        0x00..=0x3f => at + 1 + usize::from(first),
        0x40..=0x7f => at + 2 + ((usize::from(first & 0x3f) << 8) | usize::from(*b.get(at + 1)?)),
        0xc0 => at + 2,
        0xc1 => at + 3,
        0xc2 => at + 5,
        0xc3 => at + lzf_buffered(&b[at..])?.0,
        _ => return None,
    };
    (end <= b.len()).then_some(end)
}

/// A 6- or 14-bit length at the start of `b` (the forms nearly every string takes): the
/// bytes of its header and the length.
#[inline(always)]
fn short_len(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.first()?;
    match first >> 6 {
        0 => Some((1, usize::from(first))),
        1 => Some((
            2,
            (usize::from(first & 0x3f) << 8) | usize::from(*b.get(1)?),
        )),
        _ => None,
    }
}

/// A plain string with a 6- or 14-bit length wholly in `b`: its header's bytes and its
/// length (the string is `b[header..header + length]`). `None` sends the caller to the
/// careful path.
#[inline(always)]
pub(crate) fn buffered_plain(b: &[u8]) -> Option<(usize, usize)> {
    let (header, n) = short_len(b)?;
    (header + n <= b.len()).then_some((header, n))
}

/// A valid LZF string (after its 0xc3 marker) wholly in `b`, with 6- or 14-bit lengths:
/// the bytes it takes and its decoded length. `None` sends the caller to the careful path,
/// which also says where any fault is.
#[inline]
fn lzf_buffered(b: &[u8]) -> Option<(usize, u64)> {
    let (h1, clen) = short_len(b.get(1..)?)?;
    let (h2, ulen) = short_len(b.get(1 + h1..)?)?;
    let at = 1 + h1 + h2;
    let input = b.get(at..at + clen)?;
    (ulen > 0 && lzf::lengths_in(input)? == ulen as u64).then_some((at + clen, ulen as u64))
}

/// How far ahead of a string record the record loop asks for the file's bytes.
pub(super) const RECORDS_AHEAD: usize = 1024;

/// Bytes enough for an RDB's header and its first aux fields (`ctime` is the third a
/// server writes, some sixty bytes in).
pub(crate) const HEAD_BYTES: usize = 4096;

/// When an RDB says it was written (its `ctime` aux field, in seconds), from the first
/// bytes of the file ([`HEAD_BYTES`] are plenty); `None` when they do not say (no such
/// field before the first key, not an RDB). Recovery ranks an RDB by this time.
pub(crate) fn created_in_head(head: &[u8]) -> Option<i64> {
    head_of(head)?.created
}

/// What an RDB's first bytes ([`HEAD_BYTES`]) say of it: its aux fields, and whether a
/// database follows them.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RdbHead {
    /// When it was written (`ctime`, seconds).
    pub created: Option<i64>,
    /// The replication stream the writer was in and how far along it the data is
    /// (`repl-id`, `repl-offset`: a master restarted from the file takes the offset up
    /// again, under a new id).
    pub repl_id: Option<String>,
    pub repl_offset: Option<u64>,
    /// Whether it holds any key: after the aux fields comes the file's end, or a
    /// database's selector (a server writes one only for a database with keys). `None`
    /// when the head does not say (anything else first: functions, module data; or aux
    /// fields past the head).
    pub keys: Option<bool>,
}

/// [`RdbHead`] of the first bytes of a file; `None` when they are not an RDB's.
pub(crate) fn head_of(head: &[u8]) -> Option<RdbHead> {
    let mut src = Source::new(head, 0, head.len() as u64);
    let mut rdb = Rdb::new(&mut src, None, 0);
    rdb.header().ok()?;
    let keys = loop {
        match rdb.src.u8() {
            Ok(0xfa) if rdb.aux().is_ok() => continue,
            Ok(0xff) => break Some(false),
            Ok(0xfe) => break Some(true),
            _ => break None,
        }
    };
    Some(RdbHead {
        created: rdb.out.created,
        repl_id: rdb.out.repl_id.take(),
        repl_offset: rdb.out.repl_offset,
        keys,
    })
}

/// Key fingerprints in an RDB's database kept 6 bytes a key (see `fp_set`).
pub(crate) type KeyRuns = FpRuns<6>;

/// Candidates for a repeated key a file's hunt looks at, one run of the file each. All
/// but the first are different keys sharing their kept bits (about one file in 5,000 of
/// 5 million keys); more than these are only keys made to collide.
const MAX_CANDIDATES: usize = 8;

/// The key [`Rdb::new_key`] looks for in a second run: the keys of database `db` whose
/// kept fingerprint is `fp`, one of each seen so far.
pub(crate) struct Hunt {
    db: u32,
    fp: u64,
    keys: Vec<Vec<u8>>,
}

impl Hunt {
    pub fn new(db: u32, fp: u64) -> Hunt {
        Hunt {
            db,
            fp,
            keys: Vec::new(),
        }
    }

    /// No key at all: a trial of where records start (`rdb_parts`), which skips keys
    /// (no database has this number).
    pub fn trial() -> Hunt {
        Hunt::new(u32::MAX, 0)
    }

    fn skips_keys(&self) -> bool {
        self.db == u32::MAX
    }
}

/// Runs an RDB (the file at `path`, or an AOF's preamble) again for each candidate of
/// [`Rdb::repeated_keys`] in turn, to name the first key really twice in a database, and
/// where the second one is. `None` when the candidates were all different keys.
pub(crate) fn find_repeated_key(
    path: &std::path::Path,
    candidates: &[(u32, u64)],
    now_ms: i64,
) -> Option<ParseError> {
    for &(db, fp) in candidates {
        match hunt_once(path, db, fp, now_ms) {
            Ok(()) => continue,
            Err(e) => return Some(e),
        }
    }
    // Only keys made to share their fingerprints fill the list with no repeat in it.
    (candidates.len() >= MAX_CANDIDATES).then(|| {
        ParseError::corrupt(
            0,
            format!(
                "keys whose fingerprints Lazarus can tell apart (more than {MAX_CANDIDATES} \
                 pairs share theirs: the file could not be checked for a repeated key)"
            ),
        )
    })
}

/// One run hunting database `db`'s keys of kept fingerprint `fp`: `Ok` when no key
/// repeats among them.
fn hunt_once(path: &std::path::Path, db: u32, fp: u64, now_ms: i64) -> Result<(), ParseError> {
    let fallback = || {
        ParseError::corrupt(
            0,
            format!("a key at most once in database {db} (the server stops at \"RDB has duplicated key\")"),
        )
    };
    let Ok(file) = std::fs::File::open(path) else {
        return Err(fallback());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut src = Source::open_file(file, len);
    let mut rdb = Rdb::new(&mut src, None, now_ms);
    rdb.hunt = Some(Hunt::new(db, fp));
    match rdb.run() {
        Ok(()) => Ok(()),
        Err(e) if e.expected.contains("duplicated key") => Err(e),
        Err(_) => Err(fallback()),
    }
}

/// A string key at `b[at]` wholly in `b` (plain with a 6- or 14-bit length, or an
/// int8/16/32): where it ends and its fingerprint (of the decimal text for an integer, as
/// the server holds it). `None` for anything else (LZF, ...), left to the careful path.
#[inline(always)]
fn buffered_key(b: &[u8], at: usize) -> Option<(usize, u64)> {
    let first = *b.get(at)?;
    let (start, end) = match first {
        0x00..=0x3f => (at + 1, at + 1 + usize::from(first)),
        0x40..=0x7f => (
            at + 2,
            at + 2 + ((usize::from(first & 0x3f) << 8) | usize::from(*b.get(at + 1)?)),
        ),
        0xc0..=0xc2 => {
            let v = match first {
                0xc0 => i64::from(*b.get(at + 1)? as i8),
                0xc1 => i64::from(i16::from_le_bytes(b.get(at + 1..at + 3)?.try_into().ok()?)),
                _ => i64::from(i32::from_le_bytes(b.get(at + 1..at + 5)?.try_into().ok()?)),
            };
            let len = [2, 3, 5][usize::from(first - 0xc0)];
            return Some((at + len, fingerprint(v.to_string().as_bytes())));
        }
        _ => return None,
    };
    Some((end, fingerprint(b.get(start..end)?)))
}

/// The name in a function library's `#!<engine> name=<name>` first line, as the server
/// reads it; `Err`: what was expected.
fn library_name(code: &[u8]) -> Result<String, String> {
    let why = |w: &str| format!("a function library whose first line is `#!lua name=<name>` ({w})");
    if !code.starts_with(b"#!") {
        return Err(why("the server refuses: \"Missing library metadata\""));
    }
    let line = code
        .iter()
        .position(|&c| c == b'\n')
        .map(|n| &code[..n])
        .ok_or_else(|| why("no newline after the header"))?;
    let line = String::from_utf8_lossy(&line[2..]);
    let mut parts = line.split_ascii_whitespace();
    let engine = parts.next().unwrap_or_default();
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(why(&format!(
            "the engine `{engine}` is not one the server has"
        )));
    }
    let mut name = None;
    for part in parts {
        match part.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("name=") && name.is_none() => {
                name = Some(part[5..].to_string())
            }
            _ => {
                return Err(why(&format!(
                    "`{part}` is not a metadata field the server takes"
                )))
            }
        }
    }
    let name = name.ok_or_else(|| why("no `name=`"))?;
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Err(why(&format!(
            "library names are letters, digits and `_`, not `{name}`"
        )));
    }
    Ok(name)
}

/// A module's name from its 64-bit type id (9 characters of 6 bits, then 10 bits of
/// encoding version), as the server names it in its refusal.
pub(crate) fn module_name(id: u64) -> String {
    const CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..9)
        .map(|i| char::from(CHARS[((id >> (64 - 6 * (i + 1))) & 63) as usize]))
        .collect()
}

/// The fault of module data: the servers Lazarus starts load no modules.
pub(crate) fn needs_module(at: u64, id: u64, what: &str) -> ParseError {
    ParseError::unsupported(
        at,
        format!(
            "no {what} of module `{}`: the servers Lazarus starts load no modules, and refuse it",
            module_name(id)
        ),
    )
}
