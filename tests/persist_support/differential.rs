//! Differential fuzzing of the reader against the real loaders (issues 9 and 18): mutants
//! of files a real redis-server wrote (bit flips, byte edits, truncations, length edits,
//! cut or repeated ranges; RDBs mostly with the CRC-64 recomputed so only the parser can
//! catch the damage), each judged by redis-server 7.0 (and valkey-server 8.1) loading it
//! and by `check_path`. A file the reader calls ok that a server refuses is a false ok; an
//! exact key count that differs from what the server loaded is a mismatch.
//!
//! Used by `tests/persist_differential.rs` (a bounded sample) and `benches/differential.rs`
//! (the big run).

use std::collections::BTreeMap;
use std::fs;
use std::io::BufReader;
use std::net::TcpStream;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lazarus::persist::{check_path, crc64, CheckOptions, FileReport, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{args, free_port, judge_load, try_read_reply, try_send, Killer, Load, Reply, Server};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedKind {
    Rdb,
    /// An `appendonlydir/`: manifest and parts, by file name.
    AofDir,
    /// An old single `appendonly.aof` (Redis 4-6's layout), which a server of 7.0 on
    /// loads as the base of a new `appendonlydir/`.
    AofSingle,
}

/// A file (or AOF directory) written by a real server, to mutate.
#[derive(Clone, Debug)]
pub struct Seed {
    pub name: String,
    pub kind: SeedKind,
    /// (file name, bytes); for an AOF directory the manifest comes first.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Commands that leave a bit of every type and encoding.
fn populate(s: &mut Server, scale: usize) {
    let mut cmds = Vec::new();
    for db in [0u32, 2] {
        cmds.push(args(&["SELECT", &db.to_string()]));
        for i in 0..8 * scale {
            cmds.push(args(&["SET", &format!("s{i}"), &format!("v{i}")]));
        }
        cmds.push(args(&["SET", "int", "12345"]));
        cmds.push(args(&["SET", "lzf", &"abcabcabc".repeat(20)]));
        cmds.push(args(&["SET", "ttl", "v", "EX", "100000"]));
        for i in 0..5 * scale {
            cmds.push(args(&["RPUSH", "list", &format!("e{i}")]));
            cmds.push(args(&["HSET", "hash", &format!("f{i}"), "v"]));
            cmds.push(args(&["SADD", "intset", &i.to_string()]));
            cmds.push(args(&["SADD", "set", &format!("m{i}")]));
            cmds.push(args(&["ZADD", "zset", &i.to_string(), &format!("m{i}")]));
        }
        // 600 fields: over hash-max-listpack-entries, a hash table (RDB type 4).
        for i in 0..600 {
            cmds.push(args(&["HSET", "bighash", &format!("field{i}"), "value"]));
        }
        for i in 0..200 {
            cmds.push(args(&["SADD", "bigset", &format!("member{i}")]));
            cmds.push(args(&[
                "ZADD",
                "bigzset",
                &format!("{i}.5"),
                &format!("m{i}"),
            ]));
        }
        for i in 0..4 {
            cmds.push(args(&["XADD", "stream", "*", "f", &i.to_string()]));
        }
        cmds.push(args(&["XGROUP", "CREATE", "stream", "g1", "0"]));
        cmds.push(args(&["XGROUP", "CREATE", "stream", "g2", "$"]));
        cmds.push(args(&[
            "XREADGROUP",
            "GROUP",
            "g1",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            "stream",
            ">",
        ]));
        cmds.push(args(&["XGROUP", "CREATECONSUMER", "stream", "g1", "c2"]));
    }
    s.batch(&cmds);
    s.cmd(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=difflib\nredis.register_function('f1', function() return 1 end)",
    ]);
}

/// Every file of `dir`, named, the manifest first.
pub fn read_dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort_by_key(|(n, _)| (!n.ends_with(".manifest"), n.clone()));
    files
}

