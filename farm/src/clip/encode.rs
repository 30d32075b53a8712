//! Encoding clips with GStreamer: `videotestsrc ! x264enc ! appsink`, split into access units.
//!
//! The encoder runs with `tune=zerolatency speed-preset=ultrafast bframes=0`, constrained
//! baseline profile, `key-int-max = gop_secs * fps`, so a clip has no B-frames and a keyframe
//! at every GOP boundary. This is blocking work (≈0.1 s for 4 s of 640×360, about a second
//! at 1080p); call it from a blocking thread.

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{split_annex_b, Clip, ClipSpec, Content, Frame};
use crate::FarmError;

/// NAL unit types we care about.
const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

fn gst_err(e: impl std::fmt::Display) -> FarmError {
    FarmError::Gstreamer(e.to_string())
}

/// The `gst-launch` description of the encoding pipeline for `spec`.
pub fn pipeline_description(spec: &ClipSpec) -> String {
    let pattern = match spec.content {
        Content::Still => "pattern=ball",
        Content::Busy => "pattern=smpte horizontal-speed=8",
    };
    format!(
        "videotestsrc num-buffers={n} {pattern} ! \
         video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 ! \
         x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={gop} \
         bitrate={br} ! \
         video/x-h264,stream-format=byte-stream,alignment=au,profile=constrained-baseline ! \
         appsink name=sink sync=false",
        n = spec.frame_count(),
        w = spec.width,
        h = spec.height,
        fps = spec.fps,
        gop = spec.gop_frames(),
        br = spec.bitrate_kbps,
    )
}

/// Encodes `spec` into a clip. Blocking.
pub fn encode(spec: &ClipSpec) -> Result<Clip, FarmError> {
    if spec.fps == 0 || spec.width < 16 || spec.height < 16 || spec.width % 2 + spec.height % 2 != 0
    {
        return Err(FarmError::Config(format!("bad clip spec {spec:?}")));
    }
    gst::init().map_err(gst_err)?;
    let pipeline = gst::parse::launch(&pipeline_description(spec))
        .map_err(gst_err)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| FarmError::Gstreamer("not a pipeline".into()))?;
    let result = run(&pipeline, spec);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn run(pipeline: &gst::Pipeline, spec: &ClipSpec) -> Result<Clip, FarmError> {
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| FarmError::Gstreamer("no appsink".into()))?;
    pipeline.set_state(gst::State::Playing).map_err(gst_err)?;

    let mut sps = None;
    let mut pps = None;
    let mut frames = Vec::with_capacity(spec.frame_count() as usize);
    // `pull_sample` fails at end of stream (or on error, which the bus then tells).
    while let Ok(sample) = sink.pull_sample() {
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let map = buffer.map_readable().map_err(gst_err)?;
        let au = Bytes::copy_from_slice(map.as_slice());
        let mut nals = Vec::new();
        let mut keyframe = false;
        for nal in split_annex_b(&au) {
            match nal[0] & 0x1f {
                NAL_SPS => sps = Some(nal),
                NAL_PPS => pps = Some(nal),
                NAL_IDR => {
                    keyframe = true;
                    nals.push(nal);
                }
                NAL_SLICE => nals.push(nal),
                _ => {} // AUD, SEI, filler: not needed for replay.
            }
        }
        if !nals.is_empty() {
            frames.push(Frame { nals, keyframe });
        }
    }
    if let Some(bus) = pipeline.bus() {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(FarmError::Gstreamer(format!(
                    "{} ({:?})",
                    e.error(),
                    e.debug()
                )));
            }
        }
    }
    let clip = Clip {
        spec: *spec,
        sps: sps.ok_or_else(|| FarmError::BadClip("no SPS".into()))?,
        pps: pps.ok_or_else(|| FarmError::BadClip("no PPS".into()))?,
        frames,
    };
    clip.validate().map_err(FarmError::BadClip)?;
    Ok(clip)
}
