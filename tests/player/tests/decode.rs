//! Every datagram the player emits decodes, with the sensor's own userspace
//! decoder and with tshark, to exactly the samples its truth names; the
//! exporters' framing (sequence numbers, MTU, templates) is what routers do.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use edge_sensor_player::{
    Datagram, Format, Player, Scenario,
    packet::{ICMP, ICMPV6, TCP},
    pcap, truth,
};

use common::{IPFIX_PORT, SFLOW_PORT, addressing, decoder, feed, scenario};

/// Packets, bytes, TCP, SYN, UDP, ICMP, other.
type Classes = (u64, u64, u64, u64, u64, u64, u64);

/// Destination, source, protocol, ports, flags, packet length, packets and
/// bytes (scaled), sampled packets behind it: a watched sample.
type Watched = (IpAddr, IpAddr, u8, u16, u16, u8, u16, u64, u64, u64);

fn play(s: &Scenario) -> (Player, Vec<Datagram>) {
    let mut p = Player::new(s).expect("a valid scenario");
    let all = p.run_all();
    (p, all)
}

/// What the decoder's watched-sample stream must say of a record (an sFlow
/// sample, or an IPFIX record of one or more samples of a flow).
fn expected_watch(record: &[edge_sensor_player::Sample], format: Format) -> Watched {
    let s = &record[0];
    let p = &s.packet;
    let icmp = p.proto == ICMP || p.proto == ICMPV6;
    let (sport, dport) = match (icmp, format) {
        (false, _) => (p.src_port, p.dst_port),
        (true, Format::Sflow) => (0, 0),
        // IPFIX exporters put ICMP type and code in the destination port.
        (true, Format::Ipfix) => (0, u16::from(p.tcp_flags) << 8),
    };
    let flags = if p.proto == TCP {
        record.iter().fold(0, |f, s| f | s.packet.tcp_flags)
    } else {
        0
    };
    let len: u64 = record
        .iter()
        .map(|s| {
            u64::from(match format {
                Format::Sflow => s.packet.frame_len(),
                Format::Ipfix => s.packet.ip_len,
            })
        })
        .sum();
    let r = u64::from(s.rate);
    let k = record.len() as u64;
    // Counted bytes are what the exporter states (sFlow: the frame); the
    // packet's length for a rule is its IP length (RFC 8955), which the
    // decoder reads from the sampled header's IP header: for IPFIX the
    // record's mean, for sFlow the one sampled packet's.
    let ip_len: u64 = record.iter().map(|s| u64::from(s.packet.ip_len)).sum();
    (
        p.dst,
        p.src,
        p.proto,
        sport,
        dport,
        flags,
        (ip_len / k) as u16,
        k * r,
        len * r,
        k,
    )
}

