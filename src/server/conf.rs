//! A shard's `redis.conf`, from the plain values of [`ShardConf`].

use serde::{Deserialize, Serialize};

use crate::tls::ShardTls;

use super::shard_dir::{ShardDir, AOF_DIR, NODES_CONF, RDB_FILE};

/// Short enough that a lost shard is noticed quickly on loopback clusters, long enough
/// not to flap under load.
pub const CLUSTER_NODE_TIMEOUT_MS: u32 = 5000;

/// Redis 7's own default schedule: after 1 h and 1 change, 5 min and 100, 1 min and 10000.
const SNAPSHOT_SCHEDULE: &str = "3600 1 300 100 60 10000";

/// Deviations from the database's configuration for one start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfOptions {
    /// Force `appendonly` on or off: recovery loads from the AOF (on) or from the RDB
    /// (off; a server with appendonly on and no AOF would ignore the RDB and start
    /// empty), then switches to the configured persistence with `set_persistence`.
    pub appendonly: Option<bool>,
    /// Start without `replicaof` even when the shard follows a master or a sync source:
    /// recovery loads a shard's own files first and re-attaches it afterwards.
    pub standalone: bool,
    /// Loading a multi-part AOF through symlinks to the original files (a recovery's
    /// stand-in): a damaged part is refused, not truncated in place (`aof-load-truncated
    /// no`; `set_persistence` puts Redis's default back).
    pub aof_stand_in: bool,
}

/// How a shard persists its data: an append-only file, snapshots, or not at all.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    Aof,
    Snapshot,
    Disabled,
}

impl std::fmt::Display for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Persistence::Aof => "aof",
            Persistence::Snapshot => "snapshot",
            Persistence::Disabled => "disabled",
        })
    }
}

/// The `save` and `appendonly` values of a persistence policy.
pub(crate) fn persistence_settings(p: Persistence) -> (&'static str, bool) {
    match p {
        Persistence::Aof => ("", true),
        Persistence::Snapshot => (SNAPSHOT_SCHEDULE, false),
        Persistence::Disabled => ("", false),
    }
}

/// The master a standalone shard follows: its master shard, or the database's sync
/// source. `password` is what that master requires (`masterauth`).
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    /// It speaks only TLS: the shard replicates from it over TLS.
    pub tls: bool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Everything a shard's `redis.conf` is made of, as plain values (the database layer
/// builds it from the CCS). `tls` is the cluster's material as installed on the shard's
/// node: a shard that speaks TLS (`speaks_tls`) listens only on TLS with it, and a plain
/// one uses it to replicate from an upstream that speaks TLS.
#[derive(Clone)]
pub struct ShardConf {
    /// `db:N redis:N`, for the header comment.
    pub label: String,
    pub dir: ShardDir,
    /// The node's address: shards bind to it and announce it.
    pub bind: String,
    pub port: u16,
    /// A Redis Cluster member (the database has more than one shard).
    pub sharded: bool,
    pub speaks_tls: bool,
    pub persistence: Persistence,
    /// `maxmemory` in bytes; `None` means no limit.
    pub memory: Option<u64>,
    pub password: Option<String>,
    /// The master a standalone shard follows (its master shard, or the database's sync
    /// source), kept in the file so a restarted replica comes back as a replica.
    pub upstream: Option<Upstream>,
    pub tls: Option<ShardTls>,
    pub opts: ConfOptions,
}

/// The port a `redis.conf` [`render_conf`] wrote listens on: `tls-port` when set (a
/// TLS-only shard has `port 0`), else `port`; `None` when neither names one.
pub fn listening_port(conf: &str) -> Option<u16> {
    let value = |key: &str| {
        conf.lines()
            .filter_map(|line| {
                let (k, v) = line.trim().split_once(' ')?;
                (k == key).then(|| v.trim().trim_matches('"').parse::<u16>().ok())?
            })
            .next_back()
            .filter(|p| *p != 0)
    };
    value("tls-port").or_else(|| value("port"))
}

