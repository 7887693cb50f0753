//! The digest of a live shard: SCAN, then DUMP and PEXPIRETIME of each key (DUMP alone in
//! a db whose INFO keyspace says `expires=0`), a round ahead on one raw connection
//! ([`super::scan`]); CLUSTER COUNTKEYSINSLOT on a cluster shard.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::scan::RawConn;
use super::{now_ms, VerifyError};
use crate::persist::{ContentDigest, DigestBuilder, DigestOptions};
use crate::server::{connect, info, ShardAddr};

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
    VerifyError::server(addr, reason)
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
    let (a, o) = (addr.clone(), opts.clone());
    let scan = tokio::task::spawn_blocking(move || -> Result<(DigestBuilder, u64), VerifyError> {
        let mut b = DigestBuilder::new(now_ms(), &o);
        let mut raw = RawConn::open(&a, timeout)?;
        let mut scanned = 0;
        for (db, expires) in dbs {
            if db != 0 || !cluster {
                raw.simple(&[b"SELECT", db.to_string().as_bytes()], "SELECT")?;
            }
            scanned += raw.scan_db(db, expires, &mut b)?;
        }
        Ok((b, scanned))
    })
    .await
    .map_err(|e| err(addr, e))
    .and_then(|r| r);
    if compression.as_deref() == Some("yes") {
        set_compression(&mut con, "yes")
            .await
            .map_err(|e| err(addr, e))?;
    }
    let (b, scanned) = scan?;
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
