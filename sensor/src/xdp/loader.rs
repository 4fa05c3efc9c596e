//! Loading the embedded XDP object: pinned maps, program, port table.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    ffi::CString,
    fs, io,
    net::IpAddr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader, Pod,
    maps::{
        Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, Xdp},
};
use edge_sensor_common::{
    AGENT_STATE, AgentState, DEFAULT_MAX_DESTINATIONS, DST_STATS, DstKey, DstStats, EXPORTER_ALLOW,
    EXPORTER_STATS, ExporterKey, ExporterStats, GLOBAL_STATS, GlobalStats, PortConfig, SETTINGS,
    Settings, TELEMETRY_PORTS, TelemetryKind, XDP_PROGRAM,
};
use edge_sensor_common::{
    DOMAIN_RATE, FLOW_PLANS, FLOW_RATES, MAX_WATCHED, Plan, PlanKey, RateKey, SAMPLING_RULES,
    SamplingRule, USER_DST_STATS, USER_EXPORTER_STATS, WATCH_SAMPLES, WATCH_STATS, WATCHED,
    WatchSample, WatchStats,
};
use ipnet::IpNet;

use super::{EBPF_OBJECT, pins, read, verifier};
use crate::{
    addr,
    counters::{Destinations, Report},
    telemetry::{sampling::SamplingRules, template::TemplateCache},
};

/// The trie key of `net`: IPv4 as mapped IPv6, so its prefix is 96 + n.
fn trie_key(net: &IpNet) -> Key<[u8; 16]> {
    match net {
        IpNet::V4(v4) => Key::new(
            96 + u32::from(v4.prefix_len()),
            v4.addr().to_ipv6_mapped().octets(),
        ),
        IpNet::V6(v6) => Key::new(u32::from(v6.prefix_len()), v6.addr().octets()),
    }
}

/// bpffs' magic number (`BPF_FS_MAGIC` in linux/magic.h).
pub(super) const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where to pin the counter maps; `None` leaves them unpinned (tests).
    pub pin_dir: Option<PathBuf>,
    /// UDP ports the program treats as telemetry.
    pub ports: Vec<(u16, TelemetryKind)>,
    /// Capacity of the per-destination map.
    pub max_destinations: u32,
    /// Exporter allow-list; empty accepts any exporter.
    pub allow: Vec<IpNet>,
    /// Pass consumed datagrams on instead of dropping them.
    pub pass_telemetry: bool,
    /// Configured sampling rates per exporter prefix.
    pub sampling: SamplingRules,
}

