//! The end of a database's recovery, once its masters have loaded: key counts and content
//! checked (recovery's own load check), then the rest of the bring-up pipeline
//! ([`crate::db::bringup`]): the configured persistence, replicas, the slot map or
//! replication, and the sync source re-attached.

use std::time::Instant;

use super::apply::{
    ms_since, replay_masters, replays_after_link, ContentProof, Copies, EarlyDigest, LoadedMasters,
    Phases, Proof, RecoverError, Recovered, Recovery,
};
use super::plan::{Outcome, Source, SourceKind};
use super::shard_dirs::{record_started, shard_dir};
use crate::ccs::{Cluster, Database, Id, Role};
use crate::db::{BringUp, KeyBounds, LoadCheckError, SourceStep, Timeouts};
use crate::server::{ConfOptions, ShardAddr, StartOptions};
use crate::verify;

/// After the masters loaded: check, switch persistence, replicas, slot map, sync source.
pub(super) async fn finish(
    rec: &Recovery,
    cluster: &Cluster,
    db: &Database,
    loaded: Option<LoadedMasters<'_>>,
    mut pids: Vec<(Id, u32)>,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<Recovered, RecoverError> {
    let finishing = Instant::now();
    let (plan, early, mut phases, mut copies) = match loaded {
        Some(l) => (Some(l.plan), l.early, l.phases, Some(l.copies)),
        None => (None, None, Phases::default(), None),
    };
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
    let up = BringUp::new(cluster, db).with_timeouts(Timeouts {
        form: rec.setup_timeout.max(rec.load_timeout),
        sync: rec.load_timeout,
        persist: rec.load_timeout,
    });

    // A sharded database replayed into: replicas and the slot map first (the replicas
    // take the keys through replication), then the keys, then the checks.
    let late_replay = plan.filter(|p| replays_after_link(db, p));
    if let Some(plan) = late_replay {
        settle(&mut copies, &mut phases).await?;
        stage("starting replicas");
        pids.extend(start_replicas(rec, &up).await?);
        link(&up, db, stage).await?;
        replay_masters(rec.server.hosts(), cluster, db, plan, stage).await?;
    }

    let mut keys = 0;
    let mut unverified = Vec::new();
    let mut content = None;
    let mut checked = Ok(());
    if !rec.only_configuration {
        stage("checking key counts");
        let began = Instant::now();
        for (shard, source) in &sources {
            match check_keys(&up, *shard, source).await {
                Ok(n) => keys += n,
                Err(e) => {
                    checked = Err(e);
                    break;
                }
            }
            if !source.keys_exact {
                let why = source.keys_estimate_why.as_deref().unwrap_or("an estimate");
                unverified.push(format!("redis:{shard}: {why}"));
            }
        }
        phases.checks_ms = ms_since(began);
        if checked.is_ok() && rec.proof == Proof::Content {
            stage("verifying content");
            let began = Instant::now();
            match prove_content(rec, cluster, db, &sources, early).await {
                Ok(proof) => content = Some(proof),
                Err(e) => checked = Err(e),
            }
            phases.proof_ms = ms_since(began);
        }
    }
    // The checks and the proof only read the servers: the files' copies were free to
    // finish meanwhile. They take their places now, before anything writes to the
    // shard directories, also when a check failed (nothing is left half-done).
    let copied = settle(&mut copies, &mut phases).await;
    checked?;
    copied?;
    if !rec.only_configuration {
        stage("switching to the configured persistence");
        // Loaded from an AOF or replayed: no dump.rdb holds the data yet.
        let unsnapshotted: Vec<Id> = sources
            .iter()
            .filter(|(_, s)| s.kind.is_aof() || s.replay)
            .map(|(id, _)| *id)
            .collect();
        // Loaded from AOF files with the AOF on (not replayed into it): those files,
        // copied and synced before the start, hold the data.
        let aof_loaded: Vec<Id> = sources
            .iter()
            .filter(|(_, s)| s.kind.is_aof() && !s.replay)
            .map(|(id, _)| *id)
            .collect();
        up.switch_persistence(&unsnapshotted, &aof_loaded).await?;
    }

    if late_replay.is_none() {
        stage("starting replicas");
        pids.extend(start_replicas(rec, &up).await?);
        link(&up, db, stage).await?;
    }
    if db.config.sync_source.is_some() && db.config.shards == 1 {
        stage("attaching to the sync source");
    }
    let sync_source = up
        .attach_source(SourceStep::Reattach {
            full_sync: rec.only_configuration,
        })
        .await?;

    let empty = plan.map(|p| p.empty_masters()).unwrap_or_default();
    let damaged_values = sources
        .iter()
        .flat_map(|(shard, s)| {
            s.damaged_values
                .iter()
                .map(move |d| format!("redis:{shard}: {d} of `{}`", s.path.display()))
        })
        .collect();
    phases.bring_up_ms = ms_since(finishing).saturating_sub(phases.checks_ms + phases.proof_ms);
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
        damaged_values,
        linked: rec.any_linked(db.masters().map(|m| m.id)),
        phases,
    })
}

