//! An independent oracle for NetFlow v5, NetFlow v9 and IPFIX captures:
//! per-destination totals computed from tshark's own dissection (its `cflow`
//! dissector, `tshark -T json`, tshark 4.0.17), for comparison with our
//! decoders. It shares no code with them and decodes no flow bytes itself:
//! every number comes from a field tshark shows. It reuses the JSON parser and
//! the configuration directory of the sFlow oracle ([`crate::tshark`]).
//!
//! # Semantics
//!
//! Every NetFlow v5, v9 or IPFIX (v10) datagram sent to one of the UDP `ports`
//! (the outer UDP header, the one the `cflow` layer sits on) is considered,
//! and in it every data record tshark decodes: each v5 record, and each v9 or
//! IPFIX record of a data template. Records of options templates (options
//! data) are skipped, as are data sets tshark could not decode because it had
//! not seen their template yet (single pass, in capture order, as a collector
//! would). Sampling is ignored: the totals are unscaled.
//!
//! A record's destination is its IPv4 `destinationIPv4Address` (IE 12; v5
//! `dstaddr`) or its `destinationIPv6Address` (IE 28); a record with neither
//! is skipped ([`FlowDissection::no_destination`]). A record with both (Cisco
//! IOS XR v9 template 313 carries 12 and 28, one of them zero) takes the IPv6
//! one if the IPv4 one is 0.0.0.0 and the IPv6 one is not `::`, else the IPv4
//! one ([`FlowDissection::both_destinations`]). A record whose template has no
//! `packetDeltaCount` (IE 2) is skipped ([`FlowDissection::no_packet_count`]).
//! With `P` the packet count (IE 2; v5 `dPkts`) and `B` the octet count (IE 1;
//! v5 `dOctets`; 0 if the template has none), the destination's totals get
//! `packets += P`, `bytes += B` and one class `+= P` by protocol (IE 4; v5
//! `prot`): 6 `tcp`, 17 `udp`, 1 or 58 `icmp`, anything else (or no protocol
//! field) `other`. `tcp_syn += P` if the protocol is 6 and the TCP flags (IE 6
//! `tcpControlBits`, 1 or 2 bytes; v5 `tcp_flags`) have SYN (0x02) set and
//! ACK (0x10) clear. `fragments += P` if the record has a `fragmentOffset`
//! (IE 88) other than 0 or a `fragmentFlags` (IE 197) with More Fragments set:
//! IANA numbers that field's bits from the most significant one (bit 0 RS =
//! 0x80, bit 1 DF = 0x40, bit 2 MF = 0x20, as in the IPv4 header's flags
//! byte), so MF is `0x20`, not `0x04`. v5 has no fragment information. A
//! record with a packet count of 0 still creates its destination's entry (all
//! zeros: softflowd's biflow records). IPv4 destinations are
//! [`IpAddr::V4`]. Sums saturate at `u64::MAX`.
//!
//! When a template holds one of these Information Elements more than once
//! without an enterprise number, the first is used.
//!
//! # How tshark shows the fields used
//!
//! Layers are objects under `_source.layers`, in dissection order; keys are
//! often duplicated (two `cflow.packets` in one biflow record), so the JSON is
//! read with [`crate::tshark`]'s parser, which keeps every key in order.
//!
//! - Outer transport: the last top-level `udp` layer before `cflow`,
//!   `udp.dstport`. Datagram: `cflow.version` (5, 9 or 10 are counted; 1, 7
//!   and 8 are not), v5 `cflow.count`.
//! - v5: each record is an object child of `cflow` titled `pdu N/M`, holding
//!   `cflow.dstaddr`, `cflow.packets`, `cflow.octets`, `cflow.protocol`,
//!   `cflow.tcpflags` exactly once each.
//! - v9 / IPFIX: each set (flowset) is an object child of `cflow` titled
//!   `FlowSet N [id=I] ...` (v9) or `Set N [id=I] ...` (IPFIX) with
//!   `cflow.flowset_id` I. Template sets are I = 0 (v9) or 2 (IPFIX), options
//!   template sets I = 1 (v9) or 3 (IPFIX); each holds one object child per
//!   template (`Template (Id = T, Count = C)`, `Options Template (Id = T) ...`)
//!   with `cflow.template_id` T, and a data template's fields are object
//!   children `Field (k/C): NAME` in template order, with
//!   `cflow.template_field_type` (v9) or `cflow.template_ipfix_field_type`
//!   (IPFIX, enterprise bit masked off), and for IPFIX
//!   `cflow.template_ipfix_pen_provided` and, with an enterprise number,
//!   `cflow.template_ipfix_field_pen` (the type then shows as
//!   `cflow.template_ipfix_field_type` for PEN 29305, as a vendor key such as
//!   `cflow.template_ixia_field_type`, or as
//!   `cflow.template_ipfix_field_type_enterprise`). Data template or options
//!   template is told by the set id the template came in.
//! - A set with I >= 256 is a data set. If tshark knew its template it shows
//!   `cflow.template_frame` F (the frame the template came in) and one object
//!   child `Flow k` per record (its title says `(N flows)`); if not, it shows
//!   a child `Data (L bytes), no template found` holding a malformed expert
//!   item. Whether the records are data or options data is decided by the
//!   template that frame F showed with id I (every frame's templates are
//!   remembered by frame number and id). `cflow.padding` may follow the
//!   records.
//! - In a record, the fields are direct children, in template order:
//!   `cflow.dstaddr` (IE 12), `cflow.dstaddrv6` (IE 28), `cflow.packets` (IE
//!   2), `cflow.octets` (IE 1), `cflow.protocol` (IE 4), `cflow.tcpflags` (IE
//!   6, shown as hex, e.g. `0x02`), `cflow.fragment_offset` (IE 88),
//!   `cflow.ip_fragment_flags` (IE 197, hex). Each key is expected exactly as
//!   many times as the template holds fields tshark shows under it (checked
//!   for every record); the value used is the occurrence of the field without
//!   an enterprise number.
//!
//! # tshark quirks, and what is done about them
//!
//! - RFC 5103 reverse Information Elements (PEN 29305, softflowd `-b`) are
//!   shown under the same keys as the forward ones (`cflow.packets` twice in a
//!   record; only the display text says `(Reverse Type 2 PKTS)`). Which
//!   occurrence is the forward one is therefore taken from the template: the
//!   k-th `cflow.packets` of a record is the k-th field of the template tshark
//!   shows under that key. Checked: a scan of IEs 1-519, with no enterprise
//!   number, PEN 29305, 3054 (Ixia) and 2636 (Juniper), finds that only IEs
//!   1, 2, 4, 6, 12, 28, 88 and 197, with no enterprise number or with 29305,
//!   show under the keys used here (test
//!   `only_these_ies_show_under_the_keys_used`; by hand also field lengths 1,
//!   2, 8 and 16, v9 types 1-519 and 32768-32799, and 21 other PENs). The key
//!   counts of every record are checked against its template. Other
//!   enterprises' fields have vendor keys
//!   (`cflow.pie.ixia.reverse-packet-delta-count`, ...) or
//!   `cflow.enterprise_private_entry` / `cflow.unknown_field_type`.
//! - Reduced-size encoding: counters of 1 to 8 bytes are shown as their
//!   big-endian value (pmacct and Cisco send 8-byte IEs 1/2, softflowd 4).
//!   Longer ones get a malformed expert item ("Trying to fetch an unsigned
//!   integer with length 9") and show their first 8 bytes. `tcpControlBits` of
//!   2 bytes shows under the same key `cflow.tcpflags` (hf `tcpflags16`) with
//!   the 16-bit value; of 3 bytes or more, tshark still shows only the first 2
//!   bytes. An IPv4 address field of another length than 4 shows its first 4
//!   bytes with a malformed warning; an IPv6 address field shorter than 16
//!   raises an exception that ends the dissection of the datagram. Malformed
//!   expert items and marks are reported as problems (see below).
//! - Templates of more than 60 fields are dropped by default ("More entries
//!   (61) than we can handle [template won't be used]": pktvisor's VMware
//!   `ipfix.pcap` has 9 such templates, none used by its data records); the
//!   preference `cflow.max_template_fields` is set to 0 (no limit).
//! - Variable-length fields (template length 65535: Ixia's strings) and
//!   enterprise fields are walked by tshark; padding at the end of a set shows
//!   as `cflow.padding`, records are not invented from it.
//! - softflowd 1.1.0 IPFIX sequence numbers are wrong (its first message says
//!   20): tshark adds an "Unexpected flow sequence" expert item
//!   (`cflow.sequence_analysis.expected_sn`), of the sequence group, which
//!   changes nothing here. Most public v9/IPFIX captures get the same item
//!   (their messages are not consecutive).
//! - v9 options templates with a scope of length 0 (Juniper MX's System scope)
//!   are shown normally (no scope item in the data record) and their data
//!   records are options data: skipped.
//! - UDP tries the lower port first unless a decode-as applies, and a
//!   decode-as of cflow's own port 2055 is no decode-as: a datagram from port
//!   53 to 2055 is shown as DNS. Any protocol seen claiming datagrams to
//!   `ports` is disabled (`--disable-protocol`) and the capture read again.
//! - Templates are not shared between transport sessions: the same template
//!   id sent from another exporter port is unknown there (its data set is
//!   undecoded). Each data set names the frame its template came in, which is
//!   how options data is told from data even when two exporters reuse
//!   template ids (pmacct-test-automation's `102-...` capture: source ids 2081
//!   and 2193, two exporter ports).
//! - tshark runs with an empty `WIRESHARK_CONFIG_DIR`, IP reassembly on (an
//!   exporter's fragmented datagram is dissected once, reassembled, in its last
//!   fragment's frame; not exercised by these captures).
//!
//! tshark's walk is checked where its output allows: the records of a set
//! must number what its title says, each record must show each key used as
//! many times as the template implies, a data set's template frame must have
//! shown the template, and no malformed item may appear outside a "no template
//! found" one. Anything else is a [`FlowDissection::problems`] entry, which
//! [`flow_truth`] turns into a panic.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    process::Command,
};

