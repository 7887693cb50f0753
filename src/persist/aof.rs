//! AOF files: a Redis 7 `appendonlydir/` (manifest, base, incr files in order) or a legacy
//! single `appendonly.aof`, each file an optional RDB preamble followed by RESP commands.
//!
//! Key counts: a first pass validates every file, counts the base's keys (an RDB base
//! exactly; a RESP base, written by a rewrite that emits each key's commands together,
//! by runs of the same key) and replays the incremental commands over the keys they touch,
//! learning which of those the base holds: from a walk of the incremental files first,
//! with the base then read once ([`FirstPass::prepared`], a base of 4 KiB or more), or in
//! a second pass over every file, which also replays (a slot check, a smaller base). A
//! base that holds no key is replayed over as the commands come. A lone file is read as a
//! base while it looks like one ([`Lone`]). See [`super::aof_keys`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::aof_damaged::DamagedKeys;
use super::aof_keys::{self, Change, Class, Effect, Ttl, DATABASES};
use super::aof_replay::{DbCounts, Replay};
use super::commands;
use super::error::{FaultKind, ParseError};
use super::fp_set::{FpRuns, FpSet};
use super::rdb::{find_repeated_key, is_rdb_head, KeyVisitor, Rdb, RdbOutcome};
use super::rdb_parts;
use super::resp::{Command, RespReader};
use super::source::Source;
use super::SlotCheck;

/// One file of an AOF, in replay order.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub path: PathBuf,
    /// A base file (rewrite output) rather than incremental commands.
    pub base: bool,
}

/// Where a file's walk ended.
pub(crate) struct Walked {
    pub len: u64,
    /// End of the last complete command outside an unfinished MULTI.
    pub valid_len: u64,
    /// End of the RDB preamble, when there is one.
    pub rdb_end: Option<u64>,
    pub fault: Option<ParseError>,
    /// Bytes the server reads past without looking that are not what Redis writes.
    pub warning: Option<String>,
}

/// What the walk of the files tells whoever listens.
pub(crate) trait AofSink {
    fn rdb_visitor(&mut self) -> Option<&mut dyn KeyVisitor>;
    fn rdb(&mut self, outcome: RdbOutcome);
    fn command(&mut self, base: bool, class: Class, cmd: &Command<'_>);
    /// A file of `len` bytes starts its walk (the server loads each from database 0).
    fn file_start(&mut self, _len: u64) {}
    /// The fault when the command reads a key a preamble holds damaged (see
    /// `aof_damaged`); asked before `command`.
    fn reads_damaged(&mut self, _class: Class, _cmd: &Command<'_>) -> Option<String> {
        None
    }
}

/// Walks one file: its RDB preamble (if any), then its commands.
pub(crate) fn walk<S: AofSink>(part: &Part, sink: &mut S, now_ms: i64) -> std::io::Result<Walked> {
    let (file, len) = super::open::open_regular_len(&part.path)?;
    sink.file_start(len);
    // The read-ahead thread runs the CRC only for an RDB preamble's sake.
    let mut head = [0u8; 6];
    let got = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap_or(0);
    let maybe_rdb = matches!(head.first(), Some(b'R' | b'V')) || got == 0;
    let has_rdb = is_rdb_head(&head[..got]);
    // A big RDB preamble is read in parts at once (`rdb_parts`), mapped, as an RDB file
    // is: unless its keys go one at a time to a visitor of their bytes (a slot check).
    let by_fp = sink
        .rdb_visitor()
        .is_none_or(|v| v.fingerprints().is_some());
    let threads = if has_rdb && by_fp {
        rdb_parts::threads(len)
    } else {
        1
    };
    let later_file = (threads > 1).then(|| file.try_clone().ok()).flatten();
    let mut src = match later_file {
        Some(_) => {
            Source::mapped(file, len).unwrap_or_else(|f| Source::open_file_crc(f, len, maybe_rdb))
        }
        None => Source::open_file_crc(file, len, maybe_rdb),
    };
    let mut out = Walked {
        len,
        valid_len: 0,
        rdb_end: None,
        fault: None,
        warning: None,
    };
    if has_rdb {
        let visitor = sink.rdb_visitor();
        let mut rdb = Rdb::new(&mut src, visitor, now_ms);
        rdb.preamble = true;
        let (mut r, later) = match &later_file {
            Some(f) if rdb.src.is_mapped() => {
                let splits = rdb_parts::splits(len, threads);
                rdb_parts::run(&mut rdb, f, len, &splits, threads, now_ms)
            }
            _ => (rdb.run(), None),
        };
        if r.is_ok() {
            let candidates = rdb.repeated_keys();
            if !candidates.is_empty() {
                if let Some(e) = find_repeated_key(&part.path, &candidates, now_ms) {
                    r = Err(e);
                }
            }
        }
        let outcome = std::mem::take(&mut rdb.out);
        sink.rdb(outcome);
        if let Err(e) = r {
            // A cut-off preamble cannot be repaired by truncating: it is corruption.
            let kind = if e.kind == FaultKind::Unsupported {
                FaultKind::Unsupported
            } else {
                FaultKind::Corrupt
            };
            out.fault = Some(e.within("in the RDB preamble").with_kind(kind));
            return Ok(out);
        }
        // Read in parts: the commands start where the last part ended.
        if let Some(end) = later {
            if let Some(io) = end.io_error {
                let expected = format!("readable data (read error: {io})");
                out.fault = Some(ParseError::corrupt(end.offset, expected));
                return Ok(out);
            }
            src.reposition(end.offset);
        }
        out.rdb_end = Some(src.offset());
        out.valid_len = src.offset();
    }
    Ok(walk_commands(part, &mut src, sink, out))
}

/// Walks only the commands of `part` (opened as `file`, `len` bytes) from offset `at` on,
/// where its RDB preamble is taken to end (see [`preamble_end_guess`]).
pub(crate) fn walk_from<S: AofSink>(
    part: &Part,
    mut file: std::fs::File,
    len: u64,
    at: u64,
    sink: &mut S,
) -> std::io::Result<Walked> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(at.min(len)))?;
    sink.file_start(len);
    let mut src = Source::new(file, at.min(len), len);
    let out = Walked {
        len,
        valid_len: at,
        rdb_end: Some(at),
        fault: None,
        warning: None,
    };
    Ok(walk_commands(part, &mut src, sink, out))
}

