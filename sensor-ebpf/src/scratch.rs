//! This CPU's working memory for one datagram: the datagram's bytes, the
//! facts of the frame that carried it, and the walk's state, grouped by
//! format.
//!
//! Everything a stage needs lives here, in map memory, not on the stack:
//! the verifier does not track map contents, so every stage (a `bpf_loop`
//! callback or a global function, see `main.rs`) starts from the same state
//! whatever the datagram, and is verified once instead of once per path
//! that reaches it.

use aya_ebpf::{helpers::bpf_xdp_load_bytes, macros::map, maps::PerCpuArray, programs::XdpContext};
use edge_sensor_common::{
    MAX_DATAGRAM, MAX_FLOW_SETS, ParseError, Plan, PlanKey, RateKey, RateSource, Settings,
    plan::FieldRead,
};

use crate::{
    frame::Datagram,
    maps,
    packet::Packet,
    read::{self, Data},
};

#[repr(C)]
pub struct Scratch {
    /// The frame's facts (source, ports, lengths).
    pub dgram: Datagram,
    pub walk: Walk,
    pub sflow: SflowWalk,
    pub template: TemplateWalk,
    pub netflow5: Netflow5Walk,
    pub data: Data,
    pub memo: TemplateMemo,
}

/// State and results every format shares.
#[repr(C)]
pub struct Walk {
    /// Cursor, and the end of what is walked (offsets into the datagram).
    pub off: u32,
    pub end: u32,
    /// The walk reached its end (every sample or set was read).
    pub done: u8,
    /// Some error means the datagram was not fully accounted for.
    pub fatal: u8,
    /// `Settings::watching` when the datagram arrived.
    pub watching: u8,
    /// Where `rate_used` came from (a `RateSource`).
    pub rate_source: u8,
    /// The sampling rate applied to the last sample or record counted.
    pub rate_used: u32,
    /// The configured rule for the datagram's source (`SamplingRule`).
    pub rule_rate: u32,
    pub rule_mode: u32,
    /// Results.
    pub samples: u32,
    pub records: u32,
    pub max_drops: u32,
    pub errors: [u32; ParseError::COUNT],
}

impl Walk {
    /// Clears the results of the previous datagram.
    #[inline(always)]
    pub fn reset_results(&mut self) {
        self.fatal = 0;
        self.done = 0;
        self.samples = 0;
        self.records = 0;
        self.max_drops = 0;
        for i in 0..ParseError::COUNT {
            // Volatile: LLVM would make the loop a call to `memset`, one
            // more frame in the stack chain the verifier adds up.
            // SAFETY: an element of our own array.
            unsafe { core::ptr::write_volatile(&mut self.errors[i], 0) };
        }
    }

    #[inline(always)]
    pub fn error(&mut self, e: ParseError) {
        let i = e as usize;
        if i < ParseError::COUNT {
            self.errors[i] += 1;
        }
        if e.is_fatal() {
            self.fatal = 1;
        }
    }
}

/// sFlow (`sflow.rs`): the flow sample being walked and what its records gave.
#[repr(C)]
pub struct SflowWalk {
    /// End of the flow sample whose records are walked; 0 between samples.
    pub sample_end: u32,
    /// Its sampling rate.
    pub rate: u32,
    /// Samples still to read (announced, capped at MAX_SAMPLES).
    pub samples_left: u32,
    /// Records of the current flow sample still to read (capped at MAX_RECORDS).
    pub records_left: u32,
    /// The current flow sample announced more than MAX_RECORDS records.
    pub records_over: u8,
    /// The current sample's first raw header record and first
    /// sampled_ipv4/ipv6 record gave a packet.
    pub have_raw: u8,
    pub have_ip: u8,
    pub _pad: u8,
    pub raw_len: u32,
    pub ip_len: u32,
    /// Where the raw header record and the sampled_ipv4/ipv6 record lie
    /// (from their `data_format`).
    pub raw_off: u32,
    pub raw_rec_len: u32,
    pub ip_off: u32,
    pub raw: Packet,
    pub ip: Packet,
}

/// NetFlow v9 / IPFIX (`template.rs`): the set being walked, its
/// template's plan, the plans of every set (found once, by the check), the
/// keys of the plans and rates, and the learnt rates already looked up for
/// this datagram.
#[repr(C)]
pub struct TemplateWalk {
    /// Records of the current set still to count, and where the next lies.
    pub records_left: u32,
    pub rec_off: u32,
    /// The set being counted (an index into `plans`).
    pub set: u32,
    /// The datagram's format (a `WatchKind`: NetFlow9 or Ipfix).
    pub kind: u8,
    /// `domain_rate`/`domain_source` hold this datagram's lookup.
    pub domain_known: u8,
    /// `sampler_id` was looked up for this datagram: 1 found
    /// (`sampler_rate`), 2 not found.
    pub sampler_known: u8,
    pub _pad: u8,
    /// The rate of the domain (options data, else the configured default,
    /// else 1) and its `RateSource`.
    pub domain_rate: u32,
    pub domain_source: u8,
    pub _pad2: [u8; 3],
    pub sampler_rate: u32,
    /// `Settings::plans_generation` when the walk began.
    pub generation: u32,
    pub sampler_id: u64,
    /// The plan of the set being counted, compiled for its records.
    pub set_plan: SetPlan,
    pub plan_key: PlanKey,
    pub rate_key: RateKey,
    /// Each set's plan, as the check found it: the count reads it here
    /// instead of looking it up again.
    pub plans: [Plan; MAX_FLOW_SETS as usize],
    /// Each set's record count, as the check divided it out (one division
    /// per set).
    pub set_records: [u32; MAX_FLOW_SETS as usize],
}

