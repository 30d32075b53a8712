//! Helpers for tests and benchmarks (feature `testkit`): make keyframes like a camera's,
//! and snapshot with a fresh pipeline per call (the baseline the pool is measured against).

use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::pipeline::SnapshotPipeline;
use super::{annexb, Codec, Jpeg, MediaError, SnapshotConfig};

/// Encode one `width`×`height` test picture (SMPTE bars) as a keyframe: Annex B, one access
/// unit, parameter sets in front, like retina's `FrameFormat::SIMPLE`. x264enc runs with its
/// defaults (High profile, B-frames allowed), so the SPS announces reordering — the case
/// where a running decoder holds a picture back.
pub fn encode_keyframe(codec: Codec, width: u32, height: u32) -> Result<Bytes, MediaError> {
    super::init()?;
    let (encoder, media_type) = match codec {
        Codec::H264 => ("x264enc", "video/x-h264"),
        Codec::H265 => ("x265enc", "video/x-h265"),
    };
    let description = format!(
        "videotestsrc num-buffers=1 pattern=smpte ! \
         video/x-raw,format=I420,width={width},height={height},framerate=30/1 ! \
         {encoder} ! {media_type},stream-format=byte-stream,alignment=au ! \
         appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| MediaError::Pipeline(format!("{description}: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| MediaError::Pipeline("not a pipeline".into()))?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| MediaError::Pipeline("no appsink".into()))?;
    let state = |state| {
        pipeline
            .set_state(state)
            .map_err(|e| MediaError::Pipeline(format!("set {state:?}: {e}")))
    };
    state(gst::State::Playing)?;
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(30));
    state(gst::State::Null)?;
    let sample = sample.ok_or_else(|| MediaError::Pipeline(format!("{encoder}: no output")))?;
    let buffer = sample
        .buffer()
        .ok_or_else(|| MediaError::Pipeline("sample without buffer".into()))?;
    let map = buffer
        .map_readable()
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    let keyframe = Bytes::copy_from_slice(map.as_slice());
    annexb::check_keyframe(codec, &keyframe)?;
    Ok(keyframe)
}

/// Snapshot with a pipeline built for this call only and torn down after: what a naive
/// implementation pays per snapshot (plugins already loaded).
pub fn fresh_pipeline_snapshot(
    codec: Codec,
    keyframe: &Bytes,
    config: &SnapshotConfig,
    timeout: Duration,
) -> Result<Jpeg, MediaError> {
    let started = Instant::now();
    annexb::check_keyframe(codec, keyframe)?;
    let mut pipeline = SnapshotPipeline::new(codec, config)?;
    let frame = pipeline
        .run(keyframe, started + timeout)
        .map_err(|failure| failure.error)?;
    // Teardown (NULL) happens after the clock stops, as it could after a reply.
    let took = started.elapsed();
    drop(pipeline);
    Ok(Jpeg {
        bytes: frame.bytes,
        width: frame.width,
        height: frame.height,
        took,
    })
}