/// Bytes from its end that [`preamble_end_guess`] looks through at most.
const GUESS_SCAN: u64 = 256 << 20;

/// Where the commands after the RDB preamble of a lone AOF file (`file`, `len` bytes) may
/// start, found from its end without reading the RDB: scanning back over at most
/// [`GUESS_SCAN`] bytes, the first place where an RDB's end (its EOF opcode, 0xff, and 8
/// checksum bytes) is followed by what starts a command (`*` and a digit). The commands
/// after a preamble are text, where 0xff is rare (only in binary values). A guess: the
/// walk of the file says where the preamble really ends, and the caller checks that.
pub(crate) fn preamble_end_guess(file: &std::fs::File, len: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 1 << 20;
    // A chunk also reads the 10 bytes after it, for a candidate at its end.
    const AFTER: u64 = 10;
    let stop = len.saturating_sub(GUESS_SCAN);
    let mut buf = vec![0u8; (CHUNK + AFTER) as usize];
    let mut end = len;
    while end > stop {
        let start = end.saturating_sub(CHUNK).max(stop);
        let want = ((end - start + AFTER).min(len - start)) as usize;
        let b = &mut buf[..want];
        file.read_exact_at(b, start).ok()?;
        let chunk = (end - start) as usize;
        // The 0xff bytes found with vector compares (a byte loop took 0.1 s for the most
        // this looks through, a file of text after its preamble).
        let found = memchr::memrchr_iter(0xff, &b[..chunk]).find(|&i| {
            b.get(i + 9) == Some(&b'*') && b.get(i + 10).is_some_and(u8::is_ascii_digit)
        });
        if let Some(i) = found {
            return Some(start + i as u64 + 9);
        }
        end = start;
    }
    None
}

