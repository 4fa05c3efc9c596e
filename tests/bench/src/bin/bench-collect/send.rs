//! The two generators of a step: the AF_PACKET replay (paced, one thread
//! per RX queue) and the kernel's live frames (overload).

use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use edge_sensor_bench::{
    self as bench,
    livegen::{Frames, LiveSent},
};
use edge_sensor_tests::{
    netns::Link,
    replay::{self, Sent, Workload},
};

use crate::{
    Bench, LIVE_COPIES, LIVE_FRAMES_MAX, Offer, Offered, SENDER_CPU, STEP, THROUGHPUT_DESTINATIONS,
};

impl Bench {
    /// The frames the live generator cycles through for `workload`: its
    /// first pass (sent once per step) and enough of its cycle to cover
    /// the spread destinations, addressed as the AF_PACKET generator
    /// addresses them; what each carries from the same decoder profile.
    pub(super) fn live_frames(&self, link: &Link, workload: &Workload, port: u16) -> Frames {
        let replay::Via::Raw(raw) = replay::raw_via(link) else {
            unreachable!("raw_via")
        };
        let IpAddr::V4(b) = link.b_addr else {
            unreachable!("the link's addresses are IPv4")
        };
        let dst = SocketAddrV4::new(b, port);
        let cycle = if workload.rewritable_per_cycle() > 0 {
            workload
                .datagrams_for_destinations(u64::from(THROUGHPUT_DESTINATIONS))
                .max(workload.cycle_len() as u64) as usize
        } else {
            workload.cycle_len()
        };
        let n = (workload.first_len() + cycle).min(LIVE_FRAMES_MAX);
        let mut out = Frames {
            once: workload.first_len(),
            ..Default::default()
        };
        let (mut payload, mut frame) = (Vec::new(), Vec::new());
        for i in 0..n as u64 {
            workload.datagram(i, &mut payload);
            replay::udp_frame(&mut frame, &raw, dst, i as u16, &payload);
            out.frames.push(frame.clone());
            out.samples
                .push(workload.expected_samples(i + 1) - workload.expected_samples(i));
        }
        out
    }

    /// The live generator at `rate` for one step: one thread per RX queue
    /// of `link`, on CPU 0 and (2 queues) CPU 1, each at its share.
    pub(super) fn send_live(
        &self,
        link: &Link,
        frames: &Frames,
        rate: f64,
        queues: usize,
    ) -> LiveSent {
        let a_if = link.a_if.clone();
        link.a.run(|| {
            let name = std::ffi::CString::new(a_if).unwrap();
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(ifindex, 0, "no sender veth");
            // Threads spawned here start in the sender's namespace.
            let parts: Vec<LiveSent> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..queues)
                    .map(|q| {
                        s.spawn(move || {
                            bench::pin_thread((SENDER_CPU + q) % 2);
                            self.live
                                .send_paced(
                                    ifindex,
                                    frames,
                                    rate / queues as f64,
                                    STEP,
                                    LIVE_COPIES,
                                )
                                .unwrap_or_else(|e| panic!("live frames: {e}"))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            parts.iter().fold(LiveSent::default(), |acc, p| LiveSent {
                datagrams: acc.datagrams + p.datagrams,
                samples: acc.samples + p.samples,
                elapsed: acc.elapsed.max(p.elapsed),
                cpu_s: acc.cpu_s + p.cpu_s,
            })
        })
    }

    /// Doubling rates until the first loss or the generator's limit, then
    /// a few bisections; the highest sustained step is the result.
    pub(super) fn offer<'a>(&self, link: &Link, workload: &'a Workload, port: u16) -> Offer<'a> {
        Offer {
            workload,
            port,
            frames: self.live_frames(link, workload, port),
        }
    }

    /// The AF_PACKET generator at `rate` for one step: one thread per RX
    /// queue of `link` (AF_PACKET picks the TX queue, hence the peer's RX
    /// queue, by the sending CPU), each at its share of the rate, each
    /// replaying the stream from its start.
    pub(super) fn send_replay(
        &self,
        link: &Link,
        offer: &Offer,
        rate: f64,
        queues: usize,
    ) -> Offered {
        let via = if std::ptr::eq(link, &self.link2) {
            &self.via2
        } else {
            &self.via
        };
        let dst = SocketAddr::new(link.b_addr, offer.port);
        let parts: Vec<Sent> = link.a.run(|| {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..queues)
                    .map(|q| {
                        s.spawn(move || {
                            bench::pin_thread((SENDER_CPU + q) % 2);
                            replay::send_via(
                                via,
                                offer.workload,
                                dst,
                                rate / queues as f64,
                                STEP,
                                None,
                            )
                            .expect("replay")
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            })
        });
        Offered {
            datagrams: parts.iter().map(|p| p.datagrams).sum(),
            samples: parts
                .iter()
                .map(|p| offer.workload.expected_samples(p.datagrams))
                .sum(),
            elapsed: parts.iter().map(|p| p.elapsed).max().unwrap_or(STEP),
            generator_cpu_s: None,
        }
    }
}
