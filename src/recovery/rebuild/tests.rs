//! The two rebuild forms against hand-made disks: backups and identity trees written with
//! serde from the model types.

use std::fs;
use std::path::{Path, PathBuf};

use crate::ccs::{
    Cluster, Database, DbConfig, DbState, Node, Persistence, PortRange, Role, Shard, ShardIdentity,
    SlotRange, CCS_FORMAT, SHARD_IDENTITY_FILE,
};

use super::*;

const CID: u64 = 0xfeed_beef;

fn node(id: Id, root: &Path) -> Node {
    Node {
        id,
        addr: "127.0.0.1".into(),
        persistent_path: root.join(format!("n{id}")),
        recovery_path: None,
        port_range: PortRange::DEFAULT,
        rack_id: None,
    }
}

/// node:2 on its own address and port range, as `node add` may make it.
fn node2(root: &Path) -> Node {
    Node {
        addr: "127.0.0.2".into(),
        port_range: PortRange {
            lo: 30002,
            hi: 30099,
        },
        ..node(2, root)
    }
}

fn shard(
    id: Id,
    node: Id,
    role: Role,
    master: Option<Id>,
    slots: Option<SlotRange>,
    port: u16,
) -> Shard {
    Shard {
        id,
        node,
        role,
        master,
        slots,
        port,
        pid: Some(4242),
    }
}

fn config(name: &str, shards: u32, replication: bool) -> DbConfig {
    DbConfig {
        name: name.into(),
        shards,
        replication,
        persistence: Persistence::Aof,
        memory: None,
        password: None,
        sync_source: None,
    }
}

/// Two nodes; `cache` (db:3) a master on node:1 with a replica on node:2; `orders` (db:6)
/// three masters across the nodes. alloc_id 10.
fn sample(root: &Path) -> Cluster {
    let mut cluster = Cluster {
        format: CCS_FORMAT,
        name: "prod".into(),
        cluster_id: CID,
        alloc_id: 10,
        generation: 7,
        local_node: 1,
        redis_server: None,
        nodes: [(1, node(1, root)), (2, node2(root))].into(),
        databases: Default::default(),
    };
    cluster.databases.insert(
        3,
        Database {
            id: 3,
            config: config("cache", 1, true),
            port: 30001,
            state: DbState::Active,
            shards: vec![
                shard(4, 1, Role::Master, None, None, 30001),
                shard(5, 2, Role::Replica, Some(4), None, 30002),
            ],
        },
    );
    let s = |start, end| Some(SlotRange { start, end });
    cluster.databases.insert(
        6,
        Database {
            id: 6,
            config: config("orders", 3, false),
            port: 30003,
            state: DbState::Active,
            shards: vec![
                shard(7, 1, Role::Master, None, s(0, 5460), 30003),
                shard(8, 2, Role::Master, None, s(5461, 10922), 30004),
                shard(9, 1, Role::Master, None, s(10923, 16383), 30005),
            ],
        },
    );
    cluster
}

/// What the nodes left on disk: backups and identity files, as Lazarus writes them.
fn write_disks(cluster: &Cluster) {
    for node in cluster.nodes.values() {
        fs::create_dir_all(node.ccs_backup_dir()).unwrap();
        fs::write(
            node.ccs_backup_dir().join("ccs.json"),
            serde_json::to_vec_pretty(cluster).unwrap(),
        )
        .unwrap();
    }
    for db in cluster.databases.values() {
        for s in &db.shards {
            let dir = cluster.nodes[&s.node].shard_dir(db.id, s.id);
            fs::create_dir_all(&dir).unwrap();
            let identity = ShardIdentity {
                cluster_id: cluster.cluster_id,
                cluster_name: cluster.name.clone(),
                db_id: db.id,
                shard_id: s.id,
                node_id: s.node,
                role: s.role,
                master: s.master,
                slots: s.slots,
                port: s.port,
                db_port: db.port,
                db: db.config.clone(),
                node_addr: Some(cluster.nodes[&s.node].addr.clone()),
                node_port_range: Some(cluster.nodes[&s.node].port_range),
            };
            fs::write(
                dir.join(SHARD_IDENTITY_FILE),
                serde_json::to_vec(&identity).unwrap(),
            )
            .unwrap();
        }
    }
}

fn backup_of(cluster: &Cluster, node: Id) -> PathBuf {
    cluster.nodes[&node].ccs_backup_dir().join("ccs.json")
}

