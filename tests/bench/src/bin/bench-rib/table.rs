//! The synthetic full table: seeded, so every run feeds the same routes.
//!
//! IPv4 and IPv6 prefixes with the length mix of today's global table
//! (IPv4 mostly /24, then /22-/23 and /16-/21; IPv6 mostly /48, then
//! /32-/44), each with two paths (for Add-Path) whose attribute sets come
//! from one pool: AS paths of 2-8 hops (first hop one of a few transits,
//! origins from a large pool of 2- and 4-octet ASNs, some prepending),
//! 0-3 communities, a quarter with large communities, some with a MED.
//! Prefixes pick their sets with a skew (some sets carry many prefixes), as
//! a real table's origins do; the pool holds one set per three prefixes.

use std::collections::HashSet;

/// SplitMix64: small, seeded, good enough to spread prefixes and choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index by `weights`.
    fn pick(&mut self, weights: &[(u8, f64)]) -> u8 {
        let total: f64 = weights.iter().map(|w| w.1).sum();
        let mut x = self.unit() * total;
        for (v, w) in weights {
            if x < *w {
                return *v;
            }
            x -= w;
        }
        weights.last().map_or(0, |w| w.0)
    }
}

/// IPv4 prefix lengths, percent of the table (global table, 2024-25).
const V4_LENGTHS: &[(u8, f64)] = &[
    (8, 0.02),
    (11, 0.05),
    (12, 0.1),
    (13, 0.2),
    (14, 0.4),
    (15, 0.6),
    (16, 1.3),
    (17, 0.8),
    (18, 1.4),
    (19, 2.6),
    (20, 4.2),
    (21, 5.0),
    (22, 11.0),
    (23, 9.5),
    (24, 62.8),
];

/// IPv6 prefix lengths, percent of the table.
const V6_LENGTHS: &[(u8, f64)] = &[
    (28, 0.5),
    (29, 2.5),
    (30, 0.3),
    (32, 12.0),
    (33, 1.5),
    (34, 1.0),
    (35, 0.5),
    (36, 3.0),
    (38, 0.5),
    (40, 6.0),
    (42, 1.0),
    (44, 8.0),
    (45, 1.0),
    (46, 2.0),
    (47, 2.2),
    (48, 58.0),
];

/// The transits a path's first hop (after the feeder's own AS) goes to.
const TRANSITS: &[u32] = &[3356, 1299, 174, 2914, 6939, 6453, 3257, 6762, 5511, 3491];

/// One attribute set (besides ORIGIN and NEXT_HOP, which are the feeder's).
#[derive(Debug, Clone)]
pub struct AttrSet {
    pub as_path: Vec<u32>,
    pub communities: Vec<(u16, u16)>,
    pub large: Vec<(u32, u32, u32)>,
    pub med: Option<u32>,
}

/// One prefix with the attribute sets of its two paths.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The network address, IPv4 in the low 32 bits when `v6` is false.
    pub addr: u128,
    pub len: u8,
    pub v6: bool,
    pub sets: [u32; 2],
}

impl Route {
    pub fn prefix(&self) -> String {
        if self.v6 {
            format!("{}/{}", std::net::Ipv6Addr::from(self.addr), self.len)
        } else {
            format!(
                "{}/{}",
                std::net::Ipv4Addr::from(self.addr as u32),
                self.len
            )
        }
    }
}

pub struct Table {
    pub sets: Vec<AttrSet>,
    pub routes: Vec<Route>,
    pub v4: usize,
    pub v6: usize,
}

fn attr_set(rng: &mut Rng) -> AttrSet {
    let len = rng.pick(&[
        (2, 10.0),
        (3, 25.0),
        (4, 27.0),
        (5, 18.0),
        (6, 10.0),
        (7, 6.0),
        (8, 4.0),
    ]);
    let mut as_path = vec![TRANSITS[rng.below(TRANSITS.len() as u64) as usize]];
    for _ in 1..len - 1 {
        // Tier-2/3 networks.
        as_path.push(2000 + rng.below(40_000) as u32);
    }
    // Origins: 2-octet and 4-octet ASNs.
    let origin = if rng.below(3) == 0 {
        196_608 + rng.below(200_000) as u32
    } else {
        1000 + rng.below(60_000) as u32
    };
    as_path.push(origin);
    if rng.below(10) == 0 {
        for _ in 0..1 + rng.below(3) {
            as_path.push(origin);
        }
    }
    let communities = (0..rng.below(4))
        .map(|_| (as_path[0] as u16, rng.below(3000) as u16))
        .collect();
    let large = if rng.below(4) == 0 {
        (0..1 + rng.below(2))
            .map(|_| (as_path[0], 1 + rng.below(10) as u32, rng.below(1000) as u32))
            .collect()
    } else {
        Vec::new()
    };
    let med = (rng.below(10) < 3).then(|| rng.below(1000) as u32);
    AttrSet {
        as_path,
        communities,
        large,
        med,
    }
}

