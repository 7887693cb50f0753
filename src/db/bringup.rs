//! Bringing a database's shards up: the one pipeline `create db`, `restart db`, recovery
//! and restore tasks share. Its steps, in this order:
//! 1. masters start ([`BringUp::start`]; each caller says how: new and empty, as
//!    configured, on the files recovery chose, fenced for a restore);
//! 2. what they loaded is checked ([`BringUp::check_loaded`], against the caller's
//!    counts: the reader's of the files, the backup's manifest);
//! 3. the configured persistence is switched on ([`BringUp::switch_persistence`]) when they
//!    loaded with another;
//! 4. replicas start ([`BringUp::start`] again);
//! 5. the shards are linked ([`BringUp::link`]): the Redis Cluster slot map for a sharded
//!    database, else each replica following its master;
//! 6. the sync source ([`BringUp::attach_source`]).
//!
//! Each step checks what is in place before acting, so the pipeline can be run again on
//! shards it already brought up. The Redis commands behind the steps are
//! [`crate::server`]'s; nothing here speaks the protocol itself.

use std::time::Duration;

use serde::Serialize;

use super::shard::start_shard;
use crate::ccs::{Cluster, Database, Id, Persistence, Role, Shard};
use crate::server::{
    follow, form_cluster, give_back_slots, info, log_tail_on, replicate, save_snapshot,
    set_persistence, wait_in_sync, ClusterMember, MemberRole, ServerError, Servers, ShardAddr,
    StartOptions,
};

use super::{shard_addr, SETUP_TIMEOUT};

/// Bounds the INFO of a load check.
const KEYSPACE_TIMEOUT: Duration = Duration::from_secs(10);
/// The lines of a shard's log a sync that timed out shows.
const SYNC_LOG_LINES: usize = 8;

/// One database's bring-up: where its shards are, and how long each kind of wait may
/// take.
#[derive(Clone, Copy)]
pub struct BringUp<'a> {
    pub cluster: &'a Cluster,
    pub db: &'a Database,
    pub timeouts: Timeouts,
}

/// Bounds on the pipeline's waits (a shard's own start is bounded by its
/// [`StartOptions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Redis Cluster formation (every node met, `cluster_state:ok`, replicas in sync).
    pub form: Duration,
    /// A replica's first sync with its master, and a waited-for full sync from the sync
    /// source.
    pub sync: Duration,
    /// The switch to the configured persistence (an AOF rewrite, a snapshot).
    pub persist: Duration,
}

impl Timeouts {
    /// Every wait bounded by `t`.
    pub fn all(t: Duration) -> Timeouts {
        Timeouts {
            form: t,
            sync: t,
            persist: t,
        }
    }
}

/// How the sync source is attached ([`BringUp::attach_source`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStep {
    /// The database's data is the source's: wait for the link and the first sync (a
    /// new, restarted or restored database).
    Sync,
    /// The database loaded its own data first and follows the source again, kept in its
    /// redis.conf (recovery). A source that does not answer is followed anyway; with
    /// `full_sync` (`only_configuration`: the source's data is the database's) one that
    /// answers is waited for.
    Reattach { full_sync: bool },
}

/// The sync source a database follows after its bring-up.
#[derive(Serialize, Clone, Debug)]
pub struct SyncSource {
    pub endpoint: String,
    /// It accepted a connection when the database was attached.
    pub answers: bool,
    /// The database waited for and completed a full sync from it.
    pub synced: bool,
}

/// Each shard's pid, or why its server did not start.
pub type Starts = Vec<(Id, Result<u32, ServerError>)>;

/// What a master must hold once loaded (step 2), per logical database: at least `low`,
/// at most `high` keys. Logical databases not listed must be empty when `others_empty`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyBounds {
    pub per_db: std::collections::BTreeMap<u32, (u64, u64)>,
    pub others_empty: bool,
}

/// Why a loaded master failed its load check.
#[derive(Debug, thiserror::Error)]
pub enum LoadCheckError {
    /// It holds `loaded` keys in logical database `logical`, outside `low..=high`.
    #[error("loaded {loaded} keys in db {logical}, expected {low} to {high}")]
    Count {
        logical: u32,
        loaded: u64,
        low: u64,
        high: u64,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl<'a> BringUp<'a> {
    /// The bring-up of `db` with the waits of `create db` and `restart db`.
    pub fn new(cluster: &'a Cluster, db: &'a Database) -> BringUp<'a> {
        BringUp {
            cluster,
            db,
            timeouts: Timeouts::all(SETUP_TIMEOUT),
        }
    }

    pub fn with_timeouts(self, timeouts: Timeouts) -> BringUp<'a> {
        BringUp { timeouts, ..self }
    }

    /// Where shard `id` listens, with the database's password.
    pub fn addr(&self, id: Id) -> Result<ShardAddr, ServerError> {
        shard_addr(self.cluster, self.db, id)
            .ok_or_else(|| ServerError::Cluster(format!("redis:{id} has no node")))
    }