/// Seeds from a real redis-server 7.0: an RDB, an AOF directory with an RDB preamble
/// and incremental commands, one without a preamble, and the first's two files as one
/// old single `appendonly.aof`.
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut s = Server::start(&[]);
    populate(&mut s, 2);
    s.cmd(&["SAVE"]);
    out.push(Seed {
        name: "rdb".into(),
        kind: SeedKind::Rdb,
        files: vec![("dump.rdb".into(), fs::read(s.file("dump.rdb")).unwrap())],
    });
    drop(s);
    for preamble in ["yes", "no"] {
        let mut s = Server::start(&[
            ("appendonly", "yes"),
            ("aof-use-rdb-preamble", preamble),
            ("appendfsync", "always"),
        ]);
        populate(&mut s, 1);
        assert!(s.cmd(&["BGREWRITEAOF"]).text().contains("rewriting"));
        s.wait_persistence();
        let incr = [
            vec!["SET", "new", "v", "PX", "100000000"],
            vec!["DEL", "s1", "s2"],
            vec!["RENAME", "s3", "renamed"],
            vec!["INCR", "counter"],
            vec!["EXPIRE", "s4", "100000"],
            vec!["SELECT", "2"],
            vec!["HSET", "hash", "x", "y"],
            vec!["MOVE", "s5", "3"],
        ];
        for c in incr {
            s.cmd(&c);
        }
        let files = read_dir_files(&s.path().join("appendonlydir"));
        if preamble == "yes" {
            // The base (an RDB) and then the incremental file, after the manifest.
            let glued: Vec<u8> = files[1..].iter().flat_map(|f| f.1.clone()).collect();
            assert!(
                glued.starts_with(b"REDIS"),
                "the base first: {:?}",
                files[1].0
            );
            out.push(Seed {
                name: "aof-single-preamble".into(),
                kind: SeedKind::AofSingle,
                files: vec![("appendonly.aof".into(), glued)],
            });
        }
        out.push(Seed {
            name: format!("aof-preamble-{preamble}"),
            kind: SeedKind::AofDir,
            files,
        });
    }
    out
}