/// Waits for the copies still being made and puts them in their places (see
/// [`Copies::settle`]); once settled, a second call has nothing to wait for.
async fn settle(copies: &mut Option<Copies>, phases: &mut Phases) -> Result<(), RecoverError> {
    if let Some(c) = copies.as_mut() {
        let last = c.settle(&[]).await?;
        phases.copy_ms = phases.copy_ms.max(last);
    }
    Ok(())
}

/// Steps 5 and 6 of the bring-up: the slot map or replication.
async fn link(
    up: &BringUp<'_>,
    db: &Database,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), RecoverError> {
    if db.config.shards > 1 {
        stage("forming the cluster");
    }
    up.link().await?;
    Ok(())
}

/// Step 4 of the bring-up for a recovery: the replicas start (each syncs from its
/// master), each recorded in its directory's marker as soon as it runs, so a failure
/// after stops only servers recovery started.
async fn start_replicas(rec: &Recovery, up: &BringUp<'_>) -> Result<Vec<(Id, u32)>, RecoverError> {
    let opts = StartOptions {
        conf: ConfOptions::default(),
        timeout: rec.load_timeout,
        creating: false,
    };
    let (cluster, db) = (up.cluster, up.db);
    let mut pids = Vec::new();
    let mut first_err = None;
    for (id, started) in up.start(&rec.server, &up.ids(Role::Replica), &opts).await {
        match started {
            Ok(pid) => {
                if let Some(shard) = db.shards.iter().find(|s| s.id == id) {
                    let host = rec.server.host(shard.node);
                    record_started(&*host, &shard_dir(cluster, db, shard), pid).await;
                }
                pids.push((id, pid));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(pids),
    }
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
    early: Option<EarlyDigest>,
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
            // The file on another host is streamed through its host to the reader here.
            let host = rec.server.host(node);
            files.push(verify::DataSource::Remote {
                host,
                path: s.path.clone(),
                runtime: tokio::runtime::Handle::current(),
            });
            continue;
        }
        match verify::source_file(&s.path) {
            Ok(f) => files.push(verify::DataSource::Path(f)),
            Err(e) => return Ok(not_verified(e.to_string())),
        }
    }
    let masters = db
        .masters()
        .map(|m| addr(cluster, db, m.id))
        .collect::<Result<Vec<_>, _>>()?;
    // A proof that cannot run (a module's value, a server that stops answering) leaves
    // the data loaded and says why; only data that differs fails the recovery.
    // The shards are Lazarus's own and no client has the endpoint yet.
    let opts = crate::persist::DigestOptions::unserved();
    let taken = match early {
        Some(e) => e.of(sources).await,
        None => None,
    };
    let proved = match taken {
        Some(Ok(d)) => {
            verify::verify_sources_against(&files, d, &masters, &opts, rec.setup_timeout).await
        }
        Some(Err(e)) => Err(e),
        None => verify::verify_sources(&files, &masters, &opts, rec.setup_timeout).await,
    };
    let c = match proved {
        Ok(c) => c,
        Err(e) => {
            let named: Vec<_> = db.masters().map(|m| m.id).zip(masters).collect();
            return Ok(not_verified(e.naming(&named).to_string()));
        }
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

/// Step 2 of the bring-up for a recovery: what a master loaded against what the reader
/// counted in its source, db by db. The server holds at most the keys alive at load: an
/// RDB's passed TTLs are dropped on load, an AOF's are loaded and removed by the expiry
/// cycle soon after. It holds at least those with no TTL: any TTL may pass between the
/// check and the count. A logical database the source does not have must be empty. An
/// estimate (`keys_exact` false) is not compared; the caller says so.
async fn check_keys(up: &BringUp<'_>, shard: Id, source: &Source) -> Result<u64, RecoverError> {
    let mut bounds = KeyBounds {
        others_empty: source.keys_exact,
        ..KeyBounds::default()
    };
    let of = |m: &std::collections::BTreeMap<u32, u64>, n: u32| m.get(&n).copied().unwrap_or(0);
    if source.keys_exact {
        for (&n, &expected) in &source.keys_per_db {
            let high = match source.kind {
                SourceKind::Rdb => expected.saturating_sub(of(&source.expired_per_db, n)),
                SourceKind::AofDir | SourceKind::AofFile => expected,
            };
            let low = expected.saturating_sub(of(&source.expires_per_db, n));
            bounds.per_db.insert(n, (low, high));
        }
    }
    up.check_loaded(shard, &bounds).await.map_err(|e| match e {
        LoadCheckError::Count {
            logical,
            loaded,
            low,
            high,
        } => RecoverError::KeyCount {
            shard,
            logical,
            loaded,
            expected: of(&source.keys_per_db, logical),
            expires: of(&source.expires_per_db, logical),
            expired: of(&source.expired_per_db, logical),
            low,
            high,
            kind: source.kind,
            path: source.path.clone(),
        },
        LoadCheckError::Server(e) => e.into(),
    })
}
