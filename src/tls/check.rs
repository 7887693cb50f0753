//! The check of the operator's TLS files, all of it before anything is stored: each
//! parses as PEM, the key is the certificate's, the CA signed the certificate (a real
//! signature check, by rustls' own verifier), neither is expired, the certificate serves
//! as both server and client (shards present it to each other), the key is not readable
//! by others.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use sha2::{Digest, Sha256};

use super::{MaterialPaths, TlsError};
use super::{TlsConfig, TlsFile};

/// Checked material: the files' bytes as read (to install them unchanged) and the record
/// the CCS keeps. The key's bytes stay here, never in a reply, a log or the CCS.
pub struct Material {
    pub(super) cacert_pem: Vec<u8>,
    pub(super) cert_pem: Vec<u8>,
    pub(super) key_pem: Vec<u8>,
    /// What the CCS records: paths, fingerprints, the certificate's expiry.
    pub record: TlsConfig,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Reads and judges `paths` as of `now` (unix seconds). Nothing is written.
pub fn check(paths: &MaterialPaths, now: i64) -> Result<Material, TlsError> {
    let cacert_pem = read("cacert", &paths.cacert)?;
    let cert_pem = read("cert", &paths.cert)?;
    key_not_readable_by_others(&paths.key)?;
    let key_pem = read("key", &paths.key)?;

    let ca = certificates("cacert", &paths.cacert, &cacert_pem)?;
    let chain = certificates("cert", &paths.cert, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NotPem {
        what: "key",
        path: paths.key.clone(),
        expected: "private key",
        detail: pem_detail(e),
    })?;

    // Dates first: an expired file is named with its date, before the verifier's
    // less specific verdict.
    for der in &ca {
        validity("cacert", &paths.cacert, der, now)?;
    }
    let cert_not_after = validity("cert", &paths.cert, &chain[0], now)?;

    if let PrivateKeyDer::Pkcs8(k) = &key {
        if pkcs8_v2(k.secret_pkcs8_der()) {
            return Err(TlsError::KeyShardsCannotLoad {
                path: paths.key.clone(),
                detail: "a PKCS#8 v2 key (its public key included, as ring and rcgen write \
                         Ed25519 keys); write it as PKCS#8 v1, as `openssl genpkey` does",
            });
        }
    }
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        TlsError::UnsupportedKey {
            path: paths.key.clone(),
            detail: e.to_string(),
        }
    })?;
    key_matches(paths, chain.clone(), signing_key)?;
    signed_by_ca(paths, &ca, &chain, now)?;

    let record = TlsConfig {
        cacert: TlsFile::of(&paths.cacert, fingerprint(&ca[0])),
        cert: TlsFile::of(&paths.cert, fingerprint(&chain[0])),
        key: TlsFile::of(&paths.key, fingerprint(key.secret_der())),
        cert_not_after,
        verify: true,
    };
    Ok(Material {
        cacert_pem,
        cert_pem,
        key_pem,
        record,
    })
}

