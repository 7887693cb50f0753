//! Starting and stopping shard processes. Shards daemonize, so they outlive the shell;
//! their pid is read back from the pidfile and trusted only while the process with that
//! pid still runs in the shard's directory (pids get reused).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::host::{local, Host, Signal, Spawn, SpawnOutput};

use super::client::{info, ShardAddr};
use super::conf::{render_conf, ConfOptions, ShardConf};
use super::ports::PortNeed;
use super::{ServerError, Servers, START_TIMEOUT};

pub use super::shard_dir::{LOG_FILE, PID_FILE};

const POLL: Duration = Duration::from_millis(20);
/// How long a freshly started server may run without a pidfile before a missing process
/// counts as dead (it writes the pidfile within milliseconds of binding).
const PIDLESS_GRACE: Duration = Duration::from_millis(200);
/// How long the launcher may run before it daemonizes (it forks and exits at once).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(10);
// A snapshot database saves on SIGTERM; killing it mid-save would lose that snapshot:
// a stopping shard is killed after this long without its save growing.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct StartOptions {
    pub conf: ConfOptions,
    /// How long the server may take to answer and finish loading its data.
    pub timeout: Duration,
    /// A new database's shard: its identity file carries the `creating` mark until the
    /// configuration holding it is saved.
    pub creating: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            conf: ConfOptions::default(),
            timeout: START_TIMEOUT,
            creating: false,
        }
    }
}

/// One shard to start, as plain values: the database layer builds it from the CCS.
#[derive(Clone)]
pub struct ShardStart {
    pub shard: u64,
    /// The node it runs on: its binary and its machine ([`Servers`]).
    pub node: u64,
    /// Its `redis.conf`, which also names its directory, address and port.
    pub conf: ShardConf,
    /// The identity file's bytes.
    pub identity: Vec<u8>,
    /// How to reach it once started.
    pub addr: ShardAddr,
}

