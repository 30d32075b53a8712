//! Pre-encoded H.264 clips: what a mount replays.
//!
//! A [`Clip`] is a short loop of access units (one [`Frame`] each) encoded once, in process,
//! with GStreamer's `x264enc` (see [`encode`]) and cached on disk (see [`cache`]), so tests and
//! benches pay the encoding cost once per machine. Frames hold their NAL units as
//! [`bytes::Bytes`] slices of one shared buffer: thousands of sessions replay the same memory.

pub mod cache;
pub mod encode;

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use bytes::Bytes;

/// What the picture shows, which decides how large P-frames are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Content {
    /// A quiet street: a still picture but for one small moving object (`videotestsrc
    /// pattern=ball`), as real cameras always carry a little change (noise, a clock
    /// overlay); P-frames are a few hundred bytes.
    Still,
    /// Lots of motion (`pattern=smpte horizontal-speed=8`: moving bars and a noise patch):
    /// P-frames use the whole bitrate budget (≈13 KB at 640×360, 15 fps, 1.5 Mbit/s).
    Busy,
}

impl Content {
    /// The name used in cache keys and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Content::Still => "still",
            Content::Busy => "busy",
        }
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Content {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "still" => Ok(Content::Still),
            "busy" => Ok(Content::Busy),
            other => Err(format!("unknown content {other:?}; expected still or busy")),
        }
    }
}

/// Everything that determines the bytes of an encoded clip (and so its cache key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClipSpec {
    /// Picture content.
    pub content: Content,
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Frames per second; also the pacing rate of mounts using the clip.
    pub fps: u32,
    /// Seconds between keyframes (IDR); the GOP is `gop_secs * fps` frames.
    pub gop_secs: u32,
    /// Length of the loop in seconds (a whole number of GOPs is best).
    pub clip_secs: u32,
    /// Target bitrate of `x264enc` in kbit/s.
    pub bitrate_kbps: u32,
}

impl ClipSpec {
    /// A spec with the defaults: GOP 2 s, a 4 s loop, and a bitrate that suits the size
    /// (1.5 Mbit/s at 640×360, 4 Mbit/s at 1080p).
    pub fn new(content: Content, width: u32, height: u32, fps: u32) -> Self {
        let pixels = u64::from(width) * u64::from(height);
        let bitrate_kbps = (pixels * 1500 / (640 * 360)).clamp(300, 4000) as u32;
        ClipSpec {
            content,
            width,
            height,
            fps,
            gop_secs: 2,
            clip_secs: 4,
            bitrate_kbps,
        }
    }

    /// Frames between keyframes.
    pub fn gop_frames(&self) -> u32 {
        (self.gop_secs * self.fps).max(1)
    }

    /// Frames in the loop.
    pub fn frame_count(&self) -> u32 {
        (self.clip_secs * self.fps).max(1)
    }

    /// A file-name-safe key naming this spec in the cache.
    pub fn key(&self) -> String {
        format!(
            "{}-{}x{}-{}fps-gop{}s-{}s-{}k-v2",
            self.content,
            self.width,
            self.height,
            self.fps,
            self.gop_secs,
            self.clip_secs,
            self.bitrate_kbps
        )
    }
}

/// One access unit: the slice NAL units of one picture, without start codes.
///
/// SPS, PPS, AUD and SEI units are stripped at encoding time; the sender puts the clip's
/// SPS and PPS in front of every keyframe itself.
#[derive(Clone, Debug)]
pub struct Frame {
    /// NAL units (header byte included), in decoding order.
    pub nals: Vec<Bytes>,
    /// Whether this access unit is an IDR picture.
    pub keyframe: bool,
}

impl Frame {
    /// Payload bytes of this access unit (sum of NAL sizes).
    pub fn size(&self) -> usize {
        self.nals.iter().map(Bytes::len).sum()
    }
}

/// An encoded loop: parameter sets and access units. Frame 0 is always a keyframe.
#[derive(Clone, Debug)]
pub struct Clip {
    /// What was encoded.
    pub spec: ClipSpec,
    /// Sequence parameter set NAL (header byte included, no start code).
    pub sps: Bytes,
    /// Picture parameter set NAL.
    pub pps: Bytes,
    /// The access units, in order.
    pub frames: Vec<Frame>,
}

