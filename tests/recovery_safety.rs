//! Recovery never harms what it did not start (issue 9): a failed recovery leaves a
//! server running in a shard directory alone, whoever started it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::ProcessGuard;
use common::{redis_cli, Lazarus};

/// A redis-server nobody but the operator started, working in `dir` on a free port.
fn foreign_server(dir: &std::path::Path) -> Child {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    foreign_server_on(dir, port)
}

/// A redis-server nobody but the operator started, working in `dir` on `port`, saving
/// nothing.
fn foreign_server_on(dir: &std::path::Path, port: u16) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--dir", &dir.display().to_string(), "--save", ""])
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

/// A one-node cluster in `a`'s home (node:1 at `<home>/n1`, ports at random) with a
/// snapshot database `cache`; returns n1.
fn home_with_cache(a: &Lazarus) -> std::path::PathBuf {
    let n1 = a.create_cluster("c");
    a.run("create db cache persistence snapshot").ok();
    n1
}

/// A new home whose configuration `cluster recover` brought back from node 1's CCS
/// backup under `n1` (every database pending recovery, or adopted when it runs).
fn recovered_home(n1: &std::path::Path) -> Lazarus {
    let b = Lazarus::new();
    b.run(&format!(
        "cluster recover filename {}",
        n1.join("ccs/ccs.json").display()
    ))
    .ok();
    b
}

/// Issue 9 item 3: only the home is lost, the shards still serve. `cluster recover`
/// adopts the database as it runs (node path, pids), `status` shows it active, `recover`
/// never recovers over it; a home that recorded it pending adopts it at `recover list`.
#[test]
fn a_live_database_is_adopted_not_recovered() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = home_with_cache(&a);
    let port = a.ccs()["databases"]["2"]["shards"][0]["port"]
        .as_u64()
        .unwrap();
    assert_eq!(
        redis_cli(port, &["SET", "written", "after the backup"]),
        "OK"
    );
    let pids = guard.pids();

    let b = Lazarus::new();
    b.run(&format!(
        "cluster recover filename {}",
        n1.join("ccs/ccs.json").display()
    ))
    .ok()
    .stdout_has("db:2 `cache`: its shards answer from")
    .stdout_has("adopted as active")
    // Nothing is left to recover: the reply says so, not to go and `recover all`.
    .stdout_has("0 database(s) pending recovery, 1 adopted as running")
    .stdout_has("Nothing pending recovery: every database runs as it was")
    .stdout_lacks("recover all");
    let ccs = b.ccs();
    assert_eq!(ccs["databases"]["2"]["state"], "active");
    assert_eq!(
        ccs["nodes"]["1"]["persistent_path"].as_str().unwrap(),
        n1.display().to_string()
    );
    assert!(ccs["nodes"]["1"]["recovery_path"].is_null());
    b.run("status databases").ok().stdout_has("active");
    b.run("recover list")
        .ok()
        .stdout_has("No recoverable databases found");
    b.run("recover all").ok();

    // A home that recorded it pending (an older rebuild) adopts it before any recovery.
    let mut doc = b.ccs();
    doc["databases"]["2"]["state"] = "pending_recovery".into();
    std::fs::write(b.path("ccs.json"), doc.to_string()).unwrap();
    b.run("recover list")
        .ok()
        .stdout_has("adopted as active")
        .stdout_has("No recoverable databases found");
    assert_eq!(b.ccs()["databases"]["2"]["state"], "active");

    assert_eq!(redis_cli(port, &["GET", "written"]), "after the backup");
    assert_eq!(guard.pids(), pids, "a live shard was restarted or stopped");
}

#[test]
fn a_failed_recover_never_stops_a_server_it_did_not_start() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = home_with_cache(&a);
    // The database's own server is gone (else the recovery would adopt it).
    guard.kill_all();

    // The home is lost; the configuration comes back from the node's backup.
    let b = recovered_home(&n1);
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

