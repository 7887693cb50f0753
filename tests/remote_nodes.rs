//! Nodes on other hosts, over SSH: each test host is its own `sshd` on a loopback address
//! of this machine (tests/common/sshd.rs), reached with the operator's OpenSSH client.

mod common;

use common::sshd::SshLab;

#[test]
fn the_test_hosts_answer_over_ssh_with_strict_host_keys() {
    let lab = SshLab::new();
    let mut known = lab.host();
    let out = lab.ssh(&known, "echo $((40 + 2))");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    let unknown = lab.host_unknown();
    assert_ne!(unknown.addr, known.addr);
    let out = lab.ssh(&unknown, "true");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    known.stop();
    assert!(!lab.ssh(&known, "true").status.success());
}

/// Every operation of the host seam, over SSH, on a real sshd: files (atomic private
/// writes), a daemonized redis-server bound to the host's address, its pid found by its
/// directory, its port seen taken, a signal, the host's cores and memory.
#[test]
fn ssh_host_does_what_the_local_host_does() {
    use lazarus::host::{FileKind, Host, Signal, Spawn, SshHost, SshTarget};
    use std::os::unix::fs::PermissionsExt;

    let lab = SshLab::new();
    let remote = lab.host();
    std::env::set_var(lazarus::host::ssh::CONFIG_ENV, lab.config());
    let target: SshTarget = remote.target().parse().unwrap();
    let host = SshHost::new(target).unwrap();
    let dir = remote.path("n1/shard");
    common::runtime().block_on(async {
        host.connect().await.unwrap();
        host.create_private_dir(&dir).await.unwrap();
        let file = dir.join("it's a file.json");
        host.write_private(&file, b"one").await.unwrap();
        host.write_private(&file, b"two").await.unwrap();
        assert_eq!(host.read(&file).await.unwrap(), b"two");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<String> = host
            .list(&dir)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["it's a file.json"], "no temporary file left");
        let m = host.metadata(&file).await.unwrap();
        assert_eq!((m.kind, m.len), (FileKind::File, 3));
        assert!(m.modified.is_some());
        let missing = host.read(&dir.join("nope")).await.unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        // A log's end: what came after a length, its last bytes, all of a shorter one.
        let log = remote.path("n1/redis.log");
        host.write_private(&log, b"0123456789").await.unwrap();
        for (after, max, want) in [
            (4, 100, &b"456789"[..]),
            (0, 3, b"789"),
            (4, 2, b"89"),
            (10, 100, b""),
            (50, 100, b"0123456789"),
        ] {
            let got = host.read_end(&log, after, max).await.unwrap();
            assert_eq!(got, want, "after {after}, at most {max}");
            let local = lazarus::host::local::read_end(&log, after, max).unwrap();
            assert_eq!(local, want, "the local host, after {after}, at most {max}");
        }
        let missing = host.read_end(&dir.join("nope"), 0, 10).await.unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        // A file's start: its first bytes, all of a shorter one.
        let local_host = lazarus::host::local::LocalHost;
        for (max, want) in [
            (4, &b"0123"[..]),
            (10, b"0123456789"),
            (99, b"0123456789"),
            (0, b""),
        ] {
            assert_eq!(
                host.read_start(&log, max).await.unwrap(),
                want,
                "at most {max}"
            );
            assert_eq!(
                local_host.read_start(&log, max).await.unwrap(),
                want,
                "local, {max}"
            );
        }
        let missing = host.read_start(&dir.join("nope"), 10).await.unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(host.copy(&dir, &remote.path("n1/copy")).await.unwrap(), 3);
        host.rename(&remote.path("n1/copy"), &remote.path("n1/moved"))
            .await
            .unwrap();
        host.remove(&remote.path("n1/moved")).await.unwrap();
        host.remove(&remote.path("n1/moved")).await.unwrap();
        assert!(host.metadata(&remote.path("n1/moved")).await.is_err());

        assert!(host.cores().await >= 1);
        assert!(host.memory().await.total > 0);

        let port = std::net::TcpListener::bind((remote.addr.as_str(), 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(host.port_free(&remote.addr, port).await);
        let server = which("redis-server");
        let out = host
            .spawn_detached(&Spawn {
                program: server,
                args: [
                    "--daemonize",
                    "yes",
                    "--bind",
                    &remote.addr,
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                ]
                .map(String::from)
                .to_vec(),
                cwd: dir.clone(),
            })
            .await
            .unwrap();
        assert!(out.success, "{out:?}");
        let mut pids = Vec::new();
        for _ in 0..100 {
            pids = host.pids_in_dir(&dir).await;
            if !pids.is_empty() && !host.port_free(&remote.addr, port).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(pids.len(), 1, "{pids:?}");
        assert!(!host.port_free(&remote.addr, port).await);
        assert!(host.is_alive_in_dir(pids[0], &dir).await);
        assert!(!host.is_alive_in_dir(pids[0], &remote.path("n1")).await);
        assert_eq!(
            host.process_name(pids[0]).await.as_deref(),
            Some("redis-server")
        );
        host.signal(pids[0], Signal::Term).await.unwrap();
        for _ in 0..100 {
            if !host.is_alive(pids[0]).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(!host.is_alive(pids[0]).await);
        host.signal(pids[0], Signal::Term).await.unwrap();

        // A process whose main thread has exited while another still runs holds its
        // files and ports: alive there, in its directory, until its last thread is gone.
        let exiting = remote.path("n1/exiting");
        std::fs::create_dir_all(&exiting).unwrap();
        let mut child = common::procs::main_thread_exited(&exiting);
        let pid = child.id();
        let alive = host.is_alive(pid).await;
        let in_dir = host.is_alive_in_dir(pid, &exiting).await;
        let listed = host.pids_in_dir(&exiting).await;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(alive, "pid {pid}: its main thread exited, another runs");
        assert!(in_dir, "pid {pid} works in its directory");
        assert_eq!(listed, [pid]);
        assert!(!host.is_alive(pid).await);
    });
}

/// The local side of the seam: a process whose main thread has exited while another still
/// runs (a server killed while its fsync thread waits on a busy disk) holds its files and
/// port until that thread is gone: alive, working in its directory, until then.
#[test]
fn local_host_sees_a_process_alive_until_its_last_thread_has_exited() {
    use lazarus::host::{Host, LocalHost};

    let dir = tempfile::tempdir().unwrap();
    let mut child = common::procs::main_thread_exited(dir.path());
    let pid = child.id();
    let host = LocalHost;
    common::runtime().block_on(async {
        let alive = host.is_alive(pid).await;
        let in_dir = host.is_alive_in_dir(pid, dir.path()).await;
        let listed = host.pids_in_dir(dir.path()).await;
        child.kill().unwrap();
        assert!(alive, "pid {pid}: its main thread exited, another runs");
        assert!(in_dir, "pid {pid} works in its directory");
        assert!(listed.contains(&pid), "{listed:?}");
        // Killed: a zombie until reaped, whose threads have all exited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while host.is_alive(pid).await {
            assert!(std::time::Instant::now() < deadline, "pid {pid} never died");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!host.is_alive_in_dir(pid, dir.path()).await);
    });
    child.wait().unwrap();
}

fn which(name: &str) -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} on PATH"))
}

