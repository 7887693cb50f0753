//! Every command Redis 7.0.15 or Valkey 8.1.8 knows, with its arity, as `COMMAND` lists them
//! (generated from both servers' replies; a command of either is accepted, with the arity of
//! either). An AOF naming any other command, or a known one with the wrong number of
//! arguments, stops the server's load ("Unknown command", or a crash), so the reader refuses it.

use super::resp::Command;

/// Arities of a command (positive: exactly; negative: at least), lowercase name; `None`
/// when no server knows it. Containers (CONFIG, XGROUP, ...) also need a known subcommand.
pub(crate) fn arity(name: &[u8]) -> Option<(&'static [i32], bool)> {
    Some(match name {
        b"acl" => (&[-2], true),
        b"append" => (&[3], false),
        b"asking" => (&[1], false),
        b"auth" => (&[-2], false),
        b"bgrewriteaof" => (&[1], false),
        b"bgsave" => (&[-1], false),
        b"bitcount" => (&[-2], false),
        b"bitfield" => (&[-2], false),
        b"bitfield_ro" => (&[-2], false),
        b"bitop" => (&[-4], false),
        b"bitpos" => (&[-3], false),
        b"blmove" => (&[6], false),
        b"blmpop" => (&[-5], false),
        b"blpop" => (&[-3], false),
        b"brpop" => (&[-3], false),
        b"brpoplpush" => (&[4], false),
        b"bzmpop" => (&[-5], false),
        b"bzpopmax" => (&[-3], false),
        b"bzpopmin" => (&[-3], false),
        b"client" => (&[-2], true),
        b"cluster" => (&[-2], true),
        b"command" => (&[-1], true),
        b"commandlog" => (&[-2], true),
        b"config" => (&[-2], true),
        b"copy" => (&[-3], false),
        b"dbsize" => (&[1], false),
        b"debug" => (&[-2], false),
        b"decr" => (&[2], false),
        b"decrby" => (&[3], false),
        b"del" => (&[-2], false),
        b"discard" => (&[1], false),
        b"dump" => (&[2], false),
        b"echo" => (&[2], false),
        b"eval" => (&[-3], false),
        b"eval_ro" => (&[-3], false),
        b"evalsha" => (&[-3], false),
        b"evalsha_ro" => (&[-3], false),
        b"exec" => (&[1], false),
        b"exists" => (&[-2], false),
        b"expire" => (&[-3], false),
        b"expireat" => (&[-3], false),
        b"expiretime" => (&[2], false),
        b"failover" => (&[-1], false),
        b"fcall" => (&[-3], false),
        b"fcall_ro" => (&[-3], false),
        b"flushall" => (&[-1], false),
        b"flushdb" => (&[-1], false),
        b"function" => (&[-2], true),
        b"geoadd" => (&[-5], false),
        b"geodist" => (&[-4], false),
        b"geohash" => (&[-2], false),
        b"geopos" => (&[-2], false),
        b"georadius" => (&[-6], false),
        b"georadius_ro" => (&[-6], false),
        b"georadiusbymember" => (&[-5], false),
        b"georadiusbymember_ro" => (&[-5], false),
        b"geosearch" => (&[-7], false),
        b"geosearchstore" => (&[-8], false),
        b"get" => (&[2], false),
        b"getbit" => (&[3], false),
        b"getdel" => (&[2], false),
        b"getex" => (&[-2], false),
        b"getrange" => (&[4], false),
        b"getset" => (&[3], false),
        b"hdel" => (&[-3], false),
        b"hello" => (&[-1], false),
        b"hexists" => (&[3], false),
        b"hget" => (&[3], false),
        b"hgetall" => (&[2], false),
        b"hincrby" => (&[4], false),
        b"hincrbyfloat" => (&[4], false),
        b"hkeys" => (&[2], false),
        b"hlen" => (&[2], false),
        b"hmget" => (&[-3], false),
        b"hmset" => (&[-4], false),
        b"hrandfield" => (&[-2], false),
        b"hscan" => (&[-3], false),
        b"hset" => (&[-4], false),
        b"hsetnx" => (&[4], false),
        b"hstrlen" => (&[3], false),
        b"hvals" => (&[2], false),
        b"incr" => (&[2], false),
        b"incrby" => (&[3], false),
        b"incrbyfloat" => (&[3], false),
        b"info" => (&[-1], false),
        b"keys" => (&[2], false),
        b"lastsave" => (&[1], false),
        b"latency" => (&[-2], true),
        b"lcs" => (&[-3], false),
        b"lindex" => (&[3], false),
        b"linsert" => (&[5], false),
        b"llen" => (&[2], false),
        b"lmove" => (&[5], false),
        b"lmpop" => (&[-4], false),
        b"lolwut" => (&[-1], false),
        b"lpop" => (&[-2], false),
        b"lpos" => (&[-3], false),
        b"lpush" => (&[-3], false),
        b"lpushx" => (&[-3], false),
        b"lrange" => (&[4], false),
        b"lrem" => (&[4], false),
        b"lset" => (&[4], false),
        b"ltrim" => (&[4], false),
        b"memory" => (&[-2], true),
        b"mget" => (&[-2], false),
        b"migrate" => (&[-6], false),
        b"module" => (&[-2], true),
        b"monitor" => (&[1], false),
        b"move" => (&[3], false),
        b"mset" => (&[-3], false),
        b"msetnx" => (&[-3], false),
        b"multi" => (&[1], false),
        b"object" => (&[-2], true),
        b"persist" => (&[2], false),
        b"pexpire" => (&[-3], false),
        b"pexpireat" => (&[-3], false),
        b"pexpiretime" => (&[2], false),
        b"pfadd" => (&[-2], false),
        b"pfcount" => (&[-2], false),
        b"pfdebug" => (&[3], false),
        b"pfmerge" => (&[-2], false),
        b"pfselftest" => (&[1], false),
        b"ping" => (&[-1], false),
        b"psetex" => (&[4], false),
        b"psubscribe" => (&[-2], false),
        b"psync" => (&[-3], false),
        b"pttl" => (&[2], false),
        b"publish" => (&[3], false),
        b"pubsub" => (&[-2], true),
        b"punsubscribe" => (&[-1], false),
        b"quit" => (&[-1], false),
        b"randomkey" => (&[1], false),
        b"readonly" => (&[1], false),
        b"readwrite" => (&[1], false),
        b"rename" => (&[3], false),
        b"renamenx" => (&[3], false),
        b"replconf" => (&[-1], false),
        b"replicaof" => (&[3], false),
        b"reset" => (&[1], false),
        b"restore" => (&[-4], false),
        b"restore-asking" => (&[-4], false),
        b"role" => (&[1], false),
        b"rpop" => (&[-2], false),
        b"rpoplpush" => (&[3], false),
        b"rpush" => (&[-3], false),
        b"rpushx" => (&[-3], false),
        b"sadd" => (&[-3], false),
        b"save" => (&[1], false),
        b"scan" => (&[-2], false),
        b"scard" => (&[2], false),
        b"script" => (&[-2], true),
        b"sdiff" => (&[-2], false),
        b"sdiffstore" => (&[-3], false),
        b"select" => (&[2], false),
        b"set" => (&[-3], false),
        b"setbit" => (&[4], false),
        b"setex" => (&[4], false),
        b"setnx" => (&[3], false),
        b"setrange" => (&[4], false),
        b"shutdown" => (&[-1], false),
        b"sinter" => (&[-2], false),
        b"sintercard" => (&[-3], false),
        b"sinterstore" => (&[-3], false),
        b"sismember" => (&[3], false),
        b"slaveof" => (&[3], false),
        b"slowlog" => (&[-2], true),
        b"smembers" => (&[2], false),
        b"smismember" => (&[-3], false),
        b"smove" => (&[4], false),
        b"sort" => (&[-2], false),
        b"sort_ro" => (&[-2], false),
        b"spop" => (&[-2], false),
        b"spublish" => (&[3], false),
        b"srandmember" => (&[-2], false),
        b"srem" => (&[-3], false),
        b"sscan" => (&[-3], false),
        b"ssubscribe" => (&[-2], false),
        b"strlen" => (&[2], false),
        b"subscribe" => (&[-2], false),
        b"substr" => (&[4], false),
        b"sunion" => (&[-2], false),
        b"sunionstore" => (&[-3], false),
        b"sunsubscribe" => (&[-1], false),
        b"swapdb" => (&[3], false),
        b"sync" => (&[1], false),
        b"time" => (&[1], false),
        b"touch" => (&[-2], false),
        b"ttl" => (&[2], false),
        b"type" => (&[2], false),
        b"unlink" => (&[-2], false),
        b"unsubscribe" => (&[-1], false),
        b"unwatch" => (&[1], false),
        b"wait" => (&[3], false),
        b"waitaof" => (&[4], false),
        b"watch" => (&[-2], false),
        b"xack" => (&[-4], false),
        b"xadd" => (&[-5], false),
        b"xautoclaim" => (&[-6], false),
        b"xclaim" => (&[-6], false),
        b"xdel" => (&[-3], false),
        b"xgroup" => (&[-2], true),
        b"xinfo" => (&[-2], true),
        b"xlen" => (&[2], false),
        b"xpending" => (&[-3], false),
        b"xrange" => (&[-4], false),
        b"xread" => (&[-4], false),
        b"xreadgroup" => (&[-7], false),
        b"xrevrange" => (&[-4], false),
        b"xsetid" => (&[-3], false),
        b"xtrim" => (&[-4], false),
        b"zadd" => (&[-4], false),
        b"zcard" => (&[2], false),
        b"zcount" => (&[4], false),
        b"zdiff" => (&[-3], false),
        b"zdiffstore" => (&[-4], false),
        b"zincrby" => (&[4], false),
        b"zinter" => (&[-3], false),
        b"zintercard" => (&[-3], false),
        b"zinterstore" => (&[-4], false),
        b"zlexcount" => (&[4], false),
        b"zmpop" => (&[-4], false),
        b"zmscore" => (&[-3], false),
        b"zpopmax" => (&[-2], false),
        b"zpopmin" => (&[-2], false),
        b"zrandmember" => (&[-2], false),
        b"zrange" => (&[-4], false),
        b"zrangebylex" => (&[-4], false),
        b"zrangebyscore" => (&[-4], false),
        b"zrangestore" => (&[-5], false),
        b"zrank" => (&[-3, 3], false),
        b"zrem" => (&[-3], false),
        b"zremrangebylex" => (&[4], false),
        b"zremrangebyrank" => (&[4], false),
        b"zremrangebyscore" => (&[4], false),
        b"zrevrange" => (&[-4], false),
        b"zrevrangebylex" => (&[-4], false),
        b"zrevrangebyscore" => (&[-4], false),
        b"zrevrank" => (&[-3, 3], false),
        b"zscan" => (&[-3], false),
        b"zscore" => (&[3], false),
        b"zunion" => (&[-3], false),
        b"zunionstore" => (&[-4], false),
        _ => return None,
    })
}

