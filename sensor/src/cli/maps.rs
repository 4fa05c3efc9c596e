//! `edge-sensor maps` and `edge-sensor maps dump NAME`: the pinned maps as
//! the kernel holds them, read directly (the daemon may be down).

use anyhow::Result;
use bytemuck::Pod;
use edge_sensor_common::{
    AGENT_STATE, AgentState, Class, DST_STATS, DstKey, DstStats, EXPORTER_STATS, ExporterKey,
    ExporterStats, GLOBAL_STATS, GlobalStats, ParseError, RateSource, USER_DST_STATS,
    USER_EXPORTER_STATS,
};
use serde_json::{Map, Value, json};

use super::{MapsAction, MapsArgs, style::Style};
use crate::{
    addr,
    counters::ExporterId,
    xdp::inspect::{self, Layout, MapStatus, RawEntry, RawMap},
    xdp::pins::PinError,
};

pub fn maps(args: MapsArgs) -> Result<()> {
    match &args.action {
        None => list(&args),
        Some(MapsAction::Dump(dump_args)) => dump(&args, dump_args),
    }
}

fn list(args: &MapsArgs) -> Result<()> {
    let maps = inspect::list(&args.pin_path)?;
    if args.json {
        let rows: Vec<Value> = maps.iter().map(map_json).collect();
        println!(
            "{}",
            json!({
                "pin_path": args.pin_path,
                "possible_cpus": inspect::possible_cpus(),
                "maps": rows,
            })
        );
    } else {
        print!("{}", table(&maps, Style::stdout()));
    }
    // Shown above, and an error too: readers of these maps would refuse them.
    for m in &maps {
        if let Layout::Mismatch { expected, found } = &m.layout {
            return Err(PinError::LayoutMismatch {
                path: m.path.clone(),
                found: found.clone(),
                expected: expected.clone(),
            }
            .into());
        }
    }
    Ok(())
}

fn map_json(m: &MapStatus) -> Value {
    let (layout, expected) = match &m.layout {
        Layout::Ok => ("ok", None),
        Layout::Mismatch { expected, .. } => ("mismatch", Some(expected.clone())),
        Layout::Unknown => ("unknown", None),
    };
    json!({
        "name": m.name,
        "id": m.id,
        "type": m.type_name(),
        "key_size": m.key_size,
        "value_size": m.value_size,
        "max_entries": m.max_entries,
        "entries": m.entries,
        "memory_bytes": m.memlock,
        "layout": layout,
        "expected_layout": expected,
    })
}

fn table(maps: &[MapStatus], style: Style) -> String {
    let mut out = style.header(&format!(
        "{:<22} {:<16} {:>5} {:>6} {:>11} {:>11} {:>6} {:>10}  {}",
        "NAME", "TYPE", "KEY", "VALUE", "MAX", "ENTRIES", "FILL", "MEMORY", "LAYOUT"
    ));
    out.push('\n');
    for m in maps {
        let fill = match m.entries {
            Some(n) if m.max_entries > 0 => {
                format!("{:.1}%", n as f64 * 100.0 / f64::from(m.max_entries))
            }
            _ => "-".into(),
        };
        let layout = match &m.layout {
            Layout::Ok => "ok".to_owned(),
            Layout::Unknown => "not the sensor's".to_owned(),
            Layout::Mismatch { expected, .. } => {
                style.alert(&format!("MISMATCH (expected {expected})"))
            }
        };
        out.push_str(&format!(
            "{:<22} {:<16} {:>5} {:>6} {:>11} {:>11} {:>6} {:>10}  {}\n",
            m.name,
            m.type_name(),
            m.key_size,
            m.value_size,
            m.max_entries,
            m.entries.map_or_else(|| "-".into(), |n| n.to_string()),
            fill,
            m.memlock.map_or_else(|| "-".into(), human_bytes),
            layout
        ));
    }
    out.push_str("MEMORY is what the kernel charges for each map (memlock in its fdinfo).\n");
    out
}

