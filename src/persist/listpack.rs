//! Listpack blobs (hashes, sets, sorted sets, list nodes and stream nodes since Redis 7):
//! header, every entry's encoding and back-length, element count and terminator.
//!
//! A load without `sanitize-dump-payload yes` checks only a listpack's total bytes and
//! terminator (`lpValidateIntegrity` with `deep` 0), and takes the header's element count
//! as the size (`lpLength`). So damage between them loads, and the key is there, broken:
//! a later read that walks to it stops the server (`lpNext` checks each entry it reaches
//! whole). [`validate_shallow`] says what that damage is, for the caller to warn about.
//! The load does walk the entries in three cases, which stay faults (callers): a stream
//! node's first entry (`lpFirst`), a header count of 65535 ("count them": `lpLength`
//! walks), and a hash, sorted set or set over its `*-max-listpack-entries`, converted.

use super::error::{BlobFault, BlobResult};

const HEADER: usize = 6;
const EOF: u8 = 0xff;
/// Header element count meaning "too many to count here".
const COUNT_UNKNOWN: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LpEntry<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl LpEntry<'_> {
    pub fn int(self) -> Option<i64> {
        match self {
            LpEntry::Int(v) => Some(v),
            // Redis may store small numbers as strings too; accept canonical decimals.
            LpEntry::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }
}

/// Walks a listpack entry by entry, checking each as it goes.
pub struct Entries<'a> {
    lp: &'a [u8],
    at: usize,
    seen: u32,
    /// Where the first wrong back-length is.
    bad_back: Option<usize>,
    /// The header's element count, when it is not the number of entries.
    bad_count: Option<u16>,
}

/// Checks the header and returns a walker over the entries.
pub fn entries(lp: &[u8]) -> BlobResult<Entries<'_>> {
    if lp.len() < HEADER + 1 {
        return Err(BlobFault::new(0, "a listpack of at least 7 bytes"));
    }
    let total = u32::from_le_bytes([lp[0], lp[1], lp[2], lp[3]]) as usize;
    if total != lp.len() {
        return Err(BlobFault::new(
            0,
            format!(
                "listpack total-bytes {} equal to its length {}",
                total,
                lp.len()
            ),
        ));
    }
    if lp[lp.len() - 1] != EOF {
        return Err(BlobFault::new(lp.len() - 1, "listpack terminator 0xff"));
    }
    Ok(Entries {
        lp,
        at: HEADER,
        seen: 0,
        bad_back: None,
        bad_count: None,
    })
}

impl<'a> Entries<'a> {
    /// Offset of the next entry within the blob.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// The offset of the first entry so far whose back-length is not its length.
    pub fn bad_back(&self) -> Option<usize> {
        self.bad_back
    }

    /// The header's element count once the walk reached the terminator, when it is not
    /// the number of entries (the server loads it: see the module's note).
    pub fn bad_count(&self) -> Option<u16> {
        self.bad_count
    }