fn userspace_decoder_matches_the_truth(v6: bool) {
    let s = scenario(v6, 11);
    let (player, datagrams) = play(&s);
    let a = addressing(&s);
    let mut dec = decoder();
    // Watching every destination makes the decoder hand back each sample it
    // decoded, so each datagram is checked sample by sample.
    let all: BTreeSet<IpAddr> = player.model().hosts().iter().map(|h| h.addr).collect();
    dec.set_watched(&all);
    let (mut checked, mut aggregated) = (0u64, 0u64);
    for (i, d) in datagrams.iter().enumerate() {
        feed(&mut dec, &a, d);
        let got: Vec<_> = dec
            .take_samples()
            .into_iter()
            .map(|w| {
                (
                    w.dst,
                    w.src,
                    w.protocol,
                    w.src_port,
                    w.dst_port,
                    w.tcp_flags,
                    w.packet_len,
                    w.packets,
                    w.bytes,
                    w.sampled,
                )
            })
            .collect();
        let want: Vec<_> = truth::records(d)
            .into_iter()
            .map(|r| expected_watch(r, d.format))
            .collect();
        assert_eq!(
            got, want,
            "datagram {i} ({:?}, router {})",
            d.format, d.router
        );
        checked += d.truth.samples.len() as u64;
        aggregated += truth::records(d).iter().filter(|r| r.len() > 1).count() as u64;
    }
    assert_eq!(dec.watch_stats().lost, 0);
    // The ICMP flood: 20 sources, 2 s, a 1 s timeout: about 40 records.
    assert!(
        aggregated >= 20,
        "only {aggregated} IPFIX records aggregate samples"
    );
    assert!(
        checked > 10_000,
        "only {checked} samples: the scenario is too thin"
    );

    // The totals per destination, every class.
    let expected = truth::expected(&datagrams);
    let report = &dec.report.destinations;
    assert_eq!(
        report.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (ip, e) in &expected {
        // Totals and classes as the decoder's report prints them.
        let row = edge_sensor::cli::rows::DestinationRow::new(*ip, &report[ip]);
        assert_eq!((row.packets, row.bytes), (e.packets, e.bytes), "{ip}");
        assert_eq!(
            (
                row.tcp_packets,
                row.tcp_syn_packets,
                row.udp_packets,
                row.icmp_packets,
                row.other_packets,
                row.fragment_packets
            ),
            (
                e.tcp_packets,
                e.tcp_syn_packets,
                e.udp_packets,
                e.icmp_packets,
                e.other_packets,
                0
            ),
            "{ip}"
        );
    }

    // Exporters: no errors, no gaps or resets, the agents' drops.
    let exporters = &dec.report.exporters;
    assert_eq!(exporters.len(), s.routers.len(), "{exporters:?}");
    for (id, t) in exporters {
        let st = &t.stats;
        assert!(st.errors.iter().all(|&e| e == 0), "{id:?}: {:?}", st.errors);
        assert_eq!((st.sequence_gaps, st.sequence_resets), (0, 0), "{id:?}");
    }
    let max_drops = datagrams
        .iter()
        .filter(|d| d.router == 0)
        .flat_map(|d| d.truth.samples.iter().map(|s| s.drops))
        .max()
        .unwrap();
    assert!(max_drops > 0, "the budget router dropped nothing");
    let sflow0 = exporters
        .iter()
        .find(|(id, _)| id.ip == s.routers[0].agent)
        .expect("router 0's exporter");
    assert_eq!(u64::from(sflow0.1.agent_drops), max_drops);
    let dropped: u64 = player.model().generated().values().map(|g| g.dropped).sum();
    assert!(dropped >= max_drops);
}

#[test]
fn the_userspace_decoder_decodes_each_ipv4_datagram_to_its_truth() {
    userspace_decoder_matches_the_truth(false);
}

#[test]
fn the_userspace_decoder_decodes_each_ipv6_datagram_to_its_truth() {
    userspace_decoder_matches_the_truth(true);
}

#[test]
fn tshark_decodes_every_datagram_to_the_truth() {
    edge_sensor_tests::require_tool("tshark");
    for v6 in [false, true] {
        let s = scenario(v6, 12);
        let (_, datagrams) = play(&s);
        let dir =
            std::env::temp_dir().join(format!("es-player-tshark-{}-{v6}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // One capture per format: a sampled header inside an sFlow datagram
        // may look malformed to some dissector of its own ports, which the
        // flow oracle would count against the IPFIX datagrams.
        let write = |name: &str, format: Format| {
            let file = dir.join(name);
            pcap::write(
                std::io::BufWriter::new(std::fs::File::create(&file).unwrap()),
                &addressing(&s),
                datagrams.iter().filter(|d| d.format == format),
            )
            .unwrap();
            file
        };
        let sflow_file = write("sflow.pcap", Format::Sflow);
        let ipfix_file = write("ipfix.pcap", Format::Ipfix);

        // sFlow: tshark's totals are scaled by each sample's rate.
        let sflow: Vec<&Datagram> = datagrams
            .iter()
            .filter(|d| d.format == Format::Sflow)
            .collect();
        // DoIP (UDP 13400, a port random source ports hit) flags the zero
        // payloads of sampled packets malformed.
        let dis =
            edge_sensor_tests::tshark::sflow_dissection_without(&sflow_file, SFLOW_PORT, &["doip"]);
        assert!(dis.problems.is_empty(), "{:?}", dis.problems);
        let samples: u64 = sflow.iter().map(|d| d.truth.samples.len() as u64).sum();
        assert_eq!(dis.datagrams, sflow.len() as u64);
        assert_eq!((dis.flow_samples, dis.counted_samples), (samples, samples));
        assert_eq!((dis.truncated_samples, dis.short_datagrams), (0, 0));
        let want = truth::expected(sflow.iter().copied());
        let got: BTreeMap<IpAddr, _> = dis
            .totals
            .iter()
            .map(|(ip, t)| {
                (
                    *ip,
                    (
                        t.packets,
                        t.bytes,
                        t.tcp,
                        t.tcp_syn,
                        t.udp,
                        t.icmp,
                        t.other,
                        t.fragments,
                    ),
                )
            })
            .collect();
        let want: BTreeMap<IpAddr, _> = want
            .iter()
            .map(|(ip, e)| {
                (
                    *ip,
                    (
                        e.packets,
                        e.bytes,
                        e.tcp_packets,
                        e.tcp_syn_packets,
                        e.udp_packets,
                        e.icmp_packets,
                        e.other_packets,
                        0,
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "sFlow, IPv6 hosts: {v6}");

        // IPFIX: tshark's totals are unscaled (one packet per record).
        let ipfix: Vec<&Datagram> = datagrams
            .iter()
            .filter(|d| d.format == Format::Ipfix)
            .collect();
        let fd = edge_sensor_tests::tshark_flow::flow_dissection(&ipfix_file, &[IPFIX_PORT]);
        assert!(fd.problems.is_empty(), "{:?}", fd.problems);
        let records: u64 = ipfix.iter().map(|d| d.truth.records.len() as u64).sum();
        let template_messages = ipfix.iter().filter(|d| d.truth.templates).count() as u64;
        assert_eq!(fd.datagrams, ipfix.len() as u64);
        assert_eq!((fd.data_records, fd.counted_records), (records, records));
        assert_eq!(fd.options_records, template_messages);
        assert_eq!(
            (fd.undecoded_sets, fd.no_destination, fd.no_packet_count),
            (0, 0, 0)
        );
        let mut want: BTreeMap<IpAddr, Classes> = BTreeMap::new();
        for d in &ipfix {
            for r in truth::records(d) {
                let p = &r[0].packet;
                let k = r.len() as u64;
                let e = want.entry(p.dst).or_default();
                e.0 += k;
                e.1 += r.iter().map(|s| u64::from(s.packet.ip_len)).sum::<u64>();
                match p.proto {
                    TCP => {
                        e.2 += k;
                        let flags = r.iter().fold(0, |f, s| f | s.packet.tcp_flags);
                        e.3 += k * u64::from(flags & 0x12 == 0x02);
                    }
                    17 => e.4 += k,
                    ICMP | ICMPV6 => e.5 += k,
                    _ => e.6 += k,
                }
            }
        }
        let got: BTreeMap<IpAddr, _> = fd
            .totals
            .iter()
            .map(|(ip, t)| {
                (
                    *ip,
                    (t.packets, t.bytes, t.tcp, t.tcp_syn, t.udp, t.icmp, t.other),
                )
            })
            .collect();
        assert_eq!(got, want, "IPFIX, IPv6 hosts: {v6}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn datagrams_fill_up_to_the_mtu_and_never_past_it() {
    let s = scenario(false, 13);
    let (_, datagrams) = play(&s);
    for (r, spec) in s.routers.iter().enumerate() {
        let limit = spec.mtu - 28;
        let sizes: Vec<usize> = datagrams
            .iter()
            .filter(|d| d.router == r as u32)
            .map(|d| d.payload.len())
            .collect();
        let max = *sizes.iter().max().unwrap();
        assert!(max <= limit, "{}: {max} > {limit}", spec.name);
        // Full datagrams: within one sample or record of the limit.
        let slack = match spec.format {
            Format::Sflow => 8 + 44 + 24 + 16 + spec.header_bytes + 4,
            Format::Ipfix => 4 + 76,
        };
        let full = sizes.iter().filter(|&&n| n + slack > limit).count();
        assert!(
            full * 2 > sizes.len(),
            "{}: only {full} of {} datagrams full",
            spec.name,
            sizes.len()
        );
    }
}

#[test]
fn sequence_numbers_count_datagrams_for_sflow_and_records_for_ipfix() {
    let s = scenario(false, 14);
    let (_, datagrams) = play(&s);
    for (r, spec) in s.routers.iter().enumerate() {
        let mine: Vec<&Datagram> = datagrams.iter().filter(|d| d.router == r as u32).collect();
        let mut next: Option<u32> = None;
        for d in mine {
            let p = &d.payload;
            let (seq, advance) = match spec.format {
                Format::Sflow => {
                    let at = if spec.agent.is_ipv4() { 16 } else { 28 };
                    (u32::from_be_bytes(p[at..at + 4].try_into().unwrap()), 1)
                }
                Format::Ipfix => {
                    let records = if d.truth.templates {
                        1
                    } else {
                        d.truth.records.len() as u32
                    };
                    (u32::from_be_bytes(p[8..12].try_into().unwrap()), records)
                }
            };
            assert_eq!(seq, d.truth.sequence);
            if let Some(n) = next {
                assert_eq!(seq, n, "{}", spec.name);
            }
            next = Some(seq + advance);
        }
        assert!(next.unwrap() > 10, "{}: few datagrams", spec.name);
    }
}

#[test]
fn ipfix_templates_come_first_and_again_every_refresh_interval() {
    let s = scenario(false, 15);
    let (_, datagrams) = play(&s);
    for (r, spec) in s
        .routers
        .iter()
        .enumerate()
        .filter(|(_, r)| r.format == Format::Ipfix)
    {
        let mine: Vec<&Datagram> = datagrams.iter().filter(|d| d.router == r as u32).collect();
        assert!(
            mine[0].truth.templates,
            "{}: data before templates",
            spec.name
        );
        let times: Vec<u64> = mine
            .iter()
            .filter(|d| d.truth.templates)
            .map(|d| d.time_ns)
            .collect();
        let refresh = spec.template_refresh_s * 1_000_000_000;
        // 6 s of play: at 0, then every refresh (to within a tick).
        assert_eq!(
            times.len() as u64,
            6_000_000_000u64.div_ceil(refresh),
            "{}: {times:?}",
            spec.name
        );
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= refresh && w[1] - w[0] <= refresh + 10_000_000,
                "{times:?}"
            );
        }
    }
}

#[test]
fn sflow_counter_samples_follow_the_interval_and_count_the_pool() {
    let s = scenario(false, 16);
    let (player, datagrams) = play(&s);
    // Router 1 (one interface, every second): 6 counter samples.
    let counters: Vec<_> = datagrams
        .iter()
        .filter(|d| d.router == 1)
        .flat_map(|d| d.truth.counters.iter().copied())
        .collect();
    assert_eq!(counters.len(), 6, "{counters:?}");
    assert!(
        counters
            .windows(2)
            .all(|w| w[1].in_packets > w[0].in_packets)
    );
    assert!(
        counters
            .iter()
            .all(|c| c.ifindex == 16_777_300 && c.pool == c.in_packets)
    );
    let last = player.model().counters(1)[0];
    assert!(counters.last().unwrap().in_packets <= last.in_packets);
}

#[test]
fn one_seed_gives_the_same_datagrams_and_another_seed_others() {
    let (_, a) = play(&scenario(false, 21));
    let (_, b) = play(&scenario(false, 21));
    let (_, c) = play(&scenario(false, 22));
    assert_eq!(a, b);
    assert_ne!(
        a.iter().map(|d| &d.payload).collect::<Vec<_>>(),
        c.iter().map(|d| &d.payload).collect::<Vec<_>>()
    );
}

#[test]
fn the_truth_file_has_a_line_per_datagram_and_the_attack_starts() {
    let s = scenario(false, 17);
    let mut player = Player::new(&s).unwrap();
    let datagrams = player.run_all();
    let mut w = truth::TruthWriter::new(Vec::new(), player.model()).unwrap();
    for d in &datagrams {
        w.datagram(player.model(), d).unwrap();
    }
    let text = String::from_utf8(w.finish(player.model()).unwrap()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), datagrams.len() + 2);
    assert_eq!(lines[0]["type"], "scenario");
    let last = &lines[lines.len() - 1];
    assert_eq!(last["type"], "summary");
    let udp = last["attacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "udp")
        .unwrap();
    assert_eq!(udp["start_ns"], 1_000_000_000u64);
    assert_eq!(udp["first_packet_ns"], 1_000_000_000u64);
    let samples: usize = lines[1..lines.len() - 1]
        .iter()
        .map(|l| l["samples"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        samples,
        datagrams
            .iter()
            .map(|d| d.truth.samples.len())
            .sum::<usize>()
    );
    let syn_samples = lines[1..lines.len() - 1]
        .iter()
        .flat_map(|l| l["samples"].as_array().unwrap().clone())
        .filter(|s| s["origin"] == "syn")
        .inspect(|s| {
            assert_eq!(s["kind"], "attack");
            assert_eq!(s["tcp_flags"], 2);
            let t = s["time_ns"].as_u64().unwrap();
            assert!((2_000_000_000..4_000_000_000).contains(&t), "{s}");
        })
        .count();
    assert!(syn_samples > 100);
}

#[test]
fn sample_pools_grow_per_data_source_by_about_the_rate_per_sample() {
    let s = scenario(false, 18);
    let (player, datagrams) = play(&s);
    for (r, spec) in s.routers.iter().enumerate() {
        for iface in 0..spec.interfaces.len() as u32 {
            let mine: Vec<&edge_sensor_player::Sample> = datagrams
                .iter()
                .filter(|d| d.router == r as u32)
                .flat_map(|d| d.truth.samples.iter())
                .filter(|x| x.iface == iface)
                .collect();
            // In the order sFlow datagrams carry them, the pool never falls
            // (IPFIX carries no pool; its flow cache reorders samples).
            assert!(
                spec.format == Format::Ipfix || mine.windows(2).all(|w| w[1].pool >= w[0].pool),
                "{} if {iface}",
                spec.name
            );
            let last = player.model().counters(r)[iface as usize].pool;
            assert!(mine.iter().all(|s| s.pool <= last));
            // Pool per sample taken: about N (drops count as taken).
            let taken = mine.len() as f64 + mine.last().unwrap().drops as f64;
            let per = last as f64 / taken;
            let n = f64::from(spec.sampling_rate);
            assert!(
                (per / n - 1.0).abs() < 0.1,
                "{} if {iface}: {per} per sample at 1:{n}",
                spec.name
            );
        }
    }
}