/// Arities of a container's subcommand (both lowercase).
pub(crate) fn sub_arity(name: &[u8], sub: &[u8]) -> Option<&'static [i32]> {
    Some(match (name, sub) {
        (b"acl", b"cat") => &[-2],
        (b"acl", b"deluser") => &[-3],
        (b"acl", b"dryrun") => &[-4],
        (b"acl", b"genpass") => &[-2],
        (b"acl", b"getuser") => &[3],
        (b"acl", b"help") => &[2],
        (b"acl", b"list") => &[2],
        (b"acl", b"load") => &[2],
        (b"acl", b"log") => &[-2],
        (b"acl", b"save") => &[2],
        (b"acl", b"setuser") => &[-3],
        (b"acl", b"users") => &[2],
        (b"acl", b"whoami") => &[2],
        (b"client", b"caching") => &[3],
        (b"client", b"capa") => &[-3],
        (b"client", b"getname") => &[2],
        (b"client", b"getredir") => &[2],
        (b"client", b"help") => &[2],
        (b"client", b"id") => &[2],
        (b"client", b"import-source") => &[3],
        (b"client", b"info") => &[2],
        (b"client", b"kill") => &[-3],
        (b"client", b"list") => &[-2],
        (b"client", b"no-evict") => &[3],
        (b"client", b"no-touch") => &[3],
        (b"client", b"pause") => &[-3],
        (b"client", b"reply") => &[3],
        (b"client", b"setinfo") => &[4],
        (b"client", b"setname") => &[3],
        (b"client", b"tracking") => &[-3],
        (b"client", b"trackinginfo") => &[2],
        (b"client", b"unblock") => &[-3],
        (b"client", b"unpause") => &[2],
        (b"cluster", b"addslots") => &[-3],
        (b"cluster", b"addslotsrange") => &[-4],
        (b"cluster", b"bumpepoch") => &[2],
        (b"cluster", b"count-failure-reports") => &[3],
        (b"cluster", b"countkeysinslot") => &[3],
        (b"cluster", b"delslots") => &[-3],
        (b"cluster", b"delslotsrange") => &[-4],
        (b"cluster", b"failover") => &[-2],
        (b"cluster", b"flushslots") => &[2],
        (b"cluster", b"forget") => &[3],
        (b"cluster", b"getkeysinslot") => &[4],
        (b"cluster", b"help") => &[2],
        (b"cluster", b"info") => &[2],
        (b"cluster", b"keyslot") => &[3],
        (b"cluster", b"links") => &[2],
        (b"cluster", b"meet") => &[-4],
        (b"cluster", b"myid") => &[2],
        (b"cluster", b"myshardid") => &[2],
        (b"cluster", b"nodes") => &[2],
        (b"cluster", b"replicas") => &[3],
        (b"cluster", b"replicate") => &[3],
        (b"cluster", b"reset") => &[-2],
        (b"cluster", b"saveconfig") => &[2],
        (b"cluster", b"set-config-epoch") => &[3],
        (b"cluster", b"setslot") => &[-4],
        (b"cluster", b"shards") => &[2],
        (b"cluster", b"slaves") => &[3],
        (b"cluster", b"slot-stats") => &[-4],
        (b"cluster", b"slots") => &[2],
        (b"command", b"count") => &[2],
        (b"command", b"docs") => &[-2],
        (b"command", b"getkeys") => &[-4, -3],
        (b"command", b"getkeysandflags") => &[-4, -3],
        (b"command", b"help") => &[2],
        (b"command", b"info") => &[-2],
        (b"command", b"list") => &[-2],
        (b"commandlog", b"get") => &[4],
        (b"commandlog", b"help") => &[2],
        (b"commandlog", b"len") => &[3],
        (b"commandlog", b"reset") => &[3],
        (b"config", b"get") => &[-3],
        (b"config", b"help") => &[2],
        (b"config", b"resetstat") => &[2],
        (b"config", b"rewrite") => &[2],
        (b"config", b"set") => &[-4],
        (b"function", b"delete") => &[3],
        (b"function", b"dump") => &[2],
        (b"function", b"flush") => &[-2],
        (b"function", b"help") => &[2],
        (b"function", b"kill") => &[2],
        (b"function", b"list") => &[-2],
        (b"function", b"load") => &[-3],
        (b"function", b"restore") => &[-3],
        (b"function", b"stats") => &[2],
        (b"latency", b"doctor") => &[2],
        (b"latency", b"graph") => &[3],
        (b"latency", b"help") => &[2],
        (b"latency", b"histogram") => &[-2],
        (b"latency", b"history") => &[3],
        (b"latency", b"latest") => &[2],
        (b"latency", b"reset") => &[-2],
        (b"memory", b"doctor") => &[2],
        (b"memory", b"help") => &[2],
        (b"memory", b"malloc-stats") => &[2],
        (b"memory", b"purge") => &[2],
        (b"memory", b"stats") => &[2],
        (b"memory", b"usage") => &[-3],
        (b"module", b"help") => &[2],
        (b"module", b"list") => &[2],
        (b"module", b"load") => &[-3],
        (b"module", b"loadex") => &[-3],
        (b"module", b"unload") => &[3],
        (b"object", b"encoding") => &[3],
        (b"object", b"freq") => &[3],
        (b"object", b"help") => &[2],
        (b"object", b"idletime") => &[3],
        (b"object", b"refcount") => &[3],
        (b"pubsub", b"channels") => &[-2],
        (b"pubsub", b"help") => &[2],
        (b"pubsub", b"numpat") => &[2],
        (b"pubsub", b"numsub") => &[-2],
        (b"pubsub", b"shardchannels") => &[-2],
        (b"pubsub", b"shardnumsub") => &[-2],
        (b"script", b"debug") => &[3],
        (b"script", b"exists") => &[-3],
        (b"script", b"flush") => &[-2],
        (b"script", b"help") => &[2],
        (b"script", b"kill") => &[2],
        (b"script", b"load") => &[3],
        (b"script", b"show") => &[3],
        (b"slowlog", b"get") => &[-2],
        (b"slowlog", b"help") => &[2],
        (b"slowlog", b"len") => &[2],
        (b"slowlog", b"reset") => &[2],
        (b"xgroup", b"create") => &[-5],
        (b"xgroup", b"createconsumer") => &[5],
        (b"xgroup", b"delconsumer") => &[5],
        (b"xgroup", b"destroy") => &[4],
        (b"xgroup", b"help") => &[2],
        (b"xgroup", b"setid") => &[-5],
        (b"xinfo", b"consumers") => &[4],
        (b"xinfo", b"groups") => &[3],
        (b"xinfo", b"help") => &[2],
        (b"xinfo", b"stream") => &[-3],
        _ => return None,
    })
}