#[test]
fn backup_comes_back_pending_with_no_pids() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let new1 = tmp.path().join("new1");
    let rebuilt = from_backup(&FromBackup {
        filename: backup_of(&cluster, 2),
        node_uid: Some(1),
        persistent_path: Some(new1.clone()),
        addr: Some("127.0.0.2".parse().unwrap()),
        ..Default::default()
    })
    .unwrap();
    let c = &rebuilt.cluster;
    assert_eq!(
        (c.name.as_str(), c.cluster_id, c.local_node),
        ("prod", CID, 1)
    );
    assert!(c
        .databases
        .values()
        .all(|db| db.state == DbState::PendingRecovery));
    assert!(c
        .databases
        .values()
        .flat_map(|db| &db.shards)
        .all(|s| s.pid.is_none()));
    assert_eq!(c.nodes[&1].persistent_path, new1);
    assert_eq!(c.nodes[&1].addr, "127.0.0.2");
    // The old persistent path survived and differs from the new one: it is where the
    // data is recovered from.
    assert_eq!(c.nodes[&1].recovery_path, Some(tmp.path().join("n1")));
    assert!(
        rebuilt
            .notes
            .iter()
            .any(|n| n.contains("old persistent path")),
        "{:?}",
        rebuilt.notes
    );
    // node:2's old persistent path holds its data: it recovers from there into a fresh
    // sibling, never in place.
    assert_eq!(c.nodes[&2].recovery_path, Some(tmp.path().join("n2")));
    assert_eq!(c.nodes[&2].persistent_path, tmp.path().join("n2-recovered"));
    assert!(rebuilt.problems.is_empty(), "{:?}", rebuilt.problems);
    // Ids up to 9 were handed out; the margin is added above.
    assert_eq!(rebuilt.alloc.largest.as_ref().unwrap().id, 9);
    assert_eq!(c.alloc_id, 9 + ALLOC_MARGIN);
    assert!(!rebuilt.alloc.given);
    assert_eq!(c.generation, 7);
}

