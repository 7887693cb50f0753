//! A set of 64-bit key fingerprints in one flat open-addressing table, and a 2-bit state
//! per table slot: the memory behind exact AOF key counts and duplicate-key checks.
//!
//! Memory, documented because it is the bound: 8 bytes a slot, slots a power of two kept
//! at most 3/4 full (7/8 at the largest size), so 8-21 bytes a key; at most
//! [`MAX_SLOTS`] slots (512 MiB) hold [`MAX_KEYS`] (58.7 million) keys. Growing doubles
//! the table, so for a moment the old half is alive too. [`SlotStates`] add 2 bits a slot
//! (16 MiB at the largest size) per user.
//!
//! Two different keys share a fingerprint with probability about n²/2^65 (7·10^-5 for
//! 50 million keys); such a pair is counted as one key (or, in an RDB, as a duplicate).

/// A filter of fingerprints: three bits of one 64-bit word for each (the word chosen by
/// its top bits, the bits by its lowest eighteen), about `bits_a_key` bits a fingerprint
/// (a power of two of bits, from 4096 up to `max_bits`). A fingerprint not in it is let
/// through with probability under (3/`bits_a_key`)³, under 1% at 16 bits a key, in one
/// load. With one bit each, 6% came through: each of the 1 GB RDB base's keys let through
/// was looked for in the table of the keys its 60,000 incremental writes touch, a cache
/// miss, 35 ms of its 0.43 s check on one core (now 0.41 s, medians of 6 runs alternated);
/// a filter four times bigger missed the cache itself and cost more. One in it always is.
pub(crate) fn fp_filter(
    fps: impl Iterator<Item = u64>,
    n: usize,
    bits_a_key: usize,
    max_bits: usize,
) -> Vec<u64> {
    let bits = (n * bits_a_key).next_power_of_two().clamp(4096, max_bits);
    let mut filter = vec![0u64; bits / 64];
    for fp in fps {
        let (i, mask) = filter_bits(&filter, fp);
        filter[i] |= mask;
    }
    filter
}

/// The word of `fp` in a filter ([`fp_filter`]), and its three bits there (maybe fewer).
#[inline(always)]
fn filter_bits(filter: &[u64], fp: u64) -> (usize, u64) {
    let fp = fp.max(1);
    let word = (fp >> 40) as usize & filter.len().wrapping_sub(1);
    (
        word,
        (1 << (fp & 63)) | (1 << ((fp >> 6) & 63)) | (1 << ((fp >> 12) & 63)),
    )
}

/// Whether a filter ([`fp_filter`]) lets `fp` through.
#[inline(always)]
pub(crate) fn in_filter(filter: &[u64], fp: u64) -> bool {
    let (i, mask) = filter_bits(filter, fp);
    filter.get(i).is_some_and(|&w| w & mask == mask)
}

/// The largest table: 2^26 slots of 8 bytes.
pub(crate) const MAX_SLOTS: usize = 1 << 26;
/// Keys the largest table holds (7/8 of its slots).
pub(crate) const MAX_KEYS: usize = MAX_SLOTS / 8 * 7;
const FIRST_SLOTS: usize = 1 << 10;
/// The largest table [`FpSet::clear_for`] makes or keeps (128 KiB); a value with more
/// members grows it as they come.
const CLEARED_SLOTS: usize = FIRST_SLOTS * 16;

use std::sync::atomic::{AtomicUsize, Ordering};

use super::words::Words;

/// The fingerprint of a key: 8 bytes at a time through a 64×64→128-bit multiply folded
/// back to 64 bits, then a final mix. A key of 8 to 16 bytes (most keys and members)
/// takes two multiplies: its first 8 bytes by its last 8 (overlapping below 16) with its
/// length, then the product's halves (with the words) by each other, which mixes as well
/// as the final mix's two multiplies after a fold (a multiply a word made a chain of two
/// waits on each other ahead of the final mix, and a short key's fingerprint is on the
/// parse's critical path: some 7% of the check of an RDB of small keys). Not keyed: keys
/// chosen to collide could make two distinct keys count as one (or look duplicated); the
/// same key always gives the same value.
#[inline]
pub(crate) fn fingerprint(key: &[u8]) -> u64 {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
    #[inline(always)]
    fn fold(a: u64, b: u64) -> u64 {
        let r = u128::from(a).wrapping_mul(u128::from(b));
        (r as u64) ^ ((r >> 64) as u64)
    }
    let n = key.len();
    if (8..=16).contains(&n) {
        let (a, b) = (le_word(&key[..8]), le_word(&key[n - 8..]));
        // The words themselves too: a word equal to its constant would make the
        // first product 0 whatever the other word held.
        let r = u128::from(a ^ K0).wrapping_mul(u128::from(b ^ K1 ^ n as u64));
        return fold((r as u64) ^ a ^ K2, ((r >> 64) as u64) ^ b.rotate_left(32));
    }
    let mut h = (n as u64) ^ K2;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        h = fold(h ^ le_word(c), K1) ^ K0;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = fold(h ^ tail_word(rest), K0 ^ rest.len() as u64) ^ K1;
    }
    finish(h)
}

/// The first 8 bytes of `b` (at least 8) as a little-endian word.
#[inline(always)]
pub(crate) fn le_word(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// murmur3's finaliser: every input bit reaches every output bit.
#[inline(always)]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The 1-7 bytes of `rest` as a little-endian word, zero above them. Two overlapping
/// loads ORed (an overlap holds the same byte at the same place): a copy into a zeroed
/// array cost a call and a store-forwarding stall, half the RDB parse of small keys.
#[inline(always)]
pub(crate) fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    debug_assert!((1..8).contains(&n));
    if n >= 4 {
        let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
        u64::from(lo) | (u64::from(hi) << (8 * (n - 4)))
    } else {
        u64::from(rest[0])
            | (u64::from(rest[n / 2]) << (8 * (n / 2)))
            | (u64::from(rest[n - 1]) << (8 * (n - 1)))
    }
}

/// Fingerprints, each at a slot index that stays put until the table grows.
pub(crate) struct FpSet {
    /// 0 marks an empty slot; a fingerprint of 0 is stored as 1.
    slots: Words,
    /// The table is the first `mask + 1` slots (a power of two); the others are all 0.
    mask: usize,
    len: usize,
}

impl Default for FpSet {
    fn default() -> Self {
        FpSet {
            slots: Words::zeroed_random(FIRST_SLOTS),
            mask: FIRST_SLOTS - 1,
            len: 0,
        }
    }
}

