//! Accepting TLS connections for the gRPC and HTTP servers.
//!
//! One accept task per listener takes TCP connections and runs each handshake in a task of
//! its own, with a timeout, so a slow or hostile client never holds up the others. Finished
//! handshakes go to the server through a bounded channel (64): when the server does not
//! take them, handshake tasks wait and the accept task with them (the kernel's backlog
//! holds the rest). A failed handshake is logged at debug and counted in
//! `gridsight_tls_handshake_failures_total{api,reason}`; it never ends the listener.
//!
//! The rustls config is read from the [`ServerTls`] at each handshake, so a SIGHUP that
//! swapped the certificate applies to the next connection.

use std::{net::SocketAddr, sync::Arc};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::ServerTls;
use crate::telemetry::Metrics;

/// Which server a listener feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// gRPC (ALPN h2).
    Grpc,
    /// HTTP and WebSocket (ALPN http/1.1).
    Http,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::Grpc => "grpc",
            Api::Http => "http",
        }
    }
}

/// A connection's peer: its address and the fingerprint of its client certificate (when
/// it presented one that the client CA signed).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// SHA-256 of the client certificate's DER.
    pub cert: Option<[u8; 32]>,
}

/// Accepts on `listener` until `cancel`; handshaken connections come out of the receiver.
pub fn accept(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    api: Api,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    // Backpressure: 64 handshaken connections waiting for the server; beyond that the
    // handshake tasks wait to hand theirs over.
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                got = listener.accept() => match got {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, go on.
                        tracing::warn!(api = api.as_str(), error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(match api {
                Api::Grpc => tls.grpc.load_full(),
                Api::Http => tls.http.load_full(),
            });
            let (tx, metrics, cancel) = (tx.clone(), metrics.clone(), cancel.clone());
            let timeout = tls.handshake_timeout;
            tokio::spawn(async move {
                let shaken = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    r = tokio::time::timeout(timeout, acceptor.accept(tcp)) => r,
                };
                match shaken {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, addr)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(api = api.as_str(), %addr, error = %e, "TLS handshake failed");
                        metrics.tls_failure(api.as_str(), reason(&e));
                    }
                    Err(_) => {
                        tracing::debug!(api = api.as_str(), %addr, "TLS handshake timed out");
                        metrics.tls_failure(api.as_str(), "timeout");
                    }
                }
            });
        }
    });
    rx
}

/// A short, bounded reason for the metric label.
fn reason(e: &std::io::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("certificate") || text.contains("Certificate") {
        "certificate"
    } else if text.contains("InvalidContentType")
        || text.contains("corrupt message")
        || text.contains("invalid")
    {
        "not_tls"
    } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "closed"
    } else {
        "other"
    }
}

/// The fingerprint of the client certificate of a handshaken connection.
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> Option<[u8; 32]> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| super::fingerprint(c))
}

/// The HTTP server's listener: TLS connections from [`accept`], with their [`Peer`].
pub struct HttpListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl HttpListener {
    /// Starts accepting on `listener`.
    pub fn new(
        listener: TcpListener,
        tls: Arc<ServerTls>,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            rx: accept(listener, tls, Api::Http, metrics, cancel),
            local,
        })
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some((stream, addr)) => {
                let cert = peer_cert(&stream);
                (stream, Peer { addr, cert })
            }
            // The accept task ended (shutdown): no more connections; the server's graceful
            // shutdown completes on its own signal.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            cert: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpListener>) -> Self {
        *stream.remote_addr()
    }
}
