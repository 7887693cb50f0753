//! `status`'s check of a sharded database's slot map: each live master's own
//! `CLUSTER NODES` (asked in its probe's round trip) against the slots the configuration
//! gives it. Every `cluster_state` can say `ok` while a master serves none of its slots:
//! one that lost `nodes.conf` comes back under a new id, and the cluster still gives its
//! slots to the old one, which has no address (keys there answer `MOVED ... :0`). And
//! the other way round: every slot can have its master while shards say
//! `cluster_state:fail` (a master the others marked failed answering again, a node that
//! cannot reach a majority of masters), and their clients get `CLUSTERDOWN`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ccs::{Database, Id, Shard, SlotRange};
use crate::server::{NodeLine, ShardProbe, SLOT_COUNT};

/// Why a master of a sharded database does not serve all of its configured slots, from
/// its own view of the slot map: which of them it serves, who holds the others (in its
/// view, else in another live master's of `probes`: a node that lost its `nodes.conf`
/// never hears of the old id the others give its slots to), and the way forward. `None`
/// when it serves them all, when it is no live master (a failed-over master following
/// its replica is the replica's row, `FAILED OVER`), or when its view was not read.
pub(super) fn missing_slots(
    db: &Database,
    s: &Shard,
    p: &ShardProbe,
    probes: &BTreeMap<Id, ShardProbe>,
) -> Option<String> {
    let slots = s.slots?;
    let view = p.cluster_nodes.as_ref()?;
    if !p.up || p.info.get("role") != Some("master") {
        return None;
    }
    let me = view.iter().find(|n| n.myself)?;
    // The other live masters' views, named, for slots its own gives nobody.
    let others: Vec<(Id, &Vec<NodeLine>)> = db
        .masters()
        .filter(|m| m.id != s.id)
        .filter_map(|m| {
            let p = probes.get(&m.id).filter(|p| p.up)?;
            Some((m.id, p.cluster_nodes.as_ref()?))
        })
        .collect();
    let holder_of = |slot: u16| match view.iter().find(|n| n.holds(slot)) {
        Some(n) => holder(db, n),
        None => others
            .iter()
            .find_map(|(id, v)| {
                let n = v.iter().find(|n| n.holds(slot) && n.id != me.id)?;
                Some(format!("{} in redis:{id}'s view", holder(db, n)))
            })
            .unwrap_or_else(|| "assigned to no node".to_string()),
    };
    let missing: Vec<u16> = (slots.start..=slots.end)
        .filter(|&slot| !me.holds(slot))
        .collect();
    if missing.is_empty() {
        return None;
    }
    // Who holds each missing slot in its view, in runs per holder (in slot order).
    let mut by_holder: Vec<(String, Vec<SlotRange>)> = Vec::new();
    let mut add =
        |holder: String, range: SlotRange| match by_holder.iter_mut().find(|(h, _)| *h == holder) {
            Some((_, ranges)) => ranges.push(range),
            None => by_holder.push((holder, vec![range])),
        };
    for run in runs(missing.iter().copied()) {
        let mut start = run.start;
        let mut holder = holder_of(start);
        for slot in run.start..=run.end {
            let h = holder_of(slot);
            if h != holder {
                add(
                    holder,
                    SlotRange {
                        start,
                        end: slot - 1,
                    },
                );
                (start, holder) = (slot, h);
            }
        }
        add(
            holder,
            SlotRange {
                start,
                end: run.end,
            },
        );
    }
    let served: Vec<SlotRange> = runs((slots.start..=slots.end).filter(|&slot| me.holds(slot)));
    let serves = match served.is_empty() {
        true => format!("serves none of its slots {slots}"),
        false => format!("serves only {} of its slots {slots}", join(&served)),
    };
    let held: Vec<String> = by_holder
        .iter()
        .map(|(holder, ranges)| format!("{} {holder}", join(ranges)))
        .collect();
    Some(format!(
        "{serves}: {}, so keys there are not served (`MOVED`); `restart db {}` re-forms the slot map",
        held.join("; "),
        db.config.name
    ))
}

