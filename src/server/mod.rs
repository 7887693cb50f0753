//! Running real `redis-server` shards: the binary, shard configuration, processes, ports,
//! Redis Cluster formation, replication and the INFO figures `status` shows.
//!
//! Everything here talks to real processes; nothing is simulated. The database
//! layers above build on these pieces; they give plain values (addresses, ports, a
//! shard's [`ShardConf`]), never the cluster configuration itself.

mod binary;
mod client;
mod cluster;
mod conf;
mod ports;
mod process;
pub mod shard_dir;
mod stream;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use binary::parse_version;
pub use binary::{without_tls, NodeBinary, RedisServer, Servers};
pub use client::{
    connect, connection_info, info, probe, probe_kept, tls_handshakes, ClusterAsk, Info,
    KeptConnections, ShardAddr, ShardProbe, TlsHandshakes, Transport,
};
pub use cluster::{
    even_slots, follow, form_cluster, give_back_slots, parse_nodes, replicate, save_snapshot,
    serving, set_persistence, wait_in_sync, ClusterMember, MemberRole, NodeLine, SlotRange,
    Undecided, SLOT_COUNT,
};
pub use conf::{
    listening_port, render_conf, ConfOptions, Persistence, ShardConf, Upstream,
    CLUSTER_NODE_TIMEOUT_MS,
};
pub use ports::{
    pick_port, port_in_use, port_is_free, require_free, unusable_port, unusable_range, PortNeed,
    CLUSTER_BUS_OFFSET, MAX_BUS_SHARD_PORT, MIN_SHARD_PORT,
};
pub use process::{
    is_running, log_tail, log_tail_on, read_pid, read_pid_on, require_free_on, shard_pid,
    shard_pid_on, start_shard, stop_pid, stop_pid_on, stop_shard, stop_shard_on, ShardStart,
    StartOptions, LOG_FILE, PID_FILE,
};
pub use shard_dir::{IdentityRead, SetAside, ShardDir};
pub(crate) use stream::{connect_stream, Stream};

/// How long a shard may take to start answering when nothing says otherwise.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "`redis-server` not found ({tried}): install it with `apt-get install redis-server` \
         or give its path with `--redis-server <path>`"
    )]
    NotFound { tried: String },
    #[error("cannot read the version of `{path}`: {reason}")]
    Version { path: PathBuf, reason: String },
    #[error("node:{node}'s `redis_server` `{path}` no longer runs ({reason}): set it again with `node {node} redis_server set <path>`, or override it with `--redis-server <path>`")]
    NodeBinary {
        node: u64,
        path: PathBuf,
        reason: String,
    },
    #[error("`{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} on `{addr}` is already in use", taken_port(*.port, *.held))]
    PortTaken {
        addr: String,
        port: u16,
        /// The port found in use: `port`, or its cluster bus port.
        held: u16,
    },
    #[error("no free port left in range `{range}` on node:{node}")]
    NoFreePort { node: u64, range: String },
    #[error("shard redis:{shard} failed to start: {reason}{}", tail_suffix(.log_tail))]
    StartFailed {
        shard: u64,
        reason: String,
        log_tail: String,
    },
    /// The port was free at the probe and taken by someone else before the server bound
    /// it: a caller that picked the port itself may pick another and try again.
    #[error("shard redis:{shard} failed to start: port `{port}` (or its bus port) was taken after the probe: `Address already in use`{}", tail_suffix(.log_tail))]
    PortLost {
        shard: u64,
        port: u16,
        log_tail: String,
    },
    #[error("`{addr}`: {reason}")]
    Redis { addr: String, reason: String },
    /// A TLS shard that would not hold a TLS conversation: its handshake failed (it
    /// refused Lazarus's certificate, Lazarus refused its, it does not speak TLS) or it
    /// closed the session at the first request; or Lazarus has no material to speak TLS
    /// with. Typed apart from [`ServerError::Redis`] so `status` says `TLS REFUSED`,
    /// not `DOWN`.
    #[error("`{addr}`: {reason}")]
    TlsRefused { addr: String, reason: String },
    #[error("timed out after {}s waiting for {what}", .after.as_secs_f32())]
    Timeout { what: String, after: Duration },
    /// A server told to stop that could not save its data (a full or read-only disk): it
    /// refuses to exit and keeps serving with the writes since its last save, which
    /// killing it would lose.
    #[error("the server in `{}` (pid {pid}) refuses to stop: it could not save its data, and keeps running with it; it was not killed, which would lose every write since its last save: free space on its disk or make it writable, then run this again (or, to give those writes up, `redis-cli ... SHUTDOWN NOSAVE` first){}", .dir.display(), tail_suffix(.log_tail))]
    ShutdownRefused {
        pid: u32,
        dir: std::path::PathBuf,
        log_tail: String,
    },
    /// A replica that took none of the full syncs its master sent it during a wait (it
    /// asks again after each it fails to load or store): why is in its log.
    #[error(
        "replica `{replica}` refuses what its master `{master}` sends: {syncs} full syncs in {}s and its link is still not up",
        .after.as_secs()
    )]
    SyncRefused {
        replica: String,
        master: String,
        syncs: u64,
        after: Duration,
    },
    /// A wait for replicas to sync that timed out, with the last lines of the log of
    /// each shard whose link was still not up (why it was not is there: a master's RDB
    /// it cannot load, a refused password, ...).
    #[error("{cause}{}", sync_logs(.logs))]
    NotInSync {
        cause: Box<ServerError>,
        /// (shard, its log's last lines).
        logs: Vec<(u64, String)>,
    },
    #[error("redis cluster: {0}")]
    Cluster(String),
    /// Binaries that cannot run TLS shards, for a TLS database or TLS material
    /// ([`Servers::refuse_without_tls`]); nothing was changed.
    #[error(
        "TLS shards need a server built with TLS: {}; nothing was changed",
        .refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    WithoutTls {
        refused: Vec<NoTlsBuild>,
        /// They are `--redis-server`'s binary, not the nodes' own.
        overridden: bool,
    },
}