/// `node add ... ssh`: a host with a known key, a usable path and a redis-server is
/// stored with its server's version; an unknown host key (with the `ssh-keyscan` line to
/// review), a missing redis-server and an unreachable host are refused, nothing stored.
#[test]
fn node_add_over_ssh_checks_the_host_before_storing() {
    let lab = SshLab::new();
    let lz = common::Lazarus::new();
    let config = lab.config();
    let run = |line: String| {
        let words: Vec<String> = lazarus::lang::lex(&line)
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect();
        lz.cmd(words)
            .env("LAZARUS_SSH_CONFIG", config.to_str().unwrap())
            .run()
    };
    let add = |host: &common::sshd::SshHost, extra: &str| {
        format!(
            "node add addr {} persistent_path {} ssh {}{extra}",
            host.addr,
            host.path("node").display(),
            host.target()
        )
    };
    lz.run("cluster create name remote").ok();

    let mut unknown = lab.host_unknown();
    let out = run(add(&unknown, "")).fails(1);
    let line = format!("[{}]:{} ssh-ed25519 ", unknown.addr, unknown.port);
    assert!(out.stderr.contains("is not known here"), "{}", out.stderr);
    assert!(out
        .stderr
        .contains(&format!("ssh-keyscan -p {} {}", unknown.port, unknown.addr)));
    assert!(
        out.stderr.contains(&line),
        "the line to review\n{}",
        out.stderr
    );
    unknown.stop();

    let mut host = lab.host();
    run(add(&host, " redis_server /nonexistent/redis-server"))
        .fails(1)
        .stderr_has("`redis_server` `/nonexistent/redis-server` does not run on");
    assert_eq!(lz.ccs()["nodes"].as_object().map(|n| n.len()), Some(1));
    // The node's `addr` must be the SSH host's own: another loopback address is, from
    // here, this machine; an address the host does not have is named with the ones it has.
    let with_addr = |addr: &str| {
        format!(
            "node add addr {addr} persistent_path {} ssh {}",
            host.path("node").display(),
            host.target()
        )
    };
    let other_loopback = if host.addr == "127.0.0.1" {
        "127.0.0.9"
    } else {
        "127.0.0.1"
    };
    run(with_addr(other_loopback))
        .fails(1)
        .stderr_has(&format!(
            "addr `{other_loopback}` is a loopback address, and `{}` (reached at {}) is another machine",
            host.target(),
            host.addr
        ))
        .stderr_has(&format!("such as `{}`", host.addr));
    run(with_addr("203.0.113.7"))
        .fails(1)
        .stderr_has(&format!(
            "addr `203.0.113.7` is not an address of `{}` (reached at {}), where the node's shards bind it; its addresses: 127.0.0.1/8",
            host.target(),
            host.addr
        ));
    assert_eq!(lz.ccs()["nodes"].as_object().map(|n| n.len()), Some(1));

    let out = run(add(&host, &format!(" ssh_key {}", lab.key().display())))
        .ok()
        .stdout_has(&format!("over ssh to `{}`", host.target()));
    assert!(out.stdout.contains("engine redis "), "{}", out.stdout);
    let nodes = lz.ccs()["nodes"].clone();
    let node = nodes
        .as_object()
        .unwrap()
        .values()
        .next_back()
        .unwrap()
        .clone();
    assert_eq!(node["ssh"]["host"], host.addr.as_str());
    assert_eq!(node["ssh"]["port"], host.port);
    assert_eq!(node["ssh"]["key"], lab.key().to_str().unwrap());
    assert_eq!(node["redis_server"]["engine"], "redis");
    assert!(host.path("node").is_dir());
    // Its range (a default block) is checked against the ephemeral ports of its own
    // machine, read there.
    let range: lazarus::ccs::PortRange =
        serde_json::from_value(node["port_range"].clone()).unwrap();
    let ephemeral = std::fs::read_to_string(lazarus::ccs::rules::EPHEMERAL_PORTS_FILE)
        .ok()
        .and_then(|t| lazarus::ccs::rules::parse_ephemeral_ports(&t));
    if ephemeral.is_some_and(|e| lazarus::ccs::rules::ephemeral_overlap(2, range, e, "").is_some())
    {
        out.stdout_has(&format!(
            "warning: node:2's port range `{range}` on ssh://{}: ",
            host.target()
        ));
    }

    // A recovery path is checked on the node's machine.
    run(format!(
        "node 2 recovery_path set {}",
        host.path("old").display()
    ))
    .fails(1)
    .stderr_has("does not exist on");
    std::fs::create_dir_all(host.path("old")).unwrap();
    run(format!(
        "node 2 recovery_path set {}",
        host.path("old").display()
    ))
    .ok();
    assert_eq!(
        lz.ccs()["nodes"]["2"]["recovery_path"],
        host.path("old").canonicalize().unwrap().to_str().unwrap()
    );
    // So is a new server binary: over ssh, named with the host.
    run("node 2 redis_server set /nonexistent/redis-server".into())
        .fails(1)
        .stderr_has(&format!("does not run on `{}`", host.target()));
    run(format!(
        "node 2 redis_server set {}",
        which("redis-server").display()
    ))
    .ok();
    assert_eq!(lz.ccs()["nodes"]["2"]["redis_server"]["engine"], "redis");

    host.stop();
    let again = format!(
        "node add addr {} persistent_path {} ssh {}",
        host.addr,
        host.path("other").display(),
        host.target()
    );
    run(again).fails(1).stderr_has("does not answer over ssh");
    assert_eq!(lz.ccs()["nodes"].as_object().map(|n| n.len()), Some(2));
}

