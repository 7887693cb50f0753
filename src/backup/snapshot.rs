//! One shard's snapshot over the replication protocol, as `redis-cli --rdb` takes it:
//! `REPLCONF capa eof`, `REPLCONF rdb-only 1`, then `SYNC` (`PSYNC ? -1` for a backup's
//! cut, whose `+FULLRESYNC` says the save has started). The server forks and streams
//! its RDB (diskless: `$EOF:<40-byte mark>` ... mark; from disk: `$<len>` ...); the bytes
//! go to a temporary file, through SHA-256, and through the reader, in one pass.
//!
//! Blocking I/O on its own thread: the reader is synchronous and pulls the bytes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::persist::{check_rdb_stream, CheckOptions, FileReport};
use crate::server::{connect_stream, ShardAddr, Stream};

use super::repo::PartFile;

const MARK_LEN: usize = 40;
const CHUNK: usize = 1 << 20;
/// A transfer that sends nothing for this long is dead (the fork streams continuously).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection set up for `SYNC` (authenticated, capabilities sent), ready to start the
/// snapshot inside the write pause.
pub struct SnapshotConn {
    reader: BufReader<Stream>,
    addr: String,
}

/// Whether the server has started the save streamed to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStart {
    /// Started (forked, or joined to a save already running) at this replication offset.
    Started { offset: u64 },
    /// Not yet: another child (a save, an AOF rewrite) runs and the server waits for it.
    Waiting,
}

/// How the server frames the payload.
#[derive(Clone, Debug)]
pub enum Framing {
    /// `$<len>`: a disk-based transfer of a known length.
    Len(u64),
    /// `$EOF:<mark>`: diskless, ends with the mark.
    Mark([u8; MARK_LEN]),
}

/// What streaming a snapshot produced.
pub struct Streamed {
    pub report: FileReport,
    pub bytes: u64,
    pub sha256: String,
}

impl SnapshotConn {
    /// Connects (over TLS when the shard speaks it), authenticates and announces an
    /// RDB-only replica with EOF-mark support.
    pub fn open(shard: &ShardAddr, timeout: Duration) -> Result<SnapshotConn, String> {
        let password = shard.password.as_deref();
        let addr = format!("{}:{}", shard.host, shard.port);
        let stream = connect_stream(shard, timeout)?;
        let mut conn = SnapshotConn {
            reader: BufReader::with_capacity(CHUNK, stream),
            addr,
        };
        if let Some(pw) = password {
            conn.command(&["AUTH", pw], "AUTH")?;
        }
        conn.command(&["REPLCONF", "capa", "eof"], "REPLCONF capa eof")?;
        conn.command(&["REPLCONF", "rdb-only", "1"], "REPLCONF rdb-only 1")?;
        Ok(conn)
    }

    /// Sends one command and expects `+...`; `what` names it in errors (never the args,
    /// which may hold a password).
    fn command(&mut self, args: &[&str], what: &str) -> Result<(), String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.reader
            .get_mut()
            .write_all(&out)
            .map_err(|e| format!("`{}`: {what}: {e}", self.addr))?;
        let line = self
            .line()
            .map_err(|e| format!("`{}`: {what}: {e}", self.addr))?;
        if line.starts_with('+') {
            Ok(())
        } else {
            Err(format!(
                "`{}`: {what} answered `{}`",
                self.addr,
                line.trim()
            ))
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        self.reader.read_until(b'\n', &mut buf)?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Sends `SYNC`: the server forks (at once: diskless, no delay) and streams.
    pub fn send_sync(&mut self) -> Result<(), String> {
        self.reader
            .get_mut()
            .write_all(b"SYNC\r\n")
            .map_err(|e| format!("`{}`: SYNC: {e}", self.addr))
    }

    /// Asks for a full resynchronisation (`PSYNC ? -1`): the server answers
    /// `+FULLRESYNC <replid> <offset>` when the save it streams to this connection
    /// starts, not before (a save or AOF rewrite running makes it wait for the next), so
    /// that answer, unlike the server's fork count, is this snapshot's own.
    pub fn send_psync(&mut self) -> Result<(), String> {
        self.reader
            .get_mut()
            .write_all(b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
            .map_err(|e| format!("`{}`: PSYNC: {e}", self.addr))
    }

    /// Waits until `deadline` for the `+FULLRESYNC` after [`send_psync`](Self::send_psync):
    /// the replication offset the snapshot is taken at ([`SnapshotStart::Started`]), or
    /// [`SnapshotStart::Waiting`] when the server has not started it by then.
    pub fn wait_start(&mut self, deadline: Instant) -> Result<SnapshotStart, String> {
        let addr = self.addr.clone();
        let fail = |e: String| format!("`{addr}`: PSYNC: {e}");
        let mut buf = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(SnapshotStart::Waiting);
            }
            let _ = self.reader.get_ref().tcp().set_read_timeout(Some(left));
            // A read cut short by the timeout keeps what it read in `buf`.
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => return Err(fail("the server closed the connection".into())),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(fail(e.to_string())),
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            buf.clear();
            // Keep-alive newlines while the server waits to start the save.
            if line.is_empty() {
                continue;
            }
            let offset = line
                .strip_prefix("+FULLRESYNC ")
                .and_then(|rest| rest.split(' ').nth(1))
                .and_then(|o| o.parse().ok())
                .ok_or_else(|| fail(format!("answered `{line}`")))?;
            return Ok(SnapshotStart::Started { offset });
        }
    }

