//! What an AOF command does to the key set and to keys' expiries, for counting the keys
//! an AOF leaves and how many of them carry a TTL.
//!
//! Keys are named by 64-bit fingerprints ([`super::fp_set`]). Commands that may delete a
//! key as a side effect (popping the last element, an empty `*STORE` result, ...), or
//! whose arguments this table cannot read as the server would, make the count inexact
//! rather than wrong-and-confident. An AOF holds only commands that succeeded when they
//! were written, and replaying it repeats them from the same state, so conditions
//! (`NX`, `XX`, `GT`, ...) are judged against the replayed state.

use super::resp::Command;

pub(crate) use super::fp_set::fingerprint;

/// Logical databases a server has unless configured otherwise (`databases 16`), as the
/// shards Lazarus starts run: `SELECT 16` fails there, and so does loading an RDB that
/// holds a database numbered 16 or more.
pub(crate) const DATABASES: u32 = 16;

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
    /// Creates the key in argument 1, or changes it keeping its TTL.
    Create1,
    /// ZADD key [options] score member ...: creates the key in argument 1 when every
    /// score is a number (the server refuses the whole command otherwise).
    ZAdd,
    /// Changes the key in argument 1 only if it exists (LPUSHX, XACK, ...): the key set
    /// stays as it is.
    Existing1,
    /// XGROUP <sub> <key> ...: creates the key in argument 2 only with MKSTREAM.
    Create2,
    /// SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT n|KEEPTTL].
    Set,
    /// SETNX key value.
    SetNx,
    /// SETEX / PSETEX key ttl value (`ms`: PSETEX).
    SetEx {
        ms: bool,
    },
    /// GETSET key value: a new value, no TTL.
    GetSet,
    /// GETEX key [EX|PX|EXAT|PXAT n|PERSIST].
    GetEx,
    /// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key n [NX|XX|GT|LT].
    Expire {
        ms: bool,
        abs: bool,
    },
    Persist,
    /// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f].
    Restore,
    /// MSET: keys at 1, 3, 5, ...
    Mset,
    /// MSETNX: all or none of them.
    MsetNx,
    /// DEL / UNLINK: every argument is a key removed.
    RemoveAll,
    /// GETDEL: removes argument 1.
    Remove1,
    /// RENAME / RENAMENX src dst.
    Rename {
        nx: bool,
    },
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
        b"set" => Set,
        b"setnx" => SetNx,
        b"setex" => SetEx { ms: false },
        b"psetex" => SetEx { ms: true },
        b"getset" => GetSet,
        b"getex" => GetEx,
        b"expire" => Expire {
            ms: false,
            abs: false,
        },
        b"pexpire" => Expire {
            ms: true,
            abs: false,
        },
        b"expireat" => Expire {
            ms: false,
            abs: true,
        },
        b"pexpireat" => Expire {
            ms: true,
            abs: true,
        },
        b"persist" => Persist,
        b"restore" | b"restore-asking" => Restore,
        b"append" | b"incr" | b"decr" | b"incrby" | b"decrby" | b"incrbyfloat" | b"setrange"
        | b"setbit" | b"bitfield" | b"hset" | b"hmset" | b"hsetnx" | b"hincrby"
        | b"hincrbyfloat" | b"sadd" | b"zincrby" | b"lpush" | b"rpush" | b"xadd" | b"pfadd"
        | b"pfmerge" | b"geoadd" => Create1,
        b"lpushx" | b"rpushx" | b"linsert" | b"lset" | b"xsetid" | b"xclaim" | b"xautoclaim"
        | b"xack" | b"xtrim" | b"xdel" => Existing1,
        b"zadd" => ZAdd,
        b"mset" => Mset,
        b"msetnx" => MsetNx,
        b"xgroup" => Create2,
        b"del" | b"unlink" => RemoveAll,
        b"getdel" => Remove1,
        b"rename" => Rename { nx: false },
        b"renamenx" => Rename { nx: true },
        b"move" => Move,
        b"copy" => Copy,
        b"lpop" | b"rpop" | b"blpop" | b"brpop" | b"lrem" | b"ltrim" | b"srem" | b"spop"
        | b"zrem" | b"zremrangebyscore" | b"zremrangebyrank" | b"zremrangebylex" | b"zpopmin"
        | b"zpopmax" | b"bzpopmin" | b"bzpopmax" | b"hdel" | b"sinterstore" | b"sunionstore"
        | b"sdiffstore" | b"zunionstore" | b"zinterstore" | b"zdiffstore" | b"zrangestore"
        | b"geosearchstore" | b"georadius" | b"georadiusbymember" | b"sort" | b"lmpop"
        | b"zmpop" | b"blmpop" | b"bzmpop" | b"hgetdel" | b"hexpire" | b"hpexpire"
        | b"hexpireat" | b"hpexpireat" | b"hpersist" | b"hgetex" | b"hsetex" => Maybe1,
        b"bitop" | b"smove" | b"lmove" | b"blmove" | b"rpoplpush" | b"brpoplpush" => Maybe2,
        _ => Unknown,
    }
}