impl LoadOptions {
    /// Default ports and capacity, any exporter, nothing pinned: for tests
    /// and `edge-sensor decode`.
    pub fn unpinned(max_destinations: u32) -> Self {
        Self {
            pin_dir: None,
            ports: crate::telemetry::default_port_table(),
            max_destinations,
            allow: Vec::new(),
            pass_telemetry: false,
            sampling: SamplingRules::default(),
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::unpinned(DEFAULT_MAX_DESTINATIONS)
    }
}

/// The sensor could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this binary was built without its XDP object: build it with `cargo xtask build` \
         (or `cargo xtask build-ebpf` before `cargo build`)"
    )]
    NoObject,
    #[error("pin path {dir}: {message}")]
    PinDir { dir: PathBuf, message: String },
    #[error(transparent)]
    Pin(#[from] pins::PinError),
    #[error("loading the eBPF object: {0} (needs root or CAP_BPF + CAP_NET_ADMIN)")]
    Object(#[source] EbpfError),
    #[error("program {XDP_PROGRAM} is missing from the eBPF object")]
    MissingProgram,
    #[error("verifying/loading program {XDP_PROGRAM}: {0}")]
    Program(#[source] ProgramError),
    #[error("the kernel's verifier refused program {XDP_PROGRAM}: {}", .0.reason())]
    Refused(Box<Refusal>),
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
}

/// A program the verifier refused: the system call's error and its log.
#[derive(Debug)]
pub struct Refusal {
    pub error: io::Error,
    /// The log as aya kept it (its tail when it was long).
    pub log: String,
    pub summary: verifier::Summary,
}

impl Refusal {
    /// The verifier's reason, else the system call's error.
    pub fn reason(&self) -> String {
        self.summary
            .reason
            .clone()
            .unwrap_or_else(|| self.error.to_string())
    }
}

/// The loaded (not yet attached) XDP program and its maps.
pub struct Sensor {
    ebpf: Ebpf,
    /// What was last written to `SETTINGS`.
    settings: Settings,
    /// What `WATCHED` holds.
    watched: BTreeSet<IpAddr>,
    /// The ports `TELEMETRY_PORTS` names.
    ports: Vec<u16>,
    /// Once `USER_DST_STATS` is full: the destinations it holds. Nothing
    /// deletes from it, so they are all it will ever hold, and
    /// [`Sensor::publish_user`] updates them alone instead of trying every
    /// destination each time (a refused insert is a syscall too: at 1M
    /// destinations a million a second, over half the daemon's CPU).
    user_full: Option<HashSet<IpAddr>>,
}

impl Sensor {
    /// Loads the embedded object: checks and pins the counter maps, loads
    /// (verifies) the program and fills the telemetry port table.
    pub fn load(opts: &LoadOptions) -> Result<Self, LoadError> {
        Self::load_object(opts, EBPF_OBJECT)
    }

    /// [`Sensor::load`] of another build of the program with the same map
    /// and table layouts (the benchmark times an earlier one beside it).
    pub fn load_object(opts: &LoadOptions, object: &[u8]) -> Result<Self, LoadError> {
        let mut sensor = Self::open_object(opts, object)?;
        sensor.load_program()?;
        Ok(sensor)
    }

    /// Creates (or reuses) and pins the maps and fills the tables, without
    /// loading the program: maps need no verifier, so a sensor whose
    /// program is refused still has them for its userspace collector.
    pub fn open(opts: &LoadOptions) -> Result<Self, LoadError> {
        Self::open_object(opts, EBPF_OBJECT)
    }

    fn open_object(opts: &LoadOptions, object: &[u8]) -> Result<Self, LoadError> {
        if object.is_empty() {
            return Err(LoadError::NoObject);
        }
        raise_memlock_limit();

        let mut loader = EbpfLoader::new();
        loader.map_max_entries(DST_STATS, opts.max_destinations);
        if let Some(dir) = &opts.pin_dir {
            prepare_pin_dir(dir)?;
            for spec in pins::pinned_maps(opts.max_destinations) {
                let path = dir.join(spec.name);
                spec.check_pin(&path)?;
                loader.map_pin_path(spec.name, path);
            }
        }
        let ebpf = loader.load(object).map_err(LoadError::Object)?;
        let mut sensor = Self {
            ebpf,
            settings: Settings::default(),
            watched: BTreeSet::new(),
            ports: Vec::new(),
            user_full: None,
        };
        sensor.set_ports(&opts.ports)?;
        sensor.set_exporters(&opts.allow, opts.pass_telemetry)?;
        sensor.set_sampling(&opts.sampling)?;
        Ok(sensor)
    }

    /// Loads (verifies) the program; a refusal comes with its log summarised.
    pub fn load_program(&mut self) -> Result<(), LoadError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(LoadError::MissingProgram)?
            .try_into()
            .map_err(LoadError::Program)?;
        // The verifier gives up with EAGAIN when a signal is pending (a
        // child exiting, a SIGHUP): that is not the program's fault, so the
        // load is tried again, a bounded number of times (as libbpf does).
        let mut attempts = 0;
        loop {
            match program.load() {
                Ok(()) => return Ok(()),
                Err(ProgramError::LoadError { io_error, .. })
                    if io_error.raw_os_error() == Some(libc::EAGAIN) && attempts < 5 =>
                {
                    attempts += 1;
                    tracing::debug!(attempts, "program load interrupted by a signal: again");
                }
                Err(ProgramError::LoadError {
                    io_error,
                    verifier_log,
                }) => {
                    let log = verifier_log.to_string();
                    return Err(LoadError::Refused(Box::new(Refusal {
                        error: io_error,
                        summary: verifier::summarize(&log),
                        log,
                    })));
                }
                Err(e) => return Err(LoadError::Program(e)),
            }
        }
    }

    /// Sets the exporter allow-list (empty: any) and `pass_telemetry`.
    pub fn set_exporters(
        &mut self,
        allow: &[IpNet],
        pass_telemetry: bool,
    ) -> Result<(), LoadError> {
        let trie_err = |source| LoadError::Map {
            name: EXPORTER_ALLOW,
            source,
        };
        let map = self
            .ebpf
            .map_mut(EXPORTER_ALLOW)
            .ok_or(LoadError::MissingMap(EXPORTER_ALLOW))?;
        let mut trie: LpmTrie<_, [u8; 16], u8> = LpmTrie::try_from(map).map_err(trie_err)?;
        let stale: Vec<Key<[u8; 16]>> = trie.keys().filter_map(Result::ok).collect();
        for key in stale {
            trie.remove(&key).map_err(trie_err)?;
        }
        for net in allow {
            trie.insert(&trie_key(net), 1, 0).map_err(trie_err)?;
        }

        self.settings.allow_any_exporter = u8::from(allow.is_empty());
        self.settings.pass_telemetry = u8::from(pass_telemetry);
        self.write_settings()
    }

    fn write_settings(&mut self) -> Result<(), LoadError> {
        let settings = self.settings;
        let map = self
            .ebpf
            .map_mut(SETTINGS)
            .ok_or(LoadError::MissingMap(SETTINGS))?;
        let mut array: Array<_, Settings> =
            Array::try_from(map).map_err(|source| LoadError::Map {
                name: SETTINGS,
                source,
            })?;
        array.set(0, settings, 0).map_err(|source| LoadError::Map {
            name: SETTINGS,
            source,
        })
    }

    /// Replaces the configured sampling rules (`SAMPLING_RULES`).
    pub fn set_sampling(&mut self, rules: &SamplingRules) -> Result<(), LoadError> {
        let trie_err = |source| LoadError::Map {
            name: SAMPLING_RULES,
            source,
        };
        let map = self
            .ebpf
            .map_mut(SAMPLING_RULES)
            .ok_or(LoadError::MissingMap(SAMPLING_RULES))?;
        let mut trie: LpmTrie<_, [u8; 16], SamplingRule> =
            LpmTrie::try_from(map).map_err(trie_err)?;
        let stale: Vec<Key<[u8; 16]>> = trie.keys().filter_map(Result::ok).collect();
        for key in stale {
            trie.remove(&key).map_err(trie_err)?;
        }
        for (net, rule) in rules.iter() {
            trie.insert(&trie_key(net), *rule, 0).map_err(trie_err)?;
        }
        // The program asks the trie only when this says it has rules; set
        // after they are in (a datagram meanwhile sees none, as before).
        let any = u8::from(rules.iter().next().is_some());
        if any != self.settings.sampling_rules {
            self.settings.sampling_rules = any;
            self.write_settings()?;
        }
        Ok(())
    }

    /// Makes `WATCHED` hold exactly `watch`: the destinations whose samples
    /// the kernel streams on `WATCH_SAMPLES` (at most [`MAX_WATCHED`]; the
    /// rest are left out with a warning).
    pub fn set_watched(&mut self, watch: &BTreeSet<IpAddr>) -> Result<(), LoadError> {
        if *watch == self.watched {
            return Ok(());
        }
        let map_err = |source| LoadError::Map {
            name: WATCHED,
            source,
        };
        let map = self
            .ebpf
            .map_mut(WATCHED)
            .ok_or(LoadError::MissingMap(WATCHED))?;
        let mut table: HashMap<_, DstKey, u8> = HashMap::try_from(map).map_err(map_err)?;
        for gone in self.watched.difference(watch) {
            let key = DstKey {
                addr: addr::to_key(*gone),
            };
            match table.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        let mut now = BTreeSet::new();
        for ip in watch {
            if now.len() >= MAX_WATCHED as usize {
                tracing::warn!(
                    "{} destinations to watch, the kernel streams the first {MAX_WATCHED}",
                    watch.len()
                );
                break;
            }
            let key = DstKey {
                addr: addr::to_key(*ip),
            };
            table.insert(key, 1, 0).map_err(map_err)?;
            now.insert(*ip);
        }
        self.watched = now;
        let watching = u8::from(!self.watched.is_empty());
        if watching != self.settings.watching {
            self.settings.watching = watching;
            self.write_settings()?;
        }
        Ok(())
    }

    /// Takes the ring of watched samples out of the object, for the reader.
    pub fn take_watch_ring(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(WATCH_SAMPLES)
            .ok_or(LoadError::MissingMap(WATCH_SAMPLES))?;
        RingBuf::try_from(map).map_err(|source| LoadError::Map {
            name: WATCH_SAMPLES,
            source,
        })
    }

    /// Reads up to `max` samples off the ring taken with
    /// [`Self::take_watch_ring`] (a bound, so a flood cannot starve the
    /// poll loop; what is left is read next time).
    pub fn read_watch(ring: &mut RingBuf<MapData>, max: usize) -> Vec<WatchSample> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(item) = ring.next() else { break };
            if item.len() >= size_of::<WatchSample>() {
                out.push(bytemuck::pod_read_unaligned(
                    &item[..size_of::<WatchSample>()],
                ));
            }
        }
        out
    }

    /// Samples streamed and lost (ring full), summed over CPUs.
    pub fn watch_stats(&self) -> Result<WatchStats, LoadError> {
        let map_err = |source| LoadError::Map {
            name: WATCH_STATS,
            source,
        };
        let map = self
            .ebpf
            .map(WATCH_STATS)
            .ok_or(LoadError::MissingMap(WATCH_STATS))?;
        let array: PerCpuArray<_, WatchStats> = PerCpuArray::try_from(map).map_err(map_err)?;
        let mut total = WatchStats::default();
        for v in array.get(&0, 0).map_err(map_err)?.iter() {
            total.streamed += v.streamed;
            total.lost += v.lost;
        }
        Ok(total)
    }

    /// Replaces the telemetry port table with `ports`.
    pub fn set_ports(&mut self, ports: &[(u16, TelemetryKind)]) -> Result<(), LoadError> {
        let map_err = |source| LoadError::Map {
            name: TELEMETRY_PORTS,
            source,
        };
        let map = self
            .ebpf
            .map_mut(TELEMETRY_PORTS)
            .ok_or(LoadError::MissingMap(TELEMETRY_PORTS))?;
        if matches!(map, Map::HashMap(_)) {
            // A build from before the table was an array (the benchmark
            // times earlier builds beside this one).
            return set_ports_hash(map, ports);
        }
        let mut table: Array<_, PortConfig> = Array::try_from(map).map_err(map_err)?;
        let none = PortConfig::default();
        for &port in &self.ports {
            if !ports.iter().any(|(q, _)| *q == port) {
                table.set(u32::from(port), none, 0).map_err(map_err)?;
            }
        }
        for &(port, kind) in ports {
            let cfg = PortConfig {
                kind: kind as u8,
                _pad: [0; 3],
            };
            table.set(u32::from(port), cfg, 0).map_err(map_err)?;
        }
        self.ports = ports.iter().map(|(p, _)| *p).collect();
        Ok(())
    }

    /// Makes `FLOW_PLANS` and `FLOW_RATES` say what `cache` knows: a plan for
    /// every template the kernel can decode, every learnt sampling rate.
    pub fn sync_template_plans(&mut self, cache: &TemplateCache) -> Result<(), LoadError> {
        let plans: std::collections::HashMap<PlanKey, Plan> = cache
            .plans()
            .filter_map(|(k, plan)| {
                let key = PlanKey {
                    addr: addr::to_key(k.exporter.ip),
                    domain: k.domain,
                    template: k.id,
                    src_port: k.exporter.port,
                };
                plan.map(|p| (key, p))
            })
            .collect();
        let rates: std::collections::HashMap<RateKey, u32> = cache
            .rates()
            .map(|(session, domain, sampler, rate)| {
                let key = RateKey {
                    addr: addr::to_key(session.ip),
                    domain,
                    src_port: session.port,
                    _pad: 0,
                    sampler: sampler.unwrap_or(DOMAIN_RATE),
                };
                (key, rate)
            })
            .collect();
        self.replace(FLOW_PLANS, &plans)?;
        self.replace(FLOW_RATES, &rates)?;
        self.plans_changed()
    }

    /// Tells the program that `FLOW_PLANS` or `FLOW_RATES` changed, after
    /// the change: what a CPU looked up in them before is not reused.
    fn plans_changed(&mut self) -> Result<(), LoadError> {
        let next = self.settings.plans_generation.wrapping_add(1);
        self.settings.plans_generation = next.max(1);
        self.write_settings()
    }

    /// Publishes the daemon's userspace counts (`USER_*` maps) so readers
    /// add them to the kernel's. A full map drops the newest destinations
    /// (logged); nothing else is lost.
    pub fn publish_user(&mut self, report: &Report) -> Result<(), LoadError> {
        let map_err = |name| move |source| LoadError::Map { name, source };
        let map = self
            .ebpf
            .map_mut(USER_DST_STATS)
            .ok_or(LoadError::MissingMap(USER_DST_STATS))?;
        let mut dst: HashMap<_, DstKey, DstStats> =
            HashMap::try_from(map).map_err(map_err(USER_DST_STATS))?;
        // One line per poll, not one per destination: past the map's size
        // every poll would otherwise log each destination left out (a
        // million lines a poll at 1M destinations).
        let mut left_out = 0usize;
        let mut first: Option<(IpAddr, MapError)> = None;
        let key = |ip: IpAddr| DstKey {
            addr: addr::to_key(ip),
        };
        match &self.user_full {
            Some(held) => {
                let mut published = 0usize;
                for ip in held {
                    if let Some(stats) = report.destinations.get(ip) {
                        match dst.insert(key(*ip), stats, 0) {
                            Ok(()) => published += 1,
                            Err(e) => {
                                first.get_or_insert((*ip, e));
                            }
                        }
                    }
                }
                left_out = report.destinations.len() - published;
            }
            None => {
                let mut full = false;
                for (ip, stats) in &report.destinations {
                    if let Err(e) = dst.insert(key(*ip), stats, 0) {
                        left_out += 1;
                        full |= matches!(&e, MapError::SyscallError(s)
                            if s.io_error.raw_os_error() == Some(libc::E2BIG));
                        first.get_or_insert((*ip, e));
                    }
                }
                if full {
                    // Full: what it holds now is what it will hold.
                    let held: HashSet<IpAddr> = dst
                        .keys()
                        .filter_map(Result::ok)
                        .map(|k| addr::from_key(k.addr))
                        .collect();
                    self.user_full = Some(held);
                }
            }
        }
        if left_out > 0 {
            match first {
                Some((ip, e)) => tracing::warn!(
                    left_out,
                    "{USER_DST_STATS} is full: {left_out} destinations not published, {ip} first ({e})"
                ),
                None => tracing::warn!(
                    left_out,
                    "{USER_DST_STATS} is full: {left_out} destinations not published"
                ),
            }
        }
        let map = self
            .ebpf
            .map_mut(USER_EXPORTER_STATS)
            .ok_or(LoadError::MissingMap(USER_EXPORTER_STATS))?;
        let mut exp: HashMap<_, ExporterKey, ExporterStats> =
            HashMap::try_from(map).map_err(map_err(USER_EXPORTER_STATS))?;
        for (id, totals) in &report.exporters {
            exp.insert(id.to_key(), totals.stats, 0)
                .map_err(map_err(USER_EXPORTER_STATS))?;
        }
        Ok(())
    }

    /// Makes the hash map `name` hold exactly `want`.
    fn replace<K: Pod + Eq + std::hash::Hash, V: Pod>(
        &mut self,
        name: &'static str,
        want: &std::collections::HashMap<K, V>,
    ) -> Result<(), LoadError> {
        let map_err = |source| LoadError::Map { name, source };
        let map = self.ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
        let mut hash: HashMap<_, K, V> = HashMap::try_from(map).map_err(map_err)?;
        let stale: Vec<K> = hash
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !want.contains_key(k))
            .collect();
        for k in stale {
            hash.remove(&k).map_err(map_err)?;
        }
        for (k, v) in want {
            hash.insert(k, v, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// Empties the counter maps and the agents' sequence state.
    pub fn clear_counters(&mut self) -> Result<(), LoadError> {
        self.clear::<HashMap<_, DstKey, DstStats>, DstKey>(DST_STATS)?;
        self.clear::<PerCpuHashMap<_, ExporterKey, ExporterStats>, ExporterKey>(EXPORTER_STATS)?;
        self.clear::<HashMap<_, ExporterKey, AgentState>, ExporterKey>(AGENT_STATE)?;
        self.clear::<HashMap<_, PlanKey, Plan>, PlanKey>(FLOW_PLANS)?;
        self.clear::<HashMap<_, RateKey, u32>, RateKey>(FLOW_RATES)?;
        self.plans_changed()
    }

    fn clear<'a, M, K>(&'a mut self, name: &'static str) -> Result<(), LoadError>
    where
        M: TryFrom<&'a mut Map, Error = MapError> + KeyedMap<K>,
        K: Pod,
    {
        let map_err = |source| LoadError::Map { name, source };
        let map = self.ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
        let mut map = M::try_from(map).map_err(map_err)?;
        for key in map.all_keys().map_err(map_err)? {
            map.remove_key(&key).map_err(map_err)?;
        }
        Ok(())
    }

    /// The XDP program.
    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(XDP_PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("the program was checked at load")
    }

    /// The XDP program.
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(XDP_PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("the program was checked at load")
    }

    /// Every counter of the loaded program: destinations and exporters.
    pub fn report(&self) -> Result<Report, LoadError> {
        let map_err = |source| LoadError::Map {
            name: DST_STATS,
            source,
        };
        read::report(
            self.map(DST_STATS)?,
            self.map(EXPORTER_STATS)?,
            self.map(AGENT_STATE)?,
        )
        .map_err(map_err)
    }

    /// The exporters' counters only (cheap: no destination walk).
    pub fn exporters_report(&self) -> Result<Report, LoadError> {
        read::exporters_report(self.map(EXPORTER_STATS)?, self.map(AGENT_STATE)?).map_err(
            |source| LoadError::Map {
                name: EXPORTER_STATS,
                source,
            },
        )
    }

    /// A new reading of every destination's counters into `table`, in
    /// place, with the daemon's own counts (`user`) added: see
    /// [`read::update_destinations`].
    pub fn update_destinations(
        &self,
        user: &BTreeMap<IpAddr, DstStats>,
        table: &mut Destinations,
        each: impl FnMut(IpAddr, Option<&DstStats>, &DstStats),
    ) -> Result<(), LoadError> {
        read::update_destinations(self.map(DST_STATS)?, user, table, each).map_err(|source| {
            LoadError::Map {
                name: DST_STATS,
                source,
            }
        })
    }

    /// The program's whole-datagram counters, CPUs summed.
    pub fn global_stats(&self) -> Result<GlobalStats, LoadError> {
        read::global(self.map(GLOBAL_STATS)?).map_err(|source| LoadError::Map {
            name: GLOBAL_STATS,
            source,
        })
    }

    fn map(&self, name: &'static str) -> Result<&Map, LoadError> {
        self.ebpf.map(name).ok_or(LoadError::MissingMap(name))
    }
}

/// Creates the pin directory, refusing one that is not on a bpffs (pinning
/// would fail later with a less clear error).
fn prepare_pin_dir(dir: &Path) -> Result<(), LoadError> {
    let err = |message: String| LoadError::PinDir {
        dir: dir.to_owned(),
        message,
    };
    fs::create_dir_all(dir).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => err("permission denied: needs root or CAP_BPF".into()),
        _ => err(format!(
            "cannot create it: {e} (is a bpffs mounted on /sys/fs/bpf?)"
        )),
    })?;
    let c_path =
        CString::new(dir.as_os_str().as_bytes()).map_err(|_| err("contains a NUL byte".into()))?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and st is a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(err(format!("statfs: {}", io::Error::last_os_error())));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libc targets
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(err(
            "is not on a bpffs: mount one (`mount -t bpf bpf /sys/fs/bpf`) or pick a path under it"
                .into(),
        ));
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it. Later
/// kernels use memory cgroups and ignore it, so failure is not an error.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(
            "could not lift RLIMIT_MEMLOCK: {}",
            io::Error::last_os_error()
        );
    }
}

