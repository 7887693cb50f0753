//! Snapshots of every command's result, text and JSON together, built from fixtures: the
//! two renderings come from one value, and these pin both (no servers are started).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::report_fixture;
use super::cluster::ClusterCreated;
use super::db::{DbCreated, DbRestarted, DbView};
use super::help::Help;
use super::info::{ClusterInfo, NodeInfo};
use super::node::{NodeAdded, NodeRemoved, NodeView, PortRangeSet, RecoveryPathSet};
use super::recover::{FailedDb, PlanReport, RecoverReport};
use super::status::Status;
use super::{Render, Reply};
use crate::ccs::{
    default_local_cluster, Cluster, Database, DbConfig, DbState, Node, Persistence, PortRange,
    Role, Shard, SlotRange,
};
use crate::db::{DatabaseRow, DeleteOutcome, EndpointRow, NodeRow, ShardRow, StatusReport};
use crate::error::ErrorKind;
use crate::persist::{FixOutcome, Verdict};
use crate::recovery::apply::{Recovered, SyncSource};
use crate::recovery::plan::{DbPlan, DbStatus, Outcome, Reason, RecoveryPlan, ShardPlan};

/// The text a person reads, then the `result` of `--json`: what every command's snapshot
/// pins.
pub(crate) fn both(outcome: &impl Render) -> String {
    let reply = Reply::of(outcome).expect("serialises");
    format!(
        "{}---- json ----\n{}",
        crate::shell::render::text(&reply),
        serde_json::to_string_pretty(reply.data()).unwrap()
    )
}

/// Two nodes, a sharded database with replicas on both.
fn cluster() -> Cluster {
    let mut c = default_local_cluster(Path::new("/h"));
    c.name = "prod".into();
    c.cluster_id = 42;
    c.tls = Some(crate::ccs::TlsConfig {
        cacert: crate::ccs::TlsFile::of(Path::new("/etc/tls/ca.crt"), "aa".repeat(32)),
        cert: crate::ccs::TlsFile::of(Path::new("/etc/tls/redis.crt"), "bb".repeat(32)),
        key: crate::ccs::TlsFile::of(Path::new("/etc/tls/redis.key"), "cc".repeat(32)),
        cert_not_after: 4_102_444_800,
        verify: false,
    });
    let id = c.allocate_id();
    c.nodes.insert(
        id,
        Node {
            addr: "127.0.0.2".into(),
            persistent_path: "/srv/n2".into(),
            recovery_path: Some("/mnt/old-n2".into()),
            port_range: PortRange {
                lo: 31000,
                hi: 31999,
            },
            rack_id: Some("r2".into()),
            ..crate::ccs::fixtures::node(id, Path::new("/"))
        },
    );
    let db = c.allocate_id();
    let config = DbConfig {
        memory: Some(1 << 30),
        password: Some("hunter2".into()),
        ..crate::ccs::fixtures::db_config("orders", 2, true)
    };
    let halves = [
        SlotRange {
            start: 0,
            end: 8191,
        },
        SlotRange {
            start: 8192,
            end: 16383,
        },
    ];
    let mut shards = Vec::new();
    for (i, slots) in halves.into_iter().enumerate() {
        let master = c.allocate_id();
        let (m_node, r_node) = if i == 0 { (1, 2) } else { (2, 1) };
        shards.push(Shard {
            id: master,
            node: m_node,
            role: Role::Master,
            master: None,
            slots: Some(slots),
            port: 30000 + i as u16,
            pid: Some(1000 + master as u32),
            empty_since: None,
            loaded_ns: None,
        });
        let replica = c.allocate_id();
        shards.push(Shard {
            id: replica,
            node: r_node,
            role: Role::Replica,
            master: Some(master),
            slots: Some(slots),
            port: 31000 + i as u16,
            pid: None,
            empty_since: None,
            loaded_ns: None,
        });
    }
    c.databases.insert(
        db,
        Database {
            id: db,
            config,
            port: 30000,
            state: DbState::Active,
            shards,
        },
    );
    c
}

#[test]
fn cluster_create() {
    insta::assert_snapshot!(both(&ClusterCreated {
        name: "prod".into(),
        cluster_id: 42,
        node: 1,
        addr: "127.0.0.1".into(),
        persistent_path: "/h/nodes/1".into(),
        tls_material: None,
        redis_server: None,
        warnings: Vec::new(),
    }));
}

