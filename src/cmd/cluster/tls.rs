//! `cluster tls set cacert <path> cert <path> key <path> [tls_verify on|off]`: the
//! cluster's TLS material, checked, copied into every node's persistent path, recorded
//! in the CCS by path and fingerprint.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::super::{
    Command, CommandError, CommandSyntax, Context, Element, Match, Opt, ParseError, Render, Reply,
    Text, ValueKind,
};
use super::ClusterCommand;
use crate::ccs::{rules, Cluster, DbState, Id};
use crate::lang::quote;
use crate::server::connect;
use crate::tls::{self, MaterialPaths};

const ON_OFF: &[&str] = &["on", "off"];

/// `cluster tls set ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSet {
    pub paths: MaterialPaths,
    /// `Some(false)` only when `tls_verify off` is written.
    pub verify: Option<bool>,
}

pub(super) const SET: CommandSyntax = CommandSyntax {
    elements: &[
        Element::Keyword("cluster"),
        Element::Keyword("tls"),
        Element::Keyword("set"),
        Element::Options(&[
            Opt::required("cacert", "path", ValueKind::Path),
            Opt::required("cert", "path", ValueKind::Path),
            Opt::required("key", "path", ValueKind::Path),
            Opt::optional("tls_verify", "mode", ValueKind::Choice(ON_OFF)),
        ]),
    ],
    summary: "set or rotate the cluster's TLS material (CA certificate, certificate, key)",
    examples: &[
        "cluster tls set cacert /etc/lazarus/ca.crt cert /etc/lazarus/redis.crt key /etc/lazarus/redis.key",
        "cluster tls set cacert ca.crt cert redis.crt key redis.key tls_verify off",
    ],
    build: build_set,
};

fn build_set(m: &Match) -> Result<Command, ParseError> {
    Ok(Command::Cluster(ClusterCommand::TlsSet(TlsSet {
        paths: MaterialPaths {
            cacert: m.req("cacert")?,
            cert: m.req("cert")?,
            key: m.req("key")?,
        },
        verify: m.opt::<&str>("tls_verify").map(|v| v == "on"),
    })))
}

pub(super) async fn apply(ctx: &Context, req: TlsSet) -> Result<Reply, CommandError> {
    let lock = ctx.store.lock()?;
    let Some(mut cluster) = lock.load()? else {
        return Err(CommandError::no_cluster());
    };
    let material = checked(&req.paths, req.verify)?;
    refuse_without_tls(ctx, &cluster).await?;
    let rotated = cluster.tls.is_some();
    let installed = install_everywhere(&cluster, &material).await?;
    let before = cluster.clone();
    cluster.tls = Some(material.record.clone());
    if let Err(e) = lock.save(&mut cluster) {
        installed.undo().await;
        return Err(e.into());
    }
    let installed = installed.nodes();
    let shards = if rotated {
        rotate(&before, &cluster).await
    } else {
        Vec::new()
    };
    // Once every running shard serves the new files, the old ones are nobody's.
    if shards.iter().all(|s| s.error.is_none()) {
        let hosts = cluster.hosts().unwrap_or_default();
        for node in cluster.nodes.values() {
            if hosts.is_remote(node.id) {
                let _ = tls::remove_other_material_on(
                    &*hosts.of(node.id),
                    &node.persistent_path,
                    &material.record,
                )
                .await;
                continue;
            }
            let _ = tls::remove_other_material(&node.persistent_path, &material.record);
        }
    }
    let missed: Vec<String> = shards
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| format!("redis:{}", s.shard))
        .collect();
    let reply = Reply::of(&TlsSetDone {
        rotated,
        material_id: material.record.material_id(),
        cert_not_after: tls::utc(material.record.cert_not_after),
        cacert_sha256: material.record.cacert.sha256.clone(),
        cert_sha256: material.record.cert.sha256.clone(),
        verify: material.record.verify,
        nodes: installed,
        shards,
    })?;
    if missed.is_empty() {
        return Ok(reply);
    }
    Ok(reply.failed(
        CommandError::unavailable(format!(
            "{} shard(s) did not take the new material: {}",
            missed.len(),
            missed.join(", ")
        ))
        .hinted("`status shards extra all` says why; `restart db <db>` starts them with it"),
    ))
}

/// Every node's server binary must be a TLS build before material is installed: a TLS
/// database's shards cannot start with one that is not. Asked with the one probe
/// ([`crate::server::Servers::refuse_without_tls`]) wherever TLS is turned on: `cluster
/// tls set`, `cluster create` and `cluster recover` given material, and `node add` and
/// `node redis_server set` on a cluster with material. Nothing is changed.
pub(crate) async fn refuse_without_tls(
    ctx: &Context,
    cluster: &Cluster,
) -> Result<(), CommandError> {
    cluster
        .servers(ctx.redis_server.as_deref())?
        .refuse_without_tls(cluster.nodes.keys().copied())
        .await?;
    Ok(())
}