/// Another program on a shard's port (the shard down) is not the shard: `status` says the
/// port is taken and by which pid, and shows none of its figures (keys, pid) as the
/// shard's; the shard counts as down. The other program is left running.
#[test]
fn status_tells_a_foreign_server_on_a_shards_port_from_the_shard() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    home_with_cache(&a);
    let port = a.ccs()["databases"]["2"]["shards"][0]["port"]
        .as_u64()
        .unwrap();
    a.run("status shards extra all")
        .ok()
        .stdout_lacks("PORT TAKEN");
    guard.kill_all();
    let dir = a.path("operator");
    std::fs::create_dir(&dir).unwrap();
    let mut foreign = foreign_server_on(&dir, port as u16);
    let pid = foreign.id();
    assert_eq!(redis_cli(port, &["SET", "theirs", "x"]), "OK");

    let text = a
        .run("status shards extra all")
        .fails(1)
        .stdout_has("PORT TAKEN")
        .stderr_has("1 shard(s) down");
    let docs = a
        .cmd(["--json", "status", "shards", "extra", "all"])
        .run()
        .fails(1)
        .json();
    let still = foreign.try_wait().unwrap().is_none();
    let _ = foreign.kill();
    let _ = foreign.wait();
    let row = &docs[0]["result"]["shards"][0];
    assert_eq!(row["status"], "PORT TAKEN", "{row}");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "port {port} is held by another program (pid {pid}"
        )),
        "{detail}"
    );
    assert!(detail.contains("not a shard Lazarus started"), "{detail}");
    assert!(row["keys"].is_null(), "{row}");
    // Neither the pid recorded for the shard (not what runs there) nor the program's
    // (named in the detail, not the shard's).
    let recorded = a.ccs()["databases"]["2"]["shards"][0]["pid"].clone();
    assert!(!recorded.is_null(), "a pid was recorded");
    assert!(row["pid"].is_null(), "{row}");
    assert!(
        !text.stdout.contains(&format!(" {recorded} ")),
        "the recorded pid shown: {}",
        text.stdout
    );
    assert!(row["live_role"].is_null(), "{row}");
    assert!(
        !text.stdout.contains("NOT REPLICATING") && !text.stdout.contains(" OK "),
        "{}",
        text.stdout
    );
    assert!(still, "status stopped a server it did not start");
}

/// A `recover db` killed mid-way leaves the servers it started running in its marked
/// shard directories: `status` names such a server (pid) and the way out, judging it as
/// the rerun does before stopping it; a server in a marked directory that recovery did
/// not start is not called recovery's.
#[test]
fn status_names_a_server_an_interrupted_recovery_left_running() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = home_with_cache(&a);
    guard.kill_all();
    let b = Lazarus::new();
    let _b_guard = ProcessGuard::new(b.home());
    b.run(&format!(
        "cluster recover filename {}",
        n1.join("ccs/ccs.json").display()
    ))
    .ok();
    let ccs = b.ccs();
    let (db_id, db) = ccs["databases"].as_object().unwrap().iter().next().unwrap();
    assert_eq!(db["state"], "pending_recovery");
    let shard = db["shards"][0]["id"].as_u64().unwrap();
    let pp = ccs["nodes"]["1"]["persistent_path"].as_str().unwrap();
    let dir = std::path::Path::new(pp).join(format!("redis/db-{db_id}/shard-{shard}"));
    // What a killed recovery leaves: its marker, and a server working in the directory.
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("lazarus-recovering");
    std::fs::write(&marker, "pid 1\n").unwrap();
    let mut server = foreign_server(&dir);
    let pid = server.id();
    let shard_row = |b: &Lazarus| {
        let docs = b
            .cmd(["--json", "status", "shards", "extra", "all"])
            .run()
            .ok()
            .json();
        docs[0]["result"]["shards"][0].clone()
    };

    // The marker does not name it (and it wrote no pidfile): not recovery's server.
    let row = shard_row(&b);
    assert_eq!(row["status"], "PENDING RECOVERY", "{row}");
    assert!(row["detail"].is_null(), "{row}");

    std::fs::write(&marker, format!("pid 1\nserver {pid}\n")).unwrap();
    let row = shard_row(&b);
    let still = server.try_wait().unwrap().is_none();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(row["status"], "PENDING RECOVERY", "{row}");
    assert_eq!(row["pid"], pid, "{row}");
    assert_eq!(
        row["detail"],
        format!(
            "a server of an interrupted recovery runs here (pid {pid}): `recover db cache` \
             again stops it and recovers the database"
        ),
        "{row}"
    );
    assert!(still, "status stopped a server");
}

