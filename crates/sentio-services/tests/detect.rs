#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Detection on the embedded backends: a model trained on one simulated history replays another
//! (a different seed, more anomalies) and must raise alerts on the injected faults, naming the
//! sensor each fault shows on as the top contributor.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{HOURS, START, simulate, trained_model};
use sentio_core::time::NANOS_PER_SEC;
use sentio_core::{AlertState, AnomalyKind, DeviceId, Reading};
use sentio_services::detect::{AlertSettings, Scorer, replay};
use sentio_services::train::CHAMPION;
use sentio_store::ReadingStore;
use sentio_store::sqlite::SqliteStore;

/// One injected fault: a device's run of labelled readings of one kind.
#[derive(Debug)]
struct Event {
    device: DeviceId,
    kind: AnomalyKind,
    from_ns: i64,
    to_ns: i64,
}

/// The faults in `readings`: labelled readings of one kind on one device, at most `gap_ns` apart.
fn events(readings: &[Reading], gap_ns: i64) -> Vec<Event> {
    let mut by_device: BTreeMap<&DeviceId, Vec<(i64, AnomalyKind)>> = BTreeMap::new();
    for r in readings {
        if let Some(kind) = r.injected {
            by_device.entry(&r.device).or_default().push((r.ts_ns, kind));
        }
    }
    let mut out: Vec<Event> = Vec::new();
    for (device, mut labelled) in by_device {
        labelled.sort_by_key(|(ts, _)| *ts);
        for (ts, kind) in labelled {
            match out.last_mut() {
                Some(e) if e.device == *device && e.kind == kind && ts - e.to_ns <= gap_ns => {
                    e.to_ns = ts;
                }
                _ => out.push(Event { device: device.clone(), kind, from_ns: ts, to_ns: ts }),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_model_alerts_on_unseen_faults_and_names_their_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tracking) = trained_model(dir.path(), "detect").await;

    // Another seed, many more faults: data the model never saw.
    let mut unseen = config.clone();
    unseen.simulator.seed = 12;
    unseen.simulator.anomalies.rate_per_hour = 8.0;
    let readings = simulate(&unseen, HOURS).await;
    let live = SqliteStore::open(&dir.path().join("live.db")).unwrap();
    live.migrate().await.unwrap();
    live.insert_readings(&readings).await.unwrap();

    let scorer = Scorer::resolve(
        tracking.as_ref(),
        &config.train.model_name,
        CHAMPION,
        &dir.path().join("models"),
        2,
    )
    .await
    .unwrap();
    let scorer = Arc::new(scorer);
    let end = START + HOURS * 3_600 * NANOS_PER_SEC;
    let settings = AlertSettings::default();
    let found = replay(&live, scorer.clone(), &[], START, end, 1, settings).await.unwrap();
    assert_eq!(found.readings, readings.len() as u64);

    let opened: Vec<_> = found.alerts.iter().filter(|a| a.state == AlertState::Opened).collect();
    let resolved = found.alerts.iter().filter(|a| a.state == AlertState::Resolved).count();
    assert_eq!(opened.len(), resolved, "every alert resolves");

    // A fault is caught when a resolved alert of its device overlaps it (an alert's window may
    // start up to one model window before the fault's first reading).
    let span = scorer.card().window as i64 * scorer.card().cadence_ns;
    let faults = events(&readings, 2 * scorer.card().cadence_ns);
    let finals: Vec<_> = found.alerts.iter().filter(|a| a.state == AlertState::Resolved).collect();
    let overlaps = |a: &sentio_core::Alert, e: &Event| {
        a.device == e.device && a.window_start_ns <= e.to_ns + span && a.window_end_ns >= e.from_ns
    };
    let caught = faults.iter().filter(|e| finals.iter().any(|a| overlaps(a, e))).count();
    let mut report = String::new();
    for e in faults.iter().filter(|e| !finals.iter().any(|a| overlaps(a, e))) {
        report.push_str(&format!(
            "missed {} {:?} at +{}s\n",
            e.device,
            e.kind,
            (e.from_ns - START) / NANOS_PER_SEC
        ));
    }
    // An alert over exactly one fault must name that fault's sensor first.
    let (mut single, mut named, mut false_alarms) = (0, 0, 0);
    for a in &finals {
        let covered: Vec<&Event> = faults.iter().filter(|e| overlaps(a, e)).collect();
        let top = a.top_sensor().and_then(sentio_core::Channel::kind).unwrap();
        match covered.as_slice() {
            [] => false_alarms += 1,
            [e] => {
                single += 1;
                named += usize::from(Some(top) == e.kind.sensor());
                if Some(top) != e.kind.sensor() {
                    report.push_str(&format!(
                        "{} {:?} named {top:?}: {:?}\n",
                        e.device, e.kind, a.sensor_share
                    ));
                }
            }
            _ => {}
        }
    }
    println!(
        "{report}faults {}, caught {caught}; alerts {}, over one fault {single}, sensor named {named}, false {false_alarms}",
        faults.len(),
        finals.len()
    );
    assert!(faults.len() >= 50, "the replay holds enough faults: {}", faults.len());
    assert!(caught * 10 >= faults.len() * 9, "recall below 0.9:\n{report}");
    assert!(single >= 20, "too few alerts over a single fault to judge: {single}");
    assert!(named * 10 >= single * 9, "top sensor wrong too often:\n{report}");
    assert!(
        false_alarms * 5 <= finals.len(),
        "{false_alarms} of {} alerts are false",
        finals.len()
    );
}
