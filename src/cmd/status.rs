//! `status [nodes|databases|endpoints|shards] [extra all] [issues_only]`: rladmin's four
//! tables, from the live processes.

use std::fmt;

use serde::Serialize;

use super::{
    Command, CommandError, CommandSyntax, Context, Element, Opt, Render, Reply, Table, Text,
    ValueKind,
};
use crate::ccs::SlotRange;
use crate::db::{self, DatabaseRow, EndpointRow, NodeRow, ShardRow, StatusReport, STATUS_TIMEOUT};
use crate::server::RedisServer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusTable {
    Nodes,
    Databases,
    Endpoints,
    Shards,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCommand {
    /// `None`: all four tables.
    pub table: Option<StatusTable>,
    pub extra_all: bool,
    pub issues_only: bool,
}

const TABLES: &[&str] = &["nodes", "databases", "endpoints", "shards"];

pub static SYNTAX: &[CommandSyntax] = &[CommandSyntax {
    elements: &[
        Element::Keyword("status"),
        Element::Choice {
            name: "table",
            words: TABLES,
            optional: true,
        },
        Element::Options(&[
            Opt::optional("extra", "all", ValueKind::Choice(&["all"])),
            Opt::flag("issues_only"),
        ]),
    ],
    summary: "show nodes, databases, endpoints and shards as the live processes report them",
    examples: &[
        "status",
        "status shards",
        "status databases extra all",
        "status issues_only",
        "status nodes extra all issues_only",
    ],
    build: |m| {
        let table = m.opt::<&str>("table").map(|t| match t {
            "nodes" => StatusTable::Nodes,
            "databases" => StatusTable::Databases,
            "endpoints" => StatusTable::Endpoints,
            _ => StatusTable::Shards,
        });
        Ok(Command::Status(StatusCommand {
            table,
            extra_all: m.has("extra"),
            issues_only: m.has("issues_only"),
        }))
    },
}];

impl StatusCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        let cluster = ctx.cluster()?;
        // The version column falls back to the local binary's (`redis 7.0.15`, the form a
        // live shard's answer takes); its absence is no error here.
        let version =
            RedisServer::locate(ctx.redis_server.as_deref(), cluster.redis_server.as_deref())
                .ok()
                .map(|s| s.label());
        let mut report = db::status(
            &cluster,
            version.as_deref(),
            STATUS_TIMEOUT,
            &ctx.connections,
        )
        .await
        .restoring(&crate::restore::running_tasks(ctx.store.home(), &cluster));
        // A shard that serves no client fails the command (exit 1), whichever tables are
        // shown, so a script can trust `status`: one down, another program on its port,
        // one a restore fenced or set the data of (cut short or still running).
        let down: Vec<String> = report
            .shards
            .iter()
            .filter(|s| {
                [
                    "DOWN",
                    db::TLS_REFUSED,
                    db::PORT_TAKEN,
                    db::FENCED,
                    db::RESTORE_UNFINISHED,
                    db::RESTORING,
                ]
                .contains(&s.status.as_str())
            })
            .map(|s| format!("redis:{} of `{}`", s.id, s.name))
            .collect();
        // A sharded database's slots a master does not serve, or nobody reachable does:
        // keys there are unreachable (`MOVED`) though every shard answers.
        let mut slots: Vec<String> = report
            .shards
            .iter()
            .filter(|s| s.status == db::SLOTS_NOT_SERVED)
            .map(|s| {
                let range = s.slots.unwrap_or(SlotRange::ALL);
                format!(
                    "redis:{} of `{}` does not serve its slots {range}",
                    s.id, s.name
                )
            })
            .collect();
        slots.extend(report.unserved_slots().into_iter().map(|(name, ranges)| {
            format!(
                "slots {} of `{name}` are served by no reachable shard",
                db::slot_runs(&ranges)
            )
        }));
        // Shards that say their cluster is down though each slot has its master: their
        // clients get `CLUSTERDOWN` for every key.
        let cluster: Vec<String> = report
            .cluster_down()
            .into_iter()
            .map(|(name, c)| {
                format!(
                    "`{name}` says `cluster_state:{}` on {} (their clients get `CLUSTERDOWN`)",
                    c.state,
                    c.shards_named()
                )
            })
            .collect();
        let slots_hint = !slots.is_empty();
        slots.extend(cluster);
        // Masters of a replicated database with no replica on another node: everything
        // is served, and one node's loss loses their data for good.
        let unprotected: Vec<String> = report
            .unprotected_masters()
            .into_iter()
            .flat_map(|(name, masters)| {
                masters
                    .into_iter()
                    .map(move |m| format!("`{name}` (replication enabled): {}", m.why()))
            })
            .collect();
        let has = |status: &str| report.shards.iter().any(|s| s.status == status);
        let (restoring, cut_short) = (
            has(db::RESTORING),
            has(db::FENCED) || has(db::RESTORE_UNFINISHED),
        );
        if self.issues_only {
            report = report.issues_only();
        }
        let reply = Reply::of(&Status::new(report, self.table, self.extra_all))?;
        if down.is_empty() && slots.is_empty() && unprotected.is_empty() {
            return Ok(reply);
        }
        if down.is_empty() && slots.is_empty() {
            return Ok(reply.failed(
                CommandError::unavailable(unprotected.join("; ")).hinted(db::NO_REPLICA_WAY),
            ));
        }
        // Said after what is more urgent, whose hint stands.
        let unprotected = match unprotected.is_empty() {
            true => String::new(),
            false => format!("; {}", unprotected.join("; ")),
        };
        if down.is_empty() {
            return Ok(reply.failed(CommandError::unavailable(format!("{}{unprotected}", slots.join("; "))).hinted(
                if slots_hint {
                    "`restart db <db>` re-forms the slot map; `status shards extra all` says who holds the slots"
                } else {
                    "a cluster says it is down while it counts a master failed (one that stopped answering past the node timeout, until a replica takes over or it has answered a while) or cannot reach a majority of masters: it settles by itself within seconds, so run `status` again; `status shards` names the shards"
                },
            )));
        }
        let slots = match slots.is_empty() {
            true => String::new(),
            false => format!("; {}", slots.join("; ")),
        };
        Ok(reply.failed(
            CommandError::unavailable(format!(
                "{} shard(s) down: {}{slots}{unprotected}",
                down.len(),
                down.join(", ")
            ))
            .hinted(if cut_short {
                    "a restore that did not finish fenced some or set their data aside: `status shards` names its task, to `restore task retry` or `restore task delete`"
                } else if restoring {
                    "a restore another shell runs holds some: `status shards` names its task, which `restore task show` follows"
                } else {
                    "start them again with `restart db <db>`; `status shards` says why"
                }),
        ))
    }
}