/// Issue 13, test 1: three hosts — this machine and two reached by SSH — with a 3-shard
/// replicated database spread over them: each host's shards run there (bound to its
/// address, working under its disk), data written through a cluster client reads back,
/// `status` reports each host's own row, `restart db` and `delete db purge` reach every
/// host's processes and files.
#[test]
fn a_database_spans_this_machine_and_two_ssh_hosts() {
    let lab = SshLab::new();
    let hosts = [lab.host(), lab.host()];
    let lz = common::Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    let run = runner(&lz, &lab);
    run(&format!(
        "cluster create name span persistent_path {} addr 127.0.0.1",
        lz.path("n1").display()
    ))
    .ok();
    let base = lz.own_port_range();
    // Each host binds its own address: one range serves both.
    for host in &hosts {
        add_ssh_node(&run, host, base + common::ports::NODE_PORTS);
    }
    run("create db spread shards 3 replication enabled persistence snapshot").ok();

    let status = run("--json status").ok().json();
    let result = &status[0]["result"];
    let shards = result["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 6, "{result}");
    assert!(shards.iter().all(|s| s["status"] == "OK"), "{result}");
    let on = |node: u64| -> Vec<&serde_json::Value> {
        shards.iter().filter(|s| s["node"] == node).collect()
    };
    assert!(!on(1).is_empty(), "{result}");
    for (node, host) in [(2u64, &hosts[0]), (3, &hosts[1])] {
        let here = on(node);
        assert!(!here.is_empty(), "node:{node} holds no shard: {result}");
        let row = result["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == node)
            .unwrap();
        assert_eq!(row["status"], "OK", "{row}");
        assert!(row["cores"].as_u64().unwrap() >= 1, "{row}");
        assert!(row["total_ram"].as_u64().unwrap() > 0, "{row}");
        // The host's shards run there: under its disk, answering on its address.
        assert_eq!(host.pids().len(), here.len(), "{:?}", host.pids());
        let port = here[0]["port"].as_u64().unwrap() as u16;
        std::net::TcpStream::connect((host.addr.as_str(), port))
            .expect("bound to the host's address");
    }

    let endpoint = format!("redis://127.0.0.1:{}", on(1)[0]["port"]);
    common::runtime().block_on(async {
        let client = redis::cluster::ClusterClient::new(vec![endpoint]).unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        for i in 0..50 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query_async(&mut con)
                .await
                .unwrap();
        }
        for i in 0..50 {
            let v: i64 = redis::cmd("GET")
                .arg(format!("k{i}"))
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!(v, i);
        }
    });

    run("restart db spread").ok();
    let status = run("--json status").ok().json();
    for s in status[0]["result"]["shards"].as_array().unwrap() {
        assert_eq!(s["status"], "OK", "{s}");
    }
    for (node, host) in [(2u64, &hosts[0]), (3, &hosts[1])] {
        assert_eq!(host.pids().len(), on(node).len(), "node:{node}");
    }

    run("delete db spread purge").ok();
    for host in &hosts {
        assert!(host.pids().is_empty(), "{:?}", host.pids());
        // Only the database's tombstone stays, beside where its directory was.
        let left: Vec<String> = std::fs::read_dir(host.path("n2/redis"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n.ends_with(".deleted.json")),
            "the database's directory on {} is purged: {left:?}",
            host.addr
        );
    }
}

/// One-shot runs of `lz` that reach the lab's hosts.
fn runner<'a>(lz: &'a common::Lazarus, lab: &'a SshLab) -> impl Fn(&str) -> common::Output + 'a {
    move |line: &str| {
        let words: Vec<String> = lazarus::lang::lex(line)
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect();
        lz.cmd(words)
            .env("LAZARUS_SSH_CONFIG", lab.config().to_str().unwrap())
            .run()
    }
}

/// This machine's node:1 with its data under `disks` on a port range of its own
/// ([`common::ports`]), stored as `lz`'s CCS. Returns the range's first port.
fn local_node_on(lz: &common::Lazarus, disks: &std::path::Path) -> u16 {
    let cluster = common::world::test_cluster(disks, 1);
    let lo = cluster.nodes[&1].port_range.lo;
    lz.install(&cluster);
    lo
}

/// `node add` of a lab host as the next node (`<host>/n2`), ports `lo..=lo+29`.
fn add_ssh_node(run: &impl Fn(&str) -> common::Output, host: &common::sshd::SshHost, lo: u16) {
    run(&format!(
        "node add addr {} persistent_path {} ssh {} port_range {}-{}",
        host.addr,
        host.path("n2").display(),
        host.target(),
        lo,
        lo + 29
    ))
    .ok();
}

/// The drills' first steps on a new home: `cluster recover` from the CCS backup on this
/// machine's old disk `disk1`, then node:1's recovery path there and node:2's on its
/// host's old disk `disk2`.
fn recover_configuration(
    run: &impl Fn(&str) -> common::Output,
    disk1: &std::path::Path,
    disk2: &std::path::Path,
) {
    run(&format!(
        "cluster recover filename {} node_uid 1",
        disk1.join("ccs/ccs.json").display()
    ))
    .ok();
    run(&format!("node 1 recovery_path set {}", disk1.display())).ok();
    run(&format!("node 2 recovery_path set {}", disk2.display())).ok();
}

/// Every file under `root` with its length: what recovery must leave as it was.
fn tree(root: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut next = vec![root.to_path_buf()];
    while let Some(dir) = next.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                next.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                out.push((rel, m.len()));
            }
        }
    }
    out.sort();
    out
}

