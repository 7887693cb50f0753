//! Redis Cluster formation, replication and persistence switching on running shards.
//!
//! Every step checks what is already in place before acting, so the whole sequence can
//! be run again, e.g. by recovery after it loaded data into fresh shards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use crate::persist::{SlotRange, SLOT_COUNT};

use super::client::{info, query, ShardAddr};
use super::conf::{persistence_settings, Persistence};
use super::ServerError;

const POLL: Duration = Duration::from_millis(25);
/// Bound on each single command; `timeout` arguments bound whole waits.
const CMD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRole {
    Master {
        slots: SlotRange,
    },
    /// Follows the member at this index of the same list.
    Replica {
        of: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMember {
    pub addr: ShardAddr,
    pub role: MemberRole,
}

/// One line of CLUSTER NODES.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLine {
    pub id: String,
    pub myself: bool,
    pub handshake: bool,
    /// Where it listens (`host`, `port`), `None` for a node with no address (`noaddr`, or
    /// `:0`): an identity the others remember but cannot reach, such as a shard's whose
    /// `nodes.conf` was lost with its disk (it came back under a new id).
    pub addr: Option<(String, u16)>,
    /// Flagged `fail` or `fail?`: the others think it down.
    pub failing: bool,
    pub replica_of: Option<String>,
    /// The config epoch of the node's slot claims: of two nodes claiming a slot, the
    /// cluster gives it to the one with the greater epoch (a failover bumps it).
    pub epoch: u64,
    pub slots: Vec<(u16, u16)>,
}

impl NodeLine {
    /// Whether it serves its slots as far as this view can tell: a master with an
    /// address, not thought down, met.
    pub fn reachable_master(&self) -> bool {
        self.replica_of.is_none() && self.addr.is_some() && !self.failing && !self.handshake
    }

    /// Whether it holds slot `slot`.
    pub fn holds(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// The lines of a `CLUSTER NODES` reply.
pub fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            // `host:port@bus[,hostname]`; an IPv6 host holds colons itself.
            let client = f[1].split(['@', ',']).next().unwrap_or("");
            let addr = client
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .filter(|(h, p)| !h.is_empty() && *p != 0 && !flags.contains(&"noaddr"));
            Some(NodeLine {
                id: f[0].to_string(),
                myself: flags.contains(&"myself"),
                handshake: flags.contains(&"handshake") || flags.contains(&"noaddr"),
                addr,
                failing: flags.contains(&"fail") || flags.contains(&"fail?"),
                replica_of: (f[3] != "-").then(|| f[3].to_string()),
                epoch: f[6].parse().unwrap_or(0),
                slots,
            })
        })
        .collect()
}

async fn cluster_nodes(addr: &ShardAddr) -> Result<Vec<NodeLine>, ServerError> {
    let text: String = query(addr, redis::cmd("CLUSTER").arg("NODES"), CMD_TIMEOUT).await?;
    Ok(parse_nodes(&text))
}

