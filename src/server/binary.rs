//! Finding `redis-server` (or `valkey-server`) and reading its engine and version; the
//! binaries a cluster's shards run with, per node ([`Servers`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ServerError;
type Id = u64;

/// A `redis-server` executable and the version it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisServer {
    pub path: PathBuf,
    /// As printed by `redis-server --version` (`v=7.0.15`): `7.0.15`.
    pub version: String,
    /// `redis` or `valkey`, from the first word `--version` prints.
    pub engine: &'static str,
}

impl RedisServer {
    /// Finds the binary: an explicit override (`--redis-server`) first, then the CCS's
    /// `redis_server`, then PATH. The first one given is used as is: a wrong explicit path
    /// is an error rather than a silent fall back to another binary.
    pub fn locate(
        override_path: Option<&Path>,
        ccs_path: Option<&Path>,
    ) -> Result<RedisServer, ServerError> {
        let path = match override_path.or(ccs_path) {
            Some(given) => given.to_path_buf(),
            None => find_on_path("redis-server").ok_or_else(|| ServerError::NotFound {
                tried: "not on PATH".to_string(),
            })?,
        };
        RedisServer::at(&path)
    }

    /// The binary at `path`, checked: it runs, answers `--version` as `Redis server v=..`
    /// or `Valkey server v=..`, and so is one of the engines shards can run.
    pub fn at(path: &Path) -> Result<RedisServer, ServerError> {
        if !path.is_file() {
            return Err(ServerError::NotFound {
                tried: format!("`{}` does not exist", path.display()),
            });
        }
        let (engine, version) = read_version(path)?;
        Ok(RedisServer {
            path: path.to_path_buf(),
            version,
            engine,
        })
    }

    /// A node's binary on another machine, as recorded when it was checked there.
    pub fn recorded(path: &Path, engine: &str, version: &str) -> RedisServer {
        RedisServer {
            path: path.to_path_buf(),
            version: version.to_string(),
            engine: if engine == "valkey" {
                "valkey"
            } else {
                "redis"
            },
        }
    }

    /// `redis 7.0.15`, `valkey 8.1.8`: what `status` shows, and what
    /// [`crate::persist::max_rdb_version_for`] reads.
    pub fn label(&self) -> String {
        format!("{} {}", self.engine, self.version)
    }

    /// The newest RDB version this server loads.
    pub fn max_rdb(&self) -> Option<u32> {
        crate::persist::max_rdb_version_for(&self.label())
    }
}

/// The binary a node's configuration names.
#[derive(Clone, Debug)]
pub enum NodeBinary {
    /// None of its own: the cluster's, or the one on PATH.
    Default,
    /// Its own, on this machine: checked by running it.
    Here(PathBuf),
    /// Its own, on another machine: as recorded when it was checked there.
    Remote(RedisServer),
}

/// The binaries a cluster's shards run with: `--redis-server` for every node when given,
/// else each node's own (`node add ... redis_server <path>`), else the cluster's, else
/// the `redis-server` on PATH. Each distinct path is checked once.
#[derive(Clone, Debug)]
pub struct Servers {
    /// The machine each node's shards run on (this one, or over SSH).
    hosts: crate::host::Hosts,
    /// Nodes with a binary of their own (or every node, under `--redis-server`).
    nodes: BTreeMap<Id, RedisServer>,
    /// For nodes with none of their own; `None` when no node needs it.
    fallback: Option<RedisServer>,
    /// Every node runs `--redis-server`'s binary, whatever its own.
    overridden: bool,
}

impl From<RedisServer> for Servers {
    /// The one binary for every node.
    fn from(server: RedisServer) -> Servers {
        Servers {
            hosts: crate::host::Hosts::local(),
            nodes: BTreeMap::new(),
            fallback: Some(server),
            overridden: false,
        }
    }
}

