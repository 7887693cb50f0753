//! Recovery planning: for every database waiting for recovery, what its old files under
//! the nodes' recovery paths can bring back, shard by shard, or why they cannot.
//!
//! Planning only reads. It never writes, moves or deletes anything under a recovery path:
//! those files may be the operator's only copy of the data.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use super::files::Disk;
use super::reason::io_reason;
pub use super::reason::Reason;
use super::source::nanos_to_secs;
pub use super::source::{CheckVerdict, Checker, Source, SourceCheck, SourceKind};
use crate::server::IdentityRead;

use crate::ccs::{
    shard_dir_under, Cluster, Database, DbState, Id, Persistence, Role, Shard, ShardIdentity,
    SlotRange,
};

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Ready {
        source: Source,
    },
    Missing {
        reason: Reason,
    },
    /// Replicas bring no data of their own: they sync from their master once it runs.
    Replica,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    pub shard: Id,
    pub node: Id,
    pub role: Role,
    pub master: Option<Id>,
    pub slots: Option<SlotRange>,
    pub outcome: Outcome,
    /// Candidates looked at and set aside, with why (e.g. a corrupted AOF beside a good
    /// snapshot, or the master's own files when a replica's copy is used).
    pub set_aside: Vec<Reason>,
    /// Other copies the reader accepts, freshest first: what recovery loads next when the
    /// server refuses the chosen one (the reader may call ok what the server refuses).
    #[serde(skip)]
    pub alternates: Vec<Source>,
    /// What the operator should know of how the copies were judged (a damaged identity
    /// file whose directory was taken for the shard's by its place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DbStatus {
    Ready,
    MissingFiles,
}

impl fmt::Display for DbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbStatus::Ready => "ready",
            DbStatus::MissingFiles => "missing files",
        })
    }
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct DbPlan {
    pub id: Id,
    pub name: String,
    /// rladmin's TYPE: the engine its nodes' servers are, `redis` or `valkey` (joined by
    /// `,` when they differ), as `status` shows it.
    #[serde(rename = "type")]
    pub kind: String,
    pub shards: u32,
    pub replication: bool,
    pub persistence: Persistence,
    pub status: DbStatus,
    pub shard_plans: Vec<ShardPlan>,
}

impl DbPlan {
    /// Reasons that forbid a data recovery: something is there but cannot be used. The
    /// operator fixes the files, or asks for `only_configuration` explicitly.
    pub fn blocking(&self) -> Vec<(Id, &Reason)> {
        let mut out = Vec::new();
        for s in &self.shard_plans {
            if let Outcome::Missing { reason } = &s.outcome {
                for r in std::iter::once(reason).chain(&s.set_aside) {
                    if !r.is_absence() {
                        out.push((s.shard, r));
                    }
                }
            }
        }
        out
    }

    /// Master shards that will come back empty because nothing of theirs was found.
    pub fn empty_masters(&self) -> Vec<Id> {
        self.shard_plans
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Missing { .. }))
            .map(|s| s.shard)
            .collect()
    }
}

#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryPlan {
    pub databases: Vec<DbPlan>,
}

/// Plans every database in recovery state.
pub fn plan_all(
    cluster: &Cluster,
    max_rdb: Option<u32>,
    server: &str,
    check: &Checker,
) -> RecoveryPlan {
    let databases = cluster
        .databases
        .values()
        .filter(|db| db.state == DbState::PendingRecovery)
        .map(|db| plan_db(cluster, db, max_rdb, server, check))
        .collect();
    RecoveryPlan { databases }
}

/// Plans one database: per master, the best valid copy among its own directory and its
/// replicas' directories.
pub fn plan_db(
    cluster: &Cluster,
    db: &Database,
    max_rdb: Option<u32>,
    server: &str,
    check: &Checker,
) -> DbPlan {
    plan_db_with(cluster, db, max_rdb, server, check, false, false)
}