pub use crate::tshark::Totals;
use crate::tshark::{ConfigDir, Json, parse_num};

/// Everything [`flow_dissection`] learned from tshark about a capture.
#[derive(Debug, Clone, Default)]
pub struct FlowDissection {
    /// Per-destination totals (see the module documentation), unscaled.
    pub totals: BTreeMap<IpAddr, Totals>,
    /// NetFlow v5, v9 and IPFIX datagrams to the ports that tshark dissected.
    pub datagrams: u64,
    /// Data records tshark decoded: v5 records and v9/IPFIX records of data
    /// templates, counted or not.
    pub data_records: u64,
    /// Data records that added to the totals.
    pub counted_records: u64,
    /// Records of options templates (options data): skipped.
    pub options_records: u64,
    /// Data sets tshark could not decode (template not seen yet): skipped.
    pub undecoded_sets: u64,
    /// Data records without a destination address: skipped.
    pub no_destination: u64,
    /// Data records with a destination whose template has no packet count:
    /// skipped.
    pub no_packet_count: u64,
    /// Counted records holding both an IPv4 and an IPv6 destination.
    pub both_destinations: u64,
    /// v5 datagrams holding fewer records than their header declares.
    pub short_v5_datagrams: u64,
    /// What tshark could not read, or read in a way not trusted here.
    /// [`flow_truth`] panics unless this is empty.
    pub problems: Vec<String>,
    /// Protocols disabled because tshark gave them datagrams sent to a port.
    pub disabled_protocols: Vec<String>,
}

/// Per-destination totals of every flow record tshark decodes in the capture
/// (UDP datagrams to one of `ports`), UNSCALED (sampling ignored). Panics if
/// tshark is missing or fails, or if its dissection is not trusted (see
/// [`FlowDissection::problems`]).
pub fn flow_truth(pcap: &Path, ports: &[u16]) -> BTreeMap<IpAddr, Totals> {
    let d = flow_dissection(pcap, ports);
    assert!(
        d.problems.is_empty(),
        "tshark could not read every flow record of {} (ports {ports:?}), so it gives no \
         truth for it (flow_dissection() gives what it could read):\n{}",
        pcap.display(),
        d.problems.join("\n")
    );
    d.totals
}

/// What tshark shows of the NetFlow/IPFIX datagrams to `ports` in `pcap`,
/// including what it could not read. Panics if tshark is missing or fails.
pub fn flow_dissection(pcap: &Path, ports: &[u16]) -> FlowDissection {
    assert!(
        pcap.is_file(),
        "no capture at {} for the tshark flow oracle",
        pcap.display()
    );
    assert!(!ports.is_empty(), "the tshark flow oracle needs a UDP port");
    let mut disabled = BTreeSet::new();
    loop {
        let mut walk = Walk::default();
        run_tshark(pcap, ports, &disabled, |packet| walk.packet(&packet, ports));
        if walk.claimed.is_empty() {
            walk.d.disabled_protocols = disabled.into_iter().collect();
            return walk.d;
        }
        for p in walk.claimed {
            assert!(
                !NEEDED.contains(&p.as_str()) && !disabled.contains(&p),
                "tshark dissects UDP datagrams to ports {ports:?} in {} as {p:?}, not \
                 NetFlow/IPFIX, and {p:?} cannot be disabled",
                pcap.display()
            );
            disabled.insert(p);
        }
    }
}

/// Protocols this oracle reads: never disabled.
const NEEDED: &[&str] = &[
    "frame",
    "eth",
    "ethertype",
    "vlan",
    "ieee8021ad",
    "sll",
    "ip",
    "ipv6",
    "udp",
    "cflow",
    "data",
];

/// Preferences set on every run (the rest are defaults: the configuration
/// directory is empty).
const PREFS: &[(&str, &str)] = &[
    ("cflow.max_template_fields", "0"),
    ("udp.try_heuristic_first", "FALSE"),
    ("ip.defragment", "TRUE"),
    ("ipv6.defragment", "TRUE"),
];

/// The Information Elements used, and the key tshark shows each under.
const KEYS: [(u64, &str); 8] = [
    (12, "cflow.dstaddr"),
    (28, "cflow.dstaddrv6"),
    (2, "cflow.packets"),
    (1, "cflow.octets"),
    (4, "cflow.protocol"),
    (6, "cflow.tcpflags"),
    (88, "cflow.fragment_offset"),
    (197, "cflow.ip_fragment_flags"),
];
const DST4: usize = 0;
const DST6: usize = 1;
const PACKETS: usize = 2;
const OCTETS: usize = 3;
const PROTOCOL: usize = 4;
const TCP_FLAGS: usize = 5;
const FRAG_OFFSET: usize = 6;
const FRAG_FLAGS: usize = 7;

/// The keys of a v5 record (the others never appear there).
const V5_KEYS: [usize; 5] = [DST4, PACKETS, OCTETS, PROTOCOL, TCP_FLAGS];

/// RFC 5103 reverse Information Elements: shown under the forward keys.
const REVERSE_PEN: u64 = 29305;

/// `fragmentFlags` More Fragments (IANA bit 2, counted from the MSB).
const MORE_FRAGMENTS: u64 = 0x20;

/// `_ws.expert.group` of malformed expert items (PI_MALFORMED).
const MALFORMED_GROUP: &str = "117440512";