/// Walks the commands of `part` from where `src` is, on from `out` (what the walk of its
/// preamble, if any, left).
fn walk_commands<S: AofSink>(
    part: &Part,
    src: &mut Source<std::fs::File>,
    sink: &mut S,
    mut out: Walked,
) -> Walked {
    let len = out.len;
    let mut resp = RespReader::new(src);
    let mut multi_start: Option<u64> = None;
    loop {
        let start = resp.src.offset();
        match resp.next_command() {
            Ok(None) => break,
            // By reference: a move copied the command 16 bytes at a time out of the
            // fields just stored one by one, which the CPU cannot forward (a stall on
            // every command).
            Ok(Some(ref cmd)) => {
                if let Err(expected) = commands::check(cmd) {
                    out.fault = Some(ParseError::corrupt(start, expected));
                    break;
                }
                let class = cmd.class;
                if let Some(expected) = sink.reads_damaged(class, cmd) {
                    out.fault = Some(ParseError::corrupt(start, expected));
                    break;
                }
                match class {
                    Class::Multi => multi_start = Some(start),
                    Class::Exec => multi_start = None,
                    _ => {}
                }
                sink.command(part.base, class, cmd);
                if multi_start.is_none() {
                    out.valid_len = resp.src.offset();
                }
            }
            Err(e) => {
                out.fault = Some(e);
                break;
            }
        }
    }
    if let Some((at, what)) = resp.first_lenient {
        out.warning = Some(format!(
            "loads, but `{}` has {} place(s) the server reads past without looking, first \
             at offset {at}: {what}",
            part.path.display(),
            resp.lenient
        ));
    }
    if let Some(io) = resp.src.io_error() {
        out.fault = Some(ParseError::corrupt(
            resp.src.offset(),
            format!("readable data (read error: {io})"),
        ));
    } else if out.fault.is_none() {
        if let Some(at) = multi_start {
            out.fault = Some(ParseError::truncated(
                len,
                format!("EXEC closing the MULTI at offset {at}"),
            ));
        }
    }
    out
}

/// Pass one: validation, base counts, fingerprints of keys incr commands touch.
pub(crate) struct FirstPass<'a> {
    pub slots: Option<&'a mut SlotCheck>,
    pub base: Option<RdbOutcome>,
    /// The database a RESP base is writing (`db`): out of `base_dbs`, so that a command
    /// costs no map lookup (two a command were a twentieth of the check of a RESP base).
    base_db: BaseDb,
    /// A RESP base's other databases.
    base_dbs: BTreeMap<u32, BaseDb>,
    pub touched: FpSet,
    /// The replay as the commands come, when the files hold no base key before the first
    /// incremental command: no second pass. `None` until that first command.
    pub live: Option<Replay>,
    /// More keys touched than the set holds: counts not exact.
    pub full: bool,
    pub replay_needed: bool,
    pub exact: bool,
    /// The first command that made the count inexact, and why.
    pub inexact_why: Option<String>,
    now_ms: i64,
    db: u32,
    /// Keys a preamble holds damaged, followed through the commands.
    damaged: DamagedKeys,
    /// The fingerprint of the previous base command's key (a rewrite emits each key's
    /// commands together): compared, not the key's bytes, which a copy a key cost.
    last_key: Option<u64>,
    effects: Vec<Effect>,
    /// The length of the file being walked, which sizes the replay's key table.
    file_len: u64,
    /// A lone file read as a base while it lasts ([`Lone`]).
    lone: Lone,
    /// Commands of a lone file taken as its base: the second pass takes them so too.
    pub lone_base: u64,
    /// The last base key's expiry came (a rewrite writes it last).
    expired_last: bool,
    /// Whether a RESP base named a key in two runs apart (see
    /// [`take_resp_base`](Self::take_resp_base)).
    pub base_repeated: bool,
    /// The replay of the incremental commands, made before the base is read, from the
    /// keys they touch ([`Touched`]): the base tells it about those keys as it is read,
    /// and the commands are replayed as they come, with no second pass over the base.
    prepared: Option<BaseKeys>,
}

/// A replay learning which of its keys a base holds, as the base is read (the RDB
/// reader's visitor in both ways of [`FirstPass::prepared`] and [`SecondPass`]).
struct BaseKeys {
    replay: Replay,
    now_ms: i64,
}

impl KeyVisitor for BaseKeys {
    fn key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
        self.key_fp(db, aof_keys::fingerprint(key), expire_ms);
    }

    fn fingerprints(&self) -> Option<&[u64]> {
        self.replay.filter()
    }

    fn key_fp(&mut self, db: u32, fp: u64, expire_ms: Option<i64>) {
        let ttl = expire_ms.map_or(Ttl::None, |ms| Ttl::at(ms, self.now_ms));
        self.replay.base_key(db, fp, Some(ttl));
    }

    fn prefetch_fp(&self, db: u32, fp: u64) {
        self.replay.prefetch_base(db, fp);
    }
}

