//! LZF decompression straight from the file buffer, checking that the data decodes to
//! exactly the length the RDB declared.
//!
//! A value that is only being validated is not decoded at all: whether LZF data is valid
//! (no run past the declared length, no back-reference before the start) depends only on
//! the lengths, so counting them is enough, and costs no memory whatever the size.

use std::io::Read;

use super::error::ParseError;
use super::source::Source;

/// Decodes `clen` compressed bytes from `src`, which must produce exactly `ulen` bytes.
/// With `keep`, `out` ends holding the whole output; otherwise only lengths are checked.
pub(crate) fn decompress<R: Read>(
    src: &mut Source<R>,
    clen: u64,
    ulen: u64,
    out: &mut Vec<u8>,
    keep: bool,
) -> Result<(), ParseError> {
    src.check_len(clen, "compressed data")?;
    if !keep {
        out.clear();
        return check_lengths(src, clen, ulen);
    }
    // Fast path: the whole input buffered, decoded in one go into an output of the
    // declared size.
    let b = src.buffered();
    if clen <= b.len() as u64 && decode_within(b, clen as usize, ulen as usize, out) {
        src.consume(clen as usize);
        return Ok(());
    }
    // Any fault: the careful walk below says where.
    out.clear();
    out.reserve(ulen as usize);
    let mut left = clen;
    let drained = 0u64;
    let mut want = 1usize;
    while left > 0 {
        let base = src.offset();
        let chunk = src.peek(want)?;
        let avail = (chunk.len() as u64).min(left) as usize;
        let input = &chunk[..avail];
        let mut ip = 0usize;
        let mut pending = 0usize;
        while ip < avail {
            let ctrl = input[ip];
            if ctrl < 32 {
                let n = usize::from(ctrl) + 1;
                if ip + 1 + n > avail {
                    pending = 1 + n;
                    break;
                }
                out.extend_from_slice(&input[ip + 1..ip + 1 + n]);
                ip += 1 + n;
            } else {
                let mut len = usize::from(ctrl >> 5);
                let hdr = if len == 7 { 3 } else { 2 };
                if ip + hdr > avail {
                    pending = hdr;
                    break;
                }
                if len == 7 {
                    len += usize::from(input[ip + 1]);
                }
                let dist = (usize::from(ctrl & 0x1f) << 8) + usize::from(input[ip + hdr - 1]) + 1;
                len += 2;
                if dist > out.len() {
                    return Err(ParseError::corrupt(
                        base + ip as u64,
                        format!(
                            "an LZF back-reference within the {} bytes decoded so far",
                            drained + out.len() as u64
                        ),
                    ));
                }
                let from = out.len() - dist;
                if dist >= len {
                    out.extend_from_within(from..from + len);
                } else {
                    for i in 0..len {
                        let b = out[from + i];
                        out.push(b);
                    }
                }
                ip += hdr;
            }
            if drained + out.len() as u64 > ulen {
                return Err(ParseError::corrupt(
                    base + ip as u64,
                    format!("LZF data that decompresses to {ulen} bytes, not more"),
                ));
            }
        }
        if ip == 0 && pending > 0 {
            if pending as u64 > left {
                return Err(ParseError::corrupt(
                    base,
                    "an LZF run that ends within the compressed data",
                ));
            }
            want = pending;
            continue;
        }
        want = 1;
        src.consume(ip);
        left -= ip as u64;
    }
    let produced = drained + out.len() as u64;
    if produced != ulen {
        return Err(ParseError::corrupt(
            src.offset(),
            format!("LZF data that decompresses to {ulen} bytes, not {produced}"),
        ));
    }
    Ok(())
}

/// Walks the LZF control bytes without producing output: the same verdict as decoding.
fn check_lengths<R: Read>(src: &mut Source<R>, clen: u64, ulen: u64) -> Result<(), ParseError> {
    // Fast path: the whole input buffered, walked in one go.
    let b = src.buffered();
    if clen <= b.len() as u64 {
        if let Some(produced) = lengths_in(&b[..clen as usize]) {
            if produced == ulen {
                src.consume(clen as usize);
                return Ok(());
            }
        }
        // Any fault: the careful walk below says where.
    }
    let mut left = clen;
    let mut produced = 0u64;
    let mut want = 1usize;
    while left > 0 {
        let base = src.offset();
        let chunk = src.peek(want)?;
        let avail = (chunk.len() as u64).min(left) as usize;
        let input = &chunk[..avail];
        let mut ip = 0usize;
        let mut pending = 0usize;
        while ip < avail {
            let ctrl = input[ip];
            if ctrl < 32 {
                let n = usize::from(ctrl) + 1;
                if ip + 1 + n > avail {
                    pending = 1 + n;
                    break;
                }
                produced += n as u64;
                ip += 1 + n;
            } else {
                let mut len = u64::from(ctrl >> 5);
                let hdr = if len == 7 { 3 } else { 2 };
                if ip + hdr > avail {
                    pending = hdr;
                    break;
                }
                if len == 7 {
                    len += u64::from(input[ip + 1]);
                }
                let dist = (u64::from(ctrl & 0x1f) << 8) + u64::from(input[ip + hdr - 1]) + 1;
                if dist > produced {
                    return Err(ParseError::corrupt(
                        base + ip as u64,
                        format!("an LZF back-reference within the {produced} bytes decoded so far"),
                    ));
                }
                produced += len + 2;
                ip += hdr;
            }
        }
        if produced > ulen {
            return Err(ParseError::corrupt(
                base + ip as u64,
                format!("LZF data that decompresses to {ulen} bytes, not more"),
            ));
        }
        if ip == 0 && pending > 0 {
            if pending as u64 > left {
                return Err(ParseError::corrupt(
                    base,
                    "an LZF run that ends within the compressed data",
                ));
            }
            want = pending;
            continue;
        }
        want = 1;
        src.consume(ip);
        left -= ip as u64;
    }
    if produced != ulen {
        return Err(ParseError::corrupt(
            src.offset(),
            format!("LZF data that decompresses to {ulen} bytes, not {produced}"),
        ));
    }
    Ok(())
}

