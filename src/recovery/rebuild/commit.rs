//! Storing a rebuilt configuration: only into an empty home, under the store's lock, and
//! never over a node backup that is another cluster's or newer than what is written.

use std::fs;
use std::path::{Path, PathBuf};

use crate::ccs::{Cluster, Id, NodeServer, Store, StoreLock};

use super::{from_backup, from_identities, FromBackup, FromIdentities, RebuildError, Rebuilt};

/// The two forms of `cluster recover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoverRequest {
    Backup(FromBackup),
    Identities(FromIdentities),
}

/// A rebuilt configuration not stored yet, the home's lock held: what the caller checks
/// before anything is written (a TLS recovery asks its nodes' binaries), then
/// [`Staged::commit`].
pub struct Staged {
    lock: StoreLock,
    rebuilt: Rebuilt,
}

/// Rebuilds the configuration for `store`'s home, which must hold no cluster, and holds
/// the home's lock until it is stored or dropped. Nothing is written. `local_server`
/// (checked by the caller) becomes this machine's node's binary.
pub fn stage(
    store: &Store,
    req: &RecoverRequest,
    local_server: Option<NodeServer>,
) -> Result<Staged, RebuildError> {
    let lock = store.lock()?;
    if let Some(existing) = lock.load()? {
        return Err(RebuildError::ClusterExists {
            home: store.home().to_path_buf(),
            name: existing.name,
            cluster_id: existing.cluster_id,
        });
    }
    let mut rebuilt = match req {
        RecoverRequest::Backup(req) => from_backup(req)?,
        RecoverRequest::Identities(req) => from_identities(req, store.home())?,
    };
    adopt_live(&mut rebuilt);
    if let Some(server) = local_server {
        let local = rebuilt.cluster.local_node;
        if let Some(node) = rebuilt.cluster.nodes.get_mut(&local) {
            rebuilt.notes.push(format!(
                "`node:{local}` runs its shards with {}",
                server.describe()
            ));
            node.redis_server = Some(server);
        }
    }
    Ok(Staged { lock, rebuilt })
}

impl Staged {
    /// The configuration that [`Staged::commit`] stores.
    pub fn cluster(&self) -> &Cluster {
        &self.rebuilt.cluster
    }

    /// The cluster's TLS material from now on: `cluster recover` given material, installed
    /// on every node before it is stored.
    pub fn set_tls(&mut self, record: crate::ccs::TlsConfig) {
        self.rebuilt.cluster.tls = Some(record);
    }

    /// Stores the configuration: the store writes the home's document and every node's
    /// `ccs/` backup.
    pub fn commit(self) -> Result<Rebuilt, RebuildError> {
        let Staged { lock, mut rebuilt } = self;
        // The store writes the home first and the node backups after: make sure every
        // backup directory can exist before the home is written, so a bad path changes
        // nothing.
        for node in rebuilt.cluster.nodes.values().filter(|n| n.ssh.is_none()) {
            fs::create_dir_all(node.ccs_backup_dir()).map_err(|e| RebuildError::BadPath {
                path: node.persistent_path.clone(),
                reason: format!("cannot create it for `node:{}`: {e}", node.id),
            })?;
        }
        let mut earlier = check_backup_targets(&rebuilt.cluster, false, |_, path| fs::read(path))?;
        if rebuilt.cluster.nodes.values().any(|n| n.ssh.is_some()) {
            // A host that does not answer (its machine lost) must not keep the
            // configuration of every other node from coming back: its node is stored, and
            // said so.
            let (silent, remote_earlier) = prepare_remote(&rebuilt.cluster)?;
            for (node, target, why) in silent {
                rebuilt.problems.push(format!(
                    "`node:{node}` does not answer ({target}: {why}): its shards cannot recover there; if its machine is lost for good, `node {node} remove` places them on the nodes left"
                ));
            }
            earlier.extend(remote_earlier);
        }
        continue_earlier(&mut rebuilt, &earlier);
        lock.save(&mut rebuilt.cluster)?;
        Ok(rebuilt)
    }
}

