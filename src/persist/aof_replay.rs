//! Replaying an AOF's incremental commands over the keys they touch: keys per database,
//! and how many carry a TTL and how many of those had passed when the check ran.
//!
//! Counts start from the base's. Every key an incremental command names is in one
//! [`FpSet`]; its state in each database is two bits at its slot: absent, alive without
//! TTL, with a TTL still ahead, with a TTL passed. So the memory is that of the set plus
//! 2 bits a slot for each database used.
//!
//! Two ways to fill the set: by a first pass over the files (then the base's keys among
//! them are learnt in a second pass, before the commands are replayed), or, when the base
//! holds no key, as the commands come ([`Replay::growing`]): one pass.

use std::collections::BTreeMap;

use super::aof_keys::{Change, Effect, Ttl, When, ABSENT, DATABASES, FUTURE, PAST};
use super::fp_set::{fp_filter, in_filter, FpSet, SlotStates};

/// Commands a batch of [`Replay::queue`] holds. A wait of 8 commands (some 0.6 µs),
/// applied one command at a time, left lookups still waiting on this VM's memory: 32 and
/// 64 took 8-12% off the check of 5 M small commands, 16 half of that.
const BATCH: usize = 64;

/// The most bits [`Replay::base_key`]'s filter takes (2 MiB).
const FILTER_BITS: usize = 1 << 24;

/// Keys of one database: all of them (expired or not: a server loading an AOF keeps
/// expired keys until its expiry cycle removes them), those with a TTL, those whose TTL
/// had passed when the check ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DbCounts {
    pub keys: u64,
    pub expires: u64,
    pub expired: u64,
}

impl DbCounts {
    fn add(&mut self, state: u8, sign: bool) {
        let (keys, expires, expired) = (
            u64::from(state != ABSENT),
            u64::from(state >= FUTURE),
            u64::from(state == PAST),
        );
        if sign {
            self.keys += keys;
            self.expires += expires;
            self.expired += expired;
        } else {
            self.keys = self.keys.saturating_sub(keys);
            self.expires = self.expires.saturating_sub(expires);
            self.expired = self.expired.saturating_sub(expired);
        }
    }
}

#[derive(Clone, Default)]
struct Db {
    counts: DbCounts,
    states: SlotStates,
}

/// The databases by number: those a default server has in an array (a map's lookup,
/// three a command, cost a tenth of the replay), any other in a map. A database of the
/// array with no key and no state is as good as absent.
struct Dbs {
    low: Vec<Db>,
    high: BTreeMap<u32, Db>,
}

impl Dbs {
    fn new() -> Self {
        Dbs {
            low: vec![Db::default(); DATABASES as usize],
            high: BTreeMap::new(),
        }
    }

    #[inline]
    fn get(&self, db: u32) -> Option<&Db> {
        match self.low.get(db as usize) {
            Some(d) => Some(d),
            None => self.high.get(&db),
        }
    }

    #[inline]
    fn get_mut(&mut self, db: u32) -> &mut Db {
        match self.low.get_mut(db as usize) {
            Some(d) => d,
            None => self.high.entry(db).or_default(),
        }
    }

    fn take(&mut self, db: u32) -> Db {
        match self.low.get_mut(db as usize) {
            Some(d) => std::mem::take(d),
            None => self.high.remove(&db).unwrap_or_default(),
        }
    }

    fn clear(&mut self) {
        *self = Dbs::new();
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Db> {
        self.low.iter_mut().chain(self.high.values_mut())
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &Db)> {
        (0..DATABASES)
            .zip(&self.low)
            .chain(self.high.iter().map(|(&n, d)| (n, d)))
    }
}

pub(crate) struct Replay {
    /// Effects queued ([`queue`](Self::queue)), their keys' slots on their way into
    /// cache: the commands of the batch being filled, and those of the full batch before
    /// it, which is applied when the next one fills (so each effect waits for 64 to 128
    /// commands, some 5 µs).
    filling: Vec<Effect>,
    waiting: Vec<Effect>,
    filled: usize,
    touched: FpSet,
    /// A bit for each touched key's top bits, some 16 bits a key (a power of two, at most
    /// [`FILTER_BITS`]), for [`base_key`](Self::base_key); `None` when the set grows.
    filter: Option<Vec<u64>>,
    /// Keys are added as commands name them (no base keys to learn first).
    grows: bool,
    db: u32,
    dbs: Dbs,
    pub exact: bool,
    /// A growing replay met more keys than the set holds.
    pub full: bool,
}

impl Replay {
    /// A replay over a base whose keys among `touched` are given by
    /// [`base_key`](Self::base_key) before any command.
    pub fn new(touched: FpSet, base: BTreeMap<u32, DbCounts>) -> Self {
        let filter = fp_filter(touched.stored(), touched.len(), 16, FILTER_BITS);
        let mut r = Replay {
            filter: Some(filter),
            ..Replay::over(touched)
        };
        r.set_base_counts(base);
        r
    }

