//! Storing the rebuilt configuration: an empty home, untouchable node backups.

use std::fs;

use super::*;

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
    let rebuilt = recover(&store, &req, None).unwrap();
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

    let e = recover(&store, &req, None).unwrap_err().to_string();
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
    let e = recover(&store, &req, None).unwrap_err().to_string();
    assert!(
        e.ends_with("it holds the configuration of cluster_id 77"),
        "{e}"
    );
    assert!(store.load().unwrap().is_none());

    // Rebuilt from identity files, node:1 would store its backup where a backup of this
    // cluster already is (the home lost only its ccs.json).
    let target = tmp.path().join("n1-recovered/ccs/ccs.json");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::write(&target, serde_json::to_vec(&cluster).unwrap()).unwrap();
    let req = RecoverRequest::Identities(FromIdentities {
        cluster_id: CID,
        recovery_paths: vec![tmp.path().join("n1"), tmp.path().join("n2")],
        ..Default::default()
    });
    let e = recover(&store, &req, None).unwrap_err().to_string();
    assert!(
        e.contains("newer backup of this cluster (generation 7, recovering 0): recover from it with `cluster recover filename"),
        "{e}"
    );
    assert!(store.load().unwrap().is_none());
    let kept: Cluster = serde_json::from_slice(&fs::read(&target).unwrap()).unwrap();
    assert_eq!(kept, cluster);
}

#[test]
fn recover_refuses_a_persistent_path_that_cannot_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    let store = crate::ccs::Store::new(tmp.path().join("home"));
    let file = tmp.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let req = RecoverRequest::Backup(FromBackup {
        filename: backup_of(&cluster, 1),
        persistent_path: Some(file.join("under")),
        ..Default::default()
    });
    let e = recover(&store, &req, None).unwrap_err().to_string();
    assert!(
        e.contains("is not a usable path: cannot create it for `node:1`"),
        "{e}"
    );
    assert!(store.load().unwrap().is_none());
}

/// The same disks rebuilt twice (the first home lost, or the command run again into a new
/// home): the node backups the first rebuild stored, unchanged since, are this same
/// configuration; the second stores it again, the same but for a generation above, and
/// says so. Once the first home changed it, it differs and is never replaced.
#[test]
fn a_second_rebuild_of_the_same_disks_stores_the_same_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = sample(tmp.path());
    write_disks(&cluster);
    for node in cluster.nodes.values() {
        fs::remove_dir_all(node.ccs_backup_dir()).unwrap();
    }
    let req = RecoverRequest::Identities(FromIdentities {
        cluster_id: CID,
        recovery_paths: vec![tmp.path().join("n1"), tmp.path().join("n2")],
        ..Default::default()
    });
    let first_store = crate::ccs::Store::new(tmp.path().join("home"));
    let first = recover(&first_store, &req, None).unwrap().cluster;
    assert_eq!(first.generation, 1);

    let second_store = crate::ccs::Store::new(tmp.path().join("home2"));
    let second = recover(&second_store, &req, None).unwrap();
    assert_eq!(
        Cluster {
            generation: 1,
            ..second.cluster.clone()
        },
        first,
        "the same configuration: {:?}",
        second.notes
    );
    assert_eq!(second.cluster.generation, 2);
    assert_eq!(second.alloc.alloc_id, first.alloc_id);
    let target = tmp.path().join("n1-recovered/ccs/ccs.json");
    assert!(
        second.notes.iter().any(|n| n
            == &format!(
                "`{}` holds this same configuration, stored by an earlier `cluster recover` of these disks (generation 1) and unchanged since: it is stored again, as generation 2 (if the home that stored it is still there, use that one and remove this one: two homes would both write these backups)",
                target.display()
            )),
        "{:?}",
        second.notes
    );
    for node in second.cluster.nodes.values() {
        let backup: Cluster =
            serde_json::from_slice(&fs::read(node.ccs_backup_dir().join("ccs.json")).unwrap())
                .unwrap();
        assert_eq!(backup, second.cluster);
    }

    // The second home changes it (a recovery path set): a third rebuild differs from it,
    // and is refused, everything left as it was.
    let mut changed = second_store.load().unwrap().unwrap();
    changed.nodes.get_mut(&2).unwrap().recovery_path = Some(tmp.path().join("elsewhere"));
    second_store.lock().unwrap().save(&mut changed).unwrap();
    let third_store = crate::ccs::Store::new(tmp.path().join("home3"));
    let e = recover(&third_store, &req, None).unwrap_err().to_string();
    assert!(
        e.contains("newer backup of this cluster (generation 3, recovering 0)")
            && e.contains("it differs from the configuration recovered now, so it is never replaced: move its `ccs/` aside to recover again"),
        "{e}"
    );
    assert!(third_store.load().unwrap().is_none());
    let kept: Cluster = serde_json::from_slice(&fs::read(&target).unwrap()).unwrap();
    assert_eq!(kept, changed);
}