fn stored(fp: u64) -> u64 {
    fp.max(1)
}

impl FpSet {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots in the table: the range of indices [`find`](Self::find) returns.
    pub fn slots(&self) -> usize {
        self.mask + 1
    }

    #[inline]
    fn probe(&self, fp: u64) -> (usize, bool) {
        let mask = self.mask;
        // A fingerprint's bits are all mixed: its high ones are as good a position as any.
        let mut i = (fp >> 32) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return (i, false),
                s if s == fp => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The slot where `fp`'s probe starts (where it most often is).
    #[inline]
    pub fn home(&self, fp: u64) -> usize {
        (stored(fp) >> 32) as usize & self.mask
    }

    /// Asks the CPU to bring `fp`'s home slot into cache: a lookup soon after finds it
    /// there instead of waiting for memory.
    #[inline]
    pub fn prefetch(&self, fp: u64) {
        prefetch(&self.slots, self.home(fp));
    }

    /// The fingerprints held (0 as 1), in no order.
    pub fn stored(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots[..=self.mask].iter().copied().filter(|&s| s != 0)
    }

    /// The slot holding `fp`, if it is in the set.
    #[inline]
    pub fn find(&self, fp: u64) -> Option<usize> {
        match self.probe(stored(fp)) {
            (i, true) => Some(i),
            _ => None,
        }
    }

    /// Empties the set for `n` fingerprints to come (a value's members), with a table
    /// of the slots they need (some, not all, of what it holds: a big one is given back).
    /// Only the slots in use are zeroed: clearing the whole table before every value of
    /// a few members cost 1.7% of the check of the mixed RDB.
    ///
    /// The table is at most a quarter full once they are in (up to [`CLEARED_SLOTS`]
    /// slots): nearly every insert then finds its first slot empty. Filled to three
    /// quarters, one in three looked further, a branch the CPU guessed wrong each time
    /// (most of the 7% of the mixed RDB's check that inserting members took).
    pub fn clear_for(&mut self, n: u64) {
        if self.len > 0 {
            if self.slots.len() > CLEARED_SLOTS {
                self.slots = Words::zeroed_random(FIRST_SLOTS);
            } else {
                self.slots[..=self.mask].fill(0);
            }
            self.len = 0;
        }
        let want = (n.min(MAX_KEYS as u64) as usize * 4 + 1)
            .next_power_of_two()
            .clamp(16, CLEARED_SLOTS);
        if want > self.slots.len() {
            self.slots = Words::zeroed_random(want);
        }
        self.mask = want - 1;
    }

    pub fn contains(&self, fp: u64) -> bool {
        self.find(fp).is_some()
    }

    /// Adds `fp`: `Some(true)` when it is new, `Some(false)` when it was there, `None`
    /// when the set is full ([`MAX_KEYS`]) and `fp` is not in it.
    #[inline]
    pub fn insert(&mut self, fp: u64) -> Option<bool> {
        self.insert_at(fp).map(|(_, new)| new)
    }

    /// Adds `fp` like [`insert`](Self::insert), and says at which slot it is.
    #[inline(always)]
    pub fn insert_at(&mut self, fp: u64) -> Option<(usize, bool)> {
        let fp = stored(fp);
        let (mut i, found) = self.probe(fp);
        if found {
            return Some((i, false));
        }
        if (self.len + 1) * 4 > (self.mask + 1) * 3 {
            i = self.make_room(fp)?;
        }
        self.slots[i] = fp;
        self.len += 1;
        Some((i, true))
    }

    /// Grows a table that `fp` would make more than 3/4 full: where `fp` goes now, or
    /// `None` when the table is at its largest and full.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, fp: u64) -> Option<usize> {
        if self.mask + 1 < MAX_SLOTS {
            self.grow();
        } else if self.len + 1 > MAX_KEYS {
            return None;
        }
        Some(self.probe(fp).0)
    }

    fn grow(&mut self) -> Words {
        let bigger = Words::zeroed_random((self.mask + 1) * 2);
        self.mask = bigger.len() - 1;
        let old = std::mem::replace(&mut self.slots, bigger);
        for &fp in old.iter().filter(|&&s| s != 0) {
            let (i, _) = self.probe(fp);
            self.slots[i] = fp;
        }
        old
    }

    /// Makes room for `n` more fingerprints without growing during their inserts (as far
    /// as [`MAX_SLOTS`] allows), so slot indices stay put meanwhile. When the table grew,
    /// returns the old one: whoever keeps per-slot data moves it (`old[i]` was at `i`).
    #[inline]
    pub fn reserve(&mut self, n: usize) -> Option<Words> {
        // Asked before every command of a growing replay: the answer is nearly always
        // that there is room, out of line it cost 2% of the check of small commands.
        if (self.len + n) * 4 <= self.slots() * 3 || self.slots() >= MAX_SLOTS {
            return None;
        }
        self.grow_for(n)
    }

    #[inline(never)]
    fn grow_for(&mut self, n: usize) -> Option<Words> {
        let mut old: Option<Words> = None;
        while (self.len + n) * 4 > self.slots() * 3 && self.slots() < MAX_SLOTS {
            let before = self.grow();
            // Two doublings at once: the first table is the one the caller's data is
            // indexed by.
            old.get_or_insert(before);
        }
        old
    }
}

/// Fingerprints of one database's keys, appended in 256 runs by their top byte and hashed
/// run by run at the end to find a repeat: `W` bytes a key (the top byte is the run's),
/// sequential writes only, so checking 5 million keys costs ~0.1 s of CPU where a hash
/// table's cache misses cost ~1 s. At most [`MAX_RUN_KEYS`] keys a database are kept.
///
/// `W` = 7 keeps whole fingerprints (key counts: `distinct`), the top byte being the
/// run's: an AOF of 7 M keys held 6.6 MiB less than in 8 bytes a key. `W` = 6 keeps their
/// top 56 bits ([`FpRuns::kept`]), three quarters of 8 bytes, whose fresh pages the
/// kernel zeroes (a quarter of the check of an RDB of small keys): two different keys share
/// the kept bits with probability about n²/2^57 (2·10^-4 for 5 million keys), so a repeat
/// found this way is only a candidate, which the caller confirms on the keys' own bytes.
///
/// Each run is a chain of blocks of [`BLOCK_BYTES`], taken in turn from segments
/// of memory shared by all runs: no run is ever copied to grow, memory is what the keys
/// take (no spare capacity per run, whatever a file's RESIZEDB hint says); a segment's
/// pages are faulted in as its blocks are first written.
#[derive(Default)]
pub(crate) struct FpRuns<const W: usize = 7> {
    /// Memory blocks are taken from, in order: the first small (a database of few keys
    /// costs little), the others [`SEGMENT`] words.
    segments: Vec<Words>,
    /// Per run, where its blocks are; the last one is being filled.
    blocks: Vec<Vec<Block>>,
    /// Per run: where its next fingerprint goes in the block being filled, and where that
    /// block's room ends (both null for a run with no block yet).
    heads: Vec<Head>,
    /// The next free block: (segment, first byte).
    next: (u32, u32),
    len: usize,
    /// Fingerprints [`push_later`](Self::push_later) has not yet stored, and how many.
    later: [u64; LATER],
    n_later: usize,
}