/// Bytes in binary units: 512 B, 1.5 KiB, 120.0 MiB.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn dump(args: &MapsArgs, dump_args: &super::DumpArgs) -> Result<()> {
    let path = args.pin_path.join(&dump_args.name);
    let map = match RawMap::open(&path) {
        Err(PinError::NotFound { .. }) => {
            // Name what is there: a typo is likelier than an unloaded sensor
            // when other maps are pinned.
            let names: Vec<String> = inspect::list(&args.pin_path)?
                .into_iter()
                .map(|m| m.name)
                .collect();
            anyhow::bail!(
                "no map {} pinned under {}; pinned there: {}",
                dump_args.name,
                args.pin_path.display(),
                names.join(", ")
            );
        }
        other => other?,
    };
    let known = if dump_args.raw {
        None
    } else {
        let known = Known::of(&map.status.name);
        if known.is_some() {
            map.check_layout()?;
        }
        known
    };
    let (mut entries, truncated) = map.entries(dump_args.limit)?;
    // The kernel's hash order says nothing; keys sorted read better and diff.
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    // Unknown values cannot be summed: one per CPU, always.
    let per_cpu = map.per_cpu() && (dump_args.per_cpu || known.is_none());
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| entry_json(known, e, per_cpu))
        .collect();
    if args.json {
        println!(
            "{}",
            json!({
                "map": map.status.name,
                "type": map.status.type_name(),
                "decoded": known.is_some(),
                "per_cpu": per_cpu,
                "truncated": truncated,
                "entries": rows,
            })
        );
        return Ok(());
    }
    let mut out = String::new();
    for row in &rows {
        out.push_str(&format!("key {}\n", flat(&row["key"])));
        if per_cpu {
            for (cpu, v) in row["values"].as_array().into_iter().flatten().enumerate() {
                out.push_str(&format!("  cpu{cpu} {}\n", flat(v)));
            }
        } else {
            out.push_str(&format!("  {}\n", flat(&row["value"])));
        }
    }
    let summed = if map.per_cpu() && !per_cpu && known.is_some() {
        format!(
            "; values summed over {} CPUs (--per-cpu to split)",
            inspect::possible_cpus()
        )
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{} entries{}{summed}\n",
        rows.len(),
        if truncated {
            format!(" shown, more in the map (--limit {})", dump_args.limit)
        } else {
            String::new()
        }
    ));
    print!("{out}");
    Ok(())
}

/// `a.b=1 a.c=2` from a JSON object; a string as is.
fn flat(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::String(s) if prefix.is_empty() => out.push(s.clone()),
            Value::String(s) => out.push(format!("{prefix}={s}")),
            other => out.push(format!("{prefix}={other}")),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join(" ")
}

/// One entry as JSON: named fields for known maps, hex otherwise; `split`
/// gives one value per CPU (`values`) instead of their sum (`value`).
fn entry_json(known: Option<Known>, e: &RawEntry, split: bool) -> Value {
    let hex = |b: &[u8]| Value::String(b.iter().map(|x| format!("{x:02x}")).collect());
    let Some(known) = known else {
        return if split {
            json!({ "key": hex(&e.key), "values": e.values.iter().map(|v| hex(v)).collect::<Vec<_>>() })
        } else {
            json!({ "key": hex(&e.key), "value": hex(&e.values[0]) })
        };
    };
    let key = known.key(&e.key);
    if split {
        let values: Vec<Value> = e.values.iter().map(|v| known.value(&[v])).collect();
        json!({ "key": key, "values": values })
    } else {
        let values: Vec<&[u8]> = e.values.iter().map(Vec::as_slice).collect();
        json!({ "key": key, "value": known.value(&values) })
    }
}

/// The sensor's maps whose keys and values this binary can name.
#[derive(Debug, Clone, Copy)]
enum Known {
    Destinations,
    Exporters,
    Agents,
    Global,
}

