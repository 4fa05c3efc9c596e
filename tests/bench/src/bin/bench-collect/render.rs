//! report.md and report.svg from the report's JSON (also `--render DIR`).

use serde_json::Value;

use edge_sensor_bench::Kind;

use crate::{COLLECTOR_CPU, MAX_LOSS, SENDER_CPU, STEP};

fn fmt_rate(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |r| format!("{:.0}", r))
}

fn fmt_f(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn cpu_cell(search: &Value) -> String {
    format!(
        "{}, {} ({:.0} %)",
        fmt_f(&search["cpu_s_per_million_samples"], 2),
        fmt_f(&search["collector_cpu_s_per_million_samples"], 2),
        search["best"]["collector_core_busy"]
            .as_f64()
            .unwrap_or(0.0)
            * 100.0
    )
}

pub fn markdown(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    s += "## Collectors side by side: XDP vs userspace vs FastNetMon\n\n";
    s += &format!(
        "Machine: {} x {}, kernel {}, FastNetMon {} (Debian). One run, {:.0} s. \
         Generator on CPU {}, collector (candidate process + the veth's threaded NAPI, \
         where XDP runs) on CPU {}. Steps of {} s; sustained = loss < {} %.\n\n",
        m["cpus"],
        m["cpu"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        m["fastnetmon"].as_str().unwrap_or(""),
        r["duration_s"].as_f64().unwrap_or(0.0),
        SENDER_CPU,
        COLLECTOR_CPU,
        STEP.as_secs(),
        MAX_LOSS * 100.0
    );
    let setup = &r["setup"];
    s += &format!(
        "Workloads: sFlow `{}` ({:.2} flow samples per datagram, sampled IPv4 destinations \
         spread over {} addresses), IPFIX `{}` ({:.2} flow records per datagram, templates \
         included).\n\n",
        setup["sflow_capture"].as_str().unwrap_or(""),
        setup["sflow_samples_per_datagram"].as_f64().unwrap_or(0.0),
        setup["throughput_destinations"],
        setup["ipfix_capture"].as_str().unwrap_or(""),
        setup["ipfix_records_per_datagram"].as_f64().unwrap_or(0.0),
    );
    s += "| candidate | sFlow datagrams/s sustained | sFlow CPU s / M samples: candidate, whole collector core (core busy) | IPFIX datagrams/s sustained | IPFIX CPU s / M records: candidate, whole collector core (core busy) | counters vs truth |\n";
    s += "|---|---:|---:|---:|---:|---|\n";
    for c in r["candidates"].as_array().into_iter().flatten() {
        let cell = |w: &str| {
            let mut t = fmt_rate(&c[w]["max_sustained_rate"]);
            if c[w]["limited_by_generator"].as_bool().unwrap_or(false) {
                t = format!(">= {t} (generator limit)");
            }
            t
        };
        let a = &c["accuracy"];
        let acc = if c["key"] == "fastnetmon" {
            format!(
                "samples+records {} of {} ({}); per-host totals not exposed",
                a["samples"],
                a["truth_samples"],
                if a["samples_exact"].as_bool().unwrap_or(false) {
                    "exact"
                } else {
                    "differ"
                }
            )
        } else {
            let p = &a["per_destination"];
            format!(
                "{} of {} destinations equal{}",
                p["equal"],
                p["destinations"],
                if p["exact"].as_bool().unwrap_or(false) {
                    " (exact)"
                } else {
                    " (NOT exact)"
                }
            )
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            c["name"].as_str().unwrap_or(""),
            cell("sflow"),
            cpu_cell(&c["sflow"]),
            cell("ipfix"),
            cpu_cell(&c["ipfix"]),
            acc
        );
    }
    let find = |k: &str| {
        r["candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["key"] == k)
            .cloned()
            .unwrap_or_default()
    };
    let (xdp, user, tuned, fnm) = (
        find("xdp"),
        find("user"),
        find("user-4m"),
        find("fastnetmon"),
    );
    s += "\nRatios of sustained rates (XDP over the other; `>=` where the generator, not XDP, was the limit):\n\n";
    s += "| | sFlow | IPFIX |\n|---|---:|---:|\n";
    for (label, other) in [
        ("XDP / FastNetMon", &fnm),
        ("XDP / userspace (default buffer)", &user),
        ("XDP / userspace (4 MiB buffer)", &tuned),
    ] {
        let ratio = |w: &str| {
            let (a, b) = (
                xdp[w]["max_sustained_rate"].as_f64(),
                other[w]["max_sustained_rate"].as_f64(),
            );
            match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!(
                    "{}{:.1}x",
                    if xdp[w]["limited_by_generator"].as_bool().unwrap_or(false) {
                        ">= "
                    } else {
                        ""
                    },
                    a / b
                ),
                _ => "-".into(),
            }
        };
        s += &format!("| {label} | {} | {} |\n", ratio("sflow"), ratio("ipfix"));
    }
    s += &format!(
        "\nThe rate search's generator (one core, AF_PACKET sendmmsg of whole frames into the veth, paced) reached at \
         most {} sFlow and {} IPFIX datagrams/s in this run. The overload step's generator: the kernel transmits the \
         capture's frames (BPF_PROG_TEST_RUN with live frames on an XDP_TX program, {} copies of a frame per call). \
         During the XDP steps {} sFlow datagrams were passed to the \
         stack (and {} delivered to a socket); the IPFIX ones passed on purpose are the \
         template datagrams the daemon learns from ({}).\n",
        fmt_rate(&xdp["sflow"]["generator_max_rate"]),
        fmt_rate(&xdp["ipfix"]["generator_max_rate"]),
        r["setup"]["live_copies"],
        xdp["sflow"]["xdp_passed_datagrams_total"],
        xdp["sflow"]["udp_delivered_total"],
        xdp["ipfix"]["xdp_passed_datagrams_total"],
    );
    s += "\nCapacity per collector core. Paced (AF_PACKET): the highest rate with < 0.1 % loss, the \
          collector core's busy share there, the first rate that lost. Overload (live frames: the kernel \
          transmits more than the collector takes, the veth's ring drops the rest): what the collector \
          counted per second, its core's busy share, and per second of that core's CPU (the capacity of a \
          core it had to itself); the generator's own rate per second and per second of its CPU:\n\n";
    s += "| candidate | protocol | paced < 0.1 % loss, datagrams/s (core busy) | first losing rate (loss, core busy) | overload: datagrams/s counted (core busy) | overload: per collector CPU-s, datagrams; samples or records | generator sent/s, per its CPU-s | generator per CPU-s / capacity per CPU-s |\n";
    s += "|---|---|---:|---|---:|---:|---:|---:|\n";
    for c in r["candidates"].as_array().into_iter().flatten() {
        for (w, label) in [("sflow", "sFlow"), ("ipfix", "IPFIX")] {
            s += &capacity_row(c["name"].as_str().unwrap_or(""), label, &c[w]);
        }
    }
    let two = &r["two_queues"];
    if two.is_object() {
        s += &format!(
            "\n2 RX queues (XDP on both CPUs, {} NAPI threads; a generator thread on each CPU, so \
             each core is shared by a generator and a receive path):\n\n",
            two["napi_threads"]
        );
        s += "| protocol | paced < 0.1 % loss, datagrams/s: 1 queue | 2 queues | scaling | overload, samples or records counted/s: 1 queue | 2 queues | scaling | receive-path CPU s per M counted at overload: 1 queue | 2 queues |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for (w, label) in [("sflow", "sFlow"), ("ipfix", "IPFIX")] {
            let (one, two) = (&xdp[w], &two[w]);
            let (a, b) = (
                one["max_sustained_rate"].as_f64().unwrap_or(0.0),
                two["max_sustained_rate"].as_f64().unwrap_or(0.0),
            );
            let o = |x: &Value, k: &str| x["generator_flat_out"][k].as_f64().unwrap_or(0.0);
            let per_s = |x: &Value| o(x, "samples") * o(x, "sent_rate") / o(x, "sent").max(1.0);
            let (c, d) = (per_s(one), per_s(two));
            // Receive-path CPU per million samples counted (not sent).
            let per_m = |x: &Value| o(x, "collector_cpu_s") / (o(x, "samples").max(1.0) / 1e6);
            s += &format!(
                "| {label} | {a:.0} | {b:.0} | {:.2}x | {c:.0} | {d:.0} | {:.2}x | {:.3} | {:.3} |\n",
                if a > 0.0 { b / a } else { 0.0 },
                if c > 0.0 { d / c } else { 0.0 },
                per_m(one),
                per_m(two),
            );
        }
    }
    for c in r["candidates"].as_array().into_iter().flatten() {
        for (w, label) in [("sflow", "sFlow"), ("ipfix", "IPFIX")] {
            let search = &c[w];
            if !search["limited_by_generator"].as_bool().unwrap_or(false) {
                continue;
            }
            let best = &search["best"];
            let (rate, busy) = (
                best["sent_rate"].as_f64().unwrap_or(0.0),
                best["collector_core_busy"].as_f64().unwrap_or(0.0),
            );
            if busy > 0.0 {
                s += &format!(
                    "{} {label}: at {:.0} datagrams/s the collector core was {:.0} % busy; \
                     linear extrapolation (not a measurement) puts one core's capacity near \
                     {:.0} datagrams/s.\n",
                    c["name"].as_str().unwrap_or(""),
                    rate,
                    busy * 100.0,
                    rate / busy.max(1e-9)
                );
            }
        }
    }
    s += &format!(
        "\nLoad average of the (shared) machine: {} before, {} after.\n",
        r["load_average"]["before"].as_str().unwrap_or(""),
        r["load_average"]["after"].as_str().unwrap_or("")
    );
    s += "\nCPU, at the highest sustained step, per million samples (sFlow) or flow records \
          (IPFIX) sent: *candidate* = XDP: the program's run time (BPF_ENABLE_STATS) + the daemon \
          process; userspace and FastNetMon: their process (user + system). *Whole collector \
          core* = the candidate's process + the veth's NAPI thread, where the receive path \
          runs (XDP itself, or the IP/UDP stack up to the socket for the others). At low \
          load every figure carries fixed costs (timers, wake-ups), so compare at similar \
          rates (every step is in the JSON). A socket candidate that loses datagrams while its \
          core is mostly idle is limited by its socket buffer and scheduling delays, not by \
          CPU: FastNetMon 1.2.4 has no setting for its buffer (it logs the system default, \
          212992 bytes), which is why the userspace path is shown with both.\n\n";
    s += "### Memory by tracked destinations\n\n";
    s += "| candidate | destinations | tracked | memory |\n|---|---:|---:|---|\n";
    for m in r["memory"].as_array().into_iter().flatten() {
        let mem = match m["key"].as_str().unwrap_or("") {
            "xdp" => format!(
                "DST_STATS map {:.1} MiB (all maps {:.1} MiB) + daemon RSS {:.1} MiB",
                m["dst_map_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
                m["all_maps_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
                m["rss_kib_filled"].as_f64().unwrap_or(0.0) / 1024.0
            ),
            _ => format!(
                "RSS {:.1} MiB empty, {:.1} MiB filled",
                m["rss_kib_empty"].as_f64().unwrap_or(0.0) / 1024.0,
                m["rss_kib_filled"].as_f64().unwrap_or(0.0) / 1024.0
            ),
        };
        let tracked = match m["key"].as_str().unwrap_or("") {
            "fastnetmon" => format!("{} monitored (preallocated)", m["monitored_hosts"]),
            _ => m["tracked"].to_string(),
        };
        let name = match m["key"].as_str().unwrap_or("") {
            "xdp" => Kind::Xdp.name(),
            "fastnetmon" => Kind::FastNetMon.name(),
            _ => "edge-sensor userspace",
        };
        s += &format!("| {name} | {} | {tracked} | {mem} |\n", m["destinations"]);
    }
    s += &formula(&r["map_formula"]);
    s += "\nXDP: the destination map is an LRU hash (one value per destination shared by all CPUs) sized by `xdp.destinations`, \
          allocated in full at load; an LRU map starts evicting slightly before it is full, \
          hence `tracked` a little under the size. Userspace: a map that grows with the \
          destinations seen. FastNetMon: counters preallocated for every address of \
          `networks_list` (IPv4), whatever the traffic.\n";
    s
}

fn capacity_row(name: &str, label: &str, search: &Value) -> String {
    let best = &search["best"];
    let failed = search["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|st| !st["sustained"].as_bool().unwrap_or(true))
        .min_by(|a, b| {
            let r = |v: &Value| v["sent_rate"].as_f64().unwrap_or(f64::MAX);
            r(a).total_cmp(&r(b))
        });
    let failed = failed.map_or("none (generator limit)".into(), |st| {
        format!(
            "{} ({:.2} %, {:.0} %)",
            fmt_rate(&st["sent_rate"]),
            st["loss"].as_f64().unwrap_or(0.0) * 100.0,
            st["collector_core_busy"].as_f64().unwrap_or(0.0) * 100.0
        )
    });
    let o = &search["generator_flat_out"];
    let f = |k: &str| o[k].as_f64().unwrap_or(0.0);
    let counted =
        f("accounted_datagrams").max(f("samples") / f("expected_samples").max(1.0) * f("sent"));
    let per_core = counted / f("collector_cpu_s").max(1e-9);
    // Samples too: an overload step sends few distinct frames (one per
    // call), whose samples per datagram differ from the cycle's mean.
    let samples_per_core = f("samples") / f("collector_cpu_s").max(1e-9);
    let gen_cpu = f("sent") / f("generator_cpu_s").max(1e-9);
    format!(
        "| {name} | {label} | {}{} ({:.0} %) | {failed} | {:.0} ({:.0} %) | {per_core:.0}; {samples_per_core:.0} | {:.0}, {gen_cpu:.0} | {:.1}x |\n",
        if search["limited_by_generator"].as_bool().unwrap_or(false) {
            ">= "
        } else {
            ""
        },
        fmt_rate(&search["max_sustained_rate"]),
        best["collector_core_busy"].as_f64().unwrap_or(0.0) * 100.0,
        f("accounted_rate"),
        f("collector_core_busy") * 100.0,
        f("sent_rate"),
        gen_cpu / per_core.max(1e-9),
    )
}

/// The destination map's size by the kernel's per-entry accounting, now
/// and before, for this machine's and larger core counts.
fn formula(f: &Value) -> String {
    if !f.is_object() {
        return String::new();
    }
    let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1048576.0;
    let (sh, pc) = (&f["shared"], &f["percpu"]);
    let mut s = format!(
        "\nBy the kernel's own accounting (`memlock`, `htab_map_mem_usage`), a preallocated LRU hash of N entries \
         costs `fixed + buckets(N) x bucket + N x (header + round8(key) + round8(value) x V)`, buckets(N) = N rounded \
         up to a power of two, V = 1 for a shared value and the possible CPUs for a per-CPU one. Read off this \
         kernel ({} possible CPUs) by creating maps of 1024-1026 entries with DST_STATS's key ({} B) and value ({} B): \
         LRU hash header {} B, bucket {} B, fixed {} B, values per element {}; LRU per-CPU hash header {} B \
         (with its per-CPU pointer), bucket {} B, fixed {} B, values per element {}. The other maps: measured \
         here plus their per-CPU part (per-CPU values, 32 B of lock counters per CPU for hashes). \
         At {} destinations ({} entries), measured here: DST_STATS {:.1} MiB, all maps {:.1} MiB, daemon RSS {:.1} MiB.\n\n",
        f["possible_cpus_here"],
        sh["key_bytes"],
        sh["value_bytes"],
        sh["elem_header_bytes"],
        sh["bucket_bytes"],
        sh["fixed_bytes"],
        sh["values_per_elem_measured"],
        pc["elem_header_bytes"],
        pc["bucket_bytes"],
        pc["fixed_bytes"],
        pc["values_per_elem_measured"],
        f["destinations"],
        f["entries"],
        mib(&f["dst_stats_measured_bytes"]),
        mib(&f["all_maps_measured_bytes"]),
        mib(&f["daemon_rss_bytes"]),
    );
    s += "| possible CPUs | DST_STATS shared (now) | all maps + daemon RSS (now) | DST_STATS per-CPU (before) | all maps + daemon RSS (before) |\n";
    s += "|---:|---:|---:|---:|---:|\n";
    for a in f["at"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n",
            a["cpus"],
            mib(&a["dst_stats_bytes"]),
            mib(&a["with_rss_bytes"]),
            mib(&a["dst_stats_percpu_bytes"]),
            mib(&a["with_rss_percpu_bytes"]),
        );
    }
    s
}

/// A grouped bar chart of the sustained rates (hand-written SVG).
pub fn svg(r: &Value) -> String {
    let cands: Vec<&Value> = r["candidates"].as_array().into_iter().flatten().collect();
    let rate = |c: &Value, w: &str| c[w]["max_sustained_rate"].as_f64().unwrap_or(0.0);
    let max = cands
        .iter()
        .flat_map(|c| [rate(c, "sflow"), rate(c, "ipfix")])
        .fold(1.0, f64::max);
    let (w, h, left, bottom, top) = (720.0, 380.0, 90.0, 80.0, 40.0);
    let plot_h = h - bottom - top;
    let group_w = (w - left - 20.0) / 2.0;
    let colors = ["#d9480f", "#1c7ed6", "#74c0fc", "#868e96"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">Highest datagram rate with &lt; 0.1 % loss (datagrams/s)</text>\n",
        w / 2.0
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = top + plot_h - plot_h * f64::from(i) / 4.0;
        s += &format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}k</text>\n",
            w - 20.0,
            left - 6.0,
            y + 4.0,
            v / 1000.0
        );
    }
    for (g, (w_key, label)) in [("sflow", "sFlow"), ("ipfix", "IPFIX")].iter().enumerate() {
        let gx = left + group_w * g as f64;
        let bar_w = group_w / (cands.len() as f64 + 1.0);
        for (i, c) in cands.iter().enumerate() {
            let v = rate(c, w_key);
            let bh = plot_h * v / max;
            let x = gx + bar_w * (i as f64 + 0.5);
            let y = top + plot_h - bh;
            let mark = if c[w_key]["limited_by_generator"].as_bool().unwrap_or(false) {
                "≥"
            } else {
                ""
            };
            s += &format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{mark}{:.0}k</text>\n",
                bar_w * 0.9,
                colors[i % 4],
                x + bar_w * 0.45,
                y - 4.0,
                v / 1000.0
            );
        }
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{label}</text>\n",
            gx + group_w / 2.0,
            h - bottom + 20.0
        );
    }
    // Two legend entries per row.
    for (i, c) in cands.iter().enumerate() {
        let x = 10.0 + 350.0 * (i % 2) as f64;
        let y = h - 32.0 + 16.0 * (i / 2) as f64;
        s += &format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            y - 10.0,
            colors[i % 4],
            x + 16.0,
            y,
            c["name"].as_str().unwrap_or("")
        );
    }
    s += "</svg>\n";
    s
}
