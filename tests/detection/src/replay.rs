//! One scenario through the sensor's userspace decoder and detectors on the
//! simulated clock.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use edge_sensor::{
    detect::{DetectConfig, Detector, DetectorStats, Event, Sample},
    telemetry::{Datagram as Wire, UserDecoder},
};
use edge_sensor_common::TelemetryKind;
use edge_sensor_player::{Datagram, Format, Origin, Player, Scenario, packet};

use crate::Error;

const SFLOW_PORT: u16 = 6343;
const IPFIX_PORT: u16 = 4739;
/// Routers send from this address, router `r` from port 50000 + r (IPFIX
/// tells exporters apart by address and port).
const ROUTER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const ROUTER_PORT: u16 = 50000;

/// What one detector did.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    /// Every event with its poll time (simulated seconds).
    pub events: Vec<(f64, Event)>,
    pub stats: DetectorStats,
}

impl Decisions {
    /// Attacks started.
    pub fn started(&self) -> impl Iterator<Item = (f64, &edge_sensor::detect::Attack)> {
        self.events.iter().filter_map(|(t, e)| match e {
            Event::AttackStarted(a) => Some((*t, a)),
            _ => None,
        })
    }
}

/// The outcome of a replay.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// One per detector configuration, in order.
    pub decisions: Vec<Decisions>,
    /// The truth of the samples of the destinations asked for.
    pub truth: BTreeMap<IpAddr, Vec<edge_sensor_player::Sample>>,
    /// When each attack's first packet went out (simulated seconds).
    pub attack_starts: Vec<Option<f64>>,
    /// The hosts' addresses and mean rates (diurnal factor 1).
    pub hosts: Vec<(IpAddr, f64)>,
    pub polls: u64,
    pub datagrams: u64,
    pub samples: u64,
}

fn decoder() -> UserDecoder {
    UserDecoder::new(
        &[
            (SFLOW_PORT, TelemetryKind::Sflow),
            (IPFIX_PORT, TelemetryKind::Ipfix),
        ],
        &[],
        false,
    )
}

fn feed(decoder: &mut UserDecoder, d: &Datagram) {
    let (port, kind) = match d.format {
        Format::Sflow => (SFLOW_PORT, TelemetryKind::Sflow),
        Format::Ipfix => (IPFIX_PORT, TelemetryKind::Ipfix),
    };
    decoder.datagram(&Wire {
        src: IpAddr::V4(ROUTER_ADDR),
        src_port: ROUTER_PORT + d.router as u16,
        port,
        kind,
        payload: &d.payload,
    });
}

/// The samples the kernel would stream to `det`: only those of the
/// destinations it asked to watch.
fn watched_by(det: &Detector, samples: &[Sample]) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| det.watched().contains(&s.dst))
        .copied()
        .collect()
}

/// Plays `scenario` into the decoder and a detector per configuration,
/// polling every `poll_interval` of the first one on the simulated clock;
/// keeps the truth of the samples to the `keep` destinations.
pub fn replay(
    scenario: &Scenario,
    configs: &[DetectConfig],
    keep: &BTreeSet<IpAddr>,
) -> Result<Replay, Error> {
    let mut player = Player::new(scenario)?;
    let mut detectors = configs
        .iter()
        .map(|c| Detector::new(c.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let poll_ns = configs
        .first()
        .map_or(1_000_000_000, |c| c.poll_interval.as_nanos() as u64);
    let mut out = Replay {
        decisions: vec![Decisions::default(); detectors.len()],
        hosts: player
            .model()
            .hosts()
            .iter()
            .map(|h| (h.addr, h.pps))
            .collect(),
        ..Replay::default()
    };
    let mut dec = decoder();
    let poll =
        |detectors: &mut [Detector], now_ns: u64, dec: &mut UserDecoder, out: &mut Replay| {
            let samples = dec.take_samples();
            let now = Duration::from_nanos(now_ns);
            let mut watch = BTreeSet::new();
            for (det, d) in detectors.iter_mut().zip(out.decisions.iter_mut()) {
                let mine = watched_by(det, &samples);
                for e in det.poll(now, &dec.report.destinations, &mine) {
                    d.events.push((now.as_secs_f64(), e));
                }
                watch.extend(det.watched().iter().copied());
                d.stats = det.stats();
            }
            dec.set_watched(&watch);
            out.polls += 1;
            // As the daemon does: a quarter interval after a poll that left a
            // victim waiting for samples, the samples streamed since are
            // handed over and may start it (`Detector::between_polls`).
            detectors
                .iter()
                .any(Detector::samples_awaited)
                .then_some(now_ns + poll_ns / 4)
        };
    let between =
        |detectors: &mut [Detector], now_ns: u64, dec: &mut UserDecoder, out: &mut Replay| {
            let samples = dec.take_samples();
            let now = Duration::from_nanos(now_ns);
            for (det, d) in detectors.iter_mut().zip(out.decisions.iter_mut()) {
                let mine = watched_by(det, &samples);
                for e in det.between_polls(now, &mine) {
                    d.events.push((now.as_secs_f64(), e));
                }
            }
        };
    let mut early = poll(&mut detectors, 0, &mut dec, &mut out);
    let mut next = poll_ns;
    // Bounded: the player ends after the scenario's ticks.
    while let Some(batch) = player.next_tick() {
        for d in &batch {
            while d.time_ns >= next || early.is_some_and(|t| d.time_ns >= t) {
                match early {
                    Some(t) if t < next => {
                        between(&mut detectors, t, &mut dec, &mut out);
                        early = None;
                    }
                    _ => {
                        early = poll(&mut detectors, next, &mut dec, &mut out);
                        next += poll_ns;
                    }
                }
            }
            feed(&mut dec, d);
            out.datagrams += 1;
            out.samples += d.truth.samples.len() as u64;
            for s in &d.truth.samples {
                if keep.contains(&s.packet.dst) {
                    out.truth.entry(s.packet.dst).or_default().push(*s);
                }
            }
        }
    }
    poll(&mut detectors, next, &mut dec, &mut out);
    out.attack_starts = (0..scenario.attacks.len())
        .map(|i| {
            player
                .model()
                .first_packet_ns(Origin::Attack(i as u32))
                .map(|ns| ns as f64 / 1e9)
        })
        .collect();
    Ok(out)
}

/// A true packet as the fingerprint sees a sample of it.
pub fn as_sample(p: &packet::Packet) -> Sample {
    let ports = matches!(p.proto, packet::TCP | packet::UDP);
    Sample {
        dst: p.dst,
        src: p.src,
        protocol: p.proto,
        src_port: if ports { p.src_port } else { 0 },
        dst_port: if ports { p.dst_port } else { 0 },
        tcp_flags: if p.proto == packet::TCP {
            p.tcp_flags
        } else {
            0
        },
        // The player keeps an ICMP packet's type where TCP has its flags.
        icmp_type: matches!(p.proto, packet::ICMP | packet::ICMPV6).then_some(p.tcp_flags),
        fragment: false,
        later_fragment: false,
        packet_len: u16::try_from(p.ip_len).unwrap_or(u16::MAX),
        packets: 1,
        bytes: u64::from(p.ip_len),
        sampled: 1,
    }
}
