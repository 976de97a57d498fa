//! TLS for the XMPP listeners: rustls on the ring provider. Loads the configured certificate and
//! key, or generates a self-signed development certificate for the chat domain into the data
//! directory on first start. The certificate can be read again while the listeners run
//! (`ReloadableTls`, on SIGHUP): certificates are renewed every few weeks, and a restart would
//! drop every open stream. Knows nothing about XMPP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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

/// A TLS acceptor for the given PEM files (checked: the key must match the certificate).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    Ok(ReloadableTls::load(cert, key)?.acceptor())
}

/// The certificate and key in these PEM files, parsed and checked against each other.
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, &e))?;
    // Also refuses an empty chain and a key of another certificate: swapping those in on a
    // reload would fail every handshake from then on.
    Ok(CertifiedKey::from_der(certs, key, &provider())?)
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificate new handshakes get; established sessions keep the one they began with.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a whole `Arc` (it is only ever replaced, never mutated).
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The listeners' TLS configuration with a certificate that can be replaced while they run:
/// every acceptor handed out resolves the current certificate at each handshake.
pub struct ReloadableTls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<CurrentCert>,
    config: Arc<rustls::ServerConfig>,
}

impl ReloadableTls {
    /// Reads and checks the PEM files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified_key(
            cert, key,
        )?))));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
            config: Arc::new(config),
        })
    }

    /// An acceptor that follows reloads.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// Reads the files again; new handshakes use the new certificate. On any error (a file
    /// missing, half-written, or a key of another certificate) the current one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(certified_key(&self.cert, &self.key)?);
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate file this reads.
    pub fn cert_file(&self) -> &Path {
        &self.cert
    }
}
