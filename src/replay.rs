//! Replay: every key of RDB files decoded by the reader, routed by its hash slot to the
//! master that owns it, and written with `RESTORE key <abs ms> <payload> ABSTTL` (the
//! payload encoded from the decoded value in the oldest RDB types that carry it, so Redis
//! 7.0 takes what Valkey 8 or Redis 7.4 wrote) — strings, cheaper for both sides, as
//! `MSETNX` of up to 100 keys of one slot, or with an expiry `SET key value NX PXAT
//! <abs ms>`, written as RESP straight from the reader's bytes —, in pipelined batches per
//! master whose replies are read a few batches behind. Restore uses it for a run of N
//! shards into M, recovery for files newer than the server loads. The target is empty, so
//! a key that exists is an error (`BUSYKEY`, `SET ... NX`'s nil, `MSETNX`'s 0: it writes
//! none of its keys), never overwritten.
//!
//! An AOF (an `appendonlydir/` or an `*.aof` file) replays into one master: the keys of
//! its RDB base as above, then its incremental commands as the AOF holds them, in order
//! and on the same connection, each file starting in db 0 as the server's loader does (a
//! `MULTI` left open at a file's end is discarded, as the loader drops it). The commands
//! are the writes the old server propagated, deterministic (absolute expiries, script
//! effects), so the target applies what the old one did.
//!
//! A file on another host ([`ReplayFile::Remote`]) is streamed through that host (an AOF
//! directory part by part, after its manifest), decoded here as it arrives, never held
//! whole in memory nor staged on this machine's disk.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ccs::{Cluster, Database, SlotRange};
use crate::host::{FileKind, Host};
use crate::persist::{
    aof_parts, aof_parts_listed, encode_dump, key_slot, read_aof_file, read_aof_stream, read_rdb,
    read_rdb_stream, EntryVisitor, Kind, Stream, ValueBuilder, ValueSink,
};
use crate::server::ShardAddr;

/// Keys (and AOF commands) a batch carries before it is sent, and the bytes past which
/// it is sent sooner (large values).
const BATCH: usize = 2000;
const BATCH_BYTES: usize = 1 << 20;
/// Strings without an expiry a `MSETNX` carries at most (keys, and bytes of keys and
/// values): one command for many keys costs the server less than a `SET` each.
const GROUP: usize = 100;
const GROUP_BYTES: usize = 256 << 10;
/// Batches sent to a master before the replies of the oldest are read: the server always
/// has the next batch in its socket while we read what it answered.
const IN_FLIGHT: usize = 3;

/// A master and where it listens (fenced password), by the slots it owns.
pub struct Target {
    pub slots: SlotRange,
    pub addr: ShardAddr,
}

pub fn targets(cluster: &Cluster, db: &Database, fence: &str) -> Result<Vec<Target>, String> {
    db.masters()
        .map(|m| {
            let mut addr = crate::db::shard_addr(cluster, db, m.id)
                .ok_or_else(|| format!("redis:{} has no node", m.id))?;
            addr.password = Some(fence.to_string());
            Ok(Target {
                slots: m.slots.unwrap_or(SlotRange::ALL),
                addr,
            })
        })
        .collect()
}

/// Appends `n` in decimal.
fn put_num(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Appends a RESP array header: a command of `n` arguments follows.
fn put_command(buf: &mut Vec<u8>, n: usize) {
    buf.push(b'*');
    put_num(buf, n as u64);
    buf.extend_from_slice(b"\r\n");
}

/// Appends one argument as a RESP bulk string.
fn put_arg(buf: &mut Vec<u8>, arg: &[u8]) {
    buf.reserve(arg.len() + 16);
    buf.push(b'$');
    put_num(buf, arg.len() as u64);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(arg);
    buf.extend_from_slice(b"\r\n");
}

/// Appends one argument, a number, as a RESP bulk string.
fn put_num_arg(buf: &mut Vec<u8>, n: u64) {
    let mut digits = Vec::with_capacity(20);
    put_num(&mut digits, n);
    put_arg(buf, &digits);
}

/// A batch of commands on its way to a master, in RESP as the server reads it: how many
/// replies it asks for, how many keys (and AOF commands) it writes, and which of its
/// replies answer a `SET ... NX` or a `MSETNX` (nil or 0: a key existed, nothing was
/// written).
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    replies: usize,
    written: usize,
    guarded: Vec<usize>,
}