    /// A replay of these keys, with no filter and no base.
    fn over(touched: FpSet) -> Self {
        Replay {
            filter: None,
            filling: Vec::new(),
            waiting: Vec::new(),
            filled: 0,
            touched,
            grows: false,
            full: false,
            db: 0,
            dbs: Dbs::new(),
            exact: true,
        }
    }

    /// Counts from the base's, once it is read: keys [`base_key`](Self::base_key) learnt
    /// before are in them already.
    pub fn set_base_counts(&mut self, base: BTreeMap<u32, DbCounts>) {
        for (db, counts) in base {
            self.dbs.get_mut(db).counts = counts;
        }
    }

    /// A replay over a base that holds no key: every key starts absent and is added when
    /// a command names it; room for `expected` keys is made at once.
    pub fn growing(expected: usize) -> Self {
        let mut touched = FpSet::default();
        touched.reserve(expected);
        Replay {
            grows: true,
            ..Replay::over(touched)
        }
    }

    /// Applies one command's effects 64 to 128 commands later, asking for their keys'
    /// slots now: each command's lookups otherwise waited for memory (a 16 MiB table for
    /// an AOF of 5 M small commands). Applied in batches of [`BATCH`] commands, where a
    /// queue of commands cost a call, the queue's bookkeeping and a table check per
    /// command. [`flush`](Self::flush) applies what is queued. The effects are those
    /// `produce` appends to the batch; returns them.
    #[inline]
    pub fn queue_from(&mut self, produce: impl FnOnce(&mut Vec<Effect>)) -> &[Effect] {
        // Made into the batch, where a copy from the maker's own vector cost a call to
        // `memcpy` a command.
        let start = self.filling.len();
        produce(&mut self.filling);
        self.prefetch(&self.filling[start..]);
        self.filled += 1;
        if self.filled < BATCH {
            return &self.filling[start..];
        }
        let mut ready = std::mem::take(&mut self.waiting);
        self.apply_all(&ready);
        // The applied batch's memory is the next one's.
        ready.clear();
        self.waiting = std::mem::replace(&mut self.filling, ready);
        self.filled = 0;
        &self.waiting[start..]
    }

    /// Applies every queued effect.
    pub fn flush(&mut self) {
        let (waiting, filling) = (
            std::mem::take(&mut self.waiting),
            std::mem::take(&mut self.filling),
        );
        self.apply_all(&waiting);
        self.apply_all(&filling);
        self.filled = 0;
    }

    #[inline]
    fn prefetch(&self, effects: &[Effect]) {
        // The states of the current database too: their words missed the cache as often
        // as the table did (a third of the replay's time).
        let states = self.dbs.get(self.db).map(|d| &d.states);
        let ask = |k: u64| {
            self.touched.prefetch(k);
            if let Some(s) = states {
                s.prefetch(self.touched.home(k));
            }
        };
        // The pair taken as it is: `flatten` over it, out of line, cost 75 instructions a
        // command of an AOF of small commands' 746 (a tenth of its check), 33 more than this.
        for e in effects {
            let [a, b] = e.keys();
            if let Some(k) = a {
                ask(k);
            }
            if let Some(k) = b {
                ask(k);
            }
        }
    }

    /// Whether a command named this key before; a growing replay learns it now (absent
    /// until a change makes it), so that the answer is yes from now on whatever the
    /// command does to it (an expiry or a write under `XX` leaves a key never seen absent,
    /// and would leave it out of the set). A replay that does not grow holds every named
    /// key already.
    pub fn learn(&mut self, fp: u64) -> bool {
        if !self.grows {
            return self.touched.contains(fp);
        }
        self.make_room(1);
        match self.touched.insert_at(fp) {
            Some((_, new)) => !new,
            None => {
                self.full = true;
                self.exact = false;
                false
            }
        }
    }

