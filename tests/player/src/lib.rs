//! A traffic-model player for edge-sensor: a seeded model of an operator's
//! network, sampled 1:N by statistically correct samplers and emitted as the
//! sFlow v5 and IPFIX datagrams its routers would send, with the exact truth
//! of every sample.
//!
//! # The model ([`model`])
//!
//! A scenario ([`scenario::Scenario`], TOML; see `scenarios/example.toml`)
//! names routers (each an exporter: agent address, format, sampling rate,
//! interfaces, MTU) and a block of hosts. Host `i` sits behind router
//! `i mod R`, on one of its interfaces. Traffic is inbound to the hosts (what
//! the sensor counts per destination) and comes from three kinds of origin:
//!
//! - **normal traffic**: each host has a mean rate drawn from a Pareto
//!   distribution (heavy tail: a few hosts carry most packets), scaled so the
//!   hosts sum to `total_pps`, times a diurnal factor
//!   `1 + A cos(2π (hour - peak) / 24)` on the scenario's simulated clock,
//!   times a per-host log-normal burst factor of mean 1 redrawn every
//!   `burst_period_s` (`burstiness`, off by default); remote sources are Zipf-distributed; the mix is TCP downloads, new
//!   connections, QUIC, DNS answers and ICMP;
//! - **flash crowds**: many legitimate sources opening connections to one
//!   host's port, ramping up and down;
//! - **attacks**: a vector (UDP/SYN/ACK/ICMP flood, DNS/NTP/memcached/SSDP/
//!   CLDAP amplification), a rate in pps or bps, a packet size, a number of
//!   sources, a ramp, a start and a duration.
//!
//! Time advances in ticks (`tick_ms`). In each tick every origin sends a
//! Poisson number of packets with its current mean: counts are exact and
//! drawn, never enumerated.
//!
//! # The sampler ([`sampler`])
//!
//! Each stream of packets through an interface is sampled as an sFlow agent
//! does: a random skip to the next sampled packet (geometric with mean N, so
//! exactly an independent 1-in-N coin per packet; or uniform on 1..2N-1), a
//! sample pool counting every packet, drops for samples over the agent's
//! budget (`max_samples_per_s`). It costs O(samples), so 1 Mpps at 1:1000 is
//! a thousand draws a second. Only sampled packets get attributes (source,
//! ports, flags, size), each from the origin's mix.
//!
//! # The datagrams ([`sflow`], [`ipfix`])
//!
//! sFlow v5: flow samples (compact, or expanded) with an extended_switch
//! record and a raw Ethernet header (Ethernet, IPv4/IPv6, TCP/UDP/ICMP as the
//! origin says, truncated to `header_bytes`), sample pool and drops, packed
//! up to the MTU or sent after `flush_ms`; datagram sequence numbers per
//! agent, sample sequence numbers per data source; generic interface
//! counter samples every `counter_interval_s`. IPFIX: one data record per
//! sampled packet, or with `flow_timeout_ms` a flow cache aggregating a
//! 5-tuple's samples until its active timeout; templates, the options template and the sampling options
//! data (samplingInterval, or samplerId + samplerRandomInterval) in a
//! message of their own at the start and every `template_refresh_s`;
//! sequence numbers counting data records; messages up to the MTU.
//!
//! # The truth ([`truth`])
//!
//! Every [`Datagram`] carries its [`DatagramTruth`]: each sample's origin
//! (host, flash crowd or attack), which packet of that origin's stream it is,
//! the packet itself, its rate and pool, and for IPFIX which samples each
//! record aggregates ([`truth::records`]). [`truth::expected`] turns datagrams
//! into what a collector must count per destination; [`model::Model`] keeps
//! the exact packets generated per origin and destination and when each
//! origin's first packet went out; [`truth::TruthWriter`] writes it all as
//! JSON lines.
//!
//! # Time
//!
//! [`Player`] is a pure generator: datagrams come with their simulated time
//! (ns after the start) and nothing touches a clock or a socket, so a
//! detector can run on the simulated clock. [`realtime`] paces them onto UDP
//! sockets; [`pcap`] writes them to a capture.
//!
//! ```
//! use edge_sensor_player::{Origin, Player, Scenario, truth};
//!
//! let scenario = Scenario::from_toml(r#"
//!     seed = 1
//!     duration_s = 2.0
//!     [[routers]]
//!     name = "edge"
//!     agent = "192.0.2.1"
//!     format = "sflow"
//!     sampling_rate = 1000
//!     [hosts]
//!     count = 100
//!     prefix = "198.18.0.0/24"
//!     total_pps = 10000
//!     [[attacks]]
//!     id = "flood"
//!     vector = "udp_flood"
//!     target = "198.18.0.7"
//!     start_s = 1.0
//!     duration_s = 1.0
//!     pps = 1000000
//! "#).unwrap();
//! let mut player = Player::new(&scenario).unwrap();
//! let mut datagrams = Vec::new();
//! // One tick (10 ms) at a time, on the simulated clock.
//! while let Some(batch) = player.next_tick() {
//!     datagrams.extend(batch);
//! }
//! let victim = "198.18.0.7".parse().unwrap();
//! let counted = truth::expected(&datagrams)[&victim].packets;
//! let sent = player.model().generated_by(Origin::Attack(0)).packets;
//! // A million packets at 1:1000: within 4 standard deviations (sqrt(n N)).
//! assert!((counted as f64 - sent as f64).abs() < 4.0 * (sent as f64 * 1000.0).sqrt());
//! assert_eq!(player.model().first_packet_ns(Origin::Attack(0)), Some(1_000_000_000));
//! ```