/// The batch being filled for one master.
#[derive(Default)]
struct Pending {
    batch: Batch,
    /// The db the connection has selected once what is queued has run.
    selected: Option<u32>,
    /// The arguments (key, value, ...) of the `MSETNX` being gathered, how many keys,
    /// and the db and slot they are in (a Redis Cluster refuses keys of several slots
    /// in one command).
    group: Vec<u8>,
    group_keys: usize,
    group_in: (u32, u16),
}

impl Pending {
    fn select(&mut self, db: u32) {
        if self.selected != Some(db) {
            let b = &mut self.batch;
            put_command(&mut b.buf, 2);
            put_arg(&mut b.buf, b"SELECT");
            put_num_arg(&mut b.buf, u64::from(db));
            b.replies += 1;
            self.selected = Some(db);
        }
    }

    /// The gathered strings into the batch, as one `MSETNX`: it writes them all, or
    /// none if one exists.
    fn close_group(&mut self) {
        if self.group_keys == 0 {
            return;
        }
        self.select(self.group_in.0);
        let b = &mut self.batch;
        put_command(&mut b.buf, 1 + 2 * self.group_keys);
        put_arg(&mut b.buf, b"MSETNX");
        b.buf.extend_from_slice(&self.group);
        b.guarded.push(b.replies);
        b.replies += 1;
        b.written += self.group_keys;
        self.group.clear();
        self.group_keys = 0;
    }
}

/// Why a batch did not write all it carried.
enum Unwritten {
    /// The server refused a command (its reply says why); it answered every other one.
    Refused(String),
    /// The connection broke: no more replies come.
    Broken(String),
}

impl Unwritten {
    fn reason(self) -> String {
        match self {
            Unwritten::Refused(why) | Unwritten::Broken(why) => why,
        }
    }
}

/// Reads the replies of one batch sent on `con`; returns the keys (and commands) it wrote,
/// or the first refusal. Every reply is read even after a refusal, so that the server has
/// run the whole batch when it returns (only a broken connection stops it sooner).
fn replies(con: &mut redis::Connection, sent: &Batch) -> Result<usize, Unwritten> {
    let mut guarded = sent.guarded.iter().peekable();
    let mut refused = None;
    for i in 0..sent.replies {
        let is_guarded = guarded.next_if(|&&j| j == i).is_some();
        let reply = con
            .recv_response()
            .map_err(|e| Unwritten::Broken(e.to_string()))?;
        let why = match reply {
            redis::Value::ServerError(e) => {
                format!("{} {}", e.code(), e.details().unwrap_or_default())
            }
            // `SET ... NX` answers nil, and `MSETNX` 0, where RESTORE would say BUSYKEY.
            redis::Value::Nil | redis::Value::Int(0) if is_guarded => {
                "a key already exists on the target (`SET ... NX` or `MSETNX` refused to overwrite it): the target was not empty".into()
            }
            _ => continue,
        };
        refused.get_or_insert(why);
    }
    match refused {
        Some(why) => Err(Unwritten::Refused(why)),
        None => Ok(sent.written),
    }
}

/// Sends batches to one master on its own thread, so decoding the next keys overlaps the
/// writes, and reads their replies a few batches behind, so the server never waits for
/// a round trip. Sent buffers come back through `spent` to be filled again.
///
/// On a refusal it sends nothing more, but reads the replies of every batch already sent
/// before it ends: a connection dropped with commands still in the server's socket lets
/// the server run them after the replay returned (it reads on until the close), so a
/// caller emptying the target after a failed replay would see them land after its
/// `FLUSHALL` (a `from_files` fill left 1000 keys in a master it said was EMPTY again).
struct Sender {
    tx: Option<std::sync::mpsc::SyncSender<Batch>>,
    spent: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<Result<u64, String>>>,
}

