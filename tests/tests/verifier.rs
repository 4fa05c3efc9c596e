//! Every program in the XDP object passes the kernel verifier, and the number
//! of instructions the verifier processed stays under a budget.
//!
//! The budget is far below the kernel's 1M limit on purpose: a change that
//! multiplies the verifier's work (an unbounded-looking loop, a lost bounds
//! check that forces path explosion) shows up here first, with numbers.

use aya::{EbpfLoader, programs::Program};
use edge_sensor::xdp::EBPF_OBJECT;
use edge_sensor_tests::require_root;

/// Processed-instruction budget per program.
const BUDGET: &[(&str, u32)] = &[("edge_sensor", 150_000)];

#[test]
fn every_program_verifies_under_its_instruction_budget() {
    require_root();
    assert!(
        !EBPF_OBJECT.is_empty(),
        "edge-sensor was built without its XDP object: run `cargo xtask test`"
    );
    let mut ebpf = EbpfLoader::new()
        .load(EBPF_OBJECT)
        .expect("parse the object");
    let mut seen = Vec::new();
    for (name, program) in ebpf.programs_mut() {
        match program {
            Program::Xdp(xdp) => xdp.load().unwrap_or_else(|e| panic!("{name}: {e:#?}")),
            other => panic!(
                "{name}: program type {:?} has no loader in this test",
                other.prog_type()
            ),
        }
        let info = program.info().expect("program info");
        let count = info
            .verified_instruction_count()
            .expect("the kernel reports verified instruction counts (>= 5.16)");
        let budget = BUDGET
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("program {name} has no budget in this test"))
            .1;
        println!("verifier: {name}: {count} instructions processed (budget {budget})");
        assert!(count > 0, "{name}: no instructions processed?");
        assert!(
            count <= budget,
            "{name}: verifier processed {count} instructions, over the budget of {budget}"
        );
        seen.push(name.to_owned());
    }
    seen.sort();
    let mut expected: Vec<_> = BUDGET.iter().map(|(n, _)| n.to_string()).collect();
    expected.sort();
    assert_eq!(
        seen, expected,
        "programs in the object vs budgets in this test"
    );
}
