//! `status` asks which restore tasks run (their locks held by live shells) while other
//! shells claim them: the ask never takes a task's lock, so a claim at the same instant
//! is never told the task runs elsewhere. (Taking it for a moment, as the ask once did,
//! turned about a third of such claims away.) A test binary of its own: a lock is held by
//! its open file, which a process forked at that moment (another test starting a server)
//! holds a copy of until it runs its program, and would turn a claim away for it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lazarus::backup::RunLock;
use lazarus::ccs::{default_local_cluster, Cluster};
use lazarus::restore::running_tasks;

/// A cluster with restore task `t` (of database `sales`) recorded `running`.
fn with_running_task(home: &Path) -> Cluster {
    let mut cluster = default_local_cluster(home);
    let task = serde_json::from_value(serde_json::json!({
        "name": "t", "db": "sales", "run": "r1", "path": "/backups",
        "state": "running", "created": 0,
    }))
    .unwrap();
    cluster.backups.restores.insert("t".into(), task);
    cluster
}

#[test]
fn asking_which_tasks_run_never_turns_a_claim_away() {
    let home = tempfile::tempdir().unwrap();
    let cluster = with_running_task(home.path());
    let lock = "restore-t";
    let held = RunLock::try_take(home.path(), lock).unwrap().unwrap();
    assert_eq!(
        running_tasks(home.path(), &cluster),
        BTreeMap::from([("sales".to_string(), "t".to_string())])
    );
    drop(held);
    assert!(running_tasks(home.path(), &cluster).is_empty());

    let stop = Arc::new(AtomicBool::new(false));
    let asker = {
        let (home, cluster, stop) = (home.path().to_path_buf(), cluster.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut asked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = running_tasks(&home, &cluster);
                asked += 1;
            }
            asked
        })
    };
    let mut turned_away = 0;
    for _ in 0..3000 {
        match RunLock::try_take(home.path(), lock) {
            Ok(Some(lock)) => drop(lock),
            Ok(None) => turned_away += 1,
            Err(e) => panic!("{e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(asker.join().unwrap() > 0);
    assert_eq!(turned_away, 0, "claims told the task runs elsewhere");
}
