//! Serving https: a rustls acceptor whose certificate can be replaced while the proxy runs.
//!
//! The certificate and key are read from PEM files at start and again on SIGHUP ([`Certs::reload`]);
//! new handshakes use the new pair, established connections keep theirs. A pair that does not
//! load (missing file, key not matching the certificate) leaves the old one in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsAcceptor;

/// The certificate being served, and where it came from.
#[derive(Debug)]
pub struct Certs {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl Certs {
    /// Loads the pair; an error says which file is wrong and why.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Certs>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = read(cert_file, key_file, &provider)?;
        let certs = Arc::new(Certs {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(key),
        });
        Ok(certs)
    }

    /// Re-reads both files; on failure the served pair stays as it was.
    pub fn reload(&self) -> Result<(), String> {
        let key = read(&self.cert_file, &self.key_file, &self.provider)?;
        self.current.store(Arc::new(key));
        Ok(())
    }

    /// When the served certificate stops being valid (Unix seconds), if it can be read.
    pub fn not_after(&self) -> Option<i64> {
        let current = self.current.load();
        let leaf = current.cert.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// An acceptor for HTTP/1.1 over TLS 1.2 or 1.3, always serving the current pair.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Current(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

/// Hands every handshake the pair loaded last.
#[derive(Debug)]
struct Current(Arc<Certs>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

fn read(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("tls.cert_file {}: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls.cert_file {}: no CERTIFICATE in it",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("tls.key_file {}: {e}", key_file.display()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "tls.key_file {} does not go with tls.cert_file {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })
}

/// A client configuration for `dynamo-cache healthcheck`: it takes whatever certificate the
/// admin listener presents (the handshake's own signatures are still checked). A liveness probe
/// on the proxy's own host has no name to check a certificate against, no trust store of the
/// proxy's CA, and nothing secret to send.
pub(crate) fn probe_client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