/// The hash maps whose keys can be listed and removed, per-CPU or not.
trait KeyedMap<K> {
    fn all_keys(&self) -> Result<Vec<K>, MapError>;
    fn remove_key(&mut self, key: &K) -> Result<(), MapError>;
}

impl<K: Pod, V: Pod> KeyedMap<K> for HashMap<&mut MapData, K, V> {
    fn all_keys(&self) -> Result<Vec<K>, MapError> {
        self.keys().collect()
    }
    fn remove_key(&mut self, key: &K) -> Result<(), MapError> {
        self.remove(key)
    }
}

impl<K: Pod, V: Pod> KeyedMap<K> for PerCpuHashMap<&mut MapData, K, V> {
    fn all_keys(&self) -> Result<Vec<K>, MapError> {
        self.keys().collect()
    }
    fn remove_key(&mut self, key: &K) -> Result<(), MapError> {
        self.remove(key)
    }
}

/// [`Sensor::set_ports`] on the `HASH<u16, PortConfig>` table of earlier builds.
fn set_ports_hash(map: &mut Map, ports: &[(u16, TelemetryKind)]) -> Result<(), LoadError> {
    let map_err = |source| LoadError::Map {
        name: TELEMETRY_PORTS,
        source,
    };
    let mut table: HashMap<_, u16, PortConfig> = HashMap::try_from(map).map_err(map_err)?;
    let stale: Vec<u16> = table
        .keys()
        .filter_map(Result::ok)
        .filter(|p| !ports.iter().any(|(q, _)| q == p))
        .collect();
    for port in stale {
        table.remove(&port).map_err(map_err)?;
    }
    for &(port, kind) in ports {
        let cfg = PortConfig {
            kind: kind as u8,
            _pad: [0; 3],
        };
        table.insert(port, cfg, 0).map_err(map_err)?;
    }
    Ok(())
}
