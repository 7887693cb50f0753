//! The replacement of a database's data by a run of the same shard layout, one step a
//! method of [`super::Restoring`]: which file each master takes, stage, fence, stop, swap,
//! load (the files' digest taken meanwhile), check the key counts, re-form, prove,
//! unfence. A failure is returned as it is; [`super::start`] puts the old data back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    decode_to, fence_shard, move_into, prove, save, stage_remote, staged_path, unfence_shard,
    Place, Restored, Restoring, DATA, LOAD_TIMEOUT, OLD_DIR, STAGED,
};
use crate::backup::{ShardEntry, StoredFile};
use crate::ccs::{Database, Id, Persistence, RestoreStep, Role};
use crate::db::{BringUp, KeyBounds, LoadCheckError, Timeouts};
use crate::persist::ContentDigest;
use crate::server::{info, shard_dir, stop_shard_on, ConfOptions, ShardAddr, StartOptions};
use crate::verify::DataSource;

/// Which file of the run each master loads.
type Files<'m> = BTreeMap<Id, (StoredFile, &'m ShardEntry)>;

/// A file staged by hard link, unread: (the run's file, the manifest's sha256), checked
/// while the server loads it.
type Unread = (PathBuf, String);

/// The digest of the files loaded, taken on other threads while the servers load them.
type FileCheck = tokio::task::JoinHandle<Result<Option<ContentDigest>, String>>;

