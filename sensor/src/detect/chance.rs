//! Chance: which components of a learnt match a handful of samples make
//! sure of.
//!
//! A match is learnt greedily from the evidence ([`super::fingerprint`]):
//! each component takes the values the evidence carries most. From a few
//! samples that always finds something: six samples of a web crowd have
//! six client ports, of which four "cover" the surge once the background
//! is credited, or share a flags value that half the normal packets carry.
//! Judged on such a match, a crowd looks unlike the host's normal traffic
//! and is taken for an attack.
//!
//! So before a surge is compared with normal traffic, each component is
//! tested against chance: would as many samples drawn from the host's
//! normal traffic, narrowed the same way (the same number of values, the
//! ones they carry most), concentrate at least as much on their values?
//! The answer is a resampling test (the selection of the values after
//! seeing the samples is what an analytic binomial test would miss); a
//! component counts only when chance gives its concentration at most
//! `1 - confidence` of the time (the detector's `detect.confidence`, the
//! same bar a crossing must clear: the verdict is taken again every poll
//! of a crowd, so a per-test 1 % would let some crowd through). Components
//! are tested in the order they were learnt, each within what the
//! components kept before it match.

use std::net::IpAddr;

use ipnet::IpNet;

use edge_sensor_common::proto::ipproto;

use super::{FlowMatch, Sample};

/// Most resamples per component: p-values down to 1/4001, so the default
/// confidence (99.9 %) is resolved four times over.
const MAX_RESAMPLES: usize = 4000;

/// Samples a test looks at (evenly thinned beyond): a concentration that
/// 256 samples do not make sure of is not worth a crowd's verdict, and it
/// bounds the cost (components x resamples x samples).
const MAX_SAMPLES: usize = 256;

/// The components of `flow` that the `evidence` makes sure of against the
/// `normal` samples.
/// A component is sure when chance gives its concentration at most
/// `1 - confidence` of the time; `seed` makes the resampling repeatable (a
/// decision replays the same).
pub fn sure_part(
    flow: &FlowMatch,
    evidence: &[&Sample],
    normal: &[&Sample],
    confidence: f64,
    seed: u64,
) -> FlowMatch {
    let test = Test::new(confidence);
    let mut kept = FlowMatch::any(flow.destination);
    let mut rng = SplitMix(seed);
    for c in Component::LEARNT_ORDER {
        if !c.present(flow) {
            continue;
        }
        let domain = thinned(evidence.iter().copied().filter(|s| kept.matches(s)));
        let background: Vec<&Sample> = normal.iter().copied().filter(|s| kept.matches(s)).collect();
        let mut with = kept.clone();
        c.copy(flow, &mut with);
        let observed = domain.iter().filter(|s| with.matches(s)).count();
        let sure = test.is_sure(c, flow, observed, domain.len(), &background, &mut rng);
        if sure {
            kept = with;
        }
    }
    kept
}

/// The resampling test at one confidence.
struct Test {
    resamples: usize,
    /// Resamples at least as concentrated as the evidence that still leave
    /// it sure.
    allowed: usize,
}

impl Test {
    fn new(confidence: f64) -> Self {
        let alpha = (1.0 - confidence).clamp(1.0 / MAX_RESAMPLES as f64, 0.5);
        let resamples = ((4.0 / alpha).ceil() as usize).clamp(100, MAX_RESAMPLES);
        // p = (1 + as_often) / (1 + resamples) <= alpha.
        let allowed = (alpha * (1 + resamples) as f64 - 1.0).floor().max(0.0) as usize;
        Self { resamples, allowed }
    }

    /// Whether `observed` of `n` samples matching component `c` of `flow`
    /// is more than chance gives `n` draws from `background`.
    fn is_sure(
        &self,
        c: Component,
        flow: &FlowMatch,
        observed: usize,
        n: usize,
        background: &[&Sample],
        rng: &mut SplitMix,
    ) -> bool {
        if observed == 0 {
            return false;
        }
        if background.is_empty() {
            // Normal traffic never carries what the kept components match:
            // whatever the evidence has there is not normal.
            return true;
        }
        let mut draws: Vec<&Sample> = Vec::with_capacity(n);
        let mut as_often = 0;
        for _ in 0..self.resamples {
            draws.clear();
            draws.extend((0..n).map(|_| background[rng.below(background.len())]));
            if c.best(flow, &draws) >= observed {
                as_often += 1;
                if as_often > self.allowed {
                    // Chance does it too often already (the common case
                    // in a crowd: decided in a few draws).
                    return false;
                }
            }
        }
        true
    }
}

