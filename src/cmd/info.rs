//! `info ...`: the stored configuration of the cluster and of a node.

use std::fmt;

use serde_json::json;

use super::node::node_json;
use super::{
    no_such_node, Command, CommandError, CommandSyntax, Context, Element, Reply, Table, ValueKind,
};
use crate::ccs::Id;

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
            InfoCommand::Cluster => {
                let fields = Table::fields([
                    ("name", cluster.name.clone()),
                    ("cluster_id", cluster.cluster_id.to_string()),
                    ("alloc_id", cluster.alloc_id.to_string()),
                    ("generation", cluster.generation.to_string()),
                    ("local node", format!("node:{}", cluster.local_node)),
                    ("nodes", cluster.nodes.len().to_string()),
                    ("databases", cluster.databases.len().to_string()),
                    (
                        "redis-server",
                        cluster
                            .redis_server
                            .as_ref()
                            .map_or("PATH".to_string(), |p| p.display().to_string()),
                    ),
                    ("ccs", ctx.store.ccs_path().display().to_string()),
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
                for node in cluster.nodes.values() {
                    nodes.row([
                        format!("node:{}", node.id),
                        node.addr.clone(),
                        node.persistent_path.display().to_string(),
                        node.recovery_path
                            .as_ref()
                            .map_or(NA.to_string(), |p| p.display().to_string()),
                        node.port_range.to_string(),
                        node.rack_id.clone().unwrap_or_else(|| NA.to_string()),
                    ]);
                }
                let data = json!({
                    "name": cluster.name,
                    "cluster_id": cluster.cluster_id,
                    "alloc_id": cluster.alloc_id,
                    "generation": cluster.generation,
                    "local_node": cluster.local_node,
                    "redis_server": cluster.redis_server,
                    "ccs": ctx.store.ccs_path(),
                    "nodes": cluster.nodes.values().map(node_json).collect::<Vec<_>>(),
                    "databases": cluster.databases.keys().collect::<Vec<_>>(),
                });
                Ok(Reply::new().table(fields).table(nodes).data(data))
            }
            InfoCommand::Node(id) => {
                let node = cluster
                    .nodes
                    .get(&id)
                    .ok_or_else(|| no_such_node(&cluster, id))?;
                let shards = cluster
                    .databases
                    .values()
                    .flat_map(|db| &db.shards)
                    .filter(|s| s.node == id)
                    .count();
                let table = Table::fields([
                    ("node", format!("node:{}", node.id)),
                    ("addr", node.addr.clone()),
                    (
                        "persistent path",
                        node.persistent_path.display().to_string(),
                    ),
                    (
                        "recovery path",
                        node.recovery_path
                            .as_ref()
                            .map_or(NA.to_string(), |p| p.display().to_string()),
                    ),
                    ("port range", node.port_range.to_string()),
                    (
                        "rack id",
                        node.rack_id.clone().unwrap_or_else(|| NA.to_string()),
                    ),
                    ("shards", shards.to_string()),
                ])
                .titled(format!("NODE:{id}"));
                let mut data = node_json(node);
                data["shards"] = json!(shards);
                Ok(Reply::new().table(table).data(data))
            }
        }
    }
}

impl fmt::Display for InfoCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoCommand::Cluster => f.write_str("info cluster"),
            InfoCommand::Node(id) => write!(f, "info node {id}"),
        }
    }
}
