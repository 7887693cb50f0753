//! RDB values of every type Redis 1.x-7.4 and Valkey 7.2-9.0 write, checked in place:
//! lengths against the file, blobs for internal consistency, streams down to their
//! consumer groups, module values through their annotations.

use std::io::Read;

use super::error::{BlobFault, BlobResult, ParseError};
use super::fp_set::{fingerprint, FpSet};
use super::rdb::{blob_fault_at, buffered_plain, needs_module, BlobAt, Rdb};
use super::value_decode::{first_repeat, Layout};
use super::{intset, listpack, stream, ziplist, zipmap};

/// Which checker a blob goes through.
#[derive(Clone, Copy)]
enum Blob {
    Zipmap,
    Ziplist(u32),
    Intset,
    /// A listpack of tuples of this many entries that a load without sanitization checks
    /// only for its total bytes and terminator (hash, sorted set, set, list node): damage
    /// inside loads, and is a warning naming the key (see `Rdb::damaged_value`).
    Listpack(u32),
    /// A listpack held to every entry (Redis 7.4's hashes with field TTLs, whose load
    /// this reader has not been checked against): only a wrong back-length is a warning.
    StrictListpack(u32),
}

impl Blob {
    fn tuple(self) -> u32 {
        match self {
            Blob::Listpack(t) | Blob::StrictListpack(t) => t.max(1),
            _ => 1,
        }
    }
}

/// A listpack type the server converts while loading when it holds more than `max`
/// elements (pairs for hashes and sorted sets), the default of `setting`.
#[derive(Clone, Copy)]
struct Convert {
    what: &'static str,
    unit: &'static str,
    setting: &'static str,
    max: u32,
}

const HASH_CONVERT: Convert = Convert {
    what: "hash",
    unit: "fields",
    setting: "hash-max-listpack-entries",
    max: 512,
};
/// `hash-max-listpack-value`'s default (redis-server 7.0, valkey-server 8): a field or
/// value longer than this makes the server convert a hash it loads to a hash table.
const HASH_MAX_LISTPACK_VALUE: u64 = 64;
/// `set-max-intset-entries`' default: an intset over it is converted while loading.
const SET_MAX_INTSET_ENTRIES: u32 = 512;
const ZSET_CONVERT: Convert = Convert {
    what: "sorted set",
    unit: "members",
    setting: "zset-max-listpack-entries",
    max: 128,
};
const SET_CONVERT: Convert = Convert {
    what: "set",
    unit: "members",
    setting: "set-max-listpack-entries",
    max: 128,
};

