//! From tshark's packets to totals: each sFlow datagram sent to the port,
//! its flow samples (formats 1 and 3), their sampling rate and the packet
//! they describe (see the semantics in [`super`]).

use std::collections::BTreeSet;

use super::{
    Dissection, MAX_RATE,
    json::{Json, raw_span},
    record::{raw_header, sampled_ip},
};

/// Adds one packet of tshark's output to `d`; records in `claimed` a protocol
/// tshark gave a datagram to `port` to instead of sFlow.
pub(super) fn take_packet(
    packet: &Json,
    port: u16,
    d: &mut Dissection,
    claimed: &mut BTreeSet<String>,
) {
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
        .filter(|(k, _)| !k.ends_with("_raw"))
        .map(|(k, v)| (k.as_ref(), v))
        .collect();
    let sflow_at = top.iter().position(|(k, _)| *k == "sflow");
    let Some(udp_at) = top[..sflow_at.unwrap_or(top.len())]
        .iter()
        .rposition(|(k, _)| *k == "udp")
    else {
        return;
    };
    if top[udp_at].1.num("udp.dstport") != Some(u64::from(port)) {
        return;
    }
    let Some(sflow_at) = sflow_at else {
        // Not sFlow: garbage ("data", maybe malformed) or another protocol's.
        if let Some((next, _)) = top.get(udp_at + 1)
            && *next != "data"
            && !next.starts_with("_ws")
        {
            claimed.insert((*next).to_owned());
        }
        return;
    };
    let sflow = top[sflow_at].1;
    if sflow.str("sflow_245.version") != Some("5") {
        return;
    }
    d.datagrams += 1;
    let malformed = top.iter().any(|(k, _)| *k == "_ws.malformed");
    // A datagram whose header tshark cannot read (cut short, unknown agent
    // address type) gives nothing, as it would to any decoder.
    let (Some(declared), Some((dg_start, dg_len))) =
        (sflow.num("sflow_245.numsamples"), layers.span("sflow"))
    else {
        return;
    };
    let dg_end = dg_start + dg_len;
    let frame_hex = match layers.get("frame_raw") {
        Some(Json::Arr(raw)) => match raw.first() {
            Some(Json::Str(hex)) => hex.as_ref(),
            _ => "",
        },
        _ => "",
    };
    let problems_before = d.problems.len();
    // Whether the datagram ends inside something tshark was reading.
    let mut cut_short = false;
    let samples: Vec<&Json> = children(sflow).collect();
    // Where the next sample must start if tshark walked the samples right.
    let mut next = sflow.span_end("sflow_245.numsamples");
    for (i, sample) in samples.iter().enumerate() {
        let where_ = format!("frame {frame}, sample {}", i + 1);
        if next.is_none() || sample.span("sflow.enterprise").map(|(p, _)| p) != next {
            d.problems.push(format!(
                "{where_}: tshark lost track of the samples (misaligned)"
            ));
            next = None;
            break;
        }
        let Some(extent) = sample.extent("sflow_5.sample_length") else {
            // No length: cut before it, or a sample tshark cannot size.
            if sample
                .span_end("sflow_245.sampletype")
                .is_some_and(|e| e + 4 > dg_end)
            {
                cut_short = true;
                if is_flow_sample(sample) {
                    d.flow_samples += 1;
                    d.truncated_samples += 1;
                }
            } else {
                d.problems.push(format!(
                    "{where_}: tshark cannot read the sample's length (non-zero enterprise?) \
                     and stops"
                ));
            }
            next = None;
            break;
        };
        next = Some(extent.1);
        cut_short |= extent.1 > dg_end;
        take_sample(sample, extent, dg_end, frame_hex, &where_, d);
    }
    let shown = samples.len() as u64;
    if shown < declared
        && let Some(n) = next
    {
        if n < dg_end {
            d.problems.push(format!(
                "frame {frame}: tshark shows {shown} of {declared} samples with {} bytes left",
                dg_end - n
            ));
        } else if n == dg_end {
            d.short_datagrams += 1;
            cut_short = true;
        }
    }
    if malformed && !cut_short && d.problems.len() == problems_before {
        d.problems.push(format!(
            "frame {frame}: tshark flags the datagram malformed, for no reason seen here"
        ));
    }
}

