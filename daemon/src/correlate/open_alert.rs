//! An open alert as one engine keeps it: the wire alert, shared (`Arc`) with the changes
//! that carry it and copied only when it changes while one of them still holds it
//! (`Arc::make_mut` in `DerefMut`), and a fingerprint of the source (sensor, camera or
//! incident id) of each of its evidence items.
//!
//! Folding an event into an alert asks how many of its items come from the event's source
//! (the first and the latest of each source are kept, at most [`MAX_EVIDENCE`] in all).
//! Comparing fingerprints reads one vector; comparing ids read every matching item's id
//! from the heap, a cache miss or two each, and that was most of a fold.
//!
//! A fingerprint is 128 bits (two differently seeded 64-bit hashes of the id), so it stands
//! for the id: two ids share one only if both hashes collide, and even then only which of
//! their items is kept as the latest would change, never the count or the alert.
//!
//! Invariant: `sources[i]` is the fingerprint of `alert.evidence[i]` whenever the two have
//! the same length. Evidence changes through [`OpenAlert::add_evidence`] and
//! [`OpenAlert::set_evidence`]; if anything else changed its length, the next fold makes
//! the fingerprints again.
//!
//! [`MAX_EVIDENCE`]: super::engine::MAX_EVIDENCE

use std::{
    borrow::Cow,
    hash::BuildHasher,
    ops::{Deref, DerefMut},
    sync::Arc,
};

use gridsight_proto::v1 as pb;

use super::engine::MAX_EVIDENCE;

/// An open alert with the fingerprints of its evidence sources.
#[derive(Debug, Clone, Default)]
pub struct OpenAlert {
    alert: Arc<pb::Alert>,
    sources: Vec<u128>,
}

impl From<pb::Alert> for OpenAlert {
    fn from(alert: pb::Alert) -> Self {
        let sources = alert.evidence.iter().map(fingerprint).collect();
        Self {
            alert: Arc::new(alert),
            sources,
        }
    }
}

impl Deref for OpenAlert {
    type Target = pb::Alert;

    fn deref(&self) -> &pb::Alert {
        &self.alert
    }
}

impl DerefMut for OpenAlert {
    fn deref_mut(&mut self) -> &mut pb::Alert {
        Arc::make_mut(&mut self.alert)
    }
}

impl OpenAlert {
    /// The alert as it goes out (shared: a change costs no copy).
    pub fn to_pb(&self) -> Arc<pb::Alert> {
        self.alert.clone()
    }

    /// Keeps the first and the latest item of each source, at most [`MAX_EVIDENCE`] in all.
    /// A borrowed item is copied only if it is kept; one that replaces the latest of its
    /// source is written over it in place, reusing that item's strings.
    pub fn add_evidence(&mut self, ev: Cow<'_, pb::Evidence>) {
        if self.sources.len() != self.alert.evidence.len() {
            self.sources = self.alert.evidence.iter().map(fingerprint).collect();
        }
        let alert = Arc::make_mut(&mut self.alert);
        let print = fingerprint(&ev);
        let (mut same, mut last) = (0usize, 0usize);
        for (i, p) in self.sources.iter().enumerate() {
            if *p == print {
                same += 1;
                last = i;
            }
        }
        if same >= 2 {
            assign(&mut alert.evidence[last], &ev);
        } else if alert.evidence.len() < MAX_EVIDENCE {
            alert.evidence.push(ev.into_owned());
            self.sources.push(print);
        }
    }

    /// Replaces the evidence (a group parent shows its members' evidence).
    pub fn set_evidence(&mut self, evidence: Vec<pb::Evidence>) {
        self.sources = evidence.iter().map(fingerprint).collect();
        Arc::make_mut(&mut self.alert).evidence = evidence;
    }
}

