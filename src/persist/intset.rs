//! Intset blobs (sets of integers): width and length; members out of order are only a
//! warning, as the server loads them.

use super::error::{BlobFault, BlobResult};

/// Checks an intset and returns its member count.
pub fn validate(is: &[u8]) -> BlobResult<u32> {
    if is.len() < 8 {
        return Err(BlobFault::new(0, "an intset header of 8 bytes"));
    }
    let width = u32::from_le_bytes([is[0], is[1], is[2], is[3]]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(BlobFault::new(
            0,
            format!("intset width 2, 4 or 8, not {width}"),
        ));
    }
    let count = u32::from_le_bytes([is[4], is[5], is[6], is[7]]);
    let body = &is[8..];
    if body.len() as u64 != u64::from(count) * width as u64 {
        return Err(BlobFault::new(
            4,
            format!(
                "intset of {count} members of {width} bytes in {} bytes",
                body.len()
            ),
        ));
    }
    if count == 0 {
        return Err(BlobFault::new(4, "an intset with at least one member"));
    }
    Ok(count)
}

/// An intset's members in order, each with its offset in the blob; none when its width is
/// not 2, 4 or 8 (see [`validate`]).
pub fn members(is: &[u8]) -> impl Iterator<Item = (usize, i64)> + '_ {
    let width = is
        .get(..4)
        .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize);
    let body = is.get(8..).filter(|_| matches!(width, 2 | 4 | 8));
    body.unwrap_or_default()
        .chunks_exact(width.max(1))
        .enumerate()
        .map(move |(i, m)| {
            let v = match *m {
                [a, b] => i64::from(i16::from_le_bytes([a, b])),
                [a, b, c, d] => i64::from(i32::from_le_bytes([a, b, c, d])),
                [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
                _ => unreachable!("a width of 2, 4 or 8"),
            };
            (8 + i * width, v)
        })
}

/// Where the first member not above the one before it is: the server loads such an
/// intset (it checks order only with `sanitize-dump-payload yes`), but its binary search
/// may then miss members.
pub fn disorder(is: &[u8]) -> Option<usize> {
    let mut prev: Option<i64> = None;
    for (at, v) in members(is) {
        if prev.is_some_and(|p| p >= v) {
            return Some(at);
        }
        prev = Some(v);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(width: u32, vals: &[i64]) -> Vec<u8> {
        let mut v = width.to_le_bytes().to_vec();
        v.extend_from_slice(&(vals.len() as u32).to_le_bytes());
        for x in vals {
            v.extend_from_slice(&x.to_le_bytes()[..width as usize]);
        }
        v
    }

    #[test]
    fn checks_width_length_and_order() {
        assert_eq!(validate(&build(2, &[-5, 1, 300])).unwrap(), 3);
        assert_eq!(validate(&build(8, &[1, 1 << 40])).unwrap(), 2);
        assert_eq!(validate(&build(4, &[3, 2])).unwrap(), 2);
        assert_eq!(disorder(&build(4, &[3, 2])), Some(12));
        assert_eq!(disorder(&build(4, &[2, 3])), None);
        assert_eq!(validate(&build(3, &[1])).unwrap_err().at, 0);
        let mut short = build(2, &[1, 2]);
        short.pop();
        assert_eq!(validate(&short).unwrap_err().at, 4);
    }
}