/// How a template's fields show under one of [`KEYS`].
#[derive(Debug, Clone, Copy, Default)]
struct KeyUse {
    /// Fields shown under the key (forward and reverse).
    count: usize,
    /// Index, among those, of the first one without an enterprise number.
    forward: Option<usize>,
}

/// A template as tshark showed it.
#[derive(Debug, Clone)]
struct Template {
    options: bool,
    /// Why the fields cannot be trusted, if so.
    incomplete: Option<String>,
    keys: [KeyUse; 8],
}

impl Template {
    fn new(t: &Json, options: bool) -> Self {
        let mut template = Template {
            options,
            incomplete: None,
            keys: [KeyUse::default(); 8],
        };
        if options {
            return template;
        }
        let fields: Vec<&Json> = t
            .entries()
            .iter()
            .filter(|(k, v)| k.starts_with("Field (") && matches!(v, Json::Obj(_)))
            .map(|(_, v)| v)
            .collect();
        if t.num("cflow.template_field_count") != Some(fields.len() as u64) {
            template.incomplete = Some(format!(
                "tshark shows {} fields of {:?}",
                fields.len(),
                t.num("cflow.template_field_count")
            ));
        }
        for (i, f) in fields.iter().enumerate() {
            let pen = f.num("cflow.template_ipfix_field_pen");
            if f.num("cflow.template_ipfix_pen_provided") == Some(1) && pen.is_none() {
                template.incomplete = Some(format!("field {} has no enterprise number", i + 1));
                continue;
            }
            if pen.is_some_and(|p| p != REVERSE_PEN) {
                continue;
            }
            let Some(ie) = f
                .num("cflow.template_field_type")
                .or_else(|| f.num("cflow.template_ipfix_field_type"))
            else {
                template.incomplete = Some(format!("field {} has no type", i + 1));
                continue;
            };
            if let Some(k) = KEYS.iter().position(|(n, _)| *n == ie) {
                let u = &mut template.keys[k];
                if pen.is_none() && u.forward.is_none() {
                    u.forward = Some(u.count);
                }
                u.count += 1;
            }
        }
        template
    }
}

/// The state of one read of tshark's output.
#[derive(Default)]
struct Walk {
    d: FlowDissection,
    /// Every template shown, by (frame number, template id).
    templates: HashMap<(u64, u64), Template>,
    /// Protocols tshark gave a datagram to one of the ports instead of cflow.
    claimed: BTreeSet<String>,
}

impl Walk {
    fn packet(&mut self, packet: &Json, ports: &[u16]) {
        let layers = packet
            .get("_source")
            .and_then(|s| s.get("layers"))
            .expect("tshark's JSON packet without _source.layers");
        let frame = layers
            .get("frame")
            .and_then(|f| f.num("frame.number"))
            .unwrap_or(0);
        let top: Vec<(&str, &Json)> = layers
            .entries()
            .iter()
            .map(|(k, v)| (k.as_ref(), v))
            .collect();
        let cflow_at = top.iter().position(|(k, _)| *k == "cflow");
        let Some(udp_at) = top[..cflow_at.unwrap_or(top.len())]
            .iter()
            .rposition(|(k, _)| *k == "udp")
        else {
            return;
        };
        let Some(dport) = top[udp_at].1.num("udp.dstport") else {
            return;
        };
        if !ports.iter().any(|&p| u64::from(p) == dport) {
            return;
        }
        let Some(cflow_at) = cflow_at else {
            // Not cflow: garbage ("data", maybe malformed) or another protocol's.
            if let Some((next, _)) = top.get(udp_at + 1)
                && *next != "data"
                && !next.starts_with("_ws")
            {
                self.claimed.insert((*next).to_owned());
            }
            return;
        };
        let cflow = top[cflow_at].1;
        let version = cflow.num("cflow.version");
        if !matches!(version, Some(5 | 9 | 10)) {
            return;
        }
        self.d.datagrams += 1;
        if top[cflow_at + 1..]
            .iter()
            .any(|(k, _)| k.starts_with("_ws.malformed"))
            || has_malformed(cflow)
        {
            self.d.problems.push(format!(
                "frame {frame}: tshark flags the datagram (or a field in it) malformed"
            ));
        }
        if version == Some(5) {
            self.v5(cflow, frame);
        } else {
            self.v9_v10(cflow, frame, version == Some(10));
        }
    }

    fn v5(&mut self, cflow: &Json, frame: u64) {
        let mut shown = 0;
        for (title, pdu) in cflow.entries() {
            if !title.starts_with("pdu ") {
                continue;
            }
            shown += 1;
            self.d.data_records += 1;
            let mut values: [Option<&str>; 8] = [None; 8];
            let mut ok = true;
            for k in V5_KEYS {
                let found = occurrences(pdu, KEYS[k].1);
                match found.as_slice() {
                    [Json::Str(s)] => values[k] = Some(s.as_ref()),
                    _ => ok = false,
                }
            }
            if ok {
                self.account(&values, &format!("frame {frame}, v5 {title}"));
            } else {
                self.d.problems.push(format!(
                    "frame {frame}, v5 {title}: not exactly one of each v5 field"
                ));
            }
        }
        if cflow.num("cflow.count").is_some_and(|n| shown < n) {
            self.d.short_v5_datagrams += 1;
        }
    }

    fn v9_v10(&mut self, cflow: &Json, frame: u64, ipfix: bool) {
        let (data_id, options_id) = if ipfix { (2, 3) } else { (0, 1) };
        let sets: Vec<(&str, &Json, u64)> = cflow
            .entries()
            .iter()
            .filter_map(|(k, v)| Some((k.as_ref(), v, v.num("cflow.flowset_id")?)))
            .collect();
        // Every template of the frame first: a data set's template frame may be
        // this one (tshark itself only uses templates met before the set).
        for (_, set, id) in &sets {
            if *id != data_id && *id != options_id {
                continue;
            }
            for (_, t) in set.entries() {
                if let Some(tid) = t.num("cflow.template_id") {
                    self.templates
                        .insert((frame, tid), Template::new(t, *id == options_id));
                }
            }
        }
        for (title, set, id) in sets {
            if id < 256 {
                continue;
            }
            let where_ = format!("frame {frame}, {title}");
            let Some(template_frame) = set.num("cflow.template_frame") else {
                self.d.undecoded_sets += 1;
                continue;
            };
            let Some(template) = self.templates.get(&(template_frame, id)).cloned() else {
                self.d.problems.push(format!(
                    "{where_}: template frame {template_frame} showed no template {id}"
                ));
                continue;
            };
            let records: Vec<(&str, &Json)> = set
                .entries()
                .iter()
                .filter(|(k, v)| k.starts_with("Flow ") && matches!(v, Json::Obj(_)))
                .map(|(k, v)| (k.as_ref(), v))
                .collect();
            if flows_in_title(title) != Some(records.len() as u64) {
                self.d
                    .problems
                    .push(format!("{where_}: tshark shows {} records", records.len()));
            }
            if template.options {
                self.d.options_records += records.len() as u64;
                continue;
            }
            if let Some(why) = &template.incomplete {
                self.d.problems.push(format!(
                    "{where_}: template {id} of frame {template_frame} not trusted: {why}"
                ));
                continue;
            }
            for (name, record) in records {
                self.d.data_records += 1;
                let where_ = format!("{where_}, {name}");
                let mut values: [Option<&str>; 8] = [None; 8];
                let mut ok = true;
                for (k, (_, key)) in KEYS.iter().enumerate() {
                    let found = occurrences(record, key);
                    let u = template.keys[k];
                    if found.len() != u.count {
                        self.d.problems.push(format!(
                            "{where_}: tshark shows {key} {} times, the template implies {}",
                            found.len(),
                            u.count
                        ));
                        ok = false;
                        break;
                    }
                    values[k] = match u.forward.map(|i| found[i]) {
                        Some(Json::Str(s)) => Some(s.as_ref()),
                        Some(_) => {
                            self.d
                                .problems
                                .push(format!("{where_}: {key} is not a string"));
                            ok = false;
                            break;
                        }
                        None => None,
                    };
                }
                if ok {
                    self.account(&values, &where_);
                }
            }
        }
    }

