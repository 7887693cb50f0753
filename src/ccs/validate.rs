//! One check of a CCS document against every invariant the code relies on, used wherever a
//! document enters: the home's own `ccs.json`, a backup given to `cluster recover`, and
//! every save. A fault is named by its JSON path (`databases[2].shards: no master`).
//!
//! Also the one way a CCS document is read from disk: only a regular file, and only up to
//! [`MAX_DOCUMENT_BYTES`], checked before a byte is read (a FIFO would block forever,
//! `/dev/zero` would fill memory).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::Path;

use super::model::{Cluster, Database, Id, Role, SLOT_COUNT};

/// Ids and generations stay at or below 2^53, so every JSON reader (jq, JavaScript) holds
/// them exactly; an allocator that reaches it refuses to hand out more.
pub const MAX_ID: u64 = 1 << 53;

/// A CCS document is a few KiB per database; anything near this is not one.
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Where a document breaks an invariant, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the fault: `databases[2].shards`, `nodes[1].addr`, `alloc_id`.
    pub at: String,
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

fn fault(at: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        at: at.into(),
        reason: reason.into(),
    }
}

/// Reads a document that must be a regular file of at most [`MAX_DOCUMENT_BYTES`].
/// `NotFound` passes through unchanged so callers can treat "no document" apart.
pub fn read_document(path: &Path) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file: {}", describe_type(&meta.file_type())),
        ));
    }
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} bytes is not a CCS document (at most {} MiB)",
                meta.len(),
                MAX_DOCUMENT_BYTES >> 20
            ),
        ));
    }
    // The file may grow between the check and the read: read one byte past the cap at most.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)?
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB: not a CCS document",
                MAX_DOCUMENT_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

pub use crate::host::local::describe_type;

/// Every invariant the code relies on; the first broken one, by its JSON path.
pub fn validate(c: &Cluster) -> Result<(), Invalid> {
    if c.generation > MAX_ID {
        return Err(fault(
            "generation",
            format!("{} is above the limit {MAX_ID} (2^53)", c.generation),
        ));
    }
    if c.alloc_id == 0 || c.alloc_id > MAX_ID + 1 {
        return Err(fault(
            "alloc_id",
            format!(
                "{} is outside 1..={} (ids stay at or below 2^53)",
                c.alloc_id,
                MAX_ID + 1
            ),
        ));
    }
    if c.cluster_id == 0 {
        return Err(fault("cluster_id", "0 is not a cluster id"));
    }
    if !c.nodes.contains_key(&c.local_node) {
        return Err(fault(
            "local_node",
            format!("node:{} is not among the nodes", c.local_node),
        ));
    }
    let mut ids = Ids::new(c.alloc_id);
    for (key, node) in &c.nodes {
        let at = format!("nodes[{key}]");
        if node.id != *key {
            return Err(fault(
                format!("{at}.id"),
                format!("{} under key {key}", node.id),
            ));
        }
        ids.take(node.id, &at)?;
        if node.addr.parse::<IpAddr>().is_err() {
            return Err(fault(
                format!("{at}.addr"),
                format!("`{}` is not an IP address", node.addr),
            ));
        }
        if !node.persistent_path.is_absolute() {
            return Err(fault(
                format!("{at}.persistent_path"),
                format!("`{}` is not absolute", node.persistent_path.display()),
            ));
        }
        if let Some(p) = node.recovery_path.as_ref().filter(|p| !p.is_absolute()) {
            return Err(fault(
                format!("{at}.recovery_path"),
                format!("`{}` is not absolute", p.display()),
            ));
        }
        super::rules::port_range(node.port_range.lo, node.port_range.hi)
            .map_err(|e| fault(format!("{at}.port_range"), e))?;
    }
    let mut names = BTreeMap::new();
    for (key, db) in &c.databases {
        let at = format!("databases[{key}]");
        if db.id != *key {
            return Err(fault(
                format!("{at}.id"),
                format!("{} under key {key}", db.id),
            ));
        }
        ids.take(db.id, &at)?;
        if let Some(other) = names.insert(db.config.name.as_str(), db.id) {
            return Err(fault(
                format!("{at}.name"),
                format!("`{}` is also db:{other}'s name", db.config.name),
            ));
        }
        database(c, db, &at, &mut ids)?;
    }
    Ok(())
}