impl<R: Read> Rdb<'_, R> {
    /// Checks the value of type `t` (its type byte at `at`); `Ok(false)` when it is an empty collection (which
    /// Redis skips when loading).
    pub fn value(&mut self, t: u8, at: u64) -> Result<bool, ParseError> {
        let valkey = self.out.valkey;
        let since = first_version(t, valkey);
        let version = self.out.version;
        if version < since {
            // The servers check a type against the types they know, never against the
            // file's version: what each one does follows from which types it knows.
            let stricter = match (t, valkey) {
                // Known to redis-server 7.0 and valkey-server 8.1 alike: both load it.
                (0..=19, _) => None,
                (20 | 21, _) => Some(format!(
                    "redis-server 7.0 refuses it (\"Unknown RDB encoding type {t}\"); \
                     valkey-server 8.1 and redis-server 7.2 and later load it: the reader takes \
                     the stricter answer"
                )),
                (_, false) => Some(format!(
                    "redis-server 7.0-7.2 and valkey-server 8.1 refuse it (\"Unknown RDB \
                     encoding type {t}\"); only redis-server 7.4 and later, which write RDB 12, \
                     load it"
                )),
                (_, true) => Some(format!(
                    "redis-server 7.0 and valkey-server 8.1 refuse it (\"Unknown RDB encoding \
                     type {t}\"); only valkey 9 and later know it"
                )),
            };
            match stricter {
                Some(who) => {
                    return Err(ParseError::corrupt(
                        at,
                        format!(
                            "a value type RDB {version} has, not {t} (first in RDB {since}; the \
                             header or this byte is damaged: {who})"
                        ),
                    ));
                }
                None if !self.newer_type_warned => {
                    self.newer_type_warned = true;
                    self.out.warn(format!(
                        "loads, but the value type {t} at offset {at} is first in RDB {since} and \
                         the header says RDB {version}: the header (or this byte) is damaged; \
                         redis-server 7.0 and valkey-server 8.1 load it (they check a type \
                         against the types they know, not the file's version), a server of RDB \
                         {version} would refuse it"
                    ));
                }
                None => {}
            }
        }
        match t {
            0 => self.skip_string().map(|_| true),
            // Linked list: plain strings.
            1 => self.strings(1),
            // Hash-table set: members the server refuses to see twice.
            2 => {
                let n = self.count(1)?;
                self.members.clear_for(n);
                let mut left = n;
                while left > 0 {
                    left -= self.buffered_members(left, Tail::None);
                    if left > 0 {
                        self.member("set member")?;
                        left -= 1;
                    }
                }
                Ok(n > 0)
            }
            3 => {
                let n = self.count(2)?;
                self.members.clear_for(n);
                for _ in 0..n {
                    self.member("sorted set member")?;
                    self.old_double()?;
                }
                Ok(n > 0)
            }
            4 => self.hash_pairs(),
            5 => {
                let n = self.count(9)?;
                self.members.clear_for(n);
                let mut left = n;
                while left > 0 {
                    left -= self.buffered_members(left, Tail::Score);
                    if left > 0 {
                        self.member("sorted set member")?;
                        let at = self.src.offset();
                        let score = f64::from_le_bytes(self.src.array()?);
                        if score.is_nan() {
                            return Err(nan_score(at));
                        }
                        left -= 1;
                    }
                }
                Ok(n > 0)
            }
            6 => Err(ParseError::unsupported(
                at,
                "a module value in the final format, not a 4.0 release-candidate one",
            )),
            7 => {
                let id_at = self.src.offset();
                let id = self.len()?;
                self.module_opcodes()?;
                Err(needs_module(id_at, id, "value"))
            }
            9 => self.one_blob(Blob::Zipmap),
            10 => self.one_blob(Blob::Ziplist(1)),
            11 => self.one_blob(Blob::Intset),
            12 | 13 => self.one_blob(Blob::Ziplist(2)),
            14 => self.quicklist(false),
            15 | 19 | 21 => stream::check(self, t),
            16 => self.converted_blob(Blob::Listpack(2), HASH_CONVERT),
            17 => self.converted_blob(Blob::Listpack(2), ZSET_CONVERT),
            18 => self.quicklist(true),
            20 => self.converted_blob(Blob::Listpack(1), SET_CONVERT),
            // Valkey 9: hash with per-field expiry (field, value, 8-byte expiry).
            22 if valkey => {
                let n = self.count(10)?;
                for _ in 0..n {
                    self.skip_string()?;
                    self.skip_string()?;
                    self.src.skip(8)?;
                }
                Ok(n > 0)
            }
            // Redis 7.4: hashes with field TTLs; 24/25 lead with the minimum expiry.
            22 | 24 if !valkey => {
                if t == 24 {
                    self.src.skip(8)?;
                }
                let n = self.count(3)?;
                for _ in 0..n {
                    self.len()?; // TTL
                    self.skip_string()?;
                    self.skip_string()?;
                }
                Ok(n > 0)
            }
            23 | 25 if !valkey => {
                if t == 25 {
                    self.src.skip(8)?;
                }
                self.one_blob(Blob::StrictListpack(3))
            }
            _ => Err(ParseError::corrupt(
                at,
                format!("a value type this RDB version can hold, not {t}"),
            )),
        }
    }

    /// `per` strings per element (1 for lists and sets, 2 for hashes).
    fn strings(&mut self, per: u64) -> Result<bool, ParseError> {
        let n = self.count(per)?;
        for _ in 0..n * per {
            self.skip_string()?;
        }
        Ok(n > 0)
    }

    /// A hash as field-value pairs (type 4), judged as the server loads one: into a hash
    /// table from the start when it has more fields than `hash-max-listpack-entries`, else
    /// into a listpack until a field or value longer than `hash-max-listpack-value`
    /// converts it. The table refuses a field twice ("Duplicate hash fields detected");
    /// the conversion stops on a repeat among the fields before it (a panic); a listpack
    /// never converted keeps one, unchecked: the file loads, with that key damaged.
    fn hash_pairs(&mut self) -> Result<bool, ParseError> {
        let n = self.count(2)?;
        self.members.clear_for(n);
        let mut table = n > u64::from(HASH_CONVERT.max);
        let mut listed_repeat: Option<u64> = None;
        let mut left = n;
        while left > 0 {
            if table {
                left -= self.buffered_members(left, Tail::Value);
                if left == 0 {
                    break;
                }
            }
            left -= 1;
            let at = self.src.offset();
            let field = self.member_fp("hash field")?;
            let value_len = self.skip_string()?;
            let (repeat, long) = match field {
                Some((fp, len)) => (
                    self.members.insert(fp) == Some(false),
                    len > HASH_MAX_LISTPACK_VALUE,
                ),
                // Too long to hold: far over the listpack's limit, not checked for repeats.
                None => (false, true),
            };
            if !table && (long || value_len > HASH_MAX_LISTPACK_VALUE) {
                table = true;
                if let Some(first) = listed_repeat {
                    return Err(ParseError::corrupt(
                        first,
                        format!(
                            "a hash field not already in this hash: the field or value at \
                             offset {at} is longer than the server's default \
                             hash-max-listpack-value ({HASH_MAX_LISTPACK_VALUE} bytes), so the \
                             server converts the hash to a table while loading and stops on \
                             this repeat (\"Listpack corruption detected\")"
                        ),
                    ));
                }
            }
            if repeat {
                if table {
                    return Err(ParseError::corrupt(
                        at,
                        "a hash field not already in this hash (the server refuses repeats: \
                         \"Duplicate hash fields detected\")",
                    ));
                }
                listed_repeat.get_or_insert(at);
            }
        }
        if let Some(at) = listed_repeat {
            let key = String::from_utf8_lossy(&self.key[..self.key.len().min(64)]).into_owned();
            self.out.warn(format!(
                "loads, but the hash `{key}` in database {} holds a field twice (again at \
                 offset {at}): the server keeps a hash this small as a listpack without checking, so \
                 HLEN and HGETALL count that field twice, and a write that converts the hash \
                 to a table (a field or value over {HASH_MAX_LISTPACK_VALUE} bytes, more than \
                 {} fields) stops the server; way forward: recover, then rewrite the key \
                 (HGETALL, DEL, then HSET each field once)",
                self.value_db, HASH_CONVERT.max
            ));
        }
        Ok(n > 0)
    }

    /// Takes members of a hash table (a set's; a sorted set's, each with its binary
    /// score; a hash's fields, each with its value) in one loop while each is a plain
    /// string wholly buffered, new to the value, and what follows it is as plain (a score
    /// not NaN, a value also a plain string): fingerprinted where they lie, with none of
    /// the careful path's bookkeeping a member (a tenth of the mixed RDB's check went to
    /// the members of its big sets, sorted sets and hashes). Returns how many, at most
    /// `left`; the caller reads the next one the careful way, which reports any fault.
    #[inline]
    fn buffered_members(&mut self, left: u64, tail: Tail) -> u64 {
        let b = self.src.buffered();
        let mut at = 0;
        let mut n = 0;
        while n < left {
            let Some((header, len)) = b.get(at..).and_then(buffered_plain) else {
                break;
            };
            let member = at + header..at + header + len;
            let end = match tail {
                Tail::None => member.end,
                Tail::Score => match b.get(member.end..member.end + 8).map(<[u8; 8]>::try_from) {
                    Some(Ok(s)) if !f64::from_le_bytes(s).is_nan() => member.end + 8,
                    _ => break,
                },
                Tail::Value => match b.get(member.end..).and_then(buffered_plain) {
                    Some((h, l)) => member.end + h + l,
                    None => break,
                },
            };
            if self.members.insert(fingerprint(&b[member])) != Some(true) {
                break;
            }
            at = end;
            n += 1;
        }
        self.src.consume(at);
        n
    }

    /// A sorted-set score before RDB 8: a length byte, then that many ASCII bytes
    /// (253, 254, 255 mean NaN, +inf, -inf).
    fn old_double(&mut self) -> Result<(), ParseError> {
        let at = self.src.offset();
        let n = self.src.u8()?;
        match n {
            253 => return Err(nan_score(at)),
            254 | 255 => {}
            _ => {
                let mut text = [0u8; 252];
                let text = &mut text[..usize::from(n)];
                for b in text.iter_mut() {
                    *b = self.src.u8()?;
                }
                if !scans_as_double(text) {
                    return Err(ParseError::corrupt(
                        at,
                        format!(
                            "a sorted set score the server reads as a number (`sscanf %lg`; \
                             it stops the load on anything else), not {:?}",
                            String::from_utf8_lossy(text)
                        ),
                    ));
                }
                // The server reads it with `%lg`: "nan", "-nan", "NaN(...)" are NaN.
                let t = String::from_utf8_lossy(text)
                    .trim_start()
                    .to_ascii_lowercase();
                if t.trim_start_matches(['-', '+']).starts_with("nan") {
                    return Err(nan_score(at));
                }
            }
        }
        Ok(())
    }

    fn one_blob(&mut self, kind: Blob) -> Result<bool, ParseError> {
        match self.checked_blob(kind, None, None)? {
            Some(n) => Ok(n > 0),
            None => Ok(true),
        }
    }

    /// A listpack the server converts while loading when it holds more than the
    /// setting's default allows: the conversion walks every entry, checking each whole, so
    /// a wrong back-length there stops the load (an assertion) where a smaller one loads.
    fn converted_blob(&mut self, kind: Blob, convert: Convert) -> Result<bool, ParseError> {
        match self.checked_blob(kind, None, Some(convert))? {
            Some(n) => Ok(n > 0),
            None => Ok(true),
        }
    }

    /// Judges what a blob's check found beyond its own faults: damage a load without
    /// sanitization does not see (a warning, or the fault when the load walks the
    /// entries after all), a wrong header count, an intset out of order. `place` maps a
    /// fault inside the blob to the file.
    fn judge_blob(
        &mut self,
        kind: Blob,
        c: &Checked,
        place: &dyn Fn(&BlobFault) -> ParseError,
        convert: Option<Convert>,
    ) -> Result<(), ParseError> {
        if let Some(d) = &c.damage {
            let e = place(&d.fault);
            if c.count_unknown && !d.odd {
                return Err(e.within(
                    "the listpack's header count is 65535 (\"count them\"), so the server \
                     walks every entry while loading to count them and stops on this one",
                ));
            }
            let tuple = kind.tuple();
            if let Some(cv) = convert.filter(|cv| c.entries / tuple > cv.max) {
                return Err(e.within(format_args!(
                    "this {} has {} {}, over the server's default {} ({}), so the server \
                     converts it while loading, walks every entry and stops on this one",
                    cv.what,
                    c.entries / tuple,
                    cv.unit,
                    cv.setting,
                    cv.max
                )));
            }
            if c.entries == 0 {
                // Under one element by its header: dropped on load, damage and all.
                let count = place(&BlobFault::new(4, ""));
                let key = String::from_utf8_lossy(&self.key[..self.key.len().min(64)]);
                self.out.warn(format!(
                    "loads, but the listpack of key `{key}` in database {} is dropped by the \
                     server as empty (the key, or this node of a list): its header count at \
                     offset {} is under one element, and the rest is damaged at offset {} \
                     (expected there: {}); the key counts here leave it out",
                    self.value_db, count.offset, e.offset, e.expected
                ));
            } else {
                self.damaged_value(e.offset, &e.expected);
            }
        } else if let Some((declared, real)) = c.bad_count {
            let e = place(&BlobFault::new(4, ""));
            self.bad_element_count(e.offset, declared, real);
        }
        if let Some(at) = c.disorder {
            let e = place(&BlobFault::new(at, ""));
            self.intset_disorder(e.offset);
        }
        Ok(())
    }

    /// Reads and checks a blob: its entry count, `None` when too big to hold. With
    /// `nonempty_at`, an empty blob is a fault there. A plain, non-empty blob already
    /// buffered is checked where it lies: copying it out first cost a tenth of the parse.
    fn checked_blob(
        &mut self,
        kind: Blob,
        nonempty_at: Option<u64>,
        convert: Option<Convert>,
    ) -> Result<Option<u32>, ParseError> {
        let b = self.src.buffered();
        if let Some((header, n)) = buffered_plain(b) {
            if n > 0 {
                let start = self.src.offset() + header as u64;
                let r = validate(kind, &b[header..header + n]);
                self.src.consume(header + n);
                let at = BlobAt {
                    start,
                    compressed: false,
                };
                let c = r.map_err(|f| self.blob_fault(at, f))?;
                let place =
                    |f: &BlobFault| ParseError::corrupt(start + f.at as u64, f.expected.clone());
                self.judge_blob(kind, &c, &place, convert)?;
                let bytes = self.src.behind(n);
                if let Some(f) = blob_repeat(kind, bytes, c.entries, convert, &mut self.members) {
                    return Err(place(&f));
                }
                return Ok(Some(c.entries));
            }
        }
        match (self.blob()?, nonempty_at) {
            (Some(_), Some(node)) if self.blob.is_empty() => {
                Err(ParseError::corrupt(node, "a non-empty quicklist node"))
            }
            (Some(at), _) => {
                let c = validate(kind, &self.blob).map_err(|f| self.blob_fault(at, f))?;
                let place = |f: &BlobFault| blob_fault_at(at, f);
                self.judge_blob(kind, &c, &place, convert)?;
                if let Some(f) =
                    blob_repeat(kind, &self.blob, c.entries, convert, &mut self.members)
                {
                    return Err(place(&f));
                }
                Ok(Some(c.entries))
            }
            (None, _) => Ok(None),
        }
    }

    fn intset_disorder(&mut self, at: u64) {
        self.out.warn(format!(
            "loads, but the intset member at offset {at} is not above the one before it \
             (the server checks order only with sanitize-dump-payload; SISMEMBER may miss members)"
        ));
    }

    /// The value of the key being read is damaged at `at` (`expected`: what should be
    /// there) where a load without sanitization does not look: the server loads it, and
    /// the key is there, broken. Said for each key, naming it, with what to do; the key is
    /// noted so that an AOF command after the preamble that reads it is a fault (the
    /// server stops there). Reading the key is another matter: every step of a walk,
    /// forwards too, checks the entry it reaches whole (`lpNext`), so HGETALL on such a
    /// hash stops redis-server 7.0 (an assertion) and valkey-server 8.1 (a segfault);
    /// UNLINK frees it unread.
    pub(crate) fn damaged_value(&mut self, at: u64, expected: &str) {
        let db = self.value_db;
        let key = String::from_utf8_lossy(&self.key[..self.key.len().min(64)]).into_owned();
        if !self.out.damaged(db, self.value_fp, &key, at) {
            return;
        }
        self.out.warn(format!(
            "loads, but the value of key `{key}` in database {db} is damaged at offset {at} \
             (expected there: {expected}): the server does not look inside a value while \
             loading (only with sanitize-dump-payload yes), so the file loads with the key, \
             but a command that walks the damaged part (HGETALL, HSET, SMEMBERS, ZRANGE, \
             LRANGE, RPOP, XRANGE, XADD, ...) stops the server (redis-server asserts, \
             valkey-server crashes) or reads wrong data; way forward: recover from a copy \
             without it, or recover from this file and UNLINK `{key}` in database {db} \
             before any client reads it (UNLINK and DEL free it without reading it; SCAN, \
             TYPE, EXISTS and TTL do not read it either), then write it again from another \
             source"
        ));
    }

    /// A listpack's header element count (at `at`, or in the compressed blob there) is
    /// `declared` where it holds `real` entries: the server loads it without checking and
    /// takes the header as the size. Said for each one: under one element or pair the
    /// key (or the list node) is dropped, which the key counts here already leave out.
    pub(crate) fn bad_element_count(&mut self, at: u64, declared: u16, real: u32) {
        self.out.warn(format!(
            "loads, but the listpack element count at offset {at} is {declared} where it \
             holds {real} entries: the server checks it only with sanitize-dump-payload yes \
             and takes it as the size, so HLEN, SCARD, ZCARD or LLEN report it, and a count \
             under one element (a pair for hashes and sorted sets) makes the server drop the \
             key as empty or lose that list node (the key counts here already leave such a \
             key out); way forward: recover from this file, then rewrite the key from a \
             forward read (HGETALL, SMEMBERS, ZRANGE 0 -1 WITHSCORES; DEL; write it again; \
             a list's LRANGE goes by the count too: check that LRANGE 0 -1 returns all \
             {real} of that node's entries), or recover from a copy without it"
        ));
    }

    /// A list as nodes: ziplists (RDB 7-9), or plain/packed listpack nodes (RDB 10+).
    fn quicklist(&mut self, v2: bool) -> Result<bool, ParseError> {
        let n = self.count(2)?;
        let mut entries = 0u64;
        for _ in 0..n {
            let mut container = 2;
            if v2 {
                let at = self.src.offset();
                container = self.len()?;
                if container != 1 && container != 2 {
                    return Err(ParseError::corrupt(
                        at,
                        format!(
                            "a quicklist node container 1 (plain) or 2 (packed), not {container}"
                        ),
                    ));
                }
            }
            let at = self.src.offset();
            if container == 1 {
                if self.skip_string()? == 0 {
                    return Err(ParseError::corrupt(at, "a non-empty plain list node"));
                }
                entries += 1;
                continue;
            }
            let kind = if v2 {
                Blob::Listpack(1)
            } else {
                Blob::Ziplist(1)
            };
            match self.checked_blob(kind, Some(at), None)? {
                Some(count) => entries += u64::from(count),
                None => entries += 1,
            }
        }
        Ok(entries > 0)
    }
}