#[test]
fn backup_dir_is_accepted_for_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    for dir in [tmp.path().join("n1"), tmp.path().join("n1/ccs")] {
        let rebuilt = from_backup(&FromBackup {
            filename: dir,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(rebuilt.cluster.cluster_id, CID);
    }
}

#[test]
fn backup_errors_name_the_file_and_the_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("ccs.json");
    let err = |f: &Path| {
        from_backup(&FromBackup {
            filename: f.to_path_buf(),
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
    };
    let missing = err(&file);
    assert!(
        missing.starts_with(&format!("cannot read the CCS backup `{}`", file.display())),
        "{missing}"
    );

    fs::write(&file, "{\"format\": 1,\n \"name\": ").unwrap();
    let e = err(&file);
    assert!(
        e.contains(&format!("`{}` is not valid", file.display())) && e.contains("line 2"),
        "{e}"
    );

    fs::write(&file, r#"{"format": 2}"#).unwrap();
    let e = err(&file);
    assert!(
        e.contains("has format 2, this lazarus reads format 1"),
        "{e}"
    );

    fs::write(&file, r#"{"name": "x"}"#).unwrap();
    assert!(err(&file).contains("no `format` field"));

    fs::write(&file, r#"{"format": 1, "name": "x"}"#).unwrap();
    assert!(err(&file).contains("missing field"), "{}", err(&file));

    let mut cluster = sample(tmp.path());
    cluster.nodes.remove(&2);
    fs::write(&file, serde_json::to_vec(&cluster).unwrap()).unwrap();
    let e = err(&file);
    assert!(
        e.contains("`node:2`, which the backup does not list"),
        "{e}"
    );
}

#[test]
fn backup_node_uid_and_cluster_id_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let e = from_backup(&FromBackup {
        filename: backup_of(&cluster, 1),
        node_uid: Some(5),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("node_uid 5 is not a node of the backup") && e.contains("`node:1`, `node:2`"),
        "{e}"
    );
    let e = from_backup(&FromBackup {
        filename: backup_of(&cluster, 1),
        cluster_id: Some(1),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("belongs to cluster_id {CID}, not 1")),
        "{e}"
    );
}

#[test]
fn alloc_id_too_small_names_the_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    // A shard directory from after the backup was written: id 40 is on disk.
    fs::create_dir_all(tmp.path().join("n2/redis/db-39/shard-40")).unwrap();
    let req = |alloc_id| FromBackup {
        filename: backup_of(&cluster, 1),
        alloc_id,
        ..Default::default()
    };
    let e = from_backup(&req(Some(40))).unwrap_err().to_string();
    let dir = tmp.path().join("n2/redis/db-39/shard-40");
    assert_eq!(
        e,
        format!("alloc_id 40 is too small: id 40 is already in use (shard directory `{}`); give an alloc_id above 40 or leave it out", dir.display())
    );
    let ok = from_backup(&req(Some(41))).unwrap();
    assert_eq!((ok.cluster.alloc_id, ok.alloc.given), (41, true));
    let picked = from_backup(&req(None)).unwrap();
    assert_eq!(picked.cluster.alloc_id, 40 + ALLOC_MARGIN);
    // The backup itself says ids below 10 were used.
    let tmp2 = tempfile::tempdir().unwrap();
    let lone = sample(tmp2.path());
    let file = tmp2.path().join("lone.json");
    fs::write(&file, serde_json::to_vec(&lone).unwrap()).unwrap();
    let e = from_backup(&FromBackup {
        filename: file.clone(),
        alloc_id: Some(9),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("id 9 is already in use (CCS backup") && e.contains("alloc_id 10 says"),
        "{e}"
    );
}

#[test]
fn a_newer_backup_elsewhere_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = sample(tmp.path());
    write_disks(&cluster);
    cluster.generation = 9;
    cluster.alloc_id = 12;
    fs::write(
        backup_of(&cluster, 2),
        serde_json::to_vec(&cluster).unwrap(),
    )
    .unwrap();
    let e = from_backup(&FromBackup {
        filename: backup_of(&cluster, 1),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!(
            "`{}` is a newer backup of this cluster (generation 9) than `{}` (generation 7): recover from it, or move it aside to recover from the older one",
            backup_of(&cluster, 2).display(),
            backup_of(&cluster, 1).display()
        )
    );
}

fn from_ids(paths: Vec<PathBuf>, home: &Path) -> Result<Rebuilt, RebuildError> {
    from_identities(
        &FromIdentities {
            cluster_id: CID,
            recovery_paths: paths,
            ..Default::default()
        },
        home,
    )
}

#[test]
fn identities_rebuild_nodes_and_databases() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let home = tmp.path().join("home");
    let rebuilt = from_ids(vec![tmp.path().join("n2"), tmp.path().join("n1")], &home).unwrap();
    let c = &rebuilt.cluster;
    assert!(rebuilt.problems.is_empty(), "{:?}", rebuilt.problems);
    assert_eq!(
        (c.name.as_str(), c.cluster_id, c.local_node),
        ("prod", CID, 1)
    );
    assert_eq!(c.nodes.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    for id in [1, 2] {
        let n = &c.nodes[&id];
        assert_eq!(n.recovery_path, Some(tmp.path().join(format!("n{id}"))));
        assert_eq!(n.persistent_path, home.join(format!("nodes/{id}")));
        // Address and port range as the identity files recorded them.
        assert_eq!(n.addr, cluster.nodes[&id].addr);
        assert_eq!(n.port_range, cluster.nodes[&id].port_range);
    }
    // The databases are what was created, waiting for recovery.
    let mut expected = cluster.databases.clone();
    for db in expected.values_mut() {
        db.state = DbState::PendingRecovery;
        for s in &mut db.shards {
            s.pid = None;
        }
    }
    assert_eq!(c.databases, expected);
    // Largest id on disk is shard 9 (db-6/shard-9); the backups say 9 as well.
    assert_eq!(rebuilt.alloc.largest.as_ref().unwrap().id, 9);
    assert_eq!(c.alloc_id, 9 + ALLOC_MARGIN);
}

#[test]
fn identities_found_below_a_mount_and_node_uid_chosen() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let rebuilt = from_identities(
        &FromIdentities {
            cluster_id: CID,
            recovery_paths: vec![tmp.path().to_path_buf()],
            node_uid: Some(2),
            name: Some("again".into()),
            addr: Some("10.0.0.2".parse().unwrap()),
            alloc_id: Some(500),
            ..Default::default()
        },
        &tmp.path().join("home"),
    )
    .unwrap();
    let c = &rebuilt.cluster;
    assert_eq!(
        (c.name.as_str(), c.local_node, c.alloc_id),
        ("again", 2, 500)
    );
    assert_eq!(c.nodes[&2].addr, "10.0.0.2");
    assert_eq!(c.nodes[&1].addr, "127.0.0.1");
    assert_eq!(c.databases.len(), 2);
    let e = from_identities(
        &FromIdentities {
            cluster_id: CID,
            recovery_paths: vec![tmp.path().to_path_buf()],
            node_uid: Some(3),
            ..Default::default()
        },
        &tmp.path().join("home"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "node_uid 3 is not a node of the identity files found (nodes: `node:1`, `node:2`)"
        ),
        "{e}"
    );
}

#[test]
fn foreign_files_are_skipped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let mut other = sample(&tmp.path().join("other"));
    other.cluster_id = 77;
    write_disks(&other);
    let rebuilt = from_ids(
        vec![tmp.path().join("n1"), tmp.path().join("other/n1")],
        &tmp.path().join("home"),
    )
    .unwrap();
    let foreign = tmp
        .path()
        .join("other/n1/redis/db-3/shard-4")
        .join(SHARD_IDENTITY_FILE);
    assert!(
        rebuilt.problems.iter().any(|p| p
            == &format!(
                "`{}` belongs to cluster_id 77, not {CID}: skipped",
                foreign.display()
            )),
        "{:?}",
        rebuilt.problems
    );
    // Only another cluster's files: refused, saying whose they are.
    let e = from_ids(vec![tmp.path().join("other")], &tmp.path().join("home"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "no shard identity file of cluster_id {CID} found under"
        )) && e.ends_with("found files of cluster_id 77 only"),
        "{e}"
    );
}

#[test]
fn incomplete_databases_are_left_out_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    // Only node:1's disk survived: `orders` lost its middle master, `cache` its replica.
    let rebuilt = from_ids(vec![tmp.path().join("n1")], &tmp.path().join("home")).unwrap();
    let c = &rebuilt.cluster;
    assert_eq!(c.databases.keys().copied().collect::<Vec<_>>(), vec![3]);
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains(
            "`db:6` `orders` left out: 2 of its 3 master shards found; its files are untouched"
        ),
        "{problems}"
    );
    assert!(
        problems.contains("`db:3` `cache`: no replica of master `redis:4` found"),
        "{problems}"
    );
    assert_eq!(c.nodes.keys().copied().collect::<Vec<_>>(), vec![1]);
    // The ids of the database left out are still avoided.
    assert_eq!(rebuilt.alloc.largest.unwrap().id, 9);
}

