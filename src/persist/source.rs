//! A buffered, offset-tracking byte source over a persistence file, with an optional
//! running CRC-64 of every byte consumed.
//!
//! Every read is checked against the bytes the file really has, so a length field can
//! never make the reader allocate or wait for more than the file holds.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;

use crc_fast::{CrcAlgorithm, Digest};

use super::error::ParseError;
use super::mapping::{page_size, Mapping};

/// Big enough that the per-refill cost vanishes next to the parsing; small enough to stay
/// far inside the reader's memory budget.
pub(crate) const BUF_SIZE: usize = 1 << 20;

/// CRC-64 of a whole byte slice, as Redis computes it for an RDB file (Jones polynomial,
/// reflected). `crc-fast` folds with carry-less multiplication (PCLMULQDQ): several times
/// the speed of the `crc` crate's slicing-by-16 tables, which made the CRC a fifth of the
/// reader's time.
pub fn crc64(bytes: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Redis, bytes)
}

/// Files at least this big are mapped rather than read.
const MAP_THRESHOLD: u64 = 8 << 20;
/// Bytes mapped at a time.
const MAP_WINDOW: usize = 16 << 20;

/// The bytes being parsed: a buffer filled by `read`, or a window mapped from the file.
enum Buf {
    Owned(Vec<u8>),
    Mapped(Mapping),
}

impl Deref for Buf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Owned(v) => v,
            Buf::Mapped(m) => m,
        }
    }
}

pub(crate) struct Source<R> {
    inner: R,
    buf: Buf,
    pos: usize,
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    /// Where the data ends: the file's length when it was opened.
    limit: u64,
    crc: Option<Digest>,
    /// `buf[..crc_pos]` has been fed to the CRC.
    crc_pos: usize,
    /// An I/O error that ended the data early; reported instead of a truncation.
    io_error: Option<String>,
    /// The file to map windows of, when this source maps.
    map_file: Option<File>,
}

impl Source<File> {
    /// A source over a whole file: mapped window by window when it is big, read otherwise.
    pub fn open_file(file: File, len: u64) -> Self {
        if len < MAP_THRESHOLD {
            return Source::new(file, 0, len);
        }
        let mut src = Source::new(file, 0, len);
        src.map_file = src.inner.try_clone().ok();
        if src.map_file.is_some() {
            src.buf = Buf::Owned(Vec::new());
        }
        src
    }
}

impl<R: Read> Source<R> {
    /// `start` is the file offset the reader is positioned at; `limit` the file length.
    pub fn new(inner: R, start: u64, limit: u64) -> Self {
        Source {
            inner,
            buf: Buf::Owned(vec![0; BUF_SIZE]),
            pos: 0,
            end: 0,
            base: start,
            limit,
            crc: None,
            crc_pos: 0,
            io_error: None,
            map_file: None,
        }
    }

    #[inline]
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes left in the file from the current position.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.offset())
    }

    pub fn io_error(&self) -> Option<&str> {
        self.io_error.as_deref()
    }

    /// Starts a CRC over every byte consumed from now on.
    pub fn start_crc(&mut self) {
        self.crc = Some(Digest::new(CrcAlgorithm::Crc64Redis));
        self.crc_pos = self.pos;
    }

    /// The CRC of the bytes consumed since `start_crc`.
    pub fn crc(&mut self) -> u64 {
        self.feed_crc();
        self.crc.as_ref().map(|d| d.finalize()).unwrap_or(0)
    }

    pub fn stop_crc(&mut self) {
        self.crc = None;
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
        self.feed_crc();
        if self.map_file.is_some() {
            return self.remap(n);
        }
        let Buf::Owned(buf) = &mut self.buf else {
            unreachable!("checked above")
        };
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

    /// Moves the mapped window so that it starts at (the page holding) the current offset.
    fn remap(&mut self, n: usize) -> Result<(), ParseError> {
        let at = self.offset();
        let start = at - at % page_size();
        let len = ((MAP_WINDOW.max(n + (at - start) as usize)) as u64).min(self.limit - start);
        // The old window goes before the new one comes: one window resident at a time.
        self.buf = Buf::Owned(Vec::new());
        (self.base, self.pos, self.end, self.crc_pos) = (at, 0, 0, 0);
        let Some(file) = self.map_file.as_ref() else {
            return Err(self.eof(n as u64));
        };
        match Mapping::new(file, start, len as usize) {
            Ok(m) => {
                self.buf = Buf::Mapped(m);
                self.base = start;
                self.pos = (at - start) as usize;
                self.crc_pos = self.pos;
                self.end = len as usize;
                if self.end - self.pos < n {
                    return Err(self.eof(n as u64));
                }
                Ok(())
            }
            Err(e) => {
                self.io_error = Some(e.to_string());
                self.limit = at;
                Err(self.eof(n as u64))
            }
        }
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

    /// The bytes already buffered from the current position (maybe none); reads nothing.
    #[inline]
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
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

    #[test]
    fn mapped_windows_read_like_a_buffer() {
        let data: Vec<u8> = (0..(MAP_WINDOW * 2 + 12345))
            .map(|i| (i * 13 + i / 7) as u8)
            .collect();
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        let mut src = Source::open_file(f, data.len() as u64);
        assert!(src.map_file.is_some());
        src.start_crc();
        src.skip(MAP_WINDOW as u64 - 5).unwrap();
        // Straddles the first window's end.
        assert_eq!(
            src.bytes(10).unwrap(),
            &data[MAP_WINDOW - 5..MAP_WINDOW + 5]
        );
        let mut v = Vec::new();
        src.copy_to(MAP_WINDOW as u64, &mut v).unwrap();
        assert_eq!(&v[..], &data[MAP_WINDOW + 5..2 * MAP_WINDOW + 5]);
        let rest = src.remaining();
        src.skip(rest).unwrap();
        assert!(src.at_end());
        assert_eq!(src.crc(), crc64(&data));
        assert!(src.u8().is_err());
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