/// Rebuilds the configuration and stores it: [`stage`], then [`Staged::commit`].
pub fn recover(
    store: &Store,
    req: &RecoverRequest,
    local_server: Option<NodeServer>,
) -> Result<Rebuilt, RebuildError> {
    stage(store, req, local_server)?.commit()
}

/// A node backup that an earlier `cluster recover` of the same disks stored and nothing
/// changed since (its home lost, or the command run again into a new home): the same
/// configuration but for its generation and allocator.
struct Earlier {
    /// As the operator names it (`ssh://host/...` on another host).
    shown: String,
    generation: u64,
    alloc_id: Id,
}

/// Whether `old` (a node backup) is `new` as an earlier recovery stored it, unchanged
/// since: equal in everything but the counters a store moves.
fn unchanged_since(old: &Cluster, new: &Cluster) -> bool {
    let old = Cluster {
        generation: new.generation,
        alloc_id: new.alloc_id,
        ..old.clone()
    };
    &old == new
}

/// The recovery goes on from the earlier one's backups rather than beside them: a
/// generation above theirs, and their allocator when no id found is at or above it (the
/// earlier recovery already left room above the disks' ids, and handed out none since),
/// so running it again stores the same configuration.
fn continue_earlier(rebuilt: &mut Rebuilt, earlier: &[Earlier]) {
    let Some(generation) = earlier.iter().map(|e| e.generation).max() else {
        return;
    };
    rebuilt.cluster.generation = rebuilt.cluster.generation.max(generation);
    let alloc_id = earlier.iter().map(|e| e.alloc_id).max().unwrap_or(0);
    let room = rebuilt
        .alloc
        .largest
        .as_ref()
        .is_none_or(|l| l.id < alloc_id);
    if !rebuilt.alloc.given && room && alloc_id > 0 {
        rebuilt.alloc.alloc_id = alloc_id;
        rebuilt.cluster.alloc_id = alloc_id;
    }
    for e in earlier {
        rebuilt.notes.push(format!(
            "`{}` holds this same configuration, stored by an earlier `cluster recover` of these disks (generation {}) and unchanged since: it is stored again, as generation {} (if the home that stored it is still there, use that one and remove this one: two homes would both write these backups)",
            e.shown,
            e.generation,
            rebuilt.cluster.generation + 1
        ));
    }
}

/// Databases whose shards still run (only the home was lost) are adopted as they are,
/// never left for a recovery over them (see [`crate::recovery::live`]).
fn adopt_live(rebuilt: &mut Rebuilt) {
    let ids: Vec<_> = rebuilt.cluster.databases.keys().copied().collect();
    // A host that cannot be set up answers as this machine would not: nothing adopted.
    let hosts = rebuilt.cluster.hosts().unwrap_or_default();
    let answers = crate::recovery::live::probe_blocking(&hosts, &rebuilt.cluster, &ids);
    let mut notes = Vec::new();
    let adopted = crate::recovery::live::adopt(&mut rebuilt.cluster, &answers, &mut notes);
    if adopted.is_empty() {
        return;
    }
    // What the rebuild decided for a node whose shards run is replaced by where they run.
    let kept: Vec<String> = rebuilt
        .cluster
        .nodes
        .keys()
        .filter(|id| {
            notes
                .iter()
                .any(|n| n.starts_with(&format!("`node:{id}` ")))
        })
        .map(|id| format!("`node:{id}` "))
        .collect();
    rebuilt
        .notes
        .retain(|n| !kept.iter().any(|k| n.starts_with(k.as_str())));
    rebuilt
        .problems
        .retain(|n| !kept.iter().any(|k| n.starts_with(k.as_str())));
    rebuilt.notes.extend(notes);
    rebuilt.notes.extend(adopted.iter().map(|a| a.line()));
    for (db, shard, what) in crate::recovery::live::others(&answers) {
        rebuilt
            .problems
            .push(format!("db:{db} redis:{shard}: {what}"));
    }
}

/// Nodes on other hosts that do not answer: each with its target and why.
type Silent = Vec<(Id, String, String)>;