/// Decodes a complete LZF input into `out`, which ends holding exactly `ulen` bytes;
/// `false` (with `out` in any state) when the input is not valid or decodes to another
/// length.
pub(crate) fn decode_all(input: &[u8], ulen: usize, out: &mut Vec<u8>) -> bool {
    decode_within(input, input.len(), ulen, out)
}

/// [`decode_all`] of `buf[..clen]`. The bytes after the input, when `buf` has them, may
/// be copied into `out` past what a literal run writes (and written over after): one
/// fixed-size copy where a run near the input's end needed an exact one.
fn decode_within(buf: &[u8], clen: usize, ulen: usize, out: &mut Vec<u8>) -> bool {
    // Room past the end for whole `SLACK`-byte copies: most runs are short, and a fixed
    // size copies in two vector moves where an exact one called `memmove`.
    const SLACK: usize = 32;
    let Some(input) = buf.get(..clen) else {
        return false;
    };
    // Every byte is written before it is read: what `out` held is only overwritten, and
    // zeroing it all first was some 2% of the check of the mixed RDB.
    if out.len() < ulen + SLACK {
        out.resize(ulen + SLACK, 0);
    }
    let o = &mut out[..ulen + SLACK];
    let mut ip = 0usize;
    let mut op = 0usize;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            if n > ulen - op || n > input.len() - ip {
                return false;
            }
            match buf.get(ip..ip + SLACK) {
                Some(lit) => o[op..op + SLACK].copy_from_slice(lit),
                None => o[op..op + n].copy_from_slice(&input[ip..ip + n]),
            }
            ip += n;
            op += n;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                let Some(&extra) = input.get(ip) else {
                    return false;
                };
                len += usize::from(extra);
                ip += 1;
            }
            let Some(&low) = input.get(ip) else {
                return false;
            };
            ip += 1;
            let dist = ((ctrl & 0x1f) << 8) + usize::from(low) + 1;
            len += 2;
            if dist > op || len > ulen - op {
                return false;
            }
            // From the run's source to its end and the slack after: the copies below stay
            // inside it (one bounds check a run, not one a chunk).
            let w = &mut o[op - dist..op + len + SLACK];
            // In whole chunks of at most `dist` bytes: each reads only bytes written before
            // it (so a run that overlaps what it copies repeats it, as LZF means), and the
            // last one ends within the slack. An exact copy called `memmove`, some 3% of
            // the check of the mixed RDB (listpacks' back-references are short and near).
            if dist >= SLACK {
                copy_chunks::<SLACK>(w, dist, len);
            } else if dist >= 8 {
                copy_chunks::<8>(w, dist, len);
            } else {
                // A run repeating the last 1-7 bytes, byte by byte.
                for i in 0..len {
                    w[dist + i] = w[i];
                }
            }
            op += len;
        }
    }
    out.truncate(ulen);
    op == ulen
}

/// Copies the first `len` bytes of `w` to `dist` bytes on (`dist >= N`), in `N`-byte
/// chunks: `w` holds the run's source, its `len` bytes and at least `N - 1` bytes after.
#[inline(always)]
fn copy_chunks<const N: usize>(w: &mut [u8], dist: usize, len: usize) {
    let mut k = 0;
    while k < len {
        let mut chunk = [0u8; N];
        chunk.copy_from_slice(&w[k..k + N]);
        w[dist + k..dist + k + N].copy_from_slice(&chunk);
        k += N;
    }
}