/// [`plan_db`], and with `replay` an RDB too new for the server is a source to replay
/// (its keys written as commands) rather than a refusal.
pub fn plan_db_with(
    cluster: &Cluster,
    db: &Database,
    max_rdb: Option<u32>,
    server: &str,
    check: &Checker,
    replay: bool,
    allow_stale: bool,
) -> DbPlan {
    plan_db_on(&Inspect {
        disk: &Disk::local(),
        cluster,
        db,
        max_rdb,
        server,
        check,
        replay,
        allow_stale,
        refill: false,
    })
}

/// [`plan_db_with`], with every option of the inspection spelled out: `disk` reads each
/// node's files where they lie.
pub fn plan_db_on(ctx: &Inspect) -> DbPlan {
    let db = ctx.db;
    let shard_plans: Vec<ShardPlan> = db
        .shards
        .iter()
        .map(|shard| {
            let (outcome, set_aside, alternates, notes) = match shard.role {
                Role::Replica => (Outcome::Replica, Vec::new(), Vec::new(), Vec::new()),
                Role::Master => ctx.choose_for_master(shard),
            };
            ShardPlan {
                shard: shard.id,
                node: shard.node,
                role: shard.role,
                master: shard.master,
                slots: shard.slots,
                outcome,
                set_aside,
                alternates,
                notes,
            }
        })
        .collect();
    let all_ready = shard_plans
        .iter()
        .all(|s| !matches!(s.outcome, Outcome::Missing { .. }));
    DbPlan {
        id: db.id,
        name: db.config.name.clone(),
        // The engine the files must load on; [`crate::recovery::apply::Recovery::plan_on`]
        // names every engine among the nodes.
        kind: ctx.server.split(' ').next().unwrap_or_default().to_string(),
        shards: db.config.shards,
        replication: db.config.replication,
        persistence: db.config.persistence,
        status: if all_ready {
            DbStatus::Ready
        } else {
            DbStatus::MissingFiles
        },
        shard_plans,
    }
}

/// What planning one database reads and how it judges (see [`plan_db_on`]).
pub struct Inspect<'a> {
    /// Where each node's files are read.
    pub disk: &'a Disk,
    pub cluster: &'a Cluster,
    pub db: &'a Database,
    /// The newest RDB version the oldest engine among the database's nodes loads.
    pub max_rdb: Option<u32>,
    /// That engine's label, for the reasons a file is refused.
    pub server: &'a str,
    pub check: &'a Checker<'a>,
    /// An RDB too new for the server is a source to replay rather than a refusal.
    pub replay: bool,
    /// Load a source older than data Lazarus knows the database had (`allow_stale`).
    pub allow_stale: bool,
    /// The database is live and its current shard directories hold what came back EMPTY
    /// (`recover db <db> from_files`), no newer data a source must beat.
    pub refill: bool,
}

/// What one shard directory offers (see [`Inspect::inspect_shard_dir`]).
#[derive(Default)]
struct Inspected {
    valid: Vec<Source>,
    rejected: Vec<Reason>,
    damaged: Vec<Damaged>,
    notes: Vec<String>,
}

/// What planning one master decided: its outcome, the copies set aside, the other valid
/// copies (freshest first) and notes for the operator.
type MasterChoice = (Outcome, Vec<Reason>, Vec<Source>, Vec<String>);

/// A candidate refused as damaged (corrupted, truncated), and when it was last written:
/// data a valid but older copy lacks.
struct Damaged {
    path: PathBuf,
    /// The shard whose directory holds it (the master, or one of its replicas).
    shard: Id,
    modified_ns: i64,
    /// A truncated AOF: what `check file ... fix` cuts at its last complete record.
    truncated: Option<PathBuf>,
}

impl Damaged {
    fn of(
        reason: &Reason,
        path: &Path,
        shard: Id,
        mtime: impl FnOnce() -> Option<i64>,
    ) -> Option<Damaged> {
        let truncated = match reason {
            Reason::TruncatedAof { source, .. } => Some(source.clone()),
            Reason::Corrupted { .. } => None,
            _ => return None,
        };
        Some(Damaged {
            path: path.to_path_buf(),
            shard,
            modified_ns: mtime()?,
            truncated,
        })
    }

