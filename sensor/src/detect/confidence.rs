//! How sure a sampled rate is: the one-sided lower confidence bound of a
//! rate estimated from `k` samples.
//!
//! A router sampling 1:N exports about one packet in N; the sensor counts
//! each sample as N packets. Over an interval of `T` seconds with `k`
//! samples the estimate is `k N / T`, and `k` is (to a very good
//! approximation: independent 1-in-N coins over many packets) a Poisson
//! draw, so its relative error is about `1 / sqrt(k)`. Three samples at
//! 1:4096 in a second "are" 12 kpps, give or take 100 %.
//!
//! The detector confirms a crossing only when the rate's lower bound at the
//! configured confidence `c` (`detect.confidence`, default 0.999) is at or
//! above the threshold:
//!
//! ```text
//! rate_low = N * lambda_low(k, c) / T
//! lambda_low(k, c) = k * (1 - 1/(9k) - z_c / (3 sqrt(k)))^3     (0 if negative)
//! ```
//!
//! `lambda_low` is the Wilson–Hilferty form of the exact Poisson bound
//! `chi2_{2k}(1 - c) / 2`: the smallest mean under which seeing `k` or more
//! samples still has probability `1 - c`; `z_c` is the standard normal
//! quantile of `c` (3.09 at 0.999). It is within 1 % of the exact bound from
//! 20 samples on and below it (more cautious) for fewer.

/// The standard normal quantile: `P(Z <= z) = p`, for `p` in (0, 1).
///
/// Acklam's rational approximation (relative error below 1.2e-9), which is
/// far below anything a sampled rate can tell.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p.is_nan() || p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The one-sided lower bound of a Poisson mean after seeing `k` (possibly
/// fractional: an effective count) at normal quantile `z` (see the module
/// documentation). 0 for no samples.
pub fn poisson_lower(k: f64, z: f64) -> f64 {
    if k.is_nan() || k <= 0.0 {
        return 0.0;
    }
    let base = 1.0 - 1.0 / (9.0 * k) - z / (3.0 * k.sqrt());
    if base <= 0.0 {
        0.0
    } else {
        k * base * base * base
    }
}

/// The lower bound of a rate measured as `estimate` over `k` samples: the
/// estimate scaled by `poisson_lower(k) / k`. Without samples it is 0.
pub fn rate_lower(estimate: f64, k: f64, z: f64) -> f64 {
    if k <= 0.0 || estimate <= 0.0 {
        return 0.0;
    }
    estimate * poisson_lower(k, z) / k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `P(X >= k)` for `X ~ Poisson(lambda)`, summed exactly (k small).
    fn upper_tail(k: u32, lambda: f64) -> f64 {
        let mut term = (-lambda).exp();
        let mut below = 0.0;
        for i in 0..k {
            below += term;
            term *= lambda / f64::from(i + 1);
        }
        1.0 - below
    }

    /// The exact bound: the mean under which `k` or more has probability
    /// `alpha` (bisection, 200 halvings).
    fn exact_lower(k: u32, alpha: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, f64::from(k));
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if upper_tail(k, mid) < alpha {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn normal_quantiles_are_the_textbook_ones() {
        for (p, z) in [
            (0.5, 0.0),
            (0.9, 1.281_551_565_5),
            (0.975, 1.959_963_985),
            (0.999, 3.090_232_306),
            (0.01, -2.326_347_874),
            (0.999_999, 4.753_424_309),
        ] {
            let got = normal_quantile(p);
            assert!((got - z).abs() < 1e-6, "quantile({p}) = {got}, want {z}");
        }
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
    }

    #[test]
    fn the_bound_is_the_exact_poisson_bound_or_more_cautious() {
        let z = normal_quantile(0.999);
        for k in [1u32, 2, 3, 5, 10, 20, 50, 100, 300] {
            let exact = exact_lower(k, 0.001);
            let wh = poisson_lower(f64::from(k), z);
            assert!(wh <= exact * 1.005, "k={k}: {wh} above the exact {exact}");
            if k >= 20 {
                assert!(
                    wh >= exact * 0.99,
                    "k={k}: {wh} far below the exact {exact}"
                );
            }
        }
        // The tabulated value: 10 events, 99.9 % one-sided lower limit 2.96
        // (chi2 with 20 degrees of freedom, 0.1 % quantile 5.921, halved).
        assert!((exact_lower(10, 0.001) - 2.96).abs() < 0.01);
    }

    #[test]
    fn a_bound_at_99_9_percent_is_wrong_about_one_time_in_a_thousand_or_less() {
        // Under a true mean of 20 samples, how often does the bound come out
        // above it? Sum the Poisson probabilities of the counts that do.
        let z = normal_quantile(0.999);
        let lambda: f64 = 20.0;
        let mut wrong = 0.0;
        let mut term = (-lambda).exp();
        for k in 0..200u32 {
            if k > 0 {
                term *= lambda / f64::from(k);
            }
            if poisson_lower(f64::from(k), z) >= lambda {
                wrong += term;
            }
        }
        assert!(wrong <= 0.001, "{wrong}");
        assert!(wrong > 0.0002, "{wrong}: the bound is needlessly loose");
    }

    #[test]
    fn three_samples_at_1_4096_are_no_evidence_of_10_kpps_and_a_flood_is() {
        let z = normal_quantile(0.999);
        // 3 samples in one second at 1:4096: 12 288 pps estimated, but the
        // rate could be ~600 pps.
        let low = rate_lower(3.0 * 4096.0, 3.0, z);
        assert!(low < 1000.0, "{low}");
        // 1 Mpps at 1:4096: 244 samples a second, bounded at ~820 kpps.
        let low = rate_lower(1e6, 1e6 / 4096.0, z);
        assert!((780e3..850e3).contains(&low), "{low}");
        assert_eq!(rate_lower(5.0, 0.0, z), 0.0);
        assert_eq!(poisson_lower(0.5, z), 0.0);
    }
}
