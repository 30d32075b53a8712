//! One RTSP connection: request handling (OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE,
//! GET_PARAMETER, SET_PARAMETER, TEARDOWN), fault injection at the protocol level, and the
//! paced sending of media as interleaved RTP on the same socket, with an RTCP sender
//! report after the first frame and every [`REPORT_EVERY`] after that.
//!
//! One task per connection, nothing shared on the hot path but the mount's atomic counters.
//! A connection serves one mount (bound by its first request naming one) and one session.
//! Output goes through a per-connection buffer flushed every [`FLUSH_AT`] bytes and at the
//! end of each frame or batch of responses.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::mount::{Fault, MountState, Settings};
use crate::player::{Out, Player};
use crate::rtp::{NalPackets, RtpSender};
use crate::rtsp::{self, Message, Request, Response};
use crate::sdp;

/// Output buffer size at which media is flushed to the socket mid-frame.
pub const FLUSH_AT: usize = 16 * 1024;
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub mounts: HashMap<String, Arc<MountState>>,
    /// `timeout=` of the `Session` header, in seconds (not enforced).
    pub session_timeout_secs: u32,
}

/// The connection ends (peer gone, I/O error, fault, or TEARDOWN).
struct Stop;

type Flow = Result<(), Stop>;

struct Bound {
    state: Arc<MountState>,
    rx: watch::Receiver<Settings>,
    settings: Settings,
}

struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    shared: Arc<Shared>,
    accepted_at: Instant,
    nonce: String,
    mount: Option<Bound>,
    session_id: Option<String>,
    rtp: Option<RtpSender>,
    track_uri: String,
    player: Option<Player>,
    disconnect_at: Option<Instant>,
    /// When the next RTCP sender report is due (after the next frame sent).
    next_report: Instant,
}

/// Interval between RTCP sender reports.
pub const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves one accepted connection until it ends or `cancel` fires.
pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>, cancel: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut conn = Conn {
        reader,
        writer,
        rbuf: BytesMut::with_capacity(4096),
        wbuf: Vec::with_capacity(2048),
        shared,
        accepted_at: Instant::now(),
        nonce: auth::new_nonce(),
        mount: None,
        session_id: None,
        rtp: None,
        track_uri: String::new(),
        player: None,
        disconnect_at: None,
        next_report: Instant::now(),
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = conn.run() => {}
    }
    conn.stop_playing();
}

