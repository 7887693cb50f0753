//! Lazarus's own TLS client: redis-rs over rustls, the cluster's CA as the only root, the
//! cluster's certificate presented as the client certificate. The PEM is parsed once
//! into a connection template; every shard's address is a copy of it (no re-reading, no
//! re-parsing per connection). Insecure only when the operator wrote `tls_verify off`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, TlsCertificates};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsConfig;
use super::TlsError;

/// A shard's `host` and `port` -> its configuration (see [`ClientTls::shard_config`]).
type ShardConfigs = HashMap<(String, u16), Arc<rustls::ClientConfig>>;

/// The client side of the cluster's TLS material, ready to address any shard.
#[derive(Clone)]
pub struct ClientTls {
    /// A `TcpTls` address whose parsed parameters every shard's address copies.
    template: ConnectionAddr,
    /// The same material as a rustls configuration (CA as the only root, the
    /// certificate presented), which each shard's own configuration copies.
    rustls: Arc<rustls::ClientConfig>,
    /// One configuration per shard (`host`, `port`), each with its own session store:
    /// see [`ClientTls::shard_config`].
    per_shard: Arc<Mutex<ShardConfigs>>,
    /// The sha256 of the three PEM inputs and the verify flag: two clients with equal
    /// ids present the same certificate and trust the same CA.
    id: String,
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &ClientTls) -> bool {
        self.id == other.id
    }
}

impl Eq for ClientTls {}

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
        let rustls = rustls_config(&cacert, &cert, &key, verify)?;
        let id = super::fingerprint(&[&cacert[..], &cert, &key, &[u8::from(verify)]].concat());
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
            rustls: Arc::new(rustls),
            per_shard: Arc::default(),
            id,
        })
    }

    /// The client material as installed under the first of `dirs` (each a persistent or
    /// recovery path of a node on this machine, best first) that holds it, when the
    /// cluster has TLS material (`record`). Parsed once per process and material: every
    /// later call (each `status`, each shard) shares it.
    pub fn installed(
        record: Option<&TlsConfig>,
        roots: impl IntoIterator<Item = PathBuf>,
    ) -> Result<Option<ClientTls>, TlsError> {
        let Some(record) = record else {
            return Ok(None);
        };
        let dirs: Vec<PathBuf> = roots
            .into_iter()
            .map(|p| super::installed_dir(&p, record))
            .collect();
        let Some(first) = dirs.first() else {
            return Ok(None);
        };
        let dir = dirs
            .iter()
            .find(|d| d.join("key.pem").is_file())
            .unwrap_or(first)
            .clone();
        static LOADED: OnceLock<Mutex<HashMap<(PathBuf, bool), ClientTls>>> = OnceLock::new();
        let loaded = LOADED.get_or_init(Default::default);
        let key = (dir, record.verify);
        if let Some(c) = loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Some(c.clone()));
        }
        let client = ClientTls::load(&key.0, record.verify)?;
        loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, client.clone());
        Ok(Some(client))
    }

    /// The configuration for the shard at `host:port`: the same material, with a session
    /// store of that shard's own. rustls keeps sessions by server name alone, and every
    /// shard on a machine has the same name (its address): with one store, a shard
    /// would be offered another shard's ticket, which its server cannot read, and no
    /// handshake would ever resume. Per shard, a process that talks to a shard again
    /// (the shell's next `status`) resumes its session (no certificate signed or checked
    /// on either side) instead of a full handshake.
    pub fn shard_config(&self, host: &str, port: u16) -> Arc<rustls::ClientConfig> {
        let mut map = self.per_shard.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((host.to_string(), port))
            .or_insert_with(|| {
                let mut config = (*self.rustls).clone();
                config.resumption = rustls::client::Resumption::in_memory_sessions(4);
                Arc::new(config)
            })
            .clone()
    }

    /// The same material, offering no session and keeping none: for a shard that
    /// refused to resume one.
    pub fn fresh_config(&self) -> Arc<rustls::ClientConfig> {
        let mut config = (*self.rustls).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
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

/// A rustls client configuration: `cacert` the only root, `cert`/`key` presented.
fn rustls_config(
    cacert: &[u8],
    cert: &[u8],
    key: &[u8],
    verify: bool,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cacert) {
        roots
            .add(c.map_err(|e| format!("CA certificate: {e}"))?)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("key: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if verify {
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("CA certificate: {e}"))?;
        Arc::new(ChainCheckedOnce {
            inner: webpki,
            checked: Mutex::default(),
        })
    } else {
        Arc::new(NoVerification(provider.clone()))
    };
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())
}

/// The CA's check of a shard's certificate chain, remembered until the certificate
/// expires: every shard of a cluster presents the same certificate, so a `status` over a
/// hundred shards checks its chain once, not a hundred times. What is remembered is the
/// exact chain and the name it was checked for; each handshake's own signature (the
/// proof that the shard holds the key) is still checked every time.
#[derive(Debug)]
struct ChainCheckedOnce {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    /// Chain and server name -> the end certificate's `notAfter` (Unix seconds).
    checked: Mutex<HashMap<Vec<u8>, u64>>,
}

/// At most this many remembered chains (a rotation or a foreign shard adds one).
const CHECKED_CHAINS: usize = 64;

impl ServerCertVerifier for ChainCheckedOnce {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut key = server_name.to_str().as_bytes().to_vec();
        for c in std::iter::once(end_entity).chain(intermediates) {
            key.extend_from_slice(&(c.len() as u32).to_be_bytes());
            key.extend_from_slice(c);
        }
        let checked = |m: &Mutex<HashMap<Vec<u8>, u64>>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .is_some_and(|not_after| now.as_secs() < *not_after)
        };
        if checked(&self.checked) {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        let verified =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity) {
            let not_after = cert.validity().not_after.timestamp().max(0) as u64;
            let mut map = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= CHECKED_CHAINS {
                map.clear();
            }
            map.insert(key, not_after);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `tls_verify off`: the operator's explicit choice; `status` flags it.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