// SAFETY: the heads point into `segments`, which the runs own (their memory does not move
// with them); nothing else holds those pointers, and they are written through only with
// `&mut self` (shared, the runs are only read).
unsafe impl<const W: usize> Send for FpRuns<W> {}
unsafe impl<const W: usize> Sync for FpRuns<W> {}

/// Fingerprints from which [`FpRuns::repeats_on`] takes more cores (some 10 ms of
/// looking, against a thread's start of some 50 µs).
const SHARED_FROM: usize = 1 << 20;
/// Threads [`FpRuns::repeats_on`] shares the runs between at most: past them a thread's
/// share is too small to be worth its start.
const MAX_SHARES: usize = 8;

/// A block of a run: its segment, its first byte there, and how many fingerprints it holds
/// once it is not the run's last (which [`FpRuns::filled`] counts from the run's head). All
/// but the last are full, unless runs were appended ([`FpRuns::append`]).
#[derive(Clone, Copy)]
struct Block {
    seg: u32,
    at: u32,
    n: u32,
}

/// Fingerprints [`FpRuns::push_later`] holds before storing them together.
const LATER: usize = 32;

/// Where a run's next fingerprint is written, and where its block's room ends: pointers
/// into a segment, so that storing a fingerprint is a compare, a store and an add. Found
/// through the segment and checked against its bounds at each store, it took a quarter of
/// the check of an RDB of small keys.
#[derive(Clone, Copy)]
struct Head {
    at: *mut u8,
    end: *mut u8,
}

impl Head {
    const NONE: Head = Head {
        at: std::ptr::null_mut(),
        end: std::ptr::null_mut(),
    };
}

/// How many fingerprints ahead a tag pass asks for a bucket.
const AHEAD: usize = 16;

/// Fingerprints of one database whose repeats are looked for.
pub(crate) const MAX_RUN_KEYS: usize = 1 << 26;
/// Bytes a block (4 KiB).
const BLOCK_BYTES: usize = 4096;
/// Words of the first segment: a block for each run.
const FIRST_SEGMENT: usize = 256 * BLOCK_BYTES / 8;
/// Words of every later segment (8 MiB).
const SEGMENT: usize = 1 << 20;
/// Bytes of a segment faulted in at once, as its blocks are first handed out: a fault a
/// page was some 5% of the check of an RDB of small keys (on one core 118 ms of CPU
/// against 113 ms; the memory is what the blocks handed out take, and 1 MiB).
const POPULATE: usize = 1 << 20;

impl<const W: usize> FpRuns<W> {
    /// Low bits of a fingerprint not kept (its top `8 + 8·W` bits are).
    const DROP: u32 = if W >= 7 { 0 } else { (56 - 8 * W) as u32 };
    /// Fingerprints a block: each is written as 8 bytes, the next overwriting the top
    /// ones, so the last needs `8 - W` more.
    const PER_BLOCK: usize = (BLOCK_BYTES - 8 + W) / W;

    /// What of `fp` is kept: the value [`repeats`](Self::repeats) returns for it.
    #[inline]
    pub fn kept(fp: u64) -> u64 {
        fp & !((1u64 << Self::DROP) - 1)
    }

    /// Adds a fingerprint; `false` when the database already has [`MAX_RUN_KEYS`].
    #[inline(always)]
    pub fn push(&mut self, fp: u64) -> bool {
        if self.len >= MAX_RUN_KEYS {
            return false;
        }
        self.put(fp);
        self.len += 1;
        true
    }

    /// Stores a fingerprint the count already holds.
    #[inline(always)]
    fn put(&mut self, fp: u64) {
        let r = (fp >> 56) as usize;
        let Some(h) = self.heads.get_mut(r) else {
            self.start();
            return self.put(fp);
        };
        if h.at == h.end {
            self.new_block(r);
            return self.put(fp);
        }
        // SAFETY: `at` is a fingerprint's place in run `r`'s block, whose room ends at
        // `end` (`new_block`): a fingerprint is written as 8 bytes, and the block's bytes
        // run 8 - W past its room's end, so the write lies inside the block; `at + W` is
        // at most `end`.
        unsafe {
            h.at.cast::<[u8; 8]>()
                .write_unaligned((fp >> Self::DROP).to_le_bytes());
            h.at = h.at.add(W);
        }
        // 256 runs are 256 streams of writes, more than the hardware follows: each new
        // cache line of a run waited on memory. Asked for two lines ahead, it is there long
        // before the run's next keys reach it.
        prefetch_at(h.at.wrapping_add(128));
    }

    /// [`push`](Self::push), but stored with the next few, in a loop of their own:
    /// stored one by one, the stores' bookkeeping shared the parse's loop and cost more
    /// there (a fifth of the check of an RDB of small keys). `false` when the database
    /// already has [`MAX_RUN_KEYS`].
    #[inline(always)]
    pub fn push_later(&mut self, fp: u64) -> bool {
        let n = self.n_later;
        if self.len + n >= MAX_RUN_KEYS {
            return false;
        }
        if let Some(slot) = self.later.get_mut(n) {
            *slot = fp;
        }
        self.n_later = n + 1;
        if n + 1 == LATER {
            self.store_later();
        }
        true
    }

    /// Stores what [`push_later`](Self::push_later) holds (counted here at once: counted
    /// one by one, the count was read and written back through memory, a wait on every
    /// fingerprint).
    #[inline(never)]
    fn store_later(&mut self) {
        let n = std::mem::take(&mut self.n_later);
        // `push_later` took no more than fit.
        self.len += n;
        for i in 0..n {
            let fp = self.later[i];
            self.put(fp);
        }
    }

