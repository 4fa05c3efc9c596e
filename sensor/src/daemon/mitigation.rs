//! Detector events to mitigations, and the mitigations kept on disk so a
//! restart announces them again at once.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::json;

use super::{Daemon, unix_now};
use crate::{
    bgp::Speaker,
    config::Config,
    detect::Event,
    mitigate::{Mitigation, Mitigator, log::EventLog},
    state,
};

/// Ended attacks `edge-sensor attacks` shows.
const RECENT_ATTACKS: usize = 100;

/// The networks the mitigator's safety checks take as the operator's: the
/// configured own networks, and with `detect.networks_from_bgp` the whole
/// ceiling (`bgp.announce_within`) until the peers' tables are in and the
/// learnt networks replace it ([`Daemon::follow_bgp_networks`]).
pub(super) fn mitigator_networks(config: &Config) -> Vec<IpNet> {
    let Some(d) = &config.detect else {
        return Vec::new();
    };
    let mut own = d.own_networks.clone();
    if !d.networks_from_bgp.is_empty()
        && let Some(b) = &config.bgp
    {
        own.extend(b.announce_within.iter().copied());
    }
    own
}

/// The mitigations saved before a restart (none when unreadable: said in
/// the log).
pub(super) fn saved(config: &Config) -> Vec<Mitigation> {
    let path = mitigations_file(&config.daemon.state_dir);
    match state::read_json::<Vec<Mitigation>>(&path) {
        Ok(saved) => saved.unwrap_or_default(),
        Err(e) => {
            tracing::error!("{e}: starting without the saved mitigations");
            Vec::new()
        }
    }
}

/// The mitigator of `config`, with the mitigations saved before a restart
/// announced again (through `speaker`, if any) and logged.
pub(super) fn restore(
    config: &Config,
    saved: Vec<Mitigation>,
    speaker: &Option<Speaker>,
    events: &mut EventLog,
) -> Mitigator {
    let mut mitigator = Mitigator::new(config.mitigation.clone(), mitigator_networks(config));
    if !saved.is_empty() {
        for r in mitigator.restore(saved, unix_now(), speaker) {
            events.record(r);
        }
    }
    mitigator
}

impl Daemon<'_> {
    pub(super) fn on_event(&mut self, ev: &Event, now_unix: u64) {
        let name = match ev {
            Event::AttackStarted(_) => "attack_started",
            Event::AttackUpdated(_) => "attack_updated",
            Event::AttackEnded(_) => "attack_ended",
        };
        self.events
            .record(json!({"event": name, "attack": ev.attack()}));
        // Clustered: the network-wide view's owner mitigates (this
        // sensor's summary carries the attack there).
        let mitigate = self.local_mitigates();
        // Say when another system's Flow Spec rule already covers it.
        if let (Event::AttackStarted(a), Some(s)) = (ev, &self.speaker) {
            let rules = s.foreign_rules_covering(a.victim.addr());
            if !rules.is_empty() {
                self.events
                    .record(json!({"event": "attack_covered_elsewhere",
                    "attack": a.id, "victim": a.victim, "rules": rules}));
            }
        }
        if let Event::AttackEnded(a) = ev {
            if self.recent.len() == RECENT_ATTACKS {
                self.recent.pop_front();
            }
            self.recent.push_back(a.clone());
        }
        if mitigate {
            for r in self.mitigator.on_event(ev, now_unix, &self.speaker) {
                self.events.record(r);
            }
        }
    }

    /// Routes the speaker quarantined: their mitigations fall back; the
    /// quarantine is saved.
    pub(super) fn on_quarantine(&mut self) {
        let Some(s) = &self.speaker else { return };
        // Rules held back as duplicates whose foreign copy is gone.
        for a in s.resume_suppressed() {
            self.events
                .record(json!({"event": "duplicate_released", "route": a.key, "peers": a.peers}));
        }
        for ev in s.quarantine_events() {
            for r in self
                .mitigator
                .on_quarantine(&ev.peer, &ev.route, &ev.reason, s)
            {
                self.events.record(r);
            }
        }
        let result = s.save_quarantine();
        self.saves
            .record(StateFile::Quarantine, result.err().map(|e| e.to_string()));
    }

    /// Saves the active mitigations if they changed, or if the last save
    /// failed (a full or read-only disk may recover). Returns whether what
    /// is active is on disk.
    pub(super) fn save_mitigations(&mut self) -> bool {
        let active = match self.mitigator.take_changed() {
            Some(active) => active,
            None if self.saves.mitigations.is_some() => self.mitigator.active().cloned().collect(),
            None => return true,
        };
        let path = mitigations_file(&self.config.daemon.state_dir);
        let result = state::write_json(&path, &active);
        self.saves.record(
            StateFile::Mitigations,
            result.as_ref().err().map(|e| e.to_string()),
        );
        result.is_ok()
    }
}

/// The state files the daemon writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StateFile {
    Mitigations,
    Templates,
    Quarantine,
}

impl StateFile {
    pub(super) const ALL: [Self; 3] = [Self::Mitigations, Self::Templates, Self::Quarantine];

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Mitigations => "mitigations",
            Self::Templates => "templates",
            Self::Quarantine => "quarantine",
        }
    }
}

/// Failed state saves, so `status`, the metrics and a `ban` reply can say
/// what a restart would lose (the log alone goes unread).
#[derive(Debug, Default)]
pub(super) struct SaveHealth {
    /// The last error per file while its last save failed; `None` once saved.
    pub(super) mitigations: Option<String>,
    pub(super) templates: Option<String>,
    pub(super) quarantine: Option<String>,
    /// Failed saves since the start, per file.
    pub(super) failures: [u64; 3],
}

impl SaveHealth {
    pub(super) fn record(&mut self, file: StateFile, error: Option<String>) {
        let slot = self.slot(file);
        match error {
            Some(e) => {
                // Logged when it starts failing, not at every retry.
                if slot.is_none() {
                    tracing::error!("saving the {}: {e}", file.name());
                }
                *slot = Some(e);
                self.failures[file as usize] += 1;
            }
            None => {
                if slot.take().is_some() {
                    tracing::info!("saving the {} works again", file.name());
                }
            }
        }
    }

    fn slot(&mut self, file: StateFile) -> &mut Option<String> {
        match file {
            StateFile::Mitigations => &mut self.mitigations,
            StateFile::Templates => &mut self.templates,
            StateFile::Quarantine => &mut self.quarantine,
        }
    }

    pub(super) fn error(&self, file: StateFile) -> Option<&str> {
        match file {
            StateFile::Mitigations => self.mitigations.as_deref(),
            StateFile::Templates => self.templates.as_deref(),
            StateFile::Quarantine => self.quarantine.as_deref(),
        }
    }

    pub(super) fn to_json(&self, dir: &Path) -> serde_json::Value {
        let files: serde_json::Map<String, serde_json::Value> = StateFile::ALL
            .iter()
            .map(|f| {
                (
                    f.name().to_string(),
                    json!({"persisted": self.error(*f).is_none(), "error": self.error(*f),
                        "failures": self.failures[*f as usize]}),
                )
            })
            .collect();
        json!({
            "dir": dir,
            "persisted": StateFile::ALL.iter().all(|f| self.error(*f).is_none()),
            "files": files,
        })
    }
}

fn mitigations_file(dir: &Path) -> PathBuf {
    dir.join("mitigations.json")
}
