//! The [`Node`] on a task of its own, so the daemon's poll loop never waits
//! on NATS: each poll the loop hands over its summary rates and the claim
//! changes it decided (without waiting: a node still busy with the last
//! step skips this one), and takes the node's [`Report`]s as they come, in
//! the same `select!` as its other work. Every NATS operation in a step is
//! bounded, so a step ends even when the cluster does not answer.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use ipnet::IpNet;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{
    ClusterConfig, ClusterStats, Node, Status,
    client::{Claim, MemberView},
    owner,
};
use crate::detect::{Attack, DetectConfig, Event, meter::Table};

/// How long the node waits for its first connection before its first
/// step (which would otherwise report `LocalOnly` for a server that is
/// merely slower to answer than the first poll).
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(2);

/// A change to the replicated mitigation state the daemon decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimChange {
    /// This sensor announces the victim's rule.
    Claim(IpNet),
    /// Nobody announces it any more (or its holder is gone).
    Release(IpNet),
}

/// One poll's input.
#[derive(Debug)]
pub struct Input {
    /// The daemon's monotonic clock.
    pub now: Duration,
    pub rates: Vec<(IpAddr, Table)>,
    /// The local detector's block sums of the hosts left out of `rates`.
    pub blocks: Vec<(IpNet, Table)>,
    pub claims: Vec<ClaimChange>,
    /// A `[detect]` reloaded (SIGHUP): the network-wide detector is
    /// rebuilt with it before this step.
    pub detect: Option<DetectConfig>,
}

/// An active network-wide attack and who mitigates it.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkAttack {
    pub attack: Attack,
    /// The rendezvous owner among the live members.
    pub owner: Option<String>,
}

/// What one step gave: the state of the cluster as this sensor sees it.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: Status,
    pub stats: ClusterStats,
    /// The network-wide detector's events of this step.
    pub events: Vec<Event>,
    pub attacks: Vec<NetworkAttack>,
    pub members: Vec<MemberView>,
    /// The live members' names.
    pub live: Vec<String>,
    /// Who announces which victim's rule (the claims bucket).
    pub claims: BTreeMap<IpNet, Claim>,
    /// The network-wide detector was rebuilt lately ([`Node::rejudging`]):
    /// an attack missing from `attacks` may still be on.
    pub rejudging: bool,
}

/// The daemon's ends of the node's task.
pub struct Handle {
    pub inputs: mpsc::Sender<Input>,
    pub reports: mpsc::Receiver<Report>,
    /// Ends (leaving the cluster) once `inputs` is dropped.
    pub task: tokio::task::JoinHandle<()>,
}

/// How long a clean stop waits for other sensors to announce the rules
/// this one announces: their next step sees it gone (the membership
/// delete arrives at once), the step after writes their claim; one
/// `member_ttl` more for a slow step.
pub fn handover_wait(cfg: &ClusterConfig, detect: &DetectConfig) -> Duration {
    cfg.member_ttl + detect.poll_interval * 2
}

/// Starts the node's task. `limit` bounds every NATS operation.
pub fn spawn(cfg: ClusterConfig, detect: DetectConfig, limit: Duration) -> Handle {
    let (inputs, input_rx) = mpsc::channel(1);
    let (report_tx, reports) = mpsc::channel(4);
    let task = tokio::spawn(run(cfg, detect, limit, input_rx, report_tx));
    Handle {
        inputs,
        reports,
        task,
    }
}

async fn run(
    cfg: ClusterConfig,
    detect: DetectConfig,
    limit: Duration,
    mut inputs: mpsc::Receiver<Input>,
    reports: mpsc::Sender<Report>,
) {
    let wait = handover_wait(&cfg, &detect);
    let mut node = match Node::new(&cfg, detect, limit).await {
        Ok(node) => node,
        Err(e) => {
            // Never part of the cluster: every report says why.
            tracing::error!(sensor = %cfg.name, "cluster: {e}; local-only detection");
            let mut stats = ClusterStats::default();
            while inputs.recv().await.is_some() {
                stats.steps += 1;
                stats.failed_steps += 1;
                let report = Report::local_only(format!("{e}"), stats);
                if reports.send(report).await.is_err() {
                    return;
                }
            }
            return;
        }
    };
    let waiting = Instant::now();
    while !node.client.connected() && waiting.elapsed() < FIRST_CONNECTION_WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Some(input) = inputs.recv().await {
        if let Some(d) = input.detect {
            node.reconfigure(d);
        }
        let summary = super::Summary {
            seq: 0,
            rates: input.rates,
            blocks: input.blocks,
        };
        let step = node.poll_summary(input.now, summary).await;
        for d in &step.decisions {
            tracing::debug!(sensor = %node.name(), "cluster: {d:?}");
        }
        if node.status == Status::Clustered {
            node.apply_claims(&input.claims).await;
        }
        let report = node.report(step.events);
        if reports.send(report).await.is_err() {
            break; // the daemon is stopping
        }
    }
    let _ = node.leave(wait).await;
}

impl Report {
    fn local_only(reason: String, stats: ClusterStats) -> Self {
        Self {
            status: Status::LocalOnly(reason),
            stats,
            events: Vec::new(),
            attacks: Vec::new(),
            members: Vec::new(),
            live: Vec::new(),
            claims: BTreeMap::new(),
            rejudging: false,
        }
    }

    /// The active network-wide attacks `me` owns.
    pub fn owned_by<'a>(&'a self, me: &'a str) -> impl Iterator<Item = &'a Attack> + 'a {
        self.attacks
            .iter()
            .filter(move |a| a.owner.as_deref() == Some(me))
            .map(|a| &a.attack)
    }
}

impl Node {
    /// Writes the claim changes; a failure is counted and logged (the next
    /// report's state has the daemon decide again).
    async fn apply_claims(&mut self, changes: &[ClaimChange]) {
        let now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for change in changes {
            let result = match change {
                ClaimChange::Claim(v) => self.client.claim(*v, now_unix).await,
                ClaimChange::Release(v) => self.client.release(*v).await,
            };
            match result {
                Ok(()) => self.stats.claim_writes += 1,
                Err(e) => {
                    self.stats.claim_write_errors += 1;
                    tracing::warn!(sensor = %self.name(), "cluster: {change:?}: {e}");
                }
            }
        }
    }

    fn report(&self, events: Vec<Event>) -> Report {
        if let Status::LocalOnly(reason) = &self.status {
            let mut r = Report::local_only(reason.clone(), self.stats);
            r.members = self.client.member_views();
            return r;
        }
        let live = self.client.live_members();
        let attacks = self
            .detector
            .attacks()
            .into_iter()
            .map(|attack| NetworkAttack {
                owner: owner::owner(&attack.victim, live.iter().map(String::as_str))
                    .map(str::to_string),
                attack,
            })
            .collect();
        Report {
            status: self.status.clone(),
            stats: self.stats,
            events,
            attacks,
            members: self.client.member_views(),
            live,
            claims: self.client.claims(),
            rejudging: self.rejudging(),
        }
    }
}