impl Servers {
    /// Finds and checks every node's binary: `nodes` as the CCS records them, `hosts`
    /// their machines, `fallback_path` the cluster's own binary for nodes without one. A
    /// node's own binary that no longer runs is an error naming the node: never a silent
    /// fall back to another engine.
    pub fn locate(
        override_path: Option<&Path>,
        hosts: crate::host::Hosts,
        fallback_path: Option<&Path>,
        nodes: &[(u64, NodeBinary)],
    ) -> Result<Servers, ServerError> {
        if let Some(path) = override_path {
            let mut servers = Servers::from(RedisServer::locate(Some(path), None)?);
            servers.hosts = hosts;
            servers.overridden = true;
            return Ok(servers);
        }
        let mut checked: BTreeMap<PathBuf, RedisServer> = BTreeMap::new();
        let mut found = BTreeMap::new();
        let mut needs_fallback = nodes.is_empty();
        for (node, binary) in nodes {
            let path = match binary {
                NodeBinary::Default => {
                    needs_fallback = true;
                    continue;
                }
                NodeBinary::Remote(recorded) => {
                    // On another machine: as `node add` checked it there, not run here.
                    found.insert(*node, recorded.clone());
                    continue;
                }
                NodeBinary::Here(path) => path,
            };
            let server = match checked.get(path) {
                Some(s) => s.clone(),
                None => {
                    let s = RedisServer::at(path).map_err(|e| ServerError::NodeBinary {
                        node: *node,
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    checked.insert(path.clone(), s.clone());
                    s
                }
            };
            found.insert(*node, server);
        }
        let fallback = if needs_fallback {
            Some(RedisServer::locate(None, fallback_path)?)
        } else {
            None
        };
        Ok(Servers {
            hosts,
            nodes: found,
            fallback,
            overridden: false,
        })
    }

    /// The machine `node`'s shards run on.
    /// Which host serves each node.
    pub fn hosts(&self) -> &crate::host::Hosts {
        &self.hosts
    }

    pub fn host(&self, node: Id) -> std::sync::Arc<dyn crate::host::Host> {
        self.hosts.of(node)
    }

    /// The binary shards on `node` run.
    pub fn for_node(&self, node: Id) -> Result<&RedisServer, ServerError> {
        self.nodes
            .get(&node)
            .or(self.fallback.as_ref())
            .ok_or_else(|| ServerError::NotFound {
                tried: format!("node:{node} has no `redis_server` and none was located"),
            })
    }

    /// The binaries `nodes` run with, each once.
    pub fn of_nodes(&self, nodes: impl IntoIterator<Item = Id>) -> Vec<&RedisServer> {
        let mut out: Vec<&RedisServer> = Vec::new();
        for node in nodes {
            if let Ok(s) = self.for_node(node) {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Refuses when a binary `nodes` run is built without TLS: a TLS shard cannot start
    /// with it (it stops at `tls-port`, and the start rolls back after the fact). Each
    /// distinct binary is asked once per host ([`without_tls`]); the refusal names every
    /// such node, its binary and what the binary said. The one probe of a TLS build,
    /// wherever TLS is turned on or a TLS database's binary is chosen.
    pub async fn refuse_without_tls(
        &self,
        nodes: impl IntoIterator<Item = Id>,
    ) -> Result<(), ServerError> {
        let mut asked: Vec<(String, PathBuf, Option<String>)> = Vec::new();
        let mut refused = Vec::new();
        for node in nodes {
            let Ok(server) = self.for_node(node) else {
                continue;
            };
            let host = self.host(node);
            let name = host.name();
            let why = match asked
                .iter()
                .find(|(h, p, _)| *h == name && *p == server.path)
            {
                Some((_, _, why)) => why.clone(),
                None => {
                    let why = without_tls(&*host, server).await;
                    asked.push((name, server.path.clone(), why.clone()));
                    why
                }
            };
            if let Some(why) = why {
                refused.push(super::NoTlsBuild {
                    node,
                    path: server.path.clone(),
                    label: server.label(),
                    why,
                });
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(ServerError::WithoutTls {
            refused,
            overridden: self.overridden,
        })
    }

    /// The server among `nodes`' binaries that loads the oldest RDB version: what files
    /// for shards on those nodes must be loadable by.
    pub fn oldest_of(&self, nodes: impl IntoIterator<Item = Id>) -> Option<&RedisServer> {
        self.of_nodes(nodes)
            .into_iter()
            .min_by_key(|s| s.max_rdb().unwrap_or(0))
    }
}

/// Why `server`'s binary cannot run TLS shards, as that binary says (`None`: it can, or
/// it said nothing that tells). It is run on `host` without listening anywhere (`port
/// 0`, `tls-port 0`) and asked to set TLS up (`tls-replication yes`) with no
/// certificate: a TLS build stops at the missing `tls-cert-file`, one without TLS says
/// so (redis 7.0: `Bad directive` at `tls-port`; redis 7.2+ and valkey: `Failed finding
/// TLS support`). It exits either way.
pub async fn without_tls(host: &dyn crate::host::Host, server: &RedisServer) -> Option<String> {
    let args: Vec<String> = [
        "--port",
        "0",
        "--tls-port",
        "0",
        "--tls-replication",
        "yes",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        "/tmp",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::time::timeout(VERSION_TIMEOUT, host.run(&server.path, &args))
        .await
        .ok()?
        .ok()?;
    let said = format!("{}\n{}", out.stdout, out.stderr);
    const NO_TLS: [&str; 3] = [
        "Failed finding TLS support",
        "Missing implement of connection type tls",
        "Bad directive or wrong number of arguments",
    ];
    let line = said
        .lines()
        .find(|l| NO_TLS.iter().any(|n| l.contains(n)))?;
    // A bad directive is about TLS only when it is `tls-port`'s.
    if line.contains("Bad directive") && !said.contains("tls-") {
        return None;
    }
    let why = line
        .split_once(" # ")
        .map_or(line, |(_, msg)| msg)
        .trim()
        .to_string();
    Some(why)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// How long `redis-server --version` may take: it prints and exits at once, so a binary
/// still running after this is not a server (a wrapper that hangs, a wrong program).
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

fn read_version(path: &Path) -> Result<(&'static str, String), ServerError> {
    read_version_within(path, VERSION_TIMEOUT)
}

/// Runs `<path> --version` and waits at most `deadline` for it to exit; a binary that
/// does not is killed and named.
fn read_version_within(
    path: &Path,
    deadline: Duration,
) -> Result<(&'static str, String), ServerError> {
    let fail = |reason: String| ServerError::Version {
        path: path.to_path_buf(),
        reason,
    };
    let mut child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let until = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "`--version` did not answer within {}s (killed)",
                    deadline.as_secs_f32()
                )));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(64 * 1024).read_to_end(&mut out);
    }
    let text = String::from_utf8_lossy(&out);
    parse_version(&text).ok_or_else(|| {
        fail(format!(
            "it is neither redis-server nor valkey-server: `--version` printed `{}`",
            text.trim()
        ))
    })
}

/// `Redis server v=7.0.15 sha=...` or `Valkey server v=8.1.8 ...`: the engine and version.
pub(crate) fn parse_version(text: &str) -> Option<(&'static str, String)> {
    let mut words = text.split_whitespace();
    let engine = match (words.next()?, words.next()?) {
        ("Redis", "server") => "redis",
        ("Valkey", "server") => "valkey",
        _ => return None,
    };
    let version = words.find_map(|word| word.strip_prefix("v="))?;
    Some((engine, version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_and_valkey_versions() {
        assert_eq!(
            parse_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0"),
            Some(("redis", "7.0.15".into()))
        );
        assert_eq!(
            parse_version("Valkey server v=8.0.1 sha=0 malloc=libc bits=64"),
            Some(("valkey", "8.0.1".into()))
        );
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(parse_version("KeyDB server v=6.3.4"), None);
    }

    #[test]
    fn a_binary_that_never_answers_is_killed_and_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("redis-server");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let started = Instant::now();
        let err = read_version_within(&script, Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.contains("did not answer within 0.3s"), "{err}");
        assert!(err.contains(script.to_str().unwrap()), "{err}");
    }

    #[test]
    fn a_missing_explicit_path_says_how_to_install() {
        let err = RedisServer::locate(Some(Path::new("/nonexistent/redis-server")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install redis-server"), "{err}");
        assert!(err.contains("/nonexistent/redis-server"), "{err}");
    }
}