/// Checks a blob of the given kind: what the server will take it to hold, and what it
/// loads without seeing.
fn validate(kind: Blob, b: &[u8]) -> BlobResult<Checked> {
    let plain = |entries| Checked {
        entries,
        ..Checked::default()
    };
    match kind {
        Blob::Zipmap => zipmap::validate(b).map(plain),
        Blob::Ziplist(tuple) => ziplist::validate(b, tuple).map(plain),
        Blob::Intset => intset::validate(b).map(|n| Checked {
            disorder: intset::disorder(b),
            ..plain(n)
        }),
        Blob::StrictListpack(tuple) => listpack::validate_noting(b, tuple).map(|n| Checked {
            entries: match n.bad_count {
                Some(declared) => u32::from(declared) / tuple * tuple,
                None => n.entries,
            },
            bad_count: n.bad_count.map(|d| (d, n.entries)),
            damage: n.bad_back.map(|at| listpack::Damage {
                fault: BlobFault::new(
                    at,
                    "a listpack entry back-length that is its entry's length",
                ),
                odd: false,
            }),
            ..Checked::default()
        }),
        Blob::Listpack(tuple) => listpack::validate_shallow(b, tuple).map(|sh| {
            // The server takes the header's count as the size, in whole tuples: under one
            // tuple it drops the key (or the list node) as empty.
            let entries = sh.server_entries(tuple);
            let wrong = !sh.count_unknown() && u32::from(sh.declared) != sh.entries;
            Checked {
                entries,
                bad_count: (sh.damage.is_none() && wrong).then_some((sh.declared, sh.entries)),
                count_unknown: sh.count_unknown(),
                damage: sh.damage,
                disorder: None,
            }
        }),
    }
}