    /// Gives back the memory faulted in ahead of blocks never handed out (up to
    /// [`POPULATE`]): for runs that will take no more fingerprints of their own (a part
    /// of a file read in parts, kept until all are read).
    pub fn release_unused(&mut self) {
        self.store_later();
        let (seg, at) = self.next;
        if let Some(s) = self.segments.get_mut(seg as usize) {
            let end = s.len() * 8;
            s.release(at as usize, end);
        }
    }

    /// Fingerprints in all.
    pub fn len(&self) -> usize {
        self.len + self.n_later
    }

    /// Puts `other`'s fingerprints after these, run by run, as if pushed here in their
    /// order (the fingerprints of one database read in parts, each part's in its own): no
    /// fingerprint is copied, its blocks and their memory are taken over.
    pub fn append(&mut self, mut other: Self) {
        self.store_later();
        other.store_later();
        if other.blocks.is_empty() {
            return;
        }
        if self.blocks.is_empty() {
            *self = other;
            return;
        }
        let shift = self.segments.len() as u32;
        for r in 0..self.blocks.len() {
            let theirs = std::mem::take(&mut other.blocks[r]);
            if theirs.is_empty() {
                continue;
            }
            let filled = self.filled(r) as u32;
            if let Some(last) = self.blocks[r].last_mut() {
                last.n = filled;
            }
            let moved = theirs.into_iter().map(|b| Block {
                seg: b.seg + shift,
                ..b
            });
            self.blocks[r].extend(moved);
            self.heads[r] = other.heads[r];
        }
        self.segments.append(&mut other.segments);
        self.next = (other.next.0 + shift, other.next.1);
        self.len += other.len;
    }

    #[cold]
    fn start(&mut self) {
        self.blocks = vec![Vec::new(); 256];
        self.heads = vec![Head::NONE; 256];
    }

    /// Gives run `r` a fresh block.
    #[cold]
    #[inline(never)]
    fn new_block(&mut self, r: usize) {
        let (mut seg, mut at) = self.next;
        let fits = self
            .segments
            .get(seg as usize)
            .is_some_and(|s| at as usize + BLOCK_BYTES <= s.len() * 8);
        if !fits {
            let words = if self.segments.is_empty() {
                FIRST_SEGMENT
            } else {
                SEGMENT
            };
            self.segments.push(Words::zeroed(words));
            seg = (self.segments.len() - 1) as u32;
            at = 0;
        }
        // Not the first segment: a database of few keys touches a few of its blocks only.
        if seg > 0 && (at as usize).is_multiple_of(POPULATE) {
            if let Some(s) = self.segments.get_mut(seg as usize) {
                s.populate(at as usize, at as usize + POPULATE);
            }
        }
        self.blocks[r].push(Block {
            seg,
            at,
            n: Self::PER_BLOCK as u32,
        });
        let start = self.segments[seg as usize].base().wrapping_add(at as usize);
        self.heads[r] = Head {
            at: start,
            end: start.wrapping_add(Self::PER_BLOCK * W),
        };
        self.next = (seg, at + BLOCK_BYTES as u32);
    }

    /// Calls `f` with run `r`'s kept fingerprints in order, until it returns `true`.
    #[inline]
    fn each(&self, r: usize, mut f: impl FnMut(u64) -> bool) {
        let top = (r as u64) << 56;
        for b in self.blocks_of(r) {
            for c in b.chunks_exact(W) {
                if f((Self::word(c) << Self::DROP) | top) {
                    return;
                }
            }
        }
    }