/// Writes `k0..k{n}` through a cluster client at `endpoint`, or reads them back.
fn keys(endpoint: &str, n: u32, write: bool) -> Vec<Option<String>> {
    common::runtime().block_on(async {
        let client = redis::cluster::ClusterClient::new(vec![endpoint.to_string()]).unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            let key = format!("k{i}");
            if write {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(format!("v{i}"))
                    .query_async(&mut con)
                    .await
                    .unwrap();
            } else {
                out.push(
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut con)
                        .await
                        .unwrap(),
                );
            }
        }
        out
    })
}

/// The drill across hosts: a replicated 2-shard database over this machine and an SSH
/// host; every shard killed, the home lost, the old disks moved aside on each machine;
/// `cluster recover` from the local node's CCS backup, a recovery path per node (the
/// remote one checked there), `recover list` validating the remote files where they lie
/// (by this binary shipped there, checked by hash), `recover all` copying them on that
/// host into its new shard directories: the data is back, the originals untouched.
#[test]
fn recovery_reads_and_copies_files_on_the_ssh_host() {
    let lab = SshLab::new();
    let host = lab.host();
    let disks = tempfile::tempdir().unwrap();
    let local = |rel: &str| disks.path().join(rel);
    let old = common::Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(disks.path());
    let run = runner(&old, &lab);
    spread_over(&run, &old, &host, disks.path());
    let shards = shards_of(&run, "spread");
    let endpoint = format!("redis://127.0.0.1:{}", shards[0]["port"]);
    keys(&endpoint, 60, true);
    let want = keys(&endpoint, 60, false);
    assert!(want.iter().all(Option::is_some));
    on_disk(&old);

    // The disaster: every shard on both machines, the home, the disks moved aside.
    common::procs::kill_and_wait(&host.pids());
    common::procs::kill_and_wait(&common::procs::pids_under(disks.path()));
    drop(run);
    drop(old);
    std::fs::rename(local("old/node1"), local("disk1")).unwrap();
    std::fs::rename(host.path("n2"), host.path("disk2")).unwrap();
    let remote_before = tree(&host.path("disk2"));

    let lz = common::Lazarus::new();
    let run = runner(&lz, &lab);
    recover_configuration(&run, &local("disk1"), &host.path("disk2"));
    let list = run("recover list").ok();
    assert!(list.stdout.contains("ready"), "{}", list.stdout);
    assert!(!list.stdout.contains("missing files"), "{}", list.stdout);
    // The remote files were read there, by this binary shipped beside the node's data.
    let shipped: Vec<_> = std::fs::read_dir(host.path("n2/.lazarus/bin"))
        .expect("the reader shipped to the host")
        .flatten()
        .collect();
    assert_eq!(shipped.len(), 1, "{shipped:?}");

    let out = run("recover all").ok();
    assert!(
        out.stdout.contains("Completed successfully"),
        "{}",
        out.stdout
    );
    // The remote masters' AOFs were streamed through their host to the digest here.
    assert!(out.stdout.contains("content verified: "), "{}", out.stdout);
    assert!(
        !out.stdout.contains("content not verified"),
        "{}",
        out.stdout
    );
    let shards = shards_of(&run, "spread");
    assert!(shards.iter().all(|s| s["status"] == "OK"), "{shards:?}");
    assert_eq!(host.pids().len(), 2, "the host's shards run there again");
    let endpoint = format!("redis://127.0.0.1:{}", shards[0]["port"]);
    assert_eq!(keys(&endpoint, 60, false), want);
    // New shard directories on the host hold the files, linked there (`ln`) but for the
    // last incr each server appends to, its own; the originals are untouched.
    assert!(host.path("n2/redis").is_dir());
    let mut aofs = Vec::new();
    let mut stack = vec![host.path("n2/redis")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "appendonlydir") {
                aofs.push(p);
            } else if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(!aofs.is_empty());
    let links =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(p).unwrap());
    // (A replica's files are its own, made by its first sync.)
    let mut linked = 0;
    for aof in &aofs {
        let manifest = std::fs::read_to_string(aof.join("appendonly.aof.manifest")).unwrap();
        let part = |kind: &str| {
            let line = manifest.lines().rfind(|l| l.ends_with(kind)).unwrap();
            aof.join(line.split_whitespace().nth(1).unwrap())
        };
        linked += usize::from(links(&part("type b")) == 2);
        assert_eq!(links(&part("type i")), 1, "{}", aof.display());
    }
    assert_eq!(linked, 1, "the host's master's base is a link: {aofs:?}");
    assert_eq!(tree(&host.path("disk2")), remote_before);
    run("delete db spread").ok();
}

