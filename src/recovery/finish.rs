//! The end of a database's recovery, once its masters have loaded: key counts checked,
//! the configured persistence switched on, replicas and the slot map restored, and the
//! sync source re-attached.

use std::time::Duration;

use super::apply::{ContentProof, Proof, RecoverError, Recovered, Recovery, SyncSource};
use super::plan::{DbPlan, Outcome, Source, SourceKind};
use crate::ccs::{Cluster, Database, Id, Persistence, Role, Shard};
use crate::server::{
    connect, form_cluster, info, replicate, set_persistence, start_shard, wait_in_sync,
    ClusterMember, ConfOptions, MemberRole, ServerError, ShardAddr, StartOptions,
};
use crate::verify;

/// After the masters loaded: check, switch persistence, replicas, slot map, sync source.
pub(super) async fn finish(
    rec: &Recovery,
    cluster: &Cluster,
    db: &Database,
    plan: Option<&DbPlan>,
    mut pids: Vec<(Id, u32)>,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<Recovered, RecoverError> {
    let source_of = |id: Id| -> Option<Source> {
        plan?
            .shard_plans
            .iter()
            .find(|s| s.shard == id)
            .and_then(|s| match &s.outcome {
                Outcome::Ready { source } => Some(source.clone()),
                _ => None,
            })
    };
    let sources: Vec<(Id, Source)> = db
        .masters()
        .filter_map(|m| source_of(m.id).map(|s| (m.id, s)))
        .collect();
    let replicas: Vec<&Shard> = db
        .shards
        .iter()
        .filter(|s| s.role == Role::Replica)
        .collect();

    let mut keys = 0;
    let mut unverified = Vec::new();
    let mut content = None;
    if !rec.only_configuration {
        stage("checking key counts");
        for (shard, source) in &sources {
            keys += check_keys(&addr(cluster, db, *shard)?, *shard, source).await?;
            if !source.keys_exact {
                let why = source.keys_estimate_why.as_deref().unwrap_or("an estimate");
                unverified.push(format!("redis:{shard}: {why}"));
            }
        }
        if rec.proof == Proof::Content {
            stage("verifying content");
            content = Some(prove_content(rec, cluster, db, &sources).await?);
        }
        stage("switching to the configured persistence");
        for shard in db.masters() {
            let a = addr(cluster, db, shard.id)?;
            // Loaded from an AOF or replayed: no dump.rdb holds the data yet.
            let unsnapshotted = source_of(shard.id).is_some_and(|s| s.kind.is_aof() || s.replay);
            set_persistence(&a, db.config.persistence, rec.load_timeout).await?;
            if unsnapshotted && db.config.persistence == Persistence::Snapshot {
                // With the AOF off, only a snapshot holds the data across a restart.
                snapshot(&a, rec.load_timeout).await?;
            }
        }
    }

    stage("starting replicas");
    for shard in &replicas {
        let opts = StartOptions {
            conf: ConfOptions::default(),
            timeout: rec.load_timeout,
            creating: false,
        };
        let pid = start_shard(&rec.server, cluster, db, shard, &opts).await?;
        let host = rec.server.host(shard.node);
        super::shard_dirs::record_started(
            &*host,
            &super::shard_dirs::shard_dir(cluster, db, shard),
            pid,
        )
        .await;
        pids.push((shard.id, pid));
    }
    if db.config.shards > 1 {
        stage("forming the cluster");
        form_cluster(
            &members(cluster, db)?,
            rec.setup_timeout.max(rec.load_timeout),
        )
        .await?;
    } else {
        for shard in &replicas {
            wait_in_sync(&addr(cluster, db, shard.id)?, rec.load_timeout).await?;
        }
    }

    let mut sync_source = None;
    let mut synced = false;
    if let (Some(source), true) = (&db.config.sync_source, db.config.shards == 1) {
        stage("attaching to the sync source");
        let (host, port) = (source.host.clone(), source.port);
        // A source that does not answer (down, or itself still waiting for recovery) is
        // followed anyway; waiting for it could take forever.
        let answers = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .is_ok_and(|c| c.is_ok());
        for master in db.masters() {
            let a = addr(cluster, db, master.id)?;
            let mut con = connect(&a, rec.setup_timeout).await?;
            let redis_err = |e: redis::RedisError| ServerError::Redis {
                addr: a.to_string(),
                reason: e.to_string(),
            };
            if answers && rec.only_configuration {
                // The source's data is the database's data: wait for the full sync.
                replicate(&a, &host, port, rec.load_timeout).await?;
                synced = true;
            } else {
                redis::cmd("REPLICAOF")
                    .arg(&host)
                    .arg(port)
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(redis_err)?;
            }
            // Kept in redis.conf, so a restarted shard follows the source again.
            redis::cmd("CONFIG")
                .arg("REWRITE")
                .query_async::<()>(&mut con)
                .await
                .map_err(redis_err)?;
        }
        sync_source = Some(SyncSource {
            endpoint: source.to_string(),
            answers,
            synced,
        });
    }

    let empty = plan.map(|p| p.empty_masters()).unwrap_or_default();
    Ok(Recovered {
        id: db.id,
        pids,
        keys,
        sources,
        empty,
        only_configuration: rec.only_configuration,
        unverified,
        sync_source,
        content,
        fallbacks: Vec::new(),
    })
}

/// The content digest of the sources against the loaded masters (before replicas start
/// and before the configured persistence rewrites anything). A difference fails the
/// recovery, naming the first keys; a source whose content cannot be digested (an AOF
/// with commands after its base, a module's value) leaves the proof to the key counts,
/// and says so.
async fn prove_content(
    rec: &Recovery,
    cluster: &Cluster,
    db: &Database,
    sources: &[(Id, Source)],
) -> Result<ContentProof, RecoverError> {
    let not_verified = |reason: String| ContentProof::NotVerified {
        line: format!("content not verified: {reason}"),
        reason,
    };
    if sources.is_empty() {
        return Ok(not_verified("no files were loaded".into()));
    }
    let mut files = Vec::new();
    for (_, s) in sources {
        let node = db
            .shards
            .iter()
            .find(|x| x.id == s.from_shard)
            .map(|x| x.node);
        if let Some(node) = node.filter(|n| rec.server.hosts().is_remote(*n)) {
            // The digest reads the files here; the node's files stay on its host.
            return Ok(not_verified(format!(
                "`{}` lies on node:{node}'s host ({}), and the content digest reads files on this machine only; the key counts were checked",
                s.path.display(),
                rec.server.host(node).name()
            )));
        }
        match verify::source_file(&s.path) {
            Ok(f) => files.push(f),
            Err(e) => return Ok(not_verified(e.to_string())),
        }
    }
    let masters = db
        .masters()
        .map(|m| addr(cluster, db, m.id))
        .collect::<Result<Vec<_>, _>>()?;
    // A proof that cannot run (a module's value, a server that stops answering) leaves
    // the data loaded and says why; only data that differs fails the recovery.
    // The shards are Lazarus' own and no client has the endpoint yet.
    let opts = crate::persist::DigestOptions {
        uncompressed_dumps: true,
        server_snapshot: true,
        ..Default::default()
    };
    let c = match verify::verify_content(&files, &masters, &opts, rec.setup_timeout).await {
        Ok(c) => c,
        Err(e) => return Ok(not_verified(e.to_string())),
    };
    if !c.equal {
        return Err(RecoverError::ContentDiffers(c.verdict()));
    }
    Ok(ContentProof::Verified {
        keys: c.server.keys,
        digest: c.server.hex(),
        expired: c.expired,
        line: c.verdict(),
    })
}

fn addr(cluster: &Cluster, db: &Database, shard: Id) -> Result<ShardAddr, RecoverError> {
    crate::db::shard_addr(cluster, db, shard)
        .ok_or_else(|| RecoverError::Internal(format!("redis:{shard} has no node")))
}

fn members(cluster: &Cluster, db: &Database) -> Result<Vec<ClusterMember>, RecoverError> {
    let masters: Vec<&Shard> = db.masters().collect();
    let mut members = Vec::new();
    for m in &masters {
        let slots = m
            .slots
            .ok_or_else(|| RecoverError::Internal(format!("redis:{} has no slots", m.id)))?;
        members.push(ClusterMember {
            addr: addr(cluster, db, m.id)?,
            role: MemberRole::Master { slots },
        });
    }
    for r in db.shards.iter().filter(|s| s.role == Role::Replica) {
        let of = masters
            .iter()
            .position(|m| Some(m.id) == r.master)
            .ok_or_else(|| RecoverError::Internal(format!("redis:{} follows no master", r.id)))?;
        members.push(ClusterMember {
            addr: addr(cluster, db, r.id)?,
            role: MemberRole::Replica { of },
        });
    }
    Ok(members)
}

/// Compares what a master loaded with what the reader counted in its source, db by db.
/// The server holds at most the keys alive at load: an RDB's passed TTLs are dropped on
/// load, an AOF's are loaded and removed by the expiry cycle soon after. It holds at least
/// those with no TTL: any TTL may pass between the check and the count. An estimate
/// (`keys_exact` false) is not compared; the caller says so.
async fn check_keys(a: &ShardAddr, shard: Id, source: &Source) -> Result<u64, RecoverError> {
    let keyspace = info(a, "keyspace", Duration::from_secs(10)).await?;
    let loaded_in = |logical: u32| -> u64 {
        keyspace
            .get(&format!("db{logical}"))
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let total = keyspace.keys();
    if !source.keys_exact {
        return Ok(total);
    }
    let mut logical: Vec<u32> = source.keys_per_db.keys().copied().collect();
    logical.extend(
        keyspace
            .0
            .keys()
            .filter_map(|k| k.strip_prefix("db")?.parse::<u32>().ok()),
    );
    logical.sort_unstable();
    logical.dedup();
    for n in logical {
        let expected = source.keys_per_db.get(&n).copied().unwrap_or(0);
        let expires = source.expires_per_db.get(&n).copied().unwrap_or(0);
        let expired = source.expired_per_db.get(&n).copied().unwrap_or(0);
        let high = match source.kind {
            SourceKind::Rdb => expected.saturating_sub(expired),
            SourceKind::AofDir | SourceKind::AofFile => expected,
        };
        let low = expected.saturating_sub(expires);
        let loaded = loaded_in(n);
        if loaded > high || loaded < low {
            return Err(RecoverError::KeyCount {
                shard,
                logical: n,
                loaded,
                expected,
                expires,
                expired,
                low,
                high,
                kind: source.kind,
                path: source.path.clone(),
            });
        }
    }
    Ok(total)
}

/// BGSAVE and wait for it to succeed.
async fn snapshot(a: &ShardAddr, timeout: Duration) -> Result<(), RecoverError> {
    let before = info(a, "persistence", Duration::from_secs(10))
        .await?
        .get_u64("rdb_last_save_time");
    let mut con = connect(a, Duration::from_secs(10)).await?;
    let redis_err = |e: redis::RedisError| ServerError::Redis {
        addr: a.to_string(),
        reason: e.to_string(),
    };
    redis::cmd("BGSAVE")
        .query_async::<()>(&mut con)
        .await
        .map_err(redis_err)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let i = info(a, "persistence", Duration::from_secs(10)).await?;
        if i.get("rdb_bgsave_in_progress") == Some("0") {
            if i.get("rdb_last_bgsave_status") != Some("ok") {
                return Err(ServerError::Redis {
                    addr: a.to_string(),
                    reason: "BGSAVE failed".into(),
                }
                .into());
            }
            if i.get_u64("rdb_last_save_time") != before
                || i.get_u64("rdb_changes_since_last_save") == Some(0)
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Timeout {
                what: format!("`{a}` to save a snapshot"),
                after: timeout,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