/// Whether argument `i` of a command of this class must be held in memory.
pub(crate) fn wants(class: Class, i: usize) -> bool {
    use Class::*;
    match class {
        Keyless | Multi | Exec | Unknown | FlushDb | FlushAll => false,
        Select | Create1 | Existing1 | Remove1 | Maybe1 | SetNx | GetSet | Persist => i == 1,
        // Not the value.
        Set => i != 2,
        Restore => i != 3,
        SetEx { .. } => i <= 2,
        GetEx | Expire { .. } | Copy | RemoveAll | ZAdd => true,
        SwapDb | Rename { .. } | Move | Maybe2 => i <= 2,
        Mset | MsetNx => i % 2 == 1,
        Create2 => i >= 2,
    }
}

fn parse_db(arg: Option<&[u8]>) -> Option<u32> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

/// A decimal number as the server reads one (no sign but `-`, no spaces), digit by digit:
/// through `str::parse` it was a twentieth of the check of an AOF of small commands.
fn parse_num(arg: Option<&[u8]>) -> Option<i64> {
    let a = arg?;
    let (negative, digits) = match a.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, a),
    };
    // 19 digits always fit in a u64; more never fit in an i64 but for leading zeros.
    if digits.is_empty() || digits.len() > 19 {
        return std::str::from_utf8(a)
            .ok()?
            .parse()
            .ok()
            .filter(|_| a[0] != b'+');
    }
    let mut n = 0u64;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    if negative {
        0i64.checked_sub_unsigned(n)
    } else {
        i64::try_from(n).ok()
    }
}

/// A key's expiry, as the count needs it: none, or passed or not when the check runs.
/// Relative expiries count from the load, which is later than the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ttl {
    None,
    Future,
    Past,
}

impl Ttl {
    /// The state of a present key with this TTL.
    pub const fn state(self) -> u8 {
        match self {
            Ttl::None => LIVE,
            Ttl::Future => FUTURE,
            Ttl::Past => PAST,
        }
    }

    /// A TTL at unix milliseconds `ms`.
    pub fn at(ms: i64, now_ms: i64) -> Ttl {
        if ms < now_ms {
            Ttl::Past
        } else {
            Ttl::Future
        }
    }

    /// A TTL `n` seconds or milliseconds after the load; `abs`: at `n` (unix time).
    fn of(n: i64, ms: bool, abs: bool, now_ms: i64) -> Option<Ttl> {
        let n = if ms { n } else { n.checked_mul(1000)? };
        Some(if abs {
            Ttl::at(n, now_ms)
        } else if n > 0 {
            Ttl::Future
        } else {
            Ttl::Past
        })
    }
}

/// A key's state in a database, as the count follows it (two bits).
pub(crate) const ABSENT: u8 = 0;
/// Present, without a TTL.
pub(crate) const LIVE: u8 = 1;
/// Present, with a TTL still ahead when the check runs.
pub(crate) const FUTURE: u8 = 2;
/// Present, with a TTL passed when the check runs.
pub(crate) const PAST: u8 = 3;

/// What a command does to one key, as a table: the key's next state for each state it
/// may be in. Applied by a lookup, not by matching the command's kind and conditions: the
/// kinds come in no order a CPU can predict, and the matches missed (issue 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// The next state of state `s` at bits `2s..2s + 2`.
    row: u8,
    /// The key's value is replaced (or removed) whenever the key exists.
    pub replaces: bool,
}

