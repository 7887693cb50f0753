//! Decodes RDB values of every type and encoding the reader knows (RDB 1-12, Valkey's)
//! into a [`ValueSink`], from a file being read ([`Rdb`]) or from bytes in memory (a DUMP
//! payload). Blobs are checked by the reader's validators before they are walked.

use std::io::Read;

use super::error::ParseError;
use super::fp_set::{fingerprint, FpSet};
use super::listpack::{self, LpEntry};
use super::rdb::{buffered_plain, Len, Rdb};
use super::value::{
    module_name, Consumer, ConsumerGroup, Kind, PendingEntry, Stream, StreamEntry, StreamId,
    ValueSink,
};
use super::{intset, lzf, stream, ziplist, zipmap};

/// Where a value's bytes come from: the reader's primitives, over a file or a slice.
pub(crate) trait Input {
    fn offset(&self) -> u64;
    fn len(&mut self) -> Result<u64, ParseError>;
    /// A collection's element count, each element at least `min_bytes` long.
    fn count(&mut self, min_bytes: u64) -> Result<u64, ParseError>;
    /// A string in any RDB encoding (plain, integer, LZF) into `out`.
    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), ParseError>;
    fn u8(&mut self) -> Result<u8, ParseError>;
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError>;
    /// A string handed to `f` where it lies when it can be (no copy), else through `buf`.
    #[inline]
    fn with_string<F: FnOnce(&[u8])>(&mut self, buf: &mut Vec<u8>, f: F) -> Result<(), ParseError> {
        self.string(buf)?;
        f(buf);
        Ok(())
    }
}

impl<R: Read> Input for Rdb<'_, R> {
    fn offset(&self) -> u64 {
        self.src.offset()
    }
    fn len(&mut self) -> Result<u64, ParseError> {
        Rdb::len(self)
    }
    fn count(&mut self, min_bytes: u64) -> Result<u64, ParseError> {
        Rdb::count(self, min_bytes)
    }
    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), ParseError> {
        self.string_into(out, usize::MAX).map(drop)
    }
    fn u8(&mut self) -> Result<u8, ParseError> {
        self.src.u8()
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        self.src.array()
    }
    #[inline]
    fn with_string<F: FnOnce(&[u8])>(&mut self, buf: &mut Vec<u8>, f: F) -> Result<(), ParseError> {
        // Most strings: a 6- or 14-bit length, wholly in the read buffer.
        let b = self.src.buffered();
        if let Some((header, n)) = buffered_plain(b) {
            f(&b[header..header + n]);
            self.src.consume(header + n);
            return Ok(());
        }
        self.string(buf)?;
        f(buf);
        Ok(())
    }
}

/// Bytes in memory, read front to back.
pub(crate) struct SliceInput<'a> {
    pub b: &'a [u8],
    pub at: usize,
}

impl SliceInput<'_> {
    fn take(&mut self, n: u64) -> Result<&[u8], ParseError> {
        let at = self.at;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                ParseError::truncated(at as u64, format!("{n} more byte(s) of the payload"))
            })?;
        self.at = end;
        Ok(&self.b[at..end])
    }

    fn read_len(&mut self) -> Result<Len, ParseError> {
        let at = self.at as u64;
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Len::Plain(u64::from(b & 0x3f)),
            1 => Len::Plain((u64::from(b & 0x3f) << 8) | u64::from(self.u8()?)),
            2 => match b {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Len::Plain(u64::from_be_bytes(self.array()?)),
                _ => {
                    return Err(ParseError::corrupt(
                        at,
                        format!("a length encoding (0x80 or 0x81), not 0x{b:02x}"),
                    ))
                }
            },
            _ => Len::Encoded(b & 0x3f),
        })
    }
}