fn database(c: &Cluster, db: &Database, at: &str, ids: &mut Ids) -> Result<(), Invalid> {
    super::rules::check_db_name(&db.config.name).map_err(|e| fault(format!("{at}.name"), e))?;
    if db.port == 0 {
        return Err(fault(format!("{at}.port"), "0 is not a port"));
    }
    if db.config.shards == 0 {
        return Err(fault(format!("{at}.shard_count"), "0 shards"));
    }
    if db.shards.is_empty() {
        return Err(fault(format!("{at}.shards"), "no shards"));
    }
    for (i, s) in db.shards.iter().enumerate() {
        ids.take(s.id, &format!("{at}.shards[{i}]"))?;
    }
    let masters: BTreeSet<Id> = db.masters().map(|s| s.id).collect();
    if masters.is_empty() {
        return Err(fault(format!("{at}.shards"), "no master"));
    }
    if masters.len() != db.config.shards as usize {
        return Err(fault(
            format!("{at}.shards"),
            format!(
                "{} masters for a database of {} shards",
                masters.len(),
                db.config.shards
            ),
        ));
    }
    for (i, s) in db.shards.iter().enumerate() {
        let at = format!("{at}.shards[{i}]");
        if !c.nodes.contains_key(&s.node) {
            return Err(fault(
                format!("{at}.node"),
                format!("node:{} is not among the nodes", s.node),
            ));
        }
        if s.port == 0 {
            return Err(fault(format!("{at}.port"), "0 is not a port"));
        }
        match (s.role, s.master) {
            (Role::Master, Some(m)) => {
                return Err(fault(
                    format!("{at}.master"),
                    format!("a master follows redis:{m}"),
                ))
            }
            (Role::Replica, None) => {
                return Err(fault(format!("{at}.master"), "a replica follows no master"))
            }
            (Role::Replica, Some(m)) if !masters.contains(&m) => {
                return Err(fault(
                    format!("{at}.master"),
                    format!("redis:{m} is not a master of this database"),
                ))
            }
            _ => {}
        }
        match s.slots {
            Some(r) if r.start > r.end || r.end >= SLOT_COUNT => {
                return Err(fault(
                    format!("{at}.slots"),
                    format!("{r} is not a slot range (0-{})", SLOT_COUNT - 1),
                ))
            }
            None if db.config.shards > 1 => {
                return Err(fault(
                    format!("{at}.slots"),
                    "a shard of a clustered database owns no slots",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Ids seen so far: each once, each below the allocator.
struct Ids {
    alloc_id: Id,
    seen: BTreeMap<Id, String>,
}

impl Ids {
    fn new(alloc_id: Id) -> Ids {
        Ids {
            alloc_id,
            seen: BTreeMap::new(),
        }
    }

    fn take(&mut self, id: Id, at: &str) -> Result<(), Invalid> {
        if id == 0 || id > MAX_ID {
            return Err(fault(
                format!("{at}.id"),
                format!("{id} is outside 1..={MAX_ID} (2^53)"),
            ));
        }
        if id >= self.alloc_id {
            return Err(fault(
                format!("{at}.id"),
                format!(
                    "{id} is not below alloc_id {}: it could be handed out again",
                    self.alloc_id
                ),
            ));
        }
        if let Some(first) = self.seen.insert(id, at.to_string()) {
            return Err(fault(
                format!("{at}.id"),
                format!("{id} is already used by {first}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccs::{default_local_cluster, fixtures};

    /// A valid two-shard replicated database on the default cluster.
    fn cluster() -> Cluster {
        let mut c = default_local_cluster(Path::new("/h"));
        let db = c.allocate_id();
        let (m1, m2, r1) = (c.allocate_id(), c.allocate_id(), c.allocate_id());
        let shard = |id, role, master, slots| {
            fixtures::shard(id, 1, role, master, Some(slots), 30000 + id as u16)
        };
        let (lo, hi) = (fixtures::slots(0, 8191), fixtures::slots(8192, 16383));
        let shards = vec![
            shard(m1, Role::Master, None, lo),
            shard(m2, Role::Master, None, hi),
            shard(r1, Role::Replica, Some(m1), lo),
        ];
        let config = fixtures::db_config("orders", 2, true);
        c.databases
            .insert(db, fixtures::database(db, config, 30003, shards));
        c
    }

    fn at(c: &Cluster) -> String {
        match validate(c) {
            Err(e) => e.to_string(),
            Ok(()) => "valid".into(),
        }
    }

    #[test]
    fn a_sound_document_passes() {
        validate(&cluster()).unwrap();
    }

    #[test]
    fn each_broken_invariant_is_named_by_its_path() {
        let db = |c: &mut Cluster| c.databases.values_mut().next().unwrap().clone();
        let put = |c: &mut Cluster, d: Database| {
            c.databases.insert(d.id, d);
        };
        type Breaker = fn(&mut Cluster);
        let cases: Vec<(Breaker, &str)> = vec![
            (
                |c| c.generation = u64::MAX,
                "generation: 18446744073709551615 is above the limit",
            ),
            (|c| c.alloc_id = u64::MAX, "alloc_id: 18446744073709551615"),
            (|c| c.alloc_id = 3, "is not below alloc_id 3"),
            (|c| c.local_node = 9, "local_node: node:9"),
            (
                |c| c.nodes.get_mut(&1).unwrap().addr = "nohost".into(),
                "nodes[1].addr: `nohost` is not an IP address",
            ),
            (
                |c| c.nodes.get_mut(&1).unwrap().persistent_path = "rel/p".into(),
                "nodes[1].persistent_path: `rel/p` is not absolute",
            ),
            (
                |c| {
                    let n = c.nodes.get_mut(&1).unwrap();
                    n.port_range.lo = 0;
                },
                "nodes[1].port_range",
            ),
        ];
        for (breaker, expected) in cases {
            let mut c = cluster();
            breaker(&mut c);
            assert!(at(&c).contains(expected), "{} / {expected}", at(&c));
        }
        type DbBreaker = fn(&mut Database);
        let db_cases: Vec<(DbBreaker, &str)> = vec![
            (
                |d| {
                    for s in &mut d.shards {
                        s.role = Role::Replica;
                        s.master = Some(99);
                    }
                },
                "databases[2].shards: no master",
            ),
            (|d| d.shards.clear(), "databases[2].shards: no shards"),
            (|d| d.port = 0, "databases[2].port: 0 is not a port"),
            (
                |d| d.shards[1].id = d.shards[0].id,
                "databases[2].shards[1].id: 3 is already used by databases[2].shards[0]",
            ),
            (
                |d| d.shards[0].port = 0,
                "databases[2].shards[0].port: 0 is not a port",
            ),
            (
                |d| d.shards[2].node = 7,
                "databases[2].shards[2].node: node:7",
            ),
            (
                |d| d.shards[2].master = Some(5),
                "databases[2].shards[2].master: redis:5 is not a master",
            ),
            (
                |d| d.shards[0].slots = None,
                "databases[2].shards[0].slots: a shard of a clustered database owns no slots",
            ),
            (
                |d| d.config.shards = 3,
                "databases[2].shards: 2 masters for a database of 3 shards",
            ),
        ];
        for (breaker, expected) in db_cases {
            let mut c = cluster();
            let mut d = db(&mut c);
            breaker(&mut d);
            put(&mut c, d);
            assert!(at(&c).contains(expected), "{} / {expected}", at(&c));
        }
    }

    #[test]
    fn documents_are_only_read_from_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_document(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file: a directory"));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_document(&fifo).unwrap_err();
        assert!(
            err.to_string().contains("not a regular file: a FIFO"),
            "{err}"
        );
        let big = dir.path().join("sparse");
        File::create(&big)
            .unwrap()
            .set_len(10 << 30)
            .expect("a sparse file");
        let err = read_document(&big).unwrap_err();
        assert!(err.to_string().contains("is not a CCS document"), "{err}");
        let zero = read_document(Path::new("/dev/zero")).unwrap_err();
        assert!(zero.to_string().contains("a character device"), "{zero}");
    }
}
