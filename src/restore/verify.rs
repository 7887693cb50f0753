//! `verify`: the checks of a restore before anything changes, one step a check
//! (manifest, cluster, clock, files, versions, target path, clients, shard layout, keys,
//! memory, shard directories), each adding its lines to the [`VerifyReport`].

use std::path::Path;

use super::pick::{target_shown, RunOf};
use super::{free_bytes, same_layout, sha256_file, Place, RestoreSpec, VerifyReport};
use super::{CLOCK_SKEW_MS, TIMEOUT};
use crate::backup::{Manifest, PlainRead, ShardEntry, StoredFile};
use crate::ccs::{Cluster, Database, Id};
use crate::error::{DomainError, ErrorKind};
use crate::persist::{check_path, check_rdb_stream, max_rdb_version_for, CheckOptions, Verdict};
use crate::server::{connect, info, Servers, SetAside, ShardAddr};

/// The checks before anything changes. `db` is the target database when it exists;
/// `server` the `redis-server` that will load the files.
pub async fn verify(
    cluster: &Cluster,
    db: Option<&Database>,
    spec: &RestoreSpec,
    server: &Servers,
) -> (VerifyReport, Option<Manifest>) {
    let mut v = Verifying {
        cluster,
        spec,
        server,
        report: VerifyReport::default(),
    };
    let Some(m) = v.manifest() else {
        return (v.report, None);
    };
    v.cluster_of(&m);
    v.database_of(db, &m);
    v.clock().await;
    v.staging_hosts(db);
    v.files(db, &m).await;
    let replays = v.versions(db, &m).await;
    v.target_path(&m);
    let Some(db) = db else {
        v.new_database(&m);
        return (v.report, Some(m));
    };
    v.clients(db).await;
    v.tls_servers(db).await;
    v.shards(db, &m, replays);
    v.keys_now(db).await;
    v.memory(db, &m);
    v.shard_dirs(db, m.bytes()).await;
    (v.report, Some(m))
}

/// A verify under way: what it checks against, and the checks so far.
struct Verifying<'a> {
    cluster: &'a Cluster,
    spec: &'a RestoreSpec,
    server: &'a Servers,
    report: VerifyReport,
}