/// Issue 9 item 7: a power loss with the home intact. `recover list` points to `restart
/// all`, which brings every database back from its own files; `restart db` takes several.
#[test]
fn after_a_power_loss_restart_all_brings_every_database_back() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    home_with_cache(&a);
    a.run("create db orders persistence snapshot").ok();
    let ports: Vec<u64> = a.ccs()["databases"]
        .as_object()
        .unwrap()
        .values()
        .map(|d| d["shards"][0]["port"].as_u64().unwrap())
        .collect();
    for port in &ports {
        assert_eq!(redis_cli(*port, &["SET", "k", "kept"]), "OK");
        assert_eq!(redis_cli(*port, &["SAVE"]), "OK");
    }
    guard.kill_all();

    a.run("recover list")
        .ok()
        .stdout_has("No recoverable databases found")
        .stdout_has("2 databases are down but not pending recovery (`cache`, `orders`)")
        .stdout_has("`restart all`");
    a.run("restart all")
        .ok()
        .stdout_has("Restarted db:2 `cache`")
        .stdout_has("2 restarted, 0 failed");
    for port in &ports {
        assert_eq!(redis_cli(*port, &["GET", "k"]), "kept");
    }
    a.run("restart all")
        .ok()
        .stdout_has("Already running, left alone: `cache`, `orders`")
        .stdout_has("0 restarted");
    a.run("restart db cache orders")
        .ok()
        .stdout_has("2 restarted, 0 failed");
    a.run("restart db cache nosuch")
        .fails(1)
        .stderr_has("nosuch");
    a.run("status databases").ok();
}

/// Issue 18 item 3b: the freshest copy the reader accepts is refused by the server (here
/// a wrapper refusing every AOF start): the master loads the next copy, its RDB, and the
/// result line says which copy it used and why the first was rejected.
#[test]
fn a_copy_the_server_refuses_falls_back_to_the_next_one() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = home_with_cache(&a);
    a.run("create db sess persistence aof").ok();
    let port = a.ccs()["databases"]["4"]["shards"][0]["port"]
        .as_u64()
        .unwrap();
    assert_eq!(redis_cli(port, &["SET", "in_both", "1"]), "OK");
    assert_eq!(redis_cli(port, &["SAVE"]), "OK");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(redis_cli(port, &["SET", "aof_only", "1"]), "OK");
    std::thread::sleep(Duration::from_millis(1100));
    guard.kill_all();

    let b = recovered_home(&n1);
    let wrapper = b.path("aof-refusing-redis-server");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nif [ -f \"$1\" ] && grep -q '^appendonly yes' \"$1\"; then echo 'refusing the AOF' >&2; exit 1; fi\nexec redis-server \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    b.cmd([
        "--redis-server",
        wrapper.to_str().unwrap(),
        "recover",
        "db",
        "sess",
        "verify",
        "counts",
    ])
    .run()
    .ok()
    .stdout_has("db:4 `sess`: Completed successfully (1 keys from snapshot)")
    .stdout_has("redis:5 loaded snapshot `")
    .stdout_has("the server refused AOF `");
    assert_eq!(redis_cli(port, &["GET", "in_both"]), "1");
}

