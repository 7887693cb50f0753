//! Databases through the binary: the commands, their refusals, Ctrl-C, what is saved.

use std::time::Duration;

use super::common::{self, procs::ProcessGuard};
use super::{shard_dirs, silent_source};

/// Held by tests whose first `create db` makes the default local cluster, so uses the
/// default port range: two at once would both probe port 10000 and one would lose it.
static DEFAULT_RANGE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn default_range() -> std::sync::MutexGuard<'static, ()> {
    DEFAULT_RANGE.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILLs `pid`, as a crash would, and waits until it is gone.
fn kill(guard: &ProcessGuard, pid: u32) {
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    while guard.pids().contains(&pid) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `redis://` URL of a database's endpoint, from `--json status databases`.
fn endpoint_of(lz: &common::Lazarus, name: &str) -> String {
    let doc = lz.cmd(["--json", "status", "databases"]).run().ok().json();
    doc[0]["result"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no database {name}: {doc:?}"))["endpoint"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn commands_create_kill_restart_and_refuse() {
    let _default_range = default_range();
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    lz.run("create db first persistence disabled")
        .ok()
        .stdout_has("Created the default local cluster")
        .stdout_has("Endpoint: 127.0.0.1:");
    lz.run("delete db first purge").ok();
    let lo = lz.own_port_range();

    let out = lz
        .run("create db cache memory 64mb password pw-7f3a")
        .ok()
        .stdout_has("Endpoint: 127.0.0.1:");
    assert!(!out.stdout.contains("pw-7f3a") && !out.stderr.contains("pw-7f3a"));
    let endpoint = endpoint_of(&lz, "cache");
    let client = redis::Client::open(format!("redis://:pw-7f3a@{endpoint}/")).unwrap();
    let mut k = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg("kept")
        .arg("yes")
        .exec(&mut k)
        .unwrap();
    lz.run("status databases")
        .ok()
        .stdout_has("DB:ID")
        .stdout_has("ENDPOINT")
        .stdout_has("active");
    lz.run("status issues_only").ok().stdout_lacks("cache");
    let node_version = |code: i32| {
        let doc = lz
            .cmd(["--json", "status", "nodes"])
            .run()
            .fails(code)
            .json();
        doc[0]["result"]["nodes"][0]["version"].clone()
    };
    let up = node_version(0);
    assert!(
        up.as_str()
            .is_some_and(|v| v.starts_with("redis ") || v.starts_with("valkey ")),
        "{up}"
    );

    let pid = guard.pids()[0];
    kill(&guard, pid);
    // The node's version, asked of its binary now its shard is down, in the same form.
    assert_eq!(node_version(1), up);
    // A shard down fails `status` (exit 1), whichever table is asked for.
    // Its hints follow the error on stderr, as the `--json` document lists them.
    let hint = "start them again with `restart db <db>`; `status shards` says why";
    lz.run("status shards issues_only")
        .fails(1)
        .stdout_has("DOWN")
        .stderr_has("1 shard(s) down: redis:")
        .stderr_has(&format!("\nhint: {hint}\n"));
    lz.run("status nodes").fails(1).stderr_has(hint);
    let doc = lz
        .cmd(["--json", "status", "issues_only"])
        .run()
        .fails(1)
        .json();
    assert_eq!(doc[0]["result"]["databases"][0]["status"], "down");
    assert_eq!(doc[0]["kind"], "unavailable");
    assert_eq!(doc[0]["hints"], serde_json::json!([hint]));

    lz.run("restart db cache").ok().stdout_has("Restarted db:");
    let mut k = client.get_connection().unwrap();
    let kept: String = redis::cmd("GET").arg("kept").query(&mut k).unwrap();
    assert_eq!(kept, "yes");

    // Refusals: the CCS file and the processes stay exactly as they were.
    let ccs = std::fs::read(lz.path("ccs.json")).unwrap();
    let pids = guard.pids();
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    // A sharded database's port whose cluster bus port (+ 10000) is taken: the bus port
    // is the one named, not the free port the operator typed.
    let (bus_taken, free) = loop {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let bus = l.local_addr().unwrap().port();
        if bus > 11024 && std::net::TcpListener::bind(("127.0.0.1", bus - 10000)).is_ok() {
            break (l, bus - 10000);
        }
    };
    let bus = bus_taken.local_addr().unwrap().port();
    for (line, code, says) in [
        ("create db cache", 1, "already used"),
        (&format!("create db other port {port}"), 1, "in use"),
        (
            &format!("create db other shards 2 port {free}"),
            1,
            &format!("cluster bus port `{bus}` (port `{free}` + 10000"),
        ),
        // Privileged ports are refused even for root; a sharded database's port leaves
        // room for its bus port.
        ("create db other port 1", 2, "port `1` is privileged (below 1024"),
        (
            "create db other shards 2 port 60000",
            2,
            "port `60000` leaves no cluster bus port: a sharded database's shards also listen on port + 10000, at most 65535, so give a port of 1024-55535",
        ),
        ("create db other memory lots", 2, "not a size"),
        ("create db other replication enabled", 1, "at least 2 nodes"),
        (
            "create db other sync_source 127.0.0.1:1",
            1,
            "nothing answers",
        ),
        ("delete db nosuch", 1, "no database"),
        ("restart db db:99", 1, "no database"),
    ] {
        lz.run(line).fails(code).stderr_has(says);
        assert_eq!(std::fs::read(lz.path("ccs.json")).unwrap(), ccs, "{line}");
        assert_eq!(guard.pids(), pids, "{line}");
    }
    drop(taken);
    drop(bus_taken);
    lz.cmd([
        "--redis-server",
        "/nonexistent/redis-server",
        "restart",
        "db",
        "cache",
    ])
    .run()
    .fails(1)
    .stderr_has("apt-get install redis-server");
    assert_eq!(guard.pids(), pids);

    // Database names and ids complete wherever a database is expected.
    lz.cmd(["complete", "--", "delete", "db", ""])
        .run()
        .ok()
        .stdout_has("cache");
    lz.cmd(["complete", "--", "restart", "db", "db:"])
        .run()
        .ok()
        .stdout_has("db:4");

    // A second node makes replication possible, replica on the other node.
    let base = lo + 30;
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {} port_range {base}-{}",
        lz.path("node2").display(),
        base + 29
    ))
    .ok();
    // A port of node:2's range is node:2's to hand out: refused for node:1's shard,
    // naming the node and its range, nothing changed.
    let ccs = std::fs::read(lz.path("ccs.json")).unwrap();
    let pids = guard.pids();
    lz.run(&format!("create db other port {}", base + 5))
        .fails(1)
        .stderr_has(&format!("port `{}` lies in node:", base + 5))
        .stderr_has(&format!(
            "'s port range `{base}-{}` on 127.0.0.1",
            base + 29
        ));
    assert_eq!(std::fs::read(lz.path("ccs.json")).unwrap(), ccs);
    assert_eq!(guard.pids(), pids);
    lz.run("create db pair replication enabled persistence snapshot")
        .ok();
    let doc = lz.cmd(["--json", "status", "shards"]).run().ok().json();
    let nodes: Vec<_> = doc[0]["result"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "pair")
        .map(|s| {
            (
                s["node"].as_u64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(nodes.len(), 2);
    assert_ne!(nodes[0].0, nodes[1].0);
    assert!(nodes.iter().all(|(_, s)| s == "OK"), "{nodes:?}");

    lz.run("delete db pair purge").ok().stdout_has("Removed");
    lz.run("delete db cache").ok().stdout_has("Kept its data");
    assert!(guard.pids().is_empty());
}

/// The same through the binary: Ctrl-C (SIGINT) during `create db` rolls back and says so.
#[test]
fn ctrl_c_during_create_rolls_back() {
    let _default_range = default_range();
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let (_source, addr) = silent_source();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(["--json", "create", "db", "stuck", "sync_source", &addr])
        .env_remove("LAZARUS_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while guard.pids().iter().all(|&p| p == child.id()) {
        assert!(std::time::Instant::now() < deadline, "no shard started");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("was rolled back"), "{stderr}");
    assert!(
        stderr.contains("interrupting: `create db stuck sync_source "),
        "{stderr}"
    );
    assert!(
        stderr.contains("stops at its next step and removes what it started"),
        "{stderr}"
    );
    // The error kind `interrupted`, through the real binary.
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(doc["kind"], "interrupted", "{doc}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(guard.pids().is_empty());
    assert_eq!(shard_dirs(lz.home()), 0);
    assert!(!lz.path("ccs.json").exists());
}

/// Ctrl-C during `restart db`, which never stops part-way by design: the shell says so
/// (not that it stops) and the restart runs to its end, the data kept.
#[test]
fn ctrl_c_during_restart_says_it_runs_to_its_end() {
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    lz.create_cluster("c");
    lz.run("create db slowpoke persistence aof").ok();
    let port = lz.ccs()["databases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["port"]
        .as_u64()
        .unwrap();
    let cli = |args: &[&str]| common::redis_cli(port, args);
    assert_eq!(cli(&["SET", "k", "kept"]), "OK");
    // A server that takes long to start: the restart is still at work when Ctrl-C comes.
    let slow = lz.path("slow-redis-server");
    std::fs::write(
        &slow,
        "#!/bin/sh\n[ -f \"$1\" ] && sleep 3\nexec redis-server \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(["--redis-server", slow.to_str().unwrap()])
        .args(["restart", "db", "slowpoke"])
        .env_remove("LAZARUS_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains(
            "interrupting: `restart db slowpoke` does not stop part-way: it runs to its end (Ctrl-C again quits at once, leaving it where it is)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("stops at its next step"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("Restarted db:"), "{stdout}");
    assert_eq!(cli(&["GET", "k"]), "kept");
    assert_eq!(guard.pids().len(), 1);
}

/// A `create db` that made the default local cluster and then failed (its server would
/// not start) leaves the fresh home as it was: no `nodes/1/redis` it made, no lock.
#[test]
fn a_failed_create_on_a_fresh_home_leaves_nothing() {
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("redis-server");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = --version ] && exec redis-server --version\necho boom >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    lz.cmd([
        "--redis-server",
        fake.to_str().unwrap(),
        "create",
        "db",
        "x",
    ])
    .arg("port")
    .arg(&port.to_string())
    .run()
    .fails(1)
    .stderr_has("failed to start")
    .stderr_has("boom");
    let left: Vec<_> = std::fs::read_dir(lz.home())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the failed create left {left:?}");
    assert!(guard.pids().is_empty());
}

/// `restart db` that fails part-way saves which shards run: the CCS holds the restarted
/// shard's new pid and no pid for the one that could not start.
#[test]
fn failed_restart_is_recorded() {
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    lz.run("cluster create name t").ok();
    lz.own_port_range();
    lz.run("create db parts shards 2 persistence disabled").ok();
    let shards = |doc: &serde_json::Value| -> Vec<serde_json::Value> {
        let db = doc["databases"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        db["shards"].as_array().unwrap().clone()
    };
    let before = shards(&lz.ccs());
    let doc = lz.ccs();
    let db_id = doc["databases"].as_object().unwrap().keys().next().unwrap();
    let b_id = &before[1]["id"];
    let dir_b = lz.path(&format!("nodes/1/redis/db-{db_id}/shard-{b_id}"));
    let pid_b = before[1]["pid"].as_u64().unwrap() as u32;
    kill(&guard, pid_b);
    std::fs::write(dir_b.join("nodes.conf"), "garbage\n").unwrap();

    lz.run("restart db parts")
        .fails(1)
        .stderr_has("did not finish")
        .stderr_has(&format!("not running: redis:{b_id}"));
    let after = shards(&lz.ccs());
    let live = guard.pids();
    assert_eq!(live.len(), 1);
    assert_eq!(after[0]["pid"].as_u64(), Some(u64::from(live[0])));
    assert_ne!(after[0]["pid"], before[0]["pid"]);
    assert!(after[1]["pid"].is_null());
    lz.run("delete db parts purge").ok();
    assert!(guard.pids().is_empty());
}

/// Each node runs its own engine: `node add ... redis_server <valkey>` is checked and
/// recorded with its version, the shards placed on that node run Valkey while node:1's run
/// Redis, `status` flags the mix, and `--redis-server` overrides every node's binary.
#[test]
fn each_node_runs_its_own_engine() {
    let Some(valkey) = common::engine::Engine::valkey() else {
        eprintln!("engine valkey: not tested (no valkey-server)");
        return;
    };
    let valkey_bin = valkey.path.clone().unwrap();
    let redis_bin = common::world::redis().path;
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    // Not a server: refused before anything is made.
    lz.run("cluster create name t redis_server /bin/true")
        .fails(2)
        .stderr_has("neither redis-server nor valkey-server");
    assert!(!lz.path("ccs.json").exists());
    lz.run(&format!(
        "cluster create name t redis_server {}",
        redis_bin.display()
    ))
    .ok()
    .stdout_has("engine redis 7.");
    let lo = lz.own_port_range();
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {} redis_server /nonexistent/valkey-server",
        lz.path("node2").display()
    ))
    .fails(1)
    .stderr_has("/nonexistent/valkey-server");
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {} port_range {}-{} redis_server {}",
        lz.path("node2").display(),
        lo + 30,
        lo + 59,
        valkey_bin.display()
    ))
    .ok()
    .stdout_has("engine valkey 8.");
    let doc = lz.ccs();
    assert_eq!(doc["nodes"]["2"]["redis_server"]["engine"], "valkey");
    assert_eq!(doc["nodes"]["1"]["redis_server"]["engine"], "redis");

    lz.run("create db mix shards 2 persistence disabled").ok();
    let exe_of = |pid: u64| std::fs::canonicalize(format!("/proc/{pid}/exe")).unwrap();
    let shards = || -> Vec<(u64, std::path::PathBuf)> {
        let doc = lz.ccs();
        let db = doc["databases"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        db["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["node"].as_u64().unwrap(),
                    exe_of(s["pid"].as_u64().unwrap()),
                )
            })
            .collect()
    };
    let ran = shards();
    assert_eq!(ran.len(), 2);
    for (node, exe) in &ran {
        let want = if *node == 2 { &valkey_bin } else { &redis_bin };
        assert_eq!(exe, &std::fs::canonicalize(want).unwrap(), "node:{node}");
    }
    lz.run("status databases issues_only")
        .ok()
        .stdout_has("mixed engines");
    let db_type = || {
        lz.cmd(["--json", "status", "databases"]).run().ok().json()[0]["result"]["databases"][0]
            ["type"]
            .clone()
    };
    assert_eq!(db_type(), "redis,valkey");

    // `--redis-server` stays the override: every shard runs it after a restart.
    lz.cmd([
        "--redis-server",
        redis_bin.to_str().unwrap(),
        "restart",
        "db",
        "mix",
    ])
    .run()
    .ok();
    let canon = std::fs::canonicalize(&redis_bin).unwrap();
    assert!(shards().iter().all(|(_, exe)| exe == &canon));
    lz.run("status databases issues_only")
        .ok()
        .stdout_lacks("mixed engines");
    assert_eq!(db_type(), "redis");

    // A Valkey 8 master's RDB is one a Redis 7.0 replica cannot load: such a pair is
    // refused before any server starts, naming both engines and versions; a restart
    // after the nodes' binaries changed so, before anything is stopped.
    lz.run("create db pair replication enabled persistence disabled")
        .ok();
    lz.run(&format!("node 1 redis_server set {}", valkey_bin.display()))
        .ok();
    lz.run(&format!("node 2 redis_server set {}", redis_bin.display()))
        .ok();
    let ccs = std::fs::read(lz.path("ccs.json")).unwrap();
    let pids = guard.pids();
    lz.run("create db pair2 replication enabled")
        .fails(1)
        .stderr_has("a master on node:1 (valkey 8.")
        .stderr_has("which writes RDB version 11) with a replica on node:2 (redis 7.0.")
        .stderr_has("which loads RDB version 10 and older)");
    assert_eq!(std::fs::read(lz.path("ccs.json")).unwrap(), ccs);
    assert_eq!(guard.pids(), pids);
    lz.run("restart db pair")
        .fails(1)
        .stderr_has("a master on node:1 (valkey 8.")
        .stderr_has("with a replica on node:2 (redis 7.0.");
    assert_eq!(std::fs::read(lz.path("ccs.json")).unwrap(), ccs);
    assert_eq!(guard.pids(), pids, "a shard was stopped");
    lz.run("delete db pair purge").ok();
    lz.run("delete db mix purge").ok();
    assert!(guard.pids().is_empty());

    // A sharded database too: refused before anything starts (no shard directory, no
    // server), at once, where the create used to wait 30 s for a sync and say only that.
    let before = lz.ccs();
    let started = std::time::Instant::now();
    lz.run("create db rep shards 2 replication enabled persistence disabled")
        .fails(1)
        .stderr_has("a master on node:1 (valkey 8.")
        .stderr_has("which writes RDB version 11) with a replica on node:2 (redis 7.0.")
        .stderr_has("which loads RDB version 10 and older)")
        .stderr_has("`node 2 redis_server set <path>`");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(lz.ccs(), before);
    assert!(guard.pids().is_empty());
    assert_eq!(shard_dirs(lz.home()), 0);
}

/// `status`'s TYPE (rladmin's, where it tells `redis` from `memcached`) is the engine the
/// database runs: `valkey` for a database on valkey-server, up or down.
#[test]
fn a_valkey_database_is_of_type_valkey() {
    let Some(valkey) = common::engine::Engine::valkey() else {
        eprintln!("engine valkey: not tested (no valkey-server)");
        return;
    };
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    lz.run(&format!(
        "cluster create name t persistent_path {} redis_server {}",
        lz.path("n1").display(),
        valkey.path.clone().unwrap().display()
    ))
    .ok();
    lz.own_port_range();
    lz.run("create db v persistence disabled").ok();
    let row = |lz: &common::Lazarus| {
        lz.cmd(["--json", "status", "databases"]).run().json()[0]["result"]["databases"][0].clone()
    };
    assert_eq!(row(&lz)["type"], "valkey");
    lz.run("status databases").ok().stdout_has(" valkey ");
    // Down, its node's recorded binary says what it runs.
    guard.kill_all();
    let down = row(&lz);
    assert_eq!(
        (down["status"].as_str(), down["type"].as_str()),
        (Some("down"), Some("valkey"))
    );
}

/// `status` fails (exit 1) when a master of a sharded database does not serve its
/// slots, though every shard answers: a master that lost `nodes.conf` came back as a
/// new node with none of its slots (a database without data: it claims none), the
/// other master still giving them to the old id, with no address. It used to exit 0.
#[test]
fn status_fails_on_slots_a_master_does_not_serve() {
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    lz.run("cluster create name slots").ok();
    lz.own_port_range();
    lz.run("create db halves shards 2 persistence disabled")
        .ok();
    lz.run("status").ok();
    let doc = lz.cmd(["--json", "status", "shards"]).run().ok().json();
    let shards = doc[0]["result"]["shards"].as_array().unwrap().clone();
    let lost = &shards[1];
    let (lost_id, port) = (lost["id"].as_u64().unwrap(), lost["port"].as_u64().unwrap());
    let kept_port = shards[0]["port"].as_u64().unwrap();
    kill(&guard, lost["pid"].as_u64().unwrap() as u32);
    let ccs = lz.ccs();
    let db_id = ccs["databases"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let dir = std::path::PathBuf::from(ccs["nodes"]["1"]["persistent_path"].as_str().unwrap())
        .join(format!("redis/db-{db_id}/shard-{lost_id}"));
    std::fs::remove_file(dir.join("nodes.conf")).unwrap();
    let started = std::process::Command::new(common::world::redis().path)
        .arg("redis.conf")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(started.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let client = |p: u64| redis::Client::open(format!("redis://127.0.0.1:{p}/")).unwrap();
    loop {
        let met = client(port).get_connection().and_then(|mut c| {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(kept_port)
                .query::<()>(&mut c)
        });
        if met.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{met:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let mut k = client(kept_port).get_connection().unwrap();
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut k).unwrap();
        if nodes.lines().count() == 3 && nodes.contains(":0@0") && !nodes.contains("handshake") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{nodes}");
        std::thread::sleep(Duration::from_millis(100));
    }

    lz.run("status")
        .fails(1)
        .stdout_has("SLOTS NOT SERVED")
        .stderr_has(&format!(
            "redis:{lost_id} of `halves` does not serve its slots 8192-16383"
        ))
        .stderr_has("`restart db <db>` re-forms the slot map");
    let doc = lz
        .cmd(["--json", "status", "shards", "extra", "all"])
        .run()
        .json();
    let row = doc[0]["result"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == lost_id)
        .unwrap()
        .clone();
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains("serves none of its slots 8192-16383: 8192-16383 held by node `"),
        "{detail}"
    );
    lz.run("restart db halves").ok();
    lz.run("status").ok();
    lz.run("delete db halves purge").ok();
    assert!(guard.pids().is_empty());
}

/// `status` fails (exit 1) while shards of a sharded database say `cluster_state:fail`,
/// though every shard answers and every slot is served in the slot map: a master the
/// others marked FAIL while it did not answer (stopped past the node timeout), running
/// again; they keep it FAIL for a while, and their clients get `CLUSTERDOWN`. The
/// database's status says so. It used to exit 0.
#[test]
fn status_fails_while_shards_say_the_cluster_is_down() {
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    lz.run("cluster create name state").ok();
    lz.own_port_range();
    lz.run("create db trio shards 3 persistence disabled").ok();
    lz.run("status").ok();
    let doc = lz.cmd(["--json", "status", "shards"]).run().ok().json();
    let shards = doc[0]["result"]["shards"].as_array().unwrap().clone();
    let (frozen, other) = (&shards[1], &shards[0]);
    let pid = frozen["pid"].as_u64().unwrap() as i32;
    let state = |port: u64| -> Option<String> {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()
    };
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !state(other["port"].as_u64().unwrap()).is_some_and(|i| i.contains("cluster_state:fail"))
    {
        assert!(std::time::Instant::now() < deadline, "never marked failed");
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // The others keep the master FAIL for twice the node timeout after they marked it:
    // `status` is asked in that window, once every shard answers again.
    loop {
        let out = lz.cmd(["--json", "status", "shards"]).run();
        let rows = out.json()[0]["result"]["shards"]
            .as_array()
            .unwrap()
            .clone();
        let status = |s: &serde_json::Value| s["status"].as_str().unwrap().to_string();
        assert!(
            !rows.iter().any(|s| status(s) == "SLOTS NOT SERVED"),
            "{rows:?}"
        );
        if rows.iter().all(|s| status(s) != "DOWN")
            && rows.iter().any(|s| status(s) == "CLUSTER FAIL")
        {
            assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
            assert!(
                out.stderr
                    .contains("`trio` says `cluster_state:fail` on redis:"),
                "{}",
                out.stderr
            );
            let dbs = lz.cmd(["--json", "status", "databases"]).run();
            let row = &dbs.json()[0]["result"]["databases"][0];
            assert!(
                row["status"]
                    .as_str()
                    .unwrap()
                    .contains("cluster_state:fail"),
                "{row}"
            );
            break;
        }
        assert!(
            rows.iter().any(|s| status(s) != "OK"),
            "the cluster settled before `status` saw it fail: {rows:?}"
        );
        assert!(std::time::Instant::now() < deadline, "{rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // It settles by itself: `status` is clean again.
    while lz.cmd(["status"]).run().code != 0 {
        assert!(std::time::Instant::now() < deadline, "never settled");
        std::thread::sleep(Duration::from_millis(200));
    }
    lz.run("delete db trio purge").ok();
    assert!(guard.pids().is_empty());
}