/// The argument counts (the name included) a command name is run with and no further
/// look: a known name that takes no subcommand, its arities as one range; none for any
/// other name, which [`check`] judges in full. Worked out once a name (the reader keeps
/// it with the name), so a command's check is two compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArgcRange {
    lo: u32,
    hi: u32,
}

impl ArgcRange {
    /// Fits no count.
    pub const NONE: ArgcRange = ArgcRange { lo: 1, hi: 0 };

    /// For a name (in any case); [`NONE`](Self::NONE) when no server knows it, when it
    /// takes a subcommand, or when its arities do not make one range.
    pub fn of(name: &[u8]) -> ArgcRange {
        let mut buf = [0u8; 32];
        let Some((arities, false)) = lower(name, &mut buf).and_then(arity) else {
            return ArgcRange::NONE;
        };
        // Each arity as a range (`n`: n to n; `-n`: n and up), joined when they touch.
        let mut ranges: Vec<(u32, u32)> = arities
            .iter()
            .map(|&a| match u32::try_from(a) {
                Ok(n) => (n, n),
                Err(_) => (a.unsigned_abs(), u32::MAX),
            })
            .collect();
        ranges.sort_unstable();
        let Some((&first, rest)) = ranges.split_first() else {
            return ArgcRange::NONE;
        };
        let mut joined = first;
        for &(lo, hi) in rest {
            if lo > joined.1.saturating_add(1) {
                return ArgcRange::NONE;
            }
            joined.1 = joined.1.max(hi);
        }
        ArgcRange {
            lo: joined.0,
            hi: joined.1,
        }
    }