    /// Adds one decoded data record (its values of [`KEYS`]) to the totals.
    fn account(&mut self, values: &[Option<&str>; 8], where_: &str) {
        let d = &mut self.d;
        let mut bad = |what: &str| d.problems.push(format!("{where_}: cannot read {what}"));
        let dst4 = match values[DST4].map(str::parse::<Ipv4Addr>) {
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => return bad("cflow.dstaddr"),
            None => None,
        };
        let dst6 = match values[DST6].map(str::parse::<Ipv6Addr>) {
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => return bad("cflow.dstaddrv6"),
            None => None,
        };
        let num = |k: usize| values[k].map(|s| parse_num(s).ok_or(KEYS[k].1));
        let (packets, octets, protocol, flags, offset, frag_flags) = match (
            num(PACKETS).transpose(),
            num(OCTETS).transpose(),
            num(PROTOCOL).transpose(),
            num(TCP_FLAGS).transpose(),
            num(FRAG_OFFSET).transpose(),
            num(FRAG_FLAGS).transpose(),
        ) {
            (Ok(a), Ok(b), Ok(c), Ok(e), Ok(f), Ok(g)) => (a, b, c, e, f, g),
            (r1, r2, r3, r4, r5, r6) => {
                let what = [r1, r2, r3, r4, r5, r6]
                    .into_iter()
                    .find_map(Result::err)
                    .unwrap_or("a number");
                return bad(what);
            }
        };
        let dst = match (dst4, dst6) {
            (Some(v4), Some(v6)) if v4.is_unspecified() && !v6.is_unspecified() => IpAddr::V6(v6),
            (Some(v4), _) => IpAddr::V4(v4),
            (None, Some(v6)) => IpAddr::V6(v6),
            (None, None) => {
                d.no_destination += 1;
                return;
            }
        };
        let Some(packets) = packets else {
            d.no_packet_count += 1;
            return;
        };
        if dst4.is_some() && dst6.is_some() {
            d.both_destinations += 1;
        }
        d.counted_records += 1;
        let t = d.totals.entry(dst).or_default();
        t.packets = t.packets.saturating_add(packets);
        t.bytes = t.bytes.saturating_add(octets.unwrap_or(0));
        let class = match protocol {
            Some(6) => {
                if flags.is_some_and(|f| f & 0x02 != 0 && f & 0x10 == 0) {
                    t.tcp_syn = t.tcp_syn.saturating_add(packets);
                }
                &mut t.tcp
            }
            Some(17) => &mut t.udp,
            Some(1 | 58) => &mut t.icmp,
            _ => &mut t.other,
        };
        *class = class.saturating_add(packets);
        if offset.is_some_and(|o| o != 0) || frag_flags.is_some_and(|f| f & MORE_FRAGMENTS != 0) {
            t.fragments = t.fragments.saturating_add(packets);
        }
    }
}