#[test]
fn cluster_tls_set() {
    insta::assert_snapshot!(both(&super::cluster::tls::TlsSetDone {
        rotated: true,
        material_id: "0123456789abcdef".into(),
        cert_not_after: "2027-12-04 00:00:00 UTC".into(),
        cacert_sha256: "aa".repeat(32),
        cert_sha256: "bb".repeat(32),
        verify: false,
        nodes: vec![1, 2],
        shards: vec![
            super::cluster::tls::ShardRotation {
                db: 3,
                shard: 4,
                error: None,
            },
            super::cluster::tls::ShardRotation {
                db: 3,
                shard: 5,
                error: Some("no answer within 5s".into()),
            },
        ],
    }));
}

#[test]
fn info_cluster_and_node() {
    let c = cluster();
    insta::assert_snapshot!(
        "info_cluster",
        both(&ClusterInfo::new(&c, "/h/ccs.json".into()))
    );
    insta::assert_snapshot!("info_node", both(&NodeInfo::new(&c, &c.nodes[&2])));
}

#[test]
fn node_add_remove_recovery_path() {
    let c = cluster();
    insta::assert_snapshot!(
        "node_add",
        both(&NodeAdded {
            node: NodeView::from(&c.nodes[&2]),
            warnings: Vec::new(),
        })
    );
    insta::assert_snapshot!(
        "node_remove",
        both(&NodeRemoved {
            removed: 2,
            moved: Vec::new()
        })
    );
    insta::assert_snapshot!(
        "node_recovery_path_set",
        both(&RecoveryPathSet {
            node: 2,
            recovery_path: "/mnt/old-n2".into(),
        })
    );
    insta::assert_snapshot!(
        "node_port_range_set",
        both(&PortRangeSet {
            node: NodeView::from(&c.nodes[&2]),
            was: "30000-30999".into(),
            warnings: Vec::new(),
        })
    );
}

#[test]
fn create_restart_delete_db() {
    let c = cluster();
    let view = DbView::new(&c, &c.databases[&3]);
    let created = both(&DbCreated(view.clone()));
    assert!(!created.contains("hunter2"), "{created}");
    insta::assert_snapshot!("create_db", created);
    insta::assert_snapshot!("restart_db", both(&DbRestarted(view)));
    insta::assert_snapshot!(
        "delete_db",
        both(&DeleteOutcome {
            id: 3,
            name: "orders".into(),
            stopped: 4,
            purged: Vec::new(),
            kept: vec!["/h/nodes/1/redis/db-3".into(), "/srv/n2/redis/db-3".into()],
        })
    );
}

#[test]
fn help_forms() {
    let forms = |topic: &[&str]| Help::new(topic.iter().map(|w| w.to_string()).collect());
    insta::assert_snapshot!("help_node", both(&forms(&["node"]).unwrap()));
}

#[test]
fn status_tables() {
    let report = StatusReport {
        nodes: vec![NodeRow {
            id: 1,
            local: true,
            role: "master",
            address: "127.0.0.1".into(),
            shards: 2,
            cores: 2,
            free_ram: 3 << 30,
            total_ram: 8 << 30,
            version: Some("7.0.15".into()),
            status: "OK".into(),
            persistent_path: "/h/nodes/1".into(),
            port_range: "30000-30999".into(),
        }],
        databases: vec![DatabaseRow {
            id: 3,
            name: "orders".into(),
            kind: "redis".into(),
            status: "degraded".into(),
            shards: 2,
            placement: "dense",
            replication: true,
            persistence: "aof".into(),
            endpoint: "127.0.0.1:30000".into(),
            memory_limit: Some(1 << 30),
            sync_source: None,
            keys: 1200,
            unserved_slots: Vec::new(),
            cluster_down: None,
            unprotected_masters: Vec::new(),
        }],
        endpoints: vec![EndpointRow {
            db_id: 3,
            name: "orders".into(),
            id: "endpoint:3:1".into(),
            node: 1,
            role: "single",
            ssl: false,
            address: "127.0.0.1:30000".into(),
            status: "OK".into(),
            cert_expires: None,
            tls_issue: None,
        }],
        shards: vec![ShardRow {
            db_id: 3,
            name: "orders".into(),
            id: 5,
            node: 2,
            role: Role::Replica,
            live_role: None,
            slots: Some(SlotRange {
                start: 0,
                end: 8191,
            }),
            used_memory: None,
            status: "DOWN".into(),
            port: 31000,
            pid: None,
            keys: None,
            engine: None,
            detail: Some("connection refused".into()),
            tls: false,
            tls_issue: None,
        }],
    };
    insta::assert_snapshot!(
        "status_all",
        both(&Status::new(report.clone(), None, false))
    );
    insta::assert_snapshot!(
        "status_shards_extra_all",
        both(&Status::new(
            report,
            Some(super::status::StatusTable::Shards),
            true
        ))
    );
}

