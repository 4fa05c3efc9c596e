//! edge-sensor: DDoS detection and mitigation from sampled telemetry.
//!
//! Data flows one way: telemetry datagram (parsed in XDP, [`xdp`]) -> per
//! exporter and per destination counters in pinned BPF maps ([`counters`]) ->
//! rates -> decisions -> BGP. The [`cli`] is the binary's front end.

pub mod addr;
pub mod bgp;
pub mod cli;
pub mod config;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod fastpath;
pub mod metrics;
pub mod mitigate;
pub mod pcap;
pub mod rates;
pub mod recv;
pub mod state;
pub mod telemetry;
pub mod xdp;