impl Input for SliceInput<'_> {
    fn offset(&self) -> u64 {
        self.at as u64
    }
    fn len(&mut self) -> Result<u64, ParseError> {
        match self.read_len()? {
            Len::Plain(n) => Ok(n),
            // As the server's rdbLoadLen(rdb, NULL): the low six bits of an "encoded" mark.
            Len::Encoded(n) => Ok(u64::from(n)),
        }
    }
    fn count(&mut self, min_bytes: u64) -> Result<u64, ParseError> {
        let at = self.offset();
        let n = self.len()?;
        if n.saturating_mul(min_bytes) > (self.b.len() - self.at) as u64 {
            return Err(ParseError::truncated(
                at,
                format!("a collection of {n} elements within the payload"),
            ));
        }
        Ok(n)
    }
    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), ParseError> {
        let at = self.offset();
        out.clear();
        match self.read_len()? {
            Len::Plain(n) => out.extend_from_slice(self.take(n)?),
            Len::Encoded(e @ 0..=2) => {
                let v = match e {
                    0 => i64::from(self.u8()? as i8),
                    1 => i64::from(i16::from_le_bytes(self.array()?)),
                    _ => i64::from(i32::from_le_bytes(self.array()?)),
                };
                out.extend_from_slice(v.to_string().as_bytes());
            }
            Len::Encoded(3) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                if ulen > clen.saturating_mul(90).saturating_add(64) || ulen == 0 {
                    return Err(ParseError::corrupt(
                        at,
                        format!("an LZF length a {clen}-byte input can decode to, not {ulen}"),
                    ));
                }
                let input = self.take(clen)?;
                if !lzf::decode_all(input, ulen as usize, out) {
                    return Err(ParseError::corrupt(
                        at,
                        format!("LZF data that decodes to {ulen} bytes"),
                    ));
                }
            }
            Len::Encoded(e) => {
                return Err(ParseError::corrupt(
                    at,
                    format!("a string encoding (int8, int16, int32 or LZF), not {e}"),
                ))
            }
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }
}

/// Buffers reused from value to value.
#[derive(Default)]
pub(crate) struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
    blob: Vec<u8>,
}

/// An element inside a blob: bytes, or an integer the blob stored as one.
#[derive(Clone, Copy)]
enum Elem<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl<'a> From<LpEntry<'a>> for Elem<'a> {
    fn from(e: LpEntry<'a>) -> Self {
        match e {
            LpEntry::Int(v) => Elem::Int(v),
            LpEntry::Str(s) => Elem::Str(s),
        }
    }
}

/// Room for any i64 in decimal.
type IntBuf = [u8; 20];

