//! `[cluster]` in the loop: which detector's attacks the mitigator acts on.
//!
//! While the cluster is healthy every automatic mitigation comes from the
//! network-wide view, and only from the victim's owner: a local attack
//! seen here on a victim another sensor owns is that sensor's to announce
//! (this sensor's summary carries it there), so local events are logged
//! but not mitigated. When the cluster is unreachable (`LocalOnly`) the
//! sensor mitigates its own local attacks as without `[cluster]`.
//!
//! The decisions are made from state at each node [`Report`], not from
//! edges, so a lost report or a restart converges: the owned network
//! attacks are fed to the mitigator (ids moved out of the local detector's
//! range, [`NETWORK_ATTACK_IDS`]), those owned elsewhere now are handed
//! off (held `min_hold` from now, so the rule stays until the new holder
//! has its own: make before break), and a rule whose victim another live
//! sensor has claimed in the replicated mitigation state is withdrawn at
//! once. Claims follow what the mitigator actually announces. A fallback
//! to local-only hands off the network-wide attacks too, held as long as a
//! restored mitigation ([`RESTORE_GRACE_SECS`]): the attack cannot be
//! judged without the cluster, and an outage as short as a JetStream
//! leader election (seconds) must not take the rule away.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde_json::json;

use super::{Daemon, unix_now};
use crate::{
    cluster::{
        Status,
        runner::{self, ClaimChange, Input, Report},
    },
    detect::{Attack, Event},
    mitigate::{Mitigation, RESTORE_GRACE_SECS},
};

/// Network-wide attack ids are the network detector's plus this, so they
/// never meet the local detector's (which count from 1) in the mitigator.
pub(super) const NETWORK_ATTACK_IDS: u64 = 1 << 52;

/// Every NATS operation of a cluster step is bounded by this.
const NATS_OP_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Where the mitigator's automatic attacks come from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// No report yet: nothing is mitigated (at most the node's first
    /// connection wait, a few seconds), so a starting sensor does not
    /// announce what another already does.
    Starting,
    Network,
    Local,
}

/// The daemon's side of the cluster node.
pub(super) struct ClusterLink {
    name: String,
    fraction: f64,
    inputs: tokio::sync::mpsc::Sender<Input>,
    task: tokio::task::JoinHandle<()>,
    /// Taken by the loop (`select!`), see [`Daemon::take_cluster_reports`].
    reports: Option<tokio::sync::mpsc::Receiver<Report>>,
    pub(super) source: Source,
    /// The latest report (`status`, `cluster`, metrics).
    pub(super) last: Option<Report>,
    /// Network-wide victims the mitigator was told are under attack, with
    /// the attack id it knows.
    fed: BTreeMap<IpNet, u64>,
    /// Claim changes for the node's next step.
    claims: Vec<ClaimChange>,
    /// Mitigations saved before a restart, restored once the cluster's
    /// view has settled (or at the first local-only report) and says
    /// whether another sensor holds them meanwhile.
    pending_restore: Option<Vec<Mitigation>>,
    /// Polls whose summary was not handed over (the node still busy).
    pub(super) skipped_polls: u64,
    /// Rules withdrawn because another sensor announces them.
    pub(super) handovers: u64,
    /// Since when the network view is followed, and how long membership
    /// takes to be whole again after a start or an outage (every live
    /// member's heartbeat seen): no new announcement before, as this
    /// sensor could take itself for the owner among the few it has heard.
    network_since: Option<std::time::Instant>,
    settle: std::time::Duration,
    /// How long a clean stop may wait for the hand-over.
    handover_wait: std::time::Duration,
    /// A `[detect]` reloaded (SIGHUP) for the node's next step.
    detect: Option<crate::detect::DetectConfig>,
}

impl ClusterLink {
    /// Starts the node (a task of its own) when `[cluster]` is configured.
    pub(super) fn start(config: &crate::config::Config, saved: Vec<Mitigation>) -> Option<Self> {
        let cfg = config.cluster.as_ref()?;
        // Validation guarantees [detect] beside [cluster].
        let detect = config.detect.clone()?;
        let handover_wait = runner::handover_wait(cfg, &detect);
        let handle = runner::spawn(cfg.clone(), detect, NATS_OP_LIMIT);
        tracing::info!(sensor = %cfg.name, servers = ?cfg.servers, "cluster: joining");
        Some(Self {
            name: cfg.name.clone(),
            fraction: cfg.fraction,
            inputs: handle.inputs,
            task: handle.task,
            reports: Some(handle.reports),
            source: Source::Starting,
            last: None,
            fed: BTreeMap::new(),
            claims: Vec::new(),
            pending_restore: Some(saved),
            skipped_polls: 0,
            handovers: 0,
            network_since: None,
            settle: cfg.member_ttl,
            handover_wait,
            detect: None,
        })
    }
}