async fn poll_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), ServerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, ServerError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = check().await;
        if let Ok(true) = last {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(match last {
                Err(e) => e,
                _ => ServerError::Timeout {
                    what: what.to_string(),
                    after: timeout,
                },
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Makes `members` one Redis Cluster: every node met, every master owning its slot range,
/// every replica following its master, `cluster_state:ok` everywhere, replicas in sync.
pub async fn form_cluster(members: &[ClusterMember], timeout: Duration) -> Result<(), ServerError> {
    if members.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(members.len());
    for m in members {
        let id: String = query(&m.addr, redis::cmd("CLUSTER").arg("MYID"), CMD_TIMEOUT).await?;
        ids.push(id);
    }
    // A master that ran a while before it owned slots (a recovery's masters load, are
    // checked and proved first) counted itself in a minority partition, and once the
    // cluster is whole waits a rejoin delay of its node timeout (at most 5 s) before it
    // says `cluster_state:ok`. The forming runs under a short timeout, put back after.
    set_node_timeout(members, FORMING_NODE_TIMEOUT_MS).await?;
    let deadline = Instant::now() + timeout;
    let formed = form(members, &ids, deadline).await;
    let restored = set_node_timeout(members, super::CLUSTER_NODE_TIMEOUT_MS).await;
    formed?;
    restored?;
    for m in members {
        if matches!(m.role, MemberRole::Replica { .. }) {
            wait_in_sync(&m.addr, deadline.saturating_duration_since(Instant::now())).await?;
        }
    }
    Ok(())
}

/// The node timeout while a cluster forms: its rejoin delay (the timeout, at least 0.5 s)
/// is what a freshly formed master waits; 1 s leaves a busy node (a fork for its
/// replica's first sync) time to answer before it is suspected of failing.
const FORMING_NODE_TIMEOUT_MS: u32 = 1000;

async fn set_node_timeout(members: &[ClusterMember], ms: u32) -> Result<(), ServerError> {
    for m in members {
        let cmd = redis::cmd("CONFIG")
            .arg("SET")
            .arg("cluster-node-timeout")
            .arg(ms)
            .clone();
        query::<()>(&m.addr, &cmd, CMD_TIMEOUT).await?;
    }
    Ok(())
}

/// Slots, meetings, replicas, until `cluster_state:ok` on every member.
async fn form(
    members: &[ClusterMember],
    ids: &[String],
    deadline: Instant,
) -> Result<(), ServerError> {
    // Distinct config epochs avoid a collision round on fresh nodes; a node that already
    // knows others refuses, which is fine.
    for (i, m) in members.iter().enumerate() {
        let cmd = redis::cmd("CLUSTER")
            .arg("SET-CONFIG-EPOCH")
            .arg(i + 1)
            .clone();
        let _: Result<(), _> = query(&m.addr, &cmd, CMD_TIMEOUT).await;
    }

    forget_lost_nodes(members, ids).await?;

    // A replica that took its master's slots (a failover while the master was down, or
    // an operator's `CLUSTER FAILOVER`) holds the freshest data: the master follows it
    // and takes its role back by a manual failover, which loses no write.
    give_back_taken_slots(members, ids, deadline).await?;

    // Slots go to each master before the nodes meet, as redis-cli does: the handshake
    // then carries every node's slots at once instead of waiting for gossip rounds.
    for (m, id) in members.iter().zip(ids) {
        if let MemberRole::Master { slots } = m.role {
            assign_slots(&m.addr, id, slots).await?;
        }
    }
    // Every pair meets directly; waiting for gossip to introduce them takes seconds.
    for (i, m) in members.iter().enumerate() {
        let known: Vec<String> = cluster_nodes(&m.addr)
            .await?
            .into_iter()
            .map(|n| n.id)
            .collect();
        for (other, id) in members.iter().zip(ids).skip(i + 1) {
            if !known.contains(id) {
                let cmd = redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg(&other.addr.host)
                    .arg(other.addr.port)
                    .clone();
                let _: () = query(&m.addr, &cmd, CMD_TIMEOUT).await?;
            }
        }
    }
    let left = || deadline.saturating_duration_since(Instant::now());
    for m in members {
        poll_until("the cluster nodes to meet", left(), || async {
            let nodes = cluster_nodes(&m.addr).await?;
            Ok(ids
                .iter()
                .all(|id| nodes.iter().any(|n| &n.id == id && !n.handshake)))
        })
        .await?;
    }

    for m in members {
        if let MemberRole::Replica { of } = m.role {
            let master_id = ids.get(of).ok_or_else(|| {
                ServerError::Cluster(format!("replica `{}` names no master", m.addr))
            })?;
            let nodes = cluster_nodes(&m.addr).await?;
            let follows = nodes
                .iter()
                .any(|n| n.myself && n.replica_of.as_deref() == Some(master_id.as_str()));
            if !follows {
                let cmd = redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(master_id)
                    .clone();
                let _: () = query(&m.addr, &cmd, CMD_TIMEOUT).await?;
            }
        }
    }
    for m in members {
        poll_until("`cluster_state:ok`", left(), || async {
            let text: String =
                query(&m.addr, redis::cmd("CLUSTER").arg("INFO"), CMD_TIMEOUT).await?;
            Ok(text.contains("cluster_state:ok"))
        })
        .await?;
    }
    Ok(())
}

/// Every node the members know that is none of them is a lost identity of one: a shard
/// whose disk was lost (`nodes.conf` with it) restarts as a new node, and the others
/// still give its slots to the old id, with no address to reach it; the new node's
/// claim on them loses against the old one's epoch, and the slots stay unreachable
/// while every `cluster_state` says `ok`. Each member forgets them (which leaves the
/// slots they held unassigned, for their master to claim). A replica refuses to forget
/// its own master; it follows the new one once the cluster forms.
async fn forget_lost_nodes(members: &[ClusterMember], ids: &[String]) -> Result<(), ServerError> {
    for m in members {
        for n in cluster_nodes(&m.addr).await? {
            if n.myself || ids.contains(&n.id) {
                continue;
            }
            let cmd = redis::cmd("CLUSTER").arg("FORGET").arg(&n.id).clone();
            let _: Result<(), _> = query(&m.addr, &cmd, CMD_TIMEOUT).await;
        }
    }
    Ok(())
}

/// The step of [`form_cluster`] on a running cluster: every master of `members` whose
/// replica took its slots over takes them back, without losing a write (see
/// [`give_back_taken_slots`]). A restore runs it before it stops the shards: a master
/// restarted as its replica's replica would drop the run's data it loaded for the
/// replica's.
pub async fn give_back_slots(
    members: &[ClusterMember],
    timeout: Duration,
) -> Result<(), ServerError> {
    let deadline = Instant::now() + timeout;
    let mut ids = Vec::with_capacity(members.len());
    for m in members {
        let id: String = query(&m.addr, redis::cmd("CLUSTER").arg("MYID"), CMD_TIMEOUT).await?;
        ids.push(id);
    }
    give_back_taken_slots(members, &ids, deadline).await
}

/// For each master whose replica (of `members`) serves the master's slots as a master
/// itself: the master is made to follow that replica (the cluster's own epochs already
/// made a restarted master one, or `CLUSTER REPLICATE` when it lost its slot map), waits
/// until it has every write, and takes its role back with `CLUSTER FAILOVER`, the manual
/// failover in which the replica stops writes and hands over only once caught up.
async fn give_back_taken_slots(
    members: &[ClusterMember],
    ids: &[String],
    deadline: Instant,
) -> Result<(), ServerError> {
    let left = || deadline.saturating_duration_since(Instant::now());
    for (replica, replica_id) in members.iter().zip(ids) {
        let MemberRole::Replica { of } = replica.role else {
            continue;
        };
        let (Some(master), Some(master_id)) = (members.get(of), ids.get(of)) else {
            continue;
        };
        let MemberRole::Master { slots } = master.role else {
            continue;
        };
        let took_over = cluster_nodes(&replica.addr).await?.iter().any(|n| {
            n.myself
                && n.replica_of.is_none()
                && n.slots
                    .iter()
                    .any(|&(a, b)| a <= slots.end && b >= slots.start)
        });
        if !took_over {
            continue;
        }
        let is_follower = |nodes: &[NodeLine]| {
            nodes
                .iter()
                .any(|n| n.myself && n.replica_of.as_deref() == Some(replica_id.as_str()))
        };
        let own = cluster_nodes(&master.addr).await?;
        let holds_slots = own.iter().any(|n| n.myself && !n.slots.is_empty());
        if !is_follower(&own) && !holds_slots {
            // A master that lost its disk lost `nodes.conf` with it: a new node that knows
            // no other, to which the replica's id is unknown until they meet.
            if !own.iter().any(|n| &n.id == replica_id) {
                let meet = redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg(&replica.addr.host)
                    .arg(replica.addr.port)
                    .clone();
                query::<()>(&master.addr, &meet, CMD_TIMEOUT).await?;
                let what = format!("`{}` to meet `{}`", master.addr, replica.addr);
                poll_until(&what, left(), || async {
                    let nodes = cluster_nodes(&master.addr).await?;
                    Ok(nodes.iter().any(|n| &n.id == replica_id && !n.handshake))
                })
                .await?;
            }
            let cmd = redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(replica_id)
                .clone();
            query::<()>(&master.addr, &cmd, CMD_TIMEOUT).await?;
        }
        let what = format!(
            "`{}` to follow `{}`, which took its slots {slots} over",
            master.addr, replica.addr
        );
        poll_until(&what, left(), || async {
            Ok(is_follower(&cluster_nodes(&master.addr).await?))
        })
        .await?;
        wait_in_sync(&master.addr, left()).await?;
        // The replica hears of its new replica by gossip, a ping at least every half node
        // timeout; until then it ignores that replica's request to start a manual failover
        // (`MFSTART` from a node it does not know follows it), which then times out after
        // 5 s having done nothing.
        let what = format!("`{}` to know `{}` follows it", replica.addr, master.addr);
        poll_until(&what, left(), || async {
            Ok(cluster_nodes(&replica.addr).await?.iter().any(|n| {
                &n.id == master_id && n.replica_of.as_deref() == Some(replica_id.as_str())
            }))
        })
        .await?;
        let what = format!("`{}` to take its slots {slots} back", master.addr);
        let taken_back = || async {
            let mine = cluster_nodes(&master.addr)
                .await?
                .iter()
                .any(|n| n.myself && n.replica_of.is_none() && covers(&n.slots, slots));
            let follows = cluster_nodes(&replica.addr)
                .await?
                .iter()
                .any(|n| n.myself && n.replica_of.as_deref() == Some(master_id.as_str()));
            Ok(mine && follows)
        };
        // A manual failover that gets nowhere (votes refused, a node too busy to answer)
        // is given up by the server after 5 s; it is asked again until the deadline. One
        // asked before may have won after its wait (a loaded machine): the master is a
        // master again, refuses to be asked (`You should send CLUSTER FAILOVER to a
        // replica`), and only the replica's view is still to follow.
        loop {
            let promoted = cluster_nodes(&master.addr)
                .await?
                .iter()
                .any(|n| n.myself && n.replica_of.is_none());
            let wait = if promoted {
                left()
            } else {
                query::<()>(
                    &master.addr,
                    redis::cmd("CLUSTER").arg("FAILOVER"),
                    CMD_TIMEOUT,
                )
                .await?;
                left().min(MANUAL_FAILOVER_WAIT)
            };
            match poll_until(&what, wait, taken_back).await {
                Ok(()) => break,
                Err(e) if left().is_zero() => return Err(e),
                Err(_) => {}
            }
        }
    }
    Ok(())
}

/// How long one manual failover is waited for: the server gives it up after 5 s.
const MANUAL_FAILOVER_WAIT: Duration = Duration::from_secs(6);

/// Whether the runs `owned` hold every slot of `range`.
fn covers(owned: &[(u16, u16)], range: SlotRange) -> bool {
    let held: u32 = owned
        .iter()
        .map(|&(a, b)| {
            let (a, b) = (a.max(range.start), b.min(range.end));
            if a <= b {
                u32::from(b - a) + 1
            } else {
                0
            }
        })
        .sum();
    held == u32::from(range.end - range.start) + 1
}

/// Adds the slots of `range` that nobody owns yet to the master `id`; a slot another node
/// owns is an error.
async fn assign_slots(addr: &ShardAddr, id: &str, range: SlotRange) -> Result<(), ServerError> {
    if range.end >= SLOT_COUNT || range.start > range.end {
        return Err(ServerError::Cluster(format!("bad slot range `{range}`")));
    }
    let nodes = cluster_nodes(addr).await?;
    let mut owner: BTreeMap<u16, &str> = BTreeMap::new();
    for n in &nodes {
        for &(a, b) in &n.slots {
            for s in a.max(range.start)..=b.min(range.end) {
                owner.insert(s, &n.id);
            }
        }
    }
    if let Some((slot, other)) = owner.iter().find(|(_, o)| **o != id) {
        return Err(ServerError::Cluster(format!(
            "slot {slot} of `{addr}` is owned by another node ({other})"
        )));
    }
    let mut runs: Vec<(u16, u16)> = Vec::new();
    for s in range.start..=range.end {
        if owner.contains_key(&s) {
            continue;
        }
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => runs.push((s, s)),
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("ADDSLOTSRANGE");
    for (a, b) in runs {
        cmd.arg(a).arg(b);
    }
    query::<()>(addr, &cmd, CMD_TIMEOUT).await
}

/// Makes `replica` follow `master_host:master_port` (standalone replication, also used for
/// `sync_source`) and waits until the link is up and the first sync done.
pub async fn replicate(
    replica: &ShardAddr,
    master_host: &str,
    master_port: u16,
    timeout: Duration,
) -> Result<(), ServerError> {
    let i = info(replica, "replication", CMD_TIMEOUT).await?;
    let already = i.get("role") == Some("slave")
        && i.get("master_host") == Some(master_host)
        && i.get_u64("master_port") == Some(u64::from(master_port));
    if !already {
        let cmd = redis::cmd("REPLICAOF")
            .arg(master_host)
            .arg(master_port)
            .clone();
        query::<()>(replica, &cmd, CMD_TIMEOUT).await?;
    }
    wait_in_sync(replica, timeout).await
}

/// Makes `addr` follow `host:port` and keeps that in its redis.conf (CONFIG REWRITE), so a
/// restarted server follows it again. With `wait`, also waits until the link is up and
/// the first sync done ([`replicate`]); without, returns once the server was told, so a
/// source that does not answer (down, or itself still coming back) is followed anyway.
pub async fn follow(
    addr: &ShardAddr,
    host: &str,
    port: u16,
    wait: Option<Duration>,
) -> Result<(), ServerError> {
    match wait {
        Some(timeout) => replicate(addr, host, port, timeout).await?,
        None => {
            let cmd = redis::cmd("REPLICAOF").arg(host).arg(port).clone();
            query::<()>(addr, &cmd, CMD_TIMEOUT).await?;
        }
    }
    query::<()>(addr, redis::cmd("CONFIG").arg("REWRITE"), CMD_TIMEOUT).await
}

/// Which shard of one master's group (the configured master first, then its replicas)
/// serves the master's data now, asked of the live servers (`INFO replication`, and
/// `CLUSTER NODES` when more than one answers as a master).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Serving {
    /// The shard answering as a master: the configured one, or a replica promoted by a
    /// failover (which holds writes the configured master lacks); when several do, the
    /// one the cluster gives the slots to. The configured master (0) when none does.
    pub master: usize,
    /// A shard following that master with its link up.
    pub replica: Option<usize>,
    /// Whether any shard of the group answered at all.
    pub answered: bool,
}

/// Several shards of one group answer as a master and the cluster does not tell which
/// serves the group's slots: guessing could pause or snapshot the wrong one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecided {
    /// The shards of the group (their indices) answering as a master.
    pub claimants: Vec<usize>,
    /// Why what they say decides nothing.
    pub why: String,
    /// A Redis Cluster settles it by itself within seconds (a master restarted after a
    /// failover follows the replica that took its slots); `false`: nothing will (a
    /// database of one shard whose replica was promoted by hand stays so).
    pub transient: bool,
}

impl Undecided {
    /// The refusal, each shard named by `names` (the caller's name of each shard of the
    /// group, in its order).
    pub fn describe(&self, db: &str, names: &[String]) -> String {
        let claimants: Vec<&str> = self
            .claimants
            .iter()
            .map(|&i| names.get(i).map_or("?", String::as_str))
            .collect();
        let master = names.first().map_or("?", String::as_str);
        let head = format!(
            "cannot tell which shard serves {master}'s data: {} all answer as a master, and {}",
            claimants.join(", "),
            self.why
        );
        if self.transient {
            return format!(
                "{head}; a master restarted after its replica took its slots follows that replica within seconds, so try again in a moment"
            );
        }
        let others: Vec<&str> = self
            .claimants
            .iter()
            .filter(|&&i| i != 0)
            .map(|&i| names.get(i).map_or("?", String::as_str))
            .collect();
        let others = others.join(", ");
        format!(
            "{head}; waiting will not change that (a replica promoted by hand stays a master): `restart db {db}` makes {master} the master again and re-attaches {others} as its replica, which then takes {master}'s data (writes made to {others} since it was promoted are dropped)"
        )
    }
}

/// [`Serving`] of `group`, each shard asked within `timeout`. One shard answering as a
/// master is it. Several (a master restarted after a failover answers `role:master` for
/// a moment, with the slots its replica now serves): in a Redis Cluster (`sharded`) the
/// one whose own slot claim carries the greatest config epoch, as the cluster itself
/// decides; when that decides nothing (a tie, no claim, no answer), or the group is not
/// a Redis Cluster, [`Undecided`] — never the configured master by default.
pub async fn serving(
    group: &[ShardAddr],
    sharded: bool,
    timeout: Duration,
) -> Result<Serving, Undecided> {
    let mut live = Vec::with_capacity(group.len());
    for a in group {
        live.push(info(a, "replication", timeout).await.ok());
    }
    let claimants: Vec<usize> = live
        .iter()
        .enumerate()
        .filter(|(_, i)| i.as_ref().is_some_and(|i| i.get("role") == Some("master")))
        .map(|(k, _)| k)
        .collect();
    let master = match claimants.as_slice() {
        [] => 0,
        [one] => *one,
        _ if !sharded => {
            return Err(Undecided {
                claimants,
                why: "a database of one shard has no cluster to say which one clients write to"
                    .into(),
                transient: false,
            })
        }
        _ => slot_owner(group, &claimants, timeout).await?,
    };
    let m = &group[master];
    let replica = live.iter().enumerate().position(|(k, i)| {
        k != master
            && i.as_ref().is_some_and(|i| {
                i.get("role") == Some("slave")
                    && i.get("master_link_status") == Some("up")
                    && i.get("master_host") == Some(m.host.as_str())
                    && i.get_u64("master_port") == Some(u64::from(m.port))
            })
    });
    Ok(Serving {
        master,
        replica,
        answered: live.iter().any(Option::is_some),
    })
}

/// Of `claimants` (shards of `group` answering as a master), the one the Redis Cluster
/// gives the group's slots to: each says (its own line of `CLUSTER NODES`) which slots
/// it claims and with which config epoch, and the cluster resolves two claims of a slot
/// to the greater epoch.
async fn slot_owner(
    group: &[ShardAddr],
    claimants: &[usize],
    timeout: Duration,
) -> Result<usize, Undecided> {
    let undecided = |why: String| Undecided {
        claimants: claimants.to_vec(),
        why,
        transient: true,
    };
    let mut claims = Vec::new();
    for &k in claimants {
        let cmd = redis::cmd("CLUSTER").arg("NODES").clone();
        let text: String = query(&group[k], &cmd, timeout)
            .await
            .map_err(|e| undecided(format!("`{}` did not say its slots: {e}", group[k])))?;
        if let Some(me) = parse_nodes(&text)
            .into_iter()
            .find(|n| n.myself && n.replica_of.is_none() && !n.slots.is_empty())
        {
            claims.push((k, me.epoch));
        }
    }
    let Some(&(_, top)) = claims.iter().max_by_key(|(_, e)| *e) else {
        return Err(undecided("none of them claims any slot".into()));
    };
    match claims.iter().filter(|(_, e)| *e == top).collect::<Vec<_>>()[..] {
        [&(k, _)] => Ok(k),
        _ => Err(undecided(format!(
            "they claim slots with the same config epoch ({top})"
        ))),
    }
}

/// Takes a snapshot (BGSAVE) and waits until it succeeded: the data is in `dump.rdb`.
pub async fn save_snapshot(addr: &ShardAddr, timeout: Duration) -> Result<(), ServerError> {
    let before = info(addr, "persistence", CMD_TIMEOUT)
        .await?
        .get_u64("rdb_last_save_time");
    query::<()>(addr, &redis::cmd("BGSAVE"), CMD_TIMEOUT).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let i = info(addr, "persistence", CMD_TIMEOUT).await?;
        if i.get("rdb_bgsave_in_progress") == Some("0") {
            // A failed save fails at once: waiting would not mend it.
            if i.get("rdb_last_bgsave_status") != Some("ok") {
                return Err(addr.err("BGSAVE failed"));
            }
            if i.get_u64("rdb_last_save_time") != before
                || i.get_u64("rdb_changes_since_last_save") == Some(0)
            {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(ServerError::Timeout {
                what: format!("`{addr}` to save a snapshot"),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Full syncs a master may send a replica during one wait before the replica is taken to
/// refuse what it is sent (it loads each and fails, or drops it, and asks again): the
/// first, one again after a link dropped mid-transfer, and one for another replica.
const FULL_SYNCS_REFUSED: u64 = 4;
/// How often the master's count of full syncs is looked at during a wait.
const FULL_SYNC_LOOK: Duration = Duration::from_secs(1);

/// Waits until a replica's link to its master is up and no sync is in progress. A
/// replica that keeps refusing what its master sends (an RDB it cannot load, a disk it
/// cannot write) asks for a full sync again every second or so and would wait out the
/// whole `timeout` (an hour in a recovery): once its master counts
/// [`FULL_SYNCS_REFUSED`] full syncs since the wait began and the replica is between tries
/// (its link not up, no transfer in progress), the wait ends with
/// [`ServerError::SyncRefused`]. The master is asked as the replica is
/// (same password and transport), from the address the replica follows; one that does
/// not answer so (a `sync_source` elsewhere) leaves the plain timeout.
pub async fn wait_in_sync(replica: &ShardAddr, timeout: Duration) -> Result<(), ServerError> {
    let what = format!("replica `{replica}` to sync (`master_link_status:up`)");
    let began = Instant::now();
    let deadline = began + timeout;
    let mut next_look = began;
    // The master as the replica names it, and its count of full syncs at the first look.
    let mut first: Option<(ShardAddr, u64)> = None;
    loop {
        let last = info(replica, "replication", CMD_TIMEOUT).await;
        if let Ok(i) = &last {
            if i.get("master_link_status") == Some("up")
                && i.get("master_sync_in_progress") == Some("0")
            {
                return Ok(());
            }
            // Mid-transfer, a sync may take as long as it needs: only a replica between
            // tries is judged (one that refuses is between tries every second or so).
            let between_tries = i.get("master_sync_in_progress") != Some("1");
            if between_tries && Instant::now() >= next_look {
                next_look = Instant::now() + FULL_SYNC_LOOK;
                let master = match (i.get("master_host"), i.get_u64("master_port")) {
                    (Some(host), Some(port)) => u16::try_from(port).ok().map(|port| ShardAddr {
                        host: host.to_string(),
                        port,
                        ..replica.clone()
                    }),
                    _ => None,
                };
                if let Some(master) = master {
                    let fulls = info(&master, "stats", CMD_TIMEOUT)
                        .await
                        .ok()
                        .and_then(|m| m.get_u64("sync_full"));
                    match (&first, fulls) {
                        (Some((m, at)), Some(n))
                            if *m == master && n >= at + FULL_SYNCS_REFUSED =>
                        {
                            return Err(ServerError::SyncRefused {
                                replica: replica.to_string(),
                                master: master.to_string(),
                                syncs: n - at,
                                after: began.elapsed(),
                            });
                        }
                        (Some((m, _)), _) if *m == master => {}
                        (_, Some(n)) => first = Some((master, n)),
                        (_, None) => {}
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(match last {
                Err(e) => e,
                Ok(_) => ServerError::Timeout {
                    what,
                    after: timeout,
                },
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Switches a running server to `persistence` (CONFIG SET save/appendonly) and writes it
/// to its redis.conf (CONFIG REWRITE). Turning the AOF on makes the server write a whole
/// new AOF; with `wait_rewrite` this waits until no rewrite is left, so the data is
/// durable on return (without: the caller knows the AOF files hold it already).
pub async fn set_persistence(
    addr: &ShardAddr,
    persistence: Persistence,
    wait_rewrite: bool,
    timeout: Duration,
) -> Result<(), ServerError> {
    let (save, appendonly) = persistence_settings(persistence);
    let cmd = redis::cmd("CONFIG")
        .arg("SET")
        .arg("save")
        .arg(save)
        .arg("appendonly")
        .arg(if appendonly { "yes" } else { "no" })
        // Held at 0 while a recovery loaded from an AOF (`conf::render_conf`); Redis's default.
        .arg("auto-aof-rewrite-percentage")
        .arg("100")
        // Held at `no` while a recovery loaded an AOF through symlinks to its originals.
        .arg("aof-load-truncated")
        .arg("yes")
        .clone();
    query::<()>(addr, &cmd, CMD_TIMEOUT).await?;
    query::<()>(addr, redis::cmd("CONFIG").arg("REWRITE"), CMD_TIMEOUT).await?;
    if appendonly && wait_rewrite {
        poll_until("the AOF rewrite to finish", timeout, || async {
            let i = info(addr, "persistence", CMD_TIMEOUT).await?;
            Ok(i.get("aof_enabled") == Some("1")
                && i.get("aof_rewrite_in_progress") == Some("0")
                && i.get("aof_rewrite_scheduled") == Some("0"))
        })
        .await?;
    }
    Ok(())
}

/// The even split of the 16384 slots over `masters` shards, in order.
pub fn even_slots(masters: u32) -> Vec<SlotRange> {
    let n = u32::from(SLOT_COUNT);
    let m = masters.max(1);
    (0..m)
        .map(|i| SlotRange {
            start: (i * n / m) as u16,
            end: ((i + 1) * n / m - 1) as u16,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis Cluster mid-failover settles by itself: try again. A database of one
    /// shard with two masters never does: the refusal names the command that does.
    #[test]
    fn an_undecided_group_says_whether_waiting_helps() {
        let names = ["redis:2 (a:1)".to_string(), "redis:3 (a:2)".to_string()];
        let undecided = |transient| Undecided {
            claimants: vec![0, 1],
            why: "why".into(),
            transient,
        };
        let settles = undecided(true).describe("one", &names);
        assert!(settles.ends_with("so try again in a moment"), "{settles}");
        let lasts = undecided(false).describe("one", &names);
        assert!(!lasts.contains("try again"), "{lasts}");
        assert!(
            lasts.contains(
                "waiting will not change that (a replica promoted by hand stays a master): \
                 `restart db one` makes redis:2 (a:1) the master again and re-attaches \
                 redis:3 (a:2) as its replica"
            ),
            "{lasts}"
        );
    }

    #[test]
    fn even_split_covers_all_slots() {
        let r = even_slots(3);
        assert_eq!(
            r[0],
            SlotRange {
                start: 0,
                end: 5460
            }
        );
        assert_eq!(r[2].end, SLOT_COUNT - 1);
        assert!(r.windows(2).all(|w| w[0].end + 1 == w[1].start));
        assert_eq!(even_slots(1), vec![SlotRange::ALL]);
    }

    #[test]
    fn parses_cluster_nodes() {
        let text = "a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 7000\n\
                    b2 127.0.0.1:30002@40002 slave a1 0 0 1 connected\n\
                    c3 :0@0 handshake - 0 0 0 connected\n";
        let n = parse_nodes(text);
        assert_eq!(n.len(), 3);
        assert!(n[0].myself);
        assert_eq!(n[0].slots, vec![(0, 5460), (7000, 7000)]);
        assert_eq!(n[1].replica_of.as_deref(), Some("a1"));
        assert_eq!((n[0].epoch, n[1].epoch), (1, 1));
        assert!(n[2].handshake);
        assert_eq!(n[0].addr, Some(("127.0.0.1".to_string(), 30001)));
        assert!(n[0].reachable_master() && n[0].holds(7000) && !n[0].holds(7001));
        assert!(!n[1].reachable_master());
        let lost = parse_nodes(
            "d4 :0@0 master,noaddr - 1 1 2 disconnected 8192-16383\n\
             e5 ::1:30003@40003,host master,fail? - 0 0 3 connected\n",
        );
        assert_eq!(lost[0].addr, None);
        assert!(!lost[0].reachable_master() && lost[0].holds(8192));
        assert_eq!(lost[1].addr, Some(("::1".to_string(), 30003)));
        assert!(lost[1].failing);
    }
}
