//! `node ...`: adding and removing nodes, setting and clearing a node's recovery path,
//! setting its server binary and its port range.

pub(super) mod remote;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    no_such_node, Command, CommandError, CommandSyntax, Context, Element, Match, Opt, ParseError,
    Render, Reply, Text, ValueKind,
};
use crate::ccs::{rules, Id, Node, NodeServer, PortRange};
use crate::host::SshTarget;
use crate::lang::quote;
use crate::server::RedisServer;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeCommand {
    /// `node add addr <ip> persistent_path <path> [port_range <lo>-<hi>] [rack_id <id>]
    /// [redis_server <path>] [ssh <[user@]host[:port]> [ssh_key <path>]]`
    Add {
        addr: IpAddr,
        persistent_path: PathBuf,
        port_range: Option<PortRange>,
        rack_id: Option<String>,
        redis_server: Option<PathBuf>,
        /// The node's machine over SSH; `None`: this machine. Its `key` is `ssh_key`.
        ssh: Option<SshTarget>,
    },
    /// `node <node> redis_server set <path>`
    SetRedisServer { node: Id, path: PathBuf },
    /// `node <node> port_range set <lo>-<hi>`
    SetPortRange { node: Id, range: PortRange },
    /// `node <node> remove`
    Remove { node: Id },
    /// `node <node> recovery_path set <path>`
    SetRecoveryPath { node: Id, path: PathBuf },
    /// `node <node> recovery_path clear`
    ClearRecoveryPath { node: Id },
}