#[test]
fn slot_gaps_and_overlaps_are_found() {
    let ident = |shard_id, start, end| ShardIdentity {
        cluster_id: CID,
        cluster_name: "prod".into(),
        db_id: 1,
        shard_id,
        node_id: 1,
        role: Role::Master,
        master: None,
        slots: Some(SlotRange { start, end }),
        port: 1,
        db_port: 1,
        db: config("x", 2, false),
        node_addr: None,
        node_port_range: None,
    };
    let (a, b) = (ident(2, 0, 8000), ident(3, 8001, 16383));
    assert_eq!(identities::incomplete(2, &[&a, &b]), None);
    let (a, b) = (ident(2, 0, 8000), ident(3, 8002, 16383));
    assert_eq!(
        identities::incomplete(2, &[&a, &b]).unwrap(),
        "slots 8001-8001 have no master shard"
    );
    let (a, b) = (ident(2, 0, 8000), ident(3, 8000, 16383));
    assert_eq!(
        identities::incomplete(2, &[&a, &b]).unwrap(),
        "slots 8000-16383 are owned twice"
    );
    let (a, b) = (ident(2, 0, 8000), ident(3, 8001, 16000));
    assert_eq!(
        identities::incomplete(2, &[&a, &b]).unwrap(),
        "slots 16001-16383 have no master shard"
    );
}

#[test]
fn unreadable_identities_and_bad_paths_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let bad = tmp
        .path()
        .join("n1/redis/db-3/shard-4")
        .join(SHARD_IDENTITY_FILE);
    fs::write(&bad, "{").unwrap();
    fs::create_dir_all(tmp.path().join("n1/redis/db-20/shard-21")).unwrap();
    let rebuilt = from_ids(
        vec![tmp.path().join("n1"), tmp.path().join("n2")],
        &tmp.path().join("home"),
    )
    .unwrap();
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains(&format!("cannot read `{}`: EOF", bad.display())),
        "{problems}"
    );
    assert!(
        problems.contains("db-20/shard-21` has no `lazarus-shard.json`: left out"),
        "{problems}"
    );
    // `cache` lost its master's identity: 0 of 1 masters.
    assert!(
        problems.contains("`db:3` `cache` left out: 0 of its 1 master shards found"),
        "{problems}"
    );
    // The directory without an identity still counts for the allocator.
    assert_eq!(rebuilt.alloc.largest.unwrap().id, 21);

    let missing = tmp.path().join("nope");
    let e = from_ids(vec![missing.clone()], &tmp.path().join("home"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "recovery path `{}` cannot be used: ",
            missing.display()
        )),
        "{e}"
    );
}

