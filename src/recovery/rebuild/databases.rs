//! Databases rebuilt from their shards' identity files, and the check that their master
//! shards make them whole.

use std::collections::{BTreeMap, BTreeSet};

use crate::ccs::{Database, DbState, Id, Role, Shard, ShardIdentity, SLOT_COUNT};

use super::identities::Found;

/// Databases from the identities, each checked for a complete set of master shards; an
/// incomplete one is left out (its files stay where they are) and reported.
pub(super) fn databases(found: &[Found], problems: &mut Vec<String>) -> BTreeMap<Id, Database> {
    let mut by_db: BTreeMap<Id, Vec<&Found>> = BTreeMap::new();
    for f in found {
        by_db.entry(f.identity.db_id).or_default().push(f);
    }
    let mut out = BTreeMap::new();
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
        let masters: Vec<&ShardIdentity> = shards
            .iter()
            .map(|f| &f.identity)
            .filter(|i| i.role == Role::Master)
            .collect();
        if let Some(reason) = incomplete(first.db.shards, &masters) {
            problems.push(format!(
                "{label} left out: {reason}; its files are untouched"
            ));
            continue;
        }
        let master_ids: BTreeSet<Id> = masters.iter().map(|m| m.shard_id).collect();
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
            for m in &masters {
                let followed = shards.iter().any(|f| {
                    f.identity.role == Role::Replica && f.identity.master == Some(m.shard_id)
                });
                if !followed {
                    problems.push(format!(
                        "{label}: no replica of master `redis:{}` found; it comes back without one",
                        m.shard_id
                    ));
                }
            }
        }
        let db = Database {
            id: db_id,
            config: first.db.clone(),
            port: first.db_port,
            state: DbState::PendingRecovery,
            shards: shards
                .iter()
                .map(|f| Shard {
                    id: f.identity.shard_id,
                    node: f.identity.node_id,
                    role: f.identity.role,
                    master: f.identity.master,
                    slots: f.identity.slots,
                    port: f.identity.port,
                    pid: None,
                    empty_since: None,
                    loaded_ns: None,
                })
                .collect(),
        };
        out.insert(db_id, db);
    }
    out
}

/// Why a database's master shards cannot make it whole, if they cannot.
pub(super) fn incomplete(expected: u32, masters: &[&ShardIdentity]) -> Option<String> {
    if masters.len() as u64 != u64::from(expected) {
        return Some(format!(
            "{} of its {expected} master shards found",
            masters.len()
        ));
    }
    if expected <= 1 {
        return None;
    }
    let mut ranges = Vec::new();
    for m in masters {
        match m.slots {
            Some(r) if r.start <= r.end && r.end < SLOT_COUNT => ranges.push(r),
            Some(r) => {
                return Some(format!(
                    "master `redis:{}` has invalid slots {r}",
                    m.shard_id
                ))
            }
            None => return Some(format!("master `redis:{}` records no slots", m.shard_id)),
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut next = 0u32;
    for r in &ranges {
        let start = u32::from(r.start);
        if start > next {
            return Some(format!("slots {next}-{} have no master shard", start - 1));
        }
        if start < next {
            return Some(format!("slots {r} are owned twice"));
        }
        next = u32::from(r.end) + 1;
    }
    if next < u32::from(SLOT_COUNT) {
        return Some(format!(
            "slots {next}-{} have no master shard",
            SLOT_COUNT - 1
        ));
    }
    None
}