/// Issue 13, test 3: one host lost for good (its sshd and servers gone, its disk moved
/// away) while this machine's shards and home are lost too: `cluster recover` from this
/// machine's disk, `node 2 remove` places the lost host's shards here (its master where
/// its replica's files lie), and `recover all` brings every key back from the replicas'
/// files on the machine left.
#[test]
fn a_host_lost_for_good_comes_back_from_the_replicas_files_on_the_others() {
    let lab = SshLab::new();
    let mut host = lab.host();
    let disks = tempfile::tempdir().unwrap();
    let local = |rel: &str| disks.path().join(rel);
    let old = common::Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(disks.path());
    let run = runner(&old, &lab);
    spread_over(&run, &old, &host, disks.path());
    let shards = shards_of(&run, "spread");
    assert!(
        shards
            .iter()
            .any(|s| s["node"] == 2 && s["role"] == "master"),
        "a master lives on the host: {shards:?}"
    );
    let endpoint = format!("redis://127.0.0.1:{}", shards[0]["port"]);
    keys(&endpoint, 60, true);
    let want = keys(&endpoint, 60, false);
    assert!(want.iter().all(Option::is_some));
    // Every shard, replicas included, has its writes in its AOF.
    on_disk(&old);

    // The host is lost for good; this machine's servers and home are lost too.
    host.stop();
    std::fs::rename(host.path("n2"), host.path("gone")).unwrap();
    common::procs::kill_and_wait(&common::procs::pids_under(disks.path()));
    drop(run);
    drop(old);
    std::fs::rename(local("old/node1"), local("disk1")).unwrap();

    let lz = common::Lazarus::new();
    let run = runner(&lz, &lab);
    // The lost host does not keep the configuration from coming back: it is said.
    let recovered = run(&format!(
        "cluster recover filename {} node_uid 1",
        local("disk1").join("ccs/ccs.json").display()
    ))
    .ok();
    let said = format!("{}{}", recovered.stdout, recovered.stderr);
    assert!(said.contains("`node:2` does not answer"), "{said}");
    assert!(said.contains("`node 2 remove`"), "{said}");
    run(&format!(
        "node 1 recovery_path set {}",
        local("disk1").display()
    ))
    .ok();
    let removed = run("node 2 remove").ok();
    assert!(
        removed.stdout.contains("now on node:1"),
        "{}",
        removed.stdout
    );
    let list = run("recover list").ok();
    assert!(list.stdout.contains("ready"), "{}", list.stdout);
    let out = run("recover all").ok();
    assert!(
        out.stdout.contains("Completed successfully"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("content verified: "), "{}", out.stdout);
    // Every shard serves, each master beside its replicas on the one node left: `status`
    // fails naming them (one more lost node loses the data).
    let status = run("--json status shards").fails(1).json();
    let shards: Vec<serde_json::Value> = status[0]["result"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "spread")
        .cloned()
        .collect();
    assert!(
        shards.iter().all(|s| s["status"]
            == if s["role"] == "master" {
                "NO REPLICA ELSEWHERE"
            } else {
                "OK"
            }),
        "{shards:?}"
    );
    assert!(shards.iter().all(|s| s["node"] == 1), "{shards:?}");
    let endpoint = format!("redis://127.0.0.1:{}", shards[0]["port"]);
    assert_eq!(keys(&endpoint, 60, false), want);
    run("delete db spread").ok();
}

/// CCS backups are written to every node's disk through its host: the SSH node's copy
/// follows every save; once its host no longer answers, saves go on (a lost machine
/// must not stop the cluster's changes) and its copy stays as it was.
#[test]
fn ccs_backups_reach_the_ssh_node_and_a_lost_host_does_not_stop_saves() {
    let lab = SshLab::new();
    let mut host = lab.host();
    let lz = common::Lazarus::new();
    let run = runner(&lz, &lab);
    run(&format!(
        "cluster create name backups persistent_path {} addr 127.0.0.1",
        lz.path("n1").display()
    ))
    .ok();
    lz.own_port_range();
    run(&format!(
        "node add addr {} persistent_path {} ssh {}",
        host.addr,
        host.path("n2").display(),
        host.target()
    ))
    .ok();
    let generation = |path: &std::path::Path| -> u64 {
        let text = std::fs::read_to_string(path).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["generation"]
            .as_u64()
            .unwrap()
    };
    let remote = host.path("n2/ccs/ccs.json");
    let home = lz.path("ccs.json");
    assert_eq!(generation(&remote), generation(&home));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&remote).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    std::fs::create_dir_all(lz.path("old1")).unwrap();
    run(&format!(
        "node 1 recovery_path set {}",
        lz.path("old1").display()
    ))
    .ok();
    assert_eq!(generation(&remote), generation(&home));

    // A host that hangs (connections accepted, never answered) is one that cannot be
    // reached: it keeps its older copy and the save goes on once ssh gives up on it.
    std::fs::create_dir_all(lz.path("old2")).unwrap();
    host.freeze();
    let before = generation(&remote);
    run(&format!(
        "node 1 recovery_path set {}",
        lz.path("old2").display()
    ))
    .ok();
    host.thaw();
    assert_eq!(generation(&home), before + 1, "the save went on");
    assert_eq!(
        generation(&remote),
        before,
        "the hung host's copy is as it was"
    );

    host.stop();
    let before = generation(&home);
    let remote_before = generation(&remote);
    run("node 1 recovery_path clear").ok();
    assert_eq!(generation(&home), before + 1, "the save went on");
    assert_eq!(
        generation(&remote),
        remote_before,
        "the lost host's copy is as it was"
    );
    assert_eq!(generation(&lz.path("n1/ccs/ccs.json")), before + 1);
}