impl Change {
    const fn of(next: [u8; 4], replaces: bool) -> Change {
        Change {
            row: next[0] | next[1] << 2 | next[2] << 4 | next[3] << 6,
            replaces,
        }
    }

    /// A new value when `when` holds; the key's TTL becomes `ttl` (`None`: KEEPTTL, kept).
    pub const fn write(when: When, ttl: Option<Ttl>) -> Change {
        let mut next = [ABSENT, LIVE, FUTURE, PAST];
        let mut old = 0;
        while old < 4 {
            let applies = match when {
                When::Always => true,
                When::IfAbsent => old == ABSENT,
                When::IfPresent => old != ABSENT,
            };
            if applies {
                next[old as usize] = match ttl {
                    Some(t) => t.state(),
                    None if old == ABSENT => LIVE,
                    None => old,
                };
            }
            old += 1;
        }
        Change::of(next, !matches!(when, When::IfAbsent))
    }

    /// A new value without a TTL, whatever was there (SET, GETSET, MSET).
    pub const SET: Change = Change::write(When::Always, Some(Ttl::None));

    /// Creates the key, or changes its value keeping its TTL (HSET, RPUSH, INCR, ...), or
    /// leaves it (SETNX): its state is the same either way.
    pub const TOUCH: Change = Change::write(When::IfAbsent, Some(Ttl::None));

    /// Removes the key.
    pub const REMOVE: Change = Change::of([ABSENT; 4], true);

    /// Sets the key's TTL to `ttl` (`Ttl::None`: PERSIST) under `cond`, when it exists.
    pub const fn expire(cond: Cond, ttl: Ttl) -> Change {
        let mut next = [ABSENT; 4];
        let new = ttl.state();
        let mut old = LIVE;
        while old < 4 {
            // Passed (PAST) is earlier than ahead (FUTURE); no TTL is never earlier.
            next[old as usize] = match cond {
                Cond::Always => new,
                Cond::Nx if old == LIVE => new,
                Cond::Xx if old != LIVE => new,
                Cond::Nx | Cond::Xx => old,
                Cond::Gt if old == LIVE => old,
                Cond::Gt if old == FUTURE || new == FUTURE => FUTURE,
                Cond::Gt => PAST,
                Cond::Lt if old == LIVE => new,
                Cond::Lt if old == PAST || new == PAST => PAST,
                Cond::Lt => FUTURE,
            };
            old += 1;
        }
        Change::of(next, false)
    }

    /// The key's state after the change, from `old`.
    #[inline(always)]
    pub fn next(self, old: u8) -> u8 {
        (self.row >> (2 * (old & 3))) & 3
    }

    /// Whether the change may make an absent key.
    #[inline(always)]
    pub fn creates(self) -> bool {
        self.row & 3 != ABSENT
    }
}

/// When a write applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum When {
    Always,
    IfAbsent,
    IfPresent,
}

/// The condition of an EXPIRE: `NX`, `XX`, `GT`, `LT` or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    Always,
    Nx,
    Xx,
    Gt,
    Lt,
}

/// An effect on the key set, in terms of key fingerprints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Select(u32),
    FlushDb,
    FlushAll,
    SwapDb(u32, u32),
    /// A change to one key: a write, a removal, an expiry.
    Key(u64, Change),
    /// RENAME / RENAMENX (`true`) from, to: the key keeps its TTL.
    Rename(u64, u64, bool),
    /// Remove from the current db, create in another (unless the key is there).
    Move(u64, u32),
    /// COPY from, to, into db, replace: the copy keeps the TTL.
    Copy(u64, u64, Option<u32>, bool),
    /// The next `n` effects (writes) apply only if none of their keys exists (MSETNX).
    AllAbsent(usize),
    /// The command's effect on the key set cannot be known from it alone.
    Inexact,
}