    /// Steps 1 and 4: starts the shards `ids` at once, each with `opts`; one result per
    /// shard, in order. Dropped (Ctrl-C during a recovery), the starts under way are
    /// dropped with it: a recovery's marker lets the re-run stop a server whose start was
    /// cut short. `create db` and `restart` never drop it (a server started by a dropped
    /// start would run with nothing to say it is theirs).
    pub async fn start(&self, server: &Servers, ids: &[Id], opts: &StartOptions) -> Starts {
        let mut starts = tokio::task::JoinSet::new();
        for &id in ids {
            let (server, cluster, db, opts) = (
                server.clone(),
                self.cluster.clone(),
                self.db.clone(),
                opts.clone(),
            );
            starts.spawn(async move {
                let shard = db.shards.iter().find(|s| s.id == id).expect("shard of db");
                (id, start_shard(&server, &cluster, &db, shard, &opts).await)
            });
        }
        let mut done = std::collections::BTreeMap::new();
        let mut lost = String::new();
        while let Some(joined) = starts.join_next().await {
            match joined {
                Ok((id, result)) => {
                    done.insert(id, result);
                }
                Err(e) => lost = e.to_string(),
            }
        }
        ids.iter()
            .map(|&id| {
                let result = done.remove(&id).unwrap_or_else(|| {
                    Err(ServerError::StartFailed {
                        shard: id,
                        reason: format!("start task failed: {lost}"),
                        log_tail: String::new(),
                    })
                });
                (id, result)
            })
            .collect()
    }

    /// The ids of the database's shards of `role`.
    pub fn ids(&self, role: Role) -> Vec<Id> {
        self.db
            .shards
            .iter()
            .filter(|s| s.role == role)
            .map(|s| s.id)
            .collect()
    }

