//! `cluster recover cluster_id`: the identity-file form.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

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
        // Beside its recovery path, outside the home (issue 9 item 15).
        assert_eq!(
            n.persistent_path,
            tmp.path().join(format!("n{id}-recovered"))
        );
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
    // What is missing is named: the slots, and the masters that are known.
    let line = "`db:6` `orders` cannot be rebuilt: slots 5461-10922 have no master shard (masters known: `redis:7` (slots 0-5460), `redis:9` (slots 10923-16383)); its files are untouched";
    assert!(problems.contains(line), "{problems}");
    assert_eq!(rebuilt.left_out.len(), 1);
    assert_eq!(rebuilt.left_out[0].line(), line);
    assert!(rebuilt.lost.is_empty());
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
        creating: false,
        deleted: false,
    };
    let (a, b) = (ident(2, 0, 8000), ident(3, 8001, 16383));
    assert_eq!(databases::incomplete(2, &[&a, &b]), None);
    let (a, b) = (ident(2, 0, 8000), ident(3, 8002, 16383));
    assert_eq!(
        databases::incomplete(2, &[&a, &b]).unwrap(),
        "slots 8001-8001 have no master shard"
    );
    let (a, b) = (ident(2, 0, 8000), ident(3, 8000, 16383));
    assert_eq!(
        databases::incomplete(2, &[&a, &b]).unwrap(),
        "slots 8000-16383 are owned twice"
    );
    let (a, b) = (ident(2, 0, 8000), ident(3, 8001, 16000));
    assert_eq!(
        databases::incomplete(2, &[&a, &b]).unwrap(),
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
    // Its server's configuration, as Lazarus wrote it, names its port.
    fs::write(
        bad.with_file_name("redis.conf"),
        "# written by lazarus for db:3 redis:4\nbind \"127.0.0.1\"\nport 30001\n",
    )
    .unwrap();
    let rebuilt = from_ids(
        vec![tmp.path().join("n1"), tmp.path().join("n2")],
        &tmp.path().join("home"),
    )
    .unwrap();
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains("db-20/shard-21` has no `lazarus-shard.json`: left out"),
        "{problems}"
    );
    // `cache` lost its master's identity, not its directory: its replica's identity names
    // it, and it is rebuilt there, on node:1, at the port its configuration names (the
    // endpoint's), where `recover` looks at its own files beside its replica's.
    assert!(
        problems.contains(&format!(
            "`db:3` `cache`: the identity file of master `redis:4`, `{}`, cannot be read (EOF while parsing an object at line 1 column 1); rebuilt from the identity of its replica `redis:5` in its own directory, on `node:1` port 30001: `recover` chooses among its own files and its replicas' as for any master",
            bad.display()
        )),
        "{problems}"
    );
    assert!(!problems.contains("left out; "), "{problems}");
    assert!(!problems.contains("no replica of master"), "{problems}");
    assert!(rebuilt.left_out.is_empty() && rebuilt.lost.is_empty());
    let shape = |rebuilt: &Rebuilt| {
        let cache = &rebuilt.cluster.databases[&3];
        let shards: Vec<(Id, Role, Id, Option<Id>, u16)> = cache
            .shards
            .iter()
            .map(|s| (s.id, s.role, s.node, s.master, s.port))
            .collect();
        (cache.port, shards)
    };
    assert_eq!(
        shape(&rebuilt),
        (
            30001,
            vec![
                (4, Role::Master, 1, None, 30001),
                (5, Role::Replica, 2, Some(4), 30002)
            ]
        )
    );
    // The directory without an identity still counts for the allocator.
    assert_eq!(rebuilt.alloc.largest.unwrap().id, 21);

    // Its whole directory gone with its disk: rebuilt from its replica's identity on the
    // replica's node (node:2, 127.0.0.2: its first free port), the endpoint with it.
    fs::remove_dir_all(bad.parent().unwrap()).unwrap();
    let rebuilt = from_ids(
        vec![tmp.path().join("n1"), tmp.path().join("n2")],
        &tmp.path().join("home"),
    )
    .unwrap();
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains("`db:3` `cache`: master `redis:4` was lost with its disk; rebuilt from the identity of its replica `redis:5`, now on `node:2` port 30003; `recover` loads the replica's files; the endpoint moves from port 30001 to 30003; the endpoint is now `127.0.0.2:30003`, on the address of `node:2`"),
        "{problems}"
    );
    assert_eq!(
        shape(&rebuilt),
        (
            30003,
            vec![
                (4, Role::Master, 2, None, 30003),
                (5, Role::Replica, 2, Some(4), 30002)
            ]
        )
    );

    // A damaged identity of no lost master is only reported.
    fs::write(
        tmp.path()
            .join("n1/redis/db-6/shard-7")
            .join(SHARD_IDENTITY_FILE),
        "{\"cluster_id\"",
    )
    .unwrap();
    let rebuilt = from_ids(
        vec![tmp.path().join("n1"), tmp.path().join("n2")],
        &tmp.path().join("home"),
    )
    .unwrap();
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains(&format!(
            "cannot read `{}`: EOF while parsing",
            tmp.path()
                .join("n1/redis/db-6/shard-7")
                .join(SHARD_IDENTITY_FILE)
                .display()
        )) && problems.contains("; left out"),
        "{problems}"
    );

    let missing = tmp.path().join("nope");
    let e = from_ids(vec![missing.clone()], &tmp.path().join("home"))
        .unwrap_err()
        .to_string();
    // The rule of `node <id> recovery_path set`, worded the same.
    assert!(
        e.starts_with(&format!(
            "recovery path `{}` does not exist",
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
    // The block of 1000 holding its ports (30001-30005): the default range of the
    // Lazarus that wrote such files.
    assert_eq!(
        rebuilt.cluster.nodes[&1].port_range,
        PortRange {
            lo: 30000,
            hi: 30999
        }
    );
}

/// A database created with a `port` outside its node's range (45000 on node:1, whose
/// range is 30000-30999): the rebuild gives the node back the range it had, and the
/// shard its port outside it, as at create. The same when the master's identity is
/// damaged and its port comes from its `redis.conf`.
#[test]
fn a_shard_port_outside_its_nodes_range_leaves_the_range_as_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = sample(tmp.path());
    cluster.databases.insert(
        11,
        Database {
            id: 11,
            config: config("apart", 1, true),
            port: 45000,
            state: DbState::Active,
            shards: vec![
                shard(12, 1, Role::Master, None, None, 45000),
                shard(13, 2, Role::Replica, Some(12), None, 30050),
            ],
        },
    );
    write_disks(&cluster);
    let paths = vec![tmp.path().join("n1"), tmp.path().join("n2")];
    let home = tmp.path().join("home");
    let rebuilt = from_ids(paths.clone(), &home).unwrap();
    for id in [1, 2] {
        assert_eq!(
            rebuilt.cluster.nodes[&id].port_range, cluster.nodes[&id].port_range,
            "node:{id}"
        );
    }
    let apart = |rebuilt: &Rebuilt| {
        let db = &rebuilt.cluster.databases[&11];
        let m = db.masters().next().unwrap();
        (db.port, m.id, m.node, m.port)
    };
    assert_eq!(apart(&rebuilt), (45000, 12, 1, 45000));

    let identity = tmp.path().join("n1/redis/db-11/shard-12");
    fs::write(identity.join(SHARD_IDENTITY_FILE), "{").unwrap();
    fs::write(
        identity.join("redis.conf"),
        "# written by lazarus for db:11 redis:12\nbind \"127.0.0.1\"\nport 45000\n",
    )
    .unwrap();
    let rebuilt = from_ids(paths, &home).unwrap();
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains("in its own directory, on `node:1` port 45000"),
        "{problems}"
    );
    assert_eq!(apart(&rebuilt), (45000, 12, 1, 45000));
    assert_eq!(
        rebuilt.cluster.nodes[&1].port_range,
        cluster.nodes[&1].port_range
    );
}