/// The whole `redis.conf` of a shard. Holds the password when the database has one, so
/// it is written with mode 0600 and never shown.
pub fn render_conf(conf: &ShardConf) -> String {
    let ShardConf {
        label,
        dir,
        bind,
        port,
        sharded,
        speaks_tls,
        persistence,
        memory,
        password,
        upstream,
        tls,
        opts,
    } = conf;
    let (upstream, tls, sharded) = (upstream.as_ref(), tls.as_ref(), *sharded);
    let mut c = String::new();
    let mut line = |key: &str, value: &str| {
        c.push_str(key);
        c.push(' ');
        c.push_str(value);
        c.push('\n');
    };
    line("# written by lazarus for", label);
    line("dir", &quote(&dir.path().to_string_lossy()));
    line("bind", &quote(bind));
    match tls {
        Some(tls) if *speaks_tls => {
            for (key, mut value) in tls.conf_settings(*port, sharded) {
                // A master following a plain sync source replicates from it in plain
                // text; its own replicas follow it over TLS.
                if key == "tls-replication" && upstream.is_some_and(|u| !u.tls) {
                    value = "no".into();
                }
                line(key, &quote(&value));
            }
        }
        _ => {
            line("port", &port.to_string());
            if let Some(tls) = tls.filter(|_| upstream.is_some_and(|u| u.tls)) {
                for (key, value) in tls.file_settings() {
                    line(key, &quote(&value));
                }
                line("tls-replication", "yes");
            }
        }
    }
    line("protected-mode", "no");
    line("daemonize", "yes");
    line("pidfile", &quote(&dir.pid_file().to_string_lossy()));
    line("logfile", &quote(&dir.log().to_string_lossy()));
    line("dbfilename", RDB_FILE);
    line("appenddirname", AOF_DIR);
    let (save, appendonly) = persistence_settings(*persistence);
    line("save", &quote(save));
    line("appendonly", yes_no(opts.appendonly.unwrap_or(appendonly)));
    if opts.appendonly == Some(true) {
        // Loading its data from an AOF: the server would start rewriting it by itself
        // right after the load (the files grew past `auto-aof-rewrite-percentage`), and
        // its fork would hold up the content proof's snapshot for as long (14 s of a
        // 1.2 GB AOF). `set_persistence` sets the default (100) back after the checks.
        line("auto-aof-rewrite-percentage", "0");
    }
    if opts.aof_stand_in {
        line("aof-load-truncated", "no");
    }
    line("appendfsync", "everysec");
    line("aof-use-rdb-preamble", "yes");
    line("maxmemory", &memory.unwrap_or(0).to_string());
    if let Some(pw) = password {
        line("requirepass", &quote(pw));
    }
    // A sync source may want another password than the database's own; cluster replicas
    // and standalone replicas authenticate to masters of the same database.
    let masterauth = match upstream {
        Some(u) => u.password.as_ref().or(password.as_ref()),
        None => password.as_ref(),
    };
    if let Some(pw) = masterauth {
        line("masterauth", &quote(pw));
    }
    // Each master feeds one replica (or a few sync targets): waiting 5 s to batch full
    // syncs only delays every create and every recovery.
    line("repl-diskless-sync-delay", "0");
    if let Some(u) = upstream.filter(|_| !opts.standalone) {
        line("replicaof", &format!("{} {}", quote(&u.host), u.port));
    }
    // A peer learns a node's address from the source address of the node's connections
    // unless the node announces one. Outgoing connections to another loopback address
    // (127.0.0.2) leave from 127.0.0.1, so without this a peer records the wrong address
    // and the cluster never finishes meeting; on multi-homed hosts the same happens.
    let announce = bind
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| !ip.is_unspecified());
    if announce {
        line("replica-announce-ip", &quote(bind));
    }
    if sharded {
        line("cluster-enabled", "yes");
        line("cluster-config-file", NODES_CONF);
        line("cluster-node-timeout", &CLUSTER_NODE_TIMEOUT_MS.to_string());
        if announce {
            line("cluster-announce-ip", &quote(bind));
        }
    }
    c
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Quotes a value for redis.conf (sdssplitargs rules: `\\`, `\"` and `\xHH` escapes).
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_port_is_the_tls_port_when_there_is_one() {
        assert_eq!(
            listening_port("bind \"127.0.0.1\"\nport 30001\n"),
            Some(30001)
        );
        assert_eq!(
            listening_port("port \"0\"\ntls-port \"30002\"\ntls-replication \"yes\"\n"),
            Some(30002)
        );
        assert_eq!(listening_port("port 0\n"), None);
        assert_eq!(listening_port("# port 1\nportx 5\n"), None);
    }
}
