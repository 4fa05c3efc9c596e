//! Embeds the XDP object built by `cargo xtask build-ebpf` into the binary.
//!
//! The object is built by a different compiler (Debian's rustc for
//! bpfel-unknown-none), so cargo cannot build it as a dependency; the xtask
//! builds it first and this script copies it into OUT_DIR. Without it (a bare
//! `cargo check`/`clippy`), an empty object is embedded and the binary says at
//! load time how to build the real one.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=EDGE_SENSOR_EBPF_OBJECT");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let object = env::var_os("EDGE_SENSOR_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/bpfel-unknown-none/release/edge-sensor"));
    println!("cargo:rerun-if-changed={}", object.display());

    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("edge-sensor.bpf.o");
    match fs::read(&object) {
        Ok(bytes) => fs::write(&out, bytes).expect("write OUT_DIR/edge-sensor.bpf.o"),
        Err(_) => {
            println!(
                "cargo:warning=no eBPF object at {}: embedding none (run `cargo xtask build`)",
                object.display()
            );
            fs::write(&out, b"").expect("write OUT_DIR/edge-sensor.bpf.o");
        }
    }
}