impl Effect {
    /// The fingerprints of the keys this effect names.
    pub fn keys(&self) -> [Option<u64>; 2] {
        match *self {
            Effect::Key(k, _) | Effect::Move(k, _) => [Some(k), None],
            Effect::Rename(a, b, _) | Effect::Copy(a, b, ..) => [Some(a), Some(b)],
            _ => [None, None],
        }
    }
}

/// A short option lowercased into `buf`; `None` when longer than it.
fn lower<'b>(opt: &[u8], buf: &'b mut [u8; 8]) -> Option<&'b [u8]> {
    let b = buf.get_mut(..opt.len())?;
    for (d, s) in b.iter_mut().zip(opt) {
        *d = s.to_ascii_lowercase();
    }
    Some(b)
}

/// SET's options: when it applies and the TTL it leaves; `None` when they are not
/// options the server takes (its syntax error is no write, but this reader may be wrong).
fn set_options(cmd: &Command<'_>, now_ms: i64) -> Option<(When, Option<Ttl>)> {
    let mut when = When::Always;
    let mut ttl = Some(Ttl::None);
    let mut i = 3;
    while i < cmd.argc {
        let mut buf = [0u8; 8];
        let opt = lower(cmd.arg(i)?, &mut buf)?;
        match opt {
            b"nx" => when = When::IfAbsent,
            b"xx" => when = When::IfPresent,
            b"get" => {}
            b"keepttl" => ttl = None,
            b"ex" | b"px" | b"exat" | b"pxat" => {
                let (ms, abs) = (opt[0] == b'p', opt.ends_with(b"at"));
                i += 1;
                let n = parse_num(cmd.arg(i))?;
                if n <= 0 {
                    return None;
                }
                ttl = Some(Ttl::of(n, ms, abs, now_ms)?);
            }
            _ => return None,
        }
        i += 1;
    }
    Some((when, ttl))
}

/// GETEX's options: the TTL it sets (`Ttl::None` for PERSIST), `Some(None)` for none.
fn getex_options(cmd: &Command<'_>, now_ms: i64) -> Option<Option<Ttl>> {
    match cmd.argc {
        2 => Some(None),
        3 if cmd.arg(2)?.eq_ignore_ascii_case(b"persist") => Some(Some(Ttl::None)),
        4 => {
            let opt = cmd.arg(2)?.to_ascii_lowercase();
            if !matches!(opt.as_slice(), b"ex" | b"px" | b"exat" | b"pxat") {
                return None;
            }
            let n = parse_num(cmd.arg(3))?;
            if n <= 0 {
                return None;
            }
            Ttl::of(n, opt[0] == b'p', opt.ends_with(b"at"), now_ms).map(Some)
        }
        _ => None,
    }
}

fn expire_cond(cmd: &Command<'_>) -> Option<Cond> {
    match cmd.argc {
        3 => Some(Cond::Always),
        4 => match cmd.arg(3)?.to_ascii_lowercase().as_slice() {
            b"nx" => Some(Cond::Nx),
            b"xx" => Some(Cond::Xx),
            b"gt" => Some(Cond::Gt),
            b"lt" => Some(Cond::Lt),
            _ => None,
        },
        _ => None,
    }
}

/// RESTORE's options: when it applies and the TTL it leaves.
fn restore_options(cmd: &Command<'_>, now_ms: i64) -> Option<(When, Ttl)> {
    let ttl = parse_num(cmd.arg(2))?;
    if ttl < 0 {
        return None;
    }
    let (mut replace, mut abs) = (false, false);
    let mut i = 4;
    while i < cmd.argc {
        match cmd.arg(i)?.to_ascii_lowercase().as_slice() {
            b"replace" => replace = true,
            b"absttl" => abs = true,
            b"idletime" | b"freq" => {
                i += 1;
                parse_num(cmd.arg(i))?;
            }
            _ => return None,
        }
        i += 1;
    }
    let when = if replace {
        When::Always
    } else {
        When::IfAbsent
    };
    let ttl = if ttl == 0 {
        Ttl::None
    } else {
        Ttl::of(ttl, true, abs, now_ms)?
    };
    Some((when, ttl))
}

