//! The content digest: an order-independent sum, per hash slot, of one 128-bit hash per
//! key over its database, name, type, canonical value and expiry. The same
//! [`DigestBuilder`] takes keys decoded from a file and keys decoded from a server's DUMP
//! replies, so equal data gives equal digests whatever the encoding.
//!
//! Keys that expire within `horizon` of when the digest was taken are kept one by one, so a
//! later comparison can set apart the ones that expired in between ([`ContentDigest::settle`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed, xxh3_64, Xxh3};

use super::entries::{open_file, read_rdb_file, read_rdb_parts, EntryVisitor, RdbReadError};
use super::fp_set::prefetch;
use super::slot::key_slot;
use super::slot::SLOT_COUNT;
use super::value::{Kind, Stream, StreamId, ValueSink};

/// Hashes one value in canonical form: lists in order; set members, sorted-set members
/// with their scores, and hash fields with their values as a sum, so their order (which
/// differs between encodings) does not matter.
pub struct ValueHasher {
    kind: Kind,
    n: u64,
    sum: u128,
    ordered: Xxh3,
    scratch: Vec<u8>,
}

impl Default for ValueHasher {
    fn default() -> Self {
        ValueHasher {
            kind: Kind::String,
            n: 0,
            sum: 0,
            ordered: Xxh3::new(),
            scratch: Vec::new(),
        }
    }
}

impl ValueHasher {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The hash of the value fed since `begin` (the key's hash adds its kind).
    pub fn finish(&self) -> u128 {
        match self.kind {
            // `sum` is the hash of the bytes.
            Kind::String => self.sum,
            Kind::List | Kind::Stream => self.ordered.digest128() ^ u128::from(self.n),
            Kind::Set | Kind::SortedSet | Kind::Hash => {
                let mut b = [0u8; 24];
                b[..8].copy_from_slice(&self.n.to_le_bytes());
                b[8..].copy_from_slice(&self.sum.to_le_bytes());
                xxh3_128(&b)
            }
        }
    }
}

fn put(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s);
}

fn put_id(b: &mut Vec<u8>, id: StreamId) {
    b.extend_from_slice(&id.raw());
}

impl ValueSink for ValueHasher {
    fn begin(&mut self, kind: Kind, _: u64) {
        self.kind = kind;
        self.n = 0;
        self.sum = 0;
        if matches!(kind, Kind::List | Kind::Stream) {
            self.ordered.reset();
        }
    }

    /// A string comes whole, in one call.
    fn string(&mut self, s: &[u8]) {
        self.sum = xxh3_128(s);
        self.n = s.len() as u64;
    }

    fn item(&mut self, s: &[u8]) {
        if self.kind == Kind::List {
            self.ordered.update(&(s.len() as u64).to_le_bytes());
            self.ordered.update(s);
        } else {
            self.sum = self.sum.wrapping_add(xxh3_128(s));
        }
        self.n += 1;
    }

    fn scored(&mut self, member: &[u8], score: f64) {
        // One NaN and one zero, whatever their bits.
        let score = if score.is_nan() {
            f64::NAN
        } else if score == 0.0 {
            0.0
        } else {
            score
        };
        let h = xxh3_128_with_seed(member, score.to_bits());
        self.sum = self.sum.wrapping_add(h);
        self.n += 1;
    }

    fn field(&mut self, field: &[u8], value: &[u8], expire_ms: Option<i64>) {
        let mut seed = xxh3_64(field);
        if let Some(e) = expire_ms {
            seed = seed.rotate_left(1) ^ xxh3_64(&e.to_le_bytes());
        }
        self.sum = self.sum.wrapping_add(xxh3_128_with_seed(value, seed));
        self.n += 1;
    }

