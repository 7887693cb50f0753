//! The rules for names, port ranges and paths (a node's among the others'), in one place. The language checks names
//! and port ranges when a line is parsed (with a span under the value) and the operations
//! check them again with the same functions before they change anything. Whether a path
//! exists and can be read is a question for the moment of use (the disk changes between
//! parsing and applying), so paths are only checked at apply time, by the functions here.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::{Cluster, Id, PortRange};
use crate::error::{DomainError, ErrorKind};

/// At most this many bytes.
pub const MAX_NAME_LEN: usize = 64;

fn name_chars_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Cluster names: 1-64 letters, digits, `-`, `_` or `.`.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    if name_chars_ok(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1-64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// Database names: as cluster names, and starting with a letter, so a name is never read
/// as an id (`3`, `db:3`).
pub fn check_db_name(name: &str) -> Result<(), String> {
    if name_chars_ok(name) && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid database name: use 1-64 letters, digits, `-`, `_` or `.`; it must start with a letter"
        ))
    }
}

/// `lo-hi` ports: both 1-65535 (a `u16` that is not 0), `lo` not above `hi`.
pub fn port_range(lo: u16, hi: u16) -> Result<PortRange, String> {
    if lo == 0 || hi == 0 {
        return Err(format!("port range `{lo}-{hi}`: ports are 1-65535"));
    }
    if lo > hi {
        return Err(format!("port range `{lo}-{hi}` ends before it starts"));
    }
    Ok(PortRange { lo, hi })
}