/// A lone AOF file (no manifest: a legacy `appendonly.aof`, or a base file checked on its
/// own) is read as a base (rewrite output) while its commands are what a rewrite writes
/// ([`FirstPass::rewrite_like`]), and as incremental commands from the first that is not.
/// Its keys then cost what a base's cost (a fingerprint each, 6 bytes) instead of a
/// replay's table of every key (a lone base of 7 M keys took 211 MB and twice the time
/// of its directory). Until [`LONE_PROBE`] commands, their effects are kept too, so that a
/// file that soon turns out not to be a rewrite's (a key named again, a DEL) is replayed
/// from its start in the same pass, as before.
enum Lone {
    /// Not a lone file, or past its base.
    No,
    /// In its first commands: their effects, to replay them should it not be a base.
    Probing(Vec<Effect>),
    /// Read as a base from here on (its first commands named no key twice).
    Base,
}

/// Commands of a lone file kept while it is probed (some 2 MiB of effects).
#[cfg(not(test))]
const LONE_PROBE: usize = 1 << 16;
/// A few, so that small test files go past the probe.
#[cfg(test)]
const LONE_PROBE: usize = 16;

/// How lone files were read, in this thread (tests): replayed from their start after the
/// probe, read as a base then as incremental commands.
#[cfg(test)]
pub(crate) mod lone_paths {
    thread_local! {
        pub static REPLAYED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        pub static BASE_THEN_INCR: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    pub fn bump(c: &'static std::thread::LocalKey<std::cell::Cell<usize>>) {
        c.with(|c| c.set(c.get() + 1));
    }
}

impl<'a> FirstPass<'a> {
    pub fn new(slots: Option<&'a mut SlotCheck>, now_ms: i64) -> Self {
        FirstPass {
            slots,
            base: None,
            base_db: BaseDb::default(),
            base_dbs: BTreeMap::new(),
            touched: FpSet::default(),
            live: None,
            full: false,
            replay_needed: false,
            exact: true,
            inexact_why: None,
            now_ms,
            db: 0,
            damaged: DamagedKeys::default(),
            last_key: None,
            effects: Vec::new(),
            file_len: 0,
            lone: Lone::No,
            lone_base: 0,
            expired_last: false,
            base_repeated: false,
            prepared: None,
        }
    }

    /// Replays the incremental commands as they come, over what the base holds of the keys
    /// they touch (`touched`, from a walk of the incremental files first): the base is
    /// then read once, where a second pass read it again (an RDB base's parse was most of
    /// a check). Not with a slot check (its own visitor of the base's keys).
    pub fn prepared(mut self, touched: FpSet) -> Self {
        if self.slots.is_none() {
            self.prepared = Some(BaseKeys {
                replay: Replay::new(touched, BTreeMap::new()),
                now_ms: self.now_ms,
            });
        }
        self
    }

    /// Reads the one file it walks as a lone one ([`Lone`]); not with a slot check, which
    /// must know every key once (a base key named again later would be checked twice).
    pub fn lone(mut self) -> Self {
        if self.slots.is_none() {
            self.lone = Lone::Probing(Vec::new());
        }
        self
    }

