//! One MQTT 3.1.1 connection of the ingest, driven directly over TCP (or TLS, with
//! `[mqtt.tls]`) with rumqttc's packet codec (`rumqttc::Packet::read`, `PubAck::write`, ...).
//!
//! Why not rumqttc's `EventLoop`: it writes and flushes each manual PUBACK on its own (one
//! syscall per message), which cost more than half the ingest's CPU. Here the ingest reads
//! whatever the socket holds, hands the publishes on, and writes all the acknowledgements
//! that became durable in one `write`.
//!
//! Invariant: a `Session` is one connection; packet ids and arrival order belong to it, and
//! it never outlives an I/O error (the caller reconnects with a new one).

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{
    ConnectReturnCode, Packet, PingReq, PubAck, QoS, Subscribe, SubscribeFilter,
    SubscribeReasonCode,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::{config::MqttConfig, tls::MqttTls};

/// The connection's byte stream: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What went wrong with the connection.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// TCP or timeout.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake with the broker failed (its certificate, the CA, the name...).
    #[error("TLS to the broker: {0}")]
    Tls(std::io::Error),
    /// The broker sent bytes that are not MQTT 3.1.1.
    #[error("protocol: {0:?}")]
    Protocol(rumqttc::Error),
    /// The broker refused the connection.
    #[error("broker refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    /// The broker refused a subscription.
    #[error("broker refused the subscription to `{0}`")]
    SubscribeRefused(String),
    /// No answer in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The broker closed the connection.
    #[error("connection closed by the broker")]
    Closed,
    /// The broker answered with the wrong packet.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: String,
    },
}

/// One connection.
pub struct Session {
    stream: Box<dyn Io>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_packet: usize,
    /// Whether the broker still had our session.
    pub session_present: bool,
}

impl Session {
    /// Connects (clean session off, over TLS when `tls` is given) and subscribes to
    /// `topics`.
    pub async fn open(
        cfg: &MqttConfig,
        tls: Option<&MqttTls>,
        topics: &[String],
        qos: QoS,
    ) -> Result<Self, SessionError> {
        let connect_timeout = Duration::from_secs(10);
        let stream = tokio::time::timeout(
            connect_timeout,
            TcpStream::connect((cfg.host.as_str(), cfg.port)),
        )
        .await
        .map_err(|_| SessionError::Timeout("TCP connect"))??;
        stream.set_nodelay(true)?;
        let stream: Box<dyn Io> = match tls {
            Some(tls) => Box::new(
                tokio::time::timeout(connect_timeout, tls.connect(stream))
                    .await
                    .map_err(|_| SessionError::Timeout("TLS handshake"))?
                    .map_err(SessionError::Tls)?,
            ),
            None => Box::new(stream),
        };
        let mut s = Session {
            stream,
            rbuf: BytesMut::with_capacity(256 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            max_packet: cfg.max_payload_bytes.saturating_mul(4).max(256 * 1024),
            session_present: false,
        };
        let mut connect = rumqttc::Connect::new(cfg.client_id.clone());
        connect.clean_session = false;
        connect.keep_alive = u16::try_from(cfg.keep_alive_secs.max(5)).unwrap_or(u16::MAX);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            connect.set_login(u.clone(), p.clone());
        }
        connect.write(&mut s.wbuf).map_err(SessionError::Protocol)?;
        s.flush().await?;
        match s.next_packet(connect_timeout, "CONNACK").await? {
            Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => {
                s.session_present = ack.session_present
            }
            Packet::ConnAck(ack) => return Err(SessionError::Refused(ack.code)),
            other => {
                return Err(SessionError::Unexpected {
                    expected: "CONNACK",
                    got: format!("{other:?}"),
                })
            }
        }
        let filters: Vec<SubscribeFilter> = topics
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), qos))
            .collect();
        let mut sub = Subscribe::new_many(filters);
        sub.pkid = 1;
        sub.write(&mut s.wbuf).map_err(SessionError::Protocol)?;
        s.flush().await?;
        // The SUBACK is read by the caller's loop: a resumed session's queued publishes may
        // come before it, and are handled as they come.
        Ok(s)
    }

    /// Checks a SUBACK of the subscription sent by [`Session::open`].
    pub fn check_suback(
        codes: &[SubscribeReasonCode],
        topics: &[String],
    ) -> Result<(), SessionError> {
        match codes
            .iter()
            .position(|c| matches!(c, SubscribeReasonCode::Failure))
        {
            Some(bad) => Err(SessionError::SubscribeRefused(
                topics.get(bad).cloned().unwrap_or_default(),
            )),
            None => Ok(()),
        }
    }

    async fn fill(&mut self, wait: Duration, what: &'static str) -> Result<(), SessionError> {
        let n = tokio::time::timeout(wait, self.stream.read_buf(&mut self.rbuf))
            .await
            .map_err(|_| SessionError::Timeout(what))??;
        if n == 0 {
            return Err(SessionError::Closed);
        }
        Ok(())
    }

    async fn next_packet(
        &mut self,
        wait: Duration,
        what: &'static str,
    ) -> Result<Packet, SessionError> {
        loop {
            match Packet::read(&mut self.rbuf, self.max_packet) {
                Ok(p) => return Ok(p),
                Err(rumqttc::Error::InsufficientBytes(_)) => self.fill(wait, what).await?,
                Err(e) => return Err(SessionError::Protocol(e)),
            }
        }
    }

    /// Waits until the socket has bytes (cancel-safe: nothing is lost if dropped), then
    /// decodes every complete packet into `out`.
    pub async fn read_packets(&mut self, out: &mut Vec<Packet>) -> Result<(), SessionError> {
        if self.decode(out)? {
            return Ok(());
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(SessionError::Closed);
        }
        self.decode(out)?;
        Ok(())
    }

    fn decode(&mut self, out: &mut Vec<Packet>) -> Result<bool, SessionError> {
        let before = out.len();
        loop {
            match Packet::read(&mut self.rbuf, self.max_packet) {
                Ok(p) => out.push(p),
                Err(rumqttc::Error::InsufficientBytes(_)) => return Ok(out.len() > before),
                Err(e) => return Err(SessionError::Protocol(e)),
            }
        }
    }

    /// Queues a PUBACK (sent by the next [`Session::flush`]).
    pub fn puback(&mut self, pkid: u16) -> Result<(), SessionError> {
        PubAck::new(pkid)
            .write(&mut self.wbuf)
            .map_err(SessionError::Protocol)?;
        Ok(())
    }

    /// Queues a PINGREQ.
    pub fn ping(&mut self) -> Result<(), SessionError> {
        PingReq
            .write(&mut self.wbuf)
            .map_err(SessionError::Protocol)?;
        Ok(())
    }

    /// Writes everything queued, in one go.
    pub async fn flush(&mut self) -> Result<(), SessionError> {
        if !self.wbuf.is_empty() {
            let buf = self.wbuf.split();
            tokio::time::timeout(Duration::from_secs(10), self.stream.write_all(&buf))
                .await
                .map_err(|_| SessionError::Timeout("write"))??;
        }
        Ok(())
    }

    /// Sends DISCONNECT and closes.
    pub async fn disconnect(mut self) {
        if rumqttc::Disconnect.write(&mut self.wbuf).is_ok() {
            let _ = self.flush().await;
        }
        let _ = self.stream.shutdown().await;
    }
}
