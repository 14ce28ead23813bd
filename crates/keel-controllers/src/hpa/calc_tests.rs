//! The cases of Kubernetes' `replica_calculator_test.go`, restated as rows:
//! pods (phase, readiness, start), readings, target → replicas and
//! utilization. Times are seconds before `NOW`.

use super::*;

const NOW: f64 = 1_000_000.0;

/// A pod: `state` is `R` (Running and Ready for long), `U` (Running, not
/// Ready since start), `P` (Pending), `F` (Failed), `D` (being deleted),
/// `H` (hot: started a minute ago, Ready only 10 s ago).
fn pod(i: usize, state: char, request: Option<i64>) -> Pod {
    let long = NOW - 3600.0;
    let (phase, ready, start, deleting) = match state {
        'R' => ("Running", Some((true, long + 20.0)), Some(long), false),
        'U' => ("Running", Some((false, long + 5.0)), Some(long), false),
        'P' => ("Pending", None, None, false),
        'F' => ("Failed", Some((false, long)), Some(long), false),
        'D' => ("Running", Some((true, long)), Some(long), true),
        'H' => ("Running", Some((true, NOW - 10.0)), Some(NOW - 60.0), false),
        // Warm: started a minute ago, Ready for 50 s.
        'W' => ("Running", Some((true, NOW - 50.0)), Some(NOW - 60.0), false),
        _ => unreachable!("state {state}"),
    };
    Pod {
        name: format!("p{i}"),
        phase: phase.into(),
        deleting,
        ready,
        start_time: start,
        requests: vec![("app".into(), request)],
    }
}

fn pods(states: &str, request: i64) -> Vec<Pod> {
    states
        .chars()
        .enumerate()
        .map(|(i, s)| pod(i, s, Some(request)))
        .collect()
}

/// Readings in pod order; `None` leaves the pod without one.
fn readings(values: &[Option<i64>]) -> Readings {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            Some((
                format!("p{i}"),
                Reading {
                    value: (*v)?,
                    timestamp: NOW - 5.0,
                    window: 30.0,
                },
            ))
        })
        .collect()
}

struct Case {
    name: &'static str,
    resource: &'static str,
    current: i32,
    target: i32,
    pods: &'static str,
    usage: &'static [Option<i64>],
    want: Result<(i32, i32), &'static str>,
}

#[test]
fn utilization_cases() {
    let cases = [
        Case {
            name: "scale up",
            resource: "cpu",
            current: 3,
            target: 30,
            pods: "RRR",
            usage: &[Some(300), Some(500), Some(700)],
            want: Ok((5, 50)),
        },
        Case {
            name: "scale up with an unready pod counted at 0%: less scale",
            resource: "cpu",
            current: 3,
            target: 30,
            pods: "URR",
            usage: &[Some(300), Some(500), Some(700)],
            want: Ok((4, 60)),
        },
        Case {
            name: "hot CPU: Ready for less than the reading's window",
            resource: "cpu",
            current: 3,
            target: 30,
            pods: "HWW",
            usage: &[Some(300), Some(500), Some(700)],
            want: Ok((4, 60)),
        },
        Case {
            name: "unready pods would reverse the scale-up: no change",
            resource: "cpu",
            current: 3,
            target: 30,
            pods: "RUU",
            usage: &[Some(400), Some(500), Some(700)],
            want: Ok((3, 40)),
        },
        Case {
            name: "failed pods are ignored",
            resource: "cpu",
            current: 2,
            target: 30,
            pods: "RRFF",
            usage: &[Some(500), Some(700), Some(4000), Some(4000)],
            want: Ok((4, 60)),
        },
        Case {
            name: "pods being deleted are ignored",
            resource: "cpu",
            current: 2,
            target: 30,
            pods: "RRDD",
            usage: &[Some(500), Some(700), Some(4000), Some(4000)],
            want: Ok((4, 60)),
        },
        Case {
            name: "scale down",
            resource: "cpu",
            current: 5,
            target: 50,
            pods: "RRRRR",
            usage: &[Some(100), Some(300), Some(500), Some(250), Some(250)],
            want: Ok((3, 28)),
        },
        Case {
            name: "scale down leaves unready pods out",
            resource: "cpu",
            current: 5,
            target: 50,
            pods: "UURRR",
            usage: &[Some(100), Some(300), Some(500), Some(250), Some(250)],
            want: Ok((2, 33)),
        },
        Case {
            name: "within tolerance",
            resource: "cpu",
            current: 3,
            target: 100,
            pods: "RRR",
            usage: &[Some(1010), Some(1030), Some(1020)],
            want: Ok((3, 102)),
        },
        Case {
            name: "missing readings count as 0% on a scale-up",
            resource: "cpu",
            current: 4,
            target: 50,
            pods: "RRRR",
            usage: &[Some(1000), Some(1000), Some(1000), None],
            want: Ok((6, 100)),
        },
        Case {
            name: "missing readings count as 100% on a scale-down",
            resource: "cpu",
            current: 4,
            target: 50,
            pods: "RRRR",
            usage: &[Some(100), Some(100), Some(100), None],
            want: Ok((3, 10)),
        },
        Case {
            name: "missing readings that reverse the direction: no change",
            resource: "cpu",
            current: 4,
            target: 50,
            pods: "RRRR",
            usage: &[Some(600), Some(600), Some(500), None],
            want: Ok((4, 56)),
        },
        Case {
            name: "pending pods are unready: counted at 0% on a scale-up",
            resource: "cpu",
            current: 3,
            target: 50,
            pods: "RRP",
            usage: &[Some(900), Some(900), None],
            want: Ok((4, 90)),
        },
        Case {
            name: "memory ignores readiness",
            resource: "memory",
            current: 2,
            target: 50,
            pods: "UR",
            usage: &[Some(1000), Some(1000)],
            want: Ok((4, 100)),
        },
        Case {
            name: "all pods unready",
            resource: "cpu",
            current: 2,
            target: 50,
            pods: "UU",
            usage: &[Some(1000), Some(1000)],
            want: Err("did not receive metrics for targeted pods (pods might be unready)"),
        },
        Case {
            name: "no pods",
            resource: "cpu",
            current: 2,
            target: 50,
            pods: "",
            usage: &[],
            want: Err("no pods returned by selector while calculating replica count"),
        },
    ];
    let s = Settings::default();
    for c in cases {
        let ps = pods(c.pods, 1000);
        let got = resource_replicas(
            c.current,
            c.target,
            c.resource,
            None,
            &ps,
            &readings(c.usage),
            &s,
            NOW,
        )
        .map(|p| (p.replicas, p.utilization));
        assert_eq!(got, c.want.map_err(String::from), "{}", c.name);
    }
}