/// A lost master rebuilt on its replica's node, another address, on the very port it
/// had (30003, node:2's first free one): its endpoint stays on that port, and no line
/// says it moves from 30003 to 30003; but the endpoint's host, the first master's node's
/// address, is now node:2's, and the line names the endpoint as it now is (it said
/// nothing of it).
#[test]
fn a_lost_master_rebuilt_on_its_own_port_on_another_address_names_the_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = sample(tmp.path());
    cluster.databases.remove(&6);
    let cache = cluster.databases.get_mut(&3).unwrap();
    cache.port = 30003;
    cache.shards[0].port = 30003;
    write_disks(&cluster);
    fs::remove_dir_all(tmp.path().join("n1")).unwrap();
    let rebuilt = from_ids(vec![tmp.path().join("n2")], &tmp.path().join("home")).unwrap();
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains("`db:3` `cache`: master `redis:4` was lost with its disk; rebuilt from the identity of its replica `redis:5`, now on `node:2` port 30003; `recover` loads the replica's files; the endpoint is now `127.0.0.2:30003`, on the address of `node:2`"),
        "{problems}"
    );
    assert!(!problems.contains("endpoint moves"), "{problems}");
    let cache = &rebuilt.cluster.databases[&3];
    assert_eq!((cache.port, cache.shards[0].port), (30003, 30003));
    assert_eq!(
        crate::db::endpoint(&rebuilt.cluster, cache),
        "127.0.0.2:30003"
    );
}

