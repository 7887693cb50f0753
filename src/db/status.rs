//! The live view behind `status`: every shard asked at once (PING / INFO), rladmin's four
//! tables as data. Rendering is the command's job.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::ccs::{Cluster, Database, DbState, Id, Role, Shard, SlotRange, UnprotectedMaster};
use crate::server::shard_dir::{db_dirs_in, fenced, recovery_leftover, served_from, shard_dirs_in};
use crate::server::{probe_kept, ClusterAsk, KeptConnections, ShardDir, ShardProbe, Transport};

use super::endpoint;

/// A shard that does not answer within this is shown down.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);

pub const OK: &str = "OK";
/// A certificate expiring within this many days is an issue.
pub const CERT_WARN_DAYS: i64 = 30;
/// A TLS shard that would not hold a TLS conversation (the probe's
/// [`crate::server::ServerError::TlsRefused`]): the handshake failed either way, or
/// Lazarus has no material to speak TLS with.
pub const TLS_REFUSED: &str = "TLS REFUSED";
/// Another program answers at a shard's address (a server that does not run from the
/// shard's own directory): the shard cannot be running there, and what answers is not it.
pub const PORT_TAKEN: &str = "PORT TAKEN";
/// A shard a restore fenced (its password one no client knows) and did not unfence: it
/// runs, and refuses every client with `NOAUTH`.
pub const FENCED: &str = "FENCED";
/// A shard holding data a restore set aside (its only copy) that the restore neither put
/// back nor replaced: the restore was cut short.
pub const RESTORE_UNFINISHED: &str = "RESTORE UNFINISHED";
/// A shard a restore another shell is running fenced or set the data of (the task's lock
/// held by a live process): it serves no client until that restore is done.
pub const RESTORING: &str = "RESTORING";
/// A cluster shard whose `cluster_state` is not `ok`.
pub const CLUSTER_FAIL: &str = "CLUSTER FAIL";
/// A replica that runs as a master (standalone: it stopped following its master).
const NOT_REPLICATING: &str = "NOT REPLICATING";
/// A replica of a sharded database that a failover made the master of its master's
/// slots.
pub const FAILED_OVER: &str = "FAILED OVER";
/// A live master of a sharded database that does not serve (all of) its configured
/// slots in its own view of the slot map: another node id holds them (one lost with a
/// `nodes.conf`, with no address), another shard, or nobody.
pub const SLOTS_NOT_SERVED: &str = "SLOTS NOT SERVED";
/// A live master of a replicated database with no replica on another node
/// ([`Database::unprotected_masters`]): one node's loss loses its data.
pub const NO_REPLICA_ELSEWHERE: &str = "NO REPLICA ELSEWHERE";
/// How an operator gets replicas back on other nodes: no command adds one to a database
/// that runs.
pub const NO_REPLICA_WAY: &str = "no command adds a replica to a database that runs: back it up (`backup task run`), `create db <new name>` with its shard count and `replication enabled` (its replicas go on other nodes than their masters': `node add` one if none is left), restore the run into it (`restore task create name <task> db <new name> backup <run> from_other_db`, `restore task start <task>`) and move its clients to the new endpoint";

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NodeRow {
    pub id: Id,
    /// The node this machine is (rladmin marks it `*`).
    pub local: bool,
    pub role: &'static str,
    pub address: String,
    pub shards: usize,
    pub cores: usize,
    pub free_ram: u64,
    pub total_ram: u64,
    pub version: Option<String>,
    pub status: String,
    pub persistent_path: String,
    pub port_range: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DatabaseRow {
    pub id: Id,
    pub name: String,
    /// rladmin's TYPE (where it tells `redis` from `memcached`): here the engine the
    /// database's shards run, `redis` or `valkey` ([`db_type`]).
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub shards: u32,
    pub placement: &'static str,
    pub replication: bool,
    pub persistence: String,
    pub endpoint: String,
    pub memory_limit: Option<u64>,
    pub sync_source: Option<String>,
    pub keys: u64,
    /// Slots of a sharded database that no reachable shard serves (those of a master
    /// that does not answer left out: its row says so).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unserved_slots: Vec<SlotRange>,
    /// Its shards that say its cluster is not `ok` (their clients get `CLUSTERDOWN`),
    /// though every slot may be served in the slot map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_down: Option<super::slot_check::ClusterDown>,
    /// With replication enabled, its masters with no replica on another node (a rebuild
    /// that lost their replicas' disks, a master placed beside its replica).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unprotected_masters: Vec<UnprotectedMaster>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EndpointRow {
    pub db_id: Id,
    pub name: String,
    pub id: String,
    pub node: Id,
    pub role: &'static str,
    pub ssl: bool,
    pub address: String,
    pub status: String,
    /// A TLS endpoint's certificate expiry (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expires: Option<String>,
    /// What is wrong with its TLS though it answers: a certificate expiring within
    /// [`CERT_WARN_DAYS`], `tls_verify off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_issue: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ShardRow {
    pub db_id: Id,
    pub name: String,
    pub id: Id,
    pub node: Id,
    /// Configured role; the live one is `live_role`.
    pub role: Role,
    pub live_role: Option<String>,
    pub slots: Option<SlotRange>,
    pub used_memory: Option<u64>,
    pub status: String,
    pub port: u16,
    pub pid: Option<u32>,
    pub keys: Option<u64>,
    /// What answered: `redis 7.0.15`, `valkey 8.1.8`.
    pub engine: Option<String>,
    /// Why the shard is not OK.
    pub detail: Option<String>,
    /// It listens only on TLS.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// What is wrong with its TLS though it answers: it serves other material than the
    /// cluster's current one (a rotation it did not take).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_issue: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct StatusReport {
    pub nodes: Vec<NodeRow>,
    pub databases: Vec<DatabaseRow>,
    pub endpoints: Vec<EndpointRow>,
    pub shards: Vec<ShardRow>,
}

impl StatusReport {
    /// Tells a restore still running from one cut short: a shard `FENCED` or `RESTORE
    /// UNFINISHED` of a database whose restore task another shell is running now
    /// (`running`: database name → task, each task's lock held by a live process) is
    /// `RESTORING`, its detail naming the task.
    pub fn restoring(mut self, running: &BTreeMap<String, String>) -> StatusReport {
        for r in &mut self.shards {
            if ![FENCED, RESTORE_UNFINISHED].contains(&r.status.as_str()) {
                continue;
            }
            let Some(task) = running.get(&r.name) else {
                continue;
            };
            r.status = RESTORING.to_string();
            r.detail = Some(format!(
                "restore task `{task}` is running in another shell (its lock is held): the shard serves no client until it finishes; `restore task show {task}` follows it"
            ));
        }
        self
    }

    /// The databases with slots no reachable shard serves, with those slots.
    pub fn unserved_slots(&self) -> Vec<(String, Vec<SlotRange>)> {
        self.databases
            .iter()
            .filter(|d| !d.unserved_slots.is_empty())
            .map(|d| (d.name.clone(), d.unserved_slots.clone()))
            .collect()
    }

    /// The databases whose shards say their cluster is not `ok`, with those shards.
    pub fn cluster_down(&self) -> Vec<(String, super::slot_check::ClusterDown)> {
        self.databases
            .iter()
            .filter_map(|d| Some((d.name.clone(), d.cluster_down.clone()?)))
            .collect()
    }

    /// The databases with masters that have no replica on another node, with those.
    pub fn unprotected_masters(&self) -> Vec<(String, Vec<UnprotectedMaster>)> {
        self.databases
            .iter()
            .filter(|d| !d.unprotected_masters.is_empty())
            .map(|d| (d.name.clone(), d.unprotected_masters.clone()))
            .collect()
    }

    /// Keeps only the rows that are not OK.
    pub fn issues_only(mut self) -> StatusReport {
        self.nodes.retain(|r| r.status != OK);
        self.databases.retain(|r| r.status != "active");
        self.endpoints
            .retain(|r| r.status != OK || r.tls_issue.is_some());
        self.shards
            .retain(|r| r.status != OK || r.tls_issue.is_some());
        self
    }
}

/// Probes in flight at once: more only queue for the same two or four cores (a TLS
/// handshake is work on both ends) while each one's `timeout` runs, and hold a socket
/// each.
pub const PROBES_AT_ONCE: usize = 64;

/// Every shard of every active database probed, [`PROBES_AT_ONCE`] at a time on the
/// runtime's threads, each within `timeout` counted from its own start, over the
/// connection `kept` holds to it when it still answers; a shard whose probe task failed
/// is left out. The cluster's TLS client material is resolved once for all of them.
/// `kept` then holds the connections to these shards only.
async fn probe_all(
    cluster: &Cluster,
    timeout: Duration,
    kept: &KeptConnections,
) -> BTreeMap<Id, ShardProbe> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(PROBES_AT_ONCE));
    let active = || {
        cluster
            .databases
            .values()
            .filter(|db| db.state == DbState::Active)
    };
    let tls = match active().any(|db| db.config.tls) {
        true => cluster.transport(true),
        false => Transport::Plain,
    };
    let mut tasks = Vec::new();
    let mut probed = std::collections::HashSet::new();
    for db in active() {
        for s in &db.shards {
            let Some(node) = cluster.nodes.get(&s.node) else {
                continue;
            };
            let addr = db.shard_addr(&node.addr, s.port, &tls);
            // A master's slot map is read in the same round trip: `status` checks it
            // serves its slots (a standalone database asks nothing more).
            let is_cluster = match (db.config.shards > 1, s.role) {
                (false, _) => ClusterAsk::Nothing,
                (true, Role::Master) => ClusterAsk::SlotMap,
                (true, Role::Replica) => ClusterAsk::State,
            };
            let permits = permits.clone();
            let kept = kept.clone();
            probed.insert((addr.host.clone(), addr.port));
            tasks.push((
                s.id,
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    probe_kept(&addr, is_cluster, timeout, &kept).await
                }),
            ));
        }
    }
    let mut probes = BTreeMap::new();
    for (id, t) in tasks {
        if let Ok(p) = t.await {
            probes.insert(id, p);
        }
    }
    kept.keep_only(&probed);
    probes
}

