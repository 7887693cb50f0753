//! The shard side: the `redis.conf` settings of a TLS-only shard, and the `CONFIG SET`
//! that makes a running shard load rotated material without a restart.

use std::path::{Path, PathBuf};

/// How a shard of a TLS database listens: the installed material's directory (see
/// [`super::installed_dir`]) and whether clients may come without a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardTls {
    pub dir: PathBuf,
    /// `tls_auth_clients optional`: clients need no certificate (the server's is still
    /// checked by them). Shards still present theirs to each other.
    pub auth_clients_optional: bool,
}

impl ShardTls {
    pub fn new(dir: &Path) -> ShardTls {
        ShardTls {
            dir: dir.to_path_buf(),
            auth_clients_optional: false,
        }
    }

    /// `redis.conf` settings (key, unquoted value), after the plain `port` line: the
    /// shard listens only on TLS at `port`, replicates and (when `sharded`) talks on the
    /// cluster bus over TLS, and asks clients for a certificate signed by the CA.
    pub fn conf_settings(&self, port: u16, sharded: bool) -> Vec<(&'static str, String)> {
        let mut s = vec![("port", "0".to_string()), ("tls-port", port.to_string())];
        s.extend(self.file_settings());
        s.push(("tls-replication", "yes".into()));
        if sharded {
            s.push(("tls-cluster", "yes".into()));
        }
        s.push((
            "tls-auth-clients",
            if self.auth_clients_optional {
                "optional"
            } else {
                "yes"
            }
            .into(),
        ));
        s
    }

    /// The three file settings; given to a running shard by [`ShardTls::rotation`].
    pub fn file_settings(&self) -> [(&'static str, String); 3] {
        let path = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        [
            ("tls-cert-file", path("cert.crt")),
            ("tls-key-file", path("key.pem")),
            ("tls-ca-cert-file", path("ca.crt")),
        ]
    }

    /// `CONFIG SET tls-cert-file .. tls-key-file .. tls-ca-cert-file ..`: one atomic
    /// change (Redis 7 sets several parameters at once, all or none), after which the
    /// shard serves new connections with the new material. The paths differ from the
    /// old ones (a rotation installs into a new directory), so the server reloads.
    pub fn rotation(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET");
        for (key, value) in self.file_settings() {
            cmd.arg(key).arg(value);
        }
        cmd
    }
}