/// A path that cannot be used for what it was given for.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{what} `{}` does not exist", path.display())]
    NotFound { what: &'static str, path: PathBuf },
    #[error("{what} `{}` is not accessible to this user", path.display())]
    NotAccessible { what: &'static str, path: PathBuf },
    #[error("{what} `{}` is not a directory", path.display())]
    NotADirectory { what: &'static str, path: PathBuf },
    #[error("{what} `{}` is not readable by this user", path.display())]
    Unreadable { what: &'static str, path: PathBuf },
    #[error("{what} `{}` cannot be used: {source}", path.display())]
    Unusable {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl DomainError for PathError {
    fn kind(&self) -> ErrorKind {
        match self {
            PathError::NotFound { .. } => ErrorKind::NotFound,
            PathError::NotADirectory { .. } => ErrorKind::Conflict,
            PathError::NotAccessible { .. }
            | PathError::Unreadable { .. }
            | PathError::Unusable { .. } => ErrorKind::Io,
        }
    }
}

/// `path` made absolute against the current directory (without touching the disk), so a
/// script's relative paths mean the same thing later. `what` names the path in errors.
pub fn absolute(what: &'static str, path: &Path) -> Result<PathBuf, PathError> {
    std::path::absolute(path).map_err(|source| PathError::Unusable {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A recovery path: an existing directory this user can list, returned canonical. The
/// files inside are checked by `recover list`.
pub fn recovery_path(path: &Path) -> Result<PathBuf, PathError> {
    const WHAT: &str = "recovery path";
    let at = || path.to_path_buf();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PathError::NotFound {
            what: WHAT,
            path: at(),
        },
        io::ErrorKind::PermissionDenied => PathError::NotAccessible {
            what: WHAT,
            path: at(),
        },
        _ => PathError::Unusable {
            what: WHAT,
            path: at(),
            source: e,
        },
    })?;
    if !meta.is_dir() {
        return Err(PathError::NotADirectory {
            what: WHAT,
            path: at(),
        });
    }
    std::fs::read_dir(path).map_err(|_| PathError::Unreadable {
        what: WHAT,
        path: at(),
    })?;
    path.canonicalize().map_err(|source| PathError::Unusable {
        what: WHAT,
        path: at(),
        source,
    })
}

/// Where a node may not go: its persistent path, port range or recovery path collides with
/// another node's.
#[derive(Debug, thiserror::Error)]
pub enum NodePlaceError {
    #[error("persistent path `{}` is already node:{node}'s", path.display())]
    PathTaken { path: PathBuf, node: Id },
    #[error("port range `{range}` overlaps node:{node}'s `{theirs}` on {addr}")]
    RangeOverlaps {
        range: PortRange,
        node: Id,
        theirs: PortRange,
        addr: String,
    },
    #[error(
        "no free port range of 1000 ports left on {addr}: give one with `port_range <lo>-<hi>`"
    )]
    NoFreeRange { addr: String },
    /// The message of [`crate::server::unusable_range`], for `node` (`None`: the new
    /// node) on `addr`.
    #[error("{} on {addr}: {why}", match .node { Some(id) => format!("node:{id}"), None => "the new node".into() })]
    RangeUnusable {
        node: Option<Id>,
        addr: String,
        why: String,
    },
    #[error("port range `{range}` holds a port of node:{node}'s shard redis:{shard} (db:{db}) on {addr}, its {}port `{held}`: give a range clear of the other nodes' shard ports", if .port == .held { "" } else { "cluster bus " })]
    RangeOverShard {
        range: PortRange,
        /// The shard's client port.
        port: u16,
        /// The port in the range: `port`, or its cluster bus port.
        held: u16,
        node: Id,
        db: Id,
        shard: Id,
        addr: String,
    },
    #[error("port range `{range}` holds port `{bus}`, the cluster bus port of node:{node}'s own shard redis:{shard} (db:{db}) on port `{port}` (port + {}): a shard given that port would find it taken when both run; give a range clear of its shards' bus ports", crate::server::CLUSTER_BUS_OFFSET)]
    RangeOverOwnBus {
        range: PortRange,
        /// The shard's client port.
        port: u16,
        /// Its cluster bus port, in the range.
        bus: u16,
        node: Id,
        db: Id,
        shard: Id,
    },
    #[error("port range `{range}` leaves out port `{port}` of node:{node}'s shard redis:{shard} (db:{db}), which its range `{old}` gave it: give a range that holds it")]
    RangeDropsOwnShard {
        range: PortRange,
        /// The node's range now.
        old: PortRange,
        port: u16,
        node: Id,
        db: Id,
        shard: Id,
    },
    #[error("recovery path `{}` {how} node:{node}'s persistent path `{}`, where its shards write: recovery would read files a live server rewrites, and write its copies among them; give the path of the old files (a copy or the old disk)", path.display(), persistent_path.display())]
    RecoveryPathLive {
        path: PathBuf,
        /// `is`, `lies inside` or `holds`.
        how: &'static str,
        node: Id,
        persistent_path: PathBuf,
    },
    #[error("recovery path `{}` {how} {what}{}: recovery reads a node's old shard files, and a repository's runs come back with `restore task create ... backup <run>`; give the path of the old files (a copy or the old disk)", path.display(), shown_apart(path, repository))]
    RecoveryPathRepository {
        path: PathBuf,
        /// `is`, `lies inside` or `holds`.
        how: &'static str,
        /// Whose repository it is (`backup task `nightly`'s repository`).
        what: String,
        repository: PathBuf,
    },
}

/// ` `repository`` when it is not `path` itself.
fn shown_apart(path: &Path, repository: &Path) -> String {
    match path == repository {
        true => String::new(),
        false => format!(" `{}`", repository.display()),
    }
}

impl DomainError for NodePlaceError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }

    fn hints(&self) -> Vec<String> {
        match self {
            NodePlaceError::NoFreeRange { .. } => {
                vec!["give one with `port_range <lo>-<hi>`".into()]
            }
            NodePlaceError::RangeUnusable { .. } => vec![format!(
                "give a range within {}-{}",
                crate::server::MIN_SHARD_PORT,
                crate::server::MAX_BUS_SHARD_PORT
            )],
            NodePlaceError::RangeOverShard { .. } => {
                vec!["give a range clear of the other nodes' shard ports".into()]
            }
            NodePlaceError::RangeOverOwnBus { bus, .. } => {
                vec![format!("give a range that leaves out port `{bus}`")]
            }
            NodePlaceError::RangeDropsOwnShard { port, .. } => {
                vec![format!("give a range that holds port `{port}`")]
            }
            NodePlaceError::RecoveryPathLive { .. }
            | NodePlaceError::RecoveryPathRepository { .. } => {
                vec!["give the path of the old files (a copy or the old disk)".into()]
            }
            _ => Vec::new(),
        }
    }
}

/// A port given for a shard (`create db ... port`, `recover db ... port`) that lies in
/// another node's port range on the shard's address: that node hands those ports out to
/// its own shards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port `{port}`{} lies in node:{node}'s port range `{range}` on {addr}, whose ports that node gives its own shards: give a port outside the other nodes' ranges", bus_of(*.port, *.held))]
pub struct PortOfOtherNode {
    pub port: u16,
    /// The port in the range: `port`, or its cluster bus port.
    pub held: u16,
    pub node: Id,
    pub range: PortRange,
    pub addr: String,
}

fn bus_of(port: u16, held: u16) -> String {
    match port == held {
        true => String::new(),
        false => format!(" (its cluster bus port `{held}`)"),
    }
}

/// Refuses `ports` (a shard's client port `port`, and its bus port when it has one) for a
/// shard of `node` when one lies in another node's range on the same address.
pub fn port_of_other_node(
    cluster: &Cluster,
    node: Id,
    port: u16,
    ports: impl IntoIterator<Item = u16>,
) -> Result<(), PortOfOtherNode> {
    let Some(addr) = cluster.nodes.get(&node).map(|n| &n.addr) else {
        return Ok(());
    };
    let ports: Vec<u16> = ports.into_iter().collect();
    for n in cluster.nodes.values() {
        if n.id == node || &n.addr != addr {
            continue;
        }
        if let Some(&held) = ports.iter().find(|&&p| n.port_range.contains(p)) {
            return Err(PortOfOtherNode {
                port,
                held,
                node: n.id,
                range: n.port_range,
                addr: addr.clone(),
            });
        }
    }
    Ok(())
}

/// The ports `node`'s shards may not hold as their cluster bus port (port + 10000):
/// those of the other nodes' ranges on the same address that a bus port of `node`'s range
/// reaches, which those nodes hand out to their own shards ([`port_of_other_node`]
/// refuses a shard given one; picking a port keeps off them).
pub fn bus_ports_of_other_nodes(cluster: &Cluster, node: Id) -> BTreeSet<u16> {
    let Some(own) = cluster.nodes.get(&node) else {
        return BTreeSet::new();
    };
    let offset = crate::server::CLUSTER_BUS_OFFSET;
    let (Some(lo), hi) = (
        own.port_range.lo.checked_add(offset),
        own.port_range.hi.saturating_add(offset),
    ) else {
        return BTreeSet::new();
    };
    cluster
        .nodes
        .values()
        .filter(|n| n.id != node && n.addr == own.addr)
        .flat_map(|n| n.port_range.lo.max(lo)..=n.port_range.hi.min(hi))
        .collect()
}

impl DomainError for PortOfOtherNode {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }
}

/// Where Linux keeps the range it takes outgoing connections' source ports from
/// (`lo hi`), on each machine.
pub const EPHEMERAL_PORTS_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The kernel's ephemeral port range as [`EPHEMERAL_PORTS_FILE`] holds it (`32768\t60999`).
pub fn parse_ephemeral_ports(text: &str) -> Option<PortRange> {
    let mut words = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(lo)), Some(Ok(hi)), None) = (words.next(), words.next(), words.next()) else {
        return None;
    };
    (lo <= hi).then_some(PortRange { lo, hi })
}

