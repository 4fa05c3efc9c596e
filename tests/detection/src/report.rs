//! The detection report: every experiment at 1:1000, 1:4096 and 1:16384,
//! written as Markdown (`detection.md`) with SVG plots beside it.

use std::{fmt::Write, path::Path, time::Instant};

use crate::{
    Error,
    experiments::{self, AttackSet, NormalRun, SizePoint},
    svg::{self, Series},
};

/// The sizes of the report; [`Options::full`] is the issue's, the tests use
/// smaller ones.
#[derive(Debug, Clone)]
pub struct Options {
    pub rates: Vec<u32>,
    /// Normal traffic: hosts and simulated hours.
    pub hosts: u32,
    pub hours: f64,
    /// The largest host's mean normal rate (pps).
    pub largest_pps: f64,
    /// Attack set: hosts, flood pps, amplification bps.
    pub set_hosts: u32,
    pub flood_pps: f64,
    pub amp_bps: f64,
    /// Time to detect: UDP flood sizes (pps), hosts, seeds.
    pub sizes: Vec<f64>,
    pub size_hosts: u32,
    pub seeds: Vec<u64>,
    pub seed: u64,
}

impl Options {
    /// A simulated day on 10,000 hosts, the attack set, eight sizes over
    /// five seeds, at each rate.
    pub fn full() -> Self {
        Self {
            rates: vec![1000, 4096, 16384],
            hosts: 10_000,
            hours: 24.0,
            largest_pps: 25_000.0,
            set_hosts: 1000,
            flood_pps: 300_000.0,
            amp_bps: 2e9,
            sizes: vec![40e3, 60e3, 80e3, 120e3, 200e3, 500e3, 1e6, 2e6],
            size_hosts: 100,
            seeds: vec![1, 2, 3, 4, 5],
            seed: 20261205,
        }
    }
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct Results {
    pub options: Options,
    pub normal: Vec<NormalRun>,
    pub sets: Vec<AttackSet>,
    pub sizes: Vec<Vec<SizePoint>>,
    pub seconds: f64,
}

/// Runs every experiment, one thread per sampling rate (`progress` hears
/// what runs).
pub fn run(options: &Options, progress: impl Fn(&str) + Sync) -> Result<Results, Error> {
    let t0 = Instant::now();
    let one = |rate: u32| -> Result<(AttackSet, Vec<SizePoint>, NormalRun), Error> {
        progress(&format!("1:{rate}: attack set"));
        let set = experiments::attack_set(
            rate,
            options.set_hosts,
            options.flood_pps,
            options.amp_bps,
            options.seed,
        )?;
        progress(&format!("1:{rate}: time to detect"));
        let sizes =
            experiments::time_to_detect(rate, &options.sizes, options.size_hosts, &options.seeds)?;
        progress(&format!(
            "1:{rate}: {} h of normal traffic on {} hosts",
            options.hours, options.hosts
        ));
        let normal = experiments::normal_traffic(
            rate,
            options.hosts,
            options.hours,
            options.largest_pps,
            options.seed,
        )?;
        progress(&format!("1:{rate}: done"));
        Ok((set, sizes, normal))
    };
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = options
            .rates
            .iter()
            .map(|&rate| s.spawn(move || one(rate)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut results = Results {
        options: options.clone(),
        normal: Vec::new(),
        sets: Vec::new(),
        sizes: Vec::new(),
        seconds: 0.0,
    };
    for o in outcomes {
        let (set, sizes, normal) = o?;
        results.sets.push(set);
        results.sizes.push(sizes);
        results.normal.push(normal);
    }
    results.seconds = t0.elapsed().as_secs_f64();
    Ok(results)
}

/// Distinct victims of `attacks`.
fn distinct_victims(attacks: &[edge_sensor::detect::Attack]) -> usize {
    attacks
        .iter()
        .map(|a| a.victim)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

/// The Markdown report (plots referenced by file name).
pub fn markdown(r: &Results) -> String {
    let o = &r.options;
    let mut m = String::new();
    let _ = writeln!(m, "# Detection under sampling noise\n");
    let _ = writeln!(
        m,
        "The player's traffic model, sampled 1:N by an sFlow and an IPFIX router (hosts alternate between them), decoded by the sensor's userspace decoder and decided by its detector on a simulated clock (1 s polls). Thresholds: all 100 kpps / 1 Gbps, tcp_syn 20 kpps, udp 50 kpps, icmp 10 kpps, fragment 10 kpps; `confidence = 0.999` unless said. Seed {}; {:.0} s to compute.\n",
        o.seed, r.seconds
    );
    let _ = writeln!(
        m,
        "An attack starts when the rate's one-sided 99.9 % lower bound, from the samples behind it (k samples at 1:N: `N k (1 - 1/(9k) - 3.09/(3 sqrt k))^3 / T`, pooled over the last 1 to 32 polls), reaches the threshold.\n"
    );

    let _ = writeln!(
        m,
        "## False positives in normal traffic with flash crowds\n"
    );
    let _ = writeln!(
        m,
        "| sampling | hosts | simulated | traffic (mean) | largest host | flash crowds (over the thresholds) | samples | attacks started, confidence 0.999 | per day{0} | without the check (point estimate) | per day{0} | without the web group's baseline: attacks on the large crowds' servers |",
        if o.hours < 24.0 {
            " (extrapolated)"
        } else {
            ""
        }
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in &r.normal {
        let per_day = |k: usize| k as f64 * 24.0 / n.hours;
        let _ = writeln!(
            m,
            "| 1:{} | {} | {} h | {} pps | {} pps | {} ({}) | {} | {} | {:.1} | {} | {:.1} | {} ({} servers) |",
            n.rate,
            n.hosts,
            n.hours,
            svg::si(n.total_pps),
            svg::si(n.largest_pps),
            n.flash_crowds,
            n.large_crowds,
            n.samples,
            n.with_confidence.len(),
            per_day(n.with_confidence.len()),
            n.without_confidence.len(),
            per_day(n.without_confidence.len()),
            n.crowds_without_baseline.len(),
            distinct_victims(&n.crowds_without_baseline),
        );
    }
    let _ = writeln!(
        m,
        "\nThe first {} hosts are web servers (their normal traffic is clients' requests to 443 and 80), in a host group `web` with the same static thresholds and a baseline (`k = 4`, 10 minutes, floors all 20 kpps and 160 Mbps and SYN 5 kpps, ceilings all 1 Mpps and 8 Gbps, `flash_crowd_similarity = 0.8`, judged on the match cut to the components the surge's samples make sure of at the confidence, and said twice a fingerprint window apart). A flash crowd every half hour, 10 minutes with 2-minute ramps: in turn a small one (10 to 50 kpps, ten times and more its host's rate) on any host, and a large one (150 to 300 kpps: over the 100 kpps threshold, by its bytes near the 1 Gbps one, and by its 8 % SYNs over the 20 kpps SYN one) on one of the eight busiest servers. The last column is the same traffic decided without the web group's baseline: the large crowds are mitigated there, so the run does test them. The largest host, with its diurnal peak (x1.4) and bursts, comes near the 100 kpps threshold. Attacks started on normal traffic:\n",
        experiments::SERVERS
    );
    for n in &r.normal {
        for a in n.with_confidence.iter().take(5) {
            let _ = writeln!(m, "- 1:{}, with the check: {a}", n.rate);
        }
        for a in n.without_confidence.iter().take(3) {
            let _ = writeln!(m, "- 1:{}, point estimate: {a}", n.rate);
        }
    }

    let _ = writeln!(m, "\n## The attack set\n");
    let _ = writeln!(
        m,
        "Every vector of the player on one of the {} hosts' busiest (their normal traffic is best known), one at a time for 60 s: floods at {} pps from 50,000 sources, amplification at {} bps from 2,000 reflectors. Coverage: share of the attack's packets (the truth's samples, as the decoder reads them) the rule matches; normal hit: share of the victim's normal packets it matches. First rule and the last after revisions.\n",
        o.set_hosts,
        svg::si(o.flood_pps),
        svg::si(o.amp_bps)
    );
    let _ = writeln!(
        m,
        "| sampling | attack | router | victim | class (expected) | detected after | coverage first / last | normal hit first / last | samples attack / normal | rule |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|");
    for s in &r.sets {
        for a in &s.attacks {
            match &a.detected {
                Some(d) => {
                    let _ = writeln!(
                        m,
                        "| 1:{} | {} | {:?} | {} | {} ({}){} | {:.1} s | {} / {} | {} / {} | {} / {} | `{}` |",
                        s.rate,
                        a.id,
                        a.router,
                        a.victim,
                        d.class,
                        a.expected,
                        if a.right() { "" } else { " **wrong**" },
                        d.after_s,
                        pct(d.first_coverage),
                        pct(d.last_coverage),
                        pct(d.first_normal_hit),
                        pct(d.last_normal_hit),
                        d.attack_samples,
                        d.normal_samples,
                        d.last
                    );
                }
                None => {
                    let _ = writeln!(
                        m,
                        "| 1:{} | {} | {:?} | {} | **not detected** ({}) | | | | | |",
                        s.rate, a.id, a.router, a.victim, a.expected
                    );
                }
            }
        }
        if !s.others.is_empty() {
            let _ = writeln!(
                m,
                "\n1:{}: {} attack(s) on other destinations: {}\n",
                s.rate,
                s.others.len(),
                s.others
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    }
    let _ = writeln!(m, "\n## Time to detect against attack size\n");
    let _ = writeln!(
        m,
        "UDP floods (threshold 50 kpps) on {} hosts of light normal traffic, starting mid-poll (30.5 s), seeds {:?} (odd seeds behind the sFlow router, even behind IPFIX). Time from the first attack packet to the attack's start; the rule reaches routers one BGP UPDATE later.\n",
        o.size_hosts, o.seeds
    );
    let _ = writeln!(m, "![time to detect](time-to-detect.svg)\n");
    let _ = write!(m, "| pps |");
    for s in &r.sizes {
        if let Some(p) = s.first() {
            let _ = write!(m, " 1:{} median / max |", p.rate);
        }
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "|---|{}", "---|".repeat(r.sizes.len()));
    for (i, pps) in o.sizes.iter().enumerate() {
        let _ = write!(m, "| {} |", svg::si(*pps));
        for s in &r.sizes {
            let p = &s[i];
            let missed = p.times.iter().filter(|t| t.is_none()).count();
            match (p.median(), p.max()) {
                (Some(med), Some(max)) if missed == 0 => {
                    let _ = write!(m, " {med:.1} s / {max:.1} s |");
                }
                (Some(med), _) => {
                    let _ = write!(m, " {med:.1} s, missed {missed} of {} |", p.times.len());
                }
                _ => {
                    let _ = write!(m, " not detected |");
                }
            }
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(m, "\nSmallest flood detected in every seed:\n");
    for s in &r.sizes {
        if let Some(p) = s.iter().find(|p| p.all_detected()) {
            let _ = writeln!(
                m,
                "- 1:{}: {} pps ({:.1}x the threshold), median {:.1} s, at most {:.1} s",
                p.rate,
                svg::si(p.pps),
                p.pps / 50_000.0,
                p.median().unwrap_or(f64::NAN),
                p.max().unwrap_or(f64::NAN)
            );
        }
    }
    m
}

/// The time-to-detect plot.
pub fn time_plot(r: &Results) -> String {
    let series: Vec<Series> = r
        .sizes
        .iter()
        .filter_map(|s| {
            let rate = s.first()?.rate;
            Some(Series {
                name: format!("1:{rate} (median)"),
                points: s
                    .iter()
                    .filter(|p| p.all_detected())
                    .filter_map(|p| Some((p.pps, p.median()?)))
                    .collect(),
            })
        })
        .collect();
    svg::line_chart(
        "Time to detect a UDP flood (threshold 50 kpps)",
        "attack rate (pps, log)",
        "seconds from the first packet",
        true,
        &series,
    )
}

/// Writes `detection.md` and `time-to-detect.svg` into `dir`.
pub fn write(r: &Results, dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
    for (name, text) in [
        ("detection.md", markdown(r)),
        ("time-to-detect.svg", time_plot(r)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::Io(path.display().to_string(), e))?;
    }
    Ok(())
}
