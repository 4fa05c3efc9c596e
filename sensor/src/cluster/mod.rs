//! Several sensors, one network-wide view (`[cluster]`, issue 17), on NATS
//! JetStream.
//!
//! Each poll a sensor publishes a [`Summary`] of its destinations at
//! `cluster.fraction` of a threshold (their last interval's rates, from the
//! local detector, [`crate::detect::Detector::near_threshold`]) to the
//! summary stream, heartbeats into the member bucket, reads the latest
//! summary of every live member ([`client`]), sums them into network-wide
//! counters ([`view::NetworkCounters`]) and polls a second detector on them:
//! the network-wide view. Each network-wide attack is mitigated by one
//! member, its rendezvous owner among the live members ([`owner`]);
//! [`Ownership`] turns membership changes into announce / withdraw
//! decisions, so a dead owner's attacks are taken over once its membership
//! expires. When the cluster cannot be reached the step fails fast
//! (bounded per operation), [`Status::LocalOnly`] says why, and the
//! sensor's local detection and mitigation go on as without `[cluster]`.

pub mod client;
pub mod config;
pub mod owner;
pub mod runner;
pub mod summary;
pub mod view;

use std::{collections::BTreeSet, time::Duration};

use ipnet::IpNet;
use serde::Serialize;

pub use client::{Claim, Client, ClusterError, MemberView};
pub use config::{ClusterConfig, ClusterConfigError};
pub use summary::Summary;
pub use view::NetworkCounters;

use crate::detect::{DetectConfig, DetectConfigError, Detector, Event};

/// What an owner does about a network-wide attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "victim", rename_all = "snake_case")]
pub enum Decision {
    Announce(IpNet),
    Withdraw(IpNet),
}

/// The network-wide victims this sensor announces.
#[derive(Debug, Default, Clone)]
pub struct Ownership {
    announced: BTreeSet<IpNet>,
}

impl Ownership {
    /// Decisions that make this sensor (`me`) announce exactly the
    /// `active` victims it owns among `live` members.
    pub fn reconcile(
        &mut self,
        me: &str,
        live: &[String],
        active: impl IntoIterator<Item = IpNet>,
    ) -> Vec<Decision> {
        let mine: BTreeSet<IpNet> = active
            .into_iter()
            .filter(|v| owner::owner(v, live.iter().map(String::as_str)) == Some(me))
            .collect();
        let mut out: Vec<Decision> = self
            .announced
            .difference(&mine)
            .map(|v| Decision::Withdraw(*v))
            .collect();
        out.extend(
            mine.difference(&self.announced)
                .map(|v| Decision::Announce(*v)),
        );
        self.announced = mine;
        out
    }

    pub fn announced(&self) -> &BTreeSet<IpNet> {
        &self.announced
    }
}

/// Whether the network-wide view is in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum Status {
    Clustered,
    /// The cluster could not be reached: local detection only.
    LocalOnly(String),
}

/// Counters for metrics and `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClusterStats {
    pub steps: u64,
    pub failed_steps: u64,
    /// Times the sensor fell back to local-only.
    pub fallbacks: u64,
    pub summaries_published: u64,
    pub summary_bytes_published: u64,
    /// NATS messages the summaries took (more than one each past
    /// `max_payload`).
    pub summary_parts_published: u64,
    /// Entries left out of summaries past [`summary::MAX_PARTS`] parts.
    pub summary_entries_left_out: u64,
    pub members: u64,
    pub network_destinations: u64,
    /// Writes to the replicated mitigation state (claims and releases).
    pub claim_writes: u64,
    pub claim_write_errors: u64,
}

/// What one network-wide poll gave.
#[derive(Debug, Default)]
pub struct Step {
    pub events: Vec<Event>,
    pub decisions: Vec<Decision>,
    pub members: Vec<String>,
}

/// A sensor's membership and its network-wide view.
pub struct Node {
    cfg: ClusterConfig,
    pub(crate) client: Client,
    pub counters: NetworkCounters,
    pub detector: Detector,
    pub ownership: Ownership,
    pub status: Status,
    pub stats: ClusterStats,
    seq: u64,
    /// After a (re)join: when the membership is whole again (every live
    /// member's summary had time to move), until then no network-wide
    /// detection.
    whole_at: Option<std::time::Instant>,
    /// After a reconfiguration, until when the network-wide detector is
    /// measuring afresh ([`Node::rejudging`]).
    rejudge_until: Option<std::time::Instant>,
}

