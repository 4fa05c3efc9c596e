//! The sampler is statistically correct: over seeded runs, `N × samples`
//! estimates the packets offered without bias and with the variance its
//! skip distribution implies; the check itself rejects wrong samplers.

use edge_sensor_player::{
    rng::Rng,
    sampler::{Sampler, SkipKind},
};

/// Runs, packets per run, rate.
const RUNS: usize = 400;
const PACKETS: u64 = 300_000;
const RATE: u32 = 1000;

/// Checks estimates of `n` packets: the mean within 4 standard errors of `n`
/// and the sample variance within 30 % of `variance` (its standard error
/// over 400 runs is about 7 %). The chance a correct sampler fails is below
/// 1e-4 per check.
fn check(estimates: &[f64], n: f64, variance: f64) -> Result<(), String> {
    let r = estimates.len() as f64;
    let mean = estimates.iter().sum::<f64>() / r;
    let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (r - 1.0);
    let se = (variance / r).sqrt();
    if (mean - n).abs() > 4.0 * se {
        return Err(format!(
            "biased: mean {mean:.0}, want {n} ± {:.0}",
            4.0 * se
        ));
    }
    if !(0.7..1.3).contains(&(var / variance)) {
        return Err(format!("variance {var:.3e}, want {variance:.3e} ± 30 %"));
    }
    Ok(())
}

/// Estimates from `RUNS` seeded samplers, each offered `PACKETS` packets in
/// uneven chunks (as ticks of varying traffic offer them).
fn estimates(kind: SkipKind, rate: u32, skew: f64) -> Vec<f64> {
    (0..RUNS as u64)
        .map(|seed| {
            let mut rng = Rng::new(seed, 99);
            let mut chunks = Rng::new(seed, 100);
            let mut s = Sampler::new(rate, kind, &mut rng);
            let mut left = PACKETS;
            let mut samples = 0u64;
            // Bounded: each round offers at least one packet.
            while left > 0 {
                let n = (1 + chunks.below(5000)).min(left);
                samples += s.count(n, &mut rng);
                left -= n;
            }
            assert_eq!(s.pool, PACKETS);
            samples as f64 * f64::from(rate) * skew
        })
        .collect()
}

#[test]
fn geometric_skips_estimate_without_bias_with_binomial_variance() {
    // Binomial(n, 1/N) samples: Var(N × k) = n (N - 1).
    let n = PACKETS as f64;
    let e = estimates(SkipKind::Geometric, RATE, 1.0);
    check(&e, n, n * (f64::from(RATE) - 1.0)).unwrap();
}

#[test]
fn uniform_skips_estimate_without_bias_with_renewal_variance() {
    // A renewal process with skip mean N and variance ((2N-1)^2 - 1) / 12:
    // Var(k) ≈ n σ² / N³, so Var(N × k) ≈ n σ² / N.
    let n = PACKETS as f64;
    let big_n = f64::from(RATE);
    let sigma2 = ((2.0 * big_n - 1.0).powi(2) - 1.0) / 12.0;
    let e = estimates(SkipKind::Uniform, RATE, 1.0);
    check(&e, n, n * sigma2 / big_n).unwrap();
}

#[test]
fn the_check_rejects_a_biased_or_deterministic_sampler() {
    let n = PACKETS as f64;
    let var = n * (f64::from(RATE) - 1.0);
    // Scaling by 1.05 (a sampler reporting 1:1050 while sampling 1:1000).
    let biased = estimates(SkipKind::Geometric, RATE, 1.05);
    assert!(check(&biased, n, var).unwrap_err().contains("biased"));
    // Every N-th packet: right mean, almost no variance.
    let deterministic: Vec<f64> = (0..RUNS)
        .map(|_| (PACKETS / u64::from(RATE)) as f64 * f64::from(RATE))
        .collect();
    assert!(
        check(&deterministic, n, var)
            .unwrap_err()
            .contains("variance")
    );
    // Uniform skips judged as if geometric: a third of the variance.
    let uniform = estimates(SkipKind::Uniform, RATE, 1.0);
    assert!(check(&uniform, n, var).unwrap_err().contains("variance"));
}

#[test]
fn a_million_packets_a_second_at_1_in_1000_is_cheap() {
    // One simulated hour at 1 Mpps, 10 ms ticks: 3.6e9 packets.
    let mut rng = Rng::new(5, 0);
    let mut s = Sampler::new(RATE, SkipKind::Geometric, &mut rng);
    let started = std::time::Instant::now();
    let mut samples = 0u64;
    for _ in 0..360_000 {
        samples += s.count(10_000, &mut rng);
    }
    let elapsed = started.elapsed();
    let expect = 3.6e9 / 1000.0;
    assert!(
        (samples as f64 - expect).abs() < 5.0 * expect.sqrt(),
        "{samples}"
    );
    // O(samples), not O(packets): 3.6 million draws, not 3.6 billion steps.
    assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
}

#[test]
fn the_model_estimates_each_attack_within_its_binomial_bound() {
    // Over the whole model: each attack's scaled samples against the exact
    // packets it generated, within 4 standard deviations.
    let mut p = edge_sensor_player::Player::new(&common_scenario()).unwrap();
    let datagrams = p.run_all();
    let model = p.model();
    for (i, a) in model.scenario().attacks.iter().enumerate() {
        let origin = edge_sensor_player::Origin::Attack(i as u32);
        let g = model.generated()[&origin];
        let exported: u64 = datagrams
            .iter()
            .flat_map(|d| &d.truth.samples)
            .filter(|s| s.origin == origin)
            .count() as u64;
        assert_eq!(exported, g.samples - g.dropped, "{}", a.id);
        let router = &model.scenario().routers[model
            .hosts()
            .iter()
            .find(|h| h.addr == a.target)
            .unwrap()
            .router as usize];
        let rate = f64::from(router.sampling_rate);
        let est = g.samples as f64 * rate;
        let sd = (g.packets as f64 * (rate - 1.0)).sqrt();
        assert!(
            (est - g.packets as f64).abs() < 4.0 * sd,
            "{}: {est} vs {}",
            a.id,
            g.packets
        );
    }
}

fn common_scenario() -> edge_sensor_player::Scenario {
    edge_sensor_player::Scenario::from_toml(
        r#"
seed = 3
duration_s = 20.0
[[routers]]
name = "r"
agent = "192.0.2.1"
format = "sflow"
sampling_rate = 1000
[hosts]
count = 100
prefix = "198.51.100.0/24"
total_pps = 10000
[[attacks]]
id = "a"
vector = "udp_flood"
target = "198.51.100.7"
start_s = 2.0
duration_s = 15.0
ramp_s = 3.0
pps = 1000000
[[attacks]]
id = "b"
vector = "memcached_amplification"
target = "198.51.100.8"
start_s = 5.0
duration_s = 5.0
bps = 2e9
"#,
    )
    .unwrap()
}