impl Sender {
    fn start(mut con: redis::Connection) -> Sender {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2);
        let (spent_tx, spent) = std::sync::mpsc::channel::<Vec<u8>>();
        let thread = std::thread::spawn(move || {
            let mut written = 0u64;
            // The first reason a write failed, and whether the connection is gone.
            let mut failed: Option<String> = None;
            let mut broken = false;
            let note = |e: Unwritten, failed: &mut Option<String>, broken: &mut bool| {
                *broken |= matches!(e, Unwritten::Broken(_));
                failed.get_or_insert(e.reason());
            };
            let mut in_flight = std::collections::VecDeque::with_capacity(IN_FLIGHT + 1);
            for mut batch in rx {
                if let Err(e) = con.send_packed_command(&batch.buf) {
                    // The batches sent before it may still run: their replies are read.
                    failed = Some(e.to_string());
                    break;
                }
                let mut buf = std::mem::take(&mut batch.buf);
                buf.clear();
                let _ = spent_tx.send(buf);
                in_flight.push_back(batch);
                if in_flight.len() > IN_FLIGHT {
                    let oldest = in_flight.pop_front().expect("a batch in flight");
                    match replies(&mut con, &oldest) {
                        Ok(n) => written += n as u64,
                        Err(e) => {
                            note(e, &mut failed, &mut broken);
                            break;
                        }
                    }
                }
            }
            // Leaving the loop drops the channel: the reader's next batch is refused.
            for b in &in_flight {
                if broken {
                    break;
                }
                match replies(&mut con, b) {
                    Ok(n) => written += n as u64,
                    Err(e) => note(e, &mut failed, &mut broken),
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(written),
            }
        });
        Sender {
            tx: Some(tx),
            spent,
            thread: Some(thread),
        }
    }

    /// Whether the batch was taken (false: the thread stopped on an error).
    fn send(&mut self, batch: Batch) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok())
    }

    fn finish(&mut self) -> Result<u64, String> {
        drop(self.tx.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("a writer thread panicked".into()),
            None => Ok(0),
        }
    }
}

/// The key being read: its master, db, slot, expiry, and (a string, written as it is
/// read) where it starts in the batch or, without an expiry, in the group.
struct Head {
    target: usize,
    db: u32,
    slot: u16,
    expire: u64,
    string_at: Option<usize>,
}

struct Writer<'a> {
    senders: Vec<Sender>,
    /// Keys handed to the senders so far, for progress.
    queued: u64,
    on_keys: &'a (dyn Fn(u64) + Sync),
    pipes: Vec<Pending>,
    slots: Vec<SlotRange>,
    cluster_mode: bool,
    builder: ValueBuilder,
    key: Vec<u8>,
    head: Option<Head>,
    written: u64,
    error: Option<String>,
    /// The db an AOF's commands run in (its `SELECT`s), and whether a `MULTI` is open.
    aof_db: u32,
    in_multi: bool,
}

impl Writer<'_> {
    /// One AOF command, as the file holds it, to the one master.
    fn command(&mut self, args: &[Vec<u8>]) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        match name.as_str() {
            "SELECT" => {
                let db = args
                    .get(1)
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .and_then(|a| a.parse::<u32>().ok())
                    .ok_or("`SELECT` without a db number")?;
                if self.cluster_mode && db != 0 {
                    return Err(format!("`SELECT {db}`: a Redis Cluster has only db 0"));
                }
                self.aof_db = db;
                return Ok(());
            }
            "MULTI" => self.in_multi = true,
            "EXEC" | "DISCARD" => self.in_multi = false,
            _ => {}
        }
        // The base's keys before the commands that change them.
        let p = &mut self.pipes[0];
        p.close_group();
        p.select(self.aof_db);
        let b = &mut p.batch;
        put_command(&mut b.buf, args.len());
        for a in args {
            put_arg(&mut b.buf, a);
        }
        b.replies += 1;
        b.written += 1;
        self.maybe_flush(0);
        Ok(())
    }

    /// A file of an AOF ends: the next starts in db 0, and an open `MULTI` is dropped.
    fn end_of_aof_file(&mut self) {
        if self.in_multi {
            self.pipes[0].close_group();
            let b = &mut self.pipes[0].batch;
            put_command(&mut b.buf, 1);
            put_arg(&mut b.buf, b"DISCARD");
            b.replies += 1;
            self.in_multi = false;
        }
        self.aof_db = 0;
    }

    fn maybe_flush(&mut self, i: usize) {
        let b = &self.pipes[i].batch;
        if b.written >= BATCH || b.buf.len() >= BATCH_BYTES {
            self.flush(i);
        }
    }

    fn flush(&mut self, i: usize) {
        if self.error.is_some() {
            return;
        }
        // The next batch goes on the same connection: its db stays selected.
        self.pipes[i].close_group();
        if self.pipes[i].batch.replies == 0 {
            return;
        }
        let buf = self.senders[i]
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES + (64 << 10)));
        let full = std::mem::replace(
            &mut self.pipes[i].batch,
            Batch {
                buf,
                ..Batch::default()
            },
        );
        self.queued += full.written as u64;
        (self.on_keys)(self.queued);
        if !self.senders[i].send(full) {
            self.error = Some(match self.senders[i].finish() {
                Err(e) => e,
                Ok(_) => "a writer stopped".into(),
            });
        }
    }
}