impl<'a> Elem<'a> {
    /// The element as Redis returns it: integers in decimal.
    fn bytes<'b>(self, buf: &'b mut IntBuf) -> &'b [u8]
    where
        'a: 'b,
    {
        match self {
            Elem::Str(s) => s,
            Elem::Int(v) => {
                let mut n = v.unsigned_abs();
                let mut at = buf.len();
                loop {
                    at -= 1;
                    buf[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                if v < 0 {
                    at -= 1;
                    buf[at] = b'-';
                }
                &buf[at..]
            }
        }
    }

    fn score(self) -> Option<f64> {
        match self {
            Elem::Int(v) => Some(v as f64),
            Elem::Str(s) => parse_score(s),
        }
    }

    fn int(self) -> Option<i64> {
        match self {
            Elem::Int(v) => Some(v),
            Elem::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }
}

/// A score as Redis writes one in text: `%.17g`, `inf`, `-inf`, `nan`.
fn parse_score(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    match t {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => t.parse().ok(),
    }
}

/// Decodes the value of RDB type `t` into `sink`; `Ok(false)` for an empty collection,
/// which Redis drops when loading. A module value is refused with the module's name.
pub(crate) fn decode<I: Input, S: ValueSink>(
    input: &mut I,
    t: u8,
    valkey: bool,
    sink: &mut S,
    sc: &mut Scratch,
) -> Result<bool, ParseError> {
    let at = input.offset();
    match t {
        0 => {
            sink.begin(Kind::String, 1);
            input.with_string(&mut sc.a, |s| sink.string(s))?;
            Ok(true)
        }
        1 | 2 => {
            let n = input.count(1)?;
            sink.begin(if t == 1 { Kind::List } else { Kind::Set }, n);
            for _ in 0..n {
                input.with_string(&mut sc.a, |s| sink.item(s))?;
            }
            Ok(n > 0)
        }
        3 | 5 => {
            let n = input.count(2)?;
            sink.begin(Kind::SortedSet, n);
            for _ in 0..n {
                input.string(&mut sc.a)?;
                let score = if t == 5 {
                    f64::from_le_bytes(input.array()?)
                } else {
                    old_double(input, &mut sc.b)?
                };
                sink.scored(&sc.a, score);
            }
            Ok(n > 0)
        }
        4 => {
            let n = input.count(2)?;
            sink.begin(Kind::Hash, n);
            for _ in 0..n {
                input.string(&mut sc.a)?;
                input.string(&mut sc.b)?;
                sink.field(&sc.a, &sc.b, None);
            }
            Ok(n > 0)
        }
        6 => Err(ParseError::unsupported(
            at,
            "a value Lazarus can decode, not a module value (4.0 release-candidate format)",
        )),
        7 => {
            let id = input.len()?;
            Err(ParseError::unsupported(
                at,
                format!(
                    "a value Lazarus can decode, not a value of module `{}`",
                    module_name(id)
                ),
            ))
        }
        9 => blob(input, sc, zipmap_pairs, sink),
        10 => blob(input, sc, |b, s| ziplist_items(b, Kind::List, s), sink),
        11 => blob(input, sc, intset_members, sink),
        12 => blob(input, sc, |b, s| ziplist_pairs(b, Kind::SortedSet, s), sink),
        13 => blob(input, sc, |b, s| ziplist_pairs(b, Kind::Hash, s), sink),
        14 | 18 => quicklist(input, t == 18, sink, sc),
        15 | 19 | 21 => {
            let s = decode_stream(input, t, sc)?;
            sink.begin(Kind::Stream, 1);
            sink.stream(&s);
            Ok(true)
        }
        16 => blob(input, sc, |b, s| listpack_pairs(b, Kind::Hash, s), sink),
        17 => blob(
            input,
            sc,
            |b, s| listpack_pairs(b, Kind::SortedSet, s),
            sink,
        ),
        20 => blob(input, sc, |b, s| listpack_items(b, Kind::Set, s), sink),
        // Valkey 9: hash fields with their own expiry (field, value, 8-byte expiry).
        22 if valkey => {
            let n = input.count(10)?;
            sink.begin(Kind::Hash, n);
            for _ in 0..n {
                input.string(&mut sc.a)?;
                input.string(&mut sc.b)?;
                let e = i64::from_le_bytes(input.array()?);
                sink.field(&sc.a, &sc.b, (e >= 0).then_some(e));
            }
            Ok(n > 0)
        }
        // Redis 7.4: hash fields with TTLs; 24 leads with the minimum expiry, to which
        // each field's TTL is relative (0: none).
        22 | 24 => {
            let base = if t == 24 {
                Some(i64::from_le_bytes(input.array()?))
            } else {
                None
            };
            let n = input.count(3)?;
            sink.begin(Kind::Hash, n);
            for _ in 0..n {
                let ttl = input.len()? as i64;
                input.string(&mut sc.a)?;
                input.string(&mut sc.b)?;
                let expire = match (ttl, base) {
                    (0, _) => None,
                    (ttl, Some(min)) => Some(ttl + min - 1),
                    (ttl, None) => Some(ttl),
                };
                sink.field(&sc.a, &sc.b, expire);
            }
            Ok(n > 0)
        }
        23 | 25 => {
            if t == 25 {
                input.array::<8>()?;
            }
            blob(input, sc, listpack_ttl_fields, sink)
        }
        _ => Err(ParseError::corrupt(
            at,
            format!("a value type this RDB version can hold, not {t}"),
        )),
    }
}

/// A sorted-set score before RDB 8: a length byte, then that many ASCII bytes (253, 254,
/// 255: NaN, +inf, -inf).
fn old_double<I: Input>(input: &mut I, buf: &mut Vec<u8>) -> Result<f64, ParseError> {
    let at = input.offset();
    let n = input.u8()?;
    match n {
        253 => return Ok(f64::NAN),
        254 => return Ok(f64::INFINITY),
        255 => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    buf.clear();
    for _ in 0..n {
        buf.push(input.u8()?);
    }
    parse_score(buf).ok_or_else(|| ParseError::corrupt(at, "a sorted-set score in text"))
}

type BlobWalk<S> = fn(&[u8], &mut S) -> Result<u64, ParseError>;

/// Reads one blob and walks it; blob faults are placed at the blob's start.
fn blob<I: Input, S: ValueSink>(
    input: &mut I,
    sc: &mut Scratch,
    walk: BlobWalk<S>,
    sink: &mut S,
) -> Result<bool, ParseError> {
    let start = input.offset();
    input.string(&mut sc.blob)?;
    let n = walk(&sc.blob, sink).map_err(|e| e.within(format_args!("in the blob at {start}")))?;
    Ok(n > 0)
}

fn fault(f: super::error::BlobFault) -> ParseError {
    ParseError::corrupt(f.at as u64, f.expected)
}

fn ziplist_items<S: ValueSink>(b: &[u8], kind: Kind, sink: &mut S) -> Result<u64, ParseError> {
    let n = ziplist::validate(b, 1).map_err(fault)?;
    sink.begin(kind, u64::from(n));
    let mut buf = IntBuf::default();
    for e in ZiplistWalk::new(b) {
        sink.item(e.bytes(&mut buf));
    }
    Ok(u64::from(n))
}

fn ziplist_pairs<S: ValueSink>(b: &[u8], kind: Kind, sink: &mut S) -> Result<u64, ParseError> {
    let n = ziplist::validate(b, 2).map_err(fault)?;
    sink.begin(kind, u64::from(n / 2));
    pairs(ZiplistWalk::new(b), kind, sink)?;
    Ok(u64::from(n))
}

fn listpack_items<S: ValueSink>(b: &[u8], kind: Kind, sink: &mut S) -> Result<u64, ParseError> {
    let n = listpack::validate(b, 1).map_err(fault)?;
    sink.begin(kind, u64::from(n));
    let mut it = listpack::entries(b).map_err(fault)?;
    let mut buf = IntBuf::default();
    while let Some(e) = it.next_entry().map_err(fault)? {
        sink.item(Elem::from(e).bytes(&mut buf));
    }
    Ok(u64::from(n))
}

fn listpack_pairs<S: ValueSink>(b: &[u8], kind: Kind, sink: &mut S) -> Result<u64, ParseError> {
    let n = listpack::validate(b, 2).map_err(fault)?;
    sink.begin(kind, u64::from(n / 2));
    let mut it = listpack::entries(b).map_err(fault)?;
    let mut elems = Vec::with_capacity(n as usize);
    while let Some(e) = it.next_entry().map_err(fault)? {
        elems.push(Elem::from(e));
    }
    pairs(elems.into_iter(), kind, sink)?;
    Ok(u64::from(n))
}

/// Redis 7.4 listpack hashes with field TTLs: (field, value, TTL) triples, TTL 0 for none.
fn listpack_ttl_fields<S: ValueSink>(b: &[u8], sink: &mut S) -> Result<u64, ParseError> {
    let n = listpack::validate(b, 3).map_err(fault)?;
    sink.begin(Kind::Hash, u64::from(n / 3));
    let mut it = listpack::entries(b).map_err(fault)?;
    let (mut fb, mut vb) = (IntBuf::default(), IntBuf::default());
    while let Some(f) = it.next_entry().map_err(fault)? {
        let v = it.next_entry().map_err(fault)?;
        let ttl = it.next_entry().map_err(fault)?;
        let (Some(v), Some(ttl)) = (v, ttl) else {
            return Err(ParseError::corrupt(0, "a field, value and TTL triple"));
        };
        let ttl = Elem::from(ttl)
            .int()
            .ok_or_else(|| ParseError::corrupt(0, "an integer field TTL"))?;
        let f = Elem::from(f);
        let v = Elem::from(v);
        sink.field(f.bytes(&mut fb), v.bytes(&mut vb), (ttl > 0).then_some(ttl));
    }
    Ok(u64::from(n))
}

fn pairs<'a, S: ValueSink>(
    mut it: impl Iterator<Item = Elem<'a>>,
    kind: Kind,
    sink: &mut S,
) -> Result<(), ParseError> {
    let (mut fb, mut vb) = (IntBuf::default(), IntBuf::default());
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        if kind == Kind::SortedSet {
            let score = b
                .score()
                .ok_or_else(|| ParseError::corrupt(0, "a sorted-set score"))?;
            sink.scored(a.bytes(&mut fb), score);
        } else {
            sink.field(a.bytes(&mut fb), b.bytes(&mut vb), None);
        }
    }
    Ok(())
}

fn intset_members<S: ValueSink>(b: &[u8], sink: &mut S) -> Result<u64, ParseError> {
    let n = intset::validate(b).map_err(fault)?;
    sink.begin(Kind::Set, u64::from(n));
    let mut buf = IntBuf::default();
    for (_, v) in intset::members(b) {
        sink.item(Elem::Int(v).bytes(&mut buf));
    }
    Ok(u64::from(n))
}

fn zipmap_pairs<S: ValueSink>(b: &[u8], sink: &mut S) -> Result<u64, ParseError> {
    let n = zipmap::validate(b).map_err(fault)?;
    sink.begin(Kind::Hash, u64::from(n));
    for (_, field, value) in (ZipmapWalk { zm: b, at: 1 }) {
        sink.field(field, value, None);
    }
    Ok(u64::from(n))
}

/// Walks a zipmap the reader already validated: each pair's offset, field and value.
struct ZipmapWalk<'a> {
    zm: &'a [u8],
    at: usize,
}