#[test]
fn recover_list() {
    insta::assert_snapshot!(
        "recover_list_nothing",
        both(&PlanReport::new(RecoveryPlan::default()))
    );
    let plan = RecoveryPlan {
        databases: vec![DbPlan {
            id: 3,
            name: "orders".into(),
            kind: "redis".into(),
            shards: 1,
            replication: true,
            persistence: Persistence::Aof,
            status: DbStatus::MissingFiles,
            shard_plans: vec![
                ShardPlan {
                    shard: 4,
                    node: 1,
                    role: Role::Master,
                    master: None,
                    slots: None,
                    outcome: Outcome::Missing {
                        reason: Reason::LocationNotFound {
                            path: "/mnt/old-n1/redis/db-3/shard-4".into(),
                        },
                    },
                    set_aside: Vec::new(),
                    notes: Vec::new(),
                    alternates: Vec::new(),
                },
                ShardPlan {
                    shard: 5,
                    node: 2,
                    role: Role::Replica,
                    master: Some(4),
                    slots: None,
                    outcome: Outcome::Replica,
                    set_aside: Vec::new(),
                    notes: Vec::new(),
                    alternates: Vec::new(),
                },
            ],
        }],
    };
    insta::assert_snapshot!(
        "recover_list",
        both(&PlanReport {
            now: 0,
            ..PlanReport::new(plan)
        })
    );
}

#[test]
fn recover_all() {
    let report = RecoverReport {
        moved: Vec::new(),
        adopted: Vec::new(),
        recovered: vec![Recovered {
            id: 3,
            pids: vec![(4, 1004)],
            keys: 0,
            sources: Vec::new(),
            empty: vec![4],
            only_configuration: false,
            unverified: Vec::new(),
            sync_source: Some(SyncSource {
                endpoint: "10.0.0.9:6379".into(),
                answers: false,
                synced: false,
            }),
            content: Some(crate::recovery::apply::ContentProof::Verified {
                keys: 0,
                digest: "0".repeat(32),
                expired: 0,
                line: format!("content verified: 0 keys, digest {}", "0".repeat(32)),
            }),
            fallbacks: Vec::new(),
            damaged_values: vec![
                "redis:4: `h` in database 0 at offset 21 of `/mnt/old-n1/redis-4/dump.rdb`".into(),
            ],
            linked: true,
            phases: crate::recovery::apply::Phases {
                validation_ms: 700,
                copy_ms: 900,
                load_ms: 1100,
                checks_ms: 2,
                proof_ms: 1500,
                bring_up_ms: 40,
            },
        }],
        failed: vec![FailedDb {
            id: 7,
            name: "cache".into(),
            reason: "redis:8 loaded 1 keys in db 0, the files hold 2 (0 with a TTL)".into(),
            kind: ErrorKind::Damaged,
        }],
        names: BTreeMap::from([(3, "orders".into()), (7, "cache".into())]),
        elapsed: Duration::from_millis(1250),
        cleared: vec![crate::cmd::recover::ClearedPath {
            node: 1,
            recovery_path: PathBuf::from("/mnt/old-n1"),
        }],
    };
    insta::assert_snapshot!(both(&report));
}

#[test]
fn check_file_and_fix() {
    insta::assert_snapshot!("check_file_ok", both(&report_fixture(Verdict::Ok)));
    insta::assert_snapshot!(
        "check_file_truncated",
        both(&report_fixture(Verdict::Truncated))
    );
    insta::assert_snapshot!(
        "check_file_fix",
        both(&FixOutcome {
            source: PathBuf::from("/data/appendonly.aof"),
            dest: PathBuf::from("/tmp/fixed.aof"),
            truncated_file: PathBuf::from("/data/appendonly.aof"),
            original_len: 1000,
            kept_len: 960,
        })
    );
}