/// [`recover`]'s preparation of the nodes on other hosts, through their hosts: their
/// backup directories made, what their backups would replace checked. The nodes whose
/// host does not answer are left out, returned with their target and why; a host that
/// answers with a wrong host key is refused, never left out. Also returns the backups
/// there that an earlier recovery stored, unchanged since.
fn prepare_remote(cluster: &Cluster) -> Result<(Silent, Vec<Earlier>), RebuildError> {
    super::off_runtime(|| {
        let hosts = cluster.hosts().map_err(|e| RebuildError::BadPath {
            path: PathBuf::new(),
            reason: format!("no private directory for the ssh connections: {e}"),
        })?;
        let rt = tokio::runtime::Handle::current();
        let mut silent = Vec::new();
        for node in cluster.nodes.values().filter(|n| n.ssh.is_some()) {
            let host = hosts.of(node.id);
            match rt.block_on(host.create_private_dir(&node.ccs_backup_dir())) {
                Ok(()) => {}
                Err(e) if does_not_answer(&e) => {
                    silent.push((node.id, host.name(), e.to_string()));
                }
                Err(e) => {
                    return Err(RebuildError::BadPath {
                        path: node.persistent_path.clone(),
                        reason: format!(
                            "cannot create it for `node:{}` on {}: {e}",
                            node.id,
                            host.name()
                        ),
                    })
                }
            }
        }
        let earlier = check_backup_targets(cluster, true, |node, path| {
            if silent.iter().any(|(n, ..)| *n == node) {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            rt.block_on(hosts.of(node).read(path))
        })?;
        Ok((silent, earlier))
    })
}

/// The host is down or gone: no connection, or one that dropped. A host that answers with
/// an unknown or changed host key is not this.
fn does_not_answer(e: &std::io::Error) -> bool {
    use crate::host::ssh::SshError;
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<SshError>())
    {
        Some(SshError::Unreachable { .. } | SshError::Dropped { .. }) => true,
        Some(_) => false,
        None => crate::host::unreachable(e),
    }
}

/// Refuses to store when a node's `ccs/ccs.json` would replace a document that is not an
/// older backup of this same cluster: another cluster's configuration, something
/// unreadable, or a newer backup (which the operator should recover from instead) unless
/// it is this very configuration as an earlier recovery stored it, unchanged since
/// (returned). The nodes on other hosts (`remote`) or those of this machine, read with
/// `read`.
fn check_backup_targets(
    cluster: &Cluster,
    remote: bool,
    read: impl Fn(Id, &Path) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<Earlier>, RebuildError> {
    let mut earlier = Vec::new();
    for node in cluster.nodes.values().filter(|n| n.ssh.is_some() == remote) {
        let path = node.ccs_backup_dir().join("ccs.json");
        let refuse = |reason: String| RebuildError::BackupTarget {
            path: path.clone(),
            reason,
        };
        let bytes = match read(node.id, &path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(refuse(e.to_string())),
        };
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| refuse(format!("it is not a CCS document ({e})")))?;
        let id = crate::ccs::model::cluster_id_text::of(&doc);
        if id != Some(cluster.cluster_id) {
            return Err(refuse(match id {
                Some(id) => format!("it holds the configuration of cluster_id {id}"),
                None => "it is not a CCS document".into(),
            }));
        }
        let generation = doc.get("generation").and_then(|v| v.as_u64()).unwrap_or(0);
        if generation > cluster.generation {
            let old = serde_json::from_value::<Cluster>(doc).ok();
            if let Some(old) = old.filter(|old| unchanged_since(old, cluster)) {
                let shown = match &node.ssh {
                    Some(t) => format!("ssh://{t}{}", path.display()),
                    None => path.display().to_string(),
                };
                earlier.push(Earlier {
                    shown,
                    generation: old.generation,
                    alloc_id: old.alloc_id,
                });
                continue;
            }
            return Err(refuse(format!(
                "it is a newer backup of this cluster (generation {generation}, recovering {}): recover from it with `cluster recover filename {}`; it differs from the configuration recovered now, so it is never replaced: move its `ccs/` aside to recover again",
                cluster.generation,
                quote_path(&path)
            )));
        }
    }
    Ok(earlier)
}

fn quote_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(char::is_whitespace) || text.contains('"') {
        format!("{text:?}")
    } else {
        text
    }
}