    /// Why `older`, valid, is not loaded in this file's stead.
    fn makes_stale(&self, older: &Source, db: &Database) -> Reason {
        let anyway = format!(
            "or load the older file anyway with `recover db {} allow_stale`",
            db.config.name
        );
        Reason::Stale {
            file: older.path.clone(),
            newer: format!("`{}`, which is damaged", self.path.display()),
            older_by_ms: (self.modified_ns - older.modified_ns) / 1_000_000,
            next: match &self.truncated {
                Some(source) => format!(
                    "keep its complete records ({}), {anyway}",
                    super::reason::keep_complete_records(source, &db.config.name)
                ),
                None => format!("repair it or bring another copy of it, {anyway}"),
            },
        }
    }
}

/// The newest data Lazarus knows a master's shard had, apart from the recovery path: a
/// source older than it would bring back an old state and lose every write since.
/// Times of files are unix nanoseconds: two writes within one second are told apart.
#[derive(Default)]
struct Known {
    /// Files of the shard (or a replica's) in its node's persistent path, or in one of the
    /// node's earlier lives (the `-recovered` siblings recovery made): per shard, the
    /// newest modification time, and the file.
    files: BTreeMap<Id, (i64, PathBuf)>,
    /// The modification time of the source the last recovery or restore loaded into the
    /// master, as the CCS recorded it: the same time is that very file, an older one is
    /// data from before it.
    loaded: Option<(i64, Id)>,
    /// The newest succeeded backup run of the database taken after that load: its start,
    /// and its id.
    backup: Option<(i64, String)>,
}

