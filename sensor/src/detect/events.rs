//! What the detector reports: attacks, their events, and views of its
//! state for metrics and the command line.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{AttackClass, Fingerprint, GroupAction, Metric, TrafficClass};

/// Whether an attack is on one host or on a block of a group's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Host,
    /// The block's summed traffic crossed an aggregate threshold.
    Aggregate,
}

/// The threshold that started (or last confirmed) an attack.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub class: TrafficClass,
    pub metric: Metric,
    /// The compared rate when it was crossed.
    pub rate: f64,
    pub threshold: f64,
}

/// An attack as the detector sees it (also what `edge-sensor attacks` shows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attack {
    /// Unique for the detector's lifetime, increasing from 1.
    pub id: u64,
    /// The host (/32, /128) or block attacked.
    pub victim: IpNet,
    pub scope: Scope,
    pub class: AttackClass,
    pub host_group: String,
    /// The host group's configured action.
    pub action: GroupAction,
    /// Caller's clock at the start, seconds.
    pub started_s: f64,
    pub duration_s: f64,
    pub trigger: Trigger,
    /// Current rates of all the victim's traffic, as compared with the
    /// thresholds (see [`super::meter::Meter::signal`]), and their peaks.
    pub pps: f64,
    pub bps: f64,
    pub peak_pps: f64,
    pub peak_bps: f64,
    pub fingerprint: Fingerprint,
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {} {} (group {}, action {}) {} pps {} bps, peak {} pps {} bps, for {:.0} s; {} {} = {} over {}; match {}",
            self.id,
            self.victim,
            self.class,
            self.host_group,
            self.action,
            crate::rates::human(self.pps),
            crate::rates::human(self.bps),
            crate::rates::human(self.peak_pps),
            crate::rates::human(self.peak_bps),
            self.duration_s,
            self.trigger.class,
            self.trigger.metric,
            crate::rates::human(self.trigger.rate),
            crate::rates::human(self.trigger.threshold),
            self.fingerprint,
        )
    }
}

/// One destination as the detector sees it (for metrics and inspection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationView {
    pub ip: IpAddr,
    pub host_group: String,
    /// Smoothed rates by class.
    pub pps: BTreeMap<TrafficClass, f64>,
    pub bps: BTreeMap<TrafficClass, f64>,
    /// The rates compared with thresholds (see [`super::meter::Meter::signal`]).
    pub compared_pps: BTreeMap<TrafficClass, f64>,
    pub compared_bps: BTreeMap<TrafficClass, f64>,
    /// Thresholds in force (static or adaptive), by class.
    pub threshold_pps: BTreeMap<TrafficClass, f64>,
    pub threshold_bps: BTreeMap<TrafficClass, f64>,
    /// Long-run typical pps.
    pub typical_pps: Option<f64>,
    pub watched: bool,
}

/// The detector's own counters (cumulative ones since it was created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorStats {
    /// Destinations inside the own networks with state.
    pub destinations: u64,
    /// Aggregate blocks with state.
    pub blocks: u64,
    pub watched: u64,
    pub attacks: u64,
    /// Polls taken (the first, which only sets the base, included).
    pub polls: u64,
    /// Polls ignored because the clock did not advance.
    pub clock_stalls: u64,
    /// Destination intervals without a rate: a counter went down (map
    /// re-created, entry evicted) or moved by more than any link carries.
    pub counter_gaps: u64,
    /// Samples kept, and ignored (destination outside the own networks or
    /// not in the counters).
    pub samples_taken: u64,
    pub samples_ignored: u64,
    /// Threshold crossings not reported because they looked like the
    /// destination's normal traffic (flash crowds), counted per poll.
    pub flash_crowd_polls: u64,
    pub attacks_started: u64,
    pub attacks_ended: u64,
}

/// What a poll decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "attack", rename_all = "snake_case")]
pub enum Event {
    AttackStarted(Attack),
    /// The class or the match changed (rates alone do not make an update).
    AttackUpdated(Attack),
    AttackEnded(Attack),
}

impl Event {
    pub fn attack(&self) -> &Attack {
        match self {
            Self::AttackStarted(a) | Self::AttackUpdated(a) | Self::AttackEnded(a) => a,
        }
    }
}
