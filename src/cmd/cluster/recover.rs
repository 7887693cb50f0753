//! `cluster recover ...`: the cluster configuration brought back from a CCS backup or from
//! the shard identity files on the old disks (see [`crate::recovery::rebuild`]).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::super::node::NodeView;
use super::super::{
    Command, CommandError, CommandSyntax, Context, Element, Match, Opt, ParseError, Render, Reply,
    Table, Text, ValueKind,
};
use super::ClusterCommand;
use crate::ccs::{DbState, Id, Persistence};
use crate::lang::quote;
use crate::recovery::rebuild::{
    self, FromBackup, FromIdentities, IdSighting, LeftOut, LostShard, Rebuilt, RecoverRequest,
};
use crate::tls::MaterialPaths;

pub(super) const FROM_BACKUP: CommandSyntax = CommandSyntax {
    elements: &[
        Element::Keyword("cluster"),
        Element::Keyword("recover"),
        Element::Keyword("filename"),
        Element::Arg("filename", ValueKind::Path),
        Element::Options(&[
            Opt::optional("node_uid", "node", ValueKind::Node),
            Opt::optional("persistent_path", "path", ValueKind::Path),
            Opt::optional("addr", "ip", ValueKind::Ip),
            Opt::optional("cluster_id", "id", ValueKind::Integer),
            Opt::optional("alloc_id", "n", ValueKind::Integer),
            Opt::optional("cacert", "path", ValueKind::Path),
            Opt::optional("cert", "path", ValueKind::Path),
            Opt::optional("key", "path", ValueKind::Path),
            Opt::optional("redis_server", "path", ValueKind::Path),
        ]),
    ],
    summary: "bring the configuration back from a node's CCS backup, databases pending recovery",
    examples: &[
        "cluster recover filename /mnt/old-node1/ccs/ccs.json",
        "cluster recover filename /mnt/old-node1/ccs/ccs.json node_uid 1 persistent_path /var/lib/lazarus/node1 addr 127.0.0.1 alloc_id 500",
        "cluster recover filename \"/mnt/old disk/ccs\" cluster_id 42 node_uid node:2",
        "cluster recover filename /mnt/old-node1/ccs cacert /etc/lazarus/ca.crt cert /etc/lazarus/redis.crt key /etc/lazarus/redis.key",
        "cluster recover filename /mnt/old-node1/ccs redis_server /opt/valkey/bin/valkey-server",
        "cluster recover filename ssh://ops@db2/var/lib/lazarus/ccs node_uid 1",
    ],
    build: build_from_backup,
};

pub(super) const FROM_IDENTITIES: CommandSyntax = CommandSyntax {
    elements: &[
        Element::Keyword("cluster"),
        Element::Keyword("recover"),
        Element::Keyword("cluster_id"),
        Element::Arg("cluster_id", ValueKind::Integer),
        Element::Options(&[
            Opt::required("recovery_path", "path", ValueKind::Path).repeated(),
            Opt::optional("node_uid", "node", ValueKind::Node),
            Opt::optional("persistent_path", "path", ValueKind::Path),
            Opt::optional("addr", "ip", ValueKind::Ip),
            Opt::optional("name", "name", ValueKind::ClusterName),
            Opt::optional("alloc_id", "n", ValueKind::Integer),
            Opt::optional("cacert", "path", ValueKind::Path),
            Opt::optional("cert", "path", ValueKind::Path),
            Opt::optional("key", "path", ValueKind::Path),
            Opt::optional("redis_server", "path", ValueKind::Path),
        ]),
    ],
    summary: "no backup left: rebuild the configuration from the shard identity files",
    examples: &[
        "cluster recover cluster_id 42 recovery_path /mnt/old-node1 /mnt/old-node2",
        "cluster recover cluster_id 42 recovery_path /mnt/old name prod node_uid 2 alloc_id 1000",
        "cluster recover cluster_id 42 recovery_path /mnt/old-node1 ssh://ops@db2/mnt/old-node2",
    ],
    build: build_from_identities,
};

fn build_from_backup(m: &Match) -> Result<Command, ParseError> {
    Ok(Command::Cluster(ClusterCommand::Recover(
        RecoverRequest::Backup(FromBackup {
            filename: m.req("filename")?,
            node_uid: m.opt("node_uid"),
            persistent_path: m.opt("persistent_path"),
            addr: m.opt("addr"),
            cluster_id: m.opt("cluster_id"),
            alloc_id: m.opt("alloc_id"),
            redis_server: m.opt("redis_server"),
        }),
        super::tls::material_opts(m)?,
    )))
}