impl Verifying<'_> {
    /// A check whose failure is of `kind`.
    fn add(&mut self, check: &str, kind: ErrorKind, verdict: Result<String, String>) {
        self.report.add(check, verdict.map_err(|why| (kind, why)));
    }

    /// A TLS database's shards restart with the binaries chosen (`--redis-server`
    /// included): each must be a TLS build ([`crate::db::check_tls_servers`]), or the
    /// start would stop the shards and fail to bring them back.
    async fn tls_servers(&mut self, db: &Database) {
        if !db.config.tls {
            return;
        }
        let verdict = match crate::db::check_tls_servers(db, self.server).await {
            Ok(()) => Ok("every shard's server is a TLS build".to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.add("tls server", ErrorKind::Conflict, verdict);
    }

    /// The run's manifest: complete and matching its checksum, or nothing else is checked.
    fn manifest(&mut self) -> Option<Manifest> {
        let spec = self.spec;
        match spec.repo.manifest(&spec.run) {
            Ok(m) => {
                let run_dir = spec.repo.run_shown(&spec.run);
                let detail = format!("`{run_dir}` is complete and matches its checksum");
                self.report.add("manifest", Ok(detail));
                Some(m)
            }
            // The whole repository gone (moved, unmounted, a wrong URL) is said so, not
            // taken for this run's fault.
            Err(_) if let Some(why) = spec.repo.missing() => {
                self.report
                    .add("repository", Err((ErrorKind::NotFound, why)));
                None
            }
            Err(e) => {
                self.report.add("manifest", Err((e.kind(), e.to_string())));
                None
            }
        }
    }

    /// Another cluster's run is restored only with `from_other_cluster`.
    fn cluster_of(&mut self, m: &Manifest) {
        let cluster = self.cluster;
        if m.cluster_id == cluster.cluster_id {
            return;
        }
        let both = format!(
            "written by cluster `{}` (id {}), restored into cluster `{}` (id {})",
            m.cluster_name, m.cluster_id, cluster.name, cluster.cluster_id
        );
        self.add(
            "cluster",
            ErrorKind::Conflict,
            match self.spec.from_other_cluster {
                true => Ok(format!("{both}: `from_other_cluster`")),
                false => Err(format!(
                    "{both}: add `from_other_cluster` to restore another cluster's run"
                )),
            },
        );
    }

    /// Another database's run is restored only with `from_other_db` (a clone; by
    /// mistake, it would replace the data with another database's).
    fn database_of(&mut self, db: Option<&Database>, m: &Manifest) {
        let of = RunOf {
            cluster_id: m.cluster_id,
            db: m.db_id,
            db_name: &m.db.name,
        };
        let existing = db.map(|d| d.id);
        if of.is_of(self.cluster, &self.spec.db, existing) {
            return;
        }
        let both = format!(
            "the run is a backup of {}, restored into {}",
            of.shown(),
            target_shown(&self.spec.db, existing)
        );
        self.add(
            "database",
            ErrorKind::Conflict,
            match self.spec.from_other_db {
                true => Ok(format!("{both}: `from_other_db`")),
                false => Err(format!(
                    "{both}: add `from_other_db` to restore another database's run into it"
                )),
            },
        );
    }

    /// A remote repository answers, and its clock agrees with this machine's.
    async fn clock(&mut self) {
        let spec = self.spec;
        if spec.repo.is_local() {
            return;
        }
        let repo = spec.repo.clone();
        let skew = tokio::task::spawn_blocking(move || repo.clock_skew())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let limit = CLOCK_SKEW_MS / 1000;
        match skew {
            Ok(ms) if ms.abs() <= CLOCK_SKEW_MS => self.add(
                "clock",
                ErrorKind::Conflict,
                Ok(format!(
                    "`{}` is reachable; its clock and this machine's agree within {limit} s",
                    spec.repo
                )),
            ),
            Ok(ms) => self.add(
                "clock",
                ErrorKind::Conflict,
                Err(format!(
                    "the clock of `{}` is {:+.1} s from this machine's (more than {limit} s): fix NTP first, `latest` and retention go by time",
                    spec.repo,
                    ms as f64 / 1000.0,
                )),
            ),
            Err(e) => self.add("repository", ErrorKind::Unavailable, Err(e)),
        }
    }

    /// `target_path` is a directory of this machine: it stages the files of shards on
    /// this machine only; shards on other hosts stage beside their data, through their
    /// host.
    fn staging_hosts(&mut self, db: Option<&Database>) {
        let (Some(db), Some(tp)) = (db, &self.spec.target_path) else {
            return;
        };
        let server = self.server;
        let remote: Vec<String> = db
            .masters()
            .filter(|s| server.hosts().is_remote(s.node))
            .map(|s| {
                format!(
                    "redis:{} on node:{} ({})",
                    s.id,
                    s.node,
                    server.host(s.node).name()
                )
            })
            .collect();
        if !remote.is_empty() {
            self.add(
                "target path",
                ErrorKind::Conflict,
                Err(format!(
                    "`{}` is a directory of this machine, and {} run on other hosts: leave `target_path` out to stage each file beside its shard's data",
                    tp.display(),
                    remote.join(", ")
                )),
            );
        }
    }

    /// Every file: present, its sha256, the reader's pass; left to the staging when it
    /// reads each file once anyway (`defer_file_checks` into the same layout).
    async fn files(&mut self, db: Option<&Database>, m: &Manifest) {
        let defer = deferred(self.spec, db, m);
        for s in &m.shards {
            let verdict = match (defer, self.spec.files_read) {
                (true, _) => {
                    Ok("its sha256 and the reader's pass run once, as it is staged".into())
                }
                (false, true) => Ok("read through by the group's verify just before".into()),
                (false, false) => self.file(m, s).await,
            };
            self.report.add(&format!("file {}", s.file), verdict);
        }
    }

    /// One file of the run, read through: a plain file of this machine directly, any
    /// other decoded (and decrypted) as it streams.
    async fn file(&self, m: &Manifest, s: &ShardEntry) -> Result<String, (ErrorKind, String)> {
        let stored = self.spec.repo.file(&self.spec.run, &s.file);
        let opts = CheckOptions {
            slots: s.slots.filter(|_| m.db.shards > 1),
        };
        if let Some(path) = stored.local_path().filter(|_| s.is_plain()) {
            return local_file(&path, s, opts).await;
        }
        let (e, identity) = (s.clone(), self.spec.identity.clone());
        let keys = tokio::task::spawn_blocking(move || {
            read_stored(&stored, &e, identity.as_deref(), &opts)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|why| (ErrorKind::Damaged, why))?;
        Ok(format!(
            "stored and plain sha256 match; decoded{} and read through: {keys} keys",
            if s.encrypted { " (decrypted)" } else { "" }
        ))
    }

    /// The server that will load the files: the RDB version it loads, and its engine
    /// against the backup's. Whether the run is replayed key by key (`replay`, and files
    /// newer than it loads).
    async fn versions(&mut self, db: Option<&Database>, m: &Manifest) -> bool {
        let target = target_version(self.cluster, db, self.server).await;
        let replays = self.rdb_version(m, &target);
        let rdb_too_new = max_rdb_version_for(&target)
            .is_some_and(|max| m.shards.iter().any(|s| s.rdb_version > max));
        self.engine_version(m, &target, replays, rdb_too_new);
        replays
    }

    fn rdb_version(&mut self, m: &Manifest, target: &str) -> bool {
        let can_load = max_rdb_version_for(target);
        let newest = m.shards.iter().map(|s| s.rdb_version).max().unwrap_or(0);
        let replay = self.spec.replay;
        let kind = match can_load {
            Some(_) => ErrorKind::Conflict,
            None => ErrorKind::Unavailable,
        };
        self.add(
            "rdb version",
            kind,
            match can_load {
                Some(max) if newest <= max => Ok(format!(
                    "server {target} loads RDB version {max} and older; the run has {newest}"
                )),
                Some(max) if replay => Ok(format!(
                    "the run's files are RDB version {newest}, server {target} loads up to {max}: `replay` writes every key as RESTORE in encodings it loads (module values and hash-field TTLs are refused)"
                )),
                Some(max) => Err(format!(
                    "the run's files are RDB version {newest}, server {target} loads up to {max}: create the task with `replay` to write its keys as commands instead"
                )),
                None => Err(format!("cannot tell what server `{target}` loads")),
            },
        );
        can_load.is_some_and(|max| newest > max) && replay
    }

    /// The same engine major.minor, or a newer server with `allow_newer_server`; any
    /// when the keys are replayed.
    fn engine_version(&mut self, m: &Manifest, target: &str, replays: bool, rdb_too_new: bool) {
        let backup = m
            .shards
            .first()
            .map(|s| format!("{} {}", s.engine, s.server_version))
            .unwrap_or_default();
        let allow_newer = self.spec.allow_newer_server;
        let verdict = engine_verdict(&backup, target, replays, allow_newer, rdb_too_new);
        self.add("engine version", ErrorKind::Conflict, verdict);
    }

    fn target_path(&mut self, m: &Manifest) {
        if let Some(tp) = &self.spec.target_path {
            let verdict = check_target_path(self.cluster, self.spec, tp, m.bytes());
            self.add("target path", ErrorKind::Conflict, verdict);
        }
    }

    /// A database that does not exist is created from the manifest: placed now on a
    /// scratch copy of the cluster, as `start` will place it (replication needs two
    /// nodes, the shards free ports).
    fn new_database(&mut self, m: &Manifest) {
        let what = format!("({})", m.db.shape());
        let mut config = m.db.clone();
        config.name = self.spec.db.clone();
        config.password = None;
        let verdict = match crate::db::place(&mut self.cluster.clone(), config, None) {
            Ok(_) => Ok(format!(
                "the database does not exist: it will be created from the manifest {what}"
            )),
            Err(e) => Err(format!(
                "the database does not exist and cannot be created from the manifest {what}: {e}"
            )),
        };
        self.add("target", ErrorKind::Conflict, verdict);
    }

    /// The clients the restore will disconnect (a line to read, never a failure).
    async fn clients(&mut self, db: &Database) {
        let mut clients = Vec::new();
        for s in &db.shards {
            if let Some(a) = crate::db::shard_addr(self.cluster, db, s.id) {
                if let Ok(list) = client_list(&a).await {
                    clients.extend(list.into_iter().map(|c| format!("{c} on redis:{}", s.id)));
                }
            }
        }
        if clients.is_empty() {
            let none = "no client is connected to the database";
            self.report.add("clients", Ok(none.into()));
            return;
        }
        let shown: Vec<&str> = clients.iter().take(10).map(String::as_str).collect();
        self.report.add(
            "clients",
            Ok(format!(
                "the restore will disconnect {} client(s): {}{}",
                clients.len(),
                shown.join(", "),
                if clients.len() > 10 { ", ..." } else { "" }
            )),
        );
    }

    /// How the run's shards meet the database's: loaded as they are (same layout), or
    /// key by key (another layout, or `replay`), which needs an empty database.
    fn shards(&mut self, db: &Database, m: &Manifest, replays: bool) {
        let masters = db.masters().count();
        let other_dbs: Vec<u32> = m
            .shards
            .iter()
            .flat_map(|s| s.keys_per_db.keys().copied())
            .filter(|&n| n != 0)
            .collect();
        let force = self.spec.force;
        let verdict = if replays && force {
            Err("`replay` writes keys one by one, which needs an empty database: it cannot be combined with `force`".to_string())
        } else if same_layout(db, m) && !replays {
            Ok(format!(
                "{masters} shard(s) with the same slot ranges: the files are loaded as they are"
            ))
        } else if db.config.shards > 1 && !other_dbs.is_empty() {
            Err(format!(
                "the run has keys in logical db {}; db:{} is a Redis Cluster (db 0 only)",
                other_dbs[0], db.id
            ))
        } else if force {
            Err(format!("the run has {} shard(s), db:{} has {masters}: keys are restored one by one, which needs an empty database (`force` is for the same shard layout)", m.shards.len(), db.id))
        } else {
            Ok(format!("the run has {} shard(s), db:{} has {masters}: every key is routed by its slot and written with RESTORE ... ABSTTL", m.shards.len(), db.id))
        };
        self.add("shards", ErrorKind::Conflict, verdict);
    }

    /// The keys the database holds now (what `force` replaces); every master must answer.
    async fn keys_now(&mut self, db: &Database) {
        let mut keys_now = 0;
        let mut down = Vec::new();
        for s in db.masters() {
            match crate::db::shard_addr(self.cluster, db, s.id) {
                Some(a) => match info(&a, "keyspace", TIMEOUT).await {
                    Ok(i) => keys_now += i.keys(),
                    Err(e) => down.push(format!("redis:{}: {e}", s.id)),
                },
                None => down.push(format!("redis:{} has no node", s.id)),
            }
        }
        self.report.keys_now = keys_now;
        let (holds, them) = match keys_now {
            1 => ("1 key".to_string(), "it"),
            n => (format!("{n} keys"), "them"),
        };
        let verdict = if !down.is_empty() {
            let why = format!("shards do not answer: {}", down.join("; "));
            Err((ErrorKind::Unavailable, why))
        } else if keys_now == 0 {
            Ok(format!("db:{} `{}` holds no keys", db.id, db.config.name))
        } else if self.spec.force {
            Ok(format!(
                "db:{} holds {holds}: `force` replaces {them}",
                db.id
            ))
        } else {
            Err((
                ErrorKind::Conflict,
                format!(
                    "db:{} `{}` holds {holds}: `force` would replace {them}",
                    db.id, db.config.name
                ),
            ))
        };
        self.report.add("target", verdict);
    }

    fn memory(&mut self, db: &Database, m: &Manifest) {
        let bytes = m.bytes();
        let verdict = match db.config.memory {
            Some(limit) if bytes > limit => Err(format!(
                "the run's files hold {bytes} bytes, more than the memory limit of {limit}"
            )),
            Some(limit) => Ok(format!(
                "{bytes} bytes of files within the limit of {limit} (in memory it takes more)"
            )),
            None => Ok("no memory limit".into()),
        };
        self.add("memory", ErrorKind::Conflict, verdict);
    }

    /// Every shard directory takes the files: writable, room for them beside the old
    /// data, outside every recovery path.
    async fn shard_dirs(&mut self, db: &Database, bytes: u64) {
        let mut problems = Vec::new();
        for s in &db.shards {
            let Ok(place) = Place::of(self.cluster, db, self.server, s.id) else {
                continue;
            };
            // Never replaced, nor removed on success, by a restore that did not set it
            // aside (its own retry puts it back before this check).
            if let Some(aside) = SetAside::in_dir(&*place.host, &place.dir).await {
                problems.push(aside.to_string());
                continue;
            }
            if let Some(problem) = place.unfit(self.cluster, self.server, bytes).await {
                problems.push(problem);
            }
        }
        self.add(
            "target path",
            ErrorKind::Conflict,
            match problems.is_empty() {
                true => Ok("every shard directory is writable with room for the files".into()),
                false => Err(problems.join("; ")),
            },
        );
    }
}

/// Whether the files' sha256 and the reader's pass are left to the staging (into the
/// same shard layout, which reads each file once as it copies it).
fn deferred(spec: &RestoreSpec, db: Option<&Database>, m: &Manifest) -> bool {
    spec.defer_file_checks && db.is_some_and(|d| same_layout(d, m))
}

/// Before work that the staging's own checks would come too late to spare (a safety
/// backup of the live data): each stored file hashed against the manifest (its stored
/// sha256 and size, nothing decoded), so a damaged run is refused first. Only where the
/// verify left the files to the staging; each file's line in `report` says what was found.
pub(super) async fn stored_files_first(
    spec: &RestoreSpec,
    db: Option<&Database>,
    m: &Manifest,
    report: &mut VerifyReport,
) {
    if !deferred(spec, db, m) || spec.files_read {
        return;
    }
    for s in &m.shards {
        let stored = spec.repo.file(&spec.run, &s.file);
        let e = s.clone();
        let verdict = tokio::task::spawn_blocking(move || stored_hash(&stored, &e))
            .await
            .map_err(|e| (ErrorKind::Internal, e.to_string()))
            .and_then(|r| r);
        report.set(&format!("file {}", s.file), verdict);
    }
}

/// A stored file's bytes hashed (blocking), against the manifest's stored sha256 and size.
fn stored_hash(file: &StoredFile, e: &ShardEntry) -> Result<String, (ErrorKind, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut r = file.open().map_err(|why| (ErrorKind::NotFound, why))?;
    let (mut h, mut n, mut buf) = (Sha256::new(), 0u64, vec![0u8; 1 << 20]);
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err((ErrorKind::Io, format!("`{file}`: {err}"))),
        }
    }
    let sum: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if sum != e.stored_digest() || n != e.stored_size() {
        return Err((
            ErrorKind::Damaged,
            format!(
                "`{file}` has sha256 {sum} ({n} bytes), the manifest says {} ({} bytes): the file was changed or damaged",
                e.stored_digest(),
                e.stored_size()
            ),
        ));
    }
    Ok("its stored sha256 matches the manifest; the reader's pass runs as it is staged".into())
}

