//! Finding `redis-server` and reading its version.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn read_version(path: &Path) -> Result<String, ServerError> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|e| ServerError::Version {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| ServerError::Version {
        path: path.to_path_buf(),
        reason: format!("unexpected output `{}`", text.trim()),
    })
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
    fn a_missing_explicit_path_says_how_to_install() {
        let err = RedisServer::locate(Some(Path::new("/nonexistent/redis-server")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install redis-server"), "{err}");
        assert!(err.contains("/nonexistent/redis-server"), "{err}");
    }
}