/// `status`: the tables asked for (the others left out of the JSON too), their rows with
/// the `extra all` columns.
#[derive(Serialize)]
pub struct Status {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<DatabaseRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<EndpointRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<ShardRow>>,
    /// Text shows the `extra all` columns (JSON always has them).
    #[serde(skip)]
    pub extra_all: bool,
}

impl Status {
    /// `table`: the one asked for, or all four.
    pub fn new(report: StatusReport, table: Option<StatusTable>, extra_all: bool) -> Status {
        let want = |t: StatusTable| table.is_none() || table == Some(t);
        Status {
            nodes: want(StatusTable::Nodes).then_some(report.nodes),
            databases: want(StatusTable::Databases).then_some(report.databases),
            endpoints: want(StatusTable::Endpoints).then_some(report.endpoints),
            shards: want(StatusTable::Shards).then_some(report.shards),
            extra_all,
        }
    }
}

impl Render for Status {
    fn render(&self, text: &mut Text) {
        let extra = self.extra_all;
        if let Some(rows) = &self.nodes {
            text.table(nodes_table(rows, extra));
        }
        if let Some(rows) = &self.databases {
            text.table(databases_table(rows, extra));
        }
        if let Some(rows) = &self.endpoints {
            text.table(endpoints_table(rows, extra));
        }
        if let Some(rows) = &self.shards {
            text.table(shards_table(rows, extra));
        }
    }
}

/// `2.46MB`, as rladmin prints sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.2}{}", UNITS[unit])
    }
}

fn nodes_table(rows: &[NodeRow], extra: bool) -> Table {
    let mut header = vec![
        "NODE:ID", "ROLE", "ADDRESS", "SHARDS", "CORES", "FREE_RAM", "VERSION", "STATUS",
    ];
    if extra {
        header.extend(["PERSISTENT_PATH", "PORT_RANGE"]);
    }
    let mut t = Table::new(header).titled("CLUSTER NODES");
    for n in rows {
        let mut row = vec![
            format!("{}node:{}", if n.local { "*" } else { "" }, n.id),
            n.role.to_string(),
            n.address.clone(),
            n.shards.to_string(),
            n.cores.to_string(),
            format!("{}/{}", human_bytes(n.free_ram), human_bytes(n.total_ram)),
            n.version.clone().unwrap_or_else(|| "N/A".into()),
            n.status.clone(),
        ];
        if extra {
            row.extend([n.persistent_path.clone(), n.port_range.clone()]);
        }
        t.row(row);
    }
    t
}

