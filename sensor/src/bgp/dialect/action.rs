//! Actions (RFC 8955 §7): an action the router does not take is sent in an
//! equivalent encoding (redirect, RFC 8955 §7.4), left out when it changes
//! nothing, or refused.

use super::{Dialect, RedirectEncoding, Refusal};
use crate::bgp::flowspec::{Action, ActionKind};

pub(super) enum ActionFit {
    AsIs,
    Rewritten(Action),
    Dropped,
}

pub(super) fn describe(a: &Action) -> String {
    match a {
        Action::TrafficRatePackets { rate, .. } if *rate == 0.0 => {
            "traffic-rate-packets 0 (discard)".into()
        }
        Action::RedirectAs2 { asn, local } => format!("redirect as2 {asn}:{local}"),
        Action::RedirectAs4 { asn, local } => format!("redirect as4 {asn}:{local}"),
        Action::RedirectIpv4 { addr, local } => format!("redirect ipv4 {addr}:{local}"),
        other => other.to_string(),
    }
}

pub(super) fn adapt_action(
    a: &Action,
    d: &Dialect,
    packet_length: Option<u64>,
    discards: bool,
) -> Result<ActionFit, Refusal> {
    use ActionKind as A;
    let refuse = |action| Refusal::Action {
        profile: d.profile,
        action,
    };
    let kind = a.kind();
    match *a {
        // Discard is traffic-rate-bytes 0 (RFC 8955 §7.1); a router taking
        // either takes it. A packet rate of 0 discards too (§7.2).
        Action::TrafficRateBytes { id, rate: 0.0 } => {
            if d.action(A::Discard) || d.action(A::TrafficRateBytes) {
                Ok(ActionFit::AsIs)
            } else if d.action(A::TrafficRatePackets) {
                Ok(ActionFit::Rewritten(Action::TrafficRatePackets {
                    id,
                    rate: 0.0,
                }))
            } else {
                Err(refuse(kind))
            }
        }
        Action::TrafficRateBytes { id, rate } => {
            if d.action(A::TrafficRateBytes) {
                Ok(ActionFit::AsIs)
            } else if let (true, Some(len)) = (d.action(A::TrafficRatePackets), packet_length) {
                Ok(ActionFit::Rewritten(Action::TrafficRatePackets {
                    id,
                    rate: rate / len as f32,
                }))
            } else {
                Err(refuse(kind))
            }
        }
        Action::TrafficRatePackets { id, rate } => {
            if d.action(A::TrafficRatePackets) {
                Ok(ActionFit::AsIs)
            } else if rate == 0.0 && (d.action(A::Discard) || d.action(A::TrafficRateBytes)) {
                Ok(ActionFit::Rewritten(Action::DISCARD))
            } else if let (true, Some(len)) = (d.action(A::TrafficRateBytes), packet_length) {
                // Every matched packet has `len` octets: the same limit.
                Ok(ActionFit::Rewritten(Action::TrafficRateBytes {
                    id,
                    rate: rate * len as f32,
                }))
            } else {
                Err(refuse(kind))
            }
        }
        // Without the community the router does what T=0, S=0 says
        // (RFC 8955 §7.3), so that value may be left out.
        Action::TrafficAction { sample, terminal } => {
            if d.action(A::TrafficAction) {
                Ok(ActionFit::AsIs)
            } else if !sample && !terminal {
                Ok(ActionFit::Dropped)
            } else {
                Err(refuse(kind))
            }
        }
        // Marking traffic that is discarded changes nothing.
        Action::TrafficMarking { .. } => {
            if d.action(A::TrafficMarking) {
                Ok(ActionFit::AsIs)
            } else if discards {
                Ok(ActionFit::Dropped)
            } else {
                Err(refuse(kind))
            }
        }
        Action::RedirectAs2 { .. } | Action::RedirectIpv4 { .. } | Action::RedirectAs4 { .. } => {
            if !d.action(A::Redirect) {
                return Err(refuse(kind));
            }
            let encoding = RedirectEncoding::of(a).expect("a redirect");
            if d.redirect.contains(&encoding) {
                return Ok(ActionFit::AsIs);
            }
            // The same route target in another form (RFC 4360 §3.1 and
            // RFC 5668 §2): possible when the numbers fit.
            let other = match *a {
                Action::RedirectAs4 { asn, local } if asn <= u32::from(u16::MAX) => {
                    Some(Action::RedirectAs2 {
                        asn: asn as u16,
                        local: u32::from(local),
                    })
                }
                Action::RedirectAs2 { asn, local } if local <= u32::from(u16::MAX) => {
                    Some(Action::RedirectAs4 {
                        asn: u32::from(asn),
                        local: local as u16,
                    })
                }
                _ => None,
            }
            .filter(|b| RedirectEncoding::of(b).is_some_and(|e| d.redirect.contains(&e)));
            match other {
                Some(b) => Ok(ActionFit::Rewritten(b)),
                None => Err(Refusal::Redirect {
                    profile: d.profile,
                    encoding,
                    target: target_text(a),
                }),
            }
        }
    }
}

fn target_text(a: &Action) -> String {
    match *a {
        Action::RedirectAs2 { asn, local } => format!("{asn}:{local}"),
        Action::RedirectAs4 { asn, local } => format!("{asn}:{local}"),
        Action::RedirectIpv4 { addr, local } => format!("{addr}:{local}"),
        _ => String::new(),
    }
}