    /// Run `r`'s stored fingerprints, block by block (`W` bytes each).
    fn blocks_of(&self, r: usize) -> impl Iterator<Item = &[u8]> + '_ {
        self.blocks_padded(r, 0)
    }

    /// [`blocks_of`](Self::blocks_of), each block's bytes `pad` longer: the last
    /// fingerprint's 8-byte write reached `8 - W` bytes past it, inside the block.
    fn blocks_padded(&self, r: usize, pad: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let blocks = self.blocks.get(r).map_or(&[][..], Vec::as_slice);
        let last = blocks.len().saturating_sub(1);
        let filled = self.filled(r);
        blocks.iter().enumerate().map_while(move |(i, b)| {
            let n = if i == last {
                filled.min(Self::PER_BLOCK)
            } else {
                b.n as usize
            };
            let at = b.at as usize;
            self.segments[b.seg as usize]
                .bytes()
                .get(at..at + n * W + pad)
        })
    }

    /// The `W` bytes of a stored fingerprint as a number.
    #[inline(always)]
    fn word(c: &[u8]) -> u64 {
        match *c {
            [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            [a, b, c, d, e, f, g] => {
                u64::from(u32::from_le_bytes([a, b, c, d]))
                    | (u64::from(u16::from_le_bytes([e, f])) << 32)
                    | (u64::from(g) << 48)
            }
            [a, b, c, d, e, f] => {
                u64::from(u32::from_le_bytes([a, b, c, d]))
                    | (u64::from(u16::from_le_bytes([e, f])) << 32)
            }
            _ => c.iter().rev().fold(0, |w, &x| (w << 8) | u64::from(x)),
        }
    }

    /// Run `r`'s fingerprints in one vector.
    fn gather(&self, r: usize, out: &mut Vec<u64>) {
        out.clear();
        self.each(r, |fp| {
            out.push(fp);
            false
        });
    }

    /// How many different (kept) fingerprints were pushed: run by run, through
    /// [`tag_pass`](Self::tag_pass); a run where a tag came twice (a key pushed twice, or
    /// two sharing a tag) is counted again exactly, through [`each_seen`](Self::each_seen).
    pub fn distinct(&mut self) -> u64 {
        self.store_later();
        let mut n = 0;
        let (mut tags, mut table, mut maybe) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..self.blocks.len() {
            maybe.clear();
            self.tag_pass(r, &mut tags, &mut maybe);
            if maybe.is_empty() {
                n += self.run_len(r) as u64;
                continue;
            }
            self.each_seen(r, &mut table, |_, seen| {
                n += u64::from(!seen);
                false
            });
        }
        n
    }

    /// Up to `max` kept fingerprints pushed more than once: run by run, in a run of
    /// fewer than 64 smallest first, in a bigger one in the order of their second push.
    #[cfg(test)]
    pub fn repeats(&mut self, max: usize) -> Vec<u64> {
        self.repeats_on(max, 1)
    }

    /// [`repeats`](Self::repeats), the runs shared out between `cores` threads (this one
    /// and `cores - 1` more, at most [`MAX_SHARES`] in all) when there are enough
    /// fingerprints to be worth them; the candidates in the same order. Each thread takes
    /// the next run nobody has taken until none is left (or `max` are found), so a core
    /// slowed down by another (two of a VM do that to each other) does fewer: in even
    /// shares, one took 14-16 ms where the other took 9.
    pub fn repeats_on(&mut self, max: usize, cores: usize) -> Vec<u64> {
        self.store_later();
        let cores = match self.len < SHARED_FROM {
            true => 1,
            false => cores.clamp(1, MAX_SHARES),
        };
        let this = &*self;
        let (next, found) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let take = || this.repeats_taken(&next, &found, max);
        let mut runs: Vec<(usize, Vec<u64>)> = std::thread::scope(|s| {
            let others: Vec<_> = (1..cores)
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("persist-repeats".into())
                        .spawn_scoped(s, take)
                        .ok()
                })
                .collect();
            let mut runs = take();
            for t in others {
                // A thread that failed lost the run it had taken: all again, here.
                match t.join() {
                    Ok(theirs) => runs.extend(theirs),
                    Err(_) => {
                        let (next, found) = (AtomicUsize::new(0), AtomicUsize::new(0));
                        return this.repeats_taken(&next, &found, max);
                    }
                }
            }
            runs
        });
        runs.sort_unstable_by_key(|r| r.0);
        let mut out: Vec<u64> = runs.into_iter().flat_map(|r| r.1).collect();
        out.truncate(max);
        out
    }

    /// Runs taken in turn through `next` (shared with other threads) and looked through
    /// for repeats, until none is left or `found` (also shared) reaches `max`: each with
    /// its candidates, when it has any. Runs are taken in order, so every run before the
    /// last taken is looked through whole, and the first `max` candidates run by run are
    /// among these and the other threads'.
    fn repeats_taken(
        &self,
        next: &AtomicUsize,
        found: &AtomicUsize,
        max: usize,
    ) -> Vec<(usize, Vec<u64>)> {
        let (mut scratch, mut tags, mut runs) = (Vec::new(), Vec::new(), Vec::new());
        while found.load(Ordering::Relaxed) < max {
            let r = next.fetch_add(1, Ordering::Relaxed);
            if r >= self.blocks.len() {
                break;
            }
            let mut out = Vec::new();
            self.run_repeats(r, &mut scratch, &mut tags, max, &mut out);
            if !out.is_empty() {
                found.fetch_add(out.len(), Ordering::Relaxed);
                runs.push((r, out));
            }
        }
        runs
    }

    /// Fingerprints twice in run `r`: the candidates of one [`tag_pass`](Self::tag_pass)
    /// (none, unless the file holds a key twice), each confirmed by counting it in the run.
    fn run_repeats(
        &self,
        r: usize,
        scratch: &mut Vec<u64>,
        tags: &mut Vec<[u32; 4]>,
        max: usize,
        out: &mut Vec<u64>,
    ) {
        let len = self.run_len(r);
        if len < 64 {
            self.gather(r, scratch);
            scratch.sort_unstable();
            // Smallest first.
            for w in scratch.windows(2) {
                if out.len() < max && w[0] == w[1] && out.last() != Some(&w[0]) {
                    out.push(w[0]);
                }
            }
            return;
        }
        let mut maybe = Vec::new();
        self.tag_pass(r, tags, &mut maybe);
        for fp in maybe {
            if out.len() >= max {
                return;
            }
            if out.contains(&fp) {
                continue;
            }
            let mut seen = 0;
            self.each(r, |x| {
                seen += usize::from(x == fp);
                seen > 1
            });
            if seen > 1 {
                out.push(fp);
            }
        }
    }

    /// One pass over run `r` into a table of 32-bit tags (bits 25-55 of each kept
    /// fingerprint, the lowest bit set so that no tag is a free slot's 0), four to a
    /// 16-byte bucket, at most half full, indexed by the bits above the lowest byte: pushes
    /// to `maybe`, in the run's order, each fingerprint whose tag its bucket chain already
    /// held. A key pushed twice is always among them; two different keys share a tag with
    /// probability about 2^-31 a comparison. Each bucket
    /// is asked for a few fingerprints ahead, and looked through at once with no branch on
    /// what it holds. A table of whole fingerprints probed slot by slot (twice the bytes,
    /// a branch a slot) took 30 of the 104 ms of the check of an RDB of 5 M small keys;
    /// this pass takes 18.
    fn tag_pass(&self, r: usize, tags: &mut Vec<[u32; 4]>, maybe: &mut Vec<u64>) {
        let buckets = (self.run_len(r) / 2).next_power_of_two().max(4);
        tags.clear();
        tags.resize(buckets, [0; 4]);
        let top = (r as u64) << 56;
        // Each fingerprint read as the 8 bytes it was written as, the next one's bytes
        // masked off, and the buckets indexed within the table's length: one load where
        // `word` took two, and no bounds to check (56 instructions a key before, 32 now;
        // the small-key RDB's check 127 -> 120 ms, medians of 24 runs alternated).
        // The run's top byte is left off until a candidate is kept: a tag (bits 24-55)
        // and a bucket (bits 8 on, a table of at most 2^25 buckets) never reach it.
        let keep = u64::MAX >> (8 * (8 - W));
        for b in self.blocks_padded(r, 8 - W) {
            let n = (b.len() + W - 8) / W;
            let word = |i: usize| {
                debug_assert!(i < n);
                // SAFETY: fingerprint `i < n` starts at `i * W`, and its 8 bytes end at
                // most at `(n - 1) * W + 8`, which is `b.len()`.
                let w = unsafe { b.as_ptr().add(i * W).cast::<u64>().read_unaligned() };
                (u64::from_le(w) & keep) << Self::DROP
            };
            let ahead = n.saturating_sub(AHEAD);
            // Two loops, so that the one asking for buckets ahead asks no question of
            // where it is.
            for i in 0..ahead {
                prefetch(tags, bucket_of(word(i + AHEAD), tags.len()));
                if tag_seen(tags, word(i)) {
                    maybe.push(word(i) | top);
                }
            }
            for i in ahead..n {
                if tag_seen(tags, word(i)) {
                    maybe.push(word(i) | top);
                }
            }
        }
    }

    /// Calls `f` with run `r`'s kept fingerprints in order, each with whether it came
    /// before in the run, until `f` returns `true`: through an open-addressing `table` of
    /// at least twice the run's length (in the second-level cache for the runs of up to
    /// some 100,000 keys), indexed by bits above the lowest byte (the top byte is shared
    /// by the whole run; the lowest may be 0).
    fn each_seen(&self, r: usize, table: &mut Vec<u64>, mut f: impl FnMut(u64, bool) -> bool) {
        let size = (self.run_len(r) * 2).next_power_of_two().max(16);
        table.clear();
        table.resize(size, 0);
        let mask = size - 1;
        let mut zero = false;
        self.each(r, |fp| {
            if fp == 0 {
                let seen = zero;
                zero = true;
                return f(0, seen);
            }
            let mut i = (fp >> 8) as usize & mask;
            loop {
                match table[i] {
                    0 => {
                        table[i] = fp;
                        return f(fp, false);
                    }
                    s if s == fp => return f(fp, true),
                    _ => i = (i + 1) & mask,
                }
            }
        });
    }

    fn run_len(&self, r: usize) -> usize {
        let blocks = self.blocks.get(r).map_or(&[][..], Vec::as_slice);
        let closed = &blocks[..blocks.len().saturating_sub(1)];
        closed.iter().map(|b| b.n as usize).sum::<usize>() + self.filled(r)
    }

    /// Fingerprints in run `r`'s last block.
    fn filled(&self, r: usize) -> usize {
        match (self.heads.get(r), self.blocks.get(r).and_then(|b| b.last())) {
            (Some(h), Some(b)) => {
                let start = self.segments[b.seg as usize].bytes().as_ptr() as usize + b.at as usize;
                (h.at as usize - start) / W
            }
            _ => 0,
        }
    }
}

