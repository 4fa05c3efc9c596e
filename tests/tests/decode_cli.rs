//! `edge-sensor decode` as a user runs it: the documented JSON, the same
//! output from both engines, and clear errors (never a panic) for files that
//! are not telemetry captures.

use std::{path::PathBuf, process::Command};

use edge_sensor_tests::{require_root, sensor_bin, shared_captures};
use serde_json::Value;

fn capture(name: &str) -> PathBuf {
    shared_captures().join(name)
}

fn decode(args: &[&str], file: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(sensor_bin())
        .arg("decode")
        .args(args)
        .arg(file)
        .output()
        .expect("run decode");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_has_the_documented_fields_and_both_engines_agree() {
    require_root();
    let file = capture("lab/pmacct-1.7.7_sfprobe_v5_rate1.pcap");
    let (ok, user, err) = decode(&["--engine", "user", "--json"], &file);
    assert!(ok, "{err}");
    let (ok, xdp, err) = decode(&["--engine", "xdp", "--json"], &file);
    assert!(ok, "{err}");
    assert_eq!(user, xdp, "user vs xdp JSON");

    let doc: Value = serde_json::from_str(&xdp).expect("JSON");
    let dsts = doc["destinations"].as_array().expect("destinations");
    assert_eq!(dsts.len(), 6);
    for d in dsts {
        for key in [
            "ip",
            "packets",
            "bytes",
            "tcp_packets",
            "tcp_syn_packets",
            "udp_packets",
            "icmp_packets",
            "fragment_packets",
            "other_packets",
        ] {
            assert!(d.get(key).is_some(), "destination lacks {key}: {d}");
        }
    }
    let exporters = doc["exporters"].as_array().expect("exporters");
    assert_eq!(exporters.len(), 1);
    let e = &exporters[0];
    for key in [
        "ip",
        "protocol",
        "datagrams",
        "samples",
        "sequence_gaps",
        "errors",
    ] {
        assert!(e.get(key).is_some(), "exporter lacks {key}: {e}");
    }
    assert_eq!(e["ip"], "10.99.0.1");
    assert_eq!(e["protocol"], "sflow");
    assert_eq!(e["datagrams"], 10);
    assert_eq!(e["samples"], 30);
    assert_eq!(e["errors"]["bad_sample_length"], 0);
}

#[test]
fn files_that_are_not_telemetry_captures_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("es-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("notes.pcap");
    std::fs::write(&text, b"this is not a capture at all\n").unwrap();
    let cut = dir.join("cut.pcap");
    let whole = std::fs::read(capture("lab/softflowd-1.1.0_v5.pcap")).unwrap();
    std::fs::write(&cut, &whole[..100]).unwrap();

    let cases = [
        (empty.clone(), "not a pcap"),
        (text.clone(), "not a pcap"),
        (dir.join("missing.pcap"), "cannot read"),
        (cut.clone(), "truncated or corrupt capture"),
        // Real traffic, but none of it telemetry on the default ports.
        (
            capture("public/pmacct-test-automation/100-IPFIXv10-CISCO.pcap"),
            "no telemetry datagrams",
        ),
    ];
    for (file, expected) in &cases {
        let (ok, _, err) = decode(&["--engine", "user"], file);
        assert!(!ok, "{}: decode succeeded", file.display());
        assert!(err.contains(expected), "{}: {err}", file.display());
        assert!(!err.contains("panicked"), "{}: {err}", file.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