    /// Whether a lone file's command, of these effects, is what a rewrite writes, where it
    /// writes it: no effect on the key set (a keyless command, one that changes a key made
    /// before), a `SELECT` of a database the server has, one key created or written
    /// whole with no TTL (SET, HSET, RPUSH, SADD, ZADD, XADD, ...), or that key's
    /// `PEXPIREAT key ms` right after its data, once. Anything else (a DEL, a TTL set any
    /// other way, an expiry on another key, data after a key's expiry) ends the base.
    fn rewrite_like(&mut self, class: Class, cmd: &Command<'_>, effects: &[Effect]) -> bool {
        match *effects {
            // Not GETEX without options (no effect either): a base command names a key.
            [] => matches!(
                class,
                Class::Keyless | Class::Multi | Class::Exec | Class::Existing1 | Class::Create2
            ),
            [Effect::Select(db)] => db < DATABASES,
            [Effect::Key(fp, change)] => {
                let same = self.last_key == Some(fp);
                if let Class::Expire {
                    ms: true,
                    abs: true,
                } = class
                {
                    let ok = same && !self.expired_last && cmd.argc == 3;
                    self.expired_last |= ok;
                    ok
                } else if change == Change::TOUCH || change == Change::SET {
                    if !same {
                        self.expired_last = false;
                    }
                    !(same && self.expired_last)
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    /// A lone file's command: taken as its base's while it is [`rewrite_like`](Self::rewrite_like);
    /// `false` when it is the first that is not (the caller reads it as an incremental one).
    fn lone_command(&mut self, class: Class, cmd: &Command<'_>) -> bool {
        let mut effects = std::mem::take(&mut self.effects);
        effects.clear();
        aof_keys::effects(class, cmd, self.now_ms, &mut effects);
        let base = self.rewrite_like(class, cmd, &effects);
        if base {
            // The key the effect names is the one a base command writes.
            match (&*effects, base_key(class, cmd)) {
                (&[Effect::Key(fp, _)], Some(key)) => self.base_key_command(class, cmd, key, fp),
                _ => self.base_command(class, cmd),
            }
            self.lone_base += 1;
            if let Lone::Probing(kept) = &mut self.lone {
                kept.extend_from_slice(&effects);
                if self.lone_base >= LONE_PROBE as u64 {
                    self.probed();
                }
            }
        } else {
            self.lone_ends();
        }
        self.effects = effects;
        base
    }

    /// A lone file's first [`LONE_PROBE`] commands were all a rewrite's: read on as a base
    /// if they named no key twice (a rewrite names each once), else replayed.
    fn probed(&mut self) {
        let repeated = std::iter::once(&mut self.base_db)
            .chain(self.base_dbs.values_mut())
            .any(|d| d.keys.distinct() < d.counts.keys);
        if repeated {
            self.lone_ends();
        } else {
            self.lone = Lone::Base;
        }
    }

    /// A lone file's base ends: one still probed is replayed from its start instead (its
    /// keys unlearnt as a base), one read as a base goes on with incremental commands from
    /// the database it was in.
    fn lone_ends(&mut self) {
        match std::mem::replace(&mut self.lone, Lone::No) {
            Lone::No => {}
            Lone::Probing(kept) => {
                #[cfg(test)]
                lone_paths::bump(&lone_paths::REPLAYED);
                self.base_db = BaseDb::default();
                self.base_dbs.clear();
                (self.db, self.last_key, self.lone_base) = (0, None, 0);
                let mut r = Replay::growing(expected_keys(self.file_len));
                r.apply_all(&kept);
                self.live = Some(r);
            }
            Lone::Base => {
                #[cfg(test)]
                lone_paths::bump(&lone_paths::BASE_THEN_INCR);
                if self.base_is_empty() {
                    let mut r = Replay::growing(expected_keys(self.file_len));
                    r.apply_all(&[Effect::Select(self.db)]);
                    self.live = Some(r);
                }
            }
        }
    }

    /// The end of a lone file's walk: one probed to its end counts as a base if it named
    /// no key twice.
    pub fn lone_done(&mut self) {
        if matches!(self.lone, Lone::Probing(_)) {
            self.probed();
        }
    }

    fn base_command(&mut self, class: Class, cmd: &Command<'_>) {
        match class {
            Class::Select => {
                if let Some(db) = parse_u32(cmd.arg(1)) {
                    if db != self.db {
                        let next = self.base_dbs.remove(&db).unwrap_or_default();
                        let before = std::mem::replace(&mut self.base_db, next);
                        self.base_dbs.insert(self.db, before);
                        self.db = db;
                    }
                }
                self.last_key = None;
            }
            Class::Keyless | Class::Multi | Class::Exec => {}
            // A group of a stream the base made before (or of none: then no key).
            Class::Create2 if !aof_keys::xgroup_creates(cmd) => {}
            // Only changes a key made before (or none).
            Class::Existing1 => {}
            // Refused by the server (a score that is no number, ...): no key from it.
            Class::ZAdd if !aof_keys::zadd_ok(cmd) => {
                self.exact = false;
                self.inexact_why.get_or_insert_with(|| {
                    "a ZADD the server refuses (a score that is no number): it loads \
                     without it, as this count does"
                        .into()
                });
            }
            _ => {
                let Some(key) = base_key(class, cmd) else {
                    self.exact = false;
                    return;
                };
                self.base_key_command(class, cmd, key, aof_keys::fingerprint(key));
            }
        }
    }

    /// A base command that writes `key` (of fingerprint `fp`).
    fn base_key_command(&mut self, class: Class, cmd: &Command<'_>, key: &[u8], fp: u64) {
        if let Some(p) = &mut self.prepared {
            // As the second pass learns a base command's key.
            p.replay
                .base_key(self.db, fp, base_ttl(class, cmd, self.now_ms));
        }
        // A rewrite writes `PEXPIREAT key ms` right after the key's data; one on any other
        // key (a damaged file) makes no key: the server applies it only to a key that
        // exists, which this count cannot tell.
        if matches!(class, Class::Expire { .. }) && self.last_key != Some(fp) {
            self.exact = false;
            self.inexact_why.get_or_insert_with(|| {
                "an expiry on a key the rewrite did not just write (a rewrite never writes \
                 one): the server applies it only to a key that exists"
                    .into()
            });
            return;
        }
        let base = &mut self.base_db;
        let counts = &mut base.counts;
        if self.last_key != Some(fp) {
            self.last_key = Some(fp);
            counts.keys += 1;
            if !base.keys.push(fp) {
                self.exact = false;
            }
            if let Some(s) = self.slots.as_deref_mut() {
                s.check(key);
            }
        }
        // A rewrite gives each key with a TTL one `PEXPIREAT key ms` after its data.
        if let Some(ttl) = base_ttl(class, cmd, self.now_ms) {
            counts.expires += 1;
            counts.expired += u64::from(ttl == Ttl::Past);
        }
    }
}

impl FirstPass<'_> {
    /// The one-pass replay, every command applied.
    pub fn take_live(&mut self) -> Option<Replay> {
        let mut r = self.live.take()?;
        r.flush();
        if r.full {
            self.full = true;
            self.exact = false;
        }
        Some(r)
    }

    /// No key in what the files held before the first incremental command.
    fn base_is_empty(&self) -> bool {
        self.base_db.counts.keys == 0
            && self.base_dbs.values().all(|d| d.counts.keys == 0)
            && self
                .base
                .as_ref()
                .is_none_or(|b| b.keys_per_db.values().all(|&n| n == 0))
    }

    /// A RESP base's counts per db, each key counted once however its commands lie.
    pub fn take_resp_base(&mut self) -> BTreeMap<u32, DbCounts> {
        let mut dbs = std::mem::take(&mut self.base_dbs);
        dbs.insert(self.db, std::mem::take(&mut self.base_db));
        dbs.into_iter()
            .filter(|(_, d)| d.counts.keys > 0)
            .map(|(db, mut d)| {
                let distinct = d.keys.distinct();
                self.base_repeated |= distinct < d.counts.keys;
                d.counts.keys = distinct;
                (db, d.counts)
            })
            .collect()
    }
}

/// A RESP base's keys in one database: counted by runs of the same key, and the keys'
/// fingerprints, which count them exactly (a rewrite emits each key's commands together,
/// but a damaged file may not, so runs are only where to look).
#[derive(Default)]
struct BaseDb {
    counts: DbCounts,
    keys: FpRuns,
}

/// The keys a replay of a file of `len` bytes is first given room for: one every 256
/// bytes (an AOF of small writes rewrites its keys several times: 5 M commands of 44
/// bytes touched 761 k keys), at most 2^20 (a table of 16 MiB). Growing the table as keys
/// came, ten doublings each moving every key, cost a tenth of the check of such a file.
fn expected_keys(len: u64) -> usize {
    usize::try_from(len / 256)
        .unwrap_or(usize::MAX)
        .min(1 << 20)
}

/// The TTL a base (rewrite output) command sets: its `PEXPIREAT key ms`.
fn base_ttl(class: Class, cmd: &Command<'_>, now_ms: i64) -> Option<Ttl> {
    match class {
        Class::Expire {
            ms: true,
            abs: true,
        } => parse_i64(cmd.arg(2)).map(|ms| Ttl::at(ms, now_ms)),
        _ => None,
    }
}

impl AofSink for FirstPass<'_> {
    fn rdb_visitor(&mut self) -> Option<&mut dyn KeyVisitor> {
        if let Some(p) = &mut self.prepared {
            return Some(p);
        }
        self.slots.as_deref_mut().map(|s| s as &mut dyn KeyVisitor)
    }

    fn rdb(&mut self, outcome: RdbOutcome) {
        if self.live.is_some() && outcome.keys_per_db.values().any(|&n| n > 0) {
            // An RDB after incremental commands: not a layout Redis writes.
            self.exact = false;
            self.inexact_why
                .get_or_insert_with(|| "an RDB preamble after incremental commands".into());
        }
        self.damaged.extend(&outcome.damaged);
        self.base = Some(outcome);
        // Its commands come after a base already.
        self.lone = Lone::No;
    }

    fn file_start(&mut self, len: u64) {
        self.file_len = len;
        self.damaged.file_start();
    }

    #[inline]
    fn reads_damaged(&mut self, class: Class, cmd: &Command<'_>) -> Option<String> {
        self.damaged.command(class, cmd, self.now_ms)
    }

    fn command(&mut self, base: bool, class: Class, cmd: &Command<'_>) {
        if base {
            return self.base_command(class, cmd);
        }
        if !matches!(self.lone, Lone::No) && self.lone_command(class, cmd) {
            return;
        }
        if let Some(p) = self.prepared.take() {
            // The base is read: the replay starts from its counts.
            let counts = match &self.base {
                Some(out) => db_counts(out),
                None => self.take_resp_base(),
            };
            let mut r = p.replay;
            r.set_base_counts(counts);
            self.live = Some(r);
        }
        if self.live.is_none() && self.base_is_empty() {
            self.live = Some(Replay::growing(expected_keys(self.file_len)));
        }
        // Slot-check each written key once: the first time it is touched.
        if let Some(s) = self.slots.as_deref_mut() {
            for i in aof_keys::written_keys(class, cmd.argc) {
                if let Some(key) = cmd.arg(i) {
                    let fp = aof_keys::fingerprint(key);
                    // Known from now on, whatever the command does to the key: a key
                    // checked twice would count twice outside the slots.
                    let known = match &mut self.live {
                        Some(r) => r.learn(fp),
                        None => self.touched.insert(fp) == Some(false),
                    };
                    if !known {
                        s.check_named(key);
                    }
                }
            }
        }
        let now = self.now_ms;
        let produce = |out: &mut Vec<Effect>| aof_keys::effects(class, cmd, now, out);
        let effects: &[Effect] = match &mut self.live {
            // Made where the replay queues them (a copy a command saved).
            Some(r) if self.slots.is_none() => r.queue_from(produce),
            _ => {
                self.effects.clear();
                produce(&mut self.effects);
                &self.effects
            }
        };
        let (mut inexact, mut replay) = (false, false);
        for e in effects {
            match e {
                Effect::Inexact => inexact = true,
                Effect::Select(_) | Effect::AllAbsent(_) => {}
                _ => replay = true,
            }
        }
        self.replay_needed |= replay;
        if inexact {
            self.exact = false;
            if self.inexact_why.is_none() {
                self.inexact_why = Some(side_effects_why(cmd));
            }
        }
        if let Some(r) = &mut self.live {
            // A slot check needs every key known at once: it replays each command at once.
            if self.slots.is_some() {
                r.apply_all(&self.effects);
            }
            if r.full {
                self.full = true;
                self.exact = false;
            }
            return;
        }
        for e in &self.effects {
            for k in e.keys().into_iter().flatten() {
                if self.touched.insert(k).is_none() {
                    self.full = true;
                    self.exact = false;
                }
            }
        }
    }
}

#[cold]
fn side_effects_why(cmd: &Command<'_>) -> String {
    let name = cmd.arg(0).map(String::from_utf8_lossy).unwrap_or_default();
    format!(
        "the AOF's `{}` commands (and maybe others) may delete keys as a side effect, or \
         have arguments the reader does not follow",
        name.to_ascii_uppercase()
    )
}

/// Pass zero, over the incremental files alone: the keys their commands touch, for
/// [`FirstPass::prepared`]. Stops being of use past [`MAX_KEYS`](super::fp_set::MAX_KEYS)
/// keys (`full`).
pub(crate) struct Touched {
    pub touched: FpSet,
    pub full: bool,
    now_ms: i64,
    effects: Vec<Effect>,
}

impl Touched {
    pub fn new(now_ms: i64) -> Self {
        Touched {
            touched: FpSet::default(),
            full: false,
            now_ms,
            effects: Vec::new(),
        }
    }

    /// The keys touched, for [`FirstPass::prepared`]: `None` when there are none, or more
    /// than the set holds.
    pub fn keys(self) -> Option<FpSet> {
        (!self.full && self.touched.len() > 0).then_some(self.touched)
    }
}

impl AofSink for Touched {
    fn rdb_visitor(&mut self) -> Option<&mut dyn KeyVisitor> {
        None
    }

    fn rdb(&mut self, _outcome: RdbOutcome) {}

    fn command(&mut self, _base: bool, class: Class, cmd: &Command<'_>) {
        self.effects.clear();
        aof_keys::effects(class, cmd, self.now_ms, &mut self.effects);
        for e in &self.effects {
            for k in e.keys().into_iter().flatten() {
                self.full |= self.touched.insert(k).is_none();
            }
        }
    }
}

/// Pass two: which touched keys the base holds (and their TTLs), then the incr commands
/// replayed.
pub(crate) struct SecondPass {
    base: BaseKeys,
    db: u32,
    effects: Vec<Effect>,
    /// Commands of a lone file still to take as its base's ([`FirstPass::lone_base`]).
    lone_left: u64,
}

impl SecondPass {
    pub fn new(touched: FpSet, base_counts: BTreeMap<u32, DbCounts>, now_ms: i64) -> Self {
        SecondPass {
            base: BaseKeys {
                replay: Replay::new(touched, base_counts),
                now_ms,
            },
            db: 0,
            effects: Vec::new(),
            lone_left: 0,
        }
    }

    /// Takes a lone file's first `commands` as its base, as the first pass did.
    pub fn lone(mut self, commands: u64) -> Self {
        self.lone_left = commands;
        self
    }

    /// The replay, every command applied.
    pub fn replay(&self) -> &Replay {
        &self.base.replay
    }

    fn base_command(&mut self, class: Class, cmd: &Command<'_>) {
        match class {
            Class::Select => {
                if let Some(db) = parse_u32(cmd.arg(1)) {
                    self.db = db;
                }
            }
            Class::Keyless | Class::Multi | Class::Exec => {}
            Class::Create2 if !aof_keys::xgroup_creates(cmd) => {}
            Class::Existing1 => {}
            Class::ZAdd if !aof_keys::zadd_ok(cmd) => {}
            _ => {
                if let Some(key) = base_key(class, cmd) {
                    let ttl = base_ttl(class, cmd, self.base.now_ms);
                    self.base
                        .replay
                        .base_key(self.db, aof_keys::fingerprint(key), ttl);
                }
            }
        }
    }
}

impl AofSink for SecondPass {
    fn rdb_visitor(&mut self) -> Option<&mut dyn KeyVisitor> {
        Some(&mut self.base)
    }

    fn rdb(&mut self, _outcome: RdbOutcome) {}

    fn command(&mut self, base: bool, class: Class, cmd: &Command<'_>) {
        if base {
            return self.base_command(class, cmd);
        }
        if self.lone_left > 0 {
            self.base_command(class, cmd);
            self.lone_left -= 1;
            if self.lone_left == 0 {
                // The incremental commands go on in the database the base was writing.
                self.base.replay.apply_all(&[Effect::Select(self.db)]);
            }
            return;
        }
        self.effects.clear();
        aof_keys::effects(class, cmd, self.base.now_ms, &mut self.effects);
        self.base.replay.apply_all(&self.effects);
    }
}

/// An RDB's keys and TTLs per database, as an AOF replay starts from them.
pub(crate) fn db_counts(out: &RdbOutcome) -> BTreeMap<u32, DbCounts> {
    let mut counts: BTreeMap<u32, DbCounts> = out
        .keys_per_db
        .iter()
        .map(|(&db, &keys)| {
            (
                db,
                DbCounts {
                    keys,
                    ..DbCounts::default()
                },
            )
        })
        .collect();
    for (&db, &(expires, expired)) in &out.expires_per_db {
        let c = counts.entry(db).or_default();
        c.expires = expires;
        c.expired = expired;
    }
    counts
}

/// The key a base (rewrite output) command is about: rewrites emit each key's commands
/// one after another, so a change of key is a new key.
fn base_key<'c>(class: Class, cmd: &Command<'c>) -> Option<&'c [u8]> {
    aof_keys::written_keys(class, cmd.argc)
        .next()
        .and_then(|i| cmd.arg(i))
}

fn parse_u32(arg: Option<&[u8]>) -> Option<u32> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

fn parse_i64(arg: Option<&[u8]>) -> Option<i64> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}