/// A blob as the server will load it: its entries (for a listpack, the count the server
/// takes, in whole tuples), damage inside it the load does not see, a wrong header
/// count with the entries really there, an intset member out of order.
#[derive(Default)]
struct Checked {
    entries: u32,
    bad_count: Option<(u16, u32)>,
    damage: Option<listpack::Damage>,
    /// The listpack's header count is 65535: the load walks every entry to count them.
    count_unknown: bool,
    disorder: Option<usize>,
}

/// Where the load refuses a blob for a field (or member) it holds twice, and why: the
/// zipmaps and the hash and sorted-set ziplists of old files, whose load checks every
/// field, and a listpack or intset the load converts (over its setting's default), whose
/// conversion stops on a repeat. One the load keeps as it is takes repeats unchecked.
fn blob_repeat(
    kind: Blob,
    b: &[u8],
    entries: u32,
    convert: Option<Convert>,
    seen: &mut FpSet,
) -> Option<BlobFault> {
    let (layout, what) = match kind {
        Blob::Zipmap => (
            Layout::Zipmap,
            "hash field not already in this zipmap (the server refuses repeats: \"Hash zipmap \
             with dup elements\")"
                .to_string(),
        ),
        Blob::Ziplist(2) => (
            Layout::Ziplist(2),
            "field or member not already in this ziplist (the server refuses a hash field or \
             sorted set member twice: \"ziplist integrity check failed\")"
                .to_string(),
        ),
        // Over set-max-intset-entries the load converts it to a table, asserting that
        // every member is new.
        Blob::Intset if entries > SET_MAX_INTSET_ENTRIES => (
            Layout::Intset,
            format!(
                "set member not already in this intset: it has {entries} members, over the \
                 server's default set-max-intset-entries ({SET_MAX_INTSET_ENTRIES}), so the \
                 server converts it while loading and stops on a repeat (an assertion)"
            ),
        ),
        Blob::Listpack(tuple) => {
            let cv = convert.filter(|cv| entries / tuple.max(1) > cv.max)?;
            (
                Layout::Listpack(tuple.max(1) as usize),
                format!(
                    "{} not already in this {}: it has {} {}, over the server's default {} \
                     ({}), so the server converts it while loading and stops on a repeat (an \
                     assertion)",
                    cv.unit.trim_end_matches('s'),
                    cv.what,
                    entries / tuple.max(1),
                    cv.unit,
                    cv.setting,
                    cv.max
                ),
            )
        }
        _ => return None,
    };
    let fields = u64::from(entries) / layout.tuple() as u64;
    if fields < 2 {
        return None; // One field cannot repeat.
    }
    let at = first_repeat(b, layout, fields, seen)?;
    Some(BlobFault::new(at, format!("a {what}")))
}