impl Known {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            DST_STATS | USER_DST_STATS => Self::Destinations,
            EXPORTER_STATS | USER_EXPORTER_STATS => Self::Exporters,
            AGENT_STATE => Self::Agents,
            GLOBAL_STATS => Self::Global,
            _ => return None,
        })
    }

    fn key(self, bytes: &[u8]) -> Value {
        match self {
            Self::Destinations => {
                let k: DstKey = read(bytes);
                json!({ "ip": addr::from_key(k.addr) })
            }
            Self::Exporters | Self::Agents => {
                let id = ExporterId::from_key(&read::<ExporterKey>(bytes));
                json!({ "ip": id.ip, "sub_agent": id.sub_agent, "port": id.port, "protocol": id.protocol() })
            }
            Self::Global => json!({ "index": read::<u32>(bytes) }),
        }
    }

    /// The value, CPUs summed when there are several.
    fn value(self, cpus: &[&[u8]]) -> Value {
        match self {
            Self::Destinations => {
                let s: DstStats = sum(cpus, DstStats::accumulate);
                let by_class = |v: &[u64; Class::COUNT]| {
                    Value::Object(
                        Class::ALL
                            .iter()
                            .map(|c| (c.name().to_owned(), json!(v[*c as usize])))
                            .collect::<Map<_, _>>(),
                    )
                };
                json!({ "packets": by_class(&s.packets), "bytes": by_class(&s.bytes) })
            }
            Self::Exporters => {
                let s: ExporterStats = sum(cpus, ExporterStats::accumulate);
                let errors: Map<_, _> = ParseError::ALL
                    .iter()
                    .map(|e| (e.name().to_owned(), json!(s.errors[*e as usize])))
                    .collect();
                json!({
                    "datagrams": s.datagrams, "bytes": s.bytes, "samples": s.samples,
                    "records": s.records, "sequence_gaps": s.sequence_gaps,
                    "sequence_resets": s.sequence_resets, "errors": errors,
                    "last_seen_ns": s.last_seen_ns, "sampling_rate": s.sampling_rate,
                    "rate_source": RateSource::from_u8(s.rate_source).name(),
                    "format": s.format,
                })
            }
            Self::Agents => {
                // Shared by the CPUs: one value.
                let s: AgentState = read(cpus[0]);
                json!({
                    "last_sequence": s.last_sequence, "agent_drops": s.agent_drops,
                    "uptime_ms": s.uptime_ms, "flags": s.flags,
                })
            }
            Self::Global => {
                let s: GlobalStats = sum(cpus, GlobalStats::accumulate);
                json!({
                    "telemetry_datagrams": s.telemetry_datagrams,
                    "rejected_datagrams": s.rejected_datagrams,
                    "consumed_datagrams": s.consumed_datagrams,
                    "passed_datagrams": s.passed_datagrams,
                })
            }
        }
    }
}

/// A `T` from the front of `bytes` (the layout was checked, so it is long
/// enough; zero-filled otherwise rather than a panic).
fn read<T: Pod>(bytes: &[u8]) -> T {
    let mut out = T::zeroed();
    let dst = bytemuck::bytes_of_mut(&mut out);
    let n = dst.len().min(bytes.len());
    dst[..n].copy_from_slice(&bytes[..n]);
    out
}

fn sum<T: Pod + Default>(cpus: &[&[u8]], add: fn(&mut T, &T)) -> T {
    let mut total = T::default();
    for v in cpus {
        add(&mut total, &read(v));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_values_are_summed_into_named_fields() {
        let mut a = DstStats::default();
        a.packets[Class::All as usize] = 3;
        a.packets[Class::Udp as usize] = 3;
        a.bytes[Class::All as usize] = 300;
        let mut b = a;
        b.packets[Class::TcpSyn as usize] = 1;
        let v = Known::Destinations.value(&[bytemuck::bytes_of(&a), bytemuck::bytes_of(&b)]);
        assert_eq!(v["packets"]["all"], 6);
        assert_eq!(v["packets"]["udp"], 6);
        assert_eq!(v["packets"]["tcp_syn"], 1);
        assert_eq!(v["bytes"]["all"], 600);
        let key = DstKey {
            addr: addr::to_key("203.0.113.9".parse().unwrap()),
        };
        assert_eq!(
            Known::Destinations.key(bytemuck::bytes_of(&key))["ip"],
            "203.0.113.9"
        );
    }

    #[test]
    fn unknown_maps_are_hex_and_flattened_for_people() {
        let e = RawEntry {
            key: vec![0x0a, 0xff],
            values: vec![vec![1, 2]],
        };
        let v = entry_json(None, &e, false);
        assert_eq!(v["key"], "0aff");
        assert_eq!(v["value"], "0102");
        assert_eq!(flat(&json!({"a": {"b": 1, "c": "x"}})), "a.b=1 a.c=x");
        assert_eq!(flat(&json!("0aff")), "0aff");
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(120 << 20), "120.0 MiB");
    }
}
