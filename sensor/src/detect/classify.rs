//! Naming an attack from which thresholds it crossed, the class mix of its
//! counters and, for amplification, the source ports of its samples.

use std::{collections::BTreeMap, fmt};

use edge_sensor_common::proto::ipproto;
use serde::{Deserialize, Serialize};

use super::{
    config::{Metric, TrafficClass, amplification_service},
    fingerprint::Sample,
    meter::Table,
};

/// The kinds of attack the detector names (sFlow-RT ddos-protect's seven,
/// with amplification split by service through its source port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AttackClass {
    /// Mixed traffic, no class dominant.
    IpFlood,
    UdpFlood,
    /// UDP from one abused service's source port (reflection).
    UdpAmplification {
        port: u16,
    },
    /// TCP SYN without ACK.
    TcpSynFlood,
    /// Other TCP (ACK, RST, PSH floods, or mixed flags).
    TcpFlood,
    IcmpFlood,
    IpFragmentation,
}

impl fmt::Display for AttackClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IpFlood => f.write_str("ip_flood"),
            Self::UdpFlood => f.write_str("udp_flood"),
            Self::UdpAmplification { port } => match amplification_service(*port) {
                Some(name) => write!(f, "udp_amplification({name}/{port})"),
                None => write!(f, "udp_amplification({port})"),
            },
            Self::TcpSynFlood => f.write_str("tcp_syn_flood"),
            Self::TcpFlood => f.write_str("tcp_flood"),
            Self::IcmpFlood => f.write_str("icmp_flood"),
            Self::IpFragmentation => f.write_str("ip_fragmentation"),
        }
    }
}

/// What classification looks at.
pub struct Evidence<'a> {
    /// Which class and metric crossed its threshold (`crossed[class][metric]`).
    pub crossed: [[bool; 2]; 7],
    /// The rates compared with thresholds.
    pub signals: &'a Table,
    /// The attack's samples (may be empty), mixed with a `background`
    /// share of normal traffic that `normal` samples show, when known.
    pub samples: &'a [&'a Sample],
    pub normal: Option<&'a [&'a Sample]>,
    pub background: f64,
    pub min_samples: usize,
    pub dominant_share: f64,
    pub amplification_ports: &'a [u16],
}

/// Names the attack. A class qualifies when its own threshold was crossed,
/// or when the whole-host threshold was and the class makes up the dominant
/// share of the traffic; the most specific qualifying class wins.
pub fn classify(e: &Evidence<'_>) -> AttackClass {
    let crossed = |c: TrafficClass| e.crossed[c.index()].iter().any(|&x| x);
    let all_crossed = crossed(TrafficClass::All);
    let share = |c: TrafficClass| {
        Metric::BOTH
            .iter()
            .map(|m| {
                let all = e.signals[TrafficClass::All.index()][m.index()];
                if all > 0.0 {
                    e.signals[c.index()][m.index()] / all
                } else {
                    0.0
                }
            })
            .fold(0.0, f64::max)
    };
    let qualifies = |c: TrafficClass| crossed(c) || (all_crossed && share(c) >= e.dominant_share);

    if qualifies(TrafficClass::TcpSyn) {
        return AttackClass::TcpSynFlood;
    }
    if qualifies(TrafficClass::Udp) {
        if let Some(port) = amplification_port(e) {
            return AttackClass::UdpAmplification { port };
        }
        if qualifies(TrafficClass::Fragment) {
            return AttackClass::IpFragmentation;
        }
        return AttackClass::UdpFlood;
    }
    if qualifies(TrafficClass::Fragment) {
        return AttackClass::IpFragmentation;
    }
    if qualifies(TrafficClass::Tcp) {
        return AttackClass::TcpFlood;
    }
    if qualifies(TrafficClass::Icmp) {
        return AttackClass::IcmpFlood;
    }
    AttackClass::IpFlood
}

