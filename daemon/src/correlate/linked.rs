//! The incidents linked to an alert, as they stand now: `Alert.incident_ids` and
//! `Alert.incidents` (one [`pb::LinkedIncident`] per id, same order).
//!
//! An incident is linked when it becomes an alert's evidence (a report folded in, a
//! supervision alert) or when the desk makes a work order for the alert. Every later step
//! on it (accepted, dispatched, in progress, overdue, resolved) arrives as an
//! [`Action::Incident`](super::Action::Incident) command and overwrites its entry, so the
//! wall and every subscriber see where the alert's work stands without reading incidents.
//!
//! Invariant: `incident_ids[i] == incidents[i].id` for every `i`, each id once.

use gridsight_proto::v1 as pb;

use crate::config::DepartmentConfig;

/// The incident as an alert shows it; `by` took its latest step.
pub fn linked(inc: &pb::Incident, by: &str) -> pb::LinkedIncident {
    pb::LinkedIncident {
        id: inc.id.clone(),
        status: inc.status,
        department: inc.department.clone(),
        deadline: inc.deadline,
        overdue: inc.overdue,
        updated_at: inc.updated_at.or(inc.reported_at),
        updated_by: by.to_string(),
        category: inc.category,
        version: inc.version,
    }
}

/// Links `inc` to `alert` if it is not yet (its reporter took the latest step).
pub fn link(alert: &mut pb::Alert, inc: &pb::Incident) {
    repair(alert);
    if !alert.incident_ids.contains(&inc.id) {
        let by = inc.steps.last().map_or("", |s| s.actor.as_str());
        alert.incident_ids.push(inc.id.clone());
        alert.incidents.push(linked(inc, by));
    }
}

/// Shows the incident's new state on `alert` (linking it if it was not), the step taken by
/// `by`.
pub fn show(alert: &mut pb::Alert, inc: &pb::Incident, by: &str) {
    repair(alert);
    match alert.incidents.iter_mut().find(|l| l.id == inc.id) {
        // An older version arriving late changes nothing.
        Some(l) if l.version > inc.version => {}
        Some(l) => *l = linked(inc, by),
        None => {
            alert.incident_ids.push(inc.id.clone());
            alert.incidents.push(linked(inc, by));
        }
    }
}

/// Restores the invariant on an alert stored before `incidents` existed (ids without
/// entries get an entry with what is known: the id).
fn repair(alert: &mut pb::Alert) {
    if alert.incidents.len() == alert.incident_ids.len() {
        return;
    }
    let old = std::mem::take(&mut alert.incidents);
    alert.incidents = alert
        .incident_ids
        .iter()
        .map(|id| {
            old.iter()
                .find(|l| &l.id == id)
                .cloned()
                .unwrap_or_else(|| pb::LinkedIncident {
                    id: id.clone(),
                    ..Default::default()
                })
        })
        .collect();
}

/// The alert note that records a step on a linked incident, e.g.
/// `INC-000012 DISPATCHED to Roads office: crew of three` (the department by its name in
/// `departments` when it has one there; the step's own note after the colon).
pub fn step_note(inc: &pb::Incident, departments: &[DepartmentConfig]) -> String {
    let status = pb::IncidentStatus::try_from(inc.status)
        .map(crate::incidents::lifecycle::name)
        .unwrap_or("UNKNOWN");
    let mut s = format!("{} {status}", inc.id);
    let last = inc.steps.last();
    if inc.status == pb::IncidentStatus::Dispatched as i32 {
        s.push_str(" to ");
        let name = departments.iter().find(|d| d.id == inc.department);
        s.push_str(name.map_or(&inc.department, |d| &d.name));
    }
    if let Some(note) = last.map(|st| st.note.trim()).filter(|n| !n.is_empty()) {
        s.push_str(": ");
        s.push_str(note);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridsight_proto::ts_from_millis;

    fn incident(id: &str, status: pb::IncidentStatus) -> pb::Incident {
        pb::Incident {
            id: id.into(),
            status: status as i32,
            reported_at: Some(ts_from_millis(1_000)),
            steps: vec![pb::IncidentStep {
                actor: "worker-7".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_linked_incident_is_listed_once_and_its_steps_overwrite_its_entry() {
        let mut a = pb::Alert::default();
        let mut inc = incident("INC-1", pb::IncidentStatus::Reported);
        link(&mut a, &inc);
        link(&mut a, &inc);
        assert_eq!(a.incident_ids, vec!["INC-1"]);
        assert_eq!(a.incidents[0].updated_by, "worker-7");
        inc.status = pb::IncidentStatus::Dispatched as i32;
        inc.department = "roads".into();
        inc.deadline = Some(ts_from_millis(9_000));
        show(&mut a, &inc, "ops-1");
        assert_eq!(a.incidents.len(), 1);
        let l = &a.incidents[0];
        assert_eq!(l.status, pb::IncidentStatus::Dispatched as i32);
        assert_eq!(
            (l.department.as_str(), l.updated_by.as_str()),
            ("roads", "ops-1")
        );
        assert_eq!(l.deadline, Some(ts_from_millis(9_000)));
        show(
            &mut a,
            &incident("INC-2", pb::IncidentStatus::Accepted),
            "ops-2",
        );
        assert_eq!(a.incident_ids, vec!["INC-1", "INC-2"]);
        assert_eq!(a.incidents[1].id, "INC-2");
    }

    #[test]
    fn an_alert_stored_with_ids_only_gets_an_entry_per_id() {
        let mut a = pb::Alert {
            incident_ids: vec!["INC-1".into(), "INC-2".into()],
            ..Default::default()
        };
        show(
            &mut a,
            &incident("INC-2", pb::IncidentStatus::Accepted),
            "ops",
        );
        let ids: Vec<&str> = a.incidents.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, vec!["INC-1", "INC-2"]);
        assert_eq!(a.incidents[1].status, pb::IncidentStatus::Accepted as i32);
    }

    #[test]
    fn a_step_note_names_the_incident_its_status_the_department_and_the_note() {
        let mut inc = incident("INC-12", pb::IncidentStatus::Dispatched);
        inc.department = "roads".into();
        inc.steps.push(pb::IncidentStep {
            note: " crew of three ".into(),
            ..Default::default()
        });
        assert_eq!(
            step_note(&inc, &[]),
            "INC-12 DISPATCHED to roads: crew of three"
        );
        let named = [DepartmentConfig {
            id: "roads".into(),
            name: "Roads office".into(),
        }];
        assert_eq!(
            step_note(&inc, &named),
            "INC-12 DISPATCHED to Roads office: crew of three"
        );
        let acc = incident("INC-3", pb::IncidentStatus::Accepted);
        assert_eq!(step_note(&acc, &named), "INC-3 ACCEPTED");
    }
}