/// Issue 9 item 8: another program holds a database's stored port. Recovery says so and
/// leaves it alone; `recover db <db> port <n>` moves the endpoint and says so.
#[test]
fn a_taken_port_is_left_alone_and_recover_db_port_moves_the_database() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = home_with_cache(&a);
    let old = a.ccs()["databases"]["2"]["port"].as_u64().unwrap();
    assert_eq!(redis_cli(old, &["SET", "k", "moved"]), "OK");
    assert_eq!(redis_cli(old, &["SAVE"]), "OK");
    guard.kill_all();
    let b = recovered_home(&n1);
    // Another program takes the port meanwhile.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", old as u16)).unwrap();
    b.run("recover db cache")
        .fails(1)
        .stdout_has(&format!(
            "is already in use; another program holds port {old} of redis:"
        ))
        .stdout_has("; move the database with `recover db cache port <free port>`");
    let free = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    b.run(&format!("recover db cache port {old}"))
        .fails(2)
        .stderr_has("already");
    b.run(&format!("recover db cache port {free} verify counts"))
        .ok()
        .stdout_has(&format!(
            "db:2 `cache`: endpoint moved from port {old} (held by another program, left alone) to port {free}"
        ))
        .stdout_has("Completed successfully");
    assert_eq!(redis_cli(free as u64, &["GET", "k"]), "moved");
    assert_eq!(b.ccs()["databases"]["2"]["port"], free);
    assert!(squatter.local_addr().is_ok());
    assert!(std::net::TcpStream::connect(("127.0.0.1", old as u16)).is_ok());
}

/// Issue 8: Ctrl-C during `recover` really stops it: the databases not yet back stay
/// pending recovery (the run says it was interrupted) and running it again resumes.
#[test]
fn ctrl_c_stops_a_recovery_and_a_rerun_resumes_it() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = home_with_cache(&a);
    let port = a.ccs()["databases"]["2"]["port"].as_u64().unwrap();
    assert_eq!(redis_cli(port, &["SET", "k", "v"]), "OK");
    assert_eq!(redis_cli(port, &["SAVE"]), "OK");
    guard.kill_all();
    let b = recovered_home(&n1);
    // A server that takes long to start: the recovery is still at work when Ctrl-C comes.
    // It says when it is launched (the recovery has reached the start), so that Ctrl-C
    // lands then, however long a loaded machine takes to get there.
    let slow = b.path("slow-redis-server");
    let launched = b.path("slow-redis-server.launched");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\n[ -f \"$1\" ] && touch '{}' && sleep 4\nexec redis-server \"$@\"\n",
            launched.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(b.home())
        .args(["--redis-server", slow.to_str().unwrap(), "recover", "all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !launched.exists() {
        assert!(
            Instant::now() < deadline,
            "recover never launched the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // It stopped where it was: the server it was launching never came up (no waiting
    // for it, however long that takes).
    let servers: Vec<u32> = guard
        .pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("redis-server"))
        })
        .collect();
    assert!(
        servers.is_empty(),
        "recover went on after Ctrl-C: {servers:?}"
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stdout.contains("interrupted before it finished"),
        "{stdout}"
    );
    assert_eq!(b.ccs()["databases"]["2"]["state"], "pending_recovery");
    std::thread::sleep(Duration::from_millis(3000));
    b.run("recover all verify counts")
        .ok()
        .stdout_has("Completed successfully");
}

