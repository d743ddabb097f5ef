//! TLS for `mqtts` and `wss` listeners: reading the PEM files of a listener into a rustls server configuration,
//! and the client certificate's identity (its subject Common Name).
//!
//! Loading happens at start-up, where every error names the file, so a bad certificate stops the broker with a
//! configuration error (exit code 2) instead of failing the first handshake; and again on SIGHUP, where an error
//! keeps the previous configuration.

mod cn;

pub use cn::subject_common_name;

use crate::config::{Listener, TlsFiles};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a listener's TLS files could not be used.
#[derive(Debug)]
pub enum TlsError {
    /// The file is missing, unreadable, or not PEM.
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    /// The file is PEM but holds no item of the kind needed (no certificate, no private key).
    Empty { path: PathBuf, what: &'static str },
    /// A CA certificate that rustls cannot use as a trust anchor.
    BadCa { path: PathBuf, source: rustls::Error },
    /// The client verifier could not be built from the CA file.
    Verifier { path: PathBuf, message: String },
    /// The certificate and key do not go together, or rustls rejected them.
    CertKey {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, source } => write!(f, "cannot read PEM file {}: {source}", path.display()),
            TlsError::Empty { path, what } => write!(f, "{} holds no {what}", path.display()),
            TlsError::BadCa { path, source } => {
                write!(f, "CA file {}: unusable certificate: {source}", path.display())
            }
            TlsError::Verifier { path, message } => write!(f, "CA file {}: {message}", path.display()),
            TlsError::CertKey { cert, key, source } => write!(
                f,
                "certificate {} and key {} cannot be used together: {source}",
                cert.display(),
                key.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// The rustls configuration of every listener, in listener order (`None` for the plain ones).
pub fn load_listeners(listeners: &[Listener]) -> Result<Vec<Option<Arc<ServerConfig>>>, TlsError> {
    listeners
        .iter()
        .map(|l| l.tls.as_ref().map(server_config).transpose())
        .collect()
}

/// Read a listener's certificate chain, key and (optional) client CA into a server configuration.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: files.key_file.clone(),
            what: "private key",
        },
        source => TlsError::Pem {
            path: files.key_file.clone(),
            source,
        },
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::CertKey {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
            source,
        })?;
    let builder = match &files.ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_file)? {
                roots.add(cert).map_err(|source| TlsError::BadCa {
                    path: ca_file.clone(),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsError::Verifier {
                path: ca_file.clone(),
                message: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::CertKey {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
            source,
        })?;
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;

/// The client configuration of a bridge's TLS connection: the remote's certificate is verified against the CA
/// certificates of `ca_file`.
pub fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca_file)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: ca_file.to_path_buf(),
            source,
        })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::BadCa {
            path: ca_file.to_path_buf(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