/// The bucket where `fp`'s chain starts in a table of `buckets` (a power of two):
/// bits above the lowest byte (the top byte is shared by the whole run; the lowest may be
/// 0).
#[inline(always)]
fn bucket_of(fp: u64, buckets: usize) -> usize {
    (fp >> 8) as usize & buckets.wrapping_sub(1)
}

/// Whether `fp`'s tag is in its chain of buckets of `tags` (a power of two of buckets of
/// four slots, 0 a free slot); if not, puts it in the chain's first free slot. A table at
/// most half full always has one.
#[inline(always)]
fn tag_seen(tags: &mut [[u32; 4]], fp: u64) -> bool {
    let tag = ((fp >> 24) as u32) | 1;
    let mut b = bucket_of(fp, tags.len());
    loop {
        let Some(slots) = tags.get_mut(b) else {
            return false;
        };
        let (hit, free) = bucket_masks(slots, tag);
        if hit != 0 {
            return true;
        }
        if free != 0 {
            slots[free.trailing_zeros() as usize & 3] = tag;
            return false;
        }
        b = (b + 1) & tags.len().wrapping_sub(1);
    }
}

/// Which of a bucket's four slots hold `tag`, and which are free, as bit masks.
#[inline(always)]
fn bucket_masks(slots: &[u32; 4], tag: u32) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps, _mm_set1_epi32,
            _mm_setzero_si128,
        };
        // SAFETY: SSE2 is part of x86_64; the load reads the four slots' 16 bytes (an
        // unaligned load, whatever the array's alignment).
        unsafe {
            let v = _mm_loadu_si128(slots.as_ptr().cast());
            let hit = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(
                v,
                _mm_set1_epi32(tag as i32),
            )));
            let free = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v, _mm_setzero_si128())));
            (hit as u32, free as u32)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let (mut hit, mut free) = (0, 0);
        for (i, &s) in slots.iter().enumerate() {
            hit |= u32::from(s == tag) << i;
            free |= u32::from(s == 0) << i;
        }
        (hit, free)
    }
}

/// Asks the CPU to bring `v[i]` into cache, when `i` is inside `v`.
#[inline(always)]
pub(crate) fn prefetch<T>(v: &[T], i: usize) {
    if let Some(p) = v.get(i) {
        prefetch_at(std::ptr::from_ref(p).cast());
    }
}