impl<'a> Iterator for ZipmapWalk<'a> {
    type Item = (usize, &'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.zm;
        let len_at = |at: &mut usize| -> Option<usize> {
            let first = *b.get(*at)?;
            if first == 254 {
                let v = u32::from_le_bytes(b.get(*at + 1..*at + 5)?.try_into().ok()?);
                *at += 5;
                Some(v as usize)
            } else {
                *at += 1;
                Some(usize::from(first))
            }
        };
        let start = self.at;
        if *b.get(start)? == 0xff {
            return None;
        }
        let mut at = start;
        let kl = len_at(&mut at)?;
        let field = b.get(at..at + kl)?;
        at += kl;
        let vl = len_at(&mut at)?;
        let free = usize::from(*b.get(at)?);
        at += 1;
        let value = b.get(at..at + vl)?;
        self.at = at + vl + free;
        Some((start, field, value))
    }
}

/// How a blob of fields (or members) is laid out, for [`first_repeat`].
#[derive(Clone, Copy)]
pub(crate) enum Layout {
    /// Ziplist entries, the first of every `tuple` a field.
    Ziplist(usize),
    /// Listpack entries, the first of every `tuple` a field.
    Listpack(usize),
    Zipmap,
    Intset,
}

impl Layout {
    /// Entries a field takes.
    pub fn tuple(self) -> usize {
        match self {
            Layout::Ziplist(t) | Layout::Listpack(t) => t,
            Layout::Zipmap | Layout::Intset => 1,
        }
    }
}