/// One mutation of one file of the seed; says what it did.
pub fn mutate(seed: &Seed, rng: &mut StdRng) -> (Vec<(String, Vec<u8>)>, String) {
    let mut files = seed.files.clone();
    // AOF: a part most of the time, the manifest now and then.
    let which = match seed.kind {
        SeedKind::Rdb | SeedKind::AofSingle => 0,
        SeedKind::AofDir if rng.gen_ratio(1, 10) => 0,
        SeedKind::AofDir => rng.gen_range(1..files.len()),
    };
    let (name, bytes) = &mut files[which];
    let is_rdb = bytes.starts_with(b"REDIS");
    let crc_fix = is_rdb && rng.gen_ratio(7, 10);
    // The CRC trailer is left alone when it is to be recomputed.
    let body_len = if crc_fix {
        bytes.len() - 8
    } else {
        bytes.len()
    };
    let mut body = bytes[..body_len].to_vec();
    let n = body.len().max(1);
    let desc;
    match rng.gen_range(0..9) {
        0 => {
            let at = rng.gen_range(0..n);
            let bit = rng.gen_range(0..8);
            if let Some(b) = body.get_mut(at) {
                *b ^= 1 << bit;
            }
            desc = format!("flip bit {bit} at {at}");
        }
        1 => {
            let at = rng.gen_range(0..n);
            let v = [0u8, 0xff, 0x7f, 0x80, 0x40, 0xc0, 0xc3, b'0', b'\r'][rng.gen_range(0..9)];
            if let Some(b) = body.get_mut(at) {
                *b = v;
            }
            desc = format!("byte {at} = 0x{v:02x}");
        }
        2 => {
            let at = rng.gen_range(0..n);
            body.truncate(at);
            desc = format!("truncate at {at}");
        }
        3 => {
            // A length edit: a small number or digit nudged by one.
            let at = rng.gen_range(0..n);
            let d: i8 = if rng.gen() { 1 } else { -1 };
            if let Some(b) = body.get_mut(at) {
                *b = b.wrapping_add_signed(d);
            }
            desc = format!("byte {at} {d:+}");
        }
        4 => {
            let at = rng.gen_range(0..n);
            let len = rng.gen_range(1..16).min(body.len() - at.min(body.len()));
            body.drain(at..at + len);
            desc = format!("cut {len} at {at}");
        }
        5 => {
            let at = rng.gen_range(0..n);
            let len = rng.gen_range(1..8);
            let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let at = at.min(body.len());
            body.splice(at..at, junk);
            desc = format!("insert {len} at {at}");
        }
        6 => {
            // A range repeated right after itself (a record or member twice, maybe).
            let at = rng.gen_range(0..n);
            let len = rng.gen_range(1..64).min(body.len().saturating_sub(at));
            let chunk = body[at.min(body.len())..at.min(body.len()) + len].to_vec();
            let to = (at + len).min(body.len());
            body.splice(to..to, chunk);
            desc = format!("repeat {len} at {at}");
        }
        7 => {
            // A digit made another: names end in numbers (`field-7`, `s3`), so this makes a
            // key, field or member twice more often than any flip.
            let digits: Vec<usize> = (0..32)
                .map(|_| rng.gen_range(0..n))
                .filter(|&at| body.get(at).is_some_and(u8::is_ascii_digit))
                .collect();
            match digits.first() {
                Some(&at) => {
                    let v = b'0' + rng.gen_range(0..10u8);
                    body[at] = v;
                    desc = format!("digit {at} = {}", v as char);
                }
                None => desc = "no digit found".into(),
            }
        }
        _ => {
            // Two flips apart.
            for _ in 0..2 {
                let at = rng.gen_range(0..n);
                if let Some(b) = body.get_mut(at) {
                    *b ^= 1 << rng.gen_range(0..8);
                }
            }
            desc = "two flips".into();
        }
    }
    if crc_fix {
        let crc = crc64(&body);
        body.extend_from_slice(&crc.to_le_bytes());
    } else if is_rdb && body_len < bytes.len() {
        body.extend_from_slice(&bytes[body_len..]);
    }
    *bytes = body;
    let desc = format!(
        "{} {name}: {desc}{}",
        seed.name,
        if crc_fix { ", CRC-64 recomputed" } else { "" }
    );
    (files, desc)
}

/// A server kept running to judge RDBs with `DEBUG RELOAD NOSAVE` (restarted when a
/// file makes it exit).
struct Reloader {
    _process: Killer,
    conn: BufReader<TcpStream>,
    dir: tempfile::TempDir,
}

