//! A real S3-compatible server for `s3://` repositories: `moto_server` (PyPI
//! `moto[server]`, installed by `.ci/run` into a cached virtualenv), started on a free
//! loopback port in the test's directory and stopped when dropped.
//!
//! Found at `$LAZARUS_MOTO_SERVER`, else `~/.cache/lazarus-ci/moto-5/bin/moto_server`.
//! Where it is not installed, [`S3Server::start`] says so and returns `None`: the test
//! prints that it was skipped and why.
//!
//! The backup bench also measures against `s3s-fs` (crate `s3s-fs`, a Rust S3 server
//! over a directory, `cargo install s3s-fs@0.14.1 --locked --features binary`), found at
//! `$LAZARUS_S3S_FS` or on `PATH` ([`S3Server::start_s3s_fs`]): moto spends seconds of
//! Python on the same two cores joining a large object's parts, which a real object store
//! does not charge to the machine taking the backup.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Credentials the tests give the server (moto takes any); the tests search every output
/// for the secret.
pub const ACCESS_KEY: &str = "lazarus-test-access";
pub const SECRET_KEY: &str = "lazarus-test-secret-Zq9Xv2Lm";

pub struct S3Server {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the server takes connections; `false` after 30 s.
fn answers(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn moto_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LAZARUS_MOTO_SERVER") {
        // Set (as CI does), it must be there: CI never skips these tests silently.
        assert!(
            Path::new(&p).is_file(),
            "LAZARUS_MOTO_SERVER is `{p}`, which is not a file"
        );
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").ok()?;
    let cache = std::env::var("XDG_CACHE_HOME").unwrap_or(format!("{home}/.cache"));
    Some(PathBuf::from(cache).join("lazarus-ci/moto-5/bin/moto_server")).filter(|p| p.is_file())
}

impl S3Server {
    /// Starts moto on a free loopback port in a temporary directory of its own, and
    /// makes `bucket`. `None` (with the reason printed) when moto is not installed.
    pub fn start(bucket: &str) -> Option<S3Server> {
        let Some(moto) = moto_path() else {
            eprintln!(
                "SKIPPED: no moto_server (run .ci/run, or set LAZARUS_MOTO_SERVER): the s3:// tests need a real S3-compatible server"
            );
            return None;
        };
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let server = S3Server {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if server
                .request("PUT", &format!("/{bucket}"))
                .is_some_and(|s| s == 200)
            {
                return Some(server);
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `s3s-fs` on a free loopback port over a temporary directory, with the test
    /// credentials (it checks signatures), and makes `bucket` (a directory of its root).
    /// `None` when it is not installed.
    pub fn start_s3s_fs(bucket: &str) -> Option<S3Server> {
        let bin = std::env::var_os("LAZARUS_S3S_FS")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|d| d.join("s3s-fs"))
                        .find(|p| p.is_file())
                })
            })
            .filter(|p| p.is_file())?;
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(bucket)).unwrap();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let server = S3Server {
            child,
            port,
            _dir: dir,
        };
        assert!(answers(port), "s3s-fs did not answer in 30 s");
        Some(server)
    }

    /// The server's process id (the benches read its CPU time).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the binary needs to reach the server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// An unsigned request (moto does not check signatures); the status code.
    pub fn request(&self, method: &str, path: &str) -> Option<u16> {
        self.send(method, path, &[])
    }

    /// The keys of the multipart uploads under way in `bucket` (begun, neither completed
    /// nor aborted: invisible to listings, kept and billed by a real store).
    #[allow(dead_code)]
    pub fn uploads(&self, bucket: &str) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /{bucket}?uploads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.contains("ListMultipartUploadsResult"), "{body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// An unsigned request with a body; the status code.
    pub fn send(&self, method: &str, path: &str, body: &[u8]) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .ok()?;
        s.write_all(body).ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }
}

/// A small runtime of its own for each call (this file is also used by benches, without
/// the rest of the test harness).
fn small_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl S3Server {
    /// A client of the server with the test credentials, for reaching past the binary
    /// (damaging a run, reading a manifest).
    fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap()
    }

    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        use object_store::ObjectStore;
        let store = self.store(bucket);
        let key = object_store::path::Path::from(key);
        small_runtime().block_on(async move {
            store
                .get(&key)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        })
    }

    /// An object's ETag: a multipart upload's ends with `-<parts>`.
    pub fn etag(&self, bucket: &str, key: &str) -> String {
        use object_store::ObjectStore;
        let store = self.store(bucket);
        let key = object_store::path::Path::from(key);
        small_runtime()
            .block_on(async move { store.head(&key).await.unwrap() })
            .e_tag
            .unwrap_or_default()
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        use object_store::ObjectStore;
        let store = self.store(bucket);
        let key = object_store::path::Path::from(key);
        small_runtime().block_on(async move { store.put(&key, bytes.into()).await.unwrap() });
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        use object_store::ObjectStore;
        let store = self.store(bucket);
        let key = object_store::path::Path::from(key);
        small_runtime().block_on(async move { store.delete(&key).await.unwrap() });
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