/// At most [`MAX_SAMPLES`], every k-th.
fn thinned<'a>(samples: impl Iterator<Item = &'a Sample>) -> Vec<&'a Sample> {
    let all: Vec<&Sample> = samples.collect();
    if all.len() <= MAX_SAMPLES {
        return all;
    }
    let step = all.len().div_ceil(MAX_SAMPLES);
    all.into_iter().step_by(step).collect()
}

/// The components of a match, in the order they are learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component {
    Protocols,
    SourcePorts,
    DestinationPorts,
    TcpFlags,
    IcmpTypes,
    PacketLength,
    Fragment,
    Source,
}

impl Component {
    const LEARNT_ORDER: [Self; 8] = [
        Self::Protocols,
        Self::SourcePorts,
        Self::DestinationPorts,
        Self::TcpFlags,
        Self::IcmpTypes,
        Self::PacketLength,
        Self::Fragment,
        Self::Source,
    ];

    fn present(self, m: &FlowMatch) -> bool {
        match self {
            Self::Protocols => !m.protocols.is_empty(),
            Self::SourcePorts => !m.source_ports.is_empty(),
            Self::DestinationPorts => !m.destination_ports.is_empty(),
            Self::TcpFlags => m.tcp_flags.is_some(),
            Self::IcmpTypes => !m.icmp_types.is_empty(),
            Self::PacketLength => m.packet_length.is_some(),
            Self::Fragment => m.fragment.is_some(),
            Self::Source => m.source.is_some(),
        }
    }

    fn copy(self, from: &FlowMatch, to: &mut FlowMatch) {
        match self {
            Self::Protocols => to.protocols.clone_from(&from.protocols),
            Self::SourcePorts => to.source_ports.clone_from(&from.source_ports),
            Self::DestinationPorts => to.destination_ports.clone_from(&from.destination_ports),
            Self::TcpFlags => to.tcp_flags = from.tcp_flags,
            Self::IcmpTypes => to.icmp_types.clone_from(&from.icmp_types),
            Self::PacketLength => to.packet_length = from.packet_length,
            Self::Fragment => to.fragment = from.fragment,
            Self::Source => to.source = from.source,
        }
    }

    /// The most of `draws` a component of the same shape as `flow`'s
    /// matches, its values chosen after seeing them as learning does: the
    /// `k` values they carry most for a list, the densest length interval
    /// of the same width, the heaviest prefix of the same length for a
    /// source, the fixed predicate otherwise (a SYN mask, a fragment kind).
    fn best(self, flow: &FlowMatch, draws: &[&Sample]) -> usize {
        let ported = |s: &Sample| s.has_ports();
        match self {
            Self::Protocols => top(draws, flow.protocols.len(), |s| {
                Some(u128::from(s.protocol))
            }),
            Self::SourcePorts => top(draws, flow.source_ports.len(), |s| {
                ported(s).then_some(u128::from(s.src_port))
            }),
            Self::DestinationPorts => top(draws, flow.destination_ports.len(), |s| {
                ported(s).then_some(u128::from(s.dst_port))
            }),
            Self::TcpFlags => match flow.tcp_flags {
                Some(f) if f.mask == 0xff => top(draws, 1, |s| {
                    (ported(s) && s.protocol == ipproto::TCP).then_some(u128::from(s.tcp_flags))
                }),
                _ => matching(self, flow, draws),
            },
            Self::IcmpTypes => top(draws, flow.icmp_types.len(), |s| {
                s.icmp_type.map(u128::from)
            }),
            Self::PacketLength => {
                let Some(r) = flow.packet_length else {
                    return 0;
                };
                densest(draws, r.max - r.min)
            }
            Self::Fragment => matching(self, flow, draws),
            Self::Source => {
                let Some(net) = flow.source else { return 0 };
                top(draws, 1, |s| {
                    IpNet::new(s.src, net.prefix_len())
                        .ok()
                        .map(|n| match n.trunc().addr() {
                            IpAddr::V4(a) => u128::from(u32::from(a)),
                            IpAddr::V6(a) => u128::from(a),
                        })
                })
            }
        }
    }
}

/// How many of `draws` component `c` of `flow` matches as it is.
fn matching(c: Component, flow: &FlowMatch, draws: &[&Sample]) -> usize {
    let mut only = FlowMatch::any(flow.destination);
    c.copy(flow, &mut only);
    draws.iter().filter(|s| only.matches(s)).count()
}

