//! A second incident never brings back the first one's data (issue 9 items 2, 5, 15): a
//! recovery path is cleared once the recovery that used it completes, `cluster recover`
//! never carries one across and looks for the newer backups a recovered node left in its
//! `-recovered` sibling, and a node's live persistent path is refused as a recovery path.

mod common;

use std::fs;
use std::path::Path;

use common::Lazarus;

fn node1(lz: &Lazarus) -> serde_json::Value {
    lz.ccs()["nodes"]["1"].clone()
}

fn generation(path: &Path) -> u64 {
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    doc["generation"].as_u64().unwrap()
}

#[test]
fn a_second_cluster_recover_takes_the_newest_backup_and_no_old_recovery_path() {
    let first = Lazarus::new();
    let n1 = first.path("n1");
    let disk = first.path("disk-of-incident-1");
    fs::create_dir_all(&disk).unwrap();
    first
        .run(&format!(
            "cluster create name c persistent_path {}",
            n1.display()
        ))
        .ok();
    // The node had shard data: a recovery moves it aside into `n1-recovered`.
    fs::create_dir_all(n1.join("redis")).unwrap();

    // Incident 1: the home is lost; the configuration comes back from n1's backup, and
    // the operator points the node at the old disk.
    let second = Lazarus::new();
    second
        .run(&format!(
            "cluster recover filename {}",
            n1.join("ccs/ccs.json").display()
        ))
        .ok();
    let recovered = first.path("n1-recovered");
    assert_eq!(
        node1(&second)["persistent_path"],
        recovered.display().to_string()
    );
    second
        .run(&format!("node 1 recovery_path set {}", disk.display()))
        .ok();
    // The cluster lives on in `n1-recovered`: its databases there, its backups newer.
    fs::create_dir_all(recovered.join("redis")).unwrap();
    let newest = recovered.join("ccs/ccs.json");
    assert!(generation(&newest) > generation(&n1.join("ccs/ccs.json")));

    // Incident 2: the home is lost again. The old backup at `n1` is refused while the
    // newer one Lazarus itself left in `n1-recovered` exists.
    let third = Lazarus::new();
    let out = third
        .run(&format!(
            "cluster recover filename {}",
            n1.join("ccs/ccs.json").display()
        ))
        .fails(1);
    assert!(
        out.stderr.contains(&format!(
            "`{}` is a newer backup of this cluster",
            newest.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!third.path("ccs.json").exists());

    // From the newest backup: the first incident's recovery path is not carried over;
    // the node recovers from where it lived, into a fresh sibling.
    third
        .run(&format!("cluster recover filename {}", newest.display()))
        .ok()
        .stdout_has("(an earlier recovery's) is not carried over");
    let node = node1(&third);
    assert_eq!(node["recovery_path"], recovered.display().to_string());
    let live = first.path("n1-recovered-recovered");
    assert_eq!(node["persistent_path"], live.display().to_string());

    // A node's own live persistent path is no recovery path.
    fs::create_dir_all(&live).unwrap();
    third
        .run(&format!("node 1 recovery_path set {}", live.display()))
        .fails(1)
        .stderr_has(&format!(
            "recovery path `{}` is node:1's persistent path",
            live.display()
        ));
    assert_eq!(
        node1(&third)["recovery_path"],
        recovered.display().to_string()
    );

    // And a recovery path can be forgotten.
    third
        .run("node 1 recovery_path clear")
        .ok()
        .stdout_has("node:1 no longer has a recovery path");
    assert!(node1(&third).get("recovery_path").is_none());
    third
        .run("node 1 recovery_path clear")
        .ok()
        .stdout_has("node:1 had no recovery path");
}