    /// The next entry, `None` at the terminator (noting a wrong element count).
    pub fn next_entry(&mut self) -> BlobResult<Option<LpEntry<'a>>> {
        let lp = self.lp;
        let start = self.at;
        let b = lp[start];
        if b == EOF {
            if start != lp.len() - 1 {
                return Err(BlobFault::new(
                    start,
                    "a listpack entry, not 0xff before the end",
                ));
            }
            let declared = u16::from_le_bytes([lp[4], lp[5]]);
            if declared != COUNT_UNKNOWN && u32::from(declared) != self.seen {
                self.bad_count = Some(declared);
            }
            return Ok(None);
        }
        // Bytes available for this entry, excluding the terminator.
        let room = lp.len() - 1 - start;
        let need = |n: usize| -> BlobResult<()> {
            if n > room {
                Err(BlobFault::new(
                    start,
                    "a listpack entry that ends before the terminator",
                ))
            } else {
                Ok(())
            }
        };
        let (entry, len) = match b {
            0x00..=0x7f => (LpEntry::Int(i64::from(b)), 1),
            0x80..=0xbf => {
                let n = usize::from(b & 0x3f);
                need(1 + n)?;
                (LpEntry::Str(&lp[start + 1..start + 1 + n]), 1 + n)
            }
            0xc0..=0xdf => {
                need(2)?;
                let u = (i64::from(b & 0x1f) << 8) | i64::from(lp[start + 1]);
                let v = if u >= 1 << 12 { u - (1 << 13) } else { u };
                (LpEntry::Int(v), 2)
            }
            0xe0..=0xef => {
                need(2)?;
                let n = (usize::from(b & 0x0f) << 8) | usize::from(lp[start + 1]);
                need(2 + n)?;
                (LpEntry::Str(&lp[start + 2..start + 2 + n]), 2 + n)
            }
            0xf0 => {
                need(5)?;
                let n = u32::from_le_bytes([
                    lp[start + 1],
                    lp[start + 2],
                    lp[start + 3],
                    lp[start + 4],
                ]) as usize;
                need(5usize.saturating_add(n))?;
                (LpEntry::Str(&lp[start + 5..start + 5 + n]), 5 + n)
            }
            0xf1 => {
                need(3)?;
                let v = i16::from_le_bytes([lp[start + 1], lp[start + 2]]);
                (LpEntry::Int(i64::from(v)), 3)
            }
            0xf2 => {
                need(4)?;
                let u = i32::from_le_bytes([0, lp[start + 1], lp[start + 2], lp[start + 3]]);
                (LpEntry::Int(i64::from(u >> 8)), 4)
            }
            0xf3 => {
                need(5)?;
                let mut w = [0u8; 4];
                w.copy_from_slice(&lp[start + 1..start + 5]);
                (LpEntry::Int(i64::from(i32::from_le_bytes(w))), 5)
            }
            0xf4 => {
                need(9)?;
                let mut w = [0u8; 8];
                w.copy_from_slice(&lp[start + 1..start + 9]);
                (LpEntry::Int(i64::from_le_bytes(w)), 9)
            }
            _ => {
                return Err(BlobFault::new(
                    start,
                    format!("a listpack entry encoding, not 0x{b:02x}"),
                ))
            }
        };
        let back = backlen_size(len);
        need(len + back)?;
        let back_at = start + len;
        // Most entries are short: a one-byte back-length is the length itself.
        let back_ok = if back == 1 {
            lp[back_at] == len as u8
        } else {
            decode_backlen(&lp[back_at..back_at + back]) == Some(len as u64)
        };
        if !back_ok && self.seen == 0 {
            // The server's lpFirst checks the first entry whole, back-length included, and
            // the load calls it (stream nodes, list nodes, conversions): it stops there.
            return Err(BlobFault::new(
                back_at,
                "the first listpack entry's back-length to be its length (the server checks \
                 the first entry on load)",
            ));
        }
        if !back_ok && self.bad_back.is_none() {
            self.bad_back = Some(back_at);
        }
        self.at = back_at + back;
        self.seen += 1;
        Ok(Some(entry))
    }
}

fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// Decodes a back-length stored over exactly `bytes`: read from its last byte leftwards,
/// seven bits a byte, every byte but the leftmost flagged with the high bit.
fn decode_backlen(bytes: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().rev().enumerate() {
        let last = i == bytes.len() - 1;
        if (b & 0x80 != 0) == last {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
    }
    Some(v)
}

/// Checks a listpack whose entries come in tuples of `tuple` (2 for hash and sorted-set
/// pairs, 3 for hash fields with TTLs) and returns the number of entries.
pub fn validate(lp: &[u8], tuple: u32) -> BlobResult<u32> {
    validate_noting(lp, tuple).map(|n| n.entries)
}

/// What [`validate_noting`] found: the entries, and what the server loads without checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Noted {
    pub entries: u32,
    /// Offset of the first wrong back-length.
    pub bad_back: Option<usize>,
    /// The header's element count, when it is not `entries`.
    pub bad_count: Option<u16>,
}