/// TLS material reaches a node over SSH: `node add` copies the cluster's material there
/// (directories 0700, files 0600), a TLS database's replica runs on it with that
/// material, and a rotation (`cluster tls set`) installs the new material there too.
#[test]
fn tls_material_is_copied_to_the_ssh_node() {
    use std::os::unix::fs::PermissionsExt;
    let lab = SshLab::new();
    let host = lab.host();
    let lz = common::Lazarus::new();
    let disks = tempfile::tempdir().unwrap();
    let _guard = common::procs::ProcessGuard::new(disks.path());
    let run = runner(&lz, &lab);
    let lo = local_node_on(&lz, disks.path());
    let ca = common::certs::Ca::new("lazarus test CA");
    let leaf = |n: &str| {
        let (cert, key) = ca.leaf_with(|p| {
            p.subject_alt_names
                .push(rcgen::SanType::IpAddress(host.addr.parse().unwrap()))
        });
        common::certs::write_files(&lz.path("in"), n, &ca.pem(), &cert, &key)
    };
    let set = |f: &common::certs::Files| {
        format!(
            "cluster tls set cacert {} cert {} key {}",
            f.cacert.display(),
            f.cert.display(),
            f.key.display()
        )
    };
    run(&set(&leaf("a-"))).ok();
    add_ssh_node(&run, &host, lo + 30);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let material = |ccs: &serde_json::Value| -> std::path::PathBuf {
        let tls = host.path("n2/tls");
        let current: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tls.join("current.json")).unwrap())
                .unwrap();
        assert_eq!(current["cert"]["sha256"], ccs["tls"]["cert"]["sha256"]);
        let dirs: Vec<_> = std::fs::read_dir(&tls)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    };
    let dir = material(&lz.ccs());
    assert_eq!(mode(&host.path("n2/tls")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    for f in ["ca.crt", "cert.crt", "key.pem"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }

    run("create db secure shards 1 replication enabled tls enabled").ok();
    let status = run("--json status shards").ok().json();
    let shards = status[0]["result"]["shards"].as_array().unwrap().clone();
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert!(shards.iter().all(|s| s["status"] == "OK"), "{shards:?}");
    assert!(shards.iter().any(|s| s["node"] == 2), "{shards:?}");

    run(&set(&leaf("b-"))).ok();
    let rotated = material(&lz.ccs());
    assert_ne!(rotated, dir, "the new material has its own directory there");
    let status = run("--json status").ok().json();
    let shards = status[0]["result"]["shards"].as_array().unwrap().clone();
    assert!(shards.iter().all(|s| s["status"] == "OK"), "{shards:?}");
    let endpoint = status[0]["result"]["endpoints"][0].clone();
    assert!(endpoint["cert_expires"].is_string(), "{endpoint}");
    assert!(endpoint["tls_issue"].is_null(), "{endpoint}");
    // The expiry is read on each node, not from the record: a node whose installed
    // certificate is damaged is named (its running servers keep the one they loaded).
    std::fs::write(rotated.join("cert.crt"), "not a certificate").unwrap();
    let status = run("--json status endpoints").ok().json();
    let issue = status[0]["result"]["endpoints"][0]["tls_issue"].to_string();
    assert!(
        issue.contains("node:2's certificate") && issue.contains("holds no certificate"),
        "{issue}"
    );
    run("delete db secure").ok();
}

/// Backups of a database with a master on an SSH host: the cut is pulled over the Redis
/// protocol from every master wherever it runs, and the run holds every key. A restore
/// task puts it back across hosts: staged on the SSH node through its host, fenced,
/// swapped, loaded there and proved by content. `target_path` (a directory of this
/// machine) is refused for shards on the other host before anything changes.
#[test]
fn a_backup_reaches_shards_on_the_ssh_host_and_restores_there() {
    let lab = SshLab::new();
    let host = lab.host();
    let lz = common::Lazarus::new();
    let disks = tempfile::tempdir().unwrap();
    let _guard = common::procs::ProcessGuard::new(disks.path());
    let run = runner(&lz, &lab);
    let lo = local_node_on(&lz, disks.path());
    add_ssh_node(&run, &host, lo + 30);
    run("create db spread shards 2 persistence snapshot").ok();
    let status = run("--json status shards").ok().json();
    let shards = status[0]["result"]["shards"].as_array().unwrap().clone();
    assert!(shards.iter().any(|s| s["node"] == 2), "{shards:?}");
    let endpoint = format!("redis://127.0.0.1:{}", shards[0]["port"]);
    keys(&endpoint, 60, true);

    let repo = disks.path().join("repo");
    let out = run(&format!("--json backup db spread path {}", repo.display())).ok();
    let id = out.json()[0]["result"]["id"].as_str().unwrap().to_string();
    let m = run(&format!("--json backup show {id}")).ok().json()[0]["result"].clone();
    let entries = m["shards"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{m}");
    let total: u64 = entries.iter().map(|s| s["keys"].as_u64().unwrap()).sum();
    assert_eq!(total, 60, "{m}");

    // After the backup every key changes (on both hosts), and one more is written.
    common::runtime().block_on(async {
        let client = redis::cluster::ClusterClient::new(vec![endpoint.clone()]).unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        for i in 0..60 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg("changed")
                .query_async(&mut con)
                .await
                .unwrap();
        }
        let _: () = redis::cmd("SET")
            .arg("after-the-backup")
            .arg(1)
            .query_async(&mut con)
            .await
            .unwrap();
    });

    let staging = disks.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    run(&format!(
        "restore task create name here db spread backup {id} force target_path {}",
        staging.display()
    ))
    .ok();
    run("restore task verify here")
        .fails(1)
        .stderr_has("is a directory of this machine");

    run(&format!(
        "restore task create name back db spread backup {id} force"
    ))
    .ok();
    run("restore task verify back").ok();
    run("restore task start back")
        .ok()
        .stdout_has("content verified: ");
    let back = keys(&endpoint, 60, false);
    let want: Vec<Option<String>> = (0..60).map(|i| Some(format!("v{i}"))).collect();
    assert_eq!(back, want);
    let shards = shards_of(&run, "spread");
    assert!(shards.iter().all(|s| s["status"] == "OK"), "{shards:?}");
    assert_eq!(host.pids().len(), 1, "{:?}", host.pids());
    // Nothing of the restore is left on the SSH node's disk.
    let left: Vec<(String, u64)> = tree(&host.path("n2/redis"))
        .into_iter()
        .filter(|(p, _)| p.contains(".lazarus-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    run("delete db spread").ok();
}

/// [`keys`] through a plain client (a database of one shard is no Redis Cluster).
fn plain_keys(endpoint: &str, n: u32, write: bool) -> Vec<Option<String>> {
    let mut con = redis::Client::open(endpoint)
        .unwrap()
        .get_connection()
        .unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        if write {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(format!("v{i}"))
                .query(&mut con)
                .unwrap();
        } else {
            out.push(
                redis::cmd("GET")
                    .arg(format!("k{i}"))
                    .query(&mut con)
                    .unwrap(),
            );
        }
    }
    out
}

/// This machine's node on `disks` and the SSH host's, and database `spread` over them: 2
/// shards, replicated, AOF.
fn spread_over(
    run: &impl Fn(&str) -> common::Output,
    lz: &common::Lazarus,
    host: &common::sshd::SshHost,
    disks: &std::path::Path,
) {
    let base = local_node_on(lz, disks) + 30;
    add_ssh_node(run, host, base + 30);
    run("create db spread shards 2 replication enabled persistence aof").ok();
}

/// Every write acknowledged so far is on the disks of `lz`'s cluster, here and on the
/// hosts: each replica caught up with its master, snapshot databases saved (replicas
/// included), every AOF buffer written (`appendfsync everysec` holds a write back while
/// an fsync runs on a busy disk). A fixed sleep lost writes to a loaded machine.
fn on_disk(lz: &common::Lazarus) {
    let cluster = lazarus::ccs::Store::new(lz.home().to_path_buf())
        .load()
        .unwrap()
        .unwrap();
    common::runtime().block_on(common::world::save_snapshots(&cluster));
}

/// The `--json status shards` rows of database `name`.
fn shards_of(run: &impl Fn(&str) -> common::Output, name: &str) -> Vec<serde_json::Value> {
    let status = run("--json status shards").ok().json();
    status[0]["result"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == name)
        .cloned()
        .collect()
}

/// Files on the SSH host that recovery cannot load there are written key by key from
/// here, streamed through the host: `recover db <db> replay` of a replica's snapshot
/// there newer than the server loads (its master's file lost), and `recover db <db>
/// from_files` filling a master that came back EMPTY from its AOF directory (manifest
/// and parts) found on the host since.
#[test]
fn replay_and_from_files_stream_the_ssh_hosts_files() {
    let lab = SshLab::new();
    let host = lab.host();
    let disks = tempfile::tempdir().unwrap();
    let local = |rel: &str| disks.path().join(rel);
    let old = common::Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(disks.path());
    let run = runner(&old, &lab);
    let base = local_node_on(&old, disks.path()) + 30;
    add_ssh_node(&run, &host, base + 30);
    // One master here, its replica on the host (replay fills a master before the slot
    // map of a multi-shard database is formed, so it takes one shard).
    run("create db snap replication enabled persistence snapshot").ok();
    run("create db log shards 2 persistence aof").ok();
    let mut want = std::collections::BTreeMap::new();
    let mut on_host = std::collections::BTreeMap::new();
    let mut snap_master = None;
    for name in ["snap", "log"] {
        let shards = shards_of(&run, name);
        let endpoint = format!("redis://127.0.0.1:{}", shards[0]["port"]);
        let io = if name == "snap" { plain_keys } else { keys };
        io(&endpoint, 40, true);
        want.insert(name, io(&endpoint, 40, false));
        let remote = shards
            .iter()
            .find(|s| s["node"] == 2)
            .expect("a shard there");
        on_host.insert(name, (remote["db_id"].clone(), remote["id"].clone()));
        let here = shards.iter().find(|s| s["node"] == 1).unwrap();
        if name == "snap" {
            snap_master = Some((here["db_id"].clone(), here["id"].clone()));
        }
    }
    // The replica has the writes and saved them; the AOF has its writes.
    on_disk(&old);
    common::procs::kill_and_wait(&host.pids());
    common::procs::kill_and_wait(&common::procs::pids_under(disks.path()));
    drop(run);
    drop(old);
    std::fs::rename(local("old/node1"), local("disk1")).unwrap();
    std::fs::rename(host.path("n2"), host.path("disk2")).unwrap();
    let shard_dir = |name: &str| {
        let (db, shard) = &on_host[name];
        host.path(&format!("disk2/redis/db-{db}/shard-{shard}"))
    };
    // The master's snapshot is lost, the replica's on the host newer than the server
    // loads; the host's AOF is not found yet.
    let (db, shard) = snap_master.unwrap();
    std::fs::remove_file(local(&format!(
        "disk1/redis/db-{db}/shard-{shard}/dump.rdb"
    )))
    .unwrap();
    common::data::make_rdb_11(&shard_dir("snap").join("dump.rdb"));
    let aof = shard_dir("log").join("appendonlydir");
    let aside = host.path("aside");
    std::fs::rename(&aof, &aside).unwrap();

    let lz = common::Lazarus::new();
    let run = runner(&lz, &lab);
    recover_configuration(&run, &local("disk1"), &host.path("disk2"));
    run("recover db snap")
        .fails(1)
        .stdout_has("`replay` can write");
    run("recover db snap replay")
        .ok()
        .stdout_has("snapshot replayed as commands")
        .stdout_has("content verified");
    let shards = shards_of(&run, "snap");
    assert_eq!(
        plain_keys(
            &format!("redis://127.0.0.1:{}", shards[0]["port"]),
            40,
            false
        ),
        want["snap"]
    );

    run("recover db log allow_empty verify counts")
        .ok()
        .stdout_has("came back EMPTY");
    // Found: back in place on the host, and its recovery path (cleared once every
    // database was back) set again.
    std::fs::rename(&aside, &aof).unwrap();
    run(&format!(
        "node 2 recovery_path set {}",
        host.path("disk2").display()
    ))
    .ok();
    run("recover db log from_files")
        .ok()
        .stdout_has("filled from AOF")
        .stdout_has("content verified");
    let shards = shards_of(&run, "log");
    assert_eq!(
        keys(
            &format!("redis://127.0.0.1:{}", shards[0]["port"]),
            40,
            false
        ),
        want["log"]
    );
    run("delete db snap").ok();
    run("delete db log").ok();
}

/// No CCS backup given: `cluster recover cluster_id <id>` rebuilds the configuration
/// from the identity files on this machine's old disk and on the SSH host's
/// (`recovery_path ssh://host/dir`), read through the host; the node found there is
/// reached over SSH. A wrong cluster_id and a too-small alloc_id are refused as for a
/// local disk, naming the remote files; `recover all` then brings the data back on both.
#[test]
fn identity_files_on_the_ssh_host_rebuild_the_configuration() {
    let lab = SshLab::new();
    let host = lab.host();
    let disks = tempfile::tempdir().unwrap();
    let local = |rel: &str| disks.path().join(rel);
    let old = common::Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(disks.path());
    let run = runner(&old, &lab);
    let base = local_node_on(&old, disks.path()) + 30;
    add_ssh_node(&run, &host, base + 30);
    run("create db spread shards 2 persistence snapshot").ok();
    let shards = shards_of(&run, "spread");
    let endpoint = format!("redis://127.0.0.1:{}", shards[0]["port"]);
    keys(&endpoint, 30, true);
    let want = keys(&endpoint, 30, false);
    for s in &shards {
        let addr = if s["node"] == 2 {
            &host.addr
        } else {
            "127.0.0.1"
        };
        let url = format!("redis://{addr}:{}", s["port"]);
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    }
    let cluster_id = old.ccs()["cluster_id"].as_str().unwrap().to_string();
    common::procs::kill_and_wait(&host.pids());
    common::procs::kill_and_wait(&common::procs::pids_under(disks.path()));
    drop(run);
    drop(old);
    std::fs::rename(local("old/node1"), local("disk1")).unwrap();
    std::fs::rename(host.path("n2"), host.path("disk2")).unwrap();
    let remote_before = tree(&host.path("disk2"));
    let url = format!("ssh://{}{}", host.target(), host.path("disk2").display());

    let lz = common::Lazarus::new();
    let run = runner(&lz, &lab);
    run(&format!(
        "cluster recover cluster_id 999 recovery_path {url}"
    ))
    .fails(1)
    .stderr_has(&format!(
        "no shard identity file of cluster_id 999 found under `{url}`"
    ))
    .stderr_has(&format!("found files of cluster_id {cluster_id} only"));
    run(&format!(
        "cluster recover cluster_id {cluster_id} recovery_path {url} alloc_id 2"
    ))
    .fails(1)
    .stderr_has("alloc_id 2 is too small")
    .stderr_has(&host.path("disk2").display().to_string());
    assert!(!lz.path("ccs.json").exists(), "nothing stored");

    let out = run(&format!(
        "cluster recover cluster_id {cluster_id} recovery_path {} {url}",
        local("disk1").display()
    ))
    .ok();
    assert!(
        out.stdout.contains("this machine is node:1"),
        "{}",
        out.stdout
    );
    let ccs = lz.ccs();
    let node2 = &ccs["nodes"]["2"];
    assert_eq!(node2["ssh"]["host"], host.addr.as_str(), "{node2}");
    assert_eq!(
        node2["recovery_path"],
        host.path("disk2").display().to_string(),
        "{node2}"
    );
    assert!(ccs["nodes"]["1"]["ssh"].is_null());
    // The node's new data goes beside its old disk, there; its CCS backup too.
    let pp = host.path("disk2-recovered");
    assert_eq!(node2["persistent_path"], pp.display().to_string());
    assert!(pp.join("ccs/ccs.json").is_file());

    run("recover all").ok().stdout_has("Completed successfully");
    assert_eq!(host.pids().len(), 1, "the host's shard runs there again");
    let shards = shards_of(&run, "spread");
    let endpoint = format!("redis://127.0.0.1:{}", shards[0]["port"]);
    assert_eq!(keys(&endpoint, 30, false), want);
    assert_eq!(tree(&host.path("disk2")), remote_before);
    // The host's RDB was brought by a hard link there (`ln`), not a copy.
    let mut rdbs = Vec::new();
    let mut stack = vec![pp.join("redis")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "dump.rdb") {
                rdbs.push(p);
            }
        }
    }
    assert_eq!(rdbs.len(), 1, "{rdbs:?}");
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&rdbs[0]).unwrap()),
        2
    );
    run("delete db spread").ok();
    assert_eq!(tree(&host.path("disk2")), remote_before);

    // The old cluster's CCS backup on the host's old disk, named where it lies.
    let again = common::Lazarus::new();
    let run = runner(&again, &lab);
    run(&format!("cluster recover filename {url}/ccs node_uid 1"))
        .ok()
        .stdout_has("from its CCS backup");
    assert_eq!(again.ccs()["nodes"]["2"]["ssh"]["host"], host.addr.as_str());
}