impl Reloader {
    fn start(server: &Path) -> Option<Reloader> {
        let dir = tempfile::tempdir().ok()?;
        let port = free_port();
        let mut cmd = Command::new(server);
        // Gone with the harness even when it is killed (its drops never run then).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes", "--logfile", "server.log"])
            // DEBUG RELOAD runs as a client: the server takes it for a RESTORE and only
            // logs (at verbose) a fault its startup load exits on; `judge` reads it.
            .args(["--loglevel", "verbose"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let process = Killer(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut conn = BufReader::new(s);
                if try_send(&mut conn, &["PING"]).is_ok()
                    && matches!(try_read_reply(&mut conn), Ok(Reply::Status(_)))
                {
                    return Some(Reloader {
                        _process: process,
                        conn,
                        dir,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// What the server logged since `from` bytes into its log.
    fn log_since(&self, from: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut log = Vec::new();
        if let Ok(mut f) = fs::File::open(self.dir.path().join("server.log")) {
            if f.seek(SeekFrom::Start(from)).is_ok() {
                let _ = f.read_to_end(&mut log);
            }
        }
        String::from_utf8_lossy(&log).into_owned()
    }

    fn log_len(&self) -> u64 {
        fs::metadata(self.dir.path().join("server.log")).map_or(0, |m| m.len())
    }

    /// `None` when the server is gone (the caller starts another).
    fn judge(&mut self, rdb: &[u8]) -> Option<Load> {
        fs::write(self.dir.path().join("dump.rdb"), rdb).ok()?;
        let mut ask = |cmd: &[&str]| {
            try_send(&mut self.conn, cmd).and_then(|()| try_read_reply(&mut self.conn))
        };
        ask(&["FUNCTION", "FLUSH"]).ok()?;
        match ask(&["DEBUG", "RELOAD", "NOSAVE"]) {
            Ok(Reply::Status(_)) => {}
            // Refused without exiting (a version it does not know, ...).
            Ok(Reply::Error(_)) => return Some(Load::Refused),
            _ => return None,
        }
        match ask(&["INFO", "keyspace"]) {
            Ok(Reply::Bulk(Some(b))) => Some(Load::Loaded(keyspace(&String::from_utf8_lossy(&b)))),
            _ => None,
        }
    }
}

fn keyspace(info: &str) -> BTreeMap<u32, u64> {
    info.lines()
        .filter_map(|l| {
            let (db, rest) = l.strip_prefix("db")?.split_once(':')?;
            let keys = rest.split(',').next()?.strip_prefix("keys=")?;
            Some((db.parse().ok()?, keys.parse().ok()?))
        })
        .collect()
}

/// One engine judging files.
pub struct Engine {
    pub name: String,
    pub binary: PathBuf,
    /// The newest RDB version it loads: recovery refuses newer files for it before any
    /// load (`max_rdb_version_for`), so those count as refused by the reader too.
    pub max_rdb: u32,
    reloader: Option<Reloader>,
}

impl Engine {
    /// `name` names the engine and its version (`redis-server 7.0`, `valkey-server 8.1`).
    pub fn new(name: &str, binary: PathBuf) -> Engine {
        Engine {
            name: name.into(),
            binary,
            max_rdb: lazarus::persist::max_rdb_version_for(name).unwrap_or(10),
            reloader: None,
        }
    }

    /// What the server did, and what it logged while at it.
    fn judge(&mut self, kind: SeedKind, dir: &Path) -> (Load, String) {
        if kind == SeedKind::Rdb {
            let bytes = fs::read(dir.join("dump.rdb")).unwrap_or_default();
            if self.reloader.is_none() {
                self.reloader = Reloader::start(&self.binary);
            }
            if let Some(r) = self.reloader.as_mut() {
                let from = r.log_len();
                let load = r.judge(&bytes);
                let log = r.log_since(from);
                return match load {
                    // A fault DEBUG RELOAD read past (see `Reloader::start`): a startup
                    // load, which recovery does, exits on it.
                    Some(Load::Loaded(_)) if log.contains("Internal error in RDB reading") => {
                        (Load::Refused, log)
                    }
                    Some(load) => (load, log),
                    // It exited on this file (it answered on the one before).
                    None => {
                        self.reloader = None;
                        (Load::Refused, log)
                    }
                };
            }
        }
        let load = judge_load(
            &self.binary,
            dir,
            kind != SeedKind::Rdb,
            Duration::from_secs(10),
        );
        let log = String::from_utf8_lossy(&fs::read(dir.join("server.log")).unwrap_or_default())
            .into_owned();
        (load, log)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Both ok with the same keys.
    Agree,
    /// Both refuse (counted in `agree` too, and apart in `agree_refused`).
    AgreeRefused,
    /// The reader is stricter in a way it says is expected: an AOF it calls truncated,
    /// which the server loads up to its last whole command (`aof-load-truncated`).
    StricterTruncated,
    /// The reader refuses (or warns about) what the server loads.
    FalseAlarm(String),
    /// The reader says ok; the server refuses. A failure.
    FalseOk,
    /// The reader says ok and warns that a function library was too big (over 32 MiB) to
    /// load in its sandbox; the server refuses a library it cannot compile or register (a
    /// known limit, counted apart). Every smaller library is loaded as the server loads it,
    /// so a refusal there counts as a false ok.
    LuaNotCompiled,
    /// Both load, the reader's exact count differs. A failure.
    KeyMismatch(String),
    /// Both load, and the counts differ only by keys whose TTL ran out between the
    /// reader's check and the server's load: the server's count lies between the reader's
    /// before and a second check after, database by database. Not a failure.
    ExpiredBetween,
}

#[derive(Default, Debug)]
pub struct Tally {
    pub mutants: u64,
    pub judged: u64,
    pub agree: u64,
    /// Of `agree`: the mutants both the reader and the server refuse.
    pub agree_refused: u64,
    pub stricter_truncated: u64,
    pub false_alarm: u64,
    pub false_ok: u64,
    pub lua_not_compiled: u64,
    pub key_mismatch: u64,
    pub expired_between: u64,
    /// The first few failures: what was done, and what each side said.
    pub failures: Vec<String>,
    pub alarms: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, o: &Outcome, desc: &str) {
        self.judged += 1;
        match o {
            Outcome::Agree => self.agree += 1,
            Outcome::AgreeRefused => {
                self.agree += 1;
                self.agree_refused += 1;
            }
            Outcome::StricterTruncated => self.stricter_truncated += 1,
            Outcome::FalseAlarm(w) => {
                self.false_alarm += 1;
                if self.alarms.len() < 40 {
                    self.alarms.push(format!("{desc}: {w}"));
                }
            }
            Outcome::LuaNotCompiled => self.lua_not_compiled += 1,
            Outcome::ExpiredBetween => self.expired_between += 1,
            Outcome::FalseOk => {
                self.false_ok += 1;
                if self.failures.len() < 40 {
                    self.failures.push(format!("false ok: {desc}"));
                }
            }
            Outcome::KeyMismatch(w) => {
                self.key_mismatch += 1;
                if self.failures.len() < 40 {
                    self.failures.push(format!("key mismatch: {desc}: {w}"));
                }
            }
        }
    }
}

/// Writes a mutant into a fresh directory: `dump.rdb`, or `appendonlydir/`.
pub fn materialize(kind: SeedKind, files: &[(String, Vec<u8>)], root: &Path) -> PathBuf {
    match kind {
        SeedKind::Rdb => {
            let p = root.join("dump.rdb");
            fs::write(&p, &files[0].1).unwrap();
            p
        }
        SeedKind::AofDir => {
            let d = root.join("appendonlydir");
            fs::create_dir_all(&d).unwrap();
            for (n, b) in files {
                fs::write(d.join(n), b).unwrap();
            }
            d
        }
        SeedKind::AofSingle => {
            let p = root.join("appendonly.aof");
            fs::write(&p, &files[0].1).unwrap();
            p
        }
    }
}

/// Judges one mutant with the reader and every engine. The report is computed once.
pub fn judge(
    kind: SeedKind,
    files: &[(String, Vec<u8>)],
    engines: &mut [Engine],
) -> (FileReport, Vec<Outcome>) {
    let tmp = tempfile::tempdir().unwrap();
    let path = materialize(kind, files, tmp.path());
    let report = check_path(&path, &CheckOptions::default());
    let outcomes = judge_checked(kind, files, &path, &report, engines);
    (report, outcomes)
}

/// Every engine's judgment of a mutant the reader already checked (at `path`).
fn judge_checked(
    kind: SeedKind,
    files: &[(String, Vec<u8>)],
    path: &Path,
    report: &FileReport,
    engines: &mut [Engine],
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for e in engines.iter_mut() {
        // Each engine gets its own copy: a server may rewrite an AOF directory it loads.
        let copy = tempfile::tempdir().unwrap();
        materialize(kind, files, copy.path());
        let (mut load, mut log) = e.judge(kind, copy.path());
        let mut outcome = compare(report, &load, &log, e);
        // A refusal is judged again before it counts against the reader's `ok`: a server
        // on a loaded machine can miss the deadline (a false ok the campaign on this
        // stop's reader kept loaded three times in three by hand). A real refusal repeats.
        if outcome == Outcome::FalseOk {
            let again = tempfile::tempdir().unwrap();
            materialize(kind, files, again.path());
            (load, log) = e.judge(kind, again.path());
            outcome = compare(report, &load, &log, e);
        }
        if let (Outcome::KeyMismatch(_), Load::Loaded(keys)) = (&outcome, &load) {
            if report.expires > 0 {
                let after = check_path(path, &CheckOptions::default());
                if expired_between(keys, &report.keys_per_db, &after.keys_per_db) {
                    outcome = Outcome::ExpiredBetween;
                }
            }
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// Whether the server's count of every database lies between the reader's count after the
/// load and its count before (keys with a TTL only ever leave).
fn expired_between(
    server: &BTreeMap<u32, u64>,
    before: &BTreeMap<u32, u64>,
    after: &BTreeMap<u32, u64>,
) -> bool {
    let mut dbs = server.keys().chain(before.keys()).chain(after.keys());
    before != after
        && dbs.all(|db| {
            let n = |m: &BTreeMap<u32, u64>| m.get(db).copied().unwrap_or(0);
            n(after) <= n(server) && n(server) <= n(before)
        })
}

fn compare(r: &FileReport, load: &Load, log: &str, e: &Engine) -> Outcome {
    let engine = &e.name;
    let ok = r.verdict == Verdict::Ok && r.rdb_version.is_none_or(|v| v <= e.max_rdb);
    let lua_warned = r
        .warnings
        .iter()
        .any(|w| w.contains("function library") && w.contains("too big to check"));
    let lua_refused = log.contains("Failed loading library")
        && [
            "Error compiling function",
            "Error registering functions",
            "No functions registered",
            "already exists",
        ]
        .iter()
        .any(|m| log.contains(m));
    match (ok, load) {
        (true, Load::Refused) if lua_warned && lua_refused => Outcome::LuaNotCompiled,
        (true, Load::Refused) => Outcome::FalseOk,
        (true, Load::Loaded(keys)) => {
            let lazarus: BTreeMap<u32, u64> = r.keys_per_db.clone();
            if r.keys_exact && *keys != lazarus && r.expired == 0 {
                Outcome::KeyMismatch(format!(
                    "{engine} loaded {keys:?}, the reader counted {lazarus:?}"
                ))
            } else {
                Outcome::Agree
            }
        }
        (false, Load::Refused) => Outcome::AgreeRefused,
        (false, Load::Loaded(_)) if r.verdict == Verdict::Truncated => Outcome::StricterTruncated,
        (false, Load::Loaded(_)) => Outcome::FalseAlarm(format!(
            "{engine} loads it, the reader says {}: {}",
            r.verdict,
            r.fault.as_ref().map(|f| f.expected.as_str()).unwrap_or("")
        )),
    }
}

/// False alarms kept (with `LAZARUS_DIFF_KEEP`) per call of [`campaign`].
const ALARMS_KEPT: u32 = 5;

/// Runs `n` mutants of the seeds (round robin) with `seed` for the random numbers.
pub fn campaign(n: u64, seed: u64, engines: &mut [Engine], seeds: &[Seed]) -> Vec<(String, Tally)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut alarms_kept = 0;
    let mut tallies: Vec<(String, Tally)> = engines
        .iter()
        .map(|e| (e.name.clone(), Tally::default()))
        .collect();
    for i in 0..n {
        let s = &seeds[(i as usize) % seeds.len()];
        let (files, desc) = mutate(s, &mut rng);
        let (_, outcomes) = judge(s.kind, &files, engines);
        // LAZARUS_DIFF_KEEP=<dir>: failures kept there to look at, and the first few
        // false alarms of each run of `n` (`alarm-...`).
        if let Some(keep) = std::env::var_os("LAZARUS_DIFF_KEEP") {
            let failed = outcomes
                .iter()
                .any(|o| matches!(o, Outcome::FalseOk | Outcome::KeyMismatch(_)));
            let alarm = !failed
                && alarms_kept < ALARMS_KEPT
                && outcomes.iter().any(|o| matches!(o, Outcome::FalseAlarm(_)));
            alarms_kept += u32::from(alarm);
            if failed || alarm {
                // Named by the chunk's seed too: `i` starts again at 0 in every chunk.
                let what = if failed { "mutant" } else { "alarm" };
                let dir = Path::new(&keep).join(format!("{what}-{seed}-{i}"));
                let _ = fs::create_dir_all(&dir);
                materialize(s.kind, &files, &dir);
                let _ = fs::write(dir.join("what.txt"), format!("{desc}\n{outcomes:?}\n"));
            }
        }
        for (t, o) in tallies.iter_mut().zip(&outcomes) {
            t.1.mutants += 1;
            t.1.add(o, &desc);
        }
    }
    tallies
}

/// Where a seed's file holds its function library: the offset of its `#!lua` code, and of
/// the first `SELECTDB` after it (an RDB, or an AOF's RDB base).
pub fn library_layout(bytes: &[u8]) -> Option<(usize, usize)> {
    let code = bytes.windows(5).position(|w| w == b"#!lua")?;
    let db = code + bytes[code..].iter().position(|&b| b == 0xfe)?;
    Some((code, db))
}

/// What an exhaustive scan of single-bit flips found: the mutants the reader refused
/// (loaded by no server unless asked: a false ok needs the reader's `ok`), and per engine
/// the tally of the ones judged.
pub struct FlipScan {
    pub mutants: u64,
    pub reader_refused_unloaded: u64,
    pub tallies: Vec<(String, Tally)>,
}

/// Every single-bit flip of the bytes `range` of the seed's file `file`, the CRC-64
/// trailer of an RDB recomputed when `crc_fix` (and the flip is not in it), each checked
/// by the reader and, when it says `ok` (or `load_all`), loaded by every engine. False
/// ok are kept in `LAZARUS_DIFF_KEEP` (`flip-<seed>-<file>-<byte>-<bit>[-crc]`).
pub fn flip_scan(
    seed: &Seed,
    file: usize,
    range: Range<usize>,
    crc_fix: bool,
    load_all: bool,
    engines: &mut [Engine],
) -> FlipScan {
    let mut scan = FlipScan {
        mutants: 0,
        reader_refused_unloaded: 0,
        tallies: engines
            .iter()
            .map(|e| (e.name.clone(), Tally::default()))
            .collect(),
    };
    let original = &seed.files[file].1;
    let fix = crc_fix && original.starts_with(b"REDIS");
    let body_len = original.len() - if fix { 8 } else { 0 };
    for at in range.start..range.end.min(original.len()) {
        for bit in 0..8 {
            let mut files = seed.files.clone();
            let bytes = &mut files[file].1;
            bytes[at] ^= 1 << bit;
            let fixed = fix && at < body_len;
            if fixed {
                let crc = crc64(&bytes[..body_len]);
                bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
            }
            let desc = format!(
                "{} {}: flip bit {bit} at {at}{}",
                seed.name,
                seed.files[file].0,
                if fixed { ", CRC-64 recomputed" } else { "" }
            );
            scan.mutants += 1;
            let tmp = tempfile::tempdir().unwrap();
            let path = materialize(seed.kind, &files, tmp.path());
            let report = check_path(&path, &CheckOptions::default());
            if report.verdict != Verdict::Ok && !load_all {
                scan.reader_refused_unloaded += 1;
                continue;
            }
            let outcomes = judge_checked(seed.kind, &files, &path, &report, engines);
            if outcomes.iter().any(|o| matches!(o, Outcome::FalseOk)) {
                if let Some(keep) = std::env::var_os("LAZARUS_DIFF_KEEP") {
                    let dir = Path::new(&keep).join(format!(
                        "flip-{}-{file}-{at}-{bit}{}",
                        seed.name,
                        if fixed { "-crc" } else { "" }
                    ));
                    let _ = fs::create_dir_all(&dir);
                    materialize(seed.kind, &files, &dir);
                    let _ = fs::write(dir.join("what.txt"), format!("{desc}\n{outcomes:?}\n"));
                }
            }
            for (t, o) in scan.tallies.iter_mut().zip(&outcomes) {
                t.1.mutants += 1;
                t.1.add(o, &desc);
            }
        }
    }
    scan
}