/// [`validate`], also saying where the first wrong back-length is and whether the header's
/// element count is wrong (see the module's note: the server loads both).
pub fn validate_noting(lp: &[u8], tuple: u32) -> BlobResult<Noted> {
    noting(lp, tuple, true)
}

/// [`validate_noting`], the short entries first walked in a tight loop when `fast` (the
/// same answer: tests compare the two).
fn noting(lp: &[u8], tuple: u32, fast: bool) -> BlobResult<Noted> {
    let mut it = entries(lp)?;
    if fast {
        skip_short_entries(&mut it);
    }
    let mut n = it.seen;
    while it.next_entry()?.is_some() {
        n += 1;
    }
    if !n.is_multiple_of(tuple) {
        return Err(BlobFault::new(
            4,
            format!("a listpack of {tuple}-entry tuples, not {n} entries"),
        ));
    }
    Ok(Noted {
        entries: n,
        bad_back: it.bad_back,
        bad_count: it.bad_count,
    })
}

/// A listpack as a load without sanitization takes it: [`entries`] checks what the load
/// checks (total bytes, terminator; a fault there is the `Err`), the entries are walked
/// up to the first damage the load does not see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shallow {
    /// The entries walked: all of them when there is no damage, or only `Odd` damage.
    pub entries: u32,
    /// The header's element count (`u16::MAX`: too many to count there).
    pub declared: u16,
    pub damage: Option<Damage>,
}

/// Damage inside a listpack that a load without sanitization does not see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub fault: BlobFault,
    /// Every entry is whole but they are not whole tuples (a field without its value):
    /// a walk that only counts entries (`lpLength`) passes it.
    pub odd: bool,
}

impl Shallow {
    /// The header's count meant "count them": the load walks every entry (`lpLength`).
    pub fn count_unknown(&self) -> bool {
        self.declared == COUNT_UNKNOWN
    }

    /// The entries the server takes it to hold, in whole tuples: the header's count, or
    /// the entries walked when the header does not say.
    pub fn server_entries(&self, tuple: u32) -> u32 {
        let n = if self.count_unknown() {
            self.entries
        } else {
            u32::from(self.declared)
        };
        n / tuple * tuple
    }
}

/// See [`Shallow`]: the first damage is the earliest of a wrong back-length, an entry
/// that does not parse, and (all entries whole) entries that are not whole tuples.
pub fn validate_shallow(lp: &[u8], tuple: u32) -> BlobResult<Shallow> {
    shallow(lp, tuple, true)
}

/// [`validate_shallow`], the short entries first walked in a tight loop when `fast` (the
/// same answer: tests compare the two).
fn shallow(lp: &[u8], tuple: u32, fast: bool) -> BlobResult<Shallow> {
    let mut it = entries(lp)?;
    if fast {
        skip_short_entries(&mut it);
    }
    let mut n = it.seen;
    let broken = loop {
        match it.next_entry() {
            Ok(Some(_)) => n += 1,
            Ok(None) => break None,
            Err(f) => break Some(f),
        }
    };
    let bad_back = it.bad_back.map(|at| {
        BlobFault::new(
            at,
            "a listpack entry back-length that is its entry's length",
        )
    });
    let damage = match bad_back.or(broken) {
        Some(fault) => Some(Damage { fault, odd: false }),
        None if !n.is_multiple_of(tuple) => Some(Damage {
            fault: BlobFault::new(
                4,
                format!("a listpack of {tuple}-entry tuples, not {n} entries"),
            ),
            odd: true,
        }),
        None => None,
    };
    Ok(Shallow {
        entries: n,
        declared: u16::from_le_bytes([lp[4], lp[5]]),
        damage,
    })
}