    /// Reads the payload's header (after keep-alive newlines): its framing.
    pub fn header(&mut self) -> Result<Framing, String> {
        let addr = self.addr.clone();
        let fail = |e: String| format!("`{addr}`: SYNC: {e}");
        let _ = self
            .reader
            .get_ref()
            .tcp()
            .set_read_timeout(Some(IDLE_TIMEOUT));
        loop {
            let line = self.line().map_err(|e| fail(e.to_string()))?;
            // Keep-alive newlines while a disk-based save runs.
            if line == "\n" || line == "\r\n" {
                continue;
            }
            let line = line.trim_end();
            if let Some(mark) = line.strip_prefix("$EOF:") {
                let mark: [u8; MARK_LEN] = mark
                    .as_bytes()
                    .try_into()
                    .map_err(|_| fail(format!("a bad EOF mark `{line}`")))?;
                return Ok(Framing::Mark(mark));
            }
            if let Some(len) = line.strip_prefix('$').and_then(|n| n.parse().ok()) {
                return Ok(Framing::Len(len));
            }
            if line.starts_with("+FULLRESYNC") {
                continue;
            }
            return Err(fail(format!("answered `{line}`")));
        }
    }

    /// Streams the payload into `file`, hashing it and checking it with the reader as it
    /// comes; `on_bytes` hears the running total. The file is not synced or renamed here.
    pub fn stream(
        mut self,
        name: &Path,
        file: &mut PartFile,
        opts: &CheckOptions,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<Streamed, String> {
        let framing = self.header()?;
        let addr = self.addr.clone();
        let len = match framing {
            Framing::Len(n) => Some(n),
            Framing::Mark(_) => None,
        };
        let mut tee = Tee::new(self.reader, framing, Some(file), on_bytes);
        let report = check_rdb_stream(name, &mut tee, len, opts);
        // Whatever the reader left (it stops at the RDB's end), the file gets it all.
        if tee.write_error.is_none() && tee.read_error.is_none() {
            let mut sink = vec![0u8; 64 * 1024];
            while !tee.done {
                match tee.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        if let Some(e) = tee.write_error.take() {
            let path = tee.file.as_ref().map(|f| f.path().display().to_string());
            return Err(format!("cannot write `{}`: {e}", path.unwrap_or_default()));
        }
        if let Some(e) = tee.read_error.take() {
            return Err(format!(
                "`{addr}`: the transfer broke after {} bytes: {e}",
                tee.bytes
            ));
        }
        let sha256 = hex(&tee.hasher.take().unwrap_or_default().finalize());
        Ok(Streamed {
            report,
            bytes: tee.bytes,
            sha256,
        })
    }

    /// Reads the payload into a content digest (no file, no hash): the server's own
    /// serialisation of what it holds, read by the same reader as the files.
    pub fn digest(
        mut self,
        now_ms: i64,
        opts: &crate::persist::DigestOptions,
    ) -> Result<crate::persist::ContentDigest, String> {
        let framing = self.header()?;
        let addr = self.addr.clone();
        let len = match framing {
            Framing::Len(n) => Some(n),
            Framing::Mark(_) => None,
        };
        let mut on_bytes = |_| {};
        let mut tee = Tee::new(self.reader, framing, None, &mut on_bytes);
        let digest = crate::persist::digest_of_rdb_stream(&mut tee, len, now_ms, opts);
        if let Some(e) = tee.read_error.take() {
            return Err(format!(
                "`{addr}`: the snapshot broke after {} bytes: {e}",
                tee.bytes
            ));
        }
        digest.map_err(|e| {
            let why = match e {
                crate::persist::RdbReadError::Io(s) => s,
                crate::persist::RdbReadError::Format(d) => d.to_string(),
            };
            format!("`{addr}`: its snapshot: {why}")
        })
    }
}

/// The payload as the reader sees it: socket bytes minus the framing, written to the file
/// and hashed on the way.
struct Tee<'a> {
    conn: BufReader<Stream>,
    framing: Framing,
    /// Received bytes; `held[pos..ready]` are payload not yet handed out, `held[ready..]`
    /// may still be the EOF mark.
    held: Vec<u8>,
    /// What a read lands in before it joins `held`: zeroed once, so a read of 64 KB does
    /// not first zero a whole chunk of `held` (a memset of 1 MB per read, 16 times the
    /// bytes a socket read returns).
    scratch: Vec<u8>,
    ready: usize,
    pos: usize,
    done: bool,
    /// Where the payload is written (none: only read).
    file: Option<&'a mut PartFile>,
    hasher: Option<Sha256>,
    bytes: u64,
    write_error: Option<io::Error>,
    read_error: Option<io::Error>,
    on_bytes: &'a mut dyn FnMut(u64),
}

impl<'a> Tee<'a> {
    /// A payload read from `conn`; with a `file`, written there and hashed on the way.
    fn new(
        conn: BufReader<Stream>,
        framing: Framing,
        file: Option<&'a mut PartFile>,
        on_bytes: &'a mut dyn FnMut(u64),
    ) -> Tee<'a> {
        Tee {
            conn,
            framing,
            held: Vec::with_capacity(CHUNK + MARK_LEN),
            scratch: vec![0; CHUNK],
            ready: 0,
            pos: 0,
            done: false,
            hasher: file.is_some().then(Sha256::new),
            file,
            bytes: 0,
            write_error: None,
            read_error: None,
            on_bytes,
        }
    }

    /// Receives the next chunk; the payload part of it becomes `held[pos..ready]`.
    fn receive(&mut self) -> io::Result<()> {
        // Keep only what may still be the mark.
        self.held.drain(..self.ready);
        self.pos = 0;
        self.ready = 0;
        let want = match self.framing {
            Framing::Len(left) => (left as usize).min(CHUNK),
            Framing::Mark(_) => CHUNK,
        };
        let n = loop {
            match self.conn.read(&mut self.scratch[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.held.extend_from_slice(&self.scratch[..n]);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before the end of the snapshot",
            ));
        }
        match &mut self.framing {
            Framing::Len(left) => {
                *left -= n as u64;
                self.ready = self.held.len();
                self.done = *left == 0;
            }
            Framing::Mark(mark) => {
                if self.held.ends_with(&mark[..]) {
                    self.ready = self.held.len() - MARK_LEN;
                    self.held.truncate(self.ready);
                    self.done = true;
                } else {
                    self.ready = self.held.len().saturating_sub(MARK_LEN);
                }
            }
        }
        let payload = &self.held[..self.ready];
        if let Some(h) = self.hasher.as_mut() {
            h.update(payload);
        }
        if let Some(Err(e)) = self.file.as_mut().map(|f| f.write_all(payload)) {
            return Err(self.write_error.insert(e).kind().into());
        }
        self.bytes += payload.len() as u64;
        (self.on_bytes)(self.bytes);
        Ok(())
    }
}

impl Read for Tee<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.ready {
            if self.done || self.write_error.is_some() || self.read_error.is_some() {
                return Ok(0);
            }
            if let Err(e) = self.receive() {
                if self.write_error.is_none() {
                    self.read_error = Some(io::Error::new(e.kind(), e.to_string()));
                }
                return Err(e);
            }
        }
        let n = out.len().min(self.ready - self.pos);
        out[..n].copy_from_slice(&self.held[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