/// The configured amplification port most of the attack's UDP comes from:
/// the source port whose share of the UDP samples with readable ports, less
/// the background's expected share, is the dominant share of the excess.
fn amplification_port(e: &Evidence<'_>) -> Option<u16> {
    let udp = |s: &&&Sample| s.protocol == ipproto::UDP && !s.later_fragment;
    if e.samples.iter().filter(udp).count() < e.min_samples {
        return None;
    }
    let total = |v: &[&Sample]| v.iter().map(|s| s.packets.max(1) as f64).sum::<f64>();
    let mut score: BTreeMap<u16, f64> = BTreeMap::new();
    let evidence_total = total(e.samples);
    for s in e.samples.iter().filter(udp) {
        *score.entry(s.src_port).or_default() += s.packets.max(1) as f64 / evidence_total;
    }
    if let Some(normal) = e.normal {
        let normal_total = total(normal);
        let bg = e.background.clamp(0.0, 0.9);
        for s in normal.iter().filter(udp) {
            if let Some(v) = score.get_mut(&s.src_port) {
                *v -= bg * s.packets.max(1) as f64 / normal_total;
            }
        }
    }
    // The attack's UDP: the evidence's, less the normal UDP in it. (Not the
    // sum of positive port scores: a background on random ports scatters
    // over keys that the normal samples do not hit exactly.)
    let udp_share = |v: &[&Sample]| {
        v.iter()
            .filter(udp)
            .map(|s| s.packets.max(1) as f64)
            .sum::<f64>()
            / total(v)
    };
    let excess = match e.normal {
        Some(normal) => udp_share(e.samples) - e.background.clamp(0.0, 0.9) * udp_share(normal),
        None => udp_share(e.samples),
    };
    let (port, w) = score
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))?;
    (e.amplification_ports.contains(&port) && w > 0.0 && w >= e.dominant_share * excess)
        .then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::meter::ZERO;

    fn evidence<'a>(
        signals: &'a Table,
        crossed: &[TrafficClass],
        samples: &'a [&'a Sample],
    ) -> Evidence<'a> {
        let mut c = [[false; 2]; 7];
        for x in crossed {
            c[x.index()][0] = true;
        }
        Evidence {
            crossed: c,
            signals,
            samples,
            normal: None,
            background: 0.0,
            min_samples: 3,
            dominant_share: 0.6,
            amplification_ports: &[53, 123],
        }
    }

    fn signals(pairs: &[(TrafficClass, f64)]) -> Table {
        let mut t = ZERO;
        for (c, v) in pairs {
            t[c.index()][0] = *v;
        }
        t
    }

    #[test]
    fn dominant_class_names_an_all_traffic_crossing() {
        use TrafficClass::*;
        let t = signals(&[(All, 100.0), (Udp, 90.0)]);
        assert_eq!(classify(&evidence(&t, &[All], &[])), AttackClass::UdpFlood);
        let t = signals(&[(All, 100.0), (Udp, 40.0), (Tcp, 40.0), (Icmp, 20.0)]);
        assert_eq!(classify(&evidence(&t, &[All], &[])), AttackClass::IpFlood);
        let t = signals(&[(All, 100.0), (Tcp, 95.0), (TcpSyn, 90.0)]);
        assert_eq!(
            classify(&evidence(&t, &[All], &[])),
            AttackClass::TcpSynFlood
        );
        let t = signals(&[(All, 100.0), (Tcp, 95.0), (TcpSyn, 10.0)]);
        assert_eq!(classify(&evidence(&t, &[All], &[])), AttackClass::TcpFlood);
        // A SYN threshold crossed under heavy normal traffic is still a SYN flood.
        let t = signals(&[(All, 1000.0), (Tcp, 950.0), (TcpSyn, 50.0)]);
        assert_eq!(
            classify(&evidence(&t, &[TcpSyn], &[])),
            AttackClass::TcpSynFlood
        );
        let t = signals(&[(All, 100.0), (Udp, 100.0), (Fragment, 100.0)]);
        assert_eq!(
            classify(&evidence(&t, &[All], &[])),
            AttackClass::IpFragmentation
        );
        let t = signals(&[(All, 100.0), (Icmp, 100.0)]);
        assert_eq!(
            classify(&evidence(&t, &[Icmp], &[])),
            AttackClass::IcmpFlood
        );
    }

    #[test]
    fn amplification_needs_a_dominant_configured_port() {
        use super::super::fingerprint::tests::sample;
        use TrafficClass::*;
        let t = signals(&[(All, 100.0), (Udp, 100.0)]);
        let ntp: Vec<Sample> = (0..5)
            .map(|i| sample("203.0.113.1", 17, 123, 1000 + i, 468))
            .collect();
        let refs: Vec<&Sample> = ntp.iter().collect();
        assert_eq!(
            classify(&evidence(&t, &[All], &refs)),
            AttackClass::UdpAmplification { port: 123 }
        );
        assert_eq!(
            AttackClass::UdpAmplification { port: 123 }.to_string(),
            "udp_amplification(ntp/123)"
        );
        // Too few samples: not named.
        assert_eq!(
            classify(&evidence(&t, &[All], &refs[..2])),
            AttackClass::UdpFlood
        );
        // A port not in the list is a plain UDP flood.
        let other: Vec<Sample> = (0..5)
            .map(|i| sample("203.0.113.1", 17, 4444, 1000 + i, 468))
            .collect();
        let refs: Vec<&Sample> = other.iter().collect();
        assert_eq!(
            classify(&evidence(&t, &[All], &refs)),
            AttackClass::UdpFlood
        );
    }
}