/// The slots of a sharded database that no reachable shard serves, leaving out those of
/// masters that do not answer (their own rows say so): served are the slots each live
/// master holds in its own view, and those its views give to a live shard of the
/// database that was not asked for one (a replica a failover made master).
pub(super) fn unserved_slots(db: &Database, probes: &BTreeMap<Id, ShardProbe>) -> Vec<SlotRange> {
    if db.config.shards < 2 {
        return Vec::new();
    }
    let mut served = vec![false; usize::from(SLOT_COUNT)];
    let mut mark = |ranges: &[(u16, u16)]| {
        for &(a, b) in ranges {
            for slot in a..=b.min(SLOT_COUNT - 1) {
                served[usize::from(slot)] = true;
            }
        }
    };
    let live_master = |s: &Shard| {
        probes
            .get(&s.id)
            .filter(|p| p.up && p.info.get("role") == Some("master"))
    };
    let views: Vec<&Vec<NodeLine>> = db
        .shards
        .iter()
        .filter_map(|s| live_master(s)?.cluster_nodes.as_ref())
        .collect();
    if views.is_empty() {
        return Vec::new();
    }
    for s in &db.shards {
        let Some(p) = live_master(s) else {
            continue;
        };
        match &p.cluster_nodes {
            Some(view) => {
                if let Some(me) = view.iter().find(|n| n.myself) {
                    mark(&me.slots);
                }
            }
            None => {
                for n in views.iter().flat_map(|v| v.iter()) {
                    if n.reachable_master()
                        && n.addr.as_ref().is_some_and(|(_, port)| *port == s.port)
                    {
                        mark(&n.slots);
                    }
                }
            }
        }
    }
    // A master that does not answer: its slots are its row's matter.
    for s in db.masters() {
        if probes.get(&s.id).is_some_and(|p| p.up) {
            continue;
        }
        if let Some(r) = s.slots {
            mark(&[(r.start, r.end)]);
        }
    }
    runs((0..SLOT_COUNT).filter(|&slot| !served[usize::from(slot)]))
}

/// Shards of a sharded database that answer and say its Redis Cluster is not `ok`
/// (`cluster_state` of `CLUSTER INFO`), as they say it, whatever the slot map shows.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ClusterDown {
    /// What they say (`fail`).
    pub state: String,
    pub shards: Vec<Id>,
}

impl ClusterDown {
    /// `redis:3, redis:5`.
    pub fn shards_named(&self) -> String {
        let names: Vec<String> = self.shards.iter().map(|id| format!("redis:{id}")).collect();
        names.join(", ")
    }
}

/// The [`ClusterDown`] of `db` from its shards' probes; `None` when every shard that
/// answers says `ok` (or the database is not sharded).
pub fn cluster_down(db: &Database, probes: &BTreeMap<Id, ShardProbe>) -> Option<ClusterDown> {
    let mut down: Option<ClusterDown> = None;
    for s in &db.shards {
        let Some(state) = probes
            .get(&s.id)
            .filter(|p| p.up)
            .and_then(|p| p.cluster_state.as_deref())
            .filter(|state| *state != "ok")
        else {
            continue;
        };
        down.get_or_insert_with(|| ClusterDown {
            state: state.to_string(),
            shards: Vec::new(),
        })
        .shards
        .push(s.id);
    }
    down
}

/// Who `n` is, as `held by ...`: a shard of `db`, another address, or an identity with
/// no address.
fn holder(db: &Database, n: &NodeLine) -> String {
    let Some((host, port)) = &n.addr else {
        return format!(
            "held by node `{}` with no address (an identity lost with a `nodes.conf`: no shard answers as it)",
            n.id
        );
    };
    let down = if n.failing { ", thought down" } else { "" };
    match db.shards.iter().find(|s| s.port == *port) {
        Some(s) => format!("held by redis:{}{down}", s.id),
        None => format!("held by `{host}:{port}` (no shard of this database){down}"),
    }
}

/// `slots` (ascending) as runs of consecutive slots.
fn runs(slots: impl Iterator<Item = u16>) -> Vec<SlotRange> {
    let mut out: Vec<SlotRange> = Vec::new();
    for slot in slots {
        match out.last_mut() {
            Some(r) if r.end + 1 == slot => r.end = slot,
            _ => out.push(SlotRange {
                start: slot,
                end: slot,
            }),
        }
    }
    out
}

/// At most this many runs of slots are named in a row's detail.
const RUNS_SHOWN: usize = 8;

