//! Zipmap blobs (hashes written by Redis 2.4 and older): lengths, free space, pair count
//! and terminator.

use super::error::{BlobFault, BlobResult};

const END: u8 = 0xff;
const BIG_LEN: u8 = 254;

/// Checks a zipmap and returns its number of field/value pairs.
pub fn validate(zm: &[u8]) -> BlobResult<u32> {
    if zm.len() < 2 {
        return Err(BlobFault::new(0, "a zipmap of at least 2 bytes"));
    }
    let declared = zm[0];
    let mut at = 1usize;
    let mut pairs = 0u32;
    // Reads a length at `at`; `None` at the terminator.
    let read_len = |at: &mut usize| -> BlobResult<Option<usize>> {
        let start = *at;
        match zm.get(start) {
            None => Err(BlobFault::new(start, "a zipmap length before the end")),
            Some(&END) => Ok(None),
            Some(&BIG_LEN) => {
                let b = zm
                    .get(start + 1..start + 5)
                    .ok_or_else(|| BlobFault::new(start, "a 4-byte zipmap length"))?;
                *at = start + 5;
                Ok(Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize))
            }
            Some(&b) => {
                *at = start + 1;
                Ok(Some(usize::from(b)))
            }
        }
    };
    let skip = |at: &mut usize, n: usize, what: &str| -> BlobResult<()> {
        match at.checked_add(n).filter(|&e| e < zm.len()) {
            Some(e) => {
                *at = e;
                Ok(())
            }
            None => Err(BlobFault::new(
                *at,
                format!("a zipmap {what} inside the blob"),
            )),
        }
    };
    while let Some(klen) = read_len(&mut at)? {
        skip(&mut at, klen, "field")?;
        let start = at;
        let Some(vlen) = read_len(&mut at)? else {
            return Err(BlobFault::new(start, "a zipmap value length after a field"));
        };
        let free = usize::from(
            *zm.get(at)
                .ok_or_else(|| BlobFault::new(at, "a zipmap free-space byte"))?,
        );
        at += 1;
        skip(&mut at, vlen.saturating_add(free), "value")?;
        pairs += 1;
    }
    if at != zm.len() - 1 {
        return Err(BlobFault::new(at, "the zipmap terminator as the last byte"));
    }
    if declared < BIG_LEN && u32::from(declared) != pairs {
        return Err(BlobFault::new(
            0,
            format!("zipmap pair count {declared} to match its {pairs} pairs"),
        ));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pairs_and_terminator() {
        // {"foo" => "bar"} with one byte of free space, then {"a" => ""}.
        let zm = [
            2, 3, b'f', b'o', b'o', 3, 1, b'b', b'a', b'r', 0, 1, b'a', 0, 0, END,
        ];
        assert_eq!(validate(&zm).unwrap(), 2);
        let mut bad = zm;
        bad[0] = 3;
        assert_eq!(validate(&bad).unwrap_err().at, 0);
        let mut bad = zm;
        bad[5] = 9;
        assert!(validate(&bad).is_err());
        assert!(validate(&zm[..zm.len() - 1]).is_err());
    }
}
