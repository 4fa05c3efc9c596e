//! Every program in the XDP object passes the kernel verifier, and the number
//! of instructions the verifier processed stays under a budget.
//!
//! The budget is far below the kernel's 1M limit on purpose: a change that
//! multiplies the verifier's work (an unbounded-looking loop, a lost bounds
//! check that forces path explosion) shows up here first, with numbers. The
//! kernel matrix (`cargo xtask kernels`) runs this test on every kernel it
//! boots and reads the `VERIFIER` lines it prints.
//!
//! On a refusal or an overrun the test says where: the verifier's reason,
//! the instruction where it stopped, its statistics, and the functions
//! with the most processed instructions (`edge_sensor_tests::verifier`).

use aya::{EbpfLoader, programs::Program};
use edge_sensor::xdp::EBPF_OBJECT;
use edge_sensor_tests::{require_root, verifier};

/// Processed-instruction budget per program.
const BUDGET: &[(&str, u64)] = &[("edge_sensor", 150_000)];

#[test]
fn every_program_verifies_under_its_instruction_budget() {
    require_root();
    assert!(
        !EBPF_OBJECT.is_empty(),
        "edge-sensor was built without its XDP object: run `cargo xtask test`"
    );
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("kernel {}", release.trim());

    // What aya, the sensor's own loader, makes of it.
    let mut ebpf = EbpfLoader::new()
        .load(EBPF_OBJECT)
        .expect("parse the object");
    let mut aya_counts = std::collections::BTreeMap::new();
    for (name, program) in ebpf.programs_mut() {
        let Program::Xdp(xdp) = program else {
            panic!(
                "{name}: program type {:?} has no loader in this test",
                program.prog_type()
            );
        };
        let count = match xdp.load() {
            Ok(()) => Some(u64::from(
                program
                    .info()
                    .expect("program info")
                    .verified_instruction_count()
                    .expect("the kernel reports verified instruction counts (>= 5.16)"),
            )),
            Err(e) => {
                println!("{name}: aya: {e}");
                None
            }
        };
        aya_counts.insert(name.to_owned(), count);
    }

    // What the verifier says, with its statistics; traced (slow) only
    // when something is wrong, to say where, or when asked
    // (EDGE_SENSOR_VERIFIER_TRACE=1).
    let verdicts = verifier::verify_object(EBPF_OBJECT, false).expect("load the object by hand");
    let failing = verdicts
        .iter()
        .any(|v| !v.verified || v.insns.unwrap_or(u64::MAX) > budget_of(&v.program));
    let asked = std::env::var_os("EDGE_SENSOR_VERIFIER_TRACE").is_some_and(|v| v == "1");
    let verdicts = if failing || asked {
        verifier::verify_object(EBPF_OBJECT, true).expect("trace the object")
    } else {
        verdicts
    };

    let mut problems = Vec::new();
    for v in &verdicts {
        let budget = budget_of(&v.program);
        let result = match (v.verified, v.insns) {
            (false, _) => "refused",
            (true, Some(n)) if n > budget => "over-budget",
            (true, _) => "ok",
        };
        let show = |x: Option<u64>| x.map_or("-".to_owned(), |n| n.to_string());
        println!(
            "VERIFIER prog={} insns={} states={} peak_states={} result={result} budget={budget}",
            v.program,
            show(v.insns),
            show(v.states),
            show(v.peak_states),
        );
        if let Some(line) = &v.stats_line {
            println!("  {line}");
        }
        if result != "ok" || asked {
            if let Some(reason) = &v.reason {
                println!("  reason: {reason}");
            }
            if let Some(at) = &v.stopped_at {
                println!("  stopped at: {at}");
            }
            let stack: Vec<_> = v
                .stack_by_function
                .iter()
                .map(|(f, d)| format!("{f}={d}"))
                .collect();
            println!("  stack bytes by function: {}", stack.join(" "));
            println!("  processed instructions by function (traced):");
            for (function, n) in v.by_function.iter().take(8) {
                println!("    {n:>9}  {function}");
            }
        }
        if result != "ok" {
            problems.push(format!("{}: {result}", v.program));
        }
        // Both loads saw the same program: aya's count must agree.
        if let (Some(Some(aya)), Some(ours), true) =
            (aya_counts.get(&v.program), v.insns, v.verified)
        {
            assert_eq!(*aya, ours, "{}: aya's count vs the traced load", v.program);
        }
        if aya_counts.get(&v.program).is_some_and(Option::is_none) && v.verified {
            problems.push(format!(
                "{}: aya refused what the kernel verified",
                v.program
            ));
        }
    }
    let mut seen: Vec<_> = verdicts.iter().map(|v| v.program.clone()).collect();
    seen.sort();
    let mut expected: Vec<_> = BUDGET.iter().map(|(n, _)| n.to_string()).collect();
    expected.sort();
    assert_eq!(
        seen, expected,
        "programs in the object vs budgets in this test"
    );
    assert!(problems.is_empty(), "verifier: {}", problems.join("; "));
}

fn budget_of(program: &str) -> u64 {
    BUDGET
        .iter()
        .find(|(n, _)| *n == program)
        .unwrap_or_else(|| panic!("program {program} has no budget in this test"))
        .1
}