/// A PKCS#8 v2 document (`OneAsymmetricKey`, version 1): rustls signs with it, but the
/// shards' OpenSSL 3.0 refuses it ("unsupported"), so a shard given it would not start.
fn pkcs8_v2(der: &[u8]) -> bool {
    let body = match der {
        [0x30, n, rest @ ..] if *n < 0x80 => rest,
        [0x30, 0x81, _, rest @ ..] => rest,
        [0x30, 0x82, _, _, rest @ ..] => rest,
        _ => return false,
    };
    body.starts_with(&[0x02, 0x01, 0x01])
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TlsError::Missing {
                what,
                path: path.to_path_buf(),
            })
        }
        Ok(meta) if !meta.is_file() => {
            return Err(TlsError::Unreadable {
                what,
                path: path.to_path_buf(),
                source: std::io::Error::other("not a regular file"),
            })
        }
        // A certificate file is a few KiB; a huge one is not what was meant.
        Ok(meta) if meta.len() > 1 << 20 => {
            return Err(TlsError::Unreadable {
                what,
                path: path.to_path_buf(),
                source: std::io::Error::other(format!("{} bytes, more than 1 MiB", meta.len())),
            })
        }
        _ => {}
    }
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn key_not_readable_by_others(path: &Path) -> Result<(), TlsError> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // `read` names the fault
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o006 != 0 {
        return Err(TlsError::KeyReadableByOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NotPem {
            what,
            path: path.to_path_buf(),
            expected: "certificate",
            detail: pem_detail(e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NotPem {
            what,
            path: path.to_path_buf(),
            expected: "certificate",
            detail: String::new(),
        });
    }
    for der in &certs {
        x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate {
            what,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    Ok(certs)
}

fn pem_detail(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => String::new(),
        e => format!(": {e}"),
    }
}

/// The certificate's `notAfter` (unix seconds), or the error naming the date it expired
/// or becomes valid.
/// The expiry (unix seconds) of the first certificate in `pem`, as installed on a node.
pub fn cert_not_after(pem: &[u8]) -> Option<i64> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn validity(
    what: &'static str,
    path: &Path,
    der: &CertificateDer<'_>,
    now: i64,
) -> Result<i64, TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate {
            what,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let validity = cert.validity();
    let not_after = validity.not_after.timestamp();
    if now > not_after {
        return Err(TlsError::Expired {
            what,
            path: path.to_path_buf(),
            not_after: utc(not_after),
        });
    }
    let not_before = validity.not_before.timestamp();
    if now < not_before {
        return Err(TlsError::NotYetValid {
            what,
            path: path.to_path_buf(),
            not_before: utc(not_before),
        });
    }
    Ok(not_after)
}

fn key_matches(
    paths: &MaterialPaths,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn rustls::sign::SigningKey>,
) -> Result<(), TlsError> {
    match CertifiedKey::new(chain, key).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                key: paths.key.clone(),
                cert: paths.cert.clone(),
            })
        }
        Err(e) => Err(TlsError::UnsupportedKey {
            path: paths.key.clone(),
            detail: e.to_string(),
        }),
    }
}

fn signed_by_ca(
    paths: &MaterialPaths,
    ca: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
    now: i64,
) -> Result<(), TlsError> {
    let not_signed = |detail: String| TlsError::NotSignedByCa {
        cert: paths.cert.clone(),
        ca: paths.cacert.clone(),
        detail,
    };
    let anchors = ca
        .iter()
        .map(|der| webpki::anchor_from_trusted_cert(der).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            what: "cacert",
            path: paths.cacert.clone(),
            detail: format!("not usable as a trust anchor: {e}"),
        })?;
    let end_entity =
        webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| TlsError::BadCertificate {
            what: "cert",
            path: paths.cert.clone(),
            detail: e.to_string(),
        })?;
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
    let usages = [
        ("server", webpki::KeyUsage::server_auth()),
        ("client", webpki::KeyUsage::client_auth()),
    ];
    for (usage, eku) in usages {
        match end_entity.verify_for_usage(algs, &anchors, &chain[1..], time, eku, None, None) {
            Ok(_) => {}
            Err(webpki::Error::RequiredEkuNotFoundContext(_)) => {
                return Err(TlsError::WrongUsage {
                    path: paths.cert.clone(),
                    usage,
                    detail: format!("its extended key usage lacks {usage}Auth"),
                })
            }
            Err(e) => return Err(not_signed(verifier_detail(&e))),
        }
    }
    Ok(())
}

fn verifier_detail(e: &webpki::Error) -> String {
    match e {
        webpki::Error::UnknownIssuer => "its issuer is not that CA".into(),
        webpki::Error::InvalidSignatureForPublicKey => {
            "the signature does not verify with that CA's key".into()
        }
        e => format!("{e:?}"),
    }
}

/// sha256 of DER bytes, lowercase hex: how the CCS names a file without holding it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// `2024-01-31 23:59:59 UTC`.
pub fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