/// Whether a command with field-value pairs has them whole (HSET, HMSET: the server
/// refuses an odd count at run time).
fn pairs_ok(cmd: &Command<'_>) -> bool {
    match cmd.arg(0).map(|n| n.len()) {
        Some(4 | 5)
            if cmd.arg(0).is_some_and(|n| {
                n.eq_ignore_ascii_case(b"hset") || n.eq_ignore_ascii_case(b"hmset")
            }) =>
        {
            cmd.argc.is_multiple_of(2)
        }
        _ => true,
    }
}

/// Whether a ZADD's scores are all numbers as the server reads them (no NaN), after its
/// options; `false` also when a score was too long to hold.
pub(crate) fn zadd_ok(cmd: &Command<'_>) -> bool {
    let mut i = 2;
    while i < cmd.argc {
        match cmd.arg(i) {
            Some(a)
                if [&b"nx"[..], b"xx", b"gt", b"lt", b"ch", b"incr"]
                    .iter()
                    .any(|o| a.eq_ignore_ascii_case(o)) =>
            {
                i += 1
            }
            _ => break,
        }
    }
    if i >= cmd.argc || !(cmd.argc - i).is_multiple_of(2) {
        return false;
    }
    (i..cmd.argc).step_by(2).all(|j| {
        if cmd.arg(j).is_some_and(plain_decimal) {
            return true;
        }
        cmd.arg(j)
            .and_then(|a| std::str::from_utf8(a).ok())
            .filter(|t| !t.starts_with(|c: char| c.is_ascii_whitespace()))
            .and_then(|t| t.parse::<f64>().ok())
            .is_some_and(|v| !v.is_nan())
    })
}

/// Digits with at most one `.` and an optional leading `-` (`12`, `-0.5`, `3.`): a number,
/// never NaN, however it parses; the scores of nearly every ZADD, which the float parser
/// took a twentieth of an AOF's check to read.
#[inline]
fn plain_decimal(a: &[u8]) -> bool {
    let digits = a.strip_prefix(b"-").unwrap_or(a);
    let mut dot = false;
    let mut any = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => any = true,
            b'.' if !dot => dot = true,
            _ => return false,
        }
    }
    any
}

/// Whether an XGROUP creates its stream: `XGROUP CREATE key group id MKSTREAM ...`.
pub(crate) fn xgroup_creates(cmd: &Command<'_>) -> bool {
    (3..cmd.argc).any(|i| {
        cmd.arg(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(b"mkstream"))
    })
}