#[test]
fn cluster_recover() {
    use super::cluster::recover::{ClusterRecovered, RecoveredDb};
    use crate::ccs::SlotRange;
    use crate::recovery::rebuild::{IdSighting, LeftOut, LostShard, SightingKind};
    let c = cluster();
    insta::assert_snapshot!(both(&ClusterRecovered {
        name: "prod".into(),
        cluster_id: 42,
        local_node: 1,
        alloc_id: 121,
        alloc_id_given: false,
        largest_id_in_use: Some(IdSighting {
            id: 21,
            what: SightingKind::ShardDir,
            path: "/mnt/old-n2/redis/db-3/shard-21".into(),
        }),
        nodes: c.nodes.values().map(NodeView::from).collect(),
        databases: vec![RecoveredDb {
            id: 3,
            name: "orders".into(),
            state: DbState::PendingRecovery,
            shard_count: 2,
            replication: true,
            persistence: Persistence::Aof,
            port: 30000,
        }],
        notes: vec!["node:2's recovery path is its old persistent path `/srv/n2`".into()],
        problems: vec!["`/mnt/x/lazarus-shard.json` belongs to cluster_id 7: left out".into()],
        lost_shards: vec![LostShard {
            db: 3,
            db_name: "orders".into(),
            shard: 4,
            slots: Some(SlotRange { start: 0, end: 8191 }),
            replicas: vec![6],
            node: 2,
            port: 30004,
        }],
        left_out: vec![LeftOut {
            db: 8,
            name: "gone".into(),
            reason: "slots 8192-16383 have no master shard (masters known: `redis:9` (slots 0-8191)); its files are untouched".into(),
        }],
        from: "its CCS backup",
    }));
}

#[test]
fn verify_db() {
    use super::verify::VerifyOutcome;
    use crate::persist::SettledDigest;
    use crate::verify::{Comparison, Difference, KeyDifference};
    let settled = |keys, digest| SettledDigest {
        keys,
        expired: 0,
        digest,
        slots: Vec::new(),
    };
    let equal = VerifyOutcome {
        db: "orders".into(),
        against: PathBuf::from("/old/redis/db-2"),
        run: None,
        files_read: vec![
            "/old/redis/db-2/shard-3/dump.rdb".into(),
            "/old/redis/db-2/shard-4/dump.rdb".into(),
        ],
        comparison: Comparison {
            equal: true,
            files: settled(1000, 0xfeed),
            server: settled(1000, 0xfeed),
            expired: 2,
            differing_slots: Vec::new(),
            slot_count_mismatches: Vec::new(),
            differences: Vec::new(),
        },
    };
    insta::assert_snapshot!("verify_db_equal", both(&equal));
    let mut differs = equal;
    differs.comparison = Comparison {
        equal: false,
        files: settled(1000, 0xfeed),
        server: settled(1001, 0xbeef),
        expired: 0,
        differing_slots: vec![12, 866],
        slot_count_mismatches: Vec::new(),
        differences: vec![
            KeyDifference {
                db: 0,
                key: "user:1".into(),
                difference: Difference::DifferentValue,
                detail: "a hash whose content differs".into(),
            },
            KeyDifference {
                db: 0,
                key: "new\\x00key".into(),
                difference: Difference::Extra,
                detail: "string without TTL".into(),
            },
        ],
    };
    insta::assert_snapshot!("verify_db_differs", both(&differs));
    let mut run = differs;
    run.against = PathBuf::from("s3://offsite/lazarus/latest");
    run.run = Some(super::verify::RunRead {
        id: "20261204-030012-17".into(),
        repository: "s3://offsite/lazarus".into(),
    });
    run.files_read = vec!["s3://offsite/lazarus/20261204-030012-17/shard-3.rdb.zst.age".into()];
    insta::assert_snapshot!("verify_db_against_run", both(&run));
}

/// `restart all` with a database refused: the refusal's hints under it, as a command of
/// its own gives them (the way forward names other nodes' directories).
#[test]
fn restart_all_gives_each_refusal_its_hints() {
    let c = cluster();
    let report = super::restart::RestartReport {
        restarted: vec![DbView::new(&c, &c.databases[&3])],
        running: vec!["cache".into()],
        pending_recovery: Vec::new(),
        failed: vec![super::restart::RestartFailed {
            id: 9,
            name: "billing".into(),
            reason: "db:9 `billing` cannot restart: redis:10 (node:1) would start from its \
                     `dump.rdb` at replication offset 100, and its replica redis:11 (node:2) \
                     is further along the shard's replication, at offset 900"
                .into(),
            kind: ErrorKind::Conflict,
            hints: vec![
                "set redis:10's `dump.rdb` in `/n1/redis/db-9/shard-10` on node:1 aside, copy \
                 redis:11's from `/n2/redis/db-9/shard-11` on node:2 in its place"
                    .into(),
                "then run `restart db billing` again".into(),
            ],
        }],
    };
    insta::assert_snapshot!("restart_all_refused", both(&report));
}