    /// Step 2: what master `id` loaded against `bounds`, logical database by logical
    /// database. Returns the keys it holds in all.
    pub async fn check_loaded(&self, id: Id, bounds: &KeyBounds) -> Result<u64, LoadCheckError> {
        let keyspace = info(&self.addr(id)?, "keyspace", KEYSPACE_TIMEOUT).await?;
        let loaded_in = |logical: u32| -> u64 {
            keyspace
                .get(&format!("db{logical}"))
                .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let mut logical: Vec<u32> = bounds.per_db.keys().copied().collect();
        if bounds.others_empty {
            logical.extend(
                keyspace
                    .0
                    .keys()
                    .filter_map(|k| k.strip_prefix("db")?.parse::<u32>().ok()),
            );
        }
        logical.sort_unstable();
        logical.dedup();
        for n in logical {
            let (low, high) = bounds.per_db.get(&n).copied().unwrap_or((0, 0));
            let loaded = loaded_in(n);
            if loaded > high || loaded < low {
                return Err(LoadCheckError::Count {
                    logical: n,
                    loaded,
                    low,
                    high,
                });
            }
        }
        Ok(keyspace.keys())
    }

    /// Step 3: every master switches to the configured persistence (written to its
    /// redis.conf). A master in `unsnapshotted` (loaded from an AOF, or replayed: no
    /// dump.rdb holds its data) also takes a snapshot when the AOF is off, since only a
    /// snapshot then holds the data across a restart. A master in `aof_loaded` started
    /// with the AOF on and loaded its data from those files: when the AOF stays on, they
    /// hold the data already, so the rewrite the server may start by itself after a load
    /// (`auto-aof-rewrite-percentage`: 14 s of a 1.2 GB recovery) is not waited for.
    pub async fn switch_persistence(
        &self,
        unsnapshotted: &[Id],
        aof_loaded: &[Id],
    ) -> Result<(), ServerError> {
        let persistence = self.db.config.persistence;
        for shard in self.db.masters() {
            let a = self.addr(shard.id)?;
            let durable = aof_loaded.contains(&shard.id);
            set_persistence(&a, persistence, !durable, self.timeouts.persist).await?;
            if unsnapshotted.contains(&shard.id) && persistence == Persistence::Snapshot {
                save_snapshot(&a, self.timeouts.persist).await?;
            }
        }
        Ok(())
    }

    /// Step 5: the Redis Cluster for a sharded database (slots assigned, nodes met,
    /// replicas following); otherwise each replica follows its master and has synced.
    /// A wait that timed out says what the logs of the shards not in sync end with.
    pub async fn link(&self) -> Result<(), ServerError> {
        match self.link_shards().await {
            Err(e) => Err(self.with_sync_logs(e).await),
            ok => ok,
        }
    }

    async fn link_shards(&self) -> Result<(), ServerError> {
        if self.db.config.shards > 1 {
            return form_cluster(&self.members()?, self.timeouts.form).await;
        }
        for s in self.replicas() {
            let master = self.addr(s.master.unwrap_or(self.db.shards[0].id))?;
            replicate(
                &self.addr(s.id)?,
                &master.host,
                master.port,
                self.timeouts.sync,
            )
            .await?;
        }
        Ok(())
    }

    /// Before data is replaced in a running sharded database: each master whose replica
    /// serves its slots (a failover) takes them back, so each master is the one the
    /// configuration names.
    pub async fn restore_roles(&self) -> Result<(), ServerError> {
        if self.db.config.shards > 1 {
            give_back_slots(&self.members()?, self.timeouts.form).await?;
        }
        Ok(())
    }

    /// Step 6: the masters follow the database's sync source (a single-shard database's
    /// only; Redis Cluster shards cannot `REPLICAOF`). None when it has none. A wait
    /// that timed out says what the logs of the shards not in sync end with.
    pub async fn attach_source(&self, step: SourceStep) -> Result<Option<SyncSource>, ServerError> {
        match self.attach_source_now(step).await {
            Err(e) => Err(self.with_sync_logs(e).await),
            ok => ok,
        }
    }

    /// A timed-out wait for a sync (`e`), with the last lines of the log of each shard
    /// of the database that replicates (a replica, or a master following the sync
    /// source) and whose link is not up. Any other error as it is.
    async fn with_sync_logs(&self, e: ServerError) -> ServerError {
        if !matches!(
            e,
            ServerError::Timeout { .. } | ServerError::SyncRefused { .. }
        ) {
            return e;
        }
        let Ok(hosts) = self.cluster.hosts() else {
            return e;
        };
        let follows_source = self.db.config.sync_source.is_some();
        let mut logs = Vec::new();
        for s in &self.db.shards {
            if s.role == Role::Master && !follows_source {
                continue;
            }
            let (Ok(a), Some(node)) = (self.addr(s.id), self.cluster.nodes.get(&s.node)) else {
                continue;
            };
            let up = info(&a, "replication", KEYSPACE_TIMEOUT)
                .await
                .is_ok_and(|i| i.get("master_link_status") == Some("up"));
            if up {
                continue;
            }
            let dir = node.shard_dir(self.db.id, s.id);
            let tail = log_tail_on(&*hosts.of(s.node), &dir, SYNC_LOG_LINES).await;
            if !tail.trim().is_empty() {
                logs.push((s.id, tail));
            }
        }
        match logs.is_empty() {
            true => e,
            false => ServerError::NotInSync {
                cause: Box::new(e),
                logs,
            },
        }
    }

    async fn attach_source_now(&self, step: SourceStep) -> Result<Option<SyncSource>, ServerError> {
        let Some(source) = self.db.config.sync_source.as_ref() else {
            return Ok(None);
        };
        if self.db.config.shards > 1 {
            return Ok(None);
        }
        let (host, port) = (source.host.as_str(), source.port);
        let (answers, wait) = match step {
            SourceStep::Sync => (true, true),
            SourceStep::Reattach { full_sync } => {
                let answers = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect((host, port)),
                )
                .await
                .is_ok_and(|c| c.is_ok());
                (answers, answers && full_sync)
            }
        };
        for master in self.db.masters() {
            let a = self.addr(master.id)?;
            match step {
                // Already in redis.conf (or meant to be the data): no rewrite.
                SourceStep::Sync => replicate(&a, host, port, self.timeouts.sync).await?,
                SourceStep::Reattach { .. } => {
                    follow(&a, host, port, wait.then_some(self.timeouts.sync)).await?
                }
            }
        }
        if wait {
            // A master's full sync from its source drops its replicas' links: they
            // sync again from the data it now holds.
            for s in self.replicas() {
                wait_in_sync(&self.addr(s.id)?, self.timeouts.sync).await?;
            }
        }
        Ok(Some(SyncSource {
            endpoint: source.to_string(),
            answers,
            synced: wait,
        }))
    }

    /// Steps 5 and 6 as a new, restarted or restored database needs them: linked, then
    /// synced from its source.
    pub async fn wire(&self) -> Result<(), ServerError> {
        self.link().await?;
        self.attach_source(SourceStep::Sync).await?;
        Ok(())
    }

    fn replicas(&self) -> impl Iterator<Item = &'a Shard> {
        self.db.shards.iter().filter(|s| s.role == Role::Replica)
    }

    /// The Redis Cluster of a sharded database: each master with its slot range, each
    /// replica following its master (by index in the list).
    fn members(&self) -> Result<Vec<ClusterMember>, ServerError> {
        let shards = &self.db.shards;
        let mut members = Vec::with_capacity(shards.len());
        for s in shards {
            let role = match s.role {
                Role::Master => MemberRole::Master {
                    slots: s.slots.ok_or_else(|| {
                        ServerError::Cluster(format!("redis:{} has no slots", s.id))
                    })?,
                },
                Role::Replica => MemberRole::Replica {
                    of: shards
                        .iter()
                        .position(|m| Some(m.id) == s.master)
                        .ok_or_else(|| {
                            ServerError::Cluster(format!("redis:{} follows no master", s.id))
                        })?,
                },
            };
            members.push(ClusterMember {
                addr: self.addr(s.id)?,
                role,
            });
        }
        Ok(members)
    }
}

/// Steps 5 and 6 of `db` with the waits of `create db` ([`BringUp::wire`]).
pub async fn wire(cluster: &Cluster, db: &Database) -> Result<(), super::DbError> {
    Ok(BringUp::new(cluster, db).wire().await?)
}
