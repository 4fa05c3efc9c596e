//! A short scenario played in real time from a router namespace into the
//! sensor's XDP program on a veth in a collector namespace: the pinned
//! per-destination counters equal what the truth's samples say, exactly,
//! and the scaled estimates lie within a stated bound of the packets the
//! model generated. Needs root, a bpffs and the built sensor
//! (`EDGE_SENSOR_BIN`); fails loudly without them.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use edge_sensor::{cli::rows::DestinationRow, counters::Report, xdp::read};
use edge_sensor_player::{Format, Player, Scenario, realtime, truth};
use edge_sensor_tests::{
    PinDir,
    netns::{Link, start_sensor},
    patience, require_root,
};

const SCENARIO: &str = r#"
seed = 1205
duration_s = 5.0
tick_ms = 10

[[routers]]
name = "sflow-edge"
agent = "192.0.2.1"
format = "sflow"
sampling_rate = 128
interfaces = [101, 102]
flush_ms = 100
counter_interval_s = 2

[[routers]]
name = "ipfix-edge"
agent = "192.0.2.2"
format = "ipfix"
sampling_rate = 256
interfaces = [7]
sub_agent = 9
flush_ms = 100
template_refresh_s = 2
flow_timeout_ms = 500

[hosts]
count = 200
prefix = "198.51.100.0/24"
total_pps = 100000

[[flash_crowds]]
id = "crowd"
target = "198.51.100.3"
start_s = 0.5
duration_s = 3.5
ramp_s = 1.0
pps = 30000

[[attacks]]
id = "udp"
vector = "udp_flood"
target = "198.51.100.1"
start_s = 1.0
duration_s = 3.0
ramp_s = 0.5
pps = 300000

[[attacks]]
id = "ntp"
vector = "ntp_amplification"
target = "198.51.100.2"
start_s = 1.5
duration_s = 3.0
bps = 1e9
sources = 50
dst_port = 4444
"#;

fn dst_table(
    report: &BTreeMap<IpAddr, edge_sensor_common::DstStats>,
) -> BTreeMap<IpAddr, [u64; 7]> {
    report
        .iter()
        .map(|(ip, s)| {
            let r = DestinationRow::new(*ip, s);
            (
                *ip,
                [
                    r.packets,
                    r.bytes,
                    r.tcp_packets,
                    r.tcp_syn_packets,
                    r.udp_packets,
                    r.icmp_packets,
                    r.other_packets,
                ],
            )
        })
        .filter(|(_, v)| v[0] != 0)
        .collect()
}

