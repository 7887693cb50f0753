//! A buffered, offset-tracking byte source over a persistence file, with an optional
//! running CRC-64 of every byte consumed.
//!
//! Every read is checked against the bytes the file really has, so a length field can
//! never make the reader allocate or wait for more than the file holds.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crc_fast::{CrcAlgorithm, Digest};

use super::error::ParseError;
use super::mapped::Mapped;
use super::prefetch::{Prefetch, HEAD};

/// Big enough that the per-refill cost vanishes next to the parsing; small enough to stay
/// far inside the reader's memory budget.
pub(crate) const BUF_SIZE: usize = 1 << 20;

/// How far a mapped file's window moves at a time: each move gives back the pages behind
/// the parser, looks for a stop or a cut, and runs the CRC over the bytes parsed since.
/// A quarter of the core's 2 MiB L2 cache: over the 1 MiB before, the CRC found its bytes
/// gone from it (the parse's other memory had pushed them out) and took 7% of the mixed
/// RDB's check on one core, 3% now; smaller steps cost more in calls than they save.
const MAP_STEP: usize = 1 << 18;

/// What a read that met a page the mapped file no longer had reports.
const CUT: &str = "the file shrank while it was read (or a page of it could not be read)";

/// CRC-64 of a whole byte slice, as Redis computes it for an RDB file (Jones polynomial,
/// reflected). `crc-fast` folds with carry-less multiplication (PCLMULQDQ): several times
/// the speed of the `crc` crate's slicing-by-16 tables, which made the CRC a fifth of the
/// reader's time.
pub fn crc64(bytes: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Redis, bytes)
}

/// The CRC-64 of `first`'s bytes followed by `then`'s, as a digest that goes on from there
/// (one that does not count its bytes: it is never the second of such a pair). The
/// CRC-64 Redis uses starts from 0 and is not inverted at the end, so it is linear: the
/// first CRC times x^(8n) modulo the polynomial (n: the second's bytes), plus the second.
/// `Digest::combine` of `crc-fast` squares 64×64-bit matrices bit by bit for that, some
/// 150 µs a call, and a file read in six parts made six (2% of the check of the small-key
/// RDB); x^(8n) by its binary powers, from a table, takes a few µs.
pub(crate) fn crc64_then(first: &Digest, then: &Digest) -> Digest {
    let shifted = times_mod_p(x_to_8n(then.get_amount()), first.finalize());
    Digest::new_with_init_state(CrcAlgorithm::Crc64Redis, shifted ^ then.finalize())
}

/// The Jones polynomial, reflected (its x^0 term the top bit, like the CRC's).
const JONES: u64 = 0x95ac_9329_ac4b_c9b5;
/// 1, reflected.
const ONE: u64 = 1 << 63;

/// `a · b` modulo the polynomial, both reflected.
const fn times_mod_p(a: u64, mut b: u64) -> u64 {
    let mut product = 0;
    let mut bit = ONE;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        bit >>= 1;
        // b·x: one place down, reduced.
        b = (b >> 1) ^ (JONES & 0u64.wrapping_sub(b & 1));
    }
    product
}

