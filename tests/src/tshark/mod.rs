//! An independent oracle for sFlow v5 captures: per-destination traffic totals
//! computed from tshark's own dissection (`tshark -T json -x`, tshark 4.0.17),
//! for comparison with our XDP and userspace decoders. It shares no code with
//! them and decodes no sFlow or packet bytes itself, with one exception forced
//! by a tshark bug: the 32-bit TCP flags word of sampled IPv4/IPv6 records is
//! read from the frame's hex dump at the position tshark's fields give (see
//! the quirks below).
//!
//! # Semantics
//!
//! Every sFlow v5 datagram sent to UDP port `port` (the outer UDP header, the
//! one the `sflow` layer sits on) is considered, and in it every flow sample
//! (format 1 "flow sample" or 3 "expanded flow sample"; counter samples and
//! anything else are ignored). With `R` the sample's sampling rate, samples
//! with `R == 0` or `R > 2^24` are skipped. The packet description of a sample
//! is the first raw packet header record (format 1) whose header protocol is
//! Ethernet (1), IPv4 (11) or IPv6 (12) and in which tshark found an IPv4 or
//! IPv6 destination, else the first sampled IPv4 (3) or sampled IPv6 (4)
//! record, else nothing (the sample contributes nothing). The totals of its
//! destination get `packets += R`, `bytes += L * R` (raw header: `L =
//! frame_length - stripped` if `stripped <= 64 && stripped < frame_length`,
//! else `frame_length`; records 3/4: their `length`), and one class by IP
//! protocol: 6 `tcp` (and `tcp_syn` if the sampled bytes hold the TCP flags
//! with SYN set and ACK clear), 17 `udp`, 1 or 58 `icmp`, anything else
//! `other`; `fragments` also counts IPv4 packets with MF set or a non-zero
//! fragment offset and IPv6 packets whose header chain reaches a fragment
//! header (44), even if that header itself was not sampled. Records 3/4: the
//! protocol field gives the class, the tcp_flags word SYN (0x02 set, 0x10
//! clear), no fragment information. Sums saturate at `u64::MAX`.
//!
//! # How tshark shows the fields used
//!
//! Layers are objects under `_source.layers`, in dissection order; with `-x`
//! every field `F` is preceded by `F_raw: [hex, position, length, bitmask,
//! type]`, the position counted from the start of the frame. Duplicate keys are
//! common (two `Flow sample, seq 1` samples, `ip.addr` twice), so the JSON is
//! read by the small parser below, which keeps every key and their order
//! (`serde_json::Value` keeps only the last of duplicate keys and, without its
//! `preserve_order` feature, loses the order).
//!
//! - Outer transport: the last top-level `udp` layer before `sflow`,
//!   `udp.dstport`. The datagram's extent is the span of `sflow_raw`.
//! - Datagram: `sflow_245.version`, `sflow_245.numsamples`; each sample is an
//!   object child titled after its type (`Flow sample, seq N`, `Expanded flow
//!   sample, seq N`, `Counters sample, seq N`, `Unknown sample format`,
//!   `Unknown enterprise format`), found here by its `sflow.enterprise` field.
//!   That field's value is not to be trusted (an enterprise sample shows 0, a
//!   record of enterprise 4413 shows 1): flow samples are those with a
//!   `sflow_245.sampletype` (the format, low 12 bits) of 1 or 3.
//! - Sample: `sflow_5.sample_length`, `sflow.flow_sample.sampling_rate`
//!   (formats 1 and 3 alike), `sflow.flow_sample.flow_record` (number of
//!   records); records are object children (`Raw packet header`, `IPv4 data`,
//!   `IPv6 data`, `Extended switch data`, ...) with
//!   `sflow_245.flow_record_format` and `sflow_5.flow_data_length` (an
//!   enterprise record: `sflow.enterprise.length`).
//! - Raw header: `sflow_245.header_protocol`, `sflow_245.header.frame_length`,
//!   `sflow_245.header.payload_stripped`, `sflow_245.header.sampled_header_length`,
//!   the bytes `sflow_245.header` and the inner dissection in
//!   `sflow_245.header_tree`, whose children are the inner layers (`eth`,
//!   `vlan`, `ieee8021ad`, `mpls`, `ip`/`ipv6`, `tcp`/`udp`/`icmp`/...). The
//!   inner IP is the first `ip`/`ipv6` child reached through `eth`, `vlan`,
//!   `ieee8021ad` and `mpls` children only (a PPPoE, LLC or pseudowire path
//!   gives no IP); with header protocol 11 (12) it must be the first child and
//!   `ip` (`ipv6`). IPv4: `ip.dst`, `ip.proto`, `ip.flags.mf` (in
//!   `ip.flags_tree`), `ip.frag_offset`. IPv6: `ipv6.dst`, `ipv6.nxt` and the
//!   extension headers nested in the `ipv6` object: `ipv6.hopopts`,
//!   `ipv6.routing`, `ipv6.fraghdr`, `ipv6.dstopts` (each with its `.nxt`) and
//!   `ah` (`ah.next_header`); the chain is followed while the next header is 0,
//!   43, 44, 60 or 51 and the matching header is there. TCP: the layer right
//!   after the IP one, `tcp.flags.syn` and `tcp.flags.ack` in `tcp.flags_tree`
//!   (a non-first fragment's payload is `data`: no SYN). The quoted IP header
//!   of an ICMP error sits inside the `icmp` object and is never taken for the
//!   inner IP.
//! - Records 3/4: `sflow_245.ip.length`, `sflow.ip_protocol`,
//!   `sflow_245.ipv4_dst` / `sflow_245.ipv6_dst`, `sflow.ip.destination_port`
//!   (for where the TCP flags word starts).
//!
//! # tshark quirks, and what is done about them
//!
//! - Records 3/4: tshark reads the TCP flags (`sflow_245.ip.tcp_flag.*`) from
//!   the first byte of the big-endian 32-bit word, always 0, instead of the
//!   last (`sflow_keyed.pcap`'s flags 0x18 show as all unset). The word is
//!   read from `frame_raw`, right after `sflow.ip.destination_port`.
//! - The sampled header is dissected with its XDR padding: tshark rounds
//!   `sampled_header_length` up to a multiple of 4, so up to 3 padding bytes
//!   are taken as packet data (an 18-byte IPv4 header shows `ip.dst
//!   10.0.0.0`). Every inner field used must end within
//!   `sampled_header_length` bytes of the start of `sflow_245.header`
//!   (positions from `-x`), else it counts as absent. TCP flags are shown from
//!   14 bytes of TCP header on.
//! - A sample with a non-zero enterprise stops the dissection of the datagram
//!   (`Unknown enterprise format`, then `_ws.malformed`): the samples after it
//!   are never shown. A flow record of a standard format tshark does not know
//!   (e.g. 1021) is not skipped by its length: what follows is read
//!   misaligned. Enterprise flow records are skipped correctly, as are unknown
//!   standard sample formats.
//! - tshark's walk is therefore checked against the lengths it shows: samples
//!   and records must follow each other exactly, their count match the
//!   declared one and their fields lie within their declared length. A sample
//!   running past the end of the datagram is not counted
//!   ([`Dissection::truncated_samples`]), nor are samples a datagram declares
//!   but does not hold ([`Dissection::short_datagrams`]); anything else tshark
//!   could not walk is a [`Dissection::problems`] entry, which [`sflow_truth`]
//!   turns into a panic: a truth missing samples tshark never read would be no
//!   truth.
//! - UDP tries the lower port first unless a decode-as applies: a datagram
//!   from port 53 to 6343 is shown as DNS (`-d udp.port==6343,sflow` changes
//!   nothing, 6343 being sFlow's default; for any other port the `-d` given
//!   wins). Any protocol seen claiming datagrams to `port` is disabled
//!   (`--disable-protocol`) and the capture read again.
//! - The application layers of a sampled packet can appear at the top level
//!   (DNS inside a sampled UDP packet is a top-level `dns` layer after
//!   `sflow`); only the `udp` layer before `sflow` is used.
//! - tshark's `ip` dissector hands a version-6 packet to `ipv6` (header
//!   protocol 11 with an IPv6 packet shows `ipv6`: not counted), while an
//!   IPv6 packet behind ethertype 0x0800 shows an `ip` layer without `ip.dst`
//!   (bogus version) before the `ipv6` one: not counted either.
//! - Inner IP reassembly and TCP analysis are turned off (`-o`), and tshark
//!   runs with an empty `WIRESHARK_CONFIG_DIR` so personal preferences,
//!   decode-as or disabled protocols cannot change the result.
//! - The first datagram of `pmacct-1.7.7_sfprobe_v5_ipv6-agent.pcap` declares a
//!   flow sample of length 1: tshark reads the sample's fields anyway (seq 1,
//!   rate 1073741823, 0 records), takes the next sample 1 byte further on,
//!   misaligned, as an unknown sample format 256 of length 63, and stops there
//!   (2 samples were declared). No malformed flag; the first sample's rate is
//!   above 2^24, so nothing is counted, and the datagrams after it are read
//!   normally: each frame is dissected on its own.
//! - Cost: `-x` output is about 130 times the capture's size; 5000 datagrams
//!   of 8 samples take about 25 s in a debug build, mostly tshark's time.
//!
//! This file runs tshark and holds the results; `sample.rs` reads datagrams
//! and their flow samples, `record.rs` the packet a sample describes, and
//! `json.rs` parses tshark's JSON.