async fn changed(rx: Option<&mut watch::Receiver<Settings>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

impl Conn {
    async fn run(&mut self) -> Flow {
        loop {
            let next_frame = self.player.as_ref().and_then(Player::next_due);
            tokio::select! {
                biased;
                r = self.reader.read_buf(&mut self.rbuf) => {
                    match r {
                        Ok(0) | Err(_) => return Err(Stop),
                        Ok(_) => self.on_input().await?,
                    }
                }
                ok = changed(self.mount.as_mut().map(|b| &mut b.rx)) => {
                    if !ok {
                        return Err(Stop);
                    }
                    self.on_settings()?;
                }
                _ = sleep_until(self.disconnect_at) => return Err(Stop),
                _ = sleep_until(next_frame), if next_frame.is_some() => self.send_frame().await?,
            }
        }
    }

    async fn flush(&mut self) -> Flow {
        if !self.wbuf.is_empty() {
            self.writer.write_all(&self.wbuf).await.map_err(|_| Stop)?;
            self.wbuf.clear();
        }
        Ok(())
    }

    fn stop_playing(&mut self) {
        if self.player.take().is_some() {
            if let Some(b) = &self.mount {
                b.state.counters.active_sessions.fetch_sub(1, Relaxed);
            }
        }
    }

    /// Handles every complete message in the read buffer, then flushes the answers.
    async fn on_input(&mut self) -> Flow {
        loop {
            match rtsp::parse(&mut self.rbuf) {
                Ok(None) => break,
                Ok(Some(Message::Data { .. })) => {} // RTCP receiver reports etc.
                Ok(Some(Message::Request(req))) => {
                    let teardown = req.method == "TEARDOWN";
                    if let Some(resp) = self.handle(&req)? {
                        resp.write_to(&mut self.wbuf);
                        if teardown && resp.status() == 200 {
                            self.flush().await?;
                            return Err(Stop);
                        }
                    }
                }
                Err(e) => {
                    Response::new(400, None)
                        .body("text/plain", format!("{e}\r\n"))
                        .write_to(&mut self.wbuf);
                    let _ = self.flush().await;
                    return Err(Stop);
                }
            }
        }
        self.flush().await
    }

    /// Binds the connection to the mount `name` (first request naming one).
    fn bind(&mut self, name: &str) -> Result<bool, Stop> {
        if let Some(b) = &self.mount {
            return Ok(b.state.name == name);
        }
        let Some(state) = self.shared.mounts.get(name).cloned() else {
            return Ok(false);
        };
        state.counters.connections.fetch_add(1, Relaxed);
        let mut rx = state.settings.subscribe();
        let settings = rx.borrow_and_update().clone();
        self.mount = Some(Bound {
            state,
            rx,
            settings,
        });
        self.on_settings_inner()?;
        Ok(true)
    }

    fn on_settings(&mut self) -> Flow {
        if let Some(b) = &mut self.mount {
            b.settings = b.rx.borrow_and_update().clone();
        }
        self.on_settings_inner()
    }

    fn on_settings_inner(&mut self) -> Flow {
        let Some(b) = &self.mount else {
            return Ok(());
        };
        let s = &b.settings;
        self.disconnect_at = match s.fault {
            Fault::Refuse => return Err(Stop),
            Fault::DisconnectLoop(d) => Some(self.accepted_at.max(s.fault_since) + d),
            _ => None,
        };
        if let Some(p) = &mut self.player {
            p.apply(s, Instant::now());
        }
        Ok(())
    }

    /// Answers one request; `Ok(None)` means "say nothing" (a hung DESCRIBE).
    fn handle(&mut self, req: &Request) -> Result<Option<Response>, Stop> {
        let cseq = req.header("CSeq");
        let Some(cseq) = cseq else {
            return Ok(Some(Response::new(400, None)));
        };
        if let Some(name) = req.mount() {
            if !self.bind(name)? {
                return Ok(Some(Response::new(404, Some(cseq))));
            }
        }
        let method = req.method.as_str();
        if let Some(b) = &self.mount {
            if let Fault::Auth { user, pass } = &b.settings.fault {
                let needs = matches!(method, "DESCRIBE" | "SETUP" | "PLAY" | "TEARDOWN");
                if needs
                    && !auth::verify(req.header("Authorization"), method, user, pass, &self.nonce)
                {
                    b.state.counters.auth_failures.fetch_add(1, Relaxed);
                    return Ok(Some(
                        Response::new(401, Some(cseq))
                            .header("WWW-Authenticate", auth::challenge(&self.nonce)),
                    ));
                }
            }
        }
        if let (Some(ours), Some(theirs)) = (&self.session_id, req.session_id()) {
            if ours != theirs && method != "OPTIONS" {
                return Ok(Some(Response::new(454, Some(cseq))));
            }
        }
        let ok = Response::new(200, Some(cseq));
        let resp = match method {
            "OPTIONS" => ok.header("Public", PUBLIC),
            "DESCRIBE" => return Ok(self.describe(req, ok)),
            "SETUP" => self.setup(req, cseq),
            "PLAY" => self.play(cseq),
            "PAUSE" => {
                self.stop_playing();
                self.with_session(ok)
            }
            "GET_PARAMETER" | "SET_PARAMETER" | "TEARDOWN" => self.with_session(ok),
            _ => Response::new(501, Some(cseq)).header("Public", PUBLIC),
        };
        Ok(Some(resp))
    }

    fn with_session(&self, resp: Response) -> Response {
        match &self.session_id {
            Some(id) => resp.header(
                "Session",
                format!("{id};timeout={}", self.shared.session_timeout_secs),
            ),
            None => resp,
        }
    }

    fn describe(&self, req: &Request, ok: Response) -> Option<Response> {
        let Some(b) = &self.mount else {
            return Some(Response::new(404, req.header("CSeq")));
        };
        if b.settings.fault == Fault::HangDescribe {
            return None;
        }
        let content = b
            .settings
            .content
            .content_at(b.settings.content_since.elapsed());
        let sdp = sdp::describe(
            &b.state.name,
            b.state.clip(content),
            b.state.fps,
            rand::random::<u32>().into(),
        );
        let base = req.uri.split(['?', '#']).next().unwrap_or("");
        let base = format!("{}/", base.trim_end_matches('/'));
        Some(ok.header("Content-Base", base).body("application/sdp", sdp))
    }

    fn setup(&mut self, req: &Request, cseq: &str) -> Response {
        if self.mount.is_none() {
            return Response::new(404, Some(cseq));
        }
        let transport = req.header("Transport").unwrap_or("");
        // Only TCP interleaved: the first transport spec that asks for it.
        let Some(spec) = transport
            .split(',')
            .find(|t| t.trim().to_ascii_uppercase().starts_with("RTP/AVP/TCP"))
        else {
            return Response::new(461, Some(cseq));
        };
        let channel = spec
            .split(';')
            .find_map(|p| p.trim().strip_prefix("interleaved="))
            .map(|v| v.split('-').next().unwrap_or("").trim().parse::<u8>());
        let channel = match channel {
            None => 0,
            Some(Ok(c)) if c < u8::MAX => c,
            Some(_) => return Response::new(400, Some(cseq)),
        };
        let rtp = RtpSender::new(channel);
        let transport = format!(
            "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08X}",
            channel,
            channel + 1,
            rtp.ssrc
        );
        self.rtp = Some(rtp);
        self.track_uri = req.uri.clone();
        if self.session_id.is_none() {
            self.session_id = Some(format!("{:016X}", rand::random::<u64>()));
        }
        self.with_session(Response::new(200, Some(cseq)).header("Transport", transport))
    }

    fn play(&mut self, cseq: &str) -> Response {
        let (Some(b), Some(rtp)) = (&self.mount, &self.rtp) else {
            return Response::new(455, Some(cseq));
        };
        let now = Instant::now();
        if self.player.is_none() {
            let content = b
                .settings
                .content
                .content_at(now.saturating_duration_since(b.settings.content_since));
            let mut p = Player::new(b.state.fps, content, now);
            p.apply(&b.settings, now);
            b.state.counters.sessions_opened.fetch_add(1, Relaxed);
            b.state.counters.active_sessions.fetch_add(1, Relaxed);
            self.player = Some(p);
        }
        let ts = self.player.as_ref().map_or(0, Player::ts_base);
        let info = format!("url={};seq={};rtptime={}", self.track_uri, rtp.seq, ts);
        self.with_session(
            Response::new(200, Some(cseq))
                .header("Range", "npt=0.000-")
                .header("RTP-Info", info),
        )
    }

    /// Sends what the player says is due now.
    async fn send_frame(&mut self) -> Flow {
        let (Some(b), Some(p)) = (&self.mount, &mut self.player) else {
            return Ok(());
        };
        let out = p.tick(&b.state, &b.settings, Instant::now());
        let state = b.state.clone();
        let Some(rtp) = &mut self.rtp else {
            return Ok(());
        };
        let mut bytes = 0;
        match out {
            Out::Nothing => return Ok(()),
            Out::Garbage(len) => {
                rtp.push_garbage(&mut self.wbuf, len);
                state.counters.garbage_sent.fetch_add(1, Relaxed);
            }
            Out::Frame { clip, index, ts } => {
                let Some(frame) = clip.frames.get(index) else {
                    return Ok(());
                };
                let params = [&clip.sps, &clip.pps];
                let params = if frame.keyframe { &params[..] } else { &[] };
                let n = frame.nals.len();
                let nals = params.iter().map(|nal| (*nal, false)).chain(
                    frame
                        .nals
                        .iter()
                        .enumerate()
                        .map(|(i, nal)| (nal, i + 1 == n)),
                );
                for (nal, last) in nals {
                    let mut packets = NalPackets::new(nal, ts, last);
                    while packets.write_next(rtp, &mut self.wbuf) {
                        if self.wbuf.len() >= FLUSH_AT {
                            bytes += self.wbuf.len();
                            self.writer.write_all(&self.wbuf).await.map_err(|_| Stop)?;
                            self.wbuf.clear();
                        }
                    }
                }
                state.counters.frames_sent.fetch_add(1, Relaxed);
                let now = Instant::now();
                if now >= self.next_report {
                    self.next_report = now + REPORT_EVERY;
                    rtp.push_sender_report(&mut self.wbuf, ts, std::time::SystemTime::now());
                }
            }
        }
        bytes += self.wbuf.len();
        self.flush().await?;
        state.counters.media_bytes.fetch_add(bytes as u64, Relaxed);
        Ok(())
    }
}
