//! The content of an AOF for the content digest: its base (an RDB preamble or RESP
//! commands) and its incremental commands replayed, in order, into canonical values, as
//! the server's loader would apply them (no expiry while loading: a key whose TTL passed
//! stays until the digest settles it).
//!
//! The replay knows the write commands Redis 7 and Valkey 8 propagate for strings, keys,
//! hashes, lists, sets and sorted sets (relative TTLs arrive as `PEXPIREAT` / `SET ...
//! PXAT`). A command it does not know (a stream's, a HyperLogLog's, a bit operation)
//! stops the digest with [`AofContentError::NotReplayed`] naming it: the caller then leaves
//! the proof to the key counts and says why, rather than guess.
//!
//! Only the keys the incremental commands name are held in memory while the files are
//! replayed (see [`digest_of_aof`]); the base's other keys are digested as they stream.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::digest::{ContentDigest, DigestBuilder, DigestOptions};
use super::entries::{EntryVisitor, WholeEntries};
use super::rdb::{is_rdb_head, Rdb};
use super::source::Source;
use super::value::{Kind, Value, ValueSink};

/// Why an AOF's content digest was not taken.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AofContentError {
    #[error("`{path}`: cannot read it: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("`{path}` at offset {offset}: {reason}")]
    Format {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A command the replay does not model.
    #[error("`{path}` at offset {offset}: {reason}")]
    NotReplayed {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

#[derive(Clone, Debug)]
enum Val {
    Str(Vec<u8>),
    List(VecDeque<Vec<u8>>),
    Set(HashSet<Vec<u8>>),
    ZSet(HashMap<Vec<u8>, f64>),
    Hash(HashMap<Vec<u8>, Vec<u8>>),
    /// What the replay keeps as the base held it (a stream, a hash with field TTLs): any
    /// command on it is not replayed.
    Other(Value),
}

#[derive(Clone, Debug)]
struct Entry {
    val: Val,
    expire: Option<i64>,
}

type Db = HashMap<Vec<u8>, Entry>;

/// The keyspace an AOF builds.
#[derive(Default)]
struct Keyspace {
    dbs: HashMap<u32, Db>,
    db: u32,
    /// Commands of an open MULTI, applied at its EXEC (dropped when the file ends first,
    /// as the loader does).
    multi: Option<Vec<Vec<Vec<u8>>>>,
}

fn from_value(v: Value) -> Val {
    match v {
        Value::String(s) => Val::Str(s),
        Value::List(l) => Val::List(l.into()),
        Value::Set(s) => Val::Set(s.into_iter().collect()),
        Value::SortedSet(z) => Val::ZSet(z.into_iter().collect()),
        Value::Hash(h) if h.iter().all(|f| f.expire_ms.is_none()) => {
            Val::Hash(h.into_iter().map(|f| (f.field, f.value)).collect())
        }
        other => Val::Other(other),
    }
}

/// The digest of the AOF at `path`: an `appendonlydir/` (its manifest's files in order) or
/// one AOF file (a legacy `appendonly.aof`, maybe with an RDB preamble).
///
/// Memory is bounded by what the incremental files name, not by the data set: when an
/// RDB base (or a legacy file's RDB preamble) is followed by commands, those are read
/// first for the keys they name; every other key of the base goes straight into the
/// digest as it is read, and only the named ones are held and replayed. A `FLUSHALL`,
/// `FLUSHDB` or `SWAPDB`, or an AOF of commands alone, holds every key.
pub fn digest_of_aof(
    path: &Path,
    now_ms: i64,
    opts: &DigestOptions,
) -> Result<ContentDigest, AofContentError> {
    let parts = aof_parts(path)?;
    let held = held_keys(&parts)?;
    let mut b = DigestBuilder::new(now_ms, opts);
    let ks = RefCell::new(Keyspace::default());
    for p in &parts {
        let mut whole = WholeEntries::new(|e| {
            ks.borrow_mut().dbs.entry(e.db).or_default().insert(
                e.key,
                Entry {
                    val: from_value(e.value),
                    expire: e.expire_ms,
                },
            );
        });
        let mut split = Split {
            held: held.as_ref(),
            digest: &mut b,
            whole: &mut whole,
            holding: true,
        };
        read_aof_file(p, &mut split, &mut |args, _| ks.borrow_mut().command(args))?;
        ks.borrow_mut().multi = None;
    }
    for (db, keys) in &ks.borrow().dbs {
        for (key, e) in keys {
            b.start_key(*db, key, e.expire);
            feed(&e.val, &mut b);
            b.end_key(true);
        }
    }
    Ok(b.digest)
}

/// A base's keys: those in `held` (all, with no set) built whole to be replayed, every
/// other one digested as it is read.
struct Split<'a, W: EntryVisitor> {
    held: Option<&'a HashSet<Vec<u8>>>,
    digest: &'a mut DigestBuilder,
    whole: &'a mut W,
    holding: bool,
}

impl<W: EntryVisitor> Split<'_, W> {
    fn sink(&mut self) -> &mut dyn ValueSink {
        if self.holding {
            self.whole
        } else {
            self.digest
        }
    }
}

