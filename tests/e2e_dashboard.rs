//! End to end: the wall in real headless Chromium (Debian `chromium`, driven by
//! playwright-core from `dashboard/tests/wall.mjs`), against the real binary, a real
//! Mosquitto, a farm camera and a real gRPC subscriber. Screenshots at 1920×1080 and
//! 3840×2160 are saved under `target/tmp/dashboard/`.

mod common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use common::{
    city::{farm, town},
    *,
};
use gridsight_farm::Fault;
use gridsight_proto::v1 as pb;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

const T: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboard/tests/wall.mjs")
}

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// The browser driver, running.
struct Browser {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new("node")
            .arg(script())
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node (installed by scripts/install-deps.sh)");
        let stdout = child.stdout.take().expect("stdout");
        Browser {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line the driver says, which must be `word`; its JSON, if any.
    async fn expect(&mut self, word: &str) -> Value {
        let line = tokio::time::timeout(T, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser said nothing for {T:?} (waiting for {word})"))
            .expect("read")
            .unwrap_or_else(|| panic!("the browser ended before {word}"));
        let (said, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        assert_eq!(said, word, "the browser: {line}");
        if rest.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(rest).expect("JSON")
        }
    }

    async fn finish(mut self) {
        let status = tokio::time::timeout(T, self.child.wait())
            .await
            .expect("the browser to end")
            .expect("wait");
        assert!(status.success(), "browser driver: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_shows_a_login_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(dir.path(), &DaemonOpts::new(None))).await;
    let url = format!("http://127.0.0.1:{}/?token=not-a-token", d.http);
    let mut b = Browser::start(&["login", &url]);
    let seen = b.expect("LOGIN").await;
    let text = seen["text"].as_str().unwrap();
    assert!(text.contains("登录失败"), "Chinese by default: {text}");
    assert!(text.contains("401"), "{text}");
    assert_eq!(seen["wall_visible"], false);
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_pops_up_is_acknowledged_from_the_page_and_survives_a_restart() {
    let broker = Mosquitto::start();
    let (farm, cams) = farm(&[("cam-a11", "a11"), ("cam-a00", "a00")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(Some(broker.port));
    // The tiled town of `common::city`: its communities have polygons for the map.
    o.grids = town();
    o.extra = format!(
        "{cams}\n[[departments]]\nid = \"fire\"\nname = \"消防救援\"\n\n[[departments]]\nid = \"roads\"\nname = \"市政道路\"\n"
    );
    let cfg = write_config(dir.path(), &o);
    let mut d = Daemon::start(&cfg).await;
    wait_status(&d, "cam-a11", pb::CameraStatus::Online).await;
    wait_status(&d, "cam-a00", pb::CameraStatus::Online).await;
    // A keyframe to take the alert's picture from.
    wait_for("a snapshot of cam-a11", T, || async {
        (http_get_bytes(d.http, "/snapshot/cam-a11.jpg", Some(VIEWER)).0 == 200).then_some(())
    })
    .await;
    let mut s = d.subscribe_all().await;
    read_snapshot(&mut s, T).await;

    let url = format!("http://127.0.0.1:{}/?token={OPERATOR}", d.http);
    let out = shots();
    let viewer_url = format!("http://127.0.0.1:{}/?token={VIEWER}", d.http);
    let mut b = Browser::start(&["wall", &url, out.to_str().unwrap(), &viewer_url]);
    b.expect("READY").await;

    // An alarm on the broker: on the page within a second, with the camera's picture.
    let published = now_ms();
    publish_all(
        broker.port,
        vec![(
            topic("a11", "smoke", "smk-1"),
            payload(published, "alarm", 0.8),
        )],
    )
    .await;
    // The alert's picture URL works as soon as a subscriber sees the alert open, while the
    // picture may still be in the making (the request waits for it).
    let opened = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Opened as i32).await;
    let url = opened.last().unwrap().alert.as_ref().unwrap().snapshots[0]
        .url
        .clone();
    let (code, jpeg) = http_get_bytes(d.http, &url, Some(VIEWER));
    assert_eq!(code, 200, "{url} at once");
    assert!(
        gridsight::media::jpeg::parse_header(&jpeg).is_some(),
        "a JPEG"
    );
    let mosaic = b.expect("MOSAIC").await;
    assert_eq!(mosaic["tiles"], 2, "{mosaic}");
    // A camera dies: its tile must say so, not keep its last picture.
    farm.set_fault("cam-a00", Fault::Refuse).expect("fault");
    let acked = b.expect("ACKED").await;
    assert!(
        acked["mosaic"]["offline_text"]
            .as_str()
            .unwrap()
            .contains("离线"),
        "{acked}"
    );
    let shown_after = acked["popup_at_ms"].as_i64().unwrap() - published;
    eprintln!("FIGURE pop-up shown {shown_after} ms after publishing");
    assert!(
        shown_after < 1000,
        "pop-up {shown_after} ms after publishing"
    );
    assert!(acked["natural_width"].as_u64().unwrap() > 0, "{acked}");
    let popup = acked["popup_text"].as_str().unwrap();
    assert!(popup.contains("a11") && popup.contains("smk-1"), "{popup}");
    // Its map position: a line on the pop-up, a ring on the map inside its grid.
    assert!(popup.contains("位置") && popup.contains("° N"), "{popup}");
    assert_eq!(acked["ring"]["in_a11"], true, "{acked}");
    for screen in acked["screens"].as_array().unwrap() {
        assert!(screen["overflow"].as_i64().unwrap() <= 0, "{screen}");
        let file = out.join(format!("{}.png", screen["name"].as_str().unwrap()));
        assert!(std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) > 10_000);
    }
    assert_eq!(acked["console_errors"], serde_json::json!([]), "{acked}");
    assert!(
        acked["row_text"].as_str().unwrap().contains("desk-1"),
        "{acked}"
    );

    // The figures of the day: the reading counted in its hour, the alert in today's
    // opened, both cameras online (before one is taken down).
    let figures = &acked["figures"];
    assert!(
        figures["readings_today"].as_u64().unwrap() >= 1,
        "{figures}"
    );
    assert!(figures["opened_today"].as_u64().unwrap() >= 1, "{figures}");
    assert_eq!(figures["cameras_online"], "100%", "{figures}");

    // The map: the alert's community in MAJOR's colour; a click on a quiet community shows
    // nothing, on the alert's community its alert, and "show all" everything again.
    let map = &acked["map"];
    assert_eq!(map["colour"], "#ff9c2e", "{map}");
    assert_eq!(map["empty_grid"]["shown"], 0, "{map}");
    assert_eq!(map["alert_grid"]["shown"], 1, "{map}");
    assert_eq!(map["cleared"], 1, "{map}");

    // Another page (a viewer's: no buttons) saw the acknowledgement at once, and switches
    // to English.
    let viewer = &acked["viewer"];
    assert_eq!(viewer["buttons"], 0, "{viewer}");
    assert!(
        viewer["row"].as_str().unwrap().contains("desk-1"),
        "{viewer}"
    );
    assert_eq!(
        viewer["english_title"], "City command centre · alerts",
        "{viewer}"
    );

    // The click reached every subscriber, attributed to the page's operator.
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Acknowledged as i32).await;
    let a = seen.last().unwrap().alert.clone().unwrap();
    assert_eq!(a.acknowledged_by, "desk-1");
    assert_eq!(acked["ring"]["alert"], a.id.as_str(), "{acked}");
    assert_eq!(sensors_of(&a), vec!["smk-1"]);
    // So did the note and the resolution, attributed, on the same alert.
    assert!(
        acked["note_shown"].as_str().unwrap().contains("desk-1"),
        "{acked}"
    );
    let seen = read_until(&mut s, T, |c| {
        c.kind == pb::ChangeKind::Updated as i32
            && c.alert.as_ref().is_some_and(|x| !x.notes.is_empty())
    })
    .await;
    let noted = seen.last().unwrap().alert.clone().unwrap();
    assert_eq!(noted.id, a.id);
    assert_eq!(
        (noted.notes[0].by.as_str(), noted.notes[0].text.as_str()),
        ("desk-1", "crew on site")
    );
    // The dispatch from the panel: the page shows the work dispatched to the department,
    // with its deadline, in the panel and as a badge in the feed...
    let dispatch = &acked["dispatch"];
    let work = dispatch["work"].as_str().unwrap();
    assert!(
        work.contains("已派遣") && work.contains("消防救援") && work.contains("desk-1"),
        "{dispatch}"
    );
    assert!(
        dispatch["badge"].as_str().unwrap().contains("消防救援"),
        "{dispatch}"
    );
    assert_eq!(
        dispatch["departments"],
        serde_json::json!(["消防救援", "市政道路"])
    );
    assert_eq!(dispatch["note_cleared"], true, "{dispatch}");
    assert!(
        dispatch["screen"]["overflow"].as_i64().unwrap() <= 0,
        "{dispatch}"
    );
    // ...and every subscriber sees it on the alert: a work order, dispatched to `fire` by
    // the page's operator, due in 30 minutes, with the crew's note.
    let seen = read_until(&mut s, T, |c| {
        c.alert.as_ref().is_some_and(|x| {
            x.incidents
                .iter()
                .any(|l| l.status == pb::IncidentStatus::Dispatched as i32)
        })
    })
    .await;
    let sent = seen.last().unwrap().alert.clone().unwrap();
    assert_eq!(sent.id, a.id);
    let l = &sent.incidents[0];
    assert_eq!(
        (l.department.as_str(), l.updated_by.as_str()),
        ("fire", "desk-1")
    );
    assert_eq!(l.category, pb::IncidentCategory::CentralTask as i32);
    let due = l
        .deadline
        .as_ref()
        .map(gridsight_proto::millis_from_ts)
        .unwrap();
    let clicked = dispatch["clicked_ms"].as_i64().unwrap();
    let shown = dispatch["shown_ms"].as_i64().unwrap();
    eprintln!(
        "FIGURE dispatch clicked → work shown on the panel in {} ms",
        shown - clicked
    );
    assert!(
        (clicked + 30 * 60_000..=shown + 30 * 60_000).contains(&due),
        "deadline {due}, clicked at {clicked}, shown at {shown}"
    );
    assert!(
        sent.notes.iter().any(|n| n
            .text
            .ends_with("DISPATCHED to 消防救援: send the fire crew")
            && n.by == "desk-1"),
        "{:?}",
        sent.notes
    );
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Resolved as i32).await;
    let resolved = seen.last().unwrap().alert.clone().unwrap();
    assert_eq!(
        (resolved.id.as_str(), resolved.resolved_by.as_str()),
        (a.id.as_str(), "desk-1")
    );

    // Killed and back: the page shows the lost connection, then recovers without a reload
    // and shows the alarm that came while the daemon was down.
    d.kill9();
    publish_all(
        broker.port,
        vec![(
            topic("b00", "smoke", "smk-2"),
            payload(now_ms(), "alarm", 0.9),
        )],
    )
    .await;
    d = Daemon::start(&cfg).await;
    let done = b.expect("DONE").await;
    assert!(
        done["lost_text"].as_str().unwrap().contains("连接已断开"),
        "{done}"
    );
    assert_eq!(done["lost_hidden_after"], true);
    assert_eq!(done["same_load"], true, "recovered without a reload");
    let grids: Vec<&str> = done["grids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The camera's offline alert from before the restart, and the alarm from while it was
    // down; the resolved alarm is gone.
    assert!(grids.contains(&"a00") && grids.contains(&"b00"), "{done}");
    assert!(!grids.contains(&"a11"), "{done}");
    b.finish().await;
    drop(d);
}