/// The ephemeral port range of `host`'s kernel, read there (through the host seam, so a
/// node over SSH says its own); `None` when it cannot be read (not Linux, no answer):
/// nothing is said then.
pub async fn ephemeral_ports(host: &dyn crate::host::Host) -> Option<PortRange> {
    let bytes = host.read(Path::new(EPHEMERAL_PORTS_FILE)).await.ok()?;
    parse_ephemeral_ports(&String::from_utf8_lossy(&bytes))
}

/// This machine's ephemeral port range, read here without the host seam (for the
/// default local cluster, made before any host is); `None` when it cannot be read.
pub fn local_ephemeral_ports() -> Option<PortRange> {
    parse_ephemeral_ports(&std::fs::read_to_string(EPHEMERAL_PORTS_FILE).ok()?)
}

/// [`ephemeral_overlap`] of node `node`'s `range` with the ephemeral range of `host`,
/// its machine, read there; `None` too when that cannot be read.
pub async fn ephemeral_warning(
    host: &dyn crate::host::Host,
    node: Id,
    range: PortRange,
) -> Option<EphemeralOverlap> {
    let ephemeral = ephemeral_ports(host).await?;
    let name = match host.is_local() {
        true => "this machine".to_string(),
        false => host.name(),
    };
    ephemeral_overlap(node, range, ephemeral, &name)
}

/// A node's port range whose ports, or their cluster bus ports (port + 10000, where a
/// sharded database's shards also listen), lie in its machine's ephemeral port range: an
/// outgoing connection (a client's, a replica's, the cluster bus's own) can take one as
/// its source port, and a shard then finds its port or bus port taken (seen: `recover db`
/// refused a port a TIME-WAIT socket held). A warning, not a refusal: the operator may
/// have reserved the ports (`net.ipv4.ip_local_reserved_ports`). The default range
/// ([`PortRange::DEFAULT`]) is clear of Linux's default ephemeral range, bus ports
/// included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralOverlap {
    pub node: Id,
    pub range: PortRange,
    pub ephemeral: PortRange,
    /// The machine (`this machine`, `ssh host`).
    pub host: String,
    /// The ports of the range in the ephemeral range.
    ports: Option<(u16, u16)>,
    /// The cluster bus ports of the range in the ephemeral range.
    bus: Option<(u16, u16)>,
}