/// Turns a command into effects, appended to `out`. `now_ms`: when the check runs,
/// against which absolute expiries are judged.
pub(crate) fn effects(class: Class, cmd: &Command<'_>, now_ms: i64, out: &mut Vec<Effect>) {
    use Class::*;
    let fp = |i: usize| cmd.arg(i).map(fingerprint);
    let push = |e: Option<Effect>, out: &mut Vec<Effect>| out.push(e.unwrap_or(Effect::Inexact));
    let touch = |k| Effect::Key(k, Change::TOUCH);
    let remove = |k| Effect::Key(k, Change::REMOVE);
    match class {
        Keyless | Multi | Exec | Existing1 => {}
        Unknown => out.push(Effect::Inexact),
        Select => push(parse_db(cmd.arg(1)).map(Effect::Select), out),
        FlushDb => out.push(Effect::FlushDb),
        FlushAll => out.push(Effect::FlushAll),
        SwapDb => match (parse_db(cmd.arg(1)), parse_db(cmd.arg(2))) {
            (Some(a), Some(b)) => out.push(Effect::SwapDb(a, b)),
            _ => out.push(Effect::Inexact),
        },
        Create1 if pairs_ok(cmd) => push(fp(1).map(touch), out),
        ZAdd if zadd_ok(cmd) => push(fp(1).map(touch), out),
        // A command the server refuses changes nothing; this reader may judge it less
        // well than the server, so the count is only an estimate.
        Create1 | ZAdd => out.push(Effect::Inexact),
        Create2 if xgroup_creates(cmd) => push(fp(2).map(touch), out),
        // Any other XGROUP needs the stream to exist, and leaves it.
        Create2 => {}
        Set => push(
            fp(1)
                .zip(set_options(cmd, now_ms))
                .map(|(k, (when, ttl))| Effect::Key(k, Change::write(when, ttl))),
            out,
        ),
        SetNx => push(fp(1).map(touch), out),
        GetSet => push(fp(1).map(|k| Effect::Key(k, Change::SET)), out),
        SetEx { ms } => {
            let ttl = parse_num(cmd.arg(2))
                .filter(|&n| n > 0)
                .and_then(|n| Ttl::of(n, ms, false, now_ms));
            push(
                fp(1)
                    .zip(ttl)
                    .map(|(k, t)| Effect::Key(k, Change::write(When::Always, Some(t)))),
                out,
            )
        }
        GetEx => match (fp(1), getex_options(cmd, now_ms)) {
            (Some(_), Some(None)) => {}
            (Some(k), Some(Some(t))) => out.push(Effect::Key(k, Change::expire(Cond::Always, t))),
            _ => out.push(Effect::Inexact),
        },
        Expire { ms, abs } => {
            let ttl = parse_num(cmd.arg(2)).and_then(|n| Ttl::of(n, ms, abs, now_ms));
            match (fp(1), ttl, expire_cond(cmd)) {
                (Some(k), Some(t), Some(c)) => out.push(Effect::Key(k, Change::expire(c, t))),
                _ => out.push(Effect::Inexact),
            }
        }
        Persist => push(
            fp(1).map(|k| Effect::Key(k, Change::expire(Cond::Always, Ttl::None))),
            out,
        ),
        Restore => push(
            fp(1)
                .zip(restore_options(cmd, now_ms))
                .map(|(k, (when, ttl))| Effect::Key(k, Change::write(when, Some(ttl)))),
            out,
        ),
        Mset | MsetNx if cmd.argc.is_multiple_of(2) => out.push(Effect::Inexact),
        Mset | MsetNx => {
            if class == MsetNx {
                out.push(Effect::AllAbsent(cmd.argc / 2));
            }
            for i in (1..cmd.argc).step_by(2) {
                push(fp(i).map(|k| Effect::Key(k, Change::SET)), out);
            }
        }
        RemoveAll => {
            for i in 1..cmd.argc {
                push(fp(i).map(remove), out);
            }
        }
        Remove1 => push(fp(1).map(remove), out),
        Rename { nx } => push(fp(1).zip(fp(2)).map(|(a, b)| Effect::Rename(a, b, nx)), out),
        Move => match (fp(1), parse_db(cmd.arg(2))) {
            (Some(k), Some(db)) => out.push(Effect::Move(k, db)),
            _ => out.push(Effect::Inexact),
        },
        Copy => {
            let (mut db, mut replace, mut ok) = (None, false, true);
            let mut i = 3;
            while i < cmd.argc {
                match cmd.arg(i).map(<[u8]>::to_ascii_lowercase).as_deref() {
                    Some(b"db") => {
                        i += 1;
                        db = parse_db(cmd.arg(i));
                        ok &= db.is_some();
                    }
                    Some(b"replace") => replace = true,
                    _ => ok = false,
                }
                i += 1;
            }
            match (fp(1), fp(2), ok) {
                (Some(a), Some(b), true) => out.push(Effect::Copy(a, b, db, replace)),
                _ => out.push(Effect::Inexact),
            }
        }
        Maybe1 => {
            push(fp(1).map(touch), out);
            out.push(Effect::Inexact);
        }
        Maybe2 => {
            push(fp(2).map(touch), out);
            out.push(Effect::Inexact);
        }
    }
}