fn databases_table(rows: &[DatabaseRow], extra: bool) -> Table {
    let mut header = vec![
        "DB:ID",
        "NAME",
        "TYPE",
        "STATUS",
        "SHARDS",
        "PLACEMENT",
        "REPLICATION",
        "PERSISTENCE",
        "ENDPOINT",
    ];
    if extra {
        header.extend(["MEMORY_LIMIT", "KEYS", "SYNC_SOURCE"]);
    }
    let mut t = Table::new(header).titled("DATABASES");
    for d in rows {
        let mut row = vec![
            format!("db:{}", d.id),
            d.name.clone(),
            d.kind.to_string(),
            d.status.clone(),
            d.shards.to_string(),
            d.placement.to_string(),
            enabled(d.replication),
            d.persistence.clone(),
            d.endpoint.clone(),
        ];
        if extra {
            row.extend([
                d.memory_limit.map_or("none".into(), human_bytes),
                d.keys.to_string(),
                d.sync_source.clone().unwrap_or_else(|| "N/A".into()),
            ]);
        }
        t.row(row);
    }
    t
}

fn endpoints_table(rows: &[EndpointRow], extra: bool) -> Table {
    let mut header = vec!["DB:ID", "NAME", "ID", "NODE", "ROLE", "SSL"];
    // The certificate column only where some endpoint speaks TLS.
    let tls = rows.iter().any(|e| e.ssl);
    if extra {
        header.extend(["ADDRESS", "STATUS"]);
        if tls {
            header.push("CERT_EXPIRES");
        }
    }
    let mut t = Table::new(header).titled("ENDPOINTS");
    for e in rows {
        let mut row = vec![
            format!("db:{}", e.db_id),
            e.name.clone(),
            e.id.clone(),
            format!("node:{}", e.node),
            e.role.to_string(),
            if e.ssl { "Yes" } else { "No" }.to_string(),
        ];
        if extra {
            row.extend([e.address.clone(), e.status.clone()]);
            if tls {
                let mut cert = e.cert_expires.clone().unwrap_or_else(|| "N/A".into());
                if let Some(issue) = &e.tls_issue {
                    cert = format!("{cert} ({issue})");
                }
                row.push(cert);
            }
        } else if let Some(issue) = &e.tls_issue {
            // Shown even without `extra all`: it needs the operator.
            row[5] = format!("Yes ({issue})");
        }
        t.row(row);
    }
    t
}

fn shards_table(rows: &[ShardRow], extra: bool) -> Table {
    let mut header = vec![
        "DB:ID",
        "NAME",
        "ID",
        "NODE",
        "ROLE",
        "SLOTS",
        "USED_MEMORY",
        "STATUS",
    ];
    if extra {
        header.extend(["PORT", "PID", "KEYS", "DETAIL"]);
    }
    let mut t = Table::new(header).titled("SHARDS");
    for s in rows {
        let mut row = vec![
            format!("db:{}", s.db_id),
            s.name.clone(),
            format!("redis:{}", s.id),
            format!("node:{}", s.node),
            s.role.to_string(),
            s.slots.unwrap_or(SlotRange::ALL).to_string(),
            s.used_memory.map_or("N/A".into(), human_bytes),
            s.status.clone(),
        ];
        if extra {
            row.extend([
                s.port.to_string(),
                s.pid.map_or("N/A".into(), |p| p.to_string()),
                s.keys.map_or("N/A".into(), |k| k.to_string()),
                [s.detail.as_deref(), s.tls_issue.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; "),
            ]);
        }
        t.row(row);
    }
    t
}

fn enabled(b: bool) -> String {
    if b { "enabled" } else { "disabled" }.to_string()
}

impl fmt::Display for StatusCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("status")?;
        if let Some(t) = self.table {
            let word = match t {
                StatusTable::Nodes => "nodes",
                StatusTable::Databases => "databases",
                StatusTable::Endpoints => "endpoints",
                StatusTable::Shards => "shards",
            };
            write!(f, " {word}")?;
        }
        if self.extra_all {
            f.write_str(" extra all")?;
        }
        if self.issues_only {
            f.write_str(" issues_only")?;
        }
        Ok(())
    }
}