/// x^(2^k) modulo the polynomial, for k from 0.
const X_TO_2K: [u64; 64] = {
    let mut t = [0; 64];
    t[0] = ONE >> 1;
    let mut k = 1;
    while k < 64 {
        t[k] = times_mod_p(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

/// x^(8n) modulo the polynomial: the product of x^(2^k) over the bits k of 8n.
fn x_to_8n(n: u64) -> u64 {
    let mut p = ONE;
    let (mut n, mut k) = (n, 3);
    while n != 0 {
        if n & 1 != 0 {
            p = times_mod_p(X_TO_2K[k & 63], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

thread_local! {
    /// Set while this thread reads for someone who may stop waiting ([`reading_stops_when`]).
    static STOP: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Runs `f` with every file it reads on this thread ending early, with an I/O error, at
/// its next refill (every megabyte at most) once `stop` is set: for work whose result
/// nobody may wait for any more (a recovery's early digest of files it did not load in
/// the end), which would otherwise read a big file to its end for nothing and hold the
/// shell's exit meanwhile. `None` runs `f` as it is. The thread's earlier setting is back
/// after `f`, also when it panics (threads of a pool run other work next).
pub(crate) fn reading_stops_when<T>(stop: Option<Arc<AtomicBool>>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            STOP.with(|s| *s.borrow_mut() = before);
        }
    }
    let before = STOP.with(|s| std::mem::replace(&mut *s.borrow_mut(), stop));
    let _restore = Restore(before);
    f()
}

/// This thread's stop signal, for the threads it hands part of its reading to.
pub(crate) fn reading_stop() -> Option<Arc<AtomicBool>> {
    STOP.with(|s| s.borrow().clone())
}

fn reading_stopped() -> bool {
    STOP.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// The bytes a [`Source`] reads from: its own buffer, or the whole file mapped. Reads go
/// through one pointer and length either way.
struct Window {
    ptr: *const u8,
    len: usize,
    heap: Vec<u8>,
    map: Option<Mapped>,
}

// SAFETY: `ptr` points into `heap` or `map`, which the window owns.
unsafe impl Send for Window {}

impl Window {
    fn heap(heap: Vec<u8>) -> Window {
        Window {
            ptr: heap.as_ptr(),
            len: heap.len(),
            heap,
            map: None,
        }
    }

    fn mapped(map: Mapped) -> Window {
        let b = map.bytes();
        Window {
            ptr: b.as_ptr(),
            len: b.len(),
            heap: Vec::new(),
            map: Some(map),
        }
    }

    /// The buffer, to read into (never a mapped window's).
    fn heap_mut(&mut self) -> &mut [u8] {
        debug_assert!(self.map.is_none());
        let b = self.heap.as_mut_slice();
        self.ptr = b.as_ptr();
        b
    }

    /// Puts `heap` in place of the buffer, and returns the buffer.
    fn swap_heap(&mut self, heap: Vec<u8>) -> Vec<u8> {
        let old = std::mem::replace(self, Window::heap(heap));
        old.heap
    }
}

impl std::ops::Deref for Window {
    type Target = [u8];

    #[inline(always)]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` and `len` are those of `heap` or of the mapping, both owned.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

pub(crate) struct Source<R> {
    inner: R,
    /// Read through `buf[pos..end]`; mapped, `buf` is the whole file, `base` 0 and `end`
    /// the end of the part handed out so far.
    buf: Window,
    pos: usize,
    end: usize,
    /// File offset of `buf[0]`, modulo 2^64: with read-ahead, `buf[0]` may lie before
    /// the file's start (headroom of the first chunk).
    base: u64,
    /// Where the data ends: the file's length when it was opened.
    limit: u64,
    crc: Option<Digest>,
    /// `buf[..crc_pos]` has been fed to the CRC.
    crc_pos: usize,
    /// The CRC runs from the file's start on the read-ahead thread (`crc` stays `None`).
    crc_in_feed: bool,
    /// An I/O error that ended the data early; reported instead of a truncation.
    io_error: Option<String>,
    /// Read-ahead on another thread; `inner` is not read when this is set.
    feed: Option<Prefetch>,
}

impl Source<File> {
    /// A source over a whole file. Big files are read ahead on a second core when one is
    /// free (see `prefetch`: the kernel's copy is then off the parser's core); otherwise
    /// files of a megabyte or more are mapped (see `mapped`), smaller ones read through the
    /// buffer.
    pub fn open_file(file: File, len: u64) -> Self {
        Self::open_file_crc(file, len, true)
    }

    /// [`open_file`](Self::open_file) for a file that may need no CRC from its start
    /// (`crc` false: an AOF without an RDB preamble): the read-ahead thread then runs none,
    /// and a CRC asked for all the same is run by the parser.
    pub fn open_file_crc(file: File, len: u64, crc: bool) -> Self {
        if let Some(feed) = Prefetch::start(&file, len, crc) {
            return Source {
                feed: Some(feed),
                ..Source::over(file, Window::heap(Vec::new()), 0, len)
            };
        }
        Self::mapped(file, len).unwrap_or_else(|file| Source::new(file, 0, len))
    }

    /// A source over a whole file, mapped; the file back when it is under a megabyte or
    /// cannot be mapped.
    pub fn mapped(file: File, len: u64) -> Result<Self, File> {
        if len >= BUF_SIZE as u64 {
            if let Some(map) = Mapped::new(&file, len) {
                return Ok(Source::over(file, Window::mapped(map), 0, len));
            }
        }
        Err(file)
    }

    /// Whether the file is read through a mapping.
    pub fn is_mapped(&self) -> bool {
        self.buf.map.is_some()
    }

    /// Makes the data of a mapped source end at `limit` (at most the file's length):
    /// reads past it fail as past the end.
    pub fn set_limit(&mut self, limit: u64) {
        debug_assert!(self.buf.map.is_some() && self.base == 0);
        let len = self
            .buf
            .map
            .as_ref()
            .map_or(u64::MAX, |m| m.bytes().len() as u64);
        self.limit = limit.min(len);
        // Bytes handed out past it are taken back.
        self.end = self.end.min(self.limit as usize).max(self.pos);
    }

    /// Moves a mapped source to offset `at` (not past its end), with no CRC running. The
    /// bytes already handed out stay so when `at` is among them: a search for where
    /// records start moves back and forth over a few KiB thousands of times, and handing
    /// them out again each time (a `statx` and two `madvise` calls) was most of its time.
    pub fn reposition(&mut self, at: u64) {
        debug_assert!(self.buf.map.is_some() && self.base == 0);
        let at = at.min(self.limit) as usize;
        self.pos = at;
        self.end = self.end.max(at);
        self.crc = None;
        self.crc_pos = at;
    }

    /// [`reposition`](Self::reposition), the CRC then running on from `crc` (that of the
    /// bytes before `at`, read elsewhere).
    pub fn resume_at(&mut self, at: u64, crc: Option<Digest>) {
        self.reposition(at);
        self.crc = crc;
    }
}

impl<R: Read> Source<R> {
    /// `start` is the file offset the reader is positioned at; `limit` the file length.
    pub fn new(inner: R, start: u64, limit: u64) -> Self {
        Self::over(inner, Window::heap(vec![0; BUF_SIZE]), start, limit)
    }

    /// [`new`](Self::new) reading through `buf` (a buffer of its own is not made, only
    /// to be dropped, when a file is read ahead or mapped).
    fn over(inner: R, buf: Window, start: u64, limit: u64) -> Self {
        Source {
            inner,
            buf,
            pos: 0,
            end: 0,
            base: start,
            limit,
            crc: None,
            crc_pos: 0,
            crc_in_feed: false,
            io_error: None,
            feed: None,
        }
    }

    #[inline]
    pub fn offset(&self) -> u64 {
        self.base.wrapping_add(self.pos as u64)
    }

    /// Bytes left in the file from the current position.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.offset())
    }

    /// Why the data ended early, when a read failed (or was stopped), or a mapped file
    /// shrank while it was read.
    pub fn io_error(&self) -> Option<&str> {
        if self.buf.map.as_ref().is_some_and(Mapped::cut) {
            return Some(CUT);
        }
        self.io_error.as_deref()
    }

    /// Starts a CRC over every byte consumed from now on.
    pub fn start_crc(&mut self) {
        self.crc_in_feed = self.feed.as_ref().is_some_and(|f| f.crc) && self.offset() == 0;
        self.crc = (!self.crc_in_feed).then(|| Digest::new(CrcAlgorithm::Crc64Redis));
        self.crc_pos = self.pos;
    }

    /// The CRC of the bytes consumed since `start_crc`.
    pub fn crc(&mut self) -> u64 {
        if self.crc_in_feed {
            let at = self.offset();
            let from = self.base.wrapping_add(self.crc_pos as u64);
            let buffered = &self.buf[self.crc_pos..self.end];
            if let Some(c) = self
                .feed
                .as_ref()
                .and_then(|f| f.crc_at(at, buffered, from))
            {
                return c;
            }
        }
        self.feed_crc();
        self.crc.as_ref().map(|d| d.finalize()).unwrap_or(0)
    }

    /// The running CRC of the bytes consumed since `start_crc`, to be combined with another
    /// part's; `None` when none runs here.
    pub fn crc_digest(&mut self) -> Option<Digest> {
        self.feed_crc();
        self.crc
    }

    pub fn stop_crc(&mut self) {
        self.crc = None;
        self.crc_in_feed = false;
    }

    fn feed_crc(&mut self) {
        if let Some(digest) = self.crc.as_mut() {
            digest.update(&self.buf[self.crc_pos..self.pos]);
        }
        self.crc_pos = self.pos;
    }

    /// Makes at least `n` (at most `BUF_SIZE`) bytes available contiguously, or reports the
    /// end of the file.
    pub fn fill(&mut self, n: usize) -> Result<(), ParseError> {
        debug_assert!(n <= BUF_SIZE);
        if self.end - self.pos >= n {
            return Ok(());
        }
        self.refill(n)
    }

    #[cold]
    fn refill(&mut self, n: usize) -> Result<(), ParseError> {
        if (n as u64) > self.remaining() {
            return Err(self.eof(n as u64));
        }
        if reading_stopped() {
            self.io_error = Some("stopped: nobody waits for this reading any more".into());
            self.limit = self.base.wrapping_add(self.end as u64);
            return Err(self.eof(n as u64));
        }
        self.feed_crc();
        if self.feed.is_some() {
            return self.refill_from_feed(n);
        }
        if let Some(map) = &self.buf.map {
            // A mapped file: hand out the next part, giving back what lies well behind.
            if map.cut() {
                self.limit = self.end as u64;
                return Err(self.eof(n as u64));
            }
            map.release_before(self.pos);
            let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
            let end = self.pos.saturating_add(n.max(MAP_STEP)).min(limit);
            map.populate(self.end, end);
            self.end = end;
            return Ok(());
        }
        let buf = self.buf.heap_mut();
        buf.copy_within(self.pos..self.end, 0);
        self.base += self.pos as u64;
        self.end -= self.pos;
        self.pos = 0;
        self.crc_pos = 0;
        // Never read past the limit: the file may be growing under us.
        let want_total = (BUF_SIZE as u64).min(self.limit - self.base) as usize;
        while self.end < n {
            match self.inner.read(&mut buf[self.end..want_total]) {
                Ok(0) => break,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.io_error = Some(e.to_string());
                    self.limit = self.base + self.end as u64;
                    break;
                }
            }
        }
        if self.end < n {
            self.limit = self.base + self.end as u64;
            return Err(self.eof(n as u64));
        }
        Ok(())
    }

    /// `refill` with read-ahead: takes the next chunk instead of calling `read`, moving the
    /// unconsumed tail into the chunk's headroom so the bytes stay contiguous.
    fn refill_from_feed(&mut self, n: usize) -> Result<(), ParseError> {
        while self.end - self.pos < n {
            let Some(feed) = self.feed.as_mut() else {
                break;
            };
            match feed.next() {
                Some(Ok(chunk)) => {
                    let tail = self.end - self.pos;
                    // `tail < n <= BUF_SIZE == HEAD`: it fits in front of the chunk.
                    let start = HEAD - tail;
                    let mut buf = chunk.buf;
                    buf[start..HEAD].copy_from_slice(&self.buf[self.pos..self.end]);
                    let at = self.base.wrapping_add(self.pos as u64);
                    feed.recycle(self.buf.swap_heap(buf));
                    self.base = at.wrapping_sub(start as u64);
                    self.pos = start;
                    // Bytes before the tail are gone: with the CRC in the feed, `crc_pos`
                    // only marks where the buffer's file bytes begin.
                    self.crc_pos = start;
                    self.end = HEAD + chunk.len;
                }
                Some(Err(e)) => {
                    self.io_error = Some(e);
                    break;
                }
                None => break,
            }
        }
        if self.end - self.pos < n {
            self.limit = self.base.wrapping_add(self.end as u64);
            return Err(self.eof(n as u64));
        }
        Ok(())
    }

    /// The error for wanting `n` more bytes than the file has.
    pub fn eof(&self, n: u64) -> ParseError {
        let at = self.offset();
        ParseError::truncated(
            self.limit,
            format!(
                "{n} more byte(s) at offset {at}, but the file ends at {}",
                self.limit
            ),
        )
    }

    /// Checks that a claimed length fits in what is left of the file.
    pub fn check_len(&self, n: u64, what: &str) -> Result<(), ParseError> {
        if n > self.remaining() {
            return Err(ParseError::truncated(
                self.limit,
                format!(
                    "{what} of {n} byte(s) at offset {}, but the file ends at {}",
                    self.offset(),
                    self.limit
                ),
            ));
        }
        Ok(())
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, ParseError> {
        if self.pos < self.end {
            let b = self.buf[self.pos];
            self.pos += 1;
            return Ok(b);
        }
        self.fill(1)?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// Consumes `n` (at most `BUF_SIZE`) bytes and returns them.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&[u8], ParseError> {
        self.fill(n)?;
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// Every buffered byte from the current position, at least `min` of them.
    pub fn peek(&mut self, min: usize) -> Result<&[u8], ParseError> {
        self.fill(min)?;
        Ok(&self.buf[self.pos..self.end])
    }

    /// [`buffered`](Self::buffered), but none of the bytes from file offset `stop` on.
    #[inline]
    pub fn buffered_before(&self, stop: u64) -> &[u8] {
        let b = self.buffered();
        let left = stop.saturating_sub(self.offset());
        &b[..b.len().min(usize::try_from(left).unwrap_or(usize::MAX))]
    }

    /// The bytes already buffered from the current position (maybe none); reads nothing.
    #[inline]
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// The last `n` bytes consumed, while they are still buffered (no read since).
    #[inline]
    pub fn behind(&self, n: usize) -> &[u8] {
        &self.buf[self.pos - n..self.pos]
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.end);
        self.pos += n;
    }

    /// Consumes `n` bytes without keeping them (they still go through the CRC).
    pub fn skip(&mut self, n: u64) -> Result<(), ParseError> {
        self.check_len(n, "data")?;
        let mut left = n;
        while left > 0 {
            if self.pos == self.end {
                self.fill(1)?;
            }
            let k = ((self.end - self.pos) as u64).min(left) as usize;
            self.pos += k;
            left -= k as u64;
        }
        Ok(())
    }

    /// Consumes `n` bytes, appending them to `out`.
    pub fn copy_to(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), ParseError> {
        self.check_len(n, "data")?;
        let mut left = n;
        out.reserve(n as usize);
        while left > 0 {
            if self.pos == self.end {
                self.fill(1)?;
            }
            let k = ((self.end - self.pos) as u64).min(left) as usize;
            out.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
            left -= k as u64;
        }
        Ok(())
    }

    /// Whether the file has no more bytes.
    pub fn at_end(&mut self) -> bool {
        self.pos == self.end && self.fill(1).is_err()
    }

    /// Reads up to and including the next `\n`, at most `max` bytes; `None` when the line
    /// is longer than `max` or the file ends first.
    pub fn line(&mut self, max: usize, out: &mut Vec<u8>) -> Result<bool, ParseError> {
        out.clear();
        loop {
            if self.pos == self.end {
                self.fill(1)?;
            }
            let avail = &self.buf[self.pos..self.end];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                out.extend_from_slice(&avail[..=i]);
                self.pos += i + 1;
                return Ok(out.len() <= max);
            }
            out.extend_from_slice(avail);
            self.pos = self.end;
            if out.len() > max {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_redis_test_vector() {
        // From Redis' crc64.c self test.
        assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn crc64_of_two_digests_is_that_of_their_bytes_in_turn() {
        let bytes: Vec<u8> = (0u64..70_000)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
            .collect();
        let digest = |b: &[u8]| {
            let mut d = Digest::new(CrcAlgorithm::Crc64Redis);
            d.update(b);
            d
        };
        for (a, b) in [
            (0, 0),
            (0, 9),
            (9, 0),
            (1, 1),
            (9, 9),
            (100, 7),
            (5, 65_536),
            (70_000, 0),
        ] {
            let (first, then) = (digest(&bytes[..a]), digest(&bytes[a..a + b]));
            let mut both = crc64_then(&first, &then);
            assert_eq!(both.finalize(), crc64(&bytes[..a + b]), "{a} then {b}");
            // It goes on.
            let rest = &bytes[a + b..(a + b + 1000).min(bytes.len())];
            both.update(rest);
            assert_eq!(both.finalize(), crc64(&bytes[..a + b + rest.len()]));
            // As crc-fast's own combining gives it.
            let mut slow = first;
            slow.combine(&then);
            assert_eq!(slow.finalize(), crc64(&bytes[..a + b]));
        }
    }

    #[test]
    fn reads_across_refills_and_tracks_crc() {
        let data: Vec<u8> = (0..3 * BUF_SIZE + 17).map(|i| (i * 7) as u8).collect();
        let mut src = Source::new(&data[..], 0, data.len() as u64);
        src.start_crc();
        src.skip(BUF_SIZE as u64 - 3).unwrap();
        assert_eq!(src.bytes(10).unwrap(), &data[BUF_SIZE - 3..BUF_SIZE + 7]);
        let mut v = Vec::new();
        src.copy_to(BUF_SIZE as u64 + 5, &mut v).unwrap();
        assert_eq!(&v[..], &data[BUF_SIZE + 7..2 * BUF_SIZE + 12]);
        let rest = src.remaining();
        src.skip(rest).unwrap();
        assert!(src.at_end());
        assert_eq!(src.crc(), crc64(&data));
        assert!(src.u8().is_err());
    }

    /// A file of `data` opened as the reader opens it on a thread with no read-ahead (one
    /// core, or a worker of `check_paths`): mapped from a megabyte up.
    fn mapped_source(data: &[u8]) -> (tempfile::NamedTempFile, Source<File>) {
        super::super::prefetch::one_core_on_this_thread();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, data).unwrap();
        let file = File::open(f.path()).unwrap();
        let src = Source::open_file(file, data.len() as u64);
        (f, src)
    }

    #[test]
    fn a_mapped_file_reads_as_one_read_through_the_buffer() {
        // No newline but one, past the end of the part handed out when the line starts.
        let mut data: Vec<u8> = (0..5 * MAP_STEP + 17)
            .map(|i| (i * 7) as u8 | 0x80)
            .collect();
        data[2 * MAP_STEP + 100] = b'\n';
        let (_f, mut src) = mapped_source(&data);
        assert!(src.buf.map.is_some());
        src.start_crc();
        src.skip(MAP_STEP as u64 - 3).unwrap();
        // Across the part handed out: still one slice.
        assert_eq!(src.bytes(10).unwrap(), &data[MAP_STEP - 3..MAP_STEP + 7]);
        let mut line = Vec::new();
        assert!(src.line(2 * MAP_STEP, &mut line).unwrap());
        assert_eq!(&line[..], &data[MAP_STEP + 7..2 * MAP_STEP + 101]);
        let at = src.offset() as usize;
        let mut v = Vec::new();
        src.copy_to(2 * MAP_STEP as u64 + 5, &mut v).unwrap();
        assert_eq!(&v[..], &data[at..at + 2 * MAP_STEP + 5]);
        assert_eq!(
            src.behind(5),
            &data[at + 2 * MAP_STEP..at + 2 * MAP_STEP + 5]
        );
        let rest = src.remaining();
        src.skip(rest).unwrap();
        assert!(src.at_end());
        assert_eq!(src.crc(), crc64(&data));
        assert!(src.u8().is_err());
        assert!(src.io_error().is_none());
    }

    #[test]
    fn a_mapped_file_cut_while_it_is_read_ends_with_a_read_error() {
        let data = vec![7u8; 6 * MAP_STEP];
        let (f, mut src) = mapped_source(&data);
        assert!(src.buf.map.is_some());
        src.skip(MAP_STEP as u64 + 1).unwrap();
        f.as_file().set_len(2 * MAP_STEP as u64 + 100).unwrap();
        // Up to where the reader hands out parts, then the cut is seen.
        assert!(src.skip(4 * MAP_STEP as u64).is_err());
        assert_eq!(src.io_error(), Some(CUT));
        assert!(src.at_end());
    }

    #[test]
    fn a_file_shorter_than_its_length_ends_early_without_panic() {
        let data = vec![7u8; 3 * BUF_SIZE + 100];
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        std::io::Seek::rewind(&mut f).unwrap();
        // As if the file had been truncated after its length was taken.
        let claimed = data.len() as u64 + 5000;
        let mut src = Source::open_file(f, claimed);
        assert!(src.skip(data.len() as u64 - 10).is_ok());
        assert!(src.skip(100).is_err());
        assert!(src.at_end());
        assert!(src.u8().is_err());
    }

    #[test]
    fn reading_ends_at_the_next_refill_once_stopped_and_only_inside_the_scope() {
        let data = vec![7u8; 3 * BUF_SIZE];
        let stop = Arc::new(AtomicBool::new(false));
        reading_stops_when(Some(stop.clone()), || {
            let mut src = Source::new(&data[..], 0, data.len() as u64);
            assert!(src.skip(BUF_SIZE as u64 + 1).is_ok());
            stop.store(true, Ordering::Relaxed);
            assert!(src.skip(BUF_SIZE as u64).is_err());
            assert!(src.io_error().is_some_and(|e| e.contains("stopped")));
            assert!(reading_stop().is_some());
        });
        // Outside the scope the thread reads as before.
        assert!(reading_stop().is_none());
        let mut src = Source::new(&data[..], 0, data.len() as u64);
        assert!(src.skip(data.len() as u64).is_ok());
    }

    #[test]
    fn a_claimed_length_beyond_the_file_is_refused() {
        let data = [1u8; 10];
        let mut src = Source::new(&data[..], 0, 10);
        assert!(src.skip(11).is_err());
        assert!(src.check_len(10, "x").is_ok());
        let mut v = Vec::new();
        assert!(src.copy_to(u64::MAX, &mut v).is_err());
        assert!(v.capacity() < 1024);
    }
}
