//! The detection report's behaviour, reduced so CI runs it: an hour of
//! normal traffic with flash crowds (one of them on a web server, over the
//! thresholds) on 1,000 hosts starts nothing, every
//! vector of the attack set is detected on its victim with its class and a
//! precise rule, and flood sizes are detected as fast as their samples
//! allow. Deterministic: seeded.

use edge_sensor::detect::AttackClass;
use edge_sensor_detection::experiments::{attack_set, normal_traffic, time_to_detect};

const SEED: u64 = 20261205;

#[test]
fn an_hour_of_normal_traffic_with_flash_crowds_on_1000_hosts_starts_no_attack() {
    // 1:16384: the fewest samples, the noisiest estimates.
    let run = normal_traffic(16384, 1000, 1.0, 25_000.0, SEED).expect("replay");
    assert_eq!(run.flash_crowds, 2);
    assert_eq!(run.large_crowds, 1);
    assert!(run.samples > 5_000, "only {} samples", run.samples);
    let list =
        |v: &[edge_sensor::detect::Attack]| v.iter().map(|a| format!("{a}\n")).collect::<String>();
    assert!(
        run.with_confidence.is_empty(),
        "false positives:\n{}",
        list(&run.with_confidence)
    );
    // The same traffic decided on the point estimate: sampling noise on
    // the largest host crosses thresholds. The confidence check is what
    // keeps it quiet.
    assert!(
        !run.without_confidence.is_empty(),
        "the point estimate raised nothing: the run does not test the check"
    );
    // The large crowd is over the thresholds: without the web group's
    // baseline it is mitigated; with it, it is told from an attack.
    assert!(
        !run.crowds_without_baseline.is_empty(),
        "the large crowd stayed under the thresholds: the run does not test crowds"
    );
    assert!(run.flash_crowd_polls > 0, "{run:?}");
}

#[test]
fn every_vector_of_the_set_is_detected_on_its_victim_with_its_class_and_a_precise_rule() {
    let set = attack_set(4096, 300, 300_000.0, 2e9, SEED).expect("replay");
    assert_eq!(set.attacks.len(), 9);
    for a in &set.attacks {
        let d = a
            .detected
            .as_ref()
            .unwrap_or_else(|| panic!("{} on {} not detected", a.id, a.victim));
        assert_eq!(d.class, a.expected, "{}: {:?}", a.id, d);
        assert!(d.after_s <= 5.0, "{}: detected after {} s", a.id, d.after_s);
        assert!(d.attack_samples > 500, "{}: {}", a.id, d.attack_samples);
        for (what, coverage) in [("first", d.first_coverage), ("last", d.last_coverage)] {
            assert!(
                coverage >= 0.95,
                "{}: {what} rule covers {coverage}: {:?}",
                a.id,
                d
            );
        }
        // The ICMP rule tells echo requests from the victim's own echo
        // replies (same protocol and length) by the ICMP type.
        if a.expected == AttackClass::IcmpFlood {
            assert_eq!(d.first.icmp_types, vec![8], "{}: {:?}", a.id, d);
        }
        for (what, hit) in [("first", d.first_normal_hit), ("last", d.last_normal_hit)] {
            assert!(
                hit < 0.01,
                "{}: {what} rule hits {hit} of normal: {:?}",
                a.id,
                d
            );
        }
    }
    assert!(set.others.is_empty(), "{:?}", set.others);
}

#[test]
fn floods_are_detected_as_fast_as_their_samples_allow() {
    let points = time_to_detect(4096, &[40e3, 80e3, 1e6], 50, &[1, 2]).expect("replay");
    // Under the 50 kpps UDP threshold: never.
    assert!(
        points[0].times.iter().all(Option::is_none),
        "{:?}",
        points[0]
    );
    // 1 Mpps: 244 samples a second; the poll after the first samples
    // (sFlow), or after the IPFIX flow cache's 1 s timeout.
    let max = points[2].max().expect("detected");
    assert!(points[2].all_detected() && max <= 2.5, "{:?}", points[2]);
    // 1.6x the threshold: 20 samples a second need a few seconds more.
    let p = &points[1];
    assert!(p.all_detected(), "{p:?}");
    assert!(p.median().is_some_and(|m| m > max), "{p:?}");
}
