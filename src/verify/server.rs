//! The digest of a live shard: SCAN, then DUMP and PEXPIRETIME of each key (DUMP alone in
//! a db whose INFO keyspace says `expires=0`), in pipelined
//! batches (the next batch's SCAN rides with this batch's DUMPs, and a batch is decoded
//! while the next one is on the wire); CLUSTER COUNTKEYSINSLOT on a cluster shard.

use std::collections::HashSet;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Value as Reply;
use xxhash_rust::xxh3::xxh3_64;

use super::{now_ms, VerifyError};
use crate::persist::{
    decode_dump_into, key_slot, ContentDigest, DigestBuilder, DigestOptions, Scratch,
};
use crate::server::{connect, info, ShardAddr};

/// Keys asked per SCAN (and so DUMPed per round trip).
const BATCH: usize = 4000;

/// A shard's digest, with its own per-slot key counts when it is a cluster member.
#[derive(Clone, Debug)]
pub struct ServerDigest {
    pub digest: ContentDigest,
    /// CLUSTER COUNTKEYSINSLOT for every slot (0 for slots it does not own).
    pub slot_counts: Option<Vec<u64>>,
    /// Keys SCAN listed (duplicates dropped).
    pub scanned: u64,
}

impl ServerDigest {
    /// Adds another shard of the same database.
    pub fn merge(&mut self, other: ServerDigest) {
        self.digest.merge(other.digest);
        self.scanned += other.scanned;
        self.slot_counts = match (self.slot_counts.take(), other.slot_counts) {
            (Some(mut a), Some(b)) => {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }
}

fn err(addr: &ShardAddr, reason: impl std::fmt::Display) -> VerifyError {
    VerifyError::Server {
        addr: addr.to_string(),
        reason: reason.to_string(),
    }
}

/// Digests every key of the shard at `addr` (every database number it holds).
pub async fn digest_of_server(
    addr: &ShardAddr,
    opts: &DigestOptions,
    timeout: Duration,
) -> Result<ServerDigest, VerifyError> {
    let keyspace = info(addr, "keyspace", timeout)
        .await
        .map_err(|e| err(addr, e))?;
    // Each db, and whether any of its keys has a TTL (`expires=0`: no PEXPIRETIME asked,
    // a third of the round's commands).
    let dbs: Vec<(u32, bool)> = keyspace
        .0
        .iter()
        .filter_map(|(k, v)| {
            let db = k.strip_prefix("db")?.parse().ok()?;
            let expires = !v.split(',').any(|f| f == "expires=0");
            Some((db, expires))
        })
        .collect();
    let cluster = info(addr, "cluster", timeout)
        .await
        .map_err(|e| err(addr, e))?
        .get("cluster_enabled")
        == Some("1");
    let mut con = connect(addr, timeout).await.map_err(|e| err(addr, e))?;
    // Compressing every payload is most of a server's work on big incompressible values.
    let compression = if opts.uncompressed_dumps {
        let got: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("rdbcompression")
            .query_async(&mut con)
            .await
            .map_err(|e| err(addr, e))?;
        let was = got.get(1).cloned();
        if was.as_deref() == Some("yes") {
            set_compression(&mut con, "no")
                .await
                .map_err(|e| err(addr, e))?;
        }
        was
    } else {
        None
    };
    if opts.server_snapshot {
        let digest = snapshot_digest(addr, opts, timeout).await;
        if compression.as_deref() == Some("yes") {
            set_compression(&mut con, "yes")
                .await
                .map_err(|e| err(addr, e))?;
        }
        // Its instant is the fork's (taken as the stream began).
        let digest = digest?;
        let slot_counts = if cluster {
            Some(count_slots(addr, &mut con).await?)
        } else {
            None
        };
        let settled = digest.settle(digest.taken_at_ms);
        return Ok(ServerDigest {
            scanned: settled.keys + settled.expired,
            digest,
            slot_counts,
        });
    }
    let mut b = DigestBuilder::new(now_ms(), opts);
    let mut scanned = 0;
    let mut scan = Ok(());
    for (db, expires) in dbs {
        if db != 0 || !cluster {
            if let Err(e) = redis::cmd("SELECT")
                .arg(db)
                .query_async::<()>(&mut con)
                .await
            {
                scan = Err(err(addr, e));
                break;
            }
        }
        match scan_db(addr, &mut con, db, expires, &mut b).await {
            Ok(n) => scanned += n,
            Err(e) => {
                scan = Err(e);
                break;
            }
        }
    }
    if compression.as_deref() == Some("yes") {
        set_compression(&mut con, "yes")
            .await
            .map_err(|e| err(addr, e))?;
    }
    scan?;
    let slot_counts = if cluster {
        Some(count_slots(addr, &mut con).await?)
    } else {
        None
    };
    let mut digest = b.digest;
    digest.taken_at_ms = now_ms();
    Ok(ServerDigest {
        digest,
        slot_counts,
        scanned,
    })
}

/// The digest of the server's own snapshot: `SYNC` as an RDB-only replica, the stream
/// read by the reader as it comes (on a blocking thread).
async fn snapshot_digest(
    addr: &ShardAddr,
    opts: &DigestOptions,
    timeout: Duration,
) -> Result<ContentDigest, VerifyError> {
    let (a, o) = (addr.clone(), opts.clone());
    let digest = tokio::task::spawn_blocking(move || {
        let mut conn = crate::backup::SnapshotConn::open(&a, timeout)?;
        conn.send_sync()?;
        conn.digest(now_ms(), &o)
    })
    .await
    .map_err(|e| err(addr, e))?
    .map_err(|e| err(addr, e))?;
    // The fork outlives the stream by up to a cron tick: whatever saves next (a
    // persistence switch) would find a "background save already in progress".
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let i = info(addr, "persistence", timeout)
            .await
            .map_err(|e| err(addr, e))?;
        if i.get("rdb_bgsave_in_progress") != Some("1") {
            return Ok(digest);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(err(addr, "its snapshot's fork did not end"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn set_compression(
    con: &mut MultiplexedConnection,
    value: &str,
) -> Result<(), redis::RedisError> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdbcompression")
        .arg(value)
        .query_async::<()>(con)
        .await
}

async fn count_slots(
    addr: &ShardAddr,
    con: &mut MultiplexedConnection,
) -> Result<Vec<u64>, VerifyError> {
    let mut p = redis::pipe();
    for slot in 0..crate::ccs::SLOT_COUNT {
        p.cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot);
    }
    p.query_async::<Vec<u64>>(con)
        .await
        .map_err(|e| err(addr, format!("CLUSTER COUNTKEYSINSLOT: {e}")))
}

/// One round's DUMP (and PEXPIRETIME) replies with their keys.
type Dumped = (Vec<Vec<u8>>, Vec<Reply>);

async fn scan_db(
    addr: &ShardAddr,
    con: &mut MultiplexedConnection,
    db: u32,
    expires: bool,
    b: &mut DigestBuilder,
) -> Result<u64, VerifyError> {
    let mut seen: HashSet<u64> = HashSet::new();
    let mut cursor: Option<u64> = Some(0);
    let mut to_dump: Vec<Vec<u8>> = Vec::new();
    let mut dumped: Option<Dumped> = None;
    let mut sc = Scratch::default();
    let detail_only = !b.detail_slots().is_empty();
    let mut scanned = 0u64;
    loop {
        if cursor.is_none() && to_dump.is_empty() {
            if let Some(d) = dumped.take() {
                fold(addr, db, expires, d, b, &mut sc)?;
            }
            return Ok(scanned);
        }
        let mut p = redis::pipe();
        if let Some(c) = cursor {
            p.cmd("SCAN").arg(c).arg("COUNT").arg(BATCH);
        }
        for k in &to_dump {
            p.cmd("DUMP").arg(k);
            if expires {
                p.cmd("PEXPIRETIME").arg(k);
            }
        }
        let previous = dumped.take();
        let (reply, folded) = tokio::join!(p.query_async::<Vec<Reply>>(con), async {
            match previous {
                Some(d) => fold(addr, db, expires, d, b, &mut sc),
                None => Ok(()),
            }
        });
        folded?;
        let mut replies = reply.map_err(|e| err(addr, e))?.into_iter();
        let keys = std::mem::take(&mut to_dump);
        if cursor.is_some() {
            let (next, found) = parse_scan(replies.next())
                .ok_or_else(|| err(addr, "a SCAN reply of a cursor and keys"))?;
            cursor = (next != 0).then_some(next);
            for k in found {
                if seen.insert(xxh3_64(&k)) {
                    scanned += 1;
                    if !detail_only || b.detail_slots().contains(&key_slot(&k)) {
                        to_dump.push(k);
                    }
                }
            }
        }
        if !keys.is_empty() {
            dumped = Some((keys, replies.collect()));
        }
    }
}

fn parse_scan(r: Option<Reply>) -> Option<(u64, Vec<Vec<u8>>)> {
    let Some(Reply::Array(mut parts)) = r else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let keys = parts.pop()?;
    let cursor = match parts.pop()? {
        Reply::BulkString(c) => std::str::from_utf8(&c).ok()?.parse().ok()?,
        _ => return None,
    };
    let Reply::Array(keys) = keys else {
        return None;
    };
    let keys = keys
        .into_iter()
        .filter_map(|k| match k {
            Reply::BulkString(k) => Some(k),
            _ => None,
        })
        .collect();
    Some((cursor, keys))
}

/// Decodes one round's payloads into the digest.
fn fold(
    addr: &ShardAddr,
    db: u32,
    expires: bool,
    (keys, replies): Dumped,
    b: &mut DigestBuilder,
    sc: &mut Scratch,
) -> Result<(), VerifyError> {
    let mut it = replies.into_iter();
    for key in keys {
        let dump = it.next();
        let ttl = if expires {
            it.next()
        } else {
            Some(Reply::Int(-1))
        };
        let expire_ms = match ttl {
            Some(Reply::Int(-1)) => None,
            Some(Reply::Int(t)) if t >= 0 => Some(t),
            // -2: gone (expired) since SCAN listed it.
            _ => {
                b.digest.vanished += 1;
                continue;
            }
        };
        let Some(Reply::BulkString(payload)) = dump else {
            b.digest.vanished += 1;
            continue;
        };
        let present =
            decode_dump_into(&payload, &mut b.hasher, sc).map_err(|e| VerifyError::Key {
                addr: addr.to_string(),
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: format!("its DUMP payload: {e}"),
            })?;
        if present {
            let (kind, value) = (b.hasher.kind(), b.hasher.finish());
            b.add(db, &key, kind, value, expire_ms);
        }
    }
    Ok(())
}