#[test]
fn persistent_path_never_overlaps_a_recovery_path() {
    let tmp = tempfile::tempdir().unwrap();
    // The old nodes lived under the same home that is now being recovered into.
    let home = tmp.path().join("home");
    let cluster = sample(&home.join("nodes"));
    let mut moved = cluster.clone();
    for node in moved.nodes.values_mut() {
        node.persistent_path = home.join("nodes").join(node.id.to_string());
    }
    write_disks(&moved);
    let rebuilt = from_ids(vec![home.join("nodes")], &home).unwrap();
    let n1 = &rebuilt.cluster.nodes[&1];
    assert_eq!(n1.recovery_path, Some(home.join("nodes/1")));
    assert_eq!(n1.persistent_path, home.join("nodes/1-recovered"));
    assert!(rebuilt.problems.is_empty(), "{:?}", rebuilt.problems);
}

#[test]
fn recover_stores_into_an_empty_home_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let store = crate::ccs::Store::new(tmp.path().join("home"));
    let req = RecoverRequest::Backup(FromBackup {
        filename: backup_of(&cluster, 1),
        persistent_path: Some(tmp.path().join("new1")),
        ..Default::default()
    });
    let rebuilt = recover(&store, &req).unwrap();
    let stored = store.load().unwrap().unwrap();
    assert_eq!(stored, rebuilt.cluster);
    assert_eq!(stored.generation, 8);
    // Every node's backup is the recovered document.
    for node in stored.nodes.values() {
        let backup: Cluster =
            serde_json::from_slice(&fs::read(node.ccs_backup_dir().join("ccs.json")).unwrap())
                .unwrap();
        assert_eq!(backup, stored);
    }
    // The old backup of node:1, the file recovered from, is left as it was.
    let old: Cluster = serde_json::from_slice(&fs::read(backup_of(&cluster, 1)).unwrap()).unwrap();
    assert_eq!(old, cluster);

    let e = recover(&store, &req).unwrap_err().to_string();
    assert!(
        e.starts_with("a cluster already exists in") && e.contains("`prod`"),
        "{e}"
    );
    assert_eq!(store.load().unwrap().unwrap(), stored);
}

#[test]
fn recover_never_replaces_a_foreign_or_newer_node_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let store = crate::ccs::Store::new(tmp.path().join("home"));
    // node:1's new persistent path holds another cluster's node.
    let mut other = sample(&tmp.path().join("other"));
    other.cluster_id = 77;
    write_disks(&other);
    let req = RecoverRequest::Backup(FromBackup {
        filename: backup_of(&cluster, 1),
        persistent_path: Some(tmp.path().join("other/n1")),
        ..Default::default()
    });
    let e = recover(&store, &req).unwrap_err().to_string();
    assert!(
        e.ends_with("it holds the configuration of cluster_id 77"),
        "{e}"
    );
    assert!(store.load().unwrap().is_none());

    // Rebuilt from identity files, node:1 would store its backup where a backup of this
    // cluster already is (the home lost only its ccs.json).
    let target = tmp.path().join("home/nodes/1/ccs/ccs.json");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::write(&target, serde_json::to_vec(&cluster).unwrap()).unwrap();
    let req = RecoverRequest::Identities(FromIdentities {
        cluster_id: CID,
        recovery_paths: vec![tmp.path().join("n1"), tmp.path().join("n2")],
        ..Default::default()
    });
    let e = recover(&store, &req).unwrap_err().to_string();
    assert!(
        e.contains("newer backup of this cluster (generation 7, recovering 0): recover from it with `cluster recover filename"),
        "{e}"
    );
    assert!(store.load().unwrap().is_none());
    let kept: Cluster = serde_json::from_slice(&fs::read(&target).unwrap()).unwrap();
    assert_eq!(kept, cluster);
}

