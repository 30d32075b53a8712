//! An alert change as the correlation engine hands it on: the shape of the wire's
//! `pb::AlertChange`, with the alert shared (`Arc`) rather than copied.
//!
//! The engine keeps each open alert behind an `Arc` and copies it only on write
//! (`Arc::make_mut`), so a change going out costs a reference count, not a copy of the
//! alert and its evidence, on the shard's core. The store writer makes the one wire copy,
//! when it gives the change its `seq` ([`AlertChange::to_wire`]).
//!
//! Invariant: `seq` is 0 until the store writer numbers the change; the alert is the
//! engine's state at the change (its `seq` field is not set here).

use std::sync::Arc;

use gridsight_proto::v1 as pb;

/// A change of an alert, before (or after) the store numbers it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertChange {
    /// Its place in the alert stream (0 until stored).
    pub seq: u64,
    /// `pb::ChangeKind` (wire value).
    pub kind: i32,
    /// The alert after the change.
    pub alert: Option<Arc<pb::Alert>>,
}

impl AlertChange {
    /// The wire change numbered `seq` (the alert's own `seq` too): the one copy made.
    pub fn to_wire(&self, seq: u64) -> pb::AlertChange {
        pb::AlertChange {
            seq,
            kind: self.kind,
            alert: self
                .alert
                .as_deref()
                .map(|a| pb::Alert { seq, ..a.clone() }),
        }
    }
}

impl From<pb::AlertChange> for AlertChange {
    fn from(c: pb::AlertChange) -> Self {
        Self {
            seq: c.seq,
            kind: c.kind,
            alert: c.alert.map(Arc::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_copy_carries_the_seq_on_the_change_and_the_alert() {
        let c = AlertChange {
            seq: 0,
            kind: pb::ChangeKind::Opened as i32,
            alert: Some(Arc::new(pb::Alert {
                id: "a-1".into(),
                ..Default::default()
            })),
        };
        let w = c.to_wire(7);
        assert_eq!((w.seq, w.kind), (7, pb::ChangeKind::Opened as i32));
        let a = w.alert.expect("alert");
        assert_eq!((a.id.as_str(), a.seq), ("a-1", 7));
        assert_eq!(
            c.alert.as_ref().map(|a| a.seq),
            Some(0),
            "the shared alert is untouched"
        );
        let wire = pb::AlertChange {
            alert: Some(a),
            ..w
        };
        assert_eq!(AlertChange::from(wire.clone()).to_wire(7), wire);
    }
}
