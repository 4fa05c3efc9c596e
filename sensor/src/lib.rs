//! edge-sensor: DDoS detection and mitigation from sampled telemetry.
//!
//! Data flows one way, through six stages; each module belongs to one:
//!
//! | stage | modules | what happens |
//! |---|---|---|
//! | collect | [`xdp`], [`fastpath`], [`recv`], [`telemetry`], [`decode`], [`pcap`] | sFlow / IPFIX / NetFlow datagrams parsed in the XDP program (loaded and read by [`xdp`]); what it passes on, or everything when the userspace collector stands in ([`fastpath`]), decoded by [`telemetry`]; [`decode`] replays captures through either |
//! | count | [`counters`], [`rates`] | per destination and per exporter totals ([`counters::Report`]), and rates between two readings |
//! | detect | [`detect`] | baselines, thresholds, attacks and their fingerprints |
//! | mitigate | [`mitigate`] | the policy and safety rules: an attack becomes a Flow Spec rule or an RTBH route, held, escalated, withdrawn |
//! | announce | [`bgp`] | sessions to the routers, per-router dialects, quarantine of rules a router resets over |
//! | operate | [`daemon`], [`config`], [`control`], [`http`], [`metrics`], [`state`], [`cli`], [`addr`] | the loop that ties the stages together, its configuration, control socket, HTTP listener (metrics and the JSON API), metrics, state on disk, and the command line |
//!
//! Three round trips go against that flow, each through one named place:
//!
//! 1. **Template plans.** NetFlow v9 / IPFIX templates reach the daemon (the
//!    kernel passes them on); [`telemetry::template`] learns them and
//!    [`xdp::Sensor::sync_template_plans`] writes a decoding plan per template into
//!    the `FLOW_PLANS` map, after which the kernel decodes those data sets
//!    itself.
//! 2. **Watched destinations.** The detector names the destinations it
//!    suspects ([`detect::Detector::watched`]); [`xdp::Sensor::set_watched`]
//!    puts them in `WATCHED`, and the kernel streams their samples on the
//!    `WATCH_SAMPLES` ring, from which [`detect`] builds fingerprints.
//! 3. **Router refusals.** A router that refuses a rule, or resets its
//!    session over one, is reported by [`bgp`] (per-peer outcomes and
//!    quarantine events); [`mitigate`] answers with the RTBH fallback for
//!    that router.
//!
//! `main.rs` only calls [`cli::main`].

pub mod addr;
pub mod bgp;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod fastpath;
pub mod http;
pub mod metrics;
pub mod mitigate;
pub mod pcap;
pub mod rates;
pub mod recv;
pub mod state;
pub mod telemetry;
pub mod xdp;
