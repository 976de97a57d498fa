//! TLS for the XMPP listeners: rustls on the ring provider. Loads the configured certificate and
//! key, or generates a self-signed development certificate for the chat domain into the data
//! directory on first start. Knows nothing about XMPP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Serialises certificate generation inside one process (tests start many servers at once).
static GENERATING: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("generating a development certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate and key files to use: the configured ones, or the generated development pair.
pub fn cert_paths(
    cert_file: &str,
    key_file: &str,
    data_dir: &Path,
    domain: &str,
) -> Result<(PathBuf, PathBuf), TlsError> {
    if !cert_file.is_empty() && !key_file.is_empty() {
        return Ok((PathBuf::from(cert_file), PathBuf::from(key_file)));
    }
    let dir = data_dir.join("tls");
    let cert = dir.join(format!("{domain}.dev-cert.pem"));
    let key = dir.join(format!("{domain}.dev-key.pem"));
    let _guard = GENERATING.lock().unwrap_or_else(|p| p.into_inner());
    if cert.exists() && key.exists() {
        // A key written by an older version may be readable by others.
        crate::secret_file::restrict(&key).map_err(|e| TlsError::Read {
            path: key.clone(),
            message: e.to_string(),
        })?;
        return Ok((cert, key));
    }
    let gen = |e: &dyn std::fmt::Display| TlsError::Generate(e.to_string());
    std::fs::create_dir_all(&dir).map_err(|e| gen(&e))?;
    let names = vec![
        domain.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| gen(&e))?;
    crate::secret_file::write(&key, ck.key_pair.serialize_pem().as_bytes()).map_err(|e| gen(&e))?;
    std::fs::write(&cert, ck.cert.pem()).map_err(|e| gen(&e))?;
    tracing::warn!(
        cert = %cert.display(),
        "no TLS certificate configured: generated a self-signed development certificate"
    );
    Ok((cert, key))
}

/// A TLS acceptor for the given PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