/// A plain file of the run on this machine: its sha256 and the reader's pass over it at
/// once, on two threads.
async fn local_file(
    path: &Path,
    s: &ShardEntry,
    opts: CheckOptions,
) -> Result<String, (ErrorKind, String)> {
    let damaged = |why: String| (ErrorKind::Damaged, why);
    let (p1, p2) = (path.to_path_buf(), path.to_path_buf());
    let sum = tokio::task::spawn_blocking(move || sha256_file(&p1));
    let read = tokio::task::spawn_blocking(move || check_path(&p2, &opts));
    let (sum, report) = (sum.await, read.await.ok());
    let sum = match sum {
        Ok(Ok(sum)) => sum,
        Ok(Err(e)) => {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Io,
            };
            return Err((kind, format!("`{}`: {e}", path.display())));
        }
        Err(e) => return Err((ErrorKind::Internal, e.to_string())),
    };
    if sum != s.sha256 {
        return Err(damaged(format!(
            "`{}` has sha256 {sum}, the manifest says {}: the file was changed or damaged",
            path.display(),
            s.sha256
        )));
    }
    match report {
        Some(r) if r.verdict == Verdict::Ok && r.keys == s.keys => Ok(format!(
            "sha256 matches; the reader read it through: {} keys",
            r.keys
        )),
        Some(r) if r.verdict == Verdict::Ok => Err(damaged(format!(
            "the reader counts {} keys, the manifest says {}",
            r.keys, s.keys
        ))),
        Some(r) => {
            let at = r
                .fault
                .map(|f| format!(" at offset {}: expected {}", f.offset, f.expected))
                .unwrap_or_default();
            Err(damaged(format!(
                "`{}` is {}{at}",
                path.display(),
                r.verdict
            )))
        }
        None => Err((ErrorKind::Internal, "the reader did not finish".into())),
    }
}

