//! The program's maps. Names, capacities and layouts come from `common`.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf, lpm_trie::Key,
    },
};
use edge_sensor_common::{
    AgentState, DEFAULT_MAX_DESTINATIONS, DstKey, DstStats, ExporterKey, ExporterStats,
    GlobalStats, MAX_ALLOW_PREFIXES, MAX_EXPORTERS, MAX_FLOW_PLANS, MAX_SAMPLING_RULES,
    MAX_WATCHED, Plan, PlanKey, PortConfig, RateKey, SamplingRule, Settings, TELEMETRY_PORT_SLOTS,
    WATCH_RING_BYTES, WatchStats,
};

/// Per destination counters (`common::DST_STATS`): one value per
/// destination shared by all CPUs and updated with atomic adds, so the
/// map's memory does not grow with the core count (a per-CPU map costs
/// `value x CPUs` per destination: 3.5 KiB at 32 cores). Userspace sets the
/// capacity from its config and pins it.
#[map]
pub static DST_STATS: LruHashMap<DstKey, DstStats> =
    LruHashMap::with_max_entries(DEFAULT_MAX_DESTINATIONS, 0);

/// Per exporter counters (`common::EXPORTER_STATS`).
#[map]
pub static EXPORTER_STATS: LruPerCpuHashMap<ExporterKey, ExporterStats> =
    LruPerCpuHashMap::with_max_entries(MAX_EXPORTERS, 0);

/// Per exporter sequence state, shared by all CPUs (`common::AGENT_STATE`).
#[map]
pub static AGENT_STATE: LruHashMap<ExporterKey, AgentState> =
    LruHashMap::with_max_entries(MAX_EXPORTERS, 0);

/// Whole-program counters (`common::GLOBAL_STATS`).
#[map]
pub static GLOBAL_STATS: PerCpuArray<GlobalStats> = PerCpuArray::with_max_entries(1, 0);

/// What each UDP port (host order, the index) carries
/// (`common::TELEMETRY_PORTS`).
#[map]
pub static TELEMETRY_PORTS: Array<PortConfig> = Array::with_max_entries(TELEMETRY_PORT_SLOTS, 0);

/// Exporter allow-list (`common::EXPORTER_ALLOW`), longest-prefix match.
#[map]
pub static EXPORTER_ALLOW: LpmTrie<[u8; 16], u8> =
    LpmTrie::with_max_entries(MAX_ALLOW_PREFIXES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Counters of the daemon's userspace decoding (`common::USER_DST_STATS`,
/// `USER_EXPORTER_STATS`): declared here so the loader creates and pins them
/// with the rest; the program never touches them.
#[map]
pub static USER_DST_STATS: HashMap<DstKey, DstStats> =
    HashMap::with_max_entries(edge_sensor_common::MAX_USER_DESTINATIONS, 0);
#[map]
pub static USER_EXPORTER_STATS: HashMap<ExporterKey, ExporterStats> =
    HashMap::with_max_entries(MAX_EXPORTERS, 0);

/// Decode plans of v9/IPFIX data templates (`common::FLOW_PLANS`).
#[map]
pub static FLOW_PLANS: HashMap<PlanKey, Plan> = HashMap::with_max_entries(MAX_FLOW_PLANS, 0);

/// Sampling rates learnt from options data (`common::FLOW_RATES`).
#[map]
pub static FLOW_RATES: HashMap<RateKey, u32> = HashMap::with_max_entries(MAX_FLOW_PLANS, 0);

/// The plan for `key`, in the map (copy it before use: a plan may be
/// replaced meanwhile).
#[inline(always)]
pub fn flow_plan(key: &PlanKey) -> Option<*const Plan> {
    FLOW_PLANS.get_ptr(key)
}

/// Copies the `T` at `src` (a map value, or scratch memory) to `dst` in
/// 64-bit words. Volatile: LLVM would make a plain copy a call to `memcpy`
/// (a byte loop, and one more frame in the stack chain the verifier adds
/// up).
#[inline(always)]
pub fn copy_words<T>(dst: &mut T, src: *const T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() == 8) };
    let d = (dst as *mut T).cast::<u64>();
    let s = src.cast::<u64>();
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: both point at a whole, 8-aligned `T`.
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
    }
}

/// 0 when the `T`s at `a` and `b` hold the same bytes, compared in 64-bit
/// words without a branch (volatile, as in [`copy_words`]: a plain
/// comparison would be a call to `bcmp`).
#[inline(always)]
pub fn words_diff<T>(a: &T, b: &T) -> u64 {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() == 8) };
    let a = (a as *const T).cast::<u64>();
    let b = (b as *const T).cast::<u64>();
    let mut diff = 0;
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: both point at a whole, 8-aligned `T`.
        diff |= unsafe { core::ptr::read_volatile(a.add(i)) ^ core::ptr::read_volatile(b.add(i)) };
    }
    diff
}

