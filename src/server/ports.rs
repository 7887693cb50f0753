//! Port probing: a shard port must be free before its server starts, and a cluster
//! shard also needs its bus port (port + 10000).

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use super::ServerError;

/// Offset Redis Cluster adds to a shard's port for its node-to-node bus.
pub const CLUSTER_BUS_OFFSET: u16 = 10000;

/// Ports below this are privileged: only root binds them, and system services own them.
pub const MIN_SHARD_PORT: u16 = 1024;

/// Why the operator's `port` cannot be a shard's (`need`: with its bus port): a
/// privileged port, or one whose bus port would pass 65535. `None`: it may be.
pub fn unusable_port(port: u16, need: PortNeed) -> Option<String> {
    if port < MIN_SHARD_PORT {
        return Some(format!(
            "port `{port}` is privileged (below {MIN_SHARD_PORT}: system services' ports, which only root may bind): give a port of {MIN_SHARD_PORT}-65535"
        ));
    }
    if need == PortNeed::WithBus && port.checked_add(CLUSTER_BUS_OFFSET).is_none() {
        return Some(format!(
            "port `{port}` leaves no cluster bus port: a sharded database's shards also listen on port + {CLUSTER_BUS_OFFSET}, at most 65535, so give a port of {MIN_SHARD_PORT}-{MAX_BUS_SHARD_PORT}"
        ));
    }
    None
}

/// The highest port whose cluster bus port (port + 10000) is still a port: 55535.
pub const MAX_BUS_SHARD_PORT: u16 = u16::MAX - CLUSTER_BUS_OFFSET;

/// Why a node's port range `lo-hi` cannot be one: the node hands its ports to shards of
/// any database, so every port in it must be usable by a sharded database's shard (not
/// privileged, with a bus port). `None`: it may be.
pub fn unusable_range(lo: u16, hi: u16) -> Option<String> {
    let within = format!("give a range within {MIN_SHARD_PORT}-{MAX_BUS_SHARD_PORT}");
    if lo < MIN_SHARD_PORT {
        return Some(format!(
            "port range `{lo}-{hi}` starts below {MIN_SHARD_PORT} (privileged ports: system services', which only root may bind): {within}"
        ));
    }
    if hi > MAX_BUS_SHARD_PORT {
        return Some(format!(
            "port range `{lo}-{hi}` ends above {MAX_BUS_SHARD_PORT}: a sharded database's shards also listen on port + {CLUSTER_BUS_OFFSET}, at most 65535, so {within}"
        ));
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortNeed {
    /// A standalone shard: only its client port.
    Plain,
    /// A cluster shard: its client port and its bus port.
    WithBus,
}

impl PortNeed {
    /// The ports a shard on `port` holds: its client port, and its bus port for a
    /// cluster shard (none past 65535: such a port is never free for a cluster shard).
    pub fn ports(self, port: u16) -> impl Iterator<Item = u16> {
        let bus = match self {
            PortNeed::Plain => None,
            PortNeed::WithBus => port.checked_add(CLUSTER_BUS_OFFSET),
        };
        std::iter::once(port).chain(bus)
    }
}

/// Whether `port` (and its bus port when needed) can be bound on `addr` right now.
/// Probing by binding sees listeners on the wildcard address too.
pub fn port_is_free(addr: &str, port: u16, need: PortNeed) -> bool {
    port_in_use(addr, port, need).is_none()
}

/// The first of `port`'s ports (client, then bus when needed) that cannot be bound on
/// `addr`; a cluster shard's port with no bus port (past 65535) is its own answer.
pub fn port_in_use(addr: &str, port: u16, need: PortNeed) -> Option<u16> {
    let can_bind = |p: u16| crate::host::local::port_free(addr, p);
    if !can_bind(port) {
        return Some(port);
    }
    match need {
        PortNeed::Plain => None,
        PortNeed::WithBus => match port.checked_add(CLUSTER_BUS_OFFSET) {
            Some(bus) => (!can_bind(bus)).then_some(bus),
            None => Some(port),
        },
    }
}

/// The lowest port of a node's range (`node`, on `addr`) whose ports (client, and bus
/// when needed) no shard in `reserved` holds and that is free on the node's address.
/// Shards started together are not listening yet, so only `reserved` keeps a new shard's
/// client port off a sibling's bus port. A node on another machine (`remote`) is probed
/// there when its shard starts ([`super::require_free_on`]): its address may not even
/// exist here.
pub fn pick_port(
    node: u64,
    addr: &str,
    range: RangeInclusive<u16>,
    remote: bool,
    reserved: &BTreeSet<u16>,
    need: PortNeed,
) -> Result<u16, ServerError> {
    range
        .clone()
        .filter(|&p| need.ports(p).all(|q| !reserved.contains(&q)))
        .find(|&p| remote || port_is_free(addr, p, need))
        .ok_or_else(|| ServerError::NoFreePort {
            node,
            range: format!("{}-{}", range.start(), range.end()),
        })
}

/// Checks a port the operator chose: taken is an error, never a silent substitution.
pub fn require_free(addr: &str, port: u16, need: PortNeed) -> Result<(), ServerError> {
    match port_in_use(addr, port, need) {
        None => Ok(()),
        Some(held) => Err(ServerError::PortTaken {
            addr: addr.to_string(),
            port,
            held,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_node_range_must_hold_shard_and_bus_ports() {
        assert_eq!(unusable_range(1024, 55535), None);
        assert_eq!(unusable_range(30000, 30999), None);
        assert_eq!(
            unusable_range(500, 1500).unwrap(),
            "port range `500-1500` starts below 1024 (privileged ports: system services', which only root may bind): give a range within 1024-55535"
        );
        assert_eq!(
            unusable_range(55000, 55536).unwrap(),
            "port range `55000-55536` ends above 55535: a sharded database's shards also listen on port + 10000, at most 65535, so give a range within 1024-55535"
        );
    }

    #[test]
    fn a_listening_port_is_not_free() {
        let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!port_is_free("127.0.0.1", port, PortNeed::Plain));
        drop(l);
        assert!(port_is_free("127.0.0.1", port, PortNeed::Plain));
    }

    #[test]
    fn a_taken_bus_port_is_named() {
        // A listener on some port P + 10000 whose P is free: bind P first to find one.
        let (bus, port) = loop {
            let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
            let p = l.local_addr().unwrap().port();
            if p > CLUSTER_BUS_OFFSET
                && port_is_free("127.0.0.1", p - CLUSTER_BUS_OFFSET, PortNeed::Plain)
            {
                break (l, p - CLUSTER_BUS_OFFSET);
            }
        };
        let held = bus.local_addr().unwrap().port();
        assert!(require_free("127.0.0.1", port, PortNeed::Plain).is_ok());
        let e = require_free("127.0.0.1", port, PortNeed::WithBus).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cluster bus port `{held}` (port `{port}` + 10000, which a sharded database's shard also listens on) on `127.0.0.1` is already in use")
        );
    }
}
