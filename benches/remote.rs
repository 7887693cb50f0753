//! Benchmark (not a test): `status` and `recover list` over nodes on other hosts, issue
//! 13's scale check: 3 hosts × 50 shards. Each host is a real `sshd` on its own loopback
//! address (tests/common/sshd.rs); every shard is a real `redis-server` bound to its
//! host's address, started in its shard directory as Lazarus lays them out, each holding
//! a small snapshot. `status` asks every shard and every host (cores, memory, processes);
//! then the shards are stopped, their disks moved aside and every database marked for
//! recovery: `recover list` validates every file where it lies (the binary shipped to
//! each host once, on the first run).
//!
//! Run: `cargo bench --bench remote` (`BENCH_REMOTE_HOSTS=3`, `BENCH_REMOTE_SHARDS=50`
//! per host, `BENCH_REMOTE_RUNS=3`, `BENCH_REMOTE_CONCURRENCY` for `--max-concurrency`)

#[allow(dead_code)]
#[path = "../tests/common/procs.rs"]
mod procs;
#[path = "../tests/common/sshd.rs"]
#[allow(dead_code)]
mod sshd;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lazarus::ccs::{
    Cluster, Database, DbConfig, DbState, Node, Persistence, PortRange, Role, Shard, CCS_FORMAT,
};
use lazarus::host::SshTarget;

fn redis_server() -> std::path::PathBuf {
    lazarus::server::RedisServer::locate(None, None)
        .expect("redis-server installed")
        .path
}