/// Makes `dst` equal to `src`. A sensor or camera event written over one of the same kind
/// keeps the strings' buffers (`clone_from`): the latest item of a source replaces the one
/// before it, whose ids have the same length, so that costs no allocation. The fields are
/// listed whole, so a field added to the message fails to build here until it is copied.
fn assign(dst: &mut pb::Evidence, src: &pb::Evidence) {
    use pb::evidence::Item;
    dst.time = src.time;
    match (&mut dst.item, &src.item) {
        (Some(Item::SensorEvent(d)), Some(Item::SensorEvent(s))) => {
            let pb::SensorEvent {
                id,
                sensor_id,
                kind,
                grid_id,
                state,
                reading,
                device_time,
                receive_time,
                location,
            } = s;
            d.id = *id;
            d.sensor_id.clone_from(sensor_id);
            d.kind.clone_from(kind);
            d.grid_id.clone_from(grid_id);
            d.state = *state;
            d.reading = *reading;
            d.device_time = *device_time;
            d.receive_time = *receive_time;
            d.location = *location;
        }
        (Some(Item::CameraEvent(d)), Some(Item::CameraEvent(s))) => {
            let pb::CameraEvent {
                camera_id,
                kind,
                time,
                grid_ids,
                activity,
                detail,
            } = s;
            d.camera_id.clone_from(camera_id);
            d.kind = *kind;
            d.time = *time;
            d.grid_ids.clone_from(grid_ids);
            d.activity = *activity;
            d.detail.clone_from(detail);
        }
        _ => dst.item.clone_from(&src.item),
    }
}

/// The id of the sensor, incident or camera an evidence item comes from.
pub fn source_id(e: &pb::Evidence) -> Option<&str> {
    match &e.item {
        Some(pb::evidence::Item::SensorEvent(s)) => Some(&s.sensor_id),
        Some(pb::evidence::Item::Incident(i)) => Some(&i.id),
        Some(pb::evidence::Item::CameraEvent(c)) => Some(&c.camera_id),
        None => None,
    }
}

/// A fingerprint of the item's source id: equal ids, equal fingerprints; different ids,
/// different ones unless both hashes collide.
fn fingerprint(e: &pb::Evidence) -> u128 {
    source_id(e).map_or(0, id_print)
}