/// Tells every running shard of every active TLS database of `after` to serve its
/// node's new material (one `CONFIG SET` of the three files, then `CONFIG REWRITE`), at
/// once. Lazarus still speaks to them with the material of `before`, which they hold
/// until they take the new one.
async fn rotate(before: &Cluster, after: &Cluster) -> Vec<ShardRotation> {
    let Some(record) = &after.tls else {
        return Vec::new();
    };
    let mut tasks = Vec::new();
    for db in after.databases.values() {
        if !db.config.tls || db.state != DbState::Active {
            continue;
        }
        for s in &db.shards {
            let Some(node) = after.nodes.get(&s.node) else {
                continue;
            };
            let addr = before.shard_addr(db, &node.addr, s.port);
            let shard = tls::ShardTls::new(&tls::installed_dir(&node.persistent_path, record));
            let (db_id, shard_id) = (db.id, s.id);
            tasks.push(tokio::spawn(async move {
                let set = async {
                    let mut con = connect(&addr, ROTATE_TIMEOUT)
                        .await
                        .map_err(|e| e.to_string())?;
                    shard
                        .rotation()
                        .query_async::<()>(&mut con)
                        .await
                        .map_err(|e| e.to_string())?;
                    redis::cmd("CONFIG")
                        .arg("REWRITE")
                        .query_async::<()>(&mut con)
                        .await
                        .map_err(|e| e.to_string())
                };
                let error = match tokio::time::timeout(ROTATE_TIMEOUT, set).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(_) => Some(format!("no answer within {}s", ROTATE_TIMEOUT.as_secs())),
                };
                ShardRotation {
                    db: db_id,
                    shard: shard_id,
                    error,
                }
            }));
        }
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            out.push(r);
        }
    }
    out
}

const ROTATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One shard told to serve rotated material.
#[derive(Serialize)]
pub struct ShardRotation {
    pub db: Id,
    pub shard: Id,
    /// Why it did not take them; `None`: it serves them now.
    pub error: Option<String>,
}

/// The operator's files made absolute and checked (`cluster tls set`, `cluster create`,
/// `cluster recover`); nothing is written.
pub(super) fn checked(
    paths: &MaterialPaths,
    verify: Option<bool>,
) -> Result<tls::Material, CommandError> {
    let paths = MaterialPaths {
        cacert: rules::absolute("cacert", &paths.cacert)?,
        cert: rules::absolute("cert", &paths.cert)?,
        key: rules::absolute("key", &paths.key)?,
    };
    let mut material = tls::check(&paths, unix_now())?;
    material.record.verify = verify.unwrap_or(true);
    Ok(material)
}

/// Copies `material` into every node's persistent path before the CCS names it; a node
/// that cannot take it undoes the others. Returns what was installed, to undo when what
/// follows (storing the configuration) fails.
pub(super) async fn install_everywhere(
    cluster: &Cluster,
    material: &tls::Material,
) -> Result<Installed, CommandError> {
    let hosts = cluster
        .hosts()
        .map_err(|e| CommandError::io(format!("cannot reach the nodes' hosts: {e}")))?;
    let mut installed = Installed {
        hosts: hosts.clone(),
        nodes: Vec::new(),
    };
    for node in cluster.nodes.values() {
        let host = hosts.of(node.id);
        let root = node.persistent_path.join(tls::TLS_DIR);
        let dir = tls::installed_dir(&node.persistent_path, &material.record);
        let before = NodeBefore {
            node: node.id,
            root_fresh: host.metadata(&root).await.is_err(),
            dir_fresh: host.metadata(&dir).await.is_err(),
            current: host.read(&root.join(tls::CURRENT_FILE)).await.ok(),
            root,
            dir,
        };
        let done = if hosts.is_remote(node.id) {
            tls::install_on(&*host, &node.persistent_path, material).await
        } else {
            tls::install(&node.persistent_path, material)
        };
        installed.nodes.push(before);
        if let Err(e) = done {
            installed.undo().await;
            return Err(CommandError::from(e).context(format!("node:{}", node.id)));
        }
    }
    Ok(installed)
}

/// Material [`install_everywhere`] copied onto the nodes, with what each node held
/// before: [`Installed::undo`] puts that back.
pub(super) struct Installed {
    hosts: crate::host::Hosts,
    nodes: Vec<NodeBefore>,
}

