//! `info ...`: the stored configuration of the cluster and of a node.

use std::fmt;

use std::path::PathBuf;

use serde::Serialize;

use super::node::NodeView;
use super::{
    no_such_node, Command, CommandError, CommandSyntax, Context, Element, Render, Reply, Table,
    Text, ValueKind,
};
use crate::ccs::{Cluster, Id, Node};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InfoCommand {
    Cluster,
    Node(Id),
}

pub static SYNTAX: &[CommandSyntax] = &[
    CommandSyntax {
        elements: &[Element::Keyword("info"), Element::Keyword("cluster")],
        summary: "show the cluster's stored configuration and its nodes",
        examples: &["info cluster", "INFO Cluster"],
        build: |_| Ok(Command::Info(InfoCommand::Cluster)),
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("info"),
            Element::Keyword("node"),
            Element::Arg("node", ValueKind::Node),
        ],
        summary: "show a node's stored configuration",
        examples: &["info node 1", "info node node:2"],
        build: |m| Ok(Command::Info(InfoCommand::Node(m.req("node")?))),
    },
];

const NA: &str = "N/A";

impl InfoCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        let cluster = ctx.cluster()?;
        match self {
            InfoCommand::Cluster => Reply::of(&ClusterInfo::new(&cluster, ctx.store.ccs_path())),
            InfoCommand::Node(id) => {
                let node = cluster
                    .nodes
                    .get(&id)
                    .ok_or_else(|| no_such_node(&cluster, id))?;
                Reply::of(&NodeInfo::new(&cluster, node))
            }
        }
    }
}

/// `info cluster`: the stored configuration.
#[derive(Serialize)]
pub struct ClusterInfo {
    pub name: String,
    #[serde(with = "crate::ccs::model::cluster_id_text")]
    pub cluster_id: u64,
    pub alloc_id: Id,
    pub generation: u64,
    pub local_node: Id,
    pub redis_server: Option<PathBuf>,
    pub ccs: PathBuf,
    pub nodes: Vec<NodeView>,
    pub databases: Vec<Id>,
    /// The cluster's TLS material (`cluster tls set`), by fingerprint.
    pub tls: Option<TlsView>,
}

/// `info cluster`'s view of the TLS material: never a file's contents.
#[derive(Serialize)]
pub struct TlsView {
    pub material_id: String,
    pub cacert: PathBuf,
    pub cacert_sha256: String,
    pub cert: PathBuf,
    pub cert_sha256: String,
    pub cert_not_after: String,
    /// The certificate expires within 30 days.
    pub expires_soon: bool,
    /// `false`: the operator wrote `tls_verify off`.
    pub verify: bool,
}

impl TlsView {
    fn new(tls: &crate::ccs::TlsConfig) -> TlsView {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        TlsView {
            material_id: tls.material_id(),
            cacert: tls.cacert.source.clone(),
            cacert_sha256: tls.cacert.sha256.clone(),
            cert: tls.cert.source.clone(),
            cert_sha256: tls.cert.sha256.clone(),
            cert_not_after: crate::tls::utc(tls.cert_not_after),
            expires_soon: tls.cert_not_after - now < 30 * 86_400,
            verify: tls.verify,
        }
    }
}

impl ClusterInfo {
    pub fn new(cluster: &Cluster, ccs: PathBuf) -> ClusterInfo {
        ClusterInfo {
            name: cluster.name.clone(),
            cluster_id: cluster.cluster_id,
            alloc_id: cluster.alloc_id,
            generation: cluster.generation,
            local_node: cluster.local_node,
            redis_server: cluster.redis_server.clone(),
            ccs,
            nodes: cluster.nodes.values().map(NodeView::from).collect(),
            databases: cluster.databases.keys().copied().collect(),
            tls: cluster.tls.as_ref().map(TlsView::new),
        }
    }
}

fn tls_summary(t: &TlsView) -> String {
    let mut s = format!(
        "material {}, certificate valid until {}",
        t.material_id, t.cert_not_after
    );
    if t.expires_soon {
        s.push_str(" (expires within 30 days)");
    }
    if !t.verify {
        s.push_str(", tls_verify off");
    }
    s
}

impl Render for ClusterInfo {
    fn render(&self, text: &mut Text) {
        let fields = Table::fields([
            ("name", self.name.clone()),
            ("cluster_id", self.cluster_id.to_string()),
            ("alloc_id", self.alloc_id.to_string()),
            ("generation", self.generation.to_string()),
            ("local node", format!("node:{}", self.local_node)),
            ("nodes", self.nodes.len().to_string()),
            ("databases", self.databases.len().to_string()),
            (
                "redis-server",
                self.redis_server
                    .as_ref()
                    .map_or("PATH".to_string(), |p| p.display().to_string()),
            ),
            ("ccs", self.ccs.display().to_string()),
            (
                "tls",
                self.tls.as_ref().map_or("none".to_string(), tls_summary),
            ),
        ])
        .titled("CLUSTER");
        let mut nodes = Table::new([
            "node",
            "addr",
            "persistent path",
            "recovery path",
            "ports",
            "rack",
        ])
        .titled("NODES");
        for node in &self.nodes {
            nodes.row([
                format!("node:{}", node.id),
                node.addr.clone(),
                node.persistent_path.display().to_string(),
                or_na(node.recovery_path.as_ref().map(|p| p.display().to_string())),
                node.port_range.clone(),
                or_na(node.rack_id.clone()),
            ]);
        }
        text.table(fields).table(nodes);
    }
}

/// `info node <id>`: the node, and how many shards it holds.
#[derive(Serialize)]
pub struct NodeInfo {
    #[serde(flatten)]
    pub node: NodeView,
    pub shards: usize,
}

impl NodeInfo {
    pub fn new(cluster: &Cluster, node: &Node) -> NodeInfo {
        let shards = cluster
            .databases
            .values()
            .flat_map(|db| &db.shards)
            .filter(|s| s.node == node.id)
            .count();
        NodeInfo {
            node: NodeView::from(node),
            shards,
        }
    }
}

impl Render for NodeInfo {
    fn render(&self, text: &mut Text) {
        let node = &self.node;
        let table = Table::fields([
            ("node", format!("node:{}", node.id)),
            ("addr", node.addr.clone()),
            (
                "persistent path",
                node.persistent_path.display().to_string(),
            ),
            (
                "recovery path",
                or_na(node.recovery_path.as_ref().map(|p| p.display().to_string())),
            ),
            ("port range", node.port_range.clone()),
            ("rack id", or_na(node.rack_id.clone())),
            (
                "redis-server",
                node.redis_server
                    .as_ref()
                    .map_or("the cluster's".to_string(), |s| s.describe()),
            ),
            ("shards", self.shards.to_string()),
        ])
        .titled(format!("NODE:{}", node.id));
        text.table(table);
    }
}

fn or_na(value: Option<String>) -> String {
    value.unwrap_or_else(|| NA.to_string())
}

impl fmt::Display for InfoCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoCommand::Cluster => f.write_str("info cluster"),
            InfoCommand::Node(id) => write!(f, "info node {id}"),
        }
    }
}