/// `v4` IPv4 and `v6` IPv6 prefixes, two paths each, from `seed`.
pub fn generate(v4: usize, v6: usize, seed: u64) -> Table {
    let mut rng = Rng::new(seed);
    let pool = (v4 + v6).div_ceil(3).max(1);
    let sets: Vec<AttrSet> = (0..pool).map(|_| attr_set(&mut rng)).collect();
    let mut seen = HashSet::with_capacity(v4 + v6);
    let mut routes = Vec::with_capacity(v4 + v6);
    // Skewed: a set's share falls with its index (u^2), like origins'.
    let set = |rng: &mut Rng| ((rng.unit().powi(2)) * pool as f64) as u32;
    while routes.len() < v4 {
        let len = rng.pick(V4_LENGTHS);
        let first = 1 + rng.below(222) as u32;
        if matches!(first, 10 | 100 | 127 | 169 | 172 | 192 | 198) {
            continue;
        }
        let addr = (first << 24) | (rng.next() as u32 & 0x00ff_ffff);
        let addr = addr & (u32::MAX << (32 - len));
        if seen.insert((false, u128::from(addr), len)) {
            let a = set(&mut rng);
            let mut b = set(&mut rng);
            if b == a {
                b = (a + 1) % pool as u32;
            }
            routes.push(Route {
                addr: u128::from(addr),
                len,
                v6: false,
                sets: [a, b],
            });
        }
    }
    while routes.len() < v4 + v6 {
        let len = rng.pick(V6_LENGTHS);
        // 2000::/4 .. 2fff::/16 minus 2001:db8::/32.
        let high = (0x2000u128 + u128::from(rng.below(0x0c00) as u16)) << 112;
        let addr = high | (u128::from(rng.next()) << 48);
        let addr = addr & (u128::MAX << (128 - len));
        if addr >> 96 == 0x2001_0db8 {
            continue;
        }
        if seen.insert((true, addr, len)) {
            let a = set(&mut rng);
            let mut b = set(&mut rng);
            if b == a {
                b = (a + 1) % pool as u32;
            }
            routes.push(Route {
                addr,
                len,
                v6: true,
                sets: [a, b],
            });
        }
    }
    Table {
        sets,
        routes,
        v4,
        v6,
    }
}

/// The feeder's BIRD configuration: four static protocols (path 1 and
/// path 2, per family) whose routes set their attributes inline (BIRD
/// parses a function per attribute set far more slowly: 6 s for 8k), and
/// one BGP protocol per receiver (disabled until the benchmark enables
/// it; it then connects to the passive receiver) exporting everything with Add-Path.
pub fn feeder_config(table: &Table, receivers: &[(&str, &str, u32)]) -> String {
    use std::fmt::Write as _;
    let body = |s: &AttrSet| {
        let mut c = String::new();
        // prepend: the last ASN first.
        for asn in s.as_path.iter().rev() {
            let _ = write!(c, "bgp_path.prepend({asn}); ");
        }
        for (a, v) in &s.communities {
            let _ = write!(c, "bgp_community.add(({a},{v})); ");
        }
        for (g, l1, l2) in &s.large {
            let _ = write!(c, "bgp_large_community.add(({g},{l1},{l2})); ");
        }
        if let Some(m) = s.med {
            let _ = write!(c, "bgp_med = {m}; ");
        }
        c
    };
    let bodies: Vec<String> = table.sets.iter().map(body).collect();
    let mut c = String::with_capacity(table.routes.len() * 2 * 220);
    c.push_str(
        "log stderr { warning, error, fatal };\nrouter id 127.0.0.1;\n\
         ipv4 table master4;\nipv6 table master6;\nprotocol device { }\n",
    );
    for (family, v6) in [("ipv4", false), ("ipv6", true)] {
        for path in 0..2 {
            let _ = writeln!(c, "protocol static p{}{family} {{\n  {family};", path + 1);
            for r in table.routes.iter().filter(|r| r.v6 == v6) {
                let _ = writeln!(
                    c,
                    "  route {} blackhole {{ {}}};",
                    r.prefix(),
                    bodies[r.sets[path] as usize]
                );
            }
            c.push_str("}\n");
        }
    }
    for (name, addr, asn) in receivers {
        let _ = write!(
            c,
            "protocol bgp {name} {{\n  disabled;\n  local 127.0.0.1 port 1790 as 65000;\n  \
             neighbor {addr} port 179 as {asn};\n  multihop;\n  connect delay time 1;\n  hold time 240;\n  \
             ipv4 {{ import none; export all; add paths tx; }};\n  \
             ipv6 {{ import none; export all; add paths tx; next hop address 2001:db8::1; }};\n}}\n"
        );
    }
    c
}

/// The receiving BIRD: one passive BGP protocol to the feeder,
/// Add-Path receive, everything imported into the plain tables.
pub fn receiver_config() -> String {
    "log stderr { warning, error, fatal };\nrouter id 127.0.0.3;\n\
     ipv4 table master4;\nipv6 table master6;\n\
     protocol device { }\n\
     protocol bgp feeder {\n  local 127.0.0.3 as 65002;\n  neighbor 127.0.0.1 as 65000;\n  \
     multihop;\n  passive on;\n  strict bind on;\n  hold time 240;\n  \
     ipv4 { import all; export none; add paths rx; };\n  \
     ipv6 { import all; export none; add paths rx; };\n}\n"
        .to_string()
}

/// Addresses for the longest-match queries: four in five inside a prefix
/// of the table (a random route, a random host in it), one in five any
/// routable IPv4 address (which may match nothing, or a covering prefix).
pub fn query_addresses(table: &Table, n: usize, seed: u64) -> Vec<std::net::IpAddr> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            if rng.below(5) == 0 {
                let a = ((1 + rng.below(222)) << 24) as u32 | (rng.next() as u32 & 0x00ff_ffff);
                return std::net::IpAddr::from(std::net::Ipv4Addr::from(a));
            }
            let r = table.routes[rng.below(table.routes.len() as u64) as usize];
            if r.v6 {
                let host = u128::from(rng.next()) | (u128::from(rng.next()) << 64);
                let host = host & (u128::MAX >> r.len);
                std::net::IpAddr::from(std::net::Ipv6Addr::from(r.addr | host))
            } else {
                let host = (rng.next() as u32) & (u32::MAX >> r.len);
                std::net::IpAddr::from(std::net::Ipv4Addr::from(r.addr as u32 | host))
            }
        })
        .collect()
}
