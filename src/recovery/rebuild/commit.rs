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
        check_backup_targets(&rebuilt.cluster, false, |_, path| fs::read(path))?;
        if rebuilt.cluster.nodes.values().any(|n| n.ssh.is_some()) {
            // A host that does not answer (its machine lost) must not keep the
            // configuration of every other node from coming back: its node is stored, and
            // said so.
            for (node, target, why) in prepare_remote(&rebuilt.cluster)? {
                rebuilt.problems.push(format!(
                    "`node:{node}` does not answer ({target}: {why}): its shards cannot recover there; if its machine is lost for good, `node {node} remove` places them on the nodes left"
                ));
            }
        }
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

/// [`recover`]'s preparation of the nodes on other hosts, through their hosts: their
/// backup directories made, what their backups would replace checked. The nodes whose
/// host does not answer are left out, returned with their target and why; a host that
/// answers with a wrong host key is refused, never left out.
fn prepare_remote(cluster: &Cluster) -> Result<Vec<(Id, String, String)>, RebuildError> {
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
        check_backup_targets(cluster, true, |node, path| {
            if silent.iter().any(|(n, ..)| *n == node) {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            rt.block_on(hosts.of(node).read(path))
        })?;
        Ok(silent)
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
/// unreadable, or a newer backup (which the operator should recover from instead). The
/// nodes on other hosts (`remote`) or those of this machine, read with `read`.
fn check_backup_targets(
    cluster: &Cluster,
    remote: bool,
    read: impl Fn(Id, &Path) -> std::io::Result<Vec<u8>>,
) -> Result<(), RebuildError> {
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
            return Err(refuse(format!(
                "it is a newer backup of this cluster (generation {generation}, recovering {}): recover from it with `cluster recover filename {}`",
                cluster.generation,
                quote_path(&path)
            )));
        }
    }
    Ok(())
}

fn quote_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(char::is_whitespace) || text.contains('"') {
        format!("{text:?}")
    } else {
        text
    }
}
