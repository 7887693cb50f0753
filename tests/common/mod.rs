//! A small fluent harness for driving the real `lazarus` binary on a temporary home.
//!
//! ```ignore
//! mod common;
//! use common::Lazarus;
//! let lz = Lazarus::new();
//! lz.run("cluster create name t").ok().stdout_has("Created cluster");
//! lz.run("info node 9").fails(1).stderr_has("no node:9");
//! lz.script("# c\ninfo cluster\n").ok();
//! let docs = lz.cmd(["--json", "info", "cluster"]).run().ok().json();
//! ```
#![allow(dead_code)]

pub mod certs;
pub mod data;
pub mod engine;
pub mod ports;
pub mod procs;
pub mod s3;
pub mod sshd;
pub mod world;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tokio runtime for the library calls end-to-end tests make (building clusters,
/// reading servers).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A temporary home; every run gets `--home` pointing at it.
pub struct Lazarus {
    home: tempfile::TempDir,
    /// Set on every run (`with_env`).
    env: Vec<(String, String)>,
}

impl Default for Lazarus {
    fn default() -> Self {
        Lazarus::new()
    }
}

impl Lazarus {
    pub fn new() -> Lazarus {
        Lazarus {
            home: tempfile::tempdir().expect("a temp dir"),
            env: Vec::new(),
        }
    }

    /// Every run of this home gets these environment variables.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Lazarus {
        self.env = env;
        self
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A path under the home, for persistent and recovery paths in tests.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    /// The binary with `--home`, and these arguments.
    pub fn cmd<S: AsRef<str>>(&self, args: impl IntoIterator<Item = S>) -> Run {
        Run {
            args: args.into_iter().map(|a| a.as_ref().to_string()).collect(),
            home: self.home.path().to_path_buf(),
            stdin: None,
            env: self.env.clone(),
        }
    }

    /// One-shot: `line` split into words as the shell language does (quotes honoured).
    pub fn run(&self, line: &str) -> Output {
        let words: Vec<String> = lazarus::lang::lex(line)
            .expect("a lexable test line")
            .into_iter()
            .map(|t| t.text)
            .collect();
        self.cmd(words).run()
    }

    /// A script on stdin (not a terminal).
    pub fn script(&self, text: &str) -> Output {
        self.cmd(Vec::<String>::new()).stdin(text).run()
    }

    /// Stores `cluster` as this home's CCS (what `cluster recover` and `node recovery_path
    /// set` leave behind), through the store's own lock and save.
    pub fn install(&self, cluster: &lazarus::ccs::Cluster) {
        let mut c = cluster.clone();
        let lock = lazarus::ccs::Store::new(self.home().to_path_buf())
            .lock()
            .unwrap();
        lock.save(&mut c).unwrap();
    }

    /// `cluster create name <name>` through the binary, node:1 at `<home>/n1` on a port
    /// range of its own (tests run side by side; the default range is left to the
    /// binary's own tests); returns node:1's persistent path.
    pub fn create_cluster(&self, name: &str) -> PathBuf {
        let n1 = self.path("n1");
        self.run(&format!(
            "cluster create name {name} persistent_path {}",
            n1.display()
        ))
        .ok();
        self.own_port_range();
        n1
    }

    /// Moves node:1 onto a block of ports of its own ([`ports`]) with `node 1 port_range
    /// set`: a cluster made by `cluster create` has the default range, which other tests
    /// of the binary share (a port a killed shard frees can be taken before its restart).
    /// Returns its start.
    pub fn own_port_range(&self) -> u16 {
        let lo = ports::block();
        self.run(&format!(
            "node 1 port_range set {lo}-{}",
            lo + ports::NODE_PORTS - 1
        ))
        .ok();
        lo
    }

    /// The stored CCS document.
    /// The id of a `backup db` run of `db` into `repo`.
    pub fn backup_run(&self, db: &str, repo: &Path) -> String {
        self.cmd(["--json", "backup", "db", db, "path", repo.to_str().unwrap()])
            .run()
            .ok()
            .json()[0]["result"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn ccs(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("ccs.json")).expect("a ccs.json");
        serde_json::from_str(&text).expect("ccs.json parses")
    }
}

pub struct Run {
    args: Vec<String>,
    home: PathBuf,
    stdin: Option<String>,
    env: Vec<(String, String)>,
}

impl Run {
    pub fn arg(mut self, arg: &str) -> Run {
        self.args.push(arg.to_string());
        self
    }

    /// Flags go before the command words.
    pub fn flag(mut self, flag: &str) -> Run {
        self.args.insert(0, flag.to_string());
        self
    }

    pub fn stdin(mut self, text: &str) -> Run {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn run(self) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lazarus"));
        command
            .arg("--home")
            .arg(&self.home)
            .args(&self.args)
            .env_remove("LAZARUS_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the lazarus binary runs");
        {
            let mut stdin = child.stdin.take().expect("piped stdin");
            if let Some(text) = &self.stdin {
                let _ = stdin.write_all(text.as_bytes());
            }
        }
        let out = child
            .wait_with_output()
            .expect("the lazarus binary finishes");
        Output {
            args: self.args,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A finished run; assertions chain and show the whole output when they fail.
#[derive(Debug)]
pub struct Output {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn show(&self) -> String {
        format!(
            "lazarus {:?}\nexit {}\n--- stdout\n{}--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    /// Exit status 0.
    pub fn ok(self) -> Output {
        assert_eq!(self.code, 0, "expected success\n{}", self.show());
        self
    }

    /// Exit status `code` (1: a command failed, 2: usage or parse error).
    pub fn fails(self, code: i32) -> Output {
        assert_eq!(self.code, code, "expected exit {code}\n{}", self.show());
        self
    }

    pub fn stdout_has(self, text: &str) -> Output {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stdout_lacks(self, text: &str) -> Output {
        assert!(
            !self.stdout.contains(text),
            "stdout has {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stderr_lacks(self, text: &str) -> Output {
        assert!(
            !self.stderr.contains(text),
            "stderr has {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stderr_has(self, text: &str) -> Output {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stderr_empty(self) -> Output {
        assert!(
            self.stderr.is_empty(),
            "stderr is not empty\n{}",
            self.show()
        );
        self
    }

    /// stdout as JSON documents, one a line (`--json`).
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", self.show()))
            })
            .collect()
    }
}

/// One test's world: a home, the guard that stops every process started under it, a
/// runtime, and the cluster built by [`WorldBuilder::build`]. Destructured in this order
/// (`let World(lz, _guard, rt, mut c) = ...`), the guard stops the shards before the home
/// is removed.
pub struct World(
    pub Lazarus,
    pub procs::ProcessGuard,
    pub tokio::runtime::Runtime,
    pub lazarus::ccs::Cluster,
);

/// What a test's cluster holds: loopback nodes, databases filled with sample data
/// ([`world::build`]), the home's environment and the cluster's binary.
pub struct WorldBuilder {
    nodes: u64,
    env: Vec<(String, String)>,
    redis_server: Option<std::path::PathBuf>,
    dbs: Vec<lazarus::ccs::DbConfig>,
}

impl World {
    /// `nodes` loopback nodes ([`world::test_cluster`]) in a new home.
    pub fn with(nodes: u64) -> WorldBuilder {
        WorldBuilder {
            nodes,
            env: Vec::new(),
            redis_server: None,
            dbs: Vec::new(),
        }
    }
}

impl WorldBuilder {
    /// Every run of the home gets these environment variables.
    pub fn env(mut self, env: Vec<(String, String)>) -> WorldBuilder {
        self.env = env;
        self
    }

    /// The cluster's binary (`None`: the one on PATH).
    pub fn redis_server(mut self, path: Option<std::path::PathBuf>) -> WorldBuilder {
        self.redis_server = path;
        self
    }

    /// A database ([`world::config`]), created and filled with sample data.
    pub fn db(
        mut self,
        name: &str,
        shards: u32,
        replication: bool,
        persistence: lazarus::ccs::Persistence,
    ) -> WorldBuilder {
        self.dbs
            .push(world::config(name, shards, replication, persistence));
        self
    }

    /// Builds the cluster, its databases running; not yet the home's CCS.
    pub fn build(self) -> World {
        let lz = Lazarus::new().with_env(self.env);
        let guard = procs::ProcessGuard::new(lz.home());
        let rt = runtime();
        let mut cluster = world::test_cluster(lz.home(), self.nodes);
        cluster.redis_server = self.redis_server;
        rt.block_on(world::build(&mut cluster, self.dbs));
        World(lz, guard, rt, cluster)
    }

    /// Builds the cluster and stores it as the home's CCS, as `cluster create` and
    /// `create db` would have.
    pub fn installed(self) -> World {
        let world = self.build();
        world.0.install(&world.3);
        world
    }
}

/// `redis-cli -p <port> <args>` against a local server: its reply, trimmed.
pub fn redis_cli(port: u64, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