fn build_from_identities(m: &Match) -> Result<Command, ParseError> {
    let name: Option<String> = m.opt("name");
    Ok(Command::Cluster(ClusterCommand::Recover(
        RecoverRequest::Identities(FromIdentities {
            cluster_id: m.req("cluster_id")?,
            recovery_paths: m.all("recovery_path"),
            node_uid: m.opt("node_uid"),
            persistent_path: m.opt("persistent_path"),
            addr: m.opt("addr"),
            name,
            alloc_id: m.opt("alloc_id"),
            redis_server: m.opt("redis_server"),
        }),
        super::tls::material_opts(m)?,
    )))
}
/// `cluster recover ...`: stores the rebuilt configuration and says what was chosen,
/// what was left out, and what to do next. TLS material given with it is checked and
/// installed on every node before anything is stored, and stored as the cluster's with
/// it (the old material's copies on the old disks are then not needed).
pub(super) async fn apply(
    ctx: &Context,
    req: &RecoverRequest,
    tls_paths: Option<&MaterialPaths>,
) -> Result<Reply, CommandError> {
    let material = tls_paths
        .map(|p| super::tls::checked(p, None))
        .transpose()?;
    let given = match req {
        RecoverRequest::Backup(b) => b.redis_server.as_deref(),
        RecoverRequest::Identities(r) => r.redis_server.as_deref(),
    };
    // Checked before anything is written.
    let server = given
        .map(super::super::node::check_redis_server)
        .transpose()?;
    if let RecoverRequest::Identities(r) = req {
        check_remote_paths(&r.recovery_paths).await?;
    }
    let mut staged = rebuild::stage(&ctx.store, req, server)?;
    // The material goes onto every node before the configuration is stored, which then
    // names it: a node that cannot take it leaves nothing stored, and a store that fails
    // takes the material off again. All or nothing.
    let installed = match material {
        Some(mut material) => {
            // The rebuilt nodes' binaries must run TLS shards: asked before anything is
            // written.
            super::tls::refuse_without_tls(ctx, staged.cluster()).await?;
            if let Some(old) = &staged.cluster().tls {
                material.record.verify = old.verify;
            }
            let installed = super::tls::install_everywhere(staged.cluster(), &material).await?;
            staged.set_tls(material.record.clone());
            Some((installed, material.record.material_id()))
        }
        None => None,
    };
    let mut rebuilt = match staged.commit() {
        Ok(rebuilt) => rebuilt,
        Err(e) => {
            if let Some((installed, _)) = &installed {
                installed.undo().await;
            }
            return Err(e.into());
        }
    };
    if let Some((_, id)) = installed {
        rebuilt
            .notes
            .push(format!("TLS material {id} installed on every node"));
    }
    let from = match req {
        RecoverRequest::Backup(_) => "its CCS backup",
        RecoverRequest::Identities(_) => "its shard identity files",
    };
    let reply = Reply::of(&ClusterRecovered::new(&rebuilt, from))?;
    Ok(match left_out_error(&rebuilt.left_out) {
        Some(e) => reply.failed(e),
        None => reply,
    })
}

/// The failure of a rebuild that left databases out: what is missing of each, named. The
/// configuration of the rest is stored (the worst night needs them back); the status is 1
/// so that a runbook does not go on as if everything came back.
fn left_out_error(left_out: &[LeftOut]) -> Option<CommandError> {
    if left_out.is_empty() {
        return None;
    }
    let lines: Vec<String> = left_out.iter().map(LeftOut::line).collect();
    let n = left_out.len();
    Some(
        CommandError::not_found(format!(
            "{n} database{} cannot be rebuilt from the identity files found, the rest of the configuration is stored: {}",
            if n == 1 { "" } else { "s" },
            lines.join("; ")
        ))
        .hinted(
            "if a disk holding those slots' master or replica turns up: move aside the `ccs/` directories this wrote under the nodes' persistent paths (shown above), then run it again into a new `--home` with that disk's path added",
        ),
    )
}

