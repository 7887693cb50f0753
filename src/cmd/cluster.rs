//! `cluster ...`: making a cluster (`cluster create`) or bringing one back (`cluster
//! recover`, in [`recover`]).

pub mod recover;
pub mod tls;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::{
    Command, CommandError, CommandSyntax, Context, Element, Match, Opt, ParseError, Render, Reply,
    Text, ValueKind,
};
use crate::ccs::{default_local_cluster, store::random_cluster_id, Cluster, Id};
use crate::lang::quote;
use crate::tls::MaterialPaths;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterCommand {
    /// `cluster create name <name> [cluster_id <id>] [persistent_path <path>] [addr <ip>]
    /// [cacert <path> cert <path> key <path>] [redis_server <path>]`
    Create {
        name: String,
        cluster_id: Option<u64>,
        persistent_path: Option<PathBuf>,
        addr: Option<IpAddr>,
        tls: Option<MaterialPaths>,
        redis_server: Option<PathBuf>,
    },
    /// `cluster recover filename <path> ...` / `cluster recover cluster_id <id> ...`, with
    /// the cluster's TLS material when the old one is not to be used
    Recover(
        crate::recovery::rebuild::RecoverRequest,
        Option<MaterialPaths>,
    ),
    /// `cluster tls set cacert <path> cert <path> key <path> [tls_verify on|off]`
    TlsSet(tls::TlsSet),
}

pub static SYNTAX: &[CommandSyntax] = &[CommandSyntax {
    elements: &[
        Element::Keyword("cluster"),
        Element::Keyword("create"),
        Element::Options(&[
            Opt::required("name", "name", ValueKind::ClusterName),
            Opt::optional("cluster_id", "id", ValueKind::Integer),
            Opt::optional("persistent_path", "path", ValueKind::Path),
            Opt::optional("addr", "ip", ValueKind::Ip),
            Opt::optional("cacert", "path", ValueKind::Path),
            Opt::optional("cert", "path", ValueKind::Path),
            Opt::optional("key", "path", ValueKind::Path),
            Opt::optional("redis_server", "path", ValueKind::Path),
        ]),
    ],
    summary: "create a cluster whose node:1 is this machine",
    examples: &[
        "cluster create name prod",
        "cluster create name prod redis_server /opt/valkey/bin/valkey-server",
        "cluster create name prod cluster_id 42 persistent_path /var/lib/lazarus/node1 addr 127.0.0.1",
        "cluster create name prod cacert /etc/lazarus/ca.crt cert /etc/lazarus/redis.crt key /etc/lazarus/redis.key",
    ],
    build: build_create,
},
    recover::FROM_BACKUP,
    recover::FROM_IDENTITIES,
    tls::SET,
];

fn build_create(m: &Match) -> Result<Command, ParseError> {
    let name: String = m.req("name")?;
    let cluster_id = m.opt("cluster_id");
    if cluster_id == Some(0) {
        return Err(ParseError::new(
            m.span_of("cluster_id"),
            "`cluster_id` must not be 0".into(),
        ));
    }
    Ok(Command::Cluster(ClusterCommand::Create {
        name,
        cluster_id,
        persistent_path: m.opt("persistent_path"),
        addr: m.opt("addr"),
        tls: tls::material_opts(m)?,
        redis_server: m.opt("redis_server"),
    }))
}

impl ClusterCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        match self {
            ClusterCommand::Create {
                name,
                cluster_id,
                persistent_path,
                addr,
                tls,
                redis_server,
            } => {
                create(
                    ctx,
                    name,
                    cluster_id,
                    persistent_path,
                    addr,
                    tls,
                    redis_server,
                )
                .await
            }
            ClusterCommand::Recover(req, tls) => recover::apply(ctx, &req, tls.as_ref()).await,
            ClusterCommand::TlsSet(req) => tls::apply(ctx, req).await,
        }
    }
}