    /// A stream's entries, length, last ID and groups (by name) with their pending
    /// entries and consumers (by name). Left out: what only newer RDB versions carry
    /// (first ID, max deleted ID, entries added, entries read, active time), which a
    /// server fills in itself when it loads an older encoding; and a consumer's seen
    /// time, which a replica sets from its own clock when it applies the master's
    /// `XCLAIM` (a millisecond later is another value), so a run taken from a replica
    /// would differ from its master in nothing but that.
    fn stream(&mut self, s: &Stream) {
        let b = &mut self.scratch;
        b.clear();
        b.extend_from_slice(&(s.entries.len() as u64).to_le_bytes());
        for e in &s.entries {
            put_id(b, e.id);
            b.extend_from_slice(&(e.fields.len() as u64).to_le_bytes());
            for (f, v) in &e.fields {
                put(b, f);
                put(b, v);
            }
        }
        b.extend_from_slice(&s.length.to_le_bytes());
        put_id(b, s.last_id);
        let mut groups: Vec<_> = s.groups.iter().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        for g in groups {
            put(b, &g.name);
            put_id(b, g.last_id);
            b.extend_from_slice(&(g.pending.len() as u64).to_le_bytes());
            for p in &g.pending {
                put_id(b, p.id);
                b.extend_from_slice(&p.delivery_time_ms.to_le_bytes());
                b.extend_from_slice(&p.delivery_count.to_le_bytes());
            }
            let mut consumers: Vec<_> = g.consumers.iter().collect();
            consumers.sort_by(|a, b| a.name.cmp(&b.name));
            for c in consumers {
                put(b, &c.name);
                b.extend_from_slice(&(c.pending.len() as u64).to_le_bytes());
                c.pending.iter().for_each(|id| put_id(b, *id));
            }
        }
        self.ordered.update(b);
        self.n = 1;
    }
}

/// One slot's share of a digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotSum {
    pub sum: u128,
    pub keys: u64,
}

/// A key that expires soon after the digest was taken, held apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiringKey {
    pub slot: u16,
    pub hash: u128,
    pub expire_ms: i64,
}

/// A key as a detailed digest holds it, for naming differences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    pub kind: Kind,
    pub value: u128,
    pub expire_ms: Option<i64>,
}

/// The digest of one shard's content, before expiries are settled.
#[derive(Clone, Debug)]
pub struct ContentDigest {
    /// Per slot, keys that do not expire within the horizon.
    pub slots: Vec<SlotSum>,
    pub expiring: Vec<ExpiringKey>,
    /// When the digest was taken (ms since the epoch).
    pub taken_at_ms: i64,
    /// Keys a server listed but had dropped (expired) before their value was read.
    pub vanished: u64,
    /// Keys of the slots asked for in detail: (db, key) → state.
    pub detail: BTreeMap<(u32, Vec<u8>), KeyState>,
}

/// A digest with expiries settled at one instant: what the digest of the live keys is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettledDigest {
    pub keys: u64,
    /// Keys whose expiry had passed by the instant settled at, left out.
    pub expired: u64,
    #[serde(serialize_with = "hex128")]
    pub digest: u128,
    #[serde(skip)]
    pub slots: Vec<SlotSum>,
}

fn hex128<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:032x}"))
}

impl SettledDigest {
    pub fn hex(&self) -> String {
        format!("{:032x}", self.digest)
    }
}

impl ContentDigest {
    pub fn new(taken_at_ms: i64) -> Self {
        ContentDigest {
            slots: vec![SlotSum::default(); usize::from(SLOT_COUNT)],
            expiring: Vec::new(),
            taken_at_ms,
            vanished: 0,
            detail: BTreeMap::new(),
        }
    }

    /// Adds another shard's (or file's) digest to this one.
    pub fn merge(&mut self, other: ContentDigest) {
        for (a, b) in self.slots.iter_mut().zip(&other.slots) {
            a.sum = a.sum.wrapping_add(b.sum);
            a.keys += b.keys;
        }
        self.expiring.extend(other.expiring);
        self.taken_at_ms = self.taken_at_ms.max(other.taken_at_ms);
        self.vanished += other.vanished;
        self.detail.extend(other.detail);
    }

    /// The digest of the keys still live at `now_ms`.
    pub fn settle(&self, now_ms: i64) -> SettledDigest {
        let mut slots = self.slots.clone();
        let mut expired = 0;
        for e in &self.expiring {
            if e.expire_ms <= now_ms {
                expired += 1;
            } else {
                let s = &mut slots[usize::from(e.slot)];
                s.sum = s.sum.wrapping_add(e.hash);
                s.keys += 1;
            }
        }
        let keys = slots.iter().map(|s| s.keys).sum();
        let digest = slots.iter().fold(0u128, |a, s| a.wrapping_add(s.sum));
        SettledDigest {
            keys,
            expired,
            digest,
            slots,
        }
    }
}