/// What the v9/IPFIX walk keeps from one datagram to the next on this CPU.
#[repr(C)]
pub struct TemplateMemo {
    /// The plan `TemplateWalk::set_plan` was compiled from: a set whose plan
    /// is the same (the same template as the previous set or datagram, the
    /// usual case) is not compiled again.
    pub compiled: Plan,
    /// The key each of `TemplateWalk::plans` was found under, and the
    /// generation (`Settings::plans_generation`) it was found in: the next
    /// datagram's set at the same index reuses it while both match, without
    /// looking the plan up again. In generation 0 the maps are empty (the
    /// daemon bumps it with its first write), so the zeroed slots a CPU
    /// starts with, whose keys no exporter has, hold nothing false.
    pub plan_keys: [PlanKey; MAX_FLOW_SETS as usize],
    pub plan_generations: [u32; MAX_FLOW_SETS as usize],
    /// The last lookups of a sampler's rate ([`SAMPLER_MEMO`]) and of a
    /// domain's ([`DOMAIN_MEMO`]), reused the same way.
    pub rate_memo: [RateMemo; 2],
}

/// Slots of [`TemplateMemo::rate_memo`].
pub const SAMPLER_MEMO: usize = 0;
pub const DOMAIN_MEMO: usize = 1;

/// A lookup in `FLOW_RATES`: its key, what it found (`found` 0: nothing),
/// and the generation it was made in.
#[repr(C)]
pub struct RateMemo {
    pub key: RateKey,
    pub generation: u32,
    pub found: u32,
    pub rate: u32,
    pub _pad: u32,
}

const _: () = assert!(MAX_FLOW_SETS.is_power_of_two());

/// A [`Plan`] compiled once per data set (`template.rs`): each field a
/// load, a byte swap, a shift and a mask (`common::plan::FieldRead`), so a
/// record costs no branch per field length.
#[repr(C)]
pub struct SetPlan {
    pub packets: FieldRead,
    pub octets: FieldRead,
    pub protocol: FieldRead,
    pub tcp_flags: FieldRead,
    pub fragment_offset: FieldRead,
    pub fragment_flags: FieldRead,
    pub sampler: FieldRead,
    pub sampling_interval: FieldRead,
    pub sampler_random_interval: FieldRead,
    /// Offsets of the destination addresses, when `has_v4`/`has_v6`.
    pub dst_v4: u32,
    pub dst_v6: u32,
    pub has_v4: u8,
    pub has_v6: u8,
    pub _pad: [u8; 2],
    pub record_len: u32,
}

impl SetPlan {
    #[inline(always)]
    pub fn compile(&mut self, p: &Plan) {
        self.packets = FieldRead::of(p.packets);
        self.octets = FieldRead::of(p.octets);
        self.protocol = FieldRead::of(p.protocol);
        self.tcp_flags = FieldRead::of(p.tcp_flags);
        self.fragment_offset = FieldRead::of(p.fragment_offset);
        self.fragment_flags = FieldRead::of(p.fragment_flags);
        self.sampler = FieldRead::of(p.sampler);
        self.sampling_interval = FieldRead::of(p.sampling_interval);
        self.sampler_random_interval = FieldRead::of(p.sampler_random_interval);
        // Addresses are exact lengths (the plan's compiler gives 4 and 16).
        self.dst_v4 = u32::from(p.dst_v4.off);
        self.has_v4 = u8::from(p.dst_v4.len == 4);
        self.dst_v6 = u32::from(p.dst_v6.off);
        self.has_v6 = u8::from(p.dst_v6.len == 16);
        self.record_len = u32::from(p.record_len);
    }
}

/// NetFlow v5 (`netflow5.rs`): records left and the header's rate.
#[repr(C)]
pub struct Netflow5Walk {
    pub records_left: u32,
    pub rate: u32,
}

/// The scratch entries, one per CPU. Declared here rather than in
/// `maps.rs`, with the type it holds.
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch entry.
#[inline(always)]
pub fn get() -> Option<&'static mut Scratch> {
    // SAFETY: this CPU's entry; nothing else runs on this CPU meanwhile.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// What a `bpf_loop` callback gets: the scratch entry. Passing it (rather
/// than looking it up again) also tells the compiler the callback writes
/// through it, so nothing read after the loop is a stale copy.
#[repr(C)]
pub struct LoopCtx {
    pub scratch: *mut Scratch,
}

/// Copies the datagram `dgram` into this CPU's scratch entry and readies the
/// walk. `Err` with the reason when it cannot be parsed at all.
#[inline(always)]
pub fn copy(
    ctx: &XdpContext,
    dgram: &Datagram,
    settings: &Settings,
) -> Result<&'static mut Scratch, ParseError> {
    let len = u32::from(dgram.payload_len);
    if len == 0 {
        return Err(ParseError::TruncatedHeader);
    }
    if len > MAX_DATAGRAM as u32 {
        return Err(ParseError::DatagramTooLarge);
    }
    let scratch = get().ok_or(ParseError::TruncatedHeader)?;
    // SAFETY: `data` holds MAX_DATAGRAM bytes and 0 < len <= that.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            dgram.payload_off,
            scratch.data.0.as_mut_ptr().cast(),
            read::datagram_len(len),
        )
    };
    if rc != 0 {
        return Err(ParseError::TruncatedHeader);
    }
    scratch.dgram = *dgram;
    let w = &mut scratch.walk;
    w.end = len;
    w.watching = settings.watching;
    let rule = maps::sampling_rule(dgram.src, settings);
    w.rule_rate = rule.rate;
    w.rule_mode = rule.mode;
    w.rate_used = 0;
    w.rate_source = RateSource::Unknown as u8;
    Ok(scratch)
}
