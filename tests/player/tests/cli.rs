//! The example scenario stays valid, and the binary writes a capture and a
//! truth file that agree with each other.

use std::process::Command;

use edge_sensor_player::{Player, Scenario};

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/example.toml")
}

#[test]
fn the_example_scenario_parses_and_its_first_seconds_play() {
    let mut s = Scenario::from_file(&example()).unwrap();
    assert_eq!(s.routers.len(), 2);
    assert_eq!(s.attacks.len(), 2);
    // The first 3 s: normal traffic and the flash crowd's ramp.
    s.duration_s = 3.0;
    let mut p = Player::new(&s).unwrap();
    let datagrams = p.run_all();
    assert_eq!(p.model().now_ns(), 3_000_000_000);
    assert!(datagrams.len() > 50, "{}", datagrams.len());
    assert!(datagrams.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
    let g = p.model().generated();
    // 4000 hosts at ~400 kpps around 18:00 (the peak is at 21:00).
    let normal: u64 = g
        .iter()
        .filter(|(o, _)| matches!(o, edge_sensor_player::Origin::Normal(_)))
        .map(|(_, g)| g.packets)
        .sum();
    // The hosts' mean (diurnal factor and this minute's bursts) over 3 s;
    // Poisson noise on 1.2 M packets is 0.1 %.
    let mut model = p.model().clone();
    let mean = 3.0 * model.normal_pps(1_500_000_000);
    assert!(
        (normal as f64 / mean - 1.0).abs() < 0.01,
        "{normal} vs {mean}"
    );
    // Bursts move the mean: without them it is another.
    let plain = 400_000.0 * 3.0 * model.diurnal(1_500_000_000);
    assert!((mean / plain - 1.0).abs() > 0.001, "{mean} vs {plain}");
}

#[test]
fn unknown_keys_and_bad_targets_are_errors_naming_them() {
    let text = std::fs::read_to_string(example()).unwrap();
    let e =
        Scenario::from_toml(&text.replace("tick_ms = 10", "tick_ms = 10\ntickms = 3")).unwrap_err();
    assert!(e.to_string().contains("tickms"), "{e}");
    let s = Scenario::from_toml(&text.replace("198.18.0.21", "203.0.113.9")).unwrap();
    let e = Player::new(&s).unwrap_err();
    assert!(e.to_string().contains("203.0.113.9"), "{e}");
    let e = Scenario::from_toml(&text.replace("pps = 1000000", "pps = 1000000\nbps = 1e9"))
        .unwrap_err();
    assert!(e.to_string().contains("exactly one of pps and bps"), "{e}");
}

#[test]
fn the_binary_writes_a_capture_and_a_truth_that_agree() {
    let dir = std::env::temp_dir().join(format!("es-player-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = Scenario::from_file(&example()).unwrap();
    s.duration_s = 2.0;
    s.hosts.count = 200;
    let scenario = dir.join("short.toml");
    std::fs::write(&scenario, toml::to_string(&s).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-sensor-play"))
        .arg(&scenario)
        .arg("--pcap")
        .arg(dir.join("play.pcap"))
        .arg("--truth")
        .arg(dir.join("truth.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth = std::fs::read_to_string(dir.join("truth.jsonl")).unwrap();
    let datagram_lines = truth
        .lines()
        .filter(|l| l.contains(r#""type":"datagram""#))
        .count();
    // Frames in the capture: 24-byte header, then a 16-byte header each.
    let pcap = std::fs::read(dir.join("play.pcap")).unwrap();
    let (mut at, mut frames) = (24usize, 0usize);
    while at < pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
        frames += 1;
    }
    assert_eq!(at, pcap.len());
    assert_eq!(frames, datagram_lines);
    // The same seed in the library gives the same datagrams.
    let mine = Player::new(&s).unwrap().run_all();
    assert_eq!(mine.len(), frames);
    std::fs::remove_dir_all(&dir).unwrap();
}
