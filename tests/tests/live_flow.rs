//! End to end with real NetFlow v9 / IPFIX exporters: softflowd (`-v 10`,
//! `-v 9`) and pmacct's nfprobe in a router namespace export flows of real
//! traffic to the collector namespace, where `edge-sensor run` learns the
//! templates from what XDP passes on, compiles plans, and the kernel takes
//! the data datagrams from then on. The per-destination totals (kernel and
//! daemon together) must equal tshark's decode of the same datagrams,
//! captured on the router's side.

use std::{os::unix::process::CommandExt, process::Stdio, time::Duration};

use edge_sensor::xdp::read;
use edge_sensor_tests::{
    Guarded, PinDir,
    engines::as_truth,
    netns::{Link, start_sensor},
    require_root, require_tool, tshark_flow,
};

enum Exporter {
    Softflowd(&'static str),
    PmacctNfprobe,
}

fn run_case(exporter: Exporter) {
    require_root();
    for tool in [
        "softflowd",
        "softflowctl",
        "pmacctd",
        "hping3",
        "ping",
        "tcpdump",
        "tshark",
    ] {
        require_tool(tool);
    }
    let link = Link::new();
    let pin = PinDir::new();
    let dir = std::env::temp_dir().join(edge_sensor_tests::unique_name("es-flow-"));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("flow.pcap");
    let port = 2055u16;

    let sensor_log = dir.join("sensor.log");
    let sensor = start_sensor(&link.b, &link.b_if, pin.path(), &sensor_log);
    std::thread::sleep(Duration::from_millis(500)); // its sockets
    let tcpdump = link.a.capture(&link.a_if, &capture, port);
    let collector = format!("{}:{port}", link.b_addr);
    let ctl = dir.join("sf.ctl");
    let probe = match exporter {
        Exporter::Softflowd(version) => link
            .a
            .command("softflowd")
            .args([
                "-d", "-i", &link.a_if, "-v", version, "-n", &collector, "-c",
            ])
            .arg(&ctl)
            .arg("-p")
            .arg(dir.join("sf.pid"))
            .args([
                "-t",
                "maxlife=2",
                "-t",
                "expint=1",
                "-t",
                "general=2",
                "-t",
                "udp=2",
                "-t",
                "icmp=2",
                "-t",
                "tcp=2",
            ])
            .arg(format!("not udp port {port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(Guarded)
            .expect("start softflowd"),
        Exporter::PmacctNfprobe => link.a.start_pmacctd(
            &dir,
            &format!(
                "daemonize: false\npcap_interface: {}\npcap_filter: not udp port {port}\n\
                     plugins: nfprobe\nnfprobe_receiver: {collector}\nnfprobe_version: 10\n\
                     nfprobe_source_ip: {}\n\
                     nfprobe_timeouts: tcp=2:udp=2:icmp=2:general=2:maxlife=3:expint=1\n",
                link.a_if, link.a_addr
            ),
        ),
    };
    std::thread::sleep(Duration::from_secs(1));

    let dst = link.b_addr.to_string();
    let round = |n: u16| {
        let port_s = (80 + n).to_string();
        let traffic: [&[&str]; 3] = [
            &["ping", "-q", "-c", "20", "-i", "0.01", "-s", "200", &dst],
            &[
                "hping3",
                "-q",
                "-S",
                "-p",
                &port_s,
                "-c",
                "200",
                "-i",
                "u2000",
                "--rand-source",
                &dst,
            ],
            &[
                "hping3",
                "-q",
                "--udp",
                "-p",
                "53",
                "-d",
                "100",
                "-c",
                "200",
                "-i",
                "u2000",
                "--rand-source",
                &dst,
            ],
        ];
        for cmd in traffic {
            let _ = link
                .a
                .command(cmd[0])
                .args(&cmd[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(2500));
        if let Exporter::Softflowd(_) = exporter {
            let _ = link
                .a
                .command("softflowctl")
                .arg("-c")
                .arg(&ctl)
                .arg("expire-all")
                .status();
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    let consumed = || {
        let map = aya::maps::Map::from_map_data(
            aya::maps::MapData::from_pin(pin.path().join("GLOBAL_STATS"))
                .expect("GLOBAL_STATS pin"),
        )
        .expect("GLOBAL_STATS");
        read::global(&map)
            .expect("read GLOBAL_STATS")
            .consumed_datagrams
    };
    // Phase 1: the exporter's first datagrams teach the templates (an
    // exporter may send them in one burst with the data behind them, which
    // then reaches XDP before the plans exist: the daemon counts those).
    for n in 0..4 {
        round(n);
    }
    // Phase 2: more data once the templates are known: the kernel must take
    // it with the plans the daemon compiled. softflowd reads its capture in
    // bursts (its libpcap buffer is handed over when full, every few rounds
    // here), so rounds go on until the exporter has sent something new
    // (bounded).
    let before = consumed();
    let mut rounds = 0;
    while consumed() == before && rounds < 8 {
        round(4 + rounds);
        rounds += 1;
    }
    let taken = consumed() - before;
    eprintln!("live_flow: the kernel took {taken} datagrams in phase 2 ({rounds} rounds)");
    assert!(
        taken > 0,
        "no datagram of the live exporter was decoded in the kernel after the templates \
         were learnt; sensor log:\n{}",
        std::fs::read_to_string(&sensor_log).unwrap_or_default()
    );

    probe.stop(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    tcpdump.stop(libc::SIGINT);
    // The daemon publishes its userspace counts every second.
    std::thread::sleep(Duration::from_millis(1500));

    let truth = tshark_flow::flow_truth(&capture, &[port]);
    let report = read::pinned_report(pin.path()).expect("read the pinned maps");
    // Unsampled: 5 rounds of 20 pings and 2 x 200 hping3 packets.
    let victim = truth.get(&link.b_addr).map_or(0, |t| t.packets);
    assert!(
        victim >= 1000,
        "tshark found {victim} packets to the victim: {truth:?}"
    );
    assert_eq!(
        as_truth(&report),
        truth,
        "per-destination totals: sensor vs tshark"
    );

    sensor.stop(libc::SIGINT);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn softflowd_ipfix_is_counted_exactly_as_tshark_decodes_it() {
    run_case(Exporter::Softflowd("10"));
}

#[test]
fn softflowd_netflow_v9_is_counted_exactly_as_tshark_decodes_it() {
    run_case(Exporter::Softflowd("9"));
}

#[test]
fn pmacct_nfprobe_ipfix_is_counted_exactly_as_tshark_decodes_it() {
    run_case(Exporter::PmacctNfprobe);
}