mod json;
mod record;
mod sample;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read},
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use json::Parser;
pub(crate) use json::{Json, parse_num};
use sample::take_packet;

/// Totals for one destination IP, scaled by each sample's sampling rate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
    pub tcp: u64,
    pub tcp_syn: u64,
    pub udp: u64,
    pub icmp: u64,
    pub fragments: u64,
    pub other: u64,
}

/// Everything [`sflow_dissection`] learned from tshark about a capture.
#[derive(Debug, Clone, Default)]
pub struct Dissection {
    /// Per-destination totals (see the module documentation).
    pub totals: BTreeMap<IpAddr, Totals>,
    /// sFlow v5 datagrams to the port that tshark dissected.
    pub datagrams: u64,
    /// Flow samples (formats 1 and 3) tshark showed, counted or not.
    pub flow_samples: u64,
    /// Flow samples that added to the totals.
    pub counted_samples: u64,
    /// Flow samples with a valid rate running past the end of their datagram:
    /// not counted.
    pub truncated_samples: u64,
    /// Datagrams declaring more samples than they hold (tshark read all there
    /// was).
    pub short_datagrams: u64,
    /// What tshark could not read: samples it never showed or read
    /// misaligned. [`sflow_truth`] panics unless this is empty.
    pub problems: Vec<String>,
    /// Protocols disabled because tshark gave them datagrams sent to the port.
    pub disabled_protocols: Vec<String>,
}