impl ClusterLink {
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// SIGHUP changed `[detect]`: the network-wide detector takes it at
    /// the node's next step (kept until a step takes it).
    pub(super) fn reconfigure(&mut self, detect: crate::detect::DetectConfig) {
        self.detect = Some(detect);
    }

    /// A clean stop: the node leaves the cluster at once (its victims move
    /// to their next owners now rather than after `member_ttl`) and waits
    /// until they have announced the rules announced here (bounded), so
    /// the caller withdraws them after: make before break. Claims left
    /// behind are replaced by the new owners, or cleared as orphans.
    pub(super) async fn leave(self) {
        drop(self.inputs);
        let bound = NATS_OP_LIMIT * 4 + self.handover_wait;
        if tokio::time::timeout(bound, self.task).await.is_err() {
            tracing::warn!("cluster: leaving took longer than {bound:?}");
        }
    }
}

impl Daemon<'_> {
    /// Whether local detector events go to the mitigator.
    pub(super) fn local_mitigates(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| c.source == Source::Local)
    }

    /// The node's reports, for the loop's `select!`.
    pub(super) fn take_cluster_reports(&mut self) -> Option<tokio::sync::mpsc::Receiver<Report>> {
        self.cluster.as_mut().and_then(|c| c.reports.take())
    }

    /// After the local poll: the summary and the pending claim changes to
    /// the node, without waiting.
    pub(super) fn feed_cluster(&mut self) {
        let (Some(c), Some(detector)) = (&mut self.cluster, &self.detector) else {
            return;
        };
        let input = Input {
            now: self.started.elapsed(),
            rates: detector.near_threshold(c.fraction).collect(),
            blocks: detector.block_rest(c.fraction),
            claims: std::mem::take(&mut c.claims),
            detect: c.detect.clone(),
        };
        match c.inputs.try_send(input) {
            Ok(()) => c.detect = None,
            Err(e) => {
                c.skipped_polls += 1;
                // The claims are decided again from the next report.
                tracing::debug!("cluster: node busy, poll skipped: {e}");
            }
        }
    }

    /// A node report: switch sources on a status change, then make the
    /// mitigator and the claims match the network-wide attacks owned here.
    pub(super) fn on_cluster_report(&mut self, report: Report) {
        let now = unix_now();
        let Some(c) = &mut self.cluster else { return };
        let clustered = report.status == Status::Clustered;
        let was = c.source;
        c.source = if clustered {
            Source::Network
        } else {
            Source::Local
        };
        if c.source != Source::Network {
            c.network_since = None;
        } else if was != Source::Network {
            c.network_since = Some(std::time::Instant::now());
        }
        if let Some(s) = &self.speaker {
            // Clustered, one owner announces each rule; an identical one
            // from a member (the old owner, through the reflector) must
            // not hold the new owner's back. Local-only, two sensors may
            // see one attack: one copy on the router is enough.
            s.set_hold_back_duplicates(c.source != Source::Network);
        }
        let mut records = Vec::new();
        // Clustered, the claims and the membership are whole once every
        // live member's heartbeat has had time to arrive (the node's
        // watches start empty).
        let settled = c.network_since.is_some_and(|t| t.elapsed() >= c.settle);
        let restore_now = !clustered || settled;
        if let Some(saved) = c.pending_restore.take_if(|_| restore_now) {
            // Clustered, an automatic mitigation is restored by the
            // victim's owner only (it takes its victim back): any other
            // sensor's rule would be a second copy, whether the owner has
            // claimed the victim yet or not.
            let live = || report.live.iter().map(String::as_str);
            let (keep, held): (Vec<_>, Vec<_>) = saved.into_iter().partition(|m| {
                m.manual
                    || !clustered
                    || crate::cluster::owner::owner(&m.victim, live()) == Some(c.name.as_str())
            });
            for m in held {
                let owner = crate::cluster::owner::owner(&m.victim, live()).unwrap_or("-");
                let holder = report.claims.get(&m.victim).map(|cl| cl.sensor.as_str());
                self.events
                    .record(json!({"event": "mitigation_not_restored",
                    "reason": format!("sensor {owner} owns the victim"),
                    "announced_by": holder, "mitigation": m}));
            }
            if !keep.is_empty() {
                records.extend(self.mitigator.restore(keep, now, &self.speaker));
            }
        }
        let Some(c) = &mut self.cluster else { return };
        let local_attacks = self
            .detector
            .as_ref()
            .map(|d| d.attacks())
            .unwrap_or_default();
        match (was, c.source) {
            (Source::Network | Source::Starting, Source::Local) => {
                if was == Source::Network {
                    tracing::warn!(
                        "cluster: {}; mitigating local attacks only",
                        report.status_reason()
                    );
                }
                // A network-wide attack cannot be judged while the cluster
                // is away: its rule stays as long as a restored one does,
                // unless the cluster comes back before (resumed) or a local
                // attack on the same victim adopts it (no gap).
                for (_, id) in std::mem::take(&mut c.fed) {
                    self.mitigator
                        .attack_handed_off(id, now, RESTORE_GRACE_SECS);
                }
                for a in &local_attacks {
                    if !self.mitigator.resume_attack(a.id, now) {
                        records.extend(self.mitigator.on_event(
                            &Event::AttackStarted(a.clone()),
                            now,
                            &self.speaker,
                        ));
                        // Adopted: the hand-off's grace gives way to min_hold.
                        self.mitigator.resume_attack(a.id, now);
                    }
                }
            }
            (Source::Local, Source::Network) => {
                tracing::info!("cluster: back; network-wide attacks are mitigated by their owners");
                // Local mitigations end (held: they stay until the owner
                // claims the victim, or adopted if the owner is this one).
                for a in &local_attacks {
                    self.mitigator.attack_handed_off(a.id, now, 0);
                }
            }
            _ => {}
        }
        if c.source == Source::Network {
            records.extend(self.follow_network(&report, &local_attacks, now));
        }
        for r in records {
            self.events.record(r);
        }
        if let Some(c) = &mut self.cluster {
            c.last = Some(report);
        }
        self.save_mitigations();
        self.update_state_metrics();
    }

    /// The mitigator and the claims made to match `report` (clustered).
    fn follow_network(
        &mut self,
        report: &Report,
        local: &[Attack],
        now: u64,
    ) -> Vec<crate::mitigate::Record> {
        let mut records = Vec::new();
        for ev in &report.events {
            let name = match ev {
                Event::AttackStarted(_) => "attack_started",
                Event::AttackUpdated(_) => "attack_updated",
                Event::AttackEnded(_) => "attack_ended",
            };
            self.events
                .record(json!({"event": name, "scope": "network", "attack": ev.attack()}));
        }
        let Some(c) = &mut self.cluster else {
            return records;
        };
        let updated: BTreeSet<IpNet> = report
            .events
            .iter()
            .filter_map(|e| match e {
                Event::AttackUpdated(a) => Some(a.victim),
                _ => None,
            })
            .collect();
        // The owned attacks, with this sensor's fingerprint where it sees
        // the attack itself (the summaries carry no samples).
        let owned: BTreeMap<IpNet, Attack> = report
            .owned_by(&c.name)
            .map(|a| {
                let mut a = a.clone();
                a.id += NETWORK_ATTACK_IDS;
                if let Some(l) = local.iter().find(|l| l.victim == a.victim) {
                    a.fingerprint = l.fingerprint.clone();
                }
                (a.victim, a)
            })
            .collect();
        let settled = c.network_since.is_some_and(|t| t.elapsed() >= c.settle);
        for (victim, attack) in &owned {
            let ev = match c.fed.get(victim) {
                // Followed before a fallback: its held mitigation resumes.
                None if self.mitigator.resume_attack(attack.id, now) => None,
                None if !settled => continue,
                None => Some(Event::AttackStarted(attack.clone())),
                Some(id) if *id != attack.id => {
                    self.mitigator.attack_ended(*id, now);
                    Some(Event::AttackStarted(attack.clone()))
                }
                Some(_) if updated.contains(victim) => Some(Event::AttackUpdated(attack.clone())),
                Some(_) => None,
            };
            c.fed.insert(*victim, attack.id);
            if let Some(ev) = ev {
                let adopting = matches!(ev, Event::AttackStarted(_));
                tracing::info!(
                    "cluster: network-wide attack on {victim} is this sensor's to mitigate \
                     (rendezvous owner among {:?})",
                    report.live
                );
                records.extend(self.mitigator.on_event(&ev, now, &self.speaker));
                if adopting {
                    // A held mitigation adopted: the hand-off's (or a
                    // restore's) grace gives way to min_hold from now.
                    self.mitigator.resume_attack(attack.id, now);
                }
            }
        }
        let gone: Vec<(IpNet, u64)> = c
            .fed
            .iter()
            .filter(|(v, _)| !owned.contains_key(v))
            .map(|(v, id)| (*v, *id))
            .collect();
        let attacked: BTreeSet<IpNet> = report.attacks.iter().map(|a| a.attack.victim).collect();
        for (victim, id) in gone {
            if attacked.contains(&victim) || report.rejudging {
                // Owned elsewhere now: kept until the owner has its rule.
                // Or the detector was rebuilt (SIGHUP) and has not
                // measured it again yet: held `min_hold`, adopted again
                // if it is still on.
                self.mitigator.attack_handed_off(id, now, 0);
            } else {
                self.mitigator.attack_ended(id, now);
            }
            c.fed.remove(&victim);
        }
        // Another live sensor announces it: withdraw here at once.
        let handed: BTreeSet<IpNet> = self
            .mitigator
            .active()
            .filter(|m| !m.manual && !owned.contains_key(&m.victim))
            .filter(|m| {
                report
                    .claims
                    .get(&m.victim)
                    .is_some_and(|cl| cl.sensor != c.name && report.live.contains(&cl.sensor))
            })
            .map(|m| m.victim)
            .collect();
        for victim in handed {
            tracing::info!(
                "cluster: {victim} is announced by {}: withdrawn here",
                report.claims[&victim].sensor
            );
            c.handovers += 1;
            records.extend(self.mitigator.hand_over(victim, &self.speaker));
        }
        // The claims follow the automatic mitigations announced here.
        let mine: BTreeSet<IpNet> = self
            .mitigator
            .active()
            .filter(|m| !m.manual && m.ended.is_none())
            .map(|m| m.victim)
            .collect();
        let mut changes: Vec<ClaimChange> = mine
            .iter()
            .filter(|v| report.claims.get(v).is_none_or(|cl| cl.sensor != c.name))
            .map(|v| ClaimChange::Claim(*v))
            .collect();
        let held_here: BTreeSet<IpNet> = self
            .mitigator
            .active()
            .filter(|m| !m.manual)
            .map(|m| m.victim)
            .collect();
        for (victim, claim) in &report.claims {
            let release = if claim.sensor == c.name {
                // Withdrawn here (held rules keep their claim).
                !held_here.contains(victim)
            } else {
                // Its holder is gone and nobody attacks it any more: the
                // victim's owner clears the orphan.
                !report.live.contains(&claim.sensor)
                    && !attacked.contains(victim)
                    && crate::cluster::owner::owner(victim, report.live.iter().map(String::as_str))
                        == Some(c.name.as_str())
            };
            if release {
                changes.push(ClaimChange::Release(*victim));
            }
        }
        c.claims = changes;
        records
    }

    /// `edge-sensor cluster`: members, lag, the network-wide attacks with
    /// their owner and holder.
    pub(super) fn cluster_json(&self) -> serde_json::Value {
        let Some(c) = &self.cluster else {
            return json!({"configured": false});
        };
        let Some(r) = &c.last else {
            return json!({"configured": true, "name": c.name, "state": "starting",
                "reason": null, "members": [], "attacks": [], "stats": null});
        };
        let attacks: Vec<_> = r
            .attacks
            .iter()
            .map(|a| {
                json!({"victim": a.attack.victim, "class": a.attack.class.to_string(),
                    "pps": a.attack.pps, "bps": a.attack.bps, "owner": a.owner,
                    "announced_by": r.claims.get(&a.attack.victim).map(|cl| &cl.sensor)})
            })
            .collect();
        json!({
            "configured": true,
            "name": c.name,
            "state": match r.status { Status::Clustered => "clustered", Status::LocalOnly(_) => "local_only" },
            "reason": match &r.status { Status::LocalOnly(why) => Some(why), _ => None },
            "members": r.members,
            "attacks": attacks,
            "claims": r.claims.values().collect::<Vec<_>>(),
            "stats": self.cluster_stats_json(),
        })
    }

    /// `status`'s `cluster`: `null` without `[cluster]`.
    pub(super) fn cluster_status_json(&self) -> serde_json::Value {
        let Some(c) = &self.cluster else {
            return serde_json::Value::Null;
        };
        let (state, reason) = match c.last.as_ref().map(|r| &r.status) {
            None => ("starting", None),
            Some(Status::Clustered) => ("clustered", None),
            Some(Status::LocalOnly(why)) => ("local_only", Some(why.clone())),
        };
        json!({"name": c.name, "state": state, "reason": reason,
            "members": c.last.as_ref().map_or(0, |r| r.live.len()),
            "stats": self.cluster_stats_json()})
    }

    /// The node's counters and the daemon's own (`status`, metrics).
    pub(super) fn cluster_stats_json(&self) -> serde_json::Value {
        let Some(c) = &self.cluster else {
            return serde_json::Value::Null;
        };
        let mut stats = c
            .last
            .as_ref()
            .map(|r| serde_json::to_value(r.stats).unwrap_or_default())
            .unwrap_or_else(|| json!({}));
        stats["skipped_polls"] = json!(c.skipped_polls);
        stats["handovers"] = json!(c.handovers);
        stats
    }
}

impl Report {
    fn status_reason(&self) -> String {
        match &self.status {
            Status::LocalOnly(why) => why.clone(),
            Status::Clustered => "clustered".into(),
        }
    }
}
