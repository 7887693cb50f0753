//! Databases rebuilt from their shards' identity files, and the check that their master
//! shards make them whole. A master whose own identity is gone with its disk is rebuilt
//! from what its replicas' identities say (its id and slots): on the worst night a
//! replica's disk is what is left, and recovery loads the replica's files.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ccs::{Database, DbState, Id, Role, Shard, ShardIdentity, SlotRange, SLOT_COUNT};

use super::found::Found;

/// A master shard none of whose own files' identity was found (its disk is lost), rebuilt
/// from the identities of its replicas, which name its id and slots.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct LostShard {
    pub db: Id,
    pub db_name: String,
    pub shard: Id,
    pub slots: Option<SlotRange>,
    /// The replicas whose identities name it; recovery loads one of their copies.
    pub replicas: Vec<Id>,
    /// Where it now is: the node of one of those replicas, on a free port there.
    pub node: Id,
    pub port: u16,
}

/// A database that cannot be rebuilt: some of its slots have no master shard, neither
/// from a master's identity nor from a replica's. Its files are left as they are.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    pub db: Id,
    pub name: String,
    pub reason: String,
}

impl LeftOut {
    pub fn line(&self) -> String {
        format!(
            "`db:{}` `{}` cannot be rebuilt: {}",
            self.db, self.name, self.reason
        )
    }
}

/// What the identities make of the databases: the ones rebuilt, the masters among them
/// rebuilt from replicas (not yet on a node: `node` and `port` are 0 until placed), and
/// the ones left out.
#[derive(Default)]
pub(super) struct FromShards {
    pub databases: BTreeMap<Id, Database>,
    pub lost: Vec<LostShard>,
    pub left_out: Vec<LeftOut>,
}

/// Databases from the identities, each checked for a complete set of master shards (those
/// found, and those its replicas name); an incomplete one is left out (its files stay
/// where they are) and reported.
pub(super) fn databases(found: &[Found], problems: &mut Vec<String>) -> FromShards {
    let mut by_db: BTreeMap<Id, Vec<&Found>> = BTreeMap::new();
    for f in found {
        by_db.entry(f.identity.db_id).or_default().push(f);
    }
    let mut out = FromShards::default();
    for (db_id, mut shards) in by_db {
        shards.sort_by_key(|f| (f.identity.role != Role::Master, f.identity.shard_id));
        let first = &shards[0].identity;
        let label = format!("`db:{db_id}` `{}`", first.db.name);
        for other in &shards[1..] {
            if other.identity.db != first.db || other.identity.db_port != first.db_port {
                problems.push(format!(
                    "{label}: `{}` records another configuration than `{}`; the latter is used",
                    other.file.display(),
                    shards[0].file.display()
                ));
            }
        }
        let found_masters: Vec<&ShardIdentity> = shards
            .iter()
            .map(|f| &f.identity)
            .filter(|i| i.role == Role::Master)
            .collect();
        let lost = lost_masters(&shards, &found_masters, &label, problems);
        let mut masters = found_masters.clone();
        masters.extend(lost.iter().map(|(_, named_by)| named_by[0]));
        if let Some(reason) = incomplete(first.db.shards, &masters) {
            let known: Vec<String> = masters
                .iter()
                .map(|m| match m.slots {
                    Some(slots) if first.db.shards > 1 => {
                        format!("`redis:{}` (slots {slots})", master_of(m))
                    }
                    _ => format!("`redis:{}`", master_of(m)),
                })
                .collect();
            let known = if known.is_empty() {
                "no identity of a master or of a replica was found".to_string()
            } else {
                format!("masters known: {}", known.join(", "))
            };
            let left = LeftOut {
                db: db_id,
                name: first.db.name.clone(),
                reason: format!("{reason} ({known}); its files are untouched"),
            };
            problems.push(left.line());
            out.left_out.push(left);
            continue;
        }
        let master_ids: BTreeSet<Id> = masters.iter().map(|m| master_of(m)).collect();
        for f in &shards {
            let i = &f.identity;
            if i.role == Role::Replica && !i.master.is_some_and(|m| master_ids.contains(&m)) {
                problems.push(format!(
                    "{label}: replica `redis:{}` follows no master shard found",
                    i.shard_id
                ));
            }
        }
        if first.db.replication {
            for m in masters.iter().map(|m| master_of(m)) {
                let followed = shards
                    .iter()
                    .any(|f| f.identity.role == Role::Replica && f.identity.master == Some(m));
                if !followed {
                    problems.push(format!(
                        "{label}: no replica of master `redis:{m}` found; it comes back without one"
                    ));
                }
            }
        }
        let mut rebuilt: Vec<Shard> = shards
            .iter()
            .map(|f| {
                let i = &f.identity;
                Shard::new(i.shard_id, i.node_id, i.role, i.master, i.slots, i.port)
            })
            .collect();
        for (id, named_by) in &lost {
            // Placed on a node once the nodes are known (see `identities`).
            rebuilt.push(Shard::new(*id, 0, Role::Master, None, named_by[0].slots, 0));
            out.lost.push(LostShard {
                db: db_id,
                db_name: first.db.name.clone(),
                shard: *id,
                slots: named_by[0].slots,
                replicas: named_by.iter().map(|r| r.shard_id).collect(),
                node: 0,
                port: 0,
            });
        }
        rebuilt.sort_by_key(|s| (s.role != Role::Master, s.id));
        let db = Database {
            id: db_id,
            config: first.db.clone(),
            port: first.db_port,
            state: DbState::PendingRecovery,
            shards: rebuilt,
        };
        out.databases.insert(db_id, db);
    }
    out
}