pub(super) fn is_flow_sample(sample: &Json) -> bool {
    matches!(sample.num("sflow_245.sampletype"), Some(1 | 3))
}

/// One sample tshark walked to correctly, spanning `extent` in the frame.
pub(super) fn take_sample(
    sample: &Json,
    extent: (u64, u64),
    dg_end: u64,
    frame_hex: &str,
    where_: &str,
    d: &mut Dissection,
) {
    if !is_flow_sample(sample) {
        return;
    }
    d.flow_samples += 1;
    let rate = match sample.num("sflow.flow_sample.sampling_rate") {
        Some(r) if (1..=MAX_RATE).contains(&r) => r,
        Some(_) => return,
        None if extent.1 > dg_end => {
            d.truncated_samples += 1;
            return;
        }
        None => {
            d.problems.push(format!("{where_}: no sampling rate shown"));
            return;
        }
    };
    if extent.1 > dg_end {
        d.truncated_samples += 1;
        return;
    }
    if !fields_within(sample, extent.1) {
        d.problems.push(format!(
            "{where_}: tshark shows sample fields past the sample's declared length"
        ));
        return;
    }
    let records: Vec<&Json> = children(sample).collect();
    let declared = sample.num("sflow.flow_sample.flow_record");
    let mut next = sample.span_end("sflow.flow_sample.flow_record");
    for record in &records {
        let ext = record
            .extent("sflow_5.flow_data_length")
            .or_else(|| record.extent("sflow.enterprise.length"));
        match (next, ext) {
            (Some(n), Some((start, end)))
                if n == start && end <= extent.1 && fields_within(record, end) =>
            {
                next = Some(end)
            }
            _ => {
                d.problems.push(format!(
                    "{where_}: tshark lost track of the flow records (unknown length or \
                     misaligned)"
                ));
                return;
            }
        }
    }
    if declared != Some(records.len() as u64) {
        d.problems.push(format!(
            "{where_}: tshark shows {} of {declared:?} flow records",
            records.len()
        ));
        return;
    }
    let description = records
        .iter()
        .filter(|r| r.num("sflow_245.flow_record_format") == Some(1))
        .find_map(|r| raw_header(r))
        .or_else(|| {
            records
                .iter()
                .find(|r| matches!(r.num("sflow_245.flow_record_format"), Some(3 | 4)))
                .and_then(|r| sampled_ip(r, frame_hex))
        });
    let Some(p) = description else {
        return;
    };
    d.counted_samples += 1;
    let t = d.totals.entry(p.dst).or_default();
    t.packets = t.packets.saturating_add(rate);
    t.bytes = t.bytes.saturating_add(p.length.saturating_mul(rate));
    let class = match p.protocol {
        6 => {
            if p.syn {
                t.tcp_syn = t.tcp_syn.saturating_add(rate);
            }
            &mut t.tcp
        }
        17 => &mut t.udp,
        1 | 58 => &mut t.icmp,
        _ => &mut t.other,
    };
    *class = class.saturating_add(rate);
    if p.fragment {
        t.fragments = t.fragments.saturating_add(rate);
    }
}

/// The object children that are samples (of a datagram) or records (of a
/// sample): tshark gives each an `sflow.enterprise` field.
pub(super) fn children<'j, 'a>(parent: &'j Json<'a>) -> impl Iterator<Item = &'j Json<'a>> {
    parent
        .entries()
        .iter()
        .filter(|(k, v)| !k.ends_with("_raw") && v.get("sflow.enterprise").is_some())
        .map(|(_, v)| v)
}

/// Whether every field tshark shows directly in `object` ends by `end`.
pub(super) fn fields_within(object: &Json, end: u64) -> bool {
    object
        .entries()
        .iter()
        .filter(|(k, _)| k.ends_with("_raw"))
        .all(|(_, raw)| raw_span(raw).is_none_or(|(p, l)| p + l <= end))
}
