//! The player's random numbers: xoshiro256++ seeded through SplitMix64, and
//! the few distributions the model draws from.
//!
//! Our own, rather than `rand`'s `StdRng`, because a scenario's seed must give
//! the same datagrams forever: `StdRng` documents that its output may change
//! between releases, and the truth files and tests here pin exact streams.

/// A deterministic generator (xoshiro256++, Blackman and Vigna 2019).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed`; `stream` separates independent uses of one
    /// seed (each component draws from its own stream, so adding an attack
    /// does not change the normal traffic).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xd134_2543_de82_ef95);
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Self { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[0]
            .wrapping_add(self.s[3])
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe under `ln`.
    pub fn f64_open0(&mut self) -> f64 {
        1.0 - self.f64()
    }

    /// Uniform in 0..n (n > 0), without modulo bias (Lemire).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Standard normal (Box-Muller; one of the pair is discarded, which is
    /// simpler than caching and cheap enough here).
    pub fn normal(&mut self) -> f64 {
        let u = self.f64_open0();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Geometric on {1, 2, ...} with success probability `p` in (0, 1]:
    /// the number of packets up to and including the next sampled one when
    /// each is sampled independently with probability `p`.
    pub fn geometric(&mut self, p: f64) -> u64 {
        if p >= 1.0 {
            return 1;
        }
        // Inversion: P(X > k) = (1-p)^k.
        let k = (self.f64_open0().ln() / (-p).ln_1p()).floor();
        if k >= (u64::MAX / 2) as f64 {
            u64::MAX / 2
        } else {
            k as u64 + 1
        }
    }

    /// Poisson with mean `mean` (>= 0): inversion below 10, else Hörmann's
    /// PTRS transformed rejection (1993), exact for every mean.
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 || !mean.is_finite() {
            return 0;
        }
        if mean < 10.0 {
            // Sequential inversion; expected mean + 1 steps.
            let mut k = 0u64;
            let mut p = (-mean).exp();
            let mut cdf = p;
            let u = self.f64();
            while u > cdf && k < 1000 {
                k += 1;
                p *= mean / k as f64;
                cdf += p;
            }
            return k;
        }
        let slam = mean.sqrt();
        let loglam = mean.ln();
        let b = 0.931 + 2.53 * slam;
        let a = -0.059 + 0.02483 * b;
        let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
        let vr = 0.9277 - 3.6224 / (b - 2.0);
        // Accepts with probability > 0.9 per round; bounded for safety.
        for _ in 0..10_000 {
            let u = self.f64() - 0.5;
            let v = self.f64_open0();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + mean + 0.43).floor();
            if us >= 0.07 && v <= vr {
                return k as u64;
            }
            if k < 0.0 || (us < 0.013 && v > us) {
                continue;
            }
            if (v * inv_alpha / (a / (us * us) + b)).ln() <= -mean + k * loglam - ln_gamma(k + 1.0)
            {
                return k as u64;
            }
        }
        // Unreachable in practice (probability < 0.1^10000).
        mean.round() as u64
    }
}

/// ln Γ(x) for x >= 1 (Stirling series; exact to double precision for the
/// integers PTRS evaluates it at, with a table below 10).
fn ln_gamma(x: f64) -> f64 {
    if x < 10.0 {
        let mut f = 1.0f64;
        let mut k = 2.0;
        while k < x {
            f *= k;
            k += 1.0;
        }
        return f.ln();
    }
    let x2 = x * x;
    (x - 0.5) * x.ln() - x + 0.5 * std::f64::consts::TAU.ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x * x2)
        + 1.0 / (1260.0 * x2 * x2 * x)
}

/// Vose's alias table: draws an index with probability proportional to its
/// weight in O(1) (which host a normal sample, which source an attack
/// packet comes from).
#[derive(Debug, Clone)]
pub struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    /// Panics on an empty or all-zero table (the model never builds one).
    pub fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        assert!(
            n > 0 && total > 0.0,
            "an alias table needs a positive weight"
        );
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        Self { prob, alias }
    }

    pub fn draw(&self, rng: &mut Rng) -> usize {
        let i = rng.below(self.prob.len() as u64) as usize;
        if rng.f64() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// Zipf weights 1/k^s for k = 1..=n.
pub fn zipf_weights(n: usize, s: f64) -> Vec<f64> {
    (1..=n).map(|k| (k as f64).powf(-s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (
            m,
            xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0),
        )
    }

    #[test]
    fn poisson_has_its_mean_and_variance_on_both_branches() {
        let mut rng = Rng::new(7, 0);
        for mean in [0.3, 4.0, 25.0, 1000.0, 250_000.0] {
            let xs: Vec<f64> = (0..20_000).map(|_| rng.poisson(mean) as f64).collect();
            let (m, v) = mean_var(&xs);
            // Standard error of the mean is sqrt(mean/20000); 5 of them.
            let se = (mean / 20_000.0).sqrt();
            assert!((m - mean).abs() < 5.0 * se, "mean {mean}: got {m}");
            // Variance of a Poisson equals its mean (within 6 %).
            assert!((v / mean - 1.0).abs() < 0.06, "mean {mean}: variance {v}");
        }
    }

    #[test]
    fn geometric_skips_have_mean_one_over_p() {
        let mut rng = Rng::new(8, 0);
        let p = 1.0 / 1000.0;
        let xs: Vec<f64> = (0..50_000).map(|_| rng.geometric(p) as f64).collect();
        let (m, v) = mean_var(&xs);
        // Mean 1/p, variance (1-p)/p^2.
        assert!((m * p - 1.0).abs() < 0.02, "{m}");
        assert!((v * p * p / (1.0 - p) - 1.0).abs() < 0.05, "{v}");
        assert!(xs.iter().all(|&x| x >= 1.0));
        assert_eq!(rng.geometric(1.0), 1);
    }

    #[test]
    fn alias_draws_follow_the_weights() {
        let mut rng = Rng::new(9, 0);
        let w = [1.0, 0.0, 3.0, 6.0];
        let alias = Alias::new(&w);
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            counts[alias.draw(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        for (c, w) in counts.iter().zip(w) {
            let expect = 100_000.0 * w / 10.0;
            assert!(
                (*c as f64 - expect).abs() < 5.0 * expect.sqrt() + 1.0,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn streams_of_one_seed_differ_and_repeat() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(1, 0);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(1, 0);
                move |_| r.next_u64()
            })
            .collect();
        let c = Rng::new(1, 1).next_u64();
        assert_eq!(a, b);
        assert_ne!(a[0], c);
    }
}
