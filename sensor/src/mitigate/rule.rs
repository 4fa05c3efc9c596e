//! From a detector's match ([`FlowMatch`]) to a Flow Spec rule (RFC 8955
//! §4.2.2, RFC 8956 §3), and the operator's own match syntax for manual
//! bans, which is the one `FlowMatch` prints:
//! `[src PREFIX] [proto udp,tcp,N] [src-port N,..] [dst-port N,..]
//! [tcp-flags =S | S/SA] [icmp-type N,..] [len N | N-M] [fragment | not-fragment |
//! first-fragment | later-fragment]`.

use std::net::IpAddr;

use edge_sensor_common::proto::ipproto;
use ipnet::IpNet;

use crate::{
    bgp::{
        BitmaskMatch, Component, FlowPrefix, FlowSpec, FlowSpecError, IpFamily, NumericMatch,
        flowspec::{fragment, tcp_flags},
    },
    detect::fingerprint::{FlowMatch, FragmentMatch, LengthRange, TcpFlagsMatch},
};

/// The Flow Spec rule a router applies for `m`.
pub fn flowspec(m: &FlowMatch) -> Result<FlowSpec, FlowSpecError> {
    let family = match m.destination {
        IpNet::V4(_) => IpFamily::Ipv4,
        IpNet::V6(_) => IpFamily::Ipv6,
    };
    let eq = |values: &mut dyn Iterator<Item = u64>| -> Vec<NumericMatch> {
        values.map(NumericMatch::eq).collect()
    };
    let mut c = vec![Component::DestinationPrefix(FlowPrefix::new(m.destination))];
    if let Some(src) = m.source {
        c.push(Component::SourcePrefix(FlowPrefix::new(src)));
    }
    if !m.protocols.is_empty() {
        c.push(Component::IpProtocol(eq(&mut m
            .protocols
            .iter()
            .map(|&p| u64::from(p)))));
    }
    if !m.source_ports.is_empty() {
        c.push(Component::SourcePort(eq(&mut m
            .source_ports
            .iter()
            .map(|&p| u64::from(p)))));
    }
    if !m.destination_ports.is_empty() {
        c.push(Component::DestinationPort(eq(&mut m
            .destination_ports
            .iter()
            .map(|&p| u64::from(p)))));
    }
    if let Some(t) = m.tcp_flags {
        // (flags & mask) == value: the value's bits all set, AND none of
        // the rest of the mask (RFC 8955 §4.2.1.2 `m` and `not` bits).
        let mut terms = Vec::new();
        if t.value != 0 {
            terms.push(BitmaskMatch::all(u16::from(t.value)));
        }
        let clear = u16::from(t.mask & !t.value);
        if clear != 0 {
            terms.push(BitmaskMatch {
                and: !terms.is_empty(),
                not: true,
                all: false,
                bits: clear,
            });
        }
        if !terms.is_empty() {
            c.push(Component::TcpFlags(terms));
        }
    }
    if !m.icmp_types.is_empty() {
        c.push(Component::IcmpType(eq(&mut m
            .icmp_types
            .iter()
            .map(|&t| u64::from(t)))));
    }
    if let Some(r) = m.packet_length {
        let terms = if r.min == r.max {
            vec![NumericMatch::eq(u64::from(r.min))]
        } else {
            NumericMatch::range(u64::from(r.min), u64::from(r.max)).to_vec()
        };
        c.push(Component::PacketLength(terms));
    }
    if let Some(f) = m.fragment {
        let terms = match f {
            FragmentMatch::NotFragment => vec![BitmaskMatch {
                and: false,
                not: true,
                all: false,
                bits: fragment::IS_F | fragment::FF,
            }],
            FragmentMatch::Any => vec![BitmaskMatch::any(fragment::IS_F | fragment::FF)],
            FragmentMatch::First => vec![BitmaskMatch::all(fragment::FF)],
            FragmentMatch::Later => vec![BitmaskMatch::all(fragment::IS_F)],
        };
        c.push(Component::Fragment(terms));
    }
    FlowSpec::new(family, c)
}