/// A lost master rebuilt on the node of its only replica: its line says that one node
/// now holds every copy of its data, and the rebuilt database names it unprotected
/// (what `status` reports).
#[test]
fn a_lost_master_rebuilt_beside_its_only_replica_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    fs::remove_dir_all(tmp.path().join("n1")).unwrap();
    let rebuilt = from_ids(vec![tmp.path().join("n2")], &tmp.path().join("home")).unwrap();
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains("`db:3` `cache`: master `redis:4` was lost with its disk; rebuilt from the identity of its replica `redis:5`, now on `node:2` port 30003; `recover` loads the replica's files; the endpoint moves from port 30001 to 30003; the endpoint is now `127.0.0.2:30003`, on the address of `node:2`; the master runs on the node of its replica `redis:5`: no copy of its data is on another node, so losing `node:2` loses it; `status` reports it (`NO REPLICA ELSEWHERE`) until a replica runs elsewhere"),
        "{problems}"
    );
    assert_eq!(
        rebuilt.cluster.databases[&3].unprotected_masters(),
        vec![crate::ccs::UnprotectedMaster {
            shard: 4,
            node: 2,
            replicas_beside: vec![5],
        }]
    );
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

#[test]
fn a_database_whose_create_never_committed_is_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    // `cache` (db:3) was being created when everything stopped: its shards are marked.
    for s in &cluster.databases[&3].shards {
        let file = cluster.nodes[&s.node]
            .shard_dir(3, s.id)
            .join(SHARD_IDENTITY_FILE);
        let mut identity: ShardIdentity =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        identity.creating = true;
        std::fs::write(&file, serde_json::to_vec(&identity).unwrap()).unwrap();
    }
    let roots = vec![tmp.path().join("n1"), tmp.path().join("n2")];
    let rebuilt = from_ids(roots, &tmp.path().join("home")).unwrap();
    assert_eq!(
        rebuilt
            .cluster
            .databases
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![6]
    );
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains("is marked `creating`: `db:3` `cache` was never committed; left out"),
        "{problems}"
    );
    // Its ids are never handed out again.
    assert_eq!(rebuilt.alloc.largest.unwrap().id, 9);
}

/// Sets a file's modification time to `secs` after the epoch.
fn touch(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Two lives of the nodes on one disk: the disks an earlier recovery recovered from
/// (`n1`, `n2`) beside the `-recovered` directories it made, which the cluster ran on
/// until this disaster. Each shard is rebuilt from its later life, and each node's
/// recovery path is where that is, whichever path is found first.
#[test]
fn the_later_life_of_a_shard_found_twice_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    // The later life: `cache` grew a memory limit since.
    two_lives(tmp.path(), |new| {
        new.databases.get_mut(&3).unwrap().config.memory = Some(1 << 30);
    });
    let rebuilt = from_ids(vec![tmp.path().to_path_buf()], &tmp.path().join("home")).unwrap();
    let c = &rebuilt.cluster;
    for id in [1, 2] {
        assert_eq!(
            c.nodes[&id].recovery_path,
            Some(tmp.path().join(format!("n{id}-recovered"))),
            "{:?}",
            rebuilt.problems
        );
    }
    assert_eq!(c.databases[&3].config.memory, Some(1 << 30));
    let problems = rebuilt.problems.join("\n");
    let used = tmp.path().join("n1-recovered/redis/db-3/shard-4");
    assert!(
        problems.contains(&format!(
            "shard `redis:4` found twice, in `{}` and `{}`: the one written last, `{}`, is used",
            tmp.path().join("n1/redis/db-3/shard-4").display(),
            used.display(),
            used.display()
        )),
        "{problems}"
    );
    assert!(!problems.contains("has shards under both"), "{problems}");
}

/// A node that lived in `n1-recovered` (a first recovery's) recovers into `n1-recovered-2`
/// beside it: a new life is named from the family's base, never `n1-recovered-recovered`.
#[test]
fn a_second_recovery_numbers_the_new_life() {
    let tmp = tempfile::tempdir().unwrap();
    two_lives(tmp.path(), |_| {});
    let rebuilt = from_ids(vec![tmp.path().to_path_buf()], &tmp.path().join("home")).unwrap();
    for id in [1, 2] {
        let node = &rebuilt.cluster.nodes[&id];
        assert_eq!(
            node.recovery_path,
            Some(tmp.path().join(format!("n{id}-recovered")))
        );
        assert_eq!(
            node.persistent_path,
            tmp.path().join(format!("n{id}-recovered-2")),
            "{:?}",
            rebuilt.notes
        );
    }
}