pub mod ipfix;
pub mod model;
pub mod packet;
pub mod pcap;
pub mod realtime;
pub mod rng;
pub mod sampler;
pub mod scenario;
pub mod sflow;
pub mod truth;

use std::collections::VecDeque;

use serde::Serialize;

pub use model::{Model, Origin, Sample};
pub use scenario::{Format, Scenario};

/// The player's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("scenario: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("scenario: {0}")]
    Invalid(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// What one datagram holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DatagramTruth {
    /// sFlow: the datagram sequence number; IPFIX: the message's sequence
    /// number (data records sent before it).
    pub sequence: u32,
    /// Flow samples (sFlow), or the samples of the data records (IPFIX),
    /// in datagram order.
    pub samples: Vec<Sample>,
    /// IPFIX: how many of `samples` each data record aggregates, in order
    /// (all 1 without a flow cache). Empty for sFlow (one per sample).
    pub records: Vec<u32>,
    /// sFlow counter samples, in datagram order.
    pub counters: Vec<model::SourceCounters>,
    /// IPFIX: the templates, options template and options data.
    pub templates: bool,
}

/// One datagram as a router sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Datagram {
    /// Simulated send time, ns after the scenario's start.
    pub time_ns: u64,
    /// Index of the router in the scenario.
    pub router: u32,
    pub format: Format,
    /// The UDP payload.
    pub payload: Vec<u8>,
    pub truth: DatagramTruth,
}

#[derive(Debug, Clone)]
enum Emitter {
    Sflow(sflow::Agent),
    Ipfix(ipfix::Exporter),
}

/// The model and its routers' exporters: datagrams in time order.
#[derive(Debug, Clone)]
pub struct Player {
    model: Model,
    emitters: Vec<Emitter>,
    queue: VecDeque<Datagram>,
    finished: bool,
}

impl Player {
    pub fn new(scenario: &Scenario) -> Result<Self, Error> {
        let model = Model::new(scenario)?;
        let emitters = scenario
            .routers
            .iter()
            .enumerate()
            .map(|(i, r)| match r.format {
                Format::Sflow => Emitter::Sflow(sflow::Agent::new(i as u32, r)),
                Format::Ipfix => {
                    Emitter::Ipfix(ipfix::Exporter::new(i as u32, r, scenario.start_unix_s))
                }
            })
            .collect();
        Ok(Self {
            model,
            emitters,
            queue: VecDeque::new(),
            finished: false,
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The datagrams of the next tick, in time order (possibly none); `None`
    /// once the scenario is over and everything pending was sent.
    pub fn next_tick(&mut self) -> Option<Vec<Datagram>> {
        if self.finished {
            return None;
        }
        let mut out = Vec::new();
        match self.model.step() {
            Some(tick) => {
                for s in &tick.samples {
                    match &mut self.emitters[s.router as usize] {
                        Emitter::Sflow(a) => a.sample(s, &mut out),
                        Emitter::Ipfix(e) => e.sample(s, &mut out),
                    }
                }
                for (r, e) in self.emitters.iter_mut().enumerate() {
                    match e {
                        Emitter::Sflow(a) => {
                            a.advance(tick.end_ns, self.model.counters(r), &mut out)
                        }
                        Emitter::Ipfix(x) => x.advance(tick.end_ns, &mut out),
                    }
                }
                if self.model.is_done() {
                    for e in &mut self.emitters {
                        match e {
                            Emitter::Sflow(a) => a.finish(tick.end_ns, &mut out),
                            Emitter::Ipfix(x) => x.finish(tick.end_ns, &mut out),
                        }
                    }
                    self.finished = true;
                }
            }
            None => self.finished = true,
        }
        out.sort_by_key(|d| d.time_ns);
        Some(out)
    }

    /// Every datagram of the scenario.
    pub fn run_all(&mut self) -> Vec<Datagram> {
        self.by_ref().collect()
    }
}

impl Iterator for Player {
    type Item = Datagram;

    fn next(&mut self) -> Option<Datagram> {
        // Bounded: each call to next_tick advances the model by a tick, and
        // the scenario has finitely many.
        loop {
            if let Some(d) = self.queue.pop_front() {
                return Some(d);
            }
            let batch = self.next_tick()?;
            self.queue.extend(batch);
        }
    }
}
