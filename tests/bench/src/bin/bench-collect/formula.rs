//! The destination map's size for core counts this machine lacks
//! (issue 16 item 1), from the memory phase's largest XDP row.

use edge_sensor_bench::mapmem;
use serde_json::{Value, json};

/// The destination map's size by the kernel's own per-entry accounting
/// (`mapmem`), for the largest XDP memory row: measured here, and for 16,
/// 32 and 64 possible CPUs with the shared value (now) and the per-CPU one
/// (before); every other map scaled by what it costs per CPU; plus the
/// daemon's RSS as measured here (it does not hold per-CPU state).
pub fn map_formula(memory: &[Value]) -> Value {
    let Some(row) = memory
        .iter()
        .filter(|m| m["key"] == "xdp")
        .max_by_key(|m| m["destinations"].as_u64())
    else {
        return Value::Null;
    };
    let key = size_of::<edge_sensor_common::DstKey>() as u32;
    let value = size_of::<edge_sensor_common::DstStats>() as u32;
    let (shared, percpu) = match (
        mapmem::HtabCost::measure(mapmem::BPF_MAP_TYPE_LRU_HASH, key, value),
        mapmem::HtabCost::measure(mapmem::BPF_MAP_TYPE_LRU_PERCPU_HASH, key, value),
    ) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => {
            return json!({"error": format!("creating a map to read its cost: {e}")});
        }
    };
    let entries = row["dst_map_max_entries"].as_u64().unwrap_or(0);
    let here = mapmem::possible_cpus();
    let maps: Vec<&Value> = row["maps"].as_array().into_iter().flatten().collect();
    let num = |m: &Value, k: &str| m[k].as_u64().unwrap_or(0);
    let is_dst = |m: &Value| m["name"] == edge_sensor_common::DST_STATS;
    let rss = row["rss_kib_filled"].as_u64().unwrap_or(0) * 1024;
    let at = |cpus: u64| {
        // Every map but DST_STATS: measured here, plus its per-CPU slope.
        let others: u64 = maps
            .iter()
            .filter(|m| !is_dst(m))
            .map(|m| {
                let slope = mapmem::per_cpu_slope(
                    m["type"].as_str().unwrap_or(""),
                    num(m, "key"),
                    num(m, "value"),
                    num(m, "max_entries"),
                    shared.header,
                );
                (num(m, "memlock") + slope * cpus).saturating_sub(slope * here)
            })
            .sum();
        let (new, old) = (shared.bytes(entries, cpus), percpu.bytes(entries, cpus));
        json!({
            "cpus": cpus, "dst_stats_bytes": new, "dst_stats_percpu_bytes": old,
            "all_maps_bytes": others + new, "all_maps_percpu_bytes": others + old,
            "with_rss_bytes": others + new + rss, "with_rss_percpu_bytes": others + old + rss,
        })
    };
    json!({
        "destinations": row["destinations"], "entries": entries,
        "possible_cpus_here": here,
        "dst_stats_measured_bytes": row["dst_map_bytes"],
        "all_maps_measured_bytes": row["all_maps_bytes"],
        "daemon_rss_bytes": rss,
        "shared": shared.json(), "percpu": percpu.json(),
        "at": [at(here), at(16), at(32), at(64)],
    })
}