/// A 128-bit fingerprint of an id (two differently seeded 64-bit hashes): it stands for
/// the id in a set (two ids share one only if both hashes collide).
pub fn id_print(id: &str) -> u128 {
    let a = foldhash::quality::FixedState::with_seed(0x67726964).hash_one(id);
    let b = foldhash::quality::FixedState::with_seed(0x65766964656e6365).hash_one(id);
    (u128::from(a) << 64) | u128::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor(id: &str, at: i64) -> pb::Evidence {
        pb::Evidence {
            time: Some(gridsight_proto::ts_from_millis(at)),
            item: Some(pb::evidence::Item::SensorEvent(pb::SensorEvent {
                sensor_id: id.into(),
                ..Default::default()
            })),
        }
    }

    fn times(a: &OpenAlert) -> Vec<(String, i64)> {
        a.evidence
            .iter()
            .map(|e| {
                let id = source_id(e).unwrap_or_default().to_string();
                (
                    id,
                    e.time.as_ref().map_or(0, gridsight_proto::millis_from_ts),
                )
            })
            .collect()
    }

    #[test]
    fn an_item_written_over_another_equals_its_source() {
        let camera = |id: &str, at: i64, detail: &str| pb::Evidence {
            time: Some(gridsight_proto::ts_from_millis(at)),
            item: Some(pb::evidence::Item::CameraEvent(pb::CameraEvent {
                camera_id: id.into(),
                kind: pb::CameraEventKind::Activity as i32,
                time: Some(gridsight_proto::ts_from_millis(at)),
                grid_ids: vec!["a-1".into(), "a-2".into()],
                activity: at as f64,
                detail: detail.into(),
            })),
        };
        let full = pb::Evidence {
            time: Some(gridsight_proto::ts_from_millis(7)),
            item: Some(pb::evidence::Item::SensorEvent(pb::SensorEvent {
                id: 42,
                sensor_id: "smk-9".into(),
                kind: "smoke".into(),
                grid_id: "b-2".into(),
                state: pb::SensorState::Alarm as i32,
                reading: 0.9,
                device_time: Some(gridsight_proto::ts_from_millis(6)),
                receive_time: Some(gridsight_proto::ts_from_millis(7)),
                location: Some(pb::LatLon {
                    lat: 30.1,
                    lon: 120.2,
                }),
            })),
        };
        let incident = pb::Evidence {
            time: None,
            item: Some(pb::evidence::Item::Incident(Box::default())),
        };
        for (before, after) in [
            (sensor("smk-1", 1), full.clone()),
            (camera("cam-1", 1, "busy"), camera("cam-22", 9, "very busy")),
            (sensor("smk-1", 1), camera("cam-1", 2, "")),
            (incident.clone(), full.clone()),
            (full.clone(), incident.clone()),
            (full.clone(), pb::Evidence::default()),
        ] {
            let mut dst = before.clone();
            assign(&mut dst, &after);
            assert_eq!(dst, after, "written over {before:?}");
        }
    }

    #[test]
    fn an_evidence_item_stays_small() {
        // The incident variant is boxed (proto/build.rs): an alert's 32 items are copied
        // with every change that goes out and scanned with every fold.
        let size = std::mem::size_of::<pb::Evidence>();
        println!(
            "pb::Evidence: {size} bytes, pb::Incident: {} bytes",
            std::mem::size_of::<pb::Incident>()
        );
        assert!(size <= 256, "pb::Evidence is {size} bytes");
    }

    #[test]
    fn the_first_and_latest_of_each_source_are_kept() {
        let mut a = OpenAlert::from(pb::Alert {
            evidence: vec![sensor("s-1", 0)],
            ..Default::default()
        });
        for (id, at) in [("s-2", 1), ("s-1", 2), ("s-1", 3), ("s-2", 4), ("s-1", 5)] {
            a.add_evidence(Cow::Owned(sensor(id, at)));
        }
        assert_eq!(
            times(&a),
            [("s-1", 0), ("s-2", 1), ("s-1", 5), ("s-2", 4)].map(|(s, t)| (s.to_string(), t))
        );
    }

    #[test]
    fn evidence_changed_behind_its_back_is_fingerprinted_again() {
        let mut a = OpenAlert::from(pb::Alert::default());
        // Written through `DerefMut`, without fingerprints.
        a.evidence = vec![sensor("s-1", 0), sensor("s-1", 1)];
        a.add_evidence(Cow::Owned(sensor("s-1", 2)));
        assert_eq!(
            times(&a),
            [("s-1", 0), ("s-1", 2)].map(|(s, t)| (s.to_string(), t))
        );
        a.set_evidence(vec![sensor("s-9", 7)]);
        a.add_evidence(Cow::Owned(sensor("s-9", 8)));
        a.add_evidence(Cow::Owned(sensor("s-9", 9)));
        assert_eq!(
            times(&a),
            [("s-9", 7), ("s-9", 9)].map(|(s, t)| (s.to_string(), t))
        );
    }

    #[test]
    fn at_most_max_evidence_items_are_kept() {
        let mut a = OpenAlert::from(pb::Alert::default());
        a.add_evidence(Cow::Owned(sensor("s-0", 0)));
        a.add_evidence(Cow::Owned(sensor("s-0", 1)));
        for i in 1..(MAX_EVIDENCE as i64 + 10) {
            a.add_evidence(Cow::Owned(sensor(&format!("s-{i}"), 10 + i)));
        }
        assert_eq!(a.evidence.len(), MAX_EVIDENCE);
        // Full: a known source still replaces its latest item; a new one is not kept.
        a.add_evidence(Cow::Owned(sensor("s-0", 99)));
        a.add_evidence(Cow::Owned(sensor("s-new", 100)));
        let kept = times(&a);
        assert_eq!(kept.len(), MAX_EVIDENCE);
        assert_eq!(kept[..2], [("s-0".to_string(), 0), ("s-0".to_string(), 99)]);
        assert!(kept.iter().all(|(s, _)| s != "s-new"));
    }
}