/// The offset in `b` (a blob its validator accepted) of the first field, or member, that
/// an earlier one of the same blob already had, compared as the server compares them
/// when it puts them in a hash table: integers as their decimal text. By fingerprint (see
/// `fp_set`): two different fields are taken for one with probability about n²/2^65.
/// `seen` is the caller's member table, cleared for the blob's `fields` (only the slots
/// they need are zeroed: a fresh table for each blob tripled the check of an RDB of small
/// ziplist hashes).
pub(crate) fn first_repeat(
    b: &[u8],
    layout: Layout,
    fields: u64,
    seen: &mut FpSet,
) -> Option<usize> {
    seen.clear_for(fields);
    let mut buf = IntBuf::default();
    let mut again = |e: Elem<'_>| seen.insert(fingerprint(e.bytes(&mut buf))) == Some(false);
    let tuple = layout.tuple();
    match layout {
        Layout::Ziplist(_) => {
            let mut walk = ZiplistWalk::new(b);
            let mut at = walk.at;
            let mut i = 0;
            while let Some(e) = walk.next() {
                if i % tuple == 0 && again(e) {
                    return Some(at);
                }
                at = walk.at;
                i += 1;
            }
        }
        Layout::Listpack(_) => {
            let mut it = listpack::entries(b).ok()?;
            let mut i = 0;
            loop {
                let at = it.offset();
                // Damage ends the walk: the load's own walk stops there too.
                let Ok(Some(e)) = it.next_entry() else {
                    break;
                };
                if i % tuple == 0 && again(Elem::from(e)) {
                    return Some(at);
                }
                i += 1;
            }
        }
        Layout::Intset => {
            for (at, v) in intset::members(b) {
                if again(Elem::Int(v)) {
                    return Some(at);
                }
            }
        }
        Layout::Zipmap => {
            for (at, field, _) in (ZipmapWalk { zm: b, at: 1 }) {
                if again(Elem::Str(field)) {
                    return Some(at);
                }
            }
        }
    }
    None
}

/// Walks a ziplist the reader already validated.
struct ZiplistWalk<'a> {
    zl: &'a [u8],
    at: usize,
}

impl<'a> ZiplistWalk<'a> {
    fn new(zl: &'a [u8]) -> Self {
        ZiplistWalk { zl, at: 10 }
    }
}