/// Each `ssh://[user@]host[:port]/dir` recovery path: the host answers with a known key
/// (an unknown one is refused with what `ssh-keyscan` sees) and the directory is there
/// and readable, as `node <id> recovery_path set` checks a node's, before anything is
/// read or stored.
async fn check_remote_paths(paths: &[PathBuf]) -> Result<(), CommandError> {
    for path in paths {
        let text = path.to_string_lossy();
        if !text.starts_with("ssh://") {
            continue;
        }
        let (target, dir) = crate::backup::parse_ssh_url(&text).map_err(CommandError::usage)?;
        let check = super::super::node::remote::RemoteCheck::connect(&target).await?;
        check.recovery_path(&dir).await?;
    }
    Ok(())
}

/// `cluster recover`: the configuration brought back, the allocator chosen, what was
/// decided on the operator's behalf and what was left out.
#[derive(Serialize)]
pub struct ClusterRecovered {
    pub name: String,
    #[serde(with = "crate::ccs::model::cluster_id_text")]
    pub cluster_id: u64,
    pub local_node: Id,
    pub alloc_id: Id,
    pub alloc_id_given: bool,
    pub largest_id_in_use: Option<IdSighting>,
    pub nodes: Vec<NodeView>,
    pub databases: Vec<RecoveredDb>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
    /// Master shards whose disk is lost, rebuilt from their replicas' identities.
    pub lost_shards: Vec<LostShard>,
    /// Databases that cannot be rebuilt, and why (the command then fails).
    pub left_out: Vec<LeftOut>,
    /// What it was rebuilt from (`its CCS backup`).
    #[serde(skip)]
    pub from: &'static str,
}

/// A database brought back into the configuration, pending recovery.
#[derive(Serialize)]
pub struct RecoveredDb {
    pub id: Id,
    pub name: String,
    pub state: DbState,
    pub shard_count: u32,
    pub replication: bool,
    pub persistence: Persistence,
    pub port: u16,
}

impl ClusterRecovered {
    pub fn new(rebuilt: &Rebuilt, from: &'static str) -> ClusterRecovered {
        let cluster = &rebuilt.cluster;
        ClusterRecovered {
            name: cluster.name.clone(),
            cluster_id: cluster.cluster_id,
            local_node: cluster.local_node,
            alloc_id: rebuilt.alloc.alloc_id,
            alloc_id_given: rebuilt.alloc.given,
            largest_id_in_use: rebuilt.alloc.largest.clone(),
            nodes: cluster.nodes.values().map(NodeView::from).collect(),
            databases: cluster
                .databases
                .values()
                .map(|db| RecoveredDb {
                    id: db.id,
                    name: db.config.name.clone(),
                    state: db.state,
                    shard_count: db.config.shards,
                    replication: db.config.replication,
                    persistence: db.config.persistence,
                    port: db.port,
                })
                .collect(),
            notes: rebuilt.notes.clone(),
            problems: rebuilt.problems.clone(),
            lost_shards: rebuilt.lost.clone(),
            left_out: rebuilt.left_out.clone(),
            from,
        }
    }
}