/// Asks the CPU to bring the cache line at `p` into cache.
#[inline(always)]
fn prefetch_at(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing and cannot fault, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Two bits for each slot of an [`FpSet`], all 0 at first. When the set grows, its
/// owner moves them with [`SlotStates::moved`].
#[derive(Default, Clone)]
pub(crate) struct SlotStates {
    words: Vec<u64>,
}

impl SlotStates {
    /// These states in `set`'s table, given the table they were indexed by (`old`, as
    /// [`FpSet::reserve`] returned it).
    pub fn moved(&self, old: &[u64], set: &FpSet) -> SlotStates {
        let mut out = SlotStates::default();
        if self.words.is_empty() {
            return out;
        }
        for (i, &fp) in old.iter().enumerate() {
            let state = self.get(i);
            if fp != 0 && state != 0 {
                if let (i, true) = set.probe(fp) {
                    out.set(set.slots(), i, state);
                }
            }
        }
        out
    }

    /// Brings the state of `slot` into cache (see [`FpSet::prefetch`]).
    #[inline]
    pub fn prefetch(&self, slot: usize) {
        prefetch(&self.words, slot / 32);
    }

    #[inline]
    pub fn get(&self, slot: usize) -> u8 {
        self.words
            .get(slot / 32)
            .map_or(0, |w| ((w >> ((slot % 32) * 2)) & 3) as u8)
    }

    /// Sets the state of `slot` (of a table of `slots` slots); returns the old one.
    #[inline]
    pub fn set(&mut self, slots: usize, slot: usize, state: u8) -> u8 {
        if self.words.is_empty() {
            if state == 0 {
                return 0;
            }
            self.words = vec![0; slots.div_ceil(32)];
        }
        let shift = (slot % 32) * 2;
        let w = &mut self.words[slot / 32];
        let old = ((*w >> shift) & 3) as u8;
        *w = (*w & !(3 << shift)) | (u64::from(state & 3) << shift);
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_of_keys_alike_differ_and_spread_evenly() {
        // Keys as applications name them, most of 8-16 bytes: none may share a
        // fingerprint, and the bits that pick a run (the top byte) and a table slot
        // (from bit 32) must spread evenly.
        const N: u64 = 1 << 18;
        let shapes: [fn(u64) -> Vec<u8>; 7] = [
            |i| format!("key:{i}").into_bytes(),
            |i| format!("{i:016}").into_bytes(),
            |i| format!("u:{i}:s").into_bytes(),
            |i| i.to_le_bytes().to_vec(),
            |i| {
                (i << 40).to_be_bytes()[..5]
                    .iter()
                    .chain(b"abcdefg")
                    .copied()
                    .collect()
            },
            |i| format!("session:{:x}", i * 0x9e37).into_bytes(),
            // First 8 bytes that cancel the multiply's constant: the tail still counts.
            |i| {
                let mut k = 0xa076_1d64_78bd_642f_u64.to_le_bytes().to_vec();
                k.extend_from_slice(&(i as u32).to_le_bytes());
                k
            },
        ];
        for (n, shape) in shapes.iter().enumerate() {
            let mut fps: Vec<u64> = (0..N).map(|i| fingerprint(&shape(i))).collect();
            for (what, bits) in [("top byte", 56), ("slot bits", 32)] {
                let mut buckets = [0u32; 256];
                for &fp in &fps {
                    buckets[(fp >> bits) as usize & 255] += 1;
                }
                let mean = (N / 256) as u32;
                assert!(
                    buckets
                        .iter()
                        .all(|&b| b > mean * 85 / 100 && b < mean * 115 / 100),
                    "shape {n}, {what}: {:?}",
                    (buckets.iter().min(), buckets.iter().max())
                );
            }
            fps.sort_unstable();
            fps.dedup();
            assert_eq!(fps.len() as u64, N, "shape {n}");
        }
    }

    #[test]
    fn a_tail_word_is_its_bytes_zero_padded() {
        let bytes = *b"\x01\x82\x03\xf4\x05\x06\xa7";
        for n in 1..8 {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(tail_word(&bytes[..n]), u64::from_le_bytes(w), "{n}");
        }
    }

    #[test]
    fn holds_many_fingerprints_at_stable_slots() {
        let mut s = FpSet::default();
        for k in 0..100_000u64 {
            assert_eq!(s.insert(fingerprint(&k.to_le_bytes())), Some(true));
        }
        assert_eq!(s.insert(fingerprint(&7u64.to_le_bytes())), Some(false));
        assert_eq!(s.len(), 100_000);
        assert!(s.slots() >= 100_000 * 4 / 3);
        assert!(!s.contains(fingerprint(b"absent")));
        // Zero is a fingerprint like any other.
        assert_eq!(s.insert(0), Some(true));
        assert!(s.contains(0));
        let i = s.find(fingerprint(&5u64.to_le_bytes())).unwrap();
        let mut st = SlotStates::default();
        assert_eq!(st.set(s.slots(), i, 3), 0);
        assert_eq!(st.get(i), 3);
        assert_eq!(st.get(i + 1), 0);
        assert_eq!(st.set(s.slots(), i, 1), 3);
    }

    #[test]
    fn a_set_cleared_for_a_few_forgets_a_bigger_one_and_still_grows() {
        let fp = |k: u64| fingerprint(&k.to_le_bytes());
        let mut s = FpSet::default();
        s.clear_for(5000);
        for k in 0..5000 {
            assert_eq!(s.insert(fp(k)), Some(true));
        }
        // A big table is given back, a small one reused: either way nothing stays.
        for (before, n) in [(5000, 3), (3, 700), (700, 10)] {
            s.clear_for(n);
            assert_eq!(s.len(), 0);
            assert!(
                (0..before).all(|k| !s.contains(fp(k))),
                "after {before}, {n}"
            );
            // More than announced (a damaged count): the table grows.
            for k in 0..n * 2 + 40 {
                assert_eq!(s.insert(fp(k)), Some(true));
                assert_eq!(s.insert(fp(k)), Some(false));
            }
            s.clear_for(0);
            for k in 0..n {
                assert_eq!(s.insert(fp(k)), Some(true));
            }
        }
    }

    #[test]
    fn a_filter_lets_its_own_through_and_few_others() {
        let fp = |k: u64| fingerprint(&k.to_le_bytes());
        let n = 60_000;
        let filter = fp_filter((0..n).map(fp).chain([0, 1]), n as usize + 2, 16, 1 << 24);
        assert!((0..n).all(|k| in_filter(&filter, fp(k))));
        assert!(in_filter(&filter, 0) && in_filter(&filter, 1));
        let others = (n..n + 1_000_000)
            .filter(|&k| in_filter(&filter, fp(k)))
            .count();
        // Three bits a fingerprint in one word of a 16-bit-a-key filter: under 1%.
        assert!(others < 10_000, "{others} of 1,000,000 let through");
    }

    #[test]
    fn runs_count_distinct_fingerprints_of_big_runs() {
        let mut r = FpRuns::<7>::default();
        for k in 0..600_000u64 {
            r.push(fingerprint(&(k % 500_000).to_le_bytes()));
        }
        assert_eq!(r.distinct(), 500_000);
        // Asked again, the same (the runs are not consumed).
        assert_eq!(r.distinct(), 500_000);
        // Zero is a fingerprint like any other, and so is one whose low bits are zero.
        for fp in [0, 0, 0x100, 0x100] {
            r.push(fp);
        }
        assert_eq!(r.distinct(), 500_002);
    }

    #[test]
    fn runs_find_a_repeat() {
        fn check<const W: usize>() {
            let fp = |k: u64| FpRuns::<W>::kept(fingerprint(&k.to_le_bytes()));
            let mut r = FpRuns::<W>::default();
            for k in 0..10_000u64 {
                r.push(fingerprint(&k.to_le_bytes()));
            }
            assert!(r.repeats(4).is_empty());
            r.push(fingerprint(&77u64.to_le_bytes()));
            assert_eq!(r.repeats(4), [fp(77)]);
            // Runs big enough for the buckets' hash tables, with a zero fingerprint too.
            let mut r = FpRuns::<W>::default();
            for k in 0..600_000u64 {
                r.push(fingerprint(&k.to_le_bytes()));
            }
            r.push(0);
            assert!(r.repeats(4).is_empty());
            r.push(fingerprint(&599_999u64.to_le_bytes()));
            assert_eq!(r.repeats(4), [fp(599_999)]);
            r.push(0);
            assert_eq!(r.repeats(1), [0]);
            let both = r.repeats(4);
            assert_eq!(both.len(), 2);
            assert!(both.contains(&0) && both.contains(&fp(599_999)));
            // Kept bits only: fingerprints that differ in their lowest byte are one.
            let mut r = FpRuns::<W>::default();
            r.push(0x1234_5678_9abc_de01);
            r.push(0x1234_5678_9abc_de02);
            assert_eq!(r.repeats(4).is_empty(), W >= 7);
        }
        check::<7>();
        check::<6>();
    }

    #[test]
    fn runs_count_what_is_pushed_later_as_what_is_pushed_now() {
        let fp = |k: u64| fingerprint(&k.to_le_bytes());
        let mut r = FpRuns::<6>::default();
        // Not a whole number of the batches stored together: the rest is still held.
        for k in 0..10_007u64 {
            assert!(r.push_later(fp(k)));
        }
        r.push(fp(3));
        assert_eq!(r.repeats(4), [FpRuns::<6>::kept(fp(3))]);
        for k in [10_006, 10_007] {
            r.push_later(fp(k));
        }
        let both = r.repeats(4);
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both.contains(&FpRuns::<6>::kept(fp(10_006))));
        let mut r = FpRuns::<7>::default();
        for k in 0..33u64 {
            r.push_later(fp(k % 20));
        }
        assert_eq!(r.distinct(), 20);
    }

    #[test]
    fn a_run_filled_to_its_blocks_edges_keeps_every_fingerprint() {
        fn check<const W: usize>() {
            let per = FpRuns::<W>::PER_BLOCK;
            // One run (top byte 0x42): its place in a block is a pointer pair, its length
            // and the tag pass's reads are worked out from it.
            let fp = |k: u64| (fingerprint(&k.to_le_bytes()) & !(0xff << 56)) | (0x42 << 56);
            for n in [per - 1, per, per + 1, 2 * per, 2 * per + 1] {
                let mut r = FpRuns::<W>::default();
                for k in 0..n as u64 {
                    r.push_later(fp(k));
                }
                r.store_later();
                assert_eq!(r.run_len(0x42), n, "W {W}, {n} fingerprints");
                assert_eq!(r.len, n);
                assert!(r.repeats(4).is_empty(), "W {W}, {n} fingerprints");
                let last = fp(n as u64 - 1);
                r.push(last);
                assert_eq!(r.repeats(4), [FpRuns::<W>::kept(last)], "W {W}, {n}");
                r.push(fp(0));
                assert_eq!(r.repeats(4).len(), 2, "W {W}, {n}");
            }
        }
        check::<7>();
        check::<6>();
    }

    #[test]
    fn runs_appended_hold_what_one_run_of_the_same_pushes_holds() {
        fn check<const W: usize>() {
            let per = FpRuns::<W>::PER_BLOCK as u64;
            // All in run 0x42 (blocks part-filled where they meet) and spread over runs;
            // a part with nothing, with part of a block, with blocks and more.
            let one = |k: u64| (fingerprint(&k.to_le_bytes()) & !(0xff << 56)) | (0x42 << 56);
            let spread = |k: u64| fingerprint(&k.to_le_bytes());
            for fp in [&one as &dyn Fn(u64) -> u64, &spread] {
                for cut in [0, 1, per - 1, per, per + 3, 3 * per + 7, 5_000] {
                    let n = 5_000 + 2 * per;
                    let mut whole = FpRuns::<W>::default();
                    let (mut a, mut b) = (FpRuns::<W>::default(), FpRuns::<W>::default());
                    for k in 0..n {
                        whole.push_later(fp(k));
                        if k < cut {
                            a.push_later(fp(k))
                        } else {
                            b.push_later(fp(k))
                        };
                    }
                    a.append(b);
                    assert_eq!(a.len(), n as usize, "W {W}, cut {cut}");
                    assert_eq!(a.distinct(), n, "W {W}, cut {cut}");
                    assert!(a.repeats(4).is_empty());
                    // A repeat across the parts, then one pushed after them, in order.
                    let mut c = FpRuns::<W>::default();
                    c.push(fp(cut.saturating_sub(1)));
                    a.append(c);
                    whole.push(fp(cut.saturating_sub(1)));
                    assert_eq!(a.repeats(4), whole.repeats(4), "W {W}, cut {cut}");
                    a.push(fp(n - 1));
                    whole.push(fp(n - 1));
                    assert_eq!(a.repeats(4), whole.repeats(4), "W {W}, cut {cut}");
                    assert_eq!(a.repeats(4).len(), 2);
                }
            }
        }
        check::<7>();
        check::<6>();
    }

    #[test]
    fn repeats_looked_for_on_two_cores_are_those_of_one() {
        let fp = |k: u64| fingerprint(&k.to_le_bytes());
        let mut r = FpRuns::<6>::default();
        for k in 0..SHARED_FROM as u64 + 1000 {
            r.push_later(fp(k));
        }
        assert!(r.repeats_on(8, 2).is_empty());
        // Repeats in runs of both halves (top bytes below and above 0x80), more than `max`.
        let again: Vec<u64> = (0..40).map(|k| k * 25_013).collect();
        for &k in &again {
            r.push(fp(k));
        }
        let one = r.repeats_on(8, 1);
        assert_eq!(one.len(), 8);
        let all = r.repeats_on(64, 1);
        for cores in [2, 3, 5, 300] {
            assert_eq!(r.repeats_on(8, cores), one, "{cores} cores");
            assert_eq!(r.repeats_on(64, cores), all, "{cores} cores");
        }
        assert_eq!(all.len(), again.len());
        assert!(all.iter().any(|f| f >> 63 == 0) && all.iter().any(|f| f >> 63 == 1));
    }

    #[test]
    fn runs_tell_apart_fingerprints_that_share_a_tag() {
        fn check<const W: usize>() {
            // Bits 24-55 (the tag) alike, in one run big enough for the tag pass (512
            // buckets, indexed by bits 8-16): `b` in another bucket, `c` in `a`'s, a
            // candidate the whole fingerprints tell apart. Not repeats, each counted.
            let a = 0x4200_1234_5678_9a00u64;
            let b = a ^ 0x0000_0000_0011_2200;
            let c = a ^ 0x0000_0000_00f0_0000;
            let mut r = FpRuns::<W>::default();
            for k in 0..1000u64 {
                r.push((fingerprint(&k.to_le_bytes()) & !(0xff << 56)) | (0x42 << 56));
            }
            for fp in [a, b, c] {
                r.push(fp);
            }
            assert!(r.repeats(4).is_empty());
            assert_eq!(r.distinct(), 1003);
            r.push(c);
            assert_eq!(r.repeats(4), [FpRuns::<W>::kept(c)]);
            assert_eq!(r.distinct(), 1003);
        }
        check::<7>();
        check::<6>();
    }
}