impl<W: EntryVisitor> ValueSink for Split<'_, W> {
    fn begin(&mut self, kind: Kind, n: u64) {
        self.sink().begin(kind, n)
    }
    fn string(&mut self, s: &[u8]) {
        self.sink().string(s)
    }
    fn item(&mut self, s: &[u8]) {
        self.sink().item(s)
    }
    fn scored(&mut self, m: &[u8], sc: f64) {
        self.sink().scored(m, sc)
    }
    fn field(&mut self, f: &[u8], v: &[u8], e: Option<i64>) {
        self.sink().field(f, v, e)
    }
    fn stream(&mut self, st: &super::value::Stream) {
        self.sink().stream(st)
    }
}

impl<W: EntryVisitor> EntryVisitor for Split<'_, W> {
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
        self.holding = self.held.is_none_or(|h| h.contains(key));
        if self.holding {
            self.whole.start_key(db, key, expire_ms)
        } else {
            self.digest.start_key(db, key, expire_ms)
        }
    }
    fn end_key(&mut self, present: bool) {
        if self.holding {
            self.whole.end_key(present)
        } else {
            self.digest.end_key(present)
        }
    }
}

/// Commands whose one key is their first argument (the rest are values): their values
/// are not held as key names.
const FIRST_ARG_KEY: &[&str] = &[
    "SET",
    "SETNX",
    "SETEX",
    "PSETEX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "APPEND",
    "SETRANGE",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "PEXPIREAT",
    "EXPIREAT",
    "PEXPIRE",
    "EXPIRE",
    "PERSIST",
    "HSET",
    "HMSET",
    "HSETNX",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LSET",
    "LREM",
    "LTRIM",
    "LINSERT",
    "SADD",
    "SREM",
    "SPOP",
    "ZADD",
    "ZREM",
    "ZINCRBY",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYLEX",
    "ZPOPMIN",
    "ZPOPMAX",
    "XADD",
    "XDEL",
    "XTRIM",
    "XCLAIM",
    "XAUTOCLAIM",
    "XACK",
    "XSETID",
    "PFADD",
    "SETBIT",
];

/// The key names the commands after an RDB base name, or `None` when every key must be
/// held: no RDB base, or a command that empties or swaps whole databases. Names only (every db): a superset is safe, only memory.
fn held_keys(parts: &[PathBuf]) -> Result<Option<HashSet<Vec<u8>>>, AofContentError> {
    if parts.is_empty() || !starts_as_rdb(&parts[0]) {
        return Ok(None);
    }
    // A legacy file's commands follow its preamble (read past, its keys not kept); a
    // base file holds none.
    let with_commands = if parts.len() == 1 { parts } else { &parts[1..] };
    let mut names = HashSet::new();
    let mut whole = false;
    for p in with_commands {
        read_aof_file(p, &mut Ignore, &mut |args, _| {
            let name = upper(&args[0]);
            match name.as_str() {
                "FLUSHALL" | "FLUSHDB" | "SWAPDB" => whole = true,
                "SELECT" | "MULTI" | "EXEC" | "PING" => {}
                "MSET" | "MSETNX" => {
                    names.extend(args[1..].iter().step_by(2).cloned());
                }
                n if FIRST_ARG_KEY.contains(&n) => {
                    names.extend(args.get(1).cloned());
                }
                _ => names.extend(args[1..].iter().cloned()),
            }
            Ok(())
        })?;
        if whole {
            return Ok(None);
        }
    }
    Ok(Some(names))
}

