//! Detector events to mitigations, and the mitigations kept on disk so a
//! restart announces them again at once.

use std::path::{Path, PathBuf};

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

/// The mitigator of `config`, with the mitigations saved before a restart
/// announced again (through `speaker`, if any) and logged.
pub(super) fn restore(
    config: &Config,
    speaker: &Option<Speaker>,
    events: &mut EventLog,
) -> Mitigator {
    let own = config
        .detect
        .as_ref()
        .map(|d| d.own_networks.clone())
        .unwrap_or_default();
    let mut mitigator = Mitigator::new(config.mitigation.clone(), own);
    let path = mitigations_file(&config.daemon.state_dir);
    match state::read_json::<Vec<Mitigation>>(&path) {
        Ok(Some(saved)) if !saved.is_empty() => {
            for r in mitigator.restore(saved, unix_now(), speaker) {
                events.record(r);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::error!("{e}: starting without the saved mitigations"),
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
        for r in self.mitigator.on_event(ev, now_unix, &self.speaker) {
            self.events.record(r);
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
        if let Err(e) = s.save_quarantine() {
            tracing::error!("saving the BGP quarantine: {e}");
        }
    }

    pub(super) fn save_mitigations(&mut self) {
        if let Some(active) = self.mitigator.take_changed() {
            let path = mitigations_file(&self.config.daemon.state_dir);
            if let Err(e) = state::write_json(&path, &active) {
                tracing::error!("saving the active mitigations: {e}");
            }
        }
    }
}

fn mitigations_file(dir: &Path) -> PathBuf {
    dir.join("mitigations.json")
}