/// A manual ban's match could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flow spec match `{text}`: {message}")]
pub struct MatchError {
    pub text: String,
    pub message: String,
}

/// Reads the operator's match for `ip` (see the module doc).
pub fn parse_match(ip: IpAddr, text: &str) -> Result<FlowMatch, MatchError> {
    let err = |message: String| MatchError {
        text: text.to_string(),
        message,
    };
    let mut m = FlowMatch::any(IpNet::from(ip));
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        let mut value = || {
            words
                .next()
                .ok_or_else(|| err(format!("`{word}` needs a value")))
        };
        match word {
            "src" => {
                let v = value()?;
                let net: IpNet = v
                    .parse()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| err(format!("`{v}` is not a prefix")))?;
                if net.trunc() != net {
                    return Err(err(format!("{net} has host bits set")));
                }
                m.source = Some(net);
            }
            "proto" => {
                for p in value()?.split(',') {
                    m.protocols.push(match p {
                        "tcp" => ipproto::TCP,
                        "udp" => ipproto::UDP,
                        "icmp" => ipproto::ICMP,
                        "icmpv6" => ipproto::ICMPV6,
                        n => n
                            .parse()
                            .map_err(|_| err(format!("`{n}` is not a protocol")))?,
                    });
                }
            }
            "src-port" | "dst-port" => {
                let ports = value()?
                    .split(',')
                    .map(|p| {
                        p.parse::<u16>()
                            .map_err(|_| err(format!("`{p}` is not a port")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if word == "src-port" {
                    m.source_ports = ports;
                } else {
                    m.destination_ports = ports;
                }
            }
            "icmp-type" => {
                m.icmp_types = value()?
                    .split(',')
                    .map(|t| {
                        t.parse::<u8>()
                            .map_err(|_| err(format!("`{t}` is not an ICMP type")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "tcp-flags" => {
                let v = value()?;
                let letters = |s: &str| -> Result<u8, MatchError> {
                    s.chars().try_fold(0u8, |acc, ch| {
                        let bit = match ch {
                            'F' => tcp_flags::FIN,
                            'S' => tcp_flags::SYN,
                            'R' => tcp_flags::RST,
                            'P' => tcp_flags::PSH,
                            'A' => tcp_flags::ACK,
                            'U' => tcp_flags::URG,
                            'E' => tcp_flags::ECE,
                            'C' => tcp_flags::CWR,
                            _ => return Err(err(format!("`{ch}` is not a TCP flag (FSRPAUEC)"))),
                        };
                        Ok(acc | bit as u8)
                    })
                };
                m.tcp_flags = Some(match v.strip_prefix('=') {
                    Some(exact) => TcpFlagsMatch {
                        value: letters(exact)?,
                        mask: 0xff,
                    },
                    None => {
                        let (value, mask) = v
                            .split_once('/')
                            .ok_or_else(|| err(format!("`{v}`: =FLAGS or FLAGS/MASK")))?;
                        let (value, mask) = (letters(value)?, letters(mask)?);
                        if value & !mask != 0 {
                            return Err(err(format!("`{v}`: flags outside the mask")));
                        }
                        TcpFlagsMatch { value, mask }
                    }
                });
            }
            "len" => {
                let v = value()?;
                let num = |s: &str| {
                    s.parse::<u16>()
                        .map_err(|_| err(format!("`{s}` is not a length")))
                };
                let (min, max) = match v.split_once('-') {
                    Some((a, b)) => (num(a)?, num(b)?),
                    None => (num(v)?, num(v)?),
                };
                if min > max {
                    return Err(err(format!("`{v}`: empty range")));
                }
                m.packet_length = Some(LengthRange { min, max });
            }
            "fragment" => m.fragment = Some(FragmentMatch::Any),
            "not-fragment" => m.fragment = Some(FragmentMatch::NotFragment),
            "first-fragment" => m.fragment = Some(FragmentMatch::First),
            "later-fragment" => m.fragment = Some(FragmentMatch::Later),
            other => return Err(err(format!("unknown word `{other}`"))),
        }
    }
    if (!m.source_ports.is_empty() || !m.destination_ports.is_empty())
        && !m
            .protocols
            .iter()
            .all(|&p| matches!(p, ipproto::TCP | ipproto::UDP))
    {
        return Err(err("ports need `proto tcp` or `proto udp`".into()));
    }
    let icmp_only = !m.protocols.is_empty()
        && m.protocols
            .iter()
            .all(|&p| matches!(p, ipproto::ICMP | ipproto::ICMPV6));
    if !m.icmp_types.is_empty() && !icmp_only {
        return Err(err(
            "`icmp-type` needs `proto icmp` or `proto icmpv6`".into()
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_match_reads_back_from_what_it_prints_and_becomes_a_rule() {
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let text = "src 198.51.100.0/24 proto udp src-port 123,53 len 400-1500 not-fragment";
        let m = parse_match(ip, text).unwrap();
        assert_eq!(m.to_string(), format!("dst 203.0.113.5/32 {text}"));
        let rule = flowspec(&m).unwrap();
        let shown = rule.to_string();
        for part in [
            "dst 203.0.113.5/32",
            "src 198.51.100.0/24",
            "proto ==17",
            "sport ==123 || ==53",
            "length >=400 && <=1500",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        // Canonical order and a decodable NLRI (what is sent).
        let (back, _) = FlowSpec::decode_nlri(IpFamily::Ipv4, &rule.encode_nlri()).unwrap();
        assert_eq!(back, rule);
    }

    #[test]
    fn an_icmp_type_reads_back_and_becomes_component_7() {
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let m = parse_match(ip, "proto icmp icmp-type 8 len 84").unwrap();
        assert_eq!(m.icmp_types, vec![8]);
        assert_eq!(
            m.to_string(),
            "dst 203.0.113.5/32 proto icmp icmp-type 8 len 84"
        );
        let rule = flowspec(&m).unwrap();
        assert!(
            rule.components()
                .iter()
                .any(|c| *c == Component::IcmpType(vec![NumericMatch::eq(8)])),
            "{rule}"
        );
        let (back, _) = FlowSpec::decode_nlri(IpFamily::Ipv4, &rule.encode_nlri()).unwrap();
        assert_eq!(back, rule);
        let e = parse_match(ip, "proto udp icmp-type 8").unwrap_err();
        assert!(e.message.contains("proto icmp"), "{e}");
        assert!(parse_match(ip, "icmp-type 8").is_err());
        assert!(parse_match(ip, "proto icmp icmp-type 300").is_err());
    }

    #[test]
    fn syn_flags_and_fragments() {
        let ip: IpAddr = "2001:db8::5".parse().unwrap();
        let m = parse_match(ip, "proto tcp dst-port 443 tcp-flags S/SA").unwrap();
        assert_eq!(
            m.tcp_flags,
            Some(TcpFlagsMatch {
                value: 0x02,
                mask: 0x12
            })
        );
        let rule = flowspec(&m).unwrap();
        assert_eq!(rule.family(), IpFamily::Ipv6);
        let tcp = rule
            .components()
            .iter()
            .find_map(|c| match c {
                Component::TcpFlags(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(tcp.len(), 2, "SYN set AND ACK clear: {tcp:?}");
        assert!(tcp[0].all && tcp[0].bits == 0x02);
        assert!(tcp[1].and && tcp[1].not && tcp[1].bits == 0x10);
        let later = parse_match(ip, "later-fragment").unwrap();
        assert!(flowspec(&later).is_ok());
    }

    #[test]
    fn bad_matches_say_why() {
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        for (text, why) in [
            ("proto icmp dst-port 80", "ports need"),
            ("src 198.51.100.1/24", "host bits"),
            ("len 900-100", "empty range"),
            ("tcp-flags X/S", "not a TCP flag"),
            ("dst-port", "needs a value"),
            ("rm -rf", "unknown word"),
        ] {
            let e = parse_match(ip, text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
