//! TLS (rustls with the ring provider): the APIs' server side and the broker link's client
//! side.
//!
//! Owns reading PEM files into rustls types (every failure names the file), the servers'
//! rustls configs ([`ServerTls`]: one for gRPC, ALPN `h2`, one for HTTP, ALPN
//! `http/1.1`, both from the same certificate and swapped whole on SIGHUP, so a renewed
//! certificate is served to new connections without a restart), the MQTT client config,
//! and certificate fingerprints (how a client certificate is recognised).
//!
//! Invariant: the crypto provider is always passed explicitly (never the process default),
//! so no other crate's choice of provider can change or break ours.

pub mod listener;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    server::WebPkiClientVerifier,
    ClientConfig, RootCertStore, ServerConfig,
};

use crate::config::{ApiTlsConfig, MqttTlsConfig};

pub use listener::{HttpListener, Peer};

/// What went wrong with a certificate, key or TLS setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file that cannot be read or holds nothing usable.
    #[error("{file}: {what}")]
    File {
        /// The file.
        file: PathBuf,
        /// Why.
        what: String,
    },
    /// rustls refused the combination (key does not match the certificate...).
    #[error("TLS setup: {0}")]
    Rustls(String),
}

fn file_err(file: &Path, what: impl Into<String>) -> TlsError {
    TlsError::File {
        file: file.to_path_buf(),
        what: what.into(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_err(path, "no PRIVATE KEY in the file"),
        other => file_err(path, other.to_string()),
    })
}

/// A root store of the CA certificates in a PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_err(path, format!("not a CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// SHA-256 of a certificate's DER: how `[[client_certs]]` names a certificate.
pub fn fingerprint(cert: &[u8]) -> [u8; 32] {
    crate::config::security::sha256(cert)
}

/// The gRPC (ALPN h2) and HTTP (ALPN http/1.1) configs of one read of the files.
fn server_configs(cfg: &ApiTlsConfig) -> Result<(ServerConfig, ServerConfig), TlsError> {
    let mut grpc = server_config(cfg)?;
    let mut http = grpc.clone();
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((grpc, http))
}

fn server_config(cfg: &ApiTlsConfig) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&cfg.cert)?;
    let key = load_key(&cfg.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if cfg.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", cfg.key.display())))
}

/// The APIs' TLS configs, swapped whole by [`ServerTls::reload`].
pub struct ServerTls {
    /// gRPC: ALPN `h2`.
    pub grpc: ArcSwap<ServerConfig>,
    /// HTTP and WebSocket: ALPN `http/1.1`.
    pub http: ArcSwap<ServerConfig>,
    /// Longest handshake.
    pub handshake_timeout: std::time::Duration,
}

impl ServerTls {
    /// Reads the certificate, key and client CA of `cfg`.
    pub fn new(cfg: &ApiTlsConfig) -> Result<Arc<Self>, TlsError> {
        let (grpc, http) = server_configs(cfg)?;
        Ok(Arc::new(Self {
            grpc: ArcSwap::from_pointee(grpc),
            http: ArcSwap::from_pointee(http),
            handshake_timeout: std::time::Duration::from_millis(cfg.handshake_timeout_ms),
        }))
    }

    /// Reads the files again (a renewed certificate); on error the old configs stay.
    pub fn reload(&self, cfg: &ApiTlsConfig) -> Result<(), TlsError> {
        let (grpc, http) = server_configs(cfg)?;
        self.grpc.store(Arc::new(grpc));
        self.http.store(Arc::new(http));
        Ok(())
    }
}

/// The client config of the broker link; the broker's certificate must carry `host`.
pub fn mqtt_client(cfg: &MqttTlsConfig, host: &str) -> Result<MqttTls, TlsError> {
    let roots = load_roots(&cfg.ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError::Rustls(format!("{}: {e}", key.display())))?,
        _ => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|_| TlsError::Rustls(format!("mqtt.host `{host}` is not a valid server name")))?;
    Ok(MqttTls {
        config: Arc::new(config),
        server_name,
    })
}

/// TLS to the broker.
#[derive(Clone)]
pub struct MqttTls {
    /// rustls' client config.
    pub config: Arc<ClientConfig>,
    /// The name the broker's certificate must carry.
    pub server_name: ServerName<'static>,
}

impl MqttTls {
    /// Connects TLS over `tcp`.
    pub async fn connect(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), tcp)
            .await
    }
}
