//! Redis Cluster hash slots (CRC16/XMODEM of the key or of its `{hash tag}`), and the
//! check of a file's keys against the slot range its shard owns.

use crc::{Crc, CRC_16_XMODEM};

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

static CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// Examples of keys outside the range kept per file.
const EXAMPLES: usize = 5;
/// Longest key shown in an example.
const EXAMPLE_LEN: usize = 64;

/// The hash slot of a key; a non-empty `{...}` section (the first `{` and the first `}`
/// after it) is hashed instead of the whole key, as Redis Cluster does.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    CRC16.checksum(tagged) & (SLOT_COUNT - 1)
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
