//! Redis Cluster hash slots (CRC16/XMODEM of the key or of its `{hash tag}`), and the
//! check of a file's keys against the slot range its shard owns.

use super::fp_set::{fingerprint, FpSet};
use super::rdb::KeyVisitor;
use serde::{Deserialize, Serialize};

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// Inclusive hash-slot range `start..=end`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
}

impl SlotRange {
    pub const ALL: SlotRange = SlotRange {
        start: 0,
        end: SLOT_COUNT - 1,
    };

    pub fn contains(&self, slot: u16) -> bool {
        (self.start..=self.end).contains(&slot)
    }
}

impl std::fmt::Display for SlotRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// CRC16/XMODEM (polynomial 0x1021, no reflection, initial 0) tables for eight bytes a
/// step: `TABLES[k][b]` is the CRC of byte `b` followed by `k` zero bytes. A digest takes
/// every key's slot, and keys are short: a byte at a time, each step waits on the last
/// (some 8% of a digest's CPU went there); eight at a time, the lookups run side by side.
static TABLES: [[u16; 256]; 8] = {
    let mut t = [[0u16; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = (b as u16) << 8;
        let mut i = 0;
        while i < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            i += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            b += 1;
        }
        k += 1;
    }
    t
};

/// CRC16/XMODEM of `data`, as Redis Cluster hashes keys.
fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let t = &TABLES;
        let hi = (crc >> 8) as u8 ^ c[0];
        let lo = crc as u8 ^ c[1];
        crc = t[7][usize::from(hi)]
            ^ t[6][usize::from(lo)]
            ^ t[5][usize::from(c[2])]
            ^ t[4][usize::from(c[3])]
            ^ t[3][usize::from(c[4])]
            ^ t[2][usize::from(c[5])]
            ^ t[1][usize::from(c[6])]
            ^ t[0][usize::from(c[7])];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ TABLES[0][usize::from((crc >> 8) as u8 ^ b)];
    }
    crc
}

/// Examples of keys outside the range kept per file.
const EXAMPLES: usize = 5;
/// Longest key shown in an example.
const EXAMPLE_LEN: usize = 64;

/// The hash slot of a key; a non-empty `{...}` section (the first `{` and the first `}`
/// after it) is hashed instead of the whole key, as Redis Cluster does.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = memchr::memchr(b'{', key)
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = memchr::memchr(b'}', rest)?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(tagged) & (SLOT_COUNT - 1)
}

/// Counts the keys whose slot falls outside `range`, keeping a few examples.
pub(crate) struct SlotCheck {
    pub range: SlotRange,
    pub outside: u64,
    pub examples: Vec<String>,
    /// Fingerprints of the keys counted outside, for a file whose keys may be named again
    /// ([`SlotCheck::named_again`]: an AOF, where a key its base holds and an incremental
    /// command names again is one key). `None`: each key comes once (an RDB), and nothing
    /// is kept. A file with no key outside keeps nothing either.
    counted: Option<FpSet>,
    /// More keys outside than the reader tracks ([`super::fp_set::MAX_KEYS`]): one named again past
    /// them may have counted twice.
    pub full: bool,
}

impl SlotCheck {
    /// The check of a file whose keys each come once (an RDB).
    pub fn new(range: SlotRange) -> Self {
        SlotCheck {
            range,
            outside: 0,
            examples: Vec::new(),
            counted: None,
            full: false,
        }
    }

    /// The check of a file whose keys may be named again (an AOF): every key counted
    /// outside is remembered (8-21 bytes each, as [`FpSet`] documents, up to
    /// [`super::fp_set::MAX_KEYS`]), so that it counts once however many come before it.
    pub fn named_again(range: SlotRange) -> Self {
        SlotCheck {
            counted: Some(FpSet::default()),
            ..SlotCheck::new(range)
        }
    }

    /// A key a file holds (an RDB's, an AOF base's): the same name in two databases is
    /// two keys.
    pub fn check(&mut self, key: &[u8]) {
        self.count(key, false);
    }

    /// A key an AOF's incremental command names (once a key: the caller asks for each the
    /// first time): not counted again when it was counted before, as a base's key.
    pub fn check_named(&mut self, key: &[u8]) {
        self.count(key, true);
    }

    fn count(&mut self, key: &[u8], named: bool) {
        let slot = key_slot(key);
        if self.range.contains(slot) {
            return;
        }
        if let Some(counted) = &mut self.counted {
            let fp = fingerprint(key);
            match counted.insert(fp) {
                Some(false) if named => return,
                Some(_) => {}
                None => self.full = true,
            }
        }
        self.outside += 1;
        if self.examples.len() < EXAMPLES {
            let shown = String::from_utf8_lossy(&key[..key.len().min(EXAMPLE_LEN)]);
            self.examples.push(format!("{shown} (slot {slot})"));
        }
    }
}

impl KeyVisitor for SlotCheck {
    fn key(&mut self, _db: u32, key: &[u8], _expire_ms: Option<i64>) {
        self.check(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight bytes a step give what one bit at a time gives, at every length and offset.
    #[test]
    fn crc16_eight_bytes_a_step_is_crc16_a_bit_at_a_time() {
        fn bitwise(data: &[u8]) -> u16 {
            let mut crc = 0u16;
            for &b in data {
                crc ^= u16::from(b) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        assert_eq!(
            crc16(b"123456789"),
            0x31c3,
            "the check value of CRC-16/XMODEM"
        );
        let data: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for from in 0..9 {
            for to in from..data.len() {
                assert_eq!(
                    crc16(&data[from..to]),
                    bitwise(&data[from..to]),
                    "{from}..{to}"
                );
            }
        }
    }

    #[test]
    fn matches_redis_cluster_keyslot() {
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn a_key_named_again_counts_once_however_many_came_before() {
        let range = SlotRange { start: 0, end: 0 };
        let keys: Vec<String> = (0..70_000).map(|i| format!("k{i}")).collect();
        let mut c = SlotCheck::named_again(range);
        for k in &keys {
            c.check(k.as_bytes());
        }
        let held = c.outside;
        assert!(held > 1 << 16, "{held}");
        for k in keys.iter().rev() {
            c.check_named(k.as_bytes());
        }
        assert_eq!(c.outside, held);
        assert!(!c.full);
        c.check_named(b"fresh");
        assert_eq!(c.outside, held + 1);
        // An RDB's keys come once each: counted as they come, nothing remembered.
        let mut rdb = SlotCheck::new(range);
        rdb.check(b"foo");
        rdb.check(b"foo");
        assert_eq!(rdb.outside, 2);
        assert!(rdb.counted.is_none());
    }

    #[test]
    fn counts_keys_outside_the_range() {
        let mut c = SlotCheck::new(SlotRange {
            start: 0,
            end: 8191,
        });
        c.check(b"foo");
        c.check(b"bar");
        assert_eq!(c.outside, 1);
        assert_eq!(c.examples, ["foo (slot 12182)"]);
    }
}
