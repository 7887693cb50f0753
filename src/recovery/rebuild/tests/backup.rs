//! `cluster recover filename`: the backup form.

use std::fs;
use std::path::Path;

use super::*;

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
    assert!(e.contains(".node: node:2 is not among the nodes"), "{e}");
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
    // A recorded recovery path (an earlier recovery's) is never carried over: the node
    // recovers from its old persistent path, into a fresh sibling.
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
        (tmp.path().join("n2-recovered"), Some(tmp.path().join("n2")))
    );
    assert!(
        rebuilt.notes.iter().any(|n| n.contains(&format!(
            "recovery path `{}` (an earlier recovery's) is not carried over",
            tmp.path().join("copy2").display()
        ))),
        "{:?}",
        rebuilt.notes
    );
}

#[test]
fn a_newer_backup_in_a_recovered_sibling_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = sample(tmp.path());
    write_disks(&cluster);
    // node:1 was recovered before, into `n1-recovered`, and lived on there.
    let later = tmp.path().join("n1-recovered");
    fs::create_dir_all(later.join("redis")).unwrap();
    fs::create_dir_all(later.join("ccs")).unwrap();
    cluster.generation = 11;
    fs::write(
        later.join("ccs/ccs.json"),
        serde_json::to_vec(&cluster).unwrap(),
    )
    .unwrap();
    let e = from_backup(&FromBackup {
        filename: backup_of(&cluster, 1),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(&e, RebuildError::NewerBackup { newer, newer_generation: 11, .. } if *newer == later.join("ccs/ccs.json")),
        "{e}"
    );
    assert_eq!(
        super::super::backup::recovered_family(&tmp.path().join("n1-recovered")),
        vec![tmp.path().join("n1"), later.clone()]
    );
}

/// The backup an earlier recovery of this incident wrote under the `-recovered` paths,
/// before `recover all`: its databases still pending recovery read the recovery paths it
/// recorded, which are kept; once none is pending, an earlier recovery's path is not.
#[test]
fn a_first_recoverys_backup_keeps_the_recovery_paths_of_databases_still_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let mut first = cluster.clone();
    first.generation = 8;
    for node in first.nodes.values_mut() {
        node.recovery_path = Some(node.persistent_path.clone());
        node.persistent_path = tmp.path().join(format!("n{}-recovered", node.id));
    }
    first.databases.get_mut(&3).unwrap().state = DbState::PendingRecovery;
    let write = |c: &Cluster| {
        fs::create_dir_all(c.nodes[&1].ccs_backup_dir()).unwrap();
        fs::write(backup_of(c, 1), serde_json::to_vec(c).unwrap()).unwrap();
    };
    write(&first);
    let rebuilt = from_backup(&FromBackup {
        filename: backup_of(&first, 1),
        ..Default::default()
    })
    .unwrap();
    for id in [1, 2] {
        let node = &rebuilt.cluster.nodes[&id];
        assert_eq!(
            (node.persistent_path.clone(), node.recovery_path.clone()),
            (
                tmp.path().join(format!("n{id}-recovered")),
                Some(tmp.path().join(format!("n{id}")))
            )
        );
    }
    assert!(
        rebuilt.notes.iter().any(|n| n
            == &format!(
                "`node:1` recovery path `{}` kept from the backup: db:3 `cache` still pending recovery there, whose files it holds",
                tmp.path().join("n1").display()
            )),
        "{:?}",
        rebuilt.notes
    );

    // node:1 holds shard data since (a `recover all` that brought some back): that is
    // recovered from first, and the note says how to reach the pending one's files.
    fs::create_dir_all(tmp.path().join("n1-recovered/redis")).unwrap();
    let rebuilt = from_backup(&FromBackup {
        filename: backup_of(&first, 1),
        ..Default::default()
    })
    .unwrap();
    let n1 = &rebuilt.cluster.nodes[&1];
    assert_eq!(n1.recovery_path, Some(tmp.path().join("n1-recovered")));
    let old = tmp.path().join("n1");
    assert!(
        rebuilt.notes.iter().any(|n| n
            == &format!(
                "`node:1` recovery path `{}` (an earlier recovery's) is not carried over: its persistent path holds newer shard data, recovered from first; db:3 `cache` (pending recovery in the backup) had its files there: once the rest is back, `node 1 recovery_path set {}`, then `recover all`",
                old.display(),
                old.display()
            )),
        "{:?}",
        rebuilt.notes
    );
    fs::remove_dir_all(tmp.path().join("n1-recovered/redis")).unwrap();

    // Every database recovered since: the paths were that recovery's.
    first.databases.get_mut(&3).unwrap().state = DbState::Active;
    write(&first);
    let rebuilt = from_backup(&FromBackup {
        filename: backup_of(&first, 1),
        ..Default::default()
    })
    .unwrap();
    assert!(rebuilt
        .cluster
        .nodes
        .values()
        .all(|n| n.recovery_path.is_none()));
    assert!(
        rebuilt
            .notes
            .iter()
            .any(|n| n.contains("(an earlier recovery's) is not carried over")),
        "{:?}",
        rebuilt.notes
    );
}