impl Inspect<'_> {
    fn choose_for_master(&self, master: &Shard) -> MasterChoice {
        let copies = std::iter::once(master).chain(
            self.db
                .shards
                .iter()
                .filter(|s| s.role == Role::Replica && s.master == Some(master.id)),
        );
        let mut valid: Vec<Source> = Vec::new();
        let mut set_aside = Vec::new();
        let mut damaged = Vec::new();
        let mut notes = Vec::new();
        let known = if self.allow_stale {
            Known::default()
        } else {
            self.known(master)
        };
        for shard in copies {
            let found = self.inspect_shard_dir(shard, master.slots, &known);
            set_aside.extend(found.rejected);
            valid.extend(found.valid);
            damaged.extend(found.damaged);
            notes.extend(found.notes);
        }
        // The freshest; ties go to the earlier candidate (the master's own files, the AOF
        // before the RDB). The others stay, freshest first, for a server that refuses it.
        let mut order: Vec<usize> = (0..valid.len()).collect();
        order.sort_by_key(|i| (std::cmp::Reverse(valid[*i].written), *i));
        let mut ranked: Vec<Source> = order.into_iter().map(|i| valid[i].clone()).collect();
        if ranked.is_empty() {
            // Lead with what most needs the operator: a refusal before an absence.
            let lead = set_aside.iter().position(|r| !r.is_absence()).unwrap_or(0);
            let reason = set_aside.remove(lead);
            return (Outcome::Missing { reason }, set_aside, Vec::new(), notes);
        }
        let source = ranked.remove(0);
        // That some copy is absent is no news once another one is used.
        set_aside.retain(|r| !r.is_absence());
        if !self.allow_stale {
            // A damaged file written after the freshest valid one held data it lacks
            // (a replica's first, empty sync beside its master's truncated RDB; a
            // snapshot beside the AOF that logged every write since): loading the older
            // one would come back "successfully" without those writes.
            let newer = damaged.iter().filter(|d| {
                newer_data(
                    d.modified_ns,
                    d.shard,
                    source.modified_ns,
                    source.from_shard,
                )
            });
            if let Some(d) = newer.max_by_key(|d| d.modified_ns) {
                let reason = d.makes_stale(&source, self.db);
                return (Outcome::Missing { reason }, set_aside, Vec::new(), notes);
            }
        }
        (Outcome::Ready { source }, set_aside, ranked, notes)
    }

    /// The valid sources in one shard directory, every candidate refused there, and
    /// which of those were refused as damaged.
    fn inspect_shard_dir(
        &self,
        shard: &Shard,
        slots: Option<SlotRange>,
        known: &Known,
    ) -> Inspected {
        let refused = |reason| Inspected {
            rejected: vec![reason],
            ..Inspected::default()
        };
        let Some(node) = self.cluster.nodes.get(&shard.node) else {
            return refused(Reason::NoRecoveryPath { node: shard.node });
        };
        let Some(root) = node.recovery_path.as_deref() else {
            return refused(Reason::NoRecoveryPath { node: node.id });
        };
        let disk = self.disk;
        if let Err(e) = disk.stat(node.id, root) {
            return refused(io_reason(root, e, true));
        }
        let dir = shard_dir_under(root, self.db.id, shard.id);
        let names = match disk.list(node.id, &dir) {
            Ok(names) => names,
            Err(e) => return refused(io_reason(&dir, e, false)),
        };
        let mut out = Inspected::default();
        match self.check_identity(&dir, shard) {
            Ok(None) => {}
            Ok(Some(note)) => out.notes.push(note),
            Err(reason) => return refused(reason),
        }
        for kind in [SourceKind::AofDir, SourceKind::AofFile, SourceKind::Rdb] {
            let path = dir.join(kind.file_name());
            if !names.iter().any(|n| n == kind.file_name()) {
                continue;
            }
            // An appendonlydir makes a leftover appendonly.aof irrelevant to Redis 7.
            if kind == SourceKind::AofFile && out.valid.iter().any(|b| b.kind == SourceKind::AofDir)
            {
                continue;
            }
            // AOF comes first, so on a tie the AOF (the more complete log) is chosen.
            match self.candidate(kind, &path, shard, slots) {
                Ok(source) => match stale(source, known, self.db) {
                    Ok(source) => out.valid.push(source),
                    Err(reason) => out.rejected.push(reason),
                },
                Err(reason) => {
                    if let Some(d) = Damaged::of(&reason, &path, shard.id, || {
                        disk.readable_mtime(shard.node, &path).ok()
                    }) {
                        out.damaged.push(d);
                    }
                    out.rejected.push(reason);
                }
            }
        }
        if out.valid.is_empty() && out.rejected.is_empty() {
            out.rejected.push(Reason::FileMissing { dir });
        }
        out
    }

    /// What Lazarus knows of `master`'s data outside the recovery paths.
    fn known(&self, master: &Shard) -> Known {
        let copies = std::iter::once(master).chain(
            self.db
                .shards
                .iter()
                .filter(|s| s.role == Role::Replica && s.master == Some(master.id)),
        );
        let disk = self.disk;
        let mut files: BTreeMap<Id, (i64, PathBuf)> = BTreeMap::new();
        for shard in copies {
            let Some(node) = self.cluster.nodes.get(&shard.node) else {
                continue;
            };
            let canon = |p: &Path| disk.canonical(node.id, p);
            let recovery = node.recovery_path.as_deref().map(canon);
            let mut lives = disk.recovered_family(node.id, &node.persistent_path);
            if self.refill {
                // The family holds the current path too: what came back EMPTY (an AOF
                // server writes its empty AOF at once) is no newer data.
                let current = canon(&node.persistent_path);
                lives.retain(|p| canon(p) != current);
            } else {
                lives.push(node.persistent_path.clone());
            }
            lives.sort();
            lives.dedup();
            for root in lives {
                let root = canon(&root);
                if recovery
                    .as_ref()
                    .is_some_and(|r| root.starts_with(r) || r.starts_with(&root))
                {
                    continue;
                }
                let dir = shard_dir_under(&root, self.db.id, shard.id);
                // Recovery's own copies (a run cut short) are no newer data.
                let Ok(names) = disk.list(node.id, &dir) else {
                    continue;
                };
                if names
                    .iter()
                    .any(|n| n == crate::server::shard_dir::MARKER_FILE)
                {
                    continue;
                }
                for kind in [SourceKind::AofDir, SourceKind::AofFile, SourceKind::Rdb] {
                    if !names.iter().any(|n| n == kind.file_name()) {
                        continue;
                    }
                    let path = dir.join(kind.file_name());
                    if let Ok(written) = disk.readable_mtime(node.id, &path) {
                        let newest = files.get(&shard.id);
                        if newest.is_none_or(|f| written > f.0) {
                            files.insert(shard.id, (written, path));
                        }
                    }
                }
            }
        }
        // A run taken before the last recovery or restore loaded the master is data the
        // load replaced (a forced restore's safety backup is one, taken just before it):
        // the database had it earlier, not later.
        let backup = self
            .cluster
            .backups
            .runs
            .iter()
            .filter(|r| r.db == self.db.id && r.status == crate::ccs::RunStatus::Succeeded)
            .filter(|r| {
                master
                    .loaded_ns
                    .is_none_or(|ns| r.started.saturating_mul(1_000_000) > ns)
            })
            .max_by_key(|r| r.started)
            .map(|r| (r.started / 1000, r.id.clone()));
        let loaded = master.loaded_ns.map(|ns| (ns, master.id));
        Known {
            files,
            backup,
            loaded,
        }
    }

    /// Whether the identity file in `dir` lets its files be `shard`'s: a refusal (another
    /// cluster's or shard's, or unreadable), or a note when it is damaged.
    fn check_identity(&self, dir: &Path, shard: &Shard) -> Result<Option<String>, Reason> {
        let shard_dir = crate::server::ShardDir::at(shard.node, dir);
        let path = shard_dir.identity_file();
        let identity: ShardIdentity = match IdentityRead::from_read(
            self.disk.read(shard.node, &path),
        ) {
            IdentityRead::Found(identity) => identity,
            // Older or hand-copied trees may lack it: the layout already names the shard.
            IdentityRead::Missing => return Ok(None),
            IdentityRead::Unreadable(e) => return Err(io_reason(&path, e, false)),
            // Damaged (cut short by the crash, or overwritten): it names nobody else,
            // and the layout names the shard, as for a tree without one. Its data
            // files are judged as any copy's, so a fresher one is not passed over.
            IdentityRead::Corrupt(_, e) => {
                return Ok(Some(format!(
                        "the identity file `{}` is damaged ({e}): the files beside it are taken as redis:{}'s by their directory",
                        path.display(),
                        shard.id
                    )));
            }
        };
        if identity.cluster_id != self.cluster.cluster_id {
            return Err(Reason::Foreign {
                path,
                detail: format!(
                    "belongs to cluster_id {} (`{}`), not {}",
                    identity.cluster_id, identity.cluster_name, self.cluster.cluster_id
                ),
            });
        }
        if identity.db_id != self.db.id || identity.shard_id != shard.id {
            return Err(Reason::Foreign {
                path,
                detail: format!(
                    "names db:{} redis:{}, not db:{} redis:{}",
                    identity.db_id, identity.shard_id, self.db.id, shard.id
                ),
            });
        }
        Ok(None)
    }

    fn candidate(
        &self,
        kind: SourceKind,
        path: &Path,
        shard: &Shard,
        slots: Option<SlotRange>,
    ) -> Result<Source, Reason> {
        let from_shard = shard.id;
        let written_fs = self.disk.readable_mtime(shard.node, path)?;
        let report = self.disk.check(shard.node, path, slots, self.check);
        match report.verdict {
            CheckVerdict::Ok => {}
            CheckVerdict::UnsupportedVersion => {
                return Err(Reason::Incompatible {
                    file: fault_file(&report, path),
                    rdb_version: report.rdb_version.unwrap_or(0),
                    max: self.max_rdb,
                    server: self.server.to_string(),
                    replayable: false,
                })
            }
            CheckVerdict::Truncated | CheckVerdict::Corrupt => {
                let (file, offset, expected) = report.fault.clone().unwrap_or_else(|| {
                    (
                        path.to_path_buf(),
                        report.bytes,
                        "a complete file".to_string(),
                    )
                });
                if report.verdict == CheckVerdict::Truncated && kind.is_aof() {
                    return Err(Reason::TruncatedAof {
                        file,
                        offset,
                        expected,
                        source: path.to_path_buf(),
                        db: self.db.config.name.clone(),
                    });
                }
                return Err(Reason::Corrupted {
                    file,
                    offset,
                    expected,
                });
            }
        }
        let mut replay = false;
        if let Some(v) = report.rdb_version {
            if self.max_rdb.is_none_or(|max| v > max) {
                // A whole RDB the reader decoded is replayable, and so is an AOF: its
                // base's keys, then its commands as they are.
                if !self.replay {
                    return Err(Reason::Incompatible {
                        file: path.to_path_buf(),
                        rdb_version: v,
                        max: self.max_rdb,
                        server: self.server.to_string(),
                        replayable: true,
                    });
                }
                // The replay decodes every value whole, where a load would not look.
                if !report.damaged_values.is_empty() {
                    return Err(Reason::Corrupted {
                        file: path.to_path_buf(),
                        offset: 0,
                        expected: format!(
                            "values whole enough to replay as commands, not {} (a server \
                             of its version would load them, broken; a replay decodes them)",
                            report.damaged_values.join(", ")
                        ),
                    });
                }
                replay = true;
            }
        }
        if report.keys_outside_slots > 0 {
            if let Some(slots) = slots {
                return Err(Reason::KeysOutsideSlots {
                    file: path.to_path_buf(),
                    count: report.keys_outside_slots,
                    slots,
                    examples: report.outside_examples.clone(),
                });
            }
        }
        // An RDB says when it was written; an AOF is as fresh as its last append.
        let written = match (kind, report.created) {
            (SourceKind::Rdb, Some(created)) => created,
            _ => nanos_to_secs(written_fs),
        };
        Ok(Source {
            kind,
            path: path.to_path_buf(),
            from_shard,
            keys: report.keys,
            keys_exact: report.keys_exact,
            keys_per_db: report.keys_per_db,
            keys_estimate_why: report.keys_estimate_why,
            expires: report.expires,
            expired: report.expired,
            expires_per_db: report.expires_per_db,
            expired_per_db: report.expired_per_db,
            bytes: report.bytes,
            damaged_values: report.damaged_values,
            written,
            modified_ns: written_fs,
            loaded_before: false,
            replay,
        })
    }
}