impl ValueSink for Writer<'_> {
    fn begin(&mut self, kind: Kind, n: u64) {
        if kind != Kind::String {
            self.builder.begin(kind, n)
        }
    }
    fn string(&mut self, s: &[u8]) {
        // A string as it is read, with no value to build nor payload to encode, and no
        // payload for the server to check and parse (the commonest type, and most of a
        // replay's time): without an expiry into the group of a `MSETNX`, else as `SET key
        // value NX PXAT <abs ms>`.
        let Some(h) = &mut self.head else {
            return;
        };
        let p = &mut self.pipes[h.target];
        if h.expire == 0 {
            let slot = if self.cluster_mode { h.slot } else { 0 };
            if p.group_keys > 0 && p.group_in != (h.db, slot) {
                p.close_group();
            }
            p.group_in = (h.db, slot);
            h.string_at = Some(p.group.len());
            put_arg(&mut p.group, &self.key);
            put_arg(&mut p.group, s);
            return;
        }
        p.select(h.db);
        let b = &mut p.batch;
        h.string_at = Some(b.buf.len());
        put_command(&mut b.buf, 6);
        put_arg(&mut b.buf, b"SET");
        put_arg(&mut b.buf, &self.key);
        put_arg(&mut b.buf, s);
        put_arg(&mut b.buf, b"NX");
        put_arg(&mut b.buf, b"PXAT");
        put_num_arg(&mut b.buf, h.expire);
    }
    fn item(&mut self, s: &[u8]) {
        self.builder.item(s)
    }
    fn scored(&mut self, m: &[u8], s: f64) {
        self.builder.scored(m, s)
    }
    fn field(&mut self, f: &[u8], v: &[u8], e: Option<i64>) {
        self.builder.field(f, v, e)
    }
    fn stream(&mut self, s: &Stream) {
        self.builder.stream(s)
    }
}

impl EntryVisitor for Writer<'_> {
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
        self.head = None;
        if self.error.is_some() {
            return;
        }
        if self.cluster_mode && db != 0 {
            self.error = Some(format!(
                "key `{}` is in logical db {db}: a Redis Cluster has only db 0",
                String::from_utf8_lossy(key)
            ));
            return;
        }
        let slot = key_slot(key);
        let Some(target) = self.slots.iter().position(|r| r.contains(slot)) else {
            self.error = Some(format!("no master owns slot {slot}"));
            return;
        };
        self.key.clear();
        self.key.extend_from_slice(key);
        self.head = Some(Head {
            target,
            db,
            slot,
            expire: expire_ms.unwrap_or(0).max(0) as u64,
            string_at: None,
        });
    }

    fn end_key(&mut self, present: bool) {
        let value = self.builder.take();
        let Some(h) = self.head.take() else {
            return;
        };
        let p = &mut self.pipes[h.target];
        if let Some(at) = h.string_at {
            if h.expire == 0 {
                if !present {
                    p.group.truncate(at);
                    return;
                }
                p.group_keys += 1;
                if p.group_keys >= GROUP || p.group.len() >= GROUP_BYTES {
                    p.close_group();
                    self.maybe_flush(h.target);
                }
                return;
            }
            let b = &mut p.batch;
            if !present {
                b.buf.truncate(at);
                return;
            }
            b.guarded.push(b.replies);
        } else {
            let (Some(value), true) = (value, present) else {
                return;
            };
            let payload = match encode_dump(&value) {
                Ok(p) => p,
                Err(e) => {
                    self.error = Some(format!("key `{}`: {e}", String::from_utf8_lossy(&self.key)));
                    return;
                }
            };
            let p = &mut self.pipes[h.target];
            p.select(h.db);
            let b = &mut p.batch;
            put_command(&mut b.buf, 5);
            put_arg(&mut b.buf, b"RESTORE");
            put_arg(&mut b.buf, &self.key);
            put_num_arg(&mut b.buf, h.expire);
            put_arg(&mut b.buf, &payload);
            put_arg(&mut b.buf, b"ABSTTL");
        }
        let b = &mut self.pipes[h.target].batch;
        b.replies += 1;
        b.written += 1;
        self.maybe_flush(h.target);
    }
}