#[inline(always)]
pub fn flow_rate(key: &RateKey) -> Option<u32> {
    FLOW_RATES.get_ptr(key).map(|p| unsafe { *p })
}

/// Configured sampling rates by exporter prefix (`common::SAMPLING_RULES`).
#[map]
pub static SAMPLING_RULES: LpmTrie<[u8; 16], SamplingRule> =
    LpmTrie::with_max_entries(MAX_SAMPLING_RULES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// The configured sampling rule for exporter `addr` (mode 0: none); the
/// trie is asked only when it has rules (`Settings::sampling_rules`).
#[inline(always)]
pub fn sampling_rule(addr: crate::read::Addr, settings: &Settings) -> SamplingRule {
    if settings.sampling_rules == 0 {
        return SamplingRule::default();
    }
    match SAMPLING_RULES.get(Key::new(128, crate::read::addr_bytes(addr))) {
        Some(r) => *r,
        None => SamplingRule::default(),
    }
}

/// Destinations whose samples are streamed (`common::WATCHED`).
#[map]
pub static WATCHED: HashMap<DstKey, u8> = HashMap::with_max_entries(MAX_WATCHED, 0);

/// The samples of watched destinations (`common::WATCH_SAMPLES`).
#[map]
pub static WATCH_SAMPLES: RingBuf = RingBuf::with_byte_size(WATCH_RING_BYTES, 0);

/// Counters of that stream (`common::WATCH_STATS`).
#[map]
pub static WATCH_STATS: PerCpuArray<WatchStats> = PerCpuArray::with_max_entries(1, 0);

/// Runtime settings (`common::SETTINGS`).
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Zeroed values to create entries from: never written. Keeps 100+ byte
/// structs off the 512-byte stack.
#[map]
static ZERO_DST: Array<DstStats> = Array::with_max_entries(1, 0);
#[map]
static ZERO_EXPORTER: Array<ExporterStats> = Array::with_max_entries(1, 0);

/// The [`edge_sensor_common::TelemetryKind`] (as `u8`) of a configured
/// telemetry port, `None` for any other port.
#[inline(always)]
pub fn telemetry_kind(port: u16) -> Option<u8> {
    match TELEMETRY_PORTS.get(u32::from(port)) {
        Some(cfg) if cfg.kind != 0 => Some(cfg.kind),
        _ => None,
    }
}

/// The settings the entry point uses (all zero until userspace writes
/// them); `plans_generation` is left 0 here and read where it is used
/// ([`plans_generation`]): copied along, it took the entry point's
/// verification from about 1,260 to 1,860 processed instructions (LLVM
/// then tests every flag into a register up front, one branch each).
#[inline(always)]
pub fn settings() -> Settings {
    match SETTINGS.get(0) {
        Some(s) => Settings {
            allow_any_exporter: s.allow_any_exporter,
            pass_telemetry: s.pass_telemetry,
            watching: s.watching,
            sampling_rules: s.sampling_rules,
            plans_generation: 0,
        },
        None => Settings::default(),
    }
}

/// `Settings::plans_generation`, read where the v9/IPFIX walk begins (see
/// [`settings`]).
#[inline(always)]
pub fn plans_generation() -> u32 {
    match SETTINGS.get(0) {
        Some(s) => s.plans_generation,
        None => 0,
    }
}

/// Whether `addr` may send us telemetry.
#[inline(always)]
pub fn exporter_allowed(addr: crate::read::Addr, settings: &Settings) -> bool {
    if settings.allow_any_exporter != 0 {
        return true;
    }
    EXPORTER_ALLOW
        .get(Key::new(128, crate::read::addr_bytes(addr)))
        .is_some()
}

#[inline(always)]
pub fn global_stats() -> Option<*mut GlobalStats> {
    GLOBAL_STATS.get_ptr_mut(0)
}

/// The exporter's counters on this CPU, created zeroed on first use.
#[inline(always)]
pub fn exporter_stats(key: &ExporterKey) -> Option<*mut ExporterStats> {
    if let Some(p) = EXPORTER_STATS.get_ptr_mut(key) {
        return Some(p);
    }
    let zero = ZERO_EXPORTER.get(0)?;
    // NOEXIST: another CPU may have created it meanwhile; then we use that one.
    let _ = EXPORTER_STATS.insert(key, zero, u64::from(BPF_NOEXIST));
    EXPORTER_STATS.get_ptr_mut(key)
}

/// The destination's counters (shared by all CPUs), created zeroed on
/// first use.
#[inline(always)]
pub fn dst_stats(key: &DstKey) -> Option<*mut DstStats> {
    if let Some(p) = DST_STATS.get_ptr_mut(key) {
        return Some(p);
    }
    let zero = ZERO_DST.get(0)?;
    let _ = DST_STATS.insert(key, zero, u64::from(BPF_NOEXIST));
    DST_STATS.get_ptr_mut(key)
}
