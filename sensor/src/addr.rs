//! Addresses as the maps store them: 16 bytes, IPv4 mapped into IPv6
//! (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so one key type holds both families.

use std::net::{IpAddr, Ipv6Addr};

/// The map form of `ip`.
pub fn to_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address a map key holds; IPv4-mapped addresses come back as IPv4.
pub fn from_key(key: [u8; 16]) -> IpAddr {
    Ipv6Addr::from(key).to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip() {
        for ip in ["198.18.0.1", "0.0.0.0", "2001:db8::1", "::1", "::"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(from_key(to_key(ip)), ip);
        }
        let key = to_key("192.0.2.7".parse().unwrap());
        assert_eq!(&key[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&key[12..], &[192, 0, 2, 7]);
    }
}