/// Issue 9 item 8b: the free-port fallback is never silent. A script must say `free_port`;
/// the interactive shell asks, naming the port it would take, and moves nothing on a no.
#[test]
fn a_taken_port_moves_to_a_free_one_only_when_the_operator_says_so() {
    use expectrl::Expect;
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = home_with_cache(&a);
    a.run("create db two persistence snapshot").ok();
    let port = |l: &Lazarus, name: &str| {
        let doc = l.ccs();
        let dbs = doc["databases"].as_object().unwrap();
        let db = dbs.values().find(|d| d["name"] == name).unwrap();
        db["port"].as_u64().unwrap()
    };
    let (cache, two) = (port(&a, "cache"), port(&a, "two"));
    assert_eq!(redis_cli(cache, &["SET", "k", "kept"]), "OK");
    assert_eq!(redis_cli(cache, &["SAVE"]), "OK");
    assert_eq!(redis_cli(two, &["SAVE"]), "OK");
    guard.kill_all();
    let b = recovered_home(&n1);
    let _squat: Vec<std::net::TcpListener> = [cache, two]
        .iter()
        .map(|p| std::net::TcpListener::bind(("127.0.0.1", *p as u16)).unwrap())
        .collect();

    // A script without `free_port`: refused, nothing moved, the way named.
    b.run("recover db two verify counts")
        .fails(1)
        .stdout_has(&format!(
            "is already in use; another program holds port {two} of redis:"
        ))
        .stdout_has("`recover db two free_port`");
    assert_eq!(port(&b, "two"), two);

    // The interactive shell asks; a no changes nothing, a yes moves and recovers.
    let mut command = Command::new(env!("CARGO_BIN_EXE_lazarus"));
    command
        .arg("--home")
        .arg(b.home())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1");
    let mut shell = expectrl::Session::spawn(command).expect("spawn the shell on a pty");
    shell.set_expect_timeout(Some(Duration::from_secs(60)));
    shell.expect("> ").unwrap();
    shell.send("recover db cache verify counts\r").unwrap();
    shell
        .expect(format!(" from port {cache} to port "))
        .unwrap();
    shell.expect("[y/N] ").unwrap();
    shell.send("n\r").unwrap();
    shell.expect("not run: `recover db cache").unwrap();
    assert_eq!(port(&b, "cache"), cache);
    shell.send("recover db cache verify counts\r").unwrap();
    shell.expect("[y/N] ").unwrap();
    shell.send("y\r").unwrap();
    shell
        .expect(format!(
            "endpoint moved from port {cache} (held by another program, left alone) to port "
        ))
        .unwrap();
    shell.expect("Completed successfully").unwrap();
    shell.send("exit\r").unwrap();
    shell.expect(expectrl::Eof).unwrap();
    let moved = port(&b, "cache");
    assert_ne!(moved, cache);
    assert_eq!(redis_cli(moved, &["GET", "k"]), "kept");

    // A script with `free_port`: moved, and said.
    b.run("recover all free_port verify counts")
        .ok()
        .stdout_has(&format!(
            "`two`: endpoint moved from port {two} (held by another program, left alone) to port "
        ))
        .stdout_has("Completed successfully");
    assert_ne!(port(&b, "two"), two);
}