/// The clients connected to a shard (address, and name when set), this connection and
/// replication links left out.
async fn client_list(a: &ShardAddr) -> Result<Vec<String>, String> {
    let mut con = connect(a, TIMEOUT).await.map_err(|e| e.to_string())?;
    let text: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let field = |k: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            };
            if field("id")?.parse::<i64>().ok()? == me {
                return None;
            }
            let addr = field("addr")?;
            Some(match field("name").filter(|n| !n.is_empty()) {
                Some(n) => format!("{addr} ({n})"),
                None => addr.to_string(),
            })
        })
        .collect())
}

/// The engine check of a run written by server `backup` loaded by server `target`:
/// the same major.minor; a newer server with `allow_newer`; any when the keys are
/// replayed. A refusal says which way they differ and what would take the run: an older
/// server may not load what a newer one wrote (`replay` writes the keys as commands
/// when its files are of an RDB version it does not load); a newer one takes
/// `allow_newer_server`.
fn engine_verdict(
    backup: &str,
    target: &str,
    replays: bool,
    allow_newer: bool,
    rdb_too_new: bool,
) -> Result<String, String> {
    let both = format!("backup {backup}, server {target}");
    match (major_minor(backup), major_minor(target)) {
        _ if replays => Ok(format!("{both}: replayed key by key")),
        (Some(b), Some(t)) if b == t => Ok(both),
        (Some(b), Some(t)) if t > b && allow_newer => Ok(format!("{both} (newer, allowed)")),
        (Some(b), Some(t)) if t > b => Err(format!(
            "{both}: the server is newer than the backup's: add `allow_newer_server` to load the run into it"
        )),
        (Some(_), Some(_)) if rdb_too_new => Err(format!(
            "{both}: the server is older than the backup's and may not load the run's RDB version: create the task with `replay` to write its keys as commands instead"
        )),
        (Some(_), Some(_)) => Err(format!(
            "{both}: the server is older than the backup's and may not load what it wrote: restore onto a server of {backup}'s major.minor or newer"
        )),
        _ => Err(format!("{both}: cannot compare their major.minor")),
    }
}

