//! Memory per stored path of the Adj-RIB-In, counted by a global allocator
//! (this test is its own process): 400k IPv4 prefixes in UPDATEs of 40
//! prefixes sharing their attributes (10k distinct attribute sets, each
//! with an AS_PATH of 4 and 2 communities), plus a second Add-Path path for
//! every fourth prefix. The bound keeps a full table (1M IPv4 + 250k IPv6
//! paths, ~2 paths each with Add-Path) within a few hundred MB.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    net::Ipv4Addr,
    sync::atomic::{AtomicIsize, Ordering},
};

use edge_sensor::bgp::{
    attribute::{AsPathSegment, Community, Origin, PathAttribute},
    receive::{Nlri, PathNlri, ReceivedUpdate, UpdateVerdict},
    rib_in::{AdjRibIn, PeerInfo},
};
use ipnet::{IpNet, Ipv4Net};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const PREFIXES: u32 = 400_000;
const PER_UPDATE: u32 = 40;

fn attrs(n: u32) -> Vec<PathAttribute> {
    vec![
        PathAttribute::Origin(Origin::Igp),
        PathAttribute::AsPath {
            segments: vec![AsPathSegment::Sequence(vec![
                65000,
                3356,
                1299,
                64512 + n % 1000,
            ])],
            four_octet: true,
        },
        PathAttribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
        PathAttribute::Communities(vec![
            Community::new(65000, (n % 10_000) as u16),
            Community::new(3356, 2),
        ]),
    ]
}

#[test]
fn bytes_per_path_stay_small() {
    let peer = PeerInfo {
        ibgp: false,
        peer_asn: 65000,
        four_octet: true,
    };
    let mut rib = AdjRibIn::default();
    let before = LIVE.load(Ordering::Relaxed);
    let mut paths = 0u64;
    for chunk in 0..PREFIXES / PER_UPDATE {
        let mut announced = Vec::with_capacity(PER_UPDATE as usize);
        for i in 0..PER_UPDATE {
            let n = chunk * PER_UPDATE + i;
            // /24s spread over 1.0.0.0-..., like a table's bulk.
            let net = IpNet::V4(Ipv4Net::new(Ipv4Addr::from((n + 0x0100_0000) << 8), 24).unwrap());
            announced.push(PathNlri {
                path_id: 1,
                nlri: Nlri::Prefix(net),
            });
            if n.is_multiple_of(4) {
                announced.push(PathNlri {
                    path_id: 2,
                    nlri: Nlri::Prefix(net),
                });
            }
        }
        paths += announced.len() as u64;
        let u = ReceivedUpdate {
            announced,
            attributes: attrs(chunk),
            ..ReceivedUpdate::default()
        };
        rib.apply(&UpdateVerdict::Ok(u), peer);
    }
    let used = (LIVE.load(Ordering::Relaxed) - before) as u64;
    let st = rib.status();
    assert_eq!(st.prefixes as u32, PREFIXES);
    assert_eq!(st.paths as u64, paths);
    assert_eq!(st.attribute_sets, 10_000);
    let per_path = used / paths;
    println!(
        "{paths} paths, {} attribute sets: {used} bytes, {per_path} bytes per path",
        st.attribute_sets
    );
    assert!(per_path <= 128, "{per_path} bytes per path");
}
