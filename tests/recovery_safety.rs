//! Recovery never harms what it did not start (issue 9): a failed recovery leaves a
//! server running in a shard directory alone, whoever started it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::ProcessGuard;
use common::Lazarus;

/// A redis-server nobody but the operator started, working in `dir` on a free port.
fn foreign_server(dir: &std::path::Path) -> Child {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--dir", &dir.display().to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the foreign server never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_failed_recover_never_stops_a_server_it_did_not_start() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = a.path("n1");
    a.run(&format!(
        "cluster create name c persistent_path {}",
        n1.display()
    ))
    .ok();
    let mut doc = a.ccs();
    let lo = 21000 + (rand::random::<u16>() % 130) * 60;
    doc["nodes"]["1"]["port_range"] = serde_json::json!({ "lo": lo, "hi": lo + 29 });
    std::fs::write(a.path("ccs.json"), doc.to_string()).unwrap();
    a.run("create db cache persistence snapshot").ok();

    // The home is lost; the configuration comes back from the node's backup.
    let b = Lazarus::new();
    b.run(&format!(
        "cluster recover filename {}",
        n1.join("ccs/ccs.json").display()
    ))
    .ok();
    let ccs = b.ccs();
    let (db_id, db) = ccs["databases"].as_object().unwrap().iter().next().unwrap();
    let shard = db["shards"][0]["id"].as_u64().unwrap();
    let pp = ccs["nodes"]["1"]["persistent_path"].as_str().unwrap();
    let dir = std::path::Path::new(pp).join(format!("redis/db-{db_id}/shard-{shard}"));
    // Meanwhile an operator's own server works in the new shard directory, with data.
    std::fs::create_dir_all(dir.join("appendonlydir")).unwrap();
    let theirs = dir.join("appendonlydir/theirs.aof");
    std::fs::write(&theirs, b"not recovery's").unwrap();
    let mut foreign = foreign_server(&dir);
    let live_before = guard.pids();

    b.run("recover db cache")
        .fails(1)
        .stdout_has("already holds data files recovery did not write");
    std::thread::sleep(Duration::from_millis(300));
    let still = foreign.try_wait().unwrap().is_none();
    let live_after = guard.pids();
    let _ = foreign.kill();
    let _ = foreign.wait();
    assert!(still, "recovery stopped a server it did not start");
    for pid in live_before {
        assert!(live_after.contains(&pid), "pid {pid} was stopped");
    }
    assert_eq!(std::fs::read(&theirs).unwrap(), b"not recovery's");
}