/// How many of `draws` carry one of the `k` values of `key` they carry
/// most.
fn top(draws: &[&Sample], k: usize, key: impl Fn(&Sample) -> Option<u128>) -> usize {
    let mut keys: Vec<u128> = draws.iter().filter_map(|s| key(s)).collect();
    keys.sort_unstable();
    let mut runs: Vec<usize> = keys.chunk_by(|a, b| a == b).map(<[u128]>::len).collect();
    runs.sort_unstable_by(|a, b| b.cmp(a));
    runs.iter().take(k).sum()
}

/// The most of `draws` whose packet lengths fit in one interval `width`
/// wide.
fn densest(draws: &[&Sample], width: u16) -> usize {
    let mut lens: Vec<u16> = draws.iter().map(|s| s.packet_len).collect();
    lens.sort_unstable();
    let (mut lo, mut best) = (0, 0);
    for hi in 0..lens.len() {
        while lens[hi] - lens[lo] > width {
            lo += 1;
        }
        best = best.max(hi + 1 - lo);
    }
    best
}

/// splitmix64 (Steele, Lea, Flood 2014): the resampling needs repeatable
/// uniform draws and nothing more; a generator crate would add a
/// dependency to the detector for five lines.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is below 2^-40 here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::fingerprint::{TcpFlagsMatch, tests::sample};
    use edge_sensor_common::proto::tcp_flags;

    fn web(i: u32) -> Sample {
        // Clients' requests: random ports, half bare ACKs.
        let mut s = sample(
            &format!("203.0.113.{}", i % 200 + 1),
            ipproto::TCP,
            (32768 + i * 7919 % 28000) as u16,
            443,
            52,
        );
        s.tcp_flags = if i.is_multiple_of(2) {
            tcp_flags::ACK
        } else {
            tcp_flags::ACK | 0x08
        };
        s
    }

    fn flow(m: impl FnOnce(&mut FlowMatch)) -> FlowMatch {
        let mut f = FlowMatch::any(web(0).dst.into());
        m(&mut f);
        f
    }

    #[test]
    fn client_ports_and_a_common_flag_from_a_few_samples_are_chance() {
        let normal: Vec<Sample> = (0..2000).map(web).collect();
        let normal: Vec<&Sample> = normal.iter().collect();
        let crowd: Vec<Sample> = (5000..5008).map(web).collect();
        let crowd: Vec<&Sample> = crowd.iter().collect();
        let learnt = flow(|f| {
            f.protocols = vec![ipproto::TCP];
            f.source_ports = crowd[..4].iter().map(|s| s.src_port).collect();
            f.destination_ports = vec![443];
            f.tcp_flags = Some(TcpFlagsMatch {
                value: tcp_flags::ACK,
                mask: 0xff,
            });
        });
        let sure = sure_part(&learnt, &crowd, &normal, 0.999, 1);
        assert!(sure.source_ports.is_empty(), "{sure}");
        assert!(sure.tcp_flags.is_none(), "{sure}");
    }

    #[test]
    fn a_flood_makes_its_ports_and_flags_sure() {
        let normal: Vec<Sample> = (0..2000).map(web).collect();
        let normal: Vec<&Sample> = normal.iter().collect();
        // 30 samples: 4 source ports, all bare ACKs, with 6 normal ones.
        let mut evidence: Vec<Sample> = (0..30)
            .map(|i| {
                let mut s = sample(
                    "198.51.100.7",
                    ipproto::TCP,
                    [1000, 2000, 3000, 4000][i % 4],
                    443,
                    40,
                );
                s.tcp_flags = tcp_flags::ACK;
                s
            })
            .collect();
        evidence.extend((9000..9006).map(web));
        let evidence: Vec<&Sample> = evidence.iter().collect();
        let learnt = flow(|f| {
            f.protocols = vec![ipproto::TCP];
            f.source_ports = vec![1000, 2000, 3000, 4000];
            f.tcp_flags = Some(TcpFlagsMatch {
                value: tcp_flags::ACK,
                mask: 0xff,
            });
        });
        let sure = sure_part(&learnt, &evidence, &normal, 0.999, 1);
        assert_eq!(sure.source_ports, vec![1000, 2000, 3000, 4000], "{sure}");
        assert!(sure.tcp_flags.is_some(), "{sure}");
        // The protocol is what normal traffic carries too: not sure, and
        // it does not matter (the host's traffic is all TCP).
        assert!(sure.protocols.is_empty(), "{sure}");
    }
}
