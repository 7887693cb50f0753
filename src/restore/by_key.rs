//! A run restored into another shard layout (or replayed for a server too old to load
//! its files) key by key, one step a method of [`super::Restoring`]: decode the run's files here,
//! fence, write every key with RESTORE routed by slot, check the count, prove, unfence.
//! The database was verified empty, so a failure empties it again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{decode_to, fence_shard, prove, unfence_shard, FenceFile, Place};
use super::{Restored, Restoring, TIMEOUT};
use crate::ccs::{Id, RestoreStep};
use crate::server::{connect, info, ShardAddr};

/// The run's files as plain RDB files of this machine, and what was decoded for them:
/// removed when it goes, on every way out of the restore (a failed decode, fence or
/// emptying included), so a copy of the data is never left behind. The names are the
/// same on every try of one task, so a try cut short by a kill is written over by the
/// next and removed with it.
#[derive(Default)]
struct Decoded {
    files: Vec<PathBuf>,
    /// A private directory of this machine made for them (removed after).
    own_scratch: Option<PathBuf>,
}

impl Drop for Decoded {
    /// Removes what was decoded (the run's own plain files stay).
    fn drop(&mut self) {
        for f in &self.files {
            let ours = f
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".lazarus-restore-"));
            if ours {
                let _ = std::fs::remove_file(f);
            }
        }
        if let Some(d) = &self.own_scratch {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Restoring<'_> {
    /// Into another shard layout, or replayed: key by key.
    pub(super) async fn by_key(&self) -> Result<Restored, String> {
        (self.step)(RestoreStep::Decoding);
        let decoded = self.decode().await?;
        (self.step)(RestoreStep::Fencing);
        let (fenced, mut res) = self.fence_until_refused().await?;
        if res.is_ok() {
            (self.step)(RestoreStep::RestoringKeys(None));
            res = self.write_keys(&decoded.files).await;
        }
        if res.is_ok() {
            (self.step)(RestoreStep::CheckingCounts);
            res = self.count_keys().await;
        }
        let mut content = None;
        if res.is_ok() && !self.spec.counts_only {
            (self.step)(RestoreStep::Proving);
            match self.prove_keys(&decoded.files).await {
                Ok(c) => content = Some(c),
                Err(e) => res = Err(e),
            }
        }
        drop(decoded);
        if res.is_err() {
            // The database empty again is unfenced under this step: no restored key
            // serves, so a start cut short here is undone, not finished.
            (self.step)(RestoreStep::Emptying);
            self.empty().await?;
        } else {
            (self.step)(RestoreStep::Unfencing);
        }
        self.unfence_fenced(fenced).await?;
        // The keys were written now: files from before are older than this data.
        let written = crate::host::unix_nanos(std::time::SystemTime::now());
        let loaded_ns = self.db.masters().map(|s| (s.id, written)).collect();
        res.map(|keys| Restored {
            keys,
            content,
            loaded_ns,
        })
    }

    /// Encoded files are decoded beside the first master's data first, before any fence:
    /// the keys are read here and written over the network, so when that master is on
    /// another host they are decoded into a private directory of this machine instead.
    async fn decode(&self) -> Result<Decoded, String> {
        let (db, spec) = (self.db, self.spec);
        let first = db
            .masters()
            .next()
            .map(|s| Place::of(self.cluster, db, self.server, s.id))
            .transpose()?;
        let mut decoded = Decoded::default();
        let scratch = match (&spec.target_path, first) {
            (Some(tp), _) => Some(tp.clone()),
            (None, Some(p)) if p.host.is_local() => Some(p.dir),
            (None, Some(_)) => {
                // Named by the task (not this process), so a retry finds what a killed try
                // left there and writes over it.
                let d =
                    std::env::temp_dir().join(format!("lazarus-restore-{}-db{}", spec.task, db.id));
                crate::host::local::create_private_dir(&d)
                    .map_err(|e| format!("`{}`: {e}", d.display()))?;
                // A shared temp directory: the name is known, so it must be a directory
                // of this user's, not a link someone else put there.
                use std::os::unix::fs::MetadataExt;
                let own = std::fs::symlink_metadata(&d)
                    // SAFETY: geteuid has no preconditions and cannot fail.
                    .is_ok_and(|m| m.is_dir() && m.uid() == unsafe { libc::geteuid() });
                if !own {
                    return Err(format!(
                        "`{}` is not a directory of this user's: remove it, then retry",
                        d.display()
                    ));
                }
                decoded.own_scratch = Some(d.clone());
                Some(d)
            }
            (None, None) => None,
        };
        for (i, s) in self.m.shards.iter().enumerate() {
            let stored = spec.repo.file(&spec.run, &s.file);
            match (&scratch, stored.local_path().filter(|_| s.is_plain())) {
                (_, Some(path)) => decoded.files.push(path),
                (Some(dir), None) => {
                    let dest = dir.join(format!(".lazarus-restore-db{}-{i}.rdb", db.id));
                    // Pushed first: a decode that fails half-way is removed with the rest.
                    decoded.files.push(dest.clone());
                    let (e, d, identity) = (s.clone(), dest, spec.identity.clone());
                    tokio::task::spawn_blocking(move || {
                        decode_to(&stored, &e, identity.as_deref(), &d, false)
                    })
                    .await
                    .map_err(|e| e.to_string())??;
                }
                (None, None) => {
                    return Err(
                        "the database has no master shard to decode the run's files beside".into(),
                    )
                }
            }
        }
        Ok(decoded)
    }

    /// Fences every shard, stopping at the first that refuses: the shards fenced, and
    /// how it went.
    #[allow(clippy::type_complexity)]
    async fn fence_until_refused(
        &self,
    ) -> Result<(Vec<(Id, ShardAddr, FenceFile)>, Result<u64, String>), String> {
        let mut fenced = Vec::new();
        for s in &self.db.shards {
            let a = crate::db::shard_addr(self.cluster, self.db, s.id)
                .ok_or_else(|| format!("redis:{} has no node", s.id))?;
            let file = Place::of(self.cluster, self.db, self.server, s.id)?.fence_file();
            if let Err(e) = fence_shard(&a, &self.fence, &file).await {
                return Ok((fenced, Err(format!("redis:{}: {e}", s.id))));
            }
            fenced.push((s.id, a, file));
        }
        Ok((fenced, Ok(0)))
    }

    /// Every key written with RESTORE into the master owning its slot; the step counts
    /// them.
    async fn write_keys(&self, files: &[PathBuf]) -> Result<u64, String> {
        let targets = crate::replay::targets(self.cluster, self.db, &self.fence)?;
        let cluster_mode = self.db.config.shards > 1;
        let done = Arc::new(AtomicU64::new(0));
        let counter = done.clone();
        let files = files.to_vec();
        let mut writing = tokio::task::spawn_blocking(move || {
            crate::replay::write_all(&files, &targets, cluster_mode, &|n| {
                counter.store(n, Ordering::Relaxed)
            })
        });
        let total = self.m.keys();
        loop {
            tokio::select! {
                r = &mut writing => break r.map_err(|e| e.to_string()).and_then(|r| r),
                () = tokio::time::sleep(Duration::from_millis(500)) => (self.step)(
                    RestoreStep::RestoringKeys(Some((done.load(Ordering::Relaxed), total)))
                ),
            }
        }
    }

    /// The keys the database holds, within what the run has (those with a TTL may have
    /// expired).
    async fn count_keys(&self) -> Result<u64, String> {
        let mut keys = 0;
        for t in crate::replay::targets(self.cluster, self.db, &self.fence)? {
            keys += info(&t.addr, "keyspace", TIMEOUT)
                .await
                .map_err(|e| e.to_string())?
                .keys();
        }
        let m = self.m;
        let (expected, expires) = (m.keys(), m.shards.iter().map(|s| s.expires).sum::<u64>());
        if keys > expected || keys < expected.saturating_sub(expires) {
            return Err(format!(
                "the database holds {keys} keys after the restore, the run has {expected} ({expires} with a TTL)"
            ));
        }
        Ok(keys)
    }

    async fn prove_keys(&self, files: &[PathBuf]) -> Result<crate::verify::Comparison, String> {
        let targets = crate::replay::targets(self.cluster, self.db, &self.fence)?;
        let masters: Vec<(Id, ShardAddr)> = self
            .db
            .masters()
            .map(|m| m.id)
            .zip(targets.into_iter().map(|t| t.addr))
            .collect();
        let sources: Vec<crate::verify::DataSource> = files
            .iter()
            .cloned()
            .map(crate::verify::DataSource::Path)
            .collect();
        prove(&sources, None, &masters).await
    }

    /// After a failure: the database is empty again, as verify found it.
    async fn empty(&self) -> Result<(), String> {
        for t in crate::replay::targets(self.cluster, self.db, &self.fence)? {
            if let Ok(mut con) = connect(&t.addr, TIMEOUT).await {
                let _: Result<(), _> = redis::cmd("FLUSHALL").query_async(&mut con).await;
            }
        }
        Ok(())
    }

    async fn unfence_fenced(&self, fenced: Vec<(Id, ShardAddr, FenceFile)>) -> Result<(), String> {
        for (id, a, file) in fenced {
            let mut f = a.clone();
            f.password = Some(self.fence.to_string());
            unfence_shard(&f, self.db.config.password.as_deref(), Some(&file))
                .await
                .map_err(|e| format!("redis:{id}: {e}"))?;
            file.remove().await;
        }
        Ok(())
    }
}

/// A key-by-key start cut short while it wrote keys (its shell died): the database was
/// empty (verify refuses any key here) and has been fenced since, so every key in it is
/// the restore's own, a part of the run. Each master still fenced is emptied again, as a
/// failed start does, before `retry` or `delete` unfences it: left, the part would serve
/// clients and every later verify would refuse the target for holding keys. Whether any
/// master was emptied.
pub(super) async fn empty_cut_short(
    cluster: &crate::ccs::Cluster,
    db: &crate::ccs::Database,
    server: &crate::server::Servers,
) -> Result<bool, String> {
    let mut emptied = false;
    for m in db.masters() {
        let place = Place::of(cluster, db, server, m.id)?;
        let Some(fence) = place.fence_file().password().await else {
            continue;
        };
        let mut a = crate::db::shard_addr(cluster, db, m.id)
            .ok_or_else(|| format!("redis:{} has no node", m.id))?;
        a.password = Some(fence);
        let mut con = connect(&a, TIMEOUT)
            .await
            .map_err(|e| format!("redis:{}: {e}", m.id))?;
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| format!("redis:{}: cannot empty it again: {e}", m.id))?;
        emptied = true;
    }
    Ok(emptied)
}
