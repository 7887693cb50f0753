//! Snapshots of every command through the real binary: stdout, stderr and the exit
//! status, in text and then in `--json`, on one small cluster shared
//! by the whole sequence (one database of one shard, a few keys, a backup run). What
//! changes from run to run (the home, ports, pids, times, run ids, digests) is replaced
//! by a name in brackets. The last check: every form of the registry has a snapshot.

mod common;

use std::path::Path;

use common::data::{connect, write_sample};
use common::procs::ProcessGuard;
use common::{runtime, Lazarus};
use lazarus::cmd::registry;

/// Runs `line` and pins its output as snapshot `name`; `json` also pins `--json line`,
/// run after it: for a command that changes something, the JSON of doing it again (the
/// same result when it is idempotent, else its error and kind).
struct Snapshots<'a> {
    lz: &'a Lazarus,
    /// The paths a snapshot shows by name instead of by value.
    paths: Vec<(String, &'static str)>,
    /// Every line snapshotted, for the registry check.
    lines: Vec<String>,
}

impl Snapshots<'_> {
    fn words(line: &str) -> Vec<String> {
        lazarus::lang::lex(line)
            .expect("a lexable test line")
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    fn pin(&mut self, name: &str, line: &str, json: bool) {
        self.lines.push(line.to_string());
        let mut modes = vec![false];
        if json {
            modes.push(true);
        }
        let mut body = String::new();
        for as_json in modes {
            let mut words = Self::words(line);
            if as_json {
                words.insert(0, "--json".into());
            }
            let out = self.lz.cmd(&words).run();
            body.push_str(&format!(
                "$ lazarus {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
                words.join(" "),
                out.code,
                out.stdout,
                out.stderr
            ));
            if as_json {
                body.push('\n');
            }
        }
        for (path, label) in &self.paths {
            body = body.replace(path.as_str(), label);
        }
        insta::with_settings!({
            filters => vec![
                // Table columns follow their widest value: one width for all.
                (r" {2,}", "  "),
                // A client of an earlier command may still be closing when verify lists
                // the database's clients.
                (
                    r"clients: (no client is connected to the database|the restore will disconnect \d+ client\(s\): [^\]\n]*?)(\n|\x22)",
                    "clients: [CLIENTS]$2",
                ),
                // Figures of this machine and this moment in JSON.
                (r#""(taken_at|started|finished|created|pause_ms|pause_us|took_ms|bytes|stored_bytes|free_ram|total_ram|used_memory|cores|pid|port)":[\d.]+"#, r#""$1":[N]"#),
                // Sizes of RDB files (their aux fields and expiry times vary by a byte).
                (r"\d+ bytes", "[BYTES] bytes"),
                (r"kept \d+ of", "kept [BYTES] of"),
                (r"(\bbytes  |\.zst  |\b13  )\d+\b", "${1}[BYTES]"),
                // Backup run ids (`20261204-123508-4`), epoch seconds and milliseconds.
                (r"\b\d{8}-\d{6}-\d+\b", "[RUN]"),
                (r"\b1\d{9}(\d{3})?\b", "[EPOCH]"),
                // This machine's memory and cores (`status`), a shard's used memory.
                (r"\d+(\.\d+)?GB/\d+(\.\d+)?GB", "[RAM]"),
                (r" \d+  \[RAM\]", " [CORES]  [RAM]"),
                (r"\b\d+(\.\d+)?(KB|MB)\b", "[MEM]"),
                // Times: dates, clock times, durations, ages.
                (r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?(\.\d+)?Z?", "[TIME]"),
                (r"\b\d{8}T\d{6}Z?\b", "[TIME]"),
                (r"\b\d+(\.\d+)?\s?(ms|s|m|h|µs)\b", "[DURATION]"),
                // Digests and ids in hex.
                (r"\b[0-9a-f]{64}\b", "[SHA256]"),
                (r"\b[0-9a-f]{32}\b", "[DIGEST]"),
                // Ports of the loopback cluster (the range is 10000-10999).
                (r"\b10\d\d\d\b", "[PORT]"),
                // Pids.
                (r"(pid\D{0,4})\d+", "$1[PID]"),
            ]
        }, {
            insta::assert_snapshot!(name, body);
        });
    }
}

#[test]
fn every_command_text_json_and_exit_status() {
    let lz = Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let home = lz.home().display().to_string();
    let redis_server = std::env::var("LAZARUS_REDIS_SERVER").unwrap_or("redis-server".into());
    let redis_server = which(&redis_server);
    let mut s = Snapshots {
        lz: &lz,
        paths: vec![
            (home.clone(), "[HOME]"),
            (redis_server.clone(), "[REDIS_SERVER]"),
        ],
        lines: Vec::new(),
    };

    s.pin("help", "help", true);
    s.pin("help_question_mark", "?", true);
    s.pin("help_node", "help node", true);
    s.pin("exit", "exit", true);
    s.pin("quit", "quit", true);

    s.pin(
        "cluster_create",
        "cluster create name snap cluster_id 42",
        true,
    );
    s.pin(
        "cluster_tls_set_missing",
        "cluster tls set cacert /no/ca.crt cert /no/c.crt key /no/k.key",
        true,
    );
    s.pin("info_cluster", "info cluster", true);
    s.pin("info_node", "info node 1", true);
    std::fs::create_dir_all(lz.path("old")).unwrap();
    s.pin(
        "node_add",
        &format!("node add addr 127.0.0.1 persistent_path {home}/n2 port_range 11000-11999"),
        true,
    );
    s.pin(
        "node_port_range_set",
        "node 2 port_range set 12000-12999",
        true,
    );
    s.pin(
        "node_redis_server_set",
        &format!("node 2 redis_server set {redis_server}"),
        true,
    );
    s.pin(
        "node_recovery_path_set",
        &format!("node 2 recovery_path set {home}/old"),
        true,
    );
    s.pin(
        "node_recovery_path_clear",
        "node 2 recovery_path clear",
        true,
    );
    s.pin("node_remove", "node 2 remove", true);

    s.pin("create_db", "create db snap", true);
    let c = lazarus::ccs::Store::new(lz.home().to_path_buf())
        .load()
        .unwrap()
        .unwrap();
    let port = c.database_by_name("snap").unwrap().shards[0].port;
    runtime().block_on(async {
        let mut con = connect("127.0.0.1", port, 0).await;
        write_sample(&mut con, "k", 3).await;
    });
    s.pin("status", "status", true);

    let shard = shard_dir(&lz.path("nodes/1"));
    s.pin(
        "check_file",
        &format!("check file {}/appendonlydir", shard.display()),
        true,
    );
    let torn = lz.path("torn.aof");
    let incr = std::fs::read_dir(shard.join("appendonlydir"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .unwrap();
    let mut bytes = std::fs::read(incr).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&torn, bytes).unwrap();
    s.pin(
        "check_file_fix",
        &format!("check file {home}/torn.aof fix {home}/fixed.aof"),
        true,
    );

    s.pin(
        "backup_db",
        &format!("backup db snap path {home}/bk"),
        false,
    );
    s.pin("backup_list", &format!("backup list path {home}/bk"), true);
    let run_id = run_id(&lz);
    s.paths.push((run_id.clone(), "[RUN]"));
    s.pin("backup_show", &format!("backup show {run_id}"), true);
    s.pin(
        "backup_task_create",
        &format!("backup task create name nightly db snap path {home}/bt keep 1"),
        true,
    );
    s.pin("backup_task_run", "backup task run nightly", false);
    s.pin("backup_task_list", "backup task list", true);
    s.pin("backup_task_history", "backup task history nightly", true);
    s.pin(
        "backup_task_prune",
        "backup task prune nightly dry_run",
        true,
    );
    s.pin("backup_due", "backup due", true);
    s.pin(
        "backup_task_delete",
        "backup task delete nightly purge",
        true,
    );
    s.pin(
        "verify_db",
        &format!("verify db snap against {home}/bk/{run_id}"),
        true,
    );

    s.pin(
        "restore_task_create",
        &format!("restore task create name back db snap backup {home}/bk/{run_id} force no_safety_backup"),
        true,
    );
    s.pin("restore_task_verify", "restore task verify back", true);
    s.pin("restore_task_show", "restore task show back", true);
    s.pin("restore_task_list", "restore task list", true);
    s.pin("restore_task_start", "restore task start back", true);
    s.pin("restore_task_retry", "restore task retry back", true);
    s.pin("restore_task_delete", "restore task delete back", true);

    s.pin("restart_db", "restart db snap", true);
    s.pin("restart_all", "restart all", true);

    // The disaster: every shard gone; a new home brings the configuration back from the
    // old node's disk.
    guard.kill_all();
    let old = lz.path("nodes/1");
    let lz2 = Lazarus::new();
    let _guard2 = ProcessGuard::new(lz2.home());
    let home2 = lz2.home().display().to_string();
    let mut lines = std::mem::take(&mut s.lines);
    let mut s2 = Snapshots {
        lz: &lz2,
        paths: vec![
            (home2.clone(), "[HOME2]"),
            (home.clone(), "[HOME]"),
            (run_id.clone(), "[RUN]"),
        ],
        lines: Vec::new(),
    };
    s2.pin(
        "cluster_recover",
        &format!(
            "cluster recover filename {}/ccs/ccs.json persistent_path {home2}/n1",
            old.display()
        ),
        true,
    );
    s2.pin(
        "node_recovery_path_set_old_disk",
        &format!("node 1 recovery_path set {}", old.display()),
        true,
    );
    s2.pin("recover_list", "recover list", true);
    s2.pin("recover_db", "recover db snap", true);
    s2.pin("recover_all", "recover all", true);
    s2.pin(
        "recover_db_only_configuration",
        "recover db only_configuration snap",
        true,
    );
    s2.pin("recover_db_from_files", "recover db snap from_files", true);
    s2.pin("delete_db", "delete db snap purge", true);
    lines.append(&mut s2.lines);

    let lz3 = Lazarus::new();
    let mut s3 = Snapshots {
        lz: &lz3,
        paths: vec![
            (lz3.home().display().to_string(), "[HOME3]"),
            (home.clone(), "[HOME]"),
        ],
        lines: Vec::new(),
    };
    s3.pin(
        "cluster_recover_from_identities",
        &format!(
            "cluster recover cluster_id 42 recovery_path {} persistent_path {}/n1",
            old.display(),
            lz3.home().display()
        ),
        true,
    );
    lines.append(&mut s3.lines);

    // Every form of the registry has a snapshot: some line above parses with it alone.
    for syntax in registry() {
        let covered = lines.iter().any(|line| {
            matches!(
                lazarus::lang::parse(&[*syntax], &line.replace("***", "x")),
                Ok(Some(_))
            )
        });
        assert!(covered, "no snapshot of `{}`", syntax.summary);
    }
}

/// The only shard directory under a node's persistent path.
fn shard_dir(node: &Path) -> std::path::PathBuf {
    let db = std::fs::read_dir(node.join("redis"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::read_dir(db)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
}

/// The id of the one backup run of `bk`.
fn run_id(lz: &Lazarus) -> String {
    std::fs::read_dir(lz.path("bk"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
        .unwrap()
}

fn which(name: &str) -> String {
    if name.contains('/') {
        return name.to_string();
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| name.to_string())
}
