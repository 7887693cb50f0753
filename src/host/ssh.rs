//! [`SshHost`]: a node on another machine, reached with the operator's own OpenSSH client
//! (`ssh`): their `~/.ssh/config`, agent and `known_hosts` apply, and nothing of ours is
//! installed there. Host keys are checked strictly (an unknown key is refused, never
//! learnt). One multiplexed connection per host (`ControlMaster`), its socket in a private
//! directory of this process, carries every operation; each operation is one POSIX `sh`
//! script run there, reading `/proc` and using coreutils as [`super::LocalHost`] reads
//! them here.
//!
//! `LAZARUS_SSH_CONFIG` names an ssh_config to use instead of `~/.ssh/config` (`ssh -F`):
//! for tests and for operators who keep Lazarus's hosts apart.

use std::fmt;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{
    DirEntry, FileKind, FileSink, Host, HostResult, Memory, Metadata, Signal, Spawn, SpawnOutput,
};

/// The environment variable naming an ssh_config file to use instead of `~/.ssh/config`.
pub const CONFIG_ENV: &str = "LAZARUS_SSH_CONFIG";
/// How long the first connection (resolution, key exchange, authentication) may take.
const CONNECT_TIMEOUT_S: u32 = 10;
/// How long an idle master connection outlives its last use (and this process, if it
/// dies without closing it).
const PERSIST_S: u32 = 60;
/// An exit status the scripts use for "no such file or directory".
const MISSING: i32 = 3;
/// What `ssh` exits with when the connection (not the command) failed.
const SSH_FAILED: i32 = 255;

/// `[user@]host[:port]` with an optional private key: how a node is reached.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SshTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `ssh -i`: a key of the operator's; `None`: their agent and config decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl FromStr for SshTarget {
    type Err = String;

    /// `host`, `user@host`, `host:22`, `user@[::1]:2222`.
    fn from_str(text: &str) -> Result<SshTarget, String> {
        let bad = |why: &str| format!("`{text}` is not `[user@]host[:port]`: {why}");
        let (user, rest) = match text.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err(bad("the user is empty")),
            None => (None, text),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("no closing `]`"))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
                ),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = port
            .map(|p| match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad("the port is not 1-65535")),
            })
            .transpose()?;
        let valid = |c: char| c.is_ascii_alphanumeric() || "-._:".contains(c);
        if host.is_empty() || host.starts_with('-') || !host.chars().all(valid) {
            return Err(bad("the host is not a name or an address"));
        }
        if user
            .as_deref()
            .is_some_and(|u| u.starts_with('-') || u.chars().any(|c| c.is_whitespace()))
        {
            return Err(bad("the user is not a login name"));
        }
        Ok(SshTarget {
            user,
            host: host.to_string(),
            port,
            key: None,
        })
    }
}

impl fmt::Display for SshTarget {
    /// `[user@]host[:port]`, as `node add ... ssh` takes it (the key is shown apart).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match (self.host.contains(':'), self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (_, None) => f.write_str(&self.host),
        }
    }
}

/// Why a host could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Strict host key checking refused the host: `scan` is what `ssh-keyscan` sees there,
    /// for the operator to review and add to their known_hosts.
    #[error("the host key of `{target}` is not known here (strict host key checking): review what `{command}` shows and add it to your known_hosts{}", scan_lines(.scan))]
    UnknownHostKey {
        target: String,
        command: String,
        scan: String,
    },
    /// The key there differs from the one in known_hosts.
    #[error("the host key of `{target}` differs from the one in your known_hosts (a changed or impersonated host): `{reason}`")]
    ChangedHostKey { target: String, reason: String },
    #[error("`{target}` does not answer over ssh: {reason}")]
    Unreachable { target: String, reason: String },
    /// An operation's `ssh` failed (exit 255): the connection dropped or could not be
    /// made again; the host may be gone.
    #[error("ssh to `{target}` failed: {reason}")]
    Dropped { target: String, reason: String },
}

impl SshError {
    /// An operation's `ssh` ended with status 255, having said `stderr`: a connection
    /// cut under it (the host gone, its sshd stopped) often says nothing at all.
    fn dropped(target: &str, stderr: &[u8]) -> SshError {
        let said = String::from_utf8_lossy(stderr).trim().to_string();
        SshError::Dropped {
            target: target.to_string(),
            reason: match said.is_empty() {
                true => {
                    "the connection was lost (ssh ended with status 255 and no message)".to_string()
                }
                false => said,
            },
        }
    }
}