impl fmt::Display for EphemeralOverlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offset = crate::server::CLUSTER_BUS_OFFSET;
        let bus = |(a, b): (u16, u16)| {
            format!("cluster bus ports {a}-{b} (port + {offset}, where a sharded database's shards also listen)")
        };
        let (which, what) = match (self.ports, self.bus) {
            (Some((a, b)), None) => (format!("its ports {a}-{b}"), "port"),
            (None, Some(p)) => (format!("its {}", bus(p)), "bus port"),
            (Some((a, b)), Some(p)) => (
                format!("its ports {a}-{b} and its {}", bus(p)),
                "port or bus port",
            ),
            (None, None) => unreachable!("an overlap has ports or bus ports"),
        };
        write!(
            f,
            "node:{}'s port range `{}` on {}: {which} lie in the kernel's ephemeral port range `{}` ({EPHEMERAL_PORTS_FILE}), from which outgoing connections take their source ports, so one can hold a shard's {what} when the shard starts; give a range clear of it, or reserve the ports (`sysctl net.ipv4.ip_local_reserved_ports`) or move the kernel's range (`net.ipv4.ip_local_port_range`)",
            self.node, self.range, self.host, self.ephemeral
        )
    }
}

/// Whether node `node`'s `range`, or its cluster bus ports, overlap `ephemeral`, the range
/// of the machine `host` names.
pub fn ephemeral_overlap(
    node: Id,
    range: PortRange,
    ephemeral: PortRange,
    host: &str,
) -> Option<EphemeralOverlap> {
    let within = |lo: u16, hi: u16| {
        let (a, b) = (lo.max(ephemeral.lo), hi.min(ephemeral.hi));
        (a <= b).then_some((a, b))
    };
    let offset = crate::server::CLUSTER_BUS_OFFSET;
    let ports = within(range.lo, range.hi);
    // A range reaching past 55535 is refused before it is judged; its ports past 65535
    // have no bus port.
    let bus = range
        .lo
        .checked_add(offset)
        .and_then(|lo| within(lo, range.hi.saturating_add(offset)));
    (ports.is_some() || bus.is_some()).then(|| EphemeralOverlap {
        node,
        range,
        ephemeral,
        host: host.to_string(),
        ports,
        bus,
    })
}

/// A new node's place on `addr`: its persistent path no other node's, and its port range
/// (`given`, else the first free block of 1000 ports from [`PortRange::DEFAULT`]'s up:
/// one whose ports are no other node's on `addr`, nor their shards' or their ranges' bus
/// ports, and whose bus ports lie in no other node's range), as [`node_range`] checks it.
/// Returns the range. On `addr`, the first ten such blocks (10000-19999, bus ports
/// 20000-29999) are clear of Linux's default ephemeral ports.
pub fn new_node_place(
    cluster: &Cluster,
    addr: &str,
    persistent_path: &Path,
    given: Option<PortRange>,
) -> Result<PortRange, NodePlaceError> {
    if let Some(other) = cluster
        .nodes
        .values()
        .find(|n| n.persistent_path == persistent_path)
    {
        return Err(NodePlaceError::PathTaken {
            path: persistent_path.to_path_buf(),
            node: other.id,
        });
    }
    match given {
        Some(range) => node_range(cluster, None, addr, range).map(|()| range),
        None => (0u16..)
            .map(|k| PortRange::DEFAULT.lo + k * 1000)
            .take_while(|&lo| lo + 999 <= crate::server::MAX_BUS_SHARD_PORT)
            .map(|lo| PortRange { lo, hi: lo + 999 })
            .find(|&range| {
                overlapping(cluster, None, addr, range).is_none()
                    && other_shard_in(cluster, None, addr, range).is_none()
                    && bus_apart(cluster, addr, range)
            })
            .ok_or_else(|| NodePlaceError::NoFreeRange {
                addr: addr.to_string(),
            }),
    }
}

/// Whether `range` may be the port range of a node on `addr` (`node`: an existing node
/// given a new range, `node <node> port_range set`; `None`: a new node). The range must be
/// usable by any shard ([`crate::server::unusable_range`]: not privileged, every port
/// with a bus port) and hold no port of the other nodes on the same address: neither
/// their ranges nor their shards' ports (a shard given a `port` outside its node's range,
/// a cluster shard's bus port). An existing node's new range must still hold each port
/// its old range gave one of its own shards (a shard given a `port` outside the old
/// range keeps it apart, as before).
pub fn node_range(
    cluster: &Cluster,
    node: Option<Id>,
    addr: &str,
    range: PortRange,
) -> Result<(), NodePlaceError> {
    if let Some(why) = crate::server::unusable_range(range.lo, range.hi) {
        return Err(NodePlaceError::RangeUnusable {
            node,
            addr: addr.to_string(),
            why,
        });
    }
    if let Some(other) = overlapping(cluster, node, addr, range) {
        return Err(NodePlaceError::RangeOverlaps {
            range,
            node: other.id,
            theirs: other.port_range,
            addr: addr.to_string(),
        });
    }
    if let Some(e) = other_shard_in(cluster, node, addr, range) {
        return Err(e);
    }
    if let Some(e) = own_bus_in(cluster, node, range) {
        return Err(e);
    }
    let Some(old) = node
        .and_then(|id| cluster.nodes.get(&id))
        .map(|n| n.port_range)
    else {
        return Ok(());
    };
    let dropped = cluster.databases.values().find_map(|db| {
        db.shards
            .iter()
            .find(|s| Some(s.node) == node && old.contains(s.port) && !range.contains(s.port))
            .map(|s| (db.id, s))
    });
    match dropped {
        Some((db, s)) => Err(NodePlaceError::RangeDropsOwnShard {
            range,
            old,
            port: s.port,
            node: s.node,
            db,
            shard: s.id,
        }),
        None => Ok(()),
    }
}

