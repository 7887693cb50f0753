//! Lazarus's own TLS client: redis-rs over rustls, the cluster's CA as the only root, the
//! cluster's certificate presented as the client certificate. The PEM is parsed once
//! into a connection template; every shard's address is a copy of it (no re-reading, no
//! re-parsing per connection). Insecure only when the operator wrote `tls_verify off`.

use std::path::Path;

use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, TlsCertificates};

use super::TlsError;

/// The client side of the cluster's TLS material, ready to address any shard.
#[derive(Clone)]
pub struct ClientTls {
    /// A `TcpTls` address whose parsed parameters every shard's address copies.
    template: ConnectionAddr,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// The material installed in `dir` (`ca.crt`, `cert.crt`, `key.pem`: see
    /// [`super::installed_dir`]).
    pub fn load(dir: &Path, verify: bool) -> Result<ClientTls, TlsError> {
        let read = |what: &'static str, name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| TlsError::Unreadable { what, path, source })
        };
        ClientTls::from_pem(
            read("cacert", "ca.crt")?,
            read("cert", "cert.crt")?,
            read("key", "key.pem")?,
            verify,
        )
        .map_err(|detail| TlsError::BadCertificate {
            what: "cert",
            path: dir.to_path_buf(),
            detail,
        })
    }

    /// From PEM bytes. The error says what redis-rs could not use, never the key.
    pub fn from_pem(
        cacert: Vec<u8>,
        cert: Vec<u8>,
        key: Vec<u8>,
        verify: bool,
    ) -> Result<ClientTls, String> {
        let info = ConnectionInfo {
            addr: ConnectionAddr::TcpTls {
                host: "127.0.0.1".into(),
                port: 1,
                insecure: !verify,
                tls_params: None,
            },
            redis: Default::default(),
        };
        let client = redis::Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: Some(ClientTlsConfig {
                    client_cert: cert,
                    client_key: key,
                }),
                root_cert: Some(cacert),
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(ClientTls {
            template: client.get_connection_info().addr.clone(),
        })
    }

    /// The address of a shard at `host:port`, over TLS.
    pub fn addr(&self, host: &str, port: u16) -> ConnectionAddr {
        let mut addr = self.template.clone();
        if let ConnectionAddr::TcpTls {
            host: h, port: p, ..
        } = &mut addr
        {
            *h = host.to_string();
            *p = port;
        }
        addr
    }

    /// `false` when the operator wrote `tls_verify off`.
    pub fn verifies(&self) -> bool {
        !matches!(self.template, ConnectionAddr::TcpTls { insecure: true, .. })
    }
}