/// The later life's copy of a master, its identity file cut short by the crash, beside
/// the earlier life's readable one: the master is rebuilt in the later directory (from
/// the earlier identity), its node's recovery path the later life, so `recover` looks at
/// the later files.
#[test]
fn a_later_copy_with_a_damaged_identity_is_still_the_later_life() {
    let tmp = tempfile::tempdir().unwrap();
    two_lives(tmp.path(), |_| {});
    let later = tmp.path().join("n1-recovered/redis/db-3/shard-4");
    let file = later.join(SHARD_IDENTITY_FILE);
    let text = fs::read(&file).unwrap();
    fs::write(&file, &text[..text.len() / 2]).unwrap();
    touch(&file, 2_000_000);
    let rebuilt = from_ids(vec![tmp.path().to_path_buf()], &tmp.path().join("home")).unwrap();
    assert_eq!(
        rebuilt.cluster.nodes[&1].recovery_path,
        Some(tmp.path().join("n1-recovered")),
        "{:?}",
        rebuilt.problems
    );
    let cache = &rebuilt.cluster.databases[&3];
    assert_eq!(cache.masters().next().unwrap().node, 1);
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains(&format!(
            "shard `redis:4` found twice, in `{}` and `{}`: the one written last, `{}`, is used, but its identity file cannot be read (EOF while parsing",
            tmp.path().join("n1/redis/db-3/shard-4").display(),
            later.display(),
            later.display()
        )) && problems.contains("rebuilt from the identity of the other"),
        "{problems}"
    );
    assert!(!problems.contains("; left out"), "{problems}");
    assert!(!problems.contains("has shards under both"), "{problems}");
}

/// Ids found in an earlier life only (a directory no node's recovery path is) were handed
/// out all the same: the allocator starts above them, and the largest is named.
#[test]
fn ids_in_an_earlier_life_count_for_the_allocator() {
    let tmp = tempfile::tempdir().unwrap();
    two_lives(tmp.path(), |_| {});
    fs::create_dir_all(tmp.path().join("n1/redis/db-50/shard-51")).unwrap();
    let rebuilt = from_ids(vec![tmp.path().to_path_buf()], &tmp.path().join("home")).unwrap();
    assert_eq!(
        rebuilt.cluster.nodes[&1].recovery_path,
        Some(tmp.path().join("n1-recovered"))
    );
    let largest = rebuilt.alloc.largest.unwrap();
    assert_eq!(
        (largest.id, largest.path),
        (51, tmp.path().join("n1/redis/db-50/shard-51"))
    );
    assert_eq!(rebuilt.cluster.alloc_id, 51 + ALLOC_MARGIN);
}

/// A database deleted in the later life (its identity files marked) does not come back
/// from the earlier life's copies, unmarked as they were.
#[test]
fn a_database_deleted_in_the_later_life_stays_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let new = two_lives(tmp.path(), |_| {});
    for s in &new.databases[&3].shards {
        let file = new.nodes[&s.node]
            .shard_dir(3, s.id)
            .join(SHARD_IDENTITY_FILE);
        let mut identity: ShardIdentity =
            serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        identity.deleted = true;
        fs::write(&file, serde_json::to_vec(&identity).unwrap()).unwrap();
        touch(&file, 2_000_000);
    }
    let rebuilt = from_ids(vec![tmp.path().to_path_buf()], &tmp.path().join("home")).unwrap();
    assert_eq!(
        rebuilt
            .cluster
            .databases
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![6],
        "{:?}",
        rebuilt.problems
    );
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains("is marked `deleted`: `db:3` `cache` was deleted; left out"),
        "{problems}"
    );
}