impl<'a> Iterator for ZiplistWalk<'a> {
    type Item = Elem<'a>;
    fn next(&mut self) -> Option<Elem<'a>> {
        let zl = self.zl;
        let mut at = self.at;
        if *zl.get(at)? == 0xff {
            return None;
        }
        at += if zl[at] == 0xfe { 5 } else { 1 };
        let e = *zl.get(at)?;
        let le = |from: usize, n: usize| -> Option<i64> {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(zl.get(from..from + n)?);
            // Sign-extend from n bytes.
            let shift = 64 - 8 * n as u32;
            Some((i64::from_le_bytes(w) << shift) >> shift)
        };
        let (elem, end) = match e >> 6 {
            0 => {
                let n = usize::from(e & 0x3f);
                (Elem::Str(zl.get(at + 1..at + 1 + n)?), at + 1 + n)
            }
            1 => {
                let n = (usize::from(e & 0x3f) << 8) | usize::from(*zl.get(at + 1)?);
                (Elem::Str(zl.get(at + 2..at + 2 + n)?), at + 2 + n)
            }
            2 => {
                let n = u32::from_be_bytes(zl.get(at + 1..at + 5)?.try_into().ok()?) as usize;
                (Elem::Str(zl.get(at + 5..at + 5 + n)?), at + 5 + n)
            }
            _ => match e {
                0xc0 => (Elem::Int(le(at + 1, 2)?), at + 3),
                0xd0 => (Elem::Int(le(at + 1, 4)?), at + 5),
                0xe0 => (Elem::Int(le(at + 1, 8)?), at + 9),
                0xf0 => (Elem::Int(le(at + 1, 3)?), at + 4),
                0xfe => (Elem::Int(le(at + 1, 1)?), at + 2),
                0xf1..=0xfd => (Elem::Int(i64::from(e & 0x0f) - 1), at + 1),
                _ => return None,
            },
        };
        self.at = end;
        Some(elem)
    }
}

/// A list as quicklist nodes: ziplists (RDB 7-9), or plain/packed listpacks (RDB 10+).
fn quicklist<I: Input, S: ValueSink>(
    input: &mut I,
    v2: bool,
    sink: &mut S,
    sc: &mut Scratch,
) -> Result<bool, ParseError> {
    let n = input.count(2)?;
    sink.begin(Kind::List, n);
    let mut entries = 0u64;
    let mut buf = IntBuf::default();
    for _ in 0..n {
        let at = input.offset();
        let container = if v2 { input.len()? } else { 2 };
        input.string(&mut sc.blob)?;
        let b = sc.blob.as_slice();
        match container {
            1 => {
                sink.item(b);
                entries += 1;
            }
            2 if v2 => {
                let c = listpack::validate(b, 1)
                    .map_err(|f| fault(f).within(format_args!("in the list node at {at}")))?;
                let mut it = listpack::entries(b).map_err(fault)?;
                while let Some(e) = it.next_entry().map_err(fault)? {
                    sink.item(Elem::from(e).bytes(&mut buf));
                }
                entries += u64::from(c);
            }
            2 => {
                let c = ziplist::validate(b, 1)
                    .map_err(|f| fault(f).within(format_args!("in the list node at {at}")))?;
                for e in ZiplistWalk::new(b) {
                    sink.item(e.bytes(&mut buf));
                }
                entries += u64::from(c);
            }
            c => {
                return Err(ParseError::corrupt(
                    at,
                    format!("a quicklist node container 1 (plain) or 2 (packed), not {c}"),
                ))
            }
        }
    }
    Ok(entries > 0)
}

fn stream_id<I: Input>(input: &mut I) -> Result<StreamId, ParseError> {
    Ok(StreamId {
        ms: input.len()?,
        seq: input.len()?,
    })
}