/// Walks the entries most listpacks are made of (7- and 13-bit integers, strings under
/// 64 bytes: one-byte back-lengths) in a tight loop, stopping before anything else or any
/// fault, which `next_entry` then checks and places.
///
/// From both ends at once: forwards, each entry's encoding then its back-length;
/// backwards, each back-length then the encoding where it says the entry starts. Each walk
/// is a chain of loads, each waiting for the one before; two chains that do not wait on
/// each other take half the time of one. Where they meet exactly, the entries walked
/// backwards are those a forward walk would have found (each encoding gives the length its
/// back-length holds, and they tile the bytes up to the terminator); anywhere else, or at
/// anything else, only the forward walk's entries are taken.
fn skip_short_entries(it: &mut Entries<'_>) {
    let lp = it.lp;
    let last = lp.len() - 1;
    // Forwards: the next entry's start; backwards: where the entries walked so far start.
    let (mut at, mut seen) = (it.at, it.seen);
    let (mut end, mut behind) = (last, 0);
    while at < end {
        let Some(len) = short_entry_len(lp[at]) else {
            break;
        };
        let back_at = at + len;
        if back_at >= end || lp[back_at] != len as u8 {
            break;
        }
        at = back_at + 1;
        seen += 1;
        if at >= end {
            break;
        }
        let len = usize::from(lp[end - 1]);
        match (end - 1).checked_sub(len) {
            Some(start) if start >= at && short_entry_len(lp[start]) == Some(len) => {
                end = start;
                behind += 1;
            }
            _ => break,
        }
    }
    (it.at, it.seen) = match at == end {
        true => (last, seen + behind),
        false => (at, seen),
    };
}