#[test]
fn a_scenario_played_into_xdp_on_a_veth_is_counted_as_its_truth_says() {
    require_root();
    let scenario = Scenario::from_toml(SCENARIO).unwrap();
    let link = Link::new();
    let pin = PinDir::new();
    let dir = std::env::temp_dir().join(edge_sensor_tests::unique_name("es-play-"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("sensor.log");
    let sensor = start_sensor(&link.b, &link.b_if, pin.path(), &log);

    // Play in real time from the router namespace.
    let mut player = Player::new(&scenario).unwrap();
    let target = realtime::Target {
        sflow: SocketAddr::new(link.b_addr, 6343),
        ipfix: SocketAddr::new(link.b_addr, 4739),
        bind: "0.0.0.0:0".parse().unwrap(),
        speed: 1.0,
    };
    let (sent, player, datagrams) = link.a.run(move || {
        let mut datagrams = Vec::new();
        let sent =
            realtime::play(&mut player, &target, |_, d| datagrams.push(d.clone())).expect("play");
        (sent, player, datagrams)
    });
    assert_eq!(sent.datagrams, datagrams.len() as u64);
    // Real time: the play took the scenario's 5 s, give or take scheduling.
    assert!(
        sent.elapsed >= Duration::from_millis(4900)
            && sent.elapsed < patience(Duration::from_secs(8)),
        "{sent:?}"
    );

    // What the collector must count: every sample, scaled by its rate.
    let expected: BTreeMap<IpAddr, [u64; 7]> = truth::expected(&datagrams)
        .into_iter()
        .map(|(ip, e)| {
            (
                ip,
                [
                    e.packets,
                    e.bytes,
                    e.tcp_packets,
                    e.tcp_syn_packets,
                    e.udp_packets,
                    e.icmp_packets,
                    e.other_packets,
                ],
            )
        })
        .collect();
    let samples: usize = datagrams.iter().map(|d| d.truth.samples.len()).sum();
    // The NTP reflection (50 reflectors to one port) fills the IPFIX flow
    // cache: records of many samples, which the kernel scales as one.
    let aggregated = datagrams
        .iter()
        .flat_map(|d| d.truth.records.iter())
        .filter(|&&k| k > 5)
        .count();
    assert!(aggregated > 50, "{aggregated} aggregated IPFIX records");
    assert!(
        expected.len() > 100 && samples > 5000,
        "a thin play: {} destinations, {samples} samples",
        expected.len()
    );
    let deadline = Instant::now() + patience(Duration::from_secs(20));
    let read = || {
        let all = read::pinned_report(pin.path()).expect("read the pinned maps");
        let user = read::pinned_user_report(pin.path()).expect("read the user maps");
        (all, user)
    };
    let sflow_datagrams = datagrams
        .iter()
        .filter(|d| d.format == Format::Sflow)
        .count() as u64;
    let ipfix_datagrams = datagrams
        .iter()
        .filter(|d| d.format == Format::Ipfix)
        .count() as u64;
    // Datagrams counted per exporter (kernel and userspace together: the
    // daemon publishes what it decoded, the IPFIX templates, once a poll).
    let counted = |r: &Report| {
        let sum = |f: &dyn Fn(&edge_sensor::counters::ExporterId) -> bool| {
            r.exporters
                .iter()
                .filter(|(id, _)| f(id))
                .map(|(_, t)| t.stats.datagrams)
                .sum::<u64>()
        };
        (
            sum(&|id| id.ip == scenario.routers[0].agent),
            sum(&|id| id.ip == link.a_addr && id.sub_agent == 9),
        )
    };
    let (mut all, mut user) = read();
    // Bounded: until the counters match or the deadline.
    while (dst_table(&all.destinations) != expected
        || counted(&all) != (sflow_datagrams, ipfix_datagrams))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        (all, user) = read();
    }
    let got = dst_table(&all.destinations);
    let missing: Vec<_> = expected
        .iter()
        .filter(|(ip, v)| got.get(ip) != Some(v))
        .take(5)
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "destinations counted {} vs truth {}; first differences: {missing:?}",
        got.len(),
        expected.len()
    );
    assert!(
        missing.is_empty(),
        "counters differ from the truth: {missing:?} (got {:?})",
        missing
            .iter()
            .map(|(ip, _)| got.get(ip))
            .collect::<Vec<_>>()
    );

    // The sFlow router's destinations were counted by the XDP program alone.
    let user_dsts = dst_table(&user.destinations);
    let hosts = player.model().hosts();
    let router_of = |ip: &IpAddr| hosts.iter().find(|h| h.addr == *ip).map(|h| h.router);
    for ip in expected.keys() {
        if router_of(ip) == Some(0) {
            assert!(
                !user_dsts.contains_key(ip),
                "{ip}: sFlow counted in userspace"
            );
        }
    }
    // IPFIX data went through the kernel too, once the daemon had compiled
    // the templates into plans (before that, userspace decoded it).
    let ipfix_total: u64 = expected
        .iter()
        .filter(|(ip, _)| router_of(ip) == Some(1))
        .map(|(_, v)| v[0])
        .sum();
    let ipfix_user: u64 = user_dsts
        .iter()
        .filter(|(ip, _)| router_of(ip) == Some(1))
        .map(|(_, v)| v[0])
        .sum();
    assert!(
        ipfix_user < ipfix_total,
        "no IPFIX data counted by XDP ({ipfix_user} of {ipfix_total} in userspace)"
    );

    // Exporters: every datagram, no sequence gap.
    let sflow = all
        .exporters
        .iter()
        .find(|(id, _)| id.ip == scenario.routers[0].agent)
        .expect("the sFlow agent's exporter row");
    assert_eq!(sflow.1.stats.datagrams, sflow_datagrams);
    assert_eq!(
        (sflow.1.stats.sequence_gaps, sflow.1.stats.sequence_resets),
        (0, 0)
    );
    let ipfix = all
        .exporters
        .iter()
        .find(|(id, _)| id.ip == link.a_addr && id.sub_agent == 9)
        .expect("the IPFIX exporter's row");
    assert_eq!(ipfix.1.stats.datagrams, ipfix_datagrams);
    assert_eq!(ipfix.1.stats.sequence_gaps, 0);

    // The estimate against the exact packets generated. Samples of a
    // destination are Binomial(n, 1/N) (geometric skips), so N × samples has
    // standard deviation sqrt(n (N - 1)); every destination that expects at
    // least 100 samples, and the sum over all, must lie within 4 of them
    // (a correct sampler fails one of these ~15 checks with p < 1e-3).
    let rate_of =
        |ip: &IpAddr| f64::from(scenario.routers[router_of(ip).unwrap() as usize].sampling_rate);
    let mut checked = 0;
    let (mut sum_est, mut sum_gen, mut sum_var) = (0.0, 0.0, 0.0);
    for (ip, g) in &player.model().per_destination() {
        let n = g.packets as f64;
        let rate = rate_of(ip);
        let est = got.get(ip).map_or(0, |v| v[0]) as f64;
        let var = n * (rate - 1.0);
        sum_est += est;
        sum_gen += n;
        sum_var += var;
        if n / rate >= 100.0 {
            checked += 1;
            assert!(
                (est - n).abs() <= 4.0 * var.sqrt(),
                "{ip}: estimate {est} vs {n} generated (sd {:.0})",
                var.sqrt()
            );
        }
    }
    assert!(
        checked >= 3,
        "only {checked} destinations large enough to check"
    );
    assert!(
        (sum_est - sum_gen).abs() <= 4.0 * sum_var.sqrt(),
        "all: {sum_est} vs {sum_gen}"
    );
    // No agent drops in this scenario: every sample taken was exported.
    assert!(player.model().generated().values().all(|g| g.dropped == 0));

    let status = sensor.stop(libc::SIGINT);
    assert!(
        status.is_some_and(|s| s.success()),
        "sensor exit {status:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