/// A stream (RDB types 15, 19, 21): nodes, metadata, consumer groups.
fn decode_stream<I: Input>(input: &mut I, t: u8, sc: &mut Scratch) -> Result<Stream, ParseError> {
    let mut s = Stream::default();
    let nodes = input.count(2)?;
    for _ in 0..nodes {
        let at = input.offset();
        input.string(&mut sc.a)?;
        let master: [u8; 16] =
            sc.a.as_slice()
                .try_into()
                .map_err(|_| ParseError::corrupt(at, "a 16-byte stream node ID"))?;
        let at = input.offset();
        input.string(&mut sc.blob)?;
        stream::validate_node(&sc.blob, false)
            .map_err(|f| fault(f).within(format_args!("in the stream node at {at}")))?;
        stream_node(&sc.blob, StreamId::from_raw(master), &mut s.entries)
            .map_err(|e| e.within(format_args!("in the stream node at {at}")))?;
    }
    s.length = input.len()?;
    s.last_id = stream_id(input)?;
    if t >= 19 {
        s.first_id = Some(stream_id(input)?);
        s.max_deleted_id = Some(stream_id(input)?);
        s.entries_added = Some(input.len()?);
    }
    let groups = input.count(3)?;
    for _ in 0..groups {
        let mut g = ConsumerGroup {
            name: Vec::new(),
            last_id: StreamId::default(),
            entries_read: None,
            pending: Vec::new(),
            consumers: Vec::new(),
        };
        input.string(&mut g.name)?;
        g.last_id = stream_id(input)?;
        if t >= 19 {
            g.entries_read = Some(input.len()?);
        }
        let n = input.count(25)?;
        for _ in 0..n {
            let id = StreamId::from_raw(input.array()?);
            let delivery_time_ms = i64::from_le_bytes(input.array()?);
            let delivery_count = input.len()?;
            g.pending.push(PendingEntry {
                id,
                delivery_time_ms,
                delivery_count,
            });
        }
        let consumers = input.count(9)?;
        for _ in 0..consumers {
            let mut c = Consumer {
                name: Vec::new(),
                seen_time_ms: 0,
                active_time_ms: None,
                pending: Vec::new(),
            };
            input.string(&mut c.name)?;
            c.seen_time_ms = i64::from_le_bytes(input.array()?);
            if t >= 21 {
                c.active_time_ms = Some(i64::from_le_bytes(input.array()?));
            }
            let owned = input.count(16)?;
            for _ in 0..owned {
                c.pending.push(StreamId::from_raw(input.array()?));
            }
            g.consumers.push(c);
        }
        s.groups.push(g);
    }
    Ok(s)
}

const DELETED: i64 = 1;
const SAME_FIELDS: i64 = 2;

