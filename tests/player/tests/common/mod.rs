//! Scenarios and helpers shared by the player's tests.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use edge_sensor::telemetry::{Datagram as Wire, UserDecoder};
use edge_sensor_common::TelemetryKind;
use edge_sensor_player::{Datagram, Format, Scenario, pcap::Addressing};

pub const SFLOW_PORT: u16 = 6343;
pub const IPFIX_PORT: u16 = 4739;

/// A short scenario exercising every emitter option: sFlow compact with an
/// IPv4 agent and an agent budget (drops), sFlow expanded with an IPv6 agent
/// and uniform skips, IPFIX with samplingInterval, IPFIX with samplerId +
/// samplerRandomInterval; the first IPFIX one with a 1 s flow cache (the
/// ICMP flood from 20 sources behind it aggregates); normal traffic, a flash
/// crowd and four attacks.
/// Low rates, so that there are many samples in a few seconds.
pub fn scenario(v6_hosts: bool, seed: u64) -> Scenario {
    let (prefix, t) = if v6_hosts {
        ("2001:db8:100::/64", "2001:db8:100::")
    } else {
        ("198.51.100.0/23", "198.51.100.")
    };
    let text = format!(
        r#"
seed = {seed}
duration_s = 6.0
tick_ms = 10

[[routers]]
name = "r-sflow"
agent = "192.0.2.1"
format = "sflow"
sampling_rate = 64
interfaces = [11, 12]
sub_agent = 3
mtu = 1500
counter_interval_s = 2
max_samples_per_s = 3000

[[routers]]
name = "r-sflow6"
agent = "2001:db8:ffff::1"
format = "sflow"
sampling_rate = 100
skip = "uniform"
interfaces = [16777300]
expanded = true
mtu = 9000
header_bytes = 96
counter_interval_s = 1

[[routers]]
name = "r-ipfix"
agent = "192.0.2.3"
format = "ipfix"
sampling_rate = 128
interfaces = [21]
sub_agent = 7
mtu = 1500
template_refresh_s = 2
flow_timeout_ms = 1000

[[routers]]
name = "r-ipfix-sampler"
agent = "192.0.2.4"
format = "ipfix"
sampling_rate = 50
interfaces = [31, 32]
sub_agent = 8
mtu = 1400
ipfix_sampling = "sampler_random_interval"

[hosts]
count = 300
prefix = "{prefix}"
total_pps = 150000

[[flash_crowds]]
id = "crowd"
target = "{t}5"
start_s = 0.5
duration_s = 4.0
ramp_s = 1.0
pps = 20000

[[attacks]]
id = "udp"
vector = "udp_flood"
target = "{t}1"
start_s = 1.0
duration_s = 3.0
ramp_s = 0.5
pps = 200000

[[attacks]]
id = "syn"
vector = "syn_flood"
target = "{t}2"
start_s = 2.0
duration_s = 2.0
pps = 100000

[[attacks]]
id = "icmp"
vector = "icmp_flood"
target = "{t}3"
start_s = 1.5
duration_s = 2.0
bps = 50e6
sources = 20

[[attacks]]
id = "dns"
vector = "dns_amplification"
target = "{t}4"
start_s = 3.0
duration_s = 2.5
pps = 80000
sources = 50
"#
    );
    Scenario::from_toml(&text).expect("the test scenario parses")
}

/// How the tests address datagrams: every router from 192.0.2.100, its own
/// source port (IPFIX tells exporters apart by address and port).
pub fn addressing(s: &Scenario) -> Addressing {
    Addressing {
        src: Ipv4Addr::new(192, 0, 2, 100),
        src_port: 50000,
        dst: Ipv4Addr::new(192, 0, 2, 200),
        sflow_port: SFLOW_PORT,
        ipfix_port: IPFIX_PORT,
        start_unix_s: s.start_unix_s,
    }
}

pub fn decoder() -> UserDecoder {
    UserDecoder::new(
        &[
            (SFLOW_PORT, TelemetryKind::Sflow),
            (IPFIX_PORT, TelemetryKind::Ipfix),
        ],
        &[],
        false,
    )
}

/// Feeds one datagram to the userspace decoder as the tests address it.
pub fn feed(decoder: &mut UserDecoder, a: &Addressing, d: &Datagram) {
    let (port, kind) = match d.format {
        Format::Sflow => (SFLOW_PORT, TelemetryKind::Sflow),
        Format::Ipfix => (IPFIX_PORT, TelemetryKind::Ipfix),
    };
    decoder.datagram(&Wire {
        src: IpAddr::V4(a.src),
        src_port: a.src_port + d.router as u16,
        port,
        kind,
        payload: &d.payload,
    });
}