/// Whether `range`'s ports are no bus port of another node's range on `addr`, and its
/// bus ports lie in no other node's range there: a block the default search may hand a
/// new node without taking ports the other nodes' sharded shards need, or needing theirs.
fn bus_apart(cluster: &Cluster, addr: &str, range: PortRange) -> bool {
    let offset = crate::server::CLUSTER_BUS_OFFSET;
    let bus = |r: PortRange| {
        r.lo.checked_add(offset).map(|lo| PortRange {
            lo,
            hi: r.hi.saturating_add(offset),
        })
    };
    let meet = |a: Option<PortRange>, b: Option<PortRange>| match (a, b) {
        (Some(a), Some(b)) => a.lo <= b.hi && b.lo <= a.hi,
        _ => false,
    };
    cluster
        .nodes
        .values()
        .filter(|n| n.addr == addr)
        .all(|n| !meet(Some(range), bus(n.port_range)) && !meet(bus(range), Some(n.port_range)))
}

/// The first node on `addr` other than `node` whose range overlaps `range`.
fn overlapping<'c>(
    cluster: &'c Cluster,
    node: Option<Id>,
    addr: &str,
    range: PortRange,
) -> Option<&'c super::Node> {
    cluster.nodes.values().find(|n| {
        Some(n.id) != node
            && n.addr == addr
            && n.port_range.lo <= range.hi
            && range.lo <= n.port_range.hi
    })
}

/// The first port in `range` held by a shard of a node on `addr` other than `node`: its
/// client port, or a cluster shard's bus port.
fn other_shard_in(
    cluster: &Cluster,
    node: Option<Id>,
    addr: &str,
    range: PortRange,
) -> Option<NodePlaceError> {
    cluster.databases.values().find_map(|db| {
        db.shards.iter().find_map(|s| {
            let owner = cluster
                .nodes
                .get(&s.node)
                .filter(|n| n.addr == addr && Some(n.id) != node)?;
            let held = db.port_need().ports(s.port).find(|&p| range.contains(p))?;
            Some(NodePlaceError::RangeOverShard {
                range,
                port: s.port,
                held,
                node: owner.id,
                db: db.id,
                shard: s.id,
                addr: addr.to_string(),
            })
        })
    })
}

/// The first cluster bus port of a shard of `node` (a sharded database's: port + 10000)
/// that `range` holds: the node would hand it to a later shard, which could not bind it
/// while the first runs (or keep the first's bus from binding after).
fn own_bus_in(cluster: &Cluster, node: Option<Id>, range: PortRange) -> Option<NodePlaceError> {
    let node = node?;
    cluster.databases.values().find_map(|db| {
        db.shards.iter().filter(|s| s.node == node).find_map(|s| {
            let bus = match db.port_need() {
                crate::server::PortNeed::WithBus => {
                    s.port.checked_add(crate::server::CLUSTER_BUS_OFFSET)
                }
                crate::server::PortNeed::Plain => None,
            }
            .filter(|&p| range.contains(p))?;
            Some(NodePlaceError::RangeOverOwnBus {
                range,
                port: s.port,
                bus,
                node,
                db: db.id,
                shard: s.id,
            })
        })
    })
}