    pub fn counts(&self) -> BTreeMap<u32, DbCounts> {
        self.dbs
            .iter()
            .filter(|(_, d)| d.counts.keys > 0)
            .map(|(db, d)| (db, d.counts))
            .collect()
    }

    fn get(&self, db: u32, slot: usize) -> u8 {
        self.dbs.get(db).map_or(ABSENT, |d| d.states.get(slot))
    }

    fn put(&mut self, db: u32, slot: usize, state: u8) {
        let slots = self.touched.slots();
        let d = self.dbs.get_mut(db);
        let old = d.states.set(slots, slot, state);
        d.counts.add(old, false);
        d.counts.add(state, true);
    }

    /// The slot of a key a command makes (adding it, when the replay grows).
    fn slot(&mut self, fp: u64) -> Option<usize> {
        if self.grows {
            let s = self.touched.insert_at(fp).map(|(s, _)| s);
            if s.is_none() {
                self.full = true;
                self.exact = false;
            }
            return s;
        }
        let s = self.touched.find(fp);
        if s.is_none() {
            self.exact = false;
        }
        s
    }

    /// The slot of a key a command needs to exist: a growing replay has never seen a key
    /// it does not know, so that key is absent (and stays out of the set).
    fn existing(&mut self, fp: u64) -> Option<usize> {
        if self.grows {
            return self.touched.find(fp);
        }
        self.slot(fp)
    }

    /// Room for `keys` more keys, so that no slot moves while they are added.
    fn make_room(&mut self, keys: usize) {
        if let Some(old) = self.touched.reserve(keys) {
            for d in self.dbs.iter_mut() {
                d.states = d.states.moved(&old, &self.touched);
            }
        }
    }

    /// A key the base holds (already in the base's counts): its state, when an
    /// incremental command touches it. A later command of a RESP base for the same key
    /// (`ttl` None) leaves a TTL set by an earlier one.
    pub fn base_key(&mut self, db: u32, fp: u64, ttl: Option<Ttl>) {
        if !self.maybe_touched(fp) {
            return;
        }
        let Some(slot) = self.touched.find(fp) else {
            return;
        };
        let slots = self.touched.slots();
        let d = self.dbs.get_mut(db);
        let old = d.states.get(slot);
        let new = Change::write(When::Always, ttl).next(old);
        if new != old {
            d.states.set(slots, slot, new);
        }
    }

    /// Asks the CPU for what [`base_key`](Self::base_key) of this key will read: its
    /// slot in the touched keys' table, and its state in database `db`'s.
    #[inline]
    pub fn prefetch_base(&self, db: u32, fp: u64) {
        self.touched.prefetch(fp);
        if let Some(d) = self.dbs.get(db) {
            d.states.prefetch(self.touched.home(fp));
        }
    }

    /// Whether `fp` may be a touched key: `false` for most of a base's keys, which are
    /// not, at the cost of a bit test (a lookup in the table that finds nothing walks
    /// slots until a free one, and whether it ends there is a branch the CPU cannot
    /// guess: a quarter of the check of an AOF of a 1 GB RDB base and a few incremental
    /// commands).
    #[inline]
    fn maybe_touched(&self, fp: u64) -> bool {
        self.filter.as_ref().is_none_or(|f| in_filter(f, fp))
    }

    /// The filter [`base_key`](Self::base_key) looks through, for whoever can look
    /// through it first (a base's reader, with no call for most keys).
    pub fn filter(&self) -> Option<&[u64]> {
        self.filter.as_deref()
    }

    /// Applies one command's effects.
    pub fn apply_all(&mut self, effects: &[Effect]) {
        if self.grows {
            self.make_room(effects.len() * 2);
        }
        let mut i = 0;
        while i < effects.len() {
            if let Effect::AllAbsent(n) = effects[i] {
                let group = &effects[i + 1..(i + 1 + n).min(effects.len())];
                let db = self.db;
                let present = group.iter().any(|e| {
                    e.keys()[0]
                        .and_then(|k| self.touched.find(k))
                        .is_some_and(|s| self.get(db, s) != ABSENT)
                });
                if present {
                    i += 1 + n;
                    continue;
                }
            } else {
                self.apply(&effects[i]);
            }
            i += 1;
        }
    }

