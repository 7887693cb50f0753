//! What an AOF command does to the key set, for counting the keys an AOF leaves.
//!
//! Keys are tracked as 64-bit fingerprints, and only keys that incremental commands touch,
//! so memory stays bounded however big the base is. Commands that may delete a key as a
//! side effect (popping the last element, an empty `*STORE` result, ...) or that this
//! table does not know make the count inexact rather than wrong-and-confident.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hasher;

use super::resp::Command;

/// Distinct keys tracked before giving up on an exact count (about 20 MB of fingerprints).
pub(crate) const TRACK_CAP: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Changes no key (FUNCTION, PING, ...).
    Keyless,
    /// MULTI / EXEC: no key either, but they bound what a truncation may keep.
    Multi,
    Exec,
    Select,
    FlushDb,
    FlushAll,
    SwapDb,
    /// Creates (or keeps) the key in argument 1.
    Create1,
    /// MSET / MSETNX: keys at 1, 3, 5, ...
    CreateOdd,
    /// XGROUP <sub> <key>: keeps or creates the key in argument 2.
    Create2,
    /// DEL / UNLINK: every argument is a key removed.
    RemoveAll,
    /// GETDEL: removes argument 1.
    Remove1,
    /// RENAME / RENAMENX src dst.
    Rename,
    /// MOVE key db.
    Move,
    /// COPY src dst [DB n] [REPLACE].
    Copy,
    /// Touches the key in argument 1 and may delete it (when it empties a collection).
    Maybe1,
    /// Writes the key in argument 2 and may delete a key (SMOVE, LMOVE, BITOP, ...).
    Maybe2,
    /// A command this table does not know.
    Unknown,
}

pub(crate) fn classify(name: &[u8]) -> Class {
    use Class::*;
    match name {
        b"multi" => Multi,
        b"exec" => Exec,
        b"discard" | b"ping" | b"echo" | b"function" | b"script" | b"publish" | b"spublish"
        | b"pfdebug" | b"pfselftest" => Keyless,
        b"select" => Select,
        b"flushdb" => FlushDb,
        b"flushall" => FlushAll,
        b"swapdb" => SwapDb,
        b"set" | b"setnx" | b"setex" | b"psetex" | b"getset" | b"append" | b"incr" | b"decr"
        | b"incrby" | b"decrby" | b"incrbyfloat" | b"setrange" | b"setbit" | b"bitfield"
        | b"hset" | b"hmset" | b"hsetnx" | b"hincrby" | b"hincrbyfloat" | b"sadd" | b"zadd"
        | b"zincrby" | b"lpush" | b"rpush" | b"lpushx" | b"rpushx" | b"linsert" | b"lset"
        | b"xadd" | b"xsetid" | b"xclaim" | b"xautoclaim" | b"xack" | b"xtrim" | b"xdel"
        | b"pfadd" | b"pfmerge" | b"geoadd" | b"restore" | b"restore-asking" | b"expire"
        | b"pexpire" | b"expireat" | b"pexpireat" | b"persist" | b"getex" => Create1,
        b"mset" | b"msetnx" => CreateOdd,
        b"xgroup" => Create2,
        b"del" | b"unlink" => RemoveAll,
        b"getdel" => Remove1,
        b"rename" | b"renamenx" => Rename,
        b"move" => Move,
        b"copy" => Copy,
        b"lpop" | b"rpop" | b"blpop" | b"brpop" | b"lrem" | b"ltrim" | b"srem" | b"spop"
        | b"zrem" | b"zremrangebyscore" | b"zremrangebyrank" | b"zremrangebylex" | b"zpopmin"
        | b"zpopmax" | b"bzpopmin" | b"bzpopmax" | b"hdel" | b"sinterstore" | b"sunionstore"
        | b"sdiffstore" | b"zunionstore" | b"zinterstore" | b"zdiffstore" | b"zrangestore"
        | b"geosearchstore" | b"georadius" | b"georadiusbymember" | b"sort" | b"lmpop"
        | b"zmpop" | b"blmpop" | b"bzmpop" | b"hgetdel" | b"hexpire" | b"hpexpire"
        | b"hexpireat" | b"hpexpireat" => Maybe1,
        b"bitop" | b"smove" | b"lmove" | b"blmove" | b"rpoplpush" | b"brpoplpush" => Maybe2,
        _ => Unknown,
    }
}