/// Database `two` of two snapshot shards, each saved, then every process killed and the
/// home lost: the first home (whose guard stops what runs under it, the recovered shards
/// too, when dropped), the recovered one, and the port of the shard that is not the
/// endpoint.
fn two_shards_lost() -> (Lazarus, ProcessGuard, Lazarus, u64) {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = a.create_cluster("c");
    a.run("create db two shards 2 persistence snapshot").ok();
    let doc = a.ccs();
    let db = doc["databases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let endpoint = db["port"].as_u64().unwrap();
    let other = db["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["port"].as_u64().unwrap())
        .find(|p| *p != endpoint)
        .unwrap();
    for p in [endpoint, other] {
        assert_eq!(redis_cli(p, &["SAVE"]), "OK");
    }
    guard.kill_all();
    let b = recovered_home(&n1);
    (a, guard, b, other)
}

/// A shard that is not the endpoint, its port taken: the hint offers `free_port` (which
/// moves it), never `port <n>` (which moves only the endpoint, and would fail again).
#[test]
fn a_taken_port_of_another_shard_than_the_endpoint_offers_free_port() {
    let (_a, _guard, b, other) = two_shards_lost();
    let _squat = std::net::TcpListener::bind(("127.0.0.1", other as u16)).unwrap();
    b.run("recover db two verify counts")
        .fails(1)
        .stdout_has(&format!("another program holds port {other} of redis:"))
        .stdout_has("move that shard to a free port of its node: `recover db two free_port`")
        .stdout_lacks("port <free port>");
    b.run("recover db two free_port verify counts")
        .ok()
        .stdout_has("Completed successfully");
}

/// A shard whose own port is free but whose cluster bus port (port + 10000) another
/// program holds (an outgoing connection's TIME-WAIT on a port of the kernel's ephemeral
/// range does it): the refusal and the move name the bus port, not the free one.
#[test]
fn a_taken_bus_port_is_named_as_the_bus_port() {
    let (_a, _guard, b, other) = two_shards_lost();
    let bus = other + 10000;
    let _squat = std::net::TcpListener::bind(("127.0.0.1", bus as u16)).unwrap();
    b.run("recover db two verify counts")
        .fails(1)
        .stdout_has(&format!(
            "another program holds cluster bus port `{bus}` (port `{other}` + 10000, which a sharded database's shard also listens on) of redis:"
        ))
        .stdout_lacks(&format!("another program holds port {other} "));
    b.run("recover db two free_port verify counts")
        .ok()
        .stdout_has(&format!(
            "moved from port {other} (its cluster bus port {bus} held by another program, left alone) to port "
        ))
        .stdout_has("Completed successfully");
}

/// Issue 9 item 4b: a database that came back EMPTY (its files not found then, and the
/// operator said `allow_empty`) gets the files found since with `recover db <db>
/// from_files`, proved; a database that took a write since is refused, and so is one that
/// did not come back empty.
#[test]
fn files_found_after_an_empty_comeback_fill_it_while_it_took_no_write() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = home_with_cache(&a);
    a.run("create db two persistence snapshot").ok();
    let port = |l: &Lazarus, name: &str| {
        let doc = l.ccs();
        let dbs = doc["databases"].as_object().unwrap();
        let db = dbs.values().find(|d| d["name"] == name).unwrap();
        db["port"].as_u64().unwrap()
    };
    let (cache, two) = (port(&a, "cache"), port(&a, "two"));
    for (p, key) in [(cache, "k"), (two, "t")] {
        assert_eq!(redis_cli(p, &["SET", key, "from the files"]), "OK");
        assert_eq!(redis_cli(p, &["SET", &format!("{key}2"), "2"]), "OK");
        assert_eq!(redis_cli(p, &["SAVE"]), "OK");
    }
    guard.kill_all();
    // The home is lost, and the node's data is not reachable yet.
    let found = a.path("found");
    std::fs::create_dir_all(&found).unwrap();
    std::fs::rename(n1.join("redis"), found.join("redis")).unwrap();
    let b = recovered_home(&n1);
    // Its disk is not mounted yet: an empty mount point.
    let mount = a.path("mnt");
    std::fs::create_dir_all(&mount).unwrap();
    b.run(&format!("node 1 recovery_path set {}", mount.display()))
        .ok();
    b.run("recover all allow_empty verify counts")
        .ok()
        .stdout_has("came back EMPTY");
    assert_eq!(redis_cli(cache, &["DBSIZE"]), "0");

    // The files are still missing: nothing is written, it stays EMPTY.
    b.run("recover db cache from_files")
        .fails(1)
        .stderr_has("nothing was written: find the files");
    b.run(&format!("node 1 recovery_path set {}", found.display()))
        .ok();
    // A write since the comeback (even one deleted since): refused.
    assert_eq!(redis_cli(two, &["SET", "new", "1"]), "OK");
    assert_eq!(redis_cli(two, &["DEL", "new"]), "1");
    b.run("recover db two from_files")
        .fails(1)
        .stderr_has("has taken 2 writes since it came back EMPTY");
    assert_eq!(redis_cli(two, &["DBSIZE"]), "0");

    b.run("recover db cache from_files")
        .ok()
        .stdout_has("filled from snapshot `")
        .stdout_has("2 keys")
        .stdout_has("content verified: 2 keys");
    assert_eq!(redis_cli(cache, &["GET", "k"]), "from the files");
    b.run("recover db cache from_files")
        .fails(1)
        .stderr_has("did not come back EMPTY");
}

/// A fill that fails (here the master refuses writes: `maxmemory` too low) leaves the
/// master EMPTY again and fillable: its own writes, rolled back while it was fenced, are
/// no client's. Before, its change counter refused every later `from_files`. And the
/// recovery path the EMPTY master waits on is kept by the recovery that brought it back.
#[test]
fn a_failed_fill_leaves_the_master_empty_and_fillable_again() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    // AOF: no save points, so the fill's own writes stay counted as changes.
    let n1 = a.create_cluster("c");
    a.run("create db log persistence aof").ok();
    let port = a.ccs()["databases"]["2"]["port"].as_u64().unwrap();
    // Enough keys (4 MB) that a fill runs out of memory halfway (below).
    let value = "v".repeat(200);
    let mut script = String::new();
    for batch in 0..20 {
        script.push_str("MSET");
        for i in batch * 1000..(batch + 1) * 1000 {
            script.push_str(&format!(" k{i} {value}"));
        }
        script.push('\n');
    }
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut cli.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(cli.wait().unwrap().success());
    assert_eq!(redis_cli(port, &["DBSIZE"]), "20000");
    guard.kill_all();
    let found = a.path("found");
    std::fs::create_dir_all(&found).unwrap();
    std::fs::rename(n1.join("redis"), found.join("redis")).unwrap();
    let b = recovered_home(&n1);
    let mount = a.path("mnt");
    std::fs::create_dir_all(&mount).unwrap();
    b.run(&format!("node 1 recovery_path set {}", mount.display()))
        .ok();
    let out = b.run("recover all allow_empty verify counts").ok();
    assert!(!out.stdout.contains("cleared"), "{}", out.stdout);
    assert_eq!(
        b.ccs()["nodes"]["1"]["recovery_path"],
        mount.display().to_string()
    );
    b.run(&format!("node 1 recovery_path set {}", found.display()))
        .ok();

    // A second on: a save by the failed fill is after the comeback.
    std::thread::sleep(Duration::from_millis(1100));
    let info = redis_cli(port, &["INFO", "memory"]);
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cap = (used + 2_000_000).to_string();
    assert_eq!(redis_cli(port, &["CONFIG", "SET", "maxmemory", &cap]), "OK");
    // Refused writes (`OOM ...`, or whatever else the load meets on a busy machine):
    // the fill fails either way, and the master is emptied again.
    b.run("recover db log from_files")
        .fails(1)
        .stderr_has("it is EMPTY again, as before");
    assert_eq!(redis_cli(port, &["CONFIG", "SET", "maxmemory", "0"]), "OK");
    assert_eq!(redis_cli(port, &["DBSIZE"]), "0");
    b.run("recover db log from_files")
        .ok()
        .stdout_has("20000 keys");
    assert_eq!(redis_cli(port, &["GET", "k19999"]), value);
    // Filled: the path is no longer read, and goes.
    assert!(b.ccs()["nodes"]["1"].get("recovery_path").is_none());
}