/// The values of the direct children `key` of `object`, in order.
fn occurrences<'j, 'a>(object: &'j Json<'a>, key: &str) -> Vec<&'j Json<'a>> {
    object
        .entries()
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// N in a data set's title `... [id=I] (N flows)`.
fn flows_in_title(title: &str) -> Option<u64> {
    let inner = title.strip_suffix(" flows)")?;
    inner[inner.rfind('(')? + 1..].parse().ok()
}

/// Whether a malformed mark or malformed expert item appears in `object`,
/// outside tshark's "no template found" items.
fn has_malformed(object: &Json) -> bool {
    object.entries().iter().any(|(k, v)| {
        if k.contains("no template found") {
            return false;
        }
        k.starts_with("_ws.malformed")
            || (k == "_ws.expert" && v.str("_ws.expert.group") == Some(MALFORMED_GROUP))
            || (matches!(v, Json::Obj(_)) && has_malformed(v))
    })
}

/// Runs tshark on `pcap` and hands each packet's JSON to `each`, one at a time
/// (a packet is a top-level object that tshark prints between a line `  {`
/// and a line `  }` or `  },`).
fn run_tshark(pcap: &Path, ports: &[u16], disabled: &BTreeSet<String>, each: impl FnMut(Json<'_>)) {
    let config = ConfigDir::new();
    let filter = ports
        .iter()
        .map(|p| format!("udp.dstport == {p}"))
        .collect::<Vec<_>>()
        .join(" || ");
    let mut cmd = Command::new("tshark");
    cmd.env("WIRESHARK_CONFIG_DIR", &config.0)
        .args(["-n", "-T", "json", "-r"])
        .arg(pcap)
        .arg("-Y")
        .arg(filter);
    for p in ports {
        cmd.arg("-d").arg(format!("udp.port=={p},cflow"));
    }
    for (pref, value) in PREFS {
        cmd.arg("-o").arg(format!("{pref}:{value}"));
    }
    for p in disabled {
        cmd.arg("--disable-protocol").arg(p);
    }
    crate::tshark::stream_packets(cmd, pcap, "NetFlow/IPFIX", each);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const LAB: &str = "/work/shared/data/pcaps/lab";
    const PUBLIC: &str = "/work/shared/data/pcaps/public";

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    fn t(packets: u64, bytes: u64) -> Totals {
        Totals {
            packets,
            bytes,
            ..Totals::default()
        }
    }

    fn sum(totals: &BTreeMap<IpAddr, Totals>) -> (u64, u64) {
        totals
            .values()
            .fold((0, 0), |(p, b), t| (p + t.packets, b + t.bytes))
    }

    /// (datagrams, data records, counted, options records, undecoded sets, no
    /// destination, no packet count, both destinations).
    fn counts(d: &FlowDissection) -> [u64; 8] {
        [
            d.datagrams,
            d.data_records,
            d.counted_records,
            d.options_records,
            d.undecoded_sets,
            d.no_destination,
            d.no_packet_count,
            d.both_destinations,
        ]
    }

    /// Checks a real capture's dissection: no problem, the counts, the number
    /// of destinations and the sums; returns the totals for closer checks.
    /// The figures were computed independently, from the raw bytes, by a
    /// throwaway decoder written from RFC 3954 / RFC 7011 (not committed).
    fn check(
        path: &str,
        ports: &[u16],
        expected: [u64; 8],
        destinations: usize,
        sums: (u64, u64),
    ) -> BTreeMap<IpAddr, Totals> {
        let pcap = Path::new(path);
        let d = flow_dissection(pcap, ports);
        assert!(d.problems.is_empty(), "{path}: {:?}", d.problems);
        assert!(d.disabled_protocols.is_empty(), "{path}");
        assert_eq!(d.short_v5_datagrams, 0, "{path}");
        assert_eq!(counts(&d), expected, "{path}");
        assert_eq!(d.totals.len(), destinations, "{path}");
        assert_eq!(sum(&d.totals), sums, "{path}");
        assert_eq!(flow_truth(pcap, ports), d.totals, "{path}");
        d.totals
    }

    #[test]
    fn softflowd() {
        // v5: 33 records; SYNs to port 80 (hping3), UDP to 53, pings.
        let v5 = check(
            &format!("{LAB}/softflowd-1.1.0_v5.pcap"),
            &[2055],
            [5, 33, 33, 0, 0, 0, 0, 0],
            2,
            (67686, 1926179797),
        );
        assert_eq!(
            v5[&v4("10.99.0.2")],
            Totals {
                tcp: 38522,
                tcp_syn: 10,
                udp: 10,
                icmp: 10,
                ..t(38542, 1924654201)
            }
        );
        // v9: templates 1024/1025/2048/2049, options 256 (scope Interface)
        // with one options record (skipped); 9 bytes of padding in all.
        let v9 = check(
            &format!("{LAB}/softflowd-1.1.0_v9.pcap"),
            &[2055],
            [6, 37, 37, 1, 0, 0, 0, 0],
            4,
            (81189, 2304400945),
        );
        assert_eq!(
            v9[&v4("10.99.0.1")],
            Totals {
                tcp: 35122,
                icmp: 11,
                ..t(35133, 1839776)
            }
        );
        assert_eq!(
            v9[&v6("fd99::2")],
            Totals {
                icmp: 3,
                ..t(3, 312)
            }
        );
        // IPFIX with wrong sequence numbers (tshark's expert items).
        let v10 = check(
            &format!("{LAB}/softflowd-1.1.0_v10.pcap"),
            &[2055],
            [6, 37, 37, 1, 0, 0, 0, 0],
            4,
            (84449, 2412977553),
        );
        assert_eq!(
            v10[&v4("10.99.0.2")],
            Totals {
                tcp: 49093,
                tcp_syn: 10,
                udp: 10,
                icmp: 10,
                ..t(49113, 2411130597)
            }
        );
        // Biflow (PEN 29305 reverse octets/packets/ToS/flags after the
        // forward fields): only the forward counts count. The reverse halves
        // of the random-source pings (hping3 -1 --rand-source) are records
        // with forward counts 0: their destinations have all-zero totals.
        let bi = check(
            &format!("{LAB}/softflowd-1.1.0_ipfix_biflow-rfc5103_pen29305_milli.pcap"),
            &[2055],
            [5, 23, 23, 1, 0, 0, 0, 0],
            7,
            (42866, 2102229013),
        );
        assert_eq!(
            bi[&v4("10.99.0.2")],
            Totals {
                tcp: 42848,
                tcp_syn: 10,
                udp: 10,
                icmp: 5,
                ..t(42863, 2102228701)
            }
        );
        assert_eq!(bi[&v4("77.228.128.178")], Totals::default());
        assert_eq!(bi.values().filter(|t| t.packets == 0).count(), 5);
        // Nothing is sent to another port.
        let d = flow_dissection(
            Path::new(&format!("{LAB}/softflowd-1.1.0_v9.pcap")),
            &[2100],
        );
        assert_eq!(counts(&d), [0; 8]);
        assert!(d.totals.is_empty());
    }

    #[test]
    fn pmacct() {
        let v5 = check(
            &format!("{LAB}/pmacct-1.7.7_nfprobe_v5.pcap"),
            &[2100],
            [5, 33, 33, 0, 0, 0, 0, 0],
            2,
            (62291, 1874449947),
        );
        assert_eq!(
            v5[&v4("10.99.0.1")],
            Totals {
                tcp: 27129,
                icmp: 11,
                ..t(27140, 1423673)
            }
        );
        // 8-byte counters (IEs 1 and 2), 1-byte TCP flags; options 4098
        // (exporter address) data skipped.
        let v9 = check(
            &format!("{LAB}/pmacct-1.7.7_nfprobe_v9.pcap"),
            &[2100],
            [8, 37, 37, 1, 0, 0, 0, 0],
            6,
            (64915, 1913275158),
        );
        assert_eq!(
            v9[&v4("10.99.0.2")],
            Totals {
                tcp: 36563,
                tcp_syn: 10,
                udp: 10,
                icmp: 10,
                ..t(36583, 1911786825)
            }
        );
        assert_eq!(
            v9[&v6("fe80::2066:16ff:fe2e:bae2")],
            Totals {
                icmp: 1,
                ..t(1, 72)
            }
        );
        let v10 = check(
            &format!("{LAB}/pmacct-1.7.7_nfprobe_v10.pcap"),
            &[2100],
            [8, 37, 37, 1, 0, 0, 0, 0],
            5,
            (71571, 2011374496),
        );
        assert_eq!(
            v10[&v6("fd99::1")],
            Totals {
                icmp: 4,
                ..t(4, 384)
            }
        );
        // sampling_rate 10: options 4096 (sampler) and 4098 records skipped;
        // the counts stay unscaled.
        let s10 = check(
            &format!("{LAB}/pmacct-1.7.7_nfprobe_ipfix_sampling10.pcap"),
            &[2100],
            [6, 8, 8, 2, 0, 0, 0, 0],
            2,
            (8579, 244363369),
        );
        assert_eq!(
            s10[&v4("10.99.0.2")],
            Totals {
                tcp: 4990,
                tcp_syn: 1,
                udp: 1,
                icmp: 2,
                ..t(4993, 244176248)
            }
        );
    }

    #[test]
    fn logstash_codec_netflow() {
        let dir = format!("{PUBLIC}/logstash-codec-netflow");
        // Cisco ASR9k v9: 3 options templates (no options data), template
        // 260 and 21 records in one flowset.
        let asr = check(
            &format!("{dir}/cisco_asr9k_netflow9_tpl260+opttpl+data.pcap"),
            &[2055],
            [5, 21, 21, 0, 0, 0, 0, 0],
            18,
            (531, 208031),
        );
        assert_eq!(
            asr[&v4("10.0.1.136")],
            Totals {
                tcp: 325,
                ..t(325, 13660)
            }
        );
        assert_eq!(
            asr[&v4("10.0.36.170")],
            Totals {
                udp: 1,
                ..t(1, 435)
            }
        );
        let huawei = check(
            &format!("{dir}/huawei_netstream_netflow9_tpl+data.pcap"),
            &[2055],
            [2, 1, 1, 0, 0, 0, 0, 0],
            1,
            (4, 200),
        );
        assert_eq!(
            huawei[&v4("10.111.112.204")],
            Totals {
                tcp: 4,
                ..t(4, 200)
            }
        );
        // Ixia: variable-length strings and PEN 3054 fields (its own reverse
        // counters, under vendor keys); one TCP record has 0 packets.
        let ixia = check(
            &format!("{dir}/ixia_ipfix_tpldata.pcap"),
            &[2055],
            [2, 3, 3, 0, 0, 0, 0, 0],
            3,
            (6, 492),
        );
        assert_eq!(
            ixia[&v4("202.170.60.247")],
            Totals {
                udp: 4,
                ..t(4, 360)
            }
        );
        assert_eq!(ixia[&v4("104.244.42.130")], Totals::default());
        // Juniper MX240 IPFIX: options template and options data only.
        check(
            &format!("{dir}/juniper_mx240_junos15.1_ipfix_opttpl+data.pcap"),
            &[2055],
            [2, 0, 0, 1, 0, 0, 0, 0],
            0,
            (0, 0),
        );
        let mx80 = check(
            &format!("{dir}/juniper_mx80_netflow5.pcap"),
            &[2055],
            [1, 29, 29, 0, 0, 0, 0, 0],
            2,
            (31, 3989),
        );
        assert_eq!(
            mx80[&v4("192.168.0.1")],
            Totals {
                tcp: 30,
                tcp_syn: 3,
                ..t(30, 2489)
            }
        );
        // Nokia BRAS: its one data template has no packet count.
        check(
            &format!("{dir}/nokia_bras_ipfix_tpl+data.pcap"),
            &[2055],
            [2, 1, 0, 0, 0, 0, 1, 0],
            0,
            (0, 0),
        );
    }

    #[test]
    fn pktvisor() {
        let dir = format!("{PUBLIC}/pktvisor");
        let nf5 = check(
            &format!("{dir}/nf5.pcap"),
            &[2055],
            [2, 3, 3, 0, 0, 0, 0, 0],
            2,
            (33, 1720),
        );
        assert_eq!(
            nf5[&v4("10.0.0.2")],
            Totals {
                tcp: 27,
                icmp: 5,
                ..t(32, 1628)
            }
        );
        // Protocol 253 (experimental): other. System-scope options skipped.
        let nf9 = check(
            &format!("{dir}/nf9.pcap"),
            &[2055],
            [5, 24, 24, 1, 0, 0, 0, 0],
            24,
            (183920, 142139882),
        );
        assert_eq!(
            nf9[&v4("30.0.1.174")],
            Totals {
                other: 7799,
                ..t(7799, 6020905)
            }
        );
        // VMware vDS over Linux cooked capture: 88 templates (9 of more than
        // 60 fields), 23 records to ::1.
        let ipfix = check(
            &format!("{dir}/ipfix.pcap"),
            &[2059],
            [43, 23, 23, 1, 0, 0, 0, 0],
            1,
            (1472, 120000),
        );
        assert_eq!(
            ipfix[&v6("::1")],
            Totals {
                tcp: 1472,
                ..t(1472, 120000)
            }
        );
    }

    #[test]
    fn pmacct_test_automation() {
        let dir = format!("{PUBLIC}/pmacct-test-automation");
        // Two observation domains, each with its template.
        let ipfix = check(
            &format!("{dir}/100-IPFIXv10-CISCO.pcap"),
            &[9991],
            [6, 12, 12, 0, 0, 0, 0, 0],
            3,
            (34, 34172),
        );
        assert_eq!(
            ipfix[&v6("2001:918:ffff:f9fc::3")],
            Totals {
                udp: 15,
                ..t(15, 20670)
            }
        );
        // Template 313 holds IPv4 and IPv6 addresses: here the IPv6 ones are
        // all `::`.
        let nf9 = check(
            &format!("{dir}/101-NFv9-CISCO-cust_primitives.pcap"),
            &[9991],
            [40, 51, 51, 0, 0, 0, 0, 51],
            12,
            (56, 4500),
        );
        assert_eq!(
            nf9[&v4("138.187.57.78")],
            Totals {
                tcp: 14,
                ..t(14, 1098)
            }
        );
        // Two exporters (source ids 2081 and 2193) with the same template ids.
        let reload = check(
            &format!("{dir}/102-NFv9-CISCO-f2rd-pretag-sampling-reload.pcap"),
            &[9991],
            [25, 35, 35, 0, 0, 0, 0, 7],
            10,
            (107, 7594),
        );
        assert_eq!(
            reload[&v4("213.3.213.6")],
            Totals {
                tcp: 25,
                ..t(25, 1747)
            }
        );
        assert_eq!(
            reload[&v4("10.10.0.45")],
            Totals {
                tcp: 4,
                ..t(4, 310)
            }
        );
        let v6s = check(
            &format!("{dir}/104-IPFIXv10-IPv6-CISCO-sampling_option.pcap"),
            &[9992],
            [5, 3, 3, 1, 0, 0, 0, 0],
            2,
            (121, 10632),
        );
        assert_eq!(
            v6s[&v6("ff02::12")],
            Totals {
                other: 120,
                ..t(120, 10560)
            }
        );
    }

    /// A file in the temporary directory, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "edge-sensor-tshark-flow-test-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, bytes).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Crafted NetFlow v5 / v9 and IPFIX, written here from RFC 3954 and
    /// RFC 7011, independently of the sensor's decoders.
    mod craft {
        /// `value` on `n` bytes, big-endian.
        pub fn be(value: u64, n: usize) -> Vec<u8> {
            value.to_be_bytes()[8 - n..].to_vec()
        }

        pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
            parts.concat()
        }

        /// A template record: (IE, length, enterprise number) per field.
        pub fn template(id: u16, fields: &[(u16, u16, Option<u32>)]) -> Vec<u8> {
            let mut v = cat(&[&id.to_be_bytes(), &(fields.len() as u16).to_be_bytes()]);
            for (ie, len, pen) in fields {
                let e = if pen.is_some() { 0x8000 } else { 0 };
                v.extend_from_slice(&(ie | e).to_be_bytes());
                v.extend_from_slice(&len.to_be_bytes());
                if let Some(pen) = pen {
                    v.extend_from_slice(&pen.to_be_bytes());
                }
            }
            v
        }

        /// An IPFIX options template record: scope fields, then the others.
        pub fn ipfix_options_template(
            id: u16,
            scope: &[(u16, u16)],
            fields: &[(u16, u16)],
        ) -> Vec<u8> {
            let total = (scope.len() + fields.len()) as u16;
            let mut v = cat(&[
                &id.to_be_bytes(),
                &total.to_be_bytes(),
                &(scope.len() as u16).to_be_bytes(),
            ]);
            for (ie, len) in scope.iter().chain(fields) {
                v.extend_from_slice(&cat(&[&ie.to_be_bytes(), &len.to_be_bytes()]));
            }
            v
        }

        /// A v9 options template record (lengths in bytes of the specifiers).
        pub fn v9_options_template(
            id: u16,
            scope: &[(u16, u16)],
            fields: &[(u16, u16)],
        ) -> Vec<u8> {
            let mut v = cat(&[
                &id.to_be_bytes(),
                &(4 * scope.len() as u16).to_be_bytes(),
                &(4 * fields.len() as u16).to_be_bytes(),
            ]);
            for (ty, len) in scope.iter().chain(fields) {
                v.extend_from_slice(&cat(&[&ty.to_be_bytes(), &len.to_be_bytes()]));
            }
            v
        }

        /// A set (flowset): id, length, then `body`.
        pub fn set(id: u16, body: &[u8]) -> Vec<u8> {
            cat(&[
                &id.to_be_bytes(),
                &(4 + body.len() as u16).to_be_bytes(),
                body,
            ])
        }

        pub fn ipfix(domain: u32, sets: &[Vec<u8>]) -> Vec<u8> {
            let body = sets.concat();
            cat(&[
                &10u16.to_be_bytes(),
                &(16 + body.len() as u16).to_be_bytes(),
                &1_700_000_000u32.to_be_bytes(),
                &0u32.to_be_bytes(),
                &domain.to_be_bytes(),
                &body,
            ])
        }

        pub fn v9(source_id: u32, count: u16, sets: &[Vec<u8>]) -> Vec<u8> {
            let body = sets.concat();
            cat(&[
                &9u16.to_be_bytes(),
                &count.to_be_bytes(),
                &1000u32.to_be_bytes(),
                &1_700_000_000u32.to_be_bytes(),
                &0u32.to_be_bytes(),
                &source_id.to_be_bytes(),
                &body,
            ])
        }

        /// A v5 record to `dst`.
        pub fn v5_record(dst: [u8; 4], packets: u32, octets: u32, proto: u8, flags: u8) -> Vec<u8> {
            let mut v = vec![192, 0, 2, 1];
            v.extend_from_slice(&dst);
            v.extend_from_slice(&[0; 8]); // next hop, input, output
            v.extend_from_slice(&packets.to_be_bytes());
            v.extend_from_slice(&octets.to_be_bytes());
            v.extend_from_slice(&[0; 8]); // first, last
            v.extend_from_slice(&[0x30, 0x39, 0, 80, 0, flags, proto, 0]);
            v.extend_from_slice(&[0; 8]); // AS, masks, padding
            v
        }

        pub fn v5(declared: u16, records: &[Vec<u8>]) -> Vec<u8> {
            let mut v = cat(&[&5u16.to_be_bytes(), &declared.to_be_bytes()]);
            v.extend_from_slice(&[0; 20]);
            records.iter().for_each(|r| v.extend_from_slice(r));
            v
        }

        /// A classic pcap of Ethernet/IPv4/UDP frames (source port,
        /// destination port, payload).
        pub fn pcap(datagrams: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
            let mut v = Vec::new();
            for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
                v.extend_from_slice(&w.to_le_bytes());
            }
            for (i, (sport, dport, payload)) in datagrams.iter().enumerate() {
                let udp_len = 8 + payload.len() as u16;
                let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
                frame.extend_from_slice(&[0x45, 0]);
                frame.extend_from_slice(&(20 + udp_len).to_be_bytes());
                frame.extend_from_slice(&[
                    0, 0, 0, 0, 64, 17, 0, 0, 198, 51, 100, 2, 198, 51, 100, 9,
                ]);
                frame.extend_from_slice(&cat(&[
                    &sport.to_be_bytes(),
                    &dport.to_be_bytes(),
                    &udp_len.to_be_bytes(),
                    &[0, 0],
                    payload,
                ]));
                for w in [1000 + i as u32, 0, frame.len() as u32, frame.len() as u32] {
                    v.extend_from_slice(&w.to_le_bytes());
                }
                v.extend_from_slice(&frame);
            }
            v
        }
    }

    #[test]
    fn crafted_ipfix() {
        use craft::*;
        const REV: Option<u32> = Some(REVERSE_PEN as u32);
        // Reverse packets first, a variable-length field, 8-byte counters,
        // reverse octets, 2-byte TCP flags, an Ixia field, fragment fields.
        let t300 = template(
            300,
            &[
                (2, 4, REV),
                (12, 4, None),
                (82, 65535, None),
                (2, 8, None),
                (1, 8, None),
                (1, 4, REV),
                (4, 1, None),
                (6, 2, None),
                (177, 8, Some(3054)),
                (88, 2, None),
                (197, 1, None),
            ],
        );
        let r300 = |dst: [u8; 4], name: &[u8], packets, octets, proto, flags, offset, fflags| {
            let varlen = if name.len() < 255 {
                be(name.len() as u64, 1)
            } else {
                cat(&[&[255], &be(name.len() as u64, 2)])
            };
            cat(&[
                &be(1000, 4), // reverse packets: ignored
                &dst,
                &varlen,
                name,
                &be(packets, 8),
                &be(octets, 8),
                &be(99_999, 4), // reverse octets: ignored
                &[proto],
                &be(flags, 2),
                &be(777, 8),
                &be(offset, 2),
                &[fflags],
            ])
        };
        let t301 = template(
            301,
            &[(28, 16, None), (2, 4, None), (1, 4, None), (4, 1, None)],
        );
        let r301 = cat(&[
            &"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets(),
            &be(2, 4),
            &be(160, 4),
            &[58],
        ]);
        let t302 = template(302, &[(12, 4, None), (1, 4, None)]); // no packet count
        let t303 = template(303, &[(2, 4, None), (1, 4, None), (4, 1, None)]); // no destination
        let t304 = template(304, &[(12, 4, None), (2, 8, None), (4, 1, None)]);
        let opt = ipfix_options_template(400, &[(149, 4)], &[(305, 4), (306, 4)]);
        let long_name = vec![b'x'; 300];
        let message = ipfix(
            1,
            &[
                // Before its template: not decoded.
                set(300, &r300([10, 0, 0, 1], b"a", 1, 1, 6, 2, 0, 0)),
                set(2, &cat(&[&t300, &t301, &t302, &t303, &t304])),
                set(3, &opt),
                set(
                    300,
                    &cat(&[
                        // SYN, MF (0x20): a fragment.
                        &r300([10, 0, 0, 1], b"abc", 5, 500, 6, 0x002, 0, 0x20),
                        // SYN+ACK; offset 185: a fragment.
                        &r300([10, 0, 0, 1], b"", 3, 300, 6, 0x012, 185, 0),
                        // A 300-byte name (3-byte length); flags 0x04 (not
                        // MF) and 0x40 (DF): no fragment.
                        &r300([10, 0, 0, 2], &long_name, 7, 700, 17, 0x002, 0, 0x44),
                        &[0, 0, 0], // padding
                    ]),
                ),
                set(301, &r301),
                set(302, &cat(&[&[10, 0, 0, 7], &be(70, 4)])),
                set(303, &cat(&[&be(1, 4), &be(70, 4), &[6]])),
                set(400, &cat(&[&be(1, 4), &be(1, 4), &be(99, 4)])),
                // Saturation, and protocol 47: other.
                set(
                    304,
                    &cat(&[
                        &[10, 0, 0, 4],
                        &be(u64::MAX - 1, 8),
                        &[47],
                        &[10, 0, 0, 4],
                        &be(5, 8),
                        &[47],
                    ]),
                ),
            ],
        );
        // The same template ids from another exporter port, another port of
        // ours: tshark keeps templates per transport session.
        let other_session = ipfix(1, &[set(304, &cat(&[&[10, 0, 0, 5], &be(1, 8), &[6]]))]);
        let own_template = ipfix(
            1,
            &[
                set(2, &t304),
                set(304, &cat(&[&[10, 0, 0, 6], &be(9, 8), &[1]])),
            ],
        );
        // A template of 70 fields (tshark drops those of more than 60 unless
        // told otherwise): 68 ToS bytes, then the destination and the count.
        let mut wide_fields = vec![(5, 1, None); 68];
        wide_fields.extend([(12, 4, None), (2, 4, None)]);
        let wide = ipfix(
            2,
            &[
                set(2, &template(310, &wide_fields)),
                set(310, &cat(&[&[0; 68], &[10, 0, 0, 8], &be(11, 4)])),
            ],
        );
        let file = TempFile::new(
            "ipfix.pcap",
            &pcap(&[
                (40000, 9999, message),
                (40000, 9999, wide),
                (40001, 4739, other_session),
                (40002, 4739, own_template.clone()),
                // Not one of the ports.
                (40000, 5555, own_template),
                // Not NetFlow/IPFIX.
                (40000, 9999, b"not a flow export".to_vec()),
            ]),
        );
        let d = flow_dissection(&file.0, &[9999, 4739]);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert!(d.disabled_protocols.is_empty());
        assert_eq!(counts(&d), [4, 10, 8, 1, 2, 1, 1, 0]);
        let expected = BTreeMap::from([
            (
                v4("10.0.0.1"),
                Totals {
                    tcp: 8,
                    tcp_syn: 5,
                    fragments: 8,
                    ..t(8, 800)
                },
            ),
            (
                v4("10.0.0.2"),
                Totals {
                    udp: 7,
                    ..t(7, 700)
                },
            ),
            (
                v4("10.0.0.4"),
                Totals {
                    other: u64::MAX,
                    ..t(u64::MAX, 0)
                },
            ),
            (v4("10.0.0.6"), Totals { icmp: 9, ..t(9, 0) }),
            (
                v4("10.0.0.8"),
                Totals {
                    other: 11,
                    ..t(11, 0)
                },
            ),
            (
                v6("2001:db8::1"),
                Totals {
                    icmp: 2,
                    ..t(2, 160)
                },
            ),
        ]);
        assert_eq!(d.totals, expected);
        assert_eq!(flow_truth(&file.0, &[9999, 4739]), expected);
    }

    #[test]
    fn crafted_v9_and_v5() {
        use craft::*;
        // Juniper-style options template: scope System of length 0.
        let opt = v9_options_template(300, &[(1, 0)], &[(34, 4), (35, 1)]);
        let both = template(
            301,
            &[
                (12, 4, None),
                (28, 16, None),
                (2, 4, None),
                (1, 4, None),
                (4, 1, None),
                (6, 1, None),
            ],
        );
        let only4 = template(
            302,
            &[(8, 4, None), (12, 4, None), (2, 4, None), (4, 1, None)],
        );
        let rec = |a4: [u8; 4], a6: &str, packets, octets, proto, flags: u8| {
            cat(&[
                &a4,
                &a6.parse::<Ipv6Addr>().unwrap().octets(),
                &be(packets, 4),
                &be(octets, 4),
                &[proto, flags],
            ])
        };
        let message = v9(
            7,
            7,
            &[
                set(1, &cat(&[&opt, &[0, 0]])),
                // Two templates in one flowset.
                set(0, &cat(&[&both, &only4])),
                set(300, &cat(&[&be(1000, 4), &[2], &[0, 0, 0]])),
                set(
                    301,
                    &cat(&[
                        &rec([0, 0, 0, 0], "2001:db8::5", 4, 400, 6, 0x02),
                        &rec([10, 0, 0, 9], "::", 3, 300, 17, 0),
                        &rec([0, 0, 0, 0], "::", 1, 100, 1, 0),
                    ]),
                ),
                set(
                    302,
                    &cat(&[&[192, 0, 2, 1], &[10, 0, 0, 9], &be(2, 4), &[6], &[0, 0, 0]]),
                ),
            ],
        );
        let v5_message = v5(
            3, // declares 3, holds 2
            &[
                v5_record([10, 1, 0, 1], 10, 400, 6, 0x02),
                v5_record([10, 1, 0, 1], 2, 168, 1, 0),
            ],
        );
        let file = TempFile::new(
            "v9v5.pcap",
            &pcap(&[(40000, 2055, message), (40001, 2055, v5_message)]),
        );
        let d = flow_dissection(&file.0, &[2055]);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(counts(&d), [2, 6, 6, 1, 0, 0, 0, 3]);
        assert_eq!(d.short_v5_datagrams, 1);
        let expected = BTreeMap::from([
            (
                v4("0.0.0.0"),
                Totals {
                    icmp: 1,
                    ..t(1, 100)
                },
            ),
            (
                v4("10.0.0.9"),
                Totals {
                    udp: 3,
                    tcp: 2,
                    ..t(5, 300)
                },
            ),
            (
                v4("10.1.0.1"),
                Totals {
                    tcp: 10,
                    tcp_syn: 10,
                    icmp: 2,
                    ..t(12, 568)
                },
            ),
            (
                v6("2001:db8::5"),
                Totals {
                    tcp: 4,
                    tcp_syn: 4,
                    ..t(4, 400)
                },
            ),
        ]);
        assert_eq!(d.totals, expected);
    }

    #[test]
    fn datagrams_from_a_lower_known_port() {
        use craft::*;
        // UDP tries the lower port first: from port 53 to 2055 (cflow's own
        // port, so the decode-as changes nothing) tshark shows DNS until DNS
        // is disabled.
        let message = v5(1, &[v5_record([10, 2, 0, 1], 4, 160, 17, 0)]);
        let file = TempFile::new(
            "dns.pcap",
            &pcap(&[(53, 2055, message.clone()), (40000, 2055, message)]),
        );
        let d = flow_dissection(&file.0, &[2055]);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.disabled_protocols, ["dns"]);
        assert_eq!(d.datagrams, 2);
        assert_eq!(
            d.totals[&v4("10.2.0.1")],
            Totals {
                udp: 8,
                ..t(8, 320)
            }
        );
    }

    #[test]
    fn malformed_datagrams_are_problems() {
        use craft::*;
        // A 9-byte packet count (tshark shows its first 8 bytes with a
        // malformed warning), then an IPv6 address of 4 bytes (an exception
        // ends the dissection).
        let long_count = ipfix(
            1,
            &[
                set(2, &template(256, &[(12, 4, None), (2, 9, None)])),
                set(256, &cat(&[&[10, 3, 0, 1], &be(5, 8), &[7]])),
            ],
        );
        let short_v6 = ipfix(
            2,
            &[
                set(2, &template(257, &[(28, 4, None), (2, 4, None)])),
                set(257, &cat(&[&[10, 3, 0, 2], &be(5, 4)])),
            ],
        );
        let file = TempFile::new(
            "malformed.pcap",
            &pcap(&[(40000, 4739, long_count), (40000, 4739, short_v6)]),
        );
        let d = flow_dissection(&file.0, &[4739]);
        // The first record is still counted, with the first 8 bytes of its
        // count; the exception cuts the second record short, which the key
        // count check sees too.
        assert_eq!(
            d.problems,
            [
                "frame 1: tshark flags the datagram (or a field in it) malformed",
                "frame 2: tshark flags the datagram (or a field in it) malformed",
                "frame 2, Set 2 [id=257]: tshark shows 1 records",
                "frame 2, Set 2 [id=257], Flow 1: tshark shows cflow.dstaddrv6 0 times, the \
                 template implies 1",
            ]
        );
        // (9 bytes 00..00 05 07: 5, not 0x0507), no protocol: other.
        assert_eq!(
            d.totals[&v4("10.3.0.1")],
            Totals {
                other: 5,
                ..t(5, 0)
            }
        );
        let panic = std::panic::catch_unwind(|| flow_truth(&file.0, &[4739])).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("could not read every flow record"),
            "{message}"
        );
    }

    #[test]
    fn only_these_ies_show_under_the_keys_used() {
        use craft::*;
        // One IPFIX message per (IE, enterprise number), its observation
        // domain numbering it, with a template of that one field and one
        // record; which of the keys used appear in each record.
        let pens = [None, Some(REVERSE_PEN as u32), Some(3054), Some(2636)];
        let mut cases = Vec::new();
        let mut datagrams = Vec::new();
        for pen in pens {
            for ie in 1..520u16 {
                let len = if matches!(ie, 27 | 28) { 16 } else { 4 };
                let domain = cases.len() as u32;
                cases.push((ie, pen));
                let record: Vec<u8> = (0..len).map(|i| 0x11 * (i as u8 % 8 + 1)).collect();
                datagrams.push((
                    40000,
                    4739,
                    ipfix(
                        domain,
                        &[set(2, &template(256, &[(ie, len, pen)])), set(256, &record)],
                    ),
                ));
            }
        }
        let file = TempFile::new("ies.pcap", &pcap(&datagrams));
        let mut seen: Vec<Vec<&str>> = vec![Vec::new(); cases.len()];
        run_tshark(&file.0, &[4739], &BTreeSet::new(), |packet| {
            let layers = packet.get("_source").and_then(|s| s.get("layers")).unwrap();
            let cflow = layers.get("cflow").unwrap();
            let domain = cflow.num("cflow.od_id").unwrap() as usize;
            for (_, set) in cflow.entries() {
                if set.num("cflow.flowset_id") != Some(256) {
                    continue;
                }
                assert!(set.num("cflow.template_frame").is_some(), "case {domain}");
                for (_, record) in set.entries().iter().filter(|(k, _)| k.starts_with("Flow ")) {
                    for (_, key) in KEYS {
                        seen[domain].extend(occurrences(record, key).iter().map(|_| key));
                    }
                }
            }
        });
        for ((ie, pen), seen) in cases.iter().zip(&seen) {
            let expected: Vec<&str> = match pen {
                None | Some(29305) => KEYS
                    .iter()
                    .filter(|(n, _)| *n == u64::from(*ie))
                    .map(|(_, k)| *k)
                    .collect(),
                Some(_) => Vec::new(),
            };
            assert_eq!(seen, &expected, "IE {ie}, PEN {pen:?}");
        }
    }
}