/// A node whose server binary is built without TLS, and what the binary said.
#[derive(Clone, Debug)]
pub struct NoTlsBuild {
    pub node: u64,
    pub path: PathBuf,
    /// `valkey 8.1.1`.
    pub label: String,
    pub why: String,
}

impl std::fmt::Display for NoTlsBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node:{} runs `{}` ({}), built without TLS: `{}`",
            self.node,
            self.path.display(),
            self.label,
            self.why
        )
    }
}

/// Names the port found taken: the client port, or a cluster shard's bus port, which the
/// operator did not type and would not think of.
pub fn taken_port(port: u16, held: u16) -> String {
    if port == held {
        format!("port `{port}`")
    } else {
        format!("cluster bus port `{held}` (port `{port}` + 10000, which a sharded database's shard also listens on)")
    }
}

impl crate::error::DomainError for ServerError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            ServerError::Io { .. } => ErrorKind::Io,
            ServerError::PortTaken { .. }
            | ServerError::NoFreePort { .. }
            | ServerError::WithoutTls { .. } => ErrorKind::Conflict,
            ServerError::NotFound { .. }
            | ServerError::Version { .. }
            | ServerError::NodeBinary { .. }
            | ServerError::StartFailed { .. }
            | ServerError::PortLost { .. }
            | ServerError::Redis { .. }
            | ServerError::TlsRefused { .. }
            | ServerError::Timeout { .. }
            | ServerError::ShutdownRefused { .. }
            | ServerError::SyncRefused { .. }
            | ServerError::NotInSync { .. }
            | ServerError::Cluster(_) => ErrorKind::Unavailable,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            ServerError::NotFound { .. } => vec![
                "install it with `apt-get install redis-server`".into(),
                "give its path with `--redis-server <path>`".into(),
            ],
            ServerError::WithoutTls {
                overridden: true, ..
            } => vec![
                "give `--redis-server` a TLS build, or leave it out to run the nodes' own binaries"
                    .into(),
            ],
            ServerError::WithoutTls { refused, .. } => refused
                .first()
                .map(|r| {
                    format!(
                        "give the node a TLS build (`node {} redis_server set <path>`)",
                        r.node
                    )
                })
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn sync_logs(logs: &[(u64, String)]) -> String {
    logs.iter()
        .map(|(shard, tail)| {
            format!(
                "\nlast lines of the log of redis:{shard}, not in sync:\n{}",
                tail.trim_end()
            )
        })
        .collect()
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\nlast lines of its log:\n{}", tail.trim_end())
    }
}

impl ServerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ServerError::Io {
            path: path.into(),
            source,
        }
    }
}
