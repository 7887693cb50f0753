//! A real `redis-server` for the reader's tests: own tempdir, free loopback port, killed
//! on drop (even when a test panics), and a tiny blocking RESP client.

#![allow(dead_code)]

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
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("redis-server");
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
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = process.0.try_wait() {
                    break; // most likely the port was taken meanwhile: try another
                }
                if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                    let mut conn = BufReader::new(s);
                    send(&mut conn, &["PING"]);
                    if read_reply(&mut conn) == Reply::Status("PONG".into()) {
                        return Server {
                            conn: Some(conn),
                            _process: process,
                            port,
                            dir,
                        };
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
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&buf).expect("write");
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).expect("read reply");
    let body = line.trim_end_matches("\r\n").to_string();
    let (t, rest) = body.split_at(1);
    match t {
        "+" => Reply::Status(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Int(rest.parse().unwrap()),
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return Reply::Bulk(None);
            }
            let mut b = vec![0; n as usize + 2];
            r.read_exact(&mut b).unwrap();
            b.truncate(n as usize);
            Reply::Bulk(Some(b))
        }
        "*" => {
            let n: i64 = rest.parse().unwrap();
            Reply::Array((0..n.max(0)).map(|_| read_reply(r)).collect())
        }
        other => panic!("unexpected reply type {other:?}"),
    }
}

pub fn args(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}
