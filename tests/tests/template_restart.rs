//! Learnt IPFIX templates survive a daemon restart: `edge-sensor run`
//! learns a template from what XDP passes on, saves it under its state
//! directory, and after a restart the kernel decodes data sets of that
//! template at once, before the exporter announces it again. Without the
//! saved file the same datagram goes to the daemon, which cannot decode it.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use edge_sensor::xdp::read;
use edge_sensor_tests::{
    PinDir,
    netns::{Link, start_sensor},
    require_root,
};

const VICTIM: [u8; 4] = [203, 0, 113, 10];
/// The exporter's source port: part of a template's scope (RFC 7011 §8).
const EXPORTER_PORT: u16 = 40123;

fn ipfix(sequence: u32, set_id: u16, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 0, 0x65, 0, 0, 0];
    m.extend(sequence.to_be_bytes());
    m.extend(42u32.to_be_bytes()); // observation domain
    m.extend(set_id.to_be_bytes());
    m.extend(((body.len() + 4) as u16).to_be_bytes());
    m.extend(body);
    let len = (m.len() as u16).to_be_bytes();
    m[2..4].copy_from_slice(&len);
    m
}

/// Template 300: destinationIPv4Address, packetDeltaCount (4),
/// octetDeltaCount (4), protocolIdentifier.
fn template() -> Vec<u8> {
    let mut t = vec![0x01, 0x2c, 0, 4];
    for (ie, len) in [(12u16, 4u16), (2, 4), (1, 4), (4, 1)] {
        t.extend(ie.to_be_bytes());
        t.extend(len.to_be_bytes());
    }
    ipfix(0, 2, &t)
}

/// Two records of template 300 to the victim: 10 + 20 packets.
fn data(sequence: u32) -> Vec<u8> {
    let mut body = Vec::new();
    for packets in [10u32, 20] {
        body.extend(VICTIM);
        body.extend(packets.to_be_bytes());
        body.extend((packets * 100).to_be_bytes());
        body.push(17);
    }
    ipfix(sequence, 300, &body)
}

fn send(link: &Link, payload: Vec<u8>) {
    let dst = SocketAddr::new(link.b_addr, 4739);
    link.a.run(move || {
        let sock = UdpSocket::bind(("0.0.0.0", EXPORTER_PORT)).expect("bind the exporter port");
        sock.send_to(&payload, dst).expect("send");
    });
}

fn wait_for(what: &str, log: &std::path::Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: timed out; sensor log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn templates_survive_a_daemon_restart() {
    require_root();
    let link = Link::new();
    let pin = PinDir::new();
    let dir = std::env::temp_dir().join(edge_sensor_tests::unique_name("es-tpl-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("sensor.log");
    let state = log.with_extension("state").join("templates.json");
    let consumed = || {
        let map = aya::maps::Map::from_map_data(
            aya::maps::MapData::from_pin(pin.path().join("GLOBAL_STATS")).expect("pin"),
        )
        .expect("GLOBAL_STATS");
        read::global(&map).expect("read").consumed_datagrams
    };
    let victim_packets = || {
        read::pinned_report(pin.path())
            .expect("read pins")
            .destinations
            .get(&std::net::IpAddr::from(VICTIM))
            .map_or(0, |s| s.packets[0])
    };

    // Learn: the template goes to the daemon, the data after it to the kernel.
    let sensor = start_sensor(&link.b, &link.b_if, pin.path(), &log);
    std::thread::sleep(Duration::from_millis(500));
    send(&link, template());
    wait_for("the plan for template 300", &log, || {
        send(&link, data(0));
        std::thread::sleep(Duration::from_millis(200));
        consumed() >= 1
    });
    let before = victim_packets();
    assert!(before >= 30 && before % 30 == 0, "{before}");
    sensor.stop(libc::SIGTERM);
    let saved = std::fs::read_to_string(&state).expect("templates saved at exit");
    assert!(saved.contains("\"id\": 300"), "{saved}");

    // Restart: the kernel decodes data of template 300 with no new template.
    let sensor = start_sensor(&link.b, &link.b_if, pin.path(), &log);
    let consumed_before = consumed();
    send(&link, data(2));
    wait_for("the kernel to take data after the restart", &log, || {
        consumed() == consumed_before + 1
    });
    assert_eq!(victim_packets(), before + 30);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("templates restored"), "{text}");
    sensor.stop(libc::SIGTERM);

    // The control: without the saved file the datagram is not the kernel's.
    std::fs::remove_file(&state).expect("remove the saved templates");
    let sensor = start_sensor(&link.b, &link.b_if, pin.path(), &log);
    let consumed_before = consumed();
    send(&link, data(3));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        consumed(),
        consumed_before,
        "no plan without the saved template"
    );
    assert_eq!(victim_packets(), before + 30, "nobody could decode it");
    sensor.stop(libc::SIGTERM);
    let _ = std::fs::remove_dir_all(&dir);
}