impl Clip {
    /// Checks the invariants the server relies on.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.sps.len() < 4 || self.sps[0] & 0x1f != 7 {
            return Err("missing or short SPS".into());
        }
        if self.pps.is_empty() || self.pps[0] & 0x1f != 8 {
            return Err("missing PPS".into());
        }
        match self.frames.first() {
            None => Err("no frames".into()),
            Some(f) if !f.keyframe => Err("first frame is not a keyframe".into()),
            Some(_)
                if self
                    .frames
                    .iter()
                    .any(|f| f.nals.iter().any(Bytes::is_empty)) =>
            {
                Err("empty NAL unit".into())
            }
            Some(_) => Ok(()),
        }
    }

    /// `profile-level-id` for the SDP: the three bytes after the SPS header, in hex.
    pub fn profile_level_id(&self) -> String {
        self.sps
            .get(1..4)
            .map(|b| format!("{:02X}{:02X}{:02X}", b[0], b[1], b[2]))
            .unwrap_or_else(|| "42C01E".to_string())
    }

    /// `sprop-parameter-sets` for the SDP: base64 SPS and PPS.
    pub fn sprop_parameter_sets(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("{},{}", b64.encode(&self.sps), b64.encode(&self.pps))
    }

    /// Index of the smallest non-key frame (a "nothing changed" frame on still content),
    /// or 0 if the clip has only keyframes.
    pub fn smallest_delta_frame(&self) -> usize {
        self.frames
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.keyframe)
            .min_by_key(|(_, f)| f.size())
            .map_or(0, |(i, _)| i)
    }

    /// Mean size of key and non-key frames, in bytes: `(key, delta)`.
    pub fn mean_sizes(&self) -> (usize, usize) {
        let mean = |key: bool| {
            let sizes: Vec<usize> = self
                .frames
                .iter()
                .filter(|f| f.keyframe == key)
                .map(Frame::size)
                .collect();
            sizes.iter().sum::<usize>() / sizes.len().max(1)
        };
        (mean(true), mean(false))
    }
}

/// Splits an Annex B byte stream into NAL units (without start codes), sharing `data`.
pub(crate) fn split_annex_b(data: &Bytes) -> Vec<Bytes> {
    let mut starts = Vec::new(); // (start-code position, payload position)
    let d = &data[..];
    let mut i = 0;
    while i + 3 <= d.len() {
        if d[i] == 0 && d[i + 1] == 0 && d[i + 2] == 1 {
            let sc = if i > 0 && d[i - 1] == 0 { i - 1 } else { i };
            starts.push((sc, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &(_, payload)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(d.len(), |&(sc, _)| sc);
        // Trailing zero bytes belong to the next start code or are padding.
        let mut end = end;
        while end > payload && d[end - 1] == 0 {
            end -= 1;
        }
        if end > payload {
            nals.push(data.slice(payload..end));
        }
    }
    nals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = Bytes::from_static(&[
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9, 0,
        ]);
        let nals = split_annex_b(&data);
        assert_eq!(nals.len(), 3);
        assert_eq!(&nals[0][..], &[0x67, 1, 2]);
        assert_eq!(&nals[1][..], &[0x68, 3]);
        assert_eq!(&nals[2][..], &[0x65, 9, 9]);
    }

    #[test]
    fn garbage_without_start_code_gives_nothing() {
        assert!(split_annex_b(&Bytes::from_static(&[1, 2, 3, 4, 5])).is_empty());
    }

    #[test]
    fn spec_defaults_and_key() {
        let s = ClipSpec::new(Content::Busy, 640, 360, 15);
        assert_eq!(s.bitrate_kbps, 1500);
        assert_eq!(s.gop_frames(), 30);
        assert_eq!(s.frame_count(), 60);
        assert_eq!(s.key(), "busy-640x360-15fps-gop2s-4s-1500k-v2");
        assert_eq!(
            ClipSpec::new(Content::Still, 1920, 1080, 15).bitrate_kbps,
            4000
        );
    }
}