    #[inline(always)]
    fn holds(self, argc: usize) -> bool {
        let argc = u32::try_from(argc).unwrap_or(u32::MAX);
        self.lo <= argc && argc <= self.hi
    }
}

/// Whether the server's AOF loader runs this command: a name it knows, a subcommand it
/// knows for containers, and an argument count the arity allows. `Err`: what was expected.
#[inline]
pub(crate) fn check(cmd: &Command<'_>) -> Result<(), String> {
    // Nearly every command: a known name that takes no subcommand, of a fitting count
    // (the whole check out of line cost some 5% of the parse of small commands). A name
    // the reader did not hold (over 64 KiB) has no range.
    if cmd.fits.holds(cmd.argc) {
        return Ok(());
    }
    check_in_full(cmd)
}

#[inline(never)]
fn check_in_full(cmd: &Command<'_>) -> Result<(), String> {
    let Some(name) = cmd.arg(0) else {
        return Err("a command name a server knows, not one of over 64 KiB".into());
    };
    let mut buf = [0u8; 32];
    let name_lower = lower(name, &mut buf);
    let Some((arities, container)) = name_lower.and_then(arity) else {
        return Err(format!(
            "a command Redis or Valkey knows, not `{}` (the server stops loading at \"Unknown command\")",
            show(name)
        ));
    };
    let argc = cmd.argc;
    if container && argc >= 2 {
        let sub = cmd.arg(1).unwrap_or_default();
        let mut sub_buf = [0u8; 32];
        let name_lower = name_lower.unwrap_or_default();
        let Some(sub_arities) = lower(sub, &mut sub_buf).and_then(|s| sub_arity(name_lower, s))
        else {
            return Err(format!(
                "a subcommand of `{}` a server knows, not `{}`",
                show(name),
                show(sub)
            ));
        };
        return fits(sub_arities, argc, name);
    }
    fits(arities, argc, name)
}