impl Node {
    /// `detect` is the local detector's configuration: the network-wide
    /// view has the same thresholds. `limit` bounds every NATS operation.
    pub async fn new(
        cfg: &ClusterConfig,
        detect: DetectConfig,
        limit: Duration,
    ) -> Result<Self, NodeError> {
        Ok(Self {
            cfg: cfg.clone(),
            client: Client::connect(cfg, limit).await?,
            counters: NetworkCounters::default(),
            detector: Detector::new(detect)?,
            ownership: Ownership::default(),
            status: Status::LocalOnly("not stepped yet".into()),
            stats: ClusterStats::default(),
            seq: 0,
            whole_at: None,
            rejudge_until: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Whether the network-wide detector was rebuilt lately and may not
    /// have measured again an attack its predecessor had: an attack gone
    /// from it now is not over, its rule is held (`min_hold`) until the
    /// detector judges again.
    pub fn rejudging(&self) -> bool {
        self.rejudge_until
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    /// Long enough for a fresh detector to measure and confirm an attack
    /// still on: a first poll for the counters' base, then a few.
    fn rejudge_window(&self) -> Duration {
        self.cfg
            .member_ttl
            .max(self.detector.config().poll_interval * 6)
    }

    /// A reloaded `[detect]`: the network-wide detector starts over with
    /// it, as the local one does on SIGHUP. Its running attacks end here
    /// and start again once measured (the mitigator holds their rules
    /// `min_hold` meanwhile, and adopts them again: no withdrawal when the
    /// attack is still on). A configuration the detector refuses keeps
    /// the old one (the daemon validated it already).
    pub fn reconfigure(&mut self, detect: DetectConfig) {
        match Detector::new(detect) {
            Ok(mut d) => {
                d.continue_ids(&self.detector);
                self.detector = d;
                self.rejudge_until = Some(std::time::Instant::now() + self.rejudge_window());
                tracing::info!(sensor = %self.cfg.name, "cluster: network-wide detection reconfigured");
            }
            Err(e) => {
                tracing::warn!(sensor = %self.cfg.name, "cluster: [detect] refused, the network-wide detection runs on: {e}")
            }
        }
    }

    /// One poll after the local detector's: publish its summary, read the
    /// members', detect network-wide and decide ownership.
    pub async fn poll(&mut self, now: Duration, local: &Detector) -> Step {
        let summary = Summary {
            seq: 0,
            rates: local.near_threshold(self.cfg.fraction).collect(),
            blocks: local.block_rest(self.cfg.fraction),
        };
        self.poll_summary(now, summary).await
    }

    /// [`Self::poll_summary`] with host rates only (tests).
    pub async fn poll_rates(
        &mut self,
        now: Duration,
        rates: Vec<(std::net::IpAddr, crate::detect::meter::Table)>,
    ) -> Step {
        let summary = Summary {
            rates,
            ..Summary::default()
        };
        self.poll_summary(now, summary).await
    }

    /// [`Self::poll`] with the summary given (its `seq` is set here).
    pub async fn poll_summary(&mut self, now: Duration, mut summary: Summary) -> Step {
        self.seq += 1;
        self.stats.steps += 1;
        summary.seq = self.seq;
        let got = self.client.step(&summary, &mut self.stats).await;
        let summaries = match got {
            Ok(s) => {
                if let Status::LocalOnly(reason) = &self.status {
                    tracing::info!(sensor = %self.cfg.name, was = %reason, "cluster: reachable, network-wide detection on");
                    self.whole_at = Some(std::time::Instant::now() + self.cfg.member_ttl);
                }
                self.status = Status::Clustered;
                self.stats.summaries_published += 1;
                s
            }
            Err(e) => {
                self.stats.failed_steps += 1;
                if self.status == Status::Clustered {
                    self.stats.fallbacks += 1;
                    tracing::warn!(sensor = %self.cfg.name, "cluster: {e}; local-only detection until it is back");
                }
                self.status = Status::LocalOnly(e.to_string());
                return Step::default();
            }
        };
        let members = self.client.live_members();
        if self.whole_at.is_some_and(|t| std::time::Instant::now() < t) {
            // Joined or back from an outage: the others' summaries count
            // once they are seen to move again; summing before would end
            // every network-wide attack for want of them. The counters
            // resume after, over the whole gap at the rates then.
            self.stats.members = members.len() as u64;
            return Step {
                members,
                ..Step::default()
            };
        }
        self.whole_at = None;
        self.counters.advance(now, summaries.iter().map(|(_, s)| s));
        self.detector
            .set_outside_blocks(self.counters.blocks().clone());
        self.stats.members = members.len() as u64;
        self.stats.network_destinations = self.counters.destinations as u64;
        let events = self.detector.poll(now, &self.counters, &[]);
        let active = self.detector.attacks().into_iter().map(|a| a.victim);
        let decisions = self.ownership.reconcile(&self.cfg.name, &members, active);
        Step {
            events,
            decisions,
            members,
        }
    }

    /// Leaves the cluster (clean shutdown), handing over: waits up to
    /// `wait` until another sensor has claimed every network-wide victim
    /// whose rule this one announces ([`Client::leave`]).
    /// Returns the victims no other sensor claimed in time.
    pub async fn leave(self, wait: Duration) -> Vec<IpNet> {
        let attacked: BTreeSet<IpNet> = self
            .detector
            .attacks()
            .into_iter()
            .map(|a| a.victim)
            .collect();
        let others = self
            .client
            .live_members()
            .into_iter()
            .any(|m| m != self.cfg.name);
        let mine: Vec<IpNet> = self
            .client
            .claims()
            .into_iter()
            .filter(|(v, c)| c.sensor == self.cfg.name && attacked.contains(v))
            .map(|(v, _)| v)
            .collect();
        let wait = if others && self.status == Status::Clustered {
            wait
        } else {
            Duration::ZERO
        };
        let started = std::time::Instant::now();
        let name = self.cfg.name.clone();
        let left = self.client.leave(mine.clone(), wait).await;
        if mine.is_empty() {
            tracing::info!(sensor = %name, "cluster: left");
        } else if left.is_empty() {
            tracing::info!(sensor = %name, handed_over = ?mine, after = ?started.elapsed(), "cluster: left; every rule announced here is announced by another sensor");
        } else {
            tracing::warn!(sensor = %name, not_taken_over = ?left, after = ?started.elapsed(), "cluster: left; no other sensor announced these in time");
        }
        left
    }
}

/// A node that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Detect(#[from] DetectConfigError),
}

#[cfg(test)]
mod tests;
