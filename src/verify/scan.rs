//! The live digest's wire: SCAN + DUMP (+ PEXPIRETIME) on one raw RESP connection, a
//! round ahead. Round r is `SCAN c_r` then the DUMPs of the keys round r-1's SCAN listed;
//! as soon as round r's SCAN reply is in, round r+1 is sent, and only then are round r's
//! DUMP replies read and decoded, straight from the receive buffer. The server never
//! waits for the client between rounds, and no reply is copied or boxed on the way to the
//! decoder (redis-rs built a `Value` tree of owned buffers per reply, most of the cost).

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

use super::VerifyError;
use crate::persist::{decode_dump_into, key_slot, DigestBuilder, Scratch};
use crate::server::{connect_stream, ShardAddr, Stream};

/// Keys asked per SCAN (and so DUMPed per round).
const BATCH: usize = 4000;
const BUF: usize = 4 << 20;

/// One reply, its bytes a range of the receive buffer (valid until the next read).
enum Reply {
    Bulk(Range<usize>),
    Nil,
    Int(i64),
    Array(i64),
    Simple,
    Error(String),
}

pub(super) struct RawConn {
    s: Stream,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    out: Vec<u8>,
    addr: String,
}

fn put(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl RawConn {
    /// Connects and authenticates.
    pub(super) fn open(addr: &ShardAddr, timeout: Duration) -> Result<RawConn, VerifyError> {
        let s = connect_stream(addr, timeout).map_err(|e| VerifyError::server(addr, e))?;
        let mut c = RawConn {
            s,
            buf: vec![0; BUF],
            pos: 0,
            end: 0,
            out: Vec::with_capacity(1 << 18),
            addr: addr.to_string(),
        };
        if let Some(pw) = &addr.password {
            c.simple(&[b"AUTH", pw.as_bytes()], "AUTH")?;
        }
        Ok(c)
    }

    fn err(&self, reason: impl std::fmt::Display) -> VerifyError {
        VerifyError::Server {
            shard: None,
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    /// One command answered `+OK`; `what` names it (never the arguments: a password).
    pub(super) fn simple(&mut self, args: &[&[u8]], what: &str) -> Result<(), VerifyError> {
        put(&mut self.out, args);
        self.flush()?;
        match self.next()? {
            Reply::Simple => Ok(()),
            Reply::Error(e) => Err(self.err(format!("{what}: {e}"))),
            _ => Err(self.err(format!("{what}: an unexpected reply"))),
        }
    }

    fn flush(&mut self) -> Result<(), VerifyError> {
        let r = self.s.write_all(&self.out).and_then(|()| self.s.flush());
        self.out.clear();
        r.map_err(|e| self.err(e))
    }

    /// Makes `buf[pos..pos + n]` received.
    fn need(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.pos < n {
            if self.pos + n > self.buf.len() {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
                if n > self.buf.len() {
                    self.buf.resize(n.next_power_of_two(), 0);
                }
            }
            let got = self.s.read(&mut self.buf[self.end..])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.end += got;
        }
        Ok(())
    }

    /// The next line's content (without CRLF), as a range.
    fn line(&mut self) -> io::Result<Range<usize>> {
        let mut scanned = 0;
        loop {
            if let Some(i) = memchr(&self.buf[self.pos + scanned..self.end]) {
                let start = self.pos;
                let lf = self.pos + scanned + i;
                self.pos = lf + 1;
                return Ok(start..lf.saturating_sub(1).max(start));
            }
            scanned = self.end - self.pos;
            self.need(scanned + 1)?;
        }
    }

    fn int(&self, r: Range<usize>) -> io::Result<i64> {
        std::str::from_utf8(&self.buf[r])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a bad RESP length"))
    }

    fn next(&mut self) -> Result<Reply, VerifyError> {
        self.next_io().map_err(|e| self.err(e))
    }

    fn next_io(&mut self) -> io::Result<Reply> {
        let l = self.line()?;
        if l.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "an empty reply"));
        }
        let (kind, rest) = (self.buf[l.start], l.start + 1..l.end);
        Ok(match kind {
            b'$' => {
                let n = self.int(rest)?;
                if n < 0 {
                    return Ok(Reply::Nil);
                }
                let n = n as usize;
                self.need(n + 2)?;
                let start = self.pos;
                self.pos += n + 2;
                Reply::Bulk(start..start + n)
            }
            b':' => Reply::Int(self.int(rest)?),
            b'*' => match self.int(rest)? {
                n if n < 0 => Reply::Nil,
                n => Reply::Array(n),
            },
            b'+' => Reply::Simple,
            b'-' => Reply::Error(String::from_utf8_lossy(&self.buf[rest]).into_owned()),
            b'_' => Reply::Nil,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a RESP reply of unknown type `{}`", other as char),
                ))
            }
        })
    }

    /// A SCAN reply: the next cursor and the keys.
    fn scan_reply(&mut self) -> Result<(u64, Vec<Vec<u8>>), VerifyError> {
        let bad = |c: &RawConn| c.err("SCAN: not a reply of a cursor and keys");
        let Reply::Array(2) = self.next()? else {
            return Err(bad(self));
        };
        let Reply::Bulk(c) = self.next()? else {
            return Err(bad(self));
        };
        let cursor = std::str::from_utf8(&self.buf[c])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(self))?;
        let Reply::Array(n) = self.next()? else {
            return Err(bad(self));
        };
        let mut keys = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match self.next()? {
                Reply::Bulk(k) => keys.push(self.buf[k].to_vec()),
                _ => return Err(bad(self)),
            }
        }
        Ok((cursor, keys))
    }

    fn send_round(&mut self, cursor: Option<u64>, keys: &[Vec<u8>], expires: bool) {
        if let Some(c) = cursor {
            let c = c.to_string();
            let n = BATCH.to_string();
            put(
                &mut self.out,
                &[b"SCAN", c.as_bytes(), b"COUNT", n.as_bytes()],
            );
        }
        for k in keys {
            put(&mut self.out, &[b"DUMP", k]);
            if expires {
                put(&mut self.out, &[b"PEXPIRETIME", k]);
            }
        }
    }

    /// Every key of the selected db into `b`; the keys SCAN listed (duplicates dropped).
    pub(super) fn scan_db(
        &mut self,
        db: u32,
        expires: bool,
        b: &mut DigestBuilder,
    ) -> Result<u64, VerifyError> {
        let mut seen: HashSet<u64> = HashSet::new();
        let mut sc = Scratch::default();
        let detail_only = !b.detail_slots().is_empty();
        let mut scanned = 0u64;
        self.send_round(Some(0), &[], expires);
        self.flush()?;
        let mut has_scan = true;
        let mut dumping: Vec<Vec<u8>> = Vec::new();
        loop {
            let (mut cursor, mut next) = (None, Vec::new());
            if has_scan {
                let (c, found) = self.scan_reply()?;
                cursor = (c != 0).then_some(c);
                for k in found {
                    if seen.insert(xxh3_64(&k)) {
                        scanned += 1;
                        if !detail_only || b.detail_slots().contains(&key_slot(&k)) {
                            next.push(k);
                        }
                    }
                }
            }
            let more = cursor.is_some() || !next.is_empty();
            if more {
                self.send_round(cursor, &next, expires);
                self.flush()?;
            }
            for key in &dumping {
                self.fold(db, key, expires, b, &mut sc)?;
            }
            if !more {
                return Ok(scanned);
            }
            dumping = next;
            has_scan = cursor.is_some();
        }
    }

    /// One key's DUMP (and PEXPIRETIME) replies into the digest.
    fn fold(
        &mut self,
        db: u32,
        key: &[u8],
        expires: bool,
        b: &mut DigestBuilder,
        sc: &mut Scratch,
    ) -> Result<(), VerifyError> {
        let key_err = |c: &RawConn, reason: String| VerifyError::Key {
            shard: None,
            addr: c.addr.clone(),
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        let value = match self.next()? {
            Reply::Bulk(r) => {
                let present = decode_dump_into(&self.buf[r], &mut b.hasher, sc)
                    .map_err(|e| key_err(self, format!("its DUMP payload: {e}")))?;
                Some(present.then(|| (b.hasher.kind(), b.hasher.finish())))
            }
            // Gone (expired or deleted) since SCAN listed it.
            Reply::Nil => None,
            Reply::Error(e) => return Err(key_err(self, format!("DUMP: {e}"))),
            _ => return Err(key_err(self, "DUMP: an unexpected reply".into())),
        };
        let expire_ms = if expires {
            match self.next()? {
                Reply::Int(-1) => None,
                Reply::Int(t) if t >= 0 => Some(t),
                Reply::Int(_) => {
                    b.digest.vanished += 1;
                    return Ok(());
                }
                Reply::Error(e) => return Err(key_err(self, format!("PEXPIRETIME: {e}"))),
                _ => return Err(key_err(self, "PEXPIRETIME: an unexpected reply".into())),
            }
        } else {
            None
        };
        match value {
            None => b.digest.vanished += 1,
            Some(Some((kind, value))) => b.add(db, key, kind, value, expire_ms),
            Some(None) => {}
        }
        Ok(())
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}