/// Issue 9 (review): whether a start failed on a taken port is the host's port probe's
/// answer, not the log's words. A shard's log is appended across its lives: an old bind
/// failure in its tail says nothing about a start that fails for another reason (here a
/// corrupt `nodes.conf`) while every port is free.
#[test]
fn an_old_bind_failure_in_the_log_is_not_a_taken_port() {
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = a.create_cluster("c");
    a.run("create db two shards 2 persistence snapshot").ok();
    guard.kill_all();
    let shard = a.ccs()["databases"]["2"]["shards"][0]["id"]
        .as_u64()
        .unwrap();
    let dir = n1.join(format!("redis/db-2/shard-{shard}"));
    std::fs::write(dir.join("nodes.conf"), "not a cluster configuration\n").unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("redis.log"))
        .unwrap();
    std::io::Write::write_all(
        &mut log,
        b"1:M 01 Jan 2026 00:00:00.000 # Warning: Could not create server TCP listening socket 127.0.0.1:1: bind: Address already in use\n",
    )
    .unwrap();
    let out = a.run("restart db two").fails(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !text.contains("taken after the probe"),
        "a free port called taken: {text}"
    );
    assert!(
        text.contains(&format!("redis:{shard} failed to start")),
        "{text}"
    );
}

/// A backup repository is no recovery path: recovery reads a node's old shard files,
/// and a repository's runs come back through a restore task. Refused, naming the
/// repository, whether the CCS records it (a task's, a run's, or a directory inside it)
/// or only its runs on disk tell (a copy of another cluster's); nothing changes.
#[test]
fn a_backup_repository_is_no_recovery_path() {
    let a = Lazarus::new();
    let _guard = ProcessGuard::new(a.home());
    home_with_cache(&a);
    let repo = a.path("repo");
    let run = a.backup_run("cache", &repo);
    a.run(&format!(
        "backup task create name nightly db cache path {}",
        a.path("tasks").display()
    ))
    .ok();
    let refused = |path: &std::path::Path, says: &str| {
        a.run(&format!("node 1 recovery_path set {}", path.display()))
            .fails(1)
            .stderr_has(&format!("recovery path `{}` {says}", path.display()))
            .stderr_has("`restore task create ... backup <run>`");
        assert!(a.ccs()["nodes"]["1"]["recovery_path"].is_null());
    };
    refused(&repo, &format!("is the repository of backup run `{run}`"));
    refused(
        &repo.join(&run),
        &format!(
            "lies inside the repository of backup run `{run}` `{}`",
            repo.display()
        ),
    );
    refused(&a.path("tasks"), "is backup task `nightly`'s repository");
    let copy = a.path("copy");
    std::fs::create_dir_all(copy.join(&run)).unwrap();
    for f in std::fs::read_dir(repo.join(&run)).unwrap().flatten() {
        std::fs::copy(f.path(), copy.join(&run).join(f.file_name())).unwrap();
    }
    refused(
        &copy,
        &format!("is a backup repository (it holds run `{run}`)"),
    );
    refused(&copy.join(&run), &format!("is backup run `{run}`"));
    // An old disk's directory is still taken.
    let old = a.path("old-disk");
    std::fs::create_dir_all(&old).unwrap();
    a.run(&format!("node 1 recovery_path set {}", old.display()))
        .ok();
}

/// `recover list`'s TYPE (rladmin's) is the engine of the database's nodes, as in
/// `status`: `valkey` for a database whose node runs valkey-server.
#[test]
fn recover_list_names_the_engine_of_a_valkey_database() {
    let Some(valkey) = common::engine::Engine::valkey() else {
        eprintln!("engine valkey: not tested (no valkey-server)");
        return;
    };
    let a = Lazarus::new();
    let guard = ProcessGuard::new(a.home());
    let n1 = a.path("n1");
    a.run(&format!(
        "cluster create name c persistent_path {} redis_server {}",
        n1.display(),
        valkey.path.clone().unwrap().display()
    ))
    .ok();
    a.own_port_range();
    a.run("create db v persistence snapshot").ok();
    guard.kill_all();
    let b = recovered_home(&n1);
    let doc = b.cmd(["--json", "recover", "list"]).run().json();
    assert_eq!(
        doc[0]["result"]["databases"][0]["type"], "valkey",
        "{doc:?}"
    );
    b.run("recover list").stdout_has(" valkey ");
}