#[test]
fn readiness_after_the_initialization_period() {
    let s = Settings::default();
    let start = NOW - 600.0;
    let mk = |changed: f64| Pod {
        name: "p0".into(),
        phase: "Running".into(),
        deleting: false,
        ready: Some((false, changed)),
        start_time: Some(start),
        requests: vec![("app".into(), Some(1000))],
    };
    let r = readings(&[Some(500)]);
    // Not Ready now, but it was Ready after the readiness delay: it counts.
    let was_ready = mk(start + 300.0);
    assert_eq!(
        resource_replicas(1, 50, "cpu", None, &[was_ready], &r, &s, NOW).map(|p| p.replicas),
        Ok(1)
    );
    // Never Ready since the delay: unready, so no readings are left.
    let never = mk(start + 10.0);
    assert!(resource_replicas(1, 50, "cpu", None, &[never], &r, &s, NOW).is_err());
}

#[test]
fn requests_are_per_container() {
    let s = Settings::default();
    let mut p = pod(0, 'R', Some(500));
    p.requests.push(("side".into(), None));
    let r = readings(&[Some(500)]);
    assert_eq!(
        resource_replicas(1, 50, "cpu", None, std::slice::from_ref(&p), &r, &s, NOW),
        Err("missing request for cpu in container side of Pod p0".into())
    );
    // Only the named container's request counts.
    let got = resource_replicas(1, 50, "cpu", Some("app"), &[p], &r, &s, NOW).unwrap();
    assert_eq!((got.replicas, got.utilization, got.raw), (2, 100, 500));
}

type Row = (&'static str, &'static [Option<i64>], i32, i64, i32);

#[test]
fn plain_metric_cases() {
    let s = Settings::default();
    // (pods, readings, current, target) → replicas.
    let cases: [Row; 5] = [
        ("RRR", &[Some(20000), Some(10000), Some(30000)], 3, 15000, 4),
        ("RRRRR", &[Some(12000); 5], 5, 20000, 3),
        ("RRR", &[Some(15500), Some(14500), Some(15000)], 3, 15000, 3),
        // A missing reading on a scale-down counts at the target.
        (
            "RRRR",
            &[Some(1000), Some(1000), Some(1000), None],
            4,
            10000,
            2,
        ),
        // Readiness only matters for CPU.
        ("RRU", &[Some(30000), Some(30000), Some(30000)], 3, 10000, 9),
    ];
    for (states, usage, current, target, want) in cases {
        let got = plain_replicas(
            current,
            target,
            false,
            &pods(states, 1000),
            &readings(usage),
            &s,
            NOW,
        )
        .unwrap()
        .replicas;
        assert_eq!(got, want, "{states} {usage:?}");
    }
}

#[test]
fn object_metric_cases() {
    let s = Settings::default();
    assert_eq!(object_replicas(3, 5000, 3000, 3, &s), 5);
    assert_eq!(object_replicas(3, 3100, 3000, 3, &s), 3, "within tolerance");
    assert_eq!(object_replicas(0, 5000, 3000, 0, &s), 2, "from zero");
    assert_eq!(object_per_pod_replicas(1, 20000, 10000, &s), (2, 20000));
    assert_eq!(object_per_pod_replicas(4, 41000, 10000, &s), (4, 10250));
}