impl Render for ClusterRecovered {
    fn render(&self, text: &mut Text) {
        // Databases whose shards still ran were adopted active: nothing to recover there.
        let pending = self
            .databases
            .iter()
            .filter(|db| db.state == DbState::PendingRecovery)
            .count();
        let adopted = self.databases.len() - pending;
        text.line(format!(
            "Recovered cluster `{}` (cluster_id {}) from {}: {} node(s), {} database(s) pending recovery{}; this machine is node:{}.",
            self.name,
            self.cluster_id,
            self.from,
            self.nodes.len(),
            pending,
            match adopted {
                0 => String::new(),
                n => format!(", {n} adopted as running"),
            },
            self.local_node
        ));
        text.line(match (&self.largest_id_in_use, self.alloc_id_given) {
            (Some(l), true) => format!(
                "alloc_id {} (given): above the largest id in use, {} ({l}).",
                self.alloc_id, l.id
            ),
            (Some(l), false) => format!(
                "alloc_id {}: the largest id in use is {} ({l}); {} above it.",
                self.alloc_id,
                l.id,
                self.alloc_id.saturating_sub(l.id)
            ),
            (None, _) => format!("alloc_id {}: no id found in use.", self.alloc_id),
        });
        for note in &self.notes {
            text.line(format!("note: {note}"));
        }
        for problem in &self.problems {
            text.line(format!("warning: {problem}"));
        }
        let mut nodes =
            Table::new(["NODE:ID", "ADDRESS", "PERSISTENT_PATH", "RECOVERY_PATH"]).titled("NODES");
        for node in &self.nodes {
            let local = if node.id == self.local_node { "*" } else { "" };
            nodes.row([
                format!("{local}node:{}", node.id),
                node.addr.clone(),
                node.persistent_path.display().to_string(),
                node.recovery_path
                    .as_ref()
                    .map_or("N/A".to_string(), |p| p.display().to_string()),
            ]);
        }
        text.table(nodes);
        if !self.databases.is_empty() {
            let mut dbs = Table::new([
                "DB:ID",
                "NAME",
                "SHARDS",
                "REPLICATION",
                "PERSISTENCE",
                "PORT",
                "STATUS",
            ])
            .titled("DATABASES");
            for db in &self.databases {
                dbs.row([
                    format!("db:{}", db.id),
                    db.name.clone(),
                    db.shard_count.to_string(),
                    if db.replication {
                        "enabled"
                    } else {
                        "disabled"
                    }
                    .to_string(),
                    db.persistence.to_string(),
                    db.port.to_string(),
                    db.state.to_string(),
                ]);
            }
            text.table(dbs);
        }
        let missing: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.recovery_path.is_none())
            .map(|n| format!("`node {} recovery_path set <path>`", n.id))
            .collect();
        text.line(if self.databases.is_empty() {
            "No databases to recover.".to_string()
        } else if pending == 0 {
            "Nothing pending recovery: every database runs as it was (`status` shows them)."
                .to_string()
        } else if missing.is_empty() {
            "Next: `recover list` to check the files, then `recover all`.".to_string()
        } else {
            format!(
                "Next: say where the old files are ({}), `recover list` to check them, then `recover all`.",
                missing.join(", ")
            )
        });
    }
}

/// Canonical text of `cluster recover ...`.
pub(super) fn fmt(req: &RecoverRequest, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let path = |p: &PathBuf| quote(&p.to_string_lossy());
    match req {
        RecoverRequest::Backup(b) => {
            write!(f, "cluster recover filename {}", path(&b.filename))?;
            if let Some(id) = b.node_uid {
                write!(f, " node_uid {id}")?;
            }
            if let Some(p) = &b.persistent_path {
                write!(f, " persistent_path {}", path(p))?;
            }
            if let Some(addr) = b.addr {
                write!(f, " addr {addr}")?;
            }
            if let Some(id) = b.cluster_id {
                write!(f, " cluster_id {id}")?;
            }
            if let Some(id) = b.alloc_id {
                write!(f, " alloc_id {id}")?;
            }
            if let Some(p) = &b.redis_server {
                write!(f, " redis_server {}", path(p))?;
            }
        }
        RecoverRequest::Identities(r) => {
            write!(
                f,
                "cluster recover cluster_id {} recovery_path",
                r.cluster_id
            )?;
            for p in &r.recovery_paths {
                write!(f, " {}", path(p))?;
            }
            if let Some(id) = r.node_uid {
                write!(f, " node_uid {id}")?;
            }
            if let Some(p) = &r.persistent_path {
                write!(f, " persistent_path {}", path(p))?;
            }
            if let Some(addr) = r.addr {
                write!(f, " addr {addr}")?;
            }
            if let Some(name) = &r.name {
                write!(f, " name {}", quote(name))?;
            }
            if let Some(id) = r.alloc_id {
                write!(f, " alloc_id {id}")?;
            }
            if let Some(p) = &r.redis_server {
                write!(f, " redis_server {}", path(p))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cmd::registry;
    use crate::lang::complete::complete;

    fn candidates(line: &str) -> Vec<String> {
        complete(registry(), None, line, line.len()).candidates
    }

    #[test]
    fn completes_both_forms_and_paths() {
        assert_eq!(candidates("cluster recover "), ["cluster_id", "filename"]);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("old-n1/ccs")).unwrap();
        let dir = format!("{}/", tmp.path().display());
        let got = candidates(&format!("cluster recover filename {dir}ol"));
        assert_eq!(got, [format!("{dir}old-n1/")]);
        let got = candidates(&format!(
            "cluster recover cluster_id 7 recovery_path {dir}old-n1 "
        ));
        // Another path for `recovery_path`, or the next option.
        for key in ["node_uid", "persistent_path", "addr", "name", "alloc_id"] {
            assert!(got.contains(&key.to_string()), "{got:?}");
        }
        assert!(got.iter().any(|c| c.ends_with('/')), "{got:?}");
    }
}