/// Whether argument `i` of a command of this class must be held in memory.
pub(crate) fn wants(class: Class, i: usize) -> bool {
    use Class::*;
    match class {
        Keyless | Multi | Exec | Unknown | FlushDb | FlushAll => false,
        Select | Create1 | Remove1 | Maybe1 => i == 1,
        Copy => true,
        SwapDb | Rename | Move | Maybe2 => i <= 2,
        CreateOdd => i % 2 == 1,
        Create2 => i == 2,
        RemoveAll => true,
    }
}

pub(crate) fn fingerprint(key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(key);
    h.finish()
}

fn parse_db(arg: Option<&[u8]>) -> Option<u32> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

/// An effect on the key set, in terms of key fingerprints.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Select(u32),
    FlushDb,
    FlushAll,
    SwapDb(u32, u32),
    Create(u64),
    Remove(u64),
    /// Remove from the current db, create in another.
    Move(u64, u32),
    /// Create in a given db.
    CreateIn(u64, u32),
    /// The command's effect on the key set cannot be known from it alone.
    Inexact,
}

/// Turns a command into effects (pushed into `out`, reused by the caller).
pub(crate) fn effects(class: Class, cmd: &Command<'_>, out: &mut Vec<Effect>) {
    use Class::*;
    out.clear();
    let fp = |i: usize| cmd.arg(i).map(fingerprint);
    let push_or_inexact = |e: Option<Effect>, out: &mut Vec<Effect>| match e {
        Some(e) => out.push(e),
        None => out.push(Effect::Inexact),
    };
    match class {
        Keyless | Multi | Exec => {}
        Unknown => out.push(Effect::Inexact),
        Select => push_or_inexact(parse_db(cmd.arg(1)).map(Effect::Select), out),
        FlushDb => out.push(Effect::FlushDb),
        FlushAll => out.push(Effect::FlushAll),
        SwapDb => match (parse_db(cmd.arg(1)), parse_db(cmd.arg(2))) {
            (Some(a), Some(b)) => out.push(Effect::SwapDb(a, b)),
            _ => out.push(Effect::Inexact),
        },
        Create1 => push_or_inexact(fp(1).map(Effect::Create), out),
        Create2 => push_or_inexact(fp(2).map(Effect::Create), out),
        CreateOdd => {
            for i in (1..cmd.argc).step_by(2) {
                push_or_inexact(fp(i).map(Effect::Create), out);
            }
        }
        RemoveAll => {
            for i in 1..cmd.argc {
                push_or_inexact(fp(i).map(Effect::Remove), out);
            }
        }
        Remove1 => push_or_inexact(fp(1).map(Effect::Remove), out),
        Rename => {
            push_or_inexact(fp(1).map(Effect::Remove), out);
            push_or_inexact(fp(2).map(Effect::Create), out);
        }
        Move => match (fp(1), parse_db(cmd.arg(2))) {
            (Some(k), Some(db)) => out.push(Effect::Move(k, db)),
            _ => out.push(Effect::Inexact),
        },
        Copy => {
            let mut db = None;
            let mut i = 3;
            while i < cmd.argc {
                if cmd.arg(i).is_some_and(|a| a.eq_ignore_ascii_case(b"db")) {
                    db = parse_db(cmd.arg(i + 1));
                    if db.is_none() {
                        out.push(Effect::Inexact);
                    }
                }
                i += 1;
            }
            match (fp(2), db) {
                (Some(k), Some(db)) => out.push(Effect::CreateIn(k, db)),
                (Some(k), None) => out.push(Effect::Create(k)),
                _ => out.push(Effect::Inexact),
            }
        }
        Maybe1 => {
            push_or_inexact(fp(1).map(Effect::Create), out);
            out.push(Effect::Inexact);
        }
        Maybe2 => {
            push_or_inexact(fp(2).map(Effect::Create), out);
            out.push(Effect::Inexact);
        }
    }
}