fn starts_as_rdb(path: &Path) -> bool {
    let mut head = [0u8; 6];
    super::open::open_regular(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && is_rdb_head(&head)
}

/// A visitor that keeps nothing (the keys of a part read only for its commands).
struct Ignore;

impl ValueSink for Ignore {
    fn begin(&mut self, _: Kind, _: u64) {}
    fn string(&mut self, _: &[u8]) {}
    fn item(&mut self, _: &[u8]) {}
    fn scored(&mut self, _: &[u8], _: f64) {}
    fn field(&mut self, _: &[u8], _: &[u8], _: Option<i64>) {}
    fn stream(&mut self, _: &super::value::Stream) {}
}

impl EntryVisitor for Ignore {
    fn start_key(&mut self, _: u32, _: &[u8], _: Option<i64>) {}
    fn end_key(&mut self, _: bool) {}
}

/// The files of the AOF at `path` in load order: an `appendonlydir/`'s base then its
/// incremental files, or the one file.
pub fn aof_parts(path: &Path) -> Result<Vec<PathBuf>, AofContentError> {
    if path.is_dir() {
        aof_dir_files(path)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

fn feed<S: ValueSink>(v: &Val, sink: &mut S) {
    match v {
        Val::Str(s) => {
            sink.begin(Kind::String, 1);
            sink.string(s);
        }
        Val::List(l) => {
            sink.begin(Kind::List, l.len() as u64);
            l.iter().for_each(|i| sink.item(i));
        }
        Val::Set(s) => {
            sink.begin(Kind::Set, s.len() as u64);
            s.iter().for_each(|i| sink.item(i));
        }
        Val::ZSet(z) => {
            sink.begin(Kind::SortedSet, z.len() as u64);
            z.iter().for_each(|(m, s)| sink.scored(m, *s));
        }
        Val::Hash(h) => {
            sink.begin(Kind::Hash, h.len() as u64);
            h.iter().for_each(|(f, v)| sink.field(f, v, None));
        }
        Val::Other(v) => v.feed(sink),
    }
}

/// The files of an `appendonlydir/` in replay order: its base, then its incr files.
fn aof_dir_files(dir: &Path) -> Result<Vec<PathBuf>, AofContentError> {
    let io = |path: &Path, reason: String| AofContentError::Io {
        path: path.to_path_buf(),
        reason,
    };
    let manifest = super::check::find_manifest(dir).map_err(|e| io(dir, e))?;
    let mut text = Vec::new();
    super::open::open_regular(&manifest)
        .and_then(|f| f.take(16 << 20).read_to_end(&mut text))
        .map_err(|e| io(&manifest, e.to_string()))?;
    parts_of_manifest(dir, &manifest, &text)
}

/// The parts of the AOF directory `dir` (on any host) in load order, from the names of
/// the regular files in it and its manifest's text, which `read` is asked for (the
/// manifest the server itself would pick).
pub fn aof_parts_listed(
    dir: &Path,
    files: &[String],
    read: &mut dyn FnMut(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<PathBuf>, AofContentError> {
    let found = files
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        .collect();
    let manifest = super::check::choose_manifest(found).map_err(|reason| AofContentError::Io {
        path: dir.to_path_buf(),
        reason,
    })?;
    let text = read(&manifest).map_err(|e| AofContentError::Io {
        path: manifest.clone(),
        reason: e.to_string(),
    })?;
    parts_of_manifest(dir, &manifest, &text)
}

fn parts_of_manifest(
    dir: &Path,
    manifest: &Path,
    text: &[u8],
) -> Result<Vec<PathBuf>, AofContentError> {
    let m = super::manifest::parse(text).map_err(|e| {
        let e = e.into_inner();
        AofContentError::Format {
            path: manifest.to_path_buf(),
            offset: e.offset,
            reason: format!("expected {}", e.expected),
        }
    })?;
    Ok(m.base
        .iter()
        .chain(&m.incrs)
        .map(|e| dir.join(&e.name))
        .collect())
}

/// A visitor shared between [`read_aof_file`]'s base and its command callback: each call
/// borrows it for that call only.
impl<V: ValueSink> ValueSink for &RefCell<V> {
    fn begin(&mut self, kind: Kind, n: u64) {
        self.borrow_mut().begin(kind, n)
    }
    fn string(&mut self, s: &[u8]) {
        self.borrow_mut().string(s)
    }
    fn item(&mut self, s: &[u8]) {
        self.borrow_mut().item(s)
    }
    fn scored(&mut self, m: &[u8], sc: f64) {
        self.borrow_mut().scored(m, sc)
    }
    fn field(&mut self, f: &[u8], v: &[u8], e: Option<i64>) {
        self.borrow_mut().field(f, v, e)
    }
    fn stream(&mut self, st: &super::value::Stream) {
        self.borrow_mut().stream(st)
    }
}

impl<V: EntryVisitor> EntryVisitor for &RefCell<V> {
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
        self.borrow_mut().start_key(db, key, expire_ms)
    }
    fn end_key(&mut self, present: bool) {
        self.borrow_mut().end_key(present)
    }
}

/// Told each command of an AOF (its arguments, its offset); an error stops the read.
pub type OnCommand<'a> = dyn FnMut(&[Vec<u8>], u64) -> Result<(), String> + 'a;

/// Reads one AOF file: its RDB preamble, when it starts with one (a base, or a legacy
/// file's preamble), into `base`, then each command in order to `command` with its
/// offset. An error `command` returns stops the read as
/// [`AofContentError::NotReplayed`] at that command.
pub fn read_aof_file<V: EntryVisitor>(
    path: &Path,
    base: &mut V,
    command: &mut OnCommand<'_>,
) -> Result<(), AofContentError> {
    let file = super::open::open_regular(path).map_err(|e| AofContentError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut src = Source::open_file(file, len);
    let read = read_aof_source(&mut src, len, path, base, command);
    read_failed(read, &src, path)
}

/// A read whose data ended early or read zeros for a failed read (a mapped file that
/// shrank) is that read's failure, not the file's format.
fn read_failed<R: Read>(
    read: Result<(), AofContentError>,
    src: &Source<R>,
    path: &Path,
) -> Result<(), AofContentError> {
    match (read, src.io_error()) {
        (Err(AofContentError::Format { .. }) | Ok(()), Some(io)) => Err(AofContentError::Io {
            path: path.to_path_buf(),
            reason: io.to_string(),
        }),
        (read, _) => read,
    }
}

/// [`read_aof_file`] of a file arriving as a stream of `len` bytes (a file on another
/// host, read through it): never held whole. `path` names it in errors.
pub fn read_aof_stream<R: Read, V: EntryVisitor>(
    reader: R,
    len: u64,
    path: &Path,
    base: &mut V,
    command: &mut OnCommand<'_>,
) -> Result<(), AofContentError> {
    let mut src = Source::new(reader, 0, len);
    let read = read_aof_source(&mut src, len, path, base, command);
    read_failed(read, &src, path)
}

fn read_aof_source<R: Read, V: EntryVisitor>(
    src: &mut Source<R>,
    len: u64,
    path: &Path,
    base: &mut V,
    command: &mut OnCommand<'_>,
) -> Result<(), AofContentError> {
    let format = |offset: u64, reason: String| AofContentError::Format {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let head = src
        .peek(len.min(6) as usize)
        .map(|h| h.to_vec())
        .unwrap_or_default();
    if is_rdb_head(&head) {
        let mut rdb = Rdb::new(src, None, 0);
        super::entries::walk(&mut rdb, base).map_err(|e| {
            format(
                e.offset,
                format!("in the RDB preamble: expected {}", e.expected),
            )
        })?;
    }
    let mut line = Vec::new();
    let mut args: Vec<Vec<u8>> = Vec::new();
    loop {
        let at = src.offset();
        if src.at_end() {
            break;
        }
        if !read_command(src, &mut line, &mut args).map_err(|r| format(at, r))? {
            continue;
        }
        command(&args, at).map_err(|reason| AofContentError::NotReplayed {
            path: path.to_path_buf(),
            offset: at,
            reason,
        })?;
    }
    Ok(())
}

fn read_command<R: Read>(
    src: &mut Source<R>,
    line: &mut Vec<u8>,
    args: &mut Vec<Vec<u8>>,
) -> Result<bool, String> {
    let number = |line: &[u8], tag: u8| -> Result<u64, String> {
        let body = line
            .strip_prefix(&[tag])
            .map(|l| {
                l.strip_suffix(b"\r\n")
                    .or(l.strip_suffix(b"\n"))
                    .unwrap_or(l)
            })
            .ok_or_else(|| format!("expected `{}`", tag as char))?;
        std::str::from_utf8(body)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("expected a number after `{}`", tag as char))
    };
    if !src.line(4096, line).map_err(|e| e.expected.clone())? {
        return Err("a complete line".into());
    }
    if line.first() == Some(&b'#') {
        return Ok(false);
    }
    let argc = number(line, b'*')?;
    args.truncate(argc as usize);
    args.resize_with(argc as usize, Vec::new);
    for a in args.iter_mut() {
        if !src.line(4096, line).map_err(|e| e.expected.clone())? {
            return Err("a complete line".into());
        }
        let n = number(line, b'$')?;
        a.clear();
        src.copy_to(n, a).map_err(|e| e.expected.clone())?;
        src.skip(2).map_err(|e| e.expected.clone())?;
    }
    Ok(argc > 0)
}

fn upper(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_uppercase()
}

fn int(a: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(a)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("`{}` is not an integer", String::from_utf8_lossy(a)))
}

fn float(a: &[u8]) -> Result<f64, String> {
    let s = std::str::from_utf8(a).map_err(|_| "a score is not a number".to_string())?;
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_nan() {
        return Err(format!("`{s}` is not a number"));
    }
    Ok(v)
}

/// A list index as Redis reads it (negative from the end), clamped into `0..=len`.
fn index(i: i64, len: usize) -> i64 {
    if i < 0 {
        len as i64 + i
    } else {
        i
    }
}

fn wrong_type(cmd: &str) -> String {
    format!("`{cmd}` on a key of another type (a command the server refused is not in an AOF)")
}

impl Keyspace {
    fn db(&mut self) -> &mut Db {
        self.dbs.entry(self.db).or_default()
    }

    fn command(&mut self, args: &[Vec<u8>]) -> Result<(), String> {
        let name = upper(&args[0]);
        match name.as_str() {
            "MULTI" => {
                self.multi = Some(Vec::new());
                return Ok(());
            }
            "EXEC" => {
                for c in self.multi.take().unwrap_or_default() {
                    self.apply(&c)?;
                }
                return Ok(());
            }
            _ => {}
        }
        if let Some(m) = self.multi.as_mut() {
            m.push(args.to_vec());
            return Ok(());
        }
        self.apply(args)
    }

    fn apply(&mut self, args: &[Vec<u8>]) -> Result<(), String> {
        let name = upper(&args[0]);
        let arg = |i: usize| -> Result<&[u8], String> {
            args.get(i)
                .map(Vec::as_slice)
                .ok_or_else(|| format!("`{name}` with too few arguments"))
        };
        let n = args.len();
        match name.as_str() {
            "SELECT" => self.db = u32::try_from(int(arg(1)?)?).map_err(|e| e.to_string())?,
            "PING" => {}
            "SET" => {
                let (key, val) = (arg(1)?, arg(2)?);
                let (mut nx, mut xx, mut keep) = (false, false, false);
                let mut expire = None;
                let mut i = 3;
                while i < n {
                    match upper(&args[i]).as_str() {
                        "NX" => nx = true,
                        "XX" => xx = true,
                        "GET" => {}
                        "KEEPTTL" => keep = true,
                        "PXAT" => {
                            i += 1;
                            expire = Some(int(arg(i)?)?);
                        }
                        "EXAT" => {
                            i += 1;
                            expire = Some(int(arg(i)?)?.saturating_mul(1000));
                        }
                        o => return Err(format!("`SET ... {o}` (a relative TTL) is not replayed")),
                    }
                    i += 1;
                }
                let db = self.db();
                let exists = db.contains_key(key);
                if (nx && exists) || (xx && !exists) {
                    return Ok(());
                }
                let old = db.get(key).and_then(|e| e.expire);
                db.insert(
                    key.to_vec(),
                    Entry {
                        val: Val::Str(val.to_vec()),
                        expire: if keep { old } else { expire },
                    },
                );
            }
            "SETNX" => {
                let db = self.db();
                if !db.contains_key(arg(1)?) {
                    db.insert(arg(1)?.to_vec(), str_entry(arg(2)?));
                }
            }
            "GETSET" => {
                self.db().insert(arg(1)?.to_vec(), str_entry(arg(2)?));
            }
            "MSET" | "MSETNX" => {
                let pairs: Vec<_> = args[1..].chunks(2).collect();
                let db = self.db();
                if name == "MSETNX" && pairs.iter().any(|p| db.contains_key(&p[0])) {
                    return Ok(());
                }
                for p in pairs {
                    let v = p.get(1).ok_or("`MSET` with an odd number of arguments")?;
                    db.insert(p[0].clone(), str_entry(v));
                }
            }
            "APPEND" | "SETRANGE" => {
                let key = arg(1)?;
                let e = self
                    .db()
                    .entry(key.to_vec())
                    .or_insert_with(|| str_entry(b""));
                let Val::Str(s) = &mut e.val else {
                    return Err(wrong_type(&name));
                };
                if name == "APPEND" {
                    s.extend_from_slice(arg(2)?);
                } else {
                    let off = usize::try_from(int(arg(2)?)?).map_err(|e| e.to_string())?;
                    let v = arg(3)?;
                    if s.len() < off + v.len() {
                        s.resize(off + v.len(), 0);
                    }
                    s[off..off + v.len()].copy_from_slice(v);
                }
            }
            "INCR" | "DECR" | "INCRBY" | "DECRBY" => {
                let by = match name.as_str() {
                    "INCR" => 1,
                    "DECR" => -1,
                    "INCRBY" => int(arg(2)?)?,
                    _ => int(arg(2)?)?.checked_neg().ok_or("`DECRBY` out of range")?,
                };
                let e = self
                    .db()
                    .entry(arg(1)?.to_vec())
                    .or_insert_with(|| str_entry(b"0"));
                let Val::Str(s) = &mut e.val else {
                    return Err(wrong_type(&name));
                };
                let v = int(s)?.checked_add(by).ok_or("an increment out of range")?;
                *s = v.to_string().into_bytes();
            }
            "DEL" | "UNLINK" | "GETDEL" => {
                let db = self.db();
                for k in &args[1..] {
                    db.remove(k);
                }
            }
            "PEXPIREAT" | "EXPIREAT" => {
                let mut at = int(arg(2)?)?;
                if name == "EXPIREAT" {
                    at = at.saturating_mul(1000);
                }
                let cond = args.get(3).map(|a| upper(a));
                if let Some(e) = self.db().get_mut(arg(1)?) {
                    let apply = match (cond.as_deref(), e.expire) {
                        (None, _) => true,
                        (Some("NX"), old) => old.is_none(),
                        (Some("XX"), old) => old.is_some(),
                        (Some("GT"), old) => old.is_some_and(|o| at > o),
                        (Some("LT"), old) => old.is_none_or(|o| at < o),
                        (Some(o), _) => return Err(format!("`{name} ... {o}` is not replayed")),
                    };
                    if apply {
                        e.expire = Some(at);
                    }
                }
            }
            "PERSIST" => {
                if let Some(e) = self.db().get_mut(arg(1)?) {
                    e.expire = None;
                }
            }
            "RENAME" | "RENAMENX" => {
                let (from, to) = (arg(1)?, arg(2)?);
                let db = self.db();
                if name == "RENAMENX" && db.contains_key(to) {
                    return Ok(());
                }
                if let Some(e) = db.remove(from) {
                    db.insert(to.to_vec(), e);
                }
            }
            "COPY" => {
                let (from, to) = (arg(1)?.to_vec(), arg(2)?.to_vec());
                let (mut dest_db, mut replace) = (self.db, false);
                let mut i = 3;
                while i < n {
                    match upper(&args[i]).as_str() {
                        "REPLACE" => replace = true,
                        "DB" => {
                            i += 1;
                            dest_db = u32::try_from(int(arg(i)?)?).map_err(|e| e.to_string())?;
                        }
                        o => return Err(format!("`COPY ... {o}` is not replayed")),
                    }
                    i += 1;
                }
                let Some(e) = self.db().get(&from).cloned() else {
                    return Ok(());
                };
                let dest = self.dbs.entry(dest_db).or_default();
                if replace || !dest.contains_key(&to) {
                    dest.insert(to, e);
                }
            }
            "MOVE" => {
                let key = arg(1)?.to_vec();
                let to = u32::try_from(int(arg(2)?)?).map_err(|e| e.to_string())?;
                if self.dbs.get(&to).is_some_and(|d| d.contains_key(&key)) {
                    return Ok(());
                }
                if let Some(e) = self.db().remove(&key) {
                    self.dbs.entry(to).or_default().insert(key, e);
                }
            }
            "SWAPDB" => {
                let a = u32::try_from(int(arg(1)?)?).map_err(|e| e.to_string())?;
                let b = u32::try_from(int(arg(2)?)?).map_err(|e| e.to_string())?;
                let da = self.dbs.remove(&a).unwrap_or_default();
                let db = self.dbs.remove(&b).unwrap_or_default();
                self.dbs.insert(a, db);
                self.dbs.insert(b, da);
            }
            "FLUSHDB" => {
                self.db().clear();
            }
            "FLUSHALL" => self.dbs.clear(),
            "HSET" | "HMSET" | "HSETNX" => {
                let key = arg(1)?;
                if !(n - 2).is_multiple_of(2) || n < 4 {
                    return Err(format!("`{name}` with an odd number of arguments"));
                }
                let h = self.hash(key, &name)?;
                for p in args[2..].chunks(2) {
                    if name == "HSETNX" && h.contains_key(&p[0]) {
                        continue;
                    }
                    h.insert(p[0].clone(), p[1].clone());
                }
            }
            "HDEL" => {
                let key = arg(1)?;
                if let Some(e) = self.db().get_mut(key) {
                    let Val::Hash(h) = &mut e.val else {
                        return Err(wrong_type(&name));
                    };
                    for f in &args[2..] {
                        h.remove(f);
                    }
                }
                self.drop_if_empty(key);
            }
            "HINCRBY" => {
                let (key, field, by) = (arg(1)?, arg(2)?, int(arg(3)?)?);
                let h = self.hash(key, &name)?;
                let v = h.entry(field.to_vec()).or_insert_with(|| b"0".to_vec());
                let new = int(v)?.checked_add(by).ok_or("an increment out of range")?;
                *v = new.to_string().into_bytes();
            }
            "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" => {
                let key = arg(1)?;
                if name.ends_with('X') && !self.db().contains_key(key) {
                    return Ok(());
                }
                let l = self.list(key, &name)?;
                for v in &args[2..] {
                    if name.starts_with('L') {
                        l.push_front(v.clone());
                    } else {
                        l.push_back(v.clone());
                    }
                }
            }
            "LPOP" | "RPOP" => {
                let key = arg(1)?;
                let count = match args.get(2) {
                    Some(c) => usize::try_from(int(c)?).map_err(|e| e.to_string())?,
                    None => 1,
                };
                if let Some(e) = self.db().get_mut(key) {
                    let Val::List(l) = &mut e.val else {
                        return Err(wrong_type(&name));
                    };
                    for _ in 0..count {
                        if name == "LPOP" {
                            l.pop_front();
                        } else {
                            l.pop_back();
                        }
                    }
                }
                self.drop_if_empty(key);
            }
            "LSET" => {
                let (key, i, v) = (arg(1)?, int(arg(2)?)?, arg(3)?);
                let l = self.list(key, &name)?;
                let i = index(i, l.len());
                match usize::try_from(i).ok().and_then(|i| l.get_mut(i)) {
                    Some(x) => *x = v.to_vec(),
                    None => return Err("`LSET` out of range".into()),
                }
            }
            "LREM" => {
                let (key, count, v) = (arg(1)?, int(arg(2)?)?, arg(3)?.to_vec());
                if let Some(e) = self.db().get_mut(key) {
                    let Val::List(l) = &mut e.val else {
                        return Err(wrong_type(&name));
                    };
                    let mut left = if count == 0 {
                        usize::MAX
                    } else {
                        count.unsigned_abs() as usize
                    };
                    if count >= 0 {
                        let mut i = 0;
                        while i < l.len() && left > 0 {
                            if l[i] == v {
                                l.remove(i);
                                left -= 1;
                            } else {
                                i += 1;
                            }
                        }
                    } else {
                        let mut i = l.len();
                        while i > 0 && left > 0 {
                            i -= 1;
                            if l[i] == v {
                                l.remove(i);
                                left -= 1;
                            }
                        }
                    }
                }
                self.drop_if_empty(key);
            }
            "LTRIM" => {
                let (key, s, e) = (arg(1)?, int(arg(2)?)?, int(arg(3)?)?);
                if let Some(x) = self.db().get_mut(key) {
                    let Val::List(l) = &mut x.val else {
                        return Err(wrong_type(&name));
                    };
                    let len = l.len() as i64;
                    let s = index(s, l.len()).max(0);
                    let e = index(e, l.len()).min(len - 1);
                    if s > e || s >= len {
                        l.clear();
                    } else {
                        l.truncate(e as usize + 1);
                        l.drain(..s as usize);
                    }
                }
                self.drop_if_empty(key);
            }
            "LINSERT" => {
                let (key, pos, pivot, v) = (arg(1)?, upper(arg(2)?), arg(3)?, arg(4)?);
                if let Some(x) = self.db().get_mut(key) {
                    let Val::List(l) = &mut x.val else {
                        return Err(wrong_type(&name));
                    };
                    if let Some(i) = l.iter().position(|e| e == pivot) {
                        l.insert(if pos == "AFTER" { i + 1 } else { i }, v.to_vec());
                    }
                }
            }
            "LMOVE" | "RPOPLPUSH" => {
                let (from, to) = (arg(1)?.to_vec(), arg(2)?.to_vec());
                let (wf, wt) = if name == "RPOPLPUSH" {
                    ("RIGHT".to_string(), "LEFT".to_string())
                } else {
                    (upper(arg(3)?), upper(arg(4)?))
                };
                let popped = match self.db().get_mut(&from) {
                    Some(Entry {
                        val: Val::List(l), ..
                    }) => {
                        if wf == "LEFT" {
                            l.pop_front()
                        } else {
                            l.pop_back()
                        }
                    }
                    Some(_) => return Err(wrong_type(&name)),
                    None => None,
                };
                self.drop_if_empty(&from);
                if let Some(v) = popped {
                    let l = self.list(&to, &name)?;
                    if wt == "LEFT" {
                        l.push_front(v);
                    } else {
                        l.push_back(v);
                    }
                }
            }
            "SADD" => {
                let s = self.set(arg(1)?, &name)?;
                for m in &args[2..] {
                    s.insert(m.clone());
                }
            }
            "SREM" => {
                let key = arg(1)?;
                if let Some(e) = self.db().get_mut(key) {
                    let Val::Set(s) = &mut e.val else {
                        return Err(wrong_type(&name));
                    };
                    for m in &args[2..] {
                        s.remove(m);
                    }
                }
                self.drop_if_empty(key);
            }
            "SMOVE" => {
                let (from, to, m) = (arg(1)?.to_vec(), arg(2)?.to_vec(), arg(3)?.to_vec());
                let moved = match self.db().get_mut(&from) {
                    Some(Entry {
                        val: Val::Set(s), ..
                    }) => s.remove(&m),
                    Some(_) => return Err(wrong_type(&name)),
                    None => false,
                };
                self.drop_if_empty(&from);
                if moved {
                    self.set(&to, &name)?.insert(m);
                }
            }
            "ZADD" => {
                let key = arg(1)?;
                let (mut nx, mut xx, mut gt, mut lt, mut incr) =
                    (false, false, false, false, false);
                let mut i = 2;
                while i < n {
                    match upper(&args[i]).as_str() {
                        "NX" => nx = true,
                        "XX" => xx = true,
                        "GT" => gt = true,
                        "LT" => lt = true,
                        "CH" => {}
                        "INCR" => incr = true,
                        _ => break,
                    }
                    i += 1;
                }
                if !(n - i).is_multiple_of(2) || n == i {
                    return Err("`ZADD` with an odd number of score/member arguments".into());
                }
                let exists = self.db().contains_key(key);
                if xx && !exists {
                    return Ok(());
                }
                let z = self.zset(key, &name)?;
                for p in args[i..].chunks(2) {
                    let score = float(&p[0])?;
                    let old = z.get(&p[1]).copied();
                    let new = match (old, incr) {
                        (Some(o), true) => o + score,
                        _ => score,
                    };
                    let ok = match old {
                        None => !xx,
                        Some(o) => !nx && (!gt || new > o) && (!lt || new < o),
                    };
                    if ok && !new.is_nan() {
                        z.insert(p[1].clone(), new);
                    }
                }
                self.drop_if_empty(key);
            }
            "ZINCRBY" => {
                let (key, by, m) = (arg(1)?, float(arg(2)?)?, arg(3)?);
                let z = self.zset(key, &name)?;
                let s = z.entry(m.to_vec()).or_insert(0.0);
                *s += by;
            }
            "ZREM" => {
                let key = arg(1)?;
                if let Some(e) = self.db().get_mut(key) {
                    let Val::ZSet(z) = &mut e.val else {
                        return Err(wrong_type(&name));
                    };
                    for m in &args[2..] {
                        z.remove(m);
                    }
                }
                self.drop_if_empty(key);
            }
            other => return Err(format!("`{other}` is not replayed")),
        }
        Ok(())
    }

    fn drop_if_empty(&mut self, key: &[u8]) {
        let db = self.db();
        let empty = match db.get(key).map(|e| &e.val) {
            Some(Val::List(l)) => l.is_empty(),
            Some(Val::Set(s)) => s.is_empty(),
            Some(Val::ZSet(z)) => z.is_empty(),
            Some(Val::Hash(h)) => h.is_empty(),
            _ => false,
        };
        if empty {
            db.remove(key);
        }
    }

    fn slot(&mut self, key: &[u8], make: fn() -> Val) -> &mut Val {
        &mut self
            .db()
            .entry(key.to_vec())
            .or_insert_with(|| Entry {
                val: make(),
                expire: None,
            })
            .val
    }

    fn hash(&mut self, key: &[u8], cmd: &str) -> Result<&mut HashMap<Vec<u8>, Vec<u8>>, String> {
        match self.slot(key, || Val::Hash(HashMap::new())) {
            Val::Hash(h) => Ok(h),
            _ => Err(wrong_type(cmd)),
        }
    }

    fn list(&mut self, key: &[u8], cmd: &str) -> Result<&mut VecDeque<Vec<u8>>, String> {
        match self.slot(key, || Val::List(VecDeque::new())) {
            Val::List(l) => Ok(l),
            _ => Err(wrong_type(cmd)),
        }
    }

    fn set(&mut self, key: &[u8], cmd: &str) -> Result<&mut HashSet<Vec<u8>>, String> {
        match self.slot(key, || Val::Set(HashSet::new())) {
            Val::Set(s) => Ok(s),
            _ => Err(wrong_type(cmd)),
        }
    }

    fn zset(&mut self, key: &[u8], cmd: &str) -> Result<&mut HashMap<Vec<u8>, f64>, String> {
        match self.slot(key, || Val::ZSet(HashMap::new())) {
            Val::ZSet(z) => Ok(z),
            _ => Err(wrong_type(cmd)),
        }
    }
}

fn str_entry(v: &[u8]) -> Entry {
    Entry {
        val: Val::Str(v.to_vec()),
        expire: None,
    }
}
