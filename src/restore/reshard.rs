//! A run of N shards into a database of M: every key of every run file decoded by the
//! reader, routed by its hash slot to the master that owns it, and written with
//! `RESTORE key <abs ms> <payload> ABSTTL` (the payload encoded from the decoded value:
//! RDB value encoding, version, CRC-64), in pipelined batches per master. The database
//! was verified empty, so a key that exists is an error (`BUSYKEY`), never overwritten.

use std::path::PathBuf;

use crate::ccs::{Cluster, Database, SlotRange};
use crate::persist::{
    encode_dump, key_slot, read_rdb, EntryVisitor, Kind, Stream, ValueBuilder, ValueSink,
};
use crate::server::ShardAddr;

/// Keys a pipeline carries before it is sent.
const BATCH: usize = 1000;

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

struct Writer {
    cons: Vec<redis::Connection>,
    pipes: Vec<(redis::Pipeline, usize, Option<u32>)>,
    slots: Vec<SlotRange>,
    cluster_mode: bool,
    builder: ValueBuilder,
    head: Option<(u32, Vec<u8>, Option<i64>)>,
    written: u64,
    error: Option<String>,
}

impl Writer {
    fn flush(&mut self, i: usize) {
        if self.error.is_some() {
            return;
        }
        let (pipe, n, _) = &mut self.pipes[i];
        if *n == 0 {
            return;
        }
        let res: Result<Vec<redis::Value>, _> = pipe.query(&mut self.cons[i]);
        match res {
            Ok(_) => self.written += *n as u64,
            Err(e) => self.error = Some(e.to_string()),
        }
        *pipe = redis::pipe();
        *n = 0;
    }
}

impl ValueSink for Writer {
    fn begin(&mut self, kind: Kind, n: u64) {
        self.builder.begin(kind, n)
    }
    fn string(&mut self, s: &[u8]) {
        self.builder.string(s)
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

impl EntryVisitor for Writer {
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
        self.head = Some((db, key.to_vec(), expire_ms));
    }

    fn end_key(&mut self, present: bool) {
        let value = self.builder.take();
        let (Some((db, key, expire)), Some(value), true) = (self.head.take(), value, present)
        else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        if self.cluster_mode && db != 0 {
            self.error = Some(format!(
                "key `{}` is in logical db {db}: a Redis Cluster has only db 0",
                String::from_utf8_lossy(&key)
            ));
            return;
        }
        let payload = match encode_dump(&value) {
            Ok(p) => p,
            Err(e) => {
                self.error = Some(format!("key `{}`: {e}", String::from_utf8_lossy(&key)));
                return;
            }
        };
        let slot = key_slot(&key);
        let Some(i) = self.slots.iter().position(|r| r.contains(slot)) else {
            self.error = Some(format!("no master owns slot {slot}"));
            return;
        };
        let (pipe, n, selected) = &mut self.pipes[i];
        if *selected != Some(db) {
            pipe.cmd("SELECT").arg(db).ignore();
            *selected = Some(db);
        }
        pipe.cmd("RESTORE")
            .arg(&key)
            .arg(expire.unwrap_or(0).max(0))
            .arg(payload)
            .arg("ABSTTL");
        *n += 1;
        if *n >= BATCH {
            self.flush(i);
        }
    }
}

/// Writes every key of `files` into `targets`; returns how many were written. Blocking:
/// run it on a blocking thread.
pub fn write_all(
    files: &[PathBuf],
    targets: &[Target],
    cluster_mode: bool,
    on_keys: &dyn Fn(u64),
) -> Result<u64, String> {
    let mut cons = Vec::new();
    for t in targets {
        let client = redis::Client::open(t.addr.connection_info())
            .map_err(|e| format!("{}: {e}", t.addr))?;
        cons.push(
            client
                .get_connection()
                .map_err(|e| format!("{}: {e}", t.addr))?,
        );
    }
    let mut w = Writer {
        pipes: (0..cons.len()).map(|_| (redis::pipe(), 0, None)).collect(),
        cons,
        slots: targets.iter().map(|t| t.slots).collect(),
        cluster_mode,
        builder: ValueBuilder::default(),
        head: None,
        written: 0,
        error: None,
    };
    for f in files {
        read_rdb(f, &mut w).map_err(|e| format!("`{}`: {e}", f.display()))?;
        if let Some(e) = &w.error {
            return Err(e.clone());
        }
        on_keys(w.written);
    }
    for i in 0..targets.len() {
        w.flush(i);
    }
    match w.error {
        Some(e) => Err(e),
        None => Ok(w.written),
    }
}