/// Writes the shard's directory, identity file and redis.conf, starts the server detached,
/// and waits until it answers and has finished loading its data. Returns its pid. Every
/// file and process operation goes to the node's own machine ([`Servers::host`]).
pub async fn start_shard(
    servers: &Servers,
    start: &ShardStart,
    timeout: Duration,
) -> Result<u32, ServerError> {
    let shard = start.shard;
    let failed = |reason: String, log_tail: String| ServerError::StartFailed {
        shard,
        reason,
        log_tail,
    };
    let server = servers.for_node(start.node)?;
    let host = servers.host(start.node);
    let host = &*host;
    let shard_dir = &start.conf.dir;
    let dir = shard_dir.path().to_path_buf();
    // The conf, identity file and data hold the password and the keys: owner only.
    host.create_private_dir(&dir)
        .await
        .map_err(|e| ServerError::io(&dir, e))?;
    if let Some(pid) = shard_pid_on(host, &dir).await {
        return Err(failed(
            format!("it already runs as pid {pid}"),
            String::new(),
        ));
    }
    let need = if start.conf.sharded {
        PortNeed::WithBus
    } else {
        PortNeed::Plain
    };
    require_free_on(host, &start.conf.bind, start.conf.port, need).await?;
    host.write_private(&shard_dir.identity_file(), &start.identity)
        .await
        .map_err(|e| ServerError::io(shard_dir.identity_file(), e))?;
    let conf_path = shard_dir.conf();
    let conf = render_conf(&start.conf);
    host.write_private(&conf_path, conf.as_bytes())
        .await
        .map_err(|e| ServerError::io(&conf_path, e))?;
    let _ = host.remove(&shard_dir.pid_file()).await;
    let log_mark = log_mark(host, &dir).await;

    // `daemonize yes`: the launcher forks and exits at once. One that does not exit is not
    // a server starting; it is killed and named rather than waited for forever.
    let launch_deadline = LAUNCH_TIMEOUT.min(timeout);
    let launched = tokio::time::timeout(
        launch_deadline,
        launch(host, &server.path, &conf_path, &dir),
    )
    .await;
    let out = match launched {
        Ok(out) => out.map_err(|e| {
            failed(
                format!(
                    "cannot run `{}` on {}: {e}",
                    server.path.display(),
                    host.name()
                ),
                String::new(),
            )
        })?,
        Err(_) => {
            return Err(failed(
                format!(
                    "`{} {}` did not return within {}s (killed); a redis-server daemonizes at once",
                    server.path.display(),
                    conf_path.display(),
                    launch_deadline.as_secs_f32()
                ),
                log_tail_on(host, &dir, 15).await,
            ))
        }
    };
    if !out.success {
        let mut reason = out.stderr.trim().to_string();
        if reason.is_empty() {
            reason = out.stdout.trim().to_string();
        }
        return Err(failed(
            format!("`redis-server` exited: {reason}"),
            log_tail_on(host, &dir, 15).await,
        ));
    }

    let addr = &start.addr;
    let mut deadline = Instant::now() + timeout;
    let mut loaded_bytes: Option<String> = None;
    let pidless_grace = Instant::now() + PIDLESS_GRACE;
    let mut pid = None;
    loop {
        if pid.is_none() {
            // Its pidfile, else the server working in its directory: a server whose
            // pidfile could not be written (a full disk) runs and serves all the same,
            // and its launcher has exited by now, so the one there is the daemon.
            pid = shard_pid_on(host, &dir).await;
            // The launcher exits once the server has forked, and the server writes its
            // pidfile only after binding its ports: no pidfile and no process (of any name:
            // the binary may be renamed) working in the dir means it died early (a port taken since the probe, a corrupt
            // nodes.conf). Waiting out the timeout would only hide that.
            if pid.is_none()
                && Instant::now() >= pidless_grace
                && host.pids_in_dir(&dir).await.is_empty()
            {
                let tail = log_tail_on(host, &dir, 15).await;
                // A port was taken when the host's probe says so now, or when this start's
                // own lines (after `log_mark`: an old bind failure proves nothing) say the
                // bind failed: the holder may have let go since (another program's brief
                // probe bind), and the next attempt must still keep off the port.
                if port_taken_on(host, &start.conf.bind, start.conf.port, need).await
                    || bind_failed_since(host, &dir, log_mark).await
                {
                    return Err(ServerError::PortLost {
                        shard,
                        port: start.conf.port,
                        log_tail: tail,
                    });
                }
                return Err(failed("it exited before writing its pidfile".into(), tail));
            }
        }
        if let Some(p) = pid {
            if !host.is_alive(p).await {
                return Err(failed(
                    "it exited during startup".into(),
                    log_tail_on(host, &dir, 15).await,
                ));
            }
            if let Ok(i) = info(addr, "persistence", POLL * 10).await {
                if i.get("loading") == Some("0") {
                    return Ok(p);
                }
                // A server that reports loading progress keeps its wait alive: the
                // deadline bounds a stall, not the size of the data.
                let now_loaded = i.get("loading_loaded_bytes").map(str::to_string);
                if now_loaded.is_some() && now_loaded != loaded_bytes {
                    if loaded_bytes.is_some() {
                        deadline = Instant::now() + timeout;
                    }
                    loaded_bytes = now_loaded;
                }
            }
        }
        if Instant::now() >= deadline {
            if let Some(p) = pid {
                // Leave nothing half-started behind: the caller rolls back.
                let _ = stop_pid_on(host, p, Duration::from_secs(2)).await;
            }
            return Err(failed(
                format!(
                    "it did not answer (or made no loading progress) within {}s",
                    timeout.as_secs_f32()
                ),
                log_tail_on(host, &dir, 15).await,
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs the server's launcher in its directory on `host`. Here, with umask 077 set in the
/// child: what the server writes later (CONFIG REWRITE's new redis.conf, RDB and AOF files)
/// holds the password or the keys, whatever the shell's umask. Elsewhere the host's own
/// detached spawn does the same.
async fn launch(
    host: &dyn Host,
    program: &Path,
    conf: &Path,
    dir: &Path,
) -> std::io::Result<SpawnOutput> {
    if !host.is_local() {
        return host
            .spawn_detached(&Spawn {
                program: program.to_path_buf(),
                args: vec![conf.to_string_lossy().into_owned()],
                cwd: dir.to_path_buf(),
            })
            .await;
    }
    let mut launcher = tokio::process::Command::new(program);
    launcher
        .arg(conf)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: umask is async-signal-safe and touches no memory of the parent.
    unsafe {
        launcher.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let out = launcher.output().await?;
    Ok(SpawnOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Stops the shard whose directory is `dir`, if it runs. Returns whether it was running.
/// SIGTERM lets the server persist as configured (save / fsync the AOF); SIGKILL follows
/// when it does not exit in time. A server that says it cannot persist (its shutdown save
/// failed: it keeps running) is left running and named ([`ServerError::ShutdownRefused`]).
pub async fn stop_shard(dir: &Path) -> Result<bool, ServerError> {
    stop_shard_on(&crate::host::local::LocalHost, dir).await
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
pub async fn stop_pid(pid: u32, grace: Duration) -> Result<(), ServerError> {
    let signal = |sig| {
        let _ = local::send_signal(pid, sig);
    };
    signal(Signal::Term);
    let deadline = Instant::now() + grace;
    while is_running(pid) {
        if Instant::now() >= deadline {
            signal(Signal::Kill);
            let hard = Instant::now() + Duration::from_secs(5);
            while is_running(pid) {
                if Instant::now() >= hard {
                    return Err(ServerError::Timeout {
                        what: format!("pid {pid} to exit after SIGKILL"),
                        after: Duration::from_secs(5),
                    });
                }
                tokio::time::sleep(POLL).await;
            }
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// The pid of the server running in `dir`: from its pidfile, trusted only while that
/// process is alive and still has `dir` as its working directory (pids get reused); else
/// any live process working in `dir` (a pidfile someone removed must not hide a server).
pub fn shard_pid(dir: &Path) -> Option<u32> {
    let dir = std::fs::canonicalize(dir).ok()?;
    if let Some(pid) = read_pid(&dir).filter(|&p| local::is_alive_in_dir(p, &dir)) {
        return Some(pid);
    }
    // Without a pidfile only a server counts: an operator's shell may sit in the dir too.
    let is_server = |pid: u32| {
        local::process_name(pid)
            .is_some_and(|c| c.starts_with("redis-server") || c.starts_with("valkey-server"))
    };
    pids_working_in(&dir)
        .into_iter()
        .find(|&pid| is_server(pid))
}

/// Live processes whose working directory is `dir`, whatever their name.
fn pids_working_in(dir: &Path) -> Vec<u32> {
    local::pids_in_dir(dir)
}

/// [`shard_pid`] on any host.
pub async fn shard_pid_on(host: &dyn Host, dir: &Path) -> Option<u32> {
    if let Some(pid) = read_pid_on(host, dir).await {
        if host.is_alive_in_dir(pid, dir).await {
            return Some(pid);
        }
    }
    for pid in host.pids_in_dir(dir).await {
        let name = host.process_name(pid).await.unwrap_or_default();
        if name.starts_with("redis-server") || name.starts_with("valkey-server") {
            return Some(pid);
        }
    }
    None
}

/// [`read_pid`] on any host.
pub async fn read_pid_on(host: &dyn Host, dir: &Path) -> Option<u32> {
    let bytes = host.read(&dir.join(PID_FILE)).await.ok()?;
    String::from_utf8_lossy(&bytes).trim().parse().ok()
}

/// [`stop_shard`] on any host.
pub async fn stop_shard_on(host: &dyn Host, dir: &Path) -> Result<bool, ServerError> {
    let Some(pid) = shard_pid_on(host, dir).await else {
        return Ok(false);
    };
    let mark = log_mark(host, dir).await;
    let _ = host.signal(pid, Signal::Term).await;
    // The save on SIGTERM writes `temp-<pid>.rdb` in the server's directory, then renames
    // it: while it grows the server is saving, however long a large dataset takes, and
    // killing it would lose every write since its last save.
    let saving = dir.join(format!("temp-{pid}.rdb"));
    let mut saved = None;
    let mut deadline = Instant::now() + STOP_TIMEOUT;
    let mut look = Instant::now();
    while host.is_alive(pid).await {
        if Instant::now() >= look {
            // A shutdown save that failed leaves the server running, as it says.
            if shutdown_refused_since(host, dir, mark).await {
                return Err(ServerError::ShutdownRefused {
                    pid,
                    dir: dir.to_path_buf(),
                    log_tail: log_tail_on(host, dir, 15).await,
                });
            }
            let now_saved = host.metadata(&saving).await.ok().map(|m| m.len);
            if now_saved.is_some() && now_saved != saved {
                deadline = Instant::now() + STOP_TIMEOUT;
            }
            saved = now_saved;
            look = Instant::now() + LOOK_EVERY;
        }
        if Instant::now() >= deadline {
            // Neither gone, nor refusing, nor saving: stuck. SIGKILL, as any stop ends.
            stop_pid_on(host, pid, Duration::ZERO).await?;
            return Ok(true);
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(true)
}

/// How often a stopping shard's log is read for a refusal, and its save looked at (over
/// SSH, a read is a round trip with the whole log).
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Whether the lines a server wrote to its log after byte `mark` say its shutdown failed
/// (redis-server 7.0 and valkey-server 8.1 both write `Errors trying to shut down the
/// server` once their save on SIGTERM fails; they keep running).
async fn shutdown_refused_since(host: &dyn Host, dir: &Path, mark: u64) -> bool {
    // `Errors ...` or, on SIGTERM, `... but errors ...`: either capital.
    log_says_since(host, dir, mark, "rrors trying to shut down the server").await
}

/// [`stop_pid`] on any host.
pub async fn stop_pid_on(host: &dyn Host, pid: u32, grace: Duration) -> Result<(), ServerError> {
    let _ = host.signal(pid, Signal::Term).await;
    let deadline = Instant::now() + grace;
    while host.is_alive(pid).await {
        if Instant::now() >= deadline {
            let _ = host.signal(pid, Signal::Kill).await;
            let hard = Instant::now() + Duration::from_secs(5);
            while host.is_alive(pid).await {
                if Instant::now() >= hard {
                    return Err(ServerError::Timeout {
                        what: format!("pid {pid} on {} to exit after SIGKILL", host.name()),
                        after: Duration::from_secs(5),
                    });
                }
                tokio::time::sleep(POLL).await;
            }
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// [`log_tail`] on any host.
pub async fn log_tail_on(host: &dyn Host, dir: &Path, lines: usize) -> String {
    let bytes = host.read_end(&dir.join(LOG_FILE), 0, TAIL_BYTES).await;
    last_lines(&bytes.unwrap_or_default(), lines)
}

/// How much of the end of a log its last lines are looked for in.
const TAIL_BYTES: u64 = 16 * 1024;

/// The last `lines` lines of the end of a log.
fn last_lines(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether the lines a server wrote to its log after byte `mark` say it could not bind
/// a port (redis-server and valkey-server both write `Address already in use`).
async fn bind_failed_since(host: &dyn Host, dir: &Path, mark: u64) -> bool {
    log_says_since(host, dir, mark, "Address already in use").await
}

/// Where a shard's log ends now: what the server writes from here on is this start's or
/// stop's (the log is appended across a shard's lives).
async fn log_mark(host: &dyn Host, dir: &Path) -> u64 {
    host.metadata(&dir.join(LOG_FILE))
        .await
        .map(|m| m.len)
        .unwrap_or(0)
}

/// Whether the lines a server wrote to its log after byte `mark` hold `words`.
async fn log_says_since(host: &dyn Host, dir: &Path, mark: u64, words: &str) -> bool {
    // A log shorter than the mark was replaced: all of it is new. A start or a stop writes
    // a few lines; the newest of them when more came.
    let Ok(new) = host.read_end(&dir.join(LOG_FILE), mark, SINCE_BYTES).await else {
        return false;
    };
    String::from_utf8_lossy(&new).contains(words)
}

/// How much of what a log got since a mark is looked at.
const SINCE_BYTES: u64 = 1 << 20;

/// Whether another program holds `port` (or, for `need`, its bus port) on `addr` of
/// `host`: the host's own port probe, never a server's words.
pub async fn port_taken_on(host: &dyn Host, addr: &str, port: u16, need: PortNeed) -> bool {
    for p in need.ports(port) {
        if !host.port_free(addr, p).await {
            return true;
        }
    }
    false
}

/// [`super::require_free`] on any host.
pub async fn require_free_on(
    host: &dyn Host,
    addr: &str,
    port: u16,
    need: PortNeed,
) -> Result<(), ServerError> {
    for held in need.ports(port) {
        if !host.port_free(addr, held).await {
            return Err(ServerError::PortTaken {
                addr: addr.to_string(),
                port,
                held,
            });
        }
    }
    Ok(())
}

pub fn read_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Alive and not a zombie (a container's init may not reap promptly).
pub fn is_running(pid: u32) -> bool {
    local::is_alive(pid)
}

/// The last `lines` lines of the shard's log, for error messages.
pub fn log_tail(dir: &Path, lines: usize) -> String {
    let bytes = crate::host::local::read_end(&dir.join(LOG_FILE), 0, TAIL_BYTES);
    last_lines(&bytes.unwrap_or_default(), lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::local::LocalHost;

    /// Only what a start appended to the shard's log says whether its bind failed: an old
    /// bind failure before the mark is another life's.
    #[tokio::test]
    async fn a_bind_failure_counts_only_after_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(LOG_FILE);
        let old = "1:M # Could not create server TCP listening socket *:1: bind: Address already in use\n";
        std::fs::write(&log, old).unwrap();
        let mark = old.len() as u64;
        assert!(!bind_failed_since(&LocalHost, dir.path(), mark).await);
        let mut text = old.to_string();
        text.push_str(
            "2:M # Failed listening on port 2 (tcp), aborting. bind: Address already in use\n",
        );
        std::fs::write(&log, &text).unwrap();
        assert!(bind_failed_since(&LocalHost, dir.path(), mark).await);
        // A log replaced by a shorter one is all this start's.
        std::fs::write(&log, "3:M bind: Address already in use\n").unwrap();
        assert!(bind_failed_since(&LocalHost, dir.path(), mark).await);
    }
}
