use super::*;

const ORDER: [S; 10] = [
    S::Unspecified,
    S::Reported,
    S::Accepted,
    S::Dispatched,
    S::InProgress,
    S::Resolved,
    S::Closed,
    S::Cancelled,
    S::Unfounded,
    S::Duplicate,
];

/// The lifecycle as the issue states it: one row per `from`, one column per `to` (in
/// `ORDER`), `Y` where the step is allowed.
const TABLE: [(S, &str); 10] = [
    //                 to: UNS REP ACC DIS INP RES CLO CAN UNF DUP
    (S::Unspecified, "     .   .   .   .   .   .   .   .   .   ."),
    (S::Reported, "        .   .   Y   .   .   .   .   Y   Y   Y"),
    (S::Accepted, "        .   .   .   Y   .   .   .   Y   Y   Y"),
    (S::Dispatched, "      .   .   .   Y   Y   .   .   Y   .   ."),
    (S::InProgress, "      .   .   .   Y   .   Y   .   .   .   ."),
    (S::Resolved, "        .   .   .   .   Y   .   Y   .   .   ."),
    (S::Closed, "          .   .   .   .   .   .   .   .   .   ."),
    (S::Cancelled, "       .   .   .   .   .   .   .   .   .   ."),
    (S::Unfounded, "       .   .   .   .   .   .   .   .   .   ."),
    (S::Duplicate, "       .   .   .   .   .   .   .   .   .   ."),
];

#[test]
fn every_step_is_allowed_exactly_as_the_table_says() {
    for (from, row) in TABLE {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.len(), ORDER.len(), "row {}", name(from));
        for (to, cell) in ORDER.iter().zip(cells) {
            assert_eq!(
                allowed(from, *to),
                cell == "Y",
                "{} -> {}",
                name(from),
                name(*to)
            );
        }
        let finals = [S::Closed, S::Cancelled, S::Unfounded, S::Duplicate];
        assert_eq!(is_final(from), finals.contains(&from));
        if is_final(from) {
            assert!(ORDER.iter().all(|to| !allowed(from, *to)));
        }
    }
}

fn incident() -> pb::Incident {
    pb::Incident {
        id: "INC-000001".into(),
        status: S::Reported as i32,
        version: 1,
        reported_at: Some(ts_from_millis(1_000)),
        steps: vec![reported_step(Some(ts_from_millis(1_000)), "app")],
        ..Default::default()
    }
}

fn step(to: S, version: u64) -> StepRequest {
    StepRequest {
        to,
        expected_version: version,
        note: String::new(),
        department: String::new(),
        deadline_ms: None,
        duplicate_of: String::new(),
    }
}

#[test]
fn a_step_is_recorded_attributed_and_versioned() {
    let mut inc = incident();
    apply(&mut inc, &step(S::Accepted, 1), "desk-1", 2_000).unwrap();
    let mut dispatch = step(S::Dispatched, 2);
    dispatch.department = "fire".into();
    dispatch.deadline_ms = Some(9_000);
    dispatch.note = "send a truck".into();
    apply(&mut inc, &dispatch, "desk-2", 3_000).unwrap();
    assert_eq!(inc.status, S::Dispatched as i32);
    assert_eq!(inc.version, 3);
    assert_eq!(inc.updated_at, Some(ts_from_millis(3_000)));
    assert_eq!(inc.department, "fire");
    assert_eq!(inc.deadline, Some(ts_from_millis(9_000)));
    assert_eq!(inc.steps.len(), 3);
    let last = &inc.steps[2];
    assert_eq!(
        (last.from, last.to, last.actor.as_str(), last.note.as_str()),
        (
            S::Accepted as i32,
            S::Dispatched as i32,
            "desk-2",
            "send a truck"
        )
    );
    assert_eq!(last.at, Some(ts_from_millis(3_000)));
    assert_eq!(last.deadline, Some(ts_from_millis(9_000)));

    // Overdue: only once, only past the deadline; in progress keeps it, resolving clears it.
    assert!(!mark_overdue(&mut inc, 9_000));
    assert!(mark_overdue(&mut inc, 9_001));
    assert!(!mark_overdue(&mut inc, 9_500));
    assert_eq!((inc.overdue, inc.version), (true, 4));
    apply(&mut inc, &step(S::InProgress, 4), "desk-1", 10_000).unwrap();
    assert!(inc.overdue);
    apply(&mut inc, &step(S::Resolved, 5), "desk-1", 11_000).unwrap();
    assert!(!inc.overdue);
    assert!(
        !mark_overdue(&mut inc, 12_000),
        "resolved is not supervised"
    );
}