/// A node's `tls/` before the material went in.
struct NodeBefore {
    node: Id,
    root: PathBuf,
    /// There was no `tls/` at all.
    root_fresh: bool,
    dir: PathBuf,
    /// The material's directory was not there.
    dir_fresh: bool,
    /// `tls/current.json` as it was (`None`: there was none).
    current: Option<Vec<u8>>,
}

impl Installed {
    /// The nodes that hold the material.
    pub(super) fn nodes(&self) -> Vec<Id> {
        self.nodes.iter().map(|n| n.node).collect()
    }

    /// Puts every node's `tls/` back as it was: what this made removed, the record of
    /// the current material it replaced written back. Best effort: nothing names the
    /// new files once the configuration was not stored.
    pub(super) async fn undo(&self) {
        for n in &self.nodes {
            let host = self.hosts.of(n.node);
            if n.root_fresh {
                let _ = host.remove(&n.root).await;
                continue;
            }
            if n.dir_fresh {
                let _ = host.remove(&n.dir).await;
            }
            let current = n.root.join(tls::CURRENT_FILE);
            let _ = match &n.current {
                Some(bytes) => host.write_private(&current, bytes).await,
                None => host.remove(&current).await,
            };
        }
    }
}

/// `cacert <path> cert <path> key <path>` of `cluster create` / `cluster recover`: all
/// three or none.
pub(super) fn material_opts(m: &Match) -> Result<Option<MaterialPaths>, ParseError> {
    let given: Vec<&str> = ["cacert", "cert", "key"]
        .into_iter()
        .filter(|k| m.has(k))
        .collect();
    if given.is_empty() {
        return Ok(None);
    }
    if given.len() < 3 {
        let missing: Vec<String> = ["cacert", "cert", "key"]
            .into_iter()
            .filter(|k| !given.contains(k))
            .map(|k| format!("`{k}`"))
            .collect();
        return Err(ParseError::new(
            m.span_of(given[0]),
            format!(
                "`cacert`, `cert` and `key` go together: missing {}",
                missing.join(" and ")
            ),
        ));
    }
    Ok(Some(MaterialPaths {
        cacert: m.req("cacert")?,
        cert: m.req("cert")?,
        key: m.req("key")?,
    }))
}

/// ` cacert <path> cert <path> key <path>`, as the canonical text prints them.
pub(super) fn fmt_material(paths: &MaterialPaths, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
        f,
        " cacert {} cert {} key {}",
        quote(&paths.cacert.to_string_lossy()),
        quote(&paths.cert.to_string_lossy()),
        quote(&paths.key.to_string_lossy())
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `cluster tls set`: what was installed where.
#[derive(Serialize)]
pub struct TlsSetDone {
    /// Material replaced the cluster's previous material.
    pub rotated: bool,
    pub material_id: String,
    pub cert_not_after: String,
    pub cacert_sha256: String,
    pub cert_sha256: String,
    pub verify: bool,
    /// Nodes whose persistent path holds the files.
    pub nodes: Vec<Id>,
    /// On a rotation, every running shard of a TLS database: whether it took them.
    pub shards: Vec<ShardRotation>,
}

impl Render for TlsSetDone {
    fn render(&self, text: &mut Text) {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("node:{n}")).collect();
        text.line(format!(
            "{} TLS material {}: certificate valid until {}, installed on {}.",
            if self.rotated { "Rotated to" } else { "Set" },
            self.material_id,
            self.cert_not_after,
            nodes.join(", ")
        ));
        text.line(format!("CA sha256 {}", self.cacert_sha256));
        text.line(format!("certificate sha256 {}", self.cert_sha256));
        if !self.verify {
            text.line("tls_verify off: Lazarus does not check the shards' certificates.");
        }
        let took: Vec<String> = self
            .shards
            .iter()
            .filter(|s| s.error.is_none())
            .map(|s| format!("redis:{}", s.shard))
            .collect();
        if !took.is_empty() {
            text.line(format!(
                "{} took the new material without a restart.",
                took.join(", ")
            ));
        }
        for s in self.shards.iter().filter(|s| s.error.is_some()) {
            text.line(format!(
                "redis:{} of db:{} did not take it: {}; it serves the old material until \
                 `restart db db:{}` (or `cluster tls set` again)",
                s.shard,
                s.db,
                s.error.as_deref().unwrap_or_default(),
                s.db
            ));
        }
    }
}

pub(super) fn fmt(req: &TlsSet, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
        f,
        "cluster tls set cacert {} cert {} key {}",
        quote(&req.paths.cacert.to_string_lossy()),
        quote(&req.paths.cert.to_string_lossy()),
        quote(&req.paths.key.to_string_lossy())
    )?;
    if let Some(verify) = req.verify {
        write!(f, " tls_verify {}", if verify { "on" } else { "off" })?;
    }
    Ok(())
}
