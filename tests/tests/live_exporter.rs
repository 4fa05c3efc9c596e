//! End to end with a real exporter: pmacct's `pmacctd` (sfprobe plugin) in a
//! router namespace samples real traffic and exports sFlow to the collector
//! namespace, where the XDP program counts it. The truth is a UDP socket on
//! the collector that receives the very same datagrams after XDP passed them.

use std::{
    net::UdpSocket,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use edge_sensor_tests::{PinDir, netns::Link, require_root, sensor_bin};
use serde_json::Value;

fn require_tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{name} is not installed: run scripts/setup");
}

#[test]
fn pmacct_sfprobe_datagrams_are_counted_exactly() {
    require_root();
    require_tool("pmacctd");
    require_tool("ping");
    let link = Link::new();
    let pin = PinDir::new();
    let dir = std::env::temp_dir().join(format!("es-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The truth: a socket on the collector receiving the sFlow datagrams.
    let receiver = link.b.run(|| {
        let sock = UdpSocket::bind((link.b_addr, 6343)).expect("bind 6343 in the collector");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        sock
    });

    let mut sensor = link
        .b
        .command(sensor_bin())
        .args(["run", "--iface", &link.b_if, "--pin-path"])
        .arg(pin.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("start edge-sensor");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !link.b.has_xdp(&link.b_if) {
        assert!(Instant::now() < deadline, "edge-sensor did not attach");
        std::thread::sleep(Duration::from_millis(50));
    }

    let conf = dir.join("pmacctd.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_interface: {}\npcap_filter: icmp\nsampling_rate: 1\n\
             plugins: sfprobe\nsfprobe_receiver: {}:6343\nsfprobe_agentip: {}\n\
             sfprobe_agentsubid: 7\n",
            link.a_if, link.b_addr, link.a_addr
        ),
    )
    .unwrap();
    let mut pmacctd = link
        .a
        .command("pmacctd")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pmacctd");
    std::thread::sleep(Duration::from_secs(1));
    let ping = link
        .a
        .command("ping")
        .args(["-q", "-c", "100", "-i", "0.02", "-s", "400"])
        .arg(link.b_addr.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("run ping");
    assert!(ping.success(), "ping failed");

    // Receive until the exporter has been quiet for a while (bounded).
    let mut datagrams = 0u64;
    let mut bytes = 0u64;
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Instant::now();
    while Instant::now() < deadline && last.elapsed() < Duration::from_secs(4) {
        if let Ok((n, _)) = receiver.recv_from(&mut buf) {
            datagrams += 1;
            bytes += n as u64;
            last = Instant::now();
        }
    }
    let _ = pmacctd.kill();
    let _ = pmacctd.wait();
    // Anything in flight after the kill is still in the socket buffer.
    while let Ok((n, _)) = receiver.recv_from(&mut buf) {
        datagrams += 1;
        bytes += n as u64;
    }
    assert!(
        datagrams >= 10,
        "pmacctd sent only {datagrams} datagrams for 200 ICMP packets"
    );

    let out = Command::new(sensor_bin())
        .args(["exporters", "--json", "--pin-path"])
        .arg(pin.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = doc["exporters"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["ip"], link.a_addr.to_string());
    assert_eq!(rows[0]["protocol"], "sflow");
    assert_eq!(
        rows[0]["datagrams"], datagrams,
        "datagrams: sensor vs socket"
    );
    assert_eq!(rows[0]["bytes"], bytes, "bytes: sensor vs socket");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.id() as i32, libc::SIGINT) };
    let _ = sensor.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
