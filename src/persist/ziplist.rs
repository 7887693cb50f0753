//! Ziplist blobs (lists, hashes and sorted sets written before Redis 7): header, tail
//! offset, each entry's prev-length and encoding, element count and terminator.

use super::error::{BlobFault, BlobResult};

const HEADER: usize = 10;
const END: u8 = 0xff;
const BIG_PREVLEN: u8 = 0xfe;

/// Checks a ziplist whose entries come in tuples of `tuple`; returns the entry count.
pub fn validate(zl: &[u8], tuple: u32) -> BlobResult<u32> {
    if zl.len() < HEADER + 1 {
        return Err(BlobFault::new(0, "a ziplist of at least 11 bytes"));
    }
    let le32 = |at: usize| u32::from_le_bytes([zl[at], zl[at + 1], zl[at + 2], zl[at + 3]]);
    let total = le32(0) as usize;
    if total != zl.len() {
        return Err(BlobFault::new(
            0,
            format!(
                "ziplist total-bytes {total} equal to its length {}",
                zl.len()
            ),
        ));
    }
    let tail = le32(4) as usize;
    let declared = u16::from_le_bytes([zl[8], zl[9]]);
    let end = zl.len() - 1;
    if zl[end] != END {
        return Err(BlobFault::new(end, "ziplist terminator 0xff"));
    }
    let mut at = HEADER;
    let mut prev_len = 0usize;
    let mut last_start = HEADER;
    let mut count = 0u32;
    while at < end {
        let start = at;
        let room = end - start;
        let short = || BlobFault::new(start, "a ziplist entry that ends before the terminator");
        // Previous entry's length.
        let (prevlen, p_size) = match zl[at] {
            END => {
                return Err(BlobFault::new(
                    at,
                    "a ziplist entry, not 0xff before the end",
                ))
            }
            BIG_PREVLEN => {
                if room < 5 {
                    return Err(short());
                }
                (le32(at + 1) as usize, 5)
            }
            b => (usize::from(b), 1),
        };
        if prevlen != prev_len {
            return Err(BlobFault::new(
                at,
                format!("ziplist prev-length {prev_len}, not {prevlen}"),
            ));
        }
        let e_at = at + p_size;
        if e_at >= end {
            return Err(short());
        }
        let e = zl[e_at];
        let (h_size, d_size) = match e >> 6 {
            0 => (1, usize::from(e & 0x3f)),
            1 => {
                if e_at + 1 >= end {
                    return Err(short());
                }
                (2, (usize::from(e & 0x3f) << 8) | usize::from(zl[e_at + 1]))
            }
            2 => {
                if e_at + 4 >= end {
                    return Err(short());
                }
                let n =
                    u32::from_be_bytes([zl[e_at + 1], zl[e_at + 2], zl[e_at + 3], zl[e_at + 4]]);
                (5, n as usize)
            }
            _ => match e {
                0xc0 => (1, 2),
                0xd0 => (1, 4),
                0xe0 => (1, 8),
                0xf0 => (1, 3),
                0xfe => (1, 1),
                0xf1..=0xfd => (1, 0),
                _ => {
                    return Err(BlobFault::new(
                        e_at,
                        format!("a ziplist entry encoding, not 0x{e:02x}"),
                    ))
                }
            },
        };
        let len = p_size + h_size;
        let len = len
            .checked_add(d_size)
            .filter(|&l| l <= room)
            .ok_or_else(short)?;
        last_start = start;
        prev_len = len;
        at = start + len;
        count += 1;
    }
    if tail != last_start {
        return Err(BlobFault::new(
            4,
            format!("ziplist tail offset {last_start}, not {tail}"),
        ));
    }
    if declared != u16::MAX && u32::from(declared) != count {
        return Err(BlobFault::new(
            8,
            format!("ziplist entry count {declared} to match its {count} entries"),
        ));
    }
    if !count.is_multiple_of(tuple) {
        return Err(BlobFault::new(
            8,
            format!("a ziplist of {tuple}-entry tuples, not {count} entries"),
        ));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ziplist of short strings, as Redis lays one out.
    fn build(items: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        let mut tail = HEADER;
        for s in items {
            tail = HEADER + body.len();
            let mut e = vec![prev as u8, s.len() as u8];
            e.extend_from_slice(s);
            prev = e.len();
            body.extend_from_slice(&e);
        }
        let mut zl = ((HEADER + body.len() + 1) as u32).to_le_bytes().to_vec();
        zl.extend_from_slice(&(tail as u32).to_le_bytes());
        zl.extend_from_slice(&(items.len() as u16).to_le_bytes());
        zl.extend_from_slice(&body);
        zl.push(END);
        zl
    }

    #[test]
    fn accepts_a_good_ziplist_and_finds_damage() {
        let zl = build(&[b"a", b"bc", b"def"]);
        assert_eq!(validate(&zl, 1).unwrap(), 3);
        assert!(validate(&zl, 2).is_err());
        let empty = build(&[]);
        assert_eq!(validate(&empty, 2).unwrap(), 0);
        let mut bad = zl.clone();
        bad[4] += 1;
        assert_eq!(validate(&bad, 1).unwrap_err().at, 4);
        let mut bad = zl.clone();
        bad[HEADER + 3] = 9; // prev-length of the second entry
        assert_eq!(validate(&bad, 1).unwrap_err().at, HEADER + 3);
        let mut bad = zl;
        bad[HEADER + 1] = 0x3f; // first string runs past the end
        assert!(validate(&bad, 1).is_err());
    }
}