impl Restoring<'_> {
    /// Into the same shard layout: the files loaded as they are.
    pub(super) async fn replace(&self) -> Result<Restored, String> {
        let files = self.files()?;
        (self.step)(RestoreStep::Staging);
        let unread = self.stage(&files).await?;
        (self.step)(RestoreStep::Fencing);
        self.fence_shards().await?;
        (self.step)(RestoreStep::Stopping);
        self.stop().await?;
        (self.step)(RestoreStep::Swapping);
        let loaded_ns = self.swap().await?;
        let sources = self.sources(&files)?;
        let file_check = self.check_files(&sources, &unread);
        (self.step)(RestoreStep::Loading(None));
        let loading = BringUp::new(self.cluster, &self.fenced);
        let masters: Vec<(Id, ShardAddr)> = self
            .fenced
            .masters()
            .filter_map(|s| {
                Some((
                    s.id,
                    crate::db::shard_addr(self.cluster, &self.fenced, s.id)?,
                ))
            })
            .collect();
        let addrs: Vec<ShardAddr> = masters.iter().map(|(_, a)| a.clone()).collect();
        if let Err(e) = self.load(&loading, &addrs).await {
            // A file that differs from its manifest is named as such, before what the
            // server made of it.
            return Err(match file_check.await.map_err(|e| e.to_string()) {
                Ok(Err(changed)) | Err(changed) => changed,
                Ok(Ok(_)) => e,
            });
        }
        (self.step)(RestoreStep::CheckingCounts);
        let keys = self.check_counts(&loading, &files).await?;
        self.reform().await?;
        // Once the cluster is formed (a cluster shard answers no DUMP before), still
        // fenced.
        let content = match file_check.await.map_err(|e| e.to_string())?? {
            Some(digest) => {
                (self.step)(RestoreStep::Proving);
                Some(prove(&sources, Some(digest), &masters).await?)
            }
            None => None,
        };
        (self.step)(RestoreStep::Unfencing);
        self.unfence_shards().await?;
        Ok(Restored {
            keys,
            content,
            loaded_ns,
        })
    }

    fn place(&self, shard: Id) -> Result<Place, String> {
        Place::of(self.cluster, self.db, self.server, shard)
    }

    fn addr(&self, db: &Database, shard: Id) -> Result<ShardAddr, String> {
        crate::db::shard_addr(self.cluster, db, shard)
            .ok_or_else(|| format!("redis:{shard} has no node"))
    }

    /// Which master gets which file: same slots (or the one shard).
    fn files(&self) -> Result<Files<'_>, String> {
        let (db, m, spec) = (self.db, self.m, self.spec);
        let mut files = Files::new();
        for d in db.masters() {
            let e = m
                .shards
                .iter()
                .find(|s| s.slots == d.slots || (db.config.shards == 1 && m.shards.len() == 1))
                .ok_or_else(|| format!("no file of the run for redis:{}'s slots", d.id))?;
            files.insert(d.id, (spec.repo.file(&spec.run, &e.file), e));
        }
        Ok(files)
    }

    /// Every master's file staged beside its data (or in `target_path`); those staged by
    /// hard link, unread, come back to be hashed while the server loads them.
    async fn stage(&self, files: &Files<'_>) -> Result<BTreeMap<Id, Unread>, String> {
        let mut unread = BTreeMap::new();
        for (&id, (file, e)) in files {
            let place = self.place(id)?;
            if !place.host.is_local() {
                self.stage_on_host(&place, id, file, e).await?;
            } else if let Some(u) = self.stage_here(&place, id, file, e).await? {
                unread.insert(id, u);
            }
        }
        Ok(unread)
    }

    async fn stage_on_host(
        &self,
        place: &Place,
        id: Id,
        file: &StoredFile,
        e: &ShardEntry,
    ) -> Result<(), String> {
        let dir = &place.dir;
        if let Some(tp) = &self.spec.target_path {
            return Err(format!(
                "`{}` is a directory of this machine and redis:{id} runs on {}: leave `target_path` out",
                tp.display(),
                place.host.name()
            ));
        }
        stage_remote(
            place,
            &dir.join(STAGED),
            file,
            e,
            self.spec.identity.clone(),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "cannot stage `{file}` in `{}` on {}: {e}",
                dir.display(),
                place.host.name()
            )
        })
    }

    /// One pass per file: read, hashed (stored and plain sha256 against the manifest)
    /// and written; the reader's pass is the content digest taken while the servers
    /// load, and the server's own CRC-64 check. Only a snapshot database keeps the file
    /// as its durable copy: it is synced; an AOF database writes (and syncs) its own AOF
    /// from what it loaded; a database without persistence gets a hard link when it can
    /// (the server only reads the file, which is removed once loaded, and never writes
    /// it in place), hashed through the link in the reader's pass while the server loads
    /// it: one pass over the file, on the core the load leaves free. A file that differs
    /// from the manifest then fails the load step, and the old data is put back as for
    /// any failure after the stop.
    async fn stage_here(
        &self,
        place: &Place,
        id: Id,
        file: &StoredFile,
        e: &ShardEntry,
    ) -> Result<Option<Unread>, String> {
        let dir = place.dir.clone();
        let staged = staged_path(self.spec.target_path.as_deref(), self.db.id, id, &dir);
        let persistence = self.db.config.persistence;
        let (entry, identity) = (e.clone(), self.spec.identity.clone());
        let (f, local) = (file.clone(), file.local_path());
        let linked = tokio::task::spawn_blocking(move || -> Result<Option<PathBuf>, String> {
            if let (Persistence::Disabled, true, Some(local)) =
                (persistence, entry.is_plain(), &local)
            {
                let _ = std::fs::remove_file(&staged);
                if std::fs::hard_link(local, &staged).is_ok() {
                    return Ok(Some(local.clone()));
                }
            }
            let sync = persistence == Persistence::Snapshot;
            decode_to(&f, &entry, identity.as_deref(), &staged, sync).map(|_| None)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot stage `{file}` in `{}`: {e}", dir.display()))?;
        Ok(linked.map(|local| (local, e.sha256.clone())))
    }

    async fn fence_shards(&self) -> Result<(), String> {
        for s in &self.db.shards {
            let a = self.addr(self.db, s.id)?;
            let file = self.place(s.id)?.fence_file();
            fence_shard(&a, &self.fence, &file)
                .await
                .map_err(|e| format!("redis:{}: {e}", s.id))?;
        }
        Ok(())
    }

    async fn stop(&self) -> Result<(), String> {
        let db = self.db;
        for s in &db.shards {
            let place = self.place(s.id)?;
            if db.config.persistence == Persistence::Disabled && s.role == Role::Master {
                // Its only copy is in memory: keep it on disk until the restore succeeds.
                let mut a = self.addr(db, s.id)?;
                a.password = Some(self.fence.to_string());
                save(&a)
                    .await
                    .map_err(|e| format!("redis:{}: SAVE: {e}", s.id))?;
            }
            stop_shard_on(&*place.host, &place.dir)
                .await
                .map_err(|e| format!("redis:{}: {e}", s.id))?;
        }
        Ok(())
    }

    /// Each shard's data moved aside into `OLD_DIR` (what an earlier, cut-short start
    /// moved stays), and each master's staged file moved in as its `dump.rdb`: returns
    /// each master's `dump.rdb` written time (unix nanoseconds, see
    /// [`Restored::loaded_ns`]).
    async fn swap(&self) -> Result<Vec<(Id, i64)>, String> {
        let mut loaded_ns = Vec::new();
        for s in &self.db.shards {
            let place = self.place(s.id)?;
            let (dir, old) = (&place.dir, place.dir.join(OLD_DIR));
            let at = |e: std::io::Error, p: &Path| format!("`{}`: {e}", p.display());
            place
                .host
                .create_private_dir(&old)
                .await
                .map_err(|e| at(e, &old))?;
            // Before any data goes in: set-aside data always names its task.
            let named = old.join(shard_dir::RESTORE_TASK_FILE);
            place
                .host
                .write_private(&named, self.spec.task.as_bytes())
                .await
                .map_err(|e| at(e, &named))?;
            // One listing of each directory answers what is to be moved aside.
            let (here, kept) = (place.names(dir).await?, place.names(&old).await?);
            for name in DATA {
                if here.iter().any(|n| n == name) && !kept.iter().any(|n| n == name) {
                    let from = dir.join(name);
                    place
                        .host
                        .rename(&from, &old.join(name))
                        .await
                        .map_err(|e| at(e, &from))?;
                }
            }
            if s.role == Role::Master {
                let staged = match place.host.is_local() {
                    true => staged_path(self.spec.target_path.as_deref(), self.db.id, s.id, dir),
                    false => dir.join(STAGED),
                };
                move_into(&place, &staged).await?;
                let dump = dir.join(shard_dir::RDB_FILE);
                let meta = place.host.metadata(&dump).await.map_err(|e| at(e, &dump))?;
                let written = meta.modified.unwrap_or_else(std::time::SystemTime::now);
                loaded_ns.push((s.id, crate::host::unix_nanos(written)));
            }
        }
        Ok(loaded_ns)
    }

    /// What the files' content digest is read from while the servers load them: a file
    /// on this machine where it was loaded from, one on another host from the run's own
    /// file, which staging proved to be the same bytes.
    fn sources(&self, files: &Files<'_>) -> Result<Vec<DataSource>, String> {
        let mut sources = Vec::new();
        for s in self.db.masters() {
            let place = self.place(s.id)?;
            sources.push(match place.host.is_local() {
                true => DataSource::Path(place.dir.join(shard_dir::RDB_FILE)),
                false => {
                    let (file, e) = &files[&s.id];
                    DataSource::Stored {
                        file: file.clone(),
                        entry: Box::new((*e).clone()),
                        identity: self.spec.identity.clone(),
                    }
                }
            });
        }
        Ok(sources)
    }

    /// The files' digest (unless `verify counts`) and the sha256 of those staged unread,
    /// started on other threads (the reader's pass over each file, once).
    fn check_files(&self, sources: &[DataSource], unread: &BTreeMap<Id, Unread>) -> FileCheck {
        let checks: Vec<(DataSource, Option<Unread>)> = self
            .db
            .masters()
            .zip(sources)
            .map(|(s, f)| (f.clone(), unread.get(&s.id).cloned()))
            .collect();
        let digest = !self.spec.counts_only;
        tokio::task::spawn_blocking(move || check_loaded(&checks, digest))
    }

    /// Every master loads at once (step 1 of the bring-up pipeline); the step says how
    /// far they are.
    async fn load(&self, loading: &BringUp<'_>, addrs: &[ShardAddr]) -> Result<(), String> {
        let load = StartOptions {
            conf: ConfOptions {
                appendonly: Some(false),
                standalone: true,
                ..ConfOptions::default()
            },
            timeout: LOAD_TIMEOUT,
            creating: false,
        };
        let masters = loading.ids(Role::Master);
        let starting = loading.start(self.server, &masters, &load);
        tokio::pin!(starting);
        let total = self.m.bytes();
        let started = loop {
            tokio::select! {
                started = &mut starting => break started,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let loaded = loaded_bytes(addrs, total).await;
            (self.step)(RestoreStep::Loading(Some((
                loaded.min(total) >> 20,
                total >> 20,
            ))));
        };
        let mut loaded = Ok(());
        for (_, result) in started {
            if let Err(e) = result {
                loaded = loaded.and(Err(e.to_string()));
            }
        }
        loaded
    }

    /// Every master holds the keys its file has (those with a TTL may have expired).
    async fn check_counts(&self, loading: &BringUp<'_>, files: &Files<'_>) -> Result<u64, String> {
        let mut keys = 0;
        for s in self.fenced.masters() {
            let (_, e) = &files[&s.id];
            let bounds = KeyBounds {
                per_db: e
                    .keys_per_db
                    .iter()
                    .map(|(&n, &expected)| (n, (expected.saturating_sub(e.expires), expected)))
                    .collect(),
                others_empty: false,
            };
            keys += loading
                .check_loaded(s.id, &bounds)
                .await
                .map_err(|err| match err {
                    LoadCheckError::Count {
                        logical,
                        loaded,
                        high,
                        ..
                    } => format!(
                        "redis:{} loaded {loaded} keys in db {logical}, the run has {high} ({} with a TTL)",
                        s.id, e.expires
                    ),
                    LoadCheckError::Server(e) => e.to_string(),
                })?;
        }
        Ok(keys)
    }

    /// The rest of the bring-up pipeline: persistence, replicas (one at a time: a failure
    /// leaves the fewest servers for the roll-back), the slot map or replication, the
    /// sync source.
    async fn reform(&self) -> Result<(), String> {
        let up = BringUp::new(self.cluster, &self.fenced).with_timeouts(Timeouts {
            persist: LOAD_TIMEOUT,
            ..Timeouts::all(crate::db::SETUP_TIMEOUT)
        });
        up.switch_persistence(&[], &[])
            .await
            .map_err(|e| e.to_string())?;
        (self.step)(RestoreStep::Reforming);
        let normal = StartOptions {
            conf: ConfOptions::default(),
            timeout: LOAD_TIMEOUT,
            creating: false,
        };
        for id in up.ids(Role::Replica) {
            if let Some((_, Err(e))) = up.start(self.server, &[id], &normal).await.pop() {
                return Err(e.to_string());
            }
        }
        up.wire().await.map_err(|e| e.to_string())
    }

    /// Clients may authenticate again; a database without persistence loses the file it
    /// loaded (it starts empty after a restart, as before).
    async fn unfence_shards(&self) -> Result<(), String> {
        let db = self.db;
        for s in &self.fenced.shards {
            let a = self.addr(&self.fenced, s.id)?;
            let file = self.place(s.id)?.fence_file();
            unfence_shard(&a, db.config.password.as_deref(), Some(&file))
                .await
                .map_err(|e| format!("redis:{}: {e}", s.id))?;
            file.remove().await;
        }
        if db.config.persistence == Persistence::Disabled {
            for s in db.masters() {
                let place = self.place(s.id)?;
                place.remove(&place.dir.join(shard_dir::RDB_FILE)).await;
            }
        }
        Ok(())
    }
}

/// How many bytes the masters have loaded so far (a master done counts its share).
async fn loaded_bytes(addrs: &[ShardAddr], total: u64) -> u64 {
    let mut loaded = 0;
    for a in addrs {
        if let Ok(i) = info(a, "persistence", Duration::from_millis(200)).await {
            loaded += match i.get("loading") {
                Some("1") => i.get_u64("loading_loaded_bytes").unwrap_or(0),
                _ => total / addrs.len().max(1) as u64,
            };
        }
    }
    loaded
}

/// The files a restore loads, read while the servers load them, their shards' files on
/// parallel threads: each file's digest (when `digest`), and for a file staged by hard
/// link, unread (`Some((backup file, manifest sha256))`), its sha256 in the same pass.
/// Blocking.
fn check_loaded(
    files: &[(crate::verify::DataSource, Option<(PathBuf, String)>)],
    digest: bool,
) -> Result<Option<crate::persist::ContentDigest>, String> {
    let opts = crate::persist::DigestOptions::default();
    let one = |(source, unread): &(crate::verify::DataSource, Option<(PathBuf, String)>)| {
        let path = match (source, unread) {
            (crate::verify::DataSource::Path(p), Some(_)) => p,
            _ => {
                return match digest {
                    true => crate::verify::digest_of_sources(std::slice::from_ref(source), &opts)
                        .map(Some)
                        .map_err(|e| e.to_string()),
                    false => Ok(None),
                }
            }
        };
        let (sum, d) = crate::verify::sha256_and_digest(path, digest.then_some(&opts))
            .map_err(|e| e.to_string())?;
        if let Some((from, expected)) = unread.as_ref().filter(|(_, x)| *x != sum) {
            return Err(format!(
                "`{}` has sha256 {sum}, the manifest says {expected}: the file was changed or damaged",
                from.display()
            ));
        }
        d.transpose().map_err(|e| e.to_string())
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, files.len().max(1));
    let results: Vec<Result<Option<crate::persist::ContentDigest>, String>> =
        std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(files.len().div_ceil(workers).max(1))
                .map(|c| s.spawn(move || c.iter().map(one).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![Err("a file check panicked".into())])
                })
                .collect()
        });
    let mut total: Option<crate::persist::ContentDigest> = None;
    for r in results {
        if let Some(d) = r? {
            match total.as_mut() {
                Some(t) => t.merge(d),
                None => total = Some(d),
            }
        }
    }
    Ok(match (digest, total) {
        (true, None) => Some(crate::persist::ContentDigest::new(crate::verify::now_ms())),
        (_, t) => t,
    })
}
