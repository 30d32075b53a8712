//! GStreamer's own RTSP client (`rtspsrc protocols=tcp`) decoding the farm's streams with
//! `avdec_h264`: the streams are not only parseable but decodable, frozen frames included.

use gridsight_farm::{Content, Farm, FarmConfig, Fault, MountConfig};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Decodes `frames` frames from `url`; returns the (width, height) of each.
fn decode(url: &str, frames: usize) -> Result<Vec<(i32, i32)>, String> {
    gst::init().map_err(|e| e.to_string())?;
    let desc = format!(
        "rtspsrc location={url} protocols=tcp latency=0 ! rtph264depay ! h264parse ! \
         avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no sink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while out.len() < frames {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(3)) else {
            break;
        };
        let s = sample
            .caps()
            .and_then(|c| c.structure(0).map(|s| s.to_owned()));
        let w = s
            .as_ref()
            .and_then(|s| s.get::<i32>("width").ok())
            .unwrap_or(0);
        let h = s
            .as_ref()
            .and_then(|s| s.get::<i32>("height").ok())
            .unwrap_or(0);
        out.push((w, h));
    }
    let _ = pipeline.set_state(gst::State::Null);
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_decodes_busy_still_and_frozen_streams() {
    let farm = Farm::start(FarmConfig::new(vec![
        MountConfig::new("busy", 15).with_content(Content::Busy),
        MountConfig::new("still", 15),
        MountConfig::new("frozen", 15)
            .with_content(Content::Busy)
            .with_fault(Fault::Freeze),
    ]))
    .await
    .unwrap();
    for mount in ["busy", "still", "frozen"] {
        let url = farm.url(mount);
        let decoded = tokio::task::spawn_blocking(move || decode(&url, 20))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            decoded.len(),
            20,
            "{mount}: decoded {} frames",
            decoded.len()
        );
        assert!(
            decoded.iter().all(|&d| d == (640, 360)),
            "{mount}: {decoded:?}"
        );
    }
    assert!(farm.stats("frozen").unwrap().frames_sent >= 20);
    farm.shutdown().await;
}