/// Whether the servers' `sscanf(text, "%lg")` finds a number at the start of `text` (a C
/// string: up to its first NUL): after white space and a sign, a digit, a `.` and a digit,
/// or `inf` or `nan` in any case; what follows the number is ignored.
fn scans_as_double(text: &[u8]) -> bool {
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    let start = text
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(text.len());
    let rest = &text[start..];
    let rest = rest
        .strip_prefix(b"-")
        .or_else(|| rest.strip_prefix(b"+"))
        .unwrap_or(rest);
    match rest {
        [d, ..] if d.is_ascii_digit() => true,
        [b'.', d, ..] => d.is_ascii_digit(),
        _ => rest
            .get(..3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"inf") || w.eq_ignore_ascii_case(b"nan")),
    }
}

/// What follows each member [`Rdb::buffered_members`] takes.
#[derive(Clone, Copy)]
enum Tail {
    /// Nothing (a set's members).
    None,
    /// An 8-byte binary score (a sorted set's, RDB 8 on).
    Score,
    /// A string, the field's value (a hash's).
    Value,
}

/// The largest value type any server writes (redis-server 7.4's listpack hash with field
/// TTLs, 25): [`Rdb::value`] refuses every type byte above it.
const LAST_VALUE_TYPE: u8 = 25;

/// Whether a record may start with byte `b`: a value type or an opcode (from 0xf4, the
/// slot info), the bytes the record loop does not refuse at once.
pub(crate) fn may_start_record(b: u8) -> bool {
    matches!(b, 0..=LAST_VALUE_TYPE | 0xf4..=0xff)
}

fn nan_score(at: u64) -> ParseError {
    ParseError::corrupt(
        at,
        "a sorted set score that is a number, not NaN (the server refuses it)",
    )
}

/// The first RDB version with value type `t` (1 for the oldest, whose versions vary).
fn first_version(t: u8, valkey: bool) -> u32 {
    match t {
        0..=13 => 1,
        14 => 7,
        15 => 9,
        16..=19 => 10,
        20 | 21 => 11,
        22 if valkey => 80,
        22..=LAST_VALUE_TYPE if !valkey => 12,
        // Types no version has: `value` names them.
        _ => 1,
    }
}