/// Whether `argc` arguments (the name included) fit one of `arities` (the server's: `n`
/// exactly, `-n` at least).
fn arity_fits(arities: &[i32], argc: usize) -> bool {
    let argc = argc as i64;
    arities.iter().any(|&a| {
        let a = i64::from(a);
        if a >= 0 {
            argc == a
        } else {
            argc >= -a
        }
    })
}

fn fits(arities: &[i32], argc: usize, name: &[u8]) -> Result<(), String> {
    if arity_fits(arities, argc) {
        return Ok(());
    }
    let want: Vec<String> = arities
        .iter()
        .map(|&a| {
            if a >= 0 {
                format!("{}", a - 1)
            } else {
                format!("at least {}", -a - 1)
            }
        })
        .collect();
    Err(format!(
        "`{}` with {} argument(s), not {}",
        show(name),
        want.join(" or "),
        argc - 1
    ))
}

fn lower<'b>(name: &[u8], buf: &'b mut [u8; 32]) -> Option<&'b [u8]> {
    let b = buf.get_mut(..name.len())?;
    for (d, s) in b.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Some(b)
}

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(40)]);
    s.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_names_argument_counts_are_one_range_or_none() {
        let range = |lo, hi| ArgcRange { lo, hi };
        assert_eq!(ArgcRange::of(b"GET"), range(2, 2));
        assert_eq!(ArgcRange::of(b"set"), range(3, u32::MAX));
        // Two arities that touch (`-3` and `3`): one range.
        assert_eq!(ArgcRange::of(b"ZRANK"), range(3, u32::MAX));
        // A container's count depends on its subcommand; an unknown name has none.
        assert_eq!(ArgcRange::of(b"config"), ArgcRange::NONE);
        assert_eq!(ArgcRange::of(b"nosuchcommand"), ArgcRange::NONE);
        assert_eq!(ArgcRange::of(&[b'a'; 40]), ArgcRange::NONE);
        assert!(range(2, 2).holds(2) && !range(2, 2).holds(3) && !range(2, 2).holds(1));
        assert!(!ArgcRange::NONE.holds(0) && !ArgcRange::NONE.holds(1));
        assert!(range(3, u32::MAX).holds(usize::MAX));
    }
}