#[test]
fn stale_versions_and_illegal_steps_change_nothing() {
    let mut inc = incident();
    let before = inc.clone();
    assert_eq!(
        apply(&mut inc, &step(S::Accepted, 7), "d", 2_000),
        Err(LifecycleError::Stale {
            id: "INC-000001".into(),
            current: 1,
            expected: 7
        })
    );
    let e = apply(&mut inc, &step(S::Closed, 1), "d", 2_000).unwrap_err();
    assert_eq!(
        e.to_string(),
        "incident INC-000001 cannot go from REPORTED to CLOSED"
    );
    assert_eq!(inc, before);
}

#[test]
fn requests_are_checked_field_by_field() {
    let deps = [DepartmentConfig {
        id: "fire".into(),
        name: "Fire brigade".into(),
    }];
    let base = pb::TransitionIncidentRequest {
        id: "INC-000001".into(),
        to: S::Dispatched as i32,
        expected_version: 2,
        department: "fire".into(),
        deadline: Some(ts_from_millis(5_000)),
        ..Default::default()
    };
    let field_of =
        |r: &pb::TransitionIncidentRequest, deps: &[DepartmentConfig]| match StepRequest::from_pb(
            r, deps, 4_000,
        ) {
            Err(LifecycleError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
    let with = |f: &dyn Fn(&mut pb::TransitionIncidentRequest)| {
        let mut r = base.clone();
        f(&mut r);
        r
    };
    assert_eq!(field_of(&with(&|r| r.to = 0), &deps), "to");
    assert_eq!(field_of(&with(&|r| r.to = 42), &deps), "to");
    assert_eq!(field_of(&with(&|r| r.to = S::Reported as i32), &deps), "to");
    assert_eq!(
        field_of(&with(&|r| r.department.clear()), &deps),
        "department"
    );
    assert_eq!(
        field_of(&with(&|r| r.department = "police".into()), &deps),
        "department"
    );
    assert_eq!(
        field_of(&with(&|r| r.department = "no spaces".into()), &[]),
        "department"
    );
    assert_eq!(field_of(&with(&|r| r.deadline = None), &deps), "deadline");
    assert_eq!(
        field_of(&with(&|r| r.deadline = Some(ts_from_millis(4_000))), &deps),
        "deadline"
    );
    assert_eq!(
        field_of(&with(&|r| r.note = "x".repeat(4001)), &deps),
        "note"
    );
    let dup = |of: &str| {
        with(&|r| {
            r.to = S::Duplicate as i32;
            r.duplicate_of = of.into();
        })
    };
    assert_eq!(field_of(&dup(""), &deps), "duplicate_of");
    assert_eq!(field_of(&dup("INC-000001"), &deps), "duplicate_of");
    let ok = StepRequest::from_pb(&dup("INC-000002"), &deps, 4_000).unwrap();
    assert_eq!(ok.duplicate_of, "INC-000002");
    assert!(
        ok.department.is_empty(),
        "fields a step does not use are dropped"
    );
    let ok = StepRequest::from_pb(&base, &deps, 4_000).unwrap();
    assert_eq!(
        (ok.department.as_str(), ok.deadline_ms),
        ("fire", Some(5_000))
    );
    // Without a department list, any valid id goes.
    assert!(StepRequest::from_pb(&with(&|r| r.department = "police".into()), &[], 4_000).is_ok());
}

#[test]
fn the_way_to_dispatch_follows_allowed_steps_and_ends_in_dispatched() {
    for from in [
        S::Reported,
        S::Accepted,
        S::Dispatched,
        S::InProgress,
        S::Resolved,
    ] {
        let mut at = from;
        let mut steps = 0;
        loop {
            let next = toward_dispatch(at).expect("a way to dispatch");
            assert!(allowed(at, next), "{at:?} -> {next:?}");
            steps += 1;
            at = next;
            if at == S::Dispatched {
                break;
            }
        }
        assert!(steps <= 2, "{from:?} took {steps} steps");
    }
    for from in [S::Closed, S::Cancelled, S::Unfounded, S::Duplicate] {
        assert_eq!(toward_dispatch(from), None);
    }
}