/// Per-destination totals of every sFlow flow sample in the capture (UDP
/// datagrams to `port`). Panics if tshark is missing or fails, or if it could
/// not read every flow sample of the capture (see [`Dissection::problems`]).
pub fn sflow_truth(pcap: &Path, port: u16) -> BTreeMap<IpAddr, Totals> {
    let d = sflow_dissection(pcap, port);
    assert!(
        d.problems.is_empty(),
        "tshark could not read every sFlow sample of {} (port {port}), so it gives no \
         truth for it (sflow_dissection() gives what it could read):\n{}",
        pcap.display(),
        d.problems.join("\n")
    );
    d.totals
}

/// What tshark shows of the sFlow datagrams to `port` in `pcap`, including
/// what it could not read. Panics if tshark is missing or fails.
pub fn sflow_dissection(pcap: &Path, port: u16) -> Dissection {
    sflow_dissection_without(pcap, port, &[])
}

/// [`sflow_dissection`] with application dissectors `apps` disabled from the
/// start: for generated sampled packets whose payload (zeros) such a
/// dissector flags malformed (DoIP on port 13400), which says nothing about
/// the sFlow, IP or transport fields this oracle reads. Protocols it reads
/// cannot be disabled.
pub fn sflow_dissection_without(pcap: &Path, port: u16, apps: &[&str]) -> Dissection {
    assert!(
        pcap.is_file(),
        "no capture at {} for the tshark oracle",
        pcap.display()
    );
    assert!(
        apps.iter().all(|p| !NEEDED.contains(p)),
        "the oracle reads {apps:?}: it cannot disable them"
    );
    let mut disabled: BTreeSet<String> = apps.iter().map(|p| p.to_string()).collect();
    loop {
        let mut d = Dissection::default();
        let mut claimed = BTreeSet::new();
        run_tshark(pcap, port, &disabled, |packet| {
            take_packet(&packet, port, &mut d, &mut claimed)
        });
        if claimed.is_empty() {
            d.disabled_protocols = disabled.into_iter().collect();
            return d;
        }
        for p in claimed {
            assert!(
                !NEEDED.contains(&p.as_str()) && !disabled.contains(&p),
                "tshark dissects UDP datagrams to port {port} in {} as {p:?}, not sFlow, \
                 and {p:?} cannot be disabled",
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
    "mpls",
    "ip",
    "ipv6",
    "udp",
    "tcp",
    "icmp",
    "icmpv6",
    "ah",
    "sflow",
    "data",
];

/// Preferences set on every run (the rest are defaults: the configuration
/// directory is empty).
const PREFS: &[(&str, &str)] = &[
    ("sflow.enable_dissection", "TRUE"),
    ("sflow.enable_analysis", "FALSE"),
    ("ip.defragment", "FALSE"),
    ("ipv6.defragment", "FALSE"),
    ("ipv6.exthdr_under_root_protocol_tree", "FALSE"),
    ("udp.try_heuristic_first", "FALSE"),
    ("tcp.desegment_tcp_streams", "FALSE"),
    ("tcp.analyze_sequence_numbers", "FALSE"),
];

/// The largest sampling rate counted (2^24).
const MAX_RATE: u64 = 1 << 24;

/// A fresh, empty `WIRESHARK_CONFIG_DIR`, removed on drop.
pub(crate) struct ConfigDir(pub(crate) PathBuf);

impl ConfigDir {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "edge-sensor-tshark-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs tshark on `pcap` and hands each packet's JSON to `each`, one at a time
/// (the output is read as it comes: a packet is a top-level object that tshark
/// prints between a line `  {` and a line `  }` or `  },`).
fn run_tshark(pcap: &Path, port: u16, disabled: &BTreeSet<String>, each: impl FnMut(Json<'_>)) {
    let config = ConfigDir::new();
    let mut cmd = Command::new("tshark");
    cmd.env("WIRESHARK_CONFIG_DIR", &config.0)
        .args(["-n", "-T", "json", "-x", "-r"])
        .arg(pcap)
        .arg("-Y")
        .arg(format!("udp.dstport == {port}"));
    if port != 6343 {
        cmd.arg("-d").arg(format!("udp.port=={port},sflow"));
    }
    for (pref, value) in PREFS {
        cmd.arg("-o").arg(format!("{pref}:{value}"));
    }
    for p in disabled {
        cmd.arg("--disable-protocol").arg(p);
    }
    stream_packets(cmd, pcap, "sFlow", each);
}

/// Runs `cmd` (a `tshark -T json` over `pcap`) and hands each packet's JSON
/// to `each`; panics with tshark's own words if it fails. `what` names the
/// oracle in the message shown when tshark is missing.
pub(crate) fn stream_packets(
    mut cmd: Command,
    pcap: &Path,
    what: &str,
    mut each: impl FnMut(Json<'_>),
) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the {what} test oracle needs tshark (4.0 or later) in PATH: `apt-get install tshark`"
        ),
        Err(e) => panic!("starting tshark: {e}"),
    };
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut stdout = BufReader::with_capacity(1 << 20, child.stdout.take().expect("piped stdout"));
    let mut text = Vec::new();
    let mut inside = false;
    loop {
        let start = text.len();
        let n = stdout
            .read_until(b'\n', &mut text)
            .expect("reading tshark's output");
        if n == 0 {
            break;
        }
        let line = text[start..].strip_suffix(b"\n").unwrap_or(&text[start..]);
        match (inside, line) {
            (false, b"  {") => inside = true,
            (false, b"[" | b"]" | b"[]" | b"") => text.clear(),
            (false, other) => panic!(
                "unexpected line in tshark's JSON output: {:?}",
                String::from_utf8_lossy(other)
            ),
            (true, b"  }" | b"  },") => {
                text.truncate(start);
                text.push(b'}');
                let json = Parser::parse(&text)
                    .unwrap_or_else(|e| panic!("tshark's JSON output does not parse: {e}"));
                each(json);
                text.clear();
                inside = false;
            }
            (true, _) => {}
        }
    }
    let status = child.wait().expect("waiting for tshark");
    let errors = errors.join().unwrap_or_default();
    assert!(
        status.success(),
        "tshark failed ({status}) on {}: {errors}",
        pcap.display()
    );
    assert!(!inside, "tshark's JSON output ends inside a packet");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LAB: &str = "/work/shared/data/pcaps/lab";
    const PKTVISOR: &str = "/work/shared/data/pcaps/public/pktvisor";

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    fn sum(totals: &BTreeMap<IpAddr, Totals>) -> (u64, u64) {
        totals
            .values()
            .fold((0, 0), |(p, b), t| (p + t.packets, b + t.bytes))
    }

    /// A file in the temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "edge-sensor-tshark-test-{}-{}-{name}",
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

    /// The records of a classic pcap file whose indices `keep` accepts.
    fn pcap_subset(path: &Path, keep: impl Fn(usize) -> bool) -> Vec<u8> {
        let b = std::fs::read(path).unwrap();
        let le = match b[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
            _ => panic!("{} is not a classic pcap file", path.display()),
        };
        let mut out = b[..24].to_vec();
        let (mut at, mut i) = (24, 0);
        while at + 16 <= b.len() {
            let n: [u8; 4] = b[at + 8..at + 12].try_into().unwrap();
            let len = if le {
                u32::from_le_bytes(n)
            } else {
                u32::from_be_bytes(n)
            } as usize;
            if keep(i) {
                out.extend_from_slice(&b[at..at + 16 + len]);
            }
            at += 16 + len;
            i += 1;
        }
        out
    }

    #[test]
    fn pmacct_rate1() {
        let pcap = Path::new(LAB).join("pmacct-1.7.7_sfprobe_v5_rate1.pcap");
        let d = sflow_dissection(&pcap, 6343);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(
            (d.datagrams, d.flow_samples, d.counted_samples),
            (10, 30, 30)
        );
        assert_eq!(d.totals.len(), 6);
        assert_eq!(sum(&d.totals), (30, 9240));
        // ping (1046-byte frames incl. FCS, 4 stripped), hping3 SYNs to port
        // 80 (58), UDP to 53 (246): 3 of each, rate 1.
        assert_eq!(
            d.totals[&v4(10, 99, 0, 2)],
            Totals {
                packets: 9,
                bytes: 3 * 1042 + 3 * 54 + 3 * 242,
                tcp: 3,
                tcp_syn: 3,
                udp: 3,
                icmp: 3,
                ..Totals::default()
            }
        );
        // Echo replies, RST+ACKs (no SYN) and port unreachables (274): the
        // IP header an ICMP error quotes (to 10.99.0.2) is not the packet's.
        assert_eq!(
            d.totals[&v4(10, 99, 0, 1)],
            Totals {
                packets: 9,
                bytes: 3 * 1042 + 3 * 54 + 3 * 270,
                tcp: 3,
                icmp: 6,
                ..Totals::default()
            }
        );
        // ping -6 (frames of 122 bytes) and neighbour discovery (90 and 82)
        // over IPv6: ICMPv6.
        for (dst, bytes) in [
            ("fd99::2", 322),
            ("fd99::1", 322),
            ("fe80::1ca6:54ff:fe8b:508d", 242),
            ("fe80::2066:16ff:fe2e:bae2", 242),
        ] {
            let t = &d.totals[&v6(dst)];
            assert_eq!((t.packets, t.bytes, t.icmp), (3, bytes, 3), "{dst}");
        }
        assert_eq!(sflow_truth(&pcap, 6343), d.totals);
    }

    #[test]
    fn pmacct_ipv6_agent_with_a_malformed_first_datagram() {
        let pcap = Path::new(LAB).join("pmacct-1.7.7_sfprobe_v5_ipv6-agent.pcap");
        let d = sflow_dissection(&pcap, 6343);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        // The malformed flow sample is shown (rate 1073741823, no record) and
        // skipped for its rate.
        assert_eq!(
            (d.datagrams, d.flow_samples, d.counted_samples),
            (5, 21, 20)
        );
        assert_eq!(d.totals.len(), 4);
        assert_eq!(sum(&d.totals), (20, 6500));
        assert_eq!(
            d.totals[&v4(10, 99, 0, 2)],
            Totals {
                packets: 8,
                bytes: 2 * 1042 + 3 * 54 + 3 * 242,
                tcp: 3,
                tcp_syn: 3,
                udp: 3,
                icmp: 2,
                ..Totals::default()
            }
        );
        assert_eq!(d.totals[&v4(10, 99, 0, 1)].packets, 8);
        assert_eq!(d.totals[&v6("fd99::2")].bytes, 2 * 118);

        // The first datagram alone gives nothing, without a problem...
        let first = TempFile::new("first.pcap", &pcap_subset(&pcap, |i| i == 0));
        let f = sflow_dissection(&first.0, 6343);
        assert!(f.problems.is_empty() && f.totals.is_empty(), "{f:?}");
        assert_eq!((f.datagrams, f.flow_samples), (1, 1));
        // ... and the others give the same without it.
        let rest = TempFile::new("rest.pcap", &pcap_subset(&pcap, |i| i > 0));
        assert_eq!(sflow_truth(&rest.0, 6343), d.totals);
    }

    #[test]
    fn pktvisor_sflow_ipv6() {
        // One flow sample, rate 1, a raw IPv6 header (protocol 12) of a UDP
        // packet to port 53: frame length 62, 14 stripped.
        let pcap = Path::new(PKTVISOR).join("sflow_ipv6.pcap");
        let totals = sflow_truth(&pcap, 6343);
        assert_eq!(totals.len(), 1);
        assert_eq!(
            totals[&v6("2001:db8::2")],
            Totals {
                packets: 1,
                bytes: 48,
                udp: 1,
                ..Totals::default()
            }
        );
    }

    #[test]
    fn pktvisor_sflow_keyed() {
        // Two flow samples, rate 1: a sampled IPv4 record (TCP 1500 bytes,
        // flags 0x18, which tshark shows as all unset) and a sampled IPv6
        // record (UDP 1280 bytes).
        let pcap = Path::new(PKTVISOR).join("sflow_keyed.pcap");
        let totals = sflow_truth(&pcap, 6343);
        assert_eq!(totals.len(), 2);
        assert_eq!(
            totals[&v4(192, 0, 2, 20)],
            Totals {
                packets: 1,
                bytes: 1500,
                tcp: 1,
                ..Totals::default()
            }
        );
        assert_eq!(
            totals[&v6("2001:db8::2")],
            Totals {
                packets: 1,
                bytes: 1280,
                udp: 1,
                ..Totals::default()
            }
        );
        // Nothing is sent to another port.
        assert!(sflow_truth(&pcap, 6344).is_empty());
    }

    /// Crafted sFlow v5, written here from the specification (sflow.org
    /// sflow_version_5.txt), independently of the sensor's decoders.
    mod craft {
        use std::net::Ipv6Addr;

        fn put(v: &mut Vec<u8>, words: &[u32]) {
            for w in words {
                v.extend_from_slice(&w.to_be_bytes());
            }
        }

        pub fn ipv4(dst: [u8; 4], proto: u8, frag: u16, total: u16, body: &[u8]) -> Vec<u8> {
            let mut v = vec![0x45, 0];
            v.extend_from_slice(&total.to_be_bytes());
            v.extend_from_slice(&[0x12, 0x34]);
            v.extend_from_slice(&frag.to_be_bytes());
            v.extend_from_slice(&[64, proto, 0, 0, 192, 0, 2, 1]);
            v.extend_from_slice(&dst);
            v.extend_from_slice(body);
            v
        }

        pub fn ipv6(dst: &str, next: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![0x60, 0, 0, 0];
            v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            v.extend_from_slice(&[next, 64]);
            v.extend_from_slice(&"2001:db8::99".parse::<Ipv6Addr>().unwrap().octets());
            v.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
            v.extend_from_slice(body);
            v
        }

        pub fn tcp(flags: u8) -> Vec<u8> {
            let mut v = vec![0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags];
            v.extend_from_slice(&[0x04, 0, 0, 0, 0, 0]);
            v
        }

        pub fn udp() -> Vec<u8> {
            vec![0x30, 0x39, 0x04, 0xd2, 0, 8, 0, 0]
        }

        pub fn icmp() -> Vec<u8> {
            vec![8, 0, 0, 0, 0, 1, 0, 1]
        }

        /// Ethernet with the given (TPID, VID) tags, then `ethertype`.
        pub fn eth(tags: &[(u16, u16)], ethertype: u16, body: &[u8]) -> Vec<u8> {
            let mut v = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
            for (tpid, vid) in tags {
                v.extend_from_slice(&tpid.to_be_bytes());
                v.extend_from_slice(&vid.to_be_bytes());
            }
            v.extend_from_slice(&ethertype.to_be_bytes());
            v.extend_from_slice(body);
            v
        }

        /// A raw packet header record; the XDR padding is `pad` bytes.
        pub fn raw_header(
            proto: u32,
            frame_length: u32,
            stripped: u32,
            header: &[u8],
            pad: u8,
        ) -> Vec<u8> {
            let mut body = Vec::new();
            put(
                &mut body,
                &[proto, frame_length, stripped, header.len() as u32],
            );
            body.extend_from_slice(header);
            while body.len() % 4 != 0 {
                body.push(pad);
            }
            record(1, &body)
        }

        pub fn sampled_ipv4(length: u32, proto: u32, dst: [u8; 4], tcp_flags: u32) -> Vec<u8> {
            let mut body = Vec::new();
            put(
                &mut body,
                &[
                    length,
                    proto,
                    0xc000_0201,
                    u32::from_be_bytes(dst),
                    1,
                    80,
                    tcp_flags,
                    0,
                ],
            );
            record(3, &body)
        }

        pub fn sampled_ipv6(length: u32, proto: u32, dst: &str, tcp_flags: u32) -> Vec<u8> {
            let mut body = Vec::new();
            put(&mut body, &[length, proto]);
            body.extend_from_slice(&[0x20, 1, 0x0d, 0xb8]);
            body.extend_from_slice(&[0; 12]);
            body.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
            put(&mut body, &[1, 80, tcp_flags, 0]);
            record(4, &body)
        }

        pub fn extended_switch() -> Vec<u8> {
            let mut body = Vec::new();
            put(&mut body, &[10, 0, 20, 0]);
            record(1001, &body)
        }

        pub fn record(format: u32, body: &[u8]) -> Vec<u8> {
            let mut v = Vec::new();
            put(&mut v, &[format, body.len() as u32]);
            v.extend_from_slice(body);
            v
        }

        pub fn flow_sample(rate: u32, records: &[Vec<u8>]) -> Vec<u8> {
            let mut body = Vec::new();
            put(
                &mut body,
                &[1, 3, rate, rate * 10, 0, 1, 2, records.len() as u32],
            );
            records.iter().for_each(|r| body.extend_from_slice(r));
            record(1, &body)
        }

        pub fn expanded_flow_sample(rate: u32, records: &[Vec<u8>]) -> Vec<u8> {
            let mut body = Vec::new();
            put(
                &mut body,
                &[1, 0, 3, rate, rate, 0, 0, 1, 0, 2, records.len() as u32],
            );
            records.iter().for_each(|r| body.extend_from_slice(r));
            record(3, &body)
        }

        /// A counters sample with one generic interface counters record.
        pub fn counters_sample() -> Vec<u8> {
            let mut generic = Vec::new();
            put(
                &mut generic,
                &[1, 6, 0, 1_000_000_000, 1, 3, 0, 5, 1, 1, 1, 1, 0, 0, 0, 5],
            );
            put(&mut generic, &[1, 0, 0, 0, 0, 0]);
            let mut body = Vec::new();
            put(&mut body, &[1, 3, 1]);
            body.extend_from_slice(&record(1, &generic));
            record(2, &body)
        }

        /// A datagram from agent 192.0.2.1 declaring `declared` samples.
        pub fn datagram_declaring(declared: u32, samples: &[Vec<u8>]) -> Vec<u8> {
            let mut v = Vec::new();
            put(&mut v, &[5, 1, 0xc000_0201, 0, 1, 1000, declared]);
            samples.iter().for_each(|s| v.extend_from_slice(s));
            v
        }

        pub fn datagram(samples: &[Vec<u8>]) -> Vec<u8> {
            datagram_declaring(samples.len() as u32, samples)
        }

        /// A classic pcap of Ethernet/IPv4/UDP frames (source port,
        /// destination port, payload).
        pub fn pcap(datagrams: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
            let mut v = Vec::new();
            for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
                v.extend_from_slice(&w.to_le_bytes());
            }
            for (i, (sport, dport, payload)) in datagrams.iter().enumerate() {
                let mut u = Vec::new();
                u.extend_from_slice(&sport.to_be_bytes());
                u.extend_from_slice(&dport.to_be_bytes());
                u.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                u.extend_from_slice(payload);
                let total = 20 + u.len() as u16;
                let frame = eth(&[], 0x0800, &ipv4([198, 51, 100, 2], 17, 0, total, &u));
                for w in [1000 + i as u32, 0, frame.len() as u32, frame.len() as u32] {
                    v.extend_from_slice(&w.to_le_bytes());
                }
                v.extend_from_slice(&frame);
            }
            v
        }
    }

    #[test]
    fn crafted_samples_on_another_port() {
        use craft::*;
        let syn = 0x02;
        // A flow sample of one raw header record (no padding trick).
        let one = |rate, proto, frame_length, stripped, header: &[u8]| {
            flow_sample(
                rate,
                &[raw_header(proto, frame_length, stripped, header, 0)],
            )
        };
        let tcp4 = |dst, flags, frag, total| ipv4(dst, 6, frag, total, &tcp(flags));
        let icmp4 = |dst| ipv4(dst, 1, 0, 28, &icmp());
        let mpls_qinq = eth(
            &[(0x88a8, 5), (0x8100, 6)],
            0x8847,
            &[
                &[0, 1, 0x0e, 64, 0, 2, 0x01, 64][..],
                &ipv4([10, 0, 0, 2], 17, 0, 982, &udp()),
            ]
            .concat(),
        );
        let hop_frag_syn = [
            &[44, 0, 1, 4, 0, 0, 0, 0][..],
            &[6, 0, 0, 1, 0, 0, 0, 9],
            &tcp(syn),
        ]
        .concat();
        let ah_udp = [&[17, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1][..], &[0; 12], &udp()].concat();
        let mut header_33 = tcp4([10, 0, 0, 6], 0, 0, 60);
        header_33.truncate(33); // the TCP flags byte is not sampled
        let samples = vec![
            // SYN, then SYN+ACK through a VLAN, to 10.0.0.1.
            flow_sample(
                10,
                &[
                    extended_switch(),
                    raw_header(
                        1,
                        64,
                        4,
                        &eth(&[], 0x0800, &tcp4([10, 0, 0, 1], syn, 0, 40)),
                        0,
                    ),
                ],
            ),
            one(
                10,
                1,
                1518,
                4,
                &eth(&[(0x8100, 5)], 0x0800, &tcp4([10, 0, 0, 1], 0x12, 0, 1500)),
            ),
            // Expanded sample, QinQ and two MPLS labels; 100 stripped (> 64).
            expanded_flow_sample(
                100,
                &[extended_switch(), raw_header(1, 1000, 100, &mpls_qinq, 0)],
            ),
            // IPv4 fragments: the first (MF, with the SYN), then offset 1480.
            one(5, 11, 1500, 0, &tcp4([10, 0, 0, 3], syn, 0x2000, 1500)),
            one(
                5,
                11,
                500,
                0,
                &ipv4([10, 0, 0, 3], 6, 185, 500, &[0x7a; 40]),
            ),
            // IPv6: hop-by-hop, fragment header, TCP SYN; then AH and UDP.
            one(7, 12, 1400, 0, &ipv6("2001:db8::1", 0, &hop_frag_syn)),
            one(7, 12, 300, 0, &ipv6("2001:db8::1", 51, &ah_udp)),
            // An IPv4 header cut at 18 bytes (tshark shows 10.0.0.0, taking
            // the 2 padding bytes), then a sampled IPv4 record: the record.
            flow_sample(
                3,
                &[
                    raw_header(11, 60, 0, &tcp4([10, 0, 0, 4], syn, 0, 40)[..18], 0),
                    sampled_ipv4(777, 6, [10, 0, 0, 5], 0x02),
                ],
            ),
            // TCP header cut before its flags, with SYN in the padding.
            flow_sample(3, &[raw_header(11, 60, 0, &header_33, 0x02)]),
            // Rates 0 and 2^24 + 1 are skipped, 2^24 is not.
            one(0, 11, 64, 0, &icmp4([10, 0, 0, 7])),
            one(16_777_217, 11, 64, 0, &icmp4([10, 0, 0, 7])),
            one(16_777_216, 11, 64, 0, &icmp4([10, 0, 0, 8])),
            counters_sample(),
            // ARP gives no IP: the sampled IPv6 record is used.
            flow_sample(
                2,
                &[
                    raw_header(1, 64, 4, &eth(&[], 0x0806, &[0, 1, 8, 0, 6, 4, 0, 1]), 0),
                    sampled_ipv6(1280, 58, "2001:db8::2", 0),
                ],
            ),
            // 6in4: the outer IPv4 header, protocol 41.
            one(
                2,
                11,
                100,
                0,
                &ipv4([10, 0, 0, 9], 41, 0, 48, &ipv6("2001:db8::3", 17, &udp())),
            ),
            // Header protocol IPv4 with an IPv6 packet: nothing.
            one(1, 11, 100, 0, &ipv6("2001:db8::3", 17, &udp())),
        ];
        let icmp_sample = one(1, 11, 100, 4, &icmp4([10, 0, 0, 10]));
        let other_port = one(1, 11, 100, 4, &icmp4([10, 0, 0, 11]));
        let file = TempFile::new(
            "crafted.pcap",
            &pcap(&[
                (40000, 9999, datagram(&samples)),
                // From port 53: decode-as (port 9999) beats the lower port.
                (53, 9999, datagram(&[icmp_sample])),
                (40000, 6343, datagram(&[other_port])),
                (40000, 9999, b"not sFlow at all".to_vec()),
            ]),
        );
        let d = sflow_dissection(&file.0, 9999);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert!(d.disabled_protocols.is_empty());
        assert_eq!(
            (d.datagrams, d.flow_samples, d.counted_samples),
            (2, 16, 13)
        );
        let t = |packets, bytes| Totals {
            packets,
            bytes,
            ..Totals::default()
        };
        let expected = BTreeMap::from([
            (
                v4(10, 0, 0, 1),
                Totals {
                    tcp: 20,
                    tcp_syn: 10,
                    ..t(20, 10 * 60 + 10 * 1514)
                },
            ),
            (
                v4(10, 0, 0, 2),
                Totals {
                    udp: 100,
                    ..t(100, 100 * 1000)
                },
            ),
            (
                v4(10, 0, 0, 3),
                Totals {
                    tcp: 10,
                    tcp_syn: 5,
                    fragments: 10,
                    ..t(10, 5 * 1500 + 5 * 500)
                },
            ),
            (
                v4(10, 0, 0, 5),
                Totals {
                    tcp: 3,
                    tcp_syn: 3,
                    ..t(3, 3 * 777)
                },
            ),
            (
                v4(10, 0, 0, 6),
                Totals {
                    tcp: 3,
                    ..t(3, 3 * 60)
                },
            ),
            (
                v4(10, 0, 0, 8),
                Totals {
                    icmp: 1 << 24,
                    ..t(1 << 24, 64 << 24)
                },
            ),
            (
                v4(10, 0, 0, 9),
                Totals {
                    other: 2,
                    ..t(2, 200)
                },
            ),
            (
                v4(10, 0, 0, 10),
                Totals {
                    icmp: 1,
                    ..t(1, 96)
                },
            ),
            (
                v6("2001:db8::1"),
                Totals {
                    tcp: 7,
                    tcp_syn: 7,
                    udp: 7,
                    fragments: 7,
                    ..t(14, 7 * 1400 + 7 * 300)
                },
            ),
            (
                v6("2001:db8::2"),
                Totals {
                    icmp: 2,
                    ..t(2, 2 * 1280)
                },
            ),
        ]);
        assert_eq!(d.totals, expected);
    }

    #[test]
    fn what_tshark_cannot_read_is_reported() {
        use craft::*;
        let sample = |dst| {
            flow_sample(
                10,
                &[raw_header(11, 64, 0, &ipv4(dst, 17, 0, 28, &udp()), 0)],
            )
        };
        let enterprise_sample = record(4413 << 12 | 1, &[0; 8]);
        let truncated = datagram(&[sample([10, 0, 0, 3]), sample([10, 0, 0, 4])]);
        let file = TempFile::new(
            "unreadable.pcap",
            &pcap(&[
                // A sample of enterprise 4413 ends tshark's reading: the
                // sample after it is never shown.
                (
                    40000,
                    6343,
                    datagram(&[
                        sample([10, 0, 0, 1]),
                        enterprise_sample,
                        sample([10, 0, 0, 2]),
                    ]),
                ),
                // An unknown standard flow record format is not skipped right
                // (here its zero bytes are read as an empty record); the next
                // sample is found by the sample's length.
                (
                    40000,
                    6343,
                    datagram(&[
                        flow_sample(
                            10,
                            &[
                                record(1021, &[0; 8]),
                                raw_header(11, 64, 0, &ipv4([10, 0, 0, 5], 17, 0, 28, &udp()), 0),
                            ],
                        ),
                        sample([10, 0, 0, 7]),
                    ]),
                ),
                // Cut inside the second sample: it is not counted.
                (40000, 6343, truncated[..truncated.len() - 10].to_vec()),
                // Cut inside a sample's header, then inside the datagram's.
                (40000, 6343, truncated[..32].to_vec()),
                (40000, 6343, truncated[..20].to_vec()),
                // Declaring 5 samples, holding 1.
                (40000, 6343, datagram_declaring(5, &[sample([10, 0, 0, 6])])),
            ]),
        );
        let d = sflow_dissection(&file.0, 6343);
        assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
        assert!(
            d.problems[0].starts_with("frame 1, sample 2: tshark cannot read the sample's length")
        );
        assert!(
            d.problems[1].starts_with("frame 2, sample 1: tshark lost track of the flow records")
        );
        assert_eq!(
            (d.datagrams, d.truncated_samples, d.short_datagrams),
            (6, 2, 1)
        );
        let seen: Vec<IpAddr> = d.totals.keys().copied().collect();
        assert_eq!(
            seen,
            [
                v4(10, 0, 0, 1),
                v4(10, 0, 0, 3),
                v4(10, 0, 0, 6),
                v4(10, 0, 0, 7)
            ]
        );
        let panic = std::panic::catch_unwind(|| sflow_truth(&file.0, 6343)).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("could not read every sFlow sample"),
            "{message}"
        );
    }

    #[test]
    fn datagrams_from_a_lower_known_port() {
        use craft::*;
        // UDP tries the lower port first: from port 53 to 6343 (sFlow's own
        // port, so no decode-as) tshark shows DNS until DNS is disabled.
        let sample = flow_sample(
            4,
            &[raw_header(
                11,
                100,
                4,
                &ipv4([10, 0, 0, 1], 1, 0, 28, &icmp()),
                0,
            )],
        );
        let file = TempFile::new(
            "dns.pcap",
            &pcap(&[
                (53, 6343, datagram(std::slice::from_ref(&sample))),
                (40000, 6343, datagram(&[sample])),
            ]),
        );
        let d = sflow_dissection(&file.0, 6343);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.disabled_protocols, ["dns"]);
        assert_eq!(d.datagrams, 2);
        let t = &d.totals[&v4(10, 0, 0, 1)];
        assert_eq!((t.packets, t.bytes, t.icmp), (8, 8 * 96, 8));
    }
}
