//! Random NetFlow v9 / IPFIX sessions — templates with random field sets and
//! sizes, options carrying sampling, data records, mutations — through the
//! kernel (with the daemon's userspace part for what it passes on) and
//! through the userspace decoder alone: the counters must be identical.

use std::cell::RefCell;

use edge_sensor_tests::{engines::Both, frame::*};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};

/// A field a random template may hold: IE, length, enterprise (IPFIX only).
#[derive(Debug, Clone, Copy)]
struct F(u16, u16, Option<u32>);

fn field() -> impl Strategy<Value = F> {
    prop_oneof![
        Just(F(12, 4, None)),
        Just(F(12, 3, None)), // wrong length: not a destination
        Just(F(28, 16, None)),
        (1u16..=9).prop_map(|l| F(2, l, None)),
        (1u16..=9).prop_map(|l| F(1, l, None)),
        prop::sample::select(vec![1u16, 2]).prop_map(|l| F(4, l, None)),
        prop::sample::select(vec![1u16, 2]).prop_map(|l| F(6, l, None)),
        Just(F(88, 2, None)),
        Just(F(197, 1, None)),
        prop::sample::select(vec![1u16, 2, 4]).prop_map(|l| F(48, l, None)),
        Just(F(302, 8, None)),
        Just(F(34, 4, None)),
        Just(F(50, 4, None)),
        Just(F(305, 4, None)),
        Just(F(306, 4, None)),
        Just(F(7, 2, None)),
        Just(F(1, 8, Some(29305))),
        Just(F(315, 65535, None)),
    ]
}

#[derive(Debug, Clone)]
struct Session {
    ipfix: bool,
    fields: Vec<F>,
    /// Options: None, a domain interval (IE 34), or a sampler table entry.
    sampling: Option<(bool, u8, u32)>,
    /// Data messages: sets of records of fields' raw bytes.
    messages: Vec<Vec<Vec<Vec<Vec<u8>>>>>,
    cut: Option<(usize, usize)>,
}

fn value(f: F) -> BoxedStrategy<Vec<u8>> {
    match f {
        F(12, 4, _) => prop::sample::select(vec![[203, 0, 113, 1], [203, 0, 113, 2], [0, 0, 0, 0]])
            .prop_map(|a| a.to_vec())
            .boxed(),
        F(28, 16, _) => prop::sample::select(vec![0u8, 1, 2])
            .prop_map(|x| {
                let mut a = vec![0x20, 1, 0xd, 0xb8];
                a.resize(15, 0);
                a.push(x);
                if x == 0 {
                    a = vec![0; 16];
                }
                a
            })
            .boxed(),
        // A 1-byte samplerId from the options' id range (0..3): records of
        // one datagram name the sampler with a rate and others, in any
        // order (the kernel looks a sampler's rate up once per datagram).
        F(48, 1, _) => prop::sample::select(vec![0u8, 1, 2])
            .prop_map(|id| vec![id])
            .boxed(),
        F(315, _, _) => prop::collection::vec(any::<u8>(), 0..6)
            .prop_map(|v| {
                let mut out = vec![v.len() as u8];
                out.extend(v);
                out
            })
            .boxed(),
        F(_, len, _) => prop::collection::vec(any::<u8>(), usize::from(len)).boxed(),
    }
}

fn session() -> impl Strategy<Value = Session> {
    (
        any::<bool>(),
        prop::collection::vec(field(), 1..8),
        prop::option::of((any::<bool>(), 0u8..3, 1u32..5000)),
        1usize..4,
        prop::option::of((any::<usize>(), any::<usize>())),
    )
        .prop_flat_map(|(ipfix, fields, sampling, n, cut)| {
            let fields: Vec<F> = fields
                .into_iter()
                .filter(|f| ipfix || (f.2.is_none() && f.1 != 65535))
                .collect();
            let fields = if fields.is_empty() {
                vec![F(12, 4, None), F(2, 4, None)]
            } else {
                fields
            };
            let record = fields.iter().map(|f| value(*f)).collect::<Vec<_>>();
            let message = prop::collection::vec(record, 0..6);
            let messages = prop::collection::vec(prop::collection::vec(message, 1..3), n);
            (
                Just(ipfix),
                Just(fields),
                Just(sampling),
                messages,
                Just(cut),
            )
        })
        .prop_map(|(ipfix, fields, sampling, messages, cut)| Session {
            ipfix,
            fields,
            sampling,
            messages,
            cut,
        })
}

fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = be16(id).to_vec();
    s.extend(be16(body.len() as u16 + 4));
    s.extend(body);
    s
}

fn message(ipfix: bool, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut m = if ipfix {
        vec![0, 10, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7]
    } else {
        vec![0, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7]
    };
    for s in sets {
        m.extend(s);
    }
    if ipfix {
        let len = be16(m.len() as u16);
        m[2..4].copy_from_slice(&len);
    }
    m
}

/// The session's messages: templates (and sampling options), then data.
fn encode(s: &Session) -> Vec<Vec<u8>> {
    let mut tpl = be16(300).to_vec();
    tpl.extend(be16(s.fields.len() as u16));
    for f in &s.fields {
        match f.2 {
            Some(pen) => {
                tpl.extend(be16(f.0 | 0x8000));
                tpl.extend(be16(f.1));
                tpl.extend(pen.to_be_bytes());
            }
            None => {
                tpl.extend(be16(f.0));
                tpl.extend(be16(f.1));
            }
        }
    }
    let mut first = vec![set(if s.ipfix { 2 } else { 0 }, &tpl)];
    if let Some((by_sampler, id, rate)) = s.sampling {
        let (opt_tpl, opt_data) = if s.ipfix {
            let mut t = be16(400).to_vec();
            let fields: Vec<(u16, u16)> = if by_sampler {
                vec![(144, 4), (48, 1), (50, 4)]
            } else {
                vec![(144, 4), (34, 4)]
            };
            t.extend(be16(fields.len() as u16));
            t.extend(be16(1));
            for (ie, len) in fields {
                t.extend(be16(ie));
                t.extend(be16(len));
            }
            let mut d = vec![0, 0, 0, 1];
            if by_sampler {
                d.push(id);
            }
            d.extend(rate.to_be_bytes());
            (set(3, &t), set(400, &d))
        } else {
            // v9: scope System (length 4), then the option fields.
            let mut t = be16(400).to_vec();
            t.extend(be16(4));
            let opts: Vec<(u16, u16)> = if by_sampler {
                vec![(48, 1), (50, 4)]
            } else {
                vec![(34, 4)]
            };
            t.extend(be16(opts.len() as u16 * 4));
            t.extend([0, 1, 0, 4]);
            for (ie, len) in opts {
                t.extend(be16(ie));
                t.extend(be16(len));
            }
            let mut d = vec![0, 0, 0, 1];
            if by_sampler {
                d.push(id);
            }
            d.extend(rate.to_be_bytes());
            (set(1, &t), set(400, &d))
        };
        first.push(opt_tpl);
        first.push(opt_data);
    }
    let mut out = vec![message(s.ipfix, &first)];
    for sets in &s.messages {
        let sets: Vec<Vec<u8>> = sets
            .iter()
            .map(|records| {
                set(
                    300,
                    &records
                        .iter()
                        .flatten()
                        .flatten()
                        .copied()
                        .collect::<Vec<u8>>(),
                )
            })
            .collect();
        out.push(message(s.ipfix, &sets));
    }
    if let Some((which, at)) = s.cut {
        let i = which % out.len();
        let at = at % (out[i].len() + 1);
        out[i].truncate(at);
    }
    out
}

#[test]
fn random_template_sessions_decode_identically_in_kernel_and_userspace() {
    let both = RefCell::new(Both::new());
    let mut runner = TestRunner::new(Config {
        cases: 800,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&session(), |s| {
        let mut both = both.borrow_mut();
        both.xdp.reset().expect("reset xdp");
        both.user.reset().expect("reset user");
        for (i, payload) in encode(&s).iter().enumerate() {
            let frame = ethernet(
                &[],
                ETH_P_IPV4,
                &ipv4(
                    [198, 18, 9, 1],
                    [198, 18, 9, 2],
                    IPPROTO_UDP,
                    &udp(40000, 4739, payload),
                ),
            );
            both.frame(&format!("message {i} of {s:?}"), &frame);
        }
        both.reports(&format!("{s:?}"));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
