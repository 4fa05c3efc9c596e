//! The `--json` outputs of `top`, `exporters`, `maps` and `maps dump`,
//! produced against maps the real XDP program fills, validated against the
//! schemas checked in under `tests/schemas/` (documented in docs/json.md).
//! The schemas forbid unknown fields and require every field, so renaming
//! or dropping one fails here.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use aya::maps::{HashMap, MapData};
use edge_sensor::xdp::pins::PINNED_MAPS;
use edge_sensor_tests::{
    filled::{Filled, syn_datagram},
    require_root,
};
use serde_json::Value;

fn schema(name: &str) -> Value {
    edge_sensor_tests::json_schema(name)
}

fn assert_valid(name: &str, doc: &Value) {
    edge_sensor_tests::assert_json_schema(name, doc);
}

fn assert_invalid(name: &str, doc: &Value) {
    let validator = jsonschema::validator_for(&schema(name)).unwrap();
    assert!(!validator.is_valid(doc), "{name} accepted {doc}");
}

/// Renames the first occurrence of `field` in `doc`'s objects.
fn rename(doc: &mut Value, field: &str, to: &str) -> bool {
    match doc {
        Value::Object(m) => {
            if let Some(v) = m.remove(field) {
                m.insert(to.to_owned(), v);
                return true;
            }
            m.values_mut().any(|v| rename(v, field, to))
        }
        Value::Array(a) => a.iter_mut().any(|v| rename(v, field, to)),
        _ => false,
    }
}

#[test]
fn every_json_output_matches_its_schema() {
    require_root();
    let f = Filled::new();
    let (big, small) = (
        syn_datagram([203, 0, 113, 10], 4),
        syn_datagram([203, 0, 113, 20], 1),
    );
    let mut foreign: HashMap<MapData, u32, u64> = HashMap::create(4, 0).unwrap();
    foreign.insert(7, 9, 0).unwrap();
    foreign.pin(f.path().join("FOREIGN")).unwrap();

    let stop = AtomicBool::new(false);
    let top = std::thread::scope(|s| {
        s.spawn(|| {
            f.stream(
                &[&big, &small],
                &stop,
                Duration::from_millis(2),
                Duration::from_secs(20),
            )
        });
        let top = f.json(&["top", "--interval", "0.5"]);
        stop.store(true, Ordering::Relaxed);
        top
    });
    assert_eq!(top["destinations"].as_array().unwrap().len(), 2, "{top}");
    assert_valid("top", &top);

    let exporters = f.json(&["exporters"]);
    assert_eq!(exporters["exporters"].as_array().unwrap().len(), 1);
    assert_valid("exporters", &exporters);

    let maps = f.json(&["maps"]);
    assert_eq!(
        maps["maps"].as_array().unwrap().len(),
        PINNED_MAPS.len() + 1
    );
    assert_valid("maps", &maps);

    for spec in PINNED_MAPS {
        for extra in [&[][..], &["--per-cpu"], &["--raw"], &["--limit", "1"]] {
            let mut args = vec!["maps", "dump", spec.name];
            args.extend_from_slice(extra);
            let dump = f.json(&args);
            assert_valid("maps-dump", &dump);
        }
    }
    let foreign = f.json(&["maps", "dump", "FOREIGN"]);
    assert_eq!(foreign["entries"][0]["key"], "07000000");
    assert_valid("maps-dump", &foreign);

    // The schemas are strict: a renamed field fails.
    for (name, doc, field) in [
        ("top", &top, "tcp_syn_pps"),
        ("exporters", &exporters, "sequence_gaps"),
        ("maps", &maps, "max_entries"),
        (
            "maps-dump",
            &f.json(&["maps", "dump", "DST_STATS"]),
            "tcp_syn",
        ),
    ] {
        let mut renamed = doc.clone();
        assert!(rename(&mut renamed, field, "renamed"), "{field} in {doc}");
        assert_invalid(name, &renamed);
    }
}

#[test]
fn every_schema_field_is_documented() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/json.md"))
            .expect("docs/json.md");
    fn fields(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Object(props)) = m.get("properties") {
                    out.extend(props.keys().cloned());
                }
                m.values().for_each(|v| fields(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| fields(v, out)),
            _ => {}
        }
    }
    for name in ["top", "exporters", "maps", "maps-dump"] {
        assert!(
            doc.contains(&format!("tests/schemas/{name}.json")),
            "{name} not referenced"
        );
        let mut names = Vec::new();
        fields(&schema(name), &mut names);
        for field in names {
            assert!(
                doc.contains(&format!("`{field}`")),
                "{name}: `{field}` undocumented in docs/json.md"
            );
        }
    }
}
