//! One reusable decode → JPEG pipeline, driven by one worker thread:
//!
//! `appsrc ! {h264,h265}parse ! avdec_{h264,h265} ! videoconvert [! videoscale ! capsfilter]
//! ! jpegenc ! appsink`
//!
//! Flush strategy, per job: push the keyframe, then EOS. EOS makes the decoder drain, so the
//! picture comes out even when the stream's SPS announces reordering (B-frames) or the
//! decoder runs frame threads; nothing depends on a following frame. The appsink's
//! `new-sample` callback, its `eos` callback and bus errors all land in one channel, so the
//! worker wakes on whichever comes first. After the reply, [`SnapshotPipeline::reset`] takes
//! the pipeline to NULL (READY is not enough to leave EOS behind) and back to PLAYING, so the
//! next job finds it ready and the reset is not on anyone's critical path.
//!
//! Measured (`make bench-snapshot`): without EOS, a running pipeline fed x264's default
//! keyframes (High profile, B-frames announced) gives no picture for the first three pushes
//! and then outputs the *first* one — a shared pipeline would serve the previous camera's
//! picture. With EOS + reset, 640×360 takes ≈6 ms and 1080p ≈18–20 ms; the reset re-opens
//! the decoder, so reuse beats a fresh pipeline per job by only ≈1.2–1.3× (plugins loaded
//! in both). Cheaper reuse (flush events instead of NULL) is possible future work.

use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{Codec, MediaError, SnapshotConfig};

/// What the streaming threads report to the worker.
enum Event {
    Sample(gst::Sample),
    Eos,
    Error(String),
}

/// A decoded and encoded picture.
pub(crate) struct Frame {
    pub bytes: Bytes,
    pub width: u32,
    pub height: u32,
}

/// Why a job failed, and whether the pipeline must be rebuilt before the next one.
pub(crate) struct RunError {
    pub error: MediaError,
    pub rebuild: bool,
}

impl RunError {
    fn rebuild(error: MediaError) -> Self {
        Self {
            error,
            rebuild: true,
        }
    }
}

pub(crate) struct SnapshotPipeline {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    events: Receiver<Event>,
    /// Used since the last reset: needs NULL → PLAYING before the next job.
    dirty: bool,
}

fn make(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| MediaError::Pipeline(format!("element {factory}: {e}")))
}