/// What a digest is asked to keep besides the sums.
#[derive(Clone, Debug, Default)]
pub struct DigestOptions {
    /// Keys expiring within this many ms of the digest are held apart (default: 1 hour).
    pub horizon_ms: Option<i64>,
    /// Slots whose keys are kept one by one, to name differences.
    pub detail_slots: BTreeSet<u16>,
    /// A live server may skip LZF on its DUMP payloads while it is scanned (`CONFIG SET
    /// rdbcompression no`, put back after): only for servers Lazarus itself started and no
    /// client uses yet, as in a recovery before the database goes active.
    pub uncompressed_dumps: bool,
    /// A live server is read from its own snapshot (`SYNC`: it forks and streams its RDB,
    /// read by the same reader as the files) instead of SCAN + DUMP of every key: far
    /// cheaper for both sides, but a fork: only for servers no client writes to (fenced,
    /// or not serving yet). Off for `verify db` of a database in service: a fork under
    /// writes costs copy-on-write memory up to the data's size and a latency spike on a
    /// check the operator only asked for, so it pays SCAN + DUMP instead (2-3 times slower:
    /// the server's own work per DUMPed key, about 4 µs, dominates).
    pub server_snapshot: bool,
}

impl DigestOptions {
    /// For a server no client uses: Lazarus's own before its database serves, or one
    /// fenced for a restore. Read from its own snapshot, its values not compressed.
    pub fn unserved() -> DigestOptions {
        DigestOptions {
            uncompressed_dumps: true,
            server_snapshot: true,
            ..Default::default()
        }
    }
}

const DEFAULT_HORIZON_MS: i64 = 3_600_000;

/// Folds keys into a [`ContentDigest`]: `start_key`, the value through [`ValueSink`] (a
/// [`ValueHasher`]), `end_key`.
pub struct DigestBuilder {
    pub digest: ContentDigest,
    pub hasher: ValueHasher,
    horizon_at: i64,
    detail_slots: BTreeSet<u16>,
    key: Vec<u8>,
    db: u32,
    expire_ms: Option<i64>,
    /// The slot of the key being read.
    slot: u16,
}

impl DigestBuilder {
    pub fn new(now_ms: i64, opts: &DigestOptions) -> Self {
        DigestBuilder {
            digest: ContentDigest::new(now_ms),
            hasher: ValueHasher::default(),
            horizon_at: now_ms.saturating_add(opts.horizon_ms.unwrap_or(DEFAULT_HORIZON_MS)),
            detail_slots: opts.detail_slots.clone(),
            key: Vec::new(),
            db: 0,
            expire_ms: None,
            slot: 0,
        }
    }

    /// The slots whose keys are kept one by one.
    pub fn detail_slots(&self) -> &BTreeSet<u16> {
        &self.detail_slots
    }

    /// The hash of one key: its name hashed with a seed made of its database, kind,
    /// value hash and expiry.
    fn key_hash(db: u32, key: &[u8], kind: Kind, value: u128, expire_ms: Option<i64>) -> u128 {
        let mut b = [0u8; 30];
        b[..16].copy_from_slice(&value.to_le_bytes());
        b[16..20].copy_from_slice(&db.to_le_bytes());
        b[20] = kind as u8;
        if let Some(e) = expire_ms {
            b[21] = 1;
            b[22..30].copy_from_slice(&e.to_le_bytes());
        }
        xxh3_128_with_seed(key, xxh3_64(&b))
    }

    /// Adds a whole key whose value hash is already known.
    pub fn add(&mut self, db: u32, key: &[u8], kind: Kind, value: u128, expire_ms: Option<i64>) {
        self.add_in(key_slot(key), db, key, kind, value, expire_ms);
    }

    /// [`add`](Self::add) of a key whose slot is known.
    fn add_in(
        &mut self,
        slot: u16,
        db: u32,
        key: &[u8],
        kind: Kind,
        value: u128,
        expire_ms: Option<i64>,
    ) {
        let hash = Self::key_hash(db, key, kind, value, expire_ms);
        match expire_ms {
            Some(e) if e <= self.horizon_at => self.digest.expiring.push(ExpiringKey {
                slot,
                hash,
                expire_ms: e,
            }),
            _ => {
                let s = &mut self.digest.slots[usize::from(slot)];
                s.sum = s.sum.wrapping_add(hash);
                s.keys += 1;
            }
        }
        if self.detail_slots.contains(&slot) {
            self.digest.detail.insert(
                (db, key.to_vec()),
                KeyState {
                    kind,
                    value,
                    expire_ms,
                },
            );
        }
    }
}

