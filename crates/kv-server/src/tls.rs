//! HTTPS: kv-server's certificate and key (`--tls-cert`, `--tls-key`; PEM), served with rustls
//! (no system OpenSSL), HTTP/2 and HTTP/1.1 offered by ALPN. The certificate is reloaded from
//! the same files on SIGHUP, without a restart and without closing open connections: new
//! handshakes get the new certificate, connections made before keep theirs. A file that cannot
//! be read or a key that does not match stops the server at start; at a reload, it keeps the
//! certificate it has and logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate chain and key files kv-server serves HTTPS with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The crypto kvstore's TLS uses: rustls with *ring* (builds with a C compiler only).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// Reads and checks the pair: the chain (leaf first), the key (PKCS#8, PKCS#1 RSA or SEC1
    /// EC), and that the key is the leaf certificate's.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, String> {
        let chain = read_chain(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            format!(
                "cannot read the TLS private key {}: {e}",
                self.key.display()
            )
        })?;
        let signing_key = provider().key_provider.load_private_key(key).map_err(|e| {
            format!(
                "the TLS private key {} cannot be used: {e}",
                self.key.display()
            )
        })?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified.keys_match().map_err(|e| {
            format!(
                "the TLS private key {} does not belong to the certificate {}: {e}",
                self.key.display(),
                self.cert.display()
            )
        })?;
        Ok(Arc::new(certified))
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let unreadable = |e: &dyn std::fmt::Display| {
        format!("cannot read the TLS certificate {}: {e}", path.display())
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if chain.is_empty() {
        return Err(format!(
            "the TLS certificate {} holds no certificate (PEM, \"BEGIN CERTIFICATE\")",
            path.display()
        ));
    }
    Ok(chain)
}

/// Hands every handshake the current certificate; [`CertStore::reload`] replaces it.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Loads the files (an error stops the server at start).
    pub fn open(files: TlsFiles) -> Result<Arc<CertStore>, String> {
        let current = RwLock::new(files.load()?);
        Ok(Arc::new(CertStore { files, current }))
    }

    /// Reads the files again; on an error the current certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = self.files.load()?;
        if let Ok(mut current) = self.current.write() {
            *current = loaded;
        }
        Ok(())
    }

    /// rustls's configuration over this store: TLS 1.2 and 1.3, no client certificates, ALPN
    /// `h2` then `http/1.1`.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| Arc::clone(&current))
    }
}

/// Reloads the certificate on every SIGHUP, logging the outcome (on the server's runtime).
#[cfg(unix)]
pub fn reload_on_sighup(store: Arc<CertStore>) -> std::io::Result<()> {
    use actix_web::rt::signal::unix::{SignalKind, signal};

    let mut hangups = signal(SignalKind::hangup())?;
    actix_web::rt::spawn(async move {
        while hangups.recv().await.is_some() {
            match store.reload() {
                Ok(()) => log::info!(
                    "SIGHUP: reloaded the TLS certificate from {}",
                    store.files.cert.display()
                ),
                Err(why) => log::warn!("SIGHUP: kept the TLS certificate in use: {why}"),
            }
        }
    });
    Ok(())
}

/// Windows has no SIGHUP: the certificate is read at start only.
#[cfg(not(unix))]
pub fn reload_on_sighup(_store: Arc<CertStore>) -> std::io::Result<()> {
    Ok(())
}