/// Whether `path` is an AOF: an `appendonlydir/`, or a file named `*.aof` (a legacy AOF
/// may start with an RDB preamble).
fn is_aof(path: &Path) -> bool {
    path.is_dir() || path.extension().is_some_and(|e| e == "aof")
}

/// A file to replay: on this machine, or on another host and read through it.
#[derive(Clone, Debug)]
pub enum ReplayFile {
    Local(PathBuf),
    Remote {
        host: Arc<dyn Host>,
        path: PathBuf,
        /// The runtime the host's calls run on (the replay runs on a blocking thread).
        runtime: tokio::runtime::Handle,
    },
}

impl ReplayFile {
    /// `path` on the host that serves `node`: this machine's, or streamed from another.
    /// Call from within the runtime.
    pub fn on(hosts: &crate::host::Hosts, node: crate::host::NodeId, path: PathBuf) -> Self {
        if !hosts.is_remote(node) {
            return ReplayFile::Local(path);
        }
        ReplayFile::Remote {
            host: hosts.of(node),
            path,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Names it in messages: the path, and the host when it is another.
    fn shown(&self) -> String {
        match self {
            ReplayFile::Local(p) => format!("`{}`", p.display()),
            ReplayFile::Remote { host, path, .. } => {
                format!("`{}` on {}", path.display(), host.name())
            }
        }
    }
}

/// A remote file's length and a stream of its bytes, read through its host.
fn open_remote(
    host: &dyn Host,
    runtime: &tokio::runtime::Handle,
    path: &Path,
) -> Result<(u64, impl std::io::Read), String> {
    let fail = |e: std::io::Error| format!("`{}` on {}: {e}", path.display(), host.name());
    let meta = runtime.block_on(host.metadata(path)).map_err(fail)?;
    let stream = runtime.block_on(host.open_stream(path)).map_err(fail)?;
    Ok((meta.len, std::io::BufReader::with_capacity(1 << 20, stream)))
}

/// Writes an AOF into the one target: its base's keys, then its commands.
fn write_aof<'a>(file: &ReplayFile, w: Writer<'a>) -> (Writer<'a>, Result<(), String>) {
    let parts = match file {
        ReplayFile::Local(path) => aof_parts(path).map_err(|e| e.to_string()),
        ReplayFile::Remote {
            host,
            path,
            runtime,
        } => remote_aof_parts(&**host, runtime, path),
    };
    let parts = match parts {
        Ok(p) => p,
        Err(e) => return (w, Err(e)),
    };
    let cell = RefCell::new(w);
    let mut result = Ok(());
    for part in &parts {
        let mut on_command = |args: &[Vec<u8>], _| cell.borrow_mut().command(args);
        let read = match file {
            ReplayFile::Local(_) => {
                read_aof_file(part, &mut &cell, &mut on_command).map_err(|e| e.to_string())
            }
            ReplayFile::Remote { host, runtime, .. } => open_remote(&**host, runtime, part)
                .and_then(|(len, stream)| {
                    read_aof_stream(stream, len, part, &mut &cell, &mut on_command)
                        .map_err(|e| format!("{e} (on {})", host.name()))
                }),
        };
        cell.borrow_mut().end_of_aof_file();
        if let Err(e) = read {
            result = Err(e);
            break;
        }
        if cell.borrow().error.is_some() {
            break;
        }
    }
    (cell.into_inner(), result)
}

/// The parts of an AOF on another host in load order: an `appendonlydir/`'s (its
/// listing and manifest asked of the host), or the one file.
fn remote_aof_parts(
    host: &dyn Host,
    runtime: &tokio::runtime::Handle,
    path: &Path,
) -> Result<Vec<PathBuf>, String> {
    let on_host = |e: String| format!("{e} (on {})", host.name());
    let meta = runtime
        .block_on(host.metadata(path))
        .map_err(|e| on_host(format!("`{}`: {e}", path.display())))?;
    if meta.kind != FileKind::Dir {
        return Ok(vec![path.to_path_buf()]);
    }
    let files: Vec<String> = runtime
        .block_on(host.list(path))
        .map_err(|e| on_host(format!("`{}`: {e}", path.display())))?
        .into_iter()
        .filter(|e| e.kind == FileKind::File)
        .map(|e| e.name)
        .collect();
    aof_parts_listed(path, &files, &mut |m| {
        runtime.block_on(host.read_small(m, crate::persist::MANIFEST_CAP))
    })
    .map_err(|e| on_host(e.to_string()))
}

/// Writes every key of `files` into `targets` (an AOF: its keys and commands, into one
/// target); returns how many keys and commands were written. Blocking: run it on a
/// blocking thread.
pub fn write_all(
    files: &[PathBuf],
    targets: &[Target],
    cluster_mode: bool,
    on_keys: &(dyn Fn(u64) + Sync),
) -> Result<u64, String> {
    let files: Vec<ReplayFile> = files.iter().cloned().map(ReplayFile::Local).collect();
    write_files(&files, targets, cluster_mode, on_keys)
}

/// [`write_all`] of files on any host: one on another host is streamed through it.
pub fn write_files(
    files: &[ReplayFile],
    targets: &[Target],
    cluster_mode: bool,
    on_keys: &(dyn Fn(u64) + Sync),
) -> Result<u64, String> {
    let mut cons = Vec::new();
    for t in targets {
        let info = t.addr.connection_info().map_err(|e| e.to_string())?;
        let client = redis::Client::open(info).map_err(|e| format!("{}: {e}", t.addr))?;
        cons.push(Sender::start(
            client
                .get_connection()
                .map_err(|e| format!("{}: {e}", t.addr))?,
        ));
    }
    let mut w = Writer {
        pipes: (0..cons.len()).map(|_| Pending::default()).collect(),
        senders: cons,
        queued: 0,
        on_keys,
        slots: targets.iter().map(|t| t.slots).collect(),
        cluster_mode,
        builder: ValueBuilder::default(),
        key: Vec::new(),
        head: None,
        written: 0,
        error: None,
        aof_db: 0,
        in_multi: false,
    };
    let mut result = Ok(());
    for f in files {
        let aof = match f {
            ReplayFile::Local(p) => is_aof(p),
            ReplayFile::Remote {
                host,
                path,
                runtime,
            } => {
                path.extension().is_some_and(|e| e == "aof")
                    || runtime
                        .block_on(host.metadata(path))
                        .is_ok_and(|m| m.kind == FileKind::Dir)
            }
        };
        if aof {
            if targets.len() != 1 {
                result = Err(format!(
                    "{} is an AOF: it replays into one master, not {}",
                    f.shown(),
                    targets.len()
                ));
                break;
            }
            let (back, r) = write_aof(f, w);
            w = back;
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        } else {
            let read = match f {
                ReplayFile::Local(p) => read_rdb(p, &mut w).map(|_| ()).map_err(|e| e.to_string()),
                ReplayFile::Remote {
                    host,
                    path,
                    runtime,
                } => open_remote(&**host, runtime, path).and_then(|(len, stream)| {
                    read_rdb_stream(stream, Some(len), &mut w)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }),
            };
            if let Err(e) = read {
                result = Err(format!("{}: {e}", f.shown()));
                break;
            }
        }
        if w.error.is_some() {
            break;
        }
    }
    for i in 0..targets.len() {
        w.flush(i);
    }
    for s in &mut w.senders {
        match s.finish() {
            Ok(n) => w.written += n,
            Err(e) => {
                w.error.get_or_insert(e);
            }
        }
    }
    result?;
    match w.error {
        Some(e) => Err(e),
        None => Ok(w.written),
    }
}