/// A local repository that is not there, as verify and create name it.
/// The `major.minor` of a version string.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let v = v.rsplit(' ').next()?;
    let mut it = v.split('.').map(|n| n.trim().parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// The server that will load a run into `db` (`None`: a database to create), as verify
/// names it: Redis bare (`7.0.15`), Valkey named (`valkey 8.1.8`). The running one's
/// when it answers, else the oldest binary among its nodes (every node's when new).
pub(super) async fn target_version(
    cluster: &Cluster,
    db: Option<&Database>,
    server: &Servers,
) -> String {
    if let Some(v) = match db {
        Some(d) => running_version(cluster, d).await,
        None => None,
    } {
        return v;
    }
    let nodes: Vec<Id> = match db {
        Some(d) => d.shards.iter().map(|s| s.node).collect(),
        None => cluster.nodes.keys().copied().collect(),
    };
    server
        .oldest_of(nodes)
        .map(|s| match s.engine {
            "valkey" => s.label(),
            _ => s.version.clone(),
        })
        .unwrap_or_default()
}

async fn running_version(cluster: &Cluster, db: &Database) -> Option<String> {
    let m = db.masters().next()?;
    let a = crate::db::shard_addr(cluster, db, m.id)?;
    let i = info(&a, "server", TIMEOUT).await.ok()?;
    // Redis as its bare version, as `redis-server --version` gives it; Valkey named.
    i.engine_version().map(|(engine, v)| match engine {
        "valkey" => format!("valkey {v}"),
        _ => v.to_string(),
    })
}

/// `target_path`: a writable directory with room for the run's files, not the backup's
/// own path (nor inside it, nor holding it), and outside every node's recovery path
/// (nor holding one): staging there must never touch a backup or the files recovery reads.
fn check_target_path(
    cluster: &Cluster,
    spec: &RestoreSpec,
    tp: &Path,
    bytes: u64,
) -> Result<String, String> {
    let canon = std::fs::canonicalize(tp).map_err(|e| format!("`{}`: {e}", tp.display()))?;
    if !canon.is_dir() {
        return Err(format!("`{}` is not a directory", tp.display()));
    }
    let overlap = |other: &Path| {
        let o = std::fs::canonicalize(other).unwrap_or_else(|_| other.to_path_buf());
        canon.starts_with(&o) || o.starts_with(&canon)
    };
    if let crate::backup::Repository::Local { root: repo } = &spec.repo {
        let run = repo.join(&spec.run);
        if overlap(repo) || overlap(&run) {
            return Err(format!(
                "`{}` and the backup's path `{}` overlap: give a directory apart from the backups",
                tp.display(),
                repo.display()
            ));
        }
    }
    for n in cluster.nodes.values() {
        if let Some(rp) = n.recovery_path.as_deref().filter(|rp| overlap(rp)) {
            return Err(format!(
                "`{}` and node:{}'s recovery path `{}` overlap: staging there could overwrite the files recovery reads",
                tp.display(),
                n.id,
                rp.display()
            ));
        }
    }
    writable(&canon).map_err(|e| format!("`{}`: {e}", tp.display()))?;
    if let Some(free) = free_bytes(&canon) {
        if free < bytes {
            return Err(format!(
                "`{}` has {free} bytes free, the run's files need {bytes}",
                tp.display()
            ));
        }
    }
    Ok(format!(
        "the run's files are staged in `{}` (writable, room for {bytes} bytes), apart from the backups and every recovery path",
        tp.display()
    ))
}

fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".lazarus-probe.{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
}

