//! The packet sampler of one data source (an interface of a router), as
//! the sFlow specification (§4.2.2, "Random sampling") has agents do it: a
//! skip count down to the next sampled packet, drawn afresh after each
//! sample, a sample pool counting every packet that could have been
//! sampled, and a drop counter for samples the agent had no resources for.
//!
//! The skip is drawn from a geometric distribution with mean N (the default):
//! that is exactly an independent 1-in-N coin per packet (it is memoryless),
//! so the number of samples among `n` packets is Binomial(n, 1/N) however the
//! packets are split into calls, and `N × samples` is an unbiased estimate of
//! `n` with variance `n (N - 1)`. [`SkipKind::Uniform`] draws it uniformly
//! from 1..=2N-1 instead, as the sFlow reference agent does: also unbiased,
//! with a smaller variance.
//!
//! Cost: [`Sampler::offer`] is O(1 + samples), never O(packets): a 1 Mpps
//! stream at 1:1000 costs a thousand draws a second.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// How the skip to the next sample is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// Geometric with mean N: a Bernoulli(1/N) trial per packet.
    #[default]
    Geometric,
    /// Uniform on 1..=2N-1 (mean N), the sFlow reference agent's choice.
    Uniform,
}

/// One data source's sampler state.
#[derive(Debug, Clone)]
pub struct Sampler {
    rate: u32,
    kind: SkipKind,
    /// Packets until (and including) the next sampled one.
    skip: u64,
    /// Packets seen (sFlow `sample_pool`, kept as u64; sent modulo 2^32).
    pub pool: u64,
    /// Samples taken, dropped or not.
    pub taken: u64,
    /// Samples the agent could not export (sFlow `drops`).
    pub drops: u64,
}

impl Sampler {
    /// A sampler at 1:`rate` (rate >= 1).
    pub fn new(rate: u32, kind: SkipKind, rng: &mut Rng) -> Self {
        let rate = rate.max(1);
        let mut s = Self {
            rate,
            kind,
            skip: 0,
            pool: 0,
            taken: 0,
            drops: 0,
        };
        s.skip = s.draw(rng);
        s
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    fn draw(&self, rng: &mut Rng) -> u64 {
        match self.kind {
            SkipKind::Geometric => rng.geometric(1.0 / f64::from(self.rate)),
            SkipKind::Uniform => 1 + rng.below(2 * u64::from(self.rate) - 1),
        }
    }

    /// `packets` more packets pass; `on_sample(i)` is called for each sampled
    /// one with its index `i` in 0..packets, in order.
    pub fn offer(&mut self, packets: u64, rng: &mut Rng, mut on_sample: impl FnMut(u64)) {
        self.pool += packets;
        let mut at = 0u64;
        // Each round consumes at least one packet: bounded by `packets`,
        // and by the samples in practice.
        while packets - at >= self.skip {
            at += self.skip;
            self.taken += 1;
            on_sample(at - 1);
            self.skip = self.draw(rng);
        }
        self.skip -= packets - at;
    }

    /// How many of `packets` would be sampled (for statistics tests).
    pub fn count(&mut self, packets: u64, rng: &mut Rng) -> u64 {
        let mut n = 0;
        self.offer(packets, rng, |_| n += 1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_counts_every_packet_and_indices_are_in_range() {
        let mut rng = Rng::new(3, 0);
        let mut s = Sampler::new(10, SkipKind::Geometric, &mut rng);
        let mut got = Vec::new();
        for chunk in [0u64, 1, 7, 1000, 3] {
            s.offer(chunk, &mut rng, |i| {
                assert!(i < chunk);
                got.push(i);
            });
        }
        assert_eq!(s.pool, 1011);
        assert_eq!(s.taken as usize, got.len());
        assert!(!got.is_empty());
    }

    #[test]
    fn rate_one_samples_every_packet() {
        let mut rng = Rng::new(3, 0);
        for kind in [SkipKind::Geometric, SkipKind::Uniform] {
            let mut s = Sampler::new(1, kind, &mut rng);
            let mut idx = Vec::new();
            s.offer(5, &mut rng, |i| idx.push(i));
            assert_eq!(idx, vec![0, 1, 2, 3, 4]);
        }
    }
}