/// Keys per database as the AOF's commands are replayed: counts start from the base's,
/// and membership is known for every key the incremental part touches.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub db: u32,
    pub counts: BTreeMap<u32, u64>,
    pub live: HashMap<u32, HashSet<u64>>,
    pub exact: bool,
}

impl Replay {
    pub fn new(counts: BTreeMap<u32, u64>, live: HashMap<u32, HashSet<u64>>) -> Self {
        Replay {
            db: 0,
            counts,
            live,
            exact: true,
        }
    }

    fn create(&mut self, db: u32, k: u64) {
        if self.live.entry(db).or_default().insert(k) {
            *self.counts.entry(db).or_default() += 1;
        }
    }

    fn remove(&mut self, db: u32, k: u64) -> bool {
        let gone = self.live.get_mut(&db).is_some_and(|s| s.remove(&k));
        if gone {
            if let Some(c) = self.counts.get_mut(&db) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    self.counts.remove(&db);
                }
            }
        }
        gone
    }

    pub fn apply(&mut self, e: &Effect) {
        match *e {
            Effect::Select(db) => self.db = db,
            Effect::FlushDb => {
                self.counts.remove(&self.db);
                self.live.remove(&self.db);
            }
            Effect::FlushAll => {
                self.counts.clear();
                self.live.clear();
            }
            Effect::SwapDb(a, b) => {
                let (ca, cb) = (self.counts.remove(&a), self.counts.remove(&b));
                let (la, lb) = (self.live.remove(&a), self.live.remove(&b));
                if let Some(c) = ca {
                    self.counts.insert(b, c);
                }
                if let Some(c) = cb {
                    self.counts.insert(a, c);
                }
                if let Some(l) = la {
                    self.live.insert(b, l);
                }
                if let Some(l) = lb {
                    self.live.insert(a, l);
                }
            }
            Effect::Create(k) => self.create(self.db, k),
            Effect::CreateIn(k, db) => self.create(db, k),
            Effect::Remove(k) => {
                self.remove(self.db, k);
            }
            Effect::Move(k, db) => {
                if self.remove(self.db, k) {
                    self.create(db, k);
                }
            }
            Effect::Inexact => self.exact = false,
        }
    }
}

/// The arguments holding keys a command of this class writes (for slot checks).
pub(crate) fn written_keys(class: Class, argc: usize) -> impl Iterator<Item = usize> {
    use Class::*;
    let (from, step) = match class {
        Create1 | Maybe1 => (1, argc),
        Create2 | Rename | Copy | Maybe2 => (2, argc),
        CreateOdd => (1, 2),
        _ => (argc, 1),
    };
    (from..argc).step_by(step.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_counts_keys_through_selects_flushes_swaps_and_moves() {
        let mut r = Replay::new(BTreeMap::from([(0, 5)]), HashMap::new());
        for e in [
            Effect::Create(1),
            Effect::Create(1),
            Effect::Create(2),
            Effect::Remove(2),
            Effect::Remove(99),
            Effect::Select(3),
            Effect::Create(7),
            Effect::Move(7, 4),
            Effect::SwapDb(0, 4),
        ] {
            r.apply(&e);
        }
        assert_eq!(r.counts, BTreeMap::from([(0, 1), (4, 6)]));
        r.apply(&Effect::Select(4));
        r.apply(&Effect::FlushDb);
        assert_eq!(r.counts, BTreeMap::from([(0, 1)]));
        assert!(r.exact);
    }

    #[test]
    fn classifies_the_commands_an_aof_holds() {
        assert_eq!(classify(b"set"), Class::Create1);
        assert_eq!(classify(b"del"), Class::RemoveAll);
        assert_eq!(classify(b"lpop"), Class::Maybe1);
        assert_eq!(classify(b"frobnicate"), Class::Unknown);
        assert_eq!(
            written_keys(Class::CreateOdd, 5).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(written_keys(Class::Create1, 3).collect::<Vec<_>>(), [1]);
        assert_eq!(written_keys(Class::RemoveAll, 3).count(), 0);
    }
}