#[test]
fn shards_missing_from_the_backup_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = sample(tmp.path());
    write_disks(&cluster);
    // The backup predates `orders`.
    let orders = cluster.databases.remove(&6).unwrap();
    let file = tmp.path().join("old.json");
    fs::write(&file, serde_json::to_vec(&cluster).unwrap()).unwrap();
    let rebuilt = from_backup(&FromBackup {
        filename: file,
        ..Default::default()
    })
    .unwrap();
    let problems = rebuilt.problems.join("\n");
    for s in &orders.shards {
        assert!(
            problems.contains(&format!(
                "holds shard `redis:{}` of `db:6` `orders`, which the backup does not list",
                s.id
            )),
            "{problems}"
        );
    }
    assert_eq!(rebuilt.alloc.largest.unwrap().id, 9);
}

#[test]
fn in_place_persistent_paths_move_aside_unless_given() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    // A previous attempt already used `n1-recovered`.
    fs::create_dir_all(tmp.path().join("n1-recovered/redis")).unwrap();
    let rebuilt = from_backup(&FromBackup {
        filename: backup_of(&cluster, 1),
        ..Default::default()
    })
    .unwrap();
    let n1 = &rebuilt.cluster.nodes[&1];
    assert_eq!(n1.persistent_path, tmp.path().join("n1-recovered-2"));
    assert_eq!(n1.recovery_path, Some(tmp.path().join("n1")));
    // Given explicitly as the old path: kept, and the operator warned.
    let rebuilt = from_backup(&FromBackup {
        filename: backup_of(&cluster, 1),
        persistent_path: Some(tmp.path().join("n1")),
        ..Default::default()
    })
    .unwrap();
    let n1 = &rebuilt.cluster.nodes[&1];
    assert_eq!(
        (n1.persistent_path.clone(), n1.recovery_path.clone()),
        (tmp.path().join("n1"), None)
    );
    assert!(
        rebuilt
            .problems
            .iter()
            .any(|p| p.contains("`node:1` persistent path")
                && p.contains("still holds the old shard data")),
        "{:?}",
        rebuilt.problems
    );
    // A recorded recovery path that exists is kept, and the persistent path with it.
    let mut with_rp = cluster.clone();
    fs::create_dir_all(tmp.path().join("copy2")).unwrap();
    with_rp.nodes.get_mut(&2).unwrap().recovery_path = Some(tmp.path().join("copy2"));
    let file = tmp.path().join("rp.json");
    fs::write(&file, serde_json::to_vec(&with_rp).unwrap()).unwrap();
    let rebuilt = from_backup(&FromBackup {
        filename: file,
        ..Default::default()
    })
    .unwrap();
    let n2 = &rebuilt.cluster.nodes[&2];
    assert_eq!(
        (n2.persistent_path.clone(), n2.recovery_path.clone()),
        (tmp.path().join("n2"), Some(tmp.path().join("copy2")))
    );
}

#[test]
fn identities_without_node_records_get_loopback_and_a_covering_range() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = sample(tmp.path());
    // Ports outside the default range, in files written before nodes were recorded.
    cluster.databases.get_mut(&3).unwrap().shards[1].port = 29000;
    write_disks(&cluster);
    for db in cluster.databases.values() {
        for s in &db.shards {
            let file = cluster.nodes[&s.node]
                .shard_dir(db.id, s.id)
                .join(SHARD_IDENTITY_FILE);
            let mut doc: serde_json::Value =
                serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
            let obj = doc.as_object_mut().unwrap();
            obj.remove("node_addr");
            obj.remove("node_port_range");
            fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        }
    }
    let rebuilt = from_ids(vec![tmp.path().to_path_buf()], &tmp.path().join("home")).unwrap();
    let n2 = &rebuilt.cluster.nodes[&2];
    assert_eq!(n2.addr, "127.0.0.1");
    assert_eq!(
        n2.port_range,
        PortRange {
            lo: 29000,
            hi: 30999
        }
    );
    assert_eq!(rebuilt.cluster.nodes[&1].port_range, PortRange::DEFAULT);
}

#[test]
fn unreadable_directories_are_reported() {
    // Root reads everything: the check only means something for other users.
    if unsafe { libc::geteuid() } == 0 {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let locked = tmp.path().join("n2/redis/db-6");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let rebuilt = from_ids(vec![tmp.path().to_path_buf()], &tmp.path().join("home"));
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    let problems = rebuilt.unwrap().problems.join("\n");
    assert!(
        problems.contains(&format!("cannot read `{}`", locked.display())),
        "{problems}"
    );
}
