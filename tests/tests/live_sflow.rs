//! End to end with a real exporter: pmacct's `pmacctd` (sfprobe plugin) in a
//! router namespace samples real traffic (ping, hping3 SYN and UDP) and
//! exports sFlow to the collector namespace, where the XDP program parses it
//! and drops it. The truth is tshark's decode of the very same datagrams,
//! captured on the router's side (the collector never sees them: they are
//! consumed in its kernel).

use std::{net::UdpSocket, process::Stdio, time::Duration};

use edge_sensor::xdp::read;
use edge_sensor_tests::{
    PinDir,
    engines::as_truth,
    netns::{Link, start_sensor},
    require_root, require_tool, tshark,
};

#[test]
fn pmacct_sflow_is_counted_in_the_kernel_exactly_as_tshark_decodes_it() {
    require_root();
    for tool in ["pmacctd", "hping3", "ping", "tcpdump", "tshark"] {
        require_tool(tool);
    }
    let link = Link::new();
    let pin = PinDir::new();
    let dir = std::env::temp_dir().join(format!("es-live-sflow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("sflow.pcap");

    // A socket on the collector's sFlow port: the kernel must leave it nothing.
    let socket = link.b.run(|| {
        let s = UdpSocket::bind((link.b_addr, 6343)).expect("bind 6343 in the collector");
        s.set_nonblocking(true).unwrap();
        s
    });
    let sensor_log = dir.join("sensor.log");
    let sensor = start_sensor(&link.b, &link.b_if, pin.path(), &sensor_log);

    let tcpdump = link.a.capture(&link.a_if, &capture, 6343);
    let pmacctd = link.a.start_pmacctd(
        &dir,
        &format!(
            "daemonize: false\npcap_interface: {}\npcap_filter: not udp port 6343\n\
             sampling_rate: 1\nplugins: sfprobe\nsfprobe_receiver: {}:6343\n\
             sfprobe_agentip: {}\nsfprobe_agentsubid: 7\n",
            link.a_if, link.b_addr, link.a_addr
        ),
    );

    let dst = link.b_addr.to_string();
    let traffic: [&[&str]; 3] = [
        &["ping", "-q", "-c", "50", "-i", "0.01", "-s", "300", &dst],
        &[
            "hping3", "-q", "-S", "-p", "80", "-c", "100", "-i", "u5000", &dst,
        ],
        &[
            "hping3", "-q", "--udp", "-p", "53", "-d", "120", "-c", "100", "-i", "u5000", &dst,
        ],
    ];
    for cmd in traffic {
        let status = link
            .a
            .command(cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run traffic");
        // hping3 exits 1 when no reply came back for some probes; only a
        // failure to start counts.
        assert!(status.code().is_some(), "{cmd:?} was killed");
    }
    // pmacct flushes about every second; let it, then stop everything.
    std::thread::sleep(Duration::from_secs(3));
    pmacctd.stop(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    tcpdump.stop(libc::SIGINT);

    let truth = tshark::sflow_truth(&capture, 6343);
    let report = read::pinned_report(pin.path()).expect("read the pinned maps");

    // The datagrams were consumed in the kernel: the socket got none.
    let mut buf = [0u8; 2048];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "a datagram reached userspace"
    );

    assert!(truth.len() >= 2, "tshark found too little: {truth:?}");
    let ours = as_truth(&report);
    assert_eq!(ours, truth, "per-destination totals: sensor vs tshark");
    let victim = &ours[&link.b_addr];
    assert!(
        victim.tcp_syn >= 90 && victim.udp >= 90 && victim.icmp >= 45,
        "{victim:?}"
    );

    let exporters: Vec<_> = report.exporters.iter().collect();
    assert_eq!(exporters.len(), 1, "{exporters:?}");
    let (id, totals) = exporters[0];
    assert_eq!(
        (id.ip, id.sub_agent, id.protocol()),
        (link.a_addr, 7, "sflow")
    );
    assert_eq!(totals.stats.error_total(), 0, "{totals:?}");
    assert_eq!(
        totals.stats.sequence_gaps, 0,
        "no datagram was lost on a veth"
    );

    sensor.stop(libc::SIGINT);
    let _ = std::fs::remove_dir_all(&dir);
}
