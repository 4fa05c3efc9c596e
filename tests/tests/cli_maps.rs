//! `edge-sensor maps` and `maps dump` against maps the real XDP program
//! filled, pinned in the test's own directory; and the errors every
//! pin-reading command gives when the pins are missing, unreadable or of
//! another layout.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use aya::maps::{HashMap, MapData};
use edge_sensor::xdp::{pins::PINNED_MAPS, read::pinned_destinations};
use edge_sensor_common::{DST_STATS, EXPORTER_STATS};
use edge_sensor_tests::{
    PinDir,
    filled::{Filled, RATE, cli_at, syn_datagram},
    require_root, require_tool, sensor_bin,
};
use serde_json::Value;

const ROUNDS: u64 = 5;

/// Five rounds of a 4-sample datagram to .10 and a 1-sample one to .20.
fn filled() -> Filled {
    let f = Filled::new();
    let (big, small) = (
        syn_datagram([203, 0, 113, 10], 4),
        syn_datagram([203, 0, 113, 20], 1),
    );
    for _ in 0..ROUNDS {
        f.send(&big);
        f.send(&small);
    }
    f
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn map<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

#[test]
fn maps_lists_every_pinned_map_with_its_fill_and_memory() {
    require_root();
    let f = filled();
    let list = f.json(&["maps"]);
    assert_eq!(
        list["maps"].as_array().unwrap().len(),
        PINNED_MAPS.len(),
        "{list}"
    );
    for spec in PINNED_MAPS {
        let m = map(&list, spec.name);
        assert_eq!(m["key_size"], spec.key_size, "{m}");
        assert_eq!(m["value_size"], spec.value_size, "{m}");
        assert_eq!(m["layout"], "ok", "{m}");
        assert!(m["memory_bytes"].as_u64().unwrap() > 0, "{m}");
    }
    let dst = map(&list, DST_STATS);
    // One value per destination whatever the core count (atomic adds).
    assert_eq!(dst["type"], "lru_hash");
    assert_eq!(map(&list, EXPORTER_STATS)["type"], "lru_percpu_hash");
    assert_eq!(
        dst["max_entries"],
        1 << 16,
        "the capacity it was loaded with"
    );
    assert_eq!(dst["entries"], 2, "two victims: {dst}");
    assert_eq!(map(&list, EXPORTER_STATS)["entries"], 1);
    assert_eq!(map(&list, "GLOBAL_STATS")["entries"], 1, "arrays are full");
    assert_eq!(map(&list, "USER_DST_STATS")["entries"], 0, "no daemon ran");

    // People get an aligned table with the same facts.
    let out = f.cli(&["maps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.starts_with("NAME "), "{text}");
    assert!(!text.contains('\x1b'), "no colour off a terminal: {text:?}");
    let row = text
        .lines()
        .find(|l| l.starts_with("DST_STATS "))
        .expect(&text);
    let col = |h: &str| header.find(h).unwrap() + h.len();
    // Right-aligned numbers end under their header.
    assert_eq!(&row[col("ENTRIES") - 1..col("ENTRIES")], "2", "{text}");
    assert!(
        row.contains("lru_hash") && row.trim_end().ends_with("ok"),
        "{row}"
    );
}

#[test]
fn maps_dump_decodes_the_sensors_maps_and_sums_per_cpu_ones() {
    require_root();
    let f = filled();
    let dump = f.json(&["maps", "dump", DST_STATS]);
    assert_eq!(dump["decoded"], true);
    assert_eq!(dump["per_cpu"], false);
    assert_eq!(dump["truncated"], false);
    let entries = dump["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{dump}");
    // The same totals as the library's own reader, and as what was sent.
    let direct = pinned_destinations(f.path()).unwrap();
    for e in entries {
        let ip = e["key"]["ip"].as_str().unwrap().parse().unwrap();
        let s = &direct[&ip];
        assert_eq!(e["value"]["packets"]["all"], s.packets[0], "{e}");
        assert_eq!(e["value"]["bytes"]["all"], s.bytes[0], "{e}");
        assert_eq!(e["value"]["packets"]["tcp_syn"], s.packets[0], "{e}");
        assert_eq!(e["value"]["packets"]["udp"], 0, "{e}");
    }
    assert_eq!(entries[0]["key"]["ip"], "203.0.113.10", "sorted by key");
    assert_eq!(
        entries[0]["value"]["packets"]["all"],
        ROUNDS * 4 * u64::from(RATE)
    );
    assert_eq!(
        entries[1]["value"]["packets"]["all"],
        ROUNDS * u64::from(RATE)
    );

    // DST_STATS is shared by the CPUs: `--per-cpu` has nothing to split.
    let shared = f.json(&["maps", "dump", DST_STATS, "--per-cpu"]);
    assert_eq!(shared["per_cpu"], false);
    assert_eq!(
        shared["entries"][0]["value"]["packets"]["all"],
        ROUNDS * 4 * u64::from(RATE)
    );

    // A per-CPU map: one value per possible CPU, adding up to the sum.
    let split = f.json(&["maps", "dump", EXPORTER_STATS, "--per-cpu"]);
    assert_eq!(split["per_cpu"], true);
    let cpus = split["entries"][0]["values"].as_array().unwrap();
    assert_eq!(cpus.len(), aya::util::nr_cpus().unwrap());
    let total: u64 = cpus.iter().map(|v| v["datagrams"].as_u64().unwrap()).sum();
    assert_eq!(total, 2 * ROUNDS);

    let exporters = f.json(&["maps", "dump", EXPORTER_STATS]);
    let e = &exporters["entries"][0];
    assert_eq!(e["key"]["ip"], "198.18.7.1");
    assert_eq!(e["key"]["protocol"], "sflow");
    assert_eq!(e["value"]["datagrams"], 2 * ROUNDS);
    assert_eq!(e["value"]["samples"], 5 * ROUNDS);
    assert_eq!(e["value"]["errors"]["bad_version"], 0, "{e}");
    let global = f.json(&["maps", "dump", "GLOBAL_STATS"]);
    assert_eq!(
        global["entries"][0]["value"]["telemetry_datagrams"],
        2 * ROUNDS
    );
    let agents = f.json(&["maps", "dump", "AGENT_STATE"]);
    assert_eq!(agents["entries"][0]["value"]["last_sequence"], 1);

    // --raw: the key's bytes as the kernel holds them (IPv4-mapped IPv6).
    let raw = f.json(&["maps", "dump", DST_STATS, "--raw", "--limit", "1"]);
    assert_eq!(raw["decoded"], false);
    assert_eq!(raw["truncated"], true, "{raw}");
    let key = raw["entries"][0]["key"].as_str().unwrap();
    assert!(key.starts_with("00000000000000000000ffffcb0071"), "{key}");
    assert_eq!(
        raw["entries"][0]["value"].as_str().unwrap().len(),
        2 * 112,
        "one shared value, in hex: {raw}"
    );

    let out = f.cli(&["maps", "dump", DST_STATS]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("key ip=203.0.113.10\n"), "{text}");
    assert!(text.contains("packets.all=20000"), "{text}");
    assert!(
        text.contains("2 entries\n"),
        "one value each, nothing to sum: {text}"
    );
    let exporters = String::from_utf8(f.cli(&["maps", "dump", EXPORTER_STATS]).stdout).unwrap();
    assert!(
        exporters.contains("1 entries; values summed over"),
        "{exporters}"
    );

    let typo = f.cli(&["maps", "dump", "DST_STAT"]);
    assert!(!typo.status.success());
    assert!(
        stderr(&typo).contains("no map DST_STAT pinned") && stderr(&typo).contains("DST_STATS"),
        "{}",
        stderr(&typo)
    );
}

#[test]
fn a_foreign_map_is_listed_and_dumped_in_hex() {
    require_root();
    let f = filled();
    let mut foreign: HashMap<MapData, u32, u64> = HashMap::create(8, 0).expect("create a map");
    foreign.insert(0x0102_0304, 0xaabb, 0).unwrap();
    let path = f.path().join("FOREIGN");
    foreign.pin(&path).expect("pin it");

    let list = f.json(&["maps"]);
    let m = map(&list, "FOREIGN");
    assert_eq!(m["layout"], "unknown");
    assert_eq!(m["type"], "hash");
    assert_eq!(m["entries"], 1);
    let dump = f.json(&["maps", "dump", "FOREIGN"]);
    assert_eq!(dump["decoded"], false);
    // Little-endian u32 and u64, as the kernel stores them here.
    assert_eq!(dump["entries"][0]["key"], "04030201");
    assert_eq!(dump["entries"][0]["value"], "bbaa000000000000");
}

/// Every pin-reading command, with its arguments before `--pin-path`.
const READERS: &[&[&str]] = &[
    &["top", "--interval", "0.1"],
    &["exporters"],
    &["maps"],
    &["maps", "dump", DST_STATS],
    &["metrics", "--listen", "127.0.0.1:0"],
];

#[test]
fn without_pins_every_reader_asks_whether_the_sensor_is_loaded() {
    let empty = tempfile_dir();
    // An empty directory on the bpffs too: the sensor's own kind of path.
    require_root();
    let bpffs_empty = PinDir::new();
    std::fs::create_dir_all(bpffs_empty.path()).unwrap();
    for dir in [empty.as_path(), bpffs_empty.path()] {
        for args in READERS {
            let out = cli_at(dir, args);
            assert!(!out.status.success(), "{args:?} succeeded");
            let err = stderr(&out);
            assert!(
                err.contains("is the sensor loaded?") && err.contains(&*dir.to_string_lossy()),
                "{args:?} in {}: {err}",
                dir.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&empty);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(edge_sensor_tests::unique_name("es-empty-"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_unprivileged_reader_is_told_it_needs_root_or_cap_bpf() {
    require_root();
    require_tool("setpriv");
    let f = filled();
    // The binary where user nobody can run it.
    let bin_dir = tempfile_dir();
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.join("edge-sensor");
    std::fs::copy(sensor_bin(), &bin).unwrap();
    for args in READERS {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(*args)
            .arg("--pin-path")
            .arg(f.path())
            .output()
            .expect("run setpriv");
        assert!(!out.status.success(), "{args:?} succeeded as nobody");
        let err = stderr(&out);
        assert!(err.contains("needs root or CAP_BPF"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&bin_dir);
}

#[test]
fn a_pin_of_another_layout_is_named_with_expected_and_found() {
    require_root();
    let pin = PinDir::new();
    std::fs::create_dir_all(pin.path()).unwrap();
    // What an older sensor with a 24-byte destination value would have left.
    for name in [DST_STATS, EXPORTER_STATS] {
        let foreign: HashMap<MapData, [u8; 16], [u8; 24]> = HashMap::create(16, 0).unwrap();
        foreign.pin(pin.path().join(name)).unwrap();
    }
    for args in READERS {
        let out = cli_at(pin.path(), args);
        assert!(!out.status.success(), "{args:?} accepted a foreign layout");
        let err = stderr(&out);
        assert!(
            err.contains("another layout")
                && err.contains("Hash, key 16 B, value 24 B")
                && (err.contains("LruHash, key") || err.contains("LruPerCpuHash, key")),
            "{args:?}: {err}"
        );
        let named = [DST_STATS, EXPORTER_STATS]
            .iter()
            .any(|n| err.contains(&*Path::new(pin.path()).join(n).to_string_lossy()));
        assert!(named, "{args:?} names the map: {err}");
    }
    // `maps` still shows what is there.
    let out = cli_at(pin.path(), &["maps"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MISMATCH (expected LruHash"), "{text}");
    assert!(text.contains("MISMATCH (expected LruPerCpuHash"), "{text}");
}