async fn create(
    ctx: &Context,
    name: String,
    cluster_id: Option<u64>,
    persistent_path: Option<PathBuf>,
    addr: Option<IpAddr>,
    tls_paths: Option<MaterialPaths>,
    redis_server: Option<PathBuf>,
) -> Result<Reply, CommandError> {
    let redis_server = redis_server
        .as_deref()
        .map(super::node::check_redis_server)
        .transpose()?;
    let lock = ctx.store.lock()?;
    if let Some(existing) = lock.load()? {
        return Err(CommandError::conflict(format!(
            "a cluster already exists in `{}`: `{}` (cluster_id {}); use another `--home` to make a new one",
            ctx.store.home().display(),
            existing.name,
            existing.cluster_id
        ))
        .hinted("use another `--home` to make a new one"));
    }
    let mut cluster: Cluster = default_local_cluster(ctx.store.home());
    cluster.name = name;
    cluster.cluster_id = cluster_id.unwrap_or_else(random_cluster_id);
    let node = cluster
        .nodes
        .get_mut(&cluster.local_node)
        .expect("the default cluster has its local node");
    if let Some(path) = persistent_path {
        node.persistent_path = crate::ccs::rules::absolute("persistent path", &path)?;
    }
    if let Some(addr) = addr {
        node.addr = addr.to_string();
    }
    node.redis_server = redis_server;
    let node = node.clone();
    // The material and the node's binary are checked before anything is written.
    let material = match &tls_paths {
        Some(paths) => {
            let material = tls::checked(paths, None)?;
            tls::refuse_without_tls(ctx, &cluster).await?;
            Some(material)
        }
        None => None,
    };
    super::node::prepare_persistent_path(&node.persistent_path)?;
    if let Some(material) = material {
        // A new cluster's one node is this machine.
        crate::tls::install(&node.persistent_path, &material)
            .map_err(|e| CommandError::from(e).context(format!("node:{}", node.id)))?;
        cluster.tls = Some(material.record);
    }
    // The range was chosen by default: one the kernel may hand to outgoing connections
    // is said, not refused.
    let warning =
        crate::ccs::rules::ephemeral_warning(&crate::host::LocalHost, node.id, node.port_range)
            .await;
    lock.save(&mut cluster)?;
    Reply::of(&ClusterCreated {
        name: cluster.name.clone(),
        cluster_id: cluster.cluster_id,
        node: node.id,
        addr: node.addr,
        persistent_path: node.persistent_path,
        tls_material: cluster.tls.as_ref().map(|t| t.material_id()),
        redis_server: node.redis_server,
        warnings: warning.iter().map(ToString::to_string).collect(),
    })
}

/// `cluster create`: the cluster and its first node.
#[derive(Serialize)]
pub struct ClusterCreated {
    pub name: String,
    #[serde(with = "crate::ccs::model::cluster_id_text")]
    pub cluster_id: u64,
    pub node: Id,
    pub addr: String,
    pub persistent_path: PathBuf,
    /// The TLS material installed (`cacert`/`cert`/`key` given), by id.
    pub tls_material: Option<String>,
    pub redis_server: Option<crate::ccs::NodeServer>,
    /// What deserves the operator's look though the cluster was made (its node's port
    /// range in the kernel's ephemeral ports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Render for ClusterCreated {
    fn render(&self, text: &mut Text) {
        text.line(format!(
            "Created cluster `{}` (cluster_id {}): node:{} on {}, persistent path `{}`{}.",
            self.name,
            self.cluster_id,
            self.node,
            self.addr,
            self.persistent_path.display(),
            self.redis_server
                .as_ref()
                .map(|s| format!(", engine {}", s.describe()))
                .unwrap_or_default()
        ));
        if let Some(id) = &self.tls_material {
            text.line(format!(
                "TLS material {id} installed: new databases speak TLS only."
            ));
        }
        for w in &self.warnings {
            text.line(format!("warning: {w}"));
        }
    }
}

impl fmt::Display for ClusterCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterCommand::Create {
                name,
                cluster_id,
                persistent_path,
                addr,
                tls: tls_paths,
                redis_server,
            } => {
                write!(f, "cluster create name {}", quote(name))?;
                if let Some(id) = cluster_id {
                    write!(f, " cluster_id {id}")?;
                }
                if let Some(path) = persistent_path {
                    write!(f, " persistent_path {}", quote(&path.to_string_lossy()))?;
                }
                if let Some(addr) = addr {
                    write!(f, " addr {addr}")?;
                }
                if let Some(path) = redis_server {
                    write!(f, " redis_server {}", quote(&path.to_string_lossy()))?;
                }
                if let Some(paths) = tls_paths {
                    tls::fmt_material(paths, f)?;
                }
                Ok(())
            }
            ClusterCommand::Recover(req, tls_paths) => {
                recover::fmt(req, f)?;
                if let Some(paths) = tls_paths {
                    tls::fmt_material(paths, f)?;
                }
                Ok(())
            }
            ClusterCommand::TlsSet(req) => tls::fmt(req, f),
        }
    }
}