/// Reads a stored (compressed, encrypted) file through: the stored sha256 and size, the
/// plain RDB's sha256 and size, and the reader's pass over it. The number of keys.
fn read_stored(
    file: &StoredFile,
    e: &ShardEntry,
    identity: Option<&Path>,
    opts: &CheckOptions,
) -> Result<u64, String> {
    let mut plain = PlainRead::open(file, e, identity)?;
    let shown = plain.shown().to_string();
    let report = check_rdb_stream(Path::new(&shown), &mut plain, Some(e.bytes), opts);
    // The rest (the age tag, zstd's end) is read for the digests.
    std::io::copy(&mut plain, &mut std::io::sink())
        .map_err(|err| format!("`{shown}` cannot be decoded: {err}"))?;
    plain.check_stored()?;
    if report.verdict != Verdict::Ok {
        let at = report
            .fault
            .map(|f| format!(" at offset {}: expected {}", f.offset, f.expected))
            .unwrap_or_default();
        return Err(format!(
            "`{shown}` decodes to an RDB that is {}{at}",
            report.verdict
        ));
    }
    plain.finish()?;
    if report.keys != e.keys {
        return Err(format!(
            "the reader counts {} keys, the manifest says {}",
            report.keys, e.keys
        ));
    }
    Ok(report.keys)
}

