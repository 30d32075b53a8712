//! A test PKI made by the test itself (rcgen): a CA, a server certificate for `localhost`
//! and `127.0.0.1`, client certificates signed by the CA, and a rogue CA that signs a
//! client certificate the daemon must refuse. Plus TLS clients: HTTPS requests over
//! rustls, gRPC channels over tonic's TLS, a WebSocket over a TLS stream.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A client certificate and its key (PEM), and its SHA-256 as `[[client_certs]]` lists it.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub sha256: String,
}

/// The CA and server files, written under `dir`: `ca.crt`, `server.crt`, `server.key`.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    rogue: CertifiedIssuer<'static, KeyPair>,
    pub ca_pem: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Pki {
    /// A fresh CA and server certificate in `dir`.
    pub fn new(dir: &Path) -> Self {
        let ca = ca("gridsight test CA");
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca_pem: ca.pem(),
            ca,
            rogue: ca_rogue(),
        };
        std::fs::write(dir.join("ca.crt"), &pki.ca_pem).expect("write ca.crt");
        pki.write_server();
        pki
    }

    /// (Re)writes `server.crt` and `server.key`: a new key and certificate each call.
    pub fn write_server(&self) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "gridsight");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.ca).expect("server cert");
        std::fs::write(self.dir.join("server.crt"), cert.pem()).expect("write server.crt");
        std::fs::write(self.dir.join("server.key"), key.serialize_pem()).expect("write key");
        cert.der().to_vec()
    }

    /// A client certificate signed by the CA (or by the rogue CA).
    pub fn client(&self, name: &str, rogue: bool) -> ClientCert {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = if rogue { &self.rogue } else { &self.ca };
        let cert = params.signed_by(&key, issuer).expect("client cert");
        ClientCert {
            sha256: sha256_hex(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// `[api.tls]` with this PKI's files (and the CA as the client CA).
    pub fn api_tls_toml(&self) -> String {
        format!(
            "\n[api.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            self.dir.join("server.crt").display(),
            self.dir.join("server.key").display(),
            self.dir.join("ca.crt").display()
        )
    }

    /// rustls' client config trusting the CA, presenting `client` if given.
    pub fn rustls_client(
        &self,
        client: Option<&ClientCert>,
        alpn: &[u8],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.expect("ca pem")).expect("add root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
        let mut config = match client {
            Some(c) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).expect("cert")],
                    PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("key"),
                )
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    }

    /// A blocking TLS connection to `127.0.0.1:port` (name `localhost`).
    pub fn connect(
        &self,
        port: u16,
        client: Option<&ClientCert>,
    ) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let conn = rustls::ClientConnection::new(
            self.rustls_client(client, b"http/1.1"),
            ServerName::try_from("localhost").expect("name"),
        )
        .map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }

    /// An HTTPS request (HTTP/1.0): the status and body; `Err` when TLS fails.
    pub fn https(
        &self,
        port: u16,
        request: &str,
        client: Option<&ClientCert>,
    ) -> std::io::Result<(u16, String)> {
        let mut s = self.connect(port, client)?;
        s.write_all(request.as_bytes())?;
        let mut buf = Vec::new();
        // The server closes after an HTTP/1.0 answer; a close without close_notify is
        // still the whole answer.
        let _ = s.read_to_end(&mut buf);
        Ok(super::parse_http(&String::from_utf8_lossy(&buf)))
    }

    /// `GET path` over HTTPS with a bearer token (or none).
    pub fn https_get(
        &self,
        port: u16,
        path: &str,
        token: Option<&str>,
        client: Option<&ClientCert>,
    ) -> (u16, String) {
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        self.https(
            port,
            &format!("GET {path} HTTP/1.0\r\nhost: localhost\r\n{auth}\r\n"),
            client,
        )
        .expect("HTTPS")
    }

    /// A gRPC channel over TLS to `grpc` (`http://127.0.0.1:port` as the harness prints
    /// it), presenting `client` if given.
    pub async fn channel(
        &self,
        grpc: &str,
        client: Option<&ClientCert>,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        if let Some(c) = client {
            tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
        }
        Channel::from_shared(grpc.replace("http://", "https://"))
            .expect("uri")
            .tls_config(tls)?
            .connect()
            .await
    }
}

fn ca_rogue() -> CertifiedIssuer<'static, KeyPair> {
    ca("rogue CA")
}
