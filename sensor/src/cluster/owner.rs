//! Who mitigates a network-wide attack: rendezvous (highest random weight)
//! hashing of the victim over the live members. Every sensor computes it
//! from the same membership and gets the same answer with no messages; a
//! member leaving moves only its own victims (each to the member that
//! scored second), a member joining takes about 1/n of them.
//!
//! The hash is FNV-1a 64 over `member \0 victim` finished with the
//! splitmix64 mixer: fixed here, so sensors of different builds agree
//! (`std`'s hasher is neither stable across releases nor meant for this).

use ipnet::IpNet;

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The weight of `member` for `victim`.
pub fn score(member: &str, victim: &IpNet) -> u64 {
    let victim = victim.to_string();
    mix(fnv1a(
        member
            .bytes()
            .chain(std::iter::once(0))
            .chain(victim.bytes()),
    ))
}

/// The member that mitigates `victim`: the highest score, ties (never
/// seen in practice) to the greater name. `None` without members.
pub fn owner<'a>(victim: &IpNet, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    members.into_iter().max_by_key(|m| (score(m, victim), *m))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn victim(i: u32) -> IpNet {
        IpNet::from(std::net::IpAddr::from((0xc612_0000u32 + i).to_be_bytes()))
    }

    #[test]
    fn the_same_members_in_any_order_give_the_same_owner() {
        let a = ["s1", "s2", "s3"];
        let b = ["s3", "s1", "s2"];
        for i in 0..200 {
            assert_eq!(owner(&victim(i), a), owner(&victim(i), b));
        }
        assert_eq!(owner(&victim(1), []), None);
        assert_eq!(owner(&victim(1), ["only"]), Some("only"));
    }

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // Pinned: a change here would split ownership between versions.
        let v: IpNet = "198.18.202.10/32".parse().unwrap();
        assert_eq!(score("s1", &v), score("s1", &v));
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(score("s1", &v), score("s2", &v));
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_victims() {
        let all = ["s1", "s2", "s3", "s4"];
        let rest = ["s1", "s2", "s4"];
        for i in 0..1000 {
            let before = owner(&victim(i), all).unwrap();
            let after = owner(&victim(i), rest).unwrap();
            if before != "s3" {
                assert_eq!(before, after, "victim {i} moved");
            }
        }
    }

    #[test]
    fn victims_spread_evenly() {
        let members = ["s1", "s2", "s3"];
        let mut counts = BTreeMap::new();
        for i in 0..3000 {
            *counts
                .entry(owner(&victim(i), members).unwrap())
                .or_insert(0) += 1;
        }
        for (m, n) in counts {
            assert!((850..1150).contains(&n), "{m} owns {n} of 3000");
        }
    }
}