/// A small `dump.rdb` (200 keys) written by a real server.
fn sample_rdb(dir: &Path) -> std::path::PathBuf {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(redis_server())
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut con = loop {
        if let Ok(c) = client.get_connection() {
            break c;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value {i}"))
            .query(&mut con)
            .unwrap();
    }
    let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    dir.join("dump.rdb")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The first of `n` consecutive ports free on every address of `addrs` (each bound and
/// let go), from a random start in 12000-19999 as the tests' blocks start (clear of the
/// ephemeral ports the benchmark's own connections take): never a fixed port.
fn free_block(addrs: &[&str], n: u16) -> u16 {
    const FIRST: u16 = 12_000;
    const SPAN: u16 = 8_000;
    assert!(
        (1..SPAN).contains(&n),
        "{n} shards a host: at most {}",
        SPAN - 1
    );
    for _ in 0..100 {
        let lo = FIRST + rand::random::<u16>() % (SPAN - n);
        let free = |p: u16| {
            addrs
                .iter()
                .all(|a| std::net::TcpListener::bind((*a, p)).is_ok())
        };
        if (lo..lo + n).all(free) {
            return lo;
        }
    }
    panic!("no {n} consecutive ports free on all of {addrs:?}");
}

fn main() {
    let hosts_n = support::env_num("BENCH_REMOTE_HOSTS", 3) as usize;
    let per_host = support::env_num("BENCH_REMOTE_SHARDS", 50) as u16;
    let runs = support::env_num("BENCH_REMOTE_RUNS", 3).max(1) as usize;
    let concurrency = support::env_num("BENCH_REMOTE_CONCURRENCY", 0);

    let lab = sshd::SshLab::new();
    let hosts: Vec<sshd::SshHost> = (0..hosts_n).map(|_| lab.host()).collect();
    // The children (lazarus) read the lab's ssh_config.
    std::env::set_var(lazarus::host::ssh::CONFIG_ENV, lab.config());
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let rdb = sample_rdb(work.path());

    let mut c = Cluster {
        format: CCS_FORMAT,
        name: "remote-bench".into(),
        cluster_id: 7,
        alloc_id: 1,
        generation: 0,
        local_node: 1,
        redis_server: None,
        nodes: BTreeMap::new(),
        databases: BTreeMap::new(),
        backups: Default::default(),
        tls: None,
    };
    let local = c.allocate_id();
    c.nodes.insert(
        local,
        Node {
            id: local,
            addr: "127.0.0.1".into(),
            persistent_path: work.path().join("n1"),
            recovery_path: None,
            port_range: PortRange {
                lo: 21000,
                hi: 21999,
            },
            rack_id: None,
            ssh: None,
            redis_server: None,
        },
    );
    // The shards' ports: the same block on every host's address, free on all of them.
    let addrs: Vec<&str> = hosts.iter().map(|h| h.addr.as_str()).collect();
    let lo = free_block(&addrs, per_host);
    let mut started = Instant::now();
    for host in &hosts {
        let id = c.allocate_id();
        let target: SshTarget = host.target().parse().unwrap();
        c.nodes.insert(
            id,
            Node {
                id,
                addr: host.addr.clone(),
                persistent_path: host.path("n"),
                recovery_path: None,
                port_range: PortRange {
                    lo,
                    hi: lo + per_host - 1,
                },
                rack_id: None,
                ssh: Some(target),
                redis_server: None,
            },
        );
        for i in 0..per_host {
            let (db_id, shard_id) = (c.allocate_id(), c.allocate_id());
            let port = lo + i;
            let dir = c.nodes[&id].shard_dir(db_id, shard_id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(&rdb, dir.join("dump.rdb")).unwrap();
            // From a `redis.conf` in its own directory, as Lazarus starts a shard: `status`
            // takes a server that says another configuration file (or none) for another
            // program holding the port.
            let conf = dir.join("redis.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind {}\ndaemonize yes\nsave \"\"\nappendonly no\n\
                     pidfile redis.pid\nlogfile redis.log\n",
                    host.addr
                ),
            )
            .unwrap();
            let ok = Command::new(redis_server())
                .arg(&conf)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "redis-server started in {}", dir.display());
            c.databases.insert(
                db_id,
                Database {
                    id: db_id,
                    config: DbConfig {
                        name: format!("db{db_id}"),
                        shards: 1,
                        replication: false,
                        persistence: Persistence::Snapshot,
                        memory: None,
                        password: None,
                        sync_source: None,
                        tls: false,
                        tls_auth_clients_optional: false,
                    },
                    port,
                    state: DbState::Active,
                    shards: vec![Shard {
                        id: shard_id,
                        node: id,
                        role: Role::Master,
                        master: None,
                        slots: None,
                        port,
                        pid: None,
                        empty_since: None,
                        loaded_ns: None,
                    }],
                },
            );
        }
    }
    support::install(&home, &c);
    let shards = hosts_n * per_host as usize;
    println!(
        "{hosts_n} hosts × {per_host} shards ({shards} redis-servers) set up in {}",
        support::secs(started.elapsed())
    );

    let mut flags: Vec<String> = Vec::new();
    if concurrency > 0 {
        flags.extend(["--max-concurrency".into(), concurrency.to_string()]);
    }
    let with = |args: &[&str]| -> Vec<String> {
        flags
            .iter()
            .cloned()
            .chain(args.iter().map(|a| a.to_string()))
            .collect()
    };
    let run = |args: &[String]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        support::lazarus(&home, &a)
    };

    // Warm-up, and the check that every shard answers.
    let (_, json) = run(&with(&["--json", "status", "shards"]));
    let ok = json.matches("\"status\":\"OK\"").count();
    println!("status: {ok} of {shards} shards OK");
    let mut times = Vec::new();
    for _ in 0..runs {
        times.push(run(&with(&["status"])).0);
    }
    let status = support::median(times);
    println!(
        "status over {shards} shards on {hosts_n} hosts: median {} of {runs} (load average {}); {} ssh sessions",
        support::secs(status),
        load_average(),
        ssh_sessions(&home, &with(&["status"]))
    );

    // The disaster: every shard stopped, each host's disk moved aside, every database
    // marked for recovery with its node's recovery path.
    for host in &hosts {
        for pid in procs::pids_under(host.root()) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.starts_with("redis-server") {
                // SAFETY: kill(2) takes plain integers; these are this benchmark's servers.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        std::fs::rename(host.path("n"), host.path("old")).unwrap();
    }
    for (host, node) in hosts
        .iter()
        .zip(c.nodes.values_mut().filter(|n| n.ssh.is_some()))
    {
        node.recovery_path = Some(host.path("old"));
    }
    for db in c.databases.values_mut() {
        db.state = DbState::PendingRecovery;
    }
    support::install(&home, &c);

    started = Instant::now();
    let (first, out) = run(&with(&["recover", "list"]));
    let ready = out.matches("ready").count();
    println!(
        "recover list, first run (ships the binary to {hosts_n} hosts): {} ({} ready)",
        support::secs(first),
        ready
    );
    let mut times = Vec::new();
    for _ in 0..runs {
        times.push(run(&with(&["recover", "list"])).0);
    }
    let list = support::median(times);
    println!(
        "recover list over {shards} shards on {hosts_n} hosts: median {} of {runs} (load average {}); whole phase {}",
        support::secs(list),
        load_average(),
        support::secs(started.elapsed())
    );
    println!(
        "recover list: {} ssh sessions (round trips) for {shards} databases",
        ssh_sessions(&home, &with(&["recover", "list"]))
    );
}

/// How many ssh sessions (each at least one round trip) one run of `args` starts, as
/// the binary reports them under `LAZARUS_SSH_SESSIONS`.
fn ssh_sessions(home: &Path, args: &[String]) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("LAZARUS_SSH_SESSIONS", "1")
        .stdin(Stdio::null())
        .output()
        .expect("lazarus runs");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("lazarus: ssh sessions: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