/// A recovery path (canonical) must lie apart from every node's persistent path: not it,
/// not inside it, not holding it.
pub fn recovery_path_apart(cluster: &Cluster, path: &Path) -> Result<(), NodePlaceError> {
    for n in cluster.nodes.values() {
        let pp = n
            .persistent_path
            .canonicalize()
            .unwrap_or_else(|_| n.persistent_path.clone());
        let how = if path == pp {
            "is"
        } else if path.starts_with(&pp) {
            "lies inside"
        } else if pp.starts_with(path) {
            "holds"
        } else {
            continue;
        };
        return Err(NodePlaceError::RecoveryPathLive {
            path: path.to_path_buf(),
            how,
            node: n.id,
            persistent_path: n.persistent_path.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccs::Node;

    #[test]
    fn a_port_in_another_nodes_range_is_refused() {
        use crate::ccs::fixtures::{cluster, node};
        let root = Path::new("/srv");
        let mut c = cluster(7, 10, (1..=3).map(|id| node(id, root)).collect());
        for (id, lo) in [(1, 30000), (2, 30100), (3, 30100)] {
            let n = c.nodes.get_mut(&id).unwrap();
            n.port_range = PortRange { lo, hi: lo + 99 };
        }
        c.nodes.get_mut(&3).unwrap().addr = "10.0.0.3".into();
        port_of_other_node(&c, 1, 30050, [30050]).unwrap();
        // Outside every range: the operator's choice.
        port_of_other_node(&c, 1, 42000, [42000]).unwrap();
        let e = port_of_other_node(&c, 1, 30150, [30150]).unwrap_err();
        assert_eq!((e.node, e.held), (2, 30150));
        assert_eq!(
            e.to_string(),
            format!("port `30150` lies in node:2's port range `30100-30199` on {}, whose ports that node gives its own shards: give a port outside the other nodes' ranges", e.addr)
        );
        let bus = port_of_other_node(&c, 1, 20150, [20150, 30150]).unwrap_err();
        assert!(
            bus.to_string()
                .starts_with("port `20150` (its cluster bus port `30150`) lies in node:2's"),
            "{bus}"
        );
        // Another address's range is another machine's.
        port_of_other_node(&c, 2, 30150, [30150]).unwrap();
    }

    #[test]
    fn a_new_nodes_range_holds_no_shard_port_and_every_bus_port() {
        use crate::ccs::fixtures::{cluster, database, db_config, master, node, shard};
        use crate::ccs::{Role, SlotRange};
        let root = Path::new("/srv");
        let mut c = cluster(7, 20, vec![node(1, root)]);
        // A single-shard database given a port outside node:1's range, and a cluster
        // database whose shards' bus ports are 40000 and 40001.
        c.databases.insert(
            2,
            database(
                2,
                db_config("single", 1, false),
                45010,
                vec![master(3, 1, 45010)],
            ),
        );
        let halves = [(0, 8191), (8192, 16383)];
        let shards = (0..2)
            .map(|i| {
                let (start, end) = halves[i as usize];
                shard(
                    5 + i,
                    1,
                    Role::Master,
                    None,
                    Some(SlotRange { start, end }),
                    30000 + i as u16,
                )
            })
            .collect();
        c.databases.insert(
            4,
            database(4, db_config("sharded", 2, false), 30000, shards),
        );
        let place = |range: Option<PortRange>| {
            new_node_place(&c, "127.0.0.1", Path::new("/srv/new"), range)
        };
        let over = place(Some(PortRange {
            lo: 45000,
            hi: 45099,
        }))
        .unwrap_err();
        assert_eq!(
            over.to_string(),
            "port range `45000-45099` holds a port of node:1's shard redis:3 (db:2) on 127.0.0.1, its port `45010`: give a range clear of the other nodes' shard ports"
        );
        let bus = place(Some(PortRange {
            lo: 39000,
            hi: 40000,
        }))
        .unwrap_err();
        assert_eq!(
            bus.to_string(),
            "port range `39000-40000` holds a port of node:1's shard redis:5 (db:4) on 127.0.0.1, its cluster bus port `40000`: give a range clear of the other nodes' shard ports"
        );
        let low = place(Some(PortRange { lo: 80, hi: 2000 })).unwrap_err();
        assert_eq!(
            low.to_string(),
            "the new node on 127.0.0.1: port range `80-2000` starts below 1024 (privileged ports: system services', which only root may bind): give a range within 1024-55535"
        );
        let high = place(Some(PortRange {
            lo: 55000,
            hi: 56000,
        }))
        .unwrap_err();
        assert!(high.to_string().contains("ends above 55535"), "{high}");
        // Another address is another machine; a range clear of both is taken.
        new_node_place(
            &c,
            "10.0.0.2",
            Path::new("/srv/new"),
            Some(PortRange {
                lo: 45000,
                hi: 45099,
            }),
        )
        .unwrap();
        place(Some(PortRange {
            lo: 46000,
            hi: 46999,
        }))
        .unwrap();
        // Without a range: the default block, clear of Linux's default ephemeral ports,
        // its bus ports (20000-20999) too.
        assert_eq!(place(None).unwrap(), PortRange::DEFAULT);
        let linux = PortRange {
            lo: 32768,
            hi: 60999,
        };
        assert_eq!(
            ephemeral_overlap(9, PortRange::DEFAULT, linux, "this machine"),
            None
        );
        // Then the next blocks of 1000: none over another node's range or its shards'
        // ports, none that are the bus ports of another node's range (those of
        // 10000-19999 are 20000-29999; node:1's, 40000-40999), none whose bus ports lie
        // in another node's range, and none ending above 55535.
        let with_blocks = |c: &mut Cluster, los: &mut dyn Iterator<Item = u16>| {
            for lo in los {
                let n = node(lo as u64, root);
                c.nodes.insert(
                    n.id,
                    Node {
                        port_range: PortRange { lo, hi: lo + 999 },
                        ..n
                    },
                );
            }
        };
        let next = |c: &Cluster| new_node_place(c, "127.0.0.1", Path::new("/srv/new"), None);
        with_blocks(&mut c, &mut (10000..=19000).step_by(1000));
        assert_eq!(
            next(&c).unwrap(),
            PortRange {
                lo: 31000,
                hi: 31999
            }
        );
        with_blocks(&mut c, &mut (31000..=39000).step_by(1000));
        assert_eq!(
            next(&c).unwrap(),
            PortRange {
                lo: 50000,
                hi: 50999
            }
        );
        with_blocks(&mut c, &mut (50000..=54000).step_by(1000));
        let none = next(&c).unwrap_err();
        assert!(matches!(none, NodePlaceError::NoFreeRange { .. }), "{none}");
        // A range of the operator's at 20000-20999 holds the default block's bus ports:
        // the search passes that block.
        let mut c = cluster(7, 20, vec![node(1, root)]);
        c.nodes.get_mut(&1).unwrap().port_range = PortRange {
            lo: 20000,
            hi: 20999,
        };
        assert_eq!(
            next(&c).unwrap(),
            PortRange {
                lo: 11000,
                hi: 11999
            }
        );
    }

    #[test]
    fn an_existing_nodes_new_range_keeps_its_shards_ports_and_clears_the_others() {
        use crate::ccs::fixtures::{cluster, database, db_config, master, node};
        let root = Path::new("/srv");
        let mut c = cluster(7, 20, vec![node(1, root), node(2, root)]);
        c.nodes.get_mut(&1).unwrap().port_range = PortRange {
            lo: 30000,
            hi: 30999,
        };
        c.nodes.get_mut(&2).unwrap().port_range = PortRange {
            lo: 31000,
            hi: 31999,
        };
        // node:1's shard on a port of its range, and one given a port outside it.
        c.databases.insert(
            3,
            database(
                3,
                db_config("a", 1, false),
                30005,
                vec![master(4, 1, 30005)],
            ),
        );
        c.databases.insert(
            5,
            database(
                5,
                db_config("b", 1, false),
                45000,
                vec![master(6, 1, 45000)],
            ),
        );
        let set = |id, lo, hi| node_range(&c, Some(id), "127.0.0.1", PortRange { lo, hi });
        // Its own range, narrowed or moved, as long as it still holds redis:4's port.
        set(1, 30000, 30999).unwrap();
        set(1, 30005, 30005).unwrap();
        set(1, 29000, 30010).unwrap();
        let dropped = set(1, 32000, 32999).unwrap_err();
        assert_eq!(
            dropped.to_string(),
            "port range `32000-32999` leaves out port `30005` of node:1's shard redis:4 (db:3), which its range `30000-30999` gave it: give a range that holds it"
        );
        assert_eq!(dropped.hints(), ["give a range that holds port `30005`"]);
        // The shard given a port outside the range never bound the range.
        set(1, 30005, 30100).unwrap();
        // What `node add` refuses: another node's range, another node's shard, an
        // unusable range (the node named).
        let over = set(1, 30000, 31000).unwrap_err();
        assert!(
            matches!(over, NodePlaceError::RangeOverlaps { node: 2, .. }),
            "{over}"
        );
        let shard = set(2, 44000, 45999).unwrap_err();
        assert!(
            matches!(
                shard,
                NodePlaceError::RangeOverShard {
                    node: 1,
                    shard: 6,
                    ..
                }
            ),
            "{shard}"
        );
        assert_eq!(
            set(2, 80, 2000).unwrap_err().to_string(),
            "node:2 on 127.0.0.1: port range `80-2000` starts below 1024 (privileged ports: system services', which only root may bind): give a range within 1024-55535"
        );
        set(2, 46000, 46999).unwrap();

        // A sharded database's shard of node:1 on port 30020: its bus port, 40020, is no
        // port for node:1's range to hand out (node:2 moved out of the way, its shard's
        // ports clear of the ranges tried).
        use crate::ccs::fixtures::shard as sharded;
        use crate::ccs::{Role, SlotRange};
        c.nodes.get_mut(&2).unwrap().port_range = PortRange {
            lo: 50000,
            hi: 50999,
        };
        let (a, b) = (
            Some(SlotRange {
                start: 0,
                end: 8191,
            }),
            Some(SlotRange {
                start: 8192,
                end: 16383,
            }),
        );
        c.databases.insert(
            7,
            database(
                7,
                db_config("sharded", 2, false),
                30020,
                vec![
                    sharded(8, 1, Role::Master, None, a, 30020),
                    sharded(9, 2, Role::Master, None, b, 50020),
                ],
            ),
        );
        let set = |id, lo, hi| node_range(&c, Some(id), "127.0.0.1", PortRange { lo, hi });
        set(1, 30000, 40019).unwrap();
        let bus = set(1, 30000, 40020).unwrap_err();
        assert_eq!(
            bus.to_string(),
            "port range `30000-40020` holds port `40020`, the cluster bus port of node:1's own shard redis:8 (db:7) on port `30020` (port + 10000): a shard given that port would find it taken when both run; give a range clear of its shards' bus ports"
        );
        assert_eq!(bus.hints(), ["give a range that leaves out port `40020`"]);
        // A single-shard database's shard has no bus port: 40005 is free to hand out.
        set(1, 30005, 40010).unwrap();
    }

    #[test]
    fn a_range_in_the_ephemeral_ports_is_named() {
        let linux = parse_ephemeral_ports("32768\t60999\n").unwrap();
        assert_eq!(
            linux,
            PortRange {
                lo: 32768,
                hi: 60999
            }
        );
        for bad in ["", "1", "3 2", "1 2 3", "a b"] {
            assert_eq!(parse_ephemeral_ports(bad), None, "{bad}");
        }
        let r = |lo, hi| PortRange { lo, hi };
        // Clear of it, bus ports included: the default range's (20000-20999) too.
        assert_eq!(
            ephemeral_overlap(2, r(12000, 12999), linux, "this machine"),
            None
        );
        assert_eq!(
            ephemeral_overlap(1, PortRange::DEFAULT, linux, "this machine"),
            None
        );
        // Its ports clear, its bus ports not: the earlier default range.
        let bus = ephemeral_overlap(1, r(30000, 30999), linux, "this machine").unwrap();
        assert_eq!(
            bus.to_string(),
            "node:1's port range `30000-30999` on this machine: its cluster bus ports 40000-40999 (port + 10000, where a sharded database's shards also listen) lie in the kernel's ephemeral port range `32768-60999` (/proc/sys/net/ipv4/ip_local_port_range), from which outgoing connections take their source ports, so one can hold a shard's bus port when the shard starts; give a range clear of it, or reserve the ports (`sysctl net.ipv4.ip_local_reserved_ports`) or move the kernel's range (`net.ipv4.ip_local_port_range`)"
        );
        // Only the bus ports of the range's top reach it.
        let top = ephemeral_overlap(1, r(22000, 22999), linux, "this machine").unwrap();
        assert!(
            top.to_string()
                .contains(": its cluster bus ports 32768-32999 (port + 10000"),
            "{top}"
        );
        let part = ephemeral_overlap(3, r(32000, 33000), linux, "ssh `h`").unwrap();
        assert_eq!(
            part.to_string(),
            "node:3's port range `32000-33000` on ssh `h`: its ports 32768-33000 and its cluster bus ports 42000-43000 (port + 10000, where a sharded database's shards also listen) lie in the kernel's ephemeral port range `32768-60999` (/proc/sys/net/ipv4/ip_local_port_range), from which outgoing connections take their source ports, so one can hold a shard's port or bus port when the shard starts; give a range clear of it, or reserve the ports (`sysctl net.ipv4.ip_local_reserved_ports`) or move the kernel's range (`net.ipv4.ip_local_port_range`)"
        );
        let own = ephemeral_overlap(3, r(52000, 52999), r(50000, 55000), "this machine").unwrap();
        assert!(
            own.to_string().contains(": its ports 52000-52999 lie in"),
            "{own}"
        );
    }

    #[test]
    fn names_ports_and_paths() {
        for ok in ["prod", "a", "db-1_x.y", &"a".repeat(64)] {
            check_cluster_name(ok).unwrap();
            check_db_name(ok).unwrap();
        }
        for bad in ["", "bad name", "x/y", &"a".repeat(65)] {
            check_cluster_name(bad).unwrap_err();
            check_db_name(bad).unwrap_err();
        }
        check_cluster_name("3abc").unwrap();
        assert!(port_range(2, 1).is_err() && port_range(0, 1).is_err());
        assert_eq!(port_range(1, 1).unwrap(), PortRange { lo: 1, hi: 1 });
        let missing = recovery_path(Path::new("/no/such/dir")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "recovery path `/no/such/dir` does not exist"
        );
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let file = recovery_path(Path::new("/proc/self/status")).unwrap_err();
        assert_eq!(file.kind(), ErrorKind::Conflict);
        assert_eq!(
            check_db_name("3abc").unwrap_err(),
            "`3abc` is not a valid database name: use 1-64 letters, digits, `-`, `_` or `.`; it must start with a letter"
        );
    }
}
