//! Flash crowds: a host's crossing whose traffic is shaped like the host's
//! normal traffic, judged on what its samples make sure of.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;

use super::Detector;
use crate::detect::{
    Fingerprint, FlowMatch, Metric, NormalBasis, TrafficClass, chance, fingerprint, meter::Table,
};

/// What a host's crossing is, judged on its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// No crowd test applies: no learnt baseline, a crossed threshold that
    /// is static or over its ceiling, or no normal samples to compare with.
    NotJudged,
    /// Shaped like the host's normal traffic: a flash crowd, not reported.
    Crowd,
    /// Unlike the host's normal traffic, said once: it waits for fresh
    /// samples. The verdict is taken at every poll of a crowd, and a
    /// hundred tests at 99.9 % each let one chance concentration through;
    /// twice on samples a fingerprint window apart, it does not happen.
    Unlike,
    /// Unlike it, said again on fresh samples: an attack.
    Attack,
}

impl Detector {
    /// Whether a host's crossing is a flash crowd: its group has a learnt
    /// baseline, every crossed threshold is adaptive and below its ceiling,
    /// and the best match for the surge, cut to what its samples make sure
    /// of, would hit most of the host's measured normal traffic. Unlike it
    /// is an attack once said twice, a fingerprint window apart, with no
    /// crowd verdict between.
    pub(super) fn crowd_verdict(
        &mut self,
        victim: IpNet,
        fp: &Fingerprint,
        signals: &Table,
        crossed: &[[bool; 2]; 7],
        now: Duration,
    ) -> Verdict {
        let Some(similarity) = self.crowd_similarity_bar(victim, fp, signals, crossed) else {
            return Verdict::NotJudged;
        };
        if self.crowd_similarity(victim, &fp.flow) >= similarity {
            self.unlike_since.remove(&victim);
            return Verdict::Crowd;
        }
        if self.confidence_z().is_none() {
            // Point estimates: nothing was tested, nothing to say again.
            return Verdict::Attack;
        }
        let window = self.cfg.fingerprint.window;
        match self.unlike_since.get(&victim) {
            Some(&since) if now >= since + window => Verdict::Attack,
            Some(_) => Verdict::Unlike,
            None => {
                self.unlike_since.insert(victim, now);
                Verdict::Unlike
            }
        }
    }

    /// The group's `flash_crowd_similarity` when a crossing may be a flash
    /// crowd at all, `None` when no crowd test applies (see [`Verdict`]).
    fn crowd_similarity_bar(
        &self,
        victim: IpNet,
        fp: &Fingerprint,
        signals: &Table,
        crossed: &[[bool; 2]; 7],
    ) -> Option<f64> {
        let h = self.hosts.get(&victim.network())?;
        let (Some(bc), Some(a)) = (&self.groups[h.group].baseline, &h.adaptive) else {
            return None;
        };
        if bc.flash_crowd_similarity <= 0.0
            || a.baseline.learnt_secs() < bc.window.as_secs_f64()
            || fp.normal_basis != NormalBasis::Samples
        {
            return None;
        }
        let within = TrafficClass::ALL.iter().all(|&c| {
            Metric::BOTH.iter().all(|&m| {
                let (i, j) = (c.index(), m.index());
                !crossed[i][j]
                    || (bc.floor.limit(c).get(m).is_some()
                        && bc
                            .ceiling
                            .limit(c)
                            .get(m)
                            .is_none_or(|ceil| signals[i][j] < ceil))
            })
        });
        within.then_some(bc.flash_crowd_similarity)
    }

    /// The share of the host's normal samples that `flow` hits once it is
    /// cut to what the surge's samples make sure of ([`chance::sure_part`]):
    /// what a few samples share by chance (client ports, a flags value half
    /// the normal packets carry, a length range fitted to tens of samples,
    /// which misses a third of the same traffic) is left out. What the
    /// packets are, sure from their samples, tells a crowd from an attack;
    /// an attack that copies all of that is a crowd to any filter too.
    ///
    /// With `detect.confidence` off (point estimates) nothing is tested:
    /// the match without its length range is judged, as the samples give it.
    fn crowd_similarity(&self, victim: IpNet, flow: &FlowMatch) -> f64 {
        let normal = self.normal(victim);
        let judged = if self.confidence_z().is_some() {
            let evidence = self.evidence(victim, None);
            chance::sure_part(
                flow,
                &evidence,
                &normal,
                self.cfg.confidence,
                seed(victim, evidence.len()),
            )
        } else {
            FlowMatch {
                packet_length: None,
                ..flow.clone()
            }
        };
        fingerprint::share(&judged, &normal).unwrap_or(0.0)
    }
}

/// A resampling seed of the victim and its evidence: the same inputs give
/// the same verdict, different crowds different draws.
fn seed(victim: IpNet, samples: usize) -> u64 {
    let addr = match victim.addr() {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    (addr as u64) ^ ((addr >> 64) as u64) ^ (samples as u64).rotate_left(32)
}