/// The decoded length of a complete LZF input, `None` when it is not valid.
#[inline]
pub(crate) fn lengths_in(input: &[u8]) -> Option<u64> {
    let mut ip = 0usize;
    let mut produced = 0u64;
    while ip < input.len() {
        let ctrl = input[ip];
        if ctrl < 32 {
            let n = usize::from(ctrl) + 1;
            ip += 1 + n;
            produced += n as u64;
        } else {
            let mut len = u64::from(ctrl >> 5);
            let low = if len == 7 {
                len += u64::from(*input.get(ip + 1)?);
                *input.get(ip + 2)?
            } else {
                *input.get(ip + 1)?
            };
            let dist = (u64::from(ctrl & 0x1f) << 8) + u64::from(low) + 1;
            if dist > produced {
                return None;
            }
            produced += len + 2;
            ip += if ctrl >> 5 == 7 { 3 } else { 2 };
        }
    }
    (ip == input.len()).then_some(produced)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid (if poor) LZF stream: literal runs, plus one back-reference when possible.
    pub fn compress_literal(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in data.chunks(32) {
            out.push((chunk.len() - 1) as u8);
            out.extend_from_slice(chunk);
        }
        out
    }

    fn run(c: &[u8], ulen: u64, keep: bool) -> Result<Vec<u8>, ParseError> {
        let mut src = Source::new(c, 0, c.len() as u64);
        let mut out = Vec::new();
        decompress(&mut src, c.len() as u64, ulen, &mut out, keep)?;
        Ok(out)
    }

    #[test]
    fn decodes_short_long_and_overlapping_runs_near_the_ends() {
        let mut input = vec![7];
        input.extend_from_slice(b"abcdefgh");
        // dist 8 len 8; dist 1 len 40 (overlapping); dist 56 len 10 (from the start).
        input.extend_from_slice(&[0xc0, 7, 0xe0, 31, 0, 0xe0, 1, 55]);
        let mut want = b"abcdefghabcdefgh".to_vec();
        want.extend_from_slice(&[b'h'; 40]);
        want.extend_from_slice(b"abcdefghab");
        let mut out = Vec::new();
        assert!(decode_all(&input, want.len(), &mut out));
        assert_eq!(out, want);
        assert!(!decode_all(&input, want.len() - 1, &mut out));
        assert!(!decode_all(&input, want.len() + 1, &mut out));
        assert!(!decode_all(&input[..5], 4, &mut out));
        assert_eq!(lengths_in(&input), Some(want.len() as u64));
    }

    #[test]
    fn back_references_of_every_distance_and_length_decode_as_byte_by_byte_copies() {
        let lit: Vec<u8> = (0..40u8).map(|i| b'A' + i).collect();
        for dist in 1..=40usize {
            for len in [3usize, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 264] {
                // 40 literal bytes, then a back-reference of `len` at `dist`.
                let mut input = vec![31];
                input.extend_from_slice(&lit[..32]);
                input.push(7);
                input.extend_from_slice(&lit[32..]);
                let d = dist - 1;
                if len - 2 >= 7 {
                    input.extend_from_slice(&[(7 << 5) | (d >> 8) as u8, (len - 9) as u8]);
                } else {
                    input.push((((len - 2) as u8) << 5) | (d >> 8) as u8);
                }
                input.push(d as u8);
                let mut want = lit.clone();
                for i in 0..len {
                    want.push(want[40 - dist + i]);
                }
                let mut out = Vec::new();
                assert!(
                    decode_all(&input, want.len(), &mut out),
                    "dist {dist} len {len}"
                );
                assert_eq!(out, want, "dist {dist} len {len}");
                assert_eq!(run(&input, want.len() as u64, true).unwrap(), want);
            }
        }
    }

    #[test]
    fn decodes_literals_and_back_references() {
        // "abcabcabcabc": literal "abc", then a 9-byte back-reference at distance 3.
        let c = [2, b'a', b'b', b'c', (7 << 5), 0, 2];
        assert_eq!(run(&c, 12, true).unwrap(), b"abcabcabcabc");
        // "abcdabcdx": a back-reference that does not overlap what it copies.
        let c = [3, b'a', b'b', b'c', b'd', (2 << 5), 3, 0, b'x'];
        assert_eq!(run(&c, 9, true).unwrap(), b"abcdabcdx");
        assert!(run(&c, 8, true).is_err());
        let c = [2, b'a', b'b', b'c', (7 << 5), 0, 2];
        for keep in [true, false] {
            assert!(run(&c, 12, keep).is_ok());
            assert!(run(&c, 11, keep).is_err());
            assert!(run(&c, 13, keep).is_err());
            // A back-reference before the start.
            assert!(run(&[0, b'a', (1 << 5), 5], 4, keep).is_err());
            // A run cut short.
            assert!(run(&[5, b'a'], 6, keep).is_err());
        }
    }

    #[test]
    fn windowed_decoding_of_a_large_value_checks_the_length() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let c = compress_literal(&data);
        assert!(run(&c, data.len() as u64, false).is_ok());
        assert_eq!(run(&c, data.len() as u64, true).unwrap(), data);
        assert!(run(&c, data.len() as u64 - 1, false).is_err());
    }
}