/// The shard a master identity stands for: a found master's own id, or, for a replica's
/// identity standing in for its lost master, the master it names.
fn master_of(i: &ShardIdentity) -> Id {
    match i.role {
        Role::Master => i.shard_id,
        Role::Replica => i.master.unwrap_or(i.shard_id),
    }
}

/// The masters named by replicas' identities whose own identity was not found and whose
/// slots no master found holds, each with the replicas naming it (the lowest id first, whose slots are taken when they
/// disagree, said so).
fn lost_masters<'a>(
    shards: &[&'a Found],
    found_masters: &[&ShardIdentity],
    label: &str,
    problems: &mut Vec<String>,
) -> Vec<(Id, Vec<&'a ShardIdentity>)> {
    let found: BTreeSet<Id> = found_masters.iter().map(|m| m.shard_id).collect();
    let mut lost: BTreeMap<Id, Vec<&ShardIdentity>> = BTreeMap::new();
    for f in shards {
        let i = &f.identity;
        match i.master {
            Some(m) if i.role == Role::Replica && !found.contains(&m) => {
                lost.entry(m).or_default().push(i);
            }
            _ => {}
        }
    }
    // Only a master whose slots no master found holds is lost: a replica naming another
    // (an identity older than a change of masters) is reported as following none.
    let held = |slots: Option<SlotRange>| {
        found_masters.iter().any(|m| match (m.slots, slots) {
            (Some(a), Some(b)) => a.start <= b.end && b.start <= a.end,
            _ => true,
        })
    };
    lost.retain(|_, named_by| !held(named_by[0].slots));
    for (id, named_by) in &lost {
        named_by.iter().skip(1).for_each(|r| {
            if r.slots != named_by[0].slots {
                problems.push(format!(
                    "{label}: replicas `redis:{}` and `redis:{}` of lost master `redis:{id}` record other slots; those of `redis:{}` are used",
                    named_by[0].shard_id, r.shard_id, named_by[0].shard_id
                ));
            }
        });
    }
    lost.into_iter().collect()
}

/// Why a database's master shards cannot make it whole, if they cannot: the slots no
/// master covers come first, as they name what is missing.
pub(super) fn incomplete(expected: u32, masters: &[&ShardIdentity]) -> Option<String> {
    let count = || {
        (masters.len() as u64 != u64::from(expected))
            .then(|| format!("{} of its {expected} master shards found", masters.len()))
    };
    if expected <= 1 {
        return count();
    }
    let mut ranges = Vec::new();
    for m in masters {
        match m.slots {
            Some(r) if r.start <= r.end && r.end < SLOT_COUNT => ranges.push(r),
            Some(r) => {
                return Some(format!(
                    "master `redis:{}` has invalid slots {r}",
                    master_of(m)
                ))
            }
            None => return Some(format!("master `redis:{}` records no slots", master_of(m))),
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut next = 0u32;
    let mut gaps = Vec::new();
    for r in &ranges {
        let start = u32::from(r.start);
        if start > next {
            gaps.push(format!("{next}-{}", start - 1));
        }
        if start < next {
            return Some(format!("slots {r} are owned twice"));
        }
        next = u32::from(r.end) + 1;
    }
    if next < u32::from(SLOT_COUNT) {
        gaps.push(format!("{next}-{}", SLOT_COUNT - 1));
    }
    if !gaps.is_empty() {
        return Some(format!("slots {} have no master shard", gaps.join(", ")));
    }
    count()
}