    fn apply(&mut self, e: &Effect) {
        let db = self.db;
        match *e {
            // The server refuses a database it does not have and the command is no write
            // (SELECT then leaves the current one); `databases` may differ from 16, so
            // the count is no longer sure.
            Effect::Select(n) if n < DATABASES => self.db = n,
            Effect::SwapDb(a, b) if a < DATABASES && b < DATABASES => {
                if a != b {
                    let (da, dbb) = (self.dbs.take(a), self.dbs.take(b));
                    *self.dbs.get_mut(b) = da;
                    *self.dbs.get_mut(a) = dbb;
                }
            }
            Effect::Select(_) | Effect::SwapDb(..) | Effect::Inexact => self.exact = false,
            Effect::FlushDb => {
                self.dbs.take(db);
            }
            Effect::FlushAll => self.dbs.clear(),
            Effect::AllAbsent(_) => {}
            Effect::Key(k, change) => {
                let s = if change.creates() {
                    self.slot(k)
                } else {
                    self.existing(k)
                };
                if let Some(s) = s {
                    let old = self.get(db, s);
                    let new = change.next(old);
                    if new != old {
                        self.put(db, s, new);
                    }
                }
            }
            Effect::Rename(a, b, nx) => {
                let Some(sa) = self.existing(a) else { return };
                if self.get(db, sa) == ABSENT {
                    return;
                }
                let Some(sb) = self.slot(b) else { return };
                let state = self.get(db, sa);
                if sa == sb || (nx && self.get(db, sb) != ABSENT) {
                    return;
                }
                self.put(db, sa, ABSENT);
                self.put(db, sb, state);
            }
            Effect::Move(k, to) => {
                if to >= DATABASES {
                    self.exact = false;
                    return;
                }
                let Some(s) = self.existing(k) else { return };
                let state = self.get(db, s);
                if to == db || state == ABSENT || self.get(to, s) != ABSENT {
                    return;
                }
                self.put(db, s, ABSENT);
                self.put(to, s, state);
            }
            Effect::Copy(a, b, to, replace) => {
                let to = to.unwrap_or(db);
                if to >= DATABASES {
                    self.exact = false;
                    return;
                }
                let Some(sa) = self.existing(a) else { return };
                if self.get(db, sa) == ABSENT {
                    return;
                }
                let Some(sb) = self.slot(b) else { return };
                let state = self.get(db, sa);
                let same = sa == sb && to == db;
                if same || (!replace && self.get(to, sb) != ABSENT) {
                    return;
                }
                self.put(to, sb, state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::aof_keys::effects;
    use crate::persist::resp::RespReader;
    use crate::persist::source::Source;

    const NOW: i64 = 1_700_000_000_000;

    fn resp(cmds: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cmds {
            let parts: Vec<&str> = c.split(' ').collect();
            out.extend(format!("*{}\r\n", parts.len()).bytes());
            for p in parts {
                out.extend(format!("${}\r\n{p}\r\n", p.len()).bytes());
            }
        }
        out
    }

    /// Replays `cmds` over an empty base; the counts of db 0 and whether exact.
    fn replay(cmds: &[&str]) -> (BTreeMap<u32, DbCounts>, bool) {
        let data = resp(cmds);
        let mut touched = FpSet::default();
        let mut out = Vec::new();
        let mut all = Vec::new();
        let mut src = Source::new(&data[..], 0, data.len() as u64);
        let mut r = RespReader::new(&mut src);
        while let Some(c) = r.next_command().unwrap() {
            effects(c.class, &c, NOW, &mut out);
            for e in &out {
                for k in e.keys().into_iter().flatten() {
                    touched.insert(k);
                }
            }
            all.push(std::mem::take(&mut out));
        }
        let mut rep = Replay::new(touched, BTreeMap::new());
        // The one-pass replay, filling its set as it goes, counts the same.
        let mut growing = Replay::growing(0);
        // So does one that queues each command's effects and applies them in batches.
        let mut queued = Replay::growing(0);
        for e in &all {
            rep.apply_all(e);
            growing.apply_all(e);
            assert_eq!(queued.queue_from(|out| out.extend_from_slice(e)), &e[..]);
        }
        queued.flush();
        assert_eq!(growing.counts(), rep.counts(), "{cmds:?}");
        assert_eq!(growing.exact, rep.exact, "{cmds:?}");
        assert_eq!(queued.counts(), rep.counts(), "{cmds:?}");
        assert_eq!(queued.exact, rep.exact, "{cmds:?}");
        (rep.counts(), rep.exact)
    }

    fn db0(keys: u64, expires: u64, expired: u64) -> BTreeMap<u32, DbCounts> {
        BTreeMap::from([(
            0,
            DbCounts {
                keys,
                expires,
                expired,
            },
        )])
    }

    #[test]
    fn follows_ttls_through_every_command_that_sets_keeps_or_clears_one() {
        let past = NOW - 1000;
        let future = NOW + 3_600_000;
        let cmds = [
            format!("SET a v PXAT {past}"),
            format!("SET b v PXAT {future}"),
            "SET c v".into(),
            "EXPIRE c 100".into(),
            "SETEX d 100 v".into(),
            "PSETEX e 100 v".into(),
            "PERSIST e".into(),
            "SET b v KEEPTTL".into(),
            "SET d v".into(),
            format!("PEXPIREAT f {future}"),
            "SET g v".into(),
            format!("GETEX g PXAT {past}"),
            "SET h v EX 10".into(),
            "RENAME h h2".into(),
            "SET i v".into(),
            "COPY g i2".into(),
            "EXPIRE i 10 XX".into(),
            "EXPIRE i 10 NX".into(),
            format!("PEXPIREAT c {past} GT"),
            "SET j v NX".into(),
            format!("SET j v PXAT {past} NX"),
            "INCR j".into(),
            "MSETNX j 1 k 2".into(),
            "MSETNX k 1 l 2".into(),
            "MOVE b 3".into(),
        ];
        let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
        let (counts, exact) = replay(&cmds);
        assert!(exact);
        // a(past) c(future) d() e() g(past) h2(future) i(future) i2(past) j() k() l()
        let mut want = db0(11, 6, 3);
        want.insert(
            3,
            DbCounts {
                keys: 1,
                expires: 1,
                expired: 0,
            },
        );
        assert_eq!(counts, want);
    }

    #[test]
    fn a_growing_replay_keeps_every_state_while_its_set_grows() {
        // Enough keys to grow the set many times, in two databases, with TTLs and
        // removals spread over the whole run.
        let mut cmds = Vec::new();
        for i in 0..20_000 {
            cmds.push(format!("SET k{i} v"));
            if i % 3 == 0 {
                cmds.push(format!("EXPIRE k{} 100", i / 2));
            }
            if i % 5 == 0 {
                cmds.push(format!("DEL k{}", i / 3));
            }
            if i % 7 == 0 {
                cmds.push(format!("MOVE k{} 2", i / 4));
            }
        }
        let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
        let (counts, exact) = replay(&cmds);
        assert!(exact);
        assert!(counts[&0].keys > 10_000, "{counts:?}");
    }

    #[test]
    fn counts_keys_through_selects_flushes_swaps_and_moves() {
        let (counts, exact) = replay(&[
            "SET a 1",
            "SET a 1",
            "SET b 1",
            "DEL b missing",
            "SELECT 3",
            "SET c 1",
            "MOVE c 4",
            "SWAPDB 0 4",
            "SELECT 0",
            "FLUSHDB",
            "SWAPDB 4 4",
            "SELECT 4",
            "EXPIRE missing 10",
            "GETEX missing PERSIST",
        ]);
        assert!(exact);
        assert_eq!(
            counts,
            BTreeMap::from([(
                4,
                DbCounts {
                    keys: 1,
                    expires: 0,
                    expired: 0
                }
            )])
        );
        let (_, exact) = replay(&["SELECT 99", "SET a 1"]);
        assert!(!exact);
        let (_, exact) = replay(&["SET a 1 EX notanumber"]);
        assert!(!exact);
        // Commands the server refuses at run time create nothing: not followed exactly.
        let (counts, exact) = replay(&["ZADD z NX 1 m 2.5 n", "ZADD y inf m", "XACK s g 1-1"]);
        assert!(exact);
        assert_eq!(counts, db0(2, 0, 0));
        for bad in [
            "ZADD z notanumber m",
            "ZADD z nan m",
            "ZADD z 1",
            "HSET h f",
            "MSET a 1 b",
        ] {
            assert!(!replay(&[bad]).1, "{bad}");
        }
    }
}