#[cfg(test)]
mod tests {
    use super::engine_verdict;

    #[test]
    fn an_older_server_is_named_older_and_a_newer_one_takes_allow_newer_server() {
        // valkey 8.1 (RDB 11) onto redis 7.0 (RDB 10): older, and `replay` would take it.
        let older = engine_verdict("valkey 8.1.8", "7.0.15", false, false, true).unwrap_err();
        assert!(older.contains("older than the backup's"), "{older}");
        assert!(older.contains("`replay`"), "{older}");
        assert!(!older.contains("allow_newer_server"), "{older}");
        // Older, with files it loads: `replay` would change nothing, so not suggested.
        let older = engine_verdict("redis 7.2.4", "7.0.15", false, true, false).unwrap_err();
        assert!(older.contains("older than the backup's"), "{older}");
        assert!(
            !older.contains("replay") && !older.contains("allow_newer_server"),
            "{older}"
        );
        // Newer: `allow_newer_server`.
        let newer =
            engine_verdict("redis 7.0.15", "valkey 8.1.8", false, false, false).unwrap_err();
        assert!(newer.contains("newer than the backup's"), "{newer}");
        assert!(newer.contains("`allow_newer_server`"), "{newer}");
        assert!(engine_verdict("redis 7.0.15", "valkey 8.1.8", false, true, false).is_ok());
        assert!(engine_verdict("valkey 8.1.8", "7.0.15", true, false, true).is_ok());
        assert!(engine_verdict("redis 7.0.11", "7.0.15", false, false, false).is_ok());
    }
}