/// The arguments holding keys a command of this class writes (for slot checks).
pub(crate) fn written_keys(class: Class, argc: usize) -> impl Iterator<Item = usize> {
    use Class::*;
    let (from, step) = match class {
        Create1
        | ZAdd
        | Existing1
        | Maybe1
        | Set
        | SetNx
        | SetEx { .. }
        | GetSet
        | GetEx
        | Expire { .. }
        | Persist
        | Restore => (1, argc),
        Create2 | Rename { .. } | Copy | Maybe2 => (2, argc),
        Mset | MsetNx => (1, 2),
        _ => (argc, 1),
    };
    (from..argc).step_by(step.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_commands_an_aof_holds() {
        assert_eq!(classify(b"set"), Class::Set);
        assert_eq!(classify(b"del"), Class::RemoveAll);
        assert_eq!(classify(b"lpop"), Class::Maybe1);
        assert_eq!(classify(b"frobnicate"), Class::Unknown);
        assert_eq!(written_keys(Class::Mset, 5).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(written_keys(Class::Create1, 3).collect::<Vec<_>>(), [1]);
        assert_eq!(written_keys(Class::RemoveAll, 3).count(), 0);
    }

    /// Each change's next state from absent, live, TTL ahead, TTL passed, as the server
    /// leaves the key (a TTL passed is earlier than one ahead; no TTL is never earlier).
    #[test]
    fn a_change_leaves_each_state_as_the_server_does() {
        use Ttl::{Future, Past};
        let (a, l, f, p) = (ABSENT, LIVE, FUTURE, PAST);
        let cases: [(&str, Change, [u8; 4], bool); 14] = [
            ("HSET", Change::TOUCH, [l, l, f, p], false),
            ("DEL", Change::REMOVE, [a, a, a, a], true),
            (
                "SET",
                Change::write(When::Always, Some(Ttl::None)),
                [l, l, l, l],
                true,
            ),
            (
                "SET PX",
                Change::write(When::Always, Some(Future)),
                [f, f, f, f],
                true,
            ),
            (
                "SET KEEPTTL",
                Change::write(When::Always, None),
                [l, l, f, p],
                true,
            ),
            (
                "SET NX",
                Change::write(When::IfAbsent, Some(Past)),
                [p, l, f, p],
                false,
            ),
            (
                "SET XX",
                Change::write(When::IfPresent, Some(Ttl::None)),
                [a, l, l, l],
                true,
            ),
            (
                "PERSIST",
                Change::expire(Cond::Always, Ttl::None),
                [a, l, l, l],
                false,
            ),
            (
                "EXPIRE NX",
                Change::expire(Cond::Nx, Future),
                [a, f, f, p],
                false,
            ),
            (
                "EXPIRE XX",
                Change::expire(Cond::Xx, Past),
                [a, l, p, p],
                false,
            ),
            (
                "EXPIRE GT ahead",
                Change::expire(Cond::Gt, Future),
                [a, l, f, f],
                false,
            ),
            (
                "EXPIRE GT passed",
                Change::expire(Cond::Gt, Past),
                [a, l, f, p],
                false,
            ),
            (
                "EXPIRE LT ahead",
                Change::expire(Cond::Lt, Future),
                [a, f, f, p],
                false,
            ),
            (
                "EXPIRE LT passed",
                Change::expire(Cond::Lt, Past),
                [a, p, p, p],
                false,
            ),
        ];
        for (what, change, next, replaces) in cases {
            let got: Vec<u8> = (0..4).map(|old| change.next(old)).collect();
            assert_eq!(got, next, "{what}");
            assert_eq!(change.replaces, replaces, "{what}");
            assert_eq!(change.creates(), next[0] != ABSENT, "{what}");
        }
    }

    #[test]
    fn a_plain_decimal_is_a_score_the_parser_takes() {
        for t in [
            "12",
            "-0.5",
            "3.",
            ".5",
            "-.5",
            "007",
            "123456789012345678901234567890",
        ] {
            assert!(plain_decimal(t.as_bytes()), "{t}");
            assert!(t.parse::<f64>().is_ok_and(|v| !v.is_nan()), "{t}");
        }
        for t in [
            "", "-", ".", "-.", "1.2.3", "--1", "+1", "1e5", "nan", " 1", "1 ",
        ] {
            assert!(!plain_decimal(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn a_number_reads_as_the_standard_parser_reads_it_but_for_a_plus() {
        for t in [
            "0",
            "-0",
            "7",
            "-12",
            "007",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "00000000000000000000042",
            "-00000000000000000000042",
            "",
            "-",
            "1a",
            " 1",
            "1 ",
            "--1",
            "1.5",
        ] {
            assert_eq!(parse_num(Some(t.as_bytes())), t.parse::<i64>().ok(), "{t}");
        }
        for t in ["+1", "+00000000000000000000001"] {
            assert_eq!(parse_num(Some(t.as_bytes())), None, "{t}");
        }
    }
}