impl ValueSink for DigestBuilder {
    fn begin(&mut self, kind: Kind, n: u64) {
        self.hasher.begin(kind, n)
    }
    fn string(&mut self, s: &[u8]) {
        self.hasher.string(s)
    }
    fn item(&mut self, s: &[u8]) {
        self.hasher.item(s)
    }
    fn scored(&mut self, m: &[u8], s: f64) {
        self.hasher.scored(m, s)
    }
    fn field(&mut self, f: &[u8], v: &[u8], e: Option<i64>) {
        self.hasher.field(f, v, e)
    }
    fn stream(&mut self, s: &Stream) {
        self.hasher.stream(s)
    }
}

impl EntryVisitor for DigestBuilder {
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
        self.db = db;
        self.key.clear();
        self.key.extend_from_slice(key);
        self.expire_ms = expire_ms;
        // The slot's sum is asked for now and added to once the value is read: a file's
        // stream of bytes keeps pushing the slots (512 KiB) out of cache, and waiting for
        // one at each key was some 5% of a digest's CPU.
        self.slot = key_slot(key);
        prefetch(&self.digest.slots, usize::from(self.slot));
    }

    fn end_key(&mut self, present: bool) {
        if present {
            let key = std::mem::take(&mut self.key);
            let (kind, value) = (self.hasher.kind(), self.hasher.finish());
            self.add_in(self.slot, self.db, &key, kind, value, self.expire_ms);
            self.key = key;
        }
    }
}

/// The digest of a file read in parts ([`read_rdb_parts`]), one builder a part: their
/// sums merged (a key's hash adds to its slot in any order); `None` for no part.
pub(super) fn merged(parts: Vec<DigestBuilder>) -> Option<ContentDigest> {
    let mut parts = parts.into_iter().map(|b| b.digest);
    let mut digest = parts.next()?;
    parts.for_each(|d| digest.merge(d));
    Some(digest)
}

/// The digest of one RDB file, taken at `now_ms`.
pub fn digest_of_rdb(
    path: &Path,
    now_ms: i64,
    opts: &DigestOptions,
) -> Result<ContentDigest, RdbReadError> {
    let (file, len) = open_file(path)?;
    // A big file is read in parts at once, as the validator reads it: the keys' hashes
    // sum in any order.
    let parts = read_rdb_parts(&file, len, || DigestBuilder::new(now_ms, opts));
    if let Some(digest) = parts.and_then(merged) {
        return Ok(digest);
    }
    let mut b = DigestBuilder::new(now_ms, opts);
    read_rdb_file(file, len, &mut b)?;
    Ok(b.digest)
}

/// The digest of one RDB arriving as a stream, taken at `now_ms`.
pub fn digest_of_rdb_stream<R: std::io::Read>(
    reader: R,
    len: Option<u64>,
    now_ms: i64,
    opts: &DigestOptions,
) -> Result<ContentDigest, RdbReadError> {
    let mut b = DigestBuilder::new(now_ms, opts);
    super::entries::read_rdb_stream(reader, len, &mut b)?;
    Ok(b.digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::value::{Consumer, ConsumerGroup, PendingEntry};

    fn stream(seen_time_ms: i64, delivery_count: u64) -> Stream {
        let id = StreamId { ms: 1001, seq: 1 };
        Stream {
            length: 0,
            last_id: id,
            first_id: None,
            max_deleted_id: None,
            entries_added: None,
            entries: Vec::new(),
            groups: vec![ConsumerGroup {
                name: b"g".to_vec(),
                last_id: id,
                entries_read: None,
                pending: vec![PendingEntry {
                    id,
                    delivery_time_ms: 1_700_000_000_000,
                    delivery_count,
                }],
                consumers: vec![Consumer {
                    name: b"c".to_vec(),
                    seen_time_ms,
                    active_time_ms: None,
                    pending: vec![id],
                }],
            }],
        }
    }

    fn digest(s: &Stream) -> u128 {
        let mut h = ValueHasher::default();
        h.begin(Kind::Stream, 0);
        h.stream(s);
        h.finish()
    }

    /// A replica's copy of a stream differs from its master's in the consumer's seen
    /// time when it applied the propagated `XCLAIM` a millisecond later: `verify db`
    /// against a run taken from a replica named such streams `different value`.
    #[test]
    fn a_consumer_seen_time_is_not_content_and_its_pending_entries_are() {
        let master = stream(1_700_000_000_001, 1);
        assert_eq!(digest(&master), digest(&stream(1_700_000_000_002, 1)));
        assert_ne!(digest(&master), digest(&stream(1_700_000_000_001, 2)));
    }
}