/// The bytes before the back-length of an entry of a short encoding: a 7-bit integer, a
/// string under 64 bytes, a 13-bit integer.
#[inline(always)]
fn short_entry_len(b: u8) -> Option<usize> {
    match b {
        0x00..=0x7f => Some(1),
        0x80..=0xbf => Some(1 + usize::from(b & 0x3f)),
        0xc0..=0xdf => Some(2),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a listpack the way Redis encodes one (tests only).
    pub fn build(items: &[LpEntry]) -> Vec<u8> {
        let mut body = Vec::new();
        for item in items {
            let mut e = Vec::new();
            match *item {
                LpEntry::Int(v) if (0..=127).contains(&v) => e.push(v as u8),
                LpEntry::Int(v) if (-4096..4096).contains(&v) => {
                    let u = (v as u16) & 0x1fff;
                    e.extend_from_slice(&[0xc0 | (u >> 8) as u8, u as u8]);
                }
                LpEntry::Int(v) => {
                    e.push(0xf4);
                    e.extend_from_slice(&v.to_le_bytes());
                }
                LpEntry::Str(s) if s.len() < 64 => {
                    e.push(0x80 | s.len() as u8);
                    e.extend_from_slice(s);
                }
                LpEntry::Str(s) if s.len() < 4096 => {
                    e.extend_from_slice(&[0xe0 | (s.len() >> 8) as u8, s.len() as u8]);
                    e.extend_from_slice(s);
                }
                LpEntry::Str(s) => {
                    e.push(0xf0);
                    e.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    e.extend_from_slice(s);
                }
            }
            let l = e.len();
            match backlen_size(l) {
                1 => e.push(l as u8),
                2 => e.extend_from_slice(&[(l >> 7) as u8, (l & 127) as u8 | 128]),
                _ => e.extend_from_slice(&[
                    (l >> 14) as u8,
                    ((l >> 7) & 127) as u8 | 128,
                    (l & 127) as u8 | 128,
                ]),
            }
            body.extend_from_slice(&e);
        }
        let total = (HEADER + body.len() + 1) as u32;
        let mut lp = total.to_le_bytes().to_vec();
        lp.extend_from_slice(&(items.len() as u16).to_le_bytes());
        lp.extend_from_slice(&body);
        lp.push(EOF);
        lp
    }

    /// The walk from both ends gives what a walk entry by entry gives, on listpacks of
    /// short and long entries with bytes changed, inserted and removed anywhere (the
    /// total and terminator kept right, so the walks go on past the change).
    #[test]
    fn the_fast_walk_finds_what_the_careful_walk_finds() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let long = [b'y'; 200];
        let (mut fast_met, mut damaged) = (0, 0);
        for round in 0..20_000 {
            let mut items = Vec::new();
            for _ in 0..next(12) {
                items.push(match next(8) {
                    0 => LpEntry::Int(next(128) as i64),
                    1 => LpEntry::Int(next(8000) as i64 - 4000),
                    2 if round % 4 == 0 => LpEntry::Str(&long[..64 + next(100) as usize]),
                    3 if round % 4 == 0 => LpEntry::Int(1 << 40),
                    _ => LpEntry::Str(&long[..next(64) as usize]),
                });
            }
            let mut lp = build(&items);
            match next(4) {
                0 => {}
                k => {
                    let at = HEADER + next((lp.len() - HEADER) as u64) as usize;
                    match k {
                        1 => lp[at] = next(256) as u8,
                        2 => lp.insert(at, next(256) as u8),
                        _ if at < lp.len() - 1 => {
                            lp.remove(at);
                        }
                        _ => {}
                    }
                    let n = lp.len();
                    lp[..4].copy_from_slice(&(n as u32).to_le_bytes());
                    lp[n - 1] = EOF;
                }
            }
            for tuple in [1, 2] {
                let fast = shallow(&lp, tuple, true);
                assert_eq!(fast, shallow(&lp, tuple, false), "round {round}: {lp:?}");
                assert_eq!(
                    noting(&lp, tuple, true),
                    noting(&lp, tuple, false),
                    "round {round}"
                );
                damaged += usize::from(matches!(&fast, Ok(s) if s.damage.is_some()));
            }
            let mut it = entries(&lp).unwrap();
            skip_short_entries(&mut it);
            fast_met += usize::from(it.offset() == lp.len() - 1 && it.seen > 1);
        }
        assert!(fast_met > 5_000 && damaged > 2_000, "{fast_met} {damaged}");
    }

    #[test]
    fn round_trips_every_encoding() {
        let big = vec![b'x'; 5000];
        let items = [
            LpEntry::Int(5),
            LpEntry::Int(-3),
            LpEntry::Int(4000),
            LpEntry::Int(1 << 40),
            LpEntry::Str(b"field"),
            LpEntry::Str(&[b'y'; 300]),
            LpEntry::Str(&big),
        ];
        let lp = build(&items);
        let mut it = entries(&lp).unwrap();
        for want in items {
            assert_eq!(it.next_entry().unwrap(), Some(want));
        }
        assert_eq!(it.next_entry().unwrap(), None);
        assert_eq!(validate(&lp, 1).unwrap(), 7);
        assert!(validate(&lp, 2).is_err());
    }

    #[test]
    fn finds_damage() {
        let lp = build(&[LpEntry::Str(b"abc"), LpEntry::Int(7)]);
        let mut bad = lp.clone();
        bad[0] += 1;
        assert_eq!(validate(&bad, 1).unwrap_err().at, 0);
        let noted = |entries, bad_back, bad_count| Noted {
            entries,
            bad_back,
            bad_count,
        };
        let mut bad = lp.clone();
        bad[4] = 3; // element count: loads (the server takes it as the size), noted
        assert_eq!(validate_noting(&bad, 1).unwrap(), noted(2, None, Some(3)));
        bad[4] = 0xff;
        bad[5] = 0xff; // "count unknown": the server counts the entries
        assert_eq!(validate_noting(&bad, 1).unwrap(), noted(2, None, None));
        let mut bad = lp.clone();
        bad[12] = 9; // back-length of 7: loads, noted
        assert_eq!(validate_noting(&bad, 1).unwrap(), noted(2, Some(12), None));
        let mut bad = lp.clone();
        bad[10] = 9; // back-length of "abc", the first entry: the server's lpFirst asserts
        assert_eq!(validate(&bad, 1).unwrap_err().at, 10);
        assert_eq!(validate_noting(&lp, 1).unwrap(), noted(2, None, None));
        let mut bad = lp.clone();
        bad[6] = 0x8f; // string longer than the blob
        assert!(validate(&bad, 1).is_err());
        let mut bad = lp;
        bad[6] = 0xf7;
        assert_eq!(validate(&bad, 1).unwrap_err().at, 6);
    }
}
