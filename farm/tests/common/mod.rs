//! Shared helpers for the farm's integration tests: a real `retina` client over TCP.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gridsight_farm::{Farm, FarmConfig, FarmHandle, MountConfig};
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport,
};
use retina::codec::{CodecItem, ParametersRef};

/// What the client saw of one frame.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub key: bool,
    pub size: usize,
    /// RTP timestamp relative to the session start, in 90 kHz ticks.
    pub ts: i64,
}

/// What a client saw during a collection window.
#[derive(Debug)]
pub struct Collected {
    pub started: Instant,
    pub frames: Vec<Seen>,
    /// The error that ended the stream, if any.
    pub error: Option<retina::Error>,
    /// Whether the stream ended (error or end of stream) before the window closed.
    pub ended: bool,
    /// Picture size from the SPS, as the client parsed it.
    pub dims: Option<(u32, u32)>,
    /// Frame rate from the SPS, as (duration numerator, denominator).
    pub frame_rate: Option<(u32, u32)>,
    /// RTP timestamps (relative to the session start) of RTCP sender reports received.
    pub reports: Vec<i64>,
}

impl Collected {
    pub fn mean_delta_size(&self) -> usize {
        let d: Vec<usize> = self
            .frames
            .iter()
            .filter(|f| !f.key)
            .map(|f| f.size)
            .collect();
        d.iter().sum::<usize>() / d.len().max(1)
    }
}

pub async fn start(mounts: Vec<MountConfig>) -> FarmHandle {
    Farm::start(FarmConfig::new(mounts))
        .await
        .expect("farm starts")
}

pub fn url(farm: &FarmHandle, mount: &str) -> url::Url {
    url::Url::parse(&farm.url(mount)).expect("valid url")
}

/// DESCRIBE, SETUP (TCP interleaved), PLAY.
pub async fn open(
    farm: &FarmHandle,
    mount: &str,
    creds: Option<(&str, &str)>,
) -> Result<Demuxed, retina::Error> {
    let creds = creds.map(|(u, p)| Credentials {
        username: u.to_string(),
        password: p.to_string(),
    });
    let mut session =
        Session::describe(url(farm, mount), SessionOptions::default().creds(creds)).await?;
    let i = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && s.encoding_name() == "h264")
        .expect("an H.264 stream");
    session
        .setup(
            i,
            SetupOptions::default().transport(Transport::Tcp(TcpTransportOptions::default())),
        )
        .await?;
    session.play(PlayOptions::default()).await?.demuxed()
}

/// Reads the stream for `window`.
pub async fn collect(mut stream: Demuxed, window: Duration) -> Collected {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + window;
    let mut c = Collected {
        started,
        frames: Vec::new(),
        error: None,
        ended: false,
        dims: None,
        frame_rate: None,
        reports: Vec::new(),
    };
    loop {
        let item = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => break,
            Ok(None) => {
                c.ended = true;
                break;
            }
            Ok(Some(Err(e))) => {
                c.error = Some(e);
                c.ended = true;
                break;
            }
            Ok(Some(Ok(item))) => item,
        };
        if let CodecItem::Rtcp(r) = &item {
            if let Some(ts) = r.rtp_timestamp() {
                c.reports.push(ts.elapsed());
            }
        }
        if let CodecItem::VideoFrame(f) = item {
            if c.dims.is_none() {
                if let Some(ParametersRef::Video(v)) = stream.streams()[f.stream_id()].parameters()
                {
                    c.dims = Some(v.pixel_dimensions());
                    c.frame_rate = v.frame_rate();
                }
            }
            c.frames.push(Seen {
                at: Instant::now(),
                key: f.is_random_access_point(),
                size: f.data().len(),
                ts: f.timestamp().elapsed(),
            });
        }
    }
    c
}

/// Opens and collects; panics if the session cannot be opened.
pub async fn watch(farm: &FarmHandle, mount: &str, window: Duration) -> Collected {
    let stream = open(farm, mount, None).await.expect("session opens");
    collect(stream, window).await
}
