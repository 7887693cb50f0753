//! The checks `node add ... ssh` makes on the node's machine before anything is stored:
//! it answers with a known host key, the persistent path is usable there, and a
//! `redis-server` (or `valkey-server`) runs there, whose engine and version are recorded.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::CommandError;
use crate::ccs::{rules, NodeServer};
use crate::host::ssh::sh_quote;
use crate::host::{Host, SshError, SshHost, SshTarget};

/// How long `redis-server --version` may take there.
const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

pub struct RemoteCheck {
    host: SshHost,
}

impl RemoteCheck {
    /// Connects (strict host key checking): an unknown key is refused with what
    /// `ssh-keyscan` sees, for the operator to review.
    pub async fn connect(target: &SshTarget) -> Result<RemoteCheck, CommandError> {
        let host = SshHost::new(target.clone()).map_err(|e| {
            CommandError::io(format!("no private directory for the ssh connection: {e}"))
        })?;
        host.connect().await.map_err(|e| match &e {
            SshError::UnknownHostKey { .. } => CommandError::unavailable(e.to_string())
                .hinted("review the key, add it to your known_hosts, then run `node add` again"),
            SshError::ChangedHostKey { .. } => CommandError::conflict(e.to_string()),
            SshError::Unreachable { .. } | SshError::Dropped { .. } => {
                CommandError::unavailable(e.to_string())
            }
        })?;
        Ok(RemoteCheck { host })
    }

    /// The node's machine, for what else is read there.
    pub fn host(&self) -> &SshHost {
        &self.host
    }

    /// The persistent path exists (made when missing) as a writable directory there.
    pub async fn persistent_path(&self, path: &Path) -> Result<(), CommandError> {
        let p = sh_quote(&path.to_string_lossy());
        let out = self
            .host
            .sh(
                &format!("mkdir -p -- {p} && [ -d {p} ] && [ -w {p} ] && [ -x {p} ]"),
                None,
            )
            .await
            .map_err(|e| CommandError::unavailable(e.to_string()))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(CommandError::io(format!(
                "persistent path `{}` is not a writable directory on `{}`{}",
                path.display(),
                self.host.target(),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            )));
        }
        Ok(())
    }

    /// The node's `addr` is that machine's own, where its shards bind: the address the
    /// SSH connection reached (`$SSH_CONNECTION` there), or one the machine routes to
    /// itself (`ip route get` says `local`). A loopback address counts only when it is
    /// the one the connection reached (test hosts on 127.0.0.x): any other is, from this
    /// machine, this machine. A machine without `ip` is taken at its word.
    pub async fn addr(&self, addr: IpAddr) -> Result<(), CommandError> {
        let a = sh_quote(&addr.to_string());
        let script = format!(
            "set -- $SSH_CONNECTION; echo \"reached $3\"\n\
             command -v ip >/dev/null 2>&1 || exit 0\n\
             case \"$(ip route get {a} 2>/dev/null | head -n 1)\" in \"local \"*) echo local;; *) echo other;; esac\n\
             ip -o addr show 2>/dev/null | while read -r _ _ _ cidr _; do echo \"own $cidr\"; done"
        );
        let out = self
            .host
            .sh(&script, None)
            .await
            .map_err(|e| CommandError::unavailable(e.to_string()))?;
        let said = String::from_utf8_lossy(&out.stdout);
        let word = |w: &'static str| said.lines().filter_map(move |l| l.strip_prefix(w));
        let reached: Option<IpAddr> = word("reached ").next().and_then(|r| r.trim().parse().ok());
        if reached == Some(addr) {
            return Ok(());
        }
        let target = self.host.target();
        let at = reached.map_or(String::new(), |r| format!(" (reached at {r})"));
        if addr.is_loopback() {
            return Err(CommandError::conflict(format!(
                "addr `{addr}` is a loopback address, and `{target}`{at} is another machine: from here `{addr}` is this one; give the address its shards listen on there{}",
                reached.map_or(String::new(), |r| format!(", such as `{r}`"))
            )));
        }
        let local = said.lines().any(|l| l == "local");
        let other = said.lines().any(|l| l == "other");
        if local || !other {
            return Ok(());
        }
        let own: Vec<&str> = word("own ").map(str::trim).collect();
        Err(CommandError::conflict(format!(
            "addr `{addr}` is not an address of `{target}`{at}, where the node's shards bind it; its addresses: {}",
            own.join(", ")
        ))
        .hinted("give one of the machine's own addresses as `addr`"))
    }

    /// A recovery path there: an existing, readable directory; its canonical form.
    pub async fn recovery_path(&self, path: &Path) -> Result<PathBuf, CommandError> {
        let p = sh_quote(&path.to_string_lossy());
        let script = format!(
            "[ -e {p} ] || exit 3\n[ -d {p} ] || exit 4\ncd -- {p} && ls -a >/dev/null && pwd -P"
        );
        let out = self
            .host
            .sh(&script, None)
            .await
            .map_err(|e| CommandError::unavailable(e.to_string()))?;
        let target = self.host.target();
        let shown = path.display();
        match out.status.code() {
            Some(0) => Ok(PathBuf::from(
                String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
            )),
            Some(3) => Err(CommandError::not_found(format!(
                "recovery path `{shown}` does not exist on `{target}`"
            ))),
            Some(4) => Err(CommandError::usage(format!(
                "recovery path `{shown}` on `{target}` is not a directory"
            ))),
            _ => Err(CommandError::io(format!(
                "recovery path `{shown}` on `{target}` cannot be read: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }

    /// The server binary there: `given`, else the `redis-server` on the PATH of a login
    /// there; it must answer `--version` as Redis or Valkey.
    pub async fn redis_server(&self, given: Option<&Path>) -> Result<NodeServer, CommandError> {
        let target = self.host.target();
        let path = match given {
            Some(p) => rules::absolute("redis_server", p)?,
            None => {
                let out = self
                    .host
                    .sh("command -v redis-server", None)
                    .await
                    .map_err(|e| CommandError::unavailable(e.to_string()))?;
                let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !out.status.success() || !found.starts_with('/') {
                    return Err(CommandError::not_found(format!(
                        "no `redis-server` on the PATH of `{target}`: install it there, or give its path with `redis_server <path>`"
                    ))
                    .hinted("give its path with `redis_server <path>`"));
                }
                found.into()
            }
        };
        let version = tokio::time::timeout(
            VERSION_TIMEOUT,
            self.host.run(&path, &["--version".to_string()]),
        )
        .await;
        let out = match version {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(CommandError::unavailable(e.to_string())),
            Err(_) => {
                return Err(CommandError::usage(format!(
                    "`redis_server` `{}` on `{target}` did not answer `--version` within {}s",
                    path.display(),
                    VERSION_TIMEOUT.as_secs()
                )))
            }
        };
        if !out.success && out.stdout.trim().is_empty() {
            return Err(CommandError::not_found(format!(
                "`redis_server` `{}` does not run on `{target}`: {}",
                path.display(),
                out.stderr.trim()
            )));
        }
        let (engine, version) =
            crate::server::parse_version(&out.stdout).ok_or_else(|| {
                CommandError::usage(format!(
                    "`redis_server` `{}` on `{target}` is neither redis-server nor valkey-server: `--version` printed `{}`",
                    path.display(),
                    out.stdout.trim()
                ))
            })?;
        Ok(NodeServer {
            path,
            engine: engine.to_string(),
            version,
        })
    }
}