/// How long after its master a replica may write the same data: its copy newer by less
/// than this holds nothing more (a replica appends a moment after its master; the choice
/// of the freshest copy ties the two to the second, the master's first).
const REPLICA_LAG_NS: i64 = 1_000_000_000;

/// Whether a file of shard `shard` written at `at` holds data a source of shard `of`
/// written at `mtime` lacks: written after it, by a replica's lag more when it is another
/// shard's (a master's and its replica's copies of the same writes).
fn newer_data(at: i64, shard: Id, mtime: i64, of: Id) -> bool {
    match shard == of {
        true => at > mtime,
        false => at - mtime >= REPLICA_LAG_NS,
    }
}

/// Refuses a valid source older than what Lazarus knows the database had: files written
/// since in the node's persistent paths, or the source the last recovery or restore
/// loaded (both compared by modification time to the nanosecond, as the files are
/// measured; another shard's file by a replica's lag more, [`newer_data`]), or a
/// succeeded backup run taken after an RDB's cut.
fn stale(mut source: Source, known: &Known, db: &Database) -> Result<Source, Reason> {
    let next_anyway = format!(
        "or load it anyway with `recover db {} allow_stale`",
        db.config.name
    );
    // As validation measured it (an RDB's `written` is its own `ctime`, to the second).
    let mtime = source.modified_ns;
    let later = known
        .files
        .iter()
        .filter(|(shard, (at, _))| newer_data(*at, **shard, mtime, source.from_shard))
        .map(|(_, f)| f)
        .max_by_key(|(at, _)| *at);
    if let Some((newer, path)) = later {
        return Err(Reason::Stale {
            file: source.path,
            newer: format!("`{}`", path.display()),
            older_by_ms: (newer - mtime) / 1_000_000,
            next: format!(
                "recover from the newer files (point the node's recovery path at the directory that holds `redis/`), {next_anyway}"
            ),
        });
    }
    if let Some((loaded, master)) = known.loaded {
        if mtime < loaded {
            return Err(Reason::Stale {
                file: source.path,
                newer: format!(
                    "the files the last recovery or restore loaded into redis:{master} (written {})",
                    crate::backup::format_time(loaded / 1_000_000)
                ),
                older_by_ms: (loaded - mtime) / 1_000_000,
                next: format!(
                    "recover from those files or newer ones (point the node's recovery path at the directory that holds them), {next_anyway}"
                ),
            });
        }
        source.loaded_before = mtime == loaded;
    }
    // An RDB is a cut at its `ctime`: a backup run after it may hold writes it lacks. An
    // AOF is appended to on every write, so one last written before the run holds
    // everything the run does.
    if let Some((at, run)) = known.backup.as_ref().filter(|_| !source.kind.is_aof()) {
        if source.written < *at {
            return Err(Reason::Stale {
                file: source.path,
                newer: format!("backup run `{run}`"),
                older_by_ms: (at - source.written) * 1000,
                next: format!(
                    "restore that run (`restore task create name <task> db {} backup {run}`), {next_anyway}",
                    db.config.name
                ),
            });
        }
    }
    Ok(source)
}

