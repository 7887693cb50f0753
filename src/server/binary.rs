//! Finding `redis-server` and reading its version.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ServerError;

/// A `redis-server` executable and the version it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisServer {
    pub path: PathBuf,
    /// As printed by `redis-server --version` (`v=7.0.15`): `7.0.15`.
    pub version: String,
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
            Some(given) => {
                if !given.is_file() {
                    return Err(ServerError::NotFound {
                        tried: format!("`{}` does not exist", given.display()),
                    });
                }
                given.to_path_buf()
            }
            None => find_on_path("redis-server").ok_or_else(|| ServerError::NotFound {
                tried: "not on PATH".to_string(),
            })?,
        };
        let version = read_version(&path)?;
        Ok(RedisServer { path, version })
    }
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

fn read_version(path: &Path) -> Result<String, ServerError> {
    read_version_within(path, VERSION_TIMEOUT)
}

/// Runs `<path> --version` and waits at most `deadline` for it to exit; a binary that
/// does not is killed and named.
fn read_version_within(path: &Path, deadline: Duration) -> Result<String, ServerError> {
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
    parse_version(&text).ok_or_else(|| fail(format!("unexpected output `{}`", text.trim())))
}

/// `Redis server v=7.0.15 sha=...` (Valkey prints `Valkey server v=...`).
fn parse_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_and_valkey_versions() {
        assert_eq!(
            parse_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0"),
            Some("7.0.15".into())
        );
        assert_eq!(
            parse_version("Valkey server v=8.0.1 sha=0 malloc=libc bits=64"),
            Some("8.0.1".into())
        );
        assert_eq!(parse_version("garbage"), None);
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