/// `0-99, 200-200`, the first [`RUNS_SHOWN`] runs and how many slots more.
pub fn join(ranges: &[SlotRange]) -> String {
    let mut text = ranges
        .iter()
        .take(RUNS_SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let more: u32 = ranges
        .iter()
        .skip(RUNS_SHOWN)
        .map(|r| u32::from(r.end - r.start) + 1)
        .sum();
    if more > 0 {
        text.push_str(&format!(" and {more} slot(s) more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccs::fixtures::{database, db_config, shard};
    use crate::ccs::Role;
    use crate::server::{parse_nodes, Info};

    fn probe(role: &str, nodes: Option<&str>) -> ShardProbe {
        ShardProbe {
            up: true,
            info: Info::parse(&format!("role:{role}\r\n")),
            cluster_state: Some("ok".into()),
            cluster_nodes: nodes.map(parse_nodes),
            tls_cert_file: None,
            tls_refused: false,
            error: None,
        }
    }

    fn halves() -> Database {
        let shards = [(0, 8191, 30001), (8192, 16383, 30002)]
            .iter()
            .enumerate()
            .map(|(i, &(start, end, port))| {
                shard(
                    3 + i as u64,
                    1,
                    Role::Master,
                    None,
                    Some(SlotRange { start, end }),
                    port,
                )
            })
            .collect();
        database(2, db_config("halves", 2, false), 30001, shards)
    }

    #[test]
    fn a_master_whose_slots_a_lost_identity_holds() {
        let db = halves();
        let a = probe(
            "master",
            Some(
                "a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-8191\n\
                 b2 127.0.0.1:30002@40002 master - 0 0 3 connected\n\
                 d4 :0@0 master,noaddr - 0 0 2 disconnected 8192-16383\n",
            ),
        );
        let b = probe(
            "master",
            Some(
                "b2 127.0.0.1:30002@40002 myself,master - 0 0 3 connected 16000-16383\n\
                 a1 127.0.0.1:30001@40001 master - 0 0 1 connected 0-8191\n\
                 d4 :0@0 master,noaddr - 0 0 2 disconnected 8192-15999\n",
            ),
        );
        let probes = BTreeMap::from([(3, a.clone()), (4, b.clone())]);
        assert_eq!(missing_slots(&db, &db.shards[0], &a, &probes), None);
        let why = missing_slots(&db, &db.shards[1], &b, &probes).unwrap();
        assert_eq!(
            why,
            "serves only 16000-16383 of its slots 8192-16383: 8192-15999 held by node `d4` with no address (an identity lost with a `nodes.conf`: no shard answers as it), so keys there are not served (`MOVED`); `restart db halves` re-forms the slot map"
        );
        assert_eq!(
            unserved_slots(&db, &probes),
            vec![SlotRange {
                start: 8192,
                end: 15999
            }]
        );
    }

    #[test]
    fn slots_another_member_holds_or_nobody() {
        let db = halves();
        let b = probe(
            "master",
            Some(
                "b2 127.0.0.1:30002@40002 myself,master - 0 0 3 connected\n\
                 a1 127.0.0.1:30001@40001 master - 0 0 1 connected 0-8191 8192-8200\n",
            ),
        );
        let probes = BTreeMap::from([(4, b.clone())]);
        let why = missing_slots(&db, &db.shards[1], &b, &probes).unwrap();
        assert!(
            why.starts_with("serves none of its slots 8192-16383: 8192-8200 held by redis:3; 8201-16383 assigned to no node"),
            "{why}"
        );
        // A master following its replica (failed over) is not judged here.
        let following = probe("slave", Some(""));
        assert_eq!(missing_slots(&db, &db.shards[1], &following, &probes), None);
    }

    /// A master that lost `nodes.conf` and met the cluster again: its view gives its
    /// slots to nobody (it never hears of the old id), and it claimed the slots of the
    /// keys it loaded; the other master gives them to the old id, with no address.
    #[test]
    fn slots_only_another_master_sees_held() {
        let db = halves();
        let a = probe(
            "master",
            Some(
                "a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-8191\n\
                 n5 127.0.0.1:30002@40002 master - 0 0 0 connected\n\
                 d4 :0@0 master,noaddr - 0 0 2 disconnected 8192-16383\n",
            ),
        );
        let claimed: Vec<String> = (0..10).map(|i| (8200 + 2 * i).to_string()).collect();
        let b = probe(
            "master",
            Some(&format!(
                "n5 127.0.0.1:30002@40002 myself,master - 0 0 0 connected {}\n\
                 a1 127.0.0.1:30001@40001 master - 0 0 1 connected 0-8191\n",
                claimed.join(" ")
            )),
        );
        let probes = BTreeMap::from([(3, a), (4, b.clone())]);
        let why = missing_slots(&db, &db.shards[1], &b, &probes).unwrap();
        assert!(
            why.starts_with("serves only 8200-8200, 8202-8202, 8204-8204, 8206-8206, 8208-8208, 8210-8210, 8212-8212, 8214-8214 and 2 slot(s) more of its slots 8192-16383: 8192-8199, 8201-8201,"),
            "{why}"
        );
        assert!(
            why.contains(" held by node `d4` with no address (an identity lost with a `nodes.conf`: no shard answers as it) in redis:3's view"),
            "{why}"
        );
    }

    #[test]
    fn a_master_down_or_a_replica_serving_its_slots() {
        let db = halves();
        let a = probe(
            "master",
            Some(
                "a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-8191\n\
                 r9 127.0.0.1:30009@40009 master - 0 0 4 connected 8192-16383\n",
            ),
        );
        // redis:4 down: its slots are its row's matter.
        let probes = BTreeMap::from([(3, a.clone())]);
        assert!(unserved_slots(&db, &probes).is_empty());
        // A replica a failover made master (asked without a view) serves them.
        let mut db = db;
        db.shards.push(shard(
            9,
            1,
            Role::Replica,
            Some(4),
            Some(SlotRange {
                start: 8192,
                end: 16383,
            }),
            30009,
        ));
        let probes = BTreeMap::from([(3, a), (9, probe("master", None))]);
        assert!(unserved_slots(&db, &probes).is_empty());
    }
}