fn fault_file(report: &SourceCheck, path: &Path) -> PathBuf {
    report
        .fault
        .as_ref()
        .map(|f| f.0.clone())
        .unwrap_or_else(|| path.to_path_buf())
}

/// Without reading the files through: per master, the source the plan will choose if it
/// is valid (the freshest candidate as validation dates it: an RDB by the `ctime` in its
/// header, an AOF by its last write, to the second; AOF on a tie, the master's own files
/// before a replica's copy). Recovery starts loading this while validation runs.
pub fn likely_sources(
    disk: &Disk,
    cluster: &Cluster,
    db: &Database,
) -> BTreeMap<Id, (SourceKind, PathBuf)> {
    let mut out = BTreeMap::new();
    for master in db.masters() {
        let copies = std::iter::once(master).chain(
            db.shards
                .iter()
                .filter(|s| s.role == Role::Replica && s.master == Some(master.id)),
        );
        let mut best: Option<(i64, SourceKind, PathBuf)> = None;
        for shard in copies {
            let Some(root) = cluster
                .nodes
                .get(&shard.node)
                .and_then(|n| n.recovery_path.as_deref())
            else {
                continue;
            };
            let dir = shard_dir_under(root, db.id, shard.id);
            let present = disk.list(shard.node, &dir).unwrap_or_default();
            let has_dir = disk.is_dir(shard.node, &dir.join(SourceKind::AofDir.file_name()));
            for kind in [SourceKind::AofDir, SourceKind::AofFile, SourceKind::Rdb] {
                if kind == SourceKind::AofFile && has_dir {
                    continue;
                }
                if !present.iter().any(|n| n == kind.file_name()) {
                    continue;
                }
                let path = dir.join(kind.file_name());
                let Ok(modified) = disk.readable_mtime(shard.node, &path) else {
                    continue;
                };
                // Ranked as validation ranks them (`inspect`): an RDB by when it says it
                // was written, in seconds like an AOF's last append, ties to the AOF.
                // A guess that differs from validation's choice loads the database twice.
                let written = match kind {
                    SourceKind::Rdb => disk.rdb_created(shard.node, &path),
                    _ => None,
                }
                .unwrap_or_else(|| nanos_to_secs(modified));
                if best.as_ref().is_none_or(|b| written > b.0) {
                    best = Some((written, kind, path));
                }
            }
        }
        if let Some((_, kind, path)) = best {
            out.insert(master.id, (kind, path));
        }
    }
    out
}

/// Seconds as an operator reads an age: `45s`, `12m`, `3h 20m`, `2d 4h`.
pub fn format_age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