/// The live entries of one validated stream node.
fn stream_node(lp: &[u8], master: StreamId, out: &mut Vec<StreamEntry>) -> Result<(), ParseError> {
    let mut it = listpack::entries(lp).map_err(fault)?;
    let mut next = || -> Result<Elem<'_>, ParseError> {
        match it.next_entry().map_err(fault)? {
            Some(e) => Ok(Elem::from(e)),
            None => Err(ParseError::corrupt(0, "a stream entry, not the node's end")),
        }
    };
    let int = |e: Elem<'_>| e.int().ok_or_else(|| ParseError::corrupt(0, "an integer"));
    let owned = |e: Elem<'_>| {
        let mut buf = IntBuf::default();
        e.bytes(&mut buf).to_vec()
    };
    int(next()?)?; // live count
    int(next()?)?; // deleted count
    let nfields = int(next()?)?;
    let mut master_fields = Vec::with_capacity(nfields.clamp(0, 1024) as usize);
    for _ in 0..nfields {
        master_fields.push(owned(next()?));
    }
    next()?; // master terminator
    loop {
        let flags = match it.next_entry().map_err(fault)? {
            None => break,
            Some(e) => int(Elem::from(e))?,
        };
        let mut next = || -> Result<Elem<'_>, ParseError> {
            match it.next_entry().map_err(fault)? {
                Some(e) => Ok(Elem::from(e)),
                None => Err(ParseError::corrupt(0, "a stream entry, not the node's end")),
            }
        };
        let ms = master.ms.wrapping_add(int(next()?)? as u64);
        let seq = master.seq.wrapping_add(int(next()?)? as u64);
        let mut fields = Vec::new();
        if flags & SAME_FIELDS != 0 {
            for f in &master_fields {
                fields.push((f.clone(), owned(next()?)));
            }
        } else {
            let n = int(next()?)?;
            for _ in 0..n {
                let f = owned(next()?);
                fields.push((f, owned(next()?)));
            }
        }
        next()?; // lp-count
        if flags & DELETED == 0 {
            out.push(StreamEntry {
                id: StreamId { ms, seq },
                fields,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::dump::decode_dump;
    use super::super::value::{HashField, Value};

    /// A DUMP payload of type `t` holding `blob` as one plain string, checksum off.
    fn payload(t: u8, blob: &[u8]) -> Vec<u8> {
        let mut p = vec![t];
        assert!(blob.len() < 1 << 14);
        p.push(0x40 | (blob.len() >> 8) as u8);
        p.push(blob.len() as u8);
        p.extend_from_slice(blob);
        p.extend_from_slice(&6u16.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    }

    /// A ziplist of short strings and one 16-bit and one immediate integer.
    fn ziplist(items: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        let mut tail = 10;
        let mut entries: Vec<Vec<u8>> = items
            .iter()
            .map(|s| {
                let mut e = vec![s.len() as u8];
                e.extend_from_slice(s);
                e
            })
            .collect();
        entries.push(vec![0xc0, 0x39, 0x30]); // int16 12345
        entries.push(vec![0xf1 + 7]); // immediate 7
        for e in &entries {
            tail = 10 + body.len();
            body.push(prev as u8);
            body.extend_from_slice(e);
            prev = e.len() + 1;
        }
        let mut zl = ((10 + body.len() + 1) as u32).to_le_bytes().to_vec();
        zl.extend_from_slice(&(tail as u32).to_le_bytes());
        zl.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        zl.extend_from_slice(&body);
        zl.push(0xff);
        zl
    }

    fn strings(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn old_encodings_decode_to_the_canonical_value() {
        // Zipmap hash (Redis 2.4): {"foo" => "bar"} with a free byte, {"a" => ""}.
        let zm = [
            2, 3, b'f', b'o', b'o', 3, 1, b'b', b'a', b'r', 0, 1, b'a', 0, 0, 0xff,
        ];
        let field = |f: &str, v: &str| HashField {
            field: f.into(),
            value: v.into(),
            expire_ms: None,
        };
        assert_eq!(
            decode_dump(&payload(9, &zm)).unwrap(),
            Value::Hash(vec![field("foo", "bar"), field("a", "")])
        );
        // Ziplist list (type 10) and ziplist hash (type 13).
        let zl = ziplist(&[b"x", b"yy"]);
        assert_eq!(
            decode_dump(&payload(10, &zl)).unwrap(),
            Value::List(strings(&["x", "yy", "12345", "7"]))
        );
        assert_eq!(
            decode_dump(&payload(13, &zl)).unwrap(),
            Value::Hash(vec![field("x", "yy"), field("12345", "7")])
        );
        // Ziplist sorted set (type 12): scores as strings or integers.
        let zz = ziplist(&[b"m", b"1.5"]);
        assert_eq!(
            decode_dump(&payload(12, &zz)).unwrap(),
            Value::SortedSet(vec![(b"m".to_vec(), 1.5), (b"12345".to_vec(), 7.0)])
        );
        // Intset of 16-bit members.
        let mut is = 2u32.to_le_bytes().to_vec();
        is.extend_from_slice(&3u32.to_le_bytes());
        for v in [-5i16, 1, 300] {
            is.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            decode_dump(&payload(11, &is)).unwrap(),
            Value::Set(strings(&["-5", "1", "300"]))
        );
        // Quicklist of ziplists (type 14): nodes in order.
        let mut ql = vec![14, 2];
        for node in [ziplist(&[b"a"]), ziplist(&[b"b"])] {
            ql.push(node.len() as u8);
            ql.extend_from_slice(&node);
        }
        ql.extend_from_slice(&7u16.to_le_bytes());
        ql.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_dump(&ql).unwrap(),
            Value::List(strings(&["a", "12345", "7", "b", "12345", "7"]))
        );
        // A field twice, once as text and once as an integer entry: the same to the server.
        let twice = ziplist(&[b"12345", b"v"]);
        assert_eq!(
            super::first_repeat(
                &twice,
                super::Layout::Ziplist(2),
                2,
                &mut super::FpSet::default()
            ),
            Some(20)
        );
        assert_eq!(
            super::first_repeat(
                &zl,
                super::Layout::Ziplist(2),
                3,
                &mut super::FpSet::default()
            ),
            None
        );
        assert_eq!(
            super::first_repeat(&zm, super::Layout::Zipmap, 2, &mut super::FpSet::default()),
            None
        );
        let zm_twice = [2, 1, b'a', 0, 0, 1, b'a', 1, 0, b'x', 0xff];
        assert_eq!(
            super::first_repeat(
                &zm_twice,
                super::Layout::Zipmap,
                2,
                &mut super::FpSet::default()
            ),
            Some(5)
        );
        // Damage inside a blob is refused, not decoded.
        let mut bad = zl.clone();
        bad[11] = 9;
        assert!(decode_dump(&payload(10, &bad)).is_err());
    }

    #[test]
    fn a_module_value_is_refused_with_the_module_name() {
        let cs = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id = 0u64;
        for c in b"ReJSON-RL" {
            id = (id << 6) | cs.iter().position(|x| x == c).unwrap() as u64;
        }
        id = (id << 10) | 3;
        let mut p = vec![7, 0x81];
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&9u16.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        let e = decode_dump(&p).unwrap_err();
        assert!(e.unsupported && e.expected.contains("`ReJSON-RL`"), "{e}");
    }
}