pub static SYNTAX: &[CommandSyntax] = &[
    CommandSyntax {
        elements: &[
            Element::Keyword("node"),
            Element::Keyword("add"),
            Element::Options(&[
                Opt::required("addr", "ip", ValueKind::Ip),
                Opt::required("persistent_path", "path", ValueKind::Path),
                Opt::optional("port_range", "lo-hi", ValueKind::PortRange),
                Opt::optional("rack_id", "id", ValueKind::Word),
                Opt::optional("redis_server", "path", ValueKind::Path),
                Opt::optional("ssh", "[user@]host[:port]", ValueKind::SshTarget),
                Opt::optional("ssh_key", "path", ValueKind::Path),
            ]),
        ],
        summary: "add a node: a persistent path and a port range on an address (on another machine with `ssh`), and the server binary its shards run",
        examples: &[
            "node add addr 127.0.0.1 persistent_path /var/lib/lazarus/node2",
            "node add persistent_path /srv/n3 addr 127.0.0.1 port_range 12000-12999 rack_id r2",
            "node add addr 127.0.0.1 persistent_path /srv/n4 redis_server /opt/valkey/bin/valkey-server",
            "node add addr 10.0.0.12 persistent_path /var/lib/lazarus ssh ops@db2",
            "node add addr 10.0.0.13 persistent_path /srv/n5 ssh root@10.0.0.13:2222 ssh_key /root/.ssh/lazarus redis_server /usr/local/bin/redis-server",
        ],
        build: build_add,
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("node"),
            Element::Arg("node", ValueKind::Node),
            Element::Keyword("redis_server"),
            Element::Keyword("set"),
            Element::Arg("path", ValueKind::Path),
        ],
        summary: "set the redis-server or valkey-server binary a node's shards run (from their next start)",
        examples: &["node 2 redis_server set /opt/valkey/bin/valkey-server"],
        build: |m| {
            Ok(Command::Node(NodeCommand::SetRedisServer {
                node: m.req("node")?,
                path: m.req("path")?,
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("node"),
            Element::Arg("node", ValueKind::Node),
            Element::Keyword("port_range"),
            Element::Keyword("set"),
            Element::Arg("range", ValueKind::PortRange),
        ],
        summary: "set the ports a node hands its next shards (its shards keep theirs)",
        examples: &["node 1 port_range set 12000-12999", "node node:2 port_range set 13000-13099"],
        build: |m| {
            Ok(Command::Node(NodeCommand::SetPortRange {
                node: m.req("node")?,
                range: m.req("range")?,
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("node"),
            Element::Arg("node", ValueKind::Node),
            Element::Keyword("remove"),
        ],
        summary: "remove a node; a lost one's shards pending recovery go to the nodes left",
        examples: &["node 2 remove", "node node:3 remove"],
        build: |m| {
            Ok(Command::Node(NodeCommand::Remove {
                node: m.req("node")?,
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("node"),
            Element::Arg("node", ValueKind::Node),
            Element::Keyword("recovery_path"),
            Element::Keyword("set"),
            Element::Arg("path", ValueKind::Path),
        ],
        summary: "say where a node's old persistence files are, for recovery",
        examples: &[
            "node 1 recovery_path set /mnt/old-node1",
            "node node:2 recovery_path set \"/mnt/old disk\"",
        ],
        build: |m| {
            Ok(Command::Node(NodeCommand::SetRecoveryPath {
                node: m.req("node")?,
                path: m.req("path")?,
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("node"),
            Element::Arg("node", ValueKind::Node),
            Element::Keyword("recovery_path"),
            Element::Keyword("clear"),
        ],
        summary: "forget a node's recovery path, so no later recovery reads its old files",
        examples: &["node 1 recovery_path clear", "node node:2 recovery_path clear"],
        build: |m| {
            Ok(Command::Node(NodeCommand::ClearRecoveryPath {
                node: m.req("node")?,
            }))
        },
    },
];

fn build_add(m: &Match) -> Result<Command, ParseError> {
    let rack_id: Option<String> = m.opt("rack_id");
    let mut ssh: Option<SshTarget> = m.opt("ssh");
    let key: Option<PathBuf> = m.opt("ssh_key");
    match (&mut ssh, key) {
        (Some(target), key) => target.key = key,
        (None, Some(_)) => {
            return Err(ParseError::new(
                m.span.clone(),
                "`ssh_key` is the key for `ssh <[user@]host[:port]>`, which is missing".into(),
            ))
        }
        (None, None) => {}
    }
    Ok(Command::Node(NodeCommand::Add {
        addr: m.req("addr")?,
        persistent_path: m.req("persistent_path")?,
        port_range: m.opt("port_range"),
        rack_id,
        redis_server: m.opt("redis_server"),
        ssh,
    }))
}

impl NodeCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        match self {
            NodeCommand::Add {
                addr,
                persistent_path,
                port_range,
                rack_id,
                redis_server,
                ssh,
            } => {
                add(
                    ctx,
                    addr,
                    &persistent_path,
                    port_range,
                    rack_id,
                    redis_server.as_deref(),
                    ssh,
                )
                .await
            }
            NodeCommand::SetRedisServer { node, path } => set_redis_server(ctx, node, &path).await,
            NodeCommand::SetPortRange { node, range } => set_port_range(ctx, node, range).await,
            NodeCommand::Remove { node } => remove(ctx, node),
            NodeCommand::SetRecoveryPath { node, path } => {
                set_recovery_path(ctx, node, &path).await
            }
            NodeCommand::ClearRecoveryPath { node } => clear_recovery_path(ctx, node),
        }
    }
}

async fn add(
    ctx: &Context,
    addr: IpAddr,
    persistent_path: &Path,
    port_range: Option<PortRange>,
    rack_id: Option<String>,
    redis_server: Option<&Path>,
    mut ssh: Option<SshTarget>,
) -> Result<Reply, CommandError> {
    let persistent_path = rules::absolute("persistent path", persistent_path)?;
    // A remote node is checked there before anything is locked or stored: the host
    // answers with a known key, the path is usable, a server binary runs.
    let mut remote = None;
    let redis_server = match &mut ssh {
        Some(target) => {
            if let Some(key) = &target.key {
                target.key = Some(rules::absolute("ssh_key", key)?);
            }
            let host = remote::RemoteCheck::connect(target).await?;
            host.addr(addr).await?;
            host.persistent_path(&persistent_path).await?;
            let server = host.redis_server(redis_server).await?;
            remote = Some(host);
            Some(server)
        }
        None => redis_server.map(check_redis_server).transpose()?,
    };
    let (lock, mut cluster, created) = ctx.lock_or_default_cluster()?;
    let addr = addr.to_string();
    let port_range = rules::new_node_place(&cluster, &addr, &persistent_path, port_range)?;
    if ssh.is_none() {
        prepare_persistent_path(&persistent_path)?;
    }
    let id = cluster.allocate_id();
    // Ports the kernel may hand to outgoing connections: said, not refused.
    let warning = match &remote {
        Some(r) => rules::ephemeral_warning(r.host(), id, port_range).await,
        None => rules::ephemeral_warning(&crate::host::LocalHost, id, port_range).await,
    };
    let node = Node {
        id,
        addr,
        persistent_path,
        recovery_path: None,
        port_range,
        rack_id,
        redis_server,
        ssh,
    };
    cluster.nodes.insert(id, node.clone());
    if cluster.tls.is_some() {
        super::cluster::tls::refuse_without_tls(ctx, &cluster).await?;
    }
    if cluster.tls.is_some() {
        // The cluster's TLS shards need the material on every node: copied from this
        // machine's copy before the node is recorded.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let material =
            crate::tls::material_here(cluster.tls.as_ref(), cluster.local_persistent_paths(), now)
                .map_err(|e| {
                    CommandError::from(e).context("the cluster's TLS material for the new node")
                })?;
        let installed = match &node.ssh {
            Some(target) => {
                let host = crate::host::SshHost::new(target.clone())
                    .map_err(|e| CommandError::io(format!("ssh to `{target}`: {e}")))?;
                crate::tls::install_on(&host, &node.persistent_path, &material).await
            }
            None => crate::tls::install(&node.persistent_path, &material),
        };
        installed.map_err(|e| CommandError::from(e).context(format!("node:{id}")))?;
    }
    lock.save(&mut cluster)?;
    let added = NodeAdded {
        node: NodeView::from(&node),
        warnings: warning.iter().map(ToString::to_string).collect(),
    };
    Ok(Reply::of(&added)?.note(created))
}

/// Checks a node's server binary before it is recorded: an absolute path to a file that
/// runs and answers `--version` as redis-server or valkey-server.
pub fn check_redis_server(path: &Path) -> Result<NodeServer, CommandError> {
    let path = rules::absolute("redis_server", path)?;
    let server = RedisServer::at(&path).map_err(|e| {
        let message = format!("`redis_server` `{}`: {e}", path.display());
        match e {
            crate::server::ServerError::NotFound { .. } => CommandError::not_found(message),
            _ => CommandError::usage(message),
        }
    })?;
    Ok(NodeServer {
        path,
        engine: server.engine.to_string(),
        version: server.version,
    })
}

async fn set_redis_server(ctx: &Context, id: Id, path: &Path) -> Result<Reply, CommandError> {
    // The binary is checked where the node's shards run: on its own machine.
    let target = ctx.cluster()?.nodes.get(&id).and_then(|n| n.ssh.clone());
    let server = match &target {
        Some(target) => {
            remote::RemoteCheck::connect(target)
                .await?
                .redis_server(Some(path))
                .await?
        }
        None => check_redis_server(path)?,
    };
    let (lock, mut cluster) = ctx.lock_cluster()?;
    let Some(node) = cluster.nodes.get_mut(&id) else {
        return Err(no_such_node(&cluster, id));
    };
    node.redis_server = Some(server);
    let view = NodeView::from(&*node);
    if cluster.tls.is_some() {
        super::cluster::tls::refuse_without_tls(ctx, &cluster).await?;
    }
    lock.save(&mut cluster)?;
    Reply::of(&RedisServerSet(view))
}

/// Gives node `id` the port range `range`, refused as `node add` refuses a range (and
/// when it leaves out a port its old range gave one of its own shards, or holds one's bus
/// port). Only what later placements pick changes: no shard moves. A range in the node's
/// machine's ephemeral ports is warned of, as `node add` warns.
async fn set_port_range(ctx: &Context, id: Id, range: PortRange) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = ctx.lock_cluster()?;
    let Some(node) = cluster.nodes.get(&id) else {
        return Err(no_such_node(&cluster, id));
    };
    let was = node.port_range;
    rules::node_range(&cluster, Some(id), &node.addr.clone(), range)?;
    // Read on the node's machine; when it cannot be reached, nothing is said.
    let warning = match &node.ssh {
        Some(target) => match crate::host::SshHost::new(target.clone()) {
            Ok(host) => rules::ephemeral_warning(&host, id, range).await,
            Err(_) => None,
        },
        None => rules::ephemeral_warning(&crate::host::LocalHost, id, range).await,
    };
    let node = cluster.nodes.get_mut(&id).expect("checked above");
    node.port_range = range;
    let view = NodeView::from(&*node);
    if was != range {
        lock.save(&mut cluster)?;
    }
    Reply::of(&PortRangeSet {
        node: view,
        was: was.to_string(),
        warnings: warning.iter().map(ToString::to_string).collect(),
    })
}

/// `node <id> port_range set`: the node with its new range, and the one it had.
#[derive(Serialize)]
pub struct PortRangeSet {
    #[serde(flatten)]
    pub node: NodeView,
    /// `lo-hi`: the range before.
    pub was: String,
    /// The new range in the kernel's ephemeral ports, as `node add` warns of it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Render for PortRangeSet {
    fn render(&self, text: &mut Text) {
        text.line(format!(
            "node:{} hands out ports {} to its next shards (was {}); its shards keep their ports.",
            self.node.id, self.node.port_range, self.was
        ));
        for w in &self.warnings {
            text.line(format!("warning: {w}"));
        }
    }
}

/// `node <id> redis_server set`: the node with its new binary.
#[derive(Serialize)]
#[serde(transparent)]
pub struct RedisServerSet(pub NodeView);

impl Render for RedisServerSet {
    fn render(&self, text: &mut Text) {
        let server = self.0.redis_server.as_ref().expect("just set");
        text.line(format!(
            "node:{} runs its shards with {} from their next start.",
            self.0.id,
            server.describe()
        ));
    }
}

/// `node add`: the node added.
#[derive(Serialize)]
pub struct NodeAdded {
    #[serde(flatten)]
    pub node: NodeView,
    /// What deserves the operator's look though the node was added (its port range in
    /// the kernel's ephemeral ports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Render for NodeAdded {
    fn render(&self, text: &mut Text) {
        let node = &self.node;
        text.line(format!(
            "Added node:{} on {}{}, persistent path `{}`, ports {}{}.",
            node.id,
            node.addr,
            node.ssh
                .as_ref()
                .map(|t| format!(" (over ssh to `{t}`)"))
                .unwrap_or_default(),
            node.persistent_path.display(),
            node.port_range,
            node.redis_server
                .as_ref()
                .map(|s| format!(", engine {}", s.describe()))
                .unwrap_or_default()
        ));
        for w in &self.warnings {
            text.line(format!("warning: {w}"));
        }
    }
}

/// `node <id> remove`.
#[derive(Serialize)]
pub struct NodeRemoved {
    pub removed: Id,
    /// Its shards, placed on other nodes (a lost node's databases pending recovery).
    pub moved: Vec<crate::recovery::relocate::ShardMove>,
}

impl Render for NodeRemoved {
    fn render(&self, text: &mut Text) {
        text.line(format!("Removed node:{}.", self.removed));
        for m in &self.moved {
            text.line(format!(
                "redis:{} ({} of db:{} `{}`) now on node:{}, port {}{}",
                m.shard,
                m.role,
                m.db,
                m.db_name,
                m.to,
                m.port,
                match (m.role, m.beside_master) {
                    (crate::ccs::Role::Master, _) => {
                        ": recover takes its data from the freshest files of its own or its replicas' shard directories"
                    }
                    (_, true) => ": beside its master, as no other node is left",
                    (_, false) => "",
                }
            ));
        }
    }
}

/// `node <id> recovery_path set <path>`.
#[derive(Serialize)]
pub struct RecoveryPathSet {
    pub node: Id,
    pub recovery_path: PathBuf,
}

impl Render for RecoveryPathSet {
    fn render(&self, text: &mut Text) {
        text.line("Updated successfully.");
    }
}

/// `node <id> recovery_path clear`: what was forgotten.
#[derive(Serialize)]
pub struct RecoveryPathCleared {
    pub node: Id,
    /// The path the node had, if it had one.
    pub was: Option<PathBuf>,
}

impl Render for RecoveryPathCleared {
    fn render(&self, text: &mut Text) {
        text.line(match &self.was {
            Some(p) => format!(
                "node:{} no longer has a recovery path (was `{}`).",
                self.node,
                p.display()
            ),
            None => format!("node:{} had no recovery path.", self.node),
        });
    }
}

fn remove(ctx: &Context, id: Id) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = ctx.lock_cluster()?;
    if !cluster.nodes.contains_key(&id) {
        return Err(no_such_node(&cluster, id));
    }
    if id == cluster.local_node {
        return Err(CommandError::conflict(format!(
            "node:{id} is this machine's node and cannot be removed"
        )));
    }
    // A node whose machine is gone for good: its shards, all pending recovery, go to the
    // nodes left (refused, naming them, when a database still runs).
    let moved = crate::recovery::relocate::relocate(&mut cluster, id)?;
    cluster.nodes.remove(&id);
    lock.save(&mut cluster)?;
    Reply::of(&NodeRemoved { removed: id, moved })
}

async fn set_recovery_path(ctx: &Context, id: Id, path: &Path) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = ctx.lock_cluster()?;
    let Some(node) = cluster.nodes.get(&id) else {
        return Err(no_such_node(&cluster, id));
    };
    // The path is checked where the node's files are: on its own machine.
    let path = match &node.ssh {
        Some(target) => {
            let path = rules::absolute("recovery path", path)?;
            remote::RemoteCheck::connect(target)
                .await?
                .recovery_path(&path)
                .await?
        }
        None => rules::recovery_path(path)?,
    };
    rules::recovery_path_apart(&cluster, &path)?;
    // A local repository lies on this machine: only a local node's path can be one.
    if node.ssh.is_none() {
        if let Some(near) = crate::backup::repository_near(&cluster, &path) {
            return Err(rules::NodePlaceError::RecoveryPathRepository {
                path,
                how: near.how,
                what: near.what,
                repository: near.repository,
            }
            .into());
        }
    }
    let node = cluster.nodes.get_mut(&id).expect("checked above");
    node.recovery_path = Some(path.clone());
    lock.save(&mut cluster)?;
    Reply::of(&RecoveryPathSet {
        node: id,
        recovery_path: path,
    })
}

fn clear_recovery_path(ctx: &Context, id: Id) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = ctx.lock_cluster()?;
    let Some(node) = cluster.nodes.get_mut(&id) else {
        return Err(no_such_node(&cluster, id));
    };
    let was = node.recovery_path.take();
    if was.is_some() {
        lock.save(&mut cluster)?;
    }
    Reply::of(&RecoveryPathCleared { node: id, was })
}

/// A node as every reply shows it (`node add`, `info cluster`, `info node`, `cluster
/// recover`): one shape everywhere.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub id: Id,
    pub addr: String,
    pub persistent_path: PathBuf,
    pub recovery_path: Option<PathBuf>,
    /// `lo-hi`.
    pub port_range: String,
    pub rack_id: Option<String>,
    /// The node's own server binary, engine and version; `None`: the cluster's.
    pub redis_server: Option<NodeServer>,
    /// `[user@]host[:port]` of a node on another machine; absent: this machine.
    pub ssh: Option<String>,
}

impl From<&Node> for NodeView {
    fn from(node: &Node) -> NodeView {
        NodeView {
            id: node.id,
            addr: node.addr.clone(),
            persistent_path: node.persistent_path.clone(),
            recovery_path: node.recovery_path.clone(),
            port_range: node.port_range.to_string(),
            rack_id: node.rack_id.clone(),
            redis_server: node.redis_server.clone(),
            ssh: node.ssh.as_ref().map(|t| t.to_string()),
        }
    }
}

/// Creates a persistent path (and parents) before it is recorded, so a bad path fails the
/// command instead of the next write.
pub fn prepare_persistent_path(path: &Path) -> Result<(), CommandError> {
    std::fs::create_dir_all(path).map_err(|e| {
        CommandError::io(format!(
            "persistent path `{}` cannot be created: {e}",
            path.display()
        ))
    })
}

impl fmt::Display for NodeCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeCommand::Add {
                addr,
                persistent_path,
                port_range,
                rack_id,
                redis_server,
                ssh,
            } => {
                write!(
                    f,
                    "node add addr {addr} persistent_path {}",
                    quote(&persistent_path.to_string_lossy())
                )?;
                if let Some(range) = port_range {
                    write!(f, " port_range {range}")?;
                }
                if let Some(rack) = rack_id {
                    write!(f, " rack_id {}", quote(rack))?;
                }
                if let Some(path) = redis_server {
                    write!(f, " redis_server {}", quote(&path.to_string_lossy()))?;
                }
                if let Some(target) = ssh {
                    write!(f, " ssh {}", quote(&target.to_string()))?;
                    if let Some(key) = &target.key {
                        write!(f, " ssh_key {}", quote(&key.to_string_lossy()))?;
                    }
                }
                Ok(())
            }
            NodeCommand::SetRedisServer { node, path } => write!(
                f,
                "node {node} redis_server set {}",
                quote(&path.to_string_lossy())
            ),
            NodeCommand::SetPortRange { node, range } => {
                write!(f, "node {node} port_range set {range}")
            }
            NodeCommand::Remove { node } => write!(f, "node {node} remove"),
            NodeCommand::SetRecoveryPath { node, path } => write!(
                f,
                "node {node} recovery_path set {}",
                quote(&path.to_string_lossy())
            ),
            NodeCommand::ClearRecoveryPath { node } => {
                write!(f, "node {node} recovery_path clear")
            }
        }
    }
}