/// Asks every shard of every active database at once, each within `timeout`, over the
/// connections `kept` holds from an earlier `status` where they still answer.
/// `server_version` is the local `redis-server`'s label (`redis 7.0.15`, as a live shard's
/// is shown), shown for nodes with no shard up and no binary of their own.
pub async fn status(
    cluster: &Cluster,
    server_version: Option<&str>,
    timeout: Duration,
    kept: &KeptConnections,
) -> StatusReport {
    // The shards and the nodes' machines at once.
    let (mut probes, facts) = tokio::join!(probe_all(cluster, timeout, kept), node_facts(cluster));
    // What answers from elsewhere than its shard's directory is not the shard: none of
    // its figures are the shard's.
    let taken = port_takers(cluster, &probes);
    probes.retain(|id, _| !taken.contains_key(id));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // The material every TLS shard should serve, as installed on its node.
    let current_dir = |node: Id| {
        let record = cluster.tls.as_ref()?;
        let node = cluster.nodes.get(&node)?;
        Some(crate::tls::installed_dir(&node.persistent_path, record))
    };

    let (aside, leftovers, fences) = tokio::join!(
        set_aside_shards(cluster, &probes),
        recovery_leftovers(cluster),
        fenced_shards(cluster, &probes)
    );

    let mut report = StatusReport::default();
    for db in cluster.databases.values() {
        let mut ok_masters = 0;
        let mut all_ok = true;
        let mut keys = 0;
        // Masters whose keys are counted, and replicas serving a master's slots in its
        // place (with their keys): those count for a master that is down.
        let (mut counted, mut promoted) = (Vec::new(), Vec::new());
        let unprotected = match db.state {
            DbState::Active => db.unprotected_masters(),
            DbState::PendingRecovery => Vec::new(),
        };
        for s in &db.shards {
            let p = probes.get(&s.id);
            let (status, detail) = match (db.state, p) {
                (DbState::PendingRecovery, _) => (
                    "PENDING RECOVERY".to_string(),
                    leftovers.get(&s.id).map(|pid| {
                        format!(
                            "a server of an interrupted recovery runs here (pid {pid}): `recover \
                             db {}` again stops it and recovers the database",
                            db.config.name
                        )
                    }),
                ),
                (_, _) if aside.contains_key(&s.id) => (
                    RESTORE_UNFINISHED.to_string(),
                    aside.get(&s.id).map(ToString::to_string),
                ),
                (_, _) if fences.contains_key(&s.id) => {
                    (FENCED.to_string(), Some(fence_detail(cluster, db)))
                }
                (_, _) if taken.contains_key(&s.id) => (
                    PORT_TAKEN.to_string(),
                    taken.get(&s.id).map(|t| t.detail.clone()),
                ),
                (_, Some(p)) => match shard_status(s.role, p, db.config.tls) {
                    (status, _) if status == NOT_REPLICATING && db.config.shards > 1 => {
                        let master = s.master.map_or("?".to_string(), |m| format!("redis:{m}"));
                        promoted.push((s.master, p.info.keys()));
                        (
                            FAILED_OVER.to_string(),
                            Some(format!(
                                "a failover made it the master of {master}'s slots, which it \
                                 serves: `restart db {}` gives them back to {master}",
                                db.config.name
                            )),
                        )
                    }
                    // A master not serving its slots, whether its `cluster_state` says
                    // so or not (the others' may all say `ok`).
                    (status, detail) if status == OK || status == CLUSTER_FAIL => {
                        match super::slot_check::missing_slots(db, s, p, &probes) {
                            Some(why) => (
                                SLOTS_NOT_SERVED.to_string(),
                                Some(match detail {
                                    Some(state) => format!("{state}; {why}"),
                                    None => why,
                                }),
                            ),
                            None => (status, detail),
                        }
                    }
                    other => other,
                },
                (_, None) => ("DOWN".to_string(), Some("not probed".to_string())),
            };
            let tls_issue = p
                .and_then(|p| p.tls_cert_file.as_deref())
                .zip(current_dir(s.node))
                .filter(|(file, dir)| !std::path::Path::new(file).starts_with(dir))
                .map(|(file, _)| {
                    format!(
                        "serves `{file}`, not the cluster's current material: run `cluster \
                         tls set` again"
                    )
                });
            if status == OK {
                if s.role == Role::Master {
                    ok_masters += 1;
                    counted.push(s.id);
                    keys += p.map(|p| p.info.keys()).unwrap_or(0);
                }
            } else {
                all_ok = false;
            }
            // Serving, its keys counted, yet one node from losing them: said on its row.
            let (status, detail) = match unprotected.iter().find(|u| u.shard == s.id) {
                Some(u) if status == OK => (
                    NO_REPLICA_ELSEWHERE.to_string(),
                    Some(format!(
                        "{}: losing node:{} loses its data; no command adds a replica to a database that runs (`status`'s hint says what works)",
                        u.why(),
                        u.node
                    )),
                ),
                _ => (status, detail),
            };
            report.shards.push(ShardRow {
                db_id: db.id,
                name: db.config.name.clone(),
                id: s.id,
                node: s.node,
                role: s.role,
                live_role: p
                    .and_then(|p| p.info.get("role"))
                    .map(|r| if r == "slave" { "replica" } else { r }.to_string()),
                slots: s.slots,
                used_memory: p.and_then(|p| p.info.get_u64("used_memory")),
                status,
                port: s.port,
                // Another program on the port: no pid is the shard's (the recorded one
                // is not what runs there; the program's own is named in the detail,
                // apart from the shard's figures, as its keys and role are).
                pid: match taken.get(&s.id) {
                    Some(_) => None,
                    None => p
                        .and_then(|p| p.info.get_u64("process_id"))
                        .map(|p| p as u32)
                        .or_else(|| leftovers.get(&s.id).copied())
                        .or(s.pid),
                },
                keys: p.filter(|p| p.up).map(|p| p.info.keys()),
                engine: p.filter(|p| p.up).and_then(|p| p.info.engine()),
                detail,
                tls: db.config.tls,
                tls_issue,
            });
        }
        for (master, n) in promoted {
            if master.is_some_and(|m| !counted.contains(&m)) {
                keys += n;
            }
        }
        // Shards of one database on different engines or versions: replication and
        // the cluster bus between them are not something either engine promises.
        let engines: std::collections::BTreeSet<String> = report
            .shards
            .iter()
            .filter(|r| r.db_id == db.id)
            .filter_map(|r| r.engine.clone())
            .collect();
        let status = match db.state {
            DbState::PendingRecovery => db.state.to_string(),
            DbState::Active if all_ok && engines.len() > 1 => format!(
                "active, mixed engines: {}",
                engines.into_iter().collect::<Vec<_>>().join(", ")
            ),
            DbState::Active if all_ok => "active".to_string(),
            DbState::Active if ok_masters == 0 => "down".to_string(),
            // Some master or replica unanswered: part of the key space or of its copies
            // is unreachable.
            DbState::Active => "degraded".to_string(),
        };
        let unserved_slots = match db.state {
            DbState::Active => super::slot_check::unserved_slots(db, &probes),
            DbState::PendingRecovery => Vec::new(),
        };
        // Slots nobody serves while every shard says OK (a view the shards disagree
        // on): part of the key space is unreachable.
        let status = match unserved_slots.is_empty() || status != "active" {
            true => status,
            false => "degraded".to_string(),
        };
        // What the servers say of their cluster, beside what the rows make of it.
        let cluster_down = match db.state {
            DbState::Active => super::slot_check::cluster_down(db, &probes),
            DbState::PendingRecovery => None,
        };
        let status = match &cluster_down {
            Some(c) => format!("{status}, cluster_state:{}", c.state),
            None => status,
        };
        let status = match unprotected.is_empty() {
            true => status,
            false => format!(
                "{status}, no replica on another node: {}",
                unprotected
                    .iter()
                    .map(|u| format!("redis:{}", u.shard))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut nodes: Vec<Id> = db.shards.iter().map(|s| s.node).collect();
        nodes.sort();
        nodes.dedup();
        let endpoint_node = db.masters().next().map(|s| s.node).unwrap_or(0);
        let endpoint = endpoint(cluster, db);
        let cert = cluster.tls.as_ref().filter(|_| db.config.tls);
        report.endpoints.push(EndpointRow {
            db_id: db.id,
            name: db.config.name.clone(),
            id: format!("endpoint:{}:1", db.id),
            node: endpoint_node,
            role: if db.config.shards > 1 {
                "all-master-shards"
            } else {
                "single"
            },
            ssl: db.config.tls,
            address: endpoint.clone(),
            status: match db.masters().next().and_then(|m| probes.get(&m.id)) {
                Some(p) if p.up => OK.to_string(),
                _ if db
                    .masters()
                    .next()
                    .is_some_and(|m| taken.contains_key(&m.id)) =>
                {
                    PORT_TAKEN.to_string()
                }
                _ if db.state == DbState::PendingRecovery => db.state.to_string(),
                _ => "DOWN".to_string(),
            },
            cert_expires: cert.map(|t| crate::tls::utc(served(t, &nodes, &facts).0.cert_not_after)),
            tls_issue: cert.and_then(|t| {
                let (served, problem) = served(t, &nodes, &facts);
                problem.or_else(|| endpoint_tls_issue(&served, now))
            }),
        });
        report.databases.push(DatabaseRow {
            id: db.id,
            name: db.config.name.clone(),
            kind: db_type(cluster, db, &probes, server_version),
            status,
            shards: db.config.shards,
            placement: if nodes.len() > 1 { "sparse" } else { "dense" },
            replication: db.config.replication,
            persistence: db.config.persistence.to_string(),
            endpoint,
            memory_limit: db.config.memory,
            sync_source: db.config.sync_source.as_ref().map(ToString::to_string),
            keys,
            unserved_slots,
            cluster_down,
            unprotected_masters: unprotected,
        });
    }

    report.shards.extend(orphans(cluster));
    report.nodes = node_rows(cluster, &probes, &facts, server_version);
    report
}

/// What answers at a shard's address instead of the shard.
struct PortTaker {
    /// Why it is not the shard, and who it is (its pid among it).
    detail: String,
}

/// The shards whose address another program answers at, with what answered: a server
/// whose `config_file` is not in the shard's own directory ([`served_from`], how
/// recovery tells a live shard from another program) is not the shard, whatever it
/// holds.
fn port_takers(cluster: &Cluster, probes: &BTreeMap<Id, ShardProbe>) -> BTreeMap<Id, PortTaker> {
    let mut taken = BTreeMap::new();
    for db in cluster.databases.values() {
        for s in &db.shards {
            let Some(p) = probes.get(&s.id).filter(|p| p.up) else {
                continue;
            };
            let Err(why) = served_from(&p.info, db.id, s.id) else {
                continue;
            };
            let who = match (p.info.get_u64("process_id"), p.info.get("executable")) {
                (Some(pid), Some(exe)) if !exe.is_empty() => format!("pid {pid}, `{exe}`"),
                (Some(pid), _) => format!("pid {pid}"),
                (None, _) => "pid unknown".to_string(),
            };
            let detail = format!(
                "port {} is held by another program ({who}), not redis:{}: it {why}",
                s.port, s.id
            );
            taken.insert(s.id, PortTaker { detail });
        }
    }
    taken
}

/// The shards of active databases holding data a restore set aside and did not put
/// back: every shard on this machine (a directory listing), and those on other hosts
/// that do not answer (a fenced or stopped shard; a round trip each, all at once).
async fn set_aside_shards(
    cluster: &Cluster,
    probes: &BTreeMap<Id, ShardProbe>,
) -> BTreeMap<Id, crate::server::SetAside> {
    let wanted = |db: &Database, s: &Shard, local: bool| {
        db.state == DbState::Active && (local || !probes.get(&s.id).is_some_and(|p| p.up))
    };
    ask_shard_dirs(cluster, wanted, |host, dir| async move {
        crate::server::SetAside::in_dir(&*host, &dir).await
    })
    .await
}

/// The shards of active databases that do not answer Lazarus and hold a restore's fence
/// file (its password in their `requirepass`, so every client gets `NOAUTH`).
async fn fenced_shards(cluster: &Cluster, probes: &BTreeMap<Id, ShardProbe>) -> BTreeMap<Id, ()> {
    let wanted = |db: &Database, s: &Shard, _: bool| {
        db.state == DbState::Active && probes.get(&s.id).is_some_and(|p| !p.up)
    };
    ask_shard_dirs(cluster, wanted, |host, dir| async move {
        fenced(&*host, &dir).await.then_some(())
    })
    .await
}

/// What a fenced shard of `db` says: the restore task that fenced it (the latest of the
/// database's tasks that started and did not succeed) and the way out.
fn fence_detail(cluster: &Cluster, db: &Database) -> String {
    use crate::ccs::RestoreState as S;
    let task = cluster
        .backups
        .restores
        .values()
        .filter(|t| t.db == db.config.name)
        .filter(|t| matches!(t.state, S::Running | S::Failed | S::Interrupted))
        .max_by_key(|t| t.created);
    match task {
        Some(t) => format!(
            "restore task `{0}` ({1}) fenced the shard, so clients get NOAUTH, and did not finish: `restore task retry {0}` empties it and restores again, `restore task delete {0}` empties what it wrote, unfences it and drops the task",
            t.name, t.state
        ),
        None => "a restore fenced the shard, so clients get NOAUTH, and did not finish: no restore task of this database is left to finish it".to_string(),
    }
}

/// The shards of databases pending recovery where a recovery cut short (killed) left
/// the server it started running, with its pid: found as the next recovery finds them
/// before stopping them ([`recovery_leftover`]), on each shard's host, all at once.
async fn recovery_leftovers(cluster: &Cluster) -> BTreeMap<Id, u32> {
    let wanted = |db: &Database, _: &Shard, _: bool| db.state == DbState::PendingRecovery;
    ask_shard_dirs(cluster, wanted, |host, dir| async move {
        recovery_leftover(&*host, &dir).await
    })
    .await
}

/// What `ask` finds in the directory of each shard `wanted` picks (by its database,
/// itself, and whether its node is this machine), asked on the node's host, all at once.
async fn ask_shard_dirs<T, Fut>(
    cluster: &Cluster,
    wanted: impl Fn(&Database, &Shard, bool) -> bool,
    ask: impl Fn(std::sync::Arc<dyn crate::host::Host>, std::path::PathBuf) -> Fut,
) -> BTreeMap<Id, T>
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let hosts = cluster.hosts().unwrap_or_default();
    let mut asks = Vec::new();
    for db in cluster.databases.values() {
        for s in &db.shards {
            let Some(node) = cluster.nodes.get(&s.node) else {
                continue;
            };
            let host = hosts.of(node.id);
            if !wanted(db, s, host.is_local()) {
                continue;
            }
            let found = ask(host, node.shard_dir(db.id, s.id));
            asks.push(async move { found.await.map(|t| (s.id, t)) });
        }
    }
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// What a node's own machine says: cores, memory, whether the persistent path is there.
struct NodeFacts {
    cores: usize,
    memory: crate::host::Memory,
    /// `OK`, or why not.
    status: String,
    /// With TLS: the expiry of the certificate installed on the node, read there (not
    /// the record's), or why it could not be read.
    cert_not_after: Option<Result<i64, String>>,
}

/// The cluster's TLS record as `nodes` serve it: the earliest expiry read on their disks
/// (the record's when none could be read), and what is wrong with a node's copy.
fn served(
    record: &crate::ccs::TlsConfig,
    nodes: &[Id],
    facts: &BTreeMap<Id, NodeFacts>,
) -> (crate::ccs::TlsConfig, Option<String>) {
    let mut served = record.clone();
    let mut problem = None;
    let mut earliest: Option<i64> = None;
    for node in nodes {
        match facts.get(node).and_then(|f| f.cert_not_after.as_ref()) {
            Some(Ok(t)) => {
                earliest = Some(earliest.map_or(*t, |e| e.min(*t)));
                if *t != record.cert_not_after {
                    problem.get_or_insert(format!(
                        "node:{node}'s certificate expires on {}, the cluster's on {}: run `cluster tls set` again",
                        crate::tls::utc(*t),
                        crate::tls::utc(record.cert_not_after)
                    ));
                }
            }
            Some(Err(why)) => {
                problem.get_or_insert(format!("node:{node}'s certificate: {why}"));
            }
            None => {}
        }
    }
    if let Some(t) = earliest {
        served.cert_not_after = t;
    }
    (served, problem)
}

/// Asks every node's machine at once (one SSH connection per host): a slow or lost host
/// delays only its own row, never beyond `HOST_TIMEOUT`.
async fn node_facts(cluster: &Cluster) -> BTreeMap<Id, NodeFacts> {
    const HOST_TIMEOUT: Duration = Duration::from_secs(15);
    let hosts = cluster.hosts().unwrap_or_default();
    let mut tasks = Vec::new();
    for node in cluster.nodes.values() {
        let host = hosts.of(node.id);
        let path = node.persistent_path.clone();
        let cert = cluster
            .tls
            .as_ref()
            .map(|t| crate::tls::installed_dir(&node.persistent_path, t).join("cert.crt"));
        tasks.push((
            node.id,
            tokio::spawn(async move {
                let ask = async {
                    let read_cert = async {
                        let cert = cert.as_ref()?;
                        Some(match host.read(cert).await {
                            Ok(pem) => crate::tls::cert_not_after(&pem).ok_or_else(|| {
                                format!(
                                    "`{}` on {} holds no certificate",
                                    cert.display(),
                                    host.name()
                                )
                            }),
                            Err(e) => Err(format!("`{}` on {}: {e}", cert.display(), host.name())),
                        })
                    };
                    let (cores, memory, meta, cert_not_after) =
                        tokio::join!(host.cores(), host.memory(), host.metadata(&path), read_cert);
                    let status = match meta {
                        Ok(m) if m.kind == crate::host::FileKind::Dir => OK.to_string(),
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            format!("{} does not answer: {e}", host.name())
                        }
                        _ => format!("persistent path `{}` missing", path.display()),
                    };
                    NodeFacts {
                        cores,
                        memory,
                        status,
                        cert_not_after,
                    }
                };
                tokio::time::timeout(HOST_TIMEOUT, ask)
                    .await
                    .unwrap_or_else(|_| NodeFacts {
                        cores: 0,
                        memory: Default::default(),
                        status: format!(
                            "{} did not answer within {}s",
                            host.name(),
                            HOST_TIMEOUT.as_secs()
                        ),
                        cert_not_after: None,
                    })
            }),
        ));
    }
    let mut out = BTreeMap::new();
    for (id, task) in tasks {
        if let Ok(facts) = task.await {
            out.insert(id, facts);
        }
    }
    out
}

/// The engine `db`'s shards run, `redis` or `valkey`: as each answers (its
/// `valkey_version` or `server_name`), else as its node's own binary was recorded, else
/// the local binary's (`server_version`, `valkey 8.1.8`); the engines joined by `,` when
/// they differ (its status then says `mixed engines`).
fn db_type(
    cluster: &Cluster,
    db: &Database,
    probes: &BTreeMap<Id, ShardProbe>,
    server_version: Option<&str>,
) -> String {
    let local = server_version.and_then(|v| v.split_whitespace().next());
    let engines: std::collections::BTreeSet<&str> = db
        .shards
        .iter()
        .filter_map(|s| {
            let live = probes
                .get(&s.id)
                .filter(|p| p.up)
                .and_then(|p| p.info.engine_version())
                .map(|(e, _)| e);
            live.or_else(|| {
                let own = cluster.nodes.get(&s.node)?.redis_server.as_ref()?;
                Some(own.engine.as_str())
            })
            .or(local)
        })
        .collect();
    match engines.is_empty() {
        true => "redis".to_string(),
        false => engines.into_iter().collect::<Vec<_>>().join(","),
    }
}

/// One row per node: its shards, its machine's cores and memory, the `redis-server`
/// version a live shard reports (else the node's own binary's, else `server_version`),
/// whether its persistent path is there.
fn node_rows(
    cluster: &Cluster,
    probes: &BTreeMap<Id, ShardProbe>,
    facts: &BTreeMap<Id, NodeFacts>,
    server_version: Option<&str>,
) -> Vec<NodeRow> {
    let mut rows = Vec::new();
    for node in cluster.nodes.values() {
        let shards: Vec<Id> = cluster
            .databases
            .values()
            .flat_map(|d| d.shards.iter())
            .filter(|s| s.node == node.id)
            .map(|s| s.id)
            .collect();
        let live_version = shards
            .iter()
            .filter_map(|id| probes.get(id))
            .find_map(|p| p.info.engine());
        let (cores, memory, status) = match facts.get(&node.id) {
            Some(f) => (f.cores, f.memory, f.status.clone()),
            None => (0, Default::default(), "not probed".to_string()),
        };
        let local = node.id == cluster.local_node;
        rows.push(NodeRow {
            id: node.id,
            local,
            role: if local { "master" } else { "slave" },
            address: node.addr.clone(),
            shards: shards.len(),
            cores,
            free_ram: memory.available,
            total_ram: memory.total,
            version: live_version
                .or_else(|| {
                    let own = node.redis_server.as_ref()?;
                    Some(format!("{} {}", own.engine, own.version))
                })
                .or_else(|| server_version.map(str::to_string)),
            status,
            persistent_path: node.persistent_path.display().to_string(),
            port_range: node.port_range.to_string(),
        });
    }
    rows
}

/// Servers running in shard directories the CCS does not know (an interrupted `create db`,
/// a deleted database whose shard could not be stopped): they hold ports and memory and
/// nothing else would show them.
fn orphans(cluster: &Cluster) -> Vec<ShardRow> {
    let known: std::collections::BTreeSet<(Id, Id)> = cluster
        .databases
        .values()
        .flat_map(|d| d.shards.iter().map(move |s| (d.id, s.id)))
        .collect();
    let mut rows = Vec::new();
    // Only this machine's directories are walked: over SSH that is a round trip per
    // directory, for servers that are Lazarus's own leftovers.
    for node in cluster.nodes.values().filter(|n| n.ssh.is_none()) {
        for (db_id, db_dir) in db_dirs_in(&node.persistent_path) {
            for (shard_id, dir) in shard_dirs_in(&db_dir) {
                if known.contains(&(db_id, shard_id)) {
                    continue;
                }
                let dir = ShardDir::at(node.id, dir);
                let Some(pid) = dir.pid() else {
                    continue;
                };
                let identity: Option<crate::ccs::ShardIdentity> = dir.read_identity().found();
                rows.push(ShardRow {
                    db_id,
                    name: identity
                        .as_ref()
                        .map_or("?".to_string(), |i| i.db.name.clone()),
                    id: shard_id,
                    node: node.id,
                    role: identity.as_ref().map_or(Role::Master, |i| i.role),
                    live_role: None,
                    slots: identity.as_ref().and_then(|i| i.slots),
                    used_memory: None,
                    status: "ORPHAN".to_string(),
                    port: identity.as_ref().map_or(0, |i| i.port),
                    pid: Some(pid),
                    keys: None,
                    engine: None,
                    tls: identity.as_ref().is_some_and(|i| i.db.tls),
                    tls_issue: None,
                    detail: Some(format!(
                        "pid {pid} runs in `{}`, which the configuration does not know (left \
                         by a create that was killed?): stop it with `kill {pid}`",
                        dir.path().display()
                    )),
                });
            }
        }
    }
    rows
}

/// A TLS endpoint's certificate expiring within [`CERT_WARN_DAYS`] (or expired), or the
/// operator's `tls_verify off`.
fn endpoint_tls_issue(t: &crate::ccs::TlsConfig, now: i64) -> Option<String> {
    let left = t.cert_not_after - now;
    if left <= 0 {
        return Some(format!(
            "certificate expired on {}",
            crate::tls::utc(t.cert_not_after)
        ));
    }
    if left < CERT_WARN_DAYS * 86_400 {
        return Some(format!(
            "certificate expires on {} (in {} days): rotate it with `cluster tls set`",
            crate::tls::utc(t.cert_not_after),
            left / 86_400
        ));
    }
    (!t.verify).then(|| "tls_verify off: the shards' certificates are not checked".to_string())
}

fn shard_status(role: Role, p: &ShardProbe, tls: bool) -> (String, Option<String>) {
    if !p.up {
        if tls && p.tls_refused {
            return (TLS_REFUSED.to_string(), p.error.clone());
        }
        return ("DOWN".to_string(), p.error.clone());
    }
    if p.info.get("loading") == Some("1") {
        return ("LOADING".to_string(), None);
    }
    let live_replica = p.info.get("role") == Some("slave");
    if live_replica && p.info.get("master_link_status") != Some("up") {
        let detail = format!(
            "link to master `{}:{}` is down",
            p.info.get("master_host").unwrap_or("?"),
            p.info.get("master_port").unwrap_or("?")
        );
        return ("SYNCING".to_string(), Some(detail));
    }
    if role == Role::Replica && !live_replica {
        return (
            NOT_REPLICATING.to_string(),
            Some("configured as a replica, runs as a master".to_string()),
        );
    }
    if let Some(state) = p.cluster_state.as_deref().filter(|s| *s != "ok") {
        return (
            CLUSTER_FAIL.to_string(),
            Some(format!("`cluster_state:{state}`")),
        );
    }
    (OK.to_string(), None)
}