/// A database deleted in the later life with `delete db` itself, purged or not: the
/// tombstone it leaves on each of its nodes (beside where its directory was) keeps the
/// earlier life's copies of its shards, unmarked, from bringing it back; its ids stay
/// handed out.
#[test]
fn a_database_deleted_or_purged_in_the_later_life_stays_deleted() {
    for purge in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let mut new = two_lives(tmp.path(), |_| {});
        let rt = tokio::runtime::Runtime::new().unwrap();
        let outcome = rt
            .block_on(crate::db::delete_db(&mut new, 3, purge))
            .unwrap();
        assert_eq!(outcome.purged.is_empty(), !purge);
        let tombstone =
            crate::server::shard_dir::tombstone_under(&new.nodes[&1].persistent_path, 3);
        assert!(tombstone.is_file(), "purge {purge}");
        // Purged: nothing of `cache` is left in the later life; kept: its files are marked
        // too, but as old as the earlier life's (only the tombstone decides).
        for (node, shard) in [(1, 4), (2, 5)] {
            let later = new.nodes[&node].shard_dir(3, shard);
            assert_eq!(later.is_dir(), !purge);
            if !purge {
                touch(&later.join(SHARD_IDENTITY_FILE), 500_000);
                touch(&later.join("dump.rdb"), 500_000);
            }
        }
        let rebuilt = from_ids(vec![tmp.path().to_path_buf()], &tmp.path().join("home")).unwrap();
        assert_eq!(
            rebuilt
                .cluster
                .databases
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![6],
            "purge {purge}: {:?}",
            rebuilt.problems
        );
        let problems = rebuilt.problems.join("\n");
        assert!(
            problems.contains(&format!(
                "`db:3` `cache` was deleted (its tombstone `{}`): left out, its files are untouched",
                tombstone.display()
            )),
            "{problems}"
        );
        // The earlier life's copies are still there, untouched.
        assert!(tmp.path().join("n1/redis/db-3/shard-4/dump.rdb").is_file());
    }
}

/// [`sample`] written twice on `root`: an earlier life under `n1`, `n2` and a later one
/// (changed by `later`) under `n1-recovered`, `n2-recovered`, every file of the earlier
/// life older; no CCS backup. Returns the later life.
fn two_lives(root: &Path, later: impl FnOnce(&mut Cluster)) -> Cluster {
    let old = sample(root);
    write_disks(&old);
    let mut new = sample(root);
    for n in new.nodes.values_mut() {
        let name = format!("n{}-recovered", n.id);
        n.persistent_path = root.join(name);
    }
    later(&mut new);
    write_disks(&new);
    for n in [&old, &new] {
        for node in n.nodes.values() {
            fs::remove_dir_all(node.ccs_backup_dir()).unwrap();
        }
    }
    // The old life's files are older, whatever the order they are found in.
    for (cluster, secs) in [(&old, 1_000_000), (&new, 2_000_000)] {
        for db in cluster.databases.values() {
            for s in &db.shards {
                let dir = cluster.nodes[&s.node].shard_dir(db.id, s.id);
                fs::write(dir.join("dump.rdb"), b"x").unwrap();
                touch(&dir.join("dump.rdb"), secs);
                touch(&dir.join(SHARD_IDENTITY_FILE), secs);
            }
        }
    }
    new
}

/// A replica naming a master that is not found, while the masters found hold every slot
/// (its identity older than a change of masters), stands in for nothing: the database is
/// rebuilt from its masters, and the replica reported.
#[test]
fn a_replica_naming_an_unknown_master_of_held_slots_is_only_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = sample(tmp.path());
    let s = |start, end| Some(SlotRange { start, end });
    cluster.databases.get_mut(&6).unwrap().shards.push(shard(
        11,
        2,
        Role::Replica,
        Some(99),
        s(0, 5460),
        30010,
    ));
    write_disks(&cluster);
    let rebuilt = from_ids(
        vec![tmp.path().join("n1"), tmp.path().join("n2")],
        &tmp.path().join("home"),
    )
    .unwrap();
    assert!(rebuilt.lost.is_empty() && rebuilt.left_out.is_empty());
    let orders = &rebuilt.cluster.databases[&6];
    assert_eq!(orders.masters().count(), 3);
    let problems = rebuilt.problems.join("\n");
    assert!(
        problems.contains("`db:6` `orders`: replica `redis:11` follows no master shard found"),
        "{problems}"
    );
}

/// A recovery path into a node's `redis/` (the directory itself, or a database's) finds
/// no node there: the error names the node directory to give instead.
#[test]
fn a_path_inside_a_nodes_redis_names_the_node_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let e = from_ids(
        vec![
            tmp.path().join("n1/redis"),
            tmp.path().join("n2/redis/db-3"),
        ],
        &tmp.path().join("home"),
    )
    .unwrap_err()
    .to_string();
    for n in ["n1/redis", "n2/redis/db-3"] {
        let node = n.split('/').next().unwrap();
        assert!(
            e.contains(&format!(
                "`{}` is a node's `redis/` directory or lies inside one: give `{}`, the node directory holding it",
                tmp.path().join(n).display(),
                tmp.path().join(node).display()
            )),
            "{e}"
        );
    }
}