impl SnapshotPipeline {
    /// Build the pipeline and set it PLAYING (idle until a buffer arrives).
    pub fn new(codec: Codec, config: &SnapshotConfig) -> Result<Self, MediaError> {
        super::init()?;
        let (parse, decode, media_type) = match codec {
            Codec::H264 => ("h264parse", "avdec_h264", "video/x-h264"),
            Codec::H265 => ("h265parse", "avdec_h265", "video/x-h265"),
        };
        let caps = gst::Caps::builder(media_type)
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build();
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            // Live: no preroll, so the sink is PLAYING when the buffer arrives (no wait for
            // an async state change) and avdec uses slice threads, not frame threads.
            .is_live(true)
            .block(false)
            .max_bytes(64 << 20)
            .build();
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .enable_last_sample(false)
            .wait_on_eos(false)
            .build();

        let mut chain: Vec<gst::Element> = vec![
            appsrc.clone().upcast(),
            make(parse)?,
            make(decode)?,
            make("videoconvert")?,
        ];
        if let Some(max_width) = config.max_width {
            let max_width = i32::try_from(max_width).unwrap_or(i32::MAX).max(1);
            chain.push(make("videoscale")?);
            let filter = make("capsfilter")?;
            // Never upscale: any width up to max_width; square pixels so the height follows.
            let scaled = gst::Caps::builder("video/x-raw")
                .field("width", gst::IntRange::new(1, max_width))
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build();
            filter.set_property("caps", &scaled);
            chain.push(filter);
        }
        let jpegenc = make("jpegenc")?;
        jpegenc.set_property("quality", i32::from(config.jpeg_quality.min(100)));
        chain.push(jpegenc);
        chain.push(appsink.clone().upcast());

        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many(&chain)
            .map_err(|e| MediaError::Pipeline(format!("add elements: {e}")))?;
        gst::Element::link_many(&chain)
            .map_err(|e| MediaError::Pipeline(format!("link {parse}/{decode} chain: {e}")))?;

        let (tx, events) = crossbeam_channel::unbounded();
        let (on_sample, on_eos) = (tx.clone(), tx.clone());
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let _ = on_sample.send(Event::Sample(sample));
                    Ok(gst::FlowSuccess::Ok)
                })
                .eos(move |_| {
                    let _ = on_eos.send(Event::Eos);
                })
                .build(),
        );
        let bus = pipeline
            .bus()
            .ok_or_else(|| MediaError::Pipeline("pipeline without bus".into()))?;
        bus.set_sync_handler(bus_handler(tx));

        let this = Self {
            pipeline,
            appsrc,
            events,
            dirty: false,
        };
        this.play()?;
        Ok(this)
    }

    fn play(&self) -> Result<(), MediaError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|e| MediaError::Pipeline(format!("set PLAYING: {e}")))
    }

    /// Decode one keyframe. The caller must [`reset`](Self::reset) before the next job
    /// (on success too), or drop the pipeline when `rebuild` is set.
    pub fn run(&mut self, keyframe: &Bytes, deadline: Instant) -> Result<Frame, RunError> {
        if self.dirty {
            self.reset().map_err(RunError::rebuild)?;
        }
        self.dirty = true;
        let mut buffer = gst::Buffer::from_slice(keyframe.clone());
        if let Some(buffer) = buffer.get_mut() {
            buffer.set_pts(gst::ClockTime::ZERO);
        }
        self.appsrc
            .push_buffer(buffer)
            .map_err(|e| RunError::rebuild(MediaError::Pipeline(format!("push: {e}"))))?;
        self.appsrc
            .end_of_stream()
            .map_err(|e| RunError::rebuild(MediaError::Pipeline(format!("eos: {e}"))))?;
        // The first event decides: a picture, EOS without one, an error, or the deadline.
        match self.events.recv_deadline(deadline) {
            Ok(Event::Sample(sample)) => frame_from_sample(&sample).map_err(RunError::rebuild),
            Ok(Event::Eos) => Err(RunError {
                error: MediaError::Decode("no picture decoded".into()),
                rebuild: false,
            }),
            Ok(Event::Error(message)) => Err(RunError::rebuild(MediaError::Decode(message))),
            Err(RecvTimeoutError::Timeout) => Err(RunError::rebuild(MediaError::Timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(RunError::rebuild(MediaError::Pipeline(
                "pipeline callbacks gone".into(),
            ))),
        }
    }

    /// NULL (stops the streaming threads, clears EOS and decoder state), drop what the last
    /// job left in the channel, then PLAYING again.
    pub fn reset(&mut self) -> Result<(), MediaError> {
        if !self.dirty {
            return Ok(());
        }
        self.pipeline
            .set_state(gst::State::Null)
            .map_err(|e| MediaError::Pipeline(format!("set NULL: {e}")))?;
        while self.events.try_recv().is_ok() {}
        self.play()?;
        self.dirty = false;
        Ok(())
    }
}

impl Drop for SnapshotPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn bus_handler(
    tx: Sender<Event>,
) -> impl Fn(&gst::Bus, &gst::Message) -> gst::BusSyncReply + Send + Sync + 'static {
    move |_, message| {
        if let gst::MessageView::Error(err) = message.view() {
            let source = message
                .src()
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            let _ = tx.send(Event::Error(format!("{source}: {}", err.error())));
        }
        // Nobody pops this bus: drop everything so nothing accumulates.
        gst::BusSyncReply::Drop
    }
}

fn frame_from_sample(sample: &gst::Sample) -> Result<Frame, MediaError> {
    let buffer = sample
        .buffer()
        .ok_or_else(|| MediaError::Pipeline("sample without buffer".into()))?;
    let map = buffer
        .map_readable()
        .map_err(|e| MediaError::Pipeline(format!("map buffer: {e}")))?;
    let structure = sample
        .caps()
        .and_then(|caps| caps.structure(0))
        .ok_or_else(|| MediaError::Pipeline("sample without caps".into()))?;
    let dimension = |field: &str| {
        structure
            .get::<i32>(field)
            .ok()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| MediaError::Pipeline(format!("jpeg caps without {field}")))
    };
    Ok(Frame {
        bytes: Bytes::copy_from_slice(map.as_slice()),
        width: dimension("width")?,
        height: dimension("height")?,
    })
}