fn scan_lines(scan: &str) -> String {
    if scan.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", scan.trim_end())
    }
}

impl From<SshError> for io::Error {
    /// The [`SshError`] stays inside, typed: [`super::unreachable`] finds it there.
    fn from(e: SshError) -> io::Error {
        let kind = match e {
            SshError::Dropped { .. } => io::ErrorKind::ConnectionAborted,
            _ => io::ErrorKind::ConnectionRefused,
        };
        io::Error::new(kind, e)
    }
}

/// `ssh` processes this process started (each a round trip): what speed work counts.
static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many `ssh` processes (sessions, each at least one round trip) this process has
/// started so far.
pub fn sessions() -> u64 {
    SESSIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A node's machine over SSH. Cheap to share (`Arc`); the master connection opens at the
/// first operation and closes when the last reference is dropped.
pub struct SshHost {
    target: SshTarget,
    config: Option<PathBuf>,
    control_dir: PathBuf,
    master: tokio::sync::Mutex<Option<Result<(), String>>>,
    /// Sessions in flight on this host ([`super::max_concurrency`]).
    slots: tokio::sync::Semaphore,
}

impl fmt::Debug for SshHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshHost({})", self.target)
    }
}

impl SshHost {
    /// Runs `script` (which ends in `exec <program>`) with `args` quoted after it and no
    /// input; what it printed. A failure of ssh itself is an error naming the host.
    async fn exec(&self, mut script: String, args: &[String]) -> HostResult<SpawnOutput> {
        for arg in args {
            script.push(' ');
            script.push_str(&sh_quote(arg));
        }
        script.push_str(" </dev/null");
        let out = self.sh(&script, None).await?;
        if out.status.code() == Some(SSH_FAILED) {
            return Err(SshError::dropped(&self.target.to_string(), &out.stderr).into());
        }
        Ok(SpawnOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
    /// A host to reach; nothing is connected yet. `LAZARUS_SSH_CONFIG` is read here.
    pub fn new(target: SshTarget) -> io::Result<SshHost> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The control socket lets anyone who can open it run commands as the operator
        // there: a directory of our own, owner only. Short: socket paths are limited.
        let control_dir =
            std::env::temp_dir().join(format!("lazarus-ssh-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&control_dir)?;
        let config = std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(SshHost {
            target,
            config,
            control_dir,
            master: tokio::sync::Mutex::new(None),
            slots: tokio::sync::Semaphore::new(super::max_concurrency()),
        })
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    fn socket(&self) -> PathBuf {
        self.control_dir.join("cm")
    }

    /// The options every call shares, up to (not including) the destination.
    fn ssh_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut push = |a: &dyn AsRef<std::ffi::OsStr>| args.push(a.as_ref().to_os_string());
        if let Some(config) = &self.config {
            push(&"-F");
            push(config);
        }
        for o in [
            "BatchMode=yes".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            format!("ConnectTimeout={CONNECT_TIMEOUT_S}"),
            "ServerAliveInterval=5".to_string(),
            "ServerAliveCountMax=3".to_string(),
            format!("ControlPath={}", self.socket().display()),
        ] {
            push(&"-o");
            push(&o);
        }
        if let Some(key) = &self.target.key {
            push(&"-i");
            push(key);
            push(&"-o");
            push(&"IdentitiesOnly=yes");
        }
        if let Some(port) = self.target.port {
            push(&"-p");
            push(&port.to_string());
        }
        if let Some(user) = &self.target.user {
            push(&"-l");
            push(user);
        }
        args
    }

    /// `ssh` with the options every call shares, up to (not including) the destination.
    fn ssh(&self) -> tokio::process::Command {
        SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(self.ssh_args());
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// A blocking `ssh` running `script` there through the master connection (or a
    /// connection of its own when the master has gone), for the streams, which are read
    /// and written on blocking threads.
    fn ssh_blocking(&self, script: &str) -> std::process::Command {
        SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cmd = std::process::Command::new("ssh");
        cmd.args(self.ssh_args())
            .args(["-o", "ControlMaster=no", "--", &self.target.host])
            .arg(format!("sh -c {}", sh_quote(script)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Opens the master connection (once; later calls return its outcome): the host
    /// answers, its key is known and matches, and we may log in.
    pub async fn connect(&self) -> Result<(), SshError> {
        let mut master = self.master.lock().await;
        if let Some(Ok(())) = &*master {
            if self.socket().exists() {
                return Ok(());
            }
        }
        let log = self.control_dir.join("master.log");
        let log_file = std::fs::File::create(&log).map_err(|e| self.unreachable(e))?;
        let status = self
            .ssh()
            .args(["-o", "ControlMaster=yes"])
            .arg("-o")
            .arg(format!("ControlPersist={PERSIST_S}"))
            .args(["-f", "-N", "--", &self.target.host])
            .stdout(Stdio::null())
            .stderr(log_file)
            .status()
            .await
            .map_err(|e| self.unreachable(e))?;
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        let outcome = if status.success() {
            Ok(())
        } else {
            Err(self.classify(said.trim()).await)
        };
        *master = Some(outcome.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        outcome
    }

    fn unreachable(&self, e: impl fmt::Display) -> SshError {
        SshError::Unreachable {
            target: self.target.to_string(),
            reason: e.to_string(),
        }
    }

    async fn classify(&self, said: &str) -> SshError {
        let target = self.target.to_string();
        if said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || said.contains("Host key for") && said.contains("has changed")
        {
            let reason = said
                .lines()
                .find(|l| l.contains("Offending") || l.contains("has changed"))
                .unwrap_or("host key mismatch")
                .to_string();
            return SshError::ChangedHostKey { target, reason };
        }
        if said.contains("Host key verification failed")
            || said.contains("No ") && said.contains("host key is known")
        {
            let mut command = String::from("ssh-keyscan");
            if let Some(p) = self.target.port {
                command.push_str(&format!(" -p {p}"));
            }
            command.push(' ');
            command.push_str(&self.target.host);
            return SshError::UnknownHostKey {
                target,
                command,
                scan: self.keyscan().await,
            };
        }
        let reason = said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("ssh failed without a message")
            .trim()
            .to_string();
        SshError::Unreachable { target, reason }
    }

    /// What `ssh-keyscan` sees at the host: lines for the operator to review, never
    /// written anywhere by us.
    async fn keyscan(&self) -> String {
        let mut cmd = tokio::process::Command::new("ssh-keyscan");
        cmd.args(["-T", "5"]);
        if let Some(p) = self.target.port {
            cmd.arg("-p").arg(p.to_string());
        }
        cmd.arg(&self.target.host)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(Duration::from_secs(10), cmd.output()).await {
            Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).into_owned(),
            _ => String::new(),
        }
    }

    /// Runs `script` with `sh` there, `stdin` fed to it. The status is the script's, or
    /// 255 when ssh failed.
    pub async fn sh(&self, script: &str, stdin: Option<&[u8]>) -> io::Result<std::process::Output> {
        self.connect().await?;
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| io::Error::other("the host's session slots are closed"))?;
        let mut cmd = self.ssh();
        // The login shell there (bash, zsh, fish) only starts `sh`: quoted for any of them.
        cmd.args(["-o", "ControlMaster=no", "--", &self.target.host])
            .arg(format!("sh -c {}", sh_quote(script)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn()?;
        let mut fed = Ok(());
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            fed = match pipe.write_all(bytes).await {
                Ok(()) => pipe.shutdown().await,
                Err(e) => Err(e),
            };
            drop(pipe);
        }
        let out = child.wait_with_output().await?;
        // A pipe that broke because ssh itself failed is that failure (the caller sees
        // exit 255); any other is the script's refusal to read.
        if let Err(e) = fed {
            if out.status.code() != Some(SSH_FAILED) {
                return Err(e);
            }
        }
        if out.status.code() == Some(SSH_FAILED) {
            // The master may have died (host restarted): reconnect next time.
            *self.master.lock().await = None;
        }
        Ok(out)
    }

    /// [`SshHost::sh`], its stdout when the script succeeded, else the error it names.
    async fn sh_ok(&self, script: &str, stdin: Option<&[u8]>) -> io::Result<Vec<u8>> {
        let out = self.sh(script, stdin).await?;
        match out.status.code() {
            Some(0) => Ok(out.stdout),
            code => Err(self.failure(code, &out.stderr)),
        }
    }

    /// The error of a script that exited with `code` after printing `stderr`.
    fn failure(&self, code: Option<i32>, stderr: &[u8]) -> io::Error {
        Failure::of(self).error(code, stderr)
    }

    async fn sh_true(&self, script: &str) -> bool {
        self.sh(script, None)
            .await
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        // Close the master now rather than after ControlPersist.
        if self.socket().exists() {
            let mut cmd = std::process::Command::new("ssh");
            if let Some(config) = &self.config {
                cmd.arg("-F").arg(config);
            }
            let _ = cmd
                .arg("-o")
                .arg(format!("ControlPath={}", self.socket().display()))
                .args(["-O", "exit", &self.target.host])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

/// What [`SshHost::failure`] needs, owned, for the streams that outlive the call.
#[derive(Clone)]
struct Failure {
    name: String,
    target: String,
}

impl Failure {
    fn of(host: &SshHost) -> Failure {
        Failure {
            name: host.name(),
            target: host.target.to_string(),
        }
    }

    fn error(&self, code: Option<i32>, stderr: &[u8]) -> io::Error {
        let stderr = String::from_utf8_lossy(stderr).trim().to_string();
        match code {
            Some(MISSING) => io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such file or directory on {}", self.name),
            ),
            Some(SSH_FAILED) => SshError::dropped(&self.target, stderr.as_bytes()).into(),
            _ => io::Error::other(format!("on {}: {stderr}", self.name)),
        }
    }
}

/// `cat` of a file there, read as it arrives; its exit status is checked at the end.
struct SshReader {
    child: std::process::Child,
    out: std::process::ChildStdout,
    ended: bool,
    failure: Failure,
}

impl io::Read for SshReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.out.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.ended {
            self.ended = true;
            let status = self.child.wait()?;
            if !status.success() {
                let mut stderr = Vec::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_end(&mut stderr);
                }
                return Err(self.failure.error(status.code(), &stderr));
            }
        }
        Ok(n)
    }
}

impl Drop for SshReader {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `cat > <temporary name>` there, fed as written; `finish` syncs it and renames it
/// into place with a second command, so a stream cut short never takes the file's name.
struct SshSink {
    child: Option<std::process::Child>,
    stdin: Option<io::BufWriter<std::process::ChildStdin>>,
    commit: std::process::Command,
    cleanup: std::process::Command,
    failure: Failure,
    done: bool,
}

impl SshSink {
    /// Waits for `cat` after its input ended: why it failed, when it did.
    fn end(&mut self) -> io::Result<()> {
        self.stdin.take();
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = child.wait()?;
        if status.success() {
            return Ok(());
        }
        let mut stderr = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        Err(self.failure.error(status.code(), &stderr))
    }

    fn stdin(&mut self) -> &mut io::BufWriter<std::process::ChildStdin> {
        self.stdin
            .as_mut()
            .expect("a sink is written before it finishes")
    }
}

impl io::Write for SshSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stdin().write(buf) {
            // `cat` there stopped (a full disk, a lost connection): its reason, not EPIPE.
            Err(e) => Err(self.end().err().unwrap_or(e)),
            ok => ok,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.stdin().flush() {
            Err(e) => Err(self.end().err().unwrap_or(e)),
            ok => ok,
        }
    }
}

impl FileSink for SshSink {
    fn finish(mut self: Box<Self>) -> HostResult<()> {
        io::Write::flush(&mut *self)?;
        self.end()?;
        let out = self.commit.output()?;
        if !out.status.success() {
            return Err(self.failure.error(out.status.code(), &out.stderr));
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for SshSink {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.stdin.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cleanup.output();
    }
}

/// `'text'`, safe for `sh`, bash, zsh and fish alike.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn q(path: &Path) -> String {
    sh_quote(&path.to_string_lossy())
}

/// `alive PID`: a thread of the process has not exited (as [`super::local::is_alive`]
/// judges: an exited main thread shows `Z` while the others still finish).
const ALIVE: &str =
    "alive() { for t in /proc/$1/task/*; do s=$(sed -n 's/.*) \\(.\\).*/\\1/p' \"$t/stat\" 2>/dev/null); case \"$s\" in ''|Z|X) ;; *) return 0 ;; esac; done; return 1; }\n";

fn exists(path: &Path) -> String {
    format!("[ -e {p} ] || [ -L {p} ] || exit {MISSING}\n", p = q(path))
}

fn kind_of(letter: &str) -> FileKind {
    match letter {
        "f" => FileKind::File,
        "d" => FileKind::Dir,
        "l" => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

#[async_trait::async_trait]
impl Host for SshHost {
    fn name(&self) -> String {
        format!("ssh://{}", self.target)
    }

    async fn read(&self, path: &Path) -> HostResult<Vec<u8>> {
        self.sh_ok(&format!("{}exec cat -- {}", exists(path), q(path)), None)
            .await
    }

    async fn read_end(&self, path: &Path, after: u64, max: u64) -> HostResult<Vec<u8>> {
        // The file's length, then its last bytes: what it got since (a file that grew in
        // between gives its newest bytes, as many).
        let script = format!(
            "{}n=$(wc -c < {p}) || exit 1\nn=$((n)); f={after}; [ \"$n\" -lt \"$f\" ] && f=0\n\
             k=$((n - f)); [ \"$k\" -gt {max} ] && k={max}\nexec tail -c \"$k\" -- {p}",
            exists(path),
            p = q(path),
        );
        self.sh_ok(&script, None).await
    }

    async fn read_start(&self, path: &Path, max: u64) -> HostResult<Vec<u8>> {
        let script = format!("{}exec head -c {max} -- {p}", exists(path), p = q(path));
        self.sh_ok(&script, None).await
    }

    async fn write_private(&self, path: &Path, bytes: &[u8]) -> HostResult<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = super::local::parent_dir(path);
        // As LocalHost: a unique temporary name, synced, renamed, the directory synced.
        let script = format!(
            "umask 077\nt={d}/{tmp}.$$\ntrap 'rm -f -- \"$t\"' EXIT\n\
             cat > \"$t\" && chmod 600 -- \"$t\" && sync -- \"$t\" && mv -f -- \"$t\" {p} && sync -- {d} && trap - EXIT",
            d = q(dir),
            tmp = sh_quote(&format!(".{name}.tmp.ssh")),
            p = q(path),
        );
        self.sh_ok(&script, Some(bytes)).await.map(|_| ())
    }

    async fn create_private_dir(&self, path: &Path) -> HostResult<()> {
        let script = format!("mkdir -p -- {p} && chmod 700 -- {p}", p = q(path));
        self.sh_ok(&script, None).await.map(|_| ())
    }

    async fn rename(&self, from: &Path, to: &Path) -> HostResult<()> {
        let script = format!("{}mv -f -T -- {} {}", exists(from), q(from), q(to));
        self.sh_ok(&script, None).await.map(|_| ())
    }

    async fn symlink(&self, target: &Path, link: &Path) -> HostResult<()> {
        let script = format!("ln -s -- {} {}", q(target), q(link));
        self.sh_ok(&script, None).await.map(|_| ())
    }

    async fn list(&self, dir: &Path) -> HostResult<Vec<DirEntry>> {
        let script = format!(
            "[ -d {d} ] || exit {MISSING}\nexec find {d} -mindepth 1 -maxdepth 1 -printf '%y/%s/%f\\0'",
            d = q(dir)
        );
        let out = self.sh_ok(&script, None).await?;
        let mut entries: Vec<DirEntry> = out
            .split(|&b| b == 0)
            .filter(|e| !e.is_empty())
            .filter_map(|e| {
                let text = String::from_utf8_lossy(e);
                let (kind, rest) = text.split_once('/')?;
                let (len, name) = rest.split_once('/')?;
                Some(DirEntry {
                    name: name.to_string(),
                    kind: kind_of(kind),
                    len: len.parse().unwrap_or(0),
                })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn metadata(&self, path: &Path) -> HostResult<Metadata> {
        let script = format!(
            "{}exec find {} -maxdepth 0 -printf '%y %s %T@'",
            exists(path),
            q(path)
        );
        let out = String::from_utf8_lossy(&self.sh_ok(&script, None).await?).into_owned();
        let mut words = out.split_whitespace();
        let bad = || io::Error::other(format!("unexpected metadata on {}: `{out}`", self.name()));
        let kind = kind_of(words.next().ok_or_else(bad)?);
        let len = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let modified = words.next().and_then(super::parse_find_time);
        Ok(Metadata {
            kind,
            len,
            modified,
        })
    }

    async fn remove(&self, path: &Path) -> HostResult<()> {
        self.sh_ok(&format!("rm -rf -- {}", q(path)), None)
            .await
            .map(|_| ())
    }

    async fn copy(&self, from: &Path, to: &Path) -> HostResult<u64> {
        let script = format!(
            "{}cp -RT -- {f} {t} && find {t} -type f -printf '%s\\n'",
            exists(from),
            f = q(from),
            t = q(to)
        );
        let out = String::from_utf8_lossy(&self.sh_ok(&script, None).await?).into_owned();
        Ok(out
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .sum())
    }

    async fn open_stream(&self, path: &Path) -> HostResult<Box<dyn io::Read + Send>> {
        self.connect().await?;
        let script = format!("[ -f {p} ] || exit {MISSING}\nexec cat -- {p}", p = q(path));
        let mut child = self.ssh_blocking(&script).stdout(Stdio::piped()).spawn()?;
        let out = child.stdout.take().expect("stdout is piped");
        Ok(Box::new(SshReader {
            child,
            out,
            ended: false,
            failure: Failure::of(self),
        }))
    }

    async fn create_stream(&self, path: &Path) -> HostResult<Box<dyn FileSink>> {
        self.connect().await?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = super::local::parent_dir(path);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.partial.{}.{n}", std::process::id()));
        // noclobber: the temporary name is ours alone.
        let script = format!("umask 077\nset -C\nexec cat > {}", q(&tmp));
        let mut child = self.ssh_blocking(&script).stdin(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        Ok(Box::new(SshSink {
            child: Some(child),
            stdin: Some(io::BufWriter::with_capacity(256 << 10, stdin)),
            commit: self.ssh_blocking(&format!(
                "sync -- {t} && mv -f -- {t} {p} && sync -- {d}",
                t = q(&tmp),
                p = q(path),
                d = q(dir)
            )),
            cleanup: self.ssh_blocking(&format!("rm -f -- {}", q(&tmp))),
            failure: Failure::of(self),
            done: false,
        }))
    }

    async fn spawn_detached(&self, spawn: &Spawn) -> HostResult<SpawnOutput> {
        let script = format!(
            "cd -- {} || exit 1\numask 077\nexec {}",
            q(&spawn.cwd),
            q(&spawn.program)
        );
        self.exec(script, &spawn.args).await
    }

    async fn signal(&self, pid: u32, signal: Signal) -> HostResult<()> {
        let name = match signal {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        };
        let script = format!("kill -s {name} {pid} 2>/dev/null || [ ! -e /proc/{pid} ]");
        self.sh_ok(&script, None).await.map(|_| ())
    }

    async fn is_alive(&self, pid: u32) -> bool {
        self.sh_true(&format!("{ALIVE}alive {pid}")).await
    }

    async fn is_alive_in_dir(&self, pid: u32, dir: &Path) -> bool {
        let script = format!(
            "{ALIVE}d=$(cd -- {} 2>/dev/null && pwd -P) || exit 1\n\
             for t in /proc/{pid}/task/*; do [ \"$(readlink \"$t/cwd\")\" = \"$d\" ] && alive {pid} && exit 0; done; exit 1",
            q(dir)
        );
        self.sh_true(&script).await
    }

    async fn pids_in_dir(&self, dir: &Path) -> Vec<u32> {
        // One `find` over /proc rather than a readlink per thread; every thread's working
        // directory, as an exited main thread has none left to read.
        let script = format!(
            "{ALIVE}d=$(cd -- {} 2>/dev/null && pwd -P) || exit 0\n\
             for p in $(find /proc/[0-9]*/task -mindepth 2 -maxdepth 2 -name cwd -lname \"$d\" 2>/dev/null \
             | cut -d/ -f3 | sort -u); do\n\
             alive $p && echo $p; done; exit 0",
            q(dir)
        );
        match self.sh_ok(&script, None).await {
            Ok(out) => String::from_utf8_lossy(&out)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn process_name(&self, pid: u32) -> Option<String> {
        let out = self
            .sh_ok(&format!("exec cat /proc/{pid}/comm"), None)
            .await
            .ok()?;
        Some(String::from_utf8_lossy(&out).trim_end().to_string())
    }

    async fn cores(&self) -> usize {
        match self.sh_ok("exec nproc", None).await {
            Ok(out) => String::from_utf8_lossy(&out).trim().parse().unwrap_or(0),
            Err(_) => 0,
        }
    }

    async fn memory(&self) -> Memory {
        match self.sh_ok("exec cat /proc/meminfo", None).await {
            Ok(out) => super::local::parse_meminfo(&String::from_utf8_lossy(&out)),
            Err(_) => Memory::default(),
        }
    }

    async fn port_free(&self, addr: &str, port: u16) -> bool {
        if port == 0 {
            return false;
        }
        let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
            return false;
        };
        match self
            .sh_ok("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; exit 0", None)
            .await
        {
            Ok(out) => !listening(&String::from_utf8_lossy(&out), ip, port),
            // Unknown is not free: a start there would fail later and less clearly.
            Err(_) => false,
        }
    }

    async fn run(&self, program: &Path, args: &[String]) -> HostResult<SpawnOutput> {
        self.exec(format!("exec {}", q(program)), args).await
    }
}

/// Whether `/proc/net/tcp{,6}` text shows a socket bound to `port` on `ip` or on the
/// wildcard address (listening, or bound and not yet listening).
fn listening(proc_net: &str, ip: std::net::IpAddr, port: u16) -> bool {
    let want_port = format!("{port:04X}");
    let ip_hex = match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{:02X}{:02X}{:02X}{:02X}", o[3], o[2], o[1], o[0])
        }
        std::net::IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|c| format!("{:02X}{:02X}{:02X}{:02X}", c[3], c[2], c[1], c[0]))
            .collect(),
    };
    // `::ffff:a.b.c.d` as tcp6 writes it.
    let mapped = match ip {
        std::net::IpAddr::V4(_) => format!("0000000000000000FFFF0000{ip_hex}"),
        std::net::IpAddr::V6(_) => String::new(),
    };
    proc_net.lines().any(|line| {
        let mut f = line.split_whitespace();
        let (Some(_), Some(local), Some(_), Some(state)) = (f.next(), f.next(), f.next(), f.next())
        else {
            return false;
        };
        let Some((a, p)) = local.split_once(':') else {
            return false;
        };
        // 0A: LISTEN; 07: CLOSE (bound, not listening).
        p == want_port
            && (state == "0A" || state == "07")
            && (a == ip_hex || a == mapped || a.chars().all(|c| c == '0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_lost_without_a_message_says_so() {
        let quiet = SshError::dropped("root@db1", b"\n").to_string();
        assert_eq!(
            quiet,
            "ssh to `root@db1` failed: the connection was lost (ssh ended with status 255 and no message)"
        );
        let said = SshError::dropped("db1", b"Connection reset by peer\n").to_string();
        assert_eq!(said, "ssh to `db1` failed: Connection reset by peer");
    }

    #[test]
    fn targets_parse_and_print_back() {
        for text in [
            "db1",
            "ops@db1",
            "db1:2222",
            "root@127.0.0.2:40022",
            "u@[::1]:22",
        ] {
            let t: SshTarget = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
        }
        let t: SshTarget = "ops@10.0.0.5:2222".parse().unwrap();
        assert_eq!(
            (t.user.as_deref(), t.host.as_str(), t.port),
            (Some("ops"), "10.0.0.5", Some(2222))
        );
        for bad in [
            "",
            "@h",
            "h:0",
            "h:x",
            "-oProxyCommand=x",
            "h h",
            "[::1",
            "a;b",
        ] {
            assert!(bad.parse::<SshTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn listeners_are_read_from_proc_net() {
        let tcp = "  sl  local_address rem_address   st\n   0: 0200007F:7530 00000000:0000 0A 0\n   1: 00000000:1F90 00000000:0000 0A 0\n   2: 0100007F:7531 0100007F:1234 01 0\n";
        let ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        assert!(listening(tcp, ip, 30000));
        assert!(listening(tcp, ip, 8080), "the wildcard address counts");
        assert!(
            !listening(tcp, ip, 30001),
            "an established socket is not a listener"
        );
        assert!(!listening(tcp, "127.0.0.3".parse().unwrap(), 30000));
    }
}
